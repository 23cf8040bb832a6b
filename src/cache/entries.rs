//! Entries as the trees hold them: writing and removing one keeps the record, every
//! secondary index, the counters and the value files consistent within the transaction.

use super::settings::{EvictionPolicy, Settings};
use crate::engine::{reg, tree, NewFile, View, WriteTxn};
use crate::error::{Error, Result};
use crate::format::f64_order_bits;
use crate::format::record::{self, Data, Record};
use crate::format::value::{python_disk_file, ValueKind};
use std::cell::Cell;
use std::ops::Bound;

pub(crate) fn rowid_key(rowid: u64) -> Vec<u8> {
    rowid.to_be_bytes().to_vec()
}

/// Key of the expiry index: expire time (order-preserving) then rowid.
pub(crate) fn time_key(t: f64, rowid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&f64_order_bits(t).to_be_bytes());
    k.extend_from_slice(&rowid.to_be_bytes());
    k
}

/// Key of the eviction index: the policy's order value then rowid.
pub(crate) fn cull_key(v: u64, rowid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&v.to_be_bytes());
    k.extend_from_slice(&rowid.to_be_bytes());
    k
}

/// Key of the tag index: tag length, tag, then rowid.
pub(crate) fn tag_key(tag: &[u8], rowid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + tag.len());
    k.extend_from_slice(&(tag.len() as u32).to_be_bytes());
    k.extend_from_slice(tag);
    k.extend_from_slice(&rowid.to_be_bytes());
    k
}

/// The rowid at the end of a secondary index key.
pub(crate) fn rowid_of(k: &[u8]) -> Option<u64> {
    let tail = k.get(k.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

pub(crate) fn corrupt_record(key: &[u8], e: crate::format::DecodeError) -> Error {
    Error::corrupted(
        "primary tree",
        e.offset as u64,
        format!(
            "record of key {}: {}",
            crate::format::key_de_render(key).unwrap_or_else(|_| format!("{key:?}")),
            e.detail
        ),
    )
}

/// Bytes an entry counts for in [`volume`]: its record, its key twice (primary and rowid
/// trees), and a fixed share for its secondary index entries and node overhead.
pub(crate) fn entry_bytes(key_len: usize, record_len: usize) -> u64 {
    (2 * key_len + record_len + 64) as u64
}

/// What the indexes need to know about an existing entry.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    /// What the entry counts for in the data register.
    pub bytes: u64,
    pub rowid: u64,
    pub store_time: f64,
    pub expire_time: Option<f64>,
    pub tag: Option<Vec<u8>>,
    pub file: Option<(String, u64)>,
    /// The file a custom Python `Disk` wrote for this entry (the Python package removes it
    /// once the entry is gone: [`take_displaced`]).
    pub disk_file: Option<String>,
}

impl Meta {
    /// The metadata of a record of `record_len` bytes under a key of `key_len` bytes.
    pub fn of(r: &Record<'_>, key_len: usize, record_len: usize) -> Meta {
        Meta {
            bytes: entry_bytes(key_len, record_len),
            rowid: r.rowid,
            store_time: r.store_time,
            expire_time: r.expire_time,
            tag: r.tag.map(<[u8]>::to_vec),
            file: match r.data {
                Data::File { name, size, .. } => Some((name.to_owned(), size)),
                Data::Inline(_) => None,
            },
            disk_file: match (r.kind, r.data) {
                (ValueKind::Python, Data::Inline(b)) => python_disk_file(b).map(str::to_owned),
                _ => None,
            },
        }
    }

    pub fn expired(&self, now: f64) -> bool {
        self.expire_time.is_some_and(|t| t <= now)
    }

    fn file_size(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.1)
    }
}

/// The entry of a key, if any (expired or not).
pub(crate) fn meta(v: &View<'_>, key: &[u8]) -> Result<Option<Meta>> {
    match v.get(tree::PRIMARY, key)? {
        Some(raw) => Ok(Some(Meta::of(
            &record::decode(raw).map_err(|e| corrupt_record(key, e))?,
            key.len(),
            raw.len(),
        ))),
        None => Ok(None),
    }
}

/// At most this many displaced names are kept per thread until taken.
const DISPLACED_MAX: usize = 100_000;

