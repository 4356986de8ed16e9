"""Building asyncio caches from configuration, with the rules of :mod:`cachecore.config`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecore import config, plugins
from cachecore.aio.cache import AsyncBaseRedisCache
from cachecore.errors import ConfigurationError
from cachecore.types import Backend


def create_async_client(
    backend: Backend, url: str, options: Mapping[str, Any], reg: plugins.Registry | None = None
) -> Any:
    """Ask the plugins for an asyncio client (or transport) of ``backend``.

    :raises ConfigurationError: the backend's plugin does not implement
        ``cachecore_create_async_client`` (naming it), or rejected an option.
    """
    reg = reg or plugins.registry()
    try:
        client = reg.manager.hook.cachecore_create_async_client(
            backend=backend, url=url, options=dict(options)
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            f"backend {backend.name!r} rejected the configuration: {exc}"
        ) from exc
    if client is None:
        raise ConfigurationError(
            f"backend {backend.name!r} from {backend.distribution} {backend.version} has no "
            "asyncio support: its plugin does not implement cachecore_create_async_client; "
            "use the blocking cache (cachecore.from_url) or upgrade the plugin"
        )
    return client


def from_url(url: str, **options: Any) -> AsyncBaseRedisCache:
    """Build an asyncio cache for ``url``: the same URLs and options as
    :func:`cachecore.from_url`. No connection is opened until the first call.

    The circuit breaker works as on blocking caches; the near cache is not available on
    asyncio caches: asking for it is a :class:`~cachecore.ConfigurationError`.

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option, or a backend without
        asyncio support.
    """
    plan = config.plan_cache(url, options)
    options = plan.cache_options
    if options.get("near_cache") or "near_cache_size" in options:
        raise ConfigurationError(
            "near_cache is not supported by the asyncio cache (cachecore.aio); "
            "remove it or use the blocking cache"
        )
    reg = plan.registry

    def build() -> Any:
        return create_async_client(plan.backend, plan.bare_url, plan.client_options, reg)

    from cachecore.adapters.aio import async_transport_for

    transport: Any = async_transport_for(build(), rebuild=build)
    if options.get("circuit_breaker") or any(n.startswith("circuit_breaker_") for n in options):
        from cachecore.circuit_breaker import AsyncCircuitBreakerClient

        transport = AsyncCircuitBreakerClient(
            transport,
            threshold=options.get("circuit_breaker_threshold", 5),
            reset_timeout=options.get("circuit_breaker_reset", 5.0),
        )
    cache = AsyncBaseRedisCache(
        transport,
        default_timeout=plan.cache_options.get("default_timeout", 300),
        key_prefix=plan.cache_options.get("key_prefix"),
        serializer=config.build_serializer(plan.cache_options, reg),
        raise_errors=plan.cache_options.get("raise_errors", False),
        max_value_size=plan.cache_options.get("max_value_size"),
    )
    cache.description = plan.description
    return cache


def from_config(mapping: Mapping[str, Any]) -> AsyncBaseRedisCache:
    """Build an asyncio cache from a mapping, as :func:`cachecore.from_config` does."""
    url, options = config.url_and_options(mapping)
    return from_url(url, **options)


def get_cache(**overrides: Any) -> AsyncBaseRedisCache:
    """The configured asyncio cache, found as :func:`cachecore.get_cache` finds it."""
    url, options = config.url_and_options(config.configured(overrides))
    return from_url(url, **options)
