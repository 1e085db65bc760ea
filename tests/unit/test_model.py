"""model: address specs, ports, --filter, RuleSpec validation and rendering."""

from __future__ import annotations

import ipaddress
import shlex

import pytest

from docker_fw.errors import UsageError
from docker_fw.model import (
    AddressKind,
    AddressSpec,
    Kind,
    RuleSpec,
    parse_address,
    parse_filter,
    parse_icmp_type,
    parse_ports,
)

# --- parse_address ------------------------------------------------------------


def test_dot_is_the_container_itself():
    spec = parse_address(".")
    assert spec.kind is AddressKind.SELF
    assert spec.text == "."


def test_slash_is_the_docker_host():
    spec = parse_address("/")
    assert spec.kind is AddressKind.HOST
    assert spec.text == "/"


def test_surrounding_blanks_are_ignored():
    assert parse_address("  .  ").kind is AddressKind.SELF
    assert parse_address(" 10.0.0.1 ").value == "10.0.0.1/32"


@pytest.mark.parametrize(
    "text, value, shown",
    [
        ("203.0.113.7", "203.0.113.7/32", "203.0.113.7"),
        ("203.0.113.7/32", "203.0.113.7/32", "203.0.113.7"),
        ("10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_ipv4_addresses_and_subnets(text, value, shown):
    spec = parse_address(text)
    assert spec.kind is AddressKind.NETWORK
    assert spec.value == value
    assert spec.text == shown
    assert spec.ip_network == ipaddress.IPv4Network(value)


@pytest.mark.parametrize(
    "text, value",
    [
        ("10.1.2.3/24", "10.1.2.0/24"),
        ("192.168.178.77/16", "192.168.0.0/16"),
        ("172.17.255.255/12", "172.16.0.0/12"),
    ],
)
def test_subnet_host_bits_are_cleared(text, value):
    assert parse_address(text).value == value


@pytest.mark.parametrize(
    "text", ["1.2.3", "1.2.3.4.5", "256.1.1.1", "10.0.0.0/33", "1.2.3.4/", "10..0.1", "010.1.2.3"]
)
def test_invalid_ipv4_is_refused(text):
    with pytest.raises(UsageError, match="invalid IPv4"):
        parse_address(text)


@pytest.mark.parametrize("text", ["::1", "fe80::1/64", "::ffff:10.0.0.1", "2001:db8::g", "2001:db8::/129", "1::2::3"])
def test_unusable_ipv6_is_refused(text):
    # Loopback and link-local never cross FORWARD; IPv4-mapped is an IPv4 address.
    with pytest.raises(UsageError, match="IPv6"):
        parse_address(text)


@pytest.mark.parametrize(
    "text, value, shown",
    [
        ("2001:db8::7", "2001:db8::7/128", "2001:db8::7"),
        ("2001:DB8:0:0::7/128", "2001:db8::7/128", "2001:db8::7"),
        ("2001:db8::/64", "2001:db8::/64", "2001:db8::/64"),
        ("2001:db8::1/64", "2001:db8::/64", "2001:db8::/64"),  # host bits cleared
        ("::/0", "::/0", "::/0"),
    ],
)
def test_ipv6_address_specs(text, value, shown):
    spec = parse_address(text)
    assert spec.kind is AddressKind.NETWORK
    assert spec.value == value
    assert spec.text == shown
    assert spec.family == 6
    assert parse_address(spec.text) == spec


def test_address_families():
    assert parse_address("198.51.100.7").family == 4
    assert parse_address("198.51.100.7").text == "198.51.100.7"
    assert parse_address(".").family is None
    assert parse_address("/").family is None
    assert parse_address("web").family is None


@pytest.mark.parametrize("text", ["", "a", "-rf", "web server", "we$b", "_web", "web/1", "..x"])
def test_invalid_names_are_refused(text):
    with pytest.raises(UsageError):
        parse_address(text)


@pytest.mark.parametrize(
    "text, name",
    [
        ("web", "web"),
        ("/web", "web"),
        ("my_app.db-1", "my_app.db-1"),
        ("4f2a9c0e11bb", "4f2a9c0e11bb"),
        ("1web", "1web"),
    ],
)
def test_container_names_and_ids(text, name):
    spec = parse_address(text)
    assert spec.kind is AddressKind.CONTAINER
    assert spec.value == name
    assert spec.text == name


@pytest.mark.parametrize("text", ["8080", "123456789012"])
def test_all_digit_names_are_containers(text):
    spec = parse_address(text)
    assert spec.kind is AddressKind.CONTAINER and spec.value == text


def test_address_spec_text_parses_back_to_the_same_spec():
    for text in (".", "/", "web", "10.1.2.0/24", "10.1.2.3"):
        spec = parse_address(text)
        assert AddressSpec.from_text(spec.text) == spec


# --- parse_ports: a port, a range, a list -------------------------------------------


@pytest.mark.parametrize("text, ranges", [
    ("1", ((1, 1),)), ("80", ((80, 80),)), ("65535", ((65535, 65535),)), (443, ((443, 443),)),
    ("9100:9200", ((9100, 9200),)), ("80,443", ((80, 80), (443, 443))),
    ("443,80,9100:9200", ((443, 443), (80, 80), (9100, 9200))), ("1:65535", ((1, 65535),)),
    (",".join(map(str, range(1, 16))), tuple((p, p) for p in range(1, 16))),
])
def test_valid_ports(text, ranges):
    ports = parse_ports(text, "--dport")
    assert ports.ranges == ranges
    assert ports.text == str(text)  # printed back as typed


def test_a_range_of_one_port_prints_back_as_typed():
    assert parse_ports("22:22", "--dport").text == "22:22"
    assert parse_ports("22:22", "--dport") == parse_ports("22", "--dport")  # the same ports


@pytest.mark.parametrize("text", [None, ""])
def test_missing_port_is_any(text):
    assert not parse_ports(text, "--dport")
    assert parse_ports(text, "--dport").text == ""


@pytest.mark.parametrize("text", ["0", "65536", "99999", "70000", "80,0", "0:80", "80:65536"])
def test_port_out_of_range(text):
    with pytest.raises(UsageError, match="--sport: port out of range"):
        parse_ports(text, "--sport")


@pytest.mark.parametrize("text", ["http", "80a", "8.0", "0x50", "80-90", "-1", " 80", "80 ", "80,", ",80",
                                  "80,,443", "80::90", "80:90:100", "80, 443", "80;443"])
def test_port_not_a_number(text):
    with pytest.raises(UsageError, match="--dport: not a port number"):
        parse_ports(text, "--dport")


@pytest.mark.parametrize("text", ["8_0", "+80", "\u0668\u0660", "８０"])
def test_port_must_be_ascii_digits(text):
    # int() takes these; iptables does not.
    with pytest.raises(UsageError, match="--dport: not a port number"):
        parse_ports(text, "--dport")


def test_a_range_must_not_run_backwards():
    with pytest.raises(UsageError, match="range 90:80 runs backwards"):
        parse_ports("90:80", "--dport")


@pytest.mark.parametrize("text, slots", [
    (",".join(map(str, range(1, 17))), 16),
    ("1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16", 16),
    ("1:2,3:4,5:6,7:8,9:10,11:12,13:14,15,16", 16),
])
def test_at_most_what_multiport_takes(text, slots):
    with pytest.raises(UsageError, match=f"names {slots} ports \\(a range counts two\\).* at most 15"):
        parse_ports(text, "--dport")


def test_fifteen_slots_are_taken():
    assert parse_ports("1:2,3:4,5:6,7:8,9:10,11:12,13:14,15", "--dport").slots == 15


# --- ICMP ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, stored", [("echo-request", "echo-request"), ("8", "8"), ("0", "0"),
                                          ("255", "255"), ("008", "8"), ("time-exceeded", "time-exceeded")])
def test_icmp_types(text, stored):
    assert parse_icmp_type(text) == stored


@pytest.mark.parametrize("text", ["256", "-1", "echo", "8/0", "ECHO-REQUEST", "echo-request ", "1e2", "0x8",
                                  "neighbour-solicitation"])
def test_bad_icmp_types(text):
    with pytest.raises(UsageError, match="--icmp-type: .* is neither a number 0-255 nor one of"):
        parse_icmp_type(text)


def test_icmp_has_no_ports_and_a_type_needs_icmp():
    with pytest.raises(UsageError, match="--protocol=icmp has no ports"):
        spec(proto="icmp", dport=80)
    with pytest.raises(UsageError, match="--icmp-type needs --protocol=icmp"):
        spec(icmp_type="echo-request")
    assert spec(proto="icmp", dport=0, icmp_type="echo-request").icmp_type == "echo-request"


def test_icmp_is_refused_for_ipv6_addresses():
    rule = RuleSpec("web", Kind.ADD, parse_address("2001:db8::1"), AddressSpec.self_(), proto="icmp")
    with pytest.raises(UsageError, match="ICMPv6"):
        rule.validate()



# --- parse_filter ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("! -i docker0 -o docker0", ("!", "-i", "docker0", "-o", "docker0")),
        ("-i docker0 -o docker0", ("-i", "docker0", "-o", "docker0")),
        ("-m conntrack --ctstate NEW", ("-m", "conntrack", "--ctstate", "NEW")),
        ("-m conntrack --ctstate NEW,ESTABLISHED", ("-m", "conntrack", "--ctstate", "NEW,ESTABLISHED")),
        ("-m string --string 'GET /a b' --algo bm", ("-m", "string", "--string", "GET /a b", "--algo", "bm")),
        ('-m string --string "x y" --algo kmp', ("-m", "string", "--string", "x y", "--algo", "kmp")),
        ("-m iprange --src-range 10.0.0.1-10.0.0.9", ("-m", "iprange", "--src-range", "10.0.0.1-10.0.0.9")),
        ("  -i eth0   ", ("-i", "eth0")),
    ],
)
def test_filter_match_options_are_accepted(text, tokens):
    assert parse_filter(text) == tokens


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_filter(text):
    assert parse_filter(text) == ()


