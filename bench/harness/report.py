"""Turns the harness's results.json into BENCHMARKS.md (and a short console summary).

Run on its own to regenerate the document from a finished run:
    python3 bench/harness/report.py target/bench-results/<run>/results.json [BENCHMARKS.md [NOTES.md]]

Every latency is a sluice-load percentile of *successful* requests in microseconds, measured
from the intended send time. "Added" latency is target minus direct at the same percentile,
rate and round; values averaged over rounds are the mean of the per-round values.
"""

import json
import sys

import report_text

ORDER = ["direct", "nginx", "litellm", "passthrough", "sluice", "sluice-nometrics"]


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def runs_of(res, scenario, target=None, param=None):
    return [
        r for r in res["runs"]
        if r["scenario"] == scenario and (target is None or r["target"] == target)
        and (param is None or r["param"] == param)
    ]


def pct(run, metric, p):
    s = run["report"]["latency_us"][metric]
    return s[p] if s["count"] else None


def added(res, scenario, target, param, metric, p):
    """Mean over rounds of (target - direct) at percentile p."""
    vals = []
    for r in runs_of(res, scenario, target, param):
        d = [x for x in runs_of(res, scenario, "direct", param) if x["round"] == r["round"]]
        if d and pct(r, metric, p) is not None and pct(d[0], metric, p) is not None:
            vals.append(pct(r, metric, p) - pct(d[0], metric, p))
    return mean(vals)


def avg(res, scenario, target, param, fn):
    return mean([fn(r) for r in runs_of(res, scenario, target, param)])


def cpu_us_per_req(r):
    ok = r["report"]["ok"]
    return r["cpu_s"] * 1e6 / ok if "cpu_s" in r and ok else None


def targets(res):
    names = [t["name"] for t in res["targets"]]
    return [n for n in ORDER if n in names]


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) and b > 0 else None


def tables(res):
    """All numbers the document shows, computed once."""
    ts = targets(res)
    out = dict(targets=ts, rates=res["rates"] or [])
    out["closed"] = {
        t: dict(
            rps=avg(res, "closed", t, None, lambda r: r["report"]["throughput"]["requests_per_s"]),
            p50=avg(res, "closed", t, None, lambda r: pct(r, "total", "p50")),
            p99=avg(res, "closed", t, None, lambda r: pct(r, "total", "p99")),
            cpu=avg(res, "closed", t, None, cpu_us_per_req),
            errors=sum(r["report"]["errors"]["total"] for r in runs_of(res, "closed", t)),
        )
        for t in ts
    }
    out["open"] = {}
    for rate in out["rates"]:
        for t in ts:
            rs = runs_of(res, "open", t, rate)
            out["open"][(rate, t)] = dict(
                runs=len(rs),
                ok=sum(r["report"]["ok"] for r in rs),
                errors=sum(r["report"]["errors"]["total"] for r in rs),
                dropped=sum(r["report"]["dropped"] for r in rs),
                rps=avg(res, "open", t, rate, lambda r: r["report"]["throughput"]["requests_per_s"]),
                p50=avg(res, "open", t, rate, lambda r: pct(r, "total", "p50")),
                p99=avg(res, "open", t, rate, lambda r: pct(r, "total", "p99")),
                p999=avg(res, "open", t, rate, lambda r: pct(r, "total", "p99_9")),
                a50=added(res, "open", t, rate, "total", "p50"),
                a99=added(res, "open", t, rate, "total", "p99"),
                a999=added(res, "open", t, rate, "total", "p99_9"),
                cpu=avg(res, "open", t, rate, cpu_us_per_req),
            )
    out["stream"] = {}
    for t in ts:
        rs = runs_of(res, "stream", t)
        epr = [r["report"]["events_per_request"] for r in rs if r["report"]["events_per_request"]["count"]]
        out["stream"][t] = dict(
            ok=sum(r["report"]["ok"] for r in rs),
            errors=sum(r["report"]["errors"]["total"] for r in rs),
            cut=sum(r["report"]["errors"]["stream_cut"] for r in rs),
            ttft50=avg(res, "stream", t, None, lambda r: pct(r, "first_event", "p50")),
            ttft99=avg(res, "stream", t, None, lambda r: pct(r, "first_event", "p99")),
            gap50=avg(res, "stream", t, None, lambda r: pct(r, "gap", "p50")),
            gap99=avg(res, "stream", t, None, lambda r: pct(r, "gap", "p99")),
            attft99=added(res, "stream", t, None, "first_event", "p99"),
            agap99=added(res, "stream", t, None, "gap", "p99"),
            ev_min=min((e["min"] for e in epr), default=None),
            ev_max=max((e["max"] for e in epr), default=None),
            cpu=avg(res, "stream", t, None, cpu_us_per_req),
        )
    out["metrics_cost"] = metrics_cost(res, ts, out["rates"])
    out["pool"] = pool_tables(res)
    out["limits"] = limits_tables(res)
    out["memory"] = {m["target"]: m for m in res.get("memory", [])}
    out["micro"] = res.get("micro")
    return out


