"""The Docker engine, through the docker SDK for Python.

This is the one place that talks to the engine, and the one place where its
errors become ours (``EngineError``).  Everything docker-fw needs to resolve
rules comes from two list calls (containers, networks), cached for the run as
a ``Snapshot``: one call returns every container's addresses on every
network, which is much cheaper than one inspect per container.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .deadline import seconds_from_env
from .errors import EngineError


class PortInUseError(EngineError):
    """A start failed because another container (or process) holds a host port."""


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    bridge: str  # interface name on the host ('' for non-bridge drivers)
    subnets: tuple[ipaddress.IPv4Network, ...]
    gateway: str  # IPv4 of the bridge ('' when unknown)
    # --internal: no route out, so Docker publishes no ports on it.
    internal: bool = False
    subnets6: tuple[ipaddress.IPv6Network, ...] = ()  # a dual-stack network's IPv6 subnets
    gateway6: str = ""  # its IPv6 gateway ('' when none)


@dataclass(frozen=True)
class Endpoint:
    """A running container's attachment to one network."""

    network: str  # network name
    bridge: str
    ip: str
    gateway: str
    gateway6: str = ""  # IPv6 gateway (a dual-stack network), '' otherwise
    internal: bool = False  # on an --internal network
    ip6: str = ""  # the container's global IPv6 address on this network, '' when none


# Swarm's gateway network: never a container's gateway endpoint.
GW_BRIDGE_NETWORK = "docker_gwbridge"


def gateway_order(endpoint: Endpoint) -> tuple:
    """Sort key putting a container's endpoints in the engine's preference order.

    libnetwork (Docker 20.10-27.x, sandbox.go ``endpoint.Less``) keeps a
    container's endpoints ordered thus, and the first one is its *gateway
    endpoint*: the default route goes through it, and published ports are
    DNATed to its address on its bridge only (ProgramExternalConnectivity
    moves there whenever the order changes, e.g. on 'docker network
    connect').  Not swarm's gateway network, not --internal networks, dual-
    stack networks (an IPv4 and an IPv6 gateway) first, then by network
    name.  Checked live on 20.10: a container on 'zeta' then connected to
    'alpha' is published on alpha's bridge; on 'bridge' and an internal
    'aaint' it stays on docker0; on 'alpha' and a dual-stack 'v6net' it is
    published on v6net's bridge.
    """
    dual_stack = bool(endpoint.gateway and endpoint.gateway6)
    return (
        endpoint.network == GW_BRIDGE_NETWORK,
        endpoint.internal,
        not dual_stack,
        endpoint.network,
    )


@dataclass(frozen=True)
class PortBinding:
    private_port: int
    proto: str
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class Container:
    id: str
    name: str  # without leading slash
    state: str  # running, paused, exited, created, ...
    # In the engine's preference order (gateway_order): the first is the one
    # published ports are DNATed to.
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortBinding, ...] = ()

    @property
    def has_address(self) -> bool:
        return self.state in ("running", "paused") and any(e.ip for e in self.endpoints)

    @property
    def published_endpoint(self) -> Endpoint | None:
        """The endpoint published ports reach the container through, if any.

        Docker DNATs a published port to the container's address on its
        gateway endpoint only, so 'allow' must match traffic to that bridge.
        None when the container is on no network with a way out (only
        --internal networks, or none).
        """
        candidates = [e for e in self.endpoints if e.ip and e.bridge and not e.internal]
        if not candidates:
            return None
        return min(candidates, key=gateway_order)


