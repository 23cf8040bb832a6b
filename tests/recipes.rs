//! Behaviour tests for the recipes (`Averager`, `Lock`, `RLock`, `BoundedSemaphore`,
//! `Throttle`, `barrier`, `MemoizeStampede`), ported from python-diskcache's
//! `tests/test_recipes.py` and the recipes' doctests.
//!
//! Each test pins one behaviour. python's tests sleep and then look at shared state; these
//! synchronise with channels instead: a thread that must be blocked reports through a
//! channel when it gets through, and the test checks that nothing arrived while the lock was
//! held (a correct lock can never let it through, however long the wait) and that it arrives
//! once released. Waits that should end are bounded by a generous `HANG` only to turn a hang
//! into a failure. The throttle runs on a simulated clock through `Throttle::wait_with`.

use diskcache::recipes::{
    barrier, Acquire, Averager, BoundedSemaphore, Lock, MemoizeStampede, RLock, Throttle,
};
use diskcache::{Cache, Error, EvictionPolicy, FanoutCache, Key, SyncLevel};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Upper bound on waits that should end: only there to turn a hang into a failure, never a
/// measure of speed.
const HANG: Duration = Duration::from_secs(60);

const MINUTE: Duration = Duration::from_secs(60);

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// A cache for recipes: their keys must never be evicted.
fn open(dir: &Path) -> Cache {
    Cache::builder()
        .eviction_policy(EvictionPolicy::None)
        .open(dir)
        .expect("open the cache")
}

fn open_fanout(dir: &Path) -> FanoutCache {
    FanoutCache::builder()
        .shards(4)
        .eviction_policy(EvictionPolicy::None)
        .sync(SyncLevel::Off)
        .open(dir)
        .expect("open the fanout cache")
}

/// Lets a thread that is meant to be blocked try to get through (it cannot, however long
/// this is). Not a timing assertion.
fn let_it_try() {
    std::thread::sleep(Duration::from_millis(30));
}

/// Asserts that nothing has come through `rx` yet.
fn assert_blocked<T: std::fmt::Debug>(rx: &mpsc::Receiver<T>, what: &str) {
    match rx.try_recv() {
        Err(mpsc::TryRecvError::Empty) => {}
        other => panic!("{what}: expected to be blocked, got {other:?}"),
    }
}

/// Polls `f` until it is true; panics after `HANG`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < HANG, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Averager (test_averager)
// ---------------------------------------------------------------------------------------------

#[test]
fn averager_keeps_a_running_average_that_pop_returns_and_removes() {
    let dir = tmp();
    let cache = open(dir.path());
    let nums = Averager::new(cache, "nums").expect("averager");
    for i in 0..10 {
        nums.add(f64::from(i)).expect("add");
    }
    assert_eq!(nums.get().expect("get"), Some(4.5));
    assert_eq!(nums.pop().expect("pop"), Some(4.5));
    assert_eq!(nums.get().expect("get after pop"), None);
    for i in 0..20 {
        nums.add(f64::from(i)).expect("add");
    }
    assert_eq!(nums.get().expect("get"), Some(9.5));
    assert_eq!(nums.pop().expect("pop"), Some(9.5));
}

#[test]
fn averager_of_nothing_is_none() {
    let dir = tmp();
    let nums = Averager::new(open(dir.path()), "nums").expect("averager");
    assert_eq!(nums.get().expect("get"), None);
    assert_eq!(nums.pop().expect("pop"), None);
}

#[test]
fn averager_stores_its_average_with_its_expiry_and_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    let nums = Averager::new(cache.clone(), "nums")
        .expect("averager")
        .expire(MINUTE)
        .tag("stats")
        .expect("tag");
    nums.add(1.0).expect("add");
    let e = cache
        .get_value_entry("nums")
        .expect("get_value_entry")
        .expect("stored");
    assert!(e.expire_time.is_some());
    assert_eq!(e.tag, Some(Key::Str("stats".into())));
    assert_eq!(cache.evict("stats").expect("evict"), 1);
    assert_eq!(nums.get().expect("get"), None);
}

