"""Cache calls written straight onto the client's connection pool (the fast path of
``cachecore.adapters.blocking``).

On a plain redis-py or valkey-py client the cache skips ``execute_command`` and packs its
commands in C. These tests pin what that must not change for a user: keys are the bytes
the client's own encoding makes, an error reply is a fault like any other and leaves the
connection usable, both client libraries work with and without the C packer, and whoever
watches the client's calls (a subclass, an instrumentation library, redis-py's metrics)
still sees every one. Real servers: the newest Valkey and the newest Redis found.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import pytest
from helpers import cachecore_warnings, redis_py_metric_names

from cachecore import BackendError, BaseRedisCache
from cachecore.adapters import blocking
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess, newest_server_binary

NEWEST = [b for kind in ("valkey", "redis") if (b := newest_server_binary(kind)) is not None]
CLIENT_LIBRARIES = ("redis", "valkey")


@pytest.fixture(scope="module", params=NEWEST, ids=[b.id for b in NEWEST])
def server(request: pytest.FixtureRequest, cachecore_servers: ServerPool) -> ServerProcess:
    """The session's running server for the newest Valkey, then the newest Redis."""
    return cachecore_servers.shared(request.param)


@pytest.fixture(params=CLIENT_LIBRARIES)
def library(request: pytest.FixtureRequest) -> Any:
    """The redis-py module, then the valkey-py module."""
    return pytest.importorskip(request.param)


def _client_class(library: Any) -> Any:
    """``redis.Redis`` or ``valkey.Valkey``."""
    return library.Redis if library.__name__ == "redis" else library.Valkey


def _client(library: Any, server: ServerProcess, **options: Any) -> Any:
    return _client_class(library)(**server.client_kwargs(), **options)


def _prefix() -> str:
    return f"pooled-{uuid.uuid4().hex[:8]}:"


def _python_packer_client(library: Any, server: ServerProcess, encoding: str) -> Any:
    """A client whose connections pack commands in pure Python with ``encoding``, as the
    client does when hiredis/libvalkey is not installed."""
    packer = library.connection.PythonRespSerializer(
        6000, library.connection.Encoder(encoding, "strict", False).encode
    )
    pool = library.ConnectionPool(
        **server.client_kwargs(), encoding=encoding, command_packer=packer
    )
    return _client_class(library)(connection_pool=pool)


def test_keys_are_encoded_as_the_client_says(library: Any, server: ServerProcess) -> None:
    # This client writes Latin-1 key names; the C packer would write UTF-8, so the
    # multi-key calls must pack with the client's own packer here.
    prefix = _prefix()
    client = _python_packer_client(library, server, "latin-1")
    cache = BaseRedisCache(client, key_prefix=prefix)
    assert cache.set("café", 1) is True
    assert cache.get_many("café", "thé") == [1, None]
    assert cache.set_many({"thé": 2, "crème": 3}) == ["thé", "crème"]
    assert [cache.get("thé"), cache.get("crème")] == [2, 3]
    assert cache.delete_many("café", "thé") == ["café", "thé"]
    assert cache.get_many("café", "thé", "crème") == [None, None, 3]
    with server.client() as admin:
        assert set(admin.scan_iter(match=prefix + "*")) == {prefix.encode() + b"cr\xe8me"}


@pytest.mark.parametrize("c_packer", [True, False], ids=["c-packer", "python-packer"])
def test_utf8_keys_are_stored_as_utf8(
    library: Any, server: ServerProcess, c_packer: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not c_packer:  # as installed without hiredis and libvalkey
        monkeypatch.setattr(blocking, "c_packer", lambda: None)
    prefix = _prefix()
    cache = BaseRedisCache(_client(library, server), key_prefix=prefix)
    assert cache.set_many({"café": 1, "数据": 2}) == ["café", "数据"]
    assert cache.get_many("数据", "café") == [2, 1]
    with server.client() as admin:
        stored = set(admin.scan_iter(match=prefix + "*"))
    assert stored == {(prefix + "café").encode(), (prefix + "数据").encode()}


@pytest.fixture
def limited_user(server: ServerProcess) -> tuple[str, str]:
    """An ACL user that may do everything but ``MGET`` and ``UNLINK``."""
    name, secret = f"limited-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with server.client() as admin:
        admin.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{secret}"],
            keys=["*"],
            commands=["+@all", "-mget", "-unlink"],
        )
    return name, secret


