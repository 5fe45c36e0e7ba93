#!/usr/bin/env bash
# Where the collector's CPU time goes under N simulated agents: runs bench/collector-load.sh N
# DURATION and, WARMUP seconds in (after the enrollment burst), records the collector with
# `perf record` for PERF_SECS seconds, using the software cpu-clock event (this VM exposes no
# hardware counters: `perf stat -e instructions true` says "not supported"). Prints the top
# symbols by self time, the top shared objects, and the top callers' chains.
#
#   CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p rounds-collector -p rounds-sim
#   BENCH_NO_BUILD=1 bench/collector-profile.sh [N=10000] [DURATION=240] [OUT_DIR]
#
# The release profile strips symbols, hence the build above (same code and optimisation, with
# the symbol table kept). WARMUP (default 60) and PERF_SECS (default 120) in the environment;
# TEMPLATE=DIR as for bench/collector-load.sh. Results: OUT_DIR/perf-top.txt, OUT_DIR/load/.
source "$(dirname "$0")/lib.sh"
n=${1:-10000}; dur=${2:-240}; out=${3:-/tmp/rounds-bench/profile-$n}
warmup=${WARMUP:-60}; secs=${PERF_SECS:-120}
command -v perf >/dev/null || { echo "error: perf (Debian package linux-perf) is needed" >&2; exit 1; }
[ $((warmup + secs)) -lt "$dur" ] || { echo "error: WARMUP + PERF_SECS must be shorter than DURATION" >&2; exit 64; }
build_release
nm "$COLLECTOR" >/dev/null 2>&1 || echo "warning: $COLLECTOR has no symbol table; build it with CARGO_PROFILE_RELEASE_STRIP=false" >&2
rm -rf "$out"; mkdir -p "$out"
BENCH_NO_BUILD=1 "$ROOT/bench/collector-load.sh" "$n" "$dur" "$out/load" >"$out/load.txt" 2>&1 &
load=$!; PIDS+=("$load")
pid=""
for _ in $(seq 1 600); do
  pid=$(pgrep -f -- "--data-dir $out/load/data serve" | head -1 || true)
  [ -n "$pid" ] && [ -e "$out/load/tokens.tsv" ] && grep -q '^tokens:' "$out/load/summary.txt" 2>/dev/null && break
  sleep 1
done
[ -n "$pid" ] || { echo "error: the collector of the load run did not start" >&2; exit 1; }
sleep "$warmup"
perf record -e cpu-clock -F 499 -g -p "$pid" -o "$out/perf.data" -- sleep "$secs" >"$out/perf-record.txt" 2>&1
wait "$load"
{
  describe_machine
  echo "run: $n agents, $dur s; perf record -e cpu-clock -F 499 -g on the collector from $warmup s for $secs s"
  echo "== top symbols by self time"
  perf report -i "$out/perf.data" --stdio --no-children --sort symbol --percent-limit 0.7 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
  echo "== by shared object"
  perf report -i "$out/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
  echo "== load run"
  cat "$out/load/summary.txt"
} | tee "$out/perf-top.txt"
