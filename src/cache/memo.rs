//! `memoize`: caching the results of functions.

use super::core::StoreTimeout;
use super::value::SetOptions;
use super::Cache;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::fanout::FanoutCache;
use crate::format::key::{split_seq, END, E_NONE, E_SEQ, MORE, TAG_COMPOSITE};
use crate::format::{encode_element, KeyError};
use crate::key::Key;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// Options of a memoized function (python-diskcache's `memoize(name, typed, expire, tag,
/// ignore)`; the name is given separately).
#[derive(Clone, Debug, Default)]
pub struct MemoizeOptions {
    typed: bool,
    set: SetOptions,
    ignore: Vec<usize>,
    lookup_only: bool,
}

impl MemoizeOptions {
    /// Default options: untyped, no expiry, no tag, no ignored arguments.
    pub fn new() -> MemoizeOptions {
        MemoizeOptions::default()
    }

    /// The expiry and tag results are stored with.
    pub(crate) fn set_options(&self) -> &SetOptions {
        &self.set
    }

    /// Include the arguments' type in the key, so `f(1u8)` and `f(1u64)` are cached apart
    /// (python-diskcache adds each argument's type; here it is the Rust type of the whole
    /// argument tuple).
    pub fn typed(mut self, typed: bool) -> MemoizeOptions {
        self.typed = typed;
        self
    }

    /// Results expire after this long. A zero duration makes the function look results up
    /// without ever storing them (python-diskcache's `expire=0`).
    pub fn expire(mut self, after: Duration) -> MemoizeOptions {
        self.lookup_only = after.is_zero();
        self.set = self.set.expire(after);
        self
    }

    /// Results carry this tag (so [`Cache::evict`] can remove them all).
    pub fn tag<T: Serialize>(mut self, tag: T) -> MemoizeOptions {
        self.set = self.set.tag(tag);
        self
    }

    /// Leave out the arguments at these positions (of the argument tuple) from the key, like
    /// python-diskcache's `ignore` (for example a database connection or `self`).
    pub fn ignore(mut self, positions: impl IntoIterator<Item = usize>) -> MemoizeOptions {
        self.ignore = positions.into_iter().collect();
        self
    }
}

/// The key of a call: python-diskcache's `args_to_key`, `(name, *args, None[, type])`.
pub(crate) fn call_key<A: Serialize + ?Sized>(
    name: &str,
    args: &A,
    opts: &MemoizeOptions,
) -> Result<Vec<u8>> {
    let bad = |e: KeyError| Error::InvalidKey(format!("memoized arguments: {}", e.0));
    let mut out = vec![TAG_COMPOSITE, E_SEQ, MORE];
    out.extend(encode_element(name).map_err(bad)?);
    let elem = encode_element(args).map_err(bad)?;
    // A tuple of arguments contributes its elements; anything else is one argument.
    let items = split_seq(&elem).unwrap_or_else(|| vec![elem.as_slice()]);
    for (i, item) in items.into_iter().enumerate() {
        if !opts.ignore.contains(&i) {
            out.push(MORE);
            out.extend_from_slice(item);
        }
    }
    out.extend_from_slice(&[MORE, E_NONE]);
    if opts.typed {
        out.push(MORE);
        out.extend(encode_element(std::any::type_name::<A>()).map_err(bad)?);
    }
    out.push(END);
    Ok(out)
}

