//! Model-based test of eviction, expiry and culling: random operations against `Cache` and a
//! model that knows each policy's order, compared after every step, with reopens.
//!
//! Whether a write culls by size depends on the volume estimate, so the model does not
//! predict *whether* size culling happens, only *which* items go and how many: first up to
//! `cull_limit` expired items in expiry order, then, if any, a prefix of the policy's order
//! of exactly what is left of `cull_limit`.

use diskcache::storage::{FaultConfig, FaultyStorage};
use diskcache::{Cache, EvictionPolicy, Key, SetOptions};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug)]
enum Op {
    Set(u8, u16, bool),
    Get(u8),
    Delete(u8),
    Expire,
    Cull,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..24;
    prop_oneof![
        8 => (k.clone(), 20u16..400, proptest::bool::weighted(0.2)).prop_map(|(k, n, e)| Op::Set(k, n, e)),
        6 => k.clone().prop_map(Op::Get),
        2 => k.prop_map(Op::Delete),
        1 => Just(Op::Expire),
        1 => Just(Op::Cull),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug)]
struct Item {
    /// What the value holds (the step that stored it) and its length.
    stamp: u32,
    len: u16,
    rowid: u64,
    store: u64,
    access: u64,
    count: u64,
    /// The step at which it was stored already expired.
    expired: Option<u64>,
}

struct Model {
    items: BTreeMap<u8, Item>,
    next_rowid: u64,
    policy: EvictionPolicy,
}

impl Model {
    /// Live items in eviction order (`None` policy: none).
    fn policy_order(&self, among: &BTreeSet<u8>) -> Vec<u8> {
        let mut v: Vec<(u64, u64, u8)> = among
            .iter()
            .filter_map(|k| self.items.get(k).map(|i| (k, i)))
            .filter_map(|(k, i)| {
                let order = match self.policy {
                    EvictionPolicy::LeastRecentlyStored => i.store,
                    EvictionPolicy::LeastRecentlyUsed => i.access,
                    EvictionPolicy::LeastFrequentlyUsed => i.count,
                    EvictionPolicy::None => return None,
                };
                Some((order, i.rowid, *k))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, k)| k).collect()
    }

    /// Expired items stored before `step`, in expiry order.
    fn expired_before(&self, step: u64) -> Vec<u8> {
        let mut v: Vec<(u64, u64, u8)> = self
            .items
            .iter()
            .filter_map(|(k, i)| i.expired.filter(|e| *e < step).map(|e| (e, i.rowid, *k)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, k)| k).collect()
    }
}

fn open(s: &FaultyStorage, policy: EvictionPolicy, cull_limit: u64) -> Cache {
    Cache::builder()
        .storage(Arc::new(s.clone()))
        .eviction_policy(policy)
        .size_limit(3_000)
        .cull_limit(cull_limit)
        .checkpoint_bytes(16 << 10)
        .open(Path::new("/m"))
        .expect("open")
}

fn keys_in(c: &Cache) -> BTreeSet<u8> {
    c.iter()
        .map(|k| match k.expect("iterate") {
            Key::Int(i) => u8::try_from(i).expect("small key"),
            other => panic!("unexpected key {other}"),
        })
        .collect()
}

fn value(stamp: u32, len: u16) -> Vec<u8> {
    let mut v = stamp.to_le_bytes().to_vec();
    v.resize(usize::from(len).max(4), 0x5a);
    v
}

