#!/usr/bin/env bash
# CPU per probe: nightjar against Prometheus blackbox_exporter and a floor reference (the same
# network work done by a minimal Rust client), per check type, at one fixed probe rate, against
# nginx and BIND on loopback. Prints a Markdown table. Options go to the benchmark:
#   bash bench/compare.sh [--rate 200] [--seconds 20] [--warmup 5] [--kinds http,https,dns,tcp,icmp]
# Installs what it needs from Debian's packages when it is missing; stops every process it
# started (they are children of the benchmark, killed when it ends).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
need named bind9
need prometheus-blackbox-exporter prometheus-blackbox-exporter
install_missing
exec cargo bench --locked --bench nightjar -- compare "$@"
