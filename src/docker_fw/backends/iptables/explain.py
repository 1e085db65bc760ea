"""'docker-fw explain' for iptables: a Flow walked through the live raw, nat and filter tables.

The kernel's order for a new connection: raw PREROUTING (Docker 28+ drops
direct access to a container's address from outside its bridge there), nat
PREROUTING (a published port's DNAT: the filter table then sees the
container's address and port, not the host's), then filter FORWARD (to a
container, or out) or INPUT (to the host itself).  The walker
(``walk.walk``) says which rule decided; this module says whose rule that is
and why it is there, in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from ...values import dataclass

from ...errors import FirewallError
from ...flow import OUTSIDE, Flow, Verdict
from ...model import RuleSpec
from ...resolve import ResolvedRule
from . import layouts
from .process import Table
from .rules import CHAIN_FORWARD, COMMENT_PREFIX, parse_comment, render
from .walk import Hop, Packet, Unmodelled, Walk, apply_lines, translate, walk

# Addresses the nat walk gives a published port's destination when it is bound
# to every address: whatever address of the host the client used.
_ANY = {4: "0.0.0.0", 6: "::"}


@dataclass(frozen=True)
class Tables:
    """What a walk reads: the three tables of one family, parsed from iptables-save."""

    raw: Table
    nat: Table
    filter: Table


def read_tables(runner, filter_table: Table) -> Tables:
    """raw and nat read live next to FILTER_TABLE (a kernel without one reads as empty)."""

    def read(name: str) -> Table:
        try:
            return runner.save(name)
        except FirewallError:
            return Table(name)

    return Tables(read("raw"), read("nat"), filter_table)


def explain(
    tables: Tables,
    flow: Flow,
    recorded: Sequence[tuple[RuleSpec, ResolvedRule]],
    adding: Sequence[ResolvedRule] = (),
    replaying: Sequence[str] = (),
    plan=None,
) -> Verdict:
    """The verdict on FLOW; FirewallError when the walk meets a rule it does not model.

    PLAN(filter, desired, owners) gives the restore lines that recording ADDING
    (or replaying the rules of REPLAYING) would apply: the backend's own
    planner, its lines applied here to a copy of the filter table."""
    layouts.detect(tables.filter)  # Docker's nftables backend, or a layout this walk would misread
    filter_table = tables.filter
    owners = {r.owner for r in adding} | set(replaying)
    if owners:
        desired = [r for _, r in recorded] + list(adding)
        filter_table = apply_lines(filter_table, plan(filter_table, desired, owners))
    try:
        return _explain(Tables(tables.raw, tables.nat, filter_table), flow, recorded)
    except Unmodelled as exc:
        raise FirewallError(f"cannot explain this flow: {exc}") from None


def _explain(tables: Tables, flow: Flow, recorded) -> Verdict:
    translated = ""
    if flow.host_port:
        # What the client sends: the host's address, the published host port.
        packet = Packet(flow.src, flow.host_ip or _ANY[flow.family], flow.host_port, OUTSIDE, "",
                        flow.proto, local_dst=True)
        packet, nat = translate(tables.nat, packet)
        if not packet.dnat or (packet.dst, packet.dport) != (flow.dst, flow.dport):
            return Verdict(
                False, _line(nat.decided_by) or "(no DNAT rule)",
                f"the nat table does not translate host port {flow.host_port}/{flow.proto} to "
                f"{flow.dst}:{flow.dport}, where the engine says it is published",
                "nat", "PREROUTING", trace=_lines(nat),
            )
        translated = (f"host port {flow.host_port}/{flow.proto} -> {flow.dst}:{flow.dport} "
                      f"({_line(nat.decided_by)})")
        packet = Packet(flow.src, flow.dst, flow.dport, OUTSIDE, flow.oif, flow.proto, dnat=True)
        trace: tuple[str, ...] = _lines(nat)
    else:
        packet = Packet(flow.src, flow.dst, flow.dport, flow.iif, flow.oif, flow.proto, local_dst=flow.to_host)
        raw = walk(tables.raw, "PREROUTING", packet)
        trace = _lines(raw)
        if raw.verdict in ("DROP", "REJECT"):
            return Verdict(False, _line(raw.decided_by), _raw_reason(flow), "raw", "PREROUTING", trace=trace)
        after, nat = translate(tables.nat, packet)
        trace += _lines(nat)
        if after.dnat:
            raise Unmodelled(f"the nat table translates this flow to {after.dst}:{after.dport} "
                             f"({_line(nat.decided_by)}): explain the flow to that container")
    chain = "INPUT" if flow.to_host else "FORWARD"
    result = walk(tables.filter, chain, packet)
    trace += _lines(result)
    hop = result.decided_by
    allowed = result.verdict == "ACCEPT"
    by_comment = {render(r).comment: spec for spec, r in recorded}
    ours = [h for h in result.path if _owner_tag(h)]
    rule, rule_line, stale = None, "", ""
    if ours:
        comment = ours[-1].rule.comment
        rule, rule_line = by_comment.get(comment), ours[-1].rule.line
        if rule is None:
            stale = rule_line
    return Verdict(
        allowed,
        _line(hop) or f"(end of {chain})",
        _reason(tables.filter, result, flow, bool(ours), stale),
        "filter", hop.chain if hop else chain,
        rule=rule, rule_line=rule_line, stale=stale, translated=translated, trace=trace,
    )


def _owner_tag(hop: Hop) -> bool:
    return hop.rule is not None and parse_comment(hop.rule.comment or "") is not None


def _line(hop: Hop | None) -> str:
    return hop.line if hop else ""


def _lines(result: Walk) -> tuple[str, ...]:
    return tuple(f"{h.table}: {h.line}" for h in result.trace)


def _words(hop: Hop) -> tuple[str, ...]:
    return hop.rule.args if hop.rule else ()


def _value(args: tuple[str, ...], option: str) -> str | None:
    """The value of OPTION when given without '!'."""
    for i, word in enumerate(args[:-1]):
        if word == option and (i == 0 or args[i - 1] != "!"):
            return args[i + 1]
    return None


def _negated(args: tuple[str, ...], option: str) -> bool:
    return any(args[i] == "!" and args[i + 1] == option for i in range(len(args) - 1))


def _raw_reason(flow: Flow) -> str:
    return (f"Docker's raw-table rule drops traffic to {flow.dst} that does not come in on its bridge: "
            "Docker 28 and newer allow no direct access to a container's address from outside; "
            "only a published port (through its DNAT) is reachable")


def _reason(table: Table, result: Walk, flow: Flow, ours: bool, stale: str) -> str:
    """Why the deciding rule (or policy) of RESULT decided as it did, in words."""
    hop = result.decided_by
    sent_by_us = [h for h in result.trace if h.chain == CHAIN_FORWARD and _owner_tag(h)]
    if stale:
        prefix = "a docker-fw rule that no recorded rule makes now (stale: 'docker-fw replay' removes it): "
    else:
        prefix = ""
    if hop is None:
        return f"nothing in {result.path or 'the chain'} decided"
    args = _words(hop)
    if hop.rule is None:  # a policy
        if hop.target == "ACCEPT":
            return f"no rule decided: {hop.chain}'s policy is ACCEPT"
        if sent_by_us and flow.oif and flow.iif == OUTSIDE:
            return (f"docker-fw's rule sent it to Docker's DOCKER chain, which accepts only the ports "
                    f"the engine publishes, and {flow.dport}/{flow.proto} is not published to {flow.dst}; "
                    f"then {hop.chain}'s policy {hop.target} dropped it")
        if flow.iif == OUTSIDE and flow.oif:
            return (f"no rule accepts it: {hop.chain}'s policy is {hop.target} (docker-fw's init removed "
                    "Docker's catch-all, so only a docker-fw rule opens a published port)")
        return f"no rule accepts it: {hop.chain}'s policy is {hop.target}"
    comment = hop.rule.comment or ""
    if comment.startswith(COMMENT_PREFIX) and parse_comment(comment):
        owner = parse_comment(comment)[0]
        return prefix + f"docker-fw's rule of {owner} accepts it"
    if hop.target in ("DROP", "REJECT"):
        return _drop_reason(hop, args, flow)
    if hop.target == "ACCEPT":
        return prefix + _accept_reason(result, hop, args, flow, ours)
    return f"{hop.target} by a rule in {hop.chain}"


def _drop_reason(hop: Hop, args: tuple[str, ...], flow: Flow) -> str:
    iif, oif = _value(args, "-i"), _value(args, "-o")
    if hop.chain.startswith("DOCKER-ISOLATION"):
        if _negated(args, "-s") or _negated(args, "-d"):
            return "Docker's isolation of an --internal network: nothing enters or leaves it"
        return "Docker isolates its networks from each other: traffic between two bridges is dropped"
    if iif and oif and iif == oif and not _negated(args, "-i"):
        return (f"inter-container communication is off on {iif} (--icc=false, or the network's enable_icc "
                "false): Docker drops traffic between its containers that no rule accepted")
    if hop.chain == "DOCKER" and oif and _negated(args, "-i"):
        return (f"Docker drops traffic from outside to {oif} that no published-port rule accepted: "
                f"{flow.dport}/{flow.proto} is not published to {flow.dst}, or no docker-fw rule sent it here")
    owner = "Docker's rule" if hop.chain.startswith("DOCKER") else "a rule docker-fw did not write"
    return f"{owner} in {hop.chain} drops it"


def _accept_reason(result: Walk, hop: Hop, args: tuple[str, ...], flow: Flow, ours: bool) -> str:
    iif, oif = _value(args, "-i"), _value(args, "-o")
    if hop.chain == "DOCKER" and _negated(args, "-i") and _value(args, "-d"):
        what = f"Docker's rule for a port it publishes ({_value(args, '--dport') or 'any'}/{flow.proto} of {flow.dst})"
        if ours:
            return f"docker-fw's rule sent it to Docker's DOCKER chain, where {what} accepts it"
        catch_all = [h for h in result.path if h.target == "DOCKER" and h.chain in ("FORWARD", "DOCKER-BRIDGE")]
        if catch_all:
            return (f"Docker's catch-all ({catch_all[0].line}) sent it to the DOCKER chain, where {what} "
                    "accepts it: 'docker-fw init' is not in effect on this bridge, so anyone reaches its "
                    "published ports")
        return f"{what} accepts it"
    if hop.chain == "DOCKER" and iif and oif and iif == oif and _value(args, "-s"):
        return "Docker's rule for a legacy link (--link) between these containers accepts it"
    if iif and flow.iif == flow.oif and not _negated(args, "-o") and not _negated(args, "-i"):
        return f"inter-container communication is on for {iif}: Docker accepts traffic between its containers"
    if iif and (_negated(args, "-o") or not oif):
        return f"Docker lets containers on {iif} reach the outside"
    owner = "Docker's rule" if hop.chain.startswith("DOCKER") else "a rule docker-fw did not write"
    return f"{owner} in {hop.chain} accepts it"
