"""What every action of the service layer shares: the engine, the backends,
the store, and the plan of the recorded rules against each backend."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..backends import Change, FirewallBackend
from ..backends.choice import for_engine
from ..backends.iptables.backend import Runner
from ..errors import EngineError
from ..filtergrammar import FilterError
from ..listing import owner_names
from ..model import RuleSpec
from ..resolve import ResolvedRule, resolve
from ..store import Store
from ..transaction import Plan, Transaction, transaction

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ..engine import Snapshot


def say_nothing(_: str) -> None:
    pass


def family_note(change: Change) -> str:
    """What a report adds to a change of the IPv6 backend."""
    return " (IPv6)" if change.family == 6 else ""


def backend_note(backend: FirewallBackend) -> str:
    """What a report adds to a line about a backend other than the primary one."""
    return f" ({backend.label})" if backend.label else ""


class EngineFacts(Protocol):
    """What 'init', 'check' and the rule actions ask of the engine."""

    def snapshot(self, refresh: bool = False) -> Snapshot: ...

    def firewall_backend(self) -> str: ...


class EngineView(EngineFacts, Protocol):
    """What the whole service layer uses of ``engine.Engine``."""

    def inspect(self, ref: str) -> dict: ...

    def start(self, container_id: str, port_bindings: dict | None = None) -> None: ...

    def pause(self, container_id: str) -> None: ...

    def accepts_start_with_hostconfig(self) -> bool: ...


class ServiceCore:
    """The engine, the firewall backends and the store an action works with."""

    def __init__(
        self,
        engine: EngineView,
        firewall: Runner,
        store: Store,
        out: Callable[[str], None] = print,
        warn: Callable[[str], None] = say_nothing,
        firewall6: Runner | None = None,
        backends: Sequence[FirewallBackend] | None = None,
    ):
        """BACKENDS: the firewalls to keep in line with the record, the required
        one first.  By default they are chosen by the engine's firewall backend
        when first needed (backends.choice): nftables for Docker's nftables
        mode, else iptables (FIREWALL) and, given, ip6tables (FIREWALL6)."""
        self.engine = engine
        self._firewall, self._firewall6 = firewall, firewall6
        self._backends = list(backends) if backends is not None else None
        self.store = store
        self.out = out
        self.warn = warn

    @property
    def backends(self) -> list[FirewallBackend]:
        if self._backends is None:
            self._backends = for_engine(self.engine.firewall_backend(), self._firewall, self._firewall6)
        return self._backends

    @backends.setter
    def backends(self, backends: list[FirewallBackend]) -> None:
        self._backends = list(backends)

    def _desired(self, specs: Iterable[RuleSpec], plan: Plan) -> list[ResolvedRule]:
        snapshot = self.engine.snapshot()
        desired: list[ResolvedRule] = []
        for spec in specs:
            try:
                rules = resolve(spec, snapshot)
            except EngineError as exc:
                # Not applied, and removed if present: a rule left pointing at
                # a stopped container's old address would admit whoever gets
                # that address next.
                plan.withdrawn.append((spec, str(exc)))
                continue
            except FilterError as exc:
                # Likewise for a recorded filter this version refuses (it might hold anything).
                plan.withdrawn.append((spec, str(exc)))
                plan.refused.append((spec, str(exc)))
                continue
            why_not = self._inexpressible(rules)
            if why_not:
                plan.withdrawn.append((spec, why_not))  # e.g. a bridge renamed since: none of it
                plan.refused.append((spec, why_not))
            else:
                desired.extend(rules)
        return desired

    def _inexpressible(self, rules: Iterable[ResolvedRule]) -> str | None:
        """Why a backend of their family cannot hold one of these rules; None when every one can."""
        for rule in rules:
            for backend in self.backends:
                if backend.family == rule.family:
                    why_not = backend.expressible(rule)
                    if why_not:
                        return why_not
        return None

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
        """Container references as recorded (listing.owner_names)."""
        return owner_names(self.store, self.engine, refs)
