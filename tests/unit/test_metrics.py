"""watch --metrics: the address allow-list, what a batch adds, the server's thread.

The server is the real prometheus_client one, on 127.0.0.1, scraped over
HTTP; tests/e2e/test_metrics_e2e.py scrapes a running 'docker-fw watch'.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from docker_fw import cli, metrics
from docker_fw.backends.iptables.reconcile import Change
from docker_fw.errors import FirewallError, UsageError
from docker_fw.transaction import Plan


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9101", ("127.0.0.1", 9101)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:9101", ("::1", 9101)),
    ("[2001:DB8::1]:65535", ("2001:db8::1", 65535)),
])
def test_listen_addresses_taken(text, expected):
    assert metrics.parse_listen(text) == expected


@pytest.mark.parametrize("text", [
    "localhost:9101", "example.com:80", ":9101", "9101", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
    "127.0.0.1:+80", "127.0.0.1: 80", "::1:9101", "[127.0.0.1]:80", "[::1:80", "1.2.3:80", "127.0.0.1:080000",
    "[fe80::1%eth0]:80", "[::1]:٩١", "0x7f.0.0.1:80",
])
def test_listen_addresses_refused_with_one_line(text):
    with pytest.raises(UsageError) as caught:
        metrics.parse_listen(text)
    assert "\n" not in str(caught.value) and "--metrics must be ADDR:PORT" in str(caught.value)


def test_cli_refuses_a_bad_address_before_anything_runs(capsys):
    assert cli.run(["watch", "--metrics", "localhost:9101"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--metrics must be ADDR:PORT" in err


class _Runner:
    """Stands in for backends.iptables.process.Iptables (its save()): a table, or absent."""

    def __init__(self, text: str | None):
        self.text = text

    def save(self, table: str = "filter"):
        from docker_fw.backends.iptables.process import parse_save

        if self.text is None:
            raise FirewallError("ip6tables-save not found")
        return parse_save(self.text)


class _Watcher:
    """What Metrics.applied reads of a watch.Watcher: its firewalls and engine."""

    def __init__(self, snapshot):
        self.firewall = _Runner(
            "*filter\n:DOCKER-FW-FORWARD - [0:0]\n"
            "-A DOCKER-FW-FORWARD -s 198.51.100.2/32 -d 172.17.0.2/32 -m comment --comment docker-fw:web:0123456789ab -j DOCKER\n"
            "-A DOCKER-FW-FORWARD -s 198.51.100.9/32 -m comment --comment someone-else -j ACCEPT\nCOMMIT\n")
        self.firewall6 = _Runner(None)
        self._snapshot = snapshot

        class Engine:
            def snapshot(inner, refresh=False):
                return snapshot
        self.engine = Engine()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_batch_is_counted_and_served_over_http(tmp_path, monkeypatch):
    from dfw_samples import snapshot

    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    log = tmp_path / "blocked.json"
    log.write_text("")
    measured = metrics.Metrics(blocked_log=str(log))
    plan = Plan()
    plan.extend([Change("-A DOCKER-FW-FORWARD -s 198.51.100.2/32 -j DOCKER", "web"), Change("-D DOCKER-FW-FORWARD 3", "web")])
    measured.applied(_Watcher(snapshot()), plan, 0.04, full=True)
    measured.failed(0.2)
    server = metrics.Server(measured, "127.0.0.1", _free_port())
    try:
        # a blocked connection to web (172.17.0.2) and one to an address no container holds
        with open(log, "a") as handle:
            for dest in ("172.17.0.2", "10.9.9.9"):
                handle.write(json.dumps({"oob.prefix": "docker-fw-blocked", "src_ip": "198.51.100.3",
                                         "dest_ip": dest, "ip.protocol": 6, "dest_port": 80, "src_port": 4000,
                                         "oob.time.sec": 1_700_000_000, "oob.time.usec": 0}) + "\n")
        text = scrape(server.httpd.server_port)
    finally:
        server.close()
    assert 'docker_fw_rules{family="4"} 1.0' in text  # the tagged rule only, not someone else's
    assert 'family="6"' not in text  # no ip6tables here
    assert 'docker_fw_rule_changes_total{verb="add"} 1.0' in text
    assert 'docker_fw_rule_changes_total{verb="delete"} 1.0' in text
    assert "docker_fw_repairs_total 2.0" in text
    assert 'docker_fw_batches_total{result="ok"} 1.0' in text and 'docker_fw_batches_total{result="failed"} 1.0' in text
    assert "docker_fw_batch_seconds_count 2.0" in text
    assert 'docker_fw_batch_seconds_bucket{le="0.05"} 1.0' in text
    assert 'docker_fw_blocked_connections_total{container="web"} 1.0' in text
    assert 'docker_fw_blocked_connections_total{container=""} 1.0' in text
    assert "docker_fw_recorded_rules 0.0" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _blocked_signals(thread_id: int) -> int:
    with open(f"/proc/self/task/{thread_id}/status") as handle:
        line = next(l for l in handle if l.startswith("SigBlk:"))
    return int(line.split()[1], 16)


def test_the_server_thread_blocks_watchs_signals_and_stops_promptly_with_a_client_hanging():
    import signal

    server = metrics.Server(metrics.Metrics(), "127.0.0.1", _free_port())
    hanging = socket.create_connection(("127.0.0.1", server.httpd.server_port), timeout=5)
    hanging.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
    try:
        mask = _blocked_signals(server.thread.native_id)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            assert mask & (1 << (signum - 1)), f"the server thread takes signal {signum}"
        assert server.thread.daemon
        started = time.monotonic()
        server.close()
        assert not server.thread.is_alive() or time.monotonic() - started < 6
    finally:
        hanging.close()
    assert not server.thread.is_alive()


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(UsageError) as caught:
            metrics.Server(metrics.Metrics(), "127.0.0.1", taken.getsockname()[1])
    assert "cannot listen there" in str(caught.value) and "\n" not in str(caught.value)


def test_watch_stays_up_when_a_metric_fails(monkeypatch):
    from docker_fw import watch

    warned = []

    class Broken:
        def applied(self, *args, **kwargs):
            raise RuntimeError("boom")

    fake = type("W", (), {"metrics": Broken(), "_warn_once": lambda self, m: warned.append(m)})()
    watch.Watcher._measure(fake, watch.Pending(), Plan(), 0.1)
    assert warned and "metrics: RuntimeError: boom" in warned[0]
    assert threading.active_count() >= 1
