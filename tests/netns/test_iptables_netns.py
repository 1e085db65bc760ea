"""The firewall backend against real iptables, in a throwaway network namespace."""

from __future__ import annotations

import ipaddress

import pytest

from netns_support import SEED, normalise
from docker_fw.engine import Container, Endpoint, Network, Snapshot
from docker_fw.errors import UsageError
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL
from docker_fw.backends.iptables.reconcile import REPLIES_COMMENT, REPLIES_RULE, rule_line
from docker_fw.backends.iptables.rules import IptablesRule, render
from docker_fw.resolve import resolve

pytestmark = pytest.mark.netns

OWN_CHAINS = (CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL)
BRIDGE = Network("f" * 64, "bridge", "bridge", "docker0", (ipaddress.IPv4Network("172.17.0.0/16"),), "172.17.0.1")


def snapshot(web_ip: str = "172.17.0.2") -> Snapshot:
    def ep(ip):
        return (Endpoint("bridge", "docker0", ip, "172.17.0.1"),)

    return Snapshot(
        containers=[
            Container("a" * 64, "web", "running", ep(web_ip)),
            Container("b" * 64, "db", "running", ep("172.17.0.3")),
        ],
        networks=[BRIDGE],
    )


def spec(owner="web", kind=Kind.ADD, source="203.0.113.0/24", dest=".", **kw) -> RuleSpec:
    return RuleSpec(owner=owner, kind=kind, source=parse_address(source), dest=parse_address(dest), **kw)


SPECS = [
    spec(dport=80, filter=parse_filter("! -i docker0 -o docker0")),
    spec(source="198.51.100.7", dport=443, sport=1024),
    spec(kind=Kind.INTERNAL, source="db", dport=5432, filter=parse_filter("-m conntrack --ctstate NEW")),
    spec(kind=Kind.INTERNAL, source="/", dport=8080, filter=parse_filter("-m string --string 'GET /a b' --algo bm")),
    spec(kind=Kind.INPUT, source=".", dest="/", dport=53, proto="udp"),
    spec(owner="db", kind=Kind.INTERNAL, source="web", dport=6379),
]


def desired(specs=SPECS, snap=None) -> list[IptablesRule]:
    snap = snap or snapshot()
    return [render(r) for s in specs for r in resolve(s, snap)]


def as_json(rules: list[IptablesRule]) -> list[dict]:
    return [{"owner": r.owner, "chain": r.chain, "matches": list(r.matches), "target": r.target} for r in rules]


def saved(ns) -> dict:
    answer = ns.helper("save")
    assert answer["ok"], answer
    return answer


def is_owned(comment: str | None) -> bool:
    """An owner-tagged comment: 'docker-fw:' but not the replies rule's 'docker-fw:replies'."""
    return (comment or "").startswith("docker-fw:") and comment != REPLIES_COMMENT


def tagged(answer: dict) -> list[dict]:
    """Our owner-tagged rules (the replies rule is not one)."""
    return [r for r in answer["rules"] if is_owned(r["comment"])]


def replies(answer: dict) -> list[dict]:
    """The replies rule, wherever it is, with its position in its chain."""
    return [r for r in numbered(answer) if r["comment"] == REPLIES_COMMENT]


def owned_lines(text: str) -> list[str]:
    """The lines of a saved table that hold an owner-tagged rule."""
    return [l for l in text.splitlines() if "docker-fw:" in l and REPLIES_COMMENT not in l]


def assert_moved_rules_replaced(helper, save, text_before: str, old: list[dict], after) -> str:
    """Sync web's rules after it moved to 172.17.0.22: the stale rules ``old`` go by
    position (their saved lines as notes), the new ones come, nothing else changes."""
    plan = helper("sync", desired=as_json(after), scope=["web"])
    assert plan["ok"], plan
    assert [l[:2] for l in plan["lines"]] == ["-D", "-D", "-A", "-A"]
    assert sorted(plan["lines"][:2]) == sorted(f"-D {r['chain']} {r['position']}" for r in old)
    assert sorted(plan["notes"][:2]) == sorted(r["line"] for r in old)
    text_after = save()
    assert not any(r["line"] in text_after.splitlines() for r in old)
    assert [l for l in text_after.splitlines() if "docker-fw:" not in l] == [
        l for l in text_before.splitlines() if "docker-fw:" not in l
    ]
    ours = owned_lines(text_after)
    assert len(ours) == 2 and all("-d 172.17.0.22/32" in l for l in ours)
    return text_after


