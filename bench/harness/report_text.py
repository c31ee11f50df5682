"""The text of BENCHMARKS.md and of the console summary, from the numbers report.py computed."""

import micro

LABEL = dict(
    direct="direct (no hop)", nginx="nginx", litellm="LiteLLM", passthrough="Pingora pass-through",
    sluice="sluice (governance on)", **{"sluice-nometrics": "sluice, per-request metrics off"},
)


def us(x):
    return "–" if x is None else f"{x:,.0f}"


def x2(x):
    return "–" if x is None else f"{x:.2f}"


def x1(x):
    return "–" if x is None else f"{x:.1f}"


def row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def head(cells):
    return row(cells) + "\n" + row(["---"] * len(cells))


def headline_rate(t):
    """Targets are judged at the second rate (a quarter of the slowest non-LiteLLM hop's max
    throughput): every gateway but LiteLLM should sustain it, so the tail reflects the hop
    rather than queueing at saturation."""
    rates = t["rates"]
    return rates[1] if len(rates) > 1 else (rates[0] if rates else None)


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def verdicts(t):
    """(target, measured, met) rows for the issue's targets that the harness measures."""
    out = []
    rate = headline_rate(t)
    c, o, s, m = t["closed"], t["open"], t["stream"], t["memory"]
    have = set(t["targets"])

    def judge(name, value, ok, base=1.0):
        """base ≤ 0 means the reference's own added latency was below noise (negative): no verdict."""
        if ok is None or base is None:
            verdict = "–"
        elif base <= 0:
            verdict = "inconclusive (reference below noise)"
        else:
            verdict = "met" if ok else "**not met**"
        out.append((name, value, verdict))

    if {"sluice", "passthrough"} <= have:
        r = ratio(c["sluice"]["rps"], c["passthrough"]["rps"])
        judge("governance cost, throughput: sluice ≥ 0.9 × pass-through", f"{x2(r)} ×", None if r is None else r >= 0.9)
        if rate:
            a, b = o[(rate, "sluice")]["a99"], o[(rate, "passthrough")]["a99"]
            r = ratio(a, b)
            judge(f"governance cost, added p99 at {rate:.0f}/s: sluice ≤ 1.1 × pass-through",
                  f"{us(a)} vs {us(b)} µs ({x2(r)} ×)", None if a is None or b is None else a <= 1.1 * b, b)
    if {"sluice", "nginx"} <= have:
        if rate:
            a, b = o[(rate, "sluice")]["a99"], o[(rate, "nginx")]["a99"]
            r = ratio(a, b)
            judge(f"added p99 at {rate:.0f}/s: sluice ≤ 1.25 × nginx",
                  f"{us(a)} vs {us(b)} µs ({x2(r)} ×)", None if a is None or b is None else a <= 1.25 * b, b)
        r = ratio(c["sluice"]["rps"], c["nginx"]["rps"])
        judge("max throughput: sluice ≥ 0.8 × nginx", f"{x2(r)} ×", None if r is None else r >= 0.8)
        a, b = s["sluice"]["attft99"], s["nginx"]["attft99"]
        judge("streams: added TTFT p99 ≤ nginx's", f"{us(a)} vs {us(b)} µs", None if a is None or b is None else a <= b, b)
        a, b = s["sluice"]["agap99"], s["nginx"]["agap99"]
        judge("streams: added inter-chunk gap p99 ≤ nginx's", f"{us(a)} vs {us(b)} µs", None if a is None or b is None else a <= b, b)
    if "sluice" in have and "direct" in have:
        ss, sd = s["sluice"], s["direct"]
        same = ss["ev_min"] == ss["ev_max"] == sd["ev_min"] == sd["ev_max"] and ss["cut"] == 0 and ss["ok"] > 0
        judge("streams: chunks out == chunks in", f"{ss['ev_min']}–{ss['ev_max']} events per stream (direct {sd['ev_min']}–{sd['ev_max']}), {ss['cut']} cut", same)
    mc = t.get("metrics_cost")
    if mc:
        r = mc["overall"]["rps_ratio"]
        judge("per-request metrics: closed-loop throughput on ≥ 0.97 × off", f"{x2(r)} ×", None if r is None else r >= 0.97)
    if "sluice" in m and m["sluice"]["bytes_per_stream"] is not None:
        kib = m["sluice"]["bytes_per_stream"] / 1024
        judge("≤ 16 KiB RSS per open idle stream", f"{kib:.1f} KiB ({m['sluice']['held']} streams)", kib <= 16)
    mi = t.get("micro") or {}
    alloc = mi.get("alloc") or {}
    if "steady" in alloc:
        judge("0 heap allocations per forwarded chunk",
              f"{alloc['steady']} in steady state ({alloc['total']} over whole streams, see micro-benchmarks)", alloc["steady"] == 0)
    else:
        out.append(("0 heap allocations per forwarded chunk", "not run" if not mi else alloc.get("error", "not run"), "–"))
    gbps = micro.scanner_min_gbps(mi)
    if gbps is not None:
        judge("SSE scanner ≥ 2 GB/s", f"{gbps:.1f} GB/s, slowest stream shape and split", gbps >= 2)
    else:
        out.append(("SSE scanner ≥ 2 GB/s", mi.get("error", "not run"), "–"))
    return out


