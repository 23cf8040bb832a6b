//! Records: what the primary tree holds for each key.

use super::value::ValueKind;
use super::{put_lp_bytes, put_varint, DecodeError, Reader};

const VERSION: u8 = 1;
const F_EXPIRE: u8 = 1;
const F_TAG: u8 = 2;
const F_FILE: u8 = 4;
const KNOWN_FLAGS: u8 = F_EXPIRE | F_TAG | F_FILE;

/// Where a record's value lives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Data<'a> {
    /// In the record itself.
    Inline(&'a [u8]),
    /// In a value file under `values/`, `size` bytes with CRC-32 `crc`.
    File { name: &'a str, size: u64, crc: u32 },
}

/// One cache entry's metadata and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record<'a> {
    /// Insertion order; kept when the key is overwritten.
    pub rowid: u64,
    /// When the value was last stored (seconds since the Unix epoch).
    pub store_time: f64,
    /// When it expires, if it does.
    pub expire_time: Option<f64>,
    /// Its tag, in key encoding.
    pub tag: Option<&'a [u8]>,
    /// How to read the value's bytes.
    pub kind: ValueKind,
    /// The value.
    pub data: Data<'a>,
}

impl Record<'_> {
    /// Whether the record is expired at `now` (an item expiring exactly now is not visible).
    pub fn expired(&self, now: f64) -> bool {
        self.expire_time.is_some_and(|t| t <= now)
    }

    pub fn encode(&self) -> Vec<u8> {
        let inline_len = match self.data {
            Data::Inline(v) => v.len(),
            Data::File { name, .. } => name.len() + 16,
        };
        let mut out = Vec::with_capacity(32 + inline_len + self.tag.map_or(0, <[u8]>::len));
        let mut flags = 0;
        if self.expire_time.is_some() {
            flags |= F_EXPIRE;
        }
        if self.tag.is_some() {
            flags |= F_TAG;
        }
        if matches!(self.data, Data::File { .. }) {
            flags |= F_FILE;
        }
        out.extend_from_slice(&[VERSION, flags, self.kind as u8]);
        out.extend_from_slice(&self.rowid.to_le_bytes());
        out.extend_from_slice(&self.store_time.to_le_bytes());
        if let Some(t) = self.expire_time {
            out.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(tag) = self.tag {
            put_lp_bytes(&mut out, tag);
        }
        match self.data {
            Data::Inline(v) => out.extend_from_slice(v),
            Data::File { name, size, crc } => {
                put_varint(&mut out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
            }
        }
        out
    }
}

/// Decodes a record.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::new(
            0,
            format!("unknown record version {version}"),
        ));
    }
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::new(
            1,
            format!("unknown record flags {flags:#x}"),
        ));
    }
    let kind_at = r.pos();
    let kind = ValueKind::from_u8(r.u8()?)
        .ok_or_else(|| DecodeError::new(kind_at, "unknown value kind"))?;
    let rowid = r.u64()?;
    let store_time = r.f64()?;
    let expire_time = if flags & F_EXPIRE != 0 {
        Some(r.f64()?)
    } else {
        None
    };
    let tag = if flags & F_TAG != 0 {
        Some(r.lp_bytes()?)
    } else {
        None
    };
    let data = if flags & F_FILE != 0 {
        let at = r.pos();
        let name = std::str::from_utf8(r.lp_bytes()?)
            .ok()
            .filter(|n| valid_file_name(n))
            .ok_or_else(|| DecodeError::new(at, "invalid value file name"))?;
        let size = r.u64()?;
        let crc = r.u32()?;
        if !r.is_empty() {
            return Err(r.err("trailing bytes after file reference"));
        }
        Data::File { name, size, crc }
    } else {
        Data::Inline(r.rest())
    };
    if matches!(kind, ValueKind::Int | ValueKind::Float)
        && !matches!(data, Data::Inline(v) if v.len() == 8)
    {
        return Err(DecodeError::new(
            kind_at,
            "numeric value is not 8 inline bytes",
        ));
    }
    Ok(Record {
        rowid,
        store_time,
        expire_time,
        tag,
        kind,
        data,
    })
}

/// A value file name relative to `values/`: `hh/hh/` + 28 hex digits + `.val`. Anything else
/// (`..`, absolute paths, other characters) is refused, so a tampered cache cannot make the
/// engine read or delete files outside its directory.
pub fn valid_file_name(name: &str) -> bool {
    let b = name.as_bytes();
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 2 + 1 + 2 + 1 + 28 + 4
        && hex(&b[0..2])
        && b[2] == b'/'
        && hex(&b[3..5])
        && b[5] == b'/'
        && hex(&b[6..34])
        && &b[34..] == b".val"
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            rowid: 42,
            store_time: 1.5e9,
            expire_time: Some(1.6e9),
            tag: Some(b"\x20tag"),
            kind: ValueKind::Str,
            data: Data::Inline(b"hello"),
        };
        assert_eq!(decode(&r.encode()), Ok(r));
        let f = Record {
            data: Data::File {
                name: "ab/cd/0123456789abcdef0123456789ab.val",
                size: 40000,
                crc: 7,
            },
            expire_time: None,
            tag: None,
            kind: ValueKind::Bytes,
            ..r
        };
        assert_eq!(decode(&f.encode()), Ok(f));
    }

    #[test]
    fn file_names_outside_the_value_tree_are_refused() {
        assert!(valid_file_name("ab/cd/0123456789abcdef0123456789ab.val"));
        for bad in [
            "../../../../etc/passwd",
            "/etc/passwd",
            "ab/cd/0123456789abcdef0123456789AB.val",
            "ab/cd/../456789abcdef0123456789ab.val",
        ] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn expiry_is_strict() {
        let r = Record {
            rowid: 1,
            store_time: 0.0,
            expire_time: Some(10.0),
            tag: None,
            kind: ValueKind::Bytes,
            data: Data::Inline(b""),
        };
        assert!(!r.expired(9.9));
        assert!(r.expired(10.0));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }
    }
}
