"""'init --log-blocked': the NFLOG jumps end FORWARD, are recorded, kept and removed.

On the in-memory kernel (backends.iptables.walk) over Docker 20.10's layout;
tests/netns and tests/e2e prove the rules with the real iptables and packets.
"""

from __future__ import annotations

import pytest

from docker_fw.errors import UsageError

from docker_fw.backends.iptables.logrules import CHAIN_LOG, internal_log_jump, log_comment, log_jump, plan_log
from docker_fw.backends.iptables.walk import Packet, forward
from test_service import FIXED_80, World, store, world  # noqa: F401 (fixtures)


BRIDGES = ("docker0", "br-0123456789ab")  # the fake engine's two bridge networks


def logs_last(world: World) -> bool:
    """Whether FORWARD ends with exactly one logging jump per bridge."""
    rules = world.firewall.table.chain_rules("FORWARD")
    jumps = [r.args for r in rules if r.target() == CHAIN_LOG and r.args[0] == "-o"]
    tail = [r.args for r in rules[-len(BRIDGES):]]
    return sorted(jumps) == sorted(tail) == sorted(log_jump(b) for b in BRIDGES)


def logs_before_internal_drops(world: World) -> bool:
    """Whether each of Docker's '-i B -o B -j DROP' (icc disabled) has our jump just above it."""
    rules = world.firewall.table.chain_rules("FORWARD")
    drops = [i for i, r in enumerate(rules) if r.target() == "DROP" and r.args[0] == "-i"]
    jumps = [r for r in rules if r.target() == CHAIN_LOG and r.args[0] == "-i"]
    return bool(drops) and len(jumps) == len(drops) and all(
        rules[i - 1].args == internal_log_jump(rules[i].args[1]) for i in drops)


def test_log_blocked_is_recorded_and_ends_forward(world):
    world.engine.add("web", "running", ips={"bridge": "172.17.0.2"}, port_bindings=FIXED_80)
    world.run().init(log_blocked=True)
    assert world.store.log_blocked()
    assert logs_last(world) and logs_before_internal_drops(world)
    [rule] = world.firewall.table.chain_rules(CHAIN_LOG)
    assert rule.comment == log_comment(4) and rule.target() == "NFLOG"
    # logging decides nothing: the whitelist still drops, and admits what it allows
    assert forward(world.firewall.table, Packet("198.51.100.3", "172.17.0.2", 80, "eth0", "docker0")) == "DROP"
    # a later init (and watch's) keeps it, changing nothing
    assert not world.run().init()
    assert world.run().check() == []
    # --no-log-blocked takes the jumps and the rule away, and is recorded
    world.run().init(log_blocked=False)
    assert not world.store.log_blocked()
    assert not any(r.target() == CHAIN_LOG for r in world.firewall.table.rules)
    assert world.firewall.table.chain_rules(CHAIN_LOG) == []
    assert not world.run().init()


def test_check_reports_a_log_jump_that_is_gone(world):
    world.engine.add("web", "running", ips={"bridge": "172.17.0.2"}, port_bindings=FIXED_80)
    world.run().init(log_blocked=True)
    table = world.firewall.table
    position = next(r.position for r in table.chain_rules("FORWARD") if r.target() == CHAIN_LOG)
    world.firewall.restore("filter", [f"-D FORWARD {position}"])
    problems = world.run().check()
    assert any("blocked-connection log not in place" in p for p in problems), problems
    world.run().init()  # the recorded setting: put back
    assert logs_last(world)


def test_a_rule_below_the_jumps_moves_them_back_to_the_end(world):
    world.engine.add("web", "running", ips={"bridge": "172.17.0.2"}, port_bindings=FIXED_80)
    world.run().init(log_blocked=True)
    world.firewall.restore("filter", ["-A FORWARD -o docker0 -p udp -j ACCEPT"])
    changes = plan_log(world.firewall.table, list(BRIDGES), True)
    jumps = [f"FORWARD -o {b} -j DOCKER-FW-LOG" for b in BRIDGES]
    assert [c.line for c in changes] == [f"-D {j}" for j in jumps] + [f"-A {j}" for j in jumps]
    assert not logs_last(world)
    world.run().init()
    assert logs_last(world)


