"""``cachecore.contrib.django.CachecoreCache`` beyond Django's own suite (issue 13).

Django's suite (``test_django_suite.py``) proves the Django contract. These tests cover
what it cannot: cachecore's configuration through ``OPTIONS``, the key layout other
cachecore caches read, values left by Django's ``RedisCache`` and django-redis, real
faults, the near cache, a cluster, and that ``import cachecore`` leaves Django alone.
Servers: the newest Valkey found (one binary: the behaviour does not differ by server).
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachelib.redis import RedisCache as CachelibRedisCache
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django_redis.cache import RedisCache as DjangoRedisPackageCache
from helpers import cachecore_warnings

import cachecore
from cachecore import BackendError, ConfigurationError
from cachecore.contrib.django import CachecoreCache, DjangoPickleSerializer
from cachecore.near_cache import NearCacheClient
from cachecore.serializers import JsonSerializer
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.pytest_plugin import DeploymentPool, ServerPool
from cachecore.testing.servers import ServerProcess, find_server_binaries

VALKEY = [b for b in find_server_binaries() if b.kind == "valkey"][-1]
BACKEND = "cachecore.contrib.django.CachecoreCache"


@pytest.fixture(scope="module", autouse=True)
def _django_settings() -> None:
    # django-redis reads its settings; Django's defaults do (CachecoreCache needs none).
    if not settings.configured:
        settings.configure()


@pytest.fixture
def server(cachecore_servers: ServerPool) -> ServerProcess:
    """The session's newest Valkey; each test works in a database of its own choosing."""
    return cachecore_servers.shared(VALKEY)


@pytest.fixture
def url(server: ServerProcess) -> Iterator[str]:
    """A URL to database 3 of the shared Valkey, emptied after the test."""
    yield server.url("valkey", db=3)
    server.client(db=3).flushdb()


def backend(location: str, **params: Any) -> CachecoreCache:
    """A backend built the way Django's CacheHandler builds one from a CACHES entry."""
    return CachecoreCache(location, params)


# -- configuration ---------------------------------------------------------------------


def test_options_configure_the_cachecore_cache(url: str, server: ServerProcess) -> None:
    cache = backend(url, KEY_PREFIX="shop", OPTIONS={"serializer": "json", "SOCKET_TIMEOUT": 2})
    cache.set("cart", {"items": [1, 2]})
    assert isinstance(cache.cachecore_cache.serializer, JsonSerializer)
    assert server.client(db=3).get("shop:1:cart") == b'{"items":[1,2]}'
    pool_kwargs = cache.cachecore_cache.client.connection_pool.connection_kwargs
    assert pool_kwargs["socket_timeout"] == 2  # option names are case-insensitive


@pytest.fixture
def near_backend(url: str) -> Iterator[CachecoreCache]:
    """A backend with the near cache on, its own (a unique client name), closed after."""
    options = {"near_cache": True, "client_name": f"near-{uuid.uuid4().hex}"}
    cache = backend(url, KEY_PREFIX="near", OPTIONS=options)
    yield cache
    cache.cachecore_cache.close()  # stops the invalidation thread before the server goes


def test_near_cache_option_wraps_the_client(near_backend: CachecoreCache) -> None:
    assert isinstance(near_backend.cachecore_cache.client, NearCacheClient)


@pytest.mark.parametrize(
    ("option", "advice"),
    [
        ("key_prefix", "KEY_PREFIX"),
        ("DEFAULT_TIMEOUT", "TIMEOUT"),
        ("MAX_ENTRIES", "maxmemory-policy"),
        ("CULL_FREQUENCY", "maxmemory-policy"),
    ],
)
def test_options_that_django_settings_cover_are_refused(option: str, advice: str) -> None:
    with pytest.raises(ConfigurationError, match=advice):
        backend("memory://refused", OPTIONS={option: 5})


