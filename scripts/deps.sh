#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages buddymalloc needs to build,
# test and benchmark, skipping those already installed. Runs as root, or
# through sudo when it is there.
set -euo pipefail

packages=(
  gcc libc6-dev pkg-config meson ninja-build python3   # build
  libnuma-dev numactl                                 # NUMA topology
  qemu-system-x86 busybox-static cpio                 # NUMA machines for the tests
                                                      # (tests/numa/vm.sh; it fetches
                                                      # the kernel itself when first run)
  libcriterion-dev                                    # tests
  valgrind                                            # callgrind budgets, memcheck
  clang-14 libclang-rt-14-dev                         # libFuzzer harness (tests/fuzz)
  libjemalloc2                                        # benchmark baseline only
  libmimalloc2.0 libtcmalloc-minimal4 gnuplot-nox     # benchmark: other columns, plots
  g++                                                 # C++ operator tests
  bash sqlite3 git redis-server redis-tools xz-utils zstd  # real-program tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
