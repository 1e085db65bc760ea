"""IPv6: parsing the engine's IPv6 facts, resolution per family, planning per family.

A dual-stack default bridge (``--ipv6 --fixed-cidr-v6 2001:db8:1::/64``) as
the 20.10 list API reports it; the Service runs against two in-memory
tables, one for iptables and one for ip6tables.
"""

from __future__ import annotations

import ipaddress

import fakes
import pytest
from dfw_samples import resolve_iptables, summary

from docker_fw.actions import IPV6_NOT_INITIALISED, IPV6_UNMANAGED, AddRequest, Service
from docker_fw.engine import Snapshot, parse_container, parse_network
from docker_fw.errors import EngineError
from docker_fw.backends.iptables.process import parse_save
from docker_fw.model import Kind, RuleSpec, parse_address
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INTERNAL
from docker_fw.backends.iptables.reconcile import plan_rules
from docker_fw.backends.iptables.rules import parse_comment
from docker_fw.store import Store

NET_LIST = [
    {"Id": "f" * 64, "Name": "bridge", "Driver": "bridge", "EnableIPv6": True,
     "Options": {"com.docker.network.bridge.name": "docker0"},
     "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"},
                         {"Subnet": "2001:db8:1::/64", "Gateway": "2001:db8:1::1"}]}},
    {"Id": "ab12" * 16, "Name": "v4only", "Driver": "bridge", "Options": {},
     "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}},
]


def _ep(ip, gw, ip6="", gw6=""):
    return {"IPAddress": ip, "Gateway": gw, "GlobalIPv6Address": ip6, "IPv6Gateway": gw6}


WEB6 = "2001:db8:1::242:ac11:2"
APP6 = "2001:db8:1::242:ac11:3"


def snapshot(web6: str = WEB6, web4: str = "172.17.0.2") -> Snapshot:
    nets = [parse_network(n) for n in NET_LIST]
    by_name = {n.name: n for n in nets}
    raw = [
        summary("web", {"bridge": _ep(web4, "172.17.0.1", web6, "2001:db8:1::1")}),
        summary("app", {"bridge": _ep("172.17.0.3", "172.17.0.1", APP6, "2001:db8:1::1")}, ports=()),
        # a container on the v4-only network, and one on the bridge without IPv6
        summary("old", {"v4only": _ep("172.18.0.2", "172.18.0.1"),
                        "bridge": _ep("172.17.0.4", "172.17.0.1")}, ports=()),
    ]
    return Snapshot(containers=[parse_container(s, by_name) for s in raw], networks=nets)


# -- the engine's facts ------------------------------------------------------


def test_network_ipv6_subnets_and_gateway():
    bridge = parse_network(NET_LIST[0])
    assert bridge.subnets == (ipaddress.IPv4Network("172.17.0.0/16"),)
    assert bridge.subnets6 == (ipaddress.IPv6Network("2001:db8:1::/64"),)
    assert bridge.gateway6 == "2001:db8:1::1"
    assert parse_network(NET_LIST[1]).subnets6 == ()


def test_endpoint_ipv6_address():
    snap = snapshot()
    assert snap.get("web").endpoints[0].ip6 == WEB6
    assert snap.get("old").endpoints[0].ip6 == ""
    assert snap.owner_of_address("2001:db8:1:0::242:ac11:2").name == "web"
    assert snap.is_docker_address(ipaddress.IPv6Network("2001:db8:1::5/128"))
    assert not snap.is_docker_address(ipaddress.IPv6Network("2001:db8:ffff::2/128"))


# -- resolution per family -----------------------------------------------------


def spec(owner, kind, source, dest=".", dport=80):
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), dport=dport)


def test_ipv6_literal_renders_for_ip6tables_only():
    [rule] = resolve_iptables(spec("web", Kind.ADD, "2001:db8:ffff::2"), snapshot())
    assert rule.family == 6
    assert rule.matches[:4] == ("-s", "2001:db8:ffff::2/128", "-d", WEB6 + "/128")


def test_ipv4_literal_renders_for_iptables_only():
    [rule] = resolve_iptables(spec("web", Kind.ADD, "198.51.100.2"), snapshot())
    assert rule.family == 4
    assert rule.matches[:4] == ("-s", "198.51.100.2/32", "-d", "172.17.0.2/32")


def test_containers_render_for_both_families_where_both_have_ipv6():
    rules = resolve_iptables(spec("web", Kind.INTERNAL, "app"), snapshot())
    assert [(r.family, r.matches[1], r.matches[3]) for r in rules] == [
        (4, "172.17.0.3/32", "172.17.0.2/32"),
        (6, APP6 + "/128", WEB6 + "/128"),
    ]
    # one tag scheme, distinct hashes
    assert len({r.digest for r in rules}) == 2
    assert all(parse_comment(r.comment)[0] == "web" for r in rules)


def test_container_without_ipv6_renders_for_iptables_only():
    rules = resolve_iptables(spec("web", Kind.INTERNAL, "old"), snapshot())
    assert [r.family for r in rules] == [4]


