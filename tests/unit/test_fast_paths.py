"""The shortcuts issue #10 took on hot paths give what the general code gives.

Each shortcut handles the common case (a line with nothing quoted, a line of
plain ASCII) and leaves the rest to the general code: these properties check
the shortcut's answer against the general one's on text full of the
characters that matter (quotes, backslashes, blanks shlex and str.split
disagree on, control and non-ASCII characters).
"""

from __future__ import annotations

import shlex
from unittest import mock

import pytest

from hypothesis import given, settings, strategies as st

from docker_fw.backends.iptables.process import MAX_RESTORE_LINE, check_restore_lines, split_saved
from docker_fw.errors import FirewallError, UsageError
from docker_fw.lean import percent_encoded
from docker_fw.rulegrammar import _container_line_parser, _options, _words, parse_from_line, plain_line_options
from docker_fw.rulegrammar import Origin, RuleError

TRICKY = "ab -./:=#\"'\\\t\r\n\x0b\x0c\x1c\x85\xa0\u2028\x00\x7f\udcff"
text = st.text(alphabet=st.sampled_from(TRICKY), max_size=30)


@settings(max_examples=400)
@given(text)
def test_a_from_lines_words_are_shlex_splits(line):
    try:
        expected = shlex.split(line)
    except ValueError as exc:
        expected = UsageError(str(exc))
    try:
        got = _words(line)
    except UsageError as exc:
        got = exc
    if isinstance(expected, UsageError):
        assert isinstance(got, UsageError) and str(got) == str(expected)
    else:
        assert got == expected


def _saved(token: str, quoted: bool) -> str:
    """TOKEN as iptables-save prints it: xtables_save_string's quoting, or raw."""
    if not quoted:
        return token
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in token) + '"'


saved_tokens = st.lists(
    st.one_of(
        st.tuples(st.text(alphabet=st.sampled_from('ab-.:"\\#'), min_size=1, max_size=8)
                  .filter(lambda t: not t.startswith('"') and t not in ("-i", "-o")), st.just(False)),
        st.tuples(st.text(alphabet=st.sampled_from("ab :-\"'\\#"), max_size=12), st.just(True)),
    ),
    max_size=8,
)


@settings(max_examples=400)
@given(saved_tokens)
def test_split_saved_reads_back_what_iptables_save_prints(tokens):
    line = " ".join(_saved(token, quoted) for token, quoted in tokens)
    assert split_saved(line) == [token for token, _ in tokens]


@settings(max_examples=300)
@given(st.lists(text, max_size=4), st.integers(0, 2))
def test_restore_lines_are_refused_for_a_control_character_or_their_length(lines, stretch):
    lines = [line * (stretch * 100 + 1) for line in lines]
    bad = any(c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for line in lines for c in line) or any(
        len(line.encode("utf-8", "surrogatepass")) > MAX_RESTORE_LINE for line in lines)
    try:
        check_restore_lines(lines)
        refused = False
    except FirewallError:
        refused = True
    assert refused is bad


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20), st.sampled_from(["", "/"]))
def test_percent_encoded_is_urllib_quote(value, safe):
    import urllib.parse

    assert percent_encoded(value, safe) == urllib.parse.quote(value, safe=safe)


# A --from line's words: the option spellings argparse knows (in full, abbreviated,
# short, joined to a value), words argparse reads as options or as '--', and values.
OPTION_WORDS = ["-s", "--source", "--sport", "-d", "--dest", "--dport", "-p", "--protocol", "--icmp-type",
                "--filter", "--so", "--sou", "--d", "--de", "--dp", "--s", "--pro", "--icmp", "--fil", "-sweb",
                "-s=1.2.3.4", "-p=tcp", "-ptcp", "--", "-", "-x", "--nope", "--help", "-h", "-5", "-1:2"]
VALUES = ["web", "db", ".", "/", "1.2.3.4", "2001:db8::1/64", "80", "80,443", "1:2", "tcp", "udp", "icmp",
          "TCP", "bogus", "echo-request", "! -i @bridge", "-i eth0", "a=b", "=", "", "x y", "-80"]
line_words = st.lists(
    st.one_of(
        st.sampled_from(OPTION_WORDS),
        st.sampled_from(VALUES),
        st.builds(lambda option, value: f"{option}={value}", st.sampled_from(OPTION_WORDS), st.sampled_from(VALUES)),
        st.text(alphabet=st.sampled_from("ab-=.:/ "), max_size=6),
    ),
    max_size=9,
)


def _argparse_reading(words):
    try:
        parsed = _container_line_parser().parse_args(words)
    except UsageError as exc:
        return exc
    return parsed.container, _options(parsed)


@settings(max_examples=1500)
@given(st.one_of(line_words, st.builds(lambda w: ["web", *w], line_words)))
def test_a_from_lines_plain_options_are_argparses(words):
    """plain_line_options answers only where argparse accepts the words, and
    then with what argparse makes of them (errors always come from argparse)."""
    plain = plain_line_options(words)
    if plain is not None:
        assert _argparse_reading(words) == plain


@pytest.mark.parametrize("line", [
    "web --source 203.0.113.7 --dport 80",
    "web --source=203.0.113.7 --dport=80 --protocol=udp",
    "web -s 203.0.113.0/24 -d . -p tcp --sport 1024:2048 --filter '! -i @bridge'",
    "db --source=web --dport=5432 --icmp-type=echo-request",
])
def test_the_usual_from_lines_take_the_plain_path(line):
    assert plain_line_options(_words(line)) is not None


@settings(max_examples=500)
@given(st.builds(lambda w: " ".join(shlex.quote(x) for x in ["web", *w]), line_words), st.sampled_from(["add", "add-input"]))
def test_a_from_lines_request_or_error_is_argparses(line, action):
    """The whole line, read with the plain path and with argparse alone: the
    same request, or the same error."""
    origin = Origin.file("rules.txt", 3)

    def outcome():
        try:
            return parse_from_line(line, action, origin)
        except RuleError as exc:
            return str(exc)

    fast = outcome()
    with mock.patch("docker_fw.rulegrammar.plain_line_options", return_value=None):
        slow = outcome()
    assert fast == slow


@settings(max_examples=300)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 128))
def test_an_address_specs_network_is_what_its_text_parses_to(address, prefix):
    """AddressSpec.ip_network hands back the network parse_address made: the same
    value ipaddress.ip_network gives for the text the spec holds."""
    import ipaddress

    from docker_fw.model import parse_address

    text = f"{address}/{min(prefix, address.max_prefixlen)}"
    try:
        spec = parse_address(text)
    except UsageError:
        return  # loopback, link-local, IPv4-mapped: refused before any network is made
    assert spec.ip_network == ipaddress.ip_network(spec.value)
    assert str(spec.ip_network) == spec.value


@settings(max_examples=200)
@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=6), st.integers(8, 32))
def test_is_docker_address_remembers_what_it_computes(addresses, prefix):
    import ipaddress

    from docker_fw.engine import Network, Snapshot

    subnets = tuple(ipaddress.ip_network(s) for s in ("10.0.0.0/8", "172.17.0.0/16"))
    snapshot = Snapshot(containers=[], networks=[
        Network(id="n", name="bridge", driver="bridge", bridge="docker0", subnets=subnets, gateway="172.17.0.1")])
    for address in addresses * 2:  # the second time from the memo
        net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        fresh = any(net.subnet_of(sub) for sub in subnets)
        assert snapshot.is_docker_address(net) is fresh
