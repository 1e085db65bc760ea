"""iptables processes: deadlines, the kill, and what a failed restore left live.

The iptables-save / iptables-restore that Iptables runs here are a fake
(FAKE_SCRIPT, written to a temporary directory) standing in for their
interface as docker-fw uses it:

- ``iptables-save -t filter`` prints the table (the file ``table``) and exits 0;
- ``iptables-restore --wait --noflush`` reads a batch on standard input and,
  when it applies it, exits 0 printing nothing.

The file ``mode`` says how the fake misbehaves: ``apply`` (the file ``after``
becomes the table), ``fail`` (refuses: exit 1 naming line 3, nothing
applied), ``apply-then-fail``, ``hang`` (starts a child that holds the pipes
open, then sleeps, applying nothing), ``apply-then-hang``, ``hang-save``
(iptables-save hangs), ``fail-save`` (both fail).  Each fake process writes its
pid, and a hanging one its child's, to the file ``pids``.
"""

from __future__ import annotations

import pathlib
import re
import time

import pytest

from dfw_samples import apply_lines, layout_2010_icc_false, render
from docker_fw.deadline import MAX_SECONDS
from docker_fw.errors import FirewallError, UsageError
from docker_fw.backends.iptables.process import TIMEOUT_ENV, Iptables, Table, batch_outcome, parse_save
from docker_fw.backends.iptables.reconcile import ensure_chains, rule_line
from test_iptables_parse import HOSTILE_SAVE
from tests.harness.sandbox import _pid_alive  # a zombie (killed, not yet reaped) is not alive


def _all_dead(pids: list[int], wait: float = 10.0) -> bool:
    """Whether every pid is gone.  SIGKILL takes effect asynchronously: a killed
    grandchild (reparented, not ours to wait for) may still be running for a
    moment under load, so look again for a bounded while before saying no."""
    deadline = time.monotonic() + wait
    while any(_pid_alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True

# POSIX sh: it starts in milliseconds even on a loaded machine, well within TIMEOUT.
FAKE_SCRIPT = """#!/bin/sh
state="$FAKE_IPTABLES_STATE"
mode=$(cat "$state/mode")
echo $$ >> "$state/pids"
hang() {
    sleep 300 &  # a child that inherits, and so holds open, our stdout and stderr
    echo $! >> "$state/pids"
    wait
}
case "$0" in
*-save)
    [ "$mode" = hang-save ] && hang
    [ "$mode" = fail-save ] && { echo "iptables-save: cannot read the table" >&2; exit 1; }
    cat "$state/table"
    exit 0;;
esac
cat > "$state/batch"
case "$mode" in apply|apply-then-fail|apply-then-hang) cp "$state/after" "$state/table";; esac
case "$mode" in fail|apply-then-fail|fail-save) echo "iptables-restore: line 3 failed" >&2; exit 1;; esac
case "$mode" in hang|apply-then-hang) hang;; esac
exit 0
"""

TIMEOUT = 1.0


class FakeIptables:
    def __init__(self, directory: pathlib.Path):
        self.dir = directory
        self.bin = directory / "bin"
        self.bin.mkdir()
        for name in ("iptables-save", "iptables-restore"):
            path = self.bin / name
            path.write_text(FAKE_SCRIPT)
            path.chmod(0o755)
        self.table = parse_save(layout_2010_icc_false())
        (directory / "table").write_text(render(self.table))
        (directory / "pids").write_text("")

    def firewall(self) -> Iptables:
        fw = Iptables(timeout=TIMEOUT)
        fw.save_bin, fw.restore_bin = str(self.bin / "iptables-save"), str(self.bin / "iptables-restore")
        return fw

    def misbehave(self, mode: str, after: Table | None = None) -> None:
        (self.dir / "mode").write_text(mode)
        (self.dir / "after").write_text(render(after or self.table))

    def pids(self) -> list[int]:
        # Under heavy load the deadline can pass before the fake has written
        # its pid: then it was killed before it ran, and no pid is left to check.
        path = self.dir / "pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_IPTABLES_STATE", str(tmp_path))
    return FakeIptables(tmp_path)


def _batch(table: Table) -> list[str]:
    """init's setup lines for docker-fw's chains, and one rule of ours."""
    lines = [c.line for c in ensure_chains(table)]
    lines.append(rule_line("-A", "DOCKER-FW-FORWARD", [
        "-s", "198.51.100.2/32", "-d", "172.17.0.2/32", "-p", "tcp", "-m", "tcp", "--dport", "80",
        "-m", "comment", "--comment", "docker-fw:web:0123456789ab", "-j", "DOCKER",
    ]))
    return lines


def failed_restore(fake: FakeIptables, mode: str, applied: int = 0) -> tuple[FirewallError, list[str], Iptables]:
    """Restore _batch() with the fake misbehaving as MODE, having applied the
    first APPLIED lines (-1: all); the error, the lines and the Iptables."""
    fw = fake.firewall()
    lines = _batch(fake.table)
    fake.misbehave(mode, after=apply_lines(fake.table, lines[:applied] if applied >= 0 else lines))
    with pytest.raises(FirewallError) as exc:
        fw.restore("filter", lines, before=fake.table)
    return exc.value, lines, fw


def test_a_hung_restore_is_killed_with_its_group_and_nothing_was_applied(fake):
    error, _, fw = failed_restore(fake, "hang")
    assert str(error) == (
        "'iptables-restore --wait --noflush' did not finish within 1s (DOCKER_FW_IPTABLES_TIMEOUT) "
        "and was killed, nothing was applied"
    )
    assert error.exit_code == 4
    restore, child = fake.pids()[:2]
    assert _all_dead([restore, child])  # the whole process group
    assert fw.saves == 1  # read again to say what is live


