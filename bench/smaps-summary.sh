#!/usr/bin/env bash
# Where a process's resident memory is, from /proc/PID/smaps: resident and anonymous KiB per
# mapping (each file and permission, the heap, the main stack) with the unnamed mappings
# grouped as 2 MiB/8 MiB regions (thread stacks), 64 MiB-reserved regions (glibc malloc arenas)
# and the rest.  Used for the agent's idle-memory figures in BENCHMARKS.md.
#
#   bench/smaps-summary.sh PID
set -euo pipefail
[ $# -eq 1 ] && [ -r "/proc/$1/smaps" ] || { echo "usage: $0 PID (a running process)" >&2; exit 64; }
awk '
/^[0-9a-f]+-[0-9a-f]+ / { split($1, r, "-"); size = (strtonum("0x" r[2]) - strtonum("0x" r[1])) / 1024; name = $6; perm = $2
  if (name == "") cls = (size == 2048 || size == 8192) ? "anon 2MiB/8MiB regions (thread stacks)" : (size >= 65536 || (size > 100 && size % 1024 == 132) ? "anon 64MiB-reserved regions (malloc arenas)" : "anon other" ); else cls = name " " perm; next }
/^Rss:/ { rss[cls] += $2 }
/^Anonymous:/ { anon[cls] += $2 }
END { for (c in rss) if (rss[c] > 0) printf "%8d kB rss %8d kB anon  %s\n", rss[c], anon[c], c }' /proc/$1/smaps | sort -n -r
