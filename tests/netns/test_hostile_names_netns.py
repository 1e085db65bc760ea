"""Bridges with hostile names, on real iptables (nf_tables and legacy), in a throwaway namespace.

Docker takes a bridge's name from the network option
com.docker.network.bridge.name, which anyone with API access sets, and the
kernel takes nearly any name ('"', '\\', '#', U+2028, ...).  Here real bridges
with such names get Docker's rules (made with iptables argv, as Docker makes
them), and docker-fw must read them back exactly (iptables-save prints
interface names raw), close them with init, and plan and delete by position
exactly the rules of its own that name them.
"""

from __future__ import annotations

import os
import shutil

import pytest

from netns_support import SEED, unavailable
from test_iptables_netns import deletes_by_chain, is_owned, numbered
from test_legacy_netns import legacy  # noqa: F401  (a fixture)
from docker_fw.backends.iptables.layouts import catch_all, internal_jump
from docker_fw.backends.iptables.rules import CHAIN_FORWARD

pytestmark = pytest.mark.netns

BRIDGES = [
    'q"net', '"x', 'x"', '""', '\\"', "b\\s", "a'b#c", "#x", "u\u2028x", "n\u0085x",
    'ab"defghijklmno',  # 15 bytes: the longest name there is
]


def docker_rules(bridge: str) -> list[list[str]]:
    """What Docker 20.10 appends to FORWARD for a bridge network (icc on)."""
    return [
        ["-o", bridge, "-j", "DOCKER"],
        ["-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"],
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],
    ]


class Variant:
    """One iptables variant in the namespace: its iptables binary, and docker-fw's
    helper run with that variant's iptables-save/-restore first on PATH."""

    def __init__(self, ns, iptables: str, env: dict):
        self.ns = ns
        self.iptables_bin = iptables
        self.env = env

    def iptables(self, *argv: str) -> None:
        self.ns.run([self.iptables_bin, "-w", *argv])

    def helper(self, op: str, **request) -> dict:
        answer = self.ns.helper(op, env=self.env, **request)
        assert answer["ok"], answer
        return answer

    def forward(self) -> list[list[str]]:
        return [r["args"] for r in self.helper("save")["rules"] if r["chain"] == "FORWARD"]


@pytest.fixture(params=["nft", "legacy"])
def variant(request, netns, tmp_path):
    if request.param == "legacy":
        lns = request.getfixturevalue("legacy")
        chosen = Variant(netns, lns.binaries["iptables-legacy"], lns.env)
    else:
        binaries = {name: shutil.which(f"iptables-nft{suffix}") for name, suffix in
                    (("iptables", ""), ("iptables-save", "-save"), ("iptables-restore", "-restore"))}
        if None in binaries.values():
            unavailable("iptables-nft is not installed")
        bindir = tmp_path / "nft-bin"
        bindir.mkdir()
        for name, path in binaries.items():
            (bindir / name).symlink_to(path)
        netns.run([binaries["iptables-restore"]], stdin=SEED.read_text())
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        chosen = Variant(netns, binaries["iptables"], env)
    for bridge in BRIDGES:
        netns.run(["ip", "link", "add", bridge, "type", "bridge"])
        for args in docker_rules(bridge):
            chosen.iptables("-A", "FORWARD", *args)
    return chosen


def test_saved_rules_name_the_bridges_exactly(variant):
    forward = variant.forward()
    assert forward[-3 * len(BRIDGES):] == [args for b in BRIDGES for args in docker_rules(b)]


def test_init_closes_every_bridge_and_then_has_nothing_left_to_do(variant):
    bridges = ["docker0", *BRIDGES]
    before = variant.forward()
    answer = variant.helper("init", bridges=bridges)
    assert len(answer["lines"]) == 2 * len(bridges) and answer["restores"] == 1
    after = variant.forward()
    for bridge in bridges:
        assert list(catch_all(bridge)) not in after
        assert after.count(list(internal_jump(bridge))) == 1
    # the internal jumps first, then Docker's other rules as they were
    assert {tuple(a) for a in after[: len(bridges)]} == {internal_jump(b) for b in bridges}
    assert after[len(bridges):] == [a for a in before if tuple(a) not in {catch_all(b) for b in bridges}]
    assert variant.helper("plan_init", bridges=bridges)["lines"] == []


def _allow(bridge: str, host: int) -> dict:
    """A desired 'add' rule of web's whose filter named @bridge (resolved to BRIDGE)."""
    matches = ["-s", "198.51.100.2/32", "-d", f"172.18.0.{host}/32", "!", "-i", bridge, "-o", bridge,
               "-p", "tcp", "-m", "tcp", "--dport", "80"]
    return {"owner": "web", "chain": CHAIN_FORWARD, "matches": matches, "target": "DOCKER"}


def test_rules_naming_the_bridges_are_planned_once_and_deleted_by_position(variant):
    wanted = [_allow(bridge, host) for host, bridge in enumerate(BRIDGES, 2)]
    first = variant.helper("sync", desired=wanted, scope=["web"])
    assert sum(line.startswith("-A ") for line in first["lines"]) == len(wanted)
    # a foreign rule among ours, naming such a bridge too: it must stay
    variant.iptables("-I", CHAIN_FORWARD, "3", "-i", 'q"net', "-j", "RETURN")
    # read back: each rule of ours is found by its tag, so nothing is planned again
    assert variant.helper("plan", desired=wanted, scope=["web"])["lines"] == []
    state = numbered(variant.helper("save"))
    ours = [r for r in state if r["chain"] == CHAIN_FORWARD and is_owned(r["comment"])]
    assert [r["args"][:len(w["matches"])] for r, w in zip(ours, wanted)] == [w["matches"] for w in wanted]
    assert len(ours) == len(wanted)
    # web's rules withdrawn: exactly their positions are deleted, bottom up
    plan = variant.helper("sync", desired=[], scope=["web"])
    assert sorted(plan["lines"]) == sorted(f"-D {CHAIN_FORWARD} {r['position']}" for r in ours)
    assert deletes_by_chain(plan["lines"])[CHAIN_FORWARD] == sorted((r["position"] for r in ours), reverse=True)
    left = [r for r in numbered(variant.helper("save")) if r["chain"] == CHAIN_FORWARD]
    assert [r["args"] for r in left] == [["-i", 'q"net', "-j", "RETURN"]]
