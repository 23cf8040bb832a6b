//! Index files: a header, then immutable B+tree nodes and value blobs.
//!
//! A node is written once, at an 8-aligned offset past everything published before it, and
//! never changed. Its header names its kind, its level (leaves are level 0, and a branch's
//! children are exactly one level lower, so no path can loop), its tree, and a CRC. Entries
//! are reached through an offset table, so a lookup binary-searches without decoding the
//! node. See `format-spec/README.md`, "Index files".

use super::{crc32, put_lp_bytes, varint_len, DecodeError, Reader, FORMAT_VERSION};
use std::cmp::Ordering;

pub const INDEX_MAGIC: [u8; 8] = *b"DCRS-IDX";
pub const INDEX_HEADER_LEN: usize = 64;
pub const NODE_HEADER_LEN: usize = 16;
/// The largest node or blob accepted.
pub const MAX_NODE_LEN: usize = 64 << 20;
/// The deepest tree accepted.
pub const MAX_LEVEL: u8 = 40;

pub const KIND_LEAF: u8 = 1;
pub const KIND_BRANCH: u8 = 2;
pub const KIND_BLOB: u8 = 3;

const VAL_INLINE: u8 = 0;
const VAL_BLOB: u8 = 1;

/// The header of an index file.
pub fn encode_index_header(file_id: u64) -> [u8; INDEX_HEADER_LEN] {
    let mut b = [0u8; INDEX_HEADER_LEN];
    b[0..8].copy_from_slice(&INDEX_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&file_id.to_le_bytes());
    let crc = crc32(&[&b[0..60]]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes an index file header: its file id, or `Err(Ok(version))` for a newer version.
pub fn decode_index_header(b: &[u8]) -> Result<u64, Result<u32, DecodeError>> {
    let mut r = Reader::new(b);
    if r.array::<8>().map_err(Err)? != INDEX_MAGIC {
        return Err(Err(DecodeError::new(0, "not an index file (bad magic)")));
    }
    let version = r.u32().map_err(Err)?;
    let _ = r.u32().map_err(Err)?;
    let id = r.u64().map_err(Err)?;
    let body = b
        .get(0..60)
        .ok_or_else(|| Err(DecodeError::new(0, "short header")))?;
    if crc32(&[body]) != Reader::at(b, 60).u32().map_err(Err)? {
        return Err(Err(DecodeError::new(60, "index header checksum mismatch")));
    }
    if version != FORMAT_VERSION {
        return Err(Ok(version));
    }
    Ok(id)
}

/// Where a node lives: its offset and total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub off: u64,
    pub len: u32,
}

/// A leaf entry's value: inline bytes, or a blob elsewhere in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafVal<'a> {
    Inline(&'a [u8]),
    Blob(NodeRef),
}

/// A parsed node (header checked; entries are checked as they are read).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    bytes: &'a [u8],
    pub kind: u8,
    pub level: u8,
    pub tree: u8,
    count: usize,
}

/// Checks a node's header and CRC.
pub fn parse(bytes: &[u8], verify_crc: bool) -> Result<Node<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let kind = r.u8()?;
    let level = r.u8()?;
    let tree = r.u8()?;
    let _reserved = r.u8()?;
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    let count = r.u32()? as usize;
    if len != bytes.len() || len < NODE_HEADER_LEN {
        return Err(DecodeError::new(
            4,
            format!(
                "node length {len} does not match its reference ({})",
                bytes.len()
            ),
        ));
    }
    if !matches!(kind, KIND_LEAF | KIND_BRANCH | KIND_BLOB) {
        return Err(DecodeError::new(0, format!("unknown node kind {kind}")));
    }
    if level > MAX_LEVEL
        || (kind != KIND_BRANCH && level != 0)
        || (kind == KIND_BRANCH && level == 0)
    {
        return Err(DecodeError::new(
            1,
            format!("bad level {level} for node kind {kind}"),
        ));
    }
    let table = count
        .checked_mul(4)
        .and_then(|t| t.checked_add(NODE_HEADER_LEN))
        .filter(|end| *end <= len)
        .ok_or_else(|| {
            DecodeError::new(12, format!("entry count {count} does not fit the node"))
        })?;
    if kind == KIND_BLOB && count != 0 {
        return Err(DecodeError::new(12, "blob with entries"));
    }
    if kind == KIND_BRANCH && count == 0 {
        return Err(DecodeError::new(12, "empty branch"));
    }
    let _ = table;
    if verify_crc {
        let head = bytes.get(0..8).unwrap_or(&[]);
        let rest = bytes.get(12..).unwrap_or(&[]);
        if crc32(&[head, rest]) != crc {
            return Err(DecodeError::new(8, "node checksum mismatch"));
        }
    }
    Ok(Node {
        bytes,
        kind,
        level,
        tree,
        count,
    })
}

