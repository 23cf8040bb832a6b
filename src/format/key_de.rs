//! A serde `Deserializer` over encoded keys, so that stored keys come back as typed values,
//! and a renderer that prints an encoded key for people.

use super::key::*;
use super::{DecodeError, Reader};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt::{self, Write as _};

/// A key that does not deserialize into the requested type.
#[derive(Debug)]
pub struct DeError(pub String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

impl From<DecodeError> for DeError {
    fn from(e: DecodeError) -> Self {
        DeError(format!("malformed key at byte {}: {}", e.offset, e.detail))
    }
}

fn visit_num<'de, V: Visitor<'de>>(n: Num, v: V) -> Result<V::Value, DeError> {
    match n {
        Num::Int(i) => {
            if let Ok(x) = i64::try_from(i) {
                v.visit_i64(x)
            } else if let Ok(x) = u64::try_from(i) {
                v.visit_u64(x)
            } else {
                v.visit_i128(i)
            }
        }
        Num::Float(f) => v.visit_f64(f),
    }
}

/// Deserializes a whole encoded key.
pub struct TopDe<'a> {
    key: &'a [u8],
}

impl<'a> TopDe<'a> {
    pub fn new(key: &'a [u8]) -> TopDe<'a> {
        TopDe { key }
    }
}

impl<'de> de::Deserializer<'de> for TopDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let mut r = Reader::new(self.key);
        match r.u8()? {
            TAG_NUMBER => {
                let n = read_number(&mut r)?;
                visit_num(n, v)
            }
            TAG_STR => {
                let s = std::str::from_utf8(r.rest())
                    .map_err(|_| DeError("string key is not UTF-8".into()))?;
                v.visit_borrowed_str(s)
            }
            TAG_BYTES => v.visit_borrowed_bytes(r.rest()),
            TAG_COMPOSITE => {
                let mut d = ElemDe { r, depth: 0 };
                let out = de::Deserializer::deserialize_any(&mut d, v)?;
                d.finish()?;
                Ok(out)
            }
            t => Err(DeError(format!("unknown key tag {t:#x}"))),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.key.split_first() {
            Some((&TAG_BYTES, rest)) => v.visit_seq(ByteSeq {
                bytes: rest,
                pos: 0,
            }),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.key {
            [TAG_COMPOSITE, ..] => {
                let mut d = ElemDe {
                    r: Reader::at(self.key, 1),
                    depth: 0,
                };
                let out = de::Deserializer::deserialize_option(&mut d, v)?;
                d.finish()?;
                Ok(out)
            }
            _ => v.visit_some(self),
        }
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
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let mut d = ElemDe {
            r: Reader::at(self.key, 1),
            depth: 0,
        };
        if self.key.first() != Some(&TAG_COMPOSITE) {
            return Err(DeError("key is not an enum".into()));
        }
        let out = de::Deserializer::deserialize_enum(&mut d, name, variants, v)?;
        d.finish()?;
        Ok(out)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple_struct map struct identifier ignored_any
    }
}

/// Deserializes one composite element.
pub struct ElemDe<'a> {
    r: Reader<'a>,
    depth: usize,
}

impl<'a> ElemDe<'a> {
    fn finish(&self) -> Result<(), DeError> {
        if self.r.is_empty() {
            Ok(())
        } else {
            Err(DeError("trailing bytes after key".into()))
        }
    }

    fn peek(&self) -> Result<u8, DeError> {
        Ok(self.r.clone().u8()?)
    }

    fn nest(&mut self) -> Result<(), DeError> {
        self.depth += 1;
        if self.depth > 128 {
            return Err(DeError("key nests too deeply".into()));
        }
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut ElemDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.r.u8()? {
            E_UNIT => v.visit_unit(),
            E_NONE => v.visit_none(),
            E_SOME => {
                self.nest()?;
                let out = v.visit_some(&mut *self);
                self.depth -= 1;
                out
            }
            E_FALSE => v.visit_bool(false),
            E_TRUE => v.visit_bool(true),
            E_NUMBER => {
                let n = read_number(&mut self.r)?;
                visit_num(n, v)
            }
            E_STR => {
                let b = read_escaped(&mut self.r)?;
                let s = String::from_utf8(b)
                    .map_err(|_| DeError("string in key is not UTF-8".into()))?;
                v.visit_string(s)
            }
            E_BYTES => v.visit_byte_buf(read_escaped(&mut self.r)?),
            E_SEQ => {
                self.nest()?;
                let mut items = Items {
                    de: &mut *self,
                    done: false,
                };
                let out = v.visit_seq(&mut items)?;
                items.end()?;
                self.depth -= 1;
                Ok(out)
            }
            E_MAP => {
                self.nest()?;
                let mut items = Items {
                    de: &mut *self,
                    done: false,
                };
                let out = v.visit_map(&mut items)?;
                items.end()?;
                self.depth -= 1;
                Ok(out)
            }
            E_ENUM => {
                // Without a type to guide it, a variant reads as {index: payload}.
                self.nest()?;
                let out = v.visit_map(OneVariant {
                    de: &mut *self,
                    state: 0,
                })?;
                self.depth -= 1;
                Ok(out)
            }
            t => Err(DeError(format!("unknown element tag {t:#x}"))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.peek()? {
            E_NONE => {
                self.r.u8()?;
                v.visit_none()
            }
            E_SOME => {
                self.r.u8()?;
                v.visit_some(self)
            }
            _ => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.peek()? == E_BYTES {
            self.r.u8()?;
            let b = read_escaped(&mut self.r)?;
            return v.visit_seq(ByteSeq { bytes: &b, pos: 0 });
        }
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
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
        if self.r.u8()? != E_ENUM {
            return Err(DeError("expected an enum variant".into()));
        }
        let index = u32::from_be_bytes(self.r.array()?);
        self.nest()?;
        let out = v.visit_enum(Variant {
            de: &mut *self,
            index,
        })?;
        self.depth -= 1;
        Ok(out)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct map identifier ignored_any
    }
}

struct Items<'b, 'de> {
    de: &'b mut ElemDe<'de>,
    done: bool,
}

impl<'de> Items<'_, 'de> {
    fn more(&mut self) -> Result<bool, DeError> {
        if self.done {
            return Ok(false);
        }
        match self.de.r.u8()? {
            MORE => Ok(true),
            END => {
                self.done = true;
                Ok(false)
            }
            x => Err(DeError(format!("bad container marker {x:#x}"))),
        }
    }

    /// Consumes the end marker if the visitor stopped before reading it (derived visitors
    /// read exactly their fields); leftover items are an error.
    fn end(&mut self) -> Result<(), DeError> {
        if self.more()? {
            return Err(DeError("key has more items than the requested type".into()));
        }
        Ok(())
    }
}

impl<'de> de::SeqAccess<'de> for &mut Items<'_, 'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for &mut Items<'_, 'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(&mut *self.de)
    }
}

