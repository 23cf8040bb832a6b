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

import contextlib as cl
import contextvars
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
import stat
import struct
import sys
import tempfile
import threading
import time
import warnings
import weakref
import zlib

from ._core import Codec, Store, shape


class Constant(tuple):
    """A named constant: a one-item tuple that prints as its name.

    >>> SENTINEL = Constant('SENTINEL')
    >>> SENTINEL
    SENTINEL
    >>> SENTINEL == Constant('SENTINEL')
    True
    """

    __slots__ = ()

    def __new__(cls, name):
        return super().__new__(cls, [name])

    def __repr__(self):
        return str(self[0])

    def __reduce__(self):
        return type(self), (self[0],)


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


class RefusedPickle(ValueError):
    """A pickle was not unpickled: its MAC does not verify under the pickle secret
    (it was forged, damaged, signed with another secret, or moved from another key).

    Reads treat such a value as missing and remove it.
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
    positional = [arg for position, arg in enumerate(args) if position not in ignore]
    named = sorted(item for item in kwargs.items() if item[0] not in ignore)
    parts = list(base) + positional + [None]
    for pair in named:
        parts.extend(pair)
    if typed:
        parts.extend(type(arg) for arg in positional)
        parts.extend(type(value) for _, value in named)
    return tuple(parts)


def _wrap_fd(fd, path):
    """A read-only binary file object over an open descriptor, named by its path."""
    raw = io.FileIO(fd, 'rb', closefd=True)
    raw.name = path
    return io.BufferedReader(raw)


def _normalized_directory(directory):
    """A cache directory argument as a path: a new temporary directory for None, else
    the argument as a string with ``~`` and environment variables expanded."""
    if directory is None:
        return tempfile.mkdtemp(prefix='diskcache-')
    return op.expandvars(op.expanduser(str(directory)))


# Files outside the engine's own are opened without following a symlink at the end.
_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)


# --- the pickle secret -----------------------------------------------------------------

_SECRETS = {}
_SECRETS_LOCK = threading.Lock()
_KEY_FILE_HINT = 'set DISKCACHE_PICKLE_KEY or pass pickle_key= to use another secret'


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


def _private(st):
    """Whether a stat result is the current user's and closed to everyone else."""
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def _open_key_folder(folder):
    """A descriptor of the key file's folder, made 0700 if missing; refused unless it is
    a real directory (not a symlink) of the current user that nobody else can use."""
    try:
        os.makedirs(op.dirname(folder), exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(folder, 0o700)  # whatever the umask
    except OSError as error:
        raise OSError(
            error.errno,
            'cannot create the folder of the pickle key file (%s); %s'
            % (error.strerror, _KEY_FILE_HINT),
            folder,
        ) from None
    flags = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | _NOFOLLOW
    try:
        fd = os.open(folder, flags)
    except OSError as error:
        raise PermissionError(
            errno.EPERM,
            'the folder of the pickle key file must be a directory, not a symlink (%s)'
            % error.strerror,
            folder,
        ) from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode) and _private(info):
        return fd
    os.close(fd)
    raise PermissionError(
        errno.EPERM,
        'the folder of the pickle key file must be yours with mode 0700 (chmod 700 it);'
        ' refusing it',
        folder,
    )


def _read_key_file(folder_fd, name, path):
    """The secret in the key file: a regular file of the current user, mode 0600 or
    stricter, opened without following symlinks."""
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=folder_fd)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise PermissionError(
            errno.EPERM, 'cannot use the pickle key file (%s)' % error.strerror, path
        ) from None
    try:
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) and _private(info)):
            raise PermissionError(
                errno.EPERM,
                'the pickle key file must be a regular file of yours that nobody else'
                ' can read or write (chmod 600 it); refusing it',
                path,
            )
        chunks = []
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    secret = b''.join(chunks)
    if len(secret) < 32:
        raise ValueError('pickle key file %r holds fewer than 32 bytes' % path)
    return secret


# Errors of os.link on file systems without hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOSYS, errno.EXDEV, errno.EMLINK} | {
    getattr(errno, name) for name in ('ENOTSUP', 'EOPNOTSUPP') if hasattr(errno, name)
}


