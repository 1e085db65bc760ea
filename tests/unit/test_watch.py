"""docker-fw watch under signals, outages, bugs and hostile names (no root, no engine).

The main loop and the listener run in simulated time (watch_fakes.SimClock):
an outage of minutes takes milliseconds, and a loop that stops waiting is
caught as one.  Batches are applied by the real Service over fakes.FakeEngine
and fakes.FakeFirewall with a real store.  The signal tests send real signals
to a watch process over the same fakes (watch_fakes.py run as a script).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from docker_fw import watch as watch_mod
from docker_fw.errors import EngineError, FirewallError
from docker_fw.model import AddressSpec, Kind, RuleSpec
from docker_fw.store import Store
from docker_fw.watch import Logger, Pending, Watcher
from fakes import FakeEngine, FakeFirewall
from watch_fakes import SimClock, StreamingEngine

UNIT_DIR = os.path.dirname(os.path.abspath(__file__))


class Lines:
    """A Logger's stream: the JSON lines it got, one entry per line."""

    def __init__(self):
        self.buffer = io.StringIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]

    def msgs(self, level: str | None = None) -> list[str]:
        return [e["msg"] for e in self.entries() if level is None or e["level"] == level]


def to_host_dns(owner: str) -> RuleSpec:
    return RuleSpec(owner=owner, kind=Kind.INPUT, source=AddressSpec.self_(), dest=AddressSpec.host(), proto="udp", dport=53)


@pytest.fixture
def state(tmp_path, monkeypatch):
    directory = tmp_path / "state"
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(directory))
    return directory


def record(*specs: RuleSpec) -> None:
    with Store.open() as store, store.transaction():
        for spec in specs:
            store.add(spec)


def make_watcher(engine, firewall=None, limit: float = 300.0, interval: float = 10.0):
    """A Watcher in simulated time that stops itself after `limit` seconds."""
    log = Lines()
    clock = SimClock()
    w = Watcher(Logger(as_json=True, stream=log), interval=interval, engine_factory=lambda: engine,
                firewall=firewall or FakeFirewall(), clock=clock)
    clock.limit, clock.on_limit = clock.now + limit, w.stop
    return w, clock, log


class AwayEngine:
    """engine.Engine with the engine gone: every call fails as Engine's do."""

    def __init__(self):
        self.calls = 0

    @property
    def api(self):
        self.calls += 1
        raise EngineError("cannot reach the Docker engine: Connection refused")

    def snapshot(self, refresh: bool = False):
        self.calls += 1
        raise EngineError("cannot reach the Docker engine (list networks): Connection refused")


# ============================================================================
# log lines: one per call, whatever a name holds
# ============================================================================

HOSTILE = (
    "web\n2030-01-01T00:00:00 docker-fw watch: info: forged"
    "\r\x1b[2K\x00\x7f\x85\x9b\u2028\u2029\u202e\u200b\x0b\x0c\x1c\ufeff\udcff\\x0a end"
)


def test_text_log_lines_escape_control_characters():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    Logger(stream=stream)("info", f"{HOSTILE} destroyed", container=HOSTILE, reason="network x create")
    stream.flush()
    text = raw.getvalue().decode("ascii")  # every non-printable character is escaped
    assert text.count("\n") == 1 and text.endswith("\n")
    assert len(text.splitlines()) == 1  # also no \x0b, \x85, U+2028... to split on
    assert "\\x0a2030-01-01" in text and "\\x1b[2K" in text and "\\u2028" in text and "\\udcff" in text
    assert "\\\\x0a end" in text  # a backslash in the name cannot pass for one of our escapes
    assert 'reason="network x create"' in text  # a space cannot start a forged field


def test_text_field_values_cannot_forge_fields():
    stream = io.StringIO()
    Logger(stream=stream)("info", "applied", containers="web reason=forged", events='a"b')
    line = stream.getvalue()
    assert ' containers="web reason=forged"' in line
    assert ' events="a\\"b"' in line
    assert " reason=forged" not in line.replace('"web reason=forged"', "")


def test_json_log_lines_are_one_line_and_keep_the_text():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    Logger(as_json=True, stream=stream)("info", HOSTILE, container=HOSTILE)
    stream.flush()
    text = raw.getvalue().decode("ascii")
    assert text.count("\n") == 1
    entry = json.loads(text)
    assert entry["msg"] == HOSTILE and entry["container"] == HOSTILE


def test_one_line_leaves_plain_text_alone():
    assert watch_mod.one_line("web: add (web): -A DOCKER-FW-INPUT -s 172.17.0.2/32 é ü") == "web: add (web): -A DOCKER-FW-INPUT -s 172.17.0.2/32 é ü"


