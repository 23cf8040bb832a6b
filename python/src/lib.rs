//! `diskcache._core`: the native half of the Python package. A `Store` is one handle on a
//! cache directory; the Python classes in `diskcache.core` sit over it. Every call that
//! touches the disk or waits for the writer lock runs with the GIL released.

mod codec;
mod disk;
mod errors;
mod store;
mod stream;

use codec::{Codec, Encoded};
use disk::DiskRecord;
use diskcache::{Cache, Number, TxnControl, ValueKind};
use errors::to_py;
use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;
use store::{shape, OnRefused, Want};

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
    pub(crate) cache: Cache,
    pub(crate) codec: Py<Codec>,
    /// Files of a custom Disk whose entries this handle's operations removed or replaced,
    /// per thread, for the Python side to remove (`take_displaced`); kept only for a
    /// handle whose Disk writes such files (`keeps_displaced`).
    pub(crate) displaced: Mutex<HashMap<ThreadId, Vec<String>>>,
    pub(crate) keeps_displaced: bool,
}

fn number(obj: &Bound<'_, PyAny>) -> PyResult<Number> {
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Number::Float(obj.extract()?));
    }
    // Any int (bools and int subclasses too): python-diskcache adds with Python's `+`.
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Number::Int).map_err(|_| {
            PyOverflowError::new_err("Python int too large to store as a 64-bit integer")
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
    /// `keeps_displaced`: keep the names of custom-Disk files whose entries are gone, for
    /// `take_displaced` (a Cache with a custom Disk removes them).
    #[new]
    #[pyo3(signature = (directory, timeout, codec, min_file_size=None, keeps_displaced=false))]
    fn new(
        py: Python<'_>,
        directory: String,
        timeout: f64,
        codec: Py<Codec>,
        min_file_size: Option<u64>,
        keeps_displaced: bool,
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
            displaced: Mutex::new(HashMap::new()),
            keeps_displaced,
        })
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
        let want = Want { expire_time, tag };
        self.found_py(py, &k, got, now, OnRefused::RemoveQuietly, default, want)
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
        let t = self.tag_arg(py, tag)?;
        let prepared = self.prepare_for(py, value, read, &k, long.as_deref())?;
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
        let want = Want { expire_time, tag };
        self.found_py(py, &k, got, now, OnRefused::Gone, default, want)
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
            Err(diskcache::Error::KeyNotFound) => Err(PyKeyError::new_err(key.clone().unbind())),
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
        let t = self.tag_arg(py, tag)?;
        let et = secs(expire.map(|e| now + e));
        let prefix = prefix.as_deref();
        let push_prepared = |prepared| {
            self.op(py, now, || {
                self.cache
                    .raw_push(prepared, prefix, front, et, t.clone(), retry)
            })
        };
        let key = if read {
            push_prepared(self.prepare_stream(py, value)?)?
        } else {
            match self.codec(py).encode(value)? {
                Encoded::Done(kind, bytes) => push_prepared(
                    py.detach(|| self.cache.prepare_bytes(kind, bytes))
                        .map_err(to_py)?,
                )?,
                // A pickle is sealed against the key the push takes, inside its
                // transaction.
                Encoded::Pickle(p) => {
                    let sealer = self.codec(py).sealer(py)?;
                    let value = |key: &[u8]| Ok((ValueKind::Python, sealer.seal(&p, key)));
                    self.op(py, now, || {
                        self.cache
                            .raw_push_keyed(value, prefix, front, et, t.clone(), retry)
                    })?
                }
            }
        };
        self.key_py(py, &key)
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
        let prefix = prefix.as_deref();
        let want = Want { expire_time, tag };
        if take {
            self.first_item(py, now, OnRefused::Gone, want, || {
                self.cache.raw_pull(prefix, front, retry)
            })
        } else {
            self.first_item(py, now, OnRefused::Remove { retry }, want, || {
                self.cache.raw_peek(prefix, front, retry)
            })
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
        let want = Want { expire_time, tag };
        self.first_item(py, now, OnRefused::Remove { retry }, want, || {
            self.cache.raw_peekitem(last, retry)
        })
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
        let Some(t) = self.tag_arg(py, Some(tag))? else {
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

    /// Takes the names (relative to the directory) of custom-Disk files whose entries this
    /// thread's operations removed or replaced; the caller removes them.
    fn take_displaced(&self) -> Vec<String> {
        self.take_displaced_here()
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

    /// A custom Disk's `get`: `(key, mode, filename, db_value, expire_time, tag)` (see
    /// `disk_hit` in store.rs) or None.
    #[pyo3(signature = (db_key, raw, now))]
    fn disk_get(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
        now: f64,
    ) -> PyResult<Option<Py<PyAny>>> {
        let k = self.db_key(py, db_key, raw)?;
        match self.op(py, now, || self.cache.raw_get(&k, false))? {
            Some(found) => self.disk_hit(py, &k, found, now, OnRefused::RemoveQuietly, false),
            None => Ok(None),
        }
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
        let t = self.tag_arg(py, tag)?;
        let mut record = DiskRecord::from_py(mode, filename.as_deref(), db_value)?;
        if record.unsealed() {
            record.seal(&self.codec(py).sealer(py)?, &k);
        }
        let bytes = record.to_bytes();
        let prepared = py
            .detach(|| self.cache.prepare_bytes(ValueKind::Python, bytes))
            .map_err(to_py)?;
        let et = secs(expire.map(|e| now + e));
        self.op(py, now, || {
            self.cache
                .raw_put(&k, prepared, et, t, only_if_absent, retry)
        })
    }

    /// A custom Disk's `pop`: as `disk_get`, removing the item.
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
        match self.op(py, now, || self.cache.raw_pop(&k, retry))? {
            Some(found) => self.disk_hit(py, &k, found, now, OnRefused::Gone, false),
            None => Ok(None),
        }
    }

    /// A custom Disk's `pull` (take) or `peek`: `(db_key, raw, key, mode, filename,
    /// db_value, expire_time, tag)`, None when the queue is empty, or False when the item
    /// at the end was a refused default-Disk pickle (dropped: look again).
    #[pyo3(signature = (take, now, prefix=None, front=true, retry=false))]
    fn disk_pull(
        &self,
        py: Python<'_>,
        take: bool,
        now: f64,
        prefix: Option<String>,
        front: bool,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let prefix = prefix.as_deref();
        if take {
            self.disk_item(py, now, OnRefused::Gone, || {
                self.cache.raw_pull(prefix, front, retry)
            })
        } else {
            self.disk_item(py, now, OnRefused::Remove { retry }, || {
                self.cache.raw_peek(prefix, front, retry)
            })
        }
    }

    /// A custom Disk's `peekitem`, shaped as `disk_pull`'s items.
    #[pyo3(signature = (last, now, retry=false))]
    fn disk_peekitem(
        &self,
        py: Python<'_>,
        last: bool,
        now: f64,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        self.disk_item(py, now, OnRefused::Remove { retry }, || {
            self.cache.raw_peekitem(last, retry)
        })
    }

    /// Removes the entry under the stored key `key` if it still holds the record `(mode,
    /// filename, db_value)` (expired or not): a custom Disk's value that was refused. A
    /// value the default Disk wrote reaches a custom Disk as `(MODE_PICKLE, None,
    /// payload)`, and is matched as that payload. Returns whether it removed it.
    #[pyo3(signature = (key, mode, filename, db_value, now, retry=false))]
    #[allow(clippy::too_many_arguments)]
    fn disk_discard(
        &self,
        py: Python<'_>,
        key: Vec<u8>,
        mode: u8,
        filename: Option<String>,
        db_value: &Bound<'_, PyAny>,
        now: f64,
        retry: bool,
    ) -> PyResult<bool> {
        let record = DiskRecord::from_py(mode, filename.as_deref(), db_value)?;
        // The forms the entry may have: the Disk's record, or a default-Disk payload.
        let mut forms = vec![record.to_bytes()];
        if let (disk::DbValue::Bytes(b), true, disk::MODE_PICKLE) =
            (&record.value, record.name.is_empty(), mode)
        {
            forms.push(b.clone());
        }
        self.op(py, now, || {
            for form in &forms {
                if self
                    .cache
                    .raw_remove_value(&key, ValueKind::Python, form, retry)?
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    /// A custom Disk's `incr` of a live item: adds `delta` to a raw number (the record a
    /// Disk stores for an int or a float, or a native number); KeyError if the item is
    /// missing or expired (the caller then stores `default + delta` through the Disk).
    fn disk_incr(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
        delta: &Bound<'_, PyAny>,
        now: f64,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let k = self.db_key(py, db_key, raw)?;
        let delta = number(delta)?;
        let add = |kind: ValueKind, bytes: Option<&[u8]>| {
            let stored = match (kind, bytes) {
                (ValueKind::Python, Some(b)) => DiskRecord::parse(b),
                _ => None,
            };
            let n = stored
                .and_then(|r| r.as_number())
                .ok_or_else(|| {
                    diskcache::Error::TypeMismatch(
                        "incr needs an item whose value is an int or a float".into(),
                    )
                })?
                .plus(delta)?;
            Ok((ValueKind::Python, DiskRecord::number(n).to_bytes(), n))
        };
        match self.op_raw(py, now, || self.cache.raw_update(&k, retry, add)) {
            Ok(n) => number_py(py, n),
            Err(diskcache::Error::KeyNotFound) => Err(PyKeyError::new_err(db_key.clone().unbind())),
            Err(e) => Err(to_py(e)),
        }
    }

    /// A custom Disk's `push`: stores its record under the next queue key (an unsealed
    /// pickle is sealed against that key, inside the transaction); returns the key.
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
        let t = self.tag_arg(py, tag)?;
        let record = DiskRecord::from_py(mode, filename.as_deref(), db_value)?;
        let sealer = self.codec(py).sealer_if(py, record.unsealed())?;
        let et = secs(expire.map(|e| now + e));
        let value = |key: &[u8]| {
            let mut r = record.clone();
            if let Some(sealer) = &sealer {
                r.seal(sealer, key);
            }
            Ok((ValueKind::Python, r.to_bytes()))
        };
        let key = self.op(py, now, || {
            self.cache
                .raw_push_keyed(value, prefix.as_deref(), front, et, t, retry)
        })?;
        self.key_py(py, &key)
    }
}

impl Store {
    /// A pushed item's key as Python sees it.
    fn key_py(&self, py: Python<'_>, key: &[u8]) -> PyResult<Py<PyAny>> {
        Ok(self
            .codec(py)
            .key_to_py(py, key)?
            .map_or_else(|| py.None(), Bound::unbind))
    }

    /// The first item a custom Disk's queue read or `peekitem` finds (see `disk_pull`).
    fn disk_item(
        &self,
        py: Python<'_>,
        now: f64,
        on_refused: OnRefused,
        read: impl FnOnce() -> diskcache::Result<Option<(Vec<u8>, diskcache::RawFound)>> + Send,
    ) -> PyResult<Py<PyAny>> {
        let Some((key, found)) = self.op(py, now, read)? else {
            return Ok(py.None());
        };
        match self.disk_hit(py, &key, found, now, on_refused, true)? {
            Some(item) => Ok(item),
            None => Ok(false.into_pyobject(py)?.to_owned().into_any().unbind()),
        }
    }
}

/// `value`, or a tuple with the expire time and/or tag (python-diskcache's result shapes),
/// for the Python side's reads through a custom Disk.
#[pyfunction]
#[pyo3(name = "shape")]
fn shape_py(
    py: Python<'_>,
    value: Py<PyAny>,
    expire_time: Option<f64>,
    tag: Py<PyAny>,
    want_expire: bool,
    want_tag: bool,
) -> PyResult<Py<PyAny>> {
    let want = Want {
        expire_time: want_expire,
        tag: want_tag,
    };
    shape(py, value, expire_time, tag, want)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Store>()?;
    m.add_class::<Codec>()?;
    m.add_class::<StoredKey>()?;
    m.add_function(wrap_pyfunction!(shape_py, m)?)?;
    Ok(())
}
