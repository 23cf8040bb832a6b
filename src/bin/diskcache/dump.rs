//! The dump stream: a portable, self-describing, checksummed sequence of cache entries
//! (`format-spec/README.md`, "Dump streams").

use diskcache::{Key, ValueKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

/// The first 8 bytes of every dump.
pub const MAGIC: [u8; 8] = *b"DCDUMP\0\x01";
/// The stream format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Longest header JSON.
pub const MAX_HEADER: u32 = 16 << 20;
/// Longest entry metadata JSON (keys and tags are at most 1 MiB, base64 grows them 4/3).
pub const MAX_META: u32 = 8 << 20;
/// The `format` field of the header.
pub const FORMAT_NAME: &str = "diskcache-dump";

/// The header: where the entries come from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Always `diskcache-dump`.
    pub format: String,
    /// Codec of the source cache (`bincode2` or `json`): what `encoded` values are in.
    pub codec: String,
    /// `cache` or `fanout`.
    pub layout: String,
    /// Shard count of a fanout source.
    #[serde(default)]
    pub shards: Option<usize>,
    /// Total size limit of the source.
    #[serde(default)]
    pub size_limit: Option<u64>,
    /// The source's stored settings (shard 000's for a fanout cache).
    #[serde(default)]
    pub settings: BTreeMap<String, JsonValue>,
    /// When the dump was made, in seconds since the Unix epoch.
    pub created: f64,
    /// The source directory, for the record.
    #[serde(default)]
    pub source: String,
    /// What wrote the dump.
    #[serde(default)]
    pub tool: String,
}

/// An entry's metadata, as the stream holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Meta {
    key: String,
    kind: String,
    size: u64,
    expire_time: Option<f64>,
    tag: Option<String>,
}

pub fn kind_name(k: ValueKind) -> &'static str {
    match k {
        ValueKind::Bytes => "bytes",
        ValueKind::Str => "str",
        ValueKind::Int => "int",
        ValueKind::Float => "float",
        ValueKind::Encoded => "encoded",
        ValueKind::Python => "python",
    }
}

fn kind_from(name: &str) -> Option<ValueKind> {
    Some(match name {
        "bytes" => ValueKind::Bytes,
        "str" => ValueKind::Str,
        "int" => ValueKind::Int,
        "float" => ValueKind::Float,
        "encoded" => ValueKind::Encoded,
        "python" => ValueKind::Python,
        _ => return None,
    })
}

/// An entry to write, or one read (its value follows in the stream).
#[derive(Clone, Debug, PartialEq)]
pub struct EntryHead {
    pub key: Key,
    pub kind: ValueKind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub expire_time: Option<f64>,
    pub tag: Option<Key>,
}

/// Something wrong with a dump being read: where, and what.
#[derive(Debug)]
pub struct DumpError {
    /// The 1-based number of the entry, `None` for the header or the end marker.
    pub entry: Option<u64>,
    /// Byte offset in the stream where that entry (or the header, or the end marker) starts.
    pub offset: u64,
    pub detail: String,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Some(n) => write!(
                f,
                "dump entry {n} (at byte offset {}): {}",
                self.offset, self.detail
            ),
            None if self.offset == 0 => write!(f, "dump header: {}", self.detail),
            None => write!(
                f,
                "dump end marker (at byte offset {}): {}",
                self.offset, self.detail
            ),
        }
    }
}

