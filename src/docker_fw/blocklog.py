"""docker-fw log: the connections the whitelist blocked, as ulogd2 wrote them down.

What runs where: 'init --log-blocked' adds an NFLOG rule just before the
whitelist's drop (backends/iptables/logrules.py); the kernel hands each
logged packet (rate-limited) to NFLOG group 42 of the network namespace the
engine's bridges live in.  ulogd2, Debian's standard NFLOG daemon, run in
that namespace with contrib/docker-fw-ulogd.conf, listens there and writes
one JSON object a line (its JSON output plugin) to the file this module
reads, DOCKER_FW_BLOCKED_LOG (default /var/log/ulog/docker-fw-blocked.json).
docker-fw never parses netlink itself.

The file is ulogd2's, written as root, but what it holds comes from packets
anyone can send: it is read bounded (the last TAIL_BYTES, lines of at most
MAX_LINE bytes), not through a symbolic link, and every field is checked
(addresses parsed, ports and protocol numbers in range); a line that is not
ours or not well formed is skipped.  Container names are the engine's, at
the time the log is printed: the address a connection went to belongs to
whichever container holds it now.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from .values import dataclass

from .backends.iptables.logrules import NFLOG_PREFIX
from .errors import FirewallError, one_line

LOG_PATH_ENV = "DOCKER_FW_BLOCKED_LOG"
DEFAULT_LOG_PATH = "/var/log/ulog/docker-fw-blocked.json"
TAIL_BYTES = 4 * 1024 * 1024  # what 'docker-fw log' reads of the file's end
MAX_LINE = 16 * 1024  # a line of ulogd2's JSON is about 1.5 KB
FOLLOW_POLL = 0.25  # seconds between two looks at the file with --follow
FOLLOW_CHUNK = 1024 * 1024  # at most this much read per look
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def log_path(environ=None) -> str:
    return (environ if environ is not None else os.environ).get(LOG_PATH_ENV) or DEFAULT_LOG_PATH


@dataclass(frozen=True)
class Blocked:
    """One blocked connection (its first packet), as the kernel logged it."""

    time: float  # unix time
    src: str
    sport: int
    dest: str
    dport: int
    proto: str
    iif: str  # the interface it came in on ('' when unknown)
    oif: str  # the bridge it was going to

    def timestamp(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time)) + f".{int(self.time % 1 * 1000):03d}Z"


def _address(value) -> str | None:
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _port(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535 else None


def _ifname(value) -> str:
    return value if isinstance(value, str) and len(value) <= 15 else ""


def parse_line(line: bytes | str) -> Blocked | None:
    """One line of ulogd2's JSON output, if it is a connection docker-fw logged; else None."""
    if len(line) > MAX_LINE:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    if not isinstance(record, dict) or record.get("oob.prefix") != NFLOG_PREFIX:
        return None
    src, dest = _address(record.get("src_ip")), _address(record.get("dest_ip"))
    proto = record.get("ip.protocol", record.get("ip6.nexthdr"))
    seconds, micro = record.get("oob.time.sec"), record.get("oob.time.usec", 0)
    if src is None or dest is None or not isinstance(seconds, int) or not isinstance(micro, int):
        return None
    if not isinstance(proto, int) or isinstance(proto, bool) or not 0 <= seconds < 2**40 or not 0 <= micro < 10**6:
        return None
    sport, dport = _port(record.get("src_port", 0)), _port(record.get("dest_port", 0))
    if sport is None or dport is None:
        return None
    return Blocked(seconds + micro / 1e6, src, sport, dest, dport, PROTOCOLS.get(proto, str(proto)),
                   _ifname(record.get("oob.in")), _ifname(record.get("oob.out")))


