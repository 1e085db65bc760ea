"""Hypothesis strategies for every user-facing input of docker-fw, shared by the
fuzz suites (tests/unit/test_fuzz_cli.py, tests/netns/test_fuzz_netns.py).

Each input mixes values that make a valid rule (most draws, so that the
"applied" half of the property is exercised too) with hostile ones: control
characters, lone surrogates, unicode look-alikes, very long strings, shell
metacharacters and iptables options.  The world they are meant for is the
unit suite's: web, db (both on bridge and appnet), app (appnet), old
(stopped); external clients live in documentation ranges.
"""

from __future__ import annotations

import shlex

from hypothesis import strategies as st

ADD_ACTIONS = ("add", "add-input", "add-internal", "add-two-ways")


def mostly(valid, hostile, one_in: int = 5):
    """VALID, except one draw in ONE_IN, which is HOSTILE."""
    return st.integers(1, one_in).flatmap(lambda n: hostile if n == 1 else valid)


HOSTILE = (
    "", " ", "-", "--", "=", "!", "! !", "'", '"', "\\", "''", "#", "@bridge",
    "$(reboot)", "`id`", "; rm -rf /", "a|b", "a&&b", "*", "~", "%s%n", "{}",
    "-j ACCEPT", "-jACCEPT", "-fjACCEPT", "--ju=ACCEPT", "-g DOCKER", "-6", "-4",
    "-A FORWARD -j ACCEPT", "-I FORWARD 1 -s 198.51.100.3/32 -j ACCEPT", "-t nat", "-h", "--help",
    "-m comment --comment docker-fw:web:000000000000", "--comment", "-V",
    "web\n", "\nweb", "web\nx", "a\rb", "\x00", "a\x00b", "\x1b[2J", "\x0b", "\x0c", "\x1c", "\x85",
    "\u2028", "\u2029", "\u200b", "\u202e", "\ufeff", "\udcff", "web\udcff", "\ud800",
    "ｗｅｂ", "web\u0301", "٨٠", "８０", "\U0001f525", "web\t", "\tweb",
    "x" * 300, "a" * 11000, "-" * 64, ":" * 40, "/" * 40, "." * 40,
)

# Every character class, control characters and lone surrogates included.
ANY_CHAR = st.characters(exclude_categories=()) | st.sampled_from("\n\r\t\x00\x0b\x1b\x85\u2028\udcff")
hostile_text = st.sampled_from(HOSTILE) | st.text(ANY_CHAR, max_size=24)

# --- container names ---------------------------------------------------------------

RUNNING = ("web", "db", "app")
NAMES = (*RUNNING, "/web", "/db", "old", "nosuch", "WEB", "web.", "db_1", "x", "6162")
container_names = mostly(st.sampled_from(NAMES), hostile_text)

# --- addresses -----------------------------------------------------------------------

# Documentation ranges: external clients, never inside the world's Docker networks.
EXTERNAL_V4 = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")


@st.composite
def external_ipv4(draw) -> str:
    network = draw(st.sampled_from(EXTERNAL_V4))
    address = str(draw(st.ip_addresses(network=network)))
    return address + draw(st.sampled_from(("", "", "/32", "/24", "/28", f"/{draw(st.integers(8, 32))}")))


@st.composite
def any_ip(draw) -> str:
    address = str(draw(st.ip_addresses()))
    if draw(st.booleans()):
        address += f"/{draw(st.integers(0, 129))}"
    return address


