//! Model-based tests of the collections: random operation sequences against `Deque` and a
//! `VecDeque` (with a `maxlen`), and against `Index` and an insertion-ordered list of pairs,
//! compared after every step, with the collection closed and reopened between steps.

use diskcache::{Cache, Deque, EvictionPolicy, Index};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::path::Path;

/// Values of a few bytes, or past the default `min_file_size` (stored in value files).
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..6),
        1 => (any::<u8>(), 33_000usize..34_000).prop_map(|(b, n)| vec![b; n]),
    ]
}

#[derive(Clone, Debug)]
enum DequeOp {
    Append(Vec<u8>),
    AppendLeft(Vec<u8>),
    Extend(Vec<Vec<u8>>),
    ExtendLeft(Vec<Vec<u8>>),
    Pop,
    PopLeft,
    Peek,
    PeekLeft,
    Rotate(i64),
    Reverse,
    Remove(Vec<u8>),
    Get(u64),
    Set(u64, Vec<u8>),
    RemoveAt(u64),
    Count(Vec<u8>),
    IndexOf(Vec<u8>),
    Clear,
    SetMaxlen(Option<u64>),
    Reopen,
}

fn deque_op() -> impl Strategy<Value = DequeOp> {
    let small = || proptest::collection::vec(any::<u8>(), 0..2);
    prop_oneof![
        6 => value().prop_map(DequeOp::Append),
        4 => value().prop_map(DequeOp::AppendLeft),
        1 => proptest::collection::vec(value(), 0..5).prop_map(DequeOp::Extend),
        1 => proptest::collection::vec(value(), 0..5).prop_map(DequeOp::ExtendLeft),
        3 => Just(DequeOp::Pop),
        3 => Just(DequeOp::PopLeft),
        1 => Just(DequeOp::Peek),
        1 => Just(DequeOp::PeekLeft),
        2 => (-12i64..12).prop_map(DequeOp::Rotate),
        1 => Just(DequeOp::Reverse),
        1 => small().prop_map(DequeOp::Remove),
        2 => (0u64..12).prop_map(DequeOp::Get),
        1 => (0u64..12, value()).prop_map(|(i, v)| DequeOp::Set(i, v)),
        1 => (0u64..12).prop_map(DequeOp::RemoveAt),
        1 => small().prop_map(DequeOp::Count),
        1 => small().prop_map(DequeOp::IndexOf),
        1 => Just(DequeOp::Clear),
        1 => proptest::option::of(0u64..8).prop_map(DequeOp::SetMaxlen),
        1 => Just(DequeOp::Reopen),
    ]
}

/// `collections.deque`'s semantics, with python-diskcache's stored, settable `maxlen`.
#[derive(Debug, Default)]
struct DequeModel {
    items: VecDeque<Vec<u8>>,
    maxlen: Option<u64>,
}

impl DequeModel {
    fn full(&self) -> bool {
        self.maxlen.is_some_and(|m| self.items.len() as u64 > m)
    }
    fn append(&mut self, v: Vec<u8>) {
        self.items.push_back(v);
        while self.full() {
            self.items.pop_front();
        }
    }
    fn appendleft(&mut self, v: Vec<u8>) {
        self.items.push_front(v);
        while self.full() {
            self.items.pop_back();
        }
    }
}

fn open_deque(dir: &Path) -> Deque<Vec<u8>> {
    Deque::open(dir).expect("open the deque")
}

