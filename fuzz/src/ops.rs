//! Crash consistency under fuzzing (requirements A5-A8, A12, A15): an arbitrary sequence of
//! cache operations runs through [`FaultyStorage`], with power losses and kills (also while
//! recovery runs), injected I/O errors (EIO, ENOSPC) and a full disk; a model (key ->
//! value, expiry, tag) follows every acknowledged commit.
//!
//! Checked after every step: what the cache shows equals the model (so an aborted or failed
//! transaction left nothing visible), and every result (`add`, `delete`, `pop`, `incr`)
//! is the model's. Checked after every recovery: the state is one the model allows —
//! * after a kill (the page cache survives), the last acknowledged state;
//! * after a power loss, with sync `Full`, the last acknowledged state; with `Normal`, a
//!   state at a transaction boundary at or after the last checkpoint this handle saw
//!   published (the last durable point);
//! * in both cases the commit in flight when the crash came may be there too (its call
//!   failed, so it was never acknowledged);
//!
//! and `check(false)` reports no damage, no index disagreeing with the items, no counter
//! disagreeing with them, no missing or bad value file (files left behind by crashes and
//! injected errors are allowed: A8 says orphans are harmless), `len` is the model's and
//! `volume` covers the file-backed bytes. Any other outcome panics: the target never panics
//! but on a real invariant violation.
//!
//! Two steps act on the process rather than the cache: a fork (the handle goes on in a
//! child process; the parent lives on holding its locks, or dies), and damage to a value
//! file between runs (removed or overwritten, then every process killed and the cache
//! reopened): that entry must read as a miss and be the only one `check` reports, and no
//! other commit may be lost.

use crate::stats;
use arbitrary::{Arbitrary, Unstructured};
use diskcache::storage::{CrashMode, FaultConfig, FaultyStorage, Storage};
use diskcache::{Cache, Entry, Error, EvictionPolicy, Key, SetOptions, SyncLevel, Value};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys are the integers `0..KEYS`.
pub const KEYS: u8 = 24;
/// Values of at least this many bytes live in value files.
pub const MIN_FILE_SIZE: usize = 512;
/// At most this many operations per input.
pub const MAX_OPS: usize = 96;
const DIR: &str = "/cache";

/// The cache's settings for one input.
#[derive(Arbitrary, Clone, Debug)]
pub struct Config {
    /// Seed of the simulated storage's crash choices and of the library's random names.
    pub seed: u64,
    /// `Full` (every commit durable) or `Normal` (durable at checkpoints).
    pub full_sync: bool,
    /// Checkpoint when the log passes 4 KiB plus this many 256-byte units.
    pub checkpoint_extra: u8,
    /// Keep a tag index (evict through it rather than by a scan).
    pub tag_index: bool,
    /// Size limit for `cull` in 256-byte units plus 1 KiB; `None`: no eviction policy, so
    /// `cull` only removes expired items and stays exact.
    pub cull_size_limit: Option<u8>,
}

/// A value to store.
#[derive(Arbitrary, Clone, Debug)]
pub enum Val {
    /// Stored inline in the log and the index.
    Small(Vec<u8>),
    /// `len` is scaled to `MIN_FILE_SIZE..MIN_FILE_SIZE + 4 KiB`: a value file.
    Large { fill: u8, len: u16 },
}

impl Val {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Val::Small(b) => {
                let mut b = b.clone();
                b.truncate(MIN_FILE_SIZE - 1);
                b
            }
            Val::Large { fill, len } => {
                let n = MIN_FILE_SIZE + usize::from(*len) % 4096;
                (0..n)
                    .map(|i| fill.wrapping_add((i / 7) as u8) ^ (i as u8))
                    .collect()
            }
        }
    }
}

/// When a stored item expires.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Never.
    Never,
    /// Long ago: stored already expired (invisible, but counted until removed).
    Past,
    /// In two centuries.
    Future,
}

impl Expiry {
    fn at(self) -> Option<SystemTime> {
        match self {
            Expiry::Never => None,
            Expiry::Past => Some(UNIX_EPOCH + Duration::from_secs(1_000_000)),
            Expiry::Future => Some(UNIX_EPOCH + Duration::from_secs(7_258_118_400)),
        }
    }

    fn options(self, tag: Option<u8>) -> SetOptions {
        let mut o = SetOptions::new();
        if let Some(at) = self.at() {
            o = o.expire_at(at);
        }
        if let Some(t) = tag {
            o = o.tag(i64::from(t % 4));
        }
        o
    }
}

/// One write inside a transaction.
#[derive(Arbitrary, Clone, Debug)]
pub enum TxnWrite {
    /// Set a value.
    Set(u8, Val, Option<u8>),
    /// Delete a key.
    Delete(u8),
    /// Add to an integer.
    Incr(u8, i16),
}

/// One step.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    /// `set_with`.
    Set {
        key: u8,
        val: Val,
        expiry: Expiry,
        tag: Option<u8>,
    },
    /// `add`.
    Add { key: u8, val: Val },
    /// `set_reader`: a value streamed into a value file (4 KiB units).
    SetReader { key: u8, kib: u8 },
    /// `delete`.
    Delete(u8),
    /// `incr`.
    Incr(u8, i16),
    /// `pop`.
    Pop(u8),
    /// `get` of every key (always done after a step; this one also reads value files).
    Get(u8),
    /// A transaction group that commits or aborts.
    Txn { writes: Vec<TxnWrite>, commit: bool },
    /// `expire`.
    Expire,
    /// `cull`.
    Cull,
    /// `evict` of a tag.
    Evict(u8),
    /// `clear`.
    Clear,
    /// `compact` (checkpoint, then a new index file).
    Compact,
    /// `check(false)`.
    Check,
    /// Close the handle and open again.
    Reopen,
    /// A crash of the machine (`power` true) or of every process, then recovery; with
    /// `during_recovery`, an injected error stops the first recovery after that many storage
    /// operations and a second crash (power loss when `second_power`) follows.
    Crash {
        power: bool,
        during_recovery: Option<u8>,
        second_power: bool,
    },
    /// Kill the process that has the cache open (the machine keeps running); a new process
    /// opens it.
    KillProcess,
    /// From the `after`-th storage operation on, every operation fails (EIO, or ENOSPC).
    FailAfter { after: u8, enospc: bool },
    /// Stop injecting errors.
    Heal,
    /// Leave this many KiB of free space (`None`: no limit).
    SpaceLimit(Option<u8>),
    /// Something done through a second handle, in another simulated process.
    Second(Second),
    /// The first handle's process forks and the handle goes on in the child; the parent
    /// stays alive (holding its locks) unless `parent_dies`.
    Fork { parent_dies: bool },
    /// The value file of a file-backed item (the `pick`-th) is removed or overwritten; then
    /// every process is killed and the cache reopened (the same boot: nothing else lost).
    DamageValueFile { pick: u8, remove: bool },
}

