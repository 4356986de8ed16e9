"""The shipped conformance suite on the asyncio API, for every backend and server binary."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

import cachecore.aio
from cachecore.testing.aio_conformance import (
    AsyncCacheConformance,
    AsyncCacheFactory,
    AsyncServerFaultConformance,
)
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess


class TestAsyncMemoryBackend(AsyncCacheConformance):
    """The embedded default, on fakeredis' asyncio client."""

    @pytest.fixture
    def async_cache_factory(self) -> AsyncCacheFactory:
        namespace = uuid.uuid4().hex
        return lambda **options: cachecore.aio.from_url(f"memory://{namespace}", **options)


class TestAsyncServerBackends(AsyncCacheConformance):
    """redis, valkey and keydb plugins' asyncio clients, each against every binary."""

    @pytest.fixture
    def async_cache_factory(
        self, scheme: str, binary: ServerBinary, cachecore_servers: ServerPool
    ) -> AsyncCacheFactory:
        server = cachecore_servers.shared(binary)
        server.client().flushdb()
        url = server.url(scheme)
        return lambda **options: cachecore.aio.from_url(url, **options)


class TestAsyncServerFaults(AsyncServerFaultConformance):
    """Faults for each plugin's asyncio client against each binary."""

    @pytest.fixture
    def fault_server(
        self, binary: ServerBinary, cachecore_fresh_server: Callable[..., ServerProcess]
    ) -> ServerProcess:
        return cachecore_fresh_server(binary)

    @pytest.fixture
    def async_cache_factory(self, scheme: str, fault_server: ServerProcess) -> AsyncCacheFactory:
        url = fault_server.url(scheme)
        return lambda **options: cachecore.aio.from_url(url, **options)
