"""import-legacy: the original docker-fw's files -> this docker-fw's store.

The files in tests/fixtures/legacy/<container>/ are written by hand in the
exact format of the original (gdm85/docker-fw v0.2.4): Go's encoding/json of
``IptablesRulesCollection{Rules []*ActiveIptablesRule}`` (no struct tags:
Go field names as keys, every field written, compact, in field order), of
``[]string`` for customHosts.json, and of go-dockerclient's ``HostConfig``
(``omitempty`` tags, ``HostIP`` spelt so, PortBindings replaced by
NetworkSettings.Ports, where an exposed port that is not published is
``null``).  The aliases are the ones its ParseAddress wrote: '.', '/' (with
its hard-coded 172.17.42.1/32), a container's name; an empty alias for a
literal address.

A fake engine (fakes.FakeEngine, whose root holds a directory per container
id as Docker's containers/ does) and a real store.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest

from docker_fw import legacy_import
from docker_fw.actions import Service
from docker_fw.errors import UsageError
from docker_fw.legacy_import import HOSTCONFIG_FILE, HOSTS_FILE, MAX_FILE_BYTES, RULES_FILE, import_legacy
from docker_fw.store import Store
from dfw_samples import REPO
from fakes import FakeEngine, FakeFirewall

FIXTURES = REPO / "tests" / "fixtures" / "legacy"
DYNAMIC_80 = {"80/tcp": [{"HostIp": "", "HostPort": ""}]}

# What 'ls' prints once the fixtures are imported: every chain and alias kind.
IMPORTED = [
    "docker-fw add-input app --source=. --dest=/ --dport=9100 --protocol=tcp",
    "docker-fw add batch --source=. --dest=198.51.100.0/24 --dport=443 --protocol=tcp",
    "docker-fw add-internal db --source=app --dest=. --dport=5432 --protocol=tcp",
    "docker-fw add-internal db --source=/ --dest=. --dport=5432 --protocol=tcp --filter='-m conntrack --ctstate NEW'",
    "docker-fw add-two-ways endpoint --source=promoted --dest=. --dport=1025 --protocol=tcp",
    "docker-fw add web --source=198.51.100.2 --dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'",
    "docker-fw add web --source=203.0.113.0/24 --sport=53 --dest=. --protocol=udp",
]


def go_rule(**fields) -> dict:
    """An ActiveIptablesRule as encoding/json writes it: every field, in the struct's order."""
    rule = {
        "Source": "198.51.100.2/32", "SourceAlias": "", "SourcePort": 0,
        "Destination": "172.17.0.10/32", "DestinationAlias": ".", "DestinationPort": 80,
        "Protocol": "tcp", "Filter": "", "Chain": "FORWARD", "JumpTo": "DOCKER",
    }
    rule.update(fields)
    return rule


def go_json(value) -> str:
    """encoding/json's compact output (it escapes no non-ASCII; neither do the tests need it)."""
    return json.dumps(value, separators=(",", ":"))