def test_host_uses_the_ipv6_gateway():
    rules = resolve_iptables(spec("web", Kind.INPUT, ".", "/", dport=9100), snapshot())
    assert [(r.family, r.matches[3]) for r in rules] == [(4, "172.17.0.1/32"), (6, "2001:db8:1::1/128")]


def test_ipv6_literal_for_a_container_without_ipv6_is_refused():
    with pytest.raises(EngineError, match="no IPv6 address"):
        resolve_iptables(spec("old", Kind.ADD, "2001:db8:ffff::2"), snapshot())


def test_ipv6_container_address_is_refused_like_ipv4():
    from docker_fw.errors import UsageError
    from docker_fw.resolve import normalise_address

    snap = snapshot()
    with pytest.raises(UsageError, match="container network address"):
        normalise_address(parse_address(WEB6), snap.get("app"), snap, False)
    assert normalise_address(parse_address(WEB6), snap.get("app"), snap, True).value == "web"
    assert normalise_address(parse_address("2001:db8:1::1"), snap.get("app"), snap, True).text == "/"


# -- planning per family -------------------------------------------------------


def layout(ipv6_docker: bool = True) -> str:
    """A Docker 20.10 filter table (icc on) for docker0 and the v4-only bridge."""
    bridges = ["docker0", "br-ab12ab12ab12"]
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if ipv6_docker:
        lines += [":DOCKER - [0:0]", ":DOCKER-USER - [0:0]", "-A FORWARD -j DOCKER-USER"]
        for br in bridges:
            lines += [f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                      f"-A FORWARD -o {br} -j DOCKER", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT",
                      f"-A FORWARD -i {br} -o {br} -j ACCEPT"]
        lines += ["-A DOCKER-USER -j RETURN"]
    lines += ["COMMIT", ""]
    return "\n".join(lines)


class FakeFirewall(fakes.FakeFirewall):
    """One address family's table (the service keeps one per family)."""

    def ours(self, chain: str = CHAIN_FORWARD) -> list[tuple[str, ...]]:
        return [r.args for r in self.table.chain_rules(chain) if parse_comment(r.comment or "")]


class World:
    def __init__(self, tmp_path, ipv6_docker: bool = True):
        self.engine = fakes.SnapshotEngine(snapshot())
        self.fw4 = FakeFirewall(layout())
        self.fw6 = FakeFirewall(layout(ipv6_docker))
        self.warnings: list[str] = []
        self.out: list[str] = []
        self.store_cm = Store.open(str(tmp_path / "state"))
        self.store = self.store_cm.__enter__()

    def service(self) -> Service:
        return Service(self.engine, self.fw4, self.store, out=self.out.append,
                       warn=self.warnings.append, firewall6=self.fw6)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.store_cm.__exit__(None, None, None)


def test_init_reshapes_both_tables(world):
    world.service().init()
    for fw in (world.fw4, world.fw6):
        assert not fw.table.has_rule("FORWARD", "-o", "docker0", "-j", "DOCKER")
        assert fw.table.has_rule("FORWARD", "-i", "docker0", "-o", "docker0", "-j", "DOCKER")
        assert fw.table.has_rule("FORWARD", "-j", CHAIN_FORWARD)
    # the v4-only network keeps its ip6tables rules: it has no IPv6 (nothing to init)
    assert world.fw6.table.has_rule("FORWARD", "-o", "br-ab12ab12ab12", "-j", "DOCKER")
    assert any(line.endswith("(IPv6)") for line in world.out)
    world.out.clear()
    world.service().init()
    assert world.out == ["init: already done, nothing changed"]


def test_allow_ipv6_goes_to_ip6tables_ipv4_to_iptables(world):
    world.service().init()
    world.service().allow("web", ["2001:db8:ffff::2", "198.51.100.2"])
    [v6] = world.fw6.ours()
    assert v6[:4] == ("-s", "2001:db8:ffff::2/128", "-d", WEB6 + "/128")
    assert v6[5:9] == ("-i", "docker0", "-o", "docker0")
    [v4] = world.fw4.ours()
    assert v4[:4] == ("-s", "198.51.100.2/32", "-d", "172.17.0.2/32")
    assert world.warnings == []
    # idempotent: nothing to change in either family
    assert not world.service().replay([])
    assert world.service().check() == []


def test_replay_follows_a_new_ipv6_address(world):
    world.service().init()
    world.service().allow("web", ["2001:db8:ffff::2"])
    world.engine.snap = snapshot(web6="2001:db8:1::242:ac11:9", web4="172.17.0.9")
    problems = world.service().check()
    assert any(p.startswith("stale (web)") and p.endswith("(IPv6)") for p in problems)
    world.service().replay(["web"])
    [v6] = world.fw6.ours()
    assert v6[3] == "2001:db8:1::242:ac11:9/128"
    assert world.fw4.ours() == []


