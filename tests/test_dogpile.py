"""dogpile.cache's own backend suites against ``cachecore.contrib.dogpile.CachecoreBackend``.

``dogpile.testing.fixtures`` ships in dogpile's wheel: ``_GenericBackendTestSuite`` (every
backend method through a region, including the threaded dogpile test) and
``_GenericMutexTestSuite`` (the lock). Each is subclassed here once per target
(``memory://``, the newest Valkey, the newest Redis), reached by the backend name
``"cachecore"`` through dogpile's ``dogpile.cache`` entry point, as a user configures it.
Then: the one-creator guarantee across processes, the lock timeout, the stored format,
and faults on a stopped server.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE, CachedValue
from dogpile.testing.fixtures import (
    _GenericBackendFixture,
    _GenericBackendTestSuite,
    _GenericMutexTestSuite,
)
from helpers import absent_reason, cachecore_warnings

import cachecore
from cachecore import BackendError
from cachecore.circuit_breaker import CircuitOpenError
from cachecore.contrib.dogpile import CachecoreBackend, CachecoreMutex
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess, newest_server_binary

VALKEY = newest_server_binary("valkey")
REDIS = newest_server_binary("redis")
SUITE_DB = 11
"""The shared servers' database for this module (other modules use DB 0)."""


def _url(binary: ServerBinary | None, servers: ServerPool) -> str:
    if binary is None:
        return "memory://dogpile-suite"
    return servers.shared(binary).url(binary.kind, db=SUITE_DB)


