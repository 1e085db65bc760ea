"""End to end: the docker-fw CLI against a real engine, proved with packets.

Every test starts from the engine's own firewall layout (as dockerd made it,
no containers) and a fresh state store; an "external" namespace holds the
clients 198.51.100.2 (the one we allow) and 198.51.100.3 (never allowed).
"""

from __future__ import annotations

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def test_init_closes_published_ports_and_is_safe_to_rerun(sandbox, fw, web):
    # Docker's default: a published port is open to everyone.
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    assert fw.catch_all() in fw.rules_text()
    fw.ok("init")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    saved = fw.rules_text()
    assert fw.catch_all() not in saved
    assert "-A FORWARD -i docker0 -o docker0 -j DOCKER" in saved

    again = fw.ok("init")
    assert "nothing changed" in again.stdout
    assert fw.rules_text() == saved


def test_allow_admits_only_the_allowed_source(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    listed = fw.ok("ls").stdout.splitlines()
    assert listed == [
        f"docker-fw add web --source={ALLOWED} --dest=. --dport=80 --protocol=tcp "
        "--filter='! -i @bridge -o @bridge'"
    ]
    assert f"-d {sandbox.container_ip('web')}/32 ! -i docker0 -o docker0 " in fw.rules_text()
    # Adding the same rule again changes nothing.
    before = fw.rules_text()
    assert "already recorded" in fw.ok("allow", "web", ALLOWED).stdout
    assert fw.rules_text() == before


def test_add_opens_only_published_ports(sandbox, fw, web):
    fw.ok("init")
    fw.ok("add", "web", f"--source={OTHER}", "--dport", "80")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    # A port the engine does not publish stays closed even with a rule: the
    # rule only sends traffic to Docker's DOCKER chain.
    ip = sandbox.container_ip("web")
    fw.ok("add", "web", "-s", OTHER, "--dport", "81")
    assert not sandbox.ext_connect(ip, 81, OTHER)


def test_replay_follows_a_container_to_its_new_address(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    # Restart web after another container took its address.
    old_ip, _ = sandbox.move("web")

    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    dry = fw.run("replay", "--dry-run", "web")
    assert dry.returncode == 1, dry
    assert "would delete" in dry.stdout and "would add" in dry.stdout

    fw.ok("replay", "web")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert old_ip not in fw.rules_text()
    # Nothing left to do: the dry run says so with exit code 0.
    assert fw.run("replay", "--dry-run", "web").returncode == 0
    assert fw.run("replay", "--dry-run").returncode == 0


def test_replay_withdraws_rules_of_a_stopped_container(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sandbox.docker("stop", "-t", "1", "web")
    result = fw.ok("replay")
    assert "not applied" in result.stderr
    assert "docker-fw:web:" not in fw.rules_text()
    # The record is kept: the rule comes back when web runs again.
    sandbox.docker("start", "web")
    fw.ok("replay", "web")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)


def test_drop_removes_rules_and_record(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    out = fw.ok("drop", "web").stdout
    assert "web: dropped 1 rule" in out
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert fw.ok("ls").stdout == ""
    assert "docker-fw:web:" not in fw.rules_text()


def test_add_internal_allows_one_container_to_reach_another(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("srv", ports=(80,))
    sandbox.run_server("client", ports=())
    sandbox.run_server("stranger", ports=())
    srv_ip = sandbox.container_ip("srv")
    # --icc=false: containers cannot talk to each other by default.
    assert not fw.container_connects("client", srv_ip, 80)

    fw.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    assert fw.container_connects("client", srv_ip, 80)
    assert not fw.container_connects("stranger", srv_ip, 80)

    # The rule follows the client to a new address.
    sandbox.docker("stop", "-t", "1", "client")
    sandbox.run_server("squatter", ports=())
    sandbox.docker("start", "client")
    fw.ok("replay", "client")  # replays srv's rules too: they name client
    assert fw.container_connects("client", srv_ip, 80)
    assert not fw.container_connects("squatter", srv_ip, 80)


def test_add_input_allows_a_container_to_reach_the_host(sandbox, fw):
    fw.ok("init")
    sandbox.run_server("client", ports=())
    sandbox.run_server("stranger", ports=())
    gateway = fw.gateway("client")
    with fw.host_server(gateway, 9000), fw.input_policy_drop():
        assert not fw.container_connects("client", gateway, 9000)
        fw.ok("add-input", "client", "--source", ".", "--dest", "/", "--dport", "9000")
        assert fw.container_connects("client", gateway, 9000)
        assert not fw.container_connects("stranger", gateway, 9000)


def test_add_from_file_is_all_or_nothing(sandbox, fw, web, tmp_path):
    fw.ok("init")
    before = fw.rules_text()
    bad = tmp_path / "rules"
    bad.write_text(
        "# external clients\n"
        f"web --source {ALLOWED} --dport 80\n"
        "\n"
        # a filter the --filter grammar accepts but the kernel refuses (--from after --to)
        f"web --source {OTHER} --dport 80 --filter '-m string --string x --algo bm --from 100 --to 10'\n"
    )
    result = fw.run("add", "--from", str(bad))
    assert result.returncode == 4, result
    assert len(result.stderr.strip().splitlines()) == 1
    assert fw.rules_text() == before
    assert fw.ok("ls").stdout == ""
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)

    good = tmp_path / "good"
    good.write_text(f"web --source {ALLOWED} --dport 80\nweb --source {OTHER} --dport 80\n")
    fw.ok("add", "--from", str(good))
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert len(fw.ok("ls", "web").stdout.splitlines()) == 2


def test_filter_is_applied_as_ls_prints_it_and_attacks_change_nothing(sandbox, fw, web):
    fw.ok("init")
    fw.ok("add", "web", f"--source={OTHER}", "--dport", "80", "--filter=-m conntrack --ctstate NEW ! -i @bridge")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    listed = fw.ok("ls").stdout
    assert listed.splitlines() == [
        f"docker-fw add web --source={OTHER} --dest=. --dport=80 --protocol=tcp "
        "--filter='-m conntrack --ctstate NEW ! -i @bridge'"
    ]
    ip = sandbox.container_ip("web")
    rules = fw.rules_text()
    assert f"-d {ip}/32 ! -i docker0 -p tcp -m conntrack --ctstate NEW -m tcp --dport 80 -m comment" in rules
    assert fw.run("check").returncode == 0

    # issue #9's attacks, each refused with one line before anything is touched
    cases = [
        ("-m conntrack --ctstate " + ",".join(["NEW"] * 3000), "too long"),
        ("! -i @bridge !", "'!' at the end"),
        ("-6 ! -i @bridge", "'-6'"),
        ("-fjACCEPT", "'-fjACCEPT'"),
        ("-i eth\udce9", "is not UTF-8 text: '--filter=-i eth\\xe9'"),  # argv holds the byte 0xe9
    ]
    for text, needle in cases:
        result = fw.run("add", "web", f"--source={ALLOWED}", "--dport", "80", f"--filter={text}")
        assert result.returncode == 2, (text, result)
        assert len(result.stderr.splitlines()) == 1 and needle in result.stderr, (text, result.stderr)
    assert fw.rules_text() == rules
    assert fw.ok("ls").stdout == listed
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)


def test_ls_output_recreates_the_rules(sandbox, fw, web, tmp_path):
    fw.ok("init")
    sandbox.run_server("client", ports=())
    fw.ok("allow", "web", ALLOWED)
    fw.ok("add-internal", "web", "-s", "client", "--dport", "80", "-p", "tcp")
    listed = fw.ok("ls").stdout
    rules_before = fw.rules_text()

    fw.ok("drop", "web")
    assert "docker-fw:web:" not in fw.rules_text()
    for line in listed.splitlines():
        fw.ok_shell_line(line)
    assert fw.ok("ls").stdout == listed
    assert fw.rules_text() == rules_before


def test_bad_input_changes_nothing(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    rules = fw.rules_text()
    listed = fw.ok("ls").stdout
    sandbox.run_server("stopped", ports=())
    sandbox.docker("stop", "-t", "1", "stopped")

    cases = [
        (("add", "nosuch", "--source", OTHER), 3, "no such container"),
        (("add", "stopped", "--source", OTHER), 3, "start it first"),
        (("add", "web", "--dport", "80"), 2, "--source is mandatory"),
        (("add", "web", "-s", OTHER, "--dport", "99999"), 2, "out of range"),
        (("add", "web", "-s", OTHER, "--filter", "-j ACCEPT"), 2, "not allowed"),
        (("add-internal", "web", "-s", "stopped", "--dport", "80"), 3, "start it first"),
        (("add", "web", "-s", sandbox.container_ip("web"), "--dport", "80"), 2, "container"),
        (("allow", "web", "not-an-ip!"), 2, ""),
        (("drop", "nosuch"), 3, "no such container"),
    ]
    for argv, code, text in cases:
        result = fw.run(*argv)
        assert result.returncode == code, (argv, result)
        assert len(result.stderr.strip().splitlines()) == 1, (argv, result.stderr)
        assert text in result.stderr, (argv, result.stderr)
    assert fw.rules_text() == rules
    assert fw.ok("ls").stdout == listed


def test_unreachable_engine_is_a_clear_error(fw):
    result = fw.run("ls", "web", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 3
    assert "cannot reach the Docker engine" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rename_moves_the_record_to_the_new_name(sandbox, fw, web):
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    sandbox.docker("rename", "web", "www")
    # a new address for the renamed container: under the old name, replay cannot find it
    sandbox.move("www")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)  # fails closed

    bad = fw.run("rename", "www", "web")
    assert bad.returncode != 0 and "nothing is recorded for www" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    out = fw.ok("rename", "web", "www").stdout
    assert "web -> www: 1 rule renamed" in out
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert fw.ok("ls").stdout.startswith("docker-fw add www ")
    assert "docker-fw:web:" not in fw.rules_text()
    assert fw.run("replay", "--dry-run").returncode == 0
