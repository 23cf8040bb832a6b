//! Values: strings, byte strings, 64-bit integers and floats are stored natively; everything
//! else through the cache's codec.

use super::key_de::{ByteSeq, DeError};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// How a stored value's bytes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    /// Raw bytes.
    Bytes = 0,
    /// UTF-8 text.
    Str = 1,
    /// A signed 64-bit integer, 8 bytes little-endian.
    Int = 2,
    /// A float, 8 bytes little-endian IEEE 754.
    Float = 3,
    /// Bytes produced by the cache's codec.
    Encoded = 4,
    /// A value written by the Python package in one of its encodings (section 17).
    Python = 5,
}

impl ValueKind {
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        Some(match b {
            0 => ValueKind::Bytes,
            1 => ValueKind::Str,
            2 => ValueKind::Int,
            3 => ValueKind::Float,
            4 => ValueKind::Encoded,
            5 => ValueKind::Python,
            _ => return None,
        })
    }
}

/// The file a custom Python `Disk` wrote for a kind-5 value, if the value is such a record
/// (sub-tag 0x04 with a non-empty name; format spec section 17).
pub fn python_disk_file(b: &[u8]) -> Option<&str> {
    let rest = b.strip_prefix(&[0x04])?;
    let len = u32::from_le_bytes(rest.get(1..5)?.try_into().ok()?);
    let end = 5usize.checked_add(usize::try_from(len).ok()?)?;
    let name = rest.get(5..end)?;
    if name.is_empty() {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// A value in native form.
#[derive(Clone, Debug, PartialEq)]
pub enum Native {
    Bytes(Vec<u8>),
    Str(String),
    Int(i64),
    Float(f64),
}

impl Native {
    pub fn kind(&self) -> ValueKind {
        match self {
            Native::Bytes(_) => ValueKind::Bytes,
            Native::Str(_) => ValueKind::Str,
            Native::Int(_) => ValueKind::Int,
            Native::Float(_) => ValueKind::Float,
        }
    }

    /// The stored bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Native::Bytes(b) => b,
            Native::Str(s) => s.into_bytes(),
            Native::Int(i) => i.to_le_bytes().to_vec(),
            Native::Float(f) => f.to_le_bytes().to_vec(),
        }
    }
}

/// The native form of a value, if it has one: `&str`/`String`/`char`, byte strings (including
/// any sequence of `u8`), integers that fit `i64`, and floats.
pub fn classify<T: Serialize + ?Sized>(value: &T) -> Option<Native> {
    value.serialize(Probe).ok()
}

#[derive(Debug)]
struct NotNative;

impl fmt::Display for NotNative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a native value")
    }
}

impl std::error::Error for NotNative {}

impl ser::Error for NotNative {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        NotNative
    }
}

struct Probe;

fn int<T: TryInto<i64>>(v: T) -> Result<Native, NotNative> {
    v.try_into().map(Native::Int).map_err(|_| NotNative)
}

impl ser::Serializer for Probe {
    type Ok = Native;
    type Error = NotNative;
    type SerializeSeq = ByteCollector;
    type SerializeTuple = ByteCollector;
    type SerializeTupleStruct = ByteCollector;
    type SerializeTupleVariant = Impossible<Native, NotNative>;
    type SerializeMap = Impossible<Native, NotNative>;
    type SerializeStruct = Impossible<Native, NotNative>;
    type SerializeStructVariant = Impossible<Native, NotNative>;

