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

/// Tags of Python-kind values (the first byte).
pub const PY_PLAIN: u8 = 0x01;
pub const PY_PICKLE_SIGNED: u8 = 0x02;
pub const PY_PICKLE_UNSIGNED: u8 = 0x03;
pub const PY_DISK: u8 = 0x04;
/// A value stored under the digest of a long key: the key, then the value's kind and bytes.
pub const PY_LONG_KEY: u8 = 0x05;

/// Keys whose encoding is longer than this are stored under their digest.
pub const MAX_KEY_LEN: usize = 1 << 20;
const TAG_PY_DIGEST: u8 = 0x58;

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
    let full = rest.get(8..8usize.checked_add(n)?)?;
    let kind = kind_of(*rest.get(8 + n)?)?;
    Some((full, kind, rest.get(9 + n..)?))
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

/// Key tags (format spec section 6).
const TAG_STR: u8 = 0x20;
const TAG_BYTES: u8 = 0x30;
const TAG_PY_PLAIN: u8 = 0x50;
const TAG_PY_PICKLE: u8 = 0x60;
pub const TAG_PY_DISK: u8 = 0x70;
const MAC_LEN: usize = 32;

const KEY_DOMAIN: &[u8] = b"diskcache-logstore key v1\0";
const VALUE_DOMAIN: &[u8] = b"diskcache-logstore value v1\0";

static PICKLE_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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

/// How Python objects are encoded: the pickle protocol and the pickle secret.
#[pyclass(frozen, module = "diskcache._core")]
pub struct Codec {
    /// HMAC-SHA256 keyed with the secret (cloned per MAC: the key schedule runs once).
    keyed: Option<Hmac<Sha256>>,
    /// Earlier secrets: pickles signed with them are still read (never written).
    fallbacks: Vec<Hmac<Sha256>>,
    signed: bool,
    protocol: std::sync::atomic::AtomicI32,
}

/// What a stored Python-kind value turned out to be when decoded.
pub enum Decoded<'py> {
    /// A value.
    Value(Bound<'py, PyAny>),
    /// A pickle whose MAC does not verify (or an unsigned pickle, when signing): never
    /// unpickled; the caller treats it as a miss and removes it.
    Refused,
}

fn keyed_or_empty(keyed: Option<&Hmac<Sha256>>) -> Option<Hmac<Sha256>> {
    match keyed {
        Some(k) => Some(k.clone()),
        None => <Hmac<Sha256> as Mac>::new_from_slice(b"").ok(),
    }
}

fn mac(
    keyed: Option<&Hmac<Sha256>>,
    domain: &[u8],
    binding: &[u8],
    payload: &[u8],
) -> [u8; MAC_LEN] {
    let Some(mut m) = keyed_or_empty(keyed) else {
        return [0u8; MAC_LEN];
    };
    m.update(domain);
    m.update(&(binding.len() as u64).to_le_bytes());
    m.update(binding);
    m.update(payload);
    m.finalize().into_bytes().into()
}

fn mac_ok(
    keyed: Option<&Hmac<Sha256>>,
    domain: &[u8],
    binding: &[u8],
    payload: &[u8],
    tag: &[u8],
) -> bool {
    let Some(mut m) = keyed_or_empty(keyed) else {
        return false;
    };
    m.update(domain);
    m.update(&(binding.len() as u64).to_le_bytes());
    m.update(binding);
    m.update(payload);
    m.verify_slice(tag).is_ok()
}

