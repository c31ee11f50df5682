#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and property tests, integration tests
# against a real sluice process and the mock provider over TCP, the official SDKs, the ledger
# against SQLite and Postgres, the vendored Pingora's own tests of our patches, and a short run of
# every fuzz target.
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps.sh --test

# The official SDKs, in a venv the SDK tests use (SLUICE_SDK_PYTHON).
venv=target/sdk-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r proxy/tests/sdk/requirements.txt
export SLUICE_SDK_PYTHON="$PWD/$venv/bin/python"

# The ledger suite runs against SQLite and a real Postgres (deps.sh installs it; the tests start a
# throwaway cluster). Here a missing Postgres is a failure, not a skip.
export SLUICE_TEST_REQUIRE_POSTGRES=1
# Likewise Prometheus (deps.sh installs it) for the dashboard and alert rules test.
export SLUICE_TEST_REQUIRE_PROMETHEUS=1
# The shared-limits tests run a throwaway redis-server; CI must not skip them.
export SLUICE_TEST_REQUIRE_REDIS=1

cargo fmt --all -- --check
# One release build serves clippy, the tests, and later the load tests and benchmarks.
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
# The benchmark harness's report generator (synthetic runs; no timings asserted).
python3 -m unittest discover -s bench/harness -p 'test_*.py'

# The vendored pingora-core's HTTP/1 suite with the tests of our patches (`sluice_*`), from a copy
# outside the workspace with pinned versions and its own target directory (see the script).
.ci/vendor-tests.sh
# Every fuzz target for FUZZ_SECONDS (20 by default) from its committed seeds: a parser regression
# the fuzzers find in seconds fails here. Installs a pinned cargo-fuzz when missing.
.ci/fuzz.sh
