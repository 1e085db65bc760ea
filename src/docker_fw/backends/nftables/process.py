"""nft, the one process the nftables backend runs: 'nft -j list table' and 'nft -j -f -'.

Nothing else in this backend starts processes.  Never a shell: the batch is
JSON written to nft's standard input, so a name (an interface, a comment)
is data, never syntax.  nft applies a batch as one kernel transaction: one
refused command and nothing of it is applied.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from ...deadline import run_bounded, seconds_from_env
from ...errors import FirewallError

# How long one nft run may take (seconds); past it nft (and its process
# group) is killed.
TIMEOUT_ENV = "DOCKER_FW_NFT_TIMEOUT"
DEFAULT_TIMEOUT = 30.0

# What 'nft -j list table' may print before docker-fw stops reading it as
# JSON: Docker's table holds a few rules per bridge and port, ours one per rule.
MAX_LISTING = 64 * 1024 * 1024

_NO_SUCH_TABLE = "No such file or directory"


class Nft:
    """Runs nft.  Each run has a deadline (``timeout`` seconds; default
    DOCKER_FW_NFT_TIMEOUT, else 30); ``verbose`` (callable(str)) is told
    every command of a batch."""

    def __init__(self, verbose=None, timeout: float | None = None):
        self.binary = shutil.which("nft")
        self.verbose = verbose
        self.timeout = seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT) if timeout is None else timeout
        self.lists = 0  # counters, used by tests and benchmarks
        self.batches = 0

    def _need(self) -> str:
        if not self.binary:
            raise FirewallError("nft not found on PATH: install the nftables package")
        return self.binary

    def _run(self, argv: list[str], stdin: bytes | None, what: str) -> subprocess.CompletedProcess:
        try:
            return run_bounded([self._need(), *argv], stdin, self.timeout)
        except subprocess.TimeoutExpired:
            raise FirewallError(
                f"'nft {what}' did not finish within {self.timeout:g}s ({TIMEOUT_ENV}) and was killed"
                + ("; whether the batch is live was not checked: run 'docker-fw check'" if stdin else "")
            ) from None

    def list_table(self, family: str, name: str) -> list[dict] | None:
        """The objects (tables, chains, rules, ...) of table FAMILY NAME as nft's JSON
        prints them; None when there is no such table."""
        self.lists += 1
        what = f"-j list table {family} {name}"
        proc = self._run(["-j", "list", "table", family, name], None, what)
        if proc.returncode != 0:
            message = _message(proc.stderr)
            if _NO_SUCH_TABLE in message:
                return None
            raise FirewallError(f"'nft {what}' failed: {_first_line(message)}")
        if len(proc.stdout) > MAX_LISTING:
            raise FirewallError(f"'nft {what}' printed more than {MAX_LISTING} bytes: not read")
        try:
            objects = json.loads(proc.stdout.decode("utf-8", "surrogateescape")).get("nftables", [])
        except (ValueError, AttributeError) as exc:
            raise FirewallError(f"'nft {what}' printed what is not nft's JSON: {exc}") from None
        if not isinstance(objects, list):
            raise FirewallError(f"'nft {what}' printed what is not nft's JSON: no list of objects")
        return [o for o in objects if isinstance(o, dict)]

    def apply(self, commands: list[str], shown: list[str]) -> None:
        """One transaction: COMMANDS (each one JSON command object, as text) in one
        'nft -j -f -'.  SHOWN: the same commands in nft's own syntax, for --verbose
        and for the message naming what nft refused."""
        if not commands:
            return
        if self.verbose:
            for line in shown:
                self.verbose(f"nft {line}")
        payload = '{"nftables": [' + ", ".join(commands) + "]}"
        self.batches += 1
        proc = self._run(["-j", "-f", "-"], payload.encode("utf-8"), "-j -f -")
        if proc.returncode != 0:
            detail = " ".join(_message(proc.stderr).split())[:300] or "(no message)"
            raise FirewallError(f"nft refused the change, nothing was applied: {detail}")


def _message(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _first_line(text: str) -> str:
    text = text.strip()
    return text.split("\n")[0] if text else "(no message)"
