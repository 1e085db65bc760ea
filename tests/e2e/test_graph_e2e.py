"""End to end: 'docker-fw graph' shows what the record allows at the live addresses,
and real packets agree with it; its dot renders with Graphviz, its html in Chromium."""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)
from tests.harness import browser

pytestmark = pytest.mark.e2e

HOST_PORT = 9100


def _need(found, why: str):
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"end-to-end prerequisite missing under CI=true: {why}", pytrace=False)
        pytest.skip(why)
    return found


@pytest.fixture
def flows(sandbox, fw, web):
    """web published to ALLOWED; app may reach web:80 and the host's HOST_PORT; old's
    rule is withdrawn (old stopped); stranger has no rule at all."""
    for name in ("app", "stranger", "old"):
        sandbox.run_server(name, ports=(81,))
    fw.ok("init")
    fw.ok("allow", web, ALLOWED)
    fw.ok("add-internal", web, "--source=app", "--dport=80")
    fw.ok("add-input", "app", "--source=.", "--dest=/", f"--dport={HOST_PORT}")
    fw.ok("add-internal", web, "--source=old", "--dport=80")
    sandbox.docker("stop", "-t", "0", "old")
    return fw


def graph_json(fw) -> dict:
    return json.loads(fw.ok("graph", "--format", "json").stdout)


def test_graph_json_is_the_record_at_the_live_addresses_and_packets_agree(sandbox, flows):
    fw = flows
    data = graph_json(fw)
    recorded = fw.ok("ls").stdout.splitlines()
    assert sorted(f["command"] for f in data["flows"]) == sorted(recorded)
    ip = {name: sandbox.container_ip(name) for name in ("web", "app")}
    gateway = fw.gateway("app")
    placed = {(f["source"]["name"], f["dest"]["name"], f["dport"]): f for f in data["flows"]}
    ingress = placed[(ALLOWED, "web", 80)]
    assert ingress["direction"] == "ingress" and ingress["in_place"]
    assert [(p["source"], p["dest"], p["network"]) for p in ingress["placed"]] == [(f"{ALLOWED}/32", f"{ip['web']}/32", "bridge")]
    internal = placed[("app", "web", 80)]
    assert internal["direction"] == "internal"
    assert [(p["source"], p["dest"]) for p in internal["placed"]] == [(f"{ip['app']}/32", f"{ip['web']}/32")]
    to_host = placed[("app", "host", HOST_PORT)]
    assert to_host["direction"] == "to-host"
    assert [(p["source"], p["dest"]) for p in to_host["placed"]] == [(f"{ip['app']}/32", f"{gateway}/32")]
    withdrawn = placed[("old", "web", 80)]
    assert not withdrawn["in_place"] and withdrawn["placed"] == [] and "old" in withdrawn["withdrawn"]
    containers = {c["name"]: c for c in data["containers"]}
    assert containers["web"]["addresses"] == [{"network": "bridge", "ipv4": ip["web"], "ipv6": None}]
    assert containers["old"]["state"] == "exited"

    # Packets: what the graph shows in place gets through, nothing else does.
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert fw.container_connects("app", ip["web"], 80)
    assert not fw.container_connects("stranger", ip["web"], 80)
    with fw.host_server(gateway, HOST_PORT), fw.input_policy_drop():
        assert fw.container_connects("app", gateway, HOST_PORT)
        assert not fw.container_connects("stranger", gateway, HOST_PORT)

    # A restart that moves web: the graph follows the live address (after replay, so do packets).
    old_ip, new_ip = sandbox.move("web")
    assert old_ip != new_ip
    moved = {(f["source"]["name"], f["dest"]["name"], f["dport"]): f for f in graph_json(fw)["flows"]}
    assert moved[(ALLOWED, "web", 80)]["placed"][0]["dest"] == f"{new_ip}/32"
    fw.ok("replay")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)


def test_graph_text_is_for_a_terminal(flows):
    text = flows.ok("graph").stdout
    assert "4 flow(s), 3 in place, 1 withdrawn" in text
    assert "from outside:" in text and "between containers:" in text and "to the Docker host:" in text
    assert f"{ALLOWED}" in text and "-> web:80/tcp" in text and f"-> host:{HOST_PORT}/tcp" in text


