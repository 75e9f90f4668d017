#!/usr/bin/env bash
# Live statistics of a server under load: redis-server on 127.0.0.1 (a free
# port, no persistence) under `buddymalloc run -o stats_signal=USR2`, with
# redis-benchmark running against it in the background; `buddymalloc stat
# PID` every half second while the benchmark runs (at least 3 times). Each
# report must be whole (its header names the server, the summary, buddyinfo,
# pagetypeinfo and slabinfo are there, the end line closes it), and the
# server's allocation counters must grow from one report to the next. Then
# the benchmark must have finished without errors, the server still answer
# PING, and SHUTDOWN NOSAVE end it normally (its statistics at exit show it
# was served by buddymalloc).
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog redis-server redis-cli redis-benchmark

REQUESTS=500000     # per command: about 5 s of load on 2 cores

SERVER_PID='' BENCH_PID=''
stop_all() {
    local p
    for p in "$BENCH_PID" "$SERVER_PID"; do
        if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    SERVER_PID='' BENCH_PID=''
}
at_cleanup stop_all

server_ping() { [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null) == PONG ]]; }

start_server() {
    local attempt i
    for ((attempt = 1; attempt <= 5; attempt++)); do
        PORT=$(free_port)
        # no timeout(1) in front: the server's pid is the one to signal
        # (the wrapper execs it); stop_all ends it whatever happens
        "$WRAPPER" run -o stats_signal=USR2 "--stats-file=$TMP/server.stats" -- \
            redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
            --daemonize no --protected-mode yes --dir "$TMP" --logfile "$TMP/redis.log" \
            >"$TMP/server.out" 2>&1 &
        SERVER_PID=$!
        for ((i = 0; i < 150; i++)); do
            server_ping && { note "redis-server pid $SERVER_PID on 127.0.0.1:$PORT"; return 0; }
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && fail "redis-server does not answer PING after 15 s"
        wait "$SERVER_PID" || true
        SERVER_PID=''
        grep -q 'Address already in use' "$TMP/redis.log" 2>/dev/null ||
            { show_tail "$TMP/redis.log"; show_tail "$TMP/server.out"; fail "redis-server did not start"; }
        note "port $PORT was taken, trying another"
    done
    fail "no port found for redis-server"
}

# check_report FILE: one whole live report of the server.
check_report() {
    local f=$1 seq
    seq=$(sed -n "1s/^=== buddymalloc live statistics: pid $SERVER_PID (redis-server) signal 12 seq \([0-9][0-9]*\) monotonic [0-9]*\.[0-9]\{6\} ===\$/\1/p" "$f")
    [[ -n $seq ]] || { show_tail "$f" 5; fail "$(basename "$f"): no header naming redis-server pid $SERVER_PID"; }
    [[ $(tail -n 1 "$f") == "=== end $seq ===" ]] || fail "$(basename "$f"): does not end with '=== end $seq ==='"
    [[ $(grep -c '^=== ' "$f") == 2 ]] || fail "$(basename "$f"): more than one report"
    local want
    for want in '^--- summary ---$' '^  small allocations  *[0-9]' '^  regions resident  *[0-9]' \
        '^  returned to the OS  *[0-9]' '^--- buddyinfo ---$' '^Node 0, zone   Normal( +[0-9]+ )+$' \
        '^--- pagetypeinfo ---$' '^Page block order: ' '^Node    0, zone   Normal, type +Slab ' \
        '^--- slabinfo ---$' '^slabinfo - version: 2\.1$' '^bm-64 ' '^took [0-9]+ us, [0-9]+ bytes'; do
        grep -Eq "$want" "$f" || { show_tail "$f" 40; fail "$(basename "$f"): no line matching '$want'"; }
    done
    echo "$seq"
}

# report_value FILE KEY: the number of the summary line "  KEY   N [unit]".
report_value() { sed -n "s/^  $2  *\([0-9][0-9]*\).*/\1/p" "$1" | head -n 1; }

start_server
timeout -k 5 180 redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REQUESTS" -r 20000 -d 64 -P 16 -c 8 \
    --threads 2 -q -t set,get,lpush,sadd,hset >"$TMP/benchmark.out" 2>&1 &
BENCH_PID=$!

n=0 prev_small=0 prev_seq=0 max_ms=0
while kill -0 "$BENCH_PID" 2>/dev/null && ((n < 12)); do
    sleep 0.5
    kill -0 "$BENCH_PID" 2>/dev/null || break
    n=$((n + 1))
    f=$TMP/stat-$n.txt
    t0=$(date +%s%N)
    "$WRAPPER" stat "$SERVER_PID" >"$f" 2>"$TMP/stat-$n.err" ||
        { cat "$TMP/stat-$n.err" >&2; fail "buddymalloc stat $SERVER_PID failed (report $n)"; }
    ms=$((($(date +%s%N) - t0) / 1000000))
    ((ms > max_ms)) && max_ms=$ms
    seq=$(check_report "$f")
    ((seq > prev_seq)) || fail "report $n has sequence $seq after $prev_seq"
    small=$(report_value "$f" 'small allocations')
    ((small > prev_small)) || fail "small allocations did not grow: $prev_small, then $small (report $n)"
    note "report $n: seq $seq, small allocations $small, resident $(report_value "$f" 'regions resident') KiB, $(wc -c <"$f") bytes, $(sed -n 's/^took \([0-9]*\) us.*/\1 us/p' "$f") in the server, stat ${ms} ms"
    prev_small=$small prev_seq=$seq
done
((n >= 3)) || fail "only $n reports while the benchmark ran (it took less than 2 s?)"

rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
((rc == 0)) || { show_tail "$TMP/benchmark.out"; fail "redis-benchmark $(_explain_rc "$rc" 180)"; }
if grep -qi 'error' "$TMP/benchmark.out"; then
    show_tail "$TMP/benchmark.out"
    fail "redis-benchmark reported errors"
fi
[[ $(grep -c 'requests per second' "$TMP/benchmark.out") == 5 ]] ||
    { show_tail "$TMP/benchmark.out"; fail "redis-benchmark did not finish its 5 tests"; }
server_ping || fail "redis-server does not answer PING after the reports"
note "benchmark done, server answers PING; slowest stat ${max_ms} ms"

# the server's report after the load: the same counters, no more growth
"$WRAPPER" stat "$SERVER_PID" >"$TMP/stat-after.txt" || fail "buddymalloc stat after the load failed"
check_report "$TMP/stat-after.txt" >/dev/null

redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
shutdown_wait "$SERVER_PID" redis-server "$TMP/redis.log" "$TMP/server.out"
SERVER_PID=''
no_complaints "$TMP/server.out"
check_served "$TMP/server.stats" '^redis-server$' "$prev_small"
note "ok"
