"""Benchmark W4: latency from a container's start event to its rules being in place.

'docker-fw watch --json' logs, for every batch, ``latency_ms``: from the
engine's timestamp of the oldest event in the batch to the moment the batch
was applied (iptables-restore returned, hosts files written).  This restarts
one container (allowed from an external address, among 20 others holding 100
rules) 100 times and prints p50/p99/max of the start batches' latency, first
on a quiet engine, then while other containers churn (start/stop in a loop).

Run as root from the repository: ``sudo .venv/bin/python -m bench.bench_watch``.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench.common import require_root, timed
from tests.e2e.fw import Fw
from tests.harness.sandbox import Sandbox


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class WatchLog:
    def __init__(self, path: str):
        self.path = path
        self.offset = 0

    def new_entries(self) -> list[dict]:
        with open(self.path) as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind("\n") + 1]
        self.offset += len(complete.encode())
        return [json.loads(l) for l in complete.splitlines() if l.startswith("{")]

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.new_entries():
                if predicate(entry):
                    return entry
            time.sleep(0.005)
        raise SystemExit("watch did not log the expected batch in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=100)
    parser.add_argument("--name", default="dfw-bench4", help="sandbox name (default dfw-bench4)")
    args = parser.parse_args()
    require_root()
    with Sandbox(name=args.name) as sb, tempfile.TemporaryDirectory() as tmp:
        api = sb.client().api
        state = os.path.join(tmp, "state")
        env = dict(os.environ, DOCKER_HOST=sb.docker_host, DOCKER_FW_STATE_DIR=state)

        def fw(*argv: str, input: str | None = None) -> None:
            timed(Fw(sb, state), *argv, input=input)

        sb.run_server("web", ports=(80,), publish=("8080:80",))
        others = [f"o{i:02d}" for i in range(20)]
        for name in others:
            sb.run_server(name, ports=())
        churners = [f"churn{i}" for i in range(4)]
        for name in churners:
            sb.docker("create", "--name", name, sb.image, "sleep", "100000")
        fw("init")
        fw("allow", "web", "198.51.100.2")
        lines = [f"{n} --source 203.0.113.{i * 5 + j + 1} --dport 80" for i, n in enumerate(others) for j in range(5)]
        fw("add", "--from", "-", input="\n".join(lines) + "\n")

        log_path = os.path.join(tmp, "watch.log")
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(
                ["nsenter", f"--net={sb.netns_path}", sys.executable, "-m", "docker_fw",
                 "watch", "--json", "--interval", "60"],
                env=env, stdout=log_file, stderr=log_file,
            )
        log = WatchLog(log_path)
        try:
            log.wait_for(lambda e: e.get("reason") == "startup" and e["msg"].startswith("applied"))

            def measure(label: str) -> None:
                latencies = []
                for _ in range(args.restarts):
                    api.stop("web", timeout=0)
                    log.wait_for(lambda e: "die web" in e.get("events", ""))
                    api.start("web")
                    entry = log.wait_for(lambda e: "start web" in e.get("events", ""))
                    latencies.append(entry["latency_ms"])
                print(f"{label:<28} p50 {statistics.median(latencies):6.1f} ms   "
                      f"p99 {percentile(latencies, 99):6.1f} ms   max {max(latencies):6.1f} ms   (n={len(latencies)})")

            print(f"W4: start event -> rules in place, {args.restarts} restarts of one container "
                  f"(21 containers, {len(lines) + 1} rules)")
            measure("quiet engine")
            stop = threading.Event()

            def churn() -> None:
                while not stop.is_set():
                    for name in churners:
                        api.start(name)
                    for name in churners:
                        api.stop(name, timeout=0)

            thread = threading.Thread(target=churn, daemon=True)
            thread.start()
            try:
                measure("4 containers churning")
            finally:
                stop.set()
                thread.join()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
