//! The admin listener's `/metrics` after real traffic: every per-request series holds exactly
//! what the traffic sent, read through a real Prometheus text parser; the org-label switch; the
//! access log and the JSON log format.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::config::{entry, new_key};
use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use std::collections::BTreeMap;

/// The chat completions path.
const CHAT: &str = "/v1/chat/completions";

/// The admin listener on an address of its own (the proxy listens on 127.0.0.1).
const ADMIN: [&str; 2] = ["--admin-listen", "127.0.0.2:0"];

/// One parsed scrape.
struct Metrics(Vec<Sample>);

impl Metrics {
    async fn scrape(s: &Sluice) -> Self {
        let (status, text) = s.proc.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition");
        Self(scrape.samples)
    }

    /// Samples of `metric` whose labels are exactly `labels`.
    fn exact<'a>(&'a self, metric: &'a str, labels: &'a [(&str, &str)]) -> Vec<&'a Sample> {
        self.0
            .iter()
            .filter(|s| s.metric == metric && s.labels.len() == labels.len())
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The value of the counter or gauge `metric{labels}` (exactly those labels); 0 if absent.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.exact(metric, labels);
        assert!(found.len() <= 1, "{metric}{labels:?} twice");
        found.first().map_or(0.0, |s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a single value"),
        })
    }

    /// How many observations the histogram `metric{labels}` holds (its `_count`), checked
    /// against its `+Inf` bucket.
    fn observations(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let count = self.value(&format!("{metric}_count"), labels);
        let inf = self
            .exact(metric, labels)
            .first()
            .map_or(0.0, |s| match &s.value {
                Value::Histogram(buckets) => {
                    buckets
                        .iter()
                        .find(|b| b.less_than == f64::INFINITY)
                        .expect("+Inf bucket")
                        .count
                }
                _ => panic!("{metric} is not a histogram"),
            });
        assert_eq!(
            count, inf,
            "{metric}{labels:?}: _count and +Inf bucket differ"
        );
        count
    }

    /// The sum of every sample of `metric` that carries `labels` (and maybe more).
    fn total(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("{metric} is not a single value"),
            })
            .sum()
    }

    /// Every label set of `metric`, for failure messages.
    fn exact_all(&self, metric: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .0
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| format!("{} {:?}", s.labels, s.value))
            .collect();
        all.sort();
        all
    }

    fn has_label(&self, metric: &str, label: &str) -> bool {
        self.0
            .iter()
            .any(|s| s.metric == metric && s.labels.get(label).is_some())
    }
}

/// One request of the mixed load: key, path, body, an extra header, and what it is.
type Step<'a> = (
    &'a str,
    &'a str,
    serde_json::Value,
    (&'a str, &'a str),
    Sent,
);

/// What one request of the mixed load is, and what its series should say.
struct Sent {
    org: &'static str,
    route: &'static str,
    provider: &'static str,
    api: &'static str,
    status_class: &'static str,
    outcome: &'static str,
}

