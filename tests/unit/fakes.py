"""In-memory stand-ins for the Docker engine and iptables, for service-level tests.

``FakeEngine`` implements ``service.core.EngineView``, what ``actions.Service``
uses of ``engine.Engine`` (snapshot, inspect, start, pause,
accepts_start_with_hostconfig; ``SnapshotEngine`` only ``EngineFacts``) over a few
mutable containers, and behaves like a 20.10 engine where it matters:

- a snapshot is cached until ``snapshot(refresh=True)`` (or ``forget()``,
  which stands for a new docker-fw run);
- a stopped container has no addresses and no ``NetworkSettings.Ports``;
- ``State.Running`` is true for a paused container, and starting a paused
  container is refused;
- dynamic host ports come from an allocator that moves forward (32768, 32769,
  ...), a host port held by another container cannot be had ("port is
  already allocated"), and a port published on every address is reported
  twice, for 0.0.0.0 and for '::';
- a start rewrites the container's hosts file (``HostsPath``) from scratch.

``FakeFirewall`` implements ``backends.iptables.backend.Runner`` (what
``IptablesBackend`` runs): it holds a parsed filter table (Docker 20.10's
layout) and applies restore batches with ``backends.iptables.walk.apply_lines``;
it also answers the raw and nat tables of its text, which nothing changes.
"""

from __future__ import annotations

import copy
import pathlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dfw_samples import APP_NET, BRIDGE_NET, apply_lines, layout_2010_icc_false
from docker_fw.backends.iptables.backend import Runner
from docker_fw.engine import Container, Endpoint, Network, PortBinding, PortInUseError, Snapshot, kept_labels
from docker_fw.errors import EngineError
from docker_fw.backends.iptables.process import SavedRule, Table, parse_save
from docker_fw.backends.iptables.rules import OWN_CHAINS, parse_comment
from docker_fw.service.core import EngineFacts, EngineView

NETWORKS: dict[str, Network] = {BRIDGE_NET.name: BRIDGE_NET, APP_NET.name: APP_NET}

# What a 20.10 engine writes to a container's hosts file when it starts.
DOCKER_HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

FIRST_DYNAMIC_PORT = 32768


