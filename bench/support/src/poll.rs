//! Bounded polls of an observable condition: the only waiting a test does besides waiting for a
//! process's own announcement. The interval is a poll rate, never a synchronisation: the
//! condition is re-checked each time and the bound turns "never" into a named failure.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is re-checked.
const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` until it yields a value, at most `within`; panics naming `what` otherwise.
/// For async tests (the poll sleeps on the runtime, so in-process servers keep serving).
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Polls `cond` on this thread until it holds or `within` passes; returns whether it held (the
/// caller asserts, with the state it wants to see in the failure). For synchronous tests.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(INTERVAL);
    }
    cond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_first_value() {
        let mut n = 0;
        let got = wait_for("the third poll", Duration::from_secs(5), || {
            n += 1;
            let v = (n == 3).then_some(n);
            async move { v }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for nothing at all")]
    async fn wait_for_names_what_never_came() {
        wait_for("nothing at all", Duration::from_millis(30), || async {
            None::<()>
        })
        .await;
    }

    #[test]
    fn eventually_says_whether_the_condition_held() {
        let mut n = 0;
        assert!(eventually(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
        assert!(!eventually(Duration::from_millis(30), || false));
    }
}
