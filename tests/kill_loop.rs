//! `kill -9` of writers at random moments, with real processes (requirements A2, A3, A5, A8).
//!
//! This binary is the parent, and re-runs itself (with `DC_KILL_ROLE` set) as the children:
//!
//! * two writers, each looping over transactions `id = last + 1` that store a group of `G`
//!   keys with one value, every third one also a large value (a value file) under one of
//!   four keys, and `last = id`; each prints `id` once its commit has returned;
//! * two readers that validate what they see all along: `len()` only ever counts whole
//!   transactions, the group named by `last` is complete, any other group they look at is
//!   complete or absent, and every large value is whole.
//!
//! The parent kills a writer with SIGKILL at a random moment (after a random number of its
//! acknowledgements, sometimes while it is still opening the cache), collects every id it
//! acknowledged (the lines it printed before dying), and checks through its own handle, which
//! stays open throughout, inside a transaction (so the surviving writer waits): every
//! acknowledged transaction is there, whole; `len()` matches `last`; and `check(false)`
//! reports nothing but orphans (files of the commit the kill interrupted). The next writer
//! then takes over the dead one's lock. Writers alternate between sync `Full` and `Normal`:
//! a killed process loses nothing at either level (its writes are in the page cache).
//!
//! At the end, with every handle closed, writers are killed during the cold open (which runs
//! recovery), and a fresh handle checks everything again.
//!
//! `KILL_CYCLES` (default 20) sets the number of kills; `KILL_SEED` the random seed.

mod common;
use common::children::{spawn_self, Lines};
use diskcache::{Cache, SyncLevel, WarningKind};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROLE: &str = "DC_KILL_ROLE";
/// Keys per transaction group.
const G: u64 = 8;
/// Bytes of a large value (above the default `min_file_size`, 32 KiB: a value file).
const BIG: usize = 40 << 10;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match role.as_str() {
            "writer" => writer(Path::new(&args[0]), &args[1]),
            "reader" => reader(Path::new(&args[0])),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    // `cargo test` passes filters and flags; this binary has one test.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let name = "writers_killed_at_random_lose_no_acknowledged_transaction";
    if filter.as_deref().is_some_and(|f| !name.contains(f)) {
        println!("\ntest result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    print!("test {name} ... ");
    let _ = std::io::stdout().flush();
    match std::panic::catch_unwind(kill_loop) {
        Ok(()) => println!("ok\n\ntest result: ok. 1 passed; 0 failed"),
        Err(_) => {
            println!("FAILED\n\ntest result: FAILED. 0 passed; 1 failed");
            std::process::exit(1);
        }
    }
}

// ----------------------------------------------------------------------------------------
// What a transaction writes

fn group_key(id: u64, j: u64) -> (&'static str, u64, u64) {
    ("g", id, j)
}

fn group_value(id: u64) -> String {
    format!("group {id}")
}

fn has_big(id: u64) -> bool {
    id.is_multiple_of(3)
}

fn big_key(id: u64) -> (&'static str, u64) {
    ("big", id % 4)
}

fn big_value(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend((8..BIG).map(|i| (i as u64).wrapping_mul(id | 1).wrapping_add(id) as u8));
    v
}

/// `len()` after transactions `1..=last`: their groups, the large-value keys written so far,
/// and `last`.
fn expected_len(last: u64) -> u64 {
    if last == 0 {
        return 0;
    }
    let bigs: BTreeSet<u64> = (1..=last).filter(|&i| has_big(i)).map(|i| i % 4).collect();
    G * last + bigs.len() as u64 + 1
}

/// Whether `n` is the `len()` of some whole number of transactions.
fn is_whole(n: u64) -> bool {
    // expected_len grows by G or G + 1 per transaction: last is about n / G.
    let guess = n / G;
    (guess.saturating_sub(2)..=guess + 1).any(|last| expected_len(last) == n)
}

/// Checks a large value read back: whole, and written by a transaction with a large value
/// for this key.
fn check_big(k: u64, v: &[u8]) -> Result<u64, String> {
    if v.len() != BIG {
        return Err(format!("large value {k} has {} bytes", v.len()));
    }
    let id = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    if !has_big(id) || id % 4 != k || v != big_value(id).as_slice() {
        return Err(format!("large value {k} is damaged (claims id {id})"));
    }
    Ok(id)
}

// ----------------------------------------------------------------------------------------
// Children

fn writer(dir: &Path, sync: &str) {
    let level = match sync {
        "full" => SyncLevel::Full,
        _ => SyncLevel::Normal,
    };
    let cache = Cache::builder()
        .sync(level)
        .checkpoint_bytes(64 << 10)
        .timeout(Duration::from_secs(60))
        .open(dir)
        .expect("writer: open");
    println!("ready");
    let out = std::io::stdout();
    loop {
        let id = cache
            .transact(|| {
                let id = cache.get::<u64>("last")?.unwrap_or(0) + 1;
                let value = group_value(id);
                for j in 0..G {
                    cache.set(group_key(id, j), value.as_str())?;
                }
                if has_big(id) {
                    cache.set(big_key(id), big_value(id))?;
                }
                cache.set("last", id)?;
                Ok(id)
            })
            .expect("writer: transaction");
        // Acknowledged: the parent may kill us at any moment from here on.
        let mut o = out.lock();
        writeln!(o, "{id}").expect("writer: stdout");
        o.flush().expect("writer: flush");
    }
}

fn reader(dir: &Path) {
    let cache = Cache::open(dir).expect("reader: open");
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        // The parent closes our stdin to stop us.
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        s.store(true, Ordering::Release);
    });
    println!("ready");
    let mut rng = fastrand::Rng::new();
    let mut validations = 0u64;
    while !stop.load(Ordering::Acquire) {
        let n = cache.len().expect("reader: len");
        assert!(
            is_whole(n),
            "reader: len() {n} counts part of a transaction"
        );
        let last = cache.get::<u64>("last").expect("reader: last").unwrap_or(0);
        // The newest group: committed with `last`, so complete.
        // An older one, at random: never removed, so complete as well.
        for id in [last, rng.u64(0..=last)] {
            if id == 0 {
                continue;
            }
            for j in 0..G {
                let v: Option<String> = cache.get(group_key(id, j)).expect("reader: get");
                assert_eq!(
                    v.as_deref(),
                    Some(group_value(id).as_str()),
                    "reader: group {id} (last {last}) is not whole: key {j}"
                );
            }
        }
        // The next group, if any key of it is visible, is whole.
        let next = last + 1;
        if cache
            .contains(group_key(next, 0))
            .expect("reader: contains")
        {
            for j in 0..G {
                assert!(
                    cache
                        .contains(group_key(next, j))
                        .expect("reader: contains"),
                    "reader: group {next} is visible in part"
                );
            }
        }
        for k in 0..4 {
            if let Some(v) = cache.get::<Vec<u8>>(("big", k)).expect("reader: get big") {
                check_big(k, &v).unwrap_or_else(|e| panic!("reader: {e}"));
            }
        }
        validations += 1;
    }
    println!("validations {validations}");
}

