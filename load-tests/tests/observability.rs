//! The operator's view of sluice, checked against the real thing: the Grafana dashboard
//! (`deploy/grafana/sluice.json`) and the alerting rules (`deploy/prometheus/alerts.yml`) only
//! name series a real `sluice-proxy` or a real ledger (`sluice-control` on SQLite, behind the
//! proxy) exports, and every one of their PromQL expressions returns data from a real Prometheus
//! scraping both (jobs `sluice` and `sluice-control`, as `deploy/prometheus/prometheus.yml`
//! names them) after a short, bounded mixed load (plain and streamed chat, Anthropic messages,
//! a provider error, an unreachable provider, 429s from a tight key limit, then an org export
//! from the ledger). Its limits are shared through a real throwaway Redis, so the shared-limits
//! series are live as well.
//!
//! The PromQL scanning (metric names, alert signals) is `sluice_load_tests::promql`'s.
//!
//! Skips loudly when Prometheus is not installed (`.ci/deps.sh --test` installs it);
//! `SLUICE_TEST_REQUIRE_PROMETHEUS=1` makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use sluice_bench::mock::MockProvider;
use sluice_load_tests::ledger::Ledger;
use sluice_load_tests::promql::{exported_names, metric_names, signals};
use sluice_load_tests::proxy::{ledger_table, mock_providers, Proxy};
use sluice_proxy::credentials::keys::{self, KeyDigest};
use sluice_test_support::prometheus::{tool, Prometheus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound on all the data appearing in Prometheus (it scrapes every second; the rates need two
/// scrapes). Reaching it fails the test, naming the expression still empty.
const DATA: Duration = Duration::from_secs(30);

/// What the Grafana variables stand for when an expression is evaluated outside Grafana: every
/// org and route, and a rate window of thirty one-second scrapes.
const SUBSTITUTIONS: [(&str, &str); 5] = [
    ("$__rate_interval", "30s"),
    ("$__interval", "30s"),
    ("$__range", "30s"),
    ("$org", ".*"),
    ("$route", ".*"),
];

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

#[test]
fn promtool_accepts_the_rules_and_the_example_config() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let checks = [
        ["check", "rules", "alerts.yml"],
        // Checks the rule files it names too (alerts.yml, relative to it).
        ["check", "config", "prometheus.yml"],
    ];
    for args in checks {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The dashboard's PromQL: every `targets[].expr` of every panel (rows' nested panels
/// included), and the queries of its `query` template variables.
struct Dashboard {
    exprs: Vec<String>,
    variable_queries: Vec<String>,
}

fn dashboard() -> Dashboard {
    let text = std::fs::read_to_string(deploy("grafana/sluice.json")).expect("read dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    let mut stack: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            panel["title"]
        );
        for target in targets.into_iter().flatten() {
            let expr = target["expr"].as_str();
            assert!(
                expr.is_some_and(|e| !e.trim().is_empty()),
                "panel {}: a target without expr",
                panel["title"]
            );
            exprs.extend(expr.map(str::to_string));
        }
    }
    let variable_queries = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            // Grafana writes the query either as a string or as the query editor's object.
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            q.expect("variable query").to_string()
        })
        .collect();
    Dashboard {
        exprs,
        variable_queries,
    }
}

/// `expr` with the Grafana variables replaced; one the test does not know fails here rather
/// than reaching Prometheus as a syntax error.
fn substitute(expr: &str) -> String {
    let out = SUBSTITUTIONS
        .iter()
        .fold(expr.to_string(), |e, (var, value)| e.replace(var, value));
    assert!(!out.contains('$'), "unknown template variable in {expr}");
    out
}

/// The virtual keys of the test's two orgs.
struct Keys {
    /// Org `acme`, no limits.
    open: String,
    /// Org `beta`, 2 requests a minute: the load's 429s.
    tight: String,
}

