# Shared helpers of the real-program tests (sourced by every test-*.sh here).
#
# A test is run as `bash tests/programs/test-NAME.sh WRAPPER`, WRAPPER being
# the build tree's `buddymalloc` run wrapper (build/preload/buddymalloc). It
# runs its workload once under glibc's malloc and once under buddymalloc,
# compares what the program printed and, from the statistics the allocator
# prints at exit, checks that buddymalloc really served the program.
#
# Exit status: 0 pass, 1 fail, 77 skip (a program is missing; a failure
# instead when CI=true, since CI must install it: scripts/deps.sh).
#
# BM_PROGRAMS_KEEP=1 keeps the temporary directory (its path is printed).

# shellcheck disable=SC2034  # PROG_DIR, BM_RUN, LAST_*: for the tests sourcing this
set -euo pipefail
export LC_ALL=C
umask 022

PROG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
TEST_NAME=${TEST_NAME#test-}
TMP=''
WRAPPER=''
CLEANUPS=()

note() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }

fail() {
    printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

skip() {
    if [[ ${CI:-} == true ]]; then
        fail "$* (CI=true: scripts/deps.sh must install it)"
    fi
    printf '[%s] SKIP: %s\n' "$TEST_NAME" "$*"
    exit 77
}

# Commands run at exit, last registered first (servers to stop).
at_cleanup() { CLEANUPS+=("$*"); }

_cleanup() {
    local rc=$? i
    trap - EXIT
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[i]}" || true
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${BM_PROGRAMS_KEEP:-} == 1 ]]; then
            note "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

# prog_init "$@": the test's arguments are WRAPPER.
prog_init() {
    [[ $# -ge 1 ]] || fail "usage: $0 WRAPPER (build/preload/buddymalloc)"
    WRAPPER=$1
    [[ -x $WRAPPER ]] || fail "the wrapper '$WRAPPER' is not an executable file"
    WRAPPER=$(cd "$(dirname "$WRAPPER")" && pwd)/$(basename "$WRAPPER")
    "$WRAPPER" lib >/dev/null || fail "'$WRAPPER lib' failed"
    TMP=$(mktemp -d -t "bm-prog-$TEST_NAME.XXXXXX")
    trap _cleanup EXIT
    trap 'fail "interrupted (SIGTERM: meson timeout?)"' TERM
    trap 'fail "interrupted (SIGINT)"' INT
    trap 'fail "interrupted (SIGHUP)"' HUP
    # The programs see a clean environment: nothing preloaded unless we ask,
    # and glibc's malloc as it comes (meson sets MALLOC_PERTURB_ for tests,
    # which only slows the glibc runs down).
    unset LD_PRELOAD MALLOC_PERTURB_ MALLOC_CHECK_
}

# require_prog NAME...: skip (or fail under CI=true) when one is missing.
require_prog() {
    local p
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || skip "'$p' is not installed"
    done
}

# The real python3 binary (not a shell shim such as pyenv's), so that the
# statistics of `buddymalloc run --stats` belong to python itself.
find_python() {
    require_prog python3
    PYTHON=$(python3 -c 'import sys; print(sys.executable)') ||
        fail "python3 does not start"
    [[ -x $PYTHON ]] || fail "python3 reports sys.executable '$PYTHON'"
}

# Environment for python runs: every object through malloc (pymalloc off).
python_env() {
    export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
    export PYTHONNOUSERSITE=1
    unset PYTHONSTARTUP PYTHONPATH PYTHONHOME
}

_explain_rc() {
    local rc=$1 t=$2
    if ((rc == 124)); then
        echo "timed out after ${t}s (a hang?)"
    elif ((rc == 137)); then
        echo "killed after not stopping at its ${t}s timeout (a hang?)"
    elif ((rc > 128)); then
        echo "died of signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
    else
        echo "exited with status $rc"
    fi
}

# show_tail FILE [LINES]: the end of a file, indented, for failure messages.
show_tail() {
    local f=$1 n=${2:-25}
    [[ -s $f ]] || return 0
    echo "    --- last lines of $(basename "$f") ---" >&2
    tail -n "$n" "$f" | sed 's/^/    | /' >&2
}

# run_as MODE NAME TIMEOUT CMD [ARGS...]
#   MODE: glibc   plain run (glibc's malloc)
#         bm      under buddymalloc, statistics of CMD itself in $TMP/NAME.stats
#         bm-all  under buddymalloc, statistics of CMD and of every process it
#                 starts (--stats-all), all appended to $TMP/NAME.stats
# stdout goes to $TMP/NAME.out, stderr to $TMP/NAME.err; stdin is the
# caller's. Fails the test unless CMD exits with status 0 within TIMEOUT
# seconds, and (under buddymalloc) unless the allocator complained on stderr.
run_as() {
    local mode=$1 name=$2 t=$3
    shift 3
    local pre=()
    case $mode in
        glibc) pre=() ;;
        bm) pre=("$WRAPPER" run "--stats-file=$TMP/$name.stats" --) ;;
        bm-all) pre=("$WRAPPER" run --stats-all "--stats-file=$TMP/$name.stats" --) ;;
        *) fail "run_as: unknown mode '$mode'" ;;
    esac
    local rc=0 start=$SECONDS
    timeout -k 10 "$t" "${pre[@]}" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
    if ((rc != 0)); then
        show_tail "$TMP/$name.err"
        show_tail "$TMP/$name.out" 10
        fail "$mode run '$name' ($*): $(_explain_rc "$rc" "$t")"
    fi
    [[ $mode == glibc ]] || no_complaints "$TMP/$name.err"
    note "$mode run '$name' took $((SECONDS - start))s"
}

