"""The nftables backend's pure parts: rendering (golden files), what it reads
of Docker's table, what it cannot express, and planning against a listing."""

from __future__ import annotations

import json

import pytest

from dfw_samples import assert_golden, GOLDEN_DIR, snapshot
from docker_fw.backends import FirewallBackend
from docker_fw.backends.choice import for_engine, uses_nftables
from docker_fw.backends.nftables.backend import NftablesBackend
from docker_fw.backends.nftables.live import parse_docker, parse_own
from docker_fw.backends.nftables.rules import (
    CHAIN_EGRESS, CHAIN_LOCK_INPUT, Mark, Unexpressible, filter_matches, icmp_matches, init_rule, interface_problem,
    intervals, render, render_all,
)
from docker_fw.egress import ResolvedLock, resolve_lock
from docker_fw.errors import FirewallError
from docker_fw.model import ICMP_CODES, ICMP_TYPES, Kind, RuleSpec, parse_address, parse_filter, parse_ports
from docker_fw.resolve import ResolvedRule, resolve

NFT_GOLDEN = GOLDEN_DIR / "nftables"
MARK = Mark(0x100, 0x100)
SNAP = snapshot()


def rule(owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest=".", **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), **kw)


GOLDEN = {
    "allow-bridge-filter": rule(source="198.51.100.2", dport=80, filter=parse_filter("! -i @bridge -o @bridge")),
    "add-self-to-host-udp-sport": rule(owner="cache", source=".", dest="198.51.100.7", sport=53, proto="udp"),
    "add-internal-container": rule(kind=Kind.INTERNAL, source="db", dport=5432),
    "add-input-gateway": rule(kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp"),
    "add-wildcard-interface": rule(dport=443, filter=parse_filter("-i eth+")),
    # what the iptables backend writes since egress (issue #12), with the same meaning
    "add-dport-range": rule(dport="9100:9200"),
    "add-dport-list": rule(dport="80,443"),
    "add-mixed-list-and-sport-range": rule(dport="443,80,9100:9200", sport="1024:65535", proto="udp"),
    "add-overlapping-dport-list": rule(dport="80:90,85,91,443"),
    "add-internal-sctp-range": rule(kind=Kind.INTERNAL, source="db", dport="3868:3870", proto="sctp"),
    "add-icmp-echo-request": rule(proto="icmp", icmp_type="echo-request"),
    "add-icmp-port-unreachable": rule(proto="icmp", icmp_type="port-unreachable"),
    "add-icmp-any-type": rule(source="198.51.100.0/24", proto="icmp"),
    "add-input-icmp-number": rule(kind=Kind.INPUT, source=".", dest="/", proto="icmp", icmp_type="8"),
    "add-outbound-dport-list": rule(source=".", dest="198.51.100.0/24", dport="80,443"),
    "add-outbound-icmp": rule(source=".", dest="198.51.100.9", proto="icmp", icmp_type="echo-request"),
    "egress-deny": "web",  # the lock and the DNS it keeps (to 192.0.2.53)
}


def golden_text(spec: RuleSpec | str) -> str:
    if isinstance(spec, str):
        lines = [f"# docker-fw egress {spec} deny (name server 192.0.2.53)"]
        placed = resolve_lock(spec, SNAP, ["192.0.2.53"])
    else:
        lines = [f"# {spec.describe()}"]
        placed = resolve(spec, SNAP)
    for nft in render_all(placed, MARK):
        lines += [f"{nft.chain}: {nft.text()}", json.dumps(nft.expr(), sort_keys=True)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_rules(name):
    path = NFT_GOLDEN / f"{name}.txt"
    assert_golden(path, golden_text(GOLDEN[name]))


def test_nft_golden_files_have_no_orphans():
    assert {p.stem for p in NFT_GOLDEN.glob("*.txt")} == set(GOLDEN)


def test_the_hash_follows_the_address_and_the_mark_only_internal_rules():
    a = ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", dport=80)
    moved = ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.9/32", "tcp", dport=80)
    assert render(a, MARK).digest != render(moved, MARK).digest
    assert render(a, MARK).mark is None and render(a, None).comment == render(a, MARK).comment
    internal = ResolvedRule("web", Kind.INTERNAL, "172.17.0.3/32", "172.17.0.2/32", "tcp", dport=5432)
    assert render(internal, MARK).mark == MARK
    with pytest.raises(Unexpressible, match="--bridge-accept-fwmark"):
        render(internal, None)


def test_ipv6_rules_match_ip6_headers():
    r = render(ResolvedRule("web", Kind.ADD, "2001:db8::/64", "fd00:17::2/128", "tcp", dport=443, family=6), MARK)
    assert r.text().startswith("ip6 saddr 2001:db8::/64 ip6 daddr fd00:17::2 meta l4proto tcp tcp dport 443 accept")
    assert r.expr()[0]["match"]["right"] == {"prefix": {"addr": "2001:db8::", "len": 64}}
    assert r.expr()[1]["match"]["left"] == {"payload": {"protocol": "ip6", "field": "daddr"}}


def test_mark_set_keeps_the_other_bits():
    assert Mark(0x100, 0x100).json() == {
        "mangle": {"key": {"meta": {"key": "mark"}},
                   "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 0xFFFFFEFF]}, 0x100]}}
    }
    assert Mark(7).json() == {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 7}}
    assert Mark(0x100, 0x100).option == "0x100/0x100" and Mark(7).option == "0x7"


@pytest.mark.parametrize("words, message", [
    ("-m conntrack --ctstate NEW", "'-m' cannot be expressed on the nftables backend"),
    ("-i eth0 -m ttl --ttl-eq 3", "'-m' cannot be expressed"),
    ("! -i br*x", None),
])
def test_filters_beyond_interfaces_cannot_be_expressed(words, message):
    tokens = tuple(words.split())
    if message is None:
        assert filter_matches(tokens)[0].text() == 'iifname != "br*x"'
        return
    with pytest.raises(Unexpressible, match=message):
        filter_matches(tokens)


@pytest.mark.parametrize("name, problem", [
    ("docker0", None), ('we"ird', None), ("br-0123456789ab", None), ("é", None),
    ("br*", "wildcard"), ("a\\b", "wildcard"), ("", "1 to 15 bytes"), ("x" * 16, "1 to 15 bytes"), ("a\nb", "holds"),
])
def test_interface_names(name, problem):
    found = interface_problem(name)
    assert (found is None) if problem is None else (problem in found)


def test_expressible_asks_nothing_live_and_names_the_backend():
    backend = NftablesBackend(runner=None, family=4)
    assert isinstance(backend, FirewallBackend)
    ok = ResolvedRule("web", Kind.INTERNAL, "172.17.0.3/32", "172.17.0.2/32", "tcp", dport=5432)
    assert backend.expressible(ok) is None
    bad = ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", filter=("-m", "state", "--state", "NEW"))
    assert "nftables backend" in backend.expressible(bad)
    assert "IPv6 rule" in backend.expressible(ResolvedRule("web", Kind.ADD, "::/0", "fd00::2/128", "tcp", family=6))
    long_owner = ResolvedRule("w" * 120, Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp")
    assert "128-byte" in backend.expressible(long_owner)


# What 'nft -j list table ip docker-bridges' prints (nft 1.0.6), reduced.
def docker_listing(*mark_exprs) -> list[dict]:
    objects = [{"chain": {"family": "ip", "table": "docker-bridges", "name": "filter-forward-in__docker0", "handle": 1}}]
    for handle, expr in enumerate(mark_exprs, 2):
        objects.append({"rule": {"family": "ip", "table": "docker-bridges", "chain": "filter-forward-in__docker0",
                                 "handle": handle, "comment": "ALLOW FW MARK", "expr": expr}})
    return objects


MASKED = [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 65280]}, "right": 256}},
          {"counter": {"packets": 0, "bytes": 0}}, {"accept": None}]
