//! Behaviour tests for `FanoutCache`, ported from python-diskcache's `tests/test_fanout.py`.
//!
//! Each test pins one behaviour. Where the Rust library deliberately differs from
//! python-diskcache (and documents it in the rustdoc of `FanoutCache`), the test pins the
//! Rust behaviour and says so.
//!
//! python's mocked-timeout tests (a shard whose calls raise `Timeout`) are ported with a
//! really busy shard: another handle holds the shard's writer lock inside `transact` in
//! another thread, waiting on a channel, while the handle under test calls it. Nothing
//! asserts on timing: expiry uses `Duration::ZERO` or minutes, and concurrency tests
//! synchronise with channels and joins.

mod common;
use common::wait_past;
use diskcache::{
    Cache, Error, EvictionPolicy, FanoutBuilder, FanoutCache, Key, MemoizeOptions, SetOptions,
    SyncLevel, Value,
};
use serde_json::json;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const MINUTE: Duration = Duration::from_secs(60);

/// Repeats of a two-digit number that make a value of 40 KB, over the default 32 KiB
/// `min_file_size`, so it gets a file of its own (python repeats 1e5 times).
const LARGE_REPEAT: usize = 20_000;

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Settings for a test cache: fsync is not what these tests are about, and without it
/// opening the shards is much quicker.
fn builder() -> FanoutBuilder {
    FanoutCache::builder().sync(SyncLevel::Off)
}

/// The shard count of most tests: fewer than the default 8, as creating and removing each
/// shard's files is most of a test's time, and enough to spread keys. The tests of the
/// defaults use 8.
const SHARDS: usize = 4;

/// A new fanout cache with `SHARDS` shards.
fn open(dir: &Path) -> FanoutCache {
    builder()
        .shards(SHARDS)
        .open(dir)
        .expect("open the fanout cache")
}

/// Another handle on an existing fanout cache (with its stored shard count).
fn reopen(dir: &Path) -> FanoutCache {
    builder().open(dir).expect("reopen the fanout cache")
}

/// A fanout cache with automatic culling off, so expired items stay until removed.
fn open_no_cull(dir: &Path) -> FanoutCache {
    let cache = open(dir);
    cache.reset("cull_limit", 0).expect("reset cull_limit");
    cache
}

fn retrying(dir: &Path) -> FanoutCache {
    builder()
        .shards(SHARDS)
        .retry(true)
        .open(dir)
        .expect("open a retrying fanout cache")
}

/// The index of the shard that holds `key`.
fn shard_index_of(cache: &FanoutCache, key: impl serde::Serialize) -> usize {
    let dir = cache
        .shard_of(key)
        .expect("shard_of")
        .directory()
        .to_path_buf();
    cache
        .shards()
        .iter()
        .position(|s| s.directory() == dir)
        .expect("the shard is one of the cache's shards")
}

/// `n` distinct integer keys that all live on shard `shard`.
fn keys_on(cache: &FanoutCache, shard: usize, n: usize) -> Vec<i64> {
    (0i64..)
        .filter(|&k| shard_index_of(cache, k) == shard)
        .take(n)
        .collect()
}

/// A key that does not live on shard `shard`.
fn key_off(cache: &FanoutCache, shard: usize) -> i64 {
    (0i64..)
        .find(|&k| shard_index_of(cache, k) != shard)
        .expect("a key on another shard")
}

/// The writer lock of one shard, held by another handle in another thread until released
/// (or dropped).
struct Busy {
    release: Option<mpsc::Sender<()>>,
    holder: Option<JoinHandle<diskcache::Result<()>>>,
}

/// Holds the writer lock of shard `shard` of the fanout cache in `dir`, through a handle of
/// its own, until the returned `Busy` is released.
fn hold_shard(dir: &Path, shard: usize) -> Busy {
    let other = reopen(dir);
    let shard = other.shards()[shard].clone();
    let (locked_tx, locked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        shard.transact(|| {
            locked_tx.send(()).expect("signal the lock is held");
            // Ends when released, or when the sender is dropped.
            let _ = release_rx.recv();
            Ok(())
        })
    });
    locked_rx.recv().expect("the holder took the shard's lock");
    Busy {
        release: Some(release_tx),
        holder: Some(holder),
    }
}

