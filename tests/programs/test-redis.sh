#!/usr/bin/env bash
# redis-server on 127.0.0.1 (a free port, no persistence, in the foreground),
# started and stopped by this test, once under glibc and once under
# buddymalloc (the clients too, in the buddymalloc run):
#  1. redis-benchmark (13 commands, 200000 requests each over a key space of
#     20000, pipelined, two client threads); then what it wrote is read back
#     and checked: every key:* string and hash field holds the benchmark's
#     64-byte value, the counters add up to the INCRs made, the list and the
#     set have the exact lengths the pushes and pops leave;
#  2. a known data set (redis-data.awk: 50420 keys of strings up to 200 KB,
#     hashes, lists, sets) written through `redis-cli --pipe` to db 1, then
#     every key read back and compared with the values computed here, and
#     DBSIZE checked;
#  3. SHUTDOWN NOSAVE, so the server exits normally and prints statistics.
# The checked outputs must match between the runs.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog redis-server redis-cli redis-benchmark awk

REQUESTS=200000   # a multiple of the pipeline depth: exactly this many each
KEYSPACE=20000
DATA=$PROG_DIR/redis-data.awk
awk -v mode=resp -f "$DATA" >"$TMP/data.resp"
awk -v mode=read -f "$DATA" >"$TMP/read.cmd"
awk -v mode=expect -f "$DATA" >"$TMP/expect.txt"
ncmd=$(grep -c '^\*' "$TMP/data.resp")

SERVER_PID=''
stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=''
}
at_cleanup stop_server

server_ping() { [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null) == PONG ]]; }

# start_server MODE: a redis-server (plain or under buddymalloc) on a free
# port; sets PORT and SERVER_PID.
start_server() {
    local mode=$1 attempt pre=()
    [[ $mode == bm ]] && pre=("$WRAPPER" run "--stats-file=$TMP/server-bm.stats" --)
    mkdir -p "$TMP/$mode"
    for ((attempt = 1; attempt <= 5; attempt++)); do
        PORT=$(free_port)
        timeout -k 10 300 "${pre[@]}" redis-server --bind 127.0.0.1 --port "$PORT" \
            --save '' --appendonly no --daemonize no --protected-mode yes \
            --dir "$TMP/$mode" --logfile "$TMP/$mode/redis.log" --loglevel notice \
            >"$TMP/$mode/server.out" 2>&1 &
        SERVER_PID=$!
        local i
        for ((i = 0; i < 150; i++)); do
            server_ping && { note "$mode: redis-server pid $SERVER_PID on 127.0.0.1:$PORT"; return 0; }
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            show_tail "$TMP/$mode/redis.log"
            fail "$mode: redis-server does not answer PING after 15 s"
        fi
        wait "$SERVER_PID" || true
        SERVER_PID=''
        if ! grep -q 'Address already in use' "$TMP/$mode/redis.log" 2>/dev/null; then
            show_tail "$TMP/$mode/redis.log"
            show_tail "$TMP/$mode/server.out"
            fail "$mode: redis-server did not start"
        fi
        note "port $PORT was taken, trying another"
    done
    fail "no port found for redis-server"
}