def metrics_cost_section(mc):
    """sluice with its per-request metrics on against off (`[metrics] requests = false`)."""
    if not mc:
        return "Not run (needs targets `sluice` and `sluice-nometrics`).\n"
    parts = ["Target `sluice` against `sluice-nometrics`, the same config with `[metrics] requests = false` "
             "(the process series stay). Closed loop as above, the two run back to back in each round; "
             "\"mean\" is the mean over rounds and its ratios are ratios of those means. Ratios are on / off: "
             "throughput below 1 and CPU above 1 are the metrics' cost.\n\n",
             head(["round", "req/s on", "req/s off", "req/s on / off", "CPU µs/req on", "CPU µs/req off",
                   "CPU on / off", "p99 µs on", "p99 µs off"]) + "\n"]

    def line(label, x):
        return row([label, us(x["on"]["rps"]), us(x["off"]["rps"]), f"{x['rps_ratio']:.3f}" if x["rps_ratio"] else "–",
                    x1(x["on"]["cpu"]), x1(x["off"]["cpu"]), f"{x['cpu_ratio']:.3f}" if x["cpu_ratio"] else "–",
                    us(x["on"]["p99"]), us(x["off"]["p99"])]) + "\n"

    for x in mc["rounds"]:
        parts.append(line(str(x["round"] + 1), x))
    parts.append(line("mean", mc["overall"]))
    if mc["open_cpu"]:
        parts.append("\nCPU µs per request in the open-loop runs (same rates for both, means over rounds):\n\n"
                     + head(["rate /s", "CPU µs/req on", "CPU µs/req off", "on / off"]) + "\n")
        for o in mc["open_cpu"]:
            parts.append(row([f"{o['rate']:.0f}", x1(o["on"]), x1(o["off"]), f"{o['ratio']:.3f}" if o["ratio"] else "–"]) + "\n")
    return "".join(parts)


POOL_LABEL = {"pool-1": "1 endpoint", "pool-3": "3 endpoints"}


def share(x):
    return "–" if x is None else f"{x * 100:.1f} %"