fn write_config(
    dir: &Path,
    mock: std::net::SocketAddr,
    ledger: &str,
    redis: &str,
    keys: &Keys,
) -> PathBuf {
    // A loopback port nobody listens on: connections to it are refused (upstream_unreachable).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let open = KeyDigest::of(&keys.open).to_config_string();
    let tight = KeyDigest::of(&keys.tight).to_config_string();
    let text = format!(
        r#"
[server]
threads = 2
grace_period = "5s"
shutdown_timeout = "5s"

[usage]
sink = "none"
queue_capacity = 1024

{ledger}
{providers}
# The limits shared through Redis, so their series are live too.
[limits]
backend = "redis"
url = "{redis}"

[[providers]]
name = "nowhere"
kind = "openai"
base_url = "http://{closed}/v1"
auth = "none"

[[models]]
name = "mock-gpt"
provider = "mock-openai"
price = {{ input = 0.15, output = 0.60 }}

[[models]]
name = "mock-claude"
provider = "mock-anthropic"
price = {{ input = 3.00, output = 15.00 }}

[[models]]
name = "gone-gpt"
provider = "nowhere"

# A pool whose first choice is down: the first request fails over and ejects it (the upstream
# pool series), every later one goes straight to the fallback.
[[providers]]
name = "pool-dead"
kind = "openai"
base_url = "http://{closed}/v1"
auth = "none"
health = {{ eject_after = 1, backoff = "1h" }}

[[models]]
name = "pooled-gpt"
targets = [{{ provider = "pool-dead" }}, {{ provider = "mock-openai", priority = 1 }}]

[[orgs]]
id = "acme"

[[orgs]]
id = "beta"

[[keys]]
digest = "{open}"
org = "acme"

[[keys]]
digest = "{tight}"
org = "beta"
limits = {{ requests = "2/min" }}
"#,
        ledger = ledger_table(ledger, &dir.join("spool"), 10),
        providers = mock_providers(mock),
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One request of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    ChatStream,
    Messages,
    MessagesStream,
    /// The mock answers 500 (outcome provider_error).
    ProviderError,
    /// A route whose provider refuses connections (upstream_unreachable, 502).
    Unreachable,
    /// A chat request on the key limited to 2 a minute.
    Limited,
    /// A pooled route whose first choice refuses connections: served by its fallback.
    Pooled,
}

const LOAD: [(Kind, usize); 8] = [
    (Kind::Chat, 8),
    (Kind::ChatStream, 8),
    (Kind::Messages, 4),
    (Kind::MessagesStream, 8),
    (Kind::ProviderError, 3),
    (Kind::Unreachable, 3),
    (Kind::Limited, 8),
    (Kind::Pooled, 4),
];

async fn send(client: &reqwest::Client, base: &str, keys: &Keys, kind: Kind) -> u16 {
    let chat = |key: &str, model: &str, stream: bool| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-mock-chunks", "12")
            .json(&json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "count to twelve"}]}))
    };
    let messages = |stream: bool| {
        client
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &keys.open)
            .header("anthropic-version", "2023-06-01")
            .header("x-mock-chunks", "6")
            .json(
                &json!({"model": "mock-claude", "max_tokens": 64, "stream": stream,
                "messages": [{"role": "user", "content": "hello there"}]}),
            )
    };
    let request = match kind {
        Kind::Chat => chat(&keys.open, "mock-gpt", false),
        Kind::ChatStream => chat(&keys.open, "mock-gpt", true),
        Kind::Messages => messages(false),
        Kind::MessagesStream => messages(true),
        Kind::ProviderError => chat(&keys.open, "mock-gpt", false).header("x-mock-status", "500"),
        Kind::Unreachable => chat(&keys.open, "gone-gpt", false),
        Kind::Limited => chat(&keys.tight, "mock-gpt", false),
        Kind::Pooled => chat(&keys.open, "pooled-gpt", false),
    };
    let answer = request.send().await.expect("send");
    let status = answer.status().as_u16();
    answer.bytes().await.expect("read the answer to its end");
    status
}

