"""The nftables backend against the real nft and kernel, proved with packets.

Each test builds nft_world's namespaces: a host with Docker-like tables
(Docker 29 in nftables mode, --icc=false, --bridge-accept-fwmark=0x100/0x100,
web publishing port 80), containers web and db on docker0, and an external
client namespace with two addresses.
"""

from __future__ import annotations

import json

import pytest

from nft_world import DOCKER_LIKE, world  # noqa: F401 (a fixture)
from docker_fw.backends.nftables.rules import NO_MARK, render
from docker_fw.egress import DNS_PORT, ResolvedLock
from docker_fw.errors import FirewallError
from docker_fw.model import Kind, parse_ports
from docker_fw.resolve import ResolvedRule

pytestmark = pytest.mark.netns

GOOD, OTHER = "198.51.100.2", "198.51.100.3"
WEB, DB, GATEWAY = "172.17.0.2", "172.17.0.3", "172.17.0.1"
ALLOW_FILTER = ("!", "-i", "docker0", "-o", "docker0")


def add(source=GOOD, dest=WEB, dport=80, family=4, owner="web") -> ResolvedRule:
    return ResolvedRule(owner, Kind.ADD, f"{source}/{32 if family == 4 else 128}",
                        f"{dest}/{32 if family == 4 else 128}", "tcp", dport=dport, filter=ALLOW_FILTER, family=family)


def internal(source=DB, dest=WEB, dport=5432, owner="web") -> ResolvedRule:
    return ResolvedRule(owner, Kind.INTERNAL, f"{source}/32", f"{dest}/32", "tcp", dport=dport)


def sync(backend, desired, scope=None, init=False):
    """What an action does: read, plan, apply in one batch; the changes."""
    live = backend.read()
    changes = []
    if init:
        changes += backend.plan_init(live, ["docker0"], "nftables", ["docker0"])
    changes += backend.plan(live, desired, scope)
    backend.apply(live, changes)
    return changes


def test_docker_alone_publishes_to_everyone(world):
    assert world.reaches("ext", GOOD, WEB, 80) and world.reaches("ext", OTHER, WEB, 80)
    assert not world.reaches("ext", GOOD, WEB, 5432)  # unpublished
    assert not world.reaches("db", DB, WEB, 5432)  # --icc=false


def test_init_closes_and_add_opens_one_source(world):
    backend = world.backend()
    sync(backend, [], init=True)
    assert backend.is_initialised(backend.read(), ["docker0"])
    assert not world.reaches("ext", GOOD, WEB, 80) and not world.reaches("ext", OTHER, WEB, 80)
    runner = world.nft()
    backend = type(backend)(runner, 4)
    sync(backend, [add()])
    assert runner.batches == 1  # one transaction
    assert world.reaches("ext", GOOD, WEB, 80)
    assert not world.reaches("ext", OTHER, WEB, 80)
    assert backend.plan(backend.read(), [add()], None) == []  # a second run changes nothing
    sync(backend, [], scope={"web"})  # drop
    assert not world.reaches("ext", GOOD, WEB, 80)


def test_add_opens_only_ports_the_engine_publishes(world):
    backend = world.backend()
    sync(backend, [add(dport=5432)], init=True)
    assert not world.reaches("ext", GOOD, WEB, 5432)  # Docker's "UNPUBLISHED PORT DROP" still decides


def test_add_internal_marks_with_the_engine_accept_mark_icc_off(world):
    backend = world.backend()
    sync(backend, [internal()], init=True)
    assert world.reaches("db", DB, WEB, 5432)
    assert not world.reaches("db", DB, WEB, 80)  # only the rule's port
    assert not world.reaches("web", WEB, DB, 5432)  # one way (add-two-ways adds the hosts line, not the reverse)
    assert "meta mark set meta mark | 0x00000100 accept" in world.listing()  # nft folds the & ~0x100
    sync(backend, [], scope={"web"})
    assert not world.reaches("db", DB, WEB, 5432)


def test_replay_after_a_move_withdraws_the_old_address(world):
    backend = world.backend()
    sync(backend, [add(), internal()], init=True)
    moved = [add(dest="172.17.0.9"), internal(dest="172.17.0.9")]
    changes = sync(backend, moved, scope={"web"})
    assert sorted(c.verb for c in changes) == ["add", "add", "delete", "delete"]
    assert not world.reaches("ext", GOOD, WEB, 80)  # the old address is no one's now
    assert not world.reaches("db", DB, WEB, 5432)
    assert WEB not in world.listing()


