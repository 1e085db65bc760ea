"""A resolved rule in nftables' terms: chain, matches, statement, and the tag that finds it again.

Each rule is rendered twice from the same values: as nft's JSON (what the
batch holds: names are data there, never syntax) and as nft's own syntax
(what reports, --verbose and the golden files show).  The tag in the rule's
comment, ``docker-fw:<owner>:<hash>``, is how docker-fw finds its rules again
in 'nft -j list table'; the hash covers the chain and every match, so a rule
whose container moved gets another hash, and how nft prints a rule back
(it folds and reorders some expressions) never matters.
"""

from __future__ import annotations

import ipaddress
import json
from ...values import dataclass

from ...model import Kind, Ports
from ...resolve import ResolvedRule
from ..tag import COMMENT_PREFIX, parse_comment, sha256

# nft keeps at most 128 bytes of a rule's comment (NFTNL_UDATA_COMMENT_MAXLEN).
MAX_COMMENT = 128

# docker-fw's own table (one per family: 'ip docker-fw', 'ip6 docker-fw') and its chains.
TABLE = "docker-fw"
CHAIN_FORWARD = "forward"  # base chain, hook forward, before Docker's
CHAIN_INPUT = "input"  # base chain, hook input
CHAIN_ADD = "fw-forward"  # 'add', 'allow': a match goes on to Docker's chains
CHAIN_INTERNAL = "fw-internal"  # 'add-internal', 'add-two-ways': a match gets the accept mark
CHAIN_ADD_INPUT = "fw-input"  # 'add-input': a match is accepted
CHAIN_INIT = "fw-init"  # 'init': new connections into the bridges it closed are dropped
RULE_CHAINS = (CHAIN_ADD, CHAIN_INTERNAL, CHAIN_ADD_INPUT)

# Base chains run before Docker's (priority filter, 0) and the host's own
# 'inet filter' (0): our drop is final, our accept lets them decide.
PRIORITY = -1
# (name, hook, the chains it jumps to, in order)
BASE_CHAINS = (
    (CHAIN_FORWARD, "forward", (CHAIN_ADD, CHAIN_INTERNAL, CHAIN_INIT)),
    (CHAIN_INPUT, "input", (CHAIN_ADD_INPUT,)),
)
KIND_CHAINS = {Kind.ADD: CHAIN_ADD, Kind.INTERNAL: CHAIN_INTERNAL, Kind.INPUT: CHAIN_ADD_INPUT}

INIT_PREFIX = "docker-fw-init:"  # + bridge: not an owner tag (a container may be named 'init')
REPLIED = ("established", "related")


