#!/usr/bin/env bash
# g++ compiles stl_workload.cpp (STL-heavy C++) under glibc and under
# buddymalloc (--stats-all: the driver forks cc1plus, as, collect2, ld): the
# two executables must be identical, and cc1plus must have been served by
# buddymalloc. The program is then run under both (operator new/delete,
# exceptions, threads): same output, allocations counted.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog g++

src=$PROG_DIR/stl_workload.cpp
flags=(-O2 -std=c++17 -pthread)
cd "$TMP"
run_as glibc cc-glibc 120 g++ "${flags[@]}" -o stl_workload.glibc "$src"
run_as bm-all cc-bm 120 g++ "${flags[@]}" -o stl_workload "$src"
cmp -s stl_workload.glibc stl_workload ||
    fail "g++ under buddymalloc made another executable than under glibc ($(cmp stl_workload.glibc stl_workload 2>&1 | head -n 1))"

# Measured: cc1plus about 2 million small allocations, as 10 thousand, ld 4
# thousand, the driver and collect2 a few hundred.
check_served "$TMP/cc-bm.stats" '^cc1plus$' 100000
check_served "$TMP/cc-bm.stats" '^(as|ld|collect2|g\+\+)$' 1000 3
note "processes under buddymalloc: $(stats_comms "$TMP/cc-bm.stats")"

run_as glibc run-glibc 60 ./stl_workload.glibc
run_as bm run-bm 60 ./stl_workload
grep -qx 'stl workload ok' "$TMP/run-bm.out" || fail "the program's own checks failed under buddymalloc: $(grep -i fail "$TMP/run-bm.out" | head -n 3)"
same_output "$TMP/run-glibc.out" "$TMP/run-bm.out" "the C++ program's output"
# Measured: about 630 thousand small allocations.
check_served "$TMP/run-bm.stats" '^stl_workload$' 50000
note "ok"
