//! Streamed export of an org's raw records as CSV or JSON lines: rows go from the database
//! cursor into bounded body chunks, so memory stays flat whatever the number of rows.

use super::row::{record_from_row, RECORD_COLUMNS};
use super::{to_i64, DbError, Store};
use crate::telemetry::{self, DbOp};
use bytes::Bytes;
use futures_util::StreamExt;
use sluice_wire::UsageRecord;
use std::io;
use tokio::sync::mpsc;

/// Body chunks are sent once they reach this size.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks in flight between the database task and the HTTP body; a slow client therefore
/// slows the cursor instead of growing a buffer.
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The name `format=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
        }
    }
}

/// The CSV header: the wire field names, `meta` as a JSON object.
pub const CSV_HEADER: &str = "id,v,time_ms,org,key_id,provider,model,upstream_model,api,stream,\
status,outcome,input_tokens,output_tokens,cached_tokens,cache_write_tokens,reasoning_tokens,\
estimated,cost_micro_usd,ttft_ms,total_ms,upstream_ms,bytes_in,bytes_out,user,session,feature,\
meta,client_ip\n";

/// Appends one CSV field, quoted (RFC 4180) only when it must be.
fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Leading characters a spreadsheet reads as the start of a formula (OWASP's CSV injection
/// list): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Appends a text field that came from a caller or the configuration (a model name, a tag), so
/// a spreadsheet must never evaluate it: one that starts like a formula is prefixed with a
/// single quote and quoted, as OWASP recommends; anything else is [`csv_field`]. Numbers never
/// go through here, so a negative number would stay a number.
fn csv_text_field(out: &mut Vec<u8>, s: &str) {
    if s.starts_with(FORMULA_STARTS) {
        out.extend_from_slice(b"\"'");
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        csv_field(out, s);
    }
}

/// One value of a CSV line: text is guarded against formula injection, numbers and fixed
/// spellings (ids, booleans, outcomes) are written as they are.
enum Cell {
    Text(String),
    Plain(String),
}

fn csv_line(out: &mut Vec<u8>, r: &UsageRecord) -> Result<(), serde_json::Error> {
    let opt = |s: Option<&str>| s.unwrap_or_default().to_string();
    let optf = |f: Option<f64>| f.map(|f| f.to_string()).unwrap_or_default();
    let meta = if r.meta.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&r.meta)?
    };
    let fields: [Cell; 29] = [
        Cell::Plain(r.id.to_string()),
        Cell::Plain(r.v.to_string()),
        Cell::Plain(r.time_ms.to_string()),
        Cell::Text(opt(r.org.as_deref())),
        Cell::Text(opt(r.key_id.as_deref())),
        Cell::Text(opt(r.provider.as_deref())),
        Cell::Text(opt(r.model.as_deref())),
        Cell::Text(opt(r.upstream_model.as_deref())),
        Cell::Text(r.api.to_string()),
        Cell::Plain(r.stream.to_string()),
        Cell::Plain(r.status.to_string()),
        Cell::Plain(r.outcome.as_str().to_string()),
        Cell::Plain(r.input_tokens.to_string()),
        Cell::Plain(r.output_tokens.to_string()),
        Cell::Plain(r.cached_tokens.to_string()),
        Cell::Plain(r.cache_write_tokens.to_string()),
        Cell::Plain(r.reasoning_tokens.to_string()),
        Cell::Plain(r.estimated.to_string()),
        Cell::Plain(r.cost_micro_usd.to_string()),
        Cell::Plain(optf(r.ttft_ms)),
        Cell::Plain(r.total_ms.to_string()),
        Cell::Plain(optf(r.upstream_ms)),
        Cell::Plain(r.bytes_in.to_string()),
        Cell::Plain(r.bytes_out.to_string()),
        Cell::Text(opt(r.user.as_deref())),
        Cell::Text(opt(r.session.as_deref())),
        Cell::Text(opt(r.feature.as_deref())),
        Cell::Text(meta),
        Cell::Text(opt(r.client_ip.as_deref())),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match f {
            Cell::Text(s) => csv_text_field(out, s),
            Cell::Plain(s) => csv_field(out, s),
        }
    }
    out.push(b'\n');
    Ok(())
}

fn encode(out: &mut Vec<u8>, r: &UsageRecord, format: ExportFormat) -> Result<(), DbError> {
    let res = match format {
        ExportFormat::Jsonl => serde_json::to_writer(&mut *out, r).map(|()| out.push(b'\n')),
        ExportFormat::Csv => csv_line(out, r),
    };
    res.map_err(|e| DbError::Corrupt(format!("encoding record {}: {e}", r.id)))
}

impl Store {
    /// Starts streaming the org's records with `time_ms` in `[from_ms, to_ms)`, oldest first.
    /// A database error mid-stream ends the body with an error, so the client sees a broken
    /// transfer rather than a silently short file.
    pub fn export(
        &self,
        org: String,
        from_ms: u64,
        to_ms: u64,
        format: ExportFormat,
    ) -> mpsc::Receiver<Result<Bytes, io::Error>> {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let sql = format!(
                "SELECT {} FROM records WHERE org = $1 AND time_ms >= $2 AND time_ms < $3 \
                 ORDER BY time_ms, id",
                RECORD_COLUMNS.join(", ")
            );
            let mut rows = sqlx::query(&sql)
                .bind(org.as_str())
                .bind(to_i64(from_ms))
                .bind(to_i64(to_ms))
                .fetch(&pool);
            let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
            if format == ExportFormat::Csv {
                buf.extend_from_slice(CSV_HEADER.as_bytes());
            }
            while let Some(row) = rows.next().await {
                let written = row
                    .map_err(DbError::from)
                    .and_then(|row| record_from_row(&row))
                    .and_then(|r| encode(&mut buf, &r, format));
                if let Err(e) = written {
                    telemetry::count_db_error(DbOp::Export);
                    tracing::error!("export for org {org} failed: {e}");
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    return;
                }
                if buf.len() >= CHUNK_BYTES {
                    let chunk = Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(CHUNK_BYTES + 4096),
                    ));
                    if tx.send(Ok(chunk)).await.is_err() {
                        return; // The client went away; dropping the cursor ends the query.
                    }
                }
            }
            if !buf.is_empty() && tx.send(Ok(Bytes::from(buf))).await.is_err() {
                return;
            }
            // Before `tx` is dropped, which is what ends the body: a client that has read the
            // whole export finds it counted.
            telemetry::count_export();
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        csv_field(&mut out, "plain");
        out.push(b',');
        csv_field(&mut out, "a,\"b\"\nc");
        assert_eq!(out, b"plain,\"a,\"\"b\"\"\nc\"");
    }

    #[test]
    fn header_and_lines_have_the_same_number_of_fields() {
        let line = r#"{"id":"019a4f2e-8c1b-7d2e-9f00-0123456789ab","time_ms":1,"org":"o","key_id":null,"provider":null,"model":null,"upstream_model":null,"api":"x","stream":false,"status":200,"outcome":"ok","input_tokens":1,"output_tokens":2,"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,"estimated":false,"ttft_ms":null,"total_ms":1.5,"upstream_ms":null,"bytes_in":0,"bytes_out":0}"#;
        let r: UsageRecord = serde_json::from_str(line).expect("record");
        let mut out = Vec::new();
        csv_line(&mut out, &r).expect("csv");
        let commas = |s: &[u8]| s.iter().filter(|b| **b == b',').count();
        assert_eq!(commas(&out), commas(CSV_HEADER.as_bytes()));
    }
}
