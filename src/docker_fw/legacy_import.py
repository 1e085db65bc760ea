"""import-legacy: the original docker-fw's state -> records of this docker-fw.

The original (gdm85/docker-fw, Go, v0.2.4) kept its state beside Docker's,
in ``<docker root>/containers/<container id>/``, written with Go's
``encoding/json`` (no struct tags, so the keys are the Go field names, and
every field is written):

``extraRules.json``
    ``{"Rules": [ActiveIptablesRule, ...]}`` (``null`` when empty), the rules
    the container owns.  Each rule holds the ten fields of ``IptablesRule``
    (embedded, so flattened) and ``ActiveIptablesRule``: ``Source``,
    ``SourceAlias``, ``SourcePort``, ``Destination``, ``DestinationAlias``,
    ``DestinationPort``, ``Protocol``, ``Filter``, ``Chain``, ``JumpTo``.
    Ports are uint16 (0: none).  An alias is ``.`` (the owner), ``/`` (the
    Docker host, address ``172.17.42.1/32``) or the name of a container
    (``Name[1:]``: without its slash; an id given on the command line was
    recorded as the name); an empty alias means the address itself
    (``198.51.100.2/32``) is the rule's side.  The action is told by the
    chain and target (``ExtrapolateAction``): ``FORWARD -> DOCKER`` for
    ``add`` and ``allow`` (whose rules carry the filter
    ``! -i docker0 -o docker0``), ``INPUT -> ACCEPT`` for ``add-input``,
    ``DOCKER -> ACCEPT`` for ``add-internal`` and ``add-two-ways``.
``customHosts.json``
    ``["name", ...]``: the containers whose name and address ``add-two-ways``
    put in this (its source) container's ``/etc/hosts``.
``backupHostConfig.json``
    The container's ``HostConfig`` as go-dockerclient marshals it (keys
    ``Links``, ``VolumesFrom``, ``NetworkMode``, ``PublishAllPorts``,
    ``PortBindings`` and others, each left out when empty), with
    ``PortBindings`` replaced by the host ports the container had
    (``NetworkSettings.Ports``: ``{"80/tcp": [{"HostIP": "0.0.0.0",
    "HostPort": "32768"}], "1025/tcp": null}``).

The files are hostile input: read without following a symbolic link
(hosts.read_bounded), at most MAX_FILE_BYTES each, as strict JSON, every
value checked by allow-list; each rule then goes through the rule grammar as
a ``--from`` line would (rulegrammar.add_request, its origin naming the file
and ``Rules[N]``) and is checked against the engine as 'add' checks it, but
without needing its containers to be running (they are recorded by name and
applied by the next 'replay').  Anything that cannot be mapped is one line
each, and then nothing is recorded at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import stat
from collections.abc import Callable
from .values import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import hostconfig, hosts
from .errors import DockerFwError, UsageError
from .filtergrammar import BRIDGE_PLACEHOLDER
from .model import CONTAINER_NAME_RE, AddressKind, Kind, RuleSpec, parse_address
from .resolve import check_kind_addresses, normalise_address
from .rulegrammar import AddRequest, Origin, add_request, checked_spec, validate

if TYPE_CHECKING:  # annotations only
    from .actions import Service
    from .engine import Container, Snapshot

# engine.Engine.inspect: a container's inspect data by id.
Inspect = Callable[[str], dict[str, Any]]

DEFAULT_DOCKER_ROOT = "/var/lib/docker"
RULES_FILE = "extraRules.json"
HOSTS_FILE = "customHosts.json"
HOSTCONFIG_FILE = "backupHostConfig.json"

# The old tool wrote a few hundred bytes per rule; a file past this is not its.
MAX_FILE_BYTES = 1 << 20
MAX_TEXT_CHARS = 1024  # any one string value we read

# The Go struct's fields, in its order, as encoding/json names them.
RULE_TEXT_KEYS = ("Source", "SourceAlias", "Destination", "DestinationAlias", "Protocol", "Filter", "Chain", "JumpTo")
RULE_PORT_KEYS = ("SourcePort", "DestinationPort")
RULE_KEYS = frozenset(RULE_TEXT_KEYS + RULE_PORT_KEYS)

# (Chain, JumpTo) as the old tool wrote them -> the action that means the same.
ACTIONS = {
    ("FORWARD", "DOCKER"): "add",  # add, and allow's rules
    ("INPUT", "ACCEPT"): "add-input",
    ("DOCKER", "ACCEPT"): "add-internal",  # add-internal, and add-two-ways' rules
}

# The one bridge the old tool knew (it hard-coded docker0): docker-fw writes
# the bridge of the network a rule is applied on as @bridge, as 'allow' does.
OLD_BRIDGE = "docker0"
INTERFACE_OPTIONS = frozenset({"-i", "--in-interface", "-o", "--out-interface"})

_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_PORT_KEY = re.compile(r"([0-9]{1,5})/(tcp|udp|sctp)")


class LegacyFileError(UsageError):
    """A file of the old tool that cannot be read as one (a line naming it)."""


@dataclass(frozen=True)
class LegacyRule:
    """One ActiveIptablesRule, as the old tool recorded it; INDEX: its place in Rules."""

    index: int
    source: str
    source_alias: str
    source_port: int
    destination: str
    destination_alias: str
    destination_port: int
    protocol: str
    filter: str
    chain: str
    jump_to: str


@dataclass(frozen=True)
class LegacyHostConfig:
    """What docker-fw uses of a backupHostConfig.json."""

    links: tuple[str, ...]
    volumes_from: tuple[str, ...]
    network_mode: str
    publish_all: bool
    # NetworkSettings.Ports form, with docker's key spelling: {"80/tcp": [{"HostIp", "HostPort"}]}
    ports: dict[str, list[dict[str, str]]]


@dataclass(frozen=True)
class ImportedRule:
    """A rule as it will be recorded, and the action 'ls' prints it with."""

    action: str
    spec: RuleSpec


@dataclass
class ImportPlan:
    """Everything the old files hold, mapped; PROBLEMS: one line per thing that cannot be."""

    rules: list[ImportedRule] = field(default_factory=list)
    host_entries: list[tuple[str, str, str]] = field(default_factory=list)  # (owner, name, where)
    hostconfigs: list[tuple[str, dict, str]] = field(default_factory=list)  # (owner, record, path)
    problems: list[str] = field(default_factory=list)
    directories: int = 0  # container directories found


# -- reading: bounded, no links, strict JSON ------------------------------------------


def _shown(value: object, limit: int = 60) -> str:
    """VALUE for a message: repr, cut to LIMIT characters (the file chooses it)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def strict_json(data: bytes, path: str) -> Any:
    """DATA as JSON, strictly: UTF-8, no NaN or Infinity, no key twice in an object."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LegacyFileError(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                raise LegacyFileError(f"{path}: the key {_shown(key)} is given twice in one object")
            obj[key] = value
        return obj

    def constant(name: str) -> Any:
        raise LegacyFileError(f"{path}: {name} is not JSON")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise LegacyFileError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise LegacyFileError(f"{path}: nested too deeply to be the old docker-fw's") from None


def read_json(path: str) -> Any | None:
    """The JSON in the file at PATH, None when there is no such file; LegacyFileError otherwise."""
    try:
        data = hosts.read_bounded(path, MAX_FILE_BYTES)
    except hosts.FileMissing:
        return None
    except hosts.HostsFileError as exc:
        raise LegacyFileError(f"{path}: {exc}") from None
    return strict_json(data, path)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} is {_shown(value)}, not a string")
    if len(value) > MAX_TEXT_CHARS:
        raise UsageError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    if not value.isprintable():
        raise UsageError(f"{what} holds a control or unprintable character: {_shown(value)}")
    return value


def _port(value: object, what: str) -> int:
    # bool is an int to Python, and 80.0 a number to JSON: neither is a uint16.
    if type(value) is not int or not 0 <= value <= 65535:
        raise UsageError(f"{what} is {_shown(value)}, not a port number 0-65535")
    return value


def parse_rule(item: object, index: int) -> LegacyRule:
    """One element of Rules, checked field by field; UsageError naming the field."""
    if not isinstance(item, dict):
        raise UsageError(f"is {_shown(item)}, not a JSON object")
    unknown = sorted(set(item) - RULE_KEYS)
    if unknown:
        raise UsageError(f"holds {_shown(unknown[0])}, which is no field of the old docker-fw's rules")
    missing = [key for key in (*RULE_TEXT_KEYS, *RULE_PORT_KEYS) if key not in item]
    if missing:
        raise UsageError(f"has no {missing[0]} (the old docker-fw wrote every field)")
    texts = {key: _text(item[key], key) for key in RULE_TEXT_KEYS}
    ports = {key: _port(item[key], key) for key in RULE_PORT_KEYS}
    return LegacyRule(
        index=index,
        source=texts["Source"],
        source_alias=texts["SourceAlias"],
        source_port=ports["SourcePort"],
        destination=texts["Destination"],
        destination_alias=texts["DestinationAlias"],
        destination_port=ports["DestinationPort"],
        protocol=texts["Protocol"],
        filter=texts["Filter"],
        chain=texts["Chain"],
        jump_to=texts["JumpTo"],
    )


def parse_rules_file(document: Any, path: str) -> list[Any]:
    """The elements of an extraRules.json document's Rules (each checked by parse_rule)."""
    if not isinstance(document, dict) or set(document) != {"Rules"}:
        raise LegacyFileError(f'{path}: not the old docker-fw\'s rules: expected {{"Rules": [...]}}')
    items = document["Rules"]
    if items is None:  # Go marshals an empty collection's nil slice so
        return []
    if not isinstance(items, list):
        raise LegacyFileError(f"{path}: Rules is {_shown(items)}, not a list")
    return items