impl<'a> Node<'a> {
    /// Number of entries.
    pub fn count(&self) -> usize {
        self.count
    }

    /// A blob's bytes.
    pub fn blob(&self) -> &'a [u8] {
        self.bytes.get(NODE_HEADER_LEN..).unwrap_or(&[])
    }

    fn entry(&self, i: usize) -> Result<Reader<'a>, DecodeError> {
        if i >= self.count {
            return Err(DecodeError::new(12, format!("entry {i} of {}", self.count)));
        }
        let at = NODE_HEADER_LEN + 4 * i;
        let off = Reader::at(self.bytes, at).u32()? as usize;
        let first = NODE_HEADER_LEN + 4 * self.count;
        if off < first || off >= self.bytes.len() {
            return Err(DecodeError::new(
                at,
                format!("entry offset {off} outside the node"),
            ));
        }
        Ok(Reader::at(self.bytes, off))
    }

    /// The key of entry `i`.
    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8], DecodeError> {
        match self.key_fast(i) {
            Some(k) => Ok(k),
            None => self.entry(i)?.lp_bytes(),
        }
    }

    /// The common case of [`Node::key`] (a key shorter than 128 bytes) without the general
    /// decoder; `None` sends the caller to the general path, which reports errors.
    #[inline]
    fn key_fast(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.count {
            return None;
        }
        let at = NODE_HEADER_LEN + 4 * i;
        let off = u32::from_le_bytes(self.bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        if off < NODE_HEADER_LEN + 4 * self.count {
            return None;
        }
        let n = usize::from(*self.bytes.get(off)?);
        if n >= 0x80 {
            return None;
        }
        self.bytes.get(off + 1..off + 1 + n)
    }

    /// The value of leaf entry `i`.
    pub fn leaf_value(&self, i: usize) -> Result<LeafVal<'a>, DecodeError> {
        let mut r = self.entry(i)?;
        r.lp_bytes()?;
        let at = r.pos();
        match r.u8()? {
            VAL_INLINE => Ok(LeafVal::Inline(r.lp_bytes()?)),
            VAL_BLOB => Ok(LeafVal::Blob(NodeRef {
                off: r.u64()?,
                len: r.u32()?,
            })),
            t => Err(DecodeError::new(at, format!("unknown value tag {t}"))),
        }
    }

    /// The child of branch entry `i`.
    pub fn child(&self, i: usize) -> Result<NodeRef, DecodeError> {
        let mut r = self.entry(i)?;
        r.lp_bytes()?;
        Ok(NodeRef {
            off: r.u64()?,
            len: r.u32()?,
        })
    }

    /// Binary search: `Ok(i)` if entry `i` has `key`, else `Err(i)` where it would go.
    pub fn search(&self, key: &[u8]) -> Result<Result<usize, usize>, DecodeError> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid)?.cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// For a branch: the index of the child whose range holds `key` (entry 0's key stands
    /// for minus infinity).
    pub fn route(&self, key: &[u8]) -> Result<usize, DecodeError> {
        let (mut lo, mut hi) = (1, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid)? <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo - 1)
    }
}

/// The encoded size of a leaf entry.
pub fn leaf_entry_len(key: &[u8], val: &LeafVal<'_>) -> usize {
    4 + varint_len(key.len() as u64)
        + key.len()
        + 1
        + match val {
            LeafVal::Inline(v) => varint_len(v.len() as u64) + v.len(),
            LeafVal::Blob(_) => 12,
        }
}

/// The encoded size of a branch entry.
pub fn branch_entry_len(key: &[u8]) -> usize {
    4 + varint_len(key.len() as u64) + key.len() + 12
}

