#!/usr/bin/env bash
# harden.sh - what each hardening level costs (docs/malloc.md#hardening):
# buddymalloc built with and without the encoded free lists, and with
# harden=secure, beside jemalloc.
#   1. callgrind instructions per malloc+free pair and per new + sized
#      delete (bench/callgrind-malloc.sh) for the three;
#   2. the benchmark suite (bench/suite.py) on a set of its workloads with
#      the columns buddymalloc, bm-secure, bm-plain and jemalloc.
# Builds build-plain (-Dfreelist_hardening=false) beside build/.
# Usage: bench/harden.sh [--record] [--quick] [--rounds N] [--only W,W]
#   --record writes docs/bench/harden/ (RESULTS.md, results.json, CALLGRIND.md);
#   otherwise build/bench-harden/.
set -euo pipefail
cd "$(dirname "$0")/.."
record=0 args=()
only=larson,threadtest,xmalloc,sizes,fragment,realloc,trace-python3,redis
while [ $# -gt 0 ]; do
    case "$1" in
        --record) record=1 ;;
        --only) only=$2; shift ;;
        --only=*) only=${1#--only=} ;;
        *) args+=("$1") ;;
    esac
    shift
done
out=build/bench-harden
[ $record = 1 ] && out=docs/bench/harden
mkdir -p "$out"

bash scripts/build.sh >/dev/null
[ -f build-plain/build.ninja ] || meson setup build-plain -Dfreelist_hardening=false >/dev/null
ninja -C build-plain >/dev/null

cg() {  # cg BUILD [OPTIONS]: the callgrind tables of that library
    BUDDYMALLOC_OPTIONS=${2:-} sh bench/callgrind-malloc.sh "$1/bench/malloc-pair" \
        "$1/src/libbuddymalloc.so"
}
{
    echo "# Hardening: instructions per pair (callgrind)"
    echo
    echo "Made by \`bench/harden.sh\` on $(git describe --always --dirty), $(date -u +%Y-%m-%d)."
    echo "The buddymalloc column of each table is the variant named above it."
    echo
    echo "## default level (encoded free lists), the default build"
    cg build
    echo
    echo "## harden=secure"
    cg build harden=secure
    echo
    echo "## built with -Dfreelist_hardening=false"
    cg build-plain
} >"$out/CALLGRIND.md.tmp"
mv "$out/CALLGRIND.md.tmp" "$out/CALLGRIND.md"
echo "harden: callgrind tables in $out/CALLGRIND.md" >&2

python3 bench/suite.py --allocators buddymalloc,bm-secure,bm-plain,jemalloc \
    --only "$only" --out "$out" "${args[@]}"
