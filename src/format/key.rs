//! Keys: an order-preserving ("memcomparable") and canonical byte encoding.
//!
//! Equal keys give equal bytes, and comparing encodings with `memcmp` compares keys:
//! numbers (integers and floats together, numerically; `1` and `1.0` are one key) sort before
//! strings, strings before byte strings, and those before composite keys (tuples, structs,
//! anything else `Serialize`). NaN is rejected. See `format-spec/README.md`, "Keys".

use super::{DecodeError, Reader};

/// First byte of an encoded number key.
pub const TAG_NUMBER: u8 = 0x10;
/// First byte of an encoded string key (UTF-8 follows, unescaped).
pub const TAG_STR: u8 = 0x20;
/// First byte of an encoded byte-string key (raw bytes follow).
pub const TAG_BYTES: u8 = 0x30;
/// First byte of an encoded composite key (one composite element follows).
pub const TAG_COMPOSITE: u8 = 0x40;
/// First byte of a Python object key in the plain encoding (a plain value follows: a
/// tuple, list, None, bool or big integer key written by the Python package).
pub const TAG_PY_PLAIN: u8 = 0x50;
/// First byte of a pickled Python object key: the pickle, then a 32-byte HMAC-SHA256 of it.
pub const TAG_PY_PICKLE: u8 = 0x60;
/// First byte of a key that a custom Python `Disk` made (`raw=False`): its bytes follow.
pub const TAG_PY_DISK: u8 = 0x70;
/// First byte of the stand-in for a Python key whose encoding is longer than
/// [`MAX_KEY_LEN`]: the SHA-256 of that encoding follows (the value carries the key).
pub const TAG_PY_DIGEST: u8 = 0x58;
/// Length of the MAC that ends a pickled key.
pub const PICKLE_MAC_LEN: usize = 32;

/// The largest encoded key accepted.
pub const MAX_KEY_LEN: usize = 1 << 20;

// Composite element tags.
pub(crate) const E_UNIT: u8 = 0x01;
pub(crate) const E_NONE: u8 = 0x02;
pub(crate) const E_SOME: u8 = 0x03;
pub(crate) const E_FALSE: u8 = 0x04;
pub(crate) const E_TRUE: u8 = 0x05;
pub(crate) const E_NUMBER: u8 = 0x10;
pub(crate) const E_STR: u8 = 0x20;
pub(crate) const E_BYTES: u8 = 0x30;
pub(crate) const E_SEQ: u8 = 0x40;
pub(crate) const E_MAP: u8 = 0x50;
pub(crate) const E_ENUM: u8 = 0x60;
/// In sequences and maps: another item follows (`0x01`) or the container ends (`0x00`).
pub(crate) const MORE: u8 = 0x01;
pub(crate) const END: u8 = 0x00;

// Number classes (the first byte of a number's encoding).
const N_NEG_INF: u8 = 0x01;
const N_NEG_HUGE: u8 = 0x02;
const N_ZERO: u8 = 0x13;
const N_POS_HUGE: u8 = 0x24;
const N_POS_INF: u8 = 0x25;
// After the integer part: no fraction (0x00) or a fraction (0x01 + 8 bytes).
const F_NONE: u8 = 0x00;
const F_SOME: u8 = 0x01;

/// 2^127 as an `f64`: floats at or beyond it in magnitude are "huge" (always integral, and
/// outside the exact `i128` range).
const TWO_POW_127: f64 = 1.7014118346046923e38;

/// A number as keys see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// An exact integer.
    Int(i128),
    /// A float that is not an integer in `i128` range (or any float, before canonicalizing).
    Float(f64),
}

