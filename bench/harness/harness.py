"""The side-by-side benchmark harness (run through bench/harness/run.sh).

Starts the mock provider and every target in front of it, then runs each scenario on every
target in turn (A B C D E, then E D C B A in the next round, so drift hits all alike) with the
same load, reading the proxy's RSS and CPU time from /proc around each run. Then the
upstream-pool scenario (pool.py: sluice with three mock endpoints against one; `--skip-pool`
leaves it out) and the shared-limits scenario (limits.py: sluice with its limits in Redis
against in-process limits; `--skip-limits` leaves it out, `--limits-only` runs nothing else).
Raw sluice-load reports and results.json go to target/bench-results/<run>/; report.py turns
results.json into BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import limits
import micro
import pool
import procs
import report
import targets as tg

# Two rounds of 4 s runs keep a full run within the 15 minutes from a fresh clone. Measured
# there (2026-11-23, 5 s runs): 14m17s in all, of which the cold build of binaries and benches
# 6m39s (pip overlapping it), the runs 6.5 min (memory, restart, 2 rounds) and the
# micro-benchmarks 69 s. 4 s runs take about 50 s off. (A separate `cargo bench` build had added
# 4-5 min, hence micro.build().)
FULL = dict(rounds=2, duration="4s", mem_streams=9000, litellm_mem_streams=1000)
QUICK = dict(rounds=1, duration="2s", mem_streams=500, litellm_mem_streams=200)
CLOSED_CLIENTS = 32
STREAM_RATE = 50
STREAM_HEADERS = ["x-mock-chunks: 64", "x-mock-gap-ms: 5"]
RATE_FRACTIONS = [0.1, 0.25, 0.5, 1.0]
KEY_ENV = "SLUICE_BENCH_KEY"


def log(msg):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    print(f"[harness {stamp}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args, run_dir):
        self.args = args
        self.run_dir = run_dir
        self.load = os.path.join(args.bin, "sluice-load")
        self.runs = []
        self.seq = 0
        self.key_len = 51

    def env_for(self, target):
        """Every target gets an Authorization header of the same length, so requests are the
        same size; a target that checks a key gets its own, the others a dummy."""
        env = dict(os.environ)
        env[KEY_ENV] = target.key or "sk-bench-" + "x" * (self.key_len - 9)
        return env

    def argv(self, target, extra, json_path):
        return [
            self.load, "--url", target.url, "--model", "mock-gpt", "--key-env", KEY_ENV,
            "--json", json_path, "--quiet", *extra,
        ]

    def run_load(self, target, scenario, extra, rnd=0, param=None):
        """One bounded sluice-load run against target, with the target's CPU time and RSS
        around it. Returns the recorded run (or None if the generator failed)."""
        self.seq += 1
        path = os.path.join(self.run_dir, f"{self.seq:03d}-{target.name}-{scenario}.json")
        argv = self.argv(target, extra, path)
        pid = target.proc.pid if target.proc else None
        cpu0 = procs.cpu_seconds(pid) if pid else None
        load0 = procs.loadavg()[0]
        t0 = time.monotonic()
        done = subprocess.run(argv, env=self.env_for(target), stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        if done.returncode != 0 or not os.path.exists(path):
            log(f"{target.name} {scenario}: sluice-load failed ({done.returncode}): {done.stderr.strip()[:300]}")
            return None
        with open(path) as f:
            rep = json.load(f)
        run = dict(
            target=target.name, scenario=scenario, param=param, round=rnd, json=os.path.basename(path),
            command=" ".join(shlex.quote(a) for a in argv), wall_s=wall, load1_before=load0,
            load1_after=procs.loadavg()[0], report=rep,
        )
        if pid:
            run["cpu_s"] = procs.cpu_seconds(pid) - cpu0
            run["rss_kib_after"] = procs.rss_kib(pid)
            run["idle_wait_s"] = wait_idle(pid)
        self.runs.append(run)
        lat = rep["latency_us"]["total"]
        log(
            f"{target.name:<12} {scenario:<7} {param or '':<6} ok {rep['ok']:>7} err {rep['errors']['total']:>5} "
            f"drop {rep['dropped']:>5} {rep['throughput']['requests_per_s']:>8.0f} req/s "
            f"p50 {lat['p50']:>7} p99 {lat['p99']:>8} us  load {run['load1_after']:.2f}"
        )
        return run

    def warm_up(self, target):
        """A short closed-loop run; the target must answer all of it. LiteLLM gets a few tries
        because its first requests load lazily."""
        for _ in range(5):
            run = self.run_load(target, "warmup", ["--clients", "4", "--requests", "200", "--timeout", "20s"])
            if run and run["report"]["ok"] == 200:
                break
        else:
            return False
        if target.name != "litellm":
            # Then load it the way the runs will, so the first measured run does not pay for a
            # freshly started process growing its heap and its connection pools.
            self.run_load(target, "warmup", ["--clients", str(CLOSED_CLIENTS), "--duration", "3s", "--timeout", "10s"])
        return True

    def memory(self, target, n, mock_port):
        """Memory per open idle stream: open n streams the mock stalls after two events, wait
        until the target holds them upstream, and divide the RSS growth by the number held."""
        pid = target.proc.pid
        base_conns = procs.established_to(mock_port)
        rss0 = procs.rss_kib(pid)
        path = os.path.join(self.run_dir, f"mem-{target.name}.json")
        extra = [
            "--stream", "--clients", str(n), "--requests", str(n), "--duration", "120s",
            "--timeout", "120s", "-H", "x-mock-stall-after: 2", "-H", "x-mock-chunks: 64",
        ]
        argv = self.argv(target, extra, path)
        gen = tg.Proc("load-mem", argv, os.path.join(self.run_dir, f"mem-{target.name}.log"), env=self.env_for(target))
        held, best, stable_since = 0, 0, time.monotonic()
        deadline = time.monotonic() + 90
        # Wait (bounded) until the held count reaches n, or stops growing for 3 s once some
        # streams are held (a slow target may take a while to pass the first ones upstream).
        while time.monotonic() < deadline and gen.alive():
            held = procs.established_to(mock_port) - base_conns
            if held > best:
                best, stable_since = held, time.monotonic()
            if held >= n or (best > 0 and time.monotonic() - stable_since > 3):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # Let lazily grown buffers settle before reading RSS.
        # Never more than were opened: a connection Pingora opened and pooled in the meantime
        # (seen once: 9 434 "held" of 9 000) must not shrink the per-stream figure.
        held = min(procs.established_to(mock_port) - base_conns, n)
        rss1 = procs.rss_kib(pid)
        gen.stop()
        # Wait (bounded) for the target to let go of the upstream connections.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and procs.established_to(mock_port) - base_conns > n // 100:
            time.sleep(0.2)
        per = (rss1 - rss0) * 1024 / held if held > 0 else None
        res = dict(
            target=target.name, streams=n, held=held, rss_kib_before=rss0, rss_kib_held=rss1,
            bytes_per_stream=per, rss_kib_after_release=procs.rss_kib(pid), command=" ".join(shlex.quote(a) for a in argv),
        )
        shown = "–" if per is None else f"{per / 1024:.1f}"
        log(f"{target.name:<12} memory  {n} streams, {held} held, RSS {rss0} -> {rss1} KiB, {shown} KiB/stream")
        return res


def wait_idle(pid, limit_s=30.0):
    """Waits (at most limit_s) until pid's tree uses under 10 % of a core, so work a target
    still has queued after a run (LiteLLM keeps serving requests its client gave up on) does
    not steal CPU from the next target's run. Returns the time waited."""
    t0 = time.monotonic()
    last = procs.cpu_seconds(pid)
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.3)
        now = procs.cpu_seconds(pid)
        if now - last < 0.03:
            break
        last = now
    return time.monotonic() - t0


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
        except OSError:
            return ""

    lscpu = sh("lscpu")
    pick = [l for l in lscpu.splitlines() if l.split(":")[0].strip() in
            ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket", "Socket(s)",
             "Hypervisor vendor", "L2 cache", "L3 cache")]
    return dict(
        lscpu=pick, kernel=platform.release(), mem=sh("grep MemTotal /proc/meminfo"),
        nofile=sh("ulimit -n"), git=sh("git rev-parse --short HEAD") + (" (dirty)" if sh("git status --porcelain") else ""),
        rustc=sh("rustc --version"), python=platform.python_version(),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--quick", action="store_true", help="short runs to validate the harness")
    ap.add_argument("--targets", default="direct,nginx,litellm,passthrough,sluice,sluice-nometrics")
    ap.add_argument("--rates", help="comma-separated open-loop rates (default: fractions of nginx's max)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-micro", action="store_true", help="skip the criterion and allocation-count micro-benchmarks")
    ap.add_argument("--memory-only", action="store_true", help="only the memory-per-stream scenario")
    ap.add_argument("--mem-streams", type=int, help="streams for the memory scenario (default 9000, quick 500)")
    ap.add_argument("--skip-pool", action="store_true", help="skip the upstream-pool scenario (sluice with 3 mock endpoints vs 1)")
    ap.add_argument("--pool-balance", default="least_outstanding", choices=pool.BALANCES,
                    help="the pooled model's balance in the upstream-pool scenario")
    ap.add_argument("--skip-limits", action="store_true",
                    help="skip the shared-limits scenario (sluice with Redis limits vs in-process limits)")
    ap.add_argument("--limits-only", action="store_true",
                    help="only the shared-limits scenario (no memory, main scenarios, pool or micro-benchmarks)")
    ap.add_argument("--limits-rate", type=float, default=limits.DEFAULT_RATE,
                    help="open-loop rate (req/s) of the shared-limits scenario")
    ap.add_argument("--passthrough-args", default="", help="extra sluice-passthrough flags (tuning experiments)")
    ap.add_argument("--notes", help="markdown appended to BENCHMARKS.md (default bench/harness/notes.md for a full run)")
    ap.add_argument("--out", help="BENCHMARKS.md to write (default: the repo's for a full run, the run dir's for --quick or --limits-only)")
    args = ap.parse_args()
    if args.limits_only and (args.skip_limits or args.memory_only):
        ap.error("--limits-only excludes --skip-limits and --memory-only")
    prof = dict(QUICK if args.quick else FULL)
    if args.mem_streams:
        prof["mem_streams"] = args.mem_streams
    started = datetime.datetime.now(datetime.timezone.utc)
    run_dir = os.path.join(args.root, "target", "bench-results", started.strftime("%Y%m%dT%H%M%SZ")
                           + ("-limits" if args.limits_only else "") + ("-quick" if args.quick else ""))
    os.makedirs(run_dir, exist_ok=True)
    os.chdir(args.root)
    log(f"run directory {run_dir}; load average {procs.loadavg()}")

    wanted = args.targets.split(",")
    bench = Bench(args, run_dir)
    if args.limits_only:
        # None of the main targets is started: the scenario starts its own processes.
        tlist, started_procs, skipped, mock_port = [], [], {}, None
    else:
        tlist, started_procs, skipped, mock_port = start_all(args, run_dir, bench, wanted)
    try:
        dur = prof["duration"]
        memory = []
        if not (args.skip_memory or args.limits_only):
            for t in tlist:
                # The per-request series are recorded once a request finishes, so an idle open
                # stream costs the metrics-off sluice what it costs sluice; measuring it again
                # would only lengthen the run.
                if t.proc and t.name != "sluice-nometrics":
                    n = prof["litellm_mem_streams"] if t.name == "litellm" else prof["mem_streams"]
                    memory.append(bench.memory(t, n, mock_port))
            if not args.memory_only:
                # Thousands of streams opened and cut leave every process (the mock included)
                # slower for minutes afterwards (measured: +12-58 % CPU per request for both
                # Pingora builds), which would bias every later run. Start everything afresh.
                log("restarting the mock and every target after the memory scenario")
                stop_all(started_procs)
                tlist, started_procs, more, mock_port = start_all(args, run_dir, bench, wanted)
                skipped.update(more)
        rates = [float(r) for r in args.rates.split(",")] if args.rates else None
        for rnd in range(0 if args.memory_only or args.limits_only else prof["rounds"]):
            order = tlist if rnd % 2 == 0 else list(reversed(tlist))
            for t in order:
                bench.run_load(t, "closed", ["--clients", str(CLOSED_CLIENTS), "--duration", dur, "--timeout", "10s"], rnd)
            if rates is None:
                rates = reference_rates(bench.runs)
                log(f"open-loop rates {rates}")
            for rate in rates:
                for t in order:
                    if t.name == "litellm" and rate > 2 * closed_rps(bench.runs, "litellm"):
                        # Far above its capacity a run only measures LiteLLM's queue (every
                        # request times out) and costs the whole timeout; skip it.
                        continue
                    bench.run_load(
                        t, "open", ["--rate", str(rate), "--duration", dur, "--max-outstanding", "1024", "--timeout", "5s"],
                        rnd, param=rate,
                    )
            for t in order:
                extra = ["--stream", "--rate", str(STREAM_RATE), "--duration", dur, "--timeout", "10s"]
                for h in STREAM_HEADERS:
                    extra += ["-H", h]
                bench.run_load(t, "stream", extra, rnd, param=STREAM_RATE)
        usage_lines = count_lines(os.path.join(run_dir, "sluice", "usage.jsonl"))
    finally:
        stop_all(started_procs)
    # Its own processes, started once the others have stopped, so the two sluices and three
    # mocks share the cores only with the generator.
    pool_res = None
    if not (args.memory_only or args.limits_only or args.skip_pool):
        log(f"upstream pool: sluice with {pool.ENDPOINTS} mock endpoints against 1")
        closed = ["--clients", str(CLOSED_CLIENTS), "--duration", prof["duration"], "--timeout", "10s"]
        pool_res = pool.run(bench, args, run_dir, prof, closed, log)
    # Likewise on its own: a mock, a Redis and two sluices, stopped before the micro-benchmarks.
    limits_res = None
    if not (args.memory_only or args.skip_limits):
        log(f"shared limits: sluice with Redis limits against local limits, open loop at {args.limits_rate:.0f} req/s and closed loop")
        closed = ["--clients", str(CLOSED_CLIENTS), "--duration", prof["duration"], "--timeout", "10s"]
        limits_res = limits.run(bench, args, run_dir, prof, closed, log)
    # After every target has stopped, so the micro-benchmarks have the cores to themselves.
    micro_res = None if args.memory_only or args.limits_only or args.skip_micro else micro.run(args.root, args.quick, log)
    finished = datetime.datetime.now(datetime.timezone.utc)
    results = dict(
        schema="sluice-harness/1", started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="seconds"), quick=args.quick, profile=prof,
        closed_clients=CLOSED_CLIENTS, stream_rate=STREAM_RATE, stream_headers=STREAM_HEADERS,
        rates=rates, machine=machine(), load_after=procs.loadavg(), skipped=skipped,
        targets=[dict(name=t.name, label=t.label, command=t.command, note=t.note) for t in tlist],
        runs=bench.runs, memory=memory, micro=micro_res, pool=pool_res, limits=limits_res, limits_only=args.limits_only,
        sluice_usage_records=usage_lines, run_dir=run_dir,
        command="bench/harness/run.sh" + (" --quick" if args.quick else "") + (" --limits-only" if args.limits_only else ""),
    )
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    # A --limits-only document holds one scenario, so it never replaces the repo's full one
    # unless --out says so.
    partial = args.quick or args.limits_only
    out = args.out or (os.path.join(run_dir, "BENCHMARKS.md") if partial else os.path.join(args.root, "BENCHMARKS.md"))
    notes = args.notes or (None if partial else os.path.join(args.root, "bench", "harness", "notes.md"))
    if notes and os.path.exists(notes):
        with open(notes) as f:
            results["notes"] = f.read()
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = report.render(results)
    with open(out, "w") as f:
        f.write(text)
    print(report.summary(results))
    log(f"wrote {out} and {run_dir}/results.json in {(finished - started).total_seconds():.0f} s")