def pool_section(p):
    """sluice with three mock endpoints behind one pooled model against one endpoint."""
    if p is None:
        return "Not run (`--skip-pool`, `--memory-only`, `--limits-only`).\n"
    if p.get("skipped"):
        return f"**Skipped**: {p['skipped']}\n"
    n = len(p["endpoints"])
    parts = [f"sluice fronting {n} mock processes (each on its own loopback port) through one model whose provider "
             f"has `endpoints = [...]` and `balance = \"{p['balance']}\"`, against the same sluice config with "
             "`base_url` = mock 1 (one endpoint). Same closed loop as \"Max throughput\", the two run back to back in "
             "each round, order reversed in the next; all three mocks run throughout. CPU µs/req is sluice's own, "
             "\"mocks CPU\" the three mocks' together. No timing is asserted; this measures what the pool costs "
             "and how it spreads load, on 2 shared cores where extra mock processes also compete for CPU.\n\n",
             head(["round", "target", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "sluice CPU µs/req", "mocks CPU µs/req",
                   "errors"]) + "\n"]

    def line(label, t, x):
        return row([label, POOL_LABEL[t], us(x["rps"]), us(x["p50"]), us(x["p99"]), us(x["p999"]), x1(x["cpu"]),
                    x1(x["mock_cpu"]), x["errors"]]) + "\n"

    rounds = sorted({x["round"] for rs in p["rows"].values() for x in rs})
    for rnd in rounds:
        for t in ("pool-1", "pool-3"):
            for x in p["rows"][t]:
                if x["round"] == rnd:
                    parts.append(line(str(rnd + 1), t, x))
    for t in ("pool-1", "pool-3"):
        parts.append(line("mean", t, p["means"][t]))
    parts.append(f"\n3 endpoints / 1, means over rounds: req/s {x2(p['rps_ratio'])} ×, p99 {x2(p['p99_ratio'])} ×, "
                 f"sluice CPU per request {x2(p['cpu_ratio'])} ×.\n")
    parts.append("\nShare of the 3-endpoint runs' requests each endpoint served, from sluice's usage records "
                 "(their `endpoint` field), and the records with `attempts` above 1 (failed over):\n\n"
                 + head(["round", "records"] + [f"mock {i + 1}" for i in range(n)] + ["attempts > 1"]) + "\n")
    for x in p["share_rows"] + [dict(round=None, **p["shares"])]:
        label = "all" if x["round"] is None else str(x["round"] + 1)
        parts.append(row([label, f"{x['records']:,}"] + [f"{share(s)} ({c:,})" for s, c in zip(x["shares"], x["counts"])]
                         + [x["retried"]]) + "\n")
    parts.append("\nEndpoints: " + ", ".join(f"mock {i + 1} `{e}`" for i, e in enumerate(p["endpoints"])) + ". "
                 "There is no slowed-endpoint variant: the mock delays only on request headers, which sluice "
                 "forwards to every endpoint alike, and `sluice-mock` has no flag for a default delay.\n")
    return "".join(parts)


LIMITS_LABEL = {"limits-local": "local", "limits-redis": "Redis"}