def _fake_id(name: str) -> str:
    hexed = name.encode().hex()
    return (hexed * (64 // len(hexed) + 1))[:64]


@dataclass
class FakeContainer:
    name: str
    id: str
    state: str = "exited"  # running, paused, exited, created
    ips: dict[str, str] = field(default_factory=dict)  # network -> address while it runs
    links: list[str] = field(default_factory=list)  # '/db:/web/alias'
    volumes_from: list[str] = field(default_factory=list)  # 'data:ro'
    network_mode: str = "default"
    port_bindings: dict = field(default_factory=dict)  # HostConfig.PortBindings
    publish_all: bool = False
    exposed: tuple[str, ...] = ()  # Config.ExposedPorts ('80/tcp')
    hosts_path: str = ""
    ports: dict = field(default_factory=dict)  # NetworkSettings.Ports while it runs
    resolv_conf_path: str = ""  # ResolvConfPath
    dns: list[str] = field(default_factory=list)  # HostConfig.Dns (--dns)
    labels: dict = field(default_factory=dict)  # Config.Labels

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused")


class SnapshotEngine(EngineFacts):
    """An engine that only answers with a given snapshot (Docker 20.10: no firewall
    backend named); a test assigns ``snap`` to make the engine change."""

    def __init__(self, snapshot: Snapshot):
        self.snap = snapshot

    def snapshot(self, refresh: bool = False) -> Snapshot:
        return self.snap

    def firewall_backend(self) -> str:
        return ""


class FakeEngine(EngineView):
    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.containers: dict[str, FakeContainer] = {}
        self.can_pin = True
        self.pin_queries = 0
        self.start_calls: list[tuple[str, dict | None]] = []  # (name, port_bindings), failed ones too
        self.pause_calls: list[str] = []
        self.failures: dict[str, list[Exception]] = {}  # name -> errors the next starts raise
        self.allocated: dict[int, str] = {}  # host port -> name of the container holding it
        self.next_port = FIRST_DYNAMIC_PORT
        self.on_start: Callable[[str], None] | None = None  # called before each start
        self._snapshot: Snapshot | None = None
        self.snapshot_builds = 0
        # 'start --jobs N' calls in from worker threads; the engine serialises.
        self._lock = threading.RLock()

    # -- building the world ---------------------------------------------------

    def add(self, name: str, state: str = "exited", ips: dict[str, str] | None = None, **config) -> FakeContainer:
        if ips is None and not str(config.get("network_mode", "")).startswith("container:"):
            ips = {"bridge": f"172.17.0.{10 + len(self.containers)}"}
        container = FakeContainer(name=name, id=config.pop("id", _fake_id(name)), ips=dict(ips or {}), **config)
        directory = self.root / container.id
        directory.mkdir(parents=True, exist_ok=True)
        container.hosts_path = str(directory / "hosts")
        pathlib.Path(container.hosts_path).write_text(DOCKER_HOSTS_HEADER)
        self.containers[name] = container
        if state in ("running", "paused"):
            self._run(container, container.port_bindings)
            container.state = state
        else:
            container.state = state
        self._snapshot = None
        return container

    def stop(self, name: str) -> None:
        container = self.containers[name]
        container.state = "exited"
        container.ports = {}
        for port, holder in list(self.allocated.items()):
            if holder == name:
                del self.allocated[port]

    def rename(self, old: str, new: str) -> None:
        """docker rename OLD NEW."""
        container = self.containers.pop(old)
        container.name = new
        self.containers[new] = container
        self._snapshot = None

    def move(self, name: str, network: str, ip: str) -> None:
        """The container has another address on a network (it was restarted)."""
        self.containers[name].ips[network] = ip

    def hold_port(self, port: int, holder: str = "thief") -> None:
        """Another container (not listed) holds this host port."""
        self.allocated[port] = holder

    def forget(self) -> None:
        """A new docker-fw run: no cached snapshot."""
        self._snapshot = None

    def hosts_text(self, name: str) -> str:
        return pathlib.Path(self.containers[name].hosts_path).read_text()

    def find(self, ref: str) -> FakeContainer | None:
        ref = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        matches = [c for c in self.containers.values() if c.id.startswith(ref)] if len(ref) >= 3 else []
        return matches[0] if len(matches) == 1 else None

    # -- what Service uses ------------------------------------------------------

    def firewall_backend(self) -> str:
        return "iptables"

    def snapshot(self, refresh: bool = False) -> Snapshot:
        with self._lock:
            if self._snapshot is None or refresh:
                self.snapshot_builds += 1
                self._snapshot = Snapshot(
                    containers=[self._summary(c) for c in self.containers.values()],
                    networks=list(NETWORKS.values()),
                )
            return self._snapshot

    def _summary(self, c: FakeContainer) -> Container:
        endpoints = ()
        ports = ()
        if c.running:
            endpoints = tuple(
                Endpoint(network=net, bridge=NETWORKS[net].bridge, ip=ip, gateway=NETWORKS[net].gateway)
                for net, ip in sorted(c.ips.items())
            )
            ports = tuple(
                PortBinding(int(key.split("/")[0]), key.split("/")[1], b["HostIp"], int(b["HostPort"]))
                for key, bindings in sorted(c.ports.items())
                for b in bindings or []
            )
        return Container(id=c.id, name=c.name, state=c.state, endpoints=endpoints, ports=ports,
                         labels=kept_labels(c.labels))

    def inspect(self, ref: str) -> dict:
        with self._lock:
            return self._inspect(ref)

    def _inspect(self, ref: str) -> dict:
        c = self.find(ref)
        if c is None:
            raise EngineError(f"inspect {ref}: No such container: {ref}")
        return copy.deepcopy(
            {
                "Id": c.id,
                "Name": "/" + c.name,
                "State": {"Status": c.state, "Running": c.running, "Paused": c.state == "paused"},
                "HostConfig": {
                    "Links": c.links or None,
                    "VolumesFrom": c.volumes_from or None,
                    "NetworkMode": c.network_mode,
                    "PortBindings": c.port_bindings,
                    "PublishAllPorts": c.publish_all,
                    "Dns": list(c.dns),
                },
                "ResolvConfPath": c.resolv_conf_path,
                "NetworkSettings": {
                    "Ports": c.ports if c.running else {},
                    "Networks": {net: {"IPAddress": ip if c.running else ""} for net, ip in c.ips.items()},
                },
                "HostsPath": c.hosts_path,
            }
        )

    def accepts_start_with_hostconfig(self) -> bool:
        self.pin_queries += 1
        return self.can_pin

    def start(self, container_id: str, port_bindings: dict | None = None) -> None:
        with self._lock:
            c = self.find(container_id)
            if c is None:
                raise EngineError(f"start {container_id}: No such container: {container_id}")
            self.start_calls.append((c.name, copy.deepcopy(port_bindings)))
        if self.on_start is not None:
            self.on_start(c.name)  # outside the lock: it may wait for another start
        with self._lock:
            pending = self.failures.get(c.name)
            if pending:
                raise pending.pop(0)
            if c.state == "paused":
                raise EngineError(f"start {container_id}: cannot start a paused container, try unpause instead")
            if c.state == "running":
                return  # 304 Not Modified
            self._run(c, port_bindings if port_bindings is not None else c.port_bindings)

    def pause(self, container_id: str) -> None:
        with self._lock:
            c = self.find(container_id)
            assert c is not None and c.state == "running", f"pause of a container that is not running: {container_id}"
            self.pause_calls.append(c.name)
            c.state = "paused"

    # -- the engine's side of a start ---------------------------------------------

    def _run(self, c: FakeContainer, bindings: dict) -> None:
        requested = {port: list(entries or []) for port, entries in (bindings or {}).items()}
        if c.publish_all:
            for port in c.exposed:
                requested.setdefault(port, [{"HostIp": "", "HostPort": ""}])
        # Check every fixed port first: a failed start allocates nothing.
        for entries in requested.values():
            for b in entries:
                if b.get("HostPort"):
                    port = int(b["HostPort"])
                    holder = self.allocated.get(port)
                    if holder is not None and holder != c.name:
                        # What engine.Engine makes of Docker's "port is already allocated".
                        raise PortInUseError(
                            f"start {c.id}: Bind for 0.0.0.0:{port} failed: port is already allocated"
                        )
        ports: dict = {port: None for port in c.exposed}
        for key, entries in sorted(requested.items()):
            reported = []
            for b in entries:
                if b.get("HostPort"):
                    port = int(b["HostPort"])
                else:
                    while self.next_port in self.allocated:
                        self.next_port += 1
                    port = self.next_port
                    self.next_port += 1
                self.allocated[port] = c.name
                if b.get("HostIp"):
                    reported.append({"HostIp": b["HostIp"], "HostPort": str(port)})
                else:
                    reported += [{"HostIp": "0.0.0.0", "HostPort": str(port)}, {"HostIp": "::", "HostPort": str(port)}]
            ports[key] = reported
        c.ports = ports
        c.state = "running"
        own = next(iter(sorted(c.ips.values())), "")
        text = DOCKER_HOSTS_HEADER + (f"{own}\t{c.id[:12]}\n" if own else "")
        pathlib.Path(c.hosts_path).write_text(text)


class FakeFirewall(Runner):
    """iptables-save / iptables-restore --noflush over an in-memory filter table."""

    def __init__(self, text: str | None = None):
        self.table: Table = parse_save(text or layout_2010_icc_false(), "filter")
        # raw and nat, read only ('explain' walks them; no action changes them)
        self.others = {name: parse_save(text or layout_2010_icc_false(), name) for name in ("raw", "nat")}
        self.batches: list[list[str]] = []  # applied batches
        self.fail: Exception | None = None  # raised by restore, nothing applied
        self.saves = 0

    def save(self, table: str = "filter") -> Table:
        if table in self.others:
            return self.others[table]
        assert table == "filter"
        self.saves += 1
        return Table(self.table.name, dict(self.table.chains), list(self.table.rules))

    def restore(self, table: str, lines: list[str], shown: list[str] | None = None, before: Table | None = None) -> None:
        assert table == "filter"
        if not lines:
            return
        if self.fail is not None:
            raise self.fail
        self.table = apply_lines(self.table, list(lines))
        self.batches.append(list(lines))

    def ours(self, owner: str | None = None) -> list[SavedRule]:
        """Rules in our chains carrying our tag (of one owner)."""
        found = []
        for rule in self.table.rules:
            key = parse_comment(rule.comment or "") if rule.chain in OWN_CHAINS else None
            if key is not None and (owner is None or key[0] == owner):
                found.append(rule)
        return found

    def owners(self) -> set[str]:
        return {parse_comment(r.comment)[0] for r in self.ours()}


def hosts_lines_for(text: str, name: str) -> list[str]:
    """Lines of a hosts file text that name ``name``."""
    return [line for line in text.splitlines() if name in line.split("#", 1)[0].split()[1:]]


__all__ = ["FakeContainer", "FakeEngine", "SnapshotEngine", "FakeFirewall", "DOCKER_HOSTS_HEADER", "hosts_lines_for"]
