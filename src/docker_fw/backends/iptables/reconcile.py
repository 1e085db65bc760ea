"""Desired rules versus the live ruleset: a plan, and its restore lines.

kube-proxy style: compute what our chains must hold for the containers in
scope, compare with what ``iptables-save`` shows (by the owner/hash tag in
each rule's comment), and produce the minimal list of changes, applied by
the caller in one ``iptables-restore --noflush`` transaction.
"""

from __future__ import annotations

import re
from ...values import dataclass

from ...errors import FirewallError
from .process import SavedRule, Table, split_restore
from ..tag import parse_comment
from .rules import CHAIN_INTERNAL, EGRESS_PLACEMENT, ORDERED_CHAINS, OWN_CHAINS, PLACEMENTS, IptablesRule

# Written as they are; anything else is quoted.  fullmatch, not '$': '$'
# also matches before a final newline, which would end the restore line.
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_./:,!=+@%^-]+")


def quote(token: str) -> str:
    """Quote a token for iptables-restore's tokenizer (double quotes only)."""
    if _PLAIN_TOKEN.fullmatch(token):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rule_line(op: str, chain: str, args: list[str] | tuple[str, ...]) -> str:
    """One restore line; FirewallError unless iptables-restore reads back exactly these arguments.

    A newline or NUL byte cannot be written (iptables-restore reads lines, as
    C strings), nor what is not UTF-8 text (e.g. the bytes of a foreign
    interface name read from iptables-save: a batch is UTF-8).
    """
    tokens = [op, chain, *args]
    written = [quote(token) for token in tokens]
    line = " ".join(written)
    if written == tokens:
        return line  # plain ASCII tokens only: nothing to misread
    if split_restore(line) != tokens or not _utf8(line):
        bad = next((t for t in tokens if "\n" in t or "\0" in t or not _utf8(t)), line)
        raise FirewallError(
            f"cannot write {ascii(bad[:80])} so that iptables-restore reads it back unchanged; nothing was applied"
        )
    return line


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")  # as Iptables.restore writes it
    except UnicodeEncodeError:  # surrogates: bytes that were not UTF-8
        return False
    return True


@dataclass(frozen=True)
class Change:
    """One line of an iptables-restore batch, with why it is there."""

    line: str
    why: str  # owner name, or a short reason such as 'init'
    note: str = ""  # what the line means, when the line alone does not say
    family: int = 4  # 4: an iptables line, 6: an ip6tables line

    @property
    def shown(self) -> str:
        return f"{self.line}  ({self.note})" if self.note else self.line

    @property
    def verb(self) -> str:
        if self.line.startswith(":"):
            return "create"
        return {"-A": "add", "-I": "insert", "-D": "delete"}.get(self.line[:2], "change")


REPLIES_COMMENT = "docker-fw:replies"  # not an owner tag: parse_comment() ignores it
REPLIES_RULE = (
    "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
    "-m", "comment", "--comment", REPLIES_COMMENT, "-j", "ACCEPT",
)


def ensure_chains(table: Table, family: int = 4, egress: bool = False) -> list[Change]:
    """Create our chains and the jumps to them where missing.

    The jumps go first in their parent chain: from FORWARD before Docker's
    final inter-container DROP (--icc=false) and the DROP policy; from DOCKER
    before Docker's own rules (whose order does not matter: they accept).
    """
    changes = []
    placements = list(PLACEMENTS.values())
    if egress or EGRESS_PLACEMENT.chain in table.chains:
        # Made when the first egress lock or outbound rule needs it; its jump
        # goes first in FORWARD (inserted last), before Docker's accepts.
        placements.append(EGRESS_PLACEMENT)
    for place in placements:
        if place.parent not in table.chains:
            raise FirewallError(
                f"chain {place.parent} not found in the filter table: is the Docker "
                "engine running with iptables enabled (--iptables=true)?"
            )
        if place.chain not in table.chains:
            # Declaring an existing chain with --noflush would flush it, so only
            # missing chains are declared.
            changes.append(Change(f":{place.chain} - [0:0]", "setup", family=family))
        if not table.has_rule(place.parent, "-j", place.chain):
            changes.append(Change(rule_line("-I", place.parent, ["1", "-j", place.chain]), "setup", family=family))
    if not table.has_rule(CHAIN_INTERNAL, *REPLIES_RULE):
        # Replies of the connections add-internal rules admit.  Docker accepts
        # them itself ('-o <bridge> ... RELATED,ESTABLISHED') on ordinary
        # bridges, but not on --internal networks.  Only connections whose
        # first packet was accepted are ESTABLISHED, so this opens nothing new.
        changes.append(Change(rule_line("-I", CHAIN_INTERNAL, ["1", *REPLIES_RULE]), "setup", family=family))
    return changes


