//! Behaviour tests for `Index`, ported from python-diskcache's `tests/test_index.py`.
//!
//! Each test pins one behaviour. Where the Rust library deliberately differs from
//! python-diskcache (and documents it in its rustdoc), the test pins the Rust behaviour and
//! says so: a missing key is `Ok(None)`/`Ok(false)` rather than `KeyError`, and python's
//! `==` is split into `eq_ordered` (against an `Index` or `OrderedDict`) and `eq_unordered`
//! (against other mappings). Nothing asserts on timing.

use diskcache::{Cache, Error, EvictionPolicy, Index, MemoizeOptions};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn open(dir: &Path) -> Index<String, i64> {
    Index::open(dir).expect("open the index")
}

fn s(x: &str) -> String {
    x.to_owned()
}

/// python's `{'a': 5, 'b': 4, 'c': 3, 'd': 2, 'e': 1}`.
fn mapping() -> Vec<(String, i64)> {
    vec![
        (s("a"), 5),
        (s("b"), 4),
        (s("c"), 3),
        (s("d"), 2),
        (s("e"), 1),
    ]
}

/// An index holding `letters[i] -> i`, in order.
fn numbered(dir: &Path, letters: &str) -> Index<String, i64> {
    let index = open(dir);
    for (n, k) in letters.chars().enumerate() {
        index.insert(&k.to_string(), &(n as i64)).expect("insert");
    }
    index
}

fn keys(index: &Index<String, i64>) -> String {
    index
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .expect("keys")
        .concat()
}

// ---------------------------------------------------------------------------------------------
// 1. Opening (test_init, test_state, test_repr)
// ---------------------------------------------------------------------------------------------

#[test]
fn an_index_on_a_directory_holds_what_was_stored_for_every_handle() {
    let dir = tmp();
    let index = open(dir.path());
    index.extend(mapping()).expect("extend");
    assert_eq!(index.directory(), dir.path());
    assert!(index.eq_unordered(mapping()).expect("eq"));
    let other = open(dir.path());
    assert!(other.eq_ordered(mapping()).expect("eq"));
    drop(index);
    drop(other);
    // test_state: a pickled Index is its directory, reopened.
    assert!(open(dir.path()).eq_ordered(mapping()).expect("eq"));
}

#[test]
fn extend_takes_pairs_by_value_or_by_reference() {
    // python: Index(directory, mapping), Index(directory, mapping.items()), and update().
    let dir = tmp();
    let index = open(dir.path());
    let pairs = mapping();
    index
        .extend(pairs.iter().map(|(k, v)| (k, v)))
        .expect("extend by reference");
    assert!(index.eq_ordered(mapping()).expect("eq"));
    index.extend([(s("a"), 50)]).expect("extend by value");
    assert_eq!(index.get(&s("a")).expect("get"), Some(50));
    assert_eq!(index.len().expect("len"), 5);
}

#[test]
fn a_temporary_index_gets_a_new_directory_of_its_own() {
    let a: Index<String, i64> = Index::temp().expect("temp");
    let b: Index<String, i64> = Index::temp().expect("temp");
    assert_ne!(a.directory(), b.directory());
    a.extend(mapping()).expect("extend");
    assert!(b.is_empty().expect("is_empty"));
    let (da, db) = (a.directory().to_path_buf(), b.directory().to_path_buf());
    drop(a);
    drop(b);
    assert!(da.is_dir(), "not removed on drop");
    std::fs::remove_dir_all(&da).expect("remove the first temporary directory");
    std::fs::remove_dir_all(&db).expect("remove the second temporary directory");
}

#[test]
fn debug_output_names_the_index_and_its_directory() {
    let dir = tmp();
    let index = open(dir.path());
    let shown = format!("{index:?}");
    assert!(shown.starts_with("Index"), "{shown}");
    assert!(shown.contains(&format!("{:?}", dir.path())), "{shown}");
}

#[test]
fn an_index_on_a_cache_that_can_evict_is_refused() {
    let dir = tmp();
    let cache = Cache::open(dir.path()).expect("open with the default policy");
    let err = Index::<String, i64>::from_cache(cache).expect_err("an evicting cache");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let dir2 = tmp();
    let cache = Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .open(dir2.path())
        .expect("open with the none policy");
    assert!(Index::<String, i64>::from_cache(cache).is_ok());
}