def parse_hosts_file(document: Any, path: str) -> list[str]:
    """The container names of a customHosts.json document."""
    if document is None:
        return []
    if not isinstance(document, list):
        raise LegacyFileError(f"{path}: not the old docker-fw's hosts entries: expected a list of container names")
    names = []
    for index, name in enumerate(document):
        if not isinstance(name, str) or not CONTAINER_NAME_RE.fullmatch(name) or name.startswith("/"):
            raise LegacyFileError(f"{path}[{index}]: {_shown(name)} is not a container name")
        names.append(name)
    return names


def _string_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UsageError(f"{what} is {_shown(value)}, not a list")
    return tuple(_text(item, what) for item in value)


def _host_port(value: object, what: str) -> str:
    text = _text(value, what)
    if text and not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise UsageError(f"{what} is {_shown(text)}, not a host port")
    return text


def _host_ip(value: object, what: str) -> str:
    text = _text(value, what)
    if text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise UsageError(f"{what} is {_shown(text)}, not an address") from None
    return text


def _port_bindings(value: object) -> dict[str, list[dict[str, str]]]:
    """PortBindings as the old tool saved them (the ports the container had), in
    NetworkSettings.Ports form with Docker's spelling (HostIp, not go-dockerclient's HostIP)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"PortBindings is {_shown(value)}, not an object")
    ports: dict[str, list[dict[str, str]]] = {}
    for key, bindings in value.items():
        match = _PORT_KEY.fullmatch(key)
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise UsageError(f"PortBindings holds {_shown(key)}, not a port such as '80/tcp'")
        if bindings is None:
            continue  # exposed, not published
        if not isinstance(bindings, list):
            raise UsageError(f"PortBindings[{key}] is {_shown(bindings)}, not a list")
        entries = []
        for binding in bindings:
            if not isinstance(binding, dict) or not set(binding) <= {"HostIP", "HostPort"}:
                raise UsageError(f"PortBindings[{key}] holds {_shown(binding)}, not a HostIP and HostPort")
            entries.append({
                "HostIp": _host_ip(binding.get("HostIP", ""), f"PortBindings[{key}] HostIP"),
                "HostPort": _host_port(binding.get("HostPort", ""), f"PortBindings[{key}] HostPort"),
            })
        ports[key] = entries
    return ports


def parse_hostconfig_file(document: Any, path: str) -> LegacyHostConfig:
    """The parts docker-fw records of a backupHostConfig.json document (the rest of
    Docker's host configuration, Binds, Dns and such, is not read: docker-fw keeps none of it)."""
    if not isinstance(document, dict):
        raise LegacyFileError(f"{path}: not a saved host configuration: expected a JSON object")
    try:
        publish_all = document.get("PublishAllPorts", False)
        if not isinstance(publish_all, bool):
            raise UsageError(f"PublishAllPorts is {_shown(publish_all)}, not true or false")
        return LegacyHostConfig(
            links=_string_list(document.get("Links"), "Links"),
            volumes_from=_string_list(document.get("VolumesFrom"), "VolumesFrom"),
            network_mode=_text(document.get("NetworkMode", ""), "NetworkMode"),
            publish_all=publish_all,
            ports=_port_bindings(document.get("PortBindings")),
        )
    except UsageError as exc:
        raise LegacyFileError(f"{path}: {exc}") from None


# -- mapping: the rule grammar, then the engine -----------------------------------------


def _side(alias: str, address: str, what: str) -> str:
    """A rule's side as the command line writes it: its alias ('.', '/', a container
    name) when it has one, else its address."""
    if not alias:
        return address
    if alias in (".", "/"):
        return alias
    try:  # a name, not an address that would pass for one ('1.2.3.4' is a valid container name)
        if not alias.startswith("/") and parse_address(alias).kind is AddressKind.CONTAINER:
            return alias
    except UsageError:
        pass
    raise UsageError(f"{what} {_shown(alias)} is not '.', '/' or a container name")


def _filter(text: str) -> str:
    """The old filter with its docker0 interfaces written as @bridge."""
    try:
        words = shlex.split(text)
    except ValueError:
        return text  # the grammar refuses it, with its own message
    mapped = [
        BRIDGE_PLACEHOLDER if word == OLD_BRIDGE and i and words[i - 1] in INTERFACE_OPTIONS else word
        for i, word in enumerate(words)
    ]
    return shlex.join(mapped) if mapped != words else text


def rule_request(item: object, index: int, owner: str, path: str) -> tuple[str, AddRequest]:
    """The action and the checked request (rulegrammar, as a --from line) that
    record what Rules[INDEX] of PATH meant; RuleError naming them otherwise."""
    origin = Origin.legacy_rule(path, index)
    try:
        rule = parse_rule(item, index)
        action = ACTIONS.get((rule.chain, rule.jump_to))
        if action is None:
            raise UsageError(
                f"Chain {_shown(rule.chain)} with JumpTo {_shown(rule.jump_to)} is no rule the old docker-fw "
                "wrote (FORWARD -> DOCKER: add, allow; INPUT -> ACCEPT: add-input; DOCKER -> ACCEPT: "
                "add-internal, add-two-ways)"
            )
        if rule.protocol not in ("tcp", "udp"):
            raise UsageError(f"Protocol {_shown(rule.protocol)} is neither tcp nor udp")
        options = {
            "source": _side(rule.source_alias, rule.source, "SourceAlias"),
            "dest": _side(rule.destination_alias, rule.destination, "DestinationAlias"),
            "sport": str(rule.source_port) if rule.source_port else None,
            "dport": str(rule.destination_port) if rule.destination_port else None,
            "protocol": rule.protocol,
            "filter": _filter(rule.filter) if rule.filter else None,
        }
    except UsageError as exc:
        raise origin.error(exc) from None
    return action, add_request(action, owner, options, origin)


def recorded_spec(action: str, request: AddRequest, owner: Container, snapshot: Snapshot) -> RuleSpec:
    """REQUEST (OWNER's) as the rule it records: names normalised against the engine
    (a container named by id is recorded by its name), checked as 'add' checks it; the
    containers need not run (the rule is applied by the next replay)."""
    written = checked_spec(action, request)
    try:
        spec = replace(
            written,
            source=normalise_address(written.source, owner, snapshot, False),
            dest=normalise_address(written.dest, owner, snapshot, False),
        )
        validate(action, spec)
        check_kind_addresses(spec, snapshot)
    except DockerFwError as exc:
        raise request.origin.error(exc) from None
    return spec


def check_docker_root(docker_root: str) -> str:
    """DOCKER_ROOT's containers directory; UsageError when there is none (checked
    before the engine is asked: the command line is wrong)."""
    # The operator's path, links and all, up to containers/; below it no link is followed.
    containers_dir = os.path.realpath(os.path.join(docker_root, "containers"))
    if not os.path.isdir(containers_dir):
        raise UsageError(
            f"{containers_dir} is no directory: name the engine's data root with --docker-root "
            "('docker info' shows it as Docker Root Dir)"
        )
    return containers_dir


def _directory_problem(path: str) -> str | None:
    """Why the container directory at PATH is not entered ('' when there is none), None to enter it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(mode):
        return f"{path}: a symbolic link (docker-fw follows none)"
    return None if stat.S_ISDIR(mode) else f"{path}: not a directory"


def _read(path: str, parse: Callable[[Any], Any], plan: ImportPlan) -> Any | None:
    """PARSE(the JSON of the file at PATH), None when there is no file or it is refused
    (then one line in PLAN.problems)."""
    try:
        document = read_json(path)
        return None if document is None else parse(document)
    except UsageError as exc:
        plan.problems.append(str(exc))
        return None


def plan_container(container: Container, directory: str, snapshot: Snapshot, inspect: Inspect, plan: ImportPlan) -> None:
    """Add what CONTAINER's directory holds of the old tool's to PLAN."""
    rules_path = os.path.join(directory, RULES_FILE)
    for index, item in enumerate(_read(rules_path, lambda doc: parse_rules_file(doc, rules_path), plan) or []):
        try:
            action, request = rule_request(item, index, container.name, rules_path)
            plan.rules.append(ImportedRule(action, recorded_spec(action, request, container, snapshot)))
        except DockerFwError as exc:
            plan.problems.append(str(exc))
    hosts_path = os.path.join(directory, HOSTS_FILE)
    for index, name in enumerate(_read(hosts_path, lambda doc: parse_hosts_file(doc, hosts_path), plan) or []):
        where = f"{hosts_path}[{index}]"
        try:
            target = snapshot.find(name)
        except DockerFwError as exc:  # an ambiguous id prefix
            plan.problems.append(f"{where}: {exc}")
            continue
        if target is None:
            plan.problems.append(f"{where}: no container is named {name} (removed, or renamed since?)")
        else:
            plan.host_entries.append((container.name, target.name, where))
    config_path = os.path.join(directory, HOSTCONFIG_FILE)
    legacy = _read(config_path, lambda doc: parse_hostconfig_file(doc, config_path), plan)
    if legacy is not None:
        plan.hostconfigs.append((container.name, hostconfig_record(legacy, inspect(container.id)), config_path))


def hostconfig_record(legacy: LegacyHostConfig, inspect: dict[str, Any]) -> dict[str, Any]:
    """save-hostconfig's record for the container: its wiring (links, volumes-from,
    network mode, publish-all) as the old tool saved it, so that 'start' refuses a
    container rewired since, as the old tool did; how its ports are declared
    from the engine (the old file kept only the host ports they got); and the host
    ports to ask for again: those it has now if it runs, else those the old tool saved."""
    record = hostconfig.record(inspect)
    wiring = dict(
        record["wiring"],
        links=sorted(legacy.links),
        volumes_from=sorted(legacy.volumes_from),
        network_mode=legacy.network_mode,
        publish_all=legacy.publish_all,
    )
    running = bool((inspect.get("State") or {}).get("Running"))
    bindings = record["bindings"] if running else hostconfig.effective_bindings({"NetworkSettings": {"Ports": legacy.ports}})
    return dict(record, wiring=wiring, bindings=bindings)


def pair_two_ways(plan: ImportPlan) -> None:
    """Rules that an add-two-ways hosts entry goes with are add-two-ways rules; an entry
    with no such rule is a problem (docker-fw keeps hosts entries only with their rule)."""
    internal = {
        (item.spec.source.value, item.spec.owner)
        for item in plan.rules
        if item.spec.kind is Kind.INTERNAL and item.spec.source.kind is AddressKind.CONTAINER
    }
    entries = {(source, name) for source, name, _ in plan.host_entries}
    plan.rules = [
        replace(item, action="add-two-ways")
        if (item.spec.source.value, item.spec.owner) in entries and item.spec.kind is Kind.INTERNAL
        else item
        for item in plan.rules
    ]
    for source, name, where in plan.host_entries:
        if (source, name) not in internal:
            plan.problems.append(
                f"{where}: a hosts entry for {name} in {source}, but {name}'s {RULES_FILE} holds no "
                f"DOCKER -> ACCEPT rule from {source}: docker-fw keeps an add-two-ways hosts entry only "
                "with its rule; remove the entry from the file (the old 'drop' leaves it behind) and import again"
            )


def build_plan(snapshot: Snapshot, docker_root: str, inspect: Inspect) -> ImportPlan:
    """Read and map the old tool's files of every container the engine knows."""
    containers_dir = check_docker_root(docker_root)
    plan = ImportPlan()
    for container in sorted(snapshot.containers, key=lambda c: c.name):
        if not _CONTAINER_ID.fullmatch(container.id):
            continue  # no directory of Docker's is named so
        directory = os.path.join(containers_dir, container.id)
        problem = _directory_problem(directory)
        if problem is not None:
            if problem:
                plan.problems.append(problem)
            continue
        plan.directories += 1
        plan_container(container, directory, snapshot, inspect, plan)
    if snapshot.containers and not plan.directories:
        raise UsageError(
            f"none of the engine's {len(snapshot.containers)} containers has a directory in {containers_dir}: "
            "name the engine's data root with --docker-root ('docker info' shows it as Docker Root Dir)"
        )
    pair_two_ways(plan)
    return plan


