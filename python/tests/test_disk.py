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
