"""The upstream-pool scenario: sluice in front of three mock providers through one pooled model,
against the same sluice with a single endpoint, in the same run.

Three mocks start on their own loopback ports. Target `pool-1` is sluice with the harness's usual
config (`base_url` = the first mock); target `pool-3` is the same config with
`endpoints = [all three]` and the model's `balance` (default `least_outstanding`). Both run the
closed loop of the main scenarios, interleaved (1 3, then 3 1 in the next round). For every run
the harness reads sluice's CPU time, the three mocks' CPU time, and the usage records the run
added, counted by their `endpoint` field: the share of requests each endpoint served, and how
many requests took more than one attempt. No timing is asserted anywhere.

There is no slowed-endpoint variant: the mock's delays come only from request headers
(`x-mock-header-delay-ms`), which sluice forwards to every endpoint alike, and `sluice-mock` has
no flag for a default delay, so one of three processes cannot be made slow on its own.
"""

import json
import os

import procs
import targets as tg

ENDPOINTS = 3
BALANCES = ("least_outstanding", "weighted", "least_tokens")


def usage_counts(path):
    """(records, {endpoint: records}, records with attempts > 1) in a usage file so far."""
    total, by_endpoint, retried = 0, {}, 0
    try:
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    # A line being appended right now; the next read counts it.
                    continue
                total += 1
                ep = rec.get("endpoint") or "(none)"
                by_endpoint[ep] = by_endpoint.get(ep, 0) + 1
                if (rec.get("attempts") or 0) > 1:
                    retried += 1
    except OSError:
        pass
    return total, by_endpoint, retried


def diff_counts(after, before):
    total = after[0] - before[0]
    eps = {k: v - before[1].get(k, 0) for k, v in after[1].items() if v - before[1].get(k, 0)}
    return total, eps, after[2] - before[2]


def run(bench, args, run_dir, prof, closed_extra, log):
    """Runs the scenario; returns its description for results.json (the runs themselves go to
    bench.runs as scenario "pool", targets "pool-1" and "pool-3"), or None if it could not
    start (the reason is logged and returned under "skipped")."""
    started = []
    try:
        mocks = []
        for i in range(ENDPOINTS):
            try:
                proc, port = tg.start_mock(args.bin, run_dir, name=f"pool-mock{i + 1}")
            except RuntimeError as e:
                log(f"upstream pool skipped: {e}")
                return dict(skipped=str(e))
            started.append(proc)
            mocks.append((proc, port))
        ports = [p for _, p in mocks]
        one, why1 = tg.start_sluice(args.bin, run_dir, ports[0], name="pool-1")
        if one:
            started.append(one.proc)
        three, why3 = tg.start_sluice(args.bin, run_dir, ports[0], name="pool-3", pool_ports=ports,
                                      balance=args.pool_balance)
        if three:
            started.append(three.proc)
        if not one or not three:
            why = why1 or why3
            log(f"upstream pool skipped: {why}")
            return dict(skipped=why)
        one.label, one.note = "sluice, 1 endpoint", "`base_url` = mock 1, otherwise as target sluice"
        three.label = f"sluice, {ENDPOINTS} endpoints"
        three.note = f"`endpoints` = mocks 1-{ENDPOINTS}, `balance = \"{args.pool_balance}\"`, otherwise as target sluice"
        for t in (one, three):
            if not bench.warm_up(t):
                why = f"{t.name} failed its warm-up (see its log)"
                log(f"upstream pool skipped: {why}")
                return dict(skipped=why)
        usage = os.path.join(run_dir, "pool-3", "usage.jsonl")
        for rnd in range(prof["rounds"]):
            for t in ((one, three) if rnd % 2 == 0 else (three, one)):
                mock_cpu0 = sum(procs.cpu_seconds(p.pid) for p, _ in mocks)
                before = usage_counts(usage)
                r = bench.run_load(t, "pool", closed_extra, rnd)
                if r is None:
                    continue
                r["mock_cpu_s"] = sum(procs.cpu_seconds(p.pid) for p, _ in mocks) - mock_cpu0
                if t is three:
                    # Records reach the file within milliseconds of each response (the sink
                    # drains its queue every 2 ms), and run_load has already waited until
                    # sluice is idle, so the difference holds this run's requests.
                    total, eps, retried = diff_counts(usage_counts(usage), before)
                    r["pool_records"], r["pool_endpoints"], r["pool_retried"] = total, eps, retried
                    shares = ", ".join(f"{eps.get(tg.mock_url(p), 0) / total:.3f}" if total else "–" for p in ports)
                    log(f"pool-3 round {rnd + 1}: {total} records, endpoint shares {shares}, {retried} retried")
        return dict(
            endpoints=[tg.mock_url(p) for p in ports], balance=args.pool_balance,
            targets=[dict(name=t.name, label=t.label, command=t.command, note=t.note) for t in (one, three)],
            mock_command=" ".join(mocks[0][0].argv),
        )
    finally:
        for p in reversed(started):
            p.stop()
