#!/usr/bin/env bash
# The benchmark suite in one command: installs what is missing (jemalloc,
# mimalloc, tcmalloc, gnuplot, the real programs; scripts/deps.sh), builds,
# then runs bench/suite.py with the arguments given:
#
#   scripts/bench.sh --quick        a few minutes, results in build/bench-results
#   scripts/bench.sh                the full run (5 rounds, about 20 minutes on 2 cores)
#   scripts/bench.sh --record       the full run, written into docs/bench
#   scripts/bench.sh --only larson,redis --rounds 3
#
# A progress line per run goes to stderr; RESULTS.md, results.json and the
# plots to the output directory (bench/suite.py --help has every flag).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh >/dev/null
exec python3 bench/suite.py "$@"
