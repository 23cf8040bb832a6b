//! [`Deque`]: a persistent, process-safe double-ended queue (python-diskcache's `Deque`).

use crate::cache::{Cache, EvictionPolicy, QueueOptions, Side, Values};
use crate::codec::{Bincode, Codec};
use crate::error::{Error, Result};
use crate::key::Key;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// The setting under which a deque's `maxlen` is stored.
const MAXLEN_SETTING: &str = "deque_maxlen";

/// A persistent double-ended queue of `T`s in a cache directory, with
/// `collections.deque`'s API: push and pop at both ends, peek, rotate, reverse, indexing,
/// and an optional `maxlen` that drops items from the opposite end.
///
/// Items live in a [`Cache`] with the eviction policy `none` under integer keys (the
/// cache's queue: [`Cache::push`]), so a deque never evicts or expires, and any number of
/// handles in any number of processes may use it at once: a cross-process queue. Each
/// method is atomic (one transaction); [`Deque::transact`] groups several.
///
/// Differences from python-diskcache, all deliberate:
/// - `maxlen` is stored with the deque, so every handle and every later opening uses it
///   (python-diskcache keeps it in the object only);
/// - `rotate`, `reverse` and `extend` are atomic;
/// - popping or peeking an empty deque is `Ok(None)`, not an error, and `remove` of a
///   missing value is `Ok(false)`.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::Deque;
/// let dir = tempfile::tempdir().unwrap();
/// let deque: Deque<String> = Deque::open(dir.path())?;
/// deque.extend(["b", "c"].map(String::from))?;
/// deque.appendleft(&"a".to_string())?;
/// deque.rotate(1)?;
/// assert_eq!(deque.to_vec()?, ["c", "a", "b"]);
/// assert_eq!(deque.popleft()?.as_deref(), Some("c"));
/// assert_eq!(deque.len()?, 2);
/// # Ok(())
/// # }
/// ```
pub struct Deque<T, C: Codec = Bincode> {
    cache: Cache<C>,
    items: PhantomData<fn() -> T>,
}

impl<T, C: Codec> Clone for Deque<T, C> {
    fn clone(&self) -> Self {
        Deque {
            cache: self.cache.clone(),
            items: PhantomData,
        }
    }
}

impl<T, C: Codec> fmt::Debug for Deque<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deque")
            .field("directory", &self.cache.directory())
            .finish()
    }
}

fn back() -> QueueOptions {
    QueueOptions::new().back()
}

fn front() -> QueueOptions {
    QueueOptions::new().front()
}

impl<T: Serialize + DeserializeOwned + 'static> Deque<T, Bincode> {
    /// Opens (creating if needed) the deque in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Deque<T>> {
        Deque::from_cache(
            Cache::builder()
                .eviction_policy(EvictionPolicy::None)
                .open(dir)?,
        )
    }

    /// Creates a deque in a new temporary directory (not removed when the deque is dropped;
    /// [`Deque::directory`] tells where it is).
    pub fn temp() -> Result<Deque<T>> {
        Deque::from_cache(
            Cache::builder()
                .eviction_policy(EvictionPolicy::None)
                .open_temp()?,
        )
    }
}

