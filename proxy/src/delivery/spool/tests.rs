//! Spool tests: recovery after a cut at every byte offset, corruption, replay order, clearing
//! and the slot locks.

use super::*;
use crate::delivery::format::{self, Stop};

/// A recognisable payload per batch (the spool does not interpret it).
fn payload(i: usize) -> Vec<u8> {
    format!(
        "{{\"records\":[{}]}}",
        "{\"n\":1},".repeat(i % 7) + &format!("{{\"batch\":{i}}}")
    )
    .into_bytes()
}

fn open(dir: &Path) -> (Spool, Recovery) {
    open_own(dir).unwrap()
}

/// Every entry from the start, in order.
fn read_all(spool: &Spool) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = spool.start();
    while let Some(entry) = spool.read(at).unwrap() {
        out.push((entry.records, entry.payload));
        at = entry.next;
    }
    out
}

/// Writes `n` batches and returns the file bytes and each entry's end offset.
fn written(n: usize) -> (Vec<u8>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path());
    let mut ends = Vec::new();
    for i in 0..n {
        spool.append(i as u32 + 1, &payload(i)).unwrap();
        ends.push(spool.len());
    }
    let path = spool.path().to_path_buf();
    drop(spool);
    (std::fs::read(path).unwrap(), ends)
}

#[test]
fn appended_batches_come_back_in_order_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, recovery) = open(dir.path());
        assert_eq!(recovery.entries, 0);
        assert_eq!(recovery.stop, Stop::Clean, "a new spool is clean");
        assert!(spool.is_empty());
        for i in 0..5 {
            spool.append(i + 1, &payload(i as usize)).unwrap();
        }
        assert_eq!(spool.records(), 15);
    }
    let (spool, recovery) = open(dir.path());
    assert_eq!(recovery.stop, Stop::Clean);
    assert_eq!((recovery.entries, recovery.records), (5, 15));
    let expected: Vec<_> = (0..5).map(|i| (i as u32 + 1, payload(i))).collect();
    assert_eq!(read_all(&spool), expected);
}

#[test]
fn a_cut_at_every_byte_offset_recovers_exactly_the_complete_prefix() {
    let (bytes, ends) = written(6);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool-0.log");
    for cut in 0..=bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (spool, recovery) = open(dir.path());
        let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
        let entries = read_all(&spool);
        assert_eq!(entries.len(), complete, "cut at {cut}");
        for (i, (records, body)) in entries.iter().enumerate() {
            assert_eq!(
                (*records, body),
                (i as u32 + 1, &payload(i)),
                "cut at {cut}"
            );
        }
        let good = if complete == 0 {
            MAGIC.len() as u64
        } else {
            ends[complete - 1]
        };
        assert_eq!(spool.len(), good, "cut at {cut}");
        drop(spool);
        // The file itself was cut back to the last good entry (or rewritten to the magic).
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good,
            "cut at {cut}"
        );
        let torn = cut as u64 != good && cut > 0;
        if cut as u64 == good {
            assert_eq!(recovery.stop, Stop::Clean, "cut at {cut}");
        } else if torn {
            assert_eq!(recovery.stop, Stop::Torn, "cut at {cut}");
            assert_eq!(recovery.quarantined, None, "a torn tail is not kept");
        }
    }
}