@pytest.mark.parametrize(
    "text",
    [
        "-j ACCEPT",
        "--jump ACCEPT",
        "--jump=ACCEPT",
        "-g DOCKER",
        "--goto DOCKER",
        "-A FORWARD",
        "-I FORWARD 1",
        "-D FORWARD 1",
        "-t nat",
        "--table nat",
        "-m comment --comment hi",
        "-m comment --comment=docker-fw:other:0123456789ab",
        "-jACCEPT",
        "-i docker0 -jACCEPT",
        "-tnat",
        "-N NEWCHAIN",
        "-X DOCKER",
        "-F",
        "-P FORWARD ACCEPT",
        "-R FORWARD 1",
        "-E DOCKER OTHER",
    ],
)
def test_filter_refuses_targets_commands_and_comments(text):
    with pytest.raises(UsageError, match="--filter"):
        parse_filter(text)


@pytest.mark.parametrize("text", ["-i docker0\n-j ACCEPT", "-i docker0\r", "-i docker0\0"])
def test_filter_must_be_one_line(text):
    with pytest.raises(UsageError, match="single line"):
        parse_filter(text)


def test_filter_with_unbalanced_quote_is_refused():
    with pytest.raises(UsageError, match="--filter"):
        parse_filter("-m string --string 'abc")


