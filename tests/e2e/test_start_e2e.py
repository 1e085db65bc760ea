"""End to end: add-two-ways, save-hostconfig and start, on a real engine with packets."""

from __future__ import annotations

import pytest

from tests.e2e.fw import ALLOWED, OTHER, baseline_filter, fw  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def hosts_lines(sandbox, name: str) -> list[str]:
    return sandbox.docker("exec", name, "cat", "/etc/hosts").stdout.splitlines()


def host_port(sandbox, name: str, port: str = "80/tcp") -> int:
    out = sandbox.docker("port", name, port).stdout.split()[0]
    return int(out.rsplit(":", 1)[1])


def test_seed_two_ways_example(sandbox, fw):
    """The seed README's example, verbatim apart from the image name."""
    image = sandbox.image
    fw.ok("init")
    sandbox.docker("run", "--detach", "--name=promoted", image, "sleep", "1000")
    sandbox.docker(
        "run", "--detach", "--expose=1025", "--link", "promoted:promoted", "--name=endpoint",
        image, "sleep", "1000",
    )
    result = fw.ok("add-two-ways", "endpoint", "--source", "promoted", "--dport", "1025")
    assert "promoted: /etc/hosts updated" in result.stdout

    endpoint_ip = sandbox.container_ip("endpoint")
    assert any(l.split()[:2] == [endpoint_ip, "endpoint"] for l in hosts_lines(sandbox, "promoted"))

    out = sandbox.receive_once("endpoint", 1025, lambda: sandbox.docker(
        "exec", "promoted", "sh", "-c", "echo 'Hello from promoted container' | nc endpoint 1025",
    ))
    assert "Hello from promoted container" in out

    # Idempotent: again, and the hosts file still has one line for endpoint.
    fw.ok("add-two-ways", "endpoint", "--source", "promoted", "--dport", "1025")
    assert sum("endpoint" in l.split()[1:] for l in hosts_lines(sandbox, "promoted")) == 1
    # ls prints it back as add-two-ways, so that running the line restores both halves.
    assert fw.ok("ls").stdout.strip() == (
        "docker-fw add-two-ways endpoint --source=promoted --dest=. --dport=1025 --protocol=tcp"
    )
    # drop takes both halves away: the rule and promoted's hosts line.
    fw.ok("drop", "endpoint")
    assert not any("endpoint" in l.split()[1:] for l in hosts_lines(sandbox, "promoted"))
    assert "docker-fw:endpoint:" not in fw.rules_text()


