#!/usr/bin/env bash
# Runs docker-fw's whole test suite: unit tests, iptables tests in throwaway
# network namespaces, and end-to-end tests against sandbox Docker engines
# (the system's 20.10 and a 28.x unpacked into /opt/docker-fw-engines/28).
# Extra arguments go to pytest (e.g. -k replay, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! scripts/get-engine-28.sh; then
    # Under CI=true the 28.x tests then fail (never skip); elsewhere they skip.
    echo "test: could not fetch a Docker 28.x engine; its end-to-end tests cannot run" >&2
fi
# Two workers (pytest-xdist): the tests of each engine go to one worker, so the
# 20.10 and 28.x sandboxes run side by side (-n 0 runs everything in one process).
exec .venv/bin/python -m pytest -v -rs -n 2 --dist loadgroup "$@"
