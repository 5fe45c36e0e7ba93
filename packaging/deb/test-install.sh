#!/usr/bin/env bash
# Installs, upgrades, removes and purges the rounds-agent and rounds-collector packages in a
# throwaway root (`dpkg --root`, maintainer scripts run chrootless with DPKG_ROOT set), and
# checks what each step must leave: files, owners and modes, the `rounds` user, conffiles,
# and that the agent's identity, CA, sequence, spool and cached configuration and the
# collector's database survive an upgrade byte for byte.
#
#   packaging/deb/test-install.sh --agent BIN --collector BIN
#
# Prints "N passed, 0 failed" at the end; exits 1 at the first failed check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; echo "$passed passed, 1 failed"; exit 1; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

"$here/build.sh" --fast --version 0.1.0 --out "$work/v1" "$@" >/dev/null
"$here/build.sh" --fast --version 0.1.1 --out "$work/v2" "$@" >/dev/null
v1_agent=$(ls "$work"/v1/rounds-agent_*.deb); v1_coll=$(ls "$work"/v1/rounds-collector_*.deb)
v2_agent=$(ls "$work"/v2/rounds-agent_*.deb); v2_coll=$(ls "$work"/v2/rounds-collector_*.deb)
check "rounds-agent conffiles" test "$(dpkg-deb -I "$v1_agent" conffiles)" = "/etc/rounds-agent/agent.toml"
check "rounds-collector conffiles" test "$(dpkg-deb -I "$v1_coll" conffiles)" = "/etc/rounds-collector/collector.toml"
check "the packaged agent unit is hardened" sh -c "dpkg-deb --fsys-tarfile '$v1_agent' | tar -xO ./lib/systemd/system/rounds-agent.service | grep -qx 'ProtectSystem=strict'"

root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
printf 'root:*::\n' > "$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
# The empty root has no libc6 or passwd package to satisfy Depends: --force-depends.
dpkg_() { dpkg --root="$root" --force-script-chrootless --force-depends --force-unsafe-io --log=/dev/null "$@" >/dev/null; }
mode() { stat -c '%a %u' "$1"; }

dpkg_ -i "$v1_agent" "$v1_coll"
check "agent binary installed" test -x "$root/usr/bin/rounds-agent"
check "agent unit installed" test -f "$root/lib/systemd/system/rounds-agent.service"
check "agent state dir 0700 root" test "$(mode "$root/var/lib/rounds-agent")" = "700 0"
check "rounds system user created" grep -q '^rounds:x:[0-9]*:[0-9]*:Rounds collector:/var/lib/rounds-collector:/usr/sbin/nologin$' "$root/etc/passwd"
uid=$(awk -F: '$1 == "rounds" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "rounds" { print $4 }' "$root/etc/passwd")
check "rounds is a system user (uid $uid < 1000)" test "$uid" -lt 1000
check "collector data dir 0700 rounds" test "$(mode "$root/var/lib/rounds-collector")" = "700 $uid"
check "collector config 0640 root:rounds" test "$(stat -c '%a %u %g' "$root/etc/rounds-collector/collector.toml")" = "640 0 $gid"
for line in 'LimitNOFILE=65536' 'User=rounds' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/rounds-collector' 'ProtectHome=yes' \
    'PrivateTmp=yes' 'NoNewPrivileges=yes' 'CapabilityBoundingSet=' 'StateDirectoryMode=0700'; do
  check "collector unit has $line" grep -qx "$line" "$root/lib/systemd/system/rounds-collector.service"
done
for line in 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/rounds-agent' 'ProtectHome=read-only' 'PrivateTmp=yes' \
    'NoNewPrivileges=yes' 'ExecStart=/usr/bin/rounds-agent run --state-dir /var/lib/rounds-agent --config /etc/rounds-agent/agent.toml'; do
  check "agent unit has $line" grep -qx "$line" "$root/lib/systemd/system/rounds-agent.service"
done
# systemd-analyze verify on the packaged units, their ExecStart pointed at the binary in the
# root (a throwaway root has no systemd targets for --root).
if command -v systemd-analyze >/dev/null; then
  for unit in rounds-agent rounds-collector; do
    sed "s|^ExecStart=/usr/bin/|ExecStart=$root/usr/bin/|" "$root/lib/systemd/system/$unit.service" > "$work/$unit.service"
    check "systemd-analyze verify of the packaged $unit unit" systemd-analyze verify "$work/$unit.service"
  done
else
  echo "SKIPPED: systemd-analyze is not installed; the packaged units were not verified"
fi

# State an enrolled, running agent leaves (names from agent/src/state.rs, spool.rs,
# central.rs) and a collector store made by the packaged binary itself.
s="$root/var/lib/rounds-agent"
echo '{"agent_id":"agt_1","agent_secret":"rnd_agt_secret"}' > "$s/identity.json"
echo '-----BEGIN CERTIFICATE-----' > "$s/ca.pem"
echo 42 > "$s/sequence"
head -c 4096 /dev/urandom > "$s/spool.jsonl"
echo '{"version":"\"v7\"","toml":""}' > "$s/central-config.json"
chmod 0600 "$s"/*
"$root/usr/bin/rounds-collector" --data-dir "$root/var/lib/rounds-collector" \
  token create --practice P --site S >/dev/null
chown -R "$uid:$gid" "$root/var/lib/rounds-collector"
echo '# edited by the technician' >> "$root/etc/rounds-agent/agent.toml"
before=$(cd "$root/var/lib" && find rounds-agent rounds-collector -type f -exec sha256sum {} + | sort)

dpkg_ --force-confold -i "$v2_agent" "$v2_coll"
check "upgrade to 0.1.1 recorded" sh -c "dpkg-query --admindir='$root/var/lib/dpkg' -W -f='\${Version}' rounds-agent | grep -qx 0.1.1"
after=$(cd "$root/var/lib" && find rounds-agent rounds-collector -type f -exec sha256sum {} + | sort)
check "agent identity, CA, sequence, spool, cached config and collector store survive the upgrade" test "$before" = "$after"
check "agent state still 0600" test "$(stat -c '%a' "$s/identity.json")" = 600
check "edited conffile kept on upgrade" grep -qx '# edited by the technician' "$root/etc/rounds-agent/agent.toml"
check "rounds user not duplicated" test "$(grep -c '^rounds:' "$root/etc/passwd")" = 1

dpkg_ -r rounds-agent rounds-collector
check "remove: agent binary gone" test ! -e "$root/usr/bin/rounds-agent"
check "remove: agent unit gone" test ! -e "$root/lib/systemd/system/rounds-agent.service"
check "remove: agent state kept" test -f "$s/identity.json"
check "remove: collector store kept" test -f "$root/var/lib/rounds-collector/rounds.db"
check "remove: conffile kept" test -f "$root/etc/rounds-agent/agent.toml"

dpkg_ -P rounds-agent rounds-collector
check "purge: agent state gone" test ! -e "$s"
check "purge: collector data gone" test ! -e "$root/var/lib/rounds-collector"
check "purge: conffiles gone" test ! -e "$root/etc/rounds-agent/agent.toml" -a ! -e "$root/etc/rounds-collector/collector.toml"
check "purge: nothing of the packages left in dpkg's database" sh -c "! dpkg-query --admindir='$root/var/lib/dpkg' -W rounds-agent rounds-collector 2>/dev/null"

echo "$passed passed, 0 failed"
