//! Hot reload against a real process: SIGHUP and file changes swap keys while streams that
//! started on the old configuration run to their end; bad configurations are refused and counted;
//! `sluice-proxy check` tells a good file from a bad one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::config::{entry, new_key};
use common::*;

/// Content chunks and the gap between them in the slow streams kept open across a reload.
const CHUNKS: usize = 20;
const GAP_MS: &str = "50";
const STREAMS: usize = 3;

async fn status(s: &Sluice, key: &str) -> u16 {
    s.post_chat_as(key, &[], &chat("mock-gpt", false))
        .await
        .status()
        .as_u16()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Shared scenario: keys swapped under open streams, then two bad files refused. `trigger`
/// makes sluice notice the file (a SIGHUP, or nothing when the watch does it).
async fn swap_keys_then_refuse_bad_files(s: &mut Sluice, removed: &str, added: &str, hup: bool) {
    let trigger = |s: &Sluice| {
        if hup {
            s.proc.signal(Signal::SIGHUP);
        }
    };
    assert_eq!(s.proc.metric("sluice_config_generation").await, 1.0);
    assert_eq!(status(s, removed).await, 200);
    assert_eq!(status(s, added).await, 401);
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(open_stream(s, removed, CHUNKS, GAP_MS).await);
    }

    // Remove one key, add another.
    let mut cfg = s.cfg.clone();
    cfg.extra = entry(added, "acme", "[]", None);
    s.write_config(&cfg.render());
    trigger(s);
    s.proc
        .wait_stderr("the reload", |t| {
            t.contains("config reloaded from") && t.contains("(generation 2)")
        })
        .await;
    assert_eq!(status(s, removed).await, 401, "removed key refused at once");
    assert_eq!(status(s, added).await, 200, "added key works");
    assert_eq!(s.proc.metric("sluice_config_generation").await, 2.0);
    assert_eq!(
        s.proc
            .metric("sluice_config_reloads_total{result=\"ok\"}")
            .await,
        1.0
    );
    // The streams that started under the removed key still deliver every chunk.
    for stream in streams {
        let body = tokio::time::timeout(WAIT, stream).await.unwrap().unwrap();
        assert_chat_stream_complete(&body, CHUNKS);
    }

    // A syntax error is refused; the running config keeps serving.
    refuse(s, "[[keys]\norg = \n", 1, hup, added).await;
    assert_eq!(status(s, removed).await, 401);

    // So is an unknown field.
    let mut typo = cfg.clone();
    typo.server.push_str("\nmax_body_bytez = 10\n");
    let log = refuse(s, &typo.render(), 2, hup, added).await;
    assert_eq!(s.proc.metric("sluice_config_generation").await, 2.0);
    let line = log
        .lines()
        .rfind(|l| l.contains("failed, keeping generation 2"))
        .unwrap();
    assert!(line.contains("max_body_bytez"), "names the field: {line}");
    assert!(
        line.contains(&s.config_path().display().to_string()),
        "names the file: {line}"
    );
    for secret in [removed, added, MASTER_KEY] {
        assert!(!log.contains(secret), "a secret reached the log");
    }

    // An emptied file (a truncated write, a botched template) would answer 401 to everyone: it
    // is refused and counted like any bad file, and the running keys keep working.
    let log = refuse(s, "", 3, hup, added).await;
    assert!(log.contains("no [[providers]]"), "{log}");
}

/// Writes `text`, makes sluice notice it (a SIGHUP when `hup`), and waits for the `n`th refused
/// reload of the scenario: the refusal is counted and the running configuration keeps serving
/// `key`. Returns the log so far.
async fn refuse(s: &mut Sluice, text: &str, n: u8, hup: bool, key: &str) -> String {
    s.write_config(text);
    if hup {
        s.proc.signal(Signal::SIGHUP);
    }
    let log = s
        .proc
        .wait_stderr("a refused reload", |t| {
            count(t, "failed, keeping generation 2") == usize::from(n)
        })
        .await;
    let errors = "sluice_config_reloads_total{result=\"error\"}";
    assert_eq!(s.proc.metric(errors).await, f64::from(n));
    assert_eq!(status(s, key).await, 200);
    log
}

