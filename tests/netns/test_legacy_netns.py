"""The firewall backend on an iptables-legacy host, in a throwaway network namespace.

docker_fw.backends.iptables.process.Iptables runs whatever ``iptables-save``/``iptables-restore``
PATH finds, so on a host whose iptables alternative is the legacy variant it
drives the legacy (x_tables) tables.  Here the helper's PATH starts with a
directory of symlinks to the iptables-legacy binaries (whatever this host's
alternative is), the namespace's legacy filter table is seeded with the Docker
20.10 layout, and everything is read back with iptables-legacy-save.  The nft
table of the namespace (seeded by the ``netns`` fixture through the host's
iptables-restore) must not be touched.

Legacy iptables-restore --wait takes /run/xtables.lock; ``nsenter --net`` keeps
the host's mount namespace, so that lock file is the host's: a test holds it
for about a second only.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from netns_support import HELPER, SEED, normalise, unavailable
from docker_fw.backends.iptables.rules import CHAIN_FORWARD, CHAIN_INPUT, CHAIN_INTERNAL
from docker_fw.backends.iptables.reconcile import REPLIES_RULE, rule_line
from test_iptables_netns import (
    assert_bad_batch_changes_nothing,
    assert_moved_rules_replaced,
    OWN_CHAINS,
    SPECS,
    as_json,
    deletes_by_chain,
    desired,
    is_owned,
    numbered,
    owned_lines,
    replies,
    snapshot,
    tagged,
    without,
)

pytestmark = pytest.mark.netns

SBIN = pathlib.Path("/usr/sbin")
LEGACY = {
    "iptables-save": "iptables-legacy-save",
    "iptables-restore": "iptables-legacy-restore",
    "iptables": "iptables-legacy",
}
XTABLES_LOCK = "/run/xtables.lock"
EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
SRC = pathlib.Path(__file__).resolve().parents[2] / "src"


def _legacy_binary(name: str) -> str | None:
    path = SBIN / name
    if path.exists():
        return str(path)
    return shutil.which(name)


class LegacyNs:
    """The netns, with the legacy binaries first on the helper's PATH."""

    def __init__(self, ns, bindir: pathlib.Path, binaries: dict[str, str]):
        self.ns = ns
        self.bindir = bindir
        self.binaries = binaries  # 'iptables-legacy-save' -> its path
        self.env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def helper(self, op: str, **request) -> dict:
        return self.ns.helper(op, env=self.env, **request)

    def saved(self) -> dict:
        answer = self.helper("save")
        assert answer["ok"], answer
        return answer

    def legacy_save(self) -> str:
        """The legacy filter table, read by iptables-legacy-save itself, normalised."""
        return normalise(self.ns.run([self.binaries["iptables-legacy-save"], "-t", "filter"]).stdout)

    def legacy_load(self, text: str) -> None:
        """Replace the legacy filter table (flushes it)."""
        self.ns.run([self.binaries["iptables-legacy-restore"], "--wait"], stdin=text)

    def nft_save(self) -> str | None:
        """The nft filter table (None on a host without iptables-nft)."""
        binary = shutil.which("iptables-nft-save")
        if binary is None:
            return None
        return normalise(self.ns.run([binary, "-t", "filter"]).stdout)


@pytest.fixture
def legacy(netns, tmp_path):
    binaries = {}
    for target in LEGACY.values():
        found = _legacy_binary(target)
        if found is None:
            unavailable(f"{target} is not installed (no iptables-legacy on this host)")
        binaries[target] = found
    bindir = tmp_path / "legacy-bin"
    bindir.mkdir()
    for link, target in LEGACY.items():
        (bindir / link).symlink_to(binaries[target])
    lns = LegacyNs(netns, bindir, binaries)
    nft_before = lns.nft_save()
    probe = netns.run([binaries["iptables-legacy-save"], "-t", "filter"], check=False)
    if probe.returncode != 0:
        unavailable(
            "legacy iptables (x_tables / ip_tables kernel modules) unusable in this VM: "
            f"iptables-legacy-save -t filter exited {probe.returncode}: {probe.stderr.strip()}"
        )
    seeded = netns.run([binaries["iptables-legacy-restore"], "--wait"], stdin=SEED.read_text(), check=False)
    if seeded.returncode != 0:
        unavailable(
            "legacy iptables (x_tables / ip_tables kernel modules) unusable in this VM: "
            f"iptables-legacy-restore of the Docker 20.10 seed exited {seeded.returncode}: {seeded.stderr.strip()}"
        )
    try:
        yield lns
        # docker-fw never wrote to the nft table
        assert lns.nft_save() == nft_before
    finally:
        # empty the legacy filter table again (the fixture deletes the namespace anyway)
        netns.run([binaries["iptables-legacy-restore"], "--wait"], stdin=EMPTY_FILTER, check=False)


