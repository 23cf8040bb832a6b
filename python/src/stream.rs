//! Python file objects read as Rust streams (`set(..., read=True)`).

use pyo3::prelude::*;
use std::io::Read;

/// A Python file object read as a stream, `chunk` bytes per `read` call.
pub struct PyStream<'a, 'py> {
    pub file: &'a Bound<'py, PyAny>,
    pub buf: Vec<u8>,
    pub pos: usize,
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
