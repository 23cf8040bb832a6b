#!/usr/bin/env bash
# Every test suite: the Rust crate's (`cargo test`: unit, integration, multi-process,
# fork, kill -9, crash and disk-full tests, doctests) and the Python package's (our pytest
# suite and python-diskcache 5.6.3's own tests; see python/run-tests.sh). Needs Rust and
# Python 3 (3.9 or newer). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
cargo test
bash python/run-tests.sh
