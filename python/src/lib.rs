//! `diskcache._core`: the native half of the Python package. A `Store` is one handle on a
//! cache directory; the Python classes in `diskcache.core` sit over it. Every call that
//! touches the disk or waits for the writer lock runs with the GIL released.

mod codec;
mod errors;

use codec::{
    is_digest, push_binding, stored_key, unwrap_long, wrap_long, Codec, Decoded, PY_DISK,
    PY_LONG_KEY, TAG_PY_DISK,
};
use diskcache::{
    take_displaced_files, with_clock, Cache, Number, Prepared, RawData, RawFound, TxnControl,
    ValueKind,
};
use errors::to_py;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::io::Read;
use std::os::fd::IntoRawFd;
use std::time::Duration;

/// A key stored by code other than this package (a Rust composite key, or a custom Disk's
/// key), passed around in its encoding so it can be looked up again.
#[pyclass(frozen, module = "diskcache._core", eq, hash)]
#[derive(PartialEq, Hash)]
pub struct StoredKey {
    pub bytes: Vec<u8>,
}

#[pymethods]
impl StoredKey {
    #[new]
    fn new(bytes: Vec<u8>) -> StoredKey {
        StoredKey { bytes }
    }

    #[getter]
    fn encoded<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes)
    }

    fn __repr__(&self) -> String {
        match diskcache::Key::from_bytes(&self.bytes) {
            Ok(k) => format!("StoredKey({k})"),
            Err(_) => format!("StoredKey({:?})", self.bytes),
        }
    }
}

static WRAP_FD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Custom-Disk modes (python-diskcache's `MODE_*`).
const MODE_RAW: u8 = 1;
const MODE_BINARY: u8 = 2;
const MODE_TEXT: u8 = 3;
const MODE_PICKLE: u8 = 4;

/// Names a custom Disk may not use at the top of the cache directory: the engine's own.
const RESERVED: [&str; 5] = ["meta", "log", "index", "values", "procs"];

/// Checks a file name a custom Disk gave (relative to the cache directory): relative, no
/// `.` or `..` components, no NUL or backslash, not one of the engine's own files.
fn valid_disk_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 4096 || name.starts_with('/') || name.contains(['\0', '\\'])
    {
        return false;
    }
    let mut parts = name.split('/');
    if let Some(first) = parts.clone().next() {
        if RESERVED.contains(&first) {
            return false;
        }
    }
    parts.all(|p| !p.is_empty() && p != "." && p != "..")
}

