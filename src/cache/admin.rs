//! Settings and statistics: `reset`, `setting`, `stats`.

use super::settings;
use super::Cache;
use crate::codec::Codec;
use crate::engine::reg;
use crate::error::{Error, Result};
use crate::format::meta::{LIVE_HITS, LIVE_MISSES};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

impl<C: Codec> Cache<C> {
    /// Changes a setting stored in the cache, for every handle on it (python-diskcache's
    /// `reset(key, value)`), and returns the stored value. Known settings are checked:
    /// `size_limit`, `cull_limit`, `eviction_policy` (a policy name), `statistics`,
    /// `tag_index`, `disk_min_file_size`; other names are stored as given. Changing the
    /// eviction policy or the tag index rebuilds its index in the same transaction.
    ///
    /// Unlike python-diskcache, every open handle sees the change at its next operation
    /// (python-diskcache's handles keep their own copy until they call `reset(key)`).
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.reset("cull_limit", 0)?;
    /// assert_eq!(cache.cull_limit()?, 0);
    /// assert_eq!(cache.reset("eviction_policy", "least-recently-used")?, "least-recently-used");
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset(&self, name: &str, value: impl Serialize) -> Result<Json> {
        let v = serde_json::to_value(&value)
            .map_err(|e| Error::InvalidArgument(format!("setting {name}: {e}")))?;
        let v = settings::validate(name, v)?;
        let mut changes = BTreeMap::new();
        changes.insert(name.to_owned(), v.clone());
        self.write(|txn, _| settings::store(txn, &changes))?;
        Ok(v)
    }

    /// A setting (python-diskcache's `reset(key)`): the stored value, or for a known setting
    /// never stored, the default in effect; also reads the counters `count`, `size`, `hits`
    /// and `misses`. `None` for an unknown name that was never stored.
    pub fn setting(&self, name: &str) -> Result<Option<Json>> {
        match name {
            "count" => return Ok(Some(self.len()?.into())),
            "size" => return self.read_view(|v, _| Ok(Some(v.register(reg::SIZE).into()))),
            "hits" => return Ok(Some(self.engine()?.live_load(LIVE_HITS).into())),
            "misses" => return Ok(Some(self.engine()?.live_load(LIVE_MISSES).into())),
            _ => {}
        }
        self.read_view(|v, s| match settings::get(v, name)? {
            Some(x) => Ok(Some(x)),
            None => Ok(s.effective().remove(name)),
        })
    }

    /// Checkpoints the log into the index and rewrites the index file with only live pages,
    /// returning the space that overwrites and removals left behind (python-diskcache's
    /// `VACUUM`). Checkpoints keep the index within about twice its live size on their own;
    /// this reclaims the rest at once, e.g. after clearing most of a large cache. Readers keep reading throughout;
    /// writers wait for it. Not allowed inside [`Cache::transact`].
    pub fn compact(&self) -> Result<()> {
        if self.in_txn() {
            return Err(Error::InvalidArgument(
                "compact inside a transaction".into(),
            ));
        }
        // Commit batched accesses first: compaction needs a transaction with no changes.
        self.write(|_, _| Ok(()))?;
        let mut txn = self.engine()?.begin(self.timeout())?;
        match txn.compact() {
            Ok(()) => txn.commit(),
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    /// Every setting: the stored ones, and the defaults in effect for known settings never
    /// stored.
    pub fn settings(&self) -> Result<BTreeMap<String, Json>> {
        self.read_view(|v, s| {
            let mut all = s.effective();
            all.extend(settings::stored(v)?);
            Ok(all)
        })
    }

    /// Returns `(hits, misses)` counted so far; with `reset`, zeroes them (the values
    /// returned are from before); then turns statistics on or off (python-diskcache's
    /// `stats(enable, reset)`; note that python-diskcache's `stats()` with no arguments
    /// turns statistics on).
    ///
    /// The counters are shared by every handle and process on the cache, and counting
    /// never makes a read wait for the writer lock (python-diskcache takes the write lock
    /// on every read when statistics are on). They are made durable with the meta file.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.stats(true, false)?;
    /// for n in 0..100 {
    ///     cache.set(n, n)?;
    /// }
    /// for n in 0..150 {
    ///     cache.get::<i64>(n)?;
    /// }
    /// assert_eq!(cache.stats(false, true)?, (100, 50));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The setting is written first: if that times out, the counters are left as they were.
    pub fn stats(&self, enable: bool, reset: bool) -> Result<(u64, u64)> {
        if self.statistics_enabled()? != enable {
            self.reset(settings::STATISTICS, enable)?;
        }
        let e = self.engine()?;
        let counts = if reset {
            (e.live_swap(LIVE_HITS, 0), e.live_swap(LIVE_MISSES, 0))
        } else {
            (e.live_load(LIVE_HITS), e.live_load(LIVE_MISSES))
        };
        Ok(counts)
    }
}