/// Appends the canonical encoding of a number. Fails on NaN.
pub fn put_number(out: &mut Vec<u8>, n: Num) -> Result<(), &'static str> {
    match n {
        Num::Int(i) => {
            put_int_part(out, i);
            out.push(F_NONE);
        }
        Num::Float(f) => {
            if f.is_nan() {
                return Err("NaN cannot be a key");
            }
            if f == f64::NEG_INFINITY {
                out.push(N_NEG_INF);
            } else if f == f64::INFINITY {
                out.push(N_POS_INF);
            } else if f < -TWO_POW_127 {
                out.push(N_NEG_HUGE);
                out.extend_from_slice(&super::f64_order_bits(f).to_be_bytes());
            } else if f >= TWO_POW_127 {
                out.push(N_POS_HUGE);
                out.extend_from_slice(&super::f64_order_bits(f).to_be_bytes());
            } else {
                let whole = f.floor();
                // In range and integral, so the conversion is exact.
                let int = whole as i128;
                put_int_part(out, int);
                if f == whole {
                    out.push(F_NONE);
                } else {
                    out.push(F_SOME);
                    // The distance to the integer nearer zero: |x| - floor(|x|), which is
                    // exact (x - floor(x) is not for tiny negatives: -1e-308 + 1 rounds to 1).
                    // For negatives a larger distance means a smaller number, so its bits are
                    // complemented.
                    let bits = if f > 0.0 {
                        (f - whole).to_bits()
                    } else {
                        !(f.trunc() - f).to_bits()
                    };
                    out.extend_from_slice(&bits.to_be_bytes());
                }
            }
        }
    }
    Ok(())
}

fn byte_len(m: u128) -> usize {
    (128 - m.leading_zeros() as usize).div_ceil(8)
}

fn put_int_part(out: &mut Vec<u8>, i: i128) {
    if i == 0 {
        out.push(N_ZERO);
        return;
    }
    let m = i.unsigned_abs();
    let n = byte_len(m);
    let be = if i > 0 {
        m.to_be_bytes()
    } else {
        (!m).to_be_bytes()
    };
    out.push(if i > 0 {
        N_ZERO + n as u8
    } else {
        N_ZERO - n as u8
    });
    out.extend_from_slice(&be[16 - n..]);
}

/// Reads a number written by [`put_number`], rejecting non-canonical forms.
pub fn read_number(r: &mut Reader<'_>) -> Result<Num, DecodeError> {
    let at = r.pos();
    let class = r.u8()?;
    let int = match class {
        N_NEG_INF => return Ok(Num::Float(f64::NEG_INFINITY)),
        N_POS_INF => return Ok(Num::Float(f64::INFINITY)),
        N_NEG_HUGE | N_POS_HUGE => {
            let f = super::f64_from_order_bits(u64::from_be_bytes(r.array()?));
            let ok = if class == N_NEG_HUGE {
                f < -TWO_POW_127 && f.is_finite()
            } else {
                f >= TWO_POW_127 && f.is_finite()
            };
            if !ok {
                return Err(DecodeError::new(at, "non-canonical huge number"));
            }
            return Ok(Num::Float(f));
        }
        N_ZERO => 0i128,
        c if (N_ZERO - 16..N_ZERO).contains(&c) => {
            let n = usize::from(N_ZERO - c);
            let m = !read_be(r, n)? & mask(n);
            if byte_len(m) != n {
                return Err(DecodeError::new(at, "non-canonical negative integer"));
            }
            if m == 1u128 << 127 {
                i128::MIN
            } else if m > i128::MAX as u128 {
                return Err(DecodeError::new(at, "integer out of range"));
            } else {
                -(m as i128)
            }
        }
        c if (N_ZERO + 1..=N_ZERO + 16).contains(&c) => {
            let n = usize::from(c - N_ZERO);
            let m = read_be(r, n)?;
            if byte_len(m) != n || m > i128::MAX as u128 {
                return Err(DecodeError::new(at, "non-canonical positive integer"));
            }
            m as i128
        }
        _ => {
            return Err(DecodeError::new(
                at,
                format!("unknown number class {class:#x}"),
            ))
        }
    };
    match r.u8()? {
        F_NONE => Ok(Num::Int(int)),
        F_SOME => {
            let bits = u64::from_be_bytes(r.array()?);
            let frac = f64::from_bits(if int < 0 { !bits } else { bits });
            // Non-integral floats are below 2^52 in magnitude, so these sums are exact.
            if !(frac > 0.0 && frac < 1.0) || int.unsigned_abs() > (1u128 << 53) {
                return Err(DecodeError::new(at, "invalid fraction"));
            }
            let x = if int < 0 {
                (int + 1) as f64 - frac
            } else {
                int as f64 + frac
            };
            Ok(Num::Float(x))
        }
        other => Err(DecodeError::new(
            r.pos() - 1,
            format!("bad number end marker {other:#x}"),
        )),
    }
}

