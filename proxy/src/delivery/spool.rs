//! The spool: an append-only file of record batches the ledger has not acknowledged yet, with its
//! lock. See [`format`](super::format) for the bytes.
//!
//! Appends are fsync'd one batch at a time, so a batch the worker took from memory is on disk
//! before anything else happens to it. Opening a spool recovers it: the valid prefix is kept, a
//! torn tail is cut off, and a corrupt tail is copied aside (`<name>.corrupt-<unix ms>`) before it
//! is cut off, so nothing an operator might still want is destroyed silently. The file is emptied
//! only once every entry in it was acknowledged ([`Spool::clear`]).
//!
//! # Slots and locks
//! A spool directory holds up to [`SLOTS`] spools, `spool-<n>.log`, each guarded by an exclusive
//! `flock` on `spool-<n>.lock` (released by the kernel when the process dies, so a crash never
//! leaves a stale lock). Every start takes the first free slot: a new process (a plain restart
//! or a graceful upgrade) runs beside an old one that still holds its slot while it drains, and
//! adopts the old one's spool once its lock is released (see [`adopt_orphans`]).

use super::format::{self, Stop, ENTRY_HEADER, MAGIC};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Spools per directory: one per process that may run at once during upgrades.
pub const SLOTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("spool directory {0}: every slot is in use")]
    Full(String),
    #[error("spool {0}: {1}")]
    Io(String, std::io::Error),
    #[error("spool {0}: a batch of {1} bytes is too large for one entry")]
    TooLarge(String, usize),
}

/// What opening a spool found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid entries kept.
    pub entries: usize,
    /// Records in those entries.
    pub records: u64,
    /// Bytes cut off the end.
    pub dropped_bytes: u64,
    pub stop: Stop,
    /// Where a corrupt tail was copied.
    pub quarantined: Option<PathBuf>,
}

/// One valid entry read back for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub records: u32,
    /// The `POST /v1/events` body.
    pub payload: Vec<u8>,
    /// Offset just past this entry.
    pub next: u64,
}

/// An open, locked spool file.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Length of the valid content; appends go here.
    end: u64,
    records: u64,
    /// Held for the life of the spool; dropping it releases the slot.
    _lock: Flock<File>,
}

fn slot_paths(dir: &Path, slot: usize) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("spool-{slot}.log")),
        dir.join(format!("spool-{slot}.lock")),
    )
}

/// Tries to take a slot's lock without waiting: `Ok(None)` when another process holds it.
fn try_lock(lock_path: &Path) -> Result<Option<Flock<File>>, SpoolError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| SpoolError::Io(lock_path.display().to_string(), e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(SpoolError::Io(
            lock_path.display().to_string(),
            std::io::Error::from(errno),
        )),
    }
}

/// Creates the spool directory if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    std::fs::create_dir_all(dir).map_err(|e| SpoolError::Dir(dir.display().to_string(), e))
}

/// Takes this process's slot: the first free one. A plain start and a graceful upgrade take a
/// slot the same way, so a process started while the previous one still drains its spool (a
/// restart by a service manager, or an upgrade) runs beside it and adopts the old spool once its
/// lock is released; two processes never write one spool.
pub fn open_own(dir: &Path) -> Result<(Spool, Recovery), SpoolError> {
    ensure_dir(dir)?;
    for slot in 0..SLOTS {
        let (log, lock) = slot_paths(dir, slot);
        if let Some(held) = try_lock(&lock)? {
            return Spool::open_locked(log, held);
        }
    }
    Err(SpoolError::Full(dir.display().to_string()))
}

