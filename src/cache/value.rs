//! Types that values travel in: [`Value`], [`Entry`], [`SetOptions`], [`ValueReader`].

use crate::error::Result;
use crate::key::{encode_key, Key};
use crate::storage::StorageFile;
use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A stored value of any kind, for code that does not know its type (tools, dumps).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A string.
    Str(String),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Bytes produced by the cache's codec.
    Encoded(Vec<u8>),
    /// A value the Python package wrote in one of its own encodings (format spec section
    /// 17): the plain encoding, a signed pickle, or a custom `Disk`'s record.
    Python(Vec<u8>),
}

/// A value with its expiry time and tag, as [`crate::Cache::get_entry`] and
/// [`crate::Cache::pop_entry`] return it (python-diskcache's `expire_time=True, tag=True`).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<V> {
    /// The value.
    pub value: V,
    /// When it expires, if it does.
    pub expire_time: Option<SystemTime>,
    /// Its tag, if it has one.
    pub tag: Option<Key>,
}

/// Options for storing a value: expiry and tag.
///
/// ```
/// use diskcache::SetOptions;
/// use std::time::Duration;
/// let opts = SetOptions::new().expire(Duration::from_secs(60)).tag("session");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    expire: Option<Expiry>,
    tag: Option<std::result::Result<Vec<u8>, String>>,
}

#[derive(Clone, Copy, Debug)]
enum Expiry {
    After(Duration),
    At(f64),
}

impl SetOptions {
    /// No expiry, no tag.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }

    /// Expire this long after storing. `Duration::ZERO` stores an item that is already
    /// expired (python-diskcache's `expire=0`).
    pub fn expire(mut self, after: Duration) -> SetOptions {
        self.expire = Some(Expiry::After(after));
        self
    }

    /// Expire at an absolute time (for restoring a dump, or aligning expiries). A time in
    /// the past stores an item that is already expired.
    pub fn expire_at(mut self, at: SystemTime) -> SetOptions {
        let secs = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(_) => 0.0,
        };
        self.expire = Some(Expiry::At(secs));
        self
    }

    /// Expire after `after` if given, else never.
    pub fn expire_opt(mut self, after: Option<Duration>) -> SetOptions {
        self.expire = after.map(Expiry::After);
        self
    }

    /// Tag the item (any key-like value: string, integer, float, bytes, tuple...). Items can
    /// be removed by tag with [`crate::Cache::evict`].
    pub fn tag<T: Serialize>(mut self, tag: T) -> SetOptions {
        self.tag = Some(encode_key(&tag).map_err(|e| e.to_string()));
        self
    }

    /// Expire at `t` seconds since the Unix epoch (any finite time, past or future).
    pub(crate) fn expire_at_secs(mut self, t: Option<f64>) -> SetOptions {
        self.expire = t.map(Expiry::At);
        self
    }

    /// Tag with an already-encoded tag.
    pub(crate) fn encoded_tag_bytes(mut self, tag: Option<Vec<u8>>) -> SetOptions {
        self.tag = tag.map(Ok);
        self
    }

    pub(crate) fn encoded_tag(&self) -> Result<Option<&[u8]>> {
        match &self.tag {
            None => Ok(None),
            Some(Ok(t)) => Ok(Some(t)),
            Some(Err(e)) => Err(crate::Error::InvalidKey(format!("tag: {e}"))),
        }
    }

    pub(crate) fn expire_time(&self, now: f64) -> Option<f64> {
        self.expire.map(|e| match e {
            Expiry::After(d) => now + d.as_secs_f64(),
            Expiry::At(t) => t,
        })
    }
}

thread_local! {
    /// The time `now()` reports on this thread, while [`with_clock`] runs.
    static CLOCK: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the cache's clock on this thread reading `now` (seconds since the Unix
/// epoch) instead of the system clock: expiry checks, store times, expire times given as
/// durations, and access times all use it. For bindings whose language owns the clock (the
/// Python package reads `time.time()`, which tests and freezegun replace). Other threads
/// are not affected.
pub fn with_clock<R>(now: f64, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<f64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CLOCK.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CLOCK.with(|c| c.replace(Some(now))));
    f()
}

