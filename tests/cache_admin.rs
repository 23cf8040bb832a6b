//! Behaviour tests for `Cache`'s removal, iteration, queue, settings, statistics, check and
//! memoize APIs, ported from python-diskcache's `tests/test_core.py` and the doctests of its
//! tutorial (`docs/tutorial.rst`). `tests/cache_core.rs` covers the single-key API.
//!
//! Each test pins one behaviour. Where the Rust library deliberately differs from
//! python-diskcache (and documents it in its rustdoc), the test pins the Rust behaviour and
//! says so.
//!
//! Rules kept throughout: every test has its own `tempfile::tempdir()`, nothing asserts on
//! timing (expiry is exercised with `Duration::ZERO`, minutes or a day, and the clock is only
//! ever waited on, never measured), and concurrency tests synchronise with channels and joins.

mod common;
use common::{force_checkpoint, value_files, wait_past};
use diskcache::{
    Bincode, Cache, Entry, Error, EvictionPolicy, Key, Keys, MemoizeOptions, QueueOptions,
    SetOptions, Side, Warning, WarningKind,
};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::fs::File;
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

const MINUTE: Duration = Duration::from_secs(60);

/// Comfortably above the default `disk_min_file_size` (32 KiB): such values get a file.
const LARGE: usize = 40_000;

/// The first key of an empty queue.
const QUEUE_START: i128 = 500_000_000_000_000;

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn open(dir: &Path) -> Cache {
    Cache::open(dir).expect("open the cache")
}

/// A cache with automatic culling off, so expired items stay until removed explicitly.
fn open_no_cull(dir: &Path) -> Cache {
    Cache::builder()
        .cull_limit(0)
        .open(dir)
        .expect("open the cache with cull_limit 0")
}

fn expire_now() -> SetOptions {
    SetOptions::new().expire(Duration::ZERO)
}

fn collect(keys: Keys<Bincode>) -> Vec<Key> {
    keys.collect::<Result<Vec<_>, _>>()
        .expect("iterate over the keys")
}

fn int(n: i128) -> Key {
    Key::Int(n)
}

fn ints(range: impl IntoIterator<Item = i128>) -> Vec<Key> {
    range.into_iter().map(Key::Int).collect()
}

fn s(x: &str) -> Key {
    Key::Str(x.to_owned())
}

/// A cache that checkpoints after every 4 KiB of log (default sync level), so tests can
/// force the checkpoint that removes obsolete value files.
fn open_small_checkpoints(dir: &Path) -> Cache {
    Cache::builder()
        .checkpoint_bytes(4096)
        .open(dir)
        .expect("open the cache with small checkpoints")
}

/// The path of a file-backed value's file.
fn value_path(cache: &Cache, key: &str) -> PathBuf {
    cache
        .read(key)
        .expect("read")
        .expect("the key is stored")
        .path()
        .expect("the value is file-backed")
        .to_path_buf()
}

