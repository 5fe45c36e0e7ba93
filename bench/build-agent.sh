#!/usr/bin/env bash
# Builds the agent binary that ships and prints its path on the last line of stdout.
#
#   bench/build-agent.sh
#
# What ships (issue 16, idle memory): `--profile agent` (size-optimised, fat LTO) for
# x86_64-unknown-linux-musl, one static binary: no shared libraries mapped (glibc's libc, libm
# and ld.so kept 2.1 MB resident in the agent), and it runs on any x86_64 Linux, whatever its
# glibc. It needs the Rust target (`rustup target add x86_64-unknown-linux-musl`) and musl-gcc
# (Debian package musl-tools) for the C in ring. Without them the glibc build is made instead,
# and the script says so loudly on stderr (that build idles about 1.3 MB higher).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
musl=x86_64-unknown-linux-musl
if [ "$(uname -m)" = x86_64 ] && command -v musl-gcc >/dev/null 2>&1 \
  && rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  echo "== building the agent: cargo build --profile agent -p rounds-agent --target $musl" >&2
  cargo build --profile agent -p rounds-agent --target "$musl" >&2
  echo "$target_dir/$musl/agent/rounds-agent"
else
  echo "== WARNING: the static musl agent cannot be built here (needs 'rustup target add $musl'" >&2
  echo "== and musl-gcc from the Debian package musl-tools): building the glibc agent instead" >&2
  cargo build --profile agent -p rounds-agent >&2
  echo "$target_dir/agent/rounds-agent"
fi
