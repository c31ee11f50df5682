//! Replaying a recorded response body byte for byte (`x-mock-replay: <file>`), with chosen
//! write boundaries, so a gateway can be tested against real provider recordings.
//!
//! Replay is off until the embedding test enables it with [`MockProvider::set_replay_dir`]
//! (the standalone binary never does), and then only plain file names inside that directory are
//! served: no paths, no dot files, so a request cannot read anything else.
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-replay: NAME` | answer with the bytes of `NAME` (`.sse`: `text/event-stream`, `.json`: `application/json`; a trailing `.gz` adds `content-encoding: gzip` and is served as is) |
//! | `x-mock-replay-status: CODE` | the status to answer with (default 200) |
//! | `x-mock-replay-split: whole\|events\|random:SEED` | one write; one write per SSE event (after each blank line); or writes of 1–200 bytes from a seeded generator |
//!
//! Each write is followed by a flush of the connection, so the gateway sees the boundaries
//! as separate socket writes.
//!
//! [`MockProvider::set_replay_dir`]: super::MockProvider::set_replay_dir

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;

use super::control::ControlError;
use super::stream::Rendered;

/// How a replayed body is cut into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Whole,
    Events,
    Random(u64),
}

/// A body to replay, as a request asked for it.
pub struct Replay {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub gzip: bool,
    pub rendered: Rendered,
}

/// Largest write of a random split.
const MAX_RANDOM_WRITE: u64 = 200;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ControlError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| ControlError(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

/// Whether the request asks for a replay at all.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.contains_key("x-mock-replay")
}

/// Reads the file a request names and cuts it as asked.
pub fn load(headers: &HeaderMap, dir: Option<&Path>) -> Result<Replay, ControlError> {
    let name = header(headers, "x-mock-replay")?.unwrap_or_default();
    let dir = dir.ok_or_else(|| {
        ControlError("x-mock-replay is not enabled on this mock (no replay directory)".to_owned())
    })?;
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(ControlError(
            "header x-mock-replay must be a plain file name".to_owned(),
        ));
    }
    let path: PathBuf = dir.join(name);
    let data = std::fs::read(&path)
        .map_err(|e| ControlError(format!("cannot read replay file {name}: {e}")))?;
    let status = match header(headers, "x-mock-replay-status")? {
        None => StatusCode::OK,
        Some(s) => s
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|c| c.as_u16() >= 200)
            .ok_or_else(|| {
                ControlError("header x-mock-replay-status must be a status 200-599".to_owned())
            })?,
    };
    let split = match header(headers, "x-mock-replay-split")? {
        None | Some("whole") => Split::Whole,
        Some("events") => Split::Events,
        Some(s) => s
            .strip_prefix("random:")
            .and_then(|seed| seed.parse::<u64>().ok())
            .map(Split::Random)
            .ok_or_else(|| {
                ControlError(
                    "header x-mock-replay-split must be whole, events or random:SEED".to_owned(),
                )
            })?,
    };
    let gzip = name.ends_with(".gz");
    let inner = name.strip_suffix(".gz").unwrap_or(name);
    let content_type = if inner.ends_with(".sse") {
        "text/event-stream; charset=utf-8"
    } else {
        "application/json"
    };
    let ends = boundaries(&data, split);
    Ok(Replay {
        status,
        content_type,
        gzip,
        rendered: Rendered::from_ends(Bytes::from(data), ends),
    })
}

/// The end offset of every write.
fn boundaries(data: &[u8], split: Split) -> Vec<usize> {
    let mut ends = Vec::new();
    match split {
        Split::Whole => {}
        Split::Events => {
            let mut at = 0;
            while let Some(i) = memchr::memmem::find(data.get(at..).unwrap_or_default(), b"\n\n") {
                at += i + 2;
                ends.push(at);
            }
        }
        Split::Random(seed) => {
            // SplitMix64: deterministic per seed, so a failing split can be replayed.
            let mut state = seed;
            let mut at = 0usize;
            loop {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let step = usize::try_from(z % MAX_RANDOM_WRITE + 1).unwrap_or(1);
                at = at.saturating_add(step);
                if at >= data.len() {
                    break;
                }
                ends.push(at);
            }
        }
    }
    if ends.last() != Some(&data.len()) {
        ends.push(data.len());
    }
    ends
}

/// The `content-encoding` value of a gzip replay.
pub const GZIP: HeaderValue = HeaderValue::from_static("gzip");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_cover_the_body() {
        let data = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n";
        assert_eq!(boundaries(data, Split::Whole), vec![data.len()]);
        assert_eq!(boundaries(data, Split::Events), vec![18, data.len()]);
        let big = vec![b'x'; 5000];
        let ends = boundaries(&big, Split::Random(7));
        assert_eq!(ends.last(), Some(&5000));
        let mut prev = 0;
        for e in &ends {
            assert!(*e > prev && *e - prev <= 200);
            prev = *e;
        }
        assert_eq!(ends, boundaries(&big, Split::Random(7)));
    }

    #[test]
    fn only_plain_names_are_served() {
        let dir = std::env::temp_dir();
        for bad in ["../etc/passwd", "a/b.sse", ".hidden", ""] {
            let mut h = HeaderMap::new();
            h.insert("x-mock-replay", HeaderValue::from_str(bad).unwrap());
            assert!(load(&h, Some(&dir)).is_err(), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-mock-replay", HeaderValue::from_static("x.sse"));
        assert!(load(&h, None).is_err());
    }
}
