"""Cache, Disk and their helpers, on the diskcache-rs engine.

A :class:`Cache` is a persistent, process-safe key-value store in a directory.
Its methods, arguments, defaults, return values and exceptions are those of
python-diskcache 5.6.3; the storage underneath is a log-structured engine
written in Rust instead of SQLite.

>>> import diskcache
>>> cache = diskcache.Cache()
>>> cache.set('greeting', 'hello')
True
>>> cache['greeting']
'hello'
>>> cache.get('missing', default='n/a')
'n/a'
>>> cache.close()
"""

import codecs
import contextlib as cl
import errno
import functools as ft
import io
import json
import math
import os
import os.path as op
import pickle
import pickletools
import sqlite3
import struct
import sys
import tempfile
import threading
import time
import warnings
import weakref
import zlib

from ._core import Codec, Store, StoredKey


class Constant(tuple):
    """A named constant: compares by identity of its name, prints as its name.

    >>> SENTINEL = Constant('SENTINEL')
    >>> SENTINEL
    SENTINEL
    >>> SENTINEL == Constant('SENTINEL')
    True
    """

    def __new__(cls, name):
        return tuple.__new__(cls, (name,))

    def __repr__(self):
        return '%s' % self[0]


DBNAME = 'cache.db'
ENOVAL = Constant('ENOVAL')
UNKNOWN = Constant('UNKNOWN')

MODE_NONE = 0
MODE_RAW = 1
MODE_BINARY = 2
MODE_TEXT = 3
MODE_PICKLE = 4

DEFAULT_SETTINGS = {
    'statistics': 0,
    'tag_index': 0,
    'eviction_policy': 'least-recently-stored',
    'size_limit': 2**30,
    'cull_limit': 10,
    'sqlite_auto_vacuum': 1,
    'sqlite_cache_size': 2**13,
    'sqlite_journal_mode': 'wal',
    'sqlite_mmap_size': 2**26,
    'sqlite_synchronous': 1,
    'disk_min_file_size': 2**15,
    'disk_pickle_protocol': pickle.HIGHEST_PROTOCOL,
}

METADATA = {
    'count': 0,
    'size': 0,
    'hits': 0,
    'misses': 0,
}

# The eviction policies the engine implements. The entries describe each policy; the
# engine keeps an index per policy, so there is nothing to configure here.
EVICTION_POLICY = {
    'none': {
        'init': None,
        'get': None,
        'cull': None,
    },
    'least-recently-stored': {
        'init': 'index of store times',
        'get': None,
        'cull': 'oldest store time first',
    },
    'least-recently-used': {
        'init': 'index of access times',
        'get': 'access time = now (recorded in batches)',
        'cull': 'oldest access time first',
    },
    'least-frequently-used': {
        'init': 'index of access counts',
        'get': 'access count + 1 (recorded in batches)',
        'cull': 'fewest accesses first',
    },
}


class Timeout(Exception):
    """The cache's writer lock stayed busy past the timeout.

    Batch removals (``clear``, ``cull``, ``expire``, ``evict``) give, as
    ``args[0]``, how many items they had removed by then.
    """


class UnknownFileWarning(UserWarning):
    """``check()`` found a file that no item refers to."""


class EmptyDirWarning(UserWarning):
    """``check()`` found an empty directory."""


class OperationalError(sqlite3.OperationalError):
    """The cache's files cannot be used: damaged, of a newer format, or unreadable.

    It subclasses :class:`sqlite3.OperationalError` so that code written for
    python-diskcache, which catches that, keeps working.
    """


def full_name(func):
    """The dotted name of a function: its module, then its qualified name.

    >>> full_name(full_name)
    'diskcache.core.full_name'
    """
    return func.__module__ + '.' + func.__qualname__


def args_to_key(base, args, kwargs, typed, ignore):
    """The cache key of a call: ``base``, the positional arguments, ``None``, then
    the keyword arguments sorted by name (and, if ``typed``, the argument types).
    Arguments whose position or name is in ``ignore`` are left out.

    >>> args_to_key(('f',), (1, 2), {'b': 3, 'a': 4}, False, ())
    ('f', 1, 2, None, 'a', 4, 'b', 3)
    >>> args_to_key(('f',), (1, 2), {'b': 3}, False, {0, 'b'})
    ('f', 2, None)
    >>> args_to_key(('f',), (1,), {}, True, ())
    ('f', 1, None, <class 'int'>)
    """
    kept = tuple(arg for pos, arg in enumerate(args) if pos not in ignore)
    key = base + kept + (None,)
    pairs = ()
    if kwargs:
        pairs = sorted(
            (name, val) for name, val in kwargs.items() if name not in ignore
        )
        for pair in pairs:
            key += pair
    if typed:
        key += tuple(type(arg) for arg in kept)
        key += tuple(type(val) for _, val in pairs)
    return key