fn kinds(warnings: &[Warning]) -> BTreeSet<String> {
    warnings.iter().map(|w| format!("{:?}", w.kind)).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. clear (test_clear, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn clear_returns_the_count_empties_the_cache_and_its_value_files_go_at_the_next_checkpoint() {
    let dir = tmp();
    let cache = open_small_checkpoints(dir.path());
    for n in 0..5u8 {
        cache
            .set(format!("large-{n}"), vec![n; LARGE])
            .expect("set a large value");
        cache
            .set(format!("small-{n}"), n)
            .expect("set a small value");
    }
    assert_eq!(value_files(dir.path()).len(), 5);
    assert_eq!(cache.clear().expect("clear"), 10);
    assert_eq!(cache.len().expect("len"), 0);
    assert!(cache.is_empty().expect("is_empty"));
    assert!(collect(cache.iter()).is_empty());
    assert_eq!(cache.get::<Vec<u8>>("large-0").expect("get"), None);
    // The default sync level removes files no longer referenced at the next checkpoint.
    force_checkpoint(&cache);
    assert!(
        value_files(dir.path()).is_empty(),
        "{:?}",
        value_files(dir.path())
    );
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn clear_of_an_empty_cache_is_zero() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.clear().expect("clear"), 0);
    cache.set("k", 1).expect("set");
    assert_eq!(cache.clear().expect("clear"), 1);
    assert_eq!(cache.clear().expect("clear again"), 0);
}

#[test]
fn clear_of_more_than_one_batch_removes_every_item() {
    // python removes 100 rows per transaction; this removes 1000: 2500 spans three batches.
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .transact(|| {
            for n in 0..2500 {
                cache.set(n, n)?;
            }
            Ok(())
        })
        .expect("fill");
    assert_eq!(cache.len().expect("len"), 2500);
    assert_eq!(cache.clear().expect("clear"), 2500);
    assert_eq!(cache.len().expect("len"), 0);
    assert!(collect(cache.iter()).is_empty());
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn clear_counts_expired_items_too() {
    // len() includes expired items, and clear removes every row whatever its expiry.
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..3 {
        cache.set_with(n, n, &expire_now()).expect("set expired");
        cache.set(n + 10, n).expect("set");
    }
    assert_eq!(cache.clear().expect("clear"), 6);
    assert_eq!(cache.len().expect("len"), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. expire / expire_at (test_expire, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn expire_at_removes_exactly_the_items_that_expired_before_that_time() {
    // python's test_expire mocks time: items 1..=100 expire after `value` seconds, and at
    // now + 11 s, expire() removes the 10 items whose expiry (now+1 .. now+10) lies strictly
    // before. Without a mocked clock each set reads its own "now", so the unit here is a
    // minute and the cut-off lies half a unit between item 10 and item 11 (the 100 sets
    // would have to take 30 s for this to fail).
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    let start = SystemTime::now();
    for i in 1..=100u32 {
        cache
            .set_with(i, i, &SetOptions::new().expire(MINUTE * i))
            .expect("set with expiry");
    }
    assert_eq!(cache.len().expect("len"), 100);
    let cut = start + MINUTE * 10 + MINUTE / 2;
    assert_eq!(cache.expire_at(cut).expect("expire_at"), 10);
    assert_eq!(cache.len().expect("len"), 90);
    for i in 1..=10 {
        assert!(!cache.contains(i).expect("contains"), "{i}");
    }
    for i in 11..=100 {
        assert_eq!(cache.get::<u32>(i).expect("get"), Some(i));
    }
    // Same cut-off again: nothing left to remove.
    assert_eq!(cache.expire_at(cut).expect("expire_at again"), 0);
    // Now: nothing has expired yet.
    assert_eq!(cache.expire().expect("expire"), 0);
    assert_eq!(cache.len().expect("len"), 90);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn expire_removes_only_items_expired_strictly_before_the_given_time() {
    // python: removal needs expire_time < now.
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    cache
        .set_with("k", 1, &SetOptions::new().expire(DAY))
        .expect("set");
    let at = cache
        .get_entry::<i64>("k")
        .expect("get_entry")
        .expect("stored")
        .expire_time
        .expect("has an expiry");
    assert_eq!(
        cache
            .expire_at(at - Duration::from_millis(1))
            .expect("expire_at"),
        0
    );
    assert!(cache.contains("k").expect("contains"));
    assert_eq!(
        cache
            .expire_at(at + Duration::from_millis(1))
            .expect("expire_at"),
        1
    );
    assert!(!cache.contains("k").expect("contains"));
}

#[test]
fn expire_with_nothing_expired_is_zero() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.expire().expect("expire of an empty cache"), 0);
    for n in 0..10 {
        cache
            .set_with(n, n, &SetOptions::new().expire(DAY))
            .expect("set");
    }
    assert_eq!(cache.expire().expect("expire"), 0);
    assert_eq!(cache.len().expect("len"), 10);
}

#[test]
fn expire_never_removes_items_without_an_expiry() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..10 {
        cache.set(n, n).expect("set without expiry");
        cache
            .set_with(n + 100, n, &SetOptions::new().expire(DAY))
            .expect("set with expiry");
    }
    // Far beyond every expiry: all ten expiring items go, the others stay.
    let far = SystemTime::now() + DAY * 1000;
    assert_eq!(cache.expire_at(far).expect("expire_at"), 10);
    assert_eq!(collect(cache.iter()), ints(0..10));
}

#[test]
fn expire_follows_the_tutorial_and_removes_immediately_expired_items() {
    // Tutorial: cull_limit 0; ten items with expire=1e-9; len 10; list(cache) has them all;
    // after a sleep, expire() == 10.
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.reset("cull_limit", 0).expect("reset"), json!(0));
    for n in 0..10 {
        cache.set_with(n, n, &expire_now()).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 10);
    assert_eq!(collect(cache.iter()), ints(0..10));
    wait_past(SystemTime::now());
    assert_eq!(cache.expire().expect("expire"), 10);
    assert_eq!(cache.len().expect("len"), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. evict (test_evict, test_tag, tutorial)
// ---------------------------------------------------------------------------------------------

fn evict_colours(cache: &Cache) {
    let colours = ["red", "blue", "yellow"];
    for n in 0..90usize {
        cache
            .set_with(n, n, &SetOptions::new().tag(colours[n % 3]))
            .expect("set tagged");
    }
    assert_eq!(cache.len().expect("len"), 90);
    assert_eq!(cache.evict("red").expect("evict red"), 30);
    assert_eq!(cache.len().expect("len"), 60);
    for n in 0..90usize {
        assert_eq!(cache.contains(n).expect("contains"), n % 3 != 0, "{n}");
    }
    assert_eq!(cache.evict("red").expect("evict red again"), 0);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn evict_removes_the_items_with_a_tag_without_the_tag_index() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(!cache.tag_index_enabled().expect("tag_index"));
    evict_colours(&cache);
}

#[test]
fn evict_removes_the_items_with_a_tag_with_the_tag_index() {
    let dir = tmp();
    let cache = Cache::builder()
        .tag_index(true)
        .open(dir.path())
        .expect("open");
    assert!(cache.tag_index_enabled().expect("tag_index"));
    evict_colours(&cache);
}

#[test]
fn evict_matches_tags_of_every_type_with_and_without_the_tag_index() {
    for index in [false, true] {
        let dir = tmp();
        let cache = Cache::builder()
            .tag_index(index)
            .open(dir.path())
            .expect("open");
        let tagged = |k: &str, opts: SetOptions| cache.set_with(k, k, &opts).expect("set");
        for i in 0..3 {
            tagged(&format!("int-{i}"), SetOptions::new().tag(1234));
            tagged(&format!("float-{i}"), SetOptions::new().tag(5.67));
            tagged(&format!("bytes-{i}"), SetOptions::new().tag(b"three"));
            tagged(&format!("tuple-{i}"), SetOptions::new().tag(("t", 1)));
            tagged(&format!("str-{i}"), SetOptions::new().tag("three"));
            tagged(&format!("none-{i}"), SetOptions::new());
        }
        // Tags compare as keys: the string "three" is not the byte string b"three", and the
        // integer 1234 is not the string "1234".
        assert_eq!(cache.evict("1234").expect("evict"), 0, "index {index}");
        assert_eq!(cache.evict(1234).expect("evict int"), 3, "index {index}");
        assert_eq!(cache.evict(5.67).expect("evict float"), 3, "index {index}");
        assert_eq!(
            cache.evict(b"three").expect("evict bytes"),
            3,
            "index {index}"
        );
        assert_eq!(
            cache.evict(("t", 1)).expect("evict tuple"),
            3,
            "index {index}"
        );
        assert_eq!(cache.evict(("t", 2)).expect("evict other tuple"), 0);
        assert_eq!(cache.evict("three").expect("evict str"), 3, "index {index}");
        // python: evict(None) removes nothing (tag = NULL is never true); untagged items stay.
        assert_eq!(cache.evict(None::<i32>).expect("evict None"), 0);
        assert_eq!(
            collect(cache.iter()),
            ["none-0", "none-1", "none-2"].map(s),
            "index {index}"
        );
        assert!(cache.check(false).expect("check").is_empty());
    }
}

#[test]
fn evict_treats_an_integer_tag_and_the_equal_float_as_one_tag() {
    // Keys (and so tags) compare numerically: 1 and 1.0 are one key (section 1.5).
    for index in [false, true] {
        let dir = tmp();
        let cache = Cache::builder()
            .tag_index(index)
            .open(dir.path())
            .expect("open");
        cache
            .set_with("a", 1, &SetOptions::new().tag(1))
            .expect("set");
        cache
            .set_with("b", 2, &SetOptions::new().tag(1.0))
            .expect("set");
        assert_eq!(cache.evict(1.0).expect("evict"), 2, "index {index}");
    }
}

#[test]
fn evict_of_an_unknown_tag_is_zero() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.evict("nothing").expect("evict on empty"), 0);
    cache
        .set_with("k", 1, &SetOptions::new().tag("known"))
        .expect("set");
    assert_eq!(cache.evict("unknown").expect("evict"), 0);
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn evict_follows_the_tutorial() {
    // Tutorial: 100 items tagged odd/even; evict('even') == 50; clear() == 50; then tags
    // num % 2 and evict(0) == 50.
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..100 {
        let tag = if n % 2 == 1 { "odd" } else { "even" };
        cache
            .set_with(n, n, &SetOptions::new().tag(tag))
            .expect("set");
    }
    assert_eq!(cache.evict("even").expect("evict even"), 50);
    assert_eq!(cache.clear().expect("clear"), 50);
    for n in 0..100 {
        cache
            .set_with(n, n, &SetOptions::new().tag(n % 2))
            .expect("set");
    }
    assert_eq!(cache.evict(0).expect("evict 0"), 50);
    assert_eq!(collect(cache.iter()), ints((1..100).step_by(2)));
}

#[test]
fn evict_removes_expired_items_with_the_tag_too() {
    // Removal by tag does not look at expiry (python's select has no expiry condition).
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    cache
        .set_with("expired", 1, &expire_now().tag("t"))
        .expect("set");
    cache
        .set_with("live", 2, &SetOptions::new().tag("t"))
        .expect("set");
    assert_eq!(cache.evict("t").expect("evict"), 2);
    assert_eq!(cache.len().expect("len"), 0);
}

// ---------------------------------------------------------------------------------------------
// 4. cull (tutorial, section 1.8)
// ---------------------------------------------------------------------------------------------

#[test]
fn cull_follows_the_tutorial_and_brings_volume_under_the_size_limit() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(
        cache.reset("size_limit", 1_000_000).expect("reset"),
        json!(1_000_000)
    );
    assert_eq!(cache.reset("cull_limit", 0).expect("reset"), json!(0));
    for n in 0..1000 {
        cache.set(n, vec![b'A'; 1000]).expect("set");
    }
    assert!(cache.volume().expect("volume") > 1_000_000);
    let culled = cache.cull().expect("cull");
    assert!(culled > 0);
    assert!(cache.volume().expect("volume") < 1_000_000);
    assert_eq!(cache.len().expect("len"), 1000 - culled);
    // Least-recently-stored: the oldest items went, the newest stayed.
    assert!(!cache.contains(0).expect("contains"));
    assert!(cache.contains(999).expect("contains"));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn cull_removes_expired_items_first_and_counts_them() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..5 {
        cache.set_with(n, n, &expire_now()).expect("set expired");
    }
    for n in 5..10 {
        cache.set(n, n).expect("set");
    }
    wait_past(SystemTime::now());
    // Far under the default 1 GiB limit: only the expired items go.
    assert_eq!(cache.cull().expect("cull"), 5);
    assert_eq!(collect(cache.iter()), ints(5..10));
    assert_eq!(cache.cull().expect("cull again"), 0);
}

#[test]
fn cull_counts_expired_and_evicted_items_together() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .size_limit(50_000)
        .open(dir.path())
        .expect("open");
    for n in 0..3 {
        cache.set_with(n, n, &expire_now()).expect("set expired");
    }
    for n in 3..103 {
        cache.set(n, vec![b'x'; 1000]).expect("set");
    }
    wait_past(SystemTime::now());
    let before = cache.len().expect("len");
    let culled = cache.cull().expect("cull");
    assert!(culled > 3, "{culled}");
    assert_eq!(cache.len().expect("len"), before - culled);
    assert!(cache.volume().expect("volume") <= 50_000);
    for n in 0..3 {
        assert!(!cache.contains(n).expect("contains"));
    }
}

#[test]
fn cull_under_the_none_policy_removes_and_counts_only_expired_items() {
    // Documented on `Cache::cull`: unlike python-diskcache (which returns 0 under 'none'),
    // the count includes the expired items removed.
    let dir = tmp();
    let cache = Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .cull_limit(0)
        .size_limit(1000)
        .open(dir.path())
        .expect("open");
    for n in 0..10 {
        cache.set_with(n, n, &expire_now()).expect("set expired");
    }
    for n in 10..60 {
        cache.set(n, vec![b'x'; 500]).expect("set");
    }
    assert!(cache.volume().expect("volume") > 1000);
    wait_past(SystemTime::now());
    assert_eq!(cache.cull().expect("cull"), 10);
    assert_eq!(cache.len().expect("len"), 50);
    // No eviction: the cache stays over its limit.
    assert!(cache.volume().expect("volume") > 1000);
    assert_eq!(cache.cull().expect("cull again"), 0);
}

#[test]
fn cull_works_whatever_the_cull_limit() {
    // python: cull() works regardless of cull_limit ("cron-style" culling).
    for limit in [0, 1, 10] {
        let dir = tmp();
        let cache = Cache::builder()
            .cull_limit(limit)
            .size_limit(u64::MAX)
            .open(dir.path())
            .expect("open");
        for n in 0..200 {
            cache.set(n, vec![b'x'; 1000]).expect("set");
        }
        cache.reset("size_limit", 20_000).expect("reset size_limit");
        cache.cull().expect("cull");
        assert!(cache.volume().expect("volume") <= 20_000, "limit {limit}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Timeouts during batched removals (test_clear_timeout, test_cull_timeout)
// ---------------------------------------------------------------------------------------------

#[test]
fn batched_removals_that_cannot_get_the_writer_lock_report_timeout_with_zero_removed() {
    let dir = tmp();
    let holder = open(dir.path());
    // cull_limit 0: the expired items stay until a removal takes them.
    let remover = Cache::builder()
        .timeout(Duration::from_millis(50))
        .cull_limit(0)
        .open(dir.path())
        .expect("open the impatient handle");
    for n in 0..20 {
        remover.set_with(n, n, &expire_now().tag("t")).expect("set");
    }
    wait_past(SystemTime::now());
    let (locked_tx, locked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let results = std::thread::scope(|scope| {
        let holder = &holder;
        let t = scope.spawn(move || {
            holder.transact(|| {
                locked_tx.send(()).expect("signal the lock is held");
                // Ends when released, or when the main thread drops the sender.
                let _ = release_rx.recv();
                Ok(())
            })
        });
        locked_rx.recv().expect("the holder took the lock");
        let results = vec![
            ("clear", remover.clear()),
            ("expire", remover.expire()),
            ("expire_at", remover.expire_at(SystemTime::now() + DAY)),
            ("evict", remover.evict("t")),
            ("cull", remover.cull()),
        ];
        release_tx.send(()).expect("release the holder");
        t.join().expect("the holder thread").expect("transact");
        results
    });
    for (name, r) in results {
        assert!(
            matches!(r, Err(Error::Timeout { removed: 0 })),
            "{name}: {r:?}"
        );
    }
    // Nothing was removed, and with the lock free the removal goes through.
    assert_eq!(remover.len().expect("len"), 20);
    assert_eq!(remover.clear().expect("clear"), 20);
}

// ---------------------------------------------------------------------------------------------
// 6. Tag index (test_tag_index, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn drop_and_create_tag_index_toggle_it_and_evict_works_throughout() {
    let dir = tmp();
    let cache = Cache::builder()
        .tag_index(true)
        .open(dir.path())
        .expect("open");
    for n in 0..30 {
        cache
            .set_with(n, n, &SetOptions::new().tag(n % 3))
            .expect("set");
    }
    assert_eq!(cache.evict(0).expect("evict with the index"), 10);
    // Tutorial: drop_tag_index() -> tag_index 0; create_tag_index() -> tag_index 1.
    cache.drop_tag_index().expect("drop_tag_index");
    assert!(!cache.tag_index_enabled().expect("tag_index"));
    assert_eq!(
        cache.setting("tag_index").expect("setting"),
        Some(json!(false))
    );
    // Items stored while the index is off must be found once it is built again.
    for n in 30..60 {
        cache
            .set_with(n, n, &SetOptions::new().tag(n % 3))
            .expect("set");
    }
    assert_eq!(cache.evict(1).expect("evict without the index"), 20);
    assert!(cache.check(false).expect("check").is_empty());
    cache.create_tag_index().expect("create_tag_index");
    assert!(cache.tag_index_enabled().expect("tag_index"));
    assert_eq!(
        cache.setting("tag_index").expect("setting"),
        Some(json!(true))
    );
    assert_eq!(cache.evict(2).expect("evict with the rebuilt index"), 20);
    assert_eq!(cache.len().expect("len"), 10);
    assert!(cache.check(false).expect("check").is_empty());
    // Idempotent, as python's CREATE INDEX IF NOT EXISTS / DROP INDEX IF EXISTS.
    cache.create_tag_index().expect("create again");
    cache.drop_tag_index().expect("drop");
    cache.drop_tag_index().expect("drop again");
    assert!(!cache.tag_index_enabled().expect("tag_index"));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn reset_tag_index_turns_the_index_on_and_off() {
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..10 {
        cache
            .set_with(n, n, &SetOptions::new().tag("t"))
            .expect("set");
    }
    assert_eq!(cache.reset("tag_index", true).expect("reset"), json!(true));
    assert!(cache.tag_index_enabled().expect("tag_index"));
    assert!(cache.check(false).expect("check").is_empty());
    // python stores 0/1; these are read as booleans too.
    assert_eq!(cache.reset("tag_index", 0).expect("reset"), json!(false));
    assert!(!cache.tag_index_enabled().expect("tag_index"));
    assert_eq!(cache.reset("tag_index", 1).expect("reset"), json!(true));
    assert_eq!(cache.evict("t").expect("evict"), 10);
}

#[test]
fn tag_index_change_by_one_handle_is_used_by_another() {
    let dir = tmp();
    let first = open(dir.path());
    let second = open(dir.path());
    first.create_tag_index().expect("create_tag_index");
    assert!(second.tag_index_enabled().expect("tag_index"));
    // Writes through the second handle keep the index up to date.
    for n in 0..10 {
        second
            .set_with(n, n, &SetOptions::new().tag("t"))
            .expect("set");
    }
    assert!(first.check(false).expect("check").is_empty());
    assert_eq!(first.evict("t").expect("evict"), 10);
}

// ---------------------------------------------------------------------------------------------
// 7. Iteration (test_iter, test_iter_expire, test_reversed, test_iterkeys, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn iter_gives_keys_in_insertion_order_and_not_keys_stored_after_it_was_made() {
    // test_iter: 'a'..'f' then ('g',); a key set after iter() was called is not yielded.
    // python primes its generator inside __iter__ so the bound is taken at the call; the
    // Rust iterator captures the last rowid when it is made (documented on `Cache::iter`).
    let dir = tmp();
    let cache = open(dir.path());
    for (i, k) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        cache.set(k, i).expect("set");
    }
    cache.set(("g",), 6).expect("set a tuple key");
    let mut expected: Vec<Key> = ["a", "b", "c", "d", "e", "f"].map(s).to_vec();
    expected.push(Key::from_value(&("g",)).expect("tuple key"));

    let before_any_next = cache.iter();
    cache.set("h", 7).expect("set after the iterator was made");
    assert_eq!(collect(before_any_next), expected);

    let mut partly = cache.iter();
    assert_eq!(partly.next().expect("one key").expect("ok"), s("a"));
    cache.set("i", 8).expect("set during iteration");
    let rest: Vec<Key> = partly.map(|k| k.expect("key")).collect();
    assert_eq!(rest.last(), Some(&s("h")));
    assert!(!rest.contains(&s("i")));
}

#[test]
fn iter_rev_gives_keys_in_reverse_insertion_order() {
    // test_reversed.
    let dir = tmp();
    let cache = open(dir.path());
    for (i, k) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        cache.set(k, i).expect("set");
    }
    let it = cache.iter_rev();
    cache.set("g", 6).expect("set after the iterator was made");
    assert_eq!(collect(it), ["f", "e", "d", "c", "b", "a"].map(s));
    let mut it = cache.iter_rev();
    assert_eq!(it.next().expect("a key").expect("ok"), s("g"));
    assert_eq!(it.count(), 6);
}

#[test]
fn iterkeys_gives_sorted_order_numbers_then_strings_then_bytes_then_tuples() {
    let dir = tmp();
    let cache = open(dir.path());
    // Stored in a scrambled order.
    cache.set(("t", 1), 0).expect("set");
    cache.set(b"b".as_slice(), 0).expect("set");
    cache.set("b", 0).expect("set");
    cache.set(1.5, 0).expect("set");
    cache.set(-5, 0).expect("set");
    cache.set(("a", 2), 0).expect("set");
    cache.set("a", 0).expect("set");
    cache.set(b"a".as_slice(), 0).expect("set");
    cache.set(1_000_000_000, 0).expect("set");
    cache.set(2, 0).expect("set");
    let sorted = vec![
        int(-5),
        Key::Float(1.5),
        int(2),
        int(1_000_000_000),
        s("a"),
        s("b"),
        Key::Bytes(b"a".to_vec()),
        Key::Bytes(b"b".to_vec()),
        Key::from_value(&("a", 2)).expect("key"),
        Key::from_value(&("t", 1)).expect("key"),
    ];
    assert_eq!(collect(cache.iterkeys()), sorted);
    let mut reversed = sorted.clone();
    reversed.reverse();
    assert_eq!(collect(cache.iterkeys_rev()), reversed);
}

#[test]
fn iteration_follows_the_tutorial_cab_example() {
    // Tutorial: keys 'c','a','b' with value None: list(cache) == ['c','a','b'];
    // list(cache.iterkeys()) == ['a','b','c']; peekitem() == ('b', None);
    // peekitem(last=False) == ('c', None).
    let dir = tmp();
    let cache = open(dir.path());
    for k in ["c", "a", "b"] {
        cache.set(k, None::<i32>).expect("set");
    }
    assert_eq!(collect(cache.iter()), ["c", "a", "b"].map(s));
    assert_eq!(collect(cache.iterkeys()), ["a", "b", "c"].map(s));
    assert_eq!(
        cache.peekitem::<Option<i32>>(true).expect("peekitem"),
        Some((s("b"), None))
    );
    assert_eq!(
        cache
            .peekitem::<Option<i32>>(false)
            .expect("peekitem first"),
        Some((s("c"), None))
    );
}

#[test]
fn iteration_includes_expired_items() {
    // test_iter_expire: 100 items with expire=1e-9 and cull_limit 0 are all listed.
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..100 {
        cache.set_with(n, n, &expire_now()).expect("set");
    }
    assert_eq!(cache.len().expect("len"), 100);
    assert_eq!(collect(cache.iter()), ints(0..100));
    assert_eq!(collect(cache.iter_rev()), ints((0..100).rev()));
    assert_eq!(collect(cache.iterkeys()), ints(0..100));
}

#[test]
fn an_overwrite_keeps_the_key_in_its_insertion_position() {
    let dir = tmp();
    let cache = open(dir.path());
    for k in ["a", "b", "c"] {
        cache.set(k, 1).expect("set");
    }
    cache.set("a", 2).expect("overwrite");
    cache
        .set_with("b", vec![7u8; LARGE], &SetOptions::new().tag("big"))
        .expect("overwrite with a large value");
    assert_eq!(collect(cache.iter()), ["a", "b", "c"].map(s));
    assert_eq!(collect(cache.iter_rev()), ["c", "b", "a"].map(s));
    // peekitem orders by first insertion too (quirk 2).
    assert_eq!(
        cache.peekitem::<i64>(true).expect("peekitem"),
        Some((s("c"), 1))
    );
    assert_eq!(
        cache.peekitem::<i64>(false).expect("peekitem first"),
        Some((s("a"), 2))
    );
}

#[test]
fn a_key_deleted_and_stored_again_moves_to_the_end() {
    // Deleting removes the row; storing again inserts a new one.
    let dir = tmp();
    let cache = open(dir.path());
    for k in ["a", "b", "c"] {
        cache.set(k, 1).expect("set");
    }
    assert!(cache.delete("a").expect("delete"));
    cache.set("a", 1).expect("set again");
    assert_eq!(collect(cache.iter()), ["b", "c", "a"].map(s));
}

#[test]
fn iteration_of_an_empty_cache_yields_nothing() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(collect(cache.iter()).is_empty());
    assert!(collect(cache.iter_rev()).is_empty());
    assert!(collect(cache.iterkeys()).is_empty());
    assert!(collect(cache.iterkeys_rev()).is_empty());
    // Emptied again after use.
    cache.set("k", 1).expect("set");
    assert!(cache.delete("k").expect("delete"));
    assert!(collect(cache.iter()).is_empty());
    assert!(collect(cache.iterkeys()).is_empty());
}

#[test]
fn iteration_over_many_pages_is_complete_in_every_order() {
    let dir = tmp();
    let cache = open(dir.path());
    // Stored in descending order so insertion order and sorted order differ.
    cache
        .transact(|| {
            for n in (0..1000).rev() {
                cache.set(n, n)?;
            }
            Ok(())
        })
        .expect("fill");
    assert_eq!(collect(cache.iter()), ints((0..1000).rev()));
    assert_eq!(collect(cache.iter_rev()), ints(0..1000));
    assert_eq!(collect(cache.iterkeys()), ints(0..1000));
    assert_eq!(collect(cache.iterkeys_rev()), ints((0..1000).rev()));
}

#[test]
fn iteration_over_many_pages_stays_valid_while_another_handle_writes_and_deletes() {
    const N: u32 = 1000;
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .transact(|| {
            for n in 0..N {
                cache.set(n, n)?;
            }
            Ok(())
        })
        .expect("fill");
    let writer = open(dir.path());

    // The writer's changes, one batch per 100 keys the reader has taken. Batch 0 deletes
    // the odd keys of 900..1000, far beyond any page read so far; every batch deletes a few
    // keys around the reader's position, overwrites some keys and stores new ones.
    let deletions = |b: u32| -> Vec<u32> {
        let mut d: Vec<u32> = (0..5).map(|j| (b * 100 + 150 + j * 7) % N).collect();
        if b == 0 {
            d.extend((900..N).filter(|n| n % 2 == 1));
        }
        d
    };
    let (go_tx, go_rx) = mpsc::channel::<u32>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let seen = std::thread::scope(|scope| {
        let writer = &writer;
        scope.spawn(move || {
            for b in go_rx {
                for k in deletions(b) {
                    writer.delete(k).expect("delete");
                }
                for j in 0..10 {
                    writer.set(N + b * 10 + j, 0).expect("store a new key");
                    writer.set((b * 37 + j * 11) % N, -1).expect("overwrite");
                }
                if done_tx.send(()).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let mut batch = 0;
        for k in cache.iter() {
            seen.push(k);
            if seen.len() % 100 == 0 {
                if go_tx.send(batch).is_err() || done_rx.recv().is_err() {
                    break;
                }
                batch += 1;
            }
        }
        drop(go_tx);
        seen
    });
    let seen: Vec<u32> = seen
        .into_iter()
        .map(|k| {
            k.expect("key")
                .deserialize::<u32>()
                .expect("an integer key")
        })
        .collect();
    let batches = (seen.len() as u32).div_ceil(100);
    let deleted: BTreeSet<u32> = (0..batches).flat_map(deletions).collect();
    // In insertion order, each key at most once, and no key stored after the start.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.iter().all(|k| *k < N));
    // Every key never deleted is there.
    let seen_set: BTreeSet<u32> = seen.iter().copied().collect();
    for k in (0..N).filter(|k| !deleted.contains(k)) {
        assert!(seen_set.contains(&k), "missing {k}");
    }
    // Keys deleted before the iterator reached their page are not returned.
    for k in (900..N).filter(|n| n % 2 == 1) {
        assert!(!seen_set.contains(&k), "deleted key {k} returned");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. peekitem (test_peekitem, test_peekitem_expire)
// ---------------------------------------------------------------------------------------------

#[test]
fn peekitem_returns_the_last_and_the_first_inserted_item_without_removing_them() {
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..10 {
        cache.set(n, n * 10).expect("set");
    }
    assert_eq!(
        cache.peekitem::<i64>(true).expect("peekitem"),
        Some((int(9), 90))
    );
    assert_eq!(
        cache.peekitem::<i64>(false).expect("peekitem first"),
        Some((int(0), 0))
    );
    assert_eq!(cache.len().expect("len"), 10);
}

#[test]
fn peekitem_of_an_empty_cache_is_none() {
    // python raises KeyError('dictionary is empty').
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.peekitem::<i64>(true).expect("peekitem"), None);
    assert_eq!(cache.peekitem::<i64>(false).expect("peekitem"), None);
    assert!(cache
        .peekitem_entry::<i64>(true)
        .expect("peekitem_entry")
        .is_none());
}

#[test]
fn peekitem_removes_and_skips_expired_items_at_the_edge() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    cache.set_with(0, 0, &expire_now()).expect("set expired");
    cache.set_with(1, 1, &expire_now()).expect("set expired");
    for n in 2..8 {
        cache.set(n, n).expect("set");
    }
    cache.set_with(8, 8, &expire_now()).expect("set expired");
    cache.set_with(9, 9, &expire_now()).expect("set expired");
    assert_eq!(cache.len().expect("len"), 10);
    assert_eq!(
        cache.peekitem::<i64>(true).expect("peekitem"),
        Some((int(7), 7))
    );
    assert_eq!(cache.len().expect("len"), 8);
    assert_eq!(
        cache.peekitem::<i64>(false).expect("peekitem first"),
        Some((int(2), 2))
    );
    assert_eq!(cache.len().expect("len"), 6);
    assert_eq!(collect(cache.iter()), ints(2..8));
}

#[test]
fn peekitem_of_only_expired_items_removes_them_all_and_is_none() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..5 {
        cache.set_with(n, n, &expire_now()).expect("set expired");
    }
    assert_eq!(cache.peekitem::<i64>(true).expect("peekitem"), None);
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn peekitem_entry_gives_the_expire_time_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    let before = SystemTime::now();
    cache
        .set_with("first", 1, &SetOptions::new().tag("t1"))
        .expect("set");
    cache
        .set_with(
            "last",
            vec![5u8; LARGE],
            &SetOptions::new().expire(DAY).tag(7),
        )
        .expect("set a large value");
    let (k, e) = cache
        .peekitem_entry::<Vec<u8>>(true)
        .expect("peekitem_entry")
        .expect("an item");
    assert_eq!(k, s("last"));
    assert_eq!(e.value, vec![5u8; LARGE]);
    assert_eq!(e.tag, Some(int(7)));
    let at = e.expire_time.expect("an expiry");
    assert!(at >= before + DAY, "{at:?}");
    let (k, e) = cache
        .peekitem_entry::<i64>(false)
        .expect("peekitem_entry")
        .expect("an item");
    assert_eq!(
        (k, e),
        (
            s("first"),
            Entry {
                value: 1,
                expire_time: None,
                tag: Some(s("t1"))
            }
        )
    );
}

// ---------------------------------------------------------------------------------------------
// 9. push / pull / peek (test_push_pull, test_push_pull_prefix, test_push_pull_expire, ...)
// ---------------------------------------------------------------------------------------------

#[test]
fn push_pull_peek_follow_the_tutorial() {
    let dir = tmp();
    let cache = open(dir.path());
    let key = cache.push("first").expect("push");
    assert_eq!(key, int(QUEUE_START));
    assert_eq!(
        cache.get::<String>(&key).expect("get").as_deref(),
        Some("first")
    );
    assert_eq!(cache.push("second").expect("push"), int(QUEUE_START + 1));
    assert_eq!(
        cache
            .push_with("zeroth", &QueueOptions::new().side(Side::Front))
            .expect("push to the front"),
        int(QUEUE_START - 1)
    );
    let (_, value) = cache.peek::<String>().expect("peek").expect("queued");
    assert_eq!(value, "zeroth");
    assert_eq!(cache.len().expect("len"), 3);
    let (key, value) = cache.pull::<String>().expect("pull").expect("queued");
    assert_eq!(key, int(499_999_999_999_999));
    assert_eq!(value, "zeroth");
    assert_eq!(
        cache.pull::<String>().expect("pull"),
        Some((int(QUEUE_START), "first".to_owned()))
    );
    assert_eq!(
        cache.pull::<String>().expect("pull"),
        Some((int(QUEUE_START + 1), "second".to_owned()))
    );
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn prefixed_queues_use_string_keys() {
    let dir = tmp();
    let cache = open(dir.path());
    let q = QueueOptions::new().prefix("userids");
    assert_eq!(
        cache.push_with(1, &q).expect("push"),
        s("userids-500000000000000")
    );
    assert_eq!(
        cache.push_with(2, &q).expect("push"),
        s("userids-500000000000001")
    );
    assert_eq!(
        cache.push_with(0, &q.clone().front()).expect("push front"),
        s("userids-499999999999999")
    );
    assert_eq!(
        cache.get::<i64>("userids-500000000000001").expect("get"),
        Some(2)
    );
    assert_eq!(
        cache
            .peek_with::<i64>(&q)
            .expect("peek")
            .map(|(k, e)| (k, e.value)),
        Some((s("userids-499999999999999"), 0))
    );
    assert_eq!(
        cache
            .pull_with::<i64>(&q.clone().back())
            .expect("pull back")
            .map(|(k, e)| (k, e.value)),
        Some((s("userids-500000000000001"), 2))
    );
    // The integer queue is another queue.
    assert_eq!(cache.pull::<i64>().expect("pull"), None);
}

#[test]
fn separate_prefixes_are_separate_queues() {
    let dir = tmp();
    let cache = open(dir.path());
    let a = QueueOptions::new().prefix("a");
    let b = QueueOptions::new().prefix("b");
    for n in 0..3 {
        cache.push_with(format!("a{n}"), &a).expect("push a");
        cache.push_with(format!("b{n}"), &b).expect("push b");
        cache.push(format!("i{n}")).expect("push int");
    }
    let drain = |q: &QueueOptions| -> Vec<String> {
        std::iter::from_fn(|| {
            cache
                .pull_with::<String>(q)
                .expect("pull")
                .map(|(_, e)| e.value)
        })
        .collect()
    };
    assert_eq!(drain(&b), ["b0", "b1", "b2"]);
    assert_eq!(drain(&a), ["a0", "a1", "a2"]);
    assert_eq!(drain(&QueueOptions::new()), ["i0", "i1", "i2"]);
    // Each queue restarts at the start key once empty.
    assert_eq!(
        cache.push_with("again", &a).expect("push"),
        s("a-500000000000000")
    );
}

#[test]
fn push_with_expire_and_tag_and_pull_with_returns_them() {
    let dir = tmp();
    let cache = open(dir.path());
    let before = SystemTime::now();
    let key = cache
        .push_with("job", &QueueOptions::new().expire(DAY).tag("jobs"))
        .expect("push");
    let (k, e) = cache
        .peek_with::<String>(&QueueOptions::new())
        .expect("peek")
        .expect("queued");
    assert_eq!(k, key);
    assert_eq!(e.tag, Some(s("jobs")));
    let (k, e) = cache
        .pull_with::<String>(&QueueOptions::new())
        .expect("pull")
        .expect("queued");
    assert_eq!(k, key);
    assert_eq!(e.value, "job");
    assert_eq!(e.tag, Some(s("jobs")));
    assert!(e.expire_time.expect("an expiry") >= before + DAY);
    // Pushed items are ordinary items: evict by their tag works.
    for n in 0..3 {
        cache
            .push_with(n, &QueueOptions::new().tag("jobs"))
            .expect("push");
    }
    assert_eq!(cache.evict("jobs").expect("evict"), 3);
    // No expiry, no tag.
    cache.push(1).expect("push");
    let (_, e) = cache
        .pull_with::<i64>(&QueueOptions::new())
        .expect("pull")
        .expect("queued");
    assert_eq!((e.expire_time, e.tag), (None, None));
}

#[test]
fn pull_consumes_expired_items_and_returns_the_first_live_one() {
    // test_push_pull_expire: three pushes with expire ~0, then a live one; pull returns the
    // live one's key 500000000000003 and the expired ones are gone. cull_limit 0 keeps the
    // expired ones in the cache until pull meets them.
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..3 {
        cache
            .push_with(n, &QueueOptions::new().expire(Duration::ZERO))
            .expect("push expired");
    }
    cache.push(3).expect("push");
    assert_eq!(cache.len().expect("len"), 4);
    assert_eq!(
        cache.pull::<i64>().expect("pull"),
        Some((int(QUEUE_START + 3), 3))
    );
    assert_eq!(cache.len().expect("len"), 0);
    assert_eq!(cache.pull::<i64>().expect("pull"), None);
}

#[test]
fn pull_from_the_back_skips_expired_items_too() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    cache.push(0).expect("push");
    cache.push(1).expect("push");
    cache
        .push_with(2, &QueueOptions::new().expire(Duration::ZERO))
        .expect("push expired");
    assert_eq!(
        cache
            .pull_with::<i64>(&QueueOptions::new().back())
            .expect("pull back")
            .map(|(k, e)| (k, e.value)),
        Some((int(QUEUE_START + 1), 1))
    );
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn peek_removes_expired_items_at_the_end_but_leaves_the_live_one() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    for n in 0..2 {
        cache
            .push_with(n, &QueueOptions::new().expire(Duration::ZERO))
            .expect("push expired");
    }
    cache.push(2).expect("push");
    assert_eq!(
        cache.peek::<i64>().expect("peek"),
        Some((int(QUEUE_START + 2), 2))
    );
    assert_eq!(cache.len().expect("len"), 1);
    // Peek again: still there.
    assert_eq!(
        cache.peek::<i64>().expect("peek"),
        Some((int(QUEUE_START + 2), 2))
    );
    assert_eq!(cache.len().expect("len"), 1);
}

#[test]
fn pull_and_peek_of_an_empty_queue_are_none() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.pull::<i64>().expect("pull"), None);
    assert_eq!(cache.peek::<i64>().expect("peek"), None);
    let q = QueueOptions::new().prefix("p");
    assert!(cache.pull_with::<i64>(&q).expect("pull").is_none());
    assert!(cache
        .peek_with::<i64>(&q.clone().back())
        .expect("peek")
        .is_none());
    // Keys outside the queue's range are not queue items.
    cache.set("p", 1).expect("set");
    cache.set(0, 1).expect("set 0 (the exclusive lower bound)");
    cache.set(-1, 1).expect("set");
    cache
        .set(999_999_999_999_999i64, 1)
        .expect("set the upper bound");
    cache.set("p-", 1).expect("set");
    assert_eq!(cache.pull::<i64>().expect("pull"), None);
    assert!(cache.pull_with::<i64>(&q).expect("pull").is_none());
}

#[test]
fn pull_from_the_back_takes_the_last_pushed() {
    let dir = tmp();
    let cache = open(dir.path());
    for n in 1..=3 {
        cache.push(n).expect("push");
    }
    let back = QueueOptions::new().side(Side::Back);
    assert_eq!(
        cache
            .pull_with::<i64>(&back)
            .expect("pull")
            .map(|(k, e)| (k, e.value)),
        Some((int(QUEUE_START + 2), 3))
    );
    assert_eq!(
        cache
            .peek_with::<i64>(&back)
            .expect("peek")
            .map(|(k, e)| (k, e.value)),
        Some((int(QUEUE_START + 1), 2))
    );
    assert_eq!(
        cache.pull::<i64>().expect("pull front"),
        Some((int(QUEUE_START), 1))
    );
}

#[test]
fn large_file_backed_values_go_through_the_queue() {
    let dir = tmp();
    let cache = open_small_checkpoints(dir.path());
    for n in 0..3u8 {
        cache.push(vec![n; LARGE * 2]).expect("push a large value");
    }
    assert_eq!(value_files(dir.path()).len(), 3);
    // Peeking leaves the value file in place (python bug #288, fixed in 5.6.2).
    let (_, v) = cache.peek::<Vec<u8>>().expect("peek").expect("queued");
    assert_eq!(v, vec![0u8; LARGE * 2]);
    force_checkpoint(&cache);
    assert_eq!(value_files(dir.path()).len(), 3);
    for n in 0..3u8 {
        let (k, v) = cache.pull::<Vec<u8>>().expect("pull").expect("queued");
        assert_eq!(k, int(QUEUE_START + i128::from(n)));
        assert_eq!(v, vec![n; LARGE * 2]);
    }
    force_checkpoint(&cache);
    assert!(value_files(dir.path()).is_empty());
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn pull_consumes_an_item_whose_value_file_is_gone_and_returns_the_next() {
    // test_pull_ioerror: python retries after an IOError on fetch; the row is gone already.
    let dir = tmp();
    let cache = open(dir.path());
    let first = cache.push(vec![1u8; LARGE]).expect("push");
    cache.push(vec![2u8; LARGE]).expect("push");
    let path = cache
        .read(&first)
        .expect("read")
        .expect("queued")
        .path()
        .expect("file-backed")
        .to_path_buf();
    std::fs::remove_file(&path).expect("remove the value file");
    let (k, v) = cache.pull::<Vec<u8>>().expect("pull").expect("queued");
    assert_eq!(k, int(QUEUE_START + 1));
    assert_eq!(v, vec![2u8; LARGE]);
    assert_eq!(cache.len().expect("len"), 0);
}

#[test]
fn a_user_integer_key_inside_the_queue_range_counts_as_a_queue_item() {
    // Quirk 4: after cache[5] = 'x', push() returns 6, and a front push 4.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(5, "x").expect("set");
    assert_eq!(cache.push("y").expect("push"), int(6));
    assert_eq!(
        cache
            .push_with("w", &QueueOptions::new().front())
            .expect("push front"),
        int(4)
    );
    assert_eq!(
        cache.pull::<String>().expect("pull"),
        Some((int(4), "w".to_owned()))
    );
    assert_eq!(
        cache.pull::<String>().expect("pull"),
        Some((int(5), "x".to_owned()))
    );
}

#[test]
fn a_user_float_key_inside_the_queue_range_counts_as_a_queue_item() {
    // python: a float key 3.5 leads to 4.5 (float arithmetic); here the next integer on the
    // queue's side of it (documented in queue.rs: "the integer on the queue's side of it").
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(3.5, "x").expect("set");
    assert_eq!(cache.push("y").expect("push"), int(4));
    assert_eq!(
        cache
            .push_with("w", &QueueOptions::new().front())
            .expect("push front"),
        int(3)
    );
}

#[test]
fn a_user_string_key_inside_a_prefixed_range_counts_as_a_queue_item() {
    // python: c['q-1'] then push(prefix='q') gives 'q-000000000000002'.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("q-1", "x").expect("set");
    assert_eq!(
        cache
            .push_with("y", &QueueOptions::new().prefix("q"))
            .expect("push"),
        s("q-000000000000002")
    );
}

#[test]
fn a_prefixed_key_whose_tail_is_not_a_number_makes_push_fail() {
    // python raises ValueError from int(); here it is Error::InvalidKey, and nothing is
    // stored.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("q-5x", "not a queue item").expect("set");
    let r = cache.push_with("y", &QueueOptions::new().prefix("q"));
    assert!(matches!(r, Err(Error::InvalidKey(_))), "{r:?}");
    assert_eq!(cache.len().expect("len"), 1);
    assert!(value_files(dir.path()).is_empty());
    // Other queues are unaffected.
    assert_eq!(
        cache
            .push_with("z", &QueueOptions::new().prefix("r"))
            .expect("push"),
        s("r-500000000000000")
    );
}

#[test]
fn push_then_pull_preserves_order_across_many_items() {
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..300 {
        cache.push(n).expect("push");
    }
    for n in 0..300 {
        assert_eq!(
            cache.pull::<i64>().expect("pull"),
            Some((int(QUEUE_START + i128::from(n)), i64::from(n)))
        );
    }
    assert_eq!(cache.pull::<i64>().expect("pull"), None);
}

// ---------------------------------------------------------------------------------------------
// 10. reset / setting / settings (section 1.2, tutorial "Settings")
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_returns_the_stored_value() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.reset("cull_limit", 0).expect("reset"), json!(0));
    assert_eq!(cache.cull_limit().expect("cull_limit"), 0);
    assert_eq!(
        cache.reset("size_limit", 4_000_000_000u64).expect("reset"),
        json!(4_000_000_000u64)
    );
    assert_eq!(cache.size_limit().expect("size_limit"), 4_000_000_000);
    // Tutorial: print(cache.reset('eviction_policy', 'least-recently-used')).
    assert_eq!(
        cache
            .reset("eviction_policy", "least-recently-used")
            .expect("reset"),
        json!("least-recently-used")
    );
    assert_eq!(
        cache.eviction_policy().expect("policy"),
        EvictionPolicy::LeastRecentlyUsed
    );
    assert_eq!(cache.reset("statistics", true).expect("reset"), json!(true));
    assert!(cache.statistics_enabled().expect("statistics"));
    assert_eq!(
        cache.reset("disk_min_file_size", 1000).expect("reset"),
        json!(1000)
    );
    assert_eq!(cache.min_file_size().expect("min_file_size"), 1000);
    // Every value reads back through `setting`.
    assert_eq!(
        cache.setting("cull_limit").expect("setting"),
        Some(json!(0))
    );
    assert_eq!(
        cache.setting("eviction_policy").expect("setting"),
        Some(json!("least-recently-used"))
    );
    assert_eq!(
        cache.setting("statistics").expect("setting"),
        Some(json!(true))
    );
}

