#!/usr/bin/env bash
# bash runs a script with pipelines, subshells, command and process
# substitution and background jobs (bash-workload.sh), under glibc and under
# buddymalloc; the outputs must match, and bash (the top process and its
# subshells) must have been served by buddymalloc.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog bash sort uniq awk md5sum

mkdir "$TMP/g" "$TMP/b"
WORKDIR=$TMP/g run_as glibc glibc 60 bash "$PROG_DIR/bash-workload.sh"
WORKDIR=$TMP/b run_as bm-all bm 60 bash "$PROG_DIR/bash-workload.sh"

grep -qx 'workload end' "$TMP/bm.out" || fail "the workload did not reach its end under buddymalloc"
same_output "$TMP/glibc.out" "$TMP/bm.out" "the script's output"

# The top bash, its subshells (fib's command substitutions, the jobs) and the
# external commands of the pipelines each print their statistics.
check_served "$TMP/bm.stats" '^bash$' 200000 100 max
check_served "$TMP/bm.stats" '^(sort|awk|md5sum)$' 10 3
note "processes under buddymalloc: $(stats_comms "$TMP/bm.stats")"
note "ok"
