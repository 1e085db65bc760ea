"""End to end: SIGKILL in the middle of a batch leaves all of it or none of it.

``docker-fw add --from`` a 2,000-line file (rules for four containers) is
killed with SIGKILL at several points: when its iptables-restore child is
seen (the batch is in flight), and after a few delays (resolving, planning,
recording).  After each kill:

- of that batch's rules either all are live or none (iptables-save), and
  either all are recorded or none ('docker-fw ls'); recorded implies live
  (the store commits only after the kernel took the batch);
- the store opens fine ('ls' exits 0);
- 'check' reports at most what 'replay' repairs (rules live but not recorded
  are "stale"), and after 'replay' it is clean, with live == recorded.

No timed assertion: where the kill lands is only recorded, never required.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.fw import baseline_filter, fw  # noqa: F401 (fixtures)
from tests.harness.sandbox import _env

pytestmark = pytest.mark.e2e

CONTAINERS = ("kill0", "kill1", "kill2", "kill3")
LINES = 2000
# When each attempt is killed: when its iptables-restore is seen running, when
# that has just exited (the kernel may hold the batch, the store not yet), or
# after a delay (seconds) from the start.
KILL_POINTS = ("restore", "restored", 0.05, 0.5)
WAIT_STEPS = 600  # bound of every wait loop below (steps of 0.05 s)


def batch_file(path, attempt: int) -> str:
    """LINES rules, round robin over CONTAINERS, each attempt with its own ports."""
    lines = [
        f"{CONTAINERS[i % len(CONTAINERS)]} --source 203.0.113.{i % 250 + 1} --dport {10000 + attempt * LINES + i}"
        for i in range(LINES)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _net_ns(pid: int | str) -> str:  # e.g. 'net:[4026532281]'
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def restores_running(netns: str) -> list[int]:
    """iptables-restore processes in the engine's namespace (orphans of a kill too)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _comm(int(entry)).startswith(("iptables-restor", "ip6tables-resto")):
            if _net_ns(entry) == netns:
                found.append(int(entry))
    return found


def start_add(sandbox, state_dir: str, path: str) -> subprocess.Popen:
    env = _env({"DOCKER_HOST": sandbox.docker_host, "DOCKER_FW_STATE_DIR": state_dir})
    # nsenter (without --pid) execs the command: the pid is docker-fw's own.
    return subprocess.Popen(
        ["nsenter", f"--net={sandbox.netns_path}", sys.executable, "-m", "docker_fw", "add", "--from", path],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def kill_at(proc: subprocess.Popen, point) -> str:
    """SIGKILL PROC at POINT; what it was doing then ('restore', 'restored',
    'early') or 'done' when it finished first."""
    if point in ("restore", "restored"):
        restore = None
        while proc.poll() is None and restore is None:
            restore = next((c for c in _children(proc.pid) if _comm(c).startswith("iptables-restor")), None)
            time.sleep(0.001)  # leave the CPU to docker-fw (2 cores are shared)
        if point == "restored":  # until it is no child any more: it exited and was reaped
            while proc.poll() is None and restore in _children(proc.pid):
                time.sleep(0.001)
    else:
        try:
            proc.wait(timeout=point)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is not None:
        return "done"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return "early" if isinstance(point, float) else point


def ours(fw) -> list[str]:
    """Rules of CONTAINERS live in the engine namespace."""
    return [line for line in fw.rules_text().splitlines()
            if any(f"docker-fw:{name}:" in line for name in CONTAINERS)]


def test_sigkill_mid_batch_leaves_all_of_it_or_none(sandbox, fw, tmp_path):
    fw.ok("init")
    for name in CONTAINERS:
        sandbox.run_server(name, ports=())
    netns = f"net:[{os.stat(sandbox.netns_path).st_ino}]"  # as /proc/PID/ns/net reads
    outcomes = []
    for attempt, point in enumerate(KILL_POINTS):
        before_live, before_recorded = len(ours(fw)), len(fw.ok("ls").stdout.splitlines())
        proc = start_add(sandbox, fw.state_dir, batch_file(tmp_path / f"batch{attempt}.txt", attempt))
        where = kill_at(proc, point)
        # A restore the kill orphaned finishes (or fails) on its own: wait for it.
        for _ in range(WAIT_STEPS):
            if not restores_running(netns):
                break
            time.sleep(0.05)
        live = len(ours(fw)) - before_live
        listed = fw.run("ls")
        assert listed.returncode == 0 and listed.stderr == "", listed  # the store opens fine
        recorded = len(listed.stdout.splitlines()) - before_recorded
        outcomes.append((point, where, proc.returncode, live, recorded))
        assert live in (0, LINES), outcomes
        assert recorded in (0, LINES), outcomes
        assert not (recorded and not live), f"recorded but not live: {outcomes}"

        check = fw.run("check")
        problems = check.stdout.splitlines()
        if live == recorded:
            assert (check.returncode, problems) == (0, ["check: no drift"]), check
        else:
            assert check.returncode == 1, check
            assert len(problems) == live and all(p.startswith("stale (") for p in problems), problems[:3]
        fw.ok("replay")
        assert fw.ok("check").stdout.splitlines() == ["check: no drift"]
        assert len(ours(fw)) == len(fw.ok("ls").stdout.splitlines())
    print("SIGKILL outcomes (point, when, exit, live, recorded):", outcomes)
