"""Rules declared with the containers: the ``docker-fw.rules`` label.

A container's label holds lines; each one that is not blank and not a '#'
comment is one rule for this container in the ``--from`` grammar, action
first and no container (rulegrammar.parse_label_line).  The label is the
source of truth: its rules are read from the engine's container list every
time rules are applied, never copied into the store, so that re-creating the
container with another label (``docker compose up -d``) changes them and
removing it (``docker compose down``) leaves nothing behind.

A label's value is hostile input (whoever may start a container writes it):
it is bounded (MAX_LABEL_BYTES, MAX_LABEL_LINES), checked by the same
allow-list grammar as the command line, and applied whole or not at all: one
bad line and none of that container's label rules are applied (it stays
closed), with an error naming the container and the line.  A bad label
never stops anything else: the other containers' rules are applied.

A line ``egress deny`` locks the container's outbound traffic as ``docker-fw
egress NAME deny`` does (egress.py), the label being the record of that lock
too; ``egress allow`` (Docker's default) is accepted and asks for nothing: it
never lifts a lock recorded on the host.  Whole or nothing holds for the lock
as for the rules, but failing closed means *more* lock, not less: a refused
label still locks its container when it may have asked for a lock
(``asks_lock``), so a typo elsewhere never leaves a locked container open.

Names in ``--source``/``--dest`` are looked up first as a service of the
owner's Compose project (label ``com.docker.compose.project``), which stands
for every container of that service (each replica of a scaled one), then as
a container name.

Pure: works on an ``engine.Snapshot``, so it is unit tested without an engine.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable
from .values import dataclass, replace

from .errors import DockerFwError, UsageError
from .model import AddressKind, AddressSpec, EgressPolicy, Kind, RuleSpec
from .rulegrammar import (
    AllowRequest, EgressRequest, LabelRule, Origin, allow_addresses, allow_requests, checked_lines,
    checked_spec, parse_label_line, validate,
)

TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:  # annotations only: the engine module is loaded by who asks it
    from .engine import Container, Snapshot

RULES_LABEL = "docker-fw.rules"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
READ_LABELS = (RULES_LABEL, COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL)  # the engine keeps only these

# A label larger than this is refused whole, without being parsed: a label is
# typed by people, a few rules; the bounds keep a hostile one from costing
# more than a --from file of the same size.
MAX_LABEL_BYTES = 16 * 1024
MAX_LABEL_LINES = 200

ICC_OPTION = "com.docker.network.bridge.enable_icc"


@dataclass(frozen=True)
class LabelledRule:
    """One rule a container's label asks for, as applied today.

    ``peer`` is the name the line wrote in --source/--dest ('' when it names
    no container) and ``service`` the (project, service) it stood for, when
    it named a service of the owner's Compose project: a replica of that
    service that starts or stops changes this rule's peers.
    """

    spec: RuleSpec
    action: str  # as written: add, add-input, add-internal, add-two-ways, allow
    origin: Origin
    peer: str = ""
    service: tuple[str, str] | None = None

    def describe(self) -> str:
        """How 'ls' prints it: a comment (the label re-creates it, not a command),
        naming the label's line, then the command it amounts to."""
        return f"# {self.spec.owner}: {self.origin}: {self.spec.describe(self.action)}"


@dataclass(frozen=True)
class LabelledLock:
    """A container's label asking for its egress lock ('egress deny' on ORIGIN's
    line), or a refused label locking it because it may have (``refused``: why).

    Stands where an egress.EgressSpec stands in a plan's withdrawn list."""

    owner: str
    origin: Origin
    refused: str = ""

    policy = EgressPolicy.DENY

    def describe(self, action: str | None = None) -> str:
        """How 'ls' prints it, as its label rules: a comment naming the line (or,
        refused, the label) and the command the lock amounts to."""
        where = str(self.origin) if self.origin.line else f"label {self.origin.name} (refused)"
        return f"# {self.owner}: {where}: {self.policy.command(self.owner)}"


