//! The storage engine: a transactional store of byte-keyed trees, shared by every handle
//! on a directory, in one process or many.
//!
//! * Writers take a file lock, catch up with the log, append one CRC-chained frame per
//!   transaction through a shared mapping of the current log segment, apply the changes to
//!   their in-memory overlay, and publish the frame's LSN in the meta file's live page.
//! * Readers compare the published LSN and checkpoint sequence with what they have applied
//!   (two atomic loads) and catch up when behind; they never wait for a writer.
//! * When the log grows past a threshold, the writer checkpoints: it applies the overlay to
//!   the copy-on-write B+trees of the index file, makes them durable, publishes the new
//!   roots in a checkpoint slot, and starts a new log segment.
//!
//! `format-spec/README.md` describes the files and the protocol normatively.

mod btree;
mod build;
mod checkpoint;
pub(crate) mod delta;
mod lock;
mod log;
mod meta;
mod recovery;
pub(crate) mod values;
mod view;

pub(crate) use delta::{Delta, NewFile};
pub use recovery::Repaired;
pub(crate) use view::View;

use crate::error::{Error, Result};
use crate::format::frame::{
    self, encode_frame, FrameEnd, FLAG_FILES_SYNCED, FLAG_FINAL, NUM_REGISTERS,
};
use crate::format::meta::LIVE_WRITER;
use crate::format::meta::{
    Checkpoint, LIVE_CHECKPOINT_BUSY, LIVE_CHECKPOINT_SEQ, LIVE_PUBLISHED_LSN,
};
use crate::storage::{FsKind, LockKind, Storage, StorageFile};
use btree::IndexFile;
use lock::WriterLock;
use log::{LogCursor, Segment};
use meta::MetaFile;
use parking_lot::{Condvar, Mutex, RwLock};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tree ids.
pub(crate) mod tree {
    /// Encoded key -> record.
    pub const PRIMARY: u8 = 0;
    /// Rowid (big-endian) -> encoded key: insertion order.
    pub const ROWID: u8 = 1;
    /// Expire time (order-preserving) + rowid -> nothing.
    pub const EXPIRE: u8 = 2;
    /// Eviction order of the active policy + rowid -> nothing.
    pub const CULL: u8 = 3;
    /// Rowid -> access time or count (least-recently/frequently-used policies).
    pub const ACCESS: u8 = 4;
    /// Tag length + tag + rowid -> nothing (tag index).
    pub const TAG: u8 = 5;
    /// Setting name -> value.
    pub const SETTINGS: u8 = 6;
}

/// Register ids.
pub(crate) mod reg {
    /// Number of entries (expired ones included).
    pub const COUNT: usize = 0;
    /// Bytes of file-backed values.
    pub const SIZE: usize = 1;
    /// The last rowid handed out.
    pub const LAST_ROWID: usize = 2;
    /// Number of entries with an expire time.
    pub const EXPIRING: usize = 4;
    /// Estimated bytes of entries in the trees (see `cache::entries::entry_bytes`).
    pub const DATA: usize = 5;
    /// The cache's sync level (`SyncLevel::code`; 0: never set, `Normal`).
    pub const SYNC: usize = 6;
}

/// How hard the engine works to make commits durable, as SQLite's `synchronous`. It is a
/// setting of the cache, shared by every handle (stored like the other settings): a commit
/// acknowledged at `Full` survives power loss whatever other handles do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SyncLevel {
    /// Commits and value files are never synced; only checkpoints are (a few syncs per 4 MiB
    /// of log). A process crash loses nothing; a power loss may lose the transactions since
    /// the last checkpoint, and the value files of earlier ones (those entries then read as
    /// misses), but the cache always reopens, with everything a stricter level made durable
    /// before.
    Off,
    /// Fsync at checkpoints (default), value files included. Power loss may lose the
    /// transactions since the last checkpoint, but the cache always reopens at a transaction
    /// boundary.
    #[default]
    Normal,
    /// Fsync every commit, and each value file before the commit that refers to it: a
    /// commit that has returned survives power loss.
    Full,
}

impl SyncLevel {
    /// The level's register value.
    pub(crate) fn code(self) -> u64 {
        match self {
            SyncLevel::Off => 1,
            SyncLevel::Normal => 2,
            SyncLevel::Full => 3,
        }
    }

    /// The level a register holds (0, never set, and unknown values are `Normal`).
    pub(crate) fn from_code(code: u64) -> SyncLevel {
        match code {
            1 => SyncLevel::Off,
            3 => SyncLevel::Full,
            _ => SyncLevel::Normal,
        }
    }

    /// The level's name, as settings store it.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncLevel::Off => "off",
            SyncLevel::Normal => "normal",
            SyncLevel::Full => "full",
        }
    }
}

impl std::str::FromStr for SyncLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(SyncLevel::Off),
            "normal" => Ok(SyncLevel::Normal),
            "full" => Ok(SyncLevel::Full),
            other => Err(Error::InvalidArgument(format!(
                "unknown sync level {other:?} (expected off, normal or full)"
            ))),
        }
    }
}

