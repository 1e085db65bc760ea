"""reconcile: plans computed from hand-written iptables-save texts."""

from __future__ import annotations

from collections import Counter

import pytest

from dfw_samples import apply_lines, captured_layouts, layout_2010_icc_false, resolve_iptables, snapshot
from docker_fw.errors import FirewallError
from docker_fw.backends.iptables.process import parse_save
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL
from docker_fw.backends.iptables.reconcile import (
    REPLIES_COMMENT,
    REPLIES_RULE,
    Change,
    delete_changes,
    ensure_chains,
    our_rules,
    plan_rules,
    quote,
    rule_line,
)
from docker_fw.backends.iptables.rules import IptablesRule, parse_comment
from docker_fw.transaction import Plan

SNAP = snapshot()

JUMPS = [
    f"-I FORWARD 1 -j {CHAIN_FORWARD}",
    f"-I INPUT 1 -j {CHAIN_INPUT}",
    f"-I DOCKER 1 -j {CHAIN_INTERNAL}",
]
DECLS = [f":{c} - [0:0]" for c in (CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL)]
# Replies of the connections add-internal rules admit (Docker accepts none on --internal networks).
REPLIES = (
    f"-I {CHAIN_INTERNAL} 1 -m conntrack --ctstate RELATED,ESTABLISHED "
    f"-m comment --comment {REPLIES_COMMENT} -j ACCEPT"
)
# ... and as iptables-save (nft 1.8.9) prints it: quoted comment.
SAVED_REPLIES = (
    f"-A {CHAIN_INTERNAL} -m conntrack --ctstate RELATED,ESTABLISHED "
    f'-m comment --comment "{REPLIES_COMMENT}" -j ACCEPT'
)


def spec(owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest=".", **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), **kw)


def desired_for(*specs: RuleSpec) -> list[IptablesRule]:
    return [r for s in specs for r in resolve_iptables(s, SNAP)]


