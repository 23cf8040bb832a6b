//! Behaviour tests for `Deque`, ported from python-diskcache's `tests/test_deque.py`.
//!
//! Each test pins one behaviour. Where the Rust library deliberately differs from
//! python-diskcache (and documents it in the rustdoc of `Deque`), the test pins the Rust
//! behaviour and says so: `maxlen` is stored with the deque, `rotate`/`reverse`/`extend` are
//! atomic, an empty pop or peek is `Ok(None)` rather than `IndexError`, a missing value's
//! `remove` is `Ok(false)` rather than `ValueError`, and indexes are unsigned (python's
//! negative indexes are `len - n`).
//!
//! python's mocked tests of values vanishing under an iteration (`KeyError` skipping) are
//! ported with real removals through another handle. Nothing asserts on timing.

use diskcache::{Cache, Deque, Error, EvictionPolicy};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn open(dir: &Path) -> Deque<String> {
    Deque::open(dir).expect("open the deque")
}

/// One string per character of `s`.
fn letters(s: &str) -> Vec<String> {
    s.chars().map(String::from).collect()
}

fn s(x: &str) -> String {
    x.to_owned()
}

/// The deque's items, front to back, concatenated.
fn contents(d: &Deque<String>) -> String {
    d.to_vec().expect("to_vec").concat()
}

/// A deque holding the letters of `x`.
fn deque_of(dir: &Path, x: &str) -> Deque<String> {
    let d = open(dir);
    d.extend(letters(x)).expect("extend");
    d
}

// ---------------------------------------------------------------------------------------------
// 1. Opening (test_init, test_state, test_copy, test_repr)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_deque_on_a_directory_keeps_its_items_for_other_handles_and_reopening() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    assert_eq!(deque.directory(), dir.path());
    assert_eq!(deque.to_vec().expect("to_vec"), letters("abcde"));
    let other = open(dir.path());
    assert_eq!(other.to_vec().expect("to_vec"), letters("abcde"));
    drop(deque);
    drop(other);
    assert_eq!(contents(&open(dir.path())), "abcde");
}

#[test]
fn a_temporary_deque_gets_a_new_directory_of_its_own() {
    let a: Deque<String> = Deque::temp().expect("temp");
    let b: Deque<String> = Deque::temp().expect("temp");
    assert_ne!(a.directory(), b.directory());
    a.extend(letters("abc")).expect("extend");
    assert_eq!(contents(&a), "abc");
    assert!(b.is_empty().expect("is_empty"));
    // Not removed on drop (python: "The directory will not be automatically removed").
    let (da, db) = (a.directory().to_path_buf(), b.directory().to_path_buf());
    drop(a);
    drop(b);
    assert!(da.is_dir());
    std::fs::remove_dir_all(&da).expect("remove the first temporary directory");
    std::fs::remove_dir_all(&db).expect("remove the second temporary directory");
}

#[test]
fn a_clone_shares_the_items_rather_than_copying_them() {
    // test_copy: python's copy() shares the directory too.
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    let copy = deque.clone();
    assert_eq!(contents(&copy), "abcde");
    copy.append(&s("f")).expect("append");
    assert_eq!(contents(&deque), "abcdef");
}

#[test]
fn debug_output_names_the_deque_and_its_directory() {
    let dir = tmp();
    let deque = open(dir.path());
    let shown = format!("{deque:?}");
    assert!(shown.starts_with("Deque"), "{shown}");
    assert!(shown.contains(&format!("{:?}", dir.path())), "{shown}");
}

#[test]
fn a_deque_on_a_cache_that_can_evict_is_refused() {
    let dir = tmp();
    let cache = Cache::open(dir.path()).expect("open with the default policy");
    let err = Deque::<String>::from_cache(cache).expect_err("an evicting cache");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let dir2 = tmp();
    let cache = Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .open(dir2.path())
        .expect("open with the none policy");
    assert!(Deque::<String>::from_cache(cache).is_ok());
}

