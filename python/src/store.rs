//! The Store's internals: running operations off the GIL, and turning stored keys and
//! values into Python objects (and custom-Disk records into what the Disk expects).

use crate::codec::{
    is_digest, stored_key, unwrap_long, wrap_long, Codec, Decoded, PY_DISK, PY_LONG_KEY,
    TAG_PY_DISK,
};
use crate::disk::{valid_disk_name, MODE_PICKLE, MODE_RAW};
use crate::errors::{self, to_py};
use crate::stream::PyStream;
use crate::Store;
use diskcache::{take_displaced_files, with_clock, Prepared, RawData, RawFound, ValueKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyString, PyTuple};
use std::os::fd::IntoRawFd;

static WRAP_FD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What a read returns before decoding.
pub(crate) struct Hit {
    pub key: Option<Vec<u8>>,
    pub found: RawFound,
}

impl Store {
    /// Runs a cache operation with the GIL released and the caller's clock, keeping the
    /// custom-Disk files it displaced.
    pub(crate) fn op<R: Send>(
        &self,
        py: Python<'_>,
        now: f64,
        f: impl FnOnce() -> diskcache::Result<R> + Send,
    ) -> PyResult<R> {
        self.op_raw(py, now, f).map_err(to_py)
    }

    /// [`Store::op`], with the engine's error.
    pub(crate) fn op_raw<R: Send>(
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

    pub(crate) fn codec<'py>(&'py self, py: Python<'py>) -> &'py Codec {
        self.codec.bind(py).get()
    }

    pub(crate) fn tag_key(
        &self,
        py: Python<'_>,
        tag: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Vec<u8>>> {
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

    pub(crate) fn tag_py(&self, py: Python<'_>, tag: Option<&[u8]>) -> PyResult<Py<PyAny>> {
        match tag {
            None => Ok(py.None()),
            Some(t) => Ok(self
                .codec(py)
                .key_to_py(py, t)?
                .map_or_else(|| py.None(), Bound::unbind)),
        }
    }

    /// The Python value of a raw hit; `None` if it was refused (and is removed).
    pub(crate) fn value_py<'py>(
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

    pub(crate) fn shape(
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
    pub(crate) fn skey(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<(Vec<u8>, Option<Vec<u8>>)> {
        Ok(stored_key(self.codec(py).key(key)?))
    }

    /// The full key behind a stored key: itself, or what its value carries.
    pub(crate) fn full_key(
        &self,
        py: Python<'_>,
        key: &[u8],
        found: Option<&RawFound>,
    ) -> PyResult<Vec<u8>> {
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

    pub(crate) fn prepare(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        read: bool,
        binding: &[u8],
    ) -> PyResult<Prepared> {
        self.prepare_for(py, value, read, binding, None)
    }

    pub(crate) fn prepare_for(
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
    pub(crate) fn item_py(
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

    pub(crate) fn db_key(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
    ) -> PyResult<Vec<u8>> {
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
    pub(crate) fn db_key_py(&self, py: Python<'_>, key: &[u8]) -> PyResult<(Py<PyAny>, bool)> {
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
    pub(crate) fn disk_record(
        &self,
        py: Python<'_>,
        found: RawFound,
    ) -> PyResult<(u8, Py<PyAny>, Py<PyAny>)> {
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

    pub(crate) fn disk_hit(&self, py: Python<'_>, hit: Hit, want_key: bool) -> PyResult<Py<PyAny>> {
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
