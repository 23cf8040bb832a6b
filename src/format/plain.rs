//! The plain encoding: Python's plain values (None, bool, int of any size, float, str,
//! bytes, and tuple/list/dict/set/frozenset nestings of them) as bytes, for the Python
//! package's values and object keys. Decoding it runs no code, whatever the bytes are: it
//! only builds these values, within the depth and size limits below, and never panics.
//! See `format-spec/README.md`, section 17.

use super::{put_varint, DecodeError, Reader};

/// Element tags.
const T_NONE: u8 = 0x00;
const T_FALSE: u8 = 0x01;
const T_TRUE: u8 = 0x02;
const T_INT: u8 = 0x03;
const T_BIGINT: u8 = 0x04;
const T_FLOAT: u8 = 0x05;
const T_STR: u8 = 0x06;
const T_BYTES: u8 = 0x07;
const T_TUPLE: u8 = 0x08;
const T_LIST: u8 = 0x09;
const T_DICT: u8 = 0x0a;
const T_SET: u8 = 0x0b;
const T_FROZENSET: u8 = 0x0c;

/// Containers nest at most this deep.
pub const MAX_DEPTH: usize = 64;

/// A plain value.
#[derive(Clone, Debug, PartialEq)]
pub enum PlainValue {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer within 64 bits.
    Int(i64),
    /// An integer beyond 64 bits: two's complement, little-endian, minimal.
    BigInt(Vec<u8>),
    /// A float (NaN included).
    Float(f64),
    /// A string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<PlainValue>),
    /// A list.
    List(Vec<PlainValue>),
    /// A dict, in insertion order.
    Dict(Vec<(PlainValue, PlainValue)>),
    /// A set.
    Set(Vec<PlainValue>),
    /// A frozenset.
    FrozenSet(Vec<PlainValue>),
}

/// Writers of the plain encoding (the Python package writes it straight from Python
/// objects; this one is for Rust code and tests).
pub struct PlainWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> PlainWriter<'a> {
    /// Appends to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> PlainWriter<'a> {
        PlainWriter { out }
    }

    /// `None`.
    pub fn none(&mut self) {
        self.out.push(T_NONE);
    }

    /// A bool.
    pub fn bool(&mut self, b: bool) {
        self.out.push(if b { T_TRUE } else { T_FALSE });
    }

    /// A 64-bit integer.
    pub fn int(&mut self, i: i64) {
        self.out.push(T_INT);
        self.out.extend_from_slice(&i.to_le_bytes());
    }

    /// A larger integer: its minimal two's-complement little-endian bytes.
    pub fn big_int(&mut self, le: &[u8]) {
        self.out.push(T_BIGINT);
        put_varint(self.out, le.len() as u64);
        self.out.extend_from_slice(le);
    }

    /// A float.
    pub fn float(&mut self, f: f64) {
        self.out.push(T_FLOAT);
        self.out.extend_from_slice(&f.to_le_bytes());
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        self.out.push(T_STR);
        put_varint(self.out, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.push(T_BYTES);
        put_varint(self.out, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// The start of a container of `n` items (dicts: `n` pairs); the items follow.
    pub fn container(&mut self, kind: Container, n: usize) {
        self.out.push(match kind {
            Container::Tuple => T_TUPLE,
            Container::List => T_LIST,
            Container::Dict => T_DICT,
            Container::Set => T_SET,
            Container::FrozenSet => T_FROZENSET,
        });
        put_varint(self.out, n as u64);
    }

    /// A whole value.
    pub fn value(&mut self, v: &PlainValue) {
        match v {
            PlainValue::None => self.none(),
            PlainValue::Bool(b) => self.bool(*b),
            PlainValue::Int(i) => self.int(*i),
            PlainValue::BigInt(b) => self.big_int(b),
            PlainValue::Float(f) => self.float(*f),
            PlainValue::Str(s) => self.str(s),
            PlainValue::Bytes(b) => self.bytes(b),
            PlainValue::Tuple(items) => self.items(Container::Tuple, items),
            PlainValue::List(items) => self.items(Container::List, items),
            PlainValue::Set(items) => self.items(Container::Set, items),
            PlainValue::FrozenSet(items) => self.items(Container::FrozenSet, items),
            PlainValue::Dict(pairs) => {
                self.container(Container::Dict, pairs.len());
                for (k, v) in pairs {
                    self.value(k);
                    self.value(v);
                }
            }
        }
    }

    fn items(&mut self, kind: Container, items: &[PlainValue]) {
        self.container(kind, items.len());
        for i in items {
            self.value(i);
        }
    }
}

/// The container kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `tuple`.
    Tuple,
    /// `list`.
    List,
    /// `dict` (items are key, value pairs).
    Dict,
    /// `set`.
    Set,
    /// `frozenset`.
    FrozenSet,
}

/// One decoded step of the plain encoding, for decoders that build their own values (the
/// Python package builds Python objects without an intermediate tree).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Token<'a> {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A larger integer, two's complement little-endian (never empty, minimal).
    BigInt(&'a [u8]),
    /// A float.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A container of this many items (pairs for a dict), which follow.
    Container(Container, usize),
}

/// Reads tokens of the plain encoding, checking each as it goes.
pub struct PlainReader<'a> {
    r: Reader<'a>,
}

