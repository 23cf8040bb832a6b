//! Settings stored in the cache and shared by every handle.
//!
//! As in python-diskcache, options given when opening override the stored ones and are
//! stored; unknown names given to [`crate::Cache::reset`] are kept too. Unlike
//! python-diskcache, a change made by one process is seen by every other at its next
//! operation: each transaction that changes a setting bumps a counter that handles compare
//! before they use their cached copy.

use super::entries::cull_key;
use crate::engine::{reg, tree, SyncLevel, View, WriteTxn};
use crate::error::{Error, Result};
use crate::format::record;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Register counting settings changes.
pub(crate) const SETTINGS_VERSION: usize = 3;

/// Which items automatic culling and [`crate::Cache::cull`] remove first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EvictionPolicy {
    /// Oldest store time first (python-diskcache's default).
    #[default]
    LeastRecentlyStored,
    /// Oldest access time first; reads record their access.
    LeastRecentlyUsed,
    /// Fewest accesses first; reads count their access.
    LeastFrequentlyUsed,
    /// Never evict; expired items are still removed.
    None,
}

impl EvictionPolicy {
    /// python-diskcache's name for the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::LeastRecentlyStored => "least-recently-stored",
            EvictionPolicy::LeastRecentlyUsed => "least-recently-used",
            EvictionPolicy::LeastFrequentlyUsed => "least-frequently-used",
            EvictionPolicy::None => "none",
        }
    }

    /// Whether reads record accesses under this policy.
    pub fn tracks_access(self) -> bool {
        matches!(
            self,
            EvictionPolicy::LeastRecentlyUsed | EvictionPolicy::LeastFrequentlyUsed
        )
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvictionPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "least-recently-stored" => EvictionPolicy::LeastRecentlyStored,
            "least-recently-used" => EvictionPolicy::LeastRecentlyUsed,
            "least-frequently-used" => EvictionPolicy::LeastFrequentlyUsed,
            "none" => EvictionPolicy::None,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown eviction policy {other:?}"
                )))
            }
        })
    }
}

/// The settings every operation consults.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub size_limit: u64,
    pub cull_limit: u64,
    pub eviction_policy: EvictionPolicy,
    pub statistics: bool,
    pub tag_index: bool,
    pub min_file_size: u64,
    pub sync: SyncLevel,
    /// The settings-change counter these were read at.
    pub version: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            size_limit: 1 << 30,
            cull_limit: 10,
            eviction_policy: EvictionPolicy::LeastRecentlyStored,
            statistics: false,
            tag_index: false,
            min_file_size: 1 << 15,
            sync: SyncLevel::Normal,
            version: 0,
        }
    }
}

/// The largest `min_file_size`: values below it are kept in the log and the trees.
pub(crate) const MAX_MIN_FILE_SIZE: u64 = 4 << 20;

pub(crate) const SIZE_LIMIT: &str = "size_limit";
pub(crate) const CULL_LIMIT: &str = "cull_limit";
pub(crate) const EVICTION_POLICY: &str = "eviction_policy";
pub(crate) const STATISTICS: &str = "statistics";
pub(crate) const TAG_INDEX: &str = "tag_index";
pub(crate) const MIN_FILE_SIZE: &str = "disk_min_file_size";
pub(crate) const CODEC: &str = "codec";
/// The cache's sync level; the engine reads it from register `reg::SYNC`, which every
/// transaction that changes the setting sets too.
pub(crate) const SYNC: &str = "sync";

