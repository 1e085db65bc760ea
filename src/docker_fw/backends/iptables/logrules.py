"""'init --log-blocked' in iptables: an NFLOG rule just before the whitelist's drop.

After 'init', a new connection from outside to a container that no rule
allows falls off the end of FORWARD, whose policy is DROP (see layouts.py):
that is the whitelist's drop.  So the logging sits at the very end of
FORWARD, one jump per initialised bridge, and, for a network with icc
disabled, just before Docker's rule that drops traffic between its
containers (where add-internal rules did not accept it)::

    -A FORWARD -o docker0 -j DOCKER-FW-LOG          (the last rules of FORWARD)
    -A FORWARD -i docker0 -o docker0 -j DOCKER-FW-LOG   (20.10; DOCKER-FORWARD on 28+)
    -A FORWARD -i docker0 -o docker0 -j DROP        (Docker's, icc disabled)
    -A DOCKER-FW-LOG -m conntrack --ctstate NEW
        -m hashlimit --hashlimit-upto 6/min --hashlimit-burst 6 --hashlimit-mode srcip ...
        -m limit --limit 20/min --limit-burst 20
        -m comment --comment docker-fw-log:<hash> -j NFLOG --nflog-group 42 --nflog-prefix docker-fw-blocked

NFLOG, not LOG: the kernel's LOG target writes nothing from a network
namespace other than the first (nf_log's per-netns logger is off by
default); NFLOG hands the packet to a netlink listener in the same
namespace, ulogd2 (see blocklog.py and the README), and drops it if nobody
listens.  Only a connection's first packet is logged (conntrack NEW: a
dropped SYN is never confirmed, so a retry is NEW again, and is rate
limited as well), at most HASHLIMIT per source address and LIMIT in all, so
neither one host's flood nor a flood from many addresses can fill a disk
(at most LIMIT lines a minute reach ulogd2).

The rule's comment carries a hash of the rule, so a rule another version
wrote (other limits) is recognised as out of date and replaced.  Docker
inserts its own FORWARD rules above existing ones, so the jumps stay last;
if anything lands below them (or between a jump and Docker's drop) they are
moved back.
"""

from __future__ import annotations

from .process import SavedRule, Table
from .reconcile import Change, rule_line
from .rules import sha256
from .walk import Unmodelled, apply_lines

CHAIN_LOG = "DOCKER-FW-LOG"
NFLOG_GROUP = 42  # the ulogd2 configuration in contrib/ listens on this group
NFLOG_PREFIX = "docker-fw-blocked"  # what blocklog.py keeps of ulogd2's output
HASHLIMIT = ("6/min", "6")  # per source address: rate, burst
LIMIT = ("20/min", "20")  # every source together: rate, burst
COMMENT_PREFIX = "docker-fw-log:"


def log_matches(family: int) -> tuple[str, ...]:
    # hashlimit names are per family and per network namespace
    name = "docker-fw-log" if family == 4 else "docker-fw-log6"
    return (
        "-m", "conntrack", "--ctstate", "NEW",
        "-m", "hashlimit", "--hashlimit-upto", HASHLIMIT[0], "--hashlimit-burst", HASHLIMIT[1],
        "--hashlimit-mode", "srcip", "--hashlimit-name", name,
        "-m", "limit", "--limit", LIMIT[0], "--limit-burst", LIMIT[1],
    )


def log_target() -> tuple[str, ...]:
    return ("-j", "NFLOG", "--nflog-group", str(NFLOG_GROUP), "--nflog-prefix", NFLOG_PREFIX)


def log_comment(family: int) -> str:
    text = "\0".join((*log_matches(family), *log_target()))
    return COMMENT_PREFIX + sha256(text.encode()).hexdigest()[:12]


def log_rule(family: int) -> tuple[str, ...]:
    return (*log_matches(family), "-m", "comment", "--comment", log_comment(family), *log_target())


def log_jump(bridge: str) -> tuple[str, ...]:
    """The jump at the end of FORWARD: new connections from outside to BRIDGE's containers."""
    return ("-o", bridge, "-j", CHAIN_LOG)


def internal_log_jump(bridge: str) -> tuple[str, ...]:
    """The jump just before Docker's '-i B -o B -j DROP' (icc disabled): between containers."""
    return ("-i", bridge, "-o", bridge, "-j", CHAIN_LOG)