@pytest.mark.parametrize("text", ["-m comment --comm docker-fw:other:0123456789ab", "--ju ACCEPT", "--got DOCKER", "--tab nat"])
def test_filter_refuses_abbreviated_long_options(text):
    with pytest.raises(UsageError, match="--filter"):
        parse_filter(text)


@pytest.mark.parametrize("text", ["-h", "--help", "-V", "--version", "-i docker0 -h"])
def test_filter_refuses_help_and_version(text):
    with pytest.raises(UsageError, match="may only hold match conditions"):
        parse_filter(text)


# --- RuleSpec.validate ------------------------------------------------------------

SELF = AddressSpec.self_()
HOST = AddressSpec.host()
NET = AddressSpec.network(ipaddress.IPv4Network("203.0.113.0/24"))
DB = AddressSpec.container("db")


def spec(kind=Kind.ADD, source=NET, dest=SELF, dport=80, **kw) -> RuleSpec:
    return RuleSpec(owner="web", kind=kind, source=source, dest=dest, dport=dport, **kw)


@pytest.mark.parametrize(
    "rule",
    [
        spec(),
        spec(source=SELF, dest=NET),
        spec(dport=0),  # 'add' without --dport is allowed
        spec(Kind.INTERNAL, source=DB),
        spec(Kind.INTERNAL, source=SELF, dest=DB),
        spec(Kind.INTERNAL, source=HOST),
        spec(Kind.INPUT, source=SELF, dest=HOST),
        spec(Kind.INPUT, source=SELF, dest=NET),
    ],
)
def test_valid_specs(rule):
    rule.validate()


def test_source_and_dest_cannot_both_be_self():
    with pytest.raises(UsageError, match="same"):
        spec(source=SELF, dest=SELF).validate()


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("source, dest", [(NET, DB), (DB, NET), (HOST, NET), (NET, NET)])
def test_one_side_must_be_self(kind, source, dest):
    with pytest.raises(UsageError):
        spec(kind, source=source, dest=dest).validate()


def test_one_side_must_be_self_message():
    with pytest.raises(UsageError, match="either --source or --dest must be '.'"):
        spec(Kind.INTERNAL, source=DB, dest=HOST).validate()


