"""The Docker engine: a local one over its unix socket, any other through the docker SDK.

This is the one place that talks to the engine, and the one place where its
errors become ours (``EngineError``).  Everything docker-fw needs to resolve
rules comes from two list calls (containers, networks), cached for the run as
a ``Snapshot``: one call returns every container's addresses on every
network, which is much cheaper than one inspect per container.

A local engine (``DOCKER_HOST`` unset or ``unix://``) is asked through
``UnixSocketApi``, HTTP on the socket with the standard library only:
importing the docker SDK (requests, urllib3) and its API version probe cost
more than a whole single action otherwise does.  tcp, TLS and ssh engines, and ``watch``'s
event stream, keep the SDK.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
import time
from .values import dataclass, field, replace

from .deadline import seconds_from_env
from .errors import EngineError, PortInUseError  # noqa: F401 (PortInUseError: re-exported)
from .labels import ICC_OPTION, READ_LABELS
from .lean import Socket, percent_encoded, unix_stream_socket

TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:
    from typing import Any


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
    # Inter-container communication: a bridge network lets its containers
    # reach each other unless its enable_icc option is "false" (the default
    # bridge: dockerd --icc=false), whatever docker-fw's internal rules say.
    icc: bool = True


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
    # (key, value) of the labels docker-fw reads (labels.READ_LABELS) it carries: values as the engine has
    # them, hostile input (labels.py bounds and checks them).
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, key: str) -> str | None:
        return next((value for k, value in self.labels if k == key), None)

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
    # is_docker_address's answers: 'add' asks it twice per rule (normalising, then
    # checking the kind), and ipaddress's subnet_of is slow Python.
    _docker_address_memo: dict = field(default_factory=dict, repr=False, compare=False)

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
        found = self._docker_address_memo.get(net)
        if found is None:
            if net.version == 6:
                found = any(net.subnet_of(sub) for n in self.networks for sub in n.subnets6)
            else:
                found = any(net.subnet_of(sub) for n in self.networks for sub in n.subnets)
            self._docker_address_memo[net] = found
        return found

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
        icc=(net.get("Options") or {}).get(ICC_OPTION) != "false",
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
        labels=kept_labels(summary.get("Labels")),
    )


def kept_labels(labels: Any) -> tuple[tuple[str, str], ...]:
    """The labels docker-fw reads, of those a container carries (text values only)."""
    if not isinstance(labels, dict):
        return ()
    return tuple((key, labels[key]) for key in READ_LABELS if isinstance(labels.get(key), str))


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


DEFAULT_SOCKET = "/var/run/docker.sock"  # DOCKER_HOST unset, as for the docker CLI and SDK
ENGINE_TIMEOUT_ENV = "DOCKER_FW_ENGINE_TIMEOUT"
DEFAULT_ENGINE_TIMEOUT = 60.0  # seconds; the SDK's own default, made explicit
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # an engine answer larger than this is refused


class EngineHttpError(Exception):
    """An error status from the engine (UnixSocketApi), worded as the SDK's APIError."""

    def __init__(self, status: int, reason: str, url: str, explanation: str):
        super().__init__(status, reason, url, explanation)
        self.status = status
        self.reason = reason
        self.url = url
        self.explanation = explanation

    def __str__(self) -> str:
        side = "Client" if self.status < 500 else "Server"
        message = f"{self.status} {side} Error for {self.url}: {self.reason}"
        return f'{message} ("{self.explanation}")' if self.explanation else message


class EngineTransportError(Exception):
    """UnixSocketApi got no usable answer: no socket, no answer in time, garbage."""


