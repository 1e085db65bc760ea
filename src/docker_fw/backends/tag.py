"""The tag every backend writes in its rules' comments: ``docker-fw:<owner>:<hash>``.

It is how docker-fw finds its own rules again in what a firewall prints
(iptables-save, nft's JSON), whatever spelling the firewall gives the rest.
"""

from __future__ import annotations

from ..lean import sha256  # noqa: F401 (re-exported: hashlib's SHA-256 without loading OpenSSL)

COMMENT_PREFIX = "docker-fw:"


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(owner, digest) from one of our comments, else None."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    owner, sep, digest = comment[len(COMMENT_PREFIX):].rpartition(":")
    if not sep or not owner:
        return None
    return owner, digest