def test_a_restore_that_applied_then_hung_says_the_change_is_live(fake):
    error, _, _ = failed_restore(fake, "apply-then-hang", applied=-1)
    assert str(error).endswith(
        "and was killed, but the change is live despite the error; run 'docker-fw check'"
    )
    assert _all_dead(fake.pids()[:2])


def test_a_restore_that_applied_then_failed_says_the_change_is_live(fake):
    error, lines, _ = failed_restore(fake, "apply-then-fail", applied=-1)
    assert str(error) == (
        "iptables-restore failed (exit status 1), but the change is live despite the error: "
        f"{lines[1]}: iptables-restore: line 3 failed; run 'docker-fw check'"
    )
    assert error.exit_code == 4


def test_a_refused_restore_says_nothing_was_applied_after_reading_again(fake):
    error, lines, fw = failed_restore(fake, "fail")
    assert str(error) == (
        f"iptables refused the change, nothing was applied: {lines[1]}: iptables-restore: line 3 failed"
    )
    assert fw.saves == 1


def test_a_restore_that_left_part_of_the_change_live_says_so(fake):
    error, _, _ = failed_restore(fake, "apply-then-fail", applied=2)
    assert re.search(r"part of the change is live, .*; run 'docker-fw check'$", str(error)), error


def test_a_table_that_cannot_be_read_again_is_said(fake):
    error, _, _ = failed_restore(fake, "fail-save")
    assert re.search(r"could not be read again to see what is live \(iptables-save failed: "
                     r"iptables-save: cannot read the table\).*; run 'docker-fw check'$", str(error)), error


def test_a_hung_save_is_killed(fake):
    fw = fake.firewall()
    fake.misbehave("hang-save")
    with pytest.raises(FirewallError) as exc:
        fw.save()
    assert str(exc.value) == (
        "'iptables-save -t filter' did not finish within 1s (DOCKER_FW_IPTABLES_TIMEOUT) and was killed"
    )
    assert _all_dead(fake.pids())


def test_a_restore_that_works_reads_nothing_again(fake):
    """The happy path runs one process: no iptables-save after a restore."""
    fw = fake.firewall()
    lines = _batch(fake.table)
    fake.misbehave("apply", after=apply_lines(fake.table, lines))
    fw.restore("filter", lines, before=fake.table)
    assert (fw.saves, fw.restores) == (0, 1)
    assert (fake.dir / "batch").read_text() == "\n".join(["*filter", *lines, "COMMIT", ""])


def test_bytes_that_are_not_utf8_are_read_as_they_are_and_never_written(fake):
    """iptables-save output is bytes: a comment or interface name that is not UTF-8
    (here 0xff) neither crashes the parser nor is misread; a batch never carries
    such bytes back (refused in one line before iptables-restore runs)."""
    fake.misbehave("apply")
    (fake.dir / "table").write_bytes(HOSTILE_SAVE)
    fw = fake.firewall()
    table = fw.save()
    assert any(r.comment == "raw\udcffbyte" for r in table.rules)
    bridge = next(r.args[1] for r in table.rules if r.args[1].startswith("x\udcff"))
    with pytest.raises(FirewallError, match=r"cannot write 'x\\udcffy' so that iptables-restore reads it back"):
        rule_line("-A", "FORWARD", ["-o", bridge, "-j", "DROP"])
    with pytest.raises(FirewallError, match=r"nothing was applied: line 1 of the batch holds '\\udcff'"):
        fw.restore("filter", [f"-A FORWARD -o {bridge} -j DROP"], before=table)
    assert fw.restores == 0 and not (fake.dir / "batch").exists()


# --- what is live, judged on tables --------------------------------------------------------------


def test_batch_outcome_with_deletes_by_position_and_spec_and_a_moved_rule():
    before = parse_save(layout_2010_icc_false())
    jump = rule_line("-I", "FORWARD", ["1", "-i", "docker0", "-o", "docker0", "-j", "DOCKER"])
    lines = [
        "-D FORWARD -o docker0 -j DOCKER",  # by spec
        f"-D DOCKER-USER {len(before.chain_rules('DOCKER-USER'))}",  # by position
        jump,
        *_batch(before),
    ]
    after = apply_lines(before, lines)
    assert batch_outcome(before, after, lines).summary == "but the change is live despite the error"
    assert batch_outcome(before, before, lines).summary == "nothing was applied"
    assert batch_outcome(before, before, lines).advice == ""
    # another program's rule meanwhile: neither
    other = apply_lines(after, ["-A DOCKER -s 10.9.9.9/32 -j ACCEPT"])
    assert batch_outcome(before, other, lines).summary.startswith("but the table changed")


# --- the deadline's setting ------------------------------------------------------------------------


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert Iptables().timeout == 30.0
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert Iptables(family=6).timeout == 2.5


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e308", str(MAX_SECONDS + 1), "2\n"])
def test_a_bad_timeout_is_refused_in_one_line(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(UsageError) as exc:
        Iptables()
    assert str(exc.value).startswith(f"{TIMEOUT_ENV} must be a number of seconds from 0.1 to 3600, not ")
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2


def test_a_missing_binary_is_a_firewall_error(tmp_path):
    fw = Iptables(timeout=TIMEOUT)
    fw.save_bin = str(tmp_path / "nonexistent-iptables-save")
    with pytest.raises(FirewallError, match="cannot run .*nonexistent-iptables-save: No such file"):
        fw.save()

