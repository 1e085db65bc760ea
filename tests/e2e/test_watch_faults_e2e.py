"""End to end: 'watch' under a SIGHUP storm, and with the engine gone for a while (issue #9)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from docker_fw.watch import SIGHUP_SPACING
from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)
from tests.e2e.test_watch_e2e import allowed_only, eventually, watch  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

STORM = 10_000  # SIGHUPs, as fast as os.kill sends them (2,000 rarely broke the old watch)
OUTAGE = 5.0  # seconds the engine stays away
LINES_BOUND = 12  # log lines over the outage (the fault: ~900 in a minute)
CPU_BOUND = 1.0  # CPU seconds over the outage (the fault: half a core per second, and more)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        stat = handle.read()
    fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(watch) -> list[str]:
    with open(watch.log_path) as handle:
        return handle.read().splitlines()


def applied(watch, reason: str) -> list[dict]:
    return [e for e in watch.entries() if e.get("reason") == reason and e["msg"].startswith("applied")]


def test_a_sighup_storm_leaves_watch_working_and_sigterm_stops_it(sandbox, fw, web, watch):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    started = time.monotonic()
    for _ in range(STORM):
        os.kill(watch.proc.pid, signal.SIGHUP)
    storm = time.monotonic() - started
    assert eventually(lambda: applied(watch, "SIGHUP")), watch.text()
    assert watch.proc.poll() is None, watch.text()

    # still following the engine: web restarts elsewhere, its rule follows it
    sandbox.move("web")
    assert eventually(lambda: allowed_only(sandbox), timeout=15), watch.text()

    # coalesced: one full reconcile per SIGHUP_SPACING at most, not one per signal
    assert len(applied(watch, "SIGHUP")) <= 2 + storm / SIGHUP_SPACING, watch.text()
    watch.proc.send_signal(signal.SIGTERM)
    assert watch.proc.wait(timeout=10) == 0, watch.text()
    assert "Traceback" not in watch.text()
    assert [e["msg"] for e in watch.entries()].count("stopped") == 1


def test_the_engine_going_away_under_watch(sandbox, fw, watch):
    fw.ok("init")
    sandbox.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--restart=always",))
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    pid = watch.proc.pid
    assert open(f"/proc/{pid}/comm").read().startswith("python")  # nsenter exec'd: this is watch
    try:
        sandbox.stop_engine()
        seen, cpu = len(log_lines(watch)), cpu_seconds(pid)
        time.sleep(OUTAGE)  # an observation window: nothing here asserts a time
        cpu, during = cpu_seconds(pid) - cpu, log_lines(watch)[seen:]
        assert watch.proc.poll() is None, watch.text()
    finally:
        if not sandbox.running():
            sandbox.start_engine()
    assert len(during) <= LINES_BOUND, "\n".join(during)
    assert cpu < CPU_BOUND, f"{cpu:.2f} s of CPU in {OUTAGE:g} s with the engine away"
    assert any("cannot reach the Docker engine" in line for line in during), "\n".join(during)

    # back: reconnected (said once), then everything reconciled: init again, web's rule at its address
    assert eventually(lambda: sandbox.docker("inspect", "-f", "{{.State.Running}}", "web",
                                             check=False).stdout.strip() == "true", timeout=30)
    sandbox.wait_listening("web", 80)
    assert eventually(lambda: allowed_only(sandbox), timeout=20), watch.text()
    assert fw.catch_all() not in fw.rules_text()
    back = [e for e in watch.entries() if e["msg"].startswith("reconnected to the engine after ")]
    assert len(back) == 1, watch.text()
    assert applied(watch, "reconnected to the engine"), watch.text()
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER, timeout=1)
