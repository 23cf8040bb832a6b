//! Opening a cache directory of either layout (plain or fanout) with either codec, behind
//! one object-safe interface.

use crate::fail::{Fail, R};
use diskcache::{
    Bincode, Cache, Codec, EngineInfo, Error, FanoutCache, Json, Key, RawEntry, SetOptions, Value,
    Warning,
};
use serde_json::Value as JsonValue;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The setting of shard 000 that marks a fanout cache.
pub const SHARDS_SETTING: &str = "fanout_shards";

/// A cache directory, plain or fanout.
pub trait Store {
    fn dir(&self) -> &Path;
    fn codec_name(&self) -> &'static str;
    /// The shard count of a fanout cache; `None` for a plain cache.
    fn shard_count(&self) -> Option<usize>;
    /// The plain caches this store is made of: itself, or its shards.
    fn parts(&self) -> Vec<&dyn Store>;
    fn len(&self) -> diskcache::Result<u64>;
    fn volume(&self) -> diskcache::Result<u64>;
    fn size_limit(&self) -> diskcache::Result<u64>;
    fn min_file_size(&self) -> diskcache::Result<u64>;
    fn settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>>;
    /// The settings in force (stored or default); `size_limit` is the total.
    fn effective_settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>>;
    fn setting(&self, name: &str) -> diskcache::Result<Option<JsonValue>>;
    fn reset(&self, name: &str, value: &JsonValue) -> diskcache::Result<()>;
    /// The engine's layout and counters, caught up with the latest commit (plain caches).
    fn engine_info(&self) -> diskcache::Result<Option<EngineInfo>>;
    fn raw_entry(&self, key: &Key) -> diskcache::Result<Option<RawEntry>>;
    /// Stores a value; `false` if a busy shard made the write give up.
    fn set_value(&self, key: &Key, value: &Value, opts: &SetOptions) -> diskcache::Result<bool>;
    /// Stores the bytes of `reader` as a byte-string value in a value file.
    fn set_reader(
        &self,
        key: &Key,
        reader: &mut dyn Read,
        opts: &SetOptions,
    ) -> diskcache::Result<bool>;
    fn delete(&self, key: &Key) -> diskcache::Result<bool>;
    /// Keys in sorted or insertion order, either way.
    fn keys(
        &self,
        sorted: bool,
        rev: bool,
    ) -> Box<dyn Iterator<Item = diskcache::Result<Key>> + '_>;
    fn expire(&self) -> diskcache::Result<u64>;
    fn cull(&self) -> diskcache::Result<u64>;
    fn evict(&self, tag: &Key) -> diskcache::Result<u64>;
    fn clear(&self) -> diskcache::Result<u64>;
    fn compact(&self) -> diskcache::Result<()>;
    fn check(&self, fix: bool) -> diskcache::Result<Vec<Warning>>;
    /// Runs `f` as one transaction.
    fn transact(&self, f: &mut dyn FnMut() -> diskcache::Result<()>) -> diskcache::Result<()>;
}