def numbered(answer: dict) -> list[dict]:
    """The saved rules, each with its 1-based position in its chain, counted here
    from iptables-save's order (not taken from docker-fw's parser)."""
    seen: dict[str, int] = {}
    result = []
    for r in answer["rules"]:
        seen[r["chain"]] = seen.get(r["chain"], 0) + 1
        result.append({**r, "position": seen[r["chain"]]})
    return result


def deletes_by_chain(lines: list[str]) -> dict[str, list[int]]:
    """'-D CHAIN N' lines as {chain: [N, ...]} in plan order; any other '-D' form fails."""
    found: dict[str, list[int]] = {}
    for line in lines:
        if line.startswith("-D "):
            _, chain, position = line.split(" ")
            found.setdefault(chain, []).append(int(position))
    return found


def without(text: str, gone: list[str]) -> list[str]:
    """The lines of a saved table, less exactly one occurrence of each line in gone."""
    lines = text.splitlines()
    for line in gone:
        lines.remove(line)
    return lines


# --- the namespace itself ----------------------------------------------------------------


def test_seeded_layout_is_there(netns):
    text = netns.save()
    assert text == normalise(SEED.read_text())
    assert "-A FORWARD -o docker0 -j DOCKER" in text


# --- save / restore ---------------------------------------------------------------------------

