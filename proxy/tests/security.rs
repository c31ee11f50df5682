//! Credentials: the provider sees the org's provider key and never the virtual key; client
//! credentials, hop-by-hop and `x-sluice-*` headers are stripped; no secret is ever logged or
//! recorded; sealed keys are bound to their org and survive master-key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::config::{ACME_ANTHROPIC_KEY, ACME_OPENAI_KEY, SHARED_PROVIDER_KEY};
use common::*;
use sluice_proxy::credentials::crypto::MasterKeys;

#[tokio::test]
async fn provider_sees_provider_key_never_the_virtual_key() {
    let mut s = Sluice::start().await;
    let acme = s.cfg.keys.acme.clone();
    let beta = s.cfg.keys.beta.clone();
    let send = |key: String, extra: bool| {
        let mut r = s
            .client()
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-sluice-user", "u-42")
            .header("x-sluice-meta-team", "search")
            .header("cookie", "session=abc")
            .header("openai-organization", "org-client")
            .header("x-forwarded-for", "10.1.2.3")
            .header("user-agent", "test-agent/1.0");
        if extra {
            r = r
                .header("connection", "keep-alive, x-hop")
                .header("x-hop", "1");
        }
        r.json(&chat("mock-gpt", false)).send()
    };
    assert_eq!(send(acme.clone(), true).await.unwrap().status(), 200);
    assert_eq!(send(beta.clone(), false).await.unwrap().status(), 200);
    let anthropic = s
        .client()
        .post(s.url("/v1/messages"))
        .header("x-api-key", &acme)
        .json(&serde_json::json!({"model": "mock-claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);

    let reqs = s.mock.requests();
    // Ordinary headers pass through.
    assert_eq!(reqs[0].header("user-agent"), Some("test-agent/1.0"));
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {ACME_OPENAI_KEY}").as_str())
    );
    assert_eq!(
        reqs[1].header("authorization"),
        Some(format!("Bearer {SHARED_PROVIDER_KEY}").as_str())
    );
    assert_eq!(reqs[2].header("x-api-key"), Some(ACME_ANTHROPIC_KEY));
    assert_eq!(reqs[2].header("anthropic-version"), Some("2023-06-01"));
    for r in &reqs {
        for (name, value) in &r.headers {
            assert!(
                !value.contains(&acme) && !value.contains(&beta),
                "virtual key reached the provider in {name}"
            );
            for banned in [
                "cookie",
                "openai-organization",
                "x-forwarded-for",
                "x-hop",
                "x-sluice-user",
                "x-sluice-meta-team",
            ] {
                assert_ne!(name.as_str(), banned, "{banned} reached the provider");
            }
        }
        assert_eq!(r.header("accept-encoding"), Some("identity"));
    }
    let rec = s.next_record().await;
    assert_eq!(rec["user"], "u-42");
    assert_eq!(rec["meta"]["team"], "search");
    let r2 = s.next_record().await;
    let r3 = s.next_record().await;

    // No secret in any record or log line.
    let logs = s.stderr();
    for secret in [
        acme.as_str(),
        beta.as_str(),
        ACME_OPENAI_KEY,
        ACME_ANTHROPIC_KEY,
        SHARED_PROVIDER_KEY,
        MASTER_KEY.split(':').nth(1).unwrap(),
    ] {
        for r in [&rec, &r2, &r3] {
            assert!(!r.to_string().contains(secret), "secret in usage record");
        }
        assert!(!logs.contains(secret), "secret in logs");
    }
}

fn org_config(org: &str, sealed: &str) -> String {
    format!(
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[models]]\nname = \"m\"\nprovider = \"p\"\n\n\
         [[orgs]]\nid = \"{org}\"\nprovider_keys = {{ p = \"{sealed}\" }}\n\n\
         [[keys]]\ndigest = \"sha256:{digest}\"\norg = \"{org}\"\n",
        digest = "ab".repeat(32)
    )
}

#[test]
fn sealed_key_copied_to_another_org_is_refused() {
    let master = MasterKeys::parse(MASTER_KEY).unwrap();
    let sealed = master
        .seal("acme", "p", b"sk-real-provider-secret")
        .unwrap();
    let (ok, _, err) = check_config(&org_config("acme", &sealed), MASTER_KEY);
    assert!(ok, "{err}");
    let (ok, _, err) = check_config(&org_config("evil", &sealed), MASTER_KEY);
    assert!(!ok);
    assert!(err.contains("evil"), "{err}");
    assert!(
        !err.contains("sk-real-provider-secret") && !err.contains(&sealed),
        "{err}"
    );
}

#[test]
fn master_key_rotation_opens_old_values_and_refuses_retired_keys() {
    let v1 = MASTER_KEY;
    let v2 = MasterKeys::generate_entry(2).unwrap();
    let both = format!("{v1},{v2}");
    let old = MasterKeys::parse(v1)
        .unwrap()
        .seal("acme", "p", b"secret-one")
        .unwrap();
    let new = MasterKeys::parse(&both)
        .unwrap()
        .seal("acme", "p", b"secret-two")
        .unwrap();
    assert!(new.starts_with("sealed:v2:"), "the newest key seals");
    assert!(
        check_config(&org_config("acme", &old), &both).0,
        "old values open after rotation"
    );
    assert!(check_config(&org_config("acme", &new), &both).0);
    let (ok, _, err) = check_config(&org_config("acme", &old), &v2);
    assert!(!ok, "a value sealed with a retired key must not open");
    assert!(err.contains('1'), "names the missing version: {err}");
}

#[tokio::test]
async fn seal_cli_round_trips_through_a_running_gateway() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(["seal", "--org", "acme", "--provider", "mock-openai"])
        .env("SLUICE_MASTER_KEY", MASTER_KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-from-the-cli\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let sealed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let opened = MasterKeys::parse(MASTER_KEY)
        .unwrap()
        .open("acme", "mock-openai", &sealed)
        .unwrap();
    assert_eq!(opened.expose(), b"sk-from-the-cli");
}

/// A key in the query string (`?key=…`, `?api_key=…`, or any parameter whose value is the key)
/// never reaches the provider nor any log line at any level, also when the upstream fails and
/// Pingora logs the request; other parameters (Azure's `api-version`) still pass.
#[tokio::test]
async fn a_key_in_the_query_string_is_never_forwarded_nor_logged() {
    let mut s = Sluice::start_logging(|_| {}, &[], "trace").await;
    let acme = s.cfg.keys.acme.clone();
    let encoded = acme.replace('-', "%2D");
    let query = format!(
        "?api-version=2024-06-01&key={acme}&API_KEY={acme}&api-key=x&access_token=y&x={encoded}&ok=1"
    );
    let send = |model: &str| {
        s.client()
            .post(s.url(&format!("/v1/chat/completions{query}")))
            .bearer_auth(&acme)
            .json(&chat(model, false))
            .send()
    };
    assert_eq!(send("mock-gpt").await.unwrap().status(), 200);
    assert_eq!(send("dead-gpt").await.unwrap().status(), 502);
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path, "/v1/chat/completions?api-version=2024-06-01&ok=1",
        "only the harmless parameters pass"
    );
    let _ = s.next_record().await;
    let _ = s.next_record().await;
    let logs = s.stderr();
    assert!(logs.contains("TRACE"), "ran at trace level");
    assert!(
        logs.contains("/v1/chat/completions"),
        "the failure was logged"
    );
    for secret in [
        acme.as_str(),
        encoded.as_str(),
        ACME_OPENAI_KEY,
        SHARED_PROVIDER_KEY,
        MASTER_KEY.split(':').nth(1).unwrap(),
    ] {
        let leak = logs.lines().find(|l| l.contains(secret));
        assert!(
            leak.is_none(),
            "a secret in the trace log: {}",
            leak.unwrap_or_default().replace(secret, "<SECRET>")
        );
    }
    // The client's query string is never logged (the filtered upstream URI may be, at debug).
    let query = logs.lines().find(|l| l.contains("access_token=y"));
    assert!(
        query.is_none(),
        "the client's query string in the log: {query:?}"
    );
}
