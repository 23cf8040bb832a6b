"""FanoutCache: one cache spread over several shards, each a Cache in a folder of
its own (``000``, ``001``, ...), so that writers of different keys rarely wait
for each other.

A key's shard is the one python-diskcache's ``Disk.hash`` picks, so a directory
is laid out the same way whichever package wrote it.

>>> import diskcache, os
>>> fanout = diskcache.FanoutCache(shards=4)
>>> fanout.set('key', 'value')
True
>>> fanout.get('key')
'value'
>>> sorted(os.listdir(fanout.directory))
['000', '001', '002', '003']
>>> fanout.close()
"""

import contextlib
import itertools
import os.path as op
import sqlite3
import time

from .core import (
    DEFAULT_SETTINGS,
    ENOVAL,
    Cache,
    Disk,
    Timeout,
    _memoize,
    _normalized_directory,
)
from .persistent import Deque, Index

# Attributes a FanoutCache reads from its first shard: the settings, the lock timeout
# and the Disk. Anything else is an AssertionError, as python-diskcache raises.
_FROM_FIRST_SHARD = frozenset(DEFAULT_SETTINGS) | {'timeout', 'disk'}

# Explicit pickle secrets, which the sub-collections and a pickled handle carry along.
_SECRET_SETTINGS = ('pickle_key', 'pickle_key_fallbacks')


