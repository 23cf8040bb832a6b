//! Cache keys.

use crate::error::{Error, Result};
use crate::format::key::{self as fk, Num};
use crate::format::{self, Reader};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use std::fmt;

/// A key as stored in a cache, for code that handles keys of any type.
///
/// Any `Serialize` value can be a key: integers and floats become [`Key::Int`] or
/// [`Key::Float`] (numerically: `1` and `1.0` are the same key, and NaN is rejected),
/// `&str`/`String` become [`Key::Str`], byte strings (`&[u8]`, `Vec<u8>`, `[u8; N]`,
/// `serde_bytes`) become [`Key::Bytes`], and anything else ([`Key::Composite`]) is encoded
/// canonically, so equal values always make equal keys (unlike pickled keys in
/// python-diskcache, issue #54). Keys sort numbers first, then strings, byte strings, and
/// composites.
///
/// An integral float is stored as the integer it equals, so a key set as `2.0` comes back as
/// `Key::Int(2)`; [`Key::deserialize`] turns it back into an `f64` if asked.
///
/// All sequences encode alike: a tuple, an array and a `Vec` with equal elements are one key
/// (python-diskcache tells a tuple from a list), and any of them reads back as the others.
/// A sequence made only of `u8` is a byte string, so an empty sequence of any element type
/// is the empty byte string.
///
/// ```
/// use diskcache::Key;
/// let k = Key::from_value(&(1, "a")).unwrap();
/// assert_eq!(k.to_string(), r#"(1, "a")"#);
/// let back: (u32, String) = k.deserialize().unwrap();
/// assert_eq!(back, (1, "a".to_string()));
/// assert_eq!(Key::from_value(&1.0).unwrap(), Key::Int(1));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    /// An integer key.
    Int(i128),
    /// A non-integral or infinite float key.
    Float(f64),
    /// A string key.
    Str(String),
    /// A byte-string key.
    Bytes(Vec<u8>),
    /// Any other key, in its canonical encoding.
    Composite(CompositeKey),
    /// A key the Python package wrote for a Python object that is not a `str`, `bytes`,
    /// `int` or `float` (a tuple, `None`, a big integer, a pickled object...).
    Python(PythonKey),
}

/// A Python object key (see `format-spec/README.md`, sections 6 and 17), kept in its
/// encoding. Keys made only of plain values (tuples and lists of None, bools, numbers,
/// strings and byte strings) are in the plain encoding and can be read here with
/// [`PythonKey::plain`]; other objects are pickled (with a MAC only the Python package, which
/// has the secret, can check), or were made by a custom Python `Disk`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PythonKey(Vec<u8>);

/// What kind of [`PythonKey`] a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PythonKeyKind {
    /// A plain value (tuple, list, None, bool, big integer, ...), readable here.
    Plain,
    /// A pickled object followed by its MAC.
    Pickled,
    /// Bytes a custom `Disk` made.
    Disk,
    /// The SHA-256 of a key longer than 1 MiB (its value carries the key itself).
    Digest,
}

impl PythonKey {
    /// The kind of key.
    pub fn kind(&self) -> PythonKeyKind {
        match self.0.first() {
            Some(&fk::TAG_PY_PLAIN) => PythonKeyKind::Plain,
            Some(&fk::TAG_PY_PICKLE) => PythonKeyKind::Pickled,
            Some(&fk::TAG_PY_DIGEST) => PythonKeyKind::Digest,
            _ => PythonKeyKind::Disk,
        }
    }

    /// The bytes after the tag: the plain encoding, the pickle and its MAC, or the Disk's
    /// bytes.
    pub fn payload(&self) -> &[u8] {
        self.0.get(1..).unwrap_or_default()
    }

    /// The key's value, if it is a plain one.
    pub fn plain(&self) -> Option<crate::plain::PlainValue> {
        match self.kind() {
            PythonKeyKind::Plain => crate::format::plain::decode(self.payload()).ok(),
            _ => None,
        }
    }

