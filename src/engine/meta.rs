//! The meta file: checkpoint slots (read and written with positional I/O) and the live page
//! (shared atomics, mapped by every handle).

use super::{io_err, SyncLevel};
use crate::error::{Error, Result};
use crate::format::meta::*;
use crate::storage::{LockKind, OpenMode, Storage, StorageFile};
use crate::sys::Region;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The meta file of one cache directory, as opened by one handle.
#[derive(Debug)]
pub(crate) struct MetaFile {
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    live: Arc<Region>,
}

/// What the two slots hold.
pub(crate) struct Slots {
    pub valid: Vec<Checkpoint>,
    pub errors: Vec<(u64, String)>,
}

impl MetaFile {
    /// Opens (creating if missing) the meta file. Returns it and whether it was empty (a new
    /// cache, to be initialized by whoever holds the presence lock exclusively).
    pub fn open(storage: &dyn Storage, dir: &Path) -> Result<(MetaFile, bool)> {
        let path = dir.join("meta");
        let file = storage
            .open(&path, OpenMode::Create)
            .map_err(|e| io_err("opening", &path, e))?;
        let len = file
            .len()
            .map_err(|e| io_err("reading the length of", &path, e))?;
        let empty = len == 0;
        if !empty && len < META_FILE_LEN {
            return Err(Error::corrupted(
                &path,
                len,
                format!("meta file is {len} bytes, expected {META_FILE_LEN}"),
            ));
        }
        let live = file
            .map(META_FILE_LEN as usize)
            .map_err(|e| io_err("mapping", &path, e))?;
        Ok((MetaFile { path, file, live }, empty))
    }

    /// Writes a fresh meta file: header, the first checkpoint in slot 0, a zeroed slot 1 and
    /// live page.
    pub fn initialize(&self, first: &Checkpoint) -> Result<()> {
        let mut buf = vec![0u8; META_FILE_LEN as usize];
        buf[..META_HEADER_LEN].copy_from_slice(&encode_header());
        let slot = first.encode();
        let at = SLOT_OFFSETS[(first.seq % 2) as usize] as usize;
        buf[at..at + SLOT_LEN].copy_from_slice(&slot);
        self.file
            .write_at(0, &buf)
            .map_err(|e| io_err("writing", &self.path, e))
    }

    /// Checks the header (magic and version).
    pub fn check_header(&self) -> Result<()> {
        let mut b = [0u8; META_HEADER_LEN];
        self.file
            .read_exact_at(0, &mut b)
            .map_err(|e| io_err("reading", &self.path, e))?;
        match decode_header(&b) {
            Ok(()) => Ok(()),
            Err(Ok(found)) => Err(Error::UnsupportedVersion {
                file: self.path.clone(),
                found,
                supported: crate::format::FORMAT_VERSION,
            }),
            Err(Err(e)) => Err(Error::corrupted(&self.path, e.offset as u64, e.detail)),
        }
    }

    /// Reads both checkpoint slots.
    pub fn read_slots(&self) -> Result<Slots> {
        let mut valid = Vec::new();
        let mut errors = Vec::new();
        for off in SLOT_OFFSETS {
            let mut b = [0u8; SLOT_LEN];
            self.file
                .read_exact_at(off, &mut b)
                .map_err(|e| io_err("reading", &self.path, e))?;
            match Checkpoint::decode(&b) {
                Ok(c) => valid.push(c),
                Err(Ok(found)) => {
                    return Err(Error::UnsupportedVersion {
                        file: self.path.clone(),
                        found,
                        supported: crate::format::FORMAT_VERSION,
                    })
                }
                Err(Err(e)) => errors.push((off + e.offset as u64, e.detail)),
            }
        }
        Ok(Slots { valid, errors })
    }

    /// The valid checkpoint with sequence number `want`, else the newest valid one.
    pub fn best_checkpoint(&self, want: Option<u64>) -> Result<Checkpoint> {
        let slots = self.read_slots()?;
        if let Some(w) = want {
            if let Some(c) = slots.valid.iter().find(|c| c.seq == w) {
                return Ok(c.clone());
            }
        }
        match slots.valid.into_iter().max_by_key(|c| c.seq) {
            Some(c) => Ok(c),
            None => {
                let (off, why) = slots
                    .errors
                    .into_iter()
                    .next()
                    .unwrap_or((SLOT_OFFSETS[0], "no checkpoint slot".into()));
                Err(Error::corrupted(
                    &self.path,
                    off,
                    format!("no valid checkpoint: {why}"),
                ))
            }
        }
    }

    /// The newest valid checkpoint, for a writer or a recovery to build on. If a
    /// publication was left unfinished (`checkpoint_busy` set: its checkpointer was killed,
    /// or failed to sync this file), the newest slot may never have been synced; unless
    /// `sync` is Off, it is made durable first, so that no commit builds on (and no file of
    /// the older checkpoint is removed for) a checkpoint that a power loss could take back.
    /// After a power loss the flag may be gone, but then the surviving slot is on disk.
    pub fn durable_checkpoint(&self, sync: SyncLevel) -> Result<Checkpoint> {
        if sync != SyncLevel::Off && self.load(LIVE_CHECKPOINT_BUSY) != 0 {
            self.sync()?;
        }
        self.best_checkpoint(None)
    }

    /// Writes a checkpoint into its slot (`seq % 2`, never the current one's).
    pub fn write_slot(&self, c: &Checkpoint) -> Result<()> {
        let off = SLOT_OFFSETS[(c.seq % 2) as usize];
        self.file
            .write_at(off, &c.encode())
            .map_err(|e| io_err("writing a checkpoint to", &self.path, e))
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync()
            .map_err(|e| io_err("syncing", &self.path, e))
    }

    fn word(&self, w: usize) -> Option<&AtomicU64> {
        self.live.atomic_u64(LIVE_OFFSET as usize + w)
    }

    /// A live-page word (the mapping always covers the live page).
    pub fn atomic(&self, w: usize) -> Result<&AtomicU64> {
        self.word(w).ok_or_else(|| {
            Error::corrupted(&self.path, LIVE_OFFSET + w as u64, "live page not mapped")
        })
    }

    pub fn load(&self, w: usize) -> u64 {
        self.word(w).map_or(0, |a| a.load(Ordering::Acquire))
    }

    pub fn store(&self, w: usize, v: u64) {
        if let Some(a) = self.word(w) {
            a.store(v, Ordering::Release);
        }
    }

    /// Stores `v` and returns the value it replaced, atomically.
    pub fn swap(&self, w: usize, v: u64) -> u64 {
        self.word(w).map_or(0, |a| a.swap(v, Ordering::AcqRel))
    }

    pub fn add(&self, w: usize, v: u64) {
        if let Some(a) = self.word(w) {
            a.fetch_add(v, Ordering::Relaxed);
        }
    }

    /// Takes the presence lock: shared for a handle among others, exclusive for the one that
    /// runs recovery (only when no other handle has the cache open).
    pub fn try_presence(&self, kind: LockKind) -> Result<bool> {
        self.file
            .try_lock(kind)
            .map_err(|e| io_err("locking", &self.path, e))
    }

    pub fn release_presence(&self) -> Result<()> {
        self.file
            .unlock()
            .map_err(|e| io_err("unlocking", &self.path, e))
    }
}
