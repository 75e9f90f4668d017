#!/usr/bin/env bash
# python3 (PYTHONMALLOC=malloc) runs a dict- and string-heavy workload
# (py_dict_strings.py) under glibc and under buddymalloc: same output, and
# python's objects were buddymalloc's (its statistics count them; the heap
# checker finds the heap consistent at the end).
source "$(dirname "$0")/lib.sh"
prog_init "$@"
find_python
python_env

python_compare py_dict_strings.py '^final 200000 '

# About 13.7 million small allocations measured.
check_served "$TMP/bm.stats" '^python' 1000000
note "probe: $(cat "$TMP/probe")"
grep -q '^end pid=[0-9]* small=[0-9]* .* check=0$' "$TMP/probe" ||
    fail "the heap checker (bm_check) at the end: $(cat "$TMP/probe")"
note "ok"
