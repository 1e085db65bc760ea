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
is retried with capped backoff (each batch is one iptables-restore
transaction, so a refused one leaves nothing half-applied), and one that
fails for one container's sake is split so that the others are applied.  The
state lock is taken only while a batch is applied, so CLI commands keep
working while 'watch' runs.

Signals (SIGHUP: full reconcile; SIGTERM, SIGINT: stop) are taken by
handlers that only set a flag and write a byte to a pipe (see Signals): a
handler runs between two bytecodes of the main thread, which may hold any
lock at that moment.  With the engine away, the event listener retries with
capped backoff and the main loop waits for it, and both log a few lines per
outage, not one per attempt.  Everything logged is one line: names and
engine messages are hostile text, and their control characters are escaped.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from .values import dataclass, field

from .actions import Service
from .engine import Engine
from .errors import DockerFwError, EngineError, StoreError
from .backends.iptables.process import Iptables
from .transaction import Plan
from .store import Store

SYNC_ACTIONS = {"start", "restart", "unpause", "die", "stop", "kill", "oom", "rename"}
NETWORK_SYNC_ACTIONS = {"connect", "disconnect"}
NETWORK_RECONCILE_ACTIONS = {"create", "destroy"}

# A reload storm (SIGHUP after SIGHUP) costs at most one full reconcile per
# this many seconds: a SIGHUP sooner after the last one waits for the rest.
SIGHUP_SPACING = 1.0

# A batch that failed after this many seconds ran into a deadline (iptables
# hung, see DOCKER_FW_IPTABLES_TIMEOUT), not into one container's data: it is
# retried whole, not split into pieces that would each wait as long.
SLOW_FAILURE = 5.0

# Exception text kept in a log line (an engine's error can be a whole page).
MAX_ERROR_TEXT = 300


# -- one line per log call ----------------------------------------------------


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(text: str) -> str:
    """Text fit for one log line: what str.isprintable() refuses (C0/C1 controls
    such as newline, CR and ESC, Unicode line/paragraph separators, format
    characters such as bidi overrides, lone surrogates) is written as a
    Python-style escape, and so is the backslash, so that an escape in a name
    cannot pass for one of ours.  A container or network name is chosen by
    whoever runs it; unescaped, a newline in it forges a log line."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if ch == "\\" else ch if ch == " " or ch.isprintable() else _escape_char(ch) for ch in text
    )


def _field_value(value) -> str:
    """A text-mode field value: escaped, and quoted when a space, quote or '='
    in it could make it look like more than one field."""
    text = one_line(str(value))
    if text and not any(c in text for c in ' "='):
        return text
    return '"' + text.replace('"', '\\"') + '"'


class Logger:
    """One line per message on stderr: text, or JSON with --json.

    JSON is one line by construction (json.dumps escapes control characters,
    and with ensure_ascii everything else beyond ASCII, lone surrogates too);
    text is escaped by one_line().  A failing stream (stderr closed) costs the
    line, never the watch.
    """

    def __init__(self, as_json: bool = False, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, level: str, msg: str, **fields) -> None:
        now = time.time()
        if self.as_json:
            record = {"time": round(now, 6), "level": level, "msg": msg, **fields}
            line = json.dumps(record, sort_keys=True, ensure_ascii=True, default=str)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
            extra = "".join(f" {k}={_field_value(v)}" for k, v in fields.items())
            line = f"{stamp} docker-fw watch: {level}: {one_line(msg)}{extra}"
        with self._lock:
            try:
                print(line, file=self.stream, flush=True)
            except (OSError, ValueError):
                pass


def describe(exc: BaseException) -> str:
    """An exception in one (bounded) line: ours as they are; anything else (a
    bug, or data nobody expected) with its type and where it was raised."""
    text = str(exc).strip()
    first = text.split("\n", 1)[0][:MAX_ERROR_TEXT] if text else ""
    if isinstance(exc, DockerFwError):
        return first or type(exc).__name__
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" at {os.path.basename(last.filename)}:{last.lineno} in {last.name}"
    return f"{type(exc).__name__}{': ' + first if first else ''}{where}"


# -- time, and retrying -------------------------------------------------------------


class Clock:
    """Monotonic time and the two ways watch waits; tests pass a simulated one."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Sleep for timeout seconds, or until event is set (returns whether it is)."""
        return event.wait(timeout)

    def get(self, inbox: queue.Queue, timeout: float):
        """The next message, waiting up to timeout seconds; raises queue.Empty."""
        return inbox.get(timeout=timeout)


