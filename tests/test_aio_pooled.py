"""asyncio cache calls written straight onto the client's connection pool (the fast path
of ``cachecore.adapters.aio``), and the same calls through the client's public API.

These pin what the fast path must not change for a user: only plain clients of a tested
library version take it; keys are the bytes the client's own encoding makes; an error
reply is a fault and leaves the connection in step; whoever watches the client's calls
(a subclass, an instrumentation library patching the class after the cache was built,
redis-py's metrics) sees every one; and the whole conformance suite passes through the
public API too. Real servers: the newest Valkey and the newest Redis found.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import redis_py_metric_names

import cachecore.aio
from cachecore.adapters import aio, libraries
from cachecore.aio import AsyncBaseRedisCache
from cachecore.testing.aio_conformance import AsyncCacheConformance, AsyncCacheFactory
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess, newest_server_binary

NEWEST = [b for kind in ("valkey", "redis") if (b := newest_server_binary(kind)) is not None]


@pytest.fixture(scope="module", params=NEWEST, ids=[b.id for b in NEWEST])
def server(request: pytest.FixtureRequest, cachecore_servers: ServerPool) -> ServerProcess:
    """The session's running server for the newest Valkey, then the newest Redis."""
    return cachecore_servers.shared(request.param)


@pytest.fixture(params=["redis", "valkey"])
def library(request: pytest.FixtureRequest) -> Any:
    """redis-py's, then valkey-py's asyncio package (``redis.asyncio``...)."""
    pytest.importorskip(request.param)
    return __import__(f"{request.param}.asyncio", fromlist=["client"])


def _client_class(library: Any) -> Any:
    return library.Redis if library.__name__.startswith("redis") else library.Valkey


def _client(library: Any, server: ServerProcess, **options: Any) -> Any:
    return _client_class(library)(**server.client_kwargs(), **options)


def _prefix() -> str:
    return f"apooled-{uuid.uuid4().hex[:8]}:"


def _run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


async def _every_kind_of_call(cache: AsyncBaseRedisCache) -> None:
    """One call of each method that sends a command, with their results checked."""
    assert await cache.set("a", 1) is True
    assert await cache.add("a", 2) is False
    assert await cache.get("a") == 1
    assert await cache.has("a") is True
    assert await cache.inc("n") == 1
    assert await cache.delete("n") is True
    assert await cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert await cache.get_many("a", "b") == [1, 2]
    assert await cache.delete_many("a") == ["a"]


EVERY_COMMAND = ["SET", "SET", "GET", "EXISTS", "INCRBY", "UNLINK", "MGET", "UNLINK"]
"""The commands :func:`_every_kind_of_call` sends through ``execute_command`` (set_many
goes through the client's pipeline)."""


def test_plain_clients_take_the_fast_path_others_the_public_api(
    library: Any, server: ServerProcess
) -> None:
    base = _client_class(library)

    class Audited(base):  # type: ignore[misc, valid-type]
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            return await super().execute_command(*args, **options)

    async def main() -> None:
        plain = AsyncBaseRedisCache(_client(library, server))
        single = AsyncBaseRedisCache(_client(library, server, single_connection_client=True))
        audited = AsyncBaseRedisCache(Audited(**server.client_kwargs()))
        assert type(plain.transport) is aio.AsyncPooledTransport
        assert type(single.transport) is aio.AsyncClientTransport
        assert type(audited.transport) is aio.AsyncClientTransport
        for cache in (plain, single, audited):
            assert await cache.set("k", 1) is True and await cache.get("k") == 1
            await cache.aclose()

    _run(main)


