//! Custom `Disk` records: what a Python `Disk` subclass stored, kept in the Python value
//! kind (format spec section 17), and the file names it may use.

use crate::codec::PY_DISK;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyMemoryView, PyString};

/// Custom-Disk modes (python-diskcache's `MODE_*`).
pub const MODE_RAW: u8 = 1;
pub const MODE_PICKLE: u8 = 4;

/// Names a custom Disk may not use at the top of the cache directory: the engine's own.
const RESERVED: [&str; 5] = ["meta", "log", "index", "values", "procs"];

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

/// A custom Disk's record: `0x04, mode, name length u32 LE, name, value type, value`.
pub fn disk_record_bytes(
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
    } else if db_value.is_instance_of::<PyByteArray>() || db_value.is_instance_of::<PyMemoryView>()
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
            PyOverflowError::new_err("Python int too large to store as a 64-bit integer")
        })?;
        out.extend_from_slice(&i.to_le_bytes());
    } else {
        return Err(PyTypeError::new_err(
            "a Disk's stored value must be None, bytes, str, int or float",
        ));
    }
    Ok(out)
}