#[test]
fn reset_normalizes_python_style_booleans() {
    // settings.rs: booleans are stored as JSON booleans; python's 0/1 are accepted.
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.reset("statistics", 1).expect("reset"), json!(true));
    assert_eq!(cache.reset("statistics", 0).expect("reset"), json!(false));
}

#[test]
fn unknown_setting_names_are_stored_and_read_back() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.setting("my_setting").expect("setting"), None);
    assert_eq!(
        cache.reset("my_setting", "hello").expect("reset"),
        json!("hello")
    );
    assert_eq!(
        cache.setting("my_setting").expect("setting"),
        Some(json!("hello"))
    );
    assert_eq!(
        cache.reset("nested", json!({"a": [1, 2]})).expect("reset"),
        json!({"a": [1, 2]})
    );
    let all = cache.settings().expect("settings");
    assert_eq!(all.get("my_setting"), Some(&json!("hello")));
    assert_eq!(all.get("nested"), Some(&json!({"a": [1, 2]})));
    drop(cache);
    // Stored in the cache: another handle reads them back after a reopen.
    let cache = open(dir.path());
    assert_eq!(
        cache.setting("my_setting").expect("setting"),
        Some(json!("hello"))
    );
}

#[test]
fn settings_lists_the_stored_settings() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(3)
        .open(dir.path())
        .expect("open");
    cache.reset("size_limit", 12345).expect("reset");
    let all = cache.settings().expect("settings");
    assert_eq!(all.get("cull_limit"), Some(&json!(3)));
    assert_eq!(all.get("size_limit"), Some(&json!(12345)));
    // The codec is recorded when the cache is created.
    assert!(all.contains_key("codec"), "{all:?}");
}

