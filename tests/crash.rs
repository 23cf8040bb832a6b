//! Crash consistency through the fault-injecting storage (requirements A5-A8, A15):
//! random operations, an I/O fault after a random number of storage operations, a power
//! loss (unsynced writes kept or lost sector by sector, one torn), sometimes a second crash
//! during recovery; then the recovered cache is compared with what was acknowledged.

use diskcache::storage::{CrashMode, FaultConfig, FaultyStorage, Storage};
use diskcache::{Cache, SyncLevel};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

type State = BTreeMap<u16, Vec<u8>>;

const KEYS: u16 = 30;

fn open(s: &FaultyStorage, sync: SyncLevel) -> diskcache::Result<Cache> {
    Cache::builder()
        .storage(Arc::new(s.clone()))
        .sync(sync)
        .min_file_size(512)
        .checkpoint_bytes(8 << 10)
        .open(Path::new("/c"))
}

fn value(rng: &mut fastrand::Rng, step: usize) -> Vec<u8> {
    // Small values inline, some large enough for a value file.
    let len = if rng.u8(..) < 40 {
        rng.usize(600..2000)
    } else {
        rng.usize(0..60)
    };
    let mut v = (step as u32).to_le_bytes().to_vec();
    v.resize(len.max(4), rng.u8(..));
    v
}

/// A short description of how two states differ (full dumps are unreadable).
fn diff(got: &State, want: &State) -> String {
    let mut out = Vec::new();
    for k in 0..KEYS {
        match (got.get(&k), want.get(&k)) {
            (a, b) if a == b => {}
            (a, b) => out.push(format!(
                "key {k}: got {:?} want {:?}",
                a.map(|v| (v.len(), &v[..4.min(v.len())])),
                b.map(|v| (v.len(), &v[..4.min(v.len())]))
            )),
        }
    }
    out.join("; ")
}

