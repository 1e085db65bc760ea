"""A throwaway Docker engine in a network namespace of its own, plus an "external" client.

Layout (nothing is added to the root namespace's interfaces, routes or firewall)::

    netns <name>-eng                                   netns <name>-ext
    dockerd, containerd, docker0 172.17.0.0/16
    eth0 198.51.100.1/24  <------ veth pair ------>  uplink0 198.51.100.2/24 (+ .3, .4)
    (no default route)                                default via 198.51.100.1

dockerd runs in the engine namespace (``nsenter --net``: ``ip netns exec`` would remount
/sys and dockerd would fail with "Devices cgroup isn't mounted") but in the caller's mount
namespace, so its overlay/shm/nsfs mounts appear under the sandbox's base dir and are
unmounted by :meth:`Sandbox.stop`.  ip_forward is left alone before dockerd starts, so
dockerd turns it on itself and sets the FORWARD policy to DROP, as on a fresh host (except
with Docker 29's ``--firewall-backend=nftables``, which does not: the sandbox turns it on).

Use as a context manager or with start()/stop()::

    with Sandbox(name="dfw-demo") as sb:
        sb.run_server("web", ports=(80,), publish=("8080:80",))
        assert sb.ext_connect(sb.host_ip, 8080, "198.51.100.3")

or from a shell: ``python -m tests.harness.sandbox up|down|status [--name NAME] [--icc] [--engine 28|29]
[--daemon-arg=--firewall-backend=nftables ...]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

try:  # both as tests.harness.sandbox and as a script
    from tests.harness.image import IMAGE, busybox_path, import_image
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.harness.image import IMAGE, import_image

NETNS_DIR = "/var/run/netns"
MARKER = ".dfw-sandbox"  # base dirs without it are never deleted
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_MNT_DETACH = 2

# Runs inside the external namespace: connect from SRC (or any), send a GET, read.
_CONNECT_SCRIPT = r"""
import socket, sys, time
dst, port, src, timeout, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
deadline = time.monotonic() + timeout
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
if src:
    try:
        s.bind((src, 0))
    except OSError as e:
        sys.stderr.write(f"bind {src}: {e}\n")
        sys.exit(2)
data = b""
try:
    s.settimeout(timeout)
    s.connect((dst, port))
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: sandbox\r\n\r\n")
    except OSError:
        pass
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if mode == "connect":
            break
except OSError:
    pass
sys.stdout.write("1" if data else "0")
sys.stdout.write(data.decode("utf-8", "replace"))
"""


# Runs inside the engine namespace (/proc/sys/net is the opener's namespace's).
_FORWARDING_ON_SCRIPT = r"""
for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
    with open(path, "w") as f:
        f.write("1\n")