class _Target:
    """Points one of dogpile's suites at a target, by the backend name ``"cachecore"``."""

    binary: ClassVar[ServerBinary | None] = None
    backend = "cachecore"
    config_args: ClassVar[dict[str, Any]] = {}

    @classmethod
    def setup_class(cls) -> None:
        """Deferred to :meth:`_configure`: the URL is known once the server runs."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _configure(cls, cachecore_servers: ServerPool) -> None:
        arguments = {"url": _url(cls.binary, cachecore_servers), "key_prefix": cls.__name__}
        cls.config_args = {"arguments": arguments}
        _GenericBackendFixture.setup_class.__func__(cls)  # type: ignore[attr-defined]


_needs_valkey = pytest.mark.skipif(VALKEY is None, reason=absent_reason("valkey"))
_needs_redis = pytest.mark.skipif(REDIS is None, reason=absent_reason("redis"))


class TestBackendMemory(_Target, _GenericBackendTestSuite):
    pass


class TestMutexMemory(_Target, _GenericMutexTestSuite):
    pass


@_needs_valkey
class TestBackendValkey(_Target, _GenericBackendTestSuite):
    binary = VALKEY


@_needs_valkey
class TestMutexValkey(_Target, _GenericMutexTestSuite):
    binary = VALKEY


@_needs_redis
class TestBackendRedis(_Target, _GenericBackendTestSuite):
    binary = REDIS


@_needs_redis
class TestMutexRedis(_Target, _GenericMutexTestSuite):
    binary = REDIS


# -- registration ----------------------------------------------------------------------


def test_backend_is_registered_through_dogpiles_entry_point() -> None:
    (point,) = [p for p in entry_points(group="dogpile.cache") if p.name == "cachecore"]
    assert point.load() is CachecoreBackend
    region = make_region().configure("cachecore", arguments={"url": "memory://ep"})
    assert isinstance(region.backend, CachecoreBackend)


def test_importing_cachecore_imports_no_framework() -> None:
    code = (
        "import sys, cachecore, cachecore.contrib\n"
        "print(sorted(m for m in ('flask', 'flask_caching', 'dogpile', 'django')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_bad_arguments_raise_configuration_error() -> None:
    with pytest.raises(cachecore.ConfigurationError, match="lock_timeout"):
        CachecoreBackend({"url": "memory://", "lock_timeout": 0})
    with pytest.raises(cachecore.ConfigurationError, match="lock_prefix"):
        CachecoreBackend({"url": "memory://", "lock_prefix": ""})
    with pytest.raises(cachecore.ConfigurationError):
        CachecoreBackend({"url": "memory://", "socket_timeout": -1})


def test_unknown_arguments_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    CachecoreBackend({"url": "memory://", "distributd_lock": True})
    assert any("distributd_lock" in m for m in cachecore_warnings(caplog))


# -- the stored format ---------------------------------------------------------------


def test_a_cachecore_script_reads_payload_and_metadata() -> None:
    region = make_region().configure(
        "cachecore", expiration_time=60, arguments={"url": "memory://fmt", "key_prefix": "dp:"}
    )
    region.set("user:7", {"name": "Ada"})
    script = cachecore.from_url("memory://fmt", key_prefix="dp:")
    payload, metadata = script.get("user:7")
    assert payload == {"name": "Ada"}
    assert abs(metadata["ct"] - time.time()) < 5
    # A value a script wrote counts as created at time 0: stale for a region with an
    # expiration_time (one creator replaces it), served as it is without one.
    script.set("plain", "from a script")
    assert make_region().configure(
        "cachecore", arguments={"url": "memory://fmt", "key_prefix": "dp:"}
    ).get("plain") == ("from a script")
    assert region.get("plain") is NO_VALUE
    assert region.get_or_create("plain", lambda: "fresh") == "fresh"
    assert script.get("plain")[0] == "fresh"


def test_values_live_until_deleted_unless_redis_expiration_time() -> None:
    forever = CachecoreBackend({"url": "memory://ttl"})
    forever.set("k", CachedValue(1, {"ct": time.time(), "v": 2}))
    assert forever.cache.client.ttl("k") == -1
    timed = CachecoreBackend({"url": "memory://ttl", "redis_expiration_time": 120})
    timed.set_multi({"m": CachedValue(1, {"ct": time.time(), "v": 2})})
    assert 0 < timed.cache.client.ttl("m") <= 120


def test_region_serializer_bytes_round_trip() -> None:
    region = make_region(
        serializer=lambda v: json.dumps(v).encode(), deserializer=json.loads
    ).configure("cachecore", arguments={"url": "memory://ser"})
    region.set_multi({"a": [1, 2], "b": {"x": None}})
    assert region.get_multi(["a", "b", "c"]) == [[1, 2], {"x": None}, NO_VALUE]


# -- the lock --------------------------------------------------------------------------


@pytest.fixture
def valkey_backend(cachecore_servers: ServerPool) -> Iterator[CachecoreBackend]:
    if VALKEY is None:
        pytest.skip(absent_reason("valkey"))
    backend = CachecoreBackend(
        {"url": _url(VALKEY, cachecore_servers), "key_prefix": "dp-lock:", "lock_timeout": 0.3}
    )
    yield backend
    backend.cache.clear()


def test_lock_of_a_crashed_owner_expires(valkey_backend: CachecoreBackend) -> None:
    crashed = valkey_backend.get_mutex("k")
    assert isinstance(crashed, CachecoreMutex)
    assert crashed.acquire()  # and never released: its process died
    other = valkey_backend.get_mutex("k")
    assert other is not None
    assert not other.acquire(False)
    started = time.monotonic()
    assert other.acquire()
    assert time.monotonic() - started < 1.0
    assert valkey_backend.cache.client.exists("dp-lock:_lock:k")


def test_a_late_owner_does_not_release_the_next_owners_lock(
    valkey_backend: CachecoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    late = valkey_backend.get_mutex("k")
    assert late is not None and late.acquire()
    time.sleep(0.4)  # its lock timed out
    now = valkey_backend.get_mutex("k")
    assert now is not None and now.acquire(False)
    late.release()
    assert now.locked()
    assert any("timed out before its owner released it" in m for m in cachecore_warnings(caplog))
    now.release()
    assert not now.locked()


_CREATOR_SCRIPT = textwrap.dedent("""
    import sys, time
    from dogpile.cache import make_region
    import cachecore

    url, log_key, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    region = make_region().configure(
        "cachecore", expiration_time=0.4, arguments={"url": url, "key_prefix": "dp-proc:"}
    )
    log = cachecore.from_url(url).client

    def create():
        start = time.time()
        time.sleep(0.15)
        log.rpush(log_key, f"{start} {time.time()}")
        return start

    time.sleep(max(0.0, start - time.time()))  # every process starts together
    while time.time() < start + 2.5:
        region.get_or_create("shared", create)
        time.sleep(0.01)