def test_an_out_of_date_log_rule_is_replaced():
    from docker_fw.backends.iptables.process import parse_save

    table = parse_save(
        "*filter\n:FORWARD DROP [0:0]\n:DOCKER-FW-LOG - [0:0]\n"
        "-A FORWARD -o docker0 -j DOCKER-FW-LOG\n"
        '-A DOCKER-FW-LOG -m comment --comment "docker-fw-log:000000000000" -j NFLOG --nflog-group 42\nCOMMIT\n'
    )
    lines = [c.line for c in plan_log(table, ["docker0"], True)]
    assert lines[0] == "-D DOCKER-FW-LOG 1" and lines[1].startswith("-A DOCKER-FW-LOG -m conntrack --ctstate NEW")
    assert len(lines) == 2  # the jump is in place


@pytest.mark.parametrize("fixture, chain", [
    ("docker-20.10-icc-false.txt", "FORWARD"),
    ("docker-28.5-icc-false.txt", "DOCKER-FORWARD"),
    ("docker-29-iptables-icc-false.txt", "DOCKER-FORWARD"),
])
def test_on_each_engines_layout_the_jumps_sit_before_the_drops(fixture, chain):
    """init's lines and the log's in one batch, positions computed as the batch goes."""
    from dfw_samples import LAYOUTS_DIR
    from docker_fw.backends.iptables import layouts
    from docker_fw.backends.iptables.process import parse_save
    from docker_fw.backends.iptables.walk import Packet, apply_lines, forward

    table = parse_save((LAYOUTS_DIR / fixture).read_text())
    bridges = ["docker0"]
    init = [c.line for c in layouts.plan_init(table, bridges, None, bridges)]
    log = [c.line for c in plan_log(table, bridges, True, 4, init)]
    after = apply_lines(table, init + log)
    rules = after.chain_rules(chain)
    drop = next(i for i, r in enumerate(rules) if r.args == ("-i", "docker0", "-o", "docker0", "-j", "DROP"))
    assert rules[drop - 1].args == internal_log_jump("docker0")
    assert after.chain_rules("FORWARD")[-1].args == log_jump("docker0")
    assert layouts.plan_init(after, bridges, None, bridges) == [] and plan_log(after, bridges, True) == []
    # the verdicts are the whitelist's: logging decides nothing
    assert forward(after, Packet("198.51.100.3", "172.17.0.2", 80, "eth0", "docker0")) == "DROP"
    assert forward(after, Packet("172.17.0.3", "172.17.0.2", 80, "docker0", "docker0")) == "DROP"
    off = [c.line for c in plan_log(after, bridges, False)]
    cleared = apply_lines(after, off)
    assert not any(r.target() == CHAIN_LOG for r in cleared.rules) and cleared.chain_rules(CHAIN_LOG) == []


def test_a_backend_that_cannot_log_refuses_log_blocked_and_warns_of_a_recorded_one(world):
    """A FirewallBackend without plan_log (the optional BlockLogger protocol):
    'init --log-blocked' is refused, nothing recorded or changed; a logging
    recorded before (the engine since moved to such a backend) is warned about."""
    from docker_fw.backends import BlockLogger
    from docker_fw.backends.iptables.backend import IptablesBackend

    class NoLogging:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name == "plan_log":
                raise AttributeError(name)
            return getattr(self._inner, name)

    world.engine.add("web", "running", ips={"bridge": "172.17.0.2"}, port_bindings=FIXED_80)
    service = world.run()
    service.backends = [NoLogging(IptablesBackend(world.firewall, 4))]
    assert isinstance(IptablesBackend(world.firewall, 4), BlockLogger)
    assert not isinstance(service.backends[0], BlockLogger)
    before = list(world.firewall.table.rules)
    with pytest.raises(UsageError, match=r"^--log-blocked: not supported with the engine's iptables firewall backend"):
        service.init(log_blocked=True)
    assert not world.store.log_blocked() and world.firewall.table.rules == before
    world.store.set_log_blocked(True)
    service.init()
    assert world.store.log_blocked()
    assert any("cannot log blocked connections" in w for w in world.warnings)
    assert not any(r.target() == CHAIN_LOG for r in world.firewall.table.rules)
