"""Benchmarks W1 (replay after every container moved) and W2 (add --from).

W1: 200 busybox containers, N recorded rules (500, 2,000, 8,000), every
container moved to a new address, then one ``docker-fw replay`` of all of
them.  Printed beside it: the floor, one ``iptables-restore --noflush`` of the
same final rules timed in the same run, and the ratio.
W1 with egress deny: the same, every container also locked ('egress NAME
deny': its lock and its DNS rules move with it), this checkout's code only.
W2: ``docker-fw add --from`` of a 1,000-line file (fresh store, rules absent).
With ``--baseline DIR`` (another checkout's src/) each workload is also run
with that code, right after this checkout's, in the same sandbox.  With
``--rounds N`` W1 and W2 run N times for each code, alternating, and the
median is printed with the spread: one run each is at the mercy of whatever
else the machine does at that moment.

Run as root from the repository: ``sudo .venv/bin/python -m bench.bench_replay``
(``--containers`` and ``--rules`` shrink it for a quick look).  Figures only:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import os
import statistics
import tempfile
import time

from bench.common import BASELINE_HELP, require_root, timed, variants
from tests.e2e.fw import Fw
from tests.harness.sandbox import Sandbox

CHAINS = ("DOCKER-FW-FORWARD", "DOCKER-FW-INPUT", "DOCKER-FW-INTERNAL", "DOCKER-FW-EGRESS")


def external_sources():
    """Distinct external addresses (documentation and benchmarking ranges)."""
    for net in ("203.0.113.0/24", "198.18.0.0/15"):
        yield from (str(a) for a in ipaddress.ip_network(net).hosts())


def rule_lines(names: list[str], count: int) -> list[str]:
    sources = external_sources()
    lines = []
    for i in range(count):
        name = names[i % len(names)]
        lines.append(f"{name} --source {next(sources)} --dport {1000 + i % 50}")
    return lines


class Bench:
    def __init__(self, sandbox: Sandbox, state_dir: str):
        self.sb = sandbox
        self.state_dir = state_dir

    def fw(self, *argv: str, input: str | None = None, env: dict | None = None) -> float:
        return timed(Fw(self.sb, self.state_dir), *argv, input=input, env=env)

    def our_rule_lines(self) -> list[str]:
        """The rules in docker-fw's chains (the shared 'docker-fw:replies' rule included)."""
        text = self.sb.engine_run(["iptables-save", "-t", "filter"]).stdout
        return [l for l in text.splitlines() if l.split(" ", 2)[:2] in (["-A", c] for c in CHAINS)]

    @staticmethod
    def owned(lines: list[str]) -> list[str]:
        """Those of our_rule_lines() that belong to a container (not the shared replies rule)."""
        return [l for l in lines if "docker-fw:replies" not in l]

    def floor(self, lines: list[str]) -> float:
        """One iptables-restore --noflush of the same rules into emptied chains."""
        present = self.sb.engine_run(["iptables-save", "-t", "filter"]).stdout.splitlines()
        flush = "*filter\n" + "".join(f"-F {c}\n" for c in CHAINS if f":{c} - [0:0]" in present) + "COMMIT\n"
        self.sb.engine_run(["iptables-restore", "--noflush"], input=flush)
        payload = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
        t0 = time.perf_counter()
        self.sb.engine_run(["iptables-restore", "--noflush"], input=payload)
        return time.perf_counter() - t0

    def nsenter_overhead(self) -> float:
        t0 = time.perf_counter()
        self.sb.engine_run(["true"])
        return time.perf_counter() - t0


def parallel(func, items, workers=8):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(func, items))