class UnixSocketApi:
    """The engine's REST API on its local unix socket, with the standard library only.

    Stands in for the calls docker-fw makes of the SDK's ``APIClient`` (same
    method names, same results), without its import or its version probe:
    paths are unversioned, so the engine answers at its own API version, the
    one the SDK negotiates (Docker 29 refuses versions below 1.44, never an
    unversioned path).  HTTP/1.1 is written by hand, one request per
    connection ('Connection: close': the answer ends where the stream does),
    because http.client would load ssl and the email package, half the
    SDK's cost again; the socket is the C module's (lean.py: socket.py turns
    its constants into enums as it loads).  Threads ('start
    --jobs') may share one; every request has a deadline of ``timeout``
    seconds, checked at every read.
    """

    def __init__(self, path: str, timeout: float = DEFAULT_ENGINE_TIMEOUT):
        self.path = path
        self.timeout = timeout

    @classmethod
    def from_env(cls, environ=None) -> UnixSocketApi | None:
        """For DOCKER_HOST unset or unix:///PATH; None for any other engine (the SDK's).
        The deadline is DOCKER_FW_ENGINE_TIMEOUT's, as for the SDK's client."""
        host = (os.environ if environ is None else environ).get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        path = host.removeprefix("unix://")
        if not (host.startswith("unix://") and path.startswith("/")):
            return None
        return cls(path, seconds_from_env(ENGINE_TIMEOUT_ENV, DEFAULT_ENGINE_TIMEOUT))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded answer (JSON, text, or None when empty); EngineHttpError for
        an error status, EngineTransportError when there is no usable answer."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        deadline = time.monotonic() + self.timeout
        try:
            sock = unix_stream_socket()
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(head.encode("ascii") + payload)
                status, reason, headers, data = _parse_answer(_receive(sock, deadline))
            finally:
                sock.close()
        except TimeoutError:
            raise EngineTransportError(f"{self.path}: timed out (no answer within {self.timeout:g} s)") from None
        except OSError as exc:
            raise EngineTransportError(f"{self.path}: {exc.strerror or exc}") from None
        except EngineTransportError as exc:
            raise EngineTransportError(f"{self.path}: {exc} (answer to {method} {path})") from None
        if status >= 400:
            url = f"http+docker://localhost{path}"  # as the SDK words it for a unix socket
            raise EngineHttpError(status, reason, url, _explanation(data))
        if not data:
            return None
        try:
            if headers.get("content-type", "").startswith("application/json"):
                return json.loads(data)
            return data.decode()
        except ValueError:  # bad JSON or UTF-8
            raise EngineTransportError(f"{self.path}: the answer to {method} {path} cannot be decoded") from None

    @staticmethod
    def _id(ref: str) -> str:
        """REF as one path segment, percent-encoded."""
        return percent_encoded(ref)

    # The APIClient calls Engine makes, by the SDK's names.

    def ping(self) -> bool:
        return self.request("GET", "/_ping") == "OK"

    def networks(self) -> list[dict[str, Any]]:
        return self.request("GET", "/networks")

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        return self.request("GET", "/containers/json" + ("?all=1" if all else ""))

    def inspect_container(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{self._id(ref)}/json")

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/info")

    def version(self) -> dict[str, Any]:
        return self.request("GET", "/version")

    def start(self, container_id: str) -> None:
        self.request("POST", f"/containers/{self._id(container_id)}/start")

    def start_with_host_config(self, container_id: str, host_config: dict[str, Any]) -> None:
        """POST /v1.23/containers/ID/start with a HostConfig body (see Engine.start)."""
        self.request("POST", f"/v1.23/containers/{self._id(container_id)}/start", host_config)

    def pause(self, container_id: str) -> None:
        self.request("POST", f"/containers/{self._id(container_id)}/pause")


def _receive(sock: Socket, deadline: float) -> bytes:
    """Everything until the engine closes the connection: by the deadline, and
    at most MAX_ANSWER_BYTES."""
    received = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(received)
        received += chunk
        if len(received) > MAX_ANSWER_BYTES:
            raise EngineTransportError(f"answer larger than {MAX_ANSWER_BYTES} bytes")


def _parse_answer(raw: bytes) -> tuple[int, str, dict[str, str], bytes]:
    """(status, reason, headers by lower-case name, body) of a whole HTTP/1.x answer."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not blank or not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise EngineTransportError("not an HTTP answer" if raw else "the engine closed the connection")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise EngineTransportError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or len(body) < int(length):
            raise EngineTransportError("answer cut short")
        body = body[: int(length)]
    return int(code), reason, headers, body


def _dechunk(data: bytes) -> bytes:
    """A chunked body (RFC 9112 7.1) as the bytes it carries; trailers are dropped."""
    chunks = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        size_text = data[pos:end].split(b";")[0].strip()
        if end < 0 or not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise EngineTransportError("bad chunked encoding")
        size = int(size_text, 16)
        if size == 0:
            return b"".join(chunks)
        start = end + 2
        if data[start + size : start + size + 2] != b"\r\n":
            raise EngineTransportError("answer cut short")
        chunks.append(data[start : start + size])
        pos = start + size + 2


def _explanation(body: bytes) -> str:
    """The engine's reason for an error status: its JSON 'message', else the text (as the SDK)."""
    try:
        message = json.loads(body)["message"]
        if isinstance(message, str):
            return message
    except (ValueError, TypeError, KeyError):
        pass
    return body.decode(errors="replace").strip()


def _failure(exc: Exception) -> str | None:
    """What an exception of either transport means: 'missing' (404), 'refused'
    (another error status) or 'unreachable'; None when it is not the engine's."""
    if isinstance(exc, EngineHttpError):
        return "missing" if exc.status == 404 else "refused"
    if isinstance(exc, EngineTransportError):
        return "unreachable"
    # The SDK's exceptions exist only once the SDK is imported (Engine.api).
    errors = sys.modules.get("docker.errors")
    if errors is None:
        return None
    if isinstance(exc, errors.NotFound):
        return "missing"
    if isinstance(exc, errors.APIError):
        return "refused"
    requests = sys.modules.get("requests.exceptions")
    if isinstance(exc, errors.DockerException) or (requests is not None and isinstance(exc, requests.RequestException)):
        return "unreachable"
    return None


class Engine:
    """The engine DOCKER_HOST names; one snapshot per run.

    A local engine is asked through UnixSocketApi; any other, or the
    ``client`` given (a docker SDK client), through the SDK.  ``api`` is the
    SDK's client in every case ('watch' follows the event stream with it).
    """

    def __init__(self, client: Any = None):
        self._client = client
        self._local = UnixSocketApi.from_env() if client is None else None
        self._snapshot: Snapshot | None = None
        self._firewall_backend: str | None = None  # /info's answer, kept as long as the snapshot

    @property
    def api(self) -> Any:
        if self._client is None:
            import docker  # imported late: only engines that are not local need it

            # A deadline for every request, so that a hung engine cannot hang
            # docker-fw (and the store lock it holds).  The SDK's event
            # stream ('watch') asks for none of its own, whatever this is.
            timeout = seconds_from_env(ENGINE_TIMEOUT_ENV, DEFAULT_ENGINE_TIMEOUT)
            try:
                self._client = docker.from_env(timeout=timeout)
            except docker.errors.DockerException as exc:
                raise EngineError(f"cannot reach the Docker engine: {_short(exc)}") from None
        return self._client.api

    def _rest(self) -> Any:
        """What answers the calls below: the local socket's API, else the SDK's client."""
        return self._local if self._local is not None else self.api

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            failure = _failure(exc)
            if failure is None:
                raise
            if failure == "missing":
                raise EngineError(f"{what}: {_short(exc)}") from None
            if failure == "refused":
                text = str(exc)
                if "port is already allocated" in text or "address already in use" in text:
                    found = re.search(r"Bind for \S+ failed: port is already allocated|\S+: address already in use", text)
                    raise PortInUseError(f"{what}: {found.group(0) if found else 'a host port is in use'}") from None
                raise EngineError(f"the Docker engine refused ({what}): {_short(exc)}") from None
            raise EngineError(f"cannot reach the Docker engine ({what}): {_short(exc)}") from None

    def snapshot(self, refresh: bool = False) -> Snapshot:
        if self._snapshot is None or refresh:
            self._firewall_backend = None  # asked again with the new snapshot: an engine restart may switch it
            raw_networks = self._call("list networks", self._rest().networks)
            networks = [parse_network(n) for n in raw_networks]
            by_name = {n.name: n for n in networks}
            raw = self._call("list containers", self._rest().containers, all=True)
            containers = [parse_container(s, by_name) for s in raw]
            self._snapshot = Snapshot(containers=containers, networks=with_gateways(networks, containers))
        return self._snapshot

    def ping(self) -> None:
        self._call("ping", self._rest().ping)

    def inspect(self, ref: str) -> dict[str, Any]:
        return self._call(f"inspect {ref}", self._rest().inspect_container, ref)

    def firewall_backend(self) -> str:
        """'iptables', 'nftables' (Docker 29 opt-in), or '' when the engine does not say.

        Asked once per snapshot: choosing the backends, init and check all want it."""
        if self._firewall_backend is None:
            info = self._call("info", self._rest().info)
            self._firewall_backend = (info.get("FirewallBackend") or {}).get("Driver", "")
        return self._firewall_backend

    def version(self) -> dict[str, Any]:
        return self._call("version", self._rest().version)

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
            self._call(f"start {container_id}", self._rest().start, container_id)
            return
        host_config = dict(self.inspect(container_id).get("HostConfig") or {})
        host_config["PortBindings"] = port_bindings
        if self._local is not None:
            self._call(f"start {container_id}", self._local.start_with_host_config, container_id, host_config)
            return
        api = self.api

        def post() -> None:
            url = f"{api.base_url}/v1.23/containers/{container_id}/start"
            response = api._post(url, data=json.dumps(host_config), headers={"Content-Type": "application/json"})
            api._raise_for_status(response)

        self._call(f"start {container_id}", post)

    def pause(self, container_id: str) -> None:
        self._call(f"pause {container_id}", self._rest().pause, container_id)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
