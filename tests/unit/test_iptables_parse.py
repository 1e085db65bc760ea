"""iptables: parsing iptables-save output and explaining refused batches (no processes)."""

from __future__ import annotations

import pytest

from docker_fw.errors import FirewallError
from docker_fw.backends.iptables.process import Iptables, _explain_failure, bridge_name_problem, parse_save, split_restore, split_saved
from docker_fw.backends.iptables.reconcile import rule_line

from dfw_samples import DOCKER_2010_ICC_FALSE, REPO


def test_parse_save_reads_only_the_asked_table():
    filt = parse_save(DOCKER_2010_ICC_FALSE)
    nat = parse_save(DOCKER_2010_ICC_FALSE, "nat")
    assert filt.name == "filter" and nat.name == "nat"
    assert "MASQUERADE" not in {r.target() for r in filt.rules}
    assert [r.target() for r in nat.chain_rules("POSTROUTING")] == ["MASQUERADE"]
    assert list(filt.chains) == [
        "INPUT", "FORWARD", "OUTPUT", "DOCKER",
        "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER",
    ]


def test_parse_save_policies_and_rules():
    table = parse_save(DOCKER_2010_ICC_FALSE)
    assert table.chains["FORWARD"] == "DROP"
    assert table.chains["INPUT"] == "ACCEPT"
    assert table.chains["DOCKER"] == "-"
    forward = table.chain_rules("FORWARD")
    assert len(forward) == 6
    assert forward[2].args == ("-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    assert forward[2].line == "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    assert table.has_rule("FORWARD", "-o", "docker0", "-j", "DOCKER")
    assert table.has_rule("FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT")
    assert not table.has_rule("FORWARD", "-o", "docker0")
    assert not table.has_rule("DOCKER", "-o", "docker0", "-j", "DOCKER")


def test_saved_rule_comment_and_target():
    text = (
        "*filter\n:DOCKER-FW-FORWARD - [0:0]\n"
        '-A DOCKER-FW-FORWARD -s 1.2.3.4/32 -m comment --comment "docker-fw:web:0123456789ab" -j DOCKER\n'
        "-A DOCKER-FW-FORWARD -s 1.2.3.5/32 -m comment --comment \"two words\" -g DOCKER\n"
        "-A DOCKER-FW-FORWARD -s 1.2.3.6/32\n"
        "COMMIT\n"
    )
    rules = parse_save(text).rules
    assert [r.comment for r in rules] == ["docker-fw:web:0123456789ab", "two words", None]
    assert [r.target() for r in rules] == ["DOCKER", "DOCKER", None]
    assert rules[1].line.endswith('"two words" -g DOCKER')


def test_parse_save_numbers_rules_within_their_chain():
    """Positions are 1-based per chain, as 'iptables -D CHAIN N' counts them."""
    table = parse_save(DOCKER_2010_ICC_FALSE)
    for chain in table.chains:
        assert [r.position for r in table.chain_rules(chain)] == list(range(1, len(table.chain_rules(chain)) + 1))
    forward = table.chain_rules("FORWARD")
    assert forward[2].position == 3 and forward[2].line.startswith("-A FORWARD -o docker0 -m conntrack")
    # interleaved chains and other tables do not disturb the count
    text = "*nat\n:X - [0:0]\n-A X -j RETURN\nCOMMIT\n*filter\n:X - [0:0]\n:Y - [0:0]\n-A Y -j RETURN\n-A X -j RETURN\n-A Y -j ACCEPT\nCOMMIT\n"
    assert [(r.chain, r.position) for r in parse_save(text).rules] == [("Y", 1), ("X", 1), ("Y", 2)]


def test_parse_save_of_empty_output():
    table = parse_save("")
    assert table.chains == {} and table.rules == []


def test_parse_save_survives_quotes_iptables_prints_bare():
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n"
        "-A INPUT -i a'b -j ACCEPT\n"
        '-A INPUT -m comment --comment "docker-fw:web:0123456789ab" -j ACCEPT\n'
        "COMMIT\n"
    )
    table = parse_save(text)
    assert [r.args[:2] for r in table.rules] == [("-i", "a'b"), ("-m", "comment")]
    assert table.rules[1].comment == "docker-fw:web:0123456789ab"


BATCH = ["-A DOCKER -s 1.2.3.4/32 -j ACCEPT", "-A DOCKER -m nosuchmatch -j ACCEPT", "-D DOCKER -s 9.9.9.9/32 -j ACCEPT"]


