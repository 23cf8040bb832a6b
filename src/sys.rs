//! Shared memory regions: the only module of the crate that holds `unsafe` code.
//!
//! A [`Region`] is a byte range shared between every handle on a cache directory: a
//! `MAP_SHARED` mapping of a file (the real storage), or a heap buffer (the simulated,
//! fault-injecting storage). The engine reaches file bytes through four operations only:
//!
//! * [`Region::slice`] hands out `&[u8]` over a range. This is sound only for ranges that no
//!   thread or process writes while the slice lives. The engine's protocol guarantees it:
//!   index files and log frames are written once, *before* they are published, and never
//!   modified afterwards; bytes beyond the published end are never sliced
//!   (`format-spec/README.md`, "Soundness of mapped reads").
//! * [`Region::write`] copies bytes in through a raw pointer (never through `&mut [u8]`, since
//!   other handles may be reading other parts of the same region).
//! * [`Region::atomic_u64`] views an 8-aligned word as an `AtomicU64`: the shared counters of
//!   the meta file's live page, which every process reads and writes concurrently.
//! * [`Region::flush`] makes a range durable (`msync`).
//!
//! It also holds the few system calls the standard library lacks: open-file-description
//! locks (`F_OFD_SETLK`), the fork hook that tells handles they were inherited by a child
//! process and closes their lock descriptors there, the no-copy-on-write file attribute, and
//! the file system type (`statfs`).

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// A shared byte region; see the module documentation for the access rules.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    owner: Owner,
}

#[derive(Debug)]
enum Owner {
    Map(memmap2::MmapRaw),
    // A boxed `[u64]` (so that every 8-aligned offset is 8-aligned in memory) turned into a
    // raw pointer with `Box::into_raw`; freed in `Drop`. No `Box` exists while it is in use,
    // so pointers derived from it stay valid for the whole buffer.
    Heap(*mut [u64]),
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Owner::Heap(raw) = *self {
            // Safety: `raw` came from `Box::into_raw` in `Region::heap` and is freed only
            // here, once; the Region (and every slice of it) is gone by now.
            drop(unsafe { Box::from_raw(raw) });
        }
    }
}

