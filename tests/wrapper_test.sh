#!/usr/bin/env bash
# `buddymalloc run` and the statistics-at-exit options: flags, bad input,
# which processes print; `buddymalloc stat` and its errors.
# Prints "N passed, M failed".
set -u
wrapper=$1
passed=0 failed=0
check() {   # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $what" >&2
    fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset BUDDYMALLOC_OPTIONS LD_PRELOAD

check "--help" "$wrapper" --help >/dev/null
check "--version names buddymalloc" grep -q '^buddymalloc [0-9]' <("$wrapper" --version)
check "lib is a readable library" test -r "$("$wrapper" lib)"

"$wrapper" run -x -- true 2>"$tmp/err"
check "an unknown flag exits 2" test $? -eq 2
check "an unknown flag is named" grep -q "unknown option '-x'" "$tmp/err"
"$wrapper" frobnicate 2>"$tmp/err"
check "an unknown command exits 2" test $? -eq 2
"$wrapper" run -- 2>"$tmp/err"
check "no program exits 2" test $? -eq 2
"$wrapper" run -o nokeyvalue -- true 2>"$tmp/err"
check "-o without = is refused" grep -q "not KEY=VALUE" "$tmp/err"

# every option as a flag of its own, '-' for '_'
"$wrapper" run --harden=secure --release-delay-ms=250 --verbose=1 -- bash -c 'echo "$BUDDYMALLOC_OPTIONS"' \
    >"$tmp/out" 2>"$tmp/err"
check "--KEY=VALUE flags become options" \
    grep -qx "harden=secure,release_delay_ms=250,verbose=1" "$tmp/out"
check "--KEY=VALUE flags take effect" grep -q "harden=secure" "$tmp/err"
"$wrapper" run --no-such-key=1 -- bash -c true 2>"$tmp/err"
check "an unknown --KEY=VALUE is named by the library" \
    grep -q "unknown option 'no_such_key=1'" "$tmp/err"

# the program runs with the allocator, its exit status kept
"$wrapper" run -- bash -c 'exit 3'
check "exit status passes through" test $? -eq 3
out=$("$wrapper" run -- bash -c 'echo "$LD_PRELOAD"')
check "LD_PRELOAD names the library" test "$out" = "$("$wrapper" lib)"

# --stats: the program's report on stderr, its children quiet
"$wrapper" run --stats -- bash -c 'ls / >/dev/null; cat /dev/null; true' 2>"$tmp/err" >/dev/null
check "--stats prints one report" test "$(grep -c '^=== buddymalloc statistics at exit' "$tmp/err")" -eq 1
check "--stats names the program" grep -q '^=== buddymalloc statistics at exit: pid [0-9]* (bash) ===' "$tmp/err"
for section in summary buddyinfo pagetypeinfo pagesets slabinfo; do
    check "--stats has $section" grep -q "^--- $section ---" "$tmp/err"
done
check "--stats counts allocations" awk '/small allocations/ { ok = $3 > 100 } END { exit !ok }' "$tmp/err"

# --stats-all: every process under the allocator, appended to one file
"$wrapper" run --stats-all --stats-file="$tmp/all" -- bash -c 'ls / >/dev/null; cat /dev/null; true' >/dev/null
check "--stats-all: bash, ls and cat report" \
    test "$(grep -c '^=== buddymalloc statistics at exit' "$tmp/all")" -ge 3
check "--stats-all: reports are whole (each summary follows its header)" \
    awk '/^=== buddymalloc statistics/ { h++ } /^--- summary ---/ { s++ } END { exit !(h == s && h > 0) }' "$tmp/all"

# a relative --stats-file is taken from where the wrapper ran
(cd "$tmp" && "$wrapper" run --stats-file=rel.txt -- bash -c 'cd /; true')
check "relative --stats-file" grep -q '^--- slabinfo ---' "$tmp/rel.txt"

# an unwritable stats file: named on stderr, report on stderr instead
"$wrapper" run --stats-file="$tmp/no/such/dir/f" -- true 2>"$tmp/err"
check "unwritable stats_file is named" grep -q "cannot open stats_file '$tmp/no/such/dir/f'" "$tmp/err"
check "and the report goes to stderr" grep -q '^--- summary ---' "$tmp/err"

# bad allocator options: named, the program still runs
out=$("$wrapper" run -o release=sometimes -o pcp_batch=x -- bash -c 'echo ran' 2>"$tmp/err")
check "bad options: the program runs" test "$out" = ran
check "bad option named (release)" grep -q "bad value in 'release=sometimes' (default kept)" "$tmp/err"
check "bad option named (pcp_batch)" grep -q "bad value in 'pcp_batch=x' (default kept)" "$tmp/err"
BUDDYMALLOC_OPTIONS=stats_file= "$wrapper" run -- true 2>"$tmp/err"
check "empty stats_file refused" grep -q "bad value in 'stats_file='" "$tmp/err"

# options already in the environment are kept, the flags added after them
out=$(BUDDYMALLOC_OPTIONS=pcp=off "$wrapper" run --stats -- bash -c 'echo "$BUDDYMALLOC_OPTIONS"' 2>/dev/null)
check "environment options kept and extended ($out)" \
    bash -c '[[ "$1" == pcp=off,stats=1,stats_pid=* ]]' _ "$out"

# buddymalloc stat PID: live statistics of a running process
"$wrapper" stat 2>"$tmp/err"
check "stat without a pid exits 2" test $? -eq 2
"$wrapper" stat 12x 2>"$tmp/err"
check "stat with a bad pid exits 2" test $? -eq 2
nobody=$(bash -c 'echo $$')      # a process that has exited
"$wrapper" stat "$nobody" 2>"$tmp/err"
check "stat of no process exits 1" test $? -eq 1
check "stat of no process says so" grep -q "no process $nobody" "$tmp/err"

# sleep allocates at start-up (locale), so the allocator is set up in it
sleep 30 & plain=$!
"$wrapper" run -- sleep 30 & bm=$!
"$wrapper" run -o stats_signal=USR2 -- sleep 30 & live=$!
# a program that blocks the signal: no report comes
"$wrapper" run -o stats_signal=USR2 -- python3 -c \
    'import signal, time; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2}); print("ready", flush=True); time.sleep(30)' \
    >"$tmp/blocked.out" & blocked=$!
for _ in $(seq 100); do grep -q ready "$tmp/blocked.out" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
"$wrapper" stat "$plain" 2>"$tmp/err"
check "stat of a process without buddymalloc exits 1" test $? -eq 1
check "... and names the option to set" grep -q "does not run buddymalloc with option stats_signal set: start it with 'buddymalloc run -o stats_signal=USR2" "$tmp/err"
"$wrapper" stat "$bm" 2>"$tmp/err"
check "stat of a process without stats_signal exits 1" test $? -eq 1
check "... and says it runs buddymalloc without the option" grep -q "runs buddymalloc without live statistics (option stats_signal is not set" "$tmp/err"
"$wrapper" stat "$live" >"$tmp/live1" 2>"$tmp/err"
check "stat of a live process exits 0" test $? -eq 0
check "stat prints the header" grep -q "^=== buddymalloc live statistics: pid $live (sleep) signal 12 seq 1 monotonic [0-9]*\.[0-9]\{6\} ===\$" "$tmp/live1"
"$wrapper" stat "$live" >"$tmp/live2" 2>"$tmp/err"
check "a second stat is a new report" grep -q '^=== end 2 ===$' "$tmp/live2"
for section in summary buddyinfo pagetypeinfo pagesets slabinfo; do
    check "stat has $section" grep -q "^--- $section ---" "$tmp/live2"
done
start=$SECONDS
"$wrapper" stat "$blocked" >/dev/null 2>"$tmp/err"
check "stat of a process that blocks the signal exits 1" test $? -eq 1
check "... after about 5 s" test $((SECONDS - start)) -ge 4
check "... and says no report came" grep -q "no report from process $blocked (python3) within 5 s of signal 12" "$tmp/err"
kill "$plain" "$bm" "$live" "$blocked" 2>/dev/null
wait 2>/dev/null

# a refused signal is named, the program runs
out=$("$wrapper" run -o stats_signal=SEGV -- bash -c 'echo ran' 2>"$tmp/err")
check "stats_signal=SEGV: the program runs" test "$out" = ran
check "stats_signal=SEGV is refused" grep -q "bad value in 'stats_signal=SEGV' (a signal that cannot or must not be caught; default kept)" "$tmp/err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
