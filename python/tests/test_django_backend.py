"""DjangoCache against Django's BaseCache contract, python-diskcache's extras, the
configurations of python-diskcache's documentation, the async API, shared handles and
SECRET_KEY rotation."""

import asyncio
import os
import subprocess
import sys
import threading
import time
import warnings

import pytest

django = pytest.importorskip('django')

from django.core.cache import CacheHandler, CacheKeyWarning  # noqa: E402
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache  # noqa: E402
from django.test import override_settings  # noqa: E402

import diskcache as dc  # noqa: E402
from diskcache import djangocache  # noqa: E402
from diskcache.djangocache import DjangoCache  # noqa: E402


def custom_key_func(key, key_prefix, version):
    return 'custom|%s|%s|%s' % (key_prefix, version, key)


@pytest.fixture
def cache(tmp_path):
    cache = DjangoCache(str(tmp_path / 'django'), {'SHARDS': 4, 'TIMEOUT': 300})
    yield cache
    cache.close()


def keys_on_distinct_shards(cache, count, prefix='k'):
    """``count`` keys, each on a shard of its own."""
    found, shards = [], set()
    for number in range(1000):
        key = '%s%d' % (prefix, number)
        shard = cache._cache._shard(cache.make_key(key))
        if shard not in shards:
            shards.add(shard)
            found.append(key)
            if len(found) == count:
                return found
    raise AssertionError('not enough shards')


# How long the tests below hold a writer lock at most: a wait that should not happen
# shows up as a failed assertion after this, not as a hang.
LIMIT = 30


class LockHolder:
    """Holds a shard's writer lock from another thread (through a handle of its own)
    until released, or for at most ``limit`` seconds."""

    def __init__(self, directory, limit=LIMIT):
        self.held, self.release = threading.Event(), threading.Event()
        self.limit = limit
        self.thread = threading.Thread(target=self._hold, args=(directory,))
        self.thread.start()
        assert self.held.wait(30)

    def _hold(self, directory):
        holder = dc.Cache(directory)
        with holder.transact(retry=True):
            holder.set('holder', 1)
            self.held.set()
            self.release.wait(self.limit)
        holder.close()

    def stop(self):
        self.release.set()
        self.thread.join()


# --- the basic methods -------------------------------------------------------------------


def test_set_get_add_touch_delete_and_their_results(cache):
    assert cache.get('k') is None and cache.get('k', 'dflt') == 'dflt'
    assert cache.set('k', 'v') is True and cache.get('k') == 'v'
    assert cache.set('none', None) and cache.get('none', 'dflt') is None
    assert cache.add('k', 'other') is False and cache.get('k') == 'v'
    assert cache.add('new', 1) is True and cache.get('new') == 1
    assert cache.touch('k', 10) is True and cache.touch('missing', 10) is False
    assert cache.delete('k') is True and cache.delete('k') is False
    assert cache.get('k') is None
    assert cache.has_key('new') and 'new' in cache and 'k' not in cache


def test_values_of_every_kind_round_trip(cache):
    import datetime
    import decimal

    values = {
        'str': 'Iñtërnâtiônàlizætiøn',
        'bytes': b'\x00\xff' * 10,
        'int': 2**70,
        'float': 1.5,
        'list': [1, 'a', None],
        'dict': {'a': (1, 2), 'b': {3}},
        'large': b'x' * (2**16),
        'decimal': decimal.Decimal('1.10'),
        'date': datetime.date(2024, 2, 29),
    }
    assert cache.set_many(values) == []
    assert cache.get_many(values) == values


