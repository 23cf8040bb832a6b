//! Changes not yet in the trees: each handle's overlay of the log since the last checkpoint,
//! and a write transaction's pending changes.

use crate::format::frame::{self, Op, NUM_REGISTERS, NUM_TREES};
use crate::format::DecodeError;
use std::collections::{btree_map, btree_set, BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// Trees whose keys are mostly overwritten in place (the primary tree) keep their changes in
/// a hash map, with the order in a separate set: a lookup or an overwrite is one hash probe.
/// The others (whose keys are mostly new: times, rowids) keep a B-tree map.
fn hashed(tree: u8) -> bool {
    tree == super::tree::PRIMARY
}

/// Changes to one tree: new values (`None`: deleted), and which of the tree's checkpointed
/// keys are gone wholesale.
///
/// `floor` and `ceiling` are range tombstones at the edges: every checkpointed key at or
/// below `floor`, and at or above `ceiling`, is deleted. Queues, culling and expiry remove
/// keys from the front (or back) of their indexes; recording those deletions as a moving
/// edge instead of one tombstone each keeps "the first key" a single lookup (see
/// `State::apply`). Only overlays use them; a transaction's pending changes do not.
#[derive(Clone, Debug)]
pub(crate) struct TreeDelta {
    cleared: bool,
    pub floor: Option<Vec<u8>>,
    pub ceiling: Option<Vec<u8>>,
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    Ordered(BTreeMap<Vec<u8>, Option<Vec<u8>>>),
    Hashed {
        values: HashMap<Vec<u8>, Option<Vec<u8>>>,
        order: BTreeSet<Vec<u8>>,
    },
}

impl TreeDelta {
    fn new(tree: u8) -> TreeDelta {
        TreeDelta {
            cleared: false,
            floor: None,
            ceiling: None,
            store: if hashed(tree) {
                Store::Hashed {
                    values: HashMap::new(),
                    order: BTreeSet::new(),
                }
            } else {
                Store::Ordered(BTreeMap::new())
            },
        }
    }

    /// Every key the tree held before this delta is gone.
    pub fn cleared(&self) -> bool {
        self.cleared
    }

    /// Whether a checkpointed `key` is deleted by the floor or ceiling.
    pub fn excludes_base(&self, key: &[u8]) -> bool {
        self.floor.as_deref().is_some_and(|f| key <= f)
            || self.ceiling.as_deref().is_some_and(|c| key >= c)
    }

    /// Whether the delta changes anything.
    pub fn touches(&self) -> bool {
        self.cleared || self.floor.is_some() || self.ceiling.is_some() || !self.is_empty()
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Ordered(map) => map.len(),
            Store::Hashed { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The change recorded for `key`: `Some(None)` is a deletion.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match &self.store {
            Store::Ordered(map) => map.get(key).map(Option::as_deref),
            Store::Hashed { values, .. } => values.get(key).map(Option::as_deref),
        }
    }

    /// Records a change; returns whether the key is new to this delta.
    fn insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> bool {
        match &mut self.store {
            Store::Ordered(map) => map.insert(key, value).is_none(),
            Store::Hashed { values, order } => match values.get_mut(key.as_slice()) {
                Some(slot) => {
                    *slot = value;
                    false
                }
                None => {
                    order.insert(key.clone());
                    values.insert(key, value);
                    true
                }
            },
        }
    }

    /// Forgets the change recorded for `key`; returns whether there was one.
    fn remove(&mut self, key: &[u8]) -> bool {
        match &mut self.store {
            Store::Ordered(map) => map.remove(key).is_some(),
            Store::Hashed { values, order } => {
                order.remove(key);
                values.remove(key).is_some()
            }
        }
    }

    fn clear(&mut self) {
        match &mut self.store {
            Store::Ordered(map) => map.clear(),
            Store::Hashed { values, order } => {
                values.clear();
                order.clear();
            }
        }
        self.cleared = true;
        self.floor = None;
        self.ceiling = None;
    }

    /// The changes within bounds, in key order.
    pub fn range<'a>(&'a self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> DeltaRange<'a> {
        match &self.store {
            Store::Ordered(map) => DeltaRange::Ordered(map.range::<[u8], _>((lo, hi))),
            Store::Hashed { values, order } => DeltaRange::Hashed {
                keys: order.range::<[u8], _>((lo, hi)),
                values,
            },
        }
    }

    /// All changes, in key order.
    pub fn iter(&self) -> DeltaRange<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    pub fn into_sorted(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match self.store {
            Store::Ordered(map) => map.into_iter().collect(),
            Store::Hashed { mut values, order } => order
                .into_iter()
                .map(|k| {
                    let v = values.remove(&k).flatten();
                    (k, v)
                })
                .collect(),
        }
    }
}

/// An iterator over a delta's changes in key order, either way.
pub(crate) enum DeltaRange<'a> {
    Ordered(btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>),
    Hashed {
        keys: btree_set::Range<'a, Vec<u8>>,
        values: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    },
}