"""


class SandboxError(RuntimeError):
    pass


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message shows the command's output."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, out in (("stdout", self.stdout), ("stderr", self.stderr)):
            if out:
                if isinstance(out, bytes):
                    out = out.decode(errors="replace")
                text += f"\n--- {label} ---\n{out[-4000:]}"
        return text


def _env(extra: dict | None = None) -> dict:
    env = os.environ.copy()
    path = env.get("PATH", "")
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if d not in path.split(":"):
            path = f"{path}:{d}" if path else d
    env["PATH"] = path
    if extra:
        env.update(extra)
    return env


def run(argv, check: bool = True, input=None, env: dict | None = None, timeout: float | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    """subprocess.run without a shell, output captured; CommandError on failure when check."""
    result = subprocess.run(
        list(argv), input=input, capture_output=True, text=text, env=_env(env), timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise CommandError(result.returncode, list(argv), result.stdout, result.stderr)
    return result


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_under(base: str) -> list[str]:
    """Mount points at or below base, most recently mounted first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape_mount(line.split()[4])
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(point)
    return list(reversed(found))


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class Sandbox:
    host_ip = "198.51.100.1"
    ext_ips = ("198.51.100.2", "198.51.100.3", "198.51.100.4")
    prefix_len = 24
    # With ext_ipv6=True only: the same link over IPv6 (documentation prefix).
    host_ip6 = "2001:db8:ffff::1"
    ext_ips6 = ("2001:db8:ffff::2", "2001:db8:ffff::3")
    prefix_len6 = 64
    engine_if = "eth0"  # the engine host's "uplink", towards the external namespace
    ext_if = "uplink0"  # the external namespace's side of the veth pair
    image = IMAGE

    def __init__(self, name: str = "dfw", base_dir: str | None = None, icc: bool = False,
                 extra_daemon_args: list[str] = (), dockerd: str | None = None,
                 extra_path: list[str] = (), ext_ipv6: bool = False, docker_cli: str | None = None):
        """dockerd: another engine's dockerd binary (default: the system's, found on PATH);
        extra_path: directories put first on dockerd's PATH (e.g. that engine's
        docker-proxy), see tests/harness/engines.py; ext_ipv6: also give the link to the
        external namespace IPv6 addresses (host_ip6, ext_ips6) and a default IPv6 route;
        docker_cli: the client to drive it with (default: the docker found on PATH).

        extra_daemon_args holding ``--firewall-backend=nftables`` (Docker 29) also turn on
        IPv4 and IPv6 forwarding in the engine namespace before dockerd starts: Docker
        does not in that mode."""
        if not _NAME_RE.match(name):
            raise ValueError(f"sandbox name {name!r}: use [a-z0-9-], at most 31 characters")
        self.name = name
        self.icc = icc
        self.ext_ipv6 = ext_ipv6
        self.extra_daemon_args = list(extra_daemon_args)
        self.engine_netns = f"{name}-eng"
        self.ext_netns = f"{name}-ext"
        self.netns_path = f"{NETNS_DIR}/{self.engine_netns}"
        self.ext_netns_path = f"{NETNS_DIR}/{self.ext_netns}"
        self.base_dir = os.path.abspath(base_dir or f"/tmp/{name}-sandbox")
        self.data_root = os.path.join(self.base_dir, "data")
        self.exec_root = os.path.join(self.base_dir, "exec")
        self.pidfile = os.path.join(self.base_dir, "dockerd.pid")
        self.socket_path = os.path.join(self.base_dir, "docker.sock")
        self.log_path = os.path.join(self.base_dir, "dockerd.log")
        self.config_file = os.path.join(self.base_dir, "daemon.json")
        self.docker_host = f"unix://{self.socket_path}"
        if len(self.socket_path) >= 100:
            raise ValueError(f"socket path too long for a unix socket: {self.socket_path}")
        self.extra_path = [os.path.abspath(d) for d in extra_path]
        self.dockerd = dockerd or shutil.which("dockerd", path=_env()["PATH"]) or "/usr/sbin/dockerd"
        self.docker_cli = docker_cli or shutil.which("docker", path=_env()["PATH"]) or "docker"
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._client = None
        self._engine_major: int | None = None

    @property
    def firewall_backend(self) -> str:
        """The firewall backend dockerd is told to use: "iptables" (every engine's
        default) or "nftables" (``--firewall-backend=nftables``, Docker 29)."""
        backend = "iptables"
        args = self.extra_daemon_args
        for i, arg in enumerate(args):
            if arg.startswith("--firewall-backend="):
                backend = arg.split("=", 1)[1]
            elif arg == "--firewall-backend" and i + 1 < len(args):
                backend = args[i + 1]
        return backend

    def engine_major(self) -> int:
        """The running engine's major version (20 for 20.10, 28 for 28.5.2)."""
        if self._engine_major is None:
            self._engine_major = int(self.client().version()["Version"].split(".")[0])
        return self._engine_major

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "Sandbox":
        """Set everything up from scratch (leftovers of the same name are removed first)."""
        t0 = time.monotonic()
        self.stop()
        try:
            os.makedirs(self.base_dir, mode=0o711)
            open(os.path.join(self.base_dir, MARKER), "w").close()
            with open(self.config_file, "w") as f:
                json.dump({}, f)  # never pick up the host's /etc/docker/daemon.json
            self._setup_network()
            self._start_dockerd()
            import_image([self.docker_cli, "-H", self.docker_host], self.image, env=self._docker_env())
        except BaseException:
            try:
                self.stop()
            except Exception as e:  # pragma: no cover - report the first error
                print(f"sandbox {self.name}: cleanup after failed start: {e}", file=sys.stderr)
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Remove everything start() made; safe to call at any time, any number of times."""
        errors: list[str] = []
        if self.running():
            try:
                self.reset(timeout=30)
            except Exception as e:
                errors.append(f"removing containers: {e}")
        self._close_client()
        try:
            self._stop_dockerd()
        except Exception as e:
            errors.append(f"stopping dockerd: {e}")
        self._kill_leftovers()
        try:
            self._unmount_all()
        except Exception as e:
            errors.append(f"unmounting: {e}")
        for ns in (self.engine_netns, self.ext_netns):
            if os.path.exists(f"{NETNS_DIR}/{ns}"):
                result = run(["ip", "netns", "delete", ns], check=False)
                if result.returncode != 0:
                    errors.append(f"ip netns delete {ns}: {result.stderr.strip()}")
        if os.path.isdir(self.base_dir):
            if os.path.exists(os.path.join(self.base_dir, MARKER)) or not os.listdir(self.base_dir):
                if _mounts_under(self.base_dir):
                    errors.append(f"still mounted under {self.base_dir}: {_mounts_under(self.base_dir)}")
                else:
                    shutil.rmtree(self.base_dir, ignore_errors=True)
            else:
                errors.append(f"{self.base_dir} exists but is not a sandbox dir (no {MARKER}): left alone")
        if errors:
            raise SandboxError(f"sandbox {self.name}: " + "; ".join(errors))

    def restart_engine(self, stop_timeout: int | None = 1) -> None:
        """Stop dockerd (its containers stop) and start it again on the same data-root.
        Containers stay stopped after the restart (restart policy "no")."""
        self.stop_engine(stop_timeout)
        self.start_engine()

    def stop_engine(self, stop_timeout: int | None = 1) -> None:
        """Stop dockerd, leaving the namespaces and the data-root: the engine is away
        until start_engine().

        Running containers are first stopped through the API, in parallel, with
        stop_timeout seconds of grace (dockerd's own shutdown gives each one 10 s, which
        a ``sleep`` as PID 1 always uses up); None leaves them to dockerd's shutdown.
        """
        if stop_timeout is not None and self.running():
            api = self.client().api
            ids = [c["Id"] for c in api.containers()]
            if ids:
                with concurrent.futures.ThreadPoolExecutor(min(16, len(ids))) as pool:
                    list(pool.map(lambda cid: api.stop(cid, timeout=stop_timeout), ids))
        self._close_client()
        self._stop_dockerd()
        self._kill_leftovers(netns=False)

    def start_engine(self) -> None:
        """Start dockerd again after stop_engine(), on the same data-root."""
        self._start_dockerd()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ network

    def _setup_network(self) -> None:
        eng, ext = self.engine_netns, self.ext_netns
        run(["ip", "netns", "add", eng])
        run(["ip", "netns", "add", ext])
        run(["ip", "link", "add", self.engine_if, "netns", eng, "type", "veth",
             "peer", "name", self.ext_if, "netns", ext])
        batch_eng = [
            "link set lo up",
            f"addr add {self.host_ip}/{self.prefix_len} dev {self.engine_if}",
            f"link set {self.engine_if} up",
        ]
        batch_ext = ["link set lo up"]
        batch_ext += [f"addr add {ip}/{self.prefix_len} dev {self.ext_if}" for ip in self.ext_ips]
        batch_ext += [f"link set {self.ext_if} up", f"route add default via {self.host_ip}"]
        if self.ext_ipv6:
            # nodad: usable at once, not after duplicate address detection.
            batch_eng.append(f"addr add {self.host_ip6}/{self.prefix_len6} dev {self.engine_if} nodad")
            batch_ext += [f"addr add {ip}/{self.prefix_len6} dev {self.ext_if} nodad" for ip in self.ext_ips6]
            batch_ext.append(f"route add ::/0 via {self.host_ip6}")
        run(["ip", "-n", eng, "-batch", "-"], input="\n".join(batch_eng) + "\n")
        run(["ip", "-n", ext, "-batch", "-"], input="\n".join(batch_ext) + "\n")
        if self.firewall_backend == "nftables":
            # Docker's nftables backend does not turn forwarding on (its iptables one
            # does, and sets FORWARD's policy to DROP): a host that runs it must.
            self.engine_run([sys.executable, "-S", "-c", _FORWARDING_ON_SCRIPT])

    # ------------------------------------------------------------------- dockerd

    def daemon_argv(self) -> list[str]:
        return [
            self.dockerd,
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "-H", self.docker_host,
            "--config-file", self.config_file,
            f"--icc={'true' if self.icc else 'false'}",
            "--iptables=true",
            "--ip-forward=true",
            "--userland-proxy=true",
            *self.extra_daemon_args,
        ]

    def _start_dockerd(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting dockerd ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                ["nsenter", f"--net={self.netns_path}", *self.daemon_argv()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._daemon_env(), start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._proc.poll() is not None:
                raise SandboxError(
                    f"dockerd exited with {self._proc.returncode} before its API answered;"
                    f" log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise SandboxError(f"dockerd's API did not answer within {timeout:.0f} s; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def _daemon_env(self) -> dict:
        env = _env()
        if self.extra_path:
            env["PATH"] = os.pathsep.join([*self.extra_path, env["PATH"]])
        return env

    def ping(self) -> bool:
        """Whether dockerd's API answers on the sandbox socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.socket_path)
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = s.recv(1024)
            return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]
        except OSError:
            return False

    def running(self) -> bool:
        return self._dockerd_pid() is not None and self.ping()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no dockerd log)"

    def _dockerd_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        argv = _cmdline(pid)
        if _pid_alive(pid) and argv and os.path.basename(argv[0]) == "dockerd" and self.base_dir in " ".join(argv):
            return pid
        return None

    def _stop_dockerd(self, timeout: float = 20.0) -> None:
        pid = self._dockerd_pid()
        if pid is None:
            self._proc = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 5)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pidfile)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _netns_ids(self) -> set[tuple[int, int]]:
        ids = set()
        for path in (self.netns_path, self.ext_netns_path):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                ids.add((st.st_dev, st.st_ino))
        return ids

    def _container_ids(self) -> set[str]:
        with contextlib.suppress(OSError):
            return set(os.listdir(os.path.join(self.data_root, "containers")))
        return set()

    def leftover_pids(self, netns: bool = True) -> list[int]:
        """Processes that belong to this sandbox: anything naming the base dir (containerd,
        shims), anything in its namespaces (docker-proxy, helpers), its containers' processes."""
        me = {os.getpid(), os.getppid(), 1}
        ns_ids = self._netns_ids() if netns else set()
        cids = self._container_ids()
        base = self.base_dir.rstrip("/")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in me:
                continue
            pid = int(entry)
            argv = " ".join(_cmdline(pid))
            if base + "/" in argv or argv.endswith(base):
                found.append(pid)
                continue
            if ns_ids:
                with contextlib.suppress(OSError):
                    st = os.stat(f"/proc/{pid}/ns/net")
                    if (st.st_dev, st.st_ino) in ns_ids:
                        found.append(pid)
                        continue
            if cids:
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/cgroup") as f:
                        cg = f.read()
                    if any(cid in cg for cid in cids):
                        found.append(pid)
        return [p for p in found if _pid_alive(p)]

    def _kill_leftovers(self, netns: bool = True) -> None:
        for _ in range(3):
            pids = self.leftover_pids(netns=netns)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _unmount_all(self) -> None:
        libc = _libc()
        for _ in range(5):
            points = _mounts_under(self.base_dir)
            if not points:
                return
            for point in points:
                if libc.umount2(point.encode(), _MNT_DETACH) != 0:
                    err = ctypes.get_errno()
                    if err not in (22, 2):  # EINVAL: not a mount point (any more); ENOENT
                        raise OSError(err, f"umount {point}: {os.strerror(err)}")
        if _mounts_under(self.base_dir):
            raise SandboxError(f"could not unmount {_mounts_under(self.base_dir)}")

    # ------------------------------------------------------------------- clients

    def _docker_env(self) -> dict:
        env = _env({"DOCKER_HOST": self.docker_host})
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        return env

    def client(self):
        """A docker SDK client for the sandbox engine (cached; API version negotiated)."""
        if self._client is None:
            import docker

            self._client = docker.DockerClient(base_url=self.docker_host, version="auto", timeout=60)
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def docker(self, *args, check: bool = True, input: str | None = None,
               timeout: float | None = 120) -> subprocess.CompletedProcess:
        """``docker -H <sandbox> ARGS`` (no shell), text output."""
        argv = [self.docker_cli, "-H", self.docker_host, *map(str, args)]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=self._docker_env(),
                                timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def engine_run(self, argv, check: bool = True, input: str | None = None, env: dict | None = None,
                   timeout: float | None = 300) -> subprocess.CompletedProcess:
        """Run argv in the engine's network namespace (the "Docker host"); env merges over os.environ."""
        return run(["nsenter", f"--net={self.netns_path}", *map(str, argv)],
                   check=check, input=input, env=env, timeout=timeout)

    def ext_run(self, argv, check: bool = True, input: str | None = None, env: dict | None = None,
                timeout: float | None = 300) -> subprocess.CompletedProcess:
        """Run argv in the external client's network namespace."""
        return run(["nsenter", f"--net={self.ext_netns_path}", *map(str, argv)],
                   check=check, input=input, env=env, timeout=timeout)

    def _ext_tcp(self, dst_ip: str, port: int, src_ip: str | None, timeout: float, mode: str) -> str | None:
        result = self.ext_run(
            [sys.executable, "-S", "-c", _CONNECT_SCRIPT, dst_ip, str(int(port)), src_ip or "",
             str(float(timeout)), mode],
            check=False, timeout=timeout + 30,
        )
        if result.returncode != 0 or not result.stdout:
            raise SandboxError(f"ext connect helper failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout[1:] if result.stdout[0] == "1" else None

    def ext_connect(self, dst_ip: str, port: int, src_ip: str | None = None, timeout: float = 2.0) -> bool:
        """From the external namespace, bound to src_ip: True when a TCP connection to
        dst_ip:port succeeded and at least one byte came back within timeout."""
        return self._ext_tcp(dst_ip, port, src_ip, timeout, "connect") is not None

    def ext_fetch(self, dst_ip: str, port: int, src_ip: str | None = None, timeout: float = 2.0) -> str | None:
        """Like ext_connect, but returns what the server sent (until it closed or the
        timeout), or None when nothing came back. run_server's servers send their name."""
        return self._ext_tcp(dst_ip, port, src_ip, timeout, "fetch")

    # --------------------------------------------------------------- containers

    def reset(self, timeout: float = 60) -> None:
        """Remove all containers (with their anonymous volumes) and user-defined networks."""
        api = self.client().api
        ids = [c["Id"] for c in api.containers(all=True)]
        if ids:
            with concurrent.futures.ThreadPoolExecutor(min(16, len(ids))) as pool:
                futures = [pool.submit(api.remove_container, cid, force=True, v=True) for cid in ids]
                for fut in concurrent.futures.as_completed(futures, timeout=timeout):
                    try:
                        fut.result()
                    except Exception as e:  # already gone, or removal in progress
                        if "No such container" not in str(e) and "already in progress" not in str(e):
                            raise
        for net in api.networks():
            if net["Name"] not in ("bridge", "host", "none"):
                api.remove_network(net["Id"])

    def server_command(self, name: str, ports=()) -> list[str]:
        """The container command run_server uses: a TCP server on each port answering every
        connection with NAME and a newline, then closing; runs until stopped (exits on SIGTERM)."""
        script = "trap 'exit 0' TERM INT; "
        script += "".join(f"nc -ll -p {int(p)} -e echo {name} & " for p in ports)
        script += "while :; do sleep 3600 & wait $!; done"
        return ["sh", "-c", script]

    def run_server(self, name: str, ports=(), publish=(), extra_args=()) -> str:
        """``docker run -d --name NAME [-p P]... [extra_args] dfw-busybox <server on ports>``;
        waits until every port listens and returns the container id."""
        if not _CONTAINER_NAME_RE.match(name):
            raise ValueError(f"container name {name!r}: at least 2 of [a-zA-Z0-9_.-]")
        argv = ["run", "-d", "--name", name]
        for p in publish:
            argv += ["-p", str(p)]
        argv += [*extra_args, self.image, *self.server_command(name, ports)]
        cid = self.docker(*argv).stdout.strip()
        for port in ports:
            self.wait_listening(name, int(port))
        return cid

    def container_pid(self, name: str) -> int:
        return int(self.client().api.inspect_container(name)["State"]["Pid"])

    def listening_ports(self, name: str) -> set[int]:
        """TCP ports container NAME listens on (read from /proc/<pid>/net/tcp{,6})."""
        pid = self.container_pid(name)
        ports = set()
        for fname in ("tcp", "tcp6"):
            with contextlib.suppress(FileNotFoundError):
                with open(f"/proc/{pid}/net/{fname}") as f:
                    for line in f.readlines()[1:]:
                        fields = line.split()
                        if len(fields) > 3 and fields[3] == "0A":
                            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports

    def wait_listening(self, name: str, port: int, timeout: float = 15.0) -> None:
        """Wait until container NAME has a TCP socket listening on port."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.client().api.inspect_container(name)["State"]
            if not state["Running"]:
                logs = self.docker("logs", name, check=False)
                raise SandboxError(f"container {name} is not running ({state['Status']}): {logs.stdout}{logs.stderr}")
            if port in self.listening_ports(name):
                return
            if time.monotonic() > deadline:
                raise SandboxError(f"container {name}: nothing listens on port {port} after {timeout:.0f} s")
            time.sleep(0.02)

    def receive_once(self, name: str, port: int, send, timeout: float = 10.0) -> str:
        """What a one-shot ``nc -l -p PORT`` in container NAME receives while send()
        runs.  The listener writes to a file in the container: the output of a
        ``docker exec`` whose process exits at once can be lost on a loaded machine."""
        path = f"/tmp/received-{port}"
        self.docker("exec", name, "rm", "-f", path)
        self.docker("exec", "-d", name, "sh", "-c", f"nc -l -p {int(port)} > {path}")
        self.wait_listening(name, port)
        send()
        deadline = time.monotonic() + timeout
        while True:
            done = port not in self.listening_ports(name)  # nc -l exits after one connection
            got = self.docker("exec", name, "cat", path, check=False).stdout
            if (done and got) or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def move(self, name: str, ports=(80,), squatter: str = "squatter") -> tuple[str, str]:
        """Restart container NAME at a new address: stop it, start SQUATTER (a server on
        ports) which takes the freed address, start NAME again and wait for its ports.
        Returns (old address, new address); the squatter's address is the old one."""
        old = self.container_ip(name)
        self.docker("stop", "-t", "1", name)
        self.run_server(squatter, ports=ports)
        self.docker("start", name)
        for port in ports:
            self.wait_listening(name, int(port))
        new = self.container_ip(name)
        if self.container_ip(squatter) != old or new == old:
            raise SandboxError(f"{name} did not move: was {old}, is {new}, {squatter} has {self.container_ip(squatter)}")
        return old, new

    def container_ip(self, name: str, network: str | None = None) -> str:
        settings = self.client().api.inspect_container(name)["NetworkSettings"]
        networks = settings.get("Networks") or {}
        if network is not None:
            return networks[network]["IPAddress"]
        if settings.get("IPAddress"):
            return settings["IPAddress"]
        for net in networks.values():
            if net.get("IPAddress"):
                return net["IPAddress"]
        raise SandboxError(f"container {name} has no IP address (not running?)")

    # ------------------------------------------------------------------ iptables

    def iptables_save(self, table: str | None = None) -> str:
        """``iptables-save`` in the engine namespace (all tables, or just one)."""
        argv = ["iptables-save"] + (["-t", table] if table else [])
        return self.engine_run(argv).stdout

    def snapshot_filter(self) -> str:
        return self.iptables_save("filter")

    def restore_filter(self, text: str) -> None:
        """Replace the engine namespace's filter table as a whole with a snapshot_filter() text."""
        self.engine_run(["iptables-restore"], input=text)

    # ------------------------------------------------------------------- nftables

    def nft_ruleset(self) -> dict:
        """``nft -j list ruleset`` in the engine namespace, parsed (Docker 29's
        nftables backend writes tables ``ip docker-bridges`` / ``ip6 docker-bridges``)."""
        return json.loads(self.engine_run(["nft", "-j", "list", "ruleset"]).stdout)

    def nft_tables(self) -> set[tuple[str, str]]:
        """The (family, name) of every nftables table in the engine namespace."""
        return {(e["table"]["family"], e["table"]["name"]) for e in self.nft_ruleset()["nftables"] if "table" in e}

    # -------------------------------------------------------------------- status

    def status(self) -> dict:
        return {
            "name": self.name,
            "base_dir": self.base_dir,
            "base_dir_exists": os.path.isdir(self.base_dir),
            "engine_netns": self.engine_netns if os.path.exists(self.netns_path) else None,
            "ext_netns": self.ext_netns if os.path.exists(self.ext_netns_path) else None,
            "dockerd_pid": self._dockerd_pid(),
            "api": self.ping(),
            "docker_host": self.docker_host,
            "leftover_pids": self.leftover_pids(),
            "mounts": _mounts_under(self.base_dir),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--name", default="dfw")
    parser.add_argument("--base-dir")
    parser.add_argument("--icc", action="store_true", help="run dockerd with --icc=true")
    parser.add_argument("--dockerd", help="another engine's dockerd (default: the system's)")
    parser.add_argument("--extra-path", action="append", default=[],
                        help="a directory to put first on dockerd's PATH (repeatable)")
    parser.add_argument("--engine", choices=("28", "29"),
                        help="run the 28.x engine unpacked by scripts/get-engine-28.sh, or Docker 29"
                             " from its static tarball (tests/harness/engines.py)")
    parser.add_argument("--engine28", action="store_const", const="28", dest="engine", help="--engine 28")
    parser.add_argument("--daemon-arg", action="append", default=[],
                        help="one more dockerd option, e.g. --daemon-arg=--firewall-backend=nftables (repeatable)")
    args = parser.parse_args(argv)
    kwargs = {"dockerd": args.dockerd, "extra_path": args.extra_path}
    if args.engine:
        from tests.harness.engines import ENGINES

        engine = ENGINES[args.engine]()
        if args.action == "up":
            problem = engine.prepare()
            if problem:
                print(f"sandbox: {problem}", file=sys.stderr)
                return 1
        kwargs = engine.sandbox_kwargs()
    sb = Sandbox(name=args.name, base_dir=args.base_dir, icc=args.icc, extra_daemon_args=args.daemon_arg, **kwargs)
    if args.action == "up":
        sb.start()
        print(f"sandbox {sb.name} up in {sb.start_seconds:.1f} s")
        print(f"export DOCKER_HOST={sb.docker_host}")
        print(f"engine namespace: nsenter --net={sb.netns_path} <command>")
        print(f"external namespace: nsenter --net={sb.ext_netns_path} <command>")
    elif args.action == "down":
        sb.stop()
        print(f"sandbox {sb.name} down")
    else:
        print(json.dumps(sb.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
