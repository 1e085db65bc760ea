"""'explain' and its walker (backends.iptables.walk) on the captured layouts of every engine.

The walker is checked rule by rule on each layout of tests/fixtures/layouts
(20.10 and 28.5 captured live; 28.0.0 and 29 modelled on moby's docs): which
rule decides a new connection before init, after init, with a docker-fw
rule, between containers with icc off and on, and how the nat table
translates a published port.  Then 'explain' end to end through the service
layer, over the same layouts (FakeFirewall answers their raw and nat tables),
and its --json through the command line.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from dfw_samples import LAYOUTS_DIR, apply_lines
from fakes import FakeFirewall, SnapshotEngine

from docker_fw import cli
from docker_fw.actions import Service
from docker_fw.backends import Explainer, FirewallBackend
from docker_fw.backends.iptables import layouts
from docker_fw.backends.iptables.process import Table, parse_save
from docker_fw.backends.iptables.reconcile import ensure_chains, rule_line
from docker_fw.backends.iptables.walk import Packet, Unmodelled, forward, translate, walk
from docker_fw.engine import Container, Endpoint, Network, PortBinding, Snapshot
from docker_fw.errors import EngineError, FirewallError, UsageError
from docker_fw.explain import checked_question, explain, text_lines
from docker_fw.flow import OUTSIDE
from docker_fw.store import Store

CLIENT = "198.51.100.2"
OTHER = "198.51.100.3"
OUT = "203.0.113.9"
BR_QUOTE = 'q"net'

# layout -> (web's address, its bridge, the host port published to its port 80
# (None: no nat table captured), whether Docker 28+ drops direct access in raw,
# whether icc is on for that bridge)
LAYOUTS = {
    "docker-20.10-icc-false.txt": ("172.17.0.2", "docker0", 8080, False, False),
    "docker-20.10-icc-true.txt": ("172.17.0.2", "docker0", 8080, False, True),
    "docker-28.0.0-icc-false.txt": ("172.17.0.2", "docker0", 8080, True, False),
    "docker-28.5-icc-false.txt": ("172.17.0.2", "docker0", 8080, True, False),
    "docker-28.5-icc-false-user-networks.txt": ("172.17.0.2", "docker0", 8080, True, False),
    "docker-29-iptables-icc-false.txt": ("172.17.0.2", "docker0", 8080, True, False),
    "docker-29.7-iptables-icc-false-user-networks.txt": ("172.17.0.2", "docker0", 8080, True, False),
    "docker-20.10-hostile-bridge-names.txt": ("172.18.0.2", BR_QUOTE, None, False, True),
    "docker-28.5-hostile-bridge-names.txt": ("172.18.0.2", BR_QUOTE, None, False, True),
}


def test_every_supported_layout_is_walked():
    """Every fixture but Docker 29's nftables one (refused: below)."""
    names = {p.name for p in LAYOUTS_DIR.glob("*.txt")} - {"docker-29-nftables.txt"}
    assert names == set(LAYOUTS)


def tables(name: str) -> dict[str, Table]:
    text = (LAYOUTS_DIR / name).read_text(encoding="utf-8")
    return {t: parse_save(text, t) for t in ("raw", "nat", "filter")}


def bridges_of(table: Table) -> list[str]:
    """The bridges a layout's Docker rules name (what init closes)."""
    found = []
    for rule in table.rules:
        for i, word in enumerate(rule.args[:-1]):
            if word in ("-i", "-o") and rule.args[i + 1] not in found:
                found.append(rule.args[i + 1])
    return found


def initialised(table: Table) -> Table:
    lines = [c.line for c in layouts.plan_init(table, bridges_of(table))]
    after = apply_lines(table, lines)
    return apply_lines(after, [c.line for c in ensure_chains(after)])


