"""cachecore backend for Redis, through redis-py.

Installing this distribution makes ``redis://``, ``rediss://`` (TLS) and ``unix://``
URLs work with :func:`cachecore.from_url`, and ``redis+cluster://host:port,host:port/``
(Redis Cluster) and ``redis+sentinel://host:26379,.../service/db`` (Sentinel), see
:mod:`cachecore.topology`; :class:`RedisCache` is a drop-in for cachelib's ``RedisCache``.
"""

from __future__ import annotations

import cachecore
from cachecore.server_cache import ServerBackendPlugin, ServerCache


class RedisCache(ServerCache):
    """A cache on a Redis server; same constructor as cachelib's ``RedisCache``:
    ``RedisCache(host="localhost", port=6379, password=None, db=0, default_timeout=300,
    key_prefix=None, **client_kwargs)``, where ``host`` may be an existing client."""

    client_module = "redis"
    client_class_name = "Redis"


BACKEND = cachecore.Backend(
    name="redis",
    schemes=(
        "redis",
        "rediss",
        "unix",
        "redis+cluster",
        "rediss+cluster",
        "redis+sentinel",
        "rediss+sentinel",
    ),
    description="Redis via redis-py",
    cache_class=RedisCache,
)


plugin = ServerBackendPlugin(BACKEND)
"""The plugin object the ``cachecore`` entry point names."""