# client MODE TIMEOUT CMD...: a client program, under buddymalloc in the bm
# run (all client processes append to clients-bm.stats).
client() {
    local mode=$1 t=$2 rc=0
    shift 2
    local pre=()
    [[ $mode == bm ]] && pre=("$WRAPPER" run --stats-all "--stats-file=$TMP/clients-bm.stats" --)
    timeout -k 5 "$t" "${pre[@]}" "$@" || rc=$?
    if ((rc != 0)); then
        echo "client failed: $* ($(_explain_rc "$rc" "$t"))" >&2
        return "$rc"
    fi
}

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# The workload against the running server; prints what must be the same in
# both runs.
workload() {
    local mode=$1
    client "$mode" 180 redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REQUESTS" -r "$KEYSPACE" \
        -d 64 -P 16 -c 8 --threads 2 -q \
        -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset \
        >"$TMP/$mode/benchmark.out" 2>&1 ||
        { show_tail "$TMP/$mode/benchmark.out"; return 1; }

    # What the benchmark wrote. Its random keys differ from run to run, so
    # only what does not depend on them is printed. Every value it stores is
    # one random 64-byte string (SET, MSET, HSET alike).
    cli --scan --pattern 'key:*' >"$TMP/$mode/keys"
    local nkeys
    nkeys=$(wc -l <"$TMP/$mode/keys")
    ((nkeys > 0 && nkeys <= KEYSPACE)) || { echo "benchmark: $nkeys key:* keys" >&2; return 1; }
    awk '{ printf "%s%s", (NR % 500 == 1 ? (NR > 1 ? "\n" : "") "MGET" : ""), " " $0 } END { print "" }' \
        "$TMP/$mode/keys" | client "$mode" 60 redis-cli -h 127.0.0.1 -p "$PORT" >"$TMP/$mode/values"
    cli hvals myhash >>"$TMP/$mode/values"
    echo "benchmark values: $(($(wc -l <"$TMP/$mode/values") - nkeys == $(cli hlen myhash) ? 1 : 0))" \
        "$(sort -u "$TMP/$mode/values" | awk '{ n++; l = length($0) } END { print n " distinct of " l " bytes" }')"
    cli --scan --pattern 'counter:*' >"$TMP/$mode/counters"
    awk '{ printf "%s%s", (NR % 500 == 1 ? (NR > 1 ? "\n" : "") "MGET" : ""), " " $0 } END { print "" }' \
        "$TMP/$mode/counters" | cli | awk '{ s += $1 } END { print "benchmark counters sum", s }'
    echo "benchmark mylist $(cli llen mylist) myset $(cli scard myset)"
    local hlen zcard
    hlen=$(cli hlen myhash) zcard=$(cli zcard myzset)
    ((hlen > 0 && hlen <= KEYSPACE && zcard > 0 && zcard <= KEYSPACE)) ||
        { echo "benchmark: hash $hlen, zset $zcard" >&2; return 1; }

    # The known data set, in db 1.
    client "$mode" 120 redis-cli -h 127.0.0.1 -p "$PORT" --pipe <"$TMP/data.resp" >"$TMP/$mode/pipe.out" 2>&1 ||
        { show_tail "$TMP/$mode/pipe.out"; return 1; }
    grep 'errors:' "$TMP/$mode/pipe.out"
    client "$mode" 120 redis-cli -h 127.0.0.1 -p "$PORT" -n 1 <"$TMP/read.cmd" >"$TMP/$mode/readback"
    if cmp -s "$TMP/expect.txt" "$TMP/$mode/readback"; then
        echo "known data set: every key read back as written"
    else
        echo "known data set: read back DIFFERS"
        diff "$TMP/expect.txt" "$TMP/$mode/readback" | head -n 10 | cut -c1-200
    fi
    echo "db1 dbsize $(cli -n 1 dbsize)"
}

run_mode() {
    local mode=$1 start=$SECONDS rc=0
    start_server "$mode"
    workload "$mode" >"$TMP/$mode.out" 2>"$TMP/$mode.err" || rc=$?
    if ((rc != 0)) || [[ -s $TMP/$mode.err ]]; then
        show_tail "$TMP/$mode.err"
        show_tail "$TMP/$mode/redis.log"
        fail "$mode: the workload failed (status $rc, or messages on stderr above)"
    fi
    # A normal exit through SHUTDOWN (statistics at exit in the bm run).
    cli shutdown nosave >/dev/null 2>&1 || true
    shutdown_wait "$SERVER_PID" "$mode: redis-server" "$TMP/$mode/redis.log" "$TMP/$mode/server.out"
    SERVER_PID=''
    no_complaints "$TMP/$mode/server.out"
    note "$mode run took $((SECONDS - start))s"
}

run_mode glibc
run_mode bm

cat >"$TMP/want" <<EOF
benchmark values: 1 1 distinct of 64 bytes
benchmark counters sum $REQUESTS
benchmark mylist $REQUESTS myset 0
errors: 0, replies: $ncmd
known data set: every key read back as written
db1 dbsize $(tail -n 1 "$TMP/expect.txt")
EOF
expect_file "$TMP/glibc.out" "$TMP/want" "the checks of the glibc run"
expect_file "$TMP/bm.out" "$TMP/want" "the checks of the buddymalloc run"
same_output "$TMP/glibc.out" "$TMP/bm.out" "the checked output"
for f in "$TMP/bm/readback" "$TMP/glibc/readback"; do
    expect_file "$f" "$TMP/expect.txt" "the data read back ($f)"
done

# Measured: the server about 20 million small allocations; the clients
# (redis-benchmark, 3 redis-cli) about 45 million.
check_served "$TMP/server-bm.stats" '^redis-server$' 1000000
check_served "$TMP/clients-bm.stats" '^redis-(benchmark|cli)$' 1000000 4
note "client processes under buddymalloc: $(stats_comms "$TMP/clients-bm.stats")"
note "ok"
