#!/usr/bin/env bash
# `buddymalloc run` and the statistics-at-exit options: flags, bad input,
# which processes print. Prints "N passed, M failed".
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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