impl<T: Serialize + DeserializeOwned + 'static, C: Codec> Deque<T, C> {
    /// A deque on an open cache (for a custom codec, timeout or sync level). The cache must
    /// use the eviction policy `none`, so no item is ever evicted: open it with
    /// `Cache::builder().eviction_policy(EvictionPolicy::None)`; any other policy is
    /// [`Error::InvalidArgument`].
    pub fn from_cache(cache: Cache<C>) -> Result<Deque<T, C>> {
        let policy = cache.eviction_policy()?;
        if policy != EvictionPolicy::None {
            return Err(Error::InvalidArgument(format!(
                "a deque's cache must use the eviction policy none, not {}",
                policy.as_str()
            )));
        }
        Ok(Deque {
            cache,
            items: PhantomData,
        })
    }

    /// The cache that holds the items.
    pub fn cache(&self) -> &Cache<C> {
        &self.cache
    }

    /// The deque's directory.
    pub fn directory(&self) -> &Path {
        self.cache.directory()
    }

    /// The stored maximum length, if any.
    pub fn maxlen(&self) -> Result<Option<u64>> {
        Ok(self.cache.setting(MAXLEN_SETTING)?.and_then(|v| v.as_u64()))
    }

    /// Stores a maximum length (or none) for every handle, and drops items from the front
    /// until the deque fits.
    pub fn set_maxlen(&self, maxlen: Option<u64>) -> Result<()> {
        self.cache.transact(|| {
            self.cache.reset(MAXLEN_SETTING, maxlen)?;
            if let Some(m) = maxlen {
                while self.cache.len()? > m {
                    if self.take(Side::Front)?.is_none() {
                        break;
                    }
                }
            }
            Ok(())
        })
    }

    /// [`Deque::set_maxlen`], builder style.
    pub fn with_maxlen(self, maxlen: Option<u64>) -> Result<Self> {
        self.set_maxlen(maxlen)?;
        Ok(self)
    }

    /// Adds `value` at the back (right); with a `maxlen`, drops from the front if full.
    pub fn append(&self, value: &T) -> Result<()> {
        self.cache.transact(|| self.push(value, Side::Back))
    }

    /// Adds `value` at the front (left); with a `maxlen`, drops from the back if full.
    pub fn appendleft(&self, value: &T) -> Result<()> {
        self.cache.transact(|| self.push(value, Side::Front))
    }

    /// Appends every value at the back, in order, in one transaction.
    pub fn extend<I>(&self, values: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        use std::borrow::Borrow;
        self.cache.transact(|| {
            for v in values {
                self.push(v.borrow(), Side::Back)?;
            }
            Ok(())
        })
    }

    /// Adds every value at the front, one after another (so they end up in reverse order,
    /// as with `collections.deque.extendleft`), in one transaction.
    pub fn extendleft<I>(&self, values: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        use std::borrow::Borrow;
        self.cache.transact(|| {
            for v in values {
                self.push(v.borrow(), Side::Front)?;
            }
            Ok(())
        })
    }

    /// Pushes inside the caller's transaction, then trims to `maxlen` from the other end.
    fn push(&self, value: &T, side: Side) -> Result<()> {
        let q = match side {
            Side::Back => back(),
            Side::Front => front(),
        };
        self.cache.push_with(value, &q)?;
        if let Some(m) = self.maxlen()? {
            let other = match side {
                Side::Back => Side::Front,
                Side::Front => Side::Back,
            };
            while self.cache.len()? > m {
                if self.take(other)?.is_none() {
                    break;
                }
            }
        }
        Ok(())
    }

    fn take(&self, side: Side) -> Result<Option<T>> {
        let q = QueueOptions::new().side(side);
        Ok(self.cache.pull_with::<T>(&q)?.map(|(_, e)| e.value))
    }

    /// Removes and returns the value at the back (right); `None` if empty.
    pub fn pop(&self) -> Result<Option<T>> {
        self.take(Side::Back)
    }

    /// Removes and returns the value at the front (left); `None` if empty.
    pub fn popleft(&self) -> Result<Option<T>> {
        self.take(Side::Front)
    }

    /// The value at the back (right), left in place; `None` if empty.
    pub fn peek(&self) -> Result<Option<T>> {
        Ok(self.cache.peek_with::<T>(&back())?.map(|(_, e)| e.value))
    }

    /// The value at the front (left), left in place; `None` if empty.
    pub fn peekleft(&self) -> Result<Option<T>> {
        Ok(self.cache.peek_with::<T>(&front())?.map(|(_, e)| e.value))
    }

    /// The number of items.
    pub fn len(&self) -> Result<u64> {
        self.cache.len()
    }

    /// Whether the deque is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.cache.is_empty()
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.cache.clear().map(|_| ())
    }

    /// Rotates `steps` to the right (the back items move to the front); negative steps
    /// rotate left. Atomic, and moves at most half the items.
    pub fn rotate(&self, steps: i64) -> Result<()> {
        self.cache.transact(|| {
            let len = self.cache.len()?;
            if len == 0 {
                return Ok(());
            }
            let len = i128::from(len);
            let right = i128::from(steps).rem_euclid(len);
            let (n, from, to) = if right <= len / 2 {
                (right, Side::Back, Side::Front)
            } else {
                (len - right, Side::Front, Side::Back)
            };
            for _ in 0..n {
                let Some(v) = self.take(from)? else {
                    break;
                };
                self.cache.push_with(&v, &QueueOptions::new().side(to))?;
            }
            Ok(())
        })
    }

    /// Reverses the order of the items in place. Atomic.
    pub fn reverse(&self) -> Result<()> {
        self.cache.transact(|| {
            let keys: Vec<Key> = self.cache.iterkeys().collect::<Result<_>>()?;
            let n = keys.len();
            for i in 0..n / 2 {
                let (a, b) = (&keys[i], &keys[n - 1 - i]);
                let va = self.cache.get_value(a)?;
                let vb = self.cache.get_value(b)?;
                if let (Some(va), Some(vb)) = (va, vb) {
                    let opts = crate::cache::SetOptions::new();
                    self.cache.set_value(a, &vb, &opts)?;
                    self.cache.set_value(b, &va, &opts)?;
                }
            }
            Ok(())
        })
    }

    /// The key of the item at `index` from the front, walking from the nearer end.
    fn key_at(&self, index: u64) -> Result<Option<Key>> {
        let len = self.cache.len()?;
        if index >= len {
            return Ok(None);
        }
        let from_back = len - 1 - index;
        let (mut keys, skip) = if from_back < index {
            (self.cache.iterkeys_rev(), from_back)
        } else {
            (self.cache.iterkeys(), index)
        };
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        keys.nth(skip).transpose()
    }

    fn out_of_range(&self, index: u64) -> Error {
        Error::InvalidArgument(format!("deque index {index} out of range"))
    }

    /// The value at `index` from the front (0 is the front); `None` past the end. Walks
    /// from the nearer end: O(min(index, len - index)).
    ///
    /// Like every read, it does not wait for writers: an item moved by a concurrent write
    /// may be missed (`None`).
    pub fn get(&self, index: u64) -> Result<Option<T>> {
        match self.key_at(index)? {
            Some(k) => self.cache.get(&k),
            None => Ok(None),
        }
    }

    /// Replaces the value at `index`; past the end is [`Error::InvalidArgument`].
    pub fn set(&self, index: u64, value: &T) -> Result<()> {
        self.cache.transact(|| match self.key_at(index)? {
            Some(k) => self.cache.set(&k, value),
            None => Err(self.out_of_range(index)),
        })
    }

    /// Removes and returns the value at `index`; `None` past the end.
    pub fn remove_at(&self, index: u64) -> Result<Option<T>> {
        self.cache.transact(|| match self.key_at(index)? {
            Some(k) => self.cache.pop(&k),
            None => Ok(None),
        })
    }

    /// The values from front to back. Each page of keys is read from the latest state, so
    /// items added or removed meanwhile may or may not be seen (none is seen twice).
    pub fn iter(&self) -> Values<T, C> {
        Values::new(&self.cache, self.cache.iterkeys())
    }

    /// The values from back to front.
    pub fn iter_rev(&self) -> Values<T, C> {
        Values::new(&self.cache, self.cache.iterkeys_rev())
    }

    /// All values, front to back (see [`Deque::iter`]; inside [`Deque::transact`], a
    /// consistent snapshot).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.iter().collect()
    }

    /// Runs `f` as one transaction on the deque (see [`Cache::transact`]).
    pub fn transact<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.cache.transact(f)
    }
}

impl<T, C> Deque<T, C>
where
    T: Serialize + DeserializeOwned + PartialEq + 'static,
    C: Codec,
{
    /// Removes the first item equal to `value`; whether there was one.
    pub fn remove(&self, value: &T) -> Result<bool> {
        self.cache.transact(|| {
            for k in self.cache.iterkeys() {
                let k = k?;
                if self.cache.get::<T>(&k)?.as_ref() == Some(value) {
                    return self.cache.delete(&k);
                }
            }
            Ok(false)
        })
    }

    /// How many items equal `value`.
    pub fn count(&self, value: &T) -> Result<u64> {
        let mut n = 0;
        for v in self.iter() {
            if &v? == value {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The position of the first item equal to `value`, if any.
    pub fn index(&self, value: &T) -> Result<Option<u64>> {
        for (i, v) in self.iter().enumerate() {
            if &v? == value {
                return Ok(Some(i as u64));
            }
        }
        Ok(None)
    }

    /// Whether an item equals `value`.
    pub fn contains(&self, value: &T) -> Result<bool> {
        Ok(self.index(value)?.is_some())
    }
}
