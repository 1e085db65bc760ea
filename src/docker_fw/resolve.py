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
from .model import AddressKind, AddressSpec, Kind, RuleSpec

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


def render_matches(spec: RuleSpec, src: str, dst: str) -> tuple[str, ...]:
    matches = ["-s", src, "-d", dst, *spec.filter, "-p", spec.proto, "-m", spec.proto]
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


def resolve(spec: RuleSpec, snapshot: Snapshot) -> list[ResolvedRule]:
    """Concrete rules for a recorded one; EngineError when it cannot be placed.

    It cannot be placed when a container it names is unknown or not running
    (no address), or when the containers it names share no network.
    """
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

    def address(side: AddressSpec, network: str) -> str:
        if side.kind is AddressKind.NETWORK:
            return side.value
        if side.kind is AddressKind.HOST:
            ep = next(e for e in containers[0].endpoints if e.network == network)
            if not ep.gateway:
                raise EngineError(f"network {network} has no gateway address for '/'")
            return ep.gateway + "/32"
        container = containers[0] if side.kind is AddressKind.SELF else snapshot.get(side.value)
        ep = next(e for e in container.endpoints if e.network == network)
        return ep.ip + "/32"

    return [
        ResolvedRule(
            owner=spec.owner,
            chain=spec.kind.chain,
            matches=render_matches(spec, address(spec.source, net), address(spec.dest, net)),
            target=spec.kind.target,
        )
        for net in sorted(shared)
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
        if net.prefixlen == 32 and snapshot.is_docker_address(net):
            if any(n.gateway == str(net.network_address) for n in snapshot.networks):
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
