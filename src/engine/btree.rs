//! Reading the copy-on-write B+trees of a mapped index file.
//!
//! Nodes are immutable once published, so views into the mapping are sound. They are still
//! untrusted bytes: each node's CRC is checked the first time this handle reads it (a small
//! fixed-size table remembers which were checked), every offset is bounds-checked against the
//! published length, each step down a tree must go exactly one level lower, and a cursor
//! insists that keys strictly increase (or decrease), so damage yields an error instead of a
//! panic, a read out of bounds, or a loop.

use super::io_err;
use crate::error::{Error, Result};
use crate::format::meta::Root;
use crate::format::node::{
    self, LeafVal, Node, NodeRef, INDEX_HEADER_LEN, KIND_BLOB, KIND_BRANCH, KIND_LEAF, MAX_NODE_LEN,
};
use crate::format::DecodeError;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::sys::Region;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("index").join(format!("{id:016x}.idx"))
}

/// Remembers which node offsets have passed their CRC check in this handle.
#[derive(Debug)]
pub(crate) struct Verified {
    slots: Box<[AtomicU64]>,
}

impl Verified {
    fn new(index_len: u64) -> Verified {
        let want = (index_len / 4096)
            .next_power_of_two()
            .clamp(1 << 10, 1 << 16) as usize;
        Verified {
            slots: (0..want).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, off: u64) -> Option<&AtomicU64> {
        let h = (off / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        self.slots.get(h as usize % self.slots.len())
    }

    fn seen(&self, off: u64) -> bool {
        self.slot(off)
            .is_some_and(|s| s.load(Ordering::Relaxed) == off + 1)
    }

    fn mark(&self, off: u64) {
        if let Some(s) = self.slot(off) {
            s.store(off + 1, Ordering::Relaxed);
        }
    }
}

/// An open, mapped index file.
#[derive(Debug)]
pub(crate) struct IndexFile {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    map: Arc<Region>,
    verified: Arc<Verified>,
}

/// Mappings are made this much larger than needed, to remap rarely.
const MAP_SLACK: u64 = 64 << 20;

impl IndexFile {
    /// Opens index file `id` and maps at least `published` bytes, which it must hold.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        id: u64,
        published: u64,
    ) -> std::io::Result<Result<IndexFile>> {
        let path = index_path(dir, id);
        let file = storage.open(&path, OpenMode::Existing)?;
        Ok(Self::with_file(path, id, file, published, None))
    }

    pub fn with_file(
        path: PathBuf,
        id: u64,
        file: Arc<dyn StorageFile>,
        published: u64,
        verified: Option<Arc<Verified>>,
    ) -> Result<IndexFile> {
        let len = file
            .len()
            .map_err(|e| io_err("reading the length of", &path, e))?;
        if len < published || published < INDEX_HEADER_LEN as u64 {
            return Err(Error::corrupted(
                &path,
                len,
                format!("index file holds {len} bytes but {published} are published"),
            ));
        }
        let mut head = [0u8; INDEX_HEADER_LEN];
        file.read_exact_at(0, &mut head)
            .map_err(|e| io_err("reading", &path, e))?;
        match node::decode_index_header(&head) {
            Ok(found) if found == id => {}
            Ok(found) => {
                return Err(Error::corrupted(
                    &path,
                    16,
                    format!("index file claims id {found}, expected {id}"),
                ))
            }
            Err(Ok(found)) => {
                return Err(Error::UnsupportedVersion {
                    file: path,
                    found,
                    supported: crate::format::FORMAT_VERSION,
                })
            }
            Err(Err(e)) => return Err(Error::corrupted(&path, e.offset as u64, e.detail)),
        }
        let map = file
            .map((published + MAP_SLACK) as usize)
            .map_err(|e| io_err("mapping", &path, e))?;
        Ok(IndexFile {
            id,
            path,
            file,
            map,
            verified: verified.unwrap_or_else(|| Arc::new(Verified::new(published))),
        })
    }

    /// The same file, mapped far enough for `published` bytes (or `self` if it already is).
    pub fn covering(self: &Arc<Self>, published: u64) -> Result<Arc<IndexFile>> {
        if published <= self.map.len() as u64 {
            return Ok(Arc::clone(self));
        }
        Ok(Arc::new(Self::with_file(
            self.path.clone(),
            self.id,
            Arc::clone(&self.file),
            published,
            Some(Arc::clone(&self.verified)),
        )?))
    }

    fn corrupt(&self, off: u64, e: DecodeError) -> Error {
        Error::corrupted(&self.path, off + e.offset as u64, e.detail)
    }

    /// The node at `r`, checked against `published` and (once per handle) its CRC.
    pub fn node(&self, r: NodeRef, published: u64) -> Result<Node<'_>> {
        let len = r.len as usize;
        let end = r.off.checked_add(u64::from(r.len));
        if r.off < INDEX_HEADER_LEN as u64
            || !r.off.is_multiple_of(8)
            || len > MAX_NODE_LEN
            || end.is_none_or(|e| e > published)
        {
            return Err(Error::corrupted(
                &self.path,
                r.off,
                format!(
                    "node reference {}+{} outside the published index",
                    r.off, r.len
                ),
            ));
        }
        let bytes = self
            .map
            .slice(r.off as usize, len)
            .ok_or_else(|| Error::corrupted(&self.path, r.off, "node outside the mapping"))?;
        let seen = self.verified.seen(r.off);
        let n = node::parse(bytes, !seen).map_err(|e| self.corrupt(r.off, e))?;
        if !seen {
            self.verified.mark(r.off);
        }
        Ok(n)
    }

