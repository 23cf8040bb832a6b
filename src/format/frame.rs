//! Log segments: a header, then CRC-framed transactions.
//!
//! Each frame's CRC covers the previous frame's CRC (the first frame's covers the segment
//! header's), so bytes left over from an earlier, longer history past a torn tail can never
//! pass as valid frames: the chain breaks at the first frame that was not written after its
//! predecessor. See `format-spec/README.md`, "Log segments".

use super::meta::{Checkpoint, SLOT_LEN};
use super::{crc32, put_lp_bytes, put_varint, DecodeError, Reader, FORMAT_VERSION};

pub const SEGMENT_MAGIC: [u8; 8] = *b"DCRS-LOG";
/// The fixed part of a segment header.
const SEGMENT_FIXED_LEN: usize = 64;
/// The header: the fixed part, then the checkpoint the segment continues from.
pub const SEGMENT_HEADER_LEN: usize = SEGMENT_FIXED_LEN + SLOT_LEN;
pub const FRAME_HEADER_LEN: usize = 24;
/// The largest payload a frame may carry.
pub const MAX_FRAME_PAYLOAD: usize = 64 << 20;
/// Set on the last frame of a transaction: the transaction commits with it.
pub const FLAG_FINAL: u32 = 1;
/// Set on the last frame of a transaction whose new value files were made durable before
/// the transaction was written (sync level Full): recovery need not check them.
pub const FLAG_FILES_SYNCED: u32 = 2;
const KNOWN_FLAGS: u32 = FLAG_FINAL | FLAG_FILES_SYNCED;

/// Number of trees the engine keeps (ids `0..NUM_TREES`).
pub const NUM_TREES: usize = 8;
/// Number of 64-bit registers carried by frames and checkpoints.
pub const NUM_REGISTERS: usize = 8;

/// A log segment's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    /// The LSN of the segment's first frame.
    pub start_lsn: u64,
    /// Random bits so that two segments never chain alike.
    pub salt: u64,
}

impl SegmentHeader {
    /// The header of a segment that continues from checkpoint `from`.
    pub fn encode(&self, from: &Checkpoint) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.start_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32(&[&b[0..60]]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b[SEGMENT_FIXED_LEN..].copy_from_slice(&from.encode());
        b
    }

    /// The checkpoint a segment header says it continues from, if that part is intact and
    /// agrees with the segment (it names this segment and its first LSN).
    pub fn checkpoint(&self, b: &[u8]) -> Option<Checkpoint> {
        let c = Checkpoint::decode(b.get(SEGMENT_FIXED_LEN..SEGMENT_HEADER_LEN)?).ok()?;
        (c.log_segment == self.segment_id && c.log_start_lsn == self.start_lsn).then_some(c)
    }

    /// Decodes a header's fixed part; returns it with its CRC, the seed of the frame chain.
    /// Another format version is reported as `Err(Ok(version))`.
    pub fn decode(b: &[u8]) -> Result<(SegmentHeader, u32), Result<u32, DecodeError>> {
        let mut r = Reader::new(b);
        let magic = r.array::<8>().map_err(Err)?;
        if magic != SEGMENT_MAGIC {
            return Err(Err(DecodeError::new(0, "not a log segment (bad magic)")));
        }
        let version = r.u32().map_err(Err)?;
        let _reserved = r.u32().map_err(Err)?;
        let segment_id = r.u64().map_err(Err)?;
        let start_lsn = r.u64().map_err(Err)?;
        let salt = r.u64().map_err(Err)?;
        let body = b
            .get(0..60)
            .ok_or_else(|| Err(DecodeError::new(0, "short header")))?;
        let stored = Reader::at(b, 60).u32().map_err(Err)?;
        if crc32(&[body]) != stored {
            return Err(Err(DecodeError::new(
                60,
                "segment header checksum mismatch",
            )));
        }
        if version != FORMAT_VERSION {
            return Err(Ok(version));
        }
        Ok((
            SegmentHeader {
                segment_id,
                start_lsn,
                salt,
            },
            stored,
        ))
    }
}

/// Rounds up to a multiple of 8: frames start 8-aligned.
pub fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// The bytes a frame with this payload occupies, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    align8(FRAME_HEADER_LEN + payload_len)
}