@pytest.mark.parametrize(
    "stderr, culprit",
    [
        (
            "iptables-restore v1.8.9 (nf_tables): Couldn't load match `nosuchmatch':No such file or directory\n\n"
            "Error occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
            BATCH[1],
        ),
        ("iptables-restore: line 4 failed: Bad rule (does a matching rule exist in that chain?).\n", BATCH[2]),
        ("iptables-restore: line 2 failed\n", BATCH[0]),
    ],
)
def test_failure_names_the_refused_line(stderr, culprit):
    message = _explain_failure(stderr, BATCH)
    assert message.startswith(f"iptables refused the change, nothing was applied: {culprit}: ")
    assert "\n" not in message


@pytest.mark.parametrize("stderr", ["iptables-restore: line 9 failed\n", "something odd\n", ""])
def test_failure_without_a_usable_line_number(stderr):
    message = _explain_failure(stderr, BATCH)
    assert message.startswith("iptables refused the change, nothing was applied: ")
    assert not any(line in message for line in BATCH)
    assert "\n" not in message


def test_missing_binaries_are_a_firewall_error():
    fw = Iptables()
    fw.save_bin = fw.restore_bin = None
    with pytest.raises(FirewallError, match="iptables-save not found"):
        fw.save()
    with pytest.raises(FirewallError, match="iptables-restore not found"):
        fw.restore("filter", ["-A DOCKER -j ACCEPT"])
    assert FirewallError("x").exit_code == 4


def test_empty_restore_runs_nothing():
    fw = Iptables()
    fw.restore_bin = None  # would raise if it tried to run anything
    fw.restore("filter", [])
    assert fw.restores == 0


# --- hostile names, as iptables-save prints them ---------------------------------------------

# Interface names (real bridges: the kernel took each) and comments the
# fixture was captured with, each rule appended with 'iptables -A FORWARD ARGS'.
HOSTILE_BRIDGES = [
    'q"net', '"x', 'x"', '""', '\\"', "b\\s", "a'b#c", "#x", "u\u2028x", "n\u0085x",
    'ab"defghijklmno',  # 15 bytes, the most an interface name holds
    "-j", "x\udcffy",  # \udcff: the byte 0xff, not UTF-8 (decoded with surrogateescape)
]
HOSTILE_COMMENTS = [
    'say "hi"', "back\\slash", "it's", "#hash", "v\x0btab", "n\u0085el", "l\u2028s", "p\u2029s",
    "raw\udcffbyte", " padded ", "", "two  spaces", "-i", 'a"b c\\"d',
]
HOSTILE_RULES = (
    [args for b in HOSTILE_BRIDGES
     for args in (["-i", b, "!", "-o", b, "-j", "ACCEPT"], ["!", "-i", b, "-o", b, "-j", "DOCKER"])]
    + [["-s", "10.0.0.1/32", "-m", "comment", "--comment", c, "-j", "ACCEPT"] for c in HOSTILE_COMMENTS]
    + [
        ["-o", 'q"net', "-m", "comment", "--comment", 'q"net', "-j", "LOG", "--log-prefix", "pre \"fix' "],
        ["-i", '"x', "-m", "comment", "--comment", "docker-fw:web:0123456789ab", "-j", "DOCKER"],
    ]
)
HOSTILE_SAVE = (REPO / "tests" / "fixtures" / "iptables-save-hostile-names.txt").read_bytes()


def test_parse_save_reads_hostile_names_exactly_as_iptables_printed_them():
    """Interface names are raw ('"' is part of the name), comments quoted; a line
    ends at '\\n' only (not at \\x0b, U+0085, U+2028, U+2029)."""
    table = parse_save(HOSTILE_SAVE.decode("utf-8", "surrogateescape"))
    assert [list(r.args) for r in table.chain_rules("FORWARD")] == HOSTILE_RULES
    assert [r.position for r in table.chain_rules("FORWARD")] == list(range(1, len(HOSTILE_RULES) + 1))
    assert table.chain_rules("FORWARD")[-1].comment == "docker-fw:web:0123456789ab"
    assert list(table.chains) == ["INPUT", "FORWARD", "OUTPUT", "DOCKER"]


