"""A resolved rule in iptables' terms: chain, matches, target, and the tag that finds it again."""

from __future__ import annotations

from ...values import dataclass

from ...lean import sha256  # hashlib's SHA-256 without loading OpenSSL
from ...model import Kind
from ...resolve import ResolvedRule

COMMENT_PREFIX = "docker-fw:"

# Chains that docker-fw owns.  Each is reached by one jump from a chain of the
# kernel or of Docker, so that all our rules can be listed, diffed and removed
# without ever touching a rule we did not write.
CHAIN_FORWARD = "DOCKER-FW-FORWARD"  # 'add': jumped to from FORWARD
CHAIN_INPUT = "DOCKER-FW-INPUT"  # 'add-input': jumped to from INPUT
CHAIN_INTERNAL = "DOCKER-FW-INTERNAL"  # 'add-internal': jumped to from DOCKER
OWN_CHAINS = (CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL)


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


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(owner, digest) from one of our comments, else None."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    owner, sep, digest = comment[len(COMMENT_PREFIX):].rpartition(":")
    if not sep or not owner:
        return None
    return owner, digest


def render(rule: ResolvedRule) -> IptablesRule:
    """The iptables rule for a resolved one: its kind's chain and target, and its matches.

    The matches (and so the hash in the tag) are what docker-fw has always
    written, so rules already live are recognised.
    """
    matches = ["-s", rule.source, "-d", rule.dest, *rule.filter, "-p", rule.proto, "-m", rule.proto]
    if rule.sport:
        matches += ["--sport", str(rule.sport)]
    if rule.dport:
        matches += ["--dport", str(rule.dport)]
    placement = PLACEMENTS[rule.kind]
    return IptablesRule(rule.owner, placement.chain, tuple(matches), placement.target, rule.family)
