//! Queues in a cache: `push`, `pull`, `peek` (python-diskcache's), on integer keys around
//! 500000000000000, or string keys `prefix-%015d`.

use super::core::{Found, Stored};
use super::entries::{self, NewValue, OnAccess, Write};
use super::settings::Settings;
use super::value::{now, Entry, SetOptions};
use super::Cache;
use crate::codec::Codec;
use crate::engine::{tree, View, WriteTxn};
use crate::error::{Error, Result};
use crate::format::key::{int_key, str_key};
use crate::key::Key;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::ops::Bound;
use std::time::Duration;

/// The first key of an empty queue.
const START: i64 = 500_000_000_000_000;
/// Queue keys lie strictly between 0 and this (prefixed: between the 15-digit forms).
const END: i64 = 999_999_999_999_999;

/// Which end of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end with the smallest keys.
    Front,
    /// The end with the largest keys.
    Back,
}

/// Where a queue lives and which end to use, with expiry and tag for pushes.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::{Key, QueueOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let cache = diskcache::Cache::open(dir.path())?;
/// assert_eq!(cache.push("first")?, Key::Int(500000000000000));
/// cache.push("second")?;
/// cache.push_with("zeroth", &QueueOptions::new().front())?;
/// assert_eq!(cache.peek::<String>()?.map(|(_, v)| v).as_deref(), Some("zeroth"));
/// let (key, value) = cache.pull::<String>()?.expect("queued");
/// assert_eq!((key, value.as_str()), (Key::Int(499999999999999), "zeroth"));
/// let q = QueueOptions::new().prefix("userids");
/// assert_eq!(cache.push_with(42, &q)?, Key::Str("userids-500000000000000".into()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct QueueOptions {
    prefix: Option<String>,
    side: Option<Side>,
    set: SetOptions,
}

impl QueueOptions {
    /// Integer keys, pushing to the back and pulling from the front.
    pub fn new() -> QueueOptions {
        QueueOptions::default()
    }

    /// Use string keys `prefix-NNNNNNNNNNNNNNN` (a separate queue per prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> QueueOptions {
        self.prefix = Some(prefix.into());
        self
    }

    /// Use this end (pushes default to the back, pulls and peeks to the front).
    pub fn side(mut self, side: Side) -> QueueOptions {
        self.side = Some(side);
        self
    }

    /// Expiry and tag for pushed items, as set options.
    pub(crate) fn set_options(mut self, set: SetOptions) -> QueueOptions {
        self.set = set;
        self
    }

    /// Use the front.
    pub fn front(self) -> QueueOptions {
        self.side(Side::Front)
    }

    /// Use the back.
    pub fn back(self) -> QueueOptions {
        self.side(Side::Back)
    }

    /// Pushed items expire after this long.
    pub fn expire(mut self, after: Duration) -> QueueOptions {
        self.set = self.set.expire(after);
        self
    }

    /// Pushed items carry this tag.
    pub fn tag<T: Serialize>(mut self, tag: T) -> QueueOptions {
        self.set = self.set.tag(tag);
        self
    }

    /// The key range of this queue (exclusive bounds).
    fn bounds(&self) -> (Vec<u8>, Vec<u8>) {
        match &self.prefix {
            None => (int_key(0), int_key(i128::from(END))),
            Some(p) => (
                str_key(&format!("{p}-{:015}", 0)),
                str_key(&format!("{p}-{END:015}")),
            ),
        }
    }

    fn key_for(&self, n: i64) -> Vec<u8> {
        match &self.prefix {
            None => int_key(i128::from(n)),
            Some(p) => str_key(&format!("{p}-{n:015}")),
        }
    }

    /// The number a queue key stands for. As in python-diskcache, any key in the queue's
    /// range counts as a member, so a user key `5` makes the next push `6`.
    fn number_of(&self, key: &[u8], side: Side) -> Result<i64> {
        let n = match Key::from_encoded(key)? {
            Key::Int(i) => {
                i64::try_from(i).map_err(|_| Error::InvalidKey("queue key out of range".into()))?
            }
            // A float inside the range: the integer on the queue's side of it.
            Key::Float(f) => match side {
                Side::Back => f.floor() as i64,
                Side::Front => f.ceil() as i64,
            },
            Key::Str(s) => {
                let tail = s.rsplit('-').next().unwrap_or_default();
                tail.parse::<i64>().map_err(|_| {
                    Error::InvalidKey(format!(
                        "{s:?} lies in the queue's key range but does not end with a number"
                    ))
                })?
            }
            other => {
                return Err(Error::InvalidKey(format!(
                    "{other} lies in the queue's key range"
                )))
            }
        };
        Ok(n)
    }
}

/// The key at one end of a queue, if any.
fn edge(v: &View<'_>, q: &QueueOptions, side: Side) -> Result<Option<Vec<u8>>> {
    let (lo, hi) = q.bounds();
    let first = v
        .range(
            tree::PRIMARY,
            Bound::Excluded(&lo),
            Bound::Excluded(&hi),
            side == Side::Back,
        )?
        .next();
    Ok(match first {
        Some(item) => Some(item?.0.to_vec()),
        None => None,
    })
}

impl<C: Codec> Cache<C> {
    /// Pushes `value` to the back of the integer-keyed queue; returns its key
    /// (500000000000000 for the first).
    pub fn push(&self, value: impl Serialize) -> Result<Key> {
        self.push_with(value, &QueueOptions::new())
    }

