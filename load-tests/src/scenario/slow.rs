//! Slow clients (slowloris): connections that send a request header one byte at a time, which
//! sluice must cut by its header deadline while good clients are served. Hand-written over raw
//! TCP: an HTTP client library never sends a request this slowly.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What happened to the slow connections.
#[derive(Debug, Default, Clone)]
pub struct SlowOutcome {
    pub opened: usize,
    /// Closed (or answered and closed) by sluice.
    pub cut: usize,
    /// Still open when the bound passed.
    pub survived: usize,
    /// Time from connect to the cut, sorted (ms).
    pub cut_after_ms: Vec<u64>,
}

/// Opens `n` connections to `addr` (`host:port`) and trickles one byte of a never-ending
/// header every `every` on each, until sluice closes it or `bound` passes.
pub async fn trickle(addr: &str, n: usize, every: Duration, bound: Duration) -> SlowOutcome {
    let tasks = (0..n).map(|_| async move {
        let started = Instant::now();
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            return None;
        };
        let header = b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nX-Slow: ";
        let mut sent = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            if started.elapsed() > bound {
                return Some(None);
            }
            let byte = header.get(sent).copied().unwrap_or(b'a');
            if conn.write_all(&[byte]).await.is_err() {
                return Some(Some(started.elapsed()));
            }
            sent += 1;
            // Waits `every` for sluice to say anything; an answer or EOF ends the connection.
            match tokio::time::timeout(every, conn.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Some(Some(started.elapsed())),
                Ok(Ok(_)) => {
                    // An error answer (408): read to EOF.
                    let _ = tokio::time::timeout(bound, async {
                        while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    return Some(Some(started.elapsed()));
                }
                Err(_) => {}
            }
        }
    });
    let results = futures_util::future::join_all(tasks).await;
    let mut out = SlowOutcome::default();
    for r in results {
        match r {
            None => {}
            Some(None) => {
                out.opened += 1;
                out.survived += 1;
            }
            Some(Some(after)) => {
                out.opened += 1;
                out.cut += 1;
                out.cut_after_ms.push(after.as_millis() as u64);
            }
        }
    }
    out.cut_after_ms.sort_unstable();
    out
}
