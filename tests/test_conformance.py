"""The shipped conformance suite, run for every first-party backend on every server binary."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import cachecore
from cachecore.testing.conformance import (
    CacheConformance,
    CacheFactory,
    ServerFaultConformance,
)
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess


class TestMemoryBackend(CacheConformance):
    """The embedded default, on fakeredis."""

    @pytest.fixture
    def cache_factory(self) -> CacheFactory:
        namespace = uuid.uuid4().hex
        return lambda **options: cachecore.from_url(f"memory://{namespace}", **options)


class TestServerBackends(CacheConformance):
    """redis, valkey and keydb plugins, each against every server binary."""

    @pytest.fixture
    def cache_factory(
        self, scheme: str, binary: ServerBinary, cachecore_servers: ServerPool
    ) -> CacheFactory:
        server = cachecore_servers.shared(binary)
        server.client().flushdb()
        url = server.url(scheme)
        return lambda **options: cachecore.from_url(url, **options)


class TestServerFaults(ServerFaultConformance):
    """Faults for each plugin against each binary, on servers the tests stop and pause."""

    @pytest.fixture
    def fault_server(
        self, binary: ServerBinary, cachecore_fresh_server: Callable[..., ServerProcess]
    ) -> ServerProcess:
        return cachecore_fresh_server(binary)

    @pytest.fixture
    def cache_factory(self, scheme: str, fault_server: ServerProcess) -> CacheFactory:
        url = fault_server.url(scheme)

        def factory(**options: Any) -> cachecore.BaseRedisCache:
            return cachecore.from_url(url, **options)

        return factory
