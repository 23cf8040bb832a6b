//! Python objects to stored bytes and back: keys (section 6 of the format spec), values
//! (section 8's kinds, and section 17's Python encodings), and the pickle envelope.

use crate::errors;
use diskcache::plain::{Container, PlainReader, PlainWriter, Token, MAX_DEPTH};
use diskcache::{Key, ValueKind};
use hmac::{Hmac, Mac};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};
use sha2::Sha256;
use std::sync::atomic::{AtomicI32, Ordering};

/// Tags of Python-kind values (the first byte).
pub const PY_PLAIN: u8 = 0x01;
pub const PY_PICKLE_SIGNED: u8 = 0x02;
pub const PY_PICKLE_UNSIGNED: u8 = 0x03;
pub const PY_DISK: u8 = 0x04;
/// A value stored under the digest of a long key: the key, then the value's kind and bytes.
pub const PY_LONG_KEY: u8 = 0x05;
/// Never stored: a pickle a custom Disk made before it knew the key (`Disk.store` without
/// one, as `push` calls it). The Store seals it (0x02) with the key it is stored under; a
/// reader refuses it like a pickle whose MAC fails.
pub const PY_PICKLE_UNSEALED: u8 = 0x06;

/// Keys whose encoding is longer than this are stored under their digest.
pub const MAX_KEY_LEN: usize = 1 << 20;
/// Plain encodings longer than this are pickled instead: a container that holds one object
/// many times (a list of itself at every level, say) grows exponentially when written out,
/// while its pickle refers to each object once.
const MAX_PLAIN_LEN: usize = 64 << 20;

/// Key tags (format spec section 6).
const TAG_STR: u8 = 0x20;
const TAG_BYTES: u8 = 0x30;
pub const TAG_PY_PLAIN: u8 = 0x50;
const TAG_PY_DIGEST: u8 = 0x58;
pub const TAG_PY_PICKLE: u8 = 0x60;
pub const TAG_PY_DISK: u8 = 0x70;
const MAC_LEN: usize = 32;

const KEY_DOMAIN: &[u8] = b"diskcache-logstore key v1\0";
const VALUE_DOMAIN: &[u8] = b"diskcache-logstore value v1\0";

/// The key an encoded key is stored under: itself, or for a long one its digest (the
/// second part is then the full encoding, which the value must carry).
pub fn stored_key(full: Vec<u8>) -> (Vec<u8>, Option<Vec<u8>>) {
    use sha2::Digest;
    if full.len() <= MAX_KEY_LEN {
        return (full, None);
    }
    let mut k = Vec::with_capacity(33);
    k.push(TAG_PY_DIGEST);
    k.extend_from_slice(&Sha256::digest(&full));
    (k, Some(full))
}

/// Whether a stored key is a digest.
pub fn is_digest(key: &[u8]) -> bool {
    key.first() == Some(&TAG_PY_DIGEST)
}

/// Wraps a value stored under a digest key with its full key.
pub fn wrap_long(full: &[u8], kind: ValueKind, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + full.len() + 1 + bytes.len());
    out.push(PY_LONG_KEY);
    out.extend_from_slice(&(full.len() as u64).to_le_bytes());
    out.extend_from_slice(full);
    out.push(kind_byte(kind));
    out.extend_from_slice(bytes);
    out
}

/// Unwraps [`wrap_long`]: the full key, the value's kind and bytes.
pub fn unwrap_long(b: &[u8]) -> Option<(&[u8], ValueKind, &[u8])> {
    let rest = b.strip_prefix(&[PY_LONG_KEY])?;
    let n = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    let key_end = 8usize.checked_add(n)?;
    let full = rest.get(8..key_end)?;
    let kind = kind_of(*rest.get(key_end)?)?;
    Some((full, kind, rest.get(key_end.checked_add(1)?..)?))
}

fn kind_byte(k: ValueKind) -> u8 {
    match k {
        ValueKind::Bytes => 0,
        ValueKind::Str => 1,
        ValueKind::Int => 2,
        ValueKind::Float => 3,
        ValueKind::Encoded => 4,
        ValueKind::Python => 5,
    }
}

