#!/usr/bin/env bash
# The launchd daemon `rounds-agent install` writes on macOS (issue 19), parsed by a real plist
# parser: libplist's plistutil (Debian: libplist-utils) converts the generated plist to the
# binary format and back; the result must still hold the label, every program argument (an
# `&` in a path escaped and read back), RunAtLoad and KeepAlive. A plist launchd could not
# read converts to nothing, and the checks fail.
#
#   agent/tests/macos/launchd-plist-lint.sh AGENT_BIN
#
# AGENT_BIN is a Linux rounds-agent (service-file renders every platform's definition).
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; sed 's/^/  plist: /' "$work/round.xml" >&2 || true; echo "$passed passed, 1 failed"; exit 1; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

"$bin" service-file --platform macos --exe /usr/local/bin/rounds-agent \
  --state-dir '/Library/Application Support/Rounds/agent' --config '/Library/Rounds/a&b.toml' > "$work/agent.plist"
touch "$work/round.xml"
plistutil -i "$work/agent.plist" -o "$work/agent.bin" -f bin || true
check "plistutil parses the generated plist" test -s "$work/agent.bin"
plistutil -i "$work/agent.bin" -o "$work/round.xml" -f xml
# The round trip as one line per element, tabs stripped.
tr -d '\t' < "$work/round.xml" > "$work/flat.xml"
want_args='<key>ProgramArguments</key>
<array>
<string>/usr/local/bin/rounds-agent</string>
<string>run</string>
<string>--state-dir</string>
<string>/Library/Application Support/Rounds/agent</string>
<string>--config</string>
<string>/Library/Rounds/a&amp;b.toml</string>
</array>'
check "plistutil reads its binary form back" test -s "$work/round.xml"
check "Label com.rounds.agent" grep -Pzq '<key>Label</key>\n<string>com\.rounds\.agent</string>' "$work/flat.xml"
check "ProgramArguments, in order, the & escaped" grep -Fzq "$want_args" "$work/flat.xml"
check "RunAtLoad true" grep -Pzq '<key>RunAtLoad</key>\n<true/>' "$work/flat.xml"
check "KeepAlive: restart unless the exit was clean" grep -Pzq '<key>KeepAlive</key>\n<dict>\n<key>SuccessfulExit</key>\n<false/>' "$work/flat.xml"
echo "$passed passed, 0 failed"