def assert_not_in_nft(lns: LegacyNs) -> None:
    text = lns.nft_save()
    if text is None:
        return
    assert "DOCKER-FW" not in text, text
    assert "docker-fw:" not in text, text


# --- the set-up itself ----------------------------------------------------------------------


def test_helper_runs_the_legacy_binaries(legacy):
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from docker_fw.backends.iptables.process import Iptables; fw = Iptables();"
        "print(json.dumps([fw.save_bin, fw.restore_bin]))"
    )
    proc = legacy.ns.run([sys.executable, "-c", code, str(SRC)], env=legacy.env)
    save_bin, restore_bin = json.loads(proc.stdout)
    assert save_bin == str(legacy.bindir / "iptables-save")
    assert restore_bin == str(legacy.bindir / "iptables-restore")
    assert os.path.realpath(save_bin) == os.path.realpath(legacy.binaries["iptables-legacy-save"])
    assert os.path.realpath(restore_bin) == os.path.realpath(legacy.binaries["iptables-legacy-restore"])
    # the seed is in the legacy table, and docker-fw's parser reads it from there
    assert legacy.legacy_save() == normalise(SEED.read_text())
    assert "-A FORWARD -o docker0 -j DOCKER" in [r["line"] for r in legacy.saved()["rules"]]


# --- init --------------------------------------------------------------------------------------


def test_init_on_legacy_then_second_plan_is_empty(legacy):
    first = legacy.helper("init", bridges=["docker0"])
    assert first["ok"], first
    assert first["restores"] == 1
    assert first["lines"] == ["-D FORWARD -o docker0 -j DOCKER", "-I FORWARD 1 -i docker0 -o docker0 -j DOCKER"]
    text = legacy.legacy_save()
    forward = [l for l in text.splitlines() if l.startswith("-A FORWARD ")]
    # the catch-all jump is gone and the internal (bridge to itself) jump is first
    assert "-A FORWARD -o docker0 -j DOCKER" not in forward
    assert forward[0] == "-A FORWARD -i docker0 -o docker0 -j DOCKER"
    assert len(forward) == 6
    assert legacy.helper("plan_init", bridges=["docker0"]) == {"ok": True, "lines": [], "restores": 0}
    assert legacy.helper("init", bridges=["docker0"]) == {"ok": True, "lines": [], "restores": 0}
    assert legacy.legacy_save() == text
    assert_not_in_nft(legacy)


# --- sync ---------------------------------------------------------------------------------------


def test_sync_lands_in_the_legacy_table_and_is_idempotent(legacy):
    assert legacy.helper("init", bridges=["docker0"])["ok"]
    rules = desired()
    first = legacy.helper("sync", desired=as_json(rules), scope=None)
    assert first["ok"], first
    assert first["restores"] == 1
    assert len(first["lines"]) == 7 + len(rules)
    assert first["lines"][6] == rule_line("-I", CHAIN_INTERNAL, ["1", *REPLIES_RULE])
    again = legacy.helper("plan", desired=as_json(rules), scope=None)
    assert again == {"ok": True, "lines": [], "notes": [], "restores": 0}
    # read back by iptables-legacy-save itself
    text = legacy.legacy_save()
    for chain in OWN_CHAINS:
        assert f":{chain} - [0:0]" in text.splitlines()
    assert len(owned_lines(text)) == len(rules)
    lines = text.splitlines()
    first_in = {}
    for line in lines:
        if line.startswith("-A "):
            chain = line.split(" ")[1]
            first_in.setdefault(chain, line)
    assert first_in["FORWARD"] == f"-A FORWARD -j {CHAIN_FORWARD}"
    assert first_in["INPUT"] == f"-A INPUT -j {CHAIN_INPUT}"
    assert first_in["DOCKER"] == f"-A DOCKER -j {CHAIN_INTERNAL}"  # the internal jump first
    # init's change is kept; Docker's rules are all still there
    assert "-A FORWARD -i docker0 -o docker0 -j DOCKER" in lines
    seed_rules = [l for l in normalise(SEED.read_text()).splitlines() if l.startswith("-A")]
    assert set(seed_rules) - {"-A FORWARD -o docker0 -j DOCKER"} <= set(lines)
    # docker-fw's own view agrees
    state = legacy.saved()
    assert [(r["chain"], r["position"]) for r in replies(state)] == [(CHAIN_INTERNAL, 1)]
    assert sorted(r["comment"] for r in tagged(state)) == sorted(r.comment for r in rules)
    assert all(r["chain"] in OWN_CHAINS for r in tagged(state))
    # and not in the nft table
    assert_not_in_nft(legacy)
    # init and sync again: nothing to do
    assert legacy.helper("plan_init", bridges=["docker0"])["lines"] == []
    assert legacy.helper("sync", desired=as_json(rules), scope=None)["lines"] == []
    assert legacy.legacy_save() == text


