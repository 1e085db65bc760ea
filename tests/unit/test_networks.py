"""User-defined bridge networks: resolution, the gateway endpoint, init, on hand-built snapshots.

The engine's facts these tests rest on were checked live on Docker 20.10 (see
engine.gateway_order): published ports are DNATed to a container's address on
its *gateway endpoint* only (``iptables -t nat -S DOCKER``), the first of its
endpoints in libnetwork's order: not --internal, dual-stack first, then by
network name.
"""

from __future__ import annotations

import ipaddress

import pytest
from fakes import FakeFirewall, SnapshotEngine

from dfw_samples import apply_lines, render, resolve_iptables, summary
from docker_fw.actions import Service
from docker_fw.engine import Container, Endpoint, Network, PortBinding, Snapshot, parse_container, parse_network
from docker_fw.errors import EngineError, FirewallError, UsageError
from docker_fw.backends.iptables.process import parse_save
from docker_fw.backends.iptables.layouts import catch_all, internal_jump, is_initialised, plan_init
from docker_fw.model import Kind, RuleSpec, parse_address
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL
from docker_fw.store import Store


def net(name: str, bridge: str, subnet: str, internal: bool = False) -> Network:
    sub = ipaddress.IPv4Network(subnet)
    return Network(
        id=(bridge.removeprefix("br-") * 6)[:64] if bridge.startswith("br-") else "f" * 64,
        name=name,
        driver="bridge",
        bridge=bridge,
        subnets=(sub,),
        gateway=str(sub.network_address + 1),
        internal=internal,
    )


BRIDGE = net("bridge", "docker0", "172.17.0.0/16")
ZETA = net("zeta", "br-2e2a2e2a2e2a", "172.18.0.0/16")
ALPHA = net("alpha", "br-a1a1a1a1a1a1", "172.19.0.0/16")
QUIET = net("quiet", "br-0000aaaa1111", "172.20.0.0/16")  # enable_icc=false
AAINT = net("aaint", "br-1111bbbb2222", "172.21.0.0/16", internal=True)
V6NET = net("v6net", "br-6666cccc6666", "172.22.0.0/16")  # dual-stack
NETS = {n.name: n for n in (BRIDGE, ZETA, ALPHA, QUIET, AAINT, V6NET)}


def ep(network: Network, host: int) -> Endpoint:
    base = network.subnets[0].network_address
    return Endpoint(
        network=network.name,
        bridge=network.bridge,
        ip=str(base + host),
        gateway=network.gateway,
        gateway6="fd00:1::1" if network is V6NET else "",
        internal=network.internal,
    )


def ctr(name: str, *endpoints: Endpoint, ports=(), state="running") -> Container:
    return Container(
        id=(name.encode().hex() * 32)[:64],
        name=name,
        state=state,
        endpoints=endpoints,
        ports=tuple(PortBinding(p, "tcp", "0.0.0.0", 8000 + p) for p in ports),
    )


# multi: on alpha and zeta; peer_a only alpha, peer_z only zeta; a1/a2/a3 on quiet;
# plain on docker0 only.
MULTI = ctr("multi", ep(ALPHA, 2), ep(ZETA, 2))
PEER_A = ctr("peer_a", ep(ALPHA, 3))
PEER_Z = ctr("peer_z", ep(ZETA, 3))
A1, A2, A3 = (ctr(f"a{i}", ep(QUIET, 1 + i)) for i in (1, 2, 3))
PLAIN = ctr("plain", ep(BRIDGE, 2))
SNAP = Snapshot(containers=[MULTI, PEER_A, PEER_Z, A1, A2, A3, PLAIN], networks=list(NETS.values()))


def rule(owner, kind=Kind.INTERNAL, source=".", dest=".", dport=80, **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), dport=dport, **kw)


def pairs(resolved) -> list[tuple[str, str]]:
    return [(r.matches[r.matches.index("-s") + 1], r.matches[r.matches.index("-d") + 1]) for r in resolved]