impl<C: Codec> Cache<C> {
    /// The key under which a memoized call's result is stored (python-diskcache's
    /// `__cache_key__`): delete it to forget the result.
    pub fn memoize_key<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
    ) -> Result<Key> {
        Key::from_encoded(&call_key(name, args, opts)?)
    }

    /// The cached result of the call `name(args)`, or, on a miss, `compute()`'s, which is
    /// stored (python-diskcache's memoized function). Concurrent misses may all compute (as
    /// in python-diskcache); see the recipes for a single computation.
    ///
    /// A function that calls itself memoizes its recursion through the cache:
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::{Cache, MemoizeOptions};
    /// fn fib(cache: &Cache, n: u64) -> diskcache::Result<u64> {
    ///     cache.try_memoized("fib", &n, &MemoizeOptions::new(), || {
    ///         Ok(if n < 2 { n } else { fib(cache, n - 1)? + fib(cache, n - 2)? })
    ///     })
    /// }
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::open(dir.path())?;
    /// assert_eq!(fib(&cache, 90)?, 2880067194370816120);
    /// assert!(cache.contains(cache.memoize_key("fib", &90u64, &MemoizeOptions::new())?)?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn memoized<A, R, F>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
        compute: F,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> R,
    {
        self.try_memoized(name, args, opts, || Ok::<R, Error>(compute()))
    }

    /// [`Cache::memoized`] for a computation that can fail: its errors are returned and not
    /// cached (as python-diskcache does not cache exceptions).
    pub fn try_memoized<A, R, E, F>(
        &self,
        name: &str,
        args: &A,
        opts: &MemoizeOptions,
        compute: F,
    ) -> Result<R, E>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        E: From<Error>,
        F: FnOnce() -> Result<R, E>,
    {
        let key = call_key(name, args, opts)?;
        self.memoized_at(&key, opts, compute, StoreTimeout::Fail)
    }

    /// The memoized call whose key is `key`; `on_timeout` says what a store that times out
    /// does.
    pub(crate) fn memoized_at<R, E, F>(
        &self,
        key: &[u8],
        opts: &MemoizeOptions,
        compute: F,
        on_timeout: StoreTimeout,
    ) -> Result<R, E>
    where
        R: Serialize + DeserializeOwned + 'static,
        E: From<Error>,
        F: FnOnce() -> Result<R, E>,
    {
        if let Some(found) = self.fetch(key, true, self.decoded::<R>())? {
            return Ok(found.value);
        }
        let value = compute()?;
        if !opts.lookup_only {
            self.put(key, &opts.set, false, on_timeout, |c| c.prepare(&value))?;
        }
        Ok(value)
    }

    /// Wraps a function so that its results are cached (python-diskcache's
    /// `@cache.memoize(...)`). Its arguments are passed as one value, usually a tuple.
    ///
    /// ```
    /// # fn main() -> diskcache::Result<()> {
    /// use diskcache::MemoizeOptions;
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = diskcache::Cache::open(dir.path())?;
    /// let area = cache.memoize("area", MemoizeOptions::new(), |&(w, h): &(u32, u32)| w * h);
    /// assert_eq!(area.call(&(3, 4))?, 12);
    /// assert!(cache.contains(area.cache_key(&(3, 4))?)?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn memoize<A, R, F>(
        &self,
        name: impl Into<String>,
        opts: MemoizeOptions,
        f: F,
    ) -> Memoized<C, A, R, F>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(&A) -> R,
    {
        Memoized {
            target: Target::Cache(self.clone()),
            name: name.into(),
            opts,
            f,
            types: PhantomData,
        }
    }
}

/// Where a memoized function keeps its results.
enum Target<C: Codec> {
    Cache(Cache<C>),
    Fanout(FanoutCache<C>),
}

/// A function whose results are cached; see [`Cache::memoize`] and
/// [`FanoutCache::memoize`].
pub struct Memoized<C: Codec, A: ?Sized, R, F> {
    target: Target<C>,
    name: String,
    opts: MemoizeOptions,
    f: F,
    types: PhantomData<fn(&A) -> R>,
}

impl<C: Codec, A: ?Sized, R, F> fmt::Debug for Memoized<C, A, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memoized")
            .field("name", &self.name)
            .field("options", &self.opts)
            .finish()
    }
}

impl<C, A, R, F> Memoized<C, A, R, F>
where
    C: Codec,
    A: Serialize + ?Sized,
    R: Serialize + DeserializeOwned + 'static,
    F: Fn(&A) -> R,
{
    pub(crate) fn on_fanout(
        fanout: FanoutCache<C>,
        name: String,
        opts: MemoizeOptions,
        f: F,
    ) -> Memoized<C, A, R, F> {
        Memoized {
            target: Target::Fanout(fanout),
            name,
            opts,
            f,
            types: PhantomData,
        }
    }

    /// Calls the function, or returns its cached result.
    pub fn call(&self, args: &A) -> Result<R> {
        let compute = || (self.f)(args);
        match &self.target {
            Target::Cache(c) => c.memoized(&self.name, args, &self.opts, compute),
            Target::Fanout(c) => c.memoized(&self.name, args, &self.opts, compute),
        }
    }

    /// The key of a call's result (python-diskcache's `__cache_key__`).
    pub fn cache_key(&self, args: &A) -> Result<Key> {
        Key::from_encoded(&call_key(&self.name, args, &self.opts)?)
    }

    /// The function's name in the cache.
    pub fn name(&self) -> &str {
        &self.name
    }
}