/// Writes a dump.
pub struct Writer<W: Write> {
    out: W,
    /// Entries written.
    pub entries: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Writing an entry failed: the output, or the value being copied.
#[derive(Debug)]
pub enum WriteError {
    Output(io::Error),
    /// Reading the value failed, or it held fewer bytes than its recorded size.
    Value(String),
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(mut out: W, header: &Header) -> io::Result<Writer<W>> {
        let mut json = serde_json::to_vec(header).map_err(io::Error::other)?;
        json.push(b'\n');
        let len = u32::try_from(json.len())
            .ok()
            .filter(|&n| n <= MAX_HEADER)
            .ok_or_else(|| io::Error::other("dump header too large"))?;
        let mut buf = Vec::with_capacity(json.len() + 20);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&json);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&buf)?;
        Ok(Writer {
            out,
            entries: 0,
            bytes: buf.len() as u64,
        })
    }

    /// Writes an entry, copying exactly `head.size` bytes of its value from `value`.
    pub fn entry(&mut self, head: &EntryHead, value: &mut dyn Read) -> Result<(), WriteError> {
        let meta = Meta {
            key: base64_encode(&head.key.to_bytes()),
            kind: kind_name(head.kind).to_owned(),
            size: head.size,
            expire_time: head.expire_time,
            tag: head.tag.as_ref().map(|t| base64_encode(&t.to_bytes())),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| WriteError::Value(e.to_string()))?;
        let len = u32::try_from(json.len())
            .ok()
            .filter(|&n| n > 0 && n <= MAX_META)
            .ok_or_else(|| WriteError::Value("entry metadata too large".into()))?;
        let mut crc = crc32fast::Hasher::new();
        let mut start = Vec::with_capacity(4 + json.len());
        start.extend_from_slice(&len.to_le_bytes());
        start.extend_from_slice(&json);
        crc.update(&start);
        self.out.write_all(&start).map_err(WriteError::Output)?;
        let mut left = head.size;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match value.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(WriteError::Value(format!(
                        "the value ended {left} bytes short of its recorded size {}",
                        head.size
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WriteError::Value(format!("reading the value: {e}"))),
            };
            crc.update(&buf[..n]);
            self.out.write_all(&buf[..n]).map_err(WriteError::Output)?;
            left -= n as u64;
        }
        self.out
            .write_all(&crc.finalize().to_le_bytes())
            .map_err(WriteError::Output)?;
        self.entries += 1;
        self.bytes += start.len() as u64 + head.size + 4;
        Ok(())
    }

    /// Writes the end marker and flushes; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let mut end = Vec::with_capacity(16);
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&self.entries.to_le_bytes());
        let crc = crc32fast::hash(&end);
        end.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        self.bytes += end.len() as u64;
        Ok(self.out)
    }
}

/// Reads a dump.
pub struct Reader<R: Read> {
    inner: R,
    /// Bytes consumed so far.
    pub offset: u64,
    pub header: Header,
    /// Entries read so far (their values included).
    pub entries: u64,
    /// The entry being read: its number, start offset, CRC so far, bytes of value left.
    current: Option<(u64, u64, crc32fast::Hasher, u64)>,
    done: bool,
}

