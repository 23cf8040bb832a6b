//! A serde `Serializer` that produces canonical, order-preserving key encodings.
//!
//! At the top level, integers and floats become number keys, `&str`/`String`/`char` string
//! keys, and byte strings (`serde_bytes`, and any sequence made only of `u8`, such as `&[u8]`,
//! `Vec<u8>` or `[u8; N]`) byte keys. Everything else becomes a composite key: a tree of
//! tagged, self-delimiting elements in which map entries are sorted, so that equal values
//! always give equal bytes.

use super::key::*;
use serde::ser::{self, Impossible, Serialize, Serializer as _};
use std::fmt;

/// The newtype-struct name through which an already-encoded key passes unchanged.
pub const RAW_KEY: &str = "\0diskcache::EncodedKey";

/// Why a value cannot be a key.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError(msg.to_string())
    }
}

/// Encodes any `Serialize` value as a key.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    let out = value.serialize(Top)?;
    if out.len() > MAX_KEY_LEN {
        return Err(KeyError(format!(
            "encoded key is {} bytes; the limit is {MAX_KEY_LEN}",
            out.len()
        )));
    }
    Ok(out)
}

/// Encodes a value as one composite element (what it would be inside a tuple key).
pub fn encode_element<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    value.serialize(Elem(&mut out))?;
    Ok(out)
}

fn number(tag: u8, n: Num) -> Result<Vec<u8>, KeyError> {
    let mut out = vec![tag];
    put_number(&mut out, n).map_err(|e| KeyError(e.to_string()))?;
    Ok(out)
}

fn u128_num(v: u128) -> Result<Num, KeyError> {
    i128::try_from(v)
        .map(Num::Int)
        .map_err(|_| KeyError("integer above i128::MAX cannot be a key".into()))
}

/// The top-level serializer: picks number/string/bytes keys, else a composite.
struct Top;

fn composite(f: impl FnOnce(&mut Vec<u8>) -> Result<(), KeyError>) -> Result<Vec<u8>, KeyError> {
    let mut out = vec![TAG_COMPOSITE];
    f(&mut out)?;
    Ok(out)
}

impl ser::Serializer for Top {
    type Ok = Vec<u8>;
    type Error = KeyError;
    type SerializeSeq = TopSeq;
    type SerializeTuple = TopSeq;
    type SerializeTupleStruct = TopSeq;
    type SerializeTupleVariant = Wrapped<SeqElems>;
    type SerializeMap = Wrapped<MapElems>;
    type SerializeStruct = Wrapped<SeqElems>;
    type SerializeStructVariant = Wrapped<SeqElems>;