# Where Docker ends traffic between the containers of a bridge with icc disabled:
# FORWARD up to 27.x, DOCKER-FORWARD from 28.
_INTERNAL_DROP_CHAINS = ("FORWARD", "DOCKER-FORWARD")


def _internal_drops(table: Table, bridges: list[str]) -> list[tuple[str, int, str]]:
    """(chain, position, bridge) of each of Docker's '-i B -o B -j DROP' for BRIDGES."""
    wanted = {("-i", b, "-o", b, "-j", "DROP"): b for b in bridges}
    return [
        (chain, rule.position, wanted[rule.args])
        for chain in _INTERNAL_DROP_CHAINS
        for rule in table.chain_rules(chain)
        if rule.args in wanted
    ]


def _internal_jumps(table: Table) -> list[SavedRule]:
    return [
        r for chain in _INTERNAL_DROP_CHAINS for r in table.chain_rules(chain)
        if r.target() == CHAIN_LOG and len(r.args) == 6 and r.args[0] == "-i"
    ]


def _internal_in_place(table: Table, bridges: list[str]) -> bool:
    drops = _internal_drops(table, bridges)
    if len(_internal_jumps(table)) != len(drops):
        return False
    for chain, position, bridge in drops:
        rules = table.chain_rules(chain)
        if position < 2 or rules[position - 2].args != internal_log_jump(bridge):
            return False
    return True


def plan_log(table: Table, bridges: list[str], enabled: bool, family: int = 4,
             before: list[str] = ()) -> list[Change]:
    """The changes that log (ENABLED) the new connections the whitelist drops for BRIDGES,
    or log none (not ENABLED); empty when nothing is to change.

    BEFORE: the lines the same batch applies first (init's): positions are
    computed on the table as it will be then (walk.apply_lines, the in-memory
    kernel), and each of our inserts on the table as the lines before it
    leave it.  Two places: the end of FORWARD (from outside: what falls off
    FORWARD meets its DROP policy), and just before Docker's '-i B -o B -j
    DROP' (between containers of a network with icc disabled).
    """
    wanted = [log_jump(b) for b in bridges] if enabled else []
    has_chain = CHAIN_LOG in table.chains
    if not enabled and not has_chain:
        return []
    try:
        now = apply_lines(table, list(before)) if before else table  # nothing to simulate: the table as read
    except Unmodelled:
        now = table  # init's lines did not simulate: positions as read (a mistake is refused whole)
    changes: list[Change] = []

    def change(line: str, note: str = "") -> None:
        nonlocal now
        changes.append(Change(line, "log", note=note, family=family))
        try:
            now = apply_lines(now, [line])
        except Unmodelled:
            pass

    if not has_chain:
        change(f":{CHAIN_LOG} - [0:0]")
    forward = now.chain_rules("FORWARD")
    outside = [r for r in forward if r.target() == CHAIN_LOG and r.args[0] == "-o"]
    tail = [r.args for r in forward[len(forward) - len(wanted):]] if wanted else []
    outside_in_place = sorted(tail) == sorted(wanted) and len(outside) == len(wanted)
    if not outside_in_place:
        for rule in outside:
            change(rule_line("-D", "FORWARD", rule.args))
    if not (enabled and _internal_in_place(now, bridges)):
        for rule in _internal_jumps(now):
            change(rule_line("-D", rule.chain, rule.args))
        if enabled:
            for index in range(len(_internal_drops(now, bridges))):
                chain, position, bridge = _internal_drops(now, bridges)[index]
                change(rule_line("-I", chain, [str(position), *internal_log_jump(bridge)]))
    rules = now.chain_rules(CHAIN_LOG)
    if enabled and [r.comment for r in rules] != [log_comment(family)] or not enabled and rules:
        # by position, bottom up: nothing else in the batch touches this chain
        for rule in sorted(rules, key=lambda r: -r.position):
            change(f"-D {CHAIN_LOG} {rule.position}", note=rule.line)
        if enabled:
            change(rule_line("-A", CHAIN_LOG, log_rule(family)))
    if not outside_in_place:
        for jump in wanted:
            change(rule_line("-A", "FORWARD", jump))
    return changes
