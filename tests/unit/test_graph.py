"""docker-fw graph: flows from recorded rules and a snapshot, and each format's escaping.

Hostile names (a network called '"];\\n<script>', a container name with
quotes and '&') must come out of every format as text, never as syntax: the
dot output is rendered by Graphviz itself, the html parsed (and, in
test_graph_browser.py, opened in a real headless Chromium).
"""

from __future__ import annotations

import html.parser
import ipaddress
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from dfw_samples import snapshot
from docker_fw import jsonout
from docker_fw import cli, graph
from docker_fw.engine import Container, Endpoint, Network, Snapshot
from docker_fw.errors import UsageError, one_line
from docker_fw import labels
from docker_fw.egress import EgressSpec, resolve_lock
from docker_fw.labels import RULES_LABEL
from docker_fw.model import AddressSpec, EgressPolicy, Kind, RuleSpec, parse_address
from docker_fw.rulegrammar import Origin

BRIDGE = ("!", "-i", "@bridge", "-o", "@bridge")


def spec(owner, kind, src, dst, dport=0, proto="tcp", filt=()):
    return RuleSpec(owner, kind, parse_address(src), parse_address(dst), proto=proto, dport=dport, filter=filt)


SPECS = [
    spec("web", Kind.ADD, "198.51.100.2", ".", 80, filt=BRIDGE),
    spec("web", Kind.ADD, "203.0.113.0/24", ".", 443),
    spec("db", Kind.INTERNAL, "web", ".", 5432),
    spec("web", Kind.INPUT, ".", "/", 9100),
    spec("cache", Kind.INTERNAL, "old", ".", 6379),  # old is exited: withdrawn
]


def sample_graph() -> graph.Graph:
    return graph.build(SPECS, {}, snapshot())


# -- the flows -------------------------------------------------------------------


def test_flows_follow_the_record_and_the_live_addresses():
    flows = {(f.source.name, f.dest.name, jsonout.ports_value(f.dport)): f for f in sample_graph().flows}
    ingress = flows[("198.51.100.2", "web", 80)]
    assert ingress.direction == "ingress" and not ingress.withdrawn
    assert {(p.network, p.source, p.dest) for p in ingress.placed} == {
        ("appnet", "198.51.100.2/32", "172.18.0.2/32"), ("bridge", "198.51.100.2/32", "172.17.0.2/32")}
    internal = flows[("web", "db", 5432)]
    assert internal.direction == "internal"
    assert [(p.network, p.source, p.dest) for p in internal.placed] == [("appnet", "172.18.0.2/32", "172.18.0.3/32")]
    to_host = flows[("web", "host", 9100)]
    assert to_host.direction == "to-host" and to_host.dest.kind == graph.HOST
    assert {p.dest for p in to_host.placed} == {"172.18.0.1/32", "172.17.0.1/32"}
    withdrawn = flows[("old", "cache", 6379)]
    assert withdrawn.placed == () and "old is exited" in withdrawn.withdrawn


def test_a_moved_container_moves_its_flows():
    moved = snapshot()
    web = moved.get("web")
    moved = Snapshot(
        containers=[Container(web.id, "web", "running", (Endpoint("appnet", "br-0123456789ab", "172.18.0.9", "172.18.0.1"),),
                              web.ports)] + [c for c in moved.containers if c.name != "web"],
        networks=moved.networks,
    )
    flow = graph.build(SPECS[2:3], {}, moved).flows[0]
    assert [p.source for p in flow.placed] == ["172.18.0.9/32"]


def test_add_two_ways_is_shown_as_ls_prints_it():
    flow = graph.build(SPECS[2:3], {"web": ["db"]}, snapshot()).flows[0]
    assert flow.action == "add-two-ways" and flow.command.startswith("docker-fw add-two-ways db ")


def test_an_outgoing_rule_is_egress():
    flow = graph.build([spec("web", Kind.ADD, ".", "192.0.2.0/24", 25)], {}, snapshot()).flows[0]
    assert flow.direction == "egress" and flow.dest.kind == graph.EXTERNAL


# -- egress locks, label rules, ICMP and port lists -------------------------------------