/// What comes next in a dump.
#[derive(Debug)]
pub enum Item {
    /// An entry; its value is read next with [`Reader::value`] or [`Reader::value_reader`].
    Entry(EntryHead),
    /// The end marker: the dump is complete.
    End,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(mut inner: R) -> Result<Reader<R>, DumpError> {
        let bad = |detail: String| DumpError {
            entry: None,
            offset: 0,
            detail,
        };
        let mut fixed = [0u8; 16];
        let got = read_full(&mut inner, &mut fixed).map_err(|e| bad(format!("read error: {e}")))?;
        if got < 8 || fixed[..8] != MAGIC {
            return Err(bad("not a diskcache dump (bad magic bytes)".into()));
        }
        if got < 16 {
            return Err(bad("truncated: the stream ends inside the header".into()));
        }
        let version = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        if version == 0 || version > VERSION {
            return Err(bad(format!(
                "format version {version}; this build reads version {VERSION}"
            )));
        }
        let len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        if len == 0 || len > MAX_HEADER {
            return Err(bad(format!("header length {len} is out of range")));
        }
        let mut json = Vec::new();
        (&mut inner)
            .take(u64::from(len))
            .read_to_end(&mut json)
            .map_err(|e| bad(format!("read error: {e}")))?;
        let mut crc_bytes = [0u8; 4];
        let got_crc =
            read_full(&mut inner, &mut crc_bytes).map_err(|e| bad(format!("read error: {e}")))?;
        if json.len() < len as usize || got_crc < 4 {
            return Err(bad("truncated: the stream ends inside the header".into()));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&fixed);
        crc.update(&json);
        if crc.finalize() != u32::from_le_bytes(crc_bytes) {
            return Err(bad("header checksum mismatch (corrupted)".into()));
        }
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(bad(format!("unknown format {:?}", header.format)));
        }
        Ok(Reader {
            inner,
            offset: 16 + u64::from(len) + 4,
            header,
            entries: 0,
            current: None,
            done: false,
        })
    }

    fn fill(
        &mut self,
        buf: &mut [u8],
        entry: Option<u64>,
        start: u64,
        what: &str,
    ) -> Result<(), DumpError> {
        let got = read_full(&mut self.inner, buf).map_err(|e| DumpError {
            entry,
            offset: start,
            detail: format!("read error: {e}"),
        })?;
        self.offset += got as u64;
        if got < buf.len() {
            return Err(DumpError {
                entry,
                offset: start,
                detail: format!(
                    "truncated: the stream ends inside {what} (at byte offset {})",
                    self.offset
                ),
            });
        }
        Ok(())
    }

    /// The next entry's head, or the end marker. Call only after the previous entry's
    /// value was read.
    pub fn next_item(&mut self) -> Result<Item, DumpError> {
        if self.done {
            return Ok(Item::End);
        }
        let number = self.entries + 1;
        let start = self.offset;
        let mut len_bytes = [0u8; 4];
        let got = read_full(&mut self.inner, &mut len_bytes).map_err(|e| DumpError {
            entry: Some(number),
            offset: start,
            detail: format!("read error: {e}"),
        })?;
        self.offset += got as u64;
        if got == 0 {
            return Err(DumpError {
                entry: Some(number),
                offset: start,
                detail: "truncated: the stream ends before the end marker".into(),
            });
        }
        if got < 4 {
            return Err(DumpError {
                entry: Some(number),
                offset: start,
                detail: "truncated: the stream ends inside the entry's length".into(),
            });
        }
        let len = u32::from_le_bytes(len_bytes);
        if len == 0 {
            let mut rest = [0u8; 12];
            self.fill(&mut rest, None, start, "the end marker")?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&len_bytes);
            crc.update(&rest[..8]);
            let stored = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let mut count = [0u8; 8];
            count.copy_from_slice(&rest[..8]);
            let count = u64::from_le_bytes(count);
            let bad = |detail: String| DumpError {
                entry: None,
                offset: start,
                detail,
            };
            if crc.finalize() != stored {
                return Err(bad("checksum mismatch (corrupted)".into()));
            }
            if count != self.entries {
                return Err(bad(format!(
                    "records {count} entries but the stream held {}",
                    self.entries
                )));
            }
            self.done = true;
            return Ok(Item::End);
        }
        let bad = |detail: String| DumpError {
            entry: Some(number),
            offset: start,
            detail,
        };
        if len > MAX_META {
            return Err(bad(format!(
                "metadata length {len} is out of range (corrupted)"
            )));
        }
        let mut json = vec![0u8; len as usize];
        self.fill(&mut json, Some(number), start, "the entry's metadata")?;
        let meta: Meta = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("metadata is not valid (corrupted): {e}")))?;
        let key_bytes = base64_decode(&meta.key)
            .ok_or_else(|| bad("key is not valid base64 (corrupted)".into()))?;
        let key = Key::from_bytes(&key_bytes).map_err(|e| bad(format!("bad key: {e}")))?;
        let kind = kind_from(&meta.kind)
            .ok_or_else(|| bad(format!("unknown value kind {:?}", meta.kind)))?;
        if matches!(kind, ValueKind::Int | ValueKind::Float) && meta.size != 8 {
            return Err(bad(format!(
                "a {} value must be 8 bytes, not {}",
                meta.kind, meta.size
            )));
        }
        let tag = match &meta.tag {
            None => None,
            Some(t) => {
                let b = base64_decode(t)
                    .ok_or_else(|| bad("tag is not valid base64 (corrupted)".into()))?;
                Some(Key::from_bytes(&b).map_err(|e| bad(format!("bad tag: {e}")))?)
            }
        };
        if meta.expire_time.is_some_and(|t| !t.is_finite()) {
            return Err(bad("expire time is not a finite number".into()));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len_bytes);
        crc.update(&json);
        self.current = Some((number, start, crc, meta.size));
        Ok(Item::Entry(EntryHead {
            key,
            kind,
            size: meta.size,
            expire_time: meta.expire_time,
            tag,
        }))
    }

    /// Reads the current entry's value into memory and checks the entry's checksum.
    pub fn value(&mut self) -> Result<Vec<u8>, DumpError> {
        let mut out = Vec::new();
        let mut r = self.value_reader();
        let res = r.read_to_end(&mut out);
        let failure = r.failure.take();
        match (res, failure) {
            (Ok(_), None) => Ok(out),
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(DumpError {
                entry: Some(self.entries + 1),
                offset: self.offset,
                detail: format!("read error: {e}"),
            }),
        }
    }

    /// A reader over the current entry's value that checks the entry's checksum before it
    /// reports the end: corrupt input fails the read (an error in [`ValueStream::failure`])
    /// rather than ending it.
    pub fn value_reader(&mut self) -> ValueStream<'_, R> {
        ValueStream {
            reader: self,
            failure: None,
        }
    }
}

/// See [`Reader::value_reader`].
pub struct ValueStream<'a, R: Read> {
    reader: &'a mut Reader<R>,
    /// Why the stream failed, if it did.
    pub failure: Option<DumpError>,
}

impl<R: Read> ValueStream<'_, R> {
    fn fail(&mut self, e: DumpError) -> io::Error {
        let msg = e.to_string();
        self.failure = Some(e);
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
}

