"""The service layer: the rule actions (the others are in service/), one method each.

Every action follows the same steps: look at the engine (one snapshot),
change the store inside a transaction (transaction.py), plan against what
each firewall backend reads live, apply each backend's plan in one atomic
batch, and commit the store only if every kernel accepted its batch.
"""

from __future__ import annotations

from . import values

from typing import TYPE_CHECKING

from .backends.iptables.backend import UNMANAGED_IP6TABLES
from .errors import DockerFwError, EngineError, UsageError
from .labels import RULES_LABEL
from .listing import Records
from .model import EgressPolicy, Kind, RuleSpec
from .resolve import allow_ports, check_kind_addresses, normalise_address
from .rulegrammar import AddRequest, EgressRequest, allow_addresses, allow_requests, checked_spec, validate
from .service.core import ServiceCore, backend_note, family_note
from .service.hostsync import HostsSync, hosts_not_updated, raise_first
from .service.layout import IPV6_NOT_INITIALISED, LayoutActions
from .service.start import StartActions
from .transaction import Plan, Transaction

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from .engine import Snapshot


class _DryRun(Exception):
    """Raised inside a store transaction to roll it back after a dry run."""


IPV6_UNMANAGED = UNMANAGED_IP6TABLES
__all__ = ["AddRequest", "IPV6_NOT_INITIALISED", "IPV6_UNMANAGED", "Service"]


