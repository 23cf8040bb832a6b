//! [`Storage`] on the real file system.

use super::{DirEntry, DirLocks, LivePage, LockKind, OpenMode, Storage, StorageFile};
use crate::sys::{self, LockFd, Region};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The operating system's file system.
///
/// New files are created with mode `0o600` and new directories with `0o700` by default
/// (owner only; the process's umask may remove more), as python-diskcache's temporary
/// directories are; [`OsStorage::with_file_mode`] shares a cache with a group. The mode of
/// an existing file or directory is never changed.
#[derive(Clone, Copy, Debug)]
pub struct OsStorage {
    file_mode: u32,
}

impl Default for OsStorage {
    fn default() -> Self {
        OsStorage { file_mode: 0o600 }
    }
}

impl OsStorage {
    /// The file system, creating files with `mode` (say `0o660` for a cache shared by a
    /// group) and directories with the same mode plus search permission wherever it grants
    /// read permission (`0o660` gives `0o770`).
    pub fn with_file_mode(mode: u32) -> OsStorage {
        OsStorage {
            file_mode: mode & 0o666,
        }
    }

    /// The mode of new directories.
    pub fn dir_mode(&self) -> u32 {
        self.file_mode | ((self.file_mode & 0o444) >> 2)
    }
}

/// The kinds of file systems the engine tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// A local file system that the engine's protocol works on (ext4, xfs, tmpfs,
    /// overlayfs, ...).
    Local,
    /// A local copy-on-write file system (btrfs, ZFS, bcachefs): a store into a shared
    /// mapping of a file there may need new disk space, and on a full disk the kernel can
    /// only answer it with SIGBUS. The cache writes its log there with `pwrite` and keeps
    /// its live page in shared memory (`/dev/shm`) instead.
    CopyOnWrite(&'static str),
    /// A network or cluster file system, named: it gives neither coherent shared mappings
    /// between machines nor reliable per-handle locks, so the cache refuses it unless told
    /// that one process alone uses it.
    Network(&'static str),
}

impl FsKind {
    /// The kind of a file system with `statfs` magic number `magic`.
    pub fn from_magic(magic: u64) -> FsKind {
        match magic {
            0x9123_683e => FsKind::CopyOnWrite("btrfs"),
            0x2fc1_2fc1 => FsKind::CopyOnWrite("ZFS"),
            0xca45_1a4e => FsKind::CopyOnWrite("bcachefs"),
            0x6969 => FsKind::Network("NFS"),
            0x517b => FsKind::Network("SMB"),
            0xff53_4d42 => FsKind::Network("CIFS"),
            0xfe53_4d42 => FsKind::Network("SMB2"),
            0x00c3_6400 => FsKind::Network("Ceph"),
            0x5346_414f | 0x6b41_4653 => FsKind::Network("AFS"),
            0x7375_7245 => FsKind::Network("Coda"),
            0x0102_1997 => FsKind::Network("9P"),
            0x0bd0_0bd0 => FsKind::Network("Lustre"),
            0x4750_4653 => FsKind::Network("GPFS"),
            0x786f_4256 => FsKind::Network("VirtualBox shared folder"),
            0x564c => FsKind::Network("NCP"),
            0x0116_1970 => FsKind::Network("GFS2"),
            0x7461_636f => FsKind::Network("OCFS2"),
            _ => FsKind::Local,
        }
    }
}

#[derive(Debug)]
struct OsFile {
    file: File,
}

impl OsStorage {
    fn options(&self, mode: OpenMode) -> OpenOptions {
        let mut opts = OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::ReadOnly => {
                opts.custom_flags(libc::O_NOFOLLOW);
            }
            OpenMode::Existing => {
                opts.write(true);
            }
            OpenMode::Create => {
                opts.write(true).create(true).mode(self.file_mode);
            }
            OpenMode::CreateNew => {
                opts.write(true).create_new(true).mode(self.file_mode);
            }
        }
        opts
    }
}

impl Storage for OsStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(OsFile {
            file: self.options(mode).open(path)?,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(self.dir_mode())
            .create(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between readdir and stat: not there any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(DirEntry {
                path: entry.path(),
                is_dir: meta.is_dir(),
                len: if meta.is_dir() { 0 } else { meta.len() },
                modified: meta.modified().ok(),
            });
        }
        Ok(out)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn open_locks(&self, meta: &Path) -> io::Result<Box<dyn DirLocks>> {
        let file = OpenOptions::new().read(true).write(true).open(meta)?;
        Ok(Box::new(OsLocks::new(file, meta)))
    }

    fn fork_epoch(&self) -> u64 {
        sys::fork_epoch()
    }

    fn boot_id(&self) -> u32 {
        static BOOT: OnceLock<u32> = OnceLock::new();
        *BOOT.get_or_init(|| {
            // Linux: a random UUID chosen at every boot.
            match fs::read("/proc/sys/kernel/random/boot_id") {
                Ok(b) if !b.is_empty() => crc32fast::hash(&b).max(1),
                _ => 0,
            }
        })
    }

    fn fs_kind(&self, dir: &Path) -> io::Result<FsKind> {
        Ok(sys::fs_magic(dir)?.map_or(FsKind::Local, FsKind::from_magic))
    }

    fn live_page(&self, meta: &Path, len: usize, create: bool) -> io::Result<Option<LivePage>> {
        let dir = meta.parent().unwrap_or(Path::new("."));
        if !matches!(self.fs_kind(dir)?, FsKind::CopyOnWrite(_)) {
            return Ok(None);
        }
        let shm = Path::new("/dev/shm");
        if sys::fs_magic(shm).ok().flatten() != Some(TMPFS_MAGIC) {
            // No shared-memory file system to put it in: keep it in the meta file.
            return Ok(None);
        }
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(meta)?;
        let path = shm.join(format!("diskcache-{:x}-{:x}.live", m.dev(), m.ino()));
        let file = if create {
            // A new file, never the one a process of an older cache with the same inode
            // number may still map.
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let f = self.options(OpenMode::CreateNew).open(&path)?;
            // Written, not just sized: tmpfs then holds the pages, and stores need no space.
            f.write_all_at(&vec![0u8; len], 0)?;
            f
        } else {
            match self.options(OpenMode::Existing).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "the cache is open in a process whose {} this process does not \
                             share (another container?), and on a copy-on-write file system \
                             handles share their live page there",
                            shm.display()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is shorter than a live page", path.display()),
            ));
        }
        Ok(Some(LivePage {
            region: Arc::new(Region::map_file(&file, len)?),
            path,
        }))
    }
}