/// Appends a frame written during boot `boot` (see [`Frame::boot`]); returns its CRC (the
/// next frame's chain seed).
pub fn encode_frame(
    out: &mut Vec<u8>,
    prev_crc: u32,
    lsn: u64,
    flags: u32,
    boot: u32,
    payload: &[u8],
) -> u32 {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&boot.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32(&[
        &prev_crc.to_le_bytes(),
        &out[start..start + 4],
        &out[start + 8..],
    ]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + frame_len(payload.len()), 0);
    crc
}

/// A decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub lsn: u64,
    pub flags: u32,
    /// The boot of the machine it was written in (0: unknown): a transaction written in
    /// the current boot lost nothing unsynced to a power failure.
    pub boot: u32,
    pub payload: &'a [u8],
    pub crc: u32,
    /// Bytes the frame occupies, padding included.
    pub len: usize,
}

/// Why there is no valid frame at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEnd {
    /// Not enough bytes for the frame that the header announces.
    Short,
    /// The bytes are not the next frame of the chain: end of the log, or damage.
    Invalid(String),
}

/// Decodes the frame at the start of `buf`, which must chain from `prev_crc` and carry LSN
/// `lsn`.
pub fn decode_frame(buf: &[u8], prev_crc: u32, lsn: u64) -> Result<Frame<'_>, FrameEnd> {
    let mut r = Reader::new(buf);
    let len = r.u32().map_err(|_| FrameEnd::Short)? as usize;
    let crc = r.u32().map_err(|_| FrameEnd::Short)?;
    let frame_lsn = r.u64().map_err(|_| FrameEnd::Short)?;
    let flags = r.u32().map_err(|_| FrameEnd::Short)?;
    let boot = r.u32().map_err(|_| FrameEnd::Short)?;
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameEnd::Invalid(format!(
            "frame length {len} exceeds the maximum"
        )));
    }
    if frame_lsn != lsn {
        return Err(FrameEnd::Invalid(format!(
            "expected LSN {lsn}, found {frame_lsn}"
        )));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(FrameEnd::Invalid(format!("unknown frame flags {flags:#x}")));
    }
    let payload = r.bytes(len).map_err(|_| FrameEnd::Short)?;
    let head = buf.get(0..4).ok_or(FrameEnd::Short)?;
    let rest = buf.get(8..FRAME_HEADER_LEN + len).ok_or(FrameEnd::Short)?;
    if crc32(&[&prev_crc.to_le_bytes(), head, rest]) != crc {
        return Err(FrameEnd::Invalid("frame checksum mismatch".into()));
    }
    Ok(Frame {
        lsn,
        flags,
        boot,
        payload,
        crc,
        len: frame_len(len),
    })
}

const OP_PUT: u8 = 1;
const OP_DEL: u8 = 2;
const OP_CLEAR: u8 = 3;
const OP_REGISTER: u8 = 4;
const OP_NEW_FILE: u8 = 5;
const OP_OBSOLETE_FILE: u8 = 6;

/// One change carried by a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set `key` to `value` in a tree.
    Put {
        tree: u8,
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Remove `key` from a tree.
    Del { tree: u8, key: &'a [u8] },
    /// Remove every key of a tree.
    Clear { tree: u8 },
    /// Set a register.
    Register { index: u8, value: u64 },
    /// A value file this transaction created (checked by recovery, made durable by the next
    /// checkpoint).
    NewFile { name: &'a str, size: u64, crc: u32 },
    /// A value file this transaction stopped referencing (deleted once that is durable).
    ObsoleteFile { name: &'a str },
}

impl Op<'_> {
    /// Appends the op's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Put { tree, key, value } => {
                out.extend_from_slice(&[OP_PUT, tree]);
                put_lp_bytes(out, key);
                put_lp_bytes(out, value);
            }
            Op::Del { tree, key } => {
                out.extend_from_slice(&[OP_DEL, tree]);
                put_lp_bytes(out, key);
            }
            Op::Clear { tree } => out.extend_from_slice(&[OP_CLEAR, tree]),
            Op::Register { index, value } => {
                out.extend_from_slice(&[OP_REGISTER, index]);
                put_varint(out, value);
            }
            Op::NewFile { name, size, crc } => {
                out.push(OP_NEW_FILE);
                put_lp_bytes(out, name.as_bytes());
                put_varint(out, size);
                out.extend_from_slice(&crc.to_le_bytes());
            }
            Op::ObsoleteFile { name } => {
                out.push(OP_OBSOLETE_FILE);
                put_lp_bytes(out, name.as_bytes());
            }
        }
    }

    /// An upper bound of the encoded length.
    pub fn encoded_len(&self) -> usize {
        match *self {
            Op::Put { key, value, .. } => 2 + 10 + key.len() + 10 + value.len(),
            Op::Del { key, .. } => 2 + 10 + key.len(),
            Op::Clear { .. } => 2,
            Op::Register { .. } => 12,
            Op::NewFile { name, .. } => 1 + 10 + name.len() + 10 + 4,
            Op::ObsoleteFile { name } => 1 + 10 + name.len(),
        }
    }
}

