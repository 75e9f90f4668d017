#!/bin/sh
# callgrind-malloc.sh - instructions per malloc+free pair at a few sizes,
# buddymalloc beside jemalloc and glibc, counted by callgrind.
#
# malloc-pair is run with N1 and N2 pairs in bench_pairs(); only that
# function and its callees are counted (--toggle-collect), and
#     (Ir(N2) - Ir(N1)) / (N2 - N1)
# is the cost of one pair (PLT jumps included, for every allocator alike).
#
# Usage: callgrind-malloc.sh MALLOC_PAIR LIBBUDDYMALLOC_SO [SIZES...]
# Environment: N1, N2 (default 20000, 40000).
set -eu
pair=$1
bm=$2
shift 2
sizes=${*:-16 64 256 1024}
N1=${N1:-20000}
N2=${N2:-40000}
# jemalloc wherever the dynamic loader's cache has it (Debian: libjemalloc2)
je=$(ldconfig -p 2>/dev/null | awk '/libjemalloc\.so\.2 / { print $NF; exit }')
command -v valgrind >/dev/null || { echo "callgrind-malloc: valgrind not found" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/callgrind-malloc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT HUP INT TERM

mode=malloc     # or new: operator new + sized delete (bench_new_pairs)

ir() {  # ir PRELOAD N SIZE
    out="$tmp/out"
    fn=bench_pairs
    [ "$mode" = new ] && fn=bench_new_pairs
    if [ -n "$1" ]; then
        env LD_PRELOAD="$1" valgrind --tool=callgrind --callgrind-out-file="$out" \
            --collect-atstart=no --toggle-collect=$fn "$pair" "$2" "$3" $mode >/dev/null 2>&1
    else
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            --collect-atstart=no --toggle-collect=$fn "$pair" "$2" "$3" $mode >/dev/null 2>&1
    fi
    awk '$1 == "totals:" { t = $2 } $1 == "summary:" { s = $2 }
         END { print (t != "" ? t : s) }' "$out"
}

per_pair() {  # per_pair PRELOAD SIZE
    a=$(ir "$1" "$N1" "$2")
    b=$(ir "$1" "$N2" "$2")
    echo "$a $b" | awk -v n1="$N1" -v n2="$N2" '{ printf "%.1f", ($2 - $1) / (n2 - n1) }'
}

table() {
    echo "| size | buddymalloc | jemalloc | glibc | buddymalloc / jemalloc |"
    echo "|--:|--:|--:|--:|--:|"
    for s in $sizes; do
        b=$(per_pair "$bm" "$s")
        if [ -n "$je" ]; then j=$(per_pair "$je" "$s"); else j=n/a; fi
        g=$(per_pair "" "$s")
        r=$(echo "$b $j" | awk '{ if ($2 == "n/a" || $2 == 0) print "n/a"; else printf "%.2f", $1 / $2 }')
        echo "| $s | $b | $j | $g | $r |"
    done
}

echo "## callgrind: instructions per malloc+free pair"
echo
table
echo
echo "## callgrind: instructions per C++ operator new + sized delete pair"
echo "(glibc column: libstdc++'s operators over glibc's malloc)"
echo
mode=new
table