#[test]
fn averagers_in_several_threads_count_every_value() {
    let dir = tmp();
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = dir.path();
            s.spawn(move || {
                let nums = Averager::new(open(dir), "nums").expect("averager");
                for _ in 0..25 {
                    nums.add(f64::from(t)).expect("add");
                }
            });
        }
    });
    // (0 + 1 + 2 + 3) * 25 / 100; a lost update would change it (or the count).
    let nums = Averager::new(open(dir.path()), "nums").expect("averager");
    assert_eq!(nums.get().expect("get"), Some(1.5));
}

#[test]
fn averager_on_a_fanout_cache_works_the_same() {
    let dir = tmp();
    let nums = Averager::new(open_fanout(dir.path()), "nums").expect("averager");
    for i in 0..10 {
        nums.add(f64::from(i)).expect("add");
    }
    assert_eq!(nums.get().expect("get"), Some(4.5));
    assert_eq!(nums.pop().expect("pop"), Some(4.5));
    assert_eq!(nums.get().expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// 2. Lock (test_lock)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_held_lock_blocks_another_thread_until_it_is_released() {
    let dir = tmp();
    let lock = Lock::new(open(dir.path()), "demo").expect("lock");
    lock.acquire().expect("acquire");
    assert!(lock.locked().expect("locked"));
    let (tx, rx) = mpsc::channel::<()>();
    let other_dir = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let lock = Lock::new(open(&other_dir), "demo").expect("lock");
        lock.acquire().expect("acquire in the other thread");
        tx.send(()).expect("report");
        lock.release().expect("release in the other thread");
    });
    let_it_try();
    assert_blocked(&rx, "the other thread's acquire");
    lock.release().expect("release");
    rx.recv_timeout(HANG)
        .expect("the other thread acquires once released");
    waiter.join().expect("the other thread");
    assert!(!lock.locked().expect("locked"));
}

#[test]
fn try_acquire_fails_while_the_lock_is_held_and_acquire_timeout_gives_up() {
    let dir = tmp();
    let cache = open(dir.path());
    let lock = Lock::new(cache.clone(), "demo").expect("lock");
    let same_key = Lock::new(cache, "demo").expect("lock");
    assert!(!lock.locked().expect("locked"));
    assert!(lock.try_acquire().expect("try_acquire"));
    assert!(!lock
        .try_acquire()
        .expect("try_acquire again (not re-entrant)"));
    assert!(!same_key
        .try_acquire()
        .expect("try_acquire through another lock"));
    assert!(!same_key
        .acquire_timeout(Duration::from_millis(20))
        .expect("acquire_timeout"));
    assert!(same_key.locked().expect("locked"));
    lock.release().expect("release");
    assert!(same_key.acquire_timeout(HANG).expect("acquire_timeout"));
}

#[test]
fn any_handle_may_release_a_lock() {
    // As in python-diskcache: release does not check who holds the lock.
    let dir = tmp();
    let holder = Lock::new(open(dir.path()), "demo").expect("lock");
    let other = Lock::new(open(dir.path()), "demo").expect("lock");
    holder.acquire().expect("acquire");
    other.release().expect("release by another handle");
    assert!(!holder.locked().expect("locked"));
    assert!(other.try_acquire().expect("try_acquire"));
}

#[test]
fn a_guard_holds_the_lock_until_dropped_or_released() {
    let dir = tmp();
    let lock = Lock::new(open(dir.path()), "demo").expect("lock");
    {
        let _guard = lock.guard().expect("guard");
        assert!(lock.locked().expect("locked"));
    }
    assert!(!lock.locked().expect("locked after drop"));
    let guard = lock.guard().expect("guard");
    assert!(lock.locked().expect("locked"));
    guard.release().expect("release");
    assert!(!lock.locked().expect("locked after release"));
}

#[test]
fn run_holds_the_lock_around_the_closure_and_releases_it_even_on_panic() {
    let dir = tmp();
    let lock = Lock::new(open(dir.path()), "demo").expect("lock");
    let held_inside = lock
        .run(|| lock.locked().expect("locked inside"))
        .expect("run");
    assert!(held_inside);
    assert!(!lock.locked().expect("locked after run"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lock.run(|| panic!("the critical section fails"))
    }));
    assert!(r.is_err());
    assert!(!lock.locked().expect("locked after a panic"));
}