def test_timeouts_as_django_defines_them(tmp_path):
    cache = DjangoCache(str(tmp_path / 'c'), {'TIMEOUT': 120})
    now = time.time()
    cache.set('default', 1)
    cache.set('forever', 1, timeout=None)
    cache.set('float', 1, timeout=30.5)
    cache.set('long', 1, timeout=60 * 60 * 24 * 365)  # no memcached 30-day rule
    assert cache.get('default', expire_time=True)[1] == pytest.approx(now + 120, abs=5)
    assert cache.get('forever', expire_time=True) == (1, None)
    assert cache.get('float', expire_time=True)[1] == pytest.approx(now + 30.5, abs=5)
    assert cache.get('long', expire_time=True)[1] == pytest.approx(now + 31536000, abs=5)
    # 0 and negative timeouts store nothing that can be read back.
    for timeout in (0, -1, -100):
        assert cache.set('gone', 1, timeout=timeout) is True
        assert cache.get('gone') is None and not cache.has_key('gone')
        assert cache.add('gone-add', 1, timeout=timeout) is True
        assert cache.get('gone-add') is None
    assert cache.set_many({'a': 1, 'b': 2}, timeout=0) == [] and cache.get_many(['a', 'b']) == {}
    # touch: a new timeout for a live key; 0 expires it; None makes it permanent.
    cache.set('t', 1, timeout=1)
    assert cache.touch('t', None) and cache.get('t', expire_time=True) == (1, None)
    assert cache.touch('t', 0) is True and cache.get('t') is None
    cache.set('short', 1, timeout=0.2)
    time.sleep(0.4)
    assert cache.get('short') is None and cache.add('short', 2) and cache.get('short') == 2


def test_the_default_timeout_none_means_never_expire(tmp_path):
    cache = DjangoCache(str(tmp_path / 'c'), {'TIMEOUT': None})
    cache.set('k', 1)
    assert cache.get('k', expire_time=True) == (1, None)
    assert cache.get_backend_timeout() is None


def test_get_backend_timeout_is_relative_seconds(cache):
    assert cache.get_backend_timeout() == 300
    assert cache.get_backend_timeout(DEFAULT_TIMEOUT) == 300
    assert cache.get_backend_timeout(0) == -1
    assert cache.get_backend_timeout(-5) == -5
    assert cache.get_backend_timeout(None) is None
    assert cache.get_backend_timeout(12.5) == 12.5


def test_incr_and_decr_are_atomic_and_raise_valueerror_on_a_missing_key(cache):
    cache.set('n', 41)
    assert cache.incr('n') == 42 and cache.incr('n', 10) == 52 and cache.incr('n', -10) == 42
    assert cache.decr('n') == 41 and cache.decr('n', 10) == 31 and cache.decr('n', -10) == 41
    assert cache.incr('f', 0.5, default=1) == 1.5
    with pytest.raises(ValueError, match="Key ':1:missing' not found"):
        cache.incr('missing')
    with pytest.raises(ValueError):
        cache.decr('missing')
    assert cache.get('missing') is None
    assert cache.incr('counted', default=0) == 1
    cache.set('text', 'abc')
    with pytest.raises(TypeError):
        cache.incr('text')


def _incr_in_process(directory, times):
    cache = DjangoCache(directory, {'SHARDS': 2})
    for _ in range(times):
        cache.incr('shared', default=0)


