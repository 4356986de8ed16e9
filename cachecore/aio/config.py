"""Building asyncio caches from configuration, with the rules (and the code) of
:mod:`cachecore.config`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecore import config, observability, plugins
from cachecore.adapters.aio import async_transport_for
from cachecore.aio.cache import AsyncBaseRedisCache


def from_url(url: str, **options: Any) -> AsyncBaseRedisCache:
    """Build an asyncio cache for ``url``: the same URLs, options and checks as
    :func:`cachecore.from_url`. No connection is opened until the first call.

    ``coalesce_reads`` (default true; blocking caches ignore it) merges concurrent
    ``get`` calls into one ``MGET``: see :class:`~cachecore.aio.AsyncBaseRedisCache`.
    The circuit breaker and the near cache (``near_cache=true``, see
    :mod:`cachecore.near_cache`) work as for blocking caches; the near cache's
    invalidation thread connects through a blocking client of the same backend.

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option, or a backend whose plugin
        has no asyncio support (naming the plugin).
    """
    plan = config.plan_cache(url, options)
    near_cache = config.wants_near_cache(plan.scheme, plan.cache_options)

    def build() -> Any:
        return plugins.create_async_client(
            plan.backend, plan.bare_url, plan.client_options, plan.registry
        )

    # ``build`` again after a loop change where the client cannot just drop its
    # connections (see cachecore.adapters.aio).
    transport: Any = async_transport_for(build(), rebuild=build)
    breaker = plan.breaker_options()
    if breaker is not None:
        from cachecore.circuit_breaker import AsyncCircuitBreakerClient

        transport = AsyncCircuitBreakerClient(transport, **breaker)
    if near_cache:
        from cachecore.near_cache import AsyncNearCacheClient

        tracking = plugins.create_client(
            plan.backend, plan.bare_url, plan.client_options, plan.registry
        )
        transport = config.configured_object(
            AsyncNearCacheClient,
            transport,
            tracking,
            **config.near_cache_kwargs(plan.cache_options),
        )
    cache = config.configured_object(
        AsyncBaseRedisCache,
        transport,
        coalesce_reads=plan.cache_options.get("coalesce_reads", True),
        **plan.cache_kwargs(),
    )
    cache.description = plan.description
    observability.configure(cache, plan.cache_options, plan.registry)
    return cache


def from_config(mapping: Mapping[str, Any]) -> AsyncBaseRedisCache:
    """Build an asyncio cache from a mapping, as :func:`cachecore.from_config` does."""
    url, options = config.url_and_options(mapping)
    return from_url(url, **options)


def get_cache(*, default: str | None = config.DEFAULT_URL, **overrides: Any) -> AsyncBaseRedisCache:
    """The configured asyncio cache, found as :func:`cachecore.get_cache` finds it
    (``CACHECORE_URL``, ``[tool.cachecore]``, else ``default``; same logging and
    errors)."""
    return config.configured_cache(from_config, default, overrides)