def test_two_ways_entry_follows_address_and_keeps_other_lines(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("srv", ports=(80,))
    sandbox.run_server("cli", ports=())
    fw.ok("add-two-ways", "srv", "--source", "cli", "--dport", "80")
    sandbox.docker("exec", "cli", "sh", "-c", "echo '10.9.9.9 keepme' >> /etc/hosts")
    assert fw.container_connects("cli", "srv", 80)

    _, new_ip = sandbox.move("srv")
    fw.ok("replay", "srv")
    lines = hosts_lines(sandbox, "cli")
    assert [l.split()[0] for l in lines if "srv" in l.split()[1:]] == [new_ip]
    assert any("keepme" in l for l in lines)
    assert fw.container_connects("cli", "srv", 80)
    assert not fw.container_connects("squatter", new_ip, 80)


def test_two_ways_writes_hosts_of_a_paused_container(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("srv", ports=(80,))
    sandbox.run_server("cli", ports=())
    sandbox.docker("pause", "cli")
    fw.ok("add-two-ways", "srv", "--source", "cli", "--dport", "80")
    sandbox.docker("unpause", "cli")
    assert any("srv" in l.split()[1:] for l in hosts_lines(sandbox, "cli"))


def test_simulated_reboot_start_pull_deps_restores_everything(sandbox, fw):
    fw.ok("init")
    image = sandbox.image
    sandbox.docker("create", "--name", "data", "-v", "/data", image, "sleep", "100000")
    sandbox.docker("start", "data")
    sandbox.run_server("db", ports=(80,), extra_args=("--volumes-from", "data"))
    sandbox.run_server("app", ports=(80,), publish=("80",), extra_args=("--link", "db:db"))
    fw.ok("allow", "app", ALLOWED)
    fw.ok("add-two-ways", "app", "--source", "db", "--dport", "80")
    fw.ok("add-internal", "db", "--source", "app", "--dport", "80")
    saved = fw.ok("save-hostconfig", "app").stdout
    port = host_port(sandbox, "app")
    assert f"80/tcp->{port}" in saved
    assert sandbox.ext_connect(sandbox.host_ip, port, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, port, OTHER)

    # "Reboot": everything stops, the engine restarts, the firewall loses our rules.
    sandbox.docker("stop", "-t", "1", "app", "db", "data")
    sandbox.restart_engine()
    for chain in ("DOCKER-FW-FORWARD", "DOCKER-FW-INTERNAL", "DOCKER-FW-INPUT"):
        sandbox.engine_run(["iptables", "-F", chain], check=False)
    # Unrelated containers start first and take the old addresses and host port.
    sandbox.run_server("early1", ports=(80,))
    sandbox.run_server("early2", ports=(80,))
    sandbox.run_server("early3", ports=(80,))

    fw.ok("init")  # the restarted engine put its catch-all back
    dry = fw.ok("start", "--dry-run", "--pull-deps", "app").stdout.split()
    assert dry == ["data", "db", "app"]
    assert sandbox.docker("inspect", "-f", "{{.State.Running}}", "app").stdout.strip() == "false"

    out = fw.ok("start", "--pull-deps", "app").stdout
    assert [l for l in out.splitlines() if l in ("data", "db", "app")] == ["data", "db", "app"]
    for name in ("data", "db", "app"):
        assert sandbox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"

    if sandbox.engine_major() < 25:
        assert host_port(sandbox, "app") == port  # pinned again (engine API 1.23)
    port = host_port(sandbox, "app")  # 28.x: the engine's choice (the rules follow it)
    assert sandbox.ext_connect(sandbox.host_ip, port, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, port, OTHER)
    assert fw.container_connects("db", "app", 80)  # by name: two-ways hosts entry
    assert fw.container_connects("app", "db", 80)  # by name: Docker's link entry
    assert not fw.container_connects("early1", sandbox.container_ip("app"), 80)
    assert fw.run("replay", "--dry-run").returncode == 0


def test_start_reports_host_ports_it_could_not_get_back(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("app", ports=(80,), publish=("80",))
    fw.ok("allow", "app", ALLOWED)
    fw.ok("save-hostconfig", "app")
    old = host_port(sandbox, "app")
    sandbox.docker("stop", "-t", "1", "app")
    sandbox.run_server("thief", ports=(80,), publish=(f"{old}:80",))

    result = fw.ok("start", "app")
    new = host_port(sandbox, "app")
    assert new != old
    # 20.10 takes a start with a HostConfig body (API 1.23): docker-fw asks for the
    # saved port, is refused, and starts without it.  28.x takes no start body: the
    # engine picks a port; either way the change is reported and the rules follow.
    pins = sandbox.engine_major() < 25
    assert ("could not get its saved host ports back" in result.stderr) == pins, result.stderr
    assert f"app: host ports changed: 80/tcp: {old} -> {new}" in result.stderr
    assert sandbox.ext_connect(sandbox.host_ip, new, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, new, OTHER)
    if pins:
        # The new port is saved: a later start asks for it.
        sandbox.docker("stop", "-t", "1", "app")
        assert "changed" not in fw.ok("start", "app").stderr
        assert host_port(sandbox, "app") == new


def test_start_paused_and_already_running_keep_state(sandbox, fw):
    sandbox.run_server("one", ports=())
    sandbox.docker("create", "--name", "two", sandbox.image, "sleep", "100000")
    fw.ok("start", "--paused", "one", "two")
    state = lambda n: sandbox.docker("inspect", "-f", "{{.State.Status}}", n).stdout.strip()
    assert state("one") == "running"  # already running: left as it was
    assert state("two") == "paused"


def test_start_errors_start_nothing(sandbox, fw):
    sandbox.docker("create", "--name", "base", sandbox.image, "sleep", "100000")
    sandbox.docker("create", "--name", "top", "--link", "base:base", sandbox.image, "sleep", "100000")
    result = fw.run("start", "top")
    assert result.returncode == 2
    assert "base" in result.stderr and "--pull-deps" in result.stderr
    result = fw.run("start", "top", "nosuch")
    assert result.returncode == 3 and "no such container: nosuch" in result.stderr
    for name in ("base", "top"):
        assert sandbox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"


def test_start_refuses_a_link_cycle_and_starts_nothing(sandbox, fw):
    # Links are kept by name: re-creating a link target with a link back makes a cycle.
    image = sandbox.image
    sandbox.docker("create", "--name", "ca", image, "sleep", "100000")
    sandbox.docker("create", "--name", "cb", "--link", "ca:x", image, "sleep", "100000")
    sandbox.docker("rm", "ca")
    sandbox.docker("create", "--name", "ca", "--link", "cb:y", image, "sleep", "100000")
    for argv in (("start", "ca", "cb"), ("start", "--pull-deps", "ca")):
        result = fw.run(*argv)
        assert result.returncode == 2, result
        assert result.stderr.strip() in (
            "docker-fw start: dependency cycle: ca -> cb -> ca",
            "docker-fw start: dependency cycle: cb -> ca -> cb",
        )
    for name in ("ca", "cb"):
        assert sandbox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"


def test_start_jobs_runs_a_diamond_in_dependency_order(sandbox, fw):
    """Docker refuses to start a container whose link target is not running,
    so a successful parallel start proves the order was kept."""
    image = sandbox.image
    sandbox.docker("create", "--name", "base", "--expose", "80", image, "sleep", "100000")
    for mid in ("left", "right"):
        sandbox.docker("create", "--name", mid, "--expose", "80", "--link", "base:base", image, "sleep", "100000")
    sandbox.docker("create", "--name", "top", "--link", "left:left", "--link", "right:right", image, "sleep", "100000")
    out = fw.ok("start", "--jobs", "3", "--pull-deps", "top").stdout.split()
    assert sorted(out) == ["base", "left", "right", "top"]
    assert out[0] == "base" and out[-1] == "top"
    for name in out:
        assert sandbox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def test_start_orders_network_container_dependency(sandbox, fw):
    """Docker refuses to start a container joining the network of one that is
    not running: the successful start proves the order."""
    image = sandbox.image
    sandbox.docker("create", "--name", "app", image, "sleep", "100000")
    sandbox.docker("create", "--name", "sidecar", "--network", "container:app", image, "sleep", "100000")
    assert fw.ok("start", "--dry-run", "--pull-deps", "sidecar").stdout.split() == ["app", "sidecar"]
    assert fw.ok("start", "--pull-deps", "sidecar").stdout.split() == ["app", "sidecar"]
    for name in ("app", "sidecar"):
        assert sandbox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