def _wrap_fd(fd, path):
    """A read-only binary file object over an open descriptor, named by its path."""
    raw = io.FileIO(fd, 'rb', closefd=True)
    raw.name = path
    return io.BufferedReader(raw)


# --- the pickle secret -----------------------------------------------------------------

_SECRETS = {}
_SECRETS_LOCK = threading.Lock()


def _key_file_path():
    """Where the per-user pickle key lives: outside every cache directory."""
    home = op.expanduser('~')
    if sys.platform == 'darwin':
        base = op.join(home, 'Library', 'Application Support')
    elif os.name == 'nt':
        base = os.environ.get('LOCALAPPDATA') or op.join(home, 'AppData', 'Local')
    else:
        base = os.environ.get('XDG_STATE_HOME') or op.join(home, '.local', 'state')
    return op.join(base, 'diskcache-logstore', 'pickle.key')


def _read_key_file(path):
    st = os.stat(path)
    if os.name != 'nt' and st.st_mode & 0o022:
        raise PermissionError(
            errno.EPERM,
            'pickle key file is writable by others; refusing it (chmod 600)',
            path,
        )
    with open(path, 'rb') as reader:
        secret = reader.read()
    if len(secret) < 32:
        raise ValueError('pickle key file %r holds fewer than 32 bytes' % path)
    return secret


def _key_file_secret():
    path = _key_file_path()
    with _SECRETS_LOCK:
        if path in _SECRETS:
            return _SECRETS[path]
        try:
            secret = _read_key_file(path)
        except FileNotFoundError:
            os.makedirs(op.dirname(path), 0o700, exist_ok=True)
            tmp = '%s.%d.%s.tmp' % (path, os.getpid(), os.urandom(4).hex())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, os.urandom(32))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # Another process made it first: use theirs.
            finally:
                os.remove(tmp)
            secret = _read_key_file(path)
        _SECRETS[path] = secret
        return secret


def _resolve_pickle_key(pickle_key):
    """The pickle secret and whether pickles are signed, from ``pickle_key``.

    ``False``: unsigned pickles (trust the directory). bytes or str: that secret.
    ``None``: ``$DISKCACHE_PICKLE_KEY``, else the per-user key file.
    """
    if pickle_key is False:
        return None, False
    if pickle_key is not None and pickle_key is not True:
        if isinstance(pickle_key, str):
            pickle_key = pickle_key.encode('utf-8')
        if not isinstance(pickle_key, (bytes, bytearray)) or not pickle_key:
            raise TypeError('pickle_key must be non-empty bytes or str, None or False')
        return bytes(pickle_key), True
    env = os.environ.get('DISKCACHE_PICKLE_KEY')
    if env:
        return env.encode('utf-8'), True
    return _key_file_secret(), True


# --- Disk --------------------------------------------------------------------------------


