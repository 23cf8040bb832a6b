"""Recipes built on a cache: a running average, locks, a semaphore, rate
limiting, a barrier and stampede-proof memoization. They work with Cache and
FanoutCache alike, across threads and processes; keep their keys out of
eviction (the ``'none'`` policy, or no size pressure).

>>> import diskcache
>>> cache = diskcache.Cache()
>>> lock = diskcache.Lock(cache, 'report-lock')
>>> with lock:
...     lock.locked()
True
>>> lock.locked()
False
"""

import functools
import math
import os
import random
import threading
import time

from .core import ENOVAL, args_to_key, full_name

# How long the spinning recipes sleep between attempts.
_PAUSE = 0.001


def _until(attempt):
    """Calls ``attempt()`` until it returns True, pausing between tries."""
    while not attempt():
        time.sleep(_PAUSE)


class _Recipe:
    """What every recipe holds: the cache, the key its state lives under, and the
    expiry and tag that state is stored with."""

    def __init__(self, cache, key, expire=None, tag=None):
        self._cache = cache
        self._key = key
        self._expire = expire
        self._tag = tag

    def _load(self, default):
        return self._cache.get(self._key, default=default)

    def _save(self, state):
        self._cache.set(self._key, state, expire=self._expire, tag=self._tag)


class _Held(_Recipe):
    """A recipe used as a context manager: acquired on entry, released on exit."""

    def __enter__(self):
        self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _mean(state):
    total, count = state
    return total / count if count else None


class Averager(_Recipe):
    """A running average kept in the cache as ``(total, count)``.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> latency = Averager(cache, 'latency')
    >>> for seconds in (0.5, 1.0, 1.5):
    ...     latency.add(seconds)
    >>> latency.get()
    1.0
    >>> cache.get('latency')
    (3.0, 3)
    >>> latency.pop()
    1.0
    >>> latency.get() is None
    True
    """

    def add(self, value):
        """Counts ``value`` in the average."""
        with self._cache.transact(retry=True):
            total, count = self._load((0.0, 0))
            self._save((total + value, count + 1))

    def get(self):
        """The average so far, or None before any value."""
        return _mean(self._cache.get(self._key, default=(0.0, 0), retry=True))

    def pop(self):
        """Removes the average and returns it (None if there was none)."""
        return _mean(self._cache.pop(self._key, default=(0.0, 0), retry=True))


class Lock(_Held):
    """A lock shared through the cache: held while its key is present.

    Whoever releases it frees it (it has no owner). ``expire`` bounds how long a
    holder that crashed keeps others waiting.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> lock = Lock(cache, 'jobs', expire=60)
    >>> lock.acquire()
    >>> lock.locked(), 'jobs' in cache
    (True, True)
    >>> lock.release()
    >>> lock.locked()
    False
    """

    def acquire(self):
        """Waits until the lock is free, then takes it."""
        _until(
            lambda: self._cache.add(
                self._key, None, expire=self._expire, tag=self._tag, retry=True
            )
        )

    def release(self):
        """Frees the lock."""
        self._cache.delete(self._key, retry=True)

    def locked(self):
        """Whether someone holds the lock."""
        return self._key in self._cache


def _this_thread():
    """Who holds a re-entrant lock: this process and thread."""
    return '{}-{}'.format(os.getpid(), threading.get_ident())


class RLock(_Held):
    """A re-entrant lock shared through the cache: its key holds ``(holder,
    depth)``, and the holder (a process and thread) may take it again.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> rlock = RLock(cache, 'config')
    >>> with rlock:
    ...     with rlock:
    ...         cache.get('config')[1]
    2
    >>> cache.get('config')[1]
    0
    >>> rlock.release()
    Traceback (most recent call last):
      ...
    AssertionError: this thread does not hold the lock
    """

    def acquire(self):
        """Waits until the lock is free or this thread's, then takes it once more."""
        me = _this_thread()

        def attempt():
            with self._cache.transact(retry=True):
                holder, depth = self._load((None, 0))
                if depth and holder != me:
                    return False
                self._save((me, depth + 1))
                return True

        _until(attempt)

    def release(self):
        """Gives up one hold; AssertionError if this thread holds none."""
        with self._cache.transact(retry=True):
            holder, depth = self._load((None, 0))
            if holder != _this_thread() or depth < 1:
                raise AssertionError('this thread does not hold the lock')
            self._save((holder, depth - 1))


class BoundedSemaphore(_Held):
    """A semaphore shared through the cache: its key holds the number of free
    permits (``value`` at first).

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> pool = BoundedSemaphore(cache, 'connections', value=2)
    >>> pool.acquire()
    >>> cache.get('connections')
    1
    >>> pool.release()
    >>> cache.get('connections')
    2
    >>> pool.release()
    Traceback (most recent call last):
      ...
    AssertionError: no permit is taken
    """

    def __init__(self, cache, key, value=1, expire=None, tag=None):
        super().__init__(cache, key, expire, tag)
        self._value = value

    def acquire(self):
        """Waits for a free permit and takes it."""

        def attempt():
            with self._cache.transact(retry=True):
                free = self._load(self._value)
                if free < 1:
                    return False
                self._save(free - 1)
                return True

        _until(attempt)

    def release(self):
        """Returns a permit; AssertionError if none is taken."""
        with self._cache.transact(retry=True):
            free = self._load(self._value)
            if free >= self._value:
                raise AssertionError('no permit is taken')
            self._save(free + 1)