#[test]
fn a_lock_with_an_expiry_frees_itself_after_its_holder_dies() {
    let dir = tmp();
    let holder = Lock::new(open(dir.path()), "demo")
        .expect("lock")
        .expire(Duration::from_millis(100));
    assert!(holder.try_acquire().expect("try_acquire"));
    // The holder "dies": dropped without a release.
    drop(holder);
    let other = Lock::new(open(dir.path()), "demo").expect("lock");
    assert!(other.acquire_timeout(HANG).expect("acquire_timeout"));
}

#[test]
fn a_lock_without_an_expiry_stays_held_after_its_holder_dies() {
    let dir = tmp();
    let holder = Lock::new(open(dir.path()), "demo").expect("lock");
    assert!(holder.try_acquire().expect("try_acquire"));
    drop(holder);
    let other = Lock::new(open(dir.path()), "demo").expect("lock");
    assert!(other.locked().expect("locked"));
    assert!(!other.try_acquire().expect("try_acquire"));
    let e = open(dir.path())
        .get_value_entry("demo")
        .expect("get_value_entry")
        .expect("the lock's key");
    assert_eq!(e.expire_time, None);
}

#[test]
fn a_lock_stores_its_key_with_its_tag() {
    let dir = tmp();
    let cache = open(dir.path());
    let lock = Lock::new(cache.clone(), "demo")
        .expect("lock")
        .tag("locks")
        .expect("tag");
    lock.acquire().expect("acquire");
    let e = cache
        .get_value_entry("demo")
        .expect("get_value_entry")
        .expect("the lock's key");
    assert_eq!(e.tag, Some(Key::Str("locks".into())));
    // Evicting the tag frees the lock.
    assert_eq!(cache.evict("locks").expect("evict"), 1);
    assert!(!lock.locked().expect("locked"));
}

#[test]
fn a_lock_on_a_fanout_cache_blocks_another_thread_until_released() {
    let dir = tmp();
    let fanout = open_fanout(dir.path());
    let lock = Lock::new(fanout.clone(), "demo").expect("lock");
    lock.acquire().expect("acquire");
    let (tx, rx) = mpsc::channel::<()>();
    let other = Lock::new(fanout, "demo").expect("lock");
    let waiter = std::thread::spawn(move || {
        other.acquire().expect("acquire in the other thread");
        tx.send(()).expect("report");
        other.release().expect("release");
    });
    let_it_try();
    assert_blocked(&rx, "the other thread's acquire");
    lock.release().expect("release");
    rx.recv_timeout(HANG)
        .expect("the other thread acquires once released");
    waiter.join().expect("the other thread");
}

// ---------------------------------------------------------------------------------------------
// 3. RLock (test_rlock)
// ---------------------------------------------------------------------------------------------

#[test]
fn an_rlock_can_be_taken_again_by_the_thread_that_holds_it() {
    let dir = tmp();
    let cache = open(dir.path());
    let rlock = RLock::new(cache.clone(), "demo").expect("rlock");
    rlock.acquire().expect("acquire");
    rlock.acquire().expect("acquire again");
    assert!(rlock.try_acquire().expect("try_acquire a third time"));
    // Another RLock object on the same key, same thread: the same holder.
    let same_key = RLock::new(cache, "demo").expect("rlock");
    assert!(same_key
        .try_acquire()
        .expect("try_acquire through another object"));
    for _ in 0..4 {
        rlock.release().expect("release");
    }
}

#[test]
fn an_rlock_blocks_other_threads_until_released_as_often_as_taken() {
    let dir = tmp();
    let rlock = RLock::new(open(dir.path()), "demo").expect("rlock");
    rlock.acquire().expect("acquire");
    rlock.acquire().expect("acquire again");
    let (tx, rx) = mpsc::channel::<()>();
    let other = rlock.clone();
    let waiter = std::thread::spawn(move || {
        assert!(!other
            .try_acquire()
            .expect("try_acquire in the other thread"));
        other.acquire().expect("acquire in the other thread");
        tx.send(()).expect("report");
        other.release().expect("release in the other thread");
    });
    let_it_try();
    assert_blocked(&rx, "the other thread's acquire while held twice");
    rlock.release().expect("release once");
    let_it_try();
    assert_blocked(&rx, "the other thread's acquire while still held once");
    rlock.release().expect("release twice");
    rx.recv_timeout(HANG)
        .expect("the other thread acquires once fully released");
    waiter.join().expect("the other thread");
}