#[test]
fn a_deque_never_evicts_items_even_far_over_the_size_limit() {
    let dir = tmp();
    let cache = Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .size_limit(1000)
        .open(dir.path())
        .expect("open");
    let deque: Deque<String> = Deque::from_cache(cache).expect("from_cache");
    for n in 0..200 {
        deque.append(&format!("{n:0100}")).expect("append");
    }
    deque.cache().cull().expect("cull");
    assert_eq!(deque.len().expect("len"), 200);
    assert_eq!(
        deque.peekleft().expect("peekleft"),
        Some(format!("{:0100}", 0))
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Indexing (test_getsetdel, test_index_*, test_indexerror*)
// ---------------------------------------------------------------------------------------------

#[test]
fn get_set_and_remove_at_address_items_by_position_from_either_end() {
    let dir = tmp();
    let deque = open(dir.path());
    assert_eq!(deque.len().expect("len"), 0);
    for x in letters("abcde") {
        deque.append(&x).expect("append");
    }
    assert_eq!(deque.len().expect("len"), 5);
    for (i, x) in letters("abcde").iter().enumerate() {
        assert_eq!(deque.get(i as u64).expect("get").as_ref(), Some(x));
    }
    for i in 0..5u64 {
        deque.set(i, &i.to_string()).expect("set");
    }
    assert_eq!(contents(&deque), "01234");
    // python deletes deque[0] and deque[-1] in turn.
    let mut removed = Vec::new();
    for i in 0..5 {
        let at = if i % 2 == 1 {
            deque.len().expect("len") - 1
        } else {
            0
        };
        removed.push(deque.remove_at(at).expect("remove_at").expect("an item"));
    }
    assert_eq!(removed, ["0", "4", "1", "3", "2"]);
    assert!(deque.is_empty().expect("is_empty"));
}

#[test]
fn the_last_index_is_the_back_item_like_pythons_minus_one() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcdefghij");
    assert_eq!(deque.get(9).expect("get").as_deref(), Some("j"));
    assert_eq!(deque.get(8).expect("get").as_deref(), Some("i"));
    deque.set(9, &s("J")).expect("set the last");
    assert_eq!(deque.peek().expect("peek").as_deref(), Some("J"));
}

#[test]
fn get_and_remove_at_past_the_end_are_none_and_set_is_an_error() {
    // Rust: python raises IndexError('deque index out of range') for all three.
    let dir = tmp();
    let deque = open(dir.path());
    assert_eq!(deque.get(0).expect("get of an empty deque"), None);
    assert_eq!(
        deque.remove_at(0).expect("remove_at of an empty deque"),
        None
    );
    let err = deque.set(0, &s("x")).expect_err("set of an empty deque");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    deque.append(&s("a")).expect("append");
    assert_eq!(deque.get(1).expect("get past the end"), None);
    assert_eq!(deque.remove_at(1).expect("remove_at past the end"), None);
    let err = deque.set(1, &s("x")).expect_err("set past the end");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(contents(&deque), "a");
}

// ---------------------------------------------------------------------------------------------
// 3. maxlen (test_append, test_appendleft, test_state)
// ---------------------------------------------------------------------------------------------

#[test]
fn append_with_a_maxlen_drops_items_from_the_front() {
    let dir = tmp();
    let deque = open(dir.path()).with_maxlen(Some(3)).expect("maxlen");
    for x in letters("abcde") {
        deque.append(&x).expect("append");
    }
    assert_eq!(contents(&deque), "cde");
}

#[test]
fn appendleft_with_a_maxlen_drops_items_from_the_back() {
    let dir = tmp();
    let deque = open(dir.path()).with_maxlen(Some(3)).expect("maxlen");
    for x in letters("abcde") {
        deque.appendleft(&x).expect("appendleft");
    }
    assert_eq!(contents(&deque), "edc");
}

#[test]
fn extend_with_a_maxlen_keeps_the_last_items() {
    let dir = tmp();
    let deque = open(dir.path()).with_maxlen(Some(2)).expect("maxlen");
    deque.extend(letters("abcde")).expect("extend");
    assert_eq!(contents(&deque), "de");
    deque.extendleft(letters("xyz")).expect("extendleft");
    assert_eq!(contents(&deque), "zy");
}

#[test]
fn setting_a_smaller_maxlen_trims_the_front_at_once() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    assert_eq!(deque.maxlen().expect("maxlen"), None);
    deque.set_maxlen(Some(2)).expect("set_maxlen");
    assert_eq!(contents(&deque), "de");
    deque.set_maxlen(None).expect("no maxlen");
    deque.extend(letters("fgh")).expect("extend");
    assert_eq!(contents(&deque), "defgh");
}

#[test]
fn maxlen_is_stored_with_the_deque_for_every_handle_and_reopening() {
    // Rust: python-diskcache keeps maxlen in the object (and its pickle) only.
    let dir = tmp();
    let first = open(dir.path()).with_maxlen(Some(3)).expect("maxlen");
    let second = open(dir.path());
    assert_eq!(second.maxlen().expect("maxlen"), Some(3));
    second.extend(letters("abcde")).expect("extend");
    assert_eq!(contents(&first), "cde");
    drop(first);
    drop(second);
    let reopened = open(dir.path());
    assert_eq!(reopened.maxlen().expect("maxlen"), Some(3));
    reopened.append(&s("f")).expect("append");
    assert_eq!(contents(&reopened), "def");
}

