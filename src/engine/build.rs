//! Writing trees: copy-on-write batch updates (checkpoints) and bulk loading (compaction).
//!
//! A checkpoint applies a sorted batch of changes to a tree. Only nodes on paths that the
//! batch touches are rewritten; each rewritten node's entries are merged with the batch and
//! repacked into nodes of about [`NODE_TARGET`] bytes. A result smaller than [`NODE_MIN`] is
//! merged with an untouched neighbour first, and a root with a single child is dropped, so
//! the tree stays shallow and full. New nodes are appended; the old ones become dead bytes,
//! which are counted so that compaction knows when to rewrite the file.

use super::btree::{IndexFile, TreeRef};
use super::io_err;
use crate::error::{Error, Result};
use crate::format::frame::align8;
use crate::format::meta::Root;
use crate::format::node::{self, LeafVal, NodeRef, KIND_BRANCH, KIND_LEAF, NODE_HEADER_LEN};
use crate::storage::StorageFile;
use std::path::PathBuf;
use std::sync::Arc;

/// Nodes are packed to about this many bytes.
pub(crate) const NODE_TARGET: usize = 4096;
/// A rewritten node smaller than this is merged with a neighbour.
pub(crate) const NODE_MIN: usize = NODE_TARGET / 4;
/// Values longer than this are stored as blobs outside the leaves.
pub(crate) const BLOB_MIN: usize = 512;
/// The writer's buffer is flushed to the file past this size.
const FLUSH_AT: usize = 8 << 20;

/// Appends nodes to an index file.
pub(crate) struct NodeWriter {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    base: u64,
    buf: Vec<u8>,
    /// Bytes appended so far (with padding).
    pub written: u64,
}

