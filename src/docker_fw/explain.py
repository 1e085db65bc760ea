"""'docker-fw explain': what the live firewall does with one new connection, and why.

Backend-neutral: the source and destination are looked up in the engine's
snapshot and made into one ``flow.Flow`` per path the kernel could take (one
per network two containers share; an external client reaches a published
port through its DNAT); the backend of the flow's family walks its live
ruleset (``backends.Explainer``) and answers a ``flow.Verdict``.  For a
blocked path, the docker-fw rule that would allow it is worked out here and
checked by walking again with that rule added (nothing live changes).
"""

from __future__ import annotations

from .values import dataclass
from typing import TYPE_CHECKING

from .backends import Explainer
from .errors import DockerFwError, EngineError, FirewallError, UsageError
from .flow import OUTSIDE, Flow, Verdict
from .model import AddressKind, AddressSpec, Kind, RuleSpec, parse_address, parse_port

# What explain walks: a new connection to a port (rules may also name sctp and icmp).
EXPLAINED_PROTOCOLS = ("tcp", "udp")
from .resolve import resolve

if TYPE_CHECKING:
    from .engine import Container, Endpoint, Snapshot
    from .resolve import ResolvedRule

EXIT_ALLOWED = 0
EXIT_BLOCKED = 1


@dataclass(frozen=True)
class Side:
    """One end of the flow: a running container, the host ('/'), or an external address."""

    spec: AddressSpec  # as the user named it (a container's address becomes the container)
    container: Container | None = None
    address: str = ""  # an external address

    @property
    def kind(self) -> str:
        return {AddressKind.CONTAINER: "container", AddressKind.HOST: "host"}.get(self.spec.kind, "address")

    @property
    def name(self) -> str:
        if self.container is not None:
            return self.container.name
        return "the host" if self.spec.kind is AddressKind.HOST else self.address


@dataclass(frozen=True)
class Suggestion:
    """The docker-fw command that would allow a blocked path, and whether the walk confirms it:
    a replay (the recorded rules, at today's addresses, would allow it), else a new rule."""

    command: str  # '' when there is none
    allows: bool  # the walk with the command's changes applied lets the flow through
    rule: RuleSpec | None = None  # the rule it records
    note: str = ""  # why there is none, or why it would not be enough


@dataclass(frozen=True)
class Path:
    flow: Flow
    verdict: Verdict
    suggestion: Suggestion | None = None  # for a blocked path


@dataclass(frozen=True)
class Explanation:
    source: Side
    dest: Side
    proto: str
    dport: int
    paths: tuple[Path, ...]
    # The rules of containers' docker-fw.rules labels (labels.LabelledRule): a
    # path's rule that is one of them is printed as the label's line.
    from_labels: tuple = ()

    def label_rule(self, spec: RuleSpec | None):
        """The label rule SPEC is, or None (a recorded rule, or none)."""
        return next((r for r in self.from_labels if r.spec == spec), None) if spec is not None else None

    @property
    def allowed(self) -> bool:
        """Allowed on every path (a container reaches another on each network they share)."""
        return all(p.verdict.allowed for p in self.paths)

    @property
    def exit_code(self) -> int:
        return EXIT_ALLOWED if self.allowed else EXIT_BLOCKED


@dataclass(frozen=True)
class Question:
    """explain's command line, checked without the engine."""

    source: AddressSpec
    dest: AddressSpec
    dport: int
    proto: str


