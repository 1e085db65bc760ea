"""Which iptables layout the Docker engine made, and what 'init' changes in it.

The one place that knows Docker's own rules.  'init' turns Docker's rules into
a whitelist (the seed's "iptables workflow"):

1. remove the catch-all jump that lets anyone reach published ports, every
   copy of it, for every bridge network:

   - Docker 20.10-27.x: ``FORWARD -o <bridge> -j DOCKER``;
   - Docker 28.0.1 and newer, 29 with its iptables backend:
     ``DOCKER-BRIDGE -o <bridge> -j DOCKER`` (FORWARD jumps to DOCKER-USER,
     then DOCKER-FORWARD, which jumps to DOCKER-CT, the isolation chains or
     DOCKER-INTERNAL, then DOCKER-BRIDGE);

2. send traffic between containers of one bridge to the DOCKER chain, first
   in FORWARD (``FORWARD -i <bridge> -o <bridge> -j DOCKER``), where link
   rules and 'add-internal' rules accept it.  It must come before Docker's
   rule that ends such traffic (20.10: ``FORWARD -i <bridge> -o <bridge> -j
   DROP|ACCEPT``; 28+: the jump to DOCKER-FORWARD, which holds that rule), so
   a copy found below it is moved back to the top;
3. IPv6 (ip6tables) on a bridge with --icc=false: accept its neighbour
   discovery (ICMPv6 types 135 and 136, from the bridge to the same bridge)
   first in FORWARD, above Docker's ICC drop, which would drop it too: no
   IPv6 connection between two containers could then be opened, whatever
   'add-internal' admits.  Parity with IPv4, whose ARP no iptables rule
   filters; it opens no port (``neighbour_accept``);
4. everything else (established connections, outgoing traffic) is Docker's
   and stays as it is.

What is left of "anyone may reach a published port" is then docker-fw's own
'add' rules (DOCKER-FW-FORWARD, jumped to first in FORWARD), which send a
match to the DOCKER chain: there Docker's per-port ACCEPT rules let only
published ports through.  Traffic that no rule takes falls off the end of
FORWARD, so the FORWARD policy must be DROP (Docker's default when it turns
IP forwarding on itself): 'init' refuses to run otherwise.

Docker 28.0.0 (one patch release; 28.0.1 replaced it with DOCKER-BRIDGE) has
one catch-all shared by every bridge, ``FORWARD -m set --match-set
docker-ext-bridges-v4 dst -j DOCKER`` (an ipset of the bridges' subnets;
``-v6`` in ip6tables): init removes it, and puts the internal jump above each
bridge's ``-i B -o B -j ACCEPT|DROP``, as on 20.10.  No 28.0.0 engine runs
here: this is proved on moby's documented layout only (unit tests).

Refused, with nothing changed:

- Docker 29's nftables firewall backend (``--firewall-backend=nftables``):
  its rules are in nftables tables (``table ip docker-bridges``), there is no
  DOCKER-USER, and ``iptables-save`` shows no Docker chain at all.  docker-fw
  uses its nftables backend there (backends.choice, by what the engine
  reports); this backend refuses such an engine if it is ever handed one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ...values import dataclass

from ...errors import FirewallError
from .process import SavedRule, Table, bridge_name_problem
from .reconcile import Change, rule_line

LEGACY = "docker-20.10"  # the layout of Docker 1.5 up to 27.x
DOCKER_28 = "docker-28"  # Docker 28.0.1 and newer, 29 with iptables: DOCKER-FORWARD/DOCKER-BRIDGE
IPSET_2800 = "docker-28.0.0"  # one ipset-based catch-all for every bridge
NFTABLES = "docker-29-nftables"  # refused here: backends/nftables handles it

_NOTHING = "nothing was changed"


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    catch_all_chain: str = "FORWARD"  # where Docker's per-bridge catch-all jump lives
    shared_catch_all: bool = False  # 28.0.0: one ipset rule for every bridge instead

    def blockers(self, table: Table, bridge: str) -> list[int]:
        """Positions in FORWARD of the rules our internal jump must precede."""
        if self.name == DOCKER_28:
            return [r.position for r in table.chain_rules("FORWARD") if r.target() == "DOCKER-FORWARD"]
        return [
            r.position
            for r in table.chain_rules("FORWARD")
            if r.args in (("-i", bridge, "-o", bridge, "-j", "DROP"), ("-i", bridge, "-o", bridge, "-j", "ACCEPT"))
        ]


LEGACY_LAYOUT = Layout(LEGACY, "Docker 20.10-27.x: FORWARD -o <bridge> -j DOCKER")
IPSET_2800_LAYOUT = Layout(
    IPSET_2800,
    "Docker 28.0.0: FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER",
    shared_catch_all=True,
)
DOCKER_28_LAYOUT = Layout(
    DOCKER_28,
    "Docker 28.0.1+ / 29 (iptables): DOCKER-BRIDGE -o <bridge> -j DOCKER",
    catch_all_chain="DOCKER-BRIDGE",
)


def _nftables_error() -> FirewallError:
    return FirewallError(
        "unsupported firewall: this engine uses Docker 29's nftables backend "
        "(table ip docker-bridges, no DOCKER-USER chain), which docker-fw's iptables backend "
        f"cannot reshape (docker-fw uses its nftables backend for such an engine); {_NOTHING}"
    )


def detect(table: Table, firewall_backend: str | None = None) -> Layout:
    """The layout of this filter table; FirewallError (naming it) when unsupported.

    ``firewall_backend`` is the engine's own word when known (``docker info``:
    FirewallBackend.Driver, Docker 28+): "nftables" is refused outright.
    """
    if firewall_backend and "nftables" in firewall_backend:
        raise _nftables_error()
    chains = table.chains
    if "DOCKER" not in chains:
        raise FirewallError(
            "no DOCKER chain in the filter table: is the Docker engine running, "
            "with iptables enabled, in this network namespace? (Docker 29 with "
            "--firewall-backend=nftables has none: docker-fw uses its nftables backend there)"
        )
    if any("--match-set" in r.args and any(a.startswith(_IPSET_PREFIX) for a in r.args)
           for r in table.chain_rules("FORWARD")):
        # its RELATED,ESTABLISHED rule names the ipset too: still 28.0.0 after init
        return IPSET_2800_LAYOUT
    if "DOCKER-FORWARD" in chains or "DOCKER-BRIDGE" in chains:
        missing = [c for c in ("DOCKER-FORWARD", "DOCKER-BRIDGE") if c not in chains]
        jumps = [r for r in table.chain_rules("FORWARD") if r.target() == "DOCKER-FORWARD"]
        if missing or not jumps:
            what = f"chain {missing[0]} missing" if missing else "no FORWARD -j DOCKER-FORWARD"
            raise FirewallError(
                f"unsupported iptables layout: Docker 28 or newer, but {what}: "
                f"unrecognised; {_NOTHING}"
            )
        return DOCKER_28_LAYOUT
    return LEGACY_LAYOUT


def _check_bridges(bridges: Iterable[str]) -> None:
    """FirewallError for the first bridge whose name iptables cannot match exactly.

    Docker takes a bridge's name from the network option
    com.docker.network.bridge.name, which anyone with API access sets.
    """
    for bridge in bridges:
        problem = bridge_name_problem(bridge)
        if problem:
            raise FirewallError(
                f"bridge {ascii(bridge)}: {problem}, so docker-fw cannot close it; {_NOTHING} "
                "('docker-fw init --network NAME' limits init to other networks)"
            )


def catch_all(bridge: str) -> tuple[str, ...]:
    return ("-o", bridge, "-j", "DOCKER")


# Docker 28.0.0's ipsets of bridge subnets: docker-ext-bridges-v4 / -v6.
_IPSET_PREFIX = "docker-ext-bridges-"


def shared_catch_alls(table: Table) -> list[tuple[str, ...]]:
    """Docker 28.0.0's catch-all, '-m set --match-set docker-ext-bridges-vN dst -j DOCKER',
    once per copy in FORWARD."""
    return [
        r.args for r in table.chain_rules("FORWARD")
        if len(r.args) == 7 and r.args[:3] == ("-m", "set", "--match-set")
        and r.args[3].startswith(_IPSET_PREFIX) and r.args[4:] == ("dst", "-j", "DOCKER")
    ]


def internal_jump(bridge: str) -> tuple[str, ...]:
    return ("-i", bridge, "-o", bridge, "-j", "DOCKER")


def _positions(table: Table, chain: str, args: tuple[str, ...]) -> list[int]:
    return [r.position for r in table.chain_rules(chain) if r.args == args]


# ICMPv6 neighbour solicitation and advertisement: what two containers of one
# bridge exchange before any IPv6 packet between them (ARP's part in IPv4).
NEIGHBOUR_DISCOVERY_TYPES = ("135", "136")
# Marks init's neighbour-discovery accepts as docker-fw's (FORWARD is Docker's
# chain): found again, moved or removed by it alone.
NEIGHBOUR_COMMENT = "docker-fw-nd"


def neighbour_accept(bridge: str, icmp_type: str) -> tuple[str, ...]:
    """init's accept of IPv6 neighbour discovery within BRIDGE, as ip6tables-save prints it."""
    return (
        "-i", bridge, "-o", bridge, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", icmp_type,
        "-m", "comment", "--comment", NEIGHBOUR_COMMENT, "-j", "ACCEPT",
    )


