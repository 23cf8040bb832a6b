//! Creating a new store, and recovering one that no other handle has open.
//!
//! Recovery only reads the cache's data: it takes the newest checkpoint (from the meta
//! file's slots, or from the copy in a log segment's header if that is newer), replays the
//! log segment that follows it up to the last complete transaction (ending early only at a
//! transaction whose value files a power failure may have taken), zeroes whatever lies past
//! that end of the segment (so that no frame cut off by a crash can ever rejoin the chain),
//! and publishes that position in the live page. Running it twice (say, after a crash
//! during recovery) gives the same state. It then removes files no checkpoint refers to.

use super::btree::{create_index_file, index_path, IndexFile};
use super::checkpoint::{segment_ids, sweep};
use super::delta::Delta;
use super::log::{segment_path, Segment};
use super::meta::MetaFile;
use super::{check_segment, io_err, values, State, SyncLevel, Syncs};
use crate::error::{Error, Result};
use crate::format::frame::{
    FLAG_FILES_SYNCED, FLAG_FINAL, NUM_REGISTERS, NUM_TREES, SEGMENT_HEADER_LEN,
};
use crate::format::meta::LIVE_WRITER;
use crate::format::meta::{
    Checkpoint, LIVE_CHECKPOINT_BUSY, LIVE_CHECKPOINT_SEQ, LIVE_PUBLISHED_LSN,
};
use crate::format::node::INDEX_HEADER_LEN;
use crate::storage::{DirLocks, LockKind, OpenMode, Storage, StorageFile};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The first checkpoint of a new store.
fn first_checkpoint() -> Checkpoint {
    Checkpoint {
        seq: 1,
        index_file: 1,
        index_len: INDEX_HEADER_LEN as u64,
        index_live: 0,
        log_segment: 1,
        log_start_lsn: 1,
        registers: [0; NUM_REGISTERS],
        roots: [None; NUM_TREES],
    }
}

