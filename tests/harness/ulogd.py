"""ulogd2 inside a sandbox's engine namespace, writing docker-fw's blocked-connection log.

What a host runs as contrib/docker-fw-ulogd.service, the tests start here:
the same configuration (contrib/docker-fw-ulogd.conf), with its JSON file and
its own log in a folder of the test's, run with nsenter in the network
namespace of the sandbox's engine (NFLOG delivers a packet to listeners of
its own namespace only), and stopped (by its pid) when the test ends.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
CONTRIB_CONF = REPO / "contrib" / "docker-fw-ulogd.conf"
ULOGD = "/usr/sbin/ulogd"


def missing() -> str | None:
    """Why ulogd2 cannot run here; None when it can."""
    binary = shutil.which("ulogd") or (ULOGD if os.path.exists(ULOGD) else None)
    if binary is None:
        return "ulogd not found (Debian packages ulogd2 ulogd2-json)"
    plugins = list(pathlib.Path("/usr/lib").glob("*/ulogd/ulogd_output_JSON.so"))
    if not plugins:
        return "ulogd2's JSON output plugin not found (Debian package ulogd2-json)"
    return None


class Ulogd:
    """``with Ulogd(netns_path, folder) as u:`` u.json_path fills with blocked connections."""

    def __init__(self, netns_path: str, folder: pathlib.Path):
        self.netns_path = netns_path
        self.folder = pathlib.Path(folder)
        self.json_path = self.folder / "docker-fw-blocked.json"
        self.log_path = self.folder / "ulogd.log"
        self.conf_path = self.folder / "ulogd.conf"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "Ulogd":
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = CONTRIB_CONF.read_text()
        for old, new in (('logfile="syslog"', f'logfile="{self.log_path}"'),
                         ('file="/var/log/ulog/docker-fw-blocked.json"', f'file="{self.json_path}"')):
            assert old in conf, f"{CONTRIB_CONF} no longer holds {old}"
            conf = conf.replace(old, new)
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns_path}", shutil.which("ulogd") or ULOGD, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.exists() and "entering main loop" in self.log_path.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"ulogd exited {self.proc.returncode}: {self.proc.stderr.read().decode(errors='replace')}"
                                   f"{self.log_path.read_text(errors='replace') if self.log_path.exists() else ''}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ulogd did not start within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> "Ulogd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
