"""What a filter table does with a packet, and what a batch makes of a table.

A model, not the kernel: it lets unit tests and 'docker-fw explain' say
which flows a ruleset lets through, and which rule decided, rather than only
which lines were written.  ``apply_lines`` applies restore lines to a parsed
table the way ``iptables-restore --noflush`` does; ``walk`` takes a new
connection's first packet from a built-in chain through the chains it jumps
to and returns the verdict, the deciding rule and the trace; ``translate``
applies nat PREROUTING's DNAT (a published port) first.  Matches it does not
model raise ``Unmodelled``: a walk never guesses.
"""

from __future__ import annotations

import ipaddress
import re
from ...values import dataclass, replace

from ...model import ICMP_TYPES
from .process import SavedRule, Table, parse_save, split_restore


class Unmodelled(ValueError):
    """A rule or line the model does not know how to read."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection, as a chain sees it.

    ``iif``/``oif``: the interfaces it comes in on and goes out by ('' when
    there is none: a packet for the host itself has no ``oif``).
    ``local_dst``: its destination is an address of the host (what
    ``-m addrtype --dst-type LOCAL`` matches).  ``dnat``: it was translated
    by the nat table (``--ctstate DNAT``).
    """

    src: str
    dst: str
    dport: int
    iif: str
    oif: str
    proto: str = "tcp"
    sport: int = 0
    local_dst: bool = False
    dnat: bool = False
    icmp_type: int = 8  # proto icmp: the message's type (8: echo request)
    # ESTABLISHED: a packet of a connection already admitted (a reply, or what follows)
    established: bool = False


# Targets that do not decide anything: the walk goes on to the next rule.
# (Their matches are not read: a LOG or NFLOG rule's -m limit is not modelled.)
NON_TERMINATING = frozenset({"LOG", "NFLOG", "MARK", "CONNMARK", "CT", "TRACE", "AUDIT"})
# Targets that end the walk of a table (REJECT is a DROP that answers).
TERMINATING = frozenset({"ACCEPT", "DROP", "REJECT", "DNAT", "MASQUERADE", "SNAT", "REDIRECT"})


def _interface(name: str, pattern: str) -> bool:
    """iptables' interface match: a trailing '+' matches every name with that prefix."""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _port(value: str, port: int) -> bool:
    """A port, a range LOW:HIGH, or multiport's comma-separated list of both."""
    for item in value.split(","):
        low, sep, high = item.partition(":")
        if (int(item) == port) if not sep else (int(low or 0) <= port <= int(high or 65535)):
            return True
    return False


def _icmp_type(value: str, p: Packet) -> bool:
    """--icmp-type NAME|NUMBER ('any' and 255: every type)."""
    wanted = int(value) if value.isdigit() else ICMP_TYPES.get(value, -1)
    return p.proto == "icmp" and wanted in (p.icmp_type, 255)


def _conntrack_state(value: str, p: Packet) -> bool:
    """A new connection's first packet: NEW (and DNAT when translated), never ESTABLISHED."""
    if p.established:
        return bool({"ESTABLISHED"} & set(value.split(",")))
    states = {"NEW"} | ({"DNAT"} if p.dnat else set())
    return bool(states & set(value.split(",")))


def matches(args: tuple[str, ...], p: Packet) -> bool:
    """Whether a rule's matches take the packet."""
    i, negate = 0, False
    while i < len(args):
        word = args[i]
        if word == "!":
            negate = True
            i += 1
            continue
        if word in ("-j", "-g"):
            return True
        value = args[i + 1] if i + 1 < len(args) else ""
        if word in ("-i", "-o"):
            ok = _interface(p.iif if word == "-i" else p.oif, value)
        elif word in ("-s", "-d"):
            ok = ipaddress.ip_address(p.src if word == "-s" else p.dst) in ipaddress.ip_network(value, strict=False)
        elif word == "-p":
            ok = value == p.proto
        elif word in ("--dport", "--sport", "--destination-port", "--source-port", "--dports", "--sports"):
            ok = _port(value, p.dport if word in ("--dport", "--destination-port", "--dports") else p.sport)
        elif word == "--icmp-type":
            ok = _icmp_type(value, p)
        elif word in ("--ctstate", "--state"):
            ok = _conntrack_state(value, p)
        elif word == "--dst-type":
            ok = value == "LOCAL" and p.local_dst
        elif word == "--src-type":
            ok = False if value == "LOCAL" else _unmodelled(word, args)
        elif word == "-m":
            i += 2
            continue
        elif word == "--match-set":
            # Docker 28.0.0's ipset holds the bridges' subnets: dst on a bridge
            ok = value.startswith("docker-ext-bridges-") and (p.oif == "docker0" or p.oif.startswith("br-"))
            i += 3  # --match-set NAME dst
            if ok == negate:
                return False
            negate = False
            continue
        elif word == "--comment" or word.startswith(("--hashlimit-", "--limit")):
            # a rate limit only decides whether a packet is logged ('init
            # --log-blocked': NFLOG, which never decides a verdict)
            i += 2
            continue
        else:
            _unmodelled(word, args)
        if ok == negate:
            return False
        negate = False
        i += 2
    return True