/// Creates a new store in `dir`, which has no meta file. Returns its meta file and the
/// creator's locks (presence held exclusively), or `None` if another handle is creating it
/// (wait and look again).
///
/// The meta file is written under `meta.tmp` and renamed into place, so it appears whole or
/// not at all; the exclusive presence lock taken on `meta.tmp` serializes creators and
/// moves with the file. A store is only created where nothing would be lost: if log
/// segments, index files or value files of a cache are here without a meta file, opening
/// fails with [`Error::Corrupted`] naming the meta file (see [`crate::repair`]).
pub(crate) fn create(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<(MetaFile, Box<dyn DirLocks>)>> {
    let meta_path = dir.join("meta");
    if holds_data(storage, dir)? {
        // Another handle may have created the cache (and written to it) since the caller
        // found no meta file: then there is one now.
        if storage.file_len(&meta_path).is_ok() {
            return Ok(None);
        }
        return Err(Error::corrupted(
            &meta_path,
            0,
            format!(
                "the meta file is missing, but {} holds a cache's log, index or value files; \
                 nothing was changed. If no process is using the cache, `diskcache repair` \
                 (diskcache::repair) rebuilds the meta file from them",
                dir.display()
            ),
        ));
    }
    let Some((tmp, locks)) = lock_tmp(storage, dir)? else {
        return Ok(None);
    };
    let first = first_checkpoint();
    initialize(storage, dir, &first)?;
    let meta = MetaFile::create(storage, dir, tmp, &first)?;
    Ok(Some((meta, locks)))
}

/// `meta.tmp`, open, and its holder's locks.
type LockedTmp = (Arc<dyn StorageFile>, Box<dyn DirLocks>);

/// Takes the exclusive presence lock on `meta.tmp` (creating it), which serializes the
/// handles that create (or rebuild) the meta file, and opens it. `None` if another handle
/// holds it, or has renamed it into place meanwhile (the meta file exists now).
fn lock_tmp(storage: &dyn Storage, dir: &Path) -> Result<Option<LockedTmp>> {
    let tmp_path = dir.join("meta.tmp");
    storage
        .open(&tmp_path, OpenMode::Create)
        .map_err(|e| io_err("creating", &tmp_path, e))?;
    let locks = match storage.open_locks(&tmp_path) {
        Ok(l) => l,
        // Renamed into place by its holder just now.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening the locks of", &tmp_path, e)),
    };
    if !locks
        .try_presence(LockKind::Exclusive)
        .map_err(|e| io_err("locking", &tmp_path, e))?
    {
        return Ok(None);
    }
    // Another holder may have finished before this one took the lock.
    if storage.file_len(&dir.join("meta")).is_ok() {
        return Ok(None);
    }
    // Only the lock's holder renames `meta.tmp`, so the name still leads to the locked file.
    match storage.open(&tmp_path, OpenMode::Existing) {
        Ok(f) => Ok(Some((f, locks))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("opening", &tmp_path, e)),
    }
}

/// Whether `dir` holds anything of a cache worth keeping: any value file or segment or
/// index file beyond what creating a store writes before its meta file (index file 1 with
/// only its header, and segment 1 without a frame).
fn holds_data(storage: &dyn Storage, dir: &Path) -> Result<bool> {
    let listed = |sub: &str| match storage.list_dir(&dir.join(sub)) {
        Ok(entries) => Ok(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("listing", &dir.join(sub), e)),
    };
    if !listed("values")?.is_empty() {
        return Ok(true);
    }
    for e in listed("index")? {
        let first = e.path == index_path(dir, 1);
        if !first || e.len > INDEX_HEADER_LEN as u64 {
            return Ok(true);
        }
    }
    for e in listed("log")? {
        if e.path.extension().is_some_and(|x| x == "tmp") {
            continue;
        }
        if e.path != segment_path(dir, 1) {
            return Ok(true);
        }
        // Segment 1 holds data if it has a frame (or cannot be read: keep it).
        let Ok(Ok(seg)) = Segment::open(storage, dir, 1) else {
            return Ok(true);
        };
        if seg
            .read_frame(SEGMENT_HEADER_LEN as u64, seg.seed, seg.header.start_lsn)?
            .is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes the files of a new, empty store but its meta file: index file 1 (header only) and
/// segment 1 (continuing from `first`), synced with their directories.
fn initialize(storage: &dyn Storage, dir: &Path, first: &Checkpoint) -> Result<()> {
    // Errors fail the open; no handle exists yet to poison.
    let unused = AtomicBool::new(false);
    let syncs = Syncs::new(storage, &unused);
    let index = create_index_file(storage, dir, 1)?;
    syncs.file(&*index, &index_path(dir, 1))?;
    Segment::create(storage, dir, first, SyncLevel::Full, &syncs)?;
    for d in [dir.join("index"), dir.join("values"), dir.to_path_buf()] {
        syncs.dir(&d)?;
    }
    Ok(())
}

/// The newest complete checkpoint: the newest valid meta slot, or a newer copy in a log
/// segment's header whose index file is all there. Such a copy is newer when the slot
/// that should hold it is damaged, or when a crash interrupted its publication after the
/// segment was made durable (everything it refers to was durable before). Returns it and
/// whether it came from a segment.
fn newest_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaFile,
) -> Result<(Checkpoint, bool)> {
    let slot = meta.best_checkpoint(None);
    let mut best: Option<(Checkpoint, bool)> = slot.as_ref().ok().map(|c| (c.clone(), false));
    for id in segment_ids(storage, dir) {
        let Some(c) = Segment::read_checkpoint(storage, dir, id) else {
            continue;
        };
        if best.as_ref().is_some_and(|(b, _)| b.seq >= c.seq) {
            continue;
        }
        let whole = storage
            .file_len(&index_path(dir, c.index_file))
            .is_ok_and(|len| len >= c.index_len);
        if whole {
            best = Some((c, true));
        }
    }
    match (best, slot) {
        (Some(b), _) => Ok(b),
        (None, Err(e)) => Err(e),
        (None, Ok(c)) => Ok((c, false)),
    }
}

/// Recovers the store; returns its state and the number of frames replayed. `boot` is the
/// machine's boot id (0: unknown).
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaFile,
    boot: u32,
) -> Result<(State, usize)> {
    let unused = AtomicBool::new(false);
    let syncs = Syncs::new(storage, &unused);
    // A publication left unfinished (its checkpointer killed, or its meta sync failed):
    // the newest slot may never have been synced. Make it durable before building on it,
    // and before removing the older checkpoint's files below.
    if meta.load(LIVE_CHECKPOINT_BUSY) != 0 {
        syncs.file(&*meta.file, &meta.path)?;
    }
    let (ckpt, from_segment) = newest_checkpoint(storage, dir, meta)?;
    if from_segment {
        // The slot that should hold it is damaged or was never written: write it again.
        meta.write_slot(&ckpt)?;
        syncs.file(&*meta.file, &meta.path)?;
    }
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
            Segment::create(storage, dir, &ckpt, SyncLevel::Full, &syncs)?
        }
        Err(e) => return Err(io_err("opening", &segment_path(dir, ckpt.log_segment), e)),
    };
    check_segment(&seg, &ckpt)?;
    let mut st = State::new(ckpt.clone(), Arc::new(index), Arc::new(seg));
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
            // A transaction's value files were written before it. They can legitimately be
            // missing only if they were not yet durable and the machine has lost power (or
            // crashed) since: then the transaction did not fully happen, and the log ends
            // before it. Files synced before the transaction (sync level Full), or written in
            // the current boot (nothing unsynced was lost), are not checked: if one is
            // missing or damaged, that is damage to one entry (it reads as a miss, and
            // `check` reports it), never a reason to drop this and every later transaction.
            let may_be_lost = f.flags & FLAG_FILES_SYNCED == 0 && (boot == 0 || f.boot != boot);
            if may_be_lost {
                // A file that cannot be read (an I/O error, too many open files) is not
                // known to be missing: recovery fails rather than drop the transaction.
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
            }
            st.apply(std::mem::take(&mut txn));
            st.log = cur.clone();
            frames += txn_frames;
            txn_frames = 0;
        }
    }
    // Nothing past the end may ever rejoin the chain (see `Segment::clear_tail`).
    st.log.segment.clear_tail(st.log.offset, true)?;
    meta.store(LIVE_PUBLISHED_LSN, st.log.applied_lsn);
    meta.store(LIVE_CHECKPOINT_SEQ, ckpt.seq);
    meta.store(LIVE_CHECKPOINT_BUSY, 0);
    // No handle is open, so nobody holds the writer lock.
    meta.store(LIVE_WRITER, 0);
    sweep(storage, dir, &ckpt);
    let _ = storage.remove_file(&dir.join("meta.tmp"));
    Ok((st, frames))
}

