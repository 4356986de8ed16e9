"""The opt-in near cache: local hits, server-assisted invalidation, on real servers."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import cachecore
from cachecore.errors import ConfigurationError
from cachecore.near_cache import NearCacheClient
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess

LAG_BOUND = 0.25
"""Seconds after a writer's call returns by which every reader must see the write."""


def _wait_ready(cache: BaseRedisCache) -> NearCacheClient:
    near = cache.client
    assert isinstance(near, NearCacheClient)
    cache.get("warm-up")
    deadline = time.monotonic() + 5
    while not near._ready:
        assert time.monotonic() < deadline, "near cache never became ready"
        time.sleep(0.01)
    return near


def _server_reads(server: ServerProcess) -> int:
    stats = server.client().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


@pytest.fixture
def server(binary: ServerBinary, cachecore_servers: ServerPool) -> ServerProcess:
    shared = cachecore_servers.shared(binary)
    shared.client().flushdb()
    return shared


@pytest.fixture
def near(server: ServerProcess) -> Any:
    cache = cachecore.from_url(server.url("valkey"), key_prefix="near:", near_cache=True)
    _wait_ready(cache)
    yield cache
    cache.close()


@pytest.fixture
def newest(cachecore_server_binaries: list[ServerBinary], cachecore_servers: ServerPool) -> Any:
    """The newest Valkey's shared server (fault timing does not differ by binary)."""
    binary = max(cachecore_server_binaries, key=lambda b: (b.kind == "valkey", b.version))
    return cachecore_servers.shared(binary)


@pytest.fixture
def writer(server: ServerProcess) -> BaseRedisCache:
    return cachecore.from_url(server.url("redis"), key_prefix="near:")


def test_hot_get_is_served_locally(near: BaseRedisCache, server: ServerProcess) -> None:
    near.set("hot", {"v": 1})
    time.sleep(LAG_BOUND)  # let the server's announcement of our own write arrive
    assert near.get("hot") == {"v": 1}
    before = _server_reads(server)
    for _ in range(200):
        assert near.get("hot") == {"v": 1}
        assert near.get_many("hot") == [{"v": 1}]
    assert _server_reads(server) == before
    first, second = near.get("hot"), near.get("hot")
    assert first == second and first is not second, "each get returns its own copy"


def test_writes_by_another_client_are_seen_within_the_lag(
    near: BaseRedisCache, writer: BaseRedisCache
) -> None:
    lags: list[float] = []
    for i in range(100):
        writer.set("k", i)
        written = time.monotonic()
        while near.get("k") != i:
            assert time.monotonic() - written < LAG_BOUND, f"write {i} not seen"
        lags.append(time.monotonic() - written)
    print(
        f"\nnear cache invalidation lag: median {statistics.median(lags) * 1000:.2f} ms, "
        f"max {max(lags) * 1000:.2f} ms over {len(lags)} writes"
    )


def test_no_stale_read_after_the_lag(near: BaseRedisCache, writer: BaseRedisCache) -> None:
    for i in range(20):
        near.get("k")
        writer.set("k", f"v{i}")
        time.sleep(LAG_BOUND)
        assert near.get("k") == f"v{i}"
        assert near.get_many("k", "other") == [f"v{i}", None]


def test_deletes_flushes_and_creations_elsewhere_invalidate(
    near: BaseRedisCache, writer: BaseRedisCache, server: ServerProcess
) -> None:
    writer.set("k", "v")
    assert near.get("missing") is None
    assert near.get("k") == "v"
    writer.delete("k")
    writer.set("missing", "now here")
    time.sleep(LAG_BOUND)
    assert near.get("k") is None
    assert near.get("missing") == "now here"
    server.client().flushdb()
    time.sleep(LAG_BOUND)
    assert near.get("missing") is None


def test_own_writes_are_visible_at_once(near: BaseRedisCache) -> None:
    near.set("k", 1)
    assert near.get("k") == 1
    near.set("k", 2)
    assert near.get("k") == 2
    assert near.inc("k") == 3
    assert near.get("k") == 3
    near.set_many({"k": 4, "j": 5})
    assert near.get_many("k", "j") == [4, 5]
    near.delete_many("k")
    assert near.get("k") is None
    near.clear()
    assert near.get("j") is None


def test_local_copy_respects_expiry(near: BaseRedisCache) -> None:
    near.set("k", "short-lived", timeout=1)
    assert near.get("k") == "short-lived"
    time.sleep(1.05)
    assert near.get("k") is None


def test_memory_is_bounded(server: ServerProcess) -> None:
    cache = cachecore.from_url(server.url("redis"), key_prefix="lru:", near_cache_size=10)
    near = _wait_ready(cache)
    cache.set_many({f"k{i}": i for i in range(50)})
    for i in range(50):
        assert cache.get(f"k{i}") == i
    assert len(near) <= 10
    cache.close()


def test_only_keys_under_the_prefix_are_cached(near: BaseRedisCache, server: ServerProcess) -> None:
    client = near.client
    near.set("k", 1)
    time.sleep(LAG_BOUND)
    near.get("k")
    assert "near:k" in client._entries
    server.client().set("elsewhere", "x")
    assert client.execute_command("GET", "elsewhere") == b"x"
    assert "elsewhere" not in client._entries