def limits_section(lt):
    """sluice admitting its org limits through Redis against the same sluice admitting them
    in-process."""
    if lt is None:
        return "Not run (`--skip-limits`, `--memory-only`).\n"
    if lt.get("skipped"):
        return f"**Skipped**: {lt['skipped']}\n"
    rate = lt["rate"]
    parts = [f"Two sluices in the same run, identical but for the limits backend: **local** (target `limits-local`, "
             "no `[limits]` table: the bench org's request, token and concurrency limits are admitted in-process) and "
             "**Redis** (target `limits-redis`, `[limits] backend = \"redis\"` on a throwaway "
             f"{lt.get('redis_version') or 'redis-server'} on loopback, no persistence, started for this scenario "
             "alone: the same limits are admitted through Redis leases). The limits "
             "(`100_000_000/min` requests, `100_000_000_000/min` tokens, 100 000 concurrent) are far above the load, "
             "so governance runs on every request and nothing is refused. One mock serves both. Each round runs "
             f"the open loop at **{rate:.0f} req/s** (at most 1024 in flight, 5 s timeout), then the closed loop of "
             "\"Max throughput\", on both targets in turn (local then Redis, reversed in the next round). "
             "CPU µs/req is sluice's own; Redis CPU (10 ms ticks, so 0.0 means under a tick per run) and "
             "\"Redis commands\" (processed during the run, from `INFO stats`) are the server's over the Redis "
             "target's runs (\"–\" for local, which sends it nothing). Leases make the command count follow time "
             "(refills, renewals, spend flushes) more than requests. \"mean\" is the mean over rounds (ok / err / "
             "drop are sums) and the ratios are ratios of those means. No timing is asserted.\n\n"]
    for t in lt["targets"]:
        parts.append(f"- `{t['name']}`: {t['note']}\n")
    if lt.get("redis_command"):
        parts.append(f"- Redis: `{lt['redis_command']}`\n")
    if lt["commands"]:
        parts.append("\nLoad, as run against the Redis target (the local one differs only in `--url` and the key):\n\n```sh\n"
                     + "\n".join(lt["commands"]) + "\n```\n")
    titles = {"limits-open": f"Open loop, {rate:.0f} req/s", "limits-closed": "Closed loop"}
    for sc, title in titles.items():
        s = lt["scenarios"][sc]
        parts.append(f"\n### {title}\n\n")
        parts.append(head(["round", "limits", "ok / err / drop", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "sluice CPU µs/req",
                           "Redis CPU µs/req", "Redis commands"]) + "\n")

        def line(label, t, x):
            cmds = "–" if x["redis_cmds"] is None else f"{x['redis_cmds']:,.0f}"
            return row([label, LIMITS_LABEL[t], f"{x['ok']} / {x['errors']} / {x['dropped']}", us(x["rps"]), us(x["p50"]),
                        us(x["p99"]), us(x["p999"]), x1(x["cpu"]), x1(x["redis_cpu"]), cmds]) + "\n"

        for x in s["rows"]:
            parts.append(line(str(x["round"] + 1), x["target"], x))
        for t in ("limits-local", "limits-redis"):
            if s["means"][t]["runs"]:
                parts.append(line("mean", t, s["means"][t]))
        parts.append(f"\nRedis / local, means over rounds: p99 {x2(s['p99_ratio'])} ×, p99.9 {x2(s['p999_ratio'])} ×, "
                     f"sluice CPU per request {x2(s['cpu_ratio'])} ×, sluice + Redis CPU per request "
                     f"{x2(s['total_cpu_ratio'])} × (of local sluice's), req/s {x2(s['rps_ratio'])} ×.\n")
    if lt["faults"]:
        parts.append("\n**Runs with errors or drops**: " + "; ".join(
            f"{x['scenario']} {LIMITS_LABEL[x['target']]} round {x['round'] + 1}: {x['errors']} errors, {x['dropped']} dropped"
            for x in lt["faults"]) + ".\n")
    else:
        parts.append("\nEvery run of this scenario had zero errors and zero dropped requests.\n")
    if lt["shutdown"]:
        def ended(x):
            rc = x["returncode"]
            how = "exit 0" if rc == 0 else (f"killed by signal {-rc}" if rc is not None and rc < 0 else f"**exit {rc}**")
            return how + (f", **panicked** at `{x['panic']}`" if x["panic"] else "")
        parts.append("\nShutdown (SIGTERM after the last run): " + "; ".join(
            f"{LIMITS_LABEL.get(n, n)} {ended(x)}" for n, x in lt["shutdown"].items()) + ".\n")
    return "".join(parts)


def micro_section(mi):
    """The micro-benchmarks: criterion means and the allocation counts."""
    if not mi:
        return "Not run (`--skip-micro`, `--memory-only`, `--limits-only`).\n"
    if mi.get("error"):
        return f"Failed: {mi['error']}\n"
    parts = [f"`{mi['command']}` (short warm-up and measurement times to bound the harness; the "
             "benches' own defaults give tighter intervals), then `" + mi["alloc"].get("command", "") + "`. "
             "Means of criterion's samples; throughput = input bytes ÷ mean time (GB = 10⁹ bytes).\n\n",
             head(["benchmark", "mean", "throughput"]) + "\n"]
    for b in mi["benches"]:
        ns = b["mean_ns"]
        mean = f"{ns:,.0f} ns" if ns < 10_000 else f"{ns / 1000:,.1f} µs"
        gbps = micro.gb_per_s(b)
        tp = "–" if gbps is None else f"{gbps:.2f} GB/s"
        parts.append(row([b["id"], mean, tp]) + "\n")
    alloc = mi["alloc"]
    if "table" in alloc:
        parts.append("\nHeap allocations per forwarded chunk on sluice's response path (`UsageObserver` and the "
                     "body filter's bookkeeping), counted by dhat over real-format streams, one event per chunk "
                     "and split into 1–4 KiB reads; \"2nd half\" is the steady state:\n\n```text\n"
                     + alloc["table"] + "\n```\n")
    else:
        parts.append(f"\nAllocation count: {alloc.get('error', 'not run')}\n")
    return "".join(parts)


