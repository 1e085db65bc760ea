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
from ..listing import owner_names, say_nothing
from ..labels import LabelRules, icc_note, read_labels
from ..model import RuleSpec
from ..resolve import ResolvedRule, resolve
from ..store import Store
from ..transaction import Plan, Transaction, transaction

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ..backends.nftables.backend import Runner as NftRunner
    from ..engine import Snapshot


def family_note(change: Change) -> str:
    """What a report adds to a change of the IPv6 backend."""
    return " (IPv6)" if change.family == 6 else ""


def backend_note(backend: FirewallBackend) -> str:
    """What a report adds to a line about a backend other than the primary one."""
    return f" ({backend.label})" if backend.label else ""


# Where Docker's embedded DNS finds its upstream servers when neither the
# daemon nor the container names any: the host's resolv.conf, or
# systemd-resolved's list behind its 127.0.0.53 stub.
HOST_RESOLV_CONFS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def _host_file(path: str, limit: int = 64 * 1024) -> bytes:
    """The host's own (root's) file, bounded; b'' when there is none."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return b""


class _HostResolvConf:
    """The host's resolv.conf files (HOST_RESOLV_CONFS), read on first use and
    kept for one plan: they stand in for every locked container's embedded DNS."""

    def __init__(self) -> None:
        self._text: bytes | None = None

    def text(self) -> bytes:
        if self._text is None:
            self._text = b"\n".join(_host_file(path) for path in HOST_RESOLV_CONFS)
        return self._text


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
        nft: NftRunner | None = None,
    ):
        """BACKENDS: the firewalls to keep in line with the record, the required
        one first.  By default they are chosen by the engine's firewall backend
        when first needed (backends.choice): nftables for Docker's nftables
        mode (NFT, else an nft found on PATH), else iptables (FIREWALL) and,
        given, ip6tables (FIREWALL6).  'init' also removes docker-fw's leftovers
        in the firewall the engine does not use, where its runner is given
        (FIREWALL for iptables, NFT for nftables)."""
        self.engine = engine
        self._firewall, self._firewall6 = firewall, firewall6
        self._nft = nft
        self._backends = list(backends) if backends is not None else None
        self.store = store
        self.out = out
        self.warn = warn
        self._resolve_memo: tuple[Snapshot, dict[RuleSpec, tuple[ResolvedRule, ...]]] | None = None
        self._labels_of: tuple[Snapshot, LabelRules] | None = None  # label_rules(), per snapshot

    @property
    def backends(self) -> list[FirewallBackend]:
        if self._backends is None:
            self._backends = for_engine(self.engine.firewall_backend(), self._firewall, self._firewall6, self._nft)
        return self._backends

    @backends.setter
    def backends(self, backends: list[FirewallBackend]) -> None:
        self._backends = list(backends)

    def _resolved(self, spec: RuleSpec, snapshot: Snapshot) -> tuple[ResolvedRule, ...]:
        """resolve(SPEC, SNAPSHOT), once per snapshot: 'add' resolves each new rule
        to check it, then again for the plan (of the same snapshot, the engine's
        cached one).  Only rules that resolved are kept; both values are immutable."""
        memo = self._resolve_memo
        if memo is None or memo[0] is not snapshot:
            memo = self._resolve_memo = (snapshot, {})
        rules = memo[1].get(spec)
        if rules is None:
            rules = memo[1][spec] = tuple(resolve(spec, snapshot))
        return rules

    def _desired(self, specs: Iterable[RuleSpec], plan: Plan) -> list[ResolvedRule]:
        snapshot = self.engine.snapshot()
        desired: list[ResolvedRule] = []
        for spec in specs:
            try:
                rules = self._resolved(spec, snapshot)
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
                note = icc_note(spec, snapshot)
                if note is not None:
                    plan.no_effect.append(note)
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

    def egress_locks(self, scope: set[str] | None) -> list[tuple[object, list, str]]:
        """The locked containers in SCOPE (None: all): those recorded ('egress NAME
        deny') and those their labels ask for ('egress deny'); a container locked
        both ways gets one lock.  Each as (what asks for it: an egress.EgressSpec or
        a labels.LabelledLock, what it places: egress.resolve_lock's locks and DNS
        rules, why it is not placed: '' when it is).

        A container that is not running gets none (its old address may be
        handed to the next container that starts): empty, with why."""
        from ..egress import EgressSpec, resolve_lock
        from ..model import EgressPolicy

        policies = self.store.egress(sorted(scope) if scope is not None else None)
        locked: dict[str, object] = {  # owner -> what asks for its lock (reported by describe())
            owner: EgressSpec(owner, policy) for owner, policy in policies.items() if policy is EgressPolicy.DENY
        }
        for lock in self.label_rules().locked(scope):
            locked.setdefault(lock.owner, lock)
        if not locked:
            return []
        snapshot = self.engine.snapshot()
        host_servers = _HostResolvConf()  # read at most once per plan, not once per locked container
        found: list[tuple[object, list, str]] = []
        for owner, asked_by in locked.items():
            try:
                placed = resolve_lock(owner, snapshot, self._nameservers(snapshot.running(owner).id, host_servers))
            except EngineError as exc:
                found.append((asked_by, [], str(exc)))
                continue
            found.append((asked_by, placed, self._inexpressible(placed) or ""))  # a bridge no backend can match
        return found

    def _egress_desired(self, scope: set[str] | None, plan: Plan) -> list:
        """The locks (and DNS) of the locked containers in SCOPE (None: all), to
        apply; those that cannot be placed are reported as withdrawn."""
        desired: list = []
        for asked_by, placed, why_not in self.egress_locks(scope):
            if why_not:
                plan.withdrawn.append((asked_by, why_not))
                if placed:  # placeable, but not by these backends: drift for 'check'
                    plan.refused.append((asked_by, why_not))
            else:
                desired.extend(placed)
        return desired

    def _nameservers(self, container_id: str, host_servers: "_HostResolvConf") -> list[str]:
        """The name servers a locked container keeps (egress.nameservers): read
        from its resolv.conf (ResolvConfPath, bounded, no link followed) and its
        --dns; the host's resolv.conf stands in for the embedded DNS's upstream
        servers where the engine notes none.  A file that cannot be read is no
        server (fail closed)."""
        from .. import hosts
        from ..egress import nameservers

        details = self.engine.inspect(container_id)
        dns = [d for d in ((details.get("HostConfig") or {}).get("Dns") or []) if isinstance(d, str)][:8]

        def read(path) -> bytes:
            try:
                return hosts.read_bounded(path, hosts.MAX_BYTES) if isinstance(path, str) and path else b""
            except hosts.HostsFileError as exc:
                self.warn(f"egress: {hosts.shown(path)}: {exc}: no name server kept from it")
                return b""

        own = read(details.get("ResolvConfPath"))
        fallback = b""
        if b"127.0.0.11" in own:
            fallback = host_servers.text()
        return nameservers(own, dns, fallback)
    def label_rules(self) -> LabelRules:
        """The rules of the running containers' docker-fw.rules labels, read from
        the engine's snapshot (once per snapshot: labels.read_labels)."""
        snapshot = self.engine.snapshot()
        cached = self._labels_of
        if cached is None or cached[0] is not snapshot:
            cached = self._labels_of = (snapshot, read_labels(snapshot))
        return cached[1]

    def _scope_of(self, owners: set[str]) -> set[str]:
        """OWNERS and the containers whose rules name them (recorded or labelled)."""
        return owners | self.store.referrers(owners) | self.label_rules().referrers(owners, self.engine.snapshot())

    def _transaction(self, record: bool = True) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction over every backend, and over the store unless RECORD is False."""
        return transaction(self.backends, self.store if record else None)

    def _plan(self, tx: Transaction, scope: set[str] | None) -> Plan:
        """Each backend's changes for the recorded rules of SCOPE (None: every owner), added to TX."""
        plan = Plan()
        specs = self.store.rules(sorted(scope) if scope is not None else None)
        labelled = self.label_rules()
        specs = [*specs, *labelled.specs(scope)]
        plan.label_errors.extend(labelled.errors(scope))
        desired = self._desired(specs, plan) + self._egress_desired(scope, plan)
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
        for message in plan.label_errors:
            self.warn(message)
        for note in plan.no_effect:
            self.warn(note)

    def _owner_names(self, refs: Iterable[str]) -> list[str]:
        """Container references as recorded (listing.owner_names)."""
        return owner_names(self.store, self.engine, refs)
