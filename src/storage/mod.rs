//! The storage seam: every byte the engine reads or writes goes through [`Storage`] and
//! [`StorageFile`], so tests can substitute an implementation that injects faults and
//! simulates crashes ([`FaultyStorage`]).

mod faulty;
mod os;

pub use faulty::{CrashMode, FaultConfig, FaultyStorage};
pub use os::OsStorage;

use crate::sys::Region;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Storage::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read and write an existing file; fail with `NotFound` if it is missing.
    Existing,
    /// Read and write, creating the file if it is missing.
    Create,
    /// Create a new file; fail with `AlreadyExists` if there is one.
    CreateNew,
}

/// Kinds of advisory whole-file locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once, none exclusive.
    Shared,
    /// One holder, and no shared holders.
    Exclusive,
}

/// One entry of [`Storage::list_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's full path.
    pub path: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its length in bytes (0 for directories).
    pub len: u64,
    /// When it was last modified, if known.
    pub modified: Option<std::time::SystemTime>,
}

/// A file system, as the engine sees it.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames a file atomically, replacing `to` if it exists. Durable once the directory is
    /// synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Lists a directory (not recursively).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes the directory's entries (creations, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The length of the file at `path`, or an error (`NotFound` if missing).
    fn file_len(&self, path: &Path) -> io::Result<u64>;
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `off`; returns how many were read (0 at end of file).
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf` at `off`, extending the file if needed.
    fn write_at(&self, off: u64, buf: &[u8]) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the file's length. The engine only ever grows files that may be mapped.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable, including bytes written through a mapping.
    fn sync(&self) -> io::Result<()>;
    /// Maps `len` bytes of the file shared and read-write (`len` may exceed the file length;
    /// bytes past the end must not be touched until the file has grown over them).
    fn map(&self, len: usize) -> io::Result<Arc<Region>>;
    /// Tries to take an advisory lock; returns false if another holder prevents it.
    fn try_lock(&self, kind: LockKind) -> io::Result<bool>;
    /// Releases this handle's lock.
    fn unlock(&self) -> io::Result<()>;
}

impl dyn StorageFile {
    /// Reads exactly `buf.len()` bytes at `off`; a short file is `UnexpectedEof`.
    pub fn read_exact_at(&self, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(off, buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file is shorter than expected",
                ));
            }
            buf = &mut buf[n..];
            off += n as u64;
        }
        Ok(())
    }

    /// Reads the whole file.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}
