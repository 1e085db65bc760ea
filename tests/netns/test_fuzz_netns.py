"""Fuzzing --filter against the real iptables-restore, in a throwaway namespace.

Every generated --filter that the grammar (model.parse_filter) accepts is
rendered into a rule for a container and applied by docker-fw's own firewall
code (fw_helper 'sync': ensure_chains + plan_rules + Iptables.restore).  Then
either the batch was refused and the filter table is exactly as before, or:

- outside docker-fw's chains the filter table is exactly as before (no rule
  smuggled in anywhere: a line split by iptables-restore's line buffer would
  put its tail there);
- our chains hold exactly one new rule per resolved rule, found by its tag;
- each of them means what 'ls' says for the parts docker-fw renders itself:
  source, destination, protocol and port un-negated, and our target last
  (a filter ending in '!' must not negate the protocol; '-6' must not make
  iptables-restore skip the rule silently).

A sibling of tests/unit/test_fuzz_cli.py, with few examples: each is three
processes.  Profiles: tests/conftest.py.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from docker_fw.engine import Container, Endpoint, Network, Snapshot
from docker_fw.errors import UsageError, one_line
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.backends.iptables.rules import CHAIN_EGRESS, OWN_CHAINS, render
from docker_fw.resolve import resolve
from tests.fuzz_strategies import filters

pytestmark = pytest.mark.netns

BRIDGE = Network("f" * 64, "bridge", "bridge", "docker0", (ipaddress.IPv4Network("172.17.0.0/16"),), "172.17.0.1")
SNAPSHOT = Snapshot(
    containers=[
        Container("a" * 64, "web", "running", (Endpoint("bridge", "docker0", "172.17.0.2", "172.17.0.1"),)),
        Container("b" * 64, "db", "running", (Endpoint("bridge", "docker0", "172.17.0.3", "172.17.0.1"),)),
    ],
    networks=[BRIDGE],
)
# (kind, source, dest) of the rule each filter is tried on
PLACES = (
    (Kind.ADD, "203.0.113.0/24", "."),
    (Kind.ADD, ".", "198.51.100.7"),
    (Kind.INTERNAL, "db", "."),
    (Kind.INPUT, ".", "/"),
)
_COUNTERS = re.compile(r"\[\d+:\d+\]$")


def table_lines(ns) -> list[str]:
    """The filter table as iptables-save prints it, without comments and counters."""
    text = ns.run(["iptables-save", "-t", "filter"]).stdout
    return [_COUNTERS.sub("[0:0]", line) for line in text.split("\n") if line and not line.startswith("#")]


def in_our_chains(line: str) -> bool:
    words = line.split(" ", 2)
    return words[0] == "-A" and len(words) > 1 and words[1] in OWN_CHAINS


@pytest.fixture
def prepared(netns):
    """The namespace with docker-fw's chains and jumps in place (no rules yet),
    and that table's iptables-save text, to go back to before every example."""
    answer = netns.helper("sync", desired=[], scope=None)
    assert answer["ok"], answer
    # the egress chain too: outbound rules (the container as source) live there
    answer = netns.helper("restore", lines=[f":{CHAIN_EGRESS} - [0:0]", f"-I FORWARD 1 -j {CHAIN_EGRESS}"])
    assert answer["ok"], answer
    return netns, netns.run(["iptables-save", "-t", "filter"]).stdout


def negated(words: list[str], option: str, value: str) -> bool | None:
    """None when OPTION VALUE is not in WORDS; else whether a '!' precedes it."""
    for i in range(len(words) - 1):
        if words[i] == option and words[i + 1] == value:
            return i > 0 and words[i - 1] == "!"
    return None


@settings(
    max_examples=max(10, settings.default.max_examples * 2 // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=filters, place=st.sampled_from(PLACES), dport=st.sampled_from((0, 80, 5432)))
# What issue #9 found: '-6' made iptables-restore skip the rule silently, a
# trailing '!' negated our protocol match, a glued '-fjACCEPT' passed the check.
@example(text="-6", place=PLACES[0], dport=80)
@example(text="-i docker0 !", place=PLACES[0], dport=80)
@example(text="-fjACCEPT", place=PLACES[2], dport=5432)
def test_accepted_filters_apply_exactly_one_rule_each_or_nothing(prepared, text, place, dport):
    ns, base = prepared
    try:
        tokens = parse_filter(text)
    except UsageError as exc:
        event("refused by the grammar")
        assert one_line(str(exc)).isprintable()
        return
    kind, source, dest = place
    spec = RuleSpec(
        owner="web", kind=kind, source=parse_address(source), dest=parse_address(dest),
        dport=dport or (0 if kind is Kind.ADD else 80), filter=tokens,
    )
    resolved = [render(r) for r in resolve(spec, SNAPSHOT)]
    ns.load(base)
    before = table_lines(ns)
    answer = ns.helper(
        "sync",
        desired=[{"owner": r.owner, "chain": r.chain, "matches": list(r.matches), "target": r.target} for r in resolved],
        scope=None,
    )
    after = table_lines(ns)
    if not answer["ok"]:
        event(f"refused by {answer['type']}")
        assert answer["exit_code"] in (2, 4), answer
        assert "\n" not in answer["error"].strip(), answer
        assert after == before, "a refused batch changed the filter table"
        return
    event("applied")
    assert [l for l in after if not in_our_chains(l)] == [l for l in before if not in_our_chains(l)], (
        "a rule appeared (or went) outside docker-fw's chains"
    )
    added = [l for l in after if in_our_chains(l) and l not in before]
    assert len(added) == len(resolved), (text, added)
    for rule in resolved:
        mine = [l for l in added if rule.comment in l]
        assert len(mine) == 1, (text, rule.comment, added)
        words = mine[0].split()
        assert words[1] == rule.chain and words[-2:] == ["-j", rule.target], mine
        src, dst = rule.matches[1], rule.matches[3]
        for option, value in (("-s", src), ("-d", dst), ("-p", spec.proto), ("--dport", str(spec.dport))):
            if option == "--dport" and not spec.dport:
                continue
            assert negated(words, option, value) is False, (text, option, value, mine[0])