/// A Python file object read as a stream, `chunk` bytes per `read` call.
struct PyStream<'a, 'py> {
    file: &'a Bound<'py, PyAny>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PyStream<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() {
            let chunk = self
                .file
                .call_method1("read", (4usize << 20,))
                .and_then(|c| c.extract::<Vec<u8>>())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.buf = chunk;
            self.pos = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// The time now, for operations whose caller gives none.
fn diskcache_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn secs(x: Option<f64>) -> Option<f64> {
    x.filter(|t| t.is_finite())
}

/// A handle on a cache directory.
#[pyclass(frozen, module = "diskcache._core")]
pub struct Store {
    cache: Cache,
    codec: Py<Codec>,
    /// Files of a custom Disk whose entries this handle's operations removed or replaced,
    /// for the Python side to remove (`take_displaced`).
    displaced: std::sync::Mutex<Vec<String>>,
}

/// What a read returns before decoding.
struct Hit {
    key: Option<Vec<u8>>,
    found: RawFound,
}

impl Store {
    /// Runs a cache operation with the GIL released and the caller's clock, keeping the
    /// custom-Disk files it displaced.
    fn op<R: Send>(
        &self,
        py: Python<'_>,
        now: f64,
        f: impl FnOnce() -> diskcache::Result<R> + Send,
    ) -> PyResult<R> {
        self.op_raw(py, now, f).map_err(to_py)
    }

    /// [`Store::op`], with the engine's error.
    fn op_raw<R: Send>(
        &self,
        py: Python<'_>,
        now: f64,
        f: impl FnOnce() -> diskcache::Result<R> + Send,
    ) -> diskcache::Result<R> {
        let (r, names) = py.detach(|| {
            let r = with_clock(now, f);
            (r, take_displaced_files())
        });
        if !names.is_empty() {
            if let Ok(mut d) = self.displaced.lock() {
                // Bounded: a handle that never takes them (no custom Disk) keeps few.
                let room = 100_000usize.saturating_sub(d.len());
                d.extend(names.into_iter().take(room));
            }
        }
        r
    }

    fn codec<'py>(&'py self, py: Python<'py>) -> &'py Codec {
        self.codec.bind(py).get()
    }

    fn tag_key(&self, py: Python<'_>, tag: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
        if tag.is_none() {
            return Ok(None);
        }
        let native = tag.is_exact_instance_of::<PyString>()
            || tag.is_exact_instance_of::<PyBytes>()
            || tag.is_exact_instance_of::<PyFloat>()
            || (tag.is_exact_instance_of::<PyInt>() && tag.extract::<i64>().is_ok());
        if !native {
            return Err(PyTypeError::new_err(
                "a tag must be a str, bytes, int (64-bit) or float",
            ));
        }
        Ok(Some(self.codec(py).key(tag)?))
    }

    fn tag_py(&self, py: Python<'_>, tag: Option<&[u8]>) -> PyResult<Py<PyAny>> {
        match tag {
            None => Ok(py.None()),
            Some(t) => Ok(self
                .codec(py)
                .key_to_py(py, t)?
                .map_or_else(|| py.None(), Bound::unbind)),
        }
    }

    /// The Python value of a raw hit; `None` if it was refused (and is removed).
    fn value_py<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        data: RawData,
        kind: ValueKind,
        now: f64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let bytes = match data {
            RawData::Bytes(b) => b,
            RawData::File(f, path) => {
                let wrap = WRAP_FD.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py.import("diskcache.core")?.getattr("_wrap_fd")?.unbind())
                })?;
                let fd = f.into_raw_fd();
                return Ok(Some(
                    wrap.bind(py)
                        .call1((fd, path.to_string_lossy().into_owned()))?,
                ));
            }
        };
        let decoded = if kind == ValueKind::Python && bytes.first() == Some(&PY_LONG_KEY) {
            match unwrap_long(&bytes) {
                Some((full, inner_kind, inner)) if stored_key(full.to_vec()).0 == key => {
                    self.codec(py).decode(py, inner_kind, inner, Some(full))?
                }
                _ => Decoded::Refused,
            }
        } else {
            self.codec(py).decode(py, kind, &bytes, Some(key))?
        };
        match decoded {
            Decoded::Value(v) => Ok(Some(v)),
            Decoded::Refused => {
                // A pickle that fails its MAC is never loaded; it is removed as damage.
                let _ = self.op(py, now, || self.cache.raw_delete(key, false));
                Ok(None)
            }
        }
    }

    fn shape(
        py: Python<'_>,
        value: Py<PyAny>,
        expire_time: Option<f64>,
        tag: Py<PyAny>,
        want_expire: bool,
        want_tag: bool,
    ) -> PyResult<Py<PyAny>> {
        let et = match expire_time {
            Some(t) => t.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        };
        Ok(match (want_expire, want_tag) {
            (true, true) => PyTuple::new(py, [value, et, tag])?.into_any().unbind(),
            (true, false) => PyTuple::new(py, [value, et])?.into_any().unbind(),
            (false, true) => PyTuple::new(py, [value, tag])?.into_any().unbind(),
            (false, false) => value,
        })
    }

    /// The stored key of a Python key, and its full encoding if that is long.
    fn skey(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Option<Vec<u8>>)> {
        Ok(stored_key(self.codec(py).key(key)?))
    }

    /// The full key behind a stored key: itself, or what its value carries.
    fn full_key(&self, py: Python<'_>, key: &[u8], found: Option<&RawFound>) -> PyResult<Vec<u8>> {
        if !is_digest(key) {
            return Ok(key.to_vec());
        }
        let owned;
        let found = match found {
            Some(f) => f,
            None => {
                let got = py
                    .detach(|| self.cache.raw_get(key, false))
                    .map_err(to_py)?;
                owned = got.ok_or_else(|| errors::corrupt("long key vanished".into()))?;
                &owned
            }
        };
        match &found.data {
            RawData::Bytes(b) => match unwrap_long(b) {
                Some((full, _, _)) if stored_key(full.to_vec()).0 == key => Ok(full.to_vec()),
                _ => Err(errors::corrupt("long key's value does not carry it".into())),
            },
            RawData::File(..) => Err(errors::corrupt("long key's value is a file".into())),
        }
    }

    fn prepare(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        read: bool,
        binding: &[u8],
    ) -> PyResult<Prepared> {
        self.prepare_for(py, value, read, binding, None)
    }

    fn prepare_for(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        read: bool,
        binding: &[u8],
        long: Option<&[u8]>,
    ) -> PyResult<Prepared> {
        if let Some(full) = long {
            if read {
                return Err(PyValueError::new_err(
                    "read=True values cannot be stored under keys longer than 1 MiB",
                ));
            }
            let (kind, bytes) = self.codec(py).value(value, binding)?;
            let wrapped = wrap_long(full, kind, &bytes);
            return py
                .detach(|| self.cache.prepare_bytes(ValueKind::Python, wrapped))
                .map_err(to_py);
        }
        if read {
            let mut stream = PyStream {
                file: value,
                buf: Vec::new(),
                pos: 0,
            };
            return self
                .cache
                .prepare_stream(ValueKind::Bytes, &mut stream)
                .map_err(to_py);
        }
        let (kind, bytes) = self.codec(py).value(value, binding)?;
        py.detach(|| self.cache.prepare_bytes(kind, bytes))
            .map_err(to_py)
    }

    /// Decodes a queue or peekitem hit into `((key, value), expire_time, tag)` shapes.
    fn item_py(
        &self,
        py: Python<'_>,
        hit: Hit,
        now: f64,
        want_expire: bool,
        want_tag: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let key = hit.key.unwrap_or_default();
        let full = self.full_key(py, &key, Some(&hit.found))?;
        let Some(v) = self.value_py(py, &key, hit.found.data, hit.found.kind, now)? else {
            return Ok(None);
        };
        let k = match self.codec(py).key_to_py(py, &full)? {
            Some(k) => k.unbind(),
            None => py.None(),
        };
        let pair = PyTuple::new(py, [k, v.unbind()])?.into_any().unbind();
        let tag = self.tag_py(py, hit.found.tag.as_deref())?;
        Ok(Some(Self::shape(
            py,
            pair,
            hit.found.expire_time,
            tag,
            want_expire,
            want_tag,
        )?))
    }

    fn db_key(&self, py: Python<'_>, db_key: &Bound<'_, PyAny>, raw: bool) -> PyResult<Vec<u8>> {
        if raw {
            let native = db_key.is_exact_instance_of::<PyString>()
                || db_key.is_exact_instance_of::<PyBytes>()
                || db_key.is_exact_instance_of::<PyFloat>()
                || (db_key.is_exact_instance_of::<PyInt>() && db_key.extract::<i64>().is_ok());
            if !native {
                return Err(PyTypeError::new_err(
                    "a Disk's raw key must be a str, bytes, 64-bit int or float",
                ));
            }
            return self.codec(py).key(db_key);
        }
        let b: Vec<u8> = db_key
            .extract()
            .map_err(|_| PyTypeError::new_err("a Disk's non-raw key must be bytes"))?;
        let mut out = Vec::with_capacity(1 + b.len());
        out.push(TAG_PY_DISK);
        out.extend_from_slice(&b);
        Ok(out)
    }

    /// `(db_key, raw)` as a custom Disk's `get` expects them.
    fn db_key_py(&self, py: Python<'_>, key: &[u8]) -> PyResult<(Py<PyAny>, bool)> {
        match key.split_first() {
            Some((&TAG_PY_DISK, rest)) => Ok((PyBytes::new(py, rest).into_any().unbind(), false)),
            Some((&(0x50 | 0x60), _)) => Ok((PyBytes::new(py, key).into_any().unbind(), false)),
            _ => Ok((
                self.codec(py)
                    .key_to_py(py, key)?
                    .map_or_else(|| py.None(), Bound::unbind),
                true,
            )),
        }
    }

    /// `(mode, filename, db_value)` of a raw hit, as a custom Disk's `fetch` expects them.
    fn disk_record(&self, py: Python<'_>, found: RawFound) -> PyResult<(u8, Py<PyAny>, Py<PyAny>)> {
        let bytes = match found.data {
            RawData::Bytes(b) => b,
            RawData::File(..) => return Err(PyValueError::new_err("unexpected open file")),
        };
        let none = py.None();
        Ok(match found.kind {
            ValueKind::Python => match bytes.split_first() {
                Some((&PY_DISK, rest)) => {
                    let mut r = rest.iter().copied();
                    let bad = || errors::corrupt("custom Disk record".into());
                    let mode = r.next().ok_or_else(bad)?;
                    let name_len = rest.get(1..5).ok_or_else(bad)?;
                    let name_len =
                        u32::from_le_bytes(name_len.try_into().map_err(|_| bad())?) as usize;
                    let name = rest.get(5..5 + name_len).ok_or_else(bad)?;
                    let after = rest.get(5 + name_len..).ok_or_else(bad)?;
                    let filename = if name.is_empty() {
                        py.None()
                    } else {
                        let n = std::str::from_utf8(name).map_err(|_| bad())?;
                        if !valid_disk_name(n) {
                            return Err(bad());
                        }
                        PyString::new(py, n).into_any().unbind()
                    };
                    let (&vtype, payload) = after.split_first().ok_or_else(bad)?;
                    let value = match vtype {
                        0 => py.None(),
                        1 => PyBytes::new(py, payload).into_any().unbind(),
                        2 => PyString::new(py, std::str::from_utf8(payload).map_err(|_| bad())?)
                            .into_any()
                            .unbind(),
                        3 => i64::from_le_bytes(payload.try_into().map_err(|_| bad())?)
                            .into_pyobject(py)?
                            .into_any()
                            .unbind(),
                        4 => PyFloat::new(
                            py,
                            f64::from_le_bytes(payload.try_into().map_err(|_| bad())?),
                        )
                        .into_any()
                        .unbind(),
                        _ => return Err(bad()),
                    };
                    (mode, filename, value)
                }
                _ => (
                    MODE_PICKLE,
                    none,
                    PyBytes::new(py, &bytes).into_any().unbind(),
                ),
            },
            kind => match self.codec(py).decode(py, kind, &bytes, None)? {
                Decoded::Value(v) => (MODE_RAW, none, v.unbind()),
                Decoded::Refused => (MODE_RAW, none.clone_ref(py), none),
            },
        })
    }

    fn disk_hit(&self, py: Python<'_>, hit: Hit, want_key: bool) -> PyResult<Py<PyAny>> {
        let et = hit.found.expire_time;
        let tag = self.tag_py(py, hit.found.tag.as_deref())?;
        let key = hit.key.unwrap_or_default();
        let (mode, filename, value) = self.disk_record(py, hit.found)?;
        let et = match et {
            Some(t) => t.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        };
        let mode = mode.into_pyobject(py)?.into_any().unbind();
        if want_key {
            let (k, raw) = self.db_key_py(py, &key)?;
            let raw = raw.into_pyobject(py)?.to_owned().into_any().unbind();
            Ok(PyTuple::new(py, [k, raw, mode, filename, value, et, tag])?
                .into_any()
                .unbind())
        } else {
            Ok(PyTuple::new(py, [mode, filename, value, et, tag])?
                .into_any()
                .unbind())
        }
    }
}