def checked_question(source: str | None, dest: str | None, dport: str | None, proto: str | None) -> Question:
    """UsageError (exit 2) for anything the command line gets wrong."""
    if not source or not dest:
        raise UsageError("explain needs --source and --dest")
    sides = []
    for option, text in (("--source", source), ("--dest", dest)):
        spec = parse_address(text)
        if spec.kind is AddressKind.SELF:
            raise UsageError(f"{option} '.': explain names both ends: a container, '/' (the host) or an address")
        if spec.kind is AddressKind.NETWORK:
            net = spec.ip_network
            if net.prefixlen != net.max_prefixlen:
                raise UsageError(f"{option} {spec.text}: a connection has one address, not a subnet")
        sides.append(spec)
    proto = proto or "tcp"
    if proto not in EXPLAINED_PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(EXPLAINED_PROTOCOLS)}: {proto!r}")
    port = parse_port(dport, "--dport")
    if not port:
        raise UsageError("--dport is mandatory: a new connection goes to one port")
    if sides[0] == sides[1]:
        raise UsageError("source and destination are the same")
    return Question(sides[0], sides[1], port, proto)


def _side(spec: AddressSpec, snapshot: Snapshot) -> Side:
    if spec.kind is AddressKind.CONTAINER:
        return Side(spec, snapshot.running(spec.value))
    if spec.kind is AddressKind.HOST:
        return Side(spec)
    net = spec.ip_network
    address = str(net.network_address)
    if snapshot.is_gateway(net.network_address):
        return Side(AddressSpec.host())
    if snapshot.is_docker_address(net):
        holder = snapshot.owner_of_address(address)
        if holder is None:
            raise EngineError(f"{address}: no running container has this address")
        return Side(AddressSpec.container(holder.name), holder)
    return Side(spec, address=address)


def _ip(endpoint: Endpoint, family: int) -> str:
    return endpoint.ip6 if family == 6 else endpoint.ip


def _endpoints(container: Container, family: int) -> list[Endpoint]:
    found = [e for e in container.endpoints if _ip(e, family) and e.bridge]
    if not found:
        raise EngineError(f"container {container.name} has no IPv{family} address on a bridge network")
    return found


def _family(question: Question) -> int:
    literal = {s.family for s in (question.source, question.dest)} - {None}
    return literal.pop() if literal else 4


def flows(src: Side, dst: Side, dport: int, proto: str, family: int) -> list[Flow]:
    """The paths a new connection from SRC to DST could take; UsageError for one
    docker-fw has no say in."""
    a, b = src.container, dst.container
    if a is not None and b is not None:
        return _between(a, b, dport, proto, family)
    if a is not None and dst.spec.kind is AddressKind.HOST:
        return _to_host(a, dport, proto, family)
    if a is not None and dst.address:
        out = a.published_endpoint or _endpoints(a, family)[0]  # its default route's bridge
        return [Flow(_ip(out, family), dst.address, proto, dport, out.bridge, OUTSIDE, family, network=out.network)]
    if b is not None and src.address:
        return _from_outside(src.address, b, dport, proto, family)
    if src.spec.kind is AddressKind.HOST:
        raise UsageError("traffic from the host itself (OUTPUT) is not filtered by docker-fw: explain "
                         "connections from a container or an external address")
    if dst.spec.kind is AddressKind.HOST:
        raise UsageError("traffic from an external address to the host itself is not docker-fw's: name "
                         "the container whose published port it is")
    raise UsageError("at least one end must be a running container")


def _between(a: Container, b: Container, dport: int, proto: str, family: int) -> list[Flow]:
    """One path per network the two share; else from A's bridge to B's, through the host."""
    if a.id == b.id:
        raise UsageError(f"{a.name} to itself never leaves the container")
    theirs = {e.network: e for e in _endpoints(b, family)}
    pairs = [(e, theirs[e.network]) for e in _endpoints(a, family) if e.network in theirs]
    if not pairs:
        pairs = [(_endpoints(a, family)[0], _endpoints(b, family)[0])]
    return [Flow(_ip(e, family), _ip(f, family), proto, dport, e.bridge, f.bridge, family,
                 network=e.network if e.network == f.network else f"{e.network} -> {f.network}")
            for e, f in pairs]


def _to_host(a: Container, dport: int, proto: str, family: int) -> list[Flow]:
    """To the host's address on each of A's networks (its gateway there): INPUT."""
    found = []
    for e in _endpoints(a, family):
        gateway = e.gateway6 if family == 6 else e.gateway
        if gateway:
            found.append(Flow(_ip(e, family), gateway, proto, dport, e.bridge, "", family, network=e.network))
    if not found:
        raise EngineError(f"container {a.name} has no gateway address for '/'")
    return found