def test_graph_dot_renders_with_graphviz(flows, tmp_path):
    dot = _need(shutil.which("dot"), "dot not found (Debian package graphviz)")
    source = flows.ok("graph", "--format", "dot").stdout
    svg = tmp_path / "graph.svg"
    result = subprocess.run([dot, "-Tsvg", "-o", str(svg)], input=source, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    drawn = svg.read_text()
    assert drawn.count('class="edge"') == 4 and ">web<" in drawn and ">app<" in drawn


class _Rows(html.parser.HTMLParser):
    """The cells of the rows of class 'flow' in a page."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "flow" in (attrs.get("class") or "").split():
            self.rows.append({})
        elif tag == "td" and self.rows and attrs.get("class"):
            self._cell = attrs["class"]
            self.rows[-1][self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell:
            self.rows[-1][self._cell] += data


def test_graph_html_shows_the_flows_in_a_real_browser(flows, tmp_path):
    _need(browser.chromium(), "chromium not found (Debian package chromium)")
    page = tmp_path / "graph.html"
    page.write_text(flows.ok("graph", "--format", "html").stdout)
    dom = browser.dump_dom(str(page))
    parser = _Rows()
    parser.feed(dom)
    shown = sorted((r["source"], r["dest"], r["port"], r["state"]) for r in parser.rows)
    expected = sorted(
        (f["source"]["name"] if f["source"]["kind"] != "host" else "host",
         f["dest"]["name"] if f["dest"]["kind"] != "host" else "host",
         f"{f['dport']}/{f['proto']}", "in place" if f["in_place"] else "withdrawn")
        for f in graph_json(flows)["flows"]
    )
    assert shown == expected
    assert dom.count('class="edge"') + dom.count('class="edge withdrawn"') == 4  # the SVG drew every flow
    png = os.environ.get("DFW_GRAPH_SCREENSHOT") or str(tmp_path / "graph.png")
    browser.screenshot(str(page), png)
    assert os.path.getsize(png) > 10_000


EXT = "198.51.100.2"  # what the locked container's label lets it reach
EXT_OTHER = "198.51.100.3"
DNS_SERVER = "198.51.100.4"
LOCK_LABEL = (
    "# locked by its label\n"
    "egress deny\n"
    f"add --source=. --dest={EXT} --dport=80,443\n"
    f"add --source=. --dest={EXT} --protocol=icmp --icmp-type=echo-request\n"
)


def test_graph_json_shows_a_label_lock_and_its_rules_and_packets_agree(sandbox, fw):
    """A container locked by its docker-fw.rules label: the graph names the label's
    lines, lists its DNS server and the rules that pass the lock; packets get
    through exactly there."""
    sandbox.run_server("locked", ports=(8000,), extra_args=("--dns", DNS_SERVER, "--label", f"docker-fw.rules={LOCK_LABEL}"))
    fw.ok("init")
    fw.ok("replay")
    data = graph_json(fw)
    (lock,) = data["egress"]
    assert lock["container"] == "locked" and lock["policy"] == "deny" and lock["in_place"]
    assert lock["origin"] == "label" and lock["label"] == {"name": "docker-fw.rules", "line": 2}
    assert lock["dns"] == [DNS_SERVER] and lock["networks"] == ["bridge"]
    passing = [data["flows"][i] for i in lock["outbound"]]
    assert [(f["dest"]["name"], f["proto"], f["dport"], f["icmp_type"], f["label"]["line"]) for f in passing] == [
        (EXT, "tcp", "80,443", None, 3), (EXT, "icmp", None, "echo-request", 4)]
    assert all(f["origin"] == "label" and f["direction"] == "egress" and f["in_place"] for f in passing)
    ip = sandbox.container_ip("locked")
    assert [p["source"] for f in passing for p in f["placed"]] == [f"{ip}/32", f"{ip}/32"]
    text = fw.ok("graph").stdout
    assert f"-> {EXT}:80,443/tcp  (add rule)  (label docker-fw.rules line 3)" in text
    assert f"-> {DNS_SERVER}:53/udp,tcp  (DNS" in text

    # Packets: what the graph lists gets out, nothing else does.
    with fw.ext_server((80, 443, 9300, 53)):
        assert fw.container_connects("locked", EXT, 80) and fw.container_connects("locked", EXT, 443)
        assert fw.container_pings("locked", EXT)
        assert not fw.container_connects("locked", EXT, 9300)
        assert not fw.container_connects("locked", EXT_OTHER, 80) and not fw.container_pings("locked", EXT_OTHER)
        assert fw.container_connects("locked", DNS_SERVER, 53)
        assert not fw.container_connects("locked", EXT_OTHER, 53)
