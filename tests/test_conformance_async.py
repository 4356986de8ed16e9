"""The shipped conformance suite on the asyncio API, for every backend and server binary.

Each binary runs with its own kind's plugin (a Valkey binary through valkey-py, a Redis
or KeyDB binary through redis-py), and the KeyDB plugin also on the newest Redis when no
KeyDB binary is found: every backend and every binary, without the blocking suite's full
cross product (the protocol under test is the same code; the client libraries and server
binaries are what vary).
"""

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
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries


def _pairs() -> list[tuple[str, ServerBinary]]:
    binaries = find_server_binaries()
    pairs = [(binary.kind, binary) for binary in binaries]
    kinds = {binary.kind for binary in binaries}
    redis_binaries = [b for b in binaries if b.kind == "redis"]
    if "keydb" not in kinds and redis_binaries:
        pairs.append(("keydb", redis_binaries[-1]))
    return pairs


PAIRS = _pairs()


@pytest.fixture(params=PAIRS, ids=[f"{scheme}-{binary.id}" for scheme, binary in PAIRS])
def pair(request: pytest.FixtureRequest) -> tuple[str, ServerBinary]:
    """(plugin URL scheme, server binary)."""
    return request.param  # type: ignore[no-any-return]


class TestAsyncMemoryBackend(AsyncCacheConformance):
    """The embedded default, on fakeredis' asyncio client."""

    @pytest.fixture
    def async_cache_factory(self) -> AsyncCacheFactory:
        namespace = uuid.uuid4().hex
        return lambda **options: cachecore.aio.from_url(f"memory://{namespace}", **options)


class TestAsyncServerBackends(AsyncCacheConformance):
    """Every binary through its plugin's asyncio client (see the module docstring)."""

    @pytest.fixture
    def async_cache_factory(
        self, pair: tuple[str, ServerBinary], cachecore_servers: ServerPool
    ) -> AsyncCacheFactory:
        scheme, binary = pair
        server = cachecore_servers.shared(binary)
        server.client().flushdb()
        url = server.url(scheme)
        return lambda **options: cachecore.aio.from_url(url, **options)


class TestAsyncServerFaults(AsyncServerFaultConformance):
    """Faults on every binary through its plugin's asyncio client."""

    @pytest.fixture
    def fault_server(
        self,
        pair: tuple[str, ServerBinary],
        cachecore_fresh_server: Callable[..., ServerProcess],
    ) -> ServerProcess:
        return cachecore_fresh_server(pair[1])

    @pytest.fixture
    def async_cache_factory(
        self, pair: tuple[str, ServerBinary], fault_server: ServerProcess
    ) -> AsyncCacheFactory:
        url = fault_server.url(pair[0])
        return lambda **options: cachecore.aio.from_url(url, **options)
