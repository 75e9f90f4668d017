#!/usr/bin/env bash
# The README's second command: build if needed and run the whole test suite
# (meson test). Ends with one line "N passed, M failed" that counts every
# Criterion test case and every plain test program.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

meson test -C build --no-rebuild --print-errorlogs "$@"
status=$?

logs=(build/meson-logs/testlog.json)
failed_builds=''

# extra_build DIR "SUITE..." "SETUP ARGS" [ENV=VALUE...]: set up DIR once
# with those meson options, build it (only the suites' programs when TARGETS
# names them), run the suites there with the environment given.
extra_build() {
  local dir=$1 suite=$2 setup=$3
  shift 3
  # shellcheck disable=SC2086  # setup holds several options
  [ -f "$dir/build.ninja" ] || meson setup "$dir" $setup >/dev/null
  # shellcheck disable=SC2086  # TARGETS holds several targets
  if ninja -C "$dir" ${TARGETS:-} >/dev/null; then
    local suites=() s
    for s in $suite; do suites+=(--suite "$s"); done
    env "$@" meson test -C "$dir" --no-rebuild --print-errorlogs "${suites[@]}" || status=1
    logs+=("$dir/meson-logs/testlog.json")
  else
    echo "the build in $dir failed"
    failed_builds="$failed_builds $dir"
    status=1
  fi
}

# Only with the whole suite (no arguments):
#  - the Criterion suites (meson suite 'core') once more, built with
#    AddressSanitizer and UBSan: the allocator's own code under the
#    sanitizers. Only they can: the programs that replace malloc cannot run
#    under ASan, which replaces it too. detect_leaks=0: LeakSanitizer would
#    only see Criterion's own memory (it leaks 48 bytes when a test is
#    skipped); the allocator's is mmapped. SANITIZE=0 skips it.
#  - valgrind's memcheck on programs linked with a buddymalloc built with
#    client requests (-Dvalgrind=enabled): leaks and invalid accesses
#    reported, a correct program clean. VALGRIND=0 skips it.
if [ $# -eq 0 ] && [ "${SANITIZE:-1}" != 0 ]; then
  extra_build build-asan core "-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized" \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=0
fi
if [ $# -eq 0 ] && [ "${VALGRIND:-1}" != 0 ]; then
  extra_build build-valgrind valgrind "-Dvalgrind=enabled"
fi
#  - other geometries (GEOMETRY=0 skips them): the suites that assume no
#    block or region size (meson suite 'geometry'), in a build of 16 MiB
#    regions and 1 MiB max-order blocks, where a few MiB of heap spans many
#    regions and pageblocks and the buddy, migrate-type and stress suites
#    (suite 'regions') reach region addition, claims and the reserve in
#    seconds; and in the smallest build meson accepts (max_order 6: 128 KiB
#    blocks, 2-page pageblocks).
if [ $# -eq 0 ] && [ "${GEOMETRY:-1}" != 0 ]; then
  geo_targets=""
  for t in arith pcp malloc-bad malloc-threads harden live-stats edges; do
    geo_targets="$geo_targets tests/test-$t"
  done
  TARGETS="$geo_targets tests/test-buddy tests/test-migrate tests/test-stress" \
    extra_build build-geo-small "geometry regions" \
    "-Dregion_shift=24 -Dmax_order=9 -Dpcp_max_order=3"
  TARGETS=$geo_targets extra_build build-geo-min geometry \
    "-Dmax_order=6 -Dpageblock_order=1"
fi

FAILED_BUILDS=$failed_builds python3 - "${logs[@]}" <<'PY'
import json, os, re, sys
passed = failed = 0
rows = []
for d in os.environ.get("FAILED_BUILDS", "").split():
    rows.append((d + ": build", "FAIL", 0, 1, 0))
    failed += 1
syn = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
plain = re.compile(r"^(\d+) passed, (\d+) failed", re.M)
for path in sys.argv[1:]:
  prefix = ("asan: " if "build-asan" in path else "valgrind: " if "build-valgrind" in path
            else "geo-small: " if "build-geo-small" in path
            else "geo-min: " if "build-geo-min" in path else "")
  with open(path) as f:
    for line in f:
        t = json.loads(line)
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        ok = t.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
        m = syn.findall(out) or plain.findall(out)
        if m:
            last = m[-1]
            if len(last) == 4:
                p, f_ = int(last[1]), int(last[2]) + int(last[3])
            else:
                p, f_ = int(last[0]), int(last[1])
            if not ok and f_ == 0:
                f_ = 1            # the program failed in a way it did not count
        else:
            p, f_ = (1, 0) if ok else (0, 1)
        passed += p
        failed += f_
        rows.append((prefix + t.get("name"), t.get("result"), p, f_, t.get("duration", 0)))
print()
print(f"{'test':<40} {'result':<8} {'passed':>7} {'failed':>7} {'seconds':>8}")
for name, res, p, f_, d in rows:
    print(f"{name:<40} {res:<8} {p:>7} {f_:>7} {d:>8.1f}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
summary=$?
[ $status -eq 0 ] && [ $summary -eq 0 ]