# no_complaints FILE: the allocator wrote no message (they start with
# "buddymalloc:" or "bm_check:") to this stderr file.
no_complaints() {
    if grep -E '(^|[^a-z_])(buddymalloc|bm_check):' "$1" >"$TMP/complaints" 2>/dev/null; then
        head -n 20 "$TMP/complaints" | sed 's/^/    | /' >&2
        fail "buddymalloc complained on stderr ($(basename "$1"), above)"
    fi
}

# bm_prefix NAME [all]: prints nothing; sets the array BM_RUN to the command
# prefix that runs a program under buddymalloc with its statistics appended
# to $TMP/NAME.stats (for tests that run many commands themselves).
bm_prefix() {
    local name=$1
    if [[ ${2:-} == all ]]; then
        BM_RUN=("$WRAPPER" run --stats-all "--stats-file=$TMP/$name.stats" --)
    else
        BM_RUN=("$WRAPPER" run "--stats-file=$TMP/$name.stats" --)
    fi
}

# same_output A B WHAT: the files must be identical; the diff is shown if not.
same_output() {
    local a=$1 b=$2 what=$3
    if ! cmp -s "$a" "$b"; then
        echo "    --- diff ($(basename "$a") vs $(basename "$b")) ---" >&2
        if diff -u "$a" "$b" >"$TMP/diff.txt" 2>&1; then :; fi
        head -n 60 "$TMP/diff.txt" | sed 's/^/    /' >&2
        fail "$what differs between the glibc and the buddymalloc runs"
    fi
}

# python_compare SCRIPT END_REGEX: python3 runs SCRIPT (in tests/programs)
# under glibc, then under buddymalloc with the probe file $TMP/probe
# (bmprobe.py); the buddymalloc run must print a line matching END_REGEX
# and both runs the same output.
python_compare() {
    local script=$PROG_DIR/$1 end=$2
    run_as glibc glibc 120 "$PYTHON" "$script"
    BM_PROBE_FILE=$TMP/probe run_as bm bm 120 "$PYTHON" "$script"
    grep -qE "$end" "$TMP/bm.out" || fail "the workload did not reach its end under buddymalloc"
    same_output "$TMP/glibc.out" "$TMP/bm.out" "the workload's output"
}