def metrics_cost(res, ts, rates):
    """sluice with per-request metrics on against the same sluice with them off: the closed-loop
    numbers per round (the two ran back to back in that round) and their means, and CPU per
    request at each open-loop rate. None unless both ran."""
    on, off = "sluice", "sluice-nometrics"
    if not {on, off} <= set(ts):
        return None

    def closed(r):
        return dict(rps=r["report"]["throughput"]["requests_per_s"], cpu=cpu_us_per_req(r), p99=pct(r, "total", "p99"))

    rounds = []
    for r_on in runs_of(res, "closed", on):
        r_off = [r for r in runs_of(res, "closed", off) if r["round"] == r_on["round"]]
        if r_off:
            a, b = closed(r_on), closed(r_off[0])
            rounds.append(dict(round=r_on["round"], on=a, off=b, rps_ratio=ratio(a["rps"], b["rps"]),
                               cpu_ratio=ratio(a["cpu"], b["cpu"])))
    both = {k: dict(rps=mean([x[k]["rps"] for x in rounds]), cpu=mean([x[k]["cpu"] for x in rounds]),
                    p99=mean([x[k]["p99"] for x in rounds])) for k in ("on", "off")}
    overall = dict(on=both["on"], off=both["off"], rps_ratio=ratio(both["on"]["rps"], both["off"]["rps"]),
                   cpu_ratio=ratio(both["on"]["cpu"], both["off"]["cpu"]))
    open_cpu = []
    for rate in rates:
        a, b = avg(res, "open", on, rate, cpu_us_per_req), avg(res, "open", off, rate, cpu_us_per_req)
        open_cpu.append(dict(rate=rate, on=a, off=b, ratio=ratio(a, b)))
    return dict(rounds=rounds, overall=overall, open_cpu=open_cpu)


POOL_TARGETS = ("pool-1", "pool-3")


def pool_tables(res):
    """The upstream-pool scenario (pool.py): per round and mean over rounds, closed-loop req/s,
    latency percentiles and CPU per request of sluice and of the mocks, for sluice with one
    endpoint and with three; and the share of pool-3's usage records each endpoint served.
    None when the scenario did not run; {"skipped": why} when it could not start."""
    meta = res.get("pool")
    if not meta:
        return None
    if meta.get("skipped"):
        return dict(skipped=meta["skipped"])

    def closed(r):
        ok = r["report"]["ok"]
        return dict(
            rps=r["report"]["throughput"]["requests_per_s"], p50=pct(r, "total", "p50"), p99=pct(r, "total", "p99"),
            p999=pct(r, "total", "p99_9"), cpu=cpu_us_per_req(r),
            mock_cpu=r["mock_cpu_s"] * 1e6 / ok if "mock_cpu_s" in r and ok else None,
            errors=r["report"]["errors"]["total"],
        )

    rows = {t: [dict(round=r["round"], **closed(r)) for r in runs_of(res, "pool", t)] for t in POOL_TARGETS}
    means = {}
    for t, rs in rows.items():
        means[t] = {k: mean([x[k] for x in rs]) for k in ("rps", "p50", "p99", "p999", "cpu", "mock_cpu")}
        means[t]["errors"] = sum(x["errors"] for x in rs)
    eps = meta["endpoints"]

    def shares(runs):
        total = sum(r.get("pool_records", 0) for r in runs)
        counts = [sum(r.get("pool_endpoints", {}).get(e, 0) for r in runs) for e in eps]
        return dict(records=total, counts=counts, shares=[c / total if total else None for c in counts],
                    retried=sum(r.get("pool_retried", 0) for r in runs))

    pooled = [r for r in runs_of(res, "pool", "pool-3") if "pool_records" in r]
    share_rows = [dict(round=r["round"], **shares([r])) for r in pooled]
    a, b = means["pool-3"], means["pool-1"]
    return dict(
        endpoints=eps, balance=meta.get("balance"), rows=rows, means=means, share_rows=share_rows,
        shares=shares(pooled), rps_ratio=ratio(a["rps"], b["rps"]), cpu_ratio=ratio(a["cpu"], b["cpu"]),
        p99_ratio=ratio(a["p99"], b["p99"]),
    )


