"""store: SQLite state in a temporary DOCKER_FW_STATE_DIR."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from docker_fw.errors import StoreError
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.store import Store, state_dir


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
    # DOCKER_FW_STATE_DIR=/tmp must not chmod /tmp: an existing directory is
    # the admin's; what docker-fw creates in it is 0600.
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
        with Store.open(sys.argv[1], lock_timeout=0.2) as store:
            print(json.dumps({"opened": True, "rules": len(store.rules())}))
    except StoreError as exc:
        print(json.dumps({"opened": False, "error": str(exc), "exit_code": exc.exit_code}))
    """
)


def open_elsewhere(directory) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", LOCKER, str(directory)], capture_output=True, text=True, timeout=60
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