// ---------------------------------------------------------------------------------------------
// 2. Mapping operations (test_getsetdel, test_pop*, test_popitem*, test_setdefault)
// ---------------------------------------------------------------------------------------------

#[test]
fn insert_get_and_remove_round_trip() {
    let dir = tmp();
    let index = open(dir.path());
    assert_eq!(index.len().expect("len"), 0);
    for (n, k) in "abcde".chars().enumerate() {
        index.insert(&k.to_string(), &(n as i64)).expect("insert");
    }
    for (n, k) in "abcde".chars().enumerate() {
        assert_eq!(index.get(&k.to_string()).expect("get"), Some(n as i64));
        assert!(index.contains(&k.to_string()).expect("contains"));
    }
    for k in "abcde".chars() {
        assert!(index.remove(&k.to_string()).expect("remove"));
    }
    assert_eq!(index.len().expect("len"), 0);
    assert!(index.is_empty().expect("is_empty"));
}

#[test]
fn get_and_remove_of_a_missing_key_are_none_and_false() {
    // Rust: python's index[key] and del index[key] raise KeyError.
    let dir = tmp();
    let index = open(dir.path());
    assert_eq!(index.get(&s("a")).expect("get"), None);
    assert!(!index.contains(&s("a")).expect("contains"));
    assert!(!index.remove(&s("a")).expect("remove"));
}

#[test]
fn pop_returns_the_value_and_removes_the_key() {
    let dir = tmp();
    let index = numbered(dir.path(), "abcde");
    assert_eq!(index.pop(&s("a")).expect("pop"), Some(0));
    assert_eq!(index.pop(&s("c")).expect("pop"), Some(2));
    assert_eq!(index.pop(&s("e")).expect("pop"), Some(4));
    assert_eq!(index.pop(&s("b")).expect("pop"), Some(1));
    assert_eq!(index.pop(&s("d")).expect("pop"), Some(3));
    assert_eq!(index.len().expect("len"), 0);
}

#[test]
fn pop_of_a_missing_key_is_none() {
    // Rust: python raises KeyError.
    let dir = tmp();
    let index = open(dir.path());
    assert_eq!(index.pop(&s("a")).expect("pop"), None);
}

#[test]
fn popitem_takes_the_newest_item_or_with_last_false_the_oldest() {
    let dir = tmp();
    let index = numbered(dir.path(), "abcde");
    assert_eq!(index.popitem(true).expect("popitem"), Some((s("e"), 4)));
    assert_eq!(index.popitem(true).expect("popitem"), Some((s("d"), 3)));
    assert_eq!(index.popitem(false).expect("popitem"), Some((s("a"), 0)));
    assert_eq!(index.len().expect("len"), 2);
    assert_eq!(keys(&index), "bc");
}

#[test]
fn popitem_of_an_empty_index_is_none() {
    // Rust: python raises KeyError('dictionary is empty').
    let dir = tmp();
    let index = open(dir.path());
    assert_eq!(index.popitem(true).expect("popitem"), None);
    assert_eq!(index.popitem(false).expect("popitem"), None);
}

#[test]
fn peekitem_shows_the_newest_or_oldest_item_and_leaves_it() {
    let dir = tmp();
    let index = numbered(dir.path(), "abc");
    assert_eq!(index.peekitem(true).expect("peekitem"), Some((s("c"), 2)));
    assert_eq!(index.peekitem(false).expect("peekitem"), Some((s("a"), 0)));
    assert_eq!(index.len().expect("len"), 3);
    let empty_dir = tmp();
    assert_eq!(
        open(empty_dir.path()).peekitem(true).expect("peekitem"),
        None
    );
}

#[test]
fn setdefault_stores_the_default_only_for_a_missing_key() {
    let dir = tmp();
    let index = open(dir.path());
    assert_eq!(index.setdefault(&s("a"), &0).expect("setdefault"), 0);
    assert_eq!(index.setdefault(&s("a"), &1).expect("setdefault"), 0);
    assert_eq!(index.get(&s("a")).expect("get"), Some(0));
}