thread_local! {
    /// Files of custom Python `Disk`s whose entries this thread's writes removed or replaced.
    static DISPLACED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn displace(name: &str) {
    DISPLACED.with(|d| {
        let mut d = d.borrow_mut();
        if d.len() < DISPLACED_MAX {
            d.push(name.to_owned());
        }
    });
}

/// How many displaced names this thread holds (to undo a failed operation's).
pub(crate) fn displaced_mark() -> usize {
    DISPLACED.with(|d| d.borrow().len())
}

/// Forgets the names displaced since `mark` (their operation failed).
pub(crate) fn displaced_truncate(mark: usize) {
    DISPLACED.with(|d| d.borrow_mut().truncate(mark));
}

/// Takes the names of custom-`Disk` files whose entries this thread's writes removed or
/// replaced since the last call.
pub(crate) fn take_displaced() -> Vec<String> {
    DISPLACED.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

/// A value ready to be stored: inline bytes, or a value file written beforehand.
pub(crate) struct NewValue {
    pub kind: ValueKind,
    pub data: NewData,
}

pub(crate) enum NewData {
    Inline(Vec<u8>),
    /// `taken` is set once a transaction owns the file (it then removes it on rollback).
    File {
        file: NewFile,
        taken: Cell<bool>,
    },
}

impl NewValue {
    pub fn inline(kind: ValueKind, bytes: Vec<u8>) -> NewValue {
        NewValue {
            kind,
            data: NewData::Inline(bytes),
        }
    }

    pub fn file(kind: ValueKind, file: NewFile) -> NewValue {
        NewValue {
            kind,
            data: NewData::File {
                file,
                taken: Cell::new(false),
            },
        }
    }

    fn size(&self) -> u64 {
        match &self.data {
            NewData::File { file, .. } => file.size,
            NewData::Inline(_) => 0,
        }
    }

    /// The value file, if it was written and no transaction took it (the caller removes it).
    pub fn orphan(&self) -> Option<&str> {
        match &self.data {
            NewData::File { file, taken } if !taken.get() => Some(&file.name),
            _ => None,
        }
    }
}

/// How a write treats the entry's access time or count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnAccess {
    /// A new value: access time now, access count zero.
    Reset,
    /// An update that counts as an access (`incr`): access time now, count plus one.
    Touch,
}

/// The eviction-order value an entry has now.
fn cull_value(v: &View<'_>, policy: EvictionPolicy, m: &Meta) -> Result<Option<u64>> {
    Ok(match policy {
        EvictionPolicy::None => None,
        EvictionPolicy::LeastRecentlyStored => Some(f64_order_bits(m.store_time)),
        EvictionPolicy::LeastRecentlyUsed | EvictionPolicy::LeastFrequentlyUsed => v
            .get(tree::ACCESS, &rowid_key(m.rowid))?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes),
    })
}

/// The new record of a write.
pub(crate) struct Write<'a> {
    pub key: &'a [u8],
    pub value: &'a NewValue,
    pub expire_time: Option<f64>,
    pub tag: Option<&'a [u8]>,
    pub now: f64,
    pub on_access: OnAccess,
}

