"""docker-fw graph: every flow the record allows, at today's addresses, in five formats.

A flow is one recorded rule (the store) or one rule of a container's
``docker-fw.rules`` label (marked with its label and line), placed with the
engine's live addresses (resolve.resolve): who (an external address or
subnet, a container, the Docker host) may open connections to whom, on which
port (or, for ICMP, which type).  A container whose egress is locked
('egress NAME deny', or 'egress deny' in its label) is shown with what it may
still start: its own networks, its outbound and add-input rules, DNS to its
name servers (egress.py).
A rule that cannot be placed now (a container it names is stopped, a filter
this version refuses) is a *withdrawn* flow: it is shown, marked so, since
its container's firewall does not let it through today.

Everything shown is hostile text: container names come from whoever runs a
container, network names from whoever creates a network (they may hold
quotes, newlines, ``<script>``).  Each format escapes it its own way, and
node identifiers are never made from names:

- text: errors.one_line (control characters escaped, one line per flow);
- json: json.dumps with ensure_ascii (keys sorted, see SCHEMA below);
- dot: double-quoted strings with backslash, quote and ``&`` escaped
  (Graphviz reads HTML entities in plain labels), ids ``n0, n1, ...``;
- mermaid: every character but letters, digits, space and ``._:/-`` as an
  entity code ``#NNN;`` (Mermaid's own escape), ids ``n0, n1, ...``;
- html: one page with inline SVG and CSS, html.escape'd, a Content-Security-
  Policy that forbids every external resource and every script.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from .values import dataclass
from typing import TYPE_CHECKING

from .errors import EngineError, UsageError, one_line
from .filtergrammar import FilterError
from .listing import action_of
from .jsonout import ORIGIN_LABEL, ORIGIN_STORE, label_record, ports_value
from .model import AddressKind, AddressSpec, Kind, Ports, RuleSpec
from .egress import DNS_PORT, ResolvedLock
from .resolve import ResolvedRule, is_outbound, resolve

if TYPE_CHECKING:  # annotations only
    from .engine import Snapshot
    from .labels import LabelledRule
    from .rulegrammar import Origin

FORMATS = ("text", "json", "dot", "mermaid", "html")
JSON_VERSION = 1

# What a party of a flow is.
EXTERNAL = "external"  # an address or subnet outside Docker
CONTAINER = "container"
HOST = "host"  # the Docker host ('/'): the gateway of the shared network

# A flow's direction, from the kinds of its two parties.
DIRECTIONS = {
    (EXTERNAL, CONTAINER): "ingress",
    (CONTAINER, CONTAINER): "internal",
    (CONTAINER, HOST): "to-host",
    (HOST, CONTAINER): "from-host",
    (CONTAINER, EXTERNAL): "egress",
}


@dataclass(frozen=True)
class Party:
    """One end of a flow: a container (by name), the host, or an external CIDR."""

    kind: str
    name: str  # container name, 'host', or the address as recorded ('198.51.100.2', '203.0.113.0/24')

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Placement:
    """Where a flow is applied today: one network and address family."""

    family: int
    network: str  # the network the owner's side is on ('' when unknown)
    source: str  # an address or prefix, as iptables matches it
    dest: str


@dataclass(frozen=True)
class Flow:
    """One recorded rule as a flow, with where it is placed today."""

    action: str  # the command that recorded it, as 'ls' prints it
    owner: str
    source: Party
    dest: Party
    proto: str
    sport: Ports  # empty: any
    dport: Ports  # empty: any
    filter: str  # the --filter as typed, '' for none
    command: str  # the docker-fw command line that records it again
    placed: tuple[Placement, ...]
    withdrawn: str  # why it is not applied now; '' when it is
    icmp_type: str = ""  # proto icmp: --icmp-type as typed; '': any type
    label: Origin | None = None  # the label line it comes from; None: the store's rule
    passes_lock: bool = False  # the owner starts it outwards: its egress lock lets it through

    @property
    def direction(self) -> str:
        return DIRECTIONS.get((self.source.kind, self.dest.kind), f"{self.source.kind}-to-{self.dest.kind}")

    @property
    def port_text(self) -> str:
        """'80/tcp', '9100:9200/tcp', '80,443/tcp', 'any/udp'; ICMP: 'icmp echo-request', 'icmp'."""
        if self.proto == "icmp":
            return f"icmp {self.icmp_type}" if self.icmp_type else "icmp"
        return f"{self.dport or 'any'}/{self.proto}"

    @property
    def origin_text(self) -> str:
        """'label docker-fw.rules line 3' for a label's rule, '' for the store's."""
        return str(self.label) if self.label is not None else ""


@dataclass(frozen=True)
class Lock:
    """A container whose new outbound connections are dropped (egress deny), and
    what it may still start besides its flows that pass the lock."""

    owner: str
    command: str  # 'docker-fw egress NAME deny': what records (or, a label's, amounts to) it
    label: Origin | None  # the label line asking for it (line 0: a refused label); None: the store's
    networks: tuple[str, ...]  # its bridge networks: Docker's own rules and add-internal decide there
    dns: tuple[str, ...]  # its name servers: udp and tcp port 53 to each
    withdrawn: str  # why it is not placed now ('' when it is)

    @property
    def origin_text(self) -> str:
        if self.label is None:
            return ""
        return str(self.label) if self.label.line else f"label {self.label.name} (refused: locked whole)"


DNS_TEXT = "53/udp,tcp DNS"


@dataclass(frozen=True)
class Edge:
    """One arrow of a drawing: a flow, or a locked container's DNS."""

    source: Party
    dest: Party
    label: str
    withdrawn: bool