    fn serialize_bool(self, v: bool) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Int(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, u128_num(v)?)
    }
    fn serialize_f32(self, v: f32) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Vec<u8>, KeyError> {
        number(TAG_NUMBER, Num::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Vec<u8>, KeyError> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<Vec<u8>, KeyError> {
        Ok(str_key(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::with_capacity(1 + v.len());
        out.push(TAG_BYTES);
        out.extend_from_slice(v);
        Ok(out)
    }
    fn serialize_none(self) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_none())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_some(value))
    }
    fn serialize_unit(self) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_unit())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Vec<u8>, KeyError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_unit_variant(name, index, variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, KeyError> {
        if name == RAW_KEY {
            let raw = value.serialize(RawBytes)?;
            validate(&raw).map_err(|e| KeyError(format!("invalid encoded key: {}", e.detail)))?;
            return Ok(raw);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, KeyError> {
        composite(|o| Elem(o).serialize_newtype_variant(name, index, variant, value))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<TopSeq, KeyError> {
        Ok(TopSeq {
            bytes: Vec::new(),
            all_u8: true,
            elems: Vec::new(),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<TopSeq, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<TopSeq, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Wrapped<SeqElems>, KeyError> {
        let mut out = vec![TAG_COMPOSITE, E_ENUM];
        out.extend_from_slice(&index.to_be_bytes());
        out.push(E_SEQ);
        Ok(Wrapped(SeqElems { out }))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Wrapped<MapElems>, KeyError> {
        Ok(Wrapped(MapElems::new(vec![TAG_COMPOSITE])))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Wrapped<SeqElems>, KeyError> {
        Ok(Wrapped(SeqElems {
            out: vec![TAG_COMPOSITE, E_SEQ],
        }))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Wrapped<SeqElems>, KeyError> {
        let mut out = vec![TAG_COMPOSITE, E_ENUM];
        out.extend_from_slice(&index.to_be_bytes());
        out.push(E_SEQ);
        Ok(Wrapped(SeqElems { out }))
    }
}

/// A top-level sequence: a byte key if every element is a `u8`, else a composite.
pub(crate) struct TopSeq {
    bytes: Vec<u8>,
    all_u8: bool,
    elems: Vec<u8>,
}

impl TopSeq {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        if self.all_u8 {
            if let Ok(b) = value.serialize(ProbeU8) {
                self.bytes.push(b);
                return Ok(());
            }
            self.all_u8 = false;
            for b in std::mem::take(&mut self.bytes) {
                self.elems.push(MORE);
                Elem(&mut self.elems).serialize_u8(b)?;
            }
        }
        self.elems.push(MORE);
        value.serialize(Elem(&mut self.elems))
    }

    fn finish(self) -> Result<Vec<u8>, KeyError> {
        if self.all_u8 {
            return Top.serialize_bytes(&self.bytes);
        }
        let mut out = Vec::with_capacity(self.elems.len() + 3);
        out.extend_from_slice(&[TAG_COMPOSITE, E_SEQ]);
        out.extend_from_slice(&self.elems);
        out.push(END);
        Ok(out)
    }
}

impl ser::SerializeSeq for TopSeq {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTuple for TopSeq {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for TopSeq {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        self.finish()
    }
}

/// A compound serializer that returns its buffer when done (top level).
pub(crate) struct Wrapped<S>(S);

/// Sequence-like element writer: `MORE element` per item, `END` at the end.
pub(crate) struct SeqElems {
    out: Vec<u8>,
}

impl SeqElems {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.out.push(MORE);
        value.serialize(Elem(&mut self.out))
    }
    fn finish(mut self) -> Vec<u8> {
        self.out.push(END);
        self.out
    }
}

impl ser::SerializeTupleVariant for Wrapped<SeqElems> {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.0.item(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        Ok(self.0.finish())
    }
}

impl ser::SerializeStruct for Wrapped<SeqElems> {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.0.item(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        Ok(self.0.finish())
    }
}

impl ser::SerializeStructVariant for Wrapped<SeqElems> {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.0.item(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        Ok(self.0.finish())
    }
}

/// Map writer: entries are encoded apart, sorted, then written.
pub(crate) struct MapElems {
    out: Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pending_key: Option<Vec<u8>>,
}

impl MapElems {
    fn new(out: Vec<u8>) -> MapElems {
        MapElems {
            out,
            entries: Vec::new(),
            pending_key: None,
        }
    }
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        let mut k = Vec::new();
        key.serialize(Elem(&mut k))?;
        self.pending_key = Some(k);
        Ok(())
    }
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        let k = self
            .pending_key
            .take()
            .ok_or_else(|| KeyError("map value without a key".into()))?;
        let mut v = Vec::new();
        value.serialize(Elem(&mut v))?;
        self.entries.push((k, v));
        Ok(())
    }
    fn finish(mut self) -> Vec<u8> {
        self.entries.sort();
        self.out.push(E_MAP);
        for (k, v) in self.entries {
            self.out.push(MORE);
            self.out.extend_from_slice(&k);
            self.out.extend_from_slice(&v);
        }
        self.out.push(END);
        self.out
    }
}

impl ser::SerializeMap for Wrapped<MapElems> {
    type Ok = Vec<u8>;
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.0.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.0.value(value)
    }
    fn end(self) -> Result<Vec<u8>, KeyError> {
        Ok(self.0.finish())
    }
}

/// Writes one composite element into the buffer.
pub(crate) struct Elem<'a>(pub &'a mut Vec<u8>);

impl<'a> Elem<'a> {
    fn num(self, n: Num) -> Result<(), KeyError> {
        self.0.push(E_NUMBER);
        put_number(self.0, n).map_err(|e| KeyError(e.to_string()))
    }
}

/// Nested compound writer that appends to a borrowed buffer.
pub(crate) struct ElemSeq<'a> {
    out: &'a mut Vec<u8>,
}

impl ElemSeq<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.out.push(MORE);
        value.serialize(Elem(self.out))
    }
}

pub(crate) struct ElemMap<'a> {
    out: &'a mut Vec<u8>,
    inner: MapElems,
}

