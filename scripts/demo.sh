#!/usr/bin/env bash
# The README's demo: a sandbox Docker engine in its own network namespace, an
# external client blocked after 'init', allowed after 'allow', followed through
# a restart by 'replay', blocked again after 'drop'.  Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py