/// What [`CacheBuilder::repair`](crate::CacheBuilder::repair) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repaired {
    /// The meta file was sound: nothing was changed.
    Nothing,
    /// The meta file was missing or damaged, and was written anew from the copy of
    /// checkpoint `checkpoint` in the header of log segment `segment`; the next open
    /// replays that segment's log.
    MetaRebuilt {
        /// The checkpoint's sequence number.
        checkpoint: u64,
        /// The segment whose header held it.
        segment: u64,
    },
}

/// Rebuilds a missing or damaged meta file from the newest checkpoint copy in a log
/// segment's header (see [`crate::Cache::repair`]).
pub(crate) fn repair(storage: &dyn Storage, dir: &Path) -> Result<Repaired> {
    let meta_path = dir.join("meta");
    // No handle may have the cache open (its presence lock is on the meta file).
    let locks = match storage.open_locks(&meta_path) {
        Ok(l) => {
            if !l
                .try_presence(LockKind::Exclusive)
                .map_err(|e| io_err("locking", &meta_path, e))?
            {
                return Err(Error::Unsupported(format!(
                    "{} is in use by another handle; close it before repairing",
                    dir.display()
                )));
            }
            Some(l)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("opening the locks of", &meta_path, e)),
    };
    // A meta file that opens, has a valid header and a checkpoint (in a slot or a segment)
    // needs nothing: opening recovers the rest.
    if let Ok(Some(meta)) = MetaFile::open(storage, dir) {
        if meta.check_header().is_ok() && newest_checkpoint(storage, dir, &meta).is_ok() {
            return Ok(Repaired::Nothing);
        }
    }
    let mut best: Option<Checkpoint> = None;
    for id in segment_ids(storage, dir) {
        let Some(c) = Segment::read_checkpoint(storage, dir, id) else {
            continue;
        };
        let whole = storage
            .file_len(&index_path(dir, c.index_file))
            .is_ok_and(|len| len >= c.index_len);
        if whole && best.as_ref().is_none_or(|b| c.seq > b.seq) {
            best = Some(c);
        }
    }
    let Some(c) = best else {
        return Err(Error::corrupted(
            &meta_path,
            0,
            "the meta file cannot be rebuilt: no log segment holds a usable checkpoint",
        ));
    };
    // A damaged meta file is kept, under another name, for whoever wants to look at it.
    if locks.is_some() {
        let aside = dir.join("meta.damaged");
        storage
            .rename(&meta_path, &aside)
            .map_err(|e| io_err("moving aside", &meta_path, e))?;
    }
    let Some((tmp, _tmp_locks)) = lock_tmp(storage, dir)? else {
        return Err(Error::Unsupported(format!(
            "{} is being created or repaired by another handle",
            dir.display()
        )));
    };
    MetaFile::create(storage, dir, tmp, &c)?;
    drop(locks);
    Ok(Repaired::MetaRebuilt {
        checkpoint: c.seq,
        segment: c.log_segment,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{values, Engine, EngineOptions};
    use crate::format::frame::SEGMENT_HEADER_LEN;
    use crate::storage::{
        DirEntry, DirLocks, FaultConfig, FaultyStorage, FsKind, OpenMode, Storage, StorageFile,
    };
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
        // Frame 1 (the first after the segment header) is lost; frame 2 survives.
        let seg = Path::new("/c/log/0000000000000001.log");
        s.corrupt(seg, SEGMENT_HEADER_LEN as u64, &[0u8; 8])
            .expect("damage frame 1");
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
        /// Clean restarts of the machine since the files were written.
        reboots: AtomicU32,
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
        fn open_locks(&self, meta: &Path) -> io::Result<Box<dyn DirLocks>> {
            self.inner.open_locks(meta)
        }
        fn fork_epoch(&self) -> u64 {
            self.inner.fork_epoch()
        }
        fn boot_id(&self) -> u32 {
            self.inner.boot_id() + self.reboots.load(Ordering::SeqCst)
        }
        fn fs_kind(&self, dir: &Path) -> io::Result<FsKind> {
            self.inner.fs_kind(dir)
        }
    }

    /// A value file that recovery cannot read (as opposed to one that is missing) must not
    /// end the log there: that would drop the committed transaction that wrote it and every
    /// later one (and recovery then clears them from the segment for good). Files are only
    /// checked for transactions of an earlier boot: the machine restarts (cleanly, losing
    /// nothing) before the reopen.
    #[test]
    fn an_unreadable_value_file_fails_recovery_instead_of_dropping_commits() {
        let fail = Arc::new(AtomicBool::new(false));
        let storage = Arc::new(ValueFilesFail {
            inner: FaultyStorage::new(FaultConfig {
                seed: 2,
                max_file_len: 8 << 20,
            }),
            fail: Arc::clone(&fail),
            reboots: AtomicU32::new(0),
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
        let nf = values::write(&*storage, dir, None, &mut &[7u8; 5000][..]).expect("value file");
        let mut t = e.begin(WAIT).expect("begin");
        t.put(0, b"big".to_vec(), nf.name.clone().into_bytes());
        t.new_file(nf);
        t.commit().expect("commit");
        put(&e, 0, b"later", b"1");
        drop(e);
        storage.reboots.store(1, Ordering::SeqCst);
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
