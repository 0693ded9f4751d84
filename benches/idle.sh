#!/usr/bin/env bash
# Idle footprint of `nodedrift run`: resident memory and CPU over a period, on a host root
# (default: this machine, `/`). Usage: benches/idle.sh [SECONDS=600] [HOST_ROOT=/]
# Prints the median and maximum RSS of samples taken every 5 s, and the CPU used over the
# whole period as a percentage of one core (utime+stime from /proc/<pid>/stat).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
root=${2:-/}
cargo build --release --locked --quiet
state=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$state"' EXIT
NODEDRIFT_STATE_DIR="$state" target/release/nodedrift run --host-root "$root" --listen 127.0.0.1:0 \
  >/dev/null 2>&1 &
pid=$!
sleep 10 # start-up and first full check are not "idle"
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
samples=()
end=$((SECONDS + secs))
while [ "$SECONDS" -lt "$end" ]; do
  samples+=("$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")")
  sleep 5
done
t1=$(ticks)
printf '%s\n' "${samples[@]}" | sort -n | awk -v secs="$secs" -v used="$((t1 - t0))" -v hz="$hz" '
  { v[NR] = $1 }
  END {
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "idle %d s: RSS median %.1f MiB, max %.1f MiB (%d samples); CPU %.3f%% of one core\n",
      secs, med / 1024, v[NR] / 1024, NR, used / hz / secs * 100
  }'
