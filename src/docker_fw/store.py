"""docker-fw's own state store: recorded rules, in SQLite.

Default location ``/var/lib/docker-fw/`` (not inside Docker's directories, a
known issue of the seed), overridable with ``DOCKER_FW_STATE_DIR``.  One
exclusive lock (``flock`` on ``lock``) serialises whole runs, so two docker-fw
processes never interleave their read-plan-apply-record steps; SQLite's
journal makes every write all-or-nothing, even across a crash.

The record decides what the firewall holds (``replay`` removes every rule it
does not name), so the store refuses, with one line and exit 5, whatever it
cannot trust rather than read it as "no rules":

- the directory must be a real directory (not a symlink), owned by the user
  docker-fw runs as (root), writable by nobody else, and inside directories
  nobody else can change (or they could swap it for theirs); a directory
  docker-fw creates is 0700;
- its files (``lock``, ``state.db``, ``state.db-journal``...) must be regular
  files of ours, writable by nobody else, never symlinks;
- ``state.db`` is created atomically (a complete empty store is renamed into
  place), so one that is empty, not SQLite, fails SQLite's quick integrity
  check, or lacks our schema version can only be damage.

Read-only commands (``Store.open(read_only=True)``) open the database
read-only under a shared lock, create nothing (a store that does not exist
yet reads as empty), and work on a read-only filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from .values import dataclass

from .errors import DockerFwError, StoreError
from .lean import percent_encoded
from .model import AddressSpec, EgressPolicy, Kind, RuleSpec, parse_address, parse_ports

DEFAULT_STATE_DIR = "/var/lib/docker-fw"
SCHEMA_VERSION = 2
DB_NAME = "state.db"
LOCK_NAME = "lock"
# A store being created: renamed to DB_NAME once complete.
NEW_DB_NAME = "state.db.new"
# Files SQLite keeps next to the database (rollback journal; WAL, if anyone
# switched it on): checked like the database.
SIDE_SUFFIXES = ("-journal", "-wal", "-shm")

RECOVER = "restore it from a backup, or move it away to start afresh (docker-fw then holds no rules: add them again)"

# Version 2: ports as typed (ranges, lists), ICMP types, egress policies.
_RULES_TABLE = """
CREATE TABLE {name} (
    id      INTEGER PRIMARY KEY,
    owner   TEXT NOT NULL,           -- container name
    action  TEXT NOT NULL,           -- add, add-input, add-internal
    source  TEXT NOT NULL,           -- address spec as written: '.', '/', name, CIDR
    dest    TEXT NOT NULL,
    proto   TEXT NOT NULL,
    sport   TEXT NOT NULL,           -- as typed: '80', '9100:9200', '80,443'; '': any
    dport   TEXT NOT NULL,
    icmp_type TEXT NOT NULL,         -- --icmp-type as typed; '': any
    filter  TEXT NOT NULL,           -- JSON list of iptables tokens
    created TEXT NOT NULL,
    UNIQUE (owner, action, source, dest, proto, sport, dport, icmp_type, filter)
);
"""
_EGRESS_TABLE = """
-- docker-fw egress: containers whose outbound traffic is denied (no row: allow)
CREATE TABLE egress (
    owner   TEXT PRIMARY KEY,
    policy  TEXT NOT NULL,
    created TEXT NOT NULL
);
"""
# A version 1 store (integer ports, no egress) becomes a version 2 one in one
# transaction, the first time a writer opens it.
_MIGRATE_1_TO_2 = (
    _RULES_TABLE.format(name="rules_v2")
    + """
INSERT INTO rules_v2 (id, owner, action, source, dest, proto, sport, dport, icmp_type, filter, created)
    SELECT id, owner, action, source, dest, proto,
           CASE WHEN sport = 0 THEN '' ELSE CAST(sport AS TEXT) END,
           CASE WHEN dport = 0 THEN '' ELSE CAST(dport AS TEXT) END,
           '', filter, created FROM rules;