#[tokio::test]
async fn sighup_swaps_keys_under_open_streams_and_refuses_bad_files() {
    let removed = new_key();
    let added = new_key();
    let mut s = Sluice::start_with_args(
        |c| {
            // Only SIGHUP may trigger these reloads.
            c.server = "watch = false".into();
            c.extra = entry(&removed, "acme", "[]", None);
        },
        &["--admin-listen", "127.0.0.2:0"],
    )
    .await;
    swap_keys_then_refuse_bad_files(&mut s, &removed, &added, true).await;
    assert!(s.stderr().contains("(SIGHUP)"));
    assert!(!s.stderr().contains("(file change)"));
}

#[tokio::test]
async fn file_change_swaps_keys_under_open_streams_and_refuses_bad_files() {
    let removed = new_key();
    let added = new_key();
    let mut s = Sluice::start_with_args(
        |c| c.extra = entry(&removed, "acme", "[]", None),
        &["--admin-listen", "127.0.0.2:0"],
    )
    .await;
    swap_keys_then_refuse_bad_files(&mut s, &removed, &added, false).await;
    assert!(!s.stderr().contains("(SIGHUP)"));
}

#[tokio::test]
async fn admin_listener_serves_health_metrics_and_build_info() {
    let s = Sluice::start_with_args(|_| {}, &["--admin-listen", "127.0.0.2:0"]).await;
    assert_eq!(s.proc.admin_get("/healthz").await, (200, "ok\n".into()));
    let (code, text) = s.proc.admin_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains("sluice_build_info{version=\""), "{text}");
    assert!(
        text.contains("sluice_config_reloads_total{result=\"error\"} 0"),
        "{text}"
    );
    assert_eq!(s.proc.admin_get("/nope").await.0, 404);
}

#[test]
fn check_accepts_a_good_file_and_explains_a_bad_one() {
    let serves = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                  auth = \"none\"\n[[models]]\nname = \"m\"\nprovider = \"p\"\n[[orgs]]\nid = \"o\"\n";
    let key = format!(
        "[[keys]]\ndigest = \"sha256:{}\"\norg = \"o\"\n",
        "ab".repeat(32)
    );
    let good =
        format!("[server]\nlisten = [\"127.0.0.1:8080\"]\ngrace_period = \"30s\"\n{serves}{key}");
    let (ok, out, err) = check_config(&good, MASTER_KEY);
    assert!(ok, "{err}");
    assert!(out.contains(": ok"), "{out}");

    let (ok, _, err) = check_config("", MASTER_KEY);
    assert!(!ok, "an empty file is not a configuration");
    assert!(err.contains("no [[providers]]"), "{err}");
    let (ok, _, err) = check_config(serves, MASTER_KEY);
    assert!(!ok, "no key at all needs saying so");
    assert!(err.contains("allow_no_keys"), "{err}");
    assert!(check_config(&format!("allow_no_keys = true\n{serves}"), MASTER_KEY).0);
    let (ok, _, err) = check_config(&good.replace("org = \"o\"", "org = \"ghost\""), MASTER_KEY);
    assert!(!ok, "a key of an undefined org");
    assert!(err.contains("ghost"), "{err}");

    let (ok, _, err) = check_config("[server\n", MASTER_KEY);
    assert!(!ok);
    assert!(err.contains("invalid TOML in"), "{err}");

    let (ok, _, err) = check_config("[server]\nlisten_on = [\"127.0.0.1:8080\"]\n", MASTER_KEY);
    assert!(!ok);
    assert!(
        err.contains("unknown field") && err.contains("listen_on"),
        "{err}"
    );

    let (ok, _, err) = check_config("[server]\nshutdown_timeout = \"later\"\n", MASTER_KEY);
    assert!(!ok);
    assert!(err.contains("server.shutdown_timeout"), "{err}");
}
