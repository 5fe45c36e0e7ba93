#!/usr/bin/env bash
# Alert latency with real processes (issue 12): one collector with a webhook channel to a
# local receiver, N agents (one per practice, each its only machine) probing their own TCP
# "EHR server" on loopback. Phase 1 stops every EHR server at once and times each
# ehr_endpoint notification from the stop; phase 2 kills every agent with SIGKILL at once and
# times each agent_offline notification from the kill. N trials per phase in one run.
#
#   bench/alert-latency.sh [N=10] [PROBE_INTERVAL_SECS=30]
# Debug binaries by default (PROFILE=release for release ones); BENCH_NO_BUILD=1 skips the build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-10}
PROBE=${2:-30}
PROFILE=${PROFILE:-debug}
BIN=$TARGET/$PROFILE
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build $([ "$PROFILE" = release ] && echo --release) -p rounds-collector -p rounds-agent)
fi
WORK=$(mktemp -d)
HOOK_PORT=$((20000 + RANDOM % 20000))
PORT=$((HOOK_PORT + 1))

# The webhook receiver: one line per notification, "epoch_secs kind source subject".
cat >"$WORK/receiver.py" <<'PY'
import http.server, json, sys, time
out = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out.write(f"{time.time():.3f} {body.get('kind')} {body.get('source')} {body.get('subject')}\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
# The EHR servers: N listening TCP ports that accept and close.
cat >"$WORK/servers.py" <<'PY'
import socket, sys, selectors
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port))); s.listen(16); s.setblocking(False); sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept(); c.close()
PY
python3 "$WORK/receiver.py" "$HOOK_PORT" "$WORK/hook.log" & PIDS+=($!)
EHR_PORTS=()
for i in $(seq 1 "$N"); do EHR_PORTS+=($((PORT + i))); done
python3 "$WORK/servers.py" "${EHR_PORTS[@]}" & SERVERS_PID=$!; PIDS+=($SERVERS_PID)

cat >"$WORK/collector.toml" <<TOML
[[channel]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:$HOOK_PORT/hook"
TOML
mkdir -p "$WORK/data"
"$BIN/rounds-collector" --data-dir "$WORK/data" --config "$WORK/collector.toml" serve --listen "127.0.0.1:$PORT" >"$WORK/collector.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [ -s "$WORK/data/ca.pem" ] && curl -sf --cacert "$WORK/data/ca.pem" "https://localhost:$PORT/healthz" >/dev/null && break
  sleep 0.1
done

AGENTS=()
for i in $(seq 1 "$N"); do
  st="$WORK/agent$i"; mkdir -p "$st"
  token=$("$BIN/rounds-collector" --data-dir "$WORK/data" token create --practice "Practice $i" --site main | tail -1)
  "$BIN/rounds-agent" enroll --collector "https://localhost:$PORT" --token "$token" --ca "$WORK/data/ca.pem" --state-dir "$st" >/dev/null
  cat >"$st/agent.toml" <<TOML
[checks.inventory]
schedule = "0 0 * * * *"
[checks.encryption]
enabled = false
[checks.firewall]
enabled = false
[checks.updates]
enabled = false
[checks.screen_lock]
enabled = false
[checks.malware]
enabled = false
[checks.time_sync]
enabled = false
[checks.passwords]
enabled = false
[checks.accounts]
enabled = false
[checks.disk_space]
enabled = false
[probes]
interval_secs = $PROBE

[[endpoint]]
name = "EHR server"
kind = "tcp"
target = "127.0.0.1:${EHR_PORTS[$((i - 1))]}"
TOML
  "$BIN/rounds-agent" run --state-dir "$st" --config "$st/agent.toml" >"$st/log" 2>&1 &
  AGENTS+=($!); PIDS+=($!)
done

# Every agent has reported its endpoint up, then a little more for windows to fill with passes.
sleep $((PROBE + 30))

wait_for() { # KIND SOURCE COUNT TIMEOUT_SECS
  for _ in $(seq 1 $(($4 * 10))); do
    [ "$(grep -c " $1 $2 " "$WORK/hook.log" 2>/dev/null || true)" -ge "$3" ] && return 0
    sleep 0.1
  done
  return 1
}
stats() { # START SOURCE
  grep " opened $2 " "$WORK/hook.log" | awk -v t0="$1" '{print $1 - t0}' | sort -n |
    awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "trials %d, median %.1f s, worst %.1f s, best %.1f s\n", NR, m, a[NR], a[1]}'
}

echo "phase 1: stopping $N EHR servers (probe interval $PROBE s)"
T1=$(date +%s.%N); kill "$SERVERS_PID"
wait_for opened ehr_endpoint "$N" 300 || echo "not every ehr_endpoint notification arrived"
echo "ehr_endpoint: $(stats "$T1" ehr_endpoint)"

echo "phase 2: killing $N agents (heartbeat 30 s, offline after 90 s)"
T2=$(date +%s.%N); for p in "${AGENTS[@]}"; do kill -9 "$p"; done
wait_for opened agent_offline "$N" 300 || echo "not every agent_offline notification arrived"
echo "agent_offline: $(stats "$T2" agent_offline)"
echo "receiver log: $WORK/hook.log"