/// Appends the plain encoding of `obj` if it is a plain value (keys: no dicts or sets,
/// whose encoding would depend on insertion or hash order). Returns false (leaving `out`
/// in an unspecified state) otherwise.
fn put_plain(
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
        let s = obj.cast::<PyString>()?;
        match s.to_cow() {
            Ok(s) => {
                w.str(&s);
                return Ok(true);
            }
            // Lone surrogates: not UTF-8, so not plain.
            Err(_) => return Ok(false),
        }
    }
    if obj.is_exact_instance_of::<PyBytes>() {
        w.bytes(obj.cast::<PyBytes>()?.as_bytes());
        return Ok(true);
    }
    if depth >= MAX_DEPTH {
        return Ok(false);
    }
    if obj.is_exact_instance_of::<PyTuple>() {
        let t = obj.cast::<PyTuple>()?;
        w.container(Container::Tuple, t.len());
        for item in t.iter() {
            if !put_plain(&item, out, depth + 1, for_key)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PyList>() {
        let l = obj.cast::<PyList>()?;
        w.container(Container::List, l.len());
        for item in l.iter() {
            if !put_plain(&item, out, depth + 1, for_key)? {
                return Ok(false);
            }
        }
        // The list may have changed size while its items were encoded.
        return Ok(true);
    }
    if for_key {
        return Ok(false);
    }
    if obj.is_exact_instance_of::<PyDict>() {
        let d = obj.cast::<PyDict>()?;
        let items: Vec<_> = d.iter().collect();
        w.container(Container::Dict, items.len());
        for (k, v) in items {
            if !put_plain(&k, out, depth + 1, for_key)? || !put_plain(&v, out, depth + 1, for_key)?
            {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if obj.is_exact_instance_of::<PySet>() || obj.is_exact_instance_of::<PyFrozenSet>() {
        let kind = if obj.is_exact_instance_of::<PySet>() {
            Container::Set
        } else {
            Container::FrozenSet
        };
        let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        w.container(kind, items.len());
        for item in items {
            if !put_plain(&item, out, depth + 1, for_key)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    Ok(false)
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
            match kind {
                Container::Dict => {
                    let d = PyDict::new(py);
                    for _ in 0..n {
                        let k = read_plain(py, r, depth + 1)?;
                        let v = read_plain(py, r, depth + 1)?;
                        d.set_item(k, v)?;
                    }
                    d.into_any()
                }
                _ => {
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(read_plain(py, r, depth + 1)?);
                    }
                    match kind {
                        Container::Tuple => PyTuple::new(py, items)?.into_any(),
                        Container::List => PyList::new(py, items)?.into_any(),
                        Container::Set => PySet::new(py, &items)?.into_any(),
                        _ => PyFrozenSet::new(py, &items)?.into_any(),
                    }
                }
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

/// Whether an encoded key names a queue position (an integer key of a queue, or a
/// `prefix-NNNNNNNNNNNNNNN` string key); returns the queue's binding.
fn queue_binding(key: &[u8]) -> Option<Vec<u8>> {
    match Key::from_bytes(key).ok()? {
        Key::Int(i) if i > 0 && i < 999_999_999_999_999 => Some(b"queue:".to_vec()),
        Key::Str(s) => {
            let (prefix, num) = s.rsplit_once('-')?;
            (num.len() == 15 && num.bytes().all(|c| c.is_ascii_digit()))
                .then(|| [b"queue:-".as_slice(), prefix.as_bytes()].concat())
        }
        _ => None,
    }
}

/// The binding of values pushed to a queue.
pub fn push_binding(prefix: Option<&str>) -> Vec<u8> {
    match prefix {
        None => b"queue:".to_vec(),
        Some(p) => [b"queue:-".as_slice(), p.as_bytes()].concat(),
    }
}

impl Codec {
    pub fn create(
        secret: Option<Vec<u8>>,
        signed: bool,
        protocol: i32,
        fallbacks: Vec<Vec<u8>>,
    ) -> Codec {
        let keyed = secret
            .as_deref()
            .and_then(|k| <Hmac<Sha256> as Mac>::new_from_slice(k).ok());
        Codec {
            keyed,
            fallbacks: fallbacks
                .iter()
                .filter_map(|k| <Hmac<Sha256> as Mac>::new_from_slice(k).ok())
                .collect(),
            signed,
            protocol: std::sync::atomic::AtomicI32::new(protocol),
        }
    }

    /// Whether `tag` is the MAC of a pickle under the secret or one of the fallbacks.
    fn verify(&self, domain: &[u8], binding: &[u8], payload: &[u8], tag: &[u8]) -> bool {
        mac_ok(self.keyed.as_ref(), domain, binding, payload, tag)
            || self
                .fallbacks
                .iter()
                .any(|k| mac_ok(Some(k), domain, binding, payload, tag))
    }

    fn dumps(&self, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = obj.py();
        let b = pickle_fn(py, &PICKLE_DUMPS, "dumps")?.call1((
            obj,
            self.protocol.load(std::sync::atomic::Ordering::Relaxed),
        ))?;
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
            out.extend_from_slice(&mac(self.keyed.as_ref(), KEY_DOMAIN, b"", &pickled));
        } else {
            out.extend_from_slice(&[0u8; MAC_LEN]);
        }
        Ok(out)
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
                let (pickled, tag) = body.split_at(split);
                if self.signed && !self.verify(KEY_DOMAIN, b"", pickled, tag) {
                    return Ok(None);
                }
                self.loads(py, pickled)?
            }
            _ => match Key::from_bytes(enc) {
                Ok(Key::Int(i)) => i.into_pyobject(py)?.into_any(),
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

    /// The stored kind and bytes of a value; `binding` ties a pickle's MAC to where it is
    /// stored (the encoded key, or the queue).
    pub fn value(&self, obj: &Bound<'_, PyAny>, binding: &[u8]) -> PyResult<(ValueKind, Vec<u8>)> {
        if obj.is_exact_instance_of::<PyString>() {
            if let Ok(s) = obj.cast::<PyString>()?.to_cow() {
                return Ok((ValueKind::Str, s.as_bytes().to_vec()));
            }
        } else if obj.is_exact_instance_of::<PyBytes>() {
            return Ok((ValueKind::Bytes, obj.cast::<PyBytes>()?.as_bytes().to_vec()));
        } else if obj.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                return Ok((ValueKind::Int, i.to_le_bytes().to_vec()));
            }
        } else if obj.is_exact_instance_of::<PyFloat>() {
            let f: f64 = obj.extract()?;
            return Ok((ValueKind::Float, f.to_le_bytes().to_vec()));
        }
        Ok((ValueKind::Python, self.payload(obj, binding)?))
    }

    /// The Python-kind encoding of any object: plain if it can be, else a pickle.
    pub fn payload(&self, obj: &Bound<'_, PyAny>, binding: &[u8]) -> PyResult<Vec<u8>> {
        let mut out = vec![PY_PLAIN];
        if put_plain(obj, &mut out, 0, false)? {
            return Ok(out);
        }
        let pickled = self.dumps(obj)?;
        let mut out = Vec::with_capacity(1 + MAC_LEN + pickled.len());
        if self.signed {
            out.push(PY_PICKLE_SIGNED);
            out.extend_from_slice(&mac(self.keyed.as_ref(), VALUE_DOMAIN, binding, &pickled));
        } else {
            out.push(PY_PICKLE_UNSIGNED);
        }
        out.extend_from_slice(&pickled);
        Ok(out)
    }

    /// Decodes a stored value of a kind. `key` is the encoded key it was read under (its
    /// pickle must be bound to that key, or to the key's queue).
    pub fn decode<'py>(
        &self,
        py: Python<'py>,
        kind: ValueKind,
        bytes: &[u8],
        key: Option<&[u8]>,
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
            ValueKind::Python => return self.decode_payload(py, bytes, key),
            _ => {
                return Err(PyTypeError::new_err(
                    "the value was stored by Rust code with its codec; Python cannot read it",
                ))
            }
        }))
    }

    /// Decodes a Python-kind payload.
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
                if body.len() < MAC_LEN {
                    return Ok(Decoded::Refused);
                }
                let (tag, pickled) = body.split_at(MAC_LEN);
                if self.signed {
                    let binding = key.unwrap_or_default();
                    let ok = self.verify(VALUE_DOMAIN, binding, pickled, tag)
                        || key
                            .and_then(queue_binding)
                            .is_some_and(|q| self.verify(VALUE_DOMAIN, &q, pickled, tag));
                    if !ok {
                        return Ok(Decoded::Refused);
                    }
                }
                Ok(Decoded::Value(self.loads(py, pickled)?))
            }
            PY_PICKLE_UNSIGNED => {
                if self.signed {
                    return Ok(Decoded::Refused);
                }
                Ok(Decoded::Value(self.loads(py, body)?))
            }
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
    #[new]
    #[pyo3(signature = (secret, signed, protocol, fallbacks=Vec::new()))]
    fn py_new(
        secret: Option<Vec<u8>>,
        signed: bool,
        protocol: i32,
        fallbacks: Vec<Vec<u8>>,
    ) -> Codec {
        Codec::create(secret, signed, protocol, fallbacks)
    }

    /// The encoded key of `key` (what the default Disk stores it under).
    fn encode_key<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.key(key)?))
    }

    /// The key an encoding stands for; raises ValueError for a pickled key whose MAC fails.
    fn decode_key<'py>(&self, py: Python<'py>, encoded: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        self.key_to_py(py, encoded)?
            .ok_or_else(|| PyValueError::new_err("pickled key failed its MAC check; not unpickled"))
    }

    /// The Python-kind encoding of any value (plain, or a signed pickle bound to `binding`).
    fn encode_payload<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
        binding: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.payload(value, binding)?))
    }

    /// Decodes a Python-kind encoding; raises ValueError for a pickle whose MAC fails.
    fn decode_payload_py<'py>(
        &self,
        py: Python<'py>,
        payload: &[u8],
        binding: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.decode_payload(py, payload, Some(binding))? {
            Decoded::Value(v) => Ok(v),
            Decoded::Refused => Err(PyValueError::new_err(
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
        self.protocol.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[setter]
    fn set_protocol(&self, protocol: i32) {
        self.protocol
            .store(protocol, std::sync::atomic::Ordering::Relaxed);
    }
}
