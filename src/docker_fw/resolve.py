"""Turn recorded rules into concrete ones, using live addresses.

Pure: works on a ``Snapshot`` and returns backend-neutral data (each backend
renders it in its own syntax), so it is unit tested without an engine.  A
rule between containers is resolved once per network they share, with their
addresses on that network; ``/`` is the gateway of that network.
"""

from __future__ import annotations

from .values import dataclass
from typing import TYPE_CHECKING

from .errors import EngineError, UsageError
from .filtergrammar import FilterError
from .model import BRIDGE_PLACEHOLDER, AddressKind, AddressSpec, Kind, Ports, RuleSpec

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from .engine import Container, Snapshot


@dataclass(frozen=True)
class ResolvedRule:
    """A recorded rule with today's addresses: backend-neutral data.

    A backend turns it into its own syntax (backends.iptables.rules.render).
    ``filter`` is the recorded --filter with ``@bridge`` replaced by the
    bridge of the network the rule is placed on, and ``bridge`` that bridge
    ('' when the filter names none): whether the firewall can match exactly
    that interface name is the backend's question (``expressible``).
    """

    owner: str
    kind: Kind
    source: str  # an address or prefix: '172.17.0.2/32', '2001:db8::/64'
    dest: str
    proto: str
    sport: Ports = Ports()  # empty: any (an int is taken too)
    dport: Ports = Ports()
    filter: tuple[str, ...] = ()
    family: int = 4  # 4 or 6: the family of both addresses
    bridge: str = ""  # what the filter's @bridge became
    icmp_type: str = ""  # proto icmp: the type as typed; '': any
    # From the container to outside Docker ('add --source=. --dest=ADDR', and
    # the DNS a locked container keeps): what its egress lock lets through.
    outbound: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sport", Ports.of(self.sport))
        object.__setattr__(self, "dport", Ports.of(self.dport))


def _containers_of(spec: RuleSpec, snapshot: Snapshot) -> list[Container]:
    """The running containers a rule refers to (owner first)."""
    found = [snapshot.running(spec.owner)]
    for side in (spec.source, spec.dest):
        if side.kind is AddressKind.CONTAINER:
            found.append(snapshot.running(side.value))
    return found


def _networks_of(container: Container) -> set[str]:
    """Names of the networks a container has an address on."""
    return {e.network for e in container.endpoints if e.ip}


def _describe_networks(container: Container) -> str:
    names = sorted(_networks_of(container))
    return ", ".join(names) if names else "no network"


def resolve(spec: RuleSpec, snapshot: Snapshot) -> list[ResolvedRule]:
    """Concrete rules for a recorded one; EngineError when it cannot be placed.

    It cannot be placed when a container it names is unknown or not running
    (no address), or when the containers it names share no network.

    Families: a rule with a literal IPv4 side renders for iptables only, one
    with a literal IPv6 side for ip6tables only (on the shared networks where
    the containers have IPv6 addresses: none is an error).  A rule naming only
    containers, '.' and '/' renders for IPv4 on every shared network and, on
    those where every container it names has an IPv6 address (and the
    network an IPv6 gateway, for '/'), for IPv6 too.
    """
    try:
        extra = spec.checked_filter()
    except FilterError as exc:
        # A filter recorded by an older docker-fw that let more through: fail
        # closed, and say which rule (callers withdraw it, like a stopped one).
        raise FilterError(f"recorded filter refused by this version, re-add the rule: {exc}") from None
    containers = _containers_of(spec, snapshot)
    shared = _networks_of(containers[0])
    for other in containers[1:]:
        shared &= _networks_of(other)
        if not shared:
            raise EngineError(
                f"containers {containers[0].name} (on {_describe_networks(containers[0])}) and "
                f"{other.name} (on {_describe_networks(other)}) share no network: connect one "
                "of them to a network of the other ('docker network connect')"
            )
    if not shared:
        raise EngineError(f"container {containers[0].name} has no network address")

    def endpoint(container: Container, network: str):
        return next(e for e in container.endpoints if e.network == network)

    def gateway6(network: str) -> str:
        ep = endpoint(containers[0], network)
        if ep.gateway6:
            return ep.gateway6
        net = snapshot.network(network)
        return net.gateway6 if net else ""

    def address(side: AddressSpec, network: str, family: int) -> str:
        if side.kind is AddressKind.NETWORK:
            return side.value
        if side.kind is AddressKind.HOST:
            if family == 6:
                return gateway6(network) + "/128"
            ep = endpoint(containers[0], network)
            if not ep.gateway:
                raise EngineError(f"network {network} has no gateway address for '/'")
            return ep.gateway + "/32"
        container = containers[0] if side.kind is AddressKind.SELF else snapshot.get(side.value)
        ep = endpoint(container, network)
        if family == 6:
            return ep.ip6 + "/128"
        return ep.ip + "/32"

    def has_v6(network: str) -> bool:
        """Whether every side of the rule has an IPv6 address on this network."""
        named = [containers[0]] + [
            snapshot.get(side.value)
            for side in (spec.source, spec.dest)
            if side.kind is AddressKind.CONTAINER
        ]
        if not all(endpoint(c, network).ip6 for c in named):
            return False
        uses_host = AddressKind.HOST in (spec.source.kind, spec.dest.kind)
        return not uses_host or bool(gateway6(network))

    if BRIDGE_PLACEHOLDER in spec.filter:
        # @bridge names a bridge: networks without one (macvlan, host) are left out
        shared = {net for net in shared if endpoint(containers[0], net).bridge}
        if not shared:
            raise EngineError(
                f"container {containers[0].name} is on no bridge network: "
                f"the filter's {BRIDGE_PLACEHOLDER} cannot be placed"
            )

    # A filter whose matches only work for one family (-m ttl, an address)
    # counts as a literal side.
    literal = ({side.family for side in (spec.source, spec.dest)} | {extra.family}) - {None}
    if spec.proto == "icmp":
        literal |= {4}  # IPv4's ICMP: ip6tables' is another protocol (icmpv6)
    targets: list[tuple[str, int]] = []
    if literal == {6}:
        targets = [(net, 6) for net in sorted(shared) if has_v6(net)]
        if not targets:
            raise EngineError(
                f"container {containers[0].name} has no IPv6 address on "
                f"{', '.join(sorted(shared))}: an IPv6 rule cannot be placed"
            )
    else:
        targets = [(net, 4) for net in sorted(shared)]
        if not literal:
            targets += [(net, 6) for net in sorted(shared) if has_v6(net)]

    names_bridge = BRIDGE_PLACEHOLDER in spec.filter

    def placed_filter(net: str) -> tuple[str, ...]:
        bridge = endpoint(containers[0], net).bridge
        return tuple(bridge if token == BRIDGE_PLACEHOLDER else token for token in spec.filter)

    return [
        ResolvedRule(
            owner=spec.owner,
            kind=spec.kind,
            source=address(spec.source, net, family),
            dest=address(spec.dest, net, family),
            proto=spec.proto,
            sport=spec.sport,
            dport=spec.dport,
            filter=placed_filter(net),
            family=family,
            bridge=endpoint(containers[0], net).bridge if names_bridge else "",
            icmp_type=spec.icmp_type,
            outbound=is_outbound(spec),
        )
        for net, family in targets
    ]