AWKWARD = [
    ["-s", "10.0.0.1/32", "-m", "comment", "--comment", "two words", "-j", "ACCEPT"],
    ["-s", "10.0.0.2/32", "-m", "comment", "--comment", 'say "hi"', "-j", "ACCEPT"],
    ["-s", "10.0.0.3/32", "-m", "comment", "--comment", "back\\slash", "-j", "ACCEPT"],
    ["-s", "10.0.0.4/32", "!", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"],
    ["-s", "10.0.0.5/32", "-m", "string", "--string", "GET /a b", "--algo", "bm", "-j", "ACCEPT"],
    ["-s", "10.0.0.6/32", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT"],
    ["!", "-s", "10.0.0.0/8", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"],
]


def test_save_restore_round_trip(netns):
    seed = netns.save()
    answer = netns.helper("restore", lines=[":ROUNDTRIP - [0:0]"] + [rule_line("-A", "ROUNDTRIP", a) for a in AWKWARD])
    assert answer == {"ok": True, "restores": 1}
    with_rules = netns.save()
    rules = [r for r in saved(netns)["rules"] if r["chain"] == "ROUNDTRIP"]
    assert len(rules) == len(AWKWARD)
    # what iptables-save printed parses back to what was sent (modulo iptables' spelling)
    assert [r["comment"] for r in rules[:3]] == ["two words", 'say "hi"', "back\\slash"]
    assert rules[3]["args"][:6] == ["-s", "10.0.0.4/32", "!", "-i", "docker0", "-o"]
    assert rules[4]["args"][rules[4]["args"].index("--string") + 1] == "GET /a b"
    assert ["--ctstate", "NEW,ESTABLISHED"] == rules[5]["args"][4:6]
    # every saved line, turned into '-D', deletes exactly its rule ...
    answer = netns.helper("restore", lines=["-D" + r["line"][2:] for r in rules])
    assert answer["ok"], answer
    after_delete = netns.save().splitlines()
    assert ":ROUNDTRIP - [0:0]" in after_delete
    assert [l for l in after_delete if l != ":ROUNDTRIP - [0:0]"] == seed.splitlines()
    # ... and the saved lines, restored verbatim, give back the same table
    answer = netns.helper("restore", lines=[r["line"] for r in rules])
    assert answer["ok"], answer
    assert netns.save() == with_rules


def test_saved_comment_with_apostrophe_reads_back(netns):
    answer = netns.helper("restore", lines=[rule_line("-A", "DOCKER", ["-s", "10.0.0.9/32", "-m", "comment", "--comment", "it's", "-j", "ACCEPT"])])
    assert answer["ok"], answer
    [rule] = [r for r in saved(netns)["rules"] if "10.0.0.9/32" in r["args"]]
    assert rule["comment"] == "it's"


# --- plans applied for real -----------------------------------------------------------------


def test_plan_applied_then_planned_again_is_empty(netns):
    rules = desired()
    first = netns.helper("sync", desired=as_json(rules), scope=None)
    assert first["ok"], first
    assert first["restores"] == 1
    # 3 chain declarations, 3 jumps, the replies rule, then one '-A' per rule
    assert len(first["lines"]) == 7 + len(rules)
    assert first["lines"][6] == rule_line("-I", CHAIN_INTERNAL, ["1", *REPLIES_RULE])
    assert all(l.startswith("-A ") for l in first["lines"][7:])
    again = netns.helper("plan", desired=as_json(rules), scope=None)
    assert again == {"ok": True, "lines": [], "notes": [], "restores": 0}
    state = saved(netns)
    for chain in OWN_CHAINS:
        assert state["chains"][chain] == "-"
    first_of = {}
    for r in state["rules"]:
        first_of.setdefault(r["chain"], r["args"])
    assert first_of["FORWARD"] == ["-j", CHAIN_FORWARD]
    assert first_of["INPUT"] == ["-j", CHAIN_INPUT]
    assert first_of["DOCKER"] == ["-j", CHAIN_INTERNAL]
    assert first_of[CHAIN_INTERNAL] == list(REPLIES_RULE)
    assert len(replies(state)) == 1
    ours = tagged(state)
    assert sorted(r["comment"] for r in ours) == sorted(r.comment for r in rules)
    assert all(r["chain"] in OWN_CHAINS for r in ours)
    # Docker's own rules are all still there
    seed_rules = [l for l in normalise(SEED.read_text()).splitlines() if l.startswith("-A")]
    assert set(seed_rules) <= set(netns.save().splitlines())


def test_replies_rule_is_in_the_kernel_once_first_in_the_internal_chain(netns):
    rules = desired()
    first = netns.helper("sync", desired=as_json(rules), scope=None)
    assert first["ok"], first
    insert = rule_line("-I", CHAIN_INTERNAL, ["1", *REPLIES_RULE])
    assert first["lines"].count(insert) == 1
    state = saved(netns)
    [rule] = replies(state)
    assert (rule["chain"], rule["position"]) == (CHAIN_INTERNAL, 1)
    assert rule["args"] == list(REPLIES_RULE)  # as iptables-save prints it, parsed back
    # our internal rules follow it
    internal = [r for r in numbered(state) if r["chain"] == CHAIN_INTERNAL]
    assert len(internal) == 1 + len([r for r in rules if r.chain == CHAIN_INTERNAL])
    assert all(is_owned(r["comment"]) for r in internal[1:])
    # the kernel holds it once, and a second plan (full scope, or none wanted) keeps it
    text = netns.save()
    assert len([l for l in text.splitlines() if REPLIES_COMMENT in l]) == 1
    again = netns.helper("plan", desired=as_json(rules), scope=None)
    assert again == {"ok": True, "lines": [], "notes": [], "restores": 0}
    assert netns.helper("sync", desired=as_json(rules), scope=None)["lines"] == []
    assert netns.save() == text
    assert not any(REPLIES_COMMENT in n for n in netns.helper("plan", desired=[], scope=None)["notes"])


def test_conntrack_filter_is_accepted_by_the_kernel(netns):
    [rule] = desired([spec(kind=Kind.INTERNAL, source="db", dport=5432, filter=parse_filter("-m conntrack --ctstate NEW"))])
    answer = netns.helper("sync", desired=as_json([rule]), scope=["web"])
    assert answer["ok"], answer
    [saved_rule] = tagged(saved(netns))
    args = saved_rule["args"]
    assert args[args.index("--ctstate") + 1] == "NEW"
    assert args[args.index("-s") + 1] == "172.17.0.3/32"
    assert args[-2:] == ["-j", "ACCEPT"]


def test_moved_container_gets_its_rule_replaced(netns):
    specs = [SPECS[0], SPECS[2]]
    before = desired(specs)
    assert netns.helper("sync", desired=as_json(before), scope=None)["ok"]
    text_before = netns.save()
    old = [r for r in numbered(saved(netns)) if is_owned(r["comment"])]
    # the internal rule is below the replies rule
    assert {(r["chain"], r["position"]) for r in old} == {(CHAIN_FORWARD, 1), (CHAIN_INTERNAL, 2)}
    after = desired(specs, snapshot(web_ip="172.17.0.22"))
    text_after = assert_moved_rules_replaced(netns.helper, netns.save, text_before, old, after)
    assert not any("172.17.0.2/32" in l for l in owned_lines(text_after))
    assert netns.helper("plan", desired=as_json(after), scope=None)["lines"] == []


def test_delete_lines_from_save_really_delete(netns):
    rules = desired()
    assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    # foreign rules above, between and below ours, so positions are not just 1..n
    foreign = [
        rule_line("-I", CHAIN_FORWARD, ["1", "-s", "10.1.1.1/32", "-j", "DOCKER"]),
        # position 3: below the replies rule (1) and our first internal rule (2)
        rule_line("-I", CHAIN_INTERNAL, ["3", "-s", "10.1.1.2/32", "-m", "comment", "--comment", "not ours: keep", "-j", "ACCEPT"]),
        rule_line("-A", CHAIN_INTERNAL, ["-s", "10.1.1.4/32", "-j", "ACCEPT"]),
        rule_line("-A", "DOCKER", ["-s", "10.1.1.3/32", "-m", "comment", "--comment", "docker-fw:web:0123456789ab", "-j", "ACCEPT"]),
    ]
    assert netns.helper("restore", lines=foreign)["ok"]
    before = netns.save()
    ours = [r for r in numbered(saved(netns)) if is_owned(r["comment"]) and r["chain"] in OWN_CHAINS]
    assert len(ours) == len(rules)
    assert {r["position"] for r in ours if r["chain"] == CHAIN_FORWARD} == {2, 3}  # below the foreign one
    # below the replies rule, and around the foreign one
    assert {r["position"] for r in ours if r["chain"] == CHAIN_INTERNAL} == {2, 4, 5}
    assert [(r["chain"], r["position"]) for r in replies(saved(netns))] == [(CHAIN_INTERNAL, 1)]
    plan = netns.helper("plan", desired=[], scope=None)
    assert plan["ok"], plan
    # by position, bottom up within each chain, each noted with the rule it deletes
    assert sorted(plan["lines"]) == sorted(f"-D {r['chain']} {r['position']}" for r in ours)
    for chain, positions in deletes_by_chain(plan["lines"]).items():
        assert positions == sorted(positions, reverse=True), chain
    noted = dict(zip(plan["lines"], plan["notes"]))
    assert all(noted[f"-D {r['chain']} {r['position']}"] == r["line"] for r in ours)
    applied = netns.helper("restore", lines=plan["lines"])
    assert applied["ok"], applied
    # exactly our rules are gone; everything else, foreign rules and the replies rule included, is as it was
    assert netns.save().splitlines() == without(before, [r["line"] for r in ours])
    assert netns.helper("plan", desired=[], scope=None)["lines"] == []


def test_duplicates_in_the_kernel_are_removed(netns):
    rules = desired(SPECS[:3])
    assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    clean = netns.save()
    # as if an earlier run had crashed after applying and before recording
    extra = [rule_line("-A", r.chain, r.argv()) for r in rules[:2]] * 2
    assert {r.chain for r in rules[:2]} == {CHAIN_FORWARD}
    assert netns.helper("restore", lines=extra)["ok"]
    assert len(tagged(saved(netns))) == len(rules) + 4
    plan = netns.helper("sync", desired=as_json(rules), scope=None)
    assert plan["ok"], plan
    # the first copy of each is kept: the four appended ones go, last first
    assert plan["lines"] == [f"-D {CHAIN_FORWARD} {n}" for n in (6, 5, 4, 3)]
    assert netns.save() == clean
    assert sorted(r["comment"] for r in tagged(saved(netns))) == sorted(r.comment for r in rules)
    assert netns.helper("plan", desired=as_json(rules), scope=None)["lines"] == []


def test_out_of_scope_owner_is_untouched(netns):
    rules = desired()
    assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    before = netns.save()
    web_only = [r for r in rules if r.owner == "web"]
    # db's rules are not desired, but db is out of scope
    assert netns.helper("sync", desired=as_json(web_only), scope=["web"])["lines"] == []
    assert netns.save() == before


# --- atomicity ---------------------------------------------------------------------------------


def assert_bad_batch_changes_nothing(helper, save) -> None:
    """A batch with one line the kernel refuses is refused whole (helper: run a
    helper op; save: the table as that iptables variant reads it)."""
    before = save()
    bad = "-A DOCKER -s 10.2.2.2/32 -m nosuchmatch -j ACCEPT"
    lines = [
        ":NEWCHAIN - [0:0]",
        "-A DOCKER -s 10.2.2.1/32 -j ACCEPT",
        "-D FORWARD -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
        bad,
        "-A DOCKER -s 10.2.2.3/32 -j ACCEPT",
    ]
    answer = helper("restore", lines=lines)
    assert answer["ok"] is False
    assert answer["type"] == "FirewallError" and answer["exit_code"] == 4
    assert f"nothing was applied: {bad}:" in answer["error"]
    assert save() == before


def test_batch_with_one_bad_line_changes_nothing(netns):
    assert_bad_batch_changes_nothing(netns.helper, netns.save)


def test_unknown_filter_option_is_refused_with_nothing_applied(netns):
    before = netns.save()
    # built by hand: the --filter grammar (and resolve) refuse this option up front
    unknown = IptablesRule("web", CHAIN_FORWARD, ("-s", "192.0.2.0/24", "--nosuchopt", "1"), "DOCKER")
    rules = [*desired([SPECS[1]]), unknown]
    answer = netns.helper("sync", desired=as_json(rules), scope=None)
    assert answer["ok"] is False and answer["exit_code"] == 4
    assert "--nosuchopt" in answer["error"]
    assert rule_line("-A", rules[1].chain, rules[1].argv()) in answer["error"]
    # not even our chains or jumps: the batch is one transaction
    assert netns.save() == before


def test_help_option_in_a_batch_is_not_reported_as_applied(netns):
    before = netns.save()
    answer = netns.helper(
        "restore", lines=["-A DOCKER -s 10.3.3.1/32 -j ACCEPT", "-A DOCKER -s 10.3.3.2/32 -h -j ACCEPT"]
    )
    assert netns.save() == before  # iptables applied nothing ...
    assert answer["ok"] is False  # ... so this must not be a success


def test_filter_with_its_own_comment_is_refused_or_idempotent(netns):
    try:
        extra = parse_filter("-m comment --comm hello")
    except UsageError:
        return  # refused up front: fine
    rules = desired([spec(dport=80, filter=extra)])
    assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    assert netns.helper("plan", desired=as_json(rules), scope=None)["lines"] == []


# --- init ---------------------------------------------------------------------------------------


def test_init_twice(netns):
    first = netns.helper("init", bridges=["docker0"])
    assert first["ok"], first
    assert first["lines"] == ["-D FORWARD -o docker0 -j DOCKER", "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER"]
    text = netns.save()
    forward = [l for l in text.splitlines() if l.startswith("-A FORWARD ")]
    assert forward[0] == "-A FORWARD -i docker0 -o docker0 -j DOCKER"
    assert "-A FORWARD -o docker0 -j DOCKER" not in forward
    assert len(forward) == 6  # one removed, one added
    second = netns.helper("init", bridges=["docker0"])
    assert second == {"ok": True, "lines": [], "restores": 0}
    assert netns.save() == text


def test_init_then_chains_then_rules_is_stable(netns):
    """The whole sequence an 'init' then 'add' makes, twice: the second pass changes nothing."""
    rules = desired()
    for _ in range(2):
        assert netns.helper("init", bridges=["docker0"])["ok"]
        assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    before = netns.save()
    assert netns.helper("plan_init", bridges=["docker0"])["lines"] == []
    assert netns.helper("plan", desired=as_json(rules), scope=None)["lines"] == []
    assert len(owned_lines(before)) == len(rules)
    assert [(r["chain"], r["position"]) for r in replies(saved(netns))] == [(CHAIN_INTERNAL, 1)]


def test_init_refuses_an_unknown_layout(netns):
    netns.load("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n:DOCKER-FORWARD - [0:0]\nCOMMIT\n")
    before = netns.save()
    answer = netns.helper("init", bridges=["docker0"])
    assert answer["ok"] is False and answer["exit_code"] == 4
    assert "unsupported iptables layout" in answer["error"]
    assert netns.save() == before


@pytest.mark.parametrize(
    "extra",
    ["-m recent --rcheck --seconds 60 --name dfw", "-m connlimit --connlimit-above 3"],
    ids=["recent", "connlimit"],
)
def test_stale_rule_with_recent_or_connlimit_is_removed(netns, extra):
    """iptables-nft 1.8.9 cannot find these rules by the spec iptables-save prints:
    deleting by that spec is refused, so docker-fw deletes by position."""
    rules = desired([spec(dport=22, filter=parse_filter(extra))])
    assert netns.helper("sync", desired=as_json(rules), scope=None)["ok"]
    [old] = [r for r in numbered(saved(netns)) if is_owned(r["comment"])]
    before = netns.save()
    moved = desired([spec(dport=22, filter=parse_filter(extra))], snapshot(web_ip="172.17.0.22"))
    answer = netns.helper("sync", desired=as_json(moved), scope=["web"])
    assert answer["ok"], answer
    assert answer["lines"] == [f"-D {old['chain']} {old['position']}", rule_line("-A", moved[0].chain, moved[0].argv())]
    assert answer["notes"][0] == old["line"]
    [new] = tagged(saved(netns))
    assert "172.17.0.22/32" in new["args"]
    # the old rule is really gone, and nothing else changed
    assert without(netns.save(), [new["line"]]) == without(before, [old["line"]])
    assert netns.helper("plan", desired=as_json(moved), scope=None)["lines"] == []
