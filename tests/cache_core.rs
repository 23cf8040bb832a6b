//! Behaviour tests for `Cache`'s core API, ported from python-diskcache's `tests/test_core.py`
//! and the doctests of its tutorial (`docs/tutorial.rst`).
//!
//! Each test pins one behaviour. Where the Rust library deliberately differs from
//! python-diskcache (and documents it), the test pins the Rust behaviour and says so.
//!
//! Rules kept throughout: every test has its own `tempfile::tempdir()`, nothing asserts on
//! timing (expiry is exercised with `Duration::ZERO` or a day), and concurrency tests
//! synchronise with channels and joins, never sleeps.

mod common;
use common::{force_checkpoint, value_files};
use diskcache::{
    Bincode, Cache, Codec, Entry, Error, EvictionPolicy, Json, Key, SetOptions, SyncLevel, Value,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An expiry long enough that no test run can outlive it.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// python-diskcache's `disk_min_file_size` default: values this big or bigger get a file.
const MIN_FILE_SIZE: usize = 1 << 15;

/// Repeat count that makes `"hello"`/`b"world"` file-backed (5 * 2^14 = 80 KiB), standing in
/// for python's `* 2**20`.
const BIG: usize = 1 << 14;

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn open(dir: &Path) -> Cache {
    Cache::open(dir).expect("open the cache")
}

/// A cache that checkpoints after every 4 KiB of log, so tests can force checkpoints.
fn open_small_checkpoints(dir: &Path, level: SyncLevel) -> Cache {
    Cache::builder()
        .sync(level)
        .checkpoint_bytes(4096)
        .open(dir)
        .expect("open the cache with small checkpoints")
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).expect("read the value");
    buf
}

fn abort() -> Error {
    Error::InvalidArgument("abort the transaction".into())
}

// Handles are shared between threads (python: "Cache objects are thread-safe").
fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
const _: fn() = assert_send_sync_clone::<Cache>;

// ---------------------------------------------------------------------------------------------
// 1. Opening and defaults (test_init, tutorial "Settings")
// ---------------------------------------------------------------------------------------------

#[test]
fn new_cache_has_python_diskcache_default_settings() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.size_limit().expect("size_limit"), 1 << 30);
    assert_eq!(cache.cull_limit().expect("cull_limit"), 10);
    assert_eq!(
        cache.eviction_policy().expect("eviction_policy"),
        EvictionPolicy::LeastRecentlyStored
    );
    assert_eq!(
        cache.eviction_policy().expect("eviction_policy").as_str(),
        "least-recently-stored"
    );
    assert!(!cache.statistics_enabled().expect("statistics"));
    assert!(!cache.tag_index_enabled().expect("tag_index"));
    assert_eq!(
        cache.min_file_size().expect("min_file_size"),
        MIN_FILE_SIZE as u64
    );
    // python: Cache(directory, timeout=60).
    assert_eq!(cache.timeout(), Duration::from_secs(60));
    assert_eq!(cache.directory(), dir.path());
    assert_eq!(cache.len().expect("len"), 0);
    assert!(cache.is_empty().expect("is_empty"));
}

#[test]
fn open_creates_a_missing_directory() {
    let dir = tmp();
    let nested = dir.path().join("a").join("b").join("cache");
    let cache = open(&nested);
    assert!(nested.is_dir());
    cache.set("key", "value").expect("set");
    assert_eq!(
        cache.get::<String>("key").expect("get"),
        Some("value".into())
    );
}

#[test]
fn temp_cache_opens_in_a_fresh_directory() {
    // python: Cache() with no directory uses tempfile.mkdtemp(prefix='diskcache-').
    let cache = Cache::temp().expect("open a temporary cache");
    let dir = cache.directory().to_path_buf();
    assert!(dir.is_dir());
    assert!(cache.is_empty().expect("is_empty"));
    cache.set("key", "value").expect("set");
    assert_eq!(
        cache.get::<String>("key").expect("get"),
        Some("value".into())
    );
    drop(cache);
    // Documented: the directory outlives the cache (as in python); clean it up ourselves.
    assert!(dir.is_dir());
    std::fs::remove_dir_all(&dir).expect("remove the temporary cache directory");
}

#[test]
fn closed_cache_reopens_with_its_data() {
    // Tutorial: `with Cache(cache.directory) as reference: reference.set('key', 'value')`,
    // then a later handle reads it.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("key", "value").expect("set");
    cache.close().expect("close");
    let reference = open(dir.path());
    assert_eq!(
        reference.get::<String>("key").expect("get"),
        Some("value".into())
    );
    assert!(reference.contains("key").expect("contains"));
    assert!(reference.delete("key").expect("delete"));
    assert!(!reference.contains("key").expect("contains"));
}

#[test]
fn fresh_cache_volume_is_small() {
    // Tutorial: `cache.volume() < int(1e5)`.
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.volume().expect("volume") < 100_000);
}

// ---------------------------------------------------------------------------------------------
// 2. get / set / delete over many kinds of value (test_getsetdel)
// ---------------------------------------------------------------------------------------------

#[test]
fn getsetdel_round_trips_every_kind_of_value() {
    let dir = tmp();
    let cache = open(dir.path());
    let nones = vec![None::<u8>; 4096];
    let big_str = "hello".repeat(BIG);
    let big_bytes = b"world".repeat(BIG);

    cache.set(0, None::<u8>).expect("set None");
    cache.set(1, &nones).expect("set a long vec of Nones");
    cache.set(2, 1234).expect("set 1234");
    cache.set(3, u64::MAX).expect("set an integer beyond i64");
    cache.set(4, 56.78).expect("set 56.78");
    cache.set(5, "hello").expect("set a small string");
    cache.set(6, &big_str).expect("set a large string");
    cache.set(7, b"world").expect("set small bytes");
    cache.set(8, &big_bytes).expect("set large bytes");
    cache
        .set_reader(9, Cursor::new(big_bytes.clone()))
        .expect("set from a reader");
    assert_eq!(cache.len().expect("len"), 10);

    assert_eq!(cache.get::<Option<u8>>(0).expect("get 0"), Some(None));
    assert_eq!(
        cache.get::<Vec<Option<u8>>>(1).expect("get 1"),
        Some(nones.clone())
    );
    assert_eq!(cache.get::<i64>(2).expect("get 2"), Some(1234));
    assert_eq!(cache.get::<u64>(3).expect("get 3"), Some(u64::MAX));
    assert_eq!(cache.get::<f64>(4).expect("get 4"), Some(56.78));
    assert_eq!(cache.get::<String>(5).expect("get 5"), Some("hello".into()));
    assert_eq!(
        cache.get::<String>(6).expect("get 6"),
        Some(big_str.clone())
    );
    assert_eq!(
        cache.get::<Vec<u8>>(7).expect("get 7"),
        Some(b"world".to_vec())
    );
    assert_eq!(
        cache.get::<Vec<u8>>(8).expect("get 8"),
        Some(big_bytes.clone())
    );
    assert_eq!(
        cache.get::<Vec<u8>>(9).expect("get 9"),
        Some(big_bytes.clone())
    );

    // The large values (and the reader's) live in their own files; small ones do not.
    for k in [6, 8, 9] {
        let r = cache.read(k).expect("read").expect("present");
        assert!(r.path().is_some(), "value {k} should be file-backed");
    }
    for k in [0, 1, 2, 3, 4, 5, 7] {
        let r = cache.read(k).expect("read").expect("present");
        assert!(r.path().is_none(), "value {k} should be inline");
    }
    assert_eq!(value_files(dir.path()).len(), 3);

    for k in 0..10 {
        assert!(cache.delete(k).expect("delete"), "key {k} was present");
    }
    assert_eq!(cache.len().expect("len"), 0);
    for k in 0..10 {
        assert_eq!(cache.get_value(k).expect("get_value"), None);
    }
}

#[test]
fn getsetdel_with_the_values_used_as_keys() {
    // The second half of test_getsetdel: the same values as keys (a reader cannot be a key).
    let dir = tmp();
    let cache = open(dir.path());
    let nones = vec![None::<u8>; 4096];
    let big_str = "hello".repeat(BIG);
    let big_bytes = b"world".repeat(BIG);

    cache.set(None::<u8>, 0).expect("set");
    cache.set(&nones, 1).expect("set");
    cache.set(1234, 2).expect("set");
    cache.set(u64::MAX, 3).expect("set");
    cache.set(56.78, 4).expect("set");
    cache.set("hello", 5).expect("set");
    cache.set(&big_str, 6).expect("set");
    cache.set(b"world", 7).expect("set");
    cache.set(&big_bytes, 8).expect("set");
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

    assert!(cache.delete(None::<u8>).expect("delete"));
    assert!(cache.delete(&nones).expect("delete"));
    assert!(cache.delete(1234).expect("delete"));
    assert!(cache.delete(u64::MAX).expect("delete"));
    assert!(cache.delete(56.78).expect("delete"));
    assert!(cache.delete("hello").expect("delete"));
    assert!(cache.delete(&big_str).expect("delete"));
    assert!(cache.delete(b"world").expect("delete"));
    assert!(cache.delete(&big_bytes).expect("delete"));
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn native_values_are_stored_natively_and_others_through_the_codec() {
    // python stores int/float/str/bytes natively and pickles the rest; here the rest goes
    // through the codec, and ints beyond i64 (python: beyond SQLite INTEGER) are encoded.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("int", 1234).expect("set");
    cache.set("float", 56.78).expect("set");
    cache.set("str", "hello").expect("set");
    cache.set("bytes", b"world").expect("set");
    cache.set("none", None::<u8>).expect("set");
    cache.set("huge", u64::MAX).expect("set");
    cache.set("tuple", (1, "a")).expect("set");
    cache.set_reader("reader", &b"raw"[..]).expect("set_reader");

    assert_eq!(cache.get_value("int").expect("get"), Some(Value::Int(1234)));
    assert_eq!(
        cache.get_value("float").expect("get"),
        Some(Value::Float(56.78))
    );
    assert_eq!(
        cache.get_value("str").expect("get"),
        Some(Value::Str("hello".into()))
    );
    assert_eq!(
        cache.get_value("bytes").expect("get"),
        Some(Value::Bytes(b"world".to_vec()))
    );
    assert_eq!(
        cache.get_value("reader").expect("get"),
        Some(Value::Bytes(b"raw".to_vec()))
    );
    for k in ["none", "huge", "tuple"] {
        assert!(
            matches!(cache.get_value(k).expect("get"), Some(Value::Encoded(_))),
            "{k} should be codec-encoded"
        );
    }
}

#[test]
fn byte_string_values_read_back_whatever_their_rust_form() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("slice", &b"abc"[..]).expect("set");
    cache.set("array", b"abc").expect("set");
    cache.set("vec", b"abc".to_vec()).expect("set");
    cache
        .set("serde_bytes", serde_bytes::Bytes::new(b"abc"))
        .expect("set");
    for k in ["slice", "array", "vec", "serde_bytes"] {
        assert_eq!(
            cache.get_value(k).expect("get"),
            Some(Value::Bytes(b"abc".to_vec()))
        );
        assert_eq!(cache.get::<Vec<u8>>(k).expect("get"), Some(b"abc".to_vec()));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. get, get_entry and tags (test_get, test_tag, tutorial "Cache")
// ---------------------------------------------------------------------------------------------

#[test]
fn get_of_a_missing_key_is_none() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.get::<String>("missing").expect("get"), None);
    assert_eq!(
        cache.get_entry::<String>("missing").expect("get_entry"),
        None
    );
    assert_eq!(cache.get_value("missing").expect("get_value"), None);
    assert!(cache.read("missing").expect("read").is_none());
    assert!(!cache.contains("missing").expect("contains"));
}

