"""The service layer: one method per action.

Every action follows the same steps: look at the engine (one snapshot),
change the store inside a transaction, plan against the live ruleset
(``iptables-save``), apply the plan in one ``iptables-restore --noflush``
batch, and commit the store only if the kernel accepted the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import layouts
from .engine import Engine
from .errors import DockerFwError, EngineError, UsageError
from .iptables import Iptables, Table
from .model import AddressKind, Kind, RuleSpec, parse_address
from .reconcile import Change, Plan, ensure_chains, plan_rules
from .resolve import ResolvedRule, check_kind_addresses, normalise_address, resolve
from .store import Store


@dataclass(frozen=True)
class AddRequest:
    """An add action as typed: strings, not yet looked up."""

    container: str
    source: str
    dest: str = "."
    sport: int = 0
    dport: int = 0
    proto: str = "tcp"
    filter: tuple[str, ...] = ()
    where: str = ""  # e.g. "line 3" for --from input, used in error messages


def _say_nothing(_: str) -> None:
    pass


class Service:
    def __init__(
        self,
        engine: Engine,
        firewall: Iptables,
        store: Store,
        out: Callable[[str], None] = print,
        warn: Callable[[str], None] = _say_nothing,
    ):
        self.engine = engine
        self.firewall = firewall
        self.store = store
        self.out = out
        self.warn = warn

    # -- shared steps ----------------------------------------------------

    def _desired(self, specs: Iterable[RuleSpec], plan: Plan) -> list[ResolvedRule]:
        snapshot = self.engine.snapshot()
        desired: list[ResolvedRule] = []
        for spec in specs:
            try:
                desired.extend(resolve(spec, snapshot))
            except EngineError as exc:
                # Not applied, and removed if present: a rule left pointing at
                # a stopped container's old address would admit whoever gets
                # that address next.
                plan.withdrawn.append((spec, str(exc)))
        return desired

    def _plan(self, table: Table, scope: set[str] | None, extra: list[Change] = ()) -> Plan:
        plan = Plan()
        specs = self.store.rules(sorted(scope) if scope is not None else None)
        desired = self._desired(specs, plan)
        plan.extend(ensure_chains(table))
        plan.extend(list(extra))
        plan.extend(plan_rules(table, desired, scope))
        return plan

    def _report_withdrawn(self, plan: Plan) -> None:
        for spec, reason in plan.withdrawn:
            self.warn(f"not applied ({reason}): {spec.describe()}")

    def _owner_name(self, ref: str) -> str:
        """A container reference as recorded: its name (store first, then engine)."""
        ref = ref.lstrip("/")
        if ref in set(self.store.owners()):
            return ref
        return self.engine.snapshot().get(ref).name

    def _warn_if_not_initialised(self, table: Table) -> None:
        bridges = [n.bridge for n in self.engine.snapshot().bridges()]
        if bridges and not layouts.is_initialised(table, bridges):
            self.warn(
                "'docker-fw init' has not been run: Docker's catch-all rule still lets "
                "anyone reach published ports"
            )

    # -- actions ---------------------------------------------------------

    def init(self) -> Plan:
        snapshot = self.engine.snapshot()
        table = self.firewall.save()
        bridges = [n.bridge for n in snapshot.bridges()]
        plan = Plan()
        plan.extend(layouts.plan_init(table, bridges))
        plan.extend(ensure_chains(table))
        self.firewall.restore("filter", plan.lines())
        if plan:
            for change in plan.changes:
                if change.why == "init":
                    self.out(f"init: {change.line}")
        else:
            self.out("init: already done, nothing changed")
        return plan

    def spec_from_request(self, kind: Kind, req: AddRequest, rev_lookup: bool) -> RuleSpec:
        snapshot = self.engine.snapshot()
        try:
            owner = snapshot.running(req.container)
            source = normalise_address(parse_address(req.source), owner, snapshot, rev_lookup)
            dest = normalise_address(parse_address(req.dest), owner, snapshot, rev_lookup)
            spec = RuleSpec(
                owner=owner.name,
                kind=kind,
                source=source,
                dest=dest,
                proto=req.proto,
                sport=req.sport,
                dport=req.dport,
                filter=req.filter,
            )
            spec.validate()
            check_kind_addresses(spec, snapshot)
            resolve(spec, snapshot)  # fail now, not at apply time
        except DockerFwError as exc:
            if req.where:
                raise type(exc)(f"{req.where}: {exc}") from None
            raise
        return spec

    def add(self, kind: Kind, requests: list[AddRequest], rev_lookup: bool = False) -> Plan:
        """Record and apply rules: all of them in one transaction, or none."""
        if not requests:
            raise UsageError("no rules to add")
        specs = [self.spec_from_request(kind, r, rev_lookup) for r in requests]
        return self.record(specs)

    def record(self, specs: list[RuleSpec]) -> Plan:
        with self.store.transaction():
            new = [s for s in specs if self.store.add(s)]
            table = self.firewall.save()
            plan = self._plan(table, {s.owner for s in specs})
            self.firewall.restore("filter", plan.lines())
        if any(s.kind is Kind.ADD for s in specs):
            self._warn_if_not_initialised(table)
        self._report_withdrawn(plan)
        for spec in specs:
            state = "recorded" if spec in new else "already recorded"
            self.out(f"{state}: {spec.describe()}")
        return plan

    def allow(self, container: str, addresses: list[str]) -> Plan:
        """An 'add' rule from each address to each port the container publishes."""
        snapshot = self.engine.snapshot()
        owner = snapshot.running(container)
        ports = sorted({(p.private_port, p.proto) for p in owner.ports})
        if not ports:
            raise UsageError(f"container {owner.name} publishes no ports: nothing to allow")
        unsupported = sorted({proto for _, proto in ports} - {"tcp", "udp"})
        if unsupported:
            raise UsageError(f"container {owner.name} publishes {unsupported[0]} ports, which docker-fw does not handle")
        bridge = next((e.bridge for e in owner.endpoints if e.bridge), "")
        if not bridge:
            raise EngineError(f"container {owner.name} is on no bridge network")
        specs = []
        for text in addresses:
            address = parse_address(text)
            if address.kind is not AddressKind.NETWORK:
                raise UsageError(f"allow takes IPv4 addresses or subnets, not {text!r}")
            requests = [
                AddRequest(
                    container=owner.name,
                    source=address.text,
                    dest=".",
                    dport=port,
                    proto=proto,
                    filter=("!", "-i", bridge, "-o", bridge),
                )
                for port, proto in ports
            ]
            specs.extend(self.spec_from_request(Kind.ADD, r, False) for r in requests)
        return self.record(specs)

    def ls(self, containers: list[str]) -> list[str]:
        owners = None if not containers else [self._owner_name(c) for c in containers]
        lines = [spec.describe() for spec in self.store.rules(owners)]
        for line in lines:
            self.out(line)
        return lines

    def drop(self, containers: list[str]) -> Plan:
        if not containers:
            raise UsageError("drop: name at least one container")
        owners = [self._owner_name(c) for c in containers]
        with self.store.transaction():
            counts = {o: self.store.drop_owner(o) for o in owners}
            table = self.firewall.save()
            plan = self._plan(table, set(owners))
            self.firewall.restore("filter", plan.lines())
        for owner, count in counts.items():
            self.out(f"{owner}: dropped {count} rule{'s' if count != 1 else ''}")
        return plan

    def replay(self, containers: list[str], dry_run: bool = False) -> Plan:
        """Re-resolve addresses and make iptables match the record.

        With containers, also replays the rules of other containers that
        name them (their addresses are in those rules too).  Without, replays
        everything docker-fw has recorded.
        """
        scope: set[str] | None = None
        if containers:
            owners = {self._owner_name(c) for c in containers}
            scope = owners | self.store.referrers(owners)
        table = self.firewall.save()
        plan = self._plan(table, scope)
        self._report_withdrawn(plan)
        if dry_run:
            for change in plan.changes:
                self.out(f"would {change.verb} ({change.why}): {change.line}")
            if not plan:
                self.out("replay: nothing to change")
            return plan
        self.firewall.restore("filter", plan.lines())
        added = sum(1 for c in plan.changes if c.line.startswith("-A"))
        deleted = sum(1 for c in plan.changes if c.line.startswith("-D"))
        self.out(f"replay: {added} rule(s) added, {deleted} removed")
        return plan
