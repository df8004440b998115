#!/usr/bin/env bash
# One agent with many checks against nginx on loopback: 10,000 HTTP checks every 60 s, then
# 1,000 every second; then one template with 50,000 targets from a file_sd file every 60 s,
# and a discovery change of 5,000 of them. Prints config load and startup time, CPU share
# (and the floor reference's at the fleet's rate), RSS, scheduler lag p50/p99, how long
# /metrics and the status page take to render, and how long the discovery change takes to
# apply. Options go to the benchmark (0 skips a run):
#   bash bench/scale.sh [--checks 10000] [--interval 60] [--seconds 60] [--fast-checks 1000]
#                        [--discovered 50000] [--discovered-change 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
install_missing
# 10,000 checks may hold a few thousand sockets open at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec cargo bench --locked --bench nightjar -- scale "$@"
