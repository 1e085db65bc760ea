"""The shortcuts issue #10 took on hot paths give what the general code gives.

Each shortcut handles the common case (a line with nothing quoted, a line of
plain ASCII) and leaves the rest to the general code: these properties check
the shortcut's answer against the general one's on text full of the
characters that matter (quotes, backslashes, blanks shlex and str.split
disagree on, control and non-ASCII characters).
"""

from __future__ import annotations

import shlex

from hypothesis import given, settings, strategies as st

from docker_fw.backends.iptables.process import MAX_RESTORE_LINE, check_restore_lines, split_saved
from docker_fw.errors import FirewallError, UsageError
from docker_fw.lean import percent_encoded
from docker_fw.rulegrammar import _words

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
