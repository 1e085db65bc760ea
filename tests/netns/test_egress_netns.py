"""Issue #12's matches and egress locks against the real iptables-restore: nf_tables and legacy.

Each rendered rule is applied by the backend's own sync (one iptables-restore
--noflush), read back through iptables-save, found again by its tag (a
second plan is empty), and the kernel's limits are those the grammar checks.
"""

from __future__ import annotations

import pytest

from test_iptables_netns import snapshot, spec
from test_legacy_netns import legacy  # noqa: F401 (fixture)
from docker_fw.backends.iptables.reconcile import rule_line
from docker_fw.backends.iptables.rules import CHAIN_EGRESS, CHAIN_INPUT, IptablesRule, render_all
from docker_fw.egress import resolve_lock
from docker_fw.model import Kind, parse_ports
from docker_fw.resolve import resolve

pytestmark = pytest.mark.netns

RICH = [
    spec(dport="9100:9200"),
    spec(dport="80,443"),
    spec(dport="443,80,9100:9200", sport="1024:65535", proto="udp"),
    spec(dport="1:2,3:4,5:6,7:8,9:10,11:12,13:14,15"),  # 15: as many as multiport takes
    spec(sport="53,5353", dport="80"),
    spec(kind=Kind.INTERNAL, source="db", dport="3868:3870", proto="sctp"),
    spec(kind=Kind.INTERNAL, source="db", dport="3868,3869", proto="sctp"),
    spec(proto="icmp", icmp_type="echo-request"),
    spec(proto="icmp", icmp_type="destination-unreachable"),
    spec(proto="icmp", icmp_type="11"),
    spec(source="198.51.100.0/24", proto="icmp"),
    spec(kind=Kind.INPUT, source=".", dest="/", proto="icmp", icmp_type="ping"),
    spec(source=".", dest="198.51.100.0/24", dport="80,443"),  # outbound: past the lock
    spec(source=".", dest="198.51.100.9", proto="icmp", icmp_type="echo-request"),
]


def desired() -> list[IptablesRule]:
    snap = snapshot()
    resolved = [r for s in RICH for r in resolve(s, snap)]
    resolved += resolve_lock("web", snap, ["192.0.2.53"])
    return render_all(resolved)


def as_json(rules: list[IptablesRule]) -> list[dict]:
    return [{"owner": r.owner, "chain": r.chain, "matches": list(r.matches), "target": r.target,
             "family": r.family, "last": r.last} for r in rules]


def check_applied(helper, save) -> str:
    rules = desired()
    first = helper("sync", desired=as_json(rules), scope=None)
    assert first["ok"], first
    assert first["restores"] == 1
    again = helper("plan", desired=as_json(rules), scope=None)
    assert again["ok"] and again["lines"] == [], again  # every rule found again by its tag
    text = save()
    assert f"-A FORWARD -j {CHAIN_EGRESS}" in text.splitlines()
    ours = [line for line in text.splitlines() if "docker-fw:web:" in line or "docker-fw:db:" in line]
    assert len(ours) == len(rules)
    # the kernel's own matches, as iptables-save prints them back
    assert any("--dports 80,443" in line for line in ours)
    assert any("--dport 9100:9200" in line for line in ours)
    assert any("--sports 53,5353" in line for line in ours)
    assert any("-p sctp" in line and "--dport 3868:3870" in line for line in ours)
    assert any("--icmp-type 8" in line or "--icmp-type echo-request" in line for line in ours)
    assert any("--icmp-type 11" in line or "--icmp-type time-exceeded" in line for line in ours)
    # the locks end their chains, below every other rule of ours
    for chain in (CHAIN_EGRESS, CHAIN_INPUT):
        in_chain = [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]
        assert in_chain[-1].endswith("-j DROP") and "! --ctstate RELATED,ESTABLISHED" in in_chain[-1]
        assert all(not line.endswith("-j DROP") for line in in_chain[:-1])
    return text


def test_rich_matches_and_locks_on_nf_tables(netns):
    check_applied(netns.helper, netns.save)


def test_rich_matches_and_locks_on_legacy(legacy):  # noqa: F811
    assert legacy.helper("init", bridges=["docker0"])["ok"]
    check_applied(legacy.helper, legacy.legacy_save)


def test_an_allow_added_after_the_lock_lands_above_it(netns):
    snap = snapshot()
    lock = render_all(resolve_lock("web", snap, []))
    assert netns.helper("sync", desired=as_json(lock), scope=None)["ok"]
    allow = render_all(resolve(spec(source=".", dest="198.51.100.7", dport="8443"), snap))
    answer = netns.helper("sync", desired=as_json(lock + allow), scope=None)
    assert answer["ok"] and answer["lines"] == [rule_line("-I", CHAIN_EGRESS, ["1", *allow[0].argv()])]
    chain = [line for line in netns.save().splitlines() if line.startswith(f"-A {CHAIN_EGRESS} ")]
    assert "8443" in chain[0] and chain[-1].endswith("-j DROP")


def test_the_grammar_stops_where_multiport_does(netns):
    # 15 ports (a range counting two) are the kernel's limit: the grammar's.
    sixteen = ",".join(map(str, range(1, 17)))
    line = rule_line("-A", "DOCKER", ["-p", "tcp", "-m", "multiport", "--dports", sixteen, "-j", "ACCEPT"])
    assert not netns.helper("restore", lines=[line])["ok"]
    fifteen = parse_ports(",".join(map(str, range(1, 16))), "--dport").text
    line = rule_line("-A", "DOCKER", ["-p", "tcp", "-m", "multiport", "--dports", fifteen, "-j", "ACCEPT"])
    assert netns.helper("restore", lines=[line])["ok"]