    /// Reads a leaf value (resolving blobs).
    pub fn value<'a>(&'a self, v: LeafVal<'a>, tree: u8, published: u64) -> Result<&'a [u8]> {
        match v {
            LeafVal::Inline(b) => Ok(b),
            LeafVal::Blob(r) => {
                let n = self.node(r, published)?;
                if n.kind != KIND_BLOB || n.tree != tree {
                    return Err(Error::corrupted(&self.path, r.off, "expected a value blob"));
                }
                Ok(n.blob())
            }
        }
    }
}

/// A tree in a published index: file, root, and the published length.
#[derive(Clone, Copy)]
pub(crate) struct TreeRef<'a> {
    pub index: &'a IndexFile,
    pub root: Option<Root>,
    pub published: u64,
    pub tree: u8,
}

impl<'a> TreeRef<'a> {
    fn checked(&self, r: NodeRef, level: u8) -> Result<Node<'a>> {
        let n = self.index.node(r, self.published)?;
        let kind_ok = if level == 0 {
            n.kind == KIND_LEAF
        } else {
            n.kind == KIND_BRANCH
        };
        if !kind_ok || n.level != level || n.tree != self.tree {
            return Err(Error::corrupted(
                &self.index.path,
                r.off,
                format!(
                    "expected a level-{level} node of tree {}, found kind {} level {} tree {}",
                    self.tree, n.kind, n.level, n.tree
                ),
            ));
        }
        if n.count() == 0 && level == 0 {
            // Only a root may be an empty leaf, and we never write one.
            return Err(Error::corrupted(&self.index.path, r.off, "empty leaf"));
        }
        Ok(n)
    }

    /// Looks up `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        let Some(root) = self.root else {
            return Ok(None);
        };
        let (mut r, mut level) = (root.node, root.level);
        loop {
            let n = self.checked(r, level)?;
            if level == 0 {
                return match n.search(key).map_err(|e| self.index.corrupt(r.off, e))? {
                    Ok(i) => {
                        let v = n.leaf_value(i).map_err(|e| self.index.corrupt(r.off, e))?;
                        self.index.value(v, self.tree, self.published).map(Some)
                    }
                    Err(_) => Ok(None),
                };
            }
            let i = n.route(key).map_err(|e| self.index.corrupt(r.off, e))?;
            r = n.child(i).map_err(|e| self.index.corrupt(r.off, e))?;
            level -= 1;
        }
    }

    /// How many distinct leaves the given keys (sorted ascending) fall into: what a
    /// copy-on-write update with these keys would rewrite. Descends only when a key leaves
    /// the current leaf's key range.
    pub fn leaves_touched<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<u64> {
        let Some(root) = self.root else { return Ok(0) };
        let mut count = 0;
        // Exclusive upper bound of the current leaf (`None`: unbounded); `started` once set.
        let mut upper: Option<Vec<u8>> = None;
        let mut started = false;
        for k in keys {
            if started && upper.as_deref().is_none_or(|u| k < u) {
                continue;
            }
            let (mut r, mut level) = (root.node, root.level);
            let mut bound: Option<&[u8]> = None;
            while level > 0 {
                let n = self.checked(r, level)?;
                let i = n.route(k).map_err(|e| self.index.corrupt(r.off, e))?;
                if i + 1 < n.count() {
                    bound = Some(n.key(i + 1).map_err(|e| self.index.corrupt(r.off, e))?);
                }
                r = n.child(i).map_err(|e| self.index.corrupt(r.off, e))?;
                level -= 1;
            }
            upper = bound.map(<[u8]>::to_vec);
            started = true;
            count += 1;
        }
        Ok(count)
    }

    /// A cursor over keys within the bounds, ascending or (`rev`) descending.
    pub fn cursor(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool) -> Result<Cursor<'a>> {
        let mut c = Cursor {
            t: *self,
            stack: Vec::new(),
            lo: own(lo),
            hi: own(hi),
            rev,
            last: None,
            done: false,
        };
        let Some(root) = self.root else {
            c.done = true;
            return Ok(c);
        };
        // Descend towards the starting bound.
        let start = if rev { &c.hi } else { &c.lo };
        let target: Option<Vec<u8>> = match start {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        let (mut r, mut level) = (root.node, root.level);
        loop {
            let n = self.checked(r, level)?;
            let count = n.count() as i64;
            let idx: i64 = match &target {
                None => {
                    if rev {
                        count - 1
                    } else {
                        0
                    }
                }
                Some(k) if level > 0 => {
                    n.route(k).map_err(|e| self.index.corrupt(r.off, e))? as i64
                }
                Some(k) => match n.search(k).map_err(|e| self.index.corrupt(r.off, e))? {
                    Ok(i) => {
                        let i = i as i64;
                        match (rev, start) {
                            (false, Bound::Excluded(_)) => i + 1,
                            (true, Bound::Excluded(_)) => i - 1,
                            _ => i,
                        }
                    }
                    Err(i) => {
                        if rev {
                            i as i64 - 1
                        } else {
                            i as i64
                        }
                    }
                },
            };
            c.stack.push((n, r, idx));
            if level == 0 {
                break;
            }
            let child = usize::try_from(idx).ok().filter(|i| (*i as i64) < count);
            let Some(ci) = child else { break };
            r = n.child(ci).map_err(|e| self.index.corrupt(r.off, e))?;
            level -= 1;
        }
        Ok(c)
    }
}

