"""DjangoCache: a Django cache backend on a FanoutCache.

Configure it in ``settings.CACHES`` (every key is optional but ``BACKEND``)::

    CACHES = {
        'default': {
            'BACKEND': 'diskcache.DjangoCache',
            'LOCATION': '/var/tmp/django-cache',
            'TIMEOUT': 300,             # seconds; None: never expire
            'SHARDS': 8,
            'DATABASE_TIMEOUT': 0.010,  # seconds a write waits for a shard's lock
            'OPTIONS': {'size_limit': 2**30},
        },
    }

``OPTIONS`` are the FanoutCache's settings (``size_limit``, ``eviction_policy``,
``statistics``, ``tag_index``, ``cull_limit``, ...); unknown ones, such as Django's
``MAX_ENTRIES``, are stored with the cache and otherwise unused.

Values that need pickle are signed with a key derived from ``SECRET_KEY``; values
signed under a key in ``SECRET_KEY_FALLBACKS`` stay readable.

>>> import tempfile
>>> from django.conf import settings
>>> _ = settings.configured or settings.configure(SECRET_KEY='doctest only')
>>> cache = DjangoCache(tempfile.mkdtemp(), {'TIMEOUT': 60, 'SHARDS': 2})
>>> cache.set('greeting', 'hello')
True
>>> cache.get('greeting'), cache.get('missing', 'default')
('hello', 'default')
>>> cache.add('greeting', 'bonjour'), cache.get('greeting')
(False, 'hello')
>>> cache.incr('hits', default=0), cache.incr('hits')
(1, 2)
>>> cache.set_many({'a': 1, 'b': 2}), cache.get_many(['a', 'b', 'c'])
([], {'a': 1, 'b': 2})
>>> cache.get_backend_timeout(0), cache.get_backend_timeout(None)
(-1, None)
>>> cache.close()

Keys are made by ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION`` as in every Django
backend; a version is part of the key:

>>> cache.set('profile', 'old', version=1)
True
>>> cache.incr_version('profile', version=1)
2
>>> cache.get('profile', version=1), cache.get('profile', version=2)
(None, 'old')

The async methods run off the event loop (reads, which never wait for a writer, run on
it):

>>> import asyncio
>>> async def visit():
...     await cache.aset('visits', 0)
...     return await cache.aincr('visits'), await cache.aget('visits')
>>> asyncio.run(visit())
(1, 1)
"""

import asyncio
import collections
import functools
import io
import os
import sqlite3
import tempfile  # noqa: F401 (the examples use it)
import threading
import time
import warnings
import weakref
import zlib

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    MEMCACHE_MAX_KEY_LENGTH,
    BaseCache,
    CacheKeyWarning,
    default_key_func,
    memcache_key_warnings,
)

from .core import ENOVAL, Disk, Timeout, args_to_key, full_name
from .fanout import FanoutCache

_SALT = 'diskcache-logstore.pickle-key'

# A value no caller can have stored: "missing" in get_many and friends.
_MISSING = object()

# Django's {% cache %} tag stores a fragment under 'template.cache.<fragment name>.<hash
# of the vary-on values>' and has no way to give it a tag.
_FRAGMENT_PREFIX = 'template.cache.'


def fragment_tag(fragment_name):
    """The tag DjangoCache gives the entries Django's ``{% cache %}`` template tag stores
    for ``fragment_name``: ``cache.evict(fragment_tag('sidebar'))`` drops the sidebar
    fragment for every vary-on value.

    >>> fragment_tag('sidebar')
    'template.cache.sidebar'
    """
    return _FRAGMENT_PREFIX + fragment_name


def _readable(value):
    """With ``read=True`` a value is a file to copy; bytes are accepted too (as the
    documentation's ``cache.set('large_document', file_data, read=True)`` passes them)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return io.BytesIO(value)
    return value


def _implicit_tag(key):
    """A fragment's tag, from its key; None for any other key."""
    if type(key) is str and key.startswith(_FRAGMENT_PREFIX):
        return key[: key.rindex('.')]
    return None


def _pickle_keys_from_settings():
    """The pickle secret for Django, an HMAC of a fixed salt under ``SECRET_KEY``, and the
    ones under ``SECRET_KEY_FALLBACKS`` (read, never written, so keys can be rotated)."""
    try:
        from django.conf import settings
        from django.utils.crypto import salted_hmac

        if not settings.SECRET_KEY:
            return None, []
        derive = lambda secret: salted_hmac(  # noqa: E731
            _SALT, 'pickle', secret=secret, algorithm='sha256'
        ).digest()
        fallbacks = getattr(settings, 'SECRET_KEY_FALLBACKS', None) or []
        return derive(settings.SECRET_KEY), [derive(key) for key in fallbacks]
    except Exception:
        return None, []


