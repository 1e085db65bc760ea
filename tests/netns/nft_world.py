"""A Docker-29-in-nftables-mode host in throwaway namespaces, with real packets.

Four network namespaces joined by veth pairs:

    ext (198.51.100.2, .3; 2001:db8:51::2)  --  host  --  docker0 bridge  --  web (172.17.0.2; fd00:17::2)
                                                                    \\---  db  (172.17.0.3; fd00:17::3)

``host`` forwards, holds Docker-like tables ``ip docker-bridges`` and ``ip6
docker-bridges`` (tests/fixtures/nft/, modelled on moby's own test goldens)
and is where docker-fw's nftables backend runs: its ``Nft`` runner is
pointed at a wrapper that runs the real nft inside ``host``.  TCP servers
answer "ok" in web (ports 80, 5432) and on the host (9100); ``reaches``
says whether a connection from one namespace gets that answer, ``pings``
whether an ICMP echo (or timestamp) request is answered, ``sctp_arrives``
whether an SCTP INIT gets to its destination.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import stat
import subprocess
import sys
import time

import pytest

from docker_fw.backends.nftables.backend import NftablesBackend
from docker_fw.backends.nftables.process import Nft

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nft"
DOCKER_LIKE = FIXTURES / "docker-29-like-icc-false.nft"

SERVER = """
import socket, sys, threading
def serve(family, address, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
threads = []
for port in map(int, sys.argv[1:]):
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        t = threading.Thread(target=serve, args=(family, address, port), daemon=True); t.start(); threads.append(t)
print("ready", flush=True)
threads[0].join()
"""

CLIENT = """
import socket, sys
source, dest, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in dest else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(1.0)
try:
    s.bind((source, 0)); s.connect((dest, port)); print(s.recv(2).decode())
except OSError as exc:
    print("blocked", exc)
"""

# What the raw-socket probes share: whether a packet WANTED(peer, its IP
# payload) arrives on socket S within SECONDS.
RAW_ARRIVED = """
import random, os, socket, struct, sys, time
def arrived(s, seconds, wanted):
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        if wanted(peer[0], data[(data[0] & 15) * 4:]):
            return True
    return False
"""

# An ICMP message of TYPE (8: echo request, 13: timestamp request) from SOURCE
# to DEST; 'ok' when DEST's answer (0, 14) comes back within a second.
PING = RAW_ARRIVED + """
source, dest, kind = sys.argv[1], sys.argv[2], int(sys.argv[3])
answer = {8: 0, 13: 14}[kind]
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
body = bytes(12) if kind == 13 else b"docker-fw!"
packet = struct.pack("!BBHHH", kind, 0, 0, ident, 1) + body
packet = struct.pack("!BBHHH", kind, 0, checksum(packet), ident, 1) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((source, 0)); s.sendto(packet, (dest, 0))
answered = arrived(s, 1.0, lambda peer, icmp: peer == dest and icmp[0] == answer
                   and struct.unpack("!H", icmp[4:6])[0] == ident)
print("ok" if answered else "blocked")
"""

# SCTP without the kernel's SCTP sockets (a kernel may lack the module): an
# INIT chunk sent on a raw socket, and a raw socket in the receiver that says
# whether it arrived.
SCTP_SEND = RAW_ARRIVED + """
source, dest, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
init = struct.pack("!BBHIIHHI", 1, 0, 20, random.randint(1, 2**32 - 1), 65535, 1, 1, 1)
packet = struct.pack("!HHII", 40000, port, 0, 0) + init
packet = packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
s.bind((source, 0)); s.sendto(packet, (dest, 0))
"""
SCTP_RECEIVE = RAW_ARRIVED + """
source, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
print("ready", flush=True)
got = arrived(s, 1.5, lambda peer, sctp: peer == source and struct.unpack("!H", sctp[2:4])[0] == port)
print("ok" if got else "none")
"""

TOOLS = ("ip", "nsenter", "nft")


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and nft)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing on PATH: {', '.join(missing)} (scripts/setup.sh installs the nftables package)" if missing else None


class World:
    def __init__(self, tmp: pathlib.Path):
        tag = secrets.token_hex(3)
        self.ns = {role: f"dfw-n{role[0]}-{tag}" for role in ("host", "web", "db", "ext")}
        self.servers: list[subprocess.Popen] = []
        self.wrapper = tmp / "nft-in-host"
        # The real nft, run inside the host namespace (test plumbing only).
        self.wrapper.write_text(f'#!/bin/sh\nexec nsenter --net=/var/run/netns/{self.ns["host"]} {shutil.which("nft")} "$@"\n')
        self.wrapper.chmod(self.wrapper.stat().st_mode | stat.S_IXUSR)

    def run(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{self.ns[role]}", *argv],
            input=stdin, capture_output=True, text=True, timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{role}: {argv} failed: {proc.stderr.strip()}")
        return proc

    def ip(self, role: str, *args: str) -> None:
        self.run(role, "ip", *args)

    def build(self) -> None:
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        host = self.ns["host"]
        for role in self.ns:
            self.ip(role, "link", "set", "lo", "up")
            # No duplicate address detection: a tentative link-local address
            # holds IPv6 neighbour discovery back for a second or two.
            self.run(role, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        # No multicast snooping: IPv6 neighbour discovery must not wait for MLD reports.
        self.ip("host", "link", "add", "docker0", "type", "bridge", "mcast_snooping", "0")
        self.ip("host", "addr", "add", "172.17.0.1/16", "dev", "docker0")
        self.ip("host", "-6", "addr", "add", "fd00:17::1/64", "dev", "docker0", "nodad")
        self.ip("host", "link", "set", "docker0", "up")
        for role, v4, v6 in (("web", "172.17.0.2", "fd00:17::2"), ("db", "172.17.0.3", "fd00:17::3")):
            self.ip("host", "link", "add", f"veth-{role}", "type", "veth", "peer", "name", "eth0", "netns", self.ns[role])
            self.ip("host", "link", "set", f"veth-{role}", "master", "docker0", "up")
            self.ip(role, "addr", "add", f"{v4}/16", "dev", "eth0")
            self.ip(role, "-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            self.ip(role, "link", "set", "eth0", "up")
            self.ip(role, "route", "add", "default", "via", "172.17.0.1")
            self.ip(role, "-6", "route", "add", "default", "via", "fd00:17::1")
        self.ip("host", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", self.ns["ext"])
        self.ip("host", "addr", "add", "198.51.100.1/24", "dev", "ext0")
        self.ip("host", "-6", "addr", "add", "2001:db8:51::1/64", "dev", "ext0", "nodad")
        self.ip("host", "link", "set", "ext0", "up")
        for address in ("198.51.100.2/24", "198.51.100.3/24"):
            self.ip("ext", "addr", "add", address, "dev", "eth0")
        for address in ("2001:db8:51::2/64", "2001:db8:51::3/64"):
            self.ip("ext", "-6", "addr", "add", address, "dev", "eth0", "nodad")
        self.ip("ext", "link", "set", "eth0", "up")
        self.ip("ext", "route", "add", "172.17.0.0/16", "via", "198.51.100.1")
        self.ip("ext", "-6", "route", "add", "fd00:17::/64", "via", "2001:db8:51::1")
        self.run("host", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        # With br_netfilter loaded (Docker loads it), bridged IPv6 passes the
        # forward hook too, where Docker's ICC drop (--icc=false) also drops the
        # neighbour solicitations between containers: the containers know
        # each other's link addresses here, as a test of TCP, not of ND.
        macs = {role: self.mac(role) for role in ("web", "db")}
        for role, other, ip6 in (("web", "db", "fd00:17::3"), ("db", "web", "fd00:17::2")):
            self.ip(role, "-6", "neigh", "replace", ip6, "lladdr", macs[other], "dev", "eth0", "nud", "permanent")
        del host
        self.load_docker(DOCKER_LIKE.read_text())
        for role, ports in (("web", ("80", "5432")), ("db", ("5432",)), ("host", ("9100",))):
            self.serve(role, *ports)

    def mac(self, role: str) -> str:
        return json.loads(self.run(role, "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]

    def load_docker(self, text: str) -> None:
        """Docker's tables as the engine would hold them (both families, the ip6
        one made from the ip one with the containers' IPv6 addresses)."""
        self.run("host", "nft", "-f", "-", stdin=text + "\n" + ip6_variant(text))

    def serve(self, role: str, *ports: str) -> None:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.ns[role]}", sys.executable, "-c", SERVER, *ports],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.servers.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    def reaches(self, role: str, source: str, dest: str, port: int) -> bool:
        answer = self.run(role, sys.executable, "-c", CLIENT, source, dest, str(port)).stdout
        return answer.strip() == "ok"

    def pings(self, role: str, source: str, dest: str, kind: int = 8) -> bool:
        """Whether an ICMP echo request (KIND 8) or timestamp request (13) is answered."""
        answer = self.run(role, sys.executable, "-c", PING, source, dest, str(kind)).stdout
        return answer.strip() == "ok"

    def sctp_arrives(self, role: str, source: str, to: str, dest: str, port: int) -> bool:
        """Whether an SCTP INIT from ROLE at SOURCE reaches namespace TO (at DEST, PORT)."""
        receiver = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.ns[to]}", sys.executable, "-c", SCTP_RECEIVE, source, str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert receiver.stdout.readline().strip() == "ready"
            self.run(role, sys.executable, "-c", SCTP_SEND, source, dest, str(port))
            return receiver.communicate(timeout=10)[0].strip() == "ok"
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait(timeout=10)

    def nft(self) -> Nft:
        runner = Nft()
        runner.binary = str(self.wrapper)
        return runner

    def backend(self, family: int = 4) -> NftablesBackend:
        return NftablesBackend(self.nft(), family)

    def listing(self, family: str = "ip") -> str:
        proc = self.run("host", "nft", "list", "table", family, "docker-fw", check=False)
        return proc.stdout if proc.returncode == 0 else ""

    def destroy(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=10)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def ip6_variant(text: str) -> str:
    """The ip6 table Docker writes beside the ip one (same chains; IPv6 addresses)."""
    out = text.replace("table ip docker-bridges", "table ip6 docker-bridges")
    return out.replace("ip daddr 172.17.0.2", "ip6 daddr fd00:17::2").replace("ip daddr 172.17.0.3", "ip6 daddr fd00:17::3")


@pytest.fixture
def world(tmp_path):
    reason = missing_prerequisite()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"nft netns tests cannot run under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    w = World(tmp_path)
    try:
        w.build()
        time.sleep(0.05)
        yield w
    finally:
        w.destroy()
