//! The shared limits' Redis side against a real `redis-server`, without a sluice process: the
//! lease scripts' semantics (grants, give-backs, debt, concurrency leases expiring by TTL), a
//! password-protected server and a TLS-only one signed by a private CA.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use sluice_proxy::config::limits::RedisPassword;
use sluice_proxy::config::RedisSettings;
use sluice_proxy::governance::global::store::Store;
use sluice_test_support::redis::Redis;
use sluice_test_support::wait_for;
use std::time::Duration;

/// Bound for anything a test waits on.
const WAIT: Duration = Duration::from_secs(20);

/// The lease script's semantics against the real server: partial grants at the quota, give-
/// backs within the window, debt carried into the next window, and concurrency leases that
/// expire by TTL when their replica stops renewing.
#[tokio::test]
async fn the_lease_scripts_grant_give_back_carry_debt_and_expire() {
    let Some(redis) = Redis::start() else { return };
    let store = Store::new(&RedisSettings {
        url: redis.url(),
        username: None,
        password: None,
        ca_pem: None,
        timeout: Duration::from_secs(5),
        lease_ttl: Duration::from_millis(300),
        idle_return: Duration::from_secs(1),
    })
    .unwrap();
    let period = Duration::from_secs(2);
    let a = store.lease("k", period, 10, 4, (0, 0), 0).await.unwrap();
    assert_eq!((a.granted, a.pool), (4, 6));
    let b = store.lease("k", period, 10, 10, (0, 0), 0).await.unwrap();
    if b.window == a.window {
        assert_eq!((b.granted, b.pool), (6, 0), "only what is left");
        let c = store
            .lease("k", period, 10, 0, (3, b.window), 5)
            .await
            .unwrap();
        assert_eq!(c.pool, -2, "3 back, 5 of debt");
        let next = wait_for("the next window", WAIT, || async {
            let r = store.lease("k", period, 10, 0, (0, 0), 0).await.unwrap();
            (r.window > c.window).then_some(r)
        })
        .await;
        if next.window == c.window + 1 {
            assert_eq!(
                next.pool, 8,
                "the debt of 2 carries over, the rest does not"
            );
        }
    }
    // Concurrency: two replicas share a cap of 10; one stops renewing.
    assert_eq!(
        store
            .slots("c", "a", 6, 0, 10, Duration::from_millis(300))
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store
            .slots("c", "b", 10, 0, 10, Duration::from_secs(30))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .slots("c", "b", 10, 5, 10, Duration::from_secs(30))
            .await
            .unwrap(),
        5,
        "at least what it runs"
    );
    wait_for("a's lease to expire", WAIT, || async {
        let held = store
            .slots("c", "b", 10, 0, 10, Duration::from_secs(30))
            .await
            .unwrap();
        (held == 10).then_some(())
    })
    .await;
}

/// A password-protected Redis: the right password connects; with a wrong one every call fails
/// with an error that names neither password.
#[tokio::test]
async fn a_password_authenticates_and_never_appears_in_errors() {
    let Some(redis) = Redis::start_with(&["--requirepass", "right-pw-0001"]) else {
        return;
    };
    let settings = |pw: &str| RedisSettings {
        url: redis.url(),
        username: None,
        password: Some(RedisPassword::new(pw)),
        ca_pem: None,
        timeout: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(10),
        idle_return: Duration::from_secs(1),
    };
    let good = Store::new(&settings("right-pw-0001")).unwrap();
    good.ping().await.unwrap();
    let bad = Store::new(&settings("wrong-pw-0002")).unwrap();
    let err = bad.ping().await.unwrap_err().to_string();
    assert!(
        !err.contains("right-pw") && !err.contains("wrong-pw"),
        "{err}"
    );
    assert!(format!("{:?}", settings("wrong-pw-0002")).contains("RedisPassword(..)"));
}

/// A TLS-only Redis whose certificate a private CA signed: `rediss://` with that CA
/// (`limits.ca_file`) connects; without it the server is not trusted and no call succeeds.
#[tokio::test]
async fn a_tls_redis_signed_by_a_private_ca_is_reached_with_its_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let Some(redis) = Redis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &path("cert.pem"),
        "--tls-key-file",
        &path("key.pem"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]) else {
        return;
    };
    let settings = |ca_pem: Option<Vec<u8>>| RedisSettings {
        url: format!("rediss://127.0.0.1:{tls_port}"),
        username: None,
        password: None,
        ca_pem,
        timeout: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(10),
        idle_return: Duration::from_secs(1),
    };
    let trusted = Store::new(&settings(Some(ca.pem().into_bytes()))).unwrap();
    trusted.ping().await.unwrap();
    let leased = trusted
        .lease("k", Duration::from_secs(60), 10, 3, (0, 0), 0)
        .await
        .unwrap();
    assert_eq!(leased.granted, 3);
    let untrusted = Store::new(&settings(None)).unwrap();
    assert!(
        untrusted.ping().await.is_err(),
        "a server no trusted root signed"
    );
    drop(redis);
}