def _unmodelled(word: str, args: tuple[str, ...]) -> bool:
    raise Unmodelled(f"unmodelled match {word} in {' '.join(args)}")


@dataclass(frozen=True)
class Hop:
    """One rule a packet met and matched, or a chain's policy (``rule`` None)."""

    table: str
    chain: str
    rule: SavedRule | None
    target: str  # what it did: ACCEPT, DROP, a chain's name, RETURN, LOG...; the policy

    @property
    def line(self) -> str:
        return self.rule.line if self.rule else f"-P {self.chain} {self.target}"


@dataclass(frozen=True)
class Walk:
    """Where a packet's walk through a table ended.

    ``verdict``: the terminating target (ACCEPT, DROP, REJECT, DNAT, ...) or
    the built-in chain's policy; None when nothing decided and the chain has
    no policy.  ``path``: the jumps still open when it was decided, then the
    deciding rule (or policy): e.g. FORWARD -j DOCKER-FW-FORWARD, then that
    chain's -j DOCKER, then Docker's ACCEPT.  ``trace``: every rule the packet
    matched, in order, jumps that returned included.
    """

    verdict: str | None
    path: tuple[Hop, ...]
    trace: tuple[Hop, ...]

    @property
    def decided_by(self) -> Hop | None:
        return self.path[-1] if self.path else None


def walk(table: Table, chain: str, p: Packet) -> Walk:
    """The walk of a new connection's packet from CHAIN (a built-in one) through TABLE."""
    trace: list[Hop] = []
    found = _walk(table, chain, p, [], trace, 0)
    if found is not None:
        return Walk(found[0], tuple(found[1]), tuple(trace))
    policy = table.chains.get(chain, "-")
    if policy in ("-", ""):
        return Walk(None, (), tuple(trace))
    hop = Hop(table.name, chain, None, policy)
    trace.append(hop)
    return Walk(policy, (hop,), tuple(trace))


def _walk(table: Table, chain: str, p: Packet, stack: list[Hop], trace: list[Hop], depth: int):
    """(verdict, path) when a rule of CHAIN (or a chain it jumps to) decides; None: it returns."""
    if depth >= 10:
        raise Unmodelled(f"jumps nested deeper than 10 from {chain}")
    for rule in table.chain_rules(chain):
        target = rule.target() or ""
        if target in NON_TERMINATING:
            continue
        if not matches(rule.args, p):
            continue
        hop = Hop(table.name, chain, rule, target)
        trace.append(hop)
        if target in TERMINATING:
            return target, [*stack, hop]
        if target == "RETURN":
            return None
        if not target:
            continue  # a rule that only counts
        if target not in table.chains:
            raise Unmodelled(f"unmodelled target {target} in {rule.line}")
        found = _walk(table, target, p, [*stack, hop], trace, depth + 1)
        if found is not None:
            return found
        if "-g" in rule.args:
            return None  # a goto: its chain's end returns to our caller
    return None


def verdict(table: Table, chain: str, p: Packet, depth: int = 0) -> str | None:
    """ACCEPT or DROP from CHAIN and the chains it jumps to; None: it returns."""
    found = _walk(table, chain, p, [], [], depth)
    return found[0] if found else None


def forward(table: Table, p: Packet) -> str:
    """What FORWARD does with the packet: ACCEPT or DROP (its policy, if no rule decides)."""
    return verdict(table, "FORWARD", p) or table.chains["FORWARD"]


