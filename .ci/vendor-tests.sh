#!/usr/bin/env bash
# Runs the vendored pingora-core's own HTTP/1 tests, which include the tests of our patches
# (`sluice_*` in body.rs and client.rs; see proxy/vendor/PATCHES.md). pingora-proxy's patch has no
# unit test of its own: the integration tests cover it (every POST stalls without it).
#
# The vendored crates are excluded from the workspace, so the crate is tested from a copy under
# target/vendor-tests/ made its own workspace (an empty `[workspace]` table; dev-dependencies only
# benches and examples use are dropped, see .ci/vendor-copy.py), with its own target
# directory so the workspace's release build is never rebuilt or locked by this one. The test
# profile (not release): nothing is shared with the workspace build either way, and unoptimised
# code builds faster and keeps the debug assertions the upstream tests are written for.
#
# Versions are pinned, never taken from the crates.io index of the day: the copy's Cargo.lock is
# seeded with the workspace's Cargo.lock (the versions sluice ships) plus, for test-only crates,
# the Cargo.lock published with the crate, and the run fails if cargo had to pick any version that
# neither pins (.ci/vendor-copy.py says why `--locked` alone cannot be used on the seed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
crate=pingora-core
copy="$root/target/vendor-tests/$crate"
export CARGO_TARGET_DIR="$root/target/vendor-tests/target"

# A fresh copy each run (cp -a keeps modification times, so an unchanged crate is not rebuilt).
rm -rf "$copy" && mkdir -p "$copy"
cp -a "proxy/vendor/$crate/." "$copy/"
python3 .ci/vendor-copy.py manifest "$copy"
python3 .ci/vendor-copy.py seed Cargo.lock "proxy/vendor/$crate/Cargo.lock" "$copy/Cargo.seed.lock"
cp "$copy/Cargo.seed.lock" "$copy/Cargo.lock"
# Resolve against the seed (pruning what the copy does not use) and download, then check.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo fetch --quiet --manifest-path "$copy/Cargo.toml" --target "$host"
python3 .ci/vendor-copy.py check "$copy/Cargo.seed.lock" "$copy/Cargo.lock"

# sluice builds Pingora with rustls only (see the workspace Cargo.toml). Two filters: the HTTP/1
# suite, and every test of our patches wherever it lives (the connection cap's is in `apps`).
log="$root/target/vendor-tests/$crate.log"
cargo test --locked --manifest-path "$copy/Cargo.toml" --no-default-features --features rustls \
  --lib -- protocols::http::v1 sluice_ 2>&1 | tee "$log"
# Guard against a filter or rename silently dropping our patches' tests.
want=$(grep -rhoE 'fn sluice_[a-z0-9_]+' "$copy/src" | sort -u | wc -l)
ours=$(grep -cE '^test .*::sluice_[a-z0-9_]+ \.\.\. ok$' "$log" || true)
if [ "$want" -eq 0 ] || [ "$ours" -ne "$want" ]; then
  echo "vendor tests: $want sluice patch tests in $crate, $ours of them passed" >&2
  exit 1
fi
echo "vendor tests: $crate HTTP/1 suite passed, including $ours sluice patch tests"