/// The sync level in effect with these registers.
fn level_of(registers: &[u64; NUM_REGISTERS]) -> SyncLevel {
    SyncLevel::from_code(registers[reg::SYNC])
}

/// Log bytes since the checkpoint above which the last handle to close checkpoints (below
/// it, replaying the log at the next open takes about a millisecond).
const CLOSE_CHECKPOINT_BYTES: u64 = 128 << 10;

/// Engine settings (of this handle; the sync level is the cache's, see [`SyncLevel`]).
#[derive(Clone, Debug)]
pub(crate) struct EngineOptions {
    /// On a network file system, open anyway, for this handle alone: it keeps the presence
    /// lock exclusive, so no other handle, in any process, can open the cache meanwhile.
    pub single_process: bool,
    /// Checkpoint when the log since the last checkpoint passes this many bytes.
    pub checkpoint_bytes: u64,
    /// Checkpoint when value files written since the last checkpoint pass half the bytes of
    /// live value files, clamped to 8 MiB..this (bounds what recovery must verify, what a
    /// checkpoint must fsync, and how long replaced value files wait for removal).
    pub checkpoint_file_bytes: u64,
    /// Compact the index file when it is this many times the live data (and not tiny).
    pub compact_ratio: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            single_process: false,
            checkpoint_bytes: 4 << 20,
            checkpoint_file_bytes: 256 << 20,
            compact_ratio: 2,
        }
    }
}

/// Transactions are split into frames of about this many payload bytes.
const FRAME_SOFT_MAX: usize = 1 << 20;
/// The index file is never compacted below this size.
const COMPACT_MIN: u64 = 4 << 20;

/// `now + timeout`, saturating: a timeout of `Duration::MAX` waits as long as it takes.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// Makes files and directory entries durable on behalf of one handle. A failed sync leaves
/// durability unknown (the kernel may have dropped the data, and a later sync can succeed
/// although it did), so it poisons the handle: it refuses every write until reopened.
#[derive(Clone, Copy)]
pub(crate) struct Syncs<'a> {
    pub storage: &'a dyn Storage,
    poisoned: &'a AtomicBool,
}

impl<'a> Syncs<'a> {
    pub fn new(storage: &'a dyn Storage, poisoned: &'a AtomicBool) -> Syncs<'a> {
        Syncs { storage, poisoned }
    }

    pub fn file(&self, f: &dyn StorageFile, path: &Path) -> Result<()> {
        f.sync().map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            io_err("syncing", path, e)
        })
    }

    pub fn dir(&self, path: &Path) -> Result<()> {
        self.storage.sync_dir(path).map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            io_err("syncing directory", path, e)
        })
    }
}

/// What this handle knows: a checkpoint and the log applied on top of it.
pub(crate) struct State {
    pub ckpt: Checkpoint,
    pub index: Option<Arc<IndexFile>>,
    pub log: LogCursor,
    pub overlay: Delta,
    pub registers: [u64; NUM_REGISTERS],
    /// Bytes of value files created since the checkpoint.
    pub file_bytes: u64,
    /// Per tree, once computed: the first and last checkpointed keys strictly between the
    /// overlay's floor and ceiling.
    edges: [Option<Edges>; frame::NUM_TREES],
}

/// The checkpointed keys next to a tree's floor and ceiling (`None`: there are none).
#[derive(Clone, Debug, Default)]
struct Edges {
    first: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
}

impl State {
    fn new(ckpt: Checkpoint, index: Arc<IndexFile>, segment: Arc<Segment>) -> State {
        State {
            registers: ckpt.registers,
            ckpt,
            index: Some(index),
            log: LogCursor::at_start(segment),
            overlay: Delta::default(),
            file_bytes: 0,
            edges: Default::default(),
        }
    }

    /// Empties the overlay (a checkpoint now holds its changes).
    fn reset_overlay(&mut self) {
        self.overlay = Delta::default();
        self.edges = Default::default();
        self.file_bytes = 0;
    }

