#!/usr/bin/env bash
# python3 (PYTHONMALLOC=malloc) with multiprocessing, fork start method
# (py_multiprocessing.py): Pool.map, a Pool whose workers are replaced
# (maxtasksperchild: forks from a thread while other threads run), and
# Processes sending large objects back. Same output under glibc and
# buddymalloc. Workers leave through os._exit (no statistics at exit), so
# each records buddymalloc's counters when it starts and ends (bmprobe.py):
# the work each kind of worker did must show as allocations, and the heap
# checker must find every worker's heap (forked copy) consistent.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
find_python
python_env

python_compare py_multiprocessing.py '^multiprocessing ok$'

# The parent: about 11.5 million small allocations measured.
check_served "$TMP/bm.stats" '^python' 1000000

probe=$TMP/probe
[[ -s $probe ]] || fail "the workers recorded nothing in the probe file"
if grep -q 'missing\|stats-failed' "$probe"; then
    cat "$probe" >&2
    fail "buddymalloc was not in every worker"
fi
if grep -v ' check=0$' "$probe" >"$TMP/bad-check"; then
    cat "$TMP/bad-check" >&2
    head -n 20 "$TMP/bm.err" >&2
    fail "the heap checker (bm_check) found inconsistencies (above)"
fi
# Per kind of worker: how many started and ended, and the small allocations
# they made between (end - start, summed). Measured: map 3 workers, ~11
# million; maxtasks 6 workers, ~3.7 million; process 4, ~120 thousand.
awk '
    match($1, /^worker-(start|end)-/) {
        split($1, t, "-"); kind = t[3]; what = t[2]
        pid = $2; sub(/pid=/, "", pid)
        s = $3; sub(/small=/, "", s)
        if (what == "start") { started[kind]++; st[pid] = s }
        else { ended[kind]++; if (pid in st) { delta[kind] += s - st[pid]; paired[kind]++ } }
    }
    END { for (k in started) printf "%s %d %d %d %d\n", k, started[k], ended[k], paired[k], delta[k] }
' "$probe" | sort >"$TMP/workers"
note "workers (kind started ended paired small-allocations): $(tr '\n' ';' <"$TMP/workers")"
check_kind() {
    local kind=$1 min_workers=$2 min_small=$3 line
    line=$(grep "^$kind " "$TMP/workers") || fail "no '$kind' worker recorded its start"
    read -r _ started ended paired small <<<"$line"
    ((started >= min_workers)) || fail "$started '$kind' workers started, expected at least $min_workers"
    ((ended == started && paired == started)) ||
        fail "'$kind' workers: $started started but $ended ended ($paired paired): a worker did not reach its exit handlers"
    expect_min "small allocations of the '$kind' workers" "$small" "$min_small"
}
check_kind map 3 1000000
check_kind maxtasks 4 300000
check_kind process 4 10000
note "ok"