#[test]
fn a_maxlen_of_zero_keeps_nothing() {
    let dir = tmp();
    let deque = open(dir.path()).with_maxlen(Some(0)).expect("maxlen");
    deque.append(&s("a")).expect("append");
    deque.appendleft(&s("b")).expect("appendleft");
    assert!(deque.is_empty().expect("is_empty"));
}

// ---------------------------------------------------------------------------------------------
// 4. Iteration (test_reversed, test_iter_keyerror, test_reversed_keyerror)
// ---------------------------------------------------------------------------------------------

#[test]
fn iteration_goes_front_to_back_and_iter_rev_back_to_front() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    let forward: Vec<String> = deque.iter().collect::<Result<_, _>>().expect("iter");
    assert_eq!(forward, letters("abcde"));
    let backward: Vec<String> = deque
        .iter_rev()
        .collect::<Result<_, _>>()
        .expect("iter_rev");
    assert_eq!(backward, letters("edcba"));
}

#[test]
fn iteration_skips_items_removed_after_it_started() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    let other = open(dir.path());
    let mut it = deque.iter();
    assert_eq!(it.next().transpose().expect("first").as_deref(), Some("a"));
    assert_eq!(other.remove_at(2).expect("remove_at").as_deref(), Some("c"));
    assert!(other.remove(&s("e")).expect("remove"));
    let rest: Vec<String> = it.collect::<Result<_, _>>().expect("the rest");
    assert_eq!(rest, letters("bd"));
}

#[test]
fn reverse_iteration_skips_items_removed_after_it_started() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    let other = open(dir.path());
    let mut it = deque.iter_rev();
    assert_eq!(it.next().transpose().expect("first").as_deref(), Some("e"));
    assert_eq!(other.popleft().expect("popleft").as_deref(), Some("a"));
    assert!(other.remove(&s("c")).expect("remove"));
    let rest: Vec<String> = it.collect::<Result<_, _>>().expect("the rest");
    assert_eq!(rest, letters("db"));
}

// ---------------------------------------------------------------------------------------------
// 5. Searching (test_count, index, contains)
// ---------------------------------------------------------------------------------------------

#[test]
fn count_counts_the_equal_items() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abbcccddddeeeee");
    for (n, x) in letters("abcde").iter().enumerate() {
        assert_eq!(deque.count(x).expect("count"), n as u64 + 1, "{x}");
    }
    assert_eq!(deque.count(&s("z")).expect("count"), 0);
}

#[test]
fn index_and_contains_find_the_first_equal_item() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcbd");
    assert_eq!(deque.index(&s("b")).expect("index"), Some(1));
    assert_eq!(deque.index(&s("d")).expect("index"), Some(4));
    assert_eq!(deque.index(&s("z")).expect("index"), None);
    assert!(deque.contains(&s("c")).expect("contains"));
    assert!(!deque.contains(&s("z")).expect("contains"));
}

// ---------------------------------------------------------------------------------------------
// 6. Adding and taking (test_extend, test_extendleft, test_pop*, test_popleft*, test_peek)
// ---------------------------------------------------------------------------------------------

#[test]
fn extend_appends_in_order() {
    let dir = tmp();
    let deque = open(dir.path());
    deque.extend(letters("abcde")).expect("extend");
    assert_eq!(contents(&deque), "abcde");
    let more = letters("fg");
    deque.extend(more.iter()).expect("extend by reference");
    assert_eq!(contents(&deque), "abcdefg");
}

#[test]
fn extendleft_adds_each_item_at_the_front_so_they_end_up_reversed() {
    let dir = tmp();
    let deque = open(dir.path());
    deque.extendleft(letters("abcde")).expect("extendleft");
    assert_eq!(contents(&deque), "edcba");
}

#[test]
fn extend_is_one_transaction_that_a_failure_rolls_back() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "ab");
    let r: diskcache::Result<()> = deque.transact(|| {
        deque.extend(letters("cde"))?;
        Err(Error::InvalidArgument("abort".into()))
    });
    assert!(r.is_err());
    assert_eq!(contents(&deque), "ab");
}

#[test]
fn pop_takes_from_the_back() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    let mut expected = letters("abcde");
    while let Some(x) = expected.pop() {
        assert_eq!(deque.pop().expect("pop"), Some(x));
    }
    assert!(deque.is_empty().expect("is_empty"));
}

