"""layouts on every engine of design.md's table: detection, 'init' plans, refusals.

Fixtures (tests/fixtures/layouts/): 20.10, 28.5 and 29.7 (iptables) are
captured from live engines; 28.0.0, 29 (iptables) and 29 (nftables) are
modelled on moby's generated iptables documentation (see each file's header).  The packet
walker (backends.iptables.walk) checks what a plan means: which new
connections FORWARD accepts.
"""

from __future__ import annotations

import ipaddress

import pytest

from fakes import FakeFirewall, SnapshotEngine

from dfw_samples import LAYOUTS_DIR, apply_lines
from docker_fw.backends.iptables import layouts
from docker_fw.actions import Service
from docker_fw.engine import Container, Endpoint, Network, PortBinding, Snapshot
from docker_fw.errors import EngineError, FirewallError, UsageError
from docker_fw.backends.iptables.process import Table, parse_save
from docker_fw.backends.iptables.reconcile import ensure_chains, rule_line
from docker_fw.backends.iptables.walk import Packet, forward
from docker_fw.store import Store

BR_APP = "br-4d23efbc9bc5"  # appnet in the captured 28.5 user-networks layout
BR_INT = "br-176bc4723b40"  # an --internal network there
# The bridges of the captured hostile-bridge-names layouts (see their headers):
# iptables-save prints them raw, so a '"' is part of the name, and a line holding
# U+2028 or U+0085 is still one line.
BR_QUOTE = 'q"net'  # web (172.18.0.2, -p 8080:80) is on it
HOSTILE_BRIDGES = ["docker0", BR_QUOTE, "u\u2028x", "n\u0085x", "b\\s", "a'b#c"]


def fixture(name: str) -> Table:
    return parse_save((LAYOUTS_DIR / name).read_text(encoding="utf-8"))


# name -> (layout name or None when refused, bridges, words the refusal must contain)
ENGINES = {
    "docker-20.10-icc-false.txt": (layouts.LEGACY, ["docker0"], ()),
    "docker-20.10-icc-true.txt": (layouts.LEGACY, ["docker0"], ()),
    "docker-28.0.0-icc-false.txt": (layouts.IPSET_2800, ["docker0"], ()),
    "docker-28.5-icc-false.txt": (layouts.DOCKER_28, ["docker0"], ()),
    "docker-28.5-icc-false-user-networks.txt": (layouts.DOCKER_28, ["docker0", BR_APP, BR_INT], ()),
    "docker-29-iptables-icc-false.txt": (layouts.DOCKER_28, ["docker0", "bridge1", "bridgeint"], ()),
    "docker-29.7-iptables-icc-false-user-networks.txt": (layouts.DOCKER_28, ["docker0", "bridge1", "bridgeint"], ()),
    "docker-29-nftables.txt": (None, ["docker0"], ("no DOCKER chain", "nftables")),
    "docker-20.10-hostile-bridge-names.txt": (layouts.LEGACY, HOSTILE_BRIDGES, ()),
    "docker-28.5-hostile-bridge-names.txt": (layouts.DOCKER_28, HOSTILE_BRIDGES, ()),
}


def test_every_fixture_is_covered():
    assert sorted(p.name for p in LAYOUTS_DIR.glob("*.txt")) == sorted(ENGINES)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_detect(name):
    expected, bridges, words = ENGINES[name]
    table = fixture(name)
    if expected is None:
        with pytest.raises(FirewallError) as exc:
            layouts.detect(table)
        with pytest.raises(FirewallError):
            layouts.plan_init(table, bridges)
        assert all(w in str(exc.value) for w in words), str(exc.value)
        assert "\n" not in str(exc.value)
        assert not layouts.is_initialised(table, bridges)
    else:
        assert layouts.detect(table).name == expected