class Host:
    """A Docker host with the old tool's files: fake engine, fake firewall, real store."""

    def __init__(self, tmp_path: pathlib.Path, store: Store):
        self.root = tmp_path / "docker"
        self.engine = FakeEngine(self.root / "containers")
        self.firewall = FakeFirewall()
        self.store = store
        self.out: list[str] = []
        self.warnings: list[str] = []
        for name in ("app", "db", "promoted", "web"):
            self.engine.add(name, state="running")
        self.engine.add("endpoint", state="running", links=["/promoted:/endpoint/promoted"], exposed=("1025/tcp",))
        self.engine.add("batch", state="exited", publish_all=True, exposed=("8443/tcp",))
        web = self.engine.containers["web"]
        web.port_bindings = DYNAMIC_80
        self.engine.stop("web")
        self.engine.start(web.id)

    def directory(self, name: str) -> pathlib.Path:
        return self.root / "containers" / self.engine.containers[name].id

    def write(self, name: str, file: str, text: str | bytes) -> pathlib.Path:
        path = self.directory(name) / file
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def write_fixtures(self) -> None:
        for source in sorted(FIXTURES.iterdir()):
            for file in source.iterdir():
                shutil.copy(file, self.directory(source.name) / file.name)

    def service(self) -> Service:
        self.engine.forget()
        return Service(self.engine, self.firewall, self.store, out=self.out.append, warn=self.warnings.append)

    def run(self, dry_run: bool = False, root: pathlib.Path | None = None):
        return import_legacy(self.service(), str(root or self.root), dry_run=dry_run)

    def refused(self) -> list[str]:
        """Run the import, expecting a refusal that records nothing; the problem lines."""
        before = self.recorded()
        self.warnings.clear()
        with pytest.raises(UsageError, match="nothing was imported"):
            self.run()
        assert self.recorded() == before
        return [w.removeprefix("cannot import ") for w in self.warnings]

    def ls(self) -> list[str]:
        lines: list[str] = []
        self.engine.forget()
        Service(self.engine, self.firewall, self.store, out=lines.append).ls([])
        return lines

    def recorded(self):
        return (self.ls(), self.store.host_entries(), {n: self.store.hostconfig(n) for n in self.engine.containers})


@pytest.fixture
def store(tmp_path):
    with Store.open(directory=str(tmp_path / "state")) as opened:
        yield opened


@pytest.fixture
def host(tmp_path, store) -> Host:
    return Host(tmp_path, store)


def test_every_chain_and_alias_kind_maps_to_the_action_that_means_the_same(host):
    host.write_fixtures()
    host.run()
    assert host.ls() == IMPORTED
    # add-two-ways' other half: promoted's hosts file gets a line for endpoint.
    assert host.store.host_entries() == {"promoted": ["endpoint"]}
    assert host.out[-1] == (
        "import-legacy: 7 rules, 1 hosts entry and 3 host configurations recorded; 'docker-fw replay' applies them"
    )
    assert not host.firewall.batches, "import records; replay applies"


def test_imported_rules_apply_and_hosts_entries_are_written_by_replay(host):
    host.write_fixtures()
    host.run()
    host.service().init(None)
    host.service().replay([])
    owners = host.firewall.owners()
    assert owners == {"app", "db", "endpoint", "web"}  # batch is stopped: withdrawn until it runs
    promoted_hosts = host.engine.hosts_text("promoted")
    endpoint_ip = host.engine.containers["endpoint"].ips["bridge"]
    assert promoted_hosts.startswith(f"{endpoint_ip}\tendpoint\t# docker-fw\n")
    assert host.service().check() == []


def test_dry_run_prints_the_commands_and_records_nothing(host):
    host.write_fixtures()
    host.run(dry_run=True)
    assert host.recorded() == ([], {}, {n: None for n in host.engine.containers})
    commands = [line for line in host.out if not line.startswith("#")]
    # The same order as ls: by container, then as the file lists them.
    assert commands == IMPORTED
    comments = [line for line in host.out if line.startswith("#")]
    assert any(line.startswith("# web: host configuration from ") and line.endswith("(ports 80/tcp->32768)") for line in comments), comments
    assert comments[-1] == "# import-legacy --dry-run: 7 rules, 1 hosts entry and 3 host configurations would be recorded"


def test_a_second_import_records_nothing_new(host):
    host.write_fixtures()
    host.run()
    first = host.recorded()
    host.out.clear()
    host.run()
    assert host.recorded() == first
    assert host.out[-1] == "import-legacy: 0 rules, 0 hosts entries and 0 host configurations recorded"
    assert all(line.startswith("already recorded: ") for line in host.out[: len(IMPORTED)])
    host.out.clear()
    host.run(dry_run=True)
    assert all(line.startswith("#") for line in host.out), host.out


def test_a_host_configuration_recorded_since_is_kept(host):
    host.write_fixtures()
    host.service().save_hostconfig(["web"])
    saved = host.store.hostconfig("web")
    host.run()
    assert host.store.hostconfig("web") == saved
    assert "web: host configuration already recorded, kept" in host.out