ODD_ADDRESSES = (
    "0.0.0.0/0", "10.1.2.3/8", "172.17.0.11", "172.17.0.1", "172.18.0.0/16", "172.17.0.10/32",
    "2001:db8::1", "2001:db8::/64", "::1", "fe80::1", "::ffff:192.0.2.1", "::", "1.2.3.4.5",
    "256.1.1.1", "1.2.3.4/33", " 203.0.113.7 ", "203.0.113.7\n", "0x7f.1", "127.1", "01.2.3.4",
    "1.2.3.4/255.255.255.0", "1.2.3.4/-1", "[2001:db8::1]", "2001:db8::1%eth0",
)
odd_addresses = st.sampled_from(ODD_ADDRESSES) | any_ip() | hostile_text
external_addresses = mostly(external_ipv4(), odd_addresses)
addresses = st.sampled_from((".", "/", *NAMES)) | external_addresses

# --- ports and protocols -------------------------------------------------------------

ODD_PORTS = ("0", "-1", "+80", " 80", "80 ", "0x50", "1e3", "8_0", "٨٠", "８０",
             "80/tcp", "http", "9" * 40, "1-1024", "80,", ",80", "90:80", "80::90", "80, 443", "0:80",
             ",".join(map(str, range(1, 17))), "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16")
valid_ports = st.integers(1, 65535).map(str) | st.sampled_from(
    ("80,443", "9100:9200", "80,443,9100:9200", "22:22", "00080", "1:65535")
)
ports = mostly(valid_ports, st.sampled_from(ODD_PORTS) | st.integers(-10, 70000).map(str) | hostile_text)

ODD_PROTOCOLS = ("TCP", "Udp", "ICMP", "all", "icmpv6", "6", "tcp ", "", "udplite")
protocols = mostly(st.sampled_from(("tcp", "udp", "sctp", "icmp")), st.sampled_from(ODD_PROTOCOLS) | hostile_text)

ODD_ICMP_TYPES = ("ping", "256", "-1", "8/0", "Echo-Request", "echo-request ", "", "0x8", "echo-request,echo-reply")
icmp_types = mostly(st.sampled_from(("echo-request", "8", "echo-reply", "0", "destination-unreachable", "255")),
                    st.sampled_from(ODD_ICMP_TYPES) | hostile_text)

# --- --filter --------------------------------------------------------------------------

# Match conditions the allow-list grammar is meant to accept ...
GOOD_FILTERS = (
    "! -i @bridge -o @bridge", "-i @bridge", "-o @bridge", "! -i docker0", "-i docker0 -o docker0",
    "! -o br-0123456789ab", "-m conntrack --ctstate NEW", "-m conntrack --ctstate NEW,ESTABLISHED",
    "-m state --state NEW", "-m iprange --src-range 198.51.100.1-198.51.100.9",
    "-m iprange ! --dst-range 10.0.0.1-10.0.0.9", "-m string --string 'GET /' --algo bm",
    "-m string --algo kmp --string abc", "-m limit --limit 5/sec", "-m limit --limit 10/min --limit-burst 3",
    "-m mac --mac-source 02:42:ac:11:00:02", "-m ttl --ttl-gt 5", "-m length --length 0:1500",
    "-m addrtype --src-type LOCAL", "-m pkttype --pkt-type unicast", "-m tcp --syn", "! -f",
)
# ... and what it must refuse (several got through before issue #9).
BAD_FILTERS = (
    "-j ACCEPT", "-jACCEPT", "-fjACCEPT", "--jump=DROP", "--ju ACCEPT", "-g DOCKER", "--goto DOCKER",
    "-6", "-4", "--ipv6", "!", "! !", "-i docker0 !", "-p tcp", "! -p tcp", "--protocol udp",
    "-s 198.51.100.3", "--source 0.0.0.0/0", "-d 10.0.0.1", "--dport 22", "--sport 1",
    "-m comment --comment x", "--comment docker-fw:web:000000000000", "-A FORWARD", "-I FORWARD 1",
    "-D FORWARD 1", "-N X", "-X", "-F", "-P FORWARD ACCEPT", "-t nat", "--table=nat", "-h", "--help",
    "-V", "--version", "-m", "-m nosuchmodule", "-i", "-i 'a b'", '-i a"b', "-i a'b", "-i \\\\",
    "-i $HOME", "-i eth0;reboot", "-i " + "e" * 16, "-i ｅｔｈ0", "-m string --string '\t'",
    "-m string --algo bm --string " + "A" * 10300, "-i docker0 " * 700, "'unterminated",
    '"unterminated', "\\", "-m multiport --dports 80,443", "-m tcp --dport 22", "--syn",
    "-m conntrack --ctstate NEW -j ACCEPT", "-i docker0 -- -j ACCEPT", "-m set --match-set x src",
)
good_filters = st.lists(st.sampled_from(GOOD_FILTERS), max_size=2).map(" ".join)
filter_fragments = st.sampled_from(BAD_FILTERS) | st.sampled_from(GOOD_FILTERS) | hostile_text


