#!/usr/bin/env bash
# Fetches Debian sid's docker.io (Docker 28.x) and docker-cli (its client, 28.x)
# and unpacks them into a folder, WITHOUT installing them
# (scripts/get-sid-package.sh: private apt state, the system's own left alone).
#
#   scripts/get-engine-28.sh [DEST]       (default /opt/docker-fw-engines/28)
#
# Afterwards DEST/usr/sbin/dockerd is a 28.x engine; run it with DEST/usr/bin
# and DEST/usr/sbin first on PATH (its docker-proxy) next to the system
# containerd (tests/harness/engines.py does that for the sandbox).
# DEST/usr/bin/docker is a client speaking API >= 1.44 (docker-cli 25.0 or
# newer): the Docker 29 sandbox engine refuses Debian 12's docker CLI (20.10,
# API 1.41).  Idempotent: does nothing when DEST already holds both; a DEST
# holding the engine only (made before the client was fetched) gets the client
# added beside it.
#
# Environment: DOCKER_FW_ENGINE28_DIR (DEST), DOCKER_FW_ENGINE28_SUITE (default
# sid), DOCKER_FW_DEBIAN_MIRROR, DOCKER_FW_ENGINE_ANY_VERSION=1 (any version).
set -euo pipefail
DEST="${1:-${DOCKER_FW_ENGINE28_DIR:-/opt/docker-fw-engines/28}}"
DOCKER_FW_DEBIAN_SUITE="${DOCKER_FW_ENGINE28_SUITE:-${DOCKER_FW_DEBIAN_SUITE:-sid}}" \
DOCKER_FW_ANY_VERSION="${DOCKER_FW_ENGINE_ANY_VERSION:-${DOCKER_FW_ANY_VERSION:-}}" \
DOCKER_FW_GET_NAME=get-engine-28 \
    exec "$(dirname "$0")/get-sid-package.sh" "$DEST" \
    'docker.io:28.*|29.*:usr/sbin/dockerd' \
    'docker-cli:2[5-9].*|[3-9][0-9].*:usr/bin/docker'