pub(crate) fn now() -> f64 {
    if let Some(t) = CLOCK.with(std::cell::Cell::get) {
        return t;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) fn to_system_time(t: f64) -> SystemTime {
    if t.is_finite() && t >= 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(t)
    } else {
        UNIX_EPOCH
    }
}

/// A readable view of a stored value: the value file itself for large values (with its
/// path, e.g. for `X-Accel-Redirect`), or the bytes in memory for small ones.
///
/// ```no_run
/// # fn main() -> diskcache::Result<()> {
/// use std::io::Read;
/// let cache = diskcache::Cache::temp()?;
/// cache.set_reader("video", std::io::repeat(7).take(1 << 20))?;
/// let mut reader = cache.read("video")?.expect("stored");
/// assert!(reader.path().is_some());
/// let mut first = [0u8; 4];
/// reader.read_exact(&mut first).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ValueReader {
    inner: Inner,
    pos: u64,
    len: u64,
    path: Option<PathBuf>,
    /// For a value file: its recorded CRC, checked when it has been read through from the
    /// start in order (a damaged file then ends in an error instead of the end of the value).
    check: Option<Check>,
}

#[derive(Debug)]
struct Check {
    expected: u32,
    hasher: crc32fast::Hasher,
    /// Bytes hashed, all from the start in order.
    hashed: u64,
    failed: bool,
}

#[derive(Debug)]
enum Inner {
    File(Arc<dyn StorageFile>),
    Memory(Vec<u8>),
}

impl ValueReader {
    /// A reader of a value file of `len` bytes (already checked) whose contents have CRC
    /// `crc`.
    pub(crate) fn file(
        file: Arc<dyn StorageFile>,
        len: u64,
        crc: u32,
        path: PathBuf,
    ) -> ValueReader {
        ValueReader {
            inner: Inner::File(file),
            pos: 0,
            len,
            path: Some(path),
            check: Some(Check {
                expected: crc,
                hasher: crc32fast::Hasher::new(),
                hashed: 0,
                failed: false,
            }),
        }
    }

    pub(crate) fn memory(bytes: Vec<u8>) -> ValueReader {
        ValueReader {
            len: bytes.len() as u64,
            inner: Inner::Memory(bytes),
            pos: 0,
            path: None,
            check: None,
        }
    }

    /// The value file's path, if the value lives in one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ValueReader {
    fn damaged(&self, what: &str) -> io::Error {
        let file = self
            .path
            .as_deref()
            .map_or_else(String::new, |p| format!(" {}", p.display()));
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("value file{file} {what}"),
        )
    }
}

impl Read for ValueReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            // The end of the value: if it was read through, it must match its checksum.
            if let Some(c) = &mut self.check {
                if c.hashed == self.len && (c.failed || c.hasher.clone().finalize() != c.expected) {
                    c.failed = true;
                    return Err(self.damaged("does not match its checksum (damaged)"));
                }
            }
            return Ok(0);
        }
        let want = ((self.len - self.pos) as usize).min(buf.len());
        let n = match &self.inner {
            Inner::File(f) => {
                let n = f.read_at(self.pos, &mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(self.damaged("is shorter than its record says (damaged)"));
                }
                n
            }
            Inner::Memory(b) => {
                let start = self.pos as usize;
                let src = b.get(start..start + want).unwrap_or(&[]);
                buf[..src.len()].copy_from_slice(src);
                src.len()
            }
        };
        if let Some(c) = &mut self.check {
            if c.hashed == self.pos {
                c.hasher.update(&buf[..n]);
                c.hashed += n as u64;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ValueReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t;
                Ok(t)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}
