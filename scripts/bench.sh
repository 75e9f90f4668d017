#!/usr/bin/env bash
# The benchmark suite in one command: installs what is missing (jemalloc,
# mimalloc, tcmalloc, gnuplot, the real programs; scripts/deps.sh), builds,
# then runs bench/suite.py with the arguments given:
#
#   scripts/bench.sh --quick        a few minutes, results in build/bench-results
#   scripts/bench.sh                the full run (5 rounds, about 20 minutes on 2 cores)
#   scripts/bench.sh --record       the full run, written into docs/bench
#   scripts/bench.sh --only larson,redis --rounds 3
#   scripts/bench.sh --scaling      the heap-size scaling benchmark instead
#                                   (bench/scaling.py; 64 MiB .. 4 GiB, 3 rounds,
#                                   about 10 minutes; --record writes into
#                                   docs/bench/scaling; the other flags are its own)
#
# A progress line per run goes to stderr; RESULTS.md, results.json and the
# plots to the output directory (bench/suite.py --help has every flag).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh >/dev/null
if [ "${1:-}" = "--scaling" ]; then
    shift
    exec python3 bench/scaling.py "$@"
fi
exec python3 bench/suite.py "$@"