def _create_key_file(folder_fd, name):
    """Writes 32 random bytes to a temporary file and puts it in place, unless another
    process put its key there first (then that one is used)."""
    temp = '%s.%d.%s.tmp' % (name, os.getpid(), os.urandom(4).hex())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    fd = os.open(temp, flags, 0o600, dir_fd=folder_fd)
    try:
        data = os.urandom(32)
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            os.link(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except FileExistsError:
            pass
        except (AttributeError, NotImplementedError, OSError) as error:
            if isinstance(error, OSError) and error.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here: rename (which would replace a key file that appeared
            # in the meantime, so look first).
            try:
                os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    finally:
        with cl.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder_fd)


def _load_key_file(path):
    folder, name = op.split(path)
    if os.name == 'nt':
        return _load_key_file_windows(path)
    folder_fd = _open_key_folder(folder)
    try:
        try:
            return _read_key_file(folder_fd, name, path)
        except FileNotFoundError:
            pass
        try:
            _create_key_file(folder_fd, name)
        except OSError as error:
            raise OSError(
                error.errno,
                'cannot create the pickle key file (%s); %s' % (error.strerror, _KEY_FILE_HINT),
                path,
            ) from None
        return _read_key_file(folder_fd, name, path)
    finally:
        os.close(folder_fd)


def _load_key_file_windows(path):
    """Windows has no owners and modes to check here: the file lives in the user's
    local application data."""
    os.makedirs(op.dirname(path), exist_ok=True)
    with cl.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0))
        try:
            os.write(fd, os.urandom(32))
        finally:
            os.close(fd)
    with open(path, 'rb') as reader:
        secret = reader.read()
    if len(secret) < 32:
        raise ValueError('pickle key file %r holds fewer than 32 bytes' % path)
    return secret


def _key_file_secret():
    """The per-user secret, read (or made) once per process."""
    path = _key_file_path()
    with _SECRETS_LOCK:
        secret = _SECRETS.get(path)
        if secret is None:
            secret = _SECRETS[path] = _load_key_file(path)
        return secret


def _default_secret():
    return os.environ.get('DISKCACHE_PICKLE_KEY', '').encode('utf-8') or _key_file_secret()


def _explicit_secret(value):
    """A secret given as ``pickle_key=``: bytes (str is UTF-8 encoded), or None for
    "find the default one"."""
    if value is None or value is True:
        return None
    if isinstance(value, str):
        value = value.encode('utf-8')
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise TypeError('pickle_key must be non-empty bytes or str, None or False')
    return bytes(value)


def _make_codec(pickle_key, fallbacks, protocol):
    """The codec of a handle. ``pickle_key=False``: unsigned pickles (trust the
    directory). A secret given as bytes or str is used as it is; otherwise the secret is
    ``$DISKCACHE_PICKLE_KEY`` or the per-user key file, looked up the first time a
    pickle is signed or verified, so a cache that never pickles needs neither."""
    if pickle_key is False:
        return Codec(None, False, protocol)
    secret = _explicit_secret(pickle_key)
    earlier = [_explicit_secret(key) for key in fallbacks if key is not False]
    if secret is not None and None not in earlier:
        return Codec(secret, True, protocol, earlier)

    def find_secret():
        return (
            secret or _default_secret(),
            [key or _default_secret() for key in earlier],
        )

    return Codec(None, True, protocol, find_secret=find_secret)


# --- Disk --------------------------------------------------------------------------------

# The stored key a custom Disk's `fetch` runs for: what its pickles are bound to.
_FETCHING_FOR = contextvars.ContextVar('diskcache_fetching_for', default=None)