class Disk:
    """How keys and values become stored data, for Caches given a Disk subclass.

    The default ``Disk`` is handled in the native module (its methods below give
    the same results for subclasses that call them). A subclass that overrides
    any method is called from Python for every key and value, as in
    python-diskcache: ``put``/``get`` for keys, ``store``/``fetch`` for values,
    ``filename``/``remove`` for the files it writes.

    >>> disk = Disk(tempfile.mkdtemp(), min_file_size=2**10)
    >>> disk.put('key')
    ('key', True)
    >>> disk.store(b'small', read=False)
    (0, 1, None, b'small')
    """

    def __init__(self, directory, min_file_size=0, pickle_protocol=0):
        self._directory = directory
        self.min_file_size = min_file_size
        self.pickle_protocol = pickle_protocol
        self._codec = None

    def _get_codec(self):
        if self._codec is None:
            secret, signed = _resolve_pickle_key(None)
            self._codec = Codec(secret, signed, self.pickle_protocol)
        return self._codec

    def hash(self, key):
        """A hash of ``key`` that is the same in every process and version: the one
        python-diskcache's ``Disk.hash`` gives, so FanoutCache places keys as it does.

        >>> disk = Disk(tempfile.mkdtemp())
        >>> disk.hash(-1)
        4294967294
        >>> disk.hash('a') == zlib.adler32(b'a')
        True
        """
        mask = 0xFFFFFFFF
        kind = type(key)
        if kind is bytes:
            return zlib.adler32(key) & mask
        if kind is str:
            return zlib.adler32(key.encode('utf-8')) & mask
        if kind is int and -(2**63) <= key <= 2**63 - 1:
            return key % mask
        if kind is float:
            return zlib.adler32(struct.pack('!d', key)) & mask
        pickled = pickletools.optimize(pickle.dumps(key, protocol=self.pickle_protocol))
        return zlib.adler32(pickled) & mask

    def put(self, key):
        """``(db_key, raw)``: str, bytes, 64-bit int and float keys as they are;
        other keys in this package's encoding (plain, or pickled and signed)."""
        kind = type(key)
        if kind is bytes or kind is str or kind is float:
            return key, True
        if kind is int and -(2**63) <= key <= 2**63 - 1:
            return key, True
        return self._get_codec().encode_key(key), False

    def get(self, key, raw):
        """The key that ``put`` turned into ``(key, raw)``."""
        if raw:
            return bytes(key) if isinstance(key, (memoryview, bytearray)) else key
        return self._get_codec().decode_key(bytes(key))

    def store(self, value, read, key=UNKNOWN):
        """``(size, mode, filename, db_value)`` for ``value``: small values inline,
        large ones in files of their own; objects in the plain encoding or as a
        signed pickle."""
        kind = type(value)
        minimum = self.min_file_size
        if read:
            filename, full_path = self.filename(key, value)
            chunks = iter(ft.partial(value.read, 2**22), b'')
            size = self._write(full_path, chunks, 'xb')
            return size, MODE_BINARY, filename, None
        if kind is str and len(value) < minimum:
            return 0, MODE_RAW, None, value
        if kind is int and -(2**63) <= value <= 2**63 - 1:
            return 0, MODE_RAW, None, value
        if kind is float:
            return 0, MODE_RAW, None, value
        if kind is bytes:
            if len(value) < minimum:
                return 0, MODE_RAW, None, value
            filename, full_path = self.filename(key, value)
            self._write(full_path, io.BytesIO(value), 'xb')
            return len(value), MODE_BINARY, filename, None
        if kind is str:
            filename, full_path = self.filename(key, value)
            self._write(full_path, io.StringIO(value), 'x', 'UTF-8')
            return op.getsize(full_path), MODE_TEXT, filename, None
        payload = self._get_codec().encode_payload(value, b'disk')
        if len(payload) < minimum:
            return 0, MODE_PICKLE, None, payload
        filename, full_path = self.filename(key, value)
        self._write(full_path, io.BytesIO(payload), 'xb')
        return len(payload), MODE_PICKLE, filename, None

    def _write(self, full_path, iterator, mode, encoding=None):
        full_dir, _ = op.split(full_path)
        for attempt in range(1, 11):
            with cl.suppress(OSError):
                os.makedirs(full_dir)
            try:
                # newline='' keeps '\r\n' as written (text is read back the same way).
                writer = open(full_path, mode, encoding=encoding, newline='' if encoding else None)
            except OSError:
                if attempt == 10:
                    raise
                continue
            with writer:
                size = 0
                for chunk in iterator:
                    size += len(chunk)
                    writer.write(chunk)
                return size

    def fetch(self, mode, filename, value, read):
        """The value ``store`` described by ``(mode, filename, value)``; with
        ``read``, a file-backed binary value comes back as an open file."""
        if mode == MODE_RAW:
            return bytes(value) if isinstance(value, (memoryview, bytearray)) else value
        if mode == MODE_BINARY:
            if read:
                return open(op.join(self._directory, filename), 'rb')
            with open(op.join(self._directory, filename), 'rb') as reader:
                return reader.read()
        if mode == MODE_TEXT:
            full_path = op.join(self._directory, filename)
            with open(full_path, 'r', encoding='UTF-8', newline='') as reader:
                return reader.read()
        if mode == MODE_PICKLE:
            if value is None:
                with open(op.join(self._directory, filename), 'rb') as reader:
                    value = reader.read()
            return self._get_codec().decode_payload_py(bytes(value), b'disk')
        raise ValueError('unknown mode %r' % (mode,))

    def filename(self, key=UNKNOWN, value=UNKNOWN):
        """A new random file name ``hh/hh/<28 hex>.val``: relative, and full."""
        hex_name = codecs.encode(os.urandom(16), 'hex').decode('utf-8')
        name = op.join(hex_name[:2], hex_name[2:4], hex_name[4:] + '.val')
        return name, op.join(self._directory, name)

    def remove(self, file_path):
        """Removes a file ``store`` wrote (relative name), and its empty directories."""
        full_path = op.join(self._directory, file_path)
        full_dir, _ = op.split(full_path)
        with cl.suppress(OSError):
            os.remove(full_path)
        with cl.suppress(OSError):
            os.removedirs(full_dir)


