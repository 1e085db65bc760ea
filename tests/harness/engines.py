"""Other Docker engines than the system's, for the sandbox.

The system engine here is Debian bookworm's docker.io 20.10.  Two others:

- 28.x: Debian sid's docker.io (28.5.2), unpacked, not installed, by
  ``scripts/get-engine-28.sh`` into ``/opt/docker-fw-engines/28`` (or
  ``$DOCKER_FW_ENGINE28_DIR``).  Its dockerd runs beside the system containerd
  1.6 and runc (it starts its own containerd from PATH, as 20.10 does); its own
  docker-proxy must come first on PATH.  The script also unpacks sid's
  docker-cli (28.5.2) there, as ``usr/bin/docker``: the client of the 29 engine.
- 29.x: Docker's static tarball, the way users get it (``docker/dockerd``,
  ``docker/docker-proxy``, ``docker/runc``), from ``$DOCKER_FW_ENGINE29`` (a
  .tar.xz/.tgz/.tar.gz, or a folder holding ``docker/`` or being it), else
  ``shared/engines/docker-29.7.2.tar.xz`` beside the checkout (or beside its
  parent folder, for a worktree such as /work/wt/<name>).  An archive is
  checked against its sha256 (KNOWN_SHA256 by file name, else
  ``$DOCKER_FW_ENGINE29_SHA256``) and unpacked once into
  ``/opt/docker-fw-engines/29`` (or ``$DOCKER_FW_ENGINE29_DIR``), which is
  used as it is while it holds the same archive's contents.  The ``docker/``
  folder goes first on dockerd's PATH: the shim must find its runc (Debian 12's
  runc 1.1.5 cannot start 29's containers).  Docker 29.0 refuses clients below
  API 1.44, Debian 12's docker CLI (20.10) among them (this 29.7.2 build reports
  a minimum of 1.40): the sandbox uses the 28.x client above (or
  ``$DOCKER_FW_DOCKER_CLI``), whatever the build accepts.

    from tests.harness.engines import engine28, engine29
    eng = engine29()
    problem = eng.prepare()          # None, or why it cannot run here
    sb = Sandbox(name="dfw-e29", **eng.sandbox_kwargs())

``python -m tests.harness.engines 29`` unpacks it and prints where it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ENGINE28_DIR = os.environ.get("DOCKER_FW_ENGINE28_DIR", "/opt/docker-fw-engines/28")
GET_ENGINE28 = "scripts/get-engine-28.sh"

ENGINE29_DIR = os.environ.get("DOCKER_FW_ENGINE29_DIR", "/opt/docker-fw-engines/29")
ENGINE29_TARBALL = "docker-29.7.2.tar.xz"
# Archives whose digest is known (shared/engines/README.md); another archive
# needs $DOCKER_FW_ENGINE29_SHA256.
KNOWN_SHA256 = {
    "docker-29.7.2.tar.xz": "d05e2b39f34e60f990511768716ebd9f3fa5869c70076e785f3d0872d9cb25a6",
}
_ARCHIVE_SUFFIXES = (".tar.xz", ".txz", ".tgz", ".tar.gz")
_STAMP = ".dfw-sha256"  # in the cache dir: the digest of the archive it was unpacked from
_UNPACK_LOCK_SECONDS = 300.0
_MAX_MEMBER_BYTES = 512 * 1024 * 1024
_CHECKOUT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Engine:
    """An engine's binaries: dockerd, the folders to put first on its PATH, the
    executables it needs there, and the client to drive it with (None: the
    system's docker CLI).  ``archive``: a static tarball to unpack into
    ``unpack_dir`` first (prepare() does it)."""

    name: str
    dockerd: str
    path: tuple[str, ...]
    needs: tuple[str, ...]
    how_to_get: str
    docker_cli: str | None = None
    archive: str | None = None
    archive_sha256: str | None = None
    unpack_dir: str | None = None

    def missing(self) -> str | None:
        """Why this engine cannot run here (as it is now on disk); None when it can."""
        for binary in (*self.needs, *((self.docker_cli,) if self.docker_cli else ())):
            if not os.access(binary, os.X_OK):
                return f"{binary} not found: {self.how_to_get}"
        return None

    def prepare(self) -> str | None:
        """Unpack the archive if there is one and the cache does not hold it yet;
        then missing().  Returns why the engine cannot run, or None."""
        if self.archive is not None:
            try:
                unpack_static_tarball(self.archive, self.archive_sha256, self.unpack_dir)
            except (OSError, ValueError, tarfile.TarError) as e:
                return f"Docker {self.name} from {self.archive}: {e}"
        return self.missing()

    def version(self) -> str:
        out = subprocess.run([self.dockerd, "--version"], capture_output=True, text=True, check=False,
                             timeout=30)
        return out.stdout.strip()

    def sandbox_kwargs(self) -> dict:
        kwargs = {"dockerd": self.dockerd, "extra_path": list(self.path)}
        if self.docker_cli:
            kwargs["docker_cli"] = self.docker_cli
        return kwargs


def engine28(root: str | None = None) -> Engine:
    root = root or ENGINE28_DIR
    sbin = os.path.join(root, "usr", "sbin")
    return Engine(
        name="28",
        dockerd=os.path.join(sbin, "dockerd"),
        path=(sbin, os.path.join(root, "usr", "bin")),
        needs=(os.path.join(sbin, "dockerd"), os.path.join(sbin, "docker-proxy")),
        how_to_get=f"run {GET_ENGINE28} first (unpacks Debian sid's docker.io, not installed)",
    )


def client28(root: str | None = None) -> str:
    """The docker CLI (API >= 1.44) scripts/get-engine-28.sh unpacks from sid's docker-cli."""
    return os.environ.get("DOCKER_FW_DOCKER_CLI") or os.path.join(root or ENGINE28_DIR, "usr", "bin", "docker")


def _default_tarballs() -> list[Path]:
    """shared/engines/<tarball> beside the checkout, then beside its parent (a worktree)."""
    return [base / "shared" / "engines" / ENGINE29_TARBALL for base in (_CHECKOUT.parent, _CHECKOUT.parent.parent)]


def engine29(source: str | None = None, unpack_dir: str | None = None) -> Engine:
    """The Docker 29 engine from SOURCE (default $DOCKER_FW_ENGINE29, else the
    shared tarball): an archive to unpack into UNPACK_DIR, or an unpacked folder."""
    unpack_dir = unpack_dir or ENGINE29_DIR
    source = source or os.environ.get("DOCKER_FW_ENGINE29")
    hint = (f"set DOCKER_FW_ENGINE29 to Docker's static tarball (docker-29.x.tgz, or {ENGINE29_TARBALL}"
            f" from shared/engines/) or to the folder it unpacks to")
    archive = None
    if source is None:
        found = [p for p in _default_tarballs() if p.is_file()]
        if found:
            archive = str(found[0])
        else:
            # No tarball here: an earlier unpack into the cache still serves (its
            # stamp says which verified archive it came from).
            folder = os.path.join(unpack_dir, "docker")
            if not os.path.isfile(os.path.join(unpack_dir, _STAMP)):
                hint = f"{' or '.join(map(str, _default_tarballs()))} not found: {hint}"
            return _tarball_layout(folder, hint)
    elif os.path.isdir(source):
        nested = os.path.join(source, "docker")
        return _tarball_layout(nested if os.path.isdir(nested) else source, hint)
    elif source.endswith(_ARCHIVE_SUFFIXES):
        archive = source
    else:
        return _tarball_layout(os.path.join(source, "docker"),
                               f"DOCKER_FW_ENGINE29={source}: neither a folder nor a {'/'.join(_ARCHIVE_SUFFIXES)}"
                               f" archive; {hint}")
    digest = os.environ.get("DOCKER_FW_ENGINE29_SHA256") or KNOWN_SHA256.get(os.path.basename(archive))
    engine = _tarball_layout(os.path.join(unpack_dir, "docker"), hint)
    return dataclasses.replace(engine, archive=archive, archive_sha256=digest, unpack_dir=unpack_dir)


def _tarball_layout(folder: str, hint: str) -> Engine:
    """Docker's static tarball, unpacked: dockerd, docker-proxy and runc in one folder."""
    return Engine(
        name="29",
        dockerd=os.path.join(folder, "dockerd"),
        path=(folder,),
        needs=tuple(os.path.join(folder, b) for b in ("dockerd", "docker-proxy", "runc")),
        how_to_get=hint,
        docker_cli=client28(),
    )


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_static_tarball(archive: str, expected_sha256: str | None, dest: str) -> None:
    """Unpack ARCHIVE's ``docker/`` folder into DEST (DEST/docker/dockerd...),
    unless DEST already holds this archive.  The archive must have the expected
    digest; its members must be plain files and folders under ``docker/``.
    Concurrent callers (xdist workers, other checkouts) wait on a lock; the new
    folder replaces the old one by a rename, so an engine running from the old
    one keeps its binaries."""
    if not expected_sha256:
        raise ValueError(f"no known sha256 for {os.path.basename(archive)}: set DOCKER_FW_ENGINE29_SHA256")
    actual = sha256_of(archive)
    if actual != expected_sha256.lower():
        raise ValueError(f"sha256 {actual}, expected {expected_sha256}: refusing to unpack it")
    parent = os.path.dirname(os.path.abspath(dest)) or "."
    os.makedirs(parent, exist_ok=True)
    with _locked(os.path.join(parent, f".{os.path.basename(dest)}.lock")):
        with contextlib.suppress(OSError):
            with open(os.path.join(dest, _STAMP)) as f:
                if f.read().strip() == actual:
                    return
        partial = f"{dest}.partial.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        try:
            with tarfile.open(archive) as tar:
                members = []
                for member in tar:
                    name = member.name[2:] if member.name.startswith("./") else member.name
                    if not (name == "docker" or name.startswith("docker/")) or ".." in name.split("/"):
                        raise ValueError(f"unexpected member {member.name!r} (not under docker/)")
                    if not (member.isfile() or member.isdir()):
                        raise ValueError(f"member {member.name!r} is not a plain file or folder")
                    if member.size > _MAX_MEMBER_BYTES:
                        raise ValueError(f"member {member.name!r} is {member.size} bytes")
                    members.append(member)
                tar.extractall(partial, members=members, filter="data")
            if not os.access(os.path.join(partial, "docker", "dockerd"), os.X_OK):
                raise ValueError("no docker/dockerd in it: not Docker's static tarball layout")
            with open(os.path.join(partial, _STAMP), "w") as f:
                f.write(actual + "\n")
            old = f"{dest}.old.{os.getpid()}"
            if os.path.exists(dest):
                os.rename(dest, old)
            os.rename(partial, dest)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: str, timeout: float = _UNPACK_LOCK_SECONDS):
    with open(path, "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(f"{path}: still locked after {timeout:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


ENGINES = {"28": engine28, "29": engine29}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ENGINES:
        print(f"usage: python -m tests.harness.engines {'|'.join(ENGINES)}", file=sys.stderr)
        return 2
    engine = ENGINES[args[0]]()
    problem = engine.prepare()
    if problem:
        print(f"engines: {problem}", file=sys.stderr)
        return 1
    print(f"{engine.version()}: {engine.dockerd} (PATH first: {':'.join(engine.path)};"
          f" client: {engine.docker_cli or 'the system docker CLI'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
