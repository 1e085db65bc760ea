"""engine.UnixSocketApi: the local engine without the docker SDK, against a fake engine socket.

The fake (engine_socket_fake.py) serves the Engine API calls docker-fw makes
over a real unix socket with the standard library's HTTP server.  The same
fake answers the docker SDK too, so the errors both transports raise can be
compared word for word.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from dfw_samples import summary
from docker_fw import engine as engine_module
from docker_fw.engine import Engine, EngineTransportError, UnixSocketApi
from docker_fw.errors import EngineError, PortInUseError
from engine_socket_fake import FakeEngineSocket
from test_engine_parse import NETWORKS  # the engine's network list, as 20.10 gives it

# Enough containers for an answer over 2,048 bytes, which the engine sends chunked.
CONTAINERS = [
    summary(f"c{i:03d}", {"bridge": {"IPAddress": f"172.17.0.{i + 2}", "Gateway": "172.17.0.1"}})
    for i in range(40)
]
CID = CONTAINERS[0]["Id"]
PORT_TAKEN = (
    f"driver failed programming external connectivity on endpoint c000 ({CID}): "
    "Bind for 0.0.0.0:8080 failed: port is already allocated"
)


@pytest.fixture
def fake(monkeypatch):
    """The fake engine on a socket that DOCKER_HOST names (a short path: sun_path is 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="dfw-sock-", dir="/tmp")
    sock = FakeEngineSocket(os.path.join(directory, "docker.sock"))
    sock.routes.update({
        ("GET", "/_ping"): (200, "OK"),
        ("GET", "/networks"): (200, NETWORKS),
        ("GET", "/containers/json?all=1"): (200, CONTAINERS),
        ("GET", f"/containers/{CID}/json"): (200, {"Id": CID, "HostConfig": {"Links": ["/db:/c000/db"]}}),
        ("GET", "/info"): (200, {"FirewallBackend": {"Driver": "iptables"}}),
        ("GET", "/version"): (200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12"}),
    })
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock.path}")
    with sock:
        yield sock
    shutil.rmtree(directory, ignore_errors=True)


def test_snapshot_asks_unversioned_paths_and_no_version_probe(fake):
    snapshot = Engine().snapshot()
    assert fake.paths() == [("GET", "/networks"), ("GET", "/containers/json?all=1")]
    assert len(snapshot.containers) == 40  # the chunked answer, decoded
    web = snapshot.get("c039")
    assert [(e.network, e.bridge, e.ip) for e in web.endpoints] == [("bridge", "docker0", "172.17.0.41")]
    assert snapshot.network("bridge").gateway == "172.17.0.1"


def test_the_other_calls(fake):
    engine = Engine()
    engine.ping()
    assert engine.inspect(CID)["HostConfig"]["Links"] == ["/db:/c000/db"]
    assert engine.firewall_backend() == "iptables"
    assert engine.accepts_start_with_hostconfig()
    assert fake.paths() == [("GET", "/_ping"), ("GET", f"/containers/{CID}/json"), ("GET", "/info"), ("GET", "/version")]


def test_start_and_pause_post_without_a_body(fake):
    fake.routes[("POST", f"/containers/{CID}/start")] = (204, None)
    fake.routes[("POST", f"/containers/{CID}/pause")] = (204, None)
    engine = Engine()
    engine.start(CID)
    engine.pause(CID)
    assert fake.requests == [("POST", f"/containers/{CID}/start", b""), ("POST", f"/containers/{CID}/pause", b"")]


def test_starting_a_running_container_is_no_error(fake):
    fake.routes[("POST", f"/containers/{CID}/start")] = (304, None)  # the engine's "already started"
    Engine().start(CID)


def test_pinned_start_posts_the_host_config_to_api_1_23(fake):
    fake.routes[("POST", f"/containers/{CID}/start")] = (204, None)
    bindings = {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]}
    Engine().start(CID, bindings)
    method, path, body = fake.requests[-1]
    assert (method, path) == ("POST", f"/v1.23/containers/{CID}/start")
    assert json.loads(body) == {"Links": ["/db:/c000/db"], "PortBindings": bindings}


def test_a_reference_is_one_path_segment(fake):
    with pytest.raises(EngineError):
        Engine().inspect("../../info?x=y z")
    assert fake.paths()[-1] == ("GET", "/containers/..%2F..%2Finfo%3Fx%3Dy%20z/json")


def _failure(make_engine, call) -> EngineError:
    with pytest.raises(EngineError) as caught:
        call(make_engine())
    return caught.value