@st.composite
def hostile_filters(draw) -> str:
    parts = draw(st.lists(filter_fragments, min_size=1, max_size=4))
    return draw(st.sampled_from((" ", "  ", "\t", " \t "))).join(parts)


filters = mostly(good_filters, hostile_filters(), one_in=3)

# --- whole rules ---------------------------------------------------------------------


@st.composite
def valid_rules(draw, action: str) -> dict[str, str]:
    """Options that make a rule docker-fw can apply in the world (before mutation)."""
    owner = draw(st.sampled_from(RUNNING))
    others = [name for name in ("web", "db") if name != owner] if owner != "app" else ["db", "web"]
    rule = {"container": owner}
    if action == "add":
        outside = draw(external_ipv4())
        rule["source"], rule["dest"] = draw(st.sampled_from(((outside, "."), (".", outside))))
    elif action == "add-input":
        rule["source"], rule["dest"] = ".", "/"
    elif action == "add-internal":
        rule["source"] = draw(st.sampled_from((*others, "/")))
        if draw(st.booleans()):
            rule["dest"] = "."
    else:
        rule["source"] = draw(st.sampled_from(others))
    if action != "add" or draw(st.booleans()):
        rule["dport"] = draw(valid_ports)
    if draw(st.integers(0, 3)) == 0:
        rule["sport"] = draw(valid_ports)
    if draw(st.integers(0, 3)) == 0:  # ICMP: no ports, maybe a type
        rule.pop("dport", None), rule.pop("sport", None)
        rule["protocol"] = "icmp"
        if draw(st.booleans()):
            rule["icmp_type"] = draw(icmp_types)
    elif draw(st.booleans()):
        rule["protocol"] = draw(st.sampled_from(("tcp", "udp")))
    if draw(st.booleans()):
        rule["filter"] = draw(good_filters)
    return rule


FIELDS = {
    "container": container_names, "source": addresses, "dest": addresses, "sport": ports,
    "dport": ports, "protocol": protocols, "icmp_type": icmp_types, "filter": filters,
}


@st.composite
def rules(draw, action: str, changes=st.sampled_from((0, 0, 1, 1, 2, 3))) -> dict[str, str]:
    """A valid rule, then (most of the time) one to three fields changed or dropped."""
    rule = draw(valid_rules(action))
    for _ in range(draw(changes)):
        field = draw(st.sampled_from(sorted(FIELDS)))
        if draw(st.integers(0, 4)) == 0:
            rule.pop(field, None)
        else:
            rule[field] = draw(FIELDS[field])
    return rule


# option -> its spellings: argparse takes '--source X', '--source=X' and '-s X'.
SPELLINGS = {
    "source": ("--source", "-s"), "dest": ("--dest", "-d"), "sport": ("--sport",),
    "dport": ("--dport",), "protocol": ("--protocol", "-p"), "icmp_type": ("--icmp-type",),
    "filter": ("--filter",),
}
EXTRA_ARGS = ("--rev-lookup", "-v", "--bogus", "extra", "--from", "--dport", "-s")