def test_a_closed_log_stream_does_not_stop_watch():
    stream = io.StringIO()
    stream.close()
    Logger(stream=stream)("info", "still here")  # no exception


# ============================================================================
# signals: handlers set a flag and write a byte; a storm is a few reconciles
# ============================================================================


@pytest.fixture
def signals(tmp_path, state):
    w = Watcher(Logger(stream=Lines()), engine_factory=lambda: FakeEngine(tmp_path / "engine"), firewall=FakeFirewall())
    with watch_mod.Signals(w) as installed:
        yield w, installed


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signal_handlers_take_no_lock(signals, signum):
    """A handler runs between two bytecodes of the main thread, which may hold
    the queue's lock (inside put/get) or the logger's: a handler that wants
    either waits for itself forever.  Holding both, the installed handler
    must still return."""
    w, _ = signals
    handler = signal.getsignal(signum)
    with w.events.mutex, w.log._lock:
        called = threading.Thread(target=handler, args=(signum, None), daemon=True)
        called.start()
        called.join(timeout=10)
        assert not called.is_alive(), "the signal handler blocked on a lock"


def test_a_storm_of_sighup_makes_one_queued_request(signals):
    w, installed = signals
    for _ in range(10_000):
        installed.on_hup(signal.SIGHUP, None)
    deadline = time.monotonic() + 10
    while w.events.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let the relay go through the rest of the pipe
    queued = []
    while not w.events.empty():
        queued.append(w.events.get_nowait())
    assert queued == [("check", "SIGHUP", None)]


def test_sigterm_after_a_storm_stops(signals):
    w, installed = signals
    for _ in range(10_000):
        installed.on_hup(signal.SIGHUP, None)
    installed.on_stop(signal.SIGTERM, None)
    installed.on_stop(signal.SIGTERM, None)
    assert w.stopping.wait(10)


def test_sighup_reconciles_are_spaced(state, tmp_path):
    """However fast SIGHUPs come, full reconciles for them come at most once
    per SIGHUP_SPACING seconds."""
    engine = FakeEngine(tmp_path / "engine")
    w, clock, log = make_watcher(engine, limit=30.0, interval=3600)
    real_get = clock.get

    def get(inbox, timeout):  # a SIGHUP every 10 ms, all along
        clock._advance(0.01)
        w.request_check("SIGHUP")
        return real_get(inbox, timeout)

    clock.get = get
    assert w.loop() == 0
    assert not clock.spun
    hup = [e for e in log.entries() if e.get("reason") == "SIGHUP" and e["msg"].startswith("applied")]
    assert 10 <= len(hup) <= 30 / watch_mod.SIGHUP_SPACING + 1


def _start_child(tmp_path) -> tuple[subprocess.Popen, str]:
    log_path = str(tmp_path / "watch.log")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([UNIT_DIR, *sys.path]))
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, os.path.join(UNIT_DIR, "watch_fakes.py"), str(state_dir)],
                                 env=env, stderr=log, stdout=log)
    return child, log_path


def _entries(log_path: str) -> list[dict]:
    with open(log_path) as handle:
        return [json.loads(line) for line in handle if line.startswith("{")]


def _text(log_path: str) -> str:
    with open(log_path) as handle:
        return handle.read()


