"""End to end: 'docker-fw explain' agrees with real packets.

For each flow, explain's verdict (its exit code and its --json, which must
say the same) is compared with what a real connection gets: an external
client (198.51.100.2 / .3) connecting to web's published port on the engine
host, a container connecting to another one (the sandbox runs --icc=false),
a container connecting to a server on the host, and a container that moved
to a new address after a restart, before and after 'replay'.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def explained(fw, source: str, dest: str, dport: int) -> dict:
    """explain --json's document; its exit code must match its verdict, and the text
    output's first line must say the same."""
    result = fw.run("explain", "--source", source, "--dest", dest, "--dport", str(dport), "--json")
    assert result.returncode in (0, 1), result
    doc = json.loads(result.stdout)
    assert doc["verdict"] == ("allowed" if result.returncode == 0 else "blocked"), doc
    text = fw.run("explain", "--source", source, "--dest", dest, "--dport", str(dport))
    assert text.returncode == result.returncode and text.stdout.split("\n")[0].endswith(doc["verdict"]), text
    return doc


def allowed(fw, source: str, dest: str, dport: int) -> bool:
    return explained(fw, source, dest, dport)["verdict"] == "allowed"


def test_external_clients_to_a_published_port(sandbox, fw, web):
    def agree(client: str) -> bool:
        real = sandbox.ext_connect(sandbox.host_ip, PORT, client)
        assert allowed(fw, client, "web", 80) == real, (client, real)
        return real

    # Docker's default, then init, then an allow for one client
    assert agree(ALLOWED) and agree(OTHER)
    fw.ok("init")
    assert not agree(ALLOWED) and not agree(OTHER)
    doc = explained(fw, ALLOWED, "web", 80)
    (path,) = doc["paths"]
    assert path["flow"]["host_port"] == PORT and path["suggestion"]["allows"]
    # the suggested command does what explain says it would
    fw.ok_shell_line(path["suggestion"]["command"])
    assert agree(ALLOWED) and not agree(OTHER)
    doc = explained(fw, ALLOWED, "web", 80)
    assert doc["paths"][0]["rule"]["command"] == fw.ok("ls").stdout.strip()
    assert f"host port {PORT}/tcp -> {sandbox.container_ip('web')}:80" in doc["paths"][0]["translated"]


def test_a_port_that_is_not_published(sandbox, fw):
    """web listens on 81 too but publishes only 80: a rule for 81 opens nothing, and explain says so."""
    sandbox.run_server("web", ports=(80, 81), publish=(f"{PORT}:80",))
    fw.ok("init")
    fw.ok("add", "web", "--source", ALLOWED, "--dport", "81")
    ip = sandbox.container_ip("web")
    assert not sandbox.ext_connect(ip, 81, ALLOWED)
    doc = explained(fw, ALLOWED, "web", 81)
    assert doc["verdict"] == "blocked"
    assert doc["paths"][0]["suggestion"]["allows"] is False


def test_between_containers_with_icc_off(sandbox, fw):
    fw.ok("init")
    for name, ports in (("srv", (80,)), ("client", ()), ("stranger", ())):
        sandbox.run_server(name, ports=ports)
    srv_ip = sandbox.container_ip("srv")

    def agree(source: str) -> bool:
        real = fw.container_connects(source, srv_ip, 80)
        assert allowed(fw, source, "srv", 80) == real, (source, real)
        return real

    assert not agree("client")
    doc = explained(fw, "client", "srv", 80)
    assert "inter-container communication is off" in doc["paths"][0]["reason"]
    fw.ok_shell_line(doc["paths"][0]["suggestion"]["command"])
    assert agree("client") and not agree("stranger")
    assert explained(fw, "client", "srv", 80)["paths"][0]["chain"] == "DOCKER-FW-INTERNAL"


def test_a_moved_container_before_and_after_replay(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sandbox.move("web")  # the squatter now holds web's old address
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    doc = explained(fw, ALLOWED, "web", 80)
    assert doc["verdict"] == "blocked" and doc["paths"][0]["flow"]["dst"] == sandbox.container_ip("web")
    assert doc["paths"][0]["suggestion"]["command"] == "docker-fw replay web"
    dry = fw.run("replay", "--dry-run", "--json", "web")
    pending = json.loads(dry.stdout)
    assert dry.returncode == 1 and pending["pending"] is True
    assert {c["verb"] for c in pending["changes"]} == {"add", "delete"}
    fw.ok("replay", "web")
    assert json.loads(fw.run("replay", "--dry-run", "--json").stdout)["pending"] is False
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert allowed(fw, ALLOWED, "web", 80)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert not allowed(fw, OTHER, "web", 80)


def test_a_container_to_the_host(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("client", ports=())
    gateway = fw.gateway("client")
    with fw.host_server(gateway, 9000), fw.input_policy_drop():
        assert not fw.container_connects("client", gateway, 9000)
        doc = explained(fw, "client", "/", 9000)
        assert doc["verdict"] == "blocked" and doc["paths"][0]["decided_by"] == "-P INPUT DROP"
        fw.ok_shell_line(doc["paths"][0]["suggestion"]["command"])
        assert fw.container_connects("client", gateway, 9000)
        assert allowed(fw, "client", "/", 9000)