@pytest.mark.parametrize("name", [n for n, v in sorted(ENGINES.items()) if v[0]])
def test_init_then_idempotent(name):
    _, bridges, _ = ENGINES[name]
    table = fixture(name)
    layout = layouts.detect(table)
    assert not layouts.is_initialised(table, bridges)
    changes = layouts.plan_init(table, bridges)
    assert {c.why for c in changes} == {"init"}
    after = apply_lines(table, [c.line for c in changes])
    assert layouts.is_initialised(after, bridges)
    assert layouts.plan_init(after, bridges) == []
    # no catch-all left, anywhere; the internal jumps are first in FORWARD
    for bridge in bridges:
        assert not after.has_rule(layout.catch_all_chain, *layouts.catch_all(bridge))
    forward = [r.args for r in after.chain_rules("FORWARD")]
    jumps = [layouts.internal_jump(b) for b in bridges if layouts.internal_jump(b) in forward]
    assert set(forward[: len(jumps)]) == set(jumps)
    # Docker's other rules are all still there, in their order
    removed = {(layout.catch_all_chain, layouts.catch_all(b)) for b in bridges}
    removed |= {("FORWARD", args) for args in layouts.shared_catch_alls(table)}
    assert not layouts.shared_catch_alls(after)
    kept = [(r.chain, r.args) for r in table.rules if (r.chain, r.args) not in removed]
    assert [(r.chain, r.args) for r in after.rules if (r.chain, r.args) not in {("FORWARD", j) for j in jumps}] == kept