def test_keys_are_encoded_as_the_client_says(
    library: Any, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Latin-1 client keeps its own packer; a UTF-8 one packs in C or, without
    # hiredis/libvalkey, in Python: the key's bytes on the server are the client's.
    prefix = _prefix()

    async def main(encoding: str) -> None:
        cache = AsyncBaseRedisCache(_client(library, server, encoding=encoding), key_prefix=prefix)
        assert await cache.set(f"clé-{encoding}", 1) is True
        assert await cache.get_many(f"clé-{encoding}") == [1]
        await cache.aclose()

    _run(lambda: main("latin-1"))
    monkeypatch.setattr(aio, "c_packer", lambda: None)
    _run(lambda: main("utf-8"))
    with server.client() as admin:
        assert admin.exists(f"{prefix}clé-latin-1".encode("latin-1")) == 1
        assert admin.exists(f"{prefix}clé-utf-8".encode()) == 1


def test_error_replies_are_faults_and_the_connection_stays_in_step(
    library: Any, server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        # One connection: a reply left unread would be the next call's answer.
        pool_class = library.ConnectionPool
        pool = pool_class(**server.client_kwargs(), max_connections=1)
        cache = AsyncBaseRedisCache(
            _client_class(library)(connection_pool=pool), key_prefix=_prefix()
        )
        assert type(cache.transport) is aio.AsyncPooledTransport
        assert await cache.set("text", "not a number") is True
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert await cache.inc("text") is None  # WRONGTYPE-style error reply: a fault
        assert any("inc" in r.getMessage() for r in caplog.records)
        assert await cache.get("text") == "not a number"
        full = cache._key("text")
        replies = await cache.transport.send_batch(
            [("SET", full, b"1"), ("INCRBY", full, "x"), ("GET", full)]
        )
        assert replies[0] in (True, b"OK")
        assert isinstance(replies[1], cache.transport.reply_errors)
        assert replies[2] == b"1"
        assert await cache.set("after", 2) is True and await cache.get("after") == 2
        await cache.aclose()

    _run(main)


def test_instrumentation_installed_after_the_cache_was_built_sees_every_call(
    library: Any, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As OpenTelemetry's, ddtrace's and Sentry's integrations do: wrap the class's
    # execute_command and the pipeline's execute in place, here after the cache exists.
    base = _client_class(library)
    pipeline_class = library.client.Pipeline
    seen: list[str] = []
    original, original_execute = base.execute_command, pipeline_class.execute

    @functools.wraps(original)
    async def traced(self: Any, *args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return await original(self, *args, **options)

    @functools.wraps(original_execute)
    async def traced_execute(self: Any, *args: Any, **options: Any) -> Any:
        seen.append("pipeline")
        return await original_execute(self, *args, **options)

    async def main() -> None:
        cache = AsyncBaseRedisCache(_client(library, server), key_prefix=_prefix())
        assert type(cache.transport) is aio.AsyncPooledTransport
        assert await cache.set("warm", 1) is True  # the fast path, before anyone watches
        assert seen == []
        monkeypatch.setattr(base, "execute_command", traced)
        monkeypatch.setattr(pipeline_class, "execute", traced_execute)
        await _every_kind_of_call(cache)
        await cache.aclose()

    _run(main)
    assert seen == [*EVERY_COMMAND[:6], "pipeline", *EVERY_COMMAND[6:]]


def test_untested_client_version_uses_the_public_api(
    library: Any,
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = library.__name__.partition(".")[0]
    libraries._fast_path_tested.cache_clear()  # it logs once per library and version
    found = libraries.LIBRARIES[name]
    monkeypatch.setitem(
        libraries.LIBRARIES,
        name,
        libraries.ClientLibrary(found.name, found.distribution, found.client_class_name, (0, 1)),
    )

    async def main() -> None:
        cache = AsyncBaseRedisCache(_client(library, server), key_prefix=_prefix())
        assert type(cache.transport) is aio.AsyncClientTransport
        assert await cache.set("k", 1) is True and await cache.get("k") == 1
        await cache.aclose()

    with caplog.at_level(logging.DEBUG, logger="cachecore"):
        _run(main)
    lines = [r.getMessage() for r in caplog.records if "fast path" in r.getMessage()]
    assert len(lines) == 1 and "execute_command" in lines[0], lines
    libraries._fast_path_tested.cache_clear()


_METRICS_CALLS = """
import asyncio
import redis.asyncio
from cachecore.aio import AsyncBaseRedisCache

async def main():
    # Built before the metrics are switched on: the switch is honoured per call.
    cache = AsyncBaseRedisCache(redis.asyncio.Redis(host=host, port=port), key_prefix="am:")
    metrics_on()
    assert await cache.set("a", 1) is True
    assert await cache.get("a") == 1
    assert await cache.get_many("a", "b") == [1, None]
    assert await cache.delete_many("a") == ["a"]
    await cache.aclose()

asyncio.run(main())
"""


def test_redis_py_metrics_see_every_call(server: ServerProcess) -> None:
    # redis-py 8 records a duration per command when its OpenTelemetry metrics are on;
    # the asyncio cache then sends through the client, so each call is recorded.
    pytest.importorskip("redis.observability.providers", reason="redis-py 8's metrics")
    recorded = redis_py_metric_names(server.host, server.port, _METRICS_CALLS)
    assert {"SET", "GET", "MGET", "UNLINK"} <= recorded, recorded


class TestAsyncConformanceThroughThePublicAPI(AsyncCacheConformance):
    """The whole asyncio suite with the fast path off, as for a client version outside the
    tested range: every call through the client's ``execute_command`` and ``pipeline()``
    (the other asyncio conformance runs take the fast path)."""

    @pytest.fixture(params=["redis", "valkey"])
    def async_cache_factory(
        self,
        request: pytest.FixtureRequest,
        cachecore_servers: ServerPool,
        monkeypatch: pytest.MonkeyPatch,
    ) -> AsyncCacheFactory:
        monkeypatch.setattr(libraries.ClientLibrary, "fast_path_tested", lambda self: False)
        server = cachecore_servers.shared(NEWEST[0])  # the newest Valkey: one is enough
        server.client().flushdb()
        url = server.url(request.param)

        def factory(**options: Any) -> AsyncBaseRedisCache:
            cache = cachecore.aio.from_url(url, **options)
            transport = cache.transport
            while hasattr(transport, "inner"):  # beneath a circuit breaker
                transport = transport.inner
            assert type(transport) is aio.AsyncClientTransport
            return cache

        return factory
