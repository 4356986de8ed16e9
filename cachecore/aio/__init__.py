"""cachecore for asyncio: the same cache API, every method a coroutine.

::

    import cachecore.aio

    cache = cachecore.aio.from_url("valkey://localhost:6379/0", key_prefix="app:")
    await cache.set("answer", 42, timeout=60)
    await cache.get("answer")
    await cache.aclose()

:func:`from_url`, :func:`from_config` and :func:`get_cache` follow exactly the rules of
their blocking namesakes in :mod:`cachecore`; an asyncio cache on ``memory://name``
shares its data with blocking caches on that name.
"""

from __future__ import annotations

from cachecore.aio.cache import AsyncBaseRedisCache
from cachecore.aio.config import from_config, from_url, get_cache

__all__ = ["AsyncBaseRedisCache", "from_config", "from_url", "get_cache"]