def neighbour_rules(table: Table) -> list[SavedRule]:
    """init's neighbour-discovery accepts in FORWARD, for any bridge."""
    return [
        r for r in table.chain_rules("FORWARD")
        if len(r.args) > 1 and any(r.args == neighbour_accept(r.args[1], t) for t in NEIGHBOUR_DISCOVERY_TYPES)
    ]


def _neighbour_changes(layout: Layout, table: Table, bridge: str) -> list[Change]:
    """init's neighbour-discovery accepts for BRIDGE (ip6tables): one of each type,
    above Docker's rule that ends internal traffic, where Docker drops it (icc off);
    none where it does not (icc on: Docker accepts it; or no drop at all)."""
    wanted = _drops_internal_traffic(table, bridge)
    changes = []
    for icmp_type in NEIGHBOUR_DISCOVERY_TYPES:
        args = neighbour_accept(bridge, icmp_type)
        copies = _positions(table, "FORWARD", args)
        keep = wanted and len(copies) == 1 and _in_place(layout, table, bridge, args)
        if keep:
            continue
        note = "icc is on: Docker accepts it" if not wanted else "moved to the top"
        changes.extend(Change(rule_line("-D", "FORWARD", args), "init", note=note) for _ in copies)
        if wanted:
            changes.append(Change(rule_line("-I", "FORWARD", ["1", *args]), "init"))
    return changes


