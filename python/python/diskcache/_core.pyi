"""The native module: one Store per cache handle, and the Codec of Python objects.

Hand-kept: update it with python/src/lib.rs and python/src/codec.rs.
"""

from typing import Any, Callable, List, Optional, Tuple

__version__: str

def shape(value: Any, expire_time: Optional[float], tag: Any, want_expire: bool, want_tag: bool) -> Any:
    """`value`, or a tuple with the expire time and/or the tag."""

class StoredKey:
    """A key stored by other code (Rust composites, a custom Disk), kept encoded."""

    def __init__(self, bytes: bytes) -> None: ...
    @property
    def encoded(self) -> bytes: ...

class Codec:
    """How keys and values become bytes: plain encoding, else a (signed) pickle.

    With `signed` and no `secret`, `find_secret()` returns `(secret, earlier secrets)`
    the first time a pickle is signed or verified."""

    def __init__(
        self,
        secret: Optional[bytes],
        signed: bool,
        protocol: int,
        fallbacks: List[bytes] = ...,
        find_secret: Optional[Callable[[], Tuple[bytes, List[bytes]]]] = ...,
    ) -> None: ...
    def encode_key(self, key: Any) -> bytes: ...
    def encode_disk_key(self, db_key: Any, raw: bool) -> bytes: ...
    def decode_key(self, encoded: bytes) -> Any: ...
    def encode_payload(self, value: Any, binding: Optional[bytes] = ...) -> bytes: ...
    def decode_payload_py(self, payload: bytes, binding: Optional[bytes] = ...) -> Any: ...
    @property
    def signed(self) -> bool: ...
    protocol: int

class Store:
    """A handle on a cache directory. Times are seconds since the epoch (`now`);
    `expire` is relative to `now`."""

    def __init__(
        self,
        directory: str,
        timeout: float,
        codec: Codec,
        min_file_size: Optional[int] = ...,
        keeps_displaced: bool = ...,
    ) -> None: ...
    def encode_key(self, key: Any) -> bytes: ...
    def get(
        self,
        key: Any,
        now: float,
        default: Any,
        read: bool = ...,
        expire_time: bool = ...,
        tag: bool = ...,
    ) -> Any: ...
    def set(
        self,
        key: Any,
        value: Any,
        now: float,
        expire: Optional[float] = ...,
        read: bool = ...,
        tag: Any = ...,
        retry: bool = ...,
        only_if_absent: bool = ...,
    ) -> bool: ...
    def contains(self, key: Any, now: float) -> bool: ...
    def delete(self, key: Any, now: float, retry: bool) -> bool: ...
    def pop(
        self,
        key: Any,
        now: float,
        default: Any,
        expire_time: bool = ...,
        tag: bool = ...,
        retry: bool = ...,
    ) -> Any: ...
    def touch(self, key: Any, now: float, expire: Optional[float], retry: bool) -> bool: ...
    def incr(self, key: Any, delta: Any, default: Any, now: float, retry: bool) -> Any: ...
    def push(
        self,
        value: Any,
        now: float,
        prefix: Optional[str] = ...,
        front: bool = ...,
        expire: Optional[float] = ...,
        read: bool = ...,
        tag: Any = ...,
        retry: bool = ...,
    ) -> Any: ...
    def pull(
        self,
        take: bool,
        now: float,
        prefix: Optional[str] = ...,
        front: bool = ...,
        expire_time: bool = ...,
        tag: bool = ...,
        retry: bool = ...,
    ) -> Optional[Any]: ...
    def peekitem(
        self, last: bool, now: float, expire_time: bool = ..., tag: bool = ..., retry: bool = ...
    ) -> Optional[Any]: ...
    def last_rowid(self) -> int: ...
    def keys(
        self,
        sorted: bool,
        rev: bool,
        cursor: Optional[bytes],
        upto: int,
        limit: int,
        disk: bool = ...,
    ) -> Tuple[List[Any], Optional[bytes]]: ...
    def len(self) -> int: ...
    def volume(self) -> int: ...
    def clear_some(self, limit: int) -> int: ...
    def expire_some(self, now: float, limit: int) -> int: ...
    def cull_some(self, limit: int) -> int: ...
    def evict_some(self, tag: Any, after: int, limit: int) -> Tuple[int, Optional[int]]: ...
    def begin(self, retry: bool) -> None: ...
    def end(self, commit: bool) -> None: ...
    def reset(self, name: str, value_json: str) -> str: ...
    def settings(self) -> str: ...
    def setting(self, name: str) -> Optional[str]: ...
    def stats(self, enable: bool, reset: bool) -> Tuple[int, int]: ...
    def check(self, fix: bool) -> List[Tuple[str, str]]: ...
    def flush(self) -> None: ...
    def take_displaced(self) -> List[str]: ...
    def disk_key(self, db_key: Any, raw: bool) -> StoredKey: ...
    def disk_get(self, db_key: Any, raw: bool, now: float) -> Optional[Tuple[Any, ...]]:
        """`(key, mode, filename, db_value, expire_time, tag)`; `key` is the stored key."""
    def disk_set(
        self,
        db_key: Any,
        raw: bool,
        mode: int,
        filename: Optional[str],
        db_value: Any,
        now: float,
        expire: Optional[float] = ...,
        tag: Any = ...,
        retry: bool = ...,
        only_if_absent: bool = ...,
    ) -> bool: ...
    def disk_pop(self, db_key: Any, raw: bool, now: float, retry: bool = ...) -> Optional[Tuple[Any, ...]]: ...
    def disk_pull(
        self, take: bool, now: float, prefix: Optional[str] = ..., front: bool = ..., retry: bool = ...
    ) -> Any:
        """`(db_key, raw, key, mode, filename, db_value, expire_time, tag)`, None (empty)
        or False (a refused item was dropped: read again)."""
    def disk_peekitem(self, last: bool, now: float, retry: bool = ...) -> Any: ...
    def disk_discard(
        self, key: bytes, mode: int, filename: Optional[str], db_value: Any, now: float, retry: bool = ...
    ) -> bool: ...
    def disk_incr(self, db_key: Any, raw: bool, delta: Any, now: float, retry: bool) -> Any: ...
    def disk_push(
        self,
        mode: int,
        filename: Optional[str],
        db_value: Any,
        now: float,
        prefix: Optional[str] = ...,
        front: bool = ...,
        expire: Optional[float] = ...,
        tag: Any = ...,
        retry: bool = ...,
    ) -> Any: ...