class Retry:
    """Consecutive failures of one thing (reaching the engine, applying a batch).

    The delay before the next attempt doubles from `first` up to `cap`; no
    jitter, as there is one watch per engine, no herd to spread.  Only some
    failures are worth a log line: the 1st, 2nd, 4th, 8th, ..., and then every
    64th (about every 10 minutes at a 10 s cap), so an outage of a day costs
    some 150 lines, not 8,640.
    """

    def __init__(self, clock: Clock, first: float = 0.5, cap: float = 10.0):
        self.clock = clock
        self.first = first
        self.cap = cap
        self.count = 0
        self.since = 0.0  # when the first of these failures happened

    def failed(self) -> float:
        """Count a failure; returns the delay before the next attempt."""
        if not self.count:
            self.since = self.clock.monotonic()
        self.count += 1
        # the exponent is bounded: 0.5 * 2 ** 2000 overflows a float
        return min(self.first * 2 ** min(self.count - 1, 32), self.cap)

    @property
    def worth_a_line(self) -> bool:
        n = self.count
        return n > 0 and (n & (n - 1) == 0 or n % 64 == 0)

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.since if self.count else 0.0

    def summary(self) -> str:
        return f"{self.count} failed attempt(s) over {self.elapsed():.0f}s"

    def so_far(self) -> str:
        """' (N failed attempts over S s)' after the first failure, for a log line."""
        return f" ({self.summary()})" if self.count > 1 else ""

    def reset(self) -> None:
        self.count = 0


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


