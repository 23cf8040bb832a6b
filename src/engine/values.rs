//! Value files: large values, each in its own file under `values/`.
//!
//! A file is written completely (and, with sync `Full`, made durable) before the commit that
//! refers to it, and removed only by the checkpoint after the commit that stops referring to
//! it: until then, recovery may replay transactions that still refer to it, and readers in
//! other processes may still be reading it.
//! Names are random (`hh/hh/` + 28 hex digits + `.val`), and a file is always created new,
//! never overwritten.

use super::delta::NewFile;
use super::{io_err, Syncs};
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

/// Writes a new value file holding `data`; returns its name, size and CRC. With `syncs`,
/// the file and its directory entries are made durable too.
pub(crate) fn write_bytes(
    storage: &dyn Storage,
    dir: &Path,
    syncs: Option<Syncs<'_>>,
    data: &[u8],
) -> Result<NewFile> {
    write_with(storage, dir, syncs, |file, p| {
        file.write_at(0, data)
            .map_err(|e| io_err("writing", p, e))?;
        Ok((data.len() as u64, crc32fast::hash(data)))
    })
}

/// Writes a new value file from `data`, read to its end; returns its name, size and CRC.
/// With `syncs`, the file and its directory entries are made durable too.
pub(crate) fn write(
    storage: &dyn Storage,
    dir: &Path,
    syncs: Option<Syncs<'_>>,
    data: &mut dyn Read,
) -> Result<NewFile> {
    write_with(storage, dir, syncs, |file, p| {
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
/// the size and CRC it wrote), and with `syncs` makes it and its directory entries durable.
/// On any error the file is removed.
fn write_with(
    storage: &dyn Storage,
    dir: &Path,
    syncs: Option<Syncs<'_>>,
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
        if let Some(syncs) = &syncs {
            syncs.file(&*file, &p)?;
            sync_dirs(syncs, dir, &name)?;
        }
        Ok(NewFile {
            name: name.clone(),
            size,
            crc,
            synced: syncs.is_some(),
        })
    })();
    if result.is_err() {
        remove(storage, dir, &name);
    }
    result
}

/// Makes a value file's directory entries durable (its two directories and `values/`).
fn sync_dirs(syncs: &Syncs<'_>, dir: &Path, name: &str) -> Result<()> {
    let p = path(dir, name);
    let mut d = p.parent();
    for _ in 0..3 {
        let Some(x) = d else { break };
        syncs.dir(x)?;
        d = x.parent();
    }
    Ok(())
}

/// Makes a value file (and its directory entries) durable; a file already gone is skipped
/// (a newer commit replaced it).
pub(crate) fn sync_file(syncs: &Syncs<'_>, dir: &Path, name: &str) -> Result<()> {
    let p = path(dir, name);
    match syncs.storage.open(&p, OpenMode::ReadOnly) {
        Ok(f) => syncs.file(&*f, &p)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("opening", &p, e)),
    }
    sync_dirs(syncs, dir, name)
}

/// Opens a value file for reading: read-only, refusing a symbolic link in its place, and
/// checked against the length its record gives. `None` if it is gone (removed after a
/// newer commit, or by someone else) or its length is wrong (damaged): either way its
/// value cannot be read, and the entry reads as a miss.
pub(crate) fn open(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    size: u64,
) -> Result<Option<Arc<dyn StorageFile>>> {
    let p = path(dir, name);
    let f = match storage.open(&p, OpenMode::ReadOnly) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A symbolic link planted in its place (O_NOFOLLOW) is damage, not a value.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io_err("opening", &p, e)),
    };
    let len = f
        .len()
        .map_err(|e| io_err("reading the length of", &p, e))?;
    Ok((len == size).then_some(f))
}

/// Opens a value file at `p` as a plain [`std::fs::File`] for a binding that hands it to
/// its own language (whose file objects read it): read-only, refusing a symbolic link, and
/// checked against the length `size` its record gives; `None` if it is gone or damaged
/// (see [`open`]). Reading it through does not check its CRC.
pub(crate) fn open_std(p: &Path, size: u64) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io_err("opening", p, e)),
    };
    let len = f
        .metadata()
        .map_err(|e| io_err("reading the length of", p, e))?
        .len();
    Ok((len == size).then_some(f))
}

/// Whether a value file exists (under its name, not as a symbolic link).
pub(crate) fn exists(storage: &dyn Storage, dir: &Path, name: &str) -> Result<bool> {
    let p = path(dir, name);
    match storage.open(&p, OpenMode::ReadOnly) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(false),
        Err(e) => Err(io_err("opening", &p, e)),
    }
}

/// Reads a whole value file, checking its size and CRC; `None` if it is gone or damaged
/// (see [`open`]; a wrong CRC is damage too).
pub(crate) fn read(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    size: u64,
    crc: u32,
) -> Result<Option<Vec<u8>>> {
    let Some(f) = open(storage, dir, name, size)? else {
        return Ok(None);
    };
    let p = path(dir, name);
    let n =
        usize::try_from(size).map_err(|_| Error::corrupted(&p, 0, "value too large for memory"))?;
    let mut buf = vec![0u8; n];
    match f.read_exact_at(0, &mut buf) {
        Ok(()) => {}
        // Shorter than it was a moment ago: it changed under us.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_err("reading", &p, e)),
    }
    Ok((crc32fast::hash(&buf) == crc).then_some(buf))
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
    let Some(file) = open(storage, dir, &f.name, f.size)? else {
        return Ok(false);
    };
    let p = path(dir, &f.name);
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
