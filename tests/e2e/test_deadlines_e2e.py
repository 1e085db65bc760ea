"""End to end: a hung iptables-restore cannot hang docker-fw (DOCKER_FW_IPTABLES_TIMEOUT).

docker-fw runs in the engine's namespace with a directory first on PATH whose
iptables-restore hangs (it starts a child that holds its output open, and
waits) and whose iptables-save is the real one.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from tests.e2e.fw import ALLOWED, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)
from tests.harness.sandbox import _env, _pid_alive  # a zombie (killed, not yet reaped) is not alive

pytestmark = pytest.mark.e2e

DEADLINE = "2"

HUNG_RESTORE = """#!/bin/sh
echo $$ >> "{pids}"
sleep 300 &
echo $! >> "{pids}"
wait
"""


@pytest.fixture
def hung_restore(tmp_path) -> tuple[dict, pathlib.Path]:
    """The environment that puts the hanging iptables-restore first on PATH, and its pid file."""
    bindir = tmp_path / "hung-bin"
    bindir.mkdir()
    pids = tmp_path / "pids"
    pids.write_text("")
    restore = bindir / "iptables-restore"
    restore.write_text(HUNG_RESTORE.format(pids=pids))
    restore.chmod(0o755)
    path = _env()["PATH"]
    (bindir / "iptables-save").symlink_to(shutil.which("iptables-save", path=path))
    env = {"PATH": f"{bindir}{os.pathsep}{path}", "DOCKER_FW_IPTABLES_TIMEOUT": DEADLINE}
    return env, pids


def test_a_hung_iptables_restore_is_exit_4_and_leaves_everything_as_it_was(sandbox, fw, web, hung_restore):
    env, pids = hung_restore
    fw.ok("init")
    rules = fw.rules_text()
    add = ("add", "web", f"--source={ALLOWED}", "--dport", "80")

    result = fw.run(*add, env=env)
    assert result.returncode == 4, result
    [message] = result.stderr.strip().splitlines()
    assert message == (
        "docker-fw add: 'iptables-restore --wait --noflush' did not finish within 2s "
        "(DOCKER_FW_IPTABLES_TIMEOUT) and was killed, nothing was applied"
    )
    restore_pid, child_pid = map(int, pids.read_text().split())
    assert not _pid_alive(restore_pid) and not _pid_alive(child_pid)  # killed with its process group
    # nothing applied, nothing recorded, and the store's lock is free for the next command
    assert fw.rules_text() == rules
    assert fw.ok("ls").stdout == ""
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)

    # the real iptables-restore back: the same command works
    fw.ok(*add)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert fw.ok("ls").stdout.startswith(f"docker-fw add web --source={ALLOWED} ")
