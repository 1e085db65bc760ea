"""Property-based fuzzing (hypothesis) of every user-facing input of the CLI.

Inputs: container names, addresses (-s/-d, allow's), ports (--sport/--dport),
protocols, --filter strings, --from lines and whole --from files, each drawn
from a mix of valid values and hostile ones (control characters, lone
surrogates, unicode look-alikes, very long strings, shell metacharacters,
iptables options).

The property, for every generated command line: docker-fw either

- refuses it: a non-zero exit code, exactly one line on stderr, nothing on
  stdout, and nothing changed (the firewall saw no restore batch, the store's
  records are the same), or
- applies it: exit 0, nothing on stderr, one "recorded:" or "already
  recorded:" line per rule; 'ls' prints each of those rules as that same
  command, which, run again (as argv and as a --from file), is "already
  recorded" and changes nothing; and 'check' finds no drift.

The world is pure: fakes.FakeEngine (web, db and app running, old exited),
fakes.FakeFirewall (Docker 20.10's layout, applied in memory) and a real
SQLite store in a temporary directory, seeded with 'init' and a few rules.
cli.run drives them through its ``backends`` argument.  Profiles (CI's
derandomised one, a longer one to run by hand) are in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import shlex
import shutil
import sqlite3
import sys
import tempfile
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfw_samples import render
from docker_fw import cli
from docker_fw.errors import one_line
from fakes import FakeEngine, FakeFirewall
from tests.fuzz_strategies import add_commands, addresses, container_names, external_addresses, from_files, mostly

# web publishes port 80 on 0.0.0.0 (allow needs a published port; on every address, a
# v4-only container is warned about: proxy_exposures); web and db share both
# networks, app is on appnet only, old is stopped.
CONTAINERS = {
    "web": dict(
        state="running", ips={"bridge": "172.17.0.10", "appnet": "172.18.0.10"},
        port_bindings={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}, exposed=("80/tcp",),
    ),
    "db": dict(state="running", ips={"bridge": "172.17.0.11", "appnet": "172.18.0.11"}),
    "app": dict(state="running", ips={"appnet": "172.18.0.12"}),
    "old": dict(state="exited", ips={"bridge": "172.17.0.13"}),
}

SEED_COMMANDS = (
    ["init"],
    ["add", "web", "--source", "203.0.113.0/24", "--dport", "80"],
    ["allow", "web", "198.51.100.7"],
    ["add-internal", "db", "--source", "app", "--dport", "5432"],
    ["add-two-ways", "db", "--source", "web", "--dport", "5432"],
    ["add-input", "app", "--source", ".", "--dest", "/", "--dport", "53", "-p", "udp"],
)


def make_engine(root: pathlib.Path) -> FakeEngine:
    engine = FakeEngine(root)
    for name, config in CONTAINERS.items():
        engine.add(name, **{**config, "ips": dict(config["ips"])})
    return engine


@dataclasses.dataclass(frozen=True)
class Run:
    code: int
    out: list[str]
    err: list[str]
    helped: bool = False  # argparse printed --help or --version (to stdout) and exited


@dataclasses.dataclass
class World:
    """One Docker host for one example: engine, firewall, store directory."""

    engine: FakeEngine
    firewall: FakeFirewall
    state: pathlib.Path
    scratch: pathlib.Path  # for --from files

    def backends(self, verbose):
        self.engine.forget()  # a new docker-fw run: a fresh engine snapshot
        return self.engine, self.firewall, None

    def run(self, argv: list[str]) -> Run:
        out: list[str] = []
        err: list[str] = []
        try:
            code = cli.run(argv, out=out.append, err=err.append, backends=self.backends)
        except SystemExit as exc:  # -h, --help, --version, or an abbreviation of them
            return Run(exc.code, out, err, helped=True)
        return Run(code, out, err)

    def ok(self, argv: list[str]) -> Run:
        result = self.run(argv)
        assert result.code == 0 and not result.err, (argv, result)
        return result

    def records(self) -> tuple[str, ...]:
        """Everything in the store, as SQL."""
        db = self.state / "state.db"
        if not db.exists():
            return ()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return tuple(conn.iterdump())
        finally:
            conn.close()

    def records_of(self, table: str) -> list[str]:
        """The INSERT statements of one table of the store."""
        return [sql for sql in self.records() if sql.startswith(f'INSERT INTO "{table}"')]

    def rules(self) -> tuple:
        table = self.firewall.table
        return (tuple(table.chains.items()), tuple(r.line for r in table.rules))

    def hosts(self) -> dict[str, str]:
        return {name: self.engine.hosts_text(name) for name in self.engine.containers}

    def write(self, data: bytes) -> str:
        path = self.scratch / f"rules-{len(list(self.scratch.iterdir()))}.txt"
        path.write_bytes(data)
        return str(path)


@contextlib.contextmanager
def _state_dir(path: pathlib.Path):
    old = os.environ.get("DOCKER_FW_STATE_DIR")
    os.environ["DOCKER_FW_STATE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["DOCKER_FW_STATE_DIR"]
        else:
            os.environ["DOCKER_FW_STATE_DIR"] = old


@dataclasses.dataclass(frozen=True)
class Base:
    """The seeded world every example starts from."""

    db: pathlib.Path
    table_text: str
    hosts: dict[str, str]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    root = tmp_path_factory.mktemp("fuzz-base")
    state = root / "state"
    world = World(make_engine(root / "engine"), FakeFirewall(), state, root)
    with _state_dir(state):
        for argv in SEED_COMMANDS:
            world.ok(argv)
        assert world.ok(["check"]).out == ["check: no drift"]
    return Base(state / "state.db", render(world.firewall.table), world.hosts())


@contextlib.contextmanager
def fresh(base: Base):
    with tempfile.TemporaryDirectory(prefix="dfw-fuzz-") as tmp:
        root = pathlib.Path(tmp)
        state = root / "state"
        state.mkdir(mode=0o700)
        shutil.copyfile(base.db, state / "state.db")
        os.chmod(state / "state.db", 0o600)
        scratch = root / "scratch"
        scratch.mkdir()
        engine = make_engine(root / "engine")
        for name, text in base.hosts.items():
            pathlib.Path(engine.containers[name].hosts_path).write_text(text)
        with _state_dir(state):
            yield World(engine, FakeFirewall(base.table_text), state, scratch)


# --- the property --------------------------------------------------------------------


def assert_one_line(result: Run) -> None:
    assert len(result.err) == 1, result
    line = result.err[0]
    assert line.isprintable(), repr(line)  # no newline, no escape, no lone surrogate
    assert line.startswith("docker-fw"), line
    assert one_line(line) == line


def refused_or_applied(world: World, argv: list[str]) -> Run:
    """Run ARGV and check the property of this module's docstring."""
    records, rules, hosts = world.records(), world.rules(), world.hosts()
    batches = len(world.firewall.batches)
    result = world.run(argv)
    event(f"exit {result.code}")
    if result.helped:
        assert (result.code, result.out, result.err) == (0, [], []), result
        assert world.firewall.batches[batches:] == [] and world.records() == records
        return result
    if result.code != 0:
        assert result.code in (2, 3, 4, 5), result
        assert_one_line(result)
        assert result.out == [], result
        assert world.firewall.batches[batches:] == [], "a refused command reached the firewall"
        assert world.rules() == rules
        assert world.records() == records, "a refused command changed the store"
        assert world.hosts() == hosts
        return result
    assert result.err == [], result
    commands = []
    for line in result.out:
        state, sep, command = line.partition(": ")
        if command == "/etc/hosts updated":  # add-two-ways: the source's hosts entry
            continue
        assert sep and state in ("recorded", "already recorded"), line
        commands.append(command)
    assert commands, result
    assert_listed_and_clean(world, commands)
    return result


