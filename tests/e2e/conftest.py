"""End-to-end fixtures: a sandbox Docker engine (tests.harness.sandbox) per engine version.

The ``sandbox`` fixture is parametrised over the engines in ENGINES: the system's
20.10 (iptables layout with DOCKER-ISOLATION chains) and a 28.x unpacked by
scripts/get-engine-28.sh (DOCKER-FORWARD / DOCKER-BRIDGE layout), so every
end-to-end test that uses it runs once per engine; pytest groups the tests by
engine, so one engine runs at a time.  A module that is about one engine only
narrows it with ``pytest.mark.parametrize("sandbox", ["28"], indirect=True)``.
DFW_E2E_ENGINES=20.10 (comma-separated) runs a subset; the others skip.

Prerequisites (root, dockerd, docker, iptables, static busybox, nsenter, ip, the
unpacked 28.x engine) that are missing skip the end-to-end tests, except under
CI=true, where they fail instead.  Every test collected from this directory is
marked ``e2e``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent.parent
if str(_REPO) not in sys.path:  # `tests.harness` when pytest runs without `python -m`
    sys.path.insert(0, str(_REPO))

from tests.harness.engines import engine28  # noqa: E402
from tests.harness.image import is_static  # noqa: E402
from tests.harness.sandbox import Sandbox, _env  # noqa: E402

# Another name lets two test runs (two checkouts) share a machine without
# tearing down each other's sandbox.  The 28.x sandbox gets a "28" suffix, and
# each pytest-xdist worker its own ("-gw1"), so that no distribution mode lets
# two workers start (and so tear down) the same sandbox.
SANDBOX_NAME = os.environ.get("DFW_SANDBOX_NAME", "dfw-e2e")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

SYSTEM_ENGINE = "20.10"  # Debian bookworm's docker.io, the installed dockerd
ENGINES = (SYSTEM_ENGINE, "28")


def selected_engines() -> tuple[str, ...]:
    """The engines DFW_E2E_ENGINES names (all of ENGINES when unset)."""
    raw = os.environ.get("DFW_E2E_ENGINES", "")
    names = tuple(e.strip() for e in raw.split(",") if e.strip()) or ENGINES
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        raise pytest.UsageError(f"DFW_E2E_ENGINES: unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    return names


def missing_prerequisites() -> list[str]:
    """Why the sandbox cannot run here; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (the sandbox creates network namespaces and runs dockerd)")
    path = _env()["PATH"]
    for cmd, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("iptables", "iptables"),
                         ("iptables-save", "iptables"), ("busybox", "busybox-static"),
                         ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(cmd, path=path) is None:
            problems.append(f"{cmd} not found (Debian package {package})")
    bb = shutil.which("busybox", path=path)
    if bb and not is_static(bb):
        problems.append(f"{bb} is dynamically linked: the test image needs busybox-static")
    if importlib.util.find_spec("docker") is None:
        problems.append("the docker SDK for Python is not installed")
    return problems


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"end-to-end prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def only_on(*engines: str):
    """Mark a test that uses ``sandbox`` to run on these engines only."""
    return pytest.mark.parametrize("sandbox", list(engines), indirect=True, ids=engine_id)


def pytest_configure(config):
    selected_engines()  # a typo in DFW_E2E_ENGINES is an error, not a silent skip


def use_checkout_src() -> None:
    """`python -m docker_fw` in the engine namespace: use the checkout's src/ when
    docker_fw is not installed."""
    if importlib.util.find_spec("docker_fw") is None:
        src = str(_REPO / "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)


def start_sandbox(engine: str, **kwargs) -> Sandbox:
    """A started sandbox running ENGINE (one of ENGINES); skips (fails under
    CI=true) when a prerequisite is missing."""
    problems = missing_prerequisites()
    name = SANDBOX_NAME if engine == SYSTEM_ENGINE else SANDBOX_NAME + engine
    if engine != SYSTEM_ENGINE:
        eng = engine28()
        if eng.missing():
            problems.append(eng.missing())
        kwargs.update(eng.sandbox_kwargs())
    name = kwargs.pop("name", name) + (f"-{_WORKER}" if _WORKER else "")
    if problems:
        _skip_or_fail("; ".join(problems))
    use_checkout_src()
    sb = Sandbox(name=name, **kwargs)
    try:
        sb.start()
        expected = (20,) if engine == SYSTEM_ENGINE else (28, 29)
        assert sb.engine_major() in expected, f"sandbox {name}: expected Docker {engine}, got {sb.engine_major()}"
    except BaseException:
        sb.stop()
        raise
    return sb


def engine_id(engine: str) -> str:
    """The test id of an engine ("docker28"); tests/conftest.py's xdist
    scheduler sends all tests with one engine id to one worker."""
    return f"docker{engine}"


@pytest.fixture(scope="session", params=ENGINES, ids=engine_id)
def sandbox(request):
    """A started sandbox per engine, stopped (and cleaned up) after the session."""
    engine = request.param
    if engine not in selected_engines():
        pytest.skip(f"Docker {engine}: not in DFW_E2E_ENGINES={os.environ.get('DFW_E2E_ENGINES')}")
    sb = start_sandbox(engine)
    try:
        yield sb
    finally:
        sb.stop()
