#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60), one after another, on
# one core each, and prints per target: seconds, executions, corpus size
# and whether it crashed. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1 (after the others).
#
#   scripts/fuzz/run-all.sh [SECONDS] [TARGET...]
#
# cargo fuzz needs nightly features: on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them (-Zsanitizer=address). Built with debug assertions, so
# arithmetic overflow is a crash too.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --version 0.13.1 --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# cargo fuzz has no --locked: check the committed fuzz/Cargo.lock first.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null || exit 2
cargo fuzz build -O -a || exit 2
bin=fuzz/target/x86_64-unknown-linux-gnu/release
scripts/fuzz/seed.sh
mkdir -p fuzz/logs
failed=()
printf '%-18s %6s %12s %8s %s\n' target secs execs corpus result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log=fuzz/logs/$t.log
    # The binary cargo fuzz built (cargo fuzz run would rebuild on every
    # source change). -timeout: an input running 10 s is a hang, a crash.
    t0=$(date +%s)
    "$bin/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - t0))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="CRASH (rc $rc, see $log, fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    printf '%-18s %6s %12s %8s %s\n' "$t" "$took" "${execs:-?}" "$corpus" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}"
    exit 1
fi
