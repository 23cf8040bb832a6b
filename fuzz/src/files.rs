//! Damaged files (requirement A14): a small valid cache directory (built once per process,
//! then copied into a fresh simulated file system for every run) has whole files or byte
//! ranges overwritten, truncated, extended, replaced or removed as the input says; then the
//! cache is opened and used. Open must fail with an error or recover, and every later call
//! (`len`, `volume`, iteration, `get`, `check`, a write, `check(true)`, a reopen) must return
//! an error or a value, never panic, hang or allocate without bound.

use crate::stats;
use arbitrary::{Arbitrary, Unstructured};
use diskcache::storage::{FaultConfig, FaultyStorage, OpenMode, Storage};
use diskcache::{Cache, SetOptions, SyncLevel, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const DIR: &str = "/cache";

/// One change to one file of the template; `file` picks a file (modulo their number),
/// offsets are taken modulo the file's used length (up to its last non-zero byte, plus a
/// little), so damage lands where the data is.
#[derive(Arbitrary, Clone, Debug)]
pub enum Damage {
    /// Overwrite bytes at an offset (within the file).
    Overwrite { file: u8, at: u32, bytes: Vec<u8> },
    /// Flip one bit.
    Flip { file: u8, at: u32, bit: u8 },
    /// Zero a range.
    Zero { file: u8, at: u32, len: u16 },
    /// Cut the file.
    Truncate { file: u8, at: u32 },
    /// Append bytes.
    Extend { file: u8, bytes: Vec<u8> },
    /// Replace the whole file.
    Replace { file: u8, bytes: Vec<u8> },
    /// Remove the file.
    Remove { file: u8 },
    /// Copy a range of one file over another file (plausible bytes in the wrong place).
    Transplant {
        from: u8,
        to: u8,
        at: u32,
        len: u16,
        dest: u32,
    },
}

/// One fuzz input.
#[derive(Arbitrary, Clone, Debug)]
pub struct Input {
    /// The damage, applied in order.
    pub damage: Vec<Damage>,
    /// Open with sync `Full` (else `Normal`).
    pub full_sync: bool,
}

/// The template: every file's path and bytes, and every directory.
#[derive(Debug)]
pub struct Template {
    /// Directories, parents first.
    pub dirs: Vec<PathBuf>,
    /// Files and their bytes.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

fn storage() -> FaultyStorage {
    FaultyStorage::new(FaultConfig {
        seed: 1,
        max_file_len: 2 << 20,
    })
}

fn open(s: &FaultyStorage, full: bool) -> diskcache::Result<Cache> {
    Cache::builder()
        .storage(Arc::new(s.clone()))
        .sync(if full {
            SyncLevel::Full
        } else {
            SyncLevel::Normal
        })
        .timeout(Duration::from_secs(5))
        .open(Path::new(DIR))
}

/// Builds the template cache: items of every kind (integers, strings, bytes, value files,
/// tags, expiry times), several checkpoints (multi-level trees), and log frames after the
/// last checkpoint.
pub fn build_template() -> Template {
    fastrand::seed(7);
    let fs = storage();
    let c = Cache::builder()
        .storage(Arc::new(fs.clone()))
        .checkpoint_bytes(4096)
        .min_file_size(600)
        .tag_index(true)
        .open(Path::new(DIR))
        .unwrap_or_else(|e| panic!("template: open: {e}"));
    let run = || -> diskcache::Result<()> {
        for i in 0..150i64 {
            let o = SetOptions::new().tag(i % 3);
            match i % 5 {
                0 => c.set_with(i, i * 7, &o)?,
                1 => c.set_with(format!("s{i}"), format!("value {i}"), &o)?,
                2 => c.set_value(i, &Value::Bytes(vec![i as u8; (i as usize) % 40]), &o)?,
                3 => c.set_with(
                    (i, "tuple"),
                    vec![i as f64; 3],
                    &o.expire(Duration::from_secs(3600)),
                )?,
                _ if i % 25 == 4 => {
                    c.set_value(i, &Value::Bytes(vec![i as u8; 700 + i as usize]), &o)?
                }
                _ => c.set_with(i, -i, &o)?,
            }
        }
        for i in (0..150i64).step_by(7) {
            c.delete(i)?;
        }
        c.compact()?;
        c.transact(|| {
            for i in 150..190i64 {
                c.set(i, i)?;
            }
            c.incr("counter", 5)?;
            Ok(())
        })?;
        c.set_value("big", &Value::Bytes(vec![9u8; 5000]), &SetOptions::new())?;
        c.set_with("gone", 1, &SetOptions::new().expire(Duration::ZERO))?;
        Ok(())
    };
    run().unwrap_or_else(|e| panic!("template: {e}"));
    drop(c);
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for p in fs.paths() {
        if !p.starts_with(DIR) {
            continue;
        }
        match fs.open(&p, OpenMode::Existing) {
            Ok(f) => {
                let bytes = f
                    .read_all()
                    .unwrap_or_else(|e| panic!("template: read {}: {e}", p.display()));
                files.push((p, bytes));
            }
            Err(_) => dirs.push(p),
        }
    }
    dirs.sort_by_key(|p| p.components().count());
    Template { dirs, files }
}

/// The template, built on first use.
pub fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(build_template)
}

/// A file system holding a copy of the template.
fn install(t: &Template) -> FaultyStorage {
    let fs = storage();
    for d in &t.dirs {
        let _ = fs.create_dir_all(d);
    }
    // Nothing crashes in this target, so nothing needs to be durable.
    for (p, bytes) in &t.files {
        if let Ok(f) = fs.open(p, OpenMode::Create) {
            let _ = f.write_at(0, bytes);
        }
    }
    fs
}

/// Where the data of a file ends (past its last non-zero byte), at least 1.
fn used(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(1, |i| i + 2)
}

fn read(fs: &FaultyStorage, p: &Path) -> Option<Vec<u8>> {
    fs.open(p, OpenMode::Existing).ok()?.read_all().ok()
}

fn write_whole(fs: &FaultyStorage, p: &Path, bytes: &[u8]) {
    let _ = fs.remove_file(p);
    if let Ok(f) = fs.open(p, OpenMode::Create) {
        let _ = f.write_at(0, bytes);
        let _ = f.sync();
    }
}

fn apply(fs: &FaultyStorage, t: &Template, d: &Damage) {
    let n = t.files.len().max(1);
    let path = |i: u8| t.files.get(usize::from(i) % n).map(|(p, _)| p.clone());
    let cap = |v: &[u8]| v.iter().take(4096).copied().collect::<Vec<u8>>();
    match d {
        Damage::Overwrite { file, at, bytes } => {
            let Some(p) = path(*file) else { return };
            let Some(mut cur) = read(fs, &p) else { return };
            if cur.is_empty() {
                return;
            }
            let off = (*at as usize) % used(&cur).min(cur.len());
            let bytes = cap(bytes);
            let end = (off + bytes.len()).min(cur.len());
            cur[off..end].copy_from_slice(&bytes[..end - off]);
            let _ = fs.corrupt(&p, off as u64, &cur[off..end]);
        }
        Damage::Flip { file, at, bit } => {
            let Some(p) = path(*file) else { return };
            let Some(cur) = read(fs, &p) else { return };
            if cur.is_empty() {
                return;
            }
            let off = (*at as usize) % used(&cur).min(cur.len());
            let _ = fs.corrupt(&p, off as u64, &[cur[off] ^ (1 << (bit % 8))]);
        }
        Damage::Zero { file, at, len } => {
            let Some(p) = path(*file) else { return };
            let Some(cur) = read(fs, &p) else { return };
            if cur.is_empty() {
                return;
            }
            let off = (*at as usize) % used(&cur).min(cur.len());
            let end = (off + usize::from(*len)).min(cur.len());
            let _ = fs.corrupt(&p, off as u64, &vec![0u8; end - off]);
        }
        Damage::Truncate { file, at } => {
            let Some(p) = path(*file) else { return };
            let Some(cur) = read(fs, &p) else { return };
            let len = (*at as usize) % (used(&cur) + 1);
            let _ = fs.truncate(&p, len as u64);
        }
        Damage::Extend { file, bytes } => {
            let Some(p) = path(*file) else { return };
            if let Ok(f) = fs.open(&p, OpenMode::Existing) {
                if let Ok(len) = f.len() {
                    let _ = f.write_at(len, &cap(bytes));
                    let _ = f.sync();
                }
            }
        }
        Damage::Replace { file, bytes } => {
            let Some(p) = path(*file) else { return };
            write_whole(fs, &p, &cap(bytes));
        }
        Damage::Remove { file } => {
            let Some(p) = path(*file) else { return };
            let _ = fs.remove_file(&p);
        }
        Damage::Transplant {
            from,
            to,
            at,
            len,
            dest,
        } => {
            let (Some(a), Some(b)) = (path(*from), path(*to)) else {
                return;
            };
            let (Some(src), Some(cur)) = (read(fs, &a), read(fs, &b)) else {
                return;
            };
            if src.is_empty() || cur.is_empty() {
                return;
            }
            let s = (*at as usize) % used(&src).min(src.len());
            let e = (s + usize::from(*len)).min(src.len());
            let d = (*dest as usize) % used(&cur).min(cur.len());
            let e2 = (d + (e - s)).min(cur.len());
            let _ = fs.corrupt(&b, d as u64, &src[s..s + (e2 - d)]);
        }
    }
}

/// Uses a cache opened on damaged files: every call returns, whatever it returns.
fn exercise(c: &Cache) {
    let _ = c.len();
    let _ = c.volume();
    let _ = c.engine_info();
    let mut keys = Vec::new();
    for k in c.iterkeys().take(2000) {
        match k {
            Ok(k) => keys.push(k),
            Err(_) => break,
        }
    }
    for k in c.iter().take(2000) {
        if k.is_err() {
            break;
        }
    }
    for k in c.iterkeys_rev().take(50) {
        if k.is_err() {
            break;
        }
    }
    for k in keys.iter().take(400) {
        let _ = c.get_value_entry(k);
    }
    for k in [0i64, 1, 4, 9, 149, 185] {
        let _ = c.get_value(k);
    }
    let _ = c.get_value("big");
    let _ = c.get::<i64>("counter");
    let _ = c.peekitem::<serde::de::IgnoredAny>(false);
    let _ = c.peekitem::<serde::de::IgnoredAny>(true);
    let _ = c.check(false);
    let _ = c.set("after", 1);
    let _ = c.set_value(
        "after-big",
        &Value::Bytes(vec![3u8; 2000]),
        &SetOptions::new(),
    );
    let _ = c.incr("counter", 1);
    let _ = c.delete(4i64);
    let _ = c.evict(1i64);
    let _ = c.expire();
    let _ = c.check(true);
    let _ = c.get_value("after");
}

/// Runs one input.
pub fn run(input: &Input) {
    stats::run_started("files");
    fastrand::seed(11);
    let t = template();
    let fs = install(t);
    for d in input.damage.iter().take(16) {
        apply(&fs, t, d);
    }
    match open(&fs, input.full_sync) {
        Ok(c) => {
            stats::DAMAGED_OPENED.inc();
            exercise(&c);
            drop(c);
            if let Ok(c) = open(&fs, input.full_sync) {
                let _ = c.len();
                let _ = c.check(false);
                let _ = c.get_value(1i64);
            }
        }
        Err(_) => stats::DAMAGED_REFUSED.inc(),
    }
}

/// Decodes an input from fuzzer bytes.
pub fn decode(data: &[u8]) -> Option<Input> {
    Input::arbitrary_take_rest(Unstructured::new(data)).ok()
}
