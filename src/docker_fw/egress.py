"""Egress policies ('docker-fw egress NAME deny|allow'): what a locked container keeps.

A container whose policy is ``deny`` may start no connection outside its own
bridge networks: not to external addresses, not to other Docker networks, not
to the host itself.  What it keeps:

- replies, and the rest of connections already admitted (conntrack
  RELATED,ESTABLISHED): connections others open to it work as before;
- its own bridge networks (traffic that leaves by the bridge it came in on):
  Docker, --icc and add-internal rules decide there, as without a lock;
- the destinations of its 'add NAME --source=. --dest=ADDR' rules (outbound
  rules, see resolve.is_outbound), and what its add-input rules admit;
- DNS (udp and tcp port 53) to the name servers it is configured with
  (``nameservers``), so that it still resolves names.

Like rules, a lock names the container and is resolved at its current
addresses each time it is applied: it follows a restart to a new address, and
it is withdrawn (with its rules) when the container stops, so the container
that gets its old address next is neither locked nor allowed anything.

Pure, like resolve.py: the service layer reads the engine and the container's
resolv.conf and hands them in; a backend renders the backend-neutral values
(``ResolvedLock``, and ``ResolvedRule`` with ``outbound``).
"""

from __future__ import annotations

import ipaddress
import re
from .values import dataclass
from typing import TYPE_CHECKING

from .errors import EngineError
from .model import EgressPolicy, Kind, Ports
from .resolve import ResolvedRule

if TYPE_CHECKING:  # annotations only
    from .engine import Snapshot

DNS_PORT = Ports(((53, 53),))
# libc reads at most 3 'nameserver' lines; a file holding more is not
# Docker's.  More than this many servers are ignored (and said so).
MAX_NAMESERVERS = 8
# Docker's embedded DNS server on user-defined networks: inside the
# container's own network namespace, so no rule of the host ever sees it.
EMBEDDED_DNS = ipaddress.ip_address("127.0.0.11")


@dataclass(frozen=True)
class EgressSpec:
    """A recorded egress policy (the store's record, as 'ls' prints it)."""

    owner: str
    policy: EgressPolicy

    def describe(self, action: str | None = None) -> str:
        return self.policy.command(self.owner)


@dataclass(frozen=True)
class ResolvedLock:
    """A locked container on one of its bridge networks: backend-neutral data.

    New traffic from ``source`` (its address there) entering from ``bridge``
    is dropped unless it leaves by ``bridge`` again; new traffic from it to
    the host itself is dropped.  Outbound rules of the same owner go before it.
    """

    owner: str
    source: str  # '172.17.0.2/32', '2001:db8::2/128'
    bridge: str
    family: int = 4


_NAMESERVER = re.compile(rb"^[ \t]*nameserver[ \t]+([0-9A-Fa-f.:]{2,45})[ \t]*(?:#.*)?$")
# Docker 25 and newer note the embedded DNS server's upstream servers:
# '# ExtServers: [host(127.0.0.53) 192.0.2.1]'.
_EXT_SERVERS = re.compile(rb"^#[ \t]*ExtServers:[ \t]*\[([^\]]{0,1000})\]")


def nameservers(resolv_conf: bytes, dns_options: list[str], fallback: bytes = b"") -> list[str]:
    """The name servers a container's DNS queries leave it for, as addresses.

    RESOLV_CONF is the container's resolv.conf (hostile: the container's root
    may write it): its 'nameserver' lines, and the upstream servers Docker's
    embedded DNS forwards to where the engine notes them ('# ExtServers:').
    The embedded DNS server (127.0.0.11) and loopback addresses are inside the
    container's namespace and need no rule.  DNS_OPTIONS are the container's
    --dns servers (the embedded DNS forwards to them).  FALLBACK (the host's
    resolv.conf) is used when the container's only server is the embedded one
    and nothing says where it forwards: then it forwards to the host's servers.
    """
    found: list[str] = []
    embedded = False

    def take(text: bytes | str) -> None:
        try:
            address = ipaddress.ip_address(text.decode("ascii") if isinstance(text, bytes) else text)
        except (ValueError, UnicodeDecodeError):
            return
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            return
        if getattr(address, "ipv4_mapped", None) is not None or str(address) in found:
            return
        found.append(str(address))

    ext_noted = False
    for line in resolv_conf.split(b"\n"):
        match = _NAMESERVER.match(line)
        if match:
            if match.group(1) == str(EMBEDDED_DNS).encode():
                embedded = True
            take(match.group(1))
            continue
        ext = _EXT_SERVERS.match(line)
        if ext:
            ext_noted = True
            for word in ext.group(1).split():
                take(word)  # 'host(127.0.0.53)': forwarded from the host's namespace, no rule
    for server in dns_options:
        take(server)
    if embedded and not ext_noted and not dns_options:
        for line in fallback.split(b"\n"):
            match = _NAMESERVER.match(line)
            if match:
                take(match.group(1))
    return found[:MAX_NAMESERVERS]


def resolve_lock(owner: str, snapshot: Snapshot, servers: list[str]) -> list[ResolvedLock | ResolvedRule]:
    """OWNER's lock on each of its bridge networks (IPv4, and IPv6 where it has
    an address), with its DNS: udp and tcp port 53 to each of SERVERS of the
    family, outbound (past the lock) and to the host itself (a server on the
    host, such as a resolver on the bridge's gateway).  EngineError when the
    container is not running (nothing to lock: its rules are withdrawn too)
    or is on no bridge network.  Whether a backend can match each bridge's
    name is the backend's to say (FirewallBackend.expressible)."""
    container = snapshot.get(owner)
    if container.state not in ("running", "paused"):
        container = snapshot.running(owner)  # the engine's words: stopped, no address
    bridged = [e for e in container.endpoints if (e.ip or e.ip6) and e.bridge]
    if not bridged:
        raise EngineError(
            f"container {container.name} is on no bridge network: its traffic does not pass "
            "the host's FORWARD chain, so no egress lock can be placed"
        )
    placed: list[ResolvedLock | ResolvedRule] = []
    for endpoint in sorted(bridged, key=lambda e: e.network):
        for family, ip, width in ((4, endpoint.ip, 32), (6, endpoint.ip6, 128)):
            if not ip:
                continue
            source = f"{ip}/{width}"
            placed.append(ResolvedLock(container.name, source, endpoint.bridge, family))
            for server in servers:
                if (":" in server) != (family == 6):
                    continue
                for proto in ("udp", "tcp"):
                    for kind, outbound in ((Kind.ADD, True), (Kind.INPUT, False)):
                        placed.append(ResolvedRule(
                            owner=container.name, kind=kind, source=source, dest=f"{server}/{width}",
                            proto=proto, dport=DNS_PORT, family=family, outbound=outbound,
                        ))
    return placed