#[test]
fn reset_with_a_bad_value_for_a_known_setting_is_an_invalid_argument() {
    let dir = tmp();
    let cache = open(dir.path());
    let bad: Vec<(&str, Json)> = vec![
        ("size_limit", json!(-1)),
        ("size_limit", json!("big")),
        ("size_limit", json!(1.5)),
        ("cull_limit", json!(-3)),
        ("cull_limit", json!(null)),
        ("eviction_policy", json!("random")),
        ("eviction_policy", json!(1)),
        ("statistics", json!("yes")),
        ("tag_index", json!([true])),
        ("disk_min_file_size", json!((4u64 << 20) + 1)),
        ("disk_min_file_size", json!(-1)),
    ];
    for (name, value) in bad {
        let r = cache.reset(name, &value);
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{name} = {value}: {r:?}"
        );
    }
    // Nothing changed.
    assert_eq!(cache.size_limit().expect("size_limit"), 1 << 30);
    assert_eq!(cache.cull_limit().expect("cull_limit"), 10);
    assert_eq!(
        cache.eviction_policy().expect("policy"),
        EvictionPolicy::LeastRecentlyStored
    );
    assert!(!cache.statistics_enabled().expect("statistics"));
}

#[test]
fn reset_of_the_codec_or_a_counter_is_refused() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("k", 1).expect("set");
    let codec = cache.setting("codec").expect("setting");
    for name in ["codec", "count", "size", "hits", "misses"] {
        let r = cache.reset(name, 0);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{name}: {r:?}");
    }
    assert_eq!(cache.setting("codec").expect("setting"), codec);
    assert_eq!(cache.len().expect("len"), 1);
    assert_eq!(cache.setting("count").expect("setting"), Some(json!(1)));
}