/// Stores an entry over `old` (its rowid, and so its place in insertion order, is kept).
pub(crate) fn write(
    txn: &mut WriteTxn,
    s: &Settings,
    old: Option<&Meta>,
    w: &Write<'_>,
) -> Result<u64> {
    let rowid = match old {
        Some(m) => m.rowid,
        None => {
            let r = txn.register(reg::LAST_ROWID) + 1;
            txn.set_register(reg::LAST_ROWID, r);
            txn.put(tree::ROWID, rowid_key(r), w.key.to_vec());
            txn.set_register(reg::COUNT, txn.register(reg::COUNT) + 1);
            r
        }
    };
    set_expiry(txn, rowid, old.and_then(|m| m.expire_time), w.expire_time);
    if s.eviction_policy != EvictionPolicy::None {
        let prev = match old {
            Some(m) => txn.view(|v| cull_value(v, s.eviction_policy, m))?,
            None => None,
        };
        if let Some(p) = prev {
            txn.del(tree::CULL, cull_key(p, rowid));
        }
        let next = match (s.eviction_policy, w.on_access) {
            (EvictionPolicy::LeastFrequentlyUsed, OnAccess::Reset) => 0,
            (EvictionPolicy::LeastFrequentlyUsed, OnAccess::Touch) => prev.unwrap_or(0) + 1,
            _ => f64_order_bits(w.now),
        };
        txn.put(tree::CULL, cull_key(next, rowid), Vec::new());
        if s.eviction_policy.tracks_access() {
            txn.put(tree::ACCESS, rowid_key(rowid), next.to_be_bytes().to_vec());
        }
    }
    if s.tag_index {
        if let Some(t) = old.and_then(|m| m.tag.as_deref()) {
            txn.del(tree::TAG, tag_key(t, rowid));
        }
        if let Some(t) = w.tag {
            txn.put(tree::TAG, tag_key(t, rowid), Vec::new());
        }
    }
    let size = txn.register(reg::SIZE);
    let size = size.saturating_sub(old.map_or(0, Meta::file_size)) + w.value.size();
    txn.set_register(reg::SIZE, size);
    if let Some((name, _)) = old.and_then(|m| m.file.clone()) {
        txn.obsolete_file(name);
    }
    if let Some(f) = old.and_then(|m| m.disk_file.as_deref()) {
        let same = match (&w.value.data, w.value.kind) {
            (NewData::Inline(b), ValueKind::Python) => python_disk_file(b) == Some(f),
            _ => false,
        };
        if !same {
            displace(f);
        }
    }
    let data = match &w.value.data {
        NewData::Inline(b) => Data::Inline(b),
        NewData::File { file, taken } => {
            if !taken.replace(true) {
                txn.new_file(file.clone());
            }
            Data::File {
                name: &file.name,
                size: file.size,
                crc: file.crc,
            }
        }
    };
    let rec = Record {
        rowid,
        store_time: w.now,
        expire_time: w.expire_time,
        tag: w.tag,
        kind: w.value.kind,
        data,
    };
    let encoded = rec.encode();
    let data = txn
        .register(reg::DATA)
        .saturating_sub(old.map_or(0, |m| m.bytes))
        + entry_bytes(w.key.len(), encoded.len());
    txn.set_register(reg::DATA, data);
    txn.put(tree::PRIMARY, w.key.to_vec(), encoded);
    Ok(rowid)
}

/// Moves an entry in the expiry index, keeping the count of expiring entries.
pub(crate) fn set_expiry(txn: &mut WriteTxn, rowid: u64, old: Option<f64>, new: Option<f64>) {
    if let Some(t) = old {
        txn.del(tree::EXPIRE, time_key(t, rowid));
    }
    if let Some(t) = new {
        txn.put(tree::EXPIRE, time_key(t, rowid), Vec::new());
    }
    if old.is_some() != new.is_some() {
        let n = txn.register(reg::EXPIRING);
        txn.set_register(
            reg::EXPIRING,
            if new.is_some() {
                n + 1
            } else {
                n.saturating_sub(1)
            },
        );
    }
}

/// Removes an entry and everything that points at it.
pub(crate) fn remove(txn: &mut WriteTxn, s: &Settings, key: &[u8], m: &Meta) -> Result<()> {
    let rowid = m.rowid;
    txn.del(tree::PRIMARY, key.to_vec());
    txn.del(tree::ROWID, rowid_key(rowid));
    set_expiry(txn, rowid, m.expire_time, None);
    if s.eviction_policy != EvictionPolicy::None {
        if let Some(p) = txn.view(|v| cull_value(v, s.eviction_policy, m))? {
            txn.del(tree::CULL, cull_key(p, rowid));
        }
        if s.eviction_policy.tracks_access() {
            txn.del(tree::ACCESS, rowid_key(rowid));
        }
    }
    if s.tag_index {
        if let Some(t) = &m.tag {
            txn.del(tree::TAG, tag_key(t, rowid));
        }
    }
    txn.set_register(reg::COUNT, txn.register(reg::COUNT).saturating_sub(1));
    txn.set_register(
        reg::SIZE,
        txn.register(reg::SIZE).saturating_sub(m.file_size()),
    );
    txn.set_register(reg::DATA, txn.register(reg::DATA).saturating_sub(m.bytes));
    if let Some((name, _)) = &m.file {
        txn.obsolete_file(name.clone());
    }
    if let Some(f) = &m.disk_file {
        displace(f);
    }
    Ok(())
}

