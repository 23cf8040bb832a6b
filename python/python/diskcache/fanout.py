"""FanoutCache: a cache split into shards, each a Cache in its own directory.

Writers of keys on different shards do not wait for each other. Keys go to the
shard python-diskcache's ``Disk.hash`` picks, so a directory written by either
places keys alike.

>>> import diskcache
>>> fanout = diskcache.FanoutCache(shards=4)
>>> fanout.set('key', 'value')
True
>>> fanout.get('key')
'value'
>>> sorted(os.listdir(fanout.directory))
['000', '001', '002', '003']
>>> fanout.close()
"""

import contextlib as cl
import functools as ft
import itertools as it
import operator
import os
import os.path as op
import sqlite3
import tempfile
import time

from .core import DEFAULT_SETTINGS, ENOVAL, Cache, Disk, Timeout, _memoize
from .persistent import Deque, Index


class FanoutCache:
    """Cache that shards keys and values.

    Single-key operations go to one shard and give up quietly (returning
    False, None or the default) when its writer lock stays busy past
    ``timeout``, unless ``retry`` is set.

    >>> fanout = FanoutCache(shards=2, timeout=1)
    >>> for num in range(10):
    ...     fanout[num] = num
    >>> len(fanout), fanout.incr(3)
    (10, 4)
    >>> fanout.close()
    """

    def __init__(self, directory=None, shards=8, timeout=0.010, disk=Disk, **settings):
        if directory is None:
            directory = tempfile.mkdtemp(prefix='diskcache-')
        directory = str(directory)
        directory = op.expanduser(directory)
        directory = op.expandvars(directory)

        default_size_limit = DEFAULT_SETTINGS['size_limit']
        size_limit = settings.pop('size_limit', default_size_limit) / shards

        self._count = shards
        self._directory = directory
        self._disk = disk
        # Explicit secrets go to the sub-collections too (and travel with a pickled handle).
        self._secrets = {
            name: settings[name]
            for name in ('pickle_key', 'pickle_key_fallbacks')
            if settings.get(name) is not None
        }
        self._shards = tuple(
            Cache(
                directory=op.join(directory, '%03d' % num),
                timeout=timeout,
                disk=disk,
                size_limit=size_limit,
                **settings,
            )
            for num in range(shards)
        )
        self._hash = self._shards[0].disk.hash
        self._caches = {}
        self._deques = {}
        self._indexes = {}

    @property
    def directory(self):
        """Cache directory."""
        return self._directory

    def __getattr__(self, name):
        safe_names = {'timeout', 'disk'}
        valid_name = name in DEFAULT_SETTINGS or name in safe_names
        assert valid_name, 'cannot access {} in cache shard'.format(name)
        return getattr(self._shards[0], name)

    def _shard(self, key):
        return self._shards[self._hash(key) % self._count]

    @cl.contextmanager
    def transact(self, retry=True):
        """Locks every shard for the duration (writes elsewhere wait).

        >>> fanout = FanoutCache(shards=2)
        >>> with fanout.transact():
        ...     fanout['a'] = 1
        ...     fanout['b'] = 2
        >>> fanout['a'] + fanout['b']
        3
        >>> fanout.close()
        """
        assert retry, 'retry must be True in FanoutCache'
        with cl.ExitStack() as stack:
            for shard in self._shards:
                stack.enter_context(shard.transact(retry=True))
            yield

    def set(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` under ``key``; False if the shard's lock stayed busy."""
        try:
            return self._shard(key).set(key, value, expire, read, tag, retry)
        except Timeout:
            return False

    def __setitem__(self, key, value):
        self._shard(key)[key] = value

    def touch(self, key, expire=None, retry=False):
        """Sets a new expiry on a live item; False if missing or on a timeout."""
        try:
            return self._shard(key).touch(key, expire, retry)
        except Timeout:
            return False

    def add(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` only if ``key`` is missing; False if present or on a
        timeout."""
        try:
            return self._shard(key).add(key, value, expire, read, tag, retry)
        except Timeout:
            return False

    def incr(self, key, delta=1, default=0, retry=False):
        """Adds ``delta`` to the number under ``key``; None on a timeout."""
        try:
            return self._shard(key).incr(key, delta, default, retry)
        except Timeout:
            return None

    def decr(self, key, delta=1, default=0, retry=False):
        """Subtracts ``delta``; None on a timeout."""
        try:
            return self._shard(key).decr(key, delta, default, retry)
        except Timeout:
            return None

    def get(self, key, default=None, read=False, expire_time=False, tag=False, retry=False):
        """The value of ``key``, or ``default`` (also on a timeout or storage
        error, as python-diskcache does, even when a tuple was asked for)."""
        try:
            return self._shard(key).get(key, default, read, expire_time, tag, retry)
        except (Timeout, sqlite3.OperationalError):
            return default

    def __getitem__(self, key):
        return self._shard(key)[key]

    def read(self, key):
        """The value of ``key`` as a file object; KeyError if missing."""
        handle = self.get(key, default=ENOVAL, read=True, retry=True)
        if handle is ENOVAL:
            raise KeyError(key)
        return handle

    def __contains__(self, key):
        return key in self._shard(key)

    def pop(self, key, default=None, expire_time=False, tag=False, retry=False):
        """Removes ``key`` and returns its value; ``default`` if missing or on a
        timeout."""
        try:
            return self._shard(key).pop(key, default, expire_time, tag, retry)
        except Timeout:
            return default

    def delete(self, key, retry=False):
        """Removes ``key``; False if missing or on a timeout."""
        try:
            return self._shard(key).delete(key, retry)
        except Timeout:
            return False

    def __delitem__(self, key):
        del self._shard(key)[key]

    def check(self, fix=False, retry=False):
        """Checks every shard; returns all their warnings."""
        warnings = (shard.check(fix, retry) for shard in self._shards)
        return list(it.chain.from_iterable(warnings))

    def _remove(self, name, args=(), retry=False):
        total = 0
        for shard in self._shards:
            method = getattr(shard, name)
            while True:
                try:
                    count = method(*args, retry=retry)
                    total += count
                except Timeout as timeout:
                    total += timeout.args[0]
                else:
                    break
        return total

    def expire(self, retry=False):
        """Removes expired items from every shard; returns how many."""
        return self._remove('expire', args=(time.time(),), retry=retry)

    def create_tag_index(self):
        """Creates the tag index on every shard."""
        for shard in self._shards:
            shard.create_tag_index()

    def drop_tag_index(self):
        """Drops the tag index on every shard."""
        for shard in self._shards:
            shard.drop_tag_index()

    def evict(self, tag, retry=False):
        """Removes the items tagged ``tag``; returns how many."""
        return self._remove('evict', args=(tag,), retry=retry)

    def cull(self, retry=False):
        """Culls every shard to its size limit; returns how many items went."""
        return self._remove('cull', retry=retry)

    def clear(self, retry=False):
        """Removes every item; returns how many."""
        return self._remove('clear', retry=retry)

    def stats(self, enable=True, reset=False):
        """Hits and misses summed over the shards."""
        results = [shard.stats(enable, reset) for shard in self._shards]
        return (
            sum(hits for hits, _ in results),
            sum(misses for _, misses in results),
        )

    def volume(self):
        """Bytes on disk, summed over the shards."""
        return sum(shard.volume() for shard in self._shards)

    def close(self):
        """Closes the shards and forgets the sub-collections."""
        for shard in self._shards:
            shard.close()
        self._caches.clear()
        self._deques.clear()
        self._indexes.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __getstate__(self):
        return (self._directory, self._count, self.timeout, type(self.disk), self._secrets)

    def __setstate__(self, state):
        directory, count, timeout, disk = state[:4]
        secrets = state[4] if len(state) > 4 else {}
        self.__init__(directory, count, timeout, disk, **secrets)

    def __iter__(self):
        iterators = (iter(shard) for shard in self._shards)
        return it.chain.from_iterable(iterators)

    def __reversed__(self):
        iterators = (reversed(shard) for shard in reversed(self._shards))
        return it.chain.from_iterable(iterators)

    def __len__(self):
        return sum(len(shard) for shard in self._shards)

    def reset(self, key, value=ENOVAL):
        """Reads or stores a setting on every shard (retrying on timeouts);
        returns the last shard's value."""
        for shard in self._shards:
            while True:
                try:
                    result = shard.reset(key, value)
                except Timeout:
                    pass
                else:
                    break
        return result

    def _sub_directory(self, kind, name):
        parts = name.split('/')
        for part in parts:
            if not part or part in ('.', '..') or '\\' in part or '\0' in part:
                raise ValueError('bad sub-collection name %r' % name)
        return op.join(self._directory, kind, *parts)

    def cache(self, name, timeout=60, disk=None, **settings):
        """A Cache in ``<directory>/cache/<name>``, kept by name.

        >>> fanout = FanoutCache()
        >>> users = fanout.cache('users')
        >>> users.set('alice', 3)
        True
        >>> fanout.cache('users') is users
        True
        >>> fanout.close()
        """
        try:
            return self._caches[name]
        except KeyError:
            directory = self._sub_directory('cache', name)
            for setting, value in self._secrets.items():
                settings.setdefault(setting, value)
            temp = Cache(
                directory=directory,
                timeout=timeout,
                disk=self._disk if disk is None else disk,
                **settings,
            )
            self._caches[name] = temp
            return temp

    def deque(self, name, maxlen=None):
        """A Deque in ``<directory>/deque/<name>``, kept by name.

        >>> fanout = FanoutCache()
        >>> jobs = fanout.deque('jobs')
        >>> jobs.append('resize')
        >>> jobs.popleft()
        'resize'
        >>> fanout.close()
        """
        try:
            return self._deques[name]
        except KeyError:
            directory = self._sub_directory('deque', name)
            cache = Cache(
                directory=directory, disk=self._disk, eviction_policy='none', **self._secrets
            )
            deque = Deque.fromcache(cache, maxlen=maxlen)
            self._deques[name] = deque
            return deque

    def index(self, name):
        """An Index in ``<directory>/index/<name>``, kept by name.

        >>> fanout = FanoutCache()
        >>> scores = fanout.index('scores')
        >>> scores['bob'] = 7
        >>> dict(scores)
        {'bob': 7}
        >>> fanout.close()
        """
        try:
            return self._indexes[name]
        except KeyError:
            directory = self._sub_directory('index', name)
            cache = Cache(
                directory=directory, disk=self._disk, eviction_policy='none', **self._secrets
            )
            index = Index.fromcache(cache)
            self._indexes[name] = index
            return index

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


# Unused imports kept out of the namespace.
del ft, operator
