"""End to end: rules declared in a Compose file (the docker-fw.rules label),
with a real Compose v2 client against the sandbox engine, and real packets.

The client is Debian sid's docker-compose, unpacked (not installed) by
scripts/get-compose.sh into /opt/docker-fw-compose (DOCKER_FW_COMPOSE_DIR);
it talks to the sandbox engine through DOCKER_HOST.  Missing, these tests
skip (fail under CI=true).  The image is the harness's busybox one, made with
'docker import' (no registry): the Compose file says pull_policy: never.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import _skip_or_fail
from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw  # noqa: F401 (fixtures)
from tests.e2e.test_watch_e2e import Watch, eventually

pytestmark = pytest.mark.e2e

COMPOSE_DIR = os.environ.get("DOCKER_FW_COMPOSE_DIR", "/opt/docker-fw-compose")
COMPOSE = Path(COMPOSE_DIR) / "usr/bin/docker-compose"
PROJECT = "shop"


class Compose:
    """docker-compose -p shop, on a file written in a temporary directory."""

    def __init__(self, sandbox, directory: Path):
        self.sandbox, self.directory = sandbox, directory
        self.file = directory / "compose.json"  # JSON is YAML: written with json.dumps, no YAML library

    def write(self, web_rules: str, db_rules: str, app_replicas: int = 2) -> None:
        image, serve = self.sandbox.image, self.sandbox.server_command
        service = lambda name, port, **more: {  # noqa: E731
            "image": image, "pull_policy": "never", "command": serve(name, (port,)),
            "stop_grace_period": "1s", **more,
        }
        self.file.write_text(json.dumps({
            "services": {
                "web": service("web", 80, ports=[f"{PORT}:80"], labels={"docker-fw.rules": web_rules}),
                "db": service("db", 5432, networks=["back"], labels={"docker-fw.rules": db_rules}),
                "app": service("app", 8000, networks=["back"], deploy={"replicas": app_replicas}),
                "intruder": service("intruder", 8000, networks=["back"]),
            },
            # icc off: on Docker's default (icc on) an internal allow changes nothing
            "networks": {"back": {"driver_opts": {"com.docker.network.bridge.enable_icc": "false"}}},
        }, indent=1))

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": self.sandbox.docker_host,
            "DOCKER_CONFIG": str(self.directory / "docker-config"), "HOME": str(self.directory),
        }
        result = subprocess.run([str(COMPOSE), "-p", PROJECT, "-f", str(self.file), *argv], env=env,
                                capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, f"docker-compose {' '.join(argv)}: {result.stdout}{result.stderr}"
        return result

    def up(self, *argv: str) -> None:
        self.run("up", "-d", "--wait", *argv)


@pytest.fixture
def compose(sandbox, fw, tmp_path):
    if not COMPOSE.is_file():
        _skip_or_fail(f"{COMPOSE} not found: run scripts/get-compose.sh (Debian sid's docker-compose)")
    project = Compose(sandbox, tmp_path)
    yield project
    if project.file.exists():
        project.run("down", "-t", "1", check=False)


@pytest.fixture
def watch(sandbox, fw, tmp_path):
    w = Watch(sandbox, fw, tmp_path / "watch.log")
    yield w
    w.stop()


def reaches(sandbox, client: str, peer: str, port: int) -> bool:
    """Whether container CLIENT opens a connection to PEER (a service name: Docker's DNS) and gets a reply."""
    result = sandbox.docker("exec", client, "sh", "-c", f"nc -w 2 {peer} {port} </dev/null", check=False)
    return result.returncode == 0 and result.stdout.strip() != ""


def web_serves(sandbox, client: str) -> bool:
    return sandbox.ext_fetch(sandbox.host_ip, PORT, client, timeout=1) == "web\n"


def docker_fw_rules(fw) -> list[str]:
    """The rules docker-fw placed for containers (not its shared replies rule)."""
    return [line for line in fw.rules_text().split("\n") if "docker-fw:" in line and "docker-fw:replies" not in line]


def test_a_compose_project_is_firewalled_by_its_labels(sandbox, fw, compose, watch):
    # 'watch' alone applies the labels, on each container's start: no periodic reconcile helps it
    watch.start("--interval", "3600")
    compose.write(web_rules=f"# the shop's front\nallow {ALLOWED}\n",
                  db_rules="add-internal --source=app --dport=5432\n")
    compose.up()
    sandbox.wait_listening("shop-web-1", 80)

    # a web service allowed to one external client
    assert eventually(lambda: web_serves(sandbox, ALLOWED)), watch.text()
    assert not web_serves(sandbox, OTHER)
    # a db reachable by service name from each replica of app only
    for replica in ("shop-app-1", "shop-app-2"):
        assert eventually(lambda: reaches(sandbox, replica, "db", 5432)), watch.text()
    assert not reaches(sandbox, "shop-intruder-1", "db", 5432)

    # ls marks the label's rules, expanded to the replicas; the store holds none of them
    listed = fw.ok("ls").stdout.splitlines()
    assert f"# shop-web-1: label docker-fw.rules line 2: docker-fw allow shop-web-1 --source={ALLOWED} " \
           "--dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'" in listed
    assert sum("add-internal shop-db-1 --source=shop-app-" in line for line in listed) == 2
    assert all(line.startswith("#") for line in listed)
    dropped = fw.run("drop", "shop-web-1")
    assert dropped.returncode == 2 and "change the label" in dropped.stderr
    assert fw.run("check").returncode == 0

    # a scaled service: the new replica gets through too
    compose.up("--scale", "app=3")
    assert eventually(lambda: reaches(sandbox, "shop-app-3", "db", 5432)), watch.text()

    # an edited label is followed after 'up -d' (which re-creates web)
    compose.write(web_rules=f"allow {OTHER}\n", db_rules="add-internal --source=app --dport=5432\n", app_replicas=3)
    compose.up()
    assert eventually(lambda: web_serves(sandbox, OTHER)), watch.text()
    assert not web_serves(sandbox, ALLOWED)

    # a bad line: db's label is refused whole (db stays closed), watch logs it and goes on
    compose.write(web_rules=f"allow {OTHER}\n", app_replicas=3,
                  db_rules="add-internal --source=app --dport=5432\nadd-internal --source=app --dport=all\n")
    compose.up()
    assert eventually(lambda: any("container shop-db-1: label docker-fw.rules line 2" in e["msg"]
                                  for e in watch.entries())), watch.text()
    assert not reaches(sandbox, "shop-app-1", "db", 5432)
    assert watch.proc.poll() is None
    assert web_serves(sandbox, OTHER)  # the other containers' rules are unaffected
    checked = fw.run("check")
    assert checked.returncode == 1
    assert "label refused: container shop-db-1: label docker-fw.rules line 2: --dport: not a port number" \
        in checked.stdout

    # down leaves no rule behind
    compose.run("down", "-t", "1")
    assert eventually(lambda: docker_fw_rules(fw) == []), fw.rules_text()
    assert watch.proc.poll() is None
    assert fw.ok("ls").stdout == ""


def test_an_internal_allow_on_an_icc_network_is_said_to_change_nothing(sandbox, fw, compose):
    compose.write(web_rules="", db_rules="add-internal --source=web --dport=5432\n")
    # db and web share only the project's default network (icc on, Docker's default)
    data = json.loads(compose.file.read_text())
    data["services"]["db"]["networks"] = ["default"]
    data["services"]["intruder"]["networks"] = ["default"]
    compose.file.write_text(json.dumps(data))
    compose.up()
    fw.ok("init")  # the project's networks exist now
    replayed = fw.ok("replay")
    assert "has no effect" in replayed.stderr and "shop_default" in replayed.stderr
    assert 'com.docker.network.bridge.enable_icc: "false"' in replayed.stderr
    checked = fw.run("check")
    assert checked.returncode == 0 and "warning: has no effect" in checked.stdout
    # what the warning says: with icc on, Docker lets a container no rule names in
    assert reaches(sandbox, "shop-intruder-1", "db", 5432)


def test_no_such_warning_where_icc_is_off(sandbox, fw):
    """The sandbox's engine runs with --icc=false: its default bridge says so."""
    sandbox.run_server("db", ports=(5432,))
    sandbox.run_server("app", ports=(8000,))
    fw.ok("init")
    added = fw.ok("add-internal", "db", "--source=app", "--dport=5432")
    assert "has no effect" not in added.stderr
    assert fw.container_connects("app", sandbox.container_ip("db"), 5432)


EXT_PORT, EXT_OUTBOUND_PORT = 9300, 9400  # ports of the external namespace's servers (fw.ext_server)


def test_an_egress_deny_label_locks_its_container_until_the_label_is_edited(sandbox, fw, compose, watch):
    """'egress deny' in web's label: web starts no connection outside (but to its
    label's outbound rule's destination), as 'egress NAME deny' would; a bad line
    keeps the lock it asked for (fail closed); an edited label and 'up -d' lift it."""
    locked = f"allow {ALLOWED}\negress deny\nadd --source=. --dest={OTHER} --dport={EXT_OUTBOUND_PORT}\n"
    watch.start("--interval", "3600")  # the label alone, applied on the container's start
    compose.write(web_rules=locked, db_rules="", app_replicas=1)
    with fw.ext_server((EXT_PORT, EXT_OUTBOUND_PORT)):
        compose.up()
        sandbox.wait_listening("shop-web-1", 80)
        assert eventually(lambda: not fw.container_connects("shop-web-1", ALLOWED, EXT_PORT)), watch.text()
        assert fw.container_connects("shop-web-1", OTHER, EXT_OUTBOUND_PORT)  # its label's outbound rule
        assert not fw.container_connects("shop-web-1", OTHER, EXT_PORT)
        assert web_serves(sandbox, ALLOWED)  # connections to it: replies are not locked
        assert fw.container_connects("shop-app-1", ALLOWED, EXT_PORT)  # another container: not locked
        listed = fw.ok("ls").stdout.splitlines()
        assert "# shop-web-1: label docker-fw.rules line 2: docker-fw egress shop-web-1 deny" in listed
        assert not any(line.startswith("docker-fw egress") for line in listed)  # the store holds none
        [lock] = json.loads(fw.ok("ls", "--json", "shop-web-1").stdout)["egress"]
        assert lock["origin"] == "label" and lock["label"] == {"name": "docker-fw.rules", "line": 2}
        assert fw.run("check").returncode == 0

        # a bad line: none of the label's rules, but the lock it asked for
        compose.write(web_rules=f"egress deny\nallow {ALLOWED} --everyone\n", db_rules="", app_replicas=1)
        compose.up()
        assert eventually(lambda: any("container shop-web-1: label docker-fw.rules line 2" in e["msg"]
                                      for e in watch.entries())), watch.text()
        sandbox.wait_listening("shop-web-1", 80)
        assert not fw.container_connects("shop-web-1", ALLOWED, EXT_PORT)
        assert not web_serves(sandbox, ALLOWED)
        assert fw.run("check").returncode == 1

        # the label edited ('egress allow', the default) and 'up -d': web is free again
        compose.write(web_rules=f"allow {ALLOWED}\negress allow\n", db_rules="", app_replicas=1)
        compose.up()
        assert eventually(lambda: fw.container_connects("shop-web-1", ALLOWED, EXT_PORT)), watch.text()
        assert eventually(lambda: web_serves(sandbox, ALLOWED)), watch.text()
        assert not any("egress" in line for line in fw.ok("ls").stdout.splitlines())
    compose.run("down", "-t", "1")
    assert eventually(lambda: docker_fw_rules(fw) == []), fw.rules_text()
    assert watch.proc.poll() is None
