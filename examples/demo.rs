//! A tour of diskcache doing real work.
//!
//! `cargo run --release --example demo` runs it in a new temporary directory (removed at
//! the end); `cargo run --release --example demo -- <dir>` uses (and keeps) `<dir>`, so a
//! second run shows the cache's contents surviving across processes.

use diskcache::recipes::Averager;
use diskcache::{Cache, Deque, EvictionPolicy, SetOptions};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// Something worth caching: the number of primes below `n` (a sieve).
fn primes_below(n: usize) -> u64 {
    let mut sieve = vec![true; n.max(2)];
    sieve[0] = false;
    sieve[1] = false;
    let mut i = 2;
    while i * i < n {
        if sieve[i] {
            let mut j = i * i;
            while j < n {
                sieve[j] = false;
                j += i;
            }
        }
        i += 1;
    }
    sieve.iter().filter(|p| **p).count() as u64
}

fn main() -> diskcache::Result<()> {
    let arg = std::env::args().nth(1);
    let temp = arg
        .is_none()
        .then(|| tempfile::tempdir().expect("temporary directory"));
    let dir = match (&arg, &temp) {
        (Some(d), _) => std::path::PathBuf::from(d),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!(),
    };
    println!("diskcache demo in {}\n", dir.display());
    let cache_dir = dir.join("cache");
    let cache = Cache::builder()
        .size_limit(256 << 20)
        .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
        .statistics(true)
        .open(&cache_dir)?;
    if let Some(runs) = cache.get::<i64>("demo:runs")? {
        println!(
            "This directory already holds a cache: {} items from {runs} earlier run(s).\n",
            cache.len()?
        );
    }
    cache.incr("demo:runs", 1)?;

    // 1. Memoizing an expensive function by hand: compute once, read back after.
    println!("1. Caching an expensive computation (primes below n, for 40 values of n)");
    for pass in 1..=2 {
        let t = Instant::now();
        let mut from_cache = 0;
        let mut total = 0u64;
        for k in 1..=40usize {
            let n = k * 100_000;
            let count = match cache.get::<u64>(("primes_below", n))? {
                Some(c) => {
                    from_cache += 1;
                    c
                }
                None => {
                    let c = primes_below(n);
                    cache.set(("primes_below", n), c)?;
                    c
                }
            };
            total += count;
        }
        println!(
            "   pass {pass}: {:>8.2?}  ({from_cache}/40 from the cache, checksum {total})",
            t.elapsed()
        );
    }

    // 2. Expiry, tags, counters, transactions.
    println!("\n2. Expiry, tags, atomic counters, transactions");
    let session = SetOptions::new()
        .expire(Duration::from_secs(3600))
        .tag("session");
    cache.set_with("session:alice", ("alice", 42u32), &session)?;
    let e = cache
        .get_entry::<(String, u32)>("session:alice")?
        .expect("just stored");
    let left = e
        .expire_time
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map_or(0, |d| d.as_secs() + 1);
    let tag = e.tag.map(|t| t.to_string()).unwrap_or_default();
    println!(
        "   session:alice = {:?}, tag {tag}, expires in {left} s",
        e.value
    );
    cache.set_with(
        "flash",
        "gone already",
        &SetOptions::new().expire(Duration::ZERO),
    )?;
    println!(
        "   an item stored with a zero expiry reads back as {:?}",
        cache.get::<String>("flash")?
    );
    cache.transact(|| {
        let balance: i64 = cache.get("account:bob")?.unwrap_or(100);
        cache.set("account:bob", balance - 30)?;
        cache.incr("account:carol", 30)?;
        Ok(())
    })?;
    println!(
        "   transfer in one transaction: bob {:?}, carol {:?}",
        cache.get::<i64>("account:bob")?,
        cache.get::<i64>("account:carol")?
    );

    // 3. A large value lives in its own file and can be streamed back.
    println!("\n3. A 4 MiB value, stored in a value file and read as a stream");
    cache.set_reader("video.bin", std::io::repeat(0xab).take(4 << 20))?;
    let mut reader = cache.read("video.bin")?.expect("just stored");
    let mut first = [0u8; 4];
    reader.read_exact(&mut first).expect("read");
    println!(
        "   {} bytes at {}, starting {first:02x?}",
        reader.len(),
        reader
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );

    // 4. Four threads on one shared handle, python-diskcache's benchmark mix.
    println!("\n4. Four threads, 90% get / 9% set / 1% delete on 1,000 keys, for one second");
    for k in 0..1000u32 {
        cache.set(k, vec![b'x'; 100])?;
    }
    let (hits0, misses0) = cache.stats(true, false)?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let ops: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = cache.clone();
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..256 {
                            let k = rng.u32(..1000);
                            let r = rng.f64();
                            if r < 0.90 {
                                cache.get::<Vec<u8>>(k).expect("get");
                            } else if r < 0.99 {
                                cache.set(k, vec![b'y'; rng.usize(1..500)]).expect("set");
                            } else {
                                cache.delete(k).expect("delete");
                            }
                        }
                        n += 256;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let (hits, misses) = cache.stats(true, false)?;
    let (hits, misses) = (hits - hits0, misses - misses0);
    println!("   {ops} operations in one second; gets: {hits} hits, {misses} misses");

    // 5. A job queue: a persistent deque drained by worker threads (or processes).
    println!("\n5. A job queue: a Deque of 200 jobs drained by 4 worker threads");
    let jobs: Deque<u64> = Deque::open(dir.join("jobs"))?;
    jobs.clear()?;
    jobs.extend((1..=200u64).map(|i| i * 1000))?;
    let job_time = Averager::new(cache.clone(), "demo:job-seconds")?;
    job_time.pop()?;
    let per_worker: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (jobs, cache, job_time) = (jobs.clone(), cache.clone(), job_time.clone());
                s.spawn(move || -> diskcache::Result<u64> {
                    let mut done = 0;
                    while let Some(n) = jobs.popleft()? {
                        let t = Instant::now();
                        cache.set(("job", n), primes_below(n as usize))?;
                        job_time.add(t.elapsed().as_secs_f64())?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect::<diskcache::Result<_>>()
    })?;
    println!(
        "   jobs per worker {per_worker:?} (total {}, none twice), {} left, {:.1} us per job on average",
        per_worker.iter().sum::<u64>(),
        jobs.len()?,
        job_time.get()?.unwrap_or(0.0) * 1e6
    );

    // 6. Everything is on disk.
    let items = cache.len()?;
    let volume = cache.volume()?;
    drop(cache);
    let cache = Cache::open(&cache_dir)?;
    let mut kinds = BTreeMap::new();
    for k in ["demo:runs", "account:bob", "session:alice"] {
        kinds.insert(k, cache.contains(k)?);
    }
    println!(
        "\n6. Reopened: {} items (was {items}), volume {} KiB, keys present: {kinds:?}",
        cache.len()?,
        volume >> 10
    );
    let info = cache.engine_info();
    println!(
        "   engine: checkpoint #{}, index {} KiB ({} KiB live), {} KiB of log since the checkpoint",
        info.checkpoint_seq,
        info.index_len >> 10,
        info.index_live >> 10,
        info.log_bytes >> 10
    );
    if temp.is_some() {
        println!("\nThe temporary directory is removed now; pass a directory to keep the cache.");
    }
    Ok(())
}