def with_add_rule(table: Table, ctr: str, bridge: str) -> Table:
    """An 'add web --source CLIENT --dport 80' rule as docker-fw writes it."""
    return apply_lines(table, [rule_line("-A", "DOCKER-FW-FORWARD", [
        "-s", f"{CLIENT}/32", "-d", f"{ctr}/32", "-p", "tcp", "-m", "tcp", "--dport", "80",
        "-m", "comment", "--comment", "docker-fw:web:0123456789ab", "-j", "DOCKER",
    ])])


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_walk_names_the_rule_that_decides(name):
    ctr, bridge, _, _, icc = LAYOUTS[name]
    table = tables(name)["filter"]
    to_web = lambda src, port=80: Packet(src, ctr, port, OUTSIDE, bridge, dnat=True)  # noqa: E731

    # Docker's default: its published-port rule in DOCKER accepts, reached through its catch-all
    before = walk(table, "FORWARD", to_web(OTHER))
    assert before.verdict == "ACCEPT"
    assert before.decided_by.chain == "DOCKER"
    assert f"-d {ctr}/32" in before.decided_by.line and "--dport 80 -j ACCEPT" in before.decided_by.line
    assert any(h.target == "DOCKER" for h in before.path[:-1])
    assert [h.line for h in before.path] == [h.line for h in before.path if h in before.trace]

    # after init: dropped (by the FORWARD policy, or by Docker's DOCKER drop on 28+)
    closed = initialised(table)
    after = walk(closed, "FORWARD", to_web(OTHER))
    assert after.verdict == "DROP"
    assert after.decided_by.rule is None or after.decided_by.chain == "DOCKER"

    # an add rule: its jump to DOCKER is on the path, Docker's rule decides
    opened = with_add_rule(closed, ctr, bridge)
    allowed = walk(opened, "FORWARD", to_web(CLIENT))
    assert allowed.verdict == "ACCEPT" and allowed.decided_by.chain == "DOCKER"
    assert [h.chain for h in allowed.path[:2]] == ["FORWARD", "DOCKER-FW-FORWARD"]
    assert allowed.path[1].rule.comment == "docker-fw:web:0123456789ab"
    assert walk(opened, "FORWARD", to_web(OTHER)).verdict == "DROP"
    # a port Docker does not publish stays closed, rule or not
    assert walk(with_add_rule(closed, ctr, bridge), "FORWARD", to_web(CLIENT, 81)).verdict == "DROP"
    # the walk and forward() agree
    assert forward(opened, to_web(CLIENT)) == "ACCEPT" and forward(opened, to_web(OTHER)) == "DROP"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_walk_between_containers_follows_icc(name):
    ctr, bridge, _, _, icc = LAYOUTS[name]
    peer = str(ipaddress.ip_address(ctr) + 1)
    closed = initialised(tables(name)["filter"])
    between = Packet(peer, ctr, 5432, bridge, bridge)
    result = walk(closed, "FORWARD", between)
    if icc:
        # 20.10: '-i B -o B -j ACCEPT'; 28.5: '-i B -j ACCEPT' (what leaves B, to B included)
        assert result.verdict == "ACCEPT" and result.decided_by.rule.args[:2] == ("-i", bridge)
    else:
        assert result.verdict == "DROP"
        assert result.decided_by.line.endswith(f"-i {bridge} -o {bridge} -j DROP")
    # an add-internal rule accepts it in DOCKER-FW-INTERNAL (reached through init's jump)
    internal = apply_lines(closed, [rule_line("-A", "DOCKER-FW-INTERNAL", [
        "-s", f"{peer}/32", "-d", f"{ctr}/32", "-p", "tcp", "-m", "tcp", "--dport", "5432",
        "-m", "comment", "--comment", "docker-fw:web:aaaaaaaaaaaa", "-j", "ACCEPT",
    ])])
    accepted = walk(internal, "FORWARD", between)
    assert accepted.verdict == "ACCEPT" and accepted.decided_by.chain == "DOCKER-FW-INTERNAL"
    assert [h.chain for h in accepted.path] == ["FORWARD", "DOCKER", "DOCKER-FW-INTERNAL"]


