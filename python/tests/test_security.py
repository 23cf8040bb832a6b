"""A writer to the cache directory cannot make a reader run code: pickles are signed
and bound to their key, and nothing unsigned or badly signed is ever unpickled."""

import os
import stat
from unittest import mock

import pytest

import diskcache as dc


class Evil:
    """Loading this pickle creates a file: the proof that code ran."""

    def __init__(self, marker, padding=b''):
        self.marker = marker
        self.padding = padding

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def marker(tmp_path):
    path = str(tmp_path / 'code-ran')
    yield path
    assert not os.path.exists(path), 'a planted pickle was loaded'


ATTACKERS = [
    pytest.param(b'the attacker does not know the key', id='wrong-key'),
    pytest.param(False, id='unsigned'),
]


def attacker_cache(directory, how):
    return dc.Cache(directory, pickle_key=how)


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_values_are_never_loaded(tmp_path, marker, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.set('inline', Evil(marker))
    attacker.set('in-file', (Evil(marker), b'x' * 100000))
    attacker.set('popped', Evil(marker))
    attacker.set('tagged', Evil(marker), tag='t')
    assert victim.get('inline') is None
    assert victim.get('in-file', default='miss') == 'miss'
    assert victim.pop('popped') is None
    assert victim.get('tagged', tag=True) == (None, None)
    # A refused value is removed, not retried.
    assert 'inline' not in victim and len(victim) == 0


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_queue_items_and_peekitem(tmp_path, marker, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.push(Evil(marker))
    attacker.push(Evil(marker), prefix='jobs')
    attacker.set('last', Evil(marker))
    assert victim.peek() == (None, None)
    assert victim.pull(prefix='jobs') == (None, None)
    attacker.push(Evil(marker))
    assert victim.pull() == (None, None)
    with pytest.raises(KeyError):
        victim.peekitem()


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_keys_are_skipped_by_iteration(tmp_path, marker, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    attacker = attacker_cache(victim.directory, how)
    attacker.set(Evil(marker), 'value')
    victim.set('good', 1)
    assert list(victim) == ['good']
    assert list(victim.iterkeys()) == ['good']
    assert list(reversed(victim)) == ['good']


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_deque_and_index_items(tmp_path, marker, how):
    deque = dc.Deque(directory=str(tmp_path / 'd'))
    attacker = attacker_cache(deque.directory, how)
    attacker.push(Evil(marker))
    attacker.push(Evil(marker))
    assert list(deque) == []
    with pytest.raises(IndexError):
        deque.popleft()
    index = dc.Index(str(tmp_path / 'i'))
    attacker = attacker_cache(index.directory, how)
    attacker.set('k', Evil(marker))
    assert index.get('k') is None
    assert dict(index) == {}


@pytest.mark.parametrize('how', ATTACKERS)
def test_planted_memoize_results_are_recomputed(tmp_path, marker, how):
    victim = dc.Cache(str(tmp_path / 'c'))
    calls = []

    @victim.memoize()
    def compute(x):
        calls.append(x)
        return x * 2

    attacker = attacker_cache(victim.directory, how)
    attacker.set(compute.__cache_key__(21), Evil(marker))
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
    # A key file others can write to is refused.
    os.chmod(path, 0o666)
    monkeypatch.setattr(dc.core, '_SECRETS', {})
    with pytest.raises(PermissionError):
        dc.Cache(str(tmp_path / 'd'))


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
