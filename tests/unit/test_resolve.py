"""resolve: recorded rules -> concrete iptables rules, on a hand-built snapshot."""

from __future__ import annotations

import dataclasses

import pytest

from dfw_samples import assert_golden, APP_NET, BRIDGE_NET, CACHE, DB, GOLDEN_DIR, WEB, resolve_iptables, snapshot
from docker_fw.errors import EngineError, UsageError
from docker_fw.model import (
    AddressSpec,
    Kind,
    RuleSpec,
    parse_address,
    parse_filter,
)
from docker_fw.backends.iptables.reconcile import rule_line
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL, IptablesRule, parse_comment, render
from docker_fw.resolve import ResolvedRule, check_kind_addresses, normalise_address, resolve

SNAP = snapshot()


def rule(owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest=".", **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), **kw)


def addresses(resolved: list[IptablesRule]) -> list[tuple[str, str]]:
    out = []
    for r in resolved:
        m = r.matches
        out.append((m[m.index("-s") + 1], m[m.index("-d") + 1]))
    return out


# --- addresses ----------------------------------------------------------------------


def test_network_source_to_self_one_rule_per_network_of_the_owner():
    resolved = resolve_iptables(rule(dport=80), SNAP)
    # web is on appnet and bridge: one rule per network, in network name order
    assert addresses(resolved) == [("203.0.113.0/24", "172.18.0.2/32"), ("203.0.113.0/24", "172.17.0.2/32")]
    assert {r.chain for r in resolved} == {CHAIN_FORWARD}
    assert {r.target for r in resolved} == {"DOCKER"}
    assert {r.owner for r in resolved} == {"web"}


def test_self_to_network():
    resolved = resolve_iptables(rule(owner="cache", source=".", dest="198.51.100.7", sport=53, proto="udp"), SNAP)
    assert addresses(resolved) == [("172.17.0.4/32", "198.51.100.7/32")]
    assert resolved[0].matches == ("-s", "172.17.0.4/32", "-d", "198.51.100.7/32", "-p", "udp", "-m", "udp", "--sport", "53")


