"""Egress policies: the name servers a lock keeps, the service actions, flows through the walker.

The service runs against ``fakes.FakeEngine`` and ``fakes.FakeFirewall``
(iptables-save/-restore over Docker 20.10's layout in memory) and a real
store; which packets get through is asked of the packet walker
(backends/iptables/walk.py), not read off the lines.
"""

from __future__ import annotations

import sqlite3

import pytest

from docker_fw.actions import Service
from docker_fw.backends.iptables.reconcile import plan_rules
from docker_fw.backends.iptables.rules import CHAIN_EGRESS, CHAIN_INPUT, render_all
from docker_fw.backends.iptables.walk import Packet, apply_lines, forward, input_
from docker_fw.egress import MAX_NAMESERVERS, ResolvedLock, nameservers
from docker_fw.errors import EngineError, UsageError
from docker_fw.model import EgressPolicy
from docker_fw.rulegrammar import AddRequest, EgressRequest, egress_request
from docker_fw.store import Store
from fakes import FakeFirewall
from test_service import World as ServiceWorld
from test_service import store  # noqa: F401 (fixture)

LOCKED_IP = "172.17.0.2"
FREE_IP = "172.17.0.3"
EXT = "198.51.100.2"
EXT_OTHER = "198.51.100.3"


# --- the name servers a locked container keeps -------------------------------------------


def test_the_default_bridges_name_servers_are_kept():
    conf = b"# a comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:0\n"
    assert nameservers(conf, []) == ["192.0.2.53", "2001:db8::53"]


def test_the_embedded_dns_forwards_to_the_hosts_servers_when_nothing_else_is_said():
    conf = b"nameserver 127.0.0.11\noptions ndots:0\n"
    assert nameservers(conf, [], fallback=b"nameserver 127.0.0.53\nnameserver 10.0.0.53\n") == ["10.0.0.53"]


def test_the_embedded_dns_forwards_to_the_containers_dns_option():
    conf = b"nameserver 127.0.0.11\n"
    assert nameservers(conf, ["198.51.100.4"], fallback=b"nameserver 10.0.0.53\n") == ["198.51.100.4"]


def test_the_servers_newer_engines_note_are_kept_and_host_ones_need_nothing():
    conf = b"nameserver 127.0.0.11\n# ExtServers: [host(127.0.0.53) 192.0.2.1 2001:db8::1]\n"
    assert nameservers(conf, [], fallback=b"nameserver 10.0.0.53\n") == ["192.0.2.1", "2001:db8::1"]


@pytest.mark.parametrize("line", [
    b"nameserver 0.0.0.0", b"nameserver 224.0.0.1", b"nameserver ::1", b"nameserver 127.0.0.1",
    b"nameserver ::ffff:192.0.2.1", b"nameserver 192.0.2.1; rm -rf /", b"nameserver 999.1.1.1",
    b"nameserver " + b"1" * 5000, b"nameserver\xff192.0.2.1", b"nameserver 192.0.2.1/24",
    b"#nameserver 192.0.2.1", b"nameserver 192.0.2.1 192.0.2.2",
])
def test_hostile_resolv_conf_lines_keep_nothing_open(line):
    assert nameservers(line + b"\n", []) == []


def test_at_most_a_few_servers_are_kept():
    conf = b"".join(b"nameserver 192.0.2.%d\n" % n for n in range(1, 40))
    assert len(nameservers(conf, [])) == MAX_NAMESERVERS


# --- the grammar ---------------------------------------------------------------------------


def test_an_egress_request_is_checked_without_the_engine():
    assert egress_request("/web", "deny") == EgressRequest("web", EgressPolicy.DENY)
    with pytest.raises(UsageError, match="must be allow or deny"):
        egress_request("web", "block")
    with pytest.raises(UsageError, match="not a container name"):
        egress_request("we b", "deny")


# --- the service: flows through the walker -------------------------------------------------


class World(ServiceWorld):
    """test_service's world (fake engine and firewall, a real store), with
    containers that have a resolv.conf, and packets to walk."""

    def container(self, name: str, ip: str, dns: tuple[str, ...] = ()):
        conf = self.tmp / f"{name}.resolv.conf"
        conf.write_bytes(b"nameserver 192.0.2.53\n")
        return self.engine.add(name, "running", ips={"bridge": ip}, resolv_conf_path=str(conf), dns=list(dns))

    def out_to(self, src: str, dst: str, port: int = 80, proto: str = "tcp", oif: str = "eth0", **kw) -> str:
        return forward(self.firewall.table, Packet(src, dst, port, "docker0", oif, proto=proto, **kw))

    def to_host(self, src: str, dst: str = "172.17.0.1", port: int = 22, **kw) -> str:
        return input_(self.firewall.table, Packet(src, dst, port, "docker0", "", **kw))

    def allow_out(self, owner: str, dest: str, **kw) -> None:
        from docker_fw.model import Kind

        self.run().add(Kind.ADD, [AddRequest(container=owner, source=".", dest=dest, **kw)])