# decompress_both TIMEOUT PROG ARGS...: PROG ARGS c-glibc.out under glibc and
# PROG ARGS c-bm.out under buddymalloc (outputs d-glibc, d-bm, in the
# current directory) must both give back the input whose sha256 is $want.
decompress_both() {
    local timeout=$1
    shift
    run_as glibc d-glibc "$timeout" "$@" c-glibc.out
    run_as bm d-bm "$timeout" "$@" c-bm.out
    [[ $(sha256sum <d-glibc.out) == "$want" ]] || fail "the round trip under glibc does not give the input back"
    [[ $(sha256sum <d-bm.out) == "$want" ]] ||
        fail "the round trip under buddymalloc does not give the input back ($(cmp input d-bm.out 2>&1 | head -n 1))"
}

# expect_file FILE EXPECTED WHAT: FILE must equal EXPECTED.
expect_file() {
    local f=$1 e=$2 what=$3
    if ! cmp -s "$e" "$f"; then
        echo "    --- diff (expected vs actual) ---" >&2
        if diff -u "$e" "$f" >"$TMP/diff.txt" 2>&1; then :; fi
        head -n 60 "$TMP/diff.txt" | sed 's/^/    /' >&2
        fail "$what is not what was expected"
    fi
}

# ---- statistics ------------------------------------------------------------
#
# A statistics file holds one block per process, each starting with
#   === buddymalloc statistics at exit: pid N (COMM) ===
# then `--- summary ---` and lines `  KEY   VALUE [unit]`. Processes append
# their blocks with O_APPEND writes of up to 1 KiB, so the blocks of
# processes exiting at the same time may interleave after their first write;
# the header and the summary are in that first write, which is all we read.
# A header may follow a line cut short by another process, so it is matched
# anywhere in a line.

# stats_awk FILE COMM_REGEX: "pid comm key=value..." one line per block of a
# process whose name matches COMM_REGEX ('' = all).
_stats_table() {
    local file=$1 re=${2:-}
    [[ -f $file ]] || return 0
    awk -v re="$re" '
        function flush() { if (inb) print row; inb = 0 }
        {
            line = $0
            if (match(line, /=== buddymalloc statistics at exit: pid [0-9]+ \(.*\) ===/)) {
                flush()
                h = substr(line, RSTART, RLENGTH)
                pid = h; sub(/^=== buddymalloc statistics at exit: pid /, "", pid); sub(/ .*/, "", pid)
                comm = h; sub(/^[^(]*\(/, "", comm); sub(/\) ===$/, "", comm)
                gsub(/ /, "_", comm)
                inb = (re == "" || comm ~ re); insum = 1
                row = pid " " comm
                next
            }
            if (index(line, "--- buddyinfo ---")) { insum = 0; next }
            if (insum && inb && match(line, /^  [A-Za-z][A-Za-z ]*[A-Za-z] +[0-9]+/)) {
                kv = substr(line, 3, RLENGTH - 2)
                val = kv; sub(/.* /, "", val)
                key = kv; sub(/ +[0-9]+$/, "", key); gsub(/ /, "_", key)
                row = row " " key "=" val
            }
        }
        END { flush() }' "$file"
}

# stats_sum FILE KEY [COMM_REGEX]: KEY ("small allocations", ...) summed over
# the blocks of the processes whose name matches COMM_REGEX ('' = all).
stats_sum() {
    local key=${2// /_}
    _stats_table "$1" "${3:-}" | awk -v k="$key" '
        { for (i = 3; i <= NF; i++) { split($i, a, "="); if (a[1] == k) s += a[2] } }
        END { printf "%d\n", s }'
}

# stats_max FILE KEY [COMM_REGEX]: the largest KEY among those processes.
stats_max() {
    local key=${2// /_}
    _stats_table "$1" "${3:-}" | awk -v k="$key" '
        { for (i = 3; i <= NF; i++) { split($i, a, "="); if (a[1] == k && a[2] + 0 > m) m = a[2] + 0 } }
        END { printf "%d\n", m }'
}

stats_agg() {
    local agg=$1
    shift
    case $agg in
        sum) stats_sum "$@" ;;
        max) stats_max "$@" ;;
        *) fail "stats_agg: unknown aggregate '$agg'" ;;
    esac
}

