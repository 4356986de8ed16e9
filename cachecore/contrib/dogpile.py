"""A dogpile.cache backend on cachecore (``pip install cachecore[dogpile]``)::

    from dogpile.cache import make_region

    region = make_region().configure(
        "cachecore",                       # found through dogpile's entry points
        expiration_time=600,
        arguments={"url": "valkey://cache:6379/0", "key_prefix": "app:"},
    )

Values are stored through one cachecore cache, so cachecore's serializers, compression,
signing, fault handling, cluster and Sentinel URLs apply. ``get_mutex`` gives a lock on
the server, so dogpile's one-creator guarantee holds across processes. See
``docs/dogpile.md``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dogpile.cache.api import (
    NO_VALUE,
    BackendFormatted,
    BackendSetType,
    CacheBackend,
    CachedValue,
    CacheMutex,
    KeyType,
    SerializedReturnType,
)
from dogpile.cache.region import value_version

from cachecore.config import from_url, get_cache
from cachecore.errors import BackendError, ConfigurationError
from cachecore.memo.steps import RELEASE_SCRIPT
from cachecore.options import KNOWN_OPTIONS
from cachecore.redis_base import BaseRedisCache

__all__ = ["CachecoreBackend", "CachecoreMutex"]

log = logging.getLogger("cachecore")

_DOGPILE_ARGUMENTS = {
    "url",
    "options",
    "redis_expiration_time",
    "distributed_lock",
    "lock_timeout",
    "lock_sleep",
    "lock_prefix",
}

_ENVELOPE_LENGTH = 2


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"dogpile argument {name!r} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"dogpile argument {name!r} must be > 0, got {value!r}")
    return float(value)


class CachecoreMutex(CacheMutex):
    """A lock on the server for one dogpile key: ``SET lock token NX PX timeout`` with a
    random token; released by its owner alone (the compare-and-delete script of
    :mod:`cachecore.memo`'s lock). After ``timeout`` seconds the server drops it, so a
    crashed owner blocks nobody for longer. Commands go through the cache's transport
    (:attr:`~cachecore.BaseRedisCache.transport`), so any client library, the circuit
    breaker and cluster routing apply.

    On a backend fault (server down) ``acquire`` logs a warning and returns True: the
    caller goes on creating the value without cross-process coordination, as it would
    with no cache at all. With the cache's ``raise_errors`` it raises
    :class:`~cachecore.errors.BackendError` instead.
    """

    def __init__(self, cache: BaseRedisCache, name: str, timeout: float, sleep: float) -> None:
        self._cache = cache
        self._name = name
        self._timeout_ms = max(1, int(timeout * 1000))
        self._sleep = sleep
        self._token: bytes | None = None

    def _fault(self, operation: str, exc: BaseException) -> None:
        if self._cache.raise_errors:
            raise BackendError(
                f"{operation} of lock {self._name!r} failed on {self._cache!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        log.warning(
            "cachecore: %s of lock %r failed on %r (going on without it): %s: %s",
            operation,
            self._name,
            self._cache,
            type(exc).__name__,
            exc,
        )

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait``, poll every ``lock_sleep`` seconds until it is free.

        :returns: True if taken (or on a fault, see the class); False if ``wait`` is
            False and another owner holds it.
        :raises BackendError: on a fault, with the cache's ``raise_errors``.
        """
        token = secrets.token_hex(16).encode()
        transport = self._cache.transport
        while True:
            try:
                # Sent once: a SET NX re-sent after it took the lock would find it taken.
                taken = transport.send_once("SET", self._name, token, "NX", "PX", self._timeout_ms)
            except transport.errors as exc:
                self._fault("acquire", exc)
                self._token = None
                return True
            if taken:
                self._token = token
                return True
            if not wait:
                return False
            time.sleep(self._sleep)

    def release(self) -> None:
        """Give the lock back if this mutex still owns it. A lock that outlived its
        timeout (and may now be another owner's) is left alone, with a warning.

        :raises BackendError: on a fault, with the cache's ``raise_errors``.
        """
        token, self._token = self._token, None
        if token is None:  # acquired during a fault: nothing was taken
            return
        transport = self._cache.transport
        try:
            deleted = transport.send("EVAL", RELEASE_SCRIPT, 1, self._name, token)
        except transport.errors as exc:
            self._fault("release", exc)
            return
        if not deleted:
            log.warning(
                "cachecore: lock %r on %r timed out before its owner released it "
                "(lock_timeout=%.3f s): another process may have created the value too",
                self._name,
                self._cache,
                self._timeout_ms / 1000,
            )

    def locked(self) -> bool:
        """Whether anyone holds the lock now; False on a fault."""
        transport = self._cache.transport
        try:
            return bool(transport.send("EXISTS", self._name))
        except transport.errors as exc:
            self._fault("locked", exc)
            return False


class CachecoreBackend(CacheBackend):
    """dogpile.cache's backend API on a cachecore cache (registered as ``"cachecore"``).

    Each value is stored with cachecore's serializer (its wire format, with any
    ``serializer``, ``compression`` or signing option) as a 2-tuple ``(payload,
    metadata)``: dogpile's :class:`~dogpile.cache.api.CachedValue` as plain Python data,
    so a script with cachecore alone reads ``cache.get(key)[0]``. A value that is no such
    tuple (written by another cachecore user) reads as a value created at time 0: served
    by ``get`` while the region has no ``expiration_time``, else treated as expired
    (re-created by one creator). When the region has its own serializer (bytes), the
    bytes are stored as a cachecore bytes value.

    ``arguments`` (a dict, not modified):

    * ``url``: a cachecore URL (``valkey://...``, ``redis+cluster://...``, ``memory://``);
      omitted: cachecore's configured cache (``CACHECORE_URL``, ``[tool.cachecore]``).
    * any cachecore option by name (``key_prefix``, ``serializer``, ``raise_errors``,
      ``socket_timeout``...), and ``options``: a dict of further options for
      :func:`cachecore.from_url` (a plugin's own).
    * ``redis_expiration_time``: seconds the server keeps each value (0, the default:
      until deleted or evicted). Make it longer than the region's ``expiration_time``
      so that expired values stay readable while one process re-creates them.
    * ``distributed_lock`` (default True): ``get_mutex`` returns a
      :class:`CachecoreMutex`; False: dogpile's thread lock (one process only).
    * ``lock_timeout`` (default 30 s): the server drops a lock held longer than this.
    * ``lock_sleep`` (default 0.05 s): poll interval while waiting for a lock.
    * ``lock_prefix`` (default ``"_lock:"``): lock key = cache prefix + this + key.

    Other arguments are ignored with a warning (dogpile hands every backend the
    whole ``arguments`` dict).

    :raises ConfigurationError: a malformed URL, option or lock argument.
    """

    key_mangler = None
    serializer = None
    deserializer = None

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        options = {name: value for name, value in arguments.items() if name in KNOWN_OPTIONS}
        extra = arguments.get("options") or {}
        if not isinstance(extra, Mapping):
            raise ConfigurationError(f"dogpile argument 'options' must be a dict, got {extra!r}")
        options.update(extra)
        ignored = sorted(set(arguments) - _DOGPILE_ARGUMENTS - KNOWN_OPTIONS)
        if ignored:
            log.warning("cachecore: the dogpile backend ignores the arguments %s", ignored)
        # Values live until deleted unless redis_expiration_time says otherwise: dogpile
        # decides expiry itself (from each value's creation time).
        options.setdefault("default_timeout", 0)
        url = arguments.get("url")
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"dogpile argument 'url' must be a str, got {url!r}")
        self.cache: BaseRedisCache = from_url(url, **options) if url else get_cache(**options)
        self._expiry = int(
            _positive("redis_expiration_time", arguments.get("redis_expiration_time", 0), True)
        )
        self.distributed_lock = bool(arguments.get("distributed_lock", True))
        self.lock_timeout = _positive("lock_timeout", arguments.get("lock_timeout", 30))
        self.lock_sleep = _positive("lock_sleep", arguments.get("lock_sleep", 0.05))
        lock_prefix = arguments.get("lock_prefix", "_lock:")
        if not isinstance(lock_prefix, str) or not lock_prefix:
            raise ConfigurationError(
                f"dogpile argument 'lock_prefix' must be a non-empty str, got {lock_prefix!r}"
            )
        self.lock_prefix = lock_prefix

    @classmethod
    def from_config_dict(cls, config_dict: Mapping[str, Any], prefix: str) -> CachecoreBackend:
        """dogpile's ``configure_from_config``: the entries under ``prefix``."""
        return cls({k[len(prefix) :]: v for k, v in config_dict.items() if k.startswith(prefix)})

    # -- locks ------------------------------------------------------------------------

    def has_lock_timeout(self) -> bool:
        """True: a lock is dropped after ``lock_timeout``, so a creator slower than that
        may overlap with a second one (dogpile's tests then stop asserting one creator)."""
        return self.distributed_lock

    def get_mutex(self, key: KeyType) -> CacheMutex | None:
        """A :class:`CachecoreMutex` on ``key`` (None without ``distributed_lock``)."""
        if not self.distributed_lock:
            return None
        prefix = self.cache.key_prefix
        prefix = prefix if isinstance(prefix, str) else prefix()
        return CachecoreMutex(
            self.cache, prefix + self.lock_prefix + key, self.lock_timeout, self.lock_sleep
        )

    # -- values -----------------------------------------------------------------------

    @staticmethod
    def _unwrap(value: object) -> BackendFormatted:
        if value is NO_VALUE:
            return NO_VALUE
        if (
            isinstance(value, tuple | list)
            and len(value) == _ENVELOPE_LENGTH
            and isinstance(value[1], dict)
            and "ct" in value[1]
        ):
            return CachedValue(value[0], value[1])
        return CachedValue(value, {"ct": 0.0, "v": value_version})

    @staticmethod
    def _wrap(value: BackendSetType) -> Any:
        if isinstance(value, CachedValue):
            return (value.payload, value.metadata)
        return value

    def get(self, key: KeyType) -> BackendFormatted:
        """The :class:`CachedValue` under ``key``; ``NO_VALUE`` if missing, undecodable
        or on a fault (logged)."""
        return self._unwrap(self.cache.lookup(key, NO_VALUE))

    def get_multi(self, keys: Iterable[KeyType]) -> list[BackendFormatted]:
        """The values of ``keys`` in order (one MGET); ``NO_VALUE`` for each miss, and
        for all on a fault."""
        keys = list(keys)
        found = self.cache.lookup_many(*keys)
        return [self._unwrap(found.get(key, NO_VALUE)) for key in keys]

    def set(self, key: KeyType, value: BackendSetType) -> None:
        """Store ``value`` (a fault is logged: the value is simply not cached)."""
        self.cache.set(key, self._wrap(value), self._expiry)

    def set_multi(self, mapping: Mapping[KeyType, BackendSetType]) -> None:
        """Store every item in one round trip (a pipeline)."""
        if mapping:
            self.cache.set_many(
                {key: self._wrap(value) for key, value in mapping.items()}, self._expiry
            )

    def get_serialized(self, key: KeyType) -> SerializedReturnType:
        """The bytes a region with its own serializer stored; ``NO_VALUE`` if missing,
        on a fault, or if the key holds no bytes (a value stored without that
        serializer: logged)."""
        return self._bytes(key, self.cache.lookup(key, NO_VALUE))

    @staticmethod
    def _bytes(key: KeyType, value: object) -> SerializedReturnType:
        if value is NO_VALUE or isinstance(value, bytes):
            return value
        log.warning(
            "cachecore: dogpile key %r holds a %s, not the bytes of a region serializer; "
            "reading it as a miss",
            key,
            type(value).__name__,
        )
        return NO_VALUE

    def get_serialized_multi(self, keys: Iterable[KeyType]) -> list[SerializedReturnType]:
        """The bytes of ``keys`` in order; ``NO_VALUE`` for misses and non-bytes values."""
        keys = list(keys)
        found = self.cache.lookup_many(*keys)
        return [self._bytes(key, found.get(key, NO_VALUE)) for key in keys]

    def set_serialized(self, key: KeyType, value: bytes) -> None:
        """Store the bytes of a region with its own serializer."""
        self.cache.set(key, value, self._expiry)

    def set_serialized_multi(self, mapping: Mapping[KeyType, bytes]) -> None:
        """Store every item in one round trip."""
        if mapping:
            self.cache.set_many(dict(mapping), self._expiry)

    def delete(self, key: KeyType) -> None:
        """Delete ``key`` (a fault is logged)."""
        self.cache.delete(key)

    def delete_multi(self, keys: Iterable[KeyType]) -> None:
        """Delete ``keys`` in one command."""
        keys = list(keys)
        if keys:
            self.cache.delete_many(*keys)