#[test]
fn popleft_takes_from_the_front() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    for x in letters("abcde") {
        assert_eq!(deque.popleft().expect("popleft"), Some(x));
    }
    assert!(deque.is_empty().expect("is_empty"));
}

#[test]
fn pop_popleft_peek_and_peekleft_of_an_empty_deque_are_none() {
    // Rust: python raises IndexError('pop from an empty deque') / ('peek from ...').
    let dir = tmp();
    let deque = open(dir.path());
    assert_eq!(deque.pop().expect("pop"), None);
    assert_eq!(deque.popleft().expect("popleft"), None);
    assert_eq!(deque.peek().expect("peek"), None);
    assert_eq!(deque.peekleft().expect("peekleft"), None);
}

#[test]
fn peek_of_a_large_file_backed_value_leaves_it_in_place() {
    let dir = tmp();
    let deque: Deque<serde_bytes::ByteBuf> = Deque::open(dir.path()).expect("open");
    let value = serde_bytes::ByteBuf::from(vec![b'x'; 100_000]);
    deque.append(&value).expect("append");
    assert_eq!(deque.len().expect("len"), 1);
    assert_eq!(deque.peek().expect("peek").as_ref(), Some(&value));
    assert_eq!(deque.len().expect("len"), 1);
    assert_eq!(deque.peek().expect("peek again").as_ref(), Some(&value));
    assert_eq!(deque.peekleft().expect("peekleft").as_ref(), Some(&value));
    assert_eq!(deque.len().expect("len"), 1);
    assert_eq!(deque.pop().expect("pop").as_ref(), Some(&value));
    assert!(deque.is_empty().expect("is_empty"));
}

#[test]
fn peek_and_peekleft_show_the_two_ends() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abc");
    assert_eq!(deque.peek().expect("peek").as_deref(), Some("c"));
    assert_eq!(deque.peekleft().expect("peekleft").as_deref(), Some("a"));
    assert_eq!(contents(&deque), "abc");
}

#[test]
fn clear_removes_every_item() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    deque.clear().expect("clear");
    assert!(deque.is_empty().expect("is_empty"));
    deque.append(&s("f")).expect("append after clear");
    assert_eq!(contents(&deque), "f");
}

// ---------------------------------------------------------------------------------------------
// 7. remove, reverse, rotate (test_remove*, test_reverse, test_rotate*)
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_deletes_the_first_equal_item_only() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abaca");
    assert!(deque.remove(&s("a")).expect("remove"));
    assert_eq!(contents(&deque), "baca");
    assert!(deque.remove(&s("a")).expect("remove"));
    assert_eq!(contents(&deque), "bca");
    assert!(deque.remove(&s("a")).expect("remove"));
    assert_eq!(contents(&deque), "bc");
}

#[test]
fn remove_of_a_missing_value_is_false() {
    // Rust: python raises ValueError('deque.remove(value): value not in deque').
    let dir = tmp();
    let deque = open(dir.path());
    assert!(!deque.remove(&s("0")).expect("remove from an empty deque"));
    deque.append(&s("a")).expect("append");
    assert!(!deque.remove(&s("b")).expect("remove a missing value"));
    assert_eq!(contents(&deque), "a");
}

#[test]
fn reverse_reverses_the_items_in_place() {
    let dir = tmp();
    for (before, after) in [("abcde", "edcba"), ("abcd", "dcba"), ("a", "a"), ("", "")] {
        let sub = dir.path().join(format!("d{}", before.len()));
        let deque = deque_of(&sub, before);
        deque.reverse().expect("reverse");
        assert_eq!(contents(&deque), after, "{before}");
        // The ends still work after a reverse.
        deque.append(&s("z")).expect("append");
        deque.appendleft(&s("y")).expect("appendleft");
        assert_eq!(contents(&deque), format!("y{after}z"));
    }
}

#[test]
fn rotate_moves_items_from_the_back_to_the_front() {
    let dir = tmp();
    let deque = open(dir.path());
    // An empty deque rotates to itself.
    deque.rotate(1).expect("rotate empty");
    deque.rotate(-1).expect("rotate empty");
    assert!(deque.is_empty().expect("is_empty"));
    deque.extend(letters("abcde")).expect("extend");
    deque.rotate(3).expect("rotate");
    assert_eq!(contents(&deque), "cdeab");
}

#[test]
fn rotate_by_a_negative_count_moves_items_from_the_front_to_the_back() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    deque.rotate(-2).expect("rotate");
    assert_eq!(contents(&deque), "cdeab");
}

