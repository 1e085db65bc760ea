"""The sandbox's test image, ``dfw-busybox:latest``, built from the host's busybox-static.

No registry is reachable, so the image is a single-layer rootfs made here: ``/bin/busybox``
plus a symlink for every applet it has, a few directories and ``/etc`` files, imported with
``docker import``.  Busybox must be the *static* build (Debian's ``busybox-static``): the
container has no shared libraries.

Known quirks of this busybox (Debian 12, 1.35.0) worth knowing when writing tests:

* ``nc`` is the netcat-1.10 compatible variant: ``nc -ll -p PORT -e PROG ARGS...`` is a
  persistent server that runs PROG for every connection; ``nc -w SEC IP PORT </dev/null``
  is a client with a connect timeout that prints what the server sends and exits when the
  server closes.  ``echo text | nc IP PORT`` sends and exits; ``nc -l -p PORT`` receives.
* ``wget`` segfaults (exit 139) even against ``httpd`` on 127.0.0.1: do not use it.
* ``httpd -f -p 80 -h /www`` works, but it answers only after a request line, so a plain
  ``nc -w 2 IP 80 </dev/null`` gets nothing back from it.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tarfile
import time

IMAGE = "dfw-busybox:latest"
BUSYBOX = "/usr/bin/busybox"

_DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "root": 0o700,
    "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777, "www": 0o755, "data": 0o755,
}
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
    "www/index.html": "dfw-busybox\n",
}
CHANGES = ('ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin', 'CMD ["sh"]')


def busybox_path() -> str:
    return shutil.which("busybox") or BUSYBOX


def is_static(path: str) -> bool:
    """Whether the ELF file at path has no program interpreter (is statically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64, little = head[4] == 2, head[5] == 1
        end = "<" if little else ">"
        if is64:
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(end + "I", head, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(end + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({a for a in out.split() if a and "/" not in a and a != "busybox"})


def rootfs_tar(busybox: str | None = None) -> bytes:
    """The image's root file system as an uncompressed tar, all owned by root."""
    busybox = busybox or busybox_path()
    now = int(time.time())
    buf = io.BytesIO()

    def info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, now
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in _DIRS.items():
            tar.addfile(info(name, tarfile.DIRTYPE, mode))
        with open(busybox, "rb") as f:
            data = f.read()
        tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for applet in applets(busybox):
            tar.addfile(info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
        for name, text in _FILES.items():
            raw = text.encode()
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))
    return buf.getvalue()


def import_image(docker_argv: list[str], image: str = IMAGE, env: dict | None = None) -> str:
    """``docker import`` the rootfs as IMAGE; docker_argv is e.g. ``["docker", "-H", host]``.

    Returns the image id.
    """
    argv = [*docker_argv, "import"]
    for change in CHANGES:
        argv += ["--change", change]
    argv += ["-", image]
    result = subprocess.run(
        argv, input=rootfs_tar(), capture_output=True, env=env or os.environ.copy()
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"docker import {image} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode().strip()