// Safety: a Region is a plain byte range. Every access goes through `slice`, `write`,
// `atomic_u64` and `flush`, which take `&self`; the protocol described in the module
// documentation keeps concurrent writers and slice readers on disjoint ranges, and shared
// words are only touched through atomics. Nothing in it is tied to a thread.
unsafe impl Send for Region {}
// Safety: as above; all methods are callable from any thread at once.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of `file` shared and read-write. `len` may exceed the file's length:
    /// the engine never touches bytes beyond what it has made sure the file holds (touching
    /// them would raise SIGBUS), and it never shrinks a file that may be mapped.
    pub fn map_file(file: &File, len: usize) -> io::Result<Region> {
        if len == 0 {
            return Ok(Region::heap(0));
        }
        // A raw mapping hands out pointers, not references; how they are used is governed by
        // the rules in the module documentation. The crate never truncates mapped files.
        let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Region {
            ptr,
            len,
            owner: Owner::Map(map),
        })
    }

    /// A zero-filled heap region of `len` bytes (rounded up to whole words), for the simulated
    /// storage. Large regions are lazily backed by the allocator's zero pages.
    pub fn heap(len: usize) -> Region {
        let words = len.div_ceil(8).max(1);
        // The pointer comes from the whole boxed slice (not from a reference to its first
        // element), so it is valid for every byte of the buffer.
        let raw: *mut [u64] = Box::into_raw(vec![0u64; words].into_boxed_slice());
        let ptr = NonNull::new(raw.cast::<u8>()).unwrap_or(NonNull::dangling());
        Region {
            ptr,
            len,
            owner: Owner::Heap(raw),
        }
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `off..off + len` lies inside the region.
    fn contains(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// A view of `off..off + len`, or `None` if the range is outside the region.
    ///
    /// The caller must only ask for ranges that nobody writes while the view lives
    /// (published log frames and index nodes, which are immutable).
    pub fn slice(&self, off: usize, len: usize) -> Option<&[u8]> {
        if !self.contains(off, len) {
            return None;
        }
        if len == 0 {
            return Some(&[]);
        }
        // Safety: the range is inside the allocation/mapping (checked above), which lives as
        // long as `self`. By the engine's protocol no one writes these bytes while the slice
        // is alive, so the shared borrow does not alias a write.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) })
    }

    /// Copies `data` into the region at `off`. Returns false if it does not fit.
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        if !self.contains(off, data.len()) {
            return false;
        }
        // Safety: the destination is inside the region (checked above) and does not overlap
        // `data`, which is a separate borrow. We write through a raw pointer so that no
        // `&mut` reference to shared memory is ever formed; the protocol keeps readers off
        // bytes that are being written.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len());
        }
        true
    }

    /// Copies `out.len()` bytes from `off` into `out`. Returns false if out of range. Unlike
    /// `slice`, this is for ranges that may be concurrently written by another handle (the
    /// copy may then be torn; callers validate it with a checksum).
    pub fn read_volatile(&self, off: usize, out: &mut [u8]) -> bool {
        if !self.contains(off, out.len()) {
            return false;
        }
        for (i, byte) in out.iter_mut().enumerate() {
            // Safety: `off + i` is inside the region (checked above). A volatile byte read
            // of memory that another party may be writing yields some value without
            // creating a reference to it; torn results are caught by the caller's checksum.
            *byte = unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(off + i)) };
        }
        true
    }

    /// The 8-aligned word at `off` as a shared atomic, or `None` if misaligned or outside.
    pub fn atomic_u64(&self, off: usize) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) || !self.contains(off, 8) {
            return None;
        }
        // Safety: the pointer is inside the region, 8-aligned (mappings are page-aligned and
        // heap regions are u64 arrays, and `off` is a multiple of 8), and valid for the
        // lifetime of `self`. Every party touches these words only through atomics.
        Some(unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU64) })
    }

    /// Makes `off..off + len` durable (msync). A no-op for heap regions.
    pub fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        if !self.contains(off, len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "flush range outside the mapping",
            ));
        }
        match &self.owner {
            Owner::Map(map) => {
                if len == 0 {
                    return Ok(());
                }
                map.flush_range(off, len)
            }
            Owner::Heap(_) => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fork: handles inherited by a child process.

/// Bumped in every child process right after `fork()` (by a `pthread_atfork` hook).
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static FORK_HOOK: Once = Once::new();

/// A number that changes in a process each time it is the child of a `fork()`: a handle that
/// remembers the value it was opened under knows it was inherited when the two differ.
/// The first call installs the hook.
pub fn fork_epoch() -> u64 {
    FORK_HOOK.call_once(|| {
        // Safety: `pthread_atfork` only records the function pointer; `after_fork_in_child`
        // is a plain `extern "C"` function that does nothing but atomic operations and
        // `close`, all of them async-signal-safe, as a child of a multi-threaded process
        // requires. A failure (ENOMEM) leaves no hook: then inherited handles are not
        // recognised, which `fork_epoch` cannot report; it is as rare as the allocation
        // failing.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    FORK_EPOCH.load(Ordering::Acquire)
}

extern "C" fn after_fork_in_child() {
    FORK_EPOCH.fetch_add(1, Ordering::AcqRel);
    close_lock_fds_in_child();
}

// ---------------------------------------------------------------------------------------
// Lock descriptors, closed in a forked child.
//
// A lock taken on an open file description belongs to every process holding a descriptor
// of it. A child of `fork()` inherits the descriptors of its parent's handles, so a lock
// of the parent would outlive the parent as long as the child lives, and a child closing
// the handle's lock state would release the parent's lock. Lock descriptors therefore live
// in a table that the fork hook empties in the child: it closes them (closing one of
// several descriptors of a description releases nothing) and marks them closed, so the
// inherited handle never touches them again.

const LOCK_FD_SLOTS: usize = 4096;
/// Slot states: 0 free; else `tag << 32 | (fd + 1)`, where `fd + 1 == 0` means "closed in
/// this child after a fork". The tag tells a slot's owner from a later one.
static LOCK_FDS: [AtomicU64; LOCK_FD_SLOTS] = [const { AtomicU64::new(0) }; LOCK_FD_SLOTS];
/// One past the highest slot ever used (the hook scans no further).
static LOCK_FDS_HIGH: AtomicUsize = AtomicUsize::new(0);
static LOCK_FD_TAG: AtomicU32 = AtomicU32::new(1);

fn close_lock_fds_in_child() {
    let high = LOCK_FDS_HIGH.load(Ordering::Acquire).min(LOCK_FD_SLOTS);
    for slot in LOCK_FDS.iter().take(high) {
        let v = slot.load(Ordering::Acquire);
        let fd_plus_one = v & 0xffff_ffff;
        if v != 0 && fd_plus_one != 0 {
            // Safety: the slot holds a descriptor this process inherited and that nothing
            // else closes (its owner reads it from the slot, which now says "closed").
            // `close` is async-signal-safe.
            unsafe {
                libc::close((fd_plus_one - 1) as libc::c_int);
            }
            slot.store(v & !0xffff_ffff, Ordering::Release);
        }
    }
}

/// An open file used only for advisory locks, whose descriptor is closed in forked
/// children (see above). Dropping it closes the descriptor, which releases its locks.
#[derive(Debug)]
pub struct LockFd {
    /// Where the descriptor lives: a slot of the table, or (table full) here.
    slot: Option<(usize, u64)>,
    own: Option<std::os::fd::OwnedFd>,
}

impl LockFd {
    /// Takes over `file`'s descriptor.
    pub fn new(file: File) -> LockFd {
        use std::os::fd::{IntoRawFd, OwnedFd};
        let tag = u64::from(LOCK_FD_TAG.fetch_add(1, Ordering::Relaxed).max(1));
        let fd = file.into_raw_fd();
        let word = (tag << 32) | (fd as u64 + 1);
        for (i, slot) in LOCK_FDS.iter().enumerate() {
            if slot
                .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                LOCK_FDS_HIGH.fetch_max(i + 1, Ordering::AcqRel);
                return LockFd {
                    slot: Some((i, tag)),
                    own: None,
                };
            }
        }
        // Safety: `fd` was just released by `into_raw_fd`, so it is open and owned by no
        // one else.
        let own = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        LockFd {
            slot: None,
            own: Some(own),
        }
    }

    /// The descriptor, or `None` if it was closed in this child after a fork.
    fn fd(&self) -> Option<libc::c_int> {
        use std::os::fd::AsRawFd;
        match (self.slot, &self.own) {
            (Some((i, tag)), _) => {
                let v = LOCK_FDS.get(i)?.load(Ordering::Acquire);
                let fd_plus_one = v & 0xffff_ffff;
                (v >> 32 == tag && fd_plus_one != 0).then(|| (fd_plus_one - 1) as libc::c_int)
            }
            (None, Some(own)) => Some(own.as_raw_fd()),
            (None, None) => None,
        }
    }

    /// Whether the descriptor is still open (a forked child closes inherited ones).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub fn is_open(&self) -> bool {
        self.fd().is_some()
    }

    fn closed() -> io::Error {
        io::Error::from_raw_os_error(libc::EBADF)
    }

    /// Tries to lock bytes `start..start + len` (0: to the end) of the open file
    /// description: shared or exclusive, or unlocks them (`None`). Converting a held lock is
    /// atomic. Returns false if another description holds a conflicting lock.
    #[cfg(target_os = "linux")]
    pub fn try_lock_range(&self, start: u64, len: u64, kind: Option<bool>) -> io::Result<bool> {
        let fd = self.fd().ok_or_else(Self::closed)?;
        let mut fl = ofd_flock(start, len, kind)?;
        // Safety: `fl` is a fully initialised `struct flock` that outlives the call, and
        // `fd` is an open descriptor owned by this LockFd.
        let r = unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl as *mut libc::flock) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// Whether another open file description holds a lock on any of bytes
    /// `start..start + len` that would conflict with an exclusive one.
    #[cfg(target_os = "linux")]
    pub fn is_locked_elsewhere(&self, start: u64, len: u64) -> io::Result<bool> {
        let fd = self.fd().ok_or_else(Self::closed)?;
        let mut fl = ofd_flock(start, len, Some(true))?;
        // Safety: as in `try_lock_range`; F_OFD_GETLK writes the answer into `fl`.
        let r = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl as *mut libc::flock) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(i32::from(fl.l_type) != libc::F_UNLCK)
    }

    /// Whole-file lock (`flock`): shared or exclusive, or unlock (`None`). Returns false if
    /// another description holds a conflicting lock.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub fn try_flock(&self, kind: Option<bool>) -> io::Result<bool> {
        let fd = self.fd().ok_or_else(Self::closed)?;
        let op = match kind {
            Some(true) => libc::LOCK_EX | libc::LOCK_NB,
            Some(false) => libc::LOCK_SH | libc::LOCK_NB,
            None => libc::LOCK_UN,
        };
        // Safety: `fd` is an open descriptor owned by this LockFd; `flock` takes no pointers.
        if unsafe { libc::flock(fd, op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(false),
            _ => Err(e),
        }
    }
}

