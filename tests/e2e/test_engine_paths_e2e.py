"""End to end: both of engine.py's ways to the engine do the same.

A local engine (DOCKER_HOST unix://, as in every other end-to-end test) is
asked through engine.UnixSocketApi; any other through the docker SDK.  Here
the sandbox engine's socket is also offered on TCP inside the engine's
namespace (127.0.0.1, through a small forwarder), and docker-fw run with
DOCKER_HOST=tcp://... must do what it does through unix://: the same rules,
the same packets, the same words, and each path must find the other's work
in place.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

TCP_PORT = 2375

# Runs in the engine namespace: relays each TCP connection to the engine's unix socket.
_FORWARDER = r"""
import socket, sys, threading
unix_path, port = sys.argv[1], int(sys.argv[2])

def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

listener = socket.create_server(("127.0.0.1", port))
while True:
    client, _ = listener.accept()
    engine = socket.socket(socket.AF_UNIX)
    engine.connect(unix_path)
    for a, b in ((client, engine), (engine, client)):
        threading.Thread(target=pump, args=(a, b), daemon=True).start()
"""


@pytest.fixture
def tcp_engine(sandbox):
    """DOCKER_HOST for the sandbox engine over TCP (the docker SDK's path)."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={sandbox.netns_path}", sys.executable, "-c", _FORWARDER,
         sandbox.socket_path, str(TCP_PORT)],
    )
    try:
        deadline = time.monotonic() + 10
        while str(TCP_PORT) not in sandbox.engine_run(["ss", "-Hltn", f"sport = :{TCP_PORT}"]).stdout:
            assert time.monotonic() < deadline and proc.poll() is None, "the TCP forwarder did not start"
            time.sleep(0.05)
        yield {"DOCKER_HOST": f"tcp://127.0.0.1:{TCP_PORT}"}
    finally:
        proc.kill()
        proc.wait()


def test_tcp_through_the_sdk_does_what_the_unix_socket_does(sandbox, fw, web, tcp_engine):
    fw.ok("init", env=tcp_engine)
    added = fw.ok("add", "web", f"--source={ALLOWED}", "--dport", "80", env=tcp_engine)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    rules = fw.rules_text()

    # Each path finds the other's work in place, and says so in the same words.
    for env in (None, tcp_engine):
        assert fw.ok("check", env=env).stdout == "check: no drift\n"
        assert fw.ok("replay", "--dry-run", env=env).stdout == "replay: nothing to change\n"
        assert fw.ok("add", "web", f"--source={ALLOWED}", "--dport", "80", env=env).stdout == (
            added.stdout.replace("recorded:", "already recorded:")
        )
    assert fw.rules_text() == rules

    # The engine's answers to an unknown container, worded alike.
    unix, tcp = (fw.run("add", "nosuch", "--source", OTHER, env=env) for env in (None, tcp_engine))
    assert (unix.returncode, unix.stderr) == (tcp.returncode, tcp.stderr) == (3, "docker-fw add: no such container: nosuch\n")
