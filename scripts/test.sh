#!/usr/bin/env bash
# Runs nightjar's whole test suite. The tests use real servers on loopback, so this first
# installs what they need from Debian's packages when it is missing: nginx with its mail module
# (SMTP STARTTLS), BIND 9 with dnssec-keygen/dnssec-signzone, Prometheus with promtool,
# Python 3 (the login application the flow tests sign in to), the CA bundle, man (renders
# the generated man page), libfaketime (a wall-clock jump under the agent), and Chromium
# with ChromeDriver (the status page's browser tests). It is idempotent: a second run
# installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have nginx || missing+=(nginx)
have prometheus || missing+=(prometheus)
have promtool || missing+=(prometheus)
[ -e /usr/lib/nginx/modules/ngx_mail_module.so ] || missing+=(libnginx-mod-mail)
have named || missing+=(bind9)
have dnssec-signzone || missing+=(bind9-utils)
have python3 || missing+=(python3)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
have man || missing+=(man-db)
# libfaketime: the clock-jump test moves the agent's wall clock and nothing else.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
# A font, so screenshots show text wherever the tests run.
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # Packages may try to start their services; the tests start their own on loopback.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

exec cargo test --locked "$@"
