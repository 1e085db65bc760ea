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

The file is hostile input: root inside the container writes it, any bytes
and any size.  So it is handled as bytes end to end (never decoded), read
up to ``MAX_BYTES`` only, and opened without following a symbolic link
anywhere on its path; anything but a regular file is refused.  Every read
and write goes through ``_open`` and ``_read``: there is no other way in.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
from collections.abc import Mapping

MARKER = "# docker-fw"

# Docker writes a few hundred bytes; a file this large is not Docker's, and
# reading more would let a container decide how much memory we use.
MAX_BYTES = 1 << 20
TOO_LARGE = f"larger than {MAX_BYTES >> 20} MiB, the most docker-fw reads"

# Docker container names: the same rule the engine enforces (ASCII only, so
# our lines are ASCII whatever bytes surround them).
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# Ours: the marker as the last thing on the line, as a comment of its own.
_OWNED = re.compile(rb"(?:^|\s)" + re.escape(MARKER.encode()) + rb"\s*$")
# Names of Docker's header lines: shadowing them would break loopback.
RESERVED = frozenset(
    {"localhost", "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters"}
)

# A directory on the way: opened only to walk on from it (no read access
# needed), never through a symbolic link.
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The file itself: O_NONBLOCK so a FIFO put there cannot hang us in open(),
# O_NOCTTY so a terminal cannot become ours; both are refused right after.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISLNK, "a symbolic link (docker-fw follows none)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class HostsFileError(Exception):
    """A hosts file docker-fw will not read or write; the message says why, in a few words."""


class FileMissing(HostsFileError):
    """There is no file at that path (``read_bounded`` of a file that may be absent)."""


def _lines(data: bytes) -> list[bytes]:
    """Split on ``\\n`` only, keeping line ends, so joining gives ``data`` back.

    (``bytes.splitlines`` would also split on ``\\r`` and other characters
    glibc does not treat as line ends.)
    """
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])  # last line without a newline
    return lines


def _owned(line: bytes) -> bool:
    return _OWNED.search(line.rstrip(b"\n")) is not None