@pytest.mark.parametrize("name", [n for n, v in sorted(LAYOUTS.items()) if v[2]])
def test_translate_applies_the_published_ports_dnat(name):
    ctr, bridge, host_port, raw_drops, _ = LAYOUTS[name]
    t = tables(name)
    sent = Packet(CLIENT, "0.0.0.0", host_port, OUTSIDE, "", local_dst=True)
    packet, nat = translate(t["nat"], sent)
    assert (packet.dst, packet.dport, packet.dnat) == (ctr, 80, True)
    assert nat.verdict == "DNAT" and f"--to-destination {ctr}:80" in nat.decided_by.line
    # not from the bridge itself (Docker's RETURN), nor another port
    assert not translate(t["nat"], Packet(ctr, "0.0.0.0", host_port, bridge, "", local_dst=True))[0].dnat
    assert not translate(t["nat"], Packet(CLIENT, "0.0.0.0", 9999, OUTSIDE, "", local_dst=True))[0].dnat
    # Docker 28+: direct access to the container's address from outside dies in raw
    direct = walk(t["raw"], "PREROUTING", Packet(CLIENT, ctr, 80, OUTSIDE, bridge))
    assert (direct.verdict == "DROP") == raw_drops  # None: no raw table captured (20.10 has none)
    assert walk(t["raw"], "PREROUTING", Packet(str(ipaddress.ip_address(ctr) + 1), ctr, 80, bridge, bridge)
                ).verdict != "DROP"


def test_walk_never_guesses():
    table = parse_save("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m recent --rcheck -j ACCEPT\nCOMMIT\n")
    with pytest.raises(Unmodelled, match="--rcheck"):
        walk(table, "FORWARD", Packet(CLIENT, "172.17.0.2", 80, OUTSIDE, "docker0"))
    # a target that is neither a chain nor known
    table = parse_save("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j TEE --gateway 1.2.3.4\nCOMMIT\n")
    with pytest.raises(Unmodelled, match="TEE"):
        walk(table, "FORWARD", Packet(CLIENT, "172.17.0.2", 80, OUTSIDE, "docker0"))


def test_walk_skips_what_does_not_decide_and_reads_wildcards_and_ranges():
    table = parse_save(
        "*filter\n:FORWARD DROP [0:0]\n:X - [0:0]\n"
        "-A FORWARD -m limit --limit 5/min -j NFLOG --nflog-group 5\n"  # not read: never decides
        "-A FORWARD -o br+ -p tcp -m tcp --dport 1000:2000 -g X\n"
        "-A FORWARD -j ACCEPT\n"
        "-A X -s 10.0.0.0/8 -j REJECT\n"
        "COMMIT\n"
    )
    rejected = walk(table, "FORWARD", Packet("10.1.2.3", "172.18.0.2", 1500, OUTSIDE, "br-x"))
    assert rejected.verdict == "REJECT" and [h.chain for h in rejected.path] == ["FORWARD", "X"]
    # goto: X's end does not come back to FORWARD's next rule; the policy decides
    assert walk(table, "FORWARD", Packet(CLIENT, "172.18.0.2", 1500, OUTSIDE, "br-x")).verdict == "DROP"
    assert walk(table, "FORWARD", Packet(CLIENT, "172.18.0.2", 2001, OUTSIDE, "br-x")).verdict == "ACCEPT"
    assert walk(table, "FORWARD", Packet(CLIENT, "172.17.0.2", 1500, OUTSIDE, "docker0")).verdict == "ACCEPT"


# --- explain through the service layer ---------------------------------------------------

BR_APP = "br-4d23efbc9bc5"


def net(name, bridge, octet, internal=False):
    subnet = ipaddress.IPv4Network(f"172.{octet}.0.0/16")
    return Network(name[0] * 64, name, "bridge", bridge, (subnet,), f"172.{octet}.0.1", internal=internal)


NETWORKS = [net("bridge", "docker0", 17), net("appnet", BR_APP, 18)]


def ctr(name, ip, network="bridge", bridge="docker0", ports=()):
    gateway = ip.rsplit(".", 2)[0] + ".0.1"
    return Container(name[0] * 64, name, "running", (Endpoint(network, bridge, ip, gateway),), ports=ports)


WEB = ctr("web", "172.17.0.2", ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),))
CLI = ctr("cli", "172.17.0.3")
DB = ctr("db", "172.18.0.2", "appnet", BR_APP, ports=(PortBinding(80, "tcp", "0.0.0.0", 8081),))