@dataclass(frozen=True)
class LabelRules:
    """Every container's label rules and locks in one snapshot, and the labels refused."""

    rules: tuple[LabelledRule, ...] = ()
    # owner -> why its label was refused (one line, naming container and line)
    refused: tuple[tuple[str, str], ...] = ()
    owners: frozenset[str] = frozenset()  # containers whose label holds rules or a lock
    locks: tuple[LabelledLock, ...] = ()

    def locked(self, scope: set[str] | None) -> list[LabelledLock]:
        return [lock for lock in self.locks if scope is None or lock.owner in scope]

    def specs(self, scope: set[str] | None) -> list[RuleSpec]:
        return [r.spec for r in self.rules if scope is None or r.spec.owner in scope]

    def errors(self, scope: set[str] | None) -> list[str]:
        return [message for owner, message in self.refused if scope is None or owner in scope]

    def of(self, owner: str) -> list[LabelledRule]:
        return [r for r in self.rules if r.spec.owner == owner]

    def referrers(self, names: Iterable[str], snapshot: Snapshot) -> set[str]:
        """Owners of label rules that name one of these containers, or their
        service: a replica that starts or stops changes its service's rules.

        A name the snapshot no longer holds (a container removed before its
        event was handled) may have been any service's replica: every owner
        of a rule naming a container is replayed, so that no rule is left
        pointing at its old address.
        """
        names = set(names)
        services: set[tuple[str, str]] = set()
        for name in names:
            container = snapshot.find(name)
            if container is None:
                return {r.spec.owner for r in self.rules if r.peer}
            service = compose_service(container)
            if service is not None:
                services.add(service)
        return {
            r.spec.owner for r in self.rules
            if r.peer and (_peer_name(r.spec) in names or r.peer in names or r.service in services)
        }


def compose_service(container: Container) -> tuple[str, str] | None:
    """(project, service) of a container Compose made, else None."""
    project, service = container.label(COMPOSE_PROJECT_LABEL), container.label(COMPOSE_SERVICE_LABEL)
    return (project, service) if project and service else None


def _peer_name(spec: RuleSpec) -> str:
    side = spec.source if spec.source.kind is AddressKind.CONTAINER else spec.dest
    return side.value if side.kind is AddressKind.CONTAINER else ""


def _origin(line: int) -> Origin:
    return Origin.label(RULES_LABEL, line)


