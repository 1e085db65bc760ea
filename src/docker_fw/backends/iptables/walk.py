"""What a filter table does with a packet, and what a batch makes of a table.

A model, not the kernel: it lets unit tests (and, later, an 'explain'
command) say which flows a ruleset lets through, rather than only which lines
were written.  ``apply_lines`` applies restore lines to a parsed table the
way ``iptables-restore --noflush`` does; ``forward`` walks a new connection
through FORWARD and the chains it jumps to.  Matches it does not model raise
``Unmodelled``: a walk never guesses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .process import SavedRule, Table, parse_save, split_restore


class Unmodelled(ValueError):
    """A rule or line the model does not know how to read."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection, as FORWARD sees it."""

    src: str
    dst: str
    dport: int
    iif: str
    oif: str
    proto: str = "tcp"
    sport: int = 0


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
            ok = (p.iif if word == "-i" else p.oif) == value
        elif word in ("-s", "-d"):
            ok = ipaddress.ip_address(p.src if word == "-s" else p.dst) in ipaddress.ip_network(value)
        elif word == "-p":
            ok = value == p.proto
        elif word in ("--dport", "--sport"):
            ok = int(value) == (p.dport if word == "--dport" else p.sport)
        elif word == "--ctstate":
            ok = "NEW" in value.split(",")
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
        elif word == "--comment":
            i += 2
            continue
        else:
            raise Unmodelled(f"unmodelled match {word} in {args}")
        if ok == negate:
            return False
        negate = False
        i += 2
    return True


def verdict(table: Table, chain: str, p: Packet, depth: int = 0) -> str | None:
    """ACCEPT or DROP from CHAIN and the chains it jumps to; None: it returns."""
    if depth >= 10:
        raise Unmodelled(f"jumps nested deeper than 10 from {chain}")
    for rule in table.chain_rules(chain):
        if not matches(rule.args, p):
            continue
        target = rule.target()
        if target in ("ACCEPT", "DROP"):
            return target
        if target == "RETURN":
            return None
        if target:
            result = verdict(table, target, p, depth + 1)
            if result:
                return result
    return None


def forward(table: Table, p: Packet) -> str:
    """What FORWARD does with the packet: ACCEPT or DROP (its policy, if no rule decides)."""
    return verdict(table, "FORWARD", p) or table.chains["FORWARD"]


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
