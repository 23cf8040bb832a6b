"""Persistent collections: Deque (a double-ended queue) and Index (an ordered
mapping), each kept in a cache directory and shared by every process using it.

>>> import diskcache
>>> queue = diskcache.Deque()
>>> queue.append('a')
>>> queue.appendleft('z')
>>> list(queue)
['z', 'a']
>>> index = diskcache.Index()
>>> index['k'] = 'v'
>>> index.get('k')
'v'
"""

import operator as op
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import (
    ItemsView,
    KeysView,
    MutableMapping,
    Sequence,
    ValuesView,
)
from contextlib import contextmanager

from .core import ENOVAL, Cache


def _make_compare(seq_op, doc):
    """A rich comparison of a Deque with any sequence, as Python compares lists."""

    def compare(self, that):
        if not isinstance(that, Sequence):
            return NotImplemented
        len_self, len_that = len(self), len(that)
        if len_self != len_that:
            if seq_op is op.eq:
                return False
            if seq_op is op.ne:
                return True
        for alpha, beta in zip(self, that):
            if alpha != beta:
                return seq_op(alpha, beta)
        return seq_op(len_self, len_that)

    compare.__name__ = '__{0}__'.format(seq_op.__name__)
    compare.__doc__ = 'Return True if and only if deque is {0} `that`.'.format(doc)
    return compare


