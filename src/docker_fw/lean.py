"""Standard-library services without the start-up cost of their public modules.

Every single action pays for what it imports, and two public modules cost
far more than docker-fw uses of them (valgrind, CPython 3.11, this project's
VM): ``socket`` turns its constants into enums as it loads (about 32 million
instructions, some 8 ms), and ``hashlib`` loads OpenSSL's libcrypto with its
providers to offer every digest (about 11 million, 3-5 ms).  docker-fw needs
one unix stream socket and SHA-256.  Both come from the C modules the public
ones are built on, which give the same objects and digests: ``_socket``
(socket.py is ``from _socket import *`` plus the enums: wherever socket
works, _socket is there) and ``_sha2`` (``_sha256`` before 3.12); where an
interpreter has no such SHA module (a build without it, a renamed one),
hashlib's is used instead (tests/unit/test_lean.py runs both).
"""

from __future__ import annotations

from _socket import AF_UNIX, SOCK_STREAM, socket as _socket_type

try:
    from _sha2 import sha256  # CPython 3.12 and newer
except ImportError:
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        from hashlib import sha256

Socket = _socket_type  # for annotations

# What urllib.parse.quote leaves as it is (RFC 3986's unreserved characters).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def percent_encoded(text: str, safe: str = "") -> str:
    """TEXT with every byte of its UTF-8 outside the unreserved characters and
    SAFE percent-encoded, as urllib.parse.quote(text, safe) gives: importing
    urllib.parse costs more than a whole 'docker-fw ls' spends on its work."""
    keep = _UNRESERVED.union(safe)
    return "".join(c if c in keep else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def unix_stream_socket() -> Socket:
    """A new AF_UNIX stream socket (what socket.socket(AF_UNIX, SOCK_STREAM) gives)."""
    return _socket_type(AF_UNIX, SOCK_STREAM)


__all__ = ["Socket", "percent_encoded", "sha256", "unix_stream_socket"]
