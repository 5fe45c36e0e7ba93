#!/usr/bin/env bash
# The Windows agent (issue 19) under wine: the cross-built rounds-agent.exe prints its version,
# validates a configuration (and refuses a bad one naming the file, exit 64), refuses
# `run --service` from a console, and runs as a real service under wine's service control
# manager: `sc start` brings it to RUNNING through the service control dispatcher (no error
# 1053), `sc stop` cancels the agent's shutdown token and it reports STOPPED after logging a
# clean exit; a service whose state dir is not enrolled stops by itself with exit code 1 in
# its log.
#
#   agent/tests/windows/service-under-wine.sh EXE
#
# EXE is target/x86_64-pc-windows-gnu/<profile>/rounds-agent.exe. Needs wine (Debian:
# wine64), x86_64-w64-mingw32-gcc and openssl. Wine 8 (Debian 12) has no
# bcryptprimitives.dll, which Rust's std links for ProcessPrng: the test builds a stand-in
# from advapi32's RtlGenRandom into the throwaway prefix (a wine gap, not something Windows
# needs). Wine's sc.exe does not keep a stopped service's exit code (it reports 1077 once the
# process is gone), so the exit code is read from the agent's log; the mapping to the SCM's
# exit codes is unit-tested (service::windows::tests).
#
# Prints "N passed, 0 failed" at the end; exits 1 at the first failed check.
set -euo pipefail
exe_unix="$(realpath "$1")"
work="$(mktemp -d)"
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
cleanup() { wineserver -k >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; [ -f "${log:-/nonexistent}" ] && sed 's/^/  log: /' "$log" >&2; echo "$passed passed, 1 failed"; exit 1; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

wineboot -i >/dev/null 2>&1
# Wine's SCM waits 10 s for a service's dispatcher by default, Windows 30 s; on a loaded CI
# machine starting a debug build under wine can take longer. Read by services.exe when it
# starts: restart the prefix's wineserver.
wine reg add 'HKLM\System\CurrentControlSet\Control' /v ServicesPipeTimeout /t REG_DWORD /d 120000 /f >/dev/null 2>&1
wineserver -k >/dev/null 2>&1 || true
wineserver -w >/dev/null 2>&1 || true
sys32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -f "$sys32/bcryptprimitives.dll" ]; then
  cat > "$work/bcp.c" <<'EOF'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
EOF
  x86_64-w64-mingw32-gcc -shared -O2 -o "$sys32/bcryptprimitives.dll" "$work/bcp.c" -ladvapi32
fi
# The agent as Windows sees it: C:\rounds\rounds-agent.exe.
mkdir -p "$WINEPREFIX/drive_c/rounds"
cp "$exe_unix" "$WINEPREFIX/drive_c/rounds/rounds-agent.exe"
exe='C:\rounds\rounds-agent.exe'
agent() { wine "$exe" "$@"; }

out=$(agent --version)
check "--version prints the version ($out)" grep -qx 'rounds-agent [0-9][0-9.]*' <<<"$out"

cfg="$WINEPREFIX/drive_c/rounds/agent.toml"
printf 'heartbeat_interval_secs = 30\n' > "$cfg"
out=$(agent validate --config 'C:\rounds\agent.toml')
check "validate accepts a good configuration" grep -q 'agent.toml: ok' <<<"$out"
printf 'heartbeat_interval_secs = "soon"\n' > "$cfg"
set +e; out=$(agent validate --config 'C:\rounds\agent.toml' 2>&1); code=$?; set -e
check "validate refuses a bad configuration with exit 64 ($code)" test "$code" = 64
check "the refusal names the file" grep -q 'agent.toml' <<<"$out"

set +e; out=$(agent run --state-dir 'C:\rounds\console' --service 2>&1); code=$?; set -e
check "run --service from a console exits 64 ($code)" test "$code" = 64
check "... and says it needs the service control manager" grep -q 'not started by the service control manager' <<<"$out"

# An enrolled state dir (the collector is down: the agent keeps running and retrying).
state="$WINEPREFIX/drive_c/rounds/state"
mkdir -p "$state"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca-key.pem" \
  -out "$state/ca.pem" -days 2 -subj /CN=wine-test-ca 2>/dev/null
cat > "$state/identity.json" <<'EOF'
{"collector":"https://127.0.0.1:9","agent_id":"a-wine","agent_secret":"wine-secret","practice":"p","site":"s","enrolled_at":"2026-01-01T00:00:00Z","heartbeat_interval_secs":60}
EOF
log="$state/agent.log"

# Waits (at most 60 s) until `sc query NAME` shows STATE; the bound is a hang guard only.
wait_state() {
  for _ in $(seq 120); do
    wine sc query "$1" 2>/dev/null | grep -q "STATE *: [0-9]  *$2" && return 0
    sleep 0.5
  done
  return 1
}
wait_log() {
  for _ in $(seq 120); do
    grep -q "$1" "$log" 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

# The service as the template creates it: binPath is `"EXE" run --state-dir DIR --service`
# (the exact text `install` passes is unit-tested); start= demand since wine's sc knows no
# delayed-auto.
wine sc create RoundsAgent binPath= "\"$exe\" run --state-dir C:\\rounds\\state --service" start= demand \
  obj= LocalSystem DisplayName= "Rounds agent" >/dev/null
check "sc create" wine sc query RoundsAgent >/dev/null
wine sc start RoundsAgent >/dev/null 2>&1 || true
check "the service reaches RUNNING" wait_state RoundsAgent RUNNING
check "the agent logs that it runs as the service" wait_log 'service running service="RoundsAgent"'
check "the agent itself runs (agent_id from the state dir)" wait_log 'agent running agent_id=a-wine'
check "the secret is not in the log" bash -c "! grep -q wine-secret '$log'"
wine sc stop RoundsAgent >/dev/null 2>&1 || true
check "sc stop reaches STOPPED" wait_state RoundsAgent STOPPED
check "Stop went through the shutdown token" grep -q 'service control: stopping control=Stop' "$log"
check "the service stopped cleanly (exit code 0)" grep -q 'service stopped service="RoundsAgent" exit_code=0' "$log"
check "no error logged" bash -c "! grep -q ' ERROR ' '$log'"
wine sc delete RoundsAgent >/dev/null

# A state dir that is not enrolled: the service stops by itself with exit code 1.
mkdir -p "$WINEPREFIX/drive_c/rounds/empty"
log="$WINEPREFIX/drive_c/rounds/empty/agent.log"
wine sc create RoundsAgentBroken binPath= "\"$exe\" run --state-dir C:\\rounds\\empty --service" start= demand >/dev/null
wine sc start RoundsAgentBroken >/dev/null 2>&1 || true
check "an agent that cannot run logs why" wait_log 'not enrolled: no identity.json'
check "... and stops with exit code 1" wait_log 'service stopped service="RoundsAgent" exit_code=1'
check "... and the service is STOPPED" wait_state RoundsAgentBroken STOPPED
wine sc delete RoundsAgentBroken >/dev/null

echo "$passed passed, 0 failed"
