"""The near cache on the asyncio cache (``cachecore.aio.from_url(url, near_cache=True)``):
local hits, invalidation by other clients' writes, its own writes, expiry, cancellation,
and the whole conformance suite through it. The local store and its invalidation
thread are the blocking near cache's (``tests/test_near_cache.py`` covers their faults);
here is what the asyncio side adds. Real server: the newest Valkey."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from helpers import near_cache_ready

import cachecore
import cachecore.aio
from cachecore.aio import AsyncBaseRedisCache
from cachecore.errors import ConfigurationError
from cachecore.near_cache import AsyncNearCacheClient
from cachecore.testing.aio_conformance import AsyncCacheConformance, AsyncCacheFactory
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess, newest_server_binary

LAG_BOUND = 0.25
"""Seconds after a writer's call returns by which every reader must see the write."""

NEWEST = newest_server_binary("valkey") or newest_server_binary("redis")
if NEWEST is None:
    pytest.skip("no valkey-server or redis-server binary found", allow_module_level=True)


@pytest.fixture(scope="module")
def server(cachecore_servers: ServerPool) -> ServerProcess:
    assert NEWEST is not None
    return cachecore_servers.shared(NEWEST)


@pytest.fixture
def prefix() -> str:
    return f"anear-{uuid.uuid4().hex[:8]}:"


async def _ready(cache: AsyncBaseRedisCache) -> AsyncNearCacheClient:
    near = cache.transport
    assert isinstance(near, AsyncNearCacheClient)
    await cache.get("warm-up")  # starts the invalidation thread
    await asyncio.to_thread(near_cache_ready, near)
    return near


def _server_reads(server: ServerProcess) -> int:
    stats = server.client().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


def test_hot_get_is_served_locally(server: ServerProcess, prefix: str) -> None:
    async def main() -> None:
        url = server.url("valkey")
        async with cachecore.aio.from_url(url, key_prefix=prefix, near_cache=True) as cache:
            await _ready(cache)
            assert await cache.set("hot", {"v": 1}) is True
            await asyncio.sleep(LAG_BOUND)  # our own write's announcement arrives
            assert await cache.get("hot") == {"v": 1}
            before, hits = _server_reads(server), cache.stats().near_cache
            assert hits is not None
            for _ in range(100):
                assert await cache.get("hot") == {"v": 1}
                assert await cache.get_many("hot") == [{"v": 1}]
            assert _server_reads(server) == before
            after = cache.stats().near_cache
            assert after is not None and after.hits == hits.hits + 200
            assert cache.stats().hits >= 200  # the cache's own counters count them too

    asyncio.run(main())


def test_writes_by_another_client_are_seen_within_the_lag(
    server: ServerProcess, prefix: str
) -> None:
    writer = cachecore.from_url(server.url("redis"), key_prefix=prefix)

    async def main() -> None:
        url = server.url("valkey")
        async with cachecore.aio.from_url(url, key_prefix=prefix, near_cache=True) as cache:
            await _ready(cache)
            for i in range(30):
                assert await cache.get("k") == (i - 1 if i else None)  # held locally
                writer.set("k", i)
                written = time.monotonic()
                while await cache.get("k") != i:
                    assert time.monotonic() - written < LAG_BOUND, f"write {i} not seen"
                    await asyncio.sleep(0.001)
            writer.delete("k")
            await asyncio.sleep(LAG_BOUND)
            assert await cache.get_many("k", "other") == [None, None]

    asyncio.run(main())
    writer.close()


def test_own_writes_are_visible_at_once_and_expiry_is_kept(
    server: ServerProcess, prefix: str
) -> None:
    async def main() -> None:
        url = server.url("valkey")
        async with cachecore.aio.from_url(url, key_prefix=prefix, near_cache=True) as cache:
            await _ready(cache)
            await cache.set("k", 1)
            assert await cache.get("k") == 1
            await cache.set("k", 2)
            assert await cache.get("k") == 2
            assert await cache.inc("k") == 3 and await cache.get("k") == 3
            await cache.set_many({"k": 4, "j": 5})
            assert await cache.get_many("k", "j") == [4, 5]
            await cache.delete_many("k")
            assert await cache.get("k") is None
            await cache.set("short", "v", timeout=1)
            assert await cache.get("short") == "v" and await cache.get("short") == "v"
            await asyncio.sleep(1.1)
            assert await cache.get("short") is None  # the local copy kept the TTL
            assert await cache.clear() is True
            assert await cache.get("j") is None

    asyncio.run(main())


def test_a_cancelled_fetch_leaves_nothing_in_flight(server: ServerProcess, prefix: str) -> None:
    from cachecore.testing.proxy import FaultProxy

    async def main(proxy: FaultProxy) -> None:
        url = f"valkey://{proxy.host}:{proxy.port}/0"
        async with cachecore.aio.from_url(url, key_prefix=prefix, near_cache=True) as cache:
            near = await _ready(cache)
            assert await cache.set("k", "v") is True
            await asyncio.sleep(LAG_BOUND)
            proxy.delay_replies(0.2)
            task = asyncio.ensure_future(cache.get("k"))
            await asyncio.sleep(0.05)  # the fetch is on its way
            assert near._pending, "the fetch was in flight"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not near._pending
            proxy.delay_replies(0)
            assert await cache.get("k") == "v"  # fetched and kept...
            hits = near.near_cache_stats().hits
            assert await cache.get("k") == "v"  # ...then served locally
            assert near.near_cache_stats().hits == hits + 1

    with FaultProxy(server.host, server.port) as proxy:
        asyncio.run(main(proxy))


@pytest.mark.parametrize("url", ["memory://near", "valkey+cluster://127.0.0.1:7000"])
def test_near_cache_needs_a_single_server(url: str) -> None:
    with pytest.raises(ConfigurationError, match="near_cache needs a single"):
        cachecore.aio.from_url(url, near_cache=True)


class TestAsyncNearCacheConformance(AsyncCacheConformance):
    """The whole asyncio suite through the near cache."""

    @pytest.fixture
    def async_cache_factory(self, server: ServerProcess) -> AsyncCacheFactory:
        server.client().flushdb()
        url = server.url("valkey")

        def factory(**options: Any) -> AsyncBaseRedisCache:
            return cachecore.aio.from_url(url, **{"near_cache": True, **options})

        return factory
