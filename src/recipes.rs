//! Recipes built on a cache (python-diskcache's `diskcache.recipes`): a running average,
//! cross-process locks and semaphores, a throttle, a barrier, and memoization that
//! recomputes early to avoid cache stampedes.
//!
//! They work on anything with the [`CacheLike`] operations: [`Cache`] and [`FanoutCache`]
//! (whose calls here always wait for busy shards, as python-diskcache's recipes pass
//! `retry=True`). Their keys must never be evicted: use the eviction policy `none`, or a
//! size limit the cache never reaches.
//!
//! Locks and semaphores are spin locks on the cache, safe across threads and processes.
//! Give them an expiry ([`Lock::expire`]) so that a holder that dies cannot block the
//! others forever.

use crate::cache::{memo_call_key, thread_token, Cache, Entry, MemoizeOptions, SetOptions};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::fanout::FanoutCache;
use crate::key::Key;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the locks sleep between attempts (python-diskcache's 1 ms).
const SPIN: Duration = Duration::from_millis(1);

/// The cache operations the recipes use; implemented by [`Cache`] and [`FanoutCache`].
pub trait CacheLike: Clone + Send + Sync + 'static {
    /// The value of `key` with its expiry and tag, if present and not expired.
    fn entry<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<Entry<V>>>;
    /// Stores `value` under `key`.
    fn store<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<()>;
    /// Stores `value` only if `key` is missing or expired; whether it stored.
    fn store_new<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<bool>;
    /// Removes `key`; whether it was present.
    fn remove(&self, key: &Key) -> Result<bool>;
    /// Removes `key` and returns its value.
    fn take<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<V>>;
    /// Runs `f` as one transaction.
    fn atomically<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R>;
}

impl<C: Codec> CacheLike for Cache<C> {
    fn entry<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<Entry<V>>> {
        self.get_entry(key)
    }
    fn store<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<()> {
        self.set_with(key, value, opts)
    }
    fn store_new<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<bool> {
        self.add_with(key, value, opts)
    }
    fn remove(&self, key: &Key) -> Result<bool> {
        self.delete(key)
    }
    fn take<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<V>> {
        self.pop(key)
    }
    fn atomically<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.transact(f)
    }
}

/// Runs a single-shard call until its shard's lock is free.
fn patiently<R>(mut f: impl FnMut() -> Result<R>) -> Result<R> {
    loop {
        match f() {
            Err(Error::Timeout { .. }) => continue,
            r => return r,
        }
    }
}

impl<C: Codec> CacheLike for FanoutCache<C> {
    fn entry<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<Entry<V>>> {
        let shard = self.shard_of(key)?;
        patiently(|| shard.get_entry(key))
    }
    fn store<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<()> {
        let shard = self.shard_of(key)?;
        patiently(|| shard.set_with(key, value, opts))
    }
    fn store_new<V: Serialize>(&self, key: &Key, value: &V, opts: &SetOptions) -> Result<bool> {
        let shard = self.shard_of(key)?;
        patiently(|| shard.add_with(key, value, opts))
    }
    fn remove(&self, key: &Key) -> Result<bool> {
        let shard = self.shard_of(key)?;
        patiently(|| shard.delete(key))
    }
    fn take<V: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<V>> {
        let shard = self.shard_of(key)?;
        patiently(|| shard.pop(key))
    }
    fn atomically<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.transact(f)
    }
}

/// Something that can be acquired and released across threads and processes: [`Lock`],
/// [`RLock`], [`BoundedSemaphore`]. Waiting spins, sleeping 1 ms between attempts (as
/// python-diskcache's recipes do).
pub trait Acquire {
    /// Acquires if that is possible now; whether it did.
    fn try_acquire(&self) -> Result<bool>;
    /// Releases.
    fn release(&self) -> Result<()>;

    /// Waits until acquired.
    fn acquire(&self) -> Result<()> {
        while !self.try_acquire()? {
            std::thread::sleep(SPIN);
        }
        Ok(())
    }

    /// Waits up to `timeout`; whether it acquired.
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        loop {
            if self.try_acquire()? {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(SPIN);
        }
    }

