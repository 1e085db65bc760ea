"""Other Docker engines than the system's, for the sandbox.

The system engine here is Debian bookworm's docker.io 20.10.  A 28.x engine
(Debian sid's docker.io, 28.5.2) is unpacked, not installed, by
``scripts/get-engine-28.sh`` into ``/opt/docker-fw-engines/28`` (or
``$DOCKER_FW_ENGINE28_DIR``).  Its dockerd runs beside the system containerd
1.6 and runc (it starts its own containerd from PATH, as 20.10 does); its own
docker-proxy must come first on PATH.  The system docker CLI talks to it.

    from tests.harness.engines import engine28
    eng = engine28()                 # None when the folder is missing
    sb = Sandbox(name="dfw-e28", **eng.sandbox_kwargs())
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

ENGINE28_DIR = os.environ.get("DOCKER_FW_ENGINE28_DIR", "/opt/docker-fw-engines/28")
GET_ENGINE28 = "scripts/get-engine-28.sh"


@dataclass(frozen=True)
class Engine:
    name: str
    root: str  # the folder the package was unpacked into

    @property
    def dockerd(self) -> str:
        return os.path.join(self.root, "usr", "sbin", "dockerd")

    @property
    def path(self) -> list[str]:
        """Directories to put first on dockerd's PATH (its docker-proxy)."""
        return [os.path.join(self.root, "usr", "sbin"), os.path.join(self.root, "usr", "bin")]

    def missing(self) -> str | None:
        """Why this engine cannot run here; None when it can."""
        for binary in (self.dockerd, os.path.join(self.root, "usr", "sbin", "docker-proxy")):
            if not os.access(binary, os.X_OK):
                return f"{binary} not found: run {GET_ENGINE28} first (unpacks Debian sid's docker.io, not installed)"
        return None

    def version(self) -> str:
        out = subprocess.run([self.dockerd, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def sandbox_kwargs(self) -> dict:
        return {"dockerd": self.dockerd, "extra_path": self.path}


def engine28(root: str | None = None) -> Engine:
    return Engine("28", root or ENGINE28_DIR)