class JSONDisk(Disk):
    """A Disk that stores keys and values as zlib-compressed JSON (no pickle).

    >>> disk = JSONDisk(tempfile.mkdtemp(), compress_level=6)
    >>> db_key, raw = disk.put({'a': [1, 2]})
    >>> disk.get(db_key, raw)
    {'a': [1, 2]}
    """

    def __init__(self, directory, compress_level=1, **kwargs):
        self.compress_level = compress_level
        super().__init__(directory, **kwargs)

    def put(self, key):
        data = json.dumps(key).encode('utf-8')
        return super().put(zlib.compress(data, self.compress_level))

    def get(self, key, raw):
        data = super().get(key, raw)
        return json.loads(zlib.decompress(data).decode('utf-8'))

    def store(self, value, read, key=UNKNOWN):
        if not read:
            data = json.dumps(value).encode('utf-8')
            value = zlib.compress(data, self.compress_level)
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        data = super().fetch(mode, filename, value, read)
        if read:
            return data
        return json.loads(zlib.decompress(data).decode('utf-8'))


# --- fork handling -----------------------------------------------------------------------

_CACHES = weakref.WeakSet()


def _after_fork_in_child():
    # A lock another thread held at fork time would never be released in the child, and
    # a transaction open in the parent's thread does not exist in the child.
    global _SECRETS_LOCK
    _SECRETS_LOCK = threading.Lock()
    for cache in list(_CACHES):
        cache._local = threading.local()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_NUMERIC_SETTINGS = ('size_limit', 'cull_limit', 'disk_min_file_size')


def _stored(key, value):
    """A setting as the engine stores it: whole bytes and counts are integers (a
    FanoutCache divides its size limit among its shards)."""
    if key in _NUMERIC_SETTINGS and isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value

_WARNING_KINDS = {
    'UnknownFile': UnknownFileWarning,
    'EmptyDirectory': EmptyDirWarning,
}


# --- Cache -------------------------------------------------------------------------------