def as_internal(command: str) -> str:
    """'ls' prints an add-internal rule whose source has a hosts line for the
    owner as add-two-ways (either re-creates the rule and that line)."""
    return command.replace("docker-fw add-two-ways ", "docker-fw add-internal ", 1)


def assert_listed_and_clean(world: World, commands: list[str]) -> None:
    """'ls' lists each command's rule; the command, and what 'ls' prints for it,
    re-create exactly that rule (as argv and as a --from file); 'check' is clean."""
    listed = {as_internal(line): line for line in world.ok(["ls"]).out}
    assert len(listed) == len(world.records_of("rules")), listed
    records, rules, hosts = world.records(), world.rules(), world.hosts()
    batches = len(world.firewall.batches)
    by_action: dict[str, list[str]] = {}
    for command in commands:
        assert as_internal(command) in listed, (command, sorted(listed.values()))
        for again in {command, listed[as_internal(command)]}:
            words = shlex.split(again)
            assert words[0] == "docker-fw", again
            result = world.ok(words[1:])
            assert result.out == [f"already recorded: {again}"], (again, result)
            by_action.setdefault(words[1], []).append(again)
    for action, lines in by_action.items():
        path = world.write(("\n".join(lines) + "\n").encode())
        result = world.ok([action, "--from", path])
        assert result.out == [f"already recorded: {line}" for line in lines], result
    assert world.firewall.batches[batches:] == [] and world.rules() == rules
    assert world.records() == records and world.hosts() == hosts
    check = world.run(["check"])
    assert (check.code, check.out, check.err) == (0, ["check: no drift"], []), check


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the tests ---------------------------------------------------------------------------