# stats_blocks FILE [COMM_REGEX]: how many processes printed statistics.
stats_blocks() { _stats_table "$1" "${2:-}" | wc -l; }

# stats_comms FILE: "COMM xCOUNT" of the processes that printed, for messages.
stats_comms() {
    _stats_table "$1" '' | awk '{ n[$2]++ } END { for (c in n) printf "%s x%d\n", c, n[c] }' |
        sort | tr '\n' ' '
}

# expect_min WHAT VALUE MIN: VALUE >= MIN or the test fails.
expect_min() {
    local what=$1 v=$2 min=$3
    [[ $v =~ ^[0-9]+$ ]] || fail "$what: '$v' is not a number"
    if ((v < min)); then
        fail "$what is $v, expected at least $min (was the program served by buddymalloc?)"
    fi
}

# check_served FILE COMM_REGEX MIN_SMALL [MIN_BLOCKS [AGG]]: the processes
# named by COMM_REGEX printed statistics (at least MIN_BLOCKS of them, default
# 1) and made at least MIN_SMALL small allocations: in all (AGG=sum, the
# default: processes that exec'd, each counting from zero) or in the busiest
# one (AGG=max: forked processes, which inherit their parent's counters).
# Also: no process freed more than it allocated. Prints what was measured;
# sets LAST_SMALL, LAST_LARGE, LAST_HUGE and LAST_BLOCKS.
check_served() {
    local file=$1 re=$2 min_small=$3 min_blocks=${4:-1} agg=${5:-sum}
    [[ -s $file ]] || fail "no statistics were written to $(basename "$file") (did the program exit normally under buddymalloc?)"
    local blocks small large huge
    blocks=$(stats_blocks "$file" "$re")
    small=$(stats_agg "$agg" "$file" 'small allocations' "$re")
    large=$(stats_agg "$agg" "$file" 'large allocations' "$re")
    huge=$(stats_agg "$agg" "$file" 'huge allocations' "$re")
    note "measured in $(basename "$file"): $blocks processes matching '$re'; small allocations $small, large $large, huge $huge ($agg over them)"
    if ((blocks < min_blocks)); then
        note "processes that printed statistics: $(stats_comms "$file")"
        fail "$(basename "$file"): $blocks statistics blocks of processes matching '$re', expected at least $min_blocks"
    fi
    expect_min "small allocations of '$re' ($(basename "$file"), $agg)" "$small" "$min_small"
    _stats_table "$file" '' | awk '
        { for (i = 3; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
          if (v["small_frees"] + 0 > v["small_allocations"] + 0 ||
              v["large_frees"] + 0 > v["large_allocations"] + 0 ||
              v["huge_frees"] + 0 > v["huge_allocations"] + 0)
              { print "pid " $1 " (" $2 "): " $0; bad = 1 }
          delete v }
        END { exit bad }' >"$TMP/stats-bad.txt" ||
        { cat "$TMP/stats-bad.txt" >&2; fail "a process freed more than it allocated (statistics above)"; }
    LAST_SMALL=$small LAST_LARGE=$large LAST_HUGE=$huge LAST_BLOCKS=$blocks
}

# ---- servers ---------------------------------------------------------------

# free_port: a TCP port on 127.0.0.1 nobody listens on now (the caller
# retries with another if the server still finds it taken).
free_port() {
    local p i
    for ((i = 0; i < 50; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free TCP port found on 127.0.0.1"
}

# shutdown_wait PID WHAT LOG...: a server sent SHUTDOWN must exit within
# 20 s with status 0; if not, the test fails, showing the ends of LOGs.
shutdown_wait() {
    local pid=$1 what=$2 i rc=0 f
    shift 2
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "$what still runs 20 s after SHUTDOWN"
    wait "$pid" || rc=$?
    if ((rc != 0)); then
        for f in "$@"; do show_tail "$f"; done
        fail "$what $(_explain_rc "$rc" 300)"
    fi
}

# wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds.
wait_for() {
    local t=$1 i
    shift
    for ((i = 0; i < t * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}
