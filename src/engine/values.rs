//! Value files: large values, each in its own file under `values/`.
//!
//! A file is written completely (and, with sync `Full`, made durable) before the commit that
//! refers to it, and removed only by the checkpoint after the commit that stops referring to
//! it: until then, recovery may replay transactions that still refer to it, and readers in
//! other processes may still be reading it.
//! Names are random (`hh/hh/` + 28 hex digits + `.val`), and a file is always created new,
//! never overwritten.

use super::delta::NewFile;
use super::{io_err, SyncLevel};
use crate::error::{Error, Result};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CHUNK: usize = 1 << 20;
/// The first buffer for a streamed value.
const FIRST_CHUNK: usize = 64 << 10;

pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join("values").join(name)
}

fn random_name() -> String {
    let hex: String = (0..16)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect();
    format!("{}/{}/{}.val", &hex[0..2], &hex[2..4], &hex[4..])
}

/// Writes a new value file holding `data`; returns its name, size and CRC.
pub(crate) fn write_bytes(
    storage: &dyn Storage,
    dir: &Path,
    sync: SyncLevel,
    data: &[u8],
) -> Result<NewFile> {
    write_with(storage, dir, sync, |file, p| {
        file.write_at(0, data)
            .map_err(|e| io_err("writing", p, e))?;
        Ok((data.len() as u64, crc32fast::hash(data)))
    })
}

/// Writes a new value file from `data`, read to its end; returns its name, size and CRC.
pub(crate) fn write(
    storage: &dyn Storage,
    dir: &Path,
    sync: SyncLevel,
    data: &mut dyn Read,
) -> Result<NewFile> {
    write_with(storage, dir, sync, |file, p| {
        // The buffer grows (to CHUNK) only while reads fill it: a small stream costs a small
        // buffer.
        let mut buf = vec![0u8; FIRST_CHUNK];
        let mut off = 0u64;
        let mut crc = crc32fast::Hasher::new();
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading the value to store", e)),
            };
            let chunk = buf.get(..n).unwrap_or(&[]);
            file.write_at(off, chunk)
                .map_err(|e| io_err("writing", p, e))?;
            crc.update(chunk);
            off += n as u64;
            if n == buf.len() && buf.len() < CHUNK {
                buf.resize(buf.len() * 2, 0);
            }
        }
        Ok((off, crc.finalize()))
    })
}

/// Creates a new value file under a fresh random name, fills it with `fill` (which returns
/// the size and CRC it wrote), and with sync `Full` makes it and its directory entries
/// durable. On any error the file is removed.
fn write_with(
    storage: &dyn Storage,
    dir: &Path,
    sync: SyncLevel,
    fill: impl FnOnce(&dyn StorageFile, &Path) -> Result<(u64, u32)>,
) -> Result<NewFile> {
    let (name, file, p) = loop {
        let name = random_name();
        let p = path(dir, &name);
        let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
        storage
            .create_dir_all(&parent)
            .map_err(|e| io_err("creating directory", &parent, e))?;
        match storage.open(&p, OpenMode::CreateNew) {
            Ok(f) => break (name, f, p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Another process may have removed the (empty) directory just now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("creating", &p, e)),
        }
    };
    let result = (|| -> Result<NewFile> {
        let (size, crc) = fill(&*file, &p)?;
        if sync == SyncLevel::Full {
            file.sync().map_err(|e| io_err("syncing", &p, e))?;
            sync_dirs(storage, dir, &name)?;
        }
        Ok(NewFile {
            name: name.clone(),
            size,
            crc,
        })
    })();
    if result.is_err() {
        remove(storage, dir, &name);
    }
    result
}

/// Makes a value file's directory entries durable (its two directories and `values/`).
fn sync_dirs(storage: &dyn Storage, dir: &Path, name: &str) -> Result<()> {
    let p = path(dir, name);
    let mut d = p.parent();
    for _ in 0..3 {
        let Some(x) = d else { break };
        storage
            .sync_dir(x)
            .map_err(|e| io_err("syncing directory", x, e))?;
        d = x.parent();
    }
    Ok(())
}

