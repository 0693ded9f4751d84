#!/usr/bin/env bash
# Whole-command timing of `nodedrift check` (process start, all inspectors, evaluation, JSON)
# on the drifted fixture and on this machine, plus the stripped release binary's size.
# Needs hyperfine (Debian: apt-get install hyperfine). Prints medians.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/release/nodedrift
echo "stripped release binary: $(stat -c %s "$bin") bytes"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# -i: exit 1 (drift) is the expected result, not a failure of the command.
hyperfine -N -i --warmup 5 --runs 200 --export-json "$out" \
  "$bin check --host-root tests/fixtures/hosts/aks-ubuntu-drifted --format json" \
  "$bin check --host-root / --format json" >/dev/null
python3 - "$out" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"median {r['median'] * 1000:6.2f} ms  {r['command']}")
PY