def locked_graph() -> graph.Graph:
    """web locked by the store (DNS to 192.0.2.53, an outbound rule to a port list,
    an add-input rule); cache locked by its label, its label's ICMP rule as a flow."""
    snap = snapshot()
    cache = snap.get("cache")
    labelled = Container(cache.id, "cache", cache.state, cache.endpoints, cache.ports, labels=(
        (RULES_LABEL, "# the cache\negress deny\nadd --source=. --dest=192.0.2.9 --protocol=icmp --icmp-type=echo-request\n"
                      "add-internal --source=web --dport=6379:6380\n"),))
    snap = Snapshot(containers=[labelled] + [c for c in snap.containers if c.name != "cache"], networks=snap.networks)
    found = labels.read_labels(snap)
    assert not found.refused, found.refused
    specs = [
        spec("web", Kind.ADD, ".", "192.0.2.0/24", "443,8443,9000:9100"),
        spec("web", Kind.INPUT, ".", "/", 9100),
        spec("web", Kind.ADD, "198.51.100.2", ".", 80),
        spec("db", Kind.INTERNAL, "web", ".", 5432),
    ]
    locks = [(EgressSpec("web", EgressPolicy.DENY), resolve_lock("web", snap, ["192.0.2.53"]), "")]
    locks += [(lock, resolve_lock(lock.owner, snap, []), "") for lock in found.locks]
    locks += [(EgressSpec("old", EgressPolicy.DENY), [], "container old is exited")]
    return graph.build(specs, {}, snap, found.rules, locks)


def test_a_locked_container_shows_what_it_may_still_reach():
    g = locked_graph()
    web = g.lock_of("web")
    assert web.command == "docker-fw egress web deny" and web.label is None and not web.withdrawn
    assert web.networks == ("appnet", "bridge") and web.dns == ("192.0.2.53",)
    assert [(f.dest.name, f.port_text) for f in g.passing(web)] == [("192.0.2.0/24", "443,8443,9000:9100/tcp"),
                                                                   ("host", "9100/tcp")]
    cache = g.lock_of("cache")
    assert cache.label == Origin.label(RULES_LABEL, 2) and cache.dns == ()
    assert [(f.dest.name, f.port_text) for f in g.passing(cache)] == [("192.0.2.9", "icmp echo-request")]
    assert g.lock_of("old").withdrawn == "container old is exited"
    assert g.lock_of("db") is None


def test_text_shows_locks_label_rules_icmp_and_port_lists():
    text = graph.render(locked_graph(), "text")
    lock = text.split("egress locked (new connections out dropped, but for):\n", 1)[1]
    assert "  web  (docker-fw egress web deny)\n" in lock
    assert "    its own networks: appnet, bridge" in lock
    assert "    -> 192.0.2.0/24:443,8443,9000:9100/tcp  (add rule)" in lock
    assert "    -> host:9100/tcp  (add-input rule)" in lock
    assert "    -> 192.0.2.53:53/udp,tcp  (DNS" in lock
    assert "  cache  (docker-fw egress cache deny; label docker-fw.rules line 2)" in lock
    assert "    -> 192.0.2.9:icmp echo-request  (add rule)  (label docker-fw.rules line 3)" in lock
    assert "  old  (docker-fw egress old deny)  withdrawn: container old is exited" in lock
    assert re.search(r"web +-> cache:6379:6380/tcp  \[.*\]  \(label docker-fw.rules line 4\)", text)
    assert re.search(r"cache +-> 192\.0\.2\.9:icmp echo-request  \[.*\]  \(label docker-fw.rules line 3\)", text)


def test_json_shows_locks_and_label_origins():
    g = locked_graph()
    data = json.loads(graph.render(g, "json"))
    by_owner = {e["container"]: e for e in data["egress"]}
    web = by_owner["web"]
    assert sorted(web) == sorted(["container", "policy", "command", "origin", "label", "in_place", "withdrawn",
                                  "networks", "dns", "outbound"])
    assert web["policy"] == "deny" and web["origin"] == "store" and web["label"] is None and web["in_place"]
    assert web["dns"] == ["192.0.2.53"] and web["networks"] == ["appnet", "bridge"]
    assert [data["flows"][i]["dport"] for i in web["outbound"]] == ["443,8443,9000:9100", 9100]
    cache = by_owner["cache"]
    assert cache["origin"] == "label" and cache["label"] == {"name": RULES_LABEL, "line": 2}
    icmp = data["flows"][cache["outbound"][0]]
    assert icmp["proto"] == "icmp" and icmp["icmp_type"] == "echo-request" and icmp["dport"] is None
    assert icmp["origin"] == "label" and icmp["label"] == {"name": RULES_LABEL, "line": 3}
    assert icmp["command"] == ("docker-fw add cache --source=. --dest=192.0.2.9 --protocol=icmp "
                               "--icmp-type=echo-request")
    ranged = next(f for f in data["flows"] if f["label"] == {"name": RULES_LABEL, "line": 4})
    assert ranged["dport"] == "6379:6380" and ranged["action"] == "add-internal"
    assert not by_owner["old"]["in_place"] and by_owner["old"]["withdrawn"] == "container old is exited"


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "html"])
def test_drawings_show_locks_dns_and_label_origins(fmt):
    out = graph.render(locked_graph(), fmt)
    decode = _mermaid_label if fmt == "mermaid" else (lambda t: t)
    text = decode(out)
    assert "egress locked" in text
    assert "53/udp,tcp DNS" in text and "192.0.2.53" in text
    assert "icmp echo-request [docker-fw.rules:3]" in text
    assert "6379:6380/tcp [docker-fw.rules:4]" in text
    assert "443,8443,9000:9100/tcp" in text
    if fmt == "html":
        assert "label docker-fw.rules line 3" in text and "<h2>Egress locked</h2>" in text
        assert "192.0.2.53:53/udp,tcp (DNS)" in text and 'class="node container locked"' in text


