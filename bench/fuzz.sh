#!/usr/bin/env bash
# Fuzzes nightjar's parsers with cargo-fuzz (libFuzzer with AddressSanitizer): config loading
# and validation, DNS answers, RDAP bodies, HTML form extraction, template interpolation,
# the rule generator and ICMP replies. Each target runs for a set time from the seeds in fuzz/seeds/ and the
# minimised corpora of earlier runs (fuzz/corpora/*.tar.xz, unpacked into fuzz/corpus/); a
# crash is reported with the input that caused it under fuzz/artifacts/. To refresh the
# committed corpora after a long run: cargo fuzz cmin TARGET, then tar the directory again.
#   bash bench/fuzz.sh [--seconds 600] [--jobs 2] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
jobs=2
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(config dns_answer rdap form_field interpolation rules icmp_reply)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz passes flags only nightly accepts (-Zsanitizer=address); RUSTC_BOOTSTRAP lets
# the stable toolchain take them, so no second toolchain is needed.
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -O

mkdir -p logs
run() {
  local target="$1"
  mkdir -p "corpus/$target"
  # Start from the committed, minimised corpus of earlier runs.
  if [ -z "$(ls -A "corpus/$target")" ] && [ -f "corpora/$target.tar.xz" ]; then
    tar -C corpus -xJf "corpora/$target.tar.xz"
  fi
  # -rss_limit_mb: a leak or a huge allocation is a finding too.
  if cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"logs/$target.log" 2>&1; then
    echo "ok" >"logs/$target.result"
  else
    echo "FAILED" >"logs/$target.result"
  fi
}

echo "fuzzing ${targets[*]} for ${seconds} s each, ${jobs} at a time" >&2
running=0
for target in "${targets[@]}"; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

printf '| target | result | runs | runs/s | corpus files | peak RSS MiB |\n|---|---|---:|---:|---:|---:|\n'
status=0
for target in "${targets[@]}"; do
  result=$(cat "logs/$target.result")
  log="logs/$target.log"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  files=$(find "corpus/$target" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$target" "$result" "${runs:-?}" "${rate:-?}" "$files" "${rss:-?}"
  if [ "$result" != ok ]; then
    status=1
    echo "--- $target: the end of its log (fuzz/logs/$target.log):" >&2
    tail -40 "$log" >&2
  fi
done
exit "$status"