def test_internal_rule_between_ipv6_containers_in_both_tables(world):
    world.service().init()
    world.service().add(Kind.INTERNAL, [AddRequest("web", "app", dport=80)])
    assert len(world.fw4.ours(CHAIN_INTERNAL)) == 1
    assert len(world.fw6.ours(CHAIN_INTERNAL)) == 1
    world.service().drop(["web"])
    assert world.fw4.ours(CHAIN_INTERNAL) == [] and world.fw6.ours(CHAIN_INTERNAL) == []


def test_engine_without_ip6tables_leaves_ipv6_out_with_one_warning(tmp_path):
    w = World(tmp_path, ipv6_docker=False)
    try:
        w.service().init()
        assert w.fw6.batches == []
        assert w.warnings == [IPV6_NOT_INITIALISED]
        w.warnings.clear()
        w.service().allow("web", ["2001:db8:ffff::2", "2001:db8:ffff::3", "198.51.100.2"])
        assert w.warnings == [IPV6_UNMANAGED]
        assert len(w.fw4.ours()) == 1
        assert w.fw6.batches == []
        assert len(w.store.rules(["web"])) == 3  # recorded all the same
    finally:
        w.store_cm.__exit__(None, None, None)


def test_plan_rules_ignores_the_other_family():
    rules = resolve_iptables(spec("web", Kind.INTERNAL, "app"), snapshot())
    table = parse_save(layout())
    four = plan_rules(table, rules, None, family=4)
    six = plan_rules(table, rules, None, family=6)
    assert [c.family for c in four] == [4] and "172.17.0.3/32" in four[0].line
    assert [c.family for c in six] == [6] and APP6 + "/128" in six[0].line


# -- docker-proxy: a v4-only container's port published on [::] ---------------------


def _published(name: str, networks: dict, ips=("0.0.0.0", "::")) -> dict:
    raw = summary(name, networks, ports=())
    raw["Ports"] = [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": ip} for ip in ips]
    return raw


def _exposures(*raw, bridges=("docker0", "br-ab12ab12ab12")) -> list[str]:
    from docker_fw.service.layout import proxy_exposures

    nets = {n.name: n for n in (parse_network(n) for n in NET_LIST)}
    snap = Snapshot(containers=[parse_container(s, nets) for s in raw], networks=list(nets.values()))
    return proxy_exposures(snap, set(bridges))


def test_a_v4_only_containers_port_on_every_ipv6_address_is_named_with_its_fixes():
    (line,) = _exposures(_published("legacy", {"v4only": _ep("172.18.0.2", "172.18.0.1")}))
    assert line.startswith("legacy: port 8080/tcp is published on every IPv6 address, but legacy has no IPv6 "
                           "address on network v4only")
    for fix in ("0.0.0.0:8080", "--userland-proxy=false", "give v4only IPv6"):
        assert fix in line


@pytest.mark.parametrize("raw", [
    _published("web", {"bridge": _ep("172.17.0.2", "172.17.0.1", WEB6, "2001:db8:1::1")}),  # Docker DNATs IPv6
    _published("legacy", {"v4only": _ep("172.18.0.2", "172.18.0.1")}, ips=("0.0.0.0",)),  # IPv4 only
    _published("legacy", {"v4only": _ep("172.18.0.2", "172.18.0.1")}, ips=("127.0.0.1", "::1")),  # loopback only
    # on v4only and a dual-stack network: published through the dual-stack one (gateway_order)
    _published("both", {"v4only": _ep("172.18.0.2", "172.18.0.1"),
                        "bridge": _ep("172.17.0.5", "172.17.0.1", APP6, "2001:db8:1::1")}),
], ids=["dual-stack", "ipv4-only-binding", "loopback", "dual-stack-gateway"])
def test_no_warning_where_ipv6_clients_meet_the_whitelist_or_none_can_connect(raw):
    assert _exposures(raw) == []


def test_a_network_init_leaves_out_is_not_warned_about():
    raw = _published("legacy", {"v4only": _ep("172.18.0.2", "172.18.0.1")})
    assert _exposures(raw, bridges=("docker0",)) == []


def test_init_and_check_warn_and_check_json_counts_it_without_drift(world):
    legacy = _published("legacy", {"v4only": _ep("172.18.0.2", "172.18.0.1")})
    nets = {n.name: n for n in (parse_network(n) for n in NET_LIST)}
    world.engine = fakes.SnapshotEngine(Snapshot(
        containers=[*snapshot().containers, parse_container(legacy, nets)], networks=list(nets.values())))
    world.service().init()
    assert [w for w in world.warnings if w.startswith("legacy: port 8080/tcp")] != []
    world.warnings.clear()
    problems, warnings = world.service().check_report()
    assert problems == [] and len(warnings) == 1 and warnings[0].startswith("legacy: port 8080/tcp")
    assert world.warnings == warnings  # on stderr too
    from docker_fw.jsonout import check_document

    doc = check_document(problems, [], warnings)
    assert doc["drift"] is False and doc["warnings"] == warnings