# -- json -----------------------------------------------------------------------------


def test_json_keys_are_stable_and_documented():
    data = json.loads(graph.render(sample_graph(), "json"))
    assert data["version"] == graph.JSON_VERSION
    assert sorted(data) == ["containers", "egress", "flows", "version"]
    flow = data["flows"][0]
    assert sorted(flow) == sorted([
        "direction", "action", "owner", "source", "dest", "proto", "sport", "dport", "icmp_type", "filter",
        "command", "origin", "label", "in_place", "withdrawn", "placed"])
    assert flow["origin"] == "store" and flow["label"] is None
    assert flow["source"] == {"kind": "external", "name": "198.51.100.2"}
    assert flow["sport"] is None and flow["dport"] == 80 and flow["filter"] == "! -i @bridge -o @bridge"
    assert sorted(flow["placed"][0]) == ["dest", "family", "network", "source"]
    web = next(c for c in data["containers"] if c["name"] == "web")
    assert web["state"] == "running"
    assert {"network": "bridge", "ipv4": "172.17.0.2", "ipv6": None} in web["addresses"]
    # test_json_documented.py: the README's table holds these keys, and no other


def test_cli_formats_are_graphs_formats():
    assert cli.GRAPH_FORMATS == graph.FORMATS == tuple(graph.RENDERERS)
    with pytest.raises(UsageError):
        graph.render(sample_graph(), "svg")


def test_text_lists_every_flow_once():
    text = graph.render(sample_graph(), "text")
    assert "5 flow(s), 4 in place, 1 withdrawn" in text
    assert re.search(r"198\.51\.100\.2 +-> web:80/tcp", text)
    assert re.search(r"web +-> db:5432/tcp  \[172\.18\.0\.2/32 -> 172\.18\.0\.3/32 on appnet\]", text)
    assert re.search(r"old +-> cache:6379/tcp  \(container old is exited", text)


def test_no_rules():
    empty = graph.build([], {}, snapshot())
    assert "0 flow(s)" in graph.render(empty, "text")
    assert json.loads(graph.render(empty, "json"))["flows"] == []
    for fmt in ("dot", "mermaid", "html"):
        graph.render(empty, fmt)


# -- hostile names ------------------------------------------------------------------

EVIL_NET = 'x"];\nevil [label="pwn"];\r<script>alert(1)</script>&amp;|]\\N'
EVIL_OWNER = 'a"b<i>&amp;\\l|{x}'  # not a valid Docker name: a record may still hold anything


