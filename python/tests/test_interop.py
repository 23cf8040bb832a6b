"""One cache directory, two languages: Rust reads what Python wrote, and the reverse.
The Rust side is the `interop` example of the crate (built by cargo)."""

import subprocess

import pytest

import diskcache as dc


def test_rust_reads_what_python_wrote(tmp_path, interop):
    cache = dc.Cache(str(tmp_path / 'c'))
    cache['str'] = 'héllo'
    cache[b'bytes'] = b'\x00raw'
    cache[7] = -3
    cache[2.5] = 0.25
    cache['big-text'] = 'x' * 50000
    cache['tuple-value'] = (1, 'a')
    cache[(1, 'k')] = 'tuple key'
    cache.close()
    out = subprocess.run(
        [interop, 'read', cache.directory], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        'float:2.5\tfloat:0.25',
        'int:7\tint:-3',
        'str:big-text\tstr:' + 'x' * 50000,
        'str:str\tstr:héllo',
        'str:tuple-value\tpython:%d bytes' % len(cache._codec.encode_payload((1, 'a'), b'')),
        'bytes:bytes\tbytes:\x00raw',
        'plain:Some(Tuple([Int(1), Str("k")]))\tstr:tuple key',
    ]


def test_python_reads_what_rust_wrote(tmp_path, interop):
    directory = str(tmp_path / 'r')
    subprocess.run([interop, 'write', directory], check=True)
    cache = dc.Cache(directory)
    assert cache['rust-str'] == 'written by Rust'
    assert cache['rust-bytes'] == b'\x00\x01rust'
    assert cache['rust-int'] == -42
    assert cache['rust-float'] == 2.5
    assert cache[7] == 'seven'
    assert cache[b'bkey'] == 1


def test_damaged_python_values_are_errors_or_misses_never_crashes(tmp_path, interop):
    directory = str(tmp_path / 'g')
    subprocess.run([interop, 'garbage', directory], check=True)
    cache = dc.Cache(directory)
    for key in ('huge-list', 'unknown', 'bad-utf8', 'unhashable-key', 'unhashable-item'):
        with pytest.raises(dc.core.OperationalError):
            cache[key]
        assert key in cache, 'a damaged value is reported, not removed'
    # A signed pickle too short to hold its MAC is refused like any bad MAC.
    assert cache.get('short-pickle') is None
    assert 'short-pickle' not in cache
