//! [`Cache`]: python-diskcache's `Cache` on the log-structured engine.

mod admin;
mod binding;
mod check;
mod core;
pub(crate) mod entries;
mod iter;
mod memo;
mod queue;
mod raw;
mod removal;
pub(crate) mod settings;
mod value;

pub use binding::{take_displaced_files, Number, Prepared, RawData, RawFound, TxnControl};
pub use check::{Warning, WarningKind};
pub(crate) use core::StoreTimeout;
pub(crate) use iter::Live;
pub use iter::{Keys, Values};
pub(crate) use memo::call_key as memo_call_key;
pub use memo::{MemoizeOptions, Memoized};
pub use queue::{QueueOptions, Side};
pub use raw::{RawEntry, ValueKind};
pub use settings::EvictionPolicy;
pub(crate) use settings::SIZE_LIMIT as SIZE_LIMIT_SETTING;
pub use value::{with_clock, Entry, SetOptions, Value, ValueReader};

use crate::codec::{Bincode, Codec};
use crate::engine::{Engine, EngineInfo, EngineOptions, Repaired, SyncLevel, View, WriteTxn};
use crate::error::{Error, Result};
use crate::storage::{OsStorage, Storage};
use entries::Access;
use parking_lot::{Mutex, RwLock};
use serde_json::Value as Json;
use settings::Settings;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A persistent, process-safe cache in a directory.
///
/// Any number of `Cache` handles, in one process or many, may use one directory at once: a
/// write that has returned is seen by the next read of every handle, readers never wait for
/// writers, and writers exclude each other with a file lock (waiting at most the
/// [timeout](CacheBuilder::timeout), then failing with [`Error::Timeout`]). A handle is
/// `Send + Sync` and cheap to clone (clones share it); dropping the last clone closes it.
///
/// A handle survives `fork()`: in the child process it notices on its next use that it was
/// inherited, leaves the parent's locks and files alone, and opens the cache again as a
/// handle of the child (a transaction the parent had open at the fork cannot be finished
/// in the child: it fails with [`Error::Forked`]).
///
/// Keys are any `Serialize` value (see [`Key`](crate::Key)); values are strings, byte
/// strings, integers and floats natively, and anything else `Serialize +
/// DeserializeOwned` through the cache's [`Codec`].
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::{Cache, SetOptions};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let cache = Cache::open(dir.path())?;
/// cache.set("key", "value")?;
/// assert_eq!(cache.get::<String>("key")?, Some("value".to_string()));
/// cache.set_with(&(1, "tuple key"), &vec![1.5, 2.5], &SetOptions::new().expire(Duration::from_secs(60)).tag("floats"))?;
/// assert_eq!(cache.incr("hits", 1)?, 1);
/// assert!(cache.delete("key")?);
/// assert_eq!(cache.len()?, 2);
/// # Ok(())
/// # }
/// ```
pub struct Cache<C: Codec = Bincode> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Codec> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("directory", &self.inner.dir)
            .field("codec", &self.inner.codec.name())
            .finish()
    }
}

struct Inner<C> {
    engine: Arc<Engine>,
    codec: Arc<C>,
    dir: PathBuf,
    timeout: Duration,
    /// In a child process that inherited this handle across `fork()`: the child's own
    /// handle on the cache, opened at its first use.
    next: OnceLock<Arc<Inner<C>>>,
    settings: RwLock<Arc<Settings>>,
    txn: Mutex<Option<WriteTxn>>,
    /// Token of the thread that owns `txn` (0: none).
    txn_owner: AtomicU64,
    accesses: Mutex<Vec<(u64, Access)>>,
}

impl<C> Drop for Inner<C> {
    fn drop(&mut self) {
        if self.engine.foreign() {
            // Inherited across fork(): the accesses, locks and log belong to the parent.
            return;
        }
        // Best effort: a handle's last accesses are worth keeping, but not worth failing on.
        let pending = std::mem::take(&mut *self.accesses.lock());
        if !pending.is_empty() {
            if let Ok(mut txn) = self.engine.begin(Duration::from_millis(100)) {
                let s = self.settings.read().clone();
                if entries::apply_accesses(&mut txn, &s, &pending).is_ok() {
                    let _ = txn.commit();
                }
            }
        }
        // The last handle out checkpoints, so the next open is quick.
        let _ = self.engine.checkpoint_at_close();
    }
}