impl<'a> PlainReader<'a> {
    /// Reads `bytes`.
    pub fn new(bytes: &'a [u8]) -> PlainReader<'a> {
        PlainReader {
            r: Reader::new(bytes),
        }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    fn len(&mut self, per_item: usize) -> Result<usize, DecodeError> {
        let at = self.r.pos();
        let n = self.r.varint()?;
        // Each item takes at least `per_item` bytes, so a count beyond what is left is
        // damage (and never makes a decoder allocate for it).
        let left = self.r.remaining() as u64;
        if n.saturating_mul(per_item as u64) > left {
            return Err(DecodeError::new(at, "count beyond the end of the value"));
        }
        usize::try_from(n).map_err(|_| DecodeError::new(at, "count too large"))
    }

    /// The next token.
    pub fn token(&mut self) -> Result<Token<'a>, DecodeError> {
        let at = self.r.pos();
        Ok(match self.r.u8()? {
            T_NONE => Token::None,
            T_FALSE => Token::Bool(false),
            T_TRUE => Token::Bool(true),
            T_INT => Token::Int(i64::from_le_bytes(self.r.array()?)),
            T_BIGINT => {
                let n = self.len(1)?;
                let b = self.r.bytes(n)?;
                if !minimal_big_int(b) {
                    return Err(DecodeError::new(at, "non-minimal big integer"));
                }
                Token::BigInt(b)
            }
            T_FLOAT => Token::Float(f64::from_le_bytes(self.r.array()?)),
            T_STR => {
                let n = self.len(1)?;
                let b = self.r.bytes(n)?;
                Token::Str(
                    std::str::from_utf8(b)
                        .map_err(|_| DecodeError::new(at, "string is not UTF-8"))?,
                )
            }
            T_BYTES => {
                let n = self.len(1)?;
                Token::Bytes(self.r.bytes(n)?)
            }
            T_TUPLE => Token::Container(Container::Tuple, self.len(1)?),
            T_LIST => Token::Container(Container::List, self.len(1)?),
            T_DICT => Token::Container(Container::Dict, self.len(2)?),
            T_SET => Token::Container(Container::Set, self.len(1)?),
            T_FROZENSET => Token::Container(Container::FrozenSet, self.len(1)?),
            t => return Err(DecodeError::new(at, format!("unknown plain tag {t:#x}"))),
        })
    }
}

/// Whether two's-complement bytes are the minimal form of a number beyond 64 bits.
fn minimal_big_int(le: &[u8]) -> bool {
    let (Some(&last), n) = (le.last(), le.len()) else {
        return false;
    };
    if n <= 8 {
        return false;
    }
    let prev_sign = le.get(n - 2).map_or(0, |b| b & 0x80);
    // A top byte of 0x00 (or 0xff) is needed only if the byte below it has the other sign.
    !((last == 0x00 && prev_sign == 0) || (last == 0xff && prev_sign != 0))
}

/// Decodes a whole plain value (the bytes must hold exactly one).
pub fn decode(bytes: &[u8]) -> Result<PlainValue, DecodeError> {
    let mut r = PlainReader::new(bytes);
    let v = read_value(&mut r, 0)?;
    if !r.is_empty() {
        return Err(r.r.err("trailing bytes after a plain value"));
    }
    Ok(v)
}

/// Checks that `bytes` hold exactly one well-formed plain value, without building it.
pub fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut r = PlainReader::new(bytes);
    skip_value(&mut r, 0)?;
    if !r.is_empty() {
        return Err(r.r.err("trailing bytes after a plain value"));
    }
    Ok(())
}