def is_outbound(spec: RuleSpec) -> bool:
    """An 'add' rule with the container as source: traffic it starts towards an
    external address, which its egress lock ('docker-fw egress NAME deny') lets through."""
    return spec.kind is Kind.ADD and spec.source.kind is AddressKind.SELF


def normalise_address(
    spec: AddressSpec, owner: Container, snapshot: Snapshot, rev_lookup: bool
) -> AddressSpec:
    """Give a parsed address spec the form it is recorded in.

    A container named by id or by the owner's own name becomes its name or
    '.', so that the record follows the container.  A single address inside a
    Docker network is refused (it would go stale when that container moves)
    unless --rev-lookup maps it back to the container that holds it now.
    """
    if spec.kind is AddressKind.CONTAINER:
        container = snapshot.get(spec.value)
        return AddressSpec.self_() if container.id == owner.id else AddressSpec.container(container.name)
    if spec.kind is AddressKind.NETWORK:
        net = spec.ip_network
        if net.prefixlen == net.max_prefixlen and snapshot.is_docker_address(net):
            if snapshot.is_gateway(net.network_address):
                if rev_lookup:
                    return AddressSpec.host()
                raise UsageError(
                    f"{spec.text} is a Docker network's gateway: use '/' for the Docker host"
                )
            if not rev_lookup:
                raise UsageError(
                    f"{spec.text} is a container network address: name the container "
                    "instead (or use --rev-lookup to map it to one)"
                )
            holder = snapshot.owner_of_address(str(net.network_address))
            if holder is None:
                raise EngineError(f"{spec.text}: no running container has this address")
            return AddressSpec.self_() if holder.id == owner.id else AddressSpec.container(holder.name)
    return spec


def check_kind_addresses(spec: RuleSpec, snapshot: Snapshot) -> None:
    """'add' is for external traffic: both sides inside Docker is a mistake."""
    if spec.kind is not Kind.ADD:
        return
    other = spec.dest if spec.source.kind is AddressKind.SELF else spec.source
    if other.kind is AddressKind.NETWORK and snapshot.is_docker_address(other.ip_network):
        raise UsageError(
            "trying to add an external firewall rule for internal Docker traffic "
            f"({other.text}); use add-internal"
        )


def allow_ports(container: Container) -> list[tuple[int, str]]:
    """The (port, protocol) pairs CONTAINER publishes, for 'allow' (the command's
    or a label's); UsageError when there are none, or some docker-fw does not handle."""
    ports = sorted({(p.private_port, p.proto) for p in container.ports})
    if not ports:
        raise UsageError(f"container {container.name} publishes no ports: nothing to allow")
    unsupported = sorted({proto for _, proto in ports} - {"tcp", "udp"})
    if unsupported:
        raise UsageError(f"container {container.name} publishes {unsupported[0]} ports, which docker-fw does not handle")
    return ports
