//! Damage to single files of a real cache directory costs what it must and no more: a
//! missing or damaged value file loses its entry, never the commits after it; damage to the
//! meta file is recovered from the copy of the checkpoint in the log, or refused, never a
//! silent rollback or a fresh start over the old files; a value file replaced by a link to
//! another file is never served.

mod common;

use common::value_files;
use diskcache::{Cache, Error, Repaired, WarningKind};
use std::io::Read;
use std::path::{Path, PathBuf};

fn big(seed: u8) -> Vec<u8> {
    (0..64 * 1024).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A cache holding a file-backed value and, after it, twenty small commits. Everything is in
/// the log since the last checkpoint (it is small, so closing does not checkpoint either),
/// so the next open replays it.
fn cache_with_a_big_value_then_more(dir: &Path) -> PathBuf {
    let cache = Cache::open(dir).expect("open");
    cache.set("big", big(1)).expect("set big");
    for i in 0..20 {
        cache.set(("later", i), i).expect("set");
    }
    let files = value_files(dir);
    assert_eq!(files.len(), 1);
    files[0].clone()
}

fn assert_later_commits_kept(cache: &Cache) {
    for i in 0..20 {
        assert_eq!(
            cache.get::<i64>(("later", i)).expect("get"),
            Some(i),
            "commit {i} after the damaged entry was lost"
        );
    }
}

#[test]
fn a_deleted_value_file_loses_its_entry_and_no_later_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = cache_with_a_big_value_then_more(dir.path());
    std::fs::remove_file(&file).expect("remove the value file");
    let cache = Cache::open(dir.path()).expect("reopen");
    assert_later_commits_kept(&cache);
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), None, "a miss");
    assert!(cache.read("big").expect("read").is_none());
    let warnings = cache.check(false).expect("check");
    let missing: Vec<_> = warnings
        .iter()
        .filter(|w| w.kind == WarningKind::MissingFile)
        .collect();
    assert_eq!(missing.len(), 1, "{warnings:?}");
    cache.check(true).expect("check --fix");
    assert!(!cache.contains("big").expect("contains"));
    assert_eq!(cache.len().expect("len"), 20);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn a_damaged_value_file_loses_its_entry_and_no_later_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = cache_with_a_big_value_then_more(dir.path());
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[1000] ^= 0x40;
    std::fs::write(&file, &bytes).expect("flip a byte");
    let cache = Cache::open(dir.path()).expect("reopen");
    assert_later_commits_kept(&cache);
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), None, "a miss");
    // A streamed read gets the bytes, but ends in an error instead of a clean end.
    let mut reader = cache.read("big").expect("read").expect("a reader");
    let mut out = Vec::new();
    let err = reader
        .read_to_end(&mut out)
        .expect_err("the checksum fails");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let warnings = cache.check(false).expect("check");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].kind, WarningKind::BadFile);
    cache.check(true).expect("check --fix");
    assert!(!cache.contains("big").expect("contains"));
}

#[test]
fn a_value_file_cut_short_reads_as_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = cache_with_a_big_value_then_more(dir.path());
    std::fs::write(&file, &big(1)[..100]).expect("truncate");
    let cache = Cache::open(dir.path()).expect("reopen");
    assert_later_commits_kept(&cache);
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), None);
    assert!(cache.read("big").expect("read").is_none());
}

#[test]
fn a_value_file_replaced_by_a_link_to_another_file_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("open");
    cache.set("big", big(1)).expect("set");
    let file = value_files(dir.path())[0].clone();
    // A file of the same length elsewhere, which the attacker wants served.
    let secret = other.path().join("secret");
    std::fs::write(&secret, big(2)).expect("secret");
    std::fs::remove_file(&file).expect("remove");
    std::os::unix::fs::symlink(&secret, &file).expect("symlink");
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), None);
    assert!(cache.read("big").expect("read").is_none());
    assert!(cache.raw_entry("big").expect("raw").is_none());
    // The same for a hard copy with the other bytes: its checksum gives it away.
    std::fs::remove_file(&file).expect("remove");
    std::fs::write(&file, big(2)).expect("copy");
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), None);
    let mut out = Vec::new();
    let r = cache
        .read("big")
        .expect("read")
        .expect("reader")
        .read_to_end(&mut out);
    assert!(
        r.is_err(),
        "the other file's bytes were served as the value"
    );
}

/// The offsets of the two checkpoint slots of the meta file, and each one's sequence
/// number (format spec, "The meta file").
fn slots(dir: &Path) -> [(u64, u64); 2] {
    let meta = std::fs::read(dir.join("meta")).expect("meta");
    let seq = |at: usize| u64::from_le_bytes(meta[at..at + 8].try_into().expect("8 bytes"));
    [(512, seq(512)), (1024, seq(1024))]
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, &bytes).expect("write");
}