    fn serialize_bool(self, _v: bool) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_i8(self, v: i8) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_u128(self, v: u128) -> Result<Native, NotNative> {
        int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Native, NotNative> {
        Ok(Native::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Native, NotNative> {
        Ok(Native::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Native, NotNative> {
        Ok(Native::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Native, NotNative> {
        Ok(Native::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Native, NotNative> {
        Ok(Native::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_unit(self) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Native, NotNative> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Native, NotNative> {
        Err(NotNative)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ByteCollector, NotNative> {
        Ok(ByteCollector(Vec::with_capacity(
            len.unwrap_or(0).min(1 << 16),
        )))
    }
    fn serialize_tuple(self, len: usize) -> Result<ByteCollector, NotNative> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<ByteCollector, NotNative> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNative> {
        Err(NotNative)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNative> {
        Err(NotNative)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotNative> {
        Err(NotNative)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNative> {
        Err(NotNative)
    }
}

/// Collects a sequence that is made only of `u8`.
struct ByteCollector(Vec<u8>);

impl ser::SerializeSeq for ByteCollector {
    type Ok = Native;
    type Error = NotNative;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotNative> {
        self.0.push(value.serialize(U8Only)?);
        Ok(())
    }
    fn end(self) -> Result<Native, NotNative> {
        Ok(Native::Bytes(self.0))
    }
}

impl ser::SerializeTuple for ByteCollector {
    type Ok = Native;
    type Error = NotNative;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotNative> {
        self.0.push(value.serialize(U8Only)?);
        Ok(())
    }
    fn end(self) -> Result<Native, NotNative> {
        Ok(Native::Bytes(self.0))
    }
}

impl ser::SerializeTupleStruct for ByteCollector {
    type Ok = Native;
    type Error = NotNative;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotNative> {
        self.0.push(value.serialize(U8Only)?);
        Ok(())
    }
    fn end(self) -> Result<Native, NotNative> {
        Ok(Native::Bytes(self.0))
    }
}

/// Accepts a lone `u8`.
struct U8Only;

macro_rules! no {
    ($($m:ident($($t:ty),*)),* $(,)?) => {
        $(fn $m(self, $(_: $t),*) -> Result<u8, NotNative> { Err(NotNative) })*
    };
}

impl ser::Serializer for U8Only {
    type Ok = u8;
    type Error = NotNative;
    type SerializeSeq = Impossible<u8, NotNative>;
    type SerializeTuple = Impossible<u8, NotNative>;
    type SerializeTupleStruct = Impossible<u8, NotNative>;
    type SerializeTupleVariant = Impossible<u8, NotNative>;
    type SerializeMap = Impossible<u8, NotNative>;
    type SerializeStruct = Impossible<u8, NotNative>;
    type SerializeStructVariant = Impossible<u8, NotNative>;

    fn serialize_u8(self, v: u8) -> Result<u8, NotNative> {
        Ok(v)
    }
    no!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, NotNative> {
        Err(NotNative)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotNative> {
        Err(NotNative)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotNative> {
        Err(NotNative)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNative> {
        Err(NotNative)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNative> {
        Err(NotNative)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotNative> {
        Err(NotNative)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNative> {
        Err(NotNative)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNative> {
        Err(NotNative)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotNative> {
        Err(NotNative)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNative> {
        Err(NotNative)
    }
}

/// Deserializes a natively stored value.
#[derive(Clone, Copy, Debug)]
pub enum NativeDe<'a> {
    Bytes(&'a [u8]),
    Str(&'a str),
    Int(i64),
    Float(f64),
}

impl<'a> NativeDe<'a> {
    /// Reads stored bytes of a native kind.
    pub fn from_stored(kind: ValueKind, bytes: &'a [u8]) -> Result<NativeDe<'a>, DeError> {
        Ok(match kind {
            ValueKind::Bytes => NativeDe::Bytes(bytes),
            ValueKind::Str => NativeDe::Str(
                std::str::from_utf8(bytes)
                    .map_err(|_| DeError("stored string is not UTF-8".into()))?,
            ),
            ValueKind::Int => NativeDe::Int(i64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| DeError("stored integer is not 8 bytes".into()))?,
            )),
            ValueKind::Float => NativeDe::Float(f64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| DeError("stored float is not 8 bytes".into()))?,
            )),
            ValueKind::Encoded => return Err(DeError("codec-encoded value is not native".into())),
            ValueKind::Python => {
                return Err(DeError(
                    "a value written by the Python package is not native".into(),
                ))
            }
        })
    }
}

impl<'de> de::Deserializer<'de> for NativeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self {
            NativeDe::Bytes(b) => v.visit_borrowed_bytes(b),
            NativeDe::Str(s) => v.visit_borrowed_str(s),
            NativeDe::Int(i) => v.visit_i64(i),
            NativeDe::Float(f) => v.visit_f64(f),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self {
            NativeDe::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => v.visit_borrowed_str(s),
                Err(_) => v.visit_borrowed_bytes(b),
            },
            other => other.deserialize_any(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self {
            NativeDe::Str(s) => v.visit_borrowed_bytes(s.as_bytes()),
            other => other.deserialize_any(v),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self {
            NativeDe::Bytes(bytes) => v.visit_seq(ByteSeq { bytes, pos: 0 }),
            NativeDe::Str(s) => v.visit_seq(ByteSeq {
                bytes: s.as_bytes(),
                pos: 0,
            }),
            other => other.deserialize_any(v),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self {
            NativeDe::Str(s) => v.visit_enum(s.into_deserializer()),
            _ => Err(DeError(
                "a stored non-string value cannot be an enum".into(),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        unit unit_struct tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Deserialize;

    fn round<T: Serialize + DeserializeOwned>(v: &T) -> Option<T> {
        let n = classify(v)?;
        let kind = n.kind();
        let bytes = n.into_bytes();
        T::deserialize(NativeDe::from_stored(kind, &bytes).ok()?).ok()
    }

    #[test]
    fn natives_are_detected() {
        assert_eq!(classify("s"), Some(Native::Str("s".into())));
        assert_eq!(classify(&5u64), Some(Native::Int(5)));
        assert_eq!(classify(&u64::MAX), None);
        assert_eq!(classify(&1.5f64), Some(Native::Float(1.5)));
        assert_eq!(classify(&b"ab"[..]), Some(Native::Bytes(b"ab".to_vec())));
        assert_eq!(classify(&vec![1u8, 2]), Some(Native::Bytes(vec![1, 2])));
        assert_eq!(classify(&vec![1u16, 2]), None);
        assert_eq!(classify(&(1, 2)), None);
        assert_eq!(classify(&true), None);
        assert_eq!(classify(&Some(1)), None);
    }

    #[test]
    fn natives_read_back_as_compatible_types() {
        assert_eq!(round(&"text".to_string()), Some("text".to_string()));
        assert_eq!(round(&vec![0u8, 255]), Some(vec![0u8, 255]));
        assert_eq!(round(&-3i32), Some(-3));
        assert_eq!(round(&2.25f64), Some(2.25));
        let n = NativeDe::from_stored(ValueKind::Bytes, b"raw").expect("bytes");
        assert_eq!(
            serde_bytes::ByteBuf::deserialize(n)
                .expect("bytebuf")
                .into_vec(),
            b"raw"
        );
        let seven = 7i64.to_le_bytes();
        let n = NativeDe::from_stored(ValueKind::Int, &seven).expect("int");
        assert_eq!(Option::<u8>::deserialize(n).expect("opt"), Some(7));
    }

    #[test]
    fn malformed_natives_are_errors() {
        assert!(NativeDe::from_stored(ValueKind::Int, b"123").is_err());
        assert!(NativeDe::from_stored(ValueKind::Str, &[0xff]).is_err());
        let seven = 7i64.to_le_bytes();
        let n = NativeDe::from_stored(ValueKind::Int, &seven).expect("int");
        assert!(String::deserialize(n).is_err());
    }
}