def host_filter(*input_rules: str) -> str:
    """The host's own 'inet filter': input policy drop (replies and loopback
    accepted, then INPUT_RULES), a forward chain that accepts."""
    rules = "".join(f"        {rule}\n" for rule in ("ct state established,related accept", 'iif "lo" accept', *input_rules))
    return (
        "table inet filter {\n    chain input {\n        type filter hook input priority filter; policy drop;\n"
        f"{rules}    }}\n    chain forward {{\n        type filter hook forward priority filter;\n    }}\n}}\n"
    )


HOST_FILTER = host_filter()
# ... and one that admits what carries the engine's accept mark (0x100/0x100 in the
# world): what makes add-input choose the containers.
HOST_INPUT_MARK = host_filter("meta mark & 0x100 == 0x100 accept")


def test_add_input_marks_what_it_admits_on_the_input_hook(world):
    """An accept on the input hook is not final: add-input also sets the accept
    mark, which a host input chain that drops can accept (Docker has no chain there)."""
    world.run("host", "nft", "-f", "-", stdin=HOST_INPUT_MARK)
    backend = world.backend()
    sync(backend, [], init=True)
    assert not world.reaches("web", WEB, GATEWAY, 9100)  # the host's input policy drop
    rule = ResolvedRule("web", Kind.INPUT, f"{WEB}/32", f"{GATEWAY}/32", "tcp", dport=9100)
    sync(backend, [rule])
    assert "jump fw-input" in world.listing()
    assert "ip saddr 172.17.0.2 ip daddr 172.17.0.1 tcp dport 9100 meta mark set" in world.listing()
    assert world.reaches("web", WEB, GATEWAY, 9100)
    assert not world.reaches("db", DB, GATEWAY, 9100)  # no rule, no mark: the host drops it
    sync(backend, [], scope={"web"})
    assert not world.reaches("web", WEB, GATEWAY, 9100)




def test_a_host_inet_filter_with_policy_drop(world):
    """Part 3: Debian's /etc/nftables.conf made strict (input policy drop).

    add-input's accept is not final: the host's input chain still drops, so
    the host's own firewall must admit what add-input rules are for.  The
    forward hook is not the host table's business here (its forward chain
    accepts): init's drops and add's opening work as without it.
    """
    world.run("host", "nft", "-f", "-", stdin=HOST_FILTER)
    backend = world.backend()
    rule = ResolvedRule("web", Kind.INPUT, f"{WEB}/32", f"{GATEWAY}/32", "tcp", dport=9100)
    sync(backend, [rule, add()], init=True)
    assert not world.reaches("web", WEB, GATEWAY, 9100)
    assert world.reaches("ext", GOOD, WEB, 80)
    assert not world.reaches("ext", OTHER, WEB, 80)
    world.run("host", "nft", "add", "rule", "inet", "filter", "input", "iifname", "docker0", "tcp", "dport", "9100", "accept")
    assert world.reaches("web", WEB, GATEWAY, 9100)


def test_init_refuses_without_the_engine_accept_mark(world):
    text = DOCKER_LIKE.read_text().replace('\t\tmeta mark & 0x00000100 == 0x00000100 counter packets 0 bytes 0 accept comment "ALLOW FW MARK"\n', "")
    world.run("host", "nft", "delete", "table", "ip", "docker-bridges")
    world.run("host", "nft", "delete", "table", "ip6", "docker-bridges")
    world.load_docker(text)
    backend = world.backend()
    with pytest.raises(FirewallError, match="--bridge-accept-fwmark") as info:
        backend.plan_init(backend.read(), ["docker0"], "nftables", ["docker0"])
    assert str(info.value).startswith(NO_MARK) and "nothing was changed" in str(info.value)
    assert world.listing() == ""  # nothing of ours exists
    with pytest.raises(FirewallError, match="--bridge-accept-fwmark"):
        backend.plan(backend.read(), [internal()], None)  # add-internal needs it too


