"""A stand-in for the Docker Engine API on a unix socket, for engine.UnixSocketApi's tests.

``FakeEngineSocket`` serves the calls docker-fw makes of the Engine API as a
20.10 engine answers them (API 1.41): ``GET /_ping``, ``/networks``,
``/containers/json``, ``/containers/ID/json``, ``/info``, ``/version`` and
``POST /containers/ID/start``, ``/containers/ID/pause``,
``/v1.23/containers/ID/start`` (with a HostConfig body).  Paths may carry a
``/vX.Y`` prefix (the SDK's) or none (UnixSocketApi's); every request is
logged.  It is the standard library's http.server, an HTTP implementation of
its own, answering as Docker's Go server does: HTTP/1.1, JSON, answers over
2,048 bytes chunked, errors as a status and ``{"message": ...}``.

Routes map (method, unversioned path) to (status, JSON value); ``raw`` answers
with bytes written as they are, then closes; ``silent`` never answers;
``trickle`` sends a header line and then a byte every 50 ms.
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
import threading
import time

GO_CHUNKING_THRESHOLD = 2048  # net/http buffers this much before it switches to chunked
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


class FakeEngineSocket:
    def __init__(self, path: str):
        self.path = path
        self.routes: dict[tuple[str, str], tuple[int, object]] = {}
        self.requests: list[tuple[str, str, bytes]] = []  # method, path as sent, body
        self.mode = "answer"  # or "raw", "silent", "trickle"
        self.raw = b""
        self.stop = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._serve()

            def do_POST(self):
                self._serve()

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, body))
                if fake.mode == "raw":
                    self.wfile.write(fake.raw)
                    self.close_connection = True
                    return
                if fake.mode == "silent":
                    fake.stop.wait(10)
                    self.close_connection = True
                    return
                if fake.mode == "trickle":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    deadline = time.monotonic() + 5
                    while not fake.stop.is_set() and time.monotonic() < deadline:
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                unversioned = _VERSION_PREFIX.sub("", self.path)
                status, value = fake.routes.get(
                    (self.command, unversioned), (404, {"message": f"page not found: {unversioned}"})
                )
                self._answer(status, value)

            def _answer(self, status: int, value: object) -> None:
                self.send_response(status)
                if status in (204, 304):
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(value, str):  # /_ping
                    data, kind = value.encode(), "text/plain; charset=utf-8"
                else:
                    data, kind = json.dumps(value).encode(), "application/json"
                self.send_header("Content-Type", kind)
                if len(data) <= GO_CHUNKING_THRESHOLD:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 1000):
                    piece = data[i : i + 1000]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that hung up on purpose (the timeout tests)

        self.server = Server(path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeEngineSocket:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def paths(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.requests]