#[test]
fn a_reset_through_one_handle_is_seen_by_another_open_handle() {
    // Documented on `Cache::reset`: unlike python-diskcache (whose handles keep a copy until
    // they call reset(key)), every open handle sees the change at its next operation.
    let dir = tmp();
    let first = open(dir.path());
    let second = open(dir.path());
    assert_eq!(second.cull_limit().expect("cull_limit"), 10);
    first.reset("cull_limit", 3).expect("reset");
    first.reset("custom", "v").expect("reset");
    assert_eq!(second.cull_limit().expect("cull_limit"), 3);
    assert_eq!(
        second.setting("cull_limit").expect("setting"),
        Some(json!(3))
    );
    assert_eq!(second.setting("custom").expect("setting"), Some(json!("v")));
    // And the other way round, for a setting that changes behaviour: statistics.
    second.reset("statistics", true).expect("reset");
    first.set("k", 1).expect("set");
    first.get::<i64>("k").expect("get");
    first.get::<i64>("missing").expect("get");
    assert_eq!(second.stats(true, false).expect("stats"), (1, 1));
}

#[test]
fn reset_of_the_eviction_policy_makes_culling_follow_the_new_policy() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .open(dir.path())
        .expect("open");
    for n in 0..10 {
        cache.set(n, vec![b'x'; 1000]).expect("set");
    }
    cache
        .reset("eviction_policy", "least-recently-used")
        .expect("reset the policy");
    assert_eq!(
        cache.eviction_policy().expect("policy"),
        EvictionPolicy::LeastRecentlyUsed
    );
    // Read the five oldest: under LRU they are now the most recently used.
    for n in 0..5 {
        assert!(cache.get::<Vec<u8>>(n).expect("get").is_some());
    }
    // Need to shed roughly 40%: the five unread items make up half of the volume.
    let limit = cache.volume().expect("volume") * 6 / 10;
    cache.reset("size_limit", limit).expect("reset size_limit");
    let culled = cache.cull().expect("cull");
    assert!(culled > 0);
    assert!(cache.volume().expect("volume") <= limit);
    // Least-recently-stored would have removed key 0 first; LRU keeps every read key.
    for n in 0..5 {
        assert!(
            cache.contains(n).expect("contains"),
            "read key {n} was culled"
        );
    }
    assert!(!cache.contains(5).expect("contains"));
    assert!(cache.check(false).expect("check").is_empty());

    // Switched to 'none': cull removes nothing for size.
    cache.reset("eviction_policy", "none").expect("reset");
    cache.reset("size_limit", 0).expect("reset size_limit");
    assert_eq!(cache.cull().expect("cull"), 0);
    assert_eq!(cache.len().expect("len"), 10 - culled);
    assert!(cache.check(false).expect("check").is_empty());

    // Back to least-recently-stored: the oldest stored go first.
    cache
        .reset("eviction_policy", "least-recently-stored")
        .expect("reset");
    let before = cache.len().expect("len");
    cache
        .reset("size_limit", cache.volume().expect("volume") - 1)
        .expect("reset size_limit");
    assert!(cache.cull().expect("cull") >= 1);
    assert!(!cache.contains(0).expect("contains"));
    assert!(cache.len().expect("len") < before);
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn setting_count_equals_len_and_size_counts_value_file_bytes() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    assert_eq!(cache.setting("count").expect("count"), Some(json!(0)));
    assert_eq!(cache.setting("size").expect("size"), Some(json!(0)));
    for n in 0..5 {
        cache.set(n, n).expect("set");
    }
    cache.set_with(5, 5, &expire_now()).expect("set expired");
    cache.set("large", vec![0u8; LARGE]).expect("set large");
    // len() and "count" include expired items.
    assert_eq!(cache.len().expect("len"), 7);
    assert_eq!(cache.setting("count").expect("count"), Some(json!(7)));
    // python: Settings.size is the sum of the Cache.size column, the bytes of value files.
    assert_eq!(cache.setting("size").expect("size"), Some(json!(LARGE)));
    assert!(cache.delete("large").expect("delete"));
    assert_eq!(cache.setting("size").expect("size"), Some(json!(0)));
    assert_eq!(cache.setting("count").expect("count"), Some(json!(6)));
}

// ---------------------------------------------------------------------------------------------
// 11. stats (test_stats, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_counts_hits_and_misses_only_while_enabled() {
    let dir = tmp();
    let cache = open(dir.path());
    cache.set(0, 0).expect("set");
    assert_eq!(cache.stats(true, false).expect("stats"), (0, 0));
    assert!(cache.statistics_enabled().expect("statistics"));
    for _ in 0..100 {
        assert_eq!(cache.get::<i64>(0).expect("get"), Some(0));
    }
    for _ in 0..10 {
        assert_eq!(cache.get::<i64>(1).expect("get"), None);
    }
    // stats(reset=True) returns the counts from before the reset.
    assert_eq!(cache.stats(true, true).expect("stats"), (100, 10));
    assert_eq!(cache.stats(false, false).expect("stats"), (0, 0));
    assert!(!cache.statistics_enabled().expect("statistics"));
    for _ in 0..100 {
        cache.get::<i64>(0).expect("get");
    }
    for _ in 0..10 {
        cache.get::<i64>(1).expect("get");
    }
    assert_eq!(cache.stats(true, false).expect("stats"), (0, 0));
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn stats_follows_the_tutorial() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(cache.stats(true, false).expect("stats"), (0, 0));
    for n in 0..100 {
        cache.set(n, n).expect("set");
    }
    for n in 0..150 {
        cache.get::<i64>(n).expect("get");
    }
    assert_eq!(cache.stats(false, true).expect("stats"), (100, 50));
    assert_eq!(cache.stats(false, false).expect("stats"), (0, 0));
}

