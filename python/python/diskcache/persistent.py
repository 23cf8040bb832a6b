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

import itertools
import operator
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

# The two ends of a Deque, as the cache's queue methods name them.
_LEFT, _RIGHT = 'front', 'back'
_OPPOSITE = {_LEFT: _RIGHT, _RIGHT: _LEFT}


def _collection_cache(directory):
    """The Cache a Deque or Index made from a directory uses: nothing is evicted."""
    return Cache(directory, eviction_policy='none')


class Deque(Sequence):
    """A double-ended queue kept on disk: fast at both ends, shared by processes
    (one can append while another pops).

    Its items are the values of a cache queue (integer keys, in order). Indexing
    walks the keys from the nearer end, so ``deque[i]`` costs O(n).

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
        self._cache = _collection_cache(directory)
        self._maxlen = float('inf') if maxlen is None else maxlen
        self._add_all(iterable, _RIGHT)

    @classmethod
    def fromcache(cls, cache, iterable=(), maxlen=None):
        """A Deque over an existing cache (one with a custom Disk, say).

        >>> cache = Cache()
        >>> deque = Deque.fromcache(cache, [5, 6, 7])
        >>> deque.cache is cache, list(deque)
        (True, [5, 6, 7])
        """
        self = cls.__new__(cls)
        self._cache = cache
        self._maxlen = float('inf') if maxlen is None else maxlen
        self._add_all(iterable, _RIGHT)
        return self

    @property
    def cache(self):
        """The Cache holding the items."""
        return self._cache

    @property
    def directory(self):
        """The directory of the Cache holding the items."""
        return self._cache.directory

    @property
    def maxlen(self):
        """The most items the deque keeps (``inf``: no limit). Setting it drops
        items from the left until they fit.

        >>> deque = Deque('abcde')
        >>> deque.maxlen = 3
        >>> list(deque)
        ['c', 'd', 'e']
        >>> Deque().maxlen
        inf
        """
        return self._maxlen

    @maxlen.setter
    def maxlen(self, value):
        self._maxlen = value
        with self._cache.transact(retry=True):
            while len(self._cache) > self._maxlen:
                self._take(_LEFT)

    # --- the ends ---

    def _add(self, value, side):
        """Adds ``value`` at one end, dropping one from the other end if the deque
        grew past ``maxlen``."""
        with self._cache.transact(retry=True):
            self._cache.push(value, side=side, retry=True)
            if len(self._cache) > self._maxlen:
                self._take(_OPPOSITE[side])

    def _add_all(self, iterable, side):
        for value in iterable:
            self._add(value, side)

    def _take(self, side, keep=False):
        """The item at one end, removed unless ``keep``; IndexError if there is none."""
        read = self._cache.peek if keep else self._cache.pull
        _, value = read(default=(None, ENOVAL), side=side, retry=True)
        if value is ENOVAL:
            raise IndexError('%s from an empty deque' % ('peek' if keep else 'pop'))
        return value

    def append(self, value):
        """Adds ``value`` at the right (dropping the leftmost past ``maxlen``).

        >>> deque = Deque(maxlen=2)
        >>> for letter in 'abc':
        ...     deque.append(letter)
        >>> list(deque)
        ['b', 'c']
        """
        self._add(value, _RIGHT)

    def appendleft(self, value):
        """Adds ``value`` at the left (dropping the rightmost past ``maxlen``).

        >>> deque = Deque()
        >>> deque.appendleft(1)
        >>> deque.appendleft(0)
        >>> list(deque)
        [0, 1]
        """
        self._add(value, _LEFT)

    def extend(self, iterable):
        """Appends every item of ``iterable`` at the right.

        >>> deque = Deque()
        >>> deque.extend('ab')
        >>> list(deque)
        ['a', 'b']
        """
        self._add_all(iterable, _RIGHT)

    def extendleft(self, iterable):
        """Appends every item of ``iterable`` at the left (so they end up reversed).

        >>> deque = Deque()
        >>> deque.extendleft('abc')
        >>> list(deque)
        ['c', 'b', 'a']
        """
        self._add_all(iterable, _LEFT)

    def pop(self):
        """Removes and returns the rightmost item; IndexError if the deque is empty.

        >>> Deque('ab').pop()
        'b'
        >>> Deque().pop()
        Traceback (most recent call last):
          ...
        IndexError: pop from an empty deque
        """
        return self._take(_RIGHT)

    def popleft(self):
        """Removes and returns the leftmost item; IndexError if the deque is empty.

        >>> Deque('ab').popleft()
        'a'
        """
        return self._take(_LEFT)

    def peek(self):
        """The rightmost item, left in place; IndexError if the deque is empty.

        >>> Deque('ab').peek()
        'b'
        """
        return self._take(_RIGHT, keep=True)

    def peekleft(self):
        """The leftmost item, left in place; IndexError if the deque is empty.

        >>> Deque('ab').peekleft()
        'a'
        """
        return self._take(_LEFT, keep=True)

    # --- walking the items ---

    def _values(self, reverse=False):
        """The items from one end; an item removed while walking is skipped."""
        cache = self._cache
        for key in cache.iterkeys(reverse=reverse):
            try:
                yield cache[key]
            except KeyError:
                pass

    def _at(self, index, action):
        """``action(key)`` for the key of item ``index``, counted from the nearer end.
        A key removed meanwhile (``action`` raises KeyError) gives way to the next
        one."""
        size = len(self._cache)
        if not -size <= index < size:
            raise IndexError('deque index out of range')
        from_right = index < 0
        skip = -index - 1 if from_right else index
        for key in itertools.islice(self._cache.iterkeys(reverse=from_right), skip, None):
            try:
                return action(key)
            except KeyError:
                continue
        raise IndexError('deque index out of range')

    def __getitem__(self, index):
        """``deque[index]``.

        >>> deque = Deque('abc')
        >>> deque[0], deque[-1]
        ('a', 'c')
        """
        return self._at(index, self._cache.__getitem__)

    def __setitem__(self, index, value):
        """``deque[index] = value``.

        >>> deque = Deque('abc')
        >>> deque[1] = 'B'
        >>> list(deque)
        ['a', 'B', 'c']
        """
        self._at(index, lambda key: self._cache.__setitem__(key, value))

    def __delitem__(self, index):
        """``del deque[index]``.

        >>> deque = Deque('abc')
        >>> del deque[1]
        >>> list(deque)
        ['a', 'c']
        """
        self._at(index, self._cache.__delitem__)

    def __iter__(self):
        """The items from the left; items removed meanwhile are skipped.

        >>> list(Deque('abc'))
        ['a', 'b', 'c']
        """
        return self._values()

    def __reversed__(self):
        """The items from the right.

        >>> list(reversed(Deque('abc')))
        ['c', 'b', 'a']
        """
        return self._values(reverse=True)

    def __len__(self):
        """Number of items.

        >>> len(Deque('abc'))
        3
        """
        return len(self._cache)

    def __repr__(self):
        """``Deque(directory='...')``."""
        return '%s(directory=%r)' % (type(self).__name__, self.directory)

    # --- comparisons: as lists compare, with any sequence ---

    def _compare(self, other, test):
        if not isinstance(other, Sequence):
            return NotImplemented
        if test in (operator.eq, operator.ne) and len(self) != len(other):
            return test is operator.ne
        return test(list(self), list(other))

    def __eq__(self, other):
        """Equal to any sequence with equal items in the same order.

        >>> Deque('ab') == ['a', 'b'], Deque('ab') == 'ab', Deque('ab') == {}
        (True, True, False)
        """
        return self._compare(other, operator.eq)

    def __ne__(self, other):
        """Not equal (see ``__eq__``).

        >>> Deque('ab') != ('a', 'c')
        True
        """
        return self._compare(other, operator.ne)

    def __lt__(self, other):
        """Ordered as lists are: by the first differing item, then by length.

        >>> Deque([1, 2]) < [1, 3], Deque([1, 2]) < [1, 2, 0]
        (True, True)
        """
        return self._compare(other, operator.lt)

    def __le__(self, other):
        """``<=``, as lists compare.

        >>> Deque([1, 2]) <= [1, 2]
        True
        """
        return self._compare(other, operator.le)

    def __gt__(self, other):
        """``>``, as lists compare.

        >>> Deque([2]) > [1, 9]
        True
        """
        return self._compare(other, operator.gt)

    def __ge__(self, other):
        """``>=``, as lists compare.

        >>> Deque([1]) >= [1, 0]
        False
        """
        return self._compare(other, operator.ge)

    __hash__ = None  # type: ignore

    def __iadd__(self, iterable):
        """``deque += iterable``.

        >>> deque = Deque()
        >>> deque += 'ab'
        >>> list(deque)
        ['a', 'b']
        """
        self._add_all(iterable, _RIGHT)
        return self

    def __getstate__(self):
        # The Cache pickles to its directory and settings, with its secret if that was
        # given explicitly (a worker then reads the pickled items too).
        return self._cache, self._maxlen

    def __setstate__(self, state):
        cache, maxlen = state
        self._cache = cache if isinstance(cache, Cache) else _collection_cache(cache)
        self._maxlen = maxlen

    # --- the rest of collections.deque ---

    def clear(self):
        """Removes every item.

        >>> deque = Deque('abc')
        >>> deque.clear()
        >>> len(deque)
        0
        """
        self._cache.clear(retry=True)

    def copy(self):
        """Another Deque over the same items (the storage is shared, not copied).

        >>> deque = Deque('ab')
        >>> other = deque.copy()
        >>> other.append('c')
        >>> list(deque)
        ['a', 'b', 'c']
        """
        return type(self).fromcache(self._cache, maxlen=self._maxlen)

    def count(self, value):
        """How many items equal ``value``.

        >>> Deque('abca').count('a')
        2
        """
        return sum(1 for item in self._values() if value == item)

    def remove(self, value):
        """Removes the first item equal to ``value``; ValueError if there is none.

        >>> deque = Deque('abca')
        >>> deque.remove('a')
        >>> list(deque)
        ['b', 'c', 'a']
        """
        cache = self._cache
        for key in cache.iterkeys():
            try:
                if value == cache[key]:
                    del cache[key]
                    return
            except KeyError:
                continue  # removed meanwhile
        raise ValueError('deque.remove(value): value not in deque')

    def reverse(self):
        """Reverses the items in place, in one transaction (the values are swapped
        pairwise, so at most two are in memory).

        >>> deque = Deque('abcd')
        >>> deque.reverse()
        >>> list(deque)
        ['d', 'c', 'b', 'a']
        """
        cache = self._cache
        with cache.transact(retry=True):
            keys = list(cache.iterkeys())
            for left, right in zip(keys[: len(keys) // 2], reversed(keys)):
                cache[left], cache[right] = cache[right], cache[left]

    def rotate(self, steps=1):
        """Moves ``steps`` items from the right end to the left (negative: from the
        left to the right), one at a time and each move atomically.

        >>> deque = Deque('abcde')
        >>> deque.rotate(2)
        >>> list(deque)
        ['d', 'e', 'a', 'b', 'c']
        >>> deque.rotate(-1)
        >>> list(deque)
        ['e', 'a', 'b', 'c', 'd']
        """
        if not isinstance(steps, int):
            raise TypeError('rotate() takes an integer, not %s' % type(steps).__name__)
        size = len(self)
        if not size:
            return
        rightward = steps % size
        # The same order either way: take the shorter way round.
        if rightward <= size - rightward:
            moves, source = rightward, _RIGHT
        else:
            moves, source = size - rightward, _LEFT
        for _ in range(moves):
            with self._cache.transact(retry=True):
                try:
                    value = self._take(source)
                except IndexError:
                    return  # emptied meanwhile
                self._add(value, _OPPOSITE[source])

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
    """A mapping kept on disk, shared by processes, that iterates in the order keys
    were first stored.

    ``Index(directory, ...)`` uses that directory; any other arguments are items,
    as ``dict()`` takes them.

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
        directory = None
        if args and (args[0] is None or isinstance(args[0], (str, bytes))):
            directory, args = args[0], args[1:]
        self._cache = _collection_cache(directory)
        MutableMapping.update(self, *args, **kwargs)

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
        MutableMapping.update(self, *args, **kwargs)
        return self

    @property
    def cache(self):
        """The Cache holding the items."""
        return self._cache

    @property
    def directory(self):
        """The directory of the Cache holding the items."""
        return self._cache.directory

    def __getitem__(self, key):
        """``index[key]``; KeyError if it is missing.

        >>> Index({'a': 1})['a']
        1
        """
        return self._cache[key]

    def __setitem__(self, key, value):
        """``index[key] = value``.

        >>> index = Index()
        >>> index['a'] = 1
        >>> index['a']
        1
        """
        self._cache[key] = value

    def __delitem__(self, key):
        """``del index[key]``; KeyError if it is missing.

        >>> index = Index({'a': 1})
        >>> del index['a']
        >>> 'a' in index
        False
        """
        del self._cache[key]

    def setdefault(self, key, default=None):
        """``index[key]``, storing ``default`` there first if it is missing (an
        atomic add, so concurrent callers all get the same value).

        >>> index = Index()
        >>> index.setdefault('a', 0), index.setdefault('a', 1)
        (0, 0)
        """
        while True:
            try:
                return self._cache[key]
            except KeyError:
                self._cache.add(key, default, retry=True)

    def peekitem(self, last=True):
        """The last (or first) item, left in place; KeyError if the index is empty.

        >>> index = Index({'a': 1, 'b': 2})
        >>> index.peekitem(), index.peekitem(last=False)
        (('b', 2), ('a', 1))
        """
        return self._cache.peekitem(last, retry=True)

    def pop(self, key, default=ENOVAL):
        """Removes ``key`` and returns its value; ``default`` if it is missing, or
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
        """Removes and returns the last (or first) item; KeyError if the index is
        empty.

        >>> index = Index({'a': 1, 'b': 2})
        >>> index.popitem(last=False)
        ('a', 1)
        """
        with self._cache.transact(retry=True):
            item = self._cache.peekitem(last=last)
            del self._cache[item[0]]
        return item

    def push(self, value, prefix=None, side='back'):
        """Pushes ``value`` onto a queue kept in the index; returns its key.

        >>> index = Index()
        >>> index.push('job'), index.pull()
        (500000000000000, (500000000000000, 'job'))
        """
        return self._cache.push(value, prefix, side, retry=True)

    def pull(self, prefix=None, default=(None, None), side='front'):
        """Takes the item at one end of a queue kept in the index.

        >>> index = Index()
        >>> index.pull()
        (None, None)
        """
        return self._cache.pull(prefix, default, side, retry=True)

    def clear(self):
        """Removes every item.

        >>> index = Index({'a': 1})
        >>> index.clear()
        >>> len(index)
        0
        """
        self._cache.clear(retry=True)

    def __iter__(self):
        """The keys in insertion order.

        >>> list(Index({'b': 1, 'a': 2}))
        ['b', 'a']
        """
        return iter(self._cache)

    def __reversed__(self):
        """The keys in reverse insertion order.

        >>> list(reversed(Index({'a': 1, 'b': 2})))
        ['b', 'a']
        """
        return reversed(self._cache)

    def __len__(self):
        """Number of items.

        >>> len(Index({'a': 1}))
        1
        """
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
        # As a Deque's: the Cache, with its explicit secret if it has one.
        return self._cache

    def __setstate__(self, state):
        self._cache = state if isinstance(state, Cache) else _collection_cache(state)

    def __eq__(self, other):
        """Equal to a mapping with the same items; for an Index or an OrderedDict,
        in the same order too.

        >>> Index({'a': 1, 'b': 2}) == {'b': 2, 'a': 1}
        True
        >>> Index({'a': 1, 'b': 2}) == OrderedDict([('b', 2), ('a', 1)])
        False
        """
        if len(self) != len(other):
            return False
        if isinstance(other, (Index, OrderedDict)):
            return list(self.items()) == list(other.items())
        return all(value == other.get(key, ENOVAL) for key, value in self.items())

    def __ne__(self, other):
        """Not equal; see ``__eq__``.

        >>> Index({'a': 1}) != {'a': 2}
        True
        """
        return not self == other

    def memoize(self, name=None, typed=False, ignore=()):
        """Decorator caching a function's results in the index (they never expire).

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
        return '%s(%r)' % (type(self).__name__, self.directory)

