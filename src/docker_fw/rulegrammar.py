"""The rule grammar: command-line options or one rule line -> a validated rule request.

One grammar for every place a rule is written: the command line
(``docker-fw add web --source ...``), a line of a ``--from`` file
(``web --source ...``, or a whole line as 'ls' prints it) and, next, a
container's own label (``add --source ... --dport 80``: action first, the
container is the label's owner).  Everything about a rule that can be checked
without the engine is checked here, once; the service layer adds only what
needs the engine (names and addresses against the running containers).

An error carries where the rule came from (an ``Origin``: the command line,
a file and line, standard input and line, a label and line) as a field, so
that a caller can tell which line failed without reading the message.

Light on purpose: imports neither the engine nor the service layer, so that
a usage error is found (and '--help' printed) without loading them.
"""

from __future__ import annotations

import argparse
import enum
import functools
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from .values import dataclass

TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:
    from typing import NoReturn

from . import filtergrammar
from .errors import DockerFwError, UsageError
from .model import (
    BRIDGE_PLACEHOLDER,
    CONTAINER_NAME_RE,
    ICMP_TYPES,
    MAX_PORT_SLOTS,
    PROTOCOLS,
    AddressKind,
    AddressSpec,
    EgressPolicy,
    Kind,
    Ports,
    RuleSpec,
    parse_address,
    parse_filter,
    parse_icmp_type,
    parse_ports,
)

ADD_ACTIONS = ("add", "add-input", "add-internal", "add-two-ways")
# What a container's label may ask for: the add actions, and allow.
LABEL_ACTIONS = (*ADD_ACTIONS, "allow", "egress")

ADDRESS_HELP = (
    "an address specification: '.' (the container the rule is for), '/' (the "
    "Docker host: the gateway of the container's network), a container name or id, "
    "or an IPv4 or IPv6 address or subnet (an address without a prefix means /32, /128)"
)

# The rule options, by argparse destination, and how they are spelt in messages.
OPTION_NAMES = {
    "source": "--source", "sport": "--sport", "dest": "--dest", "dport": "--dport",
    "protocol": "--protocol", "icmp_type": "--icmp-type", "filter": "--filter",
}

PORTS_HELP = (
    "a port, a range LOW:HIGH or a comma-separated list of both (80,443,9100:9200); at most "
    f"{MAX_PORT_SLOTS} ports, a range counting two (the kernel's multiport match)"
)


class OriginKind(enum.Enum):
    ARGV = "argv"  # the command line
    FILE = "file"  # a line of a --from FILE
    STDIN = "stdin"  # a line of --from -
    LABEL = "label"  # a line of a container's label (issue #11)
    LEGACY = "legacy"  # a rule of the original docker-fw's extraRules.json (import-legacy)


@dataclass(frozen=True)
class Origin:
    """Where a rule was written: the command line, or a line of a file, of
    standard input or of a container's label (NAME: the file's path, the label's key)."""

    kind: OriginKind = OriginKind.ARGV
    name: str = ""
    line: int = 0

    @classmethod
    def argv(cls) -> Origin:
        return cls()

    @classmethod
    def file(cls, path: str, line: int) -> Origin:
        return cls(OriginKind.FILE, path, line)

    @classmethod
    def stdin(cls, line: int) -> Origin:
        return cls(OriginKind.STDIN, "stdin", line)

    @classmethod
    def label(cls, key: str, line: int) -> Origin:
        return cls(OriginKind.LABEL, key, line)

    @classmethod
    def legacy_rule(cls, path: str, index: int) -> Origin:
        """Rules[INDEX] (from 0, as in the JSON) of the old docker-fw's file at PATH."""
        return cls(OriginKind.LEGACY, path, index)

    @classmethod
    def of_input(cls, path: str, line: int) -> Origin:
        """A line of --from PATH, where '-' is standard input."""
        return cls.stdin(line) if path == "-" else cls.file(path, line)

    def __str__(self) -> str:
        """How messages name it: '' for the command line (the action names it
        there), 'PATH line N', 'stdin line N', 'label KEY line N', 'PATH Rules[N]'."""
        if self.kind is OriginKind.ARGV:
            return ""
        if self.kind is OriginKind.LABEL:
            return f"label {self.name} line {self.line}"
        if self.kind is OriginKind.LEGACY:
            return f"{self.name} Rules[{self.line}]"
        return f"{self.name} line {self.line}"

    def error(self, exc: DockerFwError) -> DockerFwError:
        """EXC, as raised for a rule from here: a usage error becomes a RuleError
        with this origin (one that has an origin keeps it); an engine or firewall
        error keeps its type (its exit code) and is prefixed with the origin."""
        if isinstance(exc, RuleError):
            return exc
        if isinstance(exc, UsageError):
            return RuleError(str(exc), self)
        if self.kind is OriginKind.ARGV:
            return exc
        return type(exc)(f"{self}: {exc}")