#[test]
fn releasing_an_rlock_this_thread_does_not_hold_is_an_error() {
    let dir = tmp();
    let rlock = RLock::new(open(dir.path()), "demo").expect("rlock");
    let err = rlock.release().expect_err("release of a lock never taken");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    rlock.acquire().expect("acquire");
    rlock.release().expect("release");
    let err = rlock.release().expect_err("one release too many");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn releasing_an_rlock_held_by_another_thread_is_an_error() {
    let dir = tmp();
    let rlock = RLock::new(open(dir.path()), "demo").expect("rlock");
    rlock.acquire().expect("acquire");
    let other = rlock.clone();
    let err = std::thread::spawn(move || other.release())
        .join()
        .expect("the other thread")
        .expect_err("release by a thread that does not hold it");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // Still held by this thread.
    rlock.release().expect("release by the holder");
}

// ---------------------------------------------------------------------------------------------
// 4. BoundedSemaphore (test_semaphore)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bounded_semaphore_of_three_admits_three_and_blocks_a_fourth_until_a_release() {
    let dir = tmp();
    let sem = BoundedSemaphore::new(open(dir.path()), "demo", 3).expect("semaphore");
    sem.acquire().expect("first");
    sem.acquire().expect("second");
    sem.acquire().expect("third");
    assert!(!sem.try_acquire().expect("try_acquire a fourth"));
    let (tx, rx) = mpsc::channel::<()>();
    let other = sem.clone();
    let waiter = std::thread::spawn(move || {
        other.acquire().expect("fourth, in another thread");
        tx.send(()).expect("report");
        other.release().expect("release the fourth");
    });
    let_it_try();
    assert_blocked(&rx, "the fourth acquire");
    sem.release().expect("release one");
    rx.recv_timeout(HANG)
        .expect("the fourth acquires once one is released");
    waiter.join().expect("the other thread");
    sem.release().expect("release");
    sem.release().expect("release");
    // All three free again.
    for _ in 0..3 {
        assert!(sem.try_acquire().expect("try_acquire"));
    }
}