impl<C: Codec> Inner<C> {
    /// Opens a handle's state: the engine, with `changes` to the stored settings.
    fn open(
        dir: &Path,
        storage: Arc<dyn Storage>,
        engine_opts: EngineOptions,
        codec: Arc<C>,
        timeout: Duration,
        open_timeout: Duration,
        mut changes: BTreeMap<String, Json>,
    ) -> Result<Inner<C>> {
        let engine = Engine::open(dir, storage, engine_opts, open_timeout)?;
        let stored = engine.read(settings::stored)?;
        match stored.get(settings::CODEC).and_then(Json::as_str) {
            Some(name) if name != codec.name() => {
                return Err(Error::CodecMismatch {
                    stored: name.to_owned(),
                    requested: codec.name().to_owned(),
                })
            }
            Some(_) => {}
            None => {
                changes.insert(settings::CODEC.to_owned(), codec.name().into());
            }
        }
        changes.retain(|k, v| stored.get(k) != Some(v));
        if !changes.is_empty() {
            let mut txn = engine.begin(open_timeout)?;
            // Another opener may have stored the codec meanwhile.
            if let Some(name) = txn.view(|v| settings::get(v, settings::CODEC))? {
                if name.as_str() != Some(codec.name()) {
                    return Err(Error::CodecMismatch {
                        stored: name.as_str().unwrap_or_default().to_owned(),
                        requested: codec.name().to_owned(),
                    });
                }
            }
            settings::store(&mut txn, &changes)?;
            txn.commit()?;
        }
        let s = engine.read(settings::load)?;
        Ok(Inner {
            engine,
            codec,
            dir: dir.to_path_buf(),
            timeout,
            next: OnceLock::new(),
            settings: RwLock::new(Arc::new(s)),
            txn: Mutex::new(None),
            txn_owner: AtomicU64::new(0),
            accesses: Mutex::new(Vec::new()),
        })
    }

    /// The state to use in this process: this one, or, in a child that inherited it across
    /// `fork()`, the child's own handle on the cache (opened now if this is its first use).
    /// Inherited state is never used: its locks, transaction and pending accesses are the
    /// parent's, and a lock another parent thread held at the fork would never be released.
    #[inline]
    fn live(&self) -> Result<&Inner<C>> {
        if self.engine.foreign() {
            self.successor()
        } else {
            Ok(self)
        }
    }

    #[cold]
    fn successor(&self) -> Result<&Inner<C>> {
        if self.next.get().is_none() {
            let fresh = Inner::open(
                &self.dir,
                Arc::clone(&self.engine.storage),
                self.engine.opts.clone(),
                Arc::clone(&self.codec),
                self.timeout,
                self.timeout,
                BTreeMap::new(),
            )?;
            // Another thread of the child may have opened one first: use that one.
            let _ = self.next.set(Arc::new(fresh));
        }
        match self.next.get() {
            Some(next) => next.live(),
            None => Err(Error::Forked),
        }
    }

    fn in_txn(&self) -> bool {
        self.txn_owner.load(Ordering::Acquire) == thread_token()
    }
}

/// Accesses are written to the index once this many have been recorded.
const ACCESS_BATCH: usize = 128;
/// Recorded accesses beyond this many are dropped while the writer lock stays busy.
const ACCESS_MAX: usize = 8192;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_TOKEN: u64 = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
}

/// A number unique to the calling thread for the life of the process.
pub(crate) fn thread_token() -> u64 {
    THREAD_TOKEN.with(|t| *t)
}

