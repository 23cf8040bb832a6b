//! Creating a new store, and recovering one that no other handle has open.
//!
//! Recovery only reads the cache's data: it takes the newest valid checkpoint, replays the
//! log segment that follows it up to the last complete transaction whose new value files are
//! intact, zeroes whatever lies past that end of the segment (so that no frame cut off by a
//! crash can ever rejoin the chain), and publishes that position in the live page. Running
//! it twice (say, after a crash during recovery) gives the same state. It then removes files
//! no checkpoint refers to.

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
    // Step 6 removes the older checkpoint's files: the one kept must be durable.
    let ckpt = meta.durable_checkpoint(sync)?;
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
            // A transaction whose value files did not all reach the disk ends the log. A file
            // that cannot be read (an I/O error, too many open files) is not known to be
            // missing: recovery fails rather than drop this and every later transaction.
            let mut intact = true;
            for nf in &txn.new_files {
                if !values::check_file(storage, dir, nf)? {
                    intact = false;
                    break;
                }
            }
            if !intact {
                break;
            }
            st.apply(std::mem::take(&mut txn));
            st.log = cur.clone();
            frames += txn_frames;
            txn_frames = 0;
        }
    }
    // Nothing past the end may ever rejoin the chain (see `Segment::clear_tail`).
    st.log
        .segment
        .clear_tail(st.log.offset, sync != SyncLevel::Off)?;
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

#[cfg(test)]
mod tests {
    use super::super::{values, Engine, EngineOptions, SyncLevel};
    use crate::storage::{DirEntry, FaultConfig, FaultyStorage, OpenMode, Storage, StorageFile};
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    fn open(s: &FaultyStorage) -> Arc<Engine> {
        Engine::open(
            Path::new("/c"),
            Arc::new(s.clone()),
            EngineOptions::default(),
            WAIT,
        )
        .expect("open")
    }

    fn put(e: &Arc<Engine>, tree: u8, k: &[u8], v: &[u8]) {
        let mut t = e.begin(WAIT).expect("begin");
        t.put(tree, k.to_vec(), v.to_vec());
        t.commit().expect("commit");
    }

    fn get(e: &Engine, tree: u8, k: &[u8]) -> Option<Vec<u8>> {
        e.read(|v| Ok(v.get(tree, k)?.map(<[u8]>::to_vec)))
            .expect("read")
    }

    /// Found by the `ops` fuzz target: a power loss keeps frame 2's sector but loses frame
    /// 1's, so recovery ends the log before frame 1. The next open writes frame 1 again, byte
    /// for byte (the same settings), and without clearing the tail, frame 2 chained on again:
    /// the reopen after that brought back a transaction the first recovery had dropped.
    #[test]
    fn frames_cut_off_by_a_crash_never_rejoin_the_log() {
        let s = FaultyStorage::new(FaultConfig {
            seed: 1,
            max_file_len: 8 << 20,
        });
        let e = open(&s);
        put(&e, 6, b"setting", b"1");
        put(&e, 0, b"key", b"lost");
        drop(e);
        // Frame 1 (the first after the 64-byte segment header) is lost; frame 2 survives.
        let seg = Path::new("/c/log/0000000000000001.log");
        s.corrupt(seg, 64, &[0u8; 8]).expect("damage frame 1");
        let e = open(&s);
        assert_eq!(get(&e, 6, b"setting"), None, "frame 1 is gone");
        assert_eq!(get(&e, 0, b"key"), None, "frame 2 does not chain on");
        // The same first transaction again: the same bytes at the same place.
        put(&e, 6, b"setting", b"1");
        drop(e);
        let e = open(&s);
        assert_eq!(get(&e, 6, b"setting"), Some(b"1".to_vec()));
        assert_eq!(
            get(&e, 0, b"key"),
            None,
            "a transaction dropped by recovery came back"
        );
        assert_eq!(e.info().frames_replayed_at_open, 1);
    }

    /// A file system on which opening a value file fails (as with too many open files)
    /// while `fail` is set.
    #[derive(Debug)]
    struct ValueFilesFail {
        inner: FaultyStorage,
        fail: Arc<AtomicBool>,
    }

    impl Storage for ValueFilesFail {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
            if self.fail.load(Ordering::SeqCst) && path.extension().is_some_and(|x| x == "val") {
                return Err(io::Error::other("too many open files"));
            }
            self.inner.open(path, mode)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.inner.create_dir_all(path)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.inner.remove_file(path)
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.inner.remove_dir(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.inner.rename(from, to)
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
            self.inner.list_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            self.inner.sync_dir(path)
        }
        fn file_len(&self, path: &Path) -> io::Result<u64> {
            self.inner.file_len(path)
        }
    }

    /// A value file that recovery cannot read (as opposed to one that is missing) must not
    /// end the log there: that would drop the committed transaction that wrote it and every
    /// later one (and recovery then clears them from the segment for good).
    #[test]
    fn an_unreadable_value_file_fails_recovery_instead_of_dropping_commits() {
        let fail = Arc::new(AtomicBool::new(false));
        let storage = Arc::new(ValueFilesFail {
            inner: FaultyStorage::new(FaultConfig {
                seed: 2,
                max_file_len: 8 << 20,
            }),
            fail: Arc::clone(&fail),
        });
        let dir = Path::new("/c");
        let open = || {
            Engine::open(
                dir,
                Arc::clone(&storage) as Arc<dyn Storage>,
                EngineOptions::default(),
                WAIT,
            )
        };
        let e = open().expect("open");
        let nf = values::write(&*storage, dir, SyncLevel::Normal, &mut &[7u8; 5000][..])
            .expect("value file");
        let mut t = e.begin(WAIT).expect("begin");
        t.put(0, b"big".to_vec(), nf.name.clone().into_bytes());
        t.new_file(nf);
        t.commit().expect("commit");
        put(&e, 0, b"later", b"1");
        drop(e);
        fail.store(true, Ordering::SeqCst);
        assert!(
            open().is_err(),
            "recovery must fail while a value file cannot be read"
        );
        fail.store(false, Ordering::SeqCst);
        let e = open().expect("open once the file can be read");
        assert!(get(&e, 0, b"big").is_some(), "the commit is still there");
        assert_eq!(get(&e, 0, b"later"), Some(b"1".to_vec()));
    }
}