def test_location_must_be_one_url() -> None:
    with pytest.raises(ConfigurationError, match=r"valkey\+cluster://"):
        backend(["redis://a:6379", "redis://b:6379"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="scheme://"):
        backend("cache-host:6379")


def test_empty_location_uses_cachecores_configuration(
    url: str, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHECORE_URL", url)
    cache = backend("", KEY_PREFIX="env")
    cache.set("k", "v")
    assert server.client(db=3).exists("env:1:k")


def test_backends_of_every_thread_share_one_cachecore_cache(url: str) -> None:
    # Django builds one backend object per thread: one pool (and near cache) serves all.
    built: list[CachecoreCache] = []
    threads = [threading.Thread(target=lambda: built.append(backend(url))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(b.cachecore_cache) for b in [*built, backend(url)]}) == 1
    assert backend(url, OPTIONS={"serializer": "json"}).cachecore_cache is not (
        built[0].cachecore_cache
    )


# -- the key layout and the wire format ------------------------------------------------


def test_cachecore_reads_and_writes_django_keys(url: str) -> None:
    django_cache = backend(url, KEY_PREFIX="shop", VERSION=3)
    plain = cachecore.from_url(url, key_prefix="shop:3:")  # KEY_PREFIX:VERSION:key
    django_cache.set("user:1", {"name": "Ada"})
    django_cache.set("visits", 41)
    assert plain.get("user:1") == {"name": "Ada"}
    assert plain.inc("visits") == 42
    plain.set("from-script", [1, 2, 3])
    assert django_cache.get("from-script") == [1, 2, 3]
    assert django_cache.get("visits") == 42
    # cachelib's own RedisCache, same wire format, same prefix.
    lib = CachelibRedisCache(host=plain.client, key_prefix="shop:3:")
    assert lib.get("user:1") == {"name": "Ada"}
    lib.set("from-cachelib", (4, 5))
    assert django_cache.get("from-cachelib") == (4, 5)


def test_values_of_djangos_redis_cache_and_django_redis_read_as_they_were(
    url: str, server: ServerProcess
) -> None:
    params = {"KEY_PREFIX": "shop", "VERSION": 2}
    old_caches = [
        DjangoRedisCache(server.url("redis", db=3), params),
        DjangoRedisPackageCache(server.url("redis", db=3), params),
    ]
    new = backend(url, **params)
    for number, old in enumerate(old_caches):
        old.set(f"obj{number}", {"n": number, "tags": ("a", "b")})
        old.set(f"int{number}", 40 + number)
        old.set(f"none{number}", None)
        assert new.get(f"obj{number}") == {"n": number, "tags": ("a", "b")}
        assert new.get(f"none{number}", "missing") is None
        assert new.get_many([f"obj{number}", f"int{number}"]) == {
            f"obj{number}": {"n": number, "tags": ("a", "b")},
            f"int{number}": 40 + number,
        }
        assert new.incr(f"int{number}") == 41 + number
    # Writes are cachecore's format: the old backends read back the ints only.
    new.set("written-by-cachecore", 7)
    new.set("pickled-by-cachecore", "text")
    for old in old_caches:
        assert old.get("written-by-cachecore") == 7
        with pytest.raises(pickle.UnpicklingError):
            old.get("pickled-by-cachecore")


def test_legacy_pickles_are_read_only_by_the_plain_pickle_format(url: str) -> None:
    assert isinstance(backend(url).cachecore_cache.serializer, DjangoPickleSerializer)
    signed = backend(url, OPTIONS={"serializer": "signed", "secret_key": "a secret of 16+ bytes"})
    assert not isinstance(signed.cachecore_cache.serializer, DjangoPickleSerializer)
    DjangoRedisCache(url.replace("valkey://", "redis://"), {}).set("forged", {"evil": 1})
    assert signed.get("forged", "refused") == "refused"  # an unsigned pickle: a miss


def test_a_signed_backend_deletes_on_a_zero_timeout_and_touches(url: str) -> None:
    signed = backend(url, OPTIONS={"serializer": "signed", "secret_key": "a secret of 16+ bytes"})
    signed.set("k", {"a": 1})
    signed.set("k", {"a": 2}, timeout=0)  # Django: delete; the value is still checked
    assert signed.get("k") is None
    assert signed.set_many({"k": 1, "j": 2}, timeout=0) == []
    signed.set("t", "v", timeout=60)
    assert signed.touch("t", 600) is True
    assert signed.get("t") == "v"


# -- Django's timeouts on the server ---------------------------------------------------


def test_timeouts_mean_what_django_says(url: str, server: ServerProcess) -> None:
    raw = server.client(db=3)
    cache = backend(url, TIMEOUT=120)
    cache.set("default", 1)
    cache.set("forever", 1, timeout=None)
    cache.set("float", 1, timeout=2.7)
    assert 110 < raw.ttl(":1:default") <= 120
    assert raw.ttl(":1:forever") == -1
    assert raw.ttl(":1:float") == 2
    for gone in (0, -5, 0.5):
        cache.set("dropped", "old", timeout=None)
        cache.set("dropped", "new", timeout=gone)
        assert not raw.exists(":1:dropped")  # not stored, and the old value removed
    assert cache.add("never", "x", timeout=0) is True
    assert not raw.exists(":1:never")
    assert cache.touch("float", timeout=None) is True
    assert raw.ttl(":1:float") == -1
    backend(url, TIMEOUT=None).set("k", 1)
    assert raw.ttl(":1:k") == -1


def test_incr_is_atomic_keeps_the_timeout_and_never_creates_the_key(
    url: str, server: ServerProcess
) -> None:
    raw = server.client(db=3)
    cache = backend(url)
    cache.set("hits", 0, timeout=100)
    threads = [
        threading.Thread(target=lambda: [cache.incr("hits") for _ in range(50)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("hits") == 200
    assert 90 < raw.ttl(":1:hits") <= 100
    with pytest.raises(ValueError, match="'absent' not found"):
        cache.decr("absent")
    assert not raw.exists(":1:absent")
    cache.set("text", "abc")
    with pytest.raises(TypeError, match="not an integer"):
        cache.incr("text")


def test_near_cache_sees_its_own_incr_at_once(near_backend: CachecoreCache) -> None:
    cache = near_backend
    client = cache.cachecore_cache.client
    cache.set("n", 0)
    deadline = time.monotonic() + 5
    while len(client) == 0 and time.monotonic() < deadline:  # until the key is held locally
        cache.get("n")
        time.sleep(0.01)
    assert len(client) == 1
    for expected in range(1, 51):
        cache.get("n")  # a local hit
        assert cache.incr("n") == expected
        assert cache.get("n") == expected


# -- faults ----------------------------------------------------------------------------

FAULTS: dict[str, tuple[Callable[[CachecoreCache], Any], Any]] = {
    "get": (lambda c: c.get("k", "default"), "default"),
    "get_many": (lambda c: c.get_many(["a", "b"]), {}),
    "has_key": (lambda c: c.has_key("k"), False),
    "set": (lambda c: c.set("k", 1), None),
    "add": (lambda c: c.add("k", 1), False),
    "set_many": (lambda c: c.set_many({"a": 1, "b": 2}), ["a", "b"]),
    "delete": (lambda c: c.delete("k"), False),
    "delete_many": (lambda c: c.delete_many(["a", "b"]), None),
    "touch": (lambda c: c.touch("k", 10), False),
    "incr": (lambda c: c.incr("k"), None),
    "clear": (lambda c: c.clear(), False),
    "get_or_set": (lambda c: c.get_or_set("k", lambda: "computed"), "computed"),
}
"""Each method on a dead server, with the value Django code gets back."""


@pytest.fixture(scope="module")
def dead_url() -> Iterator[str]:
    """The URL of a server that was running and is now stopped (nothing listens)."""
    with ServerProcess(VALKEY) as server:
        server.stop()
        yield server.url("valkey")


@pytest.mark.parametrize("method", list(FAULTS))
def test_a_dead_server_gives_fault_values_and_one_warning(
    dead_url: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    call, expected = FAULTS[method]
    cache = backend(dead_url, KEY_PREFIX=uuid.uuid4().hex)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert call(cache) == expected
    warnings = cachecore_warnings(caplog)
    assert warnings, "a fault must be logged"
    if method != "get_or_set":  # get, add, then get again: one warning per call
        assert len(warnings) == 1


def test_incr_version_on_a_dead_server_reads_as_missing(dead_url: str) -> None:
    with pytest.raises(ValueError, match="not found"):
        backend(dead_url).incr_version("k")


@pytest.mark.parametrize("method", list(FAULTS))
def test_raise_errors_raises_backend_error(dead_url: str, method: str) -> None:
    call, _ = FAULTS[method]
    cache = backend(dead_url, OPTIONS={"raise_errors": True})
    with pytest.raises(BackendError):
        call(cache)


def test_undecodable_value_reads_as_a_miss(
    url: str, server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    server.client(db=3).set(":1:garbage", b"\x01not a value")
    cache = backend(url)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("garbage", "miss") == "miss"
        assert cache.get_many(["garbage"]) == {}
    assert "cannot decode" in caplog.text


# -- a cluster -------------------------------------------------------------------------


def test_on_a_cluster(cachecore_cluster: DeploymentPool[ClusterProcess]) -> None:
    cluster = cachecore_cluster(VALKEY)
    cluster.flush()
    cache = backend(cluster.url("valkey+cluster"), KEY_PREFIX="c")
    keys = {f"key{i}": (i if i % 3 else None) for i in range(40)}  # across many slots
    assert cache.set_many(keys) == []
    assert cache.get_many([*keys, "absent"]) == keys
    assert cache.incr("key1", 5) == 6
    assert cache.touch("key2", None) is True
    with pytest.raises(ValueError, match="not found"):
        cache.incr("absent")
    cache.delete_many(list(keys))
    assert cache.get_many(list(keys)) == {}


# -- the BaseRedisCache methods the backend stands on ------------------------------------


def test_lookup_tells_a_stored_none_from_a_miss(url: str) -> None:
    cache = cachecore.from_url(url, key_prefix="base:")
    cache.set("none", None)
    assert cache.get("none") is None and cache.get("absent") is None  # get cannot tell
    assert cache.lookup("none", "miss") is None
    assert cache.lookup("absent", "miss") == "miss"
    assert cache.lookup_many("none", "absent") == {"none": None}
    assert cache.lookup_many() == {}


def test_touch_and_inc_existing(url: str, server: ServerProcess) -> None:
    raw = server.client(db=3)
    cache = cachecore.from_url(url, key_prefix="base:")
    cache.set("k", 5, timeout=100)
    assert cache.touch("k", 0) is True  # 0: never expire, as everywhere in cachecore
    assert raw.ttl("base:k") == -1
    assert cache.touch("k", 0) is True  # PERSIST of a persistent key still finds it
    assert cache.touch("k", 50) is True
    assert 40 < raw.ttl("base:k") <= 50
    assert cache.touch("absent", 50) is False
    assert cache.inc_existing("k", 2) == 7
    assert 40 < raw.ttl("base:k") <= 50
    with pytest.raises(KeyError):
        cache.inc_existing("absent")
    assert not raw.exists("base:absent")
    with pytest.raises(TypeError, match="delta"):
        cache.inc_existing("k", 1.5)  # type: ignore[arg-type]


# -- imports ---------------------------------------------------------------------------


def test_importing_cachecore_does_not_import_django() -> None:
    code = "import sys, cachecore, cachecore.contrib; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
