"""cachecore: one cache API for Redis, Valkey and KeyDB, with backends as plugins.

::

    import cachecore

    cache = cachecore.get_cache()          # configured, or the embedded memory:// default
    cache = cachecore.from_url("valkey://localhost:6379/0", key_prefix="app:")
    cache.set("answer", 42, timeout=60)
    cache.get("answer")
"""

from __future__ import annotations

from cachecore.base import BaseCache
from cachecore.config import from_config, from_url, get_cache, resolve_config
from cachecore.errors import (
    BackendError,
    CachecoreError,
    ConfigurationError,
    ConnectionCheckError,
    PluginConflictError,
    SerializationError,
    UnknownBackendError,
    UnknownSerializerError,
    ValueTooLargeError,
)
from cachecore.hookspecs import hookimpl
from cachecore.plugins import installed_backends as backends
from cachecore.redis_base import BaseRedisCache
from cachecore.server_cache import ServerCache
from cachecore.types import Backend, Serializer, SerializerSpec

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BaseCache",
    "BaseRedisCache",
    "CachecoreError",
    "ConfigurationError",
    "ConnectionCheckError",
    "PluginConflictError",
    "SerializationError",
    "Serializer",
    "SerializerSpec",
    "ServerCache",
    "UnknownBackendError",
    "UnknownSerializerError",
    "ValueTooLargeError",
    "backends",
    "from_config",
    "from_url",
    "get_cache",
    "hookimpl",
    "resolve_config",
]
