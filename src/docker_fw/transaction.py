"""One change of the firewall, all-or-nothing together with the record.

firewalld style: a transaction holds the batch of every backend (planned
against what that backend read), the steps that may run only once every
backend accepted its batch (rewriting hosts files; the store commits last),
and what to do when a later step fails after a kernel took its batch (bring
the kernel back in line with the record, which is rolled back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from .values import dataclass, field

from .backends import Change, FirewallBackend, Live
from .errors import DockerFwError
from .model import RuleSpec
from .store import Store

Step = Callable[[], None]


@dataclass
class Plan:
    """What an action changed (or, in a dry run, would change): for reports."""

    changes: list[Change] = field(default_factory=list)
    # Recorded rules left out (not applied, and removed if present) because a
    # container they name is not running: its old address may be handed to
    # another container.
    withdrawn: list[tuple[RuleSpec, str]] = field(default_factory=list)
    # Those of them that cannot come back by themselves (a recorded filter
    # this version refuses, a rule a backend cannot express): 'check' drift.
    refused: list[tuple[RuleSpec, str]] = field(default_factory=list)
    # Containers whose /etc/hosts must be rewritten (add-two-ways entries).
    hosts: list[str] = field(default_factory=list)
    # (container, why) for hosts files that could not be read or written: the
    # rest of the plan went ahead without them (see Service._apply_hosts).
    hosts_failed: list[tuple[str, str]] = field(default_factory=list)
    # Why rules of a backend that is not in use were left out (one note each).
    unmanaged: list[str] = field(default_factory=list)
    # Containers' docker-fw.rules labels refused (none of their rules applied), one line each.
    label_errors: list[str] = field(default_factory=list)
    # Rules that were applied but change nothing (an internal allow on an icc network).
    no_effect: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes or self.hosts)

    def extend(self, changes: list[Change]) -> None:
        self.changes.extend(changes)


class Transaction:
    """The batches of one change, each for the backend that read its live state."""

    def __init__(self, backends: Sequence[FirewallBackend]):
        self.backends = list(backends)
        self._live: dict[int, Live | None] = {}
        self.batches: list[tuple[FirewallBackend, list[Change]]] = []
        self._after_apply: list[Step] = []
        self._on_failure: list[Step] = []
        self.applied = False  # True once a backend took its batch

    def live(self, backend: FirewallBackend) -> Live | None:
        """What the backend read (once per transaction): what its batch is planned against."""
        key = id(backend)
        if key not in self._live:
            self._live[key] = backend.read()
        return self._live[key]

    def in_use(self) -> list[tuple[FirewallBackend, Live]]:
        """The backends in use here, each with what it read."""
        return [(b, live) for b in self.backends if (live := self.live(b)) is not None]

    def add(self, backend: FirewallBackend, changes: list[Change], live: Live | None = None) -> None:
        """CHANGES for BACKEND; LIVE: what they were planned against, when it was not
        read through live() (the leftovers of another firewall backend)."""
        if live is not None:
            self._live[id(backend)] = live
        self.batches.append((backend, list(changes)))

    def after_apply(self, step: Step) -> None:
        """Run STEP once every backend took its batch (before the store commits)."""
        self._after_apply.append(step)

    def on_failure(self, step: Step) -> None:
        """Run STEP (after the store rolled back) when the change fails once a kernel took a batch."""
        self._on_failure.append(step)

    def apply(self) -> None:
        """Every backend's batch, in order, then the steps that wait for them."""
        for backend, changes in self.batches:
            backend.apply(self.live(backend), changes)
            self.applied = True
        for step in self._after_apply:
            step()

    def compensate(self) -> None:
        for step in self._on_failure:
            with contextlib.suppress(DockerFwError):
                step()


@contextlib.contextmanager
def transaction(backends: Sequence[FirewallBackend], store: Store | None) -> Iterator[Transaction]:
    """A transaction whose batches apply when the block ends, and the store
    (when given) commits only if they all did."""
    tx = Transaction(backends)
    try:
        with store.transaction() if store is not None else contextlib.nullcontext():
            yield tx
            tx.apply()
    except DockerFwError:
        if tx.applied:
            tx.compensate()
        raise