#[test]
fn stats_do_not_count_incr_and_count_expired_items_as_misses() {
    // Tutorial: "Increment and decrement operations are not counted in cache statistics."
    let dir = tmp();
    let cache = Cache::builder()
        .statistics(true)
        .open(dir.path())
        .expect("open");
    cache.incr("n", 1).expect("incr");
    cache.decr("n", 1).expect("decr");
    assert_eq!(cache.stats(true, false).expect("stats"), (0, 0));
    cache
        .set_with("gone", 1, &expire_now())
        .expect("set expired");
    assert_eq!(cache.get::<i64>("gone").expect("get"), None);
    assert_eq!(cache.get::<i64>("n").expect("get"), Some(0));
    assert_eq!(cache.stats(true, false).expect("stats"), (1, 1));
}

#[test]
fn stats_counters_are_shared_by_two_handles_on_one_directory() {
    let dir = tmp();
    let first = open(dir.path());
    let second = open(dir.path());
    first.stats(true, false).expect("enable");
    first.set("k", 1).expect("set");
    for _ in 0..3 {
        second.get::<i64>("k").expect("get");
    }
    second.get::<i64>("missing").expect("get");
    first.get::<i64>("k").expect("get");
    assert_eq!(first.stats(true, false).expect("stats"), (4, 1));
    assert_eq!(second.stats(true, false).expect("stats"), (4, 1));
    // A reset through one handle zeroes them for both.
    assert_eq!(second.stats(true, true).expect("stats"), (4, 1));
    assert_eq!(first.stats(true, false).expect("stats"), (0, 0));
}

#[test]
fn stats_counters_survive_a_reopen() {
    let dir = tmp();
    {
        let cache = Cache::builder()
            .statistics(true)
            .open(dir.path())
            .expect("open");
        cache.set("k", 1).expect("set");
        cache.get::<i64>("k").expect("get");
        cache.get::<i64>("x").expect("get");
        cache.close().expect("close");
    }
    let cache = open(dir.path());
    assert_eq!(cache.stats(true, false).expect("stats"), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// 12. check (test_check, tutorial)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fresh_cache_checks_clean() {
    let dir = tmp();
    let cache = open(dir.path());
    assert!(cache.check(false).expect("check").is_empty());
    assert!(cache.check(true).expect("check fix").is_empty());
    cache.set("key", "value").expect("set");
    cache.set("large", vec![1u8; LARGE]).expect("set large");
    assert!(cache.check(false).expect("check").is_empty());
}

#[test]
fn check_reports_and_fixes_missing_bad_and_unknown_files_and_empty_directories() {
    // test_check "mayhem": value files removed and damaged behind the cache's back, plus
    // stray files and directories.
    let dir = tmp();
    let cache = open(dir.path());
    for n in 0..5u8 {
        cache
            .set(format!("f{n}"), vec![n; LARGE])
            .expect("set a large value");
        cache.set(format!("small{n}"), n).expect("set");
    }
    let missing = value_path(&cache, "f1");
    let bad = value_path(&cache, "f2");
    std::fs::remove_file(&missing).expect("remove a value file");
    File::options()
        .write(true)
        .open(&bad)
        .expect("open a value file")
        .set_len(LARGE as u64 / 2)
        .expect("truncate a value file");
    // An unknown file older than ten minutes (younger ones are kept: see the next test).
    let unknown = dir.path().join("values").join("zz").join("unknown.val");
    std::fs::create_dir_all(unknown.parent().expect("parent")).expect("mkdir");
    let f = File::create(&unknown).expect("create an unknown file");
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .expect("backdate it");
    drop(f);
    let empty = dir.path().join("values").join("ee").join("ee");
    std::fs::create_dir_all(&empty).expect("create an empty directory");

    let report = cache.check(false).expect("check");
    let found = kinds(&report);
    for kind in ["MissingFile", "BadFile", "UnknownFile", "EmptyDirectory"] {
        assert!(found.contains(kind), "{kind} not in {report:?}");
    }
    assert!(report.iter().all(|w| !w.fixed), "{report:?}");
    assert_eq!(
        report
            .iter()
            .filter(|w| w.kind == WarningKind::MissingFile)
            .count(),
        1
    );
    assert_eq!(
        report
            .iter()
            .filter(|w| w.kind == WarningKind::BadFile)
            .count(),
        1
    );
    // check(false) changes nothing.
    assert!(unknown.exists());
    assert!(empty.exists());
    assert_eq!(cache.len().expect("len"), 10);

    let fixed = cache.check(true).expect("check fix");
    assert_eq!(kinds(&fixed), found, "{fixed:?}");
    for w in &fixed {
        assert!(w.fixed, "not fixed: {w}");
    }
    assert!(!unknown.exists());
    assert!(!empty.exists());
    assert!(!dir.path().join("values").join("ee").exists());

    let again = cache.check(false).expect("check again");
    assert!(again.is_empty(), "{again:?}");
    // The items whose files were missing or damaged are gone; the others are intact.
    assert!(!cache.contains("f1").expect("contains"));
    assert!(!cache.contains("f2").expect("contains"));
    assert_eq!(cache.len().expect("len"), 8);
    for n in [0u8, 3, 4] {
        assert_eq!(
            cache.get::<Vec<u8>>(format!("f{n}")).expect("get"),
            Some(vec![n; LARGE])
        );
    }
    for n in 0..5u8 {
        assert_eq!(cache.get::<u8>(format!("small{n}")).expect("get"), Some(n));
    }
    assert_eq!(cache.setting("size").expect("size"), Some(json!(3 * LARGE)));
}

#[test]
fn check_reports_a_young_unknown_file_but_does_not_remove_it() {
    // Documented on `Cache::check`: unknown files younger than ten minutes may belong to a
    // write in progress in another process, so fix leaves them.
    let dir = tmp();
    let cache = open(dir.path());
    let unknown = dir.path().join("values").join("aa").join("young.val");
    std::fs::create_dir_all(unknown.parent().expect("parent")).expect("mkdir");
    std::fs::write(&unknown, b"stray").expect("write an unknown file");
    let report = cache.check(true).expect("check fix");
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].kind, WarningKind::UnknownFile);
    assert!(!report[0].fixed);
    assert!(unknown.exists());
    // Its directory is not empty, so it is not reported as such.
    assert!(report.iter().all(|w| w.kind != WarningKind::EmptyDirectory));
}

