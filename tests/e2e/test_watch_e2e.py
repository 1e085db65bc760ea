"""End to end: 'watch' keeps rules following containers by itself; 'check' and 'gc'."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

def eventually(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:
    """Poll until predicate() is true (no timing is asserted: the benchmark measures latency)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Watch:
    def __init__(self, sandbox, fw, log_path):
        self.sandbox, self.fw, self.log_path = sandbox, fw, log_path
        self.proc = None

    def start(self, *options: str) -> "Watch":
        env = dict(os.environ, DOCKER_HOST=self.sandbox.docker_host, DOCKER_FW_STATE_DIR=self.fw.state_dir)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.sandbox.netns_path}", sys.executable, "-m", "docker_fw",
             "watch", "--interval", "1", "--json", *options],
            env=env, stdout=self.log, stderr=self.log,
        )
        self.skip = len(self.entries())
        # The startup reconcile is logged even when it changes nothing.
        assert eventually(
            lambda: any(e.get("reason") == "startup" and e["msg"].startswith("applied")
                        for e in self.entries()[self.skip:])
        ), self.text()
        return self

    def entries(self) -> list[dict]:
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as handle:
            return [json.loads(line) for line in handle if line.startswith("{")]

    def text(self) -> str:
        with open(self.log_path) as handle:
            return handle.read()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.proc = None


@pytest.fixture
def watch(sandbox, fw, tmp_path):
    w = Watch(sandbox, fw, tmp_path / "watch.log")
    yield w
    w.stop()


def allowed_only(sandbox) -> bool:
    return sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED, timeout=1) and not sandbox.ext_connect(
        sandbox.host_ip, PORT, OTHER, timeout=1
    )


def test_restart_policy_container_gets_its_rules_back(sandbox, fw, watch):
    fw.ok("init")
    sandbox.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--restart=always",))
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    pid = sandbox.container_pid("web")
    os.kill(pid, signal.SIGKILL)  # the engine, not a person, restarts it
    assert eventually(lambda: sandbox.container_pid("web") not in (0, pid)), "engine did not restart web"
    sandbox.wait_listening("web", 80)
    assert eventually(lambda: sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED, timeout=1))
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER, timeout=1)
    assert any("web" in e.get("containers", "") for e in watch.entries()), watch.text()


def test_stopped_containers_address_does_not_admit_the_next_container(sandbox, fw, web, watch):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    old_ip = sandbox.container_ip("web")
    sandbox.docker("stop", "-t", "1", "web")
    assert eventually(lambda: "docker-fw:web:" not in fw.rules_text()), watch.text()

    # A stranger starts, takes web's old address and publishes the same port.
    sandbox.run_server("stranger", ports=(80,), publish=(f"{PORT}:80",))
    assert sandbox.container_ip("stranger") == old_ip
    assert sandbox.ext_fetch(sandbox.host_ip, PORT, OTHER, timeout=1) is None
    assert sandbox.ext_fetch(sandbox.host_ip, PORT, ALLOWED, timeout=1) is None  # not "stranger\n"

    # web comes back (elsewhere): its rules follow it with no command.
    sandbox.docker("rm", "-f", "stranger")
    sandbox.docker("start", "web")
    sandbox.wait_listening("web", 80)
    assert eventually(lambda: sandbox.ext_fetch(sandbox.host_ip, PORT, ALLOWED, timeout=1) == "web\n")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER, timeout=1)


def test_engine_restart_is_survived_and_init_reapplied(sandbox, fw, watch):
    fw.ok("init")
    sandbox.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--restart=always",))
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    sandbox.restart_engine()
    assert eventually(lambda: sandbox.docker("inspect", "-f", "{{.State.Running}}", "web", check=False).stdout.strip() == "true", timeout=30)
    sandbox.wait_listening("web", 80)
    assert eventually(lambda: allowed_only(sandbox), timeout=20), watch.text()
    assert fw.catch_all() not in fw.rules_text()
    assert any(e["msg"].startswith("reconnected") or e.get("reason") == "reconnected to the engine"
               for e in watch.entries()), watch.text()


def test_flushed_rules_are_repaired(sandbox, fw, web, watch):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    assert allowed_only(sandbox)
    # A "firewall reload" wipes docker-fw's chains and jump, and puts Docker's catch-all back.
    sandbox.engine_run(["iptables", "-D", "FORWARD", "-j", "DOCKER-FW-FORWARD"])
    sandbox.engine_run(["iptables", "-F", "DOCKER-FW-FORWARD"])
    sandbox.engine_run(["iptables", *fw.catch_all().split()])
    # No 'check' here: watch's 1-second periodic check may repair the flush
    # first under load.  The 'periodic check' entry below proves it repaired it.
    assert eventually(lambda: allowed_only(sandbox), timeout=15), watch.text()
    assert fw.catch_all() not in fw.rules_text()
    assert any(e.get("reason") == "periodic check" and e["msg"].startswith("add") for e in watch.entries()), watch.text()
    assert fw.run("check").returncode == 0


