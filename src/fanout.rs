//! [`FanoutCache`]: a cache sharded over several [`Cache`]s, so writers to different shards
//! do not wait for each other (python-diskcache's `FanoutCache`).

use crate::cache::entries::NewValue;
use crate::cache::{
    Cache, CacheBuilder, Entry, EvictionPolicy, Keys, MemoizeOptions, Memoized, SetOptions,
    StoreTimeout, Value, ValueReader, Warning,
};
use crate::codec::{Bincode, Codec};
use crate::deque::Deque;
use crate::engine::SyncLevel;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::key::{encode_key, EncodedKey, Key};
use crate::storage::Storage;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// python-diskcache's default shard count.
const DEFAULT_SHARDS: usize = 8;
/// python-diskcache's default timeout for a fanout cache's shards.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10);
/// The default total size limit (python-diskcache's 1 GiB), split across the shards.
const DEFAULT_SIZE_LIMIT: u64 = 1 << 30;
/// The setting of shard 0 that records the shard count.
const SHARDS_SETTING: &str = "fanout_shards";
/// The setting that turns statistics on or off (as [`Cache::reset`] names it).
const STATISTICS_SETTING: &str = "statistics";
/// How long opening waits for the writer lock of a shard, whatever the timeout.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A cache split into shards (default 8), each a [`Cache`] in a subdirectory `000`, `001`,
/// ...: keys are spread over the shards by a stable hash of their encoded form, so writers
/// of different keys rarely wait for each other.
///
/// It has [`Cache`]'s API. As in python-diskcache, a single-key write that cannot take its
/// shard's writer lock within the timeout (default 10 ms) gives up quietly: `set`, `add`,
/// `touch` and `delete` return `false`, `incr`/`decr` return `None`, and reads return
/// `None`. With [`FanoutBuilder::retry`], they wait as long as it takes instead. Whole-cache
/// operations (`clear`, `cull`, `expire`, `evict`, `check`) always finish, shard by shard.
///
/// Differences from python-diskcache, all deliberate:
/// - the shard count is stored with the cache; opening it with another count is an error,
///   never a silent remap of keys (python-diskcache #183);
/// - `1` and `1.0` land on the same shard, as they are the same key;
/// - `size_limit` is the total over the shards, both when opening and for
///   `reset("size_limit", ..)`, which splits it again (python-diskcache sets the whole
///   value on every shard);
/// - [`FanoutCache::iterkeys`] exists (merged sorted order over the shards, #169).
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::FanoutCache;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = FanoutCache::builder().shards(4).open(dir.path())?;
/// assert!(cache.set("key", "value")?);
/// assert_eq!(cache.get::<String>("key")?.as_deref(), Some("value"));
/// assert_eq!(cache.incr("hits", 1)?, Some(1));
/// assert_eq!(cache.len()?, 2);
/// let reopened = FanoutCache::open(dir.path())?;
/// assert_eq!(reopened.shard_count(), 4, "the shard count is stored");
/// # Ok(())
/// # }
/// ```
pub struct FanoutCache<C: Codec = Bincode> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Codec> {
    dir: PathBuf,
    shards: Vec<Cache<C>>,
    retry: bool,
    /// Codec, storage and engine options for sub-collections.
    handle: CacheBuilder<C>,
    subs: Mutex<HashMap<(&'static str, String), Cache<C>>>,
}

impl<C: Codec> Clone for FanoutCache<C> {
    fn clone(&self) -> Self {
        FanoutCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Codec> fmt::Debug for FanoutCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanoutCache")
            .field("directory", &self.inner.dir)
            .field("shards", &self.inner.shards.len())
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Settings for opening a [`FanoutCache`]; see [`FanoutCache::builder`].
///
/// The per-cache settings are those of [`CacheBuilder`], applied to every shard, except
/// `size_limit`, which is the total and is split evenly across the shards.
#[derive(Clone, Debug)]
pub struct FanoutBuilder<C: Codec + Clone = Bincode> {
    cache: CacheBuilder<C>,
    shards: Option<usize>,
    retry: bool,
    size_limit: Option<u64>,
}

impl Default for FanoutBuilder<Bincode> {
    fn default() -> Self {
        FanoutBuilder {
            cache: Cache::builder().timeout(DEFAULT_TIMEOUT),
            shards: None,
            retry: false,
            size_limit: None,
        }
    }
}

impl<C: Codec + Clone> FanoutBuilder<C> {
    /// The number of shards (default: the stored count, or 8 for a new cache). Opening an
    /// existing cache with another count fails with [`Error::InvalidArgument`].
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Wait for busy shards instead of giving up after the timeout (python-diskcache's
    /// `retry=True` on every call). Default off.
    pub fn retry(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// Soft limit on the total [`FanoutCache::volume`] (default 1 GiB), split evenly
    /// across the shards.
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.size_limit = Some(bytes);
        self
    }

    /// See [`CacheBuilder::cull_limit`] (per shard).
    pub fn cull_limit(self, n: u64) -> Self {
        self.map(|b| b.cull_limit(n))
    }

    /// See [`CacheBuilder::eviction_policy`].
    pub fn eviction_policy(self, p: EvictionPolicy) -> Self {
        self.map(|b| b.eviction_policy(p))
    }

    /// See [`CacheBuilder::statistics`].
    pub fn statistics(self, on: bool) -> Self {
        self.map(|b| b.statistics(on))
    }

    /// See [`CacheBuilder::tag_index`].
    pub fn tag_index(self, on: bool) -> Self {
        self.map(|b| b.tag_index(on))
    }

    /// See [`CacheBuilder::min_file_size`].
    pub fn min_file_size(self, bytes: u64) -> Self {
        self.map(|b| b.min_file_size(bytes))
    }

    /// How long a write waits for its shard's writer lock (default 10 ms, as in
    /// python-diskcache).
    pub fn timeout(self, t: Duration) -> Self {
        self.map(|b| b.timeout(t))
    }

    /// See [`CacheBuilder::sync`].
    pub fn sync(self, level: SyncLevel) -> Self {
        self.map(|b| b.sync(level))
    }

    /// See [`CacheBuilder::checkpoint_bytes`] (per shard).
    pub fn checkpoint_bytes(self, bytes: u64) -> Self {
        self.map(|b| b.checkpoint_bytes(bytes))
    }

    /// See [`CacheBuilder::storage`].
    pub fn storage(self, storage: Arc<dyn Storage>) -> Self {
        self.map(|b| b.storage(storage))
    }

    /// See [`CacheBuilder::codec`].
    pub fn codec<D: Codec + Clone>(self, codec: D) -> FanoutBuilder<D> {
        FanoutBuilder {
            cache: self.cache.codec(codec),
            shards: self.shards,
            retry: self.retry,
            size_limit: self.size_limit,
        }
    }

    fn map(mut self, f: impl FnOnce(CacheBuilder<C>) -> CacheBuilder<C>) -> Self {
        self.cache = f(self.cache);
        self
    }

    /// Opens (creating if needed) the fanout cache in `dir`.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<FanoutCache<C>> {
        FanoutCache::open_with(dir.as_ref(), self)
    }

    /// Creates a fanout cache in a new directory under the system's temporary directory
    /// (not removed when the cache is dropped).
    pub fn open_temp(self) -> Result<FanoutCache<C>> {
        let dir = crate::cache::new_temp_dir()?;
        self.open(dir)
    }
}

impl FanoutCache<Bincode> {
    /// Opens (creating if needed) a fanout cache in `dir`, with the stored shard count (8
    /// for a new cache) and default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<FanoutCache> {
        FanoutBuilder::default().open(dir)
    }

    /// Creates a fanout cache in a new temporary directory.
    pub fn temp() -> Result<FanoutCache> {
        FanoutBuilder::default().open_temp()
    }

    /// Settings for opening a fanout cache.
    pub fn builder() -> FanoutBuilder {
        FanoutBuilder::default()
    }
}

/// What a call that timed out on its shard turned into.
fn gave_up<R>(r: Result<R>, retry: bool) -> Result<Option<R>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Timeout { .. }) if !retry => Ok(None),
        Err(e) => Err(e),
    }
}