/// Reads every stored setting.
pub(crate) fn stored(v: &View<'_>) -> Result<BTreeMap<String, Json>> {
    let mut out = BTreeMap::new();
    for item in v.range(
        tree::SETTINGS,
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        false,
    )? {
        let (k, val) = item?;
        let (Ok(name), Ok(value)) = (std::str::from_utf8(k), serde_json::from_slice::<Json>(val))
        else {
            continue;
        };
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

/// Reads one stored setting.
pub(crate) fn get(v: &View<'_>, name: &str) -> Result<Option<Json>> {
    Ok(v.get(tree::SETTINGS, name.as_bytes())?
        .and_then(|b| serde_json::from_slice(b).ok()))
}

/// The effective settings in a view.
pub(crate) fn load(v: &View<'_>) -> Result<Settings> {
    let mut s = Settings {
        version: v.register(SETTINGS_VERSION),
        ..Settings::default()
    };
    let all = stored(v)?;
    if let Some(x) = all.get(SIZE_LIMIT).and_then(Json::as_u64) {
        s.size_limit = x;
    }
    if let Some(x) = all.get(CULL_LIMIT).and_then(Json::as_u64) {
        s.cull_limit = x;
    }
    if let Some(x) = all
        .get(EVICTION_POLICY)
        .and_then(Json::as_str)
        .and_then(|p| p.parse().ok())
    {
        s.eviction_policy = x;
    }
    if let Some(x) = all.get(STATISTICS).and_then(as_bool) {
        s.statistics = x;
    }
    if let Some(x) = all.get(TAG_INDEX).and_then(as_bool) {
        s.tag_index = x;
    }
    if let Some(x) = all.get(MIN_FILE_SIZE).and_then(Json::as_u64) {
        s.min_file_size = x.min(MAX_MIN_FILE_SIZE);
    }
    s.sync = SyncLevel::from_code(v.register(reg::SYNC));
    Ok(s)
}

impl Settings {
    /// The known settings in effect, as [`stored`] would show them had they all been
    /// stored (python-diskcache stores every default when it creates a cache).
    pub(crate) fn effective(&self) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        out.insert(SIZE_LIMIT.to_owned(), Json::from(self.size_limit));
        out.insert(CULL_LIMIT.to_owned(), Json::from(self.cull_limit));
        out.insert(
            EVICTION_POLICY.to_owned(),
            Json::from(self.eviction_policy.as_str()),
        );
        out.insert(STATISTICS.to_owned(), Json::from(self.statistics));
        out.insert(TAG_INDEX.to_owned(), Json::from(self.tag_index));
        out.insert(MIN_FILE_SIZE.to_owned(), Json::from(self.min_file_size));
        out.insert(SYNC.to_owned(), Json::from(self.sync.as_str()));
        out
    }
}

/// Booleans are stored as JSON booleans; python-diskcache's 0/1 are read too.
fn as_bool(v: &Json) -> Option<bool> {
    v.as_bool().or_else(|| v.as_u64().map(|n| n != 0))
}

/// Checks a value for a known setting; returns it normalized.
pub(crate) fn validate(name: &str, value: Json) -> Result<Json> {
    let bad = |why: &str| Error::InvalidArgument(format!("setting {name}: {why}"));
    Ok(match name {
        SIZE_LIMIT | CULL_LIMIT => Json::from(
            value
                .as_u64()
                .ok_or_else(|| bad("expected a non-negative integer"))?,
        ),
        MIN_FILE_SIZE => {
            let n = value
                .as_u64()
                .ok_or_else(|| bad("expected a non-negative integer"))?;
            if n > MAX_MIN_FILE_SIZE {
                return Err(bad(&format!("at most {MAX_MIN_FILE_SIZE} bytes")));
            }
            Json::from(n)
        }
        STATISTICS | TAG_INDEX => {
            Json::from(as_bool(&value).ok_or_else(|| bad("expected a boolean"))?)
        }
        EVICTION_POLICY => {
            let p: EvictionPolicy = value
                .as_str()
                .ok_or_else(|| bad("expected a policy name"))?
                .parse()?;
            Json::from(p.as_str())
        }
        SYNC => {
            let l: SyncLevel = value
                .as_str()
                .ok_or_else(|| bad("expected \"off\", \"normal\" or \"full\""))?
                .parse()?;
            Json::from(l.as_str())
        }
        CODEC => return Err(bad("the codec is fixed when the cache is created")),
        "count" | "size" | "hits" | "misses" => {
            return Err(bad("this is a counter, not a setting"))
        }
        _ => value,
    })
}

/// Stores settings in a transaction, rebuilding indexes that a change affects. Returns
/// whether anything changed.
pub(crate) fn store(txn: &mut WriteTxn, changes: &BTreeMap<String, Json>) -> Result<bool> {
    let before = txn.view(load)?;
    let mut changed = false;
    for (name, value) in changes {
        let current = txn.view(|v| get(v, name))?;
        if current.as_ref() == Some(value) {
            continue;
        }
        let bytes = serde_json::to_vec(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        txn.put(tree::SETTINGS, name.as_bytes().to_vec(), bytes);
        changed = true;
    }
    if !changed {
        return Ok(false);
    }
    let version = txn.register(SETTINGS_VERSION);
    txn.set_register(SETTINGS_VERSION, version + 1);
    if let Some(level) = changes.get(SYNC).and_then(Json::as_str) {
        let level: SyncLevel = level.parse()?;
        txn.set_register(reg::SYNC, level.code());
    }
    let after = txn.view(load)?;
    if after.eviction_policy != before.eviction_policy {
        rebuild_policy_index(txn, after.eviction_policy)?;
    }
    if after.tag_index != before.tag_index {
        rebuild_tag_index(txn, after.tag_index)?;
    }
    Ok(true)
}

/// Replaces the eviction index for a new policy (python-diskcache creates an SQL index).
/// Access times start at store times and access counts at zero, which is what
/// python-diskcache's columns hold for items never read under those policies.
fn rebuild_policy_index(txn: &mut WriteTxn, to: EvictionPolicy) -> Result<()> {
    txn.clear_tree(tree::CULL);
    txn.clear_tree(tree::ACCESS);
    if to == EvictionPolicy::None {
        return Ok(());
    }
    let rows = primary_rows(txn)?;
    for (rowid, store_time) in rows {
        let value = match to {
            EvictionPolicy::LeastFrequentlyUsed => 0,
            _ => crate::format::f64_order_bits(store_time),
        };
        txn.put(tree::CULL, cull_key(value, rowid), Vec::new());
        if to.tracks_access() {
            txn.put(
                tree::ACCESS,
                rowid.to_be_bytes().to_vec(),
                value.to_be_bytes().to_vec(),
            );
        }
    }
    Ok(())
}

/// Every item's rowid and store time.
fn primary_rows(txn: &WriteTxn) -> Result<Vec<(u64, f64)>> {
    txn.view(|v| {
        let mut rows = Vec::new();
        for item in v.range(
            tree::PRIMARY,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
        )? {
            let (k, val) = item?;
            let r = record::decode(val).map_err(|e| {
                Error::corrupted(
                    "primary tree",
                    0,
                    format!("record of key {k:?}: {}", e.detail),
                )
            })?;
            rows.push((r.rowid, r.store_time));
        }
        Ok(rows)
    })
}

/// Builds or drops the tag index.
fn rebuild_tag_index(txn: &mut WriteTxn, on: bool) -> Result<()> {
    txn.clear_tree(tree::TAG);
    if !on {
        return Ok(());
    }
    let tagged = txn.view(|v| {
        let mut out = Vec::new();
        for item in v.range(
            tree::PRIMARY,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
        )? {
            let (_, val) = item?;
            let r =
                record::decode(val).map_err(|e| Error::corrupted("primary tree", 0, e.detail))?;
            if let Some(tag) = r.tag {
                out.push(super::entries::tag_key(tag, r.rowid));
            }
        }
        Ok::<_, Error>(out)
    })?;
    for k in tagged {
        txn.put(tree::TAG, k, Vec::new());
    }
    Ok(())
}
