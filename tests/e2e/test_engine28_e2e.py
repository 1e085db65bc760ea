"""What is particular to the Docker 28.x layout (DOCKER-FORWARD / DOCKER-BRIDGE), with packets.

Every other end-to-end test runs on this engine too (tests/e2e/conftest.py
parametrises ``sandbox`` over 20.10 and 28.x); this module narrows it to 28.x.
The engine is Debian sid's docker.io (28.5.2 when written), unpacked, not
installed, by ``scripts/get-engine-28.sh`` into /opt/docker-fw-engines/28 (or
$DOCKER_FW_ENGINE28_DIR).
"""

from __future__ import annotations

import pytest

from docker_fw.backends.iptables import layouts
from docker_fw.backends.iptables.process import parse_save
from tests.e2e.conftest import only_on
from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, only_on("28")]


def _reachable(sb) -> dict[str, bool]:
    return {src: sb.ext_connect(sb.host_ip, PORT, src) for src in (ALLOWED, OTHER)}


def test_engine_shows_the_28_layout(sandbox, fw, web):
    table = parse_save(sandbox.snapshot_filter())
    assert layouts.detect(table).name == layouts.DOCKER_28
    assert table.has_rule("DOCKER-BRIDGE", "-o", "docker0", "-j", "DOCKER")
    assert [r.target() for r in table.chain_rules("FORWARD")] == ["DOCKER-USER", "DOCKER-FORWARD"]
    assert not layouts.is_initialised(table, ["docker0"])


def test_init_removes_the_catch_all_and_puts_the_internal_jump_first(sandbox, fw, web):
    """28.x sends all traffic to docker0 through DOCKER-BRIDGE -> DOCKER (published
    ports open to all): init removes that catch-all and keeps the internal jump
    above DOCKER-FORWARD, which drops docker0 -> docker0 traffic (--icc=false)."""
    sb = sandbox
    assert _reachable(sb) == {ALLOWED: True, OTHER: True}  # Docker's default
    out = fw.ok("init").stdout
    assert "init: -D DOCKER-BRIDGE -o docker0 -j DOCKER" in out
    assert "init: -I FORWARD 1 -i docker0 -o docker0 -j DOCKER" in out
    assert _reachable(sb) == {ALLOWED: False, OTHER: False}
    saved = fw.rules_text()
    assert "-A DOCKER-BRIDGE -o docker0 -j DOCKER" not in saved
    forward = [l for l in saved.splitlines() if l.startswith("-A FORWARD ")]
    assert forward[:2] == ["-A FORWARD -j DOCKER-FW-FORWARD", "-A FORWARD -i docker0 -o docker0 -j DOCKER"]
    assert "nothing changed" in fw.ok("init").stdout
    assert fw.rules_text() == saved
    allowed = fw.ok("allow", "web", ALLOWED)
    assert "has not been run" not in allowed.stderr
    assert _reachable(sb) == {ALLOWED: True, OTHER: False}


def test_engine_restart_puts_the_catch_all_back_and_init_removes_it(sandbox, fw, web):
    sb, fw = sandbox, fw
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sb.restart_engine()
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    table = parse_save(sb.snapshot_filter())
    assert table.has_rule("DOCKER-BRIDGE", "-o", "docker0", "-j", "DOCKER")
    assert sb.ext_connect(sb.host_ip, PORT, OTHER)  # open to all again
    # the restart also put Docker's FORWARD jumps back above ours: the internal
    # jump below DOCKER-FORWARD (which drops internal traffic, --icc=false) never matches
    forward = [l for l in fw.rules_text().splitlines() if l.startswith("-A FORWARD ")]
    assert forward[:2] == ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-FORWARD"], forward
    assert "not initialised" in fw.run("check").stdout
    out = fw.ok("init").stdout
    assert "init: -D FORWARD -i docker0 -o docker0 -j DOCKER" in out  # moved back to the top
    forward = [l for l in fw.rules_text().splitlines() if l.startswith("-A FORWARD ")]
    assert forward[0] == "-A FORWARD -i docker0 -o docker0 -j DOCKER"
    fw.ok("replay")
    assert _reachable(sb) == {ALLOWED: True, OTHER: False}
    assert "nothing changed" in fw.ok("init").stdout
