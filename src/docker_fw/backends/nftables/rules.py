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

from ...egress import ResolvedLock
from ...model import ICMP_CODES, ICMP_TYPES, Kind, Ports
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
CHAIN_ADD_INPUT = "fw-input"  # 'add-input': a match gets the accept mark and is accepted
CHAIN_INIT = "fw-init"  # 'init': new connections into the bridges it closed are dropped
# Egress ('docker-fw egress NAME deny'), on the forward hook: the outbound
# rules of locked containers (and the DNS a lock keeps) 'return' (the rest of
# our chains and Docker's then decide, as for a container without a lock)
# above the locks' drops.  An accept would not do: it would skip fw-init too.
# Outbound rules are inserted at the top, locks added at the bottom (plan
# moves a rule found below a lock).
CHAIN_EGRESS = "fw-egress"
# Egress locks towards the host itself, on the input hook after fw-input: an
# add-input rule (or the DNS to a server on the host) accepts in fw-input,
# which ends our input chain, so it never meets these drops.
CHAIN_LOCK_INPUT = "fw-input-lock"
RULE_CHAINS = (CHAIN_EGRESS, CHAIN_ADD, CHAIN_INTERNAL, CHAIN_ADD_INPUT, CHAIN_LOCK_INPUT)
# Where a lock's drops must come after every other rule of ours.
ORDERED_CHAINS = (CHAIN_EGRESS,)

# Base chains run before Docker's (priority filter, 0) and the host's own
# 'inet filter' (0): our drop is final, our accept lets them decide.
PRIORITY = -1
# (name, hook, the chains it jumps to, in order)
BASE_CHAINS = (
    (CHAIN_FORWARD, "forward", (CHAIN_EGRESS, CHAIN_ADD, CHAIN_INTERNAL, CHAIN_INIT)),
    (CHAIN_INPUT, "input", (CHAIN_ADD_INPUT, CHAIN_LOCK_INPUT)),
)
KIND_CHAINS = {Kind.ADD: CHAIN_ADD, Kind.INTERNAL: CHAIN_INTERNAL, Kind.INPUT: CHAIN_ADD_INPUT}

INIT_PREFIX = "docker-fw-init:"  # + bridge: not an owner tag (a container may be named 'init')
# + the accept mark's option + ':' + bridge (a bridge's name holds no ':'): init's
# neighbour-discovery mark in fw-init (IPv6, icc off); the mark is in the tag
# so that a rule of another mark (the engine's changed) is replaced
NEIGHBOUR_PREFIX = "docker-fw-nd:"
REPLIED = ("established", "related")


def nft_family(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def quoted(name: str) -> str:
    """A name in nft's syntax, for display only (the batch is JSON)."""
    return json.dumps(name, ensure_ascii=True)


@dataclass(frozen=True)
class Match:
    """One match: KEY (what nft compares: 'saddr', 'dport', 'type', 'code',
    'iifname', 'l4proto', 'ct state') OP ('==' or '!=') VALUE."""

    key: str
    op: str
    value: str | int | tuple[str, ...] | Ports
    proto: str = ""  # the header a field is in: 'ip', 'ip6', 'tcp', 'udp', 'sctp', 'icmp'

    def json(self) -> dict:
        if self.key in HEADER_FIELDS:
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
            items = [lo if lo == hi else {"range": [lo, hi]} for lo, hi in intervals(self.value)]
            right = {"set": items} if len(items) > 1 else items[0]
        return {"match": {"op": self.op, "left": left, "right": right}}

    def text(self) -> str:
        if self.key in HEADER_FIELDS:
            left = f"{self.proto} {self.key}"
        elif self.key == "l4proto":
            left = "meta l4proto"
        else:
            left = self.key
        if isinstance(self.value, tuple):
            value = "{ " + ", ".join(self.value) + " }"
        elif isinstance(self.value, Ports):
            items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals(self.value)]
            value = "{ " + ", ".join(items) + " }" if len(items) > 1 else items[0]
        elif self.key in ("iifname", "oifname"):
            value = quoted(str(self.value))
        else:
            value = str(self.value)
            if self.key in ("saddr", "daddr"):
                net = ipaddress.ip_network(value)
                value = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        return f"{left} {value}" if self.op == "==" else f"{left} {self.op} {value}"


HEADER_FIELDS = ("saddr", "daddr", "sport", "dport", "type", "code")