    /// The key whose encoding (tag included) is `bytes`, if it is a well-formed Python key.
    pub fn from_encoded(bytes: &[u8]) -> Option<PythonKey> {
        matches!(
            bytes.first(),
            Some(&fk::TAG_PY_PLAIN | &fk::TAG_PY_PICKLE | &fk::TAG_PY_DISK | &fk::TAG_PY_DIGEST)
        )
        .then(|| fk::validate(bytes).ok())
        .flatten()
        .map(|()| PythonKey(bytes.to_vec()))
    }
}

impl fmt::Debug for PythonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.plain() {
            Some(v) => write!(f, "Python({v:?})"),
            None => write!(
                f,
                "Python({:?}, {} bytes)",
                self.kind(),
                self.payload().len()
            ),
        }
    }
}

/// A composite key (tuple, struct, ...), kept in its canonical encoding.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompositeKey(Vec<u8>);

impl fmt::Debug for CompositeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match format::key_de_render(&self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl Key {
    /// The key a value makes.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Key> {
        let enc = encode_key(value)?;
        Key::from_encoded(&enc)
    }

    /// Decodes a stored key.
    pub(crate) fn from_encoded(bytes: &[u8]) -> Result<Key> {
        let bad = |e: format::DecodeError| {
            Error::InvalidKey(format!("malformed stored key: {}", e.detail))
        };
        let mut r = Reader::new(bytes);
        match r.u8().map_err(bad)? {
            fk::TAG_NUMBER => match fk::read_number(&mut r).map_err(bad)? {
                Num::Int(i) => Ok(Key::Int(i)),
                Num::Float(f) => Ok(Key::Float(f)),
            },
            fk::TAG_STR => String::from_utf8(r.rest().to_vec())
                .map(Key::Str)
                .map_err(|_| Error::InvalidKey("stored string key is not UTF-8".into())),
            fk::TAG_BYTES => Ok(Key::Bytes(r.rest().to_vec())),
            fk::TAG_COMPOSITE => {
                fk::validate(bytes).map_err(bad)?;
                Ok(Key::Composite(CompositeKey(bytes.to_vec())))
            }
            fk::TAG_PY_PLAIN | fk::TAG_PY_PICKLE | fk::TAG_PY_DISK | fk::TAG_PY_DIGEST => {
                fk::validate(bytes).map_err(bad)?;
                Ok(Key::Python(PythonKey(bytes.to_vec())))
            }
            t => Err(Error::InvalidKey(format!("unknown stored key tag {t:#x}"))),
        }
    }

    /// The canonical encoding of this key.
    pub(crate) fn encoded(&self) -> Vec<u8> {
        match self {
            Key::Composite(c) => c.0.clone(),
            Key::Python(p) => p.0.clone(),
            // Plain keys always encode (a stored Float is never NaN).
            other => encode_key(other).unwrap_or_default(),
        }
    }

    /// The key's canonical encoding (`format-spec/README.md`, "Keys"): the bytes the cache
    /// stores and sorts by. For tools that copy keys between caches or into dumps.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded()
    }

    /// The key whose canonical encoding is `bytes`; malformed bytes are
    /// [`Error::InvalidKey`].
    ///
    /// ```
    /// use diskcache::Key;
    /// let k = Key::from_value(&("user", 7)).unwrap();
    /// assert_eq!(Key::from_bytes(&k.to_bytes()).unwrap(), k);
    /// assert!(Key::from_bytes(&[0xff]).is_err());
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Key> {
        let k = Key::from_encoded(bytes)?;
        // Plain keys must be in their canonical form too (e.g. a minimal integer).
        if k.encoded() != bytes {
            return Err(Error::InvalidKey(
                "key bytes are not in canonical form".into(),
            ));
        }
        Ok(k)
    }

    /// Deserializes the key into a typed value.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let enc = self.encoded();
        decode_key(&enc)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match format::key_de_render(&self.encoded()) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Key::Int(i) => s.serialize_i128(*i),
            Key::Float(x) => s.serialize_f64(*x),
            Key::Str(x) => s.serialize_str(x),
            Key::Bytes(b) => s.serialize_bytes(b),
            Key::Composite(c) => s.serialize_newtype_struct(format::RAW_KEY, &RawBytes(&c.0)),
            Key::Python(p) => s.serialize_newtype_struct(format::RAW_KEY, &RawBytes(&p.0)),
        }
    }
}