PLAIN = [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 7}}, {"counter": None}, {"accept": None}]


def test_the_accept_mark_is_read_from_docker_rules():
    assert parse_docker(docker_listing(MASKED)).marks == (Mark(256, 65280),)
    assert parse_docker(docker_listing(PLAIN)).marks == (Mark(7),)
    assert parse_docker(docker_listing()).marks == ()
    assert parse_docker(docker_listing()).bridges == ("docker0",)
    with pytest.raises(FirewallError, match="cannot read the accept mark"):
        parse_docker(docker_listing([{"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": 1}}]))


class Listing:
    """Stands in for process.Nft (backends.nftables.backend.Runner): fixed listings, batches kept."""

    def __init__(self, docker: list[dict] | None, ours: list[dict] | None = None):
        self.tables = {"docker-bridges": docker, "docker-fw": ours}
        self.applied: list[list[str]] = []

    def list_table(self, family: str, name: str) -> list[dict] | None:
        return self.tables[name]

    def apply(self, commands: list[str], shown: list[str]) -> None:
        self.applied.append(commands)


@pytest.mark.parametrize("expr, message", [
    (None, "--bridge-accept-fwmark"),
    ([{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 255]}, "right": 0}}, {"accept": None}],
     "would match unmarked packets"),
])
def test_init_refuses_a_missing_or_open_mark(expr, message):
    backend = NftablesBackend(Listing(docker_listing(*([expr] if expr else []))), 4)
    with pytest.raises(FirewallError, match=message):
        backend.plan_init(backend.read(), ["docker0"], "nftables", ["docker0"])
    assert not backend.is_initialised(backend.read(), ["docker0"])