def _scanned_words(line: str) -> list[str]:
    """LINE's words as the grammar's shell-like split reads them (quotes, escapes),
    each split again at whitespace (a quoted "egress deny" is two words here);
    a line shlex refuses (an open quote) split with its quotes and escapes dropped."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = [line.replace("'", " ").replace('"', " ").replace("\\", "")]
    return [part for word in words for part in word.split()]


@functools.lru_cache(maxsize=256)  # as parse_label: 'watch' reads a refused label at every batch
def asks_lock(value: object) -> int | None:
    """Where a label docker-fw refused may ask for an egress lock: the number of
    the first line that is not a comment and whose first word (quotes aside)
    is 'egress', unless it reads exactly 'egress allow'; 0 when the label
    cannot be told apart (not text, larger than MAX_LABEL_BYTES, more than
    MAX_LABEL_LINES lines); None when no line can be an egress line.

    Failing closed: a label refused for a bad line elsewhere still locks its
    container if it asked for a lock, and one that is refused for its egress
    line itself ('egress dney', 'egress deny now') is locked too.  A line that
    names no egress (a typo in its first word, 'egres deny') is not guessed at.
    """
    if not isinstance(value, str):
        return 0
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return 0
    lines = data.split(b"\n")
    if len(data) > MAX_LABEL_BYTES or len(lines) > MAX_LABEL_LINES + 1:
        return 0
    for number, raw in enumerate(lines, 1):
        # Split again wherever something might show a new line (CR, U+2028, ...:
        # the grammar refuses those lines): a lock asked for after one counts.
        for text in raw.decode("utf-8").splitlines():
            if text.lstrip().startswith("#"):
                continue
            words = _scanned_words(text)
            if words[:1] == ["egress"] and words != ["egress", "allow"]:
                return number
    return None


@functools.lru_cache(maxsize=1024)
def parse_label(owner: str, value: str) -> tuple[LabelRule, ...]:
    """The rules of OWNER's label VALUE, every line checked (no engine needed);
    RuleError (or UsageError for the label as a whole) at the first bad one.
    Cached: 'watch' reads every container's label at every batch."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        raise UsageError(f"label {RULES_LABEL}: not UTF-8 text") from None
    if len(data) > MAX_LABEL_BYTES:
        raise UsageError(f"label {RULES_LABEL}: larger than {MAX_LABEL_BYTES:,} bytes (the limit)")
    lines = checked_lines(data, MAX_LABEL_LINES, f"label {RULES_LABEL}", _origin)
    rules = [rule for number, line in enumerate(lines, 1) if (rule := parse_label_line(line, owner, _origin(number)))]
    egress = [rule.request.origin for rule in rules if rule.action == "egress"]
    if len(egress) > 1:  # 'egress deny' then 'egress allow': which one was meant?
        raise egress[1].error(UsageError(f"a label holds one egress line (line {egress[0].line} is one)"))
    return tuple(rules)


def read_labels(snapshot: Snapshot) -> LabelRules:
    """The label rules of every running container of SNAPSHOT, and the labels it
    refuses.  A stopped container's label asks for nothing: it has no address
    (its rules are removed, as a stopped container's recorded ones are withdrawn)."""
    rules: list[LabelledRule] = []
    refused: list[tuple[str, str]] = []
    locks: list[LabelledLock] = []
    owners = set()
    for container in snapshot.containers:
        value = container.label(RULES_LABEL)
        if value is None or not container.has_address:
            continue
        try:
            mine, lock = _container_rules(container, value, snapshot)
        except Exception as exc:  # noqa: BLE001 - hostile input: whatever it sets off, it fails closed
            reason = str(exc) if isinstance(exc, DockerFwError) else f"cannot be read ({type(exc).__name__}: {exc})"
            line = asks_lock(value)
            locked = "" if line is None else " but its egress lock"
            message = f"container {container.name}: {reason}; none of its label's rules applied{locked}"
            refused.append((container.name, message))
            if line is not None:
                locks.append(LabelledLock(container.name, _origin(line), refused=message))
            continue
        if lock is not None:
            locks.append(lock)
        if mine or lock is not None:
            owners.add(container.name)
            rules.extend(mine)
    return LabelRules(tuple(rules), tuple(refused), frozenset(owners), tuple(locks))


def _container_rules(
    owner: Container, value: str, snapshot: Snapshot,
) -> tuple[list[LabelledRule], LabelledLock | None]:
    """OWNER's label rules with today's peers, and its lock ('egress deny');
    DockerFwError for a bad label."""
    rules: list[LabelledRule] = []
    lock = None
    for line in parse_label(owner.name, value):
        if isinstance(line.request, EgressRequest):
            if line.request.policy is EgressPolicy.DENY:
                lock = LabelledLock(owner.name, line.request.origin)
            continue  # 'egress allow': Docker's default, nothing to place
        try:
            rules.extend(_line_rules(owner, line, snapshot))
        except DockerFwError as exc:
            raise line.request.origin.error(exc) from None
    return rules, lock