#[cfg(target_os = "linux")]
fn ofd_flock(start: u64, len: u64, kind: Option<bool>) -> io::Result<libc::flock> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "lock range out of bounds");
    // Safety: `struct flock` is plain old data; all-zero is a valid value of it (and OFD
    // locks require `l_pid` to be 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Some(true) => libc::F_WRLCK,
        Some(false) => libc::F_RDLCK,
        None => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(start).map_err(|_| bad())?;
    fl.l_len = libc::off_t::try_from(len).map_err(|_| bad())?;
    Ok(fl)
}

impl Drop for LockFd {
    fn drop(&mut self) {
        if let Some((i, tag)) = self.slot {
            let Some(slot) = LOCK_FDS.get(i) else { return };
            let v = slot.load(Ordering::Acquire);
            if v >> 32 != tag {
                return;
            }
            if slot
                .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let fd_plus_one = v & 0xffff_ffff;
                if fd_plus_one != 0 {
                    // Safety: the descriptor was in this LockFd's slot until the exchange
                    // above freed it, so no one else closes it.
                    unsafe {
                        libc::close((fd_plus_one - 1) as libc::c_int);
                    }
                }
            }
        }
        // `own`, if any, closes itself.
    }
}

// ---------------------------------------------------------------------------------------
// File systems.

