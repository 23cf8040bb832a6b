//! A consistent read view: a transaction's pending changes over this handle's overlay of the
//! log over the checkpointed trees.

use super::btree::{Cursor, TreeRef};
use super::delta::{Delta, DeltaRange, TreeDelta};
use super::State;
use crate::error::Result;
use std::ops::Bound;

/// Reads of one state, optionally through a transaction's pending changes.
pub(crate) struct View<'a> {
    pub(super) st: &'a State,
    pub(super) pending: Option<&'a Delta>,
}

/// One layer's next entry: key and value (`None`: deleted in that layer).
type Item<'a> = (&'a [u8], Option<&'a [u8]>);

enum Source<'a> {
    Map { iter: DeltaRange<'a>, rev: bool },
    Tree(Cursor<'a>),
}

impl<'a> Source<'a> {
    fn pull(&mut self) -> Option<Result<Item<'a>>> {
        match self {
            Source::Map { iter, rev } => {
                let item = if *rev { iter.next_back() } else { iter.next() };
                item.map(Ok)
            }
            Source::Tree(c) => c.next().map(|r| r.map(|(k, v)| (k, Some(v)))),
        }
    }
}

/// The tighter of a lower bound and "above `floor`".
fn raise<'k>(lo: Bound<&'k [u8]>, floor: Option<&'k [u8]>) -> Bound<&'k [u8]> {
    match (lo, floor) {
        (lo, None) => lo,
        (Bound::Unbounded, Some(f)) => Bound::Excluded(f),
        (Bound::Included(l), Some(f)) => {
            if l > f {
                Bound::Included(l)
            } else {
                Bound::Excluded(f)
            }
        }
        (Bound::Excluded(l), Some(f)) => Bound::Excluded(if l > f { l } else { f }),
    }
}

/// The tighter of an upper bound and "below `ceiling`".
fn lower<'k>(hi: Bound<&'k [u8]>, ceiling: Option<&'k [u8]>) -> Bound<&'k [u8]> {
    match (hi, ceiling) {
        (hi, None) => hi,
        (Bound::Unbounded, Some(c)) => Bound::Excluded(c),
        (Bound::Included(h), Some(c)) => {
            if h < c {
                Bound::Included(h)
            } else {
                Bound::Excluded(c)
            }
        }
        (Bound::Excluded(h), Some(c)) => Bound::Excluded(if h < c { h } else { c }),
    }
}

/// Whether the bounds describe an empty range (`BTreeMap::range` panics on those).
fn empty_range(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

impl<'a> View<'a> {
    fn layers(&self, tree: u8) -> (Vec<&'a TreeDelta>, bool) {
        let t = usize::from(tree);
        let mut layers = Vec::with_capacity(2);
        if let Some(p) = self.pending {
            if let Some(d) = p.trees.get(t) {
                layers.push(d);
                if d.cleared() {
                    return (layers, false);
                }
            }
        }
        if let Some(d) = self.st.overlay.trees.get(t) {
            layers.push(d);
            if d.cleared() {
                return (layers, false);
            }
        }
        (layers, true)
    }

    fn tree_ref(&self, tree: u8) -> Option<TreeRef<'a>> {
        let index = self.st.index.as_deref()?;
        Some(TreeRef {
            index,
            root: self.st.ckpt.roots.get(usize::from(tree)).copied().flatten(),
            published: self.st.ckpt.index_len,
            tree,
        })
    }

    /// The value of `key` in `tree`.
    pub fn get(&self, tree: u8, key: &[u8]) -> Result<Option<&'a [u8]>> {
        let t = usize::from(tree);
        if let Some(d) = self.pending.and_then(|p| p.trees.get(t)) {
            if let Some(v) = d.get(key) {
                return Ok(v);
            }
            if d.cleared() {
                return Ok(None);
            }
        }
        if let Some(d) = self.st.overlay.trees.get(t) {
            if let Some(v) = d.get(key) {
                return Ok(v);
            }
            if d.cleared() || d.excludes_base(key) {
                return Ok(None);
            }
        }
        match self.tree_ref(tree) {
            Some(r) => r.get(key),
            None => Ok(None),
        }
    }

    /// The entries of `tree` within the bounds, ascending or (`rev`) descending.
    pub fn range(
        &self,
        tree: u8,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> Result<Range<'a>> {
        let mut sources = Vec::with_capacity(3);
        if !empty_range(lo, hi) {
            let (layers, with_tree) = self.layers(tree);
            for d in layers {
                sources.push(Source::Map {
                    iter: d.range(lo, hi),
                    rev,
                });
            }
            if with_tree {
                // The overlay's floor and ceiling cut checkpointed keys off at the edges.
                let d = self.st.overlay.trees.get(usize::from(tree));
                let floor = d.and_then(|d| d.floor.as_deref());
                let ceiling = d.and_then(|d| d.ceiling.as_deref());
                let (tlo, thi) = (raise(lo, floor), lower(hi, ceiling));
                if let (Some(r), false) = (self.tree_ref(tree), empty_range(tlo, thi)) {
                    sources.push(Source::Tree(r.cursor(tlo, thi, rev)?));
                }
            }
        }
        let peeked = (0..sources.len()).map(|_| None).collect();
        Ok(Range {
            sources,
            peeked,
            rev,
            done: false,
        })
    }

    /// A register's value.
    pub fn register(&self, i: usize) -> u64 {
        if let Some(Some(v)) = self.pending.and_then(|p| p.registers.get(i)) {
            return *v;
        }
        self.st.registers.get(i).copied().unwrap_or(0)
    }
}

/// Merges the layers of a view over one key range.
pub(crate) struct Range<'a> {
    sources: Vec<Source<'a>>,
    peeked: Vec<Option<Item<'a>>>,
    rev: bool,
    done: bool,
}

impl<'a> Range<'a> {
    fn step(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        loop {
            for (src, slot) in self.sources.iter_mut().zip(self.peeked.iter_mut()) {
                if slot.is_none() {
                    if let Some(item) = src.pull() {
                        *slot = Some(item?);
                    }
                }
            }
            // The next key: smallest (largest if reversed); on ties the upper layer wins.
            let mut best: Option<(usize, &'a [u8])> = None;
            for (i, slot) in self.peeked.iter().enumerate() {
                if let Some((k, _)) = slot {
                    let better = match best {
                        None => true,
                        Some((_, b)) => {
                            if self.rev {
                                *k > b
                            } else {
                                *k < b
                            }
                        }
                    };
                    if better {
                        best = Some((i, k));
                    }
                }
            }
            let Some((i, key)) = best else {
                return Ok(None);
            };
            let value = self
                .peeked
                .get_mut(i)
                .and_then(Option::take)
                .and_then(|(_, v)| v);
            for slot in self.peeked.iter_mut() {
                if slot.is_some_and(|(k, _)| k == key) {
                    *slot = None;
                }
            }
            if let Some(v) = value {
                return Ok(Some((key, v)));
            }
        }
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