def nft_family(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def quoted(name: str) -> str:
    """A name in nft's syntax, for display only (the batch is JSON)."""
    return json.dumps(name, ensure_ascii=True)


@dataclass(frozen=True)
class Match:
    """One match: KEY (what nft compares: 'saddr', 'dport', 'iifname', 'l4proto',
    'ct state') OP ('==' or '!=') VALUE."""

    key: str
    op: str
    value: str | int | tuple[str, ...] | Ports
    proto: str = ""  # the header a port or an address is in: 'ip', 'ip6', 'tcp', 'udp'

    def json(self) -> dict:
        if self.key in ("saddr", "daddr", "sport", "dport"):
            left: dict = {"payload": {"protocol": self.proto, "field": self.key}}
        elif self.key == "ct state":
            left = {"ct": {"key": "state"}}
        else:
            left = {"meta": {"key": self.key}}
        right: object = self.value
        if self.key in ("saddr", "daddr"):
            net = ipaddress.ip_network(self.value)
            right = str(net.network_address)
            if net.prefixlen != net.max_prefixlen:
                right = {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
        elif isinstance(self.value, tuple):
            right = {"set": list(self.value)}
        elif isinstance(self.value, Ports):
            items = [lo if lo == hi else {"range": [lo, hi]} for lo, hi in self.value.ranges]
            right = {"set": items} if self.value.is_list else items[0]
        return {"match": {"op": self.op, "left": left, "right": right}}

    def text(self) -> str:
        if self.key in ("saddr", "daddr", "sport", "dport"):
            left = f"{self.proto} {self.key}"
        elif self.key == "l4proto":
            left = "meta l4proto"
        else:
            left = self.key
        if isinstance(self.value, tuple):
            value = "{ " + ", ".join(self.value) + " }"
        elif isinstance(self.value, Ports):
            items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.value.ranges]
            value = "{ " + ", ".join(items) + " }" if self.value.is_list else items[0]
        elif self.key in ("iifname", "oifname"):
            value = quoted(str(self.value))
        else:
            value = str(self.value)
            if self.key in ("saddr", "daddr"):
                net = ipaddress.ip_network(value)
                value = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        return f"{left} {value}" if self.op == "==" else f"{left} {self.op} {value}"


@dataclass(frozen=True)
class Mark:
    """The engine's accept mark (dockerd --bridge-accept-fwmark=VALUE[/MASK])."""

    value: int
    mask: int = 0xFFFFFFFF

    def json(self) -> dict:
        """'meta mark set': the bits of MASK become VALUE, the others are kept."""
        mark = {"meta": {"key": "mark"}}
        if self.mask == 0xFFFFFFFF:
            value: object = self.value
        else:
            value = {"|": [{"&": [mark, 0xFFFFFFFF ^ self.mask]}, self.value]}
        return {"mangle": {"key": mark, "value": value}}

    def text(self) -> str:
        if self.mask == 0xFFFFFFFF:
            return f"meta mark set {self.value:#x}"
        return f"meta mark set meta mark & {0xFFFFFFFF ^ self.mask:#010x} | {self.value:#x}"

    @property
    def option(self) -> str:
        return f"{self.value:#x}" if self.mask == 0xFFFFFFFF else f"{self.value:#x}/{self.mask:#x}"


@dataclass(frozen=True)
class NftRule:
    """One rule of ours: CHAIN, MATCHES, then MARK (set the engine's accept mark)
    and VERDICT, with the comment COMMENT (an owner tag, or init's)."""

    owner: str
    chain: str
    matches: tuple[Match, ...]
    verdict: str  # 'accept' or 'drop'
    mark: Mark | None = None
    family: int = 4
    tag: str = ""  # the comment when it is not an owner's tag (init's rules)

    @property
    def digest(self) -> str:
        words = [self.chain, *(m.text() for m in self.matches), self.mark.text() if self.mark else "", self.verdict]
        return sha256("\0".join(words).encode()).hexdigest()[:12]

    @property
    def comment(self) -> str:
        return self.tag or f"{COMMENT_PREFIX}{self.owner}:{self.digest}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.digest)

    def expr(self) -> list[dict]:
        statements = [m.json() for m in self.matches]
        if self.mark:
            statements.append(self.mark.json())
        statements.append({self.verdict: None})
        return statements

    def text(self) -> str:
        """The rule in nft's syntax (as 'nft list' prints it, less the folding)."""
        words = [m.text() for m in self.matches]
        if self.mark:
            words.append(self.mark.text())
        words += [self.verdict, "comment", quoted(self.comment)]
        return " ".join(words)


class Unexpressible(ValueError):
    """A resolved rule this backend cannot write (the message says why)."""


def interface_problem(name: str) -> str | None:
    """Why nft cannot match exactly the interface NAME; None when it can.

    1 to 15 bytes, no control character, and no trailing '*' or backslash:
    nft reads a trailing '*' as a wildcard (every interface whose name starts
    with the rest), and a backslash as the escape before it.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if not 0 < size < 16:
        return f"an interface name has 1 to 15 bytes, this one {size}"
    bad = next((c for c in name if c < " " or c == "\x7f"), None)
    if bad is not None:
        return f"it holds {ascii(bad)}"
    if name.endswith("*") or "\\" in name:
        return "nftables reads a trailing '*' as a wildcard and a backslash as its escape"
    return None


def filter_matches(tokens: tuple[str, ...]) -> list[Match]:
    """The --filter words nft can express: '[!] -i IFACE' and '[!] -o IFACE' (what
    'allow' records), iptables' trailing '+' becoming nft's '*'.  Anything else
    raises Unexpressible: nft has no iptables match modules."""
    matches: list[Match] = []
    at = 0
    while at < len(tokens):
        negated = tokens[at] == "!"
        at += negated
        if at >= len(tokens) or tokens[at] not in ("-i", "-o"):
            word = tokens[at] if at < len(tokens) else "!"
            raise Unexpressible(
                f"--filter word {word!r} cannot be expressed on the nftables backend: "
                "only '[!] -i IFACE' and '[!] -o IFACE' can (nft has no iptables match modules)"
            )
        if at + 1 >= len(tokens):
            raise Unexpressible(f"--filter: {tokens[at]} needs an interface name")
        option, name = tokens[at], tokens[at + 1]
        wildcard = name.endswith("+")
        base = name[:-1] if wildcard else name
        problem = interface_problem(base) if base else None
        if problem:
            raise Unexpressible(f"--filter: interface {ascii(name)}: {problem}")
        matches.append(Match("iifname" if option == "-i" else "oifname", "!=" if negated else "==", base + "*" if wildcard else base))
        at += 2
    return matches


def render(rule: ResolvedRule, mark: Mark | None) -> NftRule:
    """The nft rule for a resolved one (Unexpressible when there is none).

    'add' rules accept in our chain, which is not final: Docker's own chain
    then accepts only published ports, as the DOCKER chain does on iptables.
    'add-internal' rules also set the engine's accept mark (MARK), which
    Docker's per-bridge chain accepts before its ICC drop (--icc=false).
    'add-input' rules accept on the input hook.
    """
    if not isinstance(rule, ResolvedRule):  # an egress lock (egress.ResolvedLock)
        raise Unexpressible(NO_EGRESS)
    if rule.proto not in ("tcp", "udp"):
        raise Unexpressible(f"{rule.proto} rules are not written on the nftables backend yet (tcp and udp are)")
    address = nft_family(rule.family)
    matches = [Match("saddr", "==", rule.source, address), Match("daddr", "==", rule.dest, address)]
    matches += filter_matches(rule.filter)
    matches.append(Match("l4proto", "==", rule.proto))
    if rule.sport:
        matches.append(Match("sport", "==", rule.sport, rule.proto))
    if rule.dport:
        matches.append(Match("dport", "==", rule.dport, rule.proto))
    needs_mark = rule.kind is Kind.INTERNAL
    if needs_mark and mark is None:
        raise Unexpressible(NO_MARK)
    nft_rule = NftRule(
        rule.owner, KIND_CHAINS[rule.kind], tuple(matches), "accept", mark if needs_mark else None, rule.family
    )
    if len(nft_rule.comment.encode("utf-8")) > MAX_COMMENT:
        raise Unexpressible(
            f"container name {rule.owner[:40]}...: its tag would pass nft's {MAX_COMMENT}-byte rule comment"
        )
    return nft_rule


NO_EGRESS = "egress locks (egress NAME deny) are not written on the nftables backend yet (iptables only)"

NO_MARK = (
    "the engine sets no accept mark: run dockerd with --bridge-accept-fwmark=MARK[/MASK] "
    "(e.g. 0x10000/0x10000, a bit no other tool on the host uses), so that Docker accepts what docker-fw admits"
)


def init_rule(bridge: str, family: int) -> NftRule:
    """init's drop for BRIDGE: what comes from outside it and is not a reply."""
    return NftRule(
        "",
        CHAIN_INIT,
        (Match("oifname", "==", bridge), Match("iifname", "!=", bridge), Match("ct state", "!=", REPLIED)),
        "drop",
        family=family,
        tag=INIT_PREFIX + bridge,
    )


__all__ = ["parse_comment", "NftRule", "Match", "Mark", "render", "init_rule", "Unexpressible"]