def move_all(sb: Sandbox, names: list[str]) -> None:
    """Give every container a new address: stop all, start them in reverse order
    behind one extra container that takes the first free address."""
    api = sb.client().api
    parallel(lambda n: api.stop(n, timeout=0), names)
    sb.docker("start", "bench-shift")
    for name in reversed(names):  # sequential: the address order is the point
        api.start(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--rules", type=int, nargs="*", default=[500, 2000, 8000],
                        help="W1's rule counts (default 500 2000 8000); none ('--rules' alone): W2 only")
    parser.add_argument("--from-lines", type=int, default=1000)
    parser.add_argument("--name", default="dfw-bench", help="sandbox name (default dfw-bench)")
    parser.add_argument("--baseline", metavar="DIR", help=BASELINE_HELP)
    parser.add_argument("--no-egress", action="store_true", help="skip W1 with egress deny on every container")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of W1 and W2 for each code, alternating (default 1); the median is printed")
    args = parser.parse_args()
    require_root()
    codes = variants(args.baseline)

    with Sandbox(name=args.name) as sb, tempfile.TemporaryDirectory() as tmp:
        api = sb.client().api
        names = [f"c{i:03d}" for i in range(args.containers)]
        t0 = time.perf_counter()

        def run(name):
            cid = api.create_container(sb.image, ["sleep", "100000"], name=name)["Id"]
            api.start(cid)

        parallel(run, names)
        api.create_container(sb.image, ["sleep", "100000"], name="bench-shift")
        print(f"setup: {len(names)} containers in {time.perf_counter() - t0:.1f} s")
        bench = Bench(sb, os.path.join(tmp, "state"))
        bench.fw("init")
        print(f"nsenter + process overhead: {bench.nsenter_overhead() * 1000:.0f} ms (included in docker-fw figures)")

        print("\nW1: replay of every container after all moved to new addresses")
        print(f"{'rules':>7} {'docker-fw':>10} {'floor':>8} {'ratio':>6} {'per 1k rules':>13}"
              + (f"  (median of {args.rounds}; min-max)" if args.rounds > 1 else ""))
        for count in args.rules:
            times: dict[str, list[float]] = {label: [] for label, _ in codes}
            floors: dict[str, list[float]] = {label: [] for label, _ in codes}
            for _ in range(args.rounds):
                for label, env in codes:
                    bench.state_dir = os.path.join(tmp, f"state-{count}{label.strip(' ()')}")
                    sb.docker("stop", "-t", "0", "bench-shift")
                    bench.fw("add", "--from", "-", input="\n".join(rule_lines(names, count)) + "\n", env=env)
                    move_all(sb, names)
                    times[label].append(bench.fw("replay", env=env))
                    lines = bench.our_rule_lines()
                    assert len(bench.owned(lines)) == count, (len(bench.owned(lines)), count)
                    floors[label].append(bench.floor(lines))
                    bench.fw("drop", *names, env=env)
            for label, _ in codes:
                elapsed, floor = statistics.median(times[label]), statistics.median(floors[label])
                spread = f"  {min(times[label]):.3f}-{max(times[label]):.3f}s" if args.rounds > 1 else ""
                print(f"{count:>7} {elapsed:>9.3f}s {floor:>7.3f}s {elapsed / floor:>6.1f} "
                      f"{elapsed / count * 1000:>12.3f}s{label}{spread}")
            if args.no_egress:
                continue
            # the same with every container locked (this checkout only: a
            # baseline may not know 'egress')
            bench.state_dir = os.path.join(tmp, f"state-{count}-egress")
            sb.docker("stop", "-t", "0", "bench-shift")
            bench.fw("add", "--from", "-", input="\n".join(rule_lines(names, count)) + "\n")
            for name in names:
                bench.fw("egress", name, "deny")
            move_all(sb, names)
            elapsed = bench.fw("replay")
            lines = bench.our_rule_lines()
            floor = bench.floor(lines)
            print(f"{count:>7} {elapsed:>9.3f}s {floor:>7.3f}s {elapsed / floor:>6.1f} "
                  f"{elapsed / count * 1000:>12.3f}s (egress deny on all {len(names)}: "
                  f"{len(bench.owned(lines))} rules in all, locks and DNS included)")
            bench.fw("drop", *names)

        print(f"\nW2: add --from of a {args.from_lines}-line file")
        times = {label: [] for label, _ in codes}
        floors = {label: [] for label, _ in codes}
        for _ in range(args.rounds):
            for label, env in codes:
                bench.state_dir = os.path.join(tmp, f"state-w2{label.strip(' ()')}")
                times[label].append(bench.fw("add", "--from", "-", input="\n".join(rule_lines(names, args.from_lines)) + "\n",
                                             env=env))
                floors[label].append(bench.floor(bench.our_rule_lines()))
                bench.fw("drop", *names, env=env)
        for label, _ in codes:
            elapsed, floor = statistics.median(times[label]), statistics.median(floors[label])
            spread = f"  {min(times[label]):.3f}-{max(times[label]):.3f}s" if args.rounds > 1 else ""
            print(f"{args.from_lines:>7} {elapsed:>9.3f}s {floor:>7.3f}s {elapsed / floor:>6.1f}{label}{spread}")


if __name__ == "__main__":
    main()
