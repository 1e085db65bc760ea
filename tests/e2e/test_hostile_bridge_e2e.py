"""End to end: bridges with hostile names (issue #9), proved with packets.

Anyone with API access names a network's bridge (com.docker.network.bridge.name),
and iptables-save prints the name raw: 'q"net' once looked quoted to docker-fw,
so init left its published ports open while check said "no drift".
"""

from __future__ import annotations

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

QUOTED = 'q"net'  # web's network's bridge
OTHERS = ["u\u2028x", "b\\s", "a'b#c"]  # more bridges, no container on them


def test_init_allow_and_check_on_a_bridge_named_with_a_quote(sandbox, fw):
    for name, bridge in [("qnet", QUOTED), *((f"net{i}", b) for i, b in enumerate(OTHERS))]:
        sandbox.docker("network", "create", "-o", f"com.docker.network.bridge.name={bridge}", name)
    sandbox.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--network", "qnet"))
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)  # Docker's default: open to all

    drift = fw.run("check")
    assert drift.returncode == 1 and "no drift" not in drift.stdout
    assert f'-o "q\\"net" -j DOCKER' in drift.stdout  # Docker's catch-all for it, to be deleted

    fw.ok("init")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    saved = fw.rules_text()
    for bridge in (QUOTED, *OTHERS):
        assert fw.catch_all(bridge) not in saved
        assert f"-A FORWARD -i {bridge} -o {bridge} -j DOCKER" in saved
    assert fw.ok("check").stdout.strip() == "check: no drift"

    fw.ok("allow", "web", ALLOWED)  # its filter's @bridge is 'q"net'
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert fw.ok("check").stdout.strip() == "check: no drift"
    assert "already recorded" in fw.ok("allow", "web", ALLOWED).stdout
    assert fw.rules_text().count("docker-fw:web:") == 1  # not duplicated

    fw.ok("drop", "web")
    assert "docker-fw:web:" not in fw.rules_text()
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
