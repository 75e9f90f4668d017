#!/usr/bin/env bash
# memcheck on programs linked with a buddymalloc built -Dvalgrind=enabled
# (meson suite 'valgrind'; scripts/test.sh builds build-valgrind for it):
#   vg-clean   a correct program: no error, no leak (the allocator's own
#              reads and writes of free blocks must stay invisible);
#   vg-errors  deliberate errors: each must be reported, with the size of
#              the block and the allocator's function in the stack.
# --soname-synonyms=somalloc=nouserintercepts: by default memcheck puts its
# own malloc in place of every library's, ours included; this leaves ours
# in place, which is what a program linked with buddymalloc runs.
# Usage: run.sh VG_CLEAN VG_ERRORS. Prints "N passed, M failed".
set -uo pipefail
clean=$1 errors=$2
passed=0 failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is not installed (scripts/deps.sh)"; echo "0 passed, 1 failed"; exit 1; }

vg() { valgrind --soname-synonyms=somalloc=nouserintercepts --leak-check=full "$@"; }

check() {   # check NAME CONDITION...: one counted check
    local name=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name"
    else failed=$((failed + 1)); echo "FAIL $name"; fi
}
has() { grep -qE -- "$1" "$tmp/err.log"; }

vg --error-exitcode=97 "$clean" >"$tmp/clean.out" 2>"$tmp/clean.log"
rc=$?
check "clean program exits 0 under memcheck" [ $rc -eq 0 ]
check "clean program: ERROR SUMMARY 0" grep -q "ERROR SUMMARY: 0 errors" "$tmp/clean.log"
check "clean program: nothing leaked" grep -qE "All heap blocks were freed|definitely lost: 0 bytes" "$tmp/clean.log"
check "clean program: its own checks passed" grep -q "mismatches 0" "$tmp/clean.out"
[ $rc -eq 0 ] || grep -v "large range" "$tmp/clean.log" | head -40

vg "$errors" >"$tmp/err.out" 2>"$tmp/err.log"
check "use after free: invalid read" has "Invalid read of size 1"
check "use after free: inside a freed block of 64" has "is 3 bytes inside a block of size 64 free'd"
check "use after free: freed by buddymalloc's free" has "at 0x[0-9A-F]+: free \(in .*libbuddymalloc"
check "overrun into the slot's slack: invalid write" has "Invalid write of size 1"
check "overrun: just after a block of 24" has "is 0 bytes after a block of size 24 alloc'd"
check "uninitialised bytes of a fresh block" has "Conditional jump or move depends on uninitialised value"
check "leak of a small block" has "100 bytes in 1 blocks are definitely lost"
check "leak of a run of pages" has "200,000 bytes in 1 blocks are definitely lost"
check "leak made by buddymalloc's malloc" has "at 0x[0-9A-F]+: malloc \(in .*libbuddymalloc"
check "nothing else reported (calloc memory is defined): 5 contexts" \
    has "ERROR SUMMARY: [0-9]+ errors from 5 contexts"
if [ $failed -ne 0 ]; then grep -v "large range" "$tmp/err.log" | head -60; fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