def _in_place(layout: Layout, table: Table, bridge: str, args: tuple[str, ...]) -> bool:
    """Whether FORWARD has the rule ARGS, above every rule init's rules must precede."""
    mine = _positions(table, "FORWARD", args)
    if not mine:
        return False
    blockers = layout.blockers(table, bridge)
    return not blockers or min(mine) < min(blockers)


def _internal_in_place(layout: Layout, table: Table, bridge: str) -> bool:
    """Whether FORWARD has the internal jump, above every rule it must precede."""
    return _in_place(layout, table, bridge, internal_jump(bridge))


def is_initialised(
    table: Table, bridges: list[str], firewall_backend: str | None = None, family: int = 4,
) -> bool:
    """Whether 'init' has nothing left to do for these bridges.

    A bridge is done when Docker's catch-all for it is gone and our internal
    jump, if there, is in place.  A bridge with neither (an --internal
    network: Docker never jumps to DOCKER for it) has nothing open and counts
    as done, so that such a network does not make docker-fw warn forever.
    False (never an error) on a layout 'init' refuses, or a bridge whose
    name it refuses: Docker's catch-all is in place there.
    """
    try:
        layout = detect(table, firewall_backend)
        _check_bridges(bridges)
    except FirewallError:
        return False
    if layout.shared_catch_all and shared_catch_alls(table):
        return False
    for bridge in bridges:
        if table.has_rule(layout.catch_all_chain, *catch_all(bridge)):
            return False
        jumps = _positions(table, "FORWARD", internal_jump(bridge))
        if jumps and not _internal_in_place(layout, table, bridge):
            return False
        if not jumps and _drops_internal_traffic(table, bridge):
            return False  # init would add the jump (an --internal network with icc off)
        if family == 6 and _neighbour_changes(layout, table, bridge):
            return False
    return True


def _drops_internal_traffic(table: Table, bridge: str) -> bool:
    """Docker's '-i B -o B -j DROP' (icc disabled): FORWARD up to 27.x, DOCKER-FORWARD on 28+."""
    drop = ("-i", bridge, "-o", bridge, "-j", "DROP")
    return table.has_rule("FORWARD", *drop) or table.has_rule("DOCKER-FORWARD", *drop)


# The bridge of a user-defined network: br- and the first 12 hex digits of its id.
_NETWORK_BRIDGE = re.compile(r"br-[0-9a-f]{12}")