def throttle(
    cache,
    count,
    seconds,
    name=None,
    expire=None,
    tag=None,
    time_func=time.time,
    sleep_func=time.sleep,
):
    """Decorator: lets ``count`` calls through per ``seconds``, across threads and
    processes, making callers wait for their turn.

    The key (the function's full name, or ``name``) holds a token bucket as
    ``(time, tokens)``: tokens come back at ``count / seconds`` per second, up to
    ``count``, and each call spends one. Decorating resets the bucket to full.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> clock = [0.0]
    >>> waits = []
    >>> @throttle(cache, 2, 1, time_func=lambda: clock[0], sleep_func=waits.append)
    ... def ping():
    ...     return 'pong'
    >>> [ping() for _ in range(2)]
    ['pong', 'pong']
    >>> waits
    []
    >>> def advance(delay):
    ...     waits.append(delay)
    ...     clock[0] += delay
    >>> @throttle(cache, 1, 4, name='slow', time_func=lambda: clock[0], sleep_func=advance)
    ... def slow():
    ...     return 'done'
    >>> slow(), slow(), waits
    ('done', 'done', [4.0])
    """
    rate = count / float(seconds)

    def decorate(func):
        key = full_name(func) if name is None else name
        cache.set(key, (time_func(), count), expire=expire, tag=tag, retry=True)

        def wait_for_a_token():
            """Spends a token and returns 0, or returns how long until one is back."""
            with cache.transact(retry=True):
                then, tokens = cache.get(key)
                now = time_func()
                tokens = min(tokens + (now - then) * rate, count)
                if tokens < 1:
                    return (1 - tokens) / rate
                cache.set(key, (now, tokens - 1), expire=expire, tag=tag)
                return 0

        @functools.wraps(func)
        def throttled(*args, **kwargs):
            while True:
                delay = wait_for_a_token()
                if not delay:
                    return func(*args, **kwargs)
                sleep_func(delay)

        return throttled

    return decorate


def barrier(cache, lock_factory, name=None, expire=None, tag=None):
    """Decorator: runs each call under one lock made by ``lock_factory(cache, key,
    expire=..., tag=...)`` (``Lock``, ``RLock``...), so calls run one at a time
    across threads and processes.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> @barrier(cache, Lock)
    ... def work(num):
    ...     return num + 1
    >>> work(1)
    2
    >>> work.__wrapped__(1)
    2
    """

    def decorate(func):
        lock = lock_factory(cache, full_name(func) if name is None else name, expire=expire, tag=tag)

        @functools.wraps(func)
        def one_at_a_time(*args, **kwargs):
            with lock:
                return func(*args, **kwargs)

        return one_at_a_time

    return decorate


def _refresh_now(cost, expire_time, beta):
    """Whether a stored result should be computed again already: with a probability
    that grows as its expiry nears, the sooner the more it cost to compute (the
    "XFetch" rule of Vattani, Chierichetti and Lowenstein, VLDB 2015)."""
    remaining = expire_time - time.time()
    return -cost * beta * math.log(1.0 - random.random()) >= remaining


def memoize_stampede(cache, expire, name=None, typed=False, tag=None, beta=1, ignore=()):
    """Memoizing decorator that recomputes a result before it expires, so that many
    callers never all recompute it at once.

    Results are stored as ``(result, seconds it took)`` for ``expire`` seconds. As a
    result nears its expiry, a caller may, with a probability that grows with the
    computation's cost and ``beta``, start its recomputation in a background
    thread; one caller per lease (as long as a computation takes) does, and every
    caller keeps getting the stored result meanwhile.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> @memoize_stampede(cache, expire=60)
    ... def fib(num):
    ...     return num if num < 2 else fib(num - 1) + fib(num - 2)
    >>> fib(30)
    832040
    >>> fib.__cache_key__(30) in cache
    True
    >>> result, seconds = cache[fib.__cache_key__(30)]
    >>> result, seconds >= 0
    (832040, True)
    """

    def decorate(func):
        prefix = (full_name(func) if name is None else name,)

        def timed(args, kwargs):
            started = time.time()
            result = func(*args, **kwargs)
            return result, time.time() - started

        def recompute_in_background(key, args, kwargs):
            def run():
                with cache:
                    cache.set(key, timed(args, kwargs), expire=expire, tag=tag, retry=True)

            threading.Thread(target=run, daemon=True).start()

        @functools.wraps(func)
        def memoized(*args, **kwargs):
            key = memoized.__cache_key__(*args, **kwargs)
            stored, expire_time = cache.get(key, default=ENOVAL, expire_time=True, retry=True)
            if stored is ENOVAL:
                stored = timed(args, kwargs)
                cache.set(key, stored, expire=expire, tag=tag, retry=True)
                return stored[0]
            result, cost = stored
            if _refresh_now(cost, expire_time, beta):
                lease = key + (ENOVAL,)
                if cache.add(lease, None, expire=cost, retry=True):
                    recompute_in_background(key, args, kwargs)
            return result

        def cache_key(*args, **kwargs):
            return args_to_key(prefix, args, kwargs, typed, ignore)

        memoized.__cache_key__ = cache_key
        return memoized

    return decorate
