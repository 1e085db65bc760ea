"""Deadlines: how long docker-fw waits for a process or the engine.

Every wait has one, so that a hung iptables-restore or engine cannot hang
docker-fw (and the state store lock it holds) forever.  Each can be changed
with an environment variable, e.g. shorter for tests.
"""

from __future__ import annotations

import contextlib
import os
import re

from .errors import FirewallError, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:
    import subprocess

# Bounds for an overridden deadline: long enough for any real batch, short
# enough that a value such as 1e308 cannot overflow a timer.
MIN_SECONDS = 0.1
MAX_SECONDS = 3600.0
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # no signs, exponents, nan, inf or spaces


def seconds_from_env(name: str, default: float) -> float:
    """The deadline the environment variable NAME sets (seconds), or DEFAULT when unset."""
    text = os.environ.get(name, "")
    if not text:
        return default
    if not (_DECIMAL.fullmatch(text) and MIN_SECONDS <= float(text) <= MAX_SECONDS):
        raise UsageError(
            f"{name} must be a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:g}, not {text[:40]!r}"
        )
    return float(text)


def run_bounded(argv: list[str], stdin: bytes | None, timeout: float) -> subprocess.CompletedProcess:
    """Run ARGV (no shell) in a process group of its own, output captured as bytes.

    subprocess.TimeoutExpired once TIMEOUT seconds have passed: the whole
    group has been killed by then (a child it started would otherwise keep
    the pipes open, and us waiting).  Any other exception, KeyboardInterrupt
    included, kills the group too.
    """
    import signal  # here: 'ls' reads the engine's deadline from this module, and runs no process
    import subprocess

    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    except OSError as exc:
        raise FirewallError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    with proc:
        try:
            stdout, stderr = proc.communicate(stdin, timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()  # the leader is gone at once; the pipes are closed on leaving 'with'
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