class Deque(Sequence):
    """Persistent sequence with double-ended queue semantics, usable across
    processes as a queue.

    >>> deque = Deque()
    >>> deque += range(5)
    >>> deque.pop(), deque.popleft()
    (4, 0)
    >>> deque.rotate(1)
    >>> list(deque)
    [3, 1, 2]
    >>> deque[-1], len(deque)
    (2, 3)
    """

    def __init__(self, iterable=(), directory=None, maxlen=None):
        self._cache = Cache(directory, eviction_policy='none')
        self._maxlen = float('inf') if maxlen is None else maxlen
        self._extend(iterable)

    @classmethod
    def fromcache(cls, cache, iterable=(), maxlen=None):
        """A Deque over an existing cache (for a custom Disk, say).

        >>> cache = Cache()
        >>> deque = Deque.fromcache(cache, [5, 6, 7])
        >>> deque.cache is cache, list(deque)
        (True, [5, 6, 7])
        """
        self = cls.__new__(cls)
        self._cache = cache
        self._maxlen = float('inf') if maxlen is None else maxlen
        self._extend(iterable)
        return self

    @property
    def cache(self):
        """Cache used by deque."""
        return self._cache

    @property
    def directory(self):
        """Directory path where deque is stored."""
        return self._cache.directory

    @property
    def maxlen(self):
        """Maximum length of the deque (``inf`` when unbounded); setting it trims
        items from the left.

        >>> deque = Deque('abcde')
        >>> deque.maxlen = 3
        >>> list(deque)
        ['c', 'd', 'e']
        """
        return self._maxlen

    @maxlen.setter
    def maxlen(self, value):
        self._maxlen = value
        with self._cache.transact(retry=True):
            while len(self._cache) > self._maxlen:
                self._popleft()

    def _index(self, index, func):
        size = len(self)
        if index >= 0:
            if index >= size:
                raise IndexError('deque index out of range')
            keys = self._cache.iterkeys()
            skip = index
        else:
            if -index > size:
                raise IndexError('deque index out of range')
            keys = self._cache.iterkeys(reverse=True)
            skip = -index - 1
        for key in keys:
            if skip:
                skip -= 1
                continue
            try:
                return func(key)
            except KeyError:
                continue  # Removed meanwhile: the next one takes its place.
        raise IndexError('deque index out of range')

    def __getitem__(self, index):
        """``deque[index]``: O(n) from the nearer end.

        >>> deque = Deque('abc')
        >>> deque[0], deque[-1]
        ('a', 'c')
        """
        return self._index(index, self._cache.__getitem__)

    def __setitem__(self, index, value):
        """``deque[index] = value``.

        >>> deque = Deque('abc')
        >>> deque[1] = 'B'
        >>> list(deque)
        ['a', 'B', 'c']
        """

        def _set_value(key):
            self._cache[key] = value

        self._index(index, _set_value)

    def __delitem__(self, index):
        """``del deque[index]``.

        >>> deque = Deque('abc')
        >>> del deque[1]
        >>> list(deque)
        ['a', 'c']
        """
        self._index(index, self._cache.__delitem__)

    def __repr__(self):
        """``Deque(directory='...')``."""
        name = type(self).__name__
        return '{0}(directory={1!r})'.format(name, self.directory)

    __eq__ = _make_compare(op.eq, 'equal to')
    __ne__ = _make_compare(op.ne, 'not equal to')
    __lt__ = _make_compare(op.lt, 'less than')
    __gt__ = _make_compare(op.gt, 'greater than')
    __le__ = _make_compare(op.le, 'less than or equal to')
    __ge__ = _make_compare(op.ge, 'greater than or equal to')

    def __iadd__(self, iterable):
        """``deque += iterable``.

        >>> deque = Deque()
        >>> deque += 'ab'
        >>> list(deque)
        ['a', 'b']
        """
        self._extend(iterable)
        return self

    def __iter__(self):
        """The items from the left; items removed meanwhile are skipped."""
        for key in self._cache.iterkeys():
            try:
                yield self._cache[key]
            except KeyError:
                pass

    def __len__(self):
        """Number of items."""
        return len(self._cache)

    def __reversed__(self):
        """The items from the right.

        >>> list(reversed(Deque('abc')))
        ['c', 'b', 'a']
        """
        for key in self._cache.iterkeys(reverse=True):
            try:
                yield self._cache[key]
            except KeyError:
                pass

    def __getstate__(self):
        # The Cache pickles to its directory and settings, with its secret if that was
        # given explicitly (a worker then reads the pickled items too).
        return self._cache, self._maxlen

    def __setstate__(self, state):
        cache, maxlen = state
        if not isinstance(cache, Cache):  # a directory
            cache = Cache(cache, eviction_policy='none')
        self._cache = cache
        self._maxlen = maxlen

    def append(self, value):
        """Adds ``value`` at the right (trimming the left past ``maxlen``).

        >>> deque = Deque(maxlen=2)
        >>> for letter in 'abc':
        ...     deque.append(letter)
        >>> list(deque)
        ['b', 'c']
        """
        with self._cache.transact(retry=True):
            self._cache.push(value, retry=True)
            if len(self._cache) > self._maxlen:
                self._popleft()

    _append = append

    def appendleft(self, value):
        """Adds ``value`` at the left (trimming the right past ``maxlen``).

        >>> deque = Deque()
        >>> deque.appendleft(1)
        >>> deque.appendleft(0)
        >>> list(deque)
        [0, 1]
        """
        with self._cache.transact(retry=True):
            self._cache.push(value, side='front', retry=True)
            if len(self._cache) > self._maxlen:
                self._pop()

    _appendleft = appendleft

    def clear(self):
        """Removes every item.

        >>> deque = Deque('abc')
        >>> deque.clear()
        >>> len(deque)
        0
        """
        self._cache.clear(retry=True)

    _clear = clear

    def copy(self):
        """Another Deque on the same directory (the items are shared, not copied).

        >>> deque = Deque('ab')
        >>> other = deque.copy()
        >>> other.append('c')
        >>> list(deque)
        ['a', 'b', 'c']
        """
        return type(self)(directory=self.directory, maxlen=self.maxlen)

    def count(self, value):
        """How many items equal ``value``.

        >>> Deque('abca').count('a')
        2
        """
        return sum(1 for item in self if value == item)

    def extend(self, iterable):
        """Appends every item of ``iterable``.

        >>> deque = Deque()
        >>> deque.extend('ab')
        >>> list(deque)
        ['a', 'b']
        """
        for value in iterable:
            self._append(value)

    _extend = extend

    def extendleft(self, iterable):
        """Appends every item of ``iterable`` at the left (so they end up reversed).

        >>> deque = Deque()
        >>> deque.extendleft('abc')
        >>> list(deque)
        ['c', 'b', 'a']
        """
        for value in iterable:
            self._appendleft(value)

    def peek(self):
        """The rightmost item, left in place; IndexError if empty.

        >>> Deque('ab').peek()
        'b'
        """
        default = None, ENOVAL
        _, value = self._cache.peek(default=default, side='back', retry=True)
        if value is ENOVAL:
            raise IndexError('peek from an empty deque')
        return value

    def peekleft(self):
        """The leftmost item, left in place; IndexError if empty.

        >>> Deque('ab').peekleft()
        'a'
        """
        default = None, ENOVAL
        _, value = self._cache.peek(default=default, side='front', retry=True)
        if value is ENOVAL:
            raise IndexError('peek from an empty deque')
        return value

    def pop(self):
        """Removes and returns the rightmost item; IndexError if empty.

        >>> Deque('ab').pop()
        'b'
        """
        default = None, ENOVAL
        _, value = self._cache.pull(default=default, side='back', retry=True)
        if value is ENOVAL:
            raise IndexError('pop from an empty deque')
        return value

    _pop = pop

    def popleft(self):
        """Removes and returns the leftmost item; IndexError if empty.

        >>> Deque('ab').popleft()
        'a'
        """
        default = None, ENOVAL
        _, value = self._cache.pull(default=default, retry=True)
        if value is ENOVAL:
            raise IndexError('pop from an empty deque')
        return value

    _popleft = popleft

    def remove(self, value):
        """Removes the first item equal to ``value``; ValueError if there is none.

        >>> deque = Deque('abca')
        >>> deque.remove('a')
        >>> list(deque)
        ['b', 'c', 'a']
        """
        for key in self._cache.iterkeys():
            try:
                item = self._cache[key]
            except KeyError:
                continue
            if value == item:
                try:
                    del self._cache[key]
                except KeyError:
                    continue
                return
        raise ValueError('deque.remove(value): value not in deque')

    def reverse(self):
        """Reverses the items in place (not atomically).

        >>> deque = Deque('abc')
        >>> deque.reverse()
        >>> list(deque)
        ['c', 'b', 'a']
        """
        temp = Deque(iterable=reversed(self))
        self._clear()
        self._extend(temp)
        directory = temp.directory
        temp._cache.close()
        del temp
        shutil.rmtree(directory, ignore_errors=True)

    def rotate(self, steps=1):
        """Moves ``steps`` items from the right to the left (negative: the other
        way).

        >>> deque = Deque('abcde')
        >>> deque.rotate(2)
        >>> list(deque)
        ['d', 'e', 'a', 'b', 'c']
        """
        if not isinstance(steps, int):
            type_name = type(steps).__name__
            raise TypeError('integer argument expected, got %s' % type_name)
        size = len(self)
        if not size:
            return
        if steps >= 0:
            steps %= size
            for _ in range(steps):
                try:
                    value = self._pop()
                except IndexError:
                    return
                else:
                    self._appendleft(value)
        else:
            steps *= -1
            steps %= size
            for _ in range(steps):
                try:
                    value = self._popleft()
                except IndexError:
                    return
                else:
                    self._append(value)

    __hash__ = None  # type: ignore

    @contextmanager
    def transact(self):
        """Holds the deque's writer lock for a block of operations.

        >>> deque = Deque(range(3))
        >>> with deque.transact():
        ...     total = sum(deque)
        ...     deque.append(total)
        >>> deque[-1]
        3
        """
        with self._cache.transact(retry=True):
            yield


