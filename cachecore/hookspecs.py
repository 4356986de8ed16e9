"""The plugin contract: the hooks a cachecore backend plugin implements.

A plugin is a module (or object) with functions marked ``@cachecore.hookimpl``, made
known through the ``cachecore`` entry-point group of its distribution::

    [project.entry-points.cachecore]
    mybackend = "cachecore_mybackend"

Hooks describe; they never connect. Only ``cachecore_create_client`` may open a
connection, and only when a user asks for a cache of that plugin's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from cachecore.types import Backend, SerializerSpec

if TYPE_CHECKING:
    from cachecore.observability import Observer

PROJECT_NAME = "cachecore"
"""The pluggy project name, which is also the entry-point group."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def cachecore_backends() -> Sequence[Backend]:
    """Return the backends this plugin provides.

    Called once when the plugin manager is built; must not open sockets or import
    heavy optional modules that may be missing. Example::

        @cachecore.hookimpl
        def cachecore_backends():
            return [cachecore.Backend(name="mydb", schemes=("mydb",),
                                      description="MyDB over RESP")]
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def cachecore_create_client(backend: Backend, url: str, options: Mapping[str, Any]) -> Any:
    """Build a client for ``backend`` from ``url`` and client ``options``.

    cachecore calls this hook only on the plugin whose ``cachecore_backends`` declared
    ``backend``; returning None means "no client" and is reported as a configuration
    error. ``url`` is the user's URL with its query string removed; ``options`` holds
    the client options (``socket_timeout``...), already converted to Python types (or
    strings for names cachecore does not know). The client must speak the redis-py API
    (``execute_command``, ``pipeline``). Raise ``TypeError`` or ``ValueError`` for an
    option the client does not accept; the host reports it as a
    :class:`~cachecore.ConfigurationError` naming the backend. Example::

        @cachecore.hookimpl
        def cachecore_create_client(backend, url, options):
            return redis.Redis.from_url(url.replace("mydb://", "redis://", 1), **options)
    """
    raise NotImplementedError


@hookspec
def cachecore_serializers() -> Sequence[SerializerSpec]:
    """Return wire formats this plugin provides, selectable by name.

    Example::

        @cachecore.hookimpl
        def cachecore_serializers():
            return [cachecore.SerializerSpec("cbor", CborSerializer, "CBOR via cbor2")]
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def cachecore_create_async_client(backend: Backend, url: str, options: Mapping[str, Any]) -> Any:
    """Build an asyncio client for ``backend`` from ``url`` and client ``options``.

    The asyncio twin of :func:`cachecore_create_client`, called by
    :func:`cachecore.aio.from_url` (and ``from_config``, ``get_cache``) with the same
    arguments and rules: only on the plugin that declared ``backend``, None reported as
    a configuration error, ``TypeError``/``ValueError`` for a rejected option. Return an
    asyncio client with redis-py's API (``redis.asyncio.Redis``,
    ``valkey.asyncio.Valkey``, their cluster and Sentinel clients), or an
    :class:`~cachecore.transport.AsyncTransport` of your own. Must not connect: the
    first command does. A plugin that does not implement this hook keeps working for
    blocking caches; asking it for an asyncio cache raises a ``ConfigurationError``
    naming the plugin. Example::

        @cachecore.hookimpl
        def cachecore_create_async_client(backend, url, options):
            return redis.asyncio.Redis.from_url(url.replace("mydb://", "redis://", 1), **options)
    """
    raise NotImplementedError


@hookspec
def cachecore_cache_observer(cache: Any) -> Observer | None:
    """Return an observer for ``cache``, or None to leave it alone.

    Called once for each cache built from configuration (``from_url``, ``from_config``,
    ``get_cache``, blocking or asyncio), after it is built; must not block. The
    observer's ``on_call(event)`` then receives a
    :class:`~cachecore.observability.CallEvent` (operation, outcome, duration in
    seconds, fault kind, key, backend) after every call of that cache (a random
    sample of calls with the ``metrics_sample_rate`` option below 1), on the calling
    thread: keep it quick (hand events to a queue or a client that batches) and never
    raise. When no plugin returns an observer the cache runs its ordinary drivers and
    pays nothing. ``cache.stats()`` holds the counters (hits, misses, faults...) for
    exporters that poll instead. Example, a StatsD exporter::

        class StatsdObserver:
            def __init__(self, client):
                self.client = client

            def on_call(self, event):
                self.client.timing(f"cachecore.{event.operation}.{event.outcome}",
                                   event.duration * 1000)

        @cachecore.hookimpl
        def cachecore_cache_observer(cache):
            return StatsdObserver(statsd.StatsClient("localhost", 8125))
    """
    raise NotImplementedError
