//! diskcache-rs errors as python-diskcache's exception types.

use pyo3::exceptions::{PyKeyError, PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OPERATIONAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    Ok(cell.import(py, "diskcache.core", name)?.clone())
}

/// `diskcache.Timeout(removed)`.
pub fn timeout(py: Python<'_>, removed: u64) -> PyErr {
    match class(py, &TIMEOUT, "Timeout").and_then(|c| c.call1((removed,))) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// `diskcache.core.OperationalError` (a `sqlite3.OperationalError`): the cache's files
/// cannot be used.
pub fn operational(msg: String) -> PyErr {
    Python::attach(|py| {
        match class(py, &OPERATIONAL, "OperationalError").and_then(|c| c.call1((msg,))) {
            Ok(e) => PyErr::from_value(e),
            Err(e) => e,
        }
    })
}

/// Damaged stored bytes.
pub fn corrupt(msg: String) -> PyErr {
    operational(format!("damaged cache entry: {msg}"))
}

/// Converts an engine error.
pub fn to_py(e: diskcache::Error) -> PyErr {
    use diskcache::Error as E;
    match e {
        E::Timeout { removed } => Python::attach(|py| timeout(py, removed)),
        E::KeyNotFound => PyKeyError::new_err("key not found"),
        E::InvalidKey(why) => PyValueError::new_err(format!("invalid key: {why}")),
        E::TypeMismatch(why) => PyTypeError::new_err(why),
        E::Overflow => {
            PyOverflowError::new_err("Python int too large to store as a 64-bit integer")
        }
        E::InvalidArgument(why) => PyValueError::new_err(why),
        E::Io { context, source } => match source.raw_os_error() {
            Some(code) => PyOSError::new_err((code, format!("{context}: {source}"))),
            None => PyOSError::new_err(format!("{context}: {source}")),
        },
        other => operational(other.to_string()),
    }
}
