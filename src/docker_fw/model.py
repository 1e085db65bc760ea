"""Immutable values: address specifications and recorded rules.

A recorded rule (``RuleSpec``) names containers, never their addresses: the
addresses are looked up each time the rule is applied, which is what lets
``replay`` and ``start`` follow a container to a new IP after a restart.
"""

from __future__ import annotations

import enum
import functools
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

PROTOCOLS = ("tcp", "udp", "sctp", "icmp")
# Protocols whose rules may name ports.
PORT_PROTOCOLS = ("tcp", "udp", "sctp")
# What one rule's ports may hold: the kernel's multiport match takes at most
# 15 ports, a range counting two.
MAX_PORT_SLOTS = 15

# ICMP (IPv4) message types by the names iptables itself takes for
# --icmp-type; a number 0-255 is taken too.  An allow-list: anything else is
# refused before iptables sees it.
ICMP_TYPES = {
    "any": 255, "echo-reply": 0, "pong": 0, "destination-unreachable": 3,
    "network-unreachable": 3, "host-unreachable": 3, "protocol-unreachable": 3,
    "port-unreachable": 3, "fragmentation-needed": 3, "source-route-failed": 3,
    "network-unknown": 3, "host-unknown": 3, "network-prohibited": 3, "host-prohibited": 3,
    "TOS-network-unreachable": 3, "TOS-host-unreachable": 3, "communication-prohibited": 3,
    "host-precedence-violation": 3, "precedence-cutoff": 3, "source-quench": 4,
    "redirect": 5, "network-redirect": 5, "host-redirect": 5, "TOS-network-redirect": 5,
    "TOS-host-redirect": 5, "echo-request": 8, "ping": 8, "router-advertisement": 9,
    "router-solicitation": 10, "time-exceeded": 11, "ttl-exceeded": 11,
    "ttl-zero-during-transit": 11, "ttl-zero-during-reassembly": 11, "parameter-problem": 12,
    "ip-header-bad": 12, "required-option-missing": 12, "timestamp-request": 13,
    "timestamp-reply": 14, "address-mask-request": 17, "address-mask-reply": 18,
}
# The names of ICMP_TYPES that pin one code of their type as well (iptables'
# libxt_icmp: 'port-unreachable' is type 3 code 3, not every type 3); the
# others match any code.  A backend that writes the type and the code itself
# (nftables) needs both to mean what iptables means.
ICMP_CODES = {
    "network-unreachable": 0, "host-unreachable": 1, "protocol-unreachable": 2,
    "port-unreachable": 3, "fragmentation-needed": 4, "source-route-failed": 5,
    "network-unknown": 6, "host-unknown": 7, "network-prohibited": 9, "host-prohibited": 10,
    "TOS-network-unreachable": 11, "TOS-host-unreachable": 12, "communication-prohibited": 13,
    "host-precedence-violation": 14, "precedence-cutoff": 15, "network-redirect": 0,
    "host-redirect": 1, "TOS-network-redirect": 2, "TOS-host-redirect": 3,
    "ttl-zero-during-transit": 0, "ttl-zero-during-reassembly": 1, "ip-header-bad": 0,
    "required-option-missing": 1,
}

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
        try:
            return cls(action)  # a kind's value is its action
        except ValueError:
            raise UsageError(f"unknown rule action: {action}") from None


class EgressPolicy(enum.Enum):
    """What a container may start outside its own bridge networks ('docker-fw egress')."""

    ALLOW = "allow"  # anything (Docker's default, and docker-fw's)
    # Nothing but replies, its 'add --source=.' rules' destinations and DNS.
    DENY = "deny"

    @classmethod
    def from_text(cls, text: str) -> "EgressPolicy":
        try:
            return cls(text)
        except ValueError:
            raise UsageError(f"egress policy must be allow or deny, not {str(text)[:40]!r}") from None

    def command(self, owner: str) -> str:
        """The command that records it again (what 'ls' prints)."""
        return f"docker-fw egress {shlex.quote(owner)} {self.value}"


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
        text = str(net)
        if len(_MADE_NETWORKS) < _MADE_NETWORKS_MAX:
            _MADE_NETWORKS[text] = net
        return cls(AddressKind.NETWORK, text)

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
        return _network(self.value)

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


# Cached: each rule's address is checked against the engine's subnets more than once
# (ipaddress's networks are immutable values too).
_parsed_network = functools.lru_cache(maxsize=4096)(ipaddress.ip_network)
# The networks parse_address made, by the text their AddressSpec holds (what
# ip_network(text) gives again): an address typed once is not parsed twice.
_MADE_NETWORKS: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
_MADE_NETWORKS_MAX = 4096


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    made = _MADE_NETWORKS.get(text)
    return made if made is not None else _parsed_network(text)


# Cached: a --from file or a replay parses the same few addresses again and again
# (AddressSpec is immutable, and so is what it holds).
@functools.lru_cache(maxsize=4096)
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


