#!/usr/bin/env bash
# Runs docker-fw's whole test suite: unit tests, iptables tests in throwaway
# network namespaces, and end-to-end tests against sandbox Docker engines
# (the system's 20.10, a 28.x unpacked into /opt/docker-fw-engines/28, and
# Docker 29 from its static tarball, unpacked into /opt/docker-fw-engines/29;
# Compose v2 unpacked into /opt/docker-fw-compose for the labels' tests).
# Extra arguments go to pytest (e.g. -k replay, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! scripts/get-engine-28.sh; then
    # Under CI=true the 28.x tests then fail (never skip); elsewhere they skip.
    echo "test: could not fetch a Docker 28.x engine; its end-to-end tests cannot run" >&2
fi
if ! scripts/get-compose.sh; then
    # Likewise for the Compose client of the labels' end-to-end tests.
    echo "test: could not fetch Docker Compose; the labels' end-to-end tests cannot run" >&2
fi
# Docker 29: $DOCKER_FW_ENGINE29 (a static tarball or its folder), else
# ../shared/engines/docker-29.7.2.tar.xz beside the checkout (sha256 checked).
if ! .venv/bin/python -m tests.harness.engines 29; then
    echo "test: no Docker 29 engine; its end-to-end tests cannot run (they fail under CI=true)" >&2
fi
# Two workers (pytest-xdist): the tests of each engine go to one worker, so two
# sandboxes run side by side; the worker done first with its engine takes the
# next (29 runs a subset: tests/e2e/conftest.py, ON_DOCKER29). -n 0 runs
# everything in one process.
exec .venv/bin/python -m pytest -v -rs -n 2 --dist loadgroup "$@"