def test_28_plan_lines():
    changes = layouts.plan_init(fixture("docker-28.5-icc-false.txt"), ["docker0"])
    assert [c.line for c in changes] == [
        "-D DOCKER-BRIDGE -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]


def test_28_user_networks_plan_lines():
    """Every bridge with a DOCKER-BRIDGE jump is done; the --internal one has none and is skipped."""
    changes = layouts.plan_init(fixture("docker-28.5-icc-false-user-networks.txt"), ["docker0", BR_APP, BR_INT])
    assert [c.line for c in changes] == [
        "-D DOCKER-BRIDGE -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
        f"-D DOCKER-BRIDGE -o {BR_APP} -j DOCKER",
        f"-I FORWARD 1 -i {BR_APP} -o {BR_APP} -j DOCKER",
    ]


def _with(name: str, old: str, new: str) -> Table:
    text = (LAYOUTS_DIR / name).read_text()
    assert old in text
    return parse_save(text.replace(old, new, 1))


def test_28_every_copy_of_the_catch_all_goes():
    line = "-A DOCKER-BRIDGE -o docker0 -j DOCKER\n"
    table = _with("docker-28.5-icc-false.txt", line, line * 3)
    lines = [c.line for c in layouts.plan_init(table, ["docker0"])]
    assert lines.count("-D DOCKER-BRIDGE -o docker0 -j DOCKER") == 3
    after = apply_lines(table, lines)
    assert after.chain_rules("DOCKER-BRIDGE") == []
    assert layouts.is_initialised(after, ["docker0"])


def test_28_engine_restart_puts_the_catch_all_back():
    """Only the catch-all is removed again: the internal jump, still first, stays."""
    table = _with(
        "docker-28.5-icc-false.txt",
        "-A FORWARD -j DOCKER-USER\n",
        "-A FORWARD -i docker0 -o docker0 -j DOCKER\n-A FORWARD -j DOCKER-USER\n",
    )
    assert not layouts.is_initialised(table, ["docker0"])
    assert [c.line for c in layouts.plan_init(table, ["docker0"])] == ["-D DOCKER-BRIDGE -o docker0 -j DOCKER"]


def test_28_internal_jump_below_docker_forward_is_moved_to_the_top():
    """Below the jump to DOCKER-FORWARD (which drops internal traffic with --icc=false) it never matches."""
    table = _with(
        "docker-28.5-icc-false.txt",
        "-A FORWARD -j DOCKER-FORWARD\n",
        "-A FORWARD -j DOCKER-FORWARD\n-A FORWARD -i docker0 -o docker0 -j DOCKER\n",
    )
    assert not layouts.is_initialised(table, ["docker0"])
    changes = layouts.plan_init(table, ["docker0"])
    assert [c.line for c in changes] == [
        "-D DOCKER-BRIDGE -o docker0 -j DOCKER",
        "-D FORWARD -i docker0 -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]
    after = apply_lines(table, [c.line for c in changes])
    assert after.chain_rules("FORWARD")[0].args == layouts.internal_jump("docker0")
    assert layouts.plan_init(after, ["docker0"]) == []


def test_legacy_internal_jump_below_the_icc_drop_is_moved():
    table = _with(
        "docker-20.10-icc-false.txt",
        "-A FORWARD -i docker0 -o docker0 -j DROP\n",
        "-A FORWARD -i docker0 -o docker0 -j DROP\n-A FORWARD -i docker0 -o docker0 -j DOCKER\n",
    )
    lines = [c.line for c in layouts.plan_init(table, ["docker0"])]
    assert lines == [
        "-D FORWARD -o docker0 -j DOCKER",
        "-D FORWARD -i docker0 -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]


@pytest.mark.parametrize("name", ["docker-28.5-icc-false.txt", "docker-20.10-icc-false.txt"])
def test_refused_when_forward_policy_is_accept(name):
    """Without policy DROP, what the whitelist does not accept would pass: refuse."""
    table = _with(name, ":FORWARD DROP", ":FORWARD ACCEPT")
    with pytest.raises(FirewallError, match=r"policy is ACCEPT, not DROP.*iptables -P FORWARD DROP.*nothing was changed"):
        layouts.plan_init(table, ["docker0"])


def test_iptables_backend_refuses_an_engine_in_nftables_mode():
    """docker info's FirewallBackend.Driver "nftables": the iptables layouts refuse it (backends.choice
    never hands them such an engine: the nftables backend takes it)."""
    table = fixture("docker-28.5-icc-false.txt")
    for backend in ("nftables", "nftables+firewalld"):
        with pytest.raises(FirewallError, match="nftables backend.*docker-bridges.*docker-fw uses its nftables backend"):
            layouts.plan_init(table, ["docker0"], firewall_backend=backend)
        assert not layouts.is_initialised(table, ["docker0"], firewall_backend=backend)
    assert layouts.detect(table, firewall_backend="iptables").name == layouts.DOCKER_28


@pytest.mark.parametrize("chain", ["DOCKER-FORWARD", "DOCKER-BRIDGE"])
def test_28_half_layout_is_refused(chain):
    text = (LAYOUTS_DIR / "docker-28.5-icc-false.txt").read_text()
    text = "\n".join(l for l in text.splitlines() if chain not in l.split()[:2] and f":{chain} " not in l
                     and not l.endswith(f"-j {chain}")) + "\n"
    with pytest.raises(FirewallError, match="unsupported iptables layout: Docker 28 or newer.*nothing was changed"):
        layouts.detect(parse_save(text))


def test_28_bridge_without_catch_all_is_refused_when_no_bridge_is_recognised():
    table = _with("docker-28.5-icc-false.txt", "-A DOCKER-BRIDGE -o docker0 -j DOCKER\n", "")
    with pytest.raises(FirewallError, match="DOCKER-BRIDGE -o docker0 -j DOCKER.*unrecognised layout"):
        layouts.plan_init(table, ["docker0"])


# --- what the plans mean for packets -------------------------------------------

CLIENT = "198.51.100.2"
OTHER = "198.51.100.3"


def _initialised_with_allow(table: Table, bridges: list[str], ctr: str, bridge: str) -> Table:
    """init, docker-fw's chains, and one seed-style 'allow' rule for CLIENT."""
    lines = [c.line for c in layouts.plan_init(table, bridges)]
    lines += [c.line for c in ensure_chains(apply_lines(table, lines))]
    lines.append(rule_line("-A", "DOCKER-FW-FORWARD", [
        "-s", f"{CLIENT}/32", "-d", f"{ctr}/32", "!", "-i", bridge, "-o", bridge,
        "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "DOCKER",
    ]))
    return apply_lines(table, lines)


@pytest.mark.parametrize(
    "name, bridges, ctr, bridge",
    [
        ("docker-20.10-icc-false.txt", ["docker0"], "172.17.0.2", "docker0"),
        ("docker-28.0.0-icc-false.txt", ["docker0"], "172.17.0.2", "docker0"),
        ("docker-28.5-icc-false.txt", ["docker0"], "172.17.0.2", "docker0"),
        ("docker-28.5-icc-false-user-networks.txt", ["docker0", BR_APP, BR_INT], "172.18.0.2", BR_APP),
        ("docker-29-iptables-icc-false.txt", ["docker0", "bridge1", "bridgeint"], "192.0.2.2", "bridge1"),
        ("docker-29.7-iptables-icc-false-user-networks.txt", ["docker0", "bridge1", "bridgeint"], "192.0.2.2", "bridge1"),
        ("docker-29.7-iptables-icc-false-user-networks.txt", ["docker0", "bridge1", "bridgeint"], "172.17.0.2", "docker0"),
        ("docker-20.10-hostile-bridge-names.txt", HOSTILE_BRIDGES, "172.18.0.2", BR_QUOTE),
        ("docker-28.5-hostile-bridge-names.txt", HOSTILE_BRIDGES, "172.18.0.2", BR_QUOTE),
    ],
)
def test_packets_before_and_after(name, bridges, ctr, bridge):
    table = fixture(name)
    to_web = lambda src, port=80: Packet(src, ctr, port, "eth0", bridge)  # noqa: E731
    # Docker's default: anyone reaches the published port, nobody another port
    assert forward(table, to_web(CLIENT)) == forward(table, to_web(OTHER)) == "ACCEPT"
    assert forward(table, to_web(CLIENT, 22)) == "DROP"
    # after init: nobody
    inited = apply_lines(table, [c.line for c in layouts.plan_init(table, bridges)])
    assert forward(inited, to_web(CLIENT)) == forward(inited, to_web(OTHER)) == "DROP"
    # after an allow for CLIENT: only CLIENT, only the published port
    allowed = _initialised_with_allow(table, bridges, ctr, bridge)
    assert forward(allowed, to_web(CLIENT)) == "ACCEPT"
    assert forward(allowed, to_web(OTHER)) == "DROP"
    assert forward(allowed, to_web(CLIENT, 22)) == "DROP"
    # containers still reach the outside
    assert forward(allowed, Packet(ctr, "203.0.113.9", 443, bridge, "eth0")) == "ACCEPT"


@pytest.mark.parametrize(
    "name",
    ["docker-28.0.0-icc-false.txt", "docker-28.5-icc-false.txt", "docker-29-iptables-icc-false.txt",
     "docker-29.7-iptables-icc-false-user-networks.txt"],
)
def test_28_icc_false_internal_traffic_meets_the_docker_chain(name):
    """With --icc=false, internal traffic is dropped unless a rule in DOCKER (a link, add-internal) accepts it."""
    table = fixture(name)
    inited = apply_lines(table, [c.line for c in layouts.plan_init(table, ["docker0"])])
    between = Packet("172.17.0.3", "172.17.0.2", 5432, "docker0", "docker0")
    assert forward(inited, between) == "DROP"
    linked = apply_lines(inited, ["-I DOCKER 1 -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p tcp -m tcp --dport 5432 -j ACCEPT"])
    assert forward(linked, between) == "ACCEPT"
    # before init, Docker's catch-all (DOCKER-BRIDGE's jump; 28.0.0's ipset rule) sent it
    # to DOCKER too: links keep working across init
    assert forward(apply_lines(table, ["-I DOCKER 1 -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p tcp -m tcp --dport 5432 -j ACCEPT"]), between) == "ACCEPT"


# --- init and check on the captured hostile bridge names ---------------------------------------

HOSTILE_FIXTURES = ["docker-20.10-hostile-bridge-names.txt", "docker-28.5-hostile-bridge-names.txt"]
# The networks of those captures (subnets as the engine handed them out, in order).
def bridge_network(name: str, bridge: str, second_octet: int) -> Network:
    """A bridge network on 172.<second_octet>.0.0/16."""
    subnet = ipaddress.IPv4Network(f"172.{second_octet}.0.0/16")
    return Network(f"{second_octet:x}" * 32, name, "bridge", bridge, (subnet,), f"172.{second_octet}.0.1")


HOSTILE_NETWORKS = [
    bridge_network(name, bridge, 17 + i)
    for i, (name, bridge) in enumerate(zip(["bridge", "qnet", "lsnet", "nelnet", "bsnet", "hashnet"], HOSTILE_BRIDGES))
]
WEB_ON_QNET = Container(
    "e" * 64, "web", "running", (Endpoint("qnet", BR_QUOTE, "172.18.0.2", "172.18.0.1"),),
    ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),),
)


@pytest.fixture
def hostile_service(request, tmp_path):
    """A Service over a captured hostile-names layout (the fixture file named by the param)."""
    firewall = FakeFirewall((LAYOUTS_DIR / request.param).read_text(encoding="utf-8"))
    engine = SnapshotEngine(Snapshot(containers=[WEB_ON_QNET], networks=HOSTILE_NETWORKS))
    with Store.open(str(tmp_path / "state")) as store:
        out: list[str] = []
        svc = Service(engine, firewall, store, out=out.append)
        svc.printed = out
        yield svc


@pytest.mark.parametrize("hostile_service", HOSTILE_FIXTURES, indirect=True)
def test_check_then_init_close_bridges_with_hostile_names(hostile_service):
    svc = hostile_service
    table = svc.backends[0].runner.table
    layout = layouts.detect(table)
    # check names every bridge's catch-all: none of them is "no drift"
    problems = svc.check()
    for bridge in HOSTILE_BRIDGES:
        delete = rule_line("-D", layout.catch_all_chain, layouts.catch_all(bridge))
        assert f"not initialised (init): would delete {delete}" in problems
    assert "check: no drift" not in svc.printed
    to_web = lambda src: Packet(src, "172.18.0.2", 80, "eth0", BR_QUOTE)  # noqa: E731
    assert forward(table, to_web(OTHER)) == "ACCEPT"
    svc.init()
    table = svc.backends[0].runner.table
    for bridge in HOSTILE_BRIDGES:
        assert not table.has_rule(layout.catch_all_chain, *layouts.catch_all(bridge))
        assert table.has_rule("FORWARD", *layouts.internal_jump(bridge))
    assert forward(table, to_web(CLIENT)) == forward(table, to_web(OTHER)) == "DROP"
    assert svc.check() == [] and svc.printed[-1] == "check: no drift"
    # allow: its @bridge filter names the '"' bridge; only the allowed client gets in
    svc.allow("web", [CLIENT])
    assert forward(svc.backends[0].runner.table, to_web(CLIENT)) == "ACCEPT"
    assert forward(svc.backends[0].runner.table, to_web(OTHER)) == "DROP"
    assert svc.check() == []


@pytest.mark.parametrize("hostile_service", HOSTILE_FIXTURES, indirect=True)
@pytest.mark.parametrize("bad", ["a+", "!", "a\x1bb"])
def test_a_bridge_name_iptables_cannot_match_is_refused_by_init_and_reported_by_check(hostile_service, bad):
    """'a+' is iptables' wildcard (every interface starting with 'a'), '!' a negation to older
    iptables: init refuses (exit 4, nothing changed), check never says "no drift"."""
    svc = hostile_service
    svc.engine.snap = Snapshot(
        containers=[WEB_ON_QNET],
        networks=[*HOSTILE_NETWORKS, bridge_network("badnet", bad, 30)],
    )
    before = list(svc.backends[0].runner.table.rules)
    with pytest.raises(FirewallError) as exc:
        svc.init()
    assert str(exc.value).startswith(f"bridge {ascii(bad)}: ")
    assert "docker-fw cannot close it; nothing was changed" in str(exc.value) and "\n" not in str(exc.value)
    assert exc.value.exit_code == 4
    assert svc.backends[0].runner.table.rules == before and svc.backends[0].runner.batches == []
    problems = svc.check()
    assert [p for p in problems if p.startswith("layout: ")] == [f"layout: {exc.value}"]
    assert "check: no drift" not in svc.printed


@pytest.mark.parametrize("hostile_service", HOSTILE_FIXTURES[:1], indirect=True)
def test_allow_on_a_bridge_name_iptables_cannot_match_is_refused(hostile_service):
    """allow's filter names @bridge: on 'a+' (iptables' wildcard) it would match every
    'a*' interface, so the rule cannot be placed (a recorded one is withdrawn)."""
    svc = hostile_service
    badnet = bridge_network("badnet", "a+", 30)
    web = Container("e" * 64, "web", "running", (Endpoint("badnet", "a+", "172.30.0.2", "172.30.0.1"),),
                    ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),))
    svc.engine.snap = Snapshot(containers=[web], networks=[*HOSTILE_NETWORKS, badnet])
    with pytest.raises(UsageError) as exc:  # the iptables backend cannot express it (exit 2)
        svc.allow("web", [CLIENT])
    assert str(exc.value) == (
        "the bridge 'a+': a trailing '+' makes iptables match every interface whose name "
        "starts with the rest: the filter's @bridge cannot be placed"
    )
    assert exc.value.exit_code == 2
    assert svc.backends[0].runner.batches == [] and svc.store.rules(["web"]) == []


