"""End to end: a running 'docker-fw watch --metrics' scraped over HTTP in the engine's namespace.

The rule count it serves is the one iptables holds; a connection the
whitelist blocks (logged through a real ulogd2) is counted for its container;
a scraper that hangs does not keep SIGTERM from stopping watch.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)
from tests.e2e.test_blocklog_e2e import ulogd  # noqa: F401 (fixture)
from tests.e2e.test_watch_e2e import eventually, watch  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

METRICS = "127.0.0.1:9309"  # inside the engine's namespace: nobody else's port

_SCRAPE = """
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10) as answer:
    sys.stdout.write(answer.read().decode())
"""

# Opens a connection to the metrics port, sends half a request, and holds it
# until killed: a scraper that never finishes.
_HANG = """
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"GET /metrics HTTP/1.1\\r\\n")
print("hanging", flush=True)
time.sleep(120)
"""


def scrape(sandbox) -> str:
    return sandbox.engine_run([sys.executable, "-S", "-c", _SCRAPE, METRICS], timeout=30).stdout


def value(text: str, sample: str) -> float | None:
    for line in text.splitlines():
        name, _, number = line.rpartition(" ")
        if name == sample:
            return float(number)
    return None


def tagged_rules(fw) -> int:
    """docker-fw's rules in iptables, counted by the test itself: its chains, its tag."""
    return len([line for line in fw.rules_text().split("\n")
                if re.match(r"-A DOCKER-FW-(FORWARD|INPUT|INTERNAL) ", line)
                and re.search(r"--comment \"?docker-fw:[^:\s\"]+:[0-9a-f]{12}", line)])


def test_watch_serves_rule_counts_and_blocked_connections(sandbox, fw, web, watch, ulogd, monkeypatch):
    import subprocess

    monkeypatch.setenv("DOCKER_FW_BLOCKED_LOG", str(ulogd.json_path))
    sandbox.run_server("app", ports=(81,))
    fw.ok("init", "--log-blocked")
    fw.ok("allow", web, ALLOWED)
    fw.ok("add-internal", web, "--source=app", "--dport=80")
    watch.start("--metrics", METRICS)
    text = scrape(sandbox)
    in_iptables = tagged_rules(fw)
    assert in_iptables == 2
    assert value(text, 'docker_fw_rules{family="4"}') == in_iptables
    assert value(text, "docker_fw_recorded_rules") == len(fw.ok("ls").stdout.splitlines()) == 2
    assert value(text, 'docker_fw_batches_total{result="ok"}') >= 1
    assert value(text, "docker_fw_batch_seconds_count") >= 1

    # a rule withdrawn when app stops: the next batch's count says so
    sandbox.docker("stop", "-t", "0", "app")
    assert eventually(lambda: value(scrape(sandbox), 'docker_fw_rules{family="4"}') == 1), scrape(sandbox)
    assert tagged_rules(fw) == 1

    # a blocked connection, counted for web
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert eventually(
        lambda: (value(scrape(sandbox), 'docker_fw_blocked_connections_total{container="web"}') or 0) >= 1,
        timeout=20,
    ), scrape(sandbox)

    # a scraper that hangs does not hold SIGTERM back
    hanging = subprocess.Popen(["nsenter", f"--net={sandbox.netns_path}", sys.executable, "-S", "-c", _HANG, METRICS],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert hanging.stdout.readline().strip() == "hanging"
        watch.proc.terminate()
        assert watch.proc.wait(timeout=15) == 0
    finally:
        hanging.kill()
        hanging.wait()
        hanging.stdout.close()
    assert "metrics on http://127.0.0.1:9309/metrics" in watch.text()


def test_a_bad_metrics_address_is_refused_in_one_line(fw):
    result = fw.run("watch", "--metrics", "localhost:9309")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--metrics must be ADDR:PORT" in result.stderr
