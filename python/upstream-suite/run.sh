#!/usr/bin/env bash
# Runs python-diskcache 5.6.3's own test suite against the installed package. The tests
# are downloaded (hash-pinned) at run time, never committed. Run from the repository
# root with PY set to the Python that has the package, pytest and Django installed.
set -euo pipefail
: "${PY:?set PY to the Python interpreter to test with}"
SUP=$PWD/python/upstream-suite
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-binary :all: --no-deps -r "$SUP/sdist.txt" -d "$WORK"
# Only tests/: an extracted diskcache/ would shadow the package under test.
tar xzf "$WORK/diskcache-5.6.3.tar.gz" -C "$WORK" --strip-components=1 diskcache-5.6.3/tests
touch "$WORK/tests/__init__.py"
cp "$SUP/settings.py" "$SUP/models.py" "$SUP/conftest.py" "$SUP/known-failures.txt" "$WORK/tests/"
mapfile -t DESELECT < <(sed -e '/^#/d' -e '/^$/d' -e 's/^/--deselect=/' "$SUP/deselect.txt")
# Without rsync, the two rsync tests would pass without testing anything.
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
cd "$WORK"
DJANGO_SETTINGS_MODULE=tests.settings "$PY" -m pytest -q -p no:cacheprovider -p no:django \
  -o addopts="" "${DESELECT[@]}" "$@" tests