@pytest.mark.parametrize("hostile_service", HOSTILE_FIXTURES[:1], indirect=True)
def test_a_recorded_rule_whose_bridge_iptables_cannot_match_is_withdrawn(hostile_service):
    """Recorded on a good bridge, then the network's bridge became 'a+': replay
    withdraws the rule (the backend says it cannot express it) rather than fail."""
    svc = hostile_service
    warned: list[str] = []
    svc.warn = warned.append

    def web_on(bridge):
        web = Container("e" * 64, "web", "running", (Endpoint("badnet", bridge, "172.30.0.2", "172.30.0.1"),),
                        ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),))
        svc.engine.snap = Snapshot(containers=[web], networks=[*HOSTILE_NETWORKS, bridge_network("badnet", bridge, 30)])

    web_on("br-good")
    svc.allow("web", [CLIENT])
    assert [r for r in svc.backends[0].runner.table.rules if "br-good" in r.line]
    web_on("a+")
    svc.replay([])
    assert not [r for r in svc.backends[0].runner.table.rules if "docker-fw:web:" in r.line]
    assert any("not applied (the bridge 'a+': a trailing '+'" in w for w in warned)
    assert len(svc.store.rules(["web"])) == 1  # still recorded: back once the bridge can be matched


# IPv6 (ip6tables): Docker's filter rules there have the same shape as these
# captured iptables ones, so the fixtures stand for ip6tables-save too.
ND_ICC_FALSE = ["docker-20.10-icc-false.txt", "docker-28.5-icc-false.txt", "docker-29-iptables-icc-false.txt"]