fn start(out: &mut Vec<u8>, kind: u8, level: u8, tree: u8, count: usize) -> usize {
    let at = out.len();
    out.extend_from_slice(&[kind, level, tree, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.resize(at + NODE_HEADER_LEN + 4 * count, 0);
    at
}

fn set_offset(out: &mut [u8], at: usize, i: usize) {
    let off = (out.len() - at) as u32;
    let slot = at + NODE_HEADER_LEN + 4 * i;
    out[slot..slot + 4].copy_from_slice(&off.to_le_bytes());
}

fn finish(out: &mut Vec<u8>, at: usize) -> usize {
    let len = out.len() - at;
    out[at + 4..at + 8].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32(&[&out[at..at + 8], &out[at + 12..]]);
    out[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
    // Pad so the next node starts 8-aligned.
    out.resize(at + super::frame::align8(len), 0);
    len
}

/// Appends a leaf; returns its length (without padding). Keys must be sorted.
pub fn build_leaf<'k>(out: &mut Vec<u8>, tree: u8, entries: &[(&'k [u8], LeafVal<'k>)]) -> usize {
    let at = start(out, KIND_LEAF, 0, tree, entries.len());
    for (i, (k, v)) in entries.iter().enumerate() {
        let mut e = Vec::new();
        put_lp_bytes(&mut e, k);
        match v {
            LeafVal::Inline(b) => {
                e.push(VAL_INLINE);
                put_lp_bytes(&mut e, b);
            }
            LeafVal::Blob(r) => {
                e.push(VAL_BLOB);
                e.extend_from_slice(&r.off.to_le_bytes());
                e.extend_from_slice(&r.len.to_le_bytes());
            }
        }
        let buf = &mut *out;
        set_offset(buf, at, i);
        buf.extend_from_slice(&e);
    }
    finish(out, at)
}

/// Appends a branch at `level`; entry 0's key is written empty. Returns its length.
pub fn build_branch(out: &mut Vec<u8>, tree: u8, level: u8, entries: &[(&[u8], NodeRef)]) -> usize {
    let at = start(out, KIND_BRANCH, level, tree, entries.len());
    for (i, (k, r)) in entries.iter().enumerate() {
        set_offset(out, at, i);
        put_lp_bytes(out, if i == 0 { &[] } else { k });
        out.extend_from_slice(&r.off.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
    }
    finish(out, at)
}

/// Appends a blob; returns its length.
pub fn build_blob(out: &mut Vec<u8>, tree: u8, data: &[u8]) -> usize {
    let at = start(out, KIND_BLOB, 0, tree, 0);
    out.extend_from_slice(data);
    finish(out, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leaves_search_and_read_back() {
        let mut out = Vec::new();
        let blob = NodeRef {
            off: 4096,
            len: 100,
        };
        let entries: Vec<(&[u8], LeafVal<'_>)> = vec![
            (b"a", LeafVal::Inline(b"1")),
            (b"c", LeafVal::Blob(blob)),
            (b"e", LeafVal::Inline(b"")),
        ];
        let len = build_leaf(&mut out, 2, &entries);
        let expected: usize = NODE_HEADER_LEN
            + entries
                .iter()
                .map(|(k, v)| leaf_entry_len(k, v))
                .sum::<usize>();
        assert_eq!(len, expected);
        let n = parse(&out[..len], true).expect("valid");
        assert_eq!((n.kind, n.level, n.tree, n.count()), (KIND_LEAF, 0, 2, 3));
        assert_eq!(n.search(b"c").expect("ok"), Ok(1));
        assert_eq!(n.search(b"d").expect("ok"), Err(2));
        assert_eq!(n.leaf_value(1).expect("ok"), LeafVal::Blob(blob));
        assert_eq!(n.leaf_value(0).expect("ok"), LeafVal::Inline(b"1"));
    }

    #[test]
    fn branches_route_by_lower_bounds() {
        let mut out = Vec::new();
        let r = |o| NodeRef { off: o, len: 16 };
        let len = build_branch(
            &mut out,
            0,
            1,
            &[(b"zzz", r(8)), (b"f", r(16)), (b"m", r(24))],
        );
        let n = parse(&out[..len], true).expect("valid");
        assert_eq!(n.key(0).expect("ok"), b"");
        for (k, want) in [(&b"a"[..], 0), (b"f", 1), (b"g", 1), (b"m", 2), (b"z", 2)] {
            assert_eq!(n.route(k).expect("ok"), want, "{k:?}");
        }
        assert_eq!(n.child(2).expect("ok"), r(24));
    }

    #[test]
    fn damage_is_detected() {
        let mut out = Vec::new();
        let len = build_blob(&mut out, 0, b"payload");
        let mut bad = out[..len].to_vec();
        bad[NODE_HEADER_LEN] ^= 1;
        assert!(parse(&bad, true).is_err());
        assert!(parse(&out[..len - 1], true).is_err());
        assert_eq!(parse(&out[..len], true).expect("ok").blob(), b"payload");
    }

    proptest! {
        #[test]
        fn garbage_nodes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), key in proptest::collection::vec(any::<u8>(), 0..4)) {
            if let Ok(n) = parse(&bytes, false) {
                let _ = n.search(&key);
                let _ = n.route(&key);
                for i in 0..n.count().min(8) + 1 {
                    let _ = n.key(i);
                    let _ = n.leaf_value(i);
                    let _ = n.child(i);
                }
            }
        }
    }
}
