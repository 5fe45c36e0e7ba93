#!/usr/bin/env bash
# Builds rounds-agent_VERSION_ARCH.deb and rounds-collector_VERSION_ARCH.deb with dpkg-deb
# from binaries already built (no cargo here).
#
#   packaging/deb/build.sh [--version V] [--agent BIN] [--collector BIN] [--out DIR] [--fast]
#
# Defaults: the workspace version; the agent from bench/build-agent.sh (`--profile agent`,
# static musl: target/x86_64-unknown-linux-musl/agent/rounds-agent, what ships), the collector from `cargo build --release -p
# rounds-collector` (target/release/rounds-collector). CI passes the dev collector binary the
# test step built, to keep its time short.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)"
agent_bin="$target/x86_64-unknown-linux-musl/agent/rounds-agent"
collector_bin="$target/release/rounds-collector"
out="$target/deb"
# xz for packages that ship; --fast (tests) stores the data uncompressed.
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --agent) agent_bin="$2"; shift 2 ;;
    --collector) collector_bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fast) compress=(-Znone); shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
for b in "$agent_bin" "$collector_bin"; do
  [ -x "$b" ] || { echo "build.sh: no binary at $b (build it first)" >&2; exit 64; }
done
arch="$(dpkg --print-architecture)"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# control NAME DESCRIPTION: the DEBIAN/ folder of a package staged in $work/NAME.
control() {
  local name="$1" description="$2" pkg="$work/$1"
  mkdir -p "$pkg/DEBIAN"
  local size
  size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
  cat > "$pkg/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: Rounds maintainers <rounds@localhost>
Section: admin
Priority: optional
Depends: libc6 (>= 2.34)$3
Installed-Size: $size
Homepage: https://localhost/rounds
Description: $description
CONTROL
  for s in postinst prerm postrm; do
    install -m 0755 "$here/$name/$s" "$pkg/DEBIAN/$s"
  done
  (cd "$pkg" && find etc -type f | sed 's|^|/|' | sort) > "$pkg/DEBIAN/conffiles"
  chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
  dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$out/${name}_${version}_${arch}.deb" >/dev/null
  echo "$out/${name}_${version}_${arch}.deb"
}

# The agent: binary, unit (rendered by the binary from the same template `install` uses),
# default configuration. The state dir is made by postinst (0700, root), not shipped, so that
# dpkg never owns the files in it.
a="$work/rounds-agent"
install -D -m 0755 "$agent_bin" "$a/usr/bin/rounds-agent"
install -d -m 0755 "$a/lib/systemd/system"
"$agent_bin" service-file --platform linux --exe /usr/bin/rounds-agent \
  --state-dir /var/lib/rounds-agent --config /etc/rounds-agent/agent.toml \
  > "$a/lib/systemd/system/rounds-agent.service"
chmod 0644 "$a/lib/systemd/system/rounds-agent.service"
install -D -m 0644 "$here/rounds-agent/agent.toml" "$a/etc/rounds-agent/agent.toml"
"$agent_bin" validate --config "$a/etc/rounds-agent/agent.toml" >/dev/null
control rounds-agent "Rounds agent: compliance checks for a practice machine
 Checks disk encryption, backups, EHR connectivity, audit logs and host hygiene
 against HIPAA Security Rule policies and reports to the Rounds collector." ""

# The collector: binary, unit, default configuration; postinst adds the `rounds` user.
c="$work/rounds-collector"
install -D -m 0755 "$collector_bin" "$c/usr/bin/rounds-collector"
install -D -m 0644 "$here/rounds-collector/rounds-collector.service" "$c/lib/systemd/system/rounds-collector.service"
install -D -m 0644 "$here/rounds-collector/collector.toml" "$c/etc/rounds-collector/collector.toml"
"$collector_bin" --config "$c/etc/rounds-collector/collector.toml" validate >/dev/null
control rounds-collector "Rounds collector: ingest, dashboard, reports and alerts
 Receives the Rounds agents' reports over TLS, evaluates them against the practice's
 policy, and serves the MSP technicians' dashboard and the compliance reports." ", passwd"
