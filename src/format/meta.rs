//! The meta file: a header, two checkpoint slots, and a live page of shared counters.

use super::frame::{NUM_REGISTERS, NUM_TREES};
use super::node::NodeRef;
use super::{crc32, DecodeError, Reader, FORMAT_VERSION};

pub const META_MAGIC: [u8; 8] = *b"DCRSMETA";
pub const META_HEADER_LEN: usize = 64;
/// Offsets of the two checkpoint slots.
pub const SLOT_OFFSETS: [u64; 2] = [512, 1024];
pub const SLOT_LEN: usize = 512;
/// The live page: 64-bit words every process reads and updates through atomics.
pub const LIVE_OFFSET: u64 = 4096;
pub const META_FILE_LEN: u64 = 8192;

/// Live-page word: LSN of the last committed (published) frame.
pub const LIVE_PUBLISHED_LSN: usize = 0;
/// Live-page word: sequence number of the newest checkpoint.
pub const LIVE_CHECKPOINT_SEQ: usize = 8;
/// Live-page word: cache hits (statistics).
pub const LIVE_HITS: usize = 16;
/// Live-page word: cache misses (statistics).
pub const LIVE_MISSES: usize = 24;
/// Live-page word: nonzero while a checkpoint is being published.
pub const LIVE_CHECKPOINT_BUSY: usize = 32;
/// Live-page word: the writer lock (0: free; else the holder's id).
pub const LIVE_WRITER: usize = 48;