#[test]
fn concurrent_setdefaults_all_return_the_value_stored_first() {
    const THREADS: i64 = 8;
    let dir = tmp();
    let results: Vec<i64> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let dir = dir.path();
                sc.spawn(move || {
                    let index = open(dir);
                    index.setdefault(&s("k"), &t).expect("setdefault")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread"))
            .collect()
    });
    let stored = open(dir.path()).get(&s("k")).expect("get").expect("stored");
    assert!(
        results.iter().all(|&r| r == stored),
        "{results:?} vs {stored}"
    );
}

#[test]
fn clear_removes_every_item() {
    let dir = tmp();
    let index = numbered(dir.path(), "abcde");
    index.clear().expect("clear");
    assert!(index.is_empty().expect("is_empty"));
    assert_eq!(index.get(&s("a")).expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// 3. Order (test_iter, test_reversed)
// ---------------------------------------------------------------------------------------------

#[test]
fn keys_values_and_items_come_in_insertion_order() {
    let dir = tmp();
    let index = numbered(dir.path(), "cadbe");
    assert_eq!(keys(&index), "cadbe");
    let values: Vec<i64> = index.values().collect::<Result<_, _>>().expect("values");
    assert_eq!(values, [0, 1, 2, 3, 4]);
    let items: Vec<(String, i64)> = index.items().collect::<Result<_, _>>().expect("items");
    for (n, (k, v)) in items.iter().enumerate() {
        assert_eq!(v, &(n as i64));
        assert_eq!(index.get(k).expect("get"), Some(*v));
    }
}

#[test]
fn reverse_iteration_is_newest_first() {
    let dir = tmp();
    let index = numbered(dir.path(), "abcde");
    let rev: Vec<String> = index
        .keys_rev()
        .collect::<Result<_, _>>()
        .expect("keys_rev");
    assert_eq!(rev.concat(), "edcba");
    for (n, k) in rev.iter().enumerate() {
        assert_eq!(index.get(k).expect("get"), Some(4 - n as i64));
    }
    let values: Vec<i64> = index
        .values_rev()
        .collect::<Result<_, _>>()
        .expect("values_rev");
    assert_eq!(values, [4, 3, 2, 1, 0]);
    let items: Vec<(String, i64)> = index
        .items_rev()
        .collect::<Result<_, _>>()
        .expect("items_rev");
    assert_eq!(items.first(), Some(&(s("e"), 4)));
    assert_eq!(items.last(), Some(&(s("a"), 0)));
}

#[test]
fn overwriting_a_key_keeps_its_place_and_reinserting_one_puts_it_last() {
    let dir = tmp();
    let index = numbered(dir.path(), "abc");
    index.insert(&s("a"), &10).expect("overwrite");
    assert_eq!(keys(&index), "abc");
    assert_eq!(index.get(&s("a")).expect("get"), Some(10));
    assert!(index.remove(&s("b")).expect("remove"));
    index.insert(&s("b"), &11).expect("insert again");
    assert_eq!(keys(&index), "acb");
}

#[test]
fn values_and_items_skip_items_removed_after_iteration_started() {
    let dir = tmp();
    let index = numbered(dir.path(), "abcde");
    let other = open(dir.path());
    let mut values = index.values();
    assert_eq!(values.next().transpose().expect("first"), Some(0));
    assert!(other.remove(&s("c")).expect("remove"));
    let rest: Vec<i64> = values.collect::<Result<_, _>>().expect("the rest");
    assert_eq!(rest, [1, 3, 4]);
    let mut items = index.items();
    assert_eq!(items.next().transpose().expect("first"), Some((s("a"), 0)));
    assert_eq!(other.pop(&s("e")).expect("pop"), Some(4));
    let rest: Vec<(String, i64)> = items.collect::<Result<_, _>>().expect("the rest");
    assert_eq!(rest, [(s("b"), 1), (s("d"), 3)]);
}

// ---------------------------------------------------------------------------------------------
// 4. Equality (python's __eq__)
// ---------------------------------------------------------------------------------------------

#[test]
fn eq_ordered_needs_the_same_items_in_the_same_order() {
    // python: index == OrderedDict(...) (or another Index) is order-sensitive.
    let dir = tmp();
    let index = open(dir.path());
    index.extend([(s("a"), 1), (s("b"), 2)]).expect("extend");
    assert!(index.eq_ordered([(s("a"), 1), (s("b"), 2)]).expect("eq"));
    assert!(!index.eq_ordered([(s("b"), 2), (s("a"), 1)]).expect("eq"));
    assert!(!index.eq_ordered([(s("a"), 1), (s("b"), 3)]).expect("eq"));
    assert!(!index.eq_ordered([(s("a"), 1)]).expect("eq"));
    assert!(!index
        .eq_ordered([(s("a"), 1), (s("b"), 2), (s("c"), 3)])
        .expect("eq"));
}

#[test]
fn eq_unordered_needs_the_same_items_in_any_order() {
    // python: index == {'b': 2, 'a': 1} is order-insensitive.
    let dir = tmp();
    let index = open(dir.path());
    index.extend([(s("a"), 1), (s("b"), 2)]).expect("extend");
    assert!(index.eq_unordered([(s("b"), 2), (s("a"), 1)]).expect("eq"));
    assert!(!index.eq_unordered([(s("b"), 2), (s("a"), 5)]).expect("eq"));
    assert!(!index.eq_unordered([(s("a"), 1)]).expect("eq"));
    assert!(!index
        .eq_unordered([(s("a"), 1), (s("b"), 2), (s("c"), 3)])
        .expect("eq"));
    let empty_dir = tmp();
    let empty = open(empty_dir.path());
    assert!(empty.eq_unordered(Vec::<(String, i64)>::new()).expect("eq"));
    assert!(empty.eq_ordered(Vec::<(String, i64)>::new()).expect("eq"));
}

// ---------------------------------------------------------------------------------------------
// 5. Queue and memoize (push/pull, test_memoize)
// ---------------------------------------------------------------------------------------------

#[test]
fn push_and_pull_make_a_first_in_first_out_queue() {
    let dir = tmp();
    let index: Index<i64, String> = Index::open(dir.path()).expect("open");
    for x in ["a", "b", "c"] {
        index.push(&s(x)).expect("push");
    }
    assert_eq!(index.len().expect("len"), 3);
    let mut pulled = Vec::new();
    while let Some((_, v)) = index.pull().expect("pull") {
        pulled.push(v);
    }
    assert_eq!(pulled, ["a", "b", "c"]);
    assert!(index.is_empty().expect("is_empty"));
}

#[test]
fn a_memoized_function_computes_once_and_then_hits() {
    const COUNT: u64 = 100;
    let dir = tmp();
    let index: Index<String, u64> = Index::open(dir.path()).expect("open");
    let calls = AtomicUsize::new(0);
    let square = index.memoize("square", MemoizeOptions::new(), |n: &u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        n * n
    });
    index.cache().stats(true, false).expect("enable statistics");
    for n in 0..COUNT {
        assert_eq!(square.call(&n).expect("call"), n * n);
    }
    let (hits1, misses1) = index.cache().stats(true, false).expect("stats");
    assert_eq!(misses1, COUNT);
    for n in 0..COUNT {
        assert_eq!(square.call(&n).expect("call"), n * n);
    }
    let (hits2, misses2) = index.cache().stats(true, false).expect("stats");
    assert_eq!(hits2, hits1 + COUNT);
    assert_eq!(misses2, misses1);
    assert_eq!(calls.load(Ordering::SeqCst), COUNT as usize);
}

#[test]
fn transact_makes_several_operations_one_that_a_failure_rolls_back() {
    let dir = tmp();
    let index = numbered(dir.path(), "ab");
    let r: diskcache::Result<()> = index.transact(|| {
        index.insert(&s("c"), &2)?;
        index.remove(&s("a"))?;
        Err(Error::InvalidArgument("abort".into()))
    });
    assert!(r.is_err());
    assert_eq!(keys(&index), "ab");
    index
        .transact(|| {
            index.insert(&s("c"), &2)?;
            index.remove(&s("a")).map(|_| ())
        })
        .expect("transact");
    assert_eq!(keys(&index), "bc");
}