def _wait_for(child, log_path, predicate, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(_entries(log_path)):
        assert child.poll() is None, _text(log_path)
        assert time.monotonic() < deadline, _text(log_path)
        time.sleep(0.02)


def _applied(reason: str):
    return lambda entries: [e for e in entries if e.get("reason") == reason and e["msg"].startswith("applied")]


def test_a_real_sighup_storm_is_coalesced_and_sigterm_still_stops(tmp_path):
    """10,000 real SIGHUPs as fast as they can be sent: a few full reconciles,
    no deadlock, no RecursionError; then two SIGTERMs: a clean exit."""
    child, log_path = _start_child(tmp_path)
    try:
        _wait_for(child, log_path, _applied("startup"))
        started = time.monotonic()
        for _ in range(10_000):
            os.kill(child.pid, signal.SIGHUP)
        storm = time.monotonic() - started
        _wait_for(child, log_path, _applied("SIGHUP"))
        child.send_signal(signal.SIGTERM)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0, _text(log_path)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    entries = _entries(log_path)
    assert "Traceback" not in _text(log_path)
    assert 1 <= len(_applied("SIGHUP")(entries)) <= 2 + storm / watch_mod.SIGHUP_SPACING, _text(log_path)
    assert [e["msg"] for e in entries].count("stopped") == 1


def test_sigterm_during_a_sighup_storm_stops(tmp_path):
    child, log_path = _start_child(tmp_path)
    try:
        _wait_for(child, log_path, _applied("startup"))
        for n in range(5_000):
            os.kill(child.pid, signal.SIGTERM if n == 2_500 else signal.SIGHUP)
        assert child.wait(timeout=30) == 0, _text(log_path)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Traceback" not in _text(log_path)
    assert [e["msg"] for e in _entries(log_path)][-1] == "stopped"


# ============================================================================
# the engine away: backoff honoured, a few lines, no busy loop
# ============================================================================


def test_the_startup_reconcile_waits_for_the_event_stream(state, tmp_path):
    """Reconciled before the listener has subscribed, watch would miss what changes in
    between (a container started then would wait for the periodic check): the startup
    reconcile runs once the event stream is open, however slow that is to open."""
    engine = StreamingEngine(tmp_path / "engine")
    engine.add("web", state="running")
    order: list[str] = []
    real_events, real_snapshot = engine.events, engine.snapshot

    def events(**kwargs):
        time.sleep(0.3)  # a slow subscription, as loading the docker SDK makes it
        order.append("subscribed")
        return real_events(**kwargs)

    def snapshot(refresh: bool = False):
        order.append("snapshot")
        return real_snapshot(refresh)

    engine.events, engine.snapshot = events, snapshot
    log = Lines()
    w = Watcher(Logger(as_json=True, stream=log), interval=3600, engine_factory=lambda: engine, firewall=FakeFirewall())
    runner = threading.Thread(target=w.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not any(m.startswith("applied") for m in log.msgs()) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        w.stop()
        engine.close()
        runner.join(10)
    assert not runner.is_alive()
    assert order[:2] == ["subscribed", "snapshot"], order
    assert [e.get("reason") for e in log.entries() if e["msg"].startswith("applied")] == ["startup"]


def test_batches_back_off_while_the_engine_is_away(state):
    """No listener here: the main loop's own backoff.  Five simulated minutes
    of a refused engine: one attempt per backoff step, a few lines."""
    engine = AwayEngine()
    w, clock, log = make_watcher(engine, limit=300.0)
    assert w.loop() == 0
    assert not clock.spun, f"busy loop: {engine.calls} attempts"
    # 0.5, 1, 2, 4, 8, then every 10 s: about 33 attempts in 300 s
    assert 10 <= engine.calls <= 300 / 10 + 8
    errors = log.msgs("error")
    assert 3 <= len(errors) <= 8, errors
    assert errors[0].startswith("full reconcile (startup): cannot reach the Docker engine")
    assert "failed attempt(s)" in errors[-1]


def test_the_listener_backs_off_and_logs_a_few_lines_then_says_reconnected(state, tmp_path):
    engine = StreamingEngine(tmp_path / "engine")
    attempts = []
    back_at = 1000.0 + 600.0

    def factory():
        attempts.append(clock.now)
        if clock.now < back_at:
            raise EngineError("cannot reach the Docker engine: Connection refused")
        return engine

    w, clock, log = make_watcher(engine)
    w.engine_factory = factory
    engine.close()  # the stream, once open, ends at once
    clock.limit = back_at + 15  # the last failed attempt waits 10 s at most
    w.listen()
    assert not clock.spun
    # 0.5, 1, 2, 4, 8, then every 10 s: about 62 attempts in 600 s
    assert 40 <= len([t for t in attempts if t < back_at]) <= 600 / 10 + 8
    warnings = log.msgs("warning")
    assert 4 <= len(warnings) <= 9, warnings
    assert warnings[0] == "cannot reach the Docker engine: Connection refused; retrying in 0.5s"
    said = log.msgs("info")
    assert len(said) == 1 and said[0].startswith(f"connected to the engine after {len(attempts) - 1} failed attempt(s) over ")
    messages = []
    while not w.events.empty():
        messages.append(w.events.get_nowait()[:2])
    assert messages[0] == ("disconnected", "cannot reach the Docker engine: Connection refused")
    assert ("connected", "") in messages


def test_a_stream_that_keeps_dropping_is_retried_with_backoff(state, tmp_path):
    """An engine that accepts the event stream and ends it at once: backoff
    is not reset by such a connection."""
    engine = StreamingEngine(tmp_path / "engine")
    w, clock, log = make_watcher(engine, limit=300.0)
    for _ in range(1000):
        engine.close()  # each stream ends at once
    w.listen()
    assert not clock.spun
    assert engine.streams <= 300 / 10 + 8
    assert len(log.entries()) <= 2 * 8, log.msgs()


def test_no_batch_is_tried_while_the_listener_says_the_engine_is_away(state, tmp_path):
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running")
    record(to_host_dns("web"))
    w, clock, log = make_watcher(engine, limit=120.0)
    w.events.put(("disconnected", "cannot reach the Docker engine", None))
    snapshots: list[float] = []
    real_snapshot, real_get = engine.snapshot, clock.get

    def snapshot(refresh: bool = False):
        snapshots.append(clock.now)
        return real_snapshot(refresh)

    def get(inbox, timeout):  # the engine is back after a minute
        if clock.now >= 1060.0 and not snapshots and w._engine_away and inbox.empty():
            inbox.put(("connected", "reconnected to the engine", None))
        return real_get(inbox, timeout)

    engine.snapshot, clock.get = snapshot, get
    assert w.loop() == 0
    assert not clock.spun
    assert snapshots and min(snapshots) >= 1060.0  # nothing was tried while it was away
    applied = [e for e in log.entries() if e["msg"].startswith("applied")]
    assert applied[0]["reason"] == "reconnected to the engine"  # the startup reconcile waited for it
    assert len(w.firewall.ours("web")) == 1
    assert log.msgs("error") == []


def test_the_engine_coming_back_is_a_full_reconcile_at_once(state, tmp_path):
    engine = FakeEngine(tmp_path / "engine")
    w, clock, log = make_watcher(engine, limit=120.0)
    real_get = clock.get

    def get(inbox, timeout):  # after startup: away for a minute, then back
        if 1010 <= clock.now and not steps:
            steps.append("away")
            inbox.put(("disconnected", "the engine closed the event stream", None))
        elif 1070 <= clock.now and len(steps) == 1:
            steps.append("back")
            inbox.put(("connected", "reconnected to the engine", None))
        return real_get(inbox, timeout)

    steps: list[str] = []
    clock.get = get
    assert w.loop() == 0
    reasons = [e["reason"] for e in log.entries() if e["msg"].startswith("applied")]
    assert reasons == ["startup", "reconnected to the engine"]


def test_retry_delays_are_capped_and_never_overflow():
    retry = watch_mod.Retry(SimClock())
    delays, logged = [], []
    for n in range(1, 5001):
        delays.append(retry.failed())
        if retry.worth_a_line:
            logged.append(n)
    assert delays[:6] == [0.5, 1, 2, 4, 8, 10] and max(delays) == 10
    assert logged[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 192] and len(logged) < 100


# ============================================================================
# a failing batch: one line, backoff, and the other containers go on
# ============================================================================


class BuggyFirewall(FakeFirewall):
    """iptables-save that fails with a bug (not a DockerFwError) `bugs` times."""

    def __init__(self, bugs: int):
        super().__init__()
        self.bugs = bugs

    def save(self, table: str = "filter"):
        if self.bugs:
            self.bugs -= 1
            raise KeyError("chain")
        return super().save(table)


def test_a_bug_in_a_batch_does_not_stop_watch(state, tmp_path):
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running")
    record(to_host_dns("web"))
    firewall = BuggyFirewall(bugs=6)
    w, clock, log = make_watcher(engine, firewall=firewall, limit=120.0)
    assert w.loop() == 0
    assert not clock.spun
    errors = log.msgs("error")
    assert "KeyError: 'chain' at test_watch.py:" in errors[0] and " in save" in errors[0]
    assert 1 <= len(errors) <= 3, errors  # a line for failures 1, 2 and 4, at most
    assert any(m.startswith("applied again after ") for m in log.msgs("info")), log.msgs()
    assert len(firewall.ours("web")) == 1


class RefusingFirewall(FakeFirewall):
    """iptables-restore refusing any batch that holds a line of `refused`
    (as it would a line built from data it cannot take)."""

    def __init__(self, refused: str, error: Exception):
        super().__init__()
        self.refused, self.error = refused, error

    def restore(self, table, lines, *args, **kwargs):
        if any(f"docker-fw:{self.refused}:" in line for line in lines):
            raise self.error
        super().restore(table, lines, *args, **kwargs)


@pytest.mark.parametrize("error", [FirewallError("iptables-restore: line 3 failed"), ValueError("a bug")],
                         ids=["refused", "bug"])
@pytest.mark.parametrize("batch", ["startup", "event"])
def test_one_failing_container_does_not_hold_back_the_others(state, tmp_path, error, batch):
    engine = StreamingEngine(tmp_path / "engine")
    for name in ("db", "web"):
        engine.add(name, state="running")
    record(to_host_dns("db"), to_host_dns("web"))
    firewall = RefusingFirewall("db", error)
    w, clock, log = make_watcher(engine, firewall=firewall, limit=60.0)
    if batch == "event":
        firewall.refused = "nobody"
        w.events.put(("connected", "", None))
        real_get = clock.get

        def get(inbox, timeout):  # after startup: both restart elsewhere
            if not moved and clock.now > 1001:
                moved.append(True)
                firewall.refused = "db"
                for name, ip in (("db", "172.17.0.50"), ("web", "172.17.0.51")):
                    engine.move(name, "bridge", ip)
                    inbox.put(("event", "", {"Type": "container", "Action": "start",
                                             "Actor": {"Attributes": {"name": name}}}))
            return real_get(inbox, timeout)

        moved: list = []
        clock.get = get
    assert w.loop() == 0
    assert not clock.spun
    address = "172.17.0.51/32" if batch == "event" else "172.17.0.11/32"
    assert [address in r.args for r in firewall.ours("web")] == [True]
    errors = log.msgs("error")
    assert errors and all("db" in e for e in errors), errors
    assert any("applied container by container, retrying db in" in e for e in errors), errors
    assert len(errors) <= 2 * 8  # db fails all along: a few lines


class HungFirewall(FakeFirewall):
    """iptables-restore that hangs until its deadline (30 s of simulated time), then fails."""

    def __init__(self, clock: SimClock):
        super().__init__()
        self.clock = clock
        self.restores = 0

    def restore(self, table, lines, *args, **kwargs):
        self.restores += 1
        self.clock.now += 30.0
        raise FirewallError("'iptables-restore --wait --noflush' did not finish within 30s and was killed")


def test_a_batch_that_ran_into_a_deadline_is_not_split(state, tmp_path):
    engine = FakeEngine(tmp_path / "engine")
    for name in ("db", "web", "app"):
        engine.add(name, state="running")
    record(to_host_dns("db"), to_host_dns("web"), to_host_dns("app"))
    w, clock, log = make_watcher(engine, limit=300.0)
    w.firewall = HungFirewall(clock)
    assert w.loop() == 0
    # one restore per attempt (each 30 s, then the backoff): not one per container as well
    errors = log.msgs("error")
    assert w.firewall.restores <= 300 / 30 + 1
    assert errors and not any("container by container" in e for e in errors), errors


def test_a_malformed_event_is_skipped(state, tmp_path):
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running")
    w, clock, log = make_watcher(engine, limit=30.0)
    pending = Pending()
    for event in ("not an event",
                  {"Type": "container", "Action": "start", "Actor": ["x"]},
                  {"Type": "container", "Action": 7, "Actor": []},
                  {"Type": "container", "Action": "start", "Actor": {"Attributes": {"name": ["x"]}}},
                  {"Type": "container", "Action": "start", "Actor": {"Attributes": {"name": "web"}}, "timeNano": "x"}):
        w._collect(pending, "event", "", event)
    assert pending.names == {"web"}
    warnings = log.msgs("warning")
    assert len(warnings) == 2 and all(m.startswith("ignored an engine event: AttributeError") for m in warnings)


# ============================================================================
# --interval, --days: finite and in range
# ============================================================================


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-1", "0.01", "86401", "ten", ""])
def test_watch_interval_must_be_finite_and_in_range(state, monkeypatch, value):
    from docker_fw import cli

    monkeypatch.setattr(watch_mod, "run_watch", lambda **_: pytest.fail("watch ran"))
    err: list[str] = []
    assert cli.run(["watch", "--interval", value], out=lambda s: None, err=err.append) == 2
    assert len(err) == 1 and "\n" not in err[0]
    assert err[0].startswith("docker-fw watch: ") and "--interval" in err[0]
    if value not in ("ten", "", "-inf"):  # argparse's own: not a float, or taken for an option
        assert err[0].startswith("docker-fw watch: --interval must be 0.1 to 86400 seconds, not ")
    assert not state.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e308", "36501"])
def test_gc_days_must_be_finite_and_in_range(state, value):
    from docker_fw import cli

    err: list[str] = []
    assert cli.run(["gc", "--days", value], out=lambda s: None, err=err.append) == 2
    assert len(err) == 1 and err[0].startswith("docker-fw gc: --days must be 0 to 36500 days, not ")
    assert not state.exists()


def test_interval_bounds_are_accepted():
    from docker_fw import cli

    parser = cli.build_parser()
    assert parser.parse_args(["watch", "--interval", "0.1"]).interval == 0.1
    assert parser.parse_args(["watch", "--interval", "86400"]).interval == 86400
    assert parser.parse_args(["gc", "--days", "0"]).days == 0
