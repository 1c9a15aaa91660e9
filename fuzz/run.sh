#!/usr/bin/env bash
# Runs Pulsewire's fuzz targets one after another, each for FUZZ_SECONDS (default 20), and fails
# on the first crash (a panic or a broken property; libFuzzer saves the input under
# fuzz/artifacts/<target>/). With arguments, runs only the targets named.
#
#   fuzz/run.sh                                   # CI: every target, 20 s each
#   FUZZ_SECONDS=600 nice -n 19 fuzz/run.sh       # the long run (docs/security.md, "Fuzzing")
#   FUZZ_SECONDS=60 fuzz/run.sh selector          # one target
#
# cargo-fuzz drives libFuzzer, which needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. New inputs go to a scratch corpus under the target directory;
# the seeds checked in under fuzz/corpus/<target>/ are only read.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
all=(client_frame line_protocol json_ingest selector)
[ "$#" -gt 0 ] && targets=("$@") || targets=("${all[@]}")

export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# No sanitizer: Pulsewire's crates forbid unsafe code, so what can go wrong here is a panic or a
# broken property, which libFuzzer sees without one; the builds and runs are about twice as fast.
build=(--sanitizer none)
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== fuzz: building ${targets[*]}"
cargo fuzz build "${build[@]}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
total=0
for t in "${targets[@]}"; do
    scratch="$target_dir/fuzz-corpus/$t"
    mkdir -p "$scratch"
    echo "== fuzz: $t for ${seconds}s"
    if ! cargo fuzz run "${build[@]}" "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $t crashed; the input is under fuzz/artifacts/$t/"
        exit 1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' "$log" | tail -n 1)"
    grep -E '^(#[0-9]+ +DONE|stat::)' "$log" || true
    echo "fuzz: $t: ${runs:-?} runs in ${seconds}s, no crash"
    total=$((total + ${runs:-0}))
done
echo "fuzz: ${#targets[@]} targets, $total runs, no crash"
