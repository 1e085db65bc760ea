"""lean.py: the C modules behind socket.py and hashlib (and hashlib where the SHA one is missing)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

# Run in a fresh interpreter: which modules lean.py took, a SHA-256 digest of
# an iptables rule, and one round trip over a unix socket lean.py made.
PROBE = """
import os, socket, sys, tempfile, threading
from docker_fw import lean
from docker_fw.backends.iptables.rules import IptablesRule
path = os.path.join(tempfile.mkdtemp(), "s")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
threading.Thread(target=lambda: server.accept()[0].sendall(b"pong"), daemon=True).start()
client = lean.unix_stream_socket()
client.connect(path)
rule = IptablesRule("web", "DOCKER-FW-FORWARD", ("-s", "198.51.100.2/32"), "DOCKER")
print(lean.sha256.__module__, type(client).__module__, rule.digest, client.recv(4).decode())
"""

EXPECTED_DIGEST = hashlib.sha256("\0".join(("DOCKER-FW-FORWARD", "-s", "198.51.100.2/32", "DOCKER")).encode()).hexdigest()[:12]


def probe(blocked: tuple[str, ...]) -> list[str]:
    code = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked) + PROBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_c_modules_give_hashlibs_digest_and_a_working_socket():
    sha_module, socket_module, digest, answer = probe(())
    assert sha_module in ("_sha2", "_sha256") and socket_module == "_socket"
    assert digest == EXPECTED_DIGEST and answer == "pong"
    assert "hashlib" not in sha_module


def test_without_the_sha_module_hashlib_gives_the_same_digest():
    """An interpreter without the C module (or with it renamed) falls back to hashlib."""
    sha_module, _socket_module, digest, answer = probe(("_sha2", "_sha256"))
    assert sha_module not in ("_sha2", "_sha256")  # hashlib's (OpenSSL's)
    assert digest == EXPECTED_DIGEST and answer == "pong"
