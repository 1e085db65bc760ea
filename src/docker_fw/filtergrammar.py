"""The --filter grammar: the match conditions a rule may carry, as an allow-list.

A filter is spliced into the iptables-restore line of every rule it belongs
to, so anything iptables understands there is ours to vouch for: a target
(``-j ACCEPT``), a chain command, ``-4``/``-6`` (iptables-restore silently
skips such a line), a dangling ``!`` (it negates the ``-p`` docker-fw adds
next), options glued together (``-fjACCEPT``), or a line long enough to pass
iptables-restore's line buffer (its tail runs as a rule of its own).  A
denylist cannot keep up with that, so this is the opposite: every word must
be an option listed here, in a place where iptables takes it the way we
read it, followed by exactly the arguments it takes, each checked by its own
validator.

The rules, as iptables' own parser would apply them:

- Options are written in full, one per word, and arguments are separate
  words (no ``--ctstate=NEW``, no abbreviations, no bundled short options):
  then getopt sees exactly the option we checked.
- A module's options follow its ``-m MODULE`` (another ``-m`` starts another
  module); ``-i``/``-o`` may stand anywhere.
- ``!`` stands directly before an option that iptables allows to negate; never
  at the end (docker-fw's own ``-p`` follows the filter), never twice.
- No argument is ``!`` (iptables would take it as a negation) and every
  argument matches its validator, so no argument can start another option.
- Printable ASCII only; at most MAX_CHARS characters and MAX_WORDS words.

Refusals are UsageError (``FilterError``) with one line naming the word.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from .values import dataclass

from .errors import UsageError

MAX_CHARS = 512  # of the filter as typed (and of its words joined by spaces)
MAX_WORDS = 64

# A --filter word that stands for the bridge of the network a rule is applied
# on (docker0, br-<id>), looked up every time the rule is applied: a compose
# project's network gets a new bridge each time it is re-created, and a filter
# naming the old one would silently stop matching.  'allow' records it.
BRIDGE_PLACEHOLDER = "@bridge"

_PRINTABLE_ASCII = re.compile(r"[ -~]*")


class FilterError(UsageError):
    """A --filter (typed, or read back from the state store) the grammar refuses."""


@dataclass(frozen=True)
class Arg:
    """One argument of an option: what it is (for messages) and its validator.

    ``check`` raises ValueError when the word is not one, and returns 4 or 6
    when the value only makes sense for that address family (else None).
    """

    what: str
    check: Callable[[str], int | None]


@dataclass(frozen=True)
class Option:
    name: str
    args: tuple[Arg, ...] = ()
    negatable: bool = False


@dataclass(frozen=True)
class Module:
    """A match module (``-m NAME``) and the options docker-fw supports of it."""

    name: str
    options: tuple[Option, ...]
    # Each group names options of which at least one must be given (iptables
    # refuses the module otherwise; saying so here gives the clearer message).
    # None: at least one of its options, whichever.
    needs: tuple[tuple[str, ...], ...] | None = None
    family: int | None = None  # 4: an IPv4-only match (rules get no IPv6 copy)
    protocol: str | None = None  # the --protocol the rule must have

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True)
class Filter:
    """What a filter, once accepted, asks of the rule that carries it."""

    tokens: tuple[str, ...]
    family: int | None = None  # 4 or 6 when its matches only work for that family
    protocols: frozenset[str] = frozenset()  # protocols its modules need


# --- validators -------------------------------------------------------------


def _fullmatch(pattern: str) -> Callable[[str], int | None]:
    compiled = re.compile(pattern)

    def check(word: str) -> None:
        if not compiled.fullmatch(word):
            raise ValueError
        return None

    return check


def _number(low: int, high: int) -> Callable[[str], int | None]:
    def check(word: str) -> None:
        if not re.fullmatch(r"[0-9]{1,10}", word) or not low <= int(word) <= high:
            raise ValueError
        return None

    return check


def _number_range(low: int, high: int) -> Callable[[str], int | None]:
    """N or N:M (N <= M), each within [low, high]."""
    one = _number(low, high)

    def check(word: str) -> None:
        first, sep, last = word.partition(":")
        one(first)
        if sep:
            one(last)
            if int(first) > int(last):
                raise ValueError
        return None

    return check


def _word_list(choices: Sequence[str]) -> Callable[[str], int | None]:
    """A comma-separated list of these words (iptables' spelling: upper case)."""
    allowed = frozenset(choices)

    def check(word: str) -> None:
        if not all(item in allowed for item in word.split(",")):
            raise ValueError
        return None

    return check


_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]+")  # no host names: iptables would look them up