@pytest.fixture(params=["docker-20.10-icc-false.txt", "docker-28.5-icc-false-user-networks.txt"])
def svc(request, tmp_path):
    firewall = FakeFirewall((LAYOUTS_DIR / request.param).read_text(encoding="utf-8"))
    engine = SnapshotEngine(Snapshot([WEB, CLI, DB], NETWORKS))
    with Store.open(str(tmp_path / "state")) as store:
        service = Service(engine, firewall, store, out=lambda _: None)
        service.layout = request.param
        yield service


def ask(svc, source, dest, dport, proto="tcp"):
    return explain(svc, checked_question(source, dest, str(dport), proto))


def test_the_iptables_backend_is_an_explainer(svc):
    assert isinstance(svc.backends[0], FirewallBackend) and isinstance(svc.backends[0], Explainer)


def test_external_to_a_published_port(svc):
    x = ask(svc, CLIENT, "web", 80)
    (path,) = x.paths
    assert x.allowed and path.flow.host_port == 8080
    assert "host port 8080/tcp -> 172.17.0.2:80" in path.verdict.translated
    assert "catch-all" in path.verdict.reason and "init" in path.verdict.reason

    svc.init()
    x = ask(svc, CLIENT, "web", 80)
    (path,) = x.paths
    assert not x.allowed and x.exit_code == 1
    assert path.verdict.decided_by == "-P FORWARD DROP"
    assert path.suggestion.allows
    assert path.suggestion.command == f"docker-fw add web --source={CLIENT} --dest=. --dport=80 --protocol=tcp"

    svc.allow("web", [CLIENT])
    x = ask(svc, CLIENT, "web", 80)
    assert x.allowed and x.exit_code == 0
    v = x.paths[0].verdict
    assert v.rule is not None and v.rule.describe() == svc.ls(["web"])[0]
    assert "docker-fw:web:" in v.rule_line and v.chain == "DOCKER"
    assert not ask(svc, OTHER, "web", 80).allowed


def test_external_to_a_port_that_is_not_published(svc):
    svc.init()
    svc.add(svc_kind("add"), [request("web", source=CLIENT, dport=81)])
    x = ask(svc, CLIENT, "web", 81)
    (path,) = x.paths
    assert not x.allowed and path.flow.host_port == 0
    if "28.5" in svc.layout:
        assert path.verdict.table == "raw" and "direct access" in path.verdict.reason
    else:
        assert "81/tcp is not published" in path.verdict.reason
    # the rule that would be suggested is not enough, and explain says so
    assert not path.suggestion.allows and "even with it, blocked" in path.suggestion.note


def test_between_containers_with_icc_off(svc):
    svc.init()
    x = ask(svc, "cli", "web", 80)
    (path,) = x.paths
    assert not x.allowed
    assert "inter-container communication is off on docker0" in path.verdict.reason
    assert path.suggestion.command == "docker-fw add-internal web --source=cli --dest=. --dport=80 --protocol=tcp"
    assert path.suggestion.allows
    svc.add(svc_kind("add-internal"), [request("web", source="cli", dport=80)])
    x = ask(svc, "cli", "web", 80)
    assert x.allowed and x.paths[0].verdict.chain == "DOCKER-FW-INTERNAL"
    assert x.paths[0].verdict.rule.describe() == svc.ls(["web"])[0]
    # by address, cli's address is cli
    assert ask(svc, "172.17.0.3", "web", 80).source.name == "cli"


def test_a_moved_container_is_explained_as_blocked_until_replayed(svc):
    """The captured layout's Docker rules are for web at 172.17.0.2: web's rule is
    recorded while it was at .9, then web moves to .2 (where Docker publishes it now)."""
    svc.init()
    svc.engine.snap = Snapshot([ctr("web", "172.17.0.9", ports=WEB.ports), CLI, DB], NETWORKS)
    svc.allow("web", [CLIENT])
    svc.engine.snap = Snapshot([WEB, CLI, DB], NETWORKS)
    x = ask(svc, CLIENT, "web", 80)
    assert not x.allowed and x.paths[0].flow.dst == "172.17.0.2"
    assert x.paths[0].suggestion.command == "docker-fw replay web" and x.paths[0].suggestion.allows
    svc.replay(["web"])
    assert ask(svc, CLIENT, "web", 80).allowed


