"""The native async methods of ``cachecore.contrib.django.CachecoreCache`` (issue 13).

Django's own suite has no async tests for a cache that stores anything (its
``tests_async.py`` covers the dummy cache only), so these tests check each ``a*`` method
against the Django semantics of its sync twin, on ``memory://``, the newest Valkey and
the newest Redis (the async clients differ: valkey-py and redis-py), with values crossing
between the sync and async methods; then event loops (two ``asyncio.run``, loops in
several threads at once, Django's ``async_to_sync``), connections closed, faults, and an
async view served through Django's ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import CacheKeyWarning, caches
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path
from helpers import cachecore_warnings, writes_announced

import cachecore.aio
from cachecore import BackendError
from cachecore.contrib.django import CachecoreCache
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess, find_server_binaries

NEWEST = {b.kind: b for b in find_server_binaries()}  # sorted: the last of a kind wins
SERVERS = [NEWEST[kind] for kind in ("valkey", "redis") if kind in NEWEST]
TARGETS = ["memory", *(b.id for b in SERVERS)]


@pytest.fixture(scope="module", autouse=True)
def _django_settings() -> None:
    if not settings.configured:
        settings.configure()


@pytest.fixture(params=TARGETS)
def url(request: pytest.FixtureRequest, cachecore_servers: ServerPool) -> Iterator[str]:
    """A URL to an empty database (4) of the target, emptied again after the test."""
    if request.param == "memory":
        name = f"memory://django-async-{uuid.uuid4().hex}"
        yield name
        cachecore.from_url(name).clear()
        return
    binary = next(b for b in SERVERS if b.id == request.param)
    server = cachecore_servers.shared(binary)
    yield server.url(binary.kind, db=4)
    server.client(db=4).flushdb()


def backend(location: str, **params: Any) -> CachecoreCache:
    """A backend built the way Django's CacheHandler builds one from a CACHES entry."""
    return CachecoreCache(location, params)


def ttl(cache: CachecoreCache, key: str) -> int:
    """The server's TTL of Django ``key`` (version 1), read through the sync cache."""
    seconds: int = cache.cachecore_cache.client.ttl(cache.make_key(key))
    return seconds


# -- each method, with Django's semantics, crossing sync and async -----------------------


def test_aget_aset_aadd_follow_djangos_timeouts(url: str) -> None:
    cache = backend(url, TIMEOUT=120)

    async def main() -> None:
        await cache.aset("default", {"a": 1})
        assert cache.get("default") == {"a": 1}  # written async, read sync
        assert 110 < ttl(cache, "default") <= 120
        await cache.aset("forever", 1, timeout=None)
        assert ttl(cache, "forever") == -1
        for gone in (0, -5, 0.5):
            cache.set("dropped", "old", timeout=None)
            await cache.aset("dropped", "new", timeout=gone)
            assert not cache.has_key("dropped")  # not stored, and the old value removed
        cache.set("none", None)
        assert await cache.aget("none", "default") is None  # a stored None is not a miss
        assert await cache.aget("absent", "default") == "default"
        assert await cache.aget("absent") is None
        assert await cache.aadd("none", 2) is False
        assert await cache.aadd("new", 2, timeout=None) is True
        assert cache.get("new") == 2 and ttl(cache, "new") == -1
        assert await cache.aadd("never", "x", timeout=0) is True
        assert not cache.has_key("never")
        with pytest.raises(Exception, match=r"pickle|Pickl"):
            await cache.aset("lambda", lambda: 1, timeout=0)  # unpicklable fails alike

    asyncio.run(main())


def test_aget_many_aset_many_adelete_many(url: str) -> None:
    cache = backend(url)

    async def main() -> None:
        assert await cache.aset_many({}) == []
        assert await cache.aset_many({"a": 1, "b": None, 3: "three"}) == []
        assert cache.get_many(["a", "b", 3, "c"]) == {"a": 1, "b": None, 3: "three"}
        cache.set("c", [1, 2])
        assert await cache.aget_many(["a", "b", 3, "c", "absent"]) == {
            "a": 1,
            "b": None,
            3: "three",
            "c": [1, 2],
        }
        assert await cache.aset_many({"a": 9, "b": 9}, timeout=0) == []
        assert cache.get_many(["a", "b"]) == {}
        await cache.adelete_many([3, "absent"])
        await cache.adelete_many([])
        assert cache.get_many([3, "c"]) == {"c": [1, 2]}

    asyncio.run(main())


def test_adelete_ahas_key_atouch(url: str) -> None:
    cache = backend(url)

    async def main() -> None:
        cache.set("none", None, timeout=10)
        assert await cache.ahas_key("none") is True  # a stored None counts
        assert await cache.ahas_key("absent") is False
        assert await cache.atouch("none", timeout=None) is True
        assert ttl(cache, "none") == -1
        assert await cache.atouch("none", timeout=50) is True
        assert 40 < ttl(cache, "none") <= 50
        assert await cache.atouch("absent") is False
        assert await cache.adelete("none") is True
        assert await cache.adelete("none") is False
        cache.set("t", 1)
        assert await cache.atouch("t", timeout=0) is True  # 0 deletes, as touch does
        assert not cache.has_key("t")

    asyncio.run(main())


