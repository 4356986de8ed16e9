"""The conformance suite for asyncio caches: the blocking suite's tests, unchanged,
driven through :class:`~cachecore.testing.bridge.BlockingBridge`.

A backend's tests subclass :class:`AsyncCacheConformance` (and
:class:`AsyncServerFaultConformance`) and supply ``async_cache_factory``: a callable
taking cache options and returning an :class:`~cachecore.aio.AsyncBaseRedisCache` of
that backend on a real, empty database (``fault_server`` as for the blocking suite)::

    from cachecore.testing.aio_conformance import AsyncCacheConformance

    class TestMyBackendAsync(AsyncCacheConformance):
        @pytest.fixture
        def async_cache_factory(self, my_server):
            my_server.client().flushdb()
            return lambda **options: cachecore.aio.from_url(my_server.url("mydb"), **options)

Each test's caches share one event loop, on a thread of its own; calls from the tests'
threads are concurrent tasks on it. Every cache is closed (``aclose``) after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachecore.aio import AsyncBaseRedisCache
from cachecore.testing.bridge import BlockingBridge, LoopThread
from cachecore.testing.conformance import CacheConformance, ServerFaultConformance

AsyncCacheFactory = Callable[..., AsyncBaseRedisCache]


class _Bridged:
    @pytest.fixture
    def async_cache_factory(self) -> AsyncCacheFactory:
        """Return ``(**options) -> asyncio cache``; subclasses override."""
        raise NotImplementedError(
            "an asyncio conformance subclass must provide async_cache_factory"
        )

    @pytest.fixture
    def cache_factory(self, async_cache_factory: AsyncCacheFactory) -> Iterator[Callable[..., Any]]:
        """The blocking suite's factory: each asyncio cache behind a bridge."""
        loop = LoopThread()
        bridges: list[BlockingBridge] = []

        def factory(**options: Any) -> Any:
            bridge = BlockingBridge(async_cache_factory(**options), loop)
            bridges.append(bridge)
            return bridge

        yield factory
        try:
            for bridge in bridges:
                bridge.close()
        finally:
            loop.close()


class AsyncCacheConformance(_Bridged, CacheConformance):
    """:class:`~cachecore.testing.conformance.CacheConformance` on an asyncio cache."""


class AsyncServerFaultConformance(_Bridged, ServerFaultConformance):
    """:class:`~cachecore.testing.conformance.ServerFaultConformance` on an asyncio
    cache; subclasses also provide ``fault_server``."""
