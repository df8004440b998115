#!/usr/bin/env bash
# CPU per probe: nightjar against Prometheus blackbox_exporter and a floor reference (the same
# network work done by a minimal Rust client), per check type, at one fixed probe rate, against
# nginx, BIND and the tests' gRPC health server on loopback. Prints a Markdown table. Options
# go to the benchmark:
#   bash bench/compare.sh [--rate 200] [--seconds 20] [--warmup 5] [--kinds http,https,dns,tcp,grpc,icmp,probe]
# `probe` is the /probe row: nightjar and blackbox_exporter serving the same blackbox-style
# scrapes (`/probe?module=http&target=...`, one blackbox.yml) at the same rate.
# Installs what it needs from Debian's packages when it is missing; stops every process it
# started (they are children of the benchmark, killed when it ends).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/install.sh
need nginx nginx
need named bind9
need prometheus-blackbox-exporter prometheus-blackbox-exporter
need python3 python3
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
install_missing
# The gRPC server (grpcio with the health service) lives in the tests' virtualenv, made as
# scripts/test.sh makes it.
venv="${NIGHTJAR_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nightjar/test-venv}"
want="$(sha256sum scripts/test-requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "bench: installing scripts/test-requirements.txt into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
  echo "$want" >"$venv/.requirements"
fi
export NIGHTJAR_TEST_VENV="$venv"
exec cargo bench --locked --bench nightjar -- compare "$@"