@dataclass
class Snapshot:
    """Containers and networks as the engine saw them at one moment."""

    containers: list[Container]
    networks: list[Network]
    _by_name: dict[str, Container] = field(default_factory=dict, repr=False)
    _by_id: dict[str, Container] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.containers}
        self._by_id = {c.id: c for c in self.containers}

    def find(self, ref: str) -> Container | None:
        """A container by name, full id or unique id prefix (as the Docker CLI)."""
        ref = ref.lstrip("/")
        if ref in self._by_name:
            return self._by_name[ref]
        if ref in self._by_id:
            return self._by_id[ref]
        if len(ref) >= 3 and all(c in "0123456789abcdef" for c in ref):
            matches = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise EngineError(f"container id prefix {ref!r} is ambiguous")
        return None

    def get(self, ref: str) -> Container:
        container = self.find(ref)
        if container is None:
            raise EngineError(f"no such container: {ref}")
        return container

    def running(self, ref: str) -> Container:
        container = self.get(ref)
        if not container.has_address:
            raise EngineError(
                f"container {container.name} is {container.state} and has no address: start it first"
            )
        return container

    def network(self, name: str) -> Network | None:
        for net in self.networks:
            if net.name == name:
                return net
        return None

    def owner_of_address(self, ip: str) -> Container | None:
        if ":" in ip:
            wanted = ipaddress.ip_address(ip)
            for container in self.containers:
                if container.has_address and any(
                    e.ip6 and ipaddress.ip_address(e.ip6) == wanted for e in container.endpoints
                ):
                    return container
            return None
        for container in self.containers:
            if container.has_address and any(e.ip == ip for e in container.endpoints):
                return container
        return None

    def is_docker_address(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        """Whether a network spec lies inside a Docker network's subnet (of its family)."""
        if net.version == 6:
            return any(net.subnet_of(sub) for n in self.networks for sub in n.subnets6)
        return any(net.subnet_of(sub) for n in self.networks for sub in n.subnets)

    def is_gateway(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether an address is a Docker network's gateway (IPv4 or IPv6)."""
        for n in self.networks:
            for gw in (n.gateway, n.gateway6):
                if gw and ipaddress.ip_address(gw) == ip:
                    return True
        return False

    def bridges(self) -> list[Network]:
        return [n for n in self.networks if n.driver == "bridge" and n.bridge]


def _bridge_name(net: dict[str, Any]) -> str:
    if net.get("Driver") != "bridge":
        return ""
    options = net.get("Options") or {}
    # Docker names the default bridge docker0 (through this option) and every
    # user-defined bridge br-<first 12 hex digits of the network id>.
    return options.get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]


def parse_network(net: dict[str, Any]) -> Network:
    subnets: list[ipaddress.IPv4Network] = []
    subnets6: list[ipaddress.IPv6Network] = []
    gateway = gateway6 = ""
    for cfg in (net.get("IPAM") or {}).get("Config") or []:
        try:
            subnet = ipaddress.ip_network(cfg.get("Subnet", ""), strict=False)
        except ValueError:
            continue
        if subnet.version != 4:
            subnets6.append(subnet)
            if not gateway6 and cfg.get("Gateway"):
                gateway6 = cfg["Gateway"].split("/")[0]
            continue
        subnets.append(subnet)
        if not gateway and cfg.get("Gateway"):
            gateway = cfg["Gateway"].split("/")[0]
    return Network(
        id=net["Id"],
        name=net["Name"],
        driver=net.get("Driver", ""),
        bridge=_bridge_name(net),
        subnets=tuple(subnets),
        gateway=gateway,
        internal=bool(net.get("Internal")),
        subnets6=tuple(subnets6),
        gateway6=gateway6,
    )


def _container_name(names: list[str]) -> str:
    # The list API also reports legacy link aliases as '/other/alias': the
    # container's own name is the one with a single slash.
    for name in names or []:
        if name.count("/") == 1:
            return name[1:]
    return (names or ["/"])[0].lstrip("/")


def parse_container(summary: dict[str, Any], networks: dict[str, Network]) -> Container:
    endpoints = []
    for net_name, ep in ((summary.get("NetworkSettings") or {}).get("Networks") or {}).items():
        if not ep or not ep.get("IPAddress"):
            continue
        net = networks.get(net_name)
        endpoints.append(
            Endpoint(
                network=net_name,
                bridge=net.bridge if net else "",
                ip=ep["IPAddress"],
                gateway=ep.get("Gateway") or (net.gateway if net else ""),
                gateway6=ep.get("IPv6Gateway") or "",
                internal=net.internal if net else False,
                ip6=ep.get("GlobalIPv6Address") or "",
            )
        )
    ports = []
    for p in summary.get("Ports") or []:
        if p.get("PublicPort"):
            ports.append(
                PortBinding(
                    private_port=int(p["PrivatePort"]),
                    proto=p.get("Type", "tcp"),
                    host_ip=p.get("IP", ""),
                    host_port=int(p["PublicPort"]),
                )
            )
    return Container(
        id=summary["Id"],
        name=_container_name(summary.get("Names")),
        state=summary.get("State", ""),
        endpoints=tuple(sorted(endpoints, key=gateway_order)),
        ports=tuple(ports),
    )


def with_gateways(networks: list[Network], containers: list[Container]) -> list[Network]:
    """Fill in gateways the network list leaves out from containers' endpoints.

    A fresh 20.10 engine reports the default bridge's IPAM config without a
    Gateway; each running container's endpoint still names it.
    """
    seen = {e.network: e.gateway for c in containers for e in c.endpoints if e.gateway}
    return [
        replace(n, gateway=seen[n.name]) if not n.gateway and n.name in seen else n
        for n in networks
    ]


ENGINE_TIMEOUT_ENV = "DOCKER_FW_ENGINE_TIMEOUT"
DEFAULT_ENGINE_TIMEOUT = 60.0  # seconds; the SDK's own default, made explicit


class Engine:
    """Lazy docker SDK client honouring DOCKER_HOST; one snapshot per run."""

    def __init__(self, client: Any = None):
        self._client = client
        self._snapshot: Snapshot | None = None

    @property
    def api(self) -> Any:
        if self._client is None:
            import docker  # imported late: 'docker-fw --help' needs no engine

            # A deadline for every request, so that a hung engine cannot hang
            # docker-fw (and the store lock it holds).  The SDK's event
            # stream ('watch') asks for none of its own, whatever this is.
            timeout = seconds_from_env(ENGINE_TIMEOUT_ENV, DEFAULT_ENGINE_TIMEOUT)
            try:
                self._client = docker.from_env(timeout=timeout)
            except docker.errors.DockerException as exc:
                raise EngineError(f"cannot reach the Docker engine: {_short(exc)}") from None
        return self._client.api

    def _call(self, what: str, func, *args, **kwargs):
        import docker
        import requests

        try:
            return func(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise EngineError(f"{what}: {_short(exc)}") from None
        except docker.errors.APIError as exc:
            text = str(exc)
            if "port is already allocated" in text or "address already in use" in text:
                found = re.search(r"Bind for \S+ failed: port is already allocated|\S+: address already in use", text)
                raise PortInUseError(f"{what}: {found.group(0) if found else 'a host port is in use'}") from None
            raise EngineError(f"the Docker engine refused ({what}): {_short(exc)}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"cannot reach the Docker engine ({what}): {_short(exc)}") from None

    def snapshot(self, refresh: bool = False) -> Snapshot:
        if self._snapshot is None or refresh:
            raw_networks = self._call("list networks", self.api.networks)
            networks = [parse_network(n) for n in raw_networks]
            by_name = {n.name: n for n in networks}
            raw = self._call("list containers", self.api.containers, all=True)
            containers = [parse_container(s, by_name) for s in raw]
            self._snapshot = Snapshot(containers=containers, networks=with_gateways(networks, containers))
        return self._snapshot

    def ping(self) -> None:
        self._call("ping", self.api.ping)

    def inspect(self, ref: str) -> dict[str, Any]:
        return self._call(f"inspect {ref}", self.api.inspect_container, ref)

    def firewall_backend(self) -> str:
        """'iptables', 'nftables' (Docker 29 opt-in), or '' when the engine does not say."""
        info = self._call("info", self.api.info)
        return (info.get("FirewallBackend") or {}).get("Driver", "")

    def version(self) -> dict[str, Any]:
        return self._call("version", self.api.version)

    def accepts_start_with_hostconfig(self) -> bool:
        """Whether POST /v1.23/containers/ID/start with a HostConfig body is accepted.

        Only API <= 1.23 takes a body there: the 20.10 engine does (its minimum
        API version is 1.12), 25.x only when DOCKER_MIN_API_VERSION allows it,
        26 and newer never.
        """
        minimum = self.version().get("MinAPIVersion", "99")
        return tuple(int(x) for x in minimum.split(".")) <= (1, 23)

    def start(self, container_id: str, port_bindings: dict | None = None) -> None:
        """Start a container; with port_bindings, pin those host ports (API 1.23).

        A start body replaces the container's whole HostConfig (moby's
        setHostConfig), so the body is the container's current HostConfig
        with only PortBindings changed: links, volumes, network mode, restart
        policy and limits stay as they are.
        """
        if port_bindings is None:
            self._call(f"start {container_id}", self.api.start, container_id)
            return
        import json

        api = self.api
        host_config = dict(self.inspect(container_id).get("HostConfig") or {})
        host_config["PortBindings"] = port_bindings

        def post() -> None:
            url = f"{api.base_url}/v1.23/containers/{container_id}/start"
            response = api._post(url, data=json.dumps(host_config), headers={"Content-Type": "application/json"})
            api._raise_for_status(response)

        self._call(f"start {container_id}", post)

    def pause(self, container_id: str) -> None:
        self._call(f"pause {container_id}", self.api.pause, container_id)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