def _text(value) -> str:
    """An event attribute as text: the engine's JSON could hold anything there."""
    return value if isinstance(value, str) else ""


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
        clock: Clock | None = None,
        metrics=None,
    ):
        self.log = log
        self.metrics = metrics  # a metrics.Metrics with --metrics, else None
        self.init = init  # False (--no-init): Docker's FORWARD chain is left to the admin
        self.interval = interval
        self.debounce = debounce
        self.clock = clock or Clock()
        self.engine_factory = engine_factory
        self.engine = engine_factory()
        self.firewall = firewall or Iptables()
        # ip6tables too, unless a firewall was given (tests) without one.
        self.firewall6 = firewall6 if firewall6 is not None or firewall is not None else Iptables(family=6)
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self._warned: set[str] = set()
        self._check_queued = threading.Event()  # a requested full check waits in self.events
        self._engine_away = False  # the listener says so; batches wait for it to come back
        self._last_full = float("-inf")  # when the last full reconcile was applied
        self._not_before = 0.0  # no batch before this: the backoff after one failed as a whole
        self._held: set[str] = set()  # containers that failed on their own ...
        self._held_until = 0.0  # ... wait until then

    # -- the event stream (its own thread) ---------------------------------

    def listen(self) -> None:
        """Follow the engine's events, reconnecting with capped backoff.

        Tells the main loop when the engine goes away ('disconnected': it then
        holds batches back) and comes back ('connected', after an outage with a
        reason: a full reconcile).  The backoff is reset only by a stream that
        stayed up for a while, so an engine that accepts and drops the stream
        at once is retried no faster than one that refuses it.
        """
        retry = Retry(self.clock)
        connected_once = False
        up: bool | None = None  # what the main loop was last told
        said_back = False  # 'connected' was logged in this run of failures
        while not self.stopping.is_set():
            if not retry.count:
                said_back = False
            try:
                engine = self.engine_factory()
                stream = engine.api.events(decode=True, filters={"type": ["container", "network"]})
            except EngineError as exc:  # says it cannot reach the engine
                failure = describe(exc)
            except Exception as exc:  # the engine is away: any error of the client
                failure = f"cannot reach the engine: {describe(exc)}"
            else:
                # once per outage; a stream that keeps dropping says it as seldom as it fails
                if retry.count and (not said_back or retry.worth_a_line):
                    again = "re" if connected_once else ""
                    self.log("info", f"{again}connected to the engine after {retry.summary()}")
                    said_back = True
                self.events.put(("connected", "reconnected to the engine" if connected_once else "", None))
                connected_once, up = True, True
                opened = self.clock.monotonic()
                try:
                    for event in stream:
                        if self.stopping.is_set():
                            return
                        self.events.put(("event", "", event))
                    failure = "the engine closed the event stream"
                except Exception as exc:
                    failure = f"lost the engine's event stream: {describe(exc)}"
                if self.clock.monotonic() - opened >= retry.cap:
                    retry.reset()
            if self.stopping.is_set():
                return
            if up is not False:
                self.events.put(("disconnected", failure, None))
                up = False
            delay = retry.failed()
            if retry.worth_a_line:
                self.log("warning", f"{failure}{retry.so_far()}; retrying in {delay:g}s")
            self.clock.wait(self.stopping, delay)

    # -- batches ----------------------------------------------------------

    def _collect(self, pending: Pending, kind: str, reason: str, event) -> None:
        if kind == "check":
            self._check_queued.clear()
            pending.everything = pending.everything or reason
        elif kind == "connected":
            self._engine_away = False
            if reason:  # back after an outage: reconcile everything, now (and say why)
                pending.everything = reason
                self._not_before = 0.0
        elif kind == "disconnected":
            self._engine_away = True
        elif kind == "event":
            try:
                self._collect_event(pending, event)
            except Exception as exc:  # an event of a shape nobody expected: skip it, say so once
                self._warn_once(f"ignored an engine event: {describe(exc)}")
        pending.names.discard("")

    def _collect_event(self, pending: Pending, event: dict) -> None:
        etype, action = event.get("Type"), _text(event.get("Action")).split(":")[0]
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        name = _text(attrs.get("name"))
        if etype == "container" and action in SYNC_ACTIONS:
            pending.names.add(name)
            pending.actions.append(f"{action} {name}")
            old = _text(attrs.get("oldName"))
            if action == "rename" and old and name:
                pending.renames.append((old.lstrip("/"), name.lstrip("/")))
        elif etype == "container" and action == "destroy":
            self._mark_gone(name)
        elif etype == "network" and action in NETWORK_SYNC_ACTIONS:
            found = self._name_of(_text(attrs.get("container")))
            if found:
                pending.names.add(found)
        elif etype == "network" and action in NETWORK_RECONCILE_ACTIONS:
            pending.everything = pending.everything or f"network {name} {action}"
        else:
            return
        stamp = event.get("timeNano")
        if not pending.first_event and isinstance(stamp, int) and stamp > 0:
            pending.first_event = stamp / 1e9

    def _name_of(self, container_id: str) -> str:
        if not container_id:
            return ""
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

    def _apply_split(self, pending: Pending, exc: Exception) -> tuple[Plan, dict[str, Exception]]:
        """A batch of several containers failed for a reason that may be one
        container's (a line iptables refused, a bug its data set off): apply
        them one by one, so the others are not held back with it.  Returns what
        was applied and the containers that failed, with their errors."""
        if pending.everything:
            with Store.open() as store:
                names = set(store.owners()) | set(store.host_entries())
        else:
            names = set(pending.names)
        plan = Plan()
        failed: dict[str, Exception] = {}
        for name in sorted(names):
            try:
                done = self.apply(Pending(names={name}))
            except (EngineError, StoreError):
                raise  # not this container's fault: the whole batch waits
            except Exception as one:  # this container's: the others go on
                failed[name] = one
                continue
            plan.extend(done.changes)
            plan.withdrawn.extend(done.withdrawn)
        return plan, failed

    def _apply_batch(self, pending: Pending) -> tuple[Plan, dict[str, Exception], Exception | None]:
        """Apply a batch; returns what was applied, the containers that failed
        on their own, and the error that made the batch be split (or None)."""
        started = self.clock.monotonic()
        try:
            return self.apply(pending), {}, None
        except (EngineError, StoreError):
            raise  # the engine or the store is away for everyone: retry it all later
        except Exception as exc:
            if not pending.everything and len(pending.names) < 2:
                raise
            if self.clock.monotonic() - started >= SLOW_FAILURE:
                raise  # a deadline (a hung iptables): each piece would wait as long
            plan, failed = self._apply_split(pending, exc)
            return plan, failed, exc

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

    # -- the main loop ----------------------------------------------------------

    def _ready_at(self, pending: Pending) -> float:
        """When the pending batch may run (0: now).

        Not before the backoff of a batch that failed as a whole; containers
        that failed on their own (see _apply_split) wait for theirs, but do not
        hold back a batch with anything else in it; a SIGHUP-only reconcile no
        sooner than SIGHUP_SPACING after the last full one.
        """
        ready = self._not_before
        if not pending.everything and pending.names <= self._held:
            ready = max(ready, self._held_until)
        if pending.everything == "SIGHUP":
            ready = max(ready, self._last_full + SIGHUP_SPACING)
        return ready

    def _receive(self, pending: Pending, timeout: float) -> None:
        """Wait up to timeout for a message, then take what follows within the
        debounce window (a burst of events makes one batch)."""
        try:
            self._collect(pending, *self.clock.get(self.events, timeout))
        except queue.Empty:
            return
        deadline = self.clock.monotonic() + self.debounce
        while (left := deadline - self.clock.monotonic()) > 0:
            try:
                self._collect(pending, *self.clock.get(self.events, left))
            except queue.Empty:
                return

    @staticmethod
    def _what(pending: Pending) -> str:
        if pending.everything:
            return f"full reconcile ({pending.everything})"
        return "replay of " + ",".join(sorted(pending.names))

    def _failed(self, retry: Retry, pending: Pending, exc: Exception,
                failed: dict[str, Exception] | None = None) -> float:
        """Count a failed batch and log it (rate-limited, see Retry); returns the delay.
        failed: the containers that still failed when the batch was applied one by one."""
        delay = retry.failed()
        if not retry.worth_a_line:
            return delay
        so_far = retry.so_far()
        if failed is None:
            self.log("error", f"{self._what(pending)}: {describe(exc)}{so_far}; retrying in {delay:g}s")
            return delay
        retrying = f"retrying {','.join(sorted(failed))} in {delay:g}s" if failed else "the next full check retries"
        self.log("error", f"{self._what(pending)}: {describe(exc)}{so_far}; "
                 f"applied container by container, {retrying}")
        for name, error in sorted(failed.items()):
            if describe(error) != describe(exc):
                self.log("error", f"{name}: {describe(error)}", container=name)
        return delay

    def loop(self) -> int:
        """Apply batches until stop(); the listener (or a test) feeds self.events.

        Each turn either waits (for a message, a backoff, the next periodic
        check) or applies a batch, and a batch that fails pushes its next try
        into the future: no turn does neither, so there is no busy loop.
        """
        clock = self.clock
        pending = Pending(everything="startup")
        next_check = clock.monotonic() + self.interval
        retry = Retry(clock)
        while not self.stopping.is_set():
            now = clock.monotonic()
            if self._engine_away:
                wake = now + self.interval  # the listener says when it is back
            else:
                wake = self._ready_at(pending) if pending else next_check
            self._receive(pending, max(0.0, wake - now))
            now = clock.monotonic()
            if self.stopping.is_set() or self._engine_away:
                continue
            if now >= next_check:
                pending.everything = pending.everything or "periodic check"
            if not pending or now < self._ready_at(pending):
                continue
            started = time.time()
            try:
                plan, failed, split = self._apply_batch(pending)
                self._report(pending, plan, started)
            except Exception as exc:  # nothing may stop watch: say it, wait, try again
                if self.metrics is not None:
                    self.metrics.failed(time.time() - started)
                self._not_before = clock.monotonic() + self._failed(retry, pending, exc)
                continue
            if self.metrics is not None:
                self._measure(pending, plan, time.time() - started)
            self._not_before = 0.0
            if pending.everything:
                self._last_full = clock.monotonic()
                next_check = self._last_full + self.interval
            if split is not None:
                self._held_until = clock.monotonic() + self._failed(retry, pending, split, failed)
                self._held = set(failed)
                pending = Pending(names=set(failed))
                continue
            if retry.count:
                if retry.count > 1 or self._held:
                    self.log("info", f"applied again after {retry.summary()}")
                retry.reset()
            self._held = set()
            pending = Pending()
        self.log("info", "stopped")
        return 0

    def _measure(self, pending: Pending, plan: Plan, seconds: float) -> None:
        try:
            self.metrics.applied(self, plan, seconds, full=bool(pending.everything))
        except Exception as exc:  # a metric is not worth stopping watch for
            self._warn_once(f"metrics: {describe(exc)}")

    def run(self) -> int:
        self.log("info", f"watching (full check every {self.interval:g}s)")
        # No batch until the listener has subscribed to the events (its first
        # 'connected'): a startup reconcile applied before would miss what
        # changes in between, until the next periodic check.
        self._engine_away = True
        start_thread(self.listen, "events")
        return self.loop()

    def request_check(self, reason: str = "SIGHUP") -> None:
        """Ask for a full reconcile; requests made while one waits are one request."""
        if not self._check_queued.is_set():
            self._check_queued.set()
            self.events.put(("check", reason, None))

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(("stop", "", None))


HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that blocks HANDLED_SIGNALS, so the kernel delivers them
    to the main thread, interrupting whatever it waits in: its handler runs at
    once.  (Taken by another thread, a signal only sets a flag that the main
    thread looks at when it next runs bytecode, maybe after a 10 s wait.)"""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()  # a new thread starts with its creator's signal mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


class Signals:
    """SIGHUP (full reconcile), SIGTERM and SIGINT (stop) for a Watcher.

    A Python signal handler runs in the main thread between two bytecodes,
    wherever that thread is: inside queue.put holding the queue's lock, inside
    the logger holding its lock.  A handler that takes such a lock waits for
    itself (the deadlock SIGHUP storms caused, then SIGTERM never acted), and
    one that blocks lets the next signal's handler nest in it (RecursionError).
    So the handlers here only set a flag and write one byte to a pipe, non-
    blocking, errors ignored (a full pipe already holds a wake-up).  A relay
    thread, outside signal context, reads the pipe and does the work: a full
    check request (one at most waiting, see Watcher.request_check) or stop().
    The flags, not the bytes, carry the meaning, so a byte lost to a full pipe
    loses nothing.  (signal.set_wakeup_fd would write the byte from C, but it
    is one per process and the Python handler has to run anyway; it does at
    once, as our other threads block these signals, see start_thread.)
    """

    def __init__(self, watcher: Watcher, restore: bool = True):
        self.watcher = watcher
        self.restore = restore  # put the previous handlers back when done (the CLI exits instead)
        self.check_requested = False
        self.stop_requested = False
        self._closing = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous: dict[int, object] = {}
        self._relay: threading.Thread | None = None

    # -- signal context: flags and one byte, nothing else ---------------------

    def on_hup(self, signum, frame) -> None:
        self.check_requested = True
        self._wake()

    def on_stop(self, signum, frame) -> None:
        self.stop_requested = True
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._write_fd, b"\0")
        except OSError:
            pass

    # -- the relay thread ------------------------------------------------------

    def _run_relay(self) -> None:
        while not self._closing:
            try:
                os.read(self._read_fd, 4096)  # a storm's bytes in a few reads
            except OSError:
                return
            if self.stop_requested and not self.watcher.stopping.is_set():
                self.watcher.stop()
            if self.check_requested:
                self.check_requested = False
                self.watcher.request_check("SIGHUP")

    # -- installing --------------------------------------------------------

    def __enter__(self) -> "Signals":
        self._relay = start_thread(self._run_relay, "signals")
        for signum, handler in zip(HANDLED_SIGNALS, (self.on_hup, self.on_stop, self.on_stop)):
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc) -> None:
        # Putting a handler back to SIG_DFL while a signal is on its way
        # races: CPython then raises "Signal N ignored due to race condition"
        # in the main thread, or SIGHUP's default kills a watch that stopped
        # cleanly.  Blocked first (every thread of ours blocks them already),
        # late signals wait in the kernel: the CLI ignores them from then on
        # (which discards them; Python's exit leaves SIG_IGN alone), tests
        # get their previous handlers back.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if self.restore else signal.SIG_IGN)
        if self.restore:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        self._closing = True
        self._wake()
        if self._relay is not None:
            self._relay.join(timeout=5)
            if self._relay.is_alive():  # it still reads the pipe: leave it open
                return
        os.close(self._read_fd)
        os.close(self._write_fd)


def run_watch(interval: float, as_json: bool, init: bool = True, metrics: tuple[str, int] | None = None) -> int:
    """METRICS: (address, port) to serve Prometheus metrics on (metrics.py), None for none."""
    measured = server = None
    if metrics is not None:
        from .blocklog import log_path
        from .metrics import Metrics, Server

        measured = Metrics(blocked_log=log_path())
        server = Server(measured, *metrics)  # before the watch starts: a port in use is one line, exit 2
    watcher = Watcher(Logger(as_json=as_json), interval=interval, init=init, metrics=measured)
    if server is not None:
        host, port = metrics
        watcher.log("info", f"metrics on http://{f'[{host}]' if ':' in host else host}:{port}/metrics")
    try:
        with Signals(watcher, restore=False):
            return watcher.run()
    finally:
        if server is not None:
            server.close()