class Index(MutableMapping):
    """Persistent mutable mapping with insertion order iteration.

    >>> index = Index()
    >>> index.update([('a', 1), ('b', 2), ('c', 3)])
    >>> list(index), index['b']
    (['a', 'b', 'c'], 2)
    >>> index.popitem()
    ('c', 3)
    >>> index.setdefault('d', 4)
    4
    """

    def __init__(self, *args, **kwargs):
        if args and isinstance(args[0], (bytes, str)):
            directory = args[0]
            args = args[1:]
        else:
            if args and args[0] is None:
                args = args[1:]
            directory = None
        self._cache = Cache(directory, eviction_policy='none')
        self._update(*args, **kwargs)

    _update = MutableMapping.update

    @classmethod
    def fromcache(cls, cache, *args, **kwargs):
        """An Index over an existing cache.

        >>> cache = Cache()
        >>> index = Index.fromcache(cache, {'a': 1})
        >>> index.cache is cache, dict(index)
        (True, {'a': 1})
        """
        self = cls.__new__(cls)
        self._cache = cache
        self._update(*args, **kwargs)
        return self

    @property
    def cache(self):
        """Cache used by index."""
        return self._cache

    @property
    def directory(self):
        """Directory path where items are stored."""
        return self._cache.directory

    def __getitem__(self, key):
        """``index[key]``; KeyError if missing."""
        return self._cache[key]

    def __setitem__(self, key, value):
        """``index[key] = value``."""
        self._cache[key] = value

    def __delitem__(self, key):
        """``del index[key]``; KeyError if missing."""
        del self._cache[key]

    def setdefault(self, key, default=None):
        """``index[key]``, storing ``default`` first if missing (atomically).

        >>> index = Index()
        >>> index.setdefault('a', 0), index.setdefault('a', 1)
        (0, 0)
        """
        cache = self._cache
        while True:
            try:
                return cache[key]
            except KeyError:
                cache.add(key, default, retry=True)

    def peekitem(self, last=True):
        """The last (or first) item, left in place; KeyError if empty.

        >>> index = Index({'a': 1, 'b': 2})
        >>> index.peekitem(), index.peekitem(last=False)
        (('b', 2), ('a', 1))
        """
        return self._cache.peekitem(last, retry=True)

    def pop(self, key, default=ENOVAL):
        """Removes ``key`` and returns its value; ``default`` if missing, or
        KeyError without one.

        >>> index = Index({'a': 1})
        >>> index.pop('a'), index.pop('a', None)
        (1, None)
        """
        value = self._cache.pop(key, default=default, retry=True)
        if value is ENOVAL:
            raise KeyError(key)
        return value

    def popitem(self, last=True):
        """Removes and returns the last (or first) item; KeyError if empty.

        >>> index = Index({'a': 1, 'b': 2})
        >>> index.popitem(last=False)
        ('a', 1)
        """
        cache = self._cache
        with cache.transact(retry=True):
            key, value = cache.peekitem(last=last)
            del cache[key]
        return key, value

    def push(self, value, prefix=None, side='back'):
        """Pushes ``value`` onto a queue in the index; returns its key.

        >>> index = Index()
        >>> index.push('job'), index.pull()
        (500000000000000, (500000000000000, 'job'))
        """
        return self._cache.push(value, prefix, side, retry=True)

    def pull(self, prefix=None, default=(None, None), side='front'):
        """Takes the item at one end of a queue in the index."""
        return self._cache.pull(prefix, default, side, retry=True)

    def clear(self):
        """Removes every item."""
        self._cache.clear(retry=True)

    def __iter__(self):
        """The keys in insertion order."""
        return iter(self._cache)

    def __reversed__(self):
        """The keys in reverse insertion order.

        >>> list(reversed(Index({'a': 1, 'b': 2})))
        ['b', 'a']
        """
        return reversed(self._cache)

    def __len__(self):
        """Number of items."""
        return len(self._cache)

    def keys(self):
        """A live view of the keys.

        >>> list(Index({'a': 1}).keys())
        ['a']
        """
        return KeysView(self)

    def values(self):
        """A live view of the values.

        >>> list(Index({'a': 1}).values())
        [1]
        """
        return ValuesView(self)

    def items(self):
        """A live view of the items.

        >>> list(Index({'a': 1}).items())
        [('a', 1)]
        """
        return ItemsView(self)

    __hash__ = None  # type: ignore

    def __getstate__(self):
        # As Deque's: the Cache, with its explicit secret if it has one.
        return self._cache

    def __setstate__(self, state):
        self._cache = state if isinstance(state, Cache) else Cache(state, eviction_policy='none')

    def __eq__(self, other):
        """Equal to a mapping with the same items; in the same order too, for an
        Index or an OrderedDict.

        >>> Index({'a': 1, 'b': 2}) == {'b': 2, 'a': 1}
        True
        """
        if len(self) != len(other):
            return False
        if isinstance(other, (Index, OrderedDict)):
            alpha = ((key, self[key]) for key in self)
            beta = ((key, other[key]) for key in other)
            pairs = zip(alpha, beta)
            return not any(a != x or b != y for (a, b), (x, y) in pairs)
        return all(self[key] == other.get(key, ENOVAL) for key in self)

    def __ne__(self, other):
        """Not equal; see ``__eq__``."""
        return not self == other

    def memoize(self, name=None, typed=False, ignore=()):
        """Decorator caching a function's results in the index (no expiry).

        >>> index = Index()
        >>> @index.memoize()
        ... def add(x, y):
        ...     return x + y
        >>> add(1, 2), len(index)
        (3, 1)
        """
        return self._cache.memoize(name, typed, ignore=ignore)

    @contextmanager
    def transact(self):
        """Holds the index's writer lock for a block of operations.

        >>> index = Index({'total': 0})
        >>> with index.transact():
        ...     index['total'] += 1
        >>> index['total']
        1
        """
        with self._cache.transact(retry=True):
            yield

    def __repr__(self):
        """``Index('...')``."""
        name = type(self).__name__
        return '{0}({1!r})'.format(name, self.directory)


del tempfile
