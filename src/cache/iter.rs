//! Iteration: insertion order and sorted order, either way; `peekitem`.
//!
//! Iterators read a page of keys at a time, each page from a fresh view starting after the
//! last key returned (python-diskcache's keyset pages), so they stay valid, and see the
//! latest state page by page, while other handles and processes write.

use super::core::{Found, Stored};
use super::entries;
use super::value::Entry;
use super::Cache;
use crate::codec::Codec;
use crate::engine::{reg, tree};
use crate::error::Result;
use crate::key::Key;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::ops::Bound;

const PAGE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// By rowid: the order in which keys were first stored.
    Insertion,
    /// By encoded key: numbers, then strings, byte strings, composites.
    Sorted,
}

/// An iterator over a cache's keys; see [`Cache::iter`] and [`Cache::iterkeys`].
///
/// Expired items that have not been removed yet are included (as in python-diskcache).
#[derive(Debug)]
pub struct Keys<C: Codec> {
    cache: Cache<C>,
    order: Order,
    rev: bool,
    /// The last key (sorted) or rowid key (insertion) returned; the next page starts after.
    cursor: Option<Vec<u8>>,
    /// For insertion order: keys stored after the iterator was made are not returned.
    last_rowid: u64,
    page: VecDeque<Key>,
    done: bool,
}

impl<C: Codec> Keys<C> {
    fn new(cache: &Cache<C>, order: Order, rev: bool) -> Keys<C> {
        let last_rowid = cache
            .read_view(|v, _| Ok(v.register(reg::LAST_ROWID)))
            .unwrap_or(u64::MAX);
        Keys {
            cache: cache.clone(),
            order,
            rev,
            cursor: None,
            last_rowid,
            page: VecDeque::new(),
            done: false,
        }
    }

    fn fill(&mut self) -> Result<()> {
        let (t, bound_hi) = match self.order {
            Order::Insertion => (tree::ROWID, Some(entries::rowid_key(self.last_rowid))),
            Order::Sorted => (tree::PRIMARY, None),
        };
        let cursor = self.cursor.clone();
        let rev = self.rev;
        let (keys, last) = self.cache.read_view(|v, _| {
            let after = cursor.as_deref();
            let (lo, hi) = match (rev, after, bound_hi.as_deref()) {
                (false, Some(c), h) => (
                    Bound::Excluded(c),
                    h.map_or(Bound::Unbounded, Bound::Included),
                ),
                (false, None, h) => (
                    Bound::Unbounded,
                    h.map_or(Bound::Unbounded, Bound::Included),
                ),
                (true, Some(c), _) => (Bound::Unbounded, Bound::Excluded(c)),
                (true, None, h) => (
                    Bound::Unbounded,
                    h.map_or(Bound::Unbounded, Bound::Included),
                ),
            };
            let mut keys = Vec::with_capacity(PAGE);
            let mut last = None;
            for item in v.range(t, lo, hi, rev)?.take(PAGE) {
                let (k, val) = item?;
                last = Some(k.to_vec());
                keys.push(Key::from_encoded(if t == tree::ROWID { val } else { k })?);
            }
            Ok((keys, last))
        })?;
        if keys.len() < PAGE {
            self.done = true;
        }
        if last.is_some() {
            self.cursor = last;
        }
        self.page.extend(keys);
        Ok(())
    }
}

impl<C: Codec> Iterator for Keys<C> {
    type Item = Result<Key>;

