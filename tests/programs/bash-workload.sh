# The workload of test-bash.sh, run by `bash bash-workload.sh` (under glibc,
# then under buddymalloc): bash's own heap (variables, arrays, associative
# arrays, word expansion, here-documents) with pipelines, subshells, command
# and process substitution and background jobs. Prints a deterministic text.
set -u
export LC_ALL=C

words=(alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima
       mike november oscar papa quebec romeo sierra tango uniform victor whiskey
       xray yankee zulu)
nw=${#words[@]}

# 1. Variables, arrays and associative arrays: bash's allocations.
declare -A count=() first=()
lines=()
for ((i = 0; i < 20000; i++)); do
    w=${words[(i * 7 + i / 13) % nw]}
    key="$w-$((i % 97))"
    count[$key]=$(( ${count[$key]:-0} + 1 ))
    [[ -n ${first[$key]:-} ]] || first[$key]=$i
    lines+=("$i:${w^^}:${key//-/_}:$((i * i % 1009))")
done
echo "keys ${#count[@]} lines ${#lines[@]}"
total=0
for k in "${!count[@]}"; do total=$((total + count[$k])); done
echo "total $total"

# 2. Pipelines: words through sort | uniq -c | sort, and a while-read loop
# fed by a pipeline (its body runs in a subshell).
printf '%s\n' "${lines[@]}" | cut -d: -f2 | sort | uniq -c | sort -k1,1nr -k2 | head -n 5
printf '%s\n' "${lines[@]}" | awk -F: '{ s += $4 } END { print "awk sum", s }'
printf '%s\n' "${lines[@]}" | while IFS=: read -r n up k sq; do
    [[ $((n % 4000)) -eq 0 ]] && echo "row $n $up $k $sq"
done | tr '[:upper:]' '[:lower:]'

# 3. Subshells and command substitution, nested.
big=$(for ((i = 0; i < 3000; i++)); do printf '%s ' "${words[i % nw]}$i"; done)
echo "big length ${#big}"
nested=$( (echo outer; ( echo inner; ( echo innermost ) ) ) | tr '\n' '/')
echo "nested $nested"
# shellcheck disable=SC2086  # split into words on purpose
set -- $big
echo "positional $# last ${!#}"
shift 2990
echo "after shift $*"

# 4. String manipulation: parameter expansion over a long string.
s=""
for ((i = 0; i < 2000; i++)); do s+="${words[i % nw]},"; done
t=${s//a/A}
u=${t%%,zulu*}
echo "lengths ${#s} ${#t} ${#u} upper-a $(tr -cd A <<<"$t" | wc -c)"
IFS=, read -r -a arr <<<"$s"
echo "split ${#arr[@]} ${arr[0]} ${arr[-1]}"

# 5. Functions and recursion (each level allocates its locals).
fib() {
    local n=$1
    if ((n < 2)); then echo "$n"; return; fi
    local a b
    a=$(fib $((n - 1)))
    b=$(fib $((n - 2)))
    echo $((a + b))
}
echo "fib $(fib 11)"
join_by() { local IFS=$1; shift; echo "$*"; }
echo "joined $(join_by + "${words[@]:0:8}")"

# 6. Process substitution, here-documents, background jobs.
paste -d' ' <(printf '%s\n' "${words[@]}" | head -n 6) <(printf '%s\n' "${words[@]}" | tail -n 6 | sort -r)
cat <<EOF | sed 's/^/heredoc: /'
first ${words[0]} last ${words[-1]}
count ${#words[@]} $(printf '%s' "${words[@]}" | wc -c)
EOF
for j in 1 2 3 4; do
    ( acc=0; for ((i = 0; i < 2000; i++)); do acc=$(((acc * 31 + i * j) % 1000003)); done
      echo "$acc" >"$WORKDIR/job$j" ) &
done
wait
echo "jobs $(cat "$WORKDIR"/job1 "$WORKDIR"/job2 "$WORKDIR"/job3 "$WORKDIR"/job4 | tr '\n' ' ')"

# 7. A sorted dump of the associative array through a pipeline.
for k in "${!count[@]}"; do echo "$k ${count[$k]} ${first[$k]}"; done | sort | md5sum | cut -c1-32
echo 'workload end'
