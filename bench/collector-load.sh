#!/usr/bin/env bash
# Collector CPU, memory and store growth under N simulated agents for D seconds, simulator on
# the same machine. Starts a fresh collector (release build, SQLite, default settings: 30 s
# heartbeats) on a free loopback port, creates one enrollment token per agent with the
# collector's CLI, runs rounds-sim, samples the collector from /proc every 10 s.
#
#   bench/collector-load.sh N DURATION_SECS [OUT_DIR]      e.g. bench/collector-load.sh 1000 600
#
# Extra simulator options in SIM_ARGS (e.g. SIM_ARGS=--faults); TEMPLATE=DIR starts from a copy
# of DIR/data and DIR/tokens.tsv (made by bench/capacity.sh) instead of creating tokens. Results: OUT_DIR/summary.txt
# (also printed), sim.json (rounds-sim --json), samples.csv, collector.log.
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { echo "usage: $0 N DURATION_SECS [OUT_DIR]" >&2; exit 64; }
n=$1; dur=$2; out=${3:-/tmp/rounds-bench/load-$n}
build_release
rm -rf "$out"; mkdir -p "$out"
{
  describe_machine
  echo "run: $n agents, $dur s, rounds-sim ${SIM_ARGS:-}"
} | tee "$out/summary.txt"

port=$(free_port)
if [ -n "${TEMPLATE:-}" ]; then
  # A copy of a store whose tokens were made once (bench/capacity.sh: make_template), and its
  # first N tokens: every step of a ramp starts from the same fresh store without minutes of
  # token creation each.
  [ "$(wc -l <"$TEMPLATE/tokens.tsv")" -ge "$n" ] || { echo "$TEMPLATE/tokens.tsv has fewer than $n tokens"; exit 1; }
  cp -a "$TEMPLATE/data" "$out/data"
  start_collector "$out/data" "$port" "$out/collector.log"
  head -n "$n" "$TEMPLATE/tokens.tsv" >"$out/tokens.tsv"
  echo "tokens: the first $n of $TEMPLATE/tokens.tsv (made once with 'rounds-collector token create')" | tee -a "$out/summary.txt"
else
  start_collector "$out/data" "$port" "$out/collector.log"
  t=$(date +%s.%N)
  make_tokens "$out/data" "$n" "$out/tokens.tsv"
  echo "tokens: $n created with 'rounds-collector token create' in $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}') s" | tee -a "$out/summary.txt"
fi
store0=$(store_bytes "$out/data")

(
  echo "secs,cpu_ticks,rss_kib,hwm_kib,store_bytes"
  start=$(date +%s)
  while kill -0 "$COLLECTOR_PID" 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(proc_sample "$COLLECTOR_PID" | tr ' ' ','),$(store_bytes "$out/data")"
    sleep 10
  done
) >"$out/samples.csv" &
PIDS+=($!)

read -r ticks0 _ _ <<<"$(proc_sample "$COLLECTOR_PID")"
w0=$(date +%s.%N)
# shellcheck disable=SC2086
/usr/bin/time -v -o "$out/sim.time" "$SIM" --collector "https://localhost:$port" --ca "$out/data/ca.pem" \
  --tokens "$out/tokens.tsv" --agents "$n" --duration-secs "$dur" --json "$out/sim.json" ${SIM_ARGS:-} \
  >"$out/sim.txt" 2>"$out/sim.err"
w1=$(date +%s.%N)
read -r ticks1 rss1 hwm1 <<<"$(proc_sample "$COLLECTOR_PID")"
store1=$(store_bytes "$out/data")

{
  cat "$out/sim.txt"
  awk -v t0="$ticks0" -v t1="$ticks1" -v hz="$CLK_TCK" -v w0="$w0" -v w1="$w1" \
    'BEGIN { printf "collector CPU: %.1f s over %.0f s wall = %.1f %% of one core (machine: 2 cores)\n", (t1 - t0) / hz, w1 - w0, 100 * (t1 - t0) / hz / (w1 - w0) }'
  echo "collector RSS at end: $((rss1 / 1024)) MiB, peak (VmHWM): $((hwm1 / 1024)) MiB"
  echo "store: $store0 bytes before the run, $store1 after: +$(( (store1 - store0) / 1024 / 1024 )) MiB ($(( (store1 - store0) / n )) bytes per agent)"
  echo "simulator: $(grep 'Percent of CPU' "$out/sim.time" | cut -d: -f2 | xargs) of one core, peak RSS $(( $(grep 'Maximum resident' "$out/sim.time" | cut -d: -f2) / 1024 )) MiB"
} | tee -a "$out/summary.txt"
