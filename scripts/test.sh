#!/usr/bin/env bash
# Runs docker-fw's whole test suite: unit tests, iptables tests in throwaway
# network namespaces, and end-to-end tests against a sandbox Docker engine.
# Extra arguments go to pytest (e.g. -k replay, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -v -rs "$@"