def our_rules(table: Table) -> dict[tuple[str, str], list[SavedRule]]:
    """Rules in our chains that carry our tag, by (owner, digest)."""
    chains = set(OWN_CHAINS)
    found: dict[tuple[str, str], list[SavedRule]] = {}
    for rule in table.rules:
        if rule.chain not in chains:
            continue
        key = parse_comment(rule.comment or "")
        if key is not None:
            found.setdefault(key, []).append(rule)
    return found


def delete_changes(rules: list[tuple[str, SavedRule]], family: int = 4) -> list[Change]:
    """Delete rules by position, highest first within each chain.

    By position rather than by spec: iptables-nft cannot find some rules by
    the spec iptables-save prints for them (-m recent, -m connlimit).  The
    positions come from the same iptables-save and stay valid because the
    batch deletes from the bottom up, before it appends anything.
    """
    ordered = sorted(rules, key=lambda item: (item[1].chain, -item[1].position))
    return [
        Change(f"-D {rule.chain} {rule.position}", why, note=rule.line, family=family)
        for why, rule in ordered
    ]


def plan_rules(
    table: Table, desired: list[IptablesRule], scope: set[str] | None, family: int = 4
) -> list[Change]:
    """Changes that make our chains hold exactly ``desired`` for the owners in scope.

    ``table`` is the table of ``family`` (4: iptables, 6: ip6tables): desired
    rules of the other family are ignored.

    ``scope`` None means every owner (a full reconcile).  Rules of owners out
    of scope are left alone.  Duplicates of a wanted rule are removed.
    """
    wanted: dict[tuple[str, str], IptablesRule] = {}
    for rule in desired:
        if rule.family == family and (scope is None or rule.owner in scope):
            wanted.setdefault(rule.key, rule)
    actual = {
        key: rules
        for key, rules in our_rules(table).items()
        if scope is None or key[0] in scope
    }
    stale: list[tuple[str, SavedRule]] = []
    for key, rules in actual.items():
        extra = rules if key not in wanted else rules[1:]
        stale.extend((key[0], r) for r in extra)
    # In ORDERED_CHAINS our locks (DROP) come after every other rule of ours:
    # a rule found below a lock (placed by hand, or by an older order) is
    # moved, i.e. deleted and inserted again.
    misplaced = set()
    for chain in ORDERED_CHAINS:
        lock_positions = [rules[0].position for key, rules in actual.items()
                          if key in wanted and wanted[key].last and rules[0].chain == chain]
        if lock_positions:
            first_lock = min(lock_positions)
            misplaced |= {key for key, rules in actual.items() if key in wanted and not wanted[key].last
                          and rules[0].chain == chain and rules[0].position > first_lock}
    stale.extend((key[0], actual[key][0]) for key in misplaced)
    changes = delete_changes(stale, family)
    locked_chains = {rule.chain for rule in table.rules if rule.chain in ORDERED_CHAINS and rule.target() == "DROP"}
    locked_chains |= {rule.chain for rule in wanted.values() if rule.last}
    for key, rule in wanted.items():
        if key not in actual or key in misplaced:
            if rule.chain in locked_chains and not rule.last:
                line = rule_line("-I", rule.chain, ["1", *rule.argv()])  # above the locks
            else:
                line = rule_line("-A", rule.chain, rule.argv())
            changes.append(Change(line, rule.owner, family=family))
    return changes