#[test]
fn check_is_clean_after_many_operations_of_every_kind() {
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(5)
        .size_limit(400_000)
        .open(dir.path())
        .expect("open");
    let other = open(dir.path());
    for round in 0..3u32 {
        for n in 0..60u32 {
            let tag = n % 4;
            let opts = SetOptions::new().tag(tag);
            let opts = if n % 5 == 0 {
                opts.expire(Duration::ZERO)
            } else {
                opts.expire(DAY)
            };
            if n % 7 == 0 {
                cache
                    .set_with(n, vec![n as u8; LARGE], &opts)
                    .expect("set large");
            } else {
                other.set_with(n, n + round, &opts).expect("set");
            }
        }
        for n in (0..60u32).step_by(3) {
            cache.get_value(n).expect("get_value");
            other.get_value(n).expect("get_value");
        }
        cache.delete(1).expect("delete");
        other.pop::<u32>(2).expect("pop");
        cache.incr("counter", 3).expect("incr");
        cache.add("added", round).expect("add");
        cache.touch(4, Some(DAY)).expect("touch");
        // A prefixed queue: the integer queue would count the integer keys above as its
        // items (quirk 4).
        let big = QueueOptions::new().prefix("big");
        cache.push_with(vec![1u8; LARGE], &big).expect("push large");
        other
            .push_with(round, &QueueOptions::new().prefix("q").tag(1))
            .expect("push");
        cache.pull_with::<Vec<u8>>(&big).expect("pull");
        other
            .peek_with::<u32>(&QueueOptions::new().prefix("q"))
            .expect("peek");
        // Only its side effect matters (removing expired items at the edge), not the type.
        cache.peekitem::<Json>(false).ok();
        cache.evict(round % 4).expect("evict");
        cache.expire().expect("expire");
        let policy = [
            "least-recently-used",
            "least-frequently-used",
            "none",
            "least-recently-stored",
        ][round as usize % 4];
        other
            .reset("eviction_policy", policy)
            .expect("reset policy");
        for n in 0..30u32 {
            cache.get_value(n).expect("get_value");
        }
        if round % 2 == 0 {
            cache.create_tag_index().expect("create_tag_index");
        } else {
            other.drop_tag_index().expect("drop_tag_index");
        }
        cache.cull().expect("cull");
        let report = cache.check(false).expect("check");
        assert!(report.is_empty(), "round {round}: {report:?}");
        let report = other.check(false).expect("check");
        assert!(report.is_empty(), "round {round}: {report:?}");
    }
    cache
        .transact(|| {
            cache.set("in-txn", vec![0u8; LARGE])?;
            cache.delete(3)?;
            Ok(())
        })
        .expect("transact");
    let len = cache.len().expect("len");
    assert_eq!(cache.clear().expect("clear"), len);
    assert!(cache.check(false).expect("check").is_empty());
    assert!(other.check(true).expect("check fix").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 13. memoize (test_memoize, test_memoize_typed, test_memoize_ignore, section 1.9)
// ---------------------------------------------------------------------------------------------

#[test]
fn memoized_function_computes_once_per_arguments() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let add = cache.memoize("add", MemoizeOptions::new(), |&(a, b): &(i64, i64)| {
        calls.fetch_add(1, Ordering::SeqCst);
        a + b
    });
    assert_eq!(add.name(), "add");
    assert_eq!(add.call(&(1, 2)).expect("call"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(add.call(&(1, 2)).expect("call again"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(add.call(&(2, 1)).expect("call with other args"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Results are ordinary items under the call's key.
    assert_eq!(cache.len().expect("len"), 2);
    let key = add.cache_key(&(1, 2)).expect("cache_key");
    assert_eq!(
        key,
        cache
            .memoize_key("add", &(1, 2), &MemoizeOptions::new())
            .expect("memoize_key")
    );
    assert_eq!(cache.get::<i64>(&key).expect("get"), Some(3));
    // The same function under another name is cached apart.
    let other = cache.memoize("add2", MemoizeOptions::new(), |&(a, b): &(i64, i64)| {
        calls.fetch_add(1, Ordering::SeqCst);
        a + b
    });
    assert_eq!(other.call(&(1, 2)).expect("call"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn memoized_results_persist_across_handles() {
    let dir = tmp();
    let calls = AtomicUsize::new(0);
    let square = |cache: &Cache, n: u32| {
        cache
            .memoized("square", &n, &MemoizeOptions::new(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                n * n
            })
            .expect("memoized")
    };
    assert_eq!(square(&open(dir.path()), 7), 49);
    assert_eq!(square(&open(dir.path()), 7), 49);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

fn fib(cache: &Cache, calls: &AtomicUsize, n: u64) -> diskcache::Result<u64> {
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
fn recursive_memoized_fibonacci_counts_hits_like_python() {
    // test_memoize: fibrec(0..count) twice; the second pass is all hits.
    const COUNT: u64 = 90;
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    cache.stats(true, false).expect("enable statistics");
    for n in 0..COUNT {
        assert_eq!(fib(&cache, &calls, n).expect("fib"), fib_iter(n));
    }
    let (hits1, misses1) = cache.stats(true, false).expect("stats");
    // Each n misses once and then computes; its two recursive calls hit.
    assert_eq!(misses1, COUNT);
    assert_eq!(hits1, 2 * (COUNT - 2));
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
fn typed_memoize_caches_equal_values_of_different_types_apart() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let run = |args: &dyn Fn(&MemoizeOptions) -> diskcache::Result<String>, opts| {
        args(opts).expect("memoized")
    };
    let as_int = |opts: &MemoizeOptions| {
        cache.memoized("describe", &(1i32,), opts, || {
            calls.fetch_add(1, Ordering::SeqCst);
            "int".to_owned()
        })
    };
    let as_float = |opts: &MemoizeOptions| {
        cache.memoized("describe", &(1.0f64,), opts, || {
            calls.fetch_add(1, Ordering::SeqCst);
            "float".to_owned()
        })
    };
    // Untyped: 1 and 1.0 are one key (as in python), so the float call hits.
    let untyped = MemoizeOptions::new();
    assert_eq!(run(&as_int, &untyped), "int");
    assert_eq!(run(&as_float, &untyped), "int");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Typed: the argument types are part of the key.
    let typed = MemoizeOptions::new().typed(true);
    assert_eq!(run(&as_int, &typed), "int");
    assert_eq!(run(&as_float, &typed), "float");
    assert_eq!(run(&as_int, &typed), "int");
    assert_eq!(run(&as_float, &typed), "float");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_ne!(
        cache.memoize_key("f", &(1u8,), &typed).expect("key"),
        cache.memoize_key("f", &(1u64,), &typed).expect("key")
    );
    assert_eq!(
        cache.memoize_key("f", &(1u8,), &untyped).expect("key"),
        cache.memoize_key("f", &(1u64,), &untyped).expect("key")
    );
    assert_ne!(
        cache.memoize_key("f", &(1u8,), &untyped).expect("key"),
        cache.memoize_key("f", &(1u8,), &typed).expect("key")
    );
}

#[test]
fn memoize_key_has_python_args_to_key_shape() {
    // args_to_key: (name, *args, None); ignore drops argument positions. python's example
    // h.__cache_key__(1, 2, 3) with ignore={0} is ('__main__.h', 2, 3, None).
    let dir = tmp();
    let cache = open(dir.path());
    let key = cache
        .memoize_key("h", &(1, 2, 3), &MemoizeOptions::new())
        .expect("memoize_key");
    assert_eq!(
        key,
        Key::from_value(&("h", 1, 2, 3, None::<i32>)).expect("tuple key")
    );
    let ignoring = MemoizeOptions::new().ignore([0]);
    let key = cache
        .memoize_key("h", &(1, 2, 3), &ignoring)
        .expect("memoize_key");
    assert_eq!(
        key,
        Key::from_value(&("h", 2, 3, None::<i32>)).expect("tuple key")
    );
    // A single argument that is not a tuple is one argument.
    let key = cache
        .memoize_key("h", "x", &MemoizeOptions::new())
        .expect("memoize_key");
    assert_eq!(key, Key::from_value(&("h", "x", None::<i32>)).expect("key"));
}

#[test]
fn ignored_argument_positions_do_not_change_the_key() {
    // test_memoize_ignore: the ignored argument (say a connection) does not matter.
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let opts = MemoizeOptions::new().ignore([0]);
    let lookup = cache.memoize("lookup", opts, |(conn, id): &(String, u32)| {
        calls.fetch_add(1, Ordering::SeqCst);
        format!("{id} via {conn}")
    });
    assert_eq!(
        lookup.call(&("conn-a".into(), 5)).expect("call"),
        "5 via conn-a"
    );
    assert_eq!(
        lookup.call(&("conn-b".into(), 5)).expect("call"),
        "5 via conn-a",
        "only the id is in the key"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        lookup.cache_key(&("x".into(), 5)).expect("key"),
        lookup.cache_key(&("y".into(), 5)).expect("key")
    );
    assert_eq!(
        lookup.call(&("conn-b".into(), 6)).expect("call"),
        "6 via conn-b"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn zero_expire_memoize_looks_up_but_never_stores() {
    // python: expire=0 means lookup only (used with barrier for double-checked locking).
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let lookup_only = MemoizeOptions::new().expire(Duration::ZERO);
    let run = |opts: &MemoizeOptions| {
        cache
            .memoized("f", &(1,), opts, || {
                calls.fetch_add(1, Ordering::SeqCst) as u64
            })
            .expect("memoized")
    };
    assert_eq!(run(&lookup_only), 0);
    assert_eq!(run(&lookup_only), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.len().expect("len"), 0);
    // Once a result is stored under the same key, the lookup-only function finds it.
    assert_eq!(run(&MemoizeOptions::new()), 2);
    assert_eq!(run(&lookup_only), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn memoize_with_an_expiry_stores_results_that_expire() {
    let dir = tmp();
    let cache = open(dir.path());
    let before = SystemTime::now();
    let double = cache.memoize("double", MemoizeOptions::new().expire(DAY), |n: &u32| n * 2);
    assert_eq!(double.call(&21).expect("call"), 42);
    let e = cache
        .get_entry::<u32>(double.cache_key(&21).expect("key"))
        .expect("get_entry")
        .expect("stored");
    assert_eq!(e.value, 42);
    assert!(e.expire_time.expect("expiry") >= before + DAY);
}

#[test]
fn memoized_results_with_a_tag_are_removed_by_evict() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let sq = cache.memoize("sq", MemoizeOptions::new().tag("squares"), |n: &u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        n * n
    });
    for n in 0..5 {
        sq.call(&n).expect("call");
    }
    cache.set("unrelated", 1).expect("set");
    assert_eq!(
        cache
            .get_entry::<u32>(sq.cache_key(&3).expect("key"))
            .expect("get_entry")
            .expect("stored")
            .tag,
        Some(s("squares"))
    );
    assert_eq!(cache.evict("squares").expect("evict"), 5);
    assert_eq!(cache.len().expect("len"), 1);
    assert_eq!(sq.call(&3).expect("call"), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 6, "recomputed after evict");
}

#[test]
fn deleting_a_memoize_key_forgets_one_result() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let opts = MemoizeOptions::new();
    let cube = |n: u32| {
        cache
            .memoized("cube", &n, &opts, || {
                calls.fetch_add(1, Ordering::SeqCst);
                n * n * n
            })
            .expect("memoized")
    };
    cube(2);
    cube(3);
    assert!(cache
        .delete(cache.memoize_key("cube", &2u32, &opts).expect("key"))
        .expect("delete"));
    assert_eq!(cube(3), 27);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "3 is still cached");
    assert_eq!(cube(2), 8);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "2 was forgotten");
}

#[derive(Debug)]
enum AppError {
    Cache(Error),
    Flaky,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Cache(e)
    }
}

#[test]
fn errors_from_try_memoized_are_returned_and_not_cached() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let attempt = |fail: bool| -> Result<u32, AppError> {
        cache.try_memoized("flaky", &"arg", &MemoizeOptions::new(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            if fail {
                Err(AppError::Flaky)
            } else {
                Ok(7)
            }
        })
    };
    assert!(matches!(attempt(true), Err(AppError::Flaky)));
    assert_eq!(cache.len().expect("len"), 0);
    assert!(matches!(attempt(true), Err(AppError::Flaky)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(attempt(false).expect("ok"), 7);
    // Cached now: a failing computation is not even run.
    assert_eq!(attempt(true).expect("cached"), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A cache error (here a NaN argument, which is no key) comes back as the caller's error.
    let r: Result<u32, AppError> =
        cache.try_memoized("flaky", &f64::NAN, &MemoizeOptions::new(), || Ok(1));
    assert!(
        matches!(r, Err(AppError::Cache(Error::InvalidKey(_)))),
        "{r:?}"
    );
}

#[test]
fn none_and_unit_results_are_cached() {
    // python caches None results.
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let nothing = |n: u32| {
        cache
            .memoized("nothing", &n, &MemoizeOptions::new(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                None::<u32>
            })
            .expect("memoized")
    };
    assert_eq!(nothing(1), None);
    assert_eq!(nothing(1), None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let unit = || {
        cache
            .memoized("unit", &(), &MemoizeOptions::new(), || {
                calls.fetch_add(1, Ordering::SeqCst);
            })
            .expect("memoized")
    };
    unit();
    unit();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.len().expect("len"), 2);
}

#[test]
fn large_memoized_results_are_file_backed_and_round_trip() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = AtomicUsize::new(0);
    let blob = cache.memoize("blob", MemoizeOptions::new(), |n: &u8| {
        calls.fetch_add(1, Ordering::SeqCst);
        vec![*n; LARGE]
    });
    assert_eq!(blob.call(&9).expect("call"), vec![9u8; LARGE]);
    assert_eq!(blob.call(&9).expect("call"), vec![9u8; LARGE]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(value_files(dir.path()).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 14. More from test_core.py: batch boundaries, the writer lock, vanished value files
// ---------------------------------------------------------------------------------------------

#[test]
fn expire_of_more_than_one_batch_removes_every_expired_item() {
    // python's expire() keyset can skip rows sharing an expire_time at a batch boundary
    // (quirk 10); here every expired item goes in one call.
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    cache
        .transact(|| {
            for n in 0..2500 {
                cache.set_with(n, n, &expire_now())?;
            }
            for n in 2500..2600 {
                cache.set(n, n)?;
            }
            Ok(())
        })
        .expect("fill");
    wait_past(SystemTime::now());
    assert_eq!(cache.expire().expect("expire"), 2500);
    assert_eq!(collect(cache.iter()), ints(2500..2600));
}

#[test]
fn evict_of_more_than_one_batch_removes_every_tagged_item_with_and_without_the_index() {
    for index in [false, true] {
        let dir = tmp();
        let cache = Cache::builder()
            .tag_index(index)
            .open(dir.path())
            .expect("open");
        cache
            .transact(|| {
                for n in 0..2500 {
                    let tag = if n % 5 == 4 { "other" } else { "t" };
                    cache.set_with(n, n, &SetOptions::new().tag(tag))?;
                }
                Ok(())
            })
            .expect("fill");
        assert_eq!(cache.evict("t").expect("evict"), 2000, "index {index}");
        assert_eq!(cache.len().expect("len"), 500);
        assert_eq!(cache.evict("other").expect("evict"), 500, "index {index}");
    }
}

#[test]
fn evict_without_the_index_finds_tags_after_a_long_stretch_of_other_items() {
    // Without the index, evict scans the items in bounded stretches; matches far into the
    // cache, past many stretches with none, are still found.
    let dir = tmp();
    let cache = open(dir.path());
    cache
        .transact(|| {
            cache.set_with("first", 0, &SetOptions::new().tag("rare"))?;
            for n in 0..20_000 {
                cache.set(n, n)?;
            }
            for n in 0..3 {
                cache.set_with(("late", n), n, &SetOptions::new().tag("rare"))?;
            }
            Ok(())
        })
        .expect("fill");
    assert_eq!(cache.evict("rare").expect("evict"), 4);
    assert_eq!(cache.len().expect("len"), 20_000);
}

#[test]
fn while_another_handle_holds_the_writer_lock_reads_go_on_and_writes_time_out() {
    // python takes the write lock for peek/peekitem/pull and (with statistics or LRU) for
    // get; here reads never wait ("readers never wait for writers", `Cache` docs), and
    // every write fails with Timeout { removed: 0 } after the handle's timeout.
    let dir = tmp();
    let holder = open(dir.path());
    let other = Cache::builder()
        .timeout(Duration::from_millis(50))
        .statistics(true)
        .open(dir.path())
        .expect("open the impatient handle");
    for n in 0..5 {
        other.set(n, n).expect("set");
    }
    // A prefixed queue: integer keys 1..4 would be items of the integer queue (quirk 4).
    let q = QueueOptions::new().prefix("q");
    other.push_with("queued", &q).expect("push");
    let memo = MemoizeOptions::new();
    other
        .memoized("m", &1, &memo, || 1)
        .expect("store a memoized result");
    let (locked_tx, locked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (reads, writes) = std::thread::scope(|scope| {
        let holder = &holder;
        let t = scope.spawn(move || {
            holder.transact(|| {
                locked_tx.send(()).expect("signal the lock is held");
                let _ = release_rx.recv();
                Ok(())
            })
        });
        locked_rx.recv().expect("the holder took the lock");
        let reads = (
            collect(other.iter()).len(),
            collect(other.iterkeys()).len(),
            other
                .peek_with::<String>(&q)
                .map(|o| o.map(|(_, e)| e.value)),
            other.peekitem::<i64>(false).map(|o| o.map(|(_, v)| v)),
            other.get::<i64>(1).map_err(|e| e.to_string()),
            other
                .memoized("m", &1, &memo, || 2)
                .map_err(|e| e.to_string()),
            other.setting("codec").map_err(|e| e.to_string()),
            other.len().map_err(|e| e.to_string()),
        );
        let writes: Vec<(&str, Result<(), Error>)> = vec![
            ("push", other.push_with(1, &q).map(drop)),
            ("pull", other.pull_with::<String>(&q).map(drop)),
            ("reset", other.reset("cull_limit", 1).map(drop)),
            ("create_tag_index", other.create_tag_index()),
            ("check", other.check(false).map(drop)),
            (
                "memoized miss",
                other.memoized("m", &2, &memo, || 2).map(drop),
            ),
        ];
        release_tx.send(()).expect("release the holder");
        t.join().expect("the holder thread").expect("transact");
        (reads, writes)
    });
    assert_eq!(reads.0, 7);
    assert_eq!(reads.1, 7);
    assert_eq!(reads.2.expect("peek").as_deref(), Some("queued"));
    assert_eq!(reads.3.expect("peekitem"), Some(0));
    assert_eq!(reads.4.expect("get"), Some(1));
    assert_eq!(reads.5.expect("memoized hit"), 1);
    assert!(reads.6.expect("setting").is_some());
    assert_eq!(reads.7.expect("len"), 7);
    for (name, r) in writes {
        assert!(
            matches!(r, Err(Error::Timeout { removed: 0 })),
            "{name}: {r:?}"
        );
    }
    // The reads were counted: hits from get and the memoized hit; misses from the memoized
    // call that stored before the lock was taken and the one that timed out.
    assert_eq!(other.stats(true, false).expect("stats"), (2, 2));
    assert_eq!(other.len().expect("len"), 7);
}

#[test]
fn read_counts_hits_and_misses_like_get() {
    let dir = tmp();
    let cache = Cache::builder()
        .statistics(true)
        .open(dir.path())
        .expect("open");
    cache.set("small", 1).expect("set");
    cache.set("large", vec![0u8; LARGE]).expect("set");
    assert!(cache.read("small").expect("read").is_some());
    assert!(cache.read("large").expect("read").is_some());
    assert!(cache.read("missing").expect("read").is_none());
    assert_eq!(cache.stats(true, false).expect("stats"), (2, 1));
}

#[test]
fn read_records_an_access_under_least_recently_used_like_get() {
    // python: read(key) is get(key, read=True), which runs the LRU update on a hit.
    let dir = tmp();
    let cache = Cache::builder()
        .cull_limit(0)
        .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
        .open(dir.path())
        .expect("open");
    for n in 0..4u8 {
        cache
            .set(format!("f{n}"), vec![n; LARGE])
            .expect("set a large value");
    }
    let mut reader = cache.read("f0").expect("read").expect("stored");
    assert_eq!(
        std::io::Read::read_to_end(&mut reader, &mut Vec::new()).expect("read the file"),
        LARGE
    );
    drop(reader);
    // One item over: the least recently used one goes, which is f1, not f0.
    let limit = cache.volume().expect("volume") - 1;
    cache.reset("size_limit", limit).expect("reset size_limit");
    assert_eq!(cache.cull().expect("cull"), 1);
    assert!(cache.contains("f0").expect("contains"), "f0 was just read");
    assert!(!cache.contains("f1").expect("contains"));
}

#[test]
fn peekitem_removes_an_edge_item_whose_value_file_is_missing_and_returns_the_next() {
    // python retries the fetch (and spins forever on a file that stays missing); here the
    // item, whose value is lost, is removed (as check(true) would) and the next one returned.
    let dir = tmp();
    let cache = open(dir.path());
    cache.set("a", 1).expect("set");
    cache.set("b", vec![0u8; LARGE]).expect("set a large value");
    std::fs::remove_file(value_path(&cache, "b")).expect("remove the value file");
    let r = cache.peekitem::<Json>(true).expect("peekitem");
    assert_eq!(r.map(|(k, _)| k), Some(s("a")));
    assert_eq!(
        cache.len().expect("len"),
        1,
        "the item with the lost value is gone"
    );
    assert!(!cache.contains("b").expect("contains"));
}

#[test]
fn peek_removes_a_front_item_whose_value_file_is_missing_and_returns_the_next() {
    // python's peek retries the same item forever (its IOError handler `continue`s); here
    // the item, whose value is lost, is removed and the next one returned. The wait below
    // only detects a hang; it is not a measure of speed.
    let dir = tmp();
    let cache = open(dir.path());
    let first = cache.push(vec![1u8; LARGE]).expect("push a large value");
    cache.push(2).expect("push");
    let path = cache
        .read(&first)
        .expect("read")
        .expect("queued")
        .path()
        .expect("file-backed")
        .to_path_buf();
    std::fs::remove_file(path).expect("remove the value file");
    let (tx, rx) = mpsc::channel();
    let peeker = cache.clone();
    // Detached: if peek hangs, the thread is left spinning until the test process exits.
    std::thread::spawn(move || {
        let _ = tx.send(peeker.peek::<i64>().map(|o| o.map(|(k, _)| k)));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("peek returned");
    assert_eq!(r.expect("peek"), Some(int(QUEUE_START + 1)));
    assert_eq!(
        cache.len().expect("len"),
        1,
        "the item with the lost value is gone"
    );
}

// ---------------------------------------------------------------------------------------------
// Tool APIs: set_value / get_value_entry / expire_at / compact
// ---------------------------------------------------------------------------------------------

#[test]
fn set_value_stores_every_kind_as_it_is_and_get_value_entry_returns_it_with_expiry_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    let encoded = diskcache::Codec::encode(&Bincode, &vec![1.5f64, 2.5]).expect("encode");
    let values = [
        diskcache::Value::Bytes(vec![0, 1, 2]),
        diskcache::Value::Str("text".into()),
        diskcache::Value::Int(-7),
        diskcache::Value::Float(2.5),
        diskcache::Value::Encoded(encoded.clone()),
        diskcache::Value::Bytes(vec![9u8; LARGE]),
    ];
    let at = SystemTime::now() + DAY;
    for (i, v) in values.iter().enumerate() {
        let opts = SetOptions::new().expire_at(at).tag("t");
        cache.set_value(i as i64, v, &opts).expect("set_value");
    }
    for (i, v) in values.iter().enumerate() {
        let e = cache
            .get_value_entry(i as i64)
            .expect("get_value_entry")
            .expect("present");
        assert_eq!(&e.value, v);
        assert_eq!(e.tag, Some(s("t")));
        let exp = e.expire_time.expect("expiry kept");
        let diff = match exp.duration_since(at) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_millis(1), "expire_at is absolute");
    }
    let typed: Vec<f64> = cache.get(4).expect("get").expect("present");
    assert_eq!(typed, vec![1.5, 2.5], "encoded bytes were not re-encoded");
    assert_eq!(
        value_files(dir.path()).len(),
        1,
        "the large value has a file"
    );
}

#[test]
fn expire_at_in_the_past_stores_an_already_expired_item() {
    let dir = tmp();
    let cache = open_no_cull(dir.path());
    let opts = SetOptions::new().expire_at(SystemTime::now() - MINUTE);
    cache.set_with("k", 1, &opts).expect("set");
    assert_eq!(cache.get::<i64>("k").expect("get"), None);
    assert_eq!(
        cache.len().expect("len"),
        1,
        "stored, expired, not yet removed"
    );
}

#[test]
fn compact_shrinks_the_index_after_most_items_are_removed_and_keeps_the_rest() {
    let dir = tmp();
    let cache = open(dir.path());
    for i in 0..20_000i64 {
        cache.set(i, vec![7u8; 100]).expect("set");
    }
    cache.compact().expect("compact the full cache");
    let before = cache.engine_info().index_len;
    for i in 0..19_900i64 {
        cache.delete(i).expect("delete");
    }
    cache.compact().expect("compact");
    let info = cache.engine_info();
    assert!(
        info.index_len * 4 < before,
        "index {} bytes after compaction, {} before",
        info.index_len,
        before
    );
    assert_eq!(cache.len().expect("len"), 100);
    for i in 19_900..20_000i64 {
        assert_eq!(cache.get::<Vec<u8>>(i).expect("get"), Some(vec![7u8; 100]));
    }
    drop(cache);
    let reopened = open(dir.path());
    assert_eq!(
        reopened.len().expect("len"),
        100,
        "compaction survives reopening"
    );
    assert_eq!(reopened.check(false).expect("check"), vec![]);
}

#[test]
fn compact_inside_a_transaction_is_refused() {
    let dir = tmp();
    let cache = open(dir.path());
    let r = cache.transact(|| cache.compact());
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[test]
fn setting_of_a_known_setting_never_stored_is_its_default_as_in_python_diskcache() {
    let dir = tmp();
    let cache = open(dir.path());
    assert_eq!(
        cache.setting("cull_limit").expect("setting"),
        Some(json!(10))
    );
    assert_eq!(
        cache.setting("tag_index").expect("setting"),
        Some(json!(false))
    );
    assert_eq!(
        cache.setting("eviction_policy").expect("setting"),
        Some(json!("least-recently-stored"))
    );
    assert_eq!(cache.setting("no_such_setting").expect("setting"), None);
    let all = cache.settings().expect("settings");
    assert_eq!(all.get("size_limit"), Some(&json!(1u64 << 30)));
    assert_eq!(all.get("disk_min_file_size"), Some(&json!(1u64 << 15)));
    cache.reset("cull_limit", 3).expect("reset");
    assert_eq!(
        cache.settings().expect("settings").get("cull_limit"),
        Some(&json!(3))
    );
}

#[test]
fn stats_that_times_out_changing_the_setting_keeps_the_counters() {
    let dir = tmp();
    let cache = Cache::builder()
        .statistics(true)
        .timeout(Duration::from_millis(20))
        .open(dir.path())
        .expect("open");
    cache.set("k", 1).expect("set");
    for _ in 0..5 {
        cache.get::<i64>("k").expect("get");
    }
    let holder = open(dir.path());
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        holder
            .transact(|| {
                locked_tx.send(()).expect("send");
                release_rx.recv().expect("recv");
                Ok(())
            })
            .expect("transact");
    });
    locked_rx
        .recv()
        .expect("the other handle holds the writer lock");
    let r = cache.stats(false, true);
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    release_tx.send(()).expect("release");
    t.join().expect("holder");
    assert_eq!(
        cache.stats(false, true).expect("stats"),
        (5, 0),
        "no hit lost"
    );
    assert_eq!(cache.stats(false, false).expect("stats"), (0, 0), "reset");
}
