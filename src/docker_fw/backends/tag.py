"""The tag every backend writes in its rules' comments: ``docker-fw:<owner>:<hash>``.

It is how docker-fw finds its own rules again in what a firewall prints
(iptables-save, nft's JSON), whatever spelling the firewall gives the rest.
"""

from __future__ import annotations

# hashlib loads OpenSSL (libcrypto, with its providers) to offer every digest:
# about 5 ms of each run here.  CPython's own SHA-256 gives the same digest.
try:
    from _sha2 import sha256  # CPython 3.12 and newer
except ImportError:
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        from hashlib import sha256

COMMENT_PREFIX = "docker-fw:"


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(owner, digest) from one of our comments, else None."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    owner, sep, digest = comment[len(COMMENT_PREFIX):].rpartition(":")
    if not sep or not owner:
        return None
    return owner, digest
