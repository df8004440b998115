#!/usr/bin/env bash
# One agent with many checks against nginx on loopback: 10,000 HTTP checks every 60 s, then
# 1,000 every second. Prints config load and startup time, CPU share, RSS, scheduler lag
# p50/p99, and how long /metrics and the status page take to render. Options go to the
# benchmark:
#   bash bench/scale.sh [--checks 10000] [--interval 60] [--seconds 60] [--fast-checks 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
install_missing
# 10,000 checks may hold a few thousand sockets open at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec cargo bench --locked --bench nightjar -- scale "$@"