@dataclass(frozen=True)
class Address:
    network: str
    ipv4: str
    ipv6: str


@dataclass(frozen=True)
class Graph:
    flows: tuple[Flow, ...]
    # Each container a flow or lock names: its state and live addresses ('' state: unknown to the engine).
    containers: tuple[tuple[str, str, tuple[Address, ...]], ...]
    locks: tuple[Lock, ...] = ()

    def edges(self) -> list[Edge]:
        """What a drawing shows as arrows: every flow, then each lock's DNS."""
        drawn = [Edge(f.source, f.dest, edge_label(f), bool(f.withdrawn)) for f in self.flows]
        for lock in self.locks:
            drawn.extend(Edge(Party(CONTAINER, lock.owner), Party(EXTERNAL, server), DNS_TEXT, bool(lock.withdrawn))
                         for server in lock.dns)
        return drawn

    def parties(self) -> list[Party]:
        """Every party of an edge or lock, once, in a stable order (by kind, then name)."""
        order = {EXTERNAL: 0, CONTAINER: 1, HOST: 2}
        seen = {p.key: p for e in self.edges() for p in (e.source, e.dest)}
        seen.update({(CONTAINER, lock.owner): Party(CONTAINER, lock.owner) for lock in self.locks})
        return sorted(seen.values(), key=lambda p: (order.get(p.kind, 3), p.name))

    def container(self, name: str):
        return next((c for c in self.containers if c[0] == name), (name, "", ()))

    def lock_of(self, name: str) -> Lock | None:
        return next((lock for lock in self.locks if lock.owner == name), None)

    def passing(self, lock: Lock) -> list[Flow]:
        """LOCK's owner's flows that its lock lets through (outbound and add-input rules)."""
        return [f for f in self.flows if f.owner == lock.owner and f.passes_lock]


# -- building ---------------------------------------------------------------


def _party(side: AddressSpec, owner: str) -> Party:
    if side.kind is AddressKind.SELF:
        return Party(CONTAINER, owner)
    if side.kind is AddressKind.CONTAINER:
        return Party(CONTAINER, side.value)
    if side.kind is AddressKind.HOST:
        return Party(HOST, "host")
    return Party(EXTERNAL, side.text)


def _network_of(spec: RuleSpec, source: str, dest: str, snapshot: Snapshot) -> str:
    """The network of the owner's address in a placed rule ('' when not found)."""
    own = source if spec.source.kind is AddressKind.SELF else dest
    address = own.split("/")[0]
    container = snapshot.find(spec.owner)
    for endpoint in container.endpoints if container else ():
        if address in (endpoint.ip, endpoint.ip6):
            return endpoint.network
    return ""