def intervals(ports: Ports) -> list[tuple[int, int]]:
    """PORTS as the disjoint intervals nft's sets hold, in order.

    An anonymous set refuses overlapping intervals ('80:90,85' is one
    interval for iptables' multiport, "conflicting intervals" for nft), so
    they are merged, adjacent ones too: the same ports either way."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ports.ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


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
    verdict: str  # 'accept', 'drop' or 'return'
    mark: Mark | None = None
    family: int = 4
    tag: str = ""  # the comment when it is not an owner's tag (init's rules)
    # A lock's drop: it must come after the chain's other rules of ours
    # (ORDERED_CHAINS); not hashed (the verdict is).
    last: bool = False

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


def icmp_matches(icmp_type: str) -> list[Match]:
    """--icmp-type as nft matches: the type, and the code where iptables' name pins
    one (model.ICMP_CODES); none for 'any' or 255 (iptables: every type)."""
    if not icmp_type:
        return []
    number = int(icmp_type) if icmp_type.isdigit() else ICMP_TYPES[icmp_type]
    if number == ICMP_TYPES["any"]:
        return []
    found = [Match("type", "==", number, "icmp")]
    if icmp_type in ICMP_CODES:
        found.append(Match("code", "==", ICMP_CODES[icmp_type], "icmp"))
    return found


def render(rule: ResolvedRule, mark: Mark | None) -> NftRule:
    """The nft rule for a resolved one (Unexpressible when there is none).

    'add' rules accept in our chain, which is not final: Docker's own chain
    then accepts only published ports, as the DOCKER chain does on iptables.
    'add-internal' rules also set the engine's accept mark (MARK), which
    Docker's per-bridge chain accepts before its ICC drop (--icc=false).
    'add-input' rules accept on the input hook and set the mark too: an
    accept there is not final either, so a host whose own input chain drops
    admits them by accepting the mark (Docker writes nothing on that hook).
    An outbound rule (the container as source, an external destination)
    returns from fw-egress, above the locks: past its container's lock, the
    rest decides as without one.
    """
    address = nft_family(rule.family)
    matches = [Match("saddr", "==", rule.source, address), Match("daddr", "==", rule.dest, address)]
    matches += filter_matches(rule.filter)
    matches.append(Match("l4proto", "==", rule.proto))
    if rule.proto == "icmp":
        matches += icmp_matches(rule.icmp_type)
    if rule.sport:
        matches.append(Match("sport", "==", rule.sport, rule.proto))
    if rule.dport:
        matches.append(Match("dport", "==", rule.dport, rule.proto))
    needs_mark = rule.kind in (Kind.INTERNAL, Kind.INPUT)
    if needs_mark and mark is None:
        raise Unexpressible(NO_MARK)
    if rule.outbound:
        chain, verdict = CHAIN_EGRESS, "return"
    else:
        chain, verdict = KIND_CHAINS[rule.kind], "accept"
    return _checked(NftRule(rule.owner, chain, tuple(matches), verdict, mark if needs_mark else None, rule.family))


def _checked(nft_rule: NftRule) -> NftRule:
    if len(nft_rule.comment.encode("utf-8")) > MAX_COMMENT:
        raise Unexpressible(
            f"container name {nft_rule.owner[:40]}...: its tag would pass nft's {MAX_COMMENT}-byte rule comment"
        )
    return nft_rule


def render_lock(lock: ResolvedLock) -> list[NftRule]:
    """A locked container's two drops for one of its networks (as on iptables):
    in fw-egress, new traffic from its address entering from its bridge and
    leaving by any other interface (the outside, other Docker networks); in
    fw-input-lock, new traffic from it to the host itself (IPv6: but for
    neighbour discovery, accepted in fw-input).  Traffic within its
    own network (out by the same bridge) is left to Docker, to add-internal
    rules and to --icc."""
    problem = interface_problem(lock.bridge)
    if problem:
        raise Unexpressible(f"the bridge {ascii(lock.bridge)}: {problem}: no egress lock can be placed")
    address = nft_family(lock.family)
    source = (Match("saddr", "==", lock.source, address), Match("iifname", "==", lock.bridge))
    new = Match("ct state", "!=", REPLIED)
    rules = [
        _checked(NftRule(lock.owner, CHAIN_EGRESS, (*source, Match("oifname", "!=", lock.bridge), new),
                         "drop", family=lock.family, last=True)),
        _checked(NftRule(lock.owner, CHAIN_LOCK_INPUT, (*source, new), "drop", family=lock.family)),
    ]
    if lock.family == 6:
        # Neighbour discovery is never a tracked connection (conntrack leaves
        # it 'invalid'), and a container sends it from its own address to the
        # host: dropped, its IPv6 would stop once its neighbour entries expire.
        discovery = (*source, Match("l4proto", "==", "ipv6-icmp"), Match("type", "==", ND_TYPES, "icmpv6"))
        rules.append(_checked(NftRule(lock.owner, CHAIN_ADD_INPUT, discovery, "accept", family=6)))
    return rules


ND_TYPES = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert")


def render_all(desired: "list[ResolvedRule | ResolvedLock]", mark: Mark | None) -> list[NftRule]:
    """Every nft rule of the desired rules and locks (Unexpressible for one that has none)."""
    rendered: list[NftRule] = []
    for item in desired:
        if isinstance(item, ResolvedLock):
            rendered.extend(render_lock(item))
        else:
            rendered.append(render(item, mark))
    return rendered

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


def neighbour_rule(bridge: str, mark: Mark) -> NftRule:
    """init's accept mark for IPv6 neighbour discovery within BRIDGE (icc off).

    Docker's per-bridge chain drops what enters from the bridge itself (its
    "ICC" drop), neighbour solicitations and advertisements between two of
    its containers too: no IPv6 connection between them could be opened,
    whatever 'add-internal' admits.  Marked, Docker accepts them above that
    drop ("ALLOW FW MARK").  Parity with IPv4, whose ARP no nft rule of
    Docker's filters; it opens no port.
    """
    return NftRule(
        "",
        CHAIN_INIT,
        (Match("iifname", "==", bridge), Match("oifname", "==", bridge), Match("l4proto", "==", "ipv6-icmp"),
         Match("type", "==", ("nd-neighbor-solicit", "nd-neighbor-advert"), "icmpv6")),
        "accept",
        mark,
        family=6,
        tag=f"{NEIGHBOUR_PREFIX}{mark.option}:{bridge}",
    )


def neighbour_bridge(comment: str) -> str | None:
    """The bridge of a neighbour_rule's comment, else None."""
    if not comment.startswith(NEIGHBOUR_PREFIX):
        return None
    _, sep, bridge = comment[len(NEIGHBOUR_PREFIX):].partition(":")
    return bridge if sep and bridge else None


__all__ = ["parse_comment", "NftRule", "Match", "Mark", "render", "render_lock", "render_all", "init_rule",
           "neighbour_rule", "neighbour_bridge", "Unexpressible"]