def test_container_ids_and_renamed_owners_are_recorded_by_current_name(host):
    app = host.engine.containers["app"]
    host.write(
        "db", RULES_FILE,
        go_json({"Rules": [go_rule(SourceAlias=app.id[:12], DestinationPort=5432, Chain="DOCKER", JumpTo="ACCEPT"),
                           go_rule(SourceAlias=".", DestinationAlias="", Destination="198.51.100.0/24")]}),
    )
    host.engine.rename("db", "database")  # the directory keeps its id: the rules are database's
    host.run()
    assert host.ls() == [
        "docker-fw add-internal database --source=app --dest=. --dport=5432 --protocol=tcp",
        "docker-fw add database --source=. --dest=198.51.100.0/24 --dport=80 --protocol=tcp",
    ]


def test_a_stopped_containers_saved_host_ports_are_asked_for_at_start(host):
    host.write_fixtures()
    host.run()
    saved = host.store.hostconfig("batch")
    assert saved["bindings"] == {"8443/tcp": [{"HostIp": "", "HostPort": "32770"}]}
    assert saved["id"] == host.engine.containers["batch"].id
    host.service().start(["batch"])
    assert host.engine.start_calls[-1] == ("batch", {"8443/tcp": [{"HostIp": "", "HostPort": "32770"}]})
    assert host.engine.inspect("batch")["NetworkSettings"]["Ports"]["8443/tcp"][0]["HostPort"] == "32770"


def test_a_running_containers_host_ports_are_the_ones_it_has(host):
    host.write_fixtures()
    host.run()
    web = host.store.hostconfig("web")
    now = host.engine.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert web["bindings"] == {"80/tcp": [{"HostIp": "", "HostPort": now}]}
    assert web["dynamic"] is True
    # The link as the old tool saved it: start's wiring check agrees with the engine.
    endpoint = host.store.hostconfig("endpoint")
    assert endpoint["wiring"]["links"] == ["/promoted:/endpoint/promoted"]
    assert endpoint["bindings"] == {}


def test_wiring_changed_since_the_old_tool_saved_it_makes_start_refuse(host):
    host.write(
        "batch", HOSTCONFIG_FILE,
        go_json({"Links": ["/db:/batch/db"], "NetworkMode": "default", "RestartPolicy": {}}),
    )
    host.run()
    with pytest.raises(UsageError, match="host configuration changed since it was saved"):
        host.service().start(["batch"])


# -- refused: one line each naming the file and the rule, nothing recorded -------------

BAD_RULES = [
    (go_rule(Chain="OUTPUT", JumpTo="ACCEPT"), "Chain 'OUTPUT' with JumpTo 'ACCEPT' is no rule the old docker-fw wrote"),
    (go_rule(Chain="FORWARD", JumpTo="ACCEPT"), "Chain 'FORWARD' with JumpTo 'ACCEPT'"),
    (go_rule(SourceAlias="ghost", Source="172.17.0.99/32", Chain="DOCKER", JumpTo="ACCEPT"), "no such container: ghost"),
    (go_rule(Filter="-j ACCEPT"), "-j"),
    (go_rule(Filter="! -i docker0 -o docker0 -m multiport --dports 1:65535"), "multiport"),
    (go_rule(Source="172.17.0.11/32"), "is a container network address"),
    (go_rule(SourceAlias="."), "source and destination are the same"),
    (go_rule(DestinationAlias="", Destination="203.0.113.1/32"), "either --source or --dest must be '.'"),
    (go_rule(SourceAlias="app"), "'add' is for traffic from or to external addresses"),
    (go_rule(Chain="INPUT", JumpTo="ACCEPT", DestinationAlias=".", SourceAlias="/", DestinationPort=0), "--dport is mandatory"),
    (go_rule(SourceAlias="1.2.3.4"), "SourceAlias '1.2.3.4' is not '.', '/' or a container name"),
    (go_rule(Protocol="icmp"), "Protocol 'icmp' is neither tcp nor udp"),
    (go_rule(Source=""), "empty address specification"),
    (go_rule(Source="not-an-address/99"), "invalid"),
    (go_rule(DestinationPort="80"), "DestinationPort is '80', not a port number"),
    (go_rule(DestinationPort=80.0), "DestinationPort is 80.0, not a port number"),
    (go_rule(DestinationPort=70000), "DestinationPort is 70000, not a port number"),
    (go_rule(SourcePort=True), "SourcePort is True, not a port number"),
    (go_rule(Filter=None), "Filter is None, not a string"),
    (go_rule(Filter="-m state --state NEW\n-j ACCEPT"), "control or unprintable character"),
    (go_rule(Filter="x" * 2000), "longer than 1024 characters"),
    ({**go_rule(), "Comment": "x"}, "holds 'Comment', which is no field of the old docker-fw's rules"),
    ({k: v for k, v in go_rule().items() if k != "JumpTo"}, "has no JumpTo"),
    ({k.lower(): v for k, v in go_rule().items()}, "which is no field"),  # Go would read these; it never wrote them
    ("FORWARD -s 198.51.100.2 -j DOCKER", "not a JSON object"),
]


