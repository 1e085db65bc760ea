"""docker-fw's own state store: recorded rules, in SQLite.

Default location ``/var/lib/docker-fw/`` (not inside Docker's directories, a
known issue of the seed), overridable with ``DOCKER_FW_STATE_DIR``.  The
directory is 0700 and its files 0600.  One exclusive lock (``flock`` on
``lock``) serialises whole runs, so two docker-fw processes never interleave
their read-plan-apply-record steps; SQLite's journal makes every write
all-or-nothing, even across a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator

from .errors import StoreError
from .model import AddressSpec, Kind, RuleSpec, parse_address

DEFAULT_STATE_DIR = "/var/lib/docker-fw"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rules (
    id      INTEGER PRIMARY KEY,
    owner   TEXT NOT NULL,           -- container name
    action  TEXT NOT NULL,           -- add, add-input, add-internal
    source  TEXT NOT NULL,           -- address spec as written: '.', '/', name, CIDR
    dest    TEXT NOT NULL,
    proto   TEXT NOT NULL,
    sport   INTEGER NOT NULL,        -- 0: any
    dport   INTEGER NOT NULL,        -- 0: any
    filter  TEXT NOT NULL,           -- JSON list of iptables tokens
    created TEXT NOT NULL,
    UNIQUE (owner, action, source, dest, proto, sport, dport, filter)
);
CREATE INDEX IF NOT EXISTS rules_owner ON rules (owner);
"""


def state_dir() -> str:
    return os.environ.get("DOCKER_FW_STATE_DIR") or DEFAULT_STATE_DIR


def _row_to_spec(row: sqlite3.Row) -> RuleSpec:
    return RuleSpec(
        owner=row["owner"],
        kind=Kind.from_action(row["action"]),
        source=parse_address(row["source"]),
        dest=parse_address(row["dest"]),
        proto=row["proto"],
        sport=row["sport"],
        dport=row["dport"],
        filter=tuple(json.loads(row["filter"])),
    )


def _spec_values(spec: RuleSpec) -> tuple:
    return (
        spec.owner,
        spec.kind.action,
        spec.source.text,
        spec.dest.text,
        spec.proto,
        spec.sport,
        spec.dport,
        json.dumps(list(spec.filter)),
    )


class Store:
    """Open with ``Store.open()`` as a context manager: it holds the lock."""

    def __init__(self, directory: str, conn: sqlite3.Connection, lock_fd: int):
        self.directory = directory
        self.conn = conn
        self._lock_fd = lock_fd

    @classmethod
    @contextlib.contextmanager
    def open(cls, directory: str | None = None, lock_timeout: float = 30.0) -> Iterator["Store"]:
        directory = directory or state_dir()
        old_umask = os.umask(0o077)
        try:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
                lock_fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot use state directory {directory}: {exc.strerror}") from None
            try:
                _lock(lock_fd, lock_timeout, directory)
                try:
                    conn = sqlite3.connect(os.path.join(directory, "state.db"), isolation_level=None)
                    conn.row_factory = sqlite3.Row
                    conn.execute("PRAGMA synchronous=FULL")
                    conn.executescript(_SCHEMA)
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot open the state store in {directory}: {exc}") from None
            finally:
                os.umask(old_umask)
            store = cls(directory, conn, lock_fd)
            try:
                yield store
            finally:
                conn.close()
        finally:
            os.umask(old_umask)
            with contextlib.suppress(NameError, OSError):
                os.close(lock_fd)  # releases the flock

    # -- queries ---------------------------------------------------------

    def rules(self, owners: Iterable[str] | None = None) -> list[RuleSpec]:
        if owners is None:
            rows = self.conn.execute("SELECT * FROM rules ORDER BY owner, id").fetchall()
        else:
            owners = list(owners)
            marks = ",".join("?" * len(owners))
            rows = self.conn.execute(
                f"SELECT * FROM rules WHERE owner IN ({marks}) ORDER BY owner, id", owners
            ).fetchall() if owners else []
        return [_row_to_spec(r) for r in rows]

    def owners(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT owner FROM rules ORDER BY owner")]

    def referrers(self, names: Iterable[str]) -> set[str]:
        """Owners of rules that name one of these containers as source or dest."""
        names = list(names)
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            f"SELECT DISTINCT owner FROM rules WHERE source IN ({marks}) OR dest IN ({marks})",
            names + names,
        )
        return {r[0] for r in rows}

    def contains(self, spec: RuleSpec) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM rules WHERE owner=? AND action=? AND source=? AND dest=? AND "
            "proto=? AND sport=? AND dport=? AND filter=?",
            _spec_values(spec),
        ).fetchone()
        return row is not None

    # -- changes (inside transaction()) -----------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: commit when the block succeeds, roll back otherwise.

        Callers apply the firewall inside the block, so the record changes
        only when the kernel accepted the batch.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the state store: {exc}") from None
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the state store: {exc}") from None

    def add(self, spec: RuleSpec) -> bool:
        """Record a rule; False when it was recorded already."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO rules (owner, action, source, dest, proto, sport, dport, "
            "filter, created) VALUES (?,?,?,?,?,?,?,?, datetime('now'))",
            _spec_values(spec),
        )
        return cur.rowcount == 1

    def drop_owner(self, owner: str) -> int:
        return self.conn.execute("DELETE FROM rules WHERE owner=?", (owner,)).rowcount


def _lock(fd: int, timeout: float, directory: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
