"""DjangoCache: a Django cache backend on a FanoutCache.

Configure it in ``settings.CACHES``::

    CACHES = {
        'default': {
            'BACKEND': 'diskcache.DjangoCache',
            'LOCATION': '/var/tmp/django-cache',
            'TIMEOUT': 300,
            'SHARDS': 8,
            'DATABASE_TIMEOUT': 0.010,  # seconds
            'OPTIONS': {'size_limit': 2**30},
        },
    }

Values are signed with a key derived from ``SECRET_KEY`` when they need pickle.

>>> import tempfile
>>> from django.conf import settings
>>> _ = settings.configured or settings.configure(SECRET_KEY='doctest only')
>>> cache = DjangoCache(tempfile.mkdtemp(), {'TIMEOUT': 60, 'SHARDS': 2})
>>> cache.set('greeting', 'hello')
True
>>> cache.get('greeting'), cache.get('missing', 'default')
('hello', 'default')
>>> cache.incr('hits', default=0), cache.incr('hits')
(1, 2)
>>> cache.get_backend_timeout(0), cache.get_backend_timeout(None)
(-1, None)
>>> cache.close()
"""

from functools import wraps

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from .core import ENOVAL, args_to_key, full_name
from .fanout import FanoutCache

_SALT = 'diskcache-logstore.pickle-key'


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


class DjangoCache(BaseCache):
    """Django-compatible disk and file backed cache."""

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
        self._cache = FanoutCache(directory, shards, timeout, **options)

    @property
    def directory(self):
        """Cache directory."""
        return self._cache.directory

    def cache(self, name):
        """A Cache stored under the directory, by name."""
        return self._cache.cache(name)

    def deque(self, name, maxlen=None):
        """A Deque stored under the directory, by name."""
        return self._cache.deque(name, maxlen=maxlen)

    def index(self, name):
        """An Index stored under the directory, by name."""
        return self._cache.index(name)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        """Stores ``value`` if ``key`` is not there yet; returns whether it did."""
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._cache.add(key, value, timeout, read, tag, retry)

    def get(self, key, default=None, version=None, read=False, expire_time=False, tag=False, retry=False):
        """The value of ``key``, or ``default``."""
        key = self.make_key(key, version=version)
        return self._cache.get(key, default, read, expire_time, tag, retry)

    def read(self, key, version=None):
        """The value of ``key`` as a file object; KeyError if missing."""
        key = self.make_key(key, version=version)
        return self._cache.read(key)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, read=False, tag=None, retry=True):
        """Stores ``value`` under ``key``; returns whether it did."""
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._cache.set(key, value, timeout, read, tag, retry)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None, retry=True):
        """Sets a new timeout on ``key``; returns whether it was there."""
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._cache.touch(key, timeout, retry)

    def pop(self, key, default=None, version=None, expire_time=False, tag=False, retry=True):
        """Removes ``key`` and returns its value, or ``default``."""
        key = self.make_key(key, version=version)
        return self._cache.pop(key, default, expire_time, tag, retry)

    def delete(self, key, version=None, retry=True):
        """Removes ``key``; returns whether it was there."""
        key = self.make_key(key, version=version)
        return self._cache.delete(key, retry)

    def incr(self, key, delta=1, version=None, default=None, retry=True):
        """Adds ``delta`` to the number under ``key`` (atomically); ValueError if
        ``key`` is missing and no default is given."""
        key = self.make_key(key, version=version)
        try:
            return self._cache.incr(key, delta, default, retry)
        except KeyError:
            raise ValueError("Key '%s' not found" % key) from None

    def decr(self, key, delta=1, version=None, default=None, retry=True):
        """Subtracts ``delta``; see :meth:`incr`."""
        return self.incr(key, -delta, version, default, retry)

    def has_key(self, key, version=None):
        """Whether ``key`` is present and not expired."""
        key = self.make_key(key, version=version)
        return key in self._cache

    def expire(self):
        """Removes expired items; returns how many."""
        return self._cache.expire()

    def stats(self, enable=True, reset=False):
        """``(hits, misses)``."""
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

    def clear(self):
        """Removes every item; returns how many."""
        return self._cache.clear()

    def close(self, **kwargs):
        """Called by Django after each request: cheap."""
        self._cache.close()

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """Seconds until expiry for a Django timeout: ``DEFAULT_TIMEOUT`` is the
        configured default, ``None`` never expires, and 0 expires at once."""
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        elif timeout == 0:
            timeout = -1
        return None if timeout is None else timeout

    def memoize(self, name=None, timeout=DEFAULT_TIMEOUT, version=None, typed=False, tag=None, ignore=()):
        """Decorator caching a function's results in this cache."""
        if callable(name):
            raise TypeError('name cannot be callable')

        def decorator(func):
            base = (full_name(func),) if name is None else (name,)

            @wraps(func)
            def wrapper(*args, **kwargs):
                key = wrapper.__cache_key__(*args, **kwargs)
                result = self.get(key, ENOVAL, version, retry=True)
                if result is ENOVAL:
                    result = func(*args, **kwargs)
                    valid_timeout = (
                        timeout is None or timeout == DEFAULT_TIMEOUT or timeout > 0
                    )
                    if valid_timeout:
                        self.set(key, result, timeout, version, tag=tag, retry=True)
                return result

            def __cache_key__(*args, **kwargs):
                return args_to_key(base, args, kwargs, typed, ignore)

            wrapper.__cache_key__ = __cache_key__
            return wrapper

        return decorator