impl Busy {
    fn release(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.holder.take() {
            let r = h.join().expect("the holder thread");
            if !std::thread::panicking() {
                r.expect("the holder's transaction");
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Lets a call started in another thread get going (it cannot finish while the lock it
/// needs is held, however long this is). Not a timing assertion.
fn let_it_try() {
    std::thread::sleep(Duration::from_millis(30));
}

fn keys_of(cache: &FanoutCache) -> Vec<Key> {
    cache
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("iterate")
}

/// The keys as sorted integers.
fn sorted_ints(keys: &[Key]) -> Vec<i64> {
    let mut ints: Vec<i64> = keys
        .iter()
        .map(|k| k.deserialize().expect("an integer key"))
        .collect();
    ints.sort_unstable();
    ints
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().expect("a worker thread")
}

/// Copies a directory tree (a closed cache) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for e in std::fs::read_dir(from).expect("read a directory") {
        let e = e.expect("a directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Opening (test_init, test_init_path) and the stored shard count
// ---------------------------------------------------------------------------------------------

/// The effective settings of a cache (python-diskcache's `DEFAULT_SETTINGS` but for the size
/// limit).
fn effective_settings(c: &Cache) -> (u64, EvictionPolicy, bool, bool, u64) {
    (
        c.cull_limit().expect("cull_limit"),
        c.eviction_policy().expect("eviction_policy"),
        c.statistics_enabled().expect("statistics"),
        c.tag_index_enabled().expect("tag_index"),
        c.min_file_size().expect("min_file_size"),
    )
}

#[test]
fn a_new_fanout_cache_has_eight_shards_with_default_settings_and_a_split_size_limit() {
    let dir = tmp();
    let cache = builder().open(dir.path()).expect("open with the defaults");
    assert_eq!(cache.shard_count(), 8);
    assert!(!cache.retries());
    let plain_dir = tmp();
    let plain = Cache::open(plain_dir.path()).expect("open a plain cache");
    let defaults = effective_settings(&plain);
    for (i, shard) in cache.shards().iter().enumerate() {
        assert_eq!(shard.directory(), dir.path().join(format!("{i:03}")));
        // python: each shard gets size_limit / shards = 2**27 ...
        assert_eq!(
            shard.size_limit().expect("size_limit"),
            1 << 27,
            "shard {i}"
        );
        // ... and a 10 ms timeout.
        assert_eq!(shard.timeout(), Duration::from_millis(10));
        assert_eq!(effective_settings(shard), defaults, "shard {i}");
    }
    // Rust: `size_limit()` is the total over the shards (python's `cache.size_limit` is
    // shard 0's, 2**27).
    assert_eq!(cache.size_limit().expect("size_limit"), 1 << 30);
    assert_eq!(
        cache.setting("size_limit").expect("setting"),
        Some(json!(1u64 << 30))
    );
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn resetting_every_setting_to_its_default_keeps_the_cache_consistent() {
    // test_init's second half: setattr(cache, key, value) for every default setting.
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..20 {
        assert!(cache.set(k, k).expect("set"));
    }
    let plain_dir = tmp();
    let plain = Cache::open(plain_dir.path()).expect("open a plain cache");
    let (cull, policy, stats, tags, min_file) = effective_settings(&plain);
    let values = [
        ("cull_limit", json!(cull)),
        ("eviction_policy", json!(policy.as_str())),
        ("statistics", json!(stats)),
        ("tag_index", json!(tags)),
        ("disk_min_file_size", json!(min_file)),
    ];
    for (name, value) in values {
        assert_eq!(cache.reset(name, &value).expect("reset"), value, "{name}");
        assert_eq!(cache.setting(name).expect("setting"), Some(value), "{name}");
    }
    for shard in cache.shards() {
        assert_eq!(effective_settings(shard), effective_settings(&plain));
    }
    assert!(cache.check(false).expect("check").is_empty());
    assert_eq!(cache.len().expect("len"), 20);
}

#[test]
fn opening_by_path_or_string_reaches_the_same_directory_and_items() {
    // test_init_path: a pathlib.Path works like a str.
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.set("k", 1).expect("set"));
    let by_string =
        FanoutCache::open(dir.path().to_str().expect("a UTF-8 path")).expect("open by string");
    assert_eq!(by_string.directory(), cache.directory());
    assert_eq!(by_string.get::<i64>("k").expect("get"), Some(1));
}

#[test]
fn the_shard_count_is_stored_and_used_when_reopening_without_one() {
    // Rust: python-diskcache does not store the shard count (#183).
    let dir = tmp();
    let cache = builder()
        .shards(3)
        .open(dir.path())
        .expect("open with 3 shards");
    for k in 0..30 {
        assert!(cache.set(k, k).expect("set"));
    }
    drop(cache);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.shard_count(), 3);
    for k in 0..30 {
        assert_eq!(reopened.get::<i64>(k).expect("get"), Some(k), "key {k}");
    }
    assert!(!dir.path().join("003").exists());
}

#[test]
fn reopening_with_another_shard_count_is_an_error_not_a_silent_remap() {
    // Rust: python-diskcache silently maps keys to other shards (#183).
    let dir = tmp();
    let cache = builder()
        .shards(4)
        .open(dir.path())
        .expect("open with 4 shards");
    assert!(cache.set("k", 1).expect("set"));
    let err = builder()
        .shards(8)
        .open(dir.path())
        .expect_err("8 shards on a 4-shard cache");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // The same count is fine.
    let again = builder()
        .shards(4)
        .open(dir.path())
        .expect("open with the stored count");
    assert_eq!(again.get::<i64>("k").expect("get"), Some(1));
}

#[test]
fn zero_shards_is_an_invalid_argument() {
    let dir = tmp();
    let err = builder()
        .shards(0)
        .open(dir.path())
        .expect_err("zero shards");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn the_size_limit_given_when_opening_is_a_total_split_across_the_shards() {
    let dir = tmp();
    let cache = builder()
        .shards(4)
        .size_limit(4_000_000)
        .open(dir.path())
        .expect("open");
    for shard in cache.shards() {
        assert_eq!(shard.size_limit().expect("size_limit"), 1_000_000);
    }
    assert_eq!(cache.size_limit().expect("size_limit"), 4_000_000);
    drop(cache);
    // Reopening without a limit keeps the stored one.
    let reopened = reopen(dir.path());
    assert_eq!(reopened.size_limit().expect("size_limit"), 4_000_000);
}

// ---------------------------------------------------------------------------------------------
// 2. Single-key API (test_set_get_delete, test_touch, test_add, test_incr, test_decr, test_pop,
//    test_getsetdel, test_delitem*, test_getitem_keyerror, test_read*)
// ---------------------------------------------------------------------------------------------

#[test]
fn set_get_contains_delete_and_clear_work_across_the_shards() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    assert!(cache.check(false).expect("check").is_empty());
    for k in 0..100 {
        assert_eq!(cache.get::<i64>(k).expect("get"), Some(k));
        assert!(cache.contains(k).expect("contains"));
    }
    // The keys really are spread: every shard got some.
    for (i, shard) in cache.shards().iter().enumerate() {
        assert!(shard.len().expect("len") > 0, "shard {i} is empty");
    }
    assert_eq!(cache.len().expect("len"), 100);
    for k in 0..100 {
        assert!(cache.delete(k).expect("delete"));
    }
    assert!(!cache.delete(100).expect("delete a missing key"));
    assert!(cache.check(false).expect("check").is_empty());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    assert_eq!(cache.clear().expect("clear"), 100);
    assert_eq!(cache.len().expect("len"), 0);
    assert!(cache.is_empty().expect("is_empty"));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn touch_changes_the_expiry_and_a_zero_expiry_makes_the_key_vanish() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache
        .set_with(0, (), &SetOptions::new().expire(MINUTE))
        .expect("set"));
    assert!(cache.touch(0, None).expect("touch to no expiry"));
    let entry = cache
        .get_entry::<()>(0)
        .expect("get_entry")
        .expect("present");
    assert_eq!(entry.expire_time, None);
    assert!(cache
        .touch(0, Some(Duration::ZERO))
        .expect("touch to expire now"));
    assert!(!cache.touch(0, None).expect("touch an expired key"));
    assert_eq!(cache.get::<()>(0).expect("get"), None);
}

#[test]
fn add_stores_only_when_the_key_is_missing() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.add(0, 0).expect("add"));
    assert!(!cache.add(0, 1).expect("add again"));
    assert_eq!(cache.get::<i64>(0).expect("get"), Some(0));
}

#[test]
fn incr_and_decr_start_from_zero() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.incr("up", 3).expect("incr"), Some(3));
    assert_eq!(cache.incr("up", 3).expect("incr"), Some(6));
    assert_eq!(cache.decr("down", 2).expect("decr"), Some(-2));
    assert_eq!(cache.decr("down", 2).expect("decr"), Some(-4));
}

