"""The first-party server plugins as users construct them: drop-in classes, TLS, ACL."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from cachecore_keydb import KeyDBCache
from cachecore_redis import RedisCache
from cachecore_valkey import ValkeyCache

import cachecore
from cachecore import BaseRedisCache, ServerCache
from cachecore.errors import BackendError, ConfigurationError
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess, make_tls_files

CLASSES = {"redis": RedisCache, "valkey": ValkeyCache, "keydb": KeyDBCache}


@pytest.fixture
def server(binary: ServerBinary, cachecore_servers: ServerPool) -> ServerProcess:
    shared = cachecore_servers.shared(binary)
    shared.client().flushdb()
    return shared


@pytest.mark.parametrize("name", CLASSES)
def test_drop_in_constructor(name: str, server: ServerProcess) -> None:
    cache = CLASSES[name](
        host=server.host, port=server.port, db=3, default_timeout=60, key_prefix="dropin:"
    )
    assert cache.set("k", {"v": 1}) is True
    assert cache.get("k") == {"v": 1}
    assert server.client(db=3).exists("dropin:k") == 1
    assert server.client(db=0).exists("dropin:k") == 0
    assert repr(cache) == (
        f"<{CLASSES[name].__name__} {server.host}:{server.port}/3 prefix='dropin:'>"
    )


@pytest.mark.parametrize("name", CLASSES)
def test_url_builds_the_plugin_class(name: str, server: ServerProcess) -> None:
    cache = cachecore.from_url(server.url(name) + "?socket_timeout=2.5&max_connections=4")
    assert type(cache) is CLASSES[name]
    kwargs = cache._write_client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["socket_connect_timeout"] == 1.0
    assert cache._write_client.connection_pool.max_connections == 4


def test_existing_client_is_used_as_is(server: ServerProcess) -> None:
    client = redis.Redis(host=server.host, port=server.port)
    cache = RedisCache(client, key_prefix="existing:")
    assert cache._write_client is client
    assert cache.set("k", 1) and client.get("existing:k") == b"1"
    with pytest.raises(TypeError, match="existing client"):
        RedisCache(client, socket_timeout=1)


def test_plain_base_class_on_a_redis_py_client(server: ServerProcess) -> None:
    cache = BaseRedisCache(redis.Redis(host=server.host, port=server.port), 300, "plain:")
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.get_dict("a", "b") == {"a": 1, "b": 2}


def test_decode_responses_rejected() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisCache(decode_responses=True)


def test_server_cache_without_library_fails_loudly() -> None:
    with pytest.raises(ConfigurationError, match="client_module"):
        ServerCache(host="localhost")


def test_check_connection_raises_when_unreachable(binary: ServerBinary) -> None:
    with ServerProcess(binary) as down:
        port = down.port
    with pytest.raises(BackendError, match="cannot reach"):
        ValkeyCache(host="127.0.0.1", port=port, check_connection=True)


def _tls_binary(binaries: list[ServerBinary]) -> ServerBinary:
    capable = [b for b in binaries if b.tls]
    if not capable:
        pytest.skip("no TLS-capable server binary: apt-get install redis-server (Debian)")
    return capable[-1]


@pytest.fixture(scope="module")
def tls_server(
    cachecore_server_binaries: list[ServerBinary], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    binary = _tls_binary(cachecore_server_binaries)
    tls = make_tls_files(tmp_path_factory.mktemp("tls"))
    with ServerProcess(binary, tls=tls, acl_users={"app": "s3cret-pass"}) as server:
        yield server, tls


@pytest.mark.parametrize("scheme", ["rediss", "valkeys", "keydbs"])
def test_tls_with_acl_user(tls_server: Any, scheme: str) -> None:
    server, tls = tls_server
    query = urllib.parse.urlencode({"ssl_ca_certs": str(tls.ca_cert), "key_prefix": "tls:"})
    url = f"{scheme}://app:s3cret-pass@{server.host}:{server.port}/0?{query}"
    cache = cachecore.from_url(url)
    assert cache.set("k", "over tls") is True
    assert cache.get("k") == "over tls"
    assert "s3cret-pass" not in repr(cache)


def test_tls_client_certificate_options(tls_server: Any) -> None:
    server, tls = tls_server
    cache = cachecore.from_url(
        f"rediss://app:s3cret-pass@{server.host}:{server.port}/0",
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        ssl_cert_reqs="required",
    )
    assert cache.ping() is True


def test_tls_wrong_password_is_a_clear_error(tls_server: Any, caplog: Any) -> None:
    server, tls = tls_server
    url = f"rediss://app:wrong@{server.host}:{server.port}/0?ssl_ca_certs={tls.ca_cert}"
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cachecore.from_url(url).get("k") is None
    assert "AuthenticationError" in caplog.text or "invalid username-password" in caplog.text
    with pytest.raises(BackendError, match=r"username-password|WRONGPASS|Authentication"):
        cachecore.from_url(url, raise_errors=True).set("k", 1)


def test_tls_url_without_ca_fails_verification(tls_server: Any) -> None:
    server, _ = tls_server
    cache = cachecore.from_url(
        f"rediss://app:s3cret-pass@{server.host}:{server.port}/0", raise_errors=True
    )
    with pytest.raises(BackendError, match=r"certificate|SSL"):
        cache.get("k")


def test_plain_scheme_against_tls_port_fails(tls_server: Any) -> None:
    server, _ = tls_server
    cache = cachecore.from_url(f"redis://app:s3cret-pass@{server.host}:{server.port}/0")
    assert cache.set("k", 1) is False


def test_unix_socket_url(
    binary: ServerBinary, tmp_path: Path, cachecore_fresh_server: Callable[..., ServerProcess]
) -> None:
    socket_path = tmp_path / "s.sock"
    cachecore_fresh_server(binary, extra_args=["--unixsocket", str(socket_path)])
    cache = cachecore.from_url(f"unix://{socket_path}?db=2&key_prefix=sock:")
    assert cache.set("k", "via socket") is True
    assert cache.get("k") == "via socket"
