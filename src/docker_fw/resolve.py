"""Turn recorded rules into concrete iptables rules, using live addresses.

Pure: works on a ``Snapshot`` and returns data (argv lists), so it is unit
tested without an engine.  A rule between containers is rendered once per
network they share, with their addresses on that network; ``/`` is the
gateway of that network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .engine import Container, Snapshot
from .errors import EngineError, UsageError
from .filtergrammar import FilterError
from .backends.iptables.process import bridge_name_problem
from .model import BRIDGE_PLACEHOLDER, AddressKind, AddressSpec, Kind, RuleSpec

COMMENT_PREFIX = "docker-fw:"


@dataclass(frozen=True)
class ResolvedRule:
    """One iptables rule in one of our chains, tagged with owner and hash.

    The comment ``docker-fw:<owner>:<hash>`` is how docker-fw recognises its
    rules in ``iptables-save`` output: the hash covers the chain and every
    match, so a rule whose container moved to another address gets another
    hash, and iptables' own canonical spelling never matters.
    """

    owner: str
    chain: str
    matches: tuple[str, ...]  # everything but the comment and the jump
    target: str
    # 4: iptables, 6: ip6tables.  Not hashed: the addresses in the matches
    # already tell the families apart.
    family: int = 4

    @property
    def digest(self) -> str:
        text = "\0".join((self.chain, *self.matches, self.target))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.owner}:{self.digest}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.digest)

    def argv(self) -> list[str]:
        """The rule spec after '-A CHAIN' (no shell quoting involved)."""
        return [*self.matches, "-m", "comment", "--comment", self.comment, "-j", self.target]


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(owner, digest) from one of our comments, else None."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    owner, sep, digest = comment[len(COMMENT_PREFIX):].rpartition(":")
    if not sep or not owner:
        return None
    return owner, digest


def render_matches(spec: RuleSpec, src: str, dst: str, bridge: str = "") -> tuple[str, ...]:
    """The matches of one concrete rule; BRIDGE (the bridge of the network it is
    applied on) replaces the filter's @bridge tokens."""
    filter_ = [bridge if token == BRIDGE_PLACEHOLDER else token for token in spec.filter]
    matches = ["-s", src, "-d", dst, *filter_, "-p", spec.proto, "-m", spec.proto]
    if spec.sport:
        matches += ["--sport", str(spec.sport)]
    if spec.dport:
        matches += ["--dport", str(spec.dport)]
    return tuple(matches)


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


def _is_v6(address: str) -> bool:
    return ":" in address


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
        for net in sorted(shared):
            bridge = endpoint(containers[0], net).bridge
            problem = bridge_name_problem(bridge)
            if problem:
                # An EngineError: the rule is withdrawn (not applied, removed
                # if present), as for any rule the engine's facts cannot place.
                raise EngineError(
                    f"the bridge {ascii(bridge)} of network {ascii(net)}: {problem}: "
                    f"the filter's {BRIDGE_PLACEHOLDER} cannot be placed"
                )

    # A filter whose matches only work for one family (-m ttl, an address)
    # counts as a literal side.
    literal = ({side.family for side in (spec.source, spec.dest)} | {extra.family}) - {None}
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

    return [
        ResolvedRule(
            owner=spec.owner,
            chain=spec.kind.chain,
            matches=render_matches(
                spec,
                address(spec.source, net, family),
                address(spec.dest, net, family),
                endpoint(containers[0], net).bridge,
            ),
            target=spec.kind.target,
            family=family,
        )
        for net, family in targets
    ]


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
