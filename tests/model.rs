//! Model-based test: random operation sequences against `Cache` and a `BTreeMap` model,
//! compared after every step, with clean reopens and whole-process kills between steps.
//!
//! Lazy culling is off (`cull_limit(0)`), so an item stored with a zero expiry stays in the
//! cache, invisible to reads but counted by `len`, exactly as python-diskcache keeps it.

use diskcache::storage::{CrashMode, FaultConfig, FaultyStorage};
use diskcache::{Cache, Error, SetOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Small(Vec<u8>),
    /// Past `min_file_size`: stored in a value file.
    Large(u8, usize),
    Int(i64),
}

impl Val {
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Val::Small(b) => Some(b.clone()),
            Val::Large(b, n) => Some(vec![*b; *n]),
            Val::Int(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Expiry {
    Never,
    Now,
}

#[derive(Clone, Debug)]
enum Op {
    Set(u16, Val, Expiry),
    Add(u16, Val),
    Get(u16),
    Delete(u16),
    Pop(u16),
    Incr(u16, i32),
    Touch(u16, Expiry),
    Contains(u16),
    Txn(Vec<(u16, Option<Val>)>, bool),
    Reopen,
    Kill,
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Val::Small),
        1 => (any::<u8>(), 1024usize..4000).prop_map(|(b, n)| Val::Large(b, n)),
        2 => (-1000i64..1000).prop_map(Val::Int),
    ]
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![4 => Just(Expiry::Never), 1 => Just(Expiry::Now)]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u16..40;
    prop_oneof![
        8 => (k.clone(), val(), expiry()).prop_map(|(k, v, e)| Op::Set(k, v, e)),
        2 => (k.clone(), val()).prop_map(|(k, v)| Op::Add(k, v)),
        3 => k.clone().prop_map(Op::Get),
        2 => k.clone().prop_map(Op::Delete),
        2 => k.clone().prop_map(Op::Pop),
        2 => (k.clone(), -50i32..50).prop_map(|(k, d)| Op::Incr(k, d)),
        1 => (k.clone(), expiry()).prop_map(|(k, e)| Op::Touch(k, e)),
        1 => k.clone().prop_map(Op::Contains),
        2 => (proptest::collection::vec((k, proptest::option::of(val())), 0..12), any::<bool>()).prop_map(|(ops, ok)| Op::Txn(ops, ok)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Kill),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Item {
    val: Val,
    expired: bool,
}

type Model = BTreeMap<u16, Item>;

fn live(m: &Model, k: u16) -> Option<&Val> {
    m.get(&k).filter(|i| !i.expired).map(|i| &i.val)
}

fn open(storage: &FaultyStorage) -> Cache {
    Cache::builder()
        .storage(Arc::new(storage.clone()))
        .cull_limit(0)
        .min_file_size(1024)
        .checkpoint_bytes(16 << 10)
        .open(Path::new("/model"))
        .expect("open")
}

fn store(c: &Cache, k: u16, v: &Val, opts: &SetOptions) {
    match v {
        Val::Int(i) => c.set_with(k, i, opts),
        other => c.set_with(k, other.bytes().expect("bytes"), opts),
    }
    .expect("set");
}

fn read(c: &Cache, k: u16, model: &Model) -> Option<Val> {
    // Read with the type the model expects; a missing key reads as None either way.
    match live(model, k) {
        Some(Val::Int(_)) => c.get::<i64>(k).expect("get int").map(Val::Int),
        Some(expected) => c
            .get::<Vec<u8>>(k)
            .expect("get bytes")
            .map(|b| match expected {
                Val::Large(..) => Val::Large(b.first().copied().unwrap_or(0), b.len()),
                _ => Val::Small(b),
            }),
        None => c.get::<Vec<u8>>(k).ok().flatten().map(Val::Small),
    }
}

fn opts(e: Expiry) -> SetOptions {
    match e {
        Expiry::Never => SetOptions::new(),
        Expiry::Now => SetOptions::new().expire(Duration::ZERO),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cache_matches_a_btreemap_across_reopens_and_kills(ops in proptest::collection::vec(op(), 1..60)) {
        let storage = FaultyStorage::new(FaultConfig::default());
        let mut c = open(&storage);
        let mut m: Model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Set(k, v, e) => {
                    store(&c, k, &v, &opts(e));
                    m.insert(k, Item { val: v, expired: matches!(e, Expiry::Now) });
                }
                Op::Add(k, v) => {
                    let added = match &v {
                        Val::Int(i) => c.add(k, i),
                        other => c.add(k, other.bytes().expect("bytes")),
                    }.expect("add");
                    prop_assert_eq!(added, live(&m, k).is_none());
                    if added {
                        m.insert(k, Item { val: v, expired: false });
                    }
                }
                Op::Get(k) => {
                    prop_assert_eq!(read(&c, k, &m), live(&m, k).cloned());
                }
                Op::Delete(k) => {
                    let had = live(&m, k).is_some();
                    prop_assert_eq!(c.delete(k).expect("delete"), had);
                    if had {
                        m.remove(&k);
                    }
                }
                Op::Pop(k) => {
                    let want = live(&m, k).cloned();
                    let got = match &want {
                        Some(Val::Int(_)) => c.pop::<i64>(k).expect("pop").map(Val::Int),
                        Some(Val::Large(..)) => c.pop::<Vec<u8>>(k).expect("pop").map(|b| Val::Large(b[0], b.len())),
                        _ => c.pop::<Vec<u8>>(k).expect("pop").map(Val::Small),
                    };
                    prop_assert_eq!(got, want.clone());
                    if want.is_some() {
                        m.remove(&k);
                    }
                }
                Op::Incr(k, d) => {
                    let r = c.incr(k, i64::from(d));
                    match live(&m, k).cloned() {
                        Some(Val::Int(i)) => {
                            prop_assert_eq!(r.expect("incr"), i + i64::from(d));
                            m.insert(k, Item { val: Val::Int(i + i64::from(d)), expired: false });
                        }
                        Some(_) => prop_assert!(matches!(r, Err(Error::TypeMismatch(_)))),
                        None => {
                            prop_assert_eq!(r.expect("incr"), i64::from(d));
                            m.insert(k, Item { val: Val::Int(i64::from(d)), expired: false });
                        }
                    }
                }
                Op::Touch(k, e) => {
                    let there = live(&m, k).is_some();
                    let expire = match e { Expiry::Never => None, Expiry::Now => Some(Duration::ZERO) };
                    prop_assert_eq!(c.touch(k, expire).expect("touch"), there);
                    if there {
                        if let Some(i) = m.get_mut(&k) {
                            i.expired = matches!(e, Expiry::Now);
                        }
                    }
                }
                Op::Contains(k) => {
                    prop_assert_eq!(c.contains(k).expect("contains"), live(&m, k).is_some());
                }
                Op::Txn(writes, commit) => {
                    let r = c.transact(|| {
                        for (k, v) in &writes {
                            match v {
                                Some(v) => store(&c, *k, v, &SetOptions::new()),
                                None => { c.delete(*k)?; }
                            }
                        }
                        if commit { Ok(()) } else { Err(Error::InvalidArgument("abort".into())) }
                    });
                    prop_assert_eq!(r.is_ok(), commit);
                    if commit {
                        for (k, v) in writes {
                            match v {
                                Some(v) => { m.insert(k, Item { val: v, expired: false }); }
                                None => {
                                    if live(&m, k).is_some() {
                                        m.remove(&k);
                                    }
                                }
                            }
                        }
                    }
                }
                Op::Reopen => {
                    drop(c);
                    c = open(&storage);
                }
                Op::Kill => {
                    // Every process dies at once; the page cache keeps what was written.
                    drop(c);
                    storage.crash(CrashMode::Kill);
                    c = open(&storage);
                }
            }
            prop_assert_eq!(c.len().expect("len"), m.len() as u64);
            for k in [0u16, 1, 7, 20, 39] {
                prop_assert_eq!(read(&c, k, &m), live(&m, k).cloned(), "key {}", k);
            }
        }
        for k in 0..40u16 {
            prop_assert_eq!(read(&c, k, &m), live(&m, k).cloned(), "key {} at the end", k);
        }
    }
}