fn read_all(c: &Cache) -> diskcache::Result<State> {
    let mut out = BTreeMap::new();
    for k in 0..KEYS {
        if let Some(v) = c.get::<Vec<u8>>(k)? {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// Runs operations until the injected fault stops them; returns the acknowledged states
/// (one per acknowledged commit, in order) and the state an in-flight commit would have
/// produced, if one failed.
fn run(
    c: &Cache,
    rng: &mut fastrand::Rng,
    steps: usize,
    start: State,
) -> (Vec<State>, Option<State>) {
    let mut states = vec![start];
    for step in 0..steps {
        let mut next = states.last().cloned().unwrap_or_default();
        let r = match rng.u8(..10) {
            0..=4 => {
                let (k, v) = (rng.u16(..KEYS), value(rng, step));
                next.insert(k, v.clone());
                c.set(k, v)
            }
            5 | 6 => {
                let k = rng.u16(..KEYS);
                next.remove(&k);
                c.delete(k).map(|_| ())
            }
            _ => {
                // A transaction: all of it or none of it.
                let writes: Vec<(u16, Option<Vec<u8>>)> = (0..rng.usize(1..6))
                    .map(|_| {
                        (
                            rng.u16(..KEYS),
                            if rng.bool() {
                                Some(value(rng, step))
                            } else {
                                None
                            },
                        )
                    })
                    .collect();
                for (k, v) in &writes {
                    match v {
                        Some(v) => {
                            next.insert(*k, v.clone());
                        }
                        None => {
                            next.remove(k);
                        }
                    }
                }
                c.transact(|| {
                    for (k, v) in &writes {
                        match v {
                            Some(v) => c.set(*k, v)?,
                            None => {
                                c.delete(*k)?;
                            }
                        }
                    }
                    Ok(())
                })
            }
        };
        match r {
            Ok(()) => states.push(next),
            Err(_) => return (states, Some(next)),
        }
    }
    (states, None)
}

/// Files no record refers to are allowed (orphans), but every value must read back.
fn check_case(seed: u64, sync: SyncLevel) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let storage = FaultyStorage::new(FaultConfig {
        seed,
        max_file_len: 16 << 20,
    });
    let c = open(&storage, sync).expect("open");
    // Some committed history first, then a fault somewhere in what follows.
    let n = rng.usize(0..40);
    let (mut states, _) = run(&c, &mut rng, n, State::new());
    storage.fail_after(rng.u64(1..400), std::io::ErrorKind::Other);
    let last = states.last().cloned().unwrap_or_default();
    let (more, in_flight) = run(&c, &mut rng, 200, last);
    states.extend(more.into_iter().skip(1));
    drop(c);
    storage.crash(CrashMode::PowerLoss);
    if rng.bool() {
        // Crash again, this time during recovery.
        storage.fail_after(rng.u64(1..30), std::io::ErrorKind::Other);
        let _ = open(&storage, sync);
        storage.crash(CrashMode::PowerLoss);
    }
    let c = open(&storage, sync).unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let got = read_all(&c).unwrap_or_else(|e| panic!("seed {seed}: reading after recovery: {e}"));
    let last = states.last().cloned().unwrap_or_default();
    match sync {
        SyncLevel::Full => assert!(
            got == last || in_flight.as_ref() == Some(&got),
            "seed {seed}: with sync Full the recovered state must be the last acknowledged one \
             (or include the in-flight commit): {}",
            diff(&got, &last)
        ),
        _ => assert!(
            states.contains(&got) || in_flight.as_ref() == Some(&got),
            "seed {seed}: the recovered state is not any acknowledged state (vs last: {})",
            diff(&got, &last)
        ),
    }
    assert_eq!(
        c.len().expect("len"),
        got.len() as u64,
        "seed {seed}: count register disagrees"
    );
    // The cache keeps working after recovery.
    c.set(0u16, b"after".to_vec())
        .unwrap_or_else(|e| panic!("seed {seed}: write after recovery: {e}"));
    assert_eq!(
        c.get::<Vec<u8>>(0u16).expect("get").as_deref(),
        Some(&b"after"[..])
    );
    let _ = storage.list_dir(Path::new("/c/values"));
}

/// Seeds per test: `CRASH_SEEDS=5000 cargo test --release --test crash` for a long run.
fn seeds() -> u64 {
    std::env::var("CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[test]
fn power_loss_with_sync_full_keeps_every_acknowledged_commit() {
    for seed in 0..seeds() {
        check_case(seed, SyncLevel::Full);
    }
}

#[test]
fn power_loss_with_sync_normal_recovers_to_a_transaction_boundary() {
    for seed in 1_000_000..1_000_000 + seeds() {
        check_case(seed, SyncLevel::Normal);
    }
}

#[test]
fn killing_every_process_loses_nothing_even_with_sync_off() {
    for seed in 2_000_000..2_000_000 + seeds() / 2 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let storage = FaultyStorage::new(FaultConfig {
            seed,
            max_file_len: 16 << 20,
        });
        let c = open(&storage, SyncLevel::Off).expect("open");
        let n = rng.usize(1..120);
        let (states, _) = run(&c, &mut rng, n, State::new());
        drop(c);
        storage.crash(CrashMode::Kill);
        let c = open(&storage, SyncLevel::Off).expect("reopen");
        let (got, want) = (
            read_all(&c).expect("read"),
            states.last().cloned().unwrap_or_default(),
        );
        assert!(got == want, "seed {seed}: {}", diff(&got, &want));
    }
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_the_cache_works_once_space_returns() {
    // Requirement A15, on the simulated storage (a real size-limited file system is tested
    // by the crash-consistency campaign).
    let storage = FaultyStorage::new(FaultConfig {
        seed: 7,
        max_file_len: 32 << 20,
    });
    let c = open(&storage, SyncLevel::Normal).expect("open");
    let mut committed = State::new();
    for k in 0..KEYS {
        c.set(k, vec![k as u8; 100]).expect("set");
        committed.insert(k, vec![k as u8; 100]);
    }
    let used: u64 = storage
        .paths()
        .iter()
        .filter_map(|p| storage.file_len(p).ok())
        .sum();
    storage.set_space_limit(Some(used + (3 << 20)));
    // Fill the disk with large values (value files) and transactions until writes fail.
    let mut failures = 0;
    for i in 0..400u32 {
        let k = (i as u16) % KEYS;
        let big = vec![i as u8; 200_000];
        let r = c.transact(|| {
            c.set(k, &big)?;
            c.set((k + 1) % KEYS, &big)
        });
        match r {
            Ok(()) => {
                committed.insert(k, big.clone());
                committed.insert((k + 1) % KEYS, big);
            }
            Err(e) => {
                assert!(
                    matches!(e, diskcache::Error::Io { .. }),
                    "a full disk is an I/O error: {e}"
                );
                failures += 1;
            }
        }
        // Whatever happened, what is visible is exactly what was committed.
        assert_eq!(read_all(&c).expect("read"), committed, "after write {i}");
    }
    assert!(failures > 0, "the space limit was reached");
    // Space comes back: writing works again, and nothing was lost.
    storage.set_space_limit(None);
    c.set(0u16, b"after".to_vec())
        .expect("write once space is back");
    committed.insert(0, b"after".to_vec());
    assert_eq!(read_all(&c).expect("read"), committed);
    drop(c);
    let c = open(&storage, SyncLevel::Normal).expect("reopen");
    assert_eq!(read_all(&c).expect("read"), committed);
    // No value file leaked: once a checkpoint has removed the replaced ones, the files on
    // disk are exactly those of live values.
    let before = c.engine_info().checkpoints;
    let mut i = 0u32;
    while c.engine_info().checkpoints == before {
        c.set(("filler", i), i).expect("filler");
        i += 1;
    }
    let files = storage
        .paths()
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "val"))
        .count();
    let live = committed.values().filter(|v| v.len() >= 512).count();
    assert_eq!(
        files, live,
        "value files on disk vs live file-backed values"
    );
}