ARGV = Origin()


class RuleError(UsageError):
    """A rule that is not valid, and where it was written (exit code 2).

    ``str()`` is 'ORIGIN: MESSAGE' ('web.rules line 3: --source is
    mandatory'), or MESSAGE alone for the command line.
    """

    def __init__(self, message: str, origin: Origin = ARGV):
        self.message = message
        self.origin = origin
        where = str(origin)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class AddRequest:
    """An add action's rule as written: strings, not yet looked up in the engine."""

    container: str
    source: str
    dest: str = "."
    sport: Ports = Ports()
    dport: Ports = Ports()
    proto: str = "tcp"
    filter: tuple[str, ...] = ()
    origin: Origin = ARGV
    icmp_type: str = ""

    def __post_init__(self) -> None:
        # Ports as typed (an int or text is taken too: Ports.of checks it).
        object.__setattr__(self, "sport", Ports.of(self.sport, "--sport"))
        object.__setattr__(self, "dport", Ports.of(self.dport, "--dport"))

    @property
    def where(self) -> str:
        """The origin as messages name it (e.g. 'rules.txt line 3'); '' for argv."""
        return str(self.origin)


@dataclass(frozen=True)
class AllowRequest:
    """An allow action: external addresses, to every port CONTAINER publishes."""

    container: str
    addresses: tuple[str, ...]
    origin: Origin = ARGV


@dataclass(frozen=True)
class EgressRequest:
    """'egress CONTAINER deny|allow' (or a label line 'egress deny'), checked."""

    container: str
    policy: EgressPolicy
    origin: Origin = ARGV


def egress_request(container: str, policy: str, origin: Origin = ARGV) -> EgressRequest:
    """The validated egress request; RuleError with ORIGIN otherwise."""
    try:
        if not CONTAINER_NAME_RE.match(container or ""):
            raise UsageError(f"not a container name or id: {container[:40]!r}")
        return EgressRequest(container.lstrip("/"), EgressPolicy.from_text(policy), origin)
    except UsageError as exc:
        raise origin.error(exc) from None


@dataclass(frozen=True)
class LabelRule:
    """One rule line of a container's label: its action and its request."""

    action: str
    request: AddRequest | AllowRequest | EgressRequest


class ParserError(UsageError):
    """argparse's message about the command line, already naming the program
    ('docker-fw add: the following arguments are required: ...')."""


def _help_width() -> int:
    """The width argparse's HelpFormatter finds for itself, without the import of
    shutil (and with it bz2, lzma and fnmatch) it makes to find it, once for
    every option added: shutil.get_terminal_size()'s columns, less 2."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    try:
        lines = int(os.environ["LINES"])
    except (KeyError, ValueError):
        lines = 0
    if columns <= 0 or lines <= 0:
        try:
            found = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            found = 80
        if columns <= 0:
            columns = found or 80
    return columns - 2


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so that a rule line reports its origin."""

    def error(self, message: str) -> NoReturn:
        raise ParserError(f"{self.prog}: {message}")

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_help_width())


