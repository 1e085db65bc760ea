"""The docker SDK client's deadline (DOCKER_FW_ENGINE_TIMEOUT), against a fake engine socket.

FakeEngineSocket stands in for the Docker API on a unix socket, as far as the
docker SDK uses it here: ``GET /version`` answers at once (the SDK asks it
for the API version), ``GET /events`` sends its headers and then one event
after EVENT_DELAY seconds, and every other request is never answered (a hung
engine).
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from docker_fw.engine import DEFAULT_ENGINE_TIMEOUT, ENGINE_TIMEOUT_ENV, Engine
from docker_fw.errors import EngineError

DEADLINE = 0.3
EVENT_DELAY = 3 * DEADLINE
EVENT = {"Type": "container", "Action": "start", "Actor": {"ID": "a" * 64, "Attributes": {}}}


class FakeEngineSocket:
    def __init__(self, path: str):
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = conn.recv(65536).split(b"\r\n", 1)[0]
            if b" /version" in request:
                body = json.dumps({"ApiVersion": "1.41", "Version": "20.10.24"}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            elif b"/events" in request:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                if not self.stop.wait(EVENT_DELAY):
                    body = json.dumps(EVENT).encode() + b"\n"
                    conn.sendall(b"%x\r\n%s\r\n" % (len(body), body))
            self.stop.wait(60)  # hung: answers nothing more

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.fixture
def hung_engine(tmp_path, monkeypatch):
    path = str(tmp_path / "docker.sock")
    fake = FakeEngineSocket(path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setenv(ENGINE_TIMEOUT_ENV, str(DEADLINE))
    yield fake
    fake.close()


def test_a_hung_engine_request_is_an_engine_error(hung_engine):
    engine = Engine()
    assert engine.api.timeout == DEADLINE  # from DOCKER_FW_ENGINE_TIMEOUT
    with pytest.raises(EngineError) as exc:
        engine.snapshot()
    assert str(exc.value).startswith("cannot reach the Docker engine (list networks): ")
    assert "timed out" in str(exc.value)
    assert exc.value.exit_code == 3


def test_the_event_stream_has_no_deadline(hung_engine):
    """'watch' waits on the event stream for as long as the engine is quiet."""
    engine = Engine()
    stream = engine.api.events(decode=True)
    try:
        assert next(stream) == EVENT  # came EVENT_DELAY seconds after the request: past the deadline
    finally:
        stream.close()


def test_the_default_deadline(monkeypatch, tmp_path):
    monkeypatch.delenv(ENGINE_TIMEOUT_ENV, raising=False)
    path = str(tmp_path / "docker.sock")
    fake = FakeEngineSocket(path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        assert Engine().api.timeout == DEFAULT_ENGINE_TIMEOUT == 60
    finally:
        fake.close()
