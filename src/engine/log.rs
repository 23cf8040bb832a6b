//! Log segments: creation, mapping, appending frames, and reading them back.
//!
//! Writers copy frames into a shared mapping of the segment (no system call per commit).
//! Space is allocated beforehand with ordinary writes of zeros, so a full disk is reported as
//! an error by those writes instead of killing the process with SIGBUS on a page fault.

use super::{io_err, SyncLevel, Syncs};
use crate::error::{Error, Result};
use crate::format::frame::{
    decode_frame, Frame, FrameEnd, SegmentHeader, FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD,
    SEGMENT_HEADER_LEN,
};
use crate::format::meta::Checkpoint;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::sys::Region;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Space is allocated in steps of this many bytes.
const ALLOC_STEP: u64 = 1 << 20;
/// Mappings are made this much larger than needed, to remap rarely.
const MAP_SLACK: u64 = 16 << 20;

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("log").join(format!("{id:016x}.log"))
}

/// One open log segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub header: SegmentHeader,
    /// The CRC that seeds the frame chain.
    pub seed: u32,
    /// Frames are copied in through the mapping (else written with `pwrite`: on a
    /// copy-on-write file system a store into the mapping could need disk space).
    mapped_writes: bool,
    view: Mutex<SegView>,
}

#[derive(Debug)]
struct SegView {
    map: Arc<Region>,
    /// Bytes of the file known to exist (files only grow).
    file_len: u64,
}

