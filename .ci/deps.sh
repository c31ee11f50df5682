#!/usr/bin/env bash
# Installs the system packages sluice needs, when missing, on Debian/Ubuntu. Nothing is installed
# by hand: the quick start and the tests call this first.
#   .ci/deps.sh          build deps (cmake and a C/C++ toolchain for Pingora's zlib-ng and libFuzzer)
#   .ci/deps.sh --test   also what the tests need (python3 with venv for the official SDKs, a
#                        PostgreSQL server for the ledger's Postgres suite, and Prometheus with
#                        promtool for the dashboard and alert-rule test, and redis-server for
#                        the shared limits' tests)
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
# C for zlib-ng, C++ for libFuzzer (proxy/fuzz, run by .ci/fuzz.sh).
{ command -v cc && command -v c++; } >/dev/null 2>&1 || need+=(build-essential)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ "${1:-}" = "--test" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need+=(python3 python3-venv)
  fi
  # The ledger tests start a throwaway cluster with the server binaries (control/scripts/postgres.sh).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # load-tests/tests/observability.rs checks deploy/prometheus/alerts.yml with promtool and runs a
  # throwaway Prometheus (/usr/bin/prometheus) that scrapes a real sluice.
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  # proxy/tests/shared_limits.rs runs throwaway redis-server processes (with redis-cli).
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
fi
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing system packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
