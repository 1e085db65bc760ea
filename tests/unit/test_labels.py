"""The docker-fw.rules label: its grammar (shared with --from), Compose service
names, whole-or-nothing per container, and the service's use of it (replay,
check, ls, drop) against the fake engine and firewall, with the packet walker."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given

from docker_fw import labels
from docker_fw.actions import Service
from docker_fw.backends.iptables.walk import Packet, forward
from docker_fw.engine import Container, Endpoint, Network, PortBinding, Snapshot
from docker_fw.errors import UsageError
from docker_fw.model import Ports
from docker_fw.labels import MAX_LABEL_BYTES, MAX_LABEL_LINES, RULES_LABEL, icc_note, parse_label, read_labels
from docker_fw.model import AddressSpec, Kind, RuleSpec
from docker_fw.rulegrammar import AddRequest, Origin, RuleError, checked_spec, parse_from_line
from docker_fw.store import Store
from fakes import NETWORKS, FakeEngine, FakeFirewall
from tests.fuzz_strategies import label_values

EVERY_ACTION = """\
# web's rules, one per line
allow 198.51.100.0/24 203.0.113.7

add --source=198.51.100.2 --dport=80
   # an indented comment
add-internal --source=app --dport=5432
add-input --source=. --dest=/ --dport=9100
add-two-ways --source=worker --dport=9000
"""


def at(line: int) -> Origin:
    return Origin.label(RULES_LABEL, line)


# --- the grammar ----------------------------------------------------------------------


def test_a_label_of_every_action_with_comments_and_blank_lines():
    rules = parse_label("web", EVERY_ACTION)
    assert [(r.action, r.request.origin) for r in rules] == [
        ("allow", at(2)), ("add", at(4)), ("add-internal", at(6)), ("add-input", at(7)), ("add-two-ways", at(8)),
    ]
    assert all(r.request.container == "web" for r in rules)  # the label's owner, never written
    assert rules[0].request.addresses == ("198.51.100.0/24", "203.0.113.7")
    assert (rules[2].request.source, rules[2].request.dport) == ("app", Ports.of(5432))


@pytest.mark.parametrize(
    "label, line, message",
    [
        ("add --source=198.51.100.2 --dport=80\n\nadd --dport=80\n", 3, "--source is mandatory"),
        ("# ok\nweb --source=198.51.100.2\n", 2, "a label's rule starts with its action"),
        ("add --source=198.51.100.2 --dport=http\n", 1, "--dport: not a port number: 'http'"),
        ("allow 198.51.100.2\nallow db\n", 2, "allow takes IPv4 addresses or subnets (or IPv6 ones), not 'db'"),
        ("add-internal --source=app\n", 1, "--dport is mandatory for add-internal"),
        ("add --source=198.51.100.2 --filter='-j ACCEPT'\n", 1, "--filter"),
        ("add --source='198.51.100.2\n", 1, "No closing quotation"),
        ("add --source=198.51.100.2 --dport=80\radd --source=0.0.0.0/0\n", 1, "control or unprintable character (U+000D)"),
        ("allow 198.51.100.2\nallow 203.0.113.7\u2028add --source=0.0.0.0/0\n", 2, "(U+2028)"),
        ("allow 198.51.100.2\n\x1b[2Jallow 0.0.0.0/0\n", 2, "(U+001B)"),
    ],
)
def test_a_bad_line_refuses_the_whole_label_naming_its_line(label, line, message):
    with pytest.raises(RuleError) as info:
        parse_label("web", label)
    assert info.value.origin == at(line)
    assert message in info.value.message
    assert str(info.value).startswith(f"label {RULES_LABEL} line {line}: ")


@pytest.mark.parametrize(
    "value, message",
    [
        ("#" * (MAX_LABEL_BYTES + 1), f"larger than {MAX_LABEL_BYTES:,} bytes"),
        ("allow 198.51.100.2\n" * (MAX_LABEL_LINES + 1), f"more than {MAX_LABEL_LINES:,} lines"),
        ("allow 198.51.100.2 \ud800\n", "not UTF-8 text"),  # JSON may carry a lone surrogate
    ],
)
def test_a_label_past_its_bounds_is_refused_whole(value, message):
    with pytest.raises(UsageError, match=message):
        parse_label("web", value)


def test_a_label_at_its_bounds_is_read():
    assert len(parse_label("web", "allow 198.51.100.2\n" * MAX_LABEL_LINES)) == MAX_LABEL_LINES


@pytest.mark.parametrize(
    "action, options",
    [
        ("add", "--source=198.51.100.2 --dport=80 --protocol=udp"),
        ("add", "-s 198.51.100.0/24 --filter='! -i @bridge -o @bridge'"),
        ("add-internal", "--source=app --dport=5432"),
        ("add-input", "--source=. --dest=/ --dport=9100"),
        ("add-two-ways", "--source=worker --dport=9000"),
        ("add", "--dport=80"),
        ("add-internal", "--source=app"),
        ("add", "--source=web --dport=80"),
        ("add-input", "--source=. --dest=/ --dport=99999"),
    ],
)
def test_a_label_line_means_what_the_same_from_line_means(action, options):
    """One grammar: the label's line and --from's 'CONTAINER options' line give
    the same rule, or the same error."""
    def outcome(request):
        try:
            return checked_spec(action, request())
        except RuleError as exc:
            return exc.message

    from_label = outcome(lambda: parse_label("web", f"{action} {options}")[0].request)
    assert from_label == outcome(lambda: parse_from_line(f"web {options}", action, Origin.file("f", 1)))


# --- a snapshot: Compose services, containers, whole or nothing -------------------------

NET = Network(id="1" * 64, name="shop_default", driver="bridge", bridge="br-111111111111",
              subnets=(ipaddress.IPv4Network("172.20.0.0/16"),), gateway="172.20.0.1", icc=False)
ICC_NET = dataclasses.replace(NET, id="2" * 64, name="open", bridge="br-222222222222",
                              subnets=(ipaddress.IPv4Network("172.21.0.0/16"),), gateway="172.21.0.1", icc=True)


def ctr(name: str, ip: str, project: str = "", service: str = "", rules: str | None = None,
        state: str = "running", net: Network = NET, ports=()) -> Container:
    kept = []
    if rules is not None:
        kept.append((RULES_LABEL, rules))
    if project:
        kept += [(labels.COMPOSE_PROJECT_LABEL, project), (labels.COMPOSE_SERVICE_LABEL, service)]
    endpoints = (Endpoint(net.name, net.bridge, ip, net.gateway),) if state == "running" else ()
    return Container(id=name.encode().hex().ljust(64, "0")[:64], name=name, state=state,
                     endpoints=endpoints, ports=tuple(ports), labels=tuple(kept))


def shop(*extra: Container, db_rules: str = "add-internal --source=app --dport=5432") -> Snapshot:
    return Snapshot(
        containers=[
            ctr("shop-db-1", "172.20.0.2", "shop", "db", db_rules),
            ctr("shop-app-1", "172.20.0.3", "shop", "app"),
            ctr("shop-app-2", "172.20.0.4", "shop", "app"),
            ctr("other-app-1", "172.20.0.5", "other", "app"),  # another project's 'app'
            *extra,
        ],
        networks=[NET, ICC_NET],
    )


def sources(found: labels.LabelRules, owner: str) -> list[str]:
    return [r.spec.source.text for r in found.of(owner)]


def test_a_service_name_stands_for_each_replica_of_the_owners_project():
    found = read_labels(shop())
    assert sources(found, "shop-db-1") == ["shop-app-1", "shop-app-2"]
    assert found.owners == {"shop-db-1"} and not found.refused


def test_a_name_that_is_no_service_of_the_project_is_a_container_name():
    snap = shop(ctr("tool", "172.20.0.9"), db_rules="add-internal --source=tool --dport=5432\n"
                "add-internal --source=other-app-1 --dport=5432")
    assert sources(read_labels(snap), "shop-db-1") == ["tool", "other-app-1"]


def test_stopped_replicas_leave_the_rule_and_a_stopped_owner_asks_for_nothing():
    snap = shop(ctr("shop-app-3", "", "shop", "app", state="exited"))
    assert sources(read_labels(snap), "shop-db-1") == ["shop-app-1", "shop-app-2"]
    stopped = Snapshot([ctr("shop-db-1", "", "shop", "db", "add --source=198.51.100.2", state="exited")], [NET])
    assert read_labels(stopped).rules == ()


def test_one_bad_label_refuses_that_container_only():
    snap = shop(ctr("shop-web-1", "172.20.0.6", "shop", "web", "allow 198.51.100.2\nadd --source=nowhere!\n",
                    ports=[PortBinding(80, "tcp", "0.0.0.0", 8080)]))
    found = read_labels(snap)
    assert found.of("shop-web-1") == []  # not even its good first line
    assert sources(found, "shop-db-1") == ["shop-app-1", "shop-app-2"]
    [(owner, message)] = found.refused
    assert owner == "shop-web-1"
    assert message.startswith(f"container shop-web-1: label {RULES_LABEL} line 2: invalid address specification")
    assert message.endswith("none of its label's rules applied")


@pytest.mark.parametrize(
    "rules, message",
    [
        ("add --source=172.20.0.3 --dport=80", "172.20.0.3 is a container network address"),
        ("add-internal --source=172.20.0.1 --dport=80", "is a Docker network's gateway"),
        ("add --source=172.20.0.0/24 --dport=80", "internal Docker traffic"),
        ("allow 198.51.100.2", "publishes no ports"),
        ("add-internal --source=shop-db-1 --dport=80", "source and destination are the same"),
    ],
)
def test_what_only_the_engine_can_tell_refuses_the_label_too(rules, message):
    [(owner, refused)] = read_labels(shop(db_rules=rules)).refused
    assert owner == "shop-db-1" and message in refused and "line 1: " in refused


def test_allow_opens_each_published_port_from_outside_the_bridge():
    web = ctr("web", "172.20.0.6", rules="allow 198.51.100.0/24",
              ports=[PortBinding(80, "tcp", "0.0.0.0", 8080), PortBinding(53, "udp", "0.0.0.0", 5353)])
    specs = [r.spec for r in read_labels(Snapshot([web], [NET])).rules]
    assert [(s.kind, s.source.text, s.dport, s.proto, s.filter) for s in specs] == [
        (Kind.ADD, "198.51.100.0/24", Ports.of(53), "udp", ("!", "-i", "@bridge", "-o", "@bridge")),
        (Kind.ADD, "198.51.100.0/24", Ports.of(80), "tcp", ("!", "-i", "@bridge", "-o", "@bridge")),
    ]


def test_a_replica_that_starts_or_goes_brings_the_rules_naming_its_service():
    found = read_labels(shop())
    new = shop(ctr("shop-app-3", "172.20.0.7", "shop", "app"))
    assert found.referrers({"shop-app-3"}, new) == {"shop-db-1"}
    assert found.referrers({"other-app-1"}, new) == set()  # another project's
    assert found.referrers({"gone-already"}, new) == {"shop-db-1"}  # removed before we looked: anyone's


def test_an_internal_allow_on_an_icc_network_is_said_to_change_nothing():
    db, app = ctr("db", "172.21.0.2", net=ICC_NET), ctr("app", "172.21.0.3", net=ICC_NET)
    rule = RuleSpec("db", Kind.INTERNAL, AddressSpec.container("app"), AddressSpec.self_(), dport=5432)
    note = icc_note(rule, Snapshot([db, app], [NET, ICC_NET]))
    assert note and "share only open" in note and 'com.docker.network.bridge.enable_icc: "false"' in note
    assert icc_note(rule, shop()) is None  # not on the same networks: no claim
    closed = Snapshot([ctr("db", "172.20.0.2"), ctr("app", "172.20.0.3")], [NET])
    assert icc_note(rule, closed) is None  # icc off: the rule is what lets app in


# --- the service: replay, check, ls, drop, with packets ------------------------------------


@pytest.fixture
def world(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(state))
    engine = FakeEngine(tmp_path / "engine")
    firewall = FakeFirewall()
    with Store.open(directory=str(state)) as store:
        out: list[str] = []
        warnings: list[str] = []

        def run() -> Service:
            engine.forget()
            return Service(engine, firewall, store, out=out.append, warn=warnings.append)

        yield engine, firewall, run, out, warnings


def to(ip: str, src: str, port: int) -> Packet:
    return Packet(src, ip, port, "eth0", "docker0")


def web_allowing(engine: FakeEngine, client: str):
    """web at 172.17.0.2 publishing port 80, its label allowing CLIENT."""
    return engine.add("web", "running", ips={"bridge": "172.17.0.2"},
                      port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                      labels={RULES_LABEL: f"allow {client}\n"})


def test_label_rules_are_applied_listed_checked_and_not_droppable(world):
    engine, firewall, run, out, warnings = world
    web_allowing(engine, "198.51.100.2")
    run().init()
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "DROP"  # only a replay applies it
    run().replay([])
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.3", 80)) == "DROP"
    assert run().check() == []
    out.clear()
    run().ls([])
    assert out == [f"# web: label {RULES_LABEL} line 1: docker-fw allow web --source=198.51.100.2 --dest=. "
                   "--dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'"]
    with pytest.raises(UsageError, match=f"web's rules come from its {RULES_LABEL} label: change the label"):
        run().drop(["web"])
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"


def test_a_label_turned_bad_closes_its_container_and_check_says_why(world):
    engine, firewall, run, out, warnings = world
    web = web_allowing(engine, "198.51.100.2")
    run().init()
    run().replay([])
    web.labels = {RULES_LABEL: "allow 198.51.100.2\nallow 198.51.100.3 --everyone\n"}
    run().replay([])
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "DROP"  # whole or nothing: closed
    refused = warnings[-1]
    assert refused.startswith(f"container web: label {RULES_LABEL} line 2: ")
    problems = run().check()
    assert problems == [f"label refused: {refused}"]


def test_a_store_rule_and_a_label_rule_of_one_container_live_side_by_side(world):
    engine, firewall, run, out, warnings = world
    web_allowing(engine, "198.51.100.2")
    run().init()
    run().add(Kind.ADD, [AddRequest("web", "198.51.100.3", dport=80)])  # also replays web's label
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"
    run().drop(["web"])  # drops the recorded one, keeps the label's, says so
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.3", 80)) == "DROP"
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"
    assert warnings[-1] == f"web: the rules of its {RULES_LABEL} label are kept: change the label to drop them"
    assert [r.line for r in firewall.table.rules if "docker-fw:web:" in r.line] != []
    engine.stop("web")
    run().replay([])  # a container that is gone (or stopped) leaves no rule
    assert [r.line for r in firewall.table.rules if "docker-fw:web:" in r.line] == []


def test_fakes_networks_have_icc_off():
    # the service tests above rely on internal rules being what lets traffic in
    assert not any(n.icc for n in NETWORKS.values())



def test_add_two_ways_in_a_label_is_its_rule_without_hosts_lines(world):
    """A label cannot keep another container's hosts file in step once the label
    is gone: it asks for the rule only (on user-defined networks, Compose's,
    Docker's DNS gives the name)."""
    engine, firewall, run, out, warnings = world
    web = engine.add("web", "running", ips={"bridge": "172.17.0.2"},
                     labels={RULES_LABEL: "add-two-ways --source=cache --dport=80\n"})
    engine.add("cache", "running", ips={"bridge": "172.17.0.4"})
    before = engine.hosts_text("cache")
    run().init()
    run().replay([])
    inside = Packet("172.17.0.4", "172.17.0.2", 80, "docker0", "docker0")
    assert forward(firewall.table, inside) == "ACCEPT"
    assert engine.hosts_text("cache") == before
    assert run().check() == []
    web.labels = {}  # the label changed (a re-created container): the rule goes
    run().replay([])
    assert forward(firewall.table, inside) == "DROP"


# --- hostile labels (hypothesis; profile 'ci' derandomised) ------------------------------

FUZZ_WEB_PORTS = [PortBinding(80, "tcp", "0.0.0.0", 8080)]


@given(value=label_values())
def test_any_label_is_applied_whole_or_refused_and_never_stops_the_others(value):
    snap = Snapshot(
        containers=[
            ctr("web", "172.20.0.6", rules=value, ports=FUZZ_WEB_PORTS),
            ctr("db", "172.20.0.2", rules="add-internal --source=app --dport=5432"),
            ctr("app", "172.20.0.3"),
        ],
        networks=[NET],
    )
    found = read_labels(snap)  # never raises, whatever web's label holds
    assert sources(found, "db") == ["app"]  # db's rule, whatever web's label did
    refused = dict(found.refused)
    try:
        expected = parse_label("web", value)
    except UsageError:
        expected = None
    locked = "web" in {lock.owner for lock in found.locks}
    if "web" in refused:
        assert found.of("web") == []  # nothing of a refused label
        assert refused["web"].startswith("container web: ") and "\n" not in refused["web"]
        assert locked == (labels.asks_lock(value) is not None)  # but the lock it may have asked for
    else:
        assert expected is not None
        rules = [line for line in expected if line.action != "egress"]
        assert {r.origin for r in found.of("web")} == {line.request.origin for line in rules}
        for rule in found.of("web"):
            assert rule.spec.owner == "web"
            rule.spec.validate()
        asked = any(line.action == "egress" and line.request.policy.value == "deny" for line in expected)
        assert locked == asked
        # what the grammar reads as a lock, the scan of a refused label finds too: a
        # bad line added anywhere never opens a container its label locks
        assert not asked or labels.asks_lock(value) is not None


def test_a_label_that_sets_off_a_bug_fails_closed_for_its_container_only(monkeypatch):
    real = labels._container_rules

    def buggy(owner, value, snapshot):
        if owner.name == "shop-db-1":
            raise TypeError("unexpected")
        return real(owner, value, snapshot)

    monkeypatch.setattr(labels, "_container_rules", buggy)
    snap = shop(ctr("tool", "172.20.0.9", rules="add --source=198.51.100.2 --dport=80"))
    found = read_labels(snap)
    assert found.of("shop-db-1") == [] and len(found.of("tool")) == 1
    assert dict(found.refused)["shop-db-1"] == (
        "container shop-db-1: cannot be read (TypeError: unexpected); none of its label's rules applied")


# --- 'egress deny' in a label: the container's lock ------------------------------------------

from docker_fw.model import EgressPolicy  # noqa: E402
from docker_fw.rulegrammar import EgressRequest  # noqa: E402

EXTERNAL = "198.51.100.7"


def test_egress_lines_parse_to_the_egress_command_request():
    deny, = parse_label("web", "# locked\negress deny\n")
    assert (deny.action, deny.request) == ("egress", EgressRequest("web", EgressPolicy.DENY, at(2)))
    allow, = parse_label("web", "egress allow")
    assert allow.request.policy is EgressPolicy.ALLOW


@pytest.mark.parametrize(
    "label, line, message",
    [
        ("egress block\n", 1, "egress policy must be allow or deny, not 'block'"),
        ("allow 198.51.100.2\negress\n", 2, "the following arguments are required"),
        ("egress deny now\n", 1, "unrecognized arguments: now"),
        ("egress deny --source=.\n", 1, "unrecognized arguments"),
        ("egress deny\nallow 198.51.100.2\negress allow\n", 3, "a label holds one egress line (line 1 is one)"),
        ("egress deny\negress deny\n", 2, "a label holds one egress line"),
    ],
)
def test_a_bad_egress_line_refuses_the_label_naming_its_line(label, line, message):
    with pytest.raises(RuleError) as info:
        parse_label("web", label)
    assert info.value.origin == at(line) and message in info.value.message


@pytest.mark.parametrize(
    "value, line",
    [
        ("allow 198.51.100.2\negress deny\nallow db\n", 2),  # asked for, another line bad
        ("allow db\n  egress   deny  \n", 2),
        ("egress dney\n", 1),  # the egress line itself bad: some lock was asked for
        ("egress deny now\n", 1),
        ("'egress' \"deny\"\n", 1),  # quotes aside
        ("allow db\ne\\gress deny\n", 2),  # an escape, as the grammar reads it
        ("allow db\n\"egress deny\"\n", 2),  # one quoted word: asked for all the same
        ("allow db\n'egress deny\n", 2),  # an open quote
        ("allow db\n'egress allow'\n", None),
        ("allow 198.51.100.2\u2028egress deny\n", 1),  # what may show as a line of its own
        ("allow 198.51.100.2\x0b# egress deny\n", None),
        ("egress deny\regress allow\n", 1),  # a control character: refused, still locked
        ("allow db\negress allow\negress deny\n", 3),
        ("#" * (MAX_LABEL_BYTES + 1), 0),  # cannot be told apart: locked
        ("allow 198.51.100.2\n" * (MAX_LABEL_LINES + 2), 0),
        ("allow 198.51.100.2 \ud800\n", 0),
        ("allow db\negress allow\n", None),  # asked for no lock
        ("allow db\n# egress deny\n", None),  # a comment asks for nothing
        ("egres deny\n", None),  # no egress line: not guessed at
        ("allow db\n", None),
    ],
)
def test_where_a_refused_label_may_ask_for_a_lock(value, line):
    assert labels.asks_lock(value) == line


def test_a_label_lock_is_read_and_egress_allow_asks_for_nothing():
    found = read_labels(shop(
        ctr("tool", "172.20.0.9", rules="egress deny\nadd --source=198.51.100.2 --dport=80\n"),
        ctr("open-1", "172.20.0.10", rules="egress allow\n"),
        ctr("gone", "", rules="egress deny\n", state="exited"),
    ))
    assert [(lock.owner, lock.origin, lock.refused) for lock in found.locks] == [("tool", at(1), "")]
    assert "tool" in found.owners and "open-1" not in found.owners
    assert len(found.of("tool")) == 1 and not found.refused


def test_a_refused_label_keeps_the_lock_it_asked_for_and_no_rule():
    found = read_labels(shop(
        ctr("tool", "172.20.0.9", rules="egress deny\nadd --source=198.51.100.2 --dport=http\n"),
        ctr("typo", "172.20.0.10", rules="allow 198.51.100.2\nallow db\n"),
    ))
    assert found.of("tool") == [] and found.of("typo") == []
    [lock] = found.locks
    assert (lock.owner, lock.origin) == ("tool", at(1))
    assert lock.refused == dict(found.refused)["tool"]
    assert dict(found.refused)["tool"].endswith("none of its label's rules applied but its egress lock")
    assert dict(found.refused)["typo"].endswith("none of its label's rules applied")  # no lock asked: none
    assert lock.describe() == f"# tool: label {RULES_LABEL} line 1: docker-fw egress tool deny"


def _locked_web(engine: FakeEngine, tmp_path, rules: str):
    conf = tmp_path / "web.resolv.conf"
    conf.write_bytes(b"nameserver 192.0.2.53\n")
    return engine.add("web", "running", ips={"bridge": "172.17.0.2"}, resolv_conf_path=str(conf),
                      port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                      labels={RULES_LABEL: rules})


def out_of(src: str, dst: str, port: int, proto: str = "tcp") -> Packet:
    return Packet(src, dst, port, "docker0", "eth0", proto=proto)


def test_a_label_lock_locks_as_the_command_does_and_follows_the_label(world, tmp_path):
    engine, firewall, run, out, warnings = world
    web = _locked_web(engine, tmp_path,
                      "allow 198.51.100.2\negress deny\nadd --source=. --dest=198.51.100.9 --dport=443\n")
    engine.add("free", "running", ips={"bridge": "172.17.0.3"})
    run().init()
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "ACCEPT"  # not applied before a replay
    run().replay([])
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "DROP"
    assert forward(firewall.table, out_of("172.17.0.2", "198.51.100.9", 443)) == "ACCEPT"  # its outbound rule
    assert forward(firewall.table, out_of("172.17.0.2", "192.0.2.53", 53, "udp")) == "ACCEPT"  # its DNS
    assert forward(firewall.table, out_of("172.17.0.3", EXTERNAL, 80)) == "ACCEPT"  # another container
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"  # its allow, too
    assert run().check() == []
    out.clear()
    run().ls(["web"])
    assert f"# web: label {RULES_LABEL} line 2: docker-fw egress web deny" in out
    assert not any(line.startswith("docker-fw egress") for line in out)  # not copied into the store
    with pytest.raises(UsageError, match=f"web's rules come from its {RULES_LABEL} label"):
        run().drop(["web"])
    web.labels = {RULES_LABEL: "allow 198.51.100.2\negress allow\n"}  # the label edited (re-created)
    run().replay([])
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "ACCEPT"
    assert run().check() == []


def test_a_label_that_asks_for_a_lock_but_is_refused_is_locked_and_opens_nothing(world, tmp_path):
    engine, firewall, run, out, warnings = world
    _locked_web(engine, tmp_path, "allow 198.51.100.2\negress deny\nallow db\n")
    run().init()
    run().replay([])
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "DROP"  # locked, as asked
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "DROP"  # no rule of it
    refused = f"container web: label {RULES_LABEL} line 3: "
    assert any(w.startswith(refused) and w.endswith("but its egress lock") for w in warnings)
    [problem] = run().check()
    assert problem.startswith(f"label refused: {refused}")
    out.clear()
    run().ls([])
    assert out == [f"# web: label {RULES_LABEL} line 2: docker-fw egress web deny"]


def test_a_recorded_lock_and_a_label_allow_stay_locked_and_drop_takes_the_recorded_one(world, tmp_path):
    engine, firewall, run, out, warnings = world
    web = _locked_web(engine, tmp_path, "allow 198.51.100.2\negress allow\n")
    run().init()
    run().egress(EgressRequest("web", EgressPolicy.DENY))
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "DROP"  # the label lifts no lock
    run().drop(["web"])  # the store's lock: dropped, the label's rules kept
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "ACCEPT"
    assert forward(firewall.table, to("172.17.0.2", "198.51.100.2", 80)) == "ACCEPT"
    assert out[-1] == "web: dropped 0 rules and its egress policy (allow again)"
    web.labels = {RULES_LABEL: "egress deny\n"}
    run().egress(EgressRequest("web", EgressPolicy.ALLOW))  # the label's lock is not the store's to lift
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "DROP"
    assert warnings[-1] == (f"web stays locked: label {RULES_LABEL} line 1 says egress deny "
                            "(change the label to lift it)")
    run().egress(EgressRequest("web", EgressPolicy.DENY))  # locked both ways: one lock
    drops = [r for r in firewall.table.rules if "docker-fw:web:" in r.line and r.line.endswith("-j DROP")]
    assert len(drops) == 2  # one lock: FORWARD's and INPUT's DROP, once each
    run().drop(["web"])
    assert forward(firewall.table, out_of("172.17.0.2", EXTERNAL, 80)) == "DROP"  # the label's stays
    assert warnings[-1] == (f"web: the rules and egress lock of its {RULES_LABEL} label are kept: "
                            "change the label to drop them")
    assert drops == [r for r in firewall.table.rules if "docker-fw:web:" in r.line and r.line.endswith("-j DROP")]
