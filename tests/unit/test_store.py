"""store: SQLite state in a temporary DOCKER_FW_STATE_DIR.

What needs root (another owner, a read-only mount, a full filesystem) runs in
a child process in a mount namespace of its own (``unshare -m``): this file
run as a script is that child.  Without root those tests are skipped (with
CI=true they fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from docker_fw import cli
from docker_fw.errors import FirewallError, StoreError
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.store import Store, state_dir
from fakes import FakeEngine, FakeFirewall


@pytest.fixture
def state(tmp_path, monkeypatch):
    directory = tmp_path / "state"
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(directory))
    return directory


def spec(owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest=".", **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), **kw)


A = spec(dport=80)
B = spec(kind=Kind.INTERNAL, source="db", dport=5432, filter=parse_filter("-m string --string 'a b' --algo bm"))
C = spec(owner="cache", kind=Kind.INTERNAL, source="web", dport=6379)
D = spec(owner="db", kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp", sport=1053)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_dir_from_environment(state):
    assert state_dir() == str(state)


def test_permissions(state):
    with Store.open() as store:
        with store.transaction():
            store.add(A)
        assert mode(state) == 0o700
        files = sorted(os.listdir(state))
        assert {"lock", "state.db"} <= set(files)
        for name in files:
            assert mode(state / name) == 0o600, name


def test_existing_directory_keeps_its_mode_and_files_are_private(state):
    # An existing directory is the admin's (one writable by others is refused,
    # see below); what docker-fw creates in it is 0600.
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    with Store.open():
        pass
    assert mode(state) == 0o755
    assert {p.name: mode(p) for p in state.iterdir()} == {"lock": 0o600, "state.db": 0o600}


def test_process_umask_is_restored(state):
    old = os.umask(0o022)
    try:
        with Store.open():
            assert os.umask(0o022) == 0o022  # not left at 077 while the store is open
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)


def test_add_is_idempotent_and_round_trips(state):
    with Store.open() as store:
        with store.transaction():
            assert store.add(A) is True
            assert store.add(B) is True
            assert store.add(D) is True
            assert store.add(A) is False
            assert store.add(B) is False
    with Store.open() as store:
        assert store.rules() == [D, A, B]  # by owner, then insertion
        assert store.rules(["web"]) == [A, B]
        assert store.rules([]) == []
        assert store.contains(B) and not store.contains(C)
        assert store.owners() == ["db", "web"]


def test_rules_differing_only_in_filter_or_port_are_distinct(state):
    variants = [A, spec(dport=81), spec(dport=80, filter=("!", "-i", "docker0")), spec(dport=80, proto="udp")]
    with Store.open() as store:
        with store.transaction():
            assert [store.add(v) for v in variants] == [True] * 4
        assert len(store.rules()) == 4


def test_transaction_rolls_back_on_exception(state):
    with Store.open() as store:
        with store.transaction():
            store.add(A)
        with pytest.raises(RuntimeError, match="kernel said no"):
            with store.transaction():
                assert store.add(B)
                assert store.add(C)
                assert store.drop_owner("web") == 2
                raise RuntimeError("kernel said no")
        assert store.rules() == [A]
    with Store.open() as store:
        assert store.rules() == [A]


def test_first_transaction_rolled_back_leaves_nothing(state):
    with Store.open() as store:
        with pytest.raises(KeyError):
            with store.transaction():
                store.add(A)
                raise KeyError("boom")
    with Store.open() as store:
        assert store.rules() == []
        assert store.owners() == []


def test_drop_owner(state):
    with Store.open() as store:
        with store.transaction():
            for s in (A, B, C):
                store.add(s)
            assert store.drop_owner("web") == 2
            assert store.drop_owner("web") == 0
        assert store.rules() == [C]


def test_referrers(state):
    with Store.open() as store:
        with store.transaction():
            for s in (A, B, C, D):
                store.add(s)
        # B (owner web) names db; C (owner cache) names web
        assert store.referrers(["db"]) == {"web"}
        assert store.referrers(["web"]) == {"cache"}
        assert store.referrers(["web", "db"]) == {"web", "cache"}
        assert store.referrers(["cache"]) == set()
        assert store.referrers([]) == set()


LOCKER = textwrap.dedent(
    """
    import json, sys
    from docker_fw.errors import StoreError
    from docker_fw.store import Store
    try:
        with Store.open(sys.argv[1], lock_timeout=0.2, read_only=sys.argv[2] == "ro") as store:
            print(json.dumps({"opened": True, "rules": len(store.rules())}))
    except StoreError as exc:
        print(json.dumps({"opened": False, "error": str(exc), "exit_code": exc.exit_code}))
    """
)


def open_elsewhere(directory, read_only: bool = False) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", LOCKER, str(directory), "ro" if read_only else "rw"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_second_opener_is_refused_while_the_first_holds_the_lock(state):
    with Store.open() as store:
        with store.transaction():
            store.add(A)
        other = open_elsewhere(state)
        assert other["opened"] is False
        assert other["exit_code"] == 5
        assert "lock" in other["error"] and str(state) in other["error"]
    # released when the first run ends
    assert open_elsewhere(state) == {"opened": True, "rules": 1}


def test_second_opener_in_a_thread_is_refused(state):
    import threading

    result = {}

    def second():
        try:
            with Store.open(str(state), lock_timeout=0.2):
                result["opened"] = True
        except StoreError as exc:
            result["error"] = exc

    with Store.open():
        t = threading.Thread(target=second)
        t.start()
        t.join(timeout=30)
    assert not t.is_alive()
    assert "opened" not in result
    assert isinstance(result["error"], StoreError) and result["error"].exit_code == 5


def test_unusable_directory_is_a_store_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(blocker / "state"))
    with pytest.raises(StoreError, match="cannot use state directory") as info:
        with Store.open():
            pass
    assert info.value.exit_code == 5


# --- what the store refuses: one line, exit 5, nothing changed ---------------------------


def refusal(directory, read_only: bool = False) -> str:
    """The one-line StoreError (exit 5) that opening the store at DIRECTORY gives."""
    with pytest.raises(StoreError) as info:
        with Store.open(str(directory), lock_timeout=0.2, read_only=read_only):
            pass
    assert info.value.exit_code == 5
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


@pytest.fixture
def made(state):
    """A store holding A and B."""
    with Store.open(str(state)) as store:
        with store.transaction():
            store.add(A)
            store.add(B)
    return state


def sql(path, *statements: str) -> None:
    """Change a database behind docker-fw's back."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for statement in statements:
            conn.execute(statement)


