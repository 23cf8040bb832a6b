//! The core of `Cache`: storing, reading, and updating single keys.

use super::entries::{self, Access, Meta, NewValue, OnAccess, Write};
use super::settings::{EvictionPolicy, Settings};
use super::value::{now, to_system_time, Entry, SetOptions, Value, ValueReader};
use super::Cache;
use crate::codec::Codec;
use crate::engine::{reg, tree, values, NewFile, WriteTxn};
use crate::error::{Error, Result};
use crate::format::meta::{LIVE_HITS, LIVE_MISSES};
use crate::format::record::{self, Data, Record};
use crate::format::value::{classify, NativeDe, ValueKind};
use crate::key::{encode_key, Key};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::{Any, TypeId};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// What storing a value does when the writer lock stays busy past the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreTimeout {
    /// Fail with the timeout.
    Fail,
    /// Try again until it is stored.
    Retry,
    /// Give up without storing.
    Skip,
}

/// A value found by a lookup, with what `get_entry` reports about it.
pub(crate) struct Found<R> {
    pub value: R,
    pub rowid: u64,
    pub expire_time: Option<f64>,
    pub tag: Option<Vec<u8>>,
}

impl<R> Found<R> {
    pub fn into_entry(self) -> Result<Entry<R>> {
        Ok(Entry {
            value: self.value,
            expire_time: self.expire_time.map(to_system_time),
            tag: self.tag.as_deref().map(Key::from_encoded).transpose()?,
        })
    }
}

