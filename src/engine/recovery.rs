//! Creating a new store, and recovering one that no other handle has open.
//!
//! Recovery only reads: it takes the newest valid checkpoint, replays the log segment that
//! follows it up to the last complete transaction whose new value files are intact, and
//! publishes that position in the live page. Running it twice (say, after a crash during
//! recovery) gives the same state. It then removes files no checkpoint refers to.

use super::btree::{create_index_file, index_path, IndexFile};
use super::delta::Delta;
use super::log::{segment_path, Segment};
use super::meta::MetaFile;
use super::{check_segment, io_err, values, State, SyncLevel};
use crate::error::{Error, Result};
use crate::format::frame::{FLAG_FINAL, NUM_REGISTERS, NUM_TREES};
use crate::format::meta::LIVE_WRITER;
use crate::format::meta::{
    Checkpoint, LIVE_CHECKPOINT_BUSY, LIVE_CHECKPOINT_SEQ, LIVE_PUBLISHED_LSN,
};
use crate::format::node::INDEX_HEADER_LEN;
use crate::storage::Storage;
use std::path::Path;
use std::sync::Arc;

/// Writes the files of a new, empty store.
pub(crate) fn initialize(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaFile,
    sync: SyncLevel,
) -> Result<()> {
    let index = create_index_file(storage, dir, 1)?;
    let seg = Segment::create(storage, dir, 1, 1, sync)?;
    let first = Checkpoint {
        seq: 1,
        index_file: 1,
        index_len: INDEX_HEADER_LEN as u64,
        index_live: 0,
        log_segment: 1,
        log_start_lsn: 1,
        registers: [0; NUM_REGISTERS],
        roots: [None; NUM_TREES],
    };
    if sync != SyncLevel::Off {
        index
            .sync()
            .map_err(|e| io_err("syncing", &index_path(dir, 1), e))?;
        seg.file
            .sync()
            .map_err(|e| io_err("syncing", &seg.path, e))?;
        for d in [
            dir.join("index"),
            dir.join("log"),
            dir.join("values"),
            dir.to_path_buf(),
        ] {
            storage
                .sync_dir(&d)
                .map_err(|e| io_err("syncing directory", &d, e))?;
        }
    }
    meta.initialize(&first)?;
    if sync != SyncLevel::Off {
        meta.sync()?;
        storage
            .sync_dir(dir)
            .map_err(|e| io_err("syncing directory", dir, e))?;
    }
    Ok(())
}

/// Recovers the store; returns its state and the number of frames replayed.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaFile,
    sync: SyncLevel,
) -> Result<(State, usize)> {
    let ckpt = meta.best_checkpoint(None)?;
    let ipath = index_path(dir, ckpt.index_file);
    let index = match IndexFile::open(storage, dir, ckpt.index_file, ckpt.index_len) {
        Ok(r) => r?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::corrupted(
                &ipath,
                0,
                "the index file named by the checkpoint is missing",
            ))
        }
        Err(e) => return Err(io_err("opening", &ipath, e)),
    };
    let seg = match Segment::open(storage, dir, ckpt.log_segment) {
        Ok(r) => r?,
        // The checkpoint's new segment was created but its directory entry was not durable:
        // it held nothing durable either, so an empty one replaces it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Segment::create(storage, dir, ckpt.log_segment, ckpt.log_start_lsn, sync)?
        }
        Err(e) => return Err(io_err("opening", &segment_path(dir, ckpt.log_segment), e)),
    };
    check_segment(&seg, &ckpt)?;
    let seq = ckpt.seq;
    let current_index = ckpt.index_file;
    let current_seg = ckpt.log_segment;
    let mut st = State::new(ckpt, Arc::new(index), Arc::new(seg));
    let mut frames = 0;
    let mut cur = st.log.clone();
    let mut txn = Delta::default();
    let mut txn_frames = 0;
    // The log ends at the first torn, partial or stale frame (or at nothing).
    while let Ok(f) = cur
        .segment
        .read_frame(cur.offset, cur.prev_crc, cur.applied_lsn + 1)?
    {
        if txn.apply_payload(&f.payload).is_err() {
            // A frame whose checksum holds but whose ops do not decode was not written by
            // this format: treat it as the end.
            break;
        }
        cur.offset += f.len as u64;
        cur.prev_crc = f.crc;
        cur.applied_lsn = f.lsn;
        txn_frames += 1;
        if f.flags & FLAG_FINAL != 0 {
            // A transaction whose value files did not all reach the disk ends the log.
            if !txn
                .new_files
                .iter()
                .all(|nf| values::verify(storage, dir, nf))
            {
                break;
            }
            st.apply(std::mem::take(&mut txn));
            st.log = cur.clone();
            frames += txn_frames;
            txn_frames = 0;
        }
    }
    meta.store(LIVE_PUBLISHED_LSN, st.log.applied_lsn);
    meta.store(LIVE_CHECKPOINT_SEQ, seq);
    meta.store(LIVE_CHECKPOINT_BUSY, 0);
    // No handle is open, so nobody holds the writer lock.
    meta.store(LIVE_WRITER, 0);
    super::lock::WriterLock::remove_all(storage, dir);
    remove_stale(storage, dir, current_index, current_seg);
    Ok((st, frames))
}

/// Removes log segments and index files that no checkpoint refers to (leftovers of crashes
/// between publishing a checkpoint and removing what it replaced). Only safe while no other
/// handle has the store open.
fn remove_stale(storage: &dyn Storage, dir: &Path, index: u64, segment: u64) {
    let stale = |sub: &str, ext: &str, keep: u64| {
        let d = dir.join(sub);
        if let Ok(entries) = storage.list_dir(&d) {
            for e in entries {
                let Some(name) = e.path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(stem) = name.strip_suffix(ext) else {
                    continue;
                };
                if u64::from_str_radix(stem, 16).is_ok_and(|id| id != keep) {
                    let _ = storage.remove_file(&e.path);
                }
            }
        }
    };
    stale("index", ".idx", index);
    stale("log", ".log", segment);
    // Segments whose creation a crash interrupted.
    if let Ok(entries) = storage.list_dir(&dir.join("log")) {
        for e in entries {
            if e.path.extension().is_some_and(|x| x == "tmp") {
                let _ = storage.remove_file(&e.path);
            }
        }
    }
}
