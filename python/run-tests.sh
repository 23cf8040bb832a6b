#!/usr/bin/env bash
# Builds the Python package into ./.venv and runs both Python suites: ours
# (python/tests, with Django 5.2 LTS) and python-diskcache 5.6.3's own tests
# (python/upstream-suite); then, when a Python 3.12 or newer is found (or given as
# PYTHON_DJANGO6), the Django tests again on Django 6.x in ./.venv312.
# Needs Rust and Python 3 (3.10 or newer; set PYTHON to choose one). Run from anywhere.
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

step "Django 6.x (Python 3.12 or newer)"
PY6=${PYTHON_DJANGO6:-}
if [ -z "$PY6" ]; then
  for candidate in python3.14 python3.13 python3.12 \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      PY6=$candidate
      break
    fi
  done
fi
if [ -n "$PY6" ]; then
  PYTHON=$PY6 DJANGO='django>=6,<7' VENV=.venv312 bash python/run-django-tests.sh
else
  echo "no Python 3.12 or newer here: the Django 6.x run is skipped"
fi
