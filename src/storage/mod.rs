//! The storage seam: every byte the engine reads or writes goes through [`Storage`] and
//! [`StorageFile`], so tests can substitute an implementation that injects faults and
//! simulates crashes ([`FaultyStorage`]).

mod faulty;
mod os;

pub use faulty::{CrashMode, FaultConfig, FaultyStorage};
pub use os::{FsKind, OsStorage};

use crate::sys::Region;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Storage::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read an existing file, only; a symbolic link is refused (`O_NOFOLLOW`), so a
    /// tampered directory cannot make the cache read another file. For value files.
    ReadOnly,
    /// Read and write an existing file; fail with `NotFound` if it is missing.
    Existing,
    /// Read and write, creating the file if it is missing.
    Create,
    /// Create a new file; fail with `AlreadyExists` if there is one.
    CreateNew,
}

/// Kinds of advisory locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once, none exclusive.
    Shared,
    /// One holder, and no shared holders.
    Exclusive,
}

/// The cross-process locks of one cache directory, held by one handle (format spec,
/// "Writer exclusion"): a presence lock (shared by every open handle, exclusive while one
/// recovers the directory or closes it last) and a liveness lock per writer id, which tells
/// waiters whether the holder of the writer lock is still alive. Locks belong to the
/// handle, not to its process: two handles in one process exclude each other as two
/// processes do. They are released when the handle is dropped, or when its process dies,
/// however it dies; a child process that inherits the handle across `fork()` holds none of
/// them.
pub trait DirLocks: Send + Sync + fmt::Debug {
    /// Takes, or converts to, the presence lock of `kind`; false if another handle's
    /// presence prevents it (a refused conversion keeps the lock held before).
    fn try_presence(&self, kind: LockKind) -> io::Result<bool>;
    /// Gives up the presence lock.
    fn release_presence(&self) -> io::Result<()>;
    /// Locks a new writer id for this handle and returns it (nonzero).
    fn register(&self) -> io::Result<u64>;
    /// Whether a live handle, in any process, holds writer id `id`.
    fn is_alive(&self, id: u64) -> io::Result<bool>;
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
    /// Opens the locks of the directory whose meta file is `meta` (which must exist).
    fn open_locks(&self, meta: &Path) -> io::Result<Box<dyn DirLocks>>;
    /// A number that changes when the process forks, in the child (handles opened under
    /// another value were inherited from a parent process).
    fn fork_epoch(&self) -> u64;
    /// A nonzero number that changes when the machine restarts, or 0 if unknown: data
    /// written but not synced in the same boot cannot have been lost to a power failure.
    fn boot_id(&self) -> u32;
    /// What kind of file system holds `dir`.
    fn fs_kind(&self, dir: &Path) -> io::Result<FsKind>;
    /// Where the live page of the meta file `meta` is kept, if not in the meta file itself:
    /// on a copy-on-write file system, a store into a mapped page of a file may need disk
    /// space that a full disk cannot give (the kernel then raises SIGBUS), so the real file
    /// system keeps it in a shared-memory file of `len` bytes instead. `create`: the caller
    /// holds the presence lock exclusively, and makes a new one; otherwise it joins the one
    /// the other handles use (an error if there is none it can see).
    fn live_page(&self, meta: &Path, len: usize, create: bool) -> io::Result<Option<LivePage>> {
        let _ = (meta, len, create);
        Ok(None)
    }
}

/// A live page kept outside the meta file (see [`Storage::live_page`]).
#[derive(Debug)]
pub struct LivePage {
    /// Its mapping.
    pub region: Arc<Region>,
    /// The file that holds it.
    pub path: PathBuf,
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
    /// Prepares a new, empty file that will be written through a shared mapping: on a
    /// copy-on-write file system (btrfs) it turns copy-on-write off for the file, so that a
    /// full disk fails the writes that allocate its space instead of killing the process
    /// with SIGBUS at a store into the mapping.
    fn prepare_mapped_writes(&self) -> io::Result<()> {
        Ok(())
    }
    /// Whether stores into a shared mapping of this file can never need new disk space once
    /// the file has grown over them (false on copy-on-write file systems: write to it with
    /// [`StorageFile::write_at`] instead).
    fn mapped_writes_safe(&self) -> bool {
        true
    }
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