def flow_of(spec: RuleSpec, snapshot: Snapshot, action: str, label: Origin | None = None) -> Flow:
    try:
        placed = tuple(
            Placement(r.family, _network_of(spec, r.source, r.dest, snapshot), r.source, r.dest)
            for r in resolve(spec, snapshot)
        )
        withdrawn = ""
    except (EngineError, FilterError) as exc:
        placed, withdrawn = (), str(exc)
    return Flow(
        action=action,
        owner=spec.owner,
        source=_party(spec.source, spec.owner),
        dest=_party(spec.dest, spec.owner),
        proto=spec.proto,
        sport=spec.sport,
        dport=spec.dport,
        filter=spec.filter_text,
        command=spec.describe(action),
        placed=placed,
        withdrawn=withdrawn,
        icmp_type=spec.icmp_type,
        label=label,
        passes_lock=is_outbound(spec) or (spec.kind is Kind.INPUT and spec.source.kind is AddressKind.SELF),
    )


def lock_of(asked_by, placed: list, withdrawn: str, snapshot: Snapshot) -> Lock:
    """A lock as the service found it (ServiceCore.egress_locks): ASKED_BY an
    egress.EgressSpec or a labels.LabelledLock, PLACED egress.resolve_lock's
    values (its ResolvedLocks and DNS rules), WITHDRAWN why not placed."""
    bridges = {n.bridge: n.name for n in snapshot.networks if n.bridge}
    networks = sorted({bridges.get(p.bridge, p.bridge) for p in placed if isinstance(p, ResolvedLock)})
    servers: list[str] = []
    for rule in placed:
        dns = isinstance(rule, ResolvedRule) and rule.outbound and rule.dport == DNS_PORT
        server = rule.dest.split("/")[0] if dns else ""
        if server and server not in servers:
            servers.append(server)
    return Lock(asked_by.owner, asked_by.policy.command(asked_by.owner), getattr(asked_by, "origin", None),
                tuple(networks), tuple(servers), withdrawn)


def build(specs: Iterable[RuleSpec], host_entries: dict[str, list[str]], snapshot: Snapshot,
          labelled: Iterable[LabelledRule] = (), locks: Iterable[tuple[object, list, str]] = ()) -> Graph:
    """The graph of the recorded rules SPECS, the label rules LABELLED and the
    egress LOCKS (ServiceCore.egress_locks) at the addresses of SNAPSHOT."""
    flows = tuple(flow_of(spec, snapshot, action_of(spec, host_entries)) for spec in specs) + tuple(
        flow_of(rule.spec, snapshot, rule.action, rule.origin) for rule in labelled)
    locked = tuple(lock_of(asked_by, placed, why, snapshot) for asked_by, placed, why in locks)
    names = sorted({p.name for f in flows for p in (f.source, f.dest) if p.kind == CONTAINER}
                   | {lock.owner for lock in locked})
    containers = []
    for name in names:
        found = snapshot.find(name)
        if found is None:
            containers.append((name, "", ()))
            continue
        addresses = tuple(Address(e.network, e.ip, e.ip6) for e in found.endpoints if e.ip or e.ip6)
        containers.append((name, found.state if found.has_address else found.state or "unknown", addresses))
    return Graph(flows, tuple(containers), locked)


# -- text -------------------------------------------------------------------

_SECTIONS = (
    ("ingress", "from outside"),
    ("internal", "between containers"),
    ("to-host", "to the Docker host"),
    ("from-host", "from the Docker host"),
    ("egress", "from containers to outside"),
)


def _party_text(party: Party) -> str:
    return party.name if party.kind != HOST else "host"