    fn tree_ref(&self, t: u8) -> Option<btree::TreeRef<'_>> {
        Some(btree::TreeRef {
            index: self.index.as_deref()?,
            root: self.ckpt.roots.get(usize::from(t)).copied().flatten(),
            published: self.ckpt.index_len,
            tree: t,
        })
    }

    /// The tree's checkpointed keys next to its floor and ceiling (`None` if they cannot be
    /// read: callers then fall back to plain tombstones).
    fn edges(&mut self, t: u8) -> Option<Edges> {
        let i = usize::from(t);
        if let Some(e) = self.edges.get(i)?.clone() {
            return Some(e);
        }
        let d = self.overlay.trees.get(i)?;
        let lo = d.floor.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let hi = d
            .ceiling
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let tr = self.tree_ref(t)?;
        let first = tr
            .cursor(lo, hi, false)
            .ok()?
            .next()
            .transpose()
            .ok()?
            .map(|(k, _)| k.to_vec());
        let last = tr
            .cursor(lo, hi, true)
            .ok()?
            .next()
            .transpose()
            .ok()?
            .map(|(k, _)| k.to_vec());
        let e = Edges { first, last };
        if let Some(slot) = self.edges.get_mut(i) {
            *slot = Some(e.clone());
        }
        Some(e)
    }

    /// Adds a committed transaction to the overlay.
    fn apply(&mut self, txn: Delta) {
        for (mine, theirs) in self.registers.iter_mut().zip(txn.registers.iter()) {
            if let Some(v) = theirs {
                *mine = *v;
            }
        }
        self.file_bytes += txn.new_files.iter().map(|f| f.size).sum::<u64>();
        let Delta {
            trees,
            new_files,
            obsolete_files,
            ..
        } = txn;
        for (i, d) in trees.into_iter().enumerate() {
            let t = i as u8;
            if d.cleared() {
                self.overlay.clear(t);
                if let Some(e) = self.edges.get_mut(i) {
                    *e = None;
                }
            }
            for (k, v) in d.into_sorted() {
                match v {
                    Some(v) => self.overlay.put(t, k, Some(v)),
                    None => self.delete(t, k),
                }
            }
        }
        self.overlay.new_files.extend(new_files);
        self.overlay.obsolete_files.extend(obsolete_files);
    }

    /// Records the deletion of a key: no record if the checkpoint cannot hold it (below its
    /// first or above its last key, or already cut off by an edge), an edge move if it is
    /// the checkpoint's first or last key, else a tombstone.
    fn delete(&mut self, t: u8, k: Vec<u8>) {
        let i = usize::from(t);
        let Some(d) = self.overlay.trees.get(i) else {
            return;
        };
        if d.cleared() || d.excludes_base(&k) {
            self.overlay.remove(t, &k);
            return;
        }
        let Some(e) = self.edges(t) else {
            self.overlay.put(t, k, None);
            return;
        };
        let (Some(first), Some(last)) = (e.first, e.last) else {
            // No checkpointed key between the edges: `k` was only in the overlay.
            self.overlay.remove(t, &k);
            return;
        };
        if k < first || k > last {
            self.overlay.remove(t, &k);
        } else if k == first {
            self.overlay.remove(t, &k);
            self.overlay.set_floor(t, k);
            self.moved_edge(t);
        } else if k == last {
            self.overlay.remove(t, &k);
            self.overlay.set_ceiling(t, k);
            self.moved_edge(t);
        } else {
            self.overlay.put(t, k, None);
        }
    }

    /// After an edge moved: move it on over checkpointed keys already deleted (tombstones
    /// written while the edge was further away).
    fn moved_edge(&mut self, t: u8) {
        let i = usize::from(t);
        loop {
            if let Some(e) = self.edges.get_mut(i) {
                *e = None;
            }
            let Some(e) = self.edges(t) else { return };
            let Some(d) = self.overlay.trees.get(i) else {
                return;
            };
            if let Some(f) = e.first.filter(|f| d.get(f) == Some(None)) {
                self.overlay.remove(t, &f);
                self.overlay.set_floor(t, f);
            } else if let Some(l) = e.last.filter(|l| d.get(l) == Some(None)) {
                self.overlay.remove(t, &l);
                self.overlay.set_ceiling(t, l);
            } else {
                return;
            }
        }
    }
}

/// Counters about the engine's work, for tests and tools.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_at_open: AtomicU64,
    pub checkpoints: AtomicU64,
    pub compactions: AtomicU64,
}

/// A snapshot of the engine's layout, for `stats` tools and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// Sequence number of the current checkpoint.
    pub checkpoint_seq: u64,
    /// Current index file id.
    pub index_file: u64,
    /// Published bytes of the index file.
    pub index_len: u64,
    /// Bytes of the index file reachable from the trees.
    pub index_live: u64,
    /// Current log segment id.
    pub log_segment: u64,
    /// Bytes of log frames since the checkpoint.
    pub log_bytes: u64,
    /// LSN of the last transaction this handle applied.
    pub applied_lsn: u64,
    /// LSN of the first frame after the checkpoint.
    pub log_start_lsn: u64,
    /// Keys changed since the checkpoint (this handle's overlay).
    pub overlay_entries: u64,
    /// Log frames replayed when this handle opened the cache.
    pub frames_replayed_at_open: u64,
    /// Checkpoints this handle has written.
    pub checkpoints: u64,
    /// Compactions this handle has run.
    pub compactions: u64,
}

/// In-process writer exclusion (the file lock excludes other processes; threads sharing one
/// handle share its file descriptor, so they need this too).
#[derive(Debug, Default)]
struct Gate {
    busy: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn acquire(&self, deadline: Instant) -> bool {
        let mut busy = self.busy.lock();
        while *busy {
            if self.cv.wait_until(&mut busy, deadline).timed_out() && *busy {
                return false;
            }
        }
        *busy = true;
        true
    }

