//! A throwaway Prometheus server for a test: the system's `prometheus` binary on a free loopback
//! port, its TSDB and generated configuration in a temporary directory, scraping the given
//! targets every second (and evaluating the given rule files as often); killed on drop. Its HTTP
//! API answers instant queries, rules and label values.
//!
//! Like [`crate::postgres`], a test skips, loudly, only when no Prometheus installation is found
//! (`.ci/deps.sh --test` installs Debian's `prometheus` package, which brings `promtool` too);
//! `SLUICE_TEST_REQUIRE_PROMETHEUS=1` (CI sets it) makes that a failure.

use crate::Process;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound on Prometheus's start (TSDB creation, WAL replay of an empty head) and on a scrape
/// target coming up.
const START: Duration = Duration::from_secs(30);
/// Ports tried when the free port found is taken before Prometheus binds it.
const TRIES: usize = 5;
/// Poll rate of [`Prometheus::wait_up`] (a rate, not a synchronisation: the state is re-read).
const POLL: Duration = Duration::from_millis(100);

/// `name` (`prometheus` or `promtool`) on `PATH`, or `None` (after a loud notice) when it is not
/// installed and `SLUICE_TEST_REQUIRE_PROMETHEUS` is not set.
pub fn tool(name: &str) -> Option<PathBuf> {
    crate::tools::system_tool(
        name,
        "this Prometheus test",
        "`.ci/deps.sh --test` (Debian's prometheus package)",
        "SLUICE_TEST_REQUIRE_PROMETHEUS",
    )
}

/// A running Prometheus server; killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct Prometheus {
    // Declared before `_dir`: the process is killed before its TSDB directory is removed.
    proc: Process,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) as job `job` every
    /// second and evaluating `rule_files` every second, and waits until it says it is ready.
    /// `None` when Prometheus is not installed (see [`tool`]).
    pub async fn start(job: &str, targets: &[&str], rule_files: &[&Path]) -> Option<Self> {
        Self::start_jobs(&[(job, targets)], rule_files).await
    }

    /// [`Prometheus::start`] with several scrape jobs, each `(job name, its targets)`: rules
    /// and dashboards select a service by its job (`up{job="sluice-control"}`).
    pub async fn start_jobs(jobs: &[(&str, &[&str])], rule_files: &[&Path]) -> Option<Self> {
        let binary = tool("prometheus")?;
        let dir = tempfile::tempdir().expect("prometheus temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text(jobs, rule_files)).expect("write prometheus.yml");
        for _ in 0..TRIES {
            let addr = free_loopback_addr();
            let mut cmd = Command::new(&binary);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=info");
            let proc = Process::spawn("prometheus", cmd);
            // Its own announcement; a port taken meanwhile is the one failure worth a retry.
            let text = proc
                .wait_stderr_async("prometheus to be ready", START, |t| {
                    t.contains("Server is ready to receive web requests")
                        || t.contains("address already in use")
                })
                .await;
            if text.contains("Server is ready to receive web requests") {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("http client");
                let prometheus = Self {
                    proc,
                    base: format!("http://{addr}"),
                    http,
                    _dir: dir,
                };
                let ready = prometheus.get("/-/ready").await;
                assert!(ready.status().is_success(), "/-/ready: {}", ready.status());
                return Some(prometheus);
            }
        }
        panic!("prometheus found no free loopback port in {TRIES} tries");
    }

    /// `http://127.0.0.1:PORT` of the server's HTTP API and UI.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// What Prometheus wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET prometheus {path}: {e}"))
    }

    /// The `data` of a successful API answer; any error (a PromQL syntax error, say) fails the
    /// test at once, naming `what`, rather than reading as "no data yet".
    async fn api(&self, what: &str, request: reqwest::RequestBuilder) -> Value {
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("prometheus API, {what}: {e}"));
        let body: Value = answer
            .json()
            .await
            .unwrap_or_else(|e| panic!("prometheus API, {what}: not JSON: {e}"));
        assert_eq!(body["status"], "success", "prometheus API, {what}: {body}");
        body["data"].clone()
    }

    /// An instant query at the current time (`/api/v1/query`): the result vector (each element
    /// `{"metric": {...}, "value": [time, "value"]}`), or a scalar/string result as one element.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let request = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)]);
        let data = self.api(&format!("query {expr}"), request).await;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => data["result"].as_array().cloned().unwrap_or_default(),
            _ => vec![data["result"].clone()],
        }
    }

    /// Every rule of every loaded group (`/api/v1/rules`), each as the API describes it (`name`,
    /// `query`, `duration`, `labels`, `annotations`, `health`, `lastError`, `lastEvaluation`,
    /// `type`).
    pub async fn rules(&self) -> Vec<Value> {
        let request = self.http.get(format!("{}/api/v1/rules", self.base));
        let data = self.api("rules", request).await;
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The values of `label` on the series `selector` selects (`/api/v1/label/<label>/values`).
    pub async fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let request = self
            .http
            .get(format!("{}/api/v1/label/{label}/values", self.base))
            .query(&[("match[]", selector)]);
        let data = self
            .api(&format!("label {label} of {selector}"), request)
            .await;
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Waits until every scrape target is up (its last scrape succeeded); fails with the
    /// targets' state (their last scrape errors) when they are not within the start bound.
    pub async fn wait_up(&self) {
        let deadline = Instant::now() + START;
        loop {
            let request = self.http.get(format!("{}/api/v1/targets", self.base));
            let data = self.api("targets", request).await;
            let active = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !active.is_empty() && active.iter().all(|t| t["health"] == "up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus targets not up within {START:?}: {active:?}\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A free port on 127.0.0.1, released for Prometheus to bind (a race [`Prometheus::start`]
/// retries).
fn free_loopback_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").to_string()
}

/// The generated `prometheus.yml` (JSON strings are valid YAML scalars, so paths and targets need
/// no YAML escaping of their own).
fn config_text(jobs: &[(&str, &[&str])], rule_files: &[&Path]) -> String {
    let quote = |s: &str| Value::from(s).to_string();
    let rules: Vec<String> = rule_files
        .iter()
        .map(|p| format!("  - {}\n", quote(&p.display().to_string())))
        .collect();
    let jobs: Vec<String> = jobs
        .iter()
        .map(|(job, targets)| {
            let targets: Vec<String> = targets.iter().map(|t| quote(t)).collect();
            format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                quote(job),
                targets.join(", ")
            )
        })
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n{rules}scrape_configs:\n{jobs}",
        rules = if rules.is_empty() {
            "  []\n".to_string()
        } else {
            rules.concat()
        },
        jobs = jobs.concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_targets_and_rules() {
        let text = config_text(
            &[
                ("sluice", &["127.0.0.2:9", "127.0.0.3:9"]),
                ("sluice-control", &["127.0.0.4:9"]),
            ],
            &[Path::new("/x/alerts.yml")],
        );
        assert!(text.contains("scrape_interval: 1s"), "{text}");
        assert!(text.contains("  - \"/x/alerts.yml\"\n"), "{text}");
        assert!(
            text.contains(
                "  - job_name: \"sluice\"\n    static_configs:\n      \
                 - targets: [\"127.0.0.2:9\", \"127.0.0.3:9\"]\n  \
                 - job_name: \"sluice-control\"\n    static_configs:\n      \
                 - targets: [\"127.0.0.4:9\"]\n"
            ),
            "{text}"
        );
    }
}
