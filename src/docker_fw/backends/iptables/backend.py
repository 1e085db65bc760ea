"""IptablesBackend: one family of iptables behind the FirewallBackend protocol."""

from __future__ import annotations

from ... import values

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from . import layouts, logrules
from ...errors import FirewallError
from ...filtergrammar import BRIDGE_PLACEHOLDER
from .process import Table, bridge_name_problem
from .reconcile import Change, ensure_chains, plan_rules, rule_line
from ...resolve import ResolvedRule
from ...egress import ResolvedLock
from .rules import CHAIN_EGRESS, COMMENT_PREFIX, OWN_CHAINS, render_all

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ...engine import Network
    from ...flow import Flow, Verdict
    from ...model import RuleSpec
    from .explain import Tables

UNMANAGED_IP6TABLES = "IPv6 rules not applied: the engine does not manage ip6tables (--ip6tables)"
# Every chain docker-fw makes in iptables (what 'init' removes once the engine uses nftables).
ALL_OWN_CHAINS = (*OWN_CHAINS, logrules.CHAIN_LOG)
LEFT_FROM_IPTABLES = "left from the engine's iptables backend"


class Runner(Protocol):
    """What the backend runs: iptables-save and iptables-restore --noflush (``process.Iptables``)."""

    def save(self, table: str = "filter") -> Table: ...

    def restore(
        self, table: str, lines: list[str], shown: list[str] | None = None, before: Table | None = None
    ) -> None: ...