@pytest.mark.parametrize(
    "route, status, message, call, expected",
    [
        (("GET", "/containers/nosuch/json"), 404, "No such container: nosuch",
         lambda e: e.inspect("nosuch"), EngineError),
        (("POST", f"/containers/{CID}/start"), 500, PORT_TAKEN, lambda e: e.start(CID), PortInUseError),
        (("POST", f"/containers/{CID}/start"), 500, "OCI runtime create failed: no space left",
         lambda e: e.start(CID), EngineError),
        (("POST", f"/containers/{CID}/pause"), 409, f"Container {CID} is not running",
         lambda e: e.pause(CID), EngineError),
    ],
    ids=["not-found", "port-in-use", "server-error", "conflict"],
)
def test_errors_are_worded_as_through_the_sdk(fake, route, status, message, call, expected):
    docker = pytest.importorskip("docker")
    fake.routes[route] = (status, {"message": message})
    lean = _failure(Engine, call)
    sdk = _failure(lambda: Engine(client=docker.DockerClient(base_url=f"unix://{fake.path}", version="1.41", timeout=5)), call)
    assert type(lean) is type(sdk) is expected
    # The SDK's URLs carry the API version it asked for; the unversioned ones do not.
    assert str(lean) == str(sdk).replace("/v1.41/", "/")
    assert message.split(": ")[-1] in str(lean)


def test_an_engine_that_is_not_there(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    with pytest.raises(EngineError, match=r"^cannot reach the Docker engine \(list networks\): .*missing.sock: No such file or directory$"):
        Engine().snapshot()


def test_an_engine_that_never_answers_times_out(fake):
    fake.mode = "silent"
    with pytest.raises(EngineTransportError, match=r"no answer within 0.2 s"):
        UnixSocketApi(fake.path, timeout=0.2).request("GET", "/_ping")


def test_the_deadline_holds_for_an_answer_that_trickles(fake):
    # A byte every 50 ms: no single read waits 0.3 s, the whole answer would take 5 s.
    fake.mode = "trickle"
    with pytest.raises(EngineTransportError, match=r"no answer within 0.3 s"):
        UnixSocketApi(fake.path, timeout=0.3).request("GET", "/_ping")


def test_an_answer_too_large_is_refused(fake, monkeypatch):
    monkeypatch.setattr(engine_module, "MAX_ANSWER_BYTES", 4096)
    with pytest.raises(EngineError, match=r"cannot reach the Docker engine \(list containers\): .*larger than 4096 bytes"):
        Engine().snapshot()


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"", "the engine closed the connection"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n[]", "answer cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunked encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[]", "answer cut short"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[{", "cannot be decoded"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
    ],
    ids=["closed", "not-http", "short-length", "bad-chunk-size", "short-chunk", "bad-json", "bad-header"],
)
def test_garbage_is_an_unreachable_engine(fake, raw, needle):
    fake.mode, fake.raw = "raw", raw
    with pytest.raises(EngineError, match=r"^cannot reach the Docker engine \(ping\): ") as caught:
        Engine().ping()
    assert needle in str(caught.value)


def test_chunk_extensions_and_trailers_are_read(fake):
    fake.mode = "raw"
    fake.raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;name=value\r\n[1,\r\n2\r\n2]\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    assert UnixSocketApi(fake.path).request("GET", "/networks") == [1, 2]


@pytest.mark.parametrize(
    "host, path",
    [
        (None, "/var/run/docker.sock"),
        ("", "/var/run/docker.sock"),
        ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
        ("unix://relative/docker.sock", None),  # left to the SDK, as every other form
        ("tcp://127.0.0.1:2376", None),
        ("ssh://admin@engine", None),
        ("npipe:////./pipe/docker_engine", None),
    ],
)
def test_which_engines_are_local(host, path):
    environ = {} if host is None else {"DOCKER_HOST": host}
    api = UnixSocketApi.from_env(environ)
    assert (api.path if api else None) == path


# --- what each action imports --------------------------------------------------------

# Slow to load (the docker SDK, http.client's ssl and email packages, socket.py's
# enums, hashlib's OpenSSL) or not needed by every action (engine.py).
HEAVY = ("docker", "requests", "urllib3", "http.client", "socket", "hashlib", "docker_fw.engine")


def _modules_after(code: str, env: dict) -> set[str]:
    """The modules among HEAVY that a fresh interpreter has loaded after CODE."""
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.splitlines()[-1].split()[1:])


def test_help_loads_no_engine_code_and_ls_no_sdk(tmp_path):
    env = {**os.environ, "DOCKER_FW_STATE_DIR": str(tmp_path / "state"), "DOCKER_HOST": "unix:///nonexistent.sock"}
    assert _modules_after("from docker_fw import cli\ntry: cli.run(['--help'])\nexcept SystemExit: pass", env) == set()
    # 'ls' asks the engine for the rules of containers' labels (an engine that
    # is away: a warning, and the recorded rules alone), over the socket only.
    assert _modules_after("from docker_fw import cli\nassert cli.run(['ls']) == 0", env) == {"docker_fw.engine"}


def test_a_local_engine_is_asked_without_the_sdk(fake):
    # What add, replay and check load (they run iptables too, which this test may not).
    code = (
        "from docker_fw import actions, cli, store\nfrom docker_fw.backends.iptables import backend\n"
        "from docker_fw.engine import Engine\n"
        "assert len(Engine().snapshot().containers) == 40"
    )
    assert _modules_after(code, dict(os.environ)) == {"docker_fw.engine"}
