#!/usr/bin/env bash
# tests/numa/vm.sh - run a program on a NUMA machine made up by QEMU.
#
#   vm.sh [options] PROGRAM [ARGS...]
#
# Boots a throw-away x86-64 VM with NODES NUMA nodes (QEMU, TCG), from an
# initramfs only (no disk, no network): a static busybox, numactl, PROGRAM
# and every shared library ldd names for it, the extra files of -x, the
# host's /etc/ld.so.cache. Every file sits at the same absolute path as on
# the host, so a build directory's libraries resolve by their rpath and
# LD_PRELOAD=/abs/path works as it does here. Then runs PROGRAM ARGS (or the
# guest script of -s), prints what it wrote to stdout and stderr (into one
# file; printed when it ends), and exits with its status.
#
# Options:
#   -n NODES     NUMA nodes, 1..8 (default 2)
#   -m MIB       memory per node in MiB (default 384), or one value per node:
#                -m 256,512,512,512
#   -c CPUS      CPUs per node (default 1)
#   -i           number the CPUs round-robin over the nodes (CPU k on node
#                k % NODES, as on many two-socket servers) instead of in blocks
#   -d DIST      node distances: 'ring' (default: 10 + 10 per hop on a ring)
#                or 'src:dst:val,...' with every pair of nodes given (one
#                direction is enough; give both for an asymmetric table)
#   -e VAR=VAL   set VAR in the guest's environment (repeatable); a path
#                in LD_PRELOAD is put into the guest by itself
#   -x FILE      put FILE (or a directory) into the guest at its path, with
#                the libraries of the ELF files among it (repeatable)
#   -t SECONDS   time limit of the VM, boot included (default 300); the
#                program is stopped 20 s before it so its output is kept
#   -s SCRIPT    run SCRIPT with busybox sh instead of PROGRAM; it gets ARGS
#                as its arguments and PROGRAM and NODES in its environment
#   -k KERNEL    boot this kernel (bzImage or ELF vmlinux) instead of the
#                cached Debian one (also: BM_NUMA_VM_KERNEL)
#   -K ARGS      more kernel command-line arguments (e.g.
#                transparent_hugepage=never; Debian's default is always)
#   -l LOG       write the VM's console log here (default: under the cache)
#   -v           copy the console to stderr as it comes
#   -h           this help
#
# Prints only the program's output (carriage returns and escape sequences
# removed), after a line on stderr that says how the run went. The console
# (kernel messages, the guest's init) goes to the log file; on a time-out or
# a VM that gave no result its path and last lines are printed too.
#
# Exit status: the program's; 124 when it ran out of time, 125 when no result
# came back (the VM did not boot, panicked, ...); 2 for bad usage, 3 when
# the VM cannot be had (missing package that cannot be installed, no kernel).
#
# Needs qemu-system-x86, busybox-static, cpio and numactl: installed with
# apt-get when missing and run as root. The kernel is Debian's
# linux-image-amd64, fetched once with 'apt-get download' (an 'apt-get
# update' first when the package lists lack it) and kept, with the ELF image
# taken out of it for a fast PVH boot, in the cache directory
#   ${BM_NUMA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/buddymalloc-numa-vm}
# One VM runs at a time: a lock in that directory makes a second run wait.
#
# TCG emulates the machine, by default on one host thread for all vCPUs
# (BM_NUMA_VM_TCG_THREAD=multi: one each; no faster here, and with it a boot
# now and then hung); placement (which node a page is on) is real, timing is
# not. Build what runs inside for a generic x86-64. A VM that has not booted
# after BM_NUMA_VM_BOOT_LIMIT seconds (60) is started once more.
# BM_NUMA_VM_ACCEL=kvm uses KVM instead (not a PVM /dev/kvm: it crawls).

set -euo pipefail

me=vm.sh
usage() { sed -n '3,/^$/{s/^# \{0,1\}//;p}' "$0"; exit "${1:-0}"; }
die() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 3; }

