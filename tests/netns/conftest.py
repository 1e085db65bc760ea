"""A throwaway network namespace with a Docker 20.10-like filter table.

Needs root, ip, nsenter and iptables-save/-restore.  Without them the tests
are skipped, with the reason; with CI=true they fail instead.  The namespace
is always deleted.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from netns_support import SEED, Netns, missing_prerequisite, unavailable


@pytest.fixture
def netns():
    reason = missing_prerequisite()
    if reason:
        unavailable(reason)
    name = f"dfw-nt-{secrets.token_hex(4)}"
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    try:
        if created.returncode != 0:
            unavailable(f"cannot create a network namespace: {created.stderr.strip()}")
        ns = Netns(name)
        ns.load(SEED.read_text())
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