def _address(word: str) -> int:
    """An IPv4 or IPv6 address, or subnet ADDR/PREFIX: its family."""
    address, _, prefix = word.partition("/")
    if not _IP_CHARS.fullmatch(address) or (prefix and not prefix.isdigit()):
        raise ValueError
    return ipaddress.ip_network(word, strict=False).version


def _address_range(word: str) -> int:
    """FROM-TO, two addresses of one family, FROM <= TO."""
    first, _, last = word.partition("-")
    if not (_IP_CHARS.fullmatch(first) and _IP_CHARS.fullmatch(last)):
        raise ValueError
    low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
    if low.version != high.version or low > high:
        raise ValueError
    return low.version


def _interface(word: str) -> None:
    """@bridge, or a name iptables and the kernel take: at most 15 characters, a
    trailing '+' matching every name that starts with the rest ('veth+').  Not
    '+' alone: it matches every interface and iptables-save does not print it
    (legacy iptables then holds '! -i +', which matches nothing, unseen)."""
    if word == BRIDGE_PLACEHOLDER:
        return None
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,13}[A-Za-z0-9_.+-]?", word):
        raise ValueError
    return None


def _rate(word: str) -> None:
    """N[/second|/minute|/hour|/day], the unit abbreviated as libxt_limit allows."""
    number, sep, unit = word.partition("/")
    _number(1, 999999999)(number)
    if sep and not (unit and any(full.startswith(unit) for full in ("second", "minute", "hour", "day"))):
        raise ValueError
    return None


def _match_string(word: str) -> None:
    """What -m string looks for: 1-128 printable ASCII characters (the kernel's
    limit), never a lone '!' (iptables would take it as a negation)."""
    if not 1 <= len(word) <= 128 or word == "!":
        raise ValueError
    return None


def _prefix_length(word: str) -> int | None:
    _number(0, 128)(word)
    return 6 if int(word) > 32 else None


CTSTATES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT")
STATES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")
CTSTATUSES = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
ADDRTYPES = (
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST",
    "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
)
TCP_FLAGS = ("SYN", "ACK", "FIN", "RST", "URG", "PSH", "ALL", "NONE")

INTERFACE = Arg("an interface name (at most 15 characters, '+' at the end for a prefix) or @bridge", _interface)
ADDRESS = Arg("an IPv4 or IPv6 address or subnet", _address)
ADDRESS_RANGE = Arg("an address range FROM-TO (e.g. 192.0.2.1-192.0.2.9)", _address_range)
PORT_OR_RANGE = Arg("a port or port range (e.g. 8080 or 8000:8099)", _number_range(0, 65535))
COUNT = Arg("a number", _number(0, 4294967295))


def _choices(items: Sequence[str]) -> Arg:
    return Arg("a comma-separated list of " + ", ".join(items), _word_list(items))


# The options of iptables itself that a filter may use (-m is handled apart).
BUILTINS = (
    Option("-i", (INTERFACE,), negatable=True),
    Option("--in-interface", (INTERFACE,), negatable=True),
    Option("-o", (INTERFACE,), negatable=True),
    Option("--out-interface", (INTERFACE,), negatable=True),
)
MATCH_OPTIONS = ("-m", "--match")