# --- handles shared within the process ----------------------------------------------------
#
# Django makes a backend instance per thread, and under ASGI per request. Opening a
# FanoutCache opens every shard (about 0.1 ms each), so instances with the same
# configuration share one FanoutCache: the handles are thread-safe and fork-safe. Shared
# handles stay open while an instance uses them, and the most recently used ones (up to
# _KEEP_SHARDS shards in all) stay open after that, so a new instance is a dictionary
# look-up.

_KEEP_SHARDS = 128
_SHARED_LOCK = threading.Lock()
_IN_USE = weakref.WeakValueDictionary()  # configuration -> _Shared
_RECENT = collections.OrderedDict()  # configuration -> _Shared, least recent first


class _Shared:
    """An open FanoutCache and the identity of its directory when it was opened."""

    __slots__ = ('fanout', 'ident', 'shards', '__weakref__')

    def __init__(self, fanout, ident, shards):
        self.fanout = fanout
        self.ident = ident
        self.shards = shards


def _identity(directory):
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _open_shared(directory, shards, timeout, options):
    """The FanoutCache for this configuration: a shared open one if its directory is
    still the one it opened, else a new one."""
    config = (str(directory), shards, timeout, repr(sorted(options.items(), key=repr)))
    ident = _identity(os.path.expandvars(os.path.expanduser(str(directory))))
    with _SHARED_LOCK:
        shared = _IN_USE.get(config)
        if shared is None or ident is None or shared.ident != ident:
            fanout = FanoutCache(directory, shards, timeout, **options)
            shared = _Shared(fanout, _identity(fanout.directory), shards)
            _IN_USE[config] = shared
        _RECENT[config] = shared
        _RECENT.move_to_end(config)
        kept = sum(entry.shards for entry in _RECENT.values())
        while kept > _KEEP_SHARDS and len(_RECENT) > 1:
            _, dropped = _RECENT.popitem(last=False)
            kept -= dropped.shards
        return shared


def _after_fork_in_child():
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the backend -----------------------------------------------------------------------------