impl<R: Read> Read for ValueStream<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((number, start, left)) = self.reader.current.as_ref().map(|c| (c.0, c.1, c.3))
        else {
            return Ok(0);
        };
        if left == 0 {
            let mut crc_bytes = [0u8; 4];
            if let Err(e) =
                self.reader
                    .fill(&mut crc_bytes, Some(number), start, "the entry's checksum")
            {
                return Err(self.fail(e));
            }
            let Some((_, _, crc, _)) = self.reader.current.take() else {
                return Ok(0);
            };
            if crc.finalize() != u32::from_le_bytes(crc_bytes) {
                return Err(self.fail(DumpError {
                    entry: Some(number),
                    offset: start,
                    detail: "checksum mismatch (corrupted)".into(),
                }));
            }
            self.reader.entries += 1;
            return Ok(0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = loop {
            match self.reader.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(self.fail(DumpError {
                        entry: Some(number),
                        offset: start,
                        detail: format!("read error: {e}"),
                    }))
                }
            }
        };
        if n == 0 {
            let at = self.reader.offset;
            return Err(self.fail(DumpError {
                entry: Some(number),
                offset: start,
                detail: format!(
                    "truncated: the stream ends inside the value (at byte offset {at}, \
                     {left} bytes short)"
                ),
            }));
        }
        self.reader.offset += n as u64;
        if let Some(c) = self.reader.current.as_mut() {
            c.2.update(&buf[..n]);
            c.3 -= n as u64;
        }
        Ok(n)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` if it is not exactly that.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (qi, q) in s.chunks(4).enumerate() {
        let last = qi + 1 == quads;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { val(c)? };
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        // Padding bits must be zero (one encoding per byte string).
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT_NAME.into(),
            codec: "bincode2".into(),
            layout: "cache".into(),
            shards: None,
            size_limit: Some(1 << 30),
            settings: BTreeMap::new(),
            created: 1.5e9,
            source: "/x".into(),
            tool: "test".into(),
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        let heads = [
            (
                EntryHead {
                    key: Key::Str("a".into()),
                    kind: ValueKind::Str,
                    size: 5,
                    expire_time: Some(2e9),
                    tag: Some(Key::Int(7)),
                },
                b"hello".to_vec(),
            ),
            (
                EntryHead {
                    key: Key::from_value(&(1, "b")).unwrap(),
                    kind: ValueKind::Int,
                    size: 8,
                    expire_time: None,
                    tag: None,
                },
                42i64.to_le_bytes().to_vec(),
            ),
        ];
        for (h, v) in &heads {
            w.entry(h, &mut v.as_slice()).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(EntryHead, Vec<u8>)>, DumpError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        loop {
            match r.next_item()? {
                Item::End => return Ok(out),
                Item::Entry(h) => {
                    let v = r.value()?;
                    out.push((h, v));
                }
            }
        }
    }

    #[test]
    fn a_written_dump_reads_back_entry_for_entry() {
        let got = read_all(&sample()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.key, Key::Str("a".into()));
        assert_eq!(got[0].0.tag, Some(Key::Int(7)));
        assert_eq!(got[0].0.expire_time, Some(2e9));
        assert_eq!(got[0].1, b"hello");
        assert_eq!(got[1].0.kind, ValueKind::Int);
        assert_eq!(got[1].1, 42i64.to_le_bytes());
    }

    #[test]
    fn every_truncation_of_a_dump_is_an_error_never_a_short_success() {
        let full = sample();
        for cut in 0..full.len() {
            assert!(read_all(&full[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let full = sample();
        for i in 0..full.len() {
            for bit in 0..8 {
                let mut b = full.clone();
                b[i] ^= 1 << bit;
                assert!(read_all(&b).is_err(), "flip of bit {bit} of byte {i}");
            }
        }
    }

    #[test]
    fn errors_name_the_entry_and_its_offset() {
        let full = sample();
        let first = read_all(&full).unwrap();
        // Damage the last byte of the second entry's value.
        let header_len = Reader::new(full.as_slice()).unwrap().offset as usize;
        let first_len =
            4 + {
                let l = &full[header_len..header_len + 4];
                u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize
            } + first[0].1.len()
                + 4;
        let mut b = full.clone();
        let second_value_end = full.len() - 16 - 4 - 1;
        b[second_value_end] ^= 1;
        let e = read_all(&b).unwrap_err();
        assert_eq!(e.entry, Some(2));
        assert_eq!(e.offset as usize, header_len + first_len);
        assert!(e.to_string().contains("dump entry 2"), "{e}");
    }

    #[test]
    fn base64_round_trips_and_is_strict() {
        for n in 0..40usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let s = base64_encode(&bytes);
            assert_eq!(base64_decode(&s).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Zm8=Zm8=").is_none());
        assert!(base64_decode("Zm9=").is_none(), "nonzero padding bits");
        assert!(base64_decode("Zm!=").is_none());
    }
}
