//! A real `sluice-control` process and the figures the scenarios compare.

use sluice_test_support::{binary, Process};
use sluice_wire::UsageAnswer;
use std::collections::HashSet;
use std::process::Command;

pub const INGEST_TOKEN: &str = "e2e-ingest-token-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

pub struct Ledger {
    pub proc: Process,
    /// `http://ADDR`
    pub base: String,
    http: reqwest::Client,
}

impl Ledger {
    /// Starts the ledger on `listen` (`127.0.0.1:0` for any port) over `database_url`.
    pub fn start(database_url: &str, listen: &str) -> Self {
        let mut cmd = Command::new(binary("sluice-control"));
        cmd.args(["--listen", listen, "--database-url", database_url])
            .env("SLUICE_INGEST_TOKEN", INGEST_TOKEN)
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn");
        let proc = Process::spawn("sluice-control", cmd);
        let base = proc.wait_line("sluice-control listening on ", crate::WAIT);
        Self {
            proc,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// `host:port` the ledger listens on (to restart it on the same address).
    pub fn listen_addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// `GET path` with the admin token.
    async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The org's totals over all time.
    pub async fn usage(&self, org: &str) -> UsageAnswer {
        let r = self.admin_get(&format!("/v1/usage?org={org}")).await;
        assert_eq!(r.status(), 200, "usage query status");
        r.json().await.expect("usage answer")
    }

    /// Every record id the ledger holds for `org` (from the streamed export), and how many
    /// lines the export had: equal when no id is stored twice.
    pub async fn exported_ids(&self, org: &str) -> (HashSet<String>, usize) {
        let text = self
            .admin_get(&format!("/v1/orgs/{org}/export?format=jsonl"))
            .await
            .text()
            .await
            .expect("export body");
        let mut ids = HashSet::new();
        let mut lines = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            lines += 1;
            let v: serde_json::Value = serde_json::from_str(line).expect("export line");
            ids.insert(v["id"].as_str().expect("id").to_string());
        }
        (ids, lines)
    }
}
