"""diskcache: python-diskcache's API on diskcache-rs's log-structured engine.

Persistent caches in a directory, shared safely by threads and processes, with
the classes, methods, arguments and exceptions of python-diskcache 5.6.3.

>>> import diskcache
>>> cache = diskcache.Cache()
>>> cache['key'] = 'value'
>>> cache['key']
'value'
>>> cache.close()
"""

from .core import (
    DEFAULT_SETTINGS,
    ENOVAL,
    EVICTION_POLICY,
    UNKNOWN,
    Cache,
    Disk,
    EmptyDirWarning,
    JSONDisk,
    Timeout,
    UnknownFileWarning,
)
from .fanout import FanoutCache
from .persistent import Deque, Index
from .recipes import (
    Averager,
    BoundedSemaphore,
    Lock,
    RLock,
    barrier,
    memoize_stampede,
    throttle,
)

__all__ = [
    'Averager',
    'BoundedSemaphore',
    'Cache',
    'DEFAULT_SETTINGS',
    'Deque',
    'Disk',
    'ENOVAL',
    'EVICTION_POLICY',
    'EmptyDirWarning',
    'FanoutCache',
    'Index',
    'JSONDisk',
    'Lock',
    'RLock',
    'Timeout',
    'UNKNOWN',
    'UnknownFileWarning',
    'barrier',
    'memoize_stampede',
    'throttle',
]

try:
    from .djangocache import DjangoCache  # noqa: F401

    __all__.append('DjangoCache')
except Exception:  # Django missing or not configured.
    pass

__title__ = 'diskcache'
__version__ = '5.6.3'
__build__ = 0x050603
__author__ = 'the diskcache-rs authors'
__license__ = 'Apache 2.0'
