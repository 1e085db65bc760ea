#!/usr/bin/env bash
# Fetches Debian sid's docker-compose (Compose v2) and unpacks it into a
# folder, WITHOUT installing it (scripts/get-sid-package.sh: private apt state).
#
#   scripts/get-compose.sh [DEST]         (default /opt/docker-fw-compose)
#
# Afterwards DEST/usr/bin/docker-compose is a standalone Compose v2 client
# (the Labels end-to-end tests run it against the sandbox engines through
# DOCKER_HOST). Idempotent: does nothing when DEST already holds it.
set -euo pipefail
DEST="${1:-${DOCKER_FW_COMPOSE_DIR:-/opt/docker-fw-compose}}"
DOCKER_FW_GET_NAME=get-compose \
    exec "$(dirname "$0")/get-sid-package.sh" "$DEST" 'docker-compose:2.*:usr/bin/docker-compose'
