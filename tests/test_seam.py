"""The transport seam: which adapter a client gets, what the fast path leaves to the
client, and what importing cachecore costs. Real servers: the newest Valkey and Redis."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import uuid
from typing import Any

import pytest

import cachecore
from cachecore import BaseRedisCache
from cachecore.adapters import blocking, libraries
from cachecore.circuit_breaker import CircuitBreakerClient
from cachecore.testing.conformance import CacheConformance, CacheFactory
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries
from cachecore.transport import Transport


def _newest(kind: str) -> list[ServerBinary]:
    found = [b for b in find_server_binaries() if b.kind == kind]
    return found[-1:]


NEWEST = _newest("valkey") + _newest("redis")


@pytest.fixture(scope="module", params=NEWEST, ids=[b.id for b in NEWEST])
def server(request: pytest.FixtureRequest, cachecore_servers: ServerPool) -> ServerProcess:
    return cachecore_servers.shared(request.param)


@pytest.fixture(params=["redis", "valkey"])
def library(request: pytest.FixtureRequest) -> Any:
    return pytest.importorskip(request.param)


def _client_class(library: Any) -> Any:
    return library.Redis if library.__name__ == "redis" else library.Valkey


def test_import_cachecore_imports_no_client_library() -> None:
    script = (
        "import sys, cachecore, cachecore.aio\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('redis', 'valkey', 'fakeredis', 'hiredis', 'libvalkey'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_instrumentation_installed_after_the_cache_was_built_sees_every_call(
    library: Any, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _client_class(library)
    cache = BaseRedisCache(base(**server.client_kwargs()), key_prefix=f"late-{uuid.uuid4()}:")
    assert isinstance(cache.transport, blocking.PooledTransport)
    assert cache.set("a", 1) is True  # the fast path, before anyone watches
    seen: list[str] = []
    original = base.execute_command
    original_execute = library.client.Pipeline.execute

    @functools.wraps(original)
    def traced(self: Any, *args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return original(self, *args, **options)

    @functools.wraps(original_execute)
    def traced_execute(self: Any, *args: Any, **options: Any) -> Any:
        seen.append("pipeline")
        return original_execute(self, *args, **options)

    monkeypatch.setattr(base, "execute_command", traced)
    monkeypatch.setattr(library.client.Pipeline, "execute", traced_execute)
    assert cache.get("a") == 1
    assert cache.inc("n") == 1
    assert cache.set_many({"b": 2}) == ["b"]
    assert cache.get_many("a", "b") == [1, 2]
    assert seen == ["GET", "INCRBY", "pipeline", "MGET"]


def test_untested_client_version_uses_the_public_api(
    library: Any,
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    libraries._fast_path_tested.cache_clear()  # it logs once per library and version
    found = libraries.LIBRARIES[library.__name__]
    monkeypatch.setitem(
        libraries.LIBRARIES,
        library.__name__,
        libraries.ClientLibrary(found.name, found.distribution, found.client_class_name, (0, 1)),
    )
    with caplog.at_level(logging.DEBUG, logger="cachecore"):
        cache = BaseRedisCache(_client_class(library)(**server.client_kwargs()))
        again = BaseRedisCache(_client_class(library)(**server.client_kwargs()))
    assert type(cache.transport) is blocking.ClientTransport
    assert type(again.transport) is blocking.ClientTransport
    lines = [r.getMessage() for r in caplog.records if "fast path" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "execute_command" in lines[0]
    assert cache.set("k", 1) is True and cache.get("k") == 1


def test_sentinel_style_reader_is_a_transport_not_an_attribute(server: ServerProcess) -> None:
    import redis

    primary = redis.Redis(**server.client_kwargs())
    replica = redis.Redis(**server.client_kwargs())
    transport = blocking.ClientTransport(primary, reader=blocking.ClientTransport(replica))
    cache = BaseRedisCache(transport, key_prefix=f"rd-{uuid.uuid4()}:")
    assert cache.client is primary and cache._read_client is replica
    assert not hasattr(primary, "cachecore_read_client")
    assert cache.set("k", 1) is True and cache.get("k") == 1


def test_wrappers_are_transports_holding_transports(server: ServerProcess) -> None:
    import redis

    breaker = CircuitBreakerClient(redis.Redis(**server.client_kwargs()), threshold=2)
    assert isinstance(breaker, Transport)
    assert isinstance(breaker.inner, blocking.PooledTransport)
    assert not hasattr(breaker, "connection_pool")  # no attribute passes through
    cache = BaseRedisCache(breaker, key_prefix=f"cb-{uuid.uuid4()}:")
    assert cache.client is breaker and cache.client.state == "closed"
    assert cache.set("k", 1) is True and cache.get("k") == 1


class TestConformanceThroughThePublicAPI(CacheConformance):
    """The whole suite with the fast path off, as for a client version outside the tested
    range: every call through the client's ``execute_command`` and ``pipeline()``."""

    @pytest.fixture
    def cache_factory(
        self, cachecore_servers: ServerPool, library: Any, monkeypatch: pytest.MonkeyPatch
    ) -> CacheFactory:
        monkeypatch.setattr(libraries.ClientLibrary, "fast_path_tested", lambda self: False)
        server = cachecore_servers.shared(NEWEST[0])  # the newest Valkey: one is enough
        server.client().flushdb()
        url = server.url(library.__name__)

        def factory(**options: Any) -> BaseRedisCache:
            cache = cachecore.from_url(url, **options)
            assert type(cache.transport) is blocking.ClientTransport
            return cache

        return factory
