#!/usr/bin/env bash
# Re-records the shipped traces with the tracing preload, checks them, and
# prints their summaries (README.md has the summaries of the shipped ones).
#
#   bench/trace/record.sh LIBMALLOC_TRACE_SO [python|redis|all]
#
# LIBMALLOC_TRACE_SO is the built library (build/bench/trace/libmalloc-trace.so
# or wherever meson put it); this script builds nothing. It writes
# python3.trace.xz and redis.trace.xz next to itself, or into $OUT.
#
# Environment (defaults in brackets):
#   PYTHON          the Python to record [python3]; a wrapper script such as a
#                   pyenv shim is resolved to the interpreter it runs
#   PY_SCALE        workload.py --scale [1]
#   MAX_OPS         MALLOC_TRACE_MAX_OPS for both recordings [2000000]
#   REDIS_SERVER, REDIS_BENCHMARK, REDIS_CLI   [redis-server, redis-benchmark, redis-cli]
#   REDIS_SIZES     the -d value (bytes) of each redis-benchmark round [16 128 1024]
#   REDIS_REQUESTS  -n of each round, per command [6000]
#   REDIS_TESTS     -t of each round [set,get,lpush,lpop,hset,sadd,incr]
#   OUT             where the .xz files go [this directory]
#
# Needs: python3, xz; for redis: redis-server and redis-tools (Debian 12).
# Network: a redis-server on 127.0.0.1 and a free port, stopped at the end.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 LIBMALLOC_TRACE_SO [python|redis|all]" >&2
  exit 2
fi
if [ ! -f "$1" ]; then
  echo "record.sh: no library at $1" >&2
  exit 2
fi
lib=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
what=${2:-all}
case $what in python|redis|all) ;; *) echo "record.sh: python, redis or all, not '$what'" >&2; exit 2;; esac

here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
max_ops=${MAX_OPS:-2000000}
python=${PYTHON:-python3}
# the interpreter itself, not a wrapper around it (a wrapper that forks the
# interpreter, rather than exec'ing it, would be the process recorded)
py=$("$python" -c 'import sys; print(sys.executable)')

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

summarize() {   # name
  "$py" "$here/summarize.py" --check "$out/$1.trace.xz"
}

record_python() {
  echo "== python3: PYTHONMALLOC=malloc $(basename "$py") workload.py --scale ${PY_SCALE:-1}"
  # The same trace every time: PYTHONHASHSEED=0 fixes the order of str-keyed
  # dicts and sets, and no address randomisation (setarch -R, where allowed)
  # that of the few sets and dicts keyed by object address, which decides when
  # some blocks are freed. -s: no user site-packages. env, setarch and the
  # interpreter are one process (each execs the next): the tracer records the
  # last. The output must not depend on the tracer.
  local norandom=()
  if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
    norandom=(setarch "$(uname -m)" -R)
  else
    echo "  (setarch -R not available: the trace may differ a little from run to run)"
  fi
  local run=(env PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
             "${norandom[@]}" "$py" -s workload.py --scale "${PY_SCALE:-1}")
  local expected got
  expected=$(cd "$here" && "${run[@]}")
  got=$(cd "$here" && MALLOC_TRACE_FILE="$tmp/python3.trace" MALLOC_TRACE_MAX_OPS="$max_ops" \
        LD_PRELOAD="$lib" "${run[@]}")
  if [ "$expected" != "$got" ]; then
    echo "record.sh: workload.py printed something else under the tracer:" >&2
    diff <(echo "$expected") <(echo "$got") >&2 || true
    exit 1
  fi
  while IFS= read -r line; do echo "  $line"; done <<< "$got"
  echo "  output identical with and without the tracer"
  xz -9 -T1 -c "$tmp/python3.trace" > "$out/python3.trace.xz"
  summarize python3
}

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

record_redis() {
  local server=${REDIS_SERVER:-redis-server} bench=${REDIS_BENCHMARK:-redis-benchmark}
  local cli=${REDIS_CLI:-redis-cli}
  local tests=${REDIS_TESTS:-set,get,lpush,lpop,hset,sadd,incr}
  local requests=${REDIS_REQUESTS:-6000}
  local port
  for p in "$server" "$bench" "$cli"; do
    command -v "$p" >/dev/null || { echo "record.sh: $p not found (Debian: redis-server, redis-tools)" >&2; exit 1; }
  done
  port=$(free_port)
  echo "== redis: $server on 127.0.0.1:$port, $bench -t $tests -r 100000 -n $requests -d ${REDIS_SIZES:-16 128 1024}"
  # The server runs in an empty directory: --save '' and --appendonly no mean
  # it writes nothing there anyway.
  (cd "$tmp" && exec env MALLOC_TRACE_FILE="$tmp/redis.trace" MALLOC_TRACE_MAX_OPS="$max_ops" \
      LD_PRELOAD="$lib" "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no > "$tmp/redis.log" 2>&1) &
  server_pid=$!
  local up=""
  for _ in $(seq 100); do
    if [ "$("$cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then up=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$up" ]; then
    echo "record.sh: redis-server did not come up; its log:" >&2
    cat "$tmp/redis.log" >&2
    exit 1
  fi
  local n_tests
  n_tests=$(echo "$tests" | tr ',' '\n' | grep -c .)
  for d in ${REDIS_SIZES:-16 128 1024}; do
    "$bench" -h 127.0.0.1 -p "$port" -t "$tests" -r 100000 -n "$requests" -d "$d" --csv \
      > "$tmp/bench.csv"
    # one line per test after the header, each with its requests per second
    local done_tests
    done_tests=$(tail -n +2 "$tmp/bench.csv" | grep -c '^"')
    if [ "$done_tests" -ne "$n_tests" ]; then
      echo "record.sh: redis-benchmark -d $d finished $done_tests of $n_tests tests:" >&2
      cat "$tmp/bench.csv" >&2
      exit 1
    fi
    echo "  -d $d: $(tail -n +2 "$tmp/bench.csv" | cut -d, -f1,2 | tr -d '"' | tr ',\n' ' ;' | sed 's/; $//') (requests/s, traced)"
  done
  echo "  keys at the end: $("$cli" -h 127.0.0.1 -p "$port" dbsize)"
  "$cli" -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$server_pid" || { echo "record.sh: redis-server exited with an error; its log:" >&2; cat "$tmp/redis.log" >&2; exit 1; }
  server_pid=""
  if ! grep -q 'ready to exit' "$tmp/redis.log"; then
    echo "record.sh: redis-server did not shut down cleanly; its log:" >&2
    cat "$tmp/redis.log" >&2
    exit 1
  fi
  xz -9 -T1 -c "$tmp/redis.trace" > "$out/redis.trace.xz"
  summarize redis
}

case $what in
  python) record_python ;;
  redis) record_redis ;;
  all) record_python; record_redis ;;
esac
for f in "$out"/python3.trace.xz "$out"/redis.trace.xz; do
  if [ -f "$f" ]; then echo "  $(stat -c %s "$f") bytes  $(basename "$f")"; fi
done
