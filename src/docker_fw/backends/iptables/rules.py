"""A resolved rule in iptables' terms: chain, matches, target, and the tag that finds it again."""

from __future__ import annotations

from ...values import dataclass

from ...model import Kind, Ports
from ...resolve import ResolvedRule
from ...egress import ResolvedLock
from ..tag import COMMENT_PREFIX, parse_comment, sha256  # noqa: F401 (parse_comment: imported from here too)

# Chains that docker-fw owns.  Each is reached by one jump from a chain of the
# kernel or of Docker, so that all our rules can be listed, diffed and removed
# without ever touching a rule we did not write.
CHAIN_FORWARD = "DOCKER-FW-FORWARD"  # 'add': jumped to from FORWARD
CHAIN_INPUT = "DOCKER-FW-INPUT"  # 'add-input': jumped to from INPUT
CHAIN_INTERNAL = "DOCKER-FW-INTERNAL"  # 'add-internal': jumped to from DOCKER
RULE_CHAINS = (CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL)
# Egress ('docker-fw egress NAME deny'): FORWARD jumps here first.  It holds
# the destinations locked containers may still reach (RETURN: Docker's own
# rules then decide, as for any container) above the locks themselves (DROP
# of new traffic from a locked container's address).  Traffic to the host
# itself is locked in CHAIN_INPUT the same way, below the add-input rules.
# Made when first needed (ensure_chains).
CHAIN_EGRESS = "DOCKER-FW-EGRESS"
OWN_CHAINS = (*RULE_CHAINS, CHAIN_EGRESS)


@dataclass(frozen=True)
class Placement:
    """Where the rules of one kind live: our ``chain``, the ``parent`` chain
    that jumps to it, and the ``target`` a match jumps to."""

    chain: str
    parent: str
    target: str


# 'add' rules send matches to Docker's DOCKER chain rather than accepting
# them, so that only ports the engine actually publishes can open.
PLACEMENTS = {
    Kind.ADD: Placement(CHAIN_FORWARD, "FORWARD", "DOCKER"),
    Kind.INPUT: Placement(CHAIN_INPUT, "INPUT", "ACCEPT"),
    Kind.INTERNAL: Placement(CHAIN_INTERNAL, "DOCKER", "ACCEPT"),
}
# Outbound rules (the container as source, an external destination) and
# locks: in CHAIN_EGRESS, reached from FORWARD.
EGRESS_PLACEMENT = Placement(CHAIN_EGRESS, "FORWARD", "RETURN")
# Chains where docker-fw's DROP rules (locks) must come after every other rule
# of ours: those are inserted first, the locks appended.
ORDERED_CHAINS = (CHAIN_EGRESS, CHAIN_INPUT)
# Replies and continuations of connections already admitted are never locked:
# connections others opened to the container, and the ones it may open.
NOT_ADMITTED = ("-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED")
# ICMPv6 types an IPv6 lock lets pass: router solicitation, neighbour solicitation, advertisement.
NEIGHBOUR_DISCOVERY = ("133", "135", "136")


@dataclass(frozen=True)
class IptablesRule:
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
    # A lock (DROP): it must come after the chain's other rules of ours
    # (ORDERED_CHAINS); not hashed (the target is).
    last: bool = False

    @property
    def digest(self) -> str:
        text = "\0".join((self.chain, *self.matches, self.target))
        return sha256(text.encode()).hexdigest()[:12]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.owner}:{self.digest}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.digest)

    def argv(self) -> list[str]:
        """The rule spec after '-A CHAIN' (no shell quoting involved)."""
        return [*self.matches, "-m", "comment", "--comment", self.comment, "-j", self.target]


def _port_matches(proto: str, sport: Ports, dport: Ports) -> list[str]:
    """The kernel's own port matches: one port or one range with the protocol's
    match (--dport 80, --dport 9100:9200), a list with multiport (--dports 80,443).

    The protocol's match comes first, always, as docker-fw has always written
    it: the tags of rules already live stay the same."""
    matches = ["-m", proto]
    for option, ports in (("--sport", sport), ("--dport", dport)):
        if ports and not ports.is_list:
            matches += [option, ports.text]
    for option, ports in (("--sports", sport), ("--dports", dport)):
        if ports.is_list:
            matches += ["-m", "multiport", option, ports.text]
    return matches


def render(rule: ResolvedRule) -> IptablesRule:
    """The iptables rule for a resolved one: its kind's chain and target, and its matches.

    The matches (and so the hash in the tag) are what docker-fw has always
    written, so rules already live are recognised.  An outbound rule (the
    container as source, an external destination) lets traffic past the
    container's egress lock: it lives in CHAIN_EGRESS and returns, so that
    Docker's own rules decide the rest, as for a container without a lock.
    """
    matches = ["-s", rule.source, "-d", rule.dest, *rule.filter, "-p", rule.proto]
    if rule.proto == "icmp":
        if rule.icmp_type:
            matches += ["-m", "icmp", "--icmp-type", rule.icmp_type]
    else:
        matches += _port_matches(rule.proto, rule.sport, rule.dport)
    placement = EGRESS_PLACEMENT if rule.outbound else PLACEMENTS[rule.kind]
    return IptablesRule(rule.owner, placement.chain, tuple(matches), placement.target, rule.family)


def render_lock(lock: ResolvedLock) -> list[IptablesRule]:
    """A locked container's two DROP rules for one of its networks: in FORWARD,
    new traffic from its address entering from its bridge and leaving by any
    other interface (the outside, other Docker networks); in INPUT, new traffic
    from it to the host itself.  Traffic within its own network (-o the same
    bridge) is left to Docker, to add-internal rules and to --icc."""
    source = ("-s", lock.source, "-i", lock.bridge)
    # Neighbour discovery (router solicitation, neighbour solicitation and
    # advertisement) is never a tracked connection: the INPUT lock would drop
    # it, and the container's IPv6 would die once its neighbour entries expire.
    # It returns to INPUT, which decides as for a container without a lock.
    discovery = [
        IptablesRule(lock.owner, CHAIN_INPUT, (*source, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", icmp6_type),
                     "RETURN", lock.family)
        for icmp6_type in NEIGHBOUR_DISCOVERY
    ] if lock.family == 6 else []
    return [
        IptablesRule(lock.owner, CHAIN_EGRESS, (*source, "!", "-o", lock.bridge, *NOT_ADMITTED),
                     "DROP", lock.family, last=True),
        *discovery,
        IptablesRule(lock.owner, CHAIN_INPUT, (*source, *NOT_ADMITTED), "DROP", lock.family, last=True),
    ]


def render_all(desired: "list[ResolvedRule | ResolvedLock]") -> list[IptablesRule]:
    """Every iptables rule of the desired rules and locks."""
    rendered: list[IptablesRule] = []
    for item in desired:
        if isinstance(item, ResolvedLock):
            rendered.extend(render_lock(item))
        else:
            rendered.append(render(item))
    return rendered