def _neighbour_rules(table: Table, bridge: str) -> list[tuple[str, ...]]:
    return [r.args for r in table.chain_rules("FORWARD") if r.args[:2] == ("-i", bridge) and "ipv6-icmp" in r.args]


@pytest.mark.parametrize("name", ND_ICC_FALSE)
def test_ipv6_init_accepts_neighbour_discovery_above_the_icc_drop(name):
    table = fixture(name)
    layout = layouts.detect(table)
    changes = layouts.plan_init(table, ["docker0"], family=6)
    after = apply_lines(table, [c.line for c in changes])
    wanted = [layouts.neighbour_accept("docker0", t) for t in ("135", "136")]
    assert sorted(_neighbour_rules(after, "docker0")) == sorted(wanted)
    forward = [r.args for r in after.chain_rules("FORWARD")]
    first_blocker = min(layout.blockers(after, "docker0"))
    assert all(forward.index(args) + 1 < first_blocker for args in wanted)
    assert layouts.is_initialised(after, ["docker0"], family=6)
    assert layouts.plan_init(after, ["docker0"], family=6) == []
    # IPv4 (iptables) never gets them: ARP is not IP, no rule filters it
    assert not _neighbour_rules(apply_lines(table, [c.line for c in layouts.plan_init(table, ["docker0"])]), "docker0")
    # removed by hand: init is not done (what check reports), and puts back only that one
    gone = apply_lines(after, [f"-D FORWARD {' '.join(layouts.neighbour_accept('docker0', '136'))}"])
    assert not layouts.is_initialised(gone, ["docker0"], family=6)
    assert [c.line for c in layouts.plan_init(gone, ["docker0"], family=6)] == [
        f"-I FORWARD 1 {' '.join(layouts.neighbour_accept('docker0', '136'))}"
    ]