/// What the second handle does.
#[derive(Arbitrary, Clone, Debug)]
pub enum Second {
    /// Open it (it joins the open cache: no recovery).
    Open,
    /// Close it.
    Close,
    /// `set` through it.
    Set { key: u8, val: Val },
    /// `incr` through it.
    Incr(u8, i16),
    /// The first handle's process dies in the middle of a transaction, holding the writer
    /// lock; the second handle must take the lock over and write; the second handle then
    /// becomes the first.
    KillHoldingLock { key: u8, val: Val, other_key: u8 },
}

/// One fuzz input.
#[derive(Arbitrary, Clone, Debug)]
pub struct Input {
    /// Settings.
    pub config: Config,
    /// Steps.
    pub ops: Vec<Op>,
}

/// A stored value as the model knows it.
#[derive(Clone, Debug, PartialEq)]
enum MVal {
    Bytes(Vec<u8>),
    Int(i64),
}

#[derive(Clone, Debug, PartialEq)]
struct Item {
    val: MVal,
    expiry: Expiry,
    tag: Option<u8>,
    /// In a value file (counts in `size`).
    file: bool,
    /// Its value file was removed or damaged: the item is there but reads as a miss.
    damaged: bool,
}

impl Item {
    fn live(&self) -> bool {
        self.expiry != Expiry::Past
    }
}

type Model = BTreeMap<u8, Item>;

/// What a reader can see of an item: its value, expiry and tag if live; only its presence
/// (in `len` and key iteration) if expired.
type Seen = BTreeMap<u8, Option<(MVal, bool, Option<u8>)>>;

fn seen(m: &Model) -> Seen {
    m.iter()
        .map(|(k, i)| {
            (
                *k,
                (i.live() && !i.damaged).then(|| {
                    (
                        i.val.clone(),
                        i.expiry == Expiry::Future,
                        i.tag.map(|t| t % 4),
                    )
                }),
            )
        })
        .collect()
}

fn file_bytes(m: &Model) -> u64 {
    m.values()
        .filter(|i| i.file)
        .map(|i| match &i.val {
            MVal::Bytes(b) => b.len() as u64,
            MVal::Int(_) => 0,
        })
        .sum()
}

/// The state a failed operation would have produced, had it committed.
#[derive(Clone, Debug)]
enum Candidate {
    Exact(Model),
    /// A `cull` with eviction: some items of this state removed, the expired ones included.
    CulledFrom(Model),
}

/// Bytes stored with the native byte-string kind.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn key(k: u8) -> i64 {
    i64::from(k % KEYS)
}

/// A reader that yields `n` bytes of a pattern, for `set_reader`.
struct Pattern {
    left: usize,
    next: u8,
}

impl io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left).min(3000);
        for b in buf.iter_mut().take(n) {
            *b = self.next;
            self.next = self.next.wrapping_mul(31).wrapping_add(7);
        }
        self.left -= n;
        Ok(n)
    }
}

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut r = Pattern {
        left: n,
        next: seed,
    };
    let mut off = 0;
    while off < n {
        off += io::Read::read(&mut r, &mut v[off..]).unwrap_or(n);
    }
    v
}

/// The run's state.
struct Run {
    fs: FaultyStorage,
    /// The first handle's view of the storage (its process, which a fork changes).
    view: Option<FaultyStorage>,
    cfg: Config,
    cache: Option<Cache>,
    pid: u64,
    /// The second handle, its process id and its view of the storage.
    other: Option<(Cache, u64, FaultyStorage)>,
    next_pid: u64,
    /// Acknowledged states since the last durable point: `[0]` survives a power loss, the
    /// last is what every handle must see now.
    states: Vec<Model>,
    in_flight: Option<Candidate>,
    /// Errors are being injected, or may have been: files may be left behind.
    faulted: bool,
    /// Errors may be injected now.
    failing: bool,
    space_limited: bool,
    /// Errors could have been injected while this handle was open (it may refuse further
    /// writes until reopened).
    handle_faulted: bool,
    /// The same, for the second handle.
    other_faulted: bool,
    /// A power loss happened that no successful recovery has checked yet.
    power_pending: bool,
    /// The input crashed or killed at least once.
    crashed: bool,
    ckpt_seq: u64,
    faults_seen: u64,
    ops_seen: u64,
}

/// Whether `DISKCACHE_FUZZ_TRACE` is set: each step and outcome is printed (for replays).
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("DISKCACHE_FUZZ_TRACE").is_some())
}