impl<'a> Iterator for DeltaRange<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            DeltaRange::Ordered(r) => r.next().map(|(k, v)| (k.as_slice(), v.as_deref())),
            DeltaRange::Hashed { keys, values } => keys
                .next()
                .map(|k| (k.as_slice(), values.get(k).and_then(Option::as_deref))),
        }
    }
}

impl DoubleEndedIterator for DeltaRange<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            DeltaRange::Ordered(r) => r.next_back().map(|(k, v)| (k.as_slice(), v.as_deref())),
            DeltaRange::Hashed { keys, values } => keys
                .next_back()
                .map(|k| (k.as_slice(), values.get(k).and_then(Option::as_deref))),
        }
    }
}

/// A value file a transaction created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub name: String,
    pub size: u64,
    pub crc: u32,
    /// Whether it was made durable when written (not carried by the log: a transaction's
    /// frame says so for all its files, see `FLAG_FILES_SYNCED`).
    pub synced: bool,
}

/// Changes to every tree and register, and the value files involved.
#[derive(Clone, Debug)]
pub(crate) struct Delta {
    pub trees: [TreeDelta; NUM_TREES],
    pub registers: [Option<u64>; NUM_REGISTERS],
    pub new_files: Vec<NewFile>,
    pub obsolete_files: Vec<String>,
    /// Number of keys in all trees' changes.
    pub entries: usize,
}