class IptablesBackend:
    """The filter table of iptables (family 4) or ip6tables (family 6).

    ``runner`` runs the -save and -restore commands (a ``process.Iptables``).  The IPv4 instance is required:
    without Docker's chains nothing can be protected.  The IPv6 one is used
    only where the engine manages ip6tables (Docker's DOCKER chain is there).
    """

    def __init__(self, runner: Runner, family: int = 4):
        self.runner = runner
        self.family = family
        self.required = family == 4
        self.label = "" if family == 4 else "IPv6"
        self.unmanaged_note = "" if family == 4 else UNMANAGED_IP6TABLES

    def __repr__(self) -> str:
        return f"IptablesBackend(family={self.family})"

    def read(self) -> Table | None:
        if self.required:
            return self.runner.save()
        try:
            table = self.runner.save()
        except FirewallError:
            return None  # no ip6tables-save, or a kernel without IPv6
        return table if "DOCKER" in table.chains else None  # an engine without --ip6tables

    def plan(self, live: Table, desired: list[ResolvedRule], scope: set[str] | None) -> list[Change]:
        mine = [r for r in desired if r.family == self.family and (scope is None or r.owner in scope)]
        changes: list[Change] = []
        rendered = render_all([r for r in desired if r.family == self.family])
        if self.required or mine or any(chain in live.chains for chain in OWN_CHAINS):
            egress = any(r.chain == CHAIN_EGRESS for r in rendered)
            changes.extend(ensure_chains(live, family=self.family, egress=egress))
        changes.extend(plan_rules(live, rendered, scope, family=self.family))
        return changes

    def apply(self, live: Table, changes: list[Change]) -> None:
        lines = [c.line for c in changes]
        if lines:
            self.runner.restore("filter", lines, shown=[c.shown for c in changes], before=live)

    def expressible(self, rule: ResolvedRule) -> str | None:
        if rule.family != self.family:
            return f"an IPv{rule.family} rule, not an IPv{self.family} one"
        if rule.bridge:
            problem = bridge_name_problem(rule.bridge)
            if problem:
                what = "no egress lock" if isinstance(rule, ResolvedLock) else f"the filter's {BRIDGE_PLACEHOLDER}"
                return f"the bridge {ascii(rule.bridge)}: {problem}: {what} cannot be placed"
        # the rest (addresses, ports, the owner's name) is written plainly; a
        # lock has no filter
        if getattr(rule, "filter", ()):
            try:
                for rendered in render_all([rule]):
                    rule_line("-A", rendered.chain, rendered.argv())
            except FirewallError as exc:
                return str(exc)
        return None

    # Explainer (backends.Explainer): 'docker-fw explain'.  Its modules load
    # only when it runs: the other actions use none of them.

    def read_paths(self) -> Tables | None:
        from .explain import read_tables

        table = self.read()
        return None if table is None else read_tables(self.runner, table)

    def explain(
        self,
        live: Tables,
        flow: Flow,
        recorded: Sequence[tuple[RuleSpec, ResolvedRule]],
        adding: Sequence[ResolvedRule] = (),
        replaying: Sequence[str] = (),
    ) -> Verdict:
        from .explain import explain

        def planned(table: Table, desired: list[ResolvedRule], owners: set[str]) -> list[str]:
            return [c.line for c in self.plan(table, desired, owners)]

        return explain(live, flow, recorded, adding, replaying, planned)

    def covers(self, network: Network) -> bool:
        return self.family == 4 or bool(network.subnets6)

    def plan_init(self, live: Table, bridges: list[str], engine_backend: str, existing: Iterable[str]) -> list[Change]:
        changes = layouts.plan_init(live, bridges, engine_backend, existing, self.family)
        return [values.replace(c, family=self.family) for c in changes]

    def plan_log(self, live: Table, bridges: list[str], enabled: bool, before: list[Change] = ()) -> list[Change]:
        """'init --log-blocked': NFLOG for new connections the whitelist drops (logrules.py);
        BEFORE: the changes the same batch makes first."""
        return logrules.plan_log(live, bridges, enabled, self.family, [c.line for c in before])

    def ensure(self, live: Table) -> list[Change]:
        return ensure_chains(live, family=self.family)

    def is_initialised(self, live: Table, bridges: list[str], engine_backend: str | None = None) -> bool:
        return layouts.is_initialised(live, bridges, engine_backend, self.family)

    # Leftovers (backends.Leftovers): what 'init' removes after the engine moved to
    # its nftables backend.  Docker then deletes its own chains but keeps those
    # that something still jumps to (DOCKER, emptied, and DOCKER-USER), and the
    # FORWARD policy DROP it set: docker-fw's chains would be stale copies there.

    def read_leftovers(self) -> Table | None:
        try:
            return self.runner.save()
        except FirewallError:
            return None  # no iptables (or ip6tables) here: nothing of ours either

    def plan_remove(self, live: Table) -> list[Change]:
        """The jumps to docker-fw's chains and init's neighbour-discovery accepts,
        then the chains themselves (flushed, deleted)."""
        ours = [chain for chain in ALL_OWN_CHAINS if chain in live.chains]
        changes = [
            Change("-D" + rule.line[2:], "init", LEFT_FROM_IPTABLES, self.family)
            for rule in live.rules
            if rule.chain not in ours and rule.target() in ours
        ]
        changes += [
            Change(rule_line("-D", "FORWARD", rule.args), "init", LEFT_FROM_IPTABLES, self.family)
            for rule in layouts.neighbour_rules(live)
        ]
        changes += [Change(f"-F {chain}", "init", LEFT_FROM_IPTABLES, self.family) for chain in ours]
        changes += [Change(f"-X {chain}", "init", LEFT_FROM_IPTABLES, self.family) for chain in ours]
        return changes

    def leftover_warnings(self, live: Table) -> list[str]:
        if live.chains.get("FORWARD") != "DROP":
            return []
        command = "iptables" if self.family == 4 else "ip6tables"
        return [
            f"{command}' FORWARD policy is DROP (Docker's iptables backend sets it, its nftables backend "
            f"leaves it): unless rules of the host's accept Docker's traffic there, it drops what Docker's "
            f"nftables rules and docker-fw admit; '{command} -P FORWARD ACCEPT' lets them decide"
        ]

    def foreign_rules(self, live: Table) -> list[str]:
        return [
            f"foreign rule in {rule.chain}: {rule.line}"
            for rule in live.rules
            if rule.chain in OWN_CHAINS and not (rule.comment or "").startswith(COMMENT_PREFIX)
        ]