def test_no_docker_table_names_the_engine_option():
    with pytest.raises(FirewallError, match="no nftables table ip docker-bridges.*--firewall-backend=nftables"):
        NftablesBackend(Listing(None), 4).read()
    assert NftablesBackend(Listing(None), 6).read() is None  # IPv6 off: its rules are left out


def test_init_plan_creates_the_chain_it_fills():
    backend = NftablesBackend(Listing(docker_listing(MASKED)), 4)
    changes = backend.plan_init(backend.read(), ["docker0"], "nftables", ["docker0"])
    assert [c.line for c in changes] == [
        "add table ip docker-fw",
        "add chain ip docker-fw fw-init",
        f"add rule ip docker-fw fw-init {init_rule('docker0', 4).text()}",
    ]
    assert [c.why for c in changes] == ["setup", "setup", "init"]
    assert json.loads(changes[-1].command)["add"]["rule"]["comment"] == "docker-fw-init:docker0"


def test_plan_deletes_stale_and_duplicate_rules_by_handle_and_leaves_others_alone():
    a = render(ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", dport=80), MARK)

    def live_rule(handle, comment, chain="fw-forward"):
        return {"rule": {"family": "ip", "table": "docker-fw", "chain": chain, "handle": handle, "comment": comment,
                         "expr": [{"accept": None}]}}

    ours = _own_listing([])
    ours += [live_rule(10, a.comment), live_rule(11, a.comment), live_rule(12, "docker-fw:web:000000000000"),
             live_rule(13, "docker-fw:db:000000000000"), live_rule(14, "")]
    backend = NftablesBackend(Listing(docker_listing(MASKED), ours), 4)
    live = backend.read()
    desired = [ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", dport=80)]
    changes = backend.plan(live, desired, {"web"})
    assert [c.line for c in changes] == [
        "delete rule ip docker-fw fw-forward handle 11", "delete rule ip docker-fw fw-forward handle 12",
    ]
    assert [c.verb for c in changes] == ["delete", "delete"]
    assert backend.foreign_rules(live) == ["foreign rule in ip docker-fw fw-forward: handle 14 [{\"accept\": null}]"]
    assert parse_own(ours).chain_rules("forward")[0].jump_target() == "fw-egress"


def test_a_flushed_base_chain_is_filled_again_in_order():
    ours = [{"table": {}}, {"chain": {"name": "forward", "hook": "forward", "prio": -1}},
            {"rule": {"chain": "forward", "handle": 5, "expr": [{"jump": {"target": "fw-init"}}]}}]
    backend = NftablesBackend(Listing(docker_listing(MASKED), ours), 4)
    lines = [c.line for c in backend.ensure(backend.read())]
    assert lines[-7:] == [
        "flush chain ip docker-fw forward",
        "add rule ip docker-fw forward jump fw-egress",
        "add rule ip docker-fw forward jump fw-forward",
        "add rule ip docker-fw forward jump fw-internal",
        "add rule ip docker-fw forward jump fw-init",
        "add rule ip docker-fw input jump fw-input",
        "add rule ip docker-fw input jump fw-input-lock",
    ]


@pytest.mark.parametrize("driver, nft", [("nftables", True), ("nftables+firewalld", True), ("iptables", False),
                                          ("iptables+firewalld", False), ("", False)])
def test_the_engine_report_chooses_the_backend(driver, nft):
    assert uses_nftables(driver) is nft
    backends = for_engine(driver, firewall=object(), firewall6=object())
    assert [type(b).__name__ for b in backends] == (["NftablesBackend"] * 2 if nft else ["IptablesBackend"] * 2)
    assert [b.family for b in backends] == [4, 6]


@pytest.mark.parametrize("typed, expected", [
    ("", []), ("any", []), ("255", []),
    ("echo-request", ["icmp type 8"]), ("ping", ["icmp type 8"]), ("8", ["icmp type 8"]),
    ("destination-unreachable", ["icmp type 3"]), ("3", ["icmp type 3"]),
    ("port-unreachable", ["icmp type 3", "icmp code 3"]),
    ("ttl-zero-during-reassembly", ["icmp type 11", "icmp code 1"]),
    ("network-redirect", ["icmp type 5", "icmp code 0"]),
])
def test_icmp_types_mean_what_iptables_names_mean(typed, expected):
    assert [m.text() for m in icmp_matches(typed)] == expected


def test_every_iptables_icmp_name_renders():
    for name in ICMP_TYPES:
        found = icmp_matches(name)
        assert len(found) == (0 if name == "any" else 2 if name in ICMP_CODES else 1)
    assert set(ICMP_CODES) <= set(ICMP_TYPES)


@pytest.mark.parametrize("typed, expected", [
    ("80", [(80, 80)]), ("9100:9200", [(9100, 9200)]), ("443,80", [(80, 80), (443, 443)]),
    ("80:90,85", [(80, 90)]), ("80,81,82", [(80, 82)]), ("80,80", [(80, 80)]), ("1:5,3:9,20", [(1, 9), (20, 20)]),
])
def test_port_lists_become_disjoint_intervals(typed, expected):
    """nft refuses overlapping intervals in a set; merged, they are the same ports."""
    assert intervals(parse_ports(typed, "--dport")) == expected


def test_a_merged_list_of_one_interval_is_no_set():
    r = render(ResolvedRule("web", Kind.ADD, "198.51.100.2/32", "172.17.0.2/32", "tcp", dport=parse_ports("80,81", "x")), MARK)
    assert r.text().startswith("ip saddr 198.51.100.2 ip daddr 172.17.0.2 meta l4proto tcp tcp dport 80-81 accept")
    assert r.expr()[-2]["match"]["right"] == {"range": [80, 81]}


def test_outbound_rules_return_from_egress_and_locks_drop_last():
    outbound = ResolvedRule("web", Kind.ADD, "172.17.0.2/32", "198.51.100.9/32", "tcp", dport=443, outbound=True)
    r = render(outbound, MARK)
    assert (r.chain, r.verdict, r.last) == (CHAIN_EGRESS, "return", False)
    forward, to_host = render_all([ResolvedLock("web", "172.17.0.2/32", "docker0")], MARK)
    assert (forward.chain, forward.verdict, forward.last) == (CHAIN_EGRESS, "drop", True)
    assert forward.text().startswith(
        'ip saddr 172.17.0.2 iifname "docker0" oifname != "docker0" ct state != { established, related } drop')
    assert (to_host.chain, to_host.verdict) == (CHAIN_LOCK_INPUT, "drop")
    assert to_host.text().startswith('ip saddr 172.17.0.2 iifname "docker0" ct state != { established, related } drop')
    v6 = render_all([ResolvedLock("web", "fd00:17::2/128", "docker0", 6)], MARK)
    assert all(r.text().startswith("ip6 saddr fd00:17::2 ") and r.family == 6 for r in v6)
    assert [r.chain for r in v6] == [CHAIN_EGRESS, CHAIN_LOCK_INPUT, "fw-input"]  # neighbour discovery: accepted
    assert 'meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept' in v6[2].text()


def test_a_lock_on_a_bridge_nft_cannot_name_is_refused():
    backend = NftablesBackend(runner=None, family=4)
    assert "wildcard" in backend.expressible(ResolvedLock("web", "172.17.0.2/32", "br*"))
    assert backend.expressible(ResolvedLock("web", "172.17.0.2/32", "docker0")) is None
    icmp = ResolvedRule("web", Kind.INPUT, "172.17.0.2/32", "172.17.0.1/32", "icmp", icmp_type="echo-request")
    assert backend.expressible(icmp) is None
    sctp = ResolvedRule("web", Kind.INTERNAL, "172.17.0.3/32", "172.17.0.2/32", "sctp", dport=parse_ports("3868:3870", "x"))
    assert backend.expressible(sctp) is None


def _own_listing(egress_rules: list[tuple[int, str]]) -> list[dict]:
    """Our table as nft lists it, fw-egress holding EGRESS_RULES (handle, comment) in order."""
    ours = [{"table": {"family": "ip", "name": "docker-fw"}}]
    ours += [{"chain": {"family": "ip", "table": "docker-fw", "name": n}}
             for n in ("fw-egress", "fw-forward", "fw-internal", "fw-input", "fw-input-lock", "fw-init")]
    ours += [{"chain": {"family": "ip", "table": "docker-fw", "name": n, "hook": n, "prio": -1, "policy": "accept"}}
             for n in ("forward", "input")]
    jumps = (("forward", "fw-egress"), ("forward", "fw-forward"), ("forward", "fw-internal"), ("forward", "fw-init"),
             ("input", "fw-input"), ("input", "fw-input-lock"))
    ours += [{"rule": {"family": "ip", "table": "docker-fw", "chain": c, "handle": 90 + i, "expr": [{"jump": {"target": t}}]}}
             for i, (c, t) in enumerate(jumps)]
    ours += [{"rule": {"family": "ip", "table": "docker-fw", "chain": "fw-egress", "handle": h, "comment": c,
                       "expr": [{"accept": None}]}} for h, c in egress_rules]
    return ours


def test_plan_inserts_outbound_rules_above_locks_and_moves_one_found_below():
    lock = ResolvedLock("web", "172.17.0.2/32", "docker0")
    outbound = ResolvedRule("web", Kind.ADD, "172.17.0.2/32", "198.51.100.9/32", "tcp", dport=443, outbound=True)
    backend = NftablesBackend(Listing(docker_listing(MASKED), _own_listing([])), 4)
    changes = backend.plan(backend.read(), [lock, outbound], {"web"})
    commands = [json.loads(c.command) for c in changes]
    assert [next(iter(c)) for c in commands] == ["add", "add", "insert"]  # lock drops appended, the return inserted
    assert [c.verb for c in changes] == ["add", "add", "add"]  # three rules of web's
    assert changes[2].line.startswith("insert rule ip docker-fw fw-egress ip saddr 172.17.0.2 ip daddr 198.51.100.9")

    drop, to_host = render_all([lock], MARK)
    ret = render(outbound, MARK)
    listed = _own_listing([(10, drop.comment), (11, ret.comment)])  # the return below the drop: moved
    listed.append({"rule": {"family": "ip", "table": "docker-fw", "chain": "fw-input-lock", "handle": 12,
                            "comment": to_host.comment, "expr": []}})
    backend = NftablesBackend(Listing(docker_listing(MASKED), listed), 4)
    changes = backend.plan(backend.read(), [lock, outbound], {"web"})
    assert [c.line.split(" fw-egress ")[0] for c in changes] == ["delete rule ip docker-fw", "insert rule ip docker-fw"]
    assert changes[0].line.endswith("handle 11")
    listed = _own_listing([(11, ret.comment), (10, drop.comment)]) + listed[-1:]
    backend = NftablesBackend(Listing(docker_listing(MASKED), listed), 4)
    assert backend.plan(backend.read(), [lock, outbound], {"web"}) == []  # in order: nothing to do


def _icc_rule(verdict: str) -> dict:
    return {"rule": {"family": "ip6", "table": "docker-bridges", "chain": "filter-forward-in__docker0", "handle": 9,
                     "comment": "ICC", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                                           "right": "docker0"}}, {"counter": None}, {verdict: None}]}}