/// A stored value as a loader sees it.
pub(crate) enum Stored<'a> {
    /// In the record.
    Inline(&'a [u8]),
    /// In a value file.
    File { name: &'a str, size: u64, crc: u32 },
}

/// A value file a record points at: name, size, CRC, and how to read it.
type FileRef = (String, u64, u32, ValueKind);

enum Step<R> {
    Miss,
    Hit(Found<R>),
    File {
        name: String,
        size: u64,
        crc: u32,
        kind: ValueKind,
        rowid: u64,
        expire_time: Option<f64>,
        tag: Option<Vec<u8>>,
    },
}

impl<C: Codec> Cache<C> {
    /// Decodes stored bytes of a kind into `V`.
    pub(crate) fn decode_as<V: DeserializeOwned + 'static>(
        &self,
        kind: ValueKind,
        bytes: &[u8],
    ) -> Result<V> {
        // `Vec<u8>` and `String` would otherwise be built one element at a time by serde.
        let any: Option<Box<dyn Any>> = match kind {
            ValueKind::Bytes | ValueKind::Str if TypeId::of::<V>() == TypeId::of::<Vec<u8>>() => {
                Some(Box::new(bytes.to_vec()))
            }
            ValueKind::Str if TypeId::of::<V>() == TypeId::of::<String>() => Some(Box::new(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| Error::Codec("stored string is not UTF-8".into()))?,
            )),
            _ => None,
        };
        if let Some(v) = any.and_then(|b| b.downcast::<V>().ok()) {
            return Ok(*v);
        }
        match kind {
            ValueKind::Encoded => self.codec().decode(bytes),
            native => {
                let de = NativeDe::from_stored(native, bytes).map_err(|e| Error::Codec(e.0))?;
                V::deserialize(de).map_err(|e| {
                    Error::Codec(format!(
                        "stored {native:?} value does not decode as the requested type: {}",
                        e.0
                    ))
                })
            }
        }
    }

    /// Turns a value into what a record stores, writing a value file if it is large.
    pub(crate) fn prepare<V: Serialize + ?Sized>(&self, value: &V) -> Result<NewValue> {
        let (kind, bytes) = match classify(value) {
            Some(n) => (n.kind(), n.into_bytes()),
            None => (ValueKind::Encoded, self.codec().encode(value)?),
        };
        self.prepare_raw(kind, bytes)
    }

    /// Places already-encoded value bytes inline or in a value file, by size.
    pub(crate) fn prepare_raw(&self, kind: ValueKind, bytes: Vec<u8>) -> Result<NewValue> {
        let inner = self.live()?;
        let min = inner.settings.read().min_file_size;
        if !matches!(kind, ValueKind::Int | ValueKind::Float) && bytes.len() as u64 >= min {
            let f = inner.engine.write_value_bytes(&bytes)?;
            Ok(NewValue::file(kind, f))
        } else {
            Ok(NewValue::inline(kind, bytes))
        }
    }

    /// Removes a prepared value's file if no transaction took it.
    pub(crate) fn discard(&self, v: &NewValue) {
        if let (Some(name), Ok(e)) = (v.orphan(), self.engine()) {
            values::remove(&*e.storage, &e.dir, name);
        }
    }

    fn count_stat(&self, s: &Settings, hit: bool) {
        if let (true, Ok(e)) = (s.statistics, self.engine()) {
            e.live_add(if hit { LIVE_HITS } else { LIVE_MISSES }, 1);
        }
    }

    fn note_access(&self, s: &Settings, rowid: u64, now: f64) {
        match s.eviction_policy {
            EvictionPolicy::LeastRecentlyUsed => self.record_access(rowid, Access::Time(now)),
            EvictionPolicy::LeastFrequentlyUsed => self.record_access(rowid, Access::Count(1)),
            _ => {}
        }
    }

    /// A loader that decodes values into `V` (reading value files whole).
    pub(crate) fn decoded<V: DeserializeOwned + 'static>(
        &self,
    ) -> impl Fn(ValueKind, Stored<'_>) -> Result<Option<V>> + '_ {
        move |kind, stored| match stored {
            Stored::Inline(b) => self.decode_as(kind, b).map(Some),
            Stored::File { name, size, crc } => {
                let e = self.engine()?;
                match values::read(&*e.storage, &e.dir, name, size, crc)? {
                    Some(bytes) => self.decode_as(kind, &bytes).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// A loader that returns values as [`Value`] (reading value files whole).
    fn loaded_values(&self) -> impl Fn(ValueKind, Stored<'_>) -> Result<Option<Value>> + '_ {
        move |kind, stored| match stored {
            Stored::Inline(b) => to_value(kind, b).map(Some),
            Stored::File { name, size, crc } => {
                let e = self.engine()?;
                match values::read(&*e.storage, &e.dir, name, size, crc)? {
                    Some(bytes) => to_value(kind, &bytes).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// Looks a key up, loading its value with `load` (which returns `None` if the value
    /// file is gone); expired items are misses. Counts statistics and records the access
    /// when `stats` is set.
    pub(crate) fn fetch<R>(
        &self,
        key: &[u8],
        stats: bool,
        load: impl Fn(ValueKind, Stored<'_>) -> Result<Option<R>>,
    ) -> Result<Option<Found<R>>> {
        // The clock is read only when an expiry or an access needs it.
        let clock = std::cell::Cell::new(None);
        let now = || match clock.get() {
            Some(t) => t,
            None => {
                let t = now();
                clock.set(Some(t));
                t
            }
        };
        let mut settings = None;
        let mut result = None;
        // A value file can vanish under us when another handle replaces the value (and a
        // checkpoint removes the old file): look again, which finds the new value (or none).
        for _ in 0..4 {
            let (step, s) = self.read_view(|v, s| {
                let step = match v.get(tree::PRIMARY, key)? {
                    None => Step::Miss,
                    Some(raw) => {
                        let r = record::decode(raw).map_err(|e| entries::corrupt_record(key, e))?;
                        if r.expire_time.is_some() && r.expired(now()) {
                            Step::Miss
                        } else {
                            let tag = r.tag.map(<[u8]>::to_vec);
                            match r.data {
                                Data::Inline(b) => match load(r.kind, Stored::Inline(b))? {
                                    Some(value) => Step::Hit(Found {
                                        value,
                                        rowid: r.rowid,
                                        expire_time: r.expire_time,
                                        tag,
                                    }),
                                    None => Step::Miss,
                                },
                                Data::File { name, size, crc } => Step::File {
                                    name: name.to_owned(),
                                    size,
                                    crc,
                                    kind: r.kind,
                                    rowid: r.rowid,
                                    expire_time: r.expire_time,
                                    tag,
                                },
                            }
                        }
                    }
                };
                Ok((step, s.clone()))
            })?;
            settings = Some(s);
            match step {
                Step::Miss => break,
                Step::Hit(f) => {
                    result = Some(f);
                    break;
                }
                Step::File {
                    name,
                    size,
                    crc,
                    kind,
                    rowid,
                    expire_time,
                    tag,
                } => {
                    // File I/O happens outside the view.
                    if let Some(value) = load(
                        kind,
                        Stored::File {
                            name: &name,
                            size,
                            crc,
                        },
                    )? {
                        result = Some(Found {
                            value,
                            rowid,
                            expire_time,
                            tag,
                        });
                        break;
                    }
                }
            }
        }
        if let (true, Some(s)) = (stats, settings) {
            self.count_stat(&s, result.is_some());
            if let (Some(f), true) = (&result, s.eviction_policy.tracks_access()) {
                self.note_access(&s, f.rowid, now());
            }
        }
        Ok(result)
    }

    /// Settles an item that a read found but could not return: if it is expired, or its
    /// value file is gone (its value is lost; `check(true)` would remove it too), it is
    /// removed. Otherwise (it changed meanwhile) nothing happens and the caller looks again.
    pub(crate) fn settle_unreadable(&self, key: &[u8]) -> Result<()> {
        let e = Arc::clone(self.engine()?);
        self.write(|txn, s| {
            let raw = txn.view(|v| v.get(tree::PRIMARY, key).map(|o| o.map(<[u8]>::to_vec)))?;
            let Some(raw) = raw else { return Ok(()) };
            let r = record::decode(&raw).map_err(|e| entries::corrupt_record(key, e))?;
            let lost = match r.data {
                Data::File { name, size, crc } => {
                    let f = NewFile {
                        name: name.to_owned(),
                        size,
                        crc,
                        synced: false,
                    };
                    !values::check_file(&*e.storage, &e.dir, &f)?
                }
                Data::Inline(_) => false,
            };
            if r.expired(now()) || lost {
                entries::remove(txn, s, key, &Meta::of(&r, key.len(), raw.len()))?;
            }
            Ok(())
        })
    }

    /// The value of `key`, or `None` if it is missing or expired.
    ///
    /// With statistics on, counts a hit or a miss; under the LRU and LFU policies, records
    /// the access (batched: see [`EvictionPolicy`]). Neither makes the read wait for a writer,
    /// unlike python-diskcache, where both take the write lock.
    pub fn get<V: DeserializeOwned + 'static>(&self, key: impl Serialize) -> Result<Option<V>> {
        let k = encode_key(&key)?;
        Ok(self.fetch(&k, true, self.decoded())?.map(|f| f.value))
    }

    /// The value of `key` with its expiry time and tag (python-diskcache's
    /// `get(key, expire_time=True, tag=True)`).
    pub fn get_entry<V: DeserializeOwned + 'static>(
        &self,
        key: impl Serialize,
    ) -> Result<Option<Entry<V>>> {
        let k = encode_key(&key)?;
        self.fetch(&k, true, self.decoded())?
            .map(Found::into_entry)
            .transpose()
    }

    /// The value of `key` whatever its type.
    pub fn get_value(&self, key: impl Serialize) -> Result<Option<Value>> {
        let k = encode_key(&key)?;
        Ok(self.fetch(&k, true, self.loaded_values())?.map(|f| f.value))
    }

    /// The value of `key` whatever its type, with its expiry time and tag.
    pub fn get_value_entry(&self, key: impl Serialize) -> Result<Option<Entry<Value>>> {
        let k = encode_key(&key)?;
        self.fetch(&k, true, self.loaded_values())?
            .map(Found::into_entry)
            .transpose()
    }

    /// A reader over the value of `key`: the value file itself for a file-backed value (with
    /// its path), else the stored bytes (python-diskcache's `read`, which returns the value
    /// itself for small ones).
    pub fn read(&self, key: impl Serialize) -> Result<Option<ValueReader>> {
        let k = encode_key(&key)?;
        let e = Arc::clone(self.engine()?);
        let open = |_: ValueKind, stored: Stored<'_>| -> Result<Option<ValueReader>> {
            Ok(match stored {
                Stored::Inline(b) => Some(ValueReader::memory(b.to_vec())),
                Stored::File { name, size, crc } => values::open(&*e.storage, &e.dir, name, size)?
                    .map(|f| ValueReader::file(f, size, crc, values::path(&e.dir, name))),
            })
        };
        // Counted and recorded like `get`: serving a large value is a use of it.
        Ok(self.fetch(&k, true, open)?.map(|f| f.value))
    }

    /// Whether `key` is in the cache and not expired.
    pub fn contains(&self, key: impl Serialize) -> Result<bool> {
        let k = encode_key(&key)?;
        self.read_view(|v, _| match v.get(tree::PRIMARY, &k)? {
            None => Ok(false),
            Some(raw) => {
                let r = record::decode(raw).map_err(|e| entries::corrupt_record(&k, e))?;
                Ok(r.expire_time.is_none() || !r.expired(now()))
            }
        })
    }

    /// Stores `value` under `key`, replacing any value (an overwrite keeps the key's place in
    /// insertion order). May cull: see [`CacheBuilder::cull_limit`](super::CacheBuilder::cull_limit).
    pub fn set(&self, key: impl Serialize, value: impl Serialize) -> Result<()> {
        self.set_with(key, value, &SetOptions::default())
    }

    /// [`Cache::set`] with an expiry and/or a tag.
    pub fn set_with(
        &self,
        key: impl Serialize,
        value: impl Serialize,
        opts: &SetOptions,
    ) -> Result<()> {
        let k = encode_key(&key)?;
        self.put(&k, opts, false, StoreTimeout::Fail, |c| c.prepare(&value))
            .map(|_| ())
    }

    /// Stores a [`Value`] of any kind under `key`, as it is: an [`Value::Encoded`] value's
    /// bytes are kept without re-encoding (tools that copy entries between caches, dumps).
    pub fn set_value(&self, key: impl Serialize, value: &Value, opts: &SetOptions) -> Result<()> {
        let k = encode_key(&key)?;
        self.put(&k, opts, false, StoreTimeout::Fail, |c| {
            c.prepare_value(value)
        })
        .map(|_| ())
    }

    /// Places a [`Value`] inline or in a value file, keeping an encoded value's bytes.
    pub(crate) fn prepare_value(&self, value: &Value) -> Result<NewValue> {
        let (kind, bytes) = match value {
            Value::Bytes(b) => (ValueKind::Bytes, b.clone()),
            Value::Str(s) => (ValueKind::Str, s.as_bytes().to_vec()),
            Value::Int(i) => (ValueKind::Int, i.to_le_bytes().to_vec()),
            Value::Float(x) => (ValueKind::Float, x.to_le_bytes().to_vec()),
            Value::Encoded(b) => (ValueKind::Encoded, b.clone()),
            Value::Python(b) => (ValueKind::Python, b.clone()),
        };
        self.prepare_raw(kind, bytes)
    }

    /// Stores the bytes read from `reader` in a value file (python-diskcache's
    /// `set(key, file, read=True)`), without holding the whole value in memory.
    pub fn set_reader(&self, key: impl Serialize, reader: impl Read) -> Result<()> {
        self.set_reader_with(key, reader, &SetOptions::default())
    }

    /// [`Cache::set_reader`] with an expiry and/or a tag.
    pub fn set_reader_with(
        &self,
        key: impl Serialize,
        reader: impl Read,
        opts: &SetOptions,
    ) -> Result<()> {
        let k = encode_key(&key)?;
        self.put(&k, opts, false, StoreTimeout::Fail, |c| {
            c.prepare_reader(reader)
        })
        .map(|_| ())
    }

    /// Writes the bytes of `reader` to a new value file, streaming.
    pub(crate) fn prepare_reader(&self, mut reader: impl Read) -> Result<NewValue> {
        let f = self.engine()?.write_value(&mut reader)?;
        Ok(NewValue::file(ValueKind::Bytes, f))
    }

    /// Stores a value under the encoded key `k`: checks the tag, prepares the value once
    /// (`prepare` may write its value file), commits it as [`Cache::store`] does however many
    /// attempts `on_timeout` allows, and removes the value file if no commit took it.
    /// `Ok(None)`: gave up on a timeout ([`StoreTimeout::Skip`]); else whether it stored.
    pub(crate) fn put(
        &self,
        k: &[u8],
        opts: &SetOptions,
        only_if_absent: bool,
        on_timeout: StoreTimeout,
        prepare: impl FnOnce(&Self) -> Result<NewValue>,
    ) -> Result<Option<bool>> {
        let tag = opts.encoded_tag()?.map(<[u8]>::to_vec);
        let nv = prepare(self)?;
        let r = loop {
            match self.store(k, &nv, opts, tag.as_deref(), only_if_absent) {
                Err(Error::Timeout { .. }) if on_timeout == StoreTimeout::Retry => continue,
                Err(Error::Timeout { .. }) if on_timeout == StoreTimeout::Skip => break Ok(None),
                r => break r.map(Some),
            }
        };
        self.discard(&nv);
        r
    }

    /// Writes a prepared value; with `only_if_absent`, not over a live entry (returns
    /// false then).
    pub(crate) fn store(
        &self,
        k: &[u8],
        nv: &NewValue,
        opts: &SetOptions,
        tag: Option<&[u8]>,
        only_if_absent: bool,
    ) -> Result<bool> {
        self.write(|txn, s| {
            let now = now();
            let old = txn.view(|v| entries::meta(v, k))?;
            if only_if_absent && old.as_ref().is_some_and(|m| !m.expired(now)) {
                return Ok(false);
            }
            let w = Write {
                key: k,
                value: nv,
                expire_time: opts.expire_time(now),
                tag,
                now,
                on_access: OnAccess::Reset,
            };
            entries::write(txn, s, old.as_ref(), &w)?;
            entries::cull(txn, s, now)?;
            Ok(true)
        })
    }

    /// Stores `value` under `key` only if the key is missing (or expired). Returns whether
    /// it stored. Atomic: of many concurrent `add`s of one key, exactly one succeeds.
    pub fn add(&self, key: impl Serialize, value: impl Serialize) -> Result<bool> {
        self.add_with(key, value, &SetOptions::default())
    }

    /// [`Cache::add`] with an expiry and/or a tag.
    pub fn add_with(
        &self,
        key: impl Serialize,
        value: impl Serialize,
        opts: &SetOptions,
    ) -> Result<bool> {
        let k = encode_key(&key)?;
        self.put(&k, opts, true, StoreTimeout::Fail, |c| c.prepare(&value))
            .map(|r| r == Some(true))
    }

    /// Removes `key`. Returns whether it was there; an expired item counts as absent and is
    /// left in place (python-diskcache's behaviour).
    pub fn delete(&self, key: impl Serialize) -> Result<bool> {
        let k = encode_key(&key)?;
        self.write(|txn, s| {
            let now = now();
            match txn.view(|v| entries::meta(v, &k))? {
                Some(m) if !m.expired(now) => {
                    entries::remove(txn, s, &k, &m)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// Removes `key` and returns its value (`None` if missing or expired; an expired item
    /// is left in place).
    pub fn pop<V: DeserializeOwned + 'static>(&self, key: impl Serialize) -> Result<Option<V>> {
        Ok(self.pop_entry(key)?.map(|e| e.value))
    }

    /// [`Cache::pop`], with the expiry time and tag.
    pub fn pop_entry<V: DeserializeOwned + 'static>(
        &self,
        key: impl Serialize,
    ) -> Result<Option<Entry<V>>> {
        let k = encode_key(&key)?;
        let found =
            self.write(|txn, s| self.pop_in(txn, s, &k, |kind, b| self.decode_as(kind, b)))?;
        found.map(Found::into_entry).transpose()
    }

    /// Takes an entry out in a transaction, reading its value first (a file may be removed
    /// as soon as the transaction commits).
    pub(crate) fn pop_in<R>(
        &self,
        txn: &mut WriteTxn,
        s: &Settings,
        k: &[u8],
        decode: impl Fn(ValueKind, &[u8]) -> Result<R>,
    ) -> Result<Option<Found<R>>> {
        let now = now();
        let got = txn.view(|v| -> Result<Option<(Meta, Result<R, FileRef>)>> {
            let Some(raw) = v.get(tree::PRIMARY, k)? else {
                return Ok(None);
            };
            let r = record::decode(raw).map_err(|e| entries::corrupt_record(k, e))?;
            if r.expired(now) {
                return Ok(None);
            }
            let val = match r.data {
                Data::Inline(b) => Ok(decode(r.kind, b)?),
                Data::File { name, size, crc } => Err((name.to_owned(), size, crc, r.kind)),
            };
            Ok(Some((Meta::of(&r, k.len(), raw.len()), val)))
        })?;
        let Some((m, val)) = got else { return Ok(None) };
        let value = match val {
            Ok(v) => Some(v),
            Err((name, size, crc, kind)) => {
                let e = self.engine()?;
                match values::read(&*e.storage, &e.dir, &name, size, crc)? {
                    Some(bytes) => Some(decode(kind, &bytes)?),
                    None => None,
                }
            }
        };
        entries::remove(txn, s, k, &m)?;
        Ok(value.map(|value| Found {
            value,
            rowid: m.rowid,
            expire_time: m.expire_time,
            tag: m.tag,
        }))
    }

    /// Sets a new expiry on a live item (`None`: never expires). Returns whether the item
    /// was there; expired items are not touched. Never culls.
    pub fn touch(&self, key: impl Serialize, expire: Option<Duration>) -> Result<bool> {
        let k = encode_key(&key)?;
        self.write(|txn, _| {
            let now = now();
            let raw = txn.view(|v| v.get(tree::PRIMARY, &k).map(|o| o.map(<[u8]>::to_vec)))?;
            let Some(raw) = raw else { return Ok(false) };
            let r = record::decode(&raw).map_err(|e| entries::corrupt_record(&k, e))?;
            if r.expired(now) {
                return Ok(false);
            }
            let expire_time = expire.map(|d| now + d.as_secs_f64());
            entries::set_expiry(txn, r.rowid, r.expire_time, expire_time);
            txn.put(
                tree::PRIMARY,
                k.clone(),
                Record { expire_time, ..r }.encode(),
            );
            Ok(true)
        })
    }

    /// Adds `delta` to the integer under `key` and returns the result; a missing (or
    /// expired) key starts from 0. Atomic across threads and processes.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// assert_eq!(cache.incr("n", 5)?, 5);
    /// assert_eq!(cache.decr("n", 2)?, 3);
    /// assert!(cache.incr_with("missing", 1, None).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn incr(&self, key: impl Serialize, delta: i64) -> Result<i64> {
        self.incr_with(key, delta, Some(0))
    }

    /// [`Cache::incr`] with a starting value for a missing key; `None` makes a missing key
    /// an [`Error::KeyNotFound`]. A value that is not an integer is an
    /// [`Error::TypeMismatch`] (python-diskcache also adds to floats; here, floats are not
    /// counters), and overflow is [`Error::Overflow`].
    pub fn incr_with(&self, key: impl Serialize, delta: i64, default: Option<i64>) -> Result<i64> {
        let k = encode_key(&key)?;
        self.write(|txn, s| {
            let now = now();
            let raw = txn.view(|v| v.get(tree::PRIMARY, &k).map(|o| o.map(<[u8]>::to_vec)))?;
            let rec = raw
                .as_deref()
                .map(record::decode)
                .transpose()
                .map_err(|e| entries::corrupt_record(&k, e))?;
            match rec {
                Some(r) if !r.expired(now) => {
                    let current = match (r.kind, r.data) {
                        (ValueKind::Int, Data::Inline(b)) => {
                            i64::from_le_bytes(b.try_into().map_err(|_| {
                                Error::corrupted("primary tree", 0, "integer value is not 8 bytes")
                            })?)
                        }
                        (kind, _) => {
                            return Err(Error::TypeMismatch(format!("incr on a {kind:?} value")))
                        }
                    };
                    let value = current.checked_add(delta).ok_or(Error::Overflow)?;
                    let nv = NewValue::inline(ValueKind::Int, value.to_le_bytes().to_vec());
                    let w = Write {
                        key: &k,
                        value: &nv,
                        expire_time: r.expire_time,
                        tag: r.tag,
                        now,
                        on_access: OnAccess::Touch,
                    };
                    entries::write(
                        txn,
                        s,
                        Some(&Meta::of(&r, k.len(), raw.as_ref().map_or(0, Vec::len))),
                        &w,
                    )?;
                    Ok(value)
                }
                other => {
                    let start = default.ok_or(Error::KeyNotFound)?;
                    let value = start.checked_add(delta).ok_or(Error::Overflow)?;
                    let nv = NewValue::inline(ValueKind::Int, value.to_le_bytes().to_vec());
                    let old = other
                        .as_ref()
                        .map(|r| Meta::of(r, k.len(), raw.as_ref().map_or(0, Vec::len)));
                    let w = Write {
                        key: &k,
                        value: &nv,
                        expire_time: None,
                        tag: None,
                        now,
                        on_access: OnAccess::Reset,
                    };
                    entries::write(txn, s, old.as_ref(), &w)?;
                    entries::cull(txn, s, now)?;
                    Ok(value)
                }
            }
        })
    }

    /// Subtracts `delta`; see [`Cache::incr`].
    pub fn decr(&self, key: impl Serialize, delta: i64) -> Result<i64> {
        self.incr_with(key, delta.checked_neg().ok_or(Error::Overflow)?, Some(0))
    }

    /// Subtracts `delta`; see [`Cache::incr_with`].
    pub fn decr_with(&self, key: impl Serialize, delta: i64, default: Option<i64>) -> Result<i64> {
        self.incr_with(key, delta.checked_neg().ok_or(Error::Overflow)?, default)
    }

    /// Number of items, expired ones included (they are removed lazily), as in
    /// python-diskcache. Maintained transactionally; never counted by a scan.
    pub fn len(&self) -> Result<u64> {
        self.read_view(|v, _| Ok(v.register(reg::COUNT)))
    }

    /// Whether the cache holds no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Estimated bytes on disk: live index data, the log since the last checkpoint, and
    /// value files (python-diskcache: database pages plus value files).
    pub fn volume(&self) -> Result<u64> {
        self.read_view(|v, _| Ok(entries::volume(v)))
    }

    /// The size limit in bytes.
    pub fn size_limit(&self) -> Result<u64> {
        self.read_view(|_, s| Ok(s.size_limit))
    }

    /// The most items a write culls.
    pub fn cull_limit(&self) -> Result<u64> {
        self.read_view(|_, s| Ok(s.cull_limit))
    }

    /// The eviction policy.
    pub fn eviction_policy(&self) -> Result<EvictionPolicy> {
        self.read_view(|_, s| Ok(s.eviction_policy))
    }

    /// Whether hits and misses are counted.
    pub fn statistics_enabled(&self) -> Result<bool> {
        self.read_view(|_, s| Ok(s.statistics))
    }

    /// Whether the tag index is kept.
    pub fn tag_index_enabled(&self) -> Result<bool> {
        self.read_view(|_, s| Ok(s.tag_index))
    }

    /// Values of at least this many bytes go to their own files.
    pub fn min_file_size(&self) -> Result<u64> {
        self.read_view(|_, s| Ok(s.min_file_size))
    }
}

/// Reads stored bytes as a [`Value`].
pub(crate) fn to_value(kind: ValueKind, b: &[u8]) -> Result<Value> {
    Ok(match kind {
        ValueKind::Encoded => Value::Encoded(b.to_vec()),
        ValueKind::Python => Value::Python(b.to_vec()),
        native => match NativeDe::from_stored(native, b).map_err(|e| Error::Codec(e.0))? {
            NativeDe::Bytes(x) => Value::Bytes(x.to_vec()),
            NativeDe::Str(x) => Value::Str(x.to_owned()),
            NativeDe::Int(x) => Value::Int(x),
            NativeDe::Float(x) => Value::Float(x),
        },
    })
}
