"""The opt-in circuit breaker, against a real server that the tests pause and resume."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import cachecore
from cachecore.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreakerClient
from cachecore.errors import BackendError, ConfigurationError
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.servers import ServerBinary, ServerProcess

SOCKET_TIMEOUT = 0.2
RESET = 0.6


@pytest.fixture
def server(
    cachecore_server_binaries: list[ServerBinary],
    cachecore_fresh_server: Callable[..., ServerProcess],
) -> ServerProcess:
    newest = max(cachecore_server_binaries, key=lambda b: (b.kind == "valkey", b.version))
    return cachecore_fresh_server(newest)


def _cache(server: ServerProcess, **options: Any) -> BaseRedisCache:
    return cachecore.from_url(
        server.url("redis"),
        key_prefix="cb:",
        socket_timeout=SOCKET_TIMEOUT,
        circuit_breaker_threshold=2,
        circuit_breaker_reset=RESET,
        **options,
    )


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_opens_half_opens_and_closes(server: ServerProcess, caplog: Any) -> None:
    cache = _cache(server)
    breaker = cache.client
    assert isinstance(breaker, CircuitBreakerClient)
    assert cache.set("k", "v") is True
    assert breaker.state == CLOSED
    server.pause()
    try:
        for _ in range(2):  # closed: each call waits for its socket timeout
            result, elapsed = _timed(lambda: cache.get("k"))
            assert result is None and elapsed >= SOCKET_TIMEOUT * 0.9
        assert breaker.state == OPEN
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            for call, fault in (
                (lambda: cache.get("k"), None),
                (lambda: cache.set("k", 1), False),
                (lambda: cache.set_many({"a": 1}), []),
                (cache.clear, False),
            ):
                result, elapsed = _timed(call)
                assert result == fault and elapsed < 0.05, "open: fail fast, no timeout"
        assert "circuit open" in caplog.text
        time.sleep(RESET)
        assert breaker.state == HALF_OPEN
        result, elapsed = _timed(lambda: cache.get("k"))  # the trial, still paused: fails
        assert result is None and elapsed >= SOCKET_TIMEOUT * 0.9
        assert breaker.state == OPEN
    finally:
        server.resume()
    assert cache.get("k") is None, "still open until its reset timeout"
    time.sleep(RESET)
    assert cache.get("k") == "v"  # the trial succeeds
    assert breaker.state == CLOSED
    assert cache.set("k", "w") is True and cache.get("k") == "w"


def test_server_errors_do_not_trip_it(server: ServerProcess) -> None:
    cache = _cache(server)
    cache.set("text", "not a number")
    for _ in range(5):
        assert cache.inc("text") is None  # the server answers with an error
    assert cache.client.state == CLOSED


def test_stopped_server_trips_it_and_restart_recovers(server: ServerProcess) -> None:
    cache = _cache(server, raise_errors=True)
    assert cache.set("k", 1) is True
    server.stop()
    for _ in range(2):
        with pytest.raises(BackendError, match="ConnectionError"):
            cache.get("k")
    with pytest.raises(BackendError, match="CircuitOpenError"):
        cache.get("k")
    server.start()
    time.sleep(RESET)
    assert cache.set("k", 2) is True
    assert cache.client.state == CLOSED


@pytest.mark.parametrize(
    ("options", "message"),
    [({"circuit_breaker_threshold": 0}, "threshold"), ({"circuit_breaker_reset": 0}, "reset")],
)
def test_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cachecore.from_url("redis://127.0.0.1:1/0", **options)
