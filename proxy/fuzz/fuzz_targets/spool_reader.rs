//! Fuzz target: the spool reader never panics, never reads past its input, and accepts only
//! entries whose checksum holds; appending valid entries after arbitrary bytes never makes the
//! reader accept more than the valid prefix it found, and valid entries always read back.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run spool_reader corpus/spool_reader spool_seeds -- -max_total_time=60`
//! (new inputs go to the first directory, which is git-ignored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy_fuzz::spool_format::{checksum, encode, scan, Header, Stop, ENTRY_HEADER};

fuzz_target!(|data: &[u8]| {
    let found = scan(data);
    assert!(found.good_len <= data.len());
    let mut at = 0;
    for entry in &found.entries {
        // Entries are contiguous from the start and each one checks out.
        assert_eq!(entry.offset, at);
        let header = Header::parse(&data[at..]).expect("a found entry has a header");
        assert_eq!(checksum(header.records, entry.payload(data)), header.crc);
        at = entry.end();
    }
    assert_eq!(at, found.good_len);
    if found.stop == Stop::Clean {
        assert_eq!(found.good_len, data.len());
    }

    // Re-encoding the valid prefix's entries reproduces its bytes exactly.
    let mut rebuilt = Vec::new();
    for entry in &found.entries {
        rebuilt.extend(encode(entry.records, entry.payload(data)).expect("small payload"));
    }
    assert_eq!(rebuilt, &data[..found.good_len]);

    // Using the input as a payload: an entry written whole always reads back whole, and any
    // cut of it is a torn tail that yields nothing.
    if let Some(whole) = encode(data.len() as u32, data) {
        let back = scan(&whole);
        assert_eq!(back.stop, Stop::Clean);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].payload(&whole), data);
        let cut = data.first().map_or(0, |b| usize::from(*b)) % whole.len();
        let torn = scan(&whole[..cut]);
        assert!(torn.entries.is_empty());
        assert_eq!(torn.stop, if cut == 0 { Stop::Clean } else { Stop::Torn });
        assert!(cut < ENTRY_HEADER + data.len());
    }
});