def test_a_refused_batch_applies_nothing(world):
    backend = world.backend()
    sync(backend, [add()], init=True)
    before = world.listing()
    live = backend.read()
    changes = backend.plan(live, [add(source=OTHER)], None)
    bad = json.dumps({"delete": {"rule": {"family": "ip", "table": "docker-fw", "chain": "fw-forward", "handle": 99999}}})
    broken = [*changes, type(changes[0])(bad, "delete rule ... handle 99999", "test", "delete")]
    with pytest.raises(FirewallError, match="nft refused the change, nothing was applied"):
        backend.apply(live, broken)
    assert world.listing() == before
    assert not world.reaches("ext", OTHER, WEB, 80)


def test_check_finds_foreign_rules_and_a_flushed_base_chain(world):
    backend = world.backend()
    sync(backend, [add()], init=True)
    world.run("host", "nft", "add", "rule", "ip", "docker-fw", "fw-forward", "ip", "saddr", OTHER, "accept")
    world.run("host", "nft", "flush", "chain", "ip", "docker-fw", "forward")
    live = backend.read()
    foreign = backend.foreign_rules(live)
    assert len(foreign) == 1 and foreign[0].startswith("foreign rule in ip docker-fw fw-forward: handle")
    assert not backend.is_initialised(live, ["docker0"])  # nothing jumps to fw-init
    assert world.reaches("ext", OTHER, WEB, 80)  # open: what 'check' reports, 'replay' repairs
    sync(backend, [add()])  # replay: the jumps are back
    live = backend.read()
    assert backend.is_initialised(live, ["docker0"]) and backend.ensure(live) == []
    assert backend.foreign_rules(live) == foreign  # never ours to delete: check keeps reporting it


def test_init_keeps_closed_bridges_and_forgets_gone_ones(world):
    backend = world.backend()
    live = backend.read()
    changes = backend.plan_init(live, ["docker0", "br-0123456789ab"], "nftables", ["docker0", "br-0123456789ab"])
    backend.apply(live, changes + backend.ensure(live))
    assert '"docker-fw-init:br-0123456789ab"' in world.listing()
    assert backend.plan_init(backend.read(), ["docker0", "br-0123456789ab"], "nftables", ["docker0", "br-0123456789ab"]) == []
    live = backend.read()
    changes = backend.plan_init(live, ["docker0"], "nftables", ["docker0"])  # the network is gone
    assert [(c.verb, c.note) for c in changes] == [("delete", "its network is gone")]
    backend.apply(live, changes)
    assert "br-0123456789ab" not in world.listing()


def test_hostile_bridge_names_are_data_or_refused(world):
    """A name nft's syntax could not carry (a quote) is data in a JSON batch; a trailing
    '*' (nft's wildcard) or a backslash is refused, nothing changed."""
    backend = world.backend()
    live = backend.read()
    backend.apply(live, backend.plan_init(live, ['we"ird;x'], "nftables", ['we"ird;x']) + backend.ensure(live))
    assert "docker-fw-init:we" in world.listing()
    for name in ("br*", "a\\b"):
        with pytest.raises(FirewallError, match="wildcard"):
            backend.plan_init(backend.read(), [name], "nftables", [name])


def test_ipv6_rules_go_to_the_ip6_table(world):
    v6 = world.backend(6)
    v4 = world.backend(4)
    sync(v4, [], init=True)
    sync(v6, [add(source="2001:db8:51::2", dest="fd00:17::2", family=6)], init=True)
    assert world.reaches("ext", "2001:db8:51::2", "fd00:17::2", 80)
    assert not world.reaches("ext", "2001:db8:51::3", "fd00:17::2", 80)
    assert not world.reaches("ext", OTHER, WEB, 80)  # IPv4 closed, no IPv4 rule
    assert "2001:db8" not in world.listing("ip") and "2001:db8:51::2" in world.listing("ip6")


# -- what the iptables backend expresses since egress (issue #12), with packets --