/// Makes value files (and their directory entries) durable; files already gone are skipped.
pub(crate) fn sync_all<'a>(
    storage: &dyn Storage,
    dir: &Path,
    names: impl Iterator<Item = &'a str>,
) -> Result<()> {
    for name in names {
        let p = path(dir, name);
        match storage.open(&p, OpenMode::Existing) {
            Ok(f) => f.sync().map_err(|e| io_err("syncing", &p, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("opening", &p, e)),
        }
        match sync_dirs(storage, dir, name) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Opens a value file; `None` if it is gone (removed after a newer commit).
pub(crate) fn open(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
) -> Result<Option<Arc<dyn StorageFile>>> {
    let p = path(dir, name);
    match storage.open(&p, OpenMode::Existing) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("opening", &p, e)),
    }
}

/// Reads a whole value file, checking its size and CRC; `None` if it is gone.
pub(crate) fn read(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    size: u64,
    crc: u32,
) -> Result<Option<Vec<u8>>> {
    let Some(f) = open(storage, dir, name)? else {
        return Ok(None);
    };
    let p = path(dir, name);
    let len = f
        .len()
        .map_err(|e| io_err("reading the length of", &p, e))?;
    if len != size {
        return Err(Error::corrupted(
            &p,
            len,
            format!("value file holds {len} bytes, expected {size}"),
        ));
    }
    let n =
        usize::try_from(size).map_err(|_| Error::corrupted(&p, 0, "value too large for memory"))?;
    let mut buf = vec![0u8; n];
    f.read_exact_at(0, &mut buf)
        .map_err(|e| io_err("reading", &p, e))?;
    if crc32fast::hash(&buf) != crc {
        return Err(Error::corrupted(&p, 0, "value file checksum mismatch"));
    }
    Ok(Some(buf))
}

/// Whether a value file exists with the recorded size and CRC (any error reading it counts
/// as no).
pub(crate) fn verify(storage: &dyn Storage, dir: &Path, f: &NewFile) -> bool {
    matches!(check_file(storage, dir, f), Ok(true))
}

/// Whether a value file exists with the recorded size and CRC: `Ok(false)` if it is missing,
/// shorter or longer, or holds other bytes; `Err` if it cannot be read (an I/O error, too
/// many open files), when the answer is unknown.
pub(crate) fn check_file(storage: &dyn Storage, dir: &Path, f: &NewFile) -> Result<bool> {
    let Some(file) = open(storage, dir, &f.name)? else {
        return Ok(false);
    };
    let p = path(dir, &f.name);
    let len = file
        .len()
        .map_err(|e| io_err("reading the length of", &p, e))?;
    if len != f.size {
        return Ok(false);
    }
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK.min(f.size as usize).max(1)];
    let mut off = 0u64;
    while off < f.size {
        let want = ((f.size - off) as usize).min(buf.len());
        let Some(chunk) = buf.get_mut(..want) else {
            return Ok(false);
        };
        match file.read_exact_at(off, chunk) {
            Ok(()) => {}
            // Shorter than its length said: it changed under us, which is damage too.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(io_err("reading", &p, e)),
        }
        crc.update(chunk);
        off += want as u64;
    }
    Ok(crc.finalize() == f.crc)
}

/// Removes a value file and then its directories if they are empty; errors are ignored (the
/// file may already be gone, and an orphan is harmless).
pub(crate) fn remove(storage: &dyn Storage, dir: &Path, name: &str) {
    let p = path(dir, name);
    let _ = storage.remove_file(&p);
    let mut d = p.parent();
    for _ in 0..2 {
        let Some(x) = d else { break };
        if storage.remove_dir(x).is_err() {
            break;
        }
        d = x.parent();
    }
}