def test_stale_rules_are_deleted_by_position(legacy):
    specs = [SPECS[0], SPECS[2]]
    before = desired(specs)
    assert legacy.helper("sync", desired=as_json(before), scope=None)["ok"]
    # a foreign rule above ours, so positions are not just 1..n
    foreign = rule_line("-I", CHAIN_FORWARD, ["1", "-s", "10.1.1.1/32", "-j", "DOCKER"])
    assert legacy.helper("restore", lines=[foreign])["ok"]
    text_before = legacy.legacy_save()
    old = [r for r in numbered(legacy.saved()) if is_owned(r["comment"])]
    assert {(r["chain"], r["position"]) for r in old} == {(CHAIN_FORWARD, 2), (CHAIN_INTERNAL, 2)}
    after = desired(specs, snapshot(web_ip="172.17.0.22"))
    assert_moved_rules_replaced(legacy.helper, legacy.legacy_save, text_before, old, after)
    assert legacy.helper("plan", desired=as_json(after), scope=None)["lines"] == []
    # nothing wanted any more: every rule of ours goes, bottom up, the foreign one stays
    with_ours = legacy.legacy_save()
    ours = [r for r in numbered(legacy.saved()) if is_owned(r["comment"])]
    plan = legacy.helper("sync", desired=[], scope=None)
    assert plan["ok"], plan
    assert sorted(plan["lines"]) == sorted(f"-D {r['chain']} {r['position']}" for r in ours)
    for chain, positions in deletes_by_chain(plan["lines"]).items():
        assert positions == sorted(positions, reverse=True), chain
    assert legacy.legacy_save().splitlines() == without(with_ours, [r["line"] for r in ours])
    assert f"-A {CHAIN_FORWARD} -s 10.1.1.1/32 -j DOCKER" in legacy.legacy_save().splitlines()
    assert legacy.helper("plan", desired=[], scope=None)["lines"] == []
    assert_not_in_nft(legacy)


# --- atomicity ---------------------------------------------------------------------------------


def test_batch_with_one_bad_line_changes_nothing(legacy):
    assert_bad_batch_changes_nothing(legacy.helper, legacy.legacy_save)
    assert_not_in_nft(legacy)


# --- the xtables lock ------------------------------------------------------------------------------


def test_legacy_restore_wait_works(legacy, tmp_path):
    # iptables-legacy-restore --wait, as docker-fw runs it, applies a batch
    legacy.ns.run(
        [str(legacy.bindir / "iptables-restore"), "--wait", "--noflush"],
        stdin="*filter\n-A DOCKER -s 10.4.4.1/32 -j ACCEPT\nCOMMIT\n",
    )
    assert "-A DOCKER -s 10.4.4.1/32 -j ACCEPT" in legacy.legacy_save().splitlines()
    # legacy takes /run/xtables.lock: while it is held, docker-fw's restore waits
    # (it does not fail), and applies its batch once the lock is free
    line = "-A DOCKER -s 10.4.4.2/32 -j ACCEPT"
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"op": "restore", "lines": [line]}))
    fd = os.open(XTABLES_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with request.open() as stdin:
                proc = subprocess.Popen(
                    ["nsenter", f"--net={legacy.ns.path}", sys.executable, str(HELPER)],
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=legacy.env,
                )
            time.sleep(1.0)
            waited = proc.poll() is None
            applied_while_locked = line in legacy.legacy_save().splitlines()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert waited, f"docker-fw's restore did not wait for the xtables lock: {out} {err}"
    assert not applied_while_locked
    answer = json.loads(out)
    assert answer == {"ok": True, "restores": 1}, err
    assert line in legacy.legacy_save().splitlines()
    assert_not_in_nft(legacy)