@FUZZ
@given(argv=add_commands())
def test_add_commands_are_refused_whole_or_applied_as_ls_prints_them(base, argv):
    with fresh(base) as world:
        refused_or_applied(world, argv)


@FUZZ
@given(container=mostly(st.just("web"), container_names), ips=st.lists(mostly(external_addresses, addresses), min_size=1, max_size=3))
def test_allow_is_refused_whole_or_applied_as_ls_prints_it(base, container, ips):
    with fresh(base) as world:
        refused_or_applied(world, ["allow", container, *ips])


@FUZZ
@given(action_and_data=from_files(), from_stdin=st.booleans())
def test_from_files_are_refused_whole_or_applied_as_ls_prints_them(base, action_and_data, from_stdin):
    action, data = action_and_data
    with fresh(base) as world:
        if not from_stdin:
            refused_or_applied(world, [action, "--from", world.write(data)])
            return
        with mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(data))):
            refused_or_applied(world, [action, "--from", "-"])


@FUZZ
@given(
    action=st.sampled_from(("ls", "drop", "replay", "replay --dry-run", "rename", "save-hostconfig",
                            "start --dry-run", "check", "gc --dry-run --days=0")),
    names=st.lists(container_names, max_size=3),
)
def test_commands_on_names_are_refused_whole_or_leave_no_drift(base, action, names):
    """ls, drop, replay, rename, ... with any names: refused with one line and
    nothing changed, or done, with nothing on stderr and no drift after."""
    with fresh(base) as world:
        argv = [*action.split(), *names]
        records, rules, batches = world.records(), world.rules(), len(world.firewall.batches)
        result = world.run(argv)
        event(f"exit {result.code}")
        if result.helped:
            assert result.code == 0 and world.records() == records, result
            return
        if result.code != 0:  # the world has no drift: check and dry runs exit 0 too
            assert result.code in (2, 3, 4, 5), result
            assert_one_line(result)
            assert result.out == []
            assert world.firewall.batches[batches:] == [] and world.rules() == rules
            assert world.records() == records
            return
        assert result.err == [], result
        assert all(line.isprintable() for line in result.out), result
        if action.startswith(("ls", "check")) or "--dry-run" in action:
            assert world.firewall.batches[batches:] == [] and world.records() == records
        assert world.run(["check"]).out == ["check: no drift"]