def test_watch_restarted_reconciles_what_it_missed(sandbox, fw, web, watch):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    watch.stop()
    # While nothing watches, web moves to another address.
    sandbox.docker("stop", "-t", "1", "web")
    sandbox.run_server("filler", ports=())
    sandbox.docker("start", "web")
    sandbox.wait_listening("web", 80)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED, timeout=1)
    watch.start()
    assert eventually(lambda: allowed_only(sandbox), timeout=15), watch.text()


def test_check_reports_drift_and_replay_repairs_it(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert fw.run("check").returncode == 0
    sandbox.docker("stop", "-t", "1", "web")
    sandbox.run_server("filler", ports=())
    sandbox.docker("start", "web")
    result = fw.run("check")
    assert result.returncode == 1
    assert "stale (web)" in result.stdout and "missing (web)" in result.stdout
    fw.ok("replay")
    assert fw.run("check").returncode == 0


def test_gc_forgets_containers_that_are_gone(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sandbox.run_server("keeper", ports=())
    fw.ok("add-internal", "keeper", "--source", "web", "--dport", "80")
    sandbox.docker("rm", "-f", "web")
    kept = fw.ok("gc").stdout
    assert "web: gone for 0.0 of 7 days, kept" in kept
    assert "docker-fw add web" in fw.ok("ls").stdout
    assert "would forget web" in fw.ok("gc", "--days", "0", "--dry-run").stdout
    assert "docker-fw add web" in fw.ok("ls").stdout
    assert "forgot web" in fw.ok("gc", "--days", "0").stdout
    listed = fw.ok("ls").stdout
    assert "docker-fw add web" not in listed
    assert "add-internal keeper --source=web" in listed  # other containers' rules stay


def test_rename_is_followed(sandbox, fw, web, watch):
    """docker rename: rules are recorded by name; watch moves them to the new one."""
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    watch.start()
    sandbox.docker("rename", "web", "www")
    assert eventually(lambda: fw.ok("ls").stdout.startswith("docker-fw add www ")), watch.text()
    assert eventually(lambda: "docker-fw:www:" in fw.rules_text() and "docker-fw:web:" not in fw.rules_text())
    assert allowed_only(sandbox)
    # the renamed container restarts elsewhere: its rules follow it under the new name
    sandbox.move("www")
    assert eventually(lambda: allowed_only(sandbox)), watch.text()
    assert any(e["msg"] == "web -> www: 1 rule renamed" for e in watch.entries()), watch.text()


def test_a_network_created_later_is_initialised(sandbox, fw, watch):
    """docker network create adds Docker's catch-all for the new bridge: watch removes it."""
    fw.ok("init")
    watch.start()
    network_id = sandbox.docker("network", "create", "late").stdout.strip()
    bridge = "br-" + network_id[:12]
    sandbox.run_server("lateweb", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--network", "late"))
    assert eventually(lambda: fw.catch_all(bridge) not in fw.rules_text()), watch.text()
    assert f"-A FORWARD -i {bridge} -o {bridge} -j DOCKER" in fw.rules_text()
    assert eventually(lambda: not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER, timeout=1)), watch.text()
    fw.ok("allow", "lateweb", ALLOWED)
    assert allowed_only(sandbox)
    assert fw.run("check").returncode == 0


def test_no_init_leaves_dockers_forward_chain_alone(sandbox, fw, web, watch):
    """--no-init: the catch-all an engine restart (here: the admin) puts back stays;
    docker-fw's own rules are still kept in line."""
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sandbox.engine_run(["iptables", *fw.catch_all().split()])  # Docker's catch-all is back
    watch.start("--no-init")
    sandbox.engine_run(["iptables", "-F", "DOCKER-FW-FORWARD"])  # and our rules are flushed
    # a flush sends no event: the periodic full reconcile repairs it (and would run init)
    assert eventually(lambda: "docker-fw:web:" in fw.rules_text()), watch.text()
    assert fw.catch_all() in fw.rules_text()
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER, timeout=1)  # open to all: not ours to close
    assert any(e.get("reason") == "periodic check" for e in watch.entries()), watch.text()
    assert not any("(init)" in e["msg"] for e in watch.entries()), watch.text()
