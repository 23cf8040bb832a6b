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

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

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
    // Kept as u64 words so that every 8-aligned offset is 8-aligned in memory.
    Heap(#[allow(dead_code)] Box<[u64]>),
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
        let mut buf = vec![0u64; words].into_boxed_slice();
        let ptr = NonNull::from(&mut buf[0]).cast::<u8>();
        Region {
            ptr,
            len,
            owner: Owner::Heap(buf),
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