class FanoutCache:
    """A cache whose keys are spread over ``shards`` Caches.

    A method that touches one key goes to that key's shard, and, when the shard's
    writer lock stays busy past ``timeout`` (10 ms by default), gives up quietly:
    ``set``, ``add``, ``touch`` and ``delete`` return False, ``get`` and ``pop``
    the default, ``incr`` and ``decr`` None. Pass ``retry=True`` to wait instead.
    Methods over the whole cache (``clear``, ``expire``, ``evict``, ``cull``) wait
    for every shard.

    >>> fanout = FanoutCache(shards=2, timeout=1)
    >>> for num in range(10):
    ...     fanout[num] = num
    >>> len(fanout), fanout.incr(3)
    (10, 4)
    >>> fanout.size_limit == 2**30 / 2
    True
    >>> fanout.close()
    """

    def __init__(self, directory=None, shards=8, timeout=0.010, disk=Disk, **settings):
        directory = _normalized_directory(directory)
        # Each shard gets its part of the size limit (a float, as python-diskcache's).
        each = settings.pop('size_limit', DEFAULT_SETTINGS['size_limit']) / shards
        self._directory = directory
        self._count = shards
        self._disk = disk
        self._secrets = {
            name: settings[name] for name in _SECRET_SETTINGS if settings.get(name) is not None
        }
        self._shards = tuple(
            Cache(
                op.join(directory, '{:03d}'.format(number)),
                timeout=timeout,
                disk=disk,
                size_limit=each,
                **settings,
            )
            for number in range(shards)
        )
        self._hash = self._shards[0].disk.hash
        self._caches = {}
        self._deques = {}
        self._indexes = {}

    @property
    def directory(self):
        """The directory holding the shards' folders."""
        return self._directory

    def __getattr__(self, name):
        if name not in _FROM_FIRST_SHARD:
            raise AssertionError(
                'a FanoutCache reads only settings, timeout and disk from its shards, not %r'
                % name
            )
        return getattr(self._shards[0], name)

    def _shard(self, key):
        return self._shards[self._hash(key) % self._count]

    def _on_shard(self, method, key, args, busy):
        """Calls ``method`` of the key's shard; ``busy`` if its lock stays busy."""
        try:
            return getattr(self._shard(key), method)(key, *args)
        except Timeout:
            return busy

    @contextlib.contextmanager
    def transact(self, retry=True):
        """Holds the writer lock of every shard, in order, for the duration: the
        operations inside commit together. Other writers wait.

        >>> fanout = FanoutCache(shards=2)
        >>> with fanout.transact():
        ...     fanout['a'] = 1
        ...     fanout['b'] = 2
        >>> fanout['a'] + fanout['b']
        3
        >>> fanout.close()
        """
        assert retry, 'FanoutCache.transact always waits for the locks (retry=True)'
        with contextlib.ExitStack() as held:
            for shard in self._shards:
                held.enter_context(shard.transact(retry=True))
            yield

    # --- one key ---

    def set(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` under ``key``; False if the shard's lock stayed busy.

        >>> fanout = FanoutCache()
        >>> fanout.set('k', [1, 2], expire=60, tag='demo')
        True
        >>> fanout.close()
        """
        return self._on_shard('set', key, (value, expire, read, tag, retry), False)

    def __setitem__(self, key, value):
        """Stores ``value`` under ``key``, waiting for the lock as long as it takes."""
        self._shard(key)[key] = value

    def touch(self, key, expire=None, retry=False):
        """Sets a new expiry on a live item; False if it is missing (or the lock
        stayed busy).

        >>> fanout = FanoutCache()
        >>> _ = fanout.set('k', 1)
        >>> fanout.touch('k', expire=60), fanout.touch('missing')
        (True, False)
        >>> fanout.close()
        """
        return self._on_shard('touch', key, (expire, retry), False)

    def add(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` only if ``key`` is missing; False if it was there (or
        the lock stayed busy).

        >>> fanout = FanoutCache()
        >>> fanout.add('k', 1), fanout.add('k', 2), fanout['k']
        (True, False, 1)
        >>> fanout.close()
        """
        return self._on_shard('add', key, (value, expire, read, tag, retry), False)

    def incr(self, key, delta=1, default=0, retry=False):
        """Adds ``delta`` to the number under ``key`` and returns it; None if the
        lock stayed busy.

        >>> fanout = FanoutCache()
        >>> fanout.incr('n'), fanout.incr('n', 5)
        (1, 6)
        >>> fanout.close()
        """
        return self._on_shard('incr', key, (delta, default, retry), None)

    def decr(self, key, delta=1, default=0, retry=False):
        """Subtracts ``delta`` from the number under ``key``; None if the lock
        stayed busy.

        >>> fanout = FanoutCache()
        >>> fanout.decr('n', 2)
        -2
        >>> fanout.close()
        """
        return self._on_shard('decr', key, (delta, default, retry), None)

    def get(self, key, default=None, read=False, expire_time=False, tag=False, retry=False):
        """The value of ``key``, or ``default``. A busy lock or a storage error also
        gives ``default`` (the bare default, even when ``expire_time`` or ``tag``
        asked for a tuple, as python-diskcache does).

        >>> fanout = FanoutCache()
        >>> _ = fanout.set('k', 'v', tag='t')
        >>> fanout.get('k'), fanout.get('k', tag=True), fanout.get('x', 'none')
        ('v', ('v', 't'), 'none')
        >>> fanout.close()
        """
        try:
            return self._shard(key).get(key, default, read, expire_time, tag, retry)
        except (Timeout, sqlite3.OperationalError):
            return default

    def __getitem__(self, key):
        """The value of ``key``; KeyError if it is missing.

        >>> fanout = FanoutCache()
        >>> fanout['k'] = 'v'
        >>> fanout['k']
        'v'
        >>> fanout.close()
        """
        return self._shard(key)[key]

    def read(self, key):
        """The value of ``key`` as a file object (for large byte strings and values
        stored with ``read=True``); KeyError if it is missing."""
        handle = self.get(key, default=ENOVAL, read=True, retry=True)
        if handle is ENOVAL:
            raise KeyError(key)
        return handle

    def __contains__(self, key):
        """Whether ``key`` is present and not expired.

        >>> fanout = FanoutCache()
        >>> fanout['k'] = None
        >>> 'k' in fanout, 'x' in fanout
        (True, False)
        >>> fanout.close()
        """
        return key in self._shard(key)

    def pop(self, key, default=None, expire_time=False, tag=False, retry=False):
        """Removes ``key`` and returns its value; ``default`` if it is missing or
        the lock stayed busy.

        >>> fanout = FanoutCache()
        >>> fanout['k'] = 'v'
        >>> fanout.pop('k'), fanout.pop('k', 'gone')
        ('v', 'gone')
        >>> fanout.close()
        """
        return self._on_shard('pop', key, (default, expire_time, tag, retry), default)

    def delete(self, key, retry=False):
        """Removes ``key``; False if it was missing (or the lock stayed busy)."""
        return self._on_shard('delete', key, (retry,), False)

    def __delitem__(self, key):
        """Removes ``key``; KeyError if it is missing."""
        del self._shard(key)[key]

    # --- every shard ---

    def _each_shard(self, method, *args, retry=False):
        """Runs a batch removal on every shard to its end and returns the total: a
        shard whose lock stays busy is asked again, its partial count kept."""
        total = 0
        for shard in self._shards:
            while True:
                try:
                    total += getattr(shard, method)(*args, retry=retry)
                except Timeout as busy:
                    total += busy.args[0]
                else:
                    break
        return total

    def check(self, fix=False, retry=False):
        """Checks every shard; returns all their warnings.

        >>> fanout = FanoutCache(shards=2)
        >>> fanout.check()
        []
        >>> fanout.close()
        """
        return list(itertools.chain.from_iterable(
            shard.check(fix, retry) for shard in self._shards
        ))

    def expire(self, retry=False):
        """Removes the expired items of every shard; returns how many.

        >>> fanout = FanoutCache()
        >>> _ = fanout.set('brief', 1, expire=0.001)
        >>> time.sleep(0.01)
        >>> fanout.expire()
        1
        >>> fanout.close()
        """
        return self._each_shard('expire', time.time(), retry=retry)

    def create_tag_index(self):
        """Makes every shard keep an index of tags."""
        for shard in self._shards:
            shard.create_tag_index()

    def drop_tag_index(self):
        """Drops every shard's tag index."""
        for shard in self._shards:
            shard.drop_tag_index()

    def evict(self, tag, retry=False):
        """Removes the items tagged ``tag`` from every shard; returns how many.

        >>> fanout = FanoutCache()
        >>> for num in range(5):
        ...     _ = fanout.set(num, num, tag='small' if num < 3 else 'big')
        >>> fanout.evict('small'), len(fanout)
        (3, 2)
        >>> fanout.close()
        """
        return self._each_shard('evict', tag, retry=retry)

    def cull(self, retry=False):
        """Culls every shard to its part of the size limit; returns how many items
        went."""
        return self._each_shard('cull', retry=retry)

    def clear(self, retry=False):
        """Removes every item; returns how many.

        >>> fanout = FanoutCache()
        >>> for num in range(10):
        ...     fanout[num] = num
        >>> fanout.clear(), len(fanout)
        (10, 0)
        >>> fanout.close()
        """
        return self._each_shard('clear', retry=retry)

    def stats(self, enable=True, reset=False):
        """``(hits, misses)`` summed over the shards (see :meth:`Cache.stats`).

        >>> fanout = FanoutCache()
        >>> fanout.stats(enable=True)
        (0, 0)
        >>> _ = fanout.get('missing')
        >>> fanout.stats(enable=False, reset=True)
        (0, 1)
        >>> fanout.close()
        """
        counts = [shard.stats(enable, reset) for shard in self._shards]
        return tuple(sum(column) for column in zip(*counts))

    def volume(self):
        """Estimated bytes on disk, summed over the shards."""
        return sum(shard.volume() for shard in self._shards)

    def close(self):
        """Closes the shards and forgets the sub-collections (which stay usable)."""
        for shard in self._shards:
            shard.close()
        for kept in (self._caches, self._deques, self._indexes):
            kept.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __getstate__(self):
        return self._directory, self._count, self.timeout, type(self.disk), self._secrets

    def __setstate__(self, state):
        directory, count, timeout, disk = state[:4]
        secrets = state[4] if len(state) > 4 else {}
        self.__init__(directory, count, timeout, disk, **secrets)

    def __iter__(self):
        """The keys, shard after shard (each in insertion order).

        >>> fanout = FanoutCache(shards=1)
        >>> for key in 'abc':
        ...     fanout[key] = 1
        >>> list(fanout), list(reversed(fanout))
        (['a', 'b', 'c'], ['c', 'b', 'a'])
        >>> fanout.close()
        """
        return itertools.chain.from_iterable(self._shards)

    def __reversed__(self):
        return itertools.chain.from_iterable(map(reversed, reversed(self._shards)))

    def __len__(self):
        return sum(map(len, self._shards))

    def reset(self, key, value=ENOVAL):
        """Reads or stores a setting on every shard (waiting out busy locks); returns
        the last shard's value (note: ``size_limit`` is stored as given, on every
        shard).

        >>> fanout = FanoutCache(shards=2)
        >>> fanout.reset('cull_limit', 5)
        5
        >>> fanout.close()
        """
        for shard in self._shards:
            while True:
                try:
                    last = shard.reset(key, value)
                    break
                except Timeout:
                    continue
        return last

    # --- sub-collections, kept by name ---

    def _sub_directory(self, kind, name):
        parts = name.split('/')
        bad = [part for part in parts if part in ('', '.', '..') or '\\' in part or '\0' in part]
        if bad:
            raise ValueError('bad sub-collection name %r' % name)
        return op.join(self._directory, kind, *parts)

    def _sub_cache(self, kind, name, **settings):
        """A Cache in ``<directory>/<kind>/<name>`` with this cache's Disk and
        explicit secrets (``settings`` may override them)."""
        options = dict(self._secrets, disk=self._disk)
        options.update(settings)
        return Cache(self._sub_directory(kind, name), **options)

    def cache(self, name, timeout=60, disk=None, **settings):
        """A Cache in ``<directory>/cache/<name>``, made once and kept by name.

        >>> fanout = FanoutCache()
        >>> users = fanout.cache('users')
        >>> users.set('alice', 3)
        True
        >>> fanout.cache('users') is users
        True
        >>> fanout.close()
        """
        found = self._caches.get(name)
        if found is None:
            if disk is not None:
                settings['disk'] = disk
            found = self._caches[name] = self._sub_cache('cache', name, timeout=timeout, **settings)
        return found

    def deque(self, name, maxlen=None):
        """A Deque in ``<directory>/deque/<name>``, made once and kept by name.

        >>> fanout = FanoutCache()
        >>> jobs = fanout.deque('jobs')
        >>> jobs.append('resize')
        >>> jobs.popleft()
        'resize'
        >>> fanout.close()
        """
        found = self._deques.get(name)
        if found is None:
            cache = self._sub_cache('deque', name, eviction_policy='none')
            found = self._deques[name] = Deque.fromcache(cache, maxlen=maxlen)
        return found

    def index(self, name):
        """An Index in ``<directory>/index/<name>``, made once and kept by name.

        >>> fanout = FanoutCache()
        >>> scores = fanout.index('scores')
        >>> scores['bob'] = 7
        >>> dict(scores)
        {'bob': 7}
        >>> fanout.close()
        """
        found = self._indexes.get(name)
        if found is None:
            cache = self._sub_cache('index', name, eviction_policy='none')
            found = self._indexes[name] = Index.fromcache(cache)
        return found

    def memoize(self, name=None, typed=False, expire=None, tag=None, ignore=()):
        """Decorator caching a function's results in this cache; see
        :meth:`Cache.memoize`.

        >>> fanout = FanoutCache()
        >>> @fanout.memoize()
        ... def double(x):
        ...     return 2 * x
        >>> double(21)
        42
        >>> fanout.close()
        """
        return _memoize(self, name, typed, expire, tag, ignore)