#[test]
fn incr_without_a_default_on_a_missing_key_is_key_not_found() {
    // python: "KeyError still propagates" from a fanout incr.
    let dir = tmp();
    let cache = open(dir.path());
    let err = cache
        .incr_with("missing", 1, None)
        .expect_err("no default, no key");
    assert!(matches!(err, Error::KeyNotFound), "{err:?}");
    let err = cache
        .decr_with("missing", 1, None)
        .expect_err("no default, no key");
    assert!(matches!(err, Error::KeyNotFound), "{err:?}");
}

#[test]
fn pop_returns_each_value_once() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    for k in 0..100 {
        assert_eq!(cache.pop::<i64>(k).expect("pop"), Some(k));
    }
    for k in 0..100 {
        assert_eq!(cache.pop::<i64>(k).expect("pop again"), None);
    }
    assert!(cache.is_empty().expect("is_empty"));
}

#[test]
fn pop_entry_returns_the_value_with_its_expiry_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache
        .set_with("k", 5, &SetOptions::new().expire(MINUTE).tag("t"))
        .expect("set"));
    let e = cache
        .pop_entry::<i64>("k")
        .expect("pop_entry")
        .expect("present");
    assert_eq!(e.value, 5);
    assert!(e.expire_time.is_some());
    assert_eq!(e.tag, Some(Key::Str("t".into())));
    assert_eq!(cache.pop_entry::<i64>("k").expect("pop_entry"), None);
}

#[test]
fn getsetdel_round_trips_every_kind_of_value_across_the_shards() {
    let dir = tmp();
    let cache = open(dir.path());
    let nones = vec![None::<u8>; 1024];
    let big_str = "hello".repeat(1 << 10);
    let big_bytes = b"world".repeat(1 << 10);
    assert!(cache.set(0, None::<u8>).expect("set"));
    assert!(cache.set(1, &nones).expect("set"));
    assert!(cache.set(2, 1234).expect("set"));
    assert!(cache.set(3, u64::MAX).expect("set"));
    assert!(cache.set(4, 56.78).expect("set"));
    assert!(cache.set(5, "hello").expect("set"));
    assert!(cache.set(6, &big_str).expect("set"));
    assert!(cache.set(7, b"world").expect("set"));
    assert!(cache.set(8, &big_bytes).expect("set"));
    assert!(cache
        .set_reader_with(9, Cursor::new(big_bytes.clone()), &SetOptions::new())
        .expect("set from a reader"));
    assert_eq!(cache.len().expect("len"), 10);
    assert_eq!(cache.get::<Option<u8>>(0).expect("get"), Some(None));
    assert_eq!(
        cache.get::<Vec<Option<u8>>>(1).expect("get"),
        Some(nones.clone())
    );
    assert_eq!(cache.get::<i64>(2).expect("get"), Some(1234));
    assert_eq!(cache.get::<u64>(3).expect("get"), Some(u64::MAX));
    assert_eq!(cache.get::<f64>(4).expect("get"), Some(56.78));
    assert_eq!(
        cache.get::<String>(5).expect("get").as_deref(),
        Some("hello")
    );
    assert_eq!(cache.get::<String>(6).expect("get"), Some(big_str.clone()));
    assert_eq!(
        cache.get::<Vec<u8>>(7).expect("get"),
        Some(b"world".to_vec())
    );
    assert_eq!(
        cache.get::<Vec<u8>>(8).expect("get"),
        Some(big_bytes.clone())
    );
    assert_eq!(
        cache.get::<Vec<u8>>(9).expect("get"),
        Some(big_bytes.clone())
    );
    for k in 0..10 {
        assert!(cache.delete(k).expect("delete"), "key {k}");
    }
    assert!(cache.is_empty().expect("is_empty"));

    // The same values used as keys.
    assert!(cache.set(None::<u8>, 0).expect("set"));
    assert!(cache.set(&nones, 1).expect("set"));
    assert!(cache.set(1234, 2).expect("set"));
    assert!(cache.set(u64::MAX, 3).expect("set"));
    assert!(cache.set(56.78, 4).expect("set"));
    assert!(cache.set("hello", 5).expect("set"));
    assert!(cache.set(&big_str, 6).expect("set"));
    assert!(cache.set(b"world", 7).expect("set"));
    assert!(cache.set(&big_bytes, 8).expect("set"));
    assert_eq!(cache.len().expect("len"), 9);
    assert_eq!(cache.get::<i64>(None::<u8>).expect("get"), Some(0));
    assert_eq!(cache.get::<i64>(&nones).expect("get"), Some(1));
    assert_eq!(cache.get::<i64>(1234).expect("get"), Some(2));
    assert_eq!(cache.get::<i64>(u64::MAX).expect("get"), Some(3));
    assert_eq!(cache.get::<i64>(56.78).expect("get"), Some(4));
    assert_eq!(cache.get::<i64>("hello").expect("get"), Some(5));
    assert_eq!(cache.get::<i64>(&big_str).expect("get"), Some(6));
    assert_eq!(cache.get::<i64>(b"world").expect("get"), Some(7));
    assert_eq!(cache.get::<i64>(&big_bytes).expect("get"), Some(8));
    for k in [
        Key::from_value(&None::<u8>),
        Key::from_value(&nones),
        Key::from_value(&1234),
        Key::from_value(&u64::MAX),
        Key::from_value(&56.78),
        Key::from_value("hello"),
        Key::from_value(&big_str),
        Key::from_value(b"world"),
        Key::from_value(&big_bytes),
    ] {
        let k = k.expect("a key");
        assert!(cache.delete(&k).expect("delete"), "{k:?}");
    }
    assert!(cache.is_empty().expect("is_empty"));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn get_and_delete_of_a_missing_key_are_none_and_false() {
    // python: cache[0] and del cache[0] raise KeyError; get and delete return None/False.
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.get::<i64>(0).expect("get"), None);
    assert!(!cache.delete(0).expect("delete"));
    assert!(cache.set(0, 0).expect("set"));
    assert_eq!(cache.get::<i64>(0).expect("get"), Some(0));
    assert!(cache.delete(0).expect("delete"));
    assert!(!cache.delete(0).expect("delete again"));
}