/// A cache whose items span two checkpoints (made by compactions) and the log after them.
fn cache_with_checkpoints(dir: &Path) {
    let cache = Cache::open(dir).expect("open");
    for i in 0..300 {
        cache.set(i, format!("value {i}")).expect("set");
        if i == 100 || i == 200 {
            cache.compact().expect("compact");
        }
    }
}

fn assert_all_there(dir: &Path) {
    let cache = Cache::open(dir).expect("reopen");
    assert_eq!(cache.len().expect("len"), 300);
    for i in 0..300 {
        assert_eq!(
            cache.get::<String>(i).expect("get"),
            Some(format!("value {i}")),
            "item {i}"
        );
    }
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn a_flipped_byte_in_the_current_checkpoint_slot_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_with_checkpoints(dir.path());
    let [a, b] = slots(dir.path());
    let current = if a.1 > b.1 { a.0 } else { b.0 };
    flip(&dir.path().join("meta"), current + 40);
    assert_all_there(dir.path());
    // The slot was written anew: a second open finds it sound.
    let [a2, b2] = slots(dir.path());
    assert_eq!(a2.1.max(b2.1), a.1.max(b.1));
    assert_all_there(dir.path());
}

#[test]
fn both_checkpoint_slots_damaged_still_open_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_with_checkpoints(dir.path());
    flip(&dir.path().join("meta"), 512 + 8);
    flip(&dir.path().join("meta"), 1024 + 8);
    assert_all_there(dir.path());
}

/// Every file under `log/`, `index/` and `values/`, with its contents.
fn data_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["log", "index", "values"] {
        let mut stack = vec![dir.join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("list") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = std::fs::read(&p).expect("read");
                    out.push((p, bytes));
                }
            }
        }
    }
    out.sort();
    out
}

fn refused_naming_meta(dir: &Path) {
    match Cache::open(dir) {
        Err(Error::Corrupted { file, .. }) => assert!(file.ends_with("meta"), "{file:?}"),
        other => panic!("expected Corrupted naming the meta file, got {other:?}"),
    }
}

#[test]
fn an_empty_meta_file_is_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_with_checkpoints(dir.path());
    std::fs::write(dir.path().join("meta"), b"").expect("empty the meta file");
    let before = data_files(dir.path());
    refused_naming_meta(dir.path());
    refused_naming_meta(dir.path());
    assert!(
        data_files(dir.path()) == before,
        "opening changed the log or index files"
    );
    assert!(matches!(
        Cache::builder().repair(dir.path()).expect("repair"),
        Repaired::MetaRebuilt { .. }
    ));
    assert_all_there(dir.path());
}

#[test]
fn a_missing_meta_file_is_refused_and_repair_brings_everything_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_with_checkpoints(dir.path());
    std::fs::remove_file(dir.path().join("meta")).expect("remove the meta file");
    let before = data_files(dir.path());
    refused_naming_meta(dir.path());
    assert!(data_files(dir.path()) == before);
    assert!(matches!(
        Cache::builder().repair(dir.path()).expect("repair"),
        Repaired::MetaRebuilt { .. }
    ));
    assert_all_there(dir.path());
    assert_eq!(
        Cache::builder().repair(dir.path()).expect("repair"),
        Repaired::Nothing
    );
}

#[test]
fn a_damaged_meta_header_is_refused_until_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_with_checkpoints(dir.path());
    flip(&dir.path().join("meta"), 3);
    refused_naming_meta(dir.path());
    Cache::builder().repair(dir.path()).expect("repair");
    assert_all_there(dir.path());
}

/// Index files and log segments that no checkpoint uses (left by a killed compaction or
/// checkpoint) go at the next checkpoint, even while other handles keep the cache open (so
/// that recovery never runs).
#[test]
fn leftover_files_are_swept_at_checkpoints_while_handles_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep_open = Cache::open(dir.path()).expect("open");
    let cache = Cache::open(dir.path()).expect("open");
    cache.set("a", 1).expect("set");
    let stale_index = dir.path().join("index").join(format!("{:016x}.idx", 99));
    let stale_segment = dir.path().join("log").join(format!("{:016x}.log", 99));
    let stale_tmp = dir.path().join("log").join(format!("{:016x}.log.tmp", 98));
    for p in [&stale_index, &stale_segment, &stale_tmp] {
        std::fs::write(p, b"left by a killed checkpoint").expect("plant");
    }
    cache.compact().expect("checkpoint");
    for p in [&stale_index, &stale_segment, &stale_tmp] {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert_eq!(keep_open.get::<i64>("a").expect("get"), Some(1));
}
