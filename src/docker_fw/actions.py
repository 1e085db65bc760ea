"""The service layer: one method per action.

Every action follows the same steps: look at the engine (one snapshot),
change the store inside a transaction (transaction.py), plan against what
each firewall backend reads live, apply each backend's plan in one atomic
batch, and commit the store only if every kernel accepted its batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import depgraph, hostconfig, hosts
from .backends import Change, FirewallBackend
from .backends.iptables.backend import IptablesBackend
from .backends.iptables.backend import UNMANAGED_IP6TABLES
from .engine import Engine, Network, PortInUseError, Snapshot
from .errors import DockerFwError, EngineError, FirewallError, UsageError
from .filtergrammar import FilterError
from .backends.iptables.process import Iptables
from .model import BRIDGE_PLACEHOLDER, AddressKind, Kind, RuleSpec
from .resolve import ResolvedRule, check_kind_addresses, normalise_address, resolve
from .rulegrammar import AddRequest, allow_addresses, checked_spec, validate
from .store import Store
from .transaction import Plan, Transaction, transaction


def _say_nothing(_: str) -> None:
    pass


class _DryRun(Exception):
    """Raised inside a store transaction to roll it back after a dry run."""


IPV6_UNMANAGED = UNMANAGED_IP6TABLES
IPV6_NOT_INITIALISED = (
    "IPv6 not initialised: the engine has IPv6 networks but does not manage ip6tables "
    "(--ip6tables): any IPv6 client reaches published ports through Docker's userland proxy"
)


def _family_note(change: Change) -> str:
    return " (IPv6)" if change.family == 6 else ""


# (container, one-line message): a hosts file that could not be read or written.
HostsFailure = tuple[str, str]


@dataclass(frozen=True)
class HostsTarget:
    """A running container's hosts file (its HostsPath) and the entries it must hold."""

    owner: str
    path: str
    entries: dict[str, str]  # name -> address

    def failure(self, verb: str, exc: Exception) -> HostsFailure:
        return self.owner, f"cannot {verb} {self.owner}'s hosts file {hosts.shown(self.path)}: {exc}"


def _raise_first(failed: list[HostsFailure]) -> None:
    if failed:
        raise EngineError(failed[0][1])


def _hosts_not_updated(failed: list[HostsFailure], dry_run: bool = False) -> EngineError:
    """The error a command ends with after it did all it could but these hosts files."""
    names = ", ".join(owner for owner, _ in failed)
    if dry_run:
        return EngineError(f"hosts file of {names} cannot be updated (see the warning)")
    return EngineError(f"hosts file of {names} not updated (see the warning); everything else was applied")