fn number(obj: &Bound<'_, PyAny>) -> PyResult<Number> {
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Number::Float(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<pyo3::types::PyBool>()
        || obj.is_exact_instance_of::<pyo3::types::PyBool>()
    {
        return obj.extract::<i64>().map(Number::Int).map_err(|_| {
            pyo3::exceptions::PyOverflowError::new_err(
                "Python int too large to store as a 64-bit integer",
            )
        });
    }
    Err(PyTypeError::new_err("incr needs an int or a float delta"))
}

fn number_py(py: Python<'_>, n: Number) -> PyResult<Py<PyAny>> {
    Ok(match n {
        Number::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Number::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
    })
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (directory, timeout, codec, min_file_size=None))]
    fn new(
        py: Python<'_>,
        directory: String,
        timeout: f64,
        codec: Py<Codec>,
        min_file_size: Option<u64>,
    ) -> PyResult<Store> {
        let t = if timeout.is_finite() && timeout >= 0.0 {
            Duration::from_secs_f64(timeout.min(1e9))
        } else {
            Duration::MAX
        };
        let cache = py
            .detach(|| {
                let mut b = Cache::builder().timeout(t);
                if let Some(m) = min_file_size {
                    b = b.min_file_size(m);
                }
                b.open(&directory)
            })
            .map_err(to_py)?;
        Ok(Store {
            cache,
            codec,
            displaced: std::sync::Mutex::new(Vec::new()),
        })
    }

    #[getter]
    fn codec_obj(&self, py: Python<'_>) -> Py<Codec> {
        self.codec.clone_ref(py)
    }

    /// The encoded key of `key`.
    fn encode_key<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.codec(py).key(key)?))
    }

    #[pyo3(signature = (key, now, default, read=false, expire_time=false, tag=false))]
    #[allow(clippy::too_many_arguments)]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        now: f64,
        default: Py<PyAny>,
        read: bool,
        expire_time: bool,
        tag: bool,
    ) -> PyResult<Py<PyAny>> {
        let (k, _) = self.skey(py, key)?;
        let got = self.op(py, now, || self.cache.raw_get(&k, read))?;
        if let Some(f) = got {
            let (et, t) = (f.expire_time, f.tag.clone());
            if let Some(v) = self.value_py(py, &k, f.data, f.kind, now)? {
                if !expire_time && !tag {
                    return Ok(v.unbind());
                }
                let t = self.tag_py(py, t.as_deref())?;
                return Self::shape(py, v.unbind(), et, t, expire_time, tag);
            }
        }
        Self::shape(py, default, None, py.None(), expire_time, tag)
    }

    #[pyo3(signature = (key, value, now, expire=None, read=false, tag=None, retry=false, only_if_absent=false))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        now: f64,
        expire: Option<f64>,
        read: bool,
        tag: Option<&Bound<'_, PyAny>>,
        retry: bool,
        only_if_absent: bool,
    ) -> PyResult<bool> {
        let (k, long) = self.skey(py, key)?;
        let t = match tag {
            Some(t) => self.tag_key(py, t)?,
            None => None,
        };
        let binding = long.clone().unwrap_or_else(|| k.clone());
        let prepared = self.prepare_for(py, value, read, &binding, long.as_deref())?;
        let et = secs(expire.map(|e| now + e));
        self.op(py, now, || {
            self.cache
                .raw_put(&k, prepared, et, t, only_if_absent, retry)
        })
    }

    fn contains(&self, py: Python<'_>, key: &Bound<'_, PyAny>, now: f64) -> PyResult<bool> {
        let (k, _) = self.skey(py, key)?;
        self.op(py, now, || self.cache.raw_contains(&k))
    }

    fn delete(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        now: f64,
        retry: bool,
    ) -> PyResult<bool> {
        let (k, _) = self.skey(py, key)?;
        self.op(py, now, || self.cache.raw_delete(&k, retry))
    }

    #[pyo3(signature = (key, now, default, expire_time=false, tag=false, retry=false))]
    #[allow(clippy::too_many_arguments)]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        now: f64,
        default: Py<PyAny>,
        expire_time: bool,
        tag: bool,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let (k, _) = self.skey(py, key)?;
        let got = self.op(py, now, || self.cache.raw_pop(&k, retry))?;
        if let Some(f) = got {
            let (et, t) = (f.expire_time, f.tag.clone());
            if let Some(v) = self.value_py(py, &k, f.data, f.kind, now)? {
                let t = self.tag_py(py, t.as_deref())?;
                return Self::shape(py, v.unbind(), et, t, expire_time, tag);
            }
        }
        Self::shape(py, default, None, py.None(), expire_time, tag)
    }

    fn touch(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        now: f64,
        expire: Option<f64>,
        retry: bool,
    ) -> PyResult<bool> {
        let (k, _) = self.skey(py, key)?;
        let et = secs(expire.map(|e| now + e));
        self.op(py, now, || self.cache.raw_touch(&k, et, retry))
    }

    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        delta: &Bound<'_, PyAny>,
        default: &Bound<'_, PyAny>,
        now: f64,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let (k, _) = self.skey(py, key)?;
        let delta = number(delta)?;
        let default = if default.is_none() {
            None
        } else {
            Some(number(default)?)
        };
        match self.op_raw(py, now, || self.cache.raw_incr(&k, delta, default, retry)) {
            Ok(n) => number_py(py, n),
            Err(diskcache::Error::KeyNotFound) => {
                Err(pyo3::exceptions::PyKeyError::new_err(key.clone().unbind()))
            }
            Err(e) => Err(to_py(e)),
        }
    }

    #[pyo3(signature = (value, now, prefix=None, front=false, expire=None, read=false, tag=None, retry=false))]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        now: f64,
        prefix: Option<String>,
        front: bool,
        expire: Option<f64>,
        read: bool,
        tag: Option<&Bound<'_, PyAny>>,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let t = match tag {
            Some(t) => self.tag_key(py, t)?,
            None => None,
        };
        let prepared = self.prepare(py, value, read, &push_binding(prefix.as_deref()))?;
        let et = secs(expire.map(|e| now + e));
        let key = self.op(py, now, || {
            self.cache
                .raw_push(prepared, prefix.as_deref(), front, et, t, retry)
        })?;
        Ok(self
            .codec(py)
            .key_to_py(py, &key)?
            .map_or_else(|| py.None(), Bound::unbind))
    }

    /// `pull` (take = true) or `peek`; `None` when the queue is empty.
    #[pyo3(signature = (take, now, prefix=None, front=true, expire_time=false, tag=false, retry=false))]
    #[allow(clippy::too_many_arguments)]
    fn pull(
        &self,
        py: Python<'_>,
        take: bool,
        now: f64,
        prefix: Option<String>,
        front: bool,
        expire_time: bool,
        tag: bool,
        retry: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        loop {
            let got = self.op(py, now, || {
                if take {
                    self.cache.raw_pull(prefix.as_deref(), front, retry)
                } else {
                    self.cache.raw_peek(prefix.as_deref(), front, retry)
                }
            })?;
            let Some((key, found)) = got else {
                return Ok(None);
            };
            let hit = Hit {
                key: Some(key),
                found,
            };
            if let Some(item) = self.item_py(py, hit, now, expire_time, tag)? {
                return Ok(Some(item));
            }
        }
    }

    #[pyo3(signature = (last, now, expire_time=false, tag=false, retry=false))]
    fn peekitem(
        &self,
        py: Python<'_>,
        last: bool,
        now: f64,
        expire_time: bool,
        tag: bool,
        retry: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        loop {
            let got = self.op(py, now, || self.cache.raw_peekitem(last, retry))?;
            let Some((key, found)) = got else {
                return Ok(None);
            };
            let hit = Hit {
                key: Some(key),
                found,
            };
            if let Some(item) = self.item_py(py, hit, now, expire_time, tag)? {
                return Ok(Some(item));
            }
        }
    }

    fn last_rowid(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.cache.raw_last_rowid()).map_err(to_py)
    }

    /// A page of keys: `(keys, cursor)`; `cursor` is None at the end. Pickled keys whose
    /// MAC fails are left out. With `disk`, keys come as `(db_key, raw)` pairs.
    #[pyo3(signature = (sorted, rev, cursor, upto, limit, disk=false))]
    #[allow(clippy::too_many_arguments)]
    fn keys(
        &self,
        py: Python<'_>,
        sorted: bool,
        rev: bool,
        cursor: Option<Vec<u8>>,
        upto: u64,
        limit: usize,
        disk: bool,
    ) -> PyResult<(Py<PyList>, Option<Py<PyBytes>>)> {
        let (keys, next) = py
            .detach(|| {
                self.cache
                    .raw_keys(sorted, rev, cursor.as_deref(), upto, limit)
            })
            .map_err(to_py)?;
        let out = PyList::empty(py);
        for k in keys {
            if disk {
                let (key, raw) = self.db_key_py(py, &k)?;
                out.append((key, raw))?;
            } else {
                let full = match self.full_key(py, &k, None) {
                    Ok(f) => f,
                    Err(_) => continue, // Removed meanwhile, or damaged: skipped.
                };
                if let Some(obj) = self.codec(py).key_to_py(py, &full)? {
                    out.append(obj)?;
                }
            }
        }
        Ok((out.unbind(), next.map(|c| PyBytes::new(py, &c).unbind())))
    }

    fn len(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.cache.len()).map_err(to_py)
    }

    fn volume(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.cache.volume()).map_err(to_py)
    }

    fn clear_some(&self, py: Python<'_>, limit: usize) -> PyResult<u64> {
        self.op(py, diskcache_now(), || self.cache.clear_some(limit))
    }

    fn expire_some(&self, py: Python<'_>, now: f64, limit: usize) -> PyResult<u64> {
        self.op(py, now, || self.cache.expire_some(now, limit))
    }

    fn cull_some(&self, py: Python<'_>, limit: usize) -> PyResult<u64> {
        self.op(py, diskcache_now(), || self.cache.cull_some(limit))
    }

    /// One batch of `evict`: `(removed, next)`; `next` is None when done.
    fn evict_some(
        &self,
        py: Python<'_>,
        tag: &Bound<'_, PyAny>,
        after: u64,
        limit: usize,
    ) -> PyResult<(u64, Option<u64>)> {
        let Some(t) = self.tag_key(py, tag)? else {
            return Ok((0, None));
        };
        self.op(py, diskcache_now(), || {
            self.cache.evict_some(&t, after, limit)
        })
    }

    fn begin(&self, py: Python<'_>, retry: bool) -> PyResult<()> {
        py.detach(|| self.cache.begin_transaction(retry))
            .map_err(to_py)
    }

    fn end(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let how = if commit {
            TxnControl::Commit
        } else {
            TxnControl::Rollback
        };
        py.detach(|| self.cache.end_transaction(how)).map_err(to_py)
    }

    /// Stores a setting given as JSON text; returns the stored value as JSON text.
    fn reset(&self, py: Python<'_>, name: String, value_json: String) -> PyResult<String> {
        let v: serde_json::Value =
            serde_json::from_str(&value_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let stored = py.detach(|| self.cache.reset(&name, v)).map_err(to_py)?;
        Ok(stored.to_string())
    }

    /// Every setting, as JSON text of an object.
    fn settings(&self, py: Python<'_>) -> PyResult<String> {
        let all = py.detach(|| self.cache.settings()).map_err(to_py)?;
        serde_json::to_string(&all).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// A setting or counter as JSON text (None if unknown).
    fn setting(&self, py: Python<'_>, name: String) -> PyResult<Option<String>> {
        let v = py.detach(|| self.cache.setting(&name)).map_err(to_py)?;
        Ok(v.map(|v| v.to_string()))
    }

    fn stats(&self, py: Python<'_>, enable: bool, reset: bool) -> PyResult<(u64, u64)> {
        py.detach(|| self.cache.stats(enable, reset)).map_err(to_py)
    }

    /// `check(fix)`: a list of `(kind, message)` pairs.
    fn check(&self, py: Python<'_>, fix: bool) -> PyResult<Vec<(String, String)>> {
        let w = py.detach(|| self.cache.check(fix)).map_err(to_py)?;
        Ok(w.into_iter()
            .map(|w| (format!("{:?}", w.kind), w.message))
            .collect())
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.cache.clone();
        py.detach(|| c.close()).map_err(to_py)
    }

    /// Takes the names (relative to the directory) of custom-Disk files whose entries are
    /// gone; the caller removes them.
    fn take_displaced(&self) -> Vec<String> {
        self.displaced
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    fn values_dir(&self) -> String {
        self.cache.values_dir().to_string_lossy().into_owned()
    }

    // --- custom Disk: keys and records as the Disk made them ---

    /// The stored key of a custom Disk's `(db_key, raw)`.
    fn disk_key(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
    ) -> PyResult<StoredKey> {
        Ok(StoredKey {
            bytes: self.db_key(py, db_key, raw)?,
        })
    }

    #[pyo3(signature = (db_key, raw, now))]
    fn disk_get(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
        now: f64,
    ) -> PyResult<Option<Py<PyAny>>> {
        let k = self.db_key(py, db_key, raw)?;
        let got = self.op(py, now, || self.cache.raw_get(&k, false))?;
        got.map(|found| self.disk_hit(py, Hit { key: None, found }, false))
            .transpose()
    }

    #[pyo3(signature = (db_key, raw, mode, filename, db_value, now, expire=None, tag=None, retry=false, only_if_absent=false))]
    #[allow(clippy::too_many_arguments)]
    fn disk_set(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
        mode: u8,
        filename: Option<String>,
        db_value: &Bound<'_, PyAny>,
        now: f64,
        expire: Option<f64>,
        tag: Option<&Bound<'_, PyAny>>,
        retry: bool,
        only_if_absent: bool,
    ) -> PyResult<bool> {
        let k = self.db_key(py, db_key, raw)?;
        let t = match tag {
            Some(t) => self.tag_key(py, t)?,
            None => None,
        };
        let record = disk_record_bytes(mode, filename.as_deref(), db_value)?;
        let prepared = py
            .detach(|| self.cache.prepare_bytes(ValueKind::Python, record))
            .map_err(to_py)?;
        let et = secs(expire.map(|e| now + e));
        self.op(py, now, || {
            self.cache
                .raw_put(&k, prepared, et, t, only_if_absent, retry)
        })
    }

    #[pyo3(signature = (db_key, raw, now, retry=false))]
    fn disk_pop(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
        now: f64,
        retry: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let k = self.db_key(py, db_key, raw)?;
        let got = self.op(py, now, || self.cache.raw_pop(&k, retry))?;
        got.map(|found| self.disk_hit(py, Hit { key: None, found }, false))
            .transpose()
    }

    /// A custom Disk's `pull` (take) or `peek`: `(db_key, raw, mode, filename, value,
    /// expire_time, tag)` or None.
    #[pyo3(signature = (take, now, prefix=None, front=true, retry=false))]
    fn disk_pull(
        &self,
        py: Python<'_>,
        take: bool,
        now: f64,
        prefix: Option<String>,
        front: bool,
        retry: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let got = self.op(py, now, || {
            if take {
                self.cache.raw_pull(prefix.as_deref(), front, retry)
            } else {
                self.cache.raw_peek(prefix.as_deref(), front, retry)
            }
        })?;
        got.map(|(key, found)| {
            self.disk_hit(
                py,
                Hit {
                    key: Some(key),
                    found,
                },
                true,
            )
        })
        .transpose()
    }

    #[pyo3(signature = (last, now, retry=false))]
    fn disk_peekitem(
        &self,
        py: Python<'_>,
        last: bool,
        now: f64,
        retry: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let got = self.op(py, now, || self.cache.raw_peekitem(last, retry))?;
        got.map(|(key, found)| {
            self.disk_hit(
                py,
                Hit {
                    key: Some(key),
                    found,
                },
                true,
            )
        })
        .transpose()
    }

    /// A custom Disk's `push`: stores its record under the next queue key; returns the key.
    #[pyo3(signature = (mode, filename, db_value, now, prefix=None, front=false, expire=None, tag=None, retry=false))]
    #[allow(clippy::too_many_arguments)]
    fn disk_push(
        &self,
        py: Python<'_>,
        mode: u8,
        filename: Option<String>,
        db_value: &Bound<'_, PyAny>,
        now: f64,
        prefix: Option<String>,
        front: bool,
        expire: Option<f64>,
        tag: Option<&Bound<'_, PyAny>>,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let t = match tag {
            Some(t) => self.tag_key(py, t)?,
            None => None,
        };
        let record = disk_record_bytes(mode, filename.as_deref(), db_value)?;
        let prepared = py
            .detach(|| self.cache.prepare_bytes(ValueKind::Python, record))
            .map_err(to_py)?;
        let et = secs(expire.map(|e| now + e));
        let key = self.op(py, now, || {
            self.cache
                .raw_push(prepared, prefix.as_deref(), front, et, t, retry)
        })?;
        Ok(self
            .codec(py)
            .key_to_py(py, &key)?
            .map_or_else(|| py.None(), Bound::unbind))
    }
}

/// A custom Disk's record: `0x04, mode, name length u32 LE, name, value type, value`.
fn disk_record_bytes(
    mode: u8,
    filename: Option<&str>,
    db_value: &Bound<'_, PyAny>,
) -> PyResult<Vec<u8>> {
    if !(MODE_RAW..=MODE_PICKLE).contains(&mode) {
        return Err(PyValueError::new_err(format!("unknown Disk mode {mode}")));
    }
    let name = filename.unwrap_or_default();
    if !name.is_empty() && !valid_disk_name(name) {
        return Err(PyValueError::new_err(format!(
            "Disk file name {name:?} must be a plain relative path inside the cache directory"
        )));
    }
    let mut out = vec![PY_DISK, mode];
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    if db_value.is_none() {
        out.push(0);
    } else if let Ok(b) = db_value.cast::<PyBytes>() {
        out.push(1);
        out.extend_from_slice(b.as_bytes());
    } else if db_value.is_instance_of::<pyo3::types::PyByteArray>()
        || db_value.is_instance_of::<pyo3::types::PyMemoryView>()
    {
        out.push(1);
        out.extend_from_slice(&db_value.extract::<Vec<u8>>()?);
    } else if db_value.is_exact_instance_of::<PyString>() {
        out.push(2);
        out.extend_from_slice(db_value.cast::<PyString>()?.to_cow()?.as_bytes());
    } else if db_value.is_exact_instance_of::<PyFloat>() {
        out.push(4);
        out.extend_from_slice(&db_value.extract::<f64>()?.to_le_bytes());
    } else if db_value.is_instance_of::<PyInt>() {
        out.push(3);
        let i: i64 = db_value.extract().map_err(|_| {
            pyo3::exceptions::PyOverflowError::new_err(
                "Python int too large to store as a 64-bit integer",
            )
        })?;
        out.extend_from_slice(&i.to_le_bytes());
    } else {
        return Err(PyTypeError::new_err(
            "a Disk's stored value must be None, bytes, str, int or float",
        ));
    }
    let _ = MODE_BINARY + MODE_TEXT;
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Store>()?;
    m.add_class::<Codec>()?;
    m.add_class::<StoredKey>()?;
    Ok(())
}
