#!/usr/bin/env bash
# xz -T2 (two compressor threads, 2 MiB blocks) compresses 24 MiB of
# generated data (gen_data.py) and decompresses it with two threads, under
# glibc and under buddymalloc: the round trip gives the input back (sha256),
# the compressed bytes are the same in both runs, and buddymalloc served xz's
# buffers (xz makes few, large allocations: measured about 28 small and 15
# large or huge when compressing, 28 small and 18 large when decompressing).
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog xz sha256sum
find_python

"$PYTHON" "$PROG_DIR/gen_data.py" 24 >"$TMP/input" || fail "gen_data.py failed"
want=$(sha256sum <"$TMP/input")
cd "$TMP"

run_as glibc c-glibc 120 xz -T2 -2 --block-size=2MiB -c input
run_as bm c-bm 120 xz -T2 -2 --block-size=2MiB -c input
cmp -s c-glibc.out c-bm.out || fail "xz made other compressed bytes under buddymalloc ($(cmp c-glibc.out c-bm.out 2>&1 | head -n 1))"
blocks=$(xz -lv --robot c-bm.out | awk '$1 == "totals" { print $3 }')
note "compressed $(stat -c %s input) bytes to $(stat -c %s c-bm.out) in $blocks blocks"
((blocks >= 8)) || fail "expected at least 8 xz blocks (threads need several), got '$blocks'"

decompress_both 120 xz -d -T2 -c
run_as bm t-bm 60 xz -t -T2 c-bm.out

check_served "$TMP/c-bm.stats" '^xz$' 5
expect_min "large and huge allocations of xz (compression)" $((LAST_LARGE + LAST_HUGE)) 4
check_served "$TMP/d-bm.stats" '^xz$' 5
expect_min "large and huge allocations of xz (decompression)" $((LAST_LARGE + LAST_HUGE)) 4
note "ok"