impl<C: Codec> FanoutCache<C> {
    fn open_with(dir: &Path, b: FanoutBuilder<C>) -> Result<FanoutCache<C>>
    where
        C: Clone,
    {
        if b.shards == Some(0) {
            return Err(Error::InvalidArgument(
                "a fanout cache needs at least one shard".into(),
            ));
        }
        let shard_builder = b.cache.clone().open_timeout(OPEN_TIMEOUT);
        let first = shard_builder.clone().open(shard_dir(dir, 0))?;
        let (count, limit) = settle_shards(&first, b.shards, b.size_limit)?;
        let mut shards = Vec::with_capacity(count);
        shards.push(first);
        for i in 1..count {
            let mut sb = shard_builder.clone();
            if let Some(l) = limit {
                sb = sb.size_limit(l);
            }
            shards.push(sb.open(shard_dir(dir, i))?);
        }
        Ok(FanoutCache {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                shards,
                retry: b.retry,
                handle: b.cache.handle_options(),
                subs: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The cache's directory.
    pub fn directory(&self) -> &Path {
        &self.inner.dir
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The shards, in order (shard `i` lives in the subdirectory `format!("{i:03}")`).
    pub fn shards(&self) -> &[Cache<C>] {
        &self.inner.shards
    }

    /// Whether calls wait for busy shards (see [`FanoutBuilder::retry`]).
    pub fn retries(&self) -> bool {
        self.inner.retry
    }

    /// The shard that holds `key`.
    pub fn shard_of(&self, key: impl Serialize) -> Result<&Cache<C>> {
        Ok(self.shard_for(&encode_key(&key)?))
    }

    fn shard_for(&self, encoded: &[u8]) -> &Cache<C> {
        let n = self.inner.shards.len();
        let i = shard_index(encoded, n);
        &self.inner.shards[i]
    }

    /// Runs a call on the shard of `key`, retrying on timeout when asked to; `None` if it
    /// gave up.
    fn on_shard<R>(
        &self,
        key: &impl Serialize,
        mut f: impl FnMut(&Cache<C>, EncodedKey<'_>) -> Result<R>,
    ) -> Result<Option<R>> {
        let k = encode_key(key)?;
        let shard = self.shard_for(&k);
        loop {
            match gave_up(f(shard, EncodedKey(&k)), self.inner.retry) {
                Err(Error::Timeout { .. }) => continue,
                r => return r,
            }
        }
    }

    /// What a store on a shard does on a timeout: retry, or give up.
    fn on_timeout(&self) -> StoreTimeout {
        if self.inner.retry {
            StoreTimeout::Retry
        } else {
            StoreTimeout::Skip
        }
    }

    /// Stores a value on the shard of `key` (see `Cache::put`): prepared once, its commit
    /// retried or given up (`None`) on a timeout.
    fn put(
        &self,
        key: impl Serialize,
        opts: &SetOptions,
        only_if_absent: bool,
        prepare: impl FnOnce(&Cache<C>) -> Result<NewValue>,
    ) -> Result<Option<bool>> {
        let k = encode_key(&key)?;
        self.shard_for(&k)
            .put(&k, opts, only_if_absent, self.on_timeout(), prepare)
    }

    /// Stores `value` under `key`; `false` if the shard was busy past the timeout.
    pub fn set(&self, key: impl Serialize, value: impl Serialize) -> Result<bool> {
        self.set_with(key, value, &SetOptions::default())
    }

    /// [`FanoutCache::set`] with an expiry and/or a tag.
    pub fn set_with(
        &self,
        key: impl Serialize,
        value: impl Serialize,
        opts: &SetOptions,
    ) -> Result<bool> {
        Ok(self.put(key, opts, false, |c| c.prepare(&value))?.is_some())
    }

    /// Stores the bytes read from `reader` in a value file (see [`Cache::set_reader`]);
    /// `false` if the shard was busy past the timeout (the reader is consumed either way).
    pub fn set_reader_with(
        &self,
        key: impl Serialize,
        reader: impl Read,
        opts: &SetOptions,
    ) -> Result<bool> {
        // The value file is written once, streaming; only its commit is retried.
        Ok(self
            .put(key, opts, false, |c| c.prepare_reader(reader))?
            .is_some())
    }

    /// Stores a [`Value`] of any kind (see [`Cache::set_value`]); `false` if the shard was
    /// busy past the timeout.
    pub fn set_value(&self, key: impl Serialize, value: &Value, opts: &SetOptions) -> Result<bool> {
        Ok(self
            .put(key, opts, false, |c| c.prepare_value(value))?
            .is_some())
    }

    /// Stores `value` only if `key` is missing or expired; `false` if it was present or the
    /// shard was busy past the timeout.
    pub fn add(&self, key: impl Serialize, value: impl Serialize) -> Result<bool> {
        self.add_with(key, value, &SetOptions::default())
    }

    /// [`FanoutCache::add`] with an expiry and/or a tag.
    pub fn add_with(
        &self,
        key: impl Serialize,
        value: impl Serialize,
        opts: &SetOptions,
    ) -> Result<bool> {
        Ok(self.put(key, opts, true, |c| c.prepare(&value))? == Some(true))
    }

    /// The value of `key`, or `None` if it is missing, expired, or its shard was busy.
    pub fn get<V: DeserializeOwned + 'static>(&self, key: impl Serialize) -> Result<Option<V>> {
        Ok(self.on_shard(&key, |s, k| s.get(k))?.flatten())
    }

    /// The value of `key` with its expiry time and tag.
    pub fn get_entry<V: DeserializeOwned + 'static>(
        &self,
        key: impl Serialize,
    ) -> Result<Option<Entry<V>>> {
        Ok(self.on_shard(&key, |s, k| s.get_entry(k))?.flatten())
    }

    /// The value of `key` whatever its type.
    pub fn get_value(&self, key: impl Serialize) -> Result<Option<Value>> {
        Ok(self.on_shard(&key, |s, k| s.get_value(k))?.flatten())
    }

    /// The value of `key` whatever its type, with its expiry time and tag.
    pub fn get_value_entry(&self, key: impl Serialize) -> Result<Option<Entry<Value>>> {
        Ok(self.on_shard(&key, |s, k| s.get_value_entry(k))?.flatten())
    }

    /// A reader over the value of `key` (see [`Cache::read`]). Waits for a busy shard, as
    /// python-diskcache's `read` does.
    pub fn read(&self, key: impl Serialize) -> Result<Option<ValueReader>> {
        let k = encode_key(&key)?;
        let shard = self.shard_for(&k);
        loop {
            match shard.read(EncodedKey(&k)) {
                Err(Error::Timeout { .. }) => continue,
                r => return r,
            }
        }
    }

    /// Whether `key` is present and not expired.
    pub fn contains(&self, key: impl Serialize) -> Result<bool> {
        let k = encode_key(&key)?;
        self.shard_for(&k).contains(EncodedKey(&k))
    }

    /// Removes `key`; `false` if it was missing or the shard was busy past the timeout.
    pub fn delete(&self, key: impl Serialize) -> Result<bool> {
        Ok(self.on_shard(&key, |s, k| s.delete(k))?.unwrap_or(false))
    }

    /// Removes `key` and returns its value; `None` if it was missing or the shard was busy.
    pub fn pop<V: DeserializeOwned + 'static>(&self, key: impl Serialize) -> Result<Option<V>> {
        Ok(self.on_shard(&key, |s, k| s.pop(k))?.flatten())
    }

    /// [`FanoutCache::pop`] with the expiry time and tag.
    pub fn pop_entry<V: DeserializeOwned + 'static>(
        &self,
        key: impl Serialize,
    ) -> Result<Option<Entry<V>>> {
        Ok(self.on_shard(&key, |s, k| s.pop_entry(k))?.flatten())
    }

    /// Changes the expiry of `key`; `false` if it was missing or the shard was busy.
    pub fn touch(&self, key: impl Serialize, expire: Option<Duration>) -> Result<bool> {
        Ok(self
            .on_shard(&key, |s, k| s.touch(k, expire))?
            .unwrap_or(false))
    }

    /// Adds `delta` to the integer at `key` (0 if missing); the new value, or `None` if the
    /// shard was busy past the timeout.
    pub fn incr(&self, key: impl Serialize, delta: i64) -> Result<Option<i64>> {
        self.incr_with(key, delta, Some(0))
    }

    /// [`FanoutCache::incr`] with a default for a missing key (`None`: a missing key is
    /// [`Error::KeyNotFound`]).
    pub fn incr_with(
        &self,
        key: impl Serialize,
        delta: i64,
        default: Option<i64>,
    ) -> Result<Option<i64>> {
        self.on_shard(&key, |s, k| s.incr_with(k, delta, default))
    }

    /// Subtracts `delta`; see [`FanoutCache::incr`].
    pub fn decr(&self, key: impl Serialize, delta: i64) -> Result<Option<i64>> {
        self.decr_with(key, delta, Some(0))
    }

    /// Subtracts `delta`; see [`FanoutCache::incr_with`].
    pub fn decr_with(
        &self,
        key: impl Serialize,
        delta: i64,
        default: Option<i64>,
    ) -> Result<Option<i64>> {
        self.on_shard(&key, |s, k| s.decr_with(k, delta, default))
    }

    /// Items in all shards (expired ones not yet removed included).
    pub fn len(&self) -> Result<u64> {
        self.sum(Cache::len)
    }

    /// Whether every shard is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Estimated bytes on disk of all shards.
    pub fn volume(&self) -> Result<u64> {
        self.sum(Cache::volume)
    }

    /// The total size limit (the sum of the shards' limits).
    pub fn size_limit(&self) -> Result<u64> {
        self.sum(Cache::size_limit)
    }

    fn sum(&self, f: impl Fn(&Cache<C>) -> Result<u64>) -> Result<u64> {
        let mut total = 0u64;
        for s in &self.inner.shards {
            total = total.saturating_add(f(s)?);
        }
        Ok(total)
    }

    /// Hits and misses summed over the shards; see [`Cache::stats`].
    pub fn stats(&self, enable: bool, reset: bool) -> Result<(u64, u64)> {
        let mut total = (0u64, 0u64);
        for s in &self.inner.shards {
            // Settle the setting first, waiting for a busy shard: `Cache::stats` reads and
            // zeroes the counters before it writes the setting, so retrying it after a
            // timeout would return (and lose) zeroed counters.
            if s.statistics_enabled()? != enable {
                until_done(|| s.reset(STATISTICS_SETTING, enable))?;
            }
            let (h, m) = until_done(|| s.stats(enable, reset))?;
            total = (total.0.saturating_add(h), total.1.saturating_add(m));
        }
        Ok(total)
    }

    /// Changes a stored setting on every shard (see [`Cache::reset`]), waiting for busy
    /// shards. `size_limit` is the total, split evenly across the shards. The shard count
    /// (`fanout_shards`) cannot be changed: that is [`Error::InvalidArgument`].
    pub fn reset(&self, name: &str, value: impl Serialize) -> Result<Json> {
        if name == SHARDS_SETTING {
            // Another count would map keys to other shards at the next opening.
            return Err(Error::InvalidArgument(
                "the shard count is fixed when the fanout cache is created".into(),
            ));
        }
        let v = serde_json::to_value(&value)
            .map_err(|e| Error::InvalidArgument(format!("setting {name}: {e}")))?;
        let per_shard = if name == crate::cache::SIZE_LIMIT_SETTING {
            let total = v.as_u64().ok_or_else(|| {
                Error::InvalidArgument(format!("size_limit must be a byte count, not {v}"))
            })?;
            Json::from(total / self.inner.shards.len() as u64)
        } else {
            v.clone()
        };
        for s in &self.inner.shards {
            until_done(|| s.reset(name, &per_shard))?;
        }
        Ok(v)
    }

    /// A stored setting: counters (`count`, `size`, `hits`, `misses`) and `size_limit` are
    /// summed over the shards; other settings are shard 0's (all shards share them).
    pub fn setting(&self, name: &str) -> Result<Option<Json>> {
        match name {
            "count" | "size" | "hits" | "misses" | crate::cache::SIZE_LIMIT_SETTING => {
                let mut total = 0u64;
                for s in &self.inner.shards {
                    total = total
                        .saturating_add(s.setting(name)?.and_then(|v| v.as_u64()).unwrap_or(0));
                }
                Ok(Some(total.into()))
            }
            _ => self.inner.shards[0].setting(name),
        }
    }

    /// The stored settings of shard 0 (all shards share them, but for `size_limit`, which
    /// is per shard here).
    pub fn settings(&self) -> Result<BTreeMap<String, Json>> {
        self.inner.shards[0].settings()
    }

    /// Removes expired items from every shard; returns how many.
    pub fn expire(&self) -> Result<u64> {
        self.expire_at(SystemTime::now())
    }

    /// Removes items that expired before `now` from every shard; returns how many.
    pub fn expire_at(&self, now: SystemTime) -> Result<u64> {
        self.remove_all(|s| s.expire_at(now))
    }

    /// Removes every item tagged `tag`; returns how many.
    pub fn evict(&self, tag: impl Serialize) -> Result<u64> {
        let t = Key::from_value(&tag)?;
        self.remove_all(|s| s.evict(&t))
    }

    /// Culls every shard to its size limit (expired items first); returns how many items
    /// were removed.
    pub fn cull(&self) -> Result<u64> {
        self.remove_all(Cache::cull)
    }

    /// Removes every item; returns how many.
    pub fn clear(&self) -> Result<u64> {
        self.remove_all(Cache::clear)
    }

    /// Runs a batch removal on every shard, carrying on after timeouts (python-diskcache's
    /// `_remove`), so it always finishes; returns the total removed.
    fn remove_all(&self, f: impl Fn(&Cache<C>) -> Result<u64>) -> Result<u64> {
        let mut total = 0u64;
        for s in &self.inner.shards {
            loop {
                match f(s) {
                    Ok(n) => {
                        total = total.saturating_add(n);
                        break;
                    }
                    Err(Error::Timeout { removed }) => total = total.saturating_add(removed),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Turns the tag index on in every shard.
    pub fn create_tag_index(&self) -> Result<()> {
        for s in &self.inner.shards {
            until_done(|| s.create_tag_index())?;
        }
        Ok(())
    }

    /// Turns the tag index off in every shard.
    pub fn drop_tag_index(&self) -> Result<()> {
        for s in &self.inner.shards {
            until_done(|| s.drop_tag_index())?;
        }
        Ok(())
    }

    /// Checks (and with `fix`, repairs) every shard; the warnings of all shards together.
    pub fn check(&self, fix: bool) -> Result<Vec<Warning>> {
        let mut all = Vec::new();
        for s in &self.inner.shards {
            all.extend(until_done(|| s.check(fix))?);
        }
        Ok(all)
    }

    /// Compacts every shard; see [`Cache::compact`].
    pub fn compact(&self) -> Result<()> {
        for s in &self.inner.shards {
            until_done(|| s.compact())?;
        }
        Ok(())
    }

    /// The keys of every shard, shard after shard, each in insertion order (as iterating a
    /// python-diskcache `FanoutCache`).
    pub fn iter(&self) -> impl Iterator<Item = Result<Key>> + Send + 'static {
        let shards = self.inner.shards.clone();
        shards.into_iter().flat_map(|s| s.iter())
    }

    /// [`FanoutCache::iter`] backwards: the last shard first, each shard newest first.
    pub fn iter_rev(&self) -> impl Iterator<Item = Result<Key>> + Send + 'static {
        let shards = self.inner.shards.clone();
        shards.into_iter().rev().flat_map(|s| s.iter_rev())
    }

    /// All keys in sorted order, merged across the shards.
    pub fn iterkeys(&self) -> MergedKeys<C> {
        MergedKeys::new(
            self.inner.shards.iter().map(Cache::iterkeys).collect(),
            false,
        )
    }

    /// All keys in reverse sorted order, merged across the shards.
    pub fn iterkeys_rev(&self) -> MergedKeys<C> {
        MergedKeys::new(
            self.inner.shards.iter().map(Cache::iterkeys_rev).collect(),
            true,
        )
    }

    /// Runs `f` as one transaction over every shard (python-diskcache's `transact`, which
    /// locks all shards in order). Writes through this handle inside `f` commit together
    /// per shard when `f` returns `Ok`; a failure rolls all of them back. Waits for busy
    /// shards. Holding every shard's lock stops all other writers: keep it short.
    pub fn transact<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        fn nest<C: Codec, R>(
            shards: &[Cache<C>],
            f: &mut Option<impl FnOnce() -> Result<R>>,
        ) -> Result<R> {
            match shards.split_first() {
                None => match f.take() {
                    Some(f) => f(),
                    None => Err(Error::InvalidArgument("transaction body ran twice".into())),
                },
                Some((first, rest)) => first.transact(|| nest(rest, f)),
            }
        }
        let mut f = Some(f);
        loop {
            match nest(&self.inner.shards, &mut f) {
                // Only taking the locks timed out (the body never ran): try again.
                Err(Error::Timeout { .. }) if f.is_some() => continue,
                r => return r,
            }
        }
    }

    /// The key under which a memoized call's result is stored; see [`Cache::memoize_key`].
    pub fn memoize_key<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
    ) -> Result<Key> {
        self.inner.shards[0].memoize_key(name, args, opts)
    }

    /// The cached result of `name(args)`, or `compute()`'s, stored on the shard of the
    /// call's key; see [`Cache::memoized`]. Without [`FanoutBuilder::retry`], a result whose
    /// shard is busy past the timeout is returned without being stored.
    pub fn memoized<A, R, F>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
        compute: F,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> R,
    {
        self.try_memoized(name, args, opts, || Ok::<R, Error>(compute()))
    }

    /// [`FanoutCache::memoized`] for a computation that can fail.
    pub fn try_memoized<A, R, E, F>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
        compute: F,
    ) -> Result<R, E>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        E: From<Error>,
        F: FnOnce() -> Result<R, E>,
    {
        let key = crate::cache::memo_call_key(name, args, opts)?;
        self.shard_for(&key)
            .memoized_at(&key, opts, compute, self.on_timeout())
    }