impl<C: Codec + Clone> Store for Cache<C> {
    fn dir(&self) -> &Path {
        self.directory()
    }
    fn codec_name(&self) -> &'static str {
        self.codec().name()
    }
    fn shard_count(&self) -> Option<usize> {
        None
    }
    fn parts(&self) -> Vec<&dyn Store> {
        vec![self]
    }
    fn len(&self) -> diskcache::Result<u64> {
        Cache::len(self)
    }
    fn volume(&self) -> diskcache::Result<u64> {
        Cache::volume(self)
    }
    fn size_limit(&self) -> diskcache::Result<u64> {
        Cache::size_limit(self)
    }
    fn min_file_size(&self) -> diskcache::Result<u64> {
        Cache::min_file_size(self)
    }
    fn settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>> {
        Cache::settings(self)
    }
    fn effective_settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>> {
        Ok(BTreeMap::from([
            ("size_limit".to_owned(), self.size_limit()?.into()),
            ("cull_limit".to_owned(), self.cull_limit()?.into()),
            (
                "eviction_policy".to_owned(),
                self.eviction_policy()?.as_str().into(),
            ),
            ("statistics".to_owned(), self.statistics_enabled()?.into()),
            ("tag_index".to_owned(), self.tag_index_enabled()?.into()),
            (
                "disk_min_file_size".to_owned(),
                Cache::min_file_size(self)?.into(),
            ),
        ]))
    }
    fn setting(&self, name: &str) -> diskcache::Result<Option<JsonValue>> {
        Cache::setting(self, name)
    }
    fn reset(&self, name: &str, value: &JsonValue) -> diskcache::Result<()> {
        Cache::reset(self, name, value).map(|_| ())
    }
    fn engine_info(&self) -> diskcache::Result<Option<EngineInfo>> {
        // Any read catches the handle up with the latest commit and checkpoint.
        Cache::len(self)?;
        Ok(Some(Cache::engine_info(self)))
    }
    fn raw_entry(&self, key: &Key) -> diskcache::Result<Option<RawEntry>> {
        Cache::raw_entry(self, key)
    }
    fn set_value(&self, key: &Key, value: &Value, opts: &SetOptions) -> diskcache::Result<bool> {
        Cache::set_value(self, key, value, opts).map(|()| true)
    }
    fn set_reader(
        &self,
        key: &Key,
        reader: &mut dyn Read,
        opts: &SetOptions,
    ) -> diskcache::Result<bool> {
        Cache::set_reader_with(self, key, reader, opts).map(|()| true)
    }
    fn delete(&self, key: &Key) -> diskcache::Result<bool> {
        Cache::delete(self, key)
    }
    fn keys(
        &self,
        sorted: bool,
        rev: bool,
    ) -> Box<dyn Iterator<Item = diskcache::Result<Key>> + '_> {
        Box::new(match (sorted, rev) {
            (true, false) => self.iterkeys(),
            (true, true) => self.iterkeys_rev(),
            (false, false) => self.iter(),
            (false, true) => self.iter_rev(),
        })
    }
    fn expire(&self) -> diskcache::Result<u64> {
        Cache::expire(self)
    }
    fn cull(&self) -> diskcache::Result<u64> {
        Cache::cull(self)
    }
    fn evict(&self, tag: &Key) -> diskcache::Result<u64> {
        Cache::evict(self, tag)
    }
    fn clear(&self) -> diskcache::Result<u64> {
        Cache::clear(self)
    }
    fn compact(&self) -> diskcache::Result<()> {
        Cache::compact(self)
    }
    fn check(&self, fix: bool) -> diskcache::Result<Vec<Warning>> {
        Cache::check(self, fix)
    }
    fn transact(&self, f: &mut dyn FnMut() -> diskcache::Result<()>) -> diskcache::Result<()> {
        Cache::transact(self, f)
    }
}