#[test]
fn a_flipped_byte_drops_that_entry_and_everything_after_it_and_keeps_them_aside() {
    let (bytes, ends) = written(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool-0.log");
    // Flip one byte in each entry in turn (header or payload): the entries before survive.
    let starts: Vec<u64> = std::iter::once(MAGIC.len() as u64)
        .chain(ends.iter().copied())
        .collect();
    for (victim, window) in starts.windows(2).enumerate() {
        for at in [window[0], window[0] + 5, window[0] + 9, window[1] - 1] {
            let mut bad = bytes.clone();
            bad[at as usize] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            for old in std::fs::read_dir(dir.path()).unwrap() {
                let old = old.unwrap().path();
                if old.to_string_lossy().contains(".corrupt-") {
                    std::fs::remove_file(old).unwrap();
                }
            }
            let (spool, recovery) = open(dir.path());
            let entries = read_all(&spool);
            assert_eq!(entries.len(), victim, "byte {at} of entry {victim}");
            assert_eq!(spool.len(), window[0]);
            // A flipped length can make the entry look longer than the file: that reads as a
            // torn tail, which is also cut; otherwise it is corruption, kept aside.
            assert_ne!(recovery.stop, Stop::Clean);
            if recovery.stop == Stop::Corrupt {
                let kept = recovery
                    .quarantined
                    .clone()
                    .expect("corrupt tail kept aside");
                assert_eq!(std::fs::read(kept).unwrap(), bad[window[0] as usize..]);
            }
        }
    }
}

#[test]
fn a_foreign_file_is_set_aside_and_the_spool_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spool-0.log"), b"not a spool at all").unwrap();
    let (spool, recovery) = open(dir.path());
    assert!(spool.is_empty());
    assert_eq!(recovery.stop, Stop::Corrupt);
    let kept = recovery.quarantined.unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), b"not a spool at all");
}

#[test]
fn clear_empties_the_file_and_appends_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path());
    spool.append(1, b"{\"records\":[]}").unwrap();
    spool.clear().unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.records(), 0);
    assert_eq!(
        std::fs::metadata(spool.path()).unwrap().len(),
        MAGIC.len() as u64
    );
    spool.append(2, &payload(3)).unwrap();
    drop(spool);
    let (spool, _) = open(dir.path());
    assert_eq!(read_all(&spool), vec![(2, payload(3))]);
}

#[test]
fn read_refuses_an_entry_changed_on_disk_after_opening() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path());
    spool.append(1, &payload(1)).unwrap();
    let mut bytes = std::fs::read(spool.path()).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(spool.path(), &bytes).unwrap();
    assert!(spool.read(spool.start()).is_err());
    let kept = spool.set_aside().unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), bytes);
    assert!(spool.is_empty());
    assert_eq!(spool.read(spool.start()).unwrap(), None);
}

#[test]
fn every_start_takes_the_first_free_slot_beside_the_processes_that_hold_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = open(dir.path());
    assert!(first.path().ends_with("spool-0.log"));
    // A second start while the first still holds its slot (say, it is draining) takes the next.
    let (second, _) = open(dir.path());
    assert!(second.path().ends_with("spool-1.log"));
    drop(first);
    // Slot 0 is free again: the next start takes it, beside the process on slot 1.
    let (third, _) = open(dir.path());
    assert!(third.path().ends_with("spool-0.log"));
    let mut held = vec![second, third];
    for _ in 2..SLOTS {
        held.push(open(dir.path()).0);
    }
    assert!(matches!(open_own(dir.path()), Err(SpoolError::Full(_))));
}

#[test]
fn orphaned_spools_are_adopted_only_once_their_lock_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let (mut old, _) = open(dir.path());
    old.append(3, &payload(0)).unwrap();
    let (new, _) = open_own(dir.path()).unwrap();
    assert!(
        adopt_orphans(dir.path(), new.path()).is_empty(),
        "old is alive"
    );
    drop(old);
    let adopted = adopt_orphans(dir.path(), new.path());
    assert_eq!(adopted.len(), 1);
    assert_eq!(read_all(&adopted[0].0), vec![(3, payload(0))]);
    // While adopted, it is locked: nobody else adopts it.
    assert!(adopt_orphans(dir.path(), new.path()).is_empty());
}

#[test]
fn the_scanner_never_reads_past_a_bad_length() {
    // An entry header claiming a huge payload must be treated as corruption, not allocated.
    let mut data = Vec::new();
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    data.extend_from_slice(&1u32.to_le_bytes());
    data.extend_from_slice(&0u32.to_le_bytes());
    let scan = format::scan(&data);
    assert_eq!(scan.stop, Stop::Corrupt);
    assert_eq!(scan.good_len, 0);
    assert!(format::encode(1, &vec![0; format::MAX_PAYLOAD as usize + 1]).is_none());
}