    /// Pushes `value` as the options say; returns its key.
    pub fn push_with(&self, value: impl Serialize, q: &QueueOptions) -> Result<Key> {
        let nv = self.prepare(&value)?;
        let r = self.push_prepared(&nv, q);
        self.discard(&nv);
        Key::from_encoded(&r?)
    }

    /// Pushes a prepared value; returns its encoded key. The caller discards the value if
    /// this fails.
    pub(crate) fn push_prepared(&self, nv: &NewValue, q: &QueueOptions) -> Result<Vec<u8>> {
        let side = q.side.unwrap_or(Side::Back);
        let tag = q.set.encoded_tag()?.map(<[u8]>::to_vec);
        self.write(|txn, s| {
            let now = now();
            let n = match txn.view(|v| edge(v, q, side))? {
                None => START,
                Some(k) => {
                    let n = q.number_of(&k, side)?;
                    match side {
                        Side::Back => n.checked_add(1),
                        Side::Front => n.checked_sub(1),
                    }
                    .filter(|n| *n > 0 && *n < END)
                    .ok_or_else(|| Error::InvalidArgument("the queue is full at this end".into()))?
                }
            };
            let key = q.key_for(n);
            let old = txn.view(|v| entries::meta(v, &key))?;
            let w = Write {
                key: &key,
                value: nv,
                expire_time: q.set.expire_time(now),
                tag: tag.as_deref(),
                now,
                on_access: OnAccess::Reset,
            };
            entries::write(txn, s, old.as_ref(), &w)?;
            entries::cull(txn, s, now)?;
            Ok(key)
        })
    }

    /// Takes the item at the front of the integer-keyed queue.
    pub fn pull<V: DeserializeOwned + 'static>(&self) -> Result<Option<(Key, V)>> {
        Ok(self
            .pull_with(&QueueOptions::new())?
            .map(|(k, e)| (k, e.value)))
    }

    /// Takes the item at the queue's end (front unless the options say otherwise), with its
    /// expiry time and tag. Expired items met on the way are removed and skipped.
    pub fn pull_with<V: DeserializeOwned + 'static>(
        &self,
        q: &QueueOptions,
    ) -> Result<Option<(Key, Entry<V>)>> {
        let found = self.pull_decoded(q, |kind, b| self.decode_as::<V>(kind, b))?;
        found
            .map(|(k, f)| Ok((Key::from_encoded(&k)?, f.into_entry()?)))
            .transpose()
    }

    /// [`Cache::pull_with`], decoding the value with `decode`; returns the encoded key.
    pub(crate) fn pull_decoded<R>(
        &self,
        q: &QueueOptions,
        decode: impl Fn(crate::format::value::ValueKind, &[u8]) -> Result<R>,
    ) -> Result<Option<(Vec<u8>, Found<R>)>> {
        let side = q.side.unwrap_or(Side::Front);
        self.write(|txn, s| loop {
            let Some(key) = txn.view(|v| edge(v, q, side))? else {
                return Ok(None);
            };
            if let Some(f) = self.pop_in(txn, s, &key, &decode)? {
                return Ok(Some((key, f)));
            }
            // Expired (left in place by `pop_in`), or its value file was gone (removed by
            // it): either way it is consumed without being returned.
            if txn.view(|v| entries::meta(v, &key))?.is_some() {
                remove_key(txn, s, &key)?;
            }
        })
    }

    /// The item at the front of the integer-keyed queue, left in place.
    pub fn peek<V: DeserializeOwned + 'static>(&self) -> Result<Option<(Key, V)>> {
        Ok(self
            .peek_with(&QueueOptions::new())?
            .map(|(k, e)| (k, e.value)))
    }

    /// The item at the queue's end, left in place. Expired items met on the way are removed,
    /// and so are items whose value file is gone (their value is lost; python-diskcache's
    /// `peek` retries those forever).
    pub fn peek_with<V: DeserializeOwned + 'static>(
        &self,
        q: &QueueOptions,
    ) -> Result<Option<(Key, Entry<V>)>> {
        let found = self.peek_loaded(q, self.decoded::<V>())?;
        found
            .map(|(k, f)| Ok((Key::from_encoded(&k)?, f.into_entry()?)))
            .transpose()
    }

    /// [`Cache::peek_with`], loading the value with `load`; returns the encoded key.
    pub(crate) fn peek_loaded<R>(
        &self,
        q: &QueueOptions,
        load: impl Fn(crate::format::value::ValueKind, Stored<'_>) -> Result<Option<R>>,
    ) -> Result<Option<(Vec<u8>, Found<R>)>> {
        let side = q.side.unwrap_or(Side::Front);
        loop {
            // Usually the item at the end is live: read it without the writer lock.
            let Some(key) = self.read_view(|v, _| edge(v, q, side))? else {
                return Ok(None);
            };
            if let Some(f) = self.fetch(&key, false, &load)? {
                return Ok(Some((key, f)));
            }
            // Expired, or its value is lost: remove it and look again.
            self.settle_unreadable(&key)?;
        }
    }
}

/// Removes a key's entry, expired or not.
fn remove_key(txn: &mut WriteTxn, s: &Settings, key: &[u8]) -> Result<()> {
    match txn.view(|v| entries::meta(v, key))? {
        Some(m) => entries::remove(txn, s, key, &m),
        // Gone already: the caller's loop must still make progress, so this is an error.
        None => Err(Error::corrupted(
            "primary tree",
            0,
            "a queue key vanished inside its transaction",
        )),
    }
}
