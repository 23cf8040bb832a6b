//! The Store's internals: running operations off the GIL, and turning stored keys and
//! values into Python objects (and custom-Disk records into what the Disk expects).

use crate::codec::{
    is_digest, is_native_key, stored_key, unwrap_long, wrap_long, Codec, Decoded, Encoded, PY_DISK,
    PY_LONG_KEY, TAG_PY_DISK, TAG_PY_PICKLE, TAG_PY_PLAIN,
};
use crate::disk::{DiskRecord, MODE_PICKLE, MODE_RAW};
use crate::errors::{self, to_py};
use crate::stream::PyStream;
use crate::Store;
use diskcache::{take_displaced_files, with_clock, Prepared, RawData, RawFound, ValueKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use std::os::fd::IntoRawFd;

static WRAP_FD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Displaced names kept per thread until taken.
const DISPLACED_MAX: usize = 100_000;

/// `(mode, filename, db_value)`: what a custom Disk's `fetch` takes.
pub(crate) type FetchArgs = (u8, Py<PyAny>, Py<PyAny>);

/// Which parts of an entry a read returns besides its value.
#[derive(Clone, Copy)]
pub(crate) struct Want {
    pub expire_time: bool,
    pub tag: bool,
}

/// What to do with an entry whose pickle was refused (its MAC failed).
#[derive(Clone, Copy)]
pub(crate) enum OnRefused {
    /// The read left it in place: remove it if it is unchanged, best effort (a failure
    /// leaves it for the next read).
    RemoveQuietly,
    /// Remove it if it is unchanged, or fail: a loop that looks again must make progress.
    Remove { retry: bool },
    /// The operation took it out already (`pop`, `pull`).
    Gone,
}

/// `value`, or a tuple with the expire time and/or tag, as python-diskcache returns them.
pub(crate) fn shape(
    py: Python<'_>,
    value: Py<PyAny>,
    expire_time: Option<f64>,
    tag: Py<PyAny>,
    want: Want,
) -> PyResult<Py<PyAny>> {
    let et = || -> PyResult<Py<PyAny>> {
        Ok(match expire_time {
            Some(t) => t.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        })
    };
    Ok(match (want.expire_time, want.tag) {
        (true, true) => PyTuple::new(py, [value, et()?, tag])?.into_any().unbind(),
        (true, false) => PyTuple::new(py, [value, et()?])?.into_any().unbind(),
        (false, true) => PyTuple::new(py, [value, tag])?.into_any().unbind(),
        (false, false) => value,
    })
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
        if self.keeps_displaced && !names.is_empty() {
            // Kept for this thread only: another thread's rollback or settling never
            // touches them (the engine reports them per thread, too).
            if let Ok(mut all) = self.displaced.lock() {
                let mine = all.entry(std::thread::current().id()).or_default();
                let room = DISPLACED_MAX.saturating_sub(mine.len());
                mine.extend(names.into_iter().take(room));
            }
        }
        r
    }

    /// Takes the displaced names this thread's operations collected.
    pub(crate) fn take_displaced_here(&self) -> Vec<String> {
        self.displaced
            .lock()
            .ok()
            .and_then(|mut all| all.remove(&std::thread::current().id()))
            .unwrap_or_default()
    }

    pub(crate) fn codec<'py>(&'py self, py: Python<'py>) -> &'py Codec {
        self.codec.bind(py).get()
    }

    /// The encoded tag of a `tag=` argument (None: no tag).
    pub(crate) fn tag_arg(
        &self,
        py: Python<'_>,
        tag: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Vec<u8>>> {
        let Some(tag) = tag.filter(|t| !t.is_none()) else {
            return Ok(None);
        };
        if !is_native_key(tag) {
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

    /// The Python value of a raw hit under `key`; `None` if it was refused.
    pub(crate) fn value_py<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        kind: ValueKind,
        data: RawData,
        now: f64,
        on_refused: OnRefused,
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
                    self.codec(py).decode(py, inner_kind, inner, full)?
                }
                _ => Decoded::Refused,
            }
        } else {
            self.codec(py).decode(py, kind, &bytes, key)?
        };
        match decoded {
            Decoded::Value(v) => Ok(Some(v)),
            Decoded::Refused => {
                // A pickle that fails its MAC is never loaded; it is removed as damage.
                self.drop_refused(py, key, kind, &bytes, now, on_refused)?;
                Ok(None)
            }
        }
    }

    /// Removes an entry whose value was refused, as `on_refused` says.
    pub(crate) fn drop_refused(
        &self,
        py: Python<'_>,
        key: &[u8],
        kind: ValueKind,
        bytes: &[u8],
        now: f64,
        on_refused: OnRefused,
    ) -> PyResult<()> {
        let remove = |retry| {
            self.op(py, now, || {
                self.cache.raw_remove_value(key, kind, bytes, retry)
            })
        };
        match on_refused {
            OnRefused::Gone => Ok(()),
            OnRefused::RemoveQuietly => {
                let _ = remove(false);
                Ok(())
            }
            OnRefused::Remove { retry } => remove(retry).map(drop),
        }
    }

    /// What a `get` or `pop` returns for a raw hit (or a miss): the value, shaped with its
    /// expire time and tag as asked, or the shaped `default`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn found_py(
        &self,
        py: Python<'_>,
        key: &[u8],
        got: Option<RawFound>,
        now: f64,
        on_refused: OnRefused,
        default: Py<PyAny>,
        want: Want,
    ) -> PyResult<Py<PyAny>> {
        if let Some(f) = got {
            let (expire_time, tag) = (f.expire_time, f.tag);
            if let Some(v) = self.value_py(py, key, f.kind, f.data, now, on_refused)? {
                if !want.expire_time && !want.tag {
                    return Ok(v.unbind());
                }
                let tag = self.tag_py(py, tag.as_deref())?;
                return shape(py, v.unbind(), expire_time, tag, want);
            }
        }
        shape(py, default, None, py.None(), want)
    }

    /// The first item a queue read or `peekitem` finds, as `((key, value), expire_time,
    /// tag)` shapes; `None` when there is none. Items whose pickle is refused are dropped
    /// and the read looks again (each refusal removes one, or fails).
    pub(crate) fn first_item(
        &self,
        py: Python<'_>,
        now: f64,
        on_refused: OnRefused,
        want: Want,
        read: impl Fn() -> diskcache::Result<Option<(Vec<u8>, RawFound)>> + Send + Sync,
    ) -> PyResult<Option<Py<PyAny>>> {
        loop {
            let Some((key, found)) = self.op(py, now, &read)? else {
                return Ok(None);
            };
            let full = self.full_key(py, &key, Some(&found))?;
            let (expire_time, tag) = (found.expire_time, found.tag);
            let Some(v) = self.value_py(py, &key, found.kind, found.data, now, on_refused)? else {
                continue;
            };
            let k = match self.codec(py).key_to_py(py, &full)? {
                Some(k) => k.unbind(),
                None => py.None(),
            };
            let pair = PyTuple::new(py, [k, v.unbind()])?.into_any().unbind();
            let tag = self.tag_py(py, tag.as_deref())?;
            return shape(py, pair, expire_time, tag, want).map(Some);
        }
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
                // Only finding out the key: not a hit, not an access.
                let got = py
                    .detach(|| self.cache.raw_get_uncounted(key))
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

    /// The stored kind and bytes of an encoded value under the encoded key `binding`
    /// (a pickle is sealed against it; the secret is looked up only for pickles).
    pub(crate) fn stored_value(
        &self,
        py: Python<'_>,
        encoded: Encoded,
        binding: &[u8],
    ) -> PyResult<(ValueKind, Vec<u8>)> {
        Ok(match encoded {
            Encoded::Done(kind, bytes) => (kind, bytes),
            Encoded::Pickle(p) => (
                ValueKind::Python,
                self.codec(py).sealer(py)?.seal(&p, binding),
            ),
        })
    }

    /// Streams a file object into a new value file, with the GIL released between chunks.
    pub(crate) fn prepare_stream(
        &self,
        py: Python<'_>,
        file: &Bound<'_, PyAny>,
    ) -> PyResult<Prepared> {
        let mut stream = PyStream::new(file.clone().unbind());
        let prepared = py.detach(|| self.cache.prepare_stream(ValueKind::Bytes, &mut stream));
        if let Some(e) = stream.error.take() {
            return Err(e);
        }
        prepared.map_err(to_py)
    }

    /// A value prepared for `set`/`add` under the stored key `key` (`long`: the full key of
    /// a digest key, which the value then carries).
    pub(crate) fn prepare_for(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        read: bool,
        key: &[u8],
        long: Option<&[u8]>,
    ) -> PyResult<Prepared> {
        if read {
            if long.is_some() {
                return Err(PyValueError::new_err(
                    "read=True values cannot be stored under keys longer than 1 MiB",
                ));
            }
            return self.prepare_stream(py, value);
        }
        let binding = long.unwrap_or(key);
        let (kind, bytes) = self.stored_value(py, self.codec(py).encode(value)?, binding)?;
        let (kind, bytes) = match long {
            Some(full) => (ValueKind::Python, wrap_long(full, kind, &bytes)),
            None => (kind, bytes),
        };
        py.detach(|| self.cache.prepare_bytes(kind, bytes))
            .map_err(to_py)
    }

    /// The stored key of a custom Disk's `(db_key, raw)`.
    pub(crate) fn db_key(
        &self,
        py: Python<'_>,
        db_key: &Bound<'_, PyAny>,
        raw: bool,
    ) -> PyResult<Vec<u8>> {
        self.codec(py).disk_key(db_key, raw)
    }

    /// `(db_key, raw)` as a custom Disk's `get` expects them.
    pub(crate) fn db_key_py(&self, py: Python<'_>, key: &[u8]) -> PyResult<(Py<PyAny>, bool)> {
        match key.split_first() {
            Some((&TAG_PY_DISK, rest)) => Ok((PyBytes::new(py, rest).into_any().unbind(), false)),
            Some((&(TAG_PY_PLAIN | TAG_PY_PICKLE), _)) => {
                Ok((PyBytes::new(py, key).into_any().unbind(), false))
            }
            _ => Ok((
                self.codec(py)
                    .key_to_py(py, key)?
                    .map_or_else(|| py.None(), Bound::unbind),
                true,
            )),
        }
    }

    /// `(mode, filename, db_value)` of a raw hit, as a custom Disk's `fetch` expects them;
    /// `key` is the stored key it was read under. `None`: a default-Disk value whose
    /// pickle was refused (and dropped as `on_refused` says).
    pub(crate) fn disk_record(
        &self,
        py: Python<'_>,
        key: &[u8],
        found: RawFound,
        now: f64,
        on_refused: OnRefused,
    ) -> PyResult<Option<FetchArgs>> {
        let bytes = match found.data {
            RawData::Bytes(b) => b,
            RawData::File(..) => return Err(PyValueError::new_err("unexpected open file")),
        };
        match (found.kind, bytes.first()) {
            (ValueKind::Python, Some(&PY_DISK)) => DiskRecord::parse(&bytes)
                .ok_or_else(|| errors::corrupt("custom Disk record".into()))?
                .to_py(py)
                .map(Some),
            // Written with the default Disk: its payload is what python-diskcache would
            // have pickled.
            (ValueKind::Python, _) => Ok(Some((
                MODE_PICKLE,
                py.None(),
                PyBytes::new(py, &bytes).into_any().unbind(),
            ))),
            (kind, _) => match self.codec(py).decode(py, kind, &bytes, key)? {
                Decoded::Value(v) => Ok(Some((MODE_RAW, py.None(), v.unbind()))),
                Decoded::Refused => {
                    self.drop_refused(py, key, kind, &bytes, now, on_refused)?;
                    Ok(None)
                }
            },
        }
    }

    /// A custom Disk's view of a raw hit under the stored key `key`: `(key, mode, filename,
    /// db_value, expire_time, tag)`, where the first item is the stored key (the binding
    /// the Disk's `fetch` checks a pickle against); with `with_db_key`, `(db_key, raw)`
    /// come first. `None`: a default-Disk pickle that was refused (dropped as
    /// `on_refused` says).
    pub(crate) fn disk_hit(
        &self,
        py: Python<'_>,
        key: &[u8],
        found: RawFound,
        now: f64,
        on_refused: OnRefused,
        with_db_key: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let (expire_time, tag) = (found.expire_time, found.tag.clone());
        let Some((mode, filename, value)) = self.disk_record(py, key, found, now, on_refused)?
        else {
            return Ok(None);
        };
        let expire_time = match expire_time {
            Some(t) => t.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        };
        let mut items = Vec::with_capacity(8);
        if with_db_key {
            let (k, raw) = self.db_key_py(py, key)?;
            items.push(k);
            items.push(raw.into_pyobject(py)?.to_owned().into_any().unbind());
        }
        items.extend([
            PyBytes::new(py, key).into_any().unbind(),
            mode.into_pyobject(py)?.into_any().unbind(),
            filename,
            value,
            expire_time,
            self.tag_py(py, tag.as_deref())?,
        ]);
        Ok(Some(PyTuple::new(py, items)?.into_any().unbind()))
    }
}