    /// Wraps a function so that its results are cached in this fanout cache; see
    /// [`Cache::memoize`].
    pub fn memoize<A, R, F>(
        &self,
        name: impl Into<String>,
        opts: MemoizeOptions,
        f: F,
    ) -> Memoized<C, A, R, F>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(&A) -> R,
    {
        Memoized::on_fanout(self.clone(), name.into(), opts, f)
    }

    /// A cache stored under `cache/<name>` in this directory (python-diskcache's
    /// `FanoutCache.cache(name)`), with default settings and a 60 s timeout; `name` may
    /// have `/`-separated parts, which become subdirectories. The same handle is returned
    /// for the same name.
    pub fn cache(&self, name: &str) -> Result<Cache<C>>
    where
        C: Clone,
    {
        self.sub("cache", name, |b| b)
    }

    /// A [`Deque`] stored under `deque/<name>`; see [`FanoutCache::cache`].
    pub fn deque<T>(&self, name: &str) -> Result<Deque<T, C>>
    where
        C: Clone,
        T: Serialize + DeserializeOwned + 'static,
    {
        Deque::from_cache(self.sub("deque", name, |b| b.eviction_policy(EvictionPolicy::None))?)
    }

    /// An [`Index`] stored under `index/<name>`; see [`FanoutCache::cache`].
    pub fn index<K, V>(&self, name: &str) -> Result<Index<K, V, C>>
    where
        C: Clone,
        K: Serialize + DeserializeOwned + 'static,
        V: Serialize + DeserializeOwned + 'static,
    {
        Index::from_cache(self.sub("index", name, |b| b.eviction_policy(EvictionPolicy::None))?)
    }