# --- requirement 2: add-internal on a user-defined (icc=false) network ---------------


def test_add_internal_on_a_user_network_uses_that_networks_addresses():
    resolved = resolve_iptables(rule("a2", source="a1"), SNAP)
    assert pairs(resolved) == [("172.20.0.2/32", "172.20.0.3/32")]
    assert resolved[0].chain == CHAIN_INTERNAL and resolved[0].target == "ACCEPT"
    # a3 is nowhere in it: only the named pair is admitted
    assert "172.20.0.4/32" not in resolved[0].matches


# --- requirement 3: no shared network ------------------------------------------------


def test_no_shared_network_is_an_engine_error_naming_both_sides_and_their_networks():
    with pytest.raises(EngineError) as info:
        resolve_iptables(rule("peer_a", source="peer_z"), SNAP)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "\n" not in message
    assert "share no network" in message
    assert "peer_a (on alpha)" in message and "peer_z (on zeta)" in message


def test_no_shared_network_between_docker0_and_a_user_network():
    with pytest.raises(EngineError, match=r"plain \(on bridge\) and a1 \(on quiet\) share no network"):
        resolve_iptables(rule("plain", source=".", dest="a1"), SNAP)


def test_a_paused_peer_still_shares_its_networks():
    paused = ctr("paused_z", ep(ZETA, 9), state="paused")
    snap = Snapshot(containers=[*SNAP.containers, paused], networks=SNAP.networks)
    assert pairs(resolve_iptables(rule("multi", source="paused_z"), snap)) == [("172.18.0.9/32", "172.18.0.2/32")]


# --- requirement 4: a container on two networks ---------------------------------------


def test_two_network_container_and_a_peer_on_only_one_of_them():
    # peer_z shares zeta only: multi's zeta address, not its alpha one
    assert pairs(resolve_iptables(rule("multi", source="peer_z"), SNAP)) == [("172.18.0.3/32", "172.18.0.2/32")]
    assert pairs(resolve_iptables(rule("multi", source="peer_a"), SNAP)) == [("172.19.0.3/32", "172.19.0.2/32")]
    # the same from the peer's side, multi as the destination
    assert pairs(resolve_iptables(rule("peer_a", source=".", dest="multi"), SNAP)) == [("172.19.0.3/32", "172.19.0.2/32")]


def test_two_network_peers_get_one_rule_per_shared_network():
    both = ctr("both", ep(ALPHA, 7), ep(ZETA, 7))
    snap = Snapshot(containers=[*SNAP.containers, both], networks=SNAP.networks)
    assert pairs(resolve_iptables(rule("multi", source="both"), snap)) == [
        ("172.19.0.7/32", "172.19.0.2/32"),  # alpha
        ("172.18.0.7/32", "172.18.0.2/32"),  # zeta
    ]


def test_slash_is_the_gateway_of_the_network_each_rule_is_on():
    # '/' on a one-network container of a user network: that network's gateway
    assert pairs(resolve_iptables(rule("peer_z", kind=Kind.INPUT, source=".", dest="/", dport=9000), SNAP)) == [
        ("172.18.0.3/32", "172.18.0.1/32")
    ]
    # on a two-network container: each address paired with its own network's gateway
    resolved = resolve_iptables(rule("multi", kind=Kind.INPUT, source=".", dest="/", dport=9000), SNAP)
    assert pairs(resolved) == [("172.19.0.2/32", "172.19.0.1/32"), ("172.18.0.2/32", "172.18.0.1/32")]
    assert {r.chain for r in resolved} == {CHAIN_INPUT}
    # and as a source ('the host may reach the container')
    assert pairs(resolve_iptables(rule("peer_a", source="/", dport=80), SNAP)) == [("172.19.0.1/32", "172.19.0.3/32")]


