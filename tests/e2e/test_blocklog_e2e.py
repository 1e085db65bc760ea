"""End to end: 'init --log-blocked' and 'docker-fw log', with real packets and a real ulogd2.

ulogd2 runs in the sandbox engine's network namespace with the contrib
configuration (tests/harness/ulogd.py), as contrib/docker-fw-ulogd.service
runs it on a host; the external clients' connections are dropped by the
whitelist, and must show up in 'docker-fw log' with the container's name,
at most a few lines for a flood.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from docker_fw.backends.iptables.logrules import CHAIN_LOG, HASHLIMIT
from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)
from tests.harness import ulogd as ulogd_harness

pytestmark = pytest.mark.e2e

FLOODER = "198.51.100.4"

# From the external namespace: COUNT connection attempts at once (non-blocking
# connects, each from its own port: each a NEW connection), then wait a little.
_FLOOD_SCRIPT = """
import socket, sys, time
dst, port, src, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks = []
for _ in range(count):
    s = socket.socket(); s.setblocking(False); s.bind((src, 0))
    s.connect_ex((dst, port)); socks.append(s)
time.sleep(1.0)
for s in socks: s.close()
print(len(socks))
"""


@pytest.fixture
def ulogd(sandbox, tmp_path):
    why = ulogd_harness.missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"end-to-end prerequisite missing under CI=true: {why}", pytrace=False)
        pytest.skip(why)
    with ulogd_harness.Ulogd(sandbox.netns_path, tmp_path / "ulogd") as running:
        yield running


def log_entries(fw, ulogd) -> list[dict]:
    result = fw.ok("log", "--json", env={"DOCKER_FW_BLOCKED_LOG": str(ulogd.json_path)})
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def wait_for(predicate, timeout: float = 15.0):
    """Poll (ulogd2 writes a logged packet within a second or two); the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.25)


def from_source(entries: list[dict], src: str) -> list[dict]:
    return [e for e in entries if e["src"] == src]


def test_blocked_connections_are_logged_with_the_containers_name(sandbox, fw, web, ulogd):
    fw.ok("init", "--log-blocked")
    fw.ok("allow", web, ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    entries = wait_for(lambda: from_source(log_entries(fw, ulogd), OTHER))
    assert entries, ulogd.json_path.read_text() if ulogd.json_path.exists() else "no log file"
    entry = entries[0]
    # after Docker's DNAT: the container's own address and port
    assert entry["container"] == "web" and entry["dest"] == sandbox.container_ip("web")
    assert entry["dport"] == 80 and entry["proto"] == "tcp" and entry["out"] == "docker0"
    assert entry["src_container"] is None
    assert sorted(entry) == ["container", "dest", "dport", "in", "out", "proto", "sport", "src",
                             "src_container", "time", "unix_time"]
    assert from_source(log_entries(fw, ulogd), ALLOWED) == []  # what the whitelist admits is not logged
    text = fw.ok("log", env={"DOCKER_FW_BLOCKED_LOG": str(ulogd.json_path)}).stdout.splitlines()
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z blocked 198\.51\.100\.3 -> web:80/tcp", line)
               for line in text), text
    # the setting is recorded: 'check' sees the rules in place, a plain init keeps them
    fw.ok("check")
    fw.ok("init")
    assert f"-A FORWARD -o docker0 -j {CHAIN_LOG}" in fw.rules_text()


def test_blocked_connections_between_containers_are_logged(sandbox, fw, web, ulogd):
    """icc disabled (the sandbox's engines): what no add-internal rule accepts meets
    Docker's drop, and the log names both containers."""
    sandbox.run_server("app", ports=(81,))
    sandbox.run_server("db", ports=(5432,))
    fw.ok("init", "--log-blocked")
    fw.ok("add-internal", "db", "--source=app", "--dport=5432")
    assert fw.container_connects("app", sandbox.container_ip("db"), 5432)
    assert not fw.container_connects("app", sandbox.container_ip("web"), 80)
    entries = wait_for(lambda: [e for e in log_entries(fw, ulogd) if e["src_container"] == "app"])
    assert entries, ulogd.json_path.read_text() if ulogd.json_path.exists() else "no log file"
    assert {(e["container"], e["dport"]) for e in entries} == {("web", 80)}  # not the flow that was allowed
    text = fw.ok("log", env={"DOCKER_FW_BLOCKED_LOG": str(ulogd.json_path)}).stdout
    assert re.search(r"Z blocked app -> web:80/tcp$", text, re.M), text


def log_jump_packets(sandbox) -> int:
    """Packets from outside that FORWARD sent to the logging chain (iptables' own counter)."""
    out = sandbox.engine_run(["iptables", "-L", "FORWARD", "-v", "-n", "-x"]).stdout
    # columns: pkts bytes target prot opt in out source destination
    return sum(int(words[0]) for words in map(str.split, out.splitlines())
               if len(words) > 6 and words[2] == CHAIN_LOG and words[5] == "*")


def test_a_flood_is_rate_limited(sandbox, fw, web, ulogd):
    fw.ok("init", "--log-blocked")
    before = log_jump_packets(sandbox)
    sent = sandbox.ext_run([sys.executable, "-S", "-c", _FLOOD_SCRIPT, sandbox.host_ip, PORT, FLOODER, 300]).stdout
    assert int(sent) == 300
    time.sleep(3)  # ulogd2 has written what it was given
    reached = log_jump_packets(sandbox) - before
    logged = from_source(log_entries(fw, ulogd), FLOODER)
    # every attempt met the logging rule (retries too), few were logged: the burst, and what the rate allows since
    assert reached >= 300
    burst = int(HASHLIMIT[1])
    assert 1 <= len(logged) <= burst + 2, len(logged)
    # another source has a bucket of its own
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert wait_for(lambda: from_source(log_entries(fw, ulogd), OTHER))


def test_follow_prints_new_blocks_and_stops_on_sigterm(sandbox, fw, web, ulogd):
    fw.ok("init", "--log-blocked")
    env = dict(os.environ, DOCKER_HOST=sandbox.docker_host, DOCKER_FW_STATE_DIR=fw.state_dir,
               DOCKER_FW_BLOCKED_LOG=str(ulogd.json_path))
    ulogd.json_path.touch()
    proc = subprocess.Popen(
        ["nsenter", f"--net={sandbox.netns_path}", sys.executable, "-m", "docker_fw", "log", "--follow"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1)
        assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
        line = lines.get(timeout=20)
        assert re.search(r" blocked 198\.51\.100\.3 -> web:80/tcp$", line), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_no_log_blocked_stops_logging(sandbox, fw, web, ulogd):
    fw.ok("init", "--log-blocked")
    fw.ok("init", "--no-log-blocked")
    assert f"-j {CHAIN_LOG}" not in fw.rules_text()
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    time.sleep(2.5)
    result = fw.run("log", "--json", env={"DOCKER_FW_BLOCKED_LOG": str(ulogd.json_path)})
    assert "not being logged: run 'docker-fw init --log-blocked'" in result.stderr
    if ulogd.json_path.exists():
        assert result.returncode == 0 and result.stdout == ""
    else:  # ulogd2 had nothing to write
        assert result.returncode == 4 and "no blocked-connection log at" in result.stderr
