"""The service layer (actions.Service) with a fake engine, a fake firewall and a real store.

No root, no processes: ``fakes.FakeEngine`` stands for the Docker engine,
``fakes.FakeFirewall`` for iptables-save/-restore (Docker 20.10's layout,
batches applied in memory), and the store is a real SQLite one in a
temporary directory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import threading

import pytest

from docker_fw import hosts
from docker_fw.actions import AddRequest, Service

from docker_fw.backends import FirewallBackend
from docker_fw.backends.iptables.backend import IptablesBackend
from docker_fw.engine import Engine, PortInUseError
from docker_fw.errors import EngineError, FirewallError, UsageError
from docker_fw.backends.iptables.walk import Packet, forward
from docker_fw.model import AddressSpec, Kind, RuleSpec
from docker_fw.backends.iptables.rules import CHAIN_INTERNAL
from docker_fw.store import Store
from fakes import DOCKER_HOSTS_HEADER, FIRST_DYNAMIC_PORT, FakeEngine, FakeFirewall, hosts_lines_for

DYNAMIC_80 = {"80/tcp": [{"HostIp": "", "HostPort": ""}]}
FIXED_80 = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


def pinned(port: int, key: str = "80/tcp") -> dict:
    return {key: [{"HostIp": "", "HostPort": str(port)}]}


@pytest.fixture
def store(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(state))
    with Store.open(directory=str(state)) as opened:
        yield opened


class World:
    """One Docker host: the fake engine and firewall, the store, what docker-fw printed."""

    def __init__(self, tmp_path, store: Store):
        self.engine = FakeEngine(tmp_path / "engine")
        self.firewall = FakeFirewall()
        self.store = store
        self.out: list[str] = []
        self.warnings: list[str] = []

    def run(self) -> Service:
        """A new docker-fw run (a fresh engine snapshot)."""
        self.engine.forget()
        return Service(self.engine, self.firewall, self.store, out=self.out.append, warn=self.warnings.append)

    def ls(self) -> list[str]:
        lines: list[str] = []
        self.engine.forget()
        Service(self.engine, self.firewall, self.store, out=lines.append).ls([])
        return lines

    def record(self, *specs: RuleSpec) -> None:
        with self.store.transaction():
            for spec in specs:
                self.store.add(spec)

    def started(self) -> list[str]:
        return [name for name, _ in self.engine.start_calls]

    def state(self, name: str) -> str:
        return self.engine.containers[name].state

    def host_port(self, name: str, key: str = "80/tcp") -> str:
        return self.engine.inspect(name)["NetworkSettings"]["Ports"][key][0]["HostPort"]


@pytest.fixture
def world(tmp_path, store) -> World:
    return World(tmp_path, store)


def to_host_dns(owner: str) -> RuleSpec:
    """A simple rule for a container: it may query the host's DNS."""
    return RuleSpec(owner=owner, kind=Kind.INPUT, source=AddressSpec.self_(), dest=AddressSpec.host(), proto="udp", dport=53)


def test_allow_and_drop_change_which_connections_reach_the_published_port(world):
    """Flows, not lines: the walker says who reaches web's published port."""
    world.engine.add("web", "running", ips={"bridge": "172.17.0.2"}, port_bindings=FIXED_80)
    to_web = lambda src, port=80: Packet(src, "172.17.0.2", port, "eth0", "docker0")  # noqa: E731
    table = lambda: world.firewall.table  # noqa: E731
    assert forward(table(), to_web("198.51.100.2")) == "ACCEPT"  # Docker's default: anyone
    world.run().init()
    assert forward(table(), to_web("198.51.100.2")) == "DROP"
    world.run().allow("web", ["198.51.100.2"])
    assert forward(table(), to_web("198.51.100.2")) == "ACCEPT"
    assert forward(table(), to_web("198.51.100.3")) == "DROP"
    assert forward(table(), to_web("198.51.100.2", 22)) == "DROP"  # not published
    world.run().drop(["web"])
    assert forward(table(), to_web("198.51.100.2")) == "DROP"


# ============================================================================
# start: order
# ============================================================================


@pytest.fixture
def stack(world: World) -> World:
    """data <- db (volumes-from) <- app (link) <- sidecar (network container:app), all stopped."""
    e = world.engine
    e.add("data")
    e.add("db", volumes_from=["data:ro"])
    app = e.add("app", links=["/db:/app/db"], port_bindings=DYNAMIC_80)
    e.add("sidecar", network_mode=f"container:{app.id}")
    return world