    fn release(&self) {
        *self.busy.lock() = false;
        self.cv.notify_one();
    }
}

/// One handle on a cache directory's store.
pub(crate) struct Engine {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub opts: EngineOptions,
    meta: MetaFile,
    wlock: WriterLock,
    state: RwLock<State>,
    gate: Gate,
    poisoned: AtomicBool,
    pub counters: Counters,
    /// The storage's fork epoch when this handle was opened: when it differs, the handle
    /// was inherited by a child process and must not touch the directory's shared state.
    epoch: u64,
    /// The machine's boot id (0: unknown), marked on every frame.
    boot: u32,
}

/// Sleeps a little longer each time, for lock polling.
struct Backoff(u32);

impl Backoff {
    fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if self.0 < 4 {
            std::thread::yield_now();
        } else {
            let us = (20u64 << (self.0 - 4).min(6)).min(1000);
            std::thread::sleep(Duration::from_micros(us).min(deadline - now));
        }
        self.0 += 1;
        true
    }
}

impl Engine {
    /// Opens (creating if needed) the store in `dir`, which must exist.
    pub fn open(
        dir: &Path,
        storage: Arc<dyn Storage>,
        opts: EngineOptions,
        timeout: Duration,
    ) -> Result<Arc<Engine>> {
        let epoch = storage.fork_epoch();
        let fs = storage
            .fs_kind(dir)
            .map_err(|e| io_err("inspecting the file system of", dir, e))?;
        if let (FsKind::Network(name), false) = (fs, opts.single_process) {
            return Err(Error::Unsupported(format!(
                "{} is on a network file system ({name}): it gives processes neither a \
                 coherent shared mapping nor reliable locks, so a cache there could be \
                 corrupted by two processes at once. Use a local directory, or open the \
                 cache for a single process (the builder's `single_process`), which then \
                 keeps every other handle out",
                dir.display()
            )));
        }
        for sub in ["log", "index", "values"] {
            let p = dir.join(sub);
            storage
                .create_dir_all(&p)
                .map_err(|e| io_err("creating directory", &p, e))?;
        }
        let deadline = deadline_after(timeout);
        let mut backoff = Backoff(0);
        let (meta, locks, cold) = loop {
            if let Some(meta) = MetaFile::open(&*storage, dir)? {
                let locks = storage
                    .open_locks(&meta.path)
                    .map_err(|e| io_err("opening the locks of", &meta.path, e))?;
                let lock = |kind| {
                    locks
                        .try_presence(kind)
                        .map_err(|e| io_err("locking", &meta.path, e))
                };
                let cold = loop {
                    if lock(LockKind::Exclusive)? {
                        break true;
                    }
                    if opts.single_process {
                        return Err(Error::Unsupported(format!(
                            "{} is open in another handle, and this one asked to be the \
                             only one (single-process mode)",
                            dir.display()
                        )));
                    }
                    if lock(LockKind::Shared)? {
                        break false;
                    }
                    // Another handle is recovering the cache.
                    if !backoff.wait(deadline) {
                        return Err(Error::Timeout { removed: 0 });
                    }
                };
                break (meta, locks, cold);
            }
            if let Some((meta, locks)) = recovery::create(&*storage, dir)? {
                break (meta, locks, true);
            }
            // Another handle is creating the cache.
            if !backoff.wait(deadline) {
                return Err(Error::Timeout { removed: 0 });
            }
        };
        meta.check_header()?;
        let mut meta = meta;
        meta.attach_live(&*storage, cold)?;
        let boot = storage.boot_id();
        let mut frames = 0;
        let state = if cold {
            // No other handle has the directory open: this one recovers it.
            let (state, n) = recovery::recover(&*storage, dir, &meta, boot)?;
            frames = n;
            if !opts.single_process {
                // Keep presence, but shared: others may join now.
                let mut backoff = Backoff(0);
                while !locks
                    .try_presence(LockKind::Shared)
                    .map_err(|e| io_err("locking", &meta.path, e))?
                {
                    if !backoff.wait(deadline) {
                        return Err(Error::Timeout { removed: 0 });
                    }
                }
            }
            state
        } else {
            let want = meta.load(LIVE_CHECKPOINT_SEQ);
            load_state(&*storage, dir, &meta, Some(want))?
        };
        let wlock = WriterLock::new(locks).map_err(|e| io_err("locking", &meta.path, e))?;
        let eng = Arc::new(Engine {
            dir: dir.to_path_buf(),
            storage,
            opts,
            meta,
            wlock,
            state: RwLock::new(state),
            gate: Gate::default(),
            poisoned: AtomicBool::new(false),
            counters: Counters::default(),
            epoch,
            boot,
        });
        if !cold {
            let mut st = eng.state.write();
            frames = eng.catch_up(&mut st)?;
        }
        eng.counters
            .frames_at_open
            .store(frames as u64, Ordering::Relaxed);
        Ok(eng)
    }

