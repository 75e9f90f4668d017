#!/usr/bin/env bash
# frag-at-size.sh: bench/frag_at_size.c (issue 15's fragmentation pattern:
# 1,000,000 blocks of 16 B - 4 KiB written, a random 90 % freed, 100,000
# blocks of 8 KiB) under buddymalloc, jemalloc, mimalloc, tcmalloc and
# glibc, interleaved round by round, then a table of the medians: each
# phase's seconds, RSS after it and the peak, and the ratio to the fastest
# and to the leanest peer. Needs about 2.5 GB free per run.
#
#   bench/frag-at-size.sh [ROUNDS [N [M]]]      (default 3 1000000 100000)
#
# From the top of the repository after ninja -C build. Prints markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
n=${2:-1000000}
m=${3:-100000}
exe=build/bench/frag-at-size
[ -x "$exe" ] || { echo "frag-at-size.sh: build first (ninja -C build)" >&2; exit 1; }
soname() { ldconfig -p 2>/dev/null | awk -v s="$1" '$1 == s { print $NF; exit }'; }
declare -A lib=(
  [buddymalloc]="$PWD/build/src/libbuddymalloc.so"
  [jemalloc]="$(soname libjemalloc.so.2)"
  [mimalloc]="$(soname libmimalloc.so.2)"
  [tcmalloc]="$(soname libtcmalloc_minimal.so.4)"
  [glibc]=""
)
order=(buddymalloc jemalloc mimalloc tcmalloc glibc)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/frag-at-size.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#order[@]}; k++)); do
    a=${order[$(((k + r) % ${#order[@]}))]}      # rotated each round
    if [ "$a" != glibc ] && [ -z "${lib[$a]}" ]; then continue; fi
    echo "round $((r + 1)): $a" >&2
    env ${lib[$a]:+LD_PRELOAD=${lib[$a]}} "$exe" "$n" "$m" >> "$tmp/$a"
  done
done
python3 - "$tmp" "${order[@]}" <<'PY'
import os, statistics, sys
tmp, names = sys.argv[1], sys.argv[2:]
data = {}
for a in names:
    path = os.path.join(tmp, a)
    if not os.path.exists(path):
        continue
    runs = {}
    for line in open(path):
        if line.startswith("PHASE "):
            kv = dict(f.split("=", 1) for f in line.split()[1:])
            runs.setdefault(kv["name"], []).append(kv)
    data[a] = runs
phases = ["alloc", "free90", "alloc8k"]
def med(a, p, key):
    return statistics.median(float(r[key]) for r in data[a][p])
print("| allocator | " + " | ".join(f"{p} s" for p in phases) + " | peak RSS MiB | RSS after free90 MiB |")
print("|---|" + "--:|" * (len(phases) + 2))
for a in data:
    cells = [f"{med(a, p, 'seconds'):.2f}" for p in phases]
    peak = med(a, "alloc8k", "hwm_kib") / 1024
    after = med(a, "free90", "rss_kib") / 1024
    print(f"| {a} | " + " | ".join(cells) + f" | {peak:.0f} | {after:.0f} |")
if "buddymalloc" in data:
    peers = [a for a in data if a != "buddymalloc"]
    if peers:
        print()
        for p in phases:
            best = min(peers, key=lambda a: med(a, p, "seconds"))
            print(f"- {p}: buddymalloc / fastest peer ({best}) = "
                  f"{med('buddymalloc', p, 'seconds') / med(best, p, 'seconds'):.2f}")
        lean = min(peers, key=lambda a: med(a, "alloc8k", "hwm_kib"))
        print(f"- peak RSS: buddymalloc / leanest peer ({lean}) = "
              f"{med('buddymalloc', 'alloc8k', 'hwm_kib') / med(lean, 'alloc8k', 'hwm_kib'):.2f}")
PY
