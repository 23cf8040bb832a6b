"""Values: native kinds, the plain encoding, pickles, files, read=True."""

import datetime
import decimal
import io
import math
import os
import time

import pytest

import diskcache as dc

PLAIN = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**63 - 1,
    2**64,
    -(2**200),
    1.5,
    float('inf'),
    '',
    'text with \r\n and \x00 and é',
    b'\x00\xff',
    (),
    (1, (2, (3,))),
    [1, [2, 'x']],
    {'a': {'b': [1, 2]}, 3: None, (1, 2): b'x'},
    {1, 2, 3},
    frozenset({'a', 'b'}),
]


@pytest.mark.parametrize('value', PLAIN, ids=repr)
def test_plain_values_round_trip_with_their_types(cache, value):
    cache['k'] = value
    got = cache['k']
    assert got == value and type(got) is type(value)


def test_nan_value_reads_back_as_nan(cache):
    cache['k'] = float('nan')
    assert math.isnan(cache['k'])


def test_text_keeps_carriage_returns_inline_and_in_files(cache):
    small = 'a\r\nb'
    large = 'line\r\n' * 10000
    cache['small'] = small
    cache['large'] = large
    assert cache['small'] == small
    assert cache['large'] == large


@pytest.mark.parametrize('value', [
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    decimal.Decimal('1.10'),
    {'when': datetime.date(2020, 1, 1)},
    [dc.Timeout],
])
def test_other_objects_are_pickled(cache, value):
    cache['k'] = value
    assert cache['k'] == value


def test_deep_and_recursive_containers_fall_back_to_pickle(cache):
    deep = []
    node = deep
    for _ in range(200):
        node.append([])
        node = node[0]
    cache['deep'] = deep
    assert cache['deep'] == deep
    loop = [1]
    loop.append(loop)
    cache['loop'] = loop
    back = cache['loop']
    assert back[0] == 1 and back[1] is back


def test_large_values_live_in_value_files(cache):
    for key, value in [('b', b'x' * 100000), ('s', 's' * 100000), ('p', list(range(20000)))]:
        cache[key] = value
        assert cache[key] == value
    files = [name for _, _, names in os.walk(os.path.join(cache.directory, 'values')) for name in names]
    assert len(files) == 3


def test_read_true_streams_a_file_and_returns_a_named_file_object(cache):
    data = os.urandom(5 << 20)
    assert cache.set('blob', io.BytesIO(data), read=True)
    with cache.read('blob') as reader:
        assert reader.name.startswith(cache.directory)
        assert reader.read() == data
    with open(reader.name, 'rb') as again:
        assert again.read() == data
    # Small stored values come back as values, as in python-diskcache.
    cache['small'] = b'abc'
    assert cache.get('small', read=True) == b'abc'


def test_get_tuple_shapes(cache):
    assert cache.get('x', expire_time=True, tag=True) == (None, None, None)
    cache.set('x', 1, expire=100, tag=b'tag')
    value, expire_time, tag = cache.get('x', expire_time=True, tag=True)
    assert value == 1 and tag == b'tag' and expire_time > 0
    assert cache.pop('x', tag=True) == (1, b'tag')


def test_incr_on_floats_and_errors(cache):
    cache['f'] = 1.5
    assert cache.incr('f', 2) == 3.5
    assert cache.incr('i', 2.5) == 2.5
    cache['s'] = 'text'
    with pytest.raises(TypeError):
        cache.incr('s')
    cache['big'] = 2**63 - 1
    with pytest.raises(OverflowError):
        cache.incr('big')
    assert cache['big'] == 2**63 - 1
    with pytest.raises(KeyError):
        cache.incr('missing', default=None)


def test_tags_must_be_native(cache):
    with pytest.raises(TypeError):
        cache.set('k', 1, tag=(1, 2))
    assert 'k' not in cache
    cache.set('k', 1, tag=1.0)
    assert cache.evict(1) == 1


def test_shared_containers_are_pickled_not_written_out(cache):
    shared = [0]
    for _ in range(24):
        shared = [shared, shared]  # 2**24 leaves when written out in full
    start = time.time()
    cache['shared'] = shared
    back = cache['shared']
    assert time.time() - start < 30
    assert back[0] is back[1], 'a pickle keeps shared objects shared'
    node = back
    for _ in range(24):
        node = node[1]
    assert node == [0]
    payload = cache._codec.encode_payload(shared, b'binding')
    assert payload[0] == 0x02 and len(payload) < 10000


def test_codecs_that_sign_need_a_secret():
    with pytest.raises(ValueError):
        dc.core.Codec(None, True, 2)
    with pytest.raises(ValueError):
        dc.core.Codec(b'', True, 2)
    with pytest.raises(ValueError):
        dc.core.Codec(b'k', True, 2, [b''])
    assert not dc.core.Codec(None, False, 2).signed
    with pytest.raises(TypeError):
        dc.Cache(pickle_key=b'')
