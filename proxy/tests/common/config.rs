//! The standard test configuration: mock-backed providers, sealed org keys, and virtual keys.

use sluice_proxy::credentials::crypto::MasterKeys;
use sluice_proxy::credentials::keys::{self, KeyDigest};
use std::net::SocketAddr;

/// Test master key (version 1), passed to sluice as `SLUICE_MASTER_KEY`.
pub const MASTER_KEY: &str = "1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// The operator's shared credential for the mock providers (`env:MOCK_SHARED_KEY`).
pub const SHARED_PROVIDER_KEY: &str = "sk-shared-operator-credential-0001";
/// Org acme's own provider credentials, stored sealed in the config.
pub const ACME_OPENAI_KEY: &str = "sk-acme-own-openai-credential-0002";
pub const ACME_ANTHROPIC_KEY: &str = "sk-ant-acme-own-credential-0003";

/// Virtual keys of the test configuration (what apps hold).
#[derive(Debug, Clone)]
pub struct Keys {
    /// Org acme, all models, own sealed provider keys.
    pub acme: String,
    /// Org acme, only `mock-claude`.
    pub acme_claude_only: String,
    /// Org acme, expired in 2000.
    pub expired: String,
    /// Org beta, which uses the operator's shared provider key.
    pub beta: String,
}

#[derive(Debug, Clone)]
pub struct TestConfig {
    pub mock: SocketAddr,
    pub keys: Keys,
    /// TOML appended to the generated file.
    pub extra: String,
    /// TOML lines added inside org acme's table (limits, budget).
    pub acme_org: String,
    /// TOML lines added inside org beta's table.
    pub beta_org: String,
    /// TOML lines added inside the `[server]` table.
    pub server: String,
}

/// A fresh virtual key.
pub fn new_key() -> String {
    keys::generate().expect("key").to_string()
}

/// The `[[keys]]` entry (digest only) for `key`; `models` is a TOML array.
pub fn entry(key: &str, org: &str, models: &str, expires: Option<&str>) -> String {
    let digest = KeyDigest::of(key).to_config_string();
    let expires = expires.map_or(String::new(), |e| format!("expires = \"{e}\"\n"));
    format!("[[keys]]\ndigest = \"{digest}\"\norg = \"{org}\"\nmodels = {models}\n{expires}\n")
}

impl TestConfig {
    pub fn new(mock: SocketAddr) -> Self {
        Self {
            mock,
            keys: Keys {
                acme: new_key(),
                acme_claude_only: new_key(),
                expired: new_key(),
                beta: new_key(),
            },
            extra: String::new(),
            acme_org: String::new(),
            beta_org: String::new(),
            server: String::new(),
        }
    }

    pub fn render(&self) -> String {
        let m = self.mock;
        let master = MasterKeys::parse(MASTER_KEY).expect("test master key");
        let seal = |org: &str, provider: &str, secret: &str| {
            master.seal(org, provider, secret.as_bytes()).expect("seal")
        };
        let k = &self.keys;
        format!(
            r#"
[server]
max_body_bytes = 1_048_576
{server}

[usage]
sink = "stdout"

[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "http://{m}/v1"
key = "env:MOCK_SHARED_KEY"

[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "http://{m}/v1"
key = "env:MOCK_SHARED_KEY"

[[providers]]
name = "slow"
kind = "openai"
base_url = "http://{m}/v1"
auth = "none"
timeouts = {{ first_byte = "300ms", idle = "300ms" }}

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
auth = "none"

[[models]]
name = "mock-gpt"
provider = "mock-openai"

[[models]]
name = "mock-claude"
provider = "mock-anthropic"

[[models]]
name = "fast"
provider = "mock-openai"
upstream_model = "mock-gpt-4"

[[models]]
name = "slow-gpt"
provider = "slow"

[[models]]
name = "dead-gpt"
provider = "dead"

[[models]]
name = "claude-*"
provider = "mock-anthropic"

[[orgs]]
id = "acme"
provider_keys = {{ mock-openai = "{acme_openai}", mock-anthropic = "{acme_anthropic}" }}
{acme_org}

[[orgs]]
id = "beta"
{beta_org}

{keys}
{extra}
"#,
            acme_openai = seal("acme", "mock-openai", ACME_OPENAI_KEY),
            acme_anthropic = seal("acme", "mock-anthropic", ACME_ANTHROPIC_KEY),
            keys = [
                entry(&k.acme, "acme", "[]", None),
                entry(&k.acme_claude_only, "acme", "[\"mock-claude\"]", None),
                entry(&k.expired, "acme", "[]", Some("2000-01-01T00:00:00Z")),
                entry(&k.beta, "beta", "[]", None),
            ]
            .concat(),
            extra = self.extra,
            acme_org = self.acme_org,
            beta_org = self.beta_org,
            server = self.server,
        )
    }
}
