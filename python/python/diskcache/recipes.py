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


class Averager:
    """A running average kept in the cache as ``(total, count)``.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> latency = Averager(cache, 'latency')
    >>> for seconds in (0.5, 1.0, 1.5):
    ...     latency.add(seconds)
    >>> latency.get()
    1.0
    >>> latency.pop()
    1.0
    >>> latency.get() is None
    True
    """

    def __init__(self, cache, key, expire=None, tag=None):
        self._cache = cache
        self._key = key
        self._expire = expire
        self._tag = tag

    def add(self, value):
        """Adds ``value`` to the average."""
        with self._cache.transact(retry=True):
            total, count = self._cache.get(self._key, default=(0.0, 0))
            total += value
            count += 1
            self._cache.set(self._key, (total, count), expire=self._expire, tag=self._tag)

    def get(self):
        """The average so far, or None before any value."""
        total, count = self._cache.get(self._key, default=(0.0, 0), retry=True)
        return None if count == 0 else total / count

    def pop(self):
        """Removes the average and returns it (None if there was none)."""
        total, count = self._cache.pop(self._key, default=(0.0, 0), retry=True)
        return None if count == 0 else total / count


class Lock:
    """A lock shared through the cache: held while its key is present.

    ``expire`` bounds how long a crashed holder can keep others waiting.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> lock = Lock(cache, 'jobs', expire=60)
    >>> lock.acquire()
    >>> lock.locked()
    True
    >>> lock.release()
    """

    def __init__(self, cache, key, expire=None, tag=None):
        self._cache = cache
        self._key = key
        self._expire = expire
        self._tag = tag

    def acquire(self):
        """Waits until the lock is free, then takes it."""
        while True:
            added = self._cache.add(
                self._key, None, expire=self._expire, tag=self._tag, retry=True
            )
            if added:
                break
            time.sleep(0.001)

    def release(self):
        """Frees the lock (whoever holds it)."""
        self._cache.delete(self._key, retry=True)

    def locked(self):
        """Whether someone holds the lock."""
        return self._key in self._cache

    def __enter__(self):
        self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class RLock:
    """A re-entrant lock shared through the cache, owned by a process and thread.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> rlock = RLock(cache, 'config')
    >>> with rlock:
    ...     with rlock:
    ...         cache.get('config')[1]
    2
    """

    def __init__(self, cache, key, expire=None, tag=None):
        self._cache = cache
        self._key = key
        self._expire = expire
        self._tag = tag

    def _owner(self):
        return '{}-{}'.format(os.getpid(), threading.get_ident())

    def acquire(self):
        """Waits until the lock is free or ours, then takes it once more."""
        owner = self._owner()
        while True:
            with self._cache.transact(retry=True):
                holder, count = self._cache.get(self._key, default=(None, 0))
                if holder == owner or count == 0:
                    self._cache.set(
                        self._key, (owner, count + 1), expire=self._expire, tag=self._tag
                    )
                    return
            time.sleep(0.001)

    def release(self):
        """Gives up one hold; AssertionError if this thread holds none."""
        owner = self._owner()
        with self._cache.transact(retry=True):
            holder, count = self._cache.get(self._key, default=(None, 0))
            is_owned = holder == owner and count > 0
            assert is_owned, 'cannot release un-acquired lock'
            self._cache.set(
                self._key, (holder, count - 1), expire=self._expire, tag=self._tag
            )

    def __enter__(self):
        self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class BoundedSemaphore:
    """A semaphore shared through the cache; the key holds the free permits.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> pool = BoundedSemaphore(cache, 'connections', value=2)
    >>> pool.acquire()
    >>> cache.get('connections')
    1
    >>> pool.release()
    >>> cache.get('connections')
    2
    """

    def __init__(self, cache, key, value=1, expire=None, tag=None):
        self._cache = cache
        self._key = key
        self._value = value
        self._expire = expire
        self._tag = tag

    def acquire(self):
        """Waits for a free permit and takes it."""
        while True:
            with self._cache.transact(retry=True):
                free = self._cache.get(self._key, default=self._value)
                if free > 0:
                    self._cache.set(
                        self._key, free - 1, expire=self._expire, tag=self._tag
                    )
                    return
            time.sleep(0.001)

    def release(self):
        """Returns a permit; AssertionError if none is taken."""
        with self._cache.transact(retry=True):
            free = self._cache.get(self._key, default=self._value)
            assert self._value > free, 'cannot release un-acquired semaphore'
            self._cache.set(self._key, free + 1, expire=self._expire, tag=self._tag)

    def __enter__(self):
        self.acquire()

    def __exit__(self, *exc_info):
        self.release()


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
    """Decorator: lets ``count`` calls through per ``seconds`` (a token bucket
    shared through the cache), making callers wait for their turn.

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

    def decorator(func):
        rate = count / float(seconds)
        key = full_name(func) if name is None else name
        now = time_func()
        cache.set(key, (now, count), expire=expire, tag=tag, retry=True)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            while True:
                with cache.transact(retry=True):
                    last, tally = cache.get(key)
                    now = time_func()
                    tally += (now - last) * rate
                    delay = 0
                    if tally > count:
                        cache.set(key, (now, count - 1), expire)
                    elif tally >= 1:
                        cache.set(key, (now, tally - 1), expire)
                    else:
                        delay = (1 - tally) / rate
                if delay:
                    sleep_func(delay)
                else:
                    break
            return func(*args, **kwargs)

        return wrapper

    return decorator


def barrier(cache, lock_factory, name=None, expire=None, tag=None):
    """Decorator: runs the function under a lock made by ``lock_factory``, so at
    most one call runs at a time across threads and processes.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> @barrier(cache, Lock)
    ... def work(num):
    ...     return num + 1
    >>> work(1)
    2
    """

    def decorator(func):
        key = full_name(func) if name is None else name
        lock = lock_factory(cache, key, expire=expire, tag=tag)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with lock:
                return func(*args, **kwargs)

        return wrapper

    return decorator


def memoize_stampede(cache, expire, name=None, typed=False, tag=None, beta=1, ignore=()):
    """Memoizing decorator that recomputes a result early, with a probability
    that grows as its expiry nears (weighted by how long it took to compute),
    so that many callers never recompute an expired value at once.

    The recomputation runs in a thread started by the call that wins a short
    lease; callers keep getting the stored result meanwhile.

    >>> import diskcache
    >>> cache = diskcache.Cache()
    >>> @memoize_stampede(cache, expire=60)
    ... def fib(num):
    ...     return num if num < 2 else fib(num - 1) + fib(num - 2)
    >>> fib(30)
    832040
    >>> fib.__cache_key__(30) in cache
    True
    """

    def decorator(func):
        base = (full_name(func),) if name is None else (name,)

        def timer(*args, **kwargs):
            start = time.time()
            result = func(*args, **kwargs)
            delta = time.time() - start
            return result, delta

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            key = wrapper.__cache_key__(*args, **kwargs)
            pair, expire_time = cache.get(key, default=ENOVAL, expire_time=True, retry=True)
            if pair is not ENOVAL:
                result, delta = pair
                now = time.time()
                ttl = expire_time - now
                if (-delta * beta * math.log(random.random())) < ttl:
                    return result
                # Early recomputation: one caller per lease window does it.
                thread_key = key + (ENOVAL,)
                thread_added = cache.add(thread_key, None, expire=delta, retry=True)
                if thread_added:

                    def recompute():
                        with cache:
                            pair = timer(*args, **kwargs)
                            cache.set(key, pair, expire=expire, tag=tag, retry=True)

                    thread = threading.Thread(target=recompute)
                    thread.daemon = True
                    thread.start()
                return result
            pair = timer(*args, **kwargs)
            cache.set(key, pair, expire=expire, tag=tag, retry=True)
            return pair[0]

        def __cache_key__(*args, **kwargs):
            return args_to_key(base, args, kwargs, typed, ignore)

        wrapper.__cache_key__ = __cache_key__
        return wrapper

    return decorator
