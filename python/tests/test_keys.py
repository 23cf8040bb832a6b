"""Key identity, order and shard placement: python-diskcache's rules."""

import enum
import pickle
import pickletools
import struct
import zlib

import pytest

import diskcache as dc


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


# Pairs of keys python-diskcache treats as the same key (True) or different keys (False).
IDENTITY = [
    (1, 1.0, True),
    (2**62, float(2**62), True),
    (0, -0.0, True),
    (2**53 + 1, float(2**53), False),
    (2**63, float(2**63), False),
    (True, 1, False),
    (False, 0, False),
    (Color.RED, 1, False),
    (Text('a'), 'a', False),
    ('a', b'a', False),
    ((1, 2), [1, 2], False),
    ((1,), (1.0,), False),
    ((1,), (True,), False),
    (None, 'None', False),
    ((1, 'a'), (1, 'a'), True),
    (('x', (2, b'y')), ('x', (2, b'y')), True),
]


@pytest.mark.parametrize('first, second, same', IDENTITY)
def test_key_identity_matches_python_diskcache(cache, first, second, same):
    cache[first] = 'first'
    cache[second] = 'second'
    assert len(cache) == (1 if same else 2)
    assert cache[first] == ('second' if same else 'first')


def test_first_stored_key_type_is_read_back_for_distinct_types(cache):
    for key in [True, None, (1, 2), [1, 2], 2**100, b'b', 'a', 1.5, Color.RED, Text('t')]:
        cache[key] = 0
    keys = list(cache)
    assert keys[:7] == [True, None, (1, 2), [1, 2], 2**100, b'b', 'a']
    assert type(keys[7]) is float
    assert type(keys[8]) is Color and type(keys[9]) is Text


def test_iterkeys_orders_numbers_then_str_then_bytes_then_others(cache):
    keys = [(1, 2), 'b', b'a', 3, -2.5, 'a', None, b'', 10**30]
    for key in keys:
        cache[key] = 1
    ordered = list(cache.iterkeys())
    assert ordered[:6] == [-2.5, 3, 'a', 'b', b'', b'a']
    assert set(map(repr, ordered[6:])) == {repr(None), repr(10**30), repr((1, 2))}
    assert list(cache.iterkeys(reverse=True)) == ordered[::-1]


def test_nan_key_is_equal_to_itself(cache):
    nan = float('nan')
    cache[nan] = 'x'
    assert cache[nan] == 'x'
    cache[nan] = 'y'
    assert len(cache) == 1


def test_tuple_keys_are_deterministic_across_round_trips(cache):
    key = ('user', 42, (1.5, b'z', None, True))
    cache[key] = 'v'
    (back,) = list(cache)
    assert back == key and cache[back] == 'v'
    encoded = cache._store.encode_key(key)
    assert encoded[0] == 0x50  # plain: no pickle involved


def test_object_keys_are_pickled_with_a_mac(cache):
    key = frozenset([1, 2])
    cache[key] = 'v'
    assert cache[key] == 'v'
    encoded = cache._store.encode_key(key)
    assert encoded[0] == 0x60 and len(encoded) > 33


def test_keys_longer_than_a_mebibyte_are_stored_under_a_digest(cache):
    key = 'k' * (3 << 20)
    other = 'k' * (3 << 20) + 'x'
    cache[key] = 'long'
    cache[other] = 'longer'
    assert cache[key] == 'long' and cache[other] == 'longer'
    assert sorted(map(len, cache)) == [3 << 20, (3 << 20) + 1]
    assert cache.pop(key) == 'long'
    del cache[other]
    assert len(cache) == 0


def upstream_hash(key):
    """python-diskcache's Disk.hash, restated from its documented rules."""
    mask = 0xFFFFFFFF
    if type(key) is int and -(2**63) <= key < 2**63:
        return key % mask
    if type(key) is str:
        return zlib.adler32(key.encode('utf-8')) & mask
    if type(key) is bytes:
        return zlib.adler32(key) & mask
    if type(key) is float:
        return zlib.adler32(struct.pack('!d', key)) & mask
    data = pickletools.optimize(pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL))
    return zlib.adler32(data) & mask


@pytest.mark.parametrize('key', [0, -1, 2**32 - 1, 2**40, 'abc', 'é', b'\x00xyz', 1.5, (1, 'a'), None, 2**70])
def test_fanout_places_keys_on_python_diskcaches_shard(fanout, key):
    fanout[key] = 'v'
    shard = upstream_hash(key) % 4
    assert key in fanout._shards[shard]
    assert len(fanout._shards[shard]) == 1
    assert fanout.disk.hash(key) == upstream_hash(key)


def test_integral_float_keys_beyond_64_bits_read_back_as_floats(cache):
    keys = [1e19, -1e19, float(2**63), 2.0**100, -(2.0**126)]
    for key in keys:
        cache[key] = repr(key)
    for key in list(cache):
        assert type(key) is float
        assert cache[key] == repr(key)
    assert sorted(cache) == sorted(keys)
    # Within 64 bits an integral float is the same key as the int, and reads back as it.
    cache[3.0] = 'three'
    assert cache[3] == 'three' and 3 in list(cache)
