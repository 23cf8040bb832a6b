//! Python file objects read as Rust streams (`set(..., read=True)`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io::Read;

/// How much one `read` call on the Python file asks for.
const CHUNK: usize = 4 << 20;

/// A Python file object read as a stream, [`CHUNK`] bytes per `read` call. It is read by
/// code running without the GIL (the engine writing a value file): each call on the file
/// takes the GIL for itself, so other Python threads run while a chunk is written.
pub struct PyStream {
    file: Py<PyAny>,
    buf: Vec<u8>,
    pos: usize,
    /// The exception the file raised, if it did (re-raised once the stream is done).
    pub error: Option<PyErr>,
}

impl PyStream {
    pub fn new(file: Py<PyAny>) -> PyStream {
        PyStream {
            file,
            buf: Vec::new(),
            pos: 0,
            error: None,
        }
    }

    fn fill(&mut self) -> PyResult<()> {
        Python::attach(|py| {
            let chunk = self.file.bind(py).call_method1("read", (CHUNK,))?;
            self.buf = match chunk.cast::<PyBytes>() {
                Ok(b) => b.as_bytes().to_vec(),
                Err(_) => chunk.extract::<Vec<u8>>()?,
            };
            self.pos = 0;
            Ok(())
        })
    }
}

impl Read for PyStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() {
            if let Err(e) = self.fill() {
                let message = e.to_string();
                self.error = Some(e);
                return Err(std::io::Error::other(message));
            }
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
