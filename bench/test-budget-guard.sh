#!/usr/bin/env bash
# Test of bench/budget-guard.sh, run by .ci/run after the guard itself (so the agent is built
# once): the guard passes at the real budgets, fails with exit 1 and names the budget when the
# binary or the peak-RSS budget is deliberately too low, and refuses bad arguments with 64.
set -uo pipefail
cd "$(dirname "$0")/.."
# The binary the guard builds and judges (bench/build-agent.sh; built already: prints its path).
bin=$(bench/build-agent.sh 2>/dev/null | tail -1)
guard=bench/budget-guard.sh
fails=0

expect() { # expect CODE PATTERN ARGS...
  local want=$1 pattern=$2; shift 2
  local out code
  out=$("$guard" "$@" 2>&1); code=$?
  if [ "$code" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL: $guard $* exited $code (want $want) without '$pattern':"; echo "$out"
    fails=$((fails + 1))
  else
    echo "ok: $guard $* -> exit $code ($pattern)"
  fi
}

[ -x "$bin" ] || "$guard" >/dev/null || { echo "FAIL: the guard does not pass at the real budgets"; exit 1; }
expect 0 "ok   peak RSS" --binary "$bin"
expect 1 "FAIL binary: .* above the budget of 1 MB" --binary "$bin" --max-binary-mb 1
expect 1 "FAIL peak RSS: .* above the budget of 2 MB" --binary "$bin" --max-rss-mb 2
expect 1 "FAIL binary" --binary "$bin" --max-binary-mb 0.5 --max-rss-mb 0.5
expect 64 "must be a number" --binary "$bin" --max-rss-mb lots
expect 1 "not found" --binary /nonexistent/rounds-agent
[ "$fails" -eq 0 ] || { echo "budget guard test: $fails failed"; exit 1; }
echo "budget guard test: all passed"
