//! Counters of what a fuzzing campaign exercised, printed to stderr when the process exits
//! (through a thread-local destructor, which glibc runs in `exit`, as libFuzzer exits) and, with
//! `DISKCACHE_FUZZ_STATS=N`, every N runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// One counter per event kind.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str) -> Counter {
        Counter {
            name,
            value: AtomicU64::new(0),
        }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Runs of a target's entry point.
pub static RUNS: Counter = Counter::new("runs");
/// Cache operations issued.
pub static OPS: Counter = Counter::new("cache_ops");
/// Cache operations that failed with an error (injected faults, full disk).
pub static FAILED_OPS: Counter = Counter::new("failed_ops");
/// Simulated power losses.
pub static POWER_LOSSES: Counter = Counter::new("power_losses");
/// Simulated kills of every process.
pub static KILLS: Counter = Counter::new("kills");
/// Simulated kills of the one process using the cache (no machine crash).
pub static PROCESS_KILLS: Counter = Counter::new("process_kills");
/// Crashes while recovery was running (after an injected fault stopped it).
pub static RECOVERY_CRASHES: Counter = Counter::new("recovery_crashes");
/// Recoveries checked against the model.
pub static RECOVERIES: Counter = Counter::new("recoveries_checked");
/// Errors injected by the simulated storage (`fail_after`).
pub static FAULTS_INJECTED: Counter = Counter::new("faults_injected");
/// Writes refused by the simulated space limit.
pub static DISK_FULL: Counter = Counter::new("disk_full_errors");
/// Counted storage operations (writes, syncs, creations, removals) run.
pub static STORAGE_OPS: Counter = Counter::new("storage_ops");
/// Checkpoints observed (checkpoint sequence increases).
pub static CHECKPOINTS: Counter = Counter::new("checkpoints");
/// `check(false)` calls whose report was verified.
pub static CHECKS: Counter = Counter::new("checks");
/// Recoveries that came back at the commit in flight when the crash came.
pub static IN_FLIGHT_RECOVERED: Counter = Counter::new("in_flight_commits_recovered");
/// Power losses that came back at an older state than the last acknowledged (sync Normal).
pub static TAIL_LOST: Counter = Counter::new("power_losses_losing_the_unsynced_tail");
/// Opens of a damaged directory that succeeded.
pub static DAMAGED_OPENED: Counter = Counter::new("damaged_opens_ok");
/// Opens of a damaged directory that failed with an error.
pub static DAMAGED_REFUSED: Counter = Counter::new("damaged_opens_refused");

/// Handles that went on in a forked child.
pub static FORKS: Counter = Counter::new("forks");
/// Value files removed or damaged between runs of the cache.
pub static VALUE_FILES_DAMAGED: Counter = Counter::new("value_files_damaged");

static ALL: [&Counter; 21] = [
    &RUNS,
    &OPS,
    &FAILED_OPS,
    &POWER_LOSSES,
    &KILLS,
    &PROCESS_KILLS,
    &RECOVERY_CRASHES,
    &RECOVERIES,
    &FAULTS_INJECTED,
    &DISK_FULL,
    &STORAGE_OPS,
    &CHECKPOINTS,
    &CHECKS,
    &IN_FLIGHT_RECOVERED,
    &TAIL_LOST,
    &DAMAGED_OPENED,
    &DAMAGED_REFUSED,
    &RUNS_WITH_CRASH,
    &RUNS_WITH_FAULT,
    &FORKS,
    &VALUE_FILES_DAMAGED,
];

/// Runs that crashed at least once.
pub static RUNS_WITH_CRASH: Counter = Counter::new("runs_with_a_crash");
/// Runs in which at least one error was injected.
pub static RUNS_WITH_FAULT: Counter = Counter::new("runs_with_an_injected_fault");

/// The counters as one line.
pub fn line(target: &str) -> String {
    let mut s = format!("diskcache-fuzz {target}:");
    for c in ALL.iter() {
        if c.get() > 0 {
            s.push_str(&format!(" {}={}", c.name, c.get()));
        }
    }
    s
}

static TARGET: OnceLock<&'static str> = OnceLock::new();
static EVERY: OnceLock<Option<u64>> = OnceLock::new();

/// Prints the counters when the thread that ran the target ends, which includes the main
/// thread's `exit` (glibc runs thread-local destructors there, as libFuzzer exits).
struct ExitReport;

impl Drop for ExitReport {
    fn drop(&mut self) {
        if let Some(t) = TARGET.get() {
            eprintln!("{}", line(t));
        }
    }
}

thread_local! {
    static REPORT: ExitReport = const { ExitReport };
}

/// Counts a run of `target`; arranges the exit report on the first.
pub fn run_started(target: &'static str) {
    let _ = TARGET.set(target);
    REPORT.with(|_| {});
    RUNS.inc();
    let every = EVERY.get_or_init(|| {
        std::env::var("DISKCACHE_FUZZ_STATS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
    });
    if let Some(every) = every {
        if RUNS.get().is_multiple_of(*every) {
            eprintln!("{}", line(target));
        }
    }
}
