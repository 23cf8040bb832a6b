//! The meta file: checkpoint slots (read and written with positional I/O) and the live page
//! (shared atomics, mapped by every handle).

use super::io_err;
use crate::error::{Error, Result};
use crate::format::meta::*;
use crate::storage::{OpenMode, Storage, StorageFile};
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
    /// Where the live page is kept, when not in this file (see [`MetaFile::attach_live`]).
    pub live_path: Option<PathBuf>,
}

/// What the two slots hold.
pub(crate) struct Slots {
    pub valid: Vec<Checkpoint>,
    pub errors: Vec<(u64, String)>,
}

impl MetaFile {
    /// Opens an existing meta file; `Ok(None)` if there is none.
    pub fn open(storage: &dyn Storage, dir: &Path) -> Result<Option<MetaFile>> {
        let path = dir.join("meta");
        let file = match storage.open(&path, OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        Self::with_file(path, file).map(Some)
    }

    fn with_file(path: PathBuf, file: Arc<dyn StorageFile>) -> Result<MetaFile> {
        let len = file
            .len()
            .map_err(|e| io_err("reading the length of", &path, e))?;
        if len < META_FILE_LEN {
            // Never treated as "no cache yet": a new cache's meta file appears whole, by a
            // rename (see `create`), so a short one is damage, and starting afresh here would
            // throw away the log and index beside it.
            return Err(Error::corrupted(
                &path,
                len,
                format!("meta file is {len} bytes, expected {META_FILE_LEN}"),
            ));
        }
        let live = file
            .map(META_FILE_LEN as usize)
            .map_err(|e| io_err("mapping", &path, e))?;
        Ok(MetaFile {
            path,
            file,
            live,
            live_path: None,
        })
    }

    /// Moves the live page out of this file where the storage keeps it elsewhere (on a
    /// copy-on-write file system, in shared memory; see [`Storage::live_page`]): `create`
    /// when the caller holds the presence lock exclusively (a fresh page, set up by
    /// recovery), else joining the other handles' page.
    pub fn attach_live(&mut self, storage: &dyn Storage, create: bool) -> Result<()> {
        match storage.live_page(&self.path, META_FILE_LEN as usize, create) {
            Ok(Some(page)) => {
                self.live = page.region;
                self.live_path = Some(page.path);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(io_err("opening the live page of", &self.path, e)),
        }
    }

    /// Creates the meta file of a new cache: written and synced under the temporary name
    /// `meta.tmp` (through `tmp`, already open, whose presence lock the caller holds
    /// exclusively), then renamed into place and the directory synced, so that the meta file
    /// appears whole or not at all. The presence lock moves with the file.
    pub fn create(
        storage: &dyn Storage,
        dir: &Path,
        tmp: Arc<dyn StorageFile>,
        first: &Checkpoint,
    ) -> Result<MetaFile> {
        let tmp_path = dir.join("meta.tmp");
        let path = dir.join("meta");
        tmp.set_len(0)
            .map_err(|e| io_err("truncating", &tmp_path, e))?;
        // The live page is stored into through a mapping: no copy-on-write for this file.
        tmp.prepare_mapped_writes()
            .map_err(|e| io_err("preparing", &tmp_path, e))?;
        let mut buf = vec![0u8; META_FILE_LEN as usize];
        buf[..META_HEADER_LEN].copy_from_slice(&encode_header());
        let at = SLOT_OFFSETS[(first.seq % 2) as usize] as usize;
        buf[at..at + SLOT_LEN].copy_from_slice(&first.encode());
        tmp.write_at(0, &buf)
            .map_err(|e| io_err("writing", &tmp_path, e))?;
        tmp.sync().map_err(|e| io_err("syncing", &tmp_path, e))?;
        storage
            .rename(&tmp_path, &path)
            .map_err(|e| io_err("renaming into place", &path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| io_err("syncing directory", dir, e))?;
        Self::with_file(path, tmp)
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

    /// Writes a checkpoint into its slot (`seq % 2`, never the current one's).
    pub fn write_slot(&self, c: &Checkpoint) -> Result<()> {
        let off = SLOT_OFFSETS[(c.seq % 2) as usize];
        self.file
            .write_at(off, &c.encode())
            .map_err(|e| io_err("writing a checkpoint to", &self.path, e))
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
}
