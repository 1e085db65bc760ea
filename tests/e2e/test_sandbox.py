"""The sandbox itself: engine in its own namespace, external clients, clean teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import SYSTEM_ENGINE, only_on
from tests.harness.sandbox import NETNS_DIR, Sandbox

pytestmark = pytest.mark.e2e

# The harness's own tests: one engine is enough (its 20.10 layout is asserted).
on_system_engine = only_on(SYSTEM_ENGINE)

ALLOWED, OTHER = "198.51.100.2", "198.51.100.3"


@pytest.fixture
def sb(sandbox):
    sandbox.reset()
    yield sandbox
    sandbox.reset()


def _leftovers(box: Sandbox) -> dict:
    """What a stopped sandbox must not leave: namespaces, processes, mounts, its dir."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    procs = subprocess.run(["pgrep", "-a", "dockerd|containerd"], capture_output=True, text=True).stdout
    with open("/proc/mounts") as f:
        mounts = [l for l in f if box.base_dir in l or box.engine_netns in l or box.ext_netns in l]
    return {
        "netns": [l for l in netns.splitlines() if l.split()[0] in (box.engine_netns, box.ext_netns)],
        "processes": [l for l in procs.splitlines() if box.base_dir in l],
        "pids": box.leftover_pids(),
        "mounts": mounts,
        "base_dir": os.path.exists(box.base_dir),
    }


@on_system_engine
def test_image_runs_busybox_applets(sb):
    out = sb.docker("run", "--rm", "--name", "img", sb.image, "sh", "-c", "echo hi; hostname; ls /bin/nc").stdout
    assert out.splitlines()[0] == "hi"
    assert "/bin/nc" in out


@on_system_engine
def test_engine_lives_in_its_own_namespace(sb):
    links = sb.engine_run(["ip", "-o", "link"]).stdout
    assert "docker0" in links and sb.engine_if in links
    assert sb.engine_run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    rules = sb.iptables_save("filter")
    assert ":FORWARD DROP" in rules  # dockerd turned ip_forward on itself
    assert "-A FORWARD -i docker0 -o docker0 -j DROP" in rules  # --icc=false
    routes = sb.ext_run(["ip", "route"]).stdout
    assert f"default via {sb.host_ip}" in routes
    addrs = sb.ext_run(["ip", "-o", "-4", "addr", "show", sb.ext_if]).stdout
    assert all(f"{ip}/24" in addrs for ip in sb.ext_ips)


@on_system_engine
def test_published_port_is_open_to_every_external_client(sb):
    cid = sb.run_server("web", ports=(80,), publish=("8080:80",))
    assert len(cid) == 64
    for src in (ALLOWED, OTHER):
        assert sb.ext_connect(sb.host_ip, 8080, src)
        assert sb.ext_fetch(sb.host_ip, 8080, src) == "web\n"
    assert "--dport 8080 -j DNAT" in sb.iptables_save("nat")


