"""docker-fw demo: a sandbox Docker engine, external clients, real connections.

Run through scripts/demo.sh (as root).  Everything happens inside two network
namespaces made for the demo (the engine's and an "external" one holding the
clients 198.51.100.2 and 198.51.100.3) and is removed at the end; the host's
own firewall and Docker are never touched.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness.sandbox import Sandbox  # noqa: E402

ALLOWED, OTHER = "198.51.100.2", "198.51.100.3"
PORT = 8080
failures = 0


BOLD, PLAIN = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{PLAIN}", flush=True)


def expect(sb: Sandbox, allowed: bool, other: bool) -> None:
    global failures
    for client, wanted in ((ALLOWED, allowed), (OTHER, other)):
        got = sb.ext_connect(sb.host_ip, PORT, client, timeout=1.5)
        verdict = "ok" if got == wanted else "UNEXPECTED"
        failures += got != wanted
        print(f"   client {client} -> {sb.host_ip}:{PORT}: {'connected' if got else 'blocked'} ({verdict})")


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root (sudo scripts/demo.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as state, Sandbox(name="dfw-demo") as sb:
        env = {"DOCKER_HOST": sb.docker_host, "DOCKER_FW_STATE_DIR": state}

        def fw(*argv: str, ok_codes=(0,)) -> None:
            print(f"$ docker-fw {shlex.join(argv)}")
            result = sb.engine_run([sys.executable, "-m", "docker_fw", *argv], check=False, env=env)
            for line in (result.stdout + result.stderr).splitlines():
                print(f"   {line}")
            if result.returncode not in ok_codes:
                raise SystemExit(f"demo: docker-fw {argv[0]} failed ({result.returncode})")

        say(f"A sandbox engine (Docker {sb.client().version()['Version']}) runs a web server publishing port {PORT}")
        sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
        print(f"$ docker run -d --name web -p {PORT}:80 {sb.image} ...")
        say("Docker's default: every client reaches a published port")
        expect(sb, allowed=True, other=True)

        say("docker-fw init: the FORWARD chain becomes a whitelist")
        fw("init")
        expect(sb, allowed=False, other=False)

        say(f"docker-fw allow: only {ALLOWED} may reach web's published ports")
        fw("allow", "web", ALLOWED)
        fw("ls")
        expect(sb, allowed=True, other=False)

        say("web restarts and another container takes its old address")
        old, new = sb.move("web")
        print(f"   web moved from {old} to {new}; squatter now has {old}")
        expect(sb, allowed=False, other=False)
        fw("replay", "--dry-run", "web", ok_codes=(1,))  # 1: something would change
        fw("replay", "web")
        expect(sb, allowed=True, other=False)

        say("docker-fw drop: web's rules are gone")
        fw("drop", "web")
        expect(sb, allowed=False, other=False)

        say("Two-ways linking (the seed's example; this engine runs with --icc=false)")
        image = sb.image
        for argv in (
            ("run", "--detach", "--name=promoted", image, "sleep", "1000"),
            ("run", "--detach", "--expose=1025", "--link", "promoted:promoted", "--name=endpoint", image, "sleep", "1000"),
        ):
            print(f"$ docker {shlex.join(argv)}")
            sb.docker(*argv)
        fw("add-two-ways", "endpoint", "--source", "promoted", "--dport", "1025")
        print("$ docker exec endpoint nc -l -p 1025 &")
        command = "echo 'Hello from promoted container' | nc endpoint 1025"

        def send() -> None:
            print(f"$ docker exec promoted sh -c {shlex.quote(command)}")
            sb.docker("exec", "promoted", "sh", "-c", command)

        received = sb.receive_once("endpoint", 1025, send)
        global failures
        ok = "Hello from promoted container" in received
        failures += not ok
        print(f"   endpoint received: {received.strip()!r} ({'ok' if ok else 'UNEXPECTED'})")

        say("Cleaning up the sandbox")
    if failures:
        print(f"\ndemo: {failures} unexpected result(s)", file=sys.stderr)
        return 1
    print("\ndemo: every connection went as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