fn mask(n: usize) -> u128 {
    if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * n)) - 1
    }
}

fn read_be(r: &mut Reader<'_>, n: usize) -> Result<u128, DecodeError> {
    let b = r.bytes(n)?;
    Ok(b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x)))
}

/// Appends `b` escaped so that it is self-delimiting and order-preserving inside a composite:
/// `0x00` becomes `0x00 0xff`, and `0x00 0x00` ends it.
pub(crate) fn put_escaped(out: &mut Vec<u8>, b: &[u8]) {
    for &x in b {
        out.push(x);
        if x == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Reads an escaped byte string written by [`put_escaped`].
pub(crate) fn read_escaped(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    loop {
        let x = r.u8()?;
        if x != 0 {
            out.push(x);
            continue;
        }
        match r.u8()? {
            0 => return Ok(out),
            0xff => out.push(0),
            other => return Err(r.err(format!("bad escape {other:#x}"))),
        }
    }
}

/// Skips one composite element, checking its structure; `depth` bounds nesting.
pub(crate) fn skip_element(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > 128 {
        return Err(r.err("key nests too deeply"));
    }
    match r.u8()? {
        E_UNIT | E_NONE | E_FALSE | E_TRUE => Ok(()),
        E_SOME => skip_element(r, depth + 1),
        E_NUMBER => read_number(r).map(|_| ()),
        E_STR | E_BYTES => read_escaped(r).map(|_| ()),
        E_SEQ => loop {
            match r.u8()? {
                END => return Ok(()),
                MORE => skip_element(r, depth + 1)?,
                x => return Err(r.err(format!("bad sequence marker {x:#x}"))),
            }
        },
        E_MAP => loop {
            match r.u8()? {
                END => return Ok(()),
                MORE => {
                    skip_element(r, depth + 1)?;
                    skip_element(r, depth + 1)?;
                }
                x => return Err(r.err(format!("bad map marker {x:#x}"))),
            }
        },
        E_ENUM => {
            r.bytes(4)?;
            skip_element(r, depth + 1)
        }
        t => Err(r.err(format!("unknown element tag {t:#x}"))),
    }
}

/// Checks that `key` is a well-formed encoded key.
pub fn validate(key: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(key);
    match r.u8()? {
        TAG_NUMBER => {
            read_number(&mut r)?;
        }
        TAG_STR => {
            std::str::from_utf8(r.rest())
                .map_err(|e| DecodeError::new(1 + e.valid_up_to(), "string key is not UTF-8"))?;
        }
        TAG_BYTES => {
            r.rest();
        }
        TAG_COMPOSITE => skip_element(&mut r, 0)?,
        TAG_PY_PLAIN => {
            super::plain::validate(r.rest())
                .map_err(|e| DecodeError::new(1 + e.offset, e.detail))?;
        }
        TAG_PY_PICKLE => {
            if r.rest().len() <= PICKLE_MAC_LEN {
                return Err(DecodeError::new(1, "pickled key shorter than its MAC"));
            }
        }
        TAG_PY_DISK => {
            r.rest();
        }
        TAG_PY_DIGEST => {
            if r.rest().len() != 32 {
                return Err(DecodeError::new(1, "a key digest is 32 bytes"));
            }
        }
        t => return Err(DecodeError::new(0, format!("unknown key tag {t:#x}"))),
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after key"));
    }
    Ok(())
}

/// The elements of an encoded sequence element (`E_SEQ ... END`), or `None` if `elem` is not
/// a sequence.
pub(crate) fn split_seq(elem: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader::new(elem);
    if r.u8().ok()? != E_SEQ {
        return None;
    }
    let mut items = Vec::new();
    loop {
        match r.u8().ok()? {
            END => break,
            MORE => {
                let start = r.pos();
                skip_element(&mut r, 1).ok()?;
                items.push(elem.get(start..r.pos())?);
            }
            _ => return None,
        }
    }
    r.is_empty().then_some(items)
}

/// Encodes an integer key.
pub fn int_key(i: i128) -> Vec<u8> {
    let mut out = vec![TAG_NUMBER];
    put_int_part(&mut out, i);
    out.push(F_NONE);
    out
}

/// Encodes a string key.
pub fn str_key(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + s.len());
    out.push(TAG_STR);
    out.extend_from_slice(s.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num_key(n: Num) -> Vec<u8> {
        let mut out = vec![TAG_NUMBER];
        put_number(&mut out, n).expect("not NaN");
        out
    }

    fn value(n: Num) -> f64 {
        match n {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    #[test]
    fn one_and_one_point_zero_are_the_same_key() {
        assert_eq!(num_key(Num::Int(1)), num_key(Num::Float(1.0)));
        assert_eq!(num_key(Num::Int(0)), num_key(Num::Float(-0.0)));
        assert_eq!(
            num_key(Num::Int(-(1 << 70))),
            num_key(Num::Float(-(2f64.powi(70))))
        );
        assert_ne!(num_key(Num::Int(1)), num_key(Num::Float(1.5)));
    }

    #[test]
    fn nan_is_rejected() {
        assert!(put_number(&mut Vec::new(), Num::Float(f64::NAN)).is_err());
    }

    #[test]
    fn numbers_sort_numerically_across_ints_and_floats() {
        let seq = [
            Num::Float(f64::NEG_INFINITY),
            Num::Float(-1e300),
            Num::Int(i128::MIN),
            Num::Int(-(1 << 64)),
            Num::Int(-257),
            Num::Int(-256),
            Num::Float(-255.5),
            Num::Int(-2),
            Num::Float(-1.5),
            Num::Int(-1),
            Num::Float(-0.25),
            Num::Int(0),
            Num::Float(1e-300),
            Num::Float(0.5),
            Num::Int(1),
            Num::Float(1.5),
            Num::Int(2),
            Num::Int(255),
            Num::Int(256),
            Num::Int(i64::MAX as i128),
            Num::Float(9.3e18),
            Num::Int(u64::MAX as i128),
            Num::Int(i128::MAX),
            Num::Float(1e300),
            Num::Float(f64::INFINITY),
        ];
        for w in seq.windows(2) {
            assert!(num_key(w[0]) < num_key(w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        for n in seq {
            let k = num_key(n);
            let mut r = Reader::new(&k[1..]);
            let back = read_number(&mut r).expect("decodes");
            assert!(r.is_empty());
            assert_eq!(num_key(back), k, "{n:?}");
        }
    }

    proptest! {
        #[test]
        fn float_order_is_preserved(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let (ka, kb) = (num_key(Num::Float(a)), num_key(Num::Float(b)));
            prop_assert_eq!(a.partial_cmp(&b), Some(ka.cmp(&kb)));
        }

        #[test]
        fn int_and_float_order_agree(i in any::<i64>(), f in any::<f64>()) {
            prop_assume!(!f.is_nan());
            let (ki, kf) = (num_key(Num::Int(i128::from(i))), num_key(Num::Float(f)));
            // Compare exactly: an i64 and a float, via i128 when the float is integral.
            let expected = if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.6e38 {
                i128::from(i).cmp(&(f as i128))
            } else {
                (i as f64).partial_cmp(&f).unwrap_or(std::cmp::Ordering::Equal)
            };
            if expected != std::cmp::Ordering::Equal {
                prop_assert_eq!(ki.cmp(&kf), expected);
            }
        }

        #[test]
        fn ints_round_trip_and_sort(a in any::<i128>(), b in any::<i128>()) {
            let (ka, kb) = (num_key(Num::Int(a)), num_key(Num::Int(b)));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            let back = read_number(&mut Reader::new(&ka[1..])).expect("decodes");
            prop_assert_eq!(back, Num::Int(a));
        }

        #[test]
        fn floats_round_trip(f in any::<f64>()) {
            prop_assume!(!f.is_nan());
            let k = num_key(Num::Float(f));
            let back = read_number(&mut Reader::new(&k[1..])).expect("decodes");
            prop_assert_eq!(value(back), f);
        }

        #[test]
        fn escaped_strings_keep_order(a in proptest::collection::vec(any::<u8>(), 0..12),
                                      b in proptest::collection::vec(any::<u8>(), 0..12)) {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            put_escaped(&mut ea, &a);
            put_escaped(&mut eb, &b);
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(read_escaped(&mut Reader::new(&ea)).expect("decodes"), a);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = validate(&bytes);
            let _ = read_number(&mut Reader::new(&bytes));
        }
    }
}