def test_container_to_host_and_to_the_outside(svc):
    svc.init()
    x = ask(svc, "cli", "/", 9000)
    assert x.allowed and x.paths[0].flow.dst == "172.17.0.1" and x.paths[0].verdict.chain == "INPUT"
    out = ask(svc, "cli", OUT, 443)
    assert out.allowed and "reach the outside" in out.paths[0].verdict.reason


def test_a_stale_rule_of_ours_is_named_as_such(svc):
    svc.init()
    svc.allow("web", [CLIENT])
    svc.store.drop_owner("web")  # the record no longer makes it; the live rule stays
    x = ask(svc, CLIENT, "web", 80)
    assert x.allowed and x.paths[0].verdict.rule is None
    assert "docker-fw:web:" in x.paths[0].verdict.stale and "stale" in x.paths[0].verdict.reason


def test_text_output(svc):
    svc.init()
    lines = text_lines(ask(svc, CLIENT, "web", 80), trace=True)
    assert lines[0] == f"{CLIENT} -> web:80/tcp: blocked"
    assert lines[1] == f"  path on bridge: {CLIENT} -> web (172.17.0.2):80/tcp: blocked"
    assert f"    to allow it: docker-fw add web --source={CLIENT} --dest=. --dport=80 --protocol=tcp" in lines
    assert "    matched: filter: -P FORWARD DROP" in lines