#[test]
fn get_entry_reports_value_and_no_expiry_or_tag_when_none_were_given() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("key", "value").expect("set");
    assert_eq!(
        cache.get_entry::<String>("key").expect("get_entry"),
        Some(Entry {
            value: "value".to_string(),
            expire_time: None,
            tag: None,
        })
    );
}

#[test]
fn get_entry_reports_expire_time_and_tag_of_a_reader_value() {
    // Tutorial: set('key', BytesIO(b'value'), expire=5, read=True, tag='data'), then
    // get('key', read=True, expire_time=True, tag=True).
    let dir = tmp();
    let cache = open(dir.path());
    let before = SystemTime::now();
    cache
        .set_reader_with(
            "key",
            &b"value"[..],
            &SetOptions::new().expire(DAY).tag("data"),
        )
        .expect("set_reader_with");
    let after = SystemTime::now();

    let e = cache
        .get_entry::<Vec<u8>>("key")
        .expect("get_entry")
        .expect("present");
    assert_eq!(e.value, b"value");
    assert_eq!(e.tag, Some(Key::Str("data".into())));
    let t = e.expire_time.expect("an expire time");
    // Absolute time: about a day after the set (bounds only, no timing).
    assert!(t >= before + DAY - Duration::from_secs(1), "{t:?}");
    assert!(t <= after + DAY + Duration::from_secs(1), "{t:?}");

    let reader = cache.read("key").expect("read").expect("present");
    assert!(reader.path().is_some(), "set_reader always makes a file");
    assert_eq!(read_all(reader), b"value");
}

#[test]
fn tags_of_every_key_type_round_trip() {
    // test_tag stores tags 1234, 5.67 and b'three'; tutorial uses strings.
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("str", 0, &SetOptions::new().tag("blue"))
        .expect("set");
    cache
        .set_with("int", 1, &SetOptions::new().tag(1234))
        .expect("set");
    cache
        .set_with("float", 2, &SetOptions::new().tag(5.67))
        .expect("set");
    cache
        .set_with("bytes", 3, &SetOptions::new().tag(&b"three"[..]))
        .expect("set");
    cache
        .set_with("tuple", 4, &SetOptions::new().tag((1, "a")))
        .expect("set");
    // Documented in `Key`: an integral float is stored as the integer it equals.
    cache
        .set_with("integral", 5, &SetOptions::new().tag(2.0))
        .expect("set");

    let tag = |k: &str| {
        cache
            .get_entry::<i64>(k)
            .expect("get_entry")
            .expect("present")
            .tag
    };
    assert_eq!(tag("str"), Some(Key::Str("blue".into())));
    assert_eq!(tag("int"), Some(Key::Int(1234)));
    assert_eq!(tag("float"), Some(Key::Float(5.67)));
    assert_eq!(tag("bytes"), Some(Key::Bytes(b"three".to_vec())));
    assert_eq!(tag("tuple"), Some(Key::from_value(&(1, "a")).expect("key")));
    assert_eq!(tag("integral"), Some(Key::Int(2)));
    let back: (i32, String) = tag("tuple")
        .expect("tag")
        .deserialize()
        .expect("deserialize the tag");
    assert_eq!(back, (1, "a".to_string()));
}

#[test]
fn nan_tag_is_rejected_and_nothing_is_stored() {
    let dir = tmp();
    let cache = open(dir.path());
    let err = cache
        .set_with("k", 1, &SetOptions::new().tag(f64::NAN))
        .expect_err("a NaN tag is refused");
    assert!(matches!(err, Error::InvalidKey(_)), "{err:?}");
    assert_eq!(cache.len().expect("len"), 0);
}

// ---------------------------------------------------------------------------------------------
// 4. Replacing values and their files (test_set_twice, test_path)
// ---------------------------------------------------------------------------------------------

#[test]
fn set_twice_replaces_small_large_and_small_values() {
    let dir = tmp();
    let cache = open(dir.path());
    let large = b"abcd".repeat(1 << 18); // 1 MiB

    cache.set(0, 0).expect("set");
    cache.set(0, 1).expect("set");
    assert_eq!(cache.get::<i64>(0).expect("get"), Some(1));

    cache.set(0, &large).expect("set large");
    assert_eq!(cache.get::<Vec<u8>>(0).expect("get"), Some(large.clone()));
    let reader = cache.read(0).expect("read").expect("present");
    let path = reader
        .path()
        .expect("a large value has a path")
        .to_path_buf();
    assert!(path.is_file());
    assert_eq!(reader.len(), large.len() as u64);
    drop(reader);

    cache.set(0, 2).expect("set small again");
    assert_eq!(cache.get::<i64>(0).expect("get"), Some(2));
    let reader = cache.read(0).expect("read").expect("present");
    assert!(reader.path().is_none(), "a small value has no path");
    assert_eq!(cache.len().expect("len"), 1);

    // A small string reads back as its bytes.
    cache.set(0, "small").expect("set");
    let reader = cache.read(0).expect("read").expect("present");
    assert!(reader.path().is_none());
    assert_eq!(read_all(reader), b"small");
}

#[test]
fn replaced_value_file_is_removed_by_the_next_checkpoint_at_every_sync_level() {
    // Documented (engine `values`): a value file is removed only by the checkpoint after the
    // commit that stops referring to it (recovery may replay transactions that still refer
    // to it; other processes may still be reading it). python removes it after the commit.
    for level in [SyncLevel::Normal, SyncLevel::Full, SyncLevel::Off] {
        let dir = tmp();
        let cache = open_small_checkpoints(dir.path(), level);
        cache.set("k", vec![7u8; 1 << 20]).expect("set large");
        let first = value_files(dir.path());
        assert_eq!(first.len(), 1, "{level:?}");

        cache
            .set("k", vec![8u8; 1 << 20])
            .expect("replace with another large value");
        let second: Vec<PathBuf> = value_files(dir.path())
            .into_iter()
            .filter(|p| *p != first[0])
            .collect();
        assert_eq!(
            second.len(),
            1,
            "the replacement has its own file ({level:?})"
        );
        assert_eq!(
            cache.get::<Vec<u8>>("k").expect("get"),
            Some(vec![8u8; 1 << 20]),
            "{level:?}"
        );

        cache.set("k", "small").expect("replace with a small value");
        force_checkpoint(&cache);
        assert!(!first[0].exists(), "first file gone ({level:?})");
        assert!(!second[0].exists(), "second file gone ({level:?})");
        assert!(value_files(dir.path()).is_empty(), "{level:?}");
        assert_eq!(
            cache.get::<String>("k").expect("get"),
            Some("small".into()),
            "{level:?}"
        );
    }
}

#[test]
fn replaced_value_file_survives_a_reopen_until_a_checkpoint() {
    // The pending removal is not lost by closing the handle: a later handle's checkpoint
    // removes the file.
    let dir = tmp();
    let cache = open_small_checkpoints(dir.path(), SyncLevel::Normal);
    cache.set("k", vec![1u8; 1 << 20]).expect("set large");
    let old = value_files(dir.path());
    assert_eq!(old.len(), 1);
    cache.set("k", "small").expect("replace");
    cache.close().expect("close");

    let cache = open_small_checkpoints(dir.path(), SyncLevel::Normal);
    assert_eq!(cache.get::<String>("k").expect("get"), Some("small".into()));
    force_checkpoint(&cache);
    assert!(
        !old[0].exists(),
        "the replaced file is gone after a checkpoint"
    );
    assert!(value_files(dir.path()).is_empty());
}

#[test]
fn read_of_a_file_backed_value_gives_its_file() {
    // test_path: `reader.name` is the value file, holding exactly the value.
    let dir = tmp();
    let cache = open(dir.path());
    let value: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    cache.set("k", &value).expect("set");
    let mut reader = cache.read("k").expect("read").expect("present");
    let path = reader.path().expect("file-backed").to_path_buf();
    assert!(path.starts_with(dir.path().join("values")), "{path:?}");
    assert_eq!(std::fs::read(&path).expect("read the value file"), value);
    assert_eq!(reader.len(), value.len() as u64);

    // The reader is seekable.
    reader.seek(SeekFrom::Start(1000)).expect("seek");
    let mut buf = [0u8; 10];
    reader.read_exact(&mut buf).expect("read_exact");
    assert_eq!(&buf[..], &value[1000..1010]);
    reader.seek(SeekFrom::Start(0)).expect("seek");
    assert_eq!(read_all(reader), value);
}

