"""Which iptables layout the Docker engine made, and what 'init' changes in it.

The one place that knows Docker's own rules.  'init' turns Docker's FORWARD
chain into a whitelist (the seed's "iptables workflow"):

1. remove the catch-all jump that lets anyone reach published ports
   (20.10-27.x: ``FORWARD -o <bridge> -j DOCKER``);
2. send traffic between containers of one bridge to the DOCKER chain, first
   in FORWARD (``FORWARD -i <bridge> -o <bridge> -j DOCKER``), where link
   rules and 'add-internal' rules accept it;
3. everything else (established connections, outgoing traffic) is Docker's
   and stays as it is.

Newer engines (28.x, 29.x) moved these rules into other chains; until they
are supported, 'init' recognises them and refuses with an explanation rather
than half-apply something wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FirewallError
from .iptables import Table
from .reconcile import Change, rule_line

LEGACY = "docker-20.10"  # the layout of Docker 1.5 up to 27.x


@dataclass(frozen=True)
class Layout:
    name: str
    description: str


def detect(table: Table) -> Layout:
    chains = table.chains
    if "DOCKER" not in chains:
        raise FirewallError(
            "no DOCKER chain in the filter table: is the Docker engine running, "
            "with iptables enabled, in this network namespace?"
        )
    if "DOCKER-FORWARD" in chains or "DOCKER-BRIDGE" in chains:
        raise FirewallError(
            "unsupported iptables layout: this engine (Docker 28 or newer: chains "
            "DOCKER-FORWARD/DOCKER-BRIDGE) is not supported yet; nothing was changed"
        )
    if any("--match-set" in r.args for r in table.chain_rules("FORWARD")):
        raise FirewallError(
            "unsupported iptables layout: Docker 28.0.0's ipset match "
            "(docker-ext-bridges) is not supported yet; nothing was changed"
        )
    return Layout(LEGACY, "Docker 20.10-27.x: FORWARD -o <bridge> -j DOCKER")


def catch_all(bridge: str) -> tuple[str, ...]:
    return ("-o", bridge, "-j", "DOCKER")


def internal_jump(bridge: str) -> tuple[str, ...]:
    return ("-i", bridge, "-o", bridge, "-j", "DOCKER")


def is_initialised(table: Table, bridges: list[str]) -> bool:
    """Whether every bridge is in the whitelist shape 'init' makes."""
    return all(
        not table.has_rule("FORWARD", *catch_all(b)) and table.has_rule("FORWARD", *internal_jump(b))
        for b in bridges
    )


def plan_init(table: Table, bridges: list[str]) -> list[Change]:
    """The changes 'init' makes; empty when already done (re-running is safe)."""
    detect(table)
    changes: list[Change] = []
    recognised = 0
    for bridge in bridges:
        has_catch_all = table.has_rule("FORWARD", *catch_all(bridge))
        has_internal = table.has_rule("FORWARD", *internal_jump(bridge))
        if not has_catch_all and not has_internal:
            # e.g. an --internal network: Docker gives it no DOCKER jump at all.
            continue
        recognised += 1
        # Every copy goes: one left behind keeps published ports open to all.
        copies = sum(1 for r in table.chain_rules("FORWARD") if r.args == catch_all(bridge))
        changes.extend(
            Change(rule_line("-D", "FORWARD", catch_all(bridge)), "init") for _ in range(copies)
        )
        if not has_internal:
            changes.append(
                Change(rule_line("-I", "FORWARD", ["1", *internal_jump(bridge)]), "init")
            )
    if not recognised:
        raise FirewallError(
            "could not find Docker's rule 'FORWARD -o docker0 -j DOCKER' (nor the one "
            "init adds) for any bridge: unrecognised layout; nothing was changed"
        )
    return changes
