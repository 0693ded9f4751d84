#!/usr/bin/env bash
# Forensic snapshot benchmark: `nodedrift snapshot` of this machine's `/` side by side with
# Debian's sosreport, in one run, on one warm cache.
#
# Usage (from the repository root):  benches/snapshot-vs-sosreport.sh [ROUNDS]
#   ROUNDS         rounds, default 5 (or $ROUNDS); figures are medians over them
#   WORK           work directory, default /var/tmp/nodedrift-snapshot-bench
#   NODEDRIFT_BIN  the binary measured, default target/release/nodedrift (built here)
#   SOS_PLUGINS    comma-separated sos plugins to run (`sos report -o ...`); default: every
#                  plugin sos enables on this machine (its full default run)
#
# What it does, without network access (apart from installing missing Debian packages):
#  1. installs what is missing (sosreport, GNU time) and builds `cargo build --release --locked`;
#  2. captures a file-integrity baseline of `/` into $WORK/state (`nodedrift baseline capture
#     --profile generic`), as on a node where the agent runs, so the snapshot verifies the
#     watched files and lists the baseline; then per round, alternating which tool goes first:
#       nodedrift snapshot --host-root / --state-dir $WORK/state --out $WORK/nd-N.tar.gz
#       sos report --batch --quiet -z gzip --tmp-dir $WORK/sos-N   (sos 4.0; 4.x the same)
#     each under GNU time (wall time from bash $EPOCHREALTIME, max RSS from time's %M; without
#     GNU time, VmHWM sampled every 20 ms from /proc/<pid>/status);
#     then `nodedrift snapshot verify` on the bundle (not timed);
#  3. measures the binary doing nothing (`nodedrift --version`) for the RSS it has anyway, so
#     "extra RSS" is what taking the snapshot adds;
#  4. prints a markdown table of medians and the sos/nodedrift ratios, and the targets:
#     nodedrift <= 10 s wall and <= 64 MiB extra resident memory.
#
# The state dir has no ledger (no agent ran): the snapshot records that in errors.json.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
repo=$(pwd)

rounds=${1:-${ROUNDS:-5}}
work=${WORK:-/var/tmp/nodedrift-snapshot-bench}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 64; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -rf "$work"/nd-* "$work"/sos-* "$work/state"

# --- 1. tools and build ------------------------------------------------------------------------
need=()
command -v sos >/dev/null || command -v sosreport >/dev/null || need+=(sosreport)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y "${need[@]}" ||
    { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y "${need[@]}"; }
