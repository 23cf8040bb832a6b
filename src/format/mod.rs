//! Bytes on disk: encoders and decoders for every structure the engine writes.
//!
//! `format-spec/README.md` is the normative description; these modules follow it. Decoders
//! take untrusted bytes and never panic: every read goes through [`Reader`], which checks
//! bounds and reports what was wrong where.

pub mod frame;
pub mod key;
mod key_de;
mod key_ser;
pub mod meta;
pub mod node;
pub mod plain;
pub mod record;
pub mod value;

pub use key_de::{render as key_de_render, TopDe as KeyDeserializer};
pub use key_ser::{encode as encode_key, encode_element, KeyError, RAW_KEY};

/// The on-disk format version this build writes and reads. Version 1 (before the
/// checkpoint copy in segment headers, boot marks in frames and byte-range directory locks)
/// is refused: its handles would not exclude this version's.
pub const FORMAT_VERSION: u32 = 2;

/// A decoding failure: what was wrong and at which offset of the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the problem inside the decoded buffer.
    pub offset: usize,
    /// What is wrong.
    pub detail: String,
}

impl DecodeError {
    /// A failure at `offset`.
    pub fn new(offset: usize, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            offset,
            detail: detail.into(),
        }
    }
}

/// A bounds-checked cursor over untrusted bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(self.pos, detail)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("length overflows"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err(format!("needs {n} bytes, {} left", self.remaining())))?;
        self.pos = end;
        Ok(out)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// An unsigned LEB128 integer of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut out: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::new(start, "varint overflows 64 bits"));
            }
            out |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(DecodeError::new(start, "varint longer than 10 bytes"))
    }

    /// A varint length that must fit in what is left of the buffer.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining())
            .ok_or_else(|| {
                DecodeError::new(
                    at,
                    format!("length {n} exceeds the {} bytes left", self.remaining()),
                )
            })
    }

    /// A varint-length-prefixed byte string.
    pub fn lp_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.bytes(n)
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn put_lp_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// CRC-32 (IEEE) of several byte strings, as if concatenated.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Maps an `f64` to a `u64` whose unsigned order is the float's numeric order
/// (for finite values and infinities; NaN is never stored).
pub fn f64_order_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The inverse of [`f64_order_bits`].
pub fn f64_from_order_bits(b: u64) -> f64 {
    if b >> 63 == 1 {
        f64::from_bits(b & !(1 << 63))
    } else {
        f64::from_bits(!b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            prop_assert_eq!(Reader::new(&out).varint(), Ok(v));
        }

        #[test]
        fn f64_order_bits_preserve_order(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            if a < b {
                prop_assert!(f64_order_bits(a) < f64_order_bits(b));
            }
            prop_assert_eq!(f64_from_order_bits(f64_order_bits(a)).to_bits(), a.to_bits());
        }

        #[test]
        fn reader_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint();
            let _ = r.lp_bytes();
            let _ = r.u64();
            let _ = r.len();
        }
    }

    #[test]
    fn overlong_varints_are_errors() {
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn lengths_must_fit_the_buffer() {
        let mut r = Reader::new(&[0x05, 1, 2]);
        assert!(r.lp_bytes().is_err());
    }
}