def test_slash_is_the_gateway_of_each_network():
    resolved = resolve_iptables(rule(kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp"), SNAP)
    assert addresses(resolved) == [("172.18.0.2/32", "172.18.0.1/32"), ("172.17.0.2/32", "172.17.0.1/32")]
    assert {r.chain for r in resolved} == {CHAIN_INPUT}
    assert {r.target for r in resolved} == {"ACCEPT"}


def test_container_alias_resolved_on_the_shared_network_only():
    resolved = resolve_iptables(rule(kind=Kind.INTERNAL, source="db", dport=5432), SNAP)
    # web and db share appnet only
    assert addresses(resolved) == [("172.18.0.3/32", "172.18.0.2/32")]
    assert resolved[0].chain == CHAIN_INTERNAL
    assert resolved[0].target == "ACCEPT"


def test_container_alias_as_destination_and_paused_peer():
    resolved = resolve_iptables(rule(owner="cache", kind=Kind.INTERNAL, source=".", dest="worker", dport=6379), SNAP)
    assert addresses(resolved) == [("172.17.0.4/32", "172.17.0.5/32")]


def test_one_rule_per_shared_network():
    both = RuleSpec(owner="web", kind=Kind.INTERNAL, source=AddressSpec.container("web2"), dest=AddressSpec.self_(), dport=80)
    from docker_fw.engine import Container, Endpoint, Snapshot

    web2 = Container(
        id="99" * 32,
        name="web2",
        state="running",
        endpoints=(
            Endpoint("appnet", APP_NET.bridge, "172.18.0.9", APP_NET.gateway),
            Endpoint("bridge", BRIDGE_NET.bridge, "172.17.0.9", BRIDGE_NET.gateway),
        ),
    )
    snap = Snapshot(containers=[*SNAP.containers, web2], networks=SNAP.networks)
    assert addresses(resolve_iptables(both, snap)) == [("172.18.0.9/32", "172.18.0.2/32"), ("172.17.0.9/32", "172.17.0.2/32")]


def test_containers_sharing_no_network():
    with pytest.raises(EngineError, match="share no network"):
        resolve_iptables(rule(owner="cache", kind=Kind.INTERNAL, source="db", dport=5432), SNAP)


def test_stopped_peer_is_an_engine_error():
    with pytest.raises(EngineError, match="old is exited and has no address"):
        resolve_iptables(rule(kind=Kind.INTERNAL, source="old", dport=80), SNAP)


def test_stopped_owner_is_an_engine_error():
    with pytest.raises(EngineError, match="old is exited"):
        resolve_iptables(rule(owner="old", dport=80), SNAP)


def test_unknown_peer_is_an_engine_error():
    with pytest.raises(EngineError, match="no such container: ghost"):
        resolve_iptables(rule(kind=Kind.INTERNAL, source="ghost", dport=80), SNAP)


def test_owner_without_address_is_an_engine_error():
    with pytest.raises(EngineError, match="hostnet"):
        resolve_iptables(rule(owner="hostnet", dport=80), SNAP)


def test_filter_ports_and_proto_render_in_order():
    spec = rule(sport=1024, dport=80, filter=parse_filter("! -i docker0 -o docker0"))
    resolved = resolve_iptables(spec, SNAP)[1]
    assert resolved.matches == (
        "-s", "203.0.113.0/24", "-d", "172.17.0.2/32",
        "!", "-i", "docker0", "-o", "docker0",
        "-p", "tcp", "-m", "tcp", "--sport", "1024", "--dport", "80",
    )
    assert resolved.argv()[-6:] == ["-m", "comment", "--comment", resolved.comment, "-j", "DOCKER"]


def test_render_matches_without_ports():
    neutral = ResolvedRule(owner="web", kind=Kind.ADD, source="1.2.3.4/32", dest="5.6.7.8/32", proto="tcp")
    assert render(neutral).matches == (
        "-s", "1.2.3.4/32", "-d", "5.6.7.8/32", "-p", "tcp", "-m", "tcp",
    )


def test_resolved_rules_are_backend_neutral_data():
    """resolve() says what to admit; only the backend knows chains, matches and tags."""
    resolved = resolve(rule(dport=80, filter=("!", "-i", "@bridge", "-o", "@bridge")), SNAP)
    assert resolved[1] == ResolvedRule(
        owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest="172.17.0.2/32", proto="tcp",
        dport=80, filter=("!", "-i", "docker0", "-o", "docker0"), family=4, bridge="docker0",
    )
    assert not any(hasattr(resolved[1], name) for name in ("chain", "matches", "target", "comment", "argv"))


# --- the tag in the comment -----------------------------------------------------------


def test_comment_tags_owner_and_digest():
    r = resolve_iptables(rule(dport=80), SNAP)[0]
    assert r.comment == f"docker-fw:web:{r.digest}"
    assert parse_comment(r.comment) == ("web", r.digest) == r.key
    assert len(r.digest) == 12 and int(r.digest, 16) >= 0


def test_digest_changes_with_the_address():
    from dataclasses import replace

    from docker_fw.engine import Endpoint, Snapshot

    others = [c for c in SNAP.containers if c.name != "cache"]
    cache2 = replace(CACHE, endpoints=(Endpoint("bridge", "docker0", "172.17.0.44", "172.17.0.1"),))
    snap2 = Snapshot(containers=[*others, cache2], networks=SNAP.networks)
    spec = rule(owner="cache", dport=80)
    before, after = resolve_iptables(spec, SNAP)[0], resolve_iptables(spec, snap2)[0]
    assert before.digest != after.digest
    assert before.owner == after.owner == "cache"


def test_digest_is_stable_and_covers_chain_and_target():
    base = IptablesRule("web", "C1", ("-s", "1.2.3.4/32"), "ACCEPT")
    assert base.digest == IptablesRule("web", "C1", ("-s", "1.2.3.4/32"), "ACCEPT").digest
    assert base.digest != IptablesRule("web", "C2", ("-s", "1.2.3.4/32"), "ACCEPT").digest
    assert base.digest != IptablesRule("web", "C1", ("-s", "1.2.3.4/32"), "DROP").digest
    # the tokens are separated, so moving a boundary changes the hash
    assert IptablesRule("w", "C", ("ab", "c"), "T").digest != IptablesRule("w", "C", ("a", "bc"), "T").digest


@pytest.mark.parametrize("comment", ["", "docker-fw:", "docker-fw:web", "docker-fw::abc", "other:web:abc", "DOCKER-FW:web:abc"])
def test_parse_comment_refuses_foreign_comments(comment):
    assert parse_comment(comment) is None


# --- normalise_address (recording) ------------------------------------------------------


def test_container_by_id_prefix_is_recorded_by_name():
    owner = SNAP.get("web")
    assert normalise_address(parse_address(DB.id[:12]), owner, SNAP, False) == AddressSpec.container("db")


def test_owner_named_by_name_or_id_becomes_dot():
    owner = SNAP.get("web")
    assert normalise_address(parse_address("web"), owner, SNAP, False) == AddressSpec.self_()
    assert normalise_address(parse_address(WEB.id), owner, SNAP, False) == AddressSpec.self_()


def test_unknown_container_is_an_engine_error():
    with pytest.raises(EngineError, match="no such container"):
        normalise_address(parse_address("ghost"), SNAP.get("web"), SNAP, False)


def test_container_ip_refused_without_rev_lookup():
    with pytest.raises(UsageError, match="--rev-lookup"):
        normalise_address(parse_address("172.18.0.3"), SNAP.get("web"), SNAP, False)


def test_rev_lookup_maps_a_container_ip_to_its_name():
    owner = SNAP.get("web")
    assert normalise_address(parse_address("172.18.0.3"), owner, SNAP, True) == AddressSpec.container("db")
    assert normalise_address(parse_address("172.17.0.5"), owner, SNAP, True) == AddressSpec.container("worker")


def test_rev_lookup_of_the_owner_ip_gives_dot():
    owner = SNAP.get("web")
    for ip in ("172.18.0.2", "172.17.0.2"):
        assert normalise_address(parse_address(ip), owner, SNAP, True) == AddressSpec.self_()


def test_rev_lookup_of_a_free_docker_address():
    with pytest.raises(EngineError, match="no running container"):
        normalise_address(parse_address("172.17.0.200"), SNAP.get("web"), SNAP, True)


@pytest.mark.parametrize("text", ["203.0.113.9", "172.17.0.0/24", "10.0.0.0/8", ".", "/"])
def test_other_addresses_are_kept_as_they_are(text):
    spec = parse_address(text)
    assert normalise_address(spec, SNAP.get("web"), SNAP, False) == spec


# --- check_kind_addresses --------------------------------------------------------------------


@pytest.mark.parametrize("source, dest", [("172.17.0.0/24", "."), (".", "172.18.5.5/32"), ("172.17.0.9", ".")])
def test_add_refuses_internal_docker_addresses(source, dest):
    with pytest.raises(UsageError, match="add-internal"):
        check_kind_addresses(rule(source=source, dest=dest), SNAP)


@pytest.mark.parametrize("source", ["203.0.113.0/24", "0.0.0.0/0", "192.168.1.1"])
def test_add_accepts_external_addresses(source):
    check_kind_addresses(rule(source=source), SNAP)


def test_internal_may_name_docker_addresses():
    check_kind_addresses(rule(kind=Kind.INTERNAL, source="172.17.0.0/16", dport=80), SNAP)


# --- golden argv --------------------------------------------------------------------------

GOLDEN = {
    "add-subnet-dport": rule(dport=80),
    "add-self-to-host-udp-sport": rule(owner="cache", source=".", dest="198.51.100.7", sport=53, proto="udp"),
    "add-negated-interface-filter": rule(source="198.51.100.0/24", dport=443, filter=parse_filter("! -i docker0 -o docker0")),
    "add-internal-container-conntrack": rule(
        kind=Kind.INTERNAL, source="db", dport=5432, filter=parse_filter("-m conntrack --ctstate NEW")
    ),
    "add-internal-host-quoted-filter": rule(
        owner="cache", kind=Kind.INTERNAL, source="/", dport=8080,
        filter=parse_filter("-m string --string 'GET /a b' --algo bm"),
    ),
    "add-input-gateway": rule(kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp"),
    # richer matches (issue #12): ranges with the protocol's own match, lists with multiport
    "add-dport-range": rule(dport="9100:9200"),
    "add-dport-list": rule(dport="80,443"),
    "add-mixed-list-and-sport-range": rule(dport="443,80,9100:9200", sport="1024:65535", proto="udp"),
    "add-sport-list-dport-port": rule(sport="53,5353", dport=80),
    "add-internal-sctp-range": rule(kind=Kind.INTERNAL, source="db", dport="3868:3870", proto="sctp"),
    "add-icmp-echo-request": rule(proto="icmp", icmp_type="echo-request"),
    "add-icmp-any-type": rule(source="198.51.100.0/24", proto="icmp"),
    "add-input-icmp-number": rule(kind=Kind.INPUT, source=".", dest="/", proto="icmp", icmp_type="8"),
    # the container as source, an external destination: past its egress lock
    "add-outbound-dport-list": rule(source=".", dest="198.51.100.0/24", dport="80,443"),
    "add-outbound-icmp": rule(source=".", dest="198.51.100.9", proto="icmp", icmp_type="echo-request"),
}


def golden_text(spec: RuleSpec) -> str:
    lines = [f"# {spec.describe()}"]
    lines += [rule_line("-A", r.chain, r.argv()) for r in resolve_iptables(spec, SNAP)]
    return "\n".join(lines) + "\n"


def test_a_single_port_renders_as_it_always_did():
    # The tag's hash covers the matches: a rule already live must keep its hash.
    (rendered,) = resolve_iptables(rule(owner="cache", dport=80), SNAP)

    assert rendered.matches == ("-s", "203.0.113.0/24", "-d", "172.17.0.4/32", "-p", "tcp", "-m", "tcp", "--dport", "80")


def test_icmp_rules_are_ipv4_only():
    # IPv4's ICMP: a rule naming only containers is not rendered for ip6tables.
    resolved = resolve(rule(kind=Kind.INTERNAL, source="db", proto="icmp"), SNAP)
    assert {r.family for r in resolved} == {4}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_argv(name):
    path = GOLDEN_DIR / f"{name}.txt"
    assert_golden(path, golden_text(GOLDEN[name]))


def test_golden_files_have_no_orphans():
    on_disk = {p.stem for p in GOLDEN_DIR.glob("*.txt")}
    assert on_disk == set(GOLDEN)


# --- the @bridge placeholder in --filter ----------------------------------------------


BRIDGE_FILTER = ("!", "-i", "@bridge", "-o", "@bridge")


def test_bridge_placeholder_becomes_the_bridge_of_each_network():
    resolved = resolve_iptables(rule(dport=80, filter=BRIDGE_FILTER), SNAP)
    assert [r.matches for r in resolved] == [
        ("-s", "203.0.113.0/24", "-d", "172.18.0.2/32", "!", "-i", "br-0123456789ab", "-o", "br-0123456789ab",
         "-p", "tcp", "-m", "tcp", "--dport", "80"),
        ("-s", "203.0.113.0/24", "-d", "172.17.0.2/32", "!", "-i", "docker0", "-o", "docker0",
         "-p", "tcp", "-m", "tcp", "--dport", "80"),
    ]


def test_bridge_placeholder_follows_a_recreated_network():
    """docker compose down/up: same network name, new bridge; the rule changes with it."""
    spec = rule(dport=80, filter=BRIDGE_FILTER)
    before = resolve_iptables(spec, SNAP)
    moved_net = dataclasses.replace(APP_NET, id="9" * 64, bridge="br-999999999999")
    moved_web = dataclasses.replace(
        WEB, endpoints=(dataclasses.replace(WEB.endpoints[0], bridge=moved_net.bridge), WEB.endpoints[1])
    )
    snap = snapshot()
    snap = type(snap)(
        containers=[moved_web if c.name == "web" else c for c in snap.containers],
        networks=[moved_net if n.name == APP_NET.name else n for n in snap.networks],
    )
    after = resolve_iptables(spec, snap)
    assert "br-999999999999" in after[0].matches and "br-0123456789ab" not in after[0].matches
    assert after[0].digest != before[0].digest  # the old rule is stale: replay replaces it
    assert after[1] == before[1]  # docker0 did not change


def test_bridge_placeholder_leaves_out_networks_without_a_bridge():
    no_bridge = dataclasses.replace(WEB, endpoints=(dataclasses.replace(WEB.endpoints[0], bridge=""), WEB.endpoints[1]))
    snap = snapshot()
    snap = type(snap)(containers=[no_bridge if c.name == "web" else c for c in snap.containers], networks=snap.networks)
    resolved = resolve_iptables(rule(dport=80, filter=BRIDGE_FILTER), snap)
    assert addresses(resolved) == [("203.0.113.0/24", "172.17.0.2/32")]
    only_macvlan = dataclasses.replace(WEB, endpoints=(dataclasses.replace(WEB.endpoints[0], bridge=""),))
    snap = type(snap)(containers=[only_macvlan if c.name == "web" else c for c in snap.containers], networks=snap.networks)
    with pytest.raises(EngineError, match="on no bridge network"):
        resolve_iptables(rule(dport=80, filter=BRIDGE_FILTER), snap)


def test_bridge_placeholder_is_kept_by_parse_filter_and_printed_back():
    tokens = parse_filter("! -i @bridge -o @bridge")
    assert tokens == BRIDGE_FILTER
    assert rule(dport=80, filter=tokens).describe("add").endswith("--filter='! -i @bridge -o @bridge'")
