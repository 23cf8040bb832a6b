//! Changes not yet in the trees: each handle's overlay of the log since the last checkpoint,
//! and a write transaction's pending changes.

use crate::format::frame::{self, Op, NUM_REGISTERS, NUM_TREES};
use crate::format::DecodeError;
use std::collections::BTreeMap;

/// Changes to one tree.
#[derive(Clone, Debug, Default)]
pub(crate) struct TreeDelta {
    /// Every key the tree held before this delta is gone.
    pub cleared: bool,
    /// New values (`None`: deleted).
    pub map: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// A value file a transaction created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub name: String,
    pub size: u64,
    pub crc: u32,
}

/// Changes to every tree and register, and the value files involved.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    pub trees: [TreeDelta; NUM_TREES],
    pub registers: [Option<u64>; NUM_REGISTERS],
    pub new_files: Vec<NewFile>,
    pub obsolete_files: Vec<String>,
    /// Number of keys in all tree maps (for sizing decisions).
    pub entries: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.entries == 0
            && self.trees.iter().all(|t| !t.cleared)
            && self.registers.iter().all(Option::is_none)
            && self.new_files.is_empty()
            && self.obsolete_files.is_empty()
    }

    pub fn put(&mut self, tree: u8, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            if t.map.insert(key, value).is_none() {
                self.entries += 1;
            }
        }
    }

    pub fn clear(&mut self, tree: u8) {
        if let Some(t) = self.trees.get_mut(usize::from(tree)) {
            self.entries -= t.map.len();
            t.map.clear();
            t.cleared = true;
        }
    }

    /// Applies a later delta on top of this one.
    pub fn absorb(&mut self, later: Delta) {
        for (i, t) in later.trees.into_iter().enumerate() {
            if t.cleared {
                self.clear(i as u8);
            }
            for (k, v) in t.map {
                self.put(i as u8, k, v);
            }
        }
        for (mine, theirs) in self.registers.iter_mut().zip(later.registers) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self.new_files.extend(later.new_files);
        self.obsolete_files.extend(later.obsolete_files);
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
            if t.cleared {
                push(Op::Clear { tree });
            }
            for (k, v) in &t.map {
                match v {
                    Some(v) => push(Op::Put {
                        tree,
                        key: k,
                        value: v,
                    }),
                    None => push(Op::Del { tree, key: k }),
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
        });
        d.obsolete_files
            .push("00/11/2233445566778899aabbccddeeff.val".into());
        let payloads = d.encode_payloads(40);
        assert!(payloads.len() > 1, "small soft limit splits payloads");
        let mut back = Delta::default();
        for p in &payloads {
            back.apply_payload(p).expect("valid");
        }
        assert_eq!(back.trees[0].map, d.trees[0].map);
        assert!(back.trees[3].cleared);
        assert_eq!(back.trees[3].map, d.trees[3].map);
        assert_eq!(back.registers, d.registers);
        assert_eq!(back.new_files, d.new_files);
        assert_eq!(back.obsolete_files, d.obsolete_files);
        assert_eq!(back.entries, 3);
    }

    #[test]
    fn absorbing_a_clear_drops_earlier_entries() {
        let mut a = Delta::default();
        a.put(2, b"x".to_vec(), Some(vec![]));
        let mut b = Delta::default();
        b.clear(2);
        b.put(2, b"y".to_vec(), Some(vec![]));
        a.absorb(b);
        assert!(a.trees[2].cleared);
        assert_eq!(
            a.trees[2].map.keys().collect::<Vec<_>>(),
            vec![&b"y".to_vec()]
        );
        assert_eq!(a.entries, 1);
    }
}
