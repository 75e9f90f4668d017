#!/usr/bin/env bash
# git: init a repository, commit hundreds of generated files over several
# commits (edits, renames, deletions, a branch and a merge), gc, fsck, then
# log, diff, blame, grep and archive, under glibc and under buddymalloc
# (every git process and the ones git starts itself, --stats-all). Author and
# committer dates are fixed, so the commit ids must be the same in both runs.
source "$(dirname "$0")/lib.sh"
prog_init "$@"
require_prog git awk sha256sum

export HOME=$TMP/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME='Test Author' GIT_AUTHOR_EMAIL=author@example.com
export GIT_COMMITTER_NAME='Test Committer' GIT_COMMITTER_EMAIL=committer@example.com
export TZ=UTC GIT_PAGER=cat PAGER=cat
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY
mkdir "$HOME"

# gen DIR SEED FIRST COUNT [STEP]: files DIR/dNN/fileNNNN.txt for NNNN =
# FIRST, FIRST+STEP, ... below FIRST+COUNT, 20-80 lines of text each, their
# content depending on SEED.
gen() {
    awk -v dir="$1" -v seed="$2" -v first="$3" -v count="$4" -v step="${5:-1}" 'BEGIN {
        split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima", w, " ")
        for (f = first; f < first + count; f += step) {
            path = sprintf("%s/d%02d/file%04d.txt", dir, f % 23, f)
            system("mkdir -p " sprintf("%s/d%02d", dir, f % 23))
            n = 20 + (f * 7 + seed) % 61
            for (l = 0; l < n; l++)
                printf "%04d %s %s %d %s\n", l, w[(f + l + seed) % 12 + 1], w[(f * l + seed) % 12 + 1],
                    (f * 31 + l * 17 + seed) % 1000, (l % 5 ? "" : "line of " path) > path
            close(path)
        }
    }'
}

# commit N MESSAGE: commit with dates N hours after a fixed instant.
commit() {
    local t=$((1700000000 + $1 * 3600))
    GIT_AUTHOR_DATE="@$t +0000" GIT_COMMITTER_DATE="@$t +0000" g commit -q -m "$2"
}

# The workload, in directory $1 with g() running git (plain or under
# buddymalloc); everything it prints goes to stdout.
workload() {
    local repo=$1
    mkdir -p "$repo"
    cd "$repo"
    g init -q -b main .
    g config core.autocrlf false
    g config gc.auto 0
    gen . 1 0 400
    g add -A
    commit 1 "400 files"
    # Rewrite every third file, add 100 more.
    gen . 2 0 400 3
    gen . 3 400 100
    g add -A
    commit 2 "rewrite, 100 new files"
    # Renames and deletions.
    for ((f = 0; f < 60; f++)); do
        g mv "d$(printf %02d $((f % 23)))/file$(printf %04d "$f").txt" "d$(printf %02d $((f % 23)))/renamed$(printf %04d "$f").txt"
    done
    g rm -q d0[0-4]/file01*.txt
    commit 3 "renames and deletions"
    # A branch with its own commits, then a merge.
    g checkout -q -b topic
    gen . 4 500 50
    g add -A
    commit 4 "topic: 50 files"
    g checkout -q main
    gen . 5 550 50
    g add -A
    commit 5 "main: 50 files"
    GIT_AUTHOR_DATE="@1700030000 +0000" GIT_COMMITTER_DATE="@1700030000 +0000" \
        g merge -q --no-edit -m "merge topic" topic
    g tag -a -m "version 1" v1
    g gc -q --prune=now
    g fsck --full --strict --no-progress
    echo "HEAD $(g rev-parse HEAD)"
    echo "tree $(g rev-parse 'HEAD^{tree}')"
    g count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    g log --format='%H %s' --stat --all
    g diff --stat HEAD~3 HEAD | tail -n 1
    g blame -s d05/file0074.txt | sed -n 1,5p  # reads all: no SIGPIPE for git
    g grep -c 'line of' HEAD -- d07 | sed -n 1,5p
    g ls-tree -r HEAD | wc -l
    g archive --format=tar HEAD | sha256sum
    g describe --tags
    g verify-pack -v .git/objects/pack/pack-*.idx | grep -c -E ' (blob|tree|commit|tag) ' || true
}

run_workload() {
    local mode=$1 rc=0 start=$SECONDS
    BM_RUN=()
    [[ $mode == bm ]] && bm_prefix bm all
    # git through timeout (and the wrapper); a failure is recorded, as the
    # workload goes on (its output then differs).
    g() {
        local rc=0
        timeout -k 5 60 "${BM_RUN[@]}" git "$@" || rc=$?
        ((rc == 0)) || echo "git $*: $(_explain_rc "$rc" 60)" >>"$TMP/$mode.failed"
        return "$rc"
    }
    (workload "$TMP/$mode-repo") >"$TMP/$mode.out" 2>"$TMP/$mode.err" || rc=$?
    if ((rc != 0)) || [[ -s $TMP/$mode.failed ]]; then
        show_tail "$TMP/$mode.err"
        [[ ! -s $TMP/$mode.failed ]] || sed 's/^/    failed: /' "$TMP/$mode.failed" >&2
        fail "the git workload failed under $mode (status $rc)"
    fi
    note "$mode run took $((SECONDS - start))s"
}
run_workload glibc
run_workload bm

grep -q '^HEAD [0-9a-f]\{40\}$' "$TMP/bm.out" || fail "no commit id in the output under buddymalloc"
same_output "$TMP/glibc.out" "$TMP/bm.out" "git's output (commit ids, log, fsck, archive)"
for mode in glibc bm; do
    if [[ -s $TMP/$mode.err ]]; then
        show_tail "$TMP/$mode.err"
        fail "git wrote to stderr in the $mode run"
    fi
done

# Every git command and its children (gc: pack-refs, reflog, repack,
# pack-objects, prune...) printed statistics: measured 106 processes, about
# 120 thousand small allocations in all.
check_served "$TMP/bm.stats" '^git' 10000 60
note "processes under buddymalloc: $(stats_comms "$TMP/bm.stats")"
note "ok"