def test_aincr_adecr_are_atomic_and_never_create_the_key(url: str) -> None:
    cache = backend(url)

    async def main() -> None:
        cache.set("hits", 0, timeout=100)
        await asyncio.gather(*(cache.aincr("hits") for _ in range(50)))
        assert cache.get("hits") == 50
        assert 90 < ttl(cache, "hits") <= 100  # the timeout is kept
        assert await cache.adecr("hits", 10) == 40
        with pytest.raises(ValueError, match="'absent' not found"):
            await cache.aincr("absent")
        with pytest.raises(ValueError, match="'absent' not found"):
            await cache.adecr("absent")
        assert not cache.has_key("absent")
        await cache.aset("text", "abc")
        with pytest.raises(TypeError, match="not an integer"):
            await cache.aincr("text")

    asyncio.run(main())


def test_aget_or_set_versions_and_aclear(url: str) -> None:
    cache = backend(url, VERSION=2)

    async def main() -> None:
        assert await cache.aget_or_set("k", lambda: "computed") == "computed"
        assert cache.get("k") == "computed"
        assert await cache.aget_or_set("k", "other") == "computed"
        await cache.aset("v", "one", version=5)
        assert cache.get("v") is None and cache.get("v", version=5) == "one"
        assert await cache.aincr_version("v", version=5) == 6
        assert await cache.aget("v", version=6) == "one"
        assert await cache.adecr_version("v", version=6) == 5
        assert await cache.aget("v", version=5) == "one"
        assert await cache.aclear() is True
        assert cache.get_many(["k", "v"]) == {} and cache.get("v", version=5) is None

    asyncio.run(main())


def test_async_methods_validate_keys_as_django_does(url: str) -> None:
    cache = backend(url)

    async def main() -> None:
        with pytest.warns(CacheKeyWarning, match="memcached"):
            await cache.aset("has space", 1)
        with pytest.warns(CacheKeyWarning):
            assert await cache.aget("has space") == 1
        with pytest.warns(CacheKeyWarning):
            assert await cache.aget_many(["has space"]) == {"has space": 1}

    asyncio.run(main())


def test_key_function_applies_and_near_cache_options_are_left_to_sync(url: str) -> None:
    cache = backend(url, KEY_PREFIX="shop", KEY_FUNCTION=_slash_key)
    asyncio.run(cache.aset("k", "v"))
    assert cachecore.from_url(url).get("shop/1/k") == "v"  # the key function made the key
    if url.startswith("memory"):
        return  # no near cache on memory://
    name = f"near-{uuid.uuid4().hex}"
    for location, options in (
        (url, {"near_cache": True, "near_cache_size": 10, "client_name": name}),
        (f"{url}?near_cache=true&near_cache_size=10&client_name={name}x", {}),
    ):
        near = backend(location, KEY_PREFIX="near", OPTIONS=options)
        client = near.cachecore_cache.client
        try:
            near.set("n", 1)
            deadline = time.monotonic() + 5
            while len(client) == 0:  # until the value is held locally
                assert near.get("n") == 1 and time.monotonic() < deadline
                time.sleep(0.01)
            seen = client.invalidations
            assert asyncio.run(near.aincr("n")) == 2  # no ConfigurationError
            writes_announced(client, seen)
            assert near.get("n") == 2  # the async write invalidated the local copy
        finally:
            near.cachecore_cache.close()  # stops the invalidation thread


def _slash_key(key: str, prefix: str, version: int) -> str:
    return f"{prefix}/{version}/{key}"


def test_async_methods_run_on_the_asyncio_cache(url: str) -> None:
    cache = backend(url)
    sync_before = cache.cachecore_cache.stats()
    # Shared by every backend on this URL in this thread: count from here.
    async_before = cache.async_cachecore_cache.stats()

    async def main() -> None:
        await cache.aset("k", 1)
        await cache.aset_many({"a": 1})
        await cache.aget("k")
        await cache.aget_many(["k", "a"])
        await cache.aincr("k")
        await cache.adelete("a")

    asyncio.run(main())
    # Django's default a* methods would have run the sync cache in a thread.
    sync_after = cache.cachecore_cache.stats()
    assert (sync_after.sets, sync_after.hits, sync_after.deletes) == (
        sync_before.sets,
        sync_before.hits,
        sync_before.deletes,
    )
    after = cache.async_cachecore_cache.stats()
    used = [
        getattr(after, name) - getattr(async_before, name)
        for name in ("sets", "hits", "increments", "deletes")
    ]
    assert used == [2, 3, 1, 1]


# -- event loops and connections ---------------------------------------------------------