DROP TABLE rules;
ALTER TABLE rules_v2 RENAME TO rules;
CREATE INDEX rules_owner ON rules (owner);
"""
    + _EGRESS_TABLE
    + "UPDATE meta SET value='2' WHERE key='schema';"
)
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    + _RULES_TABLE.format(name="rules")
    + "CREATE INDEX rules_owner ON rules (owner);"
    + _EGRESS_TABLE
    + f"""
-- add-two-ways: container OWNER gets an /etc/hosts line for container NAME
CREATE TABLE hosts (
    owner   TEXT NOT NULL,
    name    TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
-- containers that no longer exist, since when (for gc)
CREATE TABLE gone (
    owner   TEXT PRIMARY KEY,
    since   REAL NOT NULL               -- unix time
);
-- save-hostconfig: the relevant host configuration and the host ports the
-- engine assigned, as JSON
CREATE TABLE hostconfigs (
    owner   TEXT PRIMARY KEY,
    config  TEXT NOT NULL,
    saved   TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}');
"""
)
_TABLES = frozenset({"meta", "rules", "hosts", "gone", "hostconfigs", "egress"})


def state_dir() -> str:
    return os.environ.get("DOCKER_FW_STATE_DIR") or DEFAULT_STATE_DIR


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _store_error(exc: sqlite3.Error, path: str) -> StoreError:
    """The one line an SQLite error becomes (exit 5)."""
    detail = _one_line(exc)
    code = getattr(exc, "sqlite_errorcode", 0)
    primary = code & 0xFF
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreError(f"state store {path} is damaged ({detail}): {RECOVER}")
    if code == sqlite3.SQLITE_READONLY_ROLLBACK:
        return StoreError(
            f"state store {path} holds a change interrupted by a crash, which cannot be rolled back "
            "on a read-only filesystem: run a command that writes (e.g. 'docker-fw replay') where it is writable"
        )
    if primary == sqlite3.SQLITE_FULL:
        return StoreError(f"cannot write the state store {path}: {detail}: free space there and run the command again")
    if primary == sqlite3.SQLITE_READONLY:
        return StoreError(f"cannot write the state store {path}: {detail}")
    if primary == sqlite3.SQLITE_IOERR:
        return StoreError(f"state store {path}: I/O error ({detail})")
    return StoreError(f"state store {path}: {detail}")


# -- what may be trusted ------------------------------------------------------------


def _whose(uid: int) -> str:
    return "root" if uid == 0 else f"uid {uid}"


def _writable_by_others(st: os.stat_result) -> str:
    """'world-writable', 'group-writable' or ''."""
    if st.st_mode & stat.S_IWOTH:
        return "world-writable"
    if st.st_mode & stat.S_IWGRP:
        return "group-writable"
    return ""


def _check_ours(path: str, st: os.stat_result, what: str, private_mode: str) -> None:
    """Owned by the user docker-fw runs as and writable by no one else."""
    euid = os.geteuid()
    if st.st_uid != euid:
        raise StoreError(f"{what} {path} is owned by {_whose(st.st_uid)}, not {_whose(euid)} that runs docker-fw: chown it")
    writable = _writable_by_others(st)
    if writable and st.st_mode & stat.S_ISVTX:  # a shared directory such as /tmp: not to be chmodded
        raise StoreError(f"{what} {path} is {writable} (shared, like /tmp): give docker-fw a directory of its own")
    if writable:
        raise StoreError(f"{what} {path} is {writable}: chmod {private_mode} it")


def _check_directory(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(
            f"state directory {path} is a symlink, which docker-fw does not follow: "
            "name the real directory in DOCKER_FW_STATE_DIR"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"state directory {path} is not a directory")
    _check_ours(path, st, "state directory", "700")


def _check_ancestors(path: str) -> None:
    """Whoever may write a directory above the state directory can rename it
    away and put one of theirs in its place, between these checks and
    SQLite's own open; a sticky one (/tmp) lets only the owner rename."""
    ancestor = os.path.dirname(os.path.realpath(path))
    while True:
        with contextlib.suppress(FileNotFoundError):  # one to be created is 0700, ours
            up = os.stat(ancestor)
            problem = ""
            if up.st_uid not in (0, os.geteuid()):
                problem = f"is owned by {_whose(up.st_uid)}"
            elif _writable_by_others(up) and not up.st_mode & stat.S_ISVTX:
                problem = f"is {_writable_by_others(up)}"
            if problem:
                raise StoreError(
                    f"state directory {path} is inside {ancestor}, which {problem}: "
                    "put it where only root can change its parents"
                )
        if ancestor == os.path.dirname(ancestor):
            return
        ancestor = os.path.dirname(ancestor)


def _check_file(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"{path} is a symlink, which docker-fw does not follow in its state directory: put the real file there")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file")
    _check_ours(path, st, "state file", "600")


def _open_directory(directory: str, create: bool) -> int:
    """A descriptor of the checked state directory; FileNotFoundError when it
    does not exist and create is false."""
    _check_ancestors(directory)
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(directory, mode=0o700, exist_ok=True)  # 0700: the umask is 077 here
        st = os.lstat(directory)
    _check_directory(directory, st)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise StoreError(f"state directory {directory} was replaced while docker-fw opened it")
    return fd


def _open_lock(dir_fd: int, directory: str, read_only: bool) -> int | None:
    """The lock file's descriptor; None for a reader when there is no lock file
    (it creates nothing: SQLite's read transaction keeps its view consistent)."""
    path = os.path.join(directory, LOCK_NAME)
    # O_NONBLOCK: a FIFO put there must not hang the open (it is refused below).
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    flags |= os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT
    try:
        fd = os.open(LOCK_NAME, flags, 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        if read_only:
            return None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _check_file(path, os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False))
        raise
    try:
        _check_file(path, os.fstat(fd))
    except StoreError:
        os.close(fd)
        raise
    return fd


def _check_db_files(dir_fd: int, directory: str) -> bool:
    """Check state.db and SQLite's files next to it (lstat: SQLite opens them
    itself, following symlinks; only root can put one in a checked directory,
    which is why a symlink here means something is wrong).  Whether state.db exists."""
    for name in (DB_NAME, *(DB_NAME + suffix for suffix in SIDE_SUFFIXES)):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if name == DB_NAME:
                return False
            continue
        path = os.path.join(directory, name)
        _check_file(path, st)
        if name == DB_NAME and st.st_size == 0:
            # Never made by docker-fw (it renames a complete store into place).
            raise StoreError(f"state store {path} is empty (damaged): {RECOVER}")
    return True


def _create(dir_fd: int, directory: str) -> None:
    """A new, complete store (schema and version row) as state.db, atomically:
    written aside, synced, renamed into place, the directory synced."""
    new_path = os.path.join(directory, NEW_DB_NAME)
    try:
        for name in (NEW_DB_NAME, NEW_DB_NAME + "-journal"):  # left by a crash
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        conn = sqlite3.connect(new_path, isolation_level=None)
        try:
            conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
        finally:
            conn.close()
        fd = os.open(NEW_DB_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(NEW_DB_NAME, DB_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            os.unlink(NEW_DB_NAME, dir_fd=dir_fd)
        reason = exc.strerror if isinstance(exc, OSError) else _one_line(exc)
        raise StoreError(f"cannot create the state store {os.path.join(directory, DB_NAME)}: {reason}") from None


def _validate(conn: sqlite3.Connection, path: str) -> int:
    """Refuse a database that is not a sound docker-fw store of our version.

    quick_check reads every page (it finds truncation and damaged pages, not
    index mismatches): well under a millisecond for a few hundred rules,
    about 4 ms for 10,000."""
    verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if verdict != "ok":
        raise StoreError(f"state store {path} is damaged (integrity check: {_one_line(verdict)}): {RECOVER}")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        raise StoreError(f"state store {path} is not a docker-fw store (it has no meta table): {RECOVER}")
    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        raise StoreError(f"state store {path} records no schema version (damaged): {RECOVER}")
    version = row[0]
    if version == "1":
        return 1  # an older store: migrated by _connect
    if version != str(SCHEMA_VERSION):
        newer = str(version).isdigit() and int(version) > SCHEMA_VERSION
        raise StoreError(
            f"state store {path} has schema version {_one_line(repr(version))}, this docker-fw knows {SCHEMA_VERSION}: "
            + ("it was written by a newer docker-fw; use that one" if newer else RECOVER)
        )
    missing = sorted(_TABLES - tables)
    if missing:
        raise StoreError(f"state store {path} is damaged (table {missing[0]} is missing): {RECOVER}")
    return SCHEMA_VERSION


def _migrated(conn: sqlite3.Connection, read_only: bool) -> sqlite3.Connection:
    """A version 1 store as version 2: a writer (holding the lock) migrates the
    file in one transaction; a reader migrates a copy in memory (it may not
    write, and the store is small), so 'ls' and 'check' work before any writer ran."""
    if read_only:
        copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.backup(copy)
        conn.close()
        conn = copy
        conn.row_factory = sqlite3.Row
        conn.executescript(f"BEGIN; {_MIGRATE_1_TO_2} COMMIT;")
        conn.execute("BEGIN")
        return conn
    conn.executescript(f"BEGIN IMMEDIATE; {_MIGRATE_1_TO_2} COMMIT;")
    return conn


def _uri(path: str, mode: str) -> str:
    """SQLite's URI for PATH; mode 'ro' or 'rw' (neither creates the file)."""
    return f"file:{percent_encoded(path, safe='/')}?mode={mode}"


def _connect(path: str, read_only: bool, timeout: float) -> sqlite3.Connection:
    """A validated connection.  A reader holds one read transaction for the
    whole run: one consistent view even when there is no lock file to take."""
    # check_same_thread=False: 'start --jobs' reads and writes from worker
    # threads, always one at a time (the service serialises).
    conn = sqlite3.connect(
        _uri(path, "ro" if read_only else "rw"), uri=True,
        isolation_level=None, check_same_thread=False, timeout=timeout,
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN" if read_only else "PRAGMA synchronous=FULL")
        if _validate(conn, path) == 1:
            conn = _migrated(conn, read_only)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_checked(path: str, read_only: bool, timeout: float) -> sqlite3.Connection:
    try:
        return _connect(path, read_only, timeout)
    except sqlite3.Error as exc:
        if not (read_only and exc.sqlite_errorcode == sqlite3.SQLITE_READONLY_ROLLBACK):
            raise _store_error(exc, path) from None
    # A run was killed mid-write and left its journal: a read-only connection
    # cannot roll it back.  Rolling it back restores the record as the last
    # complete run left it (no writer runs: we hold the shared lock, or SQLite
    # found no one holding the database), so a reader may do it where the
    # filesystem allows; then it reads read-only as usual.
    try:
        with contextlib.closing(sqlite3.connect(_uri(path, "rw"), uri=True)) as fixer:
            fixer.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return _connect(path, read_only, timeout)
    except sqlite3.Error as exc:
        raise _store_error(exc, path) from None


def _empty_store() -> sqlite3.Connection:
    """What a reader sees where no store exists yet: no records (in memory)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.executescript(_SCHEMA)
    return conn


def _row_to_spec(row: sqlite3.Row) -> RuleSpec:
    return RuleSpec(
        owner=row["owner"],
        kind=Kind.from_action(row["action"]),
        source=parse_address(row["source"]),
        dest=parse_address(row["dest"]),
        proto=row["proto"],
        sport=parse_ports(row["sport"], "recorded --sport"),
        dport=parse_ports(row["dport"], "recorded --dport"),
        filter=tuple(json.loads(row["filter"])),
        icmp_type=row["icmp_type"],
    )


def _spec_values(spec: RuleSpec) -> tuple:
    return (
        spec.owner,
        spec.kind.action,
        spec.source.text,
        spec.dest.text,
        spec.proto,
        spec.sport.text,
        spec.dport.text,
        spec.icmp_type,
        json.dumps(list(spec.filter)),
    )


@dataclass(frozen=True)
class _Result:
    rows: list[sqlite3.Row]
    count: int  # rows changed


class Store:
    """Open with ``Store.open()`` as a context manager: it holds the lock."""

    def __init__(self, directory: str, conn: sqlite3.Connection, read_only: bool = False):
        self.directory = directory
        self.path = os.path.join(directory, DB_NAME)
        self.read_only = read_only
        self._conn = conn

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, directory: str | None = None, lock_timeout: float = 30.0, read_only: bool = False
    ) -> Iterator["Store"]:
        """read_only: for commands that change nothing (ls, check, dry runs):
        a shared lock, the database opened read-only, nothing created."""
        directory = os.path.abspath(directory or state_dir())
        with contextlib.ExitStack() as held:
            old_umask = os.umask(0o077)  # what docker-fw creates is private
            try:
                conn = _open_store(directory, lock_timeout, read_only, held)
            finally:
                os.umask(old_umask)
            held.callback(conn.close)
            yield cls(directory, conn, read_only)

    # -- the one way to SQLite: its errors become one-line StoreErrors ------

    def _execute(self, sql: str, params: Iterable = ()) -> _Result:
        try:
            cursor = self._conn.execute(sql, tuple(params))
            return _Result(cursor.fetchall(), cursor.rowcount)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from None

    def _decoded(self, decode: Callable, value, what: str):
        """A recorded value docker-fw cannot read is damage, not bad input."""
        try:
            return decode(value)
        except (DockerFwError, ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"state store {self.path} holds an unreadable {what} ({_one_line(exc)}): {RECOVER}") from None

    # -- queries ---------------------------------------------------------

    def rules(self, owners: Iterable[str] | None = None) -> list[RuleSpec]:
        if owners is None:
            rows = self._execute("SELECT * FROM rules ORDER BY owner, id").rows
        else:
            owners = list(owners)
            marks = ",".join("?" * len(owners))
            rows = self._execute(
                f"SELECT * FROM rules WHERE owner IN ({marks}) ORDER BY owner, id", owners
            ).rows if owners else []
        return [self._decoded(_row_to_spec, r, f"rule, id {r['id']}") for r in rows]

    def owners(self) -> list[str]:
        """Every container docker-fw holds a record for."""
        rows = self._execute(
            "SELECT owner FROM rules UNION SELECT owner FROM hosts UNION SELECT name FROM hosts "
            "UNION SELECT owner FROM hostconfigs UNION SELECT owner FROM egress ORDER BY 1"
        ).rows
        return [r[0] for r in rows]

    def referrers(self, names: Iterable[str]) -> set[str]:
        """Owners of rules that name one of these containers as source or dest."""
        names = list(names)
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        rows = self._execute(
            f"SELECT DISTINCT owner FROM rules WHERE source IN ({marks}) OR dest IN ({marks})",
            names + names,
        ).rows
        return {r[0] for r in rows}

    def contains(self, spec: RuleSpec) -> bool:
        return bool(self._execute(
            "SELECT 1 FROM rules WHERE owner=? AND action=? AND source=? AND dest=? AND "
            "proto=? AND sport=? AND dport=? AND icmp_type=? AND filter=?",
            _spec_values(spec),
        ).rows)

    # -- changes (inside transaction()) -----------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: commit when the block succeeds, roll back otherwise.

        Callers apply the firewall inside the block, so the record changes
        only when the kernel accepted the batch.
        """
        if self.read_only:
            raise StoreError(f"state store {self.path} is open read-only: this command may not change it")
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._roll_back()
            raise
        try:
            self._execute("COMMIT")
        except StoreError:
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        # After disk full or an I/O error SQLite may have rolled back already.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def add(self, spec: RuleSpec) -> bool:
        """Record a rule; False when it was recorded already."""
        return self._execute(
            "INSERT OR IGNORE INTO rules (owner, action, source, dest, proto, sport, dport, "
            "icmp_type, filter, created) VALUES (?,?,?,?,?,?,?,?,?, datetime('now'))",
            _spec_values(spec),
        ).count == 1

    def drop_owner(self, owner: str) -> int:
        """Forget a container's rules and egress policy, and the hosts lines its
        add-two-ways rules gave others."""
        self._execute("DELETE FROM hosts WHERE name=?", (owner,))
        self._execute("DELETE FROM egress WHERE owner=?", (owner,))
        return self._execute("DELETE FROM rules WHERE owner=?", (owner,)).count

    # -- egress policies ---------------------------------------------------------

    def egress(self, owners: Iterable[str] | None = None) -> dict[str, EgressPolicy]:
        """owner -> its recorded policy; a container without one has the default (allow)."""
        rows = self._execute("SELECT owner, policy FROM egress ORDER BY owner").rows
        wanted = None if owners is None else set(owners)
        return {
            row["owner"]: self._decoded(EgressPolicy.from_text, row["policy"], f"egress policy of {row['owner']}")
            for row in rows
            if wanted is None or row["owner"] in wanted
        }

    def set_egress(self, owner: str, policy: EgressPolicy) -> bool:
        """Record OWNER's policy (allow: the default, so no row); False when it was so already."""
        if policy is EgressPolicy.ALLOW:
            return self._execute("DELETE FROM egress WHERE owner=?", (owner,)).count == 1
        return self._execute(
            "INSERT INTO egress (owner, policy, created) VALUES (?, ?, datetime('now')) "
            "ON CONFLICT(owner) DO UPDATE SET policy=excluded.policy WHERE policy != excluded.policy",
            (owner, policy.value),
        ).count == 1

    def rename(self, old: str, new: str) -> int:
        """Re-key everything recorded for container OLD to NEW (after 'docker rename'):
        its rules, rules naming it, hosts entries, saved host configuration.
        The caller checks that nothing is recorded for NEW.  Returns how many of
        OLD's own rules moved."""
        moved = self._execute("UPDATE rules SET owner=? WHERE owner=?", (new, old)).count
        self._execute("UPDATE rules SET source=? WHERE source=?", (new, old))
        self._execute("UPDATE rules SET dest=? WHERE dest=?", (new, old))
        self._execute("UPDATE hosts SET owner=? WHERE owner=?", (new, old))
        self._execute("UPDATE hosts SET name=? WHERE name=?", (new, old))
        self._execute("UPDATE hostconfigs SET owner=? WHERE owner=?", (new, old))
        self._execute("UPDATE egress SET owner=? WHERE owner=?", (new, old))
        self._execute("DELETE FROM gone WHERE owner=?", (old,))
        return moved

    # -- settings -------------------------------------------------------------

    def init_networks(self) -> list[str] | None:
        """The networks 'init --network' limited init to; None: every bridge network."""
        rows = self._execute("SELECT value FROM meta WHERE key='init_networks'").rows
        return self._decoded(json.loads, rows[0][0], "init --network setting") if rows else None

    def set_init_networks(self, names: list[str] | None) -> None:
        if names is None:
            self._execute("DELETE FROM meta WHERE key='init_networks'")
        else:
            self._execute(
                "INSERT INTO meta (key, value) VALUES ('init_networks', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps(list(names)),),
            )

    def log_blocked(self) -> bool:
        """Whether 'init --log-blocked' asked for blocked connections to be logged."""
        rows = self._execute("SELECT value FROM meta WHERE key='log_blocked'").rows
        return bool(rows) and rows[0][0] == "1"

    def set_log_blocked(self, enabled: bool) -> None:
        if enabled:
            self._execute("INSERT INTO meta (key, value) VALUES ('log_blocked', '1') "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value")
        else:
            self._execute("DELETE FROM meta WHERE key='log_blocked'")

    # -- /etc/hosts entries (add-two-ways) ---------------------------------

    def add_host_entry(self, owner: str, name: str) -> bool:
        return self._execute(
            "INSERT OR IGNORE INTO hosts (owner, name, created) VALUES (?, ?, datetime('now'))",
            (owner, name),
        ).count == 1

    def host_entries(self, owners: Iterable[str] | None = None) -> dict[str, list[str]]:
        """owner -> names it gets hosts lines for."""
        rows = self._execute("SELECT owner, name FROM hosts ORDER BY owner, name").rows
        wanted = None if owners is None else set(owners)
        result: dict[str, list[str]] = {}
        for owner, name in rows:
            if wanted is None or owner in wanted:
                result.setdefault(owner, []).append(name)
        return result

    def host_entry_owners(self, names: Iterable[str]) -> set[str]:
        """Containers whose hosts files hold a line for one of these, or are these."""
        names = set(names)
        rows = self._execute("SELECT owner, name FROM hosts").rows
        return {owner for owner, name in rows if owner in names or name in names}

    # -- containers that are gone (watch, gc) -------------------------------

    def mark_gone(self, owner: str, now: float | None = None) -> float:
        """Note that a container no longer exists; returns for how long (seconds)."""
        now = time.time() if now is None else now
        self._execute("INSERT OR IGNORE INTO gone (owner, since) VALUES (?, ?)", (owner, now))
        since = self._execute("SELECT since FROM gone WHERE owner=?", (owner,)).rows[0][0]
        return max(0.0, now - since)

    def unmark_gone(self, owner: str) -> None:
        self._execute("DELETE FROM gone WHERE owner=?", (owner,))

    def forget(self, owner: str) -> None:
        """Everything recorded for a container."""
        self._execute("DELETE FROM rules WHERE owner=?", (owner,))
        self._execute("DELETE FROM hosts WHERE owner=? OR name=?", (owner, owner))
        self._execute("DELETE FROM hostconfigs WHERE owner=?", (owner,))
        self._execute("DELETE FROM egress WHERE owner=?", (owner,))
        self._execute("DELETE FROM gone WHERE owner=?", (owner,))

    # -- saved host configuration (save-hostconfig, start) -----------------

    def save_hostconfig(self, owner: str, config: dict) -> None:
        self._execute(
            "INSERT INTO hostconfigs (owner, config, saved) VALUES (?, ?, datetime('now')) "
            "ON CONFLICT(owner) DO UPDATE SET config=excluded.config, saved=excluded.saved",
            (owner, json.dumps(config, sort_keys=True)),
        )

    def hostconfig(self, owner: str) -> dict | None:
        rows = self._execute("SELECT config FROM hostconfigs WHERE owner=?", (owner,)).rows
        return self._decoded(json.loads, rows[0][0], f"host configuration of {owner}") if rows else None


def _open_store(directory: str, lock_timeout: float, read_only: bool, held: contextlib.ExitStack) -> sqlite3.Connection:
    """Check the directory and its files, take the lock (closed by HELD), create
    the store if a writer finds none, and connect."""
    path = os.path.join(directory, DB_NAME)
    try:
        dir_fd = _open_directory(directory, create=not read_only)
    except OSError as exc:
        if read_only and isinstance(exc, FileNotFoundError):
            return _empty_store()
        raise StoreError(f"cannot use state directory {directory}: {exc.strerror}") from None
    try:
        lock_fd = _open_lock(dir_fd, directory, read_only)
        if lock_fd is not None:
            held.callback(os.close, lock_fd)  # closing it releases the flock
            _lock(lock_fd, fcntl.LOCK_SH if read_only else fcntl.LOCK_EX, lock_timeout, directory)
        if not _check_db_files(dir_fd, directory):
            if read_only:
                return _empty_store()
            _create(dir_fd, directory)
    except OSError as exc:
        raise StoreError(f"cannot use state directory {directory}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    return _connect_checked(path, read_only, lock_timeout)


def _lock(fd: int, operation: int, timeout: float, directory: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {directory}: {exc.strerror}") from None
        if time.monotonic() >= deadline:
            raise StoreError(
                f"another docker-fw run holds the lock on {directory} (waited {timeout:.0f}s)"
            )
        time.sleep(0.05)


__all__ = ["Store", "state_dir", "DEFAULT_STATE_DIR", "AddressSpec"]