/// Settings for opening a [`Cache`]; see [`Cache::builder`].
///
/// The settings that python-diskcache stores in the cache (`size_limit`, `cull_limit`,
/// `eviction_policy`, `statistics`, `tag_index`, `min_file_size`) are stored here too: given
/// ones override the stored ones and are stored, others keep their stored value (or the
/// default, for a new cache). `timeout` and `sync` belong to the handle.
#[derive(Clone, Debug)]
pub struct CacheBuilder<C: Codec = Bincode> {
    codec: C,
    timeout: Duration,
    engine: EngineOptions,
    storage: Option<Arc<dyn Storage>>,
    file_mode: Option<u32>,
    overrides: BTreeMap<String, Json>,
    /// How long opening waits for the writer lock, if not `timeout` (collections built on
    /// caches with short timeouts still open patiently).
    open_timeout: Option<Duration>,
}

/// python-diskcache's default `timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for CacheBuilder<Bincode> {
    fn default() -> Self {
        CacheBuilder {
            codec: Bincode,
            timeout: DEFAULT_TIMEOUT,
            engine: EngineOptions::default(),
            storage: None,
            file_mode: None,
            overrides: BTreeMap::new(),
            open_timeout: None,
        }
    }
}

impl<C: Codec> CacheBuilder<C> {
    fn set(mut self, name: &str, v: Json) -> Self {
        self.overrides.insert(name.to_owned(), v);
        self
    }

    /// Soft limit on [`Cache::volume`] in bytes (default 1 GiB); automatic culling keeps
    /// the cache near it.
    pub fn size_limit(self, bytes: u64) -> Self {
        self.set(settings::SIZE_LIMIT, bytes.into())
    }

    /// Most items a write removes by automatic culling (default 10); 0 disables automatic
    /// culling, expired items included.
    pub fn cull_limit(self, n: u64) -> Self {
        self.set(settings::CULL_LIMIT, n.into())
    }

    /// Eviction policy (default least-recently-stored).
    pub fn eviction_policy(self, p: EvictionPolicy) -> Self {
        self.set(settings::EVICTION_POLICY, p.as_str().into())
    }

    /// Count hits and misses (default off).
    pub fn statistics(self, on: bool) -> Self {
        self.set(settings::STATISTICS, on.into())
    }

    /// Keep an index of tags so [`Cache::evict`] needs no scan (default off).
    pub fn tag_index(self, on: bool) -> Self {
        self.set(settings::TAG_INDEX, on.into())
    }

    /// Values of at least this many bytes go to their own files (default 32 KiB, at most
    /// 4 MiB).
    pub fn min_file_size(self, bytes: u64) -> Self {
        self.set(settings::MIN_FILE_SIZE, bytes.into())
    }

    /// How long a write waits for the writer lock before [`Error::Timeout`] (default 60 s).
    /// python-diskcache's `retry=True` (wait as long as it takes) is `Duration::MAX`.
    /// Reads never wait for the writer lock, whatever the policy and statistics settings.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Durability (default [`SyncLevel::Normal`]). This is a setting of the cache, shared
    /// by every handle (like the others it is stored, and [`Cache::reset`] changes it, as
    /// `"sync"`): a commit acknowledged at `Full` survives power loss whatever other
    /// handles do.
    pub fn sync(self, level: SyncLevel) -> Self {
        self.set(settings::SYNC, level.as_str().into())
    }