def test_icmp_between_containers_by_type(world):
    """add-internal --protocol=icmp past --icc=false: echo requests only, when the rule names the type."""
    backend = world.backend()
    sync(backend, [], init=True)
    assert not world.pings("db", DB, WEB)  # Docker's ICC drop
    echo = ResolvedRule("web", Kind.INTERNAL, f"{DB}/32", f"{WEB}/32", "icmp", icmp_type="echo-request")
    sync(backend, [echo])
    assert world.pings("db", DB, WEB)
    assert not world.pings("db", DB, WEB, kind=13)  # a timestamp request: another type
    assert not world.pings("web", WEB, DB)  # one way
    any_type = ResolvedRule("web", Kind.INTERNAL, f"{DB}/32", f"{WEB}/32", "icmp")
    sync(backend, [any_type], scope={"web"})
    assert world.pings("db", DB, WEB, kind=13) and world.pings("db", DB, WEB)
    unreachable = ResolvedRule("web", Kind.INTERNAL, f"{DB}/32", f"{WEB}/32", "icmp", icmp_type="port-unreachable")
    sync(backend, [unreachable], scope={"web"})
    assert not world.pings("db", DB, WEB)  # type 3 code 3 only
    assert backend.plan(backend.read(), [unreachable], None) == []  # found again by its tag


def test_sctp_port_range_between_containers(world):
    backend = world.backend()
    sync(backend, [], init=True)
    assert not world.sctp_arrives("db", DB, "web", WEB, 3869)  # Docker's ICC drop
    rule = ResolvedRule("web", Kind.INTERNAL, f"{DB}/32", f"{WEB}/32", "sctp", dport=parse_ports("3868:3870", "x"))
    sync(backend, [rule])
    assert "sctp dport 3868-3870" in world.listing()
    assert world.sctp_arrives("db", DB, "web", WEB, 3869) and world.sctp_arrives("db", DB, "web", WEB, 3870)
    assert not world.sctp_arrives("db", DB, "web", WEB, 3871)


def test_port_ranges_and_lists_on_the_real_kernel(world):
    world.serve("web", "9100", "9150", "9300")
    backend = world.backend()
    ranged = internal(dport=parse_ports("9100:9200", "x"))
    sync(backend, [ranged], init=True)
    assert world.reaches("db", DB, WEB, 9100) and world.reaches("db", DB, WEB, 9150)
    assert not world.reaches("db", DB, WEB, 9300) and not world.reaches("db", DB, WEB, 80)
    # a list, with an overlapping item (merged: nft's sets refuse overlaps)
    listed = internal(dport=parse_ports("80,9300:9400,9140:9160,9150", "x"))
    sync(backend, [listed], scope={"web"})
    assert "tcp dport { 80, 9140-9160, 9300-9400 }" in world.listing()
    assert world.reaches("db", DB, WEB, 80) and world.reaches("db", DB, WEB, 9150) and world.reaches("db", DB, WEB, 9300)
    assert not world.reaches("db", DB, WEB, 9100) and not world.reaches("db", DB, WEB, 5432)
    assert backend.plan(backend.read(), [listed], None) == []
    # a source port list: the client's port is not in it
    sport = ResolvedRule("web", Kind.INTERNAL, f"{DB}/32", f"{WEB}/32", "tcp", sport=parse_ports("1,2", "x"), dport=5432)
    sync(backend, [sport], scope={"web"})
    assert not world.reaches("db", DB, WEB, 5432)


RESOLVER = OTHER  # the name server a locked web keeps (TCP port 53 in ext)


def lock_of_web(family=4) -> list:
    """What 'egress web deny' places (egress.resolve_lock) with RESOLVER as name server."""
    width = 32 if family == 4 else 128
    web, server = (WEB, RESOLVER) if family == 4 else ("fd00:17::2", "2001:db8:51::3")
    placed = [ResolvedLock("web", f"{web}/{width}", "docker0", family)]
    for proto in ("udp", "tcp"):
        placed.append(ResolvedRule("web", Kind.ADD, f"{web}/{width}", f"{server}/{width}", proto,
                                   dport=DNS_PORT, family=family, outbound=True))
        placed.append(ResolvedRule("web", Kind.INPUT, f"{web}/{width}", f"{server}/{width}", proto,
                                   dport=DNS_PORT, family=family))
    return placed


def outbound(dest=GOOD, dport=443, proto="tcp", family=4, **kw) -> ResolvedRule:
    width = 32 if family == 4 else 128
    web = WEB if family == 4 else "fd00:17::2"
    return ResolvedRule("web", Kind.ADD, f"{web}/{width}", f"{dest}/{width}", proto, dport=dport, family=family,
                        outbound=True, **kw)


