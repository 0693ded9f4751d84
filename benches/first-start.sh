#!/usr/bin/env bash
# Footprint of `nodedrift run` from its start through the first full check and the first
# file-integrity capture (a fresh state dir), on the release binary: how long until /readyz
# answers 200, the peak resident memory (VmHWM) then and 20 s later, and the CPU time used.
# The DaemonSet's resource requests and limits (deploy/base/daemonset.yaml) rest on it.
#
#   benches/first-start.sh [HOST_ROOT=/] [RUNS=3]
#   benches/first-start.sh --node-like [RUNS=3]
#
# --node-like measures on a generated tree shaped like an AKS node's watched files: the
# aks-ubuntu-clean fixture, this machine's /etc, four VM extensions under /var/lib/waagent
# (400 small files and three 30 MiB binaries each), 150 provisioning scripts, kubelet PKI and
# static manifests: about 1 900 watched files, 385 MiB to hash.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-/}
runs=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$root" = --node-like ]; then
  root="$work/host"
  cp -a tests/fixtures/hosts/aks-ubuntu-clean "$root"
  cp -an /etc/. "$root/etc/" 2>/dev/null || true
  python3 - "$root" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(1)
def mk(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
for e in ["CustomScript-2.1.10", "AKSNode-1.171", "AzureMonitorLinuxAgent-1.33.2", "RunCommandLinux-1.0.5"]:
    for i in range(400):
        mk(f"{root}/var/lib/waagent/{e}/lib/f{i}.py", random.choice([200, 1500, 8000, 40000]))
    for i in range(3):
        mk(f"{root}/var/lib/waagent/{e}/bin/blob{i}", 30 << 20)
for i in range(150):
    mk(f"{root}/opt/azure/containers/s{i}.sh", random.choice([2000, 20000, 120000]))
for i in range(40):
    mk(f"{root}/var/lib/kubelet/pki/c{i}.pem", 2000)
for i in range(60):
    mk(f"{root}/etc/kubernetes/manifests/m{i}.yaml", 4000)
PY
fi
cargo build --release --locked --quiet
hz=$(getconf CLK_TCK)
for _ in $(seq "$runs"); do
  state=$(mktemp -d -p "$work")
  log="$state.log"
  : >"$log"
  RUST_LOG=nodedrift=info target/release/nodedrift run --host-root "$root" --state-dir "$state" \
    --listen 127.0.0.1:0 2>"$log" &
  pid=$!
  addr=
  until [ -n "$addr" ]; do
    addr=$(grep -o 'addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    sleep 0.02
  done
  t0=$(date +%s%N)
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ]; do
    sleep 0.02
  done
  t1=$(date +%s%N)
  hwm_ready=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  sleep 20
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  files=$(curl -s "http://$addr/metrics" | awk '/^nodedrift_files_tracked/ {print $2}')
  kill -TERM "$pid"
  wait "$pid" || true
  awk -v ms="$(( (t1 - t0) / 1000000 ))" -v a="$hwm_ready" -v b="$hwm" -v cpu="$cpu" \
    -v hz="$hz" -v files="$files" 'BEGIN {
      printf "ready in %d ms (%s files tracked); peak RSS %.1f MiB at ready, %.1f MiB 20 s later; CPU %.2f s\n",
        ms, files, a / 1024, b / 1024, cpu / hz }'
done