@pytest.mark.parametrize(
    "source, dest, dport, proto, words",
    [
        ("web", None, "80", "tcp", "--source and --dest"),
        (".", "web", "80", "tcp", "'.'"),
        (CLIENT, "web", None, "tcp", "--dport is mandatory"),
        (CLIENT, "web", "0", "tcp", "out of range"),
        (CLIENT, "web", "80", "icmp", "--protocol"),
        ("198.51.100.0/24", "web", "80", "tcp", "not a subnet"),
        ("web", "web", "80", "tcp", "the same"),
        ("bad name!", "web", "80", "tcp", "invalid address"),
    ],
)
def test_bad_questions_are_refused_without_the_engine(source, dest, dport, proto, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        checked_question(source, dest, dport, proto)


def test_questions_docker_fw_has_no_say_in(svc):
    with pytest.raises(UsageError, match="host itself"):
        ask(svc, "/", "web", 80)
    with pytest.raises(UsageError, match="name the container"):
        ask(svc, CLIENT, "/", 80)
    with pytest.raises(UsageError, match="running container"):
        ask(svc, CLIENT, OUT, 80)
    with pytest.raises(EngineError, match="no such container"):
        ask(svc, CLIENT, "nosuch", 80)


def test_nftables_engine_and_a_backend_without_explain_are_refused(tmp_path):
    firewall = FakeFirewall((LAYOUTS_DIR / "docker-29-nftables.txt").read_text())
    engine = SnapshotEngine(Snapshot([WEB], NETWORKS))
    with Store.open(str(tmp_path / "state")) as store:
        service = Service(engine, firewall, store, out=lambda _: None)
        with pytest.raises(FirewallError, match="no DOCKER chain"):
            ask(service, CLIENT, "web", 80)

        class Plain:  # a FirewallBackend without Explainer's methods
            family = 4

        service.backends = [Plain()]
        with pytest.raises(UsageError, match="cannot explain flows"):
            ask(service, CLIENT, "web", 80)


def svc_kind(action):
    from docker_fw.model import Kind

    return Kind.from_action(action)


def request(container, **options):
    from docker_fw.rulegrammar import AddRequest

    return AddRequest(container=container, **options)


# --- --json through the command line -------------------------------------------------------


@pytest.fixture
def run(tmp_path, monkeypatch):
    """cli.run over the 20.10 layout; returns (exit code, stdout lines, stderr lines)."""
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    firewall = FakeFirewall((LAYOUTS_DIR / "docker-20.10-icc-false.txt").read_text())
    engine = SnapshotEngine(Snapshot([WEB, CLI], NETWORKS[:1]))

    def go(*argv):
        out, err = [], []
        code = cli.run(list(argv), out=out.append, err=err.append, backends=lambda verbose: (engine, firewall, None))
        return code, out, err

    go.engine = engine
    return go


def test_explain_json(run):
    assert run("init")[0] == 0
    code, out, err = run("explain", "--source", CLIENT, "--dest", "web", "--dport", "80", "--json")
    assert code == 1 and err == [] and len(out) == 1
    doc = json.loads(out[0])
    assert doc["verdict"] == "blocked" and doc["dport"] == 80 and doc["protocol"] == "tcp"
    assert doc["source"] == {"kind": "address", "name": CLIENT, "spec": CLIENT}
    assert doc["dest"] == {"kind": "container", "name": "web", "spec": "web"}
    (path,) = doc["paths"]
    assert path["flow"]["host_port"] == 8080 and path["flow"]["dst"] == "172.17.0.2"
    assert path["decided_by"] == "-P FORWARD DROP" and path["rule"] is None
    assert path["suggestion"]["allows"] is True
    assert path["suggestion"]["rule"]["action"] == "add" and path["suggestion"]["rule"]["dport"] == 80
    assert "filter: -P FORWARD DROP" in path["trace"]
    code, out, _ = run("allow", "web", CLIENT)
    code, out, _ = run("explain", "-s", CLIENT, "-d", "web", "--dport", "80", "--json")
    doc = json.loads(out[0])
    assert code == 0 and doc["verdict"] == "allowed" and doc["paths"][0]["suggestion"] is None
    assert doc["paths"][0]["rule"]["command"] == run("ls")[1][0]


def test_explain_text_and_exit_codes(run):
    run("init")
    code, out, err = run("explain", "-s", CLIENT, "-d", "web", "--dport", "80")
    assert code == 1 and out[0] == f"{CLIENT} -> web:80/tcp: blocked" and err == []
    assert not any(line.strip().startswith("matched:") for line in out)
    code, out, _ = run("explain", "-s", CLIENT, "-d", "web", "--dport", "80", "--trace")
    assert any(line.strip().startswith("matched:") for line in out)
    code, out, err = run("explain", "-s", CLIENT, "-d", "web")
    assert code == 2 and out == [] and len(err) == 1 and "--dport is mandatory" in err[0]


def test_ls_json(run):
    run("allow", "web", CLIENT)
    run("add-internal", "web", "--source", "cli", "--dport", "80")
    code, out, _ = run("ls", "--json")
    assert code == 0 and len(out) == 1
    rules = json.loads(out[0])["rules"]
    assert [r["command"] for r in rules] == run("ls")[1]
    assert rules[0] == {
        "action": "add", "container": "web", "source": CLIENT, "dest": ".", "protocol": "tcp",
        "sport": None, "dport": 80, "icmp_type": None, "filter": ["!", "-i", "@bridge", "-o", "@bridge"],
        "command": run("ls")[1][0], "origin": "store", "label": None,
    }
    assert rules[1]["action"] == "add-internal" and rules[1]["source"] == "cli"


def test_ls_json_holds_label_rules_and_locks_with_their_label_line(run, tmp_path):
    import dataclasses

    from docker_fw.labels import RULES_LABEL
    from docker_fw.model import EgressPolicy

    state_dir = tmp_path / "state"

    run("add-internal", "web", "--source", "cli", "--dport", "80")
    labelled = dataclasses.replace(WEB, labels=((RULES_LABEL, f"# front\nallow {CLIENT}\negress deny\n"),))
    run.engine.snap = Snapshot([labelled, CLI], NETWORKS[:1])  # 'ls' reads labels, places nothing
    code, out, _ = run("ls", "--json")
    doc = json.loads(out[0])
    store_rule, label_rule = doc["rules"]
    assert (store_rule["origin"], store_rule["label"]) == ("store", None)
    assert label_rule == {
        "action": "allow", "container": "web", "source": CLIENT, "dest": ".", "protocol": "tcp",
        "sport": None, "dport": 80, "icmp_type": None, "filter": ["!", "-i", "@bridge", "-o", "@bridge"],
        "command": f"docker-fw allow web --source={CLIENT} --dest=. --dport=80 --protocol=tcp "
                   "--filter='! -i @bridge -o @bridge'",
        "origin": "label", "label": {"name": RULES_LABEL, "line": 2},
    }
    assert doc["egress"] == [{"container": "web", "policy": "deny", "command": "docker-fw egress web deny",
                              "origin": "label", "label": {"name": RULES_LABEL, "line": 3}}]
    text = run("ls")[1]
    assert text[1:] == [f"# web: label {RULES_LABEL} line 2: {label_rule['command']}",
                        f"# web: label {RULES_LABEL} line 3: docker-fw egress web deny"]
    with Store.open(directory=str(state_dir)) as store:  # recorded too ('egress web deny' would place it)
        store.set_egress("web", EgressPolicy.DENY)
    code, out, _ = run("ls", "--json", "cli")  # another container's: none of web's
    assert json.loads(out[0]) == {"rules": [], "egress": []}
    code, out, _ = run("ls", "--json", "web")
    assert [(p["origin"], p["label"]) for p in json.loads(out[0])["egress"]] == [
        ("store", None), ("label", {"name": RULES_LABEL, "line": 3})]


def test_check_json(run):
    code, out, _ = run("check", "--json")
    doc = json.loads(out[0])
    assert code == 1 and doc["drift"] is True
    kinds = [p["kind"] for p in doc["problems"]]
    assert "not-initialised" in kinds and "missing" in kinds and "other" not in kinds
    assert [p["text"] for p in doc["problems"]] == run("check")[1]
    run("init")
    code, out, _ = run("check", "--json")
    assert code == 0 and json.loads(out[0]) == {"drift": False, "problems": [], "notes": [], "warnings": []}


def test_replay_dry_run_json(run):
    run("init")
    run("allow", "web", CLIENT)
    code, out, _ = run("replay", "--dry-run", "--json")
    assert code == 0 and json.loads(out[0])["pending"] is False
    run.engine.snap = Snapshot([ctr("web", "172.17.0.9", ports=WEB.ports), CLI], NETWORKS[:1])
    code, out, _ = run("replay", "--dry-run", "--json")
    doc = json.loads(out[0])
    assert code == 1 and doc["pending"] is True
    assert sorted(c["verb"] for c in doc["changes"]) == ["add", "delete"]
    assert all(c["why"] == "web" and c["family"] == 4 for c in doc["changes"])
    assert any("172.17.0.9" in c["line"] for c in doc["changes"])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["replay", "--json"], "--json needs --dry-run"),
        (["explain", "-s", CLIENT, "-d", "web", "--dport", "80", "--json", "--trace"], "--trace is for text"),
        (["init", "--json"], "unrecognized arguments: --json"),
    ],
)
def test_bad_json_combinations_are_refused_in_one_line(run, argv, words):
    code, out, err = run(*argv)
    assert code == 2 and out == [] and len(err) == 1 and words in err[0]


