"""filtergrammar: the --filter allow-list, through model.parse_filter as the CLI uses it.

Each supported form is accepted as typed; each attack found on the denylist
(issue #9) and everything else outside the grammar is refused with one line
naming the word.  tests/netns/test_filter_netns.py applies accepted forms to
real iptables.
"""

from __future__ import annotations

import ipaddress

import pytest

from docker_fw import filtergrammar
from docker_fw.engine import Container, Endpoint, Network, Snapshot
from docker_fw.errors import UsageError
from docker_fw.filtergrammar import MAX_CHARS, MAX_WORDS, FilterError, check_tokens
from docker_fw.model import AddressSpec, Kind, RuleSpec, parse_address, parse_filter
from docker_fw.resolve import resolve

ACCEPTED = [
    # -i / -o, negated, the @bridge placeholder, '+' wildcards, long spellings
    "! -i @bridge -o @bridge",
    "-i docker0",
    "-o br-0123456789ab",
    "-i veth+",
    "! -o eth+",
    "--in-interface eth0 ! --out-interface eth1",
    # conntrack
    "-m conntrack --ctstate NEW",
    "-m conntrack --ctstate NEW,ESTABLISHED,RELATED",
    "-m conntrack ! --ctstate INVALID",
    "-m conntrack --ctstatus ASSURED,CONFIRMED",
    "-m conntrack --ctproto tcp",
    "-m conntrack ! --ctproto 17",
    "-m conntrack --ctorigdstport 8080",
    "-m conntrack --ctorigdstport 8000:8099",
    "-m conntrack ! --ctorigsrc 192.0.2.0/24 --ctorigdst 192.0.2.7",
    "-m conntrack --ctreplsrc 10.0.0.0/8 --ctrepldst 10.1.2.3 --ctreplsrcport 53 --ctrepldstport 1024:65535",
    "-m conntrack --ctorigsrcport 1000 --ctstate DNAT --ctdir ORIGINAL",
    # state
    "-m state --state NEW",
    "-m state ! --state INVALID,UNTRACKED",
    # iprange
    "-m iprange --src-range 192.0.2.1-192.0.2.9",
    "-m iprange ! --dst-range 10.0.0.1-10.0.0.255",
    "-m iprange --src-range 2001:db8::1-2001:db8::9",
    # mac
    "-m mac --mac-source 00:11:22:aa:BB:cc",
    "-m mac ! --mac-source 02:42:ac:11:00:02",
    # limit
    "-m limit",
    "-m limit --limit 5/min --limit-burst 10",
    "-m limit --limit 1/s",
    "-m limit --limit 100/hour",
    "-m limit --limit 3/d",
    "-m limit --limit 10",
    # recent
    "-m recent --name ssh --set --rsource",
    "-m recent --name ssh --update --seconds 60 --hitcount 4 --rsource",
    "-m recent ! --rcheck --name x",
    "-m recent --remove --name x --rdest",
    "-m recent --update --seconds 60 --reap --rttl --name x.y-z_1",
    "-m recent --set --mask 255.255.255.0 --name x",
    # connlimit
    "-m connlimit --connlimit-above 3",
    "-m connlimit ! --connlimit-above 3 --connlimit-mask 24",
    "-m connlimit --connlimit-upto 10 --connlimit-daddr",
    "-m connlimit --connlimit-above 2 --connlimit-saddr --connlimit-mask 64",
    # addrtype
    "-m addrtype --src-type LOCAL",
    "-m addrtype ! --dst-type LOCAL,BROADCAST --limit-iface-in",
    "-m addrtype --dst-type UNICAST --limit-iface-out",
    # tcp (flags only: docker-fw writes the ports)
    "-m tcp",
    "-m tcp --syn",
    "-m tcp ! --syn",
    "-m tcp --tcp-flags SYN,ACK SYN",
    "-m tcp ! --tcp-flags ALL NONE",
    "-m tcp --tcp-option 2",
    # length, ttl
    "-m length --length 0:500",
    "-m length ! --length 1400",
    "-m ttl --ttl-eq 64",
    "-m ttl ! --ttl-eq 64",
    "-m ttl --ttl-lt 5",
    "-m ttl --ttl-gt 200",
    # string
    "-m string --string 'GET /a b' --algo bm",
    "-m string ! --string x --algo kmp --from 40 --to 200 --icase",
    """-m string --string 'it'"'"'s "q" \\ $HOME `x` -j ACCEPT' --algo bm""",
    # several modules, a module twice (a second instance), -i between modules
    "-m conntrack --ctstate NEW -m recent --set --name ssh -m limit --limit 5/min ! -i @bridge",
    "-m conntrack --ctstate NEW -m conntrack --ctorigdstport 80",
    "-m conntrack --ctstate NEW -i eth0 --ctorigdstport 80",
    "--match state --state NEW",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_supported_forms_are_accepted_as_typed(text):
    import shlex

    tokens = parse_filter(text)
    assert tokens == tuple(shlex.split(text))
    assert check_tokens(tokens).tokens == tokens  # what the store holds passes again


def _smuggling_text() -> str:
    """The shape of issue #9's attack: padding past 10,240 bytes, a rule in a --string."""
    pad = " ".join(["-m conntrack --ctstate " + ",".join(["NEW"] * 249)] * 10)
    return pad + " -m string --algo bm --string 'XX -I FORWARD 1 -s 198.51.100.3/32 -j ACCEPT -m comment --comment '"


REFUSED = [
    # (filter, a word the one-line message must name)
    # the attacks of issue #9
    (_smuggling_text(), "too long"),
    ("-6", "'-6'"),
    ("-4", "'-4'"),
    ("--ipv6", "'--ipv6'"),
    ("-i eth0 -6", "'-6'"),
    ("!", "'!' at the end"),
    ("-i eth0 !", "'!' at the end"),
    ("-m conntrack --ctstate NEW !", "'!' at the end"),
    ("! -p udp", "'-p'"),
    ("-fjACCEPT", "'-fjACCEPT' is not allowed (each option is a word of its own"),
    ("-jACCEPT", "'-jACCEPT'"),
    ("-i docker0 -jACCEPT", "'-jACCEPT'"),
    ("-f", "'-f'"),
    ("-ieth0", "'-ieth0'"),
    ("-j ACCEPT", "'-j'"),
    ("--jump ACCEPT", "'--jump'"),
    ("--jump=ACCEPT", "'--jump=ACCEPT'"),
    ("-g DOCKER", "'-g'"),
    ("--goto DOCKER", "'--goto'"),
    ("--go DOCKER", "'--go'"),
    ("--got DOCKER", "'--got'"),
    ("--ju ACCEPT", "'--ju'"),
    ("-h", "'-h'"),
    ("--help", "'--help'"),
    ("-i docker0 -h", "'-h'"),
    ("-m conntrack --help", "'--help'"),
    ("-V", "'-V'"),
    ("--version", "'--version'"),
    ("--comment docker-fw:other:0123456789ab", "'--comment'"),
    ("-m comment --comment hi", "'comment'"),
    ("-m comment --comm docker-fw:other:0123456789ab", "'comment'"),
    ("-i caf\u00e9", "'\\xe9'"),
    ("-m string --string caf\u00e9 --algo bm", "'\\xe9'"),
    ("-i eth\udce9", "'\\udce9'"),  # a byte that is not UTF-8, as argv decodes it
    ("-i\teth0", "'\\t'"),
    ("-i eth0\x0b", "'\\x0b'"),
    ("-i eth0\u2028", "'\\u2028'"),
    ("-i eth0\x85", "'\\x85'"),
    ("-i docker0\n-j ACCEPT", "'\\n'"),
    ("-i docker0\0", "'\\x00'"),
    ("-m conntrack --ctstate " + "NEW," * 130 + "NEW", "too long"),
    ("-m tcp " * (MAX_WORDS // 2 + 1), "too many words"),
    # negation in the wrong place
    ("! ! -i eth0", "'!' twice"),
    ("! -m conntrack --ctstate NEW", "before -m"),
    ("-m limit ! --limit 5/s", "before --limit"),
    ("-m ttl ! --ttl-lt 5", "before --ttl-lt"),
    ("-m recent --set ! --name x", "before --name"),
    ("-i ! eth0", "'!'"),
    ("-m conntrack --ctstate ! NEW", "'!'"),
    ("-m string --string ! --algo bm", "'!'"),
    # docker-fw's own matches
    ("-p tcp", "--protocol"),
    ("-s 192.0.2.1", "--source"),
    ("-d 192.0.2.1", "--dest"),
    ("--dport 80", "--dport"),
    ("-m tcp --dport 80", "'--dport'"),
    ("-m udp --dport 53", "'udp'"),
    ("-m multiport --dports 80,443", "one rule per port"),
    # options out of place, misspelt, glued, abbreviated, twice
    ("--ctstate NEW", "-m conntrack"),
    ("-m state --ctstate NEW", "-m conntrack"),
    ("-m conntrack --ctstate=NEW", "write --ctstate and its value as two words, not '--ctstate=NEW'"),
    ("-m conntrack --ctst NEW", "'--ctst'"),
    ("-i eth0 -i eth1", "-i given twice"),
    ("-i eth0 --in-interface eth1", "--in-interface given twice"),
    ("-m conntrack --ctstate NEW --ctstate INVALID", "--ctstate given twice"),
    ("--", "'--'"),
    ("-", "'-'"),
    ("eth0", "'eth0'"),
    ("-m", "-m needs"),
    ("-m nosuchmatch --foo", "'nosuchmatch'"),
    ("-m CONNTRACK --ctstate NEW", "'CONNTRACK'"),
    # a module without what it needs
    ("-m conntrack", "-m conntrack needs one of its options (--ctstate,"),
    ("-m state", "-m state needs one of its options (--state)"),
    ("-m string --string x", "needs --algo"),
    ("-m recent --name x", "needs --set or --rcheck"),
    ("-m connlimit --connlimit-mask 24", "needs --connlimit-above"),
    ("-m iprange", "needs one of its options (--src-range, --dst-range)"),
    # arguments that are not what the option takes
    ("-i", "-i needs an interface"),
    ("-i -j", "'-j' is not an interface"),
    ("-i +", "'+' is not an interface"),
    ("-i averyveryverylongname", "'averyveryverylongname'"),
    ("-i eth/0", "'eth/0'"),
    ("-i @bridge+", "'@bridge+'"),
    ("-m conntrack --ctstate NEW,BOGUS", "'NEW,BOGUS'"),
    ("-m conntrack --ctstate new", "'new'"),
    ("-m conntrack --ctstate NEW,", "'NEW,'"),
    ("-m conntrack --ctorigsrc example.org", "'example.org'"),
    ("-m conntrack --ctorigsrc dead.beef", "'dead.beef'"),
    ("-m conntrack --ctorigdstport 99999", "'99999'"),
    ("-m conntrack --ctorigdstport 90:80", "'90:80'"),
    ("-m iprange --src-range 10.0.0.9-10.0.0.1", "'10.0.0.9-10.0.0.1'"),
    ("-m iprange --src-range 10.0.0.1-2001:db8::1", "'10.0.0.1-2001:db8::1'"),
    ("-m iprange --src-range 10.0.0.0/8", "'10.0.0.0/8'"),
    ("-m iprange --src-range 10.0.0.1-10.0.0.9 --dst-range 2001:db8::1-2001:db8::2", "mixes IPv4 and IPv6"),
    ("-m mac --mac-source 00:11:22:33:44", "'00:11:22:33:44'"),
    ("-m limit --limit 5/fortnight", "'5/fortnight'"),
    ("-m limit --limit 0/s", "'0/s'"),
    ("-m limit --limit 5/", "'5/'"),
    ("-m limit --limit-burst 0", "'0'"),
    ("-m length --length 70000", "'70000'"),
    ("-m ttl --ttl-eq 256", "'256'"),
    ("-m connlimit --connlimit-above 1 --connlimit-mask 129", "'129'"),
    ("-m recent --set --name ../x", "'../x'"),
    ("-m recent --set --name x --hitcount 0", "'0'"),
    ("-m string --string '' --algo bm", "''"),
    ("-m string --string " + "x" * 129 + " --algo bm", "'" + "x" * 60 + "'..."),
    ("-m string --string x --algo rabin", "'rabin'"),
    ("-m tcp --tcp-flags SYN", "--tcp-flags needs"),
    ("-m tcp --tcp-flags SYN,BOGUS SYN", "'SYN,BOGUS'"),
    ("-m ttl --ttl-eq 5 -m conntrack --ctorigsrc 2001:db8::1", "mixes IPv4 and IPv6"),
]


@pytest.mark.parametrize("text, needle", REFUSED, ids=[t[:40] for t, _ in REFUSED])
def test_refused_with_one_line_naming_the_word(text, needle):
    with pytest.raises(FilterError) as refused:
        parse_filter(text)
    message = str(refused.value)
    assert needle in message
    assert message.startswith("--filter")
    assert message.isascii() and message.isprintable(), message  # one line, whatever the input held
    assert isinstance(refused.value, UsageError) and refused.value.exit_code == 2


@pytest.mark.parametrize("text, needle", [r for r in REFUSED if r[1] != "too long" and "\\" not in r[1]])
def test_stored_words_are_checked_alike(text, needle):
    """A filter read back from the store (words, no text) meets the same grammar."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError:
        return
    with pytest.raises(FilterError):
        check_tokens(words)


@pytest.mark.parametrize("words", [(1, 2), ("-i", None), ("-i", ["eth0"])])
def test_stored_words_of_another_type_are_refused(words):
    with pytest.raises(FilterError, match="is not text"):
        check_tokens(words)


def test_bounds():
    states = " -m conntrack --ctstate NEW" + ",NEW" * 120
    at_most = "-i xy" + states
    assert len(at_most) == MAX_CHARS == 512
    assert parse_filter(at_most)
    with pytest.raises(FilterError, match=f"513 characters \\(at most {MAX_CHARS}\\)"):
        parse_filter("-i xyz" + states)
    with pytest.raises(FilterError, match=f"at most {MAX_CHARS}"):
        parse_filter("-i eth0 " + " " * MAX_CHARS)  # typed text counts, blanks too
    words = ("-m", "tcp") * (MAX_WORDS // 2)
    assert check_tokens(words).tokens == words
    with pytest.raises(FilterError, match=f"at most {MAX_WORDS}"):
        check_tokens((*words, "-m", "tcp"))
    with pytest.raises(FilterError, match=f"at most {MAX_CHARS}"):
        check_tokens(("-m", "string", "--algo", "bm", "--string", "x" * 128) * 4)


def test_help_text_names_every_module():
    text = filtergrammar.describe_supported()
    for name in filtergrammar.MODULES:
        assert f"-m {name} " in text
    assert "[!] --ctstate" in text and "[!] --limit " not in text


# --- what a filter asks of its rule ------------------------------------------------------

NET4 = AddressSpec.network(ipaddress.IPv4Network("203.0.113.0/24"))
NET6 = AddressSpec.network(ipaddress.IPv6Network("2001:db8:ffff::/64"))


def rule(source=NET4, proto="tcp", text="", **kw) -> RuleSpec:
    return RuleSpec(owner="web", kind=Kind.ADD, source=source, dest=AddressSpec.self_(), proto=proto,
                    dport=80, filter=parse_filter(text), **kw)


@pytest.mark.parametrize("text", ["-m tcp --syn", "-m tcp"])
def test_tcp_flags_need_protocol_tcp(text):
    rule(text=text).validate()
    with pytest.raises(FilterError, match="-m tcp needs --protocol=tcp"):
        rule(proto="udp", text=text).validate()


@pytest.mark.parametrize(
    "source, text",
    [
        (NET6, "-m ttl --ttl-eq 5"),
        (NET6, "-m iprange --src-range 10.0.0.1-10.0.0.9"),
        (NET4, "-m iprange --src-range 2001:db8::1-2001:db8::9"),
        (NET4, "-m connlimit --connlimit-above 1 --connlimit-mask 64"),
    ],
)
def test_filter_family_must_match_the_address(source, text):
    with pytest.raises(UsageError, match="IPv"):
        rule(source=source, text=text).validate()


def _snapshot_with_ipv6() -> Snapshot:
    bridge = Network("f" * 64, "bridge", "bridge", "docker0", (ipaddress.IPv4Network("172.17.0.0/16"),), "172.17.0.1")
    endpoint = Endpoint("bridge", "docker0", "172.17.0.2", "172.17.0.1", ip6="2001:db8:1::2", gateway6="2001:db8:1::1")
    return Snapshot(containers=[Container("a" * 64, "web", "running", (endpoint,)),
                                Container("b" * 64, "db", "running", (endpoint,))], networks=[bridge])


def test_ipv4_only_filter_gets_no_ipv6_copy():
    between = RuleSpec(owner="web", kind=Kind.INTERNAL, source=parse_address("db"), dest=AddressSpec.self_(), dport=80)
    assert {r.family for r in resolve(between, _snapshot_with_ipv6())} == {4, 6}
    ttl = RuleSpec(owner="web", kind=Kind.INTERNAL, source=parse_address("db"), dest=AddressSpec.self_(), dport=80,
                   filter=parse_filter("-m ttl --ttl-lt 5"))
    assert {r.family for r in resolve(ttl, _snapshot_with_ipv6())} == {4}


@pytest.mark.parametrize("words", [("-j", "ACCEPT"), ("!",), ("-6",), tuple(_smuggling_text().split()),
                                   ("-m", "tcp", "--syn")])
def test_resolve_refuses_a_recorded_filter_the_grammar_refuses(words):
    """A record of an older docker-fw (no grammar, or another protocol): never rendered."""
    recorded = RuleSpec(owner="web", kind=Kind.INTERNAL, source=parse_address("db"), dest=AddressSpec.self_(),
                        dport=80, proto="udp", filter=words)
    with pytest.raises(FilterError, match="recorded filter refused"):
        resolve(recorded, _snapshot_with_ipv6())