/// The `f_type` of the file system holding `path` (`statfs`), or `None` if it cannot be
/// told (other operating systems).
pub fn fs_magic(path: &std::path::Path) -> io::Result<Option<u64>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // Safety: `struct statfs` is plain old data, so all-zero is a valid value of it.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // Safety: `c` is a NUL-terminated string and `st` a writable `struct statfs`, both
        // alive for the call.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(Some(st.f_type as u64 & 0xffff_ffff))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Ok(None)
    }
}

/// The `f_type` of the file system holding an open file (`fstatfs`), or `None` where it
/// cannot be told.
pub fn fs_magic_of(file: &File) -> io::Result<Option<u64>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Safety: `struct statfs` is plain old data, so all-zero is a valid value of it.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // Safety: the descriptor is open for the call and `st` is a writable `struct statfs`.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(Some(st.f_type as u64 & 0xffff_ffff))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(None)
    }
}

/// Marks an empty file "no copy-on-write" (btrfs's `C` attribute), so that stores into a
/// shared mapping of it never need new disk space: on a copy-on-write file system a full
/// disk otherwise kills the process with SIGBUS at such a store. Only call it on btrfs.
pub fn set_no_cow(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        const FS_NOCOW_FL: libc::c_int = 0x0080_0000;
        let fd = file.as_raw_fd();
        let mut flags: libc::c_int = 0;
        // Safety: FS_IOC_GETFLAGS writes one int into `flags`, which outlives the call.
        if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags as *mut libc::c_int) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & FS_NOCOW_FL != 0 {
            return Ok(());
        }
        flags |= FS_NOCOW_FL;
        // Safety: FS_IOC_SETFLAGS reads one int from `flags`, which outlives the call.
        if unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags as *const libc::c_int) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn heap_region_reads_back_writes_and_bounds_checks() {
        let r = Region::heap(100);
        assert!(r.write(10, b"hello"));
        assert_eq!(r.slice(10, 5), Some(&b"hello"[..]));
        assert!(!r.write(98, b"abc"));
        assert_eq!(r.slice(98, 3), None);
        assert_eq!(r.slice(usize::MAX, 2), None);
        let mut out = [0u8; 5];
        assert!(r.read_volatile(10, &mut out));
        assert_eq!(&out, b"hello");
    }

    #[test]
    fn atomics_need_alignment_and_bounds() {
        let r = Region::heap(64);
        assert!(r.atomic_u64(3).is_none());
        assert!(r.atomic_u64(64).is_none());
        let a = r.atomic_u64(8).expect("aligned");
        a.store(0x0102_0304_0506_0708, Ordering::SeqCst);
        assert_eq!(
            r.slice(8, 8).map(|s| s.to_vec()),
            Some(0x0102_0304_0506_0708u64.to_ne_bytes().to_vec())
        );
    }

    #[test]
    fn file_mapping_may_extend_past_end_and_is_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        f.set_len(4096).expect("set_len");
        let a = Region::map_file(&f, 1 << 20).expect("map");
        let b = Region::map_file(&f, 4096).expect("map");
        assert!(a.write(100, b"shared"));
        assert_eq!(b.slice(100, 6), Some(&b"shared"[..]));
        a.flush(0, 4096).expect("flush");
        assert_eq!(std::fs::read(&path).expect("read")[100..106], *b"shared");
    }
}