class TestStartOrder:
    def test_dependencies_start_first(self, stack):
        order = stack.run().start(["sidecar", "app", "db", "data"])
        assert order == ["data", "db", "app", "sidecar"]
        assert stack.started() == ["data", "db", "app", "sidecar"]
        assert stack.out == ["data", "db", "app", "sidecar"]
        assert all(stack.state(n) == "running" for n in order)

    @pytest.mark.parametrize(
        "wiring",
        [
            {"links": ["/first:/second/alias"]},
            {"volumes_from": ["first:ro"]},
            {"network_mode": "container:FIRST_ID"},
        ],
        ids=["link", "volumes-from", "network-container"],
    )
    def test_each_kind_of_dependency_orders_the_start(self, world, wiring):
        first = world.engine.add("first")
        if wiring.get("network_mode"):
            wiring = {"network_mode": f"container:{first.id}"}
        world.engine.add("second", **wiring)
        assert world.run().start(["second", "first"]) == ["first", "second"]
        assert world.started() == ["first", "second"]

    def test_dry_run_prints_the_order_and_starts_nothing(self, stack):
        order = stack.run().start(["sidecar", "app", "db", "data"], dry_run=True)
        assert order == ["data", "db", "app", "sidecar"]
        assert stack.out == ["data", "db", "app", "sidecar"]
        assert stack.engine.start_calls == []
        assert stack.firewall.batches == []
        assert all(stack.state(n) == "exited" for n in order)
        assert stack.store.hostconfig("app") is None

    def test_dependency_outside_the_selection_is_refused(self, stack):
        with pytest.raises(UsageError) as info:
            stack.run().start(["app", "sidecar"])
        message = str(info.value)
        assert "db" in message and "--pull-deps" in message
        assert stack.engine.start_calls == []

    def test_dry_run_refuses_it_too(self, stack):
        with pytest.raises(UsageError, match="--pull-deps"):
            stack.run().start(["app"], dry_run=True)
        assert stack.out == []

    def test_pull_deps_starts_the_dependencies_first(self, stack):
        assert stack.run().start(["app"], pull_deps=True) == ["data", "db", "app"]
        assert stack.started() == ["data", "db", "app"]
        assert stack.state("sidecar") == "exited"

    def test_pulled_dependency_that_runs_is_not_started_again(self, stack):
        stack.engine.start(stack.engine.containers["data"].id)
        stack.engine.start_calls.clear()
        assert stack.run().start(["db"], pull_deps=True) == ["data", "db"]
        assert stack.started() == ["db"]
        assert stack.out == ["data", "db"]

    def test_two_cycle_is_refused_and_named(self, world):
        world.engine.add("a", links=["/b:/a/b"])
        world.engine.add("b", links=["/a:/b/a"])
        with pytest.raises(UsageError) as info:
            world.run().start(["a", "b"])
        assert "dependency cycle: a -> b -> a" in str(info.value)
        with pytest.raises(UsageError, match="a -> b -> a"):
            world.run().start(["a"], pull_deps=True)
        assert world.engine.start_calls == []

    def test_three_cycle_over_all_kinds_is_refused_and_named(self, world):
        e = world.engine
        x = e.add("x", links=["/y:/x/y"])
        e.add("y", volumes_from=["z:ro"])
        e.add("z", network_mode=f"container:{x.id}")
        with pytest.raises(UsageError) as info:
            world.run().start(["x", "y", "z"])
        assert "dependency cycle: x -> y -> z -> x" in str(info.value)
        assert world.engine.start_calls == []

    def test_cycle_among_dependencies_is_refused_before_starting_the_rest(self, world):
        e = world.engine
        e.add("free")
        e.add("a", links=["/b:/a/b"])
        e.add("b", links=["/a:/b/a"])
        with pytest.raises(UsageError, match="cycle"):
            world.run().start(["free", "a", "b"])
        assert world.engine.start_calls == []

    def test_unknown_container_is_an_engine_error_and_nothing_starts(self, stack):
        with pytest.raises(EngineError, match="no such container: nosuch"):
            stack.run().start(["data", "nosuch"])
        assert stack.engine.start_calls == []

    def test_dependency_that_no_longer_exists(self, world):
        world.engine.add("app", links=["/gone:/app/gone"])
        with pytest.raises(EngineError, match="gone"):
            world.run().start(["app"], pull_deps=True)
        assert world.engine.start_calls == []

    def test_no_container_named(self, world):
        with pytest.raises(UsageError):
            world.run().start([])

    def test_same_container_twice_by_name_and_id_starts_once(self, world):
        c = world.engine.add("solo")
        assert world.run().start(["solo", c.id[:12]]) == ["solo"]
        assert world.started() == ["solo"]

    def test_running_and_paused_containers_are_not_started_again(self, world):
        e = world.engine
        e.add("up", state="running")
        e.add("sleepy", state="paused")
        e.add("down")
        assert world.run().start(["up", "sleepy", "down"]) == ["up", "sleepy", "down"]
        assert world.started() == ["down"]
        assert world.out == ["up", "sleepy", "down"]
        assert (world.state("up"), world.state("sleepy"), world.state("down")) == ("running", "paused", "running")

    def test_paused_pauses_only_what_it_started(self, world):
        e = world.engine
        e.add("up", state="running")
        e.add("down")
        world.run().start(["up", "down"], paused=True)
        assert e.pause_calls == ["down"]
        assert world.state("up") == "running"
        assert world.state("down") == "paused"

    def test_each_container_is_protected_before_the_next_starts(self, stack):
        stack.record(*(to_host_dns(n) for n in ("data", "db", "app")))
        seen: dict[str, set[str]] = {}
        stack.engine.on_start = lambda name: seen.setdefault(name, stack.firewall.owners())
        stack.run().start(["app"], pull_deps=True)
        assert seen == {"data": set(), "db": {"data"}, "app": {"data", "db"}}
        assert stack.firewall.owners() == {"data", "db", "app"}
        rule = stack.firewall.ours("app")[0]
        assert rule.args[:4] == ("-s", "172.17.0.12/32", "-d", "172.17.0.1/32")

    def test_rules_of_a_container_started_paused_are_applied(self, world):
        world.engine.add("down", ips={"bridge": "172.17.0.40"})
        world.record(to_host_dns("down"))
        world.run().start(["down"], paused=True)
        assert world.state("down") == "paused"
        assert [r.args[:2] for r in world.firewall.ours("down")] == [("-s", "172.17.0.40/32")]


