//! Custom `Disk` records: what a Python `Disk` subclass stored, kept in the Python value
//! kind (format spec section 17), and the file names it may use.

use crate::codec::{Sealer, PY_DISK, PY_PICKLE_UNSEALED};
use diskcache::Number;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyMemoryView, PyString};

/// Custom-Disk modes (python-diskcache's `MODE_*`).
pub const MODE_RAW: u8 = 1;
pub const MODE_PICKLE: u8 = 4;

/// Names a custom Disk may not use at the top of the cache directory: the engine's own.
const RESERVED: [&str; 5] = ["meta", "log", "index", "values", "procs"];

/// Value types of a record (the byte after the name).
const V_NONE: u8 = 0;
const V_BYTES: u8 = 1;
const V_STR: u8 = 2;
const V_INT: u8 = 3;
const V_FLOAT: u8 = 4;

/// Checks a file name a custom Disk gave (relative to the cache directory): relative, no
/// `.` or `..` components, no NUL or backslash, not one of the engine's own files.
pub fn valid_disk_name(name: &str) -> bool {
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

/// The value column of a record: what `Disk.store` returned as its last item.
#[derive(Clone, Debug, PartialEq)]
pub enum DbValue {
    None,
    Bytes(Vec<u8>),
    Str(String),
    Int(i64),
    Float(f64),
}

/// A custom Disk's record, `0x04, mode, name length u32 LE, name, value type, value`.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskRecord {
    pub mode: u8,
    /// The file the Disk wrote (relative to the cache directory), or empty.
    pub name: String,
    pub value: DbValue,
}

impl DiskRecord {
    /// A record from what `Disk.store` returned, checked.
    pub fn from_py(
        mode: u8,
        filename: Option<&str>,
        db_value: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        if !(MODE_RAW..=MODE_PICKLE).contains(&mode) {
            return Err(PyValueError::new_err(format!("unknown Disk mode {mode}")));
        }
        let name = filename.unwrap_or_default();
        if !name.is_empty() && !valid_disk_name(name) {
            return Err(PyValueError::new_err(format!(
                "Disk file name {name:?} must be a plain relative path inside the cache directory"
            )));
        }
        let value = if db_value.is_none() {
            DbValue::None
        } else if let Ok(b) = db_value.cast::<PyBytes>() {
            DbValue::Bytes(b.as_bytes().to_vec())
        } else if db_value.is_instance_of::<PyByteArray>()
            || db_value.is_instance_of::<PyMemoryView>()
        {
            DbValue::Bytes(db_value.extract()?)
        } else if db_value.is_exact_instance_of::<PyString>() {
            DbValue::Str(db_value.cast::<PyString>()?.to_cow()?.into_owned())
        } else if db_value.is_exact_instance_of::<PyFloat>() {
            DbValue::Float(db_value.extract()?)
        } else if db_value.is_instance_of::<PyInt>() {
            DbValue::Int(db_value.extract().map_err(|_| {
                PyOverflowError::new_err("Python int too large to store as a 64-bit integer")
            })?)
        } else {
            return Err(PyTypeError::new_err(
                "a Disk's stored value must be None, bytes, str, int or float",
            ));
        };
        Ok(DiskRecord {
            mode,
            name: name.to_owned(),
            value,
        })
    }

    /// A raw number, as `incr` leaves one.
    pub fn number(n: Number) -> Self {
        DiskRecord {
            mode: MODE_RAW,
            name: String::new(),
            value: match n {
                Number::Int(i) => DbValue::Int(i),
                Number::Float(f) => DbValue::Float(f),
            },
        }
    }

    /// The number a raw record holds, if it holds one.
    pub fn as_number(&self) -> Option<Number> {
        match (self.mode, &self.value) {
            (MODE_RAW, DbValue::Int(i)) => Some(Number::Int(*i)),
            (MODE_RAW, DbValue::Float(f)) => Some(Number::Float(*f)),
            _ => None,
        }
    }

    /// Whether the record holds an inline pickle that `Disk.store` made without the key.
    pub fn unsealed(&self) -> bool {
        matches!((self.mode, &self.value), (MODE_PICKLE, DbValue::Bytes(b)) if b.first() == Some(&PY_PICKLE_UNSEALED))
    }

    /// Seals an inline pickle that `Disk.store` made without the key (format spec section
    /// 17, sub-tag 0x06) against the encoded key it is stored under.
    pub fn seal(&mut self, sealer: &Sealer<'_>, key: &[u8]) {
        if let (MODE_PICKLE, DbValue::Bytes(b)) = (self.mode, &mut self.value) {
            if let Some(pickle) = b.strip_prefix(&[PY_PICKLE_UNSEALED]) {
                *b = sealer.seal(pickle, key);
            }
        }
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![PY_DISK, self.mode];
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        match &self.value {
            DbValue::None => out.push(V_NONE),
            DbValue::Bytes(b) => {
                out.push(V_BYTES);
                out.extend_from_slice(b);
            }
            DbValue::Str(s) => {
                out.push(V_STR);
                out.extend_from_slice(s.as_bytes());
            }
            DbValue::Int(i) => {
                out.push(V_INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            DbValue::Float(f) => {
                out.push(V_FLOAT);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
        out
    }

    /// Parses stored bytes (a kind-5 value starting with 0x04); `None` if they are damaged.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(&[PY_DISK])?;
        let (&mode, rest) = rest.split_first()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (name, rest) =
            rest.split_at_checked(usize::try_from(u32::from_le_bytes(*len)).ok()?)?;
        let name = std::str::from_utf8(name).ok()?;
        if !(MODE_RAW..=MODE_PICKLE).contains(&mode) || !(name.is_empty() || valid_disk_name(name))
        {
            return None;
        }
        let (&vtype, payload) = rest.split_first()?;
        let value = match vtype {
            V_NONE if payload.is_empty() => DbValue::None,
            V_BYTES => DbValue::Bytes(payload.to_vec()),
            V_STR => DbValue::Str(std::str::from_utf8(payload).ok()?.to_owned()),
            V_INT => DbValue::Int(i64::from_le_bytes(payload.try_into().ok()?)),
            V_FLOAT => DbValue::Float(f64::from_le_bytes(payload.try_into().ok()?)),
            _ => return None,
        };
        Some(DiskRecord {
            mode,
            name: name.to_owned(),
            value,
        })
    }

    /// `(mode, filename, db_value)` as a custom Disk's `fetch` takes them.
    pub fn to_py(&self, py: Python<'_>) -> PyResult<crate::store::FetchArgs> {
        let filename = if self.name.is_empty() {
            py.None()
        } else {
            PyString::new(py, &self.name).into_any().unbind()
        };
        let value = match &self.value {
            DbValue::None => py.None(),
            DbValue::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
            DbValue::Str(s) => PyString::new(py, s).into_any().unbind(),
            DbValue::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
            DbValue::Float(f) => PyFloat::new(py, *f).into_any().unbind(),
        };
        Ok((self.mode, filename, value))
    }
}
