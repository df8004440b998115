#!/usr/bin/env bash
# Time to detect: a target goes down, comes back, then fails one request in ten, against four
# detection settings at once (60 s and 15 s, each with and without retry_interval and
# confirm_failures = 3), three agents per setting in regions eu, us and ap, scraped by real
# Prometheus servers every 15 s with the rules of `nightjar rules` (one per quorum_for).
# Prints Markdown tables: outage start to the failing state and to the page, recovery to the
# passing state, and the state changes and pages of the flapping phase. About 15 minutes with
# the defaults (the outage waits for the 5-minute quorum_for to page). Options go to the
# benchmark:
#   bash bench/detect.sh [--minutes 4] [--checks 20] [--quorum-for 5m,1m,1s] [--fail-percent 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
need prometheus prometheus
install_missing
exec cargo bench --locked --bench nightjar -- detect "$@"
