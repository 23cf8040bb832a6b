//! [`Index`]: a persistent, process-safe map that keeps insertion order (python-diskcache's
//! `Index`).

use crate::cache::{
    Cache, EvictionPolicy, Keys, Live, MemoizeOptions, Memoized, QueueOptions, Values,
};
use crate::codec::{Bincode, Codec};
use crate::error::{Error, Result};
use crate::key::{EncodedKey, Key};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// A persistent map from `K` to `V` in a cache directory that remembers insertion order,
/// like Python's `dict`/`OrderedDict` (python-diskcache's `Index`).
///
/// Items live in a [`Cache`] with the eviction policy `none`, so nothing is ever evicted,
/// and any number of handles in any number of processes may use it at once. Iteration is in
/// insertion order (overwriting a key keeps its place), either way; `popitem` takes the
/// newest (or oldest) item.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::Index;
/// let dir = tempfile::tempdir().unwrap();
/// let index: Index<String, u32> = Index::open(dir.path())?;
/// for (k, v) in [("b", 2), ("a", 1), ("c", 3)] {
///     index.insert(&k.to_string(), &v)?;
/// }
/// assert_eq!(index.keys().collect::<diskcache::Result<Vec<_>>>()?, ["b", "a", "c"]);
/// assert_eq!(index.popitem(true)?, Some(("c".to_string(), 3)));
/// assert_eq!(index.setdefault(&"d".to_string(), &4)?, 4);
/// assert!(index.eq_ordered([("b".to_string(), 2), ("a".to_string(), 1), ("d".to_string(), 4)])?);
/// # Ok(())
/// # }
/// ```
pub struct Index<K, V, C: Codec = Bincode> {
    cache: Cache<C>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, C: Codec> Clone for Index<K, V, C> {
    fn clone(&self) -> Self {
        Index {
            cache: self.cache.clone(),
            types: PhantomData,
        }
    }
}

impl<K, V, C: Codec> fmt::Debug for Index<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("directory", &self.cache.directory())
            .finish()
    }
}

impl<K, V> Index<K, V, Bincode>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// Opens (creating if needed) the index in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Index<K, V>> {
        Index::from_cache(
            Cache::builder()
                .eviction_policy(EvictionPolicy::None)
                .open(dir)?,
        )
    }

    /// Creates an index in a new temporary directory (not removed when it is dropped).
    pub fn temp() -> Result<Index<K, V>> {
        Index::from_cache(
            Cache::builder()
                .eviction_policy(EvictionPolicy::None)
                .open_temp()?,
        )
    }
}