def test_lost_invalidation_connection_drops_local_copies(
    near: BaseRedisCache, writer: BaseRedisCache, server: ServerProcess
) -> None:
    client = near.client
    writer.set("k", "before")
    assert near.get("k") == "before"
    resets = client.resets
    server.client().client_kill_filter(_type="pubsub")
    writer.set("k", "after")
    deadline = time.monotonic() + 5
    while client.resets == resets:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert near.get("k") == "after"
    _wait_ready(near)
    assert near.get("k") == "after"
    writer.set("k", "again")
    time.sleep(LAG_BOUND)
    assert near.get("k") == "again"


STALE_BOUND = 0.25
"""Seconds after a tracking connection is killed by which no local copy is served: the
thread notices within ``POLL_SECONDS`` (0.05 s); the rest is slack for a busy CI."""


def _tracking_connection(admin: Any, name: str, victim: str) -> int:
    for entry in admin.client_list():
        if entry.get("name") != name:
            continue
        if victim == "listener" and int(entry.get("sub", 0)) > 0:
            return int(entry["id"])
        if victim == "owner" and "t" in entry.get("flags", ""):
            return int(entry["id"])
    raise AssertionError(f"no {victim} connection named {name}")


@pytest.mark.parametrize("chatty", [False, True], ids=["quiet", "chatty-publisher"])
@pytest.mark.parametrize("victim", ["listener", "owner"])
def test_killed_tracking_connection_stops_stale_reads_within_the_bound(
    newest: ServerProcess, victim: str, chatty: bool
) -> None:
    server = newest
    writer = cachecore.from_url(server.url("valkey"), key_prefix="near:")
    name = f"near-{victim}-{int(chatty)}"
    cache = cachecore.from_url(
        server.url("valkey"), key_prefix="near:", near_cache=True, client_name=name
    )
    near = _wait_ready(cache)
    stop = threading.Event()

    def publish() -> None:  # anyone may publish on the channel: it must not hide a loss
        with server.client() as publisher:
            while not stop.is_set():
                publisher.publish("__redis__:invalidate", "near:unrelated")
                time.sleep(0.002)

    chatter = threading.Thread(target=publish, daemon=True)
    if chatty:
        chatter.start()
    try:
        writer.set("k", "before")
        time.sleep(LAG_BOUND)
        assert cache.get("k") == "before"
        assert "near:k" in near._entries, "served locally before the kill"
        with server.client() as admin:
            assert admin.client_kill_filter(_id=_tracking_connection(admin, name, victim)) == 1
        killed = time.monotonic()
        writer.set("k", "after")
        last_stale = None
        while (elapsed := time.monotonic() - killed) < 3 * STALE_BOUND:
            if cache.get("k") != "after":
                last_stale = elapsed
        print(
            f"\n{victim} killed ({'chatty' if chatty else 'quiet'}): stale for "
            f"{0 if last_stale is None else last_stale * 1000:.1f} ms"
        )
        assert last_stale is None or last_stale < STALE_BOUND, last_stale
        # Reconnected: coherent and local again.
        _wait_ready(cache)
        writer.set("k", "again")
        time.sleep(LAG_BOUND)
        assert cache.get("k") == "again"
    finally:
        stop.set()
        if chatty:
            chatter.join(5)
        cache.close()


def test_unconfirmed_listener_means_no_local_reads(newest: ServerProcess) -> None:
    server = newest
    near = cachecore.from_url(server.url("valkey"), key_prefix="near-unconfirmed:", near_cache=True)
    client = _wait_ready(near)
    near.set("k", "v")
    time.sleep(LAG_BOUND)
    assert near.get("k") == "v"
    before = _server_reads(server)
    near.get("k")
    assert _server_reads(server) == before, "served locally while confirmed"
    # As if the thread had not heard from the listener for too long (stalled network):
    client._confirmed_at -= 10
    near.get("k")
    assert _server_reads(server) == before + 1, "an unconfirmed listener must not be trusted"
    near.close()


def test_server_restart_drops_local_copies(
    binary: ServerBinary, cachecore_fresh_server: Callable[..., ServerProcess]
) -> None:
    server = cachecore_fresh_server(binary)
    cache = cachecore.from_url(server.url("redis"), key_prefix="r:", near_cache=True)
    _wait_ready(cache)
    cache.set("k", "old")
    assert cache.get("k") == "old"
    server.restart()
    assert cache.get("k") is None  # the data died with the server: no stale local copy
    assert cache.set("k", "new") is True
    _wait_ready(cache)
    assert cache.get("k") == "new"
    cache.close()


def test_forked_child_does_not_serve_the_parents_copies(
    near: BaseRedisCache, server: ServerProcess
) -> None:
    near.set("k", "parent")
    assert near.get("k") == "parent"
    pid = os.fork()
    if pid == 0:  # the child: a write it makes is announced to the parent's listener only
        try:
            server.client().set("near:k", near.serializer.dumps("child"))
            ok = near.get("k") == "child" and near.set("c", 1) and near.get("c") == 1
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    time.sleep(LAG_BOUND)
    assert near.get("k") == "child"


@pytest.mark.parametrize("url", ["memory://", "valkey+cluster://127.0.0.1:1"])
def test_near_cache_needs_a_single_server(url: str) -> None:
    with pytest.raises(ConfigurationError, match="near_cache"):
        cachecore.from_url(url, near_cache=True)