class TestStartJobs:
    """start --jobs N: independent branches at once, dependencies still first."""

    def test_dependencies_run_and_are_protected_before_dependants_start(self, stack):
        stack.record(*(to_host_dns(n) for n in ("data", "db", "app")))
        running_at: dict[str, set[str]] = {}
        protected_at: dict[str, set[str]] = {}

        def on_start(name):
            running_at[name] = {n for n, c in stack.engine.containers.items() if c.state == "running"}
            protected_at[name] = stack.firewall.owners()

        stack.engine.on_start = on_start
        order = stack.run().start(["sidecar", "app", "db", "data"], jobs=3)
        assert order == ["data", "db", "app", "sidecar"]
        assert sorted(stack.started()) == sorted(order)
        assert sorted(stack.out) == sorted(order)
        assert "data" in running_at["db"] and "db" in running_at["app"] and "app" in running_at["sidecar"]
        assert "data" in protected_at["db"] and {"data", "db"} <= protected_at["app"]
        assert stack.firewall.owners() == {"data", "db", "app"}

    def test_independent_containers_start_at_once(self, world):
        for name in ("one", "two"):
            world.engine.add(name)
        both_in_start = threading.Barrier(2, timeout=5)
        world.engine.on_start = lambda name: both_in_start.wait()
        world.run().start(["one", "two"], jobs=2)
        assert sorted(world.started()) == ["one", "two"]
        assert world.state("one") == world.state("two") == "running"

    def test_failure_names_the_container_and_stops_its_dependants(self, stack):
        stack.engine.failures["db"] = [EngineError("start db: boom")]
        with pytest.raises(EngineError) as info:
            stack.run().start(["sidecar", "app", "db", "data"], jobs=2)
        assert str(info.value).startswith("db: ")
        assert "boom" in str(info.value)
        assert stack.started() == ["data", "db"]
        assert (stack.state("app"), stack.state("sidecar")) == ("exited", "exited")

    def test_paused_pauses_only_what_it_started(self, world):
        world.engine.add("up", state="running")
        world.engine.add("a")
        world.engine.add("b")
        world.run().start(["up", "a", "b"], paused=True, jobs=3)
        assert sorted(world.engine.pause_calls) == ["a", "b"]
        assert world.state("up") == "running"

    def test_saved_ports_are_asked_for_in_parallel_too(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.engine.add("other")
        world.run().start(["app", "other"], jobs=2)
        assert ("app", pinned(FIRST_DYNAMIC_PORT)) in world.engine.start_calls
        assert world.host_port("app") == str(FIRST_DYNAMIC_PORT)


# ============================================================================
# start: saved host configuration
# ============================================================================


def saved_then_stopped(world: World, name: str, **config) -> None:
    """A running container whose host configuration is saved, then stopped."""
    world.engine.add(name, state="running", **config)
    world.run().save_hostconfig([name])
    world.engine.stop(name)
    world.out.clear()


class TestSavedHostConfig:
    def test_save_reports_the_ports(self, world):
        world.engine.add("app", state="running", port_bindings=DYNAMIC_80)
        world.run().save_hostconfig(["app"])
        assert world.out == [f"app: host configuration saved (ports 80/tcp->{FIRST_DYNAMIC_PORT})"]
        saved = world.store.hostconfig("app")
        assert saved["dynamic"] is True
        assert saved["bindings"] == pinned(FIRST_DYNAMIC_PORT)

    def test_save_needs_a_running_container(self, world):
        world.engine.add("app", port_bindings=DYNAMIC_80)
        with pytest.raises(EngineError, match="running"):
            world.run().save_hostconfig(["app"])
        assert world.store.hostconfig("app") is None

    def test_dynamic_ports_are_asked_for_again(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.run().start(["app"])
        assert world.engine.start_calls == [("app", pinned(FIRST_DYNAMIC_PORT))]
        assert world.host_port("app") == str(FIRST_DYNAMIC_PORT)
        assert not any("changed" in w for w in world.warnings)
        assert world.store.hostconfig("app")["bindings"] == pinned(FIRST_DYNAMIC_PORT)

    def test_without_the_record_the_engine_picks_a_new_port(self, world):
        """The control for the test above: the fake engine does move the port on."""
        world.engine.add("app", state="running", port_bindings=DYNAMIC_80)
        world.engine.stop("app")
        world.run().start(["app"])
        assert world.engine.start_calls == [("app", None)]
        assert world.host_port("app") == str(FIRST_DYNAMIC_PORT + 1)

    def test_fixed_ports_are_started_without_bindings(self, world):
        saved_then_stopped(world, "fixed", port_bindings=FIXED_80)
        assert world.store.hostconfig("fixed")["dynamic"] is False
        world.run().start(["fixed"])
        assert world.engine.start_calls == [("fixed", None)]
        assert world.engine.pin_queries == 0
        assert world.host_port("fixed") == "8080"

    def test_engine_that_cannot_pin_starts_without_and_warns(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.engine.can_pin = False
        world.run().start(["app"])
        assert world.engine.start_calls == [("app", None)]
        new = FIRST_DYNAMIC_PORT + 1
        assert world.host_port("app") == str(new)
        assert f"app: host ports changed: 80/tcp: {FIRST_DYNAMIC_PORT} -> {new}" in world.warnings
        assert world.store.hostconfig("app")["bindings"] == pinned(new)  # saved again

    def test_engine_is_asked_once_whether_it_can_pin(self, world):
        saved_then_stopped(world, "one", port_bindings=DYNAMIC_80)
        saved_then_stopped(world, "two", port_bindings=DYNAMIC_80)
        world.run().start(["one", "two"])
        assert world.engine.pin_queries == 1
        assert [b for _, b in world.engine.start_calls] == [pinned(FIRST_DYNAMIC_PORT), pinned(FIRST_DYNAMIC_PORT + 1)]

    def test_taken_saved_port_falls_back_to_engine_assigned_ports(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.engine.hold_port(FIRST_DYNAMIC_PORT)
        world.run().start(["app"])
        assert world.engine.start_calls == [
            ("app", pinned(FIRST_DYNAMIC_PORT)),
            ("app", {"80/tcp": [{"HostIp": "", "HostPort": ""}]}),
        ]
        assert world.state("app") == "running"
        new = FIRST_DYNAMIC_PORT + 1
        assert world.host_port("app") == str(new)
        fallback = [w for w in world.warnings if "could not get its saved host ports back" in w]
        assert len(fallback) == 1 and fallback[0].startswith("app:")
        assert "port is already allocated" in fallback[0]
        assert f"app: host ports changed: 80/tcp: {FIRST_DYNAMIC_PORT} -> {new}" in world.warnings
        assert world.store.hostconfig("app")["bindings"] == pinned(new)

    def test_fallback_keeps_a_specific_host_ip(self, world):
        local = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        saved_then_stopped(world, "app", port_bindings=local)
        world.engine.hold_port(FIRST_DYNAMIC_PORT)
        world.run().start(["app"])
        assert world.engine.start_calls[-1] == ("app", {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})

    def test_next_start_asks_for_the_port_it_fell_back_to(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.engine.hold_port(FIRST_DYNAMIC_PORT)
        world.run().start(["app"])
        world.engine.stop("app")
        world.engine.start_calls.clear()
        world.warnings.clear()
        world.run().start(["app"])
        assert world.engine.start_calls == [("app", pinned(FIRST_DYNAMIC_PORT + 1))]
        assert not any("changed" in w for w in world.warnings)

    def test_fallback_that_fails_too_raises_and_keeps_the_record(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        before = world.store.hostconfig("app")
        world.engine.failures["app"] = [PortInUseError("start: port is already allocated"), EngineError("start: no space left")]
        with pytest.raises(EngineError, match="no space left"):
            world.run().start(["app"])
        assert len(world.engine.start_calls) == 2
        assert world.store.hostconfig("app") == before

    def test_fixed_port_container_is_not_retried(self, world):
        saved_then_stopped(world, "fixed", port_bindings=FIXED_80)
        world.engine.hold_port(8080)
        with pytest.raises(EngineError, match="port is already allocated"):
            world.run().start(["fixed"])
        assert world.engine.start_calls == [("fixed", None)]
        assert world.state("fixed") == "exited"

    def test_fallback_keeps_fixed_host_ports(self, world):
        mixed = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "443/tcp": [{"HostIp": "", "HostPort": ""}]}
        saved_then_stopped(world, "app", port_bindings=mixed)
        assert world.store.hostconfig("app")["bindings"]["443/tcp"] == [{"HostIp": "", "HostPort": str(FIRST_DYNAMIC_PORT)}]
        world.engine.hold_port(FIRST_DYNAMIC_PORT)  # only the dynamic one is taken
        world.run().start(["app"])
        assert world.engine.start_calls[-1] == (
            "app",
            {"443/tcp": [{"HostIp": "", "HostPort": ""}], "80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        )
        assert world.host_port("app", "80/tcp") == "8080"

    def test_changed_wiring_refuses_before_anything_starts(self, world):
        saved_then_stopped(world, "db")
        saved_then_stopped(world, "app", links=["/db:/app/db"], port_bindings=DYNAMIC_80)
        # Recreated behind docker-fw's back with another link.
        world.engine.containers["app"].links = ["/db:/app/db", "/db:/app/database"]
        with pytest.raises(UsageError) as info:
            world.run().start(["db", "app"])
        message = str(info.value)
        assert "app" in message and "links" in message and "docker-fw save-hostconfig app" in message
        assert world.engine.start_calls == []  # not even db, which comes first
        assert world.firewall.batches == []

    @pytest.mark.parametrize(
        "change, field",
        [
            ({"volumes_from": ["data"]}, "volumes_from"),
            ({"network_mode": "host"}, "network_mode"),
            ({"port_bindings": {**DYNAMIC_80, "443/tcp": [{"HostIp": "", "HostPort": ""}]}}, "published"),
            ({"publish_all": True}, "publish_all"),
        ],
    )
    def test_each_wiring_change_is_named(self, world, change, field):
        world.engine.add("data")
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        for attr, value in change.items():
            setattr(world.engine.containers["app"], attr, value)
        with pytest.raises(UsageError, match=field):
            world.run().start(["app"], pull_deps=True)
        assert world.engine.start_calls == []

    def test_host_ports_pinned_in_the_config_are_not_a_wiring_change(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.engine.containers["app"].port_bindings = pinned(FIRST_DYNAMIC_PORT)
        world.run().start(["app"])
        assert world.started() == ["app"]

    def test_changed_wiring_of_a_running_container_does_not_block(self, world):
        world.engine.add("up", state="running", port_bindings=DYNAMIC_80)
        world.run().save_hostconfig(["up"])
        world.engine.containers["up"].links = ["/x:/up/x"]
        world.engine.add("x", state="running")
        assert world.run().start(["x", "up"]) == ["x", "up"]
        assert world.engine.start_calls == []

    def test_record_is_saved_after_start(self, world):
        saved_then_stopped(world, "app", port_bindings=DYNAMIC_80)
        world.store.save_hostconfig("app", {**world.store.hostconfig("app"), "bindings": pinned(40000)})
        world.run().start(["app"])
        assert world.engine.start_calls == [("app", pinned(40000))]
        assert world.store.hostconfig("app")["bindings"] == pinned(40000)
        assert world.store.hostconfig("app")["id"] == world.engine.containers["app"].id


# ============================================================================
# add-two-ways, replay, drop: rules and /etc/hosts entries
# ============================================================================

TWO_WAYS = "docker-fw add-two-ways web --source=cache --dest=. --dport=80 --protocol=tcp"


@pytest.fixture
def pair(world: World) -> World:
    """web and cache running on the default bridge; cache's hosts file has a line of the admin's."""
    world.engine.add("web", state="running", ips={"bridge": "172.17.0.2"})
    world.engine.add("cache", state="running", ips={"bridge": "172.17.0.4"})
    with open(world.engine.containers["cache"].hosts_path, "a") as handle:
        handle.write("10.9.9.9\tkeepme\n")
    return world


def two_ways(world: World):
    return world.run().add_two_ways([AddRequest(container="web", source="cache", dport=80)])


def web_rules(world: World) -> list[tuple[str, ...]]:
    return [r.args[:4] for r in world.firewall.ours("web")]


class TestTwoWays:
    def test_records_the_rule_and_the_hosts_entry(self, pair):
        before = pair.engine.hosts_text("cache")
        two_ways(pair)
        assert f"recorded: {TWO_WAYS}" in pair.out
        assert "cache: /etc/hosts updated" in pair.out
        assert pair.store.host_entries() == {"cache": ["web"]}
        [rule] = pair.firewall.ours("web")
        assert rule.chain == CHAIN_INTERNAL
        assert rule.args[:4] == ("-s", "172.17.0.4/32", "-d", "172.17.0.2/32")
        assert rule.target() == "ACCEPT"
        # Our line goes first; the rest of the file is kept as it was.
        text = pair.engine.hosts_text("cache")
        assert text == "172.17.0.2\tweb\t# docker-fw\n" + before
        assert "keepme" in text
        assert pair.engine.hosts_text("web").count("docker-fw") == 0

    def test_ls_prints_it_as_add_two_ways(self, pair):
        two_ways(pair)
        assert pair.ls() == [TWO_WAYS]

    def test_again_changes_nothing(self, pair):
        two_ways(pair)
        text = pair.engine.hosts_text("cache")
        batches = len(pair.firewall.batches)
        pair.out.clear()
        two_ways(pair)
        assert f"already recorded: {TWO_WAYS}" in pair.out
        assert "cache: /etc/hosts updated" not in pair.out
        assert pair.engine.hosts_text("cache") == text
        assert len(pair.firewall.batches) == batches
        assert len(pair.firewall.ours("web")) == 1

    def test_source_must_be_a_container(self, pair):
        with pytest.raises(UsageError, match="another container"):
            pair.run().add_two_ways([AddRequest(container="web", source="10.1.2.0/24", dport=80)])
        assert pair.ls() == []
        assert pair.firewall.batches == []

    def test_replay_after_the_owner_moved_rewrites_the_line(self, pair):
        two_ways(pair)
        pair.engine.stop("web")
        pair.engine.move("web", "bridge", "172.17.0.9")
        pair.engine.start(pair.engine.containers["web"].id)
        pair.out.clear()
        pair.run().replay(["web"])
        assert hosts_lines_for(pair.engine.hosts_text("cache"), "web") == ["172.17.0.9\tweb\t# docker-fw"]
        assert "keepme" in pair.engine.hosts_text("cache")
        assert web_rules(pair) == [("-s", "172.17.0.4/32", "-d", "172.17.0.9/32")]
        assert "cache: /etc/hosts updated" in pair.out
        assert "replay: 1 rule(s) added, 1 removed" in pair.out

    def test_replay_dry_run_says_so_and_writes_nothing(self, pair):
        two_ways(pair)
        pair.engine.move("web", "bridge", "172.17.0.9")
        text = pair.engine.hosts_text("cache")
        batches = len(pair.firewall.batches)
        pair.out.clear()
        plan = pair.run().replay([], dry_run=True)
        assert plan.hosts == ["cache"]
        assert "would rewrite /etc/hosts of cache" in pair.out
        assert pair.engine.hosts_text("cache") == text
        assert len(pair.firewall.batches) == batches

    def test_start_of_the_owner_updates_the_source(self, pair):
        two_ways(pair)
        pair.engine.stop("web")
        pair.engine.move("web", "bridge", "172.17.0.9")
        pair.run().start(["web"])
        assert hosts_lines_for(pair.engine.hosts_text("cache"), "web") == ["172.17.0.9\tweb\t# docker-fw"]
        assert web_rules(pair) == [("-s", "172.17.0.4/32", "-d", "172.17.0.9/32")]

    def test_start_of_the_source_puts_the_line_back(self, pair):
        """Docker writes a fresh hosts file on every start; start puts our line back in it."""
        two_ways(pair)
        pair.engine.stop("cache")
        pair.engine.move("cache", "bridge", "172.17.0.7")
        pair.run().start(["cache"])
        text = pair.engine.hosts_text("cache")
        assert text.startswith("172.17.0.2\tweb\t# docker-fw\n" + DOCKER_HOSTS_HEADER)
        assert web_rules(pair) == [("-s", "172.17.0.7/32", "-d", "172.17.0.2/32")]

    def test_stopped_owner_line_and_rule_are_withdrawn(self, pair):
        two_ways(pair)
        pair.engine.stop("web")
        pair.run().replay([])
        assert hosts_lines_for(pair.engine.hosts_text("cache"), "web") == []
        assert pair.firewall.ours("web") == []
        assert any("hosts entry for web in cache not applied" in w for w in pair.warnings)
        assert pair.ls() == [TWO_WAYS]  # still recorded

    def test_drop_of_the_owner_removes_the_line(self, pair):
        two_ways(pair)
        pair.out.clear()
        pair.run().drop(["web"])
        text = pair.engine.hosts_text("cache")
        assert hosts_lines_for(text, "web") == []
        assert "docker-fw" not in text
        assert "10.9.9.9\tkeepme" in text
        assert pair.firewall.ours("web") == []
        assert pair.ls() == []
        assert pair.store.host_entries() == {}
        assert "web: dropped 1 rule" in pair.out
        assert "cache: /etc/hosts updated" in pair.out

    def test_failing_restore_changes_nothing(self, pair):
        text = pair.engine.hosts_text("cache")
        pair.firewall.fail = FirewallError("iptables refused the change, nothing was applied: -A ...")
        with pytest.raises(FirewallError):
            two_ways(pair)
        assert pair.ls() == []
        assert pair.store.host_entries() == {}
        assert pair.store.rules() == []
        assert pair.engine.hosts_text("cache") == text
        assert pair.firewall.ours() == []

    def test_failing_restore_on_drop_keeps_the_record(self, pair):
        two_ways(pair)
        text = pair.engine.hosts_text("cache")
        pair.firewall.fail = FirewallError("iptables refused the change")
        with pytest.raises(FirewallError):
            pair.run().drop(["web"])
        assert pair.ls() == [TWO_WAYS]
        assert pair.store.host_entries() == {"cache": ["web"]}
        assert pair.engine.hosts_text("cache") == text
        assert len(pair.firewall.ours("web")) == 1

    def test_failing_hosts_file_leaves_firewall_and_record_agreeing(self, pair, tmp_path):
        pair.engine.containers["cache"].hosts_path = str(tmp_path / "gone" / "hosts")
        with pytest.raises(EngineError, match="hosts file"):
            two_ways(pair)
        assert bool(pair.firewall.ours("web")) == bool(pair.ls())


# ============================================================================
# Hostile hosts files: a container's root user writes its own /etc/hosts
# ============================================================================

HOSTS_BOUND = 1 << 20  # the most docker-fw reads of a hosts file (README: 1 MiB)
NOT_UTF8 = b"# caf\xe9 \xff\xfe\x80 written by root in the container\n"

# How the container (or whoever) made its hosts file hostile -> why docker-fw refuses it.
HOSTILE = {
    "too large": "larger than 1 MiB, the most docker-fw reads",
    "a symlink": "a symbolic link (docker-fw follows none)",
    "a FIFO": "a FIFO",
    "a directory": "a directory",
}


def make_hostile(path: pathlib.Path, how: str) -> None:
    """Replace the hosts file at PATH by what HOSTILE names (a FIFO no one writes to:
    opening it for reading the usual way would block forever)."""
    path.unlink()
    if how == "too large":
        path.write_bytes(b"#" * HOSTS_BOUND + b"\n")
    elif how == "a symlink":
        (path.parent / "elsewhere").write_bytes(b"10.0.0.1\tprecious\n")
        path.symlink_to(path.parent / "elsewhere")
    elif how == "a FIFO":
        os.mkfifo(path)
    elif how == "a directory":
        path.mkdir()


def hosts_bytes(world: World, name: str) -> bytes:
    return pathlib.Path(world.engine.containers[name].hosts_path).read_bytes()


@pytest.fixture
def trio(pair: World) -> World:
    """pair, plus 'evil', whose hosts file also gets a line for web (add-two-ways)."""
    pair.engine.add("evil", state="running", ips={"bridge": "172.17.0.6"})
    pair.run().add_two_ways([AddRequest(container="web", source="cache", dport=80),
                             AddRequest(container="web", source="evil", dport=80)])
    pair.engine.move("web", "bridge", "172.17.0.9")  # web restarted elsewhere
    pair.out.clear()
    return pair


def hosts_problems(world: World) -> list[str]:
    return [line for line in world.run().check() if line.startswith("hosts")]


def web_is_at(world: World, ip: str) -> bool:
    """cache's hosts line and both rules for web follow web to IP."""
    return (hosts_lines_for(world.engine.hosts_text("cache"), "web") == [f"{ip}\tweb\t# docker-fw"]
            and sorted(web_rules(world)) == [("-s", f"172.17.0.{n}/32", "-d", f"{ip}/32") for n in (4, 6)])


class TestHostileHostsFile:
    def test_bytes_that_are_not_utf8_are_kept_and_our_line_written(self, trio):
        path = pathlib.Path(trio.engine.containers["evil"].hosts_path)
        with open(path, "ab") as handle:
            handle.write(NOT_UTF8)
        foreign = path.read_bytes().replace(b"172.17.0.2\tweb\t# docker-fw\n", b"")
        trio.run().replay([])
        assert path.read_bytes() == b"172.17.0.9\tweb\t# docker-fw\n" + foreign
        assert web_is_at(trio, "172.17.0.9")
        assert hosts_problems(trio) == []

    @pytest.mark.parametrize("how", HOSTILE)
    def test_replay_applies_everything_else_then_fails_naming_it(self, trio, how):
        make_hostile(pathlib.Path(trio.engine.containers["evil"].hosts_path), how)
        with pytest.raises(EngineError, match="^hosts file of evil not updated .*; everything else was applied$"):
            trio.run().replay([])
        assert web_is_at(trio, "172.17.0.9")
        assert "cache: /etc/hosts updated" in trio.out
        [warning] = [w for w in trio.warnings if "evil" in w]
        assert warning.startswith("cannot update evil's hosts file ") and warning.endswith(HOSTILE[how])
        if how == "a symlink":
            assert (pathlib.Path(trio.engine.containers["evil"].hosts_path).parent / "elsewhere").read_bytes() == (
                b"10.0.0.1\tprecious\n"
            )

    @pytest.mark.parametrize("how", HOSTILE)
    def test_watch_batch_goes_on_and_the_next_one_retries(self, trio, how):
        """What 'watch' runs (sync): no error; the others are done, the failing one is
        warned about, and tried again (here: it was repaired) by the next batch."""
        path = pathlib.Path(trio.engine.containers["evil"].hosts_path)
        make_hostile(path, how)
        plan = trio.run().sync(None)
        assert [owner for owner, _ in plan.hosts_failed] == ["evil"]
        assert web_is_at(trio, "172.17.0.9")
        assert any(w.startswith("cannot update evil's hosts file") for w in trio.warnings)
        os.rmdir(path) if path.is_dir() else path.unlink()
        path.write_bytes(DOCKER_HOSTS_HEADER.encode())
        assert trio.run().sync(None).hosts_failed == []
        assert hosts_lines_for(trio.engine.hosts_text("evil"), "web") == ["172.17.0.9\tweb\t# docker-fw"]

    @pytest.mark.parametrize("how", HOSTILE)
    def test_check_lists_it_as_a_problem(self, trio, how):
        trio.run().replay([])
        make_hostile(pathlib.Path(trio.engine.containers["evil"].hosts_path), how)
        problems = hosts_problems(trio)
        assert len(problems) == 1
        assert problems[0].startswith("hosts (evil): cannot read evil's hosts file ")
        assert problems[0].endswith(HOSTILE[how])

    def test_replay_dry_run_changes_nothing_and_fails_naming_it(self, trio):
        make_hostile(pathlib.Path(trio.engine.containers["evil"].hosts_path), "too large")
        cache, batches = hosts_bytes(trio, "cache"), len(trio.firewall.batches)
        with pytest.raises(EngineError, match="^hosts file of evil cannot be updated"):
            trio.run().replay([], dry_run=True)
        assert "would rewrite /etc/hosts of cache" in trio.out
        assert hosts_bytes(trio, "cache") == cache and len(trio.firewall.batches) == batches

    def test_drop_goes_on_then_fails_naming_it(self, trio):
        make_hostile(pathlib.Path(trio.engine.containers["evil"].hosts_path), "too large")
        with pytest.raises(EngineError, match="^hosts file of evil not updated"):
            trio.run().drop(["web"])
        assert trio.ls() == [] and trio.store.host_entries() == {}
        assert trio.firewall.ours("web") == []
        assert hosts_lines_for(trio.engine.hosts_text("cache"), "web") == []

    @pytest.mark.parametrize("how", HOSTILE)
    def test_add_two_ways_for_it_fails_with_one_line_and_changes_nothing(self, pair, how):
        pair.engine.add("evil", state="running", ips={"bridge": "172.17.0.6"})
        make_hostile(pathlib.Path(pair.engine.containers["evil"].hosts_path), how)
        cache = hosts_bytes(pair, "cache")
        with pytest.raises(EngineError) as raised:
            pair.run().add_two_ways([AddRequest(container="web", source="cache", dport=80),
                                     AddRequest(container="web", source="evil", dport=80)])
        assert str(raised.value).startswith("cannot read evil's hosts file ")
        assert str(raised.value).endswith(HOSTILE[how]) and "\n" not in str(raised.value)
        assert pair.ls() == [] and pair.store.host_entries() == {}
        assert pair.firewall.batches == [] and pair.firewall.ours() == []
        assert hosts_bytes(pair, "cache") == cache

    def test_add_two_ways_failing_to_write_takes_back_the_lines_written(self, pair, monkeypatch):
        """The file turned hostile after it was read (between the check and the write):
        the rule and cache's line, already applied, are taken back."""
        pair.engine.add("evil", state="running", ips={"bridge": "172.17.0.6"})
        evil_path = pair.engine.containers["evil"].hosts_path
        cache = hosts_bytes(pair, "cache")
        real_update = hosts.update_hosts_file

        def update(path, entries):
            if path == evil_path:
                raise hosts.HostsFileError("a FIFO")
            return real_update(path, entries)

        monkeypatch.setattr(hosts, "update_hosts_file", update)
        with pytest.raises(EngineError, match="^cannot update evil's hosts file .*: a FIFO$"):
            pair.run().add_two_ways([AddRequest(container="web", source="cache", dport=80),
                                     AddRequest(container="web", source="evil", dport=80)])
        assert pair.ls() == [] and pair.store.host_entries() == {}
        assert pair.firewall.ours() == []
        assert hosts_bytes(pair, "cache") == cache


# ============================================================================
# Engine.start with saved ports: the start body (API 1.23)
# ============================================================================


class _RecordingApi:
    """The parts of docker.APIClient that Engine.start uses, recording the POST."""

    base_url = "http+docker://localhost"

    def __init__(self, host_config: dict):
        self.host_config = host_config
        self.posts: list[tuple[str, dict]] = []

    def inspect_container(self, ref):
        return {"Id": ref, "HostConfig": copy.deepcopy(self.host_config)}

    def _post(self, url, data=None, headers=None, **kwargs):
        self.posts.append((url, json.loads(data)))
        return object()

    def _raise_for_status(self, response):
        pass


class _Client:
    def __init__(self, api):
        self.api = api


CONTAINER_HOST_CONFIG = {
    "Links": ["/db:/app/db"],
    "VolumesFrom": ["data:ro"],
    "NetworkMode": "appnet",
    "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
    "PortBindings": DYNAMIC_80,
    "PublishAllPorts": False,
}


def test_pinned_start_posts_the_bindings_to_api_1_23():
    api = _RecordingApi(CONTAINER_HOST_CONFIG)
    Engine(client=_Client(api)).start("abc123", pinned(32768))
    [(url, body)] = api.posts
    assert url == "http+docker://localhost/v1.23/containers/abc123/start"
    assert body["PortBindings"] == pinned(32768)


def test_pinned_start_keeps_the_rest_of_the_host_config():
    api = _RecordingApi(CONTAINER_HOST_CONFIG)
    Engine(client=_Client(api)).start("abc123", pinned(32768))
    [(_, body)] = api.posts
    for key in ("Links", "VolumesFrom", "NetworkMode", "RestartPolicy"):
        assert body.get(key) == CONTAINER_HOST_CONFIG[key], key
    assert body["PortBindings"] == pinned(32768)


class TestRename:
    """docker rename web www: rules are recorded by name, 'rename' moves them."""

    def test_moves_rules_references_hosts_entries_and_hostconfig(self, pair):
        pair.engine.add("db", state="running", ips={"bridge": "172.17.0.6"})
        two_ways(pair)  # web's rule naming cache, and cache's hosts line for web
        pair.run().add(Kind.INTERNAL, [AddRequest(container="db", source="web", dport=5432)])
        pair.run().add(Kind.ADD, [AddRequest(container="web", source="198.51.100.2", dport=80)])
        with pair.store.transaction():
            pair.store.save_hostconfig("web", {"links": []})
        pair.engine.rename("web", "www")
        pair.out.clear()
        plan = pair.run().rename("web", "www")
        assert "web -> www: 2 rules renamed" in pair.out
        assert pair.ls() == [
            "docker-fw add-internal db --source=www --dest=. --dport=5432 --protocol=tcp",
            "docker-fw add-two-ways www --source=cache --dest=. --dport=80 --protocol=tcp",
            "docker-fw add www --source=198.51.100.2 --dest=. --dport=80 --protocol=tcp",
        ]
        assert pair.store.host_entries() == {"cache": ["www"]}
        assert pair.store.hostconfig("www") == {"links": []} and pair.store.hostconfig("web") is None
        # iptables: the rules carry the new owner's tag, none of the old one's is left
        assert pair.firewall.ours("web") == []
        assert len(pair.firewall.ours("www")) == 2 and len(pair.firewall.ours("db")) == 1
        assert plan.changes
        # the hosts line names the new name, the admin's line is kept
        text = pair.engine.hosts_text("cache")
        assert hosts_lines_for(text, "www") == ["172.17.0.2\twww\t# docker-fw"]
        assert hosts_lines_for(text, "web") == [] and "10.9.9.9\tkeepme" in text
        # nothing left to do
        assert not pair.run().replay([], dry_run=True)

    @pytest.mark.parametrize("old, new, message", [
        ("nobody", "www", "nothing is recorded for nobody"),
        ("web", "web", "the same name"),
        ("web", "ghost", "no container is named ghost"),
    ])
    def test_refusals_change_nothing(self, pair, old, new, message):
        two_ways(pair)
        pair.engine.rename("web", "www")
        before = (pair.ls(), copy.deepcopy(pair.firewall.table), pair.store.host_entries())
        with pytest.raises(UsageError, match=message):
            pair.run().rename(old, new)
        assert (pair.ls(), pair.firewall.table, pair.store.host_entries()) == before

    def test_refused_while_a_container_still_has_the_old_name(self, pair):
        two_ways(pair)
        with pytest.raises(UsageError, match="a container named web still exists.*docker rename web www"):
            pair.run().rename("web", "www")

    def test_refused_when_the_new_name_has_records(self, pair):
        two_ways(pair)  # cache is named by web's rule and owns a hosts entry
        pair.engine.rename("web", "old-web")
        with pytest.raises(UsageError, match="already holds records for cache.*docker-fw drop cache"):
            pair.run().rename("web", "cache")


# ============================================================================
# a recorded --filter this version's grammar refuses (recorded by an older one)
# ============================================================================


class TestRecordedFilterOutsideTheGrammar:
    GOOD = RuleSpec(owner="web", kind=Kind.INTERNAL, source=AddressSpec.container("cache"),
                    dest=AddressSpec.self_(), dport=80)
    # as the denylist let it through: a lone '!' negated the -p after it
    BAD = RuleSpec(owner="web", kind=Kind.INTERNAL, source=AddressSpec.container("cache"),
                   dest=AddressSpec.self_(), dport=81, filter=("-i", "docker0", "!"))

    def applied_by_an_older_version(self, pair):
        """Both recorded, and the bad one live as the denylist's docker-fw rendered it."""
        from docker_fw.backends.iptables.reconcile import rule_line
        from docker_fw.backends.iptables.rules import render
        from docker_fw.resolve import ResolvedRule

        pair.record(self.GOOD, self.BAD)
        pair.run().replay([])  # makes our chains (and applies what this version accepts)
        old = render(ResolvedRule(
            "web", self.BAD.kind, "172.17.0.4/32", "172.17.0.2/32", self.BAD.proto,
            dport=self.BAD.dport, filter=self.BAD.filter,
        ))
        pair.firewall.restore("filter", [rule_line("-A", old.chain, old.argv())])
        assert any(r.args[-3] == old.comment for r in pair.firewall.ours("web"))
        pair.warnings.clear()
        pair.out.clear()

    def test_replay_withdraws_it_and_names_it(self, pair):
        self.applied_by_an_older_version(pair)
        pair.run().replay([])
        [kept] = pair.firewall.ours("web")
        assert "81" not in kept.args and "!" not in kept.args
        assert "80" in kept.args
        [warning] = pair.warnings
        assert warning.startswith("not applied (recorded filter refused by this version, re-add the rule: "
                                  "--filter: '!' at the end negates nothing")
        assert warning.endswith(self.BAD.describe())
        # still recorded, so that 'ls' shows it and 'drop' can forget it
        assert self.BAD.describe() in pair.ls()

    def test_check_names_it_and_applies_nothing(self, pair):
        self.applied_by_an_older_version(pair)
        batches = len(pair.firewall.batches)
        problems = pair.run().check()
        assert any(line.startswith("not applied (recorded filter refused") for line in pair.out)
        assert any(line.startswith("stale (web)") for line in pair.out)  # the old rule is still live
        assert len(pair.firewall.batches) == batches
        assert any(line.startswith("not applied (recorded filter refused") for line in problems)

    def test_check_counts_it_as_drift_once_the_old_rule_is_gone(self, pair):
        """Nothing stale is live any more, yet the record holds a rule that cannot be
        applied: check exits 1 (drift), not 0."""
        from docker_fw import cli

        self.applied_by_an_older_version(pair)
        pair.run().init()
        pair.run().replay([])  # removes the old live rule
        pair.out.clear()
        problems = pair.run().check()
        assert [line for line in problems if not line.startswith("not applied")] == []
        assert len(problems) == 1 and problems[0].endswith(self.BAD.describe())
        assert "check: no drift" not in pair.out
        assert cli.COMMANDS["check"].handler(pair.run(), None, None) == 1  # the exit code

    def test_a_stopped_container_is_not_drift(self, pair):
        pair.record(self.GOOD)
        pair.run().init()
        pair.run().replay([])
        assert pair.run().check() == []
        pair.engine.containers["cache"].state = "exited"
        pair.engine.containers["cache"].ips = {}
        pair.run().replay([])
        pair.out.clear()
        assert pair.run().check() == [] and pair.out[-1] == "check: no drift"
        assert any(line.startswith("not applied (") for line in pair.out)

    def test_words_that_are_not_text_are_named_escaped(self, pair):
        """Recorded before the grammar: a byte that was not UTF-8 (JSON keeps the
        surrogate), a newline; and a number, as a damaged record might hold."""
        odd = dataclasses.replace(self.BAD, filter=("-i", "eth\udce9\n", "-m", 7))
        pair.record(self.GOOD, odd)
        pair.run().replay([])
        assert len(pair.firewall.ours("web")) == 1
        [warning] = pair.warnings
        assert "'eth\\udce9\\n'" in warning
        lines = pair.ls()
        assert len(lines) == 2 and "eth\\udce9\\n" in lines[1] and lines[1].endswith(" -m 7'")
        for line in [warning, *lines]:
            assert line.isascii() and line.isprintable(), line
        pair.run().check()
        assert all(line.isascii() and line.isprintable() for line in pair.out)

    def test_never_applied_by_this_version(self, pair):
        pair.record(self.GOOD, self.BAD)
        pair.run().replay([])
        [applied] = pair.firewall.ours("web")
        assert "!" not in applied.args


# ============================================================================
# a backend that cannot express a rule (as the nftables backend refuses --filter)
# ============================================================================


class FilterlessBackend(FirewallBackend):
    """A FirewallBackend that holds no rule with a --filter: an IptablesBackend
    (over the fake firewall) whose expressible() refuses filters, the way an
    nftables backend refuses iptables matches."""

    def __init__(self, runner, family: int = 4):
        self._inner = IptablesBackend(runner, family)
        self.family, self.label = family, self._inner.label
        self.required, self.unmanaged_note = self._inner.required, self._inner.unmanaged_note

    def expressible(self, rule) -> str | None:
        return "this backend takes no --filter" if rule.filter else self._inner.expressible(rule)

    # The rest is the iptables backend's (explicitly: the protocol's own
    # methods would otherwise be inherited, and do nothing).
    def read(self):
        return self._inner.read()

    def plan(self, live, desired, scope):
        return self._inner.plan(live, desired, scope)

    def apply(self, live, changes) -> None:
        self._inner.apply(live, changes)

    def covers(self, network) -> bool:
        return self._inner.covers(network)

    def plan_init(self, live, bridges, engine_backend, existing):
        return self._inner.plan_init(live, bridges, engine_backend, existing)

    def ensure(self, live):
        return self._inner.ensure(live)

    def is_initialised(self, live, bridges, engine_backend=None) -> bool:
        return self._inner.is_initialised(live, bridges, engine_backend)

    def foreign_rules(self, live):
        return self._inner.foreign_rules(live)


class TestInexpressibleRules:
    @pytest.fixture
    def web(self, world: World) -> World:
        world.engine.add("web", state="running", ips={"bridge": "172.17.0.2"})
        return world

    def run(self, world: World) -> Service:
        world.engine.forget()
        return Service(world.engine, None, world.store, out=world.out.append, warn=world.warnings.append,
                       backends=[FilterlessBackend(world.firewall)])

    def test_a_rule_the_backend_cannot_express_is_refused_and_nothing_changes(self, web):
        rules_before = list(web.firewall.table.rules)
        request = AddRequest(container="web", source="198.51.100.2", dport=80, filter=("-m", "ttl", "--ttl-gt", "3"))
        with pytest.raises(UsageError) as exc:
            self.run(web).add(Kind.ADD, [request])
        assert str(exc.value) == "this backend takes no --filter" and exc.value.exit_code == 2
        assert web.store.rules() == [] and web.firewall.batches == [] and web.firewall.table.rules == rules_before

    def test_one_inexpressible_line_of_a_batch_refuses_the_batch(self, web):
        plain = AddRequest(container="web", source="198.51.100.2", dport=80)
        filtered = AddRequest(container="web", source="198.51.100.3", dport=80, filter=("-m", "ttl", "--ttl-gt", "3"))
        with pytest.raises(UsageError):
            self.run(web).add(Kind.ADD, [plain, filtered])
        assert web.store.rules() == [] and web.firewall.batches == []

    def test_the_same_rule_is_taken_where_the_backend_can_express_it(self, web):
        request = AddRequest(container="web", source="198.51.100.2", dport=80)
        self.run(web).add(Kind.ADD, [request])
        assert len(web.store.rules()) == 1
        assert len([r for r in web.firewall.table.rules if "docker-fw:web:" in r.line]) == 1

    def test_a_recorded_rule_the_backend_cannot_express_is_withdrawn_at_replay(self, web):
        filtered = RuleSpec("web", Kind.ADD, AddressSpec.from_text("198.51.100.3"), AddressSpec.self_(),
                            dport=80, filter=("-m", "ttl", "--ttl-gt", "3"))
        web.record(filtered)
        Service(web.engine, web.firewall, web.store).replay([])  # the iptables backend holds it
        assert [r for r in web.firewall.table.rules if "docker-fw:web:" in r.line]
        self.run(web).replay([])
        assert web.warnings == [f"not applied (this backend takes no --filter): {filtered.describe()}"]
        assert not [r for r in web.firewall.table.rules if "docker-fw:web:" in r.line]