@dataclass(frozen=True)
class Ports:
    """A rule's source or destination ports, as typed: a port (``80``), a range
    (``9100:9200``) or a list of both (``80,443,9100:9200``).  Empty: any port.

    Backend-neutral: ``ranges`` is what a backend renders (iptables: --dport
    for one port or range, multiport for a list); ``text`` is how the command
    line, the store and 'ls' spell it.
    """

    ranges: tuple[tuple[int, int], ...] = ()
    # Whether each item was typed as a range, so that '80:80' prints back as
    # typed; not part of the value (the same ports either way).
    ranged: tuple[bool, ...] = field(default=(), compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __str__(self) -> str:
        return self.text

    def _flags(self) -> tuple[bool, ...]:
        if len(self.ranged) == len(self.ranges):
            return self.ranged
        return tuple(low != high for low, high in self.ranges)

    @property
    def text(self) -> str:
        return ",".join(
            f"{low}:{high}" if ranged else str(low)
            for (low, high), ranged in zip(self.ranges, self._flags())
        )

    @property
    def is_list(self) -> bool:
        """More than one port or range: the kernel's multiport match is needed."""
        return len(self.ranges) > 1

    @property
    def slots(self) -> int:
        """What multiport counts: a port one, a range two."""
        return sum(2 if ranged else 1 for ranged in self._flags())

    def __contains__(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.ranges)

    @classmethod
    def of(cls, value: "Ports | int | str | None", option: str = "port") -> "Ports":
        """VALUE as Ports: an int (0: any), text as typed, or Ports."""
        if isinstance(value, Ports):
            return value
        if value is None or value == 0 or value == "":
            return cls()
        if isinstance(value, int):
            return parse_ports(str(value), option)
        return parse_ports(value, option)


_PORT_ITEM = re.compile(r"([0-9]{1,5})(?::([0-9]{1,5}))?")


def parse_ports(text: str | int | None, option: str) -> Ports:
    """A port, a range LOW:HIGH, or a comma-separated list of them (no spaces);
    each port 1-65535, LOW <= HIGH, at most MAX_PORT_SLOTS ports (a range counts
    two).  UsageError otherwise; empty or None: any port."""
    if text is None or text == "":
        return Ports()
    return _parsed_ports(str(text), option)


# Cached: a --from file or a replay gives the same few ports again and again,
# each parsed once as typed and once more as read back from the store (Ports is
# immutable; a refused one raises, and is not cached).
@functools.lru_cache(maxsize=4096)
def _parsed_ports(text: str, option: str) -> Ports:
    if not text.isascii() or len(text) > 200:
        raise UsageError(f"{option}: not a port number, a range or a list: {text[:40]!r}")
    ranges, ranged = [], []
    for item in text.split(","):
        match = _PORT_ITEM.fullmatch(item)
        if not match:
            raise UsageError(
                f"{option}: not a port number: {text!r} (a port, a range LOW:HIGH or a comma-separated list of them)"
            )
        low = int(match.group(1), 10)
        high = int(match.group(2), 10) if match.group(2) is not None else low
        for port in (low, high):
            if not 1 <= port <= 65535:
                raise UsageError(f"{option}: port out of range 1-65535: {port}")
        if low > high:
            raise UsageError(f"{option}: range {item} runs backwards (LOW must not exceed HIGH)")
        ranges.append((low, high))
        ranged.append(match.group(2) is not None)
    ports = Ports(tuple(ranges), tuple(ranged))
    if ports.slots > MAX_PORT_SLOTS:
        raise UsageError(
            f"{option}: {text} names {ports.slots} ports (a range counts two); the kernel's "
            f"multiport match takes at most {MAX_PORT_SLOTS}: split the rule"
        )
    return ports


def parse_port(text: str | int | None, option: str) -> int:
    """One port number 1-65535 (explain's --dport); 0 means 'not given'."""
    ports = parse_ports(text, option)
    if not ports:
        return 0
    if ports.is_list or ports.ranges[0][0] != ports.ranges[0][1] or ":" in ports.text:
        raise UsageError(f"{option}: one port number here, not a range or a list: {ports.text}")
    return ports.ranges[0][0]


def parse_icmp_type(text: str | None) -> str:
    """An ICMP type as iptables names it (ICMP_TYPES) or a number 0-255; '' for none."""
    if text is None or text == "":
        return ""
    if text in ICMP_TYPES:
        return text
    if text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 255:
        return str(int(text))
    raise UsageError(
        f"--icmp-type: {text[:40]!r} is neither a number 0-255 nor one of "
        + ", ".join(sorted(n for n in ICMP_TYPES if n == n.lower()))
    )


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
    sport: Ports = Ports()  # empty: any (an int or text is taken too, and made Ports)
    dport: Ports = Ports()
    filter: tuple[str, ...] = field(default=())
    icmp_type: str = ""  # --icmp-type as typed (protocol icmp only); '': any

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}: {self.proto!r}")
        # Frozen: the conversion happens once, here, as the value is made.
        object.__setattr__(self, "sport", Ports.of(self.sport, "--sport"))
        object.__setattr__(self, "dport", Ports.of(self.dport, "--dport"))
        if self.proto not in PORT_PROTOCOLS and (self.sport or self.dport):
            raise UsageError(f"--protocol={self.proto} has no ports: drop --sport/--dport")
        if self.icmp_type and self.proto != "icmp":
            raise UsageError("--icmp-type needs --protocol=icmp")

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
        if self.proto == "icmp" and (other.family == 6 or extra.family == 6):
            raise UsageError(
                "--protocol=icmp is IPv4's ICMP; ICMPv6 (ip6tables' own protocol and "
                "type names) is not supported: use an IPv4 address"
            )
        if extra.family and other.family and extra.family != other.family:
            raise UsageError(
                f"the --filter's matches are for IPv{extra.family} only, {other.text} is an IPv{other.family} address"
            )
        if self.kind in (Kind.INPUT, Kind.INTERNAL) and not self.dport and self.proto != "icmp":
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
        if self.icmp_type:
            argv.append(f"--icmp-type={self.icmp_type}")
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
