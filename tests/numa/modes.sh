#!/bin/sh
# tests/numa/modes.sh - every NUMA check on the machine it runs on: the modes
# of numa_test, and a real program (GNU sort) under LD_PRELOAD.
#
#   PROGRAM=path/to/numa_test [NODES=n] modes.sh LIBRARY
#
# LIBRARY is libbuddymalloc.so, for the LD_PRELOAD check. meson runs this
# script on the host (test numa-host) and, through vm.sh -s, with busybox sh
# inside the QEMU machines (numa-vm-2, numa-vm-4), so it is plain POSIX sh.
# Each mode is a process of its own, stopped after MODE_TIMEOUT seconds
# (default 150); the last line is the sum over all modes: "N passed, M failed".
set -u

lib=${1:?usage: PROGRAM=numa_test modes.sh LIBRARY}
prog=${PROGRAM:?PROGRAM (the numa_test program) is not set}
limit=${MODE_TIMEOUT:-150}
if [ -z "${NODES:-}" ]; then
  NODES=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
fi
# membind and the preloaded program use node 1, or node 0 on a one-node host
node=0
[ "$NODES" -lt 2 ] || node=1
sort=/usr/bin/sort

tmp=$(mktemp -d "${TMPDIR:-/tmp}/numa-modes.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
total_p=0
total_f=0

# count NAME RC FILE: add the last "N passed, M failed" of FILE to the sums;
# a run that counted nothing, or failed without counting it, is one failure
count() {
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$3" | tail -n 1)
  if [ -n "$last" ]; then
    p=${last%% passed*}
    f=${last#*passed, }
    f=${f%% failed*}
  else
    p=0
    f=0
  fi
  case $2 in
    0) ;;
    124 | 143) echo "$1: stopped after $limit s"; [ "$f" -gt 0 ] || f=1 ;;
    *) [ "$f" -gt 0 ] || { echo "$1: exit $2 with no failure counted"; f=1; } ;;
  esac
  [ -n "$last" ] || [ "$f" -gt 0 ] || f=1
  total_p=$((total_p + p))
  total_f=$((total_f + f))
  echo "--- $1: $p passed, $f failed (exit $2, $(($(date +%s) - start)) s)"
}

# mode NAME COMMAND...: run one mode, print its output, count it
mode() {
  name=$1
  shift
  echo "=== $name"
  start=$(date +%s)
  timeout "$limit" "$@" >"$tmp/out" 2>&1 </dev/null
  rc=$?
  cat "$tmp/out"
  count "$name" "$rc" "$tmp/out"
}

# ---------------------------------------------------------------- preload
# GNU sort, preloaded with the library and bound to the CPUs of $node (not to
# its memory: numactl --cpunodebind only), sorts a few MiB. Its memory must
# be on $node: the library's zone counters at exit (pages handed out per
# zone) and the anonymous pages of /proc/PID/numa_maps sampled while it runs.
preload() {
  d=$tmp/preload
  mkdir -p "$d"
  pass=0
  fail=0
  ok() { pass=$((pass + 1)); }
  bad() { fail=$((fail + 1)); echo "FAIL preload: $*"; }

  awk 'BEGIN { srand(6)
               for (i = 0; i < 200000; i++)
                 printf "%08x%08x line %d\n", int(rand() * 4294967295), int(rand() * 4294967295), i }' >"$d/in"
  numactl --cpunodebind="$node" env LD_PRELOAD="$lib" \
    BUDDYMALLOC_OPTIONS=stats=on,stats_file="$d/stats" "$sort" -o "$d/out" "$d/in" &
  pid=$!
  t0=$(date +%s)
  best=0
  best_on=0
  samples=0
  # until it exits (a zombie has an empty numa_maps)
  while [ -r "/proc/$pid/numa_maps" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
    if [ $(($(date +%s) - t0)) -ge "$limit" ]; then
      echo "preload: sort still runs after $limit s: stopping it"
      kill -KILL "$pid"
      break
    fi
    # pages of the anonymous mappings, not of files: all, and on $node
    set -- $(awk -v want="$node" '/ anon=/ && !/ file=/ {
          for (i = 1; i <= NF; i++) if ($i ~ /^N[0-9]+=/) {
            split(substr($i, 2), kv, "="); all += kv[2]; if (kv[1] == want) on += kv[2] } }
        END { printf "%d %d\n", all, on }' "/proc/$pid/numa_maps" 2>/dev/null)
    samples=$((samples + 1))
    if [ $# -eq 2 ] && [ "$1" -gt "$best" ]; then
      best=$1
      best_on=$2
    fi
  done
  wait "$pid"
  rc=$?
  lines=$(wc -l <"$d/in")
  if [ "$rc" -eq 0 ] && [ "$(wc -l <"$d/out")" -eq "$lines" ] && "$sort" -c "$d/out"; then
    ok
  else
    bad "sort under LD_PRELOAD exited $rc or did not sort its $lines lines"
  fi
  if grep -q '^=== buddymalloc' "$d/stats" 2>/dev/null; then
    ok
  else
    bad "no statistics from the preloaded library in $d/stats: was sort served by it?"
  fi
  # pages the buddy allocator handed out, per zone: "allocations per order"
  # (blocks of order 0, 1, ...) under each "Node N, zone" of the counters
  set -- $(awk -v want="$node" '
      /^--- / { in_zc = ($0 == "--- zone counters ---") }
      in_zc && /^Node [0-9]+, zone/ { z = $2; sub(",", "", z) }
      in_zc && /^ *allocations per order/ {
        b = 1   # pages in a block of order i - 4 (busybox awk has no ^)
        for (i = 4; i <= NF; i++) { all += $i * b; if (z == want) on += $i * b; b *= 2 } }
      END { printf "%d %d\n", all, on }' "$d/stats" 2>/dev/null)
  zall=${1:-0}
  zon=${2:-0}
  echo "preload: sort on the CPUs of node $node: the library handed out $zon of $zall pages from node $node's zone;" \
    "numa_maps ($samples samples): $best_on of $best anonymous pages on node $node at most"
  if [ "$zall" -gt 0 ] && [ $((zon * 10)) -ge $((zall * 9)) ]; then
    ok
  else
    bad "$zon of the $zall pages handed out came from node $node's zone (90% wanted)"
  fi
  if [ "$best" -ge 2048 ] && [ $((best_on * 10)) -ge $((best * 9)) ]; then
    ok
  else
    bad "numa_maps: $best_on of $best anonymous pages on node $node (wanted 90% of at least 2048)"
  fi
  echo "$pass passed, $fail failed"
}

echo "=== topology: $NODES nodes"
numactl -H 2>&1
mode selftest "$prog" selftest
# release=none: freed memory stays resident where it was touched, so memory
# handed to the wrong node cannot be rescued by a new first touch
mode place env BUDDYMALLOC_OPTIONS=release=none "$prog" place
mode remote env BUDDYMALLOC_OPTIONS=release=none "$prog" remote
mode exhaust "$prog" exhaust
mode interleave env BUDDYMALLOC_OPTIONS=numa=interleave "$prog" interleave
mode "membind $node" numactl --membind="$node" "$prog" membind "$node"
# the process's other policies, set by numactl: followed as numa=local's
# table in docs/numa.md says
mode "numactl --preferred=$node" numactl --preferred="$node" "$prog" preferred "$node"
mode "numactl --interleave=all" numactl --interleave=all "$prog" interleave
echo "=== preload"
start=$(date +%s)
preload >"$tmp/pre" 2>&1
cat "$tmp/pre"
count preload 0 "$tmp/pre"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
