"""'init --log-blocked' in iptables: an NFLOG rule just before the whitelist's drop.

After 'init', a new connection from outside to a container that no rule
allows falls off the end of FORWARD, whose policy is DROP (see layouts.py):
that is the whitelist's drop.  So the logging sits at the very end of
FORWARD, one jump per initialised bridge::

    -A FORWARD -o docker0 -j DOCKER-FW-LOG          (the last rules of FORWARD)
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
if anything lands below them they are moved back to the end.
"""

from __future__ import annotations

from .process import Table
from .reconcile import Change, rule_line
from .rules import sha256

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
    return ("-o", bridge, "-j", CHAIN_LOG)


def plan_log(table: Table, bridges: list[str], enabled: bool, family: int = 4) -> list[Change]:
    """The changes that make FORWARD end with the logging jumps for BRIDGES (ENABLED),
    or hold none of them (not ENABLED); empty when nothing is to change.

    Jumps are deleted by their spec, not by position: the same batch may hold
    init's changes to FORWARD, which move positions.  The rules of our own
    chain are deleted by position (nothing else in the batch touches it),
    from the bottom up.
    """
    changes: list[Change] = []
    forward = table.chain_rules("FORWARD")
    live_jumps = [r for r in forward if r.target() == CHAIN_LOG]
    wanted = [log_jump(b) for b in bridges] if enabled else []
    tail = [r.args for r in forward[len(forward) - len(wanted):]] if wanted else []
    in_place = sorted(tail) == sorted(wanted) and len(live_jumps) == len(wanted)
    if not in_place:
        changes.extend(Change(rule_line("-D", "FORWARD", r.args), "log", family=family) for r in live_jumps)
    if not enabled:
        # The chain stays (empty): deleting it would need every jump gone first.
        changes.extend(
            Change(f"-D {CHAIN_LOG} {r.position}", "log", note=r.line, family=family)
            for r in sorted(table.chain_rules(CHAIN_LOG), key=lambda r: -r.position)
        )
        return changes
    if CHAIN_LOG not in table.chains:
        changes.append(Change(f":{CHAIN_LOG} - [0:0]", "log", family=family))
    rules = table.chain_rules(CHAIN_LOG)
    if [r.comment for r in rules] != [log_comment(family)]:
        changes.extend(
            Change(f"-D {CHAIN_LOG} {r.position}", "log", note=r.line, family=family)
            for r in sorted(rules, key=lambda r: -r.position)
        )
        changes.append(Change(rule_line("-A", CHAIN_LOG, log_rule(family)), "log", family=family))
    if not in_place:
        changes.extend(Change(rule_line("-A", "FORWARD", jump), "log", family=family) for jump in wanted)
    return changes

