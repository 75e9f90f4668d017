#!/usr/bin/env bash
# python3 (PYTHONMALLOC=malloc) with threads (py_threads.py): 72 short-lived
# producer threads make objects that 4 consumer threads hold, and free, after
# the producers have exited. Same output under glibc and buddymalloc,
# allocations counted by buddymalloc, and its heap checker finds the heap
# consistent once every thread is gone.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
find_python
python_env

python_compare py_threads.py '^threads ok$'

# About 14 million small allocations measured.
check_served "$TMP/bm.stats" '^python' 1000000
note "probe: $(cat "$TMP/probe")"
grep -q '^end pid=[0-9]* small=[0-9]* .* check=0$' "$TMP/probe" ||
    fail "the heap checker (bm_check) after the threads exited: $(cat "$TMP/probe"); $(head -n 5 "$TMP/bm.err")"
note "ok"