    fn sub(
        &self,
        kind: &'static str,
        name: &str,
        settings: impl FnOnce(CacheBuilder<C>) -> CacheBuilder<C>,
    ) -> Result<Cache<C>>
    where
        C: Clone,
    {
        let mut dir = self.inner.dir.join(kind);
        for part in name.split('/') {
            if part.is_empty()
                || part == "."
                || part == ".."
                || part.contains(['\\', '\0'])
                || part.chars().any(char::is_control)
            {
                return Err(Error::InvalidArgument(format!(
                    "{kind} name {name:?}: parts must be non-empty plain names separated by '/'"
                )));
            }
            dir.push(part);
        }
        let mut subs = self.inner.subs.lock();
        if let Some(c) = subs.get(&(kind, name.to_owned())) {
            return Ok(c.clone());
        }
        let c = settings(self.inner.handle.clone()).open(&dir)?;
        subs.insert((kind, name.to_owned()), c.clone());
        Ok(c)
    }

    /// Flushes every shard's recorded accesses and closes this handle (see
    /// [`Cache::close`]). Sub-collections stay open for their own handles.
    pub fn close(self) -> Result<()> {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            // Other clones keep the shards open; they flush when they close.
            Err(_) => return Ok(()),
        };
        let mut first_err = None;
        for s in inner.shards {
            if let Err(e) = s.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Retries a whole-cache call on its shard until it gets the lock.
fn until_done<R>(mut f: impl FnMut() -> Result<R>) -> Result<R> {
    let start = Instant::now();
    loop {
        match f() {
            Err(Error::Timeout { .. }) if start.elapsed() < Duration::from_secs(3600) => continue,
            r => return r,
        }
    }
}

/// Picks the shard count (and stores it, for a new cache) and the per-shard size limit to
/// give the other shards, in one transaction on shard 0.
fn settle_shards<C: Codec>(
    first: &Cache<C>,
    requested: Option<usize>,
    total_limit: Option<u64>,
) -> Result<(usize, Option<u64>)> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    loop {
        let r = first.transact(|| {
            let stored = first.setting(SHARDS_SETTING)?;
            let count = match (stored.as_ref().and_then(Json::as_u64), requested) {
                (Some(s), Some(r)) if s != r as u64 => {
                    return Err(Error::InvalidArgument(format!(
                        "this fanout cache has {s} shards; it cannot be opened with {r} \
                         (keys would map to other shards)"
                    )))
                }
                (Some(s), _) => usize::try_from(s).map_err(|_| {
                    Error::InvalidArgument(format!("stored shard count {s} is out of range"))
                })?,
                (None, _) if stored.is_some() => {
                    return Err(Error::InvalidArgument(format!(
                        "stored shard count {stored:?} is not a number"
                    )))
                }
                (None, r) => r.unwrap_or(DEFAULT_SHARDS),
            };
            let fresh = stored.is_none();
            if fresh {
                first.reset(SHARDS_SETTING, count)?;
            }
            let per_shard = match total_limit {
                Some(t) => Some(t / count as u64),
                None if fresh => Some(DEFAULT_SIZE_LIMIT / count as u64),
                None => None,
            };
            if let Some(l) = per_shard {
                if first.size_limit()? != l {
                    first.reset(crate::cache::SIZE_LIMIT_SETTING, l)?;
                }
            }
            Ok((count, first.size_limit()?))
        });
        match r {
            Err(Error::Timeout { .. }) if Instant::now() < deadline => continue,
            Ok((count, limit)) => return Ok((count, Some(limit))),
            Err(e) => return Err(e),
        }
    }
}

fn shard_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("{i:03}"))
}