    /// Runs `f` while holding `self`, releasing it afterwards, even if `f` panics.
    fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R>
    where
        Self: Sized,
    {
        let guard = self.guard()?;
        let r = f();
        guard.release()?;
        Ok(r)
    }

    /// Acquires and returns a guard that releases when dropped.
    fn guard(&self) -> Result<Guard<'_, Self>>
    where
        Self: Sized,
    {
        self.acquire()?;
        Ok(Guard {
            held: self,
            released: false,
        })
    }
}

/// Holds an [`Acquire`] until dropped (or [`Guard::release`]d, which reports errors).
#[must_use = "the lock is released when the guard is dropped"]
pub struct Guard<'a, L: Acquire> {
    held: &'a L,
    released: bool,
}

impl<L: Acquire> Guard<'_, L> {
    /// Releases now, reporting an error that dropping would ignore.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.held.release()
    }
}

impl<L: Acquire> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: the expiry (if any) frees it otherwise.
            let _ = self.held.release();
        }
    }
}

impl<L: Acquire> fmt::Debug for Guard<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

/// Runs every call of `f` under `lock` (python-diskcache's `barrier` decorator): one caller
/// at a time across threads and processes.
pub fn barrier<L: Acquire, R>(lock: &L, f: impl FnOnce() -> R) -> Result<R> {
    lock.run(f)
}

fn key_of(key: impl Serialize) -> Result<Key> {
    Key::from_value(&key)
}

/// Where a recipe keeps its state: a key in a cache, stored with an optional expiry and
/// tag.
#[derive(Clone, Debug)]
struct Slot<S: CacheLike> {
    cache: S,
    key: Key,
    expire: Option<Duration>,
    tag: Option<Key>,
}

impl<S: CacheLike> Slot<S> {
    fn new(cache: S, key: impl Serialize) -> Result<Slot<S>> {
        Ok(Slot {
            cache,
            key: key_of(key)?,
            expire: None,
            tag: None,
        })
    }

    fn get<V: DeserializeOwned + 'static>(&self) -> Result<Option<V>> {
        Ok(self.cache.entry(&self.key)?.map(|e| e.value))
    }

    fn options(&self) -> SetOptions {
        let o = SetOptions::new().expire_opt(self.expire);
        match &self.tag {
            Some(t) => o.tag(t),
            None => o,
        }
    }

    fn set<V: Serialize>(&self, value: &V) -> Result<()> {
        self.cache.store(&self.key, value, &self.options())
    }

    fn atomically<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.cache.atomically(f)
    }
}

/// `expire` and `tag` builder methods for a recipe with a `slot`.
macro_rules! slot_options {
    ($recipe:ident, $expire_doc:literal) => {
        impl<S: CacheLike> $recipe<S> {
            #[doc = $expire_doc]
            pub fn expire(mut self, after: Duration) -> Self {
                self.slot.expire = Some(after);
                self
            }

            /// Store the recipe's key with this tag.
            pub fn tag(mut self, tag: impl Serialize) -> Result<Self> {
                self.slot.tag = Some(key_of(tag)?);
                Ok(self)
            }
        }
    };
}

/// A running average kept in a cache (python-diskcache's `Averager`): the total and the
/// count, updated atomically.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::recipes::Averager;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = diskcache::Cache::open(dir.path())?;
/// let avg = Averager::new(cache, "latency")?;
/// for x in [1.0, 2.0, 6.0] {
///     avg.add(x)?;
/// }
/// assert_eq!(avg.get()?, Some(3.0));
/// assert_eq!(avg.pop()?, Some(3.0));
/// assert_eq!(avg.get()?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Averager<S: CacheLike> {
    slot: Slot<S>,
}

slot_options!(Averager, "Each update stores the average with this expiry.");

impl<S: CacheLike> Averager<S> {
    /// An average stored under `key`.
    pub fn new(cache: S, key: impl Serialize) -> Result<Averager<S>> {
        Ok(Averager {
            slot: Slot::new(cache, key)?,
        })
    }

    /// Adds a value.
    pub fn add(&self, value: f64) -> Result<()> {
        self.slot.atomically(|| {
            let (total, count) = self.slot.get::<(f64, u64)>()?.unwrap_or((0.0, 0));
            self.slot.set(&(total + value, count + 1))
        })
    }

