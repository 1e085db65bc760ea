"""Stand-ins for the tests of docker-fw watch (test_watch.py).

- ``SimClock`` is a ``watch.Clock`` in simulated time: waiting returns at once
  and moves the time on, so minutes of an outage take milliseconds, and a loop
  that does not wait shows up as a loop in which time does not pass.
- ``StreamingEngine`` is a ``fakes.FakeEngine`` with what ``Watcher.listen``
  uses of ``engine.Engine``: ``api.events(decode=, filters=)``, an iterator of
  event dicts, here fed by ``emit()`` until ``close()``.
- Run as a script (``python watch_fakes.py STATE_DIR``), this is a watch
  process over those fakes (real store, signal handlers as ``run_watch``
  installs them, JSON log on stderr), for the tests that send it real signals.
"""

from __future__ import annotations

import os
import queue
import sys
import threading

from docker_fw.watch import Logger, Watcher
from fakes import FakeEngine, FakeFirewall


class SimClock:
    """watch.Clock (monotonic, wait, get) in simulated time.  ``limit``: when the time reaches it, ``on_limit()`` is
    called (a test stops the watcher there).  A loop that keeps asking without
    ever waiting (``max_still`` calls in a row while the time stands still) is
    a busy loop: it is recorded in ``spun`` and ended through ``on_limit()``,
    so a regression fails its test instead of hanging it."""

    def __init__(self, limit: float = float("inf"), on_limit=lambda: None, max_still: int = 10_000):
        self.now = 1000.0
        self.limit = limit
        self.on_limit = on_limit
        self.max_still = max_still
        self.still = 0
        self.spun = False
        self.waited = 0.0  # simulated seconds spent waiting, in total

    def _advance(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds
            self.waited += seconds
            self.still = 0
        else:
            self.still += 1
            if self.still >= self.max_still and not self.spun:
                self.spun = True
                self.on_limit()
        if self.now >= self.limit:
            self.limit = float("inf")
            self.on_limit()

    def monotonic(self) -> float:
        return self.now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if not event.is_set():
            self._advance(timeout)
        return event.is_set()

    def get(self, inbox: queue.Queue, timeout: float):
        try:
            return inbox.get_nowait()
        except queue.Empty:
            self._advance(timeout)
            raise


class StreamingEngine(FakeEngine):
    """A FakeEngine whose event stream the test drives."""

    def __init__(self, root):
        super().__init__(root)
        self.streams = 0  # event streams opened
        self._events: queue.Queue = queue.Queue()

    @property
    def api(self) -> "StreamingEngine":
        return self

    def events(self, decode: bool = True, filters: dict | None = None):
        self.streams += 1
        return iter(self._events.get, None)  # until close()

    def emit(self, event: dict) -> None:
        self._events.put(event)

    def close(self) -> None:
        self._events.put(None)


def main(state_dir: str) -> int:
    from docker_fw.watch import Signals

    os.environ["DOCKER_FW_STATE_DIR"] = state_dir
    engine = StreamingEngine(os.path.join(state_dir, "..", "engine"))
    engine.add("web", state="running")
    watcher = Watcher(Logger(as_json=True), interval=3600, engine_factory=lambda: engine, firewall=FakeFirewall())
    with Signals(watcher, restore=False):  # as run_watch
        return watcher.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