def _empty(db):
    db.write_bytes(b"")


def _garbage(db):
    db.write_bytes(b"these are not the rules you are looking for\n" * 200)


def _truncated(db):
    os.truncate(db, db.stat().st_size // 2)


def _newer_schema(db):
    sql(db, "UPDATE meta SET value='3' WHERE key='schema'")


def _unknown_schema(db):
    sql(db, "UPDATE meta SET value='banana' WHERE key='schema'")


def _no_schema_row(db):
    sql(db, "DELETE FROM meta WHERE key='schema'")


def _another_database(db):
    db.unlink()
    sql(db, "CREATE TABLE notes (text TEXT)", "INSERT INTO notes VALUES ('hello')")


def _table_missing(db):
    sql(db, "DROP TABLE rules")


DAMAGE = [
    (_empty, "is empty (damaged)"),
    (_garbage, "is damaged (file is not a database)"),
    (_truncated, "is damaged"),
    (_newer_schema, "has schema version '3', this docker-fw knows 2: it was written by a newer docker-fw"),
    (_unknown_schema, "has schema version 'banana'"),
    (_no_schema_row, "records no schema version"),
    (_another_database, "is not a docker-fw store"),
    (_table_missing, "table rules is missing"),
]


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
@pytest.mark.parametrize("damage, needle", DAMAGE, ids=[d.__name__.strip("_") for d, _ in DAMAGE])
def test_a_damaged_store_is_refused_never_read_as_empty(made, damage, needle, read_only):
    db = made / "state.db"
    damage(db)
    before = db.read_bytes()
    message = refusal(made, read_only)
    assert needle in message and str(db) in message
    if "newer" not in needle:
        assert "restore it from a backup, or move it away to start afresh" in message
    assert db.read_bytes() == before  # not "repaired" into an empty store


def test_damage_found_by_a_query_is_a_store_error(made):
    with Store.open(str(made)) as store:
        sql(made / "state.db", "DROP TABLE gone")  # behind the open store's back
        with pytest.raises(StoreError, match=r"state store .*state.db: no such table: gone") as info:
            with store.transaction():
                store.mark_gone("web")
        assert info.value.exit_code == 5
        with store.transaction():  # the store is still usable
            assert store.add(C)


def test_an_unreadable_record_is_a_store_error(made):
    sql(made / "state.db", "UPDATE rules SET filter='[unclosed' WHERE owner='web'")
    with Store.open(str(made), read_only=True) as store:
        with pytest.raises(StoreError, match=r"holds an unreadable rule, id \d+ \(Expecting .*\): restore it") as info:
            store.rules()
    assert info.value.exit_code == 5


def test_store_is_created_whole_and_a_half_made_one_is_replaced(state):
    state.mkdir(mode=0o700)
    # What a crash while creating leaves: never taken for the store.
    (state / "state.db.new").write_bytes(b"half")
    (state / "state.db.new-journal").write_bytes(b"half")
    with Store.open(str(state)) as store:
        assert store.rules() == []
    assert sorted(os.listdir(state)) == ["lock", "state.db"]
    with contextlib.closing(sqlite3.connect(state / "state.db")) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchall() == [("2",)]


# --- the directory and its files ---------------------------------------------------------


def test_symlinked_state_directory_is_refused(made, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(made)
    assert "is a symlink" in refusal(link)
    assert "is a symlink" in refusal(link, read_only=True)


@pytest.mark.parametrize("name", ["state.db", "lock", "state.db-journal", "state.db-wal"])
def test_symlinked_file_in_the_state_directory_is_refused(made, tmp_path, name):
    target = tmp_path / "elsewhere"
    if name == "state.db":
        shutil.copy(made / "state.db", target)  # a sound store: refused all the same
    (made / name).unlink(missing_ok=True)
    (made / name).symlink_to(target)
    for read_only in (False, True):
        message = refusal(made, read_only)
        assert message.startswith(f"{made / name} is a symlink")
    if name != "state.db":
        assert not target.exists(), "docker-fw created the file the symlink points to"


def test_a_lock_that_is_not_a_file_is_refused(made):
    (made / "lock").unlink()
    os.mkfifo(made / "lock", 0o600)  # an open of a FIFO could hang: it must not
    assert refusal(made) == f"{made / 'lock'} is not a regular file"


@pytest.mark.parametrize(
    "mode, needle",
    [
        (0o770, "is group-writable: chmod 700 it"),
        (0o777, "is world-writable: chmod 700 it"),
        # what DOCKER_FW_STATE_DIR=/tmp used to mean
        (0o1777, "is world-writable (shared, like /tmp): give docker-fw a directory of its own"),
    ],
)
def test_state_directory_writable_by_others_is_refused(made, mode, needle):
    os.chmod(made, mode)
    for read_only in (False, True):
        assert refusal(made, read_only) == f"state directory {made} {needle}"


def test_state_file_writable_by_others_is_refused(made):
    os.chmod(made / "state.db", 0o666)
    assert refusal(made, read_only=True) == f"state file {made / 'state.db'} is world-writable: chmod 600 it"


def test_state_directory_inside_a_directory_others_can_change_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    message = refusal(shared / "state")
    assert message == (
        f"state directory {shared / 'state'} is inside {shared}, which is world-writable: "
        "put it where only root can change its parents"
    )
    assert not (shared / "state").exists()
    os.chmod(shared, 0o1777)  # sticky, like /tmp: no one else can rename what is ours
    with Store.open(str(shared / "state")):
        pass


def test_a_store_that_does_not_exist_reads_as_empty_and_is_not_created(state):
    with Store.open(str(state), read_only=True) as store:
        assert store.rules() == [] and store.owners() == [] and store.hostconfig("web") is None
        with pytest.raises(StoreError, match="open read-only"):
            with store.transaction():
                pass
    assert not state.exists()
    state.mkdir(mode=0o700)  # a directory, but no store in it yet
    with Store.open(str(state), read_only=True) as store:
        assert store.rules() == []
    assert os.listdir(state) == []


def test_read_only_open_reads_and_refuses_writes(made):
    with Store.open(str(made), read_only=True) as store:
        assert store.rules() == [A, B]
        with pytest.raises(StoreError) as info:
            with store.transaction():
                store.add(C)
        assert info.value.exit_code == 5
    with Store.open(str(made), read_only=True) as store:
        assert store.rules() == [A, B]


def test_readers_share_the_lock_and_writers_exclude_them(made):
    with Store.open(str(made), read_only=True):
        assert open_elsewhere(made, read_only=True) == {"opened": True, "rules": 2}
        writer = open_elsewhere(made)
        assert writer["opened"] is False and "holds the lock" in writer["error"]
    with Store.open(str(made)):
        reader = open_elsewhere(made, read_only=True)
        assert reader["opened"] is False and "holds the lock" in reader["error"]


def test_reader_without_a_lock_file(made):
    (made / "lock").unlink()
    with Store.open(str(made), read_only=True) as store:
        assert store.rules() == [A, B]
    assert not (made / "lock").exists()


CRASHER = textwrap.dedent(
    """
    import os, sys
    from docker_fw.model import Kind, RuleSpec, parse_address
    from docker_fw.store import Store
    with Store.open(sys.argv[1]) as store:
        store._conn.execute("PRAGMA cache_size=1")  # changed pages reach state.db before the commit
        with store.transaction():
            for n in range(300):
                store.add(RuleSpec(owner=f"c{n}", kind=Kind.ADD, source=parse_address(f"10.1.{n // 200}.{n % 200}"),
                                   dest=parse_address("."), dport=80))
            os._exit(9)  # killed mid-write: a hot journal is left
    """
)


def crash_mid_write(directory) -> None:
    subprocess.run([sys.executable, "-c", CRASHER, str(directory)], timeout=60)
    assert (directory / "state.db-journal").stat().st_size > 0


def test_reader_rolls_back_what_a_crash_left(made):
    crash_mid_write(made)
    with Store.open(str(made), read_only=True) as store:
        assert store.rules() == [A, B]
    assert not (made / "state.db-journal").exists()


# --- through the command line: a fake engine and firewall, the real store ----------------


class NoIp6:
    """Stands in for Iptables(family=6) on a host without ip6tables."""

    def save(self, table: str = "filter"):
        raise FirewallError("ip6tables-save: not found")

    def restore(self, *args, **kwargs):
        raise AssertionError("nothing is restored without ip6tables")


class CliWorld:
    """cli.run against fakes.FakeEngine (for engine.Engine: one running container,
    'web') and fakes.FakeFirewall (for iptables.Iptables, IPv4; no ip6tables),
    with the real store named by DOCKER_FW_STATE_DIR."""

    def __init__(self, engine_root):
        self.engine = FakeEngine(engine_root)
        self.engine.add("web", state="running")
        self.firewall = FakeFirewall()

    def _backends(self, verbose):
        return self.engine, self.firewall, NoIp6()

    def run(self, argv: list[str]) -> dict:
        self.engine.forget()  # a new docker-fw run
        out: list[str] = []
        err: list[str] = []
        code = cli.run(argv, out=out.append, err=err.append, backends=self._backends)
        return {"code": code, "out": out, "err": err, "restores": len(self.firewall.batches)}


ADD_WEB = ["add", "web", "--source", "203.0.113.0/24", "--dport", "80"]
ADD_MORE = ["add", "web", "--source", "198.51.100.0/24", "--dport", "443"]
WEB_RULE = "docker-fw add web --source=203.0.113.0/24 --dest=. --dport=80 --protocol=tcp"


def one_line_exit_5(result: dict) -> str:
    assert result["code"] == 5, result
    assert len(result["err"]) == 1 and "\n" not in result["err"][0] and "Traceback" not in result["err"][0], result
    return result["err"][0]


@pytest.fixture
def world(tmp_path, state):
    return CliWorld(tmp_path / "engine")


@pytest.mark.parametrize("damage", [_empty, _garbage, _truncated, _newer_schema], ids=lambda d: d.__name__.strip("_"))
def test_replay_on_a_damaged_store_changes_nothing(world, state, damage):
    assert world.run(ADD_WEB)["code"] == 0
    live = world.firewall.ours("web")
    assert live and world.firewall.batches
    damage(state / "state.db")
    for argv in (["replay"], ADD_MORE, ["drop", "web"], ["ls"], ["check"]):
        batches = len(world.firewall.batches)
        message = one_line_exit_5(world.run(argv))
        assert message.startswith(f"docker-fw {argv[0]}: state store {state / 'state.db'} ")
        assert len(world.firewall.batches) == batches, f"{argv}: the firewall was changed"
    assert world.firewall.ours("web") == live


def test_ls_and_check_without_a_store_create_nothing(world, state):
    result = world.run(["ls"])
    assert (result["code"], result["out"], result["err"]) == (0, [], [])
    result = world.run(["check"])
    assert result["code"] in (0, 1) and result["err"] == []  # drift (init not run) is not a store problem
    assert not any("web" in line for line in result["out"])  # no record, no rule missing
    assert world.run(["replay", "--dry-run"])["code"] in (0, 1)
    assert world.run(["start", "--dry-run", "web"])["code"] == 0
    assert not state.exists(), "a read-only command created the state directory"


def test_cli_refuses_an_unsafe_state_directory(world, state):
    assert world.run(ADD_WEB)["code"] == 0
    os.chmod(state, 0o777)
    for argv in (["replay"], ["ls"]):
        message = one_line_exit_5(world.run(argv))
        assert message == f"docker-fw {argv[0]}: state directory {state} is world-writable: chmod 700 it"
    assert len(world.firewall.batches) == 1


# --- root: another owner, a read-only filesystem, a full one -------------------------------


def needs_root() -> None:
    reason = ""
    if os.geteuid() != 0:
        reason = "needs root (file owners, mount namespaces)"
    elif shutil.which("unshare") is None or shutil.which("mount") is None:
        reason = "needs unshare and mount"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"store tests that need root cannot run under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


NOBODY = 65534


def test_foreign_owned_state_directory_or_file_is_refused(made, tmp_path):
    needs_root()
    os.chown(made / "state.db", NOBODY, NOBODY)
    assert refusal(made, read_only=True) == (
        f"state file {made / 'state.db'} is owned by uid {NOBODY}, not root that runs docker-fw: chown it"
    )
    os.chown(made / "state.db", 0, 0)
    os.chown(made, NOBODY, NOBODY)
    for read_only in (False, True):
        assert refusal(made, read_only) == (
            f"state directory {made} is owned by uid {NOBODY}, not root that runs docker-fw: chown it"
        )
    home = tmp_path / "alice"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)  # she could rename the state directory away
    assert "which is owned by uid 65534" in refusal(home / "state")


def in_mount_namespace(steps: list[dict]) -> list[dict]:
    """Run STEPS in a child process in a mount namespace of its own (see _child)."""
    needs_root()
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, json.dumps(steps)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_read_only_commands_work_on_a_read_only_state_directory(world, state, tmp_path):
    assert world.run(ADD_WEB)["code"] == 0
    (state / "lock").unlink()  # nor is there a lock file to take
    ro = {"op": "mount", "argv": ["-o", "bind,ro", str(state), str(state)]}
    results = in_mount_namespace([
        ro,
        {"op": "cli", "argv": ["ls"], "state": str(state), "engine": str(tmp_path / "engine2")},
        {"op": "cli", "argv": ["check"], "state": str(state), "engine": str(tmp_path / "engine2")},
        {"op": "cli", "argv": ["replay", "--dry-run"], "state": str(state), "engine": str(tmp_path / "engine2")},
        {"op": "cli", "argv": ["start", "--dry-run", "web"], "state": str(state), "engine": str(tmp_path / "engine2")},
        {"op": "cli", "argv": ADD_MORE, "state": str(state), "engine": str(tmp_path / "engine2")},
        {"op": "cli", "argv": ["gc", "--dry-run"], "state": str(state), "engine": str(tmp_path / "engine2")},
    ])
    _, ls, check, dry_replay, dry_start, add, gc = results
    assert (ls["code"], ls["out"], ls["err"]) == (0, [WEB_RULE], [])
    assert check["code"] in (0, 1) and check["err"] == [] and any("missing" in l for l in check["out"])
    assert dry_replay["code"] == 1 and dry_replay["err"] == []
    assert (dry_start["code"], dry_start["out"]) == (0, ["web"])
    for result in (add, gc):  # they write: one line, nothing applied
        assert "Read-only file system" in one_line_exit_5(result)
        assert result["restores"] == 0
    assert os.listdir(state) == ["state.db"]


def test_read_only_filesystem_with_a_crashed_write_is_one_line(made, tmp_path):
    crash_mid_write(made)
    [_, ls] = in_mount_namespace([
        {"op": "mount", "argv": ["-o", "bind,ro", str(made), str(made)]},
        {"op": "cli", "argv": ["ls"], "state": str(made), "engine": str(tmp_path / "engine")},
    ])
    assert "holds a change interrupted by a crash" in one_line_exit_5(ls)


def test_disk_full_is_one_line_and_changes_nothing(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir(mode=0o700)
    state, fresh = disk / "state", disk / "fresh"
    engine = str(tmp_path / "engine")  # outside the small filesystem
    steps = [
        {"op": "mount", "argv": ["-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(disk)]},
        {"op": "cli", "argv": ADD_WEB, "state": str(state), "engine": engine},
        {"op": "fill", "path": str(disk / "filler"), "leave": 8192},
        {"op": "cli", "argv": ADD_MORE, "state": str(state), "engine": engine},
        {"op": "cli", "argv": ["ls"], "state": str(state), "engine": engine},
        {"op": "fill", "path": str(disk / "filler2"), "leave": 0},
        {"op": "cli", "argv": ADD_WEB, "state": str(fresh), "engine": engine + "-fresh"},
        {"op": "listdir", "path": str(fresh)},
    ]
    _, first, _, full, ls, _, fresh_add, fresh_files = in_mount_namespace(steps)
    assert first["code"] == 0 and first["restores"] == 1
    message = one_line_exit_5(full)
    assert message == (
        f"docker-fw add: cannot write the state store {state / 'state.db'}: database or disk is full: "
        "free space there and run the command again"
    )
    assert full["restores"] == 1, "the firewall was changed although the record could not be"
    assert (ls["code"], ls["out"]) == (0, [WEB_RULE])  # the record is as it was
    assert "cannot create the state store" in one_line_exit_5(fresh_add)
    assert fresh_add["restores"] == 0
    assert fresh_files["files"] == ["lock"], "a half-made state.db was left"


def _child(steps: list[dict]) -> list[dict]:
    """In the mount namespace: mount, fill a filesystem, run docker-fw commands."""
    results: list[dict] = []
    worlds: dict[str, CliWorld] = {}
    for step in steps:
        if step["op"] == "mount":
            subprocess.run(["mount", *step["argv"]], check=True, timeout=30)
            results.append({})
        elif step["op"] == "fill":
            free = os.statvfs(os.path.dirname(step["path"]))
            size = max(0, free.f_bavail * free.f_frsize - step["leave"])
            with open(step["path"], "wb") as filler, contextlib.suppress(OSError):
                filler.write(b"\0" * size)
            results.append({})
        elif step["op"] == "listdir":
            results.append({"files": sorted(os.listdir(step["path"]))})
        else:
            os.environ["DOCKER_FW_STATE_DIR"] = step["state"]
            world = worlds.setdefault(step["engine"], CliWorld(step["engine"]))
            results.append(world.run(step["argv"]))
    return results


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