def test_one_backend_across_loops_and_threads(url: str) -> None:
    cache = backend(url)
    asyncio.run(cache.aset("k", 1))
    assert asyncio.run(cache.aget("k")) == 1  # a second loop in the same thread
    results: list[Any] = []
    errors: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            # Django's async_to_sync: a new loop, in a thread of its own, for each call.
            results.append(async_to_sync(cache.aincr)("k"))
        except BaseException as exc:
            errors.append(exc)

    async def slow_loop() -> None:
        # While this loop runs, the threads run their own loops on the same backend.
        for _ in range(20):
            await cache.aget("k")
            await asyncio.sleep(0.005)

    cache.set("k", 0)
    threads = [threading.Thread(target=in_a_thread) for _ in range(8)]
    for thread in threads:
        thread.start()
    asyncio.run(slow_loop())
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == list(range(1, 9))


@pytest.fixture
def server_url(cachecore_servers: ServerPool) -> tuple[ServerProcess, str]:
    binary = SERVERS[0]
    server = cachecore_servers.shared(binary)
    return server, server.url(binary.kind, db=4)


def _connections(server: ServerProcess, name: str) -> int:
    return sum(1 for c in server.client().client_list() if c.get("name") == name)


def test_connections_close_with_the_loop_and_on_aclose(
    server_url: tuple[ServerProcess, str],
) -> None:
    server, url = server_url
    name = f"django-async-{uuid.uuid4().hex[:8]}"
    cache = backend(url, OPTIONS={"client_name": name})

    async def busy() -> None:
        await asyncio.gather(*(cache.aset(f"k{i}", i) for i in range(5)))
        assert _connections(server, name) >= 2  # several connections were open

    for _ in range(3):
        asyncio.run(busy())
        assert _connections(server, name) == 0  # closed as each loop ended

    async def closing() -> None:
        assert await cache.aget("k1") == 1
        assert _connections(server, name) == 1
        await cache.aclose()
        assert _connections(server, name) == 0
        assert await cache.aget("k2") == 2  # reconnects

    asyncio.run(closing())


# -- faults ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_url() -> Iterator[str]:
    """The URL of a server that was running and is now stopped (nothing listens)."""
    with ServerProcess(SERVERS[0]) as server:
        server.stop()
        yield server.url(SERVERS[0].kind)


ASYNC_FAULTS: dict[str, tuple[Any, Any]] = {
    "aget": (lambda c: c.aget("k", "default"), "default"),
    "aget_many": (lambda c: c.aget_many(["a", "b"]), {}),
    "ahas_key": (lambda c: c.ahas_key("k"), False),
    "aset": (lambda c: c.aset("k", 1), None),
    "aadd": (lambda c: c.aadd("k", 1), False),
    "aset_many": (lambda c: c.aset_many({"a": 1, "b": 2}), ["a", "b"]),
    "adelete": (lambda c: c.adelete("k"), False),
    "adelete_many": (lambda c: c.adelete_many(["a", "b"]), None),
    "atouch": (lambda c: c.atouch("k", 10), False),
    "aincr": (lambda c: c.aincr("k"), None),
    "aclear": (lambda c: c.aclear(), False),
}
"""Each async method on a dead server, with the value Django code gets back (the same
as its sync twin's, see test_django.FAULTS)."""


@pytest.mark.parametrize("method", list(ASYNC_FAULTS))
def test_a_dead_server_gives_fault_values_and_one_warning(
    dead_url: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    call, expected = ASYNC_FAULTS[method]
    cache = backend(dead_url, KEY_PREFIX=uuid.uuid4().hex)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert asyncio.run(call(cache)) == expected
    assert len(cachecore_warnings(caplog)) == 1


@pytest.mark.parametrize("method", list(ASYNC_FAULTS))
def test_raise_errors_raises_backend_error(dead_url: str, method: str) -> None:
    call, _ = ASYNC_FAULTS[method]
    cache = backend(dead_url, OPTIONS={"raise_errors": True})
    with pytest.raises(BackendError):
        asyncio.run(call(cache))


# -- an async view through Django ---------------------------------------------------------


async def counting_view(request: HttpRequest) -> HttpResponse:
    cache = caches["default"]
    await cache.aadd("visits", 0)
    visits = await cache.aincr("visits")
    return HttpResponse(str(visits))


urlpatterns = [path("count", counting_view)]


def test_an_async_view_counts_through_djangos_async_client(url: str) -> None:
    entry = {"BACKEND": "cachecore.contrib.django.CachecoreCache", "LOCATION": url}
    with override_settings(ROOT_URLCONF=__name__, CACHES={"default": entry}):

        async def visit() -> list[bytes]:
            client = AsyncClient()
            return [(await client.get("/count")).content for _ in range(3)]

        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            assert asyncio.run(visit()) == [b"1", b"2", b"3"]
            assert caches["default"].get("visits") == 3  # the sync method reads it