class Disk:
    """Turns keys and values into what a Cache stores, and back; subclass it to
    change how (a Cache given a subclass calls it for every key and value).

    The default ``Disk`` is handled in the native module (its methods below give
    the same results for subclasses that call them). A subclass may override
    ``put``/``get`` for keys, ``store``/``fetch`` for values and
    ``filename``/``remove`` for the files it writes, as in python-diskcache.
    Pickles it makes are signed and bound to the key they are stored under.

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
            self._codec = _make_codec(None, (), self.pickle_protocol)
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
        """The key that ``put`` turned into ``(key, raw)``; RefusedPickle for a
        pickled key whose MAC fails."""
        if raw:
            return bytes(key) if isinstance(key, (memoryview, bytearray)) else key
        return self._get_codec().decode_key(bytes(key))

    def store(self, value, read, key=UNKNOWN):
        """``(size, mode, filename, db_value)`` for ``value``: small values inline,
        large ones in files of their own; objects in the plain encoding or as a
        pickle signed for ``key`` (without a key, as ``push`` calls it, the pickle
        stays inline and the Cache signs it once the key is chosen)."""
        kind = type(value)
        small = self.min_file_size
        if kind is float or (kind is int and -(2**63) <= value <= 2**63 - 1):
            return 0, MODE_RAW, None, value
        if kind is str:
            if len(value) < small:
                return 0, MODE_RAW, None, value
            name, size = self._new_file(key, value, [value.encode('utf-8')])
            return size, MODE_TEXT, name, None
        if kind is bytes:
            if len(value) < small:
                return 0, MODE_RAW, None, value
            name, size = self._new_file(key, value, [value])
            return size, MODE_BINARY, name, None
        if read:
            chunks = iter(ft.partial(value.read, 2**22), b'')
            name, size = self._new_file(key, value, chunks)
            return size, MODE_BINARY, name, None
        binding = None if key is UNKNOWN else self._binding(key)
        payload = self._get_codec().encode_payload(value, binding)
        if binding is None or len(payload) < small:
            return 0, MODE_PICKLE, None, payload
        name, size = self._new_file(key, value, [payload])
        return size, MODE_PICKLE, name, None

    def _binding(self, key):
        """The stored key of ``key``: what a pickle stored under it is bound to."""
        return self._get_codec().encode_disk_key(*self.put(key))

    def fetch(self, mode, filename, value, read):
        """The value ``store`` described by ``(mode, filename, value)``; with
        ``read``, a file-backed binary value comes back as an open file. A pickle
        must be bound to the key the Cache reads it under (RefusedPickle if not)."""
        if mode == MODE_RAW:
            return bytes(value) if isinstance(value, (memoryview, bytearray)) else value
        if mode == MODE_BINARY:
            if read:
                return _wrap_fd(self._open_file(filename), op.join(self._directory, filename))
            return self._read_file(filename)
        if mode == MODE_TEXT:
            return self._read_file(filename).decode('utf-8')
        if mode == MODE_PICKLE:
            payload = self._read_file(filename) if value is None else bytes(value)
            return self._get_codec().decode_payload_py(payload, _FETCHING_FOR.get())
        raise ValueError('unknown mode %r' % (mode,))

    def filename(self, key=UNKNOWN, value=UNKNOWN):
        """A new random file name ``hh/hh/<28 hex>.val``: relative, and full."""
        digits = os.urandom(16).hex()
        name = op.join(digits[:2], digits[2:4], digits[4:] + '.val')
        return name, op.join(self._directory, name)

    def remove(self, file_path):
        """Removes a file ``store`` wrote (relative name), and the folders it leaves
        empty, up to the cache directory. Errors (another process removed it
        first) are ignored."""
        path = self._inside(op.join(self._directory, file_path))
        if path is None:
            return
        with cl.suppress(OSError):
            os.unlink(path)
        root = op.realpath(self._directory)
        folder = op.dirname(path)
        with cl.suppress(OSError):
            while folder != root and folder.startswith(root + os.sep):
                os.rmdir(folder)
                folder = op.dirname(folder)

    # Files are opened without following a symlink, and only in folders that really lie
    # inside the cache directory, so that a writer to the directory cannot make a reader
    # read or write files elsewhere.

    def _inside(self, path):
        """``path`` with its folder resolved, or None if that folder is not the cache
        directory or inside it (a symlinked folder leads out, say)."""
        root = op.realpath(self._directory)
        folder = op.realpath(op.dirname(path))
        if folder != root and not folder.startswith(root + os.sep):
            return None
        return op.join(folder, op.basename(path))

    def _open_file(self, filename):
        path = op.join(self._directory, filename)
        resolved = self._inside(path)
        if resolved is None:
            raise PermissionError(errno.EACCES, 'Disk file lies outside the cache directory', path)
        return os.open(resolved, os.O_RDONLY | _NOFOLLOW)

    def _read_file(self, filename):
        with os.fdopen(self._open_file(filename), 'rb') as reader:
            return reader.read()

    def _new_file(self, key, value, chunks):
        """Writes the chunks to a new file named by ``filename()``; returns its relative
        name and size. The file is made exclusively (never over another); its folder is
        made first, and made again if another process removes it meanwhile."""
        name, path = self.filename(key, value)
        if self._inside(path) is None:  # checked before making folders: none outside
            raise ValueError('Disk file %r lies outside the cache directory' % path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, 'O_BINARY', 0)
        attempts = 10
        while True:
            attempts -= 1
            with cl.suppress(OSError):
                os.makedirs(op.dirname(path))
            resolved = self._inside(path)
            if resolved is None:
                raise ValueError('Disk file %r lies outside the cache directory' % path)
            try:
                fd = os.open(resolved, flags, 0o666)
                break
            except FileNotFoundError:
                if not attempts:
                    raise
        size = 0
        with os.fdopen(fd, 'wb') as writer:
            for chunk in chunks:
                writer.write(chunk)
                size += len(chunk)
        return name, size


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

    def _pack(self, obj):
        return zlib.compress(json.dumps(obj).encode('utf-8'), self.compress_level)

    @staticmethod
    def _unpack(data):
        return json.loads(zlib.decompress(data).decode('utf-8'))

    def put(self, key):
        return super().put(self._pack(key))

    def get(self, key, raw):
        return self._unpack(super().get(key, raw))

    def store(self, value, read, key=UNKNOWN):
        return super().store(value if read else self._pack(value), read, key=key)

    def fetch(self, mode, filename, value, read):
        data = super().fetch(mode, filename, value, read)
        return data if read else self._unpack(data)


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


def _read_through_disk(disk, hit, read):
    """A custom Disk's ``fetch`` of a hit ``(key, mode, filename, db_value, ...)``,
    with the stored key it runs for (its pickles must be bound to it)."""
    token = _FETCHING_FOR.set(hit[0])
    try:
        return disk.fetch(hit[1], hit[2], hit[3], read)
    finally:
        _FETCHING_FOR.reset(token)


# --- Cache -------------------------------------------------------------------------------


class Cache:
    """A persistent key-value store in a directory, shared by threads and processes.

    Besides python-diskcache's settings it takes ``pickle_key=``, the secret that
    signs and verifies pickled values and keys (bytes or str; ``False`` for unsigned
    pickles, in a directory you trust; by default ``$DISKCACHE_PICKLE_KEY`` or the
    per-user key file), and ``pickle_key_fallbacks=``, earlier secrets still accepted
    when reading, never used to sign. A pickled key's MAC is part of its identity:
    after a rotation, iteration still finds keys pickled under a fallback secret, but
    looking one up (``get``, ``in``, ``memoize``) misses, since the key is encoded
    under the current secret.

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
        if not (isinstance(disk, type) and issubclass(disk, Disk)):
            raise ValueError('disk must subclass diskcache.Disk')
        directory = _normalized_directory(directory)
        if not op.isdir(directory):
            try:
                os.makedirs(directory, 0o755, exist_ok=True)
            except OSError as error:
                raise OSError(
                    error.errno,
                    'cannot create the cache directory %r (%s)' % (directory, error.strerror),
                ) from None

        self._directory = directory
        self._timeout = timeout
        self._local = threading.local()
        self._pickle_key = settings.pop('pickle_key', None)
        self._pickle_key_fallbacks = tuple(settings.pop('pickle_key_fallbacks', ()))

        given = {key: value for key, value in settings.items() if key not in METADATA}
        protocol = given.get('disk_pickle_protocol', DEFAULT_SETTINGS['disk_pickle_protocol'])
        self._codec = _make_codec(self._pickle_key, self._pickle_key_fallbacks, int(protocol))
        while True:
            try:
                self._store = Store(directory, timeout, self._codec, keeps_displaced=disk is not Disk)
                break
            except Timeout:
                # Opening may need the writer lock (to create or recover the cache); like
                # python-diskcache's set-up statements, it waits as long as that takes.
                time.sleep(0.001)

        stored = json.loads(self._store.settings())
        current = dict(DEFAULT_SETTINGS)
        current.update((key, value) for key, value in stored.items() if key != 'codec')
        current.update(given)
        self._codec.protocol = int(current['disk_pickle_protocol'])
        changed = {
            key: value
            for key, value in current.items()
            if key not in stored or stored[key] != _stored(key, value)
        }
        if changed:
            with self._transact(retry=True):
                for key, value in changed.items():
                    self._store.reset(key, json.dumps(_stored(key, value)))

        disk_args = {key[5:]: value for key, value in current.items() if key.startswith('disk_')}
        self._disk = disk(directory, **disk_args)
        self._disk._codec = self._codec

        for key, value in current.items():
            setattr(self, key, value)
        for key in METADATA:
            self.reset(key)
        _CACHES.add(self)

    @property
    def directory(self):
        """The cache's directory."""
        return self._directory

    @property
    def timeout(self):
        """How long writes wait for the writer lock, in seconds (python-diskcache's
        SQLite timeout)."""
        return self._timeout

    @property
    def disk(self):
        """The Disk that turns keys and values into stored data."""
        return self._disk

    def _custom(self):
        """The Disk, if it is a subclass (called from Python); None for the default."""
        disk = self._disk
        return None if type(disk) is Disk else disk

    # --- transactions ---

    @cl.contextmanager
    def _transact(self, retry=False):
        local = self._local
        depth = getattr(local, 'depth', 0)
        if not depth:
            try:
                self._store.begin(retry)
            except Timeout:
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
        """Removes the files a custom Disk wrote for entries that this thread's
        operations removed (after the transaction that removed them, if one is open)."""
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
        if self._custom() is None:
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
        if self._custom() is not None:
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
        if self._custom() is None:
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
        disk = self._custom()
        if disk is None:
            try:
                return self._store.incr(key, delta, default, time.time(), retry)
            except KeyError:
                raise KeyError(key) from None
        db_key, raw = disk.put(key)
        with self._transact(retry):
            try:
                return self._store.disk_incr(db_key, raw, delta, time.time(), retry)
            except KeyError:
                if default is None:
                    raise KeyError(key) from None
            # A new item goes through the Disk, as any stored value does.
            value = default + delta
            self._disk_set(key, value, None, False, None, retry, False)
            return value

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
        disk = self._custom()
        if disk is None:
            return self._store.get(key, time.time(), default, read, expire_time, tag)
        db_key, raw = disk.put(key)
        hit = self._store.disk_get(db_key, raw, time.time())
        value = self._fetch_hit(disk, hit, read, 'drop')
        if value is ENOVAL:
            return shape(default, None, None, expire_time, tag)
        return shape(value, hit[4], hit[5], expire_time, tag)

    def _fetch_hit(self, disk, hit, read, refused, retry=False):
        """The value of a custom-Disk hit, or ENOVAL: for a miss, a value whose file is
        gone (IOError, as python-diskcache), or a refused pickle. ``refused`` says what
        becomes of the entry of a refused pickle: ``'gone'`` (the read took it out
        already), ``'drop'`` (removed unless it changed; an error is left for the next
        read) or ``'remove'`` (the same, but an error is raised: a loop reading the same
        end again must make progress)."""
        if hit is None:
            return ENOVAL
        try:
            return _read_through_disk(disk, hit, read)
        except RefusedPickle:
            if refused != 'gone':
                try:
                    self._store.disk_discard(*hit[:4], time.time(), retry)
                except Exception:
                    if refused == 'remove':
                        raise
            return ENOVAL
        except IOError:
            return ENOVAL

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
        if self._custom() is not None:
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
        disk = self._custom()
        if disk is None:
            return self._store.pop(key, time.time(), default, expire_time, tag, retry)
        db_key, raw = disk.put(key)
        hit = self._store.disk_pop(db_key, raw, time.time(), retry)
        try:
            value = self._fetch_hit(disk, hit, False, 'gone')
        finally:
            self._settle_files()
        if value is ENOVAL:
            return shape(default, None, None, expire_time, tag)
        return shape(value, hit[4], hit[5], expire_time, tag)

    def __delitem__(self, key, retry=True):
        """Removes ``key``; KeyError if it is missing or expired."""
        if self._custom() is None:
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
        disk = self._custom()
        if disk is None:
            return self._store.push(value, time.time(), prefix, front, expire, read, tag, retry)
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

    def _first_item(self, read, pulled, default, want_expire, want_tag, retry):
        """The item a custom Disk's ``pull``/``peek``/``peekitem`` returns: ``read()``
        gives the native store's view of one (``pulled``: taken out of the cache).
        Items that cannot be read are skipped: a pulled one is gone already, a peeked
        one whose pickle is refused is removed. ``default`` when there is none; an
        OSError if the items keep vanishing."""
        disk = self._disk
        for _ in range(100):
            hit = read()
            if hit is None:
                return default
            if hit is False:
                continue  # a refused default-Disk pickle, dropped already
            value = self._fetch_hit(
                disk, hit[2:], False, 'gone' if pulled else 'remove', retry=retry
            )
            if pulled:
                self._settle_files()
            if value is not ENOVAL:
                return hit[:2], value, hit[6], hit[7]
        raise OSError(errno.ENOENT, 'the items at the end of the queue keep vanishing')

    def _queue(self, take, prefix, default, side, want_expire, want_tag, retry):
        front = {'front': True, 'back': False}[side]
        if self._custom() is None:
            item = self._store.pull(take, time.time(), prefix, front, want_expire, want_tag, retry)
            return shape(default, None, None, want_expire, want_tag) if item is None else item
        found = self._first_item(
            lambda: self._store.disk_pull(take, time.time(), prefix, front, retry),
            take,
            None,
            want_expire,
            want_tag,
            retry,
        )
        if found is None:
            return shape(default, None, None, want_expire, want_tag)
        (db_key, _), value, expire_time, tag = found
        # Queue keys are raw ints and strings: the Disk's own form.
        return shape((db_key, value), expire_time, tag, want_expire, want_tag)

    def pull(self, prefix=None, default=(None, None), side='front', expire_time=False, tag=False, retry=False):
        """Takes the item at one end of a queue: ``(key, value)``, or ``default`` if
        the queue is empty. Expired items met on the way are removed.

        >>> cache = Cache()
        >>> _ = cache.push('job')
        >>> cache.pull(), cache.pull()
        ((500000000000000, 'job'), (None, None))
        >>> cache.close()
        """
        return self._queue(True, prefix, default, side, expire_time, tag, retry)

    def peek(self, prefix=None, default=(None, None), side='front', expire_time=False, tag=False, retry=False):
        """The item at one end of a queue, left in place.

        >>> cache = Cache()
        >>> _ = cache.push('job', prefix='q')
        >>> cache.peek(prefix='q')
        ('q-500000000000000', 'job')
        >>> len(cache)
        1
        >>> cache.close()
        """
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
        disk = self._custom()
        if disk is None:
            item = self._store.peekitem(last, time.time(), expire_time, tag, retry)
            if item is None:
                raise KeyError('dictionary is empty')
            return item
        found = self._first_item(
            lambda: self._store.disk_peekitem(last, time.time(), retry),
            False,
            None,
            expire_time,
            tag,
            retry,
        )
        if found is None:
            raise KeyError('dictionary is empty')
        (db_key, raw), value, db_expire, db_tag = found
        try:
            key = disk.get(db_key, raw)
        except RefusedPickle:
            key = None  # a pickled key whose MAC fails is never loaded
        return shape((key, value), db_expire, db_tag, expire_time, tag)

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

    def _remove_in_batches(self, batch, retry, removed=0):
        """Runs ``batch()``, one transaction each, until it says it is done; it removes
        some items and returns how many, and whether to go on. Returns the total,
        counting from ``removed``; a timeout raises Timeout with the count so far."""
        more = True
        while more:
            try:
                with self._transact(retry):
                    count, more = batch()
            except Timeout:
                raise Timeout(removed) from None
            self._settle_files()
            removed += count
        return removed

    @staticmethod
    def _until_none_left(remove_some):
        """A batch for ``_remove_in_batches`` that goes on while ``remove_some()``
        removes something."""

        def batch():
            count = remove_some()
            return count, count > 0

        return batch

    def evict(self, tag, retry=False):
        """Removes every item tagged ``tag``; returns how many.

        >>> cache = Cache()
        >>> for num in range(6):
        ...     _ = cache.set(num, num, tag='odd' if num % 2 else 'even')
        >>> cache.evict('even'), len(cache)
        (3, 3)
        >>> cache.close()
        """
        scanned = [0]  # the rowid the next batch starts after

        def batch():
            count, scanned[0] = self._store.evict_some(tag, scanned[0], 1000)
            return count, scanned[0] is not None

        return self._remove_in_batches(batch, retry)

    def expire(self, now=None, retry=False):
        """Removes the items that expired before ``now`` (default: the time now);
        returns how many.

        >>> cache = Cache()
        >>> _ = cache.set('brief', 1, expire=0.001)
        >>> time.sleep(0.01)
        >>> cache.expire(), len(cache)
        (1, 0)
        >>> cache.close()
        """
        now = now or time.time()
        batch = self._until_none_left(lambda: self._store.expire_some(now, 1000))
        return self._remove_in_batches(batch, retry)

    def cull(self, retry=False):
        """Removes expired items, then items in eviction-policy order until the
        volume is within ``size_limit``; returns how many. Both steps wait for the
        writer lock with ``retry``."""
        now = time.time()
        batch = self._until_none_left(lambda: self._store.expire_some(now, 1000))
        removed = self._remove_in_batches(batch, retry)
        if self.reset('eviction_policy') == 'none':
            return removed

        def cull_batch():
            if self.volume() <= self.size_limit:
                return 0, False
            count = self._store.cull_some(100)
            return count, count > 0

        return self._remove_in_batches(cull_batch, retry, removed)

    def clear(self, retry=False):
        """Removes every item; returns how many.

        >>> cache = Cache()
        >>> for num in range(100):
        ...     cache[num] = num
        >>> cache.clear()
        100
        >>> cache.close()
        """
        batch = self._until_none_left(lambda: self._store.clear_some(1000))
        return self._remove_in_batches(batch, retry)

    def _keys(self, sorted_order, reverse, upto):
        disk = self._custom()
        cursor = None
        while True:
            keys, cursor = self._store.keys(
                sorted_order, reverse, cursor, upto, 100, disk is not None
            )
            if disk is None:
                yield from keys
            else:
                for db_key, raw in keys:
                    try:
                        yield disk.get(db_key, raw)
                    except RefusedPickle:
                        pass  # a pickled key whose MAC fails is skipped, never loaded
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
    """The ``memoize`` decorator of any object with ``get`` and ``set`` (Cache,
    FanoutCache): results are looked up by ``__cache_key__`` of the arguments, and
    stored unless ``expire`` is zero or less (then it only looks up)."""
    if callable(name):
        raise TypeError('name cannot be callable')
    keeps_results = expire is None or expire > 0

    def decorate(func):
        prefix = (full_name(func) if name is None else name,)

        def cache_key(*args, **kwargs):
            return args_to_key(prefix, args, kwargs, typed, ignore)

        @ft.wraps(func)
        def memoized(*args, **kwargs):
            key = memoized.__cache_key__(*args, **kwargs)
            found = cache.get(key, default=ENOVAL, retry=True)
            if found is not ENOVAL:
                return found
            result = func(*args, **kwargs)
            if keeps_results:
                cache.set(key, result, expire, tag=tag, retry=True)
            return result

        memoized.__cache_key__ = cache_key
        return memoized

    return decorate