/// Runs the load, 8 at a time, and checks every answer; returns how many 429s it got.
async fn drive(base: &str, keys: &Keys) -> usize {
    let client = reqwest::Client::builder()
        .timeout(sluice_load_tests::WAIT)
        .build()
        .unwrap();
    let kinds: Vec<Kind> = LOAD
        .iter()
        .flat_map(|(kind, n)| std::iter::repeat_n(*kind, *n))
        .collect();
    let answers: Vec<(Kind, u16)> = stream::iter(kinds)
        .map(|kind| {
            let client = client.clone();
            async move { (kind, send(&client, base, keys, kind).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut limited = 0;
    for (kind, status) in answers {
        let expected: &[u16] = match kind {
            Kind::ProviderError => &[500],
            Kind::Unreachable => &[502],
            Kind::Limited => &[200, 429],
            _ => &[200],
        };
        assert!(expected.contains(&status), "{kind:?} answered {status}");
        limited += usize::from(status == 429);
    }
    // 2 a minute with 8 sent: at most 2 pass, plus one per 30 s the test takes.
    assert!(limited >= 1, "no request was refused by the key's limit");
    limited
}

/// Polls `expr` until it returns data, at most until `deadline`; returns the data.
async fn data(prom: &Prometheus, expr: &str, deadline: Instant) -> Vec<Value> {
    let within = deadline.saturating_duration_since(Instant::now());
    sluice_test_support::wait_for(&format!("data for {expr}"), within, || async {
        let result = prom.query(expr).await;
        (!result.is_empty()).then_some(result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_has_data_from_a_real_sluice() {
    if tool("prometheus").is_none() {
        return;
    }
    let board = dashboard();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    let ledger = Ledger::start(
        &format!("sqlite://{}", dir.path().join("ledger.db").display()),
        "127.0.0.1:0",
    );
    let keys = Keys {
        open: keys::generate().unwrap().to_string(),
        tight: keys::generate().unwrap().to_string(),
    };
    let Some(redis) = sluice_test_support::redis::Redis::start() else {
        return;
    };
    let config = write_config(dir.path(), mock.addr(), &ledger.base, &redis.url(), &keys);
    let proxy = Proxy::start(&config);
    let alerts = deploy("prometheus/alerts.yml");
    let admin = proxy.admin.trim_start_matches("http://");
    let ledger_addr = ledger.listen_addr();
    let jobs: [(&str, &[&str]); 2] = [("sluice", &[admin]), ("sluice-control", &[&ledger_addr])];
    let prom = Prometheus::start_jobs(&jobs, &[alerts.as_path()])
        .await
        .expect("prometheus is installed");
    prom.wait_up().await;

    let limited = drive(&proxy.base, &keys).await;
    // Counted when each request's logging phase ends, which may follow its answer.
    sluice_load_tests::wait_for("every 429 counted", || async {
        let counted = proxy
            .metric(r#"sluice_limit_rejections_total{kind="requests",scope="key"}"#)
            .await;
        (counted == limited as f64).then_some(())
    })
    .await;
    // The ledger's export counter moves only when an export is streamed to its end.
    ledger.exported_ids("acme").await;

    let deadline = Instant::now() + DATA;
    let mut referenced = BTreeSet::new();
    for expr in &board.exprs {
        referenced.extend(metric_names(expr));
        data(&prom, &substitute(expr), deadline).await;
    }
    for query in &board.variable_queries {
        let args = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query}: not label_values(selector, label)"));
        let (selector, label) = args
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let selector = substitute(selector.trim());
        referenced.extend(metric_names(&selector));
        let within = deadline.saturating_duration_since(Instant::now());
        sluice_test_support::wait_for(&format!("values for {query}"), within, || async {
            let values = prom.label_values(label.trim(), &selector).await;
            (!values.is_empty()).then_some(())
        })
        .await;
    }

    // The rules as Prometheus loaded them from alerts.yml: all of them, each evaluated without
    // error (its whole expression, comparison included), each with a `for:`, a severity and a
    // summary; then each one's signal has data.
    let file = std::fs::read_to_string(&alerts).unwrap();
    let in_file = file
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let within = deadline.saturating_duration_since(Instant::now());
    let rules = sluice_test_support::wait_for("every rule evaluated", within, || async {
        let rules = prom.rules().await;
        for r in &rules {
            assert_ne!(
                r["health"], "err",
                "rule {} fails: {}",
                r["name"], r["lastError"]
            );
        }
        let evaluated = rules.iter().all(|r| r["health"] == "ok");
        (rules.len() == in_file && evaluated).then_some(rules)
    })
    .await;
    assert!(in_file > 0, "no alert in alerts.yml");
    for rule in &rules {
        let name = &rule["name"];
        assert_eq!(rule["type"], "alerting", "{name}");
        assert!(
            rule["duration"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: no for:"
        );
        assert!(
            rule["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{name}: no summary"
        );
        let expr = rule["query"].as_str().expect("rule query");
        referenced.extend(metric_names(expr));
        for signal in signals(expr) {
            assert!(
                signal.parse::<f64>().is_err(),
                "{name}: a constant signal in {expr}"
            );
            data(&prom, &signal, deadline).await;
        }
    }

    let mut text = String::new();
    for base in [&proxy.admin, &ledger.base] {
        let page = reqwest::get(format!("{base}/metrics")).await.unwrap();
        text += &page.text().await.unwrap();
    }
    let exported = exported_names(&text);
    let missing: Vec<&String> = referenced.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or the alerts but exported by neither sluice nor sluice-control: \
         {missing:?}\n{text}"
    );
    assert!(
        referenced.iter().any(|n| n.starts_with("sluice_control_")),
        "no ledger series checked: {referenced:?}"
    );
    assert!(referenced.len() >= 20, "{referenced:?}");
}
