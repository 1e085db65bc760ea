"""layouts: detection and 'init' plans on captured and modelled iptables-save texts."""

from __future__ import annotations

import pytest

from dfw_samples import (
    DOCKER_28X,
    DOCKER_2010_ICC_FALSE,
    DOCKER_2010_WITH_USER_BRIDGE,
    DOCKER_2800,
    apply_lines,
    captured_layouts,
    layout_2010_icc_false,
)
from docker_fw.backends.iptables import layouts
from docker_fw.errors import FirewallError
from docker_fw.backends.iptables.process import parse_save

CATCH_ALL = ("-o", "docker0", "-j", "DOCKER")
INTERNAL = ("-i", "docker0", "-o", "docker0", "-j", "DOCKER")
BR = "br-0123456789ab"

LAYOUTS_2010 = {"model:20.10-icc-false": DOCKER_2010_ICC_FALSE, "20.10 (captured or model)": layout_2010_icc_false()}


@pytest.mark.parametrize("text", list(LAYOUTS_2010.values()), ids=list(LAYOUTS_2010))
def test_detect_2010(text):
    layout = layouts.detect(parse_save(text))
    assert layout.name == layouts.LEGACY


@pytest.mark.parametrize("text", list(LAYOUTS_2010.values()), ids=list(LAYOUTS_2010))
def test_init_on_2010_removes_catch_all_and_inserts_internal_jump(text):
    table = parse_save(text)
    assert not layouts.is_initialised(table, ["docker0"])
    changes = layouts.plan_init(table, ["docker0"])
    assert [c.line for c in changes] == [
        "-D FORWARD -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]
    assert {c.why for c in changes} == {"init"}
    after = apply_lines(table, [c.line for c in changes])
    forward = [r.args for r in after.chain_rules("FORWARD")]
    assert CATCH_ALL not in forward
    assert forward[0] == INTERNAL
    # Docker's other rules are still there, in their order
    assert [a for a in forward[1:]] == [r.args for r in table.chain_rules("FORWARD") if r.args != CATCH_ALL]
    assert layouts.is_initialised(after, ["docker0"])
    # second run: nothing to do
    assert layouts.plan_init(after, ["docker0"]) == []


def test_catch_all_back_after_engine_restart():
    """An engine restart re-adds the catch-all: init removes it again and adds nothing else."""
    text = DOCKER_2010_ICC_FALSE.replace(
        "-A FORWARD -j DOCKER-USER\n", "-A FORWARD -i docker0 -o docker0 -j DOCKER\n-A FORWARD -j DOCKER-USER\n"
    )
    table = parse_save(text)
    assert not layouts.is_initialised(table, ["docker0"])
    assert [c.line for c in layouts.plan_init(table, ["docker0"])] == ["-D FORWARD -o docker0 -j DOCKER"]


def test_user_defined_bridge_alongside_docker0():
    table = parse_save(DOCKER_2010_WITH_USER_BRIDGE)
    changes = layouts.plan_init(table, ["docker0", BR])
    assert [c.line for c in changes] == [
        "-D FORWARD -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
        f"-D FORWARD -o {BR} -j DOCKER",
        f"-I FORWARD 1 -i {BR} -o {BR} -j DOCKER",
    ]
    after = apply_lines(table, [c.line for c in changes])
    assert layouts.is_initialised(after, ["docker0", BR])
    # a bridge with no Docker jump at all (--internal) has nothing open: done
    assert layouts.is_initialised(after, ["docker0", BR, "br-other"])
    assert not layouts.is_initialised(parse_save(DOCKER_2010_WITH_USER_BRIDGE), ["docker0", BR])
    forward = [r.args for r in after.chain_rules("FORWARD")]
    assert set(forward[:2]) == {INTERNAL, ("-i", BR, "-o", BR, "-j", "DOCKER")}
    assert ("-o", BR, "-j", "DOCKER") not in forward
    assert layouts.plan_init(after, ["docker0", BR]) == []
    # Docker's own rule for published ports in DOCKER is untouched
    assert after.chain_rules("DOCKER") == table.chain_rules("DOCKER")


@pytest.mark.parametrize("text", [DOCKER_2010_WITH_USER_BRIDGE, DOCKER_28X], ids=["20.10", "28.x"])
def test_init_removes_its_jump_for_a_removed_network(text):
    """docker network rm / compose down: Docker's rules for the network go, init's jump stays."""
    table = parse_save(text)
    bridges = ["docker0"] + ([BR] if BR in text else [])
    done = apply_lines(table, [c.line for c in layouts.plan_init(table, bridges)])
    gone = "br-dead00beef00"
    left = apply_lines(done, [f"-I FORWARD 1 -i {gone} -o {gone} -j DOCKER", "-I FORWARD 1 -i mybr0 -o mybr0 -j DOCKER"])
    assert layouts.is_initialised(left, bridges)  # a dead jump opens nothing
    changes = layouts.plan_init(left, bridges)
    assert [(c.line, c.note) for c in changes] == [(f"-D FORWARD -i {gone} -o {gone} -j DOCKER", "its network is gone")]
    assert layouts.stale_internal_jumps(left, bridges) == [gone]
    after = apply_lines(left, [c.line for c in changes])
    assert layouts.plan_init(after, bridges) == []
    # an admin's own bridge (not br-<12 hex>) is not docker-fw's to remove
    assert after.has_rule("FORWARD", "-i", "mybr0", "-o", "mybr0", "-j", "DOCKER")
    # a bridge that still exists, just not reshaped in this call (IPv6: bridges with IPv6 only)
    assert layouts.plan_init(left, bridges, existing=[*bridges, gone]) == []


def test_bridge_without_docker_jumps_is_skipped():
    """An --internal network gets no DOCKER jump: nothing to do for it, and no error."""
    changes = layouts.plan_init(parse_save(DOCKER_2010_ICC_FALSE), ["docker0", "br-internal0001"])
    assert all("br-internal0001" not in c.line for c in changes)
    assert len(changes) == 2


def test_refused_when_neither_rule_exists():
    text = DOCKER_2010_ICC_FALSE.replace("-A FORWARD -o docker0 -j DOCKER\n", "")
    table = parse_save(text)
    with pytest.raises(FirewallError, match="could not find Docker's rule"):
        layouts.plan_init(table, ["br-0123456789ab"])
    with pytest.raises(FirewallError, match="unrecognised layout; nothing was changed"):
        layouts.plan_init(table, ["docker0"])


def test_refused_with_no_bridges():
    with pytest.raises(FirewallError):
        layouts.plan_init(parse_save(DOCKER_2010_ICC_FALSE), [])


def test_28_0_0_removes_the_shared_ipset_catch_all():
    """28.0.0: one catch-all for every bridge; the internal jump goes above '-i B -o B -j ACCEPT'."""
    table = parse_save(DOCKER_2800)
    assert layouts.detect(table).name == layouts.IPSET_2800
    assert not layouts.is_initialised(table, ["docker0"])
    changes = layouts.plan_init(table, ["docker0"])
    assert [c.line for c in changes] == [
        "-D FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]
    after = apply_lines(table, [c.line for c in changes])
    assert layouts.detect(after).name == layouts.IPSET_2800  # its RELATED,ESTABLISHED rule remains
    assert layouts.is_initialised(after, ["docker0"])
    assert layouts.plan_init(after, ["docker0"]) == []
    # an engine restart puts the catch-all back: only it goes again
    again = apply_lines(after, ["-A FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER"])
    assert not layouts.is_initialised(again, ["docker0"])
    assert [c.line for c in layouts.plan_init(again, ["docker0"])] == [
        "-D FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER"
    ]


def test_28_0_0_without_its_catch_all_or_our_jump_is_unrecognised():
    text = DOCKER_2800.replace("-A FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER\n", "")
    text = text.replace("-A FORWARD -i docker0 -o docker0 -j ACCEPT\n", "")
    with pytest.raises(FirewallError, match="docker-ext-bridges-v4 dst -j DOCKER.*unrecognised layout.*nothing was changed"):
        layouts.plan_init(parse_save(text), ["docker0"])


def test_28x_is_supported():
    assert [c.line for c in layouts.plan_init(parse_save(DOCKER_28X), ["docker0"])] == [
        "-D DOCKER-BRIDGE -o docker0 -j DOCKER",
        "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER",
    ]


def test_28_refused_on_either_chain():
    for chain in ("DOCKER-FORWARD", "DOCKER-BRIDGE"):
        text = DOCKER_2010_ICC_FALSE.replace(":DOCKER-USER - [0:0]\n", f":DOCKER-USER - [0:0]\n:{chain} - [0:0]\n")
        with pytest.raises(FirewallError, match="unsupported iptables layout"):
            layouts.detect(parse_save(text))


def test_no_docker_chain():
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    with pytest.raises(FirewallError, match="no DOCKER chain"):
        layouts.plan_init(parse_save(text), ["docker0"])


@pytest.mark.parametrize("name", sorted(captured_layouts()) or ["(none captured yet)"])
def test_captured_layouts(name):
    """Each captured layout is either planned to the initialised shape or refused whole."""
    texts = captured_layouts()
    if not texts:
        pytest.skip("no captured layouts in tests/fixtures/layouts/ yet")
    table = parse_save(texts[name])
    bridges = sorted(
        {r.args[1] for r in table.chain_rules("FORWARD") if r.args[:1] == ("-o",) and r.args[-2:] == ("-j", "DOCKER")}
        | {r.args[1] for r in table.chain_rules("FORWARD") if r.args[:1] == ("-i",) and r.args[-2:] == ("-j", "DOCKER")}
    ) or ["docker0"]
    try:
        changes = layouts.plan_init(table, bridges)
    except FirewallError as exc:
        assert "nothing was changed" in str(exc) or "DOCKER chain" in str(exc)
        return
    after = apply_lines(table, [c.line for c in changes])
    assert layouts.is_initialised(after, bridges)
    assert layouts.plan_init(after, bridges) == []


def test_duplicated_catch_all_is_removed_entirely():
    text = DOCKER_2010_ICC_FALSE.replace(
        "-A FORWARD -o docker0 -j DOCKER\n", "-A FORWARD -o docker0 -j DOCKER\n-A FORWARD -o docker0 -j DOCKER\n"
    )
    table = parse_save(text)
    lines = [c.line for c in layouts.plan_init(table, ["docker0"])]
    # by spec, once per copy (each '-D' removes the first match)
    assert lines.count("-D FORWARD -o docker0 -j DOCKER") == 2
    after = apply_lines(table, lines)
    assert CATCH_ALL not in [r.args for r in after.chain_rules("FORWARD")]
    assert layouts.is_initialised(after, ["docker0"])
