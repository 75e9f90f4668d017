#!/usr/bin/env bash
# bench/numa-place.sh [--record] - where glibc, jemalloc and buddymalloc put
# the memory of threads on every node: bench/numa_place.c run under each in
# QEMU machines of 2 and 4 NUMA nodes (tests/numa/vm.sh), printed as one
# markdown table. TCG models placement, not latency: no times here.
# --record also writes the table and the raw output to docs/bench/numa/.
set -euo pipefail
cd "$(dirname "$0")/.."
record=0
[ "${1:-}" = --record ] && record=1
bash scripts/build.sh >/dev/null
bench=$PWD/build/bench/numa-place
lib=$PWD/build/src/libbuddymalloc.so
jemalloc=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -1)
[ -n "$jemalloc" ] || { echo "numa-place: libjemalloc2 is not installed (scripts/deps.sh)" >&2; exit 2; }
guest=$(mktemp)
out=$(mktemp)
trap 'rm -f "$guest" "$out"' EXIT
# in the guest: each allocator in turn, two threads per node
cat > "$guest" <<GUEST
for a in glibc jemalloc buddymalloc; do
  case \$a in
    glibc) pre= ;;
    jemalloc) pre=$jemalloc ;;
    buddymalloc) pre=$lib ;;
  esac
  LD_PRELOAD=\$pre \$PROGRAM 2 | sed "s/^/\$a /" || echo "\$a failed"
done
echo "--- buddymalloc's numa statistics"
LD_PRELOAD=$lib BUDDYMALLOC_OPTIONS=stats=on \$PROGRAM 2 2>&1 >/dev/null |
  sed -n '/^--- buddyinfo/,/^--- pagetypeinfo/p;/^--- numa/,\$p'
GUEST
for nodes in 2 4; do
  case $nodes in
    2) topo=(-n 2 -m 384 -c 2 -i) ;;
    4) topo=(-n 4 -m 512 -c 1 -d 0:1:40,0:2:15,0:3:25,1:2:30,1:3:20,2:3:20) ;;
  esac
  echo "=== $nodes nodes" >>"$out"
  bash tests/numa/vm.sh "${topo[@]}" -t 500 -x "$lib" -x "$jemalloc" -s "$guest" "$bench" >>"$out"
done
table=$(python3 - "$out" <<'PY'
import sys, re
rows = {}
nodes = None
for line in open(sys.argv[1]):
    m = re.match(r"=== (\d+) nodes", line)
    if m:
        nodes = m.group(1)
        continue
    f = line.split()
    if len(f) == 5 and f[0] in ("glibc", "jemalloc", "buddymalloc"):
        rows.setdefault((nodes, f[1]), {})[f[0]] = (int(f[2]), int(f[3]))
print("| nodes | phase | glibc | jemalloc | buddymalloc | pages measured (buddymalloc) |")
print("|--:|---|--:|--:|--:|--:|")
for (n, phase), r in rows.items():
    cells = []
    for a in ("glibc", "jemalloc", "buddymalloc"):
        l, t = r.get(a, (0, 0))
        cells.append(f"{100.0 * l / t:.1f} %" if t else "-")
    print(f"| {n} | {phase} | " + " | ".join(cells) + f" | {r.get('buddymalloc', (0, 0))[1]} |")
PY
)
echo "$table"
if [ $record = 1 ]; then
  mkdir -p docs/bench/numa
  { echo "Share of each thread's pages on its own node (bench/numa-place.sh, $(git rev-parse --short HEAD))"; echo; echo "$table"; } > docs/bench/numa/placement.md
  cp "$out" docs/bench/numa/raw.txt
  echo "recorded in docs/bench/numa/"
fi