def test_slash_uses_the_endpoints_gateway_not_docker0():
    resolved = resolve_iptables(rule("a1", kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp"), SNAP)
    assert pairs(resolved) == [("172.20.0.2/32", "172.20.0.1/32")]
    assert "172.17.0.1/32" not in resolved[0].matches


# --- requirement 6: which bridge published ports come through --------------------------

NET_LIST = [
    {"Id": "f" * 64, "Name": "bridge", "Driver": "bridge",
     "Options": {"com.docker.network.bridge.name": "docker0"},
     "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}},
    {"Id": "dd4dc61848a5" + "0" * 52, "Name": "zeta", "Driver": "bridge", "Options": {},
     "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}},
    {"Id": "1bae144c45ba" + "0" * 52, "Name": "alpha", "Driver": "bridge", "Options": {},
     "IPAM": {"Config": [{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}]}},
    {"Id": "283970dc5984" + "0" * 52, "Name": "aaint", "Driver": "bridge", "Options": {}, "Internal": True,
     "IPAM": {"Config": [{"Subnet": "172.21.0.0/16", "Gateway": "172.21.0.1"}]}},
    {"Id": "3b2d423de595" + "0" * 52, "Name": "v6net", "Driver": "bridge", "Options": {}, "EnableIPv6": True,
     "IPAM": {"Config": [{"Subnet": "172.22.0.0/16", "Gateway": "172.22.0.1"}, {"Subnet": "fd00:1::/64"}]}},
]


def _v4(ip, gw):
    return {"IPAddress": ip, "Gateway": gw, "IPv6Gateway": ""}


@pytest.fixture
def listed() -> Snapshot:
    """Parsed as from the list calls, the cases checked live on 20.10 (nat DOCKER's DNAT)."""
    nets = [parse_network(n) for n in NET_LIST]
    by_name = {n.name: n for n in nets}
    raw = [
        # created on zeta, then 'docker network connect alpha': DNAT on alpha's bridge
        summary("web", {"zeta": _v4("172.18.0.2", "172.18.0.1"), "alpha": _v4("172.19.0.2", "172.19.0.1")}),
        # default bridge plus an internal network named before it: DNAT stays on docker0
        summary("web2", {"aaint": _v4("172.21.0.2", "172.21.0.1"), "bridge": _v4("172.17.0.2", "172.17.0.1")}),
        # alpha plus a dual-stack network named after it: DNAT on the dual-stack one
        summary("six", {
            "alpha": _v4("172.19.0.3", "172.19.0.1"),
            "v6net": {"IPAddress": "172.22.0.2", "Gateway": "172.22.0.1", "IPv6Gateway": "fd00:1::1"},
        }),
        # only on an internal network: Docker publishes nothing
        summary("hidden", {"aaint": _v4("172.21.0.3", "172.21.0.1")}, ports=()),
    ]
    return Snapshot(containers=[parse_container(s, by_name) for s in raw], networks=nets)


def test_internal_flag_is_read_from_the_network_list(listed):
    assert [n.name for n in listed.networks if n.internal] == ["aaint"]
    assert listed.get("web2").endpoints[-1].internal


def test_endpoints_are_in_the_engines_gateway_order(listed):
    assert [e.network for e in listed.get("web").endpoints] == ["alpha", "zeta"]
    assert [e.network for e in listed.get("web2").endpoints] == ["bridge", "aaint"]
    assert [e.network for e in listed.get("six").endpoints] == ["v6net", "alpha"]


@pytest.mark.parametrize("name, bridge", [
    ("web", "br-1bae144c45ba"),
    ("web2", "docker0"),
    ("six", "br-3b2d423de595"),
])
def test_published_endpoint_is_the_bridge_docker_dnats_to(listed, name, bridge):
    container = listed.get(name)
    assert container.published_endpoint.bridge == bridge
    # Service.allow takes the first endpoint with a bridge: the same one
    assert next(e.bridge for e in container.endpoints if e.bridge) == bridge


def test_no_published_endpoint_on_internal_networks_only(listed):
    assert listed.get("hidden").published_endpoint is None


# allow, through the service, on a fake engine and firewall (iptables in memory)


def layout(bridges: list[str], internal: list[str] = (), icc_false: list[str] = ("docker0",)) -> str:
    """A Docker 20.10 filter table with these bridges, as the engine makes it."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":DOCKER - [0:0]", ":DOCKER-ISOLATION-STAGE-1 - [0:0]", ":DOCKER-ISOLATION-STAGE-2 - [0:0]",
             ":DOCKER-USER - [0:0]", "-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
    for br in bridges:
        if br not in internal:
            lines += [f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                      f"-A FORWARD -o {br} -j DOCKER", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT"]
        lines.append(f"-A FORWARD -i {br} -o {br} -j {'DROP' if br in icc_false else 'ACCEPT'}")
    lines += ["-A DOCKER-USER -j RETURN", "COMMIT", ""]
    return "\n".join(lines)


@pytest.fixture
def service(listed, tmp_path):
    bridges = ["docker0", "br-dd4dc61848a5", "br-1bae144c45ba", "br-283970dc5984", "br-3b2d423de595"]
    firewall = FakeFirewall(layout(bridges, internal=["br-283970dc5984"]))
    warnings: list[str] = []
    with Store.open(str(tmp_path / "state")) as store:
        svc = Service(SnapshotEngine(listed), firewall, store, out=lambda s: None, warn=warnings.append)
        svc.warnings = warnings
        yield svc


def _allow_filters(svc: Service, owner: str) -> list[tuple[str, ...]]:
    return [s.filter for s in svc.store.rules([owner])]


@pytest.mark.parametrize("name, bridge, address", [
    ("web", "br-1bae144c45ba", "172.19.0.2/32"),
    ("web2", "docker0", "172.17.0.2/32"),
    ("six", "br-3b2d423de595", "172.22.0.2/32"),
])
def test_allow_matches_the_bridge_published_ports_are_dnated_to(service, name, bridge, address):
    service.init()
    service.allow(name, ["198.51.100.2"])
    # recorded with the placeholder: the bridge is looked up each time it is applied
    assert _allow_filters(service, name) == [("!", "-i", "@bridge", "-o", "@bridge")]
    ours = [r for r in service.backends[0].runner.table.chain_rules(CHAIN_FORWARD) if "--comment" in r.args]
    assert not any("@bridge" in r.args for r in ours)
    # the rule that DNATed traffic meets: the published address, out of that bridge
    assert any(
        r.args[r.args.index("-d") + 1] == address
        and r.args[r.args.index("-i") + 1] == bridge
        and r.args[r.args.index("-o") + 1] == bridge
        for r in ours
    ), [r.line for r in ours]
    # every rule names the bridge of the network its address is on
    for r in ours:
        ip = r.args[r.args.index("-d") + 1].split("/")[0]
        net = next(e for e in service.engine.snapshot().get(name).endpoints if e.ip == ip)
        assert r.args[r.args.index("-o") + 1] == net.bridge, r.line


def test_an_internal_network_does_not_make_init_look_undone(service):
    service.init()
    assert is_initialised(service.backends[0].runner.table, [n.bridge for n in service.engine.snapshot().bridges()])
    service.allow("web2", ["198.51.100.2"])
    assert not any("has not been run" in w for w in service.warnings), service.warnings


# --- init --network: only some networks ---------------------------------------------------

ZETA_BR, ALPHA_BR = "br-dd4dc61848a5", "br-1bae144c45ba"


def test_init_limited_to_named_networks_is_recorded_and_kept(service):
    out: list[str] = []
    service.out = out.append
    service.init(["zeta"])
    table = service.backends[0].runner.table
    assert not table.has_rule("FORWARD", *catch_all(ZETA_BR))
    assert table.has_rule("FORWARD", *internal_jump(ZETA_BR))
    # the others keep Docker's defaults
    for bridge in ("docker0", ALPHA_BR):
        assert table.has_rule("FORWARD", *catch_all(bridge)) and not table.has_rule("FORWARD", *internal_jump(bridge))
    assert service.store.init_networks() == ["zeta"]
    assert any(line.startswith("init: limited to network zeta (recorded;") for line in out), out
    # a later plain init (or watch) keeps to the selection: nothing to do, nothing drifts
    assert not service.init()
    assert service.check() == []
    service.allow("web2", ["198.51.100.2"])  # on docker0: not covered, so no "not run" warning either
    assert not any("has not been run" in w for w in service.warnings), service.warnings
    # --all-networks: every bridge network again
    service.init(all_networks=True)
    assert service.store.init_networks() is None
    assert not service.backends[0].runner.table.has_rule("FORWARD", *catch_all("docker0"))
    assert not service.backends[0].runner.table.has_rule("FORWARD", *catch_all(ALPHA_BR))


def test_init_with_an_unknown_network_changes_nothing(service):
    before = render(service.backends[0].runner.table)
    with pytest.raises(UsageError, match=r"init: no bridge network named nope \(bridge networks: aaint, alpha, bridge, v6net, zeta\)"):
        service.init(["zeta", "nope"])
    assert render(service.backends[0].runner.table) == before
    assert service.store.init_networks() is None


def test_init_limited_to_networks_that_are_gone_says_so(service):
    service.init(["zeta"])
    service.engine.snap = Snapshot(
        containers=service.engine.snap.containers,
        networks=[n for n in service.engine.snap.networks if n.name != "zeta"],
    )
    with pytest.raises(UsageError, match=r"limited to networks that no longer exist \(zeta\).*--all-networks"):
        service.init()
    assert any("limited to networks that no longer exist (zeta)" in p for p in service.check())
    service.init(all_networks=True)
    assert service.store.init_networks() is None


def test_init_refused_by_the_kernel_keeps_no_selection(service):
    service.backends[0].runner.fail = FirewallError("iptables-restore: line 2 failed")
    with pytest.raises(FirewallError):
        service.init(["zeta"])
    assert service.store.init_networks() is None


# --- requirement 5: a network created after init ----------------------------------------


def test_init_covers_a_network_created_after_it_and_then_changes_nothing():
    first = [BRIDGE, ZETA]
    table = parse_save(layout(["docker0", ZETA.bridge]))
    table = apply_lines(table, [c.line for c in plan_init(table, [n.bridge for n in first])])
    assert is_initialised(table, ["docker0", ZETA.bridge])

    # Docker adds the new network's rules (its catch-all among them)
    late = net("late", "br-1a7e1a7e1a7e", "172.23.0.0/16")
    snap = Snapshot(containers=[], networks=[BRIDGE, ZETA, late])
    text = layout(["docker0", ZETA.bridge, late.bridge])
    table = parse_save(text)
    table = apply_lines(table, [c.line for c in plan_init(table, ["docker0", ZETA.bridge])])
    assert table.has_rule("FORWARD", *catch_all(late.bridge))
    assert not is_initialised(table, [n.bridge for n in snap.bridges()])

    again = plan_init(table, [n.bridge for n in snap.bridges()])
    assert [c.line for c in again] == [
        f"-D FORWARD -o {late.bridge} -j DOCKER",
        f"-I FORWARD 1 -i {late.bridge} -o {late.bridge} -j DOCKER",
    ]
    table = apply_lines(table, [c.line for c in again])
    assert not table.has_rule("FORWARD", *catch_all(late.bridge))
    assert table.has_rule("FORWARD", *internal_jump(late.bridge))
    assert plan_init(table, [n.bridge for n in snap.bridges()]) == []