    /// The average so far; `None` if nothing was added.
    pub fn get(&self) -> Result<Option<f64>> {
        Ok(average(self.slot.get()?))
    }

    /// Removes the average and returns it.
    pub fn pop(&self) -> Result<Option<f64>> {
        Ok(average(self.slot.cache.take(&self.slot.key)?))
    }
}

fn average(stored: Option<(f64, u64)>) -> Option<f64> {
    match stored {
        Some((total, count)) if count > 0 => Some(total / count as f64),
        _ => None,
    }
}

/// A lock held in a cache, across threads and processes (python-diskcache's `Lock`): a key
/// that exists while the lock is held. Not re-entrant; any handle may release it.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::recipes::{Acquire, Lock};
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = diskcache::Cache::open(dir.path())?;
/// let lock = Lock::new(cache, "report")?.expire(Duration::from_secs(60));
/// let total = lock.run(|| 2 + 2)?;
/// assert_eq!(total, 4);
/// assert!(lock.try_acquire()?);
/// assert!(!lock.try_acquire()?);
/// lock.release()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Lock<S: CacheLike> {
    slot: Slot<S>,
}

slot_options!(
    Lock,
    "The lock frees itself this long after it was taken, so a holder that dies cannot block \
     the others forever. Choose it longer than any critical section."
);

impl<S: CacheLike> Lock<S> {
    /// A lock under `key`.
    pub fn new(cache: S, key: impl Serialize) -> Result<Lock<S>> {
        Ok(Lock {
            slot: Slot::new(cache, key)?,
        })
    }

    /// Whether someone holds the lock.
    pub fn locked(&self) -> Result<bool> {
        Ok(self.slot.get::<u32>()?.is_some())
    }
}

impl<S: CacheLike> Acquire for Lock<S> {
    /// Takes the lock if it is free; whether it did.
    fn try_acquire(&self) -> Result<bool> {
        let s = &self.slot;
        s.cache.store_new(&s.key, &std::process::id(), &s.options())
    }

    /// Frees the lock (whoever holds it, as in python-diskcache).
    fn release(&self) -> Result<()> {
        self.slot.cache.remove(&self.slot.key).map(|_| ())
    }
}

/// The identity of this thread in this process, for re-entrant locks.
fn owner() -> String {
    format!("{}-{}", std::process::id(), thread_token())
}

/// A re-entrant lock held in a cache (python-diskcache's `RLock`): the thread that holds it
/// may take it again, and must release it as many times.
#[derive(Clone, Debug)]
pub struct RLock<S: CacheLike> {
    slot: Slot<S>,
}

slot_options!(
    RLock,
    "The lock frees itself this long after it was last taken."
);

impl<S: CacheLike> RLock<S> {
    /// A re-entrant lock under `key`.
    pub fn new(cache: S, key: impl Serialize) -> Result<RLock<S>> {
        Ok(RLock {
            slot: Slot::new(cache, key)?,
        })
    }
}