fn skip_value(r: &mut PlainReader<'_>, depth: usize) -> Result<(), DecodeError> {
    if let Token::Container(kind, n) = r.token()? {
        if depth >= MAX_DEPTH {
            return Err(r.r.err("plain value nests too deeply"));
        }
        let items = if kind == Container::Dict { 2 * n } else { n };
        for _ in 0..items {
            skip_value(r, depth + 1)?;
        }
    }
    Ok(())
}

fn read_value(r: &mut PlainReader<'_>, depth: usize) -> Result<PlainValue, DecodeError> {
    Ok(match r.token()? {
        Token::None => PlainValue::None,
        Token::Bool(b) => PlainValue::Bool(b),
        Token::Int(i) => PlainValue::Int(i),
        Token::BigInt(b) => PlainValue::BigInt(b.to_vec()),
        Token::Float(f) => PlainValue::Float(f),
        Token::Str(s) => PlainValue::Str(s.to_owned()),
        Token::Bytes(b) => PlainValue::Bytes(b.to_vec()),
        Token::Container(kind, n) => {
            if depth >= MAX_DEPTH {
                return Err(r.r.err("plain value nests too deeply"));
            }
            if kind == Container::Dict {
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = read_value(r, depth + 1)?;
                    let v = read_value(r, depth + 1)?;
                    pairs.push((k, v));
                }
                PlainValue::Dict(pairs)
            } else {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_value(r, depth + 1)?);
                }
                match kind {
                    Container::Tuple => PlainValue::Tuple(items),
                    Container::List => PlainValue::List(items),
                    Container::Set => PlainValue::Set(items),
                    _ => PlainValue::FrozenSet(items),
                }
            }
        }
    })
}

/// Encodes a plain value.
pub fn encode(v: &PlainValue) -> Vec<u8> {
    let mut out = Vec::new();
    PlainWriter::new(&mut out).value(v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_round_trip() {
        let v = PlainValue::Dict(vec![
            (
                PlainValue::Str("k".into()),
                PlainValue::Tuple(vec![
                    PlainValue::None,
                    PlainValue::Bool(true),
                    PlainValue::Int(-3),
                    PlainValue::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
                    PlainValue::Float(f64::NAN),
                ]),
            ),
            (
                PlainValue::Bytes(vec![0, 1]),
                PlainValue::List(vec![PlainValue::Set(vec![]), PlainValue::FrozenSet(vec![])]),
            ),
        ]);
        let back = decode(&encode(&v)).expect("decodes");
        // NaN is not equal to itself: compare the encodings.
        assert_eq!(encode(&back), encode(&v));
        assert!(validate(&encode(&v)).is_ok());
    }

    #[test]
    fn big_ints_must_be_minimal_and_beyond_64_bits() {
        assert!(minimal_big_int(&[0, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(minimal_big_int(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]));
        assert!(!minimal_big_int(&[1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!minimal_big_int(&[1]));
        assert!(!minimal_big_int(&[]));
    }

    #[test]
    fn counts_beyond_the_input_are_refused_before_allocating() {
        let mut b = vec![T_LIST];
        put_varint(&mut b, u64::MAX);
        assert!(decode(&b).is_err());
        let mut s = vec![T_STR];
        put_varint(&mut s, 1 << 40);
        assert!(decode(&s).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut b = Vec::new();
        for _ in 0..=MAX_DEPTH {
            b.push(T_LIST);
            b.push(1);
        }
        b.push(T_NONE);
        assert!(decode(&b).is_err());
        assert!(validate(&b).is_err());
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = decode(&bytes);
            prop_assert_eq!(d.is_ok(), validate(&bytes).is_ok());
        }
    }
}