def _ports_note(record: dict[str, Any]) -> str:
    ports = ", ".join(f"{port}->{','.join(b['HostPort'] for b in bindings)}" for port, bindings in record["bindings"].items())
    return f" (ports {ports})" if ports else ""


def _count(n: int, what: str, plural: str | None = None) -> str:
    return f"{n} {what if n == 1 else plural or what + 's'}"


def import_legacy(service: Service, docker_root: str = DEFAULT_DOCKER_ROOT, dry_run: bool = False) -> ImportPlan:
    """Record what the old docker-fw's files hold (of SERVICE, the engine, the store,
    out and warn are used; nothing is applied).  All or nothing: a problem is one warning
    line each, then UsageError and nothing recorded.  With DRY_RUN, print the
    commands that would be recorded (a shell script: what is not a command is a comment)."""
    snapshot = service.engine.snapshot()
    plan = build_plan(snapshot, docker_root, service.engine.inspect)
    if plan.problems:
        for problem in plan.problems:
            service.warn(f"cannot import {problem}")
        raise UsageError(
            f"{_count(len(plan.problems), 'thing')} in the old docker-fw's files cannot be imported "
            "(see the warnings): nothing was imported"
        )
    store = service.store
    seen: set[RuleSpec] = set()
    rules = []
    for item in plan.rules:  # the same rule twice (docker0 and @bridge): once
        if item.spec not in seen:
            seen.add(item.spec)
            rules.append(item)
    known_entries = {(owner, name) for owner, names in store.host_entries().items() for name in names}
    entries = sorted({(owner, name) for owner, name, _ in plan.host_entries} - known_entries)
    configs = [(owner, record, path) for owner, record, path in plan.hostconfigs if store.hostconfig(owner) is None]
    kept = [owner for owner, _, _ in plan.hostconfigs if store.hostconfig(owner) is not None]
    new = [item for item in rules if not store.contains(item.spec)]
    fresh = {item.spec for item in new}
    if not dry_run:
        with store.transaction():
            for item in new:
                store.add(item.spec)
            for owner, name in entries:
                store.add_host_entry(owner, name)
            for owner, record, _ in configs:
                store.save_hostconfig(owner, record)
    # A dry run prints a script: the commands, and the rest as comments.
    comment = "# " if dry_run else ""
    for item in rules:
        line = item.spec.describe(item.action)
        if item.spec not in fresh:
            service.out(f"{comment}already recorded: {line}")
        else:
            service.out(line if dry_run else f"recorded: {line}")
    for owner, record, path in configs:
        verb = "from" if dry_run else "recorded from"
        service.out(f"{comment}{owner}: host configuration {verb} {path}{_ports_note(record)}")
    for owner in kept:
        service.out(f"{comment}{owner}: host configuration already recorded, kept")
    summary = (
        f"{_count(len(new), 'rule')}, {_count(len(entries), 'hosts entry', 'hosts entries')} and "
        f"{_count(len(configs), 'host configuration')}"
    )
    if dry_run:
        service.out(f"# import-legacy --dry-run: {summary} would be recorded")
    else:
        service.out(f"import-legacy: {summary} recorded" + ("; 'docker-fw replay' applies them" if new or entries else ""))
    return plan
