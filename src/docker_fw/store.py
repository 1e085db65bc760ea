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
-- add-two-ways: container OWNER gets an /etc/hosts line for container NAME
CREATE TABLE IF NOT EXISTS hosts (
    owner   TEXT NOT NULL,
    name    TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
-- containers that no longer exist, since when (for gc)
CREATE TABLE IF NOT EXISTS gone (
    owner   TEXT PRIMARY KEY,
    since   REAL NOT NULL               -- unix time
);
-- save-hostconfig: the relevant host configuration and the host ports the
-- engine assigned, as JSON
CREATE TABLE IF NOT EXISTS hostconfigs (
    owner   TEXT PRIMARY KEY,
    config  TEXT NOT NULL,
    saved   TEXT NOT NULL
);
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
                # A directory we create is 0700; an existing one is left as the
                # admin made it (DOCKER_FW_STATE_DIR=/tmp must not chmod /tmp),
                # our files in it are 0600 either way.
                os.makedirs(directory, mode=0o700, exist_ok=True)
                lock_fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot use state directory {directory}: {exc.strerror}") from None
            try:
                _lock(lock_fd, lock_timeout, directory)
                try:
                    # check_same_thread=False: 'start --jobs' reads and writes from
                    # worker threads, always one at a time (the service serialises).
                    conn = sqlite3.connect(
                        os.path.join(directory, "state.db"), isolation_level=None, check_same_thread=False
                    )
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
        """Every container docker-fw holds a record for."""
        rows = self.conn.execute(
            "SELECT owner FROM rules UNION SELECT owner FROM hosts UNION SELECT name FROM hosts "
            "UNION SELECT owner FROM hostconfigs ORDER BY 1"
        )
        return [r[0] for r in rows]

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
        """Forget a container's rules, and the hosts lines its add-two-ways rules gave others."""
        self.conn.execute("DELETE FROM hosts WHERE name=?", (owner,))
        return self.conn.execute("DELETE FROM rules WHERE owner=?", (owner,)).rowcount

    def rename(self, old: str, new: str) -> int:
        """Re-key everything recorded for container OLD to NEW (after 'docker rename'):
        its rules, rules naming it, hosts entries, saved host configuration.
        The caller checks that nothing is recorded for NEW.  Returns how many of
        OLD's own rules moved."""
        moved = self.conn.execute("UPDATE rules SET owner=? WHERE owner=?", (new, old)).rowcount
        self.conn.execute("UPDATE rules SET source=? WHERE source=?", (new, old))
        self.conn.execute("UPDATE rules SET dest=? WHERE dest=?", (new, old))
        self.conn.execute("UPDATE hosts SET owner=? WHERE owner=?", (new, old))
        self.conn.execute("UPDATE hosts SET name=? WHERE name=?", (new, old))
        self.conn.execute("UPDATE hostconfigs SET owner=? WHERE owner=?", (new, old))
        self.conn.execute("DELETE FROM gone WHERE owner=?", (old,))
        return moved

    # -- settings -------------------------------------------------------------

    def init_networks(self) -> list[str] | None:
        """The networks 'init --network' limited init to; None: every bridge network."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='init_networks'").fetchone()
        return json.loads(row[0]) if row else None

    def set_init_networks(self, names: list[str] | None) -> None:
        if names is None:
            self.conn.execute("DELETE FROM meta WHERE key='init_networks'")
        else:
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('init_networks', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps(list(names)),),
            )

    # -- /etc/hosts entries (add-two-ways) ---------------------------------

    def add_host_entry(self, owner: str, name: str) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO hosts (owner, name, created) VALUES (?, ?, datetime('now'))",
            (owner, name),
        )
        return cur.rowcount == 1

    def host_entries(self, owners: Iterable[str] | None = None) -> dict[str, list[str]]:
        """owner -> names it gets hosts lines for."""
        rows = self.conn.execute("SELECT owner, name FROM hosts ORDER BY owner, name").fetchall()
        wanted = None if owners is None else set(owners)
        result: dict[str, list[str]] = {}
        for owner, name in rows:
            if wanted is None or owner in wanted:
                result.setdefault(owner, []).append(name)
        return result

    def host_entry_owners(self, names: Iterable[str]) -> set[str]:
        """Containers whose hosts files hold a line for one of these, or are these."""
        names = set(names)
        rows = self.conn.execute("SELECT owner, name FROM hosts").fetchall()
        return {owner for owner, name in rows if owner in names or name in names}

    # -- containers that are gone (watch, gc) -------------------------------

    def mark_gone(self, owner: str, now: float | None = None) -> float:
        """Note that a container no longer exists; returns for how long (seconds)."""
        now = time.time() if now is None else now
        self.conn.execute("INSERT OR IGNORE INTO gone (owner, since) VALUES (?, ?)", (owner, now))
        since = self.conn.execute("SELECT since FROM gone WHERE owner=?", (owner,)).fetchone()[0]
        return max(0.0, now - since)

    def unmark_gone(self, owner: str) -> None:
        self.conn.execute("DELETE FROM gone WHERE owner=?", (owner,))

    def forget(self, owner: str) -> None:
        """Everything recorded for a container."""
        self.conn.execute("DELETE FROM rules WHERE owner=?", (owner,))
        self.conn.execute("DELETE FROM hosts WHERE owner=? OR name=?", (owner, owner))
        self.conn.execute("DELETE FROM hostconfigs WHERE owner=?", (owner,))
        self.conn.execute("DELETE FROM gone WHERE owner=?", (owner,))

    # -- saved host configuration (save-hostconfig, start) -----------------

    def save_hostconfig(self, owner: str, config: dict) -> None:
        self.conn.execute(
            "INSERT INTO hostconfigs (owner, config, saved) VALUES (?, ?, datetime('now')) "
            "ON CONFLICT(owner) DO UPDATE SET config=excluded.config, saved=excluded.saved",
            (owner, json.dumps(config, sort_keys=True)),
        )

    def hostconfig(self, owner: str) -> dict | None:
        row = self.conn.execute("SELECT config FROM hostconfigs WHERE owner=?", (owner,)).fetchone()
        return json.loads(row[0]) if row else None


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