#[test]
fn read_gives_a_reader_over_a_large_value_and_none_for_a_missing_key() {
    let dir = tmp();
    let cache = open(dir.path());
    let value = b"abcd".repeat(1 << 18);
    assert!(cache.set(0, serde_bytes::Bytes::new(&value)).expect("set"));
    let mut reader = cache.read(0).expect("read").expect("present");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("read the value");
    assert_eq!(bytes, value);
    assert!(cache.read(1).expect("read a missing key").is_none());
}

#[test]
fn an_integer_key_and_the_equal_float_are_one_key_on_one_shard() {
    // Rust: python-diskcache hashes 1 and 1.0 by their pickles, so they may land on
    // different shards; here they are the same key.
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..50i64 {
        assert_eq!(shard_index_of(&cache, n), shard_index_of(&cache, n as f64));
        assert!(cache.set(n, n).expect("set"));
        assert_eq!(cache.get::<i64>(n as f64).expect("get"), Some(n));
    }
    assert!(cache.set(1.0, -1).expect("set under the float"));
    assert_eq!(cache.get::<i64>(1).expect("get"), Some(-1));
    assert_eq!(cache.len().expect("len"), 50);
}

#[test]
fn a_large_value_lives_in_the_directory_of_its_keys_shard() {
    // test_custom_filename_disk: the value file is under the key's shard, '%03d' % index.
    let dir = tmp();
    let cache = open(dir.path());
    for n in 100..120 {
        let value = n.to_string().repeat(LARGE_REPEAT);
        assert!(cache.set(n, &value).expect("set"));
        let reader = cache.read(n).expect("read").expect("present");
        let path = reader.path().expect("a file-backed value").to_path_buf();
        let shard = shard_index_of(&cache, n);
        assert!(
            path.starts_with(dir.path().join(format!("{shard:03}"))),
            "{} is not under shard {shard}",
            path.display()
        );
        assert_eq!(
            std::fs::read(&path).expect("read the file"),
            value.as_bytes()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A busy shard (test_*_timeout: python's swallowed Timeout return values)
// ---------------------------------------------------------------------------------------------

#[test]
fn writes_to_a_busy_shard_give_up_quietly_after_the_timeout() {
    let dir = tmp();
    let cache = open(dir.path());
    let keys = keys_on(&cache, 0, 8);
    for &k in &keys[4..] {
        assert!(cache.set(k, k).expect("set"));
    }
    let busy = hold_shard(dir.path(), 0);
    assert!(!cache.set(keys[0], 0).expect("set on a busy shard"));
    assert!(!cache.add(keys[1], 0).expect("add on a busy shard"));
    assert!(!cache
        .set_reader_with(keys[2], Cursor::new(b"raw".to_vec()), &SetOptions::new())
        .expect("set_reader on a busy shard"));
    assert_eq!(cache.incr(keys[3], 1).expect("incr on a busy shard"), None);
    assert_eq!(cache.decr(keys[3], 1).expect("decr on a busy shard"), None);
    assert!(!cache.touch(keys[4], None).expect("touch on a busy shard"));
    assert!(!cache.delete(keys[5]).expect("delete on a busy shard"));
    assert_eq!(
        cache.pop::<i64>(keys[6]).expect("pop on a busy shard"),
        None
    );
    assert_eq!(
        cache
            .pop_entry::<i64>(keys[7])
            .expect("pop_entry on a busy shard"),
        None
    );
    busy.release();
    // None of them wrote anything.
    for &k in &keys[..4] {
        assert!(!cache.contains(k).expect("contains"), "key {k}");
    }
    for &k in &keys[4..] {
        assert_eq!(cache.get::<i64>(k).expect("get"), Some(k), "key {k}");
    }
}

#[test]
fn reads_of_a_busy_shard_do_not_wait_and_still_find_the_value() {
    // Rust: readers never wait for the writer lock, so a get on a busy shard returns the
    // value; python-diskcache's get gives up with the default (None).
    let dir = tmp();
    let cache = open(dir.path());
    let k = keys_on(&cache, 0, 1)[0];
    assert!(cache.set(k, 7).expect("set"));
    let _busy = hold_shard(dir.path(), 0);
    assert_eq!(cache.get::<i64>(k).expect("get"), Some(7));
    assert_eq!(
        cache
            .get_entry::<i64>(k)
            .expect("get_entry")
            .map(|e| e.value),
        Some(7)
    );
    assert!(cache.get_value(k).expect("get_value").is_some());
    assert!(cache.contains(k).expect("contains"));
    assert!(cache.read(k).expect("read").is_some());
}

#[test]
fn a_busy_shard_does_not_stop_writes_to_the_other_shards() {
    let dir = tmp();
    let cache = open(dir.path());
    let on = keys_on(&cache, 0, 1)[0];
    let off = key_off(&cache, 0);
    let _busy = hold_shard(dir.path(), 0);
    assert!(!cache.set(on, 1).expect("set on the busy shard"));
    assert!(cache.set(off, 1).expect("set on another shard"));
    assert_eq!(cache.incr(off, 1).expect("incr on another shard"), Some(2));
}

#[test]
fn with_retry_writes_to_a_busy_shard_wait_and_succeed_once_it_is_free() {
    let dir = tmp();
    let cache = retrying(dir.path());
    assert!(cache.retries());
    let keys = keys_on(&cache, 0, 7);
    for &k in &keys[4..] {
        assert!(cache.set(k, k).expect("set"));
    }
    let busy = hold_shard(dir.path(), 0);
    let (set, add, incr, decr, touch, delete, pop) = std::thread::scope(|s| {
        let c = &cache;
        let keys = &keys;
        let set = s.spawn(move || c.set(keys[0], 10));
        let add = s.spawn(move || c.add(keys[1], 11));
        let incr = s.spawn(move || c.incr(keys[2], 5));
        let decr = s.spawn(move || c.decr(keys[3], 5));
        let touch = s.spawn(move || c.touch(keys[4], Some(MINUTE)));
        let delete = s.spawn(move || c.delete(keys[5]));
        let pop = s.spawn(move || c.pop::<i64>(keys[6]));
        let_it_try();
        // None can finish while the shard is busy.
        assert!(!set.is_finished());
        assert!(!add.is_finished());
        assert!(!incr.is_finished());
        assert!(!decr.is_finished());
        assert!(!touch.is_finished());
        assert!(!delete.is_finished());
        assert!(!pop.is_finished());
        busy.release();
        (
            join(set).expect("set"),
            join(add).expect("add"),
            join(incr).expect("incr"),
            join(decr).expect("decr"),
            join(touch).expect("touch"),
            join(delete).expect("delete"),
            join(pop).expect("pop"),
        )
    });
    assert!(set);
    assert!(add);
    assert_eq!(incr, Some(5));
    assert_eq!(decr, Some(-5));
    assert!(touch);
    assert!(delete);
    assert_eq!(pop, Some(keys[6]));
    assert_eq!(cache.get::<i64>(keys[0]).expect("get"), Some(10));
    assert_eq!(cache.get::<i64>(keys[1]).expect("get"), Some(11));
    assert!(cache
        .get_entry::<i64>(keys[4])
        .expect("get_entry")
        .expect("present")
        .expire_time
        .is_some());
    assert!(!cache.contains(keys[5]).expect("contains"));
    assert!(!cache.contains(keys[6]).expect("contains"));
}

#[test]
fn clear_waits_for_a_busy_shard_and_counts_every_item() {
    // test_remove_timeout: whole-cache removals carry on after timeouts until every shard is
    // done, and count everything removed.
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    let busy = hold_shard(dir.path(), 0);
    let cleared = std::thread::scope(|s| {
        let c = &cache;
        let clear = s.spawn(move || c.clear());
        let_it_try();
        assert!(
            !clear.is_finished(),
            "clear cannot finish while shard 0 is busy"
        );
        busy.release();
        clear.join().expect("the clearing thread")
    });
    assert_eq!(cleared.expect("clear"), 100);
    assert!(cache.is_empty().expect("is_empty"));
}

#[test]
fn evict_and_expire_wait_for_a_busy_shard_and_count_every_item() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for k in 0..40 {
        assert!(cache
            .set_with(k, k, &SetOptions::new().tag("t"))
            .expect("set"));
    }
    for k in 40..80 {
        assert!(cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set"));
    }
    wait_past(SystemTime::now());
    let busy = hold_shard(dir.path(), 0);
    let (evicted, expired) = std::thread::scope(|s| {
        let c = &cache;
        let evict = s.spawn(move || c.evict("t"));
        let expire = s.spawn(move || c.expire());
        let_it_try();
        assert!(!evict.is_finished());
        assert!(!expire.is_finished());
        busy.release();
        (
            evict.join().expect("the evicting thread"),
            expire.join().expect("the expiring thread"),
        )
    });
    assert_eq!(evicted.expect("evict"), 40);
    assert_eq!(expired.expect("expire"), 40);
    assert!(cache.is_empty().expect("is_empty"));
}

#[test]
fn reset_waits_for_a_busy_shard_and_sets_every_shard() {
    // test_reset_timeout. python returns the last shard's result; here, the value set.
    let dir = tmp();
    let cache = open(dir.path());
    let busy = hold_shard(dir.path(), 3);
    let r = std::thread::scope(|s| {
        let c = &cache;
        let reset = s.spawn(move || c.reset("cull_limit", 5));
        let_it_try();
        assert!(!reset.is_finished());
        busy.release();
        reset.join().expect("the resetting thread")
    });
    assert_eq!(r.expect("reset"), json!(5));
    for shard in cache.shards() {
        assert_eq!(shard.cull_limit().expect("cull_limit"), 5);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrency (test_add_concurrent, test_incr_concurrent)
// ---------------------------------------------------------------------------------------------

#[test]
fn of_sixteen_threads_adding_the_same_thousand_keys_exactly_one_add_per_key_succeeds() {
    const THREADS: usize = 16;
    const KEYS: i64 = 1000;
    let dir = tmp();
    let cache = builder()
        .shards(1)
        .retry(true)
        .open(dir.path())
        .expect("open");
    let added: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let c = &cache;
                s.spawn(move || {
                    let mut added = 0usize;
                    for k in 0..KEYS {
                        if c.add(k, k).expect("add") {
                            added += 1;
                        }
                    }
                    added
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an adding thread"))
            .sum()
    });
    assert_eq!(added, KEYS as usize);
    assert_eq!(cache.len().expect("len"), KEYS as u64);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn sixteen_threads_of_fifty_retried_increments_lose_none() {
    const THREADS: i64 = 16;
    const INCRS: i64 = 50;
    let dir = tmp();
    let cache = builder()
        .shards(1)
        .timeout(Duration::from_millis(1))
        .retry(true)
        .open(dir.path())
        .expect("open");
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let c = &cache;
            s.spawn(move || {
                for _ in 0..INCRS {
                    assert!(c.incr(b"key", 1).expect("incr").is_some());
                }
            });
        }
    });
    assert_eq!(
        cache.get::<i64>(b"key").expect("get"),
        Some(THREADS * INCRS)
    );
    assert!(cache.check(false).expect("check").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. Whole-cache operations (test_tag_index, test_expire, test_evict, test_size_limit_*,
//    test_clear, test_stats, test_volume)
// ---------------------------------------------------------------------------------------------

#[test]
fn create_and_drop_tag_index_toggle_it_on_every_shard() {
    let dir = tmp();
    let cache = open(dir.path());
    for shard in cache.shards() {
        assert!(!shard.tag_index_enabled().expect("tag_index"));
    }
    cache.create_tag_index().expect("create_tag_index");
    assert_eq!(
        cache.setting("tag_index").expect("setting"),
        Some(json!(true))
    );
    for shard in cache.shards() {
        assert!(shard.tag_index_enabled().expect("tag_index"));
    }
    cache.drop_tag_index().expect("drop_tag_index");
    assert_eq!(
        cache.setting("tag_index").expect("setting"),
        Some(json!(false))
    );
    for shard in cache.shards() {
        assert!(!shard.tag_index_enabled().expect("tag_index"));
    }
}

#[test]
fn expire_removes_the_expired_items_of_every_shard_and_counts_them() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for k in 0..100 {
        assert!(cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set"));
    }
    for k in 100..110 {
        assert!(cache.set(k, k).expect("set"));
    }
    assert_eq!(cache.len().expect("len"), 110);
    wait_past(SystemTime::now());
    cache.reset("cull_limit", 10).expect("reset");
    assert_eq!(cache.expire().expect("expire"), 100);
    assert_eq!(cache.len().expect("len"), 10);
}

#[test]
fn evict_removes_the_tagged_items_of_every_shard_and_counts_them() {
    let dir = tmp();
    let cache = open(dir.path());
    let colours = ["red", "blue", "yellow"];
    for k in 0..90usize {
        assert!(cache
            .set_with(k, k, &SetOptions::new().tag(colours[k % 3]))
            .expect("set"));
    }
    assert_eq!(cache.len().expect("len"), 90);
    assert_eq!(cache.evict("red").expect("evict"), 30);
    assert_eq!(cache.len().expect("len"), 60);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn cull_brings_every_shard_with_file_values_under_its_share_of_the_size_limit() {
    const SHARDS_U64: u64 = SHARDS as u64;
    const MIN_FILE: u64 = 4096;
    let dir = tmp();
    let cache = builder()
        .shards(SHARDS)
        .min_file_size(MIN_FILE)
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    // python: 30 x min_file_size per shard and 40 x shards values; fewer files here (creating
    // them is the slow part), still several times over the limit.
    let per_shard = 10 * MIN_FILE;
    // Rust: the total, split across the shards (python sets the whole value on each).
    cache
        .reset("size_limit", SHARDS_U64 * per_shard)
        .expect("reset size_limit");
    let value = b"foo".repeat(MIN_FILE as usize);
    for k in 0..15 * SHARDS_U64 {
        assert!(cache.set(k, serde_bytes::Bytes::new(&value)).expect("set"));
    }
    assert!(cache.volume().expect("volume") / SHARDS_U64 > per_shard);
    assert!(cache.cull().expect("cull") > 0);
    assert!(cache.volume().expect("volume") / SHARDS_U64 <= per_shard);
    for (i, shard) in cache.shards().iter().enumerate() {
        assert!(shard.volume().expect("volume") <= per_shard, "shard {i}");
    }
}

#[test]
fn cull_brings_every_shard_with_inline_values_under_its_share_of_the_size_limit() {
    const SHARDS_U64: u64 = SHARDS as u64;
    let dir = tmp();
    let cache = builder().cull_limit(0).open(dir.path()).expect("open");
    let min_file = cache.shards()[0].min_file_size().expect("min_file_size");
    let per_shard = 2 * min_file;
    cache
        .reset("size_limit", SHARDS_U64 * per_shard)
        .expect("reset size_limit");
    let value = b"0123456789".repeat(10);
    let count = 2 * per_shard / (8 + value.len() as u64) * SHARDS_U64;
    for k in 0..count {
        assert!(cache.set(k, serde_bytes::Bytes::new(&value)).expect("set"));
    }
    assert!(cache.volume().expect("volume") / SHARDS_U64 > per_shard);
    assert!(cache.cull().expect("cull") > 0);
    assert!(cache.volume().expect("volume") / SHARDS_U64 <= per_shard);
    for (i, shard) in cache.shards().iter().enumerate() {
        assert!(shard.volume().expect("volume") <= per_shard, "shard {i}");
    }
}

#[test]
fn reopening_with_a_new_size_limit_splits_it_across_every_shard() {
    let dir = tmp();
    drop(
        builder()
            .shards(4)
            .size_limit(4_000_000)
            .open(dir.path())
            .expect("open"),
    );
    let cache = builder()
        .size_limit(8_000_000)
        .open(dir.path())
        .expect("reopen with another limit");
    for shard in cache.shards() {
        assert_eq!(shard.size_limit().expect("size_limit"), 2_000_000);
    }
    assert_eq!(cache.size_limit().expect("size_limit"), 8_000_000);
}

#[test]
fn reset_of_the_size_limit_splits_the_total_across_the_shards() {
    // Rust: python-diskcache's reset('size_limit', X) sets X on every shard.
    let dir = tmp();
    let cache = builder().shards(4).open(dir.path()).expect("open");
    assert_eq!(
        cache.reset("size_limit", 4_000_000).expect("reset"),
        json!(4_000_000)
    );
    for shard in cache.shards() {
        assert_eq!(shard.size_limit().expect("size_limit"), 1_000_000);
    }
    assert_eq!(cache.size_limit().expect("size_limit"), 4_000_000);
    assert_eq!(
        cache.setting("size_limit").expect("setting"),
        Some(json!(4_000_000))
    );
}

#[test]
fn clear_removes_the_items_of_every_shard_and_counts_them() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    assert_eq!(cache.len().expect("len"), 100);
    assert_eq!(cache.clear().expect("clear"), 100);
    assert_eq!(cache.len().expect("len"), 0);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn stats_sum_the_hits_and_misses_of_every_shard_and_count_only_while_enabled() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    assert_eq!(cache.stats(true, false).expect("enable"), (0, 0));
    for k in 0..100 {
        assert_eq!(cache.get::<i64>(k).expect("get"), Some(k));
    }
    for k in 100..110 {
        assert_eq!(cache.get::<i64>(k).expect("get"), None);
    }
    assert_eq!(cache.stats(true, true).expect("stats and reset"), (100, 10));
    assert_eq!(cache.stats(false, false).expect("disable"), (0, 0));
    for k in 0..100 {
        cache.get::<i64>(k).expect("get");
    }
    for k in 100..110 {
        cache.get::<i64>(k).expect("get");
    }
    assert_eq!(cache.stats(false, false).expect("stats"), (0, 0));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn volume_is_the_sum_of_the_shards_volumes() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..50 {
        assert!(cache.set(k, "x".repeat(1000)).expect("set"));
    }
    let sum: u64 = cache
        .shards()
        .iter()
        .map(|s| s.volume().expect("volume"))
        .sum();
    assert_eq!(cache.volume().expect("volume"), sum);
}

// ---------------------------------------------------------------------------------------------
// 6. Iteration (test_iter, test_iter_expire, test_reversed) and iterkeys
// ---------------------------------------------------------------------------------------------

#[test]
fn iteration_yields_every_key_once_shard_after_shard() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    let keys = keys_of(&cache);
    assert_eq!(keys.len(), 100);
    assert_eq!(sorted_ints(&keys), (0..100).collect::<Vec<_>>());
    // Shard after shard: the shard indexes never go down.
    let shards: Vec<usize> = keys.iter().map(|k| shard_index_of(&cache, k)).collect();
    assert!(shards.windows(2).all(|w| w[0] <= w[1]), "{shards:?}");
}

#[test]
fn iteration_does_not_expire_keys_but_expire_removes_them() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for k in 0..100 {
        assert!(cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set"));
    }
    wait_past(SystemTime::now());
    assert_eq!(sorted_ints(&keys_of(&cache)), (0..100).collect::<Vec<_>>());
    assert_eq!(cache.expire().expect("expire"), 100);
    assert!(keys_of(&cache).is_empty());
}

#[test]
fn reverse_iteration_is_iteration_backwards() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in 0..100 {
        assert!(cache.set(k, k).expect("set"));
    }
    let mut rev: Vec<Key> = cache
        .iter_rev()
        .collect::<Result<Vec<_>, _>>()
        .expect("iterate backwards");
    rev.reverse();
    assert_eq!(rev, keys_of(&cache));
}

#[test]
fn iterkeys_merges_the_shards_into_one_sorted_order_either_way() {
    // Rust: python-diskcache's FanoutCache has no iterkeys (#169).
    let dir = tmp();
    let cache = open(dir.path());
    for k in [5, 3, 9, 1, 7, 2, 8, 0, 6, 4] {
        assert!(cache.set(k, k).expect("set"));
    }
    for s in ["b", "a", "c"] {
        assert!(cache.set(s, 0).expect("set"));
    }
    let mut expected: Vec<Key> = (0..10).map(Key::Int).collect();
    expected.extend(["a", "b", "c"].map(|s| Key::Str(s.into())));
    let sorted: Vec<Key> = cache
        .iterkeys()
        .collect::<Result<Vec<_>, _>>()
        .expect("iterkeys");
    assert_eq!(sorted, expected);
    let mut backwards: Vec<Key> = cache
        .iterkeys_rev()
        .collect::<Result<Vec<_>, _>>()
        .expect("iterkeys_rev");
    backwards.reverse();
    assert_eq!(backwards, expected);
}

// ---------------------------------------------------------------------------------------------
// 7. Handles (test_pickle), memoize (test_memoize), copying (test_copy)
// ---------------------------------------------------------------------------------------------

#[test]
fn another_handle_on_the_directory_sees_every_item() {
    // test_pickle: a pickled FanoutCache is its directory (and shard count) reopened.
    let dir = tmp();
    let cache = open(dir.path());
    for (n, v) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        assert!(cache.set(v, n).expect("set"));
    }
    let other = reopen(dir.path());
    let keys = keys_of(&other);
    assert_eq!(keys.len(), 5);
    for k in keys {
        assert_eq!(
            other.get::<usize>(&k).expect("get"),
            cache.get::<usize>(&k).expect("get")
        );
    }
}

fn fib(cache: &FanoutCache, calls: &AtomicUsize, n: u64) -> diskcache::Result<u64> {
    cache.try_memoized("fib", &n, &MemoizeOptions::new(), || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(if n < 2 {
            n
        } else {
            fib(cache, calls, n - 1)? + fib(cache, calls, n - 2)?
        })
    })
}

fn fib_iter(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

#[test]
fn memoized_recursion_hits_for_every_call_of_the_second_pass() {
    const COUNT: u64 = 90;
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    cache.stats(true, false).expect("enable statistics");
    for n in 0..COUNT {
        assert_eq!(fib(&cache, &calls, n).expect("fib"), fib_iter(n));
    }
    let (hits1, misses1) = cache.stats(true, false).expect("stats");
    assert_eq!(calls.load(Ordering::SeqCst), COUNT as usize);
    for n in 0..COUNT {
        assert_eq!(fib(&cache, &calls, n).expect("fib"), fib_iter(n));
    }
    let (hits2, misses2) = cache.stats(true, false).expect("stats");
    assert_eq!(hits2, hits1 + COUNT);
    assert_eq!(misses2, misses1);
    assert_eq!(calls.load(Ordering::SeqCst), COUNT as usize);
}

#[test]
fn a_memoized_function_is_stored_on_the_shard_of_its_call_key() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let square = cache.memoize("square", MemoizeOptions::new(), |n: &u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        n * n
    });
    for n in 0..20 {
        assert_eq!(square.call(&n).expect("call"), n * n);
        assert_eq!(square.call(&n).expect("call again"), n * n);
        let key = square.cache_key(&n).expect("cache_key");
        assert!(cache
            .shard_of(&key)
            .expect("shard_of")
            .contains(&key)
            .expect("contains"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
}

#[test]
fn a_copied_directory_opens_with_every_value() {
    let dir1 = tmp();
    let cache = open(dir1.path());
    for n in 0..10 {
        assert!(cache.set(n, n.to_string()).expect("set"));
    }
    for n in 10..20 {
        assert!(cache
            .set(n, n.to_string().repeat(LARGE_REPEAT))
            .expect("set"));
    }
    cache.close().expect("close");
    let dir2 = tmp();
    let copy = dir2.path().join("copy");
    copy_tree(dir1.path(), &copy);
    let cache2 = reopen(&copy);
    for n in 0..10 {
        assert_eq!(cache2.get::<String>(n).expect("get"), Some(n.to_string()));
    }
    for n in 10..20 {
        assert_eq!(
            cache2.get::<String>(n).expect("get"),
            Some(n.to_string().repeat(LARGE_REPEAT))
        );
    }
    assert!(cache2.check(false).expect("check").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8. Transactions and sub-collections
// ---------------------------------------------------------------------------------------------

#[test]
fn transact_commits_writes_to_every_shard_together_or_rolls_all_back() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .transact(|| {
            for k in 0..20 {
                cache.set(k, k)?;
            }
            Ok(())
        })
        .expect("transact");
    assert_eq!(cache.len().expect("len"), 20);
    let r: diskcache::Result<()> = cache.transact(|| {
        for k in 20..40 {
            cache.set(k, k)?;
        }
        Err(Error::InvalidArgument("abort".into()))
    });
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(cache.len().expect("len"), 20);
    for k in 20..40 {
        assert!(!cache.contains(k).expect("contains"), "key {k}");
    }
}

#[test]
fn sub_collections_live_under_named_subdirectories_and_are_shared_by_name() {
    let dir = tmp();
    let cache = open(dir.path());
    let sub = cache.cache("a/b").expect("cache");
    assert_eq!(
        sub.directory(),
        dir.path().join("cache").join("a").join("b")
    );
    sub.set("k", 1).expect("set");
    assert_eq!(
        cache
            .cache("a/b")
            .expect("cache")
            .get::<i64>("k")
            .expect("get"),
        Some(1)
    );
    // The sub-cache's items are not the fanout cache's.
    assert!(!cache.contains("k").expect("contains"));

    // python: cache(name, timeout=60), whatever the fanout's own timeout.
    assert_eq!(sub.timeout(), Duration::from_secs(60));

    let deque = cache.deque::<String>("q").expect("deque");
    assert_eq!(deque.directory(), dir.path().join("deque").join("q"));
    assert_eq!(
        deque.cache().eviction_policy().expect("policy"),
        EvictionPolicy::None
    );
    deque.append(&"x".to_string()).expect("append");
    assert_eq!(
        cache
            .deque::<String>("q")
            .expect("deque")
            .len()
            .expect("len"),
        1
    );

    let index = cache.index::<String, i64>("i").expect("index");
    assert_eq!(index.directory(), dir.path().join("index").join("i"));
    assert_eq!(
        index.cache().eviction_policy().expect("policy"),
        EvictionPolicy::None
    );
}

#[test]
fn sub_collection_names_with_empty_or_dot_parts_are_invalid() {
    let dir = tmp();
    let cache = open(dir.path());
    for name in ["", "a//b", "..", "a/../b", ".", "a/"] {
        let err = cache.cache(name).expect_err(name);
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{name:?}: {err:?}"
        );
    }
}

#[test]
fn stats_with_reset_that_waits_for_a_busy_shard_still_counts_its_hits() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.stats(true, false).expect("enable statistics");
    let keys = keys_on(&cache, 0, 10);
    for &k in &keys {
        assert!(cache.set(k, k).expect("set"));
        assert_eq!(cache.get::<i64>(k).expect("get"), Some(k));
    }
    let busy = hold_shard(dir.path(), 0);
    let counted = std::thread::scope(|s| {
        let c = &cache;
        // Turning statistics off must write the setting on every shard: shard 0 is busy.
        let stats = s.spawn(move || c.stats(false, true));
        let_it_try();
        assert!(!stats.is_finished());
        busy.release();
        join(stats).expect("stats")
    });
    assert_eq!(counted, (10, 0));
    assert_eq!(cache.stats(false, false).expect("stats"), (0, 0));
}

#[test]
fn the_shard_count_cannot_be_changed_with_reset() {
    // Changing the stored count would remap keys at the next opening (python-diskcache #183).
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.set("k", 1).expect("set"));
    let err = cache
        .reset("fanout_shards", 2)
        .expect_err("reset of the shard count");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    drop(cache);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.shard_count(), SHARDS);
    assert_eq!(reopened.get::<i64>("k").expect("get"), Some(1));
}

#[test]
fn a_memoized_call_whose_shard_is_busy_returns_its_result_without_storing_it() {
    let dir = tmp();
    let cache = open(dir.path());
    let opts = MemoizeOptions::new();
    let key = cache.memoize_key("f", &(7,), &opts).expect("memoize_key");
    let shard = shard_index_of(&cache, &key);
    let busy = hold_shard(dir.path(), shard);
    let calls = AtomicUsize::new(0);
    let f = || {
        calls.fetch_add(1, Ordering::SeqCst);
        49
    };
    assert_eq!(cache.memoized("f", &(7,), &opts, f).expect("memoized"), 49);
    busy.release();
    assert!(!cache.contains(&key).expect("contains"), "not stored");
    assert_eq!(cache.memoized("f", &(7,), &opts, f).expect("memoized"), 49);
    assert!(
        cache.contains(&key).expect("contains"),
        "stored once the shard is free"
    );
    assert_eq!(cache.memoized("f", &(7,), &opts, f).expect("memoized"), 49);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn with_retry_a_memoized_call_whose_shard_is_busy_waits_and_stores_its_result() {
    let dir = tmp();
    let cache = retrying(dir.path());
    let opts = MemoizeOptions::new();
    let key = cache.memoize_key("f", &(7,), &opts).expect("memoize_key");
    let busy = hold_shard(dir.path(), shard_index_of(&cache, &key));
    let r = std::thread::scope(|s| {
        let c = &cache;
        let opts = &opts;
        let call = s.spawn(move || c.memoized("f", &(7,), opts, || 49));
        let_it_try();
        assert!(!call.is_finished());
        busy.release();
        join(call)
    });
    assert_eq!(r.expect("memoized"), 49);
    assert!(cache.contains(&key).expect("contains"));
}

#[test]
fn set_value_on_a_busy_shard_gives_up_with_false() {
    let dir = tmp();
    let cache = open(dir.path());
    let k = keys_on(&cache, 0, 1)[0];
    let busy = hold_shard(dir.path(), 0);
    assert!(!cache
        .set_value(k, &Value::Int(1), &SetOptions::new())
        .expect("set_value on a busy shard"));
    busy.release();
    assert!(cache
        .set_value(k, &Value::Int(1), &SetOptions::new())
        .expect("set_value"));
    assert_eq!(cache.get::<i64>(k).expect("get"), Some(1));
}
