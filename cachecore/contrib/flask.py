"""A Flask-Caching backend on cachecore (``pip install cachecore[flask]``)::

    app.config.from_mapping(
        CACHE_TYPE="cachecore.contrib.flask.CachecoreCache",
        CACHE_CACHECORE_URL="valkey://cache:6379/0",   # else CACHE_REDIS_URL
        CACHE_KEY_PREFIX="shop:",
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_OPTIONS={"near_cache": True},             # any cachecore option
    )
    cache = Cache(app)

Flask-Caching's semantics are cachelib's, and so are cachecore's: every call goes to one
cachecore cache unchanged. See ``docs/flask.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_caching.backends.base import BaseCache

from cachecore.config import from_url, get_cache
from cachecore.errors import ConfigurationError
from cachecore.redis_base import BaseRedisCache
from cachecore.types import Serializer, Timeout

__all__ = ["CachecoreCache"]


class CachecoreCache(BaseCache):
    """Flask-Caching's backend API (cachelib's) on a cachecore cache.

    Built by Flask-Caching through :meth:`factory` from the app's config; directly:
    ``CachecoreCache("valkey://cache:6379/0", key_prefix="shop:")``.

    Semantics are cachelib's ``RedisCache``'s, as Flask-Caching expects: ``timeout``
    None = ``CACHE_DEFAULT_TIMEOUT``, 0 = never expire; ``get`` of a missing key is
    None; ``set_many`` returns the keys stored; ``delete_many``/``unlink`` the keys
    gone; ``inc``/``dec`` start a missing key from 0; ``clear`` deletes the keys under
    ``CACHE_KEY_PREFIX`` (SCAN + UNLINK), or the whole database when the prefix is empty.

    A backend fault never raises (unless ``raise_errors``): the method logs one warning
    and returns its fault value (``get`` None, ``set``/``add``/``has``/``delete``/``clear``
    False, ``set_many``/``delete_many`` [], ``inc``/``dec`` None).

    :param url: a cachecore URL; None: cachecore's configured cache (``CACHECORE_URL``,
        ``[tool.cachecore]``, else ``memory://``).
    :param default_timeout: seconds (0 = never expire).
    :param key_prefix: prepended to every key on the server.
    :param options: any cachecore option (``serializer``, ``near_cache``,
        ``raise_errors``, ``socket_timeout``...).
    :raises ConfigurationError: a malformed URL or option.
    """

    def __init__(
        self,
        url: str | None = None,
        default_timeout: Timeout = 300,
        key_prefix: str | None = None,
        **options: Any,
    ) -> None:
        # Flask-Caching passes CACHE_IGNORE_ERRORS as this; cachecore's delete_many
        # is one command, so it has nothing to ignore.
        ignore = bool(options.pop("ignore_delete_many_errors", False))
        super().__init__(default_timeout=0, ignore_delete_many_errors=ignore)
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"CACHE_CACHECORE_URL must be a str, got {url!r}")
        options["default_timeout"] = default_timeout
        if key_prefix:
            options["key_prefix"] = key_prefix
        self._cache: BaseRedisCache = from_url(url, **options) if url else get_cache(**options)
        self.default_timeout = self._cache.default_timeout

    @classmethod
    def factory(
        cls, app: Flask, config: Mapping[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> CachecoreCache:
        """Flask-Caching's hook: the cache for the app's config.

        ``CACHE_CACHECORE_URL`` (else ``CACHE_REDIS_URL``, else cachecore's configured
        cache), ``CACHE_KEY_PREFIX``, ``CACHE_DEFAULT_TIMEOUT``; ``CACHE_OPTIONS`` (a
        dict of cachecore options) arrive in ``kwargs``, merged by Flask-Caching.

        :raises ConfigurationError: a malformed URL or option.
        """
        url = config.get("CACHE_CACHECORE_URL") or config.get("CACHE_REDIS_URL")
        options = dict(kwargs)
        prefix = config.get("CACHE_KEY_PREFIX")
        if prefix:
            options.setdefault("key_prefix", prefix)
        return cls(url, *args, **options)

    @property
    def cachecore_cache(self) -> BaseRedisCache:
        """The cachecore cache behind this backend (its keys carry the prefix); use it
        for what Flask-Caching's API lacks (``ping()``, ``touch()``, ``.client``)."""
        return self._cache

    @property
    def serializer(self) -> Serializer:
        """The cachecore cache's wire format; Flask-Caching sets ``CACHE_SERIALIZER``
        here (any object with ``dumps(value) -> bytes`` and ``loads(bytes)``)."""
        return self._cache.serializer

    @serializer.setter
    def serializer(self, serializer: Serializer) -> None:
        self._cache.serializer = serializer

    def get(self, key: str) -> Any:
        """The value of ``key``; None if missing, undecodable or on a fault."""
        return self._cache.get(key)

    def get_many(self, *keys: str) -> list[Any]:
        """The values of ``keys`` in order (one MGET); None for misses."""
        return self._cache.get_many(*keys)

    def get_dict(self, *keys: str) -> dict[str, Any]:
        """``{key: value}`` for ``keys``; None for misses."""
        return self._cache.get_dict(*keys)

    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value``; True, or False on a fault.

        :raises SerializationError: the value cannot be serialized.
        """
        return self._cache.set(key, value, timeout)

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` only if ``key`` is absent (one atomic ``SET NX``)."""
        return self._cache.add(key, value, timeout)

    def set_many(self, mapping: Mapping[str, Any], timeout: Timeout = None) -> list[Any]:
        """Store every item in one round trip; the keys stored ([] on a fault)."""
        return self._cache.set_many(dict(mapping), timeout)

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        return self._cache.delete(key)

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys`` in one ``UNLINK``; the keys gone ([] on a fault)."""
        return self._cache.delete_many(*keys)

    def unlink(self, *keys: str) -> list[Any]:
        """Flask-Caching's ``cache.unlink``: :meth:`delete_many` (already ``UNLINK``)."""
        return self._cache.delete_many(*keys)

    def has(self, key: str) -> bool:
        """Whether ``key`` exists; False on a fault."""
        return self._cache.has(key)

    def clear(self) -> bool:
        """Delete the keys under the prefix (the whole database without one)."""
        return self._cache.clear()

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Atomically add ``delta`` (a missing key starts at 0); None on a fault."""
        return self._cache.inc(key, delta)

    def dec(self, key: str, delta: int = 1) -> int | None:
        """Atomically subtract ``delta`` (a missing key starts at 0); None on a fault."""
        return self._cache.dec(key, delta)
