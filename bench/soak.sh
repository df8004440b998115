#!/usr/bin/env bash
# One agent with 1,000 HTTP(S) checks against nginx paths that appear and disappear, and a
# remote-write endpoint that is down throughout, for 30 minutes by default. Prints a row a minute (RSS, open descriptors, threads, runtime tasks,
# runs, counter agreement) and the trend of each after the warm-up; exits 1 if anything
# grows or a check's counters disagree. Options go to the benchmark:
#   bash bench/soak.sh [--checks 1000] [--interval 10] [--minutes 30] [--every 60] [--warmup SECONDS]
#                      [--remote-write no]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
install_missing
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec cargo bench --locked --bench nightjar -- soak "$@"
