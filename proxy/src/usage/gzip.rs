//! Usage of a gzip-encoded response (a provider that ignores `accept-encoding: identity`),
//! observed through a streaming decoder on the side while the client gets the original bytes.
//!
//! Each compressed chunk is decoded as it passes, and the decoded pieces (at most the decoder's
//! internal buffer, 32 KiB, at a time) are handed to an ordinary observer and dropped, so memory
//! stays bounded whatever the response size. The total decoded is capped as well, so a
//! decompression bomb costs at most [`MAX_DECODED`] bytes of inflate work: past it, or on a
//! corrupt stream, observation stops and the request's usage is estimated as for a cut stream.
//! Only this path allocates per chunk (one `Bytes` per decoded piece); plain responses never
//! come here.

use std::io::{self, Write};

use bytes::Bytes;
use flate2::write::GzDecoder;

use super::UsageObserver;

/// Decoded bytes observed at most; real responses are far smaller (a long stream is a few MiB).
pub(crate) const MAX_DECODED: u64 = 256 << 20;

/// Receives the decoder's output and feeds it to the inner observer.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) inner: UsageObserver,
    total: u64,
    cap: u64,
}

impl Write for Decoded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.total = self.total.saturating_add(buf.len() as u64);
        if self.total > self.cap {
            return Err(io::Error::other(
                "decoded response exceeds the observation cap",
            ));
        }
        let mut piece = Some(Bytes::copy_from_slice(buf));
        self.inner.filter(&mut piece, false);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The side decoder of one gzip response.
pub(crate) struct GzipObserver {
    decoder: GzDecoder<Decoded>,
    /// The stream was corrupt or over the cap: nothing more is decoded.
    stopped: bool,
    finished: bool,
}

impl std::fmt::Debug for GzipObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipObserver")
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl GzipObserver {
    /// A decoder that stops observing after `cap` decoded bytes.
    pub(crate) fn with_cap(inner: UsageObserver, cap: u64) -> Self {
        Self {
            decoder: GzDecoder::new(Decoded {
                inner,
                total: 0,
                cap,
            }),
            stopped: false,
            finished: false,
        }
    }

    /// Observes one compressed chunk; the chunk itself is never touched.
    pub(crate) fn feed(&mut self, chunk: Option<&Bytes>, end_of_stream: bool) {
        if let (Some(chunk), false) = (chunk, self.stopped) {
            if self.decoder.write_all(chunk).is_err() {
                self.stopped = true;
            }
        }
        if end_of_stream && !self.finished {
            self.finished = true;
            if !self.stopped {
                // Flushes what the decoder still holds; a truncated member just ends here.
                let _ = self.decoder.try_finish();
            }
            self.decoder.get_mut().inner.filter(&mut None, true);
        }
    }

    pub(crate) fn inner(&self) -> &UsageObserver {
        &self.decoder.get_ref().inner
    }
}