impl<'a> ser::Serializer for Elem<'a> {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = ElemSeq<'a>;
    type SerializeTuple = ElemSeq<'a>;
    type SerializeTupleStruct = ElemSeq<'a>;
    type SerializeTupleVariant = ElemSeq<'a>;
    type SerializeMap = ElemMap<'a>;
    type SerializeStruct = ElemSeq<'a>;
    type SerializeStructVariant = ElemSeq<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), KeyError> {
        self.0.push(if v { E_TRUE } else { E_FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<(), KeyError> {
        self.num(Num::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<(), KeyError> {
        self.num(Num::Int(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<(), KeyError> {
        self.num(u128_num(v)?)
    }
    fn serialize_f32(self, v: f32) -> Result<(), KeyError> {
        self.num(Num::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), KeyError> {
        self.num(Num::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<(), KeyError> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), KeyError> {
        self.0.push(E_STR);
        put_escaped(self.0, v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), KeyError> {
        self.0.push(E_BYTES);
        put_escaped(self.0, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), KeyError> {
        self.0.push(E_NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), KeyError> {
        self.0.push(E_SOME);
        value.serialize(Elem(self.0))
    }
    fn serialize_unit(self) -> Result<(), KeyError> {
        self.0.push(E_UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), KeyError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), KeyError> {
        self.0.push(E_ENUM);
        self.0.extend_from_slice(&index.to_be_bytes());
        self.0.push(E_UNIT);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.0.push(E_ENUM);
        self.0.extend_from_slice(&index.to_be_bytes());
        value.serialize(Elem(self.0))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<ElemSeq<'a>, KeyError> {
        self.0.push(E_SEQ);
        Ok(ElemSeq { out: self.0 })
    }
    fn serialize_tuple(self, len: usize) -> Result<ElemSeq<'a>, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ElemSeq<'a>, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<ElemSeq<'a>, KeyError> {
        self.0.push(E_ENUM);
        self.0.extend_from_slice(&index.to_be_bytes());
        self.0.push(E_SEQ);
        Ok(ElemSeq { out: self.0 })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<ElemMap<'a>, KeyError> {
        Ok(ElemMap {
            out: self.0,
            inner: MapElems::new(Vec::new()),
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<ElemSeq<'a>, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<ElemSeq<'a>, KeyError> {
        self.serialize_tuple_variant(name, index, variant, len)
    }
}

macro_rules! elem_seq_impl {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl ser::$trait for ElemSeq<'_> {
            type Ok = ();
            type Error = KeyError;
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result<(), KeyError> {
                self.item(value)
            }
            fn end(self) -> Result<(), KeyError> {
                self.out.push(END);
                Ok(())
            }
        }
    };
}

elem_seq_impl!(SerializeSeq, serialize_element);
elem_seq_impl!(SerializeTuple, serialize_element);
elem_seq_impl!(SerializeTupleStruct, serialize_field);
elem_seq_impl!(SerializeTupleVariant, serialize_field);
elem_seq_impl!(SerializeStruct, serialize_field, _key);
elem_seq_impl!(SerializeStructVariant, serialize_field, _key);

impl ser::SerializeMap for ElemMap<'_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.inner.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.inner.value(value)
    }
    fn end(self) -> Result<(), KeyError> {
        let bytes = self.inner.finish();
        self.out.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Generates serializer methods that reject their input.
macro_rules! reject {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, KeyError> { Err(KeyError(String::new())) })*
    };
}

/// Accepts a lone `u8` and rejects everything else: detects byte sequences.
struct ProbeU8;

impl ser::Serializer for ProbeU8 {
    type Ok = u8;
    type Error = KeyError;
    type SerializeSeq = Impossible<u8, KeyError>;
    type SerializeTuple = Impossible<u8, KeyError>;
    type SerializeTupleStruct = Impossible<u8, KeyError>;
    type SerializeTupleVariant = Impossible<u8, KeyError>;
    type SerializeMap = Impossible<u8, KeyError>;
    type SerializeStruct = Impossible<u8, KeyError>;
    type SerializeStructVariant = Impossible<u8, KeyError>;

    fn serialize_u8(self, v: u8) -> Result<u8, KeyError> {
        Ok(v)
    }
    reject!(
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
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, KeyError> {
        Err(KeyError(String::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, KeyError> {
        Err(KeyError(String::new()))
    }
}

/// Extracts the bytes of a `serialize_bytes` call (the payload of an encoded-key newtype).
struct RawBytes;

impl ser::Serializer for RawBytes {
    type Ok = Vec<u8>;
    type Error = KeyError;
    type SerializeSeq = Impossible<Vec<u8>, KeyError>;
    type SerializeTuple = Impossible<Vec<u8>, KeyError>;
    type SerializeTupleStruct = Impossible<Vec<u8>, KeyError>;
    type SerializeTupleVariant = Impossible<Vec<u8>, KeyError>;
    type SerializeMap = Impossible<Vec<u8>, KeyError>;
    type SerializeStruct = Impossible<Vec<u8>, KeyError>;
    type SerializeStructVariant = Impossible<Vec<u8>, KeyError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(v.to_vec())
    }
    reject!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, KeyError> {
        Err(KeyError("expected bytes".into()))
    }
}