fi
gnu_time=""
if [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then
  gnu_time=/usr/bin/time
fi
sos_cmd=(sos report)
command -v sos >/dev/null || sos_cmd=(sosreport)
sos_version=$("${sos_cmd[0]}" --version 2>/dev/null | head -1 || true)
[ -n "$sos_version" ] || sos_version=$(dpkg-query -W -f='${Version}' sosreport 2>/dev/null || echo "?")

echo "building (release; the first build takes several minutes)"
cargo build --release --locked
bin=${NODEDRIFT_BIN:-$repo/target/release/nodedrift}

# --- measuring -------------------------------------------------------------------------------
# run_measured OUT_PREFIX CMD...: runs CMD, writes "<wall seconds> <max RSS KiB> <exit code>".
run_measured() {
  local out=$1; shift
  local t0 t1 rc=0 rss=0
  if [ -n "$gnu_time" ]; then
    t0=$EPOCHREALTIME
    "$gnu_time" -f %M -o "$out.rss" "$@" >"$out.stdout" 2>"$out.stderr" || rc=$?
    t1=$EPOCHREALTIME
    rss=$(tail -1 "$out.rss")
  else
    t0=$EPOCHREALTIME
    "$@" >"$out.stdout" 2>"$out.stderr" &
    local pid=$! hwm
    while kill -0 "$pid" 2>/dev/null; do
      hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$hwm" ] && [ "$hwm" -gt "$rss" ] && rss=$hwm
      sleep 0.02
    done
    wait "$pid" || rc=$?
    t1=$EPOCHREALTIME
  fi
  echo "$(echo "$t1 - $t0" | bc -l) $rss $rc"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

sos_args=(--batch --quiet -z gzip)
[ -n "${SOS_PLUGINS:-}" ] && sos_args+=(-o "$SOS_PLUGINS")
sos_scope=${SOS_PLUGINS:-"every plugin sos enables here (full default run)"}

echo "capturing a file baseline of / (generic profile) into $work/state"
"$bin" baseline capture --host-root / --state-dir "$work/state" --profile generic >"$work/capture.out" ||
  [ $? -eq 3 ] # some watched paths unreadable: still a baseline

results=$work/results.tsv
: >"$results"
idle=$(run_measured "$work/idle" "$bin" --version)
idle_rss=$(echo "$idle" | awk '{print $2}')

for i in $(seq 1 "$rounds"); do
  order=(nd sos)
  [ $((i % 2)) -eq 0 ] && order=(sos nd)
  for tool in "${order[@]}"; do
    case $tool in
      nd)
        r=$(run_measured "$work/nd-$i" "$bin" snapshot --host-root / --state-dir "$work/state" \
          --out "$work/nd-$i.tar.gz" --id "bench-$i")
        size=$(stat -c %s "$work/nd-$i.tar.gz" 2>/dev/null || echo 0)
        if ! "$bin" snapshot verify "$work/nd-$i.tar.gz" >/dev/null 2>"$work/nd-$i.verify"; then
          echo "nodedrift bundle $i did not verify:" >&2; cat "$work/nd-$i.verify" >&2; exit 1
        fi
        ;;
      sos)
        mkdir -p "$work/sos-$i"
        r=$(run_measured "$work/sos-$i" "${sos_cmd[@]}" "${sos_args[@]}" --tmp-dir "$work/sos-$i")
        size=$(find "$work/sos-$i" -maxdepth 1 -name 'sosreport-*.tar.*' ! -name '*.md5' \
          ! -name '*.sha256' -printf '%s\n' | head -1)
        size=${size:-0}
        ;;
    esac
    read -r wall rss rc <<<"$r"
    [ "$rc" -eq 0 ] || { echo "$tool round $i exited $rc:" >&2; tail -5 "$work/$tool-$i.stderr" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$i" "$wall" "$rss" "$size" >>"$results"
    printf 'round %s %-4s %7.2f s  %7.1f MiB  %s bytes\n' "$i" "$tool" "$wall" \
      "$(echo "$rss / 1024" | bc -l)" "$size"
  done
done

med() { awk -v t="$1" -v c="$2" -F'\t' '$1 == t {print $c}' "$results" | median; }
nd_wall=$(med nd 3); nd_rss=$(med nd 4); nd_size=$(med nd 5)
sos_wall=$(med sos 3); sos_rss=$(med sos 4); sos_size=$(med sos 5)
nd_extra=$((${nd_rss%.*} - idle_rss))
mib() { echo "scale=1; $1 / 1024" | bc -l; }
ok() { if [ "$(echo "$1" | bc -l)" -eq 1 ]; then echo pass; else echo FAIL; fi; }
entries=$(tar tzf "$work/nd-1.tar.gz" | wc -l)

echo
echo "## nodedrift snapshot vs sosreport ($rounds rounds, medians)"
echo
echo "| | wall time | max RSS | extra RSS | bundle | |"
echo "|---|---|---|---|---|---|"
printf '| nodedrift snapshot | %.2f s | %s MiB | %s MiB | %s KiB, %s entries | |\n' \
  "$nd_wall" "$(mib "$nd_rss")" "$(mib "$nd_extra")" "$((${nd_size%.*} / 1024))" "$entries"
printf '| sos report (%s) | %.2f s | %s MiB | | %s KiB | %s |\n' \
  "$sos_version" "$sos_wall" "$(mib "$sos_rss")" "$((${sos_size%.*} / 1024))" "$sos_scope"
printf '| ratio sos / nodedrift | %.1fx | %.1fx | | %.1fx | |\n' \
  "$(echo "$sos_wall / $nd_wall" | bc -l)" "$(echo "$sos_rss / $nd_rss" | bc -l)" \
  "$(echo "$sos_size / $nd_size" | bc -l)"
echo
echo "targets: nodedrift wall <= 10 s: $(ok "$nd_wall <= 10"); extra RSS <= 64 MiB: $(ok "$nd_extra <= 65536")"
echo "state dir: file baseline of $(awk '/^captured/ {print $2}' "$work/capture.out") entries, no ledger"
echo "idle binary (nodedrift --version): $(mib "$idle_rss") MiB; memory from ${gnu_time:-VmHWM sampling}"
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); processes: $(ls /proc | grep -c '^[0-9]')"
echo "nodedrift $(git -C "$repo" rev-parse --short HEAD) ($("$bin" --version)); raw figures: $results"
