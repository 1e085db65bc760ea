"""iptables: parsing iptables-save output and explaining refused batches (no processes)."""

from __future__ import annotations

import pytest

from docker_fw.errors import FirewallError
from docker_fw.iptables import Iptables, _explain_failure, parse_save

from dfw_samples import DOCKER_2010_ICC_FALSE


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