/// Removes the entry with this rowid, if it is still there. Returns whether it was.
pub(crate) fn remove_rowid(txn: &mut WriteTxn, s: &Settings, rowid: u64) -> Result<bool> {
    let found = txn.view(|v| -> Result<Option<(Vec<u8>, Meta)>> {
        let Some(key) = v.get(tree::ROWID, &rowid_key(rowid))? else {
            return Ok(None);
        };
        Ok(meta(v, key)?
            .filter(|m| m.rowid == rowid)
            .map(|m| (key.to_vec(), m)))
    })?;
    match found {
        Some((key, m)) => {
            remove(txn, s, &key, &m)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The cache's volume: the estimated bytes of its entries in the trees, plus its value
/// files (python-diskcache: database pages plus value files). Like python-diskcache's, it
/// shrinks as soon as items are removed; unlike the pages of a database file, it does not
/// depend on when space is reclaimed.
pub(crate) fn volume(v: &View<'_>) -> u64 {
    v.register(reg::DATA) + v.register(reg::SIZE)
}

/// Rowids of up to `limit` entries of an index, from its start.
pub(crate) fn first_rowids(v: &View<'_>, t: u8, hi: Bound<&[u8]>, limit: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for item in v.range(t, Bound::Unbounded, hi, false)? {
        let (k, _) = item?;
        if let Some(r) = rowid_of(k) {
            out.push(r);
        }
        if out.len() as u64 >= limit {
            break;
        }
    }
    Ok(out)
}

/// python-diskcache's `_cull`, run inside writes: removes up to `cull_limit` expired
/// entries, then, if the volume is at or above the size limit, entries in policy order up to
/// what is left of `cull_limit`. Returns how many were removed.
pub(crate) fn cull(txn: &mut WriteTxn, s: &Settings, now: f64) -> Result<u64> {
    let mut limit = s.cull_limit;
    if limit == 0 {
        return Ok(0);
    }
    let expired = if txn.register(reg::EXPIRING) == 0 {
        Vec::new()
    } else {
        let upto = time_key(now, 0);
        txn.view(|v| first_rowids(v, tree::EXPIRE, Bound::Excluded(&upto), limit))?
    };
    let mut removed = 0;
    for r in &expired {
        if remove_rowid(txn, s, *r)? {
            removed += 1;
        }
    }
    limit -= expired.len() as u64;
    if limit == 0 || s.eviction_policy == EvictionPolicy::None {
        return Ok(removed);
    }
    if txn.view(volume) < s.size_limit {
        return Ok(removed);
    }
    let victims = txn.view(|v| first_rowids(v, tree::CULL, Bound::Unbounded, limit))?;
    for r in victims {
        if remove_rowid(txn, s, r)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A recorded read under the LRU or LFU policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Access {
    /// Accessed at this time (LRU).
    Time(f64),
    /// Accessed this many times (LFU).
    Count(u64),
}

/// Applies batched accesses to the eviction index. Entries gone since are skipped; an access
/// of the wrong kind (the policy changed since) is dropped.
pub(crate) fn apply_accesses(
    txn: &mut WriteTxn,
    s: &Settings,
    accesses: &[(u64, Access)],
) -> Result<()> {
    for &(rowid, a) in accesses {
        let ok = matches!(
            (s.eviction_policy, a),
            (EvictionPolicy::LeastRecentlyUsed, Access::Time(_))
                | (EvictionPolicy::LeastFrequentlyUsed, Access::Count(_))
        );
        if !ok {
            continue;
        }
        let k = rowid_key(rowid);
        let cur = txn.view(|v| {
            v.get(tree::ACCESS, &k)
                .map(|o| o.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
        })?;
        let Some(cur) = cur else { continue };
        let next = match a {
            Access::Time(t) => f64_order_bits(t).max(cur),
            Access::Count(n) => cur.saturating_add(n),
        };
        if next != cur {
            txn.del(tree::CULL, cull_key(cur, rowid));
            txn.put(tree::CULL, cull_key(next, rowid), Vec::new());
            txn.put(tree::ACCESS, k, next.to_be_bytes().to_vec());
        }
    }
    Ok(())
}
