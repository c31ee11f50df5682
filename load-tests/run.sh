#!/usr/bin/env bash
# The load-test suite on its own. `./test.sh` runs it at CI size as part of `cargo test`;
# this script runs it alone, and larger:
#   load-tests/run.sh            every scenario at CI size, reports printed
#   load-tests/run.sh --full     every scenario at its `full` size (longer, more clients)
#   SLUICE_SCENARIO=NAME load-tests/run.sh [--full]   one scenario
# Everything runs on loopback against this workspace's release build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
.ci/deps.sh --test
if [ "${1:-}" = "--full" ]; then
  export SLUICE_LOAD_SCALE=full
fi
cargo build --release --workspace --bins
exec cargo test --release -p sluice-load-tests --test scenarios -- --nocapture
