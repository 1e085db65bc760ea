"""End-to-end fixtures: one sandbox Docker engine (tests.harness.sandbox) per test session.

Prerequisites (root, dockerd, docker, iptables, static busybox, nsenter, ip) that are
missing skip the end-to-end tests, except under CI=true, where they fail instead.
Every test collected from this directory is marked ``e2e``.
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

from tests.harness.image import is_static  # noqa: E402
from tests.harness.sandbox import Sandbox, _env  # noqa: E402

# Another name lets two test runs (two checkouts) share a machine without
# tearing down each other's sandbox.
SANDBOX_NAME = os.environ.get("DFW_SANDBOX_NAME", "dfw-e2e")


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


@pytest.fixture(scope="session")
def sandbox():
    """A started Sandbox(name="dfw-e2e"), stopped (and cleaned up) after the session."""
    problems = missing_prerequisites()
    if problems:
        _skip_or_fail("; ".join(problems))
    if importlib.util.find_spec("docker_fw") is None:
        # `python -m docker_fw` in the engine namespace: use the checkout's src/.
        src = str(_REPO / "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    sb = Sandbox(name=SANDBOX_NAME)
    try:
        sb.start()
        yield sb
    finally:
        sb.stop()