@pytest.mark.parametrize("rule, needle", BAD_RULES, ids=[n for _, n in BAD_RULES])
def test_a_rule_that_cannot_be_mapped_is_named_and_nothing_is_recorded(host, rule, needle):
    host.write_fixtures()
    path = host.write("web", RULES_FILE, go_json({"Rules": [go_rule(), rule]}))
    problems = host.refused()
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path} Rules[1]: "), problems
    assert needle in problems[0]


def test_every_problem_is_one_line_and_the_good_rules_are_not_recorded_either(host):
    host.write_fixtures()
    web = host.write("web", RULES_FILE, go_json({"Rules": [go_rule(Chain="OUTPUT"), go_rule(), go_rule(Protocol="sctp")]}))
    db = host.write("db", RULES_FILE, "{\"Rules\":[")
    problems = host.refused()
    assert [p.split(": ", 1)[0] for p in problems] == [str(db), f"{web} Rules[0]", f"{web} Rules[2]"]
    assert all("\n" not in p for p in problems)
    assert host.recorded() == ([], {}, {n: None for n in host.engine.containers})


BAD_FILES = [
    (RULES_FILE, b'{"Rules":[{"Source":"1.2.3.4/32","Source":"5.6.7.8/32"}]}', "the key 'Source' is given twice"),
    (RULES_FILE, b'{"Rules":[' + go_json(go_rule()).replace('"SourcePort":0', '"SourcePort":NaN').encode() + b"]}", "NaN is not JSON"),
    (RULES_FILE, b'{"Rules":[{"Source":"\xe9"}]}', "not UTF-8 (byte 0xe9 at offset 21)"),
    (RULES_FILE, b'{"Rules":', "not valid JSON"),
    (RULES_FILE, b'{"Rules":[]} trailing', "not valid JSON: Extra data"),
    (RULES_FILE, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (RULES_FILE, b'{"rules":[]}', 'expected {"Rules": [...]}'),
    (RULES_FILE, b'{"Rules":{}}', "Rules is {}, not a list"),
    (RULES_FILE, b"", "not valid JSON"),
    (HOSTS_FILE, b'{"endpoint":true}', "expected a list of container names"),
    (HOSTS_FILE, b'["/endpoint"]', "'/endpoint' is not a container name"),
    (HOSTS_FILE, b'["end point"]', "is not a container name"),
    (HOSTS_FILE, b'["ghost"]', "no container is named ghost"),
    (HOSTCONFIG_FILE, b"[]", "expected a JSON object"),
    (HOSTCONFIG_FILE, b'{"PortBindings":{"80":[]}}', "not a port such as '80/tcp'"),
    (HOSTCONFIG_FILE, b'{"PortBindings":{"80/tcp":[{"HostIP":"0.0.0.0","HostPort":"http"}]}}', "HostPort is 'http', not a host port"),
    (HOSTCONFIG_FILE, b'{"PortBindings":{"80/tcp":[{"HostIP":"localhost","HostPort":"80"}]}}', "HostIP is 'localhost', not an address"),
    (HOSTCONFIG_FILE, b'{"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"80","x":1}]}}', "not a HostIP and HostPort"),
    (HOSTCONFIG_FILE, b'{"Links":"/db:/web/db"}', "Links is '/db:/web/db', not a list"),
    (HOSTCONFIG_FILE, b'{"PublishAllPorts":"yes"}', "PublishAllPorts is 'yes', not true or false"),
]


@pytest.mark.parametrize("file, data, needle", BAD_FILES, ids=[n for _, _, n in BAD_FILES])
def test_a_file_that_is_not_the_old_tools_json_is_refused(host, file, data, needle):
    host.write_fixtures()
    path = host.write("promoted", file, data)
    problems = host.refused()
    assert any(p.startswith(str(path)) and needle in p for p in problems), problems


def test_a_hosts_entry_without_its_rule_is_refused(host):
    # The old 'drop endpoint' deleted endpoint's extraRules.json and left promoted's entry.
    host.write_fixtures()
    (host.directory("endpoint") / RULES_FILE).unlink()
    problems = host.refused()
    assert problems == [
        f"{host.directory('promoted') / HOSTS_FILE}[0]: a hosts entry for endpoint in promoted, but endpoint's "
        "extraRules.json holds no DOCKER -> ACCEPT rule from promoted: docker-fw keeps an add-two-ways hosts "
        "entry only with its rule; remove the entry from the file (the old 'drop' leaves it behind) and import again"
    ]


def test_a_file_larger_than_the_limit_is_refused_without_reading_it_all(host):
    rules = go_json({"Rules": [go_rule()]})
    padded = rules[:-1] + " " * (MAX_FILE_BYTES - len(rules)) + "}"
    assert len(padded) == MAX_FILE_BYTES
    host.write("web", RULES_FILE, padded)
    host.run(dry_run=True)  # exactly the limit is read
    host.write("web", RULES_FILE, padded + " ")
    problems = host.refused()
    assert problems == [f"{host.directory('web') / RULES_FILE}: larger than 1 MiB, the most docker-fw reads"]


def test_a_symbolic_link_is_never_followed(host, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(go_json({"Rules": [go_rule()]}))
    link = host.directory("web") / RULES_FILE
    link.symlink_to(elsewhere)
    assert host.refused() == [f"{link}: a symbolic link (docker-fw follows none)"]


def test_a_symbolic_link_to_a_container_directory_is_not_entered(host, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / RULES_FILE).write_text(go_json({"Rules": [go_rule()]}))
    web = host.directory("web")
    shutil.rmtree(web)
    web.symlink_to(outside)
    assert host.refused() == [f"{web}: a symbolic link (docker-fw follows none)"]


def test_a_fifo_or_a_directory_in_place_of_a_file_is_refused_without_blocking(host):
    os.mkfifo(host.directory("web") / RULES_FILE)
    (host.directory("db") / HOSTS_FILE).mkdir()
    problems = host.refused()
    assert sorted(problems) == sorted([
        f"{host.directory('web') / RULES_FILE}: a FIFO",
        f"{host.directory('db') / HOSTS_FILE}: a directory",
    ])


def test_empty_collections_as_go_writes_them(host):
    host.write("web", RULES_FILE, '{"Rules":null}')
    host.write("promoted", HOSTS_FILE, "null")
    host.write("db", HOSTS_FILE, "[]")
    host.run()
    assert host.ls() == [] and host.store.host_entries() == {}


def test_a_docker_root_without_containers_is_refused(host, tmp_path):
    with pytest.raises(UsageError, match="is no directory: name the engine's data root with --docker-root"):
        host.run(root=tmp_path / "nowhere")
    (tmp_path / "other" / "containers").mkdir(parents=True)
    with pytest.raises(UsageError, match="none of the engine's 6 containers has a directory"):
        host.run(root=tmp_path / "other")


def test_the_filter_maps_only_docker0_as_an_interface():
    assert legacy_import._filter("! -i docker0 -o docker0") == "'!' -i @bridge -o @bridge"
    assert legacy_import._filter("--in-interface docker0") == "--in-interface @bridge"
    assert legacy_import._filter("-m string --string docker0 --algo bm") == "-m string --string docker0 --algo bm"
    assert legacy_import._filter("-i docker0+") == "-i docker0+"


# -- the command line ----------------------------------------------------------------


def cli_run(host: Host, *argv: str) -> tuple[int, list[str], list[str]]:
    from docker_fw import cli

    out: list[str] = []
    err: list[str] = []
    code = cli.run(list(argv), out=out.append, err=err.append, backends=lambda _verbose: (host.engine, host.firewall, None))
    return code, out, err


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> pathlib.Path:
    state = tmp_path / "cli-state"
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(state))
    return state


def test_cli_a_docker_root_without_containers_is_refused_before_the_engine_is_asked(tmp_path, state_dir, monkeypatch):
    from docker_fw import cli

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    err: list[str] = []
    code = cli.run(["import-legacy", "--docker-root", str(tmp_path / "nowhere")], out=[].append, err=err.append)
    assert code == 2
    assert err == [
        f"docker-fw import-legacy: {tmp_path / 'nowhere' / 'containers'} is no directory: name the engine's "
        "data root with --docker-root ('docker info' shows it as Docker Root Dir)"
    ]
    assert not state_dir.exists()


def test_cli_dry_run_creates_no_store_and_prints_a_script(host, state_dir):
    host.write_fixtures()
    code, out, err = cli_run(host, "import-legacy", "--docker-root", str(host.root), "--dry-run")
    assert (code, err) == (0, [])
    assert [line for line in out if not line.startswith("#")] == IMPORTED
    assert not state_dir.exists()  # opened read-only: nothing created
    code, out, err = cli_run(host, "import-legacy", "--docker-root", str(host.root))
    assert (code, err) == (0, [])
    code, listed, _ = cli_run(host, "ls")
    assert listed == IMPORTED


def test_cli_each_problem_is_one_line_then_exit_2(host, state_dir):
    host.write_fixtures()
    web = host.write("web", RULES_FILE, go_json({"Rules": [go_rule(Chain="OUTPUT"), go_rule(Filter="-j ACCEPT\n")]}))
    code, out, err = cli_run(host, "import-legacy", "--docker-root", str(host.root))
    assert code == 2
    assert [line.split(": ", 3)[:3] for line in err[:-1]] == [
        ["docker-fw", "warning", f"cannot import {web} Rules[0]"],
        ["docker-fw", "warning", f"cannot import {web} Rules[1]"],
    ]
    assert err[-1] == (
        "docker-fw import-legacy: 2 things in the old docker-fw's files cannot be imported (see the warnings): "
        "nothing was imported"
    )
    assert all("\n" not in line for line in err)
    assert cli_run(host, "ls")[1] == []


def test_cli_the_dry_run_is_a_script_that_records_the_same(host, state_dir, monkeypatch, tmp_path):
    import shlex

    host.write_fixtures()
    host.engine.start(host.engine.containers["batch"].id)  # add needs its containers running
    code, script, _ = cli_run(host, "import-legacy", "--docker-root", str(host.root), "--dry-run")
    assert code == 0
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "by-hand"))
    assert cli_run(host, "init")[0] == 0
    for line in script:
        if not line.startswith("#"):
            words = shlex.split(line)
            assert words[0] == "docker-fw"
            code, _, err = cli_run(host, *words[1:])
            assert (code, err) == (0, []), line
    assert cli_run(host, "ls")[1] == IMPORTED