impl Segment {
    /// Creates the segment that continues from checkpoint `from` (its id and first LSN are
    /// the checkpoint's), with its header, which carries a copy of the checkpoint, and a
    /// first allocation. It is written under a temporary name, made durable, and renamed into
    /// place, so a segment file with its final name is always complete: a crash leaves the
    /// whole file or none of it (plus a `.tmp` leftover that recovery removes). With sync
    /// level `Full` the directory entry is made durable too.
    pub fn create(
        storage: &dyn Storage,
        dir: &Path,
        from: &Checkpoint,
        sync: SyncLevel,
        syncs: &Syncs<'_>,
    ) -> Result<Segment> {
        let id = from.log_segment;
        let path = segment_path(dir, id);
        let tmp = path.with_extension("log.tmp");
        let _ = storage.remove_file(&tmp);
        let file = storage
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| io_err("creating", &tmp, e))?;
        // Frames are copied in through a mapping: no copy-on-write for this file.
        file.prepare_mapped_writes()
            .map_err(|e| io_err("preparing", &tmp, e))?;
        let header = SegmentHeader {
            segment_id: id,
            start_lsn: from.log_start_lsn,
            salt: fastrand::u64(..),
        };
        let mut first = vec![0u8; ALLOC_STEP as usize];
        first[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode(from));
        file.write_at(0, &first)
            .map_err(|e| io_err("writing", &tmp, e))?;
        syncs.file(&*file, &tmp)?;
        // A leftover of a checkpoint that crashed before publishing it may hold this name:
        // nobody can have it mapped, since no published checkpoint names it.
        storage
            .rename(&tmp, &path)
            .map_err(|e| io_err("renaming into place", &path, e))?;
        if sync == SyncLevel::Full {
            syncs.dir(&dir.join("log"))?;
        }
        Self::from_file(path, file, ALLOC_STEP)
    }

    /// The checkpoint that segment `id`'s header says it continues from, if the segment
    /// exists and that part of its header is intact.
    pub fn read_checkpoint(storage: &dyn Storage, dir: &Path, id: u64) -> Option<Checkpoint> {
        let path = segment_path(dir, id);
        let file = storage.open(&path, OpenMode::Existing).ok()?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(0, &mut head).ok()?;
        let (header, _) = SegmentHeader::decode(&head).ok()?;
        if header.segment_id != id {
            return None;
        }
        header.checkpoint(&head)
    }

    /// Opens an existing segment and checks its header.
    pub fn open(storage: &dyn Storage, dir: &Path, id: u64) -> std::io::Result<Result<Segment>> {
        let path = segment_path(dir, id);
        let file = storage.open(&path, OpenMode::Existing)?;
        let len = file.len()?;
        Ok(Self::from_file(path, file, len))
    }

    fn from_file(path: PathBuf, file: Arc<dyn StorageFile>, file_len: u64) -> Result<Segment> {
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        if file_len < SEGMENT_HEADER_LEN as u64 {
            return Err(Error::corrupted(
                &path,
                0,
                "log segment shorter than its header",
            ));
        }
        file.read_exact_at(0, &mut head)
            .map_err(|e| io_err("reading", &path, e))?;
        let (header, seed) = match SegmentHeader::decode(&head) {
            Ok(h) => h,
            Err(Ok(found)) => {
                return Err(Error::UnsupportedVersion {
                    file: path,
                    found,
                    supported: crate::format::FORMAT_VERSION,
                })
            }
            Err(Err(e)) => return Err(Error::corrupted(&path, e.offset as u64, e.detail)),
        };
        let map = file
            .map((file_len + MAP_SLACK) as usize)
            .map_err(|e| io_err("mapping", &path, e))?;
        Ok(Segment {
            id: header.segment_id,
            mapped_writes: file.mapped_writes_safe(),
            path,
            file,
            header,
            seed,
            view: Mutex::new(SegView { map, file_len }),
        })
    }

    /// Writes `bytes` at `off`, which `reserve` has allocated and mapped: through the
    /// mapping `map`, or with `pwrite` where stores into the mapping are not safe.
    pub fn write(&self, map: &Region, off: u64, bytes: &[u8]) -> Result<()> {
        if self.mapped_writes {
            if !map.write(off as usize, bytes) {
                return Err(Error::corrupted(&self.path, off, "log mapping too short"));
            }
            return Ok(());
        }
        self.file
            .write_at(off, bytes)
            .map_err(|e| io_err("writing to", &self.path, e))
    }

    /// Makes sure `off..end` is allocated in the file and covered by the mapping, writing
    /// zeros only past both `off` (the first byte this writer may touch) and the file's end.
    pub fn reserve(&self, off: u64, end: u64) -> Result<Arc<Region>> {
        let mut v = self.view.lock();
        if end > v.file_len {
            let real = self
                .file
                .len()
                .map_err(|e| io_err("reading the length of", &self.path, e))?;
            v.file_len = v.file_len.max(real);
        }
        if end > v.file_len {
            let target = end.div_ceil(ALLOC_STEP) * ALLOC_STEP;
            let from = v.file_len.max(off);
            if target > from {
                let zeros = vec![0u8; (target - from) as usize];
                self.file
                    .write_at(from, &zeros)
                    .map_err(|e| io_err("allocating space in", &self.path, e))?;
            }
            v.file_len = target;
        }
        self.cover(&mut v, end)?;
        Ok(Arc::clone(&v.map))
    }

    fn cover(&self, v: &mut SegView, end: u64) -> Result<()> {
        if end as usize > v.map.len() {
            v.map = self
                .file
                .map((end.max(v.file_len) + MAP_SLACK) as usize)
                .map_err(|e| io_err("mapping", &self.path, e))?;
        }
        Ok(())
    }

    /// The mapping, extended to cover `off..end` if the file holds those bytes; `None` if the
    /// file is shorter (the bytes do not exist).
    fn readable(&self, off: u64, end: u64) -> Result<Option<Arc<Region>>> {
        let mut v = self.view.lock();
        if end > v.file_len {
            let real = self
                .file
                .len()
                .map_err(|e| io_err("reading the length of", &self.path, e))?;
            v.file_len = v.file_len.max(real);
            if end > v.file_len {
                return Ok(None);
            }
        }
        let _ = off;
        self.cover(&mut v, end)?;
        Ok(Some(Arc::clone(&v.map)))
    }

    /// Zeroes every byte of the file from `from` to its end that is not zero already, and
    /// (with `sync`) makes that durable; returns whether anything was written.
    ///
    /// Recovery calls this at the end of the log it found. Bytes past that end may hold
    /// frames that a crash cut off from the chain (an earlier frame's sector lost, a later
    /// one's kept). The next writer appends at the end: were its first frame byte-identical
    /// to the lost one (the same delete again, the settings an open writes), the chain would
    /// continue into those stale frames, and a later recovery would bring back transactions
    /// that this one dropped, after the cache had been used without them.
    pub fn clear_tail(&self, from: u64, sync: bool) -> Result<bool> {
        const CHUNK: u64 = 1 << 16;
        let len = self
            .file
            .len()
            .map_err(|e| io_err("reading the length of", &self.path, e))?;
        let mut buf = vec![0u8; CHUNK as usize];
        let zeros = vec![0u8; CHUNK as usize];
        let mut off = from;
        let mut wrote = false;
        while off < len {
            let n = (len - off).min(CHUNK) as usize;
            let (Some(chunk), Some(zero)) = (buf.get_mut(..n), zeros.get(..n)) else {
                break;
            };
            self.file
                .read_exact_at(off, chunk)
                .map_err(|e| io_err("reading", &self.path, e))?;
            if chunk.iter().any(|&b| b != 0) {
                self.file
                    .write_at(off, zero)
                    .map_err(|e| io_err("clearing the stale tail of", &self.path, e))?;
                wrote = true;
            }
            off += n as u64;
        }
        if wrote && sync {
            self.file
                .sync()
                .map_err(|e| io_err("syncing", &self.path, e))?;
        }
        Ok(wrote)
    }

    /// Reads the frame at `off`, which must chain from `prev_crc` with LSN `lsn`. The frame's
    /// bytes are copied out, since the mapping may be replaced while they are in use.
    pub fn read_frame(
        &self,
        off: u64,
        prev_crc: u32,
        lsn: u64,
    ) -> Result<Result<OwnedFrame, FrameEnd>> {
        let head_end = off + FRAME_HEADER_LEN as u64;
        let Some(map) = self.readable(off, head_end)? else {
            return Ok(Err(FrameEnd::Short));
        };
        let Some(head) = map.slice(off as usize, FRAME_HEADER_LEN) else {
            return Ok(Err(FrameEnd::Short));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_FRAME_PAYLOAD {
            return Ok(Err(FrameEnd::Invalid(format!(
                "frame length {len} exceeds the maximum"
            ))));
        }
        let total = crate::format::frame::frame_len(len) as u64;
        let Some(map) = self.readable(off, off + total)? else {
            return Ok(Err(FrameEnd::Short));
        };
        let Some(bytes) = map.slice(off as usize, total as usize) else {
            return Ok(Err(FrameEnd::Short));
        };
        Ok(match decode_frame(bytes, prev_crc, lsn) {
            Ok(Frame {
                lsn,
                flags,
                boot,
                payload,
                crc,
                len,
            }) => Ok(OwnedFrame {
                lsn,
                flags,
                boot,
                payload: payload.to_vec(),
                crc,
                len,
            }),
            Err(e) => Err(e),
        })
    }
}

/// A frame copied out of the log.
#[derive(Debug)]
pub(crate) struct OwnedFrame {
    pub lsn: u64,
    pub flags: u32,
    pub boot: u32,
    pub payload: Vec<u8>,
    pub crc: u32,
    pub len: usize,
}

/// Where this handle stands in the log.
#[derive(Clone, Debug)]
pub(crate) struct LogCursor {
    pub segment: Arc<Segment>,
    /// Offset just past the last applied frame: where the next frame goes.
    pub offset: u64,
    /// CRC of the last applied frame (or the header's): the next frame's chain seed.
    pub prev_crc: u32,
    /// LSN of the last applied frame (one less than the segment's first LSN if none).
    pub applied_lsn: u64,
}

impl LogCursor {
    pub fn at_start(segment: Arc<Segment>) -> LogCursor {
        LogCursor {
            offset: SEGMENT_HEADER_LEN as u64,
            prev_crc: segment.seed,
            applied_lsn: segment.header.start_lsn - 1,
            segment,
        }
    }

    /// Bytes of frames since the segment's start.
    pub fn bytes(&self) -> u64 {
        self.offset - SEGMENT_HEADER_LEN as u64
    }
}
