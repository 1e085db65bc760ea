"""iptables.Iptables.restore refuses a batch line iptables-restore would not read as one line.

iptables-restore 1.8.9 reads lines into a 10,240-byte buffer and runs the tail
of a longer one as a line of its own (issue #9); a newline ends a line and a
NUL cuts it, and no line of docker-fw's needs any other control character.
The stand-in for iptables-restore here is a shell script that keeps what it
was fed: the point is whether it runs at all.  tests/netns/test_filter_netns.py
shows the same with real iptables.
"""

from __future__ import annotations

import pytest

from docker_fw.errors import FirewallError
from docker_fw.backends.iptables.process import MAX_RESTORE_LINE, Iptables

RULE = "-A DOCKER-FW-FORWARD -s 203.0.113.0/24 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DOCKER"


@pytest.fixture
def firewall(tmp_path) -> tuple[Iptables, object]:
    """An Iptables whose iptables-restore is a script writing its input to a file."""
    fed = tmp_path / "fed"
    script = tmp_path / "iptables-restore"
    script.write_text(f"#!/bin/sh\ncat > {fed}\n")
    script.chmod(0o755)
    fw = Iptables()
    fw.restore_bin = str(script)
    return fw, fed


def padded(size: int) -> str:
    """RULE, padded with a --string value to exactly SIZE bytes."""
    head = RULE.replace(" -j DOCKER", ' -m string --algo bm --string "')
    return head + "x" * (size - len(head) - len('" -j DOCKER')) + '" -j DOCKER'


def test_lines_within_the_bound_are_fed_as_they_are(firewall):
    fw, fed = firewall
    lines = [RULE, padded(MAX_RESTORE_LINE)]
    assert len(lines[1].encode()) == MAX_RESTORE_LINE
    fw.restore("filter", lines)
    assert fed.read_text() == "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    assert fw.restores == 1


def test_non_ascii_characters_are_fed_as_they_are(firewall):
    """A bridge named with U+2028 or U+0085 (Docker takes such names; iptables-restore
    reads them as they are): its rules are written like any other."""
    fw, fed = firewall
    lines = [RULE.replace(" -j", ' ! -i "u\u2028x" -o "n\u0085x" -j')]
    fw.restore("filter", lines)
    assert fed.read_text() == "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"


@pytest.mark.parametrize(
    "bad, needle",
    [
        (padded(MAX_RESTORE_LINE + 1), f"is {MAX_RESTORE_LINE + 1} bytes long (at most {MAX_RESTORE_LINE})"),
        (padded(10_300), "is 10300 bytes long"),
        (RULE.replace("-j DOCKER", "-m comment --comment \"caf\u00e9" + "\u00e9" * 2100 + '" -j DOCKER'), "bytes long"),
        (RULE + "\n-I FORWARD 1 -s 198.51.100.3/32 -j ACCEPT", "holds '\\n'"),
        (RULE.replace(" -j", " \r-j"), "holds '\\r'"),
        (RULE.replace(" -j", "\0 -j"), "holds '\\x00'"),
        (RULE.replace(" -j", "\x0b -j"), "holds '\\x0b'"),
        (RULE.replace(" -j", "\x1b -j"), "holds '\\x1b'"),
        (RULE.replace("-p tcp", "-i eth\udce9 -p tcp"), "holds '\\udce9'"),
    ],
)
def test_a_line_iptables_restore_would_split_is_refused_before_it_runs(firewall, bad, needle):
    fw, fed = firewall
    with pytest.raises(FirewallError) as refused:
        fw.restore("filter", [RULE, bad, RULE])
    message = str(refused.value)
    assert needle in message
    assert "nothing was applied: line 2 of the batch" in message
    assert message.isascii() and message.isprintable()
    assert len(message) < 400
    assert refused.value.exit_code == 4
    assert not fed.exists(), "iptables-restore ran"
    assert fw.restores == 0


def test_verbose_prints_nothing_for_a_refused_batch(firewall):
    fw, fed = firewall
    printed: list[str] = []
    fw.verbose = printed.append
    with pytest.raises(FirewallError):
        fw.restore("filter", [padded(MAX_RESTORE_LINE + 1)])
    assert printed == []