struct OneVariant<'b, 'de> {
    de: &'b mut ElemDe<'de>,
    state: u8,
}

impl<'de> de::MapAccess<'de> for OneVariant<'_, 'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.state > 0 {
            return Ok(None);
        }
        self.state = 1;
        let index = u32::from_be_bytes(self.de.r.array()?);
        seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(index))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(&mut *self.de)
    }
}

struct Variant<'b, 'de> {
    de: &'b mut ElemDe<'de>,
    index: u32,
}

impl<'b, 'de> de::EnumAccess<'de> for Variant<'b, 'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        let v = seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(self.index))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.de.r.u8()? {
            E_UNIT => Ok(()),
            _ => Err(DeError("expected a unit variant".into())),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(&mut *self.de)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(&mut *self.de, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(&mut *self.de, v)
    }
}

/// A byte string presented as a sequence of `u8` (so `Vec<u8>` reads byte strings).
pub struct ByteSeq<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl<'de> de::SeqAccess<'de> for ByteSeq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.bytes.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(*b))
                    .map(Some)
            }
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len() - self.pos.min(self.bytes.len()))
    }
}

/// Renders an encoded key for people: `42`, `1.5`, `"text"`, `b"\x00"`, `(1, "a")`.
pub fn render(key: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(key);
    let mut out = String::new();
    match r.u8()? {
        TAG_NUMBER => render_num(&mut out, read_number(&mut r)?),
        TAG_STR => {
            let s = std::str::from_utf8(r.rest()).map_err(|_| DecodeError::new(1, "not UTF-8"))?;
            let _ = write!(out, "{s:?}");
        }
        TAG_BYTES => render_bytes(&mut out, r.rest()),
        TAG_COMPOSITE => render_elem(&mut out, &mut r, 0)?,
        t => return Err(DecodeError::new(0, format!("unknown key tag {t:#x}"))),
    }
    Ok(out)
}

fn render_num(out: &mut String, n: Num) {
    let _ = match n {
        Num::Int(i) => write!(out, "{i}"),
        Num::Float(f) => write!(out, "{f:?}"),
    };
}

fn render_bytes(out: &mut String, b: &[u8]) {
    out.push_str("b\"");
    for &x in b {
        let _ = write!(out, "{}", std::ascii::escape_default(x));
    }
    out.push('"');
}

fn render_elem(out: &mut String, r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > 128 {
        return Err(r.err("key nests too deeply"));
    }
    match r.u8()? {
        E_UNIT => out.push_str("()"),
        E_NONE => out.push_str("None"),
        E_SOME => {
            out.push_str("Some(");
            render_elem(out, r, depth + 1)?;
            out.push(')');
        }
        E_FALSE => out.push_str("false"),
        E_TRUE => out.push_str("true"),
        E_NUMBER => render_num(out, read_number(r)?),
        E_STR => {
            let b = read_escaped(r)?;
            let _ = write!(out, "{:?}", String::from_utf8_lossy(&b));
        }
        E_BYTES => render_bytes(out, &read_escaped(r)?),
        E_SEQ => {
            out.push('(');
            let mut first = true;
            loop {
                match r.u8()? {
                    END => break,
                    MORE => {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        render_elem(out, r, depth + 1)?;
                    }
                    x => return Err(r.err(format!("bad sequence marker {x:#x}"))),
                }
            }
            out.push(')');
        }
        E_MAP => {
            out.push('{');
            let mut first = true;
            loop {
                match r.u8()? {
                    END => break,
                    MORE => {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        render_elem(out, r, depth + 1)?;
                        out.push_str(": ");
                        render_elem(out, r, depth + 1)?;
                    }
                    x => return Err(r.err(format!("bad map marker {x:#x}"))),
                }
            }
            out.push('}');
        }
        E_ENUM => {
            let index = u32::from_be_bytes(r.array()?);
            let _ = write!(out, "variant#{index}");
            let mut inner = String::new();
            render_elem(&mut inner, r, depth + 1)?;
            if inner != "()" {
                if !inner.starts_with('(') {
                    out.push('(');
                    out.push_str(&inner);
                    out.push(')');
                } else {
                    out.push_str(&inner);
                }
            }
        }
        t => return Err(r.err(format!("unknown element tag {t:#x}"))),
    }
    Ok(())
}
