#!/usr/bin/env bash
# Builds the fuzz targets and runs them one after the other (JOBS=n: n at a time).
#
#   fuzz/run.sh short [target...]   each target for SHORT_SECONDS (default 20; CI: 10)
#   fuzz/run.sh long [target...]    each target until RUNS executions (default 10 000 000);
#                                   JOBS=n runs n targets at a time
#   fuzz/run.sh list                the targets
#
# Uses rustup's nightly toolchain when installed; otherwise the stable one with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags). Installs cargo-fuzz when missing. Each target fuzzes
# a scratch copy of its committed seed corpus (fuzz/work/<target>, reused by later runs), so
# the seeds in fuzz/corpus/ only change when someone minimises them on purpose (README in
# fuzz/). A crash, hang (-timeout) or out-of-memory (-rss_limit_mb, -malloc_limit_mb) leaves
# its input in fuzz/artifacts/<target>/ and makes the script exit non-zero after the others
# ran.
#
# One line per target goes to fuzz/results/<mode>-<UTC date>.tsv (and to $RESULTS_COPY when
# set): target, executions, seconds, result (ok, crash, or the exit status), peak RSS in MB.
#
# Sanitizer: none. The agent has no `unsafe` outside agent/src/sys/, which no target reaches,
# so AddressSanitizer would only re-check what the compiler already guarantees, at about
# twice the run time and a longer build. What fuzzing finds here are panics (index or slice
# out of range, overflow with debug assertions on, which cargo-fuzz enables in -O builds),
# hangs and unbounded memory, and libFuzzer itself catches all three. A dependency bug in C
# (ring is not on any parse path) would want `--sanitizer address`: SANITIZER=address.
#
# Nice and one target at a time: the machine is shared with other builds. NICE=0 to not;
# JOBS=n runs n targets at once (one per core is what helps: each target is one process).
set -euo pipefail

cd "$(dirname "$0")"
mode="${1:-short}"
shift || true

targets_all() {
    sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^nodedrift-fuzz$'
}

if [[ $mode == list ]]; then
    targets_all
    exit 0
fi
if [[ $mode != short && $mode != long ]]; then
    echo "usage: $0 short|long|list [target...]" >&2
    exit 2
fi

short_seconds="${SHORT_SECONDS:-20}"
runs="${RUNS:-10000000}"
sanitizer="${SANITIZER:-none}"
jobs="${JOBS:-1}"
nice_cmd=(nice -n "${NICE:-19}")
# Targets over host files write each input into a scratch tree under the temp dir: on tmpfs
# that costs no writeback (ext4 flushes a truncated-and-rewritten file on close: on disk the
# kube-proxy target ran twenty times slower).
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then
    export TMPDIR=/dev/shm
fi

# Largest input per target: a little above the largest real file of its kind.
max_len() {
    case "$1" in
        journal) echo 1048576 ;;     # zero runs encoded: a few KB expand to MBs
        baseline | kubelet_config | containerd_config | config) echo 65536 ;;
        kube_proxy_config | redact | sysctl_conf | cni | mountinfo | kubelet_flags) echo 32768 ;;
        proc_files | ledger_records | fanotify_events | utmp) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    "${nice_cmd[@]}" cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(targets_all)
fi

build_start=$(date +%s)
# `cargo fuzz build` takes one target or none (all): all when several were asked for.
one=()
if [[ ${#targets[@]} -eq 1 ]]; then
    one=("${targets[0]}")
fi
"${nice_cmd[@]}" cargo "${toolchain[@]}" fuzz build -O --sanitizer "$sanitizer" "${one[@]}" 2>&1 | tail -n 3
echo "build: $(($(date +%s) - build_start)) s"

mkdir -p results
results="results/$mode-$(date -u +%Y-%m-%dT%H%M%S).tsv"
printf 'target\texecs\tseconds\tresult\tpeak_rss_mb\n' >"$results"
# One target: its log in results/<target>.log, its line in the results; fails unless ok.
run_one() {
    local t=$1 limit log start status seconds execs rss result line
    mkdir -p "work/$t" "artifacts/$t"
    if [[ $mode == short ]]; then
        limit=(-max_total_time="$short_seconds")
    else
        limit=(-runs="$runs")
    fi
    log="results/$t.log"
    start=$(date +%s)
    set +e
    "${nice_cmd[@]}" cargo "${toolchain[@]}" fuzz run -O --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        "${limit[@]}" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        >"$log" 2>&1
    status=$?
    set -e
    seconds=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    if [[ $status -eq 0 ]]; then
        result=ok
    elif grep -qE '^(==[0-9]+== ERROR: libFuzzer|SUMMARY: libFuzzer)' "$log"; then
        result=crash
    else
        result="exit-$status"
    fi
    line=$(printf '%s\t%s\t%s\t%s\t%s' "$t" "${execs:-?}" "$seconds" "$result" "${rss:-?}")
    echo "$line" | tee -a "$results"
    if [[ -n ${RESULTS_COPY:-} ]]; then
        echo "$line	$mode	$(date -u +%FT%TZ)" >>"$RESULTS_COPY"
    fi
    if [[ $result != ok ]]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 5 >&2 || true
    fi
    [[ $result == ok ]]
}

failed=0
if [[ $jobs -le 1 ]]; then
    for t in "${targets[@]}"; do
        run_one "$t" || failed=1
    done
else
    # JOBS targets at a time, each starting as soon as one ends (a line per target is one
    # short append, so the results file takes the writers in any order).
    running=0
    for t in "${targets[@]}"; do
        if [[ $running -ge $jobs ]]; then
            wait -n || failed=1
            running=$((running - 1))
        fi
        run_one "$t" &
        running=$((running + 1))
    done
    while [[ $running -gt 0 ]]; do
        wait -n || failed=1
        running=$((running - 1))
    done
fi
echo "results: fuzz/$results"
exit "$failed"