def test_error_reply_is_a_fault_and_the_connection_stays_usable(
    library: Any,
    server: ServerProcess,
    limited_user: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, secret = limited_user
    client = _client(library, server, username=name, password=secret)
    cache = BaseRedisCache(client, key_prefix=_prefix())
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get_many("a", "b") == [None, None]
        assert cache.delete_many("a", "b") == []
    warnings = cachecore_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "get_many" in warnings[0] and "mget" in warnings[0].lower()
    assert "delete_many" in warnings[1] and "unlink" in warnings[1].lower()
    # The refused commands' replies were read: the next calls get their own answers.
    assert cache.get("a") == 1
    assert cache.set_many({"c": 3}) == ["c"]
    assert [cache.get("b"), cache.get("c")] == [2, 3]


def test_error_reply_raises_with_raise_errors(
    library: Any, server: ServerProcess, limited_user: tuple[str, str]
) -> None:
    name, secret = limited_user
    client = _client(library, server, username=name, password=secret)
    cache = BaseRedisCache(client, key_prefix=_prefix(), raise_errors=True)
    with pytest.raises(BackendError, match="get_many"):
        cache.get_many("a")
    with pytest.raises(BackendError, match="delete_many"):
        cache.delete_many("a")
    assert cache.set("a", 1) is True
    assert cache.get("a") == 1


# -- whoever watches the client's calls still sees every cache call --------------------------


def _every_kind_of_call(cache: BaseRedisCache) -> None:
    """One call of each method that sends a command, with their results checked."""
    assert cache.set("a", 1) is True
    assert cache.add("a", 2) is False
    assert cache.get("a") == 1
    assert cache.has("a") is True
    assert cache.inc("n") == 1
    assert cache.delete("n") is True
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.get_many("a", "b") == [1, 2]
    assert cache.delete_many("a") == ["a"]


EVERY_COMMAND = ["SET", "SET", "GET", "EXISTS", "INCRBY", "UNLINK", "MGET", "UNLINK"]
"""The commands :func:`_every_kind_of_call` sends through ``execute_command`` (set_many
goes through the client's pipeline)."""


def test_a_subclass_with_its_own_execute_command_sees_every_call(
    library: Any, server: ServerProcess
) -> None:
    base = _client_class(library)
    seen: list[str] = []

    class Audited(base):  # type: ignore[misc, valid-type]
        def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(str(args[0]))
            return super().execute_command(*args, **options)

    cache = BaseRedisCache(Audited(**server.client_kwargs()), key_prefix=_prefix())
    _every_kind_of_call(cache)
    assert seen == EVERY_COMMAND


def test_an_instrumented_client_class_sees_every_call(
    library: Any, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As OpenTelemetry's, ddtrace's and Sentry's integrations do: wrap the class's
    # execute_command (and the pipeline's execute) in place.
    base = _client_class(library)
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
    cache = BaseRedisCache(base(**server.client_kwargs()), key_prefix=_prefix())
    _every_kind_of_call(cache)
    assert seen == [*EVERY_COMMAND[:6], "pipeline", *EVERY_COMMAND[6:]]


_METRICS_CALLS = """
import redis
from cachecore import BaseRedisCache

# Built before the metrics are switched on: the switch is honoured per call.
cache = BaseRedisCache(redis.Redis(host=host, port=port), key_prefix="metrics:")
metrics_on()
assert cache.set("a", 1) is True
assert cache.get("a") == 1
assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
assert cache.get_many("a", "b") == [1, 2]
assert cache.delete_many("a", "b") == ["a", "b"]
"""


def test_redis_py_metrics_see_every_call(server: ServerProcess) -> None:
    # redis-py 8 records a duration per command when its OpenTelemetry metrics are on;
    # cachecore then sends through the client so each call is recorded.
    recorded = redis_py_metric_names(server.host, server.port, _METRICS_CALLS)
    assert {"SET", "GET", "MGET", "UNLINK"} <= recorded, recorded
