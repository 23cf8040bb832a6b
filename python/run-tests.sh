#!/usr/bin/env bash
# Builds the Python package into ./.venv and runs both Python suites: ours
# (python/tests) and python-diskcache 5.6.3's own tests (python/upstream-suite).
# Needs Rust and Python 3 (3.9 or newer; set PYTHON to choose one). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

step() { printf '\n=== %s\n' "$*"; }

step "venv and tools"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet 'maturin>=1.9.4,<2' pytest 'django>=5.2,<5.3'

step "build (maturin develop --release)"
.venv/bin/maturin develop --release --quiet -m python/Cargo.toml

step "our suite (python/tests)"
.venv/bin/python -m pytest -q -p no:cacheprovider python/tests

step "python-diskcache 5.6.3's suite (python/upstream-suite)"
# The per-user pickle key of these runs lives in a temporary state directory.
STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT
XDG_STATE_HOME=$STATE PY=$PWD/.venv/bin/python bash python/upstream-suite/run.sh