fn policy() -> impl Strategy<Value = EvictionPolicy> {
    prop_oneof![
        Just(EvictionPolicy::LeastRecentlyStored),
        Just(EvictionPolicy::LeastRecentlyUsed),
        Just(EvictionPolicy::LeastFrequentlyUsed),
        Just(EvictionPolicy::None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn eviction_expiry_and_culling_follow_the_policy(
        policy in policy(),
        cull_limit in 1u64..4,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let storage = FaultyStorage::new(FaultConfig::default());
        let mut c = open(&storage, policy, cull_limit);
        let mut m = Model { items: BTreeMap::new(), next_rowid: 1, policy };
        for (step, op) in ops.into_iter().enumerate() {
            let step = step as u64 + 1;
            let before: BTreeSet<u8> = m.items.keys().copied().collect();
            match op {
                Op::Set(k, len, expired) => {
                    let opts = if expired { SetOptions::new().expire(Duration::ZERO) } else { SetOptions::new() };
                    c.set_with(k, value(step as u32, len), &opts).expect("set");
                    let rowid = match m.items.get(&k) {
                        Some(i) => i.rowid,
                        None => {
                            m.next_rowid += 1;
                            m.next_rowid - 1
                        }
                    };
                    m.items.insert(k, Item { stamp: step as u32, len, rowid, store: step, access: step, count: 0, expired: expired.then_some(step) });
                    // Which items did the write cull?
                    let now: BTreeSet<u8> = keys_in(&c);
                    let mut all: BTreeSet<u8> = before.clone();
                    all.insert(k);
                    let gone: BTreeSet<u8> = all.difference(&now).copied().collect();
                    prop_assert!(now.is_subset(&all), "keys appeared from nowhere");
                    let expired_order = m.expired_before(step);
                    let n_expired = expired_order.len().min(cull_limit as usize);
                    let want_expired: BTreeSet<u8> = expired_order[..n_expired].iter().copied().collect();
                    prop_assert!(want_expired.is_subset(&gone), "expired items {:?} should have been culled, gone {:?}", want_expired, gone);
                    let by_size: BTreeSet<u8> = gone.difference(&want_expired).copied().collect();
                    let left = cull_limit as usize - n_expired;
                    let candidates: BTreeSet<u8> = all.difference(&want_expired).copied().collect();
                    let order = m.policy_order(&candidates);
                    if !by_size.is_empty() {
                        prop_assert!(policy != EvictionPolicy::None, "the none policy never culls by size");
                        let n = left.min(order.len());
                        let want: BTreeSet<u8> = order[..n].iter().copied().collect();
                        prop_assert_eq!(&by_size, &want, "size culling under {:?}: order {:?}", policy, order);
                    }
                    for g in &gone {
                        m.items.remove(g);
                    }
                }
                Op::Get(k) => {
                    let got: Option<Vec<u8>> = c.get(k).expect("get");
                    let live = m.items.get(&k).filter(|i| i.expired.is_none());
                    prop_assert_eq!(got, live.map(|i| value(i.stamp, i.len)));
                    if let Some(i) = m.items.get_mut(&k).filter(|i| i.expired.is_none()) {
                        i.access = step;
                        i.count += 1;
                    }
                }
                Op::Delete(k) => {
                    let live = m.items.get(&k).is_some_and(|i| i.expired.is_none());
                    prop_assert_eq!(c.delete(k).expect("delete"), live);
                    if live {
                        m.items.remove(&k);
                    }
                }
                Op::Expire => {
                    let n = c.expire_at(SystemTime::now() + Duration::from_secs(1)).expect("expire");
                    let expired: Vec<u8> = m.items.iter().filter(|(_, i)| i.expired.is_some()).map(|(k, _)| *k).collect();
                    prop_assert_eq!(n, expired.len() as u64);
                    for k in expired {
                        m.items.remove(&k);
                    }
                }
                Op::Cull => {
                    let n = c.cull().expect("cull");
                    let now: BTreeSet<u8> = keys_in(&c);
                    let gone: BTreeSet<u8> = before.difference(&now).copied().collect();
                    prop_assert_eq!(n, gone.len() as u64);
                    let expired: BTreeSet<u8> = m.items.iter().filter(|(_, i)| i.expired.is_some()).map(|(k, _)| *k).collect();
                    prop_assert!(expired.is_subset(&gone), "cull removes every expired item first");
                    let by_size: BTreeSet<u8> = gone.difference(&expired).copied().collect();
                    let candidates: BTreeSet<u8> = before.difference(&expired).copied().collect();
                    let order = m.policy_order(&candidates);
                    let want: BTreeSet<u8> = order[..by_size.len().min(order.len())].iter().copied().collect();
                    prop_assert_eq!(&by_size, &want, "cull follows the policy order");
                    if policy != EvictionPolicy::None {
                        prop_assert!(c.volume().expect("volume") <= 3_000 || now.is_empty(), "cull brings the volume within the limit");
                    }
                    for g in &gone {
                        m.items.remove(g);
                    }
                }
                Op::Reopen => {
                    drop(c);
                    c = open(&storage, policy, cull_limit);
                }
            }
            prop_assert_eq!(c.len().expect("len"), m.items.len() as u64);
            prop_assert_eq!(keys_in(&c), m.items.keys().copied().collect::<BTreeSet<_>>());
        }
        let problems = c.check(false).expect("check");
        prop_assert!(problems.is_empty(), "check found {:?}", problems);
    }
}
