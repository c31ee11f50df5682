//! The dead-letter file: usage records the ledger will not take, set aside in the spool
//! directory (`dead-letter.jsonl`) so they neither block the records behind them nor are lost.
//!
//! One JSON object per line and per record: `{"dead_lettered_ms":…,"reason":"…","record":{…}}`,
//! the record exactly as it was sent, so an operator can inspect it and replay it (for example
//! `jq -c .record dead-letter.jsonl`, wrapped in `{"records":[…]}`, posted to `/v1/events`).
//! Records hold ids, counts and bounded tags, never content or keys, and so does this file.
//!
//! Every process of a spool directory appends to the same file: it is opened with `O_APPEND`
//! and each append is one `write` of whole lines followed by `fsync`, so lines from two
//! processes never interleave.

use serde::Serialize;
use serde_json::value::RawValue;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file name inside the spool directory.
pub const FILE_NAME: &str = "dead-letter.jsonl";

#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: PathBuf,
}

/// One line of the file.
#[derive(Serialize)]
struct Line<'a> {
    dead_lettered_ms: u64,
    reason: &'a str,
    record: &'a RawValue,
}

/// A batch body as the worker holds it, read back just enough to pick records out.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

impl DeadLetter {
    pub fn new(spool_dir: &Path) -> Self {
        Self {
            path: spool_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the records of `body` (a `POST /v1/events` body) for which `reason_of` (given
    /// the record's index) names a reason; returns how many were written.
    pub fn append(
        &self,
        now: SystemTime,
        body: &[u8],
        mut reason_of: impl FnMut(usize) -> Option<String>,
    ) -> std::io::Result<u64> {
        let parsed: Body<'_> = serde_json::from_slice(body)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let dead_lettered_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut out = Vec::new();
        let mut written = 0;
        for (index, record) in parsed.records.into_iter().enumerate() {
            let Some(reason) = reason_of(index) else {
                continue;
            };
            let line = Line {
                dead_lettered_ms,
                reason: &reason,
                record,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.push(b'\n');
            written += 1;
        }
        if written == 0 {
            return Ok(0);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&out)?;
        file.sync_data()?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_records_are_appended_one_per_line_as_they_were_sent() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::new(dir.path());
        let body = br#"{"records":[{"id":"a","n":1},{"id":"b","model":"x\u0000"},{"id":"c"}]}"#;
        let now = UNIX_EPOCH + std::time::Duration::from_millis(42);
        let one = |i: usize| (i == 1).then(|| "rejected: bad".to_string());
        assert_eq!(dl.append(now, body, one).unwrap(), 1);
        let all = |_| Some("refused".to_string());
        assert_eq!(dl.append(now, body, all).unwrap(), 3);
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["record"]["id"], "b");
        assert_eq!(lines[0]["record"]["model"], "x\u{0}");
        assert_eq!(lines[0]["reason"], "rejected: bad");
        assert_eq!(lines[0]["dead_lettered_ms"], 42);
        let ids: Vec<_> = lines[1..]
            .iter()
            .map(|l| l["record"]["id"].clone())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(dl.append(now, b"not json", all).is_err());
    }
}
