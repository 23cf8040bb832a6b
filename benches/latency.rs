//! Per-operation latency of the core `Cache` operations: set, get, delete, get under the
//! least-recently-used and least-frequently-used policies, with 100-byte values, at 10k and
//! 1M keys; the time of a `cull()` that removes 10,000 items; and the collections
//! (`FanoutCache` set/get, `Deque` append/popleft, `Index` insert/get, a `Lock` round trip)
//! at 10k items.
//!
//! Run: `cargo bench --bench latency` (all sizes) or
//! `cargo bench --bench latency -- --quick` (10k keys only). Prints a markdown table of
//! median, p90, p99 and max per operation.

use diskcache::recipes::{Acquire, Lock};
use diskcache::{Cache, Deque, EvictionPolicy, FanoutCache, Index};
use std::time::{Duration, Instant};

const VALUE_LEN: usize = 100;
const SAMPLES: usize = 100_000;

fn key(i: u64) -> String {
    format!("key-{i:010}")
}

struct Stats {
    name: String,
    ns: Vec<u64>,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.ns.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_nanos(self.ns.get(i).copied().unwrap_or(0))
    }
}

/// Times `f` on each key; the keys are built beforehand, so only the operation is timed.
fn time<F: FnMut(&str)>(name: String, ops: &[u64], mut f: F) -> Stats {
    let keys: Vec<String> = ops.iter().map(|&k| key(k)).collect();
    let mut ns = Vec::with_capacity(ops.len());
    for k in &keys {
        let t = Instant::now();
        f(k);
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    Stats { name, ns }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{:.2} us", ns as f64 / 1000.0)
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1000.0)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn populate(cache: &Cache, n: u64, value: &[u8]) {
    // Transactions of 1,000 sets: the point is the populated state, not the loading speed.
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        cache
            .transact(|| {
                for k in i..end {
                    cache.set(key(k), value)?;
                }
                Ok(())
            })
            .expect("populate");
        i = end;
    }
}

fn run(n: u64, out: &mut Vec<Stats>) {
    let value = vec![b'v'; VALUE_LEN];
    let mut rng = fastrand::Rng::with_seed(n);
    let samples = SAMPLES.min(n as usize * 10);
    let random: Vec<u64> = (0..samples).map(|_| rng.u64(..n)).collect();
    let label = if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::builder()
        .size_limit(u64::MAX)
        .open(dir.path())
        .expect("open");
    populate(&cache, n, &value);
    out.push(time(format!("set ({label} keys)"), &random, |k| {
        cache.set(k, &value[..]).expect("set")
    }));
    out.push(time(format!("get ({label} keys)"), &random, |k| {
        let v: Option<Vec<u8>> = cache.get(k).expect("get");
        assert!(v.is_some());
    }));
    let mut distinct: Vec<u64> = (0..n).collect();
    rng.shuffle(&mut distinct);
    distinct.truncate(samples.min(n as usize / 2));
    out.push(time(format!("delete ({label} keys)"), &distinct, |k| {
        assert!(cache.delete(k).expect("delete"));
    }));
    drop(cache);

    for (policy, name) in [
        (EvictionPolicy::LeastRecentlyUsed, "LRU"),
        (EvictionPolicy::LeastFrequentlyUsed, "LFU"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::builder()
            .size_limit(u64::MAX)
            .eviction_policy(policy)
            .open(dir.path())
            .expect("open");
        populate(&c, n, &value);
        out.push(time(format!("get, {name} ({label} keys)"), &random, |k| {
            let v: Option<Vec<u8>> = c.get(k).expect("get");
            assert!(v.is_some());
        }));
        if policy == EvictionPolicy::LeastRecentlyUsed {
            // cull() down to 10,000 fewer items, in least-recently-used order.
            let volume = c.volume().expect("volume");
            let per_item = volume / n;
            c.reset("size_limit", volume - 10_000 * per_item)
                .expect("size limit");
            let before = c.len().expect("len");
            let t = Instant::now();
            let removed = c.cull().expect("cull");
            let took = t.elapsed();
            assert!(
                removed >= 9_900 && before - c.len().expect("len") == removed,
                "removed {removed}"
            );
            out.push(Stats {
                name: format!("cull() of {removed} items, LRU ({label} keys)"),
                ns: vec![took.as_nanos() as u64],
            });
        }
    }
}

/// The collections at 10k items, 100-byte values.
fn run_collections(out: &mut Vec<Stats>) {
    const N: u64 = 10_000;
    let value = vec![b'v'; VALUE_LEN];
    let ops: Vec<u64> = (0..N).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let fanout = FanoutCache::builder()
        .size_limit(u64::MAX)
        .open(dir.path())
        .expect("open fanout");
    out.push(time("FanoutCache set (10k keys)".into(), &ops, |k| {
        assert!(fanout.set(k, &value[..]).expect("set"));
    }));
    out.push(time("FanoutCache get (10k keys)".into(), &ops, |k| {
        let v: Option<Vec<u8>> = fanout.get(k).expect("get");
        assert!(v.is_some());
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let deque: Deque<serde_bytes::ByteBuf> = Deque::open(dir.path()).expect("open deque");
    let item = serde_bytes::ByteBuf::from(value.clone());
    out.push(time("Deque append (to 10k items)".into(), &ops, |_| {
        deque.append(&item).expect("append");
    }));
    out.push(time("Deque popleft (of 10k items)".into(), &ops, |_| {
        assert!(deque.popleft().expect("popleft").is_some());
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let index: Index<String, serde_bytes::ByteBuf> = Index::open(dir.path()).expect("open index");
    out.push(time("Index insert (10k keys)".into(), &ops, |k| {
        index.insert(&k.to_owned(), &item).expect("insert");
    }));
    out.push(time("Index get (10k keys)".into(), &ops, |k| {
        assert!(index.get(&k.to_owned()).expect("get").is_some());
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("open");
    let lock = Lock::new(cache, "lock").expect("lock");
    out.push(time("Lock acquire + release".into(), &ops, |_| {
        lock.acquire().expect("acquire");
        lock.release().expect("release");
    }));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[u64] = if quick {
        &[10_000]
    } else {
        &[10_000, 1_000_000]
    };
    let mut all = Vec::new();
    for &n in sizes {
        run(n, &mut all);
    }
    run_collections(&mut all);
    println!("| operation | samples | median | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for s in &all {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.name,
            s.ns.len(),
            fmt(s.pct(0.5)),
            fmt(s.pct(0.9)),
            fmt(s.pct(0.99)),
            fmt(s.pct(1.0))
        );
    }
}