def _open(path: str) -> int:
    """A read-only descriptor of the log file: a regular file, reached without a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FirewallError(f"{path}: a symbolic link, not read") from None
        if exc.errno == errno.ENOENT:
            raise FirewallError(
                f"no blocked-connection log at {path}: is ulogd2 running with contrib/docker-fw-ulogd.conf "
                f"(in the engine's network namespace), and 'docker-fw init --log-blocked' done? "
                f"({LOG_PATH_ENV} names another file)"
            ) from None
        raise FirewallError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FirewallError(f"{path}: not a regular file")
    return fd


class LogReader:
    """Reads a growing ulogd2 JSON file: its tail first, then what is appended.

    ``read_new()`` returns the complete lines written since the last call, at
    most FOLLOW_CHUNK bytes of them (the rest waits for the next call); a file
    that was truncated or replaced (logrotate) is read again from its start.
    """

    def __init__(self, path: str, tail_bytes: int = TAIL_BYTES):
        self.path = path
        self._fd = _open(path)
        st = os.fstat(self._fd)
        self._inode = (st.st_dev, st.st_ino)
        self._offset = max(0, st.st_size - tail_bytes)
        self._partial = b""
        # the tail starts inside a line unless the byte before it ends one
        self._skip_first = self._offset > 0 and os.pread(self._fd, 1, self._offset - 1) != b"\n"
        self.caught_up = False  # whether the last read_new() reached the end of the file

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "LogReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reopen_if_replaced(self) -> None:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return  # gone for now (being rotated): keep reading the old one
        if (st.st_dev, st.st_ino) != self._inode and stat.S_ISREG(st.st_mode):
            try:
                fd = _open(self.path)
            except FirewallError:
                return
            self.close()
            self._fd, self._inode, self._offset, self._partial, self._skip_first = fd, (st.st_dev, st.st_ino), 0, b"", False

    def read_new(self, limit: int = FOLLOW_CHUNK) -> list[bytes]:
        self._reopen_if_replaced()
        size = os.fstat(self._fd).st_size
        if size < self._offset:  # truncated in place
            self._offset, self._partial, self._skip_first = 0, b"", False
        data = os.pread(self._fd, min(limit, max(0, size - self._offset)), self._offset)
        self._offset += len(data)
        self.caught_up = self._offset >= size
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > MAX_LINE:
            self._partial = b""  # no line of ours is that long: drop it, and the rest of it
            self._skip_first = True
        if self._skip_first and chunks:
            chunks.pop(0)
            self._skip_first = False
        return [c for c in chunks if c and len(c) <= MAX_LINE]

    def events(self, limit: int = FOLLOW_CHUNK) -> list[Blocked]:
        return [e for e in map(parse_line, self.read_new(limit)) if e is not None]


# -- names ---------------------------------------------------------------------------


def addresses_of(snapshot) -> dict[str, str]:
    """Every running container's addresses (IPv4 and IPv6) -> its name."""
    names: dict[str, str] = {}
    for container in snapshot.containers:
        if not container.has_address:
            continue
        for endpoint in container.endpoints:
            for ip in (endpoint.ip, endpoint.ip6):
                if ip:
                    names[str(ipaddress.ip_address(ip))] = container.name
    return names


def as_text(event: Blocked, names: dict[str, str]) -> str:
    """'TIME blocked SRC -> CONTAINER:PORT/PROTO' (an address where no container holds it)."""
    src = names.get(event.src, event.src)
    dest = names.get(event.dest, event.dest if ":" not in event.dest else f"[{event.dest}]")
    return one_line(f"{event.timestamp()} blocked {src} -> {dest}:{event.dport}/{event.proto}")


def as_json(event: Blocked, names: dict[str, str]) -> str:
    """One JSON object (README: 'docker-fw log --json' lists its keys)."""
    return json.dumps({
        "time": event.timestamp(),
        "unix_time": round(event.time, 6),
        "src": event.src,
        "src_container": names.get(event.src),
        "sport": event.sport,
        "dest": event.dest,
        "container": names.get(event.dest),
        "dport": event.dport,
        "proto": event.proto,
        "in": event.iif or None,
        "out": event.oif or None,
    }, sort_keys=True, ensure_ascii=True)


class Names:
    """Address -> container name, from the engine; asked again (at most every
    REFRESH seconds) when an address is not known yet."""

    REFRESH = 2.0

    def __init__(self, engine):
        self.engine = engine
        self._names = addresses_of(engine.snapshot())
        self._asked = time.monotonic()

    def for_events(self, events: list[Blocked]) -> dict[str, str]:
        unknown = any(e.dest not in self._names for e in events)
        if unknown and time.monotonic() - self._asked >= self.REFRESH:
            self._names = addresses_of(self.engine.snapshot(refresh=True))
            self._asked = time.monotonic()
        return self._names


def print_log(engine, out: Callable[[str], None], warn: Callable[[str], None], follow: bool,
              as_json_lines: bool, enabled: bool, path: str | None = None,
              stopped: Callable[[], bool] = lambda: False) -> int:
    """'docker-fw log': the blocked connections in the log's tail, then (FOLLOW) new ones
    until STOPPED() (SIGINT, SIGTERM).  ENABLED: whether 'init --log-blocked' is recorded."""
    if not enabled:
        warn("blocked connections are not being logged: run 'docker-fw init --log-blocked'")
    render = as_json if as_json_lines else as_text
    names = Names(engine)
    with LogReader(path or log_path()) as reader:
        while not stopped():
            events = reader.events(TAIL_BYTES)
            if events:
                known = names.for_events(events)
                for event in events:
                    out(render(event, known))
            if not follow:
                break
            if reader.caught_up:
                time.sleep(FOLLOW_POLL)  # a signal ends it early; its handler sets the flag
    return 0


def run_log(follow: bool, as_json_lines: bool, out, warn) -> int:
    """The CLI's 'log': opens the store only to read the setting (a --follow that
    runs for days must not hold the store's lock), then prints."""
    from .engine import Engine
    from .store import Store

    with Store.open(read_only=True) as store:
        enabled = store.log_blocked()
    flags = {"stop": False}

    def on_signal(signum, frame) -> None:  # a flag, nothing else (no lock: see watch.Signals)
        flags["stop"] = True

    previous = {}
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        return print_log(Engine(), out, warn, follow, as_json_lines, enabled, stopped=lambda: flags["stop"])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