struct RawBytes<'a>(&'a [u8]);

/// An already-encoded key, passed on to another cache call without decoding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncodedKey<'a>(pub &'a [u8]);

impl Serialize for EncodedKey<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(format::RAW_KEY, &RawBytes(self.0))
    }
}

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Encodes a key value.
pub(crate) fn encode_key<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    format::encode_key(value).map_err(|e| Error::InvalidKey(e.0))
}

/// Decodes an encoded key into a typed value.
pub(crate) fn decode_key<T: DeserializeOwned>(encoded: &[u8]) -> Result<T> {
    T::deserialize(format::KeyDeserializer::new(encoded)).map_err(|e| {
        Error::InvalidKey(format!(
            "stored key does not decode as the requested type: {}",
            e.0
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, HashMap};

    fn enc<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        encode_key(v).expect("encodes")
    }

    #[test]
    fn plain_types_map_to_plain_keys() {
        assert_eq!(Key::from_value(&7u8).unwrap(), Key::Int(7));
        assert_eq!(Key::from_value(&-7i64).unwrap(), Key::Int(-7));
        assert_eq!(Key::from_value(&2.5f32).unwrap(), Key::Float(2.5));
        assert_eq!(Key::from_value("s").unwrap(), Key::Str("s".into()));
        assert_eq!(Key::from_value(&'c').unwrap(), Key::Str("c".into()));
        assert_eq!(
            Key::from_value(&b"ab"[..]).unwrap(),
            Key::Bytes(b"ab".to_vec())
        );
        assert_eq!(Key::from_value(b"ab").unwrap(), Key::Bytes(b"ab".to_vec()));
        assert_eq!(
            Key::from_value(&vec![1u8, 2]).unwrap(),
            Key::Bytes(vec![1, 2])
        );
        assert_eq!(
            Key::from_value(&serde_bytes::Bytes::new(b"x")).unwrap(),
            Key::Bytes(b"x".to_vec())
        );
        assert!(matches!(
            Key::from_value(&(1, 2)).unwrap(),
            Key::Composite(_)
        ));
        assert!(matches!(
            Key::from_value(&vec![1u32, 300]).unwrap(),
            Key::Composite(_)
        ));
    }

    #[test]
    fn one_equals_one_point_zero_but_not_true() {
        assert_eq!(enc(&1), enc(&1.0));
        assert_eq!(enc(&(1, "a")), enc(&(1.0, "a")));
        assert_ne!(enc(&1), enc(&true));
        assert_ne!(enc("a"), enc(&b"a"[..]));
    }

    #[test]
    fn nan_keys_are_rejected() {
        assert!(matches!(encode_key(&f64::NAN), Err(Error::InvalidKey(_))));
        assert!(matches!(
            encode_key(&(1, f64::NAN)),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn maps_encode_canonically_whatever_their_iteration_order() {
        let mut a = HashMap::new();
        let mut b = HashMap::new();
        for i in 0..50 {
            a.insert(i, i * 2);
        }
        for i in (0..50).rev() {
            b.insert(i, i * 2);
        }
        assert_eq!(enc(&a), enc(&b));
        let ordered: BTreeMap<_, _> = a.clone().into_iter().collect();
        assert_eq!(enc(&a), enc(&ordered));
    }

    #[test]
    fn kinds_sort_numbers_strings_bytes_composites() {
        let keys = [
            enc(&-5),
            enc(&1e9),
            enc(""),
            enc("zzz"),
            enc(&b""[..]),
            enc(&b"\xff"[..]),
            enc(&()),
            enc(&(0,)),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, String),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Rich {
        id: u64,
        name: String,
        tags: Vec<String>,
        shape: Shape,
        extra: Option<Box<Rich>>,
        blob: serde_bytes::ByteBuf,
        map: BTreeMap<String, i32>,
        unit: (),
        flag: bool,
    }

    #[test]
    fn composite_keys_round_trip_through_typed_deserialization() {
        let v = Rich {
            id: u64::MAX,
            name: "n\0ame".into(),
            tags: vec!["a".into(), "".into()],
            shape: Shape::Rect { w: 1, h: 2 },
            extra: Some(Box::new(Rich {
                id: 0,
                name: String::new(),
                tags: vec![],
                shape: Shape::Pair(-3, "x".into()),
                extra: None,
                blob: serde_bytes::ByteBuf::from(vec![0, 255]),
                map: BTreeMap::new(),
                unit: (),
                flag: false,
            })),
            blob: serde_bytes::ByteBuf::from(vec![1]),
            map: [("k".to_string(), -1)].into_iter().collect(),
            unit: (),
            flag: true,
        };
        let k = Key::from_value(&v).unwrap();
        assert_eq!(k.deserialize::<Rich>().unwrap(), v);
        for s in [Shape::Dot, Shape::Circle(0.5), Shape::Pair(1, "p".into())] {
            assert_eq!(
                Key::from_value(&s).unwrap().deserialize::<Shape>().unwrap(),
                s
            );
        }
        assert_eq!(
            Key::from_value(&2.0).unwrap().deserialize::<f64>().unwrap(),
            2.0
        );
        assert_eq!(
            Key::from_value(&b"xy"[..])
                .unwrap()
                .deserialize::<Vec<u8>>()
                .unwrap(),
            b"xy"
        );
        assert_eq!(
            Key::from_value(&Some(3))
                .unwrap()
                .deserialize::<Option<i32>>()
                .unwrap(),
            Some(3)
        );
        assert_eq!(
            Key::from_value(&None::<i32>)
                .unwrap()
                .deserialize::<Option<i32>>()
                .unwrap(),
            None
        );
    }

    #[test]
    fn keys_pass_back_through_serialize_unchanged() {
        for v in [
            Key::Int(-3),
            Key::Float(0.5),
            Key::Str("s".into()),
            Key::Bytes(vec![0]),
            Key::from_value(&(1, "x")).unwrap(),
        ] {
            assert_eq!(Key::from_value(&v).unwrap(), v);
        }
    }

    #[test]
    fn display_renders_keys_readably() {
        assert_eq!(
            Key::from_value(&(
                1,
                "a",
                serde_bytes::ByteBuf::from(vec![0u8]),
                vec![7u8],
                None::<u8>,
                1.5
            ))
            .unwrap()
            .to_string(),
            r#"(1, "a", b"\x00", (7), None, 1.5)"#
        );
        assert_eq!(Key::Str("q".into()).to_string(), "\"q\"");
    }

    proptest! {
        #[test]
        fn tuple_keys_sort_like_tuples(a in (any::<i32>(), ".{0,6}", proptest::collection::vec(any::<u8>(), 0..5)),
                                       b in (any::<i32>(), ".{0,6}", proptest::collection::vec(any::<u8>(), 0..5))) {
            let wrap = |t: &(i32, String, Vec<u8>)| (t.0, t.1.clone(), serde_bytes::ByteBuf::from(t.2.clone()));
            prop_assert_eq!(a.cmp(&b), enc(&wrap(&a)).cmp(&enc(&wrap(&b))));
        }

        #[test]
        fn string_keys_sort_like_strings(a in ".{0,8}", b in ".{0,8}") {
            prop_assert_eq!(a.cmp(&b), enc(&a).cmp(&enc(&b)));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = Key::from_encoded(&bytes);
            let _ = decode_key::<Rich>(&bytes);
            let _ = decode_key::<(i64, String)>(&bytes);
            let _ = format::key_de_render(&bytes);
        }
    }
}
