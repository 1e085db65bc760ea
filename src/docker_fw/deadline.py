"""Deadlines: how long docker-fw waits for a process or the engine.

Every wait has one, so that a hung iptables-restore or engine cannot hang
docker-fw (and the state store lock it holds) forever.  Each can be changed
with an environment variable, e.g. shorter for tests.
"""

from __future__ import annotations

import os
import re

from .errors import UsageError

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
