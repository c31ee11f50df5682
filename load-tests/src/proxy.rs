//! A real `sluice-proxy` process delivering to a ledger, in front of the in-process mock.

use crate::ledger::INGEST_TOKEN;
use sluice_proxy::credentials::keys::{self, KeyDigest};
use sluice_test_support::{binary, Process};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The org every scenario bills.
pub const ORG: &str = "acme";

/// What a scenario's proxy configuration is made of; `write` renders it to `dir/sluice.toml`.
pub struct ProxyConfig {
    pub mock: SocketAddr,
    pub ledger: String,
    pub spool_dir: PathBuf,
    /// The org's virtual key (what the load sends).
    pub key: String,
}

impl ProxyConfig {
    pub fn new(mock: SocketAddr, ledger: &str, dir: &Path) -> Self {
        Self {
            mock,
            ledger: ledger.to_string(),
            spool_dir: dir.join("spool"),
            key: keys::generate().expect("key").to_string(),
        }
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let digest = KeyDigest::of(&self.key).to_config_string();
        let text = format!(
            r#"
[server]
threads = 2
grace_period = "20s"
shutdown_timeout = "5s"

[usage]
sink = "none"

{ledger}
{providers}
[[models]]
name = "mock-gpt"
provider = "mock-openai"
price = {{ input = 1, output = 2 }}

[[models]]
name = "mock-claude"
provider = "mock-anthropic"

[[orgs]]
id = "{ORG}"

[[keys]]
digest = "{digest}"
org = "{ORG}"
"#,
            ledger = ledger_table(&self.ledger, &self.spool_dir, 50),
            providers = mock_providers(self.mock),
        );
        let path = dir.join("sluice.toml");
        std::fs::write(&path, text).expect("write proxy config");
        path
    }
}

/// The `[ledger]` table of a scenario: delivery to `url` through the spool in `spool_dir`, in
/// batches of `batch_records` sent every 50 ms, and no spend polling.
pub fn ledger_table(url: &str, spool_dir: &Path, batch_records: usize) -> String {
    format!(
        r#"[ledger]
url = "{url}"
token = "env:SLUICE_INGEST_TOKEN"
spool_dir = "{spool}"
batch_records = {batch_records}
batch_interval = "50ms"
spend_poll = "0s"
"#,
        spool = spool_dir.display(),
    )
}

/// The two `[[providers]]` the mock at `mock` plays: `mock-openai` and `mock-anthropic`.
pub fn mock_providers(mock: SocketAddr) -> String {
    format!(
        r#"[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "http://{mock}/v1"
auth = "none"

[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "http://{mock}/v1"
auth = "none"
"#
    )
}

pub struct Proxy {
    pub proc: Process,
    /// `http://ADDR`
    pub base: String,
    /// `http://ADDR` of the admin listener (metrics).
    pub admin: String,
}

impl Proxy {
    pub fn start(config: &Path) -> Self {
        let mut cmd = Command::new(binary("sluice-proxy"));
        cmd.arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.2:0"])
            .env("SLUICE_INGEST_TOKEN", INGEST_TOKEN)
            .env("RUST_LOG", "info");
        let proc = Process::spawn("sluice-proxy", cmd);
        let base = format!(
            "http://{}",
            proc.wait_line("listening on http://", crate::WAIT)
        );
        // Both lines are printed together, in either order.
        let admin = format!("http://{}", proc.wait_line("admin on http://", crate::WAIT));
        Self { proc, base, admin }
    }

    /// One sample of the admin endpoint's Prometheus text, e.g.
    /// `sluice_usage_records_total{result="spooled"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).map(str::trim))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}
