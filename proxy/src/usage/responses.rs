//! Usage of OpenAI Responses streams, found without buffering the final event.
//!
//! A Responses stream ends with `response.completed` (or `.incomplete`, `.failed`), whose data
//! repeats the whole response, output included, with `usage` near its end. Parsing that event
//! whole would mean holding the entire output per stream (up to a bound of megabytes), and
//! growing buffers for it at the end of every stream. Instead the raw stream goes through the
//! same incremental `"usage": {...}` finder as non-streamed bodies (see [`super::json`]), and a
//! usage object counts only if it lies inside a final event, by byte offset: the SSE scanner
//! reports every event's range, and the finder where each object ends.
//!
//! The finder sees the stream's raw bytes, so a usage object split over several `data:` lines
//! would include the SSE framing and not parse. Responses providers send each event's JSON on one
//! line; if one did not, that request's usage would be recorded as estimated, never as wrong
//! counts.

use super::counts::RawUsage;
use super::json::JsonUsage;
use super::Usage;
use crate::api::Api;

/// The usage finder of one Responses stream.
#[derive(Debug)]
pub(crate) struct ResponsesUsage {
    json: JsonUsage,
    /// The latest usage object with counts, and the stream offset just past it.
    pending: Option<(Usage, u64)>,
}

impl ResponsesUsage {
    pub(crate) fn new() -> Self {
        Self {
            json: JsonUsage::new(),
            pending: None,
        }
    }

    /// Feeds the next raw bytes, which start at stream offset `base`. Feed it in step with the
    /// scanner: every byte up to an event's end before that event is judged ([`Self::on_event`]),
    /// and none past it, so the one pending object is that event's when it has one.
    pub(crate) fn feed(&mut self, chunk: &[u8], base: u64) {
        let pending = &mut self.pending;
        self.json.feed(chunk, |object, end| {
            if let Some(usage) = RawUsage::parse_counted(object, Api::Responses) {
                *pending = Some((usage, base.saturating_add(end as u64)));
            }
        });
    }

    /// Called for every event the scanner dispatches, with its byte range `[start, end)`:
    /// returns the usage found inside it when it is a final event. An object found at or before
    /// the event's end is consumed either way, so usage inside another event never counts.
    pub(crate) fn on_event(&mut self, start: u64, end: u64, is_final: bool) -> Option<Usage> {
        let (usage, at) = self.pending.filter(|&(_, at)| at <= end)?;
        self.pending = None;
        (is_final && at > start).then_some(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &[u8], split: usize) -> Vec<(u64, u64, Option<Usage>)> {
        let mut tracker = ResponsesUsage::new();
        let mut scanner = crate::sse::SseScanner::with_max_event_bytes(64);
        let mut seen = Vec::new();
        for chunk in stream.chunks(split.max(1)) {
            // In step with the scanner, as the observer feeds it.
            let base = scanner.offset();
            let mut fed = 0;
            scanner.feed(chunk, |ev| {
                let upto = ((ev.end - base) as usize).min(chunk.len());
                if upto > fed {
                    tracker.feed(&chunk[fed..upto], base + fed as u64);
                    fed = upto;
                }
                let is_final = ev.event == b"response.completed";
                seen.push((
                    ev.start,
                    ev.end,
                    tracker.on_event(ev.start, ev.end, is_final),
                ));
            });
            tracker.feed(&chunk[fed..], base + fed as u64);
        }
        seen
    }

    const USAGE: &str = r#"{"input_tokens":12,"input_tokens_details":{"cached_tokens":2},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":42}"#;

    #[test]
    fn usage_counts_only_inside_a_final_event_whatever_the_split() {
        let stream = format!(
            "event: response.created\ndata: {{\"response\":{{\"usage\":null}}}}\n\n\
             event: response.output_item.done\ndata: {{\"item\":{{\"usage\":{USAGE}}}}}\n\n\
             event: response.output_text.delta\ndata: {{\"delta\":\"\\\"usage\\\": {{}}\"}}\n\n\
             event: response.completed\ndata: {{\"response\":{{\"tools\":[{{\"parameters\":{{\"usage\":{{\"type\":\"string\"}}}}}}],\"usage\":{USAGE}}}}}\n\n"
        );
        for split in [1, 2, 3, 7, 64, 4096] {
            let seen = run(stream.as_bytes(), split);
            assert_eq!(seen.len(), 4, "split {split}");
            let found: Vec<_> = seen.iter().map(|s| s.2).collect();
            let want = Usage {
                input_tokens: 12,
                output_tokens: 30,
                cached_tokens: 2,
                cache_write_tokens: 0,
                reasoning_tokens: 5,
            };
            assert_eq!(found, vec![None, None, None, Some(want)], "split {split}");
        }
    }

    #[test]
    fn a_final_event_without_usage_yields_none() {
        let stream = format!(
            "event: response.output_item.done\ndata: {{\"usage\":{USAGE}}}\n\n\
             event: response.completed\ndata: {{\"response\":{{\"usage\":null}}}}\n\n"
        );
        let seen = run(stream.as_bytes(), 5);
        assert_eq!(
            seen.iter().map(|s| s.2).collect::<Vec<_>>(),
            vec![None, None]
        );
    }
}
