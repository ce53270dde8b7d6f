#!/usr/bin/env bash
# A short, deterministic fuzzing pass for CI (see fuzz/README.md):
#   1. build every target with `cargo +nightly fuzz build` (libFuzzer, AddressSanitizer);
#   2. per target, run every input of its committed corpus and regressions once (-runs=0);
#   3. per target, a fixed run: -seed=1 -runs=N (N chosen for ~20 s per target on an idle
#      2-core development machine), cut at FUZZ_SMOKE_SECONDS (default 20) on a slower or
#      busier one.
# Prints one summary line per target and exits non-zero when a target crashes, leaks, runs
# out of memory or times out. Exits 0 with "SKIP" when the nightly toolchain or
# cargo-fuzz is not there and cannot be installed. Every step has a time limit.
#
# Environment: FUZZ_SMOKE_SCALE (default 1) multiplies every N; FUZZ_SMOKE_TARGETS limits
# the targets (space-separated names); FUZZ_TARGET_DIR builds somewhere else than
# fuzz/target (a cache kept between CI runs makes the build take seconds, not minutes).
set -u
cd "$(dirname "$0")" || exit 1

skip() {
    echo "fuzz smoke: SKIP: $*"
    exit 0
}

# name:runs for the fixed run (measured on the PVM development host, see README.md).
TARGETS="virtqueue:40000 paging:30000 loaders:500000 virtio_blk:40000 cpio:800000 lab_header:30000 gdb_packets:1000"
SCALE="${FUZZ_SMOKE_SCALE:-1}"
SECONDS_PER_TARGET="${FUZZ_SMOKE_SECONDS:-20}"

command -v cargo >/dev/null 2>&1 || skip "cargo is not installed"
command -v timeout >/dev/null 2>&1 || skip "timeout(1) is not installed"
if ! timeout 60 cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing the nightly toolchain"
    timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
        skip "the nightly toolchain is not installed and could not be installed"
fi
if ! timeout 60 cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    timeout 480 cargo install --locked cargo-fuzz >/dev/null 2>&1 ||
        skip "cargo-fuzz is not installed and could not be built"
fi
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 ||
    skip "no C++ compiler for libFuzzer"

start=$(date +%s)
echo "fuzz smoke: building the targets (cargo +nightly fuzz build)"
target_dir=${FUZZ_TARGET_DIR:-target}
if ! timeout 900 cargo +nightly fuzz build --target-dir "$target_dir"; then
    echo "fuzz smoke: FAIL: the fuzz targets do not build"
    exit 1
fi
built=$(date +%s)
echo "fuzz smoke: built in $((built - start)) s"

bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
work=$(mktemp -d "${TMPDIR:-/tmp}/vmscope-fuzz-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
summary=()

# Runs one libFuzzer command with a time limit; $1 = log file, rest = arguments.
run() {
    local log=$1
    shift
    timeout -k 10 300 "$@" >"$log" 2>&1
}

# "cov: X ft: Y" from the last status line of a log.
cov_of() {
    grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -1
}

for entry in $TARGETS; do
    name=${entry%%:*}
    runs=$((${entry##*:} * SCALE))
    if [ -n "${FUZZ_SMOKE_TARGETS:-}" ] && ! [[ " $FUZZ_SMOKE_TARGETS " == *" $name "* ]]; then
        continue
    fi
    if [ "$name" = gdb_packets ] && ! { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }; then
        summary+=("$name: SKIP (it boots a guest; /dev/kvm is not usable here)")
        continue
    fi
    bin=$bin_dir/$name
    dirs=()
    for d in corpus/$name regressions/$name; do
        [ -d "$d" ] && dirs+=("$d")
    done
    mkdir -p "$work/$name/new" "artifacts/$name"
    common=(-artifact_prefix="artifacts/$name/" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    # LeakSanitizer does not see what the vCPU threads of gdb_packets' guest hold (their start
    # closures, the bus) and reports it as leaked now and then; see README.md.
    [ "$name" = gdb_packets ] && common+=(-detect_leaks=0)
    t0=$(date +%s)
    # 1. Every committed input once.
    if ! run "$work/$name/replay.log" "$bin" "${common[@]}" -runs=0 "${dirs[@]}"; then
        echo "fuzz smoke: $name: a committed input fails:"
        tail -40 "$work/$name/replay.log"
        summary+=("$name: FAIL replaying corpus/$name and regressions/$name")
        failed=1
        continue
    fi
    n_inputs=$(find "${dirs[@]}" -type f | wc -l)
    # 2. A fixed run; new inputs go to a scratch directory, never to the committed corpus.
    if ! run "$work/$name/fuzz.log" "$bin" "${common[@]}" -seed=1 -runs="$runs" -max_total_time="$SECONDS_PER_TARGET" "$work/$name/new" "${dirs[@]}"; then
        echo "fuzz smoke: $name: crash in the fixed run (input saved under fuzz/artifacts/$name/):"
        tail -60 "$work/$name/fuzz.log"
        summary+=("$name: FAIL in the fixed run (-seed=1 -runs=$runs); see fuzz/artifacts/$name/")
        failed=1
        continue
    fi
    t1=$(date +%s)
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$name/fuzz.log" | grep -Eo '[0-9]+$' | tail -1)
    summary+=("$name: ok  $n_inputs committed inputs replayed, ${execs:-?} executions (-seed=1 -runs=$runs), $(cov_of "$work/$name/fuzz.log"), $((t1 - t0)) s")
done

end=$(date +%s)
echo
echo "fuzz smoke summary (build $((built - start)) s, total $((end - start)) s):"
for line in "${summary[@]}"; do
    echo "  $line"
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz smoke: FAIL"
    exit 1
fi
echo "fuzz smoke: ok"