impl<C: Codec + Clone> Store for FanoutCache<C> {
    fn dir(&self) -> &Path {
        self.directory()
    }
    fn codec_name(&self) -> &'static str {
        self.shards()[0].codec().name()
    }
    fn shard_count(&self) -> Option<usize> {
        Some(FanoutCache::shard_count(self))
    }
    fn parts(&self) -> Vec<&dyn Store> {
        self.shards().iter().map(|s| s as &dyn Store).collect()
    }
    fn len(&self) -> diskcache::Result<u64> {
        FanoutCache::len(self)
    }
    fn volume(&self) -> diskcache::Result<u64> {
        FanoutCache::volume(self)
    }
    fn size_limit(&self) -> diskcache::Result<u64> {
        FanoutCache::size_limit(self)
    }
    fn min_file_size(&self) -> diskcache::Result<u64> {
        self.shards()[0].min_file_size()
    }
    fn settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>> {
        FanoutCache::settings(self)
    }
    fn effective_settings(&self) -> diskcache::Result<BTreeMap<String, JsonValue>> {
        let mut s = self.shards()[0].effective_settings()?;
        s.insert(
            "size_limit".to_owned(),
            FanoutCache::size_limit(self)?.into(),
        );
        Ok(s)
    }
    fn setting(&self, name: &str) -> diskcache::Result<Option<JsonValue>> {
        FanoutCache::setting(self, name)
    }
    fn reset(&self, name: &str, value: &JsonValue) -> diskcache::Result<()> {
        FanoutCache::reset(self, name, value).map(|_| ())
    }
    fn engine_info(&self) -> diskcache::Result<Option<EngineInfo>> {
        Ok(None)
    }
    fn raw_entry(&self, key: &Key) -> diskcache::Result<Option<RawEntry>> {
        self.shard_of(key)?.raw_entry(key)
    }
    fn set_value(&self, key: &Key, value: &Value, opts: &SetOptions) -> diskcache::Result<bool> {
        FanoutCache::set_value(self, key, value, opts)
    }
    fn set_reader(
        &self,
        key: &Key,
        reader: &mut dyn Read,
        opts: &SetOptions,
    ) -> diskcache::Result<bool> {
        FanoutCache::set_reader_with(self, key, reader, opts)
    }
    fn delete(&self, key: &Key) -> diskcache::Result<bool> {
        FanoutCache::delete(self, key)
    }
    fn keys(
        &self,
        sorted: bool,
        rev: bool,
    ) -> Box<dyn Iterator<Item = diskcache::Result<Key>> + '_> {
        match (sorted, rev) {
            (true, false) => Box::new(self.iterkeys()),
            (true, true) => Box::new(self.iterkeys_rev()),
            (false, false) => Box::new(self.iter()),
            (false, true) => Box::new(self.iter_rev()),
        }
    }
    fn expire(&self) -> diskcache::Result<u64> {
        FanoutCache::expire(self)
    }
    fn cull(&self) -> diskcache::Result<u64> {
        FanoutCache::cull(self)
    }
    fn evict(&self, tag: &Key) -> diskcache::Result<u64> {
        FanoutCache::evict(self, tag)
    }
    fn clear(&self) -> diskcache::Result<u64> {
        FanoutCache::clear(self)
    }
    fn compact(&self) -> diskcache::Result<()> {
        FanoutCache::compact(self)
    }
    fn check(&self, fix: bool) -> diskcache::Result<Vec<Warning>> {
        FanoutCache::check(self, fix)
    }
    fn transact(&self, f: &mut dyn FnMut() -> diskcache::Result<()>) -> diskcache::Result<()> {
        FanoutCache::transact(self, f)
    }
}

/// How to open (or create) a directory.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub timeout: Duration,
    /// Create the cache if the directory is missing or empty.
    pub create: Option<Create>,
}

/// The cache to create in a missing or empty directory.
#[derive(Clone, Debug, Default)]
pub struct Create {
    /// Shard count for a fanout cache; `None` for a plain cache.
    pub shards: Option<usize>,
    /// Codec name (`bincode2` or `json`; default bincode2).
    pub codec: Option<String>,
    /// Stored settings to give the new cache (`size_limit` is the total).
    pub settings: BTreeMap<String, JsonValue>,
}

/// What a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Plain,
    Fanout,
    /// Missing, or an empty directory.
    Nothing,
}

fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

/// Opens a plain cache with whichever codec it was created with.
fn open_plain(dir: &Path, timeout: Duration) -> diskcache::Result<Box<dyn Store>> {
    match Cache::builder().timeout(timeout).open(dir) {
        Ok(c) => Ok(Box::new(c)),
        Err(Error::CodecMismatch { stored, .. }) if stored == Json.name() => Ok(Box::new(
            Cache::builder().codec(Json).timeout(timeout).open(dir)?,
        )),
        Err(e) => Err(e),
    }
}

fn open_fanout(dir: &Path, timeout: Duration, codec: &str) -> diskcache::Result<Box<dyn Store>> {
    let b = FanoutCache::builder().retry(true).timeout(timeout);
    if codec == Json.name() {
        Ok(Box::new(b.codec(Json).open(dir)?))
    } else {
        Ok(Box::new(b.open(dir)?))
    }
}