/// The meta file header.
pub fn encode_header() -> [u8; META_HEADER_LEN] {
    let mut b = [0u8; META_HEADER_LEN];
    b[0..8].copy_from_slice(&META_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32(&[&b[0..60]]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks the meta header: `Ok(())`, or `Err(Ok(version))` for a newer version.
pub fn decode_header(b: &[u8]) -> Result<(), Result<u32, DecodeError>> {
    let mut r = Reader::new(b);
    if r.array::<8>().map_err(Err)? != META_MAGIC {
        return Err(Err(DecodeError::new(
            0,
            "not a cache meta file (bad magic)",
        )));
    }
    let version = r.u32().map_err(Err)?;
    let body = b
        .get(0..60)
        .ok_or_else(|| Err(DecodeError::new(0, "short header")))?;
    if crc32(&[body]) != Reader::at(b, 60).u32().map_err(Err)? {
        return Err(Err(DecodeError::new(60, "meta header checksum mismatch")));
    }
    if version != FORMAT_VERSION {
        return Err(Ok(version));
    }
    Ok(())
}

/// The root of a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    pub node: NodeRef,
    pub level: u8,
}

/// A checkpoint: the state of every tree and counter as of a log position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Increases by one per checkpoint; the valid slot with the higher one wins.
    pub seq: u64,
    /// Which `index/<id>.idx` holds the trees.
    pub index_file: u64,
    /// Bytes of that file that are published (nothing past it is referenced).
    pub index_len: u64,
    /// Bytes of it reachable from the roots.
    pub index_live: u64,
    /// The log segment that continues from this checkpoint.
    pub log_segment: u64,
    /// The LSN of that segment's first frame.
    pub log_start_lsn: u64,
    /// Register values as of this checkpoint.
    pub registers: [u64; NUM_REGISTERS],
    /// Tree roots (`None` for an empty tree).
    pub roots: [Option<Root>; NUM_TREES],
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        let mut w = 0;
        let mut put = |bytes: &[u8]| {
            b[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&self.seq.to_le_bytes());
        put(&FORMAT_VERSION.to_le_bytes());
        put(&[0; 4]);
        put(&self.index_file.to_le_bytes());
        put(&self.index_len.to_le_bytes());
        put(&self.index_live.to_le_bytes());
        put(&self.log_segment.to_le_bytes());
        put(&self.log_start_lsn.to_le_bytes());
        for r in &self.registers {
            put(&r.to_le_bytes());
        }
        for root in &self.roots {
            match root {
                Some(r) => {
                    put(&r.node.off.to_le_bytes());
                    put(&r.node.len.to_le_bytes());
                    put(&[1, r.level, 0, 0]);
                }
                None => put(&[0; 16]),
            }
        }
        let crc = crc32(&[&b[..SLOT_LEN - 4]]);
        b[SLOT_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a slot. An all-zero slot (never written) and a torn one are errors; a newer
    /// version is `Err(Ok(version))`.
    pub fn decode(b: &[u8]) -> Result<Checkpoint, Result<u32, DecodeError>> {
        let body = b
            .get(..SLOT_LEN - 4)
            .ok_or_else(|| Err(DecodeError::new(0, "short slot")))?;
        let stored = Reader::at(b, SLOT_LEN - 4).u32().map_err(Err)?;
        if crc32(&[body]) != stored {
            return Err(Err(DecodeError::new(
                SLOT_LEN - 4,
                "checkpoint slot checksum mismatch",
            )));
        }
        let mut r = Reader::new(b);
        let seq = r.u64().map_err(Err)?;
        let version = r.u32().map_err(Err)?;
        if version != FORMAT_VERSION {
            return Err(Ok(version));
        }
        if seq == 0 {
            return Err(Err(DecodeError::new(0, "empty checkpoint slot")));
        }
        let _ = r.u32().map_err(Err)?;
        let index_file = r.u64().map_err(Err)?;
        let index_len = r.u64().map_err(Err)?;
        let index_live = r.u64().map_err(Err)?;
        let log_segment = r.u64().map_err(Err)?;
        let log_start_lsn = r.u64().map_err(Err)?;
        let mut registers = [0u64; NUM_REGISTERS];
        for reg in &mut registers {
            *reg = r.u64().map_err(Err)?;
        }
        let mut roots = [None; NUM_TREES];
        for root in &mut roots {
            let at = r.pos();
            let off = r.u64().map_err(Err)?;
            let len = r.u32().map_err(Err)?;
            let [present, level, _, _] = r.array::<4>().map_err(Err)?;
            *root = match present {
                0 => None,
                1 => {
                    if off
                        .checked_add(u64::from(len))
                        .is_none_or(|end| end > index_len)
                    {
                        return Err(Err(DecodeError::new(
                            at,
                            "root outside the published index",
                        )));
                    }
                    Some(Root {
                        node: NodeRef { off, len },
                        level,
                    })
                }
                _ => return Err(Err(DecodeError::new(at + 12, "bad root marker"))),
            };
        }
        Ok(Checkpoint {
            seq,
            index_file,
            index_len,
            index_live,
            log_segment,
            log_start_lsn,
            registers,
            roots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Checkpoint {
        let mut roots = [None; NUM_TREES];
        roots[0] = Some(Root {
            node: NodeRef { off: 64, len: 100 },
            level: 2,
        });
        Checkpoint {
            seq: 5,
            index_file: 2,
            index_len: 4096,
            index_live: 1000,
            log_segment: 9,
            log_start_lsn: 1234,
            registers: [1, 2, 3, 0, 0, 0, 0, 7],
            roots,
        }
    }

    #[test]
    fn slots_round_trip() {
        let c = sample();
        assert_eq!(Checkpoint::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn torn_or_empty_slots_are_rejected() {
        let c = sample();
        let mut b = c.encode();
        b[40] ^= 0xff;
        assert!(matches!(Checkpoint::decode(&b), Err(Err(_))));
        assert!(Checkpoint::decode(&[0u8; SLOT_LEN]).is_err());
        let mut c2 = c;
        c2.index_len = 10;
        assert!(
            matches!(Checkpoint::decode(&c2.encode()), Err(Err(_))),
            "root past the index end"
        );
    }

    #[test]
    fn header_checks_magic_and_version() {
        assert_eq!(decode_header(&encode_header()), Ok(()));
        let mut b = encode_header();
        b[0] = b'X';
        assert!(matches!(decode_header(&b), Err(Err(_))));
    }

    proptest! {
        #[test]
        fn garbage_slots_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Checkpoint::decode(&bytes);
            let _ = decode_header(&bytes);
        }
    }
}