/// The shard of an encoded key: CRC-32 (IEEE) of the encoding, modulo the shard count.
/// Part of the on-disk format: changing it would strand every stored key.
pub(crate) fn shard_index(encoded: &[u8], shards: usize) -> usize {
    (crc32fast::hash(encoded) as usize) % shards.max(1)
}

/// Keys of several shards merged into one sorted order; see [`FanoutCache::iterkeys`].
#[derive(Debug)]
pub struct MergedKeys<C: Codec> {
    iters: Vec<Keys<C>>,
    heads: Vec<Option<(Vec<u8>, Key)>>,
    started: bool,
    rev: bool,
}

impl<C: Codec> MergedKeys<C> {
    fn new(iters: Vec<Keys<C>>, rev: bool) -> MergedKeys<C> {
        let heads = iters.iter().map(|_| None).collect();
        MergedKeys {
            iters,
            heads,
            started: false,
            rev,
        }
    }

    fn refill(&mut self, i: usize) -> Result<()> {
        self.heads[i] = match self.iters[i].next() {
            None => None,
            Some(k) => {
                let k = k?;
                Some((k.encoded(), k))
            }
        };
        Ok(())
    }
}

impl<C: Codec> Iterator for MergedKeys<C> {
    type Item = Result<Key>;

    fn next(&mut self) -> Option<Result<Key>> {
        if !self.started {
            self.started = true;
            for i in 0..self.iters.len() {
                if let Err(e) = self.refill(i) {
                    return Some(Err(e));
                }
            }
        }
        let rev = self.rev;
        let best = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(enc, _)| (i, enc)))
            .reduce(|a, b| {
                let b_first = if rev { b.1 > a.1 } else { b.1 < a.1 };
                if b_first {
                    b
                } else {
                    a
                }
            })
            .map(|(i, _)| i)?;
        let (_, key) = self.heads[best].take()?;
        if let Err(e) = self.refill(best) {
            return Some(Err(e));
        }
        Some(Ok(key))
    }
}