def render_text(graph: Graph) -> str:
    live = [f for f in graph.flows if not f.withdrawn]
    lines = [f"docker-fw graph: {len(graph.flows)} flow(s), {len(live)} in place, "
             f"{len(graph.flows) - len(live)} withdrawn"]
    if not graph.flows:
        lines.append("no rules recorded: nothing may reach any container (after 'docker-fw init')")
    known = {d for d, _ in _SECTIONS}
    sections = list(_SECTIONS) + sorted({(f.direction, f.direction) for f in live if f.direction not in known})
    width = max((len(_party_text(f.source)) for f in graph.flows), default=0)
    width = min(width, 40)
    for direction, title in sections:
        flows = [f for f in live if f.direction == direction]
        if not flows:
            continue
        lines.append("")
        lines.append(f"{title}:")
        for flow in flows:
            dest = f"{_party_text(flow.dest)}:{flow.port_text}"
            where = "; ".join(
                f"{p.source} -> {p.dest}" + (f" on {p.network}" if p.network else "") for p in flow.placed
            )
            extra = f"  --filter {flow.filter}" if flow.filter else ""
            sport = f" from port {flow.sport}" if flow.sport else ""
            lines.append(f"  {_party_text(flow.source):<{width}} -> {dest}{sport}  [{where}]{extra}"
                         f"{_origin_note(flow)}")
    withdrawn = [f for f in graph.flows if f.withdrawn]
    if withdrawn:
        lines.append("")
        lines.append("withdrawn (recorded, not applied now):")
        for flow in withdrawn:
            lines.append(f"  {_party_text(flow.source):<{width}} -> {_party_text(flow.dest)}:{flow.port_text}"
                         f"  ({flow.withdrawn}){_origin_note(flow)}")
    if graph.locks:
        lines.append("")
        lines.append("egress locked (new connections out dropped, but for):")
        for lock in graph.locks:
            lines.extend(_lock_lines(graph, lock))
    return "\n".join(one_line(line) for line in lines)


def _origin_note(flow: Flow) -> str:
    return f"  ({flow.origin_text})" if flow.label is not None else ""


def _lock_lines(graph: Graph, lock: Lock) -> list[str]:
    asked = lock.command + (f"; {lock.origin_text}" if lock.label is not None else "")
    if lock.withdrawn:
        return [f"  {lock.owner}  ({asked})  withdrawn: {lock.withdrawn}"]
    lines = [f"  {lock.owner}  ({asked})"]
    if lock.networks:
        lines.append(f"    its own networks: {', '.join(lock.networks)} (Docker's rules and add-internal decide there)")
    for flow in graph.passing(lock):
        state = f"  withdrawn: {flow.withdrawn}" if flow.withdrawn else ""
        lines.append(f"    -> {_party_text(flow.dest)}:{flow.port_text}  ({flow.action} rule){_origin_note(flow)}{state}")
    for server in lock.dns:
        lines.append(f"    -> {server}:53/udp,tcp  (DNS: a name server of its own)")
    if not graph.passing(lock) and not lock.dns:
        lines.append("    nothing outside its own networks (no outbound rule, no name server outside it)")
    return lines


# -- json -------------------------------------------------------------------


def as_json_data(graph: Graph) -> dict:
    """The JSON document (README: 'graph --format json' lists its keys)."""
    return {
        "version": JSON_VERSION,
        "containers": [
            {
                "name": name,
                "state": state,
                "addresses": [{"network": a.network, "ipv4": a.ipv4 or None, "ipv6": a.ipv6 or None}
                              for a in addresses],
            }
            for name, state, addresses in graph.containers
        ],
        "flows": [
            {
                "direction": f.direction,
                "action": f.action,
                "owner": f.owner,
                "source": {"kind": f.source.kind, "name": f.source.name},
                "dest": {"kind": f.dest.kind, "name": f.dest.name},
                "proto": f.proto,
                "sport": ports_value(f.sport),
                "dport": ports_value(f.dport),
                "icmp_type": f.icmp_type or None,
                "filter": f.filter or None,
                "command": f.command,
                "origin": ORIGIN_STORE if f.label is None else ORIGIN_LABEL,
                "label": label_record(f.label),
                "in_place": not f.withdrawn,
                "withdrawn": f.withdrawn or None,
                "placed": [
                    {"family": p.family, "network": p.network or None, "source": p.source, "dest": p.dest}
                    for p in f.placed
                ],
            }
            for f in graph.flows
        ],
        "egress": [
            {
                "container": lock.owner,
                "policy": "deny",
                "command": lock.command,
                "origin": ORIGIN_STORE if lock.label is None else ORIGIN_LABEL,
                "label": label_record(lock.label),
                "in_place": not lock.withdrawn,
                "withdrawn": lock.withdrawn or None,
                "networks": list(lock.networks),
                "dns": list(lock.dns),
                "outbound": [graph.flows.index(f) for f in graph.passing(lock)],
            }
            for lock in graph.locks
        ],
    }


