"""The micro-benchmarks stage of the harness: runs the criterion benches of `sluice-bench` with
short warm-up and measurement times (bounded: the harness must finish in 15 minutes) and the
counting-allocator bench, and returns their numbers for BENCHMARKS.md.

Criterion writes one `estimates.json` (mean, in ns) and one `benchmark.json` (id, throughput) per
benchmark under target/criterion/; the old directory is removed first so a stale result from an
earlier run can never be reported as this run's.
"""

import glob
import json
import os
import re
import shutil
import subprocess

CRITERION_BENCHES = ["sse", "keys", "admission", "body", "record", "emit"]
ALLOC_TOTAL = re.compile(r"allocations on non-final chunks: (\d+) in all, (\d+) in the second halves")


def run(root, quick, log):
    """Runs the benches; returns dict(benches=[...], alloc=...) or dict(error=...)."""
    crit_dir = os.path.join(root, "target", "criterion")
    shutil.rmtree(crit_dir, ignore_errors=True)
    times = ["--warm-up-time", "0.2", "--measurement-time", "0.5"] if quick else ["--warm-up-time", "1", "--measurement-time", "1.5"]
    cmd = ["cargo", "bench", "-q", "-p", "sluice-bench"]
    for b in CRITERION_BENCHES:
        cmd += ["--bench", b]
    cmd += ["--", "--noplot", *times]
    log("micro-benchmarks: " + " ".join(cmd))
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        return dict(error=f"cargo bench failed ({out.returncode}): {out.stderr.strip()[-400:]}", command=" ".join(cmd))
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
    alloc_cmd = ["cargo", "bench", "-q", "-p", "sluice-bench", "--bench", "alloc_per_chunk"]
    log("micro-benchmarks: " + " ".join(alloc_cmd))
    out = subprocess.run(alloc_cmd, cwd=root, capture_output=True, text=True)
    alloc = dict(command=" ".join(alloc_cmd))
    m = ALLOC_TOTAL.search(out.stdout)
    if out.returncode != 0 or not m:
        alloc["error"] = f"alloc_per_chunk failed ({out.returncode})"
    else:
        alloc.update(total=int(m.group(1)), steady=int(m.group(2)), table=out.stdout.strip())
    return dict(benches=benches, alloc=alloc, command=" ".join(cmd))


def gb_per_s(b):
    """A benchmark's throughput in GB/s (10^9 bytes, as the issue's target is written), or None."""
    return b["bytes"] / b["mean_ns"] if b.get("bytes") and b["mean_ns"] > 0 else None


def scanner_min_gbps(micro):
    """The slowest SSE scanner case in GB/s."""
    rates = [gb_per_s(b) for b in micro.get("benches", []) if (b["id"] or "").startswith("sse/scanner/")]
    rates = [r for r in rates if r is not None]
    return min(rates) if rates else None