def _line_rules(owner: Container, line: LabelRule, snapshot: Snapshot) -> list[LabelledRule]:
    from .resolve import allow_ports  # not at import: 'ls' reads labels without the resolver

    request = line.request
    if isinstance(request, AllowRequest):
        ports = allow_ports(owner)
        specs = [
            checked_spec("add", add)
            for address in allow_addresses(request.addresses)
            for add in allow_requests(owner.name, ports, address, request.origin)
        ]
        for spec in specs:
            _check_addresses(spec, owner, snapshot)
        return [LabelledRule(spec, "allow", request.origin) for spec in specs]
    spec = checked_spec(line.action, request)
    side = "source" if spec.source.kind is AddressKind.CONTAINER else "dest"
    named: AddressSpec = getattr(spec, side)
    if named.kind is not AddressKind.CONTAINER:
        _check_addresses(spec, owner, snapshot)
        return [LabelledRule(spec, line.action, request.origin)]
    service = compose_service(owner)
    peers, stands_for = _peers(owner, named.value, snapshot)
    rules = []
    for peer in peers:
        expanded = replace(spec, **{side: AddressSpec.container(peer)})
        validate(line.action, expanded)
        rules.append(LabelledRule(
            expanded, line.action, request.origin, peer=named.value,
            service=(service[0], named.value) if stands_for and service else None,
        ))
    return rules


def _peers(owner: Container, name: str, snapshot: Snapshot) -> tuple[list[str], bool]:
    """The containers NAME stands for in OWNER's label, and whether it is a
    service of OWNER's project.  A service: its running replicas (all of them
    when none runs: their rules are withdrawn, with a warning, as for a
    stopped container), OWNER left out (a replica's rule naming its own service
    is about the others).  Else the container of that name or id (by name:
    when there is none, the rule is withdrawn at apply time)."""
    service = compose_service(owner)
    if service is not None:
        replicas = [
            c for c in snapshot.containers
            if compose_service(c) == (service[0], name) and c.id != owner.id
        ]
        if replicas or any(compose_service(c) == (service[0], name) for c in snapshot.containers):
            running = [c for c in replicas if c.has_address] or replicas
            return sorted(c.name for c in running), True
    container = snapshot.find(name)
    if container is not None and container.id == owner.id:
        raise UsageError("source and destination are the same")
    return [container.name if container is not None else name], False


def _check_addresses(spec: RuleSpec, owner: Container, snapshot: Snapshot) -> None:
    """The command line's checks of literal addresses against the engine: a
    Docker network's own address goes stale at the next restart (a label has no
    --rev-lookup), and 'add' is for external addresses."""
    from .resolve import check_kind_addresses, normalise_address

    for side in (spec.source, spec.dest):
        if side.kind is AddressKind.NETWORK:
            normalise_address(side, owner, snapshot, rev_lookup=False)
    check_kind_addresses(spec, snapshot)


# -- rules that cannot have an effect ------------------------------------------------


def icc_note(spec: RuleSpec, snapshot: Snapshot) -> str | None:
    """Why an internal rule between two containers changes nothing, or None.

    On a bridge network with inter-container communication on (icc: Docker's
    default, and every Compose network's unless its file turns it off) Docker
    accepts all traffic between its containers: an allow there adds nothing.
    Said only when every network the two share is such a network.
    """
    if spec.kind is not Kind.INTERNAL:
        return None
    peer_name = _peer_name(spec)
    owner, peer = snapshot.find(spec.owner), snapshot.find(peer_name) if peer_name else None
    if owner is None or peer is None:
        return None
    shared = {e.network for e in owner.endpoints if e.ip} & {e.network for e in peer.endpoints if e.ip}
    networks = [snapshot.network(name) for name in sorted(shared)]
    if not networks or any(n is None or n.driver != "bridge" or not n.icc for n in networks):
        return None
    return (
        f"has no effect ({spec.describe()}): {owner.name} and {peer.name} share only "
        f"{', '.join(n.name for n in networks)}, where Docker lets every container reach every other "
        f"(icc on); turn it off for the network (Compose: driver_opts: {ICC_OPTION}: \"false\")"
    )
