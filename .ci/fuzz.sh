#!/usr/bin/env bash
# Runs every fuzz target in proxy/fuzz briefly (FUZZ_SECONDS each, 20 by default) from its
# committed seeds, so that a parser regression the fuzzers find in seconds fails ./test.sh.
# Prints one line per target; on a crash, the tail of libFuzzer's output and how to reproduce it.
#
# Why cargo-fuzz and not our own RUSTFLAGS: the sanitizer-coverage flags that make libFuzzer
# effective (which LLVM passes and options, per LLVM version) are what cargo-fuzz maintains, and a
# developer reproduces a crash with the same `cargo fuzz run` this script uses. It is installed
# from crates.io at a pinned version (with its own Cargo.lock) into a versioned directory under
# CARGO_HOME, so one machine builds it once, and a cargo-fuzz the developer installed is left alone.
# Nightly features (-Zsanitizer) come from the stable toolchain through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz=proxy/fuzz
seconds=${FUZZ_SECONDS:-20}

cargo_fuzz_version=0.13.2
tools="${CARGO_HOME:-$HOME/.cargo}/tools/cargo-fuzz-$cargo_fuzz_version"
if ! "$tools/bin/cargo-fuzz" --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version" >&2
  cargo install --quiet --locked --root "$tools" cargo-fuzz --version "=$cargo_fuzz_version"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1

# The fuzz crate has its own committed Cargo.lock; refuse to build with versions it does not pin.
cargo fetch --locked --quiet --manifest-path "$fuzz/Cargo.toml"
# One build of every target (release, debug assertions, address sanitizer: cargo-fuzz's defaults).
(cd "$fuzz" && cargo fuzz build)

# Seed directory (read only: libFuzzer writes new inputs only to the first corpus directory, a
# fresh one under target/ for each run) and dictionary per target.
seeds_for() { case "$1" in spool_reader) echo spool_seeds ;; *) echo seeds ;; esac; }
dict_for() { case "$1" in spool_reader) ;; *) echo "-dict=$root/$fuzz/sse.dict" ;; esac; }

failed=()
for src in "$fuzz"/fuzz_targets/*.rs; do
  target=$(basename "$src" .rs)
  corpus="$root/target/fuzz/corpus/$target"
  log="$root/target/fuzz/$target.log"
  rm -rf "$corpus" && mkdir -p "$corpus"
  # shellcheck disable=SC2046 # dict_for prints zero or one word
  if (cd "$fuzz" && cargo fuzz run "$target" "$corpus" "$root/$fuzz/$(seeds_for "$target")" -- \
    -max_total_time="$seconds" -print_final_stats=1 $(dict_for "$target")) >"$log" 2>&1; then
    # libFuzzer ends with "Done N runs in S second(s)"; its stats give the corpus it reached.
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz $target: ${done_line#Done }, ${cov:-cov: ?}, $(ls "$corpus" | wc -l) inputs in its corpus"
  else
    # The panic message, then cargo-fuzz's own lines on the saved input and how to reproduce it.
    echo "fuzz $target: FAILED (full output in $log)"
    grep -m1 -A3 'panicked at' "$log" || true
    grep -E -A2 '^(Reproduce|Minimize) |SUMMARY: ' "$log" || tail -n 40 "$log"
    failed+=("$target")
  fi
done

# The committed seeds must come out of the run untouched (new inputs go to target/fuzz/corpus).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
  [ -n "$(git status --porcelain -- "$fuzz/seeds" "$fuzz/spool_seeds")" ]; then
  echo "fuzz: the run modified the committed seed directories:" >&2
  git status --short -- "$fuzz/seeds" "$fuzz/spool_seeds" >&2
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
