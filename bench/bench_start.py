"""Benchmark W3: 'docker-fw start' of 50 stopped containers in a dependency DAG.

Four levels (links and --volumes-from): 10 roots, 20 linking to roots, 15
linking to those, 5 taking volumes from them.  Printed in one run: plain
sequential ``docker start`` of the same containers in dependency order (one
CLI process, as an admin's boot script would), ``docker-fw start`` (which
also replays each container's rules right after it starts; every container
has two recorded rules), and ``docker-fw start --jobs 4`` (independent
branches at once).

Run as root from the repository: ``sudo .venv/bin/python -m bench.bench_start``.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import tempfile
import time

from bench.common import require_root, timed
from tests.e2e.fw import Fw
from tests.harness.sandbox import Sandbox


def dag(scale: int) -> dict[str, list[str]]:
    """name -> dependencies (links for levels 1-2, volumes-from for level 3)."""
    levels = [[f"l0-{i:02d}" for i in range(2 * scale)]]
    levels.append([f"l1-{i:02d}" for i in range(4 * scale)])
    levels.append([f"l2-{i:02d}" for i in range(3 * scale)])
    levels.append([f"l3-{i:02d}" for i in range(1 * scale)])
    deps: dict[str, list[str]] = {n: [] for n in levels[0]}
    for depth in (1, 2, 3):
        below = levels[depth - 1]
        for i, name in enumerate(levels[depth]):
            deps[name] = sorted({below[i % len(below)], below[(i * 7 + 3) % len(below)]})
    return deps


def order_of(deps: dict[str, list[str]]) -> list[str]:
    done: list[str] = []
    while len(done) < len(deps):
        for name, needs in deps.items():
            if name not in done and all(d in done for d in needs):
                done.append(name)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=5, help="5 gives 50 containers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_root()
    deps = dag(args.scale)
    order = order_of(deps)
    with Sandbox(name="dfw-bench3") as sb, tempfile.TemporaryDirectory() as tmp:
        api = sb.client().api
        for name in order:
            flags = []
            for dep in deps[name]:
                flags += ["--volumes-from", dep] if name.startswith("l3") else ["--link", f"{dep}:{dep}"]
            sb.docker("create", "--name", name, "--expose", "80", *flags, sb.image, "sleep", "100000")
        runner = Fw(sb, os.path.join(tmp, "state"))

        def fw(*argv: str, input: str | None = None) -> float:
            return timed(runner, *argv, input=input)

        def stop_all() -> None:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: api.stop(n, timeout=0), order))

        # Record two rules per container (they need the containers running).
        sb.docker("start", *order)
        fw("init")
        lines = [f"{n} --source 203.0.113.{i % 250 + 1} --dport 80" for i, n in enumerate(order)]
        lines += [f"{n} --source 198.18.{i // 250}.{i % 250 + 1} --dport 80" for i, n in enumerate(order)]
        fw("add", "--from", "-", input="\n".join(lines) + "\n")

        print(f"W3: start of {len(order)} stopped containers in a 4-level DAG, {len(lines)} rules recorded")
        print(f"{'round':>5} {'docker start':>13} {'docker-fw start':>16} {'ratio':>6} {'--jobs 4':>9} {'ratio':>6}")
        for round_ in range(1, args.rounds + 1):
            stop_all()
            t0 = time.perf_counter()
            sb.docker("start", *order)
            plain = time.perf_counter() - t0
            stop_all()
            seq = fw("start", *order)
            stop_all()
            par = fw("start", "--jobs", "4", *order)
            print(f"{round_:>5} {plain:>12.2f}s {seq:>15.2f}s {seq / plain:>6.2f} {par:>8.2f}s {par / plain:>6.2f}")
        # Exits non-zero (and stops the benchmark) if a start left rules undone.
        fw("replay", "--dry-run")


if __name__ == "__main__":
    main()