@pytest.fixture
def world(tmp_path, store) -> World:
    w = World(tmp_path, store)
    w.tmp = tmp_path
    w.container("locked", LOCKED_IP)
    w.container("free", FREE_IP)
    w.run().init()
    return w


def test_deny_drops_new_outbound_traffic_except_what_is_allowed(world):
    assert world.out_to(LOCKED_IP, EXT) == "ACCEPT"  # Docker's default
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.allow_out("locked", EXT, dport="80,443")
    world.allow_out("locked", EXT, dport="9100:9200")
    world.allow_out("locked", EXT, proto="icmp", icmp_type="echo-request")
    out = world.out_to
    assert out(LOCKED_IP, EXT, 80) == out(LOCKED_IP, EXT, 443) == out(LOCKED_IP, EXT, 9150) == "ACCEPT"
    assert out(LOCKED_IP, EXT, 9300) == out(LOCKED_IP, EXT, 8080) == out(LOCKED_IP, EXT_OTHER, 80) == "DROP"
    assert out(LOCKED_IP, EXT, 0, proto="icmp") == "ACCEPT"
    assert out(LOCKED_IP, EXT, 0, proto="icmp", icmp_type=13) == "DROP"  # another ICMP type
    assert out(LOCKED_IP, EXT_OTHER, 0, proto="icmp") == "DROP"
    assert out(LOCKED_IP, "172.18.0.5", oif="br-0123456789ab") == "DROP"  # another Docker network
    # replies and established flows are not locked; DNS to its server is kept
    assert out(LOCKED_IP, EXT_OTHER, 80, established=True) == "ACCEPT"
    assert out(LOCKED_IP, "192.0.2.53", 53, proto="udp") == out(LOCKED_IP, "192.0.2.53", 53) == "ACCEPT"
    assert out(LOCKED_IP, "192.0.2.53", 54, proto="udp") == out(LOCKED_IP, EXT, 53, proto="udp") == "DROP"
    # the host itself: locked too, but for DNS on it and replies
    assert world.to_host(LOCKED_IP) == "DROP"
    assert world.to_host(LOCKED_IP, "192.0.2.53", 53, proto="udp") == "ACCEPT"
    assert world.to_host(LOCKED_IP, established=True) == "ACCEPT"
    # another container is not locked
    assert out(FREE_IP, EXT_OTHER, 8080) == "ACCEPT" and world.to_host(FREE_IP) == "ACCEPT"
    assert world.run().check() == []


def test_add_input_rules_admit_a_locked_container_to_the_host(world):
    from docker_fw.model import Kind

    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.run().add(Kind.INPUT, [AddRequest(container="locked", source=".", dest="/", dport="9100")])
    assert world.to_host(LOCKED_IP, port=9100) == "ACCEPT"
    assert world.to_host(LOCKED_IP, port=22) == "DROP"


