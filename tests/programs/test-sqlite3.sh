#!/usr/bin/env bash
# sqlite3 runs sqlite-workload.sql on a database file (200000 rows inserted,
# indexed, queried, updated, deleted, vacuumed) under glibc and under
# buddymalloc: the outputs must match each other and the values computed
# here independently, and sqlite3 must have been served by buddymalloc.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog sqlite3 awk

sql=$PROG_DIR/sqlite-workload.sql
run_as glibc glibc 120 sqlite3 -batch "$TMP/glibc.db" <"$sql"
run_as bm bm 120 sqlite3 -batch "$TMP/bm.db" <"$sql"

same_output "$TMP/glibc.out" "$TMP/bm.out" "the queries' output"

# The same numbers, computed by awk for N = 200000 rows: id = i,
# k = i*7919 mod 10007, rows with i mod 11 = 0 deleted, v doubled where
# i mod 7 = 0, pad = hex(i*i) || 'xyzxyz...' cut to i mod 31 characters,
# upper-cased where i mod 7 = 0 (so it holds 'ZXY' when that is >= 5 long).
awk 'BEGIN {
    N = 200000
    for (i = 1; i <= N; i++) {
        k = (i * 7919) % 10007
        sumk += k; c[k]++
        if (k >= 100 && k <= 200) { nr++; sr += i }
        if (i % 11 != 0) {
            nd++; sd += i; sumk2 += k
            v2 += (i % 7 == 0) ? 2 * i : i
            if (i % 7 == 0 && i % 31 >= 5) glob++
        }
    }
    for (k in c) { nk++; win += c[k] * (c[k] + 1) / 2 }
    printf "count|%d\n", N
    printf "sum_k|%.0f\n", sumk
    printf "distinct_k|%d\n", nk
    printf "k_range|%d|%.0f\n", nr, sr
    printf "window|%.0f\n", win
    printf "after_delete|%d|%.0f\n", nd, sd
    printf "sum_v2|%.0f\n", v2
    printf "integrity|ok\n"
    printf "after_vacuum|%d|%.0f\n", nd, sumk2
    printf "glob|%d\n", glob
}' >"$TMP/expected"
grep -E '^(count|sum_k|distinct_k|k_range|window|after_delete|sum_v2|integrity|after_vacuum|glob)\|' \
    "$TMP/bm.out" >"$TMP/bm.checked"
expect_file "$TMP/bm.checked" "$TMP/expected" "the query results under buddymalloc"
grep -qx 's_eq|42,50042,100042,150042' "$TMP/bm.out" || fail "the indexed lookup by s is wrong: $(grep '^s_eq' "$TMP/bm.out")"

# About 2 million small allocations measured.
check_served "$TMP/bm.stats" '^sqlite3$' 200000
note "ok"