#[test]
fn min_file_size_decides_which_values_get_files() {
    // python: values *at or above* disk_min_file_size go to files; numbers never do.
    let dir = tmp();
    let cache = Cache::builder()
        .min_file_size(100)
        .open(dir.path())
        .expect("open");
    cache.set("below", vec![b'x'; 99]).expect("set");
    cache.set("at", vec![b'x'; 100]).expect("set");
    cache.set("str", "y".repeat(100)).expect("set");
    cache.set("int", i64::MAX).expect("set");
    let path = |k: &str| {
        cache
            .read(k)
            .expect("read")
            .expect("present")
            .path()
            .map(Path::to_path_buf)
    };
    assert!(path("below").is_none());
    assert!(path("at").is_some());
    assert!(path("str").is_some());
    assert!(path("int").is_none());
    assert_eq!(value_files(dir.path()).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 5. Raw reader values (test_raw)
// ---------------------------------------------------------------------------------------------

#[test]
fn set_reader_of_four_bytes_still_makes_a_value_file() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_reader("raw", Cursor::new(b"abcd"))
        .expect("set_reader");
    assert_eq!(value_files(dir.path()).len(), 1);
    let reader = cache.read("raw").expect("read").expect("present");
    assert!(reader.path().is_some());
    assert_eq!(read_all(reader), b"abcd");
    assert_eq!(
        cache.get::<Vec<u8>>("raw").expect("get"),
        Some(b"abcd".to_vec())
    );
}

// ---------------------------------------------------------------------------------------------
// 6. delete and expired items (test_delete, test_del_expired, quirk 1.15 #1)
// ---------------------------------------------------------------------------------------------

#[test]
fn delete_returns_true_then_false() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(0, 0).expect("set");
    assert!(cache.delete(0).expect("delete"));
    assert!(!cache.delete(0).expect("delete again"));
    assert!(!cache.delete("never-set").expect("delete missing"));
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn expired_key_is_absent_to_reads_and_removals_but_still_counted_by_len() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with(0, 0, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    assert_eq!(cache.get::<i64>(0).expect("get"), None);
    assert_eq!(cache.get_entry::<i64>(0).expect("get_entry"), None);
    assert_eq!(cache.get_value(0).expect("get_value"), None);
    assert!(cache.read(0).expect("read").is_none());
    assert!(!cache.contains(0).expect("contains"));
    assert!(
        !cache.delete(0).expect("delete"),
        "expired counts as absent"
    );
    assert_eq!(cache.pop::<i64>(0).expect("pop"), None);
    assert_eq!(cache.pop_entry::<i64>(0).expect("pop_entry"), None);
    // python quirk: del/pop leave the expired row in place and len() still counts it.
    assert_eq!(cache.len().expect("len"), 1);
    assert!(!cache.is_empty().expect("is_empty"));
}

// ---------------------------------------------------------------------------------------------
// 7. Expiry (test_get_expired_fast_path / slow_path)
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_expiry_makes_an_item_invisible_immediately() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("k", "v", &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    assert_eq!(cache.get::<String>("k").expect("get"), None);
    assert!(!cache.contains("k").expect("contains"));
}

#[test]
fn zero_expiry_makes_a_file_backed_item_invisible_immediately() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with(
            "k",
            vec![0u8; 2 * MIN_FILE_SIZE],
            &SetOptions::new().expire(Duration::ZERO),
        )
        .expect("set");
    assert_eq!(cache.get::<Vec<u8>>("k").expect("get"), None);
    assert!(cache.read("k").expect("read").is_none());
}

#[test]
fn expired_items_are_misses_with_statistics_on_and_under_lru() {
    // python's "slow path" (statistics on / LRU) must agree with the fast path.
    let dir = tmp();
    let cache = Cache::builder()
        .statistics(true)
        .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
        .open(dir.path())
        .expect("open");
    cache
        .set_with("gone", 1, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    cache
        .set_with("live", 2, &SetOptions::new().expire(DAY))
        .expect("set");
    assert_eq!(cache.get::<i64>("gone").expect("get"), None);
    assert_eq!(cache.get_entry::<i64>("gone").expect("get_entry"), None);
    assert_eq!(cache.get::<i64>("live").expect("get"), Some(2));
}

#[test]
fn long_expiry_item_is_visible_with_a_future_expire_time() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("k", "v", &SetOptions::new().expire(DAY))
        .expect("set");
    assert!(cache.contains("k").expect("contains"));
    let e = cache
        .get_entry::<String>("k")
        .expect("get_entry")
        .expect("present");
    assert_eq!(e.value, "v");
    assert!(e.expire_time.expect("expire time") > SystemTime::now());
}

#[test]
fn expire_opt_none_means_never_expire() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("k", 1, &SetOptions::new().expire_opt(None))
        .expect("set");
    let e = cache
        .get_entry::<i64>("k")
        .expect("get_entry")
        .expect("present");
    assert_eq!(e.expire_time, None);
}

#[test]
fn setting_an_expired_key_again_revives_it_without_a_second_entry() {
    // python: an overwrite updates the existing row even if it had expired.
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    cache
        .set_with("k", 1, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    cache.set("k", 2).expect("set again");
    assert_eq!(cache.get::<i64>("k").expect("get"), Some(2));
    assert_eq!(cache.len().expect("len"), 1);
}

// ---------------------------------------------------------------------------------------------
// 8. add (test_add, test_add_large_value, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn add_does_not_overwrite_a_live_key() {
    // Tutorial: add(b'test', 123) -> True; add(b'test', 456) -> False; value stays 123.
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.add(b"test", 123).expect("add"));
    assert_eq!(cache.get::<i64>(b"test").expect("get"), Some(123));
    assert!(!cache.add(b"test", 456).expect("add again"));
    assert_eq!(cache.get::<i64>(b"test").expect("get"), Some(123));
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn add_over_an_expired_key_succeeds() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with(
            "k",
            "old",
            &SetOptions::new().expire(Duration::ZERO).tag("t"),
        )
        .expect("set");
    assert!(cache.add("k", "new").expect("add"));
    assert_eq!(
        cache.get_entry::<String>("k").expect("get_entry"),
        Some(Entry {
            value: "new".into(),
            expire_time: None,
            tag: None,
        })
    );
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn add_with_stores_expiry_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache
        .add_with("k", 5, &SetOptions::new().expire(DAY).tag("admin"))
        .expect("add_with"));
    let e = cache
        .get_entry::<i64>("k")
        .expect("get_entry")
        .expect("present");
    assert_eq!(e.value, 5);
    assert!(e.expire_time.is_some());
    assert_eq!(e.tag, Some(Key::Str("admin".into())));
    assert!(!cache
        .add_with("k", 6, &SetOptions::new().tag("other"))
        .expect("add_with again"));
    assert_eq!(cache.get::<i64>("k").expect("get"), Some(5));
}

#[test]
fn losing_add_of_a_large_value_leaves_no_extra_value_file() {
    let dir = tmp();
    let cache = open(dir.path());
    let first = vec![1u8; 4 * MIN_FILE_SIZE];
    let second = vec![2u8; 4 * MIN_FILE_SIZE];
    assert!(cache.add("k", &first).expect("add"));
    let files = value_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(!cache.add("k", &second).expect("add again"));
    assert_eq!(value_files(dir.path()), files, "no file left by the loser");
    assert_eq!(cache.get::<Vec<u8>>("k").expect("get"), Some(first));
}

// ---------------------------------------------------------------------------------------------
// 9. touch (test_touch, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn touch_of_a_live_key_is_true_and_of_a_missing_key_false() {
    // Tutorial: touch('key', expire=None) -> True; touch('does-not-exist', expire=1) -> False.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("key", "value").expect("set");
    assert!(cache.touch("key", None).expect("touch"));
    assert!(!cache.touch("does-not-exist", Some(DAY)).expect("touch"));
    assert!(!cache.contains("does-not-exist").expect("contains"));
}

#[test]
fn touch_sets_a_new_expiry_on_a_live_key() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("k", 1).expect("set");
    assert!(cache.touch("k", Some(DAY)).expect("touch"));
    let e = cache
        .get_entry::<i64>("k")
        .expect("get_entry")
        .expect("present");
    assert!(e.expire_time.expect("expire time") > SystemTime::now());
}

#[test]
fn touch_of_an_expired_key_is_false_and_does_not_revive_it() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("k", 1, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    assert!(!cache.touch("k", None).expect("touch"));
    assert!(!cache.touch("k", Some(DAY)).expect("touch"));
    assert!(!cache.contains("k").expect("contains"));
}

#[test]
fn touch_with_zero_makes_the_item_expire() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("k", 1).expect("set");
    assert!(cache.touch("k", Some(Duration::ZERO)).expect("touch"));
    assert!(!cache.contains("k").expect("contains"));
    assert_eq!(cache.get::<i64>("k").expect("get"), None);
}

#[test]
fn touch_with_none_removes_the_expiry() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("k", 1, &SetOptions::new().expire(DAY).tag("t"))
        .expect("set");
    assert!(cache.touch("k", None).expect("touch"));
    let e = cache
        .get_entry::<i64>("k")
        .expect("get_entry")
        .expect("present");
    assert_eq!(e.expire_time, None);
    assert_eq!(e.value, 1, "touch keeps the value");
    assert_eq!(e.tag, Some(Key::Str("t".into())), "touch keeps the tag");
}

// ---------------------------------------------------------------------------------------------
// 10. incr / decr (test_incr, test_decr, test_incr_*_keyerror, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn incr_and_decr_follow_the_tutorial() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.add(b"test", 123).expect("add"));
    assert_eq!(cache.incr(b"test", 1).expect("incr"), 124);
    assert_eq!(cache.decr(b"test", 24).expect("decr"), 100);
    assert_eq!(cache.get::<i64>(b"test").expect("get"), Some(100));

    assert_eq!(cache.incr("alice", 1).expect("incr"), 1);
    assert_eq!(cache.decr_with("bob", 1, Some(-9)).expect("decr_with"), -10);
    let err = cache
        .incr_with("carol", 1, None)
        .expect_err("no default for a missing key");
    assert!(matches!(err, Error::KeyNotFound), "{err:?}");
}

#[test]
fn incr_with_no_default_does_not_create_the_key() {
    // test_incr_insert_keyerror.
    let dir = tmp();
    let cache = open(dir.path());
    assert!(matches!(
        cache.incr_with("k", 1, None),
        Err(Error::KeyNotFound)
    ));
    assert!(matches!(
        cache.decr_with("k", 1, None),
        Err(Error::KeyNotFound)
    ));
    assert!(!cache.contains("k").expect("contains"));
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn incr_and_decr_count_up_and_down_through_negative_values() {
    // test_incr / test_decr: repeated steps, negatives allowed.
    let dir = tmp();
    let cache = open(dir.path());
    for expected in 1..=5 {
        assert_eq!(cache.incr("n", 1).expect("incr"), expected);
    }
    for expected in (-5..5).rev() {
        assert_eq!(cache.decr("n", 1).expect("decr"), expected);
    }
    assert_eq!(cache.incr("n", -10).expect("incr by a negative"), -15);
    assert_eq!(cache.get::<i64>("n").expect("get"), Some(-15));
    assert_eq!(cache.incr_with("m", 10, Some(100)).expect("incr_with"), 110);
}

#[test]
fn incr_counts_from_an_integer_stored_by_set() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("u8", 41u8).expect("set");
    cache.set("i32", -3i32).expect("set");
    assert_eq!(cache.incr("u8", 1).expect("incr"), 42);
    assert_eq!(cache.incr("i32", 3).expect("incr"), 0);
}