def test_an_allow_added_after_the_lock_goes_above_it(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.allow_out("locked", EXT, dport="8443")
    assert world.out_to(LOCKED_IP, EXT, 8443) == "ACCEPT"
    egress = world.firewall.table.chain_rules(CHAIN_EGRESS)
    assert egress[-1].target() == "DROP"


def test_a_rule_moved_below_the_lock_is_put_back_above_it(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.allow_out("locked", EXT, dport="8443")
    table = world.firewall.table
    allow = next(r for r in table.chain_rules(CHAIN_EGRESS) if r.target() == "RETURN" and "8443" in r.args)
    position = table.chain_rules(CHAIN_EGRESS).index(allow) + 1
    world.firewall.table = apply_lines(table, [f"-D {CHAIN_EGRESS} {position}", f"-A {CHAIN_EGRESS} " + " ".join(
        f'"{a}"' if " " in a else a for a in allow.args)])
    assert world.out_to(LOCKED_IP, EXT, 8443) == "DROP"
    assert any("8443" in line for line in world.run().check())  # drift
    world.run().replay([])
    assert world.out_to(LOCKED_IP, EXT, 8443) == "ACCEPT"
    assert world.run().check() == []


def test_the_lock_follows_the_container_and_never_sticks_to_its_address(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.allow_out("locked", EXT, dport="80")
    # it stops: its lock and rules are withdrawn; another container takes the address
    world.engine.containers["locked"].state = "exited"
    world.run().replay([])
    assert not world.firewall.ours("locked")
    world.container("squatter", LOCKED_IP)
    world.run().replay([])
    assert world.out_to(LOCKED_IP, EXT_OTHER, 8080) == "ACCEPT"  # the squatter is not locked
    world.run().egress(EgressRequest("squatter", EgressPolicy.DENY))
    assert world.out_to(LOCKED_IP, EXT, 80) == "DROP"  # nor has it the old holder's destinations
    world.run().drop(["squatter"])
    # the locked container starts again at a new address
    world.engine.containers["squatter"].state = "exited"
    world.engine.containers["locked"].state = "running"
    world.engine.containers["locked"].ips = {"bridge": "172.17.0.9"}
    world.run().replay(["locked"])
    assert world.out_to("172.17.0.9", EXT, 80) == "ACCEPT"
    assert world.out_to("172.17.0.9", EXT_OTHER, 80) == "DROP"
    assert world.out_to(LOCKED_IP, EXT_OTHER, 80) == "ACCEPT"
    assert world.run().check() == []


def test_a_stopped_container_may_be_locked_and_is_at_its_start(world):
    world.engine.containers["locked"].state = "exited"
    world.run().replay([])
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    assert any("not applied" in w and "egress locked deny" in w for w in world.warnings)
    world.engine.containers["locked"].state = "running"
    world.run().replay(["locked"])
    assert world.out_to(LOCKED_IP, EXT_OTHER) == "DROP"


def test_ls_prints_it_back_and_drop_and_allow_clear_it(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.allow_out("locked", EXT, dport="80,443")
    lines: list[str] = []
    Service(world.engine, world.firewall, world.store, out=lines.append).ls([])
    assert lines == [
        "docker-fw add locked --source=. --dest=198.51.100.2 --dport=80,443 --protocol=tcp",
        "docker-fw egress locked deny",
    ]
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    assert world.out[-1] == "already recorded: docker-fw egress locked deny"
    world.run().egress(EgressRequest("locked", EgressPolicy.ALLOW))
    assert world.out_to(LOCKED_IP, EXT_OTHER) == "ACCEPT"
    assert world.store.egress() == {}
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    world.run().drop(["locked"])
    assert world.out[-1] == "locked: dropped 1 rule and its egress policy (allow again)"
    assert world.store.egress() == {} and not world.firewall.ours("locked")
    assert world.out_to(LOCKED_IP, EXT_OTHER) == "ACCEPT"


def test_rename_moves_the_policy(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    container = world.engine.containers.pop("locked")
    container.name = "renamed"
    world.engine.containers["renamed"] = container
    world.run().rename("locked", "renamed")
    assert world.store.egress() == {"renamed": EgressPolicy.DENY}
    assert world.out_to(LOCKED_IP, EXT_OTHER) == "DROP"
    assert world.run().check() == []


def test_check_reports_a_lock_someone_removed(world):
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    table = world.firewall.table
    position = next(i for i, r in enumerate(table.chain_rules(CHAIN_EGRESS), 1) if r.target() == "DROP")
    world.firewall.table = apply_lines(table, [f"-D {CHAIN_EGRESS} {position}"])
    problems = world.run().check()
    assert len(problems) == 1 and problems[0].startswith("missing (locked)") and "-j DROP" in problems[0]


def test_a_container_on_no_bridge_cannot_be_locked_and_nothing_changes(world):
    world.engine.add("hostnet", "running", ips={})
    before = list(world.firewall.table.rules)
    with pytest.raises(EngineError, match="no bridge network"):
        world.run().egress(EgressRequest("hostnet", EgressPolicy.DENY))
    assert world.firewall.table.rules == before and world.store.egress() == {}


def test_a_resolv_conf_that_is_a_link_keeps_no_server_open(world, tmp_path):
    link = tmp_path / "link.conf"
    link.symlink_to(tmp_path / "locked.resolv.conf")
    world.engine.containers["locked"].resolv_conf_path = str(link)
    world.run().egress(EgressRequest("locked", EgressPolicy.DENY))
    assert world.out_to(LOCKED_IP, "192.0.2.53", 53, proto="udp") == "DROP"
    assert any("no name server kept" in w for w in world.warnings)


# --- rendering and ordering, without the service ------------------------------------------


def test_a_lock_renders_two_drops_after_everything_else():
    lock = ResolvedLock("web", "172.17.0.2/32", "docker0")
    forward_lock, input_lock = render_all([lock])
    assert (forward_lock.chain, input_lock.chain) == (CHAIN_EGRESS, CHAIN_INPUT)
    assert forward_lock.argv()[:8] == ["-s", "172.17.0.2/32", "-i", "docker0", "!", "-o", "docker0", "-m"]
    assert forward_lock.last and input_lock.last and forward_lock.target == input_lock.target == "DROP"


def test_allows_are_inserted_above_locks_in_one_batch():
    firewall = FakeFirewall()
    from docker_fw.backends.iptables.reconcile import ensure_chains
    from docker_fw.resolve import ResolvedRule
    from docker_fw.model import Kind

    table = apply_lines(firewall.table, [c.line for c in ensure_chains(firewall.table, egress=True)])
    lock = ResolvedLock("web", "172.17.0.2/32", "docker0")
    allow = ResolvedRule("web", Kind.ADD, "172.17.0.2/32", "198.51.100.2/32", "tcp", dport=80, outbound=True)
    lines = [c.line for c in plan_rules(table, render_all([lock, allow]), None)]
    assert any(line.startswith(f"-I {CHAIN_EGRESS} 1 ") for line in lines)
    table = apply_lines(table, lines)
    assert [r.target() for r in table.chain_rules(CHAIN_EGRESS)] == ["RETURN", "DROP"]


# --- the store: version 1 becomes version 2 -------------------------------------------------


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rules (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, action TEXT NOT NULL, source TEXT NOT NULL,
    dest TEXT NOT NULL, proto TEXT NOT NULL, sport INTEGER NOT NULL, dport INTEGER NOT NULL,
    filter TEXT NOT NULL, created TEXT NOT NULL,
    UNIQUE (owner, action, source, dest, proto, sport, dport, filter));
CREATE INDEX rules_owner ON rules (owner);
CREATE TABLE hosts (owner TEXT NOT NULL, name TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (owner, name));
CREATE TABLE gone (owner TEXT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE hostconfigs (owner TEXT PRIMARY KEY, config TEXT NOT NULL, saved TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '1');
INSERT INTO rules VALUES (1, 'web', 'add', '198.51.100.0/24', '.', 'tcp', 0, 80, '[]', '2026-01-01');
INSERT INTO rules VALUES (2, 'web', 'add', '.', '198.51.100.9', 'udp', 53, 0, '[]', '2026-01-01');
"""


@pytest.fixture
def v1_store(tmp_path):
    state = tmp_path / "v1"
    state.mkdir(mode=0o700)
    db = state / "state.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_SCHEMA)
    db.chmod(0o600)
    return state


@pytest.mark.parametrize("read_only", [True, False], ids=["reader", "writer"])
def test_a_version_1_store_is_read_as_version_2(v1_store, read_only):
    with Store.open(directory=str(v1_store), read_only=read_only) as store:
        rules = store.rules()
        assert [(r.sport.text, r.dport.text, r.icmp_type) for r in rules] == [("", "80", ""), ("53", "", "")]
        assert store.egress() == {}
    with sqlite3.connect(v1_store / "state.db") as conn:
        version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    assert version == ("1" if read_only else "2")  # a reader writes nothing


def test_a_migrated_store_takes_ranges_and_policies(v1_store):
    with Store.open(directory=str(v1_store)) as store:
        with store.transaction():
            store.set_egress("web", EgressPolicy.DENY)
    with Store.open(directory=str(v1_store), read_only=True) as store:
        assert store.egress() == {"web": EgressPolicy.DENY}
        assert store.owners() == ["web"]


def test_a_dual_stack_container_is_locked_in_both_families_with_its_servers_of_each():
    from docker_fw.engine import Container, Endpoint, Snapshot
    from docker_fw.egress import resolve_lock
    from docker_fw.resolve import ResolvedRule

    endpoint = Endpoint("v6net", "br-0123456789ab", "172.20.0.2", "172.20.0.1", gateway6="2001:db8:1::1",
                        ip6="2001:db8:1::2")
    snap = Snapshot(containers=[Container("a" * 64, "web", "running", (endpoint,))], networks=[])
    placed = resolve_lock("web", snap, ["192.0.2.53", "2001:db8::53"])
    locks = [p for p in placed if isinstance(p, ResolvedLock)]
    assert [(lock.source, lock.family) for lock in locks] == [("172.20.0.2/32", 4), ("2001:db8:1::2/128", 6)]
    dns = [p for p in placed if isinstance(p, ResolvedRule)]
    assert {(r.family, r.dest) for r in dns} == {(4, "192.0.2.53/32"), (6, "2001:db8::53/128")}
    assert len(dns) == 8  # udp and tcp, outbound and to the host, per family
    assert all(r.dport.text == "53" for r in dns)
