//! Authentication: the ingest token opens ingest (and the spend feed), the admin token the rest,
//! and anything else is a 401 before a body is read.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger, ADMIN, INGEST};
use reqwest::Method;
use std::sync::Arc;

async fn status(ledger: &Ledger, method: Method, path: &str, token: Option<&str>) -> u16 {
    let mut req = ledger.http.request(method.clone(), ledger.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if method == Method::POST {
        req = req.body(r#"{"records": []}"#);
    }
    req.send().await.expect("request").status().as_u16()
}

async fn tokens_are_checked_per_endpoint(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    ledger.ingest(&[record("auth", now_ms(), 1, 1, 1)]).await;
    let admin_only = [
        (Method::GET, "/v1/usage?org=auth"),
        (Method::GET, "/v1/orgs/auth/export"),
        (Method::DELETE, "/v1/orgs/nobody"),
    ];
    for (method, path) in &admin_only {
        for token in [None, Some("wrong"), Some(INGEST), Some("")] {
            assert_eq!(
                status(&ledger, method.clone(), path, token).await,
                401,
                "{method} {path} with {}",
                if token == Some(INGEST) {
                    "the ingest token"
                } else {
                    "a bad token"
                }
            );
        }
        assert_eq!(
            status(&ledger, method.clone(), path, Some(ADMIN)).await,
            200
        );
    }
    for token in [
        None,
        Some("wrong"),
        Some(ADMIN),
        Some(&INGEST[..INGEST.len() - 1]),
    ] {
        assert_eq!(
            status(&ledger, Method::POST, "/v1/events", token).await,
            401
        );
    }
    assert_eq!(
        status(&ledger, Method::POST, "/v1/events", Some(INGEST)).await,
        200
    );
    for token in [INGEST, ADMIN] {
        assert_eq!(
            status(&ledger, Method::GET, "/v1/spend", Some(token)).await,
            200
        );
    }
    assert_eq!(
        status(&ledger, Method::GET, "/v1/spend", Some("wrong")).await,
        401
    );
    assert_eq!(status(&ledger, Method::GET, "/healthz", None).await, 200);

    // A 401 says what is expected and never echoes a token.
    let resp = ledger
        .http
        .get(ledger.url("/v1/usage"))
        .bearer_auth("wrong-secret")
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let body = resp.text().await.expect("body");
    assert!(!body.contains("wrong-secret") && !body.contains(ADMIN));

    // The unauthenticated body is not even read: a huge one is refused with 401, not 413.
    let resp = ledger
        .http
        .post(ledger.url("/v1/events"))
        .body(vec![b' '; 20 << 20])
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 401);
    }
}
both_backends!(tokens_are_checked_per_endpoint);