    /// The mode of the files this handle creates (default `0o600`, owner only; directories
    /// get `0o700`), for caches shared by the members of a group: `0o660` (directories
    /// `0o770`). The mode of an existing directory is never changed. Ignored with a custom
    /// [`storage`](CacheBuilder::storage).
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode);
        self
    }

    /// Allows a cache on a network file system (NFS, SMB, ...), which is refused otherwise:
    /// those file systems give processes neither coherent shared mappings nor reliable
    /// locks. The handle then keeps every other handle out, in this process or any other,
    /// until it is dropped (opening a second one fails).
    pub fn single_process(mut self, on: bool) -> Self {
        self.engine.single_process = on;
        self
    }

    /// Checkpoint when the log since the last checkpoint passes this many bytes
    /// (default 4 MiB). Larger means fewer, bigger checkpoints and more memory per handle.
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.engine.checkpoint_bytes = bytes.max(4096);
        self
    }

    /// The file system to use (default the operating system's; tests pass a
    /// [`FaultyStorage`](crate::storage::FaultyStorage)).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The codec for values that are not stored natively (default [`Bincode`]).
    pub fn codec<D: Codec>(self, codec: D) -> CacheBuilder<D> {
        CacheBuilder {
            codec,
            timeout: self.timeout,
            engine: self.engine,
            storage: self.storage,
            file_mode: self.file_mode,
            overrides: self.overrides,
            open_timeout: self.open_timeout,
        }
    }

    /// Waits up to `t` for the writer lock while opening, whatever the timeout.
    pub(crate) fn open_timeout(mut self, t: Duration) -> Self {
        self.open_timeout = Some(t);
        self
    }

    /// This builder's codec, storage and engine options, with no stored settings given and
    /// the default timeout (for the sub-collections of a fanout cache).
    pub(crate) fn handle_options(&self) -> CacheBuilder<C>
    where
        C: Clone,
    {
        CacheBuilder {
            codec: self.codec.clone(),
            timeout: DEFAULT_TIMEOUT,
            engine: self.engine.clone(),
            storage: self.storage.clone(),
            file_mode: self.file_mode,
            overrides: BTreeMap::new(),
            open_timeout: None,
        }
    }

    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Cache<C>> {
        Cache::open_with(dir.as_ref(), self)
    }

    /// Rebuilds the meta file of the cache in `dir` if it is missing or damaged, from the
    /// newest copy of a checkpoint in a log segment's header; the next open then replays the
    /// log after it, so nothing committed is lost. Opening refuses a cache whose meta file
    /// is missing or empty beside its log and index files (it never starts afresh over
    /// them): this is the way back. A sound meta file is left alone ([`Repaired::Nothing`]).
    ///
    /// Run it only while no process uses the cache: a process that still has the old meta
    /// file open would not see the new one.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.set("key", "value")?;
    /// drop(cache);
    /// std::fs::remove_file(dir.path().join("meta")).unwrap();
    /// assert!(diskcache::Cache::open(dir.path()).is_err());
    /// assert!(matches!(
    ///     diskcache::Cache::builder().repair(dir.path())?,
    ///     diskcache::Repaired::MetaRebuilt { .. }
    /// ));
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// assert_eq!(cache.get::<String>("key")?.as_deref(), Some("value"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn repair(&self, dir: impl AsRef<Path>) -> Result<Repaired> {
        Engine::repair(dir.as_ref(), &*self.file_system())
    }

    /// The storage to open with: the one given, or the operating system's.
    fn file_system(&self) -> Arc<dyn Storage> {
        match (self.storage.clone(), self.file_mode) {
            (Some(s), _) => s,
            (None, Some(mode)) => Arc::new(OsStorage::with_file_mode(mode)),
            (None, None) => Arc::new(OsStorage::default()),
        }
    }

    /// Creates a cache in a new directory under the system's temporary directory. The
    /// directory is not removed when the cache is dropped (as in python-diskcache);
    /// [`Cache::directory`] tells where it is.
    pub fn open_temp(self) -> Result<Cache<C>> {
        let dir = new_temp_dir()?;
        self.open(dir)
    }
}

/// Creates a new, empty directory `diskcache-<random>` under the system's temporary
/// directory.
pub(crate) fn new_temp_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    loop {
        let dir = base.join(format!("diskcache-{:016x}", fastrand::u64(..)));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
}

impl Cache<Bincode> {
    /// Opens (creating if needed) a cache in `dir` with default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache> {
        CacheBuilder::default().open(dir)
    }

    /// Creates a cache in a new temporary directory (python-diskcache's `Cache()`).
    pub fn temp() -> Result<Cache> {
        CacheBuilder::default().open_temp()
    }

    /// Settings for opening a cache.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::{Cache, EvictionPolicy};
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::builder()
    ///     .size_limit(100 << 20)
    ///     .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
    ///     .open(dir.path())?;
    /// assert_eq!(cache.eviction_policy()?, EvictionPolicy::LeastRecentlyUsed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
}

