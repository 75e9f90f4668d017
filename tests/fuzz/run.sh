#!/usr/bin/env bash
# Builds the libFuzzer harness (clang-14, with AddressSanitizer and UBSan)
# against the allocator's core sources and runs it for SECONDS (default 60)
# from the seed corpus in tests/fuzz/corpus; new inputs go to
# build/fuzz/corpus. Ends with "1 passed, 0 failed" or, after a crash, the
# reproducer's path and "0 passed, 1 failed".
#
#   tests/fuzz/run.sh            60 s (CI)
#   tests/fuzz/run.sh 3600       an hour
#   tests/fuzz/run.sh 20 DIR     against the geometry of the build in DIR
#                                (its bm_config.h; meson passes its own)
#   build/fuzz/bm-fuzz CRASHFILE replay one input
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
bdir=${2:-build}
case $bdir in /*) bdir=$(realpath --relative-to=. "$bdir") ;; esac
out=$bdir/fuzz
mkdir -p "$out/corpus"
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
  echo "fuzz: clang-14 is missing (scripts/deps.sh installs clang-14 and libclang-rt-14-dev)"
  echo "0 passed, 1 failed"; exit 1
fi
if [ ! -f "$bdir/bm_config.h" ]; then
  echo "fuzz: $bdir/bm_config.h is missing (scripts/build.sh first)"
  echo "0 passed, 1 failed"; exit 1
fi
# the core library (src/meson.build's bm_core): every source but the
# standard names (override.c) and the C++ operators (new_delete.c)
srcs=()
for f in src/*.c; do
  case $f in src/override.c|src/new_delete.c) ;; *) srcs+=("$f") ;; esac
done
newest=$(ls -t "${srcs[@]}" src/*.h include/*.h tests/fuzz/fuzz_malloc.c "$bdir/bm_config.h" | head -1)
if [ ! -x "$out/bm-fuzz" ] || [ "$newest" -nt "$out/bm-fuzz" ]; then
  echo "fuzz: building $out/bm-fuzz with $cc"
  if ! "$cc" -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -D_GNU_SOURCE -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-free \
      -fno-builtin-realloc -ftls-model=initial-exec -Iinclude -Isrc -I"$bdir" \
      "${srcs[@]}" tests/fuzz/fuzz_malloc.c -lnuma -lpthread -o "$out/bm-fuzz"; then
    echo "fuzz: build failed"; echo "0 passed, 1 failed"; exit 1
  fi
fi
echo "fuzz: running for $secs s"
top=$PWD
(cd "$out" && ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
   ./bm-fuzz -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1200 -print_final_stats=1 \
   corpus "$top/tests/fuzz/corpus")
rc=$?
if [ $rc -ne 0 ]; then
  crash=$(ls -t "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* 2>/dev/null | head -1)
  echo "fuzz: failed (exit $rc); reproducer: ${crash:-none}; replay: $out/bm-fuzz ${crash:-FILE}"
  echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