MODULES = {
    m.name: m
    for m in (
        Module(
            "addrtype",
            (
                Option("--src-type", (_choices(ADDRTYPES),), negatable=True),
                Option("--dst-type", (_choices(ADDRTYPES),), negatable=True),
                Option("--limit-iface-in"),
                Option("--limit-iface-out"),
            ),
            needs=(("--src-type", "--dst-type"),),
        ),
        Module(
            "connlimit",
            (
                Option("--connlimit-above", (COUNT,), negatable=True),
                Option("--connlimit-upto", (COUNT,), negatable=True),
                Option("--connlimit-mask", (Arg("a prefix length 0-128", _prefix_length),)),
                Option("--connlimit-saddr"),
                Option("--connlimit-daddr"),
            ),
            needs=(("--connlimit-above", "--connlimit-upto"),),
        ),
        Module(
            "conntrack",
            (
                Option("--ctstate", (_choices(CTSTATES),), negatable=True),
                Option("--ctstatus", (_choices(CTSTATUSES),), negatable=True),
                Option("--ctproto", (Arg("tcp, udp, icmp, icmpv6 or a protocol number",
                                         _fullmatch(r"tcp|udp|icmp|icmpv6|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5]")),),
                       negatable=True),
                Option("--ctorigsrc", (ADDRESS,), negatable=True),
                Option("--ctorigdst", (ADDRESS,), negatable=True),
                Option("--ctreplsrc", (ADDRESS,), negatable=True),
                Option("--ctrepldst", (ADDRESS,), negatable=True),
                Option("--ctorigsrcport", (PORT_OR_RANGE,), negatable=True),
                Option("--ctorigdstport", (PORT_OR_RANGE,), negatable=True),
                Option("--ctreplsrcport", (PORT_OR_RANGE,), negatable=True),
                Option("--ctrepldstport", (PORT_OR_RANGE,), negatable=True),
                Option("--ctdir", (Arg("ORIGINAL or REPLY", _fullmatch(r"ORIGINAL|REPLY")),)),
            ),
        ),
        Module(
            "iprange",
            (
                Option("--src-range", (ADDRESS_RANGE,), negatable=True),
                Option("--dst-range", (ADDRESS_RANGE,), negatable=True),
            ),
        ),
        Module("length", (Option("--length", (Arg("a length or range (e.g. 0:500)", _number_range(0, 65535)),),
                                 negatable=True),)),
        Module(
            "limit",
            (
                Option("--limit", (Arg("a rate N[/second|/minute|/hour|/day]", _rate),)),
                Option("--limit-burst", (Arg("a number 1-10000", _number(1, 10000)),)),
            ),
            needs=(),  # iptables' default: 3/hour, burst 5
        ),
        Module("mac", (Option("--mac-source", (Arg("a MAC address XX:XX:XX:XX:XX:XX",
                                                   _fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")),),
                              negatable=True),)),
        Module(
            "recent",
            (
                Option("--name", (Arg("a list name (letters, digits, '_', '.', '-'; at most 32)",
                                      _fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")),)),
                Option("--set", negatable=True),
                Option("--rcheck", negatable=True),
                Option("--update", negatable=True),
                Option("--remove", negatable=True),
                Option("--seconds", (Arg("a number of seconds", _number(1, 4294967295)),)),
                Option("--reap"),
                Option("--hitcount", (Arg("a number 1-255", _number(1, 255)),)),
                Option("--rttl"),
                Option("--rsource"),
                Option("--rdest"),
                Option("--mask", (Arg("a netmask (e.g. 255.255.255.0)", _address),)),
            ),
            needs=(("--set", "--rcheck", "--update", "--remove"),),
        ),
        Module("state", (Option("--state", (_choices(STATES),), negatable=True),)),
        Module(
            "string",
            (
                Option("--string", (Arg("the text to look for (1-128 characters)", _match_string),), negatable=True),
                Option("--algo", (Arg("bm or kmp", _fullmatch(r"bm|kmp")),)),
                Option("--from", (Arg("an offset 0-65535", _number(0, 65535)),)),
                Option("--to", (Arg("an offset 0-65535", _number(0, 65535)),)),
                Option("--icase"),
            ),
            needs=(("--string",), ("--algo",)),
        ),
        Module(
            "tcp",
            (
                Option("--tcp-flags", (_choices(TCP_FLAGS), _choices(TCP_FLAGS)), negatable=True),
                Option("--syn", negatable=True),
                Option("--tcp-option", (Arg("a TCP option number 0-255", _number(0, 255)),), negatable=True),
            ),
            needs=(),  # any TCP packet
            protocol="tcp",
        ),
        Module(
            "ttl",
            (
                Option("--ttl-eq", (Arg("a TTL 0-255", _number(0, 255)),), negatable=True),
                Option("--ttl-lt", (Arg("a TTL 0-255", _number(0, 255)),)),
                Option("--ttl-gt", (Arg("a TTL 0-255", _number(0, 255)),)),
            ),
            family=4,
        ),
    )
}

# Why some modules people reach for are not here.
_MODULE_HINTS = {
    "multiport": "docker-fw renders its own -p and --sport/--dport after the filter, where multiport "
    "cannot see the protocol: record one rule per port",
    "udp": "docker-fw adds -p udp -m udp itself: use --sport/--dport",
    "comment": "docker-fw writes its own comment on every rule",
}
# Words that are not match conditions, with what to use instead.
_OPTION_HINTS = {
    **dict.fromkeys(("-p", "--protocol"), "use docker-fw's --protocol"),
    **dict.fromkeys(("-s", "--source", "--src"), "use docker-fw's --source"),
    **dict.fromkeys(("-d", "--destination", "--dst"), "use docker-fw's --dest"),
    **dict.fromkeys(("--sport", "--dport", "--source-port", "--destination-port"),
                    "use docker-fw's --sport/--dport"),
    **dict.fromkeys(("-j", "--jump", "-g", "--goto"), "docker-fw sets the target"),
}


def _summary() -> str:
    return "'!', -i, -o, -m " + "|".join(MODULES)


def describe_supported() -> str:
    """The supported set, one module per clause (for --help and messages)."""
    parts = ["[!] -i IFACE", "[!] -o IFACE (IFACE may be @bridge or end in +)"]
    for module in MODULES.values():
        names = " ".join(("[!] " if o.negatable else "") + o.name for o in module.options)
        parts.append(f"-m {module.name} {names}")
    return "; ".join(parts)


def _shown(word: str) -> str:
    """A word as a message quotes it: escaped to printable ASCII, and not all of a long one."""
    return ascii(word) if len(word) <= 60 else ascii(word[:60]) + "..."


def _refuse(message: str) -> FilterError:
    return FilterError(f"--filter: {message}")


def _not_allowed(word: str, where: Module | None) -> FilterError:
    """The one message for a word that is not a supported option here."""
    name, equals, value = word.partition("=")
    owner = next((m for m in MODULES.values() if m.option(name)), None)
    if equals and (owner is not None or any(o.name == name for o in BUILTINS)):
        return _refuse(f"write {name} and its value as two words, not {_shown(word)}")
    if owner is not None and owner is not where:
        return _refuse(f"{word} is an option of -m {owner.name}: write '-m {owner.name}' before it")
    hint = _OPTION_HINTS.get(word)
    if where is not None and hint is None and word.startswith("--"):
        options = ", ".join(o.name for o in where.options)
        return _refuse(f"{_shown(word)} is not an option of -m {where.name} that docker-fw supports ({options})")
    if hint is None:
        hint = f"supported: {_summary()}"
        if re.fullmatch(r"-[A-Za-z0-9].+", word):  # '-fjACCEPT', '-ieth0'
            hint = "each option is a word of its own, its value the next word; " + hint
    return FilterError(f"--filter may only hold match conditions; {_shown(word)} is not allowed ({hint})")


def check_tokens(tokens: Sequence[object]) -> Filter:
    """Check filter words against the grammar; FilterError names the first bad one.

    Used for --filter as typed (after parse_filter splits it) and for filters
    read back from the state store, which may have been recorded by an older
    docker-fw that let more through.
    """
    words = tuple(tokens)
    for number, word in enumerate(words, 1):
        if not isinstance(word, str):
            raise _refuse(f"word {number} is not text ({type(word).__name__})")
        if not _PRINTABLE_ASCII.fullmatch(word):
            raise _refuse(f"only printable ASCII characters are allowed: {_shown(word)}")
    if len(words) > MAX_WORDS:
        raise _refuse(f"too many words: {len(words)} (at most {MAX_WORDS})")
    length = len(" ".join(words))
    if length > MAX_CHARS:
        raise _refuse(f"too long: {length} characters (at most {MAX_CHARS})")

    families: set[int] = set()
    protocols: set[str] = set()
    builtins_used: set[str] = set()
    module: Module | None = None
    module_used: set[str] = set()

    def finish_module() -> None:
        if module is None:
            return
        if module.needs is None and not module_used:
            raise _refuse(f"-m {module.name} needs one of its options ({', '.join(o.name for o in module.options)})")
        for group in module.needs or ():
            if not module_used & set(group):
                raise _refuse(f"-m {module.name} needs {' or '.join(group)}")

    index = 0
    negate = False
    while index < len(words):
        word = words[index]
        if word == "!":
            if negate:
                raise _refuse("'!' twice: one negates the option after it")
            if index == len(words) - 1:
                raise _refuse(
                    "'!' at the end negates nothing of the filter (it would negate the -p docker-fw "
                    "adds after it): put it directly before an option that can be negated, e.g. '! -i @bridge'"
                )
            negate = True
            index += 1
            continue
        if word in MATCH_OPTIONS:
            if negate:
                raise _refuse(f"'!' cannot stand before {word}: negate one of the module's options")
            if index + 1 >= len(words):
                raise _refuse(f"{word} needs a match module ({', '.join(MODULES)})")
            name = words[index + 1]
            if name not in MODULES:
                hint = _MODULE_HINTS.get(name, "supported: " + ", ".join(MODULES))
                raise _refuse(f"match module {_shown(name)} is not supported ({hint})")
            finish_module()
            module, module_used = MODULES[name], set()
            if module.family:
                families.add(module.family)
            if module.protocol:
                protocols.add(module.protocol)
            index += 2
            continue
        option = next((o for o in BUILTINS if o.name == word), None)
        used = builtins_used
        if option is None and module is not None:
            option, used = module.option(word), module_used
        if option is None:
            raise _not_allowed(word, module)
        if negate and not option.negatable:
            raise _refuse(f"'!' cannot stand before {word}: iptables does not negate it")
        # -i and --in-interface are one option to iptables
        key = {"--in-interface": "-i", "--out-interface": "-o"}.get(option.name, option.name)
        if key in used:
            raise _refuse(f"{word} given twice")
        used.add(key)
        values = words[index + 1 : index + 1 + len(option.args)]
        if len(values) < len(option.args):
            raise _refuse(f"{word} needs {option.args[len(values)].what}")
        for arg, value in zip(option.args, values):
            try:
                family = arg.check(value)
            except ValueError:
                raise _refuse(f"{word}: {_shown(value)} is not {arg.what}") from None
            if family:
                families.add(family)
        index += 1 + len(option.args)
        negate = False
    finish_module()
    if len(families) > 1:
        raise _refuse("mixes IPv4 and IPv6 matches")
    return Filter(words, next(iter(families), None), frozenset(protocols))