#[test]
fn incr_on_a_non_integer_value_is_a_type_mismatch() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("str", "text").expect("set");
    cache.set("bytes", b"raw").expect("set");
    cache.set("huge", u64::MAX).expect("set");
    cache.set("big", vec![0u8; 2 * MIN_FILE_SIZE]).expect("set");
    // Deliberate, documented deviation: python adds to floats (1.5 + 2 == 3.5); here
    // "floats are not counters".
    cache.set("float", 1.5).expect("set");
    for k in ["str", "bytes", "huge", "big", "float"] {
        let err = cache.incr(k, 1).expect_err("not an integer");
        assert!(matches!(err, Error::TypeMismatch(_)), "{k}: {err:?}");
        let err = cache.decr(k, 1).expect_err("not an integer");
        assert!(matches!(err, Error::TypeMismatch(_)), "{k}: {err:?}");
    }
    // The failed incr rolled back: values unchanged.
    assert_eq!(
        cache.get::<String>("str").expect("get"),
        Some("text".into())
    );
    assert_eq!(cache.get::<f64>("float").expect("get"), Some(1.5));
    assert_eq!(cache.get::<u64>("huge").expect("get"), Some(u64::MAX));
}

#[test]
fn incr_past_i64_is_an_overflow_error_and_keeps_the_value() {
    // python: OverflowError beyond SQLite's 64-bit INTEGER.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("max", i64::MAX).expect("set");
    assert!(matches!(cache.incr("max", 1), Err(Error::Overflow)));
    assert_eq!(cache.get::<i64>("max").expect("get"), Some(i64::MAX));

    cache.set("min", i64::MIN).expect("set");
    assert!(matches!(cache.decr("min", 1), Err(Error::Overflow)));
    assert_eq!(cache.get::<i64>("min").expect("get"), Some(i64::MIN));

    // default + delta overflowing on a missing key: nothing is stored.
    assert!(matches!(
        cache.incr_with("fresh", 1, Some(i64::MAX)),
        Err(Error::Overflow)
    ));
    assert!(!cache.contains("fresh").expect("contains"));
    // decr's negation of i64::MIN overflows too.
    assert!(matches!(
        cache.decr("other", i64::MIN),
        Err(Error::Overflow)
    ));
    assert!(!cache.contains("other").expect("contains"));
}

#[test]
fn incr_of_an_expired_key_restarts_from_the_default() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("n", 100, &SetOptions::new().expire(Duration::ZERO).tag("t"))
        .expect("set");
    assert_eq!(cache.incr("n", 1).expect("incr"), 1);
    // python: _row_update clears the expiry and the tag; the row is reused.
    assert_eq!(
        cache.get_entry::<i64>("n").expect("get_entry"),
        Some(Entry {
            value: 1,
            expire_time: None,
            tag: None,
        })
    );
    assert_eq!(cache.len().expect("len"), 1);

    cache
        .set_with("m", 100, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    assert_eq!(
        cache.decr_with("m", 1, Some(10)).expect("decr_with"),
        9,
        "restarts from the given default"
    );
}

#[test]
fn incr_of_an_expired_key_without_default_is_key_not_found() {
    // test_incr_update_keyerror.
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with(0, 0, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    assert!(matches!(
        cache.incr_with(0, 1, None),
        Err(Error::KeyNotFound)
    ));
}

#[test]
fn incr_keeps_an_existing_expiry_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set_with("n", 5, &SetOptions::new().expire(DAY).tag("counter"))
        .expect("set");
    let before = cache
        .get_entry::<i64>("n")
        .expect("get_entry")
        .expect("present");
    assert_eq!(cache.incr("n", 1).expect("incr"), 6);
    let after = cache
        .get_entry::<i64>("n")
        .expect("get_entry")
        .expect("present");
    assert_eq!(after.value, 6);
    assert_eq!(after.expire_time, before.expire_time);
    assert_eq!(after.tag, Some(Key::Str("counter".into())));
}

// ---------------------------------------------------------------------------------------------
// 11. pop (test_pop, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn pop_follows_the_tutorial() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.incr("alice", 1).expect("incr"), 1);
    assert_eq!(cache.pop::<i64>("alice").expect("pop"), Some(1));
    // python: pop('dave', default='does not exist') -> the default; here None.
    assert_eq!(cache.pop::<i64>("dave").expect("pop"), None);
    cache
        .set_with("dave", 0, &SetOptions::new().expire_opt(None).tag("admin"))
        .expect("set");
    assert_eq!(
        cache.pop_entry::<i64>("dave").expect("pop_entry"),
        Some(Entry {
            value: 0,
            expire_time: None,
            tag: Some(Key::Str("admin".into())),
        })
    );
}

#[test]
fn pop_removes_the_key_and_returns_its_metadata() {
    // test_pop.
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.incr("alpha", 1).expect("incr"), 1);
    assert_eq!(cache.pop::<i64>("alpha").expect("pop"), Some(1));
    assert_eq!(cache.get::<i64>("alpha").expect("get"), None);
    assert_eq!(cache.pop::<i64>("alpha").expect("pop again"), None);

    cache
        .set_with("alpha", 123, &SetOptions::new().expire(DAY).tag("blue"))
        .expect("set");
    let e = cache
        .pop_entry::<i64>("alpha")
        .expect("pop_entry")
        .expect("present");
    assert_eq!((e.value, e.tag), (123, Some(Key::Str("blue".into()))));
    assert!(e.expire_time.expect("expire time") > SystemTime::now());

    cache
        .set_with("gamma", 789, &SetOptions::new().tag("red"))
        .expect("set");
    assert_eq!(
        cache.pop_entry::<i64>("gamma").expect("pop_entry"),
        Some(Entry {
            value: 789,
            expire_time: None,
            tag: Some(Key::Str("red".into())),
        })
    );
    assert_eq!(cache.pop::<i64>("dne").expect("pop"), None);
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn pop_of_a_file_backed_value_returns_it_whole() {
    // test_pop: pop('epsilon') of '0' * 2**20.
    let dir = tmp();
    let cache = open_small_checkpoints(dir.path(), SyncLevel::Normal);
    let big = "0".repeat(1 << 20);
    cache.set("epsilon", &big).expect("set");
    assert_eq!(value_files(dir.path()).len(), 1);
    assert_eq!(cache.pop::<String>("epsilon").expect("pop"), Some(big));
    assert!(!cache.contains("epsilon").expect("contains"));
    // Its file goes with the next checkpoint.
    force_checkpoint(&cache);
    assert!(value_files(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 12. Keys (section 1.5, test_key_roundtrip / issue #54)
// ---------------------------------------------------------------------------------------------

#[test]
fn one_and_one_point_zero_are_the_same_key() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(1, "one").expect("set");
    cache.set(1.0, "float-one").expect("set");
    assert_eq!(cache.len().expect("len"), 1);
    assert_eq!(
        cache.get::<String>(1).expect("get"),
        Some("float-one".into())
    );
    assert_eq!(
        cache.get::<String>(1.0f32).expect("get"),
        Some("float-one".into())
    );
    assert_eq!(
        cache.get::<String>(1u8).expect("get"),
        Some("float-one".into())
    );
}

#[test]
fn negative_zero_and_zero_are_the_same_key() {
    // python: SQLite compares numerically, so -0.0 == 0.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(0, "zero").expect("set");
    assert_eq!(cache.get::<String>(-0.0).expect("get"), Some("zero".into()));
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn true_and_one_are_different_keys() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(1, "one").expect("set");
    assert!(!cache.contains(true).expect("contains"));
    cache.set(true, "true").expect("set");
    assert_eq!(cache.get::<String>(1).expect("get"), Some("one".into()));
    assert_eq!(cache.get::<String>(true).expect("get"), Some("true".into()));
    assert_eq!(cache.len().expect("len"), 2);
}

#[test]
fn str_and_bytes_keys_with_the_same_content_differ() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("a", "text").expect("set");
    cache.set(b"a", "bytes").expect("set");
    assert_eq!(cache.len().expect("len"), 2);
    assert_eq!(cache.get::<String>("a").expect("get"), Some("text".into()));
    assert_eq!(
        cache.get::<String>(b"a").expect("get"),
        Some("bytes".into())
    );
}

#[test]
fn byte_string_keys_are_one_key_whatever_their_rust_form() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(&b"x"[..], 1).expect("set");
    cache.set(b"x", 2).expect("set");
    cache.set(b"x".to_vec(), 3).expect("set");
    cache.set(serde_bytes::Bytes::new(b"x"), 4).expect("set");
    assert_eq!(cache.len().expect("len"), 1);
    assert_eq!(cache.get::<i64>(&b"x"[..]).expect("get"), Some(4));
}

#[test]
fn nan_keys_are_rejected_with_invalid_key() {
    // Deliberate, documented deviation (`Key`: "NaN is rejected"): python binds NaN as NULL
    // and every set inserts a new unreachable row.
    let dir = tmp();
    let cache = open(dir.path());
    let is_invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidKey(_)));
    assert!(is_invalid(cache.set(f64::NAN, 1)));
    assert!(is_invalid(cache.set(f32::NAN, 1)));
    assert!(is_invalid(cache.set((1, f64::NAN), 1)));
    assert!(is_invalid(cache.get::<i64>(f64::NAN).map(drop)));
    assert!(is_invalid(cache.contains(f64::NAN).map(drop)));
    assert!(is_invalid(cache.delete(f64::NAN).map(drop)));
    assert!(is_invalid(cache.add(f64::NAN, 1).map(drop)));
    assert!(is_invalid(cache.incr(f64::NAN, 1).map(drop)));
    assert!(is_invalid(cache.touch(f64::NAN, None).map(drop)));
    assert!(is_invalid(cache.pop::<i64>(f64::NAN).map(drop)));
    assert!(is_invalid(cache.set_reader(f64::NAN, &b"x"[..])));
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn infinite_float_keys_are_ordinary_keys() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(f64::INFINITY, "inf").expect("set");
    cache.set(f64::NEG_INFINITY, "-inf").expect("set");
    cache.set(0.5, "half").expect("set");
    assert_eq!(
        cache.get::<String>(f64::INFINITY).expect("get"),
        Some("inf".into())
    );
    assert_eq!(
        cache.get::<String>(f64::NEG_INFINITY).expect("get"),
        Some("-inf".into())
    );
    assert_eq!(
        cache.get::<String>(0.5f32).expect("get"),
        Some("half".into())
    );
    assert_eq!(cache.len().expect("len"), 3);
}