@pytest.mark.parametrize("bridge", [b for b in HOSTILE_BRIDGES if "\udcff" not in b])  # UTF-8 ones
def test_rule_lines_with_hostile_names_read_back_as_written(bridge):
    """rule_line writes what iptables-restore's tokenizer reads back as the same
    arguments; iptables-save then prints the name raw, and parse_save reads that."""
    args = ["!", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", f"c {bridge}", "-j", "DOCKER"]
    line = rule_line("-A", "FORWARD", args)
    assert split_restore(line) == ["-A", "FORWARD", *args]
    printed = f'-A FORWARD ! -i {bridge} -o {bridge} -m comment --comment "c {_save_string(bridge)}" -j DOCKER'
    assert split_saved(printed) == ["-A", "FORWARD", *args]


def _save_string(text: str) -> str:
    """xtables_save_string's escapes inside its double quotes."""
    return "".join("\\" + c if c in "\"\\'" else c for c in text)


@pytest.mark.parametrize(
    "line, tokens",
    [
        ('-A X -i a"b -j ACCEPT', ["-A", "X", "-i", 'a"b', "-j", "ACCEPT"]),
        ('-A X -m comment --comment "a \\"b\\" c" -j ACCEPT',
         ["-A", "X", "-m", "comment", "--comment", 'a "b" c', "-j", "ACCEPT"]),
        ('-A X -i "x -o x" -j ACCEPT', ["-A", "X", "-i", '"x', "-o", 'x"', "-j", "ACCEPT"]),
        # libxt_physdev prints bridge port names raw too (checked on 1.8.9)
        ('-A X -m physdev --physdev-in "p -j ACCEPT', ["-A", "X", "-m", "physdev", "--physdev-in", '"p', "-j", "ACCEPT"]),
        # a quote some extension printed raw, not a quoted value: taken as it is
        ('-A X -m set --match-set "x dst -j DROP', ["-A", "X", "-m", "set", "--match-set", '"x', "dst", "-j", "DROP"]),
        ('-A X -m set --match-set "a"b dst', ["-A", "X", "-m", "set", "--match-set", '"a"b', "dst"]),
        ("-A X -i a\u2028b -j ACCEPT", ["-A", "X", "-i", "a\u2028b", "-j", "ACCEPT"]),
    ],
)
def test_split_saved(line, tokens):
    assert split_saved(line) == tokens


@pytest.mark.parametrize(
    "line, tokens",
    [
        ('-A X "a b" c', ["-A", "X", "a b", "c"]),
        ('-A X "a\\"b" "c\\\\d"', ["-A", "X", 'a"b', "c\\d"]),
        ('-A X a\\b', ["-A", "X", "a\\b"]),  # outside quotes a backslash is ordinary
        ('-A X ""', ["-A", "X", ""]),
        ('-A X "ab"cd', ["-A", "X", "ab", "cd"]),  # a closing quote ends the argument
        ("-A X a\tb", ["-A", "X", "a", "b"]),
        ("-A X a\x0bb", ["-A", "X", "a\x0bb"]),  # only space, tab and newline separate
        ("-A X a\nb", ["-A", "X", "a"]),  # the next line is another command
        ("-A X a\0b", ["-A", "X", "a"]),  # read as a C string
    ],
)
def test_split_restore_is_iptables_restores_tokenizer(line, tokens):
    assert split_restore(line) == tokens


@pytest.mark.parametrize("token", ["a\nb", "ACCEPT\n", "a\0b", "\ud800", "x\udcffy"])
def test_rule_line_refuses_what_iptables_restore_cannot_read_back(token):
    with pytest.raises(FirewallError, match="reads it back unchanged; nothing was applied"):
        rule_line("-A", "X", ["-m", "comment", "--comment", token, "-j", "ACCEPT"])


@pytest.mark.parametrize(
    "name", ["docker0", "br-0123456789ab", 'q"net', "b\\s", "a'b#c", "#x", "u\u2028x", "n\u0085x", "-j", 'ab"defghijklmno', "é" * 7]
)
def test_bridge_names_iptables_matches_exactly(name):
    assert bridge_name_problem(name) is None


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "1 to 15 bytes"),
        ("abcdefghijklmnop", "1 to 15 bytes"),
        ("é" * 8, "1 to 15 bytes"),  # 16 bytes of UTF-8
        ("br+", "trailing '+'"),
        ("!", "negation"),
        ("a b", "holds ' '"),
        ("a/b", "holds '/'"),
        ("a:b", "holds ':'"),
        ("a\x0bb", "holds '\\x0b'"),
        ("a\x1bb", "holds '\\x1b'"),
        ("a\udcffb", "not valid Unicode"),
    ],
)
def test_bridge_names_refused(name, reason):
    assert reason in (bridge_name_problem(name) or "")
