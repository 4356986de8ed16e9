"""A Django cache backend on cachecore (``pip install cachecore[django]``)::

    CACHES = {"default": {
        "BACKEND": "cachecore.contrib.django.CachecoreCache",
        "LOCATION": "valkey://cache:6379/0",      # any cachecore URL; memory:// too
        "TIMEOUT": 300, "KEY_PREFIX": "shop", "VERSION": 1,
        "OPTIONS": {"serializer": "pickle", "near_cache": True},  # cachecore options
    }}

The backend keeps Django's semantics (timeouts, keys, return values, errors) and sends
every call through one cachecore cache, so cachecore's plugins, fault handling, cluster
support and near cache apply. See ``docs/django.md``.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from cachecore.config import from_url, get_cache
from cachecore.errors import ConfigurationError
from cachecore.redis_base import BaseRedisCache
from cachecore.serializers import PickleSerializer

if TYPE_CHECKING:
    from cachecore.aio import AsyncBaseRedisCache

__all__ = ["CachecoreCache", "DjangoPickleSerializer"]

_DJANGO_SETTINGS = {
    "key_prefix": "set KEY_PREFIX instead: Django builds every key as KEY_PREFIX:VERSION:key",
    "default_timeout": "set TIMEOUT instead",
    "max_entries": "the server evicts keys itself (its maxmemory-policy); remove it",
    "cull_frequency": "the server evicts keys itself (its maxmemory-policy); remove it",
}
"""OPTIONS that Django's own settings cover, or that do not apply to a server."""

_FOREVER = 0
"""cachecore's timeout for "never expire" (Django says None)."""

_NEAR_CACHE_OPTIONS = ("near_cache", "near_cache_size")
"""Options the asyncio cache has no use for: it reads the server (whose invalidations
keep the blocking cache's near cache true to the asyncio cache's writes)."""

_shared: dict[tuple[str, str], BaseRedisCache] = {}
_shared_lock = threading.Lock()
_per_thread = threading.local()


