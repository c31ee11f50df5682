//! The processes of one scenario: the in-process mock, an optional ledger and Redis, and the
//! sluice replicas, each with its own configuration file (they differ only in where their usage
//! records and spool go) so that a reload rewrites and re-reads them all.

use super::spec::Scenario;
use crate::ledger::{Ledger, INGEST_TOKEN};
use crate::proxy::{ledger_table, mock_providers, ORG};
use sluice_bench::mock::MockProvider;
use sluice_proxy::credentials::keys::{self, KeyDigest};
use sluice_test_support::redis::Redis;
use sluice_test_support::{binary, Process, Signal};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One sluice process and what the checks read of it.
pub struct Replica {
    pub proc: Process,
    pub base: String,
    pub admin: String,
    pub config: PathBuf,
    /// Its usage records (`sink = "file"`), one JSON line each.
    pub usage: PathBuf,
    /// SIGKILLed by the timeline: its records and gauges are not checked.
    pub killed: bool,
    /// Reloads it has been told to do (its generation is this + 1).
    pub reloads: u64,
}

pub struct Fleet {
    pub mock: MockProvider,
    /// `topology.spare_mocks` more providers (`@MOCK1@`, …); `None` once killed.
    pub spares: Vec<Option<MockProvider>>,
    pub ledger: Option<Ledger>,
    pub ledger_url: Option<String>,
    pub redis: Option<Redis>,
    pub replicas: Vec<Replica>,
    pub key: String,
    pub dir: tempfile::TempDir,
}

/// Records each mock keeps: more than any scenario sends at --full (the largest sends about
/// 500,000), at about a kilobyte each.
const MAX_RECORDS: usize = 4_000_000;

impl Fleet {
    /// Every request the mocks served (the spares' too); an error when a mock evicted some,
    /// since a comparison over part of them would be wrong, never just weaker.
    pub fn served(&self) -> Result<Vec<sluice_bench::mock::RecordedRequest>, String> {
        let mut served = self.mock.requests();
        let mut recorded = self.mock.recorded_total();
        for m in self.spares.iter().flatten() {
            served.extend(m.requests());
            recorded += m.recorded_total();
        }
        if served.len() as u64 == recorded {
            Ok(served)
        } else {
            Err(format!(
                "the mocks kept {} of the {recorded} requests they served: the ledger cannot be \
                 compared with their usage",
                served.len()
            ))
        }
    }

    /// Starts everything the scenario's topology names; `None` when it needs a server that is
    /// not installed (the caller skips the scenario, loudly).
    pub async fn start(s: &Scenario) -> Option<Self> {
        let dir = tempfile::tempdir().expect("scenario dir");
        let mock = MockProvider::start("127.0.0.1:0").await.expect("mock");
        // The ledger check sums the mock's usage over every request: none may be evicted
        // (the default keeps 100,000; a --full scenario serves several times that).
        mock.set_max_records(MAX_RECORDS);
        let mut spares = Vec::new();
        for _ in 0..s.topology.spare_mocks {
            let spare = MockProvider::start("127.0.0.1:0")
                .await
                .expect("spare mock");
            spare.set_max_records(MAX_RECORDS);
            spare.set_killable();
            spares.push(Some(spare));
        }
        let redis = if s.topology.redis {
            Some(Redis::start()?)
        } else {
            None
        };
        let (ledger, ledger_url) = match s.topology.ledger.as_deref().unwrap_or("none") {
            "none" => (None, None),
            "sqlite" => {
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                (Some(Ledger::start(&url, "127.0.0.1:0")), Some(url))
            }
            other => panic!(
                "{}: topology.ledger {other:?} is not none or sqlite",
                s.name
            ),
        };
        let key = keys::generate().expect("key").to_string();
        let mut fleet = Self {
            mock,
            spares,
            ledger,
            ledger_url,
            redis,
            replicas: Vec::new(),
            key,
            dir,
        };
        for i in 0..s.topology.replicas.unwrap_or(1) {
            let config = fleet.write_config(s, i, 0);
            let usage = fleet.dir.path().join(format!("usage-{i}.jsonl"));
            let (proc, base, admin) = start_proxy(&config, "127.0.0.1:0", "127.0.0.2:0");
            fleet.replicas.push(Replica {
                proc,
                base,
                admin,
                config,
                usage,
                killed: false,
                reloads: 0,
            });
        }
        Some(fleet)
    }