#[test]
fn integers_beyond_i64_are_keys() {
    // python pickles 2**70; here u64/i128 keys stay numbers.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(u64::MAX, "u64").expect("set");
    cache.set(i128::MIN, "i128").expect("set");
    assert_eq!(
        cache.get::<String>(u64::MAX).expect("get"),
        Some("u64".into())
    );
    assert_eq!(
        cache.get::<String>(u64::MAX as u128).expect("get"),
        Some("u64".into())
    );
    assert_eq!(
        cache.get::<String>(i128::MIN).expect("get"),
        Some("i128".into())
    );
    assert_eq!(
        Key::from_value(&u64::MAX).expect("key"),
        Key::Int(u64::MAX.into())
    );
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Owner {
    name: String,
    uid: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    File,
    Dir { depth: u8 },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct PathKey {
    owner: Owner,
    parts: Vec<String>,
    kind: Kind,
    version: Option<u64>,
    weight: f64,
}

fn path_key() -> PathKey {
    PathKey {
        owner: Owner {
            name: "ann".into(),
            uid: 1000,
        },
        parts: vec!["usr".into(), "lib".into()],
        kind: Kind::Dir { depth: 2 },
        version: Some(3),
        weight: 0.25,
    }
}

#[test]
fn tuple_and_struct_keys_round_trip_when_rebuilt_equal() {
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .set((1, "a", String::from("b")), vec![1.5, 2.5])
        .expect("set tuple key");
    cache.set(path_key(), "nested").expect("set struct key");
    cache.set(("part0", "part1"), "pair").expect("set pair key");

    // Keys built separately, from owned data.
    let tuple = (1i64, String::from("a"), "b");
    assert_eq!(
        cache.get::<Vec<f64>>(&tuple).expect("get"),
        Some(vec![1.5, 2.5])
    );
    assert_eq!(
        cache.get::<String>(path_key()).expect("get"),
        Some("nested".into())
    );
    let pair = (String::from("part0"), String::from("part1"));
    assert_eq!(
        cache.get::<String>(&pair).expect("get"),
        Some("pair".into())
    );

    // A struct differing in one nested field is another key.
    let mut other = path_key();
    other.kind = Kind::File;
    assert!(!cache.contains(&other).expect("contains"));
    assert_eq!(cache.len().expect("len"), 3);
}

#[test]
fn key_built_with_key_from_value_addresses_the_same_entry() {
    // Issue #54 / test_key_roundtrip: a key obtained from the cache's own representation must
    // find its entry again (python's unpickled keys sometimes did not).
    let dir = tmp();
    let cache = open(dir.path());
    let value: BTreeMap<String, Vec<String>> =
        [("example0".to_string(), vec!["value0".to_string()])].into();
    cache.set(("part0", "part1"), &value).expect("set");
    let k = Key::from_value(&("part0", "part1")).expect("key");
    assert_eq!(
        cache.get::<BTreeMap<String, Vec<String>>>(&k).expect("get"),
        Some(value.clone())
    );
    let back: (String, String) = k.deserialize().expect("deserialize the key");
    assert_eq!(
        cache
            .get::<BTreeMap<String, Vec<String>>>(&back)
            .expect("get"),
        Some(value)
    );

    // A tag handed back by get_entry works as a key too.
    cache
        .set_with("tagged", 1, &SetOptions::new().tag(path_key()))
        .expect("set");
    let tag = cache
        .get_entry::<i64>("tagged")
        .expect("get_entry")
        .expect("present")
        .tag
        .expect("a tag");
    cache.set(&tag, "by tag").expect("set by tag");
    assert_eq!(
        cache.get::<String>(path_key()).expect("get"),
        Some("by tag".into())
    );
}

#[test]
fn hash_map_key_built_in_different_insertion_orders_is_one_key() {
    let dir = tmp();
    let cache = open(dir.path());
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    for i in 0..64 {
        a.insert(format!("k{i}"), i);
    }
    for i in (0..64).rev() {
        b.insert(format!("k{i}"), i);
    }
    cache.set(&a, "map").expect("set");
    assert_eq!(cache.get::<String>(&b).expect("get"), Some("map".into()));
    let ordered: BTreeMap<String, i32> = b.clone().into_iter().collect();
    assert_eq!(
        cache.get::<String>(&ordered).expect("get"),
        Some("map".into())
    );
    cache.set(&b, "again").expect("set");
    assert_eq!(cache.len().expect("len"), 1);
}

// ---------------------------------------------------------------------------------------------
// 13. transact (section 1.7, tutorial "Transactions")
// ---------------------------------------------------------------------------------------------

#[test]
fn transact_follows_the_tutorial_running_average() {
    // Tutorial: incr('total', 123.45) and incr('count') in one transaction. Rust's incr is
    // integer-only (documented), so the float total is read and written inside the txn.
    let dir = tmp();
    let cache = open(dir.path());
    let (total, count) = cache
        .transact(|| {
            let total = cache.get::<f64>("total")?.unwrap_or(0.0) + 123.45;
            cache.set("total", total)?;
            let count = cache.incr("count", 1)?;
            Ok((total, count))
        })
        .expect("transact");
    assert_eq!((total, count), (123.45, 1));

    let (total, count) = cache
        .transact(|| Ok((cache.get::<f64>("total")?, cache.get::<i64>("count")?)))
        .expect("transact");
    let average = total.expect("total") / count.expect("count") as f64;
    assert_eq!(average, 123.45);
}

#[test]
fn transact_commits_all_writes_of_an_ok_closure() {
    // Tutorial: set_many inside one transaction.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("doomed", 0).expect("set");
    let n = cache
        .transact(|| {
            for i in 0..100 {
                cache.set(i, i * 2)?;
            }
            cache.delete("doomed")?;
            cache.set("big", vec![9u8; 2 * MIN_FILE_SIZE])?;
            Ok(100)
        })
        .expect("transact");
    assert_eq!(n, 100);
    assert_eq!(cache.len().expect("len"), 101);
    for i in 0..100 {
        assert_eq!(cache.get::<i64>(i).expect("get"), Some(i * 2));
    }
    assert!(!cache.contains("doomed").expect("contains"));
    assert_eq!(
        cache.get::<Vec<u8>>("big").expect("get"),
        Some(vec![9u8; 2 * MIN_FILE_SIZE])
    );
    // Another handle sees the committed writes.
    let other = open(dir.path());
    assert_eq!(other.get::<i64>(99).expect("get"), Some(198));
}

#[test]
fn transact_err_rolls_back_every_write() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("kept", "before").expect("set");
    cache.set("doomed", 1).expect("set");
    cache.set("counter", 10).expect("set");
    let r: Result<(), Error> = cache.transact(|| {
        cache.set("kept", "during")?;
        cache.set("new", 1)?;
        assert!(cache.delete("doomed")?);
        cache.incr("counter", 5)?;
        cache.set("big", vec![3u8; 2 * MIN_FILE_SIZE])?;
        assert!(cache.add("added", 1)?);
        Err(abort())
    });
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(
        cache.get::<String>("kept").expect("get"),
        Some("before".into())
    );
    assert_eq!(cache.get::<i64>("doomed").expect("get"), Some(1));
    assert_eq!(cache.get::<i64>("counter").expect("get"), Some(10));
    assert!(!cache.contains("new").expect("contains"));
    assert!(!cache.contains("big").expect("contains"));
    assert!(!cache.contains("added").expect("contains"));
    assert_eq!(cache.len().expect("len"), 3);
    // Unlike python (quirk 9, the new value file leaks), a rolled-back file is removed.
    assert!(value_files(dir.path()).is_empty());
}

#[test]
fn an_error_returned_by_an_operation_inside_transact_rolls_back_when_propagated() {
    let dir = tmp();
    let cache = open(dir.path());
    let r = cache.transact(|| {
        cache.set("a", 1)?;
        cache.incr_with("missing", 1, None)?; // KeyNotFound, propagated by `?`
        cache.set("b", 2)?;
        Ok(())
    });
    assert!(matches!(r, Err(Error::KeyNotFound)), "{r:?}");
    assert!(!cache.contains("a").expect("contains"));
    assert!(!cache.contains("b").expect("contains"));
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn nested_transact_joins_the_outer_one() {
    let dir = tmp();
    let cache = open(dir.path());

    // An inner Ok does not commit on its own: the outer Err rolls it back too.
    let r: Result<(), Error> = cache.transact(|| {
        cache.set("outer", 1)?;
        cache.transact(|| cache.set("inner", 2))?;
        assert_eq!(cache.get::<i64>("inner")?, Some(2));
        Err(abort())
    });
    assert!(r.is_err());
    assert!(!cache.contains("outer").expect("contains"));
    assert!(!cache.contains("inner").expect("contains"));

    // An inner Err handled by the outer closure does not roll anything back on its own:
    // the inner transaction is the outer one (python: only the level that began, rolls back).
    cache
        .transact(|| {
            cache.set("outer", 1)?;
            let inner: Result<(), Error> = cache.transact(|| {
                cache.set("inner", 2)?;
                Err(abort())
            });
            assert!(inner.is_err());
            Ok(())
        })
        .expect("outer transact");
    assert_eq!(cache.get::<i64>("outer").expect("get"), Some(1));
    assert_eq!(cache.get::<i64>("inner").expect("get"), Some(2));

    // Both levels Ok: everything commits.
    cache
        .transact(|| {
            cache.set("x", 1)?;
            cache.transact(|| cache.transact(|| cache.set("y", 2)))
        })
        .expect("nested transact");
    assert_eq!(cache.get::<i64>("y").expect("get"), Some(2));
    assert_eq!(cache.len().expect("len"), 4);
}

#[test]
fn reads_inside_transact_see_its_own_writes() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("existing", 1).expect("set");
    cache
        .transact(|| {
            cache.set("k", "v")?;
            assert_eq!(cache.get::<String>("k")?, Some("v".into()));
            assert!(cache.contains("k")?);
            assert_eq!(cache.len()?, 2);
            let e = cache.get_entry::<String>("k")?.expect("visible");
            assert_eq!(e.value, "v");
            assert!(cache.delete("existing")?);
            assert!(!cache.contains("existing")?);
            assert_eq!(cache.len()?, 1);
            assert_eq!(cache.incr("n", 1)?, 1);
            assert_eq!(cache.incr("n", 1)?, 2);
            assert!(!cache.add("k", "other")?);
            cache.set("big", vec![5u8; 2 * MIN_FILE_SIZE])?;
            let r = cache.read("big")?.expect("visible");
            assert_eq!(read_all(r), vec![5u8; 2 * MIN_FILE_SIZE]);
            assert_eq!(cache.pop::<i64>("n")?, Some(2));
            Ok(())
        })
        .expect("transact");
    assert_eq!(cache.len().expect("len"), 2);
}

#[test]
fn other_threads_do_not_see_uncommitted_transaction_writes() {
    let dir = tmp();
    let cache = open(dir.path());
    let other = open(dir.path());
    cache.set("k", "old").expect("set");

    type Seen = (Option<String>, bool, u64, Option<String>, Option<String>);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel::<Seen>();
    std::thread::scope(|s| {
        let shared = cache.clone();
        let other = other.clone();
        s.spawn(move || {
            go_rx.recv().expect("wait for the transaction's writes");
            let seen = (
                shared.get::<String>("k").expect("get"),
                shared.contains("new").expect("contains"),
                shared.len().expect("len"),
                other.get::<String>("k").expect("get"),
                other.get::<String>("new").expect("get"),
            );
            seen_tx.send(seen).expect("report what was seen");
        });
        cache
            .transact(|| {
                cache.set("k", "new")?;
                cache.set("new", "value")?;
                go_tx.send(()).expect("wake the reader");
                // Readers are never blocked by the transaction.
                let seen = seen_rx.recv().expect("the reader's report");
                assert_eq!(
                    seen,
                    (Some("old".into()), false, 1, Some("old".into()), None)
                );
                Ok(())
            })
            .expect("transact");
    });
    assert_eq!(cache.get::<String>("k").expect("get"), Some("new".into()));
    assert_eq!(other.get::<String>("k").expect("get"), Some("new".into()));
    assert_eq!(
        other.get::<String>("new").expect("get"),
        Some("value".into())
    );
}

#[test]
fn other_writers_wait_for_a_transaction_and_time_out() {
    // python: "While the cache is locked, no other write operation is permitted"; a writer
    // that cannot get the lock within its timeout gets Timeout.
    let dir = tmp();
    let cache = open(dir.path());
    let impatient = Cache::builder()
        .timeout(Duration::from_millis(20))
        .open(dir.path())
        .expect("open a second handle");
    cache
        .transact(|| {
            cache.set("mine", 1)?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    let err = impatient.set("theirs", 2).expect_err("the lock is held");
                    assert!(matches!(err, Error::Timeout { removed: 0 }), "{err:?}");
                    assert!(err.is_timeout());
                    // Reads still work.
                    assert_eq!(impatient.get::<i64>("mine").expect("get"), None);
                })
                .join()
                .expect("the writer thread");
            });
            Ok(())
        })
        .expect("transact");
    assert!(!cache.contains("theirs").expect("contains"));
    impatient.set("theirs", 2).expect("set after the commit");
    assert_eq!(cache.get::<i64>("theirs").expect("get"), Some(2));
}