impl Default for Delta {
    fn default() -> Self {
        Delta {
            trees: std::array::from_fn(|t| TreeDelta::new(t as u8)),
            registers: [None; NUM_REGISTERS],
            new_files: Vec::new(),
            obsolete_files: Vec::new(),
            entries: 0,
        }
    }
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.entries == 0
            && self.trees.iter().all(|t| !t.touches())
            && self.registers.iter().all(Option::is_none)
            && self.new_files.is_empty()
            && self.obsolete_files.is_empty()
    }

    pub fn put(&mut self, tree: u8, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            if t.insert(key, value) {
                self.entries += 1;
            }
        }
    }

    pub fn clear(&mut self, tree: u8) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            self.entries -= t.len();
            t.clear();
        }
    }

    /// Forgets the change recorded for a key (a deletion needs no tombstone there).
    pub fn remove(&mut self, tree: u8, key: &[u8]) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            if t.remove(key) {
                self.entries -= 1;
            }
        }
    }

    /// Raises the floor of a tree (every checkpointed key up to `key` is deleted).
    pub fn set_floor(&mut self, tree: u8, key: Vec<u8>) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            t.floor = Some(key);
        }
    }

    /// Lowers the ceiling of a tree (every checkpointed key from `key` up is deleted).
    pub fn set_ceiling(&mut self, tree: u8, key: Vec<u8>) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            t.ceiling = Some(key);
        }
    }

    /// Applies the ops of one frame payload.
    pub fn apply_payload(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        for op in frame::ops(payload) {
            match op? {
                Op::Put { tree, key, value } => self.put(tree, key.to_vec(), Some(value.to_vec())),
                Op::Del { tree, key } => self.put(tree, key.to_vec(), None),
                Op::Clear { tree } => self.clear(tree),
                Op::Register { index, value } => {
                    if let Some(r) = self.registers.get_mut(usize::from(index)) {
                        *r = Some(value);
                    }
                }
                Op::NewFile { name, size, crc } => self.new_files.push(NewFile {
                    synced: false,
                    name: name.to_owned(),
                    size,
                    crc,
                }),
                Op::ObsoleteFile { name } => self.obsolete_files.push(name.to_owned()),
            }
        }
        Ok(())
    }

    /// Encodes the delta as frame payloads of about `soft_max` bytes each (an op is never
    /// split; a larger op gets a payload of its own).
    pub fn encode_payloads(&self, soft_max: usize) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new()];
        let mut push = |op: Op<'_>| {
            let need = op.encoded_len();
            let cur = out.last().map_or(0, Vec::len);
            if cur > 0 && cur + need > soft_max {
                out.push(Vec::new());
            }
            if let Some(p) = out.last_mut() {
                op.encode(p);
            }
        };
        for (i, t) in self.trees.iter().enumerate() {
            let tree = i as u8;
            if t.cleared() {
                push(Op::Clear { tree });
            }
            for (key, v) in t.iter() {
                match v {
                    Some(value) => push(Op::Put { tree, key, value }),
                    None => push(Op::Del { tree, key }),
                }
            }
        }
        for (i, r) in self.registers.iter().enumerate() {
            if let Some(value) = r {
                push(Op::Register {
                    index: i as u8,
                    value: *value,
                });
            }
        }
        for f in &self.new_files {
            push(Op::NewFile {
                name: &f.name,
                size: f.size,
                crc: f.crc,
            });
        }
        for name in &self.obsolete_files {
            push(Op::ObsoleteFile { name });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(t: &TreeDelta) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        t.iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn payloads_replay_to_the_same_delta() {
        let mut d = Delta::default();
        d.put(0, b"a".to_vec(), Some(b"1".to_vec()));
        d.put(0, b"b".to_vec(), None);
        d.clear(3);
        d.put(3, b"z".to_vec(), Some(vec![7; 100]));
        d.registers[1] = Some(42);
        d.new_files.push(NewFile {
            name: "00/11/2233445566778899aabbccddeeff.val".into(),
            size: 9,
            crc: 1,
            synced: false,
        });
        d.obsolete_files
            .push("00/11/2233445566778899aabbccddeeff.val".into());
        let payloads = d.encode_payloads(40);
        assert!(payloads.len() > 1, "small soft limit splits payloads");
        let mut back = Delta::default();
        for p in &payloads {
            back.apply_payload(p).expect("valid");
        }
        assert_eq!(contents(&back.trees[0]), contents(&d.trees[0]));
        assert!(back.trees[3].cleared());
        assert_eq!(contents(&back.trees[3]), contents(&d.trees[3]));
        assert_eq!(back.registers, d.registers);
        assert_eq!(back.new_files, d.new_files);
        assert_eq!(back.obsolete_files, d.obsolete_files);
        assert_eq!(back.entries, 3);
    }

    #[test]
    fn clearing_a_tree_drops_its_entries_and_edges() {
        for tree in [0u8, 2] {
            let mut a = Delta::default();
            a.put(tree, b"x".to_vec(), Some(vec![]));
            a.set_floor(tree, b"f".to_vec());
            a.clear(tree);
            a.put(tree, b"y".to_vec(), Some(vec![]));
            let t = &a.trees[usize::from(tree)];
            assert!(t.cleared());
            assert_eq!(t.floor, None);
            assert_eq!(contents(t), vec![(b"y".to_vec(), Some(vec![]))]);
            assert_eq!(a.entries, 1);
        }
    }

    #[test]
    fn floor_and_ceiling_exclude_checkpointed_keys_at_the_edges() {
        let mut d = Delta::default();
        d.set_floor(2, b"c".to_vec());
        d.set_ceiling(2, b"x".to_vec());
        let t = &d.trees[2];
        assert!(t.excludes_base(b"a") && t.excludes_base(b"c") && t.excludes_base(b"y"));
        assert!(!t.excludes_base(b"d") && !t.excludes_base(b"w"));
        assert!(!d.is_empty(), "edges are changes");
    }

    #[test]
    fn hashed_and_ordered_deltas_range_alike() {
        let mut d = Delta::default();
        for (i, k) in [b"m", b"c", b"x", b"a"].iter().enumerate() {
            d.put(0, k.to_vec(), Some(vec![i as u8]));
            d.put(2, k.to_vec(), Some(vec![i as u8]));
        }
        d.put(0, b"c".to_vec(), None);
        d.put(2, b"c".to_vec(), None);
        for tree in [0usize, 2] {
            let t = &d.trees[tree];
            let fwd: Vec<_> = t
                .range(Bound::Included(b"b"), Bound::Excluded(b"x"))
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            assert_eq!(
                fwd,
                vec![(b"c".to_vec(), None), (b"m".to_vec(), Some(vec![0]))]
            );
            let back: Vec<_> = t.iter().rev().map(|(k, _)| k.to_vec()).collect();
            assert_eq!(
                back,
                vec![b"x".to_vec(), b"m".to_vec(), b"c".to_vec(), b"a".to_vec()]
            );
            assert_eq!(t.get(b"c"), Some(None));
            assert_eq!(t.get(b"q"), None);
        }
    }
}
