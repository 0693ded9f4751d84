#!/usr/bin/env bash
# Builds the fuzz targets and runs them one after the other (JOBS=n: n at a time).
#
#   fuzz/run.sh short [target...]   each target for SHORT_SECONDS (default 20; CI: 10)
#   fuzz/run.sh long [target...]    each target until RUNS executions (default 10 000 000);
#                                   JOBS=n runs n targets at a time; WORKERS=n runs each
#                                   target as n processes sharing its corpus, RUNS/n each
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
# With WORKERS=n: the executions of the n processes added up, the peak RSS of the largest
# (each process has its own), a result other than ok if any process's was; each process logs
# to results/<target>.<i>.log. libFuzzer re-reads the corpus directory every few seconds
# (-reload), so the processes build on what the others found.
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
workers="${WORKERS:-1}"
if ! [[ $jobs =~ ^[1-9][0-9]*$ && $workers =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]]; then
    echo "JOBS, WORKERS and RUNS are positive integers" >&2
    exit 2
fi
if [[ $mode == short && $workers -gt 1 ]]; then
    echo "WORKERS is for long runs" >&2
    exit 2
fi
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
# One libFuzzer process over target $1's corpus, logging to $2.
fuzz_one() {
    local t=$1 log=$2 limit
    if [[ $mode == short ]]; then
        limit=(-max_total_time="$short_seconds")
    else
        limit=(-runs="$(((runs + workers - 1) / workers))")
    fi
    "${nice_cmd[@]}" cargo "${toolchain[@]}" fuzz run -O --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        "${limit[@]}" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        >"$log" 2>&1
}

# One target: its log in results/<target>.log (results/<target>.<i>.log per worker), its
# line in the results; fails unless ok.
run_one() {
    local t=$1 start seconds execs=0 rss=0 result=ok line i pid log n r pids=() logs=() statuses=()
    mkdir -p "work/$t" "artifacts/$t"
    if [[ $workers -le 1 ]]; then
        logs=("results/$t.log")
    else
        for ((i = 1; i <= workers; i++)); do
            logs+=("results/$t.$i.log")
        done
    fi
    start=$(date +%s)
    for log in "${logs[@]}"; do
        fuzz_one "$t" "$log" &
        pids+=($!)
    done
    # Every worker's status, not only the first failure's.
    for pid in "${pids[@]}"; do
        set +e
        wait "$pid"
        statuses+=($?)
        set -e
    done
    seconds=$(($(date +%s) - start))
    for i in "${!logs[@]}"; do
        log=${logs[$i]}
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        r=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
        if [[ -z $n ]]; then
            execs="?"
        elif [[ $execs != "?" ]]; then
            execs=$((execs + n))
        fi
        if [[ -n $r && $r -gt $rss ]]; then
            rss=$r
        fi
        if [[ ${statuses[$i]} -ne 0 ]]; then
            if grep -qE '^(==[0-9]+== ERROR: libFuzzer|SUMMARY: libFuzzer)' "$log"; then
                result=crash
            elif [[ $result != crash ]]; then
                result="exit-${statuses[$i]}"
            fi
        fi
    done
    if [[ $rss -eq 0 ]]; then
        rss="?"
    fi
    line=$(printf '%s\t%s\t%s\t%s\t%s' "$t" "$execs" "$seconds" "$result" "$rss")
    echo "$line" | tee -a "$results"
    if [[ -n ${RESULTS_COPY:-} ]]; then
        echo "$line	$mode	$(date -u +%FT%TZ)" >>"$RESULTS_COPY"
    fi
    if [[ $result != ok ]]; then
        grep -hE 'panicked|ERROR|SUMMARY|Test unit written' "${logs[@]}" | head -n 5 >&2 || true
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
