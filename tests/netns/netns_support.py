"""Support for the netns tests: a network namespace handle and the seed layout."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
HELPER = HERE / "fw_helper.py"
SEED = HERE / "docker-20.10-filter.txt"
TOOLS = ("ip", "nsenter", "iptables-save", "iptables-restore")


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing on PATH: {', '.join(missing)}"
    return None


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"netns tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def normalise(save_output: str) -> str:
    """iptables-save output without '#' lines and with counters zeroed."""
    lines = []
    for line in save_output.split("\n"):  # not splitlines(): names may hold U+2028
        if not line.strip() or line.startswith("#"):
            continue
        lines.append(re.sub(r"\[\d+:\d+\]$", "[0:0]", line))
    return "\n".join(lines) + "\n"


class Netns:
    def __init__(self, name: str):
        self.name = name
        self.path = f"/var/run/netns/{name}"

    def run(
        self, argv: list[str], stdin: str | None = None, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """``env``: the whole environment of the command (default: this process's)."""
        proc = subprocess.run(
            ["nsenter", f"--net={self.path}", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def load(self, text: str) -> None:
        """Replace the filter table with an iptables-save text (flushes it)."""
        self.run(["iptables-restore"], stdin=text)

    def save(self) -> str:
        """The filter table, normalised for comparisons."""
        return normalise(self.run(["iptables-save", "-t", "filter"]).stdout)

    def helper(self, op: str, env: dict | None = None, **request) -> dict:
        """``env``: the helper's whole environment (default: this process's), e.g.
        another PATH to pick which iptables-save/-restore docker-fw runs."""
        proc = self.run([sys.executable, str(HELPER)], stdin=json.dumps({"op": op, **request}), check=False, env=env)
        if proc.returncode != 0:
            raise AssertionError(f"fw_helper {op} crashed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)