nodes=2 mem=384 cpn=1 rr=0 dist=ring limit=300 script='' kernel=${BM_NUMA_VM_KERNEL:-}
log='' verbose=0 kargs=''
envs=() extras=()
while getopts ':n:m:c:id:e:x:t:s:k:K:l:vh' opt; do
  case $opt in
    n) nodes=$OPTARG ;;
    m) mem=$OPTARG ;;
    c) cpn=$OPTARG ;;
    i) rr=1 ;;
    d) dist=$OPTARG ;;
    e) [[ $OPTARG == *=* ]] || die "-e wants VAR=VALUE, not '$OPTARG'"
       [[ ${OPTARG%%=*} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "-e: bad variable name in '$OPTARG'"
       envs+=("$OPTARG") ;;
    x) extras+=("$OPTARG") ;;
    t) limit=$OPTARG ;;
    s) script=$OPTARG ;;
    k) kernel=$OPTARG ;;
    K) kargs=$OPTARG ;;
    l) log=$OPTARG ;;
    v) verbose=1 ;;
    h) usage 0 ;;
    :) die "-$OPTARG needs a value (-h for help)" ;;
    *) die "unknown option -$OPTARG (-h for help)" ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "no PROGRAM given (-h for help)"
program=$1
shift

isnum() { [[ $1 =~ ^[0-9]+$ ]]; }
isnum "$nodes" && [ "$nodes" -ge 1 ] && [ "$nodes" -le 8 ] || die "-n: 1 to 8 nodes, not '$nodes'"
isnum "$cpn" && [ "$cpn" -ge 1 ] && [ "$cpn" -le 16 ] || die "-c: 1 to 16 CPUs per node, not '$cpn'"
isnum "$limit" && [ "$limit" -ge 30 ] || die "-t: at least 30 seconds, not '$limit'"
[ -z "$script" ] || [ -f "$script" ] || die "-s: no such file '$script'"
[ -f "$program" ] && [ -x "$program" ] || die "'$program' is not an executable file"

