"""transaction.py and the backend seam: the order of batches, steps and compensation."""

from __future__ import annotations

import pytest

from fakes import FakeFirewall

from docker_fw.backends import FirewallBackend
from docker_fw.backends.iptables.backend import IptablesBackend
from docker_fw.errors import EngineError, FirewallError
from docker_fw.model import Kind
from docker_fw.resolve import ResolvedRule
from docker_fw.store import Store
from docker_fw.transaction import transaction


class Recorder(IptablesBackend):
    """An IptablesBackend over a FakeFirewall that logs its applies into a shared list."""

    def __init__(self, family: int, log: list[str], fail: bool = False):
        super().__init__(FakeFirewall(), family)
        self.log, self.fail = log, fail

    def apply(self, live, changes) -> None:
        if self.fail:
            raise FirewallError(f"IPv{self.family} batch refused")
        self.log.append(f"apply{self.family}")


@pytest.fixture
def store(tmp_path):
    with Store.open(str(tmp_path / "state")) as opened:
        yield opened


def test_both_iptables_instances_implement_the_protocol():
    assert all(isinstance(IptablesBackend(FakeFirewall(), f), FirewallBackend) for f in (4, 6))


def test_steps_run_after_every_batch_and_the_store_commits_last(store):
    log: list[str] = []
    backends = [Recorder(4, log), Recorder(6, log)]
    with transaction(backends, store) as tx:
        store.set_init_networks(["appnet"])
        for b in backends:
            tx.add(b, [])
        tx.after_apply(lambda: log.append("hosts"))
        tx.on_failure(lambda: log.append("undo"))
    assert log == ["apply4", "apply6", "hosts"]
    assert store.init_networks() == ["appnet"]


def test_a_step_that_fails_after_a_batch_rolls_back_the_store_then_compensates(store):
    log: list[str] = []
    backends = [Recorder(4, log)]

    def failing() -> None:
        raise EngineError("hosts file not writable")

    with pytest.raises(EngineError), transaction(backends, store) as tx:
        store.set_init_networks(["appnet"])
        tx.add(backends[0], [])
        tx.after_apply(failing)
        tx.on_failure(lambda: log.append(f"undo, store holds {store.init_networks()}"))
    assert log == ["apply4", "undo, store holds None"]


def test_a_refused_second_batch_compensates_the_first(store):
    log: list[str] = []
    backends = [Recorder(4, log), Recorder(6, log, fail=True)]
    with pytest.raises(FirewallError), transaction(backends, store) as tx:
        for b in backends:
            tx.add(b, [])
        tx.after_apply(lambda: log.append("hosts"))
        tx.on_failure(lambda: log.append("undo"))
    assert log == ["apply4", "undo"]


def test_nothing_applied_means_nothing_to_compensate(store):
    log: list[str] = []
    backends = [Recorder(4, log, fail=True)]
    with pytest.raises(FirewallError), transaction(backends, store) as tx:
        tx.add(backends[0], [])
        tx.on_failure(lambda: log.append("undo"))
    assert log == []


def test_expressible_says_why_not():
    v4, v6 = IptablesBackend(FakeFirewall(), 4), IptablesBackend(FakeFirewall(), 6)
    rule = ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", dport=80)
    assert v4.expressible(rule) is None
    assert "IPv4 rule, not an IPv6 one" in v6.expressible(rule)
    unwritable = ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp",
                              filter=("-m", "comment", "--comment", "a\nb"))
    assert "iptables-restore reads it back unchanged" in v4.expressible(unwritable)
