"""Handles, settings, errors, transactions, threads and processes."""

import io
import multiprocessing
import os
import pickle
import sys
import threading
import time
from unittest import mock

import pytest

import diskcache as dc


def test_settings_persist_and_sqlite_settings_are_inert(tmp_path):
    directory = str(tmp_path / 'c')
    cache = dc.Cache(directory, size_limit=12345, sqlite_mmap_size=7, MAX_ENTRIES=30)
    assert cache.size_limit == 12345 and cache.sqlite_mmap_size == 7
    other = dc.Cache(directory)
    assert other.size_limit == 12345
    assert other.sqlite_mmap_size == 7 and other.MAX_ENTRIES == 30
    assert other.reset('MAX_ENTRIES') == 30


def test_handles_pickle_to_directory_and_settings(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), cull_limit=3)
    cache['k'] = 'v'
    other = pickle.loads(pickle.dumps(cache))
    assert other.directory == cache.directory and other['k'] == 'v'
    assert other.cull_limit == 3
    fanout = dc.FanoutCache(str(tmp_path / 'f'), shards=3)
    fanout['k'] = 1
    assert pickle.loads(pickle.dumps(fanout))['k'] == 1
    deque = dc.Deque([1, 2], str(tmp_path / 'd'), maxlen=5)
    back = pickle.loads(pickle.dumps(deque))
    assert list(back) == [1, 2] and back.maxlen == 5
    index = dc.Index(str(tmp_path / 'i'), {'a': 1})
    assert dict(pickle.loads(pickle.dumps(index))) == {'a': 1}


def test_an_explicit_pickle_key_travels_with_the_handle_and_others_do_not(tmp_path):
    explicit = dc.Cache(str(tmp_path / 'a'), pickle_key=b'secret')
    assert b'secret' in pickle.dumps(explicit)
    implicit = dc.Cache(str(tmp_path / 'b'))
    state = pickle.dumps(implicit)
    assert implicit._codec is not None and b'secret' not in state
    assert len(state) < 300


def test_timeout_when_another_thread_holds_the_writer_lock(tmp_path):
    directory = str(tmp_path / 'c')
    holder = dc.Cache(directory)
    waiter = dc.Cache(directory, timeout=0.05)
    entered, release = threading.Event(), threading.Event()

    def hold():
        with holder.transact():
            holder['held'] = 1
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(5)
    try:
        start = time.time()
        with pytest.raises(dc.Timeout):
            waiter.set('x', b'y' * 100000)
        assert time.time() - start < 2
        with pytest.raises(dc.Timeout) as info:
            waiter.clear()
        assert info.value.args == (0,)
        assert waiter.get('held') is None  # readers are not blocked; not committed yet
    finally:
        release.set()
        thread.join()
    assert waiter['held'] == 1
    assert waiter.check() == []  # the timed-out write left no value file behind


def test_the_gil_is_released_while_waiting_for_the_lock(tmp_path):
    directory = str(tmp_path / 'c')
    holder = dc.Cache(directory)
    waiter = dc.Cache(directory, timeout=10)
    entered, release = threading.Event(), threading.Event()
    counter = {'n': 0}

    def hold():
        with holder.transact():
            entered.set()
            release.wait(5)

    def wait_for_lock():
        waiter.set('k', 'v')

    def spin():
        end = time.time() + 0.3
        while time.time() < end:
            counter['n'] += 1

    holding = threading.Thread(target=hold)
    holding.start()
    entered.wait(5)
    blocked = threading.Thread(target=wait_for_lock)
    blocked.start()
    time.sleep(0.05)
    spin()  # runs only if the blocked thread let go of the GIL
    assert blocked.is_alive() and counter['n'] > 1000
    release.set()
    holding.join()
    blocked.join()
    assert waiter['k'] == 'v'


def test_transactions_commit_or_roll_back_together(cache):
    with cache.transact():
        cache['a'] = 1
        with cache.transact():
            cache['b'] = 2
    assert cache['a'] + cache['b'] == 3
    with pytest.raises(RuntimeError):
        with cache.transact():
            cache['a'] = 100
            raise RuntimeError
    assert cache['a'] == 1


def test_clear_and_cull_go_through_transact(cache):
    for n in range(10):
        cache[n] = n
    with mock.patch.object(cache, '_transact', side_effect=dc.Timeout):
        with pytest.raises(dc.Timeout):
            cache.clear()
    assert cache.clear() == 10


