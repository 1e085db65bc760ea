"""'ls': the record printed as the commands that re-create it.

Needs the store (and the engine: for a name the store does not know, and for
the rules of containers' docker-fw.rules labels; without it, those are left out with a warning), so
cli.run() runs it without the service layer, the firewall backends or the
engine's module (Command.needs_engine False): they are what an 'ls' would
otherwise spend most of its time loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .model import AddressKind, Kind, RuleSpec

TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:  # annotations only: 'ls' loads neither the service layer nor the engine module
    from .service.core import EngineFacts as EngineSnapshots  # only .snapshot() is used
    from .store import Store


def owner_names(store: Store, engine: EngineSnapshots, refs: Iterable[str]) -> list[str]:
    """Container references as recorded: names (the store's first, then the engine's).

    A name the store knows works even when the container no longer exists,
    and then the engine is not asked at all.
    """
    recorded = set(store.owners())
    return [
        ref if ref in recorded else engine.snapshot().get(ref).name
        for ref in (r.lstrip("/") for r in refs)
    ]


def listed(store: Store, engine: EngineSnapshots, containers: list[str]) -> list[str]:
    """The recorded rules and egress policies of CONTAINERS (all when none is
    named), one command line each: the rules, then the policies."""
    lines = [spec.describe(action) for spec, action in listed_rules(store, engine, containers)]
    owners = owner_names(store, engine, containers) if containers else None
    return lines + [policy.command(owner) for owner, policy in store.egress(owners).items()]


def listed_rules(store: Store, engine: EngineSnapshots, containers: list[str]) -> list[tuple[RuleSpec, str]]:
    """The recorded rules of CONTAINERS (all when none is named), each with the
    action 'ls' prints it with."""
    owners = owner_names(store, engine, containers) if containers else None
    entries = store.host_entries()
    return [(spec, action_of(spec, entries)) for spec in store.rules(owners)]


def action_of(spec: RuleSpec, host_entries: dict[str, list[str]]) -> str:
    """The action 'ls' (and 'graph') prints a rule as.  An add-internal rule that
    gave its source a hosts line for the owner was recorded by add-two-ways:
    printed as such, running the line again restores the hosts entry too."""
    if spec.kind is Kind.INTERNAL and spec.source.kind is AddressKind.CONTAINER:
        if spec.owner in host_entries.get(spec.source.value, []):
            return "add-two-ways"
    return spec.kind.action


def say_nothing(_: str) -> None:
    pass


class Records:
    """What a command that needs no firewall runs with, in place of actions.Service."""

    def __init__(self, engine: EngineSnapshots, store: Store, out: Callable[[str], None] = print,
                 warn: Callable[[str], None] = say_nothing):
        self.engine, self.store, self.out, self.warn = engine, store, out, warn

    def ls(self, containers: list[str]) -> list[str]:
        lines = listed(self.store, self.engine, containers) + self.label_lines(containers)
        for line in lines:
            self.out(line)
        return lines

    def label_lines(self, containers: list[str]) -> list[str]:
        """'ls' of containers' docker-fw.rules labels: comments (the label re-creates
        them, not the line) naming the label's line.  Without an engine: none, said."""
        rules, locks = self.ls_labels(containers)
        return [rule.describe() for rule in rules] + [lock.describe() for lock in locks]

    def ls_labels(self, containers: list[str]) -> tuple[list, list]:
        """The label rules (labels.LabelledRule) and locks (labels.LabelledLock) of
        CONTAINERS (all when none is named), the refused labels warned about.
        Without an engine: none, said."""
        from .errors import EngineError
        from .labels import RULES_LABEL, read_labels

        try:
            labelled = read_labels(self.engine.snapshot())
        except EngineError as exc:
            self.warn(f"rules of containers' {RULES_LABEL} labels not listed: {exc}")
            return [], []
        scope = set(owner_names(self.store, self.engine, containers)) if containers else None
        for message in labelled.errors(scope):
            self.warn(message)
        return [r for r in labelled.rules if scope is None or r.spec.owner in scope], labelled.locked(scope)

    def ls_rules(self, containers: list[str]) -> list[tuple[RuleSpec, str]]:
        """What 'ls --json' prints: each rule with the action 'ls' prints it with."""
        return listed_rules(self.store, self.engine, containers)

    def ls_egress(self, containers: list[str]) -> dict:
        """What 'ls --json' prints of egress policies: container -> policy."""
        owners = owner_names(self.store, self.engine, containers) if containers else None
        return self.store.egress(owners)