fn run_deque(ops: Vec<DequeOp>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = open_deque(dir.path());
    let mut m = DequeModel::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op.clone() {
            DequeOp::Append(v) => {
                d.append(&v).expect("append");
                m.append(v);
            }
            DequeOp::AppendLeft(v) => {
                d.appendleft(&v).expect("appendleft");
                m.appendleft(v);
            }
            DequeOp::Extend(vs) => {
                d.extend(&vs).expect("extend");
                vs.into_iter().for_each(|v| m.append(v));
            }
            DequeOp::ExtendLeft(vs) => {
                d.extendleft(&vs).expect("extendleft");
                vs.into_iter().for_each(|v| m.appendleft(v));
            }
            DequeOp::Pop => prop_assert_eq!(d.pop().expect("pop"), m.items.pop_back()),
            DequeOp::PopLeft => {
                prop_assert_eq!(d.popleft().expect("popleft"), m.items.pop_front())
            }
            DequeOp::Peek => prop_assert_eq!(d.peek().expect("peek"), m.items.back().cloned()),
            DequeOp::PeekLeft => {
                prop_assert_eq!(d.peekleft().expect("peekleft"), m.items.front().cloned())
            }
            DequeOp::Rotate(n) => {
                d.rotate(n).expect("rotate");
                if !m.items.is_empty() {
                    let len = m.items.len() as i64;
                    let right = n.rem_euclid(len) as usize;
                    m.items.rotate_right(right);
                }
            }
            DequeOp::Reverse => {
                d.reverse().expect("reverse");
                m.items = m.items.iter().rev().cloned().collect();
            }
            DequeOp::Remove(v) => {
                let pos = m.items.iter().position(|x| *x == v);
                if let Some(p) = pos {
                    m.items.remove(p);
                }
                prop_assert_eq!(d.remove(&v).expect("remove"), pos.is_some());
            }
            DequeOp::Get(i) => {
                prop_assert_eq!(d.get(i).expect("get"), m.items.get(i as usize).cloned())
            }
            DequeOp::Set(i, v) => {
                let r = d.set(i, &v);
                match m.items.get_mut(i as usize) {
                    Some(slot) => {
                        r.expect("set in range");
                        *slot = v;
                    }
                    None => prop_assert!(r.is_err(), "set out of range must fail"),
                }
            }
            DequeOp::RemoveAt(i) => {
                prop_assert_eq!(
                    d.remove_at(i).expect("remove_at"),
                    m.items.remove(i as usize)
                )
            }
            DequeOp::Count(v) => prop_assert_eq!(
                d.count(&v).expect("count"),
                m.items.iter().filter(|x| **x == v).count() as u64
            ),
            DequeOp::IndexOf(v) => prop_assert_eq!(
                d.index(&v).expect("index"),
                m.items.iter().position(|x| *x == v).map(|p| p as u64)
            ),
            DequeOp::Clear => {
                d.clear().expect("clear");
                m.items.clear();
            }
            DequeOp::SetMaxlen(n) => {
                d.set_maxlen(n).expect("set_maxlen");
                m.maxlen = n;
                while m.full() {
                    m.items.pop_front();
                }
            }
            DequeOp::Reopen => {
                drop(d);
                d = open_deque(dir.path());
                prop_assert_eq!(d.maxlen().expect("maxlen"), m.maxlen, "maxlen is stored");
            }
        }
        let want: Vec<Vec<u8>> = m.items.iter().cloned().collect();
        prop_assert_eq!(
            d.len().expect("len"),
            want.len() as u64,
            "len after step {}: {:?}",
            step,
            op
        );
        prop_assert_eq!(
            &d.to_vec().expect("to_vec"),
            &want,
            "items after step {}: {:?}",
            step,
            op
        );
        let rev: Vec<Vec<u8>> = d
            .iter_rev()
            .collect::<diskcache::Result<_>>()
            .expect("iter_rev");
        prop_assert_eq!(rev, want.iter().rev().cloned().collect::<Vec<_>>());
    }
    prop_assert_eq!(d.cache().check(false).expect("check"), vec![]);
    Ok(())
}

#[derive(Clone, Debug)]
enum IndexOp {
    Insert(u8, u32),
    Extend(Vec<(u8, u32)>),
    Remove(u8),
    Pop(u8),
    PopItem(bool),
    PeekItem(bool),
    SetDefault(u8, u32),
    Get(u8),
    Contains(u8),
    Clear,
    Reopen,
}

fn index_op() -> impl Strategy<Value = IndexOp> {
    let k = || 0u8..24;
    prop_oneof![
        8 => (k(), any::<u32>()).prop_map(|(k, v)| IndexOp::Insert(k, v)),
        1 => proptest::collection::vec((k(), any::<u32>()), 0..6).prop_map(IndexOp::Extend),
        2 => k().prop_map(IndexOp::Remove),
        2 => k().prop_map(IndexOp::Pop),
        2 => any::<bool>().prop_map(IndexOp::PopItem),
        1 => any::<bool>().prop_map(IndexOp::PeekItem),
        2 => (k(), any::<u32>()).prop_map(|(k, v)| IndexOp::SetDefault(k, v)),
        2 => k().prop_map(IndexOp::Get),
        1 => k().prop_map(IndexOp::Contains),
        1 => Just(IndexOp::Clear),
        1 => Just(IndexOp::Reopen),
    ]
}

/// A dict: pairs in insertion order; overwriting keeps the place.
#[derive(Debug, Default)]
struct IndexModel(Vec<(u8, u32)>);