impl NodeWriter {
    pub fn new(file: Arc<dyn StorageFile>, path: PathBuf, at: u64) -> NodeWriter {
        NodeWriter {
            file,
            path,
            base: at,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// The offset the next node will get.
    pub fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn push(&mut self, f: impl FnOnce(&mut Vec<u8>) -> usize) -> Result<NodeRef> {
        let off = self.end();
        let before = self.buf.len();
        let len = f(&mut self.buf);
        self.written += (self.buf.len() - before) as u64;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(NodeRef {
            off,
            len: len as u32,
        })
    }

    pub fn leaf(&mut self, tree: u8, entries: &[(&[u8], LeafVal<'_>)]) -> Result<NodeRef> {
        self.push(|b| node::build_leaf(b, tree, entries))
    }

    pub fn branch(&mut self, tree: u8, level: u8, entries: &[(&[u8], NodeRef)]) -> Result<NodeRef> {
        self.push(|b| node::build_branch(b, tree, level, entries))
    }

    pub fn blob(&mut self, tree: u8, data: &[u8]) -> Result<NodeRef> {
        self.push(|b| node::build_blob(b, tree, data))
    }

    /// Writes out the buffer.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_at(self.base, &self.buf)
                .map_err(|e| io_err("writing nodes to", &self.path, e))?;
            self.base += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

/// One change of a batch: a key and its new value (`None`: delete).
pub(crate) type Change<'a> = (&'a [u8], Option<&'a [u8]>);

enum Entries<'a> {
    Leaf(Vec<(&'a [u8], LeafVal<'a>)>),
    Branch(Vec<(&'a [u8], NodeRef)>),
}

impl Entries<'_> {
    fn len(&self) -> usize {
        match self {
            Entries::Leaf(v) => v.len(),
            Entries::Branch(v) => v.len(),
        }
    }

    fn bytes(&self) -> usize {
        NODE_HEADER_LEN
            + match self {
                Entries::Leaf(v) => v
                    .iter()
                    .map(|(k, x)| node::leaf_entry_len(k, x))
                    .sum::<usize>(),
                Entries::Branch(v) => v
                    .iter()
                    .map(|(k, _)| node::branch_entry_len(k))
                    .sum::<usize>(),
            }
    }
}

/// Applies batches of changes to the trees of one index file.
pub(crate) struct Apply<'a, 'w> {
    old: Option<TreeRef<'a>>,
    w: &'w mut NodeWriter,
    tree: u8,
    /// Bytes (with padding) of old nodes and blobs no longer referenced.
    pub freed: u64,
}

impl<'a, 'w> Apply<'a, 'w> {
    pub fn new(old: Option<TreeRef<'a>>, w: &'w mut NodeWriter, tree: u8) -> Apply<'a, 'w> {
        Apply {
            old,
            w,
            tree,
            freed: 0,
        }
    }

    fn old(&self) -> Result<TreeRef<'a>> {
        self.old
            .ok_or_else(|| Error::corrupted(PathBuf::new(), 0, "tree has nodes but no index file"))
    }

    fn free(&mut self, r: NodeRef) {
        self.freed += align8(r.len as usize) as u64;
    }

    /// Counts every node and blob of the current tree as freed (the tree is being replaced).
    pub fn free_all(&mut self, root: Option<Root>) -> Result<()> {
        let Some(root) = root else { return Ok(()) };
        let t = self.old()?;
        let mut stack = vec![(root.node, root.level)];
        while let Some((r, level)) = stack.pop() {
            let n = t.index.node(r, t.published)?;
            self.free(r);
            for i in 0..n.count() {
                if level == 0 {
                    if let LeafVal::Blob(b) = n.leaf_value(i).map_err(|e| corrupt(t.index, r, e))? {
                        self.free(b);
                    }
                } else {
                    stack.push((n.child(i).map_err(|e| corrupt(t.index, r, e))?, level - 1));
                }
            }
            if stack.len() > 1 << 20 {
                return Err(Error::corrupted(
                    &t.index.path,
                    r.off,
                    "tree is implausibly large",
                ));
            }
        }
        Ok(())
    }

    /// Applies sorted, distinct changes to the tree rooted at `root`; returns the new root.
    pub fn apply(&mut self, root: Option<Root>, changes: &[Change<'a>]) -> Result<Option<Root>> {
        if changes.is_empty() {
            return Ok(root);
        }
        let (mut level, mut entries) = match root {
            None => {
                let mut v = Vec::new();
                for (k, val) in changes {
                    if let Some(val) = val {
                        v.push((*k, self.leaf_val(val)?));
                    }
                }
                (0u8, Entries::Leaf(v))
            }
            Some(root) => (
                root.level,
                self.apply_node(root.node, root.level, &[], changes)?,
            ),
        };
        loop {
            if entries.len() == 0 {
                return Ok(None);
            }
            if let Entries::Branch(v) = &entries {
                if let [(_, only)] = v.as_slice() {
                    return Ok(Some(Root {
                        node: *only,
                        level: level - 1,
                    }));
                }
            }
            let packed = self.pack(level, entries)?;
            if let [(_, only)] = packed.as_slice() {
                return Ok(Some(Root { node: *only, level }));
            }
            level += 1;
            if level > node::MAX_LEVEL {
                return Err(Error::corrupted(PathBuf::new(), 0, "tree too deep"));
            }
            entries = Entries::Branch(packed);
        }
    }

    fn leaf_val(&mut self, v: &'a [u8]) -> Result<LeafVal<'a>> {
        if v.len() > BLOB_MIN {
            Ok(LeafVal::Blob(self.w.blob(self.tree, v)?))
        } else {
            Ok(LeafVal::Inline(v))
        }
    }

    /// The entries of an old node; entry 0 of a branch gets `lower` as its key.
    fn read_entries(&mut self, r: NodeRef, level: u8, lower: &'a [u8]) -> Result<Entries<'a>> {
        let t = self.old()?;
        let n = t.index.node(r, t.published)?;
        let kind_ok = if level == 0 {
            n.kind == KIND_LEAF
        } else {
            n.kind == KIND_BRANCH
        };
        if !kind_ok || n.level != level || n.tree != self.tree {
            return Err(Error::corrupted(
                &t.index.path,
                r.off,
                "node has the wrong kind, level or tree",
            ));
        }
        let c = |e| corrupt(t.index, r, e);
        Ok(if level == 0 {
            let mut v = Vec::with_capacity(n.count());
            for i in 0..n.count() {
                v.push((n.key(i).map_err(c)?, n.leaf_value(i).map_err(c)?));
            }
            Entries::Leaf(v)
        } else {
            let mut v = Vec::with_capacity(n.count());
            for i in 0..n.count() {
                let k = if i == 0 { lower } else { n.key(i).map_err(c)? };
                v.push((k, n.child(i).map_err(c)?));
            }
            Entries::Branch(v)
        })
    }

    /// Applies changes to the subtree at `r`; returns the entries that replace it, at its
    /// level, not yet packed into nodes.
    fn apply_node(
        &mut self,
        r: NodeRef,
        level: u8,
        lower: &'a [u8],
        changes: &[Change<'a>],
    ) -> Result<Entries<'a>> {
        let old = self.read_entries(r, level, lower)?;
        self.free(r);
        match old {
            Entries::Leaf(old) => {
                let mut out = Vec::with_capacity(old.len() + changes.len());
                let (mut i, mut j) = (0, 0);
                while i < old.len() || j < changes.len() {
                    let ord = match (old.get(i), changes.get(j)) {
                        (Some(o), Some(c)) => o.0.cmp(c.0),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        _ => std::cmp::Ordering::Greater,
                    };
                    match ord {
                        std::cmp::Ordering::Less => {
                            if let Some(&e) = old.get(i) {
                                out.push(e);
                            }
                            i += 1;
                        }
                        _ => {
                            if ord == std::cmp::Ordering::Equal {
                                if let Some((_, LeafVal::Blob(b))) = old.get(i) {
                                    self.free(*b);
                                }
                                i += 1;
                            }
                            if let Some(&(k, Some(v))) = changes.get(j) {
                                let lv = self.leaf_val(v)?;
                                out.push((k, lv));
                            }
                            j += 1;
                        }
                    }
                }
                Ok(Entries::Leaf(out))
            }
            Entries::Branch(children) => {
                let mut out: Vec<(&'a [u8], NodeRef, bool)> =
                    Vec::with_capacity(children.len() + 4);
                let mut start = 0;
                let mut skip_next = false;
                for i in 0..children.len() {
                    let (sep, child) = children[i];
                    let end = match children.get(i + 1) {
                        Some((next, _)) => {
                            start + changes[start..].partition_point(|c| c.0 < *next)
                        }
                        None => changes.len(),
                    };
                    let mine = &changes[start..end];
                    start = end;
                    if skip_next {
                        // Merged into its left neighbour, which was checked to leave it no
                        // changes of its own.
                        skip_next = false;
                        continue;
                    }
                    if mine.is_empty() {
                        out.push((sep, child, true));
                        continue;
                    }
                    let mut sub = self.apply_node(child, level - 1, sep, mine)?;
                    if sub.len() == 0 {
                        continue;
                    }
                    if sub.bytes() < NODE_MIN {
                        if let Some(&(k, left, true)) = out.last() {
                            out.pop();
                            let left_entries = self.read_entries(left, level - 1, k)?;
                            self.free(left);
                            sub = concat(left_entries, sub);
                        } else if let Some(&(next_sep, right)) = children.get(i + 1) {
                            let right_has_changes = changes[start..].first().is_some_and(|c| {
                                match children.get(i + 2) {
                                    Some((after, _)) => c.0 < *after,
                                    None => true,
                                }
                            });
                            if !right_has_changes {
                                let right_entries =
                                    self.read_entries(right, level - 1, next_sep)?;
                                self.free(right);
                                sub = concat(sub, right_entries);
                                skip_next = true;
                            }
                        }
                    }
                    for (k, r) in self.pack(level - 1, sub)? {
                        out.push((k, r, false));
                    }
                }
                Ok(Entries::Branch(
                    out.into_iter().map(|(k, r, _)| (k, r)).collect(),
                ))
            }
        }
    }

    /// Writes entries at `level` as nodes of about the target size; returns each node's first
    /// key and reference.
    fn pack(&mut self, level: u8, entries: Entries<'a>) -> Result<Vec<(&'a [u8], NodeRef)>> {
        let total = entries.bytes();
        let nodes = total.div_ceil(NODE_TARGET).max(1);
        let per = total / nodes;
        let mut out = Vec::with_capacity(nodes);
        match entries {
            Entries::Leaf(v) => {
                let mut from = 0;
                let mut size = NODE_HEADER_LEN;
                for i in 0..v.len() {
                    size += node::leaf_entry_len(v[i].0, &v[i].1);
                    if size >= per || i + 1 == v.len() {
                        let r = self.w.leaf(self.tree, &v[from..=i])?;
                        out.push((v[from].0, r));
                        from = i + 1;
                        size = NODE_HEADER_LEN;
                    }
                }
            }
            Entries::Branch(v) => {
                // A branch node takes at least two entries (however large their keys, up to
                // 1 MiB each), and none is left alone at the end: then every level has at
                // most half the nodes of the one below, and the tree stays shallow.
                let mut from = 0;
                let mut size = NODE_HEADER_LEN;
                for i in 0..v.len() {
                    size += node::branch_entry_len(v[i].0);
                    let full = size >= per && i + 1 - from >= 2 && v.len() - (i + 1) != 1;
                    if full || i + 1 == v.len() {
                        let r = self.w.branch(self.tree, level, &v[from..=i])?;
                        out.push((v[from].0, r));
                        from = i + 1;
                        size = NODE_HEADER_LEN;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn concat<'a>(a: Entries<'a>, b: Entries<'a>) -> Entries<'a> {
    match (a, b) {
        (Entries::Leaf(mut x), Entries::Leaf(y)) => {
            x.extend(y);
            Entries::Leaf(x)
        }
        (Entries::Branch(mut x), Entries::Branch(y)) => {
            x.extend(y);
            Entries::Branch(x)
        }
        // Siblings are at the same level; mixing kinds cannot happen.
        (a, _) => a,
    }
}

fn corrupt(index: &IndexFile, r: NodeRef, e: crate::format::DecodeError) -> Error {
    Error::corrupted(&index.path, r.off + e.offset as u64, e.detail)
}

/// A branch's entries: each child's lower bound and reference.
type BranchEntries<'a> = Vec<(&'a [u8], NodeRef)>;

/// Builds a tree from entries given in ascending key order (compaction).
pub(crate) struct Bulk<'a, 'w> {
    w: &'w mut NodeWriter,
    tree: u8,
    leaf: Vec<(&'a [u8], LeafVal<'a>)>,
    leaf_size: usize,
    /// Pending entries per level (index 0 unused), with their encoded size.
    levels: Vec<(BranchEntries<'a>, usize)>,
}

impl<'a, 'w> Bulk<'a, 'w> {
    pub fn new(w: &'w mut NodeWriter, tree: u8) -> Bulk<'a, 'w> {
        Bulk {
            w,
            tree,
            leaf: Vec::new(),
            leaf_size: NODE_HEADER_LEN,
            levels: vec![(Vec::new(), 0)],
        }
    }

    pub fn push(&mut self, key: &'a [u8], value: &'a [u8]) -> Result<()> {
        let v = if value.len() > BLOB_MIN {
            LeafVal::Blob(self.w.blob(self.tree, value)?)
        } else {
            LeafVal::Inline(value)
        };
        let e = node::leaf_entry_len(key, &v);
        if !self.leaf.is_empty() && self.leaf_size + e > NODE_TARGET {
            self.flush_leaf()?;
        }
        self.leaf.push((key, v));
        self.leaf_size += e;
        Ok(())
    }

    fn flush_leaf(&mut self) -> Result<()> {
        let r = self.w.leaf(self.tree, &self.leaf)?;
        let k = self.leaf.first().map_or(&[][..], |e| e.0);
        self.leaf.clear();
        self.leaf_size = NODE_HEADER_LEN;
        self.push_branch(1, k, r)
    }

    fn push_branch(&mut self, level: usize, key: &'a [u8], r: NodeRef) -> Result<()> {
        while self.levels.len() <= level {
            self.levels.push((Vec::new(), NODE_HEADER_LEN));
        }
        let e = node::branch_entry_len(key);
        // At least two entries per branch, however large the keys (see `Apply::pack`).
        let full = {
            let (list, size) = &self.levels[level];
            list.len() >= 2 && size + e > NODE_TARGET
        };
        if full {
            let list = std::mem::take(&mut self.levels[level].0);
            self.levels[level].1 = NODE_HEADER_LEN;
            let br = self.w.branch(self.tree, level as u8, &list)?;
            let first = list.first().map_or(&[][..], |x| x.0);
            self.push_branch(level + 1, first, br)?;
        }
        let (list, size) = &mut self.levels[level];
        list.push((key, r));
        *size += e;
        Ok(())
    }

    /// Writes what is pending; returns the root.
    pub fn finish(mut self) -> Result<Option<Root>> {
        if !self.leaf.is_empty() {
            self.flush_leaf()?;
        }
        let mut level = 1;
        while level < self.levels.len() {
            let top = self.levels[level + 1..].iter().all(|(l, _)| l.is_empty());
            let list = std::mem::take(&mut self.levels[level].0);
            if list.is_empty() {
                level += 1;
                continue;
            }
            if top && list.len() == 1 {
                return Ok(Some(Root {
                    node: list[0].1,
                    level: (level - 1) as u8,
                }));
            }
            let br = self.w.branch(self.tree, level as u8, &list)?;
            self.push_branch(level + 1, list[0].0, br)?;
            level += 1;
        }
        Ok(None)
    }
}
