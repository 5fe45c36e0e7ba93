#!/usr/bin/env bash
# Collector capacity: the largest number of simulated agents (30 s heartbeats, default
# hourly schedules spread out) that one collector on SQLite sustains on this machine with
# p99 latency of heartbeats and reports under 250 ms and no errors, simulator on the same
# machine. Makes the enrollment tokens for the largest step once, then runs
# bench/collector-load.sh for each step (each from a fresh copy of that store) and stops at the
# first step that fails.
#
#   STEPS="1000 2500 5000 10000 15000 20000" DURATION=600 bench/capacity.sh [OUT_DIR]
source "$(dirname "$0")/lib.sh"
out=${1:-/tmp/rounds-bench/capacity}
steps=${STEPS:-1000 2500 5000 10000 15000 20000}
dur=${DURATION:-600}
p99_budget=${P99_MS:-250}
build_release
mkdir -p "$out"
# Tokens once, for the largest step; every step starts from a copy of that store.
most=$(printf '%s\n' $steps | sort -n | tail -1)
t=$(date +%s)
make_template "$out/template" "$most"
echo "tokens: $most made once in $(( $(date +%s) - t )) s ($out/template)"
best=0
printf '%-8s %-8s %-12s %-12s %-10s %s\n' agents errors "hb p99 ms" "rep p99 ms" verdict "collector CPU" | tee "$out/capacity.txt"
for n in $steps; do
  TEMPLATE=$out/template BENCH_NO_BUILD=1 "$ROOT/bench/collector-load.sh" "$n" "$dur" "$out/$n" >/dev/null
  j=$out/$n/sim.json
  errors=$(jq '.errors' "$j")
  hb=$(jq '.requests.heartbeat.latency_ms.p99' "$j")
  rep=$(jq '.requests.report.latency_ms.p99 // 0' "$j")
  cpu=$(grep -o '= [0-9.]* % of one core' "$out/$n/summary.txt" | head -1)
  verdict=$(awk -v e="$errors" -v a="$hb" -v b="$rep" -v m="$p99_budget" 'BEGIN { print (e == 0 && a < m && b < m) ? "pass" : "fail" }')
  printf '%-8s %-8s %-12s %-12s %-10s %s\n' "$n" "$errors" "$hb" "$rep" "$verdict" "$cpu" | tee -a "$out/capacity.txt"
  [ "$verdict" = pass ] || break
  best=$n
done
echo "capacity: $best agents sustained (p99 < $p99_budget ms, no errors, $dur s per step); details in $out/<N>/summary.txt" | tee -a "$out/capacity.txt"