    fn next(&mut self) -> Option<Result<Key>> {
        if self.page.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// Keys with their values, skipping keys whose item is gone by the time it is read (for
/// the collections' value iterators).
#[derive(Debug)]
pub(crate) struct Live<C: Codec> {
    cache: Cache<C>,
    keys: Keys<C>,
}

impl<C: Codec> Live<C> {
    pub(crate) fn new(cache: &Cache<C>, keys: Keys<C>) -> Live<C> {
        Live {
            cache: cache.clone(),
            keys,
        }
    }

    /// The next key whose item is still there, with its value.
    pub(crate) fn next<V: DeserializeOwned + 'static>(&mut self) -> Option<Result<(Key, V)>> {
        loop {
            let k = match self.keys.next()? {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            match self.cache.get::<V>(&k) {
                Ok(Some(v)) => return Some(Ok((k, v))),
                // Removed since its key was read: skip it.
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Values read key by key (the collections' value iterators: [`crate::Deque::iter`],
/// [`crate::Index::values`]); an item removed after its key was read is skipped.
pub struct Values<V, C: Codec> {
    live: Live<C>,
    types: std::marker::PhantomData<fn() -> V>,
}

impl<V, C: Codec> Values<V, C> {
    pub(crate) fn new(cache: &Cache<C>, keys: Keys<C>) -> Values<V, C> {
        Values {
            live: Live::new(cache, keys),
            types: std::marker::PhantomData,
        }
    }
}

impl<V, C: Codec> std::fmt::Debug for Values<V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values").finish_non_exhaustive()
    }
}

impl<V: DeserializeOwned + 'static, C: Codec> Iterator for Values<V, C> {
    type Item = Result<V>;

    fn next(&mut self) -> Option<Result<V>> {
        Some(self.live.next::<V>()?.map(|(_, v)| v))
    }
}

impl<C: Codec> Cache<C> {
    /// The keys in insertion order (the order in which keys were first stored; overwriting
    /// a key keeps its place), like iterating a python-diskcache `Cache`. Keys stored after
    /// this call are not returned.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::Key;
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// for key in ["c", "a", "b"] {
    ///     cache.set(key, 1)?;
    /// }
    /// let inserted: Vec<Key> = cache.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(inserted, ["c", "a", "b"].map(|k| Key::Str(k.into())));
    /// let sorted: Vec<Key> = cache.iterkeys().collect::<Result<_, _>>()?;
    /// assert_eq!(sorted, ["a", "b", "c"].map(|k| Key::Str(k.into())));
    /// # Ok(())
    /// # }
    /// ```
    pub fn iter(&self) -> Keys<C> {
        Keys::new(self, Order::Insertion, false)
    }

    /// The keys in reverse insertion order (python-diskcache's `reversed(cache)`).
    pub fn iter_rev(&self) -> Keys<C> {
        Keys::new(self, Order::Insertion, true)
    }

    /// The keys in sorted order: numbers, then strings, byte strings, and composite keys,
    /// each in their natural order.
    pub fn iterkeys(&self) -> Keys<C> {
        Keys::new(self, Order::Sorted, false)
    }

    /// The keys in reverse sorted order.
    pub fn iterkeys_rev(&self) -> Keys<C> {
        Keys::new(self, Order::Sorted, true)
    }

    /// The most recently (`last`) or least recently first-stored item, without removing it
    /// (python-diskcache's `peekitem`). Expired items met on the way are removed, and so are
    /// items whose value file is gone (their value is lost; python-diskcache retries those
    /// forever).
    pub fn peekitem<V: DeserializeOwned + 'static>(&self, last: bool) -> Result<Option<(Key, V)>> {
        Ok(self.peekitem_entry(last)?.map(|(k, e)| (k, e.value)))
    }

    /// [`Cache::peekitem`] with the expiry time and tag.
    pub fn peekitem_entry<V: DeserializeOwned + 'static>(
        &self,
        last: bool,
    ) -> Result<Option<(Key, Entry<V>)>> {
        let found = self.peekitem_loaded(last, self.decoded::<V>())?;
        found
            .map(|(k, f)| Ok((Key::from_encoded(&k)?, f.into_entry()?)))
            .transpose()
    }

    /// [`Cache::peekitem_entry`], loading the value with `load`; returns the encoded key.
    pub(crate) fn peekitem_loaded<R>(
        &self,
        last: bool,
        load: impl Fn(crate::format::value::ValueKind, Stored<'_>) -> Result<Option<R>>,
    ) -> Result<Option<(Vec<u8>, Found<R>)>> {
        loop {
            // Usually the item at the edge is live: read it without the writer lock.
            let edge = self.read_view(|v, _| {
                match v
                    .range(tree::ROWID, Bound::Unbounded, Bound::Unbounded, last)?
                    .next()
                {
                    Some(item) => Ok(Some(item?.1.to_vec())),
                    None => Ok(None),
                }
            })?;
            let Some(key) = edge else { return Ok(None) };
            if let Some(f) = self.fetch(&key, false, &load)? {
                return Ok(Some((key, f)));
            }
            // Expired, or its value is lost: remove it and look again.
            self.settle_unreadable(&key)?;
        }
    }
}
