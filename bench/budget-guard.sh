#!/usr/bin/env bash
# CI budget guard for the agent's footprint: fails (exit 1) when the agent's release binary
# (`cargo build --profile agent -p rounds-agent`) is larger than --max-binary-mb, or when the
# peak RSS of a short standard run (`rounds-agent check` over this machine: every check once,
# the built-in HIPAA pack evaluated) is above --max-rss-mb. Fixed budgets, not timings.
#
#   bench/budget-guard.sh [--max-binary-mb 15] [--max-rss-mb 25] [--binary PATH]
#
# MB are 10^6 bytes. Without --binary the agent is built with the `agent` profile first
# (minutes on 2 cores the first time, seconds once built). Needs GNU time (/usr/bin/time).
# Exit codes: 0 within budget, 1 a budget exceeded or the run failed, 64 bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

max_binary_mb=15
max_rss_mb=25
binary=""
usage() { echo "usage: $0 [--max-binary-mb N] [--max-rss-mb N] [--binary PATH]" >&2; exit 64; }
number() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "error: $1 must be a number of MB, got '$2'" >&2; exit 64; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --max-binary-mb) [ $# -ge 2 ] || usage; number "$1" "$2"; max_binary_mb=$2; shift 2 ;;
    --max-rss-mb) [ $# -ge 2 ] || usage; number "$1" "$2"; max_rss_mb=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (Debian package time) is needed to measure peak RSS" >&2; exit 1; }

if [ -z "$binary" ]; then
  echo "== building the agent: cargo build --profile agent -p rounds-agent"
  cargo build --profile agent -p rounds-agent
  binary="${CARGO_TARGET_DIR:-target}/agent/rounds-agent"
fi
[ -x "$binary" ] || { echo "error: agent binary $binary not found or not executable" >&2; exit 1; }

failed=0
bytes=$(stat -c %s "$binary")
max_bytes=$(awk -v mb="$max_binary_mb" 'BEGIN { printf "%d", mb * 1000000 }')
if [ "$bytes" -gt "$max_bytes" ]; then
  echo "FAIL binary: $binary is $bytes bytes, above the budget of $max_binary_mb MB ($max_bytes bytes)"
  failed=1
else
  echo "ok   binary: $binary is $bytes bytes, within $max_binary_mb MB ($max_bytes bytes)"
fi

state=$(mktemp -d)
out=$(mktemp)
trap 'rm -rf "$state" "$out"' EXIT
# `check` exits 0 (all pass), 1 (a finding fails: normal on a build machine) or 2 (the run
# itself failed); only 2 and signals are failures here.
set +e
/usr/bin/time -f '%M' -o "$out.rss" "$binary" check --format json --state-dir "$state" >"$out" 2>"$out.err"
code=$?
set -e
if [ "$code" -ge 2 ]; then
  echo "FAIL run: '$binary check' exited $code:"; cat "$out.err"; cat "$out.rss" 2>/dev/null
  rm -f "$out.rss" "$out.err"
  exit 1
fi
rss_kib=$(tail -1 "$out.rss")
rm -f "$out.rss" "$out.err"
rss_bytes=$((rss_kib * 1024))
max_rss_bytes=$(awk -v mb="$max_rss_mb" 'BEGIN { printf "%d", mb * 1000000 }')
if [ "$rss_bytes" -gt "$max_rss_bytes" ]; then
  echo "FAIL peak RSS: '$binary check' peaked at $rss_kib KiB ($rss_bytes bytes), above the budget of $max_rss_mb MB ($max_rss_bytes bytes)"
  failed=1
else
  echo "ok   peak RSS: '$binary check' peaked at $rss_kib KiB ($rss_bytes bytes), within $max_rss_mb MB"
fi
exit "$failed"
