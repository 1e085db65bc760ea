"""Immutable values: address specifications and recorded rules.

A recorded rule (``RuleSpec``) names containers, never their addresses: the
addresses are looked up each time the rule is applied, which is what lets
``replay`` and ``start`` follow a container to a new IP after a restart.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import shlex
from .values import dataclass, field

from . import filtergrammar
from .errors import UsageError
from .filtergrammar import BRIDGE_PLACEHOLDER, FilterError

# Docker's own rule for container names (moby: daemon/names), with an optional
# leading slash as the API prints them.
CONTAINER_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

PROTOCOLS = ("tcp", "udp")

class Kind(enum.Enum):
    """The action a rule was recorded with, and which traffic it admits.

    Backend-neutral: where a backend puts each kind (iptables: which chain,
    reached from where, with which target) is that backend's business
    (backends/iptables/rules.py).  The value is the action's name, as the
    command line and the store spell it.
    """

    # Between an external address and a container: only to ports the engine
    # publishes (a match is handed to the engine's own rules, never accepted
    # outright: the seed's semantics).
    ADD = "add"
    # From a container to the Docker host itself (the host's input).
    INPUT = "add-input"
    # Between containers, or a container and the host, over a Docker network.
    INTERNAL = "add-internal"

    @property
    def action(self) -> str:
        return self.value

    @classmethod
    def from_action(cls, action: str) -> "Kind":
        for kind in cls:
            if kind.action == action:
                return kind
        raise UsageError(f"unknown rule action: {action}")


class AddressKind(enum.Enum):
    SELF = "self"  # '.': the container the rule is recorded for
    HOST = "host"  # '/': the Docker host (gateway of the shared network)
    CONTAINER = "container"  # another container, by name
    NETWORK = "network"  # a literal IPv4 or IPv6 address or subnet


@dataclass(frozen=True)
class AddressSpec:
    """One side of a rule, as the user meant it (``.``, ``/``, a name, a CIDR)."""

    kind: AddressKind
    value: str = ""  # container name, or canonical CIDR

    @classmethod
    def self_(cls) -> "AddressSpec":
        return cls(AddressKind.SELF)

    @classmethod
    def host(cls) -> "AddressSpec":
        return cls(AddressKind.HOST)

    @classmethod
    def container(cls, name: str) -> "AddressSpec":
        return cls(AddressKind.CONTAINER, name.lstrip("/"))

    @classmethod
    def network(cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> "AddressSpec":
        return cls(AddressKind.NETWORK, str(net))

    @property
    def text(self) -> str:
        """How the spec is written on the command line (and stored)."""
        if self.kind is AddressKind.SELF:
            return "."
        if self.kind is AddressKind.HOST:
            return "/"
        if self.kind is AddressKind.NETWORK and ":" not in self.value and self.value.endswith("/32"):
            return self.value[:-3]
        if self.kind is AddressKind.NETWORK and ":" in self.value and self.value.endswith("/128"):
            return self.value[:-4]
        return self.value

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        assert self.kind is AddressKind.NETWORK
        return ipaddress.ip_network(self.value)

    @property
    def family(self) -> int | None:
        """4 or 6 for a literal address or subnet; None for '.', '/' and containers."""
        if self.kind is not AddressKind.NETWORK:
            return None
        return 6 if ":" in self.value else 4

    @classmethod
    def from_text(cls, text: str) -> "AddressSpec":
        return parse_address(text)


def parse_ipv4_network(text: str) -> ipaddress.IPv4Network | None:
    """An IPv4 address (taken as /32) or subnet, else None.

    Host bits are cleared (``10.1.2.3/24`` -> ``10.1.2.0/24``) since that is
    what iptables matches and prints anyway.
    """
    if not text or not re.fullmatch(r"[0-9./]+", text):
        return None
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None


def parse_ipv6_network(text: str) -> ipaddress.IPv6Network | None:
    """An IPv6 address (taken as /128) or subnet, else None (host bits cleared)."""
    if not text or ":" not in text or not re.fullmatch(r"[0-9a-fA-F:./]+", text):
        return None
    try:
        return ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        return None


def parse_address(text: str) -> AddressSpec:
    """Parse an address specification as the seed accepted it.

    ``.`` (this container), ``/`` (the Docker host), an IPv4 or IPv6 address
    or subnet, or a container name or id.  Raises UsageError otherwise.
    """
    text = text.strip()
    if text == ".":
        return AddressSpec.self_()
    if text == "/":
        return AddressSpec.host()
    net = parse_ipv4_network(text)
    if net is not None:
        return AddressSpec.network(net)
    if ":" in text:
        net6 = parse_ipv6_network(text)
        if net6 is None:
            raise UsageError(f"invalid IPv6 address or subnet: {text!r}")
        if net6.network_address.is_loopback or net6.network_address.is_link_local:
            # Neither is ever routed through the host's FORWARD chain.
            raise UsageError(f"IPv6 loopback and link-local addresses cannot be matched: {text!r}")
        if net6.network_address.ipv4_mapped is not None:
            raise UsageError(f"IPv4-mapped IPv6 address: write the IPv4 address instead: {text!r}")
        return AddressSpec.network(net6)
    if re.fullmatch(r"[0-9./]+", text) and re.search(r"[./]", text):
        # All digits without a dot or slash is a valid container name or id
        # prefix ('8080', '123456789012'), not an address.
        raise UsageError(f"invalid IPv4 address or subnet: {text!r}")
    if not CONTAINER_NAME_RE.match(text):
        raise UsageError(
            f"invalid address specification {text!r}: expected '.', '/', an IPv4 "
            "or IPv6 address or subnet, or a container name/id"
        )
    return AddressSpec.container(text)


def parse_port(text: str | int | None, option: str) -> int:
    """A port number 1-65535; 0 means 'not given'."""
    if text is None or text == "":
        return 0
    text = str(text)
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"{option}: not a port number: {text!r}")
    port = int(text, 10)
    if not 1 <= port <= 65535:
        raise UsageError(f"{option}: port out of range 1-65535: {text}")
    return port


def parse_filter(text: str | None) -> tuple[str, ...]:
    """Split --filter into iptables words (like a shell would, without one) and
    check them against the allow-list grammar (filtergrammar); FilterError
    (a UsageError) names the first word it refuses."""
    if not text or not text.strip():
        return ()
    # Checked before splitting: the message must not carry what it refuses
    # (a newline, or a byte that is not UTF-8: argv decodes it to a surrogate).
    bad = next((i for i, c in enumerate(text) if not " " <= c <= "~"), None)
    if bad is not None:
        raise FilterError(
            f"--filter must be a single line of printable ASCII: character {bad + 1} "
            f"({ascii(text[bad])}) is not"
        )
    if len(text) > filtergrammar.MAX_CHARS:
        raise FilterError(f"--filter is too long: {len(text)} characters (at most {filtergrammar.MAX_CHARS})")
    try:
        tokens = tuple(shlex.split(text))
    except ValueError as exc:
        raise FilterError(f"--filter: {exc}") from None
    return filtergrammar.check_tokens(tokens).tokens


@dataclass(frozen=True)
class RuleSpec:
    """A firewall intent recorded for one container (the *owner*)."""

    owner: str  # container name, without leading slash
    kind: Kind
    source: AddressSpec
    dest: AddressSpec
    proto: str = "tcp"
    sport: int = 0  # 0: any
    dport: int = 0  # 0: any
    filter: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}: {self.proto!r}")

    def validate(self) -> None:
        """The seed's rules for a well-formed flow (checked before any lookup)."""
        kinds = (self.source.kind, self.dest.kind)
        if self.source == self.dest:
            raise UsageError("source and destination are the same")
        if AddressKind.SELF not in kinds:
            raise UsageError(
                "either --source or --dest must be '.' (the container the rule is for)"
            )
        extra = self.checked_filter()
        other = self.dest if self.source.kind is AddressKind.SELF else self.source
        if extra.family and other.family and extra.family != other.family:
            raise UsageError(
                f"the --filter's matches are for IPv{extra.family} only, {other.text} is an IPv{other.family} address"
            )
        if self.kind in (Kind.INPUT, Kind.INTERNAL) and not self.dport:
            raise UsageError(f"--dport is mandatory for {self.kind.action}")
        if self.kind is Kind.ADD:
            other = self.dest if self.source.kind is AddressKind.SELF else self.source
            if other.kind in (AddressKind.CONTAINER, AddressKind.HOST):
                raise UsageError(
                    "'add' is for traffic from or to external addresses; use "
                    "add-internal for traffic between containers or with the host"
                )

    def checked_filter(self) -> filtergrammar.Filter:
        """The filter, checked against the grammar and against this rule's
        protocol; FilterError otherwise (also for one read back from the store)."""
        extra = filtergrammar.check_tokens(self.filter)
        for proto in sorted(extra.protocols - {self.proto}):
            raise FilterError(f"--filter: -m {proto} needs --protocol={proto}")
        return extra

    @property
    def filter_text(self) -> str:
        """The filter as typed: tokens quoted only where they must be.

        A word that is not printable ASCII text is shown escaped (``\\n``,
        ``\\udce9``), so that 'ls' and warnings stay one printable line: only
        a record of an older docker-fw holds one, and the grammar refuses it.
        """
        words = [
            (t if t.isascii() and t.isprintable() else ascii(t)[1:-1]) if isinstance(t, str) else ascii(t)
            for t in self.filter
        ]
        return " ".join(t if re.fullmatch(r"[^\s'\"\\$`]+", t) else shlex.quote(t) for t in words)

    def command(self, action: str | None = None) -> list[str]:
        """argv (after 'docker-fw') that records this rule again: used by 'ls'."""
        argv = [action or self.kind.action, self.owner, f"--source={self.source.text}"]
        if self.sport:
            argv.append(f"--sport={self.sport}")
        argv.append(f"--dest={self.dest.text}")
        if self.dport:
            argv.append(f"--dport={self.dport}")
        argv.append(f"--protocol={self.proto}")
        if self.filter:
            argv.append(f"--filter={self.filter_text}")
        return argv

    def describe(self, action: str | None = None) -> str:
        """The command as a shell line, e.g. for 'ls' output."""
        words = []
        for arg in self.command(action):
            option, sep, value = arg.partition("=")
            words.append(option + sep + shlex.quote(value) if sep else shlex.quote(arg))
        return "docker-fw " + " ".join(words)
