#!/usr/bin/env bash
# Runs the Django tests on one Python and one Django series: ours (the backend, the test
# site and the djangocache examples) and python-diskcache 5.6.3's tests/test_djangocache.py.
# run-tests.sh calls it for Django 6.x when a Python 3.12 or newer is found; CI can call
# it the same way. Run from anywhere:
#   PYTHON=python3.12 DJANGO='django>=6,<7' VENV=.venv312 bash python/run-django-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DJANGO=${DJANGO:-django>=6,<7}
VENV=${VENV:-.venv-django}

step() { printf '\n=== %s\n' "$*"; }

step "venv $VENV ($("$PYTHON" --version), $DJANGO)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet 'maturin>=1.9.4,<2' pytest "$DJANGO"

step "build (maturin develop --release)"
VIRTUAL_ENV=$PWD/$VENV "$VENV/bin/maturin" develop --release --quiet -m python/Cargo.toml

step "our Django tests on $("$VENV/bin/python" -m django --version)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider python/tests/test_django_backend.py \
  python/tests/test_django_project.py python/tests/test_doctests.py

step "python-diskcache 5.6.3's tests/test_djangocache.py"
STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT
XDG_STATE_HOME=$STATE PY=$PWD/$VENV/bin/python bash python/upstream-suite/run.sh -k test_djangocache