def dnat_target(rule: SavedRule) -> tuple[str, int] | None:
    """(address, port) of a DNAT rule's --to-destination; port 0 when it keeps the port."""
    args = rule.args
    for i, word in enumerate(args[:-1]):
        if word == "--to-destination":
            value = args[i + 1]
            if value.startswith("["):  # [2001:db8::2]:80
                address, _, port = value[1:].partition("]")
                port = port.lstrip(":")
            elif value.count(":") == 1:
                address, _, port = value.partition(":")
            else:
                address, port = value, ""
            port = port.split("-")[0]
            return address.split("-")[0], int(port) if port else 0
    return None


def translate(nat: Table, p: Packet) -> tuple[Packet, Walk]:
    """The packet as nat PREROUTING leaves it (DNAT applied), and that walk."""
    result = walk(nat, "PREROUTING", p)
    hop = result.decided_by
    if result.verdict == "DNAT" and hop is not None and hop.rule is not None:
        to = dnat_target(hop.rule)
        if to is None:
            raise Unmodelled(f"a DNAT rule without --to-destination: {hop.rule.line}")
        address, port = to
        return replace(p, dst=address, dport=port or p.dport, local_dst=False, dnat=True), result
    return p, result


def input_(table: Table, p: Packet) -> str:
    """What INPUT does with a packet to the host itself (P.oif is ''): ACCEPT or DROP."""
    return verdict(table, "INPUT", p) or table.chains["INPUT"]


# iptables-save quotes --comment and --log-prefix (bare when only
# [A-Za-z0-9_-], else in double quotes with '"', '\\' and "'" escaped),
# --string always ('"' and '\\' escaped), everything else, interface names
# included, as it is.
_SAVE_STRING_OPTIONS = ("--comment", "--log-prefix")
_SAVE_STRING_BARE = re.compile(r"[A-Za-z0-9_-]+")


def saved_line(chain: str, args: tuple[str, ...] | list[str]) -> str:
    """A rule as iptables-save prints it."""
    words = ["-A", chain]
    for i, arg in enumerate(args):
        option = args[i - 1] if i else ""
        if option in _SAVE_STRING_OPTIONS and not _SAVE_STRING_BARE.fullmatch(arg):
            arg = '"' + re.sub(r"""(["\\'])""", r"\\\1", arg) + '"'
        elif option == "--string":
            arg = '"' + re.sub(r'(["\\])', r"\\\1", arg) + '"'
        words.append(arg)
    return " ".join(words)


def apply_lines(table: Table, lines: list[str]) -> Table:
    """Apply restore lines (':CHAIN', '-A', '-I CHAIN N', '-D') to a copy of a table.

    Deletion is by position ('-D CHAIN N') or by exact rule spec; a '-D' that
    matches nothing raises, like iptables-restore.  The result is rendered and
    parsed again, so rule positions are those iptables-save would show.
    """
    result = Table(table.name, dict(table.chains), list(table.rules))
    for line in lines:
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            result.chains.setdefault(name, "-")
            # declaring an existing chain with --noflush flushes it
            result.rules = [r for r in result.rules if r.chain != name]
            continue
        words = split_restore(line)  # as iptables-restore reads it
        op, chain, args = words[0], words[1], words[2:]
        if chain not in result.chains:
            raise Unmodelled(f"no chain {chain}: {line}")
        if op == "-A":
            result.rules.append(SavedRule(chain, tuple(args), saved_line(chain, args)))
        elif op == "-I":
            position, args = int(args[0]), args[1:]
            rule = SavedRule(chain, tuple(args), saved_line(chain, args))
            indexes = [i for i, r in enumerate(result.rules) if r.chain == chain]
            at = indexes[position - 1] if len(indexes) >= position else len(result.rules)
            result.rules.insert(at, rule)
        elif op == "-D" and len(args) == 1 and args[0].isdigit():
            indexes = [i for i, r in enumerate(result.rules) if r.chain == chain]
            if not 1 <= int(args[0]) <= len(indexes):
                raise Unmodelled(f"-D position out of range: {line}")
            del result.rules[indexes[int(args[0]) - 1]]
        elif op == "-D":
            for i, r in enumerate(result.rules):
                if r.chain == chain and r.args == tuple(args):
                    del result.rules[i]
                    break
            else:
                raise Unmodelled(f"-D matches no rule: {line}")
        else:
            raise Unmodelled(f"unexpected restore line: {line}")
    return parse_save(render(result), result.name)


def render(table: Table) -> str:
    """A table as iptables-save text."""
    lines = [f"*{table.name}"]
    lines += [f":{name} {policy} [0:0]" for name, policy in table.chains.items()]
    lines += [r.line for r in table.rules]
    return "\n".join(lines + ["COMMIT", ""])