@on_system_engine
def test_ext_connect_uses_the_chosen_source_address(sb):
    code = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(({sb.host_ip!r}, 9099)); s.listen(8)\n"
        "while True:\n"
        "    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()\n"
    )
    server = subprocess.Popen(["nsenter", f"--net={sb.netns_path}", sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while "9099" not in sb.engine_run(["ss", "-Hltn", "sport = :9099"]).stdout:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.05)
        for src in sb.ext_ips:
            assert sb.ext_fetch(sb.host_ip, 9099, src) == src
    finally:
        server.kill()
        server.wait()


@on_system_engine
def test_ext_connect_is_false_for_closed_and_filtered_ports(sb):
    sb.run_server("web", ports=(80, 81), publish=("8080:80",))
    t0 = time.monotonic()
    assert not sb.ext_connect(sb.host_ip, 8081, ALLOWED, timeout=2.0)  # refused
    assert time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    # Routed straight to the container, unpublished: FORWARD's DROP policy eats the SYN.
    assert not sb.ext_connect(sb.container_ip("web"), 81, ALLOWED, timeout=1.0)
    assert time.monotonic() - t0 < 1.0 + 1.5


@on_system_engine
def test_run_server_answers_after_a_container_restart(sb):
    sb.run_server("web", ports=(80,), publish=("8080:80",))
    t0 = time.monotonic()
    sb.docker("stop", "-t", "5", "web")
    assert time.monotonic() - t0 < 4, "the server's shell should exit on SIGTERM"
    assert not sb.ext_connect(sb.host_ip, 8080, ALLOWED, timeout=1.0)
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    assert sb.ext_fetch(sb.host_ip, 8080, ALLOWED) == "web\n"


@on_system_engine
def test_containers_talk_over_nc(sb):
    """The busybox nc patterns tests rely on: server by name over a link, plain listener."""
    # With --icc=false a link opens only the target's *exposed* ports (published ones are).
    sb.run_server("srv", ports=(80,), extra_args=("--expose", "80"))
    sb.docker("run", "-d", "--name", "cl", "--link", "srv:srv", sb.image, "sleep", "1000")
    out = sb.docker("exec", "cl", "sh", "-c", "nc -w 2 srv 80 </dev/null").stdout
    assert out == "srv\n"  # --link opens the way despite --icc=false
    out = sb.receive_once(
        "cl", 1025, lambda: sb.docker("exec", "cl", "sh", "-c", "echo 'hello there' | nc 127.0.0.1 1025")
    )
    assert out == "hello there\n"
    # No link, --icc=false: blocked.
    sb.run_server("other", ports=())
    result = sb.docker("exec", "other", "sh", "-c", f"nc -w 1 {sb.container_ip('srv')} 80 </dev/null", check=False)
    assert result.stdout == ""


@on_system_engine
def test_snapshot_and_restore_filter(sb):
    before = sb.snapshot_filter()
    sb.engine_run(["iptables", "-N", "SANDBOX-TEST"])
    sb.engine_run(["iptables", "-I", "DOCKER-USER", "-j", "SANDBOX-TEST"])
    assert "SANDBOX-TEST" in sb.snapshot_filter()
    sb.restore_filter(before)
    assert "SANDBOX-TEST" not in sb.snapshot_filter()


@on_system_engine
def test_reset_removes_containers_and_networks(sb):
    sb.run_server("one", ports=(80,))
    sb.docker("create", "--name", "two", "-v", "/data", sb.image, "true")
    sb.docker("network", "create", "extra")
    sb.reset()
    assert sb.docker("ps", "-aq").stdout.strip() == ""
    assert "extra" not in sb.docker("network", "ls", "--format", "{{.Name}}").stdout.split()


@on_system_engine
def test_restart_engine_keeps_containers_and_image(sb):
    sb.run_server("web", ports=(80,), publish=("8080:80",))
    pid_before = sb.status()["dockerd_pid"]
    sb.restart_engine()
    assert sb.status()["dockerd_pid"] != pid_before
    assert sb.docker("inspect", "-f", "{{.State.Running}}", "web").stdout.strip() == "false"
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    assert sb.ext_connect(sb.host_ip, 8080, OTHER)
    assert ":FORWARD DROP" in sb.iptables_save("filter")


def test_start_cleans_up_a_crashed_sandbox_and_stop_leaves_nothing():
    first = Sandbox(name="dfw-e2e-t")
    first.start()
    try:
        first.run_server("web", ports=(80,), publish=("8080:80",))
        helper = subprocess.Popen(["nsenter", f"--net={first.ext_netns_path}", "sleep", "600"])
        assert helper.pid in first.leftover_pids()
        # A crash: dockerd dies without cleaning up after itself.
        os.kill(first.status()["dockerd_pid"], signal.SIGKILL)
        second = Sandbox(name="dfw-e2e-t")
        second.start()  # tears the leftovers down first
        helper.wait(timeout=10)
        assert second.docker("ps", "-aq").stdout.strip() == ""
        second.run_server("web", ports=(80,), publish=("8080:80",))
        assert second.ext_connect(second.host_ip, 8080, ALLOWED)
        assert os.path.exists(f"{NETNS_DIR}/dfw-e2e-t-eng")
    finally:
        first.stop()
    assert _leftovers(first) == {"netns": [], "processes": [], "pids": [], "mounts": [], "base_dir": False}
    first.stop()  # idempotent
