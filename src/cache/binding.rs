//! Raw access for language bindings (the Python package): encoded keys in, stored bytes
//! out, the caller's clock ([`with_clock`](super::with_clock)), transactions opened and
//! closed by separate calls, and removals in batches that the caller paces.
//!
//! Keys are given in their encoding (format spec section 6), already checked by the caller
//! for reads; writes check them again. Values are a kind and bytes (section 8).

use super::core::{Found, Stored};
use super::entries::{self, NewValue, OnAccess, Write};
use super::queue::{QueueOptions, Side};
use super::raw::ValueKind as PubKind;
use super::settings::Settings;
use super::value::{now, SetOptions};
use super::{thread_token, Cache, StoreTimeout};
use crate::codec::Codec;
use crate::engine::{reg, tree, values, View, WriteTxn};
use crate::error::{Error, Result};
use crate::format::key as fk;
use crate::format::record::{self, Data};
use crate::format::value::ValueKind;
use crate::key::Key;
use crate::storage::Storage;
use std::io::Read;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A stored value as a binding receives it.
#[derive(Debug)]
pub enum RawData {
    /// The value's bytes (read from its value file if it has one).
    Bytes(Vec<u8>),
    /// A value file, opened for reading, with its path.
    File(std::fs::File, PathBuf),
}

/// A value found by a raw read, with its kind, expiry time (seconds since the Unix epoch)
/// and encoded tag.
#[derive(Debug)]
pub struct RawFound {
    /// The value's kind.
    pub kind: PubKind,
    /// Its bytes, or its opened file.
    pub data: RawData,
    /// When it expires, if it does.
    pub expire_time: Option<f64>,
    /// Its tag, in key encoding.
    pub tag: Option<Vec<u8>>,
}

/// A page of encoded keys and the cursor to continue after (`None`: the last page).
pub type KeyPage = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// A number for [`Cache::raw_incr`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Float(f64),
}

/// A value ready to be stored: inline bytes, or a value file already written. A value file
/// that no store took is removed when this is dropped.
pub struct Prepared {
    nv: NewValue,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("kind", &self.nv.kind)
            .finish()
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(name) = self.nv.orphan() {
            values::remove(&*self.storage, &self.dir, name);
        }
    }
}

/// Whether a transaction opened by [`Cache::begin_transaction`] commits or rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnControl {
    /// Commit it.
    Commit,
    /// Roll it back.
    Rollback,
}

