"""A writer to the cache directory cannot make a reader run code: pickles are signed
and bound to their key, and nothing unsigned or badly signed is ever unpickled."""

import errno
import os
import stat
import subprocess
import threading
from unittest import mock

import pytest

import diskcache as dc


ATTACKERS = [
    pytest.param(b'the attacker does not know the key', id='wrong-key'),
    pytest.param(False, id='unsigned'),
]


def attacker_cache(directory, how):
    return dc.Cache(directory, pickle_key=how)


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_values_are_never_loaded(tmp_path, evil, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.set('inline', evil())
    attacker.set('in-file', (evil(), b'x' * 100000))
    attacker.set('popped', evil())
    attacker.set('tagged', evil(), tag='t')
    assert victim.get('inline') is None
    assert victim.get('in-file', default='miss') == 'miss'
    assert victim.pop('popped') is None
    assert victim.get('tagged', tag=True) == (None, None)
    # A refused value is removed, not retried.
    assert 'inline' not in victim and len(victim) == 0


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_queue_items_and_peekitem(tmp_path, evil, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.push(evil())
    attacker.push(evil(), prefix='jobs')
    attacker.set('last', evil())
    assert victim.peek() == (None, None)
    assert victim.pull(prefix='jobs') == (None, None)
    attacker.push(evil())
    assert victim.pull() == (None, None)
    with pytest.raises(KeyError):
        victim.peekitem()


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_keys_are_skipped_by_iteration(tmp_path, evil, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.set(evil(), 'value')
    victim.set('good', 1)
    assert list(victim) == ['good']
    assert list(victim.iterkeys()) == ['good']
    assert list(reversed(victim)) == ['good']


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_deque_and_index_items(tmp_path, evil, how):
    deque = dc.Deque(directory=str(tmp_path / 'd'))
    attacker = attacker_cache(deque.directory, how)
    attacker.push(evil())
    attacker.push(evil())
    assert list(deque) == []
    with pytest.raises(IndexError):
        deque.popleft()
    index = dc.Index(str(tmp_path / 'i'))
    attacker = attacker_cache(index.directory, how)
    attacker.set('k', evil())
    assert index.get('k') is None
    assert dict(index) == {}


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_memoize_results_are_recomputed(tmp_path, evil, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    calls = []

    @victim.memoize()
    def compute(x):
        calls.append(x)
        return x * 2

    attacker = attacker_cache(victim.directory, how)
    attacker.set(compute.__cache_key__(21), evil())
    assert compute(21) == 42
    assert calls == [21]


def test_signed_pickles_cannot_move_to_another_key(tmp_path):
    """A blob signed for one key fails its MAC under another."""
    cache = dc.Cache(str(tmp_path / 'c'), pickle_key=b'k')
    codec = cache._codec
    payload = codec.encode_payload(dc.Timeout('x'), cache._store.encode_key('a'))
    assert payload[0] == 0x02
    with pytest.raises(ValueError):
        codec.decode_payload_py(payload, cache._store.encode_key('b'))
    back = codec.decode_payload_py(payload, cache._store.encode_key('a'))
    assert isinstance(back, dc.Timeout)


def test_legacy_mode_reads_unsigned_pickles(tmp_path):
    writer = dc.Cache(str(tmp_path / 'c'), pickle_key=False)
    writer['k'] = dc.Timeout('legacy')
    reader = dc.Cache(writer.directory, pickle_key=False)
    assert isinstance(reader['k'], dc.Timeout)


def test_explicit_and_environment_keys(tmp_path, monkeypatch):
    a = dc.Cache(str(tmp_path / 'c'), pickle_key='shared secret')
    a['obj'] = dc.Timeout('x')
    monkeypatch.setenv('DISKCACHE_PICKLE_KEY', 'shared secret')
    b = dc.Cache(a.directory)
    assert isinstance(b['obj'], dc.Timeout)
    monkeypatch.setenv('DISKCACHE_PICKLE_KEY', 'another secret')
    c = dc.Cache(a.directory)
    assert c.get('obj') is None


def test_key_file_is_private_and_outside_the_cache(tmp_path, monkeypatch):
    state = tmp_path / 'state'
    monkeypatch.setenv('XDG_STATE_HOME', str(state))
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    cache = dc.Cache(str(tmp_path / 'c'))
    cache['obj'] = dc.Timeout('x')
    path = state / 'diskcache-logstore' / 'pickle.key'
    assert path.exists() and len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not str(path).startswith(cache.directory)
    # Another process (a fresh secret cache) reads the same file.
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    assert isinstance(dc.Cache(cache.directory)['obj'], dc.Timeout)
    # A key file others can write to is refused (when a pickle needs the secret).
    os.chmod(path, 0o666)
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    other = dc.Cache(str(tmp_path / 'd'))
    with pytest.raises(PermissionError):
        other['obj'] = dc.Timeout('y')


def test_rotated_secrets_still_read_old_pickles(tmp_path):
    old = dc.Cache(str(tmp_path / 'c'), pickle_key=b'old secret')
    old['obj'] = dc.Timeout('signed with the old secret')
    rotated = dc.Cache(old.directory, pickle_key=b'new secret', pickle_key_fallbacks=[b'old secret'])
    assert isinstance(rotated['obj'], dc.Timeout)
    rotated['new'] = dc.Timeout('signed with the new secret')
    assert old.get('new') is None  # new values are signed with the new secret only
    fanout = dc.FanoutCache(str(tmp_path / 'f'), shards=2, pickle_key=b'k', pickle_key_fallbacks=[b'j'])
    back = __import__('pickle').loads(__import__('pickle').dumps(fanout))
    assert back._secrets == {'pickle_key': b'k', 'pickle_key_fallbacks': [b'j']}


def test_django_derives_the_secret_from_secret_key_and_its_fallbacks(tmp_path):
    django = pytest.importorskip('django')
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY='first')
    from diskcache.djangocache import DjangoCache

    with mock.patch.object(settings, 'SECRET_KEY', 'first'):
        first = DjangoCache(str(tmp_path / 'd'), {})
        first.set('page', dc.Timeout('cached response'))
    with mock.patch.object(settings, 'SECRET_KEY', 'second'):
        with mock.patch.object(settings, 'SECRET_KEY_FALLBACKS', ['first'], create=True):
            rotated = DjangoCache(str(tmp_path / 'd'), {})
            assert isinstance(rotated.get('page'), dc.Timeout)
        with mock.patch.object(settings, 'SECRET_KEY_FALLBACKS', [], create=True):
            assert DjangoCache(str(tmp_path / 'd'), {}).get('page') is None
    assert django is not None


def move(interop, source, key, target, new_key):
    """Moves a stored value, bytes unchanged, to another key (of another cache, maybe),
    as anyone who can write to both directories could."""
    subprocess.run([interop, 'move', source.directory, key, target.directory, new_key], check=True)


def test_a_queue_value_moved_to_another_key_is_refused_and_removed(tmp_path, interop, evil):
    victim = dc.Cache(str(tmp_path / 'a'), pickle_key=b'one secret')
    other = dc.Cache(str(tmp_path / 'b'), pickle_key=b'one secret')
    # The bytes survive a move: moved there and back, the value reads again.
    assert victim.push(dc.Timeout('intact')) == 500000000000000
    move(interop, victim, 'int:500000000000000', victim, 'int:7')
    move(interop, victim, 'int:7', victim, 'int:500000000000000')
    assert victim.peek()[1].args == ('intact',)
    victim.clear()
    # Moved to another number of the same queue, or to another cache's queue.
    victim.push(evil())
    victim.push(evil(), prefix='jobs')
    move(interop, victim, 'int:500000000000000', victim, 'int:500000000000001')
    assert victim.pull() == (None, None)
    move(interop, victim, 'str:jobs-500000000000000', other, 'str:jobs-500000000000000')
    move(interop, other, 'str:jobs-500000000000000', other, 'str:work-500000000000003')
    assert other.peek(prefix='work') == (None, None)
    assert len(other) == 0, 'a refused value is removed'
    victim.push(evil())
    move(interop, victim, 'int:500000000000000', other, 'int:500000000000009')
    assert other.get(500000000000009) is None
    assert 500000000000009 not in other


class Plain(dc.Disk):
    """A custom Disk that changes nothing: values go through Disk.store/fetch in
    Python."""


def test_a_custom_disk_pickle_moved_to_another_key_is_refused(tmp_path, interop, evil):
    cache = dc.Cache(str(tmp_path / 'c'), disk=Plain, pickle_key=b'k')
    cache['kept'] = dc.Timeout('stays readable')
    cache['inline'] = evil()
    cache['in-file'] = [evil(), b'x' * 100000]
    move(interop, cache, 'str:inline', cache, 'str:elsewhere')
    move(interop, cache, 'str:in-file', cache, 'str:elsewhere-too')
    assert cache.get('elsewhere') is None
    assert cache.get('elsewhere-too', default='miss') == 'miss'
    assert 'elsewhere' not in cache and 'elsewhere-too' not in cache
    assert cache['kept'].args == ('stays readable',)
    # Pushed values are sealed against the key the push takes.
    cache.push(evil())
    move(interop, cache, 'int:500000000000000', cache, 'int:500000000000001')
    assert cache.peek() == (None, None)


@pytest.mark.parametrize('writer', [Plain, dc.Disk], ids=['custom-writer', 'default-writer'])
@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_pickles_under_a_custom_disk_are_misses(tmp_path, evil, how, writer):
    victim = dc.Cache(str(tmp_path / 'c'), disk=Plain)
    attacker = dc.Cache(victim.directory, disk=writer, pickle_key=how)
    for key in ('get', 'pop', 'big'):
        attacker.set(key, evil() if key != 'big' else [evil(), b'x' * 100000])
    attacker.set(dc.Timeout('a pickled key'), 'value')
    attacker.push(evil())
    attacker.push(evil(), prefix='q')
    assert victim.get('get') is None and 'get' not in victim
    assert victim.get('big', default='miss') == 'miss'
    assert victim.pop('pop', default='miss') == 'miss'
    assert victim.peek(prefix='q') == (None, None)
    assert victim.pull() == (None, None)
    assert list(victim) == [] and list(victim.iterkeys()) == []
    attacker.set('last', evil())
    # The item under the pickled key is a str: it is returned, its key is not loaded.
    assert victim.peekitem() == (None, 'value')
    assert len(victim) == 1


@pytest.mark.parametrize(
    'reader, writer',
    [(dc.Disk, dc.Disk), (Plain, Plain), (Plain, dc.Disk)],
    ids=['default-disk', 'custom-disk', 'custom-disk-reading-default'],
)
def test_a_refused_item_that_cannot_be_removed_is_an_error_not_a_loop(tmp_path, reader, writer):
    directory = str(tmp_path / 'c')
    victim = dc.Cache(directory, timeout=0.05, disk=reader)
    attacker = dc.Cache(directory, pickle_key=b'not the secret', disk=writer)
    attacker.push(dc.Timeout('queued'))
    holder = dc.Cache(directory)
    entered, release = threading.Event(), threading.Event()

    def hold_the_writer_lock():
        with holder.transact():
            entered.set()
            release.wait(30)

    results = {}

    def read(name, call):
        try:
            results[name] = call()
        except Exception as error:  # noqa: BLE001 - the test looks at what was raised
            results[name] = error

    thread = threading.Thread(target=hold_the_writer_lock)
    thread.start()
    entered.wait(5)
    try:
        for name, call in [('peek', victim.peek), ('peekitem', victim.peekitem)]:
            reader = threading.Thread(target=read, args=(name, call), daemon=True)
            reader.start()
            reader.join(10)
            assert not reader.is_alive(), '%s keeps looking at the refused item' % name
            assert isinstance(results[name], dc.Timeout), results[name]
    finally:
        release.set()
        thread.join()
    assert victim.peek() == (None, None) and len(victim) == 0


def key_folder(state):
    return state / 'diskcache-logstore'


def fresh_key_file(tmp_path, monkeypatch):
    state = tmp_path / 'state'
    monkeypatch.setenv('XDG_STATE_HOME', str(state))
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    dc.Cache(str(tmp_path / 'first'))['obj'] = dc.Timeout('makes the key')
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    return key_folder(state) / 'pickle.key'


def pickles(tmp_path, name='pickles'):
    """Stores a pickled object in a new cache (which needs the secret)."""
    cache = dc.Cache(str(tmp_path / name))
    cache['obj'] = dc.Timeout('x')
    return cache


@pytest.mark.skipif(os.name == 'nt', reason='POSIX owners and modes')
def test_a_key_file_others_can_read_is_refused(tmp_path, monkeypatch):
    path = fresh_key_file(tmp_path, monkeypatch)
    os.chmod(path, 0o640)
    with pytest.raises(PermissionError, match='chmod 600'):
        pickles(tmp_path)
    os.chmod(path, 0o600)
    assert pickles(tmp_path)['obj'].args == ('x',)


@pytest.mark.skipif(os.name == 'nt', reason='POSIX owners and modes')
def test_a_key_folder_others_can_enter_is_refused(tmp_path, monkeypatch):
    path = fresh_key_file(tmp_path, monkeypatch)
    os.chmod(path.parent, 0o755)
    with pytest.raises(PermissionError, match='chmod 700'):
        pickles(tmp_path)


@pytest.mark.skipif(os.name == 'nt', reason='POSIX symlinks')
def test_symlinked_key_files_and_folders_are_refused(tmp_path, monkeypatch):
    path = fresh_key_file(tmp_path, monkeypatch)
    elsewhere = tmp_path / 'elsewhere.key'
    elsewhere.write_bytes(path.read_bytes())
    os.chmod(elsewhere, 0o600)
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(PermissionError):
        pickles(tmp_path, 'a')
    real_folder = tmp_path / 'real-folder'
    path.parent.rename(real_folder)
    key_folder(tmp_path / 'state').symlink_to(real_folder)
    with pytest.raises(PermissionError):
        pickles(tmp_path, 'b')


@pytest.mark.skipif(
    os.name == 'nt' or os.getuid() != 0, reason='giving a file to another user needs root'
)
def test_a_key_file_of_another_user_is_refused(tmp_path, monkeypatch):
    path = fresh_key_file(tmp_path, monkeypatch)
    os.chown(path, 4321, 4321)
    with pytest.raises(PermissionError):
        pickles(tmp_path, 'a')
    os.chown(path, 0, 0)
    os.chown(path.parent, 4321, 4321)
    with pytest.raises(PermissionError):
        pickles(tmp_path, 'b')


def test_the_key_file_is_renamed_into_place_without_hard_links(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_STATE_HOME', str(tmp_path / 'state'))
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    monkeypatch.setattr(os, 'link', mock.Mock(side_effect=OSError(errno.EPERM, 'no hard links')))
    cache = pickles(tmp_path)
    folder = key_folder(tmp_path / 'state')
    assert os.listdir(folder) == ['pickle.key']
    assert len((folder / 'pickle.key').read_bytes()) == 32
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    assert dc.Cache(cache.directory)['obj'].args == ('x',)


def test_without_a_writable_home_only_pickling_fails(tmp_path, monkeypatch):
    blocker = tmp_path / 'a-file-not-a-folder'
    blocker.write_text('')
    monkeypatch.setenv('HOME', str(blocker / 'home'))
    monkeypatch.setenv('XDG_STATE_HOME', str(blocker / 'state'))
    monkeypatch.delenv('DISKCACHE_PICKLE_KEY', raising=False)
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    cache = dc.Cache(str(tmp_path / 'c'))
    cache['text'] = 'no secret needed'
    cache[('tuple', 'key')] = {'plain': [1, 2.5, None, b'x']}
    cache.push('queued')
    assert cache['text'] == 'no secret needed'
    assert cache[('tuple', 'key')] == {'plain': [1, 2.5, None, b'x']}
    assert sorted(map(str, cache)) == sorted(map(str, ['text', ('tuple', 'key'), 500000000000000]))
    deque = dc.Deque(['a', 'b'], directory=str(tmp_path / 'd'))
    assert list(deque) == ['a', 'b']
    fanout = dc.FanoutCache(str(tmp_path / 'f'), shards=2)
    fanout['k'] = 1
    with pytest.raises(OSError, match='pickle key file.*DISKCACHE_PICKLE_KEY'):
        cache['obj'] = dc.Timeout('needs the secret')
    assert 'obj' not in cache
    with pytest.raises(OSError, match='pickle key file'):
        cache.push(dc.Timeout('needs the secret'))
    assert len(cache) == 3


def test_after_a_rotation_pickled_keys_are_found_by_iteration_not_by_lookup(tmp_path):
    old = dc.Cache(str(tmp_path / 'c'), pickle_key=b'old secret')
    key = frozenset({'a pickled key'})
    old[key] = 'value'
    rotated = dc.Cache(old.directory, pickle_key=b'new secret', pickle_key_fallbacks=[b'old secret'])
    assert list(rotated) == [key]
    assert rotated.get(key) is None and key not in rotated
    rotated[key] = 'stored again'
    assert len(rotated) == 2 and rotated[key] == 'stored again'