@pytest.mark.parametrize("kind", [Kind.INPUT, Kind.INTERNAL])
def test_dport_mandatory_for_input_and_internal(kind):
    source = SELF if kind is Kind.INPUT else DB
    dest = HOST if kind is Kind.INPUT else SELF
    with pytest.raises(UsageError, match=f"--dport is mandatory for {kind.action}"):
        spec(kind, source=source, dest=dest, dport=0).validate()


@pytest.mark.parametrize("source, dest", [(DB, SELF), (SELF, DB), (HOST, SELF), (SELF, HOST)])
def test_add_refuses_container_or_host_on_the_other_side(source, dest):
    with pytest.raises(UsageError, match="add-internal"):
        spec(Kind.ADD, source=source, dest=dest).validate()


def test_unknown_protocol_is_refused():
    with pytest.raises(UsageError, match="protocol"):
        spec(proto="gre")


def test_kind_from_action():
    assert Kind.from_action("add") is Kind.ADD
    assert Kind.from_action("add-input") is Kind.INPUT
    assert Kind.from_action("add-internal") is Kind.INTERNAL
    with pytest.raises(UsageError):
        Kind.from_action("add-everything")


# --- command() / describe() ---------------------------------------------------------


def test_command_minimal():
    assert spec(dport=0).command() == ["add", "web", "--source=203.0.113.0/24", "--dest=.", "--protocol=tcp"]


def test_command_full():
    rule = spec(Kind.INTERNAL, source=DB, sport=1024, dport=5432, proto="udp", filter=("-i", "docker0"))
    assert rule.command() == [
        "add-internal",
        "web",
        "--source=db",
        "--sport=1024",
        "--dest=.",
        "--dport=5432",
        "--protocol=udp",
        "--filter=-i docker0",
    ]


def test_describe_quotes_for_the_shell():
    rule = spec(source=AddressSpec.network(ipaddress.IPv4Network("198.51.100.7/32")), filter=("!", "-i", "docker0"))
    assert rule.describe() == (
        "docker-fw add web --source=198.51.100.7 --dest=. --dport=80 --protocol=tcp --filter='! -i docker0'"
    )


ROUND_TRIP = [
    spec(),
    spec(source=SELF, dest=NET, dport=0, sport=53, proto="udp"),
    spec(filter=("!", "-i", "docker0", "-o", "docker0")),
    spec(filter=("-m", "conntrack", "--ctstate", "NEW")),
    spec(filter=("-m", "string", "--string", "GET /a b", "--algo", "bm")),
    spec(filter=("-m", "string", "--string", "it's \"quoted\" $HOME `x` \\", "--algo", "kmp")),
    spec(filter=("-m", "string", "--string", "'", "--algo", "bm")),
    spec(Kind.INTERNAL, source=DB, dport=5432, filter=("-i", "docker0", "-o", "docker0")),
    spec(Kind.INTERNAL, source=HOST, dport=22),
    spec(Kind.INPUT, source=SELF, dest=HOST, dport=53, proto="udp"),
    spec(source=AddressSpec.network(ipaddress.IPv4Network("198.51.100.7/32"))),
]


@pytest.mark.parametrize("rule", ROUND_TRIP, ids=lambda r: r.describe())
def test_describe_parses_back_through_the_cli(rule):
    from docker_fw import cli

    words = shlex.split(rule.describe())
    assert words[0] == "docker-fw"
    assert words[1:] == rule.command()
    args = cli.build_parser().parse_args(words[1:])
    assert args.action == rule.kind.action
    assert args.container == rule.owner
    assert parse_address(args.source) == rule.source
    assert parse_address(args.dest) == rule.dest
    assert parse_ports(args.sport, "--sport") == rule.sport
    assert parse_ports(args.dport, "--dport") == rule.dport
    assert (args.protocol or "tcp") == rule.proto
    assert parse_filter(args.filter) == rule.filter
    # and through the same function the CLI turns arguments into a request with
    request = cli._request(args)
    assert (request.container, request.sport, request.dport, request.proto, request.filter) == (
        rule.owner,
        rule.sport,
        rule.dport,
        rule.proto,
        rule.filter,
    )
    assert (parse_address(request.source), parse_address(request.dest)) == (rule.source, rule.dest)


@pytest.mark.parametrize("rule", ROUND_TRIP, ids=lambda r: r.describe())
def test_filter_text_parses_back(rule):
    assert parse_filter(rule.filter_text) == rule.filter