class DjangoCache(BaseCache):
    """Django-compatible disk and file backed cache.

    Django's ``BaseCache`` methods (``add``, ``get``, ``set``, ``touch``, ``delete``,
    ``get_many``, ``set_many``, ``delete_many``, ``has_key``, ``incr``, ``decr``,
    ``get_or_set``, ``incr_version``, ``decr_version``, ``clear``, ``close`` and their
    ``a``-prefixed async versions), with python-diskcache's extras (``read``, ``pop``,
    ``expire``, ``evict``, ``cull``, ``stats``, tags, ``memoize`` and the sub-collections
    ``cache``, ``deque``, ``index``).

    >>> cache = DjangoCache(tempfile.mkdtemp(), {'KEY_PREFIX': 'site', 'VERSION': 3})
    >>> cache.make_key('page')
    'site:3:page'
    >>> cache.set('page', b'<html>', tag='pages'), cache.evict('pages')
    (True, 1)
    """

    def __init__(self, directory, params):
        super().__init__(params)
        shards = params.get('SHARDS', 8)
        timeout = params.get('DATABASE_TIMEOUT', 0.010)
        options = dict(params.get('OPTIONS', {}))
        if 'pickle_key' not in options:
            secret, fallbacks = _pickle_keys_from_settings()
            if secret is not None:
                options['pickle_key'] = secret
                options.setdefault('pickle_key_fallbacks', fallbacks)
        self._shared = _open_shared(directory, shards, timeout, options)
        self._cache = fanout = self._shared.fanout
        # The single-key methods go straight to the shard's native store when the shards
        # use the default Disk (what FanoutCache and Cache would do, minus their frames).
        self._shards = fanout._shards
        self._count = len(fanout._shards)
        self._direct = all(type(shard._disk) is Disk for shard in fanout._shards)

    @property
    def directory(self):
        """Cache directory."""
        return self._cache.directory

    def cache(self, name):
        """A Cache stored under the directory, by name.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> users = cache.cache('users')
        >>> users.set('ada', 1)
        True
        >>> cache.cache('users').get('ada')
        1
        """
        return self._cache.cache(name)

    def deque(self, name, maxlen=None):
        """A Deque stored under the directory, by name.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> jobs = cache.deque('jobs', maxlen=2)
        >>> jobs.extend(['a', 'b', 'c'])
        >>> list(jobs)
        ['b', 'c']
        """
        return self._cache.deque(name, maxlen=maxlen)

    def index(self, name):
        """An Index stored under the directory, by name.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> cache.index('search')['python'] = ['doc1']
        >>> cache.index('search')['python']
        ['doc1']
        """
        return self._cache.index(name)

    # --- keys ---

    def validate_key(self, key):
        """Warns (``CacheKeyWarning``) about keys memcached would refuse, as Django's
        own backends do; this backend stores them all. Keys that are not strings (a
        ``KEY_FUNCTION`` may make them) are not checked.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter('always')
        ...     cache.set('with space', 1)
        True
        >>> [str(w.message) for w in caught]
        ["Cache key contains characters that will cause errors if used with memcached: ':1:with space'"]
        """
        if isinstance(key, str) and (
            len(key) > MEMCACHE_MAX_KEY_LENGTH or ' ' in key or not key.isprintable()
        ):
            for message in memcache_key_warnings(key):
                warnings.warn(message, CacheKeyWarning)

    def _key(self, key, version):
        """``make_key`` then ``validate_key``; with Django's own key function and neither
        method overridden, the same in fewer steps."""
        cls = type(self)
        if (
            self.key_func is default_key_func
            and cls.make_key is _BASE_MAKE_KEY
            and cls.validate_key is _OUR_VALIDATE_KEY
        ):
            key = '%s:%s:%s' % (self.key_prefix, self.version if version is None else version, key)
            if len(key) > MEMCACHE_MAX_KEY_LENGTH or ' ' in key or not key.isprintable():
                self.validate_key(key)
            return key
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return key

    def _shard_store(self, key):
        """The native store of the shard ``key`` belongs on (the FanoutCache's choice),
        or None when the shards use a custom Disk."""
        if not self._direct:
            return None
        if type(key) is str:
            return self._shards[zlib.adler32(key.encode('utf-8')) % self._count]._store
        return self._cache._shard(key)._store

    # --- Django's methods ---

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        """Stores ``value`` if ``key`` is not there yet; returns whether it did.

        Atomic: of many processes adding one key, one succeeds.
        """
        if tag is None:
            tag = _implicit_tag(key)
        if read:
            value = _readable(value)
        key = self._key(key, version)
        timeout = self.get_backend_timeout(timeout=timeout)
        store = self._shard_store(key)
        if store is None:
            return self._cache.add(key, value, timeout, read, tag, retry)
        try:
            return store.set(key, value, time.time(), timeout, read, tag, retry, True)
        except Timeout:
            return False

    def get(self, key, default=None, version=None, read=False, expire_time=False, tag=False, retry=False):
        """The value of ``key``, or ``default``; never waits for a writer."""
        key = self._key(key, version)
        store = self._shard_store(key)
        if store is None:
            return self._cache.get(key, default, read, expire_time, tag, retry)
        try:
            return store.get(key, time.time(), default, read, expire_time, tag)
        except (Timeout, sqlite3.OperationalError):
            return default

    def read(self, key, version=None):
        """The value of ``key`` as a file object; KeyError if missing."""
        key = self._key(key, version)
        return self._cache.read(key)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        """Stores ``value`` under ``key``; returns whether it did. With ``read=True``,
        ``value`` is a file (or bytes) stored as a file of its own. A fragment stored by
        Django's ``{% cache %}`` tag is tagged :func:`fragment_tag` of its name."""
        if tag is None:
            tag = _implicit_tag(key)
        if read:
            value = _readable(value)
        key = self._key(key, version)
        timeout = self.get_backend_timeout(timeout=timeout)
        store = self._shard_store(key)
        if store is None:
            return self._cache.set(key, value, timeout, read, tag, retry)
        try:
            return store.set(key, value, time.time(), timeout, read, tag, retry)
        except Timeout:
            return False

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None, retry=True):
        """Sets a new timeout on ``key``; returns whether it was there."""
        key = self._key(key, version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._cache.touch(key, timeout, retry)

    def pop(self, key, default=None, version=None, expire_time=False, tag=False, retry=True):
        """Removes ``key`` and returns its value, or ``default``."""
        key = self._key(key, version)
        return self._cache.pop(key, default, expire_time, tag, retry)

    def delete(self, key, version=None, retry=True):
        """Removes ``key``; returns whether it was there."""
        key = self._key(key, version)
        store = self._shard_store(key)
        if store is None:
            return self._cache.delete(key, retry)
        try:
            return store.delete(key, time.time(), retry)
        except Timeout:
            return False

    def incr(self, key, delta=1, version=None, default=None, retry=True):
        """Adds ``delta`` to the number under ``key`` (atomically, across processes);
        ValueError if ``key`` is missing and no ``default`` is given."""
        key = self._key(key, version)
        try:
            return self._cache.incr(key, delta, default, retry)
        except KeyError:
            raise ValueError("Key '%s' not found" % key) from None

    def decr(self, key, delta=1, version=None, default=None, retry=True):
        """Subtracts ``delta``; see :meth:`incr`."""
        return self.incr(key, -delta, version, default, retry)

    def has_key(self, key, version=None):
        """Whether ``key`` is present and not expired."""
        key = self._key(key, version)
        store = self._shard_store(key)
        if store is None:
            return key in self._cache
        return store.contains(key, time.time())

    def get_many(self, keys, version=None):
        """A dict of the given keys that are present, with their values."""
        found = {}
        for key in keys:
            value = self.get(key, _MISSING, version)
            if value is not _MISSING:
                found[key] = value
        return found

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, retry=True):
        """Stores every item of ``data``; returns the keys that were not stored (with
        ``retry=False``, those whose shard stayed locked past ``DATABASE_TIMEOUT``).

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> cache.set_many({'x': 1, 'y': 2}, timeout=60)
        []
        """
        failed = []
        for key, value in data.items():
            if not self.set(key, value, timeout, version, retry=retry):
                failed.append(key)
        return failed

    def delete_many(self, keys, version=None, retry=True):
        """Removes the given keys."""
        for key in keys:
            self.delete(key, version, retry)

    def incr_version(self, key, delta=1, version=None):
        """Moves ``key`` from ``version`` to ``version + delta``, keeping its value, its
        expiry time and its tag; returns the new version. ValueError if it is missing.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> cache.set('k', 'v', timeout=None)
        True
        >>> cache.incr_version('k'), cache.get('k', version=2)
        (2, 'v')
        """
        if version is None:
            version = self.version
        old = self._key(key, version)
        new = self._key(key, version + delta)
        value, expire_at, tag = self._cache.get(old, _MISSING, expire_time=True, tag=True)
        if value is _MISSING:
            raise ValueError("Key '%s' not found" % key)
        timeout = None if expire_at is None else expire_at - time.time()
        self._cache.set(new, value, timeout, tag=tag, retry=True)
        self._cache.delete(old, retry=True)
        return version + delta

    def decr_version(self, key, delta=1, version=None):
        """Moves ``key`` to ``version - delta``; see :meth:`incr_version`."""
        return self.incr_version(key, -delta, version)

    def clear(self):
        """Removes every item; returns how many."""
        return self._cache.clear()

    def close(self, **kwargs):
        """Called by Django after every request: writes the accesses recorded for the
        least-recently/frequently-used policies (a few microseconds; if a shard's lock
        stays busy past ``DATABASE_TIMEOUT`` they wait for the next time). Nothing is
        closed, so nothing needs reopening."""
        fanout = self._cache
        for cache in fanout._shards + tuple(fanout._caches.values()):
            try:
                cache.close()
            except Timeout:
                pass

    # --- python-diskcache's extras ---

    def expire(self):
        """Removes expired items; returns how many."""
        return self._cache.expire()

    def stats(self, enable=True, reset=False):
        """``(hits, misses)``; also turns statistics on (or off)."""
        return self._cache.stats(enable=enable, reset=reset)

    def create_tag_index(self):
        """Creates the tag index."""
        self._cache.create_tag_index()

    def drop_tag_index(self):
        """Drops the tag index."""
        self._cache.drop_tag_index()

    def evict(self, tag):
        """Removes the items tagged ``tag``; returns how many."""
        return self._cache.evict(tag)

    def cull(self):
        """Culls to the size limit; returns how many items went."""
        return self._cache.cull()

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """Seconds until expiry for a Django timeout: ``DEFAULT_TIMEOUT`` is the
        configured default, ``None`` never expires, and 0 (or less) expires at once.

        >>> cache = DjangoCache(tempfile.mkdtemp(), {'TIMEOUT': 60})
        >>> cache.get_backend_timeout(), cache.get_backend_timeout(2.5)
        (60, 2.5)
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        elif timeout == 0:
            timeout = -1
        return None if timeout is None else timeout

    def memoize(self, name=None, timeout=DEFAULT_TIMEOUT, version=None, typed=False, tag=None, ignore=()):
        """Decorator caching a function's results in this cache (its keys are made from
        the arguments and not checked by :meth:`validate_key`).

        >>> cache = DjangoCache(tempfile.mkdtemp(), {})
        >>> @cache.memoize(timeout=60, tag='math')
        ... def square(x):
        ...     return x * x
        >>> square(4), square.__cache_key__(4)
        (16, ('diskcache.djangocache.square', 4, None))
        >>> cache.evict('math')
        1
        """
        if callable(name):
            raise TypeError('name cannot be callable')

        def decorator(func):
            base = (full_name(func),) if name is None else (name,)

            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                key = self.make_key(wrapper.__cache_key__(*args, **kwargs), version=version)
                result = self._cache.get(key, ENOVAL, retry=True)
                if result is ENOVAL:
                    result = func(*args, **kwargs)
                    if timeout is None or timeout is DEFAULT_TIMEOUT or timeout > 0:
                        expire = self.get_backend_timeout(timeout)
                        self._cache.set(key, result, expire, tag=tag, retry=True)
                return result

            def __cache_key__(*args, **kwargs):
                return args_to_key(base, args, kwargs, typed, ignore)

            wrapper.__cache_key__ = __cache_key__
            return wrapper

        return decorator

    # --- async: off the event loop, in the loop's thread pool, each call on its own -----
    #
    # Django's default runs every async cache call on one shared thread, so one write
    # waiting for a lock holds up every other call. Here a call that may wait for a
    # shard's writer lock (or do a transaction's I/O) runs in the loop's default
    # executor, beside other calls; the engine releases the GIL meanwhile. Reads never
    # wait for a writer and take microseconds, so they run on the loop itself.

    async def _in_thread(self, method, *args, **kwargs):
        loop = asyncio.get_running_loop()
        call = functools.partial(method, *args, **kwargs)
        return await loop.run_in_executor(None, call)

    async def aadd(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        return await self._in_thread(self.add, key, value, timeout, version, read, tag, retry)

    async def aget(self, key, default=None, version=None, read=False, expire_time=False, tag=False, retry=False):
        if read:
            return await self._in_thread(self.get, key, default, version, True, expire_time, tag, retry)
        return self.get(key, default, version, False, expire_time, tag, retry)

    async def aset(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        return await self._in_thread(self.set, key, value, timeout, version, read, tag, retry)

    async def atouch(self, key, timeout=DEFAULT_TIMEOUT, version=None, retry=True):
        return await self._in_thread(self.touch, key, timeout, version, retry)

    async def adelete(self, key, version=None, retry=True):
        return await self._in_thread(self.delete, key, version, retry)

    async def apop(self, key, default=None, version=None, expire_time=False, tag=False, retry=True):
        return await self._in_thread(self.pop, key, default, version, expire_time, tag, retry)

    async def aget_many(self, keys, version=None):
        return self.get_many(keys, version=version)

    async def ahas_key(self, key, version=None):
        return self.has_key(key, version=version)

    async def aget_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        value = await self.aget(key, _MISSING, version=version)
        if value is _MISSING:
            if callable(default):
                default = default()
            await self.aadd(key, default, timeout=timeout, version=version)
            # Another caller may have added first: theirs is the value.
            return await self.aget(key, default, version=version)
        return value

    async def aincr(self, key, delta=1, version=None, default=None, retry=True):
        return await self._in_thread(self.incr, key, delta, version, default, retry)

    async def adecr(self, key, delta=1, version=None, default=None, retry=True):
        return await self._in_thread(self.incr, key, -delta, version, default, retry)

    async def aset_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, retry=True):
        return await self._in_thread(self.set_many, data, timeout, version, retry)

    async def adelete_many(self, keys, version=None, retry=True):
        return await self._in_thread(self.delete_many, keys, version, retry)

    async def aincr_version(self, key, delta=1, version=None):
        return await self._in_thread(self.incr_version, key, delta, version)

    async def adecr_version(self, key, delta=1, version=None):
        return await self._in_thread(self.incr_version, key, -delta, version)

    async def aclear(self):
        return await self._in_thread(self.clear)

    async def aclose(self, **kwargs):
        return await self._in_thread(self.close, **kwargs)


_BASE_MAKE_KEY = BaseCache.make_key
_OUR_VALIDATE_KEY = DjangoCache.validate_key
