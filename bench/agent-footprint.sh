#!/usr/bin/env bash
# Agent footprint beside prometheus-node-exporter, in the same run: binary size, start-up time
# (process start until the collector counted the agent's first heartbeat; for the exporter,
# until its first /metrics answer), peak and steady RSS, CPU share over DURATION seconds at
# default schedules (agent: heartbeat every 30 s, every check at start and hourly; exporter:
# scraped every 15 s, Prometheus' usual interval).
#
#   bench/agent-footprint.sh [DURATION_SECS=600] [OUT_DIR]
#
# Needs prometheus-node-exporter (apt-get install prometheus-node-exporter); without it the
# agent is measured alone and the script says so.
source "$(dirname "$0")/lib.sh"
dur=${1:-600}; out=${2:-/tmp/rounds-bench/footprint}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
# The agent that ships (bench/build-agent.sh: static musl), unless AGENT names another binary.
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  build_release
  AGENT=${AGENT:-$("$ROOT/bench/build-agent.sh" | tail -1)}
fi
AGENT=${AGENT:-$TARGET/x86_64-unknown-linux-musl/agent/rounds-agent}
rm -rf "$out"; mkdir -p "$out"
{ describe_machine; echo "run: agent footprint over $dur s"; } | tee "$out/summary.txt"

port=$(free_port)
start_collector "$out/data" "$port" "$out/collector.log"
token=$("$COLLECTOR" --data-dir "$out/data" token create --practice Bench --site Lab 2>/dev/null | tail -1)
"$AGENT" enroll --collector "https://localhost:$port" --token "$token" --ca "$out/data/ca.pem" --state-dir "$out/agent" >/dev/null
heartbeats() { curl -sf --cacert "$out/data/ca.pem" -H "Authorization: Bearer $ROUNDS_METRICS_TOKEN" "https://localhost:$port/metrics" | awk '/^rounds_heartbeats_total/ {print $2}'; }
now() { date +%s.%N; }
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.0f", (b - a) * 1000}'; }

t=$(now)
"$AGENT" run --state-dir "$out/agent" >"$out/agent.log" 2>&1 &
agent=$!; PIDS+=("$agent")
until [ "$(heartbeats)" -ge 1 ] 2>/dev/null; do sleep 0.01; done
agent_start=$(ms_since "$t")

exporter=""
if [ -x "$NODE_EXPORTER" ]; then
  eport=$(free_port)
  t=$(now)
  "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$eport" >"$out/node-exporter.log" 2>&1 &
  exporter=$!; PIDS+=("$exporter")
  until curl -sf "http://127.0.0.1:$eport/metrics" >/dev/null; do sleep 0.01; done
  exporter_start=$(ms_since "$t")
  ( while kill -0 "$exporter" 2>/dev/null; do curl -sf "http://127.0.0.1:$eport/metrics" >/dev/null; sleep 15; done ) &
  PIDS+=($!)
else
  echo "prometheus-node-exporter not installed: measuring the agent alone" | tee -a "$out/summary.txt"
fi

echo "secs,agent_ticks,agent_rss_kib,agent_hwm_kib,exporter_ticks,exporter_rss_kib,exporter_hwm_kib" >"$out/samples.csv"
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$dur" ]; do
  line="$(( $(date +%s) - start )),$(proc_sample "$agent" | tr ' ' ',')"
  if [ -n "$exporter" ]; then line="$line,$(proc_sample "$exporter" | tr ' ' ',')"; else line="$line,,,"; fi
  echo "$line" >>"$out/samples.csv"
  sleep 5
done

report() { # report NAME COLUMN_OFFSET BINARY START_MS
  awk -F, -v name="$1" -v c="$2" -v hz="$CLK_TCK" -v bin="$3" -v start="$4" 'NR > 1 {
      n++; secs[n] = $1; ticks[n] = $(c); rss[n] = $(c + 1); hwm = $(c + 2)
    } END {
      # steady: median RSS of the samples after the first minute
      m = 0; for (i = 1; i <= n; i++) if (secs[i] >= 60) v[++m] = rss[i]
      asort(v); steady = m ? v[int((m + 1) / 2)] : rss[n]
      cpu = 100 * (ticks[n] - ticks[1]) / hz / (secs[n] - secs[1])
      printf "%-16s binary %.1f MB, start-up %d ms, peak RSS %.1f MB, steady RSS %.1f MB, CPU %.3f %% of one core (%d ticks over %d s)\n",
        name, bin / 1e6, start, hwm * 1024 / 1e6, steady * 1024 / 1e6, cpu, ticks[n] - ticks[1], secs[n] - secs[1]
    }' "$out/samples.csv"
}
{
  report rounds-agent 2 "$(stat -c %s "$AGENT")" "$agent_start"
  [ -n "$exporter" ] && report node-exporter 5 "$(stat -c %s "$NODE_EXPORTER")" "$exporter_start"
  echo "agent heartbeats counted by the collector: $(heartbeats)"
} | tee -a "$out/summary.txt"