def test_threads_incr_without_losing_counts(cache):
    def work():
        for _ in range(200):
            cache.incr('n', retry=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache['n'] == 1600


def _incr_many(directory):
    cache = dc.Cache(directory)
    for _ in range(100):
        cache.incr(b'key', retry=True)


def test_processes_incr_without_losing_counts(tmp_path):
    directory = str(tmp_path / 'c')
    dc.Cache(directory)
    context = multiprocessing.get_context('spawn')
    procs = [context.Process(target=_incr_many, args=(directory,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert dc.Cache(directory)[b'key'] == 400


def test_errors_use_python_diskcache_types(tmp_path, cache):
    with pytest.raises(KeyError):
        cache['missing']
    with pytest.raises(KeyError):
        del cache['missing']
    with pytest.raises(KeyError):
        cache.peekitem()
    with pytest.raises(EnvironmentError):
        with mock.patch('os.makedirs', side_effect=OSError(13, 'denied')):
            dc.Cache(str(tmp_path / 'nope' / 'deeper'))
    with pytest.raises(KeyError):
        cache.push(1, side='middle')
    assert issubclass(dc.core.OperationalError, __import__('sqlite3').OperationalError)


def test_nothing_warns(tmp_path, recwarn):
    cache = dc.Cache(str(tmp_path / 'c'), sqlite_journal_mode='delete', unknown=1)
    cache['k'] = 1
    cache.check()
    assert len(recwarn) == 0


def test_expiry_follows_time_time(cache):
    now = time.time()
    with mock.patch('time.time', return_value=now):
        cache.set('k', 1, expire=10)
    with mock.patch('time.time', return_value=now + 5):
        assert cache['k'] == 1
    with mock.patch('time.time', return_value=now + 11):
        assert cache.get('k') is None
        assert cache.expire() == 1


def test_fanout_swallows_timeouts(fanout):
    shards = mock.Mock()
    shard = mock.Mock()
    shards.__getitem__ = mock.Mock(return_value=shard)
    shard.set.side_effect = dc.Timeout
    shard.get.side_effect = dc.Timeout
    with mock.patch.object(fanout, '_shards', shards):
        assert fanout.set('k', 1) is False
        assert fanout.get('k', default='d') == 'd'


def test_the_stub_names_every_native_method():
    import ast

    import diskcache._core as native

    path = os.path.join(os.path.dirname(dc.__file__), '_core.pyi')
    with open(path) as reader:
        tree = ast.parse(reader.read())
    stubbed = {
        node.name: {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
        | {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    for name in ('Store', 'Codec', 'StoredKey'):
        actual = {attr for attr in dir(getattr(native, name)) if not attr.startswith('_')}
        assert actual <= stubbed[name], (name, sorted(actual - stubbed[name]))


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_a_handle_made_before_fork_works_in_the_child(cache):
    cache['parent'] = 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if cache['parent'] == 1:
                cache['child'] = 2
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert cache['child'] == 2


def test_deques_and_indexes_carry_an_explicit_pickle_key(tmp_path):
    cache = dc.Cache(str(tmp_path / 'd'), pickle_key=b'explicit', eviction_policy='none')
    deque = dc.Deque.fromcache(cache, [dc.Timeout('a'), dc.Timeout('b')], maxlen=5)
    back = pickle.loads(pickle.dumps(deque))
    assert [item.args for item in back] == [('a',), ('b',)] and back.maxlen == 5
    assert len(deque) == 2, 'nothing was refused and removed'
    index = dc.Index.fromcache(dc.Cache(str(tmp_path / 'i'), pickle_key=b'explicit'))
    index['k'] = dc.Timeout('v')
    assert pickle.loads(pickle.dumps(index))['k'].args == ('v',)
    assert len(index) == 1
    fanout = dc.FanoutCache(str(tmp_path / 'f'), shards=2, pickle_key=b'explicit')
    jobs = fanout.deque('jobs')
    jobs.append(dc.Timeout('job'))
    assert pickle.loads(pickle.dumps(jobs)).peekleft().args == ('job',)
    # Without an explicit key, no secret travels.
    plain = dc.Deque([dc.Timeout('x')], str(tmp_path / 'p'))
    assert pickle.loads(pickle.dumps(plain))[0].args == ('x',)
    assert b'explicit' not in pickle.dumps(plain)


def test_fanout_sub_caches_are_kept_by_name_when_secrets_are_given(tmp_path):
    fanout = dc.FanoutCache(
        str(tmp_path / 'f'), shards=2, pickle_key=b'k', pickle_key_fallbacks=[b'old']
    )
    users = fanout.cache('users')
    assert fanout.cache('users') is users
    assert list(fanout._caches) == ['users']
    users['obj'] = dc.Timeout('signed with k')
    assert dc.Cache(users.directory, pickle_key=b'k')['obj'].args == ('signed with k',)


class HashNames(dc.Disk):
    """A custom Disk naming its files by the key's hash."""

    def filename(self, key=dc.UNKNOWN, value=dc.UNKNOWN):
        name = 'h' + str(abs(hash(key)))
        return name, os.path.join(self._directory, name)


class PausingFetch(HashNames):
    """Pauses in ``fetch`` (after its item was popped, before the popping thread
    settles its files) while ``pause`` is set."""

    pause = None
    fetching = threading.Event()

    def fetch(self, mode, filename, value, read):
        if self.pause is not None and filename is not None:
            PausingFetch.fetching.set()
            self.pause.wait(10)
        return super().fetch(mode, filename, value, read)


def file_of(cache, key):
    return cache.disk.filename(key)[1]


@pytest.mark.parametrize('other_thread', ['settles', 'rolls back'])
def test_the_files_a_thread_displaced_are_its_own_to_remove(tmp_path, other_thread):
    cache = dc.Cache(str(tmp_path / 'c'), disk=PausingFetch)
    cache[b'popped'] = 'x' * 100000
    PausingFetch.pause = threading.Event()
    PausingFetch.fetching.clear()
    result = []
    popper = threading.Thread(target=lambda: result.append(cache.pop(b'popped')))
    popper.start()
    try:
        assert PausingFetch.fetching.wait(10)
        # Meanwhile another thread writes, and settles or rolls back its own files.
        if other_thread == 'settles':
            cache[b'other'] = 'small'
        else:
            with pytest.raises(RuntimeError):
                with cache.transact():
                    cache[b'other'] = 'small'
                    raise RuntimeError
    finally:
        PausingFetch.pause.set()
        popper.join()
        PausingFetch.pause = None
    assert result == ['x' * 100000], 'the popped value was lost'
    assert not os.path.exists(file_of(cache, b'popped')), 'the popped file was left behind'


def test_cull_waits_for_the_writer_lock_with_retry(tmp_path):
    directory = str(tmp_path / 'c')
    cache = dc.Cache(directory, timeout=0.01)
    for num in range(10):
        cache.set(num, num, expire=0.001)
    time.sleep(0.01)
    holder = dc.Cache(directory)
    entered, release = threading.Event(), threading.Event()

    def hold_until_released():
        with holder.transact():
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold_until_released)
    thread.start()
    entered.wait(5)
    try:
        with pytest.raises(dc.Timeout):
            cache.cull()
        threading.Timer(0.2, release.set).start()
        assert cache.cull(retry=True) == 10
    finally:
        release.set()
        thread.join()


def test_iterating_long_keys_counts_no_hits(cache):
    cache.stats(enable=True)
    cache['k' * (2 << 20)] = 1
    assert [len(key) for key in cache] == [2 << 20]
    assert [len(key) for key in reversed(cache)] == [2 << 20]
    assert cache.stats() == (0, 0)


def test_read_true_lets_other_threads_run_between_chunks(cache):
    """With a switch interval this long, another thread runs only when the storing
    thread lets go of the GIL on its own: between the chunks it writes."""
    progress = [0]
    stop = threading.Event()
    seen = []

    def count():
        while not stop.is_set():
            progress[0] += 1
            time.sleep(0)

    class Chunks(io.RawIOBase):
        def __init__(self, count):
            self.left = count

        def read(self, size=-1):
            seen.append(progress[0])
            if not self.left:
                return b''
            self.left -= 1
            return b'c' * (4 << 20)

    counter = threading.Thread(target=count)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        counter.start()
        time.sleep(0.05)
        cache.set('blob', Chunks(16), read=True)
    finally:
        stop.set()
        sys.setswitchinterval(old)
        counter.join()
    assert len(seen) == 17 and seen[-1] > seen[0], seen
    with cache.read('blob') as reader:
        assert len(reader.read()) == 16 * (4 << 20)
