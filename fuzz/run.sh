#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on stable Rust (no sanitizer), starting from the
# committed seeds; fails if any target finds a crash, a hang or an allocation past the
# memory limit. Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   CI:        fuzz/run.sh 60
#   long run:  fuzz/run.sh 3600 ops
# New corpus entries go to fuzz/corpus/<target> (not committed); crashes to
# fuzz/artifacts/<target>. Replay one with
#   cargo run --release --example smoke -- <target> <file> [times]     (in fuzz/)
# and DISKCACHE_FUZZ_TRACE=1 to see each step of an `ops` input.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(ops decoders files)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Hand-written ops scenarios (paths random bytes reach rarely), without libFuzzer.
echo "=== ops scenarios"
cargo run --quiet --release --example smoke -- scenarios

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" artifacts
    log="artifacts/$t.log"
    echo "=== fuzz $t for ${secs}s"
    # -timeout: a single input running this long is a hang; -rss_limit_mb: unbounded
    # allocation. The exit report (diskcache-fuzz ...) counts crashes and faults.
    if cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|diskcache-fuzz)" "$log" || true
    else
        grep -E -A40 "panicked|invariant violated|ERROR: libFuzzer|SUMMARY" "$log" | head -80 || true
        echo "fuzz target $t failed: see fuzz/$log and fuzz/artifacts/$t" >&2
        status=1
    fi
done
exit "$status"