impl<S: CacheLike> Acquire for RLock<S> {
    /// Takes the lock if it is free or already this thread's; whether it did.
    fn try_acquire(&self) -> Result<bool> {
        let me = owner();
        self.slot.atomically(|| {
            let (holder, count) = self
                .slot
                .get::<(String, u64)>()?
                .unwrap_or((String::new(), 0));
            if count == 0 || holder == me {
                self.slot.set(&(me, count + 1))?;
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }

    /// Releases one hold; releasing a lock this thread does not hold is
    /// [`Error::InvalidArgument`].
    fn release(&self) -> Result<()> {
        let me = owner();
        self.slot
            .atomically(|| match self.slot.get::<(String, u64)>()? {
                Some((holder, count)) if holder == me && count > 0 => {
                    self.slot.set(&(me, count - 1))
                }
                _ => Err(Error::InvalidArgument(
                    "cannot release un-acquired lock".into(),
                )),
            })
    }
}

/// A semaphore with `value` permits held in a cache (python-diskcache's
/// `BoundedSemaphore`): at most `value` holders at once, across threads and processes.
#[derive(Clone, Debug)]
pub struct BoundedSemaphore<S: CacheLike> {
    slot: Slot<S>,
    value: u64,
}

slot_options!(
    BoundedSemaphore,
    "The count of free permits resets to `value` this long after it last changed, so holders \
     that die cannot use up the permits forever."
);

impl<S: CacheLike> BoundedSemaphore<S> {
    /// A semaphore with `value` permits under `key`.
    pub fn new(cache: S, key: impl Serialize, value: u64) -> Result<BoundedSemaphore<S>> {
        Ok(BoundedSemaphore {
            slot: Slot::new(cache, key)?,
            value,
        })
    }

    fn available(&self) -> Result<u64> {
        Ok(self.slot.get::<u64>()?.unwrap_or(self.value))
    }
}

impl<S: CacheLike> Acquire for BoundedSemaphore<S> {
    /// Takes a permit if one is free; whether it did.
    fn try_acquire(&self) -> Result<bool> {
        self.slot.atomically(|| {
            let free = self.available()?;
            if free == 0 {
                return Ok(false);
            }
            self.slot.set(&(free - 1))?;
            Ok(true)
        })
    }

    /// Returns a permit; returning more than were taken is [`Error::InvalidArgument`].
    fn release(&self) -> Result<()> {
        self.slot.atomically(|| {
            let free = self.available()?;
            if free >= self.value {
                return Err(Error::InvalidArgument(
                    "cannot release un-acquired semaphore".into(),
                ));
            }
            self.slot.set(&(free + 1))
        })
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A token bucket in a cache (python-diskcache's `throttle`): at most `count` calls per
/// `per`, across threads and processes, with bursts up to `count`.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::recipes::Throttle;
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = diskcache::Cache::open(dir.path())?;
/// let throttle = Throttle::new(cache, "api", 100, Duration::from_secs(1))?;
/// let answer = throttle.run(|| 42)?;
/// assert_eq!(answer, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Throttle<S: CacheLike> {
    slot: Slot<S>,
    count: f64,
    rate: f64,
}

slot_options!(
    Throttle,
    "Store the bucket with this expiry (a bucket that expires starts full again)."
);

impl<S: CacheLike> Throttle<S> {
    /// A throttle of `count` calls per `per` under `key`, starting with a full bucket (like
    /// python-diskcache's decorator, creating it resets the bucket).
    pub fn new(cache: S, key: impl Serialize, count: u32, per: Duration) -> Result<Throttle<S>> {
        if count == 0 || per.is_zero() {
            return Err(Error::InvalidArgument(
                "a throttle needs a positive count and period".into(),
            ));
        }
        let t = Throttle {
            slot: Slot::new(cache, key)?,
            count: f64::from(count),
            rate: f64::from(count) / per.as_secs_f64(),
        };
        t.slot.set(&(unix_now(), t.count))?;
        Ok(t)
    }

    /// Waits until a call is allowed, and counts it.
    pub fn wait(&self) -> Result<()> {
        self.wait_with(unix_now, std::thread::sleep)
    }

    /// [`Throttle::wait`] with a given clock (seconds since the Unix epoch) and sleep, for
    /// tests and simulations.
    pub fn wait_with(
        &self,
        mut now: impl FnMut() -> f64,
        mut sleep: impl FnMut(Duration),
    ) -> Result<()> {
        loop {
            let delay = self.slot.atomically(|| {
                let t = now();
                let (last, tally) = self.slot.get::<(f64, f64)>()?.unwrap_or((t, self.count));
                let tally = tally + (t - last).max(0.0) * self.rate;
                if tally > self.count {
                    self.slot.set(&(t, self.count - 1.0))?;
                    Ok(0.0)
                } else if tally >= 1.0 {
                    self.slot.set(&(t, tally - 1.0))?;
                    Ok(0.0)
                } else {
                    Ok((1.0 - tally) / self.rate)
                }
            })?;
            if delay <= 0.0 {
                return Ok(());
            }
            sleep(Duration::from_secs_f64(delay));
        }
    }

    /// Waits until allowed, then runs `f`.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        self.wait()?;
        Ok(f())
    }
}

/// Memoization that recomputes a result before it expires, in the background, so that
/// callers never all miss at once (python-diskcache's `memoize_stampede`, after Vattani,
/// Chierichetti and Lowenstein, "Optimal probabilistic cache stampede prevention", VLDB
/// 2015).
///
/// Each result is stored with the time its computation took (`delta`). A call that finds a
/// result with `ttl` left returns it, unless `-delta * beta * ln(rand()) >= ttl`: then it
/// still returns it, but one background thread (per `delta` window, across processes)
/// recomputes and stores a fresh one. A miss computes in the caller. `beta > 1` recomputes
/// earlier, `beta < 1` later.
///
/// ```
/// # fn main() -> diskcache::Result<()> {
/// use diskcache::recipes::MemoizeStampede;
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = diskcache::Cache::open(dir.path())?;
/// let square = MemoizeStampede::new(cache, "square", Duration::from_secs(60), |x: &u64| x * x);
/// assert_eq!(square.call(&12)?, 144);
/// assert_eq!(square.call(&12)?, 144);
/// # Ok(())
/// # }
/// ```
pub struct MemoizeStampede<S, A, R, F> {
    cache: S,
    name: String,
    expire: Duration,
    beta: f64,
    opts: MemoizeOptions,
    f: Arc<F>,
    types: PhantomData<fn(&A) -> R>,
}

impl<S, A, R, F> fmt::Debug for MemoizeStampede<S, A, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoizeStampede")
            .field("name", &self.name)
            .field("expire", &self.expire)
            .field("beta", &self.beta)
            .finish()
    }
}

impl<S, A, R, F> MemoizeStampede<S, A, R, F>
where
    S: CacheLike,
    A: Serialize + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(&A) -> R + Send + Sync + 'static,
{
    /// Memoizes `f` under `name`; results expire after `expire`. `beta` is 1.
    pub fn new(cache: S, name: impl Into<String>, expire: Duration, f: F) -> Self {
        MemoizeStampede {
            cache,
            name: name.into(),
            expire,
            beta: 1.0,
            opts: MemoizeOptions::new(),
            f: Arc::new(f),
            types: PhantomData,
        }
    }

    /// How early to recompute (default 1; higher is earlier).
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// Key options (typed, ignore) and a tag for the stored results. Their expiry is
    /// ignored: results expire after the `expire` given to [`MemoizeStampede::new`].
    pub fn options(mut self, opts: MemoizeOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The key under which the result for `args` is stored.
    pub fn cache_key(&self, args: &A) -> Result<Key> {
        Key::from_encoded(&memo_call_key(&self.name, args, &self.opts)?)
    }

    fn set_options(&self) -> SetOptions {
        self.opts.set_options().clone().expire(self.expire)
    }

    /// The cached result for `args`, or a fresh one; see the type's documentation.
    pub fn call(&self, args: &A) -> Result<R> {
        let k = self.cache_key(args)?;
        if let Some(e) = self.cache.entry::<(R, f64)>(&k)? {
            let (value, delta) = e.value;
            let ttl = e.expire_time.map_or(f64::INFINITY, |t| {
                match t.duration_since(SystemTime::now()) {
                    Ok(d) => d.as_secs_f64(),
                    Err(_) => 0.0,
                }
            });
            let draw = -delta * self.beta * fastrand::f64().ln();
            if draw < ttl {
                return Ok(value);
            }
            // Early expiry: one caller per `delta` window recomputes in the background.
            let lease = Key::from_encoded(&memo_call_key(
                &format!("{}\0lease", self.name),
                args,
                &self.opts,
            )?)?;
            let lease_opts = SetOptions::new().expire(Duration::from_secs_f64(delta.max(0.0)));
            if self.cache.store_new(&lease, &(), &lease_opts)? {
                let cache = self.cache.clone();
                let k = k.clone();
                let f = Arc::clone(&self.f);
                let args = args.clone();
                let opts = self.set_options();
                std::thread::spawn(move || {
                    let (fresh, delta) = timed(|| f(&args));
                    // Nobody waits for this thread: a failed store leaves the old result.
                    let _ = cache.store(&k, &(fresh, delta), &opts);
                });
            }
            return Ok(value);
        }
        let (value, delta) = timed(|| (self.f)(args));
        self.cache
            .store(&k, &(&value, delta), &self.set_options())?;
        Ok(value)
    }
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, f64) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed().as_secs_f64())
}
