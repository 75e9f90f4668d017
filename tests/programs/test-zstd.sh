#!/usr/bin/env bash
# zstd -T2 (two worker threads, 2 MiB jobs) compresses 32 MiB of generated
# data (gen_data.py), then decompresses it, under glibc and under
# buddymalloc: the round trip gives the input back (sha256), the compressed
# bytes are the same in both runs, and buddymalloc served zstd's buffers
# (zstd makes few, large allocations: measured about 87 small and 27 large or
# huge when compressing, 48 small and 23 large or huge when decompressing).
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog zstd sha256sum
find_python

"$PYTHON" "$PROG_DIR/gen_data.py" 32 >"$TMP/input" || fail "gen_data.py failed"
want=$(sha256sum <"$TMP/input")
cd "$TMP"

run_as glibc c-glibc 120 zstd -q -T2 -12 -B2MiB -c input
run_as bm c-bm 120 zstd -q -T2 -12 -B2MiB -c input
cmp -s c-glibc.out c-bm.out || fail "zstd made other compressed bytes under buddymalloc ($(cmp c-glibc.out c-bm.out 2>&1 | head -n 1))"
note "compressed $(stat -c %s input) bytes to $(stat -c %s c-bm.out)"

decompress_both 120 zstd -q -d -c
run_as bm t-bm 60 zstd -q -t c-bm.out

check_served "$TMP/c-bm.stats" '^zstd$' 8
expect_min "large and huge allocations of zstd (compression)" $((LAST_LARGE + LAST_HUGE)) 5
check_served "$TMP/d-bm.stats" '^zstd$' 5
expect_min "large and huge allocations of zstd (decompression)" $((LAST_LARGE + LAST_HUGE)) 5
note "ok"