class Service:
    def __init__(
        self,
        engine: Engine,
        firewall: Iptables,
        store: Store,
        out: Callable[[str], None] = print,
        warn: Callable[[str], None] = _say_nothing,
        firewall6: Iptables | None = None,
        backends: Sequence[FirewallBackend] | None = None,
    ):
        """BACKENDS: the firewalls to keep in line with the record, the required
        one first; by default iptables (FIREWALL) and, given, ip6tables (FIREWALL6)."""
        self.engine = engine
        if backends is None:
            backends = [IptablesBackend(firewall, 4)]
            if firewall6 is not None:
                backends.append(IptablesBackend(firewall6, 6))
        self.backends = list(backends)
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
            except (EngineError, FilterError) as exc:
                # Not applied, and removed if present: a rule left pointing at
                # a stopped container's old address would admit whoever gets
                # that address next; a recorded filter this version refuses
                # might hold anything.
                plan.withdrawn.append((spec, str(exc)))
        return desired

    def _transaction(self, record: bool = True) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction over every backend, and over the store unless RECORD is False."""
        return transaction(self.backends, self.store if record else None)

    def _plan(self, tx: Transaction, scope: set[str] | None) -> Plan:
        """Each backend's changes for the recorded rules of SCOPE (None: every owner), added to TX."""
        plan = Plan()
        specs = self.store.rules(sorted(scope) if scope is not None else None)
        desired = self._desired(specs, plan)
        for backend in tx.backends:
            live = tx.live(backend)
            if live is None:
                if any(r.family == backend.family and (scope is None or r.owner in scope) for r in desired):
                    plan.unmanaged.append(backend.unmanaged_note)
                continue
            changes = backend.plan(live, desired, scope)
            tx.add(backend, changes)
            plan.extend(changes)
        return plan

    def _report_withdrawn(self, plan: Plan) -> None:
        for spec, reason in plan.withdrawn:
            self.warn(f"not applied ({reason}): {spec.describe()}")
        for note in plan.unmanaged:
            self.warn(note)

    def _owner_names(self, refs: Iterable[str]) -> list[str]:
        """Container references as recorded: names (the store's first, then the engine's).

        A name the store knows works even when the container no longer exists.
        """
        recorded = set(self.store.owners())
        return [
            ref if ref in recorded else self.engine.snapshot().get(ref).name
            for ref in (r.lstrip("/") for r in refs)
        ]

    def _init_networks(self, snapshot: Snapshot) -> list[Network]:
        """The bridge networks 'init' covers: every one, or those 'init --network'
        limited it to (recorded in the store; one that no longer exists is skipped)."""
        selected = self.store.init_networks()
        bridges = snapshot.bridges()
        return bridges if selected is None else [n for n in bridges if n.name in selected]

    def _no_selected_network(self) -> str:
        return (
            f"init is limited to networks that no longer exist ({', '.join(self.store.init_networks() or [])}): "
            "run 'docker-fw init --network NAME' or 'docker-fw init --all-networks'"
        )

    def _warn_if_not_initialised(self, tx: Transaction) -> None:
        backend = self.backends[0]  # the required one: the others may be left out
        bridges = [n.bridge for n in self._init_networks(self.engine.snapshot()) if backend.covers(n)]
        if bridges and not backend.is_initialised(tx.live(backend), bridges):
            self.warn(
                "'docker-fw init' has not been run: Docker's catch-all rule still lets "
                "anyone reach published ports"
            )

    # -- actions ---------------------------------------------------------

    def ensure_initialised(self) -> Plan:
        """What 'init' does, quietly: returns the plan it applied (empty when done already)."""
        with self._transaction(record=False) as tx:
            return self._plan_init(tx)

    def _plan_init(self, tx: Transaction) -> Plan:
        """'init' in every backend: the same reshaping, on the selected bridges it covers.

        A backend that is not required only warns when it cannot be
        initialised: the required one protects all the same.
        """
        snapshot = self.engine.snapshot()
        selected = self._init_networks(snapshot)
        if not selected:
            raise UsageError(self._no_selected_network())
        existing = [n.bridge for n in snapshot.bridges()]
        engine_backend = self.engine.firewall_backend()
        plan = Plan()
        for backend in tx.backends:
            live = tx.live(backend)
            if live is None:
                if any(backend.covers(n) for n in snapshot.bridges()):
                    # Checked live on 20.10 with --ipv6 alone: any IPv6 client reaches
                    # published ports through docker-proxy, which no rule here sees.
                    self.warn(IPV6_NOT_INITIALISED)
                continue
            changes: list[Change] = []
            bridges = [n.bridge for n in selected if backend.covers(n)]
            try:
                if bridges:
                    changes.extend(backend.plan_init(live, bridges, engine_backend, existing))
            except FirewallError as exc:
                if backend.required:
                    raise
                self.warn(f"{backend.label} not initialised: {exc}")
            try:
                changes.extend(backend.ensure(live))
            except FirewallError:
                if backend.required:
                    raise
            tx.add(backend, changes)
            plan.extend(changes)
        return plan

    def init(self, networks: list[str] | None = None, all_networks: bool = False) -> Plan:
        """Reshape Docker's FORWARD chain (ensure_initialised), for every bridge network,
        or, from now on, only for NETWORKS (by name) until ALL_NETWORKS again."""
        if networks:
            known = sorted(n.name for n in self.engine.snapshot().bridges())
            unknown = [name for name in networks if name not in known]
            if unknown:
                raise UsageError(
                    f"init: no bridge network named {unknown[0]} (bridge networks: {', '.join(known)})"
                )
        with self._transaction() as tx:  # the selection is kept only if the kernel took the plan
            if networks:
                self.store.set_init_networks(sorted(set(networks)))
            elif all_networks:
                self.store.set_init_networks(None)
            plan = self._plan_init(tx)
        selected = self.store.init_networks()
        if selected is not None:
            self.out(f"init: limited to network{'s' if len(selected) > 1 else ''} {', '.join(selected)} "
                     "(recorded; 'init --all-networks' covers every one again)")
        if plan:
            for change in plan.changes:
                if change.why == "init":
                    self.out(f"init: {change.shown}{_family_note(change)}")
        else:
            self.out("init: already done, nothing changed")
        return plan

    def spec_from_request(self, kind: Kind, req: AddRequest, rev_lookup: bool, action: str | None = None) -> RuleSpec:
        """REQ as the rule of ACTION (default: KIND's) it records: checked without
        the engine (rulegrammar), then its names and addresses normalised against
        the running containers and checked again."""
        action = action or kind.action
        written = checked_spec(action, req)
        snapshot = self.engine.snapshot()
        try:
            owner = snapshot.running(req.container)
            spec = dataclasses.replace(
                written,
                owner=owner.name,
                source=normalise_address(written.source, owner, snapshot, rev_lookup),
                dest=normalise_address(written.dest, owner, snapshot, rev_lookup),
            )
            validate(action, spec)
            check_kind_addresses(spec, snapshot)
            resolve(spec, snapshot)  # fail now, not at apply time
        except DockerFwError as exc:
            raise req.origin.error(exc) from None
        return spec

    def add(self, kind: Kind, requests: list[AddRequest], rev_lookup: bool = False) -> Plan:
        """Record and apply rules: all of them in one transaction, or none."""
        if not requests:
            raise UsageError("no rules to add")
        specs = [self.spec_from_request(kind, r, rev_lookup) for r in requests]
        return self.record(specs)

    def record(
        self, specs: list[RuleSpec], host_entries: list[tuple[str, str]] = (), action: str | None = None
    ) -> Plan:
        """Store rules (and hosts entries), apply them, commit if iptables took them."""
        owners = {s.owner for s in specs}
        sources = {source for source, _ in host_entries}  # whose hosts files get a line
        with self._transaction() as tx:
            new = {s for s in specs if self.store.add(s)}
            for owner, name in host_entries:
                self.store.add_host_entry(owner, name)
            plan = self._plan(tx, owners)
            # Hosts files are read (and their new content computed) before
            # the kernel changes, so most failures change nothing at all.
            rewrites, failed = self._hosts_changes(sources)
            if failed:
                raise EngineError(failed[0][1])
            tx.after_apply(lambda: _raise_first(self._write_hosts(rewrites)))
            # A kernel took its batch, then a later step failed and the record
            # was rolled back: bring iptables and the hosts files written so
            # far back in line with the record rather than leave an
            # unrecorded rule or line.
            tx.on_failure(lambda: (self.sync(owners), self._write_hosts(self._hosts_targets(sources)[0])))
        if any(s.kind is Kind.ADD for s in specs):
            self._warn_if_not_initialised(tx)
        self._report_withdrawn(plan)
        for spec in specs:
            state = "recorded" if spec in new else "already recorded"
            self.out(f"{state}: {spec.describe(action)}")
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
        endpoint = owner.published_endpoint  # the bridge Docker DNATs published ports to
        if endpoint is None or not endpoint.bridge:
            raise EngineError(f"container {owner.name} is on no bridge network that publishes ports")
        # Recorded as @bridge, not the bridge's name today: re-creating the
        # network (docker compose down/up) gives it another bridge.
        bridge = BRIDGE_PLACEHOLDER
        specs = []
        for address in allow_addresses(addresses):
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
        owners = self._owner_names(containers) if containers else None
        entries = self.store.host_entries()

        def action(spec: RuleSpec) -> str:
            # An add-internal rule that gave its source a hosts line for the
            # owner was recorded by add-two-ways: print it as such, so that
            # running the line again restores the hosts entry too.
            if spec.kind is Kind.INTERNAL and spec.source.kind is AddressKind.CONTAINER:
                if spec.owner in entries.get(spec.source.value, []):
                    return "add-two-ways"
            return spec.kind.action

        lines = [spec.describe(action(spec)) for spec in self.store.rules(owners)]
        for line in lines:
            self.out(line)
        return lines

    def drop(self, containers: list[str]) -> Plan:
        if not containers:
            raise UsageError("drop: name at least one container")
        owners = self._owner_names(containers)
        with self._transaction() as tx:
            hosts_owners = self.store.host_entry_owners(owners)
            counts = {o: self.store.drop_owner(o) for o in owners}
            plan = self._plan(tx, set(owners))
            tx.after_apply(lambda: plan.hosts_failed.extend(self._apply_hosts(hosts_owners)))
        for owner, count in counts.items():
            self.out(f"{owner}: dropped {count} rule{'s' if count != 1 else ''}")
        if plan.hosts_failed:
            raise _hosts_not_updated(plan.hosts_failed)
        return plan

    def rename(self, old: str, new: str) -> Plan:
        """After 'docker rename OLD NEW': what is recorded for OLD (its rules, rules
        naming it, hosts entries, saved host configuration) is NEW's from now on."""
        old, new = old.lstrip("/"), new.lstrip("/")
        if old == new:
            raise UsageError(f"rename: {old} and {new} are the same name")
        owners = set(self.store.owners())
        if old not in owners and not self.store.referrers([old]):
            raise UsageError(f"rename: nothing is recorded for {old}")
        if new in owners or self.store.referrers([new]):
            raise UsageError(
                f"rename: docker-fw already holds records for {new}; "
                f"'docker-fw drop {new}' first if they are stale"
            )
        names = {c.name for c in self.engine.snapshot().containers}
        if old in names:
            raise UsageError(f"rename: a container named {old} still exists; run 'docker rename {old} {new}' first")
        if new not in names:
            raise UsageError(f"rename: no container is named {new}")
        with self._transaction() as tx:
            moved = self.store.rename(old, new)
            scope = {old, new} | self.store.referrers([new])
            plan = self._plan(tx, scope)
            tx.after_apply(lambda: self._apply_hosts(self.store.host_entry_owners([new])))
        self.out(f"{old} -> {new}: {moved} rule{'s' if moved != 1 else ''} renamed")
        return plan

    def replay(self, containers: list[str], dry_run: bool = False) -> Plan:
        """Re-resolve addresses and make iptables (and hosts files) match the record.

        With containers, also replays the rules of other containers that
        name them (their addresses are in those rules too).  Without, replays
        everything docker-fw has recorded.
        """
        scope: set[str] | None = None
        if containers:
            scope = set(self._owner_names(containers))
        plan = self.sync(scope, dry_run)
        if dry_run:
            for change in plan.changes:
                self.out(f"would {change.verb} ({change.why}): {change.note or change.line}{_family_note(change)}")
            for owner in plan.hosts:
                self.out(f"would rewrite /etc/hosts of {owner}")
            if not plan:
                self.out("replay: nothing to change")
        else:
            added = sum(1 for c in plan.changes if c.line.startswith("-A"))
            deleted = sum(1 for c in plan.changes if c.line.startswith("-D"))
            self.out(f"replay: {added} rule(s) added, {deleted} removed")
        if plan.hosts_failed:
            raise _hosts_not_updated(plan.hosts_failed, dry_run)
        return plan

    def sync(self, owners: set[str] | None, dry_run: bool = False) -> Plan:
        """Replay the rules and hosts entries of these containers and of those naming them."""
        scope = None if owners is None else owners | self.store.referrers(owners)
        hosts_owners = self.store.host_entry_owners(owners) if owners is not None else set(self.store.host_entries())
        if dry_run:
            plan = self._plan(Transaction(self.backends), scope)  # planned, never applied
            self._report_withdrawn(plan)
            changes, failed = self._hosts_changes(hosts_owners)
            plan.hosts = [target.owner for target in changes]
            plan.hosts_failed = self._warn_hosts(failed)
            return plan
        with self._transaction(record=False) as tx:
            plan = self._plan(tx, scope)
            self._report_withdrawn(plan)
            tx.after_apply(lambda: plan.hosts_failed.extend(self._apply_hosts(hosts_owners)))
        return plan

    def check(self) -> list[str]:
        """Drift between the record, the engine and the live ruleset, one line each."""
        problems: list[str] = []
        tx = Transaction(self.backends)  # read and planned, never applied
        in_use = tx.in_use()
        snapshot = self.engine.snapshot()
        selected = self._init_networks(snapshot)
        existing = [n.bridge for n in snapshot.bridges()]
        engine_backend = self.engine.firewall_backend()
        for backend, live in in_use:
            note = f" ({backend.label})" if backend.label else ""
            bridges = [n.bridge for n in selected if backend.covers(n)]
            if not backend.required and not bridges:
                continue
            try:
                if not selected:
                    raise UsageError(self._no_selected_network())
                for change in backend.plan_init(live, bridges, engine_backend, existing):
                    problems.append(f"not initialised ({change.why}): would {change.verb} {change.line}{note}")
            except DockerFwError as exc:
                problems.append(f"layout{note}: {exc}")
        plan = self._plan(tx, None)
        for change in plan.changes:
            if change.line.startswith("-D"):
                problems.append(f"stale ({change.why}): {change.note or change.line}{_family_note(change)}")
            else:
                problems.append(f"missing ({change.why}): {change.line}{_family_note(change)}")
        for backend, live in in_use:
            note = f" ({backend.label})" if backend.label else ""
            problems.extend(line + note for line in backend.foreign_rules(live))
        changes, failed = self._hosts_changes(set(self.store.host_entries()))
        problems.extend(f"hosts ({target.owner}): /etc/hosts entries out of date" for target in changes)
        problems.extend(f"hosts ({owner}): {message}" for owner, message in failed)
        for spec, reason in plan.withdrawn:
            self.out(f"not applied ({reason}): {spec.describe()}")
        for note in plan.unmanaged:
            self.out(note)
        for line in problems:
            self.out(line)
        if not problems:
            self.out("check: no drift")
        return problems

    def gc(self, days: float, dry_run: bool = False) -> list[str]:
        """Forget the records of containers that no longer exist.

        A container is forgotten once it has been gone for ``days`` (when
        'watch' saw it destroyed, or when a 'gc' first found it missing):
        a container re-created under the same name within that time gets its
        rules back.
        """
        snapshot = self.engine.snapshot()
        forgotten: list[str] = []
        try:
            self._gc(snapshot, days, dry_run, forgotten)
        except _DryRun:
            pass  # the transaction was rolled back: nothing marked, nothing forgotten
        return forgotten

    def _gc(self, snapshot: Snapshot, days: float, dry_run: bool, forgotten: list[str]) -> None:
        with self._transaction() as tx:
            for owner in self.store.owners():
                if snapshot.find(owner) is not None:
                    self.store.unmark_gone(owner)
                    continue
                age = self.store.mark_gone(owner)
                if age >= days * 86400:
                    forgotten.append(owner)
                else:
                    self.out(f"{owner}: gone for {age / 86400:.1f} of {days:g} days, kept")
            if dry_run:
                for owner in forgotten:
                    self.out(f"would forget {owner}")
                raise _DryRun
            for owner in forgotten:
                self.store.forget(owner)
                self.out(f"forgot {owner}")
            if forgotten:
                self._plan(tx, set(forgotten))

    # -- /etc/hosts entries (add-two-ways) --------------------------------

    def _hosts_mapping(self, owner: str, snapshot: Snapshot) -> dict[str, str]:
        """name -> address lines that a running container's hosts file must hold."""
        container = snapshot.find(owner)
        mapping: dict[str, str] = {}
        for name in self.store.host_entries([owner]).get(owner, []):
            target = snapshot.find(name)
            if target is None or not target.has_address:
                # Same reason as for rules: the name must not point at an
                # address that may be handed to another container.
                self.warn(f"hosts entry for {name} in {owner} not applied: {name} is not running")
                continue
            shared = sorted(
                {e.network for e in container.endpoints} & {e.network for e in target.endpoints}
            )
            if not shared:
                self.warn(f"hosts entry for {name} in {owner} not applied: they share no network")
                continue
            mapping[name] = next(e.ip for e in target.endpoints if e.network == shared[0])
        return mapping

    def _hosts_targets(self, owners: set[str]) -> tuple[list[HostsTarget], list[HostsFailure]]:
        """The hosts files of these containers (those running), with the entries each must
        hold; and the containers whose file cannot even be located."""
        snapshot = self.engine.snapshot()
        targets: list[HostsTarget] = []
        failed: list[HostsFailure] = []
        for owner in sorted(owners):
            container = snapshot.find(owner)
            if container is None or not container.has_address:
                continue  # Docker writes a fresh file when it starts
            try:
                path = self.engine.inspect(container.id).get("HostsPath")
            except EngineError as exc:  # e.g. removed since the snapshot
                failed.append((owner, f"cannot locate {owner}'s hosts file: {exc}"))
                continue
            if path:
                targets.append(HostsTarget(owner, path, self._hosts_mapping(owner, snapshot)))
        return targets, failed

    def _hosts_changes(self, owners: set[str]) -> tuple[list[HostsTarget], list[HostsFailure]]:
        """The hosts files that must change (read, not written); and those that cannot be read."""
        targets, failed = self._hosts_targets(owners)
        changes = []
        for target in targets:
            try:
                current = hosts.read_hosts(target.path)
            except hosts.HostsFileError as exc:
                failed.append(target.failure("read", exc))
                continue
            if hosts.render_hosts(current, target.entries) != current:
                changes.append(target)
        return changes, failed

    def _write_hosts(self, targets: list[HostsTarget]) -> list[HostsFailure]:
        """Rewrite each hosts file that needs it; those that cannot be written are returned,
        the others written all the same."""
        failed = []
        for target in targets:
            try:
                changed = hosts.update_hosts_file(target.path, target.entries)
            except hosts.HostsFileError as exc:
                failed.append(target.failure("update", exc))
                continue
            if changed:
                self.out(f"{target.owner}: /etc/hosts updated")
        return failed

    def _apply_hosts(self, owners: set[str]) -> list[HostsFailure]:
        """Bring these containers' hosts files in line with the record.

        A file that cannot be read or written (its container controls it: see
        hosts.py) is warned about and returned; it stops neither the other
        files nor the caller, so one container cannot hold up the others'
        entries or rules ('watch' tries it again on its next batch).
        """
        targets, failed = self._hosts_targets(owners)
        failed += self._write_hosts(targets)
        return self._warn_hosts(failed)

    def _warn_hosts(self, failed: list[HostsFailure]) -> list[HostsFailure]:
        for _owner, message in failed:
            self.warn(message)
        return failed

    def add_two_ways(self, requests: list[AddRequest], rev_lookup: bool = False) -> Plan:
        """add-internal, plus an /etc/hosts line for CONTAINER in the source container."""
        if not requests:
            raise UsageError("no rules to add")
        specs, entries = [], []
        for req in requests:
            spec = self.spec_from_request(Kind.INTERNAL, req, rev_lookup, action="add-two-ways")
            specs.append(spec)
            entries.append((spec.source.value, spec.owner))
        return self.record(specs, entries, action="add-two-ways")

    # -- save-hostconfig and start ------------------------------------------

    def save_hostconfig(self, containers: list[str]) -> None:
        snapshot = self.engine.snapshot()
        records = {}
        for ref in containers:
            container = snapshot.get(ref)
            if container.state != "running":
                raise EngineError(f"container {container.name} is {container.state}: save-hostconfig needs it running")
            records[container.name] = hostconfig.record(self.engine.inspect(container.id))
        with self.store.transaction():
            for name, config in records.items():
                self.store.save_hostconfig(name, config)
        for name, config in records.items():
            ports = ", ".join(
                f"{port}->{','.join(b['HostPort'] for b in bindings)}"
                for port, bindings in config["bindings"].items()
            )
            self.out(f"{name}: host configuration saved" + (f" (ports {ports})" if ports else ""))

    @staticmethod
    def _dependencies(name: str, info: dict, snapshot: Snapshot) -> list[str]:
        found = []
        for ref in hostconfig.dependencies(info):
            dep = snapshot.find(ref)
            if dep is None:
                raise EngineError(f"{name} depends on container {ref}, which does not exist")
            found.append(dep.name)
        return found

    def start_order(self, containers: list[str], pull_deps: bool) -> tuple[list[str], dict]:
        """Dependency order of the selection (and, with pull_deps, its dependencies)."""
        if not containers:
            raise UsageError("start: name at least one container")
        snapshot = self.engine.snapshot()
        selected = [snapshot.get(ref).name for ref in containers]
        inspects: dict[str, dict] = {}

        def info(name: str) -> dict:
            if name not in inspects:
                inspects[name] = self.engine.inspect(snapshot.get(name).id)
            return inspects[name]

        chosen = set(selected)

        def deps(name: str) -> list[str]:
            # Without --pull-deps, a dependency that is running already is
            # satisfied, selected or not; --pull-deps lists it (and leaves it running).
            return [
                d for d in self._dependencies(name, info(name), snapshot)
                if pull_deps or d in chosen or snapshot.get(d).state not in ("running", "paused")
            ]

        try:
            order = depgraph.start_order(selected, deps, pull_deps=pull_deps)
        except (depgraph.DependencyCycleError, depgraph.MissingDependencyError) as exc:
            raise UsageError(str(exc)) from None
        return order, {name: info(name) for name in order}

    def _start_one(self, name: str, container_id: str, saved: dict, pin: bool) -> None:
        """Start, asking for the saved host ports; without them if they are taken."""
        if not (pin and saved.get("dynamic") and saved.get("bindings")):
            self.engine.start(container_id)
            return
        try:
            self.engine.start(container_id, saved["bindings"])
        except PortInUseError as exc:
            # Another container holds the port now.  Start with engine-chosen
            # ports for the dynamic ones rather than not at all; the changed
            # ports are reported after the start.
            self.warn(f"{name}: could not get its saved host ports back ({exc}); starting with new ones")
            self.engine.start(container_id, hostconfig.unpinned(saved))

    def start(
        self,
        containers: list[str],
        dry_run: bool = False,
        paused: bool = False,
        pull_deps: bool = False,
        jobs: int = 1,
    ) -> list[str]:
        """Start containers in dependency order, protecting each as soon as it runs."""
        order, inspects = self.start_order(containers, pull_deps)
        saved_configs = {name: self.store.hostconfig(name) or {} for name in order}
        # Refuse before anything is started (and say so in a dry run too).
        for name in order:
            if saved_configs[name] and not inspects[name]["State"]["Running"]:
                changed = hostconfig.wiring_changes(saved_configs[name], inspects[name])
                if changed:
                    raise UsageError(
                        f"container {name}: host configuration changed since it was saved "
                        f"({', '.join(changed)}); check it, run 'docker-fw save-hostconfig {name}', "
                        "then start again"
                    )
        if dry_run:
            for name in order:
                self.out(name)
            return order
        pin = False
        if any(not inspects[n]["State"]["Running"] and saved_configs[n].get("dynamic") for n in order):
            pin = self.engine.accepts_start_with_hostconfig()
        # Starting runs in parallel across independent branches (jobs > 1);
        # firewall and hosts updates, output and the store stay serialised.
        serial = threading.Lock()

        def bring_up(name: str) -> None:
            info = inspects[name]
            if info["State"]["Running"]:  # True for paused containers too: left as they are
                with serial:
                    self.out(name)
                return
            self._start_one(name, info["Id"], saved_configs[name], pin)
            if paused:
                self.engine.pause(info["Id"])
            with serial:
                self.engine.snapshot(refresh=True)
                # Replay at once, so no container waits for the others.
                self.sync({name})
                self._save_after_start(name, info["Id"], saved_configs[name])
                self.out(name)

        if jobs <= 1:
            for name in order:
                bring_up(name)
            return order
        snapshot = self.engine.snapshot()
        deps = {name: self._dependencies(name, inspects[name], snapshot) for name in order}
        try:
            depgraph.run_parallel(order, deps, bring_up, max_workers=jobs)
        except depgraph.NodeFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, DockerFwError):
                raise type(cause)(f"{exc.node}: {cause}") from None
            raise
        return order

    def _save_after_start(self, name: str, container_id: str, saved: dict) -> None:
        """Record the host ports it got; report those that differ from the saved ones."""
        now = self.engine.inspect(container_id)
        changes = hostconfig.port_changes(saved, now) if saved else []
        if changes:
            self.warn(f"{name}: host ports changed: {'; '.join(changes)}")
        with self.store.transaction():
            self.store.save_hostconfig(name, hostconfig.record(now, previous=saved or None))