def stale_internal_jumps(table: Table, existing: Iterable[str]) -> list[str]:
    """Bridges of removed networks that FORWARD still holds init's jump for.

    Only user-defined networks' bridges (br-<id>): 'docker network rm' (and
    'docker compose down') removes Docker's rules but not the one init added,
    and a re-created network gets a new id, hence a new bridge.
    """
    existing = set(existing)
    stale = []
    for rule in table.chain_rules("FORWARD"):
        args = rule.args
        bridge = args[1] if len(args) > 1 else ""
        if args == internal_jump(bridge) and _NETWORK_BRIDGE.fullmatch(bridge) and bridge not in existing:
            stale.append(bridge)
    return stale


def plan_init(
    table: Table, bridges: list[str], firewall_backend: str | None = None,
    existing: Iterable[str] | None = None, family: int = 4,
) -> list[Change]:
    """The changes 'init' makes; empty when already done (re-running is safe).

    ``bridges``: the bridges to reshape; ``existing``: every bridge network's
    bridge (default: ``bridges``), so that init's jumps for removed networks go.
    ``family`` 6 (ip6tables): also the neighbour-discovery accepts.
    """
    layout = detect(table, firewall_backend)
    _check_bridges(bridges)
    if table.chains.get("FORWARD") != "DROP":
        raise FirewallError(
            f"the FORWARD chain's policy is {table.chains.get('FORWARD', 'unknown')}, not DROP: "
            "docker-fw's whitelist needs it (what no rule accepts must be dropped); "
            f"set it with 'iptables -P FORWARD DROP' and run init again; {_NOTHING}"
        )
    chain = layout.catch_all_chain
    changes: list[Change] = []
    recognised = 0
    if layout.shared_catch_all:
        shared = shared_catch_alls(table)
        recognised += bool(shared)
        changes.extend(Change(rule_line("-D", "FORWARD", args), "init") for args in shared)
    for bridge in bridges:
        if family == 6:
            changes.extend(_neighbour_changes(layout, table, bridge))
        copies = len(_positions(table, chain, catch_all(bridge)))
        internal = _positions(table, "FORWARD", internal_jump(bridge))
        if layout.shared_catch_all and not internal and layout.blockers(table, bridge):
            # 28.0.0 has no per-bridge catch-all: Docker's '-i B -o B -j ACCEPT|DROP'
            # shows the bridge, and internal traffic must meet DOCKER before it.
            recognised += 1
        elif not copies and not internal:
            # An --internal network: Docker gives it no DOCKER jump at all.
            # With icc disabled it still ends internal traffic with a DROP,
            # and add-internal rules only work if our jump comes first.
            if not _drops_internal_traffic(table, bridge):
                continue
        else:
            recognised += 1  # a bridge with Docker's jump (or ours) proves the layout
        # Every copy goes: one left behind keeps published ports open to all.
        # By spec: each '-D' removes the first match.
        changes.extend(Change(rule_line("-D", chain, catch_all(bridge)), "init") for _ in range(copies))
        if internal and not _internal_in_place(layout, table, bridge):
            # Below Docker's rule that ends internal traffic: it never matches.
            changes.extend(
                Change(rule_line("-D", "FORWARD", internal_jump(bridge)), "init", note="moved to the top")
                for _ in internal
            )
            internal = []
        if not internal:
            changes.append(Change(rule_line("-I", "FORWARD", ["1", *internal_jump(bridge)]), "init"))
    if not recognised:
        rule = "-m set --match-set docker-ext-bridges-v4 dst -j DOCKER" if layout.shared_catch_all else "-o docker0 -j DOCKER"
        raise FirewallError(
            f"could not find Docker's rule '{chain} {rule}' (nor the one "
            f"init adds) for any bridge ({layout.description}): unrecognised layout; {_NOTHING}"
        )
    existing = set(bridges if existing is None else existing)
    for bridge in stale_internal_jumps(table, existing):
        changes.append(Change(rule_line("-D", "FORWARD", internal_jump(bridge)), "init", note="its network is gone"))
    for bridge in sorted({r.args[1] for r in neighbour_rules(table)} - existing):
        for icmp_type in NEIGHBOUR_DISCOVERY_TYPES:
            args = neighbour_accept(bridge, icmp_type)
            changes.extend(
                Change(rule_line("-D", "FORWARD", args), "init", note="its network is gone")
                for _ in _positions(table, "FORWARD", args)
            )
    return changes