@st.composite
def rule_words(draw, rule: dict[str, str]) -> list[str]:
    """CONTAINER [options] for RULE, options in any order and spelling."""
    words = []
    for name in draw(st.permutations(sorted(set(rule) - {"container"}))):
        spelling = draw(st.sampled_from(SPELLINGS[name]))
        if spelling.startswith("--") and draw(st.booleans()):
            words.append(f"{spelling}={rule[name]}")
        else:
            words += [spelling, rule[name]]
    if "container" in rule:
        words.insert(draw(st.sampled_from((0, 0, 0, len(words)))), rule["container"])
    if draw(st.integers(0, 9)) == 0:
        words.append(draw(st.sampled_from(EXTRA_ARGS)))
    return words


@st.composite
def add_commands(draw) -> list[str]:
    action = draw(st.sampled_from(ADD_ACTIONS))
    return [action, *draw(rule_words(draw(rules(action))))]


@st.composite
def from_lines(draw, action: str) -> str:
    """One line of a --from file: a rule (as typed, or as 'ls' prints it), or not."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from(("", "   ", "# a comment", "  # indented", "#", "\t", "# \u2028 x")))
    if kind == 1:
        return draw(hostile_text)
    words = draw(rule_words(draw(rules(action, changes=st.sampled_from((0, 0, 0, 0, 1, 2))))))
    if kind == 2:  # as 'ls' prints it, for this action (or another)
        words = ["docker-fw", draw(mostly(st.just(action), st.sampled_from(ADD_ACTIONS))), *words]
    if kind == 3:  # words glued without quoting, as a careless hand writes them
        return " ".join(words)
    return shlex.join(words)


@st.composite
def from_files(draw) -> tuple[str, bytes]:
    """(action, file contents): mostly lines, sometimes any bytes at all."""
    action = draw(st.sampled_from(ADD_ACTIONS))
    if draw(st.integers(0, 14)) == 0:
        return action, draw(st.binary(max_size=200))
    lines = draw(st.lists(from_lines(action), min_size=1, max_size=5))
    ending = draw(mostly(st.just("\n"), st.sampled_from(("\r\n", "\n\n", "\x0b", "\u2028", "\x85"))))
    text = ending.join(lines) + draw(st.sampled_from(("", ending)))
    return action, text.encode("utf-8", "surrogatepass")


@st.composite
def label_lines(draw) -> str:
    """One line of a docker-fw.rules label: action first, no container (or not)."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from(("", "   ", "# a comment", "  # indented", "#", "\t", "# \u2028 x")))
    if kind == 1:
        return draw(hostile_text)
    if kind in (3, 4):  # egress lines: valid, bad, quoted, padded
        return draw(st.sampled_from((
            "egress deny", "egress allow", "  egress  deny ", "'egress' deny", "egress", "egress dney",
            "egress deny now", "egress allow --source=.", "egres deny", "# egress deny", "egress\tdeny",
            "e\\gress deny", '"egress deny"', "allow 198.51.100.2\u2028egress deny",
        )))
    action = draw(mostly(st.sampled_from((*ADD_ACTIONS, "allow")), st.sampled_from(("docker-fw", "drop", "web"))))
    if action == "allow":
        words = [action, *draw(st.lists(external_addresses, min_size=0, max_size=3))]
    else:
        rule = draw(rules(action, changes=st.sampled_from((0, 0, 0, 0, 1, 2)))) if action in ADD_ACTIONS else {}
        rule.pop("container", None)
        words = [action, *draw(rule_words(rule))]
    return " ".join(words) if kind == 2 else shlex.join(words)


@st.composite
def label_values(draw) -> str:
    """A label's whole value, as the engine hands it over (any text)."""
    lines = draw(st.lists(label_lines(), min_size=0, max_size=4))
    ending = draw(mostly(st.just("\n"), st.sampled_from(("\r\n", "\n\n", "\x0b", "\u2028", "\x85"))))
    return ending.join(lines) + draw(st.sampled_from(("", ending)))