#[test]
fn panic_inside_transact_rolls_back_and_the_cache_stays_usable() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("before", 1).expect("set");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.transact(|| -> Result<(), Error> {
            cache.set("during", 2)?;
            cache.delete("before")?;
            panic!("boom inside transact");
        })
    }));
    assert!(r.is_err(), "the panic propagates");
    assert_eq!(cache.get::<i64>("before").expect("get"), Some(1));
    assert!(!cache.contains("during").expect("contains"));
    assert_eq!(cache.len().expect("len"), 1);

    // The writer lock was released: this handle and others can write again.
    cache.set("after", 3).expect("set after the panic");
    cache
        .transact(|| cache.set("txn", 4))
        .expect("transact after the panic");
    let other = Cache::builder()
        .timeout(Duration::from_secs(5))
        .open(dir.path())
        .expect("open");
    other.set("other", 5).expect("another handle writes");
    assert_eq!(cache.len().expect("len"), 4);
}

// ---------------------------------------------------------------------------------------------
// 14. Threads (test_thread_safe, test_multiple_threads, test_add_concurrent,
//     test_incr_concurrent)
// ---------------------------------------------------------------------------------------------

#[test]
fn threads_sharing_one_handle_store_every_value() {
    let dir = tmp();
    let cache = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..10u64 {
            let cache = cache.clone();
            s.spawn(move || {
                let mut keys: Vec<u64> = (0..100).collect();
                fastrand::Rng::with_seed(t).shuffle(&mut keys);
                for k in keys {
                    cache.set(k, k).expect("set");
                }
            });
        }
    });
    for k in 0..100u64 {
        assert_eq!(cache.get::<u64>(k).expect("get"), Some(k));
    }
    assert_eq!(cache.len().expect("len"), 100);
}

#[test]
fn threads_with_their_own_handles_on_one_directory_agree() {
    let dir = tmp();
    open(dir.path()); // create it first; python's fixture does too
    std::thread::scope(|s| {
        for t in 0..10u64 {
            let path = dir.path();
            s.spawn(move || {
                let cache = open(path);
                let mut keys: Vec<u64> = (0..100).collect();
                fastrand::Rng::with_seed(100 + t).shuffle(&mut keys);
                for k in keys {
                    cache.set(k, k).expect("set");
                    assert_eq!(cache.get::<u64>(k).expect("get"), Some(k));
                }
            });
        }
    });
    let cache = open(dir.path());
    for k in 0..100u64 {
        assert_eq!(cache.get::<u64>(k).expect("get"), Some(k));
    }
    assert_eq!(cache.len().expect("len"), 100);
}

#[test]
fn concurrent_adds_of_each_key_succeed_exactly_once() {
    // test_add_concurrent: 16 threads x 1000 keys; exactly 1000 adds succeed. Half the
    // threads share one handle, the others have their own.
    let dir = tmp();
    let shared = open(dir.path());
    let wins = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..16 {
            let shared = shared.clone();
            let wins = &wins;
            let path = dir.path();
            s.spawn(move || {
                let cache = if t % 2 == 0 { shared } else { open(path) };
                for k in 0..1000u32 {
                    if cache.add(k, t).expect("add") {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::Relaxed), 1000);
    assert_eq!(shared.len().expect("len"), 1000);
}

#[test]
fn concurrent_increments_are_never_lost() {
    // test_incr_concurrent: 16 threads x 50 increments == 800.
    let dir = tmp();
    let shared = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..16 {
            let shared = shared.clone();
            let path = dir.path();
            s.spawn(move || {
                let cache = if t % 2 == 0 { shared } else { open(path) };
                for _ in 0..50 {
                    cache.incr("counter", 1).expect("incr");
                }
            });
        }
    });
    assert_eq!(shared.get::<i64>("counter").expect("get"), Some(800));
}

// ---------------------------------------------------------------------------------------------
// 15. Codecs (test_custom_disk / JSONDisk round trip)
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    owner: Option<Owner>,
    kind: Kind,
    attrs: BTreeMap<String, i32>,
    flag: bool,
}

fn record(id: u64, n: usize) -> Record {
    Record {
        id,
        name: format!("record-{id}"),
        scores: (0..n).map(|i| i as f64 / 4.0).collect(),
        owner: Some(Owner {
            name: "bob".into(),
            uid: 7,
        }),
        kind: Kind::Dir { depth: 3 },
        attrs: [("a".to_string(), 1), ("b".to_string(), -2)].into(),
        flag: true,
    }
}

#[test]
fn struct_values_round_trip_with_the_default_codec() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.codec().name(), Bincode.name());
    let small = record(1, 3);
    let large = record(2, 20_000); // file-backed once encoded
    cache.set("small", &small).expect("set");
    cache.set("large", &large).expect("set");
    assert_eq!(cache.get::<Record>("small").expect("get"), Some(small));
    assert_eq!(cache.get::<Record>("large").expect("get"), Some(large));
    assert!(cache
        .read("large")
        .expect("read")
        .expect("present")
        .path()
        .is_some());
    drop(cache);
    let reopened = open(dir.path());
    assert_eq!(
        reopened.get::<Record>("small").expect("get"),
        Some(record(1, 3))
    );
}