def render_json(graph: Graph) -> str:
    return json.dumps(as_json_data(graph), sort_keys=True, ensure_ascii=True, indent=2)


# -- node labels shared by dot, mermaid and html ----------------------------------


def node_lines(graph: Graph, party: Party) -> list[str]:
    """A node's label, one item per line: the name, then (containers) its addresses."""
    if party.kind == HOST:
        return ["Docker host"]
    if party.kind == EXTERNAL:
        return [party.name]
    name, state, addresses = graph.container(party.name)
    lines = [name]
    lines.extend(f"{a.ipv4 or a.ipv6} ({a.network})" for a in addresses)
    if state not in ("running", "paused"):
        lines.append(state or "not found")
    lock = graph.lock_of(party.name)
    if lock is not None:
        lines.append("egress locked" + (" (withdrawn)" if lock.withdrawn else ""))
    return lines


def _ids(graph: Graph) -> dict[tuple[str, str], str]:
    return {p.key: f"n{i}" for i, p in enumerate(graph.parties())}


def edge_label(flow: Flow) -> str:
    label = flow.port_text
    if flow.sport:
        label += f" from {flow.sport}"
    if flow.filter:
        label += " (filtered)"
    if flow.label is not None:
        label += f" [{flow.label.name}:{flow.label.line}]"  # the label line it comes from
    if flow.withdrawn:
        label += " withdrawn"
    return label


# -- dot ----------------------------------------------------------------------


def dot_quote(text: str) -> str:
    """TEXT as a Graphviz double-quoted string, shown as it is.

    Inside quotes dot only treats backslash and the quote specially; labels
    also read escape sequences (\\n, \\l, \\N...) and HTML entities, so the
    backslash is doubled and '&' written as an entity.  Control characters
    were escaped to printable text first (one_line).
    """
    text = one_line(text).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{text}"'


def _dot_label(lines: list[str]) -> str:
    # Joined after quoting each line: '\n' is dot's line break, not the name's.
    return '"' + "\\n".join(dot_quote(line)[1:-1] for line in lines) + '"'


_DOT_SHAPES = {EXTERNAL: "ellipse", CONTAINER: "box", HOST: "house"}


def render_dot(graph: Graph) -> str:
    ids = _ids(graph)
    out = [
        "digraph docker_fw {",
        '  graph [rankdir=LR, label="docker-fw: allowed flows", labelloc=t, fontname="sans-serif"];',
        '  node [fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize=10];',
    ]
    for party in graph.parties():
        style = ', style="rounded"' if party.kind == CONTAINER else ""
        out.append(f"  {ids[party.key]} [shape={_DOT_SHAPES[party.kind]}{style}, "
                   f"label={_dot_label(node_lines(graph, party))}];")
    for edge in graph.edges():
        style = ', style=dashed, color="gray50", fontcolor="gray50"' if edge.withdrawn else ""
        out.append(f"  {ids[edge.source.key]} -> {ids[edge.dest.key]} [label={dot_quote(edge.label)}{style}];")
    out.append("}")
    return "\n".join(out)


# -- mermaid --------------------------------------------------------------------

_MERMAID_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/-")


def mermaid_text(text: str) -> str:
    """TEXT for a Mermaid label: anything but plain characters as an entity code
    (#34; for '"'), so no quote, bracket, pipe, '<' or markdown gets through."""
    return "".join(ch if ch in _MERMAID_PLAIN else f"#{ord(ch)};" for ch in text)


_MERMAID_SHAPES = {EXTERNAL: ('(["', '"])'), CONTAINER: ('["', '"]'), HOST: ('[/"', '"\\]')}


def render_mermaid(graph: Graph) -> str:
    ids = _ids(graph)
    out = ["flowchart LR"]
    for party in graph.parties():
        start, end = _MERMAID_SHAPES[party.kind]
        label = "<br/>".join(mermaid_text(line) for line in node_lines(graph, party))
        out.append(f"  {ids[party.key]}{start}{label}{end}")
    for edge in graph.edges():
        arrow = "-.->" if edge.withdrawn else "-->"
        out.append(f'  {ids[edge.source.key]} {arrow}|"{mermaid_text(edge.label)}"| {ids[edge.dest.key]}')
    return "\n".join(out)


