"""watch --metrics ADDR:PORT: Prometheus metrics of a running watch (prometheus_client).

Off by default.  What is measured happens in watch's main thread (after each
batch, see Metrics.applied); the HTTP server only reads it, in a daemon
thread of its own that blocks watch's signals (they go to the main thread,
whose handlers only set a flag) and never holds watch back: stopping it is
bounded (serve_forever looks at its stop flag every half second), and a
client that never finishes its request keeps only its own daemon thread.

Metrics (the README lists them with an example scrape):

- docker_fw_rules{family}: the rules docker-fw holds in the firewall (its tagged
  rules in its chains, read with iptables-save after each batch);
- docker_fw_recorded_rules: the rules in the record; docker_fw_withdrawn_rules:
  those the last full reconcile could not apply (a container stopped, ...);
- docker_fw_rule_changes_total{verb}: changes applied (add, insert, delete, create);
- docker_fw_repairs_total: changes made by full reconciles (startup, periodic
  check, SIGHUP, the engine back, a network created or removed): drift repaired;
- docker_fw_batches_total{result}: batches applied (ok) or failed;
- docker_fw_batch_seconds: histogram of how long a batch took;
- docker_fw_blocked_connections_total{container}: connections logged as blocked
  ('init --log-blocked'), by the container they were going to ('' for an address
  no container holds), counted from ulogd2's file as it grows (so rate-limited
  as the log is).
"""

from __future__ import annotations

import ipaddress
import re
import signal
import threading
from typing import TYPE_CHECKING

from .errors import FirewallError, UsageError

if TYPE_CHECKING:
    from .transaction import Plan

_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9101' or '[::1]:9101' -> (address, port); UsageError otherwise.

    Literal addresses only (no host names: no DNS at startup, nothing that
    resolves to more than was meant); the port 1-65535.
    """
    usage = f"--metrics must be ADDR:PORT, ADDR an IPv4 address or an IPv6 one in brackets, PORT 1-65535: {text!r}"
    address, sep, port = text.rpartition(":")
    if not sep or not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise UsageError(usage)
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
        version = 6
    else:
        version = 4
    if not re.fullmatch(r"[0-9a-fA-F:.]{2,45}", address):
        raise UsageError(usage)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(usage) from None
    if parsed.version != version:
        raise UsageError(usage)
    return str(parsed), int(port)


def count_rules(runner) -> int | None:
    """docker-fw's tagged rules in its chains of one iptables family; None: not in use."""
    from .backends.iptables.reconcile import our_rules

    try:
        table = runner.save()
    except FirewallError:
        return None
    return sum(len(rules) for rules in our_rules(table).values())


class BlockedCollector:
    """docker_fw_blocked_connections_total, read from ulogd2's file at each scrape."""

    def __init__(self, path: str):
        self.path = path
        self.names: dict[str, str] = {}  # address -> container: replaced whole by watch's main thread
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()  # scrapes may come together
        self._reader = self._open(tail_bytes=0)  # counted from now: what the file held is not this watch's

    def _open(self, tail_bytes: int | None = None):
        from .blocklog import TAIL_BYTES, LogReader

        try:
            return LogReader(self.path, tail_bytes=TAIL_BYTES if tail_bytes is None else tail_bytes)
        except FirewallError:
            return None  # no file (yet): logging is off, or ulogd2 has not written

    def _read(self) -> None:
        if self._reader is None:
            # made since watch started: all of it is new (its last TAIL_BYTES: bounded)
            self._reader = self._open()
            if self._reader is None:
                return
        names = self.names
        for event in self._reader.events():
            container = names.get(event.dest, "")
            self._counts[container] = self._counts.get(container, 0) + 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "docker_fw_blocked_connections",
            "New connections the whitelist dropped and logged (rate-limited), by the container they went to",
            labels=["container"],
        )
        with self._lock:
            try:
                self._read()
            except OSError:
                self._reader = None  # gone or unreadable: open it again at the next scrape
            for container, count in sorted(self._counts.items()):
                family.add_metric([container], count)
        yield family


class Metrics:
    """What watch measures, in a registry of its own, served over HTTP by serve()."""

    def __init__(self, blocked_log: str | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.rules = Gauge("docker_fw_rules", "Rules docker-fw holds in the firewall", ["family"], registry=r)
        self.recorded = Gauge("docker_fw_recorded_rules", "Rules in docker-fw's record", registry=r)
        self.withdrawn = Gauge("docker_fw_withdrawn_rules",
                               "Recorded rules the last full reconcile could not apply", registry=r)
        self.changes = Counter("docker_fw_rule_changes", "Firewall changes applied", ["verb"], registry=r)
        self.repairs = Counter("docker_fw_repairs", "Changes made by full reconciles (drift repaired)", registry=r)
        self.batches = Counter("docker_fw_batches", "Batches applied or failed", ["result"], registry=r)
        self.latency = Histogram("docker_fw_batch_seconds", "How long applying one batch took",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        for result in ("ok", "failed"):
            self.batches.labels(result)
        self.blocked = None
        if blocked_log:
            self.blocked = BlockedCollector(blocked_log)
            r.register(self.blocked)

    def applied(self, watcher, plan: Plan, seconds: float, full: bool) -> None:
        """After a batch was applied (watch's main thread)."""
        self.batches.labels("ok").inc()
        self.latency.observe(seconds)
        for change in plan.changes:
            self.changes.labels(change.verb).inc()
        if full:
            self.repairs.inc(len(plan.changes))
            self.withdrawn.set(len(plan.withdrawn))
        for family, runner in ((4, watcher.firewall), (6, watcher.firewall6)):
            count = count_rules(runner) if runner is not None else None
            if count is not None:
                self.rules.labels(str(family)).set(count)
        from .store import Store

        try:
            with Store.open(read_only=True) as store:
                self.recorded.set(len(store.rules()))
        except Exception:  # noqa: BLE001 (a metric is not worth stopping watch for)
            pass
        if self.blocked is not None:
            from .blocklog import addresses_of

            self.blocked.names = addresses_of(watcher.engine.snapshot())

    def failed(self, seconds: float) -> None:
        self.batches.labels("failed").inc()
        self.latency.observe(seconds)


class Server:
    """The HTTP server of the metrics, in a daemon thread blocking watch's signals."""

    def __init__(self, metrics: Metrics, address: str, port: int):
        from prometheus_client import start_http_server

        from .watch import HANDLED_SIGNALS

        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:  # the server's thread starts with this mask: signals stay the main thread's
            self.httpd, self.thread = start_http_server(port, addr=address, registry=metrics.registry)
        except OSError as exc:
            shown = f"[{address}]" if ":" in address else address
            raise UsageError(f"--metrics {shown}:{port}: cannot listen there: {exc.strerror}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def close(self, timeout: float = 5.0) -> None:
        stopper = threading.Thread(target=self.httpd.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)  # bounded: watch exits all the same (the thread is a daemon)
        self.httpd.server_close()