impl<K, V, C> Index<K, V, C>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
    C: Codec,
{
    /// An index on an open cache (for a custom codec, timeout or sync level). The cache must
    /// use the eviction policy `none`; any other is [`Error::InvalidArgument`].
    pub fn from_cache(cache: Cache<C>) -> Result<Index<K, V, C>> {
        let policy = cache.eviction_policy()?;
        if policy != EvictionPolicy::None {
            return Err(Error::InvalidArgument(format!(
                "an index's cache must use the eviction policy none, not {}",
                policy.as_str()
            )));
        }
        Ok(Index {
            cache,
            types: PhantomData,
        })
    }

    /// The cache that holds the items.
    pub fn cache(&self) -> &Cache<C> {
        &self.cache
    }

    /// The index's directory.
    pub fn directory(&self) -> &Path {
        self.cache.directory()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.cache.get(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.cache.contains(key)
    }

    /// Stores `value` under `key` (a new key goes last; an existing key keeps its place).
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.cache.set(key, value)
    }

    /// Stores every pair, in order, in one transaction (`dict.update`).
    pub fn extend<I, KB, VB>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (KB, VB)>,
        KB: Borrow<K>,
        VB: Borrow<V>,
    {
        self.cache.transact(|| {
            for (k, v) in items {
                self.cache.set(k.borrow(), v.borrow())?;
            }
            Ok(())
        })
    }

    /// Removes `key`; whether it was present.
    pub fn remove(&self, key: &K) -> Result<bool> {
        self.cache.delete(key)
    }

    /// Removes `key` and returns its value, if it was present.
    pub fn pop(&self, key: &K) -> Result<Option<V>> {
        self.cache.pop(key)
    }

    /// Removes and returns the newest item (`last`) or the oldest; `None` if empty. Atomic.
    pub fn popitem(&self, last: bool) -> Result<Option<(K, V)>> {
        self.cache
            .transact(|| match self.cache.peekitem::<V>(last)? {
                Some((k, v)) => {
                    self.cache.delete(&k)?;
                    Ok(Some((k.deserialize()?, v)))
                }
                None => Ok(None),
            })
    }

    /// The newest item (`last`) or the oldest, left in place; `None` if empty.
    pub fn peekitem(&self, last: bool) -> Result<Option<(K, V)>> {
        match self.cache.peekitem::<V>(last)? {
            Some((k, v)) => Ok(Some((k.deserialize()?, v))),
            None => Ok(None),
        }
    }

    /// The value of `key`; if missing, stores `default` and returns it. Atomic: of many
    /// concurrent calls, all return the value that was stored first.
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let k = crate::key::encode_key(key)?;
        loop {
            if let Some(v) = self.cache.get(EncodedKey(&k))? {
                return Ok(v);
            }
            if !self.cache.add(EncodedKey(&k), default)? {
                // Present but unreadable (its value file is lost): remove it, so the
                // next round can store the default. A present, readable item (stored
                // concurrently) is left alone and read next round.
                self.cache.settle_unreadable(&k)?;
            }
        }
    }

    /// Pushes `value` onto the index's queue (see [`Cache::push`]); returns its key.
    pub fn push(&self, value: &V) -> Result<Key> {
        self.cache.push(value)
    }

    /// [`Index::push`] with a prefix and side.
    pub fn push_with(&self, value: &V, q: &QueueOptions) -> Result<Key> {
        self.cache.push_with(value, q)
    }

    /// Takes the item at the front of the index's queue (see [`Cache::pull`]).
    pub fn pull(&self) -> Result<Option<(Key, V)>> {
        self.cache.pull()
    }

    /// [`Index::pull`] with a prefix and side.
    pub fn pull_with(&self, q: &QueueOptions) -> Result<Option<(Key, V)>> {
        Ok(self.cache.pull_with::<V>(q)?.map(|(k, e)| (k, e.value)))
    }

    /// The number of items.
    pub fn len(&self) -> Result<u64> {
        self.cache.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.cache.is_empty()
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.cache.clear().map(|_| ())
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> IndexKeys<K, C> {
        IndexKeys {
            keys: self.cache.iter(),
            types: PhantomData,
        }
    }

    /// The keys, newest first.
    pub fn keys_rev(&self) -> IndexKeys<K, C> {
        IndexKeys {
            keys: self.cache.iter_rev(),
            types: PhantomData,
        }
    }

    /// The values in insertion order.
    pub fn values(&self) -> Values<V, C> {
        Values::new(&self.cache, self.cache.iter())
    }

    /// The values, newest first.
    pub fn values_rev(&self) -> Values<V, C> {
        Values::new(&self.cache, self.cache.iter_rev())
    }

    /// The items in insertion order.
    pub fn items(&self) -> IndexItems<K, V, C> {
        IndexItems {
            live: Live::new(&self.cache, self.cache.iter()),
            types: PhantomData,
        }
    }

    /// The items, newest first.
    pub fn items_rev(&self) -> IndexItems<K, V, C> {
        IndexItems {
            live: Live::new(&self.cache, self.cache.iter_rev()),
            types: PhantomData,
        }
    }

    /// Whether the index holds exactly these items in this order (python-diskcache's `==`
    /// against an `Index` or `OrderedDict`).
    pub fn eq_ordered<I, KB, VB>(&self, other: I) -> Result<bool>
    where
        I: IntoIterator<Item = (KB, VB)>,
        KB: Borrow<K>,
        VB: Borrow<V>,
        K: PartialEq,
        V: PartialEq,
    {
        self.cache.transact(|| {
            let mut mine = self.items();
            for (k, v) in other {
                match mine.next().transpose()? {
                    Some((mk, mv)) if &mk == k.borrow() && &mv == v.borrow() => {}
                    _ => return Ok(false),
                }
            }
            Ok(mine.next().transpose()?.is_none())
        })
    }

    /// Whether the index holds exactly these items, in any order (python-diskcache's `==`
    /// against other mappings). `other` must not repeat a key.
    pub fn eq_unordered<I, KB, VB>(&self, other: I) -> Result<bool>
    where
        I: IntoIterator<Item = (KB, VB)>,
        KB: Borrow<K>,
        VB: Borrow<V>,
        V: PartialEq,
    {
        self.cache.transact(|| {
            let mut n = 0u64;
            for (k, v) in other {
                n += 1;
                match self.cache.get::<V>(k.borrow())? {
                    Some(mine) if &mine == v.borrow() => {}
                    _ => return Ok(false),
                }
            }
            Ok(n == self.cache.len()?)
        })
    }

    /// Wraps a function so that its results are cached in this index; see
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
        self.cache.memoize(name, opts, f)
    }

    /// Runs `f` as one transaction on the index (see [`Cache::transact`]).
    pub fn transact<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.cache.transact(f)
    }
}

/// The keys of an [`Index`] in insertion order (either way); see [`Index::keys`].
pub struct IndexKeys<K, C: Codec> {
    keys: Keys<C>,
    types: PhantomData<fn() -> K>,
}

impl<K, C: Codec> fmt::Debug for IndexKeys<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexKeys").finish_non_exhaustive()
    }
}

impl<K: DeserializeOwned, C: Codec> Iterator for IndexKeys<K, C> {
    type Item = Result<K>;

    fn next(&mut self) -> Option<Result<K>> {
        Some(self.keys.next()?.and_then(|k| k.deserialize()))
    }
}

/// The items of an [`Index`] in insertion order (either way); items removed while
/// iterating are skipped. See [`Index::items`].
pub struct IndexItems<K, V, C: Codec> {
    live: Live<C>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, C: Codec> fmt::Debug for IndexItems<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexItems").finish_non_exhaustive()
    }
}

impl<K: DeserializeOwned, V: DeserializeOwned + 'static, C: Codec> Iterator
    for IndexItems<K, V, C>
{
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Result<(K, V)>> {
        Some(
            self.live
                .next::<V>()?
                .and_then(|(k, v)| Ok((k.deserialize()?, v))),
        )
    }
}
