//! `check`: verifies every invariant of a cache and repairs what can be repaired.

use super::entries::{self, cull_key, entry_bytes, rowid_key, rowid_of, tag_key, time_key};
use super::settings::{EvictionPolicy, Settings};
use super::Cache;
use crate::codec::Codec;
use crate::engine::{reg, tree, values, NewFile, View, WriteTxn};
use crate::error::{Error, Result};
use crate::format::f64_order_bits;
use crate::format::record::{self, Data};
use crate::storage::Storage;
use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Orphan value files younger than this are reported but not removed: a writer in another
/// process may have written one and be waiting for the writer lock to commit it.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(600);

/// What kind of problem [`Cache::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WarningKind {
    /// A tree or record cannot be read (damaged bytes).
    Damaged,
    /// A secondary index entry is missing or has no item.
    IndexMismatch,
    /// A counter (count, size, ...) disagrees with the items.
    CounterMismatch,
    /// An item's value file is missing.
    MissingFile,
    /// An item's value file has the wrong size or content.
    BadFile,
    /// A value file that no item refers to.
    UnknownFile,
    /// An empty directory under `values/`.
    EmptyDirectory,
    /// A log segment, index file or liveness file left behind by a crash.
    StaleFile,
}

/// A problem [`Cache::check`] found, and whether it was repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The kind of problem.
    pub kind: WarningKind,
    /// What exactly.
    pub message: String,
    /// Whether `check(true)` repaired it.
    pub fixed: bool,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {}{}",
            self.kind,
            self.message,
            if self.fixed { " (fixed)" } else { "" }
        )
    }
}

struct Report {
    fix: bool,
    warnings: Vec<Warning>,
}

impl Report {
    /// Records a problem; returns whether to repair it.
    fn warn(&mut self, kind: WarningKind, message: String, fixable: bool) -> bool {
        let fixed = self.fix && fixable;
        self.warnings.push(Warning {
            kind,
            message,
            fixed,
        });
        fixed
    }
}

fn render(key: &[u8]) -> String {
    crate::format::key_de_render(key).unwrap_or_else(|_| format!("{key:?}"))
}

impl<C: Codec> Cache<C> {
    /// Verifies the cache: every tree readable; every secondary index (insertion order,
    /// expiry, eviction order, tags) agreeing with the items both ways; the counters
    /// (`len`, size, data volume) matching the items; every value file present with the
    /// right size and checksum; no unknown value files, empty directories, or files left
    /// behind by crashes. Returns the problems found. With `fix`, repairs what can be
    /// repaired: rebuilds index entries and counters, removes items whose value file is
    /// missing or damaged (their value is lost), removes unknown files (older than ten
    /// minutes: a younger one may belong to a write in progress elsewhere), empty
    /// directories and stale files. Damaged tree nodes cannot be repaired in place.
    ///
    /// It holds the writer lock throughout (reads elsewhere go on).
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// cache.set("key", "value")?;
    /// assert!(cache.check(false)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&self, fix: bool) -> Result<Vec<Warning>> {
        let mut report = Report {
            fix,
            warnings: Vec::new(),
        };
        let e = Arc::clone(self.engine()?);
        // Files are checked with the writer lock held too: no checkpoint can replace the
        // current segment or index file, nor commit new value files, meanwhile.
        let r = self.write(|txn, s| {
            let referenced = check_items(txn, s, &mut report, &*e.storage, &e.dir)?;
            check_indexes(txn, s, &mut report)?;
            let (new, obsolete) = e.pending_files();
            let keep: HashSet<String> = referenced.into_iter().chain(new).chain(obsolete).collect();
            check_value_files(&*e.storage, &e.dir, &keep, &mut report)?;
            let info = e.info();
            check_stale(
                &*e.storage,
                &e.dir,
                info.index_file,
                info.log_segment,
                &mut report,
            );
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(Error::Corrupted {
                file,
                offset,
                detail,
            }) => {
                report.warn(
                    WarningKind::Damaged,
                    format!("{} at offset {offset}: {detail}", file.display()),
                    false,
                );
                return Ok(report.warnings);
            }
            Err(e) => return Err(e),
        }
        Ok(report.warnings)
    }
}