/// Iterates the ops of a frame payload, validating each.
pub struct Ops<'a> {
    r: Reader<'a>,
}

/// The ops of a payload.
pub fn ops(payload: &[u8]) -> Ops<'_> {
    Ops {
        r: Reader::new(payload),
    }
}

impl<'a> Ops<'a> {
    fn tree(&mut self) -> Result<u8, DecodeError> {
        let at = self.r.pos();
        let t = self.r.u8()?;
        if usize::from(t) >= NUM_TREES {
            return Err(DecodeError::new(at, format!("tree id {t} out of range")));
        }
        Ok(t)
    }

    fn name(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.r.pos();
        std::str::from_utf8(self.r.lp_bytes()?)
            .ok()
            .filter(|n| super::record::valid_file_name(n))
            .ok_or_else(|| DecodeError::new(at, "invalid value file name"))
    }

    fn next_op(&mut self) -> Result<Op<'a>, DecodeError> {
        let at = self.r.pos();
        Ok(match self.r.u8()? {
            OP_PUT => {
                let tree = self.tree()?;
                let key = self.r.lp_bytes()?;
                let value = self.r.lp_bytes()?;
                Op::Put { tree, key, value }
            }
            OP_DEL => {
                let tree = self.tree()?;
                let key = self.r.lp_bytes()?;
                Op::Del { tree, key }
            }
            OP_CLEAR => Op::Clear { tree: self.tree()? },
            OP_REGISTER => {
                let index = self.r.u8()?;
                if usize::from(index) >= NUM_REGISTERS {
                    return Err(DecodeError::new(at + 1, "register index out of range"));
                }
                Op::Register {
                    index,
                    value: self.r.varint()?,
                }
            }
            OP_NEW_FILE => {
                let name = self.name()?;
                let size = self.r.varint()?;
                let crc = self.r.u32()?;
                Op::NewFile { name, size, crc }
            }
            OP_OBSOLETE_FILE => Op::ObsoleteFile { name: self.name()? },
            other => return Err(DecodeError::new(at, format!("unknown op {other}"))),
        })
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<Op<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let item = self.next_op();
        if item.is_err() {
            // Stop after the first error.
            self.r.rest();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn checkpoint(segment: u64, start_lsn: u64) -> Checkpoint {
        Checkpoint {
            seq: 5,
            index_file: 2,
            index_len: 64,
            index_live: 0,
            log_segment: segment,
            log_start_lsn: start_lsn,
            registers: [0; NUM_REGISTERS],
            roots: [None; NUM_TREES],
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            segment_id: 3,
            start_lsn: 99,
            salt: 0xdead_beef,
        };
        let mut b = h.encode(&checkpoint(3, 99));
        let (back, crc) = SegmentHeader::decode(&b).expect("valid");
        assert_eq!(back, h);
        assert_eq!(crc, u32::from_le_bytes([b[60], b[61], b[62], b[63]]));
        assert_eq!(h.checkpoint(&b), Some(checkpoint(3, 99)));
        b[SEGMENT_FIXED_LEN + 20] ^= 1;
        assert_eq!(
            h.checkpoint(&b),
            None,
            "a damaged embedded checkpoint is ignored"
        );
        b[20] ^= 1;
        assert!(matches!(SegmentHeader::decode(&b), Err(Err(_))));
    }

    #[test]
    fn an_embedded_checkpoint_for_another_segment_is_ignored() {
        let h = SegmentHeader {
            segment_id: 4,
            start_lsn: 10,
            salt: 1,
        };
        assert_eq!(h.checkpoint(&h.encode(&checkpoint(3, 10))), None);
        assert_eq!(h.checkpoint(&h.encode(&checkpoint(4, 11))), None);
    }

    #[test]
    fn other_segment_versions_are_reported() {
        let mut b = SegmentHeader {
            segment_id: 1,
            start_lsn: 1,
            salt: 0,
        }
        .encode(&checkpoint(1, 1));
        b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32(&[&b[0..60]]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Err(Ok(FORMAT_VERSION + 1)));
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32(&[&b[0..60]]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&b),
            Err(Ok(1)),
            "format 1 is not read"
        );
    }