#[test]
fn releasing_a_semaphore_more_often_than_acquired_is_an_error() {
    let dir = tmp();
    let sem = BoundedSemaphore::new(open(dir.path()), "demo", 2).expect("semaphore");
    let err = sem.release().expect_err("release before any acquire");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    sem.acquire().expect("acquire");
    sem.release().expect("release");
    let err = sem.release().expect_err("one release too many");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn a_semaphore_with_an_expiry_gets_its_permits_back_after_its_holders_die() {
    let dir = tmp();
    let holder = BoundedSemaphore::new(open(dir.path()), "demo", 1)
        .expect("semaphore")
        .expire(Duration::from_millis(100));
    assert!(holder.try_acquire().expect("try_acquire"));
    drop(holder);
    let other = BoundedSemaphore::new(open(dir.path()), "demo", 1).expect("semaphore");
    eventually("the permit coming back", || {
        other.try_acquire().expect("try_acquire")
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Throttle (the throttle doctest, on a simulated clock)
// ---------------------------------------------------------------------------------------------

/// A simulated clock: `now` reads it and `sleep` advances it (and records the sleep).
#[derive(Default)]
struct SimClock {
    now: Mutex<f64>,
    slept: Mutex<Vec<f64>>,
}

impl SimClock {
    fn starting_at(t: f64) -> SimClock {
        SimClock {
            now: Mutex::new(t),
            slept: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> f64 {
        *self.now.lock().expect("clock")
    }

    fn sleep(&self, d: Duration) {
        self.slept.lock().expect("sleeps").push(d.as_secs_f64());
        *self.now.lock().expect("clock") += d.as_secs_f64();
    }

    fn wait(&self, t: &Throttle<Cache>) {
        t.wait_with(|| self.now(), |d| self.sleep(d))
            .expect("wait_with");
    }
}

/// A simulated start far after the real time at which the throttles below are created, so
/// their buckets are full, and a whole number of seconds, so the arithmetic is exact.
const SIM_START: f64 = 4_000_000_000.0;

#[test]
fn a_throttle_allows_a_burst_of_count_calls_then_count_calls_per_period() {
    // The doctest: 2 calls per second over 2 seconds; python counts 6 or 7 in real time.
    let dir = tmp();
    let throttle = Throttle::new(open(dir.path()), "api", 2, Duration::from_secs(1)).expect("new");
    let clock = SimClock::starting_at(SIM_START);
    let mut times = Vec::new();
    loop {
        clock.wait(&throttle);
        if clock.now() > SIM_START + 2.0 {
            break;
        }
        times.push(clock.now() - SIM_START);
    }
    // The full bucket's two calls at once, then one every half second.
    assert_eq!(times, [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]);
    assert_eq!(*clock.slept.lock().expect("sleeps"), [0.5; 5]);
}

#[test]
fn a_throttle_of_one_call_per_second_spaces_calls_a_second_apart() {
    let dir = tmp();
    let throttle = Throttle::new(open(dir.path()), "api", 1, Duration::from_secs(1)).expect("new");
    let clock = SimClock::starting_at(SIM_START);
    let mut times = Vec::new();
    for _ in 0..5 {
        clock.wait(&throttle);
        times.push(clock.now() - SIM_START);
    }
    assert_eq!(times, [0.0, 1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn a_throttle_refills_its_bucket_while_idle_but_never_beyond_count() {
    let dir = tmp();
    let throttle = Throttle::new(open(dir.path()), "api", 3, Duration::from_secs(3)).expect("new");
    let clock = SimClock::starting_at(SIM_START);
    for _ in 0..3 {
        clock.wait(&throttle);
    }
    assert!(clock.slept.lock().expect("sleeps").is_empty());
    // An hour idle refills the bucket to 3, not more.
    *clock.now.lock().expect("clock") += 3600.0;
    for _ in 0..3 {
        clock.wait(&throttle);
    }
    assert!(clock.slept.lock().expect("sleeps").is_empty());
    clock.wait(&throttle);
    assert_eq!(*clock.slept.lock().expect("sleeps"), [1.0]);
}

#[test]
fn creating_a_throttle_resets_its_bucket_to_full() {
    // A clock that stands still before the bucket's creation never refills it, so only a
    // reset can let more calls through without a sleep.
    let dir = tmp();
    let cache = open(dir.path());
    let frozen = || 0.0;
    let no_sleep = |d: Duration| panic!("no sleep expected, asked for {d:?}");
    let first = Throttle::new(cache.clone(), "api", 3, Duration::from_secs(1)).expect("new");
    for _ in 0..3 {
        first.wait_with(frozen, no_sleep).expect("wait_with");
    }
    let second = Throttle::new(cache, "api", 3, Duration::from_secs(1)).expect("new");
    for _ in 0..3 {
        second.wait_with(frozen, no_sleep).expect("wait_with");
    }
}

#[test]
fn a_throttle_shares_its_bucket_across_handles() {
    let dir = tmp();
    let a = Throttle::new(open(dir.path()), "api", 2, Duration::from_secs(1)).expect("new");
    // A second handle on the same bucket that does not reset it: a clone.
    let b = a.clone();
    let clock = SimClock::starting_at(SIM_START);
    clock.wait(&a);
    clock.wait(&b);
    assert!(clock.slept.lock().expect("sleeps").is_empty());
    clock.wait(&a);
    assert_eq!(*clock.slept.lock().expect("sleeps"), [0.5]);
}

#[test]
fn a_throttle_needs_a_positive_count_and_period() {
    let dir = tmp();
    let cache = open(dir.path());
    let err = Throttle::new(cache.clone(), "api", 0, Duration::from_secs(1)).expect_err("0 calls");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = Throttle::new(cache, "api", 1, Duration::ZERO).expect_err("a zero period");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn throttle_run_returns_the_result_of_the_call() {
    let dir = tmp();
    let throttle =
        Throttle::new(open(dir.path()), "api", 100, Duration::from_secs(1)).expect("new");
    assert_eq!(throttle.run(|| 42).expect("run"), 42);
}

// ---------------------------------------------------------------------------------------------
// 6. barrier
// ---------------------------------------------------------------------------------------------

#[test]
fn barrier_runs_one_caller_at_a_time_across_threads() {
    const THREADS: usize = 4;
    const CALLS: u64 = 10;
    let dir = tmp();
    let inside = AtomicBool::new(false);
    let overlaps = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (dir, inside, overlaps) = (dir.path(), &inside, &overlaps);
            s.spawn(move || {
                let cache = open(dir);
                let lock = Lock::new(cache.clone(), "barrier").expect("lock");
                for _ in 0..CALLS {
                    barrier(&lock, || {
                        if inside.swap(true, Ordering::SeqCst) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        // A read-modify-write that only the barrier makes safe.
                        let n: u64 = cache.get("n").expect("get").unwrap_or(0);
                        std::thread::yield_now();
                        cache.set("n", n + 1).expect("set");
                        inside.store(false, Ordering::SeqCst);
                    })
                    .expect("barrier");
                }
            });
        }
    });
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    let total: Option<u64> = open(dir.path()).get("n").expect("get");
    assert_eq!(total, Some(THREADS as u64 * CALLS));
}

#[test]
fn barrier_works_with_a_semaphore_of_one_and_returns_the_result() {
    let dir = tmp();
    let sem = BoundedSemaphore::new(open(dir.path()), "one", 1).expect("semaphore");
    let r = barrier(&sem, || {
        assert!(!sem.try_acquire().expect("try_acquire inside"));
        7
    })
    .expect("barrier");
    assert_eq!(r, 7);
    assert!(sem.try_acquire().expect("try_acquire after"));
}

// ---------------------------------------------------------------------------------------------
// 7. MemoizeStampede (test_memoize_stampede)
// ---------------------------------------------------------------------------------------------

#[test]
fn memoize_stampede_computes_a_miss_in_the_caller_and_returns_the_stored_result_after() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let square = MemoizeStampede::new(cache.clone(), "square", MINUTE, move |x: &u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        x * x
    });
    assert_eq!(square.call(&12).expect("miss"), 144);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let key = square.cache_key(&12).expect("cache_key");
    let e = cache
        .get_value_entry(&key)
        .expect("get_value_entry")
        .expect("stored by the miss");
    assert!(e.expire_time.is_some(), "stored with the expiry");
    // With beta 1 and a minute left, a hit is served from the cache (it would take a
    // computation of many seconds to make an early recompute likely).
    assert_eq!(square.call(&12).expect("hit"), 144);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(square.call(&3).expect("another argument"), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_ne!(square.cache_key(&3).expect("cache_key"), key);
}

#[test]
fn memoize_stampede_recomputes_an_expired_result_in_the_caller() {
    let dir = tmp();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let generation = MemoizeStampede::new(
        open(dir.path()),
        "generation",
        Duration::ZERO,
        move |_: &()| counted.fetch_add(1, Ordering::SeqCst) + 1,
    );
    assert_eq!(generation.call(&()).expect("call"), 1);
    assert_eq!(generation.call(&()).expect("call"), 2);
    assert_eq!(generation.call(&()).expect("call"), 3);
}

#[test]
fn memoize_stampede_with_a_huge_beta_returns_the_stale_value_and_recomputes_in_the_background() {
    let dir = tmp();
    let cache = open(dir.path());
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    // Each computation returns its generation; it takes a moment, so its delta is > 0.
    let generation = MemoizeStampede::new(cache.clone(), "generation", MINUTE, move |_: &()| {
        std::thread::sleep(Duration::from_millis(2));
        counted.fetch_add(1, Ordering::SeqCst) + 1
    })
    .beta(1e300);
    assert_eq!(generation.call(&()).expect("miss"), 1);
    // A huge beta makes every hit an early expiry: the stale value comes back at once ...
    assert_eq!(generation.call(&()).expect("early expiry"), 1);
    // ... and a background thread stores the next generation.
    let key = generation.cache_key(&()).expect("cache_key");
    eventually("the background recompute", || {
        cache
            .get::<(u64, f64)>(&key)
            .expect("get")
            .is_some_and(|(g, _)| g > 1)
    });
    assert!(calls.load(Ordering::SeqCst) >= 2);
    assert!(generation.call(&()).expect("hit") >= 2);
}

#[test]
fn memoize_stampede_on_a_fanout_cache_computes_once() {
    let dir = tmp();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let double = MemoizeStampede::new(open_fanout(dir.path()), "double", MINUTE, move |x: &i64| {
        counted.fetch_add(1, Ordering::SeqCst);
        x * 2
    });
    for x in 0..10 {
        assert_eq!(double.call(&x).expect("call"), x * 2);
        assert_eq!(double.call(&x).expect("call again"), x * 2);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}
