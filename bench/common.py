"""What the benchmarks share: a root check, a timed docker-fw run in a sandbox, and
the code under test (this checkout, and with --baseline another one beside it)."""

from __future__ import annotations

import compileall
import os
import time

from tests.e2e.fw import Fw

BASELINE_HELP = "another checkout's src/ directory, timed beside this one in the same run"


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark starts a sandbox Docker engine")


def timed(fw: Fw, *argv: str, input: str | None = None, env: dict | None = None) -> float:
    """Wall-clock seconds of one docker-fw run (process start included); fails loudly."""
    t0 = time.perf_counter()
    fw.ok(*argv, input=input, env=env)
    return time.perf_counter() - t0


def compile_package(src: str | None = None) -> str:
    """Compile docker-fw's modules (those under SRC, else the installed ones) to
    bytecode as 'pip install .' does (the test VM sets PYTHONDONTWRITEBYTECODE=1,
    so nothing else would); returns the package directory."""
    if src is None:
        import docker_fw

        package = os.path.dirname(docker_fw.__file__)
    else:
        package = os.path.join(src, "docker_fw")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise SystemExit(f"no docker_fw package in {os.path.dirname(package)}")
    compileall.compile_dir(package, quiet=1)
    return package


def variants(baseline: str | None) -> list[tuple[str, dict | None]]:
    """(label, environment) of each code under test: this checkout's, then with
    BASELINE (a src/ directory) the baseline's, which PYTHONPATH puts first."""
    found = [("", None)]
    if baseline:
        found.append((" (baseline)", {"PYTHONPATH": os.path.abspath(baseline)}))
    for _, env in found:
        compile_package(env["PYTHONPATH"] if env else None)
    return found