thread_local! {
    /// What this run did so far (steps, outcomes, recoveries), printed with a violation:
    /// crash outcomes depend on file layouts, which vary with the library's hash map order,
    /// so a failing run may not replay the same way.
    static HISTORY: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn note(line: String) {
    if trace() {
        eprintln!("{line}");
    }
    HISTORY.with(|h| h.borrow_mut().push(line));
}

fn violation(what: &str) -> ! {
    let history = HISTORY.with(|h| h.borrow().join("\n"));
    panic!("invariant violated: {what}\nthis run:\n{history}")
}

impl Run {
    fn last(&self) -> &Model {
        self.states.last().unwrap_or_else(|| violation("no state"))
    }

    /// Opens a handle in a new simulated process; it becomes the first handle's process.
    fn open(&mut self) -> diskcache::Result<Cache> {
        let (pid, view, c) = self.open_process();
        self.pid = pid;
        self.view = Some(view);
        c
    }

    fn open_process(&mut self) -> (u64, FaultyStorage, diskcache::Result<Cache>) {
        self.next_pid += 1;
        let pid = self.next_pid;
        let view = self.fs.process(pid);
        let mut b = Cache::builder()
            .storage(Arc::new(view.clone()))
            .sync(if self.cfg.full_sync {
                SyncLevel::Full
            } else {
                SyncLevel::Normal
            })
            .checkpoint_bytes(4096 + 256 * u64::from(self.cfg.checkpoint_extra))
            .min_file_size(MIN_FILE_SIZE as u64)
            .cull_limit(0)
            .tag_index(self.cfg.tag_index)
            .timeout(Duration::from_secs(20));
        b = match self.cfg.cull_size_limit {
            None => b.eviction_policy(EvictionPolicy::None),
            Some(n) => b
                .eviction_policy(EvictionPolicy::LeastRecentlyStored)
                .size_limit(1024 + 256 * u64::from(n)),
        };
        (pid, view, b.open(Path::new(DIR)))
    }

    fn note_storage(&mut self) {
        let (f, o) = (self.fs.faults_injected(), self.fs.op_count());
        stats::FAULTS_INJECTED.add(f - self.faults_seen);
        stats::STORAGE_OPS.add(o - self.ops_seen);
        self.faults_seen = f;
        self.ops_seen = o;
    }

    /// Whether an error is one the current conditions allow.
    fn allowed(&self, e: &Error) -> bool {
        match e {
            Error::Io { source, .. } => {
                if source.kind() == io::ErrorKind::StorageFull {
                    stats::DISK_FULL.inc();
                }
                self.failing || self.space_limited
            }
            Error::PreviousIo => self.handle_faulted || self.other_faulted,
            _ => false,
        }
    }

    /// Reads everything the cache shows.
    fn observe(&self, c: &Cache) -> diskcache::Result<(Seen, u64, u64)> {
        let mut out = Seen::new();
        for k in c.iterkeys() {
            let k = k?;
            let n = match k {
                Key::Int(i) if (0..i128::from(KEYS)).contains(&i) => i as u8,
                other => violation(&format!("a key never stored: {other:?}")),
            };
            out.insert(n, None);
        }
        for k in 0..KEYS {
            let e: Option<Entry<Value>> = c.get_value_entry(key(k))?;
            let Some(e) = e else { continue };
            let val = match e.value {
                Value::Bytes(b) => MVal::Bytes(b),
                Value::Int(i) => MVal::Int(i),
                other => violation(&format!(
                    "key {k}: a value of a kind never stored: {other:?}"
                )),
            };
            let tag = match e.tag {
                None => None,
                Some(Key::Int(t)) if (0..4).contains(&t) => Some(t as u8),
                Some(other) => violation(&format!("key {k}: a tag never stored: {other:?}")),
            };
            let future = match e.expire_time {
                None => false,
                Some(t) if t > SystemTime::now() => true,
                Some(t) => violation(&format!("key {k}: live but expires at {t:?}")),
            };
            if !out.contains_key(&k) {
                violation(&format!("key {k} is readable but not iterated"));
            }
            out.insert(k, Some((val, future, tag)));
        }
        Ok((out, c.len()?, c.volume()?))
    }

    /// Every open handle must show exactly the last acknowledged state.
    fn verify(&mut self, when: &str) {
        let handles: Vec<Cache> = self
            .cache
            .iter()
            .cloned()
            .chain(self.other.as_ref().map(|(c, _, _)| c.clone()))
            .collect();
        for c in handles {
            self.verify_handle(&c, when);
        }
    }

    fn verify_handle(&mut self, c: &Cache, when: &str) {
        let c = c.clone();
        match self.observe(&c) {
            Ok((got, len, volume)) => {
                let want = seen(self.last());
                if got != want {
                    violation(&format!(
                        "{when}: the cache shows {} but the acknowledged state is {}",
                        describe(&got),
                        describe(&want)
                    ));
                }
                self.counters_agree(len, volume, self.last());
            }
            Err(e) if self.allowed(&e) => {}
            Err(e) => violation(&format!("{when}: reading failed: {e}")),
        }
    }

    fn counters_agree(&self, len: u64, volume: u64, m: &Model) {
        if len != m.len() as u64 {
            violation(&format!("len is {len}, the items are {}", m.len()));
        }
        if volume < file_bytes(m) {
            violation(&format!(
                "volume {volume} is below the file-backed bytes {}",
                file_bytes(m)
            ));
        }
    }

    fn check(&mut self, when: &str) {
        let Some(c) = self.cache.clone() else { return };
        match c.check(false) {
            Ok(warnings) => {
                stats::CHECKS.inc();
                let damaged = self.last().values().any(|i| i.damaged);
                for w in warnings {
                    use diskcache::WarningKind as K;
                    let leftover =
                        matches!(w.kind, K::UnknownFile | K::StaleFile | K::EmptyDirectory);
                    let damage = matches!(w.kind, K::MissingFile | K::BadFile | K::EmptyDirectory);
                    let expected = (leftover && self.faulted) || (damage && damaged);
                    if !expected {
                        violation(&format!("{when}: check reports {w}"));
                    }
                }
            }
            Err(e) if self.allowed(&e) => {}
            Err(e) => violation(&format!("{when}: check failed: {e}")),
        }
    }

    /// The newest checkpoint the first handle knows of (its sequence number), and whether it
    /// holds every commit published so far (the log after it is empty). The handle reads
    /// first, to follow the second handle's commits and checkpoints.
    ///
    /// A newer checkpoint does not always hold the last acknowledged state: a writer that
    /// finds a checkpoint whose publication failed (the meta file's sync) adopts it, and it
    /// holds an older state; so the durable point moves to the last state only when the
    /// checkpoint holds every commit, and otherwise stays where it was (any state since is
    /// allowed).
    fn checkpoint_now(&self) -> (u64, bool) {
        let Some(c) = self.cache.as_ref() else {
            return (self.ckpt_seq, false);
        };
        if c.len().is_err() {
            return (self.ckpt_seq, false);
        }
        let i = c.engine_info();
        (i.checkpoint_seq, i.log_start_lsn == i.applied_lsn + 1)
    }

    /// After a write: acknowledged (or not), and a checkpoint seen (or not).
    fn outcome(&mut self, r: diskcache::Result<()>, next: Candidate) {
        stats::OPS.inc();
        note(format!(
            "  -> {r:?} (checkpoint seq now {:?})",
            self.cache.as_ref().map(|c| c.engine_info().checkpoint_seq)
        ));
        match r {
            Ok(()) => {
                let m = match next {
                    Candidate::Exact(m) => m,
                    Candidate::CulledFrom(_) => violation("a cull acknowledged without its state"),
                };
                self.states.push(m);
                self.in_flight = None;
                let (seq, holds_all) = self.checkpoint_now();
                if seq > self.ckpt_seq {
                    stats::CHECKPOINTS.add(seq - self.ckpt_seq);
                }
                let durable = self.cfg.full_sync || (seq > self.ckpt_seq && holds_all);
                self.ckpt_seq = self.ckpt_seq.max(seq);
                if durable {
                    let last = self.states.pop().unwrap_or_default();
                    self.states = vec![last];
                }
            }
            Err(e) => {
                if !self.allowed(&e) {
                    violation(&format!("an operation failed: {e}"));
                }
                stats::FAILED_OPS.inc();
                self.in_flight = Some(next);
                // A checkpoint may have been published before the failure (`compact`
                // checkpoints, then fails to write the new index file): if it holds every
                // acknowledged commit, the last acknowledged state is durable from now on.
                let (seq, holds_all) = self.checkpoint_now();
                if seq > self.ckpt_seq {
                    stats::CHECKPOINTS.add(seq - self.ckpt_seq);
                    self.ckpt_seq = seq;
                    if holds_all {
                        let last = self.last().clone();
                        self.states = vec![last];
                    }
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        note(format!(
            "op {op:?} | seq {} states {} in_flight {} failing {} space {} ops {} faults {}",
            self.ckpt_seq,
            self.states.len(),
            self.in_flight.is_some(),
            self.failing,
            self.space_limited,
            self.fs.op_count(),
            self.fs.faults_injected()
        ));
        match op {
            Op::Crash {
                power,
                during_recovery,
                second_power,
            } => {
                self.crashed = true;
                return self.crash(*power, *during_recovery, *second_power);
            }
            Op::KillProcess => {
                self.crashed = true;
                return self.kill_process();
            }
            Op::Reopen => return self.reopen(),
            Op::Fork { parent_dies } => return self.fork(*parent_dies),
            Op::DamageValueFile { pick, remove } => return self.damage(*pick, *remove),
            Op::FailAfter { after, enospc } => {
                let kind = if *enospc {
                    io::ErrorKind::StorageFull
                } else {
                    io::ErrorKind::Other
                };
                self.fs.fail_after(u64::from(*after) + 1, kind);
                self.failing = true;
                self.faulted = true;
                return;
            }
            Op::Heal => {
                self.fs.clear_faults();
                self.failing = false;
                return;
            }
            Op::SpaceLimit(kib) => {
                match kib {
                    None => {
                        self.fs.set_space_limit(None);
                        self.space_limited = false;
                    }
                    Some(kib) => {
                        let used: u64 = self
                            .fs
                            .paths()
                            .iter()
                            .filter_map(|p| self.fs.file_len(p).ok())
                            .sum();
                        self.fs.set_space_limit(Some(used + 1024 * u64::from(*kib)));
                        self.space_limited = true;
                        self.faulted = true;
                    }
                }
                return;
            }
            _ => {}
        }
        let Some(c) = self.cache.clone() else {
            return;
        };
        if self.failing || self.space_limited {
            self.handle_faulted = true;
            self.other_faulted |= self.other.is_some();
        }
        let last = self.last().clone();
        match op {
            Op::Set {
                key: k,
                val,
                expiry,
                tag,
            } => {
                let k = *k % KEYS;
                let b = val.bytes();
                let mut next = last;
                next.insert(
                    k,
                    Item {
                        damaged: false,
                        file: b.len() >= MIN_FILE_SIZE,
                        val: MVal::Bytes(b.clone()),
                        expiry: *expiry,
                        tag: *tag,
                    },
                );
                let r = c.set_value(key(k), &Value::Bytes(b), &expiry.options(*tag));
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Add { key: k, val } => {
                let k = *k % KEYS;
                let b = val.bytes();
                let absent = !last.get(&k).is_some_and(Item::live);
                let mut next = last;
                if absent {
                    next.insert(
                        k,
                        Item {
                            damaged: false,
                            file: b.len() >= MIN_FILE_SIZE,
                            val: MVal::Bytes(b.clone()),
                            expiry: Expiry::Never,
                            tag: None,
                        },
                    );
                }
                let r = c.add(key(k), Raw(&b)).map(|added| {
                    if added != absent {
                        violation(&format!("add of key {k} returned {added}"));
                    }
                });
                self.outcome(r, Candidate::Exact(next));
            }
            Op::SetReader { key: k, kib } => {
                let k = *k % KEYS;
                let n = usize::from(*kib % 64) * 4096 + usize::from(*kib);
                let seed = k.wrapping_mul(13).wrapping_add(*kib);
                let mut next = last;
                next.insert(
                    k,
                    Item {
                        damaged: false,
                        val: MVal::Bytes(pattern(seed, n)),
                        expiry: Expiry::Never,
                        tag: None,
                        file: true,
                    },
                );
                let r = c.set_reader(
                    key(k),
                    Pattern {
                        left: n,
                        next: seed,
                    },
                );
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Delete(k) => {
                let k = *k % KEYS;
                let there = last.get(&k).is_some_and(Item::live);
                let mut next = last;
                if there {
                    next.remove(&k);
                }
                let r = c.delete(key(k)).map(|d| {
                    if d != there {
                        violation(&format!("delete of key {k} returned {d}"));
                    }
                });
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Incr(k, d) => {
                let k = *k % KEYS;
                let mut next = last;
                let want = incr_model(&mut next, k, i64::from(*d));
                let r = match (c.incr(key(k), i64::from(*d)), want) {
                    (Ok(v), Some(w)) if v == w => Ok(()),
                    (Err(Error::TypeMismatch(_)), None) => Ok(()),
                    (Err(e), _) if self.allowed(&e) => Err(e),
                    (got, want) => violation(&format!(
                        "incr of key {k}: got {got:?}, the model says {want:?}"
                    )),
                };
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Pop(k) => {
                let k = *k % KEYS;
                let want = last.get(&k).filter(|i| i.live()).map(|i| i.val.clone());
                let mut next = last;
                if want.is_some() {
                    next.remove(&k);
                }
                let r = match &want {
                    Some(MVal::Int(_)) => c.pop::<i64>(key(k)).map(|o| o.map(MVal::Int)),
                    Some(MVal::Bytes(_)) => c.pop::<Vec<u8>>(key(k)).map(|o| o.map(MVal::Bytes)),
                    None => c
                        .pop::<serde::de::IgnoredAny>(key(k))
                        .map(|o| o.map(|_| MVal::Int(i64::MIN))),
                };
                let r = match r {
                    Ok(got) => {
                        if got != want {
                            violation(&format!("pop of key {k}: got {got:?}, want {want:?}"));
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Get(k) => {
                let k = *k % KEYS;
                stats::OPS.inc();
                let want = last.get(&k).filter(|i| i.live()).map(|i| i.val.clone());
                match c.get_value(key(k)) {
                    Ok(got) => {
                        let got = got.map(|v| match v {
                            Value::Bytes(b) => MVal::Bytes(b),
                            Value::Int(i) => MVal::Int(i),
                            other => violation(&format!("get of key {k} returned {other:?}")),
                        });
                        if got != want {
                            violation(&format!("get of key {k}: got {got:?}, want {want:?}"));
                        }
                    }
                    Err(e) if self.allowed(&e) => {}
                    Err(e) => violation(&format!("get of key {k} failed: {e}")),
                }
            }
            Op::Txn { writes, commit } => {
                let mut next = last.clone();
                let mut expect = Vec::new();
                for w in writes.iter().take(16) {
                    match w {
                        TxnWrite::Set(k, v, tag) => {
                            let b = v.bytes();
                            next.insert(
                                *k % KEYS,
                                Item {
                                    damaged: false,
                                    file: b.len() >= MIN_FILE_SIZE,
                                    val: MVal::Bytes(b),
                                    expiry: Expiry::Never,
                                    tag: *tag,
                                },
                            );
                            expect.push(None);
                        }
                        TxnWrite::Delete(k) => {
                            let k = *k % KEYS;
                            if next.get(&k).is_some_and(Item::live) {
                                next.remove(&k);
                            }
                            expect.push(None);
                        }
                        TxnWrite::Incr(k, d) => {
                            expect.push(Some(incr_model(&mut next, *k % KEYS, i64::from(*d))));
                        }
                    }
                }
                let abort = || Error::InvalidArgument("fuzz abort".into());
                let r = c.transact(|| {
                    for (w, want) in writes.iter().zip(&expect) {
                        match w {
                            TxnWrite::Set(k, v, tag) => c.set_value(
                                key(*k),
                                &Value::Bytes(v.bytes()),
                                &Expiry::Never.options(*tag),
                            )?,
                            TxnWrite::Delete(k) => {
                                c.delete(key(*k))?;
                            }
                            TxnWrite::Incr(k, d) => match (c.incr(key(*k), i64::from(*d)), want) {
                                (Ok(v), Some(Some(w))) if v == *w => {}
                                (Err(Error::TypeMismatch(_)), Some(None)) => {}
                                (Err(e), _) => return Err(e),
                                (got, want) => violation(&format!(
                                    "incr in a transaction: got {got:?}, want {want:?}"
                                )),
                            },
                        }
                    }
                    if *commit {
                        Ok(())
                    } else {
                        Err(abort())
                    }
                });
                match r {
                    Err(Error::InvalidArgument(m)) if m == "fuzz abort" && !*commit => {
                        stats::OPS.inc();
                        self.verify("after an aborted transaction");
                    }
                    Ok(()) if !*commit => violation("an aborted transaction reported success"),
                    r => {
                        let candidate = if *commit { next } else { last };
                        self.outcome(r, Candidate::Exact(candidate));
                    }
                }
            }
            Op::Expire => {
                let mut next = last;
                next.retain(|_, i| i.live());
                let r = c.expire().map(|_| ());
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Evict(t) => {
                let t = *t % 4;
                let mut next = last;
                next.retain(|_, i| i.tag.map(|x| x % 4) != Some(t));
                let r = c.evict(i64::from(t)).map(|_| ());
                self.outcome(r, Candidate::Exact(next));
            }
            Op::Clear => {
                let r = c.clear().map(|_| ());
                self.outcome(r, Candidate::Exact(Model::new()));
            }
            Op::Cull => self.cull(&c, last),
            Op::Compact => {
                let r = c.compact();
                self.outcome(r, Candidate::Exact(last));
            }
            Op::Check => self.check("check step"),
            Op::Second(s) => self.second(&c, s, last),
            _ => {}
        }
        self.note_storage();
        self.verify("after a step");
    }

    fn cull(&mut self, c: &Cache, last: Model) {
        if self.cfg.cull_size_limit.is_none() {
            // No eviction policy: only expired items go.
            let mut next = last;
            next.retain(|_, i| i.live());
            let r = c.cull().map(|_| ());
            return self.outcome(r, Candidate::Exact(next));
        }
        // Which items eviction picks depends on store times: take what the cache shows,
        // after checking it is a culling of the last state. `cull` commits the expiry and
        // each eviction batch on its own; in a transaction they are one commit.
        match c.transact(|| c.cull()) {
            Ok(_) => {
                let got = match self.observe(c) {
                    Ok((got, _, _)) => got,
                    Err(e) if self.allowed(&e) => return,
                    Err(e) => violation(&format!("reading after cull: {e}")),
                };
                let Some(next) = culled(&got, &last) else {
                    violation(&format!(
                        "cull left {} from {}",
                        describe(&got),
                        describe(&seen(&last))
                    ))
                };
                self.outcome(Ok(()), Candidate::Exact(next));
            }
            Err(e) => self.outcome(Err(e), Candidate::CulledFrom(last)),
        }
    }

    /// Opens the second handle if it is not open; returns it.
    fn second_handle(&mut self) -> Option<Cache> {
        if let Some((c, _, _)) = &self.other {
            return Some(c.clone());
        }
        let (pid, view, r) = self.open_process();
        match r {
            Ok(c) => {
                self.other_faulted = self.failing || self.space_limited;
                self.other = Some((c.clone(), pid, view));
                Some(c)
            }
            Err(e) if self.allowed(&e) => None,
            Err(e) => violation(&format!("opening a second handle failed: {e}")),
        }
    }

    fn second(&mut self, first: &Cache, op: &Second, last: Model) {
        match op {
            Second::Open => {
                self.second_handle();
            }
            Second::Close => {
                self.other = None;
            }
            Second::Set { key: k, val } => {
                let Some(c) = self.second_handle() else {
                    return;
                };
                let k = *k % KEYS;
                let b = val.bytes();
                let mut next = last;
                next.insert(k, plain(b.clone()));
                let r = c.set_value(key(k), &Value::Bytes(b), &SetOptions::new());
                self.outcome(r, Candidate::Exact(next));
            }
            Second::Incr(k, d) => {
                let Some(c) = self.second_handle() else {
                    return;
                };
                let k = *k % KEYS;
                let mut next = last;
                let want = incr_model(&mut next, k, i64::from(*d));
                let r = match (c.incr(key(k), i64::from(*d)), want) {
                    (Ok(v), Some(w)) if v == w => Ok(()),
                    (Err(Error::TypeMismatch(_)), None) => Ok(()),
                    (Err(e), _) if self.allowed(&e) => Err(e),
                    (got, want) => violation(&format!(
                        "incr of key {k} through the second handle: got {got:?}, want {want:?}"
                    )),
                };
                self.outcome(r, Candidate::Exact(next));
            }
            Second::KillHoldingLock {
                key: k,
                val,
                other_key,
            } => self.kill_holding_lock(first, *k % KEYS, val.bytes(), *other_key % KEYS, last),
        }
    }

    /// The first handle's process dies inside a transaction (holding the writer lock): its
    /// thread stops there until the second handle has taken the lock over and committed.
    fn kill_holding_lock(&mut self, first: &Cache, k: u8, v: Vec<u8>, k2: u8, last: Model) {
        let Some(b) = self.second_handle() else {
            return;
        };
        stats::PROCESS_KILLS.inc();
        self.crashed = true;
        self.faulted = true;
        let v2 = vec![k2; 3];
        let (locked_tx, locked_rx) = std::sync::mpsc::channel::<bool>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (pid, fs) = (self.pid, self.fs.clone());
        let a = first.clone();
        let (written, taken_over) = std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut signalled = false;
                let _ = a.transact(|| -> diskcache::Result<()> {
                    a.set_value(key(k), &Value::Bytes(v), &SetOptions::new())?;
                    signalled = true;
                    let _ = locked_tx.send(true);
                    // Dead from here on: nothing runs until the other handle is done.
                    let _ = go_rx.recv();
                    Err(Error::InvalidArgument("killed".into()))
                });
                if !signalled {
                    let _ = locked_tx.send(false);
                }
            });
            let written = locked_rx.recv().unwrap_or(false);
            if written {
                fs.kill(pid);
            }
            let r = b.set_value(key(k2), &Value::Bytes(v2.clone()), &SetOptions::new());
            let _ = go_tx.send(());
            (written, r)
        });
        note(format!(
            "  first handle killed holding the lock (it had written: {written}); the second \
             handle's write: {taken_over:?}"
        ));
        if let Err(Error::Timeout { .. }) = taken_over {
            violation("the writer lock of a killed process was never taken over");
        }
        let mut next = last;
        next.insert(k2, plain(v2));
        if written {
            // The second handle becomes the first.
            self.cache = None;
            if let Some((c, pid, view)) = self.other.take() {
                self.cache = Some(c);
                self.pid = pid;
                self.view = Some(view);
                self.handle_faulted = self.other_faulted;
            }
        }
        self.outcome(taken_over, Candidate::Exact(next));
    }

    /// The first handle's process forks; the handle goes on in the child (which opens the
    /// cache again at its next use). A parent that lives on keeps its locks.
    fn fork(&mut self, parent_dies: bool) {
        let Some(view) = self.view.clone() else {
            return;
        };
        if self.cache.is_none() {
            return;
        }
        stats::FORKS.inc();
        self.next_pid += 1;
        let parent = self.pid;
        view.fork_into(self.next_pid);
        self.pid = self.next_pid;
        if parent_dies {
            self.fs.kill(parent);
        }
        // The child is a new handle: earlier injected errors do not stop its writes.
        self.handle_faulted = self.failing || self.space_limited;
        self.note_storage();
        self.verify("in the forked child");
    }

    /// Removes or overwrites the value file of a file-backed item, kills every process and
    /// reopens: the item must read as a miss (and be all that `check` reports), and nothing
    /// else may be lost; then `check(true)` removes it.
    fn damage(&mut self, pick: u8, remove: bool) {
        let Some(c) = self.cache.clone() else { return };
        if self.failing || self.space_limited || self.in_flight.is_some() {
            return;
        }
        let last = self.last().clone();
        let files: Vec<u8> = last
            .iter()
            .filter(|(_, i)| i.file && !i.damaged)
            .map(|(k, _)| *k)
            .collect();
        let Some(&k) = files.get(usize::from(pick) % files.len().max(1)) else {
            return;
        };
        let path = match c.raw_entry(key(k)) {
            Ok(Some(e)) => e.value.path().map(Path::to_path_buf),
            Ok(None) => violation(&format!("key {k} has no entry")),
            Err(e) if self.allowed(&e) => return,
            Err(e) => violation(&format!("reading key {k}: {e}")),
        };
        let Some(path) = path else {
            violation(&format!(
                "key {k} is file-backed in the model but not in the cache"
            ))
        };
        let damaged = if remove {
            self.fs.remove_file(&path).is_ok()
        } else {
            let len = self.fs.file_len(&path).unwrap_or(0);
            len > 0 && self.fs.corrupt(&path, len / 2, &[0x5a, 0xa5]).is_ok()
        };
        if !damaged {
            return;
        }
        stats::VALUE_FILES_DAMAGED.inc();
        // Every state that holds this very item holds it damaged now.
        let item = last.get(&k).cloned();
        for m in &mut self.states {
            if let Some(i) = m.get_mut(&k) {
                if Some(&*i) == item.as_ref() {
                    i.damaged = true;
                }
            }
        }
        note(format!(
            "  value file of key {k} damaged (removed: {remove})"
        ));
        self.crash(false, None, false);
        let Some(c) = self.cache.clone() else { return };
        let mut next = self.last().clone();
        next.retain(|_, i| !i.damaged);
        let r = c.check(true).map(|_| ());
        self.outcome(r, Candidate::Exact(next));
        self.note_storage();
        self.verify("after removing a damaged item");
    }

    /// Takes the cache away as a dead process would leave it: its handles fail from now on.
    fn kill_handle(&mut self) {
        self.fs.kill(self.pid);
        self.cache = None;
    }

    fn crash(&mut self, power: bool, during_recovery: Option<u8>, second_power: bool) {
        self.kill_handle();
        if let Some((c, pid, _)) = self.other.take() {
            self.fs.kill(pid);
            drop(c);
        }
        let mode = |p: bool| {
            if p {
                stats::POWER_LOSSES.inc();
                CrashMode::PowerLoss
            } else {
                stats::KILLS.inc();
                CrashMode::Kill
            }
        };
        note(format!("  crash (power loss: {power})"));
        self.fs.crash(mode(power));
        self.fs.set_space_limit(None);
        self.space_limited = false;
        self.failing = false;
        self.faulted = true;
        let mut power_lost = power;
        if let Some(n) = during_recovery {
            stats::RECOVERY_CRASHES.inc();
            self.fs.fail_after(u64::from(n) + 1, io::ErrorKind::Other);
            self.failing = true;
            // Recovery stops at the injected error, or gets through; either way the machine
            // goes down again with whatever the handle had done.
            let opened = self.open();
            note(format!(
                "  recovery with a fault after {n}: {:?}; crash (power loss: {second_power})",
                opened.as_ref().map(|_| ())
            ));
            self.fs.kill(self.pid);
            drop(opened);
            self.fs.crash(mode(second_power));
            self.failing = false;
            power_lost |= second_power;
        }
        self.note_storage();
        self.recover(power_lost);
    }

    fn kill_process(&mut self) {
        if self.cache.is_none() {
            return self.reopen();
        }
        stats::PROCESS_KILLS.inc();
        // A dead process leaves files behind (its liveness file, an orphan value file of a
        // commit it had not made): `check` may report them.
        self.faulted = true;
        self.kill_handle();
        self.recover(false);
    }

    fn reopen(&mut self) {
        if let Some(c) = self.cache.take() {
            drop(c);
        }
        self.recover(false);
    }

    /// Opens after a crash, kill or close, and checks the state against what the model
    /// allows (`power`: a power loss happened since the last open).
    fn recover(&mut self, power: bool) {
        let power = power || self.power_pending;
        self.power_pending = power;
        let c = match self.open() {
            Ok(c) => c,
            Err(e) if self.allowed(&e) => {
                note(format!("  open failed: {e}"));
                self.note_storage();
                return;
            }
            Err(e) => violation(&format!("open after a crash failed: {e}")),
        };
        self.handle_faulted = self.failing || self.space_limited;
        self.ckpt_seq = c.engine_info().checkpoint_seq;
        self.cache = Some(c.clone());
        self.note_storage();
        let (got, len, volume) = match self.observe(&c) {
            Ok(x) => x,
            Err(e) if self.allowed(&e) => return,
            Err(e) => violation(&format!("reading after recovery failed: {e}")),
        };
        stats::RECOVERIES.inc();
        note(format!(
            "  recovered (power loss: {power}) {} with checkpoint seq {} ({} frames replayed)",
            describe(&got),
            c.engine_info().checkpoint_seq,
            c.engine_info().frames_replayed_at_open
        ));
        // The states this recovery may come back at, newest first.
        let allowed: Vec<Model> = if power {
            self.states.iter().rev().cloned().collect()
        } else {
            vec![self.last().clone()]
        };
        // Expired items look alike whatever their value (a small one and a file-backed one):
        // among the states that look like what recovery shows, prefer one whose counters
        // agree, and check the counters against that one.
        let agrees = |m: &Model| len == m.len() as u64 && volume >= file_bytes(m);
        let mut found = allowed
            .iter()
            .position(|m| seen(m) == got && agrees(m))
            .or_else(|| allowed.iter().position(|m| seen(m) == got))
            .map(|i| {
                if i > 0 {
                    stats::TAIL_LOST.inc();
                }
                allowed[i].clone()
            });
        if found.is_none() {
            found = match &self.in_flight {
                Some(Candidate::Exact(m)) if seen(m) == got => Some(m.clone()),
                Some(Candidate::CulledFrom(m)) => culled(&got, m),
                _ => None,
            };
            if found.is_some() {
                stats::IN_FLIGHT_RECOVERED.inc();
            }
        }
        let Some(m) = found else {
            violation(&format!(
                "recovered {} but the last acknowledged state is {} (power loss: {power}, \
                 {} states since the last durable point, in flight: {})",
                describe(&got),
                describe(&seen(self.last())),
                self.states.len(),
                self.in_flight.is_some()
            ))
        };
        self.counters_agree(len, volume, &m);
        self.in_flight = None;
        self.power_pending = false;
        if power {
            // What survived a power loss is all on disk now.
            self.states = vec![m];
        } else if seen(self.last()) != got {
            self.states.push(m);
        }
        self.check("after recovery");
    }
}

/// An item stored by a plain `set` of bytes.
fn plain(b: Vec<u8>) -> Item {
    Item {
        file: b.len() >= MIN_FILE_SIZE,
        damaged: false,
        val: MVal::Bytes(b),
        expiry: Expiry::Never,
        tag: None,
    }
}

/// The model's `incr`: `Some(result)` or `None` for a type mismatch.
fn incr_model(m: &mut Model, k: u8, d: i64) -> Option<i64> {
    match m.get_mut(&k) {
        Some(i) if i.live() => match i.val {
            MVal::Int(v) => {
                i.val = MVal::Int(v + d);
                Some(v + d)
            }
            MVal::Bytes(_) => None,
        },
        _ => {
            m.insert(
                k,
                Item {
                    damaged: false,
                    val: MVal::Int(d),
                    expiry: Expiry::Never,
                    tag: None,
                    file: false,
                },
            );
            Some(d)
        }
    }
}

/// If `got` is `from` with some items removed (all the expired ones among them), that state.
fn culled(got: &Seen, from: &Model) -> Option<Model> {
    let want = seen(from);
    let mut out = Model::new();
    for (k, g) in got {
        let w = want.get(k)?;
        if g != w || w.is_none() {
            return None;
        }
        out.insert(*k, from.get(k)?.clone());
    }
    Some(out)
}

fn describe(s: &Seen) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|(k, v)| match v {
            None => format!("{k}:expired"),
            Some((MVal::Int(i), f, t)) => format!("{k}:int {i}{}{}", exp(*f), tag(*t)),
            Some((MVal::Bytes(b), f, t)) => {
                format!("{k}:{}B#{:08x}{}{}", b.len(), crc(b), exp(*f), tag(*t))
            }
        })
        .collect();
    format!("{{{}}}", items.join(" "))
}

fn exp(f: bool) -> &'static str {
    if f {
        "+exp"
    } else {
        ""
    }
}

fn tag(t: Option<u8>) -> String {
    t.map(|t| format!("+tag{t}")).unwrap_or_default()
}

fn crc(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

/// Runs one input.
pub fn run(input: &Input) {
    stats::run_started("ops");
    HISTORY.with(|h| h.borrow_mut().clear());
    note(format!("{:?}", input.config));
    // The library's own random choices (value file names, segment salts) come from
    // fastrand's thread-local generator: seed it so a run can be replayed.
    fastrand::seed(input.config.seed);
    let fs = FaultyStorage::new(FaultConfig {
        seed: input.config.seed,
        max_file_len: 2 << 20,
    });
    let mut run = Run {
        fs,
        view: None,
        cfg: input.config.clone(),
        cache: None,
        pid: 0,
        other: None,
        next_pid: 0,
        states: vec![Model::new()],
        in_flight: None,
        faulted: false,
        failing: false,
        space_limited: false,
        handle_faulted: false,
        other_faulted: false,
        power_pending: false,
        crashed: false,
        ckpt_seq: 0,
        faults_seen: 0,
        ops_seen: 0,
    };
    let c = run
        .open()
        .unwrap_or_else(|e| violation(&format!("creating the cache failed: {e}")));
    run.ckpt_seq = c.engine_info().checkpoint_seq;
    run.cache = Some(c);
    for op in input.ops.iter().take(MAX_OPS) {
        run.step(op);
    }
    // The end: heal, and a last crash and recovery must still hold everything.
    run.fs.clear_faults();
    run.failing = false;
    run.fs.set_space_limit(None);
    run.space_limited = false;
    run.verify("at the end");
    run.crash(true, None, false);
    run.check("at the end");
    stats::RUNS_WITH_CRASH.add(u64::from(run.crashed));
    stats::RUNS_WITH_FAULT.add(u64::from(run.fs.faults_injected() > 0));
    run.note_storage();
}

/// Decodes an input from fuzzer bytes.
pub fn decode(data: &[u8]) -> Option<Input> {
    Input::arbitrary_take_rest(Unstructured::new(data)).ok()
}
