"""docker-fw watch: keep iptables and hosts entries in line with the engine, by itself.

The seed could not follow Docker's --restart policies: nothing re-applied
rules when the engine restarted a container, possibly at a new address.
'watch' listens to the engine's events and:

- on start/restart/unpause, network connect/disconnect: replays that
  container's rules, the rules of containers naming it, and hosts entries;
- on die/stop: the same replay withdraws the rules that point at the address
  it had (the next container to start may get that address); pause keeps them;
- on destroy: notes the container as gone (see 'docker-fw gc');
- on rename: moves what is recorded for the old name to the new one
  (as 'docker-fw rename'), then replays it;
- at startup, after the engine comes back, on SIGHUP, on network create or
  destroy, and every --interval seconds: reconciles everything (missed
  events, an engine restart that put Docker's catch-all back, a flushed
  table), logging what it repaired; 'init' too, unless --no-init.

Events arriving close together are coalesced into one batch; a failed batch
is retried (each batch is one iptables-restore transaction, so a failure
leaves nothing half-applied).  The state lock is taken only while a batch is
applied, so CLI commands keep working while 'watch' runs.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .actions import Service
from .engine import Engine
from .errors import DockerFwError
from .iptables import Iptables
from .reconcile import Plan
from .store import Store

SYNC_ACTIONS = {"start", "restart", "unpause", "die", "stop", "kill", "oom", "rename"}
NETWORK_SYNC_ACTIONS = {"connect", "disconnect"}
NETWORK_RECONCILE_ACTIONS = {"create", "destroy"}


class Logger:
    """One line per message on stderr: text, or JSON with --json."""

    def __init__(self, as_json: bool = False, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, level: str, msg: str, **fields) -> None:
        now = time.time()
        if self.as_json:
            line = json.dumps({"time": round(now, 6), "level": level, "msg": msg, **fields}, sort_keys=True)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{stamp} docker-fw watch: {level}: {msg}{extra}"
        with self._lock:
            print(line, file=self.stream, flush=True)


@dataclass
class Pending:
    """What the next batch must do."""

    names: set[str] = field(default_factory=set)
    actions: list[str] = field(default_factory=list)  # e.g. 'start web', for the log
    renames: list[tuple[str, str]] = field(default_factory=list)  # (old, new), in event order
    everything: str = ""  # reason for a full reconcile, '' for none
    first_event: float = 0.0  # engine time of the oldest event in the batch

    def __bool__(self) -> bool:
        return bool(self.names or self.everything)


class Watcher:
    def __init__(
        self,
        log: Logger,
        interval: float = 10.0,
        debounce: float = 0.02,
        engine_factory: Callable[[], Engine] = Engine,
        firewall: Iptables | None = None,
        firewall6: Iptables | None = None,
        init: bool = True,
    ):
        self.log = log
        self.init = init  # False (--no-init): Docker's FORWARD chain is left to the admin
        self.interval = interval
        self.debounce = debounce
        self.engine_factory = engine_factory
        self.engine = engine_factory()
        self.firewall = firewall or Iptables()
        # ip6tables too, unless a firewall was given (tests) without one.
        self.firewall6 = firewall6 if firewall6 is not None or firewall is not None else Iptables(family=6)
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self._warned: set[str] = set()

    # -- the event stream (its own thread) ---------------------------------

    def _listen(self) -> None:
        backoff = 0.5
        connected_once = False
        while not self.stopping.is_set():
            try:
                engine = self.engine_factory()
                stream = engine.api.events(decode=True, filters={"type": ["container", "network"]})
                self.events.put(("connected", "reconnected to the engine" if connected_once else "", None))
                connected_once = True
                backoff = 0.5
                for event in stream:
                    self.events.put(("event", "", event))
                    if self.stopping.is_set():
                        return
                reason = "the engine closed the event stream"
            except Exception as exc:  # the engine is away: any error of the client
                reason = f"cannot reach the engine: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
            if self.stopping.is_set():
                return
            self.events.put(("disconnected", reason, None))
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    # -- batches ----------------------------------------------------------

    def _collect(self, pending: Pending, kind: str, reason: str, event: dict | None) -> None:
        if kind == "connected" and reason:
            pending.everything = pending.everything or reason
        elif kind == "disconnected":
            self.log("warning", reason)
        elif kind == "event":
            etype, action = event.get("Type"), (event.get("Action") or "").split(":")[0]
            attrs = (event.get("Actor") or {}).get("Attributes") or {}
            if etype == "container" and action in SYNC_ACTIONS:
                pending.names.add(attrs.get("name", ""))
                pending.actions.append(f"{action} {attrs.get('name', '')}")
                if action == "rename" and attrs.get("oldName") and attrs.get("name"):
                    pending.renames.append((attrs["oldName"].lstrip("/"), attrs["name"].lstrip("/")))
            elif etype == "container" and action == "destroy":
                self._mark_gone(attrs.get("name", ""))
            elif etype == "network" and action in NETWORK_SYNC_ACTIONS:
                container = attrs.get("container", "")
                name = self._name_of(container)
                if name:
                    pending.names.add(name)
            elif etype == "network" and action in NETWORK_RECONCILE_ACTIONS:
                pending.everything = pending.everything or f"network {attrs.get('name', '')} {action}"
            else:
                return
            if not pending.first_event and event.get("timeNano"):
                pending.first_event = event["timeNano"] / 1e9
        pending.names.discard("")

    def _name_of(self, container_id: str) -> str:
        try:
            found = self.engine.snapshot(refresh=True).find(container_id)
        except DockerFwError:
            return ""
        return found.name if found else ""

    def _mark_gone(self, name: str) -> None:
        if not name:
            return
        try:
            with Store.open() as store, store.transaction():
                if name in store.owners():
                    store.mark_gone(name)
                    self.log("info", f"{name} destroyed: its records are kept until 'docker-fw gc'", container=name)
        except DockerFwError as exc:
            self.log("error", f"cannot note {name} as gone: {exc}")

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.log("warning", message)

    def apply(self, pending: Pending) -> Plan:
        """One batch: a full reconcile, or a replay of the named containers."""
        self.engine.snapshot(refresh=True)
        with Store.open() as store:
            service = Service(
                self.engine, self.firewall, store,
                out=lambda msg: self.log("info", msg),
                warn=self._warn_once,
                firewall6=self.firewall6,
            )
            plan = Plan()
            for old, new in pending.renames:
                plan.extend(self._follow_rename(service, store, old, new).changes)
            if pending.everything:
                if self.init:
                    try:
                        plan.extend(service.ensure_initialised().changes)
                    except DockerFwError as exc:
                        self._warn_once(f"init: {exc}")
                synced = service.sync(None)
            else:
                synced = service.sync(set(pending.names))
            plan.extend(synced.changes)
            plan.withdrawn = synced.withdrawn
        return plan

    def _follow_rename(self, service: Service, store: Store, old: str, new: str) -> Plan:
        """'docker rename OLD NEW': OLD's records become NEW's (when there are any)."""
        if old not in store.owners() and not store.referrers([old]):
            return Plan()
        try:
            return service.rename(old, new)
        except DockerFwError as exc:
            # e.g. stale records for NEW: leave both as they are, say so once
            self._warn_once(f"cannot follow 'docker rename {old} {new}': {exc}")
            return Plan()

    def _report(self, pending: Pending, plan: Plan, started: float) -> None:
        done = time.time()
        fields = {}
        if pending.first_event:
            fields["latency_ms"] = round((done - pending.first_event) * 1000, 1)
        what = pending.everything or "event: " + ",".join(sorted(pending.names))
        for change in plan.changes:
            self.log("info", f"{change.verb} ({change.why}): {change.note or change.line}", reason=what)
        # Quiet periodic checks that found nothing; everything else is logged.
        if plan.changes or pending.names or pending.everything not in ("", "periodic check"):
            self.log(
                "info",
                f"applied {len(plan.changes)} change(s)",
                reason=what,
                containers=",".join(sorted(pending.names)),
                events=",".join(pending.actions),
                took_ms=round((done - started) * 1000, 1),
                **fields,
            )

    def run(self) -> int:
        listener = threading.Thread(target=self._listen, name="events", daemon=True)
        listener.start()
        pending = Pending(everything="startup")
        next_check = time.monotonic() + self.interval
        retry_delay = 0.0
        self.log("info", f"watching (full check every {self.interval:g}s)")
        while not self.stopping.is_set():
            timeout = max(0.0, next_check - time.monotonic())
            if pending:
                timeout = min(timeout, retry_delay)
            try:
                kind, reason, event = self.events.get(timeout=timeout)
                self._collect(pending, kind, reason, event)
                # Coalesce a burst: take what arrives within the debounce window.
                deadline = time.monotonic() + self.debounce
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        self._collect(pending, *self.events.get(timeout=left))
                    except queue.Empty:
                        break
            except queue.Empty:
                pass
            if time.monotonic() >= next_check:
                pending.everything = pending.everything or "periodic check"
            if not pending or self.stopping.is_set():
                continue
            started = time.time()
            try:
                plan = self.apply(pending)
            except DockerFwError as exc:
                retry_delay = min(max(retry_delay * 2, 0.5), 10.0)
                self.log("error", f"{exc} (retrying in {retry_delay:g}s; nothing was half-applied)")
                pending.everything = pending.everything or "retry after an error"
                continue
            retry_delay = 0.0
            self._report(pending, plan, started)
            if pending.everything:
                next_check = time.monotonic() + self.interval
            pending = Pending()
        self.log("info", "stopped")
        return 0

    def request_check(self, reason: str = "SIGHUP") -> None:
        self.events.put(("connected", reason, None))

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(("stop", "", None))


def run_watch(interval: float, as_json: bool, init: bool = True) -> int:
    watcher = Watcher(Logger(as_json=as_json), interval=interval, init=init)
    signal.signal(signal.SIGHUP, lambda *_: watcher.request_check("SIGHUP"))
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    try:
        return watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
        return 0