class Service(LayoutActions, StartActions, HostsSync, ServiceCore):
    """One method per action; the rule actions are here, the others in service/."""

    def spec_from_request(self, kind: Kind, req: AddRequest, rev_lookup: bool, action: str | None = None) -> RuleSpec:
        """REQ as the rule of ACTION (default: KIND's) it records: checked without
        the engine (rulegrammar), then its names and addresses normalised against
        the running containers and, if that changed them, checked again."""
        action = action or kind.action
        written = checked_spec(action, req)
        snapshot = self.engine.snapshot()
        try:
            owner = snapshot.running(req.container)
            source = normalise_address(written.source, owner, snapshot, rev_lookup)
            dest = normalise_address(written.dest, owner, snapshot, rev_lookup)
            if (owner.name, source, dest) == (written.owner, written.source, written.dest):
                spec = written  # as checked_spec checked it: validate() would see the same rule
            else:
                spec = values.replace(written, owner=owner.name, source=source, dest=dest)
                validate(action, spec)
            check_kind_addresses(spec, snapshot)
            why_not = self._inexpressible(self._resolved(spec, snapshot))  # fail now, not at apply time
            if why_not:
                raise UsageError(why_not)
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
            tx.after_apply(lambda: raise_first(self._write_hosts(rewrites)))
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
        ports = allow_ports(owner)
        endpoint = owner.published_endpoint  # the bridge Docker DNATs published ports to
        if endpoint is None or not endpoint.bridge:
            raise EngineError(f"container {owner.name} is on no bridge network that publishes ports")
        specs = [
            self.spec_from_request(Kind.ADD, request, False)
            for address in allow_addresses(addresses)
            for request in allow_requests(owner.name, ports, address)
        ]
        return self.record(specs)

    def ls(self, containers: list[str]) -> list[str]:
        return Records(self.engine, self.store, self.out, self.warn).ls(containers)

    def drop(self, containers: list[str]) -> Plan:
        if not containers:
            raise UsageError("drop: name at least one container")
        owners = self._owner_names(containers)
        labelled = self.label_rules()
        from_label = [o for o in owners if o in labelled.owners or o in dict(labelled.refused)]
        for owner in from_label:
            if not self.store.rules([owner]) and not self.store.egress([owner]):
                raise UsageError(
                    f"{owner}'s rules come from its {RULES_LABEL} label: change the label and re-create "
                    "the container ('docker compose up -d') to drop them"
                )
        with self._transaction() as tx:
            hosts_owners = self.store.host_entry_owners(owners)
            locked = set(self.store.egress(owners))
            counts = {o: self.store.drop_owner(o) for o in owners}
            plan = self._plan(tx, set(owners))
            tx.after_apply(lambda: plan.hosts_failed.extend(self._apply_hosts(hosts_owners)))
        for owner, count in counts.items():
            policy = " and its egress policy (allow again)" if owner in locked else ""
            self.out(f"{owner}: dropped {count} rule{'s' if count != 1 else ''}{policy}")
        label_locked = {lock.owner for lock in labelled.locks}
        for owner in from_label:
            kept = "rules and egress lock" if owner in label_locked else "rules"
            self.warn(f"{owner}: the {kept} of its {RULES_LABEL} label are kept: change the label to drop them")
        if plan.hosts_failed:
            raise hosts_not_updated(plan.hosts_failed)
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
            scope = self._scope_of({old, new})
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
                self.out(f"would {change.verb} ({change.why}): {change.note or change.line}{family_note(change)}")
            for owner in plan.hosts:
                self.out(f"would rewrite /etc/hosts of {owner}")
            if not plan:
                self.out("replay: nothing to change")
        else:
            added = sum(1 for c in plan.changes if c.verb == "add")
            deleted = sum(1 for c in plan.changes if c.verb == "delete")
            self.out(f"replay: {added} rule(s) added, {deleted} removed")
        if plan.hosts_failed:
            raise hosts_not_updated(plan.hosts_failed, dry_run)
        return plan

    def sync(self, owners: set[str] | None, dry_run: bool = False) -> Plan:
        """Replay the rules and hosts entries of these containers and of those naming them."""
        scope = None if owners is None else self._scope_of(owners)
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
        """Drift between the record, the engine and the live ruleset, one line each.

        A rule withdrawn because a container it names is not running is not
        drift (it comes back when the container does); one whose recorded
        filter this version refuses, or that a backend cannot express, is."""
        return self.check_report()[0]

    def check_report(self) -> tuple[list[str], list[str]]:
        """check's drift lines, and its warnings: what is open past the whitelist
        that no 'replay' or 'init' can close (proxy_exposures), warned about on
        stderr, not drift (the exit status stays that of the drift)."""
        problems: list[str] = []
        tx = Transaction(self.backends)  # read and planned, never applied
        in_use = tx.in_use()
        problems.extend(self._layout_problems(tx))
        plan = self._plan(tx, None)
        for change in plan.changes:
            if change.verb == "delete":
                problems.append(f"stale ({change.why}): {change.note or change.line}{family_note(change)}")
            else:
                problems.append(f"missing ({change.why}): {change.line}{family_note(change)}")
        problems.extend(f"label refused: {message}" for message in plan.label_errors)
        for backend, live in in_use:
            note = backend_note(backend)
            problems.extend(line + note for line in backend.foreign_rules(live))
        changes, failed = self._hosts_changes(set(self.store.host_entries()))
        problems.extend(f"hosts ({target.owner}): /etc/hosts entries out of date" for target in changes)
        problems.extend(f"hosts ({owner}): {message}" for owner, message in failed)
        refused = []  # drift too: the record holds a rule that cannot be live as it is
        for spec, reason in plan.withdrawn:
            line = f"not applied ({reason}): {spec.describe()}"
            self.out(line)
            if (spec, reason) in plan.refused:
                refused.append(line)
        for note in plan.unmanaged:
            self.out(note)
        for note in plan.no_effect:
            self.out(f"warning: {note}")
        for line in problems:
            self.out(line)
        if not problems and not refused:
            self.out("check: no drift")
        warnings = self.proxy_exposures()
        for warning in warnings:
            self.warn(warning)
        return refused + problems, warnings

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

    def egress(self, request: EgressRequest) -> Plan:
        """Record a container's egress policy and apply it (deny: its lock, at
        its current addresses, in one transaction with the rest of its rules)."""
        from .egress import resolve_lock

        snapshot = self.engine.snapshot()
        try:
            container = snapshot.get(request.container)
            if request.policy is EgressPolicy.DENY and container.state in ("running", "paused"):
                # Fail now, changing nothing, rather than record a lock that
                # cannot be placed (a container on no bridge network).
                why_not = self._inexpressible(resolve_lock(container.name, snapshot, []))
                if why_not:
                    raise EngineError(why_not)
        except DockerFwError as exc:
            raise request.origin.error(exc) from None
        owner = container.name
        with self._transaction() as tx:
            changed = self.store.set_egress(owner, request.policy)
            plan = self._plan(tx, {owner})
        self._report_withdrawn(plan)
        state = "recorded" if changed else "already recorded"
        self.out(f"{state}: {request.policy.command(owner)}")
        if request.policy is EgressPolicy.ALLOW:
            for lock in self.label_rules().locked({owner}):
                self.warn(f"{owner} stays locked: {lock.origin} says egress deny (change the label to lift it)")
        return plan

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
