"""Fixtures and helpers to drive the docker-fw CLI inside the sandbox engine's namespace."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import time

import pytest

ALLOWED = "198.51.100.2"  # the external client tests allow
OTHER = "198.51.100.3"  # an external client that is never allowed (unless a test says so)
PORT = 8080  # web's published port on the engine host

_COUNTERS = re.compile(r"\[\d+:\d+\]")


class Fw:
    """Runs ``docker-fw`` in the engine's network namespace with its own state dir
    (``python -m docker_fw`` unless another COMMAND is given, e.g. the installed script)."""

    def __init__(self, sandbox, state_dir: str, command: tuple[str, ...] = (sys.executable, "-m", "docker_fw")):
        self.sandbox = sandbox
        self.state_dir = state_dir
        self.command = command

    def run(self, *argv: str, env: dict | None = None, input: str | None = None):
        full_env = {"DOCKER_HOST": self.sandbox.docker_host, "DOCKER_FW_STATE_DIR": self.state_dir}
        full_env.update(env or {})
        return self.sandbox.engine_run(
            [*self.command, *argv], check=False, env=full_env, input=input
        )

    def ok(self, *argv: str, **kwargs):
        result = self.run(*argv, **kwargs)
        assert result.returncode == 0, f"docker-fw {' '.join(argv)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def ok_shell_line(self, line: str):
        words = shlex.split(line)
        assert words[0] == "docker-fw", line
        return self.ok(*words[1:])

    def rules_text(self) -> str:
        """The engine namespace's filter table, without comments and counters."""
        text = self.sandbox.engine_run(["iptables-save", "-t", "filter"]).stdout
        # split("\n"), not splitlines(): a bridge's name may hold U+2028
        lines = [_COUNTERS.sub("", l).rstrip() for l in text.split("\n") if l and not l.startswith("#")]
        return "\n".join(lines)

    def catch_all(self, bridge: str = "docker0") -> str:
        """Docker's rule that sends all traffic to BRIDGE through its DOCKER chain
        (so published ports are open to all), as iptables-save prints it: in
        FORWARD on 20.10, in DOCKER-BRIDGE on 28.x.  init removes it."""
        chain = "FORWARD" if self.sandbox.engine_major() < 28 else "DOCKER-BRIDGE"
        return f"-A {chain} -o {bridge} -j DOCKER"

    def gateway(self, container: str) -> str:
        """The gateway (the Docker host's address) on a running container's network."""
        out = self.sandbox.docker("inspect", "-f", "{{.NetworkSettings.Gateway}}", container).stdout
        return out.strip()

    def container_connects(self, name: str, ip: str, port: int) -> bool:
        """Whether container NAME can open a TCP connection to ip:port and read a reply."""
        result = self.sandbox.docker(
            "exec", name, "sh", "-c", f"nc -w 2 {ip} {port} </dev/null", check=False
        )
        return result.returncode == 0 and result.stdout.strip() != ""

    @contextlib.contextmanager
    def host_server(self, ip: str, port: int):
        """A TCP server in the engine namespace (the Docker host) answering 'host'."""
        code = (
            "import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(({ip!r}, {port})); s.listen(8)\n"
            "while True:\n"
            "    c, _ = s.accept(); c.sendall(b'host\\n'); c.close()\n"
        )
        with self._serving(self.sandbox.netns_path, self.sandbox.engine_run, code, [port]):
            yield

    @contextlib.contextmanager
    def ext_server(self, ports):
        """TCP servers in the external namespace on PORTS, on every one of its
        addresses (198.51.100.2, .3, .4), each answering 'ext'."""
        code = (
            "import socket, sys, threading\n"
            "def serve(port):\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.bind(('0.0.0.0', port)); s.listen(16)\n"
            "    while True:\n"
            "        c, _ = s.accept(); c.sendall(b'ext\\n'); c.close()\n"
            "for p in sys.argv[1:]:\n"
            "    threading.Thread(target=serve, args=(int(p),), daemon=True).start()\n"
            "threading.Event().wait()\n"
        )
        with self._serving(self.sandbox.ext_netns_path, self.sandbox.ext_run, code, ports):
            yield

    @staticmethod
    @contextlib.contextmanager
    def _serving(netns_path: str, run, code: str, ports):
        """Python CODE (given PORTS as arguments) in the namespace at NETNS_PATH,
        until every port listens (at most 10 s; RUN runs ss there), then until the block ends."""
        proc = subprocess.Popen(["nsenter", f"--net={netns_path}", sys.executable, "-c", code, *map(str, ports)])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                listening = run(["ss", "-Hltn"], check=False).stdout
                if all(f":{port} " in listening for port in ports):
                    break
                time.sleep(0.05)
            yield
        finally:
            proc.kill()
            proc.wait()

    def container_pings(self, name: str, ip: str) -> bool:
        """Whether container NAME gets an answer to one ICMP echo request to IP."""
        result = self.sandbox.docker("exec", name, "ping", "-c", "1", "-W", "2", ip, check=False)
        return result.returncode == 0

    @contextlib.contextmanager
    def input_policy_drop(self):
        self.sandbox.engine_run(["iptables", "-P", "INPUT", "DROP"])
        try:
            yield
        finally:
            self.sandbox.engine_run(["iptables", "-P", "INPUT", "ACCEPT"])


@pytest.fixture(scope="session")
def baseline_filter(sandbox) -> str:
    """The filter table as the engine made it, with no container running."""
    sandbox.reset()
    return sandbox.engine_run(["iptables-save", "-t", "filter"]).stdout


@pytest.fixture
def fw(sandbox, baseline_filter, tmp_path):
    """A fresh state store and the engine's own firewall layout for each test."""
    sandbox.reset()
    sandbox.engine_run(["iptables-restore"], input=baseline_filter)
    yield Fw(sandbox, str(tmp_path / "state"))
    sandbox.reset()
    sandbox.engine_run(["iptables-restore"], input=baseline_filter)


@pytest.fixture
def web(sandbox):
    """A web server container publishing port 80 on the host's port 8080."""
    sandbox.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    return "web"