fn own(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Walks a tree's leaf entries in order.
pub(crate) struct Cursor<'a> {
    t: TreeRef<'a>,
    /// From the root down: node, its reference, and the index of the next entry to visit.
    stack: Vec<(Node<'a>, NodeRef, i64)>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
    last: Option<&'a [u8]>,
    done: bool,
}

impl<'a> Cursor<'a> {
    fn in_bounds(&self, k: &[u8]) -> (bool, bool) {
        // (too far: stop, inside)
        let below_hi = match &self.hi {
            Bound::Included(h) => k <= h.as_slice(),
            Bound::Excluded(h) => k < h.as_slice(),
            Bound::Unbounded => true,
        };
        let above_lo = match &self.lo {
            Bound::Included(l) => k >= l.as_slice(),
            Bound::Excluded(l) => k > l.as_slice(),
            Bound::Unbounded => true,
        };
        if self.rev {
            (!above_lo, above_lo && below_hi)
        } else {
            (!below_hi, above_lo && below_hi)
        }
    }

    fn step(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(&mut (n, r, ref mut idx)) = self.stack.last_mut() else {
                self.done = true;
                return Ok(None);
            };
            let count = n.count() as i64;
            if *idx < 0 || *idx >= count {
                // This node is exhausted: move the parent on.
                self.stack.pop();
                match self.stack.last_mut() {
                    Some((_, _, pidx)) => {
                        *pidx += if self.rev { -1 } else { 1 };
                    }
                    None => self.done = true,
                }
                continue;
            }
            let i = *idx as usize;
            if n.level == 0 {
                *idx += if self.rev { -1 } else { 1 };
                let key = n.key(i).map_err(|e| self.t.index.corrupt(r.off, e))?;
                if let Some(prev) = self.last {
                    let ordered = if self.rev { key < prev } else { key > prev };
                    if !ordered {
                        return Err(Error::corrupted(
                            &self.t.index.path,
                            r.off,
                            "keys out of order",
                        ));
                    }
                }
                self.last = Some(key);
                let (stop, inside) = self.in_bounds(key);
                if stop {
                    self.done = true;
                    return Ok(None);
                }
                if !inside {
                    continue;
                }
                let v = n
                    .leaf_value(i)
                    .map_err(|e| self.t.index.corrupt(r.off, e))?;
                let v = self.t.index.value(v, self.t.tree, self.t.published)?;
                return Ok(Some((key, v)));
            }
            // Descend into child i, starting at its first (or last) entry.
            let child = n.child(i).map_err(|e| self.t.index.corrupt(r.off, e))?;
            let cn = self.t.checked(child, n.level - 1)?;
            let start = if self.rev { cn.count() as i64 - 1 } else { 0 };
            self.stack.push((cn, child, start));
        }
    }
}

impl<'a> Iterator for Cursor<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Creates a new, empty index file with its header.
pub(crate) fn create_index_file(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
) -> Result<Arc<dyn StorageFile>> {
    let path = index_path(dir, id);
    let file = match storage.open(&path, OpenMode::CreateNew) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Unpublished leftover of a crashed compaction: no checkpoint names it.
            storage
                .remove_file(&path)
                .map_err(|e| io_err("removing a stale", &path, e))?;
            storage
                .open(&path, OpenMode::CreateNew)
                .map_err(|e| io_err("creating", &path, e))?
        }
        Err(e) => return Err(io_err("creating", &path, e)),
    };
    file.write_at(0, &node::encode_index_header(id))
        .map_err(|e| io_err("writing", &path, e))?;
    Ok(file)
}