def test_a_suggestion_before_docker_fw_ever_ran_creates_its_chains_in_the_walk(svc):
    """No DOCKER-FW-* chain is live yet: the suggested rule is walked with the chains and
    jumps recording it would create, and nothing live changes."""
    before = list(svc.backends[0].runner.table.rules)
    x = ask(svc, "cli", "web", 5432, "udp")
    assert not x.allowed and "inter-container communication is off" in x.paths[0].verdict.reason
    s = x.paths[0].suggestion
    assert s.allows and s.command.endswith("--dport=5432 --protocol=udp")
    assert svc.backends[0].runner.table.rules == before and svc.backends[0].runner.batches == []


def test_an_ipv6_flow_needs_the_ipv6_backend(svc):
    with pytest.raises(EngineError, match="no IPv6 address"):
        ask(svc, "2001:db8::7", "web", 80)
    web6 = Container(WEB.id, "web", "running",
                     (Endpoint("bridge", "docker0", "172.17.0.2", "172.17.0.1", ip6="fd00::2"),), ports=WEB.ports)
    svc.engine.snap = Snapshot([web6, CLI, DB], NETWORKS)
    with pytest.raises(FirewallError, match="no firewall backend handles IPv6"):
        ask(svc, "2001:db8::7", "web", 80)


