"""The harness's build step and its micro-benchmarks stage.

`build()` compiles, in one cargo invocation, the release binaries the harness runs and the
micro-benchmark executables. One invocation matters: the benches need `sluice-bench`'s
dev-dependencies, and a second invocation that selects them (such as `cargo bench`) resolves
features differently and recompiles much of the dependency tree, which measured 4-5 minutes of
a 17.5-minute fresh-clone run. Calling `build()` again is a no-op that returns the executables.

`run()` executes the criterion benches of `sluice-bench` with short warm-up and measurement times
(bounded: the harness must finish in 15 minutes) and the counting-allocator bench, and returns
their numbers for BENCHMARKS.md. Criterion writes one `estimates.json` (mean, in ns) and one
`benchmark.json` (id, throughput) per benchmark under target/criterion/; the old directory is
removed first so a stale result from an earlier run can never be reported as this run's.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

BINS = ["sluice-mock", "sluice-load", "sluice-passthrough", "sluice-proxy"]
CRITERION_BENCHES = ["sse", "keys", "admission", "body", "record", "emit"]
ALLOC_BENCH = "alloc_per_chunk"
ALLOC_TOTAL = re.compile(r"allocations on non-final chunks: (\d+) in all, (\d+) in the second halves")


def build_command():
    cmd = ["cargo", "build", "--release", "-p", "sluice-bench", "-p", "sluice-proxy"]
    for b in BINS:
        cmd += ["--bin", b]
    for b in CRITERION_BENCHES + [ALLOC_BENCH]:
        cmd += ["--bench", b]
    return cmd


def build(root):
    """Builds the binaries and the benches; returns {bench name: executable}. Compiler messages
    go to stderr; raises CalledProcessError if the build fails."""
    cmd = build_command() + ["--message-format=json-render-diagnostics"]
    out = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True, check=True)
    exes = {}
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        target = msg.get("target") or {}
        if msg.get("reason") == "compiler-artifact" and "bench" in target.get("kind", []) and msg.get("executable"):
            exes[target["name"]] = msg["executable"]
    return exes


def run(root, quick, log):
    """Runs the benches; returns dict(benches=[...], alloc=...) or dict(error=...)."""
    crit_dir = os.path.join(root, "target", "criterion")
    shutil.rmtree(crit_dir, ignore_errors=True)
    try:
        exes = build(root)
    except subprocess.CalledProcessError as e:
        return dict(error=f"building the benches failed ({e.returncode})", command=" ".join(build_command()))
    missing = [b for b in CRITERION_BENCHES + [ALLOC_BENCH] if b not in exes]
    if missing:
        return dict(error=f"bench executables not built: {', '.join(missing)}", command=" ".join(build_command()))
    times = ["--warm-up-time", "0.2", "--measurement-time", "0.5"] if quick else ["--warm-up-time", "0.5", "--measurement-time", "1"]
    # As `cargo bench` would run them: from the package's directory, with `--bench`; results go to
    # crit_dir whatever the target directory is.
    env = dict(os.environ, CRITERION_HOME=crit_dir)
    cwd = os.path.join(root, "bench")
    command = "cargo bench -p sluice-bench " + " ".join(f"--bench {b}" for b in CRITERION_BENCHES) + " -- --noplot " + " ".join(times)
    log("micro-benchmarks: " + command)
    for b in CRITERION_BENCHES:
        out = subprocess.run([exes[b], "--bench", "--noplot", *times], cwd=cwd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            return dict(error=f"bench {b} failed ({out.returncode}): {out.stderr.strip()[-400:]}", command=command)
    benches = []
    for path in sorted(glob.glob(os.path.join(crit_dir, "**", "new", "benchmark.json"), recursive=True)):
        with open(path) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
            est = json.load(f)
        tp = meta.get("throughput") or {}
        benches.append(dict(
            group=meta.get("group_id"), id=meta.get("full_id"),
            mean_ns=est["mean"]["point_estimate"],
            bytes=tp.get("Bytes") or tp.get("BytesDecimal"),
        ))
    alloc_cmd = f"cargo bench -p sluice-bench --bench {ALLOC_BENCH}"
    log("micro-benchmarks: " + alloc_cmd)
    out = subprocess.run([exes[ALLOC_BENCH], "--bench"], cwd=cwd, env=env, capture_output=True, text=True)
    alloc = dict(command=alloc_cmd)
    m = ALLOC_TOTAL.search(out.stdout)
    if out.returncode != 0 or not m:
        alloc["error"] = f"{ALLOC_BENCH} failed ({out.returncode})"
    else:
        alloc.update(total=int(m.group(1)), steady=int(m.group(2)), table=out.stdout.strip())
    return dict(benches=benches, alloc=alloc, command=command)


def gb_per_s(b):
    """A benchmark's throughput in GB/s (10^9 bytes, as the issue's target is written), or None."""
    return b["bytes"] / b["mean_ns"] if b.get("bytes") and b["mean_ns"] > 0 else None


def scanner_min_gbps(micro):
    """The slowest SSE scanner case in GB/s."""
    rates = [gb_per_s(b) for b in micro.get("benches", []) if (b["id"] or "").startswith("sse/scanner/")]
    rates = [r for r in rates if r is not None]
    return min(rates) if rates else None


if __name__ == "__main__":
    # `micro.py build ROOT`: the harness's up-front build (run.sh).
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        sys.exit("usage: micro.py build ROOT")
    try:
        build(sys.argv[2])
    except subprocess.CalledProcessError as e:
        sys.exit(f"harness: the build failed ({e.returncode}); see the compiler messages above")
