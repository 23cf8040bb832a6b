//! Entries as stored, for tools: [`Cache::raw_entry`].

use super::entries;
use super::value::{to_system_time, ValueReader};
use super::Cache;
use crate::codec::Codec;
use crate::engine::{tree, values};
use crate::error::Result;
use crate::format::record::{self, Data};
use crate::format::value::ValueKind as StoredKind;
use crate::key::{encode_key, Key};
use serde::Serialize;
use std::time::SystemTime;

/// The kind of a stored value: which [`Value`](crate::Value) variant it reads as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Raw bytes.
    Bytes,
    /// UTF-8 text.
    Str,
    /// A 64-bit integer, stored as 8 bytes little-endian.
    Int,
    /// A float, stored as 8 bytes little-endian IEEE 754.
    Float,
    /// Bytes produced by the cache's codec.
    Encoded,
    /// A value the Python package wrote in one of its own encodings (format spec section 17).
    Python,
}

impl From<StoredKind> for ValueKind {
    fn from(k: StoredKind) -> ValueKind {
        match k {
            StoredKind::Bytes => ValueKind::Bytes,
            StoredKind::Str => ValueKind::Str,
            StoredKind::Int => ValueKind::Int,
            StoredKind::Float => ValueKind::Float,
            StoredKind::Encoded => ValueKind::Encoded,
            StoredKind::Python => ValueKind::Python,
        }
    }
}

/// An entry as stored, expired or not; see [`Cache::raw_entry`].
#[derive(Debug)]
pub struct RawEntry {
    /// The value's kind.
    pub kind: ValueKind,
    /// The value's stored bytes: UTF-8 for a string, 8 bytes little-endian for an integer
    /// or a float, the codec's bytes for an encoded value. A value file is opened, not read.
    pub value: ValueReader,
    /// When the value was stored.
    pub store_time: SystemTime,
    /// When it expires, if it does (possibly in the past: expired entries are returned).
    pub expire_time: Option<SystemTime>,
    /// Its tag, if it has one.
    pub tag: Option<Key>,
}

impl<C: Codec> Cache<C> {
    /// The entry of `key` as stored, for tools that inspect or copy caches (dumps): its
    /// kind, a reader over its stored bytes (streaming a value file rather than loading it),
    /// its store and expire times, and its tag. Unlike [`Cache::get`], an expired entry that
    /// is still stored is returned, no hit or miss is counted and no access is recorded, so
    /// inspecting a cache leaves its statistics and eviction order as they were. `None` if
    /// the key is missing (or its value file is gone).
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::{SetOptions, ValueKind};
    /// use std::io::Read;
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.set_with("k", "text", &SetOptions::new().expire(Duration::ZERO))?;
    /// assert_eq!(cache.get::<String>("k")?, None, "expired");
    /// let mut raw = cache.raw_entry("k")?.expect("still stored");
    /// assert_eq!(raw.kind, ValueKind::Str);
    /// let mut text = String::new();
    /// raw.value.read_to_string(&mut text).unwrap();
    /// assert_eq!(text, "text");
    /// # Ok(())
    /// # }
    /// ```
    pub fn raw_entry(&self, key: impl Serialize) -> Result<Option<RawEntry>> {
        let k = encode_key(&key)?;
        let e = self.engine()?;
        // A value file can vanish when another handle replaces the value and a checkpoint
        // removes the old file: look again, which finds the new value (or none).
        for _ in 0..4 {
            let found = self.read_view(|v, _| {
                let Some(raw) = v.get(tree::PRIMARY, &k)? else {
                    return Ok(None);
                };
                let r = record::decode(raw).map_err(|e| entries::corrupt_record(&k, e))?;
                let data = match r.data {
                    Data::Inline(b) => Ok(b.to_vec()),
                    Data::File { name, size, crc } => Err((name.to_owned(), size, crc)),
                };
                Ok(Some((
                    r.kind,
                    data,
                    r.store_time,
                    r.expire_time,
                    r.tag.map(<[u8]>::to_vec),
                )))
            })?;
            let Some((kind, data, store_time, expire_time, tag)) = found else {
                return Ok(None);
            };
            let value = match data {
                Ok(bytes) => ValueReader::memory(bytes),
                Err((name, size, crc)) => match values::open(&*e.storage, &e.dir, &name, size)? {
                    Some(f) => ValueReader::file(f, size, crc, values::path(&e.dir, &name)),
                    None => continue,
                },
            };
            return Ok(Some(RawEntry {
                kind: kind.into(),
                value,
                store_time: to_system_time(store_time),
                expire_time: expire_time.map(to_system_time),
                tag: tag.as_deref().map(Key::from_encoded).transpose()?,
            }));
        }
        Ok(None)
    }
}