// ----------------------------------------------------------------------------------------
// The parent

fn spawn(role: &str, args: &[&str]) -> Child {
    spawn_self(ROLE, role, args)
}

struct Writer {
    child: Child,
    out: Lines,
    sync: &'static str,
    ready: bool,
}

impl Writer {
    fn start(dir: &str, sync: &'static str) -> Writer {
        let mut child = spawn("writer", &[dir, sync]);
        let out = Lines::of(child.stdout.take().expect("stdout"));
        Writer {
            child,
            out,
            sync,
            ready: false,
        }
    }

    /// Reads one line; records an acknowledged id. `false` at end of output.
    fn read_one(&mut self, acked: &mut BTreeSet<u64>) -> bool {
        match self.out.next_line() {
            None => false,
            Some(l) if l == "ready" => {
                self.ready = true;
                true
            }
            Some(l) => {
                let id: u64 = l.parse().unwrap_or_else(|_| panic!("writer said {l:?}"));
                assert!(acked.insert(id), "transaction id {id} acknowledged twice");
                true
            }
        }
    }

    /// SIGKILL, then every id it had printed.
    fn kill(mut self, acked: &mut BTreeSet<u64>) {
        self.child.kill().expect("kill");
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "the writer was killed: {status}");
        while self.read_one(acked) {}
    }
}

struct Reader {
    child: Child,
    input: ChildStdin,
    out: Lines,
}