/// Finds what `dir` holds. A fanout cache is recognized by its shard `000`, a cache
/// whose settings record the shard count.
pub fn detect(dir: &Path, timeout: Duration) -> R<(Layout, Option<String>)> {
    if !dir.exists() {
        return Ok((Layout::Nothing, None));
    }
    if !dir.is_dir() {
        return Err(Fail::usage(format!("{} is not a directory", dir.display())));
    }
    if dir.join("meta").is_file() {
        return Ok((Layout::Plain, None));
    }
    let shard0 = dir.join("000");
    if shard0.join("meta").is_file() {
        let first = open_plain(&shard0, timeout)?;
        if first.setting(SHARDS_SETTING)?.is_some() {
            return Ok((Layout::Fanout, Some(first.codec_name().to_owned())));
        }
        return Err(Fail::usage(format!(
            "{} is not a cache directory: its 000 holds a cache that is not a fanout shard",
            dir.display()
        )));
    }
    if is_empty_dir(dir).map_err(|e| Fail::io(format!("reading {}", dir.display()), e))? {
        return Ok((Layout::Nothing, None));
    }
    Err(Fail::usage(format!(
        "{} is not a cache directory (no meta file, no fanout shard 000)",
        dir.display()
    )))
}

/// Opens the cache in `dir`, plain or fanout. Opening never changes stored settings.
pub fn open(dir: &Path, o: &OpenOptions) -> R<Box<dyn Store>> {
    let (layout, codec) = detect(dir, o.timeout)?;
    match layout {
        Layout::Plain => Ok(open_plain(dir, o.timeout)?),
        Layout::Fanout => Ok(open_fanout(
            dir,
            o.timeout,
            codec.as_deref().unwrap_or_default(),
        )?),
        Layout::Nothing => match &o.create {
            Some(c) => create(dir, o.timeout, c),
            None if dir.exists() => Err(Fail::usage(format!(
                "{} is an empty directory, not a cache",
                dir.display()
            ))),
            None => Err(Fail::usage(format!("{} does not exist", dir.display()))),
        },
    }
}

/// The settings a new cache takes from its creation options, leaving the rest to `reset`.
const BUILDER_SETTINGS: [&str; 6] = [
    "size_limit",
    "cull_limit",
    "eviction_policy",
    "statistics",
    "tag_index",
    "disk_min_file_size",
];

fn create(dir: &Path, timeout: Duration, c: &Create) -> R<Box<dyn Store>> {
    let codec = c.codec.as_deref().unwrap_or(Bincode.name());
    if codec != Bincode.name() && codec != Json.name() {
        return Err(Fail::usage(format!(
            "unknown codec {codec:?} (this build knows {:?} and {:?})",
            Bincode.name(),
            Json.name()
        )));
    }
    let s = &c.settings;
    let u = |name: &str| s.get(name).and_then(JsonValue::as_u64);
    let b = |name: &str| {
        s.get(name)
            .and_then(|v| v.as_bool().or_else(|| v.as_u64().map(|n| n != 0)))
    };
    let policy = match s.get("eviction_policy").and_then(JsonValue::as_str) {
        Some(p) => Some(p.parse::<diskcache::EvictionPolicy>()?),
        None => None,
    };
    // The settings a builder takes (both builders have the same methods), then the codec.
    macro_rules! open_with_settings {
        ($builder:expr) => {{
            let mut bld = $builder;
            if let Some(v) = u("size_limit") {
                bld = bld.size_limit(v);
            }
            if let Some(v) = u("cull_limit") {
                bld = bld.cull_limit(v);
            }
            if let Some(p) = policy {
                bld = bld.eviction_policy(p);
            }
            if let Some(v) = b("statistics") {
                bld = bld.statistics(v);
            }
            if let Some(v) = b("tag_index") {
                bld = bld.tag_index(v);
            }
            if let Some(v) = u("disk_min_file_size") {
                bld = bld.min_file_size(v);
            }
            let store: Box<dyn Store> = if codec == Json.name() {
                Box::new(bld.codec(Json).open(dir)?)
            } else {
                Box::new(bld.open(dir)?)
            };
            store
        }};
    }
    let store = match c.shards {
        None => open_with_settings!(Cache::builder().timeout(timeout)),
        Some(n) => open_with_settings!(FanoutCache::builder()
            .shards(n)
            .retry(true)
            .timeout(timeout)),
    };
    // Other stored settings (those of collections and applications) are copied as they are.
    for (name, value) in s {
        if BUILDER_SETTINGS.contains(&name.as_str()) || name == "codec" || name == SHARDS_SETTING {
            continue;
        }
        store.reset(name, value)?;
    }
    Ok(store)
}
