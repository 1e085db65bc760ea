"""'init' and the layout of Docker's chains: which bridges, reshaped in every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import BlockLogger, Change, FirewallBackend, Leftovers
from ..backends.choice import not_for_engine
from ..errors import DockerFwError, FirewallError, UsageError
from ..transaction import Plan, Transaction
from .core import ServiceCore, backend_note, family_note

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ..engine import Network, Snapshot

IPV6_NOT_INITIALISED = (
    "IPv6 not initialised: the engine has IPv6 networks but does not manage ip6tables "
    "(--ip6tables): any IPv6 client reaches published ports through Docker's userland proxy"
)


# What Docker publishes a port on when the run names no address: every IPv4 address
# (0.0.0.0) and every IPv6 one ('::'); '' in older engines' lists means both.
_EVERY_IPV6_ADDRESS = ("::", "")


def proxy_exposures(snapshot: Snapshot, bridges: set[str]) -> list[str]:
    """One warning per published port that IPv6 clients reach through docker-proxy.

    A port published on every address ('::') of a running container with no
    IPv6 address on the network it is published through (its gateway
    endpoint): Docker has nothing to DNAT IPv6 to, so its userland proxy
    listens on [::] and connects to the container's IPv4 address from the
    host itself, where no forward rule sees the client (checked on 20.10 and
    29).  BRIDGES: the networks init closes (the others are open anyway).
    """
    found = []
    for container in snapshot.containers:
        endpoint = container.published_endpoint
        if container.state != "running" or endpoint is None or endpoint.ip6 or endpoint.bridge not in bridges:
            continue
        ports = sorted({(p.host_port, p.proto) for p in container.ports if p.host_ip in _EVERY_IPV6_ADDRESS})
        for port, proto in ports:
            found.append(
                f"{container.name}: port {port}/{proto} is published on every IPv6 address, but "
                f"{container.name} has no IPv6 address on network {endpoint.network}: docker-proxy admits "
                f"every IPv6 client, which no rule sees; publish it on 0.0.0.0:{port} only, or run dockerd "
                f"with --userland-proxy=false, or give {endpoint.network} IPv6"
            )
    return found


class LayoutActions(ServiceCore):
    """'init' (and what 'check' reports of it) in every backend in use."""

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

    def proxy_exposures(self) -> list[str]:
        """proxy_exposures on the networks init covers now (what init and check warn about)."""
        snapshot = self.engine.snapshot()
        return proxy_exposures(snapshot, {n.bridge for n in self._init_networks(snapshot)})

    def _warn_if_not_initialised(self, tx: Transaction) -> None:
        backend = self.backends[0]  # the required one: the others may be left out
        bridges = [n.bridge for n in self._init_networks(self.engine.snapshot()) if backend.covers(n)]
        if bridges and not backend.is_initialised(tx.live(backend), bridges):
            self.warn(
                "'docker-fw init' has not been run: Docker's catch-all rule still lets "
                "anyone reach published ports"
            )

    def ensure_initialised(self) -> Plan:
        """What 'init' does, quietly: returns the plan it applied (empty when done already)."""
        with self._transaction(record=False) as tx:
            return self._plan_init(tx)

    def _plan_init(self, tx: Transaction, leftovers: bool = False) -> Plan:
        """'init' in every backend: the same reshaping, on the selected bridges it covers.

        A backend that is not required only warns when it cannot be
        initialised: the required one protects all the same.  LEFTOVERS: also
        remove what docker-fw wrote in the firewall backend the engine no longer
        uses (the 'init' command; watch's re-init does not look).
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
            changes.extend(self._plan_log(backend, live, bridges, changes))
            tx.add(backend, changes)
            plan.extend(changes)
        if leftovers:
            self._plan_leftovers(tx, plan, engine_backend)
        return plan

    def _plan_leftovers(self, tx: Transaction, plan: Plan, engine_backend: str) -> None:
        """Remove docker-fw's chains or tables of the firewall backend the engine used
        before (Docker leaves ours behind when it switches): stale copies of the rules."""
        for backend in not_for_engine(engine_backend, self._firewall, self._firewall6, self._nft):
            if not isinstance(backend, Leftovers):
                continue
            live = backend.read_leftovers()
            if live is None:
                continue
            for warning in backend.leftover_warnings(live):
                self.warn(warning)
            changes = backend.plan_remove(live)
            if changes:
                tx.add(backend, changes, live)
                plan.extend(changes)

    def _plan_log(self, backend: FirewallBackend, live, bridges: list[str], before: list[Change] = ()) -> list[Change]:
        """What makes BACKEND log (or stop logging) the connections its whitelist drops,
        as 'init --log-blocked' recorded; a backend that cannot log is warned about."""
        enabled = self.store.log_blocked()
        if not isinstance(backend, BlockLogger):
            if enabled:
                self.warn(f"{backend.label or 'this firewall backend'} cannot log blocked connections")
            return []
        return backend.plan_log(live, bridges if enabled else [], enabled, before)

    def _refuse_log_blocked_without_a_logger(self) -> None:
        """'init --log-blocked' where the firewall in use cannot log (Docker's nftables
        mode, so far): refused before anything is recorded or changed, rather than a
        record that promises a log no rule writes."""
        unable = [b for b in self.backends if b.required and not isinstance(b, BlockLogger)]
        if unable:
            engine_backend = self.engine.firewall_backend() or "iptables"
            raise UsageError(
                f"--log-blocked: not supported with the engine's {engine_backend} firewall backend "
                "(docker-fw logs blocked connections with iptables rules only, so far); nothing changed"
            )

    def init(self, networks: list[str] | None = None, all_networks: bool = False,
             log_blocked: bool | None = None) -> Plan:
        """Reshape Docker's FORWARD chain (ensure_initialised), for every bridge network,
        or, from now on, only for NETWORKS (by name) until ALL_NETWORKS again.
        LOG_BLOCKED True (False) records that blocked connections are (not) logged from
        now on; None keeps what was recorded."""
        if log_blocked:
            self._refuse_log_blocked_without_a_logger()
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
            if log_blocked is not None:
                self.store.set_log_blocked(log_blocked)
            plan = self._plan_init(tx, leftovers=True)
        selected = self.store.init_networks()
        if selected is not None:
            self.out(f"init: limited to network{'s' if len(selected) > 1 else ''} {', '.join(selected)} "
                     "(recorded; 'init --all-networks' covers every one again)")
        if self.store.log_blocked():
            self.out("init: logging blocked connections, rate-limited (recorded; 'docker-fw log' prints them, "
                     "'init --no-log-blocked' stops it)")
        if plan:
            shown = [c for c in plan.changes if c.why in ("init", "log")]
            # Nothing of init's own but docker-fw's chains or jumps put back (e.g. after
            # 'nft flush chain ip docker-fw forward', which left init's drops unreachable):
            # say so rather than print nothing.
            for change in shown or plan.changes:
                self.out(f"init: {change.shown}{family_note(change)}")
        else:
            self.out("init: already done, nothing changed")
        for warning in self.proxy_exposures():
            self.warn(warning)
        return plan

    def _layout_problems(self, tx: Transaction) -> list[str]:
        """What 'init' would still change in each backend in use, one line each ('check')."""
        problems: list[str] = []
        snapshot = self.engine.snapshot()
        selected = self._init_networks(snapshot)
        existing = [n.bridge for n in snapshot.bridges()]
        engine_backend = self.engine.firewall_backend()
        for backend, live in tx.in_use():
            note = backend_note(backend)
            bridges = [n.bridge for n in selected if backend.covers(n)]
            if not backend.required and not bridges:
                continue
            try:
                if not selected:
                    raise UsageError(self._no_selected_network())
                init_changes = backend.plan_init(live, bridges, engine_backend, existing)
                for change in init_changes:
                    problems.append(f"not initialised ({change.why}): would {change.verb} {change.line}{note}")
                for change in self._plan_log(backend, live, bridges, init_changes):
                    problems.append(f"blocked-connection log not in place: would {change.verb} {change.line}{note}")
            except DockerFwError as exc:
                problems.append(f"layout{note}: {exc}")
        return problems