/// Opens every other slot whose lock is free and whose spool holds entries: spools left by a
/// process that has exited (an upgraded-away or crashed one), to be replayed and emptied.
pub fn adopt_orphans(dir: &Path, own: &Path) -> Vec<(Spool, Recovery)> {
    let mut adopted = Vec::new();
    for slot in 0..SLOTS {
        let (log, lock) = slot_paths(dir, slot);
        if log == own || !log.exists() {
            continue;
        }
        let has_entries = std::fs::metadata(&log).is_ok_and(|m| m.len() > MAGIC.len() as u64);
        if !has_entries {
            continue;
        }
        match try_lock(&lock) {
            Ok(Some(held)) => match Spool::open_locked(log, held) {
                Ok(opened) => adopted.push(opened),
                Err(e) => tracing::error!("cannot adopt an orphaned spool: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot probe spool slot {slot}: {e}"),
        }
    }
    adopted
}

impl Spool {
    /// Opens (creating if missing) and recovers the spool at `path` under a lock already held.
    pub fn open_locked(path: PathBuf, lock: Flock<File>) -> Result<(Self, Recovery), SpoolError> {
        let name = path.display().to_string();
        let io = |e| SpoolError::Io(name.clone(), e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;

        if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            let foreign = !data.is_empty() && !MAGIC.starts_with(&data);
            let quarantined = if foreign {
                // Not ours (or a damaged header): keep it aside rather than replaying it.
                Some(quarantine(&path, &data).map_err(io)?)
            } else {
                None
            };
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(&MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_parent(&path);
            let recovery = Recovery {
                entries: 0,
                records: 0,
                dropped_bytes: data.len() as u64,
                // A new (empty) file is clean; a partial magic is a creation cut short.
                stop: match (foreign, data.is_empty()) {
                    (true, _) => Stop::Corrupt,
                    (false, true) => Stop::Clean,
                    (false, false) => Stop::Torn,
                },
                quarantined,
            };
            let spool = Self {
                path,
                file,
                end: MAGIC.len() as u64,
                records: 0,
                _lock: lock,
            };
            return Ok((spool, recovery));
        }

        let body = data.get(MAGIC.len()..).unwrap_or_default();
        let scan = format::scan(body);
        let end = (MAGIC.len() + scan.good_len) as u64;
        let dropped = data.len() as u64 - end;
        let quarantined = if scan.stop == Stop::Corrupt {
            let tail = body.get(scan.good_len..).unwrap_or_default();
            Some(quarantine(&path, tail).map_err(io)?)
        } else {
            None
        };
        if dropped > 0 {
            file.set_len(end).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let records = scan.entries.iter().map(|e| u64::from(e.records)).sum();
        let recovery = Recovery {
            entries: scan.entries.len(),
            records,
            dropped_bytes: dropped,
            stop: scan.stop,
            quarantined,
        };
        let spool = Self {
            path,
            file,
            end,
            records,
            _lock: lock,
        };
        Ok((spool, recovery))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offset of the first entry.
    pub fn start(&self) -> u64 {
        MAGIC.len() as u64
    }

    /// Length of the valid content (the magic included).
    pub fn len(&self) -> u64 {
        self.end
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start()
    }

    /// Records in the stored entries.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Appends one batch (its `POST /v1/events` body) and fsyncs it.
    pub fn append(&mut self, records: u32, payload: &[u8]) -> Result<(), SpoolError> {
        let name = || self.path.display().to_string();
        let entry = format::encode(records, payload)
            .ok_or_else(|| SpoolError::TooLarge(name(), payload.len()))?;
        let written = self
            .file
            .write_all_at(&entry, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // A partial write is a torn tail on disk: cut it so the next append starts on an
            // entry boundary (recovery would cut it at the next start anyway).
            let _ = self.file.set_len(self.end);
            return Err(SpoolError::Io(name(), e));
        }
        self.end += entry.len() as u64;
        self.records += u64::from(records);
        Ok(())
    }

    /// Reads the entry at `offset` (an offset [`Spool::start`] or an earlier entry's `next`
    /// returned); `None` at the end. Entries were validated when the spool was opened or
    /// written, but the checksum is checked again: the disk may have changed under us.
    pub fn read(&self, offset: u64) -> Result<Option<Entry>, SpoolError> {
        if offset >= self.end {
            return Ok(None);
        }
        let name = || self.path.display().to_string();
        let mut head = [0u8; ENTRY_HEADER];
        self.file
            .read_exact_at(&mut head, offset)
            .map_err(|e| SpoolError::Io(name(), e))?;
        let header = format::Header::parse(&head).unwrap_or(format::Header {
            len: u32::MAX,
            records: 0,
            crc: 0,
        });
        let next = offset + (ENTRY_HEADER as u64) + u64::from(header.len);
        if header.len > format::MAX_PAYLOAD || next > self.end {
            return Err(SpoolError::Io(
                name(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "entry length changed"),
            ));
        }
        let mut payload = vec![0u8; header.len as usize];
        self.file
            .read_exact_at(&mut payload, offset + ENTRY_HEADER as u64)
            .map_err(|e| SpoolError::Io(name(), e))?;
        if format::checksum(header.records, &payload) != header.crc {
            return Err(SpoolError::Io(
                name(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "entry checksum mismatch"),
            ));
        }
        Ok(Some(Entry {
            records: header.records,
            payload,
            next,
        }))
    }

    /// Copies the whole file aside (`<name>.corrupt-<unix ms>`) and empties the spool: for a
    /// spool whose content stopped checking out while it was open. Returns the copy's path.
    pub fn set_aside(&mut self) -> Result<PathBuf, SpoolError> {
        let name = self.path.display().to_string();
        let bytes = std::fs::read(&self.path).map_err(|e| SpoolError::Io(name.clone(), e))?;
        let kept = quarantine(&self.path, &bytes).map_err(|e| SpoolError::Io(name, e))?;
        self.clear()?;
        Ok(kept)
    }

    /// Empties the spool; called only once the ledger acknowledged every entry in it.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        let start = self.start();
        self.file
            .set_len(start)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| SpoolError::Io(self.path.display().to_string(), e))?;
        self.end = start;
        self.records = 0;
        Ok(())
    }
}

/// Copies bytes that cannot be trusted next to the spool, for an operator to inspect.
fn quarantine(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{ms}"));
    let target = PathBuf::from(name);
    let mut out = File::create(&target)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    Ok(target)
}

/// Makes a newly created file's directory entry durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests;
