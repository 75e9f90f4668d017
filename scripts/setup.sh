#!/usr/bin/env bash
# The README's first command: install what is missing, build, install
# buddymalloc (library, header, pkg-config file and the `buddymalloc`
# command, under /usr/local), then run the main job: a real program under
# the allocator, with its statistics at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh

wrapper=build/preload/buddymalloc
sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi
if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
  echo "=== installing (meson install -C build) ==="
  $sudo meson install -C build --quiet
  $sudo ldconfig
  wrapper=$(command -v buddymalloc || echo "$wrapper")
else
  echo "setup: not root and no sudo: not installing; using $wrapper" >&2
fi

echo
echo "=== main job: python3 building a dict of 1,000,000 strings under buddymalloc ==="
echo "+ PYTHONMALLOC=malloc buddymalloc run --stats -- python3 -c ..."
# PYTHONMALLOC=malloc: Python's small-object allocator would otherwise take
# its memory straight from mmap and hand only large blocks to malloc.
PYTHONMALLOC=malloc "$wrapper" run --stats -- python3 -c '
d = {"key-%d" % i: str(i) * 3 for i in range(1_000_000)}
s = sum(len(v) for v in d.values())
print("dict of", len(d), "strings,", s, "characters")
'