/// Checks, through `cache`, inside one transaction: every acknowledged transaction is there
/// and whole, `len()` matches `last`, large values are whole, and `check(false)` reports
/// nothing but orphans. Returns `last`.
fn verify(cache: &Cache, acked: &BTreeSet<u64>, what: &str) -> u64 {
    cache
        .transact(|| {
            let last = cache.get::<u64>("last")?.unwrap_or(0);
            let most = acked.last().copied().unwrap_or(0);
            assert!(
                last >= most,
                "{what}: acknowledged transaction {most} lost (last is {last})"
            );
            for &id in acked {
                for j in 0..G {
                    let v: Option<String> = cache.get(group_key(id, j))?;
                    assert_eq!(
                        v.as_deref(),
                        Some(group_value(id).as_str()),
                        "{what}: acknowledged transaction {id} is not whole: key {j}"
                    );
                }
            }
            // Every committed transaction is whole (acknowledged or not).
            for id in 1..=last {
                let v: Option<String> = cache.get(group_key(id, G - 1))?;
                assert!(
                    v.is_some(),
                    "{what}: transaction {id} <= last {last} is not whole"
                );
            }
            assert!(
                !cache.contains(group_key(last + 1, 0))?,
                "{what}: a group past last {last} is visible"
            );
            assert_eq!(
                cache.len()?,
                expected_len(last),
                "{what}: len() vs last {last}"
            );
            for k in 0..4 {
                let newest = (1..=last).rev().find(|&i| has_big(i) && i % 4 == k);
                let v = cache.get::<Vec<u8>>(("big", k))?;
                match (newest, v) {
                    (None, None) => {}
                    (Some(id), Some(v)) => {
                        let got = check_big(k, &v).unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(got, id, "{what}: large value {k} is not the newest");
                    }
                    (want, got) => panic!(
                        "{what}: large value {k}: want id {want:?}, found {:?} bytes",
                        got.map(|v| v.len())
                    ),
                }
            }
            for w in cache.check(false)? {
                assert!(
                    matches!(
                        w.kind,
                        WarningKind::UnknownFile
                            | WarningKind::EmptyDirectory
                            | WarningKind::StaleFile
                    ),
                    "{what}: check reports {w}"
                );
            }
            Ok(last)
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn kill_loop() {
    let cycles: u64 = std::env::var("KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill loop: seed {seed} (KILL_SEED={seed} repeats the choices)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path").to_owned();
    // The parent's handle stays open throughout: the directory stays usable by processes
    // that did not die (A5).
    let cache = Cache::builder()
        .sync(SyncLevel::Full)
        .timeout(Duration::from_secs(60))
        .open(&dir)
        .expect("open");
    let mut readers: Vec<Reader> = (0..2)
        .map(|_| {
            let mut child = spawn("reader", &[&dir]);
            let input = child.stdin.take().expect("stdin");
            let out = Lines::of(child.stdout.take().expect("stdout"));
            assert_eq!(out.next(), "ready");
            Reader { child, input, out }
        })
        .collect();
    let mut acked = BTreeSet::new();
    let mut writers: [Option<Writer>; 2] = [None, None];
    let mut started = 0u64;
    let mut kills = 0u64;
    let mut kills_before_ready = 0u64;
    for cycle in 0..cycles {
        for slot in writers.iter_mut() {
            if slot.is_none() {
                let sync = if started.is_multiple_of(2) {
                    "full"
                } else {
                    "normal"
                };
                started += 1;
                *slot = Some(Writer::start(&dir, sync));
            }
        }
        let victim = rng.usize(0..2);
        let mut w = writers[victim].take().expect("a writer");
        if rng.u8(0..5) == 0 {
            // Kill it while it opens the cache, or soon after.
            if !w.ready {
                kills_before_ready += 1;
            }
        } else {
            let wait_for = rng.u32(1..40);
            let mut seen = 0;
            while seen < wait_for {
                assert!(w.read_one(&mut acked), "writer {cycle} died on its own");
                if w.ready {
                    seen += 1;
                }
            }
            if rng.bool() {
                // A little later than an acknowledgement: anywhere in the next commit.
                std::thread::sleep(Duration::from_micros(rng.u64(0..3000)));
            }
        }
        let sync = w.sync;
        w.kill(&mut acked);
        kills += 1;
        let last = verify(
            &cache,
            &acked,
            &format!("cycle {cycle} (killed a {sync} writer)"),
        );
        for r in readers.iter_mut() {
            assert!(
                r.child.try_wait().expect("try_wait").is_none(),
                "a reader stopped (it found a violation: see its panic above)"
            );
        }
        // The directory keeps working for the parent too.
        assert!(last >= acked.last().copied().unwrap_or(0));
    }
    for w in writers.iter_mut().filter_map(Option::take) {
        w.kill(&mut acked);
        kills += 1;
    }
    verify(&cache, &acked, "after the last kill");
    let mut validations = 0u64;
    for mut r in readers.drain(..) {
        drop(r.input);
        let line = r.out.next();
        validations += line
            .strip_prefix("validations ")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("reader said {line:?}"));
        let status = r.child.wait().expect("wait");
        assert!(status.success(), "a reader failed: {status}");
    }
    drop(cache);
    // Every handle is closed: each writer now opens cold (it runs recovery), and is killed
    // at a random moment, maybe during that recovery.
    let cold_rounds = 3u64;
    for round in 0..cold_rounds {
        let mut w = Writer::start(
            &dir,
            if round.is_multiple_of(2) {
                "full"
            } else {
                "normal"
            },
        );
        let wait_for = rng.u32(0..10);
        let mut seen = 0;
        while seen < wait_for {
            assert!(w.read_one(&mut acked), "a cold writer died on its own");
            if w.ready {
                seen += 1;
            }
        }
        if !w.ready {
            kills_before_ready += 1;
        }
        w.kill(&mut acked);
        kills += 1;
    }
    let cache = Cache::open(&dir).expect("reopen after the last kill");
    let last = verify(&cache, &acked, "fresh handle at the end");
    eprintln!(
        "kill loop: {cycles} cycles, {kills} kills ({kills_before_ready} before the writer reported the cache open), \
         {} writers started, {} transactions acknowledged, {last} committed, \
         {validations} reader validations",
        started + cold_rounds,
        acked.len()
    );
    assert!(validations > 0, "the readers validated something");
}