@pytest.mark.parametrize("name", ["docker-20.10-hostile-bridge-names.txt", "docker-28.5-hostile-bridge-names.txt"])
def test_explain_on_hostile_bridge_names(name, tmp_path):
    """The '"' bridge is matched and named as iptables-save prints it; with no nat table
    captured, the published port is said not to be translated (blocked), not guessed."""
    qnet = Network("9" * 64, "qnet", "bridge", BR_QUOTE, (ipaddress.IPv4Network("172.18.0.0/16"),), "172.18.0.1")
    web = ctr("web", "172.18.0.2", "qnet", BR_QUOTE, ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),))
    peer = ctr("peer", "172.18.0.3", "qnet", BR_QUOTE)
    engine = SnapshotEngine(Snapshot([web, peer], [qnet]))
    with Store.open(str(tmp_path / "state")) as store:
        service = Service(engine, FakeFirewall((LAYOUTS_DIR / name).read_text(encoding="utf-8")), store,
                          out=lambda _: None)
        x = ask(service, "peer", "web", 80)
        assert x.allowed and f"inter-container communication is on for {BR_QUOTE}" in x.paths[0].verdict.reason
        x = ask(service, CLIENT, "web", 80)
        assert not x.allowed and x.paths[0].verdict.table == "nat"
        assert "does not translate host port 8080/tcp" in x.paths[0].verdict.reason


def test_a_rule_the_walker_does_not_model_stops_explain_naming_it(svc):
    svc.init()
    svc.add(svc_kind("add"), [request("web", source=CLIENT, dport=80, filter=("-m", "recent", "--rcheck"))])
    with pytest.raises(FirewallError, match="cannot explain this flow: unmodelled match --rcheck") as exc:
        ask(svc, CLIENT, "web", 80)
    assert exc.value.exit_code == 4 and "\n" not in str(exc.value)


def test_check_json_notes_a_rule_withdrawn_for_a_stopped_container(run):
    run("init")
    run("add-internal", "web", "--source", "cli", "--dport", "80")
    stopped = Container(CLI.id, "cli", "exited")
    run.engine.snap = Snapshot([WEB, stopped], NETWORKS[:1])
    run("replay")
    code, out, _ = run("check", "--json")
    doc = json.loads(out[0])
    assert code == 0 and doc["drift"] is False and doc["problems"] == []
    (note,) = doc["notes"]
    assert note.startswith("not applied (container cli is exited") and note.endswith(
        "docker-fw add-internal web --source=cli --dest=. --dport=80 --protocol=tcp")


def test_every_check_line_has_a_kind():
    from docker_fw.jsonout import problem_kind

    for line, kind in [
        ("not initialised (init): would delete -D FORWARD -o docker0 -j DOCKER", "not-initialised"),
        ("layout: unsupported iptables layout", "layout"),
        ("missing (web): -A DOCKER-FW-FORWARD ...", "missing"),
        ("stale (web): -A DOCKER-FW-FORWARD ...", "stale"),
        ("foreign rule in DOCKER-FW-INPUT: -A DOCKER-FW-INPUT -j ACCEPT", "foreign"),
        ("hosts (app): /etc/hosts entries out of date", "hosts"),
        ("not applied (recorded filter refused by this version): docker-fw add ...", "not-applied"),
        ("layoutish", "other"),
    ]:
        assert problem_kind(line) == kind, line


def test_explain_names_a_label_rule_as_the_labels_line_not_as_stale(run):
    import dataclasses

    from docker_fw.labels import RULES_LABEL

    run.engine.snap = Snapshot([dataclasses.replace(WEB, labels=((RULES_LABEL, f"allow {CLIENT}\n"),)), CLI],
                               NETWORKS[:1])
    run("init")
    run("replay")
    code, out, _ = run("explain", "-s", CLIENT, "-d", "web", "--dport", "80", "--json")
    (path,) = json.loads(out[0])["paths"]
    assert code == 0 and path["verdict"] == "allowed" and path["stale"] == ""
    assert (path["rule"]["origin"], path["rule"]["label"]) == ("label", {"name": RULES_LABEL, "line": 1})
    assert path["rule"]["action"] == "allow"
    code, out, _ = run("explain", "-s", CLIENT, "-d", "web", "--dport", "80")
    assert f"    docker-fw rule: # web: label {RULES_LABEL} line 1: docker-fw allow web --source={CLIENT} " \
           "--dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'" in out