def test_ipv6_no_neighbour_accept_where_icc_is_on_and_a_left_one_goes():
    table = fixture("docker-20.10-icc-true.txt")
    assert not _neighbour_rules(apply_lines(table, [c.line for c in layouts.plan_init(table, ["docker0"], family=6)]), "docker0")
    # left from when icc was off (the engine restarted with --icc=true): init removes it
    done = apply_lines(table, [c.line for c in layouts.plan_init(table, ["docker0"], family=6)])
    left = apply_lines(done, [f"-I FORWARD 1 {' '.join(layouts.neighbour_accept('docker0', '135'))}"])
    assert not layouts.is_initialised(left, ["docker0"], family=6)
    changes = layouts.plan_init(left, ["docker0"], family=6)
    assert [c.line for c in changes] == [f"-D FORWARD {' '.join(layouts.neighbour_accept('docker0', '135'))}"]
    assert "icc is on" in changes[0].note


def test_ipv6_neighbour_accepts_below_the_icc_drop_are_moved_and_a_gone_networks_removed():
    table = fixture("docker-28.5-icc-false.txt")
    done = apply_lines(table, [c.line for c in layouts.plan_init(table, ["docker0"], family=6)])
    below = " ".join(layouts.neighbour_accept("docker0", "135"))
    stale = " ".join(layouts.neighbour_accept("br-0123456789ab", "136"))
    moved = apply_lines(done, [f"-D FORWARD {below}", f"-A FORWARD {below}", f"-A FORWARD {stale}"])
    lines = [c.line for c in layouts.plan_init(moved, ["docker0"], ["docker0"], family=6)]
    assert lines == [f"-D FORWARD {below}", f"-I FORWARD 1 {below}", f"-D FORWARD {stale}"]
    assert layouts.plan_init(apply_lines(moved, lines), ["docker0"], family=6) == []