impl<C: Codec> Cache<C> {
    fn open_with(dir: &Path, b: CacheBuilder<C>) -> Result<Cache<C>> {
        let storage = b.file_system();
        storage
            .create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating cache directory {}", dir.display()), e))?;
        let mut changes = BTreeMap::new();
        for (k, v) in b.overrides {
            let v = settings::validate(&k, v)?;
            changes.insert(k, v);
        }
        let open_timeout = b.open_timeout.unwrap_or(b.timeout);
        let inner = Inner::open(
            dir,
            storage,
            b.engine,
            Arc::new(b.codec),
            b.timeout,
            open_timeout,
            changes,
        )?;
        Ok(Cache {
            inner: Arc::new(inner),
        })
    }

    /// The cache's directory.
    pub fn directory(&self) -> &Path {
        &self.inner.dir
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    /// How long writes wait for the writer lock.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Layout and counters of the storage engine (for tools and tests).
    pub fn engine_info(&self) -> EngineInfo {
        match self.live() {
            Ok(inner) => inner.engine.info(),
            Err(_) => self.inner.engine.info(),
        }
    }

    /// Flushes recorded accesses and closes this handle. Dropping the last clone closes it
    /// too; `close` reports errors instead of ignoring them.
    pub fn close(self) -> Result<()> {
        self.flush_accesses(self.inner.timeout)
    }

    /// This handle's state in this process (see [`Inner::live`]).
    #[inline]
    fn live(&self) -> Result<&Inner<C>> {
        self.inner.live()
    }

    /// The engine this handle uses in this process.
    pub(crate) fn engine(&self) -> Result<&Arc<Engine>> {
        Ok(&self.live()?.engine)
    }

    pub(crate) fn in_txn(&self) -> bool {
        self.live().is_ok_and(Inner::in_txn)
    }

    /// Whether this thread has a transaction open on `inner` (this handle's state in this
    /// process). A transaction the parent process had open when it forked is the parent's:
    /// using it in the child fails.
    fn txn_open(&self, inner: &Inner<C>) -> Result<bool> {
        if inner.in_txn() {
            return Ok(true);
        }
        if !std::ptr::eq(inner, &*self.inner) && self.inner.in_txn() {
            return Err(Error::Forked);
        }
        Ok(false)
    }

    /// Runs `f` on an up-to-date view (through this thread's transaction, if it has one).
    fn read_view<R>(&self, f: impl FnOnce(&View<'_>, &Settings) -> Result<R>) -> Result<R> {
        let inner = self.live()?;
        if self.txn_open(inner)? {
            let slot = inner.txn.lock();
            let txn = slot
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("transaction vanished".into()))?;
            return txn.view(|v| {
                let s = inner.settings_in(v)?;
                f(v, &s)
            });
        }
        inner.engine.read(|v| {
            let s = inner.settings_in(v)?;
            f(v, &s)
        })
    }

    /// Runs `f` in a write transaction: this thread's open one, or a new one committed when
    /// `f` succeeds and rolled back when it fails.
    fn write<R>(&self, f: impl FnOnce(&mut WriteTxn, &Settings) -> Result<R>) -> Result<R> {
        let inner = self.live()?;
        if self.txn_open(inner)? {
            let mut slot = inner.txn.lock();
            let txn = slot
                .as_mut()
                .ok_or_else(|| Error::InvalidArgument("transaction vanished".into()))?;
            let s = txn.view(|v| inner.settings_in(v))?;
            return f(txn, &s);
        }
        let mut txn = inner.engine.begin(inner.timeout)?;
        let s = txn.view(|v| inner.settings_in(v))?;
        inner.take_accesses_into(&mut txn, &s)?;
        match f(&mut txn, &s) {
            Ok(v) => {
                txn.commit()?;
                Ok(v)
            }
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    /// Runs `f` as one transaction: every write inside it (through this handle, on this
    /// thread) commits together when `f` returns `Ok`, or not at all; readers in other
    /// threads and processes see all of it or none of it. Transactions nest (an inner
    /// `transact` joins the outer one) and hold the writer lock throughout, so keep them
    /// short; reads elsewhere are not blocked.
    ///
    /// Unlike python-diskcache, value files that a nested transaction replaces are removed
    /// only when the outermost one commits, so a rollback never leaves dangling records.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.transact(|| {
    ///     let total: i64 = cache.get("total")?.unwrap_or(0);
    ///     cache.set("total", total + 5)?;
    ///     cache.incr("count", 1)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(cache.get::<i64>("total")?, Some(5));
    /// # Ok(())
    /// # }
    /// ```
    pub fn transact<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let inner = self.live()?;
        if self.txn_open(inner)? {
            return f();
        }
        let mut txn = inner.engine.begin(inner.timeout)?;
        let s = txn.view(|v| inner.settings_in(v))?;
        inner.take_accesses_into(&mut txn, &s)?;
        *inner.txn.lock() = Some(txn);
        inner.txn_owner.store(thread_token(), Ordering::Release);
        struct Guard<'a, C: Codec>(&'a Inner<C>, bool);
        impl<C: Codec> Drop for Guard<'_, C> {
            fn drop(&mut self) {
                if !self.1 {
                    // Unwinding out of `f`: roll back.
                    self.0.txn_owner.store(0, Ordering::Release);
                    if let Some(t) = self.0.txn.lock().take() {
                        t.rollback();
                    }
                }
            }
        }
        let mut guard = Guard(inner, false);
        let r = f();
        guard.1 = true;
        inner.txn_owner.store(0, Ordering::Release);
        let txn = inner.txn.lock().take();
        match (r, txn) {
            (Ok(v), Some(t)) => {
                t.commit()?;
                Ok(v)
            }
            (Err(e), Some(t)) => {
                t.rollback();
                Err(e)
            }
            (r, None) => r,
        }
    }

