"""End to end on a Docker 28.x engine (DOCKER-FORWARD / DOCKER-BRIDGE layout), with packets.

The engine is Debian sid's docker.io (28.5.2 when written), unpacked, not installed,
by ``scripts/get-engine-28.sh`` into /opt/docker-fw-engines/28 (or
$DOCKER_FW_ENGINE28_DIR); its dockerd runs in a sandbox of its own (module scope)
beside the system containerd.  Without that folder these tests skip, saying
so; under CI=true they fail instead (CI must run the script first).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from docker_fw import layouts
from docker_fw.iptables import parse_save
from tests.e2e.conftest import missing_prerequisites
from tests.e2e.fw import ALLOWED, OTHER, PORT, Fw
from tests.harness.engines import engine28
from tests.harness.sandbox import Sandbox

pytestmark = pytest.mark.e2e

SANDBOX_NAME = os.environ.get("DFW_SANDBOX28_NAME", "dfw-e2e28")
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Docker 28 end-to-end prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sandbox28():
    """A started sandbox running the unpacked 28.x dockerd, stopped after the module."""
    problems = missing_prerequisites()
    engine = engine28()
    if engine.missing():
        problems.append(engine.missing())
    if problems:
        _skip_or_fail("; ".join(problems))
    if importlib.util.find_spec("docker_fw") is None:
        src = os.path.join(_REPO, "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    sb = Sandbox(name=SANDBOX_NAME, **engine.sandbox_kwargs())
    try:
        sb.start()
        version = sb.client().version()["Version"]
        assert version.split(".")[0] in ("28", "29"), f"{engine.dockerd} is Docker {version}"
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def baseline28(sandbox28) -> str:
    sandbox28.reset()
    return sandbox28.snapshot_filter()


@pytest.fixture
def fw28(sandbox28, baseline28, tmp_path):
    sandbox28.reset()
    sandbox28.restore_filter(baseline28)
    yield Fw(sandbox28, str(tmp_path / "state"))
    sandbox28.reset()
    sandbox28.restore_filter(baseline28)


@pytest.fixture
def web28(sandbox28, fw28):
    sandbox28.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    return "web"


def _reachable(sb) -> dict[str, bool]:
    return {src: sb.ext_connect(sb.host_ip, PORT, src) for src in (ALLOWED, OTHER)}


def test_engine_shows_the_28_layout(sandbox28, fw28, web28):
    table = parse_save(sandbox28.snapshot_filter())
    assert layouts.detect(table).name == layouts.DOCKER_28
    assert table.has_rule("DOCKER-BRIDGE", "-o", "docker0", "-j", "DOCKER")
    assert [r.target() for r in table.chain_rules("FORWARD")] == ["DOCKER-USER", "DOCKER-FORWARD"]
    assert not layouts.is_initialised(table, ["docker0"])


def test_init_allow_replay_drop(sandbox28, fw28, web28):
    sb, fw = sandbox28, fw28
    # Docker's default: both external clients reach the published port.
    assert _reachable(sb) == {ALLOWED: True, OTHER: True}

    out = fw.ok("init").stdout
    assert "init: -D DOCKER-BRIDGE -o docker0 -j DOCKER" in out
    assert "init: -I FORWARD 1 -i docker0 -o docker0 -j DOCKER" in out
    assert _reachable(sb) == {ALLOWED: False, OTHER: False}
    saved = fw.rules_text()
    assert "-A DOCKER-BRIDGE -o docker0 -j DOCKER" not in saved
    forward = [l for l in saved.splitlines() if l.startswith("-A FORWARD ")]
    assert forward[:2] == ["-A FORWARD -j DOCKER-FW-FORWARD", "-A FORWARD -i docker0 -o docker0 -j DOCKER"]

    # init twice: nothing changes the second time
    again = fw.ok("init")
    assert "nothing changed" in again.stdout
    assert fw.rules_text() == saved

    # allow: only .2, and no warning that init was not run
    allowed = fw.ok("allow", "web", ALLOWED)
    assert "has not been run" not in allowed.stderr
    assert _reachable(sb) == {ALLOWED: True, OTHER: False}

    # the container moves (another one takes its address): replay follows it
    old_ip = sb.container_ip("web")
    sb.docker("stop", "-t", "1", "web")
    sb.run_server("squatter", ports=(80,))
    assert sb.container_ip("squatter") == old_ip
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    assert sb.container_ip("web") != old_ip
    assert fw.run("replay", "--dry-run", "web").returncode == 1
    fw.ok("replay", "web")
    assert _reachable(sb) == {ALLOWED: True, OTHER: False}
    assert old_ip not in fw.rules_text()
    assert fw.run("replay", "--dry-run").returncode == 0

    # drop closes it again
    assert "web: dropped 1 rule" in fw.ok("drop", "web").stdout
    assert _reachable(sb) == {ALLOWED: False, OTHER: False}
    assert "docker-fw:web:" not in fw.rules_text()


def test_add_opens_only_published_ports(sandbox28, fw28, web28):
    sb, fw = sandbox28, fw28
    fw.ok("init")
    ip = sb.container_ip("web")
    # an add rule for a port the engine does not publish opens nothing
    sb.docker("exec", "-d", "web", "nc", "-ll", "-p", "81", "-e", "echo", "web81")
    sb.wait_listening("web", 81)
    fw.ok("add", "web", "--source", ALLOWED, "--dport", "81")
    assert not sb.ext_connect(ip, 81, ALLOWED)
    fw.ok("add", "web", "--source", ALLOWED, "--dport", "80", "--filter", "! -i docker0 -o docker0")
    assert _reachable(sb) == {ALLOWED: True, OTHER: False}


def test_add_internal_with_icc_false(sandbox28, fw28):
    """Internal traffic meets the DOCKER chain after init: add-internal opens one pair only."""
    sb, fw = sandbox28, fw28
    fw.ok("init")
    sb.run_server("srv", ports=(80,))
    sb.run_server("client", ports=())
    sb.run_server("stranger", ports=())
    srv_ip = sb.container_ip("srv")
    assert not fw.container_connects("client", srv_ip, 80)
    fw.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    assert fw.container_connects("client", srv_ip, 80)
    assert not fw.container_connects("stranger", srv_ip, 80)


def test_engine_restart_puts_the_catch_all_back_and_init_removes_it(sandbox28, fw28, web28):
    sb, fw = sandbox28, fw28
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