# -- html -------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
.summary { color: #555; }
svg text { font-size: 12px; }
.node rect { fill: #eef4fb; stroke: #3a6ea5; }
.node.external rect { fill: #fdf2e3; stroke: #b5762a; }
.node.host rect { fill: #eaf6ea; stroke: #3c8a3c; }
.edge path { fill: none; stroke: #444; stroke-width: 1.4; }
.edge.withdrawn path { stroke: #aaa; stroke-dasharray: 5 4; }
.edge text { fill: #333; }
.edge.withdrawn text { fill: #999; }
table { border-collapse: collapse; margin-top: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.withdrawn td { color: #888; }
.origin { color: #6a4c93; font-size: 0.9em; }
h2 { font-size: 1.1em; margin-top: 1.5em; }
.node.locked rect { stroke: #b03030; stroke-width: 2; }
code { font-size: 0.9em; }
"""

_ROW, _LINE, _BOX_W, _GAP = 26, 15, 230, 260
_BOLD = ' font-weight="bold"'
_EDGE_SPACING = 22  # pixels between two edges meeting one box


def _esc(text: str) -> str:
    return html.escape(one_line(text), quote=True)


def _svg(graph: Graph) -> str:
    """A left-to-right drawing: every source on the left, every destination on the
    right; each edge ends at its own point of its destination's box, its label
    (port/protocol) just before the arrow head."""
    order = {p.key: i for i, p in enumerate(graph.parties())}
    edges = graph.edges()
    sources = sorted({e.source for e in edges}, key=lambda p: order[p.key])
    dests = sorted({e.dest for e in edges}, key=lambda p: order[p.key])
    outgoing: dict[tuple[str, str], list[int]] = {}
    incoming: dict[tuple[str, str], list[int]] = {}
    for n, edge in enumerate(edges):
        outgoing.setdefault(edge.source.key, []).append(n)
        incoming.setdefault(edge.dest.key, []).append(n)
    # Edges meet a box in the order of the boxes at their other ends: fewer crossings.
    for ends, other in ((outgoing, "dest"), (incoming, "source")):
        for key in ends:
            ends[key].sort(key=lambda n: order[getattr(edges[n], other).key])
    boxes: dict[tuple[str, tuple[str, str]], tuple[float, float, float]] = {}
    parts: list[str] = []

    def column(parties: list[Party], side: str, x: float, ends: dict) -> float:
        y = 10.0
        for party in parties:
            lines = node_lines(graph, party)
            height = max(10 + _LINE * len(lines), _EDGE_SPACING * len(ends[party.key]) + 8)
            boxes[(side, party.key)] = (x, y, height)
            text = "".join(
                f'<text x="{x + 8}" y="{y + 5 + _LINE * (i + 1) - 3}"{_BOLD if i == 0 else ""}>{_esc(line[:40])}</text>'
                for i, line in enumerate(lines)
            )
            locked = " locked" if graph.lock_of(party.name) is not None and party.kind == CONTAINER else ""
            parts.append(
                f'<g class="node {party.kind}{locked}" data-name="{_esc(party.name)}">'
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{height}" rx="6"/>{text}</g>'
            )
            y += height + _ROW
        return y

    def anchor(side: str, key: tuple[str, str], n: int, ends: dict) -> float:
        _, y, height = boxes[(side, key)]
        mine = ends[key]
        return y + height * (mine.index(n) + 1) / (len(mine) + 1)

    left = column(sources, "src", 10, outgoing)
    right = column(dests, "dst", 10 + _BOX_W + _GAP, incoming)
    for n, edge in enumerate(edges):
        x1, y1 = 10 + _BOX_W, anchor("src", edge.source.key, n, outgoing)
        x2, y2 = 10 + _BOX_W + _GAP, anchor("dst", edge.dest.key, n, incoming)
        mid = (x1 + x2) / 2
        kind = "edge withdrawn" if edge.withdrawn else "edge"
        parts.append(
            f'<g class="{kind}"><path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 8},{y2}" marker-end="url(#arrow)"/>'
            f'<text x="{x2 - 12}" y="{y2 - 3}" text-anchor="end">{_esc(edge.label)}</text></g>'
        )
    width = int(10 + _BOX_W * 2 + _GAP + 10)
    height = int(max(left, right, 40))
    marker = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="2" refY="5" markerWidth="8" markerHeight="8" '
              'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="allowed flows">{marker}{"".join(parts)}</svg>')


def render_html(graph: Graph) -> str:
    live = sum(1 for f in graph.flows if not f.withdrawn)
    svg = _svg(graph) if graph.flows or graph.locks else "<p>No rules recorded.</p>"
    rows = []
    for flow in graph.flows:
        where = "<br>".join(
            _esc(f"{p.source} -> {p.dest}" + (f" on {p.network}" if p.network else "")) for p in flow.placed
        ) or _esc(flow.withdrawn)
        rows.append(
            f'<tr class="flow{" withdrawn" if flow.withdrawn else ""}" data-direction="{_esc(flow.direction)}">'
            f'<td class="source">{_esc(_party_text(flow.source))}</td>'
            f'<td class="dest">{_esc(_party_text(flow.dest))}</td>'
            f'<td class="port">{_esc(flow.port_text)}</td>'
            f"<td>{_esc(flow.direction)}</td>"
            f'<td class="state">{"withdrawn" if flow.withdrawn else "in place"}</td>'
            f"<td>{where}</td><td><code>{_esc(flow.command)}</code>"
            + (f'<br><span class="origin">{_esc(flow.origin_text)}</span>' if flow.label is not None else "")
            + "</td></tr>"
        )
    table = (
        "<table><thead><tr><th>from</th><th>to</th><th>port</th><th>direction</th><th>state</th>"
        "<th>addresses today</th><th>recorded by</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        if rows else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # Nothing from outside this page, and no script at all: names are hostile.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        "<title>docker-fw: allowed flows</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>docker-fw: allowed flows</h1>"
        f'<p class="summary">{len(graph.flows)} flow(s), {live} in place, {len(graph.flows) - live} withdrawn. '
        "What no flow allows is dropped (after <code>docker-fw init</code>).</p>"
        f"{svg}{table}{_locks_table(graph)}</body></html>\n"
    )


def _locks_table(graph: Graph) -> str:
    if not graph.locks:
        return ""
    rows = []
    for lock in graph.locks:
        reach = [f"its own networks: {', '.join(lock.networks)}"] if lock.networks else []
        reach += [f"{_party_text(f.dest)}:{f.port_text} ({f.action} rule" + (f", {f.origin_text})" if f.label else ")")
                  for f in graph.passing(lock)]
        reach += [f"{server}:53/udp,tcp (DNS)" for server in lock.dns]
        rows.append(
            f'<tr class="lock{" withdrawn" if lock.withdrawn else ""}"><td class="owner">{_esc(lock.owner)}</td>'
            f'<td class="state">{"withdrawn: " + _esc(lock.withdrawn) if lock.withdrawn else "in place"}</td>'
            f'<td class="reach">{"<br>".join(_esc(r) for r in reach) or "nothing outside its own networks"}</td>'
            f"<td><code>{_esc(lock.command)}</code>"
            + (f'<br><span class="origin">{_esc(lock.origin_text)}</span>' if lock.label is not None else "")
            + "</td></tr>"
        )
    return ("<h2>Egress locked</h2><p class=\"summary\">New connections these containers start are dropped, "
            "but for what is listed (and replies).</p><table class=\"locks\"><thead><tr><th>container</th>"
            "<th>state</th><th>may still reach</th><th>locked by</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


RENDERERS = {
    "text": render_text,
    "json": render_json,
    "dot": render_dot,
    "mermaid": render_mermaid,
    "html": render_html,
}


def render(graph: Graph, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return RENDERERS[fmt](graph)


def show(service, fmt: str) -> str:
    """'docker-fw graph': the recorded rules, the containers' label rules and the
    egress locks at the engine's addresses, printed in FMT (refused labels warned about)."""
    labelled = service.label_rules()
    for message in labelled.errors(None):
        service.warn(message)
    graph = build(service.store.rules(), service.store.host_entries(), service.engine.snapshot(),
                  labelled.rules, service.egress_locks(None))
    text = render(graph, fmt)
    for line in text.split("\n"):
        service.out(line)
    return text