    /// Records a read under the LRU or LFU policy; writes the batch when it is full.
    fn record_access(&self, rowid: u64, a: Access) {
        let Ok(inner) = self.live() else { return };
        let n = {
            let mut acc = inner.accesses.lock();
            if acc.len() >= ACCESS_MAX {
                acc.drain(..ACCESS_MAX / 2);
            }
            acc.push((rowid, a));
            acc.len()
        };
        if n >= ACCESS_BATCH && !inner.in_txn() {
            // Never make a read wait: if the writer lock is busy, try again later.
            let _ = inner.flush_accesses(Duration::ZERO);
        }
    }

    /// Writes recorded accesses now, waiting at most `wait` for the writer lock.
    fn flush_accesses(&self, wait: Duration) -> Result<()> {
        self.live()?.flush_accesses(wait)
    }
}

impl<C: Codec> Inner<C> {
    /// The settings as of `v`, reloaded if another handle changed them.
    fn settings_in(&self, v: &View<'_>) -> Result<Arc<Settings>> {
        let cur = self.settings.read().clone();
        if cur.version == v.register(settings::SETTINGS_VERSION) {
            return Ok(cur);
        }
        let fresh = Arc::new(settings::load(v)?);
        *self.settings.write() = Arc::clone(&fresh);
        Ok(fresh)
    }

    fn take_accesses_into(&self, txn: &mut WriteTxn, s: &Settings) -> Result<()> {
        let pending = std::mem::take(&mut *self.accesses.lock());
        if pending.is_empty() {
            return Ok(());
        }
        entries::apply_accesses(txn, s, &pending)
    }

    /// Writes recorded accesses now, waiting at most `wait` for the writer lock.
    fn flush_accesses(&self, wait: Duration) -> Result<()> {
        if self.accesses.lock().is_empty() || self.in_txn() {
            return Ok(());
        }
        let deadline = crate::engine::deadline_after(wait);
        let mut txn = match self
            .engine
            .begin(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(t) => t,
            Err(Error::Timeout { .. }) if wait.is_zero() => return Ok(()),
            Err(e) => return Err(e),
        };
        let s = txn.view(|v| self.settings_in(v))?;
        self.take_accesses_into(&mut txn, &s)?;
        txn.commit()
    }
}
