//! Org-admin tokens: an operator creates one for an org; with it the org's own usage and export
//! are readable and nothing else (another org, by parameter or by path, is refused; so is every
//! operator endpoint); a revoked token is refused; the token is shown once, stored hashed, and
//! every step is audited.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger, ADMIN};
use sluice_wire::{AuditAnswer, CreatedOrgToken, OrgTokensAnswer, UsageAnswer};
use std::sync::Arc;

async fn an_org_token_reads_its_own_org_only_until_revoked(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let t = now_ms();
    ledger
        .ingest(&[
            record("acme", t, 10, 5, 7),
            record("acme", t, 1, 1, 1),
            record("beta", t, 99, 99, 99),
        ])
        .await;
    let created: CreatedOrgToken = ledger
        .http
        .post(ledger.url("/v1/org-tokens"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"org": "acme", "name": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        created.token.starts_with("slc_org_") && created.token.len() == 51,
        "{created:?}"
    );
    assert_eq!(
        (created.info.org.as_str(), created.info.name.as_str()),
        ("acme", "alice")
    );
    let token = created.token.clone();
    let get = |path: &str| ledger.http.get(ledger.url(path)).bearer_auth(&token).send();

    // Its own org: by name, or without naming it.
    for path in ["/v1/usage?org=acme", "/v1/usage"] {
        let usage: UsageAnswer = get(path).await.unwrap().json().await.unwrap();
        assert_eq!(
            (usage.org.as_deref(), usage.total.requests),
            (Some("acme"), 2),
            "{path}"
        );
    }
    let export = get("/v1/orgs/acme/export?format=csv").await.unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(
        export.text().await.unwrap().lines().count(),
        3,
        "a header and two records"
    );
    // Another org, by parameter or path (an edited request): refused.
    for path in ["/v1/usage?org=beta", "/v1/orgs/beta/export"] {
        assert_eq!(get(path).await.unwrap().status(), 403, "{path}");
    }
    // Operator endpoints do not take it.
    for path in [
        "/v1/audit",
        "/v1/flags",
        "/v1/suspensions",
        "/v1/org-tokens",
        "/v1/spend",
    ] {
        assert_eq!(get(path).await.unwrap().status(), 401, "{path}");
    }
    let erase = ledger
        .http
        .delete(ledger.url("/v1/orgs/acme"))
        .bearer_auth(&token)
        .send();
    assert_eq!(erase.await.unwrap().status(), 401);
    // A made-up token of the same shape is refused.
    let forged = ledger
        .http
        .get(ledger.url("/v1/usage"))
        .bearer_auth(format!("slc_org_{}", "A".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Listed without the token; stored only as its digest.
    let listed: OrgTokensAnswer = ledger.admin_json("/v1/org-tokens?org=acme").await;
    assert_eq!(listed.tokens, std::slice::from_ref(&created.info));
    assert!(!serde_json::to_string(&listed).unwrap().contains(&token));

    let revoke = |id: &str| {
        ledger
            .http
            .delete(ledger.url(&format!("/v1/org-tokens/{id}")))
            .bearer_auth(ADMIN)
            .send()
    };
    assert_eq!(revoke(&created.info.id).await.unwrap().status(), 204);
    assert_eq!(revoke(&created.info.id).await.unwrap().status(), 404);
    assert_eq!(get("/v1/usage").await.unwrap().status(), 401, "revoked");

    let audit: AuditAnswer = ledger.admin_json("/v1/audit").await;
    let seen: Vec<(&str, &str)> = audit
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("token.created", "operator"),
            ("org.export", "org-admin acme/alice"),
            ("token.revoked", "operator"),
        ]
    );
    assert!(
        !serde_json::to_string(&audit).unwrap().contains(&token),
        "no token in the audit log"
    );
    for bad in [
        serde_json::json!({"org": "a b", "name": "x"}),
        serde_json::json!({"org": "acme", "name": ""}),
    ] {
        let resp = ledger
            .http
            .post(ledger.url("/v1/org-tokens"))
            .bearer_auth(ADMIN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}
both_backends!(an_org_token_reads_its_own_org_only_until_revoked);
