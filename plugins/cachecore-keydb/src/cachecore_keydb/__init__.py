"""cachecore backend for KeyDB, through redis-py (KeyDB speaks the Redis protocol).

Installing this distribution makes ``keydb://`` and ``keydbs://`` (TLS) URLs work with
:func:`cachecore.from_url`, and ``keydb+cluster://host:port,host:port/`` through
redis-py's ``RedisCluster`` (the test suite runs the conformance suite on a real KeyDB
6.3.4 cluster). KeyDB's sentinels are reached with ``redis+sentinel://``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import cachecore
from cachecore.server_cache import ServerBackendPlugin, ServerCache


class KeyDBCache(ServerCache):
    """A cache on a KeyDB server: ``KeyDBCache(host="localhost", port=6379,
    password=None, db=0, default_timeout=300, key_prefix=None, **client_kwargs)``,
    where ``host`` may be an existing client."""

    client_module = "redis"
    client_class_name = "Redis"
    # redis-py does not know KeyDB's schemes; the wire protocol is the same.
    scheme_aliases: ClassVar[Mapping[str, str]] = {"keydb": "redis", "keydbs": "rediss"}


BACKEND = cachecore.Backend(
    name="keydb",
    schemes=("keydb", "keydbs", "keydb+cluster", "keydbs+cluster"),
    description="KeyDB via redis-py",
    cache_class=KeyDBCache,
)


plugin = ServerBackendPlugin(BACKEND)
"""The plugin object the ``cachecore`` entry point names."""
