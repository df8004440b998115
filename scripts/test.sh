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
# The servers of the tcp conversations (IMAP and POP3 with STARTTLS, PostgreSQL's SSLRequest,
# Redis, FTP AUTH TLS), iptables for the icmp and udp tests' loss and black holes inside
# network namespaces, iproute2 for those namespaces, and venv for the PyPI servers below.
have dovecot || missing+=(dovecot-imapd dovecot-pop3d)
[ -e /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
have redis-server || missing+=(redis-server)
have vsftpd || missing+=(vsftpd)
have iptables || missing+=(iptables)
have ip || missing+=(iproute2)
# sysctl opens unprivileged ICMP sockets in the icmp tests' namespaces, and setpriv runs the
# agent there as nobody.
have sysctl || missing+=(procps)
have setpriv || missing+=(util-linux)
# blackbox_exporter itself, whose DNS section counts the dns parity test compares with ours.
have prometheus-blackbox-exporter || missing+=(prometheus-blackbox-exporter)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# tinyproxy: the http checks' proxy tests (basic authentication, CONNECT).
have tinyproxy || missing+=(tinyproxy)
# The real blackbox_exporter, which the /probe parity test and the bench compare against.
have prometheus-blackbox-exporter || missing+=(prometheus-blackbox-exporter)

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # Packages may try to start their services; the tests start their own on loopback.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Servers Debian does not package (a gRPC server with the standard health service) or
# packages too old, from PyPI into a virtualenv kept outside the checkout; re-created only
# when scripts/test-requirements.txt changes.
venv="${NIGHTJAR_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nightjar/test-venv}"
want="$(sha256sum scripts/test-requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "scripts/test.sh: installing scripts/test-requirements.txt into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
  echo "$want" >"$venv/.requirements"
fi
export NIGHTJAR_TEST_VENV="$venv"

exec cargo test --locked "$@"