impl IndexModel {
    fn get(&self, k: u8) -> Option<u32> {
        self.0.iter().find(|(x, _)| *x == k).map(|(_, v)| *v)
    }
    fn insert(&mut self, k: u8, v: u32) {
        match self.0.iter_mut().find(|(x, _)| *x == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn remove(&mut self, k: u8) -> Option<u32> {
        let p = self.0.iter().position(|(x, _)| *x == k)?;
        Some(self.0.remove(p).1)
    }
}

fn open_index(dir: &Path) -> Index<u8, u32> {
    Index::open(dir).expect("open the index")
}

fn run_index(ops: Vec<IndexOp>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x = open_index(dir.path());
    let mut m = IndexModel::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op.clone() {
            IndexOp::Insert(k, v) => {
                x.insert(&k, &v).expect("insert");
                m.insert(k, v);
            }
            IndexOp::Extend(kvs) => {
                x.extend(kvs.iter().map(|(k, v)| (k, v))).expect("extend");
                kvs.into_iter().for_each(|(k, v)| m.insert(k, v));
            }
            IndexOp::Remove(k) => {
                prop_assert_eq!(x.remove(&k).expect("remove"), m.remove(k).is_some())
            }
            IndexOp::Pop(k) => prop_assert_eq!(x.pop(&k).expect("pop"), m.remove(k)),
            IndexOp::PopItem(last) => {
                let want = if last {
                    m.0.pop()
                } else if m.0.is_empty() {
                    None
                } else {
                    Some(m.0.remove(0))
                };
                prop_assert_eq!(x.popitem(last).expect("popitem"), want);
            }
            IndexOp::PeekItem(last) => {
                let want = if last { m.0.last() } else { m.0.first() };
                prop_assert_eq!(x.peekitem(last).expect("peekitem"), want.copied());
            }
            IndexOp::SetDefault(k, v) => {
                let want = match m.get(k) {
                    Some(old) => old,
                    None => {
                        m.insert(k, v);
                        v
                    }
                };
                prop_assert_eq!(x.setdefault(&k, &v).expect("setdefault"), want);
            }
            IndexOp::Get(k) => prop_assert_eq!(x.get(&k).expect("get"), m.get(k)),
            IndexOp::Contains(k) => {
                prop_assert_eq!(x.contains(&k).expect("contains"), m.get(k).is_some())
            }
            IndexOp::Clear => {
                x.clear().expect("clear");
                m.0.clear();
            }
            IndexOp::Reopen => {
                drop(x);
                x = open_index(dir.path());
            }
        }
        let items: Vec<(u8, u32)> = x.items().collect::<diskcache::Result<_>>().expect("items");
        prop_assert_eq!(&items, &m.0, "items after step {}: {:?}", step, op);
        let keys: Vec<u8> = x
            .keys_rev()
            .collect::<diskcache::Result<_>>()
            .expect("keys_rev");
        prop_assert_eq!(keys, m.0.iter().rev().map(|(k, _)| *k).collect::<Vec<_>>());
        let values: Vec<u32> = x
            .values()
            .collect::<diskcache::Result<_>>()
            .expect("values");
        prop_assert_eq!(values, m.0.iter().map(|(_, v)| *v).collect::<Vec<_>>());
        prop_assert!(x
            .eq_ordered(m.0.iter().map(|(k, v)| (k, v)))
            .expect("eq_ordered"));
        prop_assert!(x
            .eq_unordered(m.0.iter().rev().map(|(k, v)| (k, v)))
            .expect("eq_unordered"));
        if m.0.len() > 1 {
            prop_assert!(
                !x.eq_ordered(m.0.iter().rev().map(|(k, v)| (k, v)))
                    .expect("eq_ordered"),
                "another order is not equal"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn deque_matches_a_vecdeque_with_maxlen_across_reopens(ops in proptest::collection::vec(deque_op(), 1..60)) {
        run_deque(ops)?;
    }

    #[test]
    fn index_matches_an_insertion_ordered_map_across_reopens(ops in proptest::collection::vec(index_op(), 1..80)) {
        run_index(ops)?;
    }
}

#[test]
fn a_deque_refuses_a_cache_that_can_evict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("open");
    assert!(Deque::<u8>::from_cache(cache.clone()).is_err());
    assert!(Index::<u8, u8>::from_cache(cache).is_err());
    let none = Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .open(dir.path())
        .expect("reopen with policy none");
    assert!(Deque::<u8>::from_cache(none).is_ok());
}