def parse_hosts(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    """``(address, names)`` of each line that is not blank or a comment.

    As glibc does, ``#`` starts a comment anywhere on a line and fields are
    separated by any whitespace.
    """
    entries = []
    for line in _lines(data):
        fields = line.split(b"#", 1)[0].split()
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


def render_hosts(data: bytes, entries: Mapping[str, str]) -> bytes:
    """The new file content: our block (``entries``: name -> address) first.

    Our previous lines are dropped wherever they are; one line
    ``ADDR\\tNAME\\t# docker-fw`` per entry, sorted by name, then goes at the
    top so it wins glibc's first-match lookup (see the module docstring).
    Every other line is kept byte for byte, including whether the file ends
    with a newline; our lines always end with one.  Empty ``entries`` just
    removes our lines.  Idempotent.
    """
    block = "".join(f"{address}\t{name}\t{MARKER}\n" for name, address in _validate(entries)).encode("ascii")
    return block + b"".join(line for line in _lines(data) if not _owned(line))


def shown(path: object) -> str:
    """``path`` for a one-line message: as it is when printable, else quoted and escaped."""
    return path if isinstance(path, str) and path.isprintable() else repr(path)


def _components(path: object) -> list[str]:
    """The names on an absolute, normalised path; ``HostsFileError`` for any other.

    An allow-list: no ``.``, ``..``, empty or NUL-holding component can reach
    the walk in ``_open``.
    """
    names = path.split("/")[1:] if isinstance(path, str) and path.startswith("/") and "\0" not in path else []
    if not names or any(name in ("", ".", "..") for name in names):
        raise HostsFileError("not an absolute, normalised path")
    return names


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, for the message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((what for is_kind, what in _KINDS if is_kind(mode)), "not a regular file")


def _refuse(exc: OSError) -> HostsFileError:
    if exc.errno == errno.ENOENT:
        return FileMissing(exc.strerror or "no such file")
    # What O_NOFOLLOW (and O_DIRECTORY) answer when a link was put there after our lstat.
    if exc.errno == errno.ELOOP:
        return HostsFileError("a symbolic link (docker-fw follows none)")
    if exc.errno == errno.ENOTDIR:
        return HostsFileError("a symbolic link or other non-directory on its path (docker-fw follows none)")
    return HostsFileError(exc.strerror or str(exc))


def _open(path: str, writable: bool, limit: int = MAX_BYTES) -> int:
    """A file descriptor of the regular file at ``path``, no symbolic link followed.

    Walks from ``/`` one directory at a time (``O_NOFOLLOW`` at each step:
    the standard library has no ``openat2(RESOLVE_NO_SYMLINKS)``).  Docker
    resolves its data root's links when it starts, so its own ``HostsPath``
    holds none.  The file is looked at (``lstat``) before it is opened, so a
    device put in its place is not even opened, and checked again
    (``fstat``) once it is, in case it was swapped in between.
    """
    names = _components(path)
    directory = os.open("/", _DIR_FLAGS)
    try:
        for name in names[:-1]:
            _check_directory(os.stat(name, dir_fd=directory, follow_symlinks=False), name)
            step = os.open(name, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = step
        before = os.stat(names[-1], dir_fd=directory, follow_symlinks=False)
        _check_file(before, limit)
        fd = os.open(names[-1], _FILE_FLAGS | (os.O_RDWR if writable else os.O_RDONLY), dir_fd=directory)
    except OSError as exc:
        raise _refuse(exc) from None
    finally:
        os.close(directory)
    try:
        now = os.fstat(fd)
        _check_file(now, limit)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise HostsFileError("replaced while docker-fw opened it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _too_large(limit: int) -> HostsFileError:
    if limit == MAX_BYTES:
        return HostsFileError(TOO_LARGE)
    return HostsFileError(f"larger than {limit:,} bytes, the most docker-fw reads")


def _check_file(st: os.stat_result, limit: int) -> None:
    kind = _kind(st.st_mode)
    if kind is not None:
        raise HostsFileError(kind)
    if st.st_size > limit:
        raise _too_large(limit)


def _check_directory(st: os.stat_result, name: str) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise HostsFileError(f"{shown(name)} on its path is {_kind(st.st_mode)}")


def _read(fd: int, limit: int = MAX_BYTES) -> bytes:
    """The whole file from the start, or ``HostsFileError`` past ``limit`` bytes.

    At most ``limit + 1`` bytes are ever read: the file may grow after
    ``_open`` looked at its size.
    """
    chunks, total = [], 0
    while True:
        chunk = os.pread(fd, limit + 1 - total, total)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)


def read_bounded(path: str, limit: int) -> bytes:
    """The content of the regular file at ``path``: at most ``limit`` bytes, no
    symbolic link followed on its path (as for hosts files); ``FileMissing``
    when there is none, ``HostsFileError`` for any other refusal.  Also for
    other files that hostile parties may have placed (the old docker-fw's
    files in Docker's container directories)."""
    fd = _open(path, writable=False, limit=limit)
    try:
        return _read(fd, limit)
    except OSError as exc:
        raise _refuse(exc) from None
    finally:
        os.close(fd)


def read_hosts(path: str) -> bytes:
    """The content of the hosts file at ``path`` (bounded, no link followed); ``HostsFileError``."""
    return read_bounded(path, MAX_BYTES)


def write_in_place(fd: int, data: bytes) -> None:
    """Overwrite the file open at ``fd`` with ``data``, keeping the same inode.

    The file is bind-mounted into the container: a new file renamed over it
    would not be seen inside (the mount keeps the old inode), so we rewrite
    it in place.  The whole content goes in one ``write()`` to keep short the
    window in which a reader in the container sees a half-written file;
    truncating afterwards (not before) means such a reader never sees an
    empty file, at worst a stale tail for an instant.
    """
    written = os.pwrite(fd, data, 0)
    while written < len(data):  # a regular file never writes short; be safe anyway
        written += os.pwrite(fd, data[written:], written)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def update_hosts_file(path: str, entries: Mapping[str, str]) -> bool:
    """Put ``entries`` in the hosts file at ``path``; whether it changed.

    Read, rendered and written on one file descriptor, so what is written
    is computed from what the file held a moment before, on the same inode.
    Unchanged content is not rewritten, so re-applying is free.
    ``HostsFileError`` when the file is refused or cannot be read or written.
    """
    fd = _open(path, writable=True)
    try:
        old = _read(fd)
        new = render_hosts(old, entries)
        if new == old:
            return False
        write_in_place(fd, new)
        return True
    except OSError as exc:
        raise _refuse(exc) from None
    finally:
        os.close(fd)
