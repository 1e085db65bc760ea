"""End to end: import-legacy of the original docker-fw's files, then replay, proved with packets.

The files are written into the sandbox engine's own container directories
(its data root, ``Sandbox.data_root``) in the original's format (Go's
encoding/json of its structs; see tests/unit/test_legacy_import.py), with
the addresses the containers have, as the original recorded them.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

OLD_HOST = "172.17.42.1/32"  # the original's hard-coded Docker host address, written for '/'
INPUT_PORT = 9000


def go_rule(source: str, source_alias: str, dest: str, dest_alias: str, dport: int, chain: str, jump: str,
            filter: str = "") -> dict:
    """An ActiveIptablesRule as the original's encoding/json wrote it: every field, in order."""
    return {
        "Source": source, "SourceAlias": source_alias, "SourcePort": 0,
        "Destination": dest, "DestinationAlias": dest_alias, "DestinationPort": dport,
        "Protocol": "tcp", "Filter": filter, "Chain": chain, "JumpTo": jump,
    }


def write_old(sandbox, name: str, file: str, value) -> str:
    cid = sandbox.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    path = os.path.join(sandbox.data_root, "containers", cid, file)
    with open(path, "w") as handle:
        handle.write(json.dumps(value, separators=(",", ":")))
    return path


def state_bytes(fw) -> bytes:
    with open(os.path.join(fw.state_dir, "state.db"), "rb") as handle:
        return handle.read()


EXPECTED = [
    f"docker-fw add-input app --source=. --dest=/ --dport={INPUT_PORT} --protocol=tcp",
    "docker-fw add-internal db --source=app --dest=. --dport=5432 --protocol=tcp",
    "docker-fw add-two-ways endpoint --source=promoted --dest=. --dport=1025 --protocol=tcp",
    f"docker-fw add web --source={ALLOWED} --dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'",
]


def test_import_legacy_then_replay_admits_what_the_old_tool_allowed(sandbox, fw, web):
    fw.ok("init")
    sandbox.run_server("db", ports=(5432,))
    sandbox.run_server("app", ports=())
    sandbox.run_server("promoted", ports=())
    sandbox.run_server("endpoint", ports=(1025,), extra_args=("--link", "promoted:promoted"))
    sandbox.run_server("stranger", ports=())
    ip = {name: sandbox.container_ip(name) + "/32" for name in ("web", "db", "app", "promoted", "endpoint")}
    # The old tool's state, as its add/allow, add-internal, add-two-ways and add-input wrote it.
    write_old(sandbox, "web", "extraRules.json", {"Rules": [
        go_rule(f"{ALLOWED}/32", "", ip["web"], ".", 80, "FORWARD", "DOCKER", "! -i docker0 -o docker0"),
    ]})
    write_old(sandbox, "web", "backupHostConfig.json", {
        "PortBindings": {"80/tcp": [{"HostIP": "0.0.0.0", "HostPort": str(PORT)}]},
        "NetworkMode": "default", "RestartPolicy": {}, "LogConfig": {"Type": "json-file"},
    })
    write_old(sandbox, "db", "extraRules.json", {"Rules": [
        go_rule(ip["app"], "app", ip["db"], ".", 5432, "DOCKER", "ACCEPT"),
    ]})
    write_old(sandbox, "endpoint", "extraRules.json", {"Rules": [
        go_rule(ip["promoted"], "promoted", ip["endpoint"], ".", 1025, "DOCKER", "ACCEPT"),
    ]})
    write_old(sandbox, "promoted", "customHosts.json", ["endpoint"])
    write_old(sandbox, "app", "extraRules.json", {"Rules": [
        go_rule(ip["app"], ".", OLD_HOST, "/", INPUT_PORT, "INPUT", "ACCEPT"),
    ]})
    root = ("--docker-root", sandbox.data_root)

    # --dry-run prints the commands and changes nothing: store and firewall as they were.
    store_before, firewall_before = state_bytes(fw), fw.rules_text()
    dry = fw.ok("import-legacy", *root, "--dry-run")
    assert [line for line in dry.stdout.splitlines() if not line.startswith("#")] == EXPECTED
    assert "# web: host configuration from " in dry.stdout
    assert (state_bytes(fw), fw.rules_text()) == (store_before, firewall_before)

    # A bad file anywhere: one line naming it, exit 2, nothing changed.
    bad = write_old(sandbox, "stranger", "extraRules.json", {"Rules": [
        go_rule(f"{OTHER}/32", "", "172.17.0.99/32", ".", 80, "OUTPUT", "ACCEPT"),
    ]})
    refused = fw.run("import-legacy", *root)
    assert refused.returncode == 2, refused
    assert f"{bad} Rules[0]: Chain 'OUTPUT' with JumpTo 'ACCEPT' is no rule the old docker-fw wrote" in refused.stderr
    assert refused.stderr.strip().endswith("nothing was imported")
    assert (state_bytes(fw), fw.rules_text()) == (store_before, firewall_before)
    os.remove(bad)

    # Imported, nothing applied yet: replay applies.
    out = fw.ok("import-legacy", *root).stdout
    assert "import-legacy: 4 rules, 1 hosts entry and 1 host configuration recorded" in out
    assert fw.ok("ls").stdout.splitlines() == EXPECTED
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    fw.ok("replay")

    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert fw.container_connects("app", sandbox.container_ip("db"), 5432)
    assert not fw.container_connects("stranger", sandbox.container_ip("db"), 5432)
    # add-two-ways: promoted reaches endpoint by name (its hosts line), the stranger not at all.
    assert fw.container_connects("promoted", "endpoint", 1025)
    assert not fw.container_connects("stranger", sandbox.container_ip("endpoint"), 1025)
    gateway = fw.gateway("app")
    with fw.host_server(gateway, INPUT_PORT), fw.input_policy_drop():
        assert fw.container_connects("app", gateway, INPUT_PORT)
        assert not fw.container_connects("stranger", gateway, INPUT_PORT)
    assert fw.run("check").returncode == 0

    # Again: nothing new is recorded, nothing changes.
    store_after, firewall_after = state_bytes(fw), fw.rules_text()
    again = fw.ok("import-legacy", *root).stdout
    assert "import-legacy: 0 rules, 0 hosts entries and 0 host configurations recorded" in again
    assert fw.ok("ls").stdout.splitlines() == EXPECTED
    assert (state_bytes(fw), fw.rules_text()) == (store_after, firewall_after)
    assert fw.run("replay", "--dry-run").returncode == 0