def machine_lines(res):
    m = res["machine"]
    lines = [f"- {l.strip()}" for l in m["lscpu"]]
    lines += [f"- kernel {m['kernel']}; {m['mem']}; open-files limit {m['nofile']}",
              f"- {m['rustc']}; Python {m['python']}; git {m['git']}"]
    return "\n".join(lines)


def load_seen(res):
    ls = [r["load1_before"] for r in res["runs"]] + [r["load1_after"] for r in res["runs"]]
    return (min(ls), max(ls)) if ls else (0, 0)


def document(res, t):
    ts = t["targets"]
    lo, hi = load_seen(res)
    p = res["profile"]
    parts = []
    parts.append(f"""# sluice benchmarks

<!-- Generated by bench/harness/report.py from {res['run_dir']}/results.json; regenerate with
bench/harness/run.sh. Do not edit by hand. -->

**Run of {res['started']} – {res['finished']} UTC{' (quick run: too short to quote)' if res['quick'] else ''}.**
{'Only the shared-limits scenario ran (`--limits-only`); every other section is empty.' + chr(10) if res.get('limits_only') else ''}1-minute load average seen during the runs: {lo:.2f} – {hi:.2f} (2 cores; anything above ~2 means
other work shared the CPUs and the numbers are noisy).

One command regenerates this file: `{res['command']}` (it builds the release binaries, installs
Debian's nginx and `litellm[proxy]` into `target/bench-venv` when missing, and runs every
scenario; raw sluice-load JSON reports stay in `target/bench-results/`).

## Machine

{machine_lines(res)}

Everything runs on this one box over loopback: the load generator (`sluice-load`, 1 thread), the
mock provider (`sluice-mock`, 2 tokio threads, recording off) and the target share the same 2
cores. Every number below is therefore limited by CPU contention between the three, not by the
network: a faster hop leaves more CPU to the generator and the mock, and vice versa.

## Targets

| target | what | command |
| --- | --- | --- |
""")
    for tt in res["targets"]:
        parts.append(row([LABEL.get(tt["name"], tt["name"]), tt["note"], f"`{tt['command']}`" if tt["command"] else "–"]) + "\n")
    for name, why in res["skipped"].items():
        parts.append(row([LABEL.get(name, name), f"**skipped**: {why}", "–"]) + "\n")
    parts.append("\nLiteLLM runs only at open-loop rates up to twice its own max throughput (above that every "
                 "request times out and the run measures its queue). After every run the harness waits (≤ 30 s) "
                 "until the target's process tree is idle, so a backlog cannot steal CPU from the next run.\n")
    parts.append(f"""
Configs: `bench/harness/conf/` (nginx: `proxy_buffering off`, HTTP/1.1 upstream with keep-alive;
LiteLLM: the mock as an OpenAI-compatible model; sluice: an org with request, token and concurrency
limits and a budget far above the load, one virtual key, prices, usage records to a file —
{res.get('sluice_usage_records')} records were written in this run). Every target gets the same requests
(`model: mock-gpt`, a 64-byte prompt, an `Authorization` header of the same length; only sluice's
key is real).

## Method

Scenarios run interleaved: each scenario on every target in turn, the order reversed in every
other round ({p['rounds']} round(s), {p['duration']} per run), so drift in background load hits all
targets alike. Per run:

- **Max throughput**: closed loop, {res['closed_clients']} clients with one keep-alive connection each,
  non-streaming; successful requests per second.
- **Non-streaming latency**: open loop at fixed rates {', '.join(f'{r:.0f}' for r in t['rates'])} req/s
  (10/25/50/100 % of the closed-loop throughput of the slowest of nginx, the pass-through and
  sluice with metrics on and off in round 1; the last saturates it), at most 1024 in flight (later
  arrivals are dropped and counted), 5 s timeout. Latency is measured from each request's
  *intended* send time, so queueing in an overloaded target shows up in full.
- **Streaming**: open loop, {res['stream_rate']} streams/s, `{'`, `'.join(res['stream_headers'])}` (67 SSE
  events per stream including role, finish and `[DONE]`); time to first data event (TTFT) and every
  gap between data events.
- **Added latency** = the target's percentile minus direct's at the same rate in the same round,
  averaged over rounds. Percentiles come from HDR histograms of successful requests only.
- **CPU time per request** = growth of utime + stime of the target's process tree
  (`/proc/PID/stat`, 10 ms ticks) over the run ÷ successful requests.
- **Memory per open idle stream**: N streaming requests the mock stalls after two events
  (`x-mock-stall-after: 2`), held open by N concurrent clients; once the target holds them
  upstream (established connections to the mock, from `/proc/net/tcp`), (VmRSS of the target's
  process tree − VmRSS before) ÷ streams held. N = {p['mem_streams']} ({p['litellm_mem_streams']} for LiteLLM,
  whose throughput makes opening more take too long): 10 000 does not fit, because the hard
  open-files limit here is 20 000 and a proxy holds two sockets per stream. Run first, right after
  warm-up; then the mock and every target are stopped and started afresh (and warmed up again)
  before the other scenarios, because thousands of cut streams leave a process measurably slower
  for minutes afterwards (see the tuning log).
""")
    parts.append("\nThe exact load commands, as run against sluice (other targets differ only in `--url` and "
                 "the key; every run's command is in results.json):\n\n```sh\n")
    seen = set()
    for r in res["runs"]:
        if r["target"] == "sluice" and r["scenario"] not in seen and r["round"] == 0 and r.get("command"):
            seen.add(r["scenario"])
            parts.append(r["command"].replace(res["run_dir"] + "/", "") + "\n")
    mem = [m for m in res.get("memory", []) if m["target"] == "sluice" and m.get("command")]
    if mem:
        parts.append(mem[0]["command"].replace(res["run_dir"] + "/", "") + "\n")
    parts.append("```\n")
    parts.append("\n## Max throughput (closed loop, non-streaming)\n\n")
    parts.append(head(["target", "req/s", "× direct", "× nginx", "p50 µs", "p99 µs", "CPU µs/req", "errors"]) + "\n")
    c = t["closed"]
    for n in ts:
        parts.append(row([LABEL[n], us(c[n]["rps"]), x2(ratio(c[n]["rps"], c.get("direct", {}).get("rps"))),
                          x2(ratio(c[n]["rps"], c.get("nginx", {}).get("rps"))), us(c[n]["p50"]), us(c[n]["p99"]),
                          us(c[n]["cpu"]), c[n]["errors"]]) + "\n")
    parts.append("\n## Added latency, non-streaming, open loop\n\nTotal latency minus direct's, µs. ok / errors / dropped are summed over rounds.\n\n")
    parts.append(head(["rate /s", "target", "ok / err / drop", "p50", "p99", "p99.9", "added p50", "added p99", "added p99.9", "CPU µs/req"]) + "\n")
    for rate in t["rates"]:
        for n in ts:
            o = t["open"][(rate, n)]
            if not o["runs"]:
                parts.append(row([f"{rate:.0f}", LABEL[n], "not run"] + ["–"] * 7) + "\n")
                continue
            parts.append(row([f"{rate:.0f}", LABEL[n], f"{o['ok']} / {o['errors']} / {o['dropped']}", us(o["p50"]), us(o["p99"]),
                              us(o["p999"]), us(o["a50"]), us(o["a99"]), us(o["a999"]), us(o["cpu"])]) + "\n")
    parts.append("\n### Ratios\n\n")
    parts.append(head(["rate /s", "added p99 sluice / nginx", "added p99.9 sluice / nginx", "added p99 sluice / pass-through", "added p99 pass-through / nginx"]) + "\n")
    for rate in t["rates"]:
        g = lambda n, k: t["open"].get((rate, n), {}).get(k)
        parts.append(row([f"{rate:.0f}", x2(ratio(g("sluice", "a99"), g("nginx", "a99"))), x2(ratio(g("sluice", "a999"), g("nginx", "a999"))),
                          x2(ratio(g("sluice", "a99"), g("passthrough", "a99"))), x2(ratio(g("passthrough", "a99"), g("nginx", "a99")))]) + "\n")
    g = lambda n: c.get(n, {}).get("rps")
    parts.append(f"\nMax throughput: sluice / nginx {x2(ratio(g('sluice'), g('nginx')))}, sluice / pass-through "
                 f"{x2(ratio(g('sluice'), g('passthrough')))} (governance cost), pass-through / nginx "
                 f"{x2(ratio(g('passthrough'), g('nginx')))}, nginx / direct {x2(ratio(g('nginx'), g('direct')))}.\n"
                 "A ratio is shown only when the denominator is positive; a negative added latency means the "
                 "target measured faster than direct in that run, i.e. noise larger than the hop's cost.\n")
    parts.append("\n## Streaming\n\n")
    parts.append(head(["target", "ok / err / cut", "TTFT p50", "TTFT p99", "added TTFT p99", "gap p50", "gap p99", "added gap p99", "events / stream", "CPU µs/stream"]) + "\n")
    for n in ts:
        s = t["stream"][n]
        parts.append(row([LABEL[n], f"{s['ok']} / {s['errors']} / {s['cut']}", us(s["ttft50"]), us(s["ttft99"]), us(s["attft99"]),
                          us(s["gap50"]), us(s["gap99"]), us(s["agap99"]), f"{s['ev_min']}–{s['ev_max']}", us(s["cpu"])]) + "\n")
    parts.append("\n## Cost of per-request metrics\n\n")
    parts.append(metrics_cost_section(t.get("metrics_cost")))
    parts.append("\n## Upstream pool (3 endpoints)\n\n")
    parts.append(pool_section(t.get("pool")))
    parts.append("\n## Shared limits (Redis)\n\n")
    parts.append(limits_section(t.get("limits")))
    parts.append("\n## Memory per open idle stream\n\n")
    if t["memory"]:
        parts.append("Fewer streams held upstream than opened means the target queued the rest "
                     "(LiteLLM's own upstream connection pool) or some connects were still in flight; "
                     "the division uses the number held. RSS after release stays high where the "
                     "allocator keeps freed memory.\n\n")
        parts.append(head(["target", "streams opened", "held upstream", "RSS before KiB", "RSS held KiB", "KiB per stream", "RSS after release KiB"]) + "\n")
        for n in ts:
            m = t["memory"].get(n)
            if m:
                per = m["bytes_per_stream"]
                parts.append(row([LABEL[n], m["streams"], m["held"], f"{m['rss_kib_before']:,}", f"{m['rss_kib_held']:,}",
                                  "–" if per is None else f"{per / 1024:.1f}", f"{m['rss_kib_after_release']:,}"]) + "\n")
    else:
        parts.append("Not run (`--skip-memory`, `--limits-only`).\n")
    parts.append("\n## Micro-benchmarks\n\n")
    parts.append(micro_section(t.get("micro")))
    parts.append("\n## The issue's targets\n\n")
    parts.append(head(["target", "measured", "verdict"]) + "\n")
    for name, value, verdict in verdicts(t):
        parts.append(row([name, value, verdict]) + "\n")
    parts.append("""
## What limits these numbers

- **2 cores shared three ways.** Generator, mock and target compete for the same CPUs; max
  throughput is where the three together saturate them, so a target's req/s is a statement about
  its CPU cost per request (see CPU µs/req) more than about its architecture. Direct has one
  process fewer and gets the most.
- **Background load.** Other builds on the box show up as a raised load average (above) and as
  tail spikes in whichever run they overlap; the interleaving spreads them across targets but
  cannot remove them. p99.9 of a short run rests on a handful of samples.
- **Open-loop rates at or above a target's capacity** measure its queue, not its hop: latency
  grows with the run length and requests are dropped at 1024 in flight. Compare added latency at
  rates every target sustains (the lower rates); LiteLLM saturates far below the others.
- **Timer resolution.** CPU time is counted in 10 ms ticks, fine over thousands of requests.
- **Memory** is VmRSS, which includes allocator arenas kept from earlier work; the streams are
  opened right after warm-up so little freed memory is available for reuse.
""")
    if res.get("notes"):
        parts.append("\n" + res["notes"])
    return "".join(parts)