""")


def test_one_creator_per_expiry_across_processes(cachecore_servers: ServerPool) -> None:
    if VALKEY is None:
        pytest.skip(absent_reason("valkey"))
    url = _url(VALKEY, cachecore_servers)
    client = cachecore.from_url(url).client
    client.delete("dp-proc:shared", "dp-proc:creations")
    start = time.time() + 3  # after every process has imported dogpile
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATOR_SCRIPT, url, "dp-proc:creations", str(start)]
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.wait(timeout=30) == 0
    spans = sorted(tuple(map(float, s.split())) for s in client.lrange("dp-proc:creations", 0, -1))
    client.delete("dp-proc:shared", "dp-proc:creations")
    # About one creation per 0.4 s expiry (plus its 0.15 s), never two at once.
    assert 3 <= len(spans) <= 6, spans
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans


# -- faults ----------------------------------------------------------------------------


@pytest.fixture
def stopped(cachecore_fresh_server: Any) -> ServerProcess:
    if VALKEY is None:
        pytest.skip(absent_reason("valkey"))
    server: ServerProcess = cachecore_fresh_server(VALKEY)
    server.stop()
    return server


def test_stopped_server_reads_as_misses_and_the_region_still_serves(
    stopped: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    url = stopped.url("valkey") + "?socket_timeout=0.2&socket_connect_timeout=0.2"
    region = make_region().configure("cachecore", expiration_time=60, arguments={"url": url})
    assert region.get("k") is NO_VALUE
    assert region.get_multi(["a", "b"]) == [NO_VALUE, NO_VALUE]
    assert region.get_or_create("k", lambda: "computed") == "computed"
    region.delete("k")
    warnings = cachecore_warnings(caplog)
    assert any("acquire of lock" in m for m in warnings), warnings
    assert any("set failed" in m for m in warnings), warnings


def test_stopped_server_raises_with_raise_errors(stopped: ServerProcess) -> None:
    url = stopped.url("valkey") + "?socket_timeout=0.2&socket_connect_timeout=0.2"
    region = make_region().configure("cachecore", arguments={"url": url, "raise_errors": True})
    with pytest.raises(BackendError):
        region.get("k")
    mutex = region.backend.get_mutex("k")
    with pytest.raises(BackendError, match="acquire of lock"):
        mutex.acquire()


def test_values_of_dogpile_cache_redis_are_recreated(
    valkey_backend: CachecoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """What docs/dogpile.md says about migrating: dogpile.cache.redis's values read as
    misses (one warning each) and the region re-creates them."""
    url = valkey_backend.cache.client.connection_pool.connection_kwargs
    old = make_region().configure(
        "dogpile.cache.redis", arguments={"host": url["host"], "port": url["port"], "db": url["db"]}
    )
    old.set("dp-lock:page", "old value")
    new = make_region().configure(
        "cachecore",
        arguments={
            "url": f"valkey://{url['host']}:{url['port']}/{url['db']}",
            "key_prefix": "dp-lock:",
        },
    )
    assert new.get("page") is NO_VALUE
    assert any("cannot decode" in m for m in cachecore_warnings(caplog))
    assert new.get_or_create("page", lambda: "new value") == "new value"


def test_the_lock_goes_through_the_caches_transport(stopped: ServerProcess) -> None:
    # The circuit breaker wraps the transport: once open, the lock must not reach the
    # server either (a lock sent on the raw client would fail with ConnectionError).
    url = stopped.url("valkey") + "?circuit_breaker_threshold=1&circuit_breaker_reset=60"
    region = make_region().configure("cachecore", arguments={"url": url, "raise_errors": True})
    with pytest.raises(BackendError):
        region.get("k")  # the fault that opens the breaker
    mutex = region.backend.get_mutex("k")
    with pytest.raises(BackendError) as raised:
        mutex.acquire()
    assert isinstance(raised.value.__cause__, CircuitOpenError)
    with pytest.raises(BackendError) as raised:
        mutex.locked()
    assert isinstance(raised.value.__cause__, CircuitOpenError)