def start_all(args, run_dir, bench, wanted):
    """Starts the mock and the wanted targets and warms them up; returns (targets, processes,
    skipped target -> why, mock port)."""
    started_procs, skipped = [], {}
    mock, mock_port = tg.start_mock(args.bin, run_dir)
    started_procs.append(mock)
    tlist = [tg.Target("direct", "direct (no hop)", mock_port, None, "sluice-mock")]
    starters = dict(
        # sluice starts first: its virtual key's length sets every other target's key length.
        sluice=lambda: tg.start_sluice(args.bin, run_dir, mock_port),
        **{"sluice-nometrics": lambda: tg.start_sluice(args.bin, run_dir, mock_port, "sluice-nometrics", request_metrics=False)},
        nginx=lambda: tg.start_nginx(run_dir, mock_port),
        litellm=lambda: tg.start_litellm(args.venv, run_dir, mock_port, bench.key_len),
        passthrough=lambda: tg.start_passthrough(args.bin, run_dir, mock_port, shlex.split(args.passthrough_args)),
    )
    try:
        for name in starters:
            if name not in wanted:
                continue
            t, why = starters[name]()
            if t:
                tlist.append(t)
                started_procs.append(t.proc)
                if t.name in ("sluice", "sluice-nometrics"):
                    bench.key_len = len(t.key)
            else:
                skipped[name] = why
                log(f"{name} skipped: {why}")
        order = {n: i for i, n in enumerate(report.ORDER)}
        tlist = sorted((t for t in tlist if t.name in wanted), key=lambda t: order[t.name])
        for t in list(tlist):
            if not bench.warm_up(t):
                skipped[t.name] = "failed its warm-up (see its log)"
                log(f"{t.name} skipped: failed warm-up")
                tlist.remove(t)
    except BaseException:
        stop_all(started_procs)
        raise
    return tlist, started_procs, skipped, mock_port


def stop_all(procs):
    for p in reversed(procs):
        p.stop()


def reference_rates(runs):
    """Open-loop rates as fractions of the closed-loop throughput of the slowest of nginx,
    the pass-through and sluice with metrics on or off (LiteLLM is far slower and would pull
    every rate down to where the others idle), else of half of direct's; the last rate
    saturates that target."""
    best = {}
    for r in runs:
        if r["scenario"] == "closed":
            best[r["target"]] = r["report"]["throughput"]["requests_per_s"]
    hops = [best[n] for n in ("nginx", "passthrough", "sluice", "sluice-nometrics") if best.get(n)]
    ref = min(hops) if hops else 0.5 * best.get("direct", 2000)
    return [max(50.0, round(ref * f / 50) * 50) for f in RATE_FRACTIONS]


def closed_rps(runs, target):
    return max((r["report"]["throughput"]["requests_per_s"] for r in runs
                if r["scenario"] == "closed" and r["target"] == target), default=0.0)


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


if __name__ == "__main__":
    main()