class DjangoPickleSerializer(PickleSerializer):
    """cachecore's pickle format (cachelib's) that also reads the values Django's
    ``RedisCache`` and django-redis (default serializer, no compressor) wrote.

    Those store an int as ASCII digits, which cachecore reads alike, and anything else
    as a bare pickle, whose first byte (``0x80``, pickle protocol 2 and later) never
    starts a cachecore value. Writes are always cachecore's format.
    """

    def loads(self, data: bytes) -> Any:
        if data[:1] == b"\x80":
            return pickle.loads(data)
        return super().loads(data)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """OPTIONS as :func:`cachecore.from_url` keyword arguments (names lower-cased)."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"OPTIONS must be a dict, got {type(options).__name__}")
    converted = {str(name).lower(): value for name, value in options.items()}
    for name, advice in _DJANGO_SETTINGS.items():
        if name in converted:
            raise ConfigurationError(f"CachecoreCache OPTIONS {name!r} is not allowed: {advice}")
    return converted


def _build(location: str, options: dict[str, Any]) -> BaseRedisCache:
    cache = from_url(location, **options) if location else get_cache(**options)
    _read_django_pickles(cache)
    return cache


def _read_django_pickles(cache: BaseRedisCache | AsyncBaseRedisCache) -> None:
    if type(cache.serializer) is PickleSerializer:
        cache.serializer = DjangoPickleSerializer(cache.serializer.protocol)


def _without_near_cache(url: str) -> str:
    """``url`` without near cache options in its query string."""
    base, mark, query = url.partition("?")
    if not mark:
        return url
    kept = [
        pair
        for pair in query.split("&")
        if pair.partition("=")[0].lower() not in _NEAR_CACHE_OPTIONS
    ]
    return base + ("?" + "&".join(kept) if kept else "")


def _key(location: str, options: dict[str, Any]) -> tuple[str, str]:
    return (location, repr(sorted(options.items())))


def shared_cache(location: str, options: Mapping[str, Any]) -> BaseRedisCache:
    """The cachecore cache for ``location`` and ``options``, built once per process.

    Django builds a backend object per thread (and per async task); they all share
    this one cache, so one connection pool and one near cache serve the process.
    An empty ``location`` means cachecore's configured cache (``CACHECORE_URL``,
    ``[tool.cachecore]``, else ``memory://``).

    :raises ConfigurationError: a malformed URL or option (see :func:`cachecore.from_url`).
    :raises UnknownBackendError: no installed plugin handles the URL's scheme.
    """
    converted = _options(options)
    key = _key(location, converted)
    with _shared_lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = _build(location, converted)
    return cache


def thread_async_cache(location: str, options: Mapping[str, Any]) -> AsyncBaseRedisCache:
    """The asyncio cachecore cache for ``location`` and ``options`` in this thread,
    built on first use (:func:`cachecore.aio.from_url`, or :func:`cachecore.aio.get_cache`
    for an empty ``location``), without the near cache options.

    One per thread, because an asyncio client's connections belong to one event loop
    and a thread runs one loop at a time: the loop of an ASGI server's thread keeps its
    connections from request to request, and each ``asyncio.run`` of ``async_to_sync``
    (a new loop, often in a new thread) gets its own, closed when that loop ends. A
    thread that ends drops its cache.

    :raises ConfigurationError: see :func:`shared_cache`.
    """
    converted = _options(options)
    key = _key(location, converted)
    caches: dict[tuple[str, str], AsyncBaseRedisCache] | None = getattr(_per_thread, "caches", None)
    if caches is None:
        caches = _per_thread.caches = {}
    cache = caches.get(key)
    if cache is None:
        import cachecore.aio

        for name in _NEAR_CACHE_OPTIONS:
            converted.pop(name, None)
        if location:
            cache = cachecore.aio.from_url(_without_near_cache(location), **converted)
        else:
            cache = cachecore.aio.get_cache(**converted)
        _read_django_pickles(cache)
        caches[key] = cache
    return cache


class CachecoreCache(BaseCache):  # type: ignore[misc]  # Django ships no type hints
    """Django's cache API on a cachecore cache.

    Django's semantics throughout: a ``timeout`` of None never expires, 0 or less
    stores nothing (and removes the old value), omitted means ``TIMEOUT``; keys are
    ``make_key(key, version)`` (``KEY_PREFIX:VERSION:key`` unless ``KEY_FUNCTION``
    says otherwise) and are checked by ``validate_key``, which warns about keys that
    memcached would refuse.

    A backend fault (server down, timeout...) never raises unless OPTIONS has
    ``"raise_errors": True`` (then :class:`~cachecore.errors.BackendError`): each
    method logs one warning and returns what a miss or a refused write returns: ``get``
    gives ``default``, ``get_many`` ``{}``, ``has_key``/``add``/``touch``/``delete``
    False, ``set_many`` every key (as failed), ``incr``/``decr`` None.

    The ``a*`` methods (``aget``, ``aset``, ``aadd``, ``aget_many``, ``aset_many``,
    ``adelete``, ``adelete_many``, ``ahas_key``, ``aincr``, ``atouch``, ``aclear``,
    ``aclose``; and Django's ``adecr``, ``aget_or_set``, ``aincr_version``,
    ``adecr_version`` built on them) are coroutines on a :mod:`cachecore.aio` cache
    built from the same LOCATION and OPTIONS (one per thread, see
    :func:`thread_async_cache`; the near cache options do not apply to it), with the
    sync methods' semantics, fault values and wire format: either reads what the other
    wrote. No thread is involved.

    :param server: LOCATION: a cachecore URL (``valkey://host:6379/0``,
        ``redis+cluster://h1:p1,h2:p2``, ``memory://``...); empty for cachecore's
        configured cache.
    :param params: the rest of the CACHES entry; OPTIONS are cachecore options
        (``serializer``, ``near_cache``, ``raise_errors``, ``socket_timeout``...).
    :raises ConfigurationError: a malformed LOCATION or OPTIONS.
    """

    def __init__(self, server: str | None, params: dict[str, Any]) -> None:
        super().__init__(params)
        if server is not None and not isinstance(server, str):
            raise ConfigurationError(
                f"CachecoreCache LOCATION must be one cachecore URL (for a cluster: "
                f"valkey+cluster://host1:port1,host2:port2), got {server!r}"
            )
        self._location = server or ""
        self._params_options: Mapping[str, Any] = params.get("OPTIONS") or {}
        self._cache = shared_cache(self._location, self._params_options)
        self._async_key = _key(self._location, _options(self._params_options))

    @property
    def async_cachecore_cache(self) -> AsyncBaseRedisCache:
        """The asyncio cachecore cache behind the ``a*`` methods in this thread (see
        :func:`thread_async_cache`)."""
        caches: dict[tuple[str, str], AsyncBaseRedisCache] | None
        caches = getattr(_per_thread, "caches", None)
        if caches is not None:
            cache: AsyncBaseRedisCache | None = caches.get(self._async_key)
            if cache is not None:
                return cache
        return thread_async_cache(self._location, self._params_options)

    @property
    def cachecore_cache(self) -> BaseRedisCache:
        """The cachecore cache behind this backend (shared by every backend object with
        the same LOCATION and OPTIONS); its keys are this backend's full keys."""
        return self._cache

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> int | None:
        """Django's ``timeout`` in whole seconds: None = never expire, 0 = do not store
        (any timeout below one second), as Django's ``RedisCache`` reads it."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0, int(timeout))

    def _seconds(self, timeout: Any) -> int | None:
        """cachecore's timeout for Django's ``timeout`` (0 = never expire), or None when
        Django says not to store at all."""
        seconds = self.get_backend_timeout(timeout)
        if seconds is None:
            return _FOREVER
        return seconds or None

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent (one atomic ``SET NX``).

        :returns: True if stored (with a timeout of 0: if the key was absent; nothing
            is kept); False if the key exists or on a fault.
        :raises pickle.PickleError: the value cannot be serialized.
        """
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:
            # Django's contract: report whether it would have been added, keep nothing.
            # One second, not forever: should the delete fail, the value still expires.
            added = self._cache.add(key, value, 1)
            if added:
                self._cache.delete(key)
            return added
        return self._cache.add(key, value, seconds)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value of ``key``; ``default`` if missing or on a fault. A stored None is
        returned as None."""
        return self._cache.lookup(self.make_and_validate_key(key, version=version), default)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key``; a timeout of 0 or less deletes the key instead.

        :raises pickle.PickleError: the value cannot be serialized.
        """
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:
            self._cache._dump(key, value, 0)  # an unpicklable value fails alike
            self._cache.delete(key)
        else:
            self._cache.set(key, value, seconds)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout (0 or less deletes it).

        :returns: True if the key exists; False if not or on a fault.
        """
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:
            return self._cache.delete(key)
        return self._cache.touch(key, seconds)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Delete ``key``; True if it existed, False if not or on a fault."""
        return self._cache.delete(self.make_and_validate_key(key, version=version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """``{key: value}`` for the ``keys`` found (one MGET); {} on a fault."""
        full = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = self._cache.lookup_many(*full)
        return {full[made]: value for made, value in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Whether ``key`` exists (a stored None counts); False on a fault."""
        return self._cache.has(self.make_and_validate_key(key, version=version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int | None:
        """Atomically add ``delta`` to the integer under ``key``, keeping its timeout
        (``decr`` subtracts through this method).

        :returns: the new value; None on a fault.
        :raises ValueError: ``key`` does not exist.
        :raises TypeError: the stored value is not an integer.
        """
        made = self.make_and_validate_key(key, version=version)
        try:
            return self._cache.inc_existing(made, delta)
        except KeyError:
            raise ValueError(f"Key {key!r} not found.") from None

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Store every item of ``data`` in one round trip (a pipeline).

        :returns: the keys that were not stored: [] on success, every key on a fault.
        :raises pickle.PickleError: a value cannot be serialized (nothing is stored).
        """
        if not data:
            return []
        full = [self.make_and_validate_key(key, version=version) for key in data]
        seconds = self._seconds(timeout)
        if seconds is None:
            for made, value in zip(full, data.values(), strict=True):
                self._cache._dump(made, value, 0)
            self._cache.delete_many(*full)
            return []
        stored = self._cache.set_many(dict(zip(full, data.values(), strict=True)), seconds)
        return _not_stored(data, full, stored)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete ``keys`` in one command (``UNLINK``)."""
        full = [self.make_and_validate_key(key, version=version) for key in keys]
        if full:
            self._cache.delete_many(*full)

    def clear(self) -> bool:
        """Empty the server's database (``FLUSHDB``; on a cluster every primary's), as
        Django's ``RedisCache`` and django-redis do: **every key in it goes**, whatever
        its prefix. True on success, False on a fault."""
        return self._cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: Django calls this after every request, and the connection
        pool (shared by the process) stays open for the next one, as with Django's
        ``RedisCache``."""

    # -- asyncio: the methods above, each on the asyncio cache -----------------------------

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """See :meth:`add`."""
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        cache = self.async_cachecore_cache
        if seconds is None:
            added = await cache.add(key, value, 1)
            if added:
                await cache.delete(key)
            return added
        return await cache.add(key, value, seconds)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """See :meth:`get`."""
        key = self.make_and_validate_key(key, version=version)
        return await self.async_cachecore_cache.lookup(key, default)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """See :meth:`set`."""
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        cache = self.async_cachecore_cache
        if seconds is None:
            cache._dump(key, value, 0)  # an unpicklable value fails alike
            await cache.delete(key)
        else:
            await cache.set(key, value, seconds)

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """See :meth:`touch`."""
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        cache = self.async_cachecore_cache
        if seconds is None:
            return await cache.delete(key)
        return await cache.touch(key, seconds)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """See :meth:`delete`."""
        key = self.make_and_validate_key(key, version=version)
        return await self.async_cachecore_cache.delete(key)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """See :meth:`get_many`."""
        full = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = await self.async_cachecore_cache.lookup_many(*full)
        return {full[made]: value for made, value in found.items()}

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """See :meth:`has_key`."""
        key = self.make_and_validate_key(key, version=version)
        return await self.async_cachecore_cache.has(key)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int | None:
        """See :meth:`incr` (``adecr`` subtracts through this method)."""
        made = self.make_and_validate_key(key, version=version)
        try:
            return await self.async_cachecore_cache.inc_existing(made, delta)
        except KeyError:
            raise ValueError(f"Key {key!r} not found.") from None

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """See :meth:`set_many`."""
        if not data:
            return []
        full = [self.make_and_validate_key(key, version=version) for key in data]
        seconds = self._seconds(timeout)
        cache = self.async_cachecore_cache
        if seconds is None:
            for made, value in zip(full, data.values(), strict=True):
                cache._dump(made, value, 0)
            await cache.delete_many(*full)
            return []
        stored = await cache.set_many(dict(zip(full, data.values(), strict=True)), seconds)
        return _not_stored(data, full, stored)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """See :meth:`delete_many`."""
        full = [self.make_and_validate_key(key, version=version) for key in keys]
        if full:
            await self.async_cachecore_cache.delete_many(*full)

    async def aclear(self) -> bool:
        """See :meth:`clear`."""
        return await self.async_cachecore_cache.clear()

    async def aclose(self, **kwargs: Any) -> None:
        """Close this thread's asyncio connections (they reopen on the next call).

        Django never calls it (its ``request_finished`` handler calls :meth:`close`);
        the connections otherwise stay open for the thread's event loop and are closed
        when that loop ends (``asyncio.run`` returns).
        """
        caches = getattr(_per_thread, "caches", None)
        cache = None if caches is None else caches.get(self._async_key)
        if cache is not None:
            await cache.aclose()


def _not_stored(data: Mapping[Any, Any], full: list[str], stored: list[Any]) -> list[Any]:
    """The keys of ``data`` (made into ``full``) that ``set_many`` did not store."""
    if len(stored) == len(full):
        return []
    done = set(stored)
    return [key for key, made in zip(data, full, strict=True) if made not in done]
