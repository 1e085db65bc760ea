"""tests/harness/engines.py: how the Docker 29 engine is found and unpacked.

Small tarballs made here stand in for Docker's static one (same layout:
docker/dockerd, docker/docker-proxy, docker/runc); nothing is run.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from tests.harness import engines

BINARIES = ("dockerd", "docker-proxy", "runc")


def make_tarball(path, members=None, compression="xz") -> str:
    """A tarball of executable scripts named members (default: the static layout)."""
    members = members if members is not None else [f"docker/{b}" for b in BINARIES]
    with tarfile.open(path, f"w:{compression}") as tar:
        dir_info = tarfile.TarInfo("docker")
        dir_info.type, dir_info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(dir_info)
        for name in members:
            data = b"#!/bin/sh\necho " + name.encode() + b"\n"
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def client(tmp_path, monkeypatch):
    """A docker CLI where the 29 engine looks for one."""
    cli = tmp_path / "cli" / "docker"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    monkeypatch.setenv("DOCKER_FW_DOCKER_CLI", str(cli))
    monkeypatch.delenv("DOCKER_FW_ENGINE29_SHA256", raising=False)
    return str(cli)


def test_a_tarball_is_checked_unpacked_once_and_laid_out_like_dockers(tmp_path, client, monkeypatch):
    archive = make_tarball(tmp_path / "docker-29.9.9.tgz", compression="gz")
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", sha256(archive))
    cache = str(tmp_path / "cache" / "29")
    engine = engines.engine29(archive, unpack_dir=cache)
    assert engine.missing() is not None  # nothing unpacked yet
    assert engine.prepare() is None
    folder = os.path.join(cache, "docker")
    assert engine.dockerd == os.path.join(folder, "dockerd")
    assert engine.sandbox_kwargs() == {"dockerd": engine.dockerd, "extra_path": [folder], "docker_cli": client}
    assert all(os.access(os.path.join(folder, b), os.X_OK) for b in BINARIES)
    # the same archive again: the cache is used as it is
    marker = os.path.join(folder, "left-by-the-first-unpack")
    open(marker, "w").close()
    assert engines.engine29(archive, unpack_dir=cache).prepare() is None
    assert os.path.exists(marker)
    # another archive (another digest) replaces it
    other = make_tarball(tmp_path / "other.tar.xz", [f"docker/{b}" for b in BINARIES] + ["docker/ctr"])
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", sha256(other))
    assert engines.engine29(other, unpack_dir=cache).prepare() is None
    assert not os.path.exists(marker) and os.path.exists(os.path.join(folder, "ctr"))
    assert sorted(os.listdir(tmp_path / "cache")) == [".29.lock", "29"]  # no partial or old folder left


def test_a_wrong_digest_unpacks_nothing(tmp_path, client, monkeypatch):
    archive = make_tarball(tmp_path / "docker-29.tar.xz")
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    problem = engines.engine29(archive, unpack_dir=str(cache)).prepare()
    assert problem is not None and "sha256" in problem and "refusing" in problem
    assert not cache.exists()


def test_an_archive_of_unknown_digest_is_refused(tmp_path, client):
    archive = make_tarball(tmp_path / "docker-29.0.0.tgz", compression="gz")
    problem = engines.engine29(archive, unpack_dir=str(tmp_path / "cache")).prepare()
    assert problem is not None and "DOCKER_FW_ENGINE29_SHA256" in problem


def test_the_shared_tarball_has_a_known_digest():
    assert engines.KNOWN_SHA256[engines.ENGINE29_TARBALL] == \
        "d05e2b39f34e60f990511768716ebd9f3fa5869c70076e785f3d0872d9cb25a6"


@pytest.mark.parametrize("member", ["etc/passwd", "docker/../../escape", "../docker/dockerd"])
def test_members_outside_docker_are_refused(tmp_path, client, monkeypatch, member):
    archive = make_tarball(tmp_path / "evil.tar.xz", [f"docker/{b}" for b in BINARIES] + [member])
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", sha256(archive))
    cache = tmp_path / "cache" / "29"
    problem = engines.engine29(archive, unpack_dir=str(cache)).prepare()
    assert problem is not None and "unexpected member" in problem
    assert not cache.exists() and not (tmp_path / "escape").exists()
    assert [p for p in os.listdir(tmp_path / "cache") if "partial" in p] == []


def test_links_are_refused(tmp_path, client, monkeypatch):
    archive = str(tmp_path / "link.tar.xz")
    with tarfile.open(archive, "w:xz") as tar:
        info = tarfile.TarInfo("docker/dockerd")
        info.type, info.linkname = tarfile.SYMTYPE, "/usr/sbin/dockerd"
        tar.addfile(info)
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", sha256(archive))
    problem = engines.engine29(archive, unpack_dir=str(tmp_path / "cache")).prepare()
    assert problem is not None and "not a plain file" in problem


def test_an_archive_without_dockerd_is_not_the_static_layout(tmp_path, client, monkeypatch):
    archive = make_tarball(tmp_path / "x.tar.xz", ["docker/runc"])
    monkeypatch.setenv("DOCKER_FW_ENGINE29_SHA256", sha256(archive))
    problem = engines.engine29(archive, unpack_dir=str(tmp_path / "cache")).prepare()
    assert problem is not None and "no docker/dockerd" in problem


@pytest.mark.parametrize("nested", [True, False])
def test_an_unpacked_folder_is_used_in_place(tmp_path, client, nested):
    folder = tmp_path / "unpacked" / "docker" if nested else tmp_path / "docker-bin"
    folder.mkdir(parents=True)
    for b in BINARIES[:2]:
        (folder / b).write_text("#!/bin/sh\n")
        (folder / b).chmod(0o755)
    source = str(tmp_path / "unpacked") if nested else str(folder)
    engine = engines.engine29(source, unpack_dir=str(tmp_path / "never"))
    assert engine.dockerd == str(folder / "dockerd") and engine.path == (str(folder),)
    # runc is missing: bookworm's runc cannot start Docker 29's containers
    assert engine.prepare() == f"{folder / 'runc'} not found: {engine.how_to_get}"
    (folder / "runc").write_text("#!/bin/sh\n")
    (folder / "runc").chmod(0o755)
    assert engine.prepare() is None
    assert not (tmp_path / "never").exists()


def test_without_a_client_of_api_1_44_the_engine_cannot_run(tmp_path, client, monkeypatch):
    folder = tmp_path / "docker"
    folder.mkdir()
    for b in BINARIES:
        (folder / b).write_text("#!/bin/sh\n")
        (folder / b).chmod(0o755)
    monkeypatch.setenv("DOCKER_FW_DOCKER_CLI", str(tmp_path / "no-such-docker"))
    problem = engines.engine29(str(folder)).prepare()
    assert problem is not None and "no-such-docker not found" in problem


def test_a_source_that_is_neither_folder_nor_archive_says_so(tmp_path, client):
    engine = engines.engine29(str(tmp_path / "docker-29.zip"))
    assert "neither a folder nor" in engine.prepare()