def console(res, t):
    lines = ["added latency vs direct (µs), non-streaming open loop:",
             f"{'rate/s':>8}  {'target':<32}{'p50':>11}{'p99':>11}{'p99.9':>11}{'p99 sluice/nginx':>18}"]
    for rate in t["rates"]:
        for n in t["targets"]:
            o = t["open"][(rate, n)]
            if n == "direct" or not o["runs"]:
                continue
            r = ratio(t["open"].get((rate, "sluice"), {}).get("a99"), t["open"].get((rate, "nginx"), {}).get("a99"))
            lines.append(f"{rate:>8.0f}  {LABEL[n]:<32}{us(o['a50']):>11}{us(o['a99']):>11}{us(o['a999']):>11}"
                         f"{x2(r) if n == 'sluice' else '':>18}")
    lines.append("")
    c = t["closed"]
    lines.append(f"{'target':<32}{'max req/s':>10}{'added p99 µs @ ' + str(int(headline_rate(t) or 0)) + '/s':>26}{'added TTFT p99':>16}{'KiB/stream':>12}")
    rate = headline_rate(t)
    for n in t["targets"]:
        o = t["open"].get((rate, n), {})
        m = t["memory"].get(n)
        kib = "–" if not m or m["bytes_per_stream"] is None else f"{m['bytes_per_stream'] / 1024:.1f}"
        lines.append(f"{LABEL[n]:<32}{us(c[n]['rps']):>10}{us(o.get('a99')):>26}{us(t['stream'][n]['attft99']):>16}{kib:>12}")
    for name, value, verdict in verdicts(t):
        lines.append(f"  {verdict:<12} {name}: {value}")
    p = t.get("pool")
    if p and not p.get("skipped"):
        m1, m3 = p["means"]["pool-1"], p["means"]["pool-3"]
        lines.append(f"upstream pool: 1 endpoint {us(m1['rps'])} req/s p99 {us(m1['p99'])} µs {x1(m1['cpu'])} µs CPU/req; "
                     f"3 endpoints {us(m3['rps'])} req/s p99 {us(m3['p99'])} µs {x1(m3['cpu'])} µs CPU/req; shares "
                     + " / ".join(share(x) for x in p["shares"]["shares"]))
    lt = t.get("limits")
    if lt and not lt.get("skipped"):
        for sc, name in (("limits-open", f"open {lt['rate']:.0f}/s"), ("limits-closed", "closed")):
            s = lt["scenarios"][sc]
            loc, red = s["means"]["limits-local"], s["means"]["limits-redis"]
            lines.append(f"shared limits, {name}: local p99 {us(loc['p99'])} µs {x1(loc['cpu'])} µs CPU/req; "
                         f"Redis p99 {us(red['p99'])} µs {x1(red['cpu'])} + {x1(red['redis_cpu'])} (Redis) µs CPU/req; "
                         f"p99 {x2(s['p99_ratio'])} ×, CPU {x2(s['cpu_ratio'])} ×")
        lines.append(f"shared limits: {len(lt['faults'])} run(s) with errors or drops")
    return "\n".join(lines)
