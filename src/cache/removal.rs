//! Removing many items: `clear`, `expire`, `evict`, `cull`, in bounded batches.
//!
//! Each batch is its own transaction, so a long removal never holds the writer lock for
//! long and other writers interleave between batches (as in python-diskcache). A timeout
//! reports, in [`Error::Timeout`], how many items had been removed by then.

use super::entries::{self, rowid_key, rowid_of, tag_key, time_key};
use super::settings::{self, EvictionPolicy, Settings};
use super::Cache;
use crate::codec::Codec;
use crate::engine::{reg, tree, View};
use crate::error::{Error, Result};
use crate::format::record;
use crate::key::encode_key;
use serde::Serialize;
use std::ops::Bound;
use std::time::{SystemTime, UNIX_EPOCH};

/// Items removed per transaction.
const BATCH: usize = 1000;

/// What a batch found: index entries (tree, key with the rowid at its end) whose items are
/// to go. `None` ends the removal; an empty batch just moves on.
type Found = Vec<(u8, Vec<u8>)>;

impl<C: Codec> Cache<C> {
    /// Runs batches until `select` returns `None`; returns how many items were removed. An
    /// index entry whose item is gone already (a stale entry) is removed itself, so a batch
    /// never finds the same entries again.
    fn remove_batches(
        &self,
        mut select: impl FnMut(&View<'_>, &Settings) -> Result<Option<Found>>,
    ) -> Result<u64> {
        let mut removed = 0;
        loop {
            let r = self.write(|txn, s| {
                let Some(found) = txn.view(|v| select(v, s))? else {
                    return Ok(None);
                };
                let mut n = 0;
                for (t, k) in &found {
                    let Some(rowid) = rowid_of(k) else { continue };
                    if entries::remove_rowid(txn, s, rowid)? {
                        n += 1;
                    } else {
                        txn.del(*t, k.clone());
                    }
                }
                Ok(Some(n))
            });
            match r {
                Ok(None) => return Ok(removed),
                Ok(Some(n)) => removed += n,
                Err(Error::Timeout { .. }) => return Err(Error::Timeout { removed }),
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes every item; returns how many there were.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// for n in 0..100 {
    ///     cache.set(n, n)?;
    /// }
    /// assert_eq!(cache.clear()?, 100);
    /// assert_eq!(cache.len()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn clear(&self) -> Result<u64> {
        // Cursor on rowids, as python-diskcache: items added meanwhile after the cursor go too.
        let mut after = 0u64;
        self.remove_batches(move |v, _| {
            let lo = rowid_key(after);
            let found = first_keys(
                v,
                tree::ROWID,
                Bound::Excluded(&lo),
                Bound::Unbounded,
                BATCH,
            )?;
            if let Some(r) = found.last().and_then(|(_, k)| rowid_of(k)) {
                after = r;
            }
            Ok(non_empty(found))
        })
    }

    /// Removes the expired items; returns how many.
    pub fn expire(&self) -> Result<u64> {
        self.expire_at(SystemTime::now())
    }

    /// Removes the items that expired before `now` (python-diskcache's `expire(now)`).
    pub fn expire_at(&self, now: SystemTime) -> Result<u64> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let hi = time_key(now, 0);
        self.remove_batches(|v, _| {
            if v.register(reg::EXPIRING) == 0 {
                return Ok(None);
            }
            Ok(non_empty(first_keys(
                v,
                tree::EXPIRE,
                Bound::Unbounded,
                Bound::Excluded(&hi),
                BATCH,
            )?))
        })
    }

    /// Removes every item with `tag`; returns how many. With the tag index on, the items are
    /// found through it; without, by a scan of the cache (as python-diskcache).
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::SetOptions;
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::builder().tag_index(true).open(dir.path())?;
    /// for n in 0..100 {
    ///     let tag = if n % 2 == 0 { "even" } else { "odd" };
    ///     cache.set_with(n, n, &SetOptions::new().tag(tag))?;
    /// }
    /// assert_eq!(cache.evict("even")?, 50);
    /// # Ok(())
    /// # }
    /// ```
    pub fn evict(&self, tag: impl Serialize) -> Result<u64> {
        let tag = encode_key(&tag)?;
        let mut after = 0u64;
        self.remove_batches(move |v, s| {
            if s.tag_index {
                let (lo, hi) = (tag_key(&tag, 0), tag_key(&tag, u64::MAX));
                return Ok(non_empty(first_keys(
                    v,
                    tree::TAG,
                    Bound::Included(&lo),
                    Bound::Included(&hi),
                    BATCH,
                )?));
            }
            // No index: walk the items in rowid order, a bounded stretch per batch.
            let mut found = Vec::new();
            let lo = rowid_key(after);
            let mut scanned = 0;
            for item in v.range(tree::ROWID, Bound::Excluded(&lo), Bound::Unbounded, false)? {
                let (rk, key) = item?;
                let Some(rowid) = rowid_of(rk) else { continue };
                after = rowid;
                scanned += 1;
                if let Some(raw) = v.get(tree::PRIMARY, key)? {
                    let r = record::decode(raw).map_err(|e| entries::corrupt_record(key, e))?;
                    if r.rowid == rowid && r.tag == Some(tag.as_slice()) {
                        found.push((tree::ROWID, rk.to_vec()));
                    }
                }
                if found.len() >= BATCH || scanned >= 16 * BATCH {
                    break;
                }
            }
            // A stretch with no match moves on; the end of the items ends the removal.
            if scanned == 0 {
                return Ok(None);
            }
            Ok(Some(found))
        })
    }

    /// Removes expired items, then items in eviction-policy order until the volume is within
    /// the size limit; returns how many items were removed. Works whatever `cull_limit` is,
    /// so a cache with automatic culling off (`cull_limit` 0) can be culled on a schedule.
    ///
    /// Unlike python-diskcache, the count includes expired items under the `none` policy
    /// (python-diskcache returns 0 there).
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::builder().size_limit(1_000_000).cull_limit(0).open(dir.path())?;
    /// for n in 0..1000 {
    ///     cache.set(n, vec![b'A'; 1000])?;
    /// }
    /// assert!(cache.volume()? > 1_000_000);
    /// assert!(cache.cull()? > 0);
    /// assert!(cache.volume()? < 1_000_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cull(&self) -> Result<u64> {
        let expired = self.expire()?;
        let mut removed = expired;
        loop {
            let r = self.write(|txn, s| {
                if s.eviction_policy == EvictionPolicy::None {
                    return Ok(None);
                }
                if txn.view(entries::volume) <= s.size_limit {
                    return Ok(None);
                }
                // One scan per batch: the victims in eviction order, removed until the volume
                // is within the limit.
                let victims = txn.view(|v| {
                    first_keys(v, tree::CULL, Bound::Unbounded, Bound::Unbounded, BATCH)
                })?;
                let mut n = 0u64;
                for (t, k) in victims {
                    if txn.view(entries::volume) <= s.size_limit {
                        break;
                    }
                    let Some(rowid) = rowid_of(&k) else { continue };
                    if entries::remove_rowid(txn, s, rowid)? {
                        n += 1;
                    } else {
                        txn.del(t, k);
                    }
                }
                Ok(Some(n))
            });
            match r {
                Ok(None) | Ok(Some(0)) => return Ok(removed),
                Ok(Some(n)) => removed += n,
                Err(Error::Timeout { .. }) => return Err(Error::Timeout { removed }),
                Err(e) => return Err(e),
            }
        }
    }

    /// Turns the tag index on (python-diskcache's `create_tag_index`), building it.
    pub fn create_tag_index(&self) -> Result<()> {
        self.reset(settings::TAG_INDEX, true).map(|_| ())
    }

    /// Turns the tag index off, dropping it.
    pub fn drop_tag_index(&self) -> Result<()> {
        self.reset(settings::TAG_INDEX, false).map(|_| ())
    }
}

fn non_empty(found: Found) -> Option<Found> {
    (!found.is_empty()).then_some(found)
}

/// Up to `limit` keys of a tree within bounds, from the start.
fn first_keys(
    v: &View<'_>,
    t: u8,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    limit: usize,
) -> Result<Found> {
    let mut out = Vec::new();
    for item in v.range(t, lo, hi, false)? {
        let (k, _) = item?;
        out.push((t, k.to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