WEB_ADD = spec(dport=80)  # two rules: web is on two networks
WEB_INTERNAL = spec(kind=Kind.INTERNAL, source="db", dport=5432, filter=parse_filter("! -i eth0"))
CACHE_INPUT = spec(owner="cache", kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp")


def saved_line(r: IptablesRule) -> str:
    """The rule as iptables-save (nft 1.8.9) prints it: -p before -m tcp, quoted comment."""
    m = list(r.matches)
    return " ".join(["-A", r.chain, *m, "-m", "comment", "--comment", f'"{r.comment}"', "-j", r.target])


def save_text(
    *rules: str, chains=(CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL), jumps=True, replies=True, base=None
) -> str:
    """A 20.10 layout after 'init', with our chains and jumps, the replies rule
    first in our internal chain (when that chain is there), plus rule lines."""
    base = base or layout_2010_icc_false()
    head, _, tail = base.partition("*filter\n")
    body, _, rest = tail.partition("COMMIT\n")
    decls = "".join(f":{c} - [0:0]\n" for c in chains)
    jump_lines = ""
    if jumps:
        jump_lines = (
            f"-A FORWARD -j {CHAIN_FORWARD}\n-A INPUT -j {CHAIN_INPUT}\n-A DOCKER -j {CHAIN_INTERNAL}\n"
        )
    if replies and CHAIN_INTERNAL in chains:
        jump_lines += SAVED_REPLIES + "\n"
    chain_part = "".join(l + "\n" for l in body.splitlines() if l.startswith(":"))
    rule_part = "".join(l + "\n" for l in body.splitlines() if not l.startswith(":"))
    return head + "*filter\n" + chain_part + decls + jump_lines + rule_part + "".join(r + "\n" for r in rules) + "COMMIT\n" + rest


# --- ensure_chains -----------------------------------------------------------------------


def test_ensure_chains_on_a_fresh_layout_declares_and_jumps():
    table = parse_save(layout_2010_icc_false())
    changes = ensure_chains(table)
    # the replies rule comes after its chain is declared: one batch, read in order
    assert [c.line for c in changes] == [DECLS[0], JUMPS[0], DECLS[1], JUMPS[1], DECLS[2], JUMPS[2], REPLIES]
    assert {c.why for c in changes} == {"setup"}
    assert [c.verb for c in changes] == ["create", "insert"] * 3 + ["insert"]


def test_ensure_chains_nothing_to_do_when_in_place():
    assert ensure_chains(parse_save(save_text())) == []


def test_chain_declared_only_when_missing():
    table = parse_save(save_text(chains=(CHAIN_INPUT,), jumps=False))
    lines = [c.line for c in ensure_chains(table)]
    # an existing chain is never declared again: with --noflush that would flush it
    assert f":{CHAIN_INPUT} - [0:0]" not in lines
    assert [l for l in lines if l.startswith(":")] == [DECLS[0], DECLS[2]]
    assert [l for l in lines if l.startswith("-I")] == JUMPS + [REPLIES]


def test_jump_inserted_only_when_missing():
    text = save_text().replace(f"-A INPUT -j {CHAIN_INPUT}\n", "")
    assert [c.line for c in ensure_chains(parse_save(text))] == [JUMPS[1]]


def test_a_jump_with_extra_matches_is_not_ours():
    text = save_text().replace(f"-A DOCKER -j {CHAIN_INTERNAL}\n", f"-A DOCKER -i docker0 -j {CHAIN_INTERNAL}\n")
    assert [c.line for c in ensure_chains(parse_save(text))] == [JUMPS[2]]


def test_replies_rule_emitted_once_when_missing_and_not_when_present():
    assert REPLIES == rule_line("-I", CHAIN_INTERNAL, ["1", *REPLIES_RULE])
    # missing (everything else in place): exactly that one insert, at position 1
    changes = ensure_chains(parse_save(save_text(replies=False)))
    assert changes == [Change(REPLIES, "setup")]
    # present: nothing, wherever it is in the chain (here below one of our rules)
    internal = desired_for(WEB_INTERNAL)
    assert ensure_chains(parse_save(save_text())) == []
    below = save_text(*(saved_line(r) for r in internal), SAVED_REPLIES, replies=False)
    assert ensure_chains(parse_save(below)) == []
    # only the exact rule counts: Docker's uncommented one, or one in another chain, is not it
    docker_like = f"-A {CHAIN_INTERNAL} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    elsewhere = SAVED_REPLIES.replace(f"-A {CHAIN_INTERNAL} ", f"-A {CHAIN_FORWARD} ")
    for text in (save_text(docker_like, replies=False), save_text(elsewhere, replies=False)):
        assert [c.line for c in ensure_chains(parse_save(text))] == [REPLIES]
    # applied, it is first in the chain, and asked again there is nothing to do
    table = parse_save(save_text(*(saved_line(r) for r in internal), replies=False))
    after = apply_lines(table, [c.line for c in ensure_chains(table)])
    assert [r.args for r in after.chain_rules(CHAIN_INTERNAL)][0] == REPLIES_RULE
    assert [r.args for r in after.chain_rules(CHAIN_INTERNAL)].count(REPLIES_RULE) == 1
    assert ensure_chains(after) == []
    # not an owner tag: plan_rules neither owns nor deletes it
    assert parse_comment(REPLIES_COMMENT) is None
    assert our_rules(after) == {internal[0].key: [after.chain_rules(CHAIN_INTERNAL)[1]]}
    assert plan_rules(after, [], None) == [
        Change(f"-D {CHAIN_INTERNAL} 2", "web", note=after.chain_rules(CHAIN_INTERNAL)[1].line)
    ]


@pytest.mark.parametrize("missing", ["DOCKER", "FORWARD", "INPUT"])
def test_missing_parent_chain_is_a_firewall_error(missing):
    text = "\n".join(
        l for l in layout_2010_icc_false().splitlines()
        if not l.startswith(f":{missing} ") and not l.startswith(f"-A {missing} ")
    )
    with pytest.raises(FirewallError, match=f"chain {missing} not found"):
        ensure_chains(parse_save(text))


def test_no_docker_chain_only_in_nat_is_still_an_error():
    text = "*nat\n:DOCKER - [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    with pytest.raises(FirewallError, match="DOCKER not found"):
        ensure_chains(parse_save(text))


# --- plan_rules ---------------------------------------------------------------------


def test_everything_in_place_plans_nothing():
    desired = desired_for(WEB_ADD, WEB_INTERNAL, CACHE_INPUT)
    table = parse_save(save_text(*(saved_line(r) for r in desired)))
    assert plan_rules(table, desired, None) == []
    assert plan_rules(table, desired, {"web", "cache"}) == []
    assert ensure_chains(table) == []
    assert not Plan()


def test_missing_rule_is_appended():
    desired = desired_for(WEB_ADD, CACHE_INPUT)
    table = parse_save(save_text(*(saved_line(r) for r in desired[:1] + desired[2:])))
    changes = plan_rules(table, desired, None)
    assert changes == [Change(rule_line("-A", desired[1].chain, desired[1].argv()), "web")]
    assert changes[0].verb == "add"


def test_fresh_table_appends_every_rule_in_order():
    desired = desired_for(WEB_ADD, WEB_INTERNAL, CACHE_INPUT)
    changes = plan_rules(parse_save(save_text()), desired, None)
    assert [c.line for c in changes] == [rule_line("-A", r.chain, r.argv()) for r in desired]
    assert [c.why for c in changes] == ["web", "web", "web", "cache"]


def test_stale_rule_is_deleted_by_its_position():
    old = IptablesRule(
        "cache", CHAIN_INPUT,
        ("-s", "172.17.0.99/32", "-d", "172.17.0.1/32", "-p", "udp", "-m", "udp", "--dport", "53"), "ACCEPT",
    )
    stale = saved_line(old)
    desired = desired_for(CACHE_INPUT)
    table = parse_save(save_text(stale))
    changes = plan_rules(table, desired, {"cache"})
    assert [c.line for c in changes] == [
        f"-D {CHAIN_INPUT} 1",
        rule_line("-A", desired[0].chain, desired[0].argv()),
    ]
    # What --verbose and --dry-run show: the rule as iptables-save printed it.
    assert changes[0].note == (
        f'-A {CHAIN_INPUT} -s 172.17.0.99/32 -d 172.17.0.1/32 -p udp -m udp --dport 53 '
        f'-m comment --comment "{old.comment}" -j ACCEPT'
    )
    assert [c.verb for c in changes] == ["delete", "add"]


def test_duplicates_are_removed_keeping_one():
    desired = desired_for(CACHE_INPUT)
    line = saved_line(desired[0])
    table = parse_save(save_text(line, line, line))
    changes = plan_rules(table, desired, None)
    # The first copy is kept; bottom up, so each position is still valid when its line runs.
    assert [c.line for c in changes] == [f"-D {desired[0].chain} 3", f"-D {desired[0].chain} 2"]
    assert [c.note for c in changes] == [line, line]
    after = apply_lines(table, [c.line for c in changes])
    assert [r.line for r in after.chain_rules(desired[0].chain)] == [line]
    assert plan_rules(after, desired, None) == []


def test_stale_rules_among_kept_ones_are_deleted_bottom_up_before_any_append():
    def old_cache(ip):
        return IptablesRule(
            "cache", CHAIN_INPUT,
            ("-s", ip, "-d", "172.17.0.1/32", "-p", "udp", "-m", "udp", "--dport", "53"), "ACCEPT",
        )

    cache = desired_for(CACHE_INPUT)
    web = desired_for(WEB_ADD)
    stale1, stale2 = saved_line(old_cache("172.17.0.98/32")), saved_line(old_cache("172.17.0.99/32"))
    foreign = f"-A {CHAIN_INPUT} -s 10.9.9.9/32 -j ACCEPT"
    stale_web = saved_line(IptablesRule("web", CHAIN_FORWARD, ("-s", "198.51.100.0/24"), "DOCKER"))
    kept = [stale1, saved_line(cache[0]), foreign, stale2, saved_line(web[0]), stale_web]
    table = parse_save(save_text(*kept))
    changes = plan_rules(table, cache + web, None)
    assert [c.line for c in changes] == [
        f"-D {CHAIN_FORWARD} 2",
        f"-D {CHAIN_INPUT} 4",
        f"-D {CHAIN_INPUT} 1",
        rule_line("-A", web[1].chain, web[1].argv()),
    ]
    assert [c.note for c in changes[:3]] == [stale_web, stale2, stale1]
    assert [c.why for c in changes] == ["web", "cache", "cache", "web"]
    after = apply_lines(table, [c.line for c in changes])
    assert [r.line for r in after.chain_rules(CHAIN_INPUT)] == [saved_line(cache[0]), foreign]
    assert [r.line for r in after.chain_rules(CHAIN_FORWARD)][0] == saved_line(web[0])
    assert {k: len(v) for k, v in our_rules(after).items()} == {r.key: 1 for r in cache + web}
    assert plan_rules(after, cache + web, None) == []
    # everything that was not stale is still there, in its order; the append comes last
    gone = {stale1, stale2, stale_web}
    assert [r.line for r in after.rules][:-1] == [r.line for r in table.rules if r.line not in gone]


def test_rules_of_owners_out_of_scope_are_untouched():
    other = saved_line(desired_for(WEB_ADD)[0])
    desired = desired_for(CACHE_INPUT)
    table = parse_save(save_text(other, saved_line(desired[0])))
    assert plan_rules(table, desired, {"cache"}) == []
    # a full reconcile (scope None) removes what no recorded rule wants
    assert plan_rules(table, desired, None) == [Change(f"-D {CHAIN_FORWARD} 1", "web", note=other)]
    after = apply_lines(table, [c.line for c in plan_rules(table, desired, None)])
    assert [r for r in after.rules if r.line == other] == []
    assert [r.line for r in after.chain_rules(CHAIN_INPUT)] == [saved_line(desired[0])]


def test_owner_dropped_from_the_store_loses_its_rules():
    lines = [saved_line(r) for r in desired_for(WEB_ADD, WEB_INTERNAL)]
    table = parse_save(save_text(*lines))
    changes = plan_rules(table, [], {"web"})
    # bottom up within each chain; the replies rule is position 1 of the internal chain
    assert [c.line for c in changes] == [f"-D {CHAIN_FORWARD} 2", f"-D {CHAIN_FORWARD} 1", f"-D {CHAIN_INTERNAL} 2"]
    assert [c.note for c in changes] == [lines[1], lines[0], lines[2]]
    assert {c.why for c in changes} == {"web"}
    after = apply_lines(table, [c.line for c in changes])
    assert our_rules(after) == {}
    assert [r.line for r in after.rules] == [r.line for r in table.rules if r.line not in lines]
    assert after.chain_rules(CHAIN_INTERNAL)[0].args == REPLIES_RULE  # kept: not web's


@pytest.mark.parametrize(
    "foreign",
    [
        f"-A {CHAIN_FORWARD} -s 10.9.9.9/32 -j DOCKER",
        f'-A {CHAIN_FORWARD} -s 10.9.9.9/32 -m comment --comment "somebody else" -j DOCKER',
        f'-A {CHAIN_INTERNAL} -s 10.9.9.9/32 -m comment --comment "docker-fw:" -j ACCEPT',
        # our tag, but in a chain that is not ours: not ours to manage
        '-A DOCKER -s 10.9.9.9/32 -m comment --comment "docker-fw:web:0123456789ab" -j ACCEPT',
        # in the same chain as the stale rule, above it: it shifts the position
        f"-A {CHAIN_INPUT} -s 10.9.9.9/32 -j ACCEPT",
    ],
)
def test_foreign_rules_are_untouched(foreign):
    desired = desired_for(CACHE_INPUT)
    ours = saved_line(desired[0])
    table = parse_save(save_text(foreign, ours))
    assert plan_rules(table, desired, None) == []
    position = 2 if foreign.startswith(f"-A {CHAIN_INPUT} ") else 1
    changes = plan_rules(table, [], None)
    assert changes == [Change(f"-D {CHAIN_INPUT} {position}", "cache", note=ours)]
    after = apply_lines(table, [c.line for c in changes])
    assert [r.line for r in after.rules] == [r.line for r in table.rules if r.line != ours]
    assert foreign in [r.line for r in after.rules]


def test_our_rules_are_found_by_tag():
    desired = desired_for(WEB_ADD, CACHE_INPUT)
    table = parse_save(save_text(*(saved_line(r) for r in desired), f"-A {CHAIN_FORWARD} -j RETURN"))
    found = our_rules(table)
    assert set(found) == {r.key for r in desired}
    assert all(len(v) == 1 for v in found.values())


def test_desired_duplicates_are_added_once():
    desired = desired_for(CACHE_INPUT, CACHE_INPUT)
    assert len(plan_rules(parse_save(save_text()), desired, None)) == 1


def test_plan_applied_then_planned_again_is_empty():
    """Idempotency through the in-memory kernel: fresh 20.10 layout -> plan -> apply -> plan."""
    desired = desired_for(WEB_ADD, WEB_INTERNAL, CACHE_INPUT)
    table = parse_save(layout_2010_icc_false())
    plan = ensure_chains(table) + plan_rules(table, desired, None)
    after = apply_lines(table, [c.line for c in plan])
    assert ensure_chains(after) == []
    assert plan_rules(after, desired, None) == []
    # the jumps are first in their parent chains
    assert after.chain_rules("FORWARD")[0].args == ("-j", CHAIN_FORWARD)
    assert after.chain_rules("DOCKER")[0].args == ("-j", CHAIN_INTERNAL)
    # and the replies rule first in ours, once
    assert [r.args for r in after.chain_rules(CHAIN_INTERNAL)].count(REPLIES_RULE) == 1
    assert after.chain_rules(CHAIN_INTERNAL)[0].args == REPLIES_RULE
    # and a container that moved: exactly its rule is replaced
    from dataclasses import replace

    from docker_fw.engine import Endpoint, Snapshot

    cache2 = replace(SNAP.get("cache"), endpoints=(Endpoint("bridge", "docker0", "172.17.0.44", "172.17.0.1"),))
    snap2 = Snapshot([c for c in SNAP.containers if c.name != "cache"] + [cache2], SNAP.networks)
    desired2 = resolve_iptables(CACHE_INPUT, snap2)
    changes = plan_rules(after, desired2, {"cache"})
    assert [c.verb for c in changes] == ["delete", "add"]
    old_line = next(r.line for r in after.chain_rules(CHAIN_INPUT) if "172.17.0.4/32" in r.args)
    position = next(r.position for r in after.chain_rules(CHAIN_INPUT) if r.line == old_line)
    assert changes[0] == Change(f"-D {CHAIN_INPUT} {position}", "cache", note=old_line)
    assert "172.17.0.44/32" in changes[1].line
    again = apply_lines(after, [c.line for c in changes])
    assert plan_rules(again, desired2, {"cache"}) == []
    assert plan_rules(again, desired_for(WEB_ADD, WEB_INTERNAL) + desired2, None) == []


def test_desired_rules_out_of_scope_are_left_alone():
    web = desired_for(WEB_ADD)
    cache = desired_for(CACHE_INPUT)
    table = parse_save(save_text(*(saved_line(r) for r in web + cache)))
    assert plan_rules(table, web + cache, {"cache"}) == []
    # nor added when missing: only the owners in scope are reconciled
    table = parse_save(save_text(saved_line(cache[0])))
    assert plan_rules(table, web + cache, {"cache"}) == []
    assert [c.why for c in plan_rules(table, web + cache, {"web", "cache"})] == ["web", "web"]


@pytest.mark.parametrize("name", sorted(captured_layouts()) or ["(none captured yet)"])
def test_captured_layouts_get_chains_and_rules(name):
    layouts = captured_layouts()
    if not layouts:
        pytest.skip("no captured layouts in tests/fixtures/layouts/ yet")
    table = parse_save(layouts[name])
    if "DOCKER" not in table.chains:
        with pytest.raises(FirewallError):
            ensure_chains(table)
        return
    desired = desired_for(CACHE_INPUT)
    changes = ensure_chains(table) + plan_rules(table, desired, None)
    after = apply_lines(table, [c.line for c in changes])
    assert ensure_chains(after) == [] and plan_rules(after, desired, None) == []
    # nothing of Docker's own rules was removed (positions shift: compare chain and spec)
    assert Counter((r.chain, r.args) for r in table.rules) - Counter((r.chain, r.args) for r in after.rules) == Counter()


# --- quoting for iptables-restore ------------------------------------------------------


@pytest.mark.parametrize(
    "token, quoted",
    [
        ("docker0", "docker0"),
        ("!", "!"),
        ("172.17.0.2/32", "172.17.0.2/32"),
        ("RELATED,ESTABLISHED", "RELATED,ESTABLISHED"),
        ("docker-fw:web:0123456789ab", "docker-fw:web:0123456789ab"),
        ("GET /a b", '"GET /a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("it's", '"it\'s"'),
        ("", '""'),
    ],
)
def test_quote(token, quoted):
    assert quote(token) == quoted


def test_rule_line_and_delete_changes():
    assert rule_line("-A", "C", ["-s", "1.2.3.4/32", "--string", "a b"]) == '-A C -s 1.2.3.4/32 --string "a b"'
    table = parse_save(
        '*filter\n:C - [0:0]\n:D - [0:0]\n-A C -j RETURN\n-A D -j RETURN\n'
        '-A C -m comment --comment "x y" -j ACCEPT\nCOMMIT\n'
    )
    changes = delete_changes([("o", r) for r in table.rules])
    assert [c.line for c in changes] == ["-D C 2", "-D C 1", "-D D 1"]
    assert changes[0].note == '-A C -m comment --comment "x y" -j ACCEPT'


def test_every_rule_kind_has_its_iptables_chain():
    """model.Kind is backend-neutral: the iptables backend places each kind itself."""
    from docker_fw.backends.iptables.rules import PLACEMENTS

    assert set(PLACEMENTS) == set(Kind)
    assert {p.chain for p in PLACEMENTS.values()} == {CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL}
    assert not any(hasattr(kind, "chain") for kind in Kind)