def test_incr_from_several_processes_loses_nothing(tmp_path):
    import multiprocessing

    directory = str(tmp_path / 'c')
    DjangoCache(directory, {'SHARDS': 2}).set('shared', 0)
    context = multiprocessing.get_context('spawn')
    processes = [
        context.Process(target=_incr_in_process, args=(directory, 200)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert DjangoCache(directory, {'SHARDS': 2}).get('shared') == 800


def _open_and_set(directory, number, queue):
    try:
        cache = DjangoCache(directory, {'SHARDS': 8, 'DATABASE_TIMEOUT': 0.001})
        queue.put(cache.set('process-%d' % number, number))
    except BaseException as error:
        queue.put(repr(error))


def test_processes_opening_one_cache_at_once_all_open(tmp_path):
    # Opening may need a shard's writer lock; with a short DATABASE_TIMEOUT and eight
    # processes starting together, each one still opens (it waits, as python-diskcache's
    # set-up does) instead of failing with Timeout.
    import multiprocessing

    directory = str(tmp_path / 'c')
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    processes = [
        context.Process(target=_open_and_set, args=(directory, number, queue))
        for number in range(8)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
    assert results == [True] * 8
    cache = DjangoCache(directory, {'SHARDS': 8})
    assert sorted(cache.get('process-%d' % n) for n in range(8)) == list(range(8))


def test_get_many_set_many_delete_many(cache):
    assert cache.set_many({'a': 1, 'b': 2, 'c': 3}) == []
    assert cache.get_many(['a', 'c', 'x']) == {'a': 1, 'c': 3}
    assert cache.get_many(iter(['b'])) == {'b': 2}
    assert cache.get_many([]) == {}
    cache.delete_many(['a', 'b', 'x'])
    assert cache.get_many(['a', 'b', 'c']) == {'c': 3}
    cache.set_many({'v': 'two'}, version=2)
    assert cache.get_many(['v']) == {} and cache.get_many(['v'], version=2) == {'v': 'two'}


def test_set_many_returns_the_keys_it_could_not_store(cache):
    blocked, free = keys_on_distinct_shards(cache, 2)
    shard = cache._cache._shard(cache.make_key(blocked))
    holder = LockHolder(shard.directory)
    try:
        assert cache.set_many({blocked: 1, free: 2}, retry=False) == [blocked]
        assert cache.get(free) == 2 and cache.get(blocked) is None
        assert cache.set(blocked, 1, retry=False) is False  # DATABASE_TIMEOUT, then gives up
        assert cache.get(free) == 2  # reads never wait for the writer lock
    finally:
        holder.stop()
    assert cache.set_many({blocked: 1, free: 2}) == []
    assert cache.get_many([blocked, free]) == {blocked: 1, free: 2}


def test_writes_with_retry_wait_for_the_lock(cache):
    (key,) = keys_on_distinct_shards(cache, 1)
    holder = LockHolder(cache._cache._shard(cache.make_key(key)).directory)
    stored = []
    writer = threading.Thread(target=lambda: stored.append(cache.set(key, 'late')))
    writer.start()
    writer.join(0.3)
    assert stored == []  # still waiting
    holder.stop()
    writer.join(30)
    assert stored == [True] and cache.get(key) == 'late'


def test_get_or_set(cache):
    assert cache.get_or_set('p', 42) == 42 and cache.get('p') == 42
    assert cache.get_or_set('p', 7) == 42
    calls = []
    assert cache.get_or_set('q', lambda: calls.append(1) or 'made') == 'made'
    assert cache.get_or_set('q', lambda: calls.append(1) or 'again') == 'made'
    assert calls == [1]
    assert cache.get_or_set('none', None) is None and cache.get('none', 'x') is None
    assert cache.get_or_set('v', 1, version=2) == 1 and cache.get('v') is None


def test_incr_version_and_decr_version_keep_value_expiry_and_tag(cache):
    cache.set('k', 'v', timeout=100, tag='t')
    _, expire_at, tag = cache.get('k', expire_time=True, tag=True)
    assert cache.incr_version('k') == 2
    assert cache.get('k') is None
    value, moved_expire, moved_tag = cache.get('k', version=2, expire_time=True, tag=True)
    assert (value, moved_tag) == ('v', 't') and moved_expire == pytest.approx(expire_at, abs=1)
    assert cache.decr_version('k', version=2) == 1 and cache.get('k') == 'v'
    assert cache.incr_version('k', delta=5) == 6 and cache.get('k', version=6) == 'v'
    cache.set('none', None)
    assert cache.incr_version('none') == 2 and cache.has_key('none', version=2)
    with pytest.raises(ValueError):
        cache.incr_version('missing')
    with pytest.raises(ValueError):
        cache.decr_version('missing')


def test_clear_returns_the_count_and_close_keeps_the_cache_usable(cache):
    cache.set_many({str(n): n for n in range(10)})
    assert cache.clear() == 10 and cache.get('1') is None
    cache.close()
    cache.close(extra='ignored')
    assert cache.set('after', 1) and cache.get('after') == 1


def test_close_never_raises_while_a_shard_is_locked(tmp_path):
    cache = DjangoCache(
        str(tmp_path / 'c'), {'SHARDS': 1, 'OPTIONS': {'eviction_policy': 'least-recently-used'}}
    )
    cache.set('k', 1)
    holder = LockHolder(cache._cache._shards[0].directory)
    try:
        for _ in range(3):
            assert cache.get('k') == 1  # an access to record
        cache.close()  # cannot write the accesses now: they wait for the next time
    finally:
        holder.stop()
    cache.close()


# --- keys ----------------------------------------------------------------------------------


def test_key_prefix_version_and_key_function(tmp_path):
    directory = str(tmp_path / 'c')
    plain = DjangoCache(directory, {})
    prefixed = DjangoCache(directory, {'KEY_PREFIX': 'site'})
    v2 = DjangoCache(directory, {'VERSION': 2})
    custom = DjangoCache(directory, {'KEY_FUNCTION': custom_key_func})
    dotted = DjangoCache(directory, {'KEY_FUNCTION': __name__ + '.custom_key_func'})
    assert plain.make_key('k') == ':1:k' and prefixed.make_key('k') == 'site:1:k'
    assert v2.make_key('k') == ':2:k' and custom.make_key('k') == 'custom||1|k'
    plain.set('k', 'plain')
    prefixed.set('k', 'prefixed')
    v2.set('k', 'v2')
    custom.set('k', 'custom')
    assert [c.get('k') for c in (plain, prefixed, v2, custom, dotted)] == [
        'plain',
        'prefixed',
        'v2',
        'custom',
        'custom',
    ]
    assert plain.get('k', version=2) == 'v2' and v2.get('k', version=1) == 'plain'
    assert plain._cache.get('site:1:k') == 'prefixed'  # the made key is the stored key


OPERATIONS = [
    ('add', lambda c, k: c.add(k, 1)),
    ('get', lambda c, k: c.get(k)),
    ('set', lambda c, k: c.set(k, 1)),
    ('touch', lambda c, k: c.touch(k)),
    ('delete', lambda c, k: c.delete(k)),
    ('has_key', lambda c, k: c.has_key(k)),
    ('incr', lambda c, k: c.incr(k, default=0)),
    ('decr', lambda c, k: c.decr(k, default=0)),
    ('pop', lambda c, k: c.pop(k)),
    ('get_many', lambda c, k: c.get_many([k, 'b'])),
    ('set_many', lambda c, k: c.set_many({k: 1, 'b': 2})),
    ('delete_many', lambda c, k: c.delete_many([k, 'b'])),
    ('get_or_set', lambda c, k: c.get_or_set(k, 1)),
]


@pytest.mark.parametrize('name,operation', OPERATIONS, ids=[name for name, _ in OPERATIONS])
def test_keys_memcached_would_refuse_warn_as_in_djangos_backends(cache, name, operation):
    spaced = 'key with spaces and 清'
    control = 'tab\there'
    long_key = 'a' * 250 + '清'
    for key, message in [
        (spaced, 'Cache key contains characters that will cause errors if used with '
         'memcached: %r' % (':1:' + spaced)),
        (control, 'Cache key contains characters that will cause errors if used with '
         'memcached: %r' % (':1:' + control)),
        (long_key, 'Cache key will cause errors if used with memcached: %r (longer than 250)'
         % (':1:' + long_key)),
    ]:
        with pytest.warns(CacheKeyWarning) as caught:
            operation(cache, key)
        assert str(caught[0].message) == message
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        operation(cache, 'fine-key')
        operation(cache, 'Iñtërnâtiônàlizætiøn')


def test_keys_with_spaces_are_stored_all_the_same(cache):
    with pytest.warns(CacheKeyWarning):
        cache.set('a key', 'value')
    with pytest.warns(CacheKeyWarning):
        assert cache.get('a key') == 'value'


def test_key_functions_making_non_string_keys_are_not_checked(tmp_path):
    cache = DjangoCache(str(tmp_path / 'c'), {'KEY_FUNCTION': lambda key, prefix, version: key})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cache.set(('tuple key', 1), 'v')
        cache.set(b'bytes key', 'b')
        assert cache.get(('tuple key', 1)) == 'v' and cache.get(b'bytes key') == 'b'


def test_memoize_keys_are_not_checked(cache):
    @cache.memoize()
    def join(*parts):
        return ' '.join(parts)

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert join('a b', 'c' * 300) == 'a b ' + 'c' * 300
        assert join('a b', 'c' * 300) == 'a b ' + 'c' * 300


# --- configurations from python-diskcache's documentation -------------------------------------


def reference_configurations(root):
    first = {
        'default': {
            'BACKEND': 'diskcache.djangocache.DjangoCache',
            'LOCATION': os.path.join(root, 'django_cache'),
            'SHARDS': 8,
            'DATABASE_TIMEOUT': 0.010,
            'OPTIONS': {
                'size_limit': 2**32,
                'eviction_policy': 'least-recently-used',
                'statistics': 1,
                'tag_index': 1,
            },
        },
        'session': {
            'BACKEND': 'diskcache.djangocache.DjangoCache',
            'LOCATION': os.path.join(root, 'django_sessions'),
            'SHARDS': 4,
            'OPTIONS': {'size_limit': 2**28, 'eviction_policy': 'least-recently-stored'},
        },
    }
    second = {
        'default': {
            'BACKEND': 'diskcache.djangocache.DjangoCache',
            'LOCATION': os.path.join(root, 'default'),
            'SHARDS': 16,
            'OPTIONS': {
                'size_limit': 2**30,
                'eviction_policy': 'least-recently-used',
                'statistics': 1,
            },
        },
        'sessions': {
            'BACKEND': 'diskcache.djangocache.DjangoCache',
            'LOCATION': os.path.join(root, 'sessions'),
            'SHARDS': 4,
            'OPTIONS': {'size_limit': 2**28, 'eviction_policy': 'least-recently-stored'},
        },
        'database': {
            'BACKEND': 'diskcache.djangocache.DjangoCache',
            'LOCATION': os.path.join(root, 'database'),
            'SHARDS': 32,
            'OPTIONS': {
                'size_limit': 2**32,
                'eviction_policy': 'least-frequently-used',
                'statistics': 1,
                'tag_index': 1,
            },
        },
    }
    tutorial = {
        'default': {
            'BACKEND': 'diskcache.DjangoCache',
            'LOCATION': os.path.join(root, 'tutorial'),
            'TIMEOUT': 300,
            'SHARDS': 8,
            'DATABASE_TIMEOUT': 0.010,
            'OPTIONS': {'size_limit': 2**30},
        },
        'unknown-options': {
            'BACKEND': 'diskcache.DjangoCache',
            'LOCATION': os.path.join(root, 'unknown'),
            'KEY_PREFIX': 'p',
            'VERSION': 7,
            'OPTIONS': {'MAX_ENTRIES': 30, 'CULL_FREQUENCY': 0, 'cull_limit': 0},
        },
    }
    return [first, second, tutorial]


def test_every_documented_configuration_works_unchanged(tmp_path):
    for configuration in reference_configurations(str(tmp_path)):
        handler = CacheHandler(configuration)
        for alias, params in configuration.items():
            cache = handler[alias]
            assert isinstance(cache, DjangoCache)
            fanout = cache._cache
            options = params.get('OPTIONS', {})
            assert len(fanout._shards) == params.get('SHARDS', 8)
            assert fanout._shards[0].timeout == params.get('DATABASE_TIMEOUT', 0.010)
            assert cache.default_timeout == params.get('TIMEOUT', 300)
            for name, value in options.items():
                if name == 'size_limit':
                    assert fanout.size_limit == value // len(fanout._shards)
                else:
                    assert fanout.reset(name) == value, (alias, name)
            # The documented usage.
            cache.set('user_count', 1250, timeout=300)
            assert cache.get('user_count', default=0) == 1250
            assert cache.add('unique_visitor', True, timeout=86400)
            cache.set('page_views', 1000)
            assert cache.incr('page_views') == 1001 and cache.decr('page_views', 10) == 991
            cache.set('post_1', 'a', tag='posts', timeout=3600)
            cache.set('post_2', 'b', tag='posts', timeout=3600)
            cache.set('user_1', 'c', tag='users', timeout=1800)
            assert cache.evict('posts') == 2 and cache.get('user_1') == 'c'
            cache.set('large_document', b'%PDF' * 50000, read=True)
            with cache.read('large_document') as reader:
                assert reader.read() == b'%PDF' * 50000
            hits, misses = cache.stats()
            assert hits >= 0 and misses >= 0
            assert cache.clear() >= 1
        handler.close_all()


# --- python-diskcache's extras -----------------------------------------------------------------


def test_read_pop_expire_evict_cull_and_tag_indexes(cache):
    cache.set('blob', b'z' * 100000)
    with cache.read('blob') as reader:
        assert reader.read() == b'z' * 100000
    with pytest.raises(KeyError):
        cache.read('missing')
    cache.set('p', 1, timeout=None, tag='t')
    assert cache.pop('p', expire_time=True, tag=True) == (1, None, 't')
    assert cache.pop('p') is None and cache.pop('p', 'dflt') == 'dflt'
    cache.set('soon', 1, timeout=0.1)
    time.sleep(0.3)
    assert cache.expire() == 1
    for number in range(20):
        cache.set(number, number, tag=number % 2)
    assert cache.evict(1) == 10
    cache.create_tag_index()
    assert cache.evict(0) == 10
    cache.drop_tag_index()
    assert cache.cull() == 0


def test_stats(cache):
    assert cache.stats(enable=True, reset=True) == (0, 0)
    cache.set('k', 1)
    cache.get('k')
    cache.get('missing')
    assert cache.stats(enable=False, reset=True) == (1, 1)


def test_memoize_with_name_timeout_version_typed_tag_and_ignore(cache):
    calls = []

    @cache.memoize(name='area', timeout=60, version=3, typed=True, tag='shapes', ignore={'log'})
    def area(width, height, log=None):
        calls.append((width, height))
        return width * height

    assert area(2, 3, log='a') == 6 and area(2, 3, log='b') == 6
    assert area(2.0, 3) == 6.0  # typed: a float argument is another call
    assert len(calls) == 2
    key = area.__cache_key__(2, 3, log='x')
    assert key == ('area', 2, 3, None, int, int)
    with pytest.warns(CacheKeyWarning):  # a tuple's text has spaces
        assert cache.get(key, version=3) == 6 and cache.get(key) is None
        expire_at = cache.get(key, version=3, expire_time=True)[1]
    assert expire_at == pytest.approx(time.time() + 60, abs=5)
    assert cache.evict('shapes') == 2
    assert area(2, 3) == 6 and len(calls) == 3

    @cache.memoize(timeout=0)
    def never_stored(x):
        calls.append(x)
        return x

    never_stored(1), never_stored(1)
    assert calls[-2:] == [1, 1]
    with pytest.raises(TypeError):
        cache.memoize(area)


def test_sub_collections(cache):
    users = cache.cache('users')
    assert users.directory == os.path.join(cache.directory, 'cache', 'users')
    users.set('user:123', {'name': 'Ada'})
    tasks = cache.deque('tasks', maxlen=2)
    tasks.extend([1, 2, 3])
    assert list(tasks) == [2, 3]
    search = cache.index('search')
    search['keyword:python'] = ['doc1', 'doc2']
    cache.set('global_setting', 'value')
    assert cache.clear() == 1
    assert users.get('user:123') == {'name': 'Ada'} and search['keyword:python'] == ['doc1', 'doc2']
    assert cache.cache('users') is users


# --- shared handles --------------------------------------------------------------------------


def test_instances_with_one_configuration_share_their_open_handles(tmp_path):
    directory = str(tmp_path / 'c')
    first = DjangoCache(directory, {'SHARDS': 2})
    second = DjangoCache(directory, {'SHARDS': 2})
    assert first._cache is second._cache
    other_options = DjangoCache(directory, {'SHARDS': 2, 'OPTIONS': {'MAX_ENTRIES': 1}})
    other_timeout = DjangoCache(directory, {'SHARDS': 2, 'DATABASE_TIMEOUT': 1.0})
    assert other_options._cache is not first._cache
    assert other_timeout._cache is not first._cache
    first.set('k', 'v')
    assert other_options.get('k') == 'v'
    # A thread of its own (as Django makes an instance per thread) still shares them.
    seen = []
    thread = threading.Thread(target=lambda: seen.append(DjangoCache(directory, {'SHARDS': 2})))
    thread.start()
    thread.join()
    assert seen[0]._cache is first._cache and seen[0].get('k') == 'v'


def test_a_removed_and_recreated_directory_is_opened_anew(tmp_path):
    import shutil

    directory = str(tmp_path / 'c')
    first = DjangoCache(directory, {'SHARDS': 2})
    first.set('k', 'old')
    shutil.rmtree(directory)
    second = DjangoCache(directory, {'SHARDS': 2})
    assert second._cache is not first._cache
    assert second.get('k') is None
    second.set('k', 'new')
    assert DjangoCache(directory, {'SHARDS': 2}).get('k') == 'new'


def test_handles_kept_open_after_use_are_bounded(tmp_path):
    for number in range(12):
        DjangoCache(str(tmp_path / str(number)), {'SHARDS': 16})
    kept = sum(entry.shards for entry in djangocache._RECENT.values())
    assert kept <= djangocache._KEEP_SHARDS


# --- SECRET_KEY ------------------------------------------------------------------------------


def test_rotating_secret_key_with_fallbacks_keeps_entries_readable(tmp_path):
    import datetime

    directory = str(tmp_path / 'c')
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)  # pickled, so signed
    with override_settings(SECRET_KEY='old-secret', SECRET_KEY_FALLBACKS=[]):
        DjangoCache(directory, {}).set('when', when)
        DjangoCache(directory, {}).set('plain', {'name': 'plain data is not pickled'})
    with override_settings(SECRET_KEY='new-secret', SECRET_KEY_FALLBACKS=['old-secret']):
        rotated = DjangoCache(directory, {})
        assert rotated.get('when') == when
        rotated.set('later', when)
        rotated.set('later-too', when)
    with override_settings(SECRET_KEY='old-secret', SECRET_KEY_FALLBACKS=[]):
        # Signed with the new key only: the old key alone cannot read it (and removes it).
        assert DjangoCache(directory, {}).get('later-too') is None
    with override_settings(SECRET_KEY='new-secret', SECRET_KEY_FALLBACKS=[]):
        dropped = DjangoCache(directory, {})
        assert dropped.get('later') == when
        assert dropped.get('later-too') is None
        assert dropped.get('when') is None  # the old key is gone: a miss, never unpickled
        assert dropped.get('plain') == {'name': 'plain data is not pickled'}
    with override_settings(SECRET_KEY='new-secret', SECRET_KEY_FALLBACKS=['old-secret']):
        assert DjangoCache(directory, {}).get('when') is None  # the refused entry was removed


# --- async ---------------------------------------------------------------------------------


def test_every_async_method(cache):
    async def scenario():
        assert await cache.aset('k', 'v') is True
        assert await cache.aget('k') == 'v' and await cache.aget('x', 'dflt') == 'dflt'
        assert await cache.aadd('k', 'w') is False
        assert await cache.atouch('k', 60) is True
        assert await cache.ahas_key('k') is True
        assert await cache.aset_many({'a': 1, 'b': 2}) == []
        assert await cache.aget_many(['a', 'b', 'c']) == {'a': 1, 'b': 2}
        await cache.adelete_many(['a'])
        assert await cache.aget('a') is None
        assert await cache.aget_or_set('g', lambda: 'made') == 'made'
        assert await cache.aget_or_set('g', 'other') == 'made'
        assert await cache.aincr('b') == 3 and await cache.adecr('b', 2) == 1
        with pytest.raises(ValueError):
            await cache.aincr('missing')
        assert await cache.aincr_version('k') == 2 and await cache.aget('k', version=2) == 'v'
        assert await cache.adecr_version('k', version=2) == 1
        assert await cache.apop('k') == 'v'
        assert await cache.adelete('b') is True
        cache.set('blob', b'r' * 100000)
        reader = await cache.aget('blob', read=True)
        with reader:
            assert reader.read() == b'r' * 100000
        assert await cache.aclear() >= 1
        await cache.aclose()

    asyncio.run(scenario())


def test_aincr_is_atomic(cache):
    async def many():
        return await asyncio.gather(*(cache.aincr('n', default=0) for _ in range(200)))

    results = asyncio.run(many())
    assert sorted(results) == list(range(1, 201))
    assert cache.get('n') == 200


def test_djangos_own_aincr_for_contrast(cache):
    # BaseCache's aincr: aget then aset on Django 5.2 (concurrent calls lose updates); on
    # 6.x, a call of the backend's own incr (ours: atomic) on Django's one shared thread.
    cache.set('n', 0)

    async def many():
        return await asyncio.gather(*(BaseCache.aincr(cache, 'n') for _ in range(50)))

    asyncio.run(many())
    if django.VERSION < (6,):
        assert cache.get('n') < 50
    else:
        assert cache.get('n') == 50


def test_an_await_waiting_for_a_lock_does_not_stall_unrelated_awaits(cache):
    blocked, free, other, added = keys_on_distinct_shards(cache, 4)
    holder = LockHolder(cache._cache._shard(cache.make_key(blocked)).directory)
    cache.set(other, 0)

    async def scenario():
        waiting = asyncio.ensure_future(cache.aset(blocked, 'late'))
        await asyncio.sleep(0.05)
        # While that write waits for its shard's lock, unrelated calls go through.
        assert await cache.aset(free, 'free') is True
        assert await cache.aget(free) == 'free'
        assert await cache.aincr(other) == 1
        assert await cache.aadd(added, 1) is True
        assert await cache.aget(blocked) is None
        still_waiting = not waiting.done()
        holder.stop()
        return still_waiting, await waiting

    try:
        still_waiting, stored = asyncio.run(scenario())
    finally:
        holder.stop()
    assert still_waiting and stored is True
    assert cache.get(blocked) == 'late'


# Holds a cache's writer lock until a line arrives on stdin, or for at most LIMIT seconds.
HOLD_IN_PROCESS = '''
import select, sys
import diskcache
cache = diskcache.Cache(sys.argv[1])
with cache.transact(retry=True):
    cache.set('holder', 1)
    print('held', flush=True)
    select.select([sys.stdin], [], [], float(sys.argv[2]))
'''


def test_a_lock_held_by_another_process_stalls_only_its_own_await(cache):
    blocked, free = keys_on_distinct_shards(cache, 2)
    shard = cache._cache._shard(cache.make_key(blocked))
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_IN_PROCESS, shard.directory, str(LIMIT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == 'held'

        async def scenario():
            waiting = asyncio.ensure_future(cache.aset(blocked, 'late'))
            await asyncio.sleep(0.05)
            assert await cache.aset(free, 'free') and await cache.aget(free) == 'free'
            still_waiting = not waiting.done()
            try:
                holder.stdin.write('\n')
                holder.stdin.flush()
            except BrokenPipeError:
                pass  # it gave up waiting already
            return still_waiting, await waiting

        still_waiting, stored = asyncio.run(scenario())
    finally:
        holder.stdin.close()
        holder.wait(60)
    assert still_waiting and stored is True


def test_async_methods_are_ours_on_this_django_version():
    # Django 5.2 wraps each sync method on one shared thread; 6.x does so for the sync
    # methods a backend overrides. Every async method here is DjangoCache's own.
    names = [name for name in dir(BaseCache) if name.startswith('a') and name[1:] in dir(BaseCache)]
    assert len(names) >= 15
    for name in names:
        assert getattr(DjangoCache, name) is not getattr(BaseCache, name), name


# --- the direct paths to the shards --------------------------------------------------------


def test_single_key_methods_reach_the_shard_fanoutcache_would(tmp_path):
    directory = str(tmp_path / 'c')
    cache = DjangoCache(directory, {'SHARDS': 8})
    fanout = dc.FanoutCache(directory, shards=8, pickle_key=cache._cache._secrets.get('pickle_key'))
    for number in range(50):
        assert cache.add('a%d' % number, number) and cache.set(b'b%d' % number, number)
    for number in range(50):
        assert fanout.get(':1:a%d' % number) == number
        assert fanout.get(":1:b'b%d'" % number) == number
        assert cache.has_key('a%d' % number) and cache.delete('a%d' % number)
        assert ':1:a%d' % number not in fanout


def test_a_custom_disk_and_overridden_key_methods_are_honoured(tmp_path):
    class Upper(DjangoCache):
        def make_key(self, key, version=None):
            return super().make_key(key, version).upper()

    cache = Upper(str(tmp_path / 'c'), {'SHARDS': 2, 'OPTIONS': {'disk': dc.JSONDisk}})
    assert not cache._direct
    assert cache.set('k', {'json': [1, 2]}) and cache.get('k') == {'json': [1, 2]}
    assert cache.add('k', 0) is False and cache.has_key('k')
    assert cache._cache.get(':1:K') == {'json': [1, 2]}
    assert cache.delete('k') and cache.get('k') is None

    seen = []

    class Strict(DjangoCache):
        def validate_key(self, key):
            seen.append(key)

    strict = Strict(str(tmp_path / 'd'), {})
    strict.set('k', 1)
    strict.get('k')
    assert seen == [':1:k', ':1:k']