/// Scans every item: decodes it, checks its index entries and value file, and recomputes
/// the counters. Returns the value files the items refer to.
fn check_items(
    txn: &mut WriteTxn,
    s: &Settings,
    report: &mut Report,
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<String>> {
    struct Item {
        key: Vec<u8>,
        raw: Vec<u8>,
    }
    // Read the items in pages, so repairs can be applied between pages.
    let mut after: Option<Vec<u8>> = None;
    let (mut count, mut size, mut expiring, mut data, mut max_rowid) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut referenced = Vec::new();
    loop {
        let page: Vec<Item> = txn.view(|v| {
            let lo = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            v.range(tree::PRIMARY, lo, Bound::Unbounded, false)?
                .take(1024)
                .map(|r| {
                    r.map(|(k, raw)| Item {
                        key: k.to_vec(),
                        raw: raw.to_vec(),
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for item in page {
            let r = match record::decode(&item.raw) {
                Ok(r) => r,
                Err(e) => {
                    if report.warn(
                        WarningKind::Damaged,
                        format!(
                            "record of {} does not decode: {}",
                            render(&item.key),
                            e.detail
                        ),
                        true,
                    ) {
                        txn.del(tree::PRIMARY, item.key.clone());
                    }
                    continue;
                }
            };
            // The value file, if any.
            let mut drop_item = false;
            if let Data::File {
                name,
                size: fsize,
                crc,
            } = r.data
            {
                let nf = NewFile {
                    name: name.to_owned(),
                    size: fsize,
                    crc,
                    synced: false,
                };
                if !values::exists(storage, dir, name)? {
                    drop_item = report.warn(
                        WarningKind::MissingFile,
                        format!("value file {name} of {} not found", render(&item.key)),
                        true,
                    );
                } else if !values::verify(storage, dir, &nf) {
                    drop_item = report.warn(
                        WarningKind::BadFile,
                        format!(
                            "value file {name} of {} has the wrong size or checksum",
                            render(&item.key)
                        ),
                        true,
                    );
                }
                if !drop_item {
                    referenced.push(name.to_owned());
                }
            }
            if drop_item {
                let m = entries::Meta::of(&r, item.key.len(), item.raw.len());
                entries::remove(txn, s, &item.key, &m)?;
                continue;
            }
            count += 1;
            size += match r.data {
                Data::File { size, .. } => size,
                Data::Inline(_) => 0,
            };
            expiring += u64::from(r.expire_time.is_some());
            data += entry_bytes(item.key.len(), item.raw.len());
            max_rowid = max_rowid.max(r.rowid);
            // Its index entries.
            let mut want: Vec<(u8, Vec<u8>, Vec<u8>, &str)> = vec![(
                tree::ROWID,
                rowid_key(r.rowid),
                item.key.clone(),
                "insertion-order",
            )];
            if let Some(t) = r.expire_time {
                want.push((tree::EXPIRE, time_key(t, r.rowid), Vec::new(), "expiry"));
            }
            match s.eviction_policy {
                EvictionPolicy::None => {}
                EvictionPolicy::LeastRecentlyStored => {
                    want.push((
                        tree::CULL,
                        cull_key(f64_order_bits(r.store_time), r.rowid),
                        Vec::new(),
                        "eviction",
                    ));
                }
                EvictionPolicy::LeastRecentlyUsed | EvictionPolicy::LeastFrequentlyUsed => {
                    let access = txn.view(|v| {
                        v.get(tree::ACCESS, &rowid_key(r.rowid))
                            .map(|o| o.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
                    })?;
                    let value = match access {
                        Some(a) => a,
                        None => {
                            let initial =
                                if s.eviction_policy == EvictionPolicy::LeastFrequentlyUsed {
                                    0
                                } else {
                                    f64_order_bits(r.store_time)
                                };
                            if report.warn(
                                WarningKind::IndexMismatch,
                                format!("{} has no access entry", render(&item.key)),
                                true,
                            ) {
                                txn.put(
                                    tree::ACCESS,
                                    rowid_key(r.rowid),
                                    initial.to_be_bytes().to_vec(),
                                );
                            }
                            initial
                        }
                    };
                    want.push((tree::CULL, cull_key(value, r.rowid), Vec::new(), "eviction"));
                }
            }
            if let (true, Some(tag)) = (s.tag_index, r.tag) {
                want.push((tree::TAG, tag_key(tag, r.rowid), Vec::new(), "tag"));
            }
            for (t, k, v, what) in want {
                let have = txn.view(|view| view.get(t, &k).map(|o| o.map(<[u8]>::to_vec)))?;
                if have.as_deref() != Some(v.as_slice())
                    && report.warn(
                        WarningKind::IndexMismatch,
                        format!("{} is missing from the {what} index", render(&item.key)),
                        true,
                    )
                {
                    txn.put(t, k, v);
                }
            }
        }
    }
    let counters = [
        (reg::COUNT, count, "count"),
        (reg::SIZE, size, "size"),
        (reg::EXPIRING, expiring, "expiring count"),
        (reg::DATA, data, "data volume"),
    ];
    for (r, want, name) in counters {
        let have = txn.register(r);
        if have != want
            && report.warn(
                WarningKind::CounterMismatch,
                format!("{name} is {have}, the items say {want}"),
                true,
            )
        {
            txn.set_register(r, want);
        }
    }
    let last = txn.register(reg::LAST_ROWID);
    if last < max_rowid
        && report.warn(
            WarningKind::CounterMismatch,
            format!("last rowid {last} is below the highest in use, {max_rowid}"),
            true,
        )
    {
        txn.set_register(reg::LAST_ROWID, max_rowid);
    }
    Ok(referenced)
}

/// Checks that every secondary index entry leads back to an item that wants it.
fn check_indexes(txn: &mut WriteTxn, s: &Settings, report: &mut Report) -> Result<()> {
    let trees: [(u8, &str); 5] = [
        (tree::ROWID, "insertion-order"),
        (tree::EXPIRE, "expiry"),
        (tree::CULL, "eviction"),
        (tree::ACCESS, "access"),
        (tree::TAG, "tag"),
    ];
    for (t, what) in trees {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (page, stale) = txn.view(|v| -> Result<(usize, Vec<Vec<u8>>)> {
                let lo = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut n = 0;
                let mut stale = Vec::new();
                for item in v.range(t, lo, Bound::Unbounded, false)?.take(1024) {
                    let (k, val) = item?;
                    n += 1;
                    after = Some(k.to_vec());
                    if !index_entry_ok(v, s, t, k, val)? {
                        stale.push(k.to_vec());
                    }
                }
                Ok((n, stale))
            })?;
            for k in stale {
                let msg = format!("the {what} index has an entry for no item (key {k:02x?})");
                if report.warn(WarningKind::IndexMismatch, msg, true) {
                    txn.del(t, k);
                }
            }
            if page == 0 {
                break;
            }
        }
    }
    Ok(())
}

/// Whether an index entry belongs to a live item that wants exactly it.
fn index_entry_ok(v: &View<'_>, s: &Settings, t: u8, k: &[u8], val: &[u8]) -> Result<bool> {
    let (rowid, key) = if t == tree::ROWID {
        (rowid_of(k), Some(val.to_vec()))
    } else {
        let rowid = rowid_of(k);
        let key = match rowid {
            Some(r) => v.get(tree::ROWID, &rowid_key(r))?.map(<[u8]>::to_vec),
            None => None,
        };
        (rowid, key)
    };
    let (Some(rowid), Some(key)) = (rowid, key) else {
        return Ok(false);
    };
    let Some(raw) = v.get(tree::PRIMARY, &key)? else {
        return Ok(false);
    };
    let Ok(r) = record::decode(raw) else {
        return Ok(false);
    };
    if r.rowid != rowid {
        return Ok(false);
    }
    Ok(match t {
        tree::ROWID => true,
        tree::EXPIRE => r.expire_time.map(|e| time_key(e, rowid)).as_deref() == Some(k),
        tree::CULL => match s.eviction_policy {
            EvictionPolicy::None => false,
            EvictionPolicy::LeastRecentlyStored => {
                cull_key(f64_order_bits(r.store_time), rowid) == k
            }
            _ => v
                .get(tree::ACCESS, &rowid_key(rowid))?
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .is_some_and(|a| cull_key(a, rowid) == k),
        },
        tree::ACCESS => s.eviction_policy.tracks_access(),
        tree::TAG => s.tag_index && r.tag.map(|tag| tag_key(tag, rowid)).as_deref() == Some(k),
        _ => false,
    })
}

/// Finds value files no item refers to, and empty directories, under `values/`.
fn check_value_files(
    storage: &dyn Storage,
    dir: &Path,
    keep: &HashSet<String>,
    report: &mut Report,
) -> Result<()> {
    let root = dir.join("values");
    let now = SystemTime::now();
    // Depth-first, so that directories emptied by removals are seen empty afterwards.
    fn walk(
        storage: &dyn Storage,
        root: &Path,
        d: &Path,
        keep: &HashSet<String>,
        now: SystemTime,
        report: &mut Report,
    ) -> Result<bool> {
        let entries = match storage.list_dir(d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io(format!("listing {}", d.display()), e)),
        };
        let mut remaining = 0;
        for e in entries {
            if e.is_dir {
                if !walk(storage, root, &e.path, keep, now, report)? {
                    remaining += 1;
                }
                continue;
            }
            let name = e
                .path
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .map(str::to_owned)
                .unwrap_or_default();
            if keep.contains(&name) {
                remaining += 1;
                continue;
            }
            let old = e
                .modified
                .is_none_or(|m| now.duration_since(m).unwrap_or_default() >= ORPHAN_MIN_AGE);
            let msg = format!("unknown file {}", e.path.display());
            if report.warn(WarningKind::UnknownFile, msg, old)
                && storage.remove_file(&e.path).is_ok()
            {
                continue;
            }
            remaining += 1;
        }
        if remaining == 0 && d != root {
            let msg = format!("empty directory {}", d.display());
            if report.warn(WarningKind::EmptyDirectory, msg, true) && storage.remove_dir(d).is_ok()
            {
                return Ok(true);
            }
        }
        Ok(remaining == 0)
    }
    // Empty directories are reported only once removals made them empty, not for files
    // merely waiting: a directory with a kept file is not empty.
    walk(storage, &root, &root, keep, now, report)?;
    Ok(())
}

/// Finds log segments and index files no checkpoint refers to.
fn check_stale(storage: &dyn Storage, dir: &Path, index: u64, segment: u64, report: &mut Report) {
    let stale = |sub: &str, ext: &str, keep: u64, report: &mut Report| {
        let Ok(entries) = storage.list_dir(&dir.join(sub)) else {
            return;
        };
        for e in entries {
            let Some(name) = e.path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let id = name
                .strip_suffix(ext)
                .and_then(|stem| u64::from_str_radix(stem, 16).ok());
            if id.is_some_and(|id| id != keep) || name.ends_with(".tmp") {
                let msg = format!("stale file {}", e.path.display());
                if report.warn(WarningKind::StaleFile, msg, true) {
                    let _ = storage.remove_file(&e.path);
                }
            }
        }
    };
    stale("index", ".idx", index, report);
    stale("log", ".log", segment, report);
}