    /// Rebuilds `dir`'s meta file if it is missing or damaged (see [`recovery::repair`]).
    pub fn repair(dir: &Path, storage: &dyn Storage) -> Result<Repaired> {
        recovery::repair(storage, dir)
    }

    /// Whether this handle was inherited by a child process across `fork()`: it then
    /// belongs to the parent, and must neither write nor release anything (the caller opens
    /// a new handle in the child instead).
    pub fn foreign(&self) -> bool {
        self.storage.fork_epoch() != self.epoch
    }

    /// Syncs on behalf of this handle (a failure poisons it).
    pub(crate) fn syncs(&self) -> Syncs<'_> {
        Syncs::new(&*self.storage, &self.poisoned)
    }

    /// The cache's sync level, as this handle last saw it.
    pub fn sync_level(&self) -> SyncLevel {
        level_of(&self.state.read().registers)
    }

    /// Writes a new value file holding `data` (made durable first if the cache's sync level
    /// is Full), for a transaction to refer to.
    pub fn write_value(&self, data: &mut dyn std::io::Read) -> Result<NewFile> {
        self.check_writable()?;
        let full = self.sync_level() == SyncLevel::Full;
        values::write(&*self.storage, &self.dir, full.then(|| self.syncs()), data)
    }

    /// As [`Engine::write_value`], from bytes in memory.
    pub fn write_value_bytes(&self, data: &[u8]) -> Result<NewFile> {
        self.check_writable()?;
        let full = self.sync_level() == SyncLevel::Full;
        values::write_bytes(&*self.storage, &self.dir, full.then(|| self.syncs()), data)
    }

    fn check_writable(&self) -> Result<()> {
        if self.foreign() {
            return Err(Error::Forked);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::PreviousIo);
        }
        Ok(())
    }

    /// The meta file (live-page counters such as statistics).
    pub fn live_add(&self, word: usize, n: u64) {
        self.meta.add(word, n);
    }

    pub fn live_load(&self, word: usize) -> u64 {
        self.meta.load(word)
    }

    pub fn live_swap(&self, word: usize, v: u64) -> u64 {
        self.meta.swap(word, v)
    }

    /// Value files named by the log since the checkpoint: created (and maybe not yet
    /// durable), and no longer referenced (removed by the next checkpoint).
    pub fn pending_files(&self) -> (Vec<String>, Vec<String>) {
        let st = self.state.read();
        let new = st
            .overlay
            .new_files
            .iter()
            .map(|f| f.name.clone())
            .collect();
        (new, st.overlay.obsolete_files.clone())
    }

    fn up_to_date(&self, st: &State) -> bool {
        st.ckpt.seq == self.meta.load(LIVE_CHECKPOINT_SEQ)
            && st.log.applied_lsn == self.meta.load(LIVE_PUBLISHED_LSN)
    }

    /// Runs `f` on an up-to-date view.
    pub fn read<R>(&self, f: impl FnOnce(&View<'_>) -> Result<R>) -> Result<R> {
        {
            let st = self.state.read();
            if self.up_to_date(&st) {
                return f(&View {
                    st: &st,
                    pending: None,
                });
            }
        }
        let mut st = self.state.write();
        if !self.up_to_date(&st) {
            self.catch_up(&mut st)?;
        }
        let st = parking_lot::RwLockWriteGuard::downgrade(st);
        f(&View {
            st: &st,
            pending: None,
        })
    }

    /// Applies everything published since this handle last looked.
    fn catch_up(&self, st: &mut State) -> Result<usize> {
        let mut applied = 0;
        for _ in 0..1000 {
            let seq = self.meta.load(LIVE_CHECKPOINT_SEQ);
            if seq != st.ckpt.seq {
                match load_state(&*self.storage, &self.dir, &self.meta, Some(seq)) {
                    Ok(new) => {
                        *st = new;
                    }
                    Err(e) if self.meta.load(LIVE_CHECKPOINT_SEQ) != seq => {
                        // A newer checkpoint removed what this one named; try again.
                        let _ = e;
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let published = self.meta.load(LIVE_PUBLISHED_LSN);
            match self.apply_log(st, published) {
                Ok(n) => return Ok(applied + n),
                Err(None) => {
                    // The log moved under us (a checkpoint): start over.
                    std::thread::yield_now();
                }
                Err(Some(e)) => return Err(e),
            }
            applied = 0;
        }
        Err(Error::corrupted(
            self.dir.join("meta"),
            0,
            "the published log position never becomes readable",
        ))
    }

    /// Applies frames up to LSN `published`. `Err(None)`: a checkpoint intervened, retry.
    fn apply_log(
        &self,
        st: &mut State,
        published: u64,
    ) -> std::result::Result<usize, Option<Error>> {
        let mut cur = st.log.clone();
        let mut txn = Delta::default();
        let mut applied = 0;
        while cur.applied_lsn < published {
            let f = cur
                .segment
                .read_frame(cur.offset, cur.prev_crc, cur.applied_lsn + 1)
                .map_err(Some)?;
            match f {
                Ok(f) => {
                    txn.apply_payload(&f.payload).map_err(|e| {
                        Some(Error::corrupted(
                            &cur.segment.path,
                            cur.offset
                                + crate::format::frame::FRAME_HEADER_LEN as u64
                                + e.offset as u64,
                            e.detail,
                        ))
                    })?;
                    cur.offset += f.len as u64;
                    cur.prev_crc = f.crc;
                    cur.applied_lsn = f.lsn;
                    applied += 1;
                    if f.flags & FLAG_FINAL != 0 {
                        st.apply(std::mem::take(&mut txn));
                        st.log = cur.clone();
                    }
                }
                Err(end) => {
                    if self.meta.load(LIVE_CHECKPOINT_SEQ) != st.ckpt.seq {
                        return Err(None);
                    }
                    let detail = match end {
                        FrameEnd::Short => "log ends before the published position".to_string(),
                        FrameEnd::Invalid(why) => why,
                    };
                    return Err(Some(Error::corrupted(
                        &cur.segment.path,
                        cur.offset,
                        detail,
                    )));
                }
            }
        }
        Ok(applied)
    }

    /// Begins a write transaction: takes the writer locks (waiting at most `timeout`) and
    /// catches up with the log.
    pub fn begin(self: &Arc<Self>, timeout: Duration) -> Result<WriteTxn> {
        self.check_writable()?;
        let deadline = deadline_after(timeout);
        if !self.gate.acquire(deadline) {
            return Err(Error::Timeout { removed: 0 });
        }
        let mut txn = WriteTxn {
            eng: Arc::clone(self),
            pending: Delta::default(),
            held: true,
            base_registers: [0; NUM_REGISTERS],
        };
        let word = self.meta.atomic(LIVE_WRITER)?;
        let mut backoff = Backoff(0);
        let mut next_probe = Instant::now() + Duration::from_millis(2);
        loop {
            if self.wlock.try_acquire(word) {
                break;
            }
            let now = Instant::now();
            if now >= next_probe {
                // Waited a while: is the holder alive?
                next_probe = now + Duration::from_millis(10);
                match self.wlock.take_from_dead(word) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        self.gate.release();
                        txn.held = false;
                        return Err(io_err("probing the writer's lock in", &self.meta.path, e));
                    }
                }
            }
            if !backoff.wait(deadline) {
                self.gate.release();
                txn.held = false;
                return Err(Error::Timeout { removed: 0 });
            }
        }
        // From here on, dropping `txn` releases both locks.
        if self.meta.load(LIVE_CHECKPOINT_BUSY) != 0 {
            self.finish_abandoned_checkpoint()?;
        }
        {
            let st = self.state.read();
            if self.up_to_date(&st) {
                txn.base_registers = st.registers;
                return Ok(txn);
            }
        }
        let mut st = self.state.write();
        self.catch_up(&mut st)?;
        txn.base_registers = st.registers;
        drop(st);
        Ok(txn)
    }

    /// Settles a checkpoint whose publication was left unfinished (its checkpointer died or
    /// failed; the writer lock is held): the slots, made durable, say which checkpoint is
    /// current, not the live page. If the unfinished one did not become current, the log
    /// segment (and index file) it created are removed, durably, before anything is built
    /// on the current checkpoint: recovery adopts a newer checkpoint copy found in a
    /// segment header (a damaged or torn slot), so none may outlive its abandonment.
    fn finish_abandoned_checkpoint(&self) -> Result<()> {
        self.syncs().file(&*self.meta.file, &self.meta.path)?;
        let c = self.meta.best_checkpoint(None)?;
        if checkpoint::remove_newer(&self.storage, &self.dir, &c) {
            self.syncs().dir(&self.dir.join("log"))?;
        }
        self.meta.store(LIVE_CHECKPOINT_SEQ, c.seq);
        self.meta.store(LIVE_CHECKPOINT_BUSY, 0);
        Ok(())
    }

    /// For a handle that is closing: if no other handle has the cache open and the log since
    /// the checkpoint is long enough to slow the next open, checkpoints now (as SQLite
    /// checkpoints its write-ahead log when its last connection closes), so that the next
    /// open replays almost nothing. Best effort: does nothing if another handle is open or
    /// the writer lock stays busy.
    pub fn checkpoint_at_close(self: &Arc<Self>) -> Result<()> {
        if self.foreign() || self.state.read().log.bytes() < CLOSE_CHECKPOINT_BYTES {
            return Ok(());
        }
        let lock = |kind| {
            self.wlock
                .try_presence(kind)
                .map_err(|e| io_err("locking", &self.meta.path, e))
        };
        // Exclusive presence: no other handle, in any process, has the cache open (and none
        // can open it until this is done). A single-process handle holds it already.
        if !self.opts.single_process && !lock(LockKind::Exclusive)? {
            // A refused conversion may have dropped the shared lock: take it back.
            let _ = lock(LockKind::Shared);
            return Ok(());
        }
        let r = (|| {
            let txn = self.begin(Duration::from_millis(100))?;
            let level = level_of(&txn.base_registers);
            let r = checkpoint::checkpoint(self, level);
            txn.rollback();
            r
        })();
        // The handle is closing, but keep presence shared until it is gone.
        if !self.opts.single_process {
            let _ = lock(LockKind::Shared);
        }
        r
    }

    /// Layout and counters, for tools and tests.
    pub fn info(&self) -> EngineInfo {
        let st = self.state.read();
        EngineInfo {
            checkpoint_seq: st.ckpt.seq,
            index_file: st.ckpt.index_file,
            index_len: st.ckpt.index_len,
            index_live: st.ckpt.index_live,
            log_segment: st.log.segment.id,
            log_bytes: st.log.bytes(),
            applied_lsn: st.log.applied_lsn,
            log_start_lsn: st.ckpt.log_start_lsn,
            overlay_entries: st.overlay.entries as u64,
            frames_replayed_at_open: self.counters.frames_at_open.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
        }
    }
}

/// Loads the state of checkpoint `want` (or the newest valid one).
fn load_state(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaFile,
    want: Option<u64>,
) -> Result<State> {
    let ckpt = meta.best_checkpoint(want)?;
    let index = match IndexFile::open(storage, dir, ckpt.index_file, ckpt.index_len) {
        Ok(r) => r?,
        Err(e) => {
            return Err(io_err(
                "opening",
                &btree::index_path(dir, ckpt.index_file),
                e,
            ))
        }
    };
    let seg = match Segment::open(storage, dir, ckpt.log_segment) {
        Ok(r) => r?,
        Err(e) => {
            return Err(io_err(
                "opening",
                &log::segment_path(dir, ckpt.log_segment),
                e,
            ))
        }
    };
    check_segment(&seg, &ckpt)?;
    Ok(State::new(ckpt, Arc::new(index), Arc::new(seg)))
}

fn check_segment(seg: &Segment, ckpt: &Checkpoint) -> Result<()> {
    if seg.header.segment_id != ckpt.log_segment
        || seg.header.start_lsn != ckpt.log_start_lsn
        || seg.header.start_lsn == 0
    {
        return Err(Error::corrupted(
            &seg.path,
            16,
            format!(
                "segment {} starts at LSN {}, but the checkpoint expects segment {} at LSN {}",
                seg.header.segment_id, seg.header.start_lsn, ckpt.log_segment, ckpt.log_start_lsn
            ),
        ));
    }
    Ok(())
}

/// A write transaction. It holds the writer locks until committed, rolled back or dropped;
/// its changes are visible only through [`WriteTxn::view`] until it commits.
pub(crate) struct WriteTxn {
    eng: Arc<Engine>,
    pending: Delta,
    held: bool,
    /// Register values at `begin` (the state cannot change while the locks are held).
    base_registers: [u64; NUM_REGISTERS],
}

impl WriteTxn {
    /// Reads through the pending changes.
    pub fn view<R>(&self, f: impl FnOnce(&View<'_>) -> R) -> R {
        let st = self.eng.state.read();
        f(&View {
            st: &st,
            pending: Some(&self.pending),
        })
    }

    pub fn put(&mut self, tree: u8, key: Vec<u8>, value: Vec<u8>) {
        self.pending.put(tree, key, Some(value));
    }

    pub fn del(&mut self, tree: u8, key: Vec<u8>) {
        self.pending.put(tree, key, None);
    }

    pub fn clear_tree(&mut self, tree: u8) {
        self.pending.clear(tree);
    }

    pub fn set_register(&mut self, i: usize, v: u64) {
        if let Some(r) = self.pending.registers.get_mut(i) {
            *r = Some(v);
        }
    }

    pub fn register(&self, i: usize) -> u64 {
        match self.pending.registers.get(i) {
            Some(Some(v)) => *v,
            _ => self.base_registers.get(i).copied().unwrap_or(0),
        }
    }

    /// Records a value file this transaction created (deleted if it rolls back).
    pub fn new_file(&mut self, f: NewFile) {
        self.pending.new_files.push(f);
    }

    /// Records a value file this transaction stops referencing (deleted once durable).
    pub fn obsolete_file(&mut self, name: String) {
        self.pending.obsolete_files.push(name);
    }

    /// Commits: the changes become visible to every handle at once, and the locks are
    /// released.
    pub fn commit(mut self) -> Result<()> {
        let res = self.commit_inner();
        self.release();
        res
    }

    /// Discards the changes and releases the locks.
    pub fn rollback(mut self) {
        self.discard();
        self.release();
    }

    fn discard(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        // In a forked child, the files (and the lock) are the parent's transaction's.
        if self.eng.foreign() {
            return;
        }
        for f in pending.new_files {
            values::remove(&*self.eng.storage, &self.eng.dir, &f.name);
        }
    }

    fn release(&mut self) {
        if self.held {
            self.held = false;
            if self.eng.foreign() {
                // The writer lock is the parent's (the child inherited this transaction
                // across fork()); so is the in-process gate's state.
                return;
            }
            if let Ok(word) = self.eng.meta.atomic(LIVE_WRITER) {
                self.eng.wlock.release(word);
            }
            self.eng.gate.release();
        }
    }

    /// The sync level in effect for this transaction's commit: the stricter of the level
    /// it began under and the one it sets (a commit that lowers it is still made durable as
    /// the old level promised).
    fn commit_level(&self) -> (SyncLevel, SyncLevel) {
        let before = level_of(&self.base_registers);
        let after = SyncLevel::from_code(self.register(reg::SYNC));
        (before.max(after), after)
    }

    fn commit_inner(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let eng = Arc::clone(&self.eng);
        if let Err(e) = eng.check_writable() {
            self.discard();
            return Err(e);
        }
        let (level, new_level) = self.commit_level();
        if level == SyncLevel::Full {
            // Every value file of a Full commit is durable before the frame that names it
            // (files written while the level was lower are synced now).
            let syncs = eng.syncs();
            for f in self.pending.new_files.iter_mut().filter(|f| !f.synced) {
                if let Err(e) = values::sync_file(&syncs, &eng.dir, &f.name) {
                    self.discard();
                    return Err(e);
                }
                f.synced = true;
            }
        }
        let cursor = eng.state.read().log.clone();
        let payloads = self.pending.encode_payloads(FRAME_SOFT_MAX);
        let mut bytes = Vec::with_capacity(payloads.iter().map(|p| p.len() + 32).sum());
        let (mut crc, mut lsn) = (cursor.prev_crc, cursor.applied_lsn);
        let last = payloads.len().saturating_sub(1);
        for (i, p) in payloads.iter().enumerate() {
            lsn += 1;
            let mut flags = 0;
            if i == last {
                flags |= FLAG_FINAL;
                if level == SyncLevel::Full {
                    flags |= FLAG_FILES_SYNCED;
                }
            }
            crc = encode_frame(&mut bytes, crc, lsn, flags, eng.boot, p);
        }
        let seg = Arc::clone(&cursor.segment);
        let end = cursor.offset + bytes.len() as u64;
        let map = match seg.reserve(cursor.offset, end) {
            Ok(m) => m,
            Err(e) => {
                self.discard();
                return Err(e);
            }
        };
        if let Err(e) = seg.write(&map, cursor.offset, &bytes) {
            self.discard();
            return Err(e);
        }
        if level == SyncLevel::Full {
            if let Err(e) = eng.syncs().file(&*seg.file, &seg.path) {
                // Durability is unknown (the handle is poisoned): unpublish the frames.
                let _ = seg.write(&map, cursor.offset, &[0u8; 8]);
                self.discard();
                return Err(e);
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let need_checkpoint = {
            let mut st = eng.state.write();
            st.apply(pending);
            st.log = LogCursor {
                segment: seg,
                offset: end,
                prev_crc: crc,
                applied_lsn: lsn,
            };
            eng.meta.store(LIVE_PUBLISHED_LSN, lsn);
            // Value files written since the checkpoint are verified by recovery, and the
            // ones replaced since are removed only by the next checkpoint: bound both.
            let file_limit =
                (st.registers[reg::SIZE] / 2).clamp(8 << 20, eng.opts.checkpoint_file_bytes);
            st.log.bytes() >= eng.opts.checkpoint_bytes
                || st.file_bytes >= file_limit
                // Lowering the level: what the old one promised is made durable now.
                || new_level < level
        };
        if need_checkpoint {
            // The commit has succeeded; a failed checkpoint leaves the last one in force and
            // is retried by the next commit.
            let _ = checkpoint::checkpoint(&eng, level);
        }
        Ok(())
    }

    /// Checkpoints now (tests and tools); the transaction must have no pending changes.
    #[cfg(test)]
    pub fn checkpoint(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::InvalidArgument(
                "checkpoint inside a transaction with changes".into(),
            ));
        }
        checkpoint::checkpoint(&self.eng, level_of(&self.base_registers))
    }

    /// Checkpoints, then rewrites the index file with only live data.
    pub fn compact(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::InvalidArgument(
                "compaction inside a transaction with changes".into(),
            ));
        }
        let level = level_of(&self.base_registers);
        checkpoint::checkpoint(&self.eng, level)?;
        checkpoint::compact(&self.eng, level)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A live page kept in shared memory is removed by the last handle to close (the next
        // first handle makes a new one): with the presence lock held exclusively, no other
        // handle uses it, and none can join before this one's locks are gone.
        if let Some(p) = &self.meta.live_path {
            if !self.foreign()
                && self
                    .wlock
                    .try_presence(LockKind::Exclusive)
                    .unwrap_or(false)
            {
                let _ = self.storage.remove_file(p);
            }
        }
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if self.held {
            self.discard();
            self.release();
        }
    }
}

#[cfg(test)]
mod tests;