def hostile_graph() -> graph.Graph:
    """Hostile names everywhere: a network, a rule owner that is locked, a label rule's peer."""
    net = Network(id="9" * 64, name=EVIL_NET, driver="bridge", bridge="br-999999999999",
                  subnets=(ipaddress.IPv4Network("10.99.0.0/16"),), gateway="10.99.0.1")
    owner = Container("1" * 64, EVIL_OWNER, "running", (Endpoint(EVIL_NET, net.bridge, "10.99.0.2", "10.99.0.1"),))
    peer = Container("2" * 64, "peer", "running", (Endpoint(EVIL_NET, net.bridge, "10.99.0.3", "10.99.0.1"),),
                     labels=((RULES_LABEL, "egress deny\nadd-internal --source=evil.name-x_1 --dport=6379\n"),))
    evil = Container("3" * 64, "evil.name-x_1", "running", (Endpoint(EVIL_NET, net.bridge, "10.99.0.4", "10.99.0.1"),))
    snap = Snapshot(containers=[owner, peer, evil], networks=[net])
    specs = [
        RuleSpec(EVIL_OWNER, Kind.ADD, parse_address("198.51.100.7"), AddressSpec.self_(), dport=80),
        RuleSpec(EVIL_OWNER, Kind.INTERNAL, AddressSpec.container("peer"), AddressSpec.self_(), dport=5432),
        RuleSpec("peer", Kind.INTERNAL, AddressSpec.container(EVIL_OWNER), AddressSpec.self_(), dport=22),
        RuleSpec(EVIL_OWNER, Kind.ADD, AddressSpec.self_(), parse_address("192.0.2.0/24"), dport="25,465,587"),
    ]
    found = labels.read_labels(snap)
    assert not found.refused
    locks = [(EgressSpec(EVIL_OWNER, EgressPolicy.DENY), resolve_lock(EVIL_OWNER, snap, ["192.0.2.53"]), "")]
    locks += [(lock, resolve_lock(lock.owner, snap, []), "") for lock in found.locks]
    return graph.build(specs, {}, snap, found.rules, locks)


def test_hostile_names_stay_one_line_in_text():
    text = graph.render(hostile_graph(), "text")
    assert "\r" not in text and "\nevil" not in text
    assert one_line(EVIL_NET) in text


def test_hostile_names_in_json_round_trip():
    data = json.loads(graph.render(hostile_graph(), "json"))
    assert data["flows"][0]["owner"] == EVIL_OWNER
    assert data["flows"][0]["placed"][0]["network"] == EVIL_NET
    assert all(ch.isascii() and (ch.isprintable() or ch in "\n ") for ch in graph.render(hostile_graph(), "json"))


def _dot():
    found = shutil.which("dot")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dot (Debian package graphviz) missing under CI=true", pytrace=False)
        pytest.skip("dot not found (Debian package graphviz)")
    return found


def _svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("make", [sample_graph, hostile_graph], ids=["sample", "hostile"])
def test_dot_renders_with_graphviz_showing_names_as_they_are(make):
    g = make()
    source = graph.render(g, "dot")
    result = subprocess.run([_dot(), "-Tsvg"], input=source, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no syntax warning either
    texts = _svg_texts(result.stdout)
    parties = g.parties()
    # one node per party, none made up by a name ('evil' would be a node of its own)
    nodes = [n for n in ET.fromstring(result.stdout).iter("{http://www.w3.org/2000/svg}g") if n.get("class") == "node"]
    assert len(nodes) == len(parties)
    for party in parties:
        for line in graph.node_lines(g, party):
            assert one_line(line) in texts, (line, texts)
    edges = [n for n in ET.fromstring(result.stdout).iter("{http://www.w3.org/2000/svg}g") if n.get("class") == "edge"]
    assert len(edges) == len(g.edges())


_ENTITY = re.compile(r"#(\d+);")


def _mermaid_label(text: str) -> str:
    return _ENTITY.sub(lambda m: chr(int(m.group(1))), text)


def test_mermaid_labels_hold_no_syntax():
    g = hostile_graph()
    out = graph.render(g, "mermaid").split("\n")
    assert out[0] == "flowchart LR"
    nodes = [line for line in out[1:] if "--" not in line]
    edges = [line for line in out[1:] if "--" in line]
    assert len(nodes) == len(g.parties()) and len(edges) == len(g.edges())
    shape = re.compile(r'  (n\d+)(\(\["|\["|\[/")([A-Za-z0-9 ._:/#;<>-]*)("\]\)|"\]|"\\\])')
    labels = []
    for line in nodes:
        match = shape.fullmatch(line)
        assert match, line
        labels.append([_mermaid_label(part) for part in match.group(3).split("<br/>")])
    assert [graph.node_lines(g, p) for p in g.parties()] == labels
    edge = re.compile(r'  n\d+ (-->|-\.->)\|"[A-Za-z0-9 ._:/#;-]*"\| n\d+')
    assert all(edge.fullmatch(line) for line in edges), edges


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained_and_escapes_names():
    g = hostile_graph()
    page = graph.render(g, "html")
    parser = _Page()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags and "link" not in parser.tags
    # nothing loaded from anywhere: only the SVG namespace and the arrow marker are URLs
    urls = [v for k, v in parser.attrs if k in ("src", "href", "xlink:href", "action")]
    assert urls == []
    assert "default-src 'none'" in page
    text = "".join(parser.text)
    assert one_line(EVIL_OWNER) in text and one_line(EVIL_NET)[:40] in text
    assert "<script>alert" not in page