# Memory per node.
IFS=, read -r -a node_mem <<<"$mem"
if [ ${#node_mem[@]} -eq 1 ]; then
  for ((n = 1; n < nodes; n++)); do node_mem[n]=${node_mem[0]}; done
fi
[ ${#node_mem[@]} -eq "$nodes" ] || die "-m: ${#node_mem[@]} values for $nodes nodes"
total_mem=0
for m in "${node_mem[@]}"; do
  isnum "$m" && [ "$m" -ge 64 ] || die "-m: at least 64 MiB per node, not '$m'"
  total_mem=$((total_mem + m))
done

# Distances: a full table, 10 on the diagonal, every pair given.
declare -A distance=()
if [ "$nodes" -gt 1 ]; then
  if [ "$dist" = ring ]; then
    for ((a = 0; a < nodes; a++)); do
      for ((b = 0; b < nodes; b++)); do
        [ $a -ne $b ] || continue
        hops=$(( a > b ? a - b : b - a ))
        [ $((nodes - hops)) -ge $hops ] || hops=$((nodes - hops))
        distance[$a,$b]=$((10 + 10 * hops))
      done
    done
  else
    declare -A given=()
    IFS=, read -r -a entries <<<"$dist"
    for e in "${entries[@]}"; do
      [[ $e =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]] || die "-d: '$e' is not src:dst:val"
      a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} v=${BASH_REMATCH[3]}
      [ "$a" -lt "$nodes" ] && [ "$b" -lt "$nodes" ] && [ "$a" -ne "$b" ] ||
        die "-d: '$e' names no pair of distinct nodes below $nodes"
      [ "$v" -gt 10 ] && [ "$v" -le 254 ] || die "-d: '$e': a distance between nodes is 11..254"
      distance[$a,$b]=$v
      given[$a,$b]=1
      [ -n "${given[$b,$a]:-}" ] || distance[$b,$a]=$v     # the other way, unless given
    done
    for ((a = 0; a < nodes; a++)); do
      for ((b = 0; b < nodes; b++)); do
        [ $a -eq $b ] || [ -n "${distance[$a,$b]:-}" ] || die "-d: no distance between nodes $a and $b"
      done
    done
  fi
fi

cache=${BM_NUMA_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/buddymalloc-numa-vm}
mkdir -p "$cache/kernel" "$cache/logs" || fail "cannot make the cache directory $cache"

# ------------------------------------------------------------ host packages
static_busybox() {
  local b
  for b in /usr/bin/busybox /bin/busybox; do
    [ -x "$b" ] || continue
    case $(LC_ALL=C ldd "$b" 2>&1) in
      *'not a dynamic executable'* | *'statically linked'*) echo "$b"; return 0 ;;
    esac
  done
  return 1
}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
static_busybox >/dev/null || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v numactl >/dev/null || missing+=(numactl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || fail "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  echo "$me: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$cache/logs/apt.log" 2>&1; then
    echo "$me: apt-get install failed, running apt-get update first" >&2
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >>"$cache/logs/apt.log" 2>&1 ||
      { tail -n 15 "$cache/logs/apt.log" | sed 's/^/  apt| /' >&2; fail "could not install ${missing[*]}"; }
  fi
fi
busybox=$(static_busybox) || fail "no static busybox (package busybox-static)"

# One VM at a time, and one kernel download.
exec 9>"$cache/lock"
if ! flock -n 9; then
  echo "$me: another VM is running, waiting for it" >&2
  flock 9
fi

# ------------------------------------------------------------ kernel
# The newest kernel in the cache, else Debian's linux-image-amd64 fetched.
apt_log=$cache/logs/apt.log
kernel_package() {   # the linux-image-X-amd64 that linux-image-amd64 stands for
  apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
fetch_kernel() {
  local pkg dir tries
  command -v apt-get >/dev/null || fail "no kernel in $cache/kernel and no apt-get to fetch one"
  dir=$(mktemp -d "$cache/kernel/fetch.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  chmod 755 "$dir"
  for tries in 1 2; do
    pkg=$(kernel_package || true)
    if [ -n "$pkg" ] && (cd "$dir" && apt-get download -q "$pkg") >>"$apt_log" 2>&1; then
      break
    fi
    pkg=''
    [ $tries -eq 1 ] || break
    [ "$(id -u)" -eq 0 ] || break
    echo "$me: the kernel package is not in apt's lists or could not be downloaded; running apt-get update" >&2
    apt-get update -q >>"$apt_log" 2>&1 || break
  done
  if [ -z "$pkg" ]; then
    tail -n 15 "$apt_log" | sed 's/^/  apt| /' >&2
    rm -rf "$dir"
    fail "could not download Debian's linux-image-amd64 (a kernel for the NUMA VM); give one with -k or BM_NUMA_VM_KERNEL"
  fi
  dpkg -x "$dir"/"$pkg"_*.deb "$dir/x" || { rm -rf "$dir"; fail "could not unpack $pkg"; }
  local img
  img=$(ls "$dir"/x/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
  [ -n "$img" ] || { rm -rf "$dir"; fail "$pkg holds no /boot/vmlinuz-*"; }
  mv "$img" "$cache/kernel/"
  rm -rf "$dir"             # the modules: not needed, initramfs only
  trap - EXIT
  echo "$me: kernel $(basename "$img") from $pkg kept in $cache/kernel" >&2
}
if [ -z "$kernel" ]; then
  kernel=$(ls "$cache"/kernel/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$kernel" ]; then
    echo "$me: no kernel cached yet: fetching Debian's linux-image-amd64 (once)" >&2
    fetch_kernel
    kernel=$(ls "$cache"/kernel/vmlinuz-* | sort -V | tail -n 1)
  fi
fi
[ -r "$kernel" ] || fail "kernel '$kernel' cannot be read"

# A bzImage spends most of a TCG boot unpacking itself. Its ELF vmlinux,
# taken out once, boots through the PVH entry point instead (QEMU loads an
# ELF kernel that has the Xen PHYS32_ENTRY note that way).
is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }
has_pvh() { LC_ALL=C readelf -n "$1" 2>/dev/null | grep -Eq 'Xen.*(0x00000012|PHYS32_ENTRY)'; }
elf_of() {   # $1 bzImage: prints the cached ELF with a PVH entry, or nothing
  local bz=$1 out fmt magic unpack off
  out=$cache/kernel/$(basename "$bz").$(stat -c %s "$bz").elf
  [ -s "$out" ] && { echo "$out"; return; }
  for fmt in xz zstd gzip; do
    case $fmt in
      xz) magic=$'\xfd7zXZ\x00' unpack='xz -dcq' ;;
      zstd) magic=$'\x28\xb5\x2f\xfd' unpack='zstd -dcq' ;;
      gzip) magic=$'\x1f\x8b\x08' unpack='gzip -dcq' ;;
    esac
    command -v "${unpack%% *}" >/dev/null || continue
    for off in $(LC_ALL=C grep -abo "$magic" "$bz" 2>/dev/null | head -n 4 | cut -d: -f1); do
      # the stream ends before the bzImage does: ignore the complaint
      tail -c +$((off + 1)) "$bz" | $unpack >"$out.tmp" 2>/dev/null || true
      if [ -s "$out.tmp" ] && is_elf "$out.tmp" && has_pvh "$out.tmp"; then
        mv "$out.tmp" "$out"
        echo "$out"
        return
      fi
    done
  done
  rm -f "$out.tmp"
}
boot=$kernel
if ! is_elf "$kernel"; then
  elf=$(elf_of "$kernel")
  if [ -n "$elf" ]; then boot=$elf; else echo "$me: no PVH ELF in $kernel: booting the bzImage (slower)" >&2; fi
elif ! has_pvh "$kernel"; then
  fail "'$kernel' is an ELF kernel without a PVH entry point: QEMU cannot boot it"
fi

# ------------------------------------------------------------ initramfs
work=$(mktemp -d "${TMPDIR:-/tmp}/bm-numa-vm.XXXXXX")
runner='' tailpid=''
cleanup() {   # a QEMU still running (interrupted): stop it, let its runner end
  if [ -s "$work/qpid" ] && [ ! -s "$work/qrc" ]; then
    kill "$(cat "$work/qpid")" 2>/dev/null || true
    [ -z "$runner" ] || wait "$runner" 2>/dev/null || true
  fi
  [ -z "$tailpid" ] || kill "$tailpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root
mkdir -p "$root"/{dev,proc,sys,tmp,etc,vm}

# The host's top-level links (merged /usr: /bin -> usr/bin, /lib64 -> usr/lib64)
# as relative links, so a path ldd prints means the same file inside.
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then
    t=$(readlink -f "/$d")
    mkdir -p "$root$t"
    ln -s "${t#/}" "$root/$d"
  elif [ -d "/$d" ]; then
    mkdir -p "$root/$d"
  fi
done

# put PATH: the host's PATH at the same place inside; a link is copied as a
# link and what it points to is put too; directories whole.
put() {
  local p=$1 dir real t f
  [[ $p == /* ]] || p=$PWD/$p
  dir=$(cd "$(dirname "$p")" 2>/dev/null && pwd -P) || { echo "$me: no such file '$1'" >&2; return 1; }
  real=$dir/$(basename "$p")
  if [ "$(dirname "$p")" != "$dir" ]; then      # reached through a linked directory
    put "$real" || return 1
    # the links mirrored above may already lead there (/lib64 -> usr/lib64)
    [ "$(cd "$root$(dirname "$p")" 2>/dev/null && pwd -P)" != "$root$dir" ] || return 0
    [ -e "$root$p" ] || [ -L "$root$p" ] || { mkdir -p "$root$(dirname "$p")"; ln -s "$real" "$root$p"; }
    return 0
  fi
  [ ! -e "$root$real" ] && [ ! -L "$root$real" ] || return 0
  [ -e "$real" ] || [ -L "$real" ] || { echo "$me: no such file '$1'" >&2; return 1; }
  mkdir -p "$root$dir"
  if [ -L "$real" ]; then
    t=$(readlink "$real")
    ln -s "$t" "$root$real"
    case $t in /*) put "$t" ;; *) put "$dir/$t" ;; esac
  elif [ -d "$real" ]; then
    mkdir -p "$root$real"
    for f in "$real"/* "$real"/.[!.]*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      put "$f"
    done
  else
    cp -p "$real" "$root$real"
    is_elf "$real" && put_libs "$real"
  fi
  return 0
}
put_libs() {   # the shared libraries ldd resolves for ELF file $1
  local lib out
  out=$(LC_ALL=C ldd "$1" 2>/dev/null) || return 0     # static, or not a program
  if grep -q 'not found' <<<"$out"; then
    grep 'not found' <<<"$out" >&2
    fail "libraries of $1 not found on this host"
  fi
  for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"); do
    put "$lib"
  done
}

program=$(cd "$(dirname "$program")" && pwd -P)/$(basename "$program")
put "$program"
put "$(command -v numactl)"
for x in ${extras[@]+"${extras[@]}"}; do put "$x" || fail "-x: cannot put '$x' into the guest"; done
for kv in ${envs[@]+"${envs[@]}"}; do
  if [ "${kv%%=*}" = LD_PRELOAD ]; then
    for lib in ${kv#*=}; do
      [[ $lib == /* ]] && [ -e "$lib" ] && put "$lib"
    done
  fi
done
[ ! -r /etc/ld.so.cache ] || cp /etc/ld.so.cache "$root/etc/"
# busybox last: its applets never hide a real program put above
bb=$(cd "$(dirname "$busybox")" && pwd -P)/$(basename "$busybox")
put "$bb"
while read -r applet; do
  [ -n "$applet" ] && [ ! -e "$root/$applet" ] && [ ! -L "$root/$applet" ] || continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -s "$bb" "$root/$applet"
done < <("$busybox" --list-full)

# What init runs, its environment and its arguments, as shell words.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
  for kv in ${envs[@]+"${envs[@]}"}; do
    printf 'export %s=%s\n' "${kv%%=*}" "$(quote "${kv#*=}")"
  done
  printf 'export PROGRAM=%s NODES=%s\n' "$(quote "$program")" "$nodes"
  if [ -n "$script" ]; then
    cp "$script" "$root/vm/guest.sh"
    printf 'set -- sh /vm/guest.sh'
  else
    printf 'set -- "$PROGRAM"'
  fi
  for a in "$@"; do printf ' %s' "$(quote "$a")"; done
  printf '\n'
} >"$root/vm/run.sh"

guest_limit=$((limit - 20))
cat >"$root/init" <<EOF
#!/bin/sh
# The guest's init. What it and the program say reaches the host through the
# kernel log (/dev/kmsg), which the kernel writes to the serial console
# itself, by polling, before it powers off. A tty writer of the port can
# lose its last bytes: under QEMU TCG the port's transmit interrupt is now
# and then missed and what follows stays in the kernel's buffer.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs dev /dev
exec </dev/null >/dev/null 2>&1 4>/dev/kmsg
mount -t proc proc /proc
mount -t sysfs sys /sys
# /tmp is the initramfs's own (a RAM file system already): a tmpfs mounted
# over it would hide the files put there at their host paths (a clone under
# /tmp)
mkdir -p /tmp && chmod 1777 /tmp
# send TAG: every line of stdin to the log, as TAG LINE (at most 900 bytes)
send() {
  fold -w 900 | while IFS= read -r line || [ -n "\$line" ]; do echo "<3>\$1 \$line" >&4; done
}
echo "booted in \$(cut -d' ' -f1 /proc/uptime) s: kernel \$(uname -r), \$(grep -c ^processor /proc/cpuinfo) CPUs" | send bm-vm:
numactl -H 2>&1 | send bm-vm:
. /vm/run.sh
cd /tmp
echo "running \$*" | send bm-vm:
"\$@" >/vm/output 2>&1 &
pid=\$!
( sleep $guest_limit; : >/vm/timed-out
  echo "bm-vm: the time limit ($limit s) is near: stopping it" >>/vm/output
  kill -TERM \$pid; sleep 3; kill -KILL \$pid ) &
watchdog=\$!
wait \$pid
rc=\$?
kill \$watchdog
[ ! -e /vm/timed-out ] || rc=124
send bm-out: </vm/output
echo "<3>bm-vm-exit \$rc" >&4
echo "exit \$rc at \$(cut -d' ' -f1 /proc/uptime) s" | send bm-vm:
poweroff -f
EOF
chmod 755 "$root/init"
[ "$(id -u)" -ne 0 ] || mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$work/initramfs.cpio"

# ------------------------------------------------------------ the VM
cpus=$((nodes * cpn))
accel=${BM_NUMA_VM_ACCEL:-tcg}
[ "$accel" != tcg ] || accel=tcg,thread=${BM_NUMA_VM_TCG_THREAD:-single}
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
      -machine q35 -accel "$accel"
      -cpu max -smp "$cpus,sockets=$cpus,cores=1,threads=1" -m "${total_mem}M")
layout=''
for ((n = 0; n < nodes; n++)); do
  qemu+=(-object "memory-backend-ram,id=mem$n,size=${node_mem[n]}M" -numa "node,nodeid=$n,memdev=mem$n")
  list=''
  for ((k = 0; k < cpn; k++)); do
    if [ $rr -eq 1 ]; then c=$((k * nodes + n)); else c=$((n * cpn + k)); fi
    qemu+=(-numa "cpu,node-id=$n,socket-id=$c")
    list+=${list:+,}$c
  done
  layout+=" node$n=${node_mem[n]}M/cpu$list"
done
for ((a = 0; a < nodes; a++)); do
  for ((b = 0; b < nodes; b++)); do
    [ $a -eq $b ] || qemu+=(-numa "dist,src=$a,dst=$b,val=${distance[$a,$b]}")
  done
done
# numa_balancing=disable: the kernel must not move pages behind the tests' backs
qemu+=(-kernel "$boot" -initrd "$work/initramfs.cpio"
       -append "console=ttyS0 quiet printk.devkmsg=on panic=-1 numa_balancing=disable mitigations=off${kargs:+ $kargs}"
       -chardev "file,id=console,path=$work/console" -serial chardev:console)

if [ -z "$log" ]; then
  log=$cache/logs/vm-$(date +%Y%m%d-%H%M%S)-$$.log
  { ls -t "$cache"/logs/vm-*.log 2>/dev/null || true; } | tail -n +30 | xargs -r rm -f    # keep the last 30
fi
mkdir -p "$(dirname "$log")"
: >"$work/console"

# serial console output: CR LF line ends, now and then an escape sequence
clean() { sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][0-9A-Za-z]//g' -e 's/\x1bc//g' "$1"; }

# A boot that hangs (seen once in some fifty under TCG: a vCPU stuck in a
# kworker from the first seconds on) is given up after boot_limit seconds
# and the VM started once more; a boot takes 2-4 s.
boot_limit=${BM_NUMA_VM_BOOT_LIMIT:-60}
[ "$boot_limit" -le "$limit" ] || boot_limit=$limit
for attempt in 1 2; do
  : >"$work/console"
  rm -f "$work/qpid" "$work/qrc"
  if [ $verbose -eq 1 ]; then
    tail -f -n +1 "$work/console" > >(sed -u 's/\r//g' >&2) &
    tailpid=$!      # tail's: when it ends, sed sees the end of its input
  fi
  start=$(date +%s%N)
  ( timeout -k 5 "$limit" "${qemu[@]}" </dev/null >"$work/qemu.out" 2>&1 &
    echo $! >"$work/qpid"
    wait $!
    { echo $? >"$work/qrc"; } 2>/dev/null ) &     # (gone if vm.sh was stopped)
  runner=$!
  hung=0
  until [ -s "$work/qrc" ]; do
    sleep 0.5
    if [ $hung -eq 0 ] && [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge "$boot_limit" ] &&
       ! grep -aq 'bm-vm: booted in' "$work/console"; then
      hung=1
      [ ! -s "$work/qpid" ] || kill "$(cat "$work/qpid")" 2>/dev/null || true
    fi
  done
  wait "$runner"
  qrc=$(cat "$work/qrc")
  [ $verbose -eq 0 ] || { sleep 0.5; kill "$tailpid"; }
  [ $hung -eq 1 ] || break
  { echo "--- attempt $attempt: no boot in $boot_limit s"; clean "$work/console"; } >>"$work/hung"
  [ $attempt -eq 1 ] || break
  echo "$me: the VM did not boot in $boot_limit s: starting it once more" >&2
done
secs=$(( ($(date +%s%N) - start) / 1000000 ))
secs=$((secs / 1000)).$(printf %03d $((secs % 1000)) | cut -c1)

clean "$work/console" >"$work/console.txt"
{
  echo "vm.sh: $nodes nodes,$layout; distances ${dist}; kernel $(basename "$kernel")"
  printf '%q ' "${qemu[@]}"; echo
  echo "--- console (bm-out: the program's output, bm-vm: the guest's init)"
  cat "$work/console.txt"
  echo "--- qemu (exit $qrc)"
  cat "$work/qemu.out"
  [ ! -e "$work/hung" ] || cat "$work/hung"
} >"$log"

# kernel log lines on the console: "[    3.141592] TEXT" (or without the time)
untime='s/^\[ *[0-9]*\.[0-9]*\] //'
booted=$(sed -n -e "$untime" -e 's/^bm-vm: booted in \([0-9.]*\) s.*/\1 s/p' "$work/console.txt")
rc=$(sed -n -e "$untime" -e 's/^bm-vm-exit \([0-9][0-9]*\)$/\1/p' "$work/console.txt" | tail -n 1)
if [ -n "$rc" ]; then
  if [ "$rc" -eq 124 ]; then
    echo "$me: the program ran out of time (-t $limit) after ${secs} s in all; log: $log" >&2
  else
    echo "$me: $nodes nodes ($layout ), program exit $rc, ${secs} s in all (booted in ${booted:-?}); log: $log" >&2
  fi
else
  if [ $hung -eq 1 ]; then
    rc=125
    echo "$me: the VM did not boot within $boot_limit s, twice; log: $log" >&2
  elif [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
    rc=124
    echo "$me: the VM ran out of time (-t $limit); log: $log" >&2
  else
    rc=125
    echo "$me: the VM gave no result (qemu exit $qrc, ${secs} s, booted: ${booted:-no}); log: $log" >&2
  fi
  { cat "$work/console.txt" "$work/qemu.out"; } | tail -n 25 | sed 's/^/  console| /' >&2
fi
sed -n -e "$untime" -e 's/^bm-out: \{0,1\}//p' "$work/console.txt"
exit "$rc"
