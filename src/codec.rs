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

/// Decodes with bincode, its allocation limit set to `LIMIT` bytes.
fn bincode_decode<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<(T, usize)> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    bincode::serde::decode_from_slice(bytes, config).map_err(|e| Error::Codec(e.to_string()))
}

/// Decodes with bincode, never allocating more than 256 times the input's size.
///
/// bincode checks a budget before it allocates: each primitive claims its size in memory
/// (at most 16 times its encoded size: a varint `u128` of one byte claims 16), and each
/// string or byte string its length, which its encoding holds in full; through serde,
/// nothing else claims. So the claims of a valid input never exceed 16 times its size, and
/// a budget of that much never refuses one, while a damaged length prefix can no longer make
/// bincode allocate whatever it says before finding the input too short. Sequences and maps
/// preallocate at most 1 MiB each (serde's cautious size hint), whatever their length
/// prefix says. The budget is a const generic, so it is rounded up to one of a few sizes
/// (a few copies of the decoder per type rather than one per size).
fn bincode_decode_bounded<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    const fn tier(shift: u32) -> usize {
        if shift >= usize::BITS {
            usize::MAX
        } else {
            1 << shift
        }
    }
    // The first budget of at least 16 times the input's size (so less than 256 times it).
    let need = bytes.len().saturating_mul(16);
    macro_rules! first_tier_over_need {
        ($($shift:literal)*) => {$(
            if need <= tier($shift) {
                return bincode_decode::<T, { tier($shift) }>(bytes);
            }
        )*};
    }
    first_tier_over_need!(16 20 24 28 32 36 40 44);
    bincode_decode::<T, { usize::MAX }>(bytes)
}

impl Codec for Bincode {
    fn name(&self) -> &'static str {
        "bincode2"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| Error::Codec(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let (v, used) = bincode_decode_bounded::<T>(bytes)?;
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

    /// Found by the `decoders` fuzz target: a length prefix saying 1 TiB made bincode
    /// allocate 1 TiB (and the process abort) before it found the input too short.
    #[test]
    fn bincode_refuses_a_damaged_length_prefix_without_allocating_it() {
        for huge in [1u64 << 40, u64::MAX >> 1, 1 << 33] {
            let mut bytes = vec![253u8];
            bytes.extend_from_slice(&huge.to_le_bytes());
            bytes.extend_from_slice(b"short");
            assert!(matches!(
                Bincode.decode::<String>(&bytes),
                Err(Error::Codec(_))
            ));
            assert!(Bincode.decode::<Vec<u8>>(&bytes).is_err());
            assert!(Bincode.decode::<Vec<String>>(&bytes).is_err());
        }
    }

    /// The budget covers what valid values claim: one-byte varints that claim 16 bytes each,
    /// and strings, at sizes on both sides of the budget tiers.
    #[test]
    fn bincode_budget_never_refuses_a_valid_value() {
        for n in [0usize, 1, 4095, 4096, 4097, 70_000, 300_000] {
            let ints: Vec<u128> = vec![0; n];
            let b = Bincode.encode(&ints).expect("encode");
            assert_eq!(Bincode.decode::<Vec<u128>>(&b).expect("decode"), ints);
            let strings: Vec<String> = (0..n / 8).map(|i| "x".repeat(i % 17)).collect();
            let b = Bincode.encode(&strings).expect("encode");
            assert_eq!(Bincode.decode::<Vec<String>>(&b).expect("decode"), strings);
            let bytes = vec![7u8; n];
            let b = Bincode.encode(&bytes).expect("encode");
            assert_eq!(Bincode.decode::<Vec<u8>>(&b).expect("decode"), bytes);
        }
    }

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
