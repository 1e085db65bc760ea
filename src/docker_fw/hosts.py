"""docker-fw's entries in a container's /etc/hosts ("add-two-ways").

A source container gets a hosts entry for the destination container's name
so it can reach it by name.  Docker rewrites the file on every container
start, so the entries are re-applied after each start; between starts we
rewrite the host-side file (the container's ``HostsPath``) in place.

Ownership: every line we write ends with ``MARKER``; every other line is
left exactly as it was, byte for byte and in order.

Which address wins: glibc's "files" lookup returns the FIRST line naming
the host, and Docker's file may already name it (a legacy ``--link`` line,
``--add-host``, a stale address).  So our block goes at the very TOP of the
file: whatever else the file says, our address is found first.  As a
consequence we refuse to shadow the loopback names of Docker's own header
(``localhost`` and the ``ip6-*`` names).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping

MARKER = "# docker-fw"

# Docker container names: the same rule the engine enforces.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# Ours: the marker as the last thing on the line, as a comment of its own.
_OWNED = re.compile(r"(?:^|\s)" + re.escape(MARKER) + r"\s*$")
# Names of Docker's header lines: shadowing them would break loopback.
RESERVED = frozenset(
    {"localhost", "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters"}
)


def _lines(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping line ends, so joining gives ``text`` back.

    (``str.splitlines`` would also split on ``\\r``, form feeds and other
    characters glibc does not treat as line ends.)
    """
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])  # last line without a newline
    return lines


def _owned(line: str) -> bool:
    return _OWNED.search(line.rstrip("\n")) is not None


def parse_hosts(text: str) -> list[tuple[str, list[str]]]:
    """``(address, names)`` of each line that is not blank or a comment.

    As glibc does, ``#`` starts a comment anywhere on a line and fields are
    separated by any whitespace.
    """
    entries = []
    for line in _lines(text):
        fields = line.split("#", 1)[0].split()
        if fields:
            entries.append((fields[0], fields[1:]))
    return entries


def _validate(entries: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, canonical address)`` sorted by name; ``ValueError`` on bad input."""
    valid = []
    for name, address in entries.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"invalid host name {name!r}: expected a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, no leading '/')"
            )
        if name.lower() in RESERVED:
            raise ValueError(f"refusing to override the host name {name!r}: /etc/hosts needs it for loopback")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"invalid address {address!r} for host {name!r}: expected an IPv4 or IPv6 address") from None
        valid.append((name, str(ip)))
    return sorted(valid)


def render_hosts(text: str, entries: Mapping[str, str]) -> str:
    """The new file content: our block (``entries``: name -> address) first.

    Our previous lines are dropped wherever they are; one line
    ``ADDR\\tNAME\\t# docker-fw`` per entry, sorted by name, then goes at the
    top so it wins glibc's first-match lookup (see the module docstring).
    Everything else is kept as it was, including whether the file ends with
    a newline; our lines always end with one.  Empty ``entries`` just removes
    our lines.  Idempotent.
    """
    block = "".join(f"{address}\t{name}\t{MARKER}\n" for name, address in _validate(entries))
    return block + "".join(line for line in _lines(text) if not _owned(line))


def write_in_place(path: str, content: str) -> None:
    """Overwrite ``path`` with ``content``, keeping the same inode.

    The file is bind-mounted into the container: a new file renamed over it
    would not be seen inside (the mount keeps the old inode), so we rewrite
    it in place.  The whole content goes in one ``write()`` to keep short the
    window in which a reader in the container sees a half-written file;
    truncating afterwards (not before) means such a reader never sees an
    empty file, at worst a stale tail for an instant.
    """
    data = content.encode("utf-8", "surrogateescape")
    # buffering=0: a raw file, so write() is one system call, not a buffer flush loop.
    with open(path, "r+b", buffering=0) as f:
        f.seek(0)
        written = f.write(data)
        while written < len(data):  # a regular file never writes short; be safe anyway
            written += f.write(data[written:])
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def update_hosts_file(path: str, entries: Mapping[str, str]) -> bool:
    """Put ``entries`` in the hosts file at ``path``; whether it changed.

    Unchanged content is not rewritten, so re-applying is free.  The bytes
    are decoded with ``surrogateescape`` so any non-UTF-8 byte of foreign
    lines survives the round trip.
    """
    with open(path, "rb") as f:
        old = f.read().decode("utf-8", "surrogateescape")
    new = render_hosts(old, entries)
    if new == old:
        return False
    write_in_place(path, new)
    return True