#[test]
fn struct_values_round_trip_with_the_json_codec() {
    let dir = tmp();
    let cache = Cache::builder()
        .codec(Json)
        .open(dir.path())
        .expect("open with Json");
    assert_eq!(cache.codec().name(), Json.name());
    let small = record(1, 3);
    let large = record(2, 20_000);
    cache.set("small", &small).expect("set");
    cache.set("large", &large).expect("set");
    cache.set("native", "still a string").expect("set");
    assert_eq!(cache.get::<Record>("small").expect("get"), Some(small));
    assert_eq!(cache.get::<Record>("large").expect("get"), Some(large));
    assert_eq!(
        cache.get::<String>("native").expect("get"),
        Some("still a string".into())
    );
    // Values are JSON text on disk, readable by other tools.
    let Some(Value::Encoded(bytes)) = cache.get_value("small").expect("get_value") else {
        panic!("a struct is codec-encoded");
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(json["name"], "record-1");
    assert_eq!(json["attrs"]["b"], -2);
    drop(cache);
    let reopened = Cache::builder()
        .codec(Json)
        .open(dir.path())
        .expect("reopen with Json");
    assert_eq!(
        reopened.get::<Record>("small").expect("get"),
        Some(record(1, 3))
    );
}

#[test]
fn json_codec_rejects_values_json_cannot_hold() {
    // Documented on `Json`: maps with non-string keys fail to encode.
    let dir = tmp();
    let cache = Cache::builder().codec(Json).open(dir.path()).expect("open");
    let map: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let err = cache.set("k", &map).expect_err("not representable in JSON");
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn reopening_with_another_codec_is_a_codec_mismatch() {
    let dir = tmp();
    open(dir.path()).set("k", record(1, 1)).expect("set");
    match Cache::builder().codec(Json).open(dir.path()) {
        Err(Error::CodecMismatch { stored, requested }) => {
            assert_eq!(stored, Bincode.name());
            assert_eq!(requested, Json.name());
        }
        other => panic!("expected CodecMismatch, got {other:?}"),
    }
    // The bincode cache is untouched.
    assert_eq!(
        open(dir.path()).get::<Record>("k").expect("get"),
        Some(record(1, 1))
    );

    let json_dir = tmp();
    Cache::builder()
        .codec(Json)
        .open(json_dir.path())
        .expect("create a Json cache");
    match Cache::open(json_dir.path()) {
        Err(Error::CodecMismatch { stored, requested }) => {
            assert_eq!(stored, Json.name());
            assert_eq!(requested, Bincode.name());
        }
        other => panic!("expected CodecMismatch, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 16. Settings persist (section 1.2, tutorial "Settings" and "Eviction Policies")
// ---------------------------------------------------------------------------------------------

#[test]
fn settings_given_at_open_persist_and_later_overrides_win() {
    let dir = tmp();
    let x = 4_000_000_000u64; // tutorial: Cache(size_limit=int(4e9))
    let cache = Cache::builder()
        .size_limit(x)
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    assert_eq!(cache.size_limit().expect("size_limit"), x);
    assert_eq!(cache.cull_limit().expect("cull_limit"), 0);
    // Tutorial: disk_min_file_size stays at its default; set(b'key', 1.234); len 1.
    assert_eq!(
        cache.min_file_size().expect("min_file_size"),
        MIN_FILE_SIZE as u64
    );
    cache.set(b"key", 1.234).expect("set");
    assert_eq!(cache.len().expect("len"), 1);
    drop(cache);

    let cache = open(dir.path());
    assert_eq!(cache.size_limit().expect("size_limit"), x);
    assert_eq!(cache.cull_limit().expect("cull_limit"), 0);
    drop(cache);

    let cache = Cache::builder()
        .cull_limit(5)
        .open(dir.path())
        .expect("open");
    assert_eq!(cache.cull_limit().expect("cull_limit"), 5);
    assert_eq!(cache.size_limit().expect("size_limit"), x);
    drop(cache);

    let cache = open(dir.path());
    assert_eq!(cache.cull_limit().expect("cull_limit"), 5);
    assert_eq!(cache.size_limit().expect("size_limit"), x);
    assert_eq!(cache.get::<f64>(b"key").expect("get"), Some(1.234));
}

#[test]
fn eviction_policy_statistics_tag_index_and_min_file_size_persist() {
    let dir = tmp();
    Cache::builder()
        .eviction_policy(EvictionPolicy::LeastFrequentlyUsed)
        .statistics(true)
        .tag_index(true)
        .min_file_size(1000)
        .open(dir.path())
        .expect("open");
    let cache = open(dir.path());
    assert_eq!(
        cache.eviction_policy().expect("policy"),
        EvictionPolicy::LeastFrequentlyUsed
    );
    assert!(cache.statistics_enabled().expect("statistics"));
    assert!(cache.tag_index_enabled().expect("tag_index"));
    assert_eq!(cache.min_file_size().expect("min_file_size"), 1000);
    drop(cache);

    // Tutorial: the policy given at open replaces the stored one.
    let cache = Cache::builder()
        .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
        .open(dir.path())
        .expect("open");
    assert_eq!(
        cache.eviction_policy().expect("policy").to_string(),
        "least-recently-used"
    );
}

#[test]
fn settings_changed_by_one_handle_are_seen_by_another_open_handle() {
    // Documented improvement over python (settings.rs: "a change made by one process is seen
    // by every other at its next operation"; python needs reset(key)).
    let dir = tmp();
    let first = open(dir.path());
    assert_eq!(first.cull_limit().expect("cull_limit"), 10);
    let _second = Cache::builder()
        .cull_limit(3)
        .size_limit(12345)
        .open(dir.path())
        .expect("open");
    assert_eq!(first.cull_limit().expect("cull_limit"), 3);
    assert_eq!(first.size_limit().expect("size_limit"), 12345);
}

#[test]
fn min_file_size_above_four_mib_is_an_invalid_argument() {
    // Documented on `CacheBuilder::min_file_size`: at most 4 MiB.
    let dir = tmp();
    let r = Cache::builder()
        .min_file_size((4 << 20) + 1)
        .open(dir.path());
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let ok = Cache::builder()
        .min_file_size(4 << 20)
        .open(dir.path())
        .expect("4 MiB is allowed");
    assert_eq!(ok.min_file_size().expect("min_file_size"), 4 << 20);
}

// ---------------------------------------------------------------------------------------------
// 17. Lazy expiry and cull_limit (test_expire_rows, section 1.8)
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_cull_limit_keeps_expired_items_until_a_write_may_cull_again() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    for k in 0..10 {
        cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set expired");
    }
    for k in 10..15 {
        cache.set(k, k).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 15);
    drop(cache);

    let cache = Cache::builder()
        .cull_limit(10)
        .open(dir.path())
        .expect("reopen");
    cache.set(15, 15).expect("set");
    // The write removed the 10 expired items (up to cull_limit), and nothing else.
    assert_eq!(cache.len().expect("len"), 6);
    for k in 10..16 {
        assert_eq!(cache.get::<i64>(k).expect("get"), Some(k));
    }
}

#[test]
fn each_write_removes_at_most_cull_limit_expired_items() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    for k in 0..25 {
        cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set expired");
    }
    drop(cache);
    let cache = Cache::builder()
        .cull_limit(10)
        .open(dir.path())
        .expect("reopen");
    cache.set("a", 1).expect("set");
    assert_eq!(cache.len().expect("len"), 16); // 25 - 10 + 1
    assert!(cache.add("b", 1).expect("add"));
    assert_eq!(cache.len().expect("len"), 7); // 15 - 10 + 2
    cache.incr("c", 1).expect("incr of a new key");
    assert_eq!(cache.len().expect("len"), 3); // 5 - 5 + 3
}

#[test]
fn reads_touch_delete_and_pop_never_cull() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    for k in 0..5 {
        cache
            .set_with(k, k, &SetOptions::new().expire(Duration::ZERO))
            .expect("set expired");
    }
    cache.set("live", 1).expect("set");
    cache.set("other", 2).expect("set");
    drop(cache);
    let cache = open(dir.path());
    assert_eq!(cache.cull_limit().expect("cull_limit"), 0, "persisted");
    drop(cache);
    let cache = Cache::builder()
        .cull_limit(10)
        .open(dir.path())
        .expect("reopen");
    cache.get::<i64>("live").expect("get");
    cache.contains("live").expect("contains");
    assert!(cache.touch("live", None).expect("touch"));
    assert!(cache.delete("other").expect("delete"));
    assert_eq!(cache.pop::<i64>("live").expect("pop"), Some(1));
    assert_eq!(cache.len().expect("len"), 5, "the expired items remain");
}

// ---------------------------------------------------------------------------------------------
// Size limit and eviction policies (test_least_recently_stored / _used / _frequently_used,
// test_size_limit_with_files, issue #105)
// ---------------------------------------------------------------------------------------------

/// Value size for the eviction tests: big enough that index and log overhead are noise.
const CHUNK: usize = 500_000;

/// Opens a cache that holds about ten `CHUNK`s (python: ten 1 MB values, limit 10.1 MB).
fn eviction_cache(dir: &Path, policy: EvictionPolicy, cull_limit: u64) -> Cache {
    Cache::builder()
        .eviction_policy(policy)
        .size_limit(10 * CHUNK as u64 + CHUNK as u64 / 2)
        .cull_limit(cull_limit)
        .open(dir)
        .expect("open")
}

fn present(cache: &Cache, keys: impl IntoIterator<Item = u32>) -> Vec<u32> {
    keys.into_iter()
        .filter(|k| cache.contains(k).expect("contains"))
        .collect()
}

#[test]
fn least_recently_stored_evicts_the_oldest_stored_items() {
    let dir = tmp();
    let cache = eviction_cache(dir.path(), EvictionPolicy::LeastRecentlyStored, 2);
    let chunk = vec![b'x'; CHUNK];
    for k in 0..10u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 10);
    // Reads do not matter under this policy.
    for k in 0..10u32 {
        assert_eq!(
            cache.get::<Vec<u8>>(k).expect("get").map(|v| v.len()),
            Some(CHUNK)
        );
    }
    for k in 10..20u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(present(&cache, 0..20), (10..20).collect::<Vec<_>>());
    assert_eq!(cache.len().expect("len"), 10);
}

#[test]
fn least_recently_used_evicts_the_items_read_longest_ago() {
    // test_least_recently_used: cull_limit 5; 0, 1, 7, 8 and 9 are read, then 10 is stored.
    let dir = tmp();
    let cache = eviction_cache(dir.path(), EvictionPolicy::LeastRecentlyUsed, 5);
    let chunk = vec![b'x'; CHUNK];
    for k in 0..10u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 10);
    for k in [0u32, 1, 7, 8, 9] {
        assert!(cache.get::<Vec<u8>>(k).expect("get").is_some());
    }
    cache.set(10u32, &chunk).expect("set");
    assert_eq!(cache.len().expect("len"), 6);
    assert_eq!(present(&cache, 0..11), vec![0, 1, 7, 8, 9, 10]);
}

#[test]
fn least_frequently_used_evicts_the_items_read_least_often() {
    // test_least_frequently_used: cull_limit 5; 0 read 5 times, 1 four, 7 three, 8 two,
    // 9 once; then 10 is stored with a count of 0, but the older unread 2..=6 go first.
    let dir = tmp();
    let cache = eviction_cache(dir.path(), EvictionPolicy::LeastFrequentlyUsed, 5);
    let chunk = vec![b'x'; CHUNK];
    for k in 0..10u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 10);
    for (k, reads) in [(0u32, 5), (1, 4), (7, 3), (8, 2), (9, 1)] {
        for _ in 0..reads {
            assert!(cache.get::<Vec<u8>>(k).expect("get").is_some());
        }
    }
    cache.set(10u32, &chunk).expect("set");
    assert_eq!(cache.len().expect("len"), 6);
    assert_eq!(present(&cache, 0..11), vec![0, 1, 7, 8, 9, 10]);
}