def test_a_locked_container_reaches_only_its_outbound_rules_and_dns(world):
    world.serve("ext", "443", "53")
    backend = world.backend()
    sync(backend, [add()], init=True)
    assert world.reaches("web", WEB, GOOD, 443) and world.reaches("web", WEB, OTHER, 443)  # no lock yet
    assert world.pings("web", WEB, OTHER)
    rules = [add(), *lock_of_web(), outbound(), outbound(dest=OTHER, dport=0, proto="icmp", icmp_type="echo-request")]
    sync(backend, rules)
    assert world.reaches("web", WEB, GOOD, 443)  # its outbound rule
    assert not world.reaches("web", WEB, OTHER, 443) and not world.reaches("web", WEB, GOOD, 53)
    assert world.reaches("web", WEB, RESOLVER, 53)  # the DNS it keeps
    assert world.pings("web", WEB, OTHER) and not world.pings("web", WEB, GOOD)  # the icmp outbound rule
    assert world.reaches("ext", GOOD, WEB, 80)  # connections others open still work (add, replies)
    assert world.reaches("db", DB, OTHER, 443)  # db is not locked
    egress = world.run("host", "nft", "list", "chain", "ip", "docker-fw", "fw-egress").stdout.splitlines()
    verdicts = [next(w for w in ("return", "drop") if f" {w} comment" in line) for line in egress if "comment" in line]
    assert verdicts == ["return"] * 4 + ["drop"]  # outbound rules (and DNS) above the lock
    assert backend.plan(backend.read(), rules, None) == []
    # the lock goes: everything is reachable again; its outbound rules change nothing then
    sync(backend, [add(), outbound()], scope={"web"})
    assert world.reaches("web", WEB, OTHER, 443) and world.reaches("web", WEB, GOOD, 53)


def test_an_outbound_return_does_not_skip_init(world):
    """A locked container's outbound rule to everywhere lets it out, not into a bridge init closed:
    the rule returns from fw-egress, and fw-init still decides (an accept would have skipped it)."""
    backend = world.backend()
    everywhere = ResolvedRule("db", Kind.ADD, f"{DB}/32", "0.0.0.0/0", "tcp", outbound=True)
    lock = ResolvedLock("db", f"{DB}/32", "docker0")
    sync(backend, [lock, everywhere], init=True)
    world.ip("host", "link", "add", "docker1", "type", "bridge")
    world.ip("host", "addr", "add", "172.19.0.1/16", "dev", "docker1")
    world.ip("host", "link", "set", "docker1", "up")
    world.ip("host", "link", "add", "veth-x", "type", "veth", "peer", "name", "eth1", "netns", world.ns["ext"])
    world.ip("host", "link", "set", "veth-x", "master", "docker1", "up")
    world.ip("ext", "addr", "add", "172.19.0.2/16", "dev", "eth1")
    world.ip("ext", "link", "set", "eth1", "up")
    world.serve("ext", "8443")
    assert world.reaches("db", DB, GOOD, 8443)  # out: its outbound rule
    live = backend.read()
    backend.apply(live, backend.plan_init(live, ["docker0", "docker1"], "nftables", ["docker0", "docker1"]))
    assert not world.reaches("db", DB, "172.19.0.2", 8443)  # into docker1, closed by init
    assert world.reaches("db", DB, GOOD, 8443)


def test_the_host_lock_and_add_input(world):
    backend = world.backend()
    sync(backend, [], init=True)
    assert world.reaches("web", WEB, GATEWAY, 9100) and world.pings("web", WEB, GATEWAY)
    sync(backend, lock_of_web())
    assert not world.reaches("web", WEB, GATEWAY, 9100) and not world.pings("web", WEB, GATEWAY)
    assert world.reaches("db", DB, GATEWAY, 9100)  # db is not locked
    to_host = ResolvedRule("web", Kind.INPUT, f"{WEB}/32", f"{GATEWAY}/32", "tcp", dport=9100)
    ping_host = ResolvedRule("web", Kind.INPUT, f"{WEB}/32", f"{GATEWAY}/32", "icmp", icmp_type="echo-request")
    sync(backend, [*lock_of_web(), to_host, ping_host])
    assert world.reaches("web", WEB, GATEWAY, 9100) and world.pings("web", WEB, GATEWAY)
    assert not world.pings("web", WEB, GATEWAY, kind=13)


