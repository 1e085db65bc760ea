"""Single actions: whole-process latency of one docker-fw run.

A script that calls docker-fw once per rule pays Python's start-up, the
imports and the engine round trips on every call.  This times, as whole
processes in the sandbox engine's namespace (``nsenter`` included, as for the
other benchmarks) started the way users start it, by the ``docker-fw`` script
that pip installs (not ``python -m``, which loads runpy too), over --runs
rounds:

- ``python -c pass``: the interpreter floor, started the same way;
- ``docker-fw --help``;
- ``docker-fw ls`` (the store only);
- ``docker-fw check`` (engine, iptables-save and ip6tables-save, store);
- ``docker-fw add C --source A --dport 80``: one new rule each round;
- ``docker-fw replay``: a no-op replay of every recorded rule.

Rounds interleave the workloads, so load from other processes on the machine
spreads over all of them alike: the ratios to the floor, measured in the same
run, say more than the absolute figures on a shared machine.  So does the
'cpu' column (user and system time of docker-fw and its iptables processes,
not the engine's).  With ``--baseline DIR`` (the ``src`` directory of another
checkout, e.g. ``git worktree add /tmp/base main``: /tmp/base/src) every
round also runs each action with that code (PYTHONPATH=DIR, same store, same
engine) and the table shows both and their ratio: before and after in one run.

The setup is the issue's no-op replay: --containers running containers
(default 40) with two rules each, after 'init'.  docker-fw's modules are
compiled to bytecode first, as 'pip install .' does (the test VM sets
PYTHONDONTWRITEBYTECODE=1).

Run as root from the repository: ``sudo .venv/bin/python -m bench.bench_single``
(``--engine 28`` for the unpacked 28.x engine).  Figures only: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import statistics
import sys
import tempfile
import time

from bench.common import BASELINE_HELP, require_root, variants
from tests.e2e.fw import Fw
from tests.harness.engines import engine28
from tests.harness.sandbox import Sandbox

# The latency targets of issue #10 (median, seconds).
TARGETS = {"add": 0.12, "replay": 0.12, "ls": 0.06}
FLOOR = "python -c pass"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (as bench_watch reports)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=25, help="rounds (default 25)")
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--engine", choices=("20.10", "28"), default="20.10")
    parser.add_argument("--baseline", metavar="DIR", help=BASELINE_HELP)
    parser.add_argument("--name", default="dfw-bench1", help="sandbox name (default dfw-bench1)")
    args = parser.parse_args()
    require_root()
    codes = variants(args.baseline)
    kwargs = {}
    if args.engine == "28":
        eng = engine28()
        if eng.missing():
            raise SystemExit(eng.missing())
        kwargs = eng.sandbox_kwargs()

    with Sandbox(name=args.name, **kwargs) as sb, tempfile.TemporaryDirectory() as tmp:
        api = sb.client().api
        names = [f"c{i:03d}" for i in range(args.containers)]
        for name in names:
            api.start(api.create_container(sb.image, ["sleep", "100000"], name=name)["Id"])
        script = os.path.join(os.path.dirname(sys.executable), "docker-fw")
        if not os.access(script, os.X_OK):
            raise SystemExit(f"{script} not found: pip install -e . first")
        fw = Fw(sb, os.path.join(tmp, "state"), command=(script,))
        fw.ok("init")
        rules = [f"{n} --source 203.0.113.{i % 250 + 1} --dport {p}" for i, n in enumerate(names) for p in (80, 443)]
        fw.ok("add", "--from", "-", input="\n".join(rules) + "\n")
        sources = (str(a) for a in ipaddress.ip_network("198.18.0.0/15").hosts())

        actions = {
            "--help": lambda: ("--help",),
            "ls": lambda: ("ls",),
            "check": lambda: ("check",),
            "add": lambda: ("add", names[0], "--source", next(sources), "--dport", "80"),
            "replay": lambda: ("replay",),
        }
        workloads = {FLOOR: lambda: sb.engine_run([sys.executable, "-c", "pass"])}
        for label, env in codes:
            for name, argv in actions.items():
                workloads[name + label] = lambda argv=argv, env=env: fw.ok(*argv(), env=env)
        for func in workloads.values():  # warm the page cache and the engine
            func()
        t0 = time.perf_counter()
        sb.engine_run(["true"])
        nsenter = time.perf_counter() - t0
        load_before = load()
        times: dict[str, list[float]] = {name: [] for name in workloads}
        cpu: dict[str, list[float]] = {name: [] for name in workloads}
        for _ in range(args.runs):
            for name, func in workloads.items():
                cpu0, t0 = children_cpu(), time.perf_counter()
                func()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(children_cpu() - cpu0)

        print(f"engine {args.engine} ({sb.client().version()['Version']}), {len(names)} containers, "
              f"{len(rules)} rules recorded before the add rounds; {args.runs} rounds")
        print("docker-fw compiled to bytecode" + (f"; baseline: {args.baseline}" if args.baseline else ""))
        print(f"load average before/after: {load_before} / {load()} ({os.cpu_count()} CPUs)")
        print(f"nsenter + 'true': {nsenter * 1000:.0f} ms (included in every figure)\n")
        floor = statistics.median(times[FLOOR])
        header = f"{'workload':<14} {'median':>8} {'p90':>8} {'x floor':>8} {'cpu':>7} {'target':>7}"
        print(header + ("   baseline median    p90    cpu  speed-up" if args.baseline else ""))
        for name in [FLOOR, *actions]:
            median = statistics.median(times[name])
            target = f"{TARGETS[name]:.2f}s" if name in TARGETS else ""
            line = (f"{name:<14} {median:>7.3f}s {percentile(times[name], 90):>7.3f}s {median / floor:>8.1f} "
                    f"{statistics.median(cpu[name]):>6.3f}s {target:>7}")
            base = name + codes[-1][0]
            if args.baseline and name != FLOOR:
                before = statistics.median(times[base])
                line += (f"   {before:>14.3f}s {percentile(times[base], 90):>5.3f}s "
                         f"{statistics.median(cpu[base]):>5.3f}s {before / median:>8.1f}x")
            print(line)


if __name__ == "__main__":
    main()