/// `statfs` magic number of tmpfs.
const TMPFS_MAGIC: u64 = 0x0102_1994;

impl StorageFile for OsFile {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, off) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, off: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn map(&self, len: usize) -> io::Result<Arc<Region>> {
        Region::map_file(&self.file, len).map(Arc::new)
    }

    fn mapped_writes_safe(&self) -> bool {
        !matches!(
            sys::fs_magic_of(&self.file).map(|m| m.map(FsKind::from_magic)),
            Ok(Some(FsKind::CopyOnWrite(_))) | Err(_)
        )
    }

    fn prepare_mapped_writes(&self) -> io::Result<()> {
        let magic = sys::fs_magic_of(&self.file)?;
        if magic.map(FsKind::from_magic) == Some(FsKind::CopyOnWrite("btrfs")) {
            sys::set_no_cow(&self.file)?;
        }
        Ok(())
    }
}

/// Writer ids are the offsets of their liveness locks in the meta file: far past its end,
/// so they never overlap the presence lock at offset 0.
const ID_MIN: u64 = 1 << 32;
const ID_MAX: u64 = 1 << 62;

/// The locks of one handle: open-file-description locks on bytes of the meta file (Linux),
/// through a descriptor that a forked child closes. Byte 0 is presence; byte `id` is the
/// liveness of writer `id`. The meta file is never removed by the cache, so every handle
/// locks the same file; the kernel releases the locks when the last descriptor of the
/// description closes (the handle's drop, or its process's death).
#[derive(Debug)]
struct OsLocks {
    fd: LockFd,
    /// Other systems: the directory of per-handle liveness files (whole-file locks).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    procs: PathBuf,
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    live: std::sync::Mutex<Vec<(PathBuf, LockFd)>>,
}

#[cfg(not(target_os = "linux"))]
impl Drop for OsLocks {
    fn drop(&mut self) {
        // Only the process that created a liveness file removes it: a forked child finds its
        // inherited descriptors closed and leaves the parent's files alone.
        if let Ok(live) = self.live.lock() {
            for (path, fd) in live.iter() {
                if fd.is_open() {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

impl OsLocks {
    fn new(file: File, meta: &Path) -> OsLocks {
        OsLocks {
            fd: LockFd::new(file),
            procs: meta
                .parent()
                .map(|d| d.join("procs"))
                .unwrap_or_else(|| PathBuf::from("procs")),
            live: std::sync::Mutex::new(Vec::new()),
        }
    }
}

#[cfg(target_os = "linux")]
impl DirLocks for OsLocks {
    fn try_presence(&self, kind: LockKind) -> io::Result<bool> {
        self.fd
            .try_lock_range(0, 1, Some(kind == LockKind::Exclusive))
    }

    fn release_presence(&self) -> io::Result<()> {
        self.fd.try_lock_range(0, 1, None).map(|_| ())
    }

    fn register(&self) -> io::Result<u64> {
        loop {
            let id = fastrand::u64(ID_MIN..ID_MAX);
            if self.fd.try_lock_range(id, 1, Some(true))? {
                return Ok(id);
            }
        }
    }

    fn is_alive(&self, id: u64) -> io::Result<bool> {
        if !(ID_MIN..ID_MAX).contains(&id) {
            // Not an id any handle can hold: garbage in the writer word.
            return Ok(false);
        }
        self.fd.is_locked_elsewhere(id, 1)
    }
}

/// Other systems have no open-file-description byte-range locks: presence is a whole-file
/// lock on the meta file, and each writer id a whole-file lock on `procs/<id>.live`, a file
/// that only its owner removes (a missing one counts as alive: no one takes the writer
/// lock over on the strength of a file's absence).
#[cfg(not(target_os = "linux"))]
impl DirLocks for OsLocks {
    fn try_presence(&self, kind: LockKind) -> io::Result<bool> {
        self.fd.try_flock(Some(kind == LockKind::Exclusive))
    }

    fn release_presence(&self) -> io::Result<()> {
        self.fd.try_flock(None).map(|_| ())
    }

    fn register(&self) -> io::Result<u64> {
        fs::DirBuilder::new().recursive(true).create(&self.procs)?;
        loop {
            let id = fastrand::u64(ID_MIN..ID_MAX);
            let path = self.procs.join(format!("{id:016x}.live"));
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let fd = LockFd::new(file);
            if fd.try_flock(Some(true))? {
                self.live
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .push((path, fd));
                return Ok(id);
            }
        }
    }

    fn is_alive(&self, id: u64) -> io::Result<bool> {
        let path = self.procs.join(format!("{id:016x}.live"));
        match File::open(&path) {
            Ok(f) => {
                let probe = LockFd::new(f);
                Ok(!probe.try_flock(Some(true))?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }
}
