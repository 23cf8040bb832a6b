//! Codecs: how values that are not stored natively become bytes.
//!
//! Strings, byte strings, 64-bit integers and floats are stored natively and read by every
//! codec. Anything else `Serialize` goes through the cache's [`Codec`]: [`Bincode`] (the
//! default) or [`Json`]. A codec is the Rust form of python-diskcache's `Disk`, without its
//! dangers: decoding never runs code (no pickle), and never allocates more than the input
//! can account for.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Turns values into bytes and back.
///
/// A cache records the name of the codec it was created with; opening it with another codec
/// is an error ([`Error::CodecMismatch`]) rather than a stream of decoding failures.
pub trait Codec: Send + Sync + 'static {
    /// A stable name, stored in the cache.
    fn name(&self) -> &'static str;
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;
    /// Decodes a value. Must fail cleanly (never panic, never allocate without bound) on
    /// bytes it did not produce.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// Compact binary encoding with bincode 2 (the default codec).
///
/// ```
/// use diskcache::{Bincode, Codec};
/// let bytes = Bincode.encode(&(1u8, "two")).unwrap();
/// let back: (u8, String) = Bincode.decode(&bytes).unwrap();
/// assert_eq!(back, (1, "two".to_string()));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bincode;

/// Largest value bincode will decode (its allocations are checked against this too).
const BINCODE_LIMIT: usize = 1 << 40;

impl Codec for Bincode {
    fn name(&self) -> &'static str {
        "bincode2"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| Error::Codec(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let config = bincode::config::standard().with_limit::<BINCODE_LIMIT>();
        let (v, used) = bincode::serde::decode_from_slice(bytes, config)
            .map_err(|e| Error::Codec(e.to_string()))?;
        if used != bytes.len() {
            return Err(Error::Codec(format!(
                "{} trailing bytes after the value",
                bytes.len() - used
            )));
        }
        Ok(v)
    }
}

/// JSON encoding with serde_json: readable by other tools, larger and slower than
/// [`Bincode`]. Maps with non-string keys and other values JSON cannot hold fail to encode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Codec(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn both_codecs_round_trip_structured_values() {
        let v: BTreeMap<String, Vec<(u32, Option<f64>)>> =
            [("a".to_string(), vec![(1, Some(0.5)), (2, None)])]
                .into_iter()
                .collect();
        let b = Bincode.encode(&v).expect("encode");
        assert_eq!(
            Bincode
                .decode::<BTreeMap<String, Vec<(u32, Option<f64>)>>>(&b)
                .expect("decode"),
            v
        );
        let j = Json.encode(&v).expect("encode");
        assert_eq!(
            Json.decode::<BTreeMap<String, Vec<(u32, Option<f64>)>>>(&j)
                .expect("decode"),
            v
        );
    }

    #[test]
    fn hostile_length_prefixes_fail_without_allocating() {
        // A sequence claiming 2^62 elements, then nothing: decoding must fail fast.
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(Bincode.decode::<Vec<String>>(&bytes).is_err());
        assert!(Bincode.decode::<Vec<Vec<u64>>>(&bytes).is_err());
        assert!(Bincode.decode::<String>(&bytes).is_err());
        assert!(
            Bincode.decode::<u32>(&[1, 2]).is_err(),
            "trailing bytes are refused"
        );
    }
}
