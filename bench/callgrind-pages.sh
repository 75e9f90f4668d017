#!/bin/sh
# callgrind-pages.sh - instructions per alloc+free pair of an order-0 page,
# through the per-CPU pagesets and around them (nopcp), counted by callgrind.
#
# page-pair is run twice per path, with N1 and N2 pairs in bench_pairs();
# only bench_pairs and its callees are counted (--toggle-collect), and
#     (Ir(N2) - Ir(N1)) / (N2 - N1)
# is the cost of one pair with start-up and the first refills cancelled out.
#
# Usage: callgrind-pages.sh [path/to/page-pair]   (default build/bench/page-pair,
#        or bench/page-pair when run from inside the build directory)
# Environment: N1, N2 (default 100000, 200000), ORDER (default 0).
# Used by `ninja -C build callgrind-pages`.
set -eu

# Default: from the source root build/bench/page-pair; from inside a build
# directory bench/page-pair; under meson, its build root.
if [ $# -ge 1 ]; then
    pp=$1
elif [ -x build/bench/page-pair ]; then
    pp=build/bench/page-pair
elif [ -x bench/page-pair ]; then
    pp=bench/page-pair
elif [ -n "${MESON_BUILD_ROOT:-}" ] && [ -x "$MESON_BUILD_ROOT/bench/page-pair" ]; then
    pp=$MESON_BUILD_ROOT/bench/page-pair
else
    pp=build/bench/page-pair
fi
N1=${N1:-100000}
N2=${N2:-200000}
ORDER=${ORDER:-0}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "callgrind-pages: valgrind not found (Debian package valgrind)" >&2
    exit 1
fi
if [ ! -x "$pp" ]; then
    echo "callgrind-pages: $pp is not an executable; build it (ninja -C build) or pass its path" >&2
    exit 1
fi
if [ "$N2" -le "$N1" ]; then
    echo "callgrind-pages: N2 ($N2) must be larger than N1 ($N1)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/callgrind-pages.XXXXXX")
trap 'rm -rf "$tmp"' EXIT HUP INT TERM

# Ir of one run: the "totals:" line of the output file, else "summary:".
ir_of() {
    awk '$1 == "totals:" { t = $2 } $1 == "summary:" { s = $2 }
         END { if (t != "") print t; else if (s != "") print s; else exit 1 }' "$1"
}

# Inclusive Ir of function $2 in output file $1 (0 if it never ran), from
# callgrind_annotate; "-" if callgrind_annotate is not installed.
fn_ir() {
    if ! command -v callgrind_annotate >/dev/null 2>&1; then
        echo -
        return 0
    fi
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk -v f="$2" '
            { for (i = 2; i <= NF; i++)
                  if ($i ~ (":" f "$")) { v = $1; gsub(",", "", v); print v; found = 1; exit } }
            END { if (!found) print 0 }'
}

# run LABEL N [page-pair args...]: prints "Ir(bench_pairs) Ir(bm_cpu_slow)"
# for N pairs.
run() {
    label=$1 n=$2
    shift 2
    out="$tmp/callgrind.out.$label.$n"
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" \
            --collect-atstart=no --toggle-collect=bench_pairs \
            "$pp" "$n" "$ORDER" "$@" >"$tmp/log" 2>&1; then
        echo "callgrind-pages: valgrind $pp $n $ORDER $* failed:" >&2
        cat "$tmp/log" >&2
        exit 1
    fi
    if ! total=$(ir_of "$out"); then
        echo "callgrind-pages: no totals/summary line in $out" >&2
        exit 1
    fi
    echo "$total $(fn_ir "$out" bm_cpu_slow)"
}

echo "## callgrind: instructions per alloc+free pair (order $ORDER)"
echo
echo "| path | Ir(N1=$N1) | Ir(N2=$N2) | instructions/pair | of which bm_cpu_slow |"
echo "|---|--:|--:|--:|--:|"
for path in pagesets nopcp; do
    if [ "$path" = nopcp ]; then set -- nopcp; else set -- pcp; fi
    r1=$(run "$path" "$N1" "$@")
    r2=$(run "$path" "$N2" "$@")
    echo "$r1 $r2" | awk -v n1="$N1" -v n2="$N2" -v path="$path" '{
        per = ($3 - $1) / (n2 - n1)
        cpu = ($2 == "-" || $4 == "-") ? "n/a" : sprintf("%.1f", ($4 - $2) / (n2 - n1))
        printf "| %s | %s | %s | %.1f | %s |\n", path, $1, $3, per, cpu }'
done
echo
echo "Counted: bench_pairs() and its callees (bm_alloc_pages, bm_free_pages, the byte"
echo "written, loop overhead). Valgrind does not implement rseq, so glibc registers"
echo "none and buddymalloc takes the CPU number from sched_getcpu() (bm_cpu_slow)"
echo "instead of a load from the rseq area: that column is cost a native run does"
echo "not have (it pays a few instructions per call for the rseq load instead)."
