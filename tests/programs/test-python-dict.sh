#!/usr/bin/env bash
# python3 (PYTHONMALLOC=malloc) runs a dict- and string-heavy workload
# (py_dict_strings.py) under glibc and under buddymalloc: same output, and
# python's objects were buddymalloc's (its statistics count them; the heap
# checker finds the heap consistent at the end).
source "$(dirname "$0")/lib.sh"
prog_init "$@"
find_python
python_env

run_as glibc glibc 120 "$PYTHON" "$PROG_DIR/py_dict_strings.py"
BM_PROBE_FILE=$TMP/probe run_as bm bm 120 "$PYTHON" "$PROG_DIR/py_dict_strings.py"

grep -q '^final 200000 ' "$TMP/bm.out" || fail "the workload did not reach its end under buddymalloc"
same_output "$TMP/glibc.out" "$TMP/bm.out" "the workload's output"

# About 13.7 million small allocations measured.
check_served "$TMP/bm.stats" '^python' 1000000
note "probe: $(cat "$TMP/probe")"
grep -q '^end pid=[0-9]* small=[0-9]* .* check=0$' "$TMP/probe" ||
    fail "the heap checker (bm_check) at the end: $(cat "$TMP/probe")"
note "ok"