    /// Writes replica `i`'s configuration; `generation` only changes a comment, so a reload
    /// re-reads an equal configuration.
    pub fn write_config(&self, s: &Scenario, i: usize, generation: u64) -> PathBuf {
        let dir = self.dir.path();
        let digest = KeyDigest::of(&self.key).to_config_string();
        let ledger = match &self.ledger {
            Some(l) => ledger_table(&l.base, &dir.join(format!("spool-{i}")), 50),
            None => String::new(),
        };
        let limits = match &self.redis {
            Some(r) => format!(
                "[limits]\nbackend = \"redis\"\nurl = \"{}\"\nreplicas = {}\nwait = \"1s\"\n",
                r.url(),
                s.topology.replicas.unwrap_or(1)
            ),
            None => String::new(),
        };
        let text = format!(
            r#"# scenario {name}, replica {i}, generation {generation}
[server]
threads = 2
grace_period = "5s"
shutdown_timeout = "5s"

[usage]
sink = "file"
path = "{usage}"

{ledger}
{providers}
[[models]]
name = "mock-gpt"
provider = "mock-openai"
price = {{ input = 1, output = 2 }}

[[models]]
name = "mock-claude"
provider = "mock-anthropic"
price = {{ input = 3, output = 15 }}

[[orgs]]
id = "{ORG}"
{org}

[[keys]]
digest = "{digest}"
org = "{ORG}"

{extra}
{limits}
"#,
            name = s.name,
            usage = dir.join(format!("usage-{i}.jsonl")).display(),
            providers = mock_providers(self.mock.addr()),
            org = s.config.org,
            extra = self.placeholders(&s.config.extra),
        );
        let path = dir.join(format!("sluice-{i}.toml"));
        let tmp = dir.join(format!(".sluice-{i}.toml.tmp"));
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &path).expect("replace config");
        path
    }

    /// The overlay with `@MOCK@` and `@MOCKn@` replaced by the mocks' addresses (a killed
    /// spare keeps its last address, which now refuses connections).
    fn placeholders(&self, text: &str) -> String {
        let mut out = text.replace("@MOCK@", &self.mock.addr().to_string());
        for (i, spare) in self.spares.iter().enumerate() {
            if let Some(m) = spare {
                out = out.replace(&format!("@MOCK{}@", i + 1), &m.addr().to_string());
            }
        }
        out
    }

    /// Kills spare mock `n` (1-based) as a crashed provider: it stops accepting and cuts every
    /// connection it holds, with the requests and streams on them.
    pub fn kill_mock(&mut self, n: usize) {
        let slot = n
            .checked_sub(1)
            .and_then(|i| self.spares.get_mut(i))
            .unwrap_or_else(|| panic!("kill_mock: no spare mock {n}"));
        if let Some(m) = slot.take() {
            m.kill();
        }
    }

    /// Rewrites every live replica's configuration and reloads it, waiting until each says so.
    pub async fn reload(&mut self, s: &Scenario) {
        for i in 0..self.replicas.len() {
            if self.replicas[i].killed {
                continue;
            }
            let generation = self.replicas[i].reloads + 1;
            self.write_config(s, i, generation);
            let r = &mut self.replicas[i];
            r.reloads = generation;
            r.proc.signal(Signal::SIGHUP);
            let line = format!("(generation {})", generation + 1);
            r.proc
                .wait_stderr_async("the reload", crate::WAIT, |t| t.contains(&line))
                .await;
        }
    }

    /// A graceful restart: SIGTERM, the old process drains and exits, a new one starts on the
    /// same addresses (clients arriving in between are refused at connect).
    pub async fn restart_replica(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        r.proc.signal(Signal::SIGTERM);
        let status = r.proc.wait_exit_async(crate::WAIT).await;
        assert!(
            status.success(),
            "replica {i} stopped badly: {status}\n{}",
            r.proc.stderr()
        );
        let listen = r.base.trim_start_matches("http://").to_string();
        let admin = r.admin.trim_start_matches("http://").to_string();
        let (proc, base, admin) = start_proxy(&r.config, &listen, &admin);
        r.proc = proc;
        r.base = base;
        r.admin = admin;
        r.reloads = 0;
    }

    /// A binary upgrade: a new process started with `--upgrade` waits for the listening
    /// sockets, the old one hands them over on SIGQUIT and exits once its connections drained.
    pub async fn upgrade_replica(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        let mut cmd = Command::new(binary("sluice-proxy"));
        cmd.arg("--config")
            .arg(&r.config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.2:0",
                "--upgrade",
            ])
            .env("SLUICE_INGEST_TOKEN", INGEST_TOKEN)
            .env("RUST_LOG", "info");
        let new = Process::spawn("sluice-proxy (upgraded)", cmd);
        new.wait_stderr_async("the upgrade to wait for sockets", crate::WAIT, |t| {
            t.contains("waiting for the listening sockets")
        })
        .await;
        r.proc.signal(Signal::SIGQUIT);
        let base = new
            .wait_stderr_async("the upgraded process to listen", crate::WAIT, |t| {
                t.contains("listening on http://")
            })
            .await;
        assert!(
            base.contains(r.base.trim_start_matches("http://")),
            "the same socket"
        );
        let mut old = std::mem::replace(&mut r.proc, new);
        let status = old.wait_exit_async(crate::WAIT).await;
        assert!(
            status.success(),
            "replica {i}'s old process: {status}\n{}",
            old.stderr()
        );
        r.reloads = 0;
    }

    pub fn kill_ledger(&mut self) {
        if let Some(l) = self.ledger.as_mut() {
            l.proc.kill();
        }
    }

    /// Starts the ledger again on the same address and database.
    pub fn restart_ledger(&mut self) {
        let (Some(old), Some(url)) = (self.ledger.take(), self.ledger_url.clone()) else {
            return;
        };
        let listen = old.listen_addr();
        drop(old);
        self.ledger = Some(Ledger::start(&url, &listen));
    }
}

fn start_proxy(config: &Path, listen: &str, admin: &str) -> (Process, String, String) {
    let mut cmd = Command::new(binary("sluice-proxy"));
    cmd.arg("--config")
        .arg(config)
        .args(["--listen", listen, "--admin-listen", admin])
        .env("SLUICE_INGEST_TOKEN", INGEST_TOKEN)
        .env("RUST_LOG", "info");
    let proc = Process::spawn("sluice-proxy", cmd);
    let base = format!(
        "http://{}",
        proc.wait_line("listening on http://", crate::WAIT)
    );
    let admin = format!("http://{}", proc.wait_line("admin on http://", crate::WAIT));
    (proc, base, admin)
}