def _from_outside(client: str, b: Container, dport: int, proto: str, family: int) -> list[Flow]:
    """Through the published host port (its DNAT) when B publishes DPORT; else
    straight to B's addresses, as a client routed to them would try."""
    bindings = [p for p in b.ports if p.private_port == dport and p.proto == proto
                and (":" in p.host_ip) == (family == 6) and p.host_ip not in ("127.0.0.1", "::1")]
    e = b.published_endpoint
    if bindings and e is not None and _ip(e, family):
        binding = bindings[0]
        host_ip = "" if binding.host_ip in ("", "0.0.0.0", "::") else binding.host_ip
        return [Flow(client, _ip(e, family), proto, dport, OUTSIDE, e.bridge, family,
                     host_port=binding.host_port, host_ip=host_ip, network=e.network)]
    return [Flow(client, _ip(e, family), proto, dport, OUTSIDE, e.bridge, family, network=e.network)
            for e in _endpoints(b, family)]


def suggest(src: Side, dst: Side, flow: Flow, dport: int, proto: str) -> RuleSpec | str:
    """The rule that would allow FLOW, as its owner would record it; or why there is none."""
    a, b = src.container, dst.container
    if a is not None and b is not None:
        if flow.iif != flow.oif:
            return (f"{a.name} and {b.name} share no network, and Docker isolates networks from each "
                    "other: connect one to the other's network ('docker network connect')")
        return RuleSpec(b.name, Kind.from_action("add-internal"), AddressSpec.container(a.name),
                        AddressSpec.self_(), proto, dport=dport)
    if a is not None and dst.spec.kind is AddressKind.HOST:
        return RuleSpec(a.name, Kind.from_action("add-input"), AddressSpec.self_(), AddressSpec.host(),
                        proto, dport=dport)
    if b is not None and src.address:
        return RuleSpec(b.name, Kind.from_action("add"), src.spec, AddressSpec.self_(), proto, dport=dport)
    return "docker-fw records no rules for a container's own outgoing traffic: Docker's rules decide it"


def explain(service, question: Question) -> Explanation:
    """The verdict on every path of QUESTION's connection, from the live firewall."""
    engine_backend = service.engine.firewall_backend() or ""
    if engine_backend.startswith("nftables"):
        raise UsageError(NFTABLES_UNEXPLAINED.format(engine_backend))
    snapshot = service.engine.snapshot()
    src, dst = _side(question.source, snapshot), _side(question.dest, snapshot)
    family = _family(question)
    paths_flows = flows(src, dst, question.dport, question.proto, family)
    backend = _backend(service.backends, family)
    live = backend.read_paths()
    if live is None:
        raise FirewallError(f"{backend.unmanaged_note or 'this firewall backend is not in use'}: "
                            f"cannot explain an IPv{family} flow")
    # Label rules are live as recorded ones are: without them, theirs would read as stale.
    from_labels = tuple(service.label_rules().rules)
    recorded = _recorded([*service.store.rules(None), *(r.spec for r in from_labels)], snapshot)
    paths = []
    for flow in paths_flows:
        verdict = backend.explain(live, flow, recorded)
        suggestion = None
        if not verdict.allowed:
            suggestion = _checked_suggestion(service, backend, live, flow, recorded, src, dst, question, snapshot)
        paths.append(Path(flow, verdict, suggestion))
    return Explanation(src, dst, question.proto, question.dport, tuple(paths), from_labels)


# explain walks iptables' tables (backends/iptables/walk.py); docker-fw's
# nftables backend has no walker of nft's rulesets yet: refused by name, exit 2,
# before anything live is read.
NFTABLES_UNEXPLAINED = (
    "explain is not available on the nftables backend: the engine runs Docker's nftables firewall "
    "backend ({}), and explain walks iptables rulesets only ('docker-fw ls' and 'nft list table ip "
    "docker-fw' show the rules)"
)


