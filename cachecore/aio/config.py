"""Building asyncio caches from configuration, with the rules (and the code) of
:mod:`cachecore.config`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecore import config, observability, plugins
from cachecore.adapters.aio import async_transport_for
from cachecore.aio.cache import AsyncBaseRedisCache
from cachecore.errors import ConfigurationError


def from_url(url: str, **options: Any) -> AsyncBaseRedisCache:
    """Build an asyncio cache for ``url``: the same URLs, options and checks as
    :func:`cachecore.from_url`. No connection is opened until the first call.

    ``coalesce_reads`` (default true; blocking caches ignore it) merges concurrent
    ``get`` calls into one ``MGET``: see :class:`~cachecore.aio.AsyncBaseRedisCache`.
    The circuit breaker works as for blocking caches; the near cache is not available
    on asyncio caches: asking for it is a :class:`~cachecore.ConfigurationError`.

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option, or a backend whose plugin
        has no asyncio support (naming the plugin).
    """
    plan = config.plan_cache(url, options)
    if plan.cache_options.get("near_cache") or "near_cache_size" in plan.cache_options:
        raise ConfigurationError(
            "near_cache is not supported by the asyncio cache (cachecore.aio); "
            "remove it or use the blocking cache"
        )

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
