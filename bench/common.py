"""What the benchmarks share: a root check and a timed docker-fw run in a sandbox."""

from __future__ import annotations

import os
import time

from tests.e2e.fw import Fw


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark starts a sandbox Docker engine")


def timed(fw: Fw, *argv: str, input: str | None = None) -> float:
    """Wall-clock seconds of one docker-fw run (process start included); fails loudly."""
    t0 = time.perf_counter()
    fw.ok(*argv, input=input)
    return time.perf_counter() - t0
