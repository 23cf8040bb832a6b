"""Custom Disk subclasses and JSONDisk: called from Python for every key and value."""

import errno
import hashlib
import os
from unittest import mock

import pytest

import diskcache as dc


class RecordingDisk(dc.Disk):
    calls = []

    def put(self, key):
        self.calls.append('put')
        return super().put(key)

    def store(self, value, read, key=dc.UNKNOWN):
        self.calls.append('store')
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        self.calls.append('fetch')
        return super().fetch(mode, filename, value, read)


class FlatNames(dc.Disk):
    def filename(self, key=dc.UNKNOWN, value=dc.UNKNOWN):
        name = hashlib.sha256(key).hexdigest()[:32]
        return name, os.path.join(self._directory, name)


def test_subclass_hooks_are_called(tmp_path):
    RecordingDisk.calls = []
    cache = dc.Cache(str(tmp_path / 'c'), disk=RecordingDisk)
    cache['k'] = {'a': 1}
    assert cache['k'] == {'a': 1}
    assert {'put', 'store', 'fetch'} <= set(RecordingDisk.calls)


def test_json_disk_round_trips_and_iterates(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), disk=dc.JSONDisk, disk_compress_level=6)
    values = [None, True, 3, 1.25, 'text', [1, 'two'], {'a': [None] * 1000}]
    for value in values:
        cache[json_key(value)] = value
    for value in values:
        assert cache[json_key(value)] == value
    assert sorted(map(str, cache)) == sorted(json_key(v) for v in values)
    assert cache.disk.compress_level == 6
    reopened = dc.Cache(cache.directory, disk=dc.JSONDisk)
    assert reopened.disk.compress_level == 6


def json_key(value):
    return 'key:%r' % (value,)


def test_custom_file_names_are_honoured_and_removed(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), disk=FlatNames)
    cache[b'big'] = 'x' * 100000
    name = hashlib.sha256(b'big').hexdigest()[:32]
    path = os.path.join(cache.directory, name)
    with open(path) as reader:
        assert reader.read() == 'x' * 100000
    assert cache[b'big'] == 'x' * 100000
    del cache[b'big']
    assert not os.path.exists(path)


def test_disk_file_names_outside_the_cache_are_refused(tmp_path):
    class Escaping(dc.Disk):
        def filename(self, key=dc.UNKNOWN, value=dc.UNKNOWN):
            return '../escape.val', str(tmp_path / 'escape.val')

    cache = dc.Cache(str(tmp_path / 'c'), disk=Escaping)
    with pytest.raises(ValueError):
        cache['k'] = b'x' * 100000
    assert 'k' not in cache
    assert not (tmp_path / 'escape.val').exists()


def test_a_disk_whose_fetch_fails_gives_misses(cache):
    cache[0] = 0
    disk = mock.Mock()
    disk.put.side_effect = [(0, True)]
    disk.fetch.side_effect = IOError(errno.ENOENT, 'gone')
    with mock.patch.object(cache, '_disk', disk):
        assert cache.get(0) is None


def test_disk_must_be_a_disk_subclass():
    with pytest.raises(ValueError):
        dc.Cache(disk=dc.Disk('x'))
    with pytest.raises(ValueError):
        dc.Cache(disk=dict)


def test_files_of_removed_entries_are_removed_by_every_kind_of_removal(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), disk=FlatNames)

    def path(key):
        return os.path.join(cache.directory, hashlib.sha256(key).hexdigest()[:32])

    keys = [b'a', b'b', b'c', b'd', b'e']
    for key in keys:
        cache.set(key, 'x' * 50000, tag='t' if key in (b'a', b'b') else None)
    assert all(os.path.exists(path(key)) for key in keys)
    assert cache.evict('t') == 2
    assert not os.path.exists(path(b'a')) and not os.path.exists(path(b'b'))
    assert cache.pop(b'c') == 'x' * 50000
    assert not os.path.exists(path(b'c'))
    with pytest.raises(RuntimeError):
        with cache.transact():
            del cache[b'd']
            raise RuntimeError
    assert os.path.exists(path(b'd')) and cache[b'd'] == 'x' * 50000
    assert cache.clear() == 2
    assert not any(os.path.exists(path(key)) for key in keys)


def test_incr_goes_through_the_disk(tmp_path):
    cache = dc.Cache(str(tmp_path / 'j'), disk=dc.JSONDisk)
    assert cache.incr('new') == 1
    assert cache['new'] == 1
    assert cache.incr('float', 0.5, default=1) == 1.5
    assert cache['float'] == 1.5
    with pytest.raises(KeyError):
        cache.incr('missing', default=None)
    recording = dc.Cache(str(tmp_path / 'r'), disk=RecordingDisk)
    recording['n'] = 5
    assert recording.incr('n', 2) == 7
    assert recording.decr('n') == 6 and recording['n'] == 6
    recording.set('expiring', 1, expire=60, tag='t')
    assert recording.incr('expiring') == 2
    assert recording.get('expiring', tag=True) == (2, 't')
    recording['text'] = 'not a number'
    with pytest.raises(TypeError):
        recording.incr('text')
    assert recording['text'] == 'not a number'


@pytest.mark.skipif(os.name == 'nt', reason='POSIX symlinks')
def test_disk_files_are_never_read_or_written_through_symlinks(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), disk=FlatNames)
    secret = tmp_path / 'outside.txt'
    secret.write_text('not the cache\'s to read')
    cache[b'linked'] = 'x' * 100000
    path = os.path.join(cache.directory, hashlib.sha256(b'linked').hexdigest()[:32])
    os.remove(path)
    os.symlink(secret, path)
    assert cache.get(b'linked', default='miss') == 'miss'
    del cache[b'linked']
    assert secret.read_text() == 'not the cache\'s to read'


class Nested(dc.Disk):
    def filename(self, key=dc.UNKNOWN, value=dc.UNKNOWN):
        name = 'sub/' + hashlib.sha256(key).hexdigest()[:32]
        return name, os.path.join(self._directory, name)


@pytest.mark.skipif(os.name == 'nt', reason='POSIX symlinks')
def test_disk_files_in_symlinked_folders_are_refused(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), disk=Nested)
    cache[b'a'] = 'x' * 100000
    outside = tmp_path / 'outside'
    os.rename(os.path.join(cache.directory, 'sub'), outside)
    os.symlink(outside, os.path.join(cache.directory, 'sub'))
    assert cache.get(b'a', default='miss') == 'miss'
    with pytest.raises(ValueError):
        cache[b'b'] = 'y' * 100000
    assert os.listdir(outside) == [hashlib.sha256(b'a').hexdigest()[:32]]
    del cache[b'a']
    assert os.listdir(outside) == [hashlib.sha256(b'a').hexdigest()[:32]]
