//! The spool's on-disk format and its reader, kept free of I/O so it can be fuzzed on its own.
//!
//! A spool file is an 8-byte magic followed by entries. Each entry is one batch of usage records:
//!
//! ```text
//! len: u32 LE | records: u32 LE | crc32c(len ‖ records ‖ payload): u32 LE | payload (len bytes)
//! ```
//!
//! The payload is the exact `POST /v1/events` body (`{"records":[…]}`), so a replayed entry is
//! sent byte for byte as it was checksummed. The checksum covers the header fields too, so a
//! flipped bit in a length cannot make the reader accept a shifted payload.
//!
//! Reading stops at the first entry that is incomplete (a torn tail: the process died during the
//! append) or invalid (checksum mismatch, impossible length). Everything from there on is dropped:
//! after a bad entry the next entry boundary is unknown, and guessing one could hand the ledger a
//! corrupted record, which is worse than losing the tail of a spool (the caller keeps the dropped
//! bytes aside for an operator when they were corrupt rather than merely torn).

/// First bytes of every spool file (the last byte is the format version).
pub const MAGIC: [u8; 8] = *b"SLSPOOL\x01";
/// Bytes before an entry's payload.
pub const ENTRY_HEADER: usize = 12;
/// Largest payload accepted: well above the ledger's 16 MiB body limit is never produced, so a
/// larger length can only be corruption (and must not make the reader allocate it).
pub const MAX_PAYLOAD: u32 = 64 << 20;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The checksum of an entry with these header fields and payload.
pub fn checksum(records: u32, payload: &[u8]) -> u32 {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut digest = CRC32C.digest();
    digest.update(&len.to_le_bytes());
    digest.update(&records.to_le_bytes());
    digest.update(payload);
    digest.finalize()
}

/// Encodes one entry (header and payload) for appending. `None` when the payload is too large.
pub fn encode(records: u32, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)?;
    let mut out = Vec::with_capacity(ENTRY_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&checksum(records, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// One entry's header, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub records: u32,
    pub crc: u32,
}

impl Header {
    /// Parses the 12 header bytes (`None` if fewer are given).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let word = |i: usize| -> Option<u32> {
            let b = bytes.get(i..i + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(Self {
            len: word(0)?,
            records: word(4)?,
            crc: word(8)?,
        })
    }
}

/// Why reading stopped before the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every byte belonged to a valid entry.
    Clean,
    /// The last entry is incomplete: a write cut short by a crash.
    Torn,
    /// An entry is complete but invalid (bad checksum or impossible length): corruption.
    Corrupt,
}

/// A valid entry found by [`scan`]: where it starts and how many records it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Offset of the entry's header, relative to the scanned data.
    pub offset: usize,
    pub records: u32,
    /// Payload length.
    pub len: usize,
}

impl Found {
    /// Offset just past this entry.
    pub fn end(&self) -> usize {
        self.offset + ENTRY_HEADER + self.len
    }

    /// The entry's payload within the scanned data.
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        data.get(self.offset + ENTRY_HEADER..self.end())
            .unwrap_or_default()
    }
}

/// The valid prefix of a run of entries (the data after the magic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub entries: Vec<Found>,
    /// Length of the valid prefix: where the file must be truncated.
    pub good_len: usize,
    pub stop: Stop,
}

/// Checks one entry at the start of `data`: its header and payload length if valid and complete.
pub fn check_entry(data: &[u8]) -> Result<(Header, usize), Stop> {
    let Some(header) = Header::parse(data) else {
        return Err(if data.is_empty() {
            Stop::Clean
        } else {
            Stop::Torn
        });
    };
    if header.len > MAX_PAYLOAD {
        return Err(Stop::Corrupt);
    }
    let len = header.len as usize;
    let Some(payload) = data.get(ENTRY_HEADER..ENTRY_HEADER + len) else {
        return Err(Stop::Torn);
    };
    if checksum(header.records, payload) != header.crc {
        return Err(Stop::Corrupt);
    }
    Ok((header, len))
}

/// Reads entries from `data` (the bytes after the magic) until the first incomplete or invalid
/// one.
pub fn scan(data: &[u8]) -> Scan {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let rest = data.get(at..).unwrap_or_default();
        match check_entry(rest) {
            Ok((header, len)) => {
                entries.push(Found {
                    offset: at,
                    records: header.records,
                    len,
                });
                at += ENTRY_HEADER + len;
            }
            Err(stop) => {
                return Scan {
                    entries,
                    good_len: at,
                    stop,
                }
            }
        }
    }
}