def _own_init_rule(handle: int, comment: str) -> dict:
    return {"rule": {"family": "ip6", "table": "docker-fw", "chain": "fw-init", "handle": handle, "comment": comment,
                     "expr": [{"accept": None}]}}


def test_ipv6_init_marks_neighbour_discovery_where_docker_drops_icc():
    from docker_fw.backends.nftables.rules import neighbour_rule

    off = docker_listing(MASKED) + [_icc_rule("drop")]
    assert parse_docker(off).icc_off == ("docker0",)
    assert parse_docker(docker_listing(MASKED) + [_icc_rule("accept")]).icc_off == ()
    wanted = neighbour_rule("docker0", Mark(256, 65280))
    assert wanted.comment == "docker-fw-nd:0x100/0xff00:docker0"
    assert "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }" in wanted.text()
    v6 = NftablesBackend(Listing(off), 6)
    lines = [c.line for c in v6.plan_init(v6.read(), ["docker0"], "nftables", ["docker0"])]
    assert f"add rule ip6 docker-fw fw-init {wanted.text()}" in lines
    v4 = NftablesBackend(Listing(off), 4)  # IPv4: ARP is not IP, nothing to mark
    assert not any("docker-fw-nd" in line for line in (c.line for c in v4.plan_init(v4.read(), ["docker0"], "nftables", ["docker0"])))
    # present: nothing to do, and it is not foreign
    ours = _own_listing([]) + [_own_init_rule(20, init_rule("docker0", 6).comment), _own_init_rule(21, wanted.comment)]
    done = NftablesBackend(Listing(off, ours), 6)
    assert done.plan_init(done.read(), ["docker0"], "nftables", ["docker0"]) == []
    assert done.foreign_rules(done.read()) == []
    # another mark (the engine's changed), icc on again, a network gone: deleted by handle
    stale = _own_listing([]) + [_own_init_rule(20, init_rule("docker0", 6).comment),
                                _own_init_rule(21, "docker-fw-nd:0x7:docker0"),
                                _own_init_rule(22, "docker-fw-nd:0x100/0xff00:br-0123456789ab")]
    v6 = NftablesBackend(Listing(off, stale), 6)
    changes = v6.plan_init(v6.read(), ["docker0"], "nftables", ["docker0"])
    assert [(c.line, c.note) for c in changes if c.verb == "delete"] == [
        ("delete rule ip6 docker-fw fw-init handle 21", "another accept mark"),
        ("delete rule ip6 docker-fw fw-init handle 22", "its network is gone"),
    ]
    on = NftablesBackend(Listing(docker_listing(MASKED) + [_icc_rule("accept")], ours), 6)
    assert [c.note for c in on.plan_init(on.read(), ["docker0"], "nftables", ["docker0"])] == ["icc is on: Docker accepts it"]