fn kind_of(b: u8) -> Option<ValueKind> {
    Some(match b {
        0 => ValueKind::Bytes,
        1 => ValueKind::Str,
        2 => ValueKind::Int,
        3 => ValueKind::Float,
        5 => ValueKind::Python,
        _ => return None,
    })
}

/// Whether `obj` is a key SQLite would store natively in python-diskcache (str, bytes, a
/// 64-bit int or a float, by exact type): what tags and a custom Disk's raw keys must be.
pub fn is_native_key(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyFloat>()
        || (obj.is_exact_instance_of::<PyInt>() && obj.extract::<i64>().is_ok())
}

static PICKLE_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static REFUSED: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

fn pickle_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    let f = cell.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("pickle")?.getattr(name)?.unbind())
    })?;
    Ok(f.bind(py))
}

/// `diskcache.core.RefusedPickle(message)`: a pickle that was not unpickled because its
/// MAC does not verify (a ValueError).
pub fn refused(py: Python<'_>, message: &str) -> PyErr {
    match REFUSED
        .import(py, "diskcache.core", "RefusedPickle")
        .and_then(|c| c.call1((message,)))
    {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// The MAC of a pickle (HMAC-SHA256 under `key`), before finalizing: one builder for
/// signing and verifying.
fn mac_of(key: &Hmac<Sha256>, domain: &[u8], binding: &[u8], pickle: &[u8]) -> Hmac<Sha256> {
    let mut m = key.clone();
    m.update(domain);
    m.update(&(binding.len() as u64).to_le_bytes());
    m.update(binding);
    m.update(pickle);
    m
}

fn hmac_key(secret: &[u8]) -> PyResult<Hmac<Sha256>> {
    if secret.is_empty() {
        return Err(PyValueError::new_err("a pickle secret cannot be empty"));
    }
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|e| PyValueError::new_err(format!("unusable pickle secret: {e}")))
}

/// The pickle secret and the earlier ones that are still accepted, keyed once (each MAC
/// clones the keyed state, so the key schedule runs once per handle).
pub struct Secrets {
    current: Hmac<Sha256>,
    earlier: Vec<Hmac<Sha256>>,
}

impl Secrets {
    fn new(secret: &[u8], earlier: &[Vec<u8>]) -> PyResult<Secrets> {
        Ok(Secrets {
            current: hmac_key(secret)?,
            earlier: earlier
                .iter()
                .map(|s| hmac_key(s))
                .collect::<PyResult<_>>()?,
        })
    }

    fn sign(&self, domain: &[u8], binding: &[u8], pickle: &[u8]) -> [u8; MAC_LEN] {
        mac_of(&self.current, domain, binding, pickle)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` is the MAC of `pickle` under the secret or an earlier one.
    fn verify(&self, domain: &[u8], binding: &[u8], pickle: &[u8], tag: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.earlier)
            .any(|k| mac_of(k, domain, binding, pickle).verify_slice(tag).is_ok())
    }
}

/// Seals pickles into kind-5 values: signed and bound to a key, or (with
/// `pickle_key=False`) unsigned. Needs no GIL, so a Store can seal inside a transaction,
/// once the key is chosen.
#[derive(Clone, Copy)]
pub struct Sealer<'a> {
    secrets: Option<&'a Secrets>,
}

impl Sealer<'_> {
    /// The stored form of `pickle` under the encoded key `binding`.
    pub fn seal(&self, pickle: &[u8], binding: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + MAC_LEN + pickle.len());
        match self.secrets {
            Some(s) => {
                out.push(PY_PICKLE_SIGNED);
                out.extend_from_slice(&s.sign(VALUE_DOMAIN, binding, pickle));
            }
            None => out.push(PY_PICKLE_UNSIGNED),
        }
        out.extend_from_slice(pickle);
        out
    }
}

/// A value as the codec turns it into bytes, before its key is known.
pub enum Encoded {
    /// Final bytes of a kind: native values and the plain encoding.
    Done(ValueKind, Vec<u8>),
    /// A pickle, to be sealed against the key it is stored under.
    Pickle(Vec<u8>),
}

impl Encoded {
    /// The stored kind and bytes under the encoded key `binding`.
    pub fn stored(self, sealer: &Sealer<'_>, binding: &[u8]) -> (ValueKind, Vec<u8>) {
        match self {
            Encoded::Done(kind, bytes) => (kind, bytes),
            Encoded::Pickle(p) => (ValueKind::Python, sealer.seal(&p, binding)),
        }
    }
}

/// How Python objects are encoded: the pickle protocol and the pickle secret.
#[pyclass(frozen, module = "diskcache._core")]
pub struct Codec {
    signed: bool,
    protocol: AtomicI32,
    /// The secrets, once known: given to the constructor, or found by `find_secret` the
    /// first time a pickle is signed or verified (a cache that stores no pickles never
    /// looks for one).
    secrets: PyOnceLock<Secrets>,
    find_secret: Option<Py<PyAny>>,
}

/// What a stored Python-kind value turned out to be when decoded.
pub enum Decoded<'py> {
    /// A value.
    Value(Bound<'py, PyAny>),
    /// A pickle whose MAC does not verify (or an unsigned pickle, when signing): never
    /// unpickled; the caller treats it as a miss and removes it.
    Refused,
}

/// Appends the plain encoding of `obj` if it is a plain value of at most
/// [`MAX_PLAIN_LEN`] bytes (keys: no dicts or sets, whose encoding would depend on
/// insertion or hash order). Returns false (leaving `out` in an unspecified state)
/// otherwise.
fn put_plain(
    obj: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
    for_key: bool,
) -> PyResult<bool> {
    if !put_plain_item(obj, out, depth, for_key)? {
        return Ok(false);
    }
    Ok(out.len() <= MAX_PLAIN_LEN)
}

fn put_plain_item(
    obj: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
    for_key: bool,
) -> PyResult<bool> {
    let mut w = PlainWriter::new(out);
    if obj.is_none() {
        w.none();
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyBool>() {
        w.bool(obj.is_truthy()?);
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(i) => w.int(i),
            Err(_) => w.big_int(&big_int_bytes(obj)?),
        }
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        w.float(obj.extract::<f64>()?);
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyString>() {
        // Lone surrogates are not UTF-8, so such a string is not plain.
        let Ok(s) = obj.cast::<PyString>()?.to_cow() else {
            return Ok(false);
        };
        w.str(&s);
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyBytes>() {
        w.bytes(obj.cast::<PyBytes>()?.as_bytes());
        return Ok(true);
    }
    if depth >= MAX_DEPTH {
        return Ok(false);
    }
    // Containers: a snapshot of the items, so the count written is the count encoded.
    let (kind, items): (Container, Vec<Bound<'_, PyAny>>) = if obj.is_exact_instance_of::<PyTuple>()
    {
        (Container::Tuple, obj.cast::<PyTuple>()?.iter().collect())
    } else if obj.is_exact_instance_of::<PyList>() {
        (Container::List, obj.cast::<PyList>()?.iter().collect())
    } else if for_key {
        return Ok(false);
    } else if obj.is_exact_instance_of::<PyDict>() {
        let pairs = obj.cast::<PyDict>()?.iter();
        let mut flat = Vec::new();
        for (k, v) in pairs {
            flat.push(k);
            flat.push(v);
        }
        (Container::Dict, flat)
    } else if obj.is_exact_instance_of::<PySet>() {
        (Container::Set, obj.try_iter()?.collect::<PyResult<_>>()?)
    } else if obj.is_exact_instance_of::<PyFrozenSet>() {
        (
            Container::FrozenSet,
            obj.try_iter()?.collect::<PyResult<_>>()?,
        )
    } else {
        return Ok(false);
    };
    let count = if kind == Container::Dict {
        items.len() / 2
    } else {
        items.len()
    };
    w.container(kind, count);
    for item in &items {
        if !put_plain_item(item, out, depth + 1, for_key)? || out.len() > MAX_PLAIN_LEN {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Two's-complement little-endian bytes of a Python int, minimal.
fn big_int_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let negative = obj.lt(0)?;
    let magnitude = if negative {
        obj.call_method0("__invert__")?
    } else {
        obj.clone()
    };
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let n = (bits + 8) / 8;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("signed", true)?;
    let b = obj.call_method("to_bytes", (n, "little"), Some(&kwargs))?;
    Ok(b.cast::<PyBytes>()?.as_bytes().to_vec())
}

fn big_int_from<'py>(py: Python<'py>, le: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("signed", true)?;
    py.get_type::<PyInt>().call_method(
        "from_bytes",
        (PyBytes::new(py, le), "little"),
        Some(&kwargs),
    )
}

/// Damage in plain data that only shows when the objects are built: a dict key or set item
/// that cannot be hashed (a list, say). Reported like any other damaged value.
fn unhashable(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<PyTypeError>(py) {
        errors::corrupt(format!(
            "plain value: unhashable dict key or set item ({e})"
        ))
    } else {
        e
    }
}

/// Builds Python objects from the plain encoding. Runs no code: only these types are made.
fn read_plain<'py>(
    py: Python<'py>,
    r: &mut PlainReader<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let bad =
        |e: diskcache::plain::DecodeError| errors::corrupt(format!("plain value: {}", e.detail));
    Ok(match r.token().map_err(bad)? {
        Token::None => py.None().into_bound(py),
        Token::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        Token::Int(i) => i.into_pyobject(py)?.into_any(),
        Token::BigInt(b) => big_int_from(py, b)?,
        Token::Float(f) => PyFloat::new(py, f).into_any(),
        Token::Str(s) => PyString::new(py, s).into_any(),
        Token::Bytes(b) => PyBytes::new(py, b).into_any(),
        Token::Container(kind, n) => {
            if depth >= MAX_DEPTH {
                return Err(errors::corrupt("plain value nests too deeply".into()));
            }
            if kind == Container::Dict {
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = read_plain(py, r, depth + 1)?;
                    let v = read_plain(py, r, depth + 1)?;
                    d.set_item(k, v).map_err(|e| unhashable(py, e))?;
                }
                return Ok(d.into_any());
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_plain(py, r, depth + 1)?);
            }
            match kind {
                Container::Tuple => PyTuple::new(py, items)?.into_any(),
                Container::List => PyList::new(py, items)?.into_any(),
                Container::Set => PySet::new(py, &items)
                    .map_err(|e| unhashable(py, e))?
                    .into_any(),
                _ => PyFrozenSet::new(py, &items)
                    .map_err(|e| unhashable(py, e))?
                    .into_any(),
            }
        }
    })
}

/// Decodes a whole plain encoding.
pub fn plain_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut r = PlainReader::new(bytes);
    let v = read_plain(py, &mut r, 0)?;
    if !r.is_empty() {
        return Err(errors::corrupt("trailing bytes after a plain value".into()));
    }
    Ok(v)
}

impl Codec {
    /// The secrets (looked up now if they were not given).
    fn secrets(&self, py: Python<'_>) -> PyResult<&Secrets> {
        self.secrets.get_or_try_init(py, || {
            let find = self.find_secret.as_ref().ok_or_else(|| {
                PyValueError::new_err("this codec signs pickles but has no secret")
            })?;
            let (secret, earlier): (Vec<u8>, Vec<Vec<u8>>) = find.bind(py).call0()?.extract()?;
            Secrets::new(&secret, &earlier)
        })
    }

    /// What seals this codec's pickles (finding the secret first, if it signs).
    pub fn sealer(&self, py: Python<'_>) -> PyResult<Sealer<'_>> {
        Ok(Sealer {
            secrets: if self.signed {
                Some(self.secrets(py)?)
            } else {
                None
            },
        })
    }

    /// [`Codec::sealer`] when `needed` (so the secret is looked up only then).
    pub fn sealer_if(&self, py: Python<'_>, needed: bool) -> PyResult<Option<Sealer<'_>>> {
        needed.then(|| self.sealer(py)).transpose()
    }

    /// Whether `tag` is a valid MAC under the secrets (looked up now if need be).
    fn verify(
        &self,
        py: Python<'_>,
        domain: &[u8],
        binding: &[u8],
        pickle: &[u8],
        tag: &[u8],
    ) -> PyResult<bool> {
        Ok(self.secrets(py)?.verify(domain, binding, pickle, tag))
    }

    fn dumps(&self, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = obj.py();
        let b = pickle_fn(py, &PICKLE_DUMPS, "dumps")?
            .call1((obj, self.protocol.load(Ordering::Relaxed)))?;
        Ok(b.cast::<PyBytes>()?.as_bytes().to_vec())
    }

    fn loads<'py>(&self, py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        pickle_fn(py, &PICKLE_LOADS, "loads")?.call1((PyBytes::new(py, b),))
    }

    /// The encoding of a key (python-diskcache's identity: exact types).
    pub fn key(&self, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        if obj.is_exact_instance_of::<PyString>() {
            if let Ok(s) = obj.cast::<PyString>()?.to_cow() {
                let mut out = Vec::with_capacity(1 + s.len());
                out.push(TAG_STR);
                out.extend_from_slice(s.as_bytes());
                return Ok(out);
            }
        } else if obj.is_exact_instance_of::<PyBytes>() {
            let b = obj.cast::<PyBytes>()?.as_bytes();
            let mut out = Vec::with_capacity(1 + b.len());
            out.push(TAG_BYTES);
            out.extend_from_slice(b);
            return Ok(out);
        } else if obj.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                return Ok(Key::Int(i128::from(i)).to_bytes());
            }
        } else if obj.is_exact_instance_of::<PyFloat>() {
            let f: f64 = obj.extract()?;
            if !f.is_nan() {
                return Ok(Key::Float(f).to_bytes());
            }
        } else if let Ok(k) = obj.cast::<crate::StoredKey>() {
            return Ok(k.get().bytes.clone());
        }
        let mut out = vec![TAG_PY_PLAIN];
        if put_plain(obj, &mut out, 0, true)? {
            return Ok(out);
        }
        let pickled = self.dumps(obj)?;
        let mut out = Vec::with_capacity(1 + pickled.len() + MAC_LEN);
        out.push(TAG_PY_PICKLE);
        out.extend_from_slice(&pickled);
        if self.signed {
            let mac = self.secrets(obj.py())?.sign(KEY_DOMAIN, b"", &pickled);
            out.extend_from_slice(&mac);
        } else {
            out.extend_from_slice(&[0u8; MAC_LEN]);
        }
        Ok(out)
    }

    /// The stored key of a custom Disk's `(db_key, raw)`: a raw key as this package
    /// encodes it (it must be native), else tag 0x70 and the Disk's bytes.
    pub fn disk_key(&self, db_key: &Bound<'_, PyAny>, raw: bool) -> PyResult<Vec<u8>> {
        if raw {
            if !is_native_key(db_key) {
                return Err(PyTypeError::new_err(
                    "a Disk's raw key must be a str, bytes, 64-bit int or float",
                ));
            }
            return self.key(db_key);
        }
        let b: Vec<u8> = db_key
            .extract()
            .map_err(|_| PyTypeError::new_err("a Disk's non-raw key must be bytes"))?;
        Ok([std::slice::from_ref(&TAG_PY_DISK), &b].concat())
    }

    /// The Python object of an encoded key; `None` for a pickled key whose MAC fails.
    pub fn key_to_py<'py>(
        &self,
        py: Python<'py>,
        enc: &[u8],
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some((&tag, body)) = enc.split_first() else {
            return Err(errors::corrupt("empty key".into()));
        };
        Ok(Some(match tag {
            TAG_STR => PyString::new(
                py,
                std::str::from_utf8(body)
                    .map_err(|_| errors::corrupt("string key is not UTF-8".into()))?,
            )
            .into_any(),
            TAG_BYTES => PyBytes::new(py, body).into_any(),
            TAG_PY_PLAIN => plain_to_py(py, body)?,
            TAG_PY_PICKLE => {
                let Some(split) = body.len().checked_sub(MAC_LEN) else {
                    return Ok(None);
                };
                let (pickled, mac) = body.split_at(split);
                if self.signed && !self.verify(py, KEY_DOMAIN, b"", pickled, mac)? {
                    return Ok(None);
                }
                self.loads(py, pickled)?
            }
            _ => match Key::from_bytes(enc) {
                Ok(Key::Int(i)) => match i64::try_from(i) {
                    Ok(small) => small.into_pyobject(py)?.into_any(),
                    // Python ints beyond 64 bits are plain keys: a number key this large
                    // was stored as an integral float (or by Rust code), and reads back
                    // as a float, which finds it again.
                    Err(_) => PyFloat::new(py, i as f64).into_any(),
                },
                Ok(Key::Float(f)) => PyFloat::new(py, f).into_any(),
                // Keys written by Rust code (composites) or a custom Disk: passed around
                // as they are stored.
                Ok(_) => Bound::new(
                    py,
                    crate::StoredKey {
                        bytes: enc.to_vec(),
                    },
                )?
                .into_any(),
                Err(e) => return Err(errors::corrupt(e.to_string())),
            },
        }))
    }

    /// A value in its stored kind and bytes (native kinds, the plain encoding), or a pickle
    /// still to be sealed against its key.
    pub fn encode(&self, obj: &Bound<'_, PyAny>) -> PyResult<Encoded> {
        if obj.is_exact_instance_of::<PyString>() {
            if let Ok(s) = obj.cast::<PyString>()?.to_cow() {
                return Ok(Encoded::Done(ValueKind::Str, s.as_bytes().to_vec()));
            }
        } else if obj.is_exact_instance_of::<PyBytes>() {
            let b = obj.cast::<PyBytes>()?.as_bytes().to_vec();
            return Ok(Encoded::Done(ValueKind::Bytes, b));
        } else if obj.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                return Ok(Encoded::Done(ValueKind::Int, i.to_le_bytes().to_vec()));
            }
        } else if obj.is_exact_instance_of::<PyFloat>() {
            let f: f64 = obj.extract()?;
            return Ok(Encoded::Done(ValueKind::Float, f.to_le_bytes().to_vec()));
        }
        self.encode_object(obj)
    }

    /// The Python-kind encoding of any object: plain if it can be, else a pickle.
    fn encode_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<Encoded> {
        let mut out = vec![PY_PLAIN];
        if put_plain(obj, &mut out, 0, false)? {
            return Ok(Encoded::Done(ValueKind::Python, out));
        }
        Ok(Encoded::Pickle(self.dumps(obj)?))
    }

    /// Decodes a stored value of a kind, read under the encoded key `key` (a pickle must
    /// be bound to exactly that key).
    pub fn decode<'py>(
        &self,
        py: Python<'py>,
        kind: ValueKind,
        bytes: &[u8],
        key: &[u8],
    ) -> PyResult<Decoded<'py>> {
        Ok(Decoded::Value(match kind {
            ValueKind::Bytes => PyBytes::new(py, bytes).into_any(),
            ValueKind::Str => PyString::new(
                py,
                std::str::from_utf8(bytes)
                    .map_err(|_| errors::corrupt("stored string is not UTF-8".into()))?,
            )
            .into_any(),
            ValueKind::Int => i64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| errors::corrupt("integer is not 8 bytes".into()))?,
            )
            .into_pyobject(py)?
            .into_any(),
            ValueKind::Float => PyFloat::new(
                py,
                f64::from_le_bytes(
                    bytes
                        .try_into()
                        .map_err(|_| errors::corrupt("float is not 8 bytes".into()))?,
                ),
            )
            .into_any(),
            ValueKind::Python => return self.decode_payload(py, bytes, Some(key)),
            _ => {
                return Err(PyTypeError::new_err(
                    "the value was stored by Rust code with its codec; Python cannot read it",
                ))
            }
        }))
    }

    /// Decodes a Python-kind payload; a pickle must be bound to `key` (without one, every
    /// signed pickle is refused).
    pub fn decode_payload<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        key: Option<&[u8]>,
    ) -> PyResult<Decoded<'py>> {
        let Some((&tag, body)) = bytes.split_first() else {
            return Err(errors::corrupt("empty Python value".into()));
        };
        match tag {
            PY_PLAIN => Ok(Decoded::Value(plain_to_py(py, body)?)),
            PY_PICKLE_SIGNED => {
                if !self.signed {
                    // Trust-the-directory mode reads every pickle.
                    return Ok(match body.get(MAC_LEN..) {
                        Some(pickled) => Decoded::Value(self.loads(py, pickled)?),
                        None => Decoded::Refused,
                    });
                }
                let (Some(key), Some((mac, pickled))) = (key, body.split_at_checked(MAC_LEN))
                else {
                    return Ok(Decoded::Refused);
                };
                if !self.verify(py, VALUE_DOMAIN, key, pickled, mac)? {
                    return Ok(Decoded::Refused);
                }
                Ok(Decoded::Value(self.loads(py, pickled)?))
            }
            PY_PICKLE_UNSIGNED if !self.signed => Ok(Decoded::Value(self.loads(py, body)?)),
            PY_PICKLE_UNSIGNED | PY_PICKLE_UNSEALED => Ok(Decoded::Refused),
            // Read only through its digest key, whose caller unwraps it first.
            PY_LONG_KEY => Err(errors::corrupt(
                "a long key's value under another key".into(),
            )),
            PY_DISK => Err(PyValueError::new_err(
                "the value was stored through a custom Disk; open the cache with that Disk",
            )),
            t => Err(errors::corrupt(format!("unknown Python value tag {t:#x}"))),
        }
    }
}

#[pymethods]
impl Codec {
    /// `secret`: the pickle secret, or None to call `find_secret()` (which returns the
    /// secret and a list of earlier ones) the first time a pickle is signed or verified.
    /// `signed=False` reads and writes unsigned pickles and needs no secret.
    #[new]
    #[pyo3(signature = (secret, signed, protocol, fallbacks=Vec::new(), find_secret=None))]
    fn py_new(
        py: Python<'_>,
        secret: Option<Vec<u8>>,
        signed: bool,
        protocol: i32,
        fallbacks: Vec<Vec<u8>>,
        find_secret: Option<Py<PyAny>>,
    ) -> PyResult<Codec> {
        let codec = Codec {
            signed,
            protocol: AtomicI32::new(protocol),
            secrets: PyOnceLock::new(),
            find_secret,
        };
        match secret {
            Some(s) if signed => {
                let secrets = Secrets::new(&s, &fallbacks)?;
                // A fresh cell: it cannot be set already.
                let _ = codec.secrets.set(py, secrets);
            }
            None if signed && codec.find_secret.is_none() => {
                return Err(PyValueError::new_err(
                    "a codec that signs pickles needs a secret, or find_secret to look one up",
                ))
            }
            _ => {}
        }
        Ok(codec)
    }

    /// The encoded key of `key` (what the default Disk stores it under).
    fn encode_key<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.key(key)?))
    }

    /// The stored key of a custom Disk's `(db_key, raw)` (what its pickles are bound to).
    fn encode_disk_key<'py>(
        &self,
        py: Python<'py>,
        db_key: &Bound<'py, PyAny>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.disk_key(db_key, raw)?))
    }

    /// The key an encoding stands for; raises RefusedPickle for a pickled key whose MAC
    /// fails.
    fn decode_key<'py>(&self, py: Python<'py>, encoded: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        self.key_to_py(py, encoded)?
            .ok_or_else(|| refused(py, "pickled key failed its MAC check; not unpickled"))
    }

    /// The Python-kind encoding of any value (plain, or a pickle sealed against the encoded
    /// key `binding`; without a binding, a pickle the Store seals when it stores it).
    #[pyo3(signature = (value, binding=None))]
    fn encode_payload<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
        binding: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = match (self.encode_object(value)?, binding) {
            (Encoded::Done(_, b), _) => b,
            (Encoded::Pickle(p), Some(key)) => self.sealer(py)?.seal(&p, key),
            (Encoded::Pickle(p), None) if self.signed => {
                [std::slice::from_ref(&PY_PICKLE_UNSEALED), &p].concat()
            }
            (Encoded::Pickle(p), None) => Sealer { secrets: None }.seal(&p, b""),
        };
        Ok(PyBytes::new(py, &bytes))
    }

    /// Decodes a Python-kind encoding read under the encoded key `binding`; raises
    /// RefusedPickle for a pickle whose MAC fails (or that is not bound to that key).
    #[pyo3(signature = (payload, binding=None))]
    fn decode_payload_py<'py>(
        &self,
        py: Python<'py>,
        payload: &[u8],
        binding: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.decode_payload(py, payload, binding)? {
            Decoded::Value(v) => Ok(v),
            Decoded::Refused => Err(refused(
                py,
                "pickled value failed its MAC check; not unpickled",
            )),
        }
    }

    #[getter]
    fn signed(&self) -> bool {
        self.signed
    }

    #[getter]
    fn get_protocol(&self) -> i32 {
        self.protocol.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_protocol(&self, protocol: i32) {
        self.protocol.store(protocol, Ordering::Relaxed);
    }
}
