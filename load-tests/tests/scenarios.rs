//! The scenario suite (`load-tests/scenarios/*.toml`), each run end to end against real
//! processes; the reports are printed (run with `--nocapture` to see them) and every
//! scenario's invariants are asserted. `SLUICE_LOAD_SCALE=full` (`load-tests/run.sh --full`)
//! runs the larger sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use sluice_load_tests::scenario::{load_dir, run, Scale};
use std::path::Path;

/// Thousands of streams need thousands of descriptors in this process (the clients and the
/// in-process mock): the soft limit is raised to the hard one, as sluice does for itself.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_holds_its_invariants() {
    raise_fd_limit();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let only = std::env::var("SLUICE_SCENARIO").ok();
    let scale = Scale::from_env();
    let mut ran = 0;
    // A broken scenario does not stop the others: every break is listed at the end.
    let mut broke = Vec::new();
    for s in load_dir(&dir) {
        if only.as_deref().is_some_and(|o| o != s.name) {
            continue;
        }
        match run(&s, scale).await {
            Some(Ok(report)) => eprintln!("{report}"),
            Some(Err(report)) => {
                eprintln!("{report}");
                broke.push(report);
            }
            None => {}
        }
        ran += 1;
    }
    assert!(ran > 0, "no scenario ran");
    assert!(
        broke.is_empty(),
        "{} scenario(s) broke:\n\n{}",
        broke.len(),
        broke.join("\n")
    );
}