def _backend(backends, family: int) -> Explainer:
    for backend in backends:
        if backend.family == family:
            if not isinstance(backend, Explainer):
                raise UsageError(
                    f"the firewall backend for IPv{family} ({type(backend).__name__}) cannot explain flows"
                )
            return backend
    raise FirewallError(f"no firewall backend handles IPv{family}: cannot explain an IPv{family} flow")


def _recorded(specs, snapshot: Snapshot) -> list[tuple[RuleSpec, ResolvedRule]]:
    found = []
    for spec in specs:
        try:
            found.extend((spec, r) for r in resolve(spec, snapshot))
        except DockerFwError:
            continue  # withdrawn: not live either
    return found


def _names_one_of(spec: RuleSpec, names: list[str]) -> bool:
    named = [side.value for side in (spec.source, spec.dest) if side.kind is AddressKind.CONTAINER]
    return spec.owner in names or any(name in names for name in named)


def _checked_suggestion(service, backend, live, flow, recorded, src, dst, question, snapshot) -> Suggestion:
    # A rule recorded but not live at today's addresses (the container moved, and
    # nothing replayed since): 'replay' of the two ends (and of the rules naming them).
    ends = [c.name for c in (src.container, dst.container) if c is not None]
    if ends and any(_names_one_of(spec, ends) for spec, _ in recorded):
        scope = sorted(set(ends) | service.store.referrers(set(ends)))
        if backend.explain(live, flow, recorded, replaying=scope).allowed:
            return Suggestion("docker-fw replay " + " ".join(ends), True)
    rule = suggest(src, dst, flow, question.dport, question.proto)
    if isinstance(rule, str):
        return Suggestion("", False, note=rule)
    try:
        rule.validate()
        adding = [r for r in resolve(rule, snapshot) if r.family == flow.family]
    except DockerFwError as exc:
        return Suggestion("", False, note=f"no docker-fw rule fits: {exc}")
    again = backend.explain(live, flow, recorded, adding)
    if again.allowed:
        return Suggestion(rule.describe(), True, rule)
    return Suggestion(rule.describe(), False, rule, f"even with it, blocked: {again.reason} ({again.decided_by})")


# --- text output --------------------------------------------------------------------


def _where(side: Side, address: str, port: int | None = None) -> str:
    name = side.name
    shown = name if name == address else f"{name} ({address})"
    return f"{shown}:{port}" if port else shown


def text_lines(x: Explanation, trace: bool = False) -> list[str]:
    """What 'explain' prints: a verdict line, then each path's."""
    verdict = "allowed" if x.allowed else "blocked"
    lines = [f"{x.source.name} -> {x.dest.name}:{x.dport}/{x.proto}: {verdict}"]
    for path in x.paths:
        flow, v = path.flow, path.verdict
        state = "allowed" if v.allowed else "blocked"
        on = f" on {flow.network}" if flow.network else ""
        lines.append(f"  path{on}: {_where(x.source, flow.src)} -> {_where(x.dest, flow.dst, flow.dport)}/"
                     f"{flow.proto}: {state}")
        if v.translated:
            lines.append(f"    published: {v.translated}")
        lines.append(f"    decided by: {v.table} {v.decided_by}")
        lines.append(f"    why: {v.reason}")
        if v.rule is not None:
            labelled = x.label_rule(v.rule)
            lines.append(f"    docker-fw rule: {(labelled or v.rule).describe()}")
        if path.suggestion is not None:
            s = path.suggestion
            if s.allows:
                lines.append(f"    to allow it: {s.command}")
            elif s.command:
                lines.append(f"    {s.command} would not be enough: {s.note}")
            else:
                lines.append(f"    no docker-fw rule allows it: {s.note}")
        if trace:
            lines.extend(f"    matched: {line}" for line in v.trace)
    return lines

