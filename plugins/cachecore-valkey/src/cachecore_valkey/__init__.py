"""cachecore backend for Valkey, through valkey-py.

Installing this distribution makes ``valkey://`` and ``valkeys://`` (TLS) URLs work
with :func:`cachecore.from_url`, and ``valkey+cluster://host:port,host:port/`` (Valkey
Cluster) and ``valkey+sentinel://host:26379,.../service/db`` (Sentinel), see
:mod:`cachecore.topology`; :class:`ValkeyCache` is a drop-in for cachelib's ``ValkeyCache``.
"""

from __future__ import annotations

import cachecore
from cachecore.server_cache import ServerBackendPlugin, ServerCache


class ValkeyCache(ServerCache):
    """A cache on a Valkey server; same constructor as cachelib's ``ValkeyCache``:
    ``ValkeyCache(host="localhost", port=6379, password=None, db=0, default_timeout=300,
    key_prefix=None, **client_kwargs)``, where ``host`` may be an existing client."""

    client_module = "valkey"
    client_class_name = "Valkey"


BACKEND = cachecore.Backend(
    name="valkey",
    schemes=(
        "valkey",
        "valkeys",
        "valkey+cluster",
        "valkeys+cluster",
        "valkey+sentinel",
        "valkeys+sentinel",
    ),
    description="Valkey via valkey-py",
    cache_class=ValkeyCache,
)


plugin = ServerBackendPlugin(BACKEND)
"""The plugin object the ``cachecore`` entry point names."""