LIMITS_TARGETS = ("limits-local", "limits-redis")
LIMITS_SCENARIOS = ("limits-open", "limits-closed")


def limits_tables(res):
    """The shared-limits scenario (limits.py): for the open loop at its one rate and for the
    closed loop, per round and mean over rounds, each target's req/s, latency percentiles, CPU per
    request of sluice (and of Redis, with the commands Redis processed, for limits-redis) and its
    ok / errors / dropped; the redis / local ratios of the means; and every run with errors or
    drops. None when the scenario did not run; {"skipped": why} when it could not start."""
    meta = res.get("limits")
    if not meta:
        return None
    if meta.get("skipped"):
        return dict(skipped=meta["skipped"])

    def one(r):
        rep, ok = r["report"], r["report"]["ok"]
        return dict(
            round=r["round"], target=r["target"], ok=ok, errors=rep["errors"]["total"], dropped=rep["dropped"],
            rps=rep["throughput"]["requests_per_s"], p50=pct(r, "total", "p50"), p99=pct(r, "total", "p99"),
            p999=pct(r, "total", "p99_9"), cpu=cpu_us_per_req(r),
            redis_cpu=r["redis_cpu_s"] * 1e6 / ok if "redis_cpu_s" in r and ok else None,
            redis_cmds=r.get("redis_commands"),
        )

    out = dict(rate=meta.get("rate"), redis_version=meta.get("redis_version"), redis_command=meta.get("redis_command"),
               targets=meta.get("targets", []), shutdown=meta.get("shutdown") or {}, scenarios={}, faults=[], commands=[])
    for sc in LIMITS_SCENARIOS:
        first = [r for r in res["runs"] if r["scenario"] == sc and r["target"] == "limits-redis" and r.get("command")]
        if first:
            out["commands"].append(first[0]["command"].replace(res["run_dir"] + "/", ""))
    for sc in LIMITS_SCENARIOS:
        # In run order, so each round's rows read as they ran (local first, then redis first).
        rows = [one(r) for r in res["runs"] if r["scenario"] == sc and r["target"] in LIMITS_TARGETS]
        means = {}
        for t in LIMITS_TARGETS:
            rs = [x for x in rows if x["target"] == t]
            means[t] = {k: mean([x[k] for x in rs]) for k in ("rps", "p50", "p99", "p999", "cpu", "redis_cpu", "redis_cmds")}
            for k in ("ok", "errors", "dropped"):
                means[t][k] = sum(x[k] for x in rs)
            means[t]["runs"] = len(rs)
        a, b = means["limits-redis"], means["limits-local"]
        # What admitting through Redis costs in all: sluice's CPU plus the server's, per request.
        total = a["cpu"] + a["redis_cpu"] if a["cpu"] is not None and a["redis_cpu"] is not None else None
        out["scenarios"][sc] = dict(
            rows=rows, means=means, p99_ratio=ratio(a["p99"], b["p99"]), p999_ratio=ratio(a["p999"], b["p999"]),
            cpu_ratio=ratio(a["cpu"], b["cpu"]), total_cpu_ratio=ratio(total, b["cpu"]), rps_ratio=ratio(a["rps"], b["rps"]),
        )
        out["faults"] += [dict(scenario=sc, **x) for x in rows if x["errors"] or x["dropped"]]
    return out


def render(res):
    return report_text.document(res, tables(res))


def summary(res):
    return report_text.console(res, tables(res))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: report.py RESULTS.json [OUT.md [NOTES.md]]")
    with open(sys.argv[1]) as f:
        results = json.load(f)
    if len(sys.argv) > 3:
        # Replace the notes the run carried (e.g. after editing bench/harness/notes.md).
        with open(sys.argv[3]) as f:
            results["notes"] = f.read()
    text = render(results)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(text)
    else:
        print(text)