    #[test]
    fn frames_chain_and_round_trip() {
        let mut log = Vec::new();
        let c1 = encode_frame(&mut log, 7, 1, 0, 9, b"first");
        let l1 = log.len();
        let c2 = encode_frame(
            &mut log,
            c1,
            2,
            FLAG_FINAL | FLAG_FILES_SYNCED,
            9,
            b"second!",
        );
        let f1 = decode_frame(&log, 7, 1).expect("frame 1");
        assert_eq!((f1.payload, f1.crc, f1.len), (&b"first"[..], c1, l1));
        let f2 = decode_frame(&log[l1..], c1, 2).expect("frame 2");
        assert_eq!(
            (f2.payload, f2.flags, f2.boot, f2.crc),
            (&b"second!"[..], FLAG_FINAL | FLAG_FILES_SYNCED, 9, c2)
        );
        assert_eq!(log.len() % 8, 0);
        // Wrong chain seed, wrong LSN, or a flipped bit: not a frame.
        assert!(matches!(
            decode_frame(&log[l1..], 7, 2),
            Err(FrameEnd::Invalid(_))
        ));
        assert!(matches!(
            decode_frame(&log[l1..], c1, 3),
            Err(FrameEnd::Invalid(_))
        ));
        let mut bad = log.clone();
        bad[l1 + 26] ^= 0x40;
        assert!(matches!(
            decode_frame(&bad[l1..], c1, 2),
            Err(FrameEnd::Invalid(_))
        ));
        assert_eq!(decode_frame(&log[l1..l1 + 10], c1, 2), Err(FrameEnd::Short));
    }

    #[test]
    fn ops_round_trip() {
        let all = [
            Op::Put {
                tree: 0,
                key: b"k",
                value: b"v",
            },
            Op::Del { tree: 3, key: b"" },
            Op::Clear { tree: 7 },
            Op::Register {
                index: 2,
                value: u64::MAX,
            },
            Op::NewFile {
                name: "00/11/2233445566778899aabbccddeeff.val",
                size: 5,
                crc: 9,
            },
            Op::ObsoleteFile {
                name: "00/11/2233445566778899aabbccddeeff.val",
            },
        ];
        let mut payload = Vec::new();
        for op in &all {
            let before = payload.len();
            op.encode(&mut payload);
            assert!(payload.len() - before <= op.encoded_len());
        }
        let back: Vec<Op<'_>> = ops(&payload).collect::<Result<_, _>>().expect("valid");
        assert_eq!(back, all);
    }

    #[test]
    fn bad_ops_are_errors() {
        assert!(ops(&[OP_PUT, NUM_TREES as u8, 0, 0])
            .next()
            .expect("one")
            .is_err());
        assert!(ops(&[99]).next().expect("one").is_err());
        assert!(ops(&[OP_REGISTER, NUM_REGISTERS as u8, 0])
            .next()
            .expect("one")
            .is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96), seed in any::<u32>(), lsn in any::<u64>()) {
            let _ = decode_frame(&bytes, seed, lsn);
            let _ = SegmentHeader::decode(&bytes);
            for op in ops(&bytes) {
                let _ = op;
            }
        }
    }
}