class _LineParser(Parser):
    """A rule line's parser: its message is the origin's, without a program name."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    """--source, --sport, --dest, --dport, --protocol and --filter (the command line's and a line's)."""
    parser.add_argument("-s", "--source", help="source: " + ADDRESS_HELP + " (mandatory)")
    parser.add_argument("--sport", help="source port: " + PORTS_HELP)
    parser.add_argument("-d", "--dest", help="destination: " + ADDRESS_HELP + " (default '.')")
    parser.add_argument(
        "--dport", help="destination port: " + PORTS_HELP + " (mandatory for add-input and "
        "add-internal, except with --protocol=icmp)"
    )
    parser.add_argument(
        "-p", "--protocol", choices=PROTOCOLS,
        help="protocol (default tcp); icmp is IPv4's ICMP (ICMPv6 is not supported)",
    )
    parser.add_argument(
        "--icmp-type", metavar="TYPE",
        help="with --protocol=icmp: the ICMP type, a number 0-255 or a name iptables knows ("
        + ", ".join(n for n in ("echo-request", "echo-reply", "destination-unreachable", "time-exceeded"))
        + f", ... {len(ICMP_TYPES)} names in all); default any",
    )
    parser.add_argument(
        "--filter",
        help="extra iptables match conditions, e.g. \"! -i @bridge -o @bridge\"; @bridge is "
        "the bridge of the network the rule is applied on, looked up each time. Only these, each "
        "option and each value a word of its own, '!' directly before an option it may negate: "
        f"{filtergrammar.describe_supported()}. At most {filtergrammar.MAX_CHARS} characters and "
        f"{filtergrammar.MAX_WORDS} words, printable ASCII",
    )


def given_options(options: Mapping[str, str | None]) -> list[str]:
    """The rule options (as spelt on the command line) that OPTIONS sets."""
    return [spelling for dest, spelling in OPTION_NAMES.items() if options.get(dest) is not None]


# -- checks that need no engine ---------------------------------------------------


def kind_of(action: str) -> Kind:
    """Where an add action's rule lives: add-two-ways' is an add-internal rule."""
    return Kind.INTERNAL if action == "add-two-ways" else Kind.from_action(action)


def validate(action: str, spec: RuleSpec) -> None:
    """The checks every rule of ACTION passes: the ones written with the command
    line or a line (by checked_spec) and, again, once its names and addresses
    are normalised against the engine (by the service layer)."""
    spec.validate()
    if action == "add-two-ways" and spec.source.kind is not AddressKind.CONTAINER:
        raise UsageError("add-two-ways needs --source to be another container")


# Cached: add_request() checks each request, and the service layer checks it
# again to record it (both immutable; a refused one raises, and is not cached).
@functools.lru_cache(maxsize=4096)
def checked_spec(action: str, request: AddRequest) -> RuleSpec:
    """REQUEST as a rule of ACTION, checked as far as it can be without the engine
    (the container's own name means '.'); RuleError, with the request's origin, otherwise."""
    owner = request.container.lstrip("/")

    def side(text: str) -> AddressSpec:
        spec = parse_address(text)
        if spec.kind is AddressKind.CONTAINER and spec.value == owner:
            return AddressSpec.self_()
        return spec

    try:
        spec = RuleSpec(
            owner=owner, kind=kind_of(action), source=side(request.source), dest=side(request.dest),
            proto=request.proto, sport=request.sport, dport=request.dport, filter=request.filter,
            icmp_type=request.icmp_type,
        )
        validate(action, spec)
    except UsageError as exc:
        raise request.origin.error(exc) from None
    return spec


def allow_addresses(texts: tuple[str, ...] | list[str]) -> list[AddressSpec]:
    """allow's addresses: literal IPv4 or IPv6 addresses or subnets only."""
    specs = []
    for text in texts:
        spec = parse_address(text)
        if spec.kind is not AddressKind.NETWORK:
            raise UsageError(f"allow takes IPv4 addresses or subnets (or IPv6 ones), not {text!r}")
        specs.append(spec)
    return specs


def allow_requests(container: str, ports: list[tuple[int, str]], address: AddressSpec, origin: Origin = ARGV) -> list[AddRequest]:
    """allow's rules for one ADDRESS: an 'add' rule to each published (PORT,
    PROTOCOL) of CONTAINER, for traffic from outside the bridge only.  The
    filter says @bridge, not the bridge's name today: re-creating the network
    (docker compose down/up) gives it another bridge."""
    bridge = BRIDGE_PLACEHOLDER
    return [
        AddRequest(
            container=container, source=address.text, dest=".", dport=port, proto=proto,
            filter=("!", "-i", bridge, "-o", bridge), origin=origin,
        )
        for port, proto in ports
    ]


# -- lines: --from inputs and labels ---------------------------------------------------


def unprintable(line: str) -> str | None:
    """The first character of LINE that is neither printable nor a tab, else None."""
    return next((ch for ch in line if not (ch.isprintable() or ch == "\t")), None)


def checked_lines(data: bytes, max_lines: int, what: str, origin_of: Callable[[int], Origin]) -> list[str]:
    """The lines of a --from input or a label (WHAT names it): at most MAX_LINES,
    strict UTF-8, split on '\\n' only.

    Not str.splitlines(), which also splits on \\x0b, \\x0c, \\x1c-\\x1e, \\x85
    and U+2028/U+2029: those are refused with the origin of their line
    (ORIGIN_OF(number)) instead, as is every other character that is not
    printable (NUL, CR, terminal escapes); a tab is whitespace.
    """
    chunks = data.split(b"\n")
    if not chunks[-1]:
        chunks.pop()  # what follows the newline that ends the last line
    if len(chunks) > max_lines:
        raise UsageError(f"{what}: more than {max_lines:,} lines (the limit)")
    lines = []
    for number, chunk in enumerate(chunks, 1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuleError(
                f"not UTF-8 text (byte 0x{chunk[exc.start]:02x} at offset {exc.start})", origin_of(number)
            ) from None
        bad = unprintable(line)
        if bad is not None:
            raise RuleError(f"holds a control or unprintable character (U+{ord(bad):04X})", origin_of(number))
        lines.append(line)
    return lines


# -- requests: from command-line options, from a line ---------------------------------


def add_request(action: str, container: str | None, options: Mapping[str, str | None], origin: Origin = ARGV) -> AddRequest:
    """The validated request of ACTION for CONTAINER with the rule OPTIONS as typed
    (argparse destinations: source, sport, dest, dport, protocol, filter; None:
    not given); RuleError with ORIGIN otherwise."""
    try:
        if not container:
            raise UsageError("name a container, or use --from FILE")
        source, dest = options.get("source"), options.get("dest")
        if source is None:
            raise UsageError("--source is mandatory")
        if source == "" or dest == "":
            raise UsageError("empty address specification")
        request = AddRequest(
            container=container,
            source=source,
            dest=dest if dest is not None else ".",
            sport=parse_ports(options.get("sport"), "--sport"),
            dport=parse_ports(options.get("dport"), "--dport"),
            proto=options.get("protocol") or "tcp",
            filter=parse_filter(options.get("filter")),
            origin=origin,
            icmp_type=parse_icmp_type(options.get("icmp_type")),
        )
        if request.proto not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}: {request.proto!r}")
    except UsageError as exc:
        raise origin.error(exc) from None
    checked_spec(action, request)
    return request


def allow_request(container: str, addresses: tuple[str, ...] | list[str], origin: Origin = ARGV) -> AllowRequest:
    """The validated allow request; RuleError with ORIGIN otherwise."""
    try:
        allow_addresses(addresses)
    except UsageError as exc:
        raise origin.error(exc) from None
    return AllowRequest(container=container, addresses=tuple(addresses), origin=origin)


def _is_blank(line: str) -> bool:
    """A blank line or a '#' comment: no rule."""
    return not line.strip() or line.lstrip().startswith("#")


# What shlex gives a meaning to beyond splitting at ' ', tab, CR and LF.
_SHELL_QUOTING = frozenset("'\"\\")
_SHELL_BLANKS = str.maketrans("\t\r\n", "   ")


def _words(line: str) -> list[str]:
    """A line's words, as a shell (without one) would split them."""
    plain = line.translate(_SHELL_BLANKS)
    if plain.isascii() and plain.isprintable() and _SHELL_QUOTING.isdisjoint(plain):
        return plain.split()  # shlex.split's words, at a tenth of its cost (most lines)
    try:
        return shlex.split(line)
    except ValueError as exc:  # an open quotation
        raise UsageError(str(exc)) from None


# Made once: building a parser costs more than parsing a line with it, and
# parse_args() leaves the parser as it was.
@functools.cache
def _container_line_parser() -> _LineParser:
    """CONTAINER [rule options]: a line of a --from file."""
    parser = _LineParser(prog="--from line", add_help=False)
    parser.add_argument("container")
    add_rule_options(parser)
    return parser


def _options(namespace: argparse.Namespace) -> dict[str, str | None]:
    return {dest: getattr(namespace, dest) for dest in OPTION_NAMES}


# The option words plain_line_options() reads itself: each spelt in full as
# add_rule_options() spells it (argparse's abbreviations are left to argparse).
_OPTION_DESTS = {
    "-s": "source", "--source": "source", "--sport": "sport", "-d": "dest", "--dest": "dest",
    "--dport": "dport", "-p": "protocol", "--protocol": "protocol", "--icmp-type": "icmp_type",
    "--filter": "filter",
}
_LONG_OPTION_DESTS = {word: dest for word, dest in _OPTION_DESTS.items() if word.startswith("--")}


def plain_line_options(words: list[str]) -> tuple[str, dict[str, str | None]] | None:
    """The container and rule options (as _options() gives them) of a line's
    WORDS in the shape nearly every line has: the container first, then
    options spelt in full (the last of one given twice wins, as in argparse),
    each value the next word ('--dport 80') or after '=' ('--dport=80'), no
    value starting with '-' and a protocol argparse accepts.  None for anything else, which argparse parses (and
    words the error of): argparse costs about 50 us a line, most of a --from
    file's parse.  tests/unit/test_rulegrammar.py checks, over generated words,
    that whatever this returns is what argparse makes of the same words."""
    if not words or words[0].startswith("-"):
        return None
    options: dict[str, str | None] = dict.fromkeys(OPTION_NAMES)
    index, count = 1, len(words)
    while index < count:
        word = words[index]
        dest = _OPTION_DESTS.get(word)
        if dest is not None:
            if index + 1 == count:
                return None
            value = words[index + 1]
            index += 2
        else:
            name, equals, value = word.partition("=")
            dest = _LONG_OPTION_DESTS.get(name) if equals else None
            if dest is None:
                return None
            index += 1
        if value.startswith("-"):
            return None
        if dest == "protocol" and value not in PROTOCOLS:
            return None
        options[dest] = value
    return words[0], options


def parse_from_line(line: str, action: str, origin: Origin) -> AddRequest | None:
    """A line of a --from file of ACTION: 'CONTAINER [options]', or a whole
    command as 'docker-fw ls' prints it ('docker-fw ACTION CONTAINER ...'), whose
    action must be ACTION.  None for a blank line or a '#' comment; RuleError
    with ORIGIN for anything else that is not a valid rule."""
    if _is_blank(line):
        return None
    try:
        words = _words(line)
        if words and words[0] == "docker-fw":
            words = words[1:]
        if words and words[0] in ADD_ACTIONS:
            if words[0] != action:
                raise UsageError(f"this line is for {words[0]}, not {action}")
            words = words[1:]
        plain = plain_line_options(words)
        if plain is None:
            parsed = _container_line_parser().parse_args(words)
            plain = parsed.container, _options(parsed)
    except UsageError as exc:
        raise origin.error(exc) from None
    container, options = plain
    return add_request(action, container, options, origin)


@functools.cache
def _label_line_parser() -> _LineParser:
    """ACTION [rule options | addresses]: a line of a container's label."""
    parser = _LineParser(prog="label line", add_help=False)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=_LineParser, required=True)
    for name in ADD_ACTIONS:
        add_rule_options(sub.add_parser(name, add_help=False))
    sub.add_parser("allow", add_help=False).add_argument("addresses", nargs="+", metavar="address")
    sub.add_parser("egress", add_help=False).add_argument("policy", metavar="deny|allow")
    return parser


def parse_label_line(line: str, owner: str, origin: Origin) -> LabelRule | None:
    """A rule line of OWNER's label: the action first and no container (the label
    is OWNER's): 'allow 198.51.100.0/24 203.0.113.7', 'add --source=198.51.100.2
    --dport=80', 'add-internal --source=app --dport=5432', 'egress deny'.  None for a blank line
    or a '#' comment; RuleError with ORIGIN for anything else that is not a valid rule."""
    if _is_blank(line):
        return None
    try:
        words = _words(line)
        if words and words[0] not in LABEL_ACTIONS:
            raise UsageError(f"a label's rule starts with its action ({', '.join(LABEL_ACTIONS)}), not {words[0]!r}")
        parsed = _label_line_parser().parse_args(words)
    except UsageError as exc:
        raise origin.error(exc) from None
    if parsed.action == "allow":
        return LabelRule("allow", allow_request(owner, parsed.addresses, origin))
    if parsed.action == "egress":
        return LabelRule("egress", egress_request(owner, parsed.policy, origin))
    return LabelRule(parsed.action, add_request(parsed.action, owner, _options(parsed), origin))