fn stored_kind(k: PubKind) -> ValueKind {
    match k {
        PubKind::Bytes => ValueKind::Bytes,
        PubKind::Str => ValueKind::Str,
        PubKind::Int => ValueKind::Int,
        PubKind::Float => ValueKind::Float,
        PubKind::Encoded => ValueKind::Encoded,
        PubKind::Python => ValueKind::Python,
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > fk::MAX_KEY_LEN {
        return Err(Error::InvalidKey("key longer than 1 MiB".into()));
    }
    fk::validate(key).map_err(|e| Error::InvalidKey(format!("malformed key: {}", e.detail)))
}

/// Runs `op` again while it times out, if `retry`. Files displaced by a failed attempt
/// are forgotten (its transaction rolled back).
fn retrying<R>(retry: bool, mut op: impl FnMut() -> Result<R>) -> Result<R> {
    loop {
        let r = tracked(&mut op);
        match r {
            Err(Error::Timeout { .. }) if retry => continue,
            r => return r,
        }
    }
}

/// Runs `op`, forgetting the files it displaced if it fails.
fn tracked<R>(op: impl FnOnce() -> Result<R>) -> Result<R> {
    let mark = entries::displaced_mark();
    let r = op();
    if r.is_err() {
        entries::displaced_truncate(mark);
    }
    r
}

/// Takes the names (relative to the cache directory) of files that custom Python `Disk`s
/// wrote for entries that this thread's operations have since removed or replaced, so the
/// binding can remove them. An operation that failed displaced nothing; the binding drops
/// the names taken inside a transaction it rolls back.
pub fn take_displaced_files() -> Vec<String> {
    entries::take_displaced()
}

impl<C: Codec> Cache<C> {
    fn prepared(&self, nv: NewValue) -> Prepared {
        let e = &self.inner.engine;
        Prepared {
            nv,
            storage: Arc::clone(&e.storage),
            dir: e.dir.clone(),
        }
    }

    /// Prepares stored bytes of a kind: inline, or in a new value file if they are at least
    /// the cache's `min_file_size` (integers and floats are always inline).
    pub fn prepare_bytes(&self, kind: PubKind, bytes: Vec<u8>) -> Result<Prepared> {
        let kind = stored_kind(kind);
        if matches!(kind, ValueKind::Int | ValueKind::Float) && bytes.len() != 8 {
            return Err(Error::InvalidArgument("numbers are 8 bytes".into()));
        }
        let nv = self.prepare_raw(kind, bytes)?;
        Ok(self.prepared(nv))
    }

    /// Prepares a value of a kind read from `reader` into a new value file, whatever its size.
    pub fn prepare_stream(&self, kind: PubKind, reader: impl Read) -> Result<Prepared> {
        let mut nv = self.prepare_reader(reader)?;
        nv.kind = stored_kind(kind);
        Ok(self.prepared(nv))
    }

    /// Stores a prepared value under an encoded key (expire time in seconds since the Unix
    /// epoch, tag in key encoding); with `only_if_absent`, only if the key is missing or
    /// expired. Returns whether it stored. With `retry`, waits as long as the writer lock
    /// is busy; otherwise a busy lock past the timeout is [`Error::Timeout`] (and the
    /// value file is removed).
    pub fn raw_put(
        &self,
        key: &[u8],
        value: Prepared,
        expire_time: Option<f64>,
        tag: Option<Vec<u8>>,
        only_if_absent: bool,
        retry: bool,
    ) -> Result<bool> {
        check_key(key)?;
        if let Some(t) = &tag {
            check_key(t)?;
        }
        let opts = SetOptions::new()
            .expire_at_secs(expire_time)
            .encoded_tag_bytes(tag);
        let on_timeout = if retry {
            StoreTimeout::Retry
        } else {
            StoreTimeout::Fail
        };
        let tag = opts.encoded_tag()?.map(<[u8]>::to_vec);
        let r = loop {
            match tracked(|| self.store(key, &value.nv, &opts, tag.as_deref(), only_if_absent)) {
                Err(Error::Timeout { .. }) if on_timeout == StoreTimeout::Retry => continue,
                r => break r,
            }
        };
        drop(value);
        r
    }

    fn raw_loader(
        &self,
        open_files: bool,
    ) -> impl Fn(ValueKind, Stored<'_>) -> Result<Option<(ValueKind, RawData)>> + '_ {
        move |kind, stored| match stored {
            Stored::Inline(b) => Ok(Some((kind, RawData::Bytes(b.to_vec())))),
            Stored::File { name, size, crc } => {
                let e = &self.inner.engine;
                if open_files && kind == ValueKind::Bytes {
                    let p = values::path(&e.dir, name);
                    return Ok(values::open_std(&p, size)?.map(|f| (kind, RawData::File(f, p))));
                }
                Ok(values::read(&*e.storage, &e.dir, name, size, crc)?
                    .map(|b| (kind, RawData::Bytes(b))))
            }
        }
    }

    /// The value of an encoded key (a miss if missing or expired), counting a hit or a miss
    /// and recording the access as [`Cache::get`] does. With `open_files`, a byte-string
    /// value in a value file comes back as the opened file.
    pub fn raw_get(&self, key: &[u8], open_files: bool) -> Result<Option<RawFound>> {
        Ok(self
            .fetch(key, true, self.raw_loader(open_files))?
            .map(found))
    }

    /// [`Cache::raw_get`] without counting a hit or a miss or recording an access: for
    /// reads that only find out what an entry is (the full key behind a digest key, while
    /// iterating).
    pub fn raw_get_uncounted(&self, key: &[u8]) -> Result<Option<RawFound>> {
        Ok(self.fetch(key, false, self.raw_loader(false))?.map(found))
    }

    /// Removes an encoded key's entry, expired or not, if its value is still `bytes` of
    /// `kind`: how a binding drops a value it refused to decode, without touching a value
    /// stored under the key since. Returns whether it removed it.
    pub fn raw_remove_value(
        &self,
        key: &[u8],
        kind: PubKind,
        bytes: &[u8],
        retry: bool,
    ) -> Result<bool> {
        let e = Arc::clone(self.engine()?);
        retrying(retry, || {
            self.write(|txn, s| {
                let raw = txn.view(|v| v.get(tree::PRIMARY, key).map(|o| o.map(<[u8]>::to_vec)))?;
                let Some(raw) = raw else { return Ok(false) };
                let r = record::decode(&raw).map_err(|err| entries::corrupt_record(key, err))?;
                let same = r.kind == stored_kind(kind)
                    && match r.data {
                        Data::Inline(b) => b == bytes,
                        Data::File { name, size, crc } => {
                            size == bytes.len() as u64
                                && values::read(&*e.storage, &e.dir, name, size, crc)?
                                    .is_some_and(|f| f == bytes)
                        }
                    };
                if same {
                    entries::remove(txn, s, key, &entries::Meta::of(&r, key.len(), raw.len()))?;
                }
                Ok(same)
            })
        })
    }

    /// Whether an encoded key is present and not expired.
    pub fn raw_contains(&self, key: &[u8]) -> Result<bool> {
        self.read_view(|v, _| match v.get(tree::PRIMARY, key)? {
            None => Ok(false),
            Some(raw) => {
                let r = record::decode(raw).map_err(|e| entries::corrupt_record(key, e))?;
                Ok(!r.expired(now()))
            }
        })
    }

    /// Removes an encoded key; whether it was there (expired items count as absent and stay).
    pub fn raw_delete(&self, key: &[u8], retry: bool) -> Result<bool> {
        retrying(retry, || {
            self.write(|txn, s| match txn.view(|v| entries::meta(v, key))? {
                Some(m) if !m.expired(now()) => {
                    entries::remove(txn, s, key, &m)?;
                    Ok(true)
                }
                _ => Ok(false),
            })
        })
    }

    /// Removes an encoded key and returns its value (`None`: missing or expired).
    pub fn raw_pop(&self, key: &[u8], retry: bool) -> Result<Option<RawFound>> {
        let got = retrying(retry, || {
            self.write(|txn, s| self.pop_in(txn, s, key, |kind, b| Ok((kind, b.to_vec()))))
        })?;
        Ok(got.map(|f| {
            found(Found {
                value: (f.value.0, RawData::Bytes(f.value.1)),
                rowid: f.rowid,
                expire_time: f.expire_time,
                tag: f.tag,
            })
        }))
    }

    /// Sets the expire time of a live item (`None`: never); whether it was there.
    pub fn raw_touch(&self, key: &[u8], expire_time: Option<f64>, retry: bool) -> Result<bool> {
        retrying(retry, || {
            self.write(|txn, _| {
                let raw = txn.view(|v| v.get(tree::PRIMARY, key).map(|o| o.map(<[u8]>::to_vec)))?;
                let Some(raw) = raw else { return Ok(false) };
                let r = record::decode(&raw).map_err(|e| entries::corrupt_record(key, e))?;
                if r.expired(now()) {
                    return Ok(false);
                }
                entries::set_expiry(txn, r.rowid, r.expire_time, expire_time);
                let rec = record::Record { expire_time, ..r };
                txn.put(tree::PRIMARY, key.to_vec(), rec.encode());
                Ok(true)
            })
        })
    }

    /// Adds `delta` to the number under an encoded key (python-diskcache's `incr`: integers
    /// and floats; an integer result beyond 64 bits is [`Error::Overflow`]). A missing or
    /// expired key starts from `default`, or is [`Error::KeyNotFound`] without one. A value
    /// that is not a number is [`Error::TypeMismatch`].
    pub fn raw_incr(
        &self,
        key: &[u8],
        delta: Number,
        default: Option<Number>,
        retry: bool,
    ) -> Result<Number> {
        check_key(key)?;
        retrying(retry, || {
            self.write(|txn, s| {
                let now = now();
                let bump = |kind, bytes: Option<&[u8]>| {
                    let n = number_in(kind, bytes)?.plus(delta)?;
                    let (kind, bytes) = number_record(n);
                    Ok((kind, bytes, n))
                };
                if let Some(n) = rewrite_live(txn, s, key, now, bump)? {
                    return Ok(n);
                }
                // Missing or expired: a new entry (over the expired one) from the default.
                let value = default.ok_or(Error::KeyNotFound)?.plus(delta)?;
                let (kind, bytes) = number_record(value);
                let nv = NewValue::inline(kind, bytes);
                let old = txn.view(|v| entries::meta(v, key))?;
                let w = Write {
                    key,
                    value: &nv,
                    expire_time: None,
                    tag: None,
                    now,
                    on_access: OnAccess::Reset,
                };
                entries::write(txn, s, old.as_ref(), &w)?;
                entries::cull(txn, s, now)?;
                Ok(value)
            })
        })
    }

    /// Replaces the value of a live entry with what `update` makes of its kind and inline
    /// bytes (`None`: the value is in a value file), keeping its expiry, tag and place in
    /// insertion order; counts as an access, as [`Cache::raw_incr`] does. A missing or
    /// expired key is [`Error::KeyNotFound`]. Returns what `update` returned with the new
    /// value.
    pub fn raw_update<R>(
        &self,
        key: &[u8],
        retry: bool,
        update: impl Fn(PubKind, Option<&[u8]>) -> Result<(PubKind, Vec<u8>, R)>,
    ) -> Result<R> {
        check_key(key)?;
        retrying(retry, || {
            self.write(|txn, s| {
                let stored = |kind: ValueKind, bytes: Option<&[u8]>| {
                    let (kind, bytes, r) = update(kind.into(), bytes)?;
                    Ok((stored_kind(kind), bytes, r))
                };
                rewrite_live(txn, s, key, now(), stored)?.ok_or(Error::KeyNotFound)
            })
        })
    }

    /// Pushes a prepared value onto a queue (integer keys, or `prefix-NNN` string keys);
    /// returns its encoded key.
    pub fn raw_push(
        &self,
        value: Prepared,
        prefix: Option<&str>,
        front: bool,
        expire_time: Option<f64>,
        tag: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<Vec<u8>> {
        if let Some(t) = &tag {
            check_key(t)?;
        }
        let q = queue(prefix, front).set_options(
            SetOptions::new()
                .expire_at_secs(expire_time)
                .encoded_tag_bytes(tag),
        );
        let r = retrying(retry, || self.push_prepared(&value.nv, &q));
        drop(value);
        r
    }

    /// Pushes onto a queue a value made from the encoded key the push takes: `value` runs
    /// inside the write transaction, once the key is chosen (so a value can be sealed
    /// against its key), and must not block. Returns the encoded key.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_push_keyed(
        &self,
        value: impl Fn(&[u8]) -> Result<(PubKind, Vec<u8>)>,
        prefix: Option<&str>,
        front: bool,
        expire_time: Option<f64>,
        tag: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<Vec<u8>> {
        if let Some(t) = &tag {
            check_key(t)?;
        }
        let opts = SetOptions::new()
            .expire_at_secs(expire_time)
            .encoded_tag_bytes(tag);
        let tag = opts.encoded_tag()?.map(<[u8]>::to_vec);
        retrying(retry, || {
            self.write(|txn, s| {
                let now = now();
                let key = txn.view(|v| next_queue_key(v, prefix, front))?;
                let (kind, bytes) = value(&key)?;
                let nv = self.prepare_raw(stored_kind(kind), bytes)?;
                let old = txn.view(|v| entries::meta(v, &key));
                let w = Write {
                    key: &key,
                    value: &nv,
                    expire_time: opts.expire_time(now),
                    tag: tag.as_deref(),
                    now,
                    on_access: OnAccess::Reset,
                };
                let r = old.and_then(|old| entries::write(txn, s, old.as_ref(), &w));
                let r = r.and_then(|_| entries::cull(txn, s, now));
                // A value file that the write did not take (it failed) is removed now.
                self.discard(&nv);
                r.map(|_| key)
            })
        })
    }

    /// Takes the item at one end of a queue (expired items met on the way are removed).
    pub fn raw_pull(
        &self,
        prefix: Option<&str>,
        front: bool,
        retry: bool,
    ) -> Result<Option<(Vec<u8>, RawFound)>> {
        let q = queue(prefix, front);
        let got = retrying(retry, || {
            self.pull_decoded(&q, |kind, b| Ok((kind, RawData::Bytes(b.to_vec()))))
        })?;
        Ok(got.map(|(k, f)| (k, found(f))))
    }

    /// The item at one end of a queue, left in place.
    pub fn raw_peek(
        &self,
        prefix: Option<&str>,
        front: bool,
        retry: bool,
    ) -> Result<Option<(Vec<u8>, RawFound)>> {
        let q = queue(prefix, front);
        let got = retrying(retry, || self.peek_loaded(&q, self.raw_loader(false)))?;
        Ok(got.map(|(k, f)| (k, found(f))))
    }

    /// The most (`last`) or least recently first-stored item, left in place.
    pub fn raw_peekitem(&self, last: bool, retry: bool) -> Result<Option<(Vec<u8>, RawFound)>> {
        let got = retrying(retry, || self.peekitem_loaded(last, self.raw_loader(false)))?;
        Ok(got.map(|(k, f)| (k, found(f))))
    }

    /// The last rowid handed out (iterators in insertion order stop there).
    pub fn raw_last_rowid(&self) -> Result<u64> {
        self.read_view(|v, _| Ok(v.register(reg::LAST_ROWID)))
    }

    /// A page of up to `limit` encoded keys: in insertion order (`sorted` false; rowids up
    /// to `upto_rowid`) or sorted order, forwards or reversed, after `cursor` (the cursor
    /// this returned last time, or `None` to start). Returns the keys and the next cursor
    /// (`None` when there are no more).
    pub fn raw_keys(
        &self,
        sorted: bool,
        rev: bool,
        cursor: Option<&[u8]>,
        upto_rowid: u64,
        limit: usize,
    ) -> Result<KeyPage> {
        let (t, hi) = if sorted {
            (tree::PRIMARY, None)
        } else {
            (tree::ROWID, Some(entries::rowid_key(upto_rowid)))
        };
        self.read_view(|v, _| {
            let (lo, hi) = match (rev, cursor) {
                (false, Some(c)) => (
                    Bound::Excluded(c),
                    hi.as_deref().map_or(Bound::Unbounded, Bound::Included),
                ),
                (true, Some(c)) => (Bound::Unbounded, Bound::Excluded(c)),
                (_, None) => (
                    Bound::Unbounded,
                    hi.as_deref().map_or(Bound::Unbounded, Bound::Included),
                ),
            };
            let mut keys = Vec::with_capacity(limit.min(1024));
            let mut last = None;
            for item in v.range(t, lo, hi, rev)?.take(limit) {
                let (k, val) = item?;
                last = Some(k.to_vec());
                keys.push(if sorted { k.to_vec() } else { val.to_vec() });
            }
            let next = if keys.len() < limit { None } else { last };
            Ok((keys, next))
        })
    }

    /// Removes up to `limit` items from the start of the insertion order (one batch of
    /// [`Cache::clear`]); returns how many.
    pub fn clear_some(&self, limit: usize) -> Result<u64> {
        tracked(|| self.clear_batch(limit))
    }

    fn clear_batch(&self, limit: usize) -> Result<u64> {
        self.write(|txn, s| {
            let rowids = txn
                .view(|v| entries::first_rowids(v, tree::ROWID, Bound::Unbounded, limit as u64))?;
            remove_rowids(txn, s, &rowids)
        })
    }

    /// Removes up to `limit` items that expired before `now` (one batch of
    /// [`Cache::expire_at`]); returns how many.
    pub fn expire_some(&self, now: f64, limit: usize) -> Result<u64> {
        tracked(|| self.expire_batch(now, limit))
    }

    fn expire_batch(&self, now: f64, limit: usize) -> Result<u64> {
        self.write(|txn, s| {
            if txn.register(reg::EXPIRING) == 0 {
                return Ok(0);
            }
            let hi = entries::time_key(now, 0);
            let rowids = txn.view(|v| {
                entries::first_rowids(v, tree::EXPIRE, Bound::Excluded(&hi), limit as u64)
            })?;
            remove_rowids(txn, s, &rowids)
        })
    }

    /// Removes up to `limit` items in eviction-policy order while the volume is above the
    /// size limit (one batch of [`Cache::cull`]); returns how many (0: done).
    pub fn cull_some(&self, limit: usize) -> Result<u64> {
        tracked(|| self.cull_batch(limit))
    }

    fn cull_batch(&self, limit: usize) -> Result<u64> {
        self.write(|txn, s| {
            if s.eviction_policy == super::EvictionPolicy::None
                || txn.view(entries::volume) <= s.size_limit
            {
                return Ok(0);
            }
            let rowids =
                txn.view(|v| entries::first_rowids(v, tree::CULL, Bound::Unbounded, limit as u64))?;
            let mut n = 0;
            for r in rowids {
                if txn.view(entries::volume) <= s.size_limit {
                    break;
                }
                if entries::remove_rowid(txn, s, r)? {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Removes items tagged `tag` (in key encoding), scanning at most `limit` items after
    /// rowid `after` (with the tag index: the first `limit` tagged items). Returns how many
    /// it removed and the rowid to continue after (`None`: done).
    pub fn evict_some(&self, tag: &[u8], after: u64, limit: usize) -> Result<(u64, Option<u64>)> {
        tracked(|| self.evict_batch(tag, after, limit))
    }

    fn evict_batch(&self, tag: &[u8], after: u64, limit: usize) -> Result<(u64, Option<u64>)> {
        self.write(|txn, s| {
            if s.tag_index {
                let (lo, hi) = (entries::tag_key(tag, 0), entries::tag_key(tag, u64::MAX));
                let rowids = txn.view(|v| {
                    let mut out = Vec::new();
                    for item in v.range(
                        tree::TAG,
                        Bound::Included(&lo[..]),
                        Bound::Included(&hi[..]),
                        false,
                    )? {
                        let (k, _) = item?;
                        if let Some(r) = entries::rowid_of(k) {
                            out.push(r);
                        }
                        if out.len() >= limit {
                            break;
                        }
                    }
                    Ok::<_, Error>(out)
                })?;
                let done = rowids.len() < limit;
                let n = remove_rowids(txn, s, &rowids)?;
                // Stale index entries (no item) would be found again: drop them.
                if n < rowids.len() as u64 {
                    for r in &rowids {
                        txn.del(tree::TAG, entries::tag_key(tag, *r));
                    }
                }
                return Ok((
                    n,
                    if done && n == rowids.len() as u64 {
                        None
                    } else {
                        Some(0)
                    },
                ));
            }
            let (matches, next) = txn.view(|v| {
                let lo = entries::rowid_key(after);
                let mut out = Vec::new();
                let mut next = None;
                let mut scanned = 0;
                for item in v.range(
                    tree::ROWID,
                    Bound::Excluded(&lo[..]),
                    Bound::Unbounded,
                    false,
                )? {
                    let (rk, key) = item?;
                    let Some(rowid) = entries::rowid_of(rk) else {
                        continue;
                    };
                    scanned += 1;
                    next = Some(rowid);
                    if let Some(raw) = v.get(tree::PRIMARY, key)? {
                        let r = record::decode(raw).map_err(|e| entries::corrupt_record(key, e))?;
                        if r.rowid == rowid && r.tag == Some(tag) {
                            out.push(rowid);
                        }
                    }
                    if scanned >= limit {
                        break;
                    }
                }
                if scanned < limit {
                    next = None;
                }
                Ok::<_, Error>((out, next))
            })?;
            Ok((remove_rowids(txn, s, &matches)?, next))
        })
    }

    /// Opens a transaction on this thread that later calls on this thread (through this
    /// handle) join, until [`Cache::end_transaction`]: the two halves of
    /// [`Cache::transact`] for bindings whose blocks cannot be closures. Waits for the
    /// writer lock up to the timeout, or as long as it takes with `retry`.
    pub fn begin_transaction(&self, retry: bool) -> Result<()> {
        let inner = self.live()?;
        if self.txn_open(inner)? {
            return Err(Error::InvalidArgument(
                "this thread already has a transaction open".into(),
            ));
        }
        let mut txn = retrying(retry, || inner.engine.begin(inner.timeout))?;
        let s = txn.view(|v| inner.settings_in(v))?;
        if let Err(e) = inner.take_accesses_into(&mut txn, &s) {
            txn.rollback();
            return Err(e);
        }
        *inner.txn.lock() = Some(txn);
        inner.txn_owner.store(thread_token(), Ordering::Release);
        Ok(())
    }

    /// Commits or rolls back this thread's transaction opened by
    /// [`Cache::begin_transaction`].
    pub fn end_transaction(&self, how: TxnControl) -> Result<()> {
        let inner = self.live()?;
        if !self.txn_open(inner)? {
            return Err(Error::InvalidArgument(
                "this thread has no transaction open".into(),
            ));
        }
        inner.txn_owner.store(0, Ordering::Release);
        let txn = inner.txn.lock().take();
        match (txn, how) {
            (Some(t), TxnControl::Commit) => t.commit(),
            (Some(t), TxnControl::Rollback) => {
                t.rollback();
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }
}

fn queue(prefix: Option<&str>, front: bool) -> QueueOptions {
    let q = QueueOptions::new().side(if front { Side::Front } else { Side::Back });
    match prefix {
        Some(p) => q.prefix(p),
        None => q,
    }
}

fn found(f: Found<(ValueKind, RawData)>) -> RawFound {
    RawFound {
        kind: f.value.0.into(),
        data: f.value.1,
        expire_time: f.expire_time,
        tag: f.tag,
    }
}

fn remove_rowids(
    txn: &mut crate::engine::WriteTxn,
    s: &super::settings::Settings,
    rowids: &[u64],
) -> Result<u64> {
    let mut n = 0;
    for r in rowids {
        if entries::remove_rowid(txn, s, *r)? {
            n += 1;
        }
    }
    Ok(n)
}

impl Number {
    /// `self + other` as Python adds them: integers stay integers (a result beyond 64 bits
    /// is [`Error::Overflow`]); with a float, the sum is a float.
    pub fn plus(self, other: Number) -> Result<Number> {
        Ok(match (self, other) {
            (Number::Int(x), Number::Int(y)) => {
                Number::Int(x.checked_add(y).ok_or(Error::Overflow)?)
            }
            (Number::Int(x), Number::Float(y)) => Number::Float(x as f64 + y),
            (Number::Float(x), Number::Int(y)) => Number::Float(x + y as f64),
            (Number::Float(x), Number::Float(y)) => Number::Float(x + y),
        })
    }
}

/// The number an inline value of a kind holds (`bytes` is `None` for a value file).
fn number_in(kind: ValueKind, bytes: Option<&[u8]>) -> Result<Number> {
    let eight = |b: &[u8], what: &str| -> Result<[u8; 8]> {
        b.try_into()
            .map_err(|_| Error::corrupted("primary tree", 0, format!("{what} is not 8 bytes")))
    };
    match (kind, bytes) {
        (ValueKind::Int, Some(b)) => Ok(Number::Int(i64::from_le_bytes(eight(b, "integer")?))),
        (ValueKind::Float, Some(b)) => Ok(Number::Float(f64::from_le_bytes(eight(b, "float")?))),
        (kind, _) => Err(Error::TypeMismatch(format!(
            "incr on a {:?} value",
            PubKind::from(kind)
        ))),
    }
}

fn number_record(n: Number) -> (ValueKind, Vec<u8>) {
    match n {
        Number::Int(i) => (ValueKind::Int, i.to_le_bytes().to_vec()),
        Number::Float(f) => (ValueKind::Float, f.to_le_bytes().to_vec()),
    }
}

/// Rewrites the inline value of a live entry with what `update` makes of its kind and
/// bytes (`None`: a value file), keeping its expiry, tag and rowid; counts as an access.
/// `Ok(None)`: the key is missing or expired, and nothing changed.
fn rewrite_live<R>(
    txn: &mut WriteTxn,
    s: &Settings,
    key: &[u8],
    now: f64,
    update: impl FnOnce(ValueKind, Option<&[u8]>) -> Result<(ValueKind, Vec<u8>, R)>,
) -> Result<Option<R>> {
    let raw = txn.view(|v| v.get(tree::PRIMARY, key).map(|o| o.map(<[u8]>::to_vec)))?;
    let Some(raw) = raw else { return Ok(None) };
    let r = record::decode(&raw).map_err(|e| entries::corrupt_record(key, e))?;
    if r.expired(now) {
        return Ok(None);
    }
    let inline = match r.data {
        Data::Inline(b) => Some(b),
        Data::File { .. } => None,
    };
    let (kind, bytes, out) = update(r.kind, inline)?;
    let nv = NewValue::inline(kind, bytes);
    let old = entries::Meta::of(&r, key.len(), raw.len());
    let w = Write {
        key,
        value: &nv,
        expire_time: r.expire_time,
        tag: r.tag,
        now,
        on_access: OnAccess::Touch,
    };
    entries::write(txn, s, Some(&old), &w)?;
    Ok(Some(out))
}

/// Queue keys lie strictly between 0 and this; an empty queue starts at [`QUEUE_START`]
/// (python-diskcache's numbering, as [`Cache::push_with`] numbers them).
const QUEUE_END: i64 = 999_999_999_999_999;
const QUEUE_START: i64 = 500_000_000_000_000;

fn queue_key(prefix: Option<&str>, n: i64) -> Vec<u8> {
    match prefix {
        None => fk::int_key(i128::from(n)),
        Some(p) => fk::str_key(&format!("{p}-{n:015}")),
    }
}

/// The encoded key the next push at one end of a queue takes: one beyond the key at that
/// end (any key in the queue's range counts, as in python-diskcache).
fn next_queue_key(v: &View<'_>, prefix: Option<&str>, front: bool) -> Result<Vec<u8>> {
    let (lo, hi) = (queue_key(prefix, 0), queue_key(prefix, QUEUE_END));
    let edge = v
        .range(
            tree::PRIMARY,
            Bound::Excluded(&lo),
            Bound::Excluded(&hi),
            !front,
        )?
        .next()
        .transpose()?;
    let Some((k, _)) = edge else {
        return Ok(queue_key(prefix, QUEUE_START));
    };
    let n = match Key::from_encoded(k)? {
        Key::Int(i) => {
            i64::try_from(i).map_err(|_| Error::InvalidKey("queue key out of range".into()))?
        }
        // A float inside the range: the integer on the queue's side of it.
        Key::Float(f) if front => f.ceil() as i64,
        Key::Float(f) => f.floor() as i64,
        Key::Str(s) => s
            .rsplit('-')
            .next()
            .and_then(|tail| tail.parse::<i64>().ok())
            .ok_or_else(|| {
                Error::InvalidKey(format!(
                    "{s:?} lies in the queue's key range but does not end with a number"
                ))
            })?,
        other => {
            return Err(Error::InvalidKey(format!(
                "{other} lies in the queue's key range"
            )))
        }
    };
    let next = if front {
        n.checked_sub(1)
    } else {
        n.checked_add(1)
    };
    let next = next
        .filter(|n| *n > 0 && *n < QUEUE_END)
        .ok_or_else(|| Error::InvalidArgument("the queue is full at this end".into()))?;
    Ok(queue_key(prefix, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{with_clock, Key, PythonKeyKind};

    fn open() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("open");
        (dir, cache)
    }

    fn put(cache: &Cache, key: &[u8], kind: PubKind, bytes: &[u8], expire: Option<f64>) -> bool {
        let v = cache.prepare_bytes(kind, bytes.to_vec()).expect("prepare");
        cache
            .raw_put(key, v, expire, None, false, false)
            .expect("put")
    }

    #[test]
    fn raw_values_are_read_by_the_typed_api_and_back() {
        let (_d, cache) = open();
        let k = Key::Str("k".into()).to_bytes();
        put(&cache, &k, PubKind::Str, b"text", None);
        assert_eq!(cache.get::<String>("k").unwrap().as_deref(), Some("text"));
        cache.set("n", 5i64).unwrap();
        let got = cache
            .raw_get(&Key::Str("n".into()).to_bytes(), false)
            .unwrap()
            .unwrap();
        assert_eq!(got.kind, PubKind::Int);
        assert!(matches!(got.data, RawData::Bytes(ref b) if b == &5i64.to_le_bytes()));
    }

    #[test]
    fn the_callers_clock_decides_expiry() {
        let (_d, cache) = open();
        let k = Key::Int(1).to_bytes();
        with_clock(1000.0, || {
            put(&cache, &k, PubKind::Bytes, b"v", Some(1010.0))
        });
        assert!(with_clock(1005.0, || cache.raw_contains(&k)).unwrap());
        assert!(!with_clock(1010.0, || cache.raw_contains(&k)).unwrap());
        assert_eq!(
            with_clock(1020.0, || cache.expire_some(1020.0, 10)).unwrap(),
            1
        );
    }

    #[test]
    fn incr_adds_to_ints_and_floats_and_refuses_other_kinds() {
        let (_d, cache) = open();
        let k = Key::Str("c".into()).to_bytes();
        assert_eq!(
            cache
                .raw_incr(&k, Number::Int(2), Some(Number::Int(0)), false)
                .unwrap(),
            Number::Int(2)
        );
        assert_eq!(
            cache.raw_incr(&k, Number::Float(0.5), None, false).unwrap(),
            Number::Float(2.5)
        );
        assert!(matches!(
            cache.raw_incr(
                &Key::Str("x".into()).to_bytes(),
                Number::Int(1),
                None,
                false
            ),
            Err(Error::KeyNotFound)
        ));
        put(&cache, &k, PubKind::Int, &i64::MAX.to_le_bytes(), None);
        assert!(matches!(
            cache.raw_incr(&k, Number::Int(1), None, false),
            Err(Error::Overflow)
        ));
        put(&cache, &k, PubKind::Str, b"s", None);
        assert!(matches!(
            cache.raw_incr(&k, Number::Int(1), None, false),
            Err(Error::TypeMismatch(_))
        ));
    }

    #[test]
    fn split_transactions_commit_or_roll_back() {
        let (_d, cache) = open();
        let k = Key::Str("t".into()).to_bytes();
        cache.begin_transaction(false).unwrap();
        put(&cache, &k, PubKind::Bytes, b"1", None);
        cache.end_transaction(TxnControl::Rollback).unwrap();
        assert!(!cache.raw_contains(&k).unwrap());
        cache.begin_transaction(false).unwrap();
        assert!(cache.begin_transaction(false).is_err(), "one per thread");
        put(&cache, &k, PubKind::Bytes, b"1", None);
        cache.end_transaction(TxnControl::Commit).unwrap();
        assert!(cache.raw_contains(&k).unwrap());
        assert!(cache.end_transaction(TxnControl::Commit).is_err());
    }

    #[test]
    fn batches_remove_and_pages_iterate() {
        let (_d, cache) = open();
        for i in 0..25 {
            put(
                &cache,
                &Key::Int(i).to_bytes(),
                PubKind::Int,
                &(i as i64).to_le_bytes(),
                None,
            );
        }
        let (page, next) = cache.raw_keys(true, false, None, 0, 10).unwrap();
        assert_eq!(page.len(), 10);
        let (rest, end) = cache
            .raw_keys(true, false, next.as_deref(), 0, 100)
            .unwrap();
        assert_eq!(rest.len(), 15);
        assert!(end.is_none());
        assert_eq!(cache.clear_some(10).unwrap(), 10);
        assert_eq!(cache.len().unwrap(), 15);
    }

    #[test]
    fn python_keys_decode_as_python_keys() {
        let mut plain = vec![0x50];
        crate::plain::PlainWriter::new(&mut plain).value(&crate::plain::PlainValue::Tuple(vec![
            crate::plain::PlainValue::Int(1),
            crate::plain::PlainValue::Str("a".into()),
        ]));
        let (_d, cache) = open();
        put(&cache, &plain, PubKind::Bytes, b"v", None);
        let keys: Vec<Key> = cache.iterkeys().collect::<Result<_>>().unwrap();
        let Key::Python(p) = &keys[0] else {
            panic!("not a Python key: {keys:?}")
        };
        assert_eq!(p.kind(), PythonKeyKind::Plain);
        assert!(p.plain().is_some());
        assert_eq!(Key::from_bytes(&plain).unwrap(), keys[0]);
        assert!(
            check_key(&[0x60, 1, 2]).is_err(),
            "a pickled key needs its MAC"
        );
    }

    #[test]
    fn keyed_pushes_number_as_pushes_do_and_see_their_key() {
        let (_d, cache) = open();
        let made = |key: &[u8]| Ok((PubKind::Bytes, [b"made for ".as_slice(), key].concat()));
        let first = cache
            .raw_push_keyed(made, None, false, None, None, false)
            .unwrap();
        assert_eq!(
            Key::from_bytes(&first).unwrap(),
            Key::Int(500_000_000_000_000)
        );
        cache.push("plain").unwrap();
        let front = cache
            .raw_push_keyed(made, None, true, None, None, false)
            .unwrap();
        assert_eq!(
            Key::from_bytes(&front).unwrap(),
            Key::Int(499_999_999_999_999)
        );
        let back = cache
            .raw_push_keyed(made, Some("jobs"), false, Some(1e12), None, false)
            .unwrap();
        assert_eq!(
            Key::from_bytes(&back).unwrap(),
            Key::Str("jobs-500000000000000".into())
        );
        let got = cache.raw_get(&front, false).unwrap().unwrap();
        assert!(matches!(got.data, RawData::Bytes(ref b) if b.ends_with(&front)));
        assert_eq!(
            cache.raw_get(&back, false).unwrap().unwrap().expire_time,
            Some(1e12)
        );
        // A large made value goes to a value file, as any other.
        let big = |_: &[u8]| Ok((PubKind::Bytes, vec![7u8; 1 << 16]));
        let k = cache
            .raw_push_keyed(big, None, false, None, None, false)
            .unwrap();
        assert!(matches!(
            cache.raw_get(&k, true).unwrap().unwrap().data,
            RawData::File(..)
        ));
        let failing = |_: &[u8]| -> Result<(PubKind, Vec<u8>)> {
            Err(Error::InvalidArgument("no value".into()))
        };
        assert!(cache
            .raw_push_keyed(failing, None, false, None, None, false)
            .is_err());
        assert_eq!(cache.len().unwrap(), 5);
    }

    #[test]
    fn a_value_is_removed_only_while_it_is_unchanged() {
        let (_d, cache) = open();
        let k = Key::Str("k".into()).to_bytes();
        // Stored at time 0, expired since time 1.
        with_clock(0.0, || {
            put(&cache, &k, PubKind::Python, b"refused", Some(1.0))
        });
        assert!(!cache
            .raw_remove_value(&k, PubKind::Python, b"other", false)
            .unwrap());
        assert!(!cache
            .raw_remove_value(&k, PubKind::Bytes, b"refused", false)
            .unwrap());
        // Expired or not.
        assert!(cache
            .raw_remove_value(&k, PubKind::Python, b"refused", false)
            .unwrap());
        assert!(!cache.raw_contains(&k).unwrap());
        let big = vec![1u8; 1 << 16];
        put(&cache, &k, PubKind::Python, &big, None);
        assert!(cache
            .raw_remove_value(&k, PubKind::Python, &big, false)
            .unwrap());
        assert_eq!(cache.len().unwrap(), 0);
    }

    #[test]
    fn updates_keep_expiry_and_tag_and_need_a_live_entry() {
        let (_d, cache) = open();
        let k = Key::Str("u".into()).to_bytes();
        let double = |kind: PubKind, b: Option<&[u8]>| {
            let b = b.ok_or_else(|| Error::TypeMismatch("file".into()))?;
            Ok((kind, [b, b].concat(), b.len()))
        };
        assert!(matches!(
            cache.raw_update(&k, false, double),
            Err(Error::KeyNotFound)
        ));
        let v = cache.prepare_bytes(PubKind::Bytes, b"ab".to_vec()).unwrap();
        let tag = Some(Key::Str("t".into()).to_bytes());
        cache
            .raw_put(&k, v, Some(1e12), tag.clone(), false, false)
            .unwrap();
        assert_eq!(cache.raw_update(&k, false, double).unwrap(), 2);
        let got = cache.raw_get(&k, false).unwrap().unwrap();
        assert!(matches!(got.data, RawData::Bytes(ref b) if b == b"abab"));
        assert_eq!((got.expire_time, got.tag), (Some(1e12), tag));
    }

    #[test]
    fn uncounted_reads_count_nothing() {
        let (_d, cache) = open();
        cache.stats(true, true).unwrap();
        let k = Key::Str("s".into()).to_bytes();
        put(&cache, &k, PubKind::Str, b"v", None);
        assert!(cache.raw_get_uncounted(&k).unwrap().is_some());
        assert!(cache
            .raw_get_uncounted(&Key::Str("missing".into()).to_bytes())
            .unwrap()
            .is_none());
        assert_eq!(cache.stats(true, false).unwrap(), (0, 0));
        assert!(cache.raw_get(&k, false).unwrap().is_some());
        assert_eq!(cache.stats(true, false).unwrap(), (1, 0));
    }
}