class Cache:
    """Disk and file backed cache.

    >>> cache = Cache()
    >>> cache.set('n', 1, expire=60, tag='numbers')
    True
    >>> cache.get('n', expire_time=True, tag=True)[::2]
    (1, 'numbers')
    >>> cache.incr('n', 41)
    42
    >>> 'n' in cache, len(cache)
    (True, 1)
    >>> cache.close()
    """

    def __init__(self, directory=None, timeout=60, disk=Disk, **settings):
        try:
            assert issubclass(disk, Disk)
        except (TypeError, AssertionError):
            raise ValueError('disk must subclass diskcache.Disk') from None

        pickle_key = settings.pop('pickle_key', None)
        fallbacks = settings.pop('pickle_key_fallbacks', ())
        if directory is None:
            directory = tempfile.mkdtemp(prefix='diskcache-')
        directory = str(directory)
        directory = op.expanduser(directory)
        directory = op.expandvars(directory)

        if not op.isdir(directory):
            try:
                os.makedirs(directory, 0o755)
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise EnvironmentError(
                        error.errno,
                        'Cache directory "%s" does not exist'
                        ' and could not be created' % directory,
                    ) from None

        self._directory = directory
        self._timeout = timeout
        self._local = threading.local()
        self._pickle_key = pickle_key
        self._pickle_key_fallbacks = tuple(fallbacks)
        secret, signed = _resolve_pickle_key(pickle_key)
        older = [_resolve_pickle_key(key)[0] for key in fallbacks if key is not False]

        given = {key: value for key, value in settings.items() if key not in METADATA}
        protocol = given.get('disk_pickle_protocol', DEFAULT_SETTINGS['disk_pickle_protocol'])
        self._codec = Codec(secret, signed, int(protocol), [key for key in older if key])
        creating_until = None
        while True:
            try:
                self._store = Store(directory, timeout, self._codec)
                break
            except Timeout:
                # Opening may need the writer lock (to create or recover the cache); like
                # python-diskcache's set-up statements, it waits as long as that takes.
                time.sleep(0.001)
            except OperationalError as error:
                # A process creating this cache right now writes its first files before
                # its meta file, and the engine takes a look in between for damage. Look
                # again for a moment: a creation takes milliseconds, damage stays.
                if 'the meta file is missing' not in str(error):
                    raise
                if creating_until is None:
                    creating_until = time.monotonic() + 2.0
                elif time.monotonic() > creating_until:
                    raise
                time.sleep(0.005)

        stored = json.loads(self._store.settings())
        sets = dict(DEFAULT_SETTINGS)
        for key, value in stored.items():
            if key != 'codec':
                sets[key] = value
        sets.update(given)
        self._codec.protocol = int(sets['disk_pickle_protocol'])

        changes = {
            key: value
            for key, value in sets.items()
            if key not in stored or stored[key] != _stored(key, value)
        }
        if changes:
            with self._transact(retry=True):
                for key, value in changes.items():
                    self._store.reset(key, json.dumps(_stored(key, value)))

        disk_args = {key[5:]: value for key, value in sets.items() if key.startswith('disk_')}
        self._disk = disk(directory, **disk_args)
        self._disk._codec = self._codec

        for key, value in sets.items():
            setattr(self, key, value)
        for key in METADATA:
            self.reset(key)
        _CACHES.add(self)

    @property
    def directory(self):
        """Cache directory."""
        return self._directory

    @property
    def timeout(self):
        """SQLite-compatible name for how long writes wait for the writer lock."""
        return self._timeout

    @property
    def disk(self):
        """Disk used for serialization."""
        return self._disk

    # --- transactions ---

    @cl.contextmanager
    def _transact(self, retry=False, filename=None):
        local = self._local
        depth = getattr(local, 'depth', 0)
        if not depth:
            try:
                self._store.begin(retry)
            except Timeout:
                if filename is not None:
                    self._disk.remove(filename)
                raise Timeout from None
        local.depth = depth + 1
        try:
            yield None
        except BaseException:
            local.depth = depth
            if not depth:
                self._store.end(False)
                # Rolled back: the entries (and their files) are still there.
                self._store.take_displaced()
                local.pending = []
            raise
        else:
            local.depth = depth
            if not depth:
                self._store.end(True)
                self._settle_files()

    def _settle_files(self):
        """Removes the files a custom Disk wrote for entries that are gone (after the
        transaction that removed them, if one is open)."""
        names = self._store.take_displaced()
        local = self._local
        if getattr(local, 'depth', 0):
            local.pending = getattr(local, 'pending', []) + names
            return
        names = getattr(local, 'pending', []) + names
        local.pending = []
        for name in names:
            self._disk.remove(name)

    @cl.contextmanager
    def transact(self, retry=False):
        """Context manager: every operation inside, on this thread, commits together
        or not at all. Other writers wait; readers elsewhere are not blocked.
        Transactions nest.

        >>> cache = Cache()
        >>> with cache.transact():
        ...     total = cache.incr('total', 123.4)
        ...     count = cache.incr('count')
        >>> round(total / count, 1)
        123.4
        >>> cache.close()
        """
        with self._transact(retry=retry):
            yield

    # --- single keys ---

    def _disk_key(self, key):
        db_key, raw = self._disk.put(key)
        return self._store.disk_key(db_key, raw)

    def set(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` under ``key``; returns True.

        >>> cache = Cache()
        >>> cache.set('key', 'value', expire=5, tag='demo')
        True
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            return self._store.set(key, value, time.time(), expire, read, tag, retry)
        return self._disk_set(key, value, expire, read, tag, retry, False)

    def _disk_set(self, key, value, expire, read, tag, retry, only_if_absent):
        now = time.time()
        disk = self._disk
        db_key, raw = disk.put(key)
        size, mode, filename, db_value = disk.store(value, read, key=key)
        try:
            stored = self._store.disk_set(
                db_key, raw, mode, filename, db_value, now, expire, tag, retry, only_if_absent
            )
        except BaseException:
            if filename is not None:
                disk.remove(filename)
            raise
        if not stored and filename is not None:
            disk.remove(filename)
        self._settle_files()
        return stored

    def __setitem__(self, key, value):
        """Stores ``value`` under ``key``, waiting as long as the lock is busy."""
        self.set(key, value, retry=True)

    def touch(self, key, expire=None, retry=False):
        """Sets a new expiry on a live item; returns whether it was there."""
        if type(self._disk) is not Disk:
            key = self._disk_key(key)
        return self._store.touch(key, time.time(), expire, retry)

    def add(self, key, value, expire=None, read=False, tag=None, retry=False):
        """Stores ``value`` only if ``key`` is missing or expired; returns whether
        it stored. Atomic: of many concurrent adds of a key, one succeeds.

        >>> cache = Cache()
        >>> cache.add('k', 1), cache.add('k', 2), cache['k']
        (True, False, 1)
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            return self._store.set(key, value, time.time(), expire, read, tag, retry, True)
        return self._disk_set(key, value, expire, read, tag, retry, True)

    def incr(self, key, delta=1, default=0, retry=False):
        """Adds ``delta`` to the number under ``key`` and returns it; a missing key
        starts from ``default`` (``None``: KeyError). Atomic across processes.

        >>> cache = Cache()
        >>> cache.incr('hits'), cache.incr('hits', 10), cache.decr('hits')
        (1, 11, 10)
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            try:
                return self._store.incr(key, delta, default, time.time(), retry)
            except KeyError:
                raise KeyError(key) from None
        try:
            return self._store.incr(self._disk_key(key), delta, default, time.time(), retry)
        except KeyError:
            raise KeyError(key) from None
        finally:
            self._settle_files()

    def decr(self, key, delta=1, default=0, retry=False):
        """Subtracts ``delta``; see :meth:`incr`."""
        return self.incr(key, -delta, default, retry)

    def get(self, key, default=None, read=False, expire_time=False, tag=False, retry=False):
        """The value of ``key``, or ``default`` if it is missing or expired; with
        ``expire_time``/``tag``, a tuple with them.

        >>> cache = Cache()
        >>> cache.get('nothing') is None
        True
        >>> cache.set('x', b'bytes', tag='t')
        True
        >>> cache.get('x', tag=True)
        (b'bytes', 't')
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            return self._store.get(key, time.time(), default, read, expire_time, tag)
        return self._disk_get(key, default, read, expire_time, tag)

    def _shape(self, value, expire_time, tag, want_expire, want_tag):
        if want_expire and want_tag:
            return value, expire_time, tag
        if want_expire:
            return value, expire_time
        if want_tag:
            return value, tag
        return value

    def _disk_get(self, key, default, read, want_expire, want_tag):
        disk = self._disk
        db_key, raw = disk.put(key)
        found = self._store.disk_get(db_key, raw, time.time())
        if found is None:
            return self._shape(default, None, None, want_expire, want_tag)
        mode, filename, db_value, expire_time, tag = found
        try:
            value = disk.fetch(mode, filename, db_value, read)
        except IOError:
            return self._shape(default, None, None, want_expire, want_tag)
        return self._shape(value, expire_time, tag, want_expire, want_tag)

    def __getitem__(self, key):
        """The value of ``key``; KeyError if it is missing or expired."""
        value = self.get(key, default=ENOVAL, retry=True)
        if value is ENOVAL:
            raise KeyError(key)
        return value

    def read(self, key, retry=False):
        """The value of ``key`` as a file object, if it lives in a value file
        (large bytes, or stored with ``read=True``); else the value."""
        handle = self.get(key, default=ENOVAL, read=True, retry=retry)
        if handle is ENOVAL:
            raise KeyError(key)
        return handle

    def __contains__(self, key):
        """Whether ``key`` is present and not expired."""
        if type(self._disk) is not Disk:
            key = self._disk_key(key)
        return self._store.contains(key, time.time())

    def pop(self, key, default=None, expire_time=False, tag=False, retry=False):
        """Removes ``key`` and returns its value (``default`` if it is missing or
        expired; an expired item stays).

        >>> cache = Cache()
        >>> cache.set('k', 'v')
        True
        >>> cache.pop('k'), cache.pop('k', 'gone')
        ('v', 'gone')
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            return self._store.pop(key, time.time(), default, expire_time, tag, retry)
        disk = self._disk
        db_key, raw = disk.put(key)
        found = self._store.disk_pop(db_key, raw, time.time(), retry)
        if found is None:
            return self._shape(default, None, None, expire_time, tag)
        mode, filename, db_value, db_expire, db_tag = found
        try:
            value = disk.fetch(mode, filename, db_value, False)
        except IOError:
            return self._shape(default, None, None, expire_time, tag)
        finally:
            self._settle_files()
        return self._shape(value, db_expire, db_tag, expire_time, tag)

    def __delitem__(self, key, retry=True):
        """Removes ``key``; KeyError if it is missing or expired."""
        if type(self._disk) is Disk:
            if not self._store.delete(key, time.time(), retry):
                raise KeyError(key)
            return True
        deleted = self._store.delete(self._disk_key(key), time.time(), retry)
        self._settle_files()
        if not deleted:
            raise KeyError(key)
        return True

    def delete(self, key, retry=False):
        """Removes ``key``; returns whether it was there."""
        try:
            return self.__delitem__(key, retry=retry)
        except KeyError:
            return False

    # --- queues ---

    def push(self, value, prefix=None, side='back', expire=None, read=False, tag=None, retry=False):
        """Adds ``value`` at one end of a queue; returns its key (500000000000000
        for the first; with a prefix, ``'prefix-500000000000000'``).

        >>> cache = Cache()
        >>> cache.push('first'), cache.push('second')
        (500000000000000, 500000000000001)
        >>> cache.push('zeroth', side='front')
        499999999999999
        >>> cache.pull()
        (499999999999999, 'zeroth')
        >>> cache.push(1, prefix='jobs')
        'jobs-500000000000000'
        >>> cache.close()
        """
        front = {'back': False, 'front': True}[side]
        if type(self._disk) is Disk:
            return self._store.push(value, time.time(), prefix, front, expire, read, tag, retry)
        disk = self._disk
        size, mode, filename, db_value = disk.store(value, read)
        try:
            return self._store.disk_push(
                mode, filename, db_value, time.time(), prefix, front, expire, tag, retry
            )
        except BaseException:
            if filename is not None:
                disk.remove(filename)
            raise
        finally:
            self._settle_files()

    def _queue(self, take, prefix, default, side, want_expire, want_tag, retry):
        front = {'front': True, 'back': False}[side]
        if type(self._disk) is Disk:
            item = self._store.pull(take, time.time(), prefix, front, want_expire, want_tag, retry)
            if item is None:
                return self._shape(default, None, None, want_expire, want_tag)
            return item
        disk = self._disk
        for _ in range(100):
            found = self._store.disk_pull(take, time.time(), prefix, front, retry)
            if found is None:
                return self._shape(default, None, None, want_expire, want_tag)
            db_key, raw, mode, filename, db_value, db_expire, db_tag = found
            try:
                value = disk.fetch(mode, filename, db_value, False)
            except IOError:
                continue
            finally:
                self._settle_files()
            return self._shape((db_key, value), db_expire, db_tag, want_expire, want_tag)
        raise OSError(errno.ENOENT, 'value file of the queue item keeps vanishing')

    def pull(self, prefix=None, default=(None, None), side='front', expire_time=False, tag=False, retry=False):
        """Takes the item at one end of a queue: ``(key, value)``, or ``default``
        if the queue is empty. Expired items met on the way are removed."""
        return self._queue(True, prefix, default, side, expire_time, tag, retry)

    def peek(self, prefix=None, default=(None, None), side='front', expire_time=False, tag=False, retry=False):
        """The item at one end of a queue, left in place."""
        return self._queue(False, prefix, default, side, expire_time, tag, retry)

    def peekitem(self, last=True, expire_time=False, tag=False, retry=False):
        """The most (``last``) or least recently first-stored item, left in place;
        KeyError if the cache is empty.

        >>> cache = Cache()
        >>> for key in 'abc':
        ...     cache[key] = key.upper()
        >>> cache.peekitem(), cache.peekitem(last=False)
        (('c', 'C'), ('a', 'A'))
        >>> cache.close()
        """
        if type(self._disk) is Disk:
            item = self._store.peekitem(last, time.time(), expire_time, tag, retry)
            if item is None:
                raise KeyError('dictionary is empty')
            return item
        disk = self._disk
        for _ in range(100):
            found = self._store.disk_peekitem(last, time.time(), retry)
            if found is None:
                raise KeyError('dictionary is empty')
            db_key, raw, mode, filename, db_value, db_expire, db_tag = found
            try:
                value = disk.fetch(mode, filename, db_value, False)
            except IOError:
                continue
            key = disk.get(db_key, raw)
            return self._shape((key, value), db_expire, db_tag, expire_time, tag)
        raise OSError(errno.ENOENT, 'value file of the item keeps vanishing')

    # --- memoize ---

    def memoize(self, name=None, typed=False, expire=None, tag=None, ignore=()):
        """Decorator: caches the function's results by its arguments.

        >>> cache = Cache()
        >>> @cache.memoize(typed=True)
        ... def square(x):
        ...     return x * x
        >>> square(3), square(3)
        (9, 9)
        >>> square.__cache_key__(3)
        ('diskcache.core.square', 3, None, <class 'int'>)
        >>> cache.close()
        """
        return _memoize(self, name, typed, expire, tag, ignore)

    # --- whole cache ---

    def check(self, fix=False, retry=False):
        """Verifies the cache (indexes, counters, value files); with ``fix``,
        repairs what it can. Returns the warnings found."""
        with warnings.catch_warnings(record=True) as found:
            warnings.simplefilter('always')
            for kind, message in self._store.check(fix):
                warnings.warn(message, _WARNING_KINDS.get(kind, UserWarning))
        return found

    def create_tag_index(self):
        """Keeps an index of tags, so ``evict`` needs no scan."""
        self.reset('tag_index', 1)

    def drop_tag_index(self):
        """Drops the tag index."""
        self.reset('tag_index', 0)

    def _batches(self, step, retry):
        count = 0
        while True:
            try:
                with self._transact(retry):
                    removed = step()
            except Timeout:
                raise Timeout(count) from None
            self._settle_files()
            if not removed:
                return count
            count += removed

    def evict(self, tag, retry=False):
        """Removes every item tagged ``tag``; returns how many.

        >>> cache = Cache()
        >>> for num in range(6):
        ...     _ = cache.set(num, num, tag='odd' if num % 2 else 'even')
        >>> cache.evict('even'), len(cache)
        (3, 3)
        >>> cache.close()
        """
        count = 0
        after = 0
        while True:
            try:
                with self._transact(retry):
                    removed, after = self._store.evict_some(tag, after, 1000)
            except Timeout:
                raise Timeout(count) from None
            self._settle_files()
            count += removed
            if after is None:
                return count

    def expire(self, now=None, retry=False):
        """Removes the items that expired before ``now`` (default: the time now);
        returns how many."""
        now = now or time.time()
        return self._batches(lambda: self._store.expire_some(now, 1000), retry)

    def cull(self, retry=False):
        """Removes expired items, then items in eviction-policy order until the
        volume is within ``size_limit``; returns how many."""
        now = time.time()
        count = self.expire(now)
        if self.reset('eviction_policy') == 'none':
            return count
        try:
            while self.volume() > self.size_limit:
                with self._transact(retry):
                    removed = self._store.cull_some(100)
                self._settle_files()
                if not removed:
                    break
                count += removed
        except Timeout:
            raise Timeout(count) from None
        return count

    def clear(self, retry=False):
        """Removes every item; returns how many.

        >>> cache = Cache()
        >>> for num in range(100):
        ...     cache[num] = num
        >>> cache.clear()
        100
        >>> cache.close()
        """
        return self._batches(lambda: self._store.clear_some(1000), retry)

    def _keys(self, sorted_order, reverse, upto):
        disk = self._disk
        custom = type(disk) is not Disk
        cursor = None
        while True:
            keys, cursor = self._store.keys(sorted_order, reverse, cursor, upto, 100, custom)
            if custom:
                for db_key, raw in keys:
                    yield disk.get(db_key, raw)
            else:
                yield from keys
            if cursor is None:
                return

    def iterkeys(self, reverse=False):
        """The keys in sorted order: numbers, then strings, byte strings, and other
        keys (expired ones included).

        >>> cache = Cache()
        >>> for key in [4, 'a', 1, b'z', (1, 2)]:
        ...     cache[key] = None
        >>> list(cache.iterkeys())
        [1, 4, 'a', b'z', (1, 2)]
        >>> cache.close()
        """
        return self._keys(True, reverse, 0)

    def __iter__(self):
        """The keys in insertion order (keys stored later are not returned)."""
        return self._keys(False, False, self._store.last_rowid())

    def __reversed__(self):
        """The keys in reverse insertion order."""
        return self._keys(False, True, self._store.last_rowid())

    def stats(self, enable=True, reset=False):
        """``(hits, misses)`` counted so far; zeroes them with ``reset``; turns
        statistics on or off.

        >>> cache = Cache()
        >>> cache.stats(enable=True)
        (0, 0)
        >>> _ = cache.set('k', 1)
        >>> _ = cache.get('k'), cache.get('nope')
        >>> cache.stats(enable=False, reset=True)
        (1, 1)
        >>> cache.close()
        """
        result = self._store.stats(bool(enable), bool(reset))
        self.statistics = enable
        return result

    def volume(self):
        """Estimated bytes on disk: the entries with their index overhead, plus
        value files."""
        return self._store.volume()

    def close(self):
        """Writes batched accesses. The handle stays usable (it reopens nothing:
        closing is cheap, so frameworks can call it after every request)."""
        try:
            local = self._local
            getattr(local, 'depth', 0)
        except AttributeError:
            pass
        store = getattr(self, '_store', None)
        if store is not None:
            store.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __len__(self):
        """Number of items, expired ones included."""
        return self._store.len()

    def __getstate__(self):
        # The secrets travel only if they were given explicitly.
        state = (self.directory, self.timeout, type(self.disk), self._pickle_key)
        if self._pickle_key_fallbacks:
            state += (self._pickle_key_fallbacks,)
        return state

    def __setstate__(self, state):
        directory, timeout, disk = state[:3]
        pickle_key = state[3] if len(state) > 3 else None
        fallbacks = state[4] if len(state) > 4 else ()
        self.__init__(
            directory, timeout, disk, pickle_key=pickle_key, pickle_key_fallbacks=fallbacks
        )

    def reset(self, key, value=ENOVAL, update=True):
        """A setting: its stored value (with no ``value``), or stores ``value``
        for every handle on the cache. Returns it.

        >>> cache = Cache()
        >>> cache.reset('cull_limit', 0)
        0
        >>> cache.reset('cull_limit')
        0
        >>> cache.close()
        """
        if value is ENOVAL:
            text = self._store.setting(key)
            value = None if text is None else json.loads(text)
            if key in ('statistics', 'tag_index') and isinstance(value, bool):
                value = int(value)
            setattr(self, key, value)
            return value
        if update and key not in METADATA:
            self._store.reset(key, json.dumps(_stored(key, value)))
        if key.startswith('disk_'):
            setattr(self._disk, key[5:], value)
            if key == 'disk_pickle_protocol':
                self._codec.protocol = int(value)
        setattr(self, key, value)
        return value


def _memoize(cache, name, typed, expire, tag, ignore):
    if callable(name):
        raise TypeError('name cannot be callable')

    def decorator(func):
        base = (full_name(func),) if name is None else (name,)

        @ft.wraps(func)
        def wrapper(*args, **kwargs):
            key = wrapper.__cache_key__(*args, **kwargs)
            result = cache.get(key, default=ENOVAL, retry=True)
            if result is ENOVAL:
                result = func(*args, **kwargs)
                if expire is None or expire > 0:
                    cache.set(key, result, expire, tag=tag, retry=True)
            return result

        def __cache_key__(*args, **kwargs):
            return args_to_key(base, args, kwargs, typed, ignore)

        wrapper.__cache_key__ = __cache_key__
        return wrapper

    return decorator
