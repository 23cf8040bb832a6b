//! A full disk, for real (requirement A15): a cache on a small file system is filled with
//! sets (small and large values, and multi-op transactions) until writes fail. Then: the
//! writes failed with the file system's error (never a SIGBUS, which would kill the test);
//! nothing committed is lost and nothing of a failed transaction is visible; no value file
//! leaks; and once space is back, the cache takes writes again and reopens with everything.
//! On an 8 MiB tmpfs (space comes back by growing it), and on ext4, xfs and btrfs on loop
//! devices (space comes back by removing a ballast file). btrfs is copy-on-write: a store
//! into a shared mapping of a file there needs new space, which is why the cache's mapped
//! files get the no-copy-on-write attribute.
//!
//! Mounting needs root and the `mkfs.*` tools (CI runs as root and installs them); where
//! that fails, the test says what it skipped and passes.

mod common;
use common::value_files;
use diskcache::{Cache, Error, WarningKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIN_FILE: usize = 16 << 10;
const SMALL: usize = 4000;
const LARGE: usize = 100 << 10;

/// A file system mounted for the test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

/// Runs a command; an error says what failed.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path))?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// A file system of type `fs` made in a sparse image file of `mib` MiB, mounted through
    /// a loop device.
    fn mount_image(path: &Path, image: &Path, fs: &str, mib: u64) -> Result<Tmpfs, String> {
        let f = std::fs::File::create(image).map_err(|e| format!("creating the image: {e}"))?;
        f.set_len(mib << 20)
            .map_err(|e| format!("sizing the image: {e}"))?;
        drop(f);
        let mkfs = format!("mkfs.{fs}");
        let mut cmd = Command::new(&mkfs);
        match fs {
            "ext4" => cmd.args(["-q", "-F"]),
            "xfs" => cmd.args(["-q", "-f"]),
            _ => cmd.args(["-q", "-f"]),
        };
        run(cmd.arg(image))?;
        run(Command::new("mount")
            .args(["-t", fs, "-o", "loop"])
            .arg(image)
            .arg(path))?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("running mount");
        assert!(status.success(), "remounting the tmpfs with size {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has it open: detach it now, it goes once that is closed.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Printed past the test harness's capture, so a skip is visible in CI's log.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn value(key: u64, len: usize, round: u64) -> Vec<u8> {
    let mut v = vec![(key as u8) ^ (round as u8); len];
    v[..8].copy_from_slice(&key.to_le_bytes());
    v
}

type Model = BTreeMap<u64, Vec<u8>>;

/// What is visible is exactly what was committed.
fn verify(c: &Cache, model: &Model, also_absent: &[u64], what: &str) {
    for (k, v) in model {
        let got = c
            .get::<Vec<u8>>(*k)
            .unwrap_or_else(|e| panic!("{what}: reading {k}: {e}"));
        assert!(
            got.as_deref() == Some(v.as_slice()),
            "{what}: key {k}: committed {} bytes, found {:?} bytes",
            v.len(),
            got.map(|g| g.len())
        );
    }
    for k in also_absent {
        if !model.contains_key(k) {
            let got = c
                .get::<Vec<u8>>(*k)
                .unwrap_or_else(|e| panic!("{what}: reading {k}: {e}"));
            assert!(
                got.is_none(),
                "{what}: key {k} of a failed write is visible"
            );
        }
    }
    assert_eq!(c.len().expect("len"), model.len() as u64, "{what}: len()");
}

/// `check(false)`: no damage, no index or counter mismatch, no missing or unknown value
/// file. Leftovers of failed checkpoints (a `.tmp` segment, an unpublished index file) are
/// `StaleFile`s, which are allowed.
fn verify_check(c: &Cache, what: &str) {
    for w in c
        .check(false)
        .unwrap_or_else(|e| panic!("{what}: check: {e}"))
    {
        assert!(
            w.kind == WarningKind::StaleFile,
            "{what}: check reports {w}"
        );
    }
}

fn open(dir: &Path) -> diskcache::Result<Cache> {
    Cache::builder()
        .min_file_size(MIN_FILE as u64)
        .checkpoint_bytes(256 << 10)
        .open(dir)
}

fn is_disk_full(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

#[test]
fn a_full_tmpfs_fails_writes_cleanly_and_loses_nothing() {
    let base = tempfile::tempdir().expect("tempdir");
    let fs = match Tmpfs::mount(base.path(), "8m") {
        Ok(m) => m,
        Err(e) => {
            say(&format!("skipped: disk_full needs a tmpfs mount: {e}"));
            return;
        }
    };
    fill_and_recover("tmpfs", &base.path().join("cache"), || fs.resize("64m"));
    drop(fs);
}

/// ext4, xfs and btrfs on loop devices, filled with a 24 MiB ballast file removed to give
/// space back.
fn on_a_loop_device(fs: &str, mib: u64) {
    let base = tempfile::tempdir().expect("tempdir");
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    let mounted = match Tmpfs::mount_image(&mnt, &base.path().join("image"), fs, mib) {
        Ok(m) => m,
        Err(e) => {
            say(&format!(
                "skipped: disk_full on {fs} needs a loop mount: {e}"
            ));
            return;
        }
    };
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![1u8; 24 << 20]).expect("ballast");
    // Fill the rest but a few MiB, so the cache's own writes hit the limit soon.
    let pad = mnt.join("pad");
    let mut f = std::fs::File::create(&pad).expect("pad");
    let chunk = vec![2u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .open(&pad)
        .and_then(|f| {
            let len = f.metadata()?.len();
            f.set_len(len.saturating_sub(6 << 20))
        });
    let _ = Command::new("sync").status();
    fill_and_recover(fs, &mnt.join("cache"), || {
        std::fs::remove_file(&ballast).expect("remove the ballast");
        let _ = Command::new("sync").status();
    });
    drop(mounted);
}

#[test]
fn a_full_ext4_fails_writes_cleanly_and_loses_nothing() {
    on_a_loop_device("ext4", 64);
}

#[test]
fn a_full_xfs_fails_writes_cleanly_and_loses_nothing() {
    on_a_loop_device("xfs", 320);
}

#[test]
fn a_full_btrfs_fails_writes_cleanly_and_loses_nothing() {
    on_a_loop_device("btrfs", 192);
}

/// Fills a cache in `dir` until writes fail, checks what is visible, calls `make_space`,
/// then checks that the cache works again and reopens with everything.
fn fill_and_recover(fs_name: &str, dir: &Path, make_space: impl FnOnce()) {
    let dir = dir.to_path_buf();
    let c = open(&dir).expect("open");
    let mut model = Model::new();
    let mut failed_keys = Vec::new();
    let (mut failures, mut small_failures, mut large_failures, mut consecutive) = (0, 0, 0, 0);
    let mut i = 0u64;
    // Fill until 12 writes in a row fail (three of each kind: all fail by then).
    while consecutive < 12 {
        assert!(i < 20_000, "the disk never filled up");
        let k = i;
        let (r, small) = match i % 4 {
            0 => (c.set(k, value(k, SMALL, 0)), true),
            1 => (c.set(k, value(k, LARGE, 0)), false),
            2 => {
                // A transaction: a small and a large value, and a delete of an older key.
                let victim = model
                    .keys()
                    .nth((i as usize / 7) % model.len().max(1))
                    .copied();
                let r = c.transact(|| {
                    c.set(k, value(k, SMALL, 1))?;
                    c.set(k + 1_000_000, value(k, LARGE, 1))?;
                    if let Some(v) = victim {
                        c.delete(v)?;
                    }
                    Ok(())
                });
                if r.is_ok() {
                    model.insert(k, value(k, SMALL, 1));
                    model.insert(k + 1_000_000, value(k, LARGE, 1));
                    if let Some(v) = victim {
                        model.remove(&v);
                    }
                } else {
                    failed_keys.extend([k, k + 1_000_000]);
                }
                (r, false)
            }
            _ => {
                // Overwrite an existing key with a large value (its old file becomes
                // obsolete).
                let target = model
                    .keys()
                    .nth((i as usize / 3) % model.len().max(1))
                    .copied();
                match target {
                    Some(t) => (c.set(t, value(t, LARGE, i)), false),
                    None => (Ok(()), true),
                }
            }
        };
        match r {
            Ok(()) => {
                consecutive = 0;
                match i % 4 {
                    0 => {
                        model.insert(k, value(k, SMALL, 0));
                    }
                    1 => {
                        model.insert(k, value(k, LARGE, 0));
                    }
                    3 => {
                        if let Some(t) = model.keys().nth((i as usize / 3) % model.len().max(1)) {
                            let t = *t;
                            model.insert(t, value(t, LARGE, i));
                        }
                    }
                    _ => {}
                }
            }
            Err(e) => {
                assert!(
                    is_disk_full(&e),
                    "write {i} failed with something else than a full disk: {e}"
                );
                failures += 1;
                consecutive += 1;
                if small {
                    small_failures += 1;
                } else {
                    large_failures += 1;
                }
                if i % 4 < 2 {
                    failed_keys.push(k);
                }
                // Whatever failed, what is visible is exactly what was committed.
                verify(&c, &model, &failed_keys, &format!("after failed write {i}"));
            }
        }
        i += 1;
    }
    assert!(
        small_failures > 0 && large_failures > 0,
        "both kinds of write failed"
    );
    verify_check(&c, "disk full");
    // A second handle opens on the full disk (its locks need no data blocks).
    let other = open(&dir).expect("a second handle on a full disk");
    verify(&other, &model, &failed_keys, "second handle, disk full");
    drop(other);

    // Space comes back.
    make_space();
    c.set(u64::MAX, value(7, SMALL, 0))
        .expect("a small write once space is back");
    model.insert(u64::MAX, value(7, SMALL, 0));
    c.transact(|| {
        c.set(u64::MAX - 1, value(8, LARGE, 0))?;
        c.set(u64::MAX - 2, value(9, SMALL, 0))
    })
    .expect("a transaction once space is back");
    model.insert(u64::MAX - 1, value(8, LARGE, 0));
    model.insert(u64::MAX - 2, value(9, SMALL, 0));
    verify(&c, &model, &failed_keys, "space is back");
    // No value file leaked: once a checkpoint has removed the replaced ones, the files on
    // disk are exactly those of the live large values.
    let before = c.engine_info().checkpoints;
    let mut f = 0u64;
    while c.engine_info().checkpoints == before {
        let k = 2_000_000 + f;
        c.set(k, value(k, SMALL, 0)).expect("filler");
        model.insert(k, value(k, SMALL, 0));
        f += 1;
        assert!(f < 100_000, "no checkpoint happened");
    }
    let live = model.values().filter(|v| v.len() >= MIN_FILE).count();
    assert_eq!(
        value_files(&dir).len(),
        live,
        "value files on disk vs live large values"
    );
    verify_check(&c, "after a checkpoint");
    c.check(true).expect("check(true) removes leftovers");
    assert_eq!(
        c.check(false).expect("check"),
        vec![],
        "clean after check(true)"
    );
    drop(c);
    let c = open(&dir).expect("reopen");
    verify(&c, &model, &failed_keys, "reopened");
    assert_eq!(
        c.check(false).expect("check"),
        vec![],
        "clean after reopening"
    );
    say(&format!(
        "disk_full on {fs_name}: {i} writes, {failures} failed with a full disk \
         ({small_failures} small, {large_failures} with large values), {} items kept",
        model.len()
    ));
    drop(c);
}