#[test]
fn rotate_counts_steps_modulo_the_length() {
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcde");
    deque.rotate(5).expect("rotate by the length");
    assert_eq!(contents(&deque), "abcde");
    deque.rotate(8).expect("rotate by more than the length");
    assert_eq!(contents(&deque), "cdeab");
    deque.rotate(-8).expect("rotate back");
    assert_eq!(contents(&deque), "abcde");
    deque.rotate(4).expect("rotate by more than half");
    assert_eq!(contents(&deque), "bcdea");
    deque.rotate(i64::MIN).expect("rotate by i64::MIN");
    // i64::MIN = -9223372036854775808; modulo 5 that is a right rotation by 2.
    assert_eq!(contents(&deque), "eabcd");
}

#[test]
fn rotate_is_atomic_so_readers_never_see_an_item_missing() {
    // Rust: python's rotate pops and appends one item at a time, so other readers can see
    // the deque one item short; here each rotate is one transaction. A reader that sees a
    // short deque proves a rotate was not atomic; seeing none cannot prove it was (the
    // reader may not have looked at the right moment), so this can only fail on a bug.
    let dir = tmp();
    let deque = deque_of(dir.path(), "abcdefgh");
    let reader = open(dir.path());
    let done = AtomicBool::new(false);
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let short = std::thread::scope(|sc| {
        let watcher = sc.spawn(|| {
            let mut short = Vec::new();
            started_tx.send(()).expect("signal the start");
            while !done.load(Ordering::SeqCst) {
                let n = reader.len().expect("len");
                if n != 8 {
                    short.push(n);
                }
            }
            short
        });
        started_rx.recv().expect("the watcher started");
        for i in 0..600 {
            deque
                .rotate(if i % 2 == 0 { 4 } else { -3 })
                .expect("rotate");
            // Gives the reader a turn, which a rotate done in steps would show.
            std::thread::yield_now();
        }
        done.store(true, Ordering::SeqCst);
        watcher.join().expect("the watcher")
    });
    assert!(short.is_empty(), "readers saw lengths {short:?}");
    // 300 x (+4) + 300 x (-3) = +300 = 8 * 37 + 4.
    assert_eq!(contents(&deque), "efghabcd");
}

// ---------------------------------------------------------------------------------------------
// 8. Many handles (stress_test_deque_mp, in threads)
// ---------------------------------------------------------------------------------------------

#[test]
fn appends_and_pops_through_several_handles_lose_and_duplicate_nothing() {
    const THREADS: usize = 4;
    const EACH: usize = 100;
    let dir = tmp();
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let dir = dir.path();
            sc.spawn(move || {
                let deque = open(dir);
                for n in 0..EACH {
                    let item = format!("{t}-{n}");
                    if n % 2 == 0 {
                        deque.append(&item).expect("append");
                    } else {
                        deque.appendleft(&item).expect("appendleft");
                    }
                }
            });
        }
    });
    let taken: Vec<Vec<String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let dir = dir.path();
                sc.spawn(move || {
                    let deque = open(dir);
                    let mut mine = Vec::new();
                    loop {
                        let next = if t % 2 == 0 {
                            deque.pop()
                        } else {
                            deque.popleft()
                        };
                        match next.expect("pop") {
                            Some(x) => mine.push(x),
                            None => return mine,
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a popping thread"))
            .collect()
    });
    let mut all: Vec<String> = taken.into_iter().flatten().collect();
    all.sort();
    let mut expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..EACH).map(move |n| format!("{t}-{n}")))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

#[test]
fn reverse_keeps_large_file_backed_and_encoded_values_intact() {
    let dir = tmp();
    let big: Deque<serde_bytes::ByteBuf> = Deque::open(dir.path().join("big")).expect("open");
    let values: Vec<serde_bytes::ByteBuf> = (0..5u8)
        .map(|n| serde_bytes::ByteBuf::from(vec![n; 100_000]))
        .collect();
    big.extend(values.iter()).expect("extend");
    big.reverse().expect("reverse");
    let mut expected = values.clone();
    expected.reverse();
    assert_eq!(big.to_vec().expect("to_vec"), expected);

    let tuples: Deque<(i32, String)> = Deque::open(dir.path().join("tuples")).expect("open");
    let items: Vec<(i32, String)> = (0..4).map(|n| (n, n.to_string())).collect();
    tuples.extend(items.iter()).expect("extend");
    tuples.reverse().expect("reverse");
    let mut expected = items.clone();
    expected.reverse();
    assert_eq!(tuples.to_vec().expect("to_vec"), expected);
}