def test_an_ipv6_lock(world):
    """No traffic before the lock: the container's neighbour discovery (from its own
    address to the host, never a tracked connection) must pass the host lock."""
    world.serve("ext", "443", "53")
    v6 = world.backend(6)
    sync(world.backend(4), [], init=True)
    sync(v6, [*lock_of_web(6), outbound(dest="2001:db8:51::2", family=6)], init=True)
    assert world.reaches("web", "fd00:17::2", "2001:db8:51::2", 443)
    assert not world.reaches("web", "fd00:17::2", "2001:db8:51::3", 443)
    assert world.reaches("web", "fd00:17::2", "2001:db8:51::3", 53)
    assert not world.reaches("web", "fd00:17::2", "fd00:17::1", 9100)  # the host
    assert world.reaches("web", WEB, OTHER, 443)  # IPv4 is not locked: no IPv4 lock


def test_replay_moves_an_outbound_rule_found_below_the_lock(world):
    """A rule of ours below a lock (put there by hand) never gets its packets: plan moves it up."""
    world.serve("ext", "443")
    backend = world.backend()
    rules = [*lock_of_web(), outbound()]
    sync(backend, rules, init=True)
    moved = render(outbound(), backend.read().mark)
    handle = next(str(o["rule"]["handle"]) for o in json.loads(world.run(
        "host", "nft", "-j", "list", "chain", "ip", "docker-fw", "fw-egress").stdout)["nftables"]
        if o.get("rule", {}).get("comment") == moved.comment)
    world.run("host", "nft", "delete", "rule", "ip", "docker-fw", "fw-egress", "handle", handle)
    world.run("host", "nft", f"add rule ip docker-fw fw-egress {moved.text()}")  # appended: below the drop
    assert not world.reaches("web", WEB, GOOD, 443)
    changes = backend.plan(backend.read(), rules, None)
    assert [c.verb for c in changes] == ["delete", "add"] and changes[1].line.startswith("insert rule")
    backend.apply(backend.read(), changes)
    assert world.reaches("web", WEB, GOOD, 443)
    assert backend.plan(backend.read(), rules, None) == []


def test_ipv6_between_containers_needs_init_neighbour_discovery_mark(world):
    """--icc=false drops IPv6 neighbour discovery within docker0 too (Docker's "ICC" drop):
    init marks it, so an IPv6 add-internal rule connects without static neighbour entries."""
    from docker_fw.backends.nftables.rules import CHAIN_INIT, NEIGHBOUR_PREFIX

    for role in ("web", "db"):
        world.ip(role, "-6", "neigh", "flush", "dev", "eth0", "nud", "all")
    v6 = world.backend(6)
    rule = ResolvedRule("web", Kind.INTERNAL, "fd00:17::3/128", "fd00:17::2/128", "tcp", dport=5432, family=6)
    sync(v6, [rule], init=True)
    assert NEIGHBOUR_PREFIX in world.listing("ip6") and NEIGHBOUR_PREFIX not in world.listing("ip")
    assert world.reaches("db", "fd00:17::3", "fd00:17::2", 5432)
    assert not world.reaches("db", "fd00:17::3", "fd00:17::2", 80)  # only the rule's port
    assert v6.plan_init(v6.read(), ["docker0"], "nftables", ["docker0"]) == []  # a second init: nothing
    # without it (deleted by hand), the neighbours never learn each other: nothing connects, and
    # init (what check reports) would put it back
    live = v6.read()
    (mine,) = [r for r in live.ours.chain_rules(CHAIN_INIT) if r.comment.startswith(NEIGHBOUR_PREFIX)]
    world.run("host", "nft", "delete", "rule", "ip6", "docker-fw", CHAIN_INIT, "handle", str(mine.handle))
    for role in ("web", "db"):
        world.ip(role, "-6", "neigh", "flush", "dev", "eth0", "nud", "all")
    assert not world.reaches("db", "fd00:17::3", "fd00:17::2", 5432)
    assert [c.why for c in v6.plan_init(v6.read(), ["docker0"], "nftables", ["docker0"])] == ["init"]
