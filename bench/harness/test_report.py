"""Tests of the report generator on a synthetic run: added latency, ratios, verdicts and the
document's sections. Run with `python3 -m unittest discover -s bench/harness`. No timings are
asserted; the numbers are made up."""

import unittest

import report
import report_text


def summary(p50, p99, p999, count=100):
    return dict(count=count, min=p50, mean=p50, p50=p50, p90=p99, p99=p99, p99_9=p999, max=p999)


EMPTY = summary(0, 0, 0, count=0)


def run(target, scenario, rps, p50, p99, p999, rnd=0, param=None, cpu_s=None, events=None, cut=0):
    lat = dict(ttfb=EMPTY, first_event=EMPTY, gap=EMPTY, total=summary(p50, p99, p999), send_lag=EMPTY)
    if scenario == "stream":
        lat["first_event"] = summary(p50, p99, p999)
        lat["gap"] = summary(p50 // 10, p99 // 10, p999 // 10)
    rep = dict(
        ok=1000, dropped=0, errors=dict(total=cut, stream_cut=cut), throughput=dict(requests_per_s=rps),
        latency_us=lat, events_per_request=summary(events, events, events) if events else EMPTY,
    )
    r = dict(target=target, scenario=scenario, param=param, round=rnd, report=rep, load1_before=1.0, load1_after=1.5)
    if cpu_s is not None:
        r["cpu_s"] = cpu_s
    return r


def results():
    runs = []
    for rnd in (0, 1):
        runs += [
            run("direct", "closed", 10000, 100, 1000, 2000, rnd),
            run("nginx", "closed", 8000, 150, 1200, 2500, rnd, cpu_s=0.02),
            run("passthrough", "closed", 5000, 200, 1500, 3000, rnd, cpu_s=0.05),
            run("sluice", "closed", 4800, 210, 1600, 3100, rnd, cpu_s=0.06),
        ]
        for rate in (100.0, 200.0):
            runs += [
                run("direct", "open", rate, 100, 1000, 2000, rnd, rate),
                run("nginx", "open", rate, 150, 1200, 2600, rnd, rate),
                run("passthrough", "open", rate, 160, 1300 + 100 * rnd, 2700, rnd, rate),
                run("sluice", "open", rate, 170, 1320 + 100 * rnd, 2800, rnd, rate),
            ]
        runs += [
            run("direct", "stream", 50, 500, 900, 1000, rnd, 50, events=67),
            run("nginx", "stream", 50, 600, 1100, 1200, rnd, 50, events=67),
            run("passthrough", "stream", 50, 550, 1000, 1100, rnd, 50, events=67),
            run("sluice", "stream", 50, 560, 1050, 1150, rnd, 50, events=67),
        ]
    return dict(
        started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:10:00+00:00", quick=False,
        profile=dict(rounds=2, duration="5s", mem_streams=9000, litellm_mem_streams=1000), closed_clients=32,
        stream_rate=50, stream_headers=["x-mock-chunks: 64"], rates=[100.0, 200.0],
        machine=dict(lscpu=["CPU(s): 2"], kernel="6.1", mem="MemTotal: 1 kB", nofile="20000", git="abc", rustc="rustc", python="3"),
        skipped={"litellm": "not installed"}, run_dir="/tmp/x", command="bench/harness/run.sh",
        targets=[dict(name=n, label=n, command="", note="") for n in ("direct", "nginx", "passthrough", "sluice")],
        runs=runs, memory=[dict(target="sluice", streams=9000, held=9000, rss_kib_before=1000, rss_kib_held=1000 + 9000 * 20,
                                bytes_per_stream=20 * 1024, rss_kib_after_release=1000)],
        sluice_usage_records=123,
        micro=dict(
            command="cargo bench -p sluice-bench", benches=[
                dict(group="sse", id="sse/scanner/chat/one event per chunk", mean_ns=1000.0, bytes=3000),
                dict(group="sse", id="sse/scanner/chat/1-4 KiB reads", mean_ns=1000.0, bytes=2500),
                dict(group="keys", id="keys/KeyDigest::of", mean_ns=250.0, bytes=None),
            ],
            alloc=dict(command="cargo bench -p sluice-bench --bench alloc_per_chunk", total=3, steady=0, table="stream ..."),
        ),
    )


class ReportTest(unittest.TestCase):
    def test_added_latency_is_target_minus_direct_per_round_then_averaged(self):
        t = report.tables(results())
        # Round 0: 1320 - 1000, round 1: 1420 - 1000.
        self.assertEqual(t["open"][(200.0, "sluice")]["a99"], 370)
        self.assertEqual(t["open"][(200.0, "nginx")]["a99"], 200)
        self.assertEqual(t["open"][(100.0, "direct")]["a50"], 0)

    def test_cpu_per_request_and_throughput(self):
        t = report.tables(results())
        self.assertAlmostEqual(t["closed"]["sluice"]["cpu"], 60.0)
        self.assertEqual(t["closed"]["nginx"]["rps"], 8000)

    def test_verdicts(self):
        v = {name: (value, verdict) for name, value, verdict in report_text.verdicts(report.tables(results()))}
        self.assertEqual(v["governance cost, throughput: sluice ≥ 0.9 × pass-through"][1], "met")
        # 370 µs against nginx's 200 µs is 1.85 ×, above 1.25 ×.
        self.assertEqual(v["added p99 at 200/s: sluice ≤ 1.25 × nginx"][1], "**not met**")
        self.assertEqual(v["max throughput: sluice ≥ 0.8 × nginx"][1], "**not met**")
        self.assertEqual(v["streams: chunks out == chunks in"][1], "met")
        self.assertEqual(v["≤ 16 KiB RSS per open idle stream"][1], "**not met**")

    def test_micro_benchmark_verdicts_use_the_slowest_scanner_case(self):
        v = {name: (value, verdict) for name, value, verdict in report_text.verdicts(report.tables(results()))}
        # 2500 bytes in 1000 ns is 2.5 GB/s, the slower of the two scanner cases.
        self.assertEqual(v["SSE scanner ≥ 2 GB/s"], ("2.5 GB/s, slowest stream shape and split", "met"))
        self.assertEqual(v["0 heap allocations per forwarded chunk"][1], "met")
        res = results()
        res["micro"]["alloc"]["steady"] = 2
        res["micro"]["benches"][1]["mean_ns"] = 2000.0
        v = {name: verdict for name, _, verdict in report_text.verdicts(report.tables(res))}
        self.assertEqual(v["0 heap allocations per forwarded chunk"], "**not met**")
        self.assertEqual(v["SSE scanner ≥ 2 GB/s"], "**not met**")
        res["micro"] = None
        v = {name: verdict for name, _, verdict in report_text.verdicts(report.tables(res))}
        self.assertEqual(v["SSE scanner ≥ 2 GB/s"], "–")

    def test_negative_reference_gives_no_verdict(self):
        res = results()
        for r in res["runs"]:
            if r["target"] == "nginx" and r["scenario"] == "open":
                r["report"]["latency_us"]["total"]["p99"] = 900  # faster than direct: noise
        v = {name: verdict for name, _, verdict in report_text.verdicts(report.tables(res))}
        self.assertTrue(v["added p99 at 200/s: sluice ≤ 1.25 × nginx"].startswith("inconclusive"))

    def test_document_has_every_section_and_the_skip_reason(self):
        doc = report.render(results())
        for heading in ("## Machine", "## Max throughput", "## Added latency", "### Ratios", "## Streaming",
                        "## Memory per open idle stream", "## Micro-benchmarks", "## The issue's targets", "## What limits these numbers"):
            self.assertIn(heading, doc)
        self.assertIn("not installed", doc)
        self.assertIn("123 records", doc)

    def test_metrics_cost_compares_on_and_off_per_round_and_overall(self):
        res = results()
        # Metrics off: 5000 then 4800 req/s with 0.05 s of CPU per 1000 requests (on: 4800 both
        # rounds, 0.06 s), p99 1500 µs; and 40 µs/req at the open-loop rates (on: none measured).
        for rnd, rps in ((0, 5000), (1, 4800)):
            res["runs"].append(run("sluice-nometrics", "closed", rps, 200, 1500, 3000, rnd, cpu_s=0.05))
            for rate in (100.0, 200.0):
                res["runs"].append(run("sluice-nometrics", "open", rate, 170, 1300, 2800, rnd, rate, cpu_s=0.04))
        res["targets"].append(dict(name="sluice-nometrics", label="", command="", note=""))
        t = report.tables(res)
        self.assertEqual(t["targets"][-2:], ["sluice", "sluice-nometrics"])
        mc = t["metrics_cost"]
        self.assertEqual([x["round"] for x in mc["rounds"]], [0, 1])
        self.assertAlmostEqual(mc["rounds"][0]["rps_ratio"], 4800 / 5000)
        self.assertAlmostEqual(mc["rounds"][1]["rps_ratio"], 1.0)
        self.assertAlmostEqual(mc["rounds"][0]["cpu_ratio"], 60 / 50)
        self.assertEqual(mc["rounds"][0]["off"]["p99"], 1500)
        # Overall: the ratio of the means, 4800 / 4900.
        self.assertAlmostEqual(mc["overall"]["rps_ratio"], 4800 / 4900)
        self.assertEqual([(o["rate"], o["on"], o["off"]) for o in mc["open_cpu"]], [(100.0, None, 40.0), (200.0, None, 40.0)])
        v = {name: (value, verdict) for name, value, verdict in report_text.verdicts(t)}
        # 0.98 × is within the 3 %.
        self.assertEqual(v["per-request metrics: closed-loop throughput on ≥ 0.97 × off"], ("0.98 ×", "met"))
        doc = report.render(res)
        section = doc[doc.index("## Cost of per-request metrics"):doc.index("## Memory per open idle stream")]
        self.assertIn("| 1 | 4,800 | 5,000 | 0.960 | 60.0 | 50.0 | 1.200 | 1,600 | 1,500 |", section)
        self.assertIn("| mean | 4,800 | 4,900 | 0.980 |", section)
        self.assertIn("| 200 | – | 40.0 | – |", section)

        # Below 0.97 × is reported as not met, not hidden.
        for r in res["runs"]:
            if r["target"] == "sluice-nometrics" and r["scenario"] == "closed":
                r["report"]["throughput"]["requests_per_s"] = 5200
        v = {name: verdict for name, _, verdict in report_text.verdicts(report.tables(res))}
        self.assertEqual(v["per-request metrics: closed-loop throughput on ≥ 0.97 × off"], "**not met**")

    def test_metrics_cost_needs_both_targets(self):
        t = report.tables(results())
        self.assertIsNone(t["metrics_cost"])
        self.assertIn("Not run (needs targets `sluice` and `sluice-nometrics`)", report.render(results()))

    def test_upstream_pool_table_compares_three_endpoints_with_one_and_shows_the_shares(self):
        res = results()
        eps = [f"http://127.0.0.1:{p}/v1" for p in (9001, 9002, 9003)]
        res["pool"] = dict(endpoints=eps, balance="least_outstanding", targets=[], mock_command="")
        for rnd in (0, 1):
            # 1 endpoint: 5000 req/s, 0.06 s of sluice CPU per 1000 requests (60 µs/req), mocks 30.
            one = run("pool-1", "pool", 5000, 200, 1500, 3000, rnd, cpu_s=0.06)
            one["mock_cpu_s"] = 0.03
            # 3 endpoints: 4000 then 4400 req/s, 66 µs/req, p99 1800 µs; 1000 records split
            # 340 / 330 / 330 in round 1 and 400 / 300 / 300 in round 2, 2 then 1 failed over.
            three = run("pool-3", "pool", 4000 + 400 * rnd, 210, 1800, 3500, rnd, cpu_s=0.066)
            three["mock_cpu_s"] = 0.045
            split = (340, 330, 330) if rnd == 0 else (400, 300, 300)
            three.update(pool_records=1000, pool_endpoints=dict(zip(eps, split)), pool_retried=2 - rnd)
            res["runs"] += [one, three]
        t = report.tables(res)
        p = t["pool"]
        self.assertEqual(p["means"]["pool-1"]["rps"], 5000)
        self.assertEqual(p["means"]["pool-3"]["rps"], 4200)
        self.assertAlmostEqual(p["means"]["pool-3"]["cpu"], 66.0)
        self.assertAlmostEqual(p["means"]["pool-3"]["mock_cpu"], 45.0)
        self.assertEqual(p["means"]["pool-3"]["p999"], 3500)
        self.assertAlmostEqual(p["rps_ratio"], 4200 / 5000)
        self.assertAlmostEqual(p["cpu_ratio"], 66 / 60)
        self.assertEqual(p["shares"]["records"], 2000)
        self.assertEqual(p["shares"]["counts"], [740, 630, 630])
        self.assertAlmostEqual(p["shares"]["shares"][0], 0.37)
        self.assertEqual(p["shares"]["retried"], 3)
        # The pool runs stay out of the main tables.
        self.assertEqual(t["targets"], ["direct", "nginx", "passthrough", "sluice"])
        doc = report.render(res)
        section = doc[doc.index("## Upstream pool (3 endpoints)"):doc.index("## Memory per open idle stream")]
        self.assertIn("| 1 | 1 endpoint | 5,000 | 200 | 1,500 | 3,000 | 60.0 | 30.0 | 0 |", section)
        self.assertIn("| mean | 3 endpoints | 4,200 | 210 | 1,800 | 3,500 | 66.0 | 45.0 | 0 |", section)
        self.assertIn("req/s 0.84 ×", section)
        self.assertIn("| 2 | 1,000 | 40.0 % (400) | 30.0 % (300) | 30.0 % (300) | 1 |", section)
        self.assertIn("| all | 2,000 | 37.0 % (740) | 31.5 % (630) | 31.5 % (630) | 3 |", section)
        self.assertIn("upstream pool: 1 endpoint 5,000 req/s", report.summary(res))

    def test_upstream_pool_not_run_or_skipped(self):
        self.assertIn("Not run (`--skip-pool`", report.render(results()))
        res = results()
        res["pool"] = dict(skipped="pool-3 failed its warm-up (see its log)")
        self.assertIn("**Skipped**: pool-3 failed its warm-up", report.render(res))

    def limits_results(self):
        """Two rounds of the shared-limits scenario, in the order limits.py runs them."""
        res = results()
        res["limits"] = dict(
            rate=2000.0, redis_url="redis://127.0.0.1:9100", redis_version="Redis 7.0.15",
            redis_command="/usr/bin/redis-server --port 9100", warmup_redis_commands=185, mock_command="",
            targets=[dict(name="limits-local", label="", command="", note="no `[limits]` table"),
                     dict(name="limits-redis", label="", command="", note='`[limits] backend = "redis"`')],
            shutdown={"limits-local": dict(returncode=0, panic=""), "limits-redis": dict(returncode=0, panic="")},
        )
        for rnd in (0, 1):
            order = ("limits-local", "limits-redis") if rnd == 0 else ("limits-redis", "limits-local")
            for sc in ("limits-open", "limits-closed"):
                for t in order:
                    redis = t == "limits-redis"
                    if sc == "limits-open":
                        # Local: p99 1000 µs, 50 µs of CPU per request (0.05 s per 1000). Redis:
                        # p99 1500 then 2500 µs, 60 µs/req, and Redis 2 µs/req, 100 then 120 commands.
                        r = run(t, sc, 2000, 300, 1500 + 1000 * rnd if redis else 1000, 4000 if redis else 3000,
                                rnd, 2000.0, cpu_s=0.06 if redis else 0.05)
                    else:
                        r = run(t, sc, 9000 if redis else 10000, 1500, 6000, 9000, rnd, cpu_s=0.045 if redis else 0.04)
                    if redis:
                        r["redis_cpu_s"] = 0.002
                        r["redis_commands"] = 100 + 20 * rnd
                    r["command"] = f"/bin/sluice-load --url http://127.0.0.1:1 --json /tmp/x/{sc}-{t}.json"
                    res["runs"].append(r)
        return res

    def test_shared_limits_table_compares_redis_with_local_per_round_and_mean(self):
        res = self.limits_results()
        t = report.tables(res)
        lt = t["limits"]
        o, c = lt["scenarios"]["limits-open"], lt["scenarios"]["limits-closed"]
        # Rows in run order: round 2 runs Redis first.
        self.assertEqual([(x["round"], x["target"]) for x in o["rows"]],
                         [(0, "limits-local"), (0, "limits-redis"), (1, "limits-redis"), (1, "limits-local")])
        self.assertEqual(o["means"]["limits-redis"]["p99"], 2000)
        self.assertEqual(o["means"]["limits-local"]["p99"], 1000)
        self.assertAlmostEqual(o["p99_ratio"], 2.0)
        self.assertAlmostEqual(o["means"]["limits-redis"]["cpu"], 60.0)
        self.assertAlmostEqual(o["cpu_ratio"], 60 / 50)
        # Sluice's 60 µs plus Redis's 2 µs per request, against local sluice's 50.
        self.assertAlmostEqual(o["total_cpu_ratio"], 62 / 50)
        self.assertEqual(o["means"]["limits-redis"]["redis_cmds"], 110)
        self.assertIsNone(o["means"]["limits-local"]["redis_cpu"])
        self.assertAlmostEqual(c["rps_ratio"], 0.9)
        self.assertAlmostEqual(c["cpu_ratio"], 45 / 40)
        self.assertEqual(lt["faults"], [])
        self.assertEqual(lt["commands"], ["/bin/sluice-load --url http://127.0.0.1:1 --json limits-open-limits-redis.json",
                                          "/bin/sluice-load --url http://127.0.0.1:1 --json limits-closed-limits-redis.json"])
        # The scenario's runs stay out of the main tables.
        self.assertEqual(t["targets"], ["direct", "nginx", "passthrough", "sluice"])
        doc = report.render(res)
        self.assertLess(doc.index("## Upstream pool (3 endpoints)"), doc.index("## Shared limits (Redis)"))
        section = doc[doc.index("## Shared limits (Redis)"):doc.index("## Memory per open idle stream")]
        self.assertIn("open loop at **2000 req/s**", section)
        self.assertIn("### Open loop, 2000 req/s", section)
        self.assertIn("| 2 | Redis | 1000 / 0 / 0 | 2,000 | 300 | 2,500 | 4,000 | 60.0 | 2.0 | 120 |", section)
        self.assertIn("| 1 | local | 1000 / 0 / 0 | 2,000 | 300 | 1,000 | 3,000 | 50.0 | – | – |", section)
        self.assertIn("| mean | local | 2000 / 0 / 0 | 2,000 | 300 | 1,000 | 3,000 | 50.0 | – | – |", section)
        self.assertIn("| mean | Redis | 2000 / 0 / 0 | 2,000 | 300 | 2,000 | 4,000 | 60.0 | 2.0 | 110 |", section)
        self.assertIn("Redis / local, means over rounds: p99 2.00 ×, p99.9 1.33 ×, sluice CPU per request 1.20 ×, "
                      "sluice + Redis CPU per request 1.24 ×", section)
        self.assertIn("| mean | Redis | 2000 / 0 / 0 | 9,000 | 1,500 | 6,000 | 9,000 | 45.0 | 2.0 | 110 |", section)
        self.assertIn("req/s 0.90 ×", section)
        self.assertIn("Every run of this scenario had zero errors and zero dropped requests.", section)
        self.assertIn("Shutdown (SIGTERM after the last run): local exit 0; Redis exit 0.", section)
        self.assertIn("limits-open-limits-redis.json", section)
        summary = report.summary(res)
        self.assertIn("shared limits, open 2000/s: local p99 1,000 µs 50.0 µs CPU/req; Redis p99 2,000 µs 60.0 + 2.0", summary)

    def test_shared_limits_lists_runs_with_errors_and_a_panicked_shutdown(self):
        res = self.limits_results()
        for r in res["runs"]:
            if r["scenario"] == "limits-open" and r["target"] == "limits-redis" and r["round"] == 1:
                r["report"]["errors"]["total"] = 3
                r["report"]["dropped"] = 5
        res["limits"]["shutdown"]["limits-redis"] = dict(returncode=101, panic="src/x.rs:1:2: no reactor")
        lt = report.tables(res)["limits"]
        self.assertEqual([(x["scenario"], x["target"], x["round"]) for x in lt["faults"]], [("limits-open", "limits-redis", 1)])
        self.assertEqual(lt["scenarios"]["limits-open"]["means"]["limits-redis"]["errors"], 3)
        doc = report.render(res)
        self.assertIn("**Runs with errors or drops**: limits-open Redis round 2: 3 errors, 5 dropped.", doc)
        self.assertNotIn("had zero errors", doc)
        self.assertIn("Redis **exit 101**, **panicked** at `src/x.rs:1:2: no reactor`", doc)

    def test_shared_limits_not_run_skipped_or_alone(self):
        self.assertIn("Not run (`--skip-limits`", report.render(results()))
        res = results()
        res["limits"] = dict(skipped="redis-server is not installed")
        self.assertIn("**Skipped**: redis-server is not installed", report.render(res))
        # --limits-only: no main targets, rates or micro-benchmarks; the document still renders.
        res = self.limits_results()
        res.update(limits_only=True, runs=[r for r in res["runs"] if r["target"].startswith("limits-")], targets=[],
                   rates=None, memory=[], micro=None, pool=None, skipped={})
        doc = report.render(res)
        self.assertIn("Only the shared-limits scenario ran (`--limits-only`)", doc)
        self.assertIn("| mean | Redis | 2000 / 0 / 0 | 2,000 | 300 | 2,000 |", doc)
        self.assertIn("shared limits: 0 run(s) with errors or drops", report.summary(res))


if __name__ == "__main__":
    unittest.main()