#[test]
fn least_frequently_used_can_cull_a_just_stored_item() {
    // As in python (the row just written can itself be culled, issue #105): when every
    // older item has been read, the new item's count of 0 is the lowest.
    let dir = tmp();
    let cache = eviction_cache(dir.path(), EvictionPolicy::LeastFrequentlyUsed, 2);
    let chunk = vec![b'x'; CHUNK];
    for k in 0..10u32 {
        cache.set(k, &chunk).expect("set");
    }
    for k in 0..10u32 {
        // Key k is read k times, except 0 and 1, which are read most.
        let reads = if k < 2 { 20 } else { k };
        for _ in 0..reads {
            assert!(cache.get::<Vec<u8>>(k).expect("get").is_some());
        }
    }
    cache.set(10u32, &chunk).expect("set");
    // Victims: 10 (count 0) and 2 (count 2).
    assert_eq!(present(&cache, 0..11), vec![0, 1, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn none_policy_never_evicts_for_size_but_still_removes_expired_items() {
    let dir = tmp();
    let cache = eviction_cache(dir.path(), EvictionPolicy::None, 2);
    let chunk = vec![b'x'; CHUNK];
    cache
        .set_with("expired", 0, &SetOptions::new().expire(Duration::ZERO))
        .expect("set");
    for k in 0..15u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(present(&cache, 0..15).len(), 15);
    assert_eq!(cache.len().expect("len"), 15, "the expired item was culled");
    assert!(cache.volume().expect("volume") > cache.size_limit().expect("size_limit"));
}

#[test]
fn zero_cull_limit_also_disables_size_eviction() {
    let dir = tmp();
    let cache = Cache::builder()
        .size_limit(3 * CHUNK as u64)
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    let chunk = vec![b'x'; CHUNK];
    for k in 0..10u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 10);
    assert!(cache.volume().expect("volume") > 3 * CHUNK as u64);
}

#[test]
fn automatic_culling_keeps_volume_near_the_size_limit() {
    // test_size_limit_with_files, with automatic culling instead of cull(): ten values fit;
    // the write of the eleventh finds the volume over the limit and culls the ten oldest
    // (cull_limit 10), so the cache refills from one item again.
    let dir = tmp();
    let limit = 10 * CHUNK as u64 + CHUNK as u64 / 2;
    let cache = Cache::builder()
        .size_limit(limit)
        .open(dir.path())
        .expect("open");
    let chunk = vec![b'x'; CHUNK];
    for k in 0..40u32 {
        cache.set(k, &chunk).expect("set");
        // Soft limit: it is checked after each write, so only by one value can it be passed.
        assert!(cache.volume().expect("volume") < limit + CHUNK as u64);
    }
    assert_eq!(present(&cache, 0..40), (30..40).collect::<Vec<_>>());
    assert_eq!(cache.len().expect("len"), 10);
}

#[test]
fn a_write_culls_up_to_cull_limit_items_including_the_one_it_stored() {
    // python: `cull_limit` rows per write, chosen by policy, and the row just written can be
    // one of them. Ten values over the limit with cull_limit 10: all go.
    let dir = tmp();
    let cache = Cache::builder()
        .size_limit(10 * CHUNK as u64)
        .open(dir.path())
        .expect("open");
    let chunk = vec![b'x'; CHUNK];
    for k in 0..9u32 {
        cache.set(k, &chunk).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 9);
    cache.set(9u32, &chunk).expect("set");
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn item_larger_than_the_size_limit_is_culled_at_once() {
    // Issue #105: "Items that are larger than the size limit are immediately culled."
    let dir = tmp();
    let cache = Cache::builder()
        .size_limit(100_000)
        .open(dir.path())
        .expect("open");
    cache.set("huge", vec![0u8; 200_000]).expect("set");
    assert!(!cache.contains("huge").expect("contains"));
    assert_eq!(cache.len().expect("len"), 0);
}

// ---------------------------------------------------------------------------------------------
// 18. Sync levels
// ---------------------------------------------------------------------------------------------

fn sync_round_trip(level: SyncLevel) {
    let dir = tmp();
    let open_at = |path: &Path| {
        Cache::builder()
            .sync(level)
            .open(path)
            .expect("open with a sync level")
    };
    let cache = open_at(dir.path());
    let big = vec![4u8; 3 * MIN_FILE_SIZE];
    cache.set("small", "value").expect("set");
    cache.set("big", &big).expect("set");
    cache.set_reader("raw", &b"abcd"[..]).expect("set_reader");
    cache
        .set_with("tagged", 7, &SetOptions::new().tag("t").expire(DAY))
        .expect("set_with");
    assert_eq!(
        cache.get::<String>("small").expect("get"),
        Some("value".into())
    );
    cache.close().expect("close");

    let cache = open_at(dir.path());
    assert_eq!(
        cache.get::<String>("small").expect("get"),
        Some("value".into())
    );
    assert_eq!(cache.get::<Vec<u8>>("big").expect("get"), Some(big));
    assert_eq!(
        cache.get::<Vec<u8>>("raw").expect("get"),
        Some(b"abcd".to_vec())
    );
    let e = cache
        .get_entry::<i64>("tagged")
        .expect("get_entry")
        .expect("present");
    assert_eq!((e.value, e.tag), (7, Some(Key::Str("t".into()))));
    assert_eq!(cache.len().expect("len"), 4);
    drop(cache);

    // The sync level belongs to the handle: another level reads the same data.
    let cache = open(dir.path());
    assert_eq!(cache.len().expect("len"), 4);
}

#[test]
fn full_sync_cache_round_trips_across_reopen() {
    sync_round_trip(SyncLevel::Full);
}

#[test]
fn off_sync_cache_round_trips_across_reopen() {
    sync_round_trip(SyncLevel::Off);
}

#[test]
fn normal_sync_cache_round_trips_across_reopen() {
    sync_round_trip(SyncLevel::Normal);
}

#[test]
fn deleted_value_file_is_removed_by_the_next_checkpoint() {
    let dir = tmp();
    let cache = open_small_checkpoints(dir.path(), SyncLevel::Off);
    cache.set("k", vec![1u8; 2 * MIN_FILE_SIZE]).expect("set");
    assert_eq!(value_files(dir.path()).len(), 1);
    assert!(cache.delete("k").expect("delete"));
    force_checkpoint(&cache);
    assert!(value_files(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 19. volume
// ---------------------------------------------------------------------------------------------

#[test]
fn volume_grows_with_a_file_backed_value_and_shrinks_after_delete() {
    let dir = tmp();
    let cache = open(dir.path());
    let size = 1u64 << 20;
    let empty = cache.volume().expect("volume");
    cache.set("big", vec![0u8; size as usize]).expect("set");
    let full = cache.volume().expect("volume");
    assert!(full >= empty + size, "{empty} -> {full}");
    assert!(cache.delete("big").expect("delete"));
    let after = cache.volume().expect("volume");
    // Documented: volume counts the log since the last checkpoint, so the delete's own log
    // record (a few hundred bytes) is added while the value's bytes are subtracted.
    assert!(after + size <= full + 4096, "{full} -> {after}");
    assert!(after < empty + 4096, "{empty} -> {after}");
}

#[test]
fn a_timeout_of_duration_max_waits_for_the_writer_lock_as_long_as_it_takes() {
    // python-diskcache's `retry=True`: the write waits instead of failing.
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = Cache::open(dir.path()).expect("open");
    let waiter = Cache::builder()
        .timeout(std::time::Duration::MAX)
        .open(dir.path())
        .expect("open");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        holder
            .transact(|| {
                locked_tx.send(()).expect("signal");
                release_rx.recv().expect("release");
                holder.set("held", 1)
            })
            .expect("transact");
    });
    locked_rx.recv().expect("holder has the lock");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let w = std::thread::spawn(move || {
        waiter
            .set("waited", 2)
            .expect("set with an unbounded timeout");
        done_tx.send(()).expect("done");
    });
    assert!(
        done_rx.try_recv().is_err(),
        "the waiter cannot have written while the lock is held"
    );
    release_tx.send(()).expect("release");
    done_rx
        .recv()
        .expect("the waiter finishes once the lock is free");
    t.join().expect("holder");
    w.join().expect("waiter");
}

/// Keys (and tags) near the 1 MiB limit fill a branch node with a single entry by size:
/// checkpoints, compaction and the tag index must still build shallow trees (they built
/// single-entry branches level upon level until "tree too deep").
#[test]
fn keys_and_tags_near_the_size_limit_survive_checkpoints_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::builder()
        .tag_index(true)
        .open(dir.path())
        .expect("open");
    let big = |i: u8, c: u8| {
        let mut k = vec![c + i; (1 << 20) - 16];
        k[0] = i;
        k
    };
    for i in 0..12u8 {
        let tag = String::from_utf8(vec![b'x' + i % 3; (1 << 20) - 16]).expect("utf-8");
        cache
            .set_with(
                big(i, b'a'),
                i64::from(i),
                &SetOptions::new().tag(tag.as_str()),
            )
            .expect("set");
    }
    cache.compact().expect("compact");
    for i in 0..12u8 {
        assert_eq!(
            cache.get::<i64>(&big(i, b'a')).expect("get"),
            Some(i64::from(i))
        );
    }
    let removed = cache
        .evict("x".repeat((1 << 20) - 16).as_str())
        .expect("evict");
    assert_eq!(removed, 4);
    assert!(cache.check(false).expect("check").is_empty());
    drop(cache);
    let cache = Cache::open(dir.path()).expect("reopen");
    assert_eq!(cache.len().expect("len"), 8);
}

/// Handles racing to create one new cache: one creates it, the others wait and open it,
/// also those that looked for its meta file before it existed and for its data after the
/// creator had already written some.
#[test]
fn many_handles_opening_a_new_directory_at_once_all_succeed() {
    for round in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let d = dir.path().to_path_buf();
                let b = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    b.wait();
                    let c = Cache::open(&d)
                        .unwrap_or_else(|e| panic!("round {round}, handle {i}: {e}"));
                    c.set(i, i).expect("set");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(
            Cache::open(dir.path()).expect("open").len().expect("len"),
            6
        );
    }
}
