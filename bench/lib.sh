# Shared helpers of the bench/ scripts (sourced, not run). Loopback only; every process a
# script starts is stopped by its PID when the script exits.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
COLLECTOR=${COLLECTOR:-$TARGET/release/rounds-collector}
SIM=${SIM:-$TARGET/release/rounds-sim}
CLK_TCK=$(getconf CLK_TCK)
# The collector's metrics_token in the bench runs (issue 15), sent by curl and the simulator.
export ROUNDS_METRICS_TOKEN=${ROUNDS_METRICS_TOKEN:-bench-metrics-token-0123456789}
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Release builds of the collector and the simulator (skipped with BENCH_NO_BUILD=1).
build_release() {
  [ "${BENCH_NO_BUILD:-0}" = 1 ] && return
  (cd "$ROOT" && cargo build --release -p rounds-collector -p rounds-sim)
}

# start_collector DATA_DIR PORT LOG: starts `rounds-collector serve` on 127.0.0.1:PORT with
# default settings (30 s heartbeats) and waits until it answers; sets COLLECTOR_PID.
start_collector() {
  local data=$1 port=$2 log=$3
  mkdir -p "$data"
  # /metrics needs a token (issue 15); the scripts and the simulator send this one.
  # The simulator is a whole fleet behind one address (127.0.0.1) with up to 256 connections
  # (its in-flight limit): the default per-address limit (256, a practice behind one NAT
  # address) closed the 257th while a replaced connection was still being torn down (issue 16,
  # 2026-12-02 19:35 run). Real fleets come from many addresses; the limit in all stays default.
  printf 'metrics_token = "%s"\n\n[limits]\nmax_connections_per_address = 1024\n' "$ROUNDS_METRICS_TOKEN" >"$data/bench-collector.toml"
  "$COLLECTOR" --config "$data/bench-collector.toml" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
  COLLECTOR_PID=$!
  PIDS+=("$COLLECTOR_PID")
  for _ in $(seq 1 300); do
    if [ -s "$data/ca.pem" ] && curl -sf --cacert "$data/ca.pem" "https://localhost:$port/healthz" >/dev/null; then
      return 0
    fi
    kill -0 "$COLLECTOR_PID" 2>/dev/null || { echo "collector exited:"; cat "$log"; return 1; }
    sleep 0.1
  done
  echo "collector did not answer on port $port within 30 s"; return 1
}

# Practice layout for N machines: "practice<TAB>site" lines. Practices of 4 to 12 machines
# (small medical practices); those above 8 machines have a second site.
layout() {
  local n=$1 p=0 made=0 size sites m
  while [ "$made" -lt "$n" ]; do
    p=$((p + 1)); size=$((4 + p * 7 % 9)); sites=1; [ "$size" -gt 8 ] && sites=2
    for m in $(seq 0 $((size - 1))); do
      [ "$made" -ge "$n" ] && break
      if [ $((m % sites)) -eq 0 ]; then s=Main; else s=North; fi
      printf 'Practice %04d\t%s\n' "$p" "$s"; made=$((made + 1))
    done
  done
}

# make_tokens DATA_DIR N OUT: one enrollment token per machine with the collector's own CLI
# (`rounds-collector token create`), written as practice<TAB>site<TAB>token lines.
make_tokens() {
  local data=$1 n=$2 out=$3
  export BENCH_COLLECTOR=$COLLECTOR BENCH_DATA=$data
  layout "$n" | xargs -d '\n' -P "${BENCH_TOKEN_JOBS:-8}" -I{} bash -c '
    IFS=$'"'"'\t'"'"' read -r p s <<<"$1"
    t=$("$BENCH_COLLECTOR" --data-dir "$BENCH_DATA" token create --practice "$p" --site "$s" --expires 7d 2>/dev/null | tail -1)
    printf "%s\t%s\t%s\n" "$p" "$s" "$t"' _ {} >"$out"
  [ "$(wc -l <"$out")" -eq "$n" ] || { echo "expected $n tokens in $out"; return 1; }
}

# make_template DIR N: a stopped collector's data dir DIR/data holding N unused enrollment
# tokens (DIR/tokens.tsv), for runs that each start from a copy of it (TEMPLATE=DIR).
make_template() {
  local dir=$1 n=$2 port pid
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(free_port)
  start_collector "$dir/data" "$port" "$dir/collector.log"
  pid=$COLLECTOR_PID
  make_tokens "$dir/data" "$n" "$dir/tokens.tsv"
  kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# proc_sample PID: "cpu_ticks rss_kib hwm_kib" of a running process, from /proc.
proc_sample() {
  local pid=$1 ticks rss hwm
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  echo "$ticks $rss $hwm"
}

# store_bytes DATA_DIR: size of the SQLite database with its WAL.
store_bytes() { du -cb "$1"/rounds.db* 2>/dev/null | tail -1 | cut -f1; }

# free_port: a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

describe_machine() {
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/^Mem/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty'), date: $(date -u +%Y-%m-%dT%H:%MZ), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
}
