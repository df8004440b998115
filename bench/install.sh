# Sourced by the benchmark scripts: `need PROGRAM PACKAGE` for each program, then
# `install_missing` installs the missing packages with apt (idempotent).
missing=()
need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || missing+=("$2")
}
install_missing() {
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "bench: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  # Debian starts the packaged exporter as a service; the benchmark runs its own.
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now prometheus-blackbox-exporter >/dev/null 2>&1 || true
  fi
}
