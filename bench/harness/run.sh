#!/usr/bin/env bash
# The side-by-side benchmark: one command that builds the binaries, installs nginx (Debian) and
# LiteLLM (PyPI, into target/bench-venv) when missing, runs every scenario interleaved across
# direct / nginx / LiteLLM / sluice-passthrough / sluice / sluice with per-request metrics off,
# then sluice in front of three mocks through one pooled model against one endpoint (--skip-pool
# leaves it out), then sluice with its limits in Redis against in-process limits (--skip-limits
# leaves it out; --limits-only runs only that, into the run directory), and regenerates
# BENCHMARKS.md.
#   bench/harness/run.sh            full run (under 15 minutes including installs)
#   bench/harness/run.sh --quick    short durations, to validate the harness (~3 minutes)
# Extra flags go to bench/harness/harness.py (e.g. --targets direct,nginx --skip-memory).
# Everything binds to 127.0.0.1; raw reports land in target/bench-results/<run>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# Build tools first (cmake and a C toolchain for Pingora).
.ci/deps.sh

# LiteLLM's proxy in its own venv, installed in the background while the build below runs (it is
# mostly download time); a failed install is reported and the run goes on without LiteLLM.
venv="$target_dir/bench-venv"
pip_pid=""
if [ ! -x "$venv/bin/litellm" ]; then
  echo "harness: installing litellm[proxy] into $venv (pip, in the background)" >&2
  (python3 -m venv "$venv" \
    && "$venv/bin/pip" install -q --disable-pip-version-check 'litellm[proxy]' >&2) &
  pip_pid=$!
fi

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "harness: installing ${need[*]} (apt)" >&2
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "harness: apt-get install ${need[*]} failed; the harness goes on without it" >&2
fi
# nginx's own service is not wanted: the harness runs its own instance with its own config.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi

# The release binaries and the micro-benchmarks, in one cargo invocation (see micro.py).
python3 "$root/bench/harness/micro.py" build "$root"

if [ -n "$pip_pid" ]; then
  if wait "$pip_pid"; then
    echo "harness: litellm installed" >&2
  else
    echo "harness: litellm[proxy] did not install; the harness goes on without LiteLLM" >&2
  fi
fi

exec python3 "$root/bench/harness/harness.py" --root "$root" --bin "$target_dir/release" \
  --venv "$venv" "$@"