/// The expected per-request series, built from what was sent and the usage records sluice wrote.
#[derive(Default)]
struct Expected {
    requests: BTreeMap<[&'static str; 6], f64>,
    tokens: BTreeMap<(&'static str, &'static str, &'static str), f64>,
    cost: BTreeMap<(&'static str, &'static str), f64>,
    /// Input tokens of the successful chat requests to `mock-gpt` (one `gen_ai` label set).
    chat_gpt_input: f64,
    /// Requests whose record has an upstream time (sluice waited on a provider), by provider.
    reached: BTreeMap<&'static str, f64>,
}

impl Expected {
    fn add(&mut self, sent: &Sent, record: &serde_json::Value) {
        let labels = [
            sent.org,
            sent.route,
            sent.provider,
            sent.api,
            sent.status_class,
            sent.outcome,
        ];
        *self.requests.entry(labels).or_default() += 1.0;
        if record["upstream_ms"].is_number() {
            *self.reached.entry(sent.provider).or_default() += 1.0;
        }
        assert_eq!(record["outcome"], sent.outcome, "{record}");
        if (sent.route, sent.api, sent.outcome) == ("mock-gpt", "chat.completions", "ok") {
            self.chat_gpt_input += record["input_tokens"].as_f64().unwrap();
        }
        if sent.api == "messages.count_tokens" {
            return;
        }
        for (kind, field) in [
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cached", "cached_tokens"),
            ("cache_write", "cache_write_tokens"),
            ("reasoning", "reasoning_tokens"),
        ] {
            let n = record[field].as_u64().unwrap_or(0) as f64;
            if n > 0.0 {
                *self.tokens.entry((sent.org, sent.route, kind)).or_default() += n;
            }
        }
        let cost = record["cost_micro_usd"].as_u64().unwrap_or(0) as f64;
        if cost > 0.0 {
            *self.cost.entry((sent.org, sent.route)).or_default() += cost;
        }
    }
}

/// Config for the mixed load: a priced model, and a key of acme's allowed two requests an hour.
fn mixed_config(c: &mut TestConfig, limited: &str) {
    let key = entry(limited, "acme", "[]", None);
    c.extra = format!(
        r#"{key}
limits = {{ requests = "2/hour" }}

[[models]]
name = "priced-gpt"
provider = "mock-openai"
upstream_model = "mock-gpt"
price = {{ input = 1000, output = 2000 }}
"#,
        key = key.trim_end()
    );
}

#[tokio::test]
async fn a_mixed_load_shows_in_every_series_with_exact_counts() {
    let limited = new_key();
    let mut s = Sluice::start_with_args(|c| mixed_config(c, &limited), &ADMIN).await;
    let acme_key = s.cfg.keys.acme.clone();
    let (acme, limited) = (acme_key.as_str(), limited.as_str());

    // A stream held open: it is in flight, on an open client connection, while scraped.
    let open = open_stream(&s, acme, 3, "300").await;
    let during = Metrics::scrape(&s).await;
    assert_eq!(during.value("sluice_requests_in_flight", &[]), 1.0);
    assert_eq!(during.value("sluice_streams_in_flight", &[]), 1.0);
    assert!(during.value("sluice_downstream_connections", &[]) >= 1.0);
    assert_chat_stream_complete(&open.await.unwrap(), 3);
    let mut expected = Expected::default();
    let chat_ok = Sent {
        org: "acme",
        route: "mock-gpt",
        provider: "mock-openai",
        api: "chat.completions",
        status_class: "2xx",
        outcome: "ok",
    };
    let rec = s.next_record().await;
    expected.add(&chat_ok, &rec);

    // (key, path, body, extra header, what it is); sent one at a time, so records pair up.
    let stream_claude = json!({"model": "mock-claude", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "hello there"}]});
    let claude = json!({"model": "mock-claude", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello there"}]});
    let messages = |outcome| Sent {
        org: "acme",
        route: "mock-claude",
        provider: "mock-anthropic",
        api: "messages",
        status_class: "2xx",
        outcome,
    };
    let chat_to = |route, status_class, outcome| Sent {
        org: "acme",
        route,
        provider: "mock-openai",
        api: "chat.completions",
        status_class,
        outcome,
    };
    let none = ("x-none", "");
    let failing = ("x-mock-status", "500");
    let gpt = |key, model, stream, header, sent| -> Step {
        (key, CHAT, chat(model, stream), header, sent)
    };
    let ok = |route| chat_to(route, "2xx", "ok");
    let refused = |route| chat_to(route, "4xx", "rejected");
    let error = || chat_to("mock-gpt", "5xx", "provider_error");
    let counted = Sent {
        api: "messages.count_tokens",
        ..messages("ok")
    };
    let embedded = Sent {
        api: "embeddings",
        ..ok("mock-gpt")
    };
    let dead = Sent {
        provider: "dead",
        ..chat_to("dead-gpt", "5xx", "upstream_unreachable")
    };
    let unknown_route = || Sent {
        provider: "none",
        ..refused("unknown")
    };
    let unauthenticated = Sent {
        org: "unknown",
        ..unknown_route()
    };
    let embed = json!({"model": "mock-gpt", "input": "four words of text"});
    let load: Vec<Step> = vec![
        gpt(acme, "mock-gpt", false, none, chat_ok),
        gpt(acme, "mock-gpt", false, none, ok("mock-gpt")),
        gpt(acme, "mock-gpt", true, none, ok("mock-gpt")),
        gpt(acme, "mock-gpt", true, none, ok("mock-gpt")),
        gpt(acme, "priced-gpt", false, none, ok("priced-gpt")),
        (acme, "/v1/messages", claude.clone(), none, messages("ok")),
        (acme, "/v1/messages", claude.clone(), none, messages("ok")),
        (acme, "/v1/messages", stream_claude, none, messages("ok")),
        (acme, "/v1/messages/count_tokens", claude, none, counted),
        (acme, "/v1/embeddings", embed, none, embedded),
        gpt(acme, "mock-gpt", false, failing, error()),
        gpt(acme, "mock-gpt", true, failing, error()),
        gpt(acme, "dead-gpt", false, none, dead),
        // A client's model name never becomes a label.
        gpt(acme, "no-such-model-x7", false, none, unknown_route()),
        gpt(limited, "fast", false, none, ok("fast")),
        gpt(limited, "fast", true, none, ok("fast")),
        gpt(limited, "fast", false, none, refused("fast")),
        gpt(limited, "fast", true, none, refused("fast")),
        gpt("sk-not-a-key", "mock-gpt", false, none, unauthenticated),
    ];
    for (key, path, body, (name, value), sent) in load {
        let mut req = s.client().post(s.url(path)).bearer_auth(key).json(&body);
        if !value.is_empty() {
            req = req.header(name, value);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let _ = resp.bytes().await.unwrap();
        assert_eq!(
            format!("{}xx", status / 100),
            sent.status_class,
            "{path} {body}"
        );
        let rec = s.next_record().await;
        expected.add(&sent, &rec);
    }

    let m = Metrics::scrape(&s).await;
    // Requests, by every label, and no series beyond the ones sent.
    let names = ["org", "route", "provider", "api", "status_class", "outcome"];
    for (values, count) in &expected.requests {
        let labels: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().copied()).collect();
        assert_eq!(
            m.value("sluice_requests_total", &labels),
            *count,
            "{labels:?} in {:#?}",
            m.exact_all("sluice_requests_total")
        );
    }
    let sent: f64 = expected.requests.values().sum();
    assert_eq!(sent, 20.0);
    assert_eq!(m.total("sluice_requests_total", &[]), sent);

    // Tokens and cost, as the usage records counted them.
    assert!(!expected.tokens.is_empty() && !expected.cost.is_empty());
    for ((org, route, kind), n) in &expected.tokens {
        let labels = [("org", *org), ("route", *route), ("type", *kind)];
        assert_eq!(m.value("sluice_tokens_total", &labels), *n, "{labels:?}");
    }
    let tokens: f64 = expected.tokens.values().sum();
    assert_eq!(m.total("sluice_tokens_total", &[]), tokens);
    for ((org, route), micro_usd) in &expected.cost {
        let labels = [("org", *org), ("route", *route)];
        assert_eq!(m.value("sluice_cost_micro_usd_total", &labels), *micro_usd);
    }

    // Limit rejections by kind and scope; every kind is there, at zero when never refused.
    let rejections = |kind, scope| {
        m.value(
            "sluice_limit_rejections_total",
            &[("kind", kind), ("scope", scope)],
        )
    };
    assert_eq!(rejections("requests", "key"), 2.0);
    assert_eq!(
        m.exact(
            "sluice_limit_rejections_total",
            &[("kind", "budget"), ("scope", "org")]
        )
        .len(),
        1
    );
    assert_eq!(m.total("sluice_limit_rejections_total", &[]), 2.0);

    // Upstream errors by provider.
    let connect = [("provider", "dead"), ("kind", "connect")];
    assert_eq!(m.value("sluice_upstream_errors_total", &connect), 1.0);

    // The OpenTelemetry GenAI histograms: server duration for every request that has an operation.
    let gen_ai = |operation, provider, model, response_model| {
        vec![
            ("gen_ai_operation_name", operation),
            ("gen_ai_provider_name", provider),
            ("gen_ai_request_model", model),
            ("gen_ai_response_model", response_model),
        ]
    };
    let chat_gpt = gen_ai("chat", "openai", "mock-gpt", "mock-gpt");
    let server = "gen_ai_server_request_duration_seconds";
    assert_eq!(m.observations(server, &chat_gpt), 5.0);
    let mut failed = chat_gpt.clone();
    failed.push(("error_type", "provider_error"));
    assert_eq!(m.observations(server, &failed), 2.0);
    let fast = gen_ai("chat", "openai", "fast", "mock-gpt-4");
    assert_eq!(m.observations(server, &fast), 2.0);
    let claude_chat = gen_ai("chat", "anthropic", "mock-claude", "mock-claude");
    assert_eq!(m.observations(server, &claude_chat), 3.0);
    let counting = gen_ai("count_tokens", "anthropic", "mock-claude", "mock-claude");
    assert_eq!(m.observations(server, &counting), 1.0);
    let embeddings = gen_ai("embeddings", "openai", "mock-gpt", "mock-gpt");
    assert_eq!(m.observations(server, &embeddings), 1.0);
    let mut unknown = gen_ai("chat", "openai", "unknown", "unknown");
    unknown.push(("error_type", "rejected"));
    assert_eq!(m.observations(server, &unknown), 2.0);
    // Time to first token and per output token: the successful streams (3 chat, 1 messages).
    let ttft = "gen_ai_server_time_to_first_token_seconds";
    assert_eq!(m.observations(ttft, &chat_gpt), 3.0);
    assert_eq!(m.observations(ttft, &claude_chat), 1.0);
    assert_eq!(m.observations(ttft, &fast), 1.0);
    let per_token = "gen_ai_server_time_per_output_token_seconds";
    assert_eq!(m.observations(per_token, &chat_gpt), 3.0);
    // The provider's side: operation duration for what reached a provider, token usage by type.
    let client = "gen_ai_client_operation_duration_seconds";
    assert_eq!(m.observations(client, &chat_gpt), 5.0);
    assert_eq!(m.observations(client, &failed), 2.0);
    let mut input = chat_gpt.clone();
    input.push(("gen_ai_token_type", "input"));
    assert_eq!(m.observations("gen_ai_client_token_usage", &input), 5.0);
    assert_eq!(
        m.value("gen_ai_client_token_usage_sum", &input),
        expected.chat_gpt_input
    );

    // Overhead and upstream time for every request sluice sent to a provider (as its record
    // says: the refusals never were).
    assert!(expected.reached["mock-openai"] >= 11.0 && expected.reached["mock-anthropic"] == 4.0);
    let mut overhead = 0.0;
    for api in [
        "chat.completions",
        "messages",
        "messages.count_tokens",
        "embeddings",
    ] {
        overhead += m.observations("sluice_gateway_overhead_seconds", &[("api", api)]);
    }
    assert_eq!(overhead, expected.reached.values().sum::<f64>());
    for (provider, n) in &expected.reached {
        let labels = [("provider", *provider)];
        assert_eq!(
            m.observations("sluice_upstream_duration_seconds", &labels),
            *n
        );
    }

    // Nothing in flight once every request ended, and nothing left in the usage queue (every
    // record was read from sluice's stdout, which the queue feeds).
    assert_eq!(m.value("sluice_requests_in_flight", &[]), 0.0);
    assert_eq!(m.value("sluice_streams_in_flight", &[]), 0.0);
    assert_eq!(m.value("sluice_usage_queue_depth", &[]), 0.0);
    assert!(m.value("sluice_usage_queue_capacity", &[]) > 0.0);
    assert_eq!(m.value("sluice_config_generation", &[]), 1.0);
}

/// One successful chat request with `key`, and its usage record read.
async fn chat_once(s: &mut Sluice, key: &str) {
    let resp = s
        .client()
        .post(s.url(CHAT))
        .bearer_auth(key)
        .json(&chat("mock-gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = s.next_record().await;
}

#[tokio::test]
async fn the_org_label_switch_drops_the_org_label_and_keeps_the_counts() {
    let mut s = Sluice::start_with_args(
        |c| c.extra = "[metrics]\norg_label = false\n".into(),
        &ADMIN,
    )
    .await;
    for key in [s.cfg.keys.acme.clone(), s.cfg.keys.beta.clone()] {
        chat_once(&mut s, &key).await;
    }
    let m = Metrics::scrape(&s).await;
    for metric in ["sluice_requests_total", "sluice_tokens_total"] {
        assert!(!m.has_label(metric, "org"), "{metric} has an org label");
    }
    let labels = [
        ("route", "mock-gpt"),
        ("provider", "mock-openai"),
        ("api", "chat.completions"),
        ("status_class", "2xx"),
        ("outcome", "ok"),
    ];
    assert_eq!(m.value("sluice_requests_total", &labels), 2.0);
}

#[tokio::test]
async fn per_request_series_can_be_switched_off() {
    let mut s =
        Sluice::start_with_args(|c| c.extra = "[metrics]\nrequests = false\n".into(), &ADMIN).await;
    let key = s.cfg.keys.acme.clone();
    chat_once(&mut s, &key).await;
    let m = Metrics::scrape(&s).await;
    assert_eq!(m.total("sluice_requests_total", &[]), 0.0);
    assert_eq!(m.value("sluice_config_generation", &[]), 1.0);
}

#[tokio::test]
async fn the_access_log_has_one_line_per_logged_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let to = path.display().to_string();
    // Sampling 0: successes are not logged, failures always are.
    let mut s = Sluice::start_with(|c| {
        c.extra = format!("[log.access]\nto = \"{to}\"\nsample = 0.0\n");
    })
    .await;
    let secret_prompt = "the-secret-prompt-text";
    let body =
        json!({"model": "mock-gpt", "messages": [{"role": "user", "content": secret_prompt}]});
    let mut failed_ids = Vec::new();
    for status in [None, Some("500"), None, Some("503")] {
        let mut req = s
            .openai_post("/v1/chat/completions?api-version=q-secret")
            .json(&body);
        if let Some(status) = status {
            req = req.header("x-mock-status", status);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        if status.is_some() {
            failed_ids.push(id);
        }
        let _ = resp.bytes().await.unwrap();
        let _ = s.next_record().await;
    }
    // The intake thread writes the access log in order and flushes it after each drain, so the
    // last failure's line being there means every earlier line is too.
    let last = failed_ids.last().unwrap().clone();
    let text = sluice_test_support::wait_for("the last access line", WAIT, || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let done = text.contains(&last);
        async move { done.then_some(text) }
    })
    .await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("access line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for ((line, status), id) in lines.iter().zip([500, 503]).zip(&failed_ids) {
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["outcome"], "provider_error");
        assert_eq!(line["id"], id.as_str(), "{line}");
        assert_eq!(line["org"], "acme");
        assert!(line["total_ms"].is_number() && line["bytes_out"].as_u64() > Some(0));
    }
    for secret in [
        secret_prompt,
        "q-secret",
        s.cfg.keys.acme.as_str(),
        "sk-acme",
    ] {
        assert!(!text.contains(secret), "access log holds {secret}");
    }
}

#[tokio::test]
async fn the_json_log_format_writes_one_object_per_line() {
    let mut s = Sluice::start_with(|c| c.extra = "[log]\nformat = \"json\"\n".into()).await;
    // A refused reload logs a warning.
    s.write_config("not toml [");
    s.proc.signal(Signal::SIGHUP);
    let text = s
        .proc
        .wait_stderr("the refused reload", |t| t.contains("keeping generation 1"))
        .await;
    let logged: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.starts_with("sluice-proxy "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(logged.iter().any(|l| l["level"] == "WARN"
        && l["message"]
            .as_str()
            .is_some_and(|m| m.contains("keeping generation 1"))));
}
