"""get_or_set, memoize and tags (cachecore.memo) on real servers: one computation per
expiry across threads, processes and asyncio tasks; a killed lock owner; fn raising;
tags seen by every process and on a cluster; XFetch, stale-while-revalidate and
stale-if-error. The newest Valkey (it has DELIFEQ) and the newest Redis (the
compare-and-delete script) where the lock release differs."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import cachecore_warnings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import cachecore
import cachecore.aio
from cachecore.memo.envelope import is_envelope
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.pytest_plugin import DeploymentPool, ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries


def _newest(kind: str) -> ServerBinary | None:
    found = [b for b in find_server_binaries() if b.kind == kind]
    return found[-1] if found else None


VALKEY, REDIS = _newest("valkey"), _newest("redis")
if VALKEY is None:
    pytest.skip("no valkey-server binary found", allow_module_level=True)
BOTH = [b for b in (VALKEY, REDIS) if b is not None]


@pytest.fixture
def server(cachecore_servers: ServerPool) -> ServerProcess:
    assert VALKEY is not None
    return cachecore_servers.shared(VALKEY)


@pytest.fixture
def url(server: ServerProcess) -> str:
    return server.url("valkey")


def _prefix() -> str:
    return f"memo-{uuid.uuid4().hex[:8]}:"


WORKER = textwrap.dedent(
    """
    import sys, threading, time, cachecore
    url, prefix, mode, start_at, threads = sys.argv[1:6]
    cache = cachecore.from_url(url, key_prefix=prefix)

    def compute():
        cache.inc("computations")
        print("computing", flush=True)
        time.sleep(60 if mode == "hang" else 0.3)
        return "hot value"

    if mode == "invalidate":
        cache.invalidate_tags("user:1")
        sys.exit(0)
    results = []
    def read():
        results.append(cache.get_or_set("hot", compute, 30, lock_timeout=1.5))
    time.sleep(max(0.0, float(start_at) - time.time()))
    workers = [threading.Thread(target=read) for _ in range(int(threads))]
    for w in workers: w.start()
    for w in workers: w.join()
    print("results", sorted(set(results)), len(results), flush=True)
    """
)


def _spawn(url: str, prefix: str, mode: str, start_at: float = 0, threads: int = 1) -> Any:
    args = [sys.executable, "-c", WORKER, url, prefix, mode, str(start_at), str(threads)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


# -- the lock ----------------------------------------------------------------------------------


def test_one_computation_across_threads_processes_and_tasks(url: str) -> None:
    prefix = _prefix()
    cache = cachecore.from_url(url, key_prefix=prefix)
    start_at = time.time() + 2.0  # the processes need about a second to import
    processes = [_spawn(url, prefix, "read", start_at, threads=5) for _ in range(4)]

    def compute() -> str:
        cache.inc("computations")
        time.sleep(0.3)
        return "hot value"

    results: list[str] = []

    def read() -> None:
        results.append(cache.get_or_set("hot", compute, 30, lock_timeout=1.5))

    async def tasks() -> list[Any]:
        acache = cachecore.aio.from_url(url, key_prefix=prefix)

        async def acompute() -> str:
            await acache.inc("computations")
            await asyncio.sleep(0.3)
            return "hot value"

        await asyncio.sleep(max(0.0, start_at - time.time()))
        got = await asyncio.gather(*(acache.get_or_set("hot", acompute, 30) for _ in range(50)))
        await acache.aclose()
        return got

    threads = [threading.Thread(target=read) for _ in range(50)]
    loop_results: list[Any] = []
    loop = threading.Thread(target=lambda: loop_results.extend(asyncio.run(tasks())))
    time.sleep(max(0.0, start_at - time.time()))
    for t in [*threads, loop]:
        t.start()
    for t in [*threads, loop]:
        t.join()
    outputs = [p.communicate(timeout=30)[0] for p in processes]
    assert cache.get("computations") == 1
    assert set(results) == set(loop_results) == {"hot value"}
    assert len(results) == len(loop_results) == 50
    assert all("results ['hot value'] 5" in out for out in outputs), outputs
    assert not cache.has("hot:cachecore-lock")


def test_a_killed_lock_owner_blocks_others_at_most_the_lock_timeout(url: str) -> None:
    prefix = _prefix()
    cache = cachecore.from_url(url, key_prefix=prefix)
    owner = _spawn(url, prefix, "hang")
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "computing"  # it holds the lock now
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    started = time.monotonic()
    assert cache.get_or_set("hot", lambda: "recomputed", 30, lock_timeout=1.5) == "recomputed"
    waited = time.monotonic() - started
    assert 0.5 < waited < 1.5 + 0.2  # it waited for the lock, and no longer than it lives


@pytest.mark.parametrize("binary", BOTH, ids=lambda b: b.kind)
def test_the_lock_is_released_only_by_its_owner(
    binary: ServerBinary, cachecore_servers: ServerPool
) -> None:
    """Valkey 9 releases with DELIFEQ, Redis with the compare-and-delete script."""
    cache = cachecore.from_url(cachecore_servers.shared(binary).url("redis"), key_prefix=_prefix())
    assert cache.get_or_set("a", lambda: 1) == 1
    assert not cache.has("a:cachecore-lock")

    def overrun() -> int:
        # Our lock expired meanwhile and another caller took it.
        cache.set("a:cachecore-lock", "someone else", 0)
        return 2

    assert cache.get_or_set("b", overrun) == 2
    assert cache.get("a:cachecore-lock") == "someone else"
    expected = "DELIFEQ" if binary.version >= "9" else "EVAL"
    assert cache._memo().release_with == expected


def test_fn_raising_does_not_poison_the_key(url: str) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())

    def boom() -> int:
        raise ValueError("database down")

    with pytest.raises(ValueError, match="database down"):
        cache.get_or_set("k", boom)
    assert not cache.has("k") and not cache.has("k:cachecore-lock")
    assert cache.get_or_set("k", lambda: 5) == 5

    # Concurrent: the owner's error reaches the owner; a waiter then computes.
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        time.sleep(0.2)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return 7

    outcomes: list[Any] = []

    def read() -> None:
        try:
            outcomes.append(cache.get_or_set("j", flaky))
        except ValueError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=read) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2
    assert sum(isinstance(o, ValueError) for o in outcomes) == 1
    assert outcomes.count(7) == 9


# -- strategies --------------------------------------------------------------------------------


def test_xfetch_refreshes_early_with_no_miss_after_warm_up(url: str) -> None:
    prefix = _prefix()
    cache = cachecore.from_url(url, key_prefix=prefix)
    raw = cache.client
    found_missing: list[bool] = []

    def compute() -> float:
        found_missing.append(raw.pttl(prefix + "x") < 0)  # -2: the key had expired
        time.sleep(0.05)
        return time.time()

    stop = time.monotonic() + 3.5

    def read() -> None:
        while time.monotonic() < stop:
            cache.get_or_set("x", compute, 1, strategy="xfetch")
            time.sleep(0.002)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found_missing[0] is True  # warm-up
    assert found_missing[1:] and not any(found_missing[1:])  # every refresh came early
    assert len(found_missing) <= 6  # about one per second, not one per reader


def test_stale_while_revalidate_serves_the_old_value_during_recompute(url: str) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())
    version = iter(range(1, 100))

    def compute() -> int:
        time.sleep(0.5)
        return next(version)

    assert cache.get_or_set("s", compute, 1, stale_while_revalidate=10) == 1
    time.sleep(1.1)
    timed: list[tuple[int, float]] = []

    def read() -> None:
        started = time.monotonic()
        value = cache.get_or_set("s", compute, 1, stale_while_revalidate=10)
        timed.append((value, time.monotonic() - started))

    threads = [threading.Thread(target=read) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for v, _ in timed) == [1] * 9 + [2]
    assert all(seconds < 0.2 for v, seconds in timed if v == 1)


def test_stale_if_error_serves_the_last_good_value(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())
    assert cache.get_or_set("e", lambda: "good", 1, stale_if_error=30) == "good"
    time.sleep(1.1)

    def boom() -> str:
        raise ConnectionError("database down")

    with caplog.at_level(logging.WARNING, "cachecore"):
        assert cache.get_or_set("e", boom, 1, stale_if_error=30) == "good"
    (warning,) = cachecore_warnings(caplog)
    assert "stale_if_error" in warning
    with pytest.raises(ConnectionError):  # without it, the error reaches the caller
        cache.get_or_set("e", boom, 1)


def test_stale_if_error_serves_the_last_good_value_when_the_server_is_down(
    cachecore_fresh_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = cachecore_fresh_server(VALKEY)
    cache = cachecore.from_url(server.url("valkey"), socket_timeout=0.5)
    assert cache.get_or_set("e", lambda: "good", 60, stale_if_error=30) == "good"
    server.stop()
    with caplog.at_level(logging.WARNING, "cachecore"):
        assert cache.get_or_set("e", lambda: "unused", 60, stale_if_error=30) == "good"
        assert cache.get_or_set("f", lambda: "computed", 60) == "computed"  # fault: computed
    assert len(cachecore_warnings(caplog)) == 2


# -- tags --------------------------------------------------------------------------------------


def test_tag_invalidation_is_seen_by_every_process(url: str) -> None:
    prefix = _prefix()
    cache = cachecore.from_url(url, key_prefix=prefix)
    calls: list[int] = []

    @cache.memoize(60, tags=lambda user_id: (f"user:{user_id}",))
    def profile(user_id: int) -> str:
        calls.append(user_id)
        return f"profile {user_id} v{len(calls)}"

    assert profile(1) == profile(1) == "profile 1 v1"
    assert profile(2) == "profile 2 v2"
    assert cache.set("page", "cached page", tags=("user:1", "site"))
    assert cache.get_or_set("page", lambda: "rendered") == "cached page"
    _spawn(url, prefix, "invalidate").wait(timeout=30)  # another process
    assert profile(1) == "profile 1 v3"  # user:1 was invalidated
    assert profile(2) == "profile 2 v2"  # user:2 was not
    assert cache.get_or_set("page", lambda: "rendered") == "rendered"


def test_tags_on_a_cluster(cachecore_cluster: DeploymentPool[ClusterProcess]) -> None:
    assert VALKEY is not None
    cluster = cachecore_cluster(VALKEY)
    cache = cachecore.from_url(cluster.url(), key_prefix=_prefix())
    tags = [f"t{i}" for i in range(6)]  # their version keys spread over the slots
    assert len({cache._writes.keyslot(cache._prefix() + "cachecore:tag:" + t) for t in tags}) > 1
    assert cache.set("v", "value", tags=tags)
    assert cache.get_or_set("v", lambda: "new") == "value"
    assert cache.get_or_set("w", lambda: "w1", tags=tags[3:]) == "w1"
    assert cache.invalidate_tags("t4")
    assert cache.get_or_set("v", lambda: "new") == "new"
    assert cache.get_or_set("w", lambda: "w2", tags=tags[3:]) == "w2"
    count = 0

    def compute() -> int:
        nonlocal count
        count += 1
        time.sleep(0.2)
        return count

    threads = [
        threading.Thread(target=cache.get_or_set, args=("hot", compute), kwargs={"tags": tags})
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count == 1


def test_envelope_entries_and_plain_entries(url: str) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())
    cache.set("tagged", "x", tags=("a",))
    assert is_envelope(cache.client.get(cache._key("tagged")))
    assert cache.get("tagged") is None  # a plain get cannot check the tags: a miss
    assert cache.get_many("tagged") == [None]
    cache.set("plain", "y")
    assert cache.client.get(cache._key("plain")).startswith(b"!")  # cachelib's format
    assert cache.get_or_set("plain", lambda: "z") == "y"  # a plain value is a hit


# -- memoize -----------------------------------------------------------------------------------


def test_memoize_keys(url: str, tmp_path: Path) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())
    module = tmp_path / "memo_subject.py"
    module.write_text(
        "import cachecore\ncache = cachecore.from_url('memory://')\n"
        "@cache.memoize(60)\ndef f(x, y=2, *rest, **extra): return x\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import memo_subject  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    f = memo_subject.f
    assert f.key(1) == f.key(x=1) == f.key(1, 2) != f.key(1, 3)
    assert f.key(1).startswith("memoize:memo_subject.f:")
    call = "f.key(1, 2, 3, z=frozenset({'a', 'b', 'c'}), w={'k': [1.5, None, b'x']})"
    keys = {
        subprocess.run(
            [sys.executable, "-c", f"import memo_subject as m; f = m.f; print({call})"],
            env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {eval(call)}
    with pytest.raises(TypeError, match="argument 'x' of type object"):
        f(object())

    class Account:
        def __init__(self, n: int) -> None:
            self.n = n

        @cache.memoize(60)
        def balance(self, currency: str) -> str:
            return f"{self.n} {currency}"

    assert Account(1).balance("EUR") == "1 EUR"
    assert Account(2).balance("EUR") == "1 EUR"  # self is not part of the key
    Account(2).balance.invalidate("EUR")
    assert Account(2).balance("EUR") == "2 EUR"

    async def coroutine() -> None:
        pass

    with pytest.raises(TypeError, match="coroutine function"):
        cache.memoize()(coroutine)


def test_async_memoize_one_computation(url: str) -> None:
    async def main() -> None:
        cache = cachecore.aio.from_url(url, key_prefix=_prefix())
        calls: list[int] = []

        @cache.memoize(60, tags=("t",))
        async def slow(n: int) -> int:
            calls.append(n)
            await asyncio.sleep(0.2)
            return n * 10

        assert await asyncio.gather(*(slow(3) for _ in range(50))) == [30] * 50
        assert calls == [3]
        await cache.invalidate_tags("t")
        assert await slow(3) == 30 and calls == [3, 3]
        await slow.invalidate(3)
        assert await slow(n=3) == 30 and calls == [3, 3, 3]
        with pytest.raises(TypeError, match="not a coroutine function"):
            cache.memoize()(lambda: 1)
        await cache.aclose()

    asyncio.run(main())


# -- counters in cache.stats() -----------------------------------------------------------------


def _memo_counts(cache: Any) -> tuple[int, int, int]:
    extra = cache.stats().extra
    return (
        extra["memoize.computations"],
        extra["memoize.lock_waits"],
        extra["memoize.stale_served"],
    )


def _together(n: int, read: Any) -> None:
    """Run ``read`` in ``n`` threads released at once."""
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        read()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_stats_count_computations_lock_waits_and_stale_values(url: str) -> None:
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(url, key_prefix=_prefix(), meter_provider=MeterProvider([reader]))
    assert _memo_counts(cache) == (0, 0, 0)

    def slow() -> str:
        time.sleep(0.3)
        return "v"

    # The lock: one computation, every other caller waited once.
    _together(20, lambda: cache.get_or_set("hot", slow, 30))
    assert _memo_counts(cache) == (1, 19, 0)
    cache.get_or_set("hot", slow, 30)  # a plain hit changes nothing
    assert _memo_counts(cache) == (1, 19, 0)

    # stale-while-revalidate: one recomputes, the others get the stale value at once.
    cache.get_or_set("swr", slow, 1, stale_while_revalidate=30)
    time.sleep(1.05)
    _together(10, lambda: cache.get_or_set("swr", slow, 1, stale_while_revalidate=30))
    assert _memo_counts(cache) == (3, 19, 9)

    # stale_if_error: fn raising past the expiry serves the old value, counted as stale.
    cache.get_or_set("sie", lambda: "old", 1, stale_if_error=30)
    time.sleep(1.05)

    def boom() -> str:
        raise ValueError("database down")

    assert cache.get_or_set("sie", boom, 1, stale_if_error=30) == "old"
    assert _memo_counts(cache) == (5, 19, 10)

    # memoize runs the same path; OpenTelemetry exports the same numbers.
    @cache.memoize(30)
    def double(n: int) -> int:
        return n * 2

    assert double(4) == double(4) == 8
    assert _memo_counts(cache) == (6, 19, 10)
    assert cache.stats().to_dict()["extra"]["memoize.computations"] == 6
    exported: dict[str, int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("cachecore.memoize."):
                    points = metric.data.data_points
                    exported[metric.name] = sum(getattr(p, "value", 0) for p in points)
    assert exported == {
        "cachecore.memoize.computations": 6,
        "cachecore.memoize.lock_waits": 19,
        "cachecore.memoize.stale_served": 10,
    }


def test_async_stats_count_computations_and_lock_waits(url: str) -> None:
    async def main() -> tuple[int, int, int]:
        cache = cachecore.aio.from_url(url, key_prefix=_prefix())

        async def slow() -> str:
            await asyncio.sleep(0.3)
            return "v"

        await asyncio.gather(*(cache.get_or_set("hot", slow, 30) for _ in range(50)))
        await cache.get_or_set("swr", slow, 1, stale_while_revalidate=30)
        await asyncio.sleep(1.05)
        await asyncio.gather(
            *(cache.get_or_set("swr", slow, 1, stale_while_revalidate=30) for _ in range(10))
        )
        counts = _memo_counts(cache)
        await cache.aclose()
        return counts

    assert asyncio.run(main()) == (3, 49, 9)


# -- what a user hits ------------------------------------------------------------------------


def test_cancelling_the_lock_owner_releases_the_lock_at_any_step(url: str) -> None:
    """A task cancelled while its value is being stored (after fn returned) still
    releases the lock: the next caller computes at once instead of waiting for
    lock_timeout (and the key is not stuck for other processes)."""
    prefix = _prefix()

    async def main() -> tuple[bool, float]:
        cache = cachecore.aio.from_url(url, key_prefix=prefix)
        store = cache._writes.send_batch
        stalled = asyncio.Event()

        async def slow_store(commands: Any) -> Any:
            if any(c[0] == "SET" and c[1] == prefix + "k" for c in commands):
                stalled.set()
                await asyncio.sleep(5)  # the store is in flight when the task is cancelled
            return await store(commands)

        cache._writes.send_batch = slow_store
        owner = asyncio.create_task(cache.get_or_set("k", lambda: "v", 30, lock_timeout=20))
        await stalled.wait()
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        cache._writes.send_batch = store
        held = bool(await cache.has("k:cachecore-lock"))
        started = time.monotonic()
        assert await cache.get_or_set("k", lambda: "w", 30, lock_timeout=20) == "w"
        await cache.aclose()
        return held, time.monotonic() - started

    held, waited = asyncio.run(main())
    assert not held
    assert waited < 1


def test_fn_outliving_the_lock_timeout_is_warned(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())

    def slow() -> int:
        time.sleep(0.2)
        return 1

    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get_or_set("k", slow, 30, lock_timeout=0.05) == 1
        assert cache.get_or_set("fast", lambda: 2, 30, lock_timeout=0.05) == 2
    warned = [r.getMessage() for r in caplog.records if "lock_timeout" in r.getMessage()]
    assert len(warned) == 1 and "'k' took 0.2" in warned[0], warned


def test_memoize_on_classmethods_staticmethods_and_keyed_instances(url: str) -> None:
    cache = cachecore.from_url(url, key_prefix=_prefix())
    calls: list[str] = []

    class Catalog:
        def __init__(self, shop: int) -> None:
            self.shop = shop

        def __cache_key__(self) -> int:
            return self.shop

        @cache.memoize(60)
        def price(self, item: str, currency: str = "EUR") -> str:
            calls.append("price")
            return f"{self.shop}:{item}:{currency}"

        @cache.memoize(60)
        @classmethod
        def below(cls, item: str) -> str:
            calls.append("below")
            return f"{cls.__name__}:{item}"

        @classmethod
        @cache.memoize(60)
        def above(cls, item: str) -> str:
            calls.append("above")
            return f"{cls.__name__}:{item}"

        @cache.memoize(60)
        @staticmethod
        def static(item: str) -> str:
            calls.append("static")
            return item

    # An instance whose class has __cache_key__ has entries of its own.
    assert Catalog(1).price("tea") == "1:tea:EUR"
    assert Catalog(2).price(currency="EUR", item="tea") == "2:tea:EUR"
    assert Catalog(1).price(item="tea") == "1:tea:EUR"  # keyword order and defaults
    assert calls == ["price", "price"]
    Catalog(2).price.invalidate("tea")
    assert Catalog(1).price("tea") == "1:tea:EUR" and calls == ["price", "price"]
    assert Catalog(2).price("tea") == "2:tea:EUR" and calls.count("price") == 3

    for name in ("below", "above", "static"):
        method = getattr(Catalog, name)
        expected = "tea" if name == "static" else "Catalog:tea"
        assert method("tea") == getattr(Catalog(9), name)("tea") == expected
        assert calls.count(name) == 1
        method.invalidate("tea")
        assert method("tea") == expected and calls.count(name) == 2


def test_an_early_xfetch_refresh_recomputes_once_it_holds_the_lock(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The draw that chose to refresh early is not redrawn after taking the lock (a
    second draw said "fresh" most of the time, so refreshes came late and readers met
    expired values: the stampede benchmark's XFetch misses)."""
    cache = cachecore.from_url(url, key_prefix=_prefix())
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.01)  # a measurable delta
        return len(calls)

    assert cache.get_or_set("x", compute, 60, strategy="xfetch", beta=1e9) == 1
    # Refresh now: -ln(1 - 0.999999) * delta * beta is far past the expiry; any later
    # draw (0.0) would say "fresh".
    draws = iter([0.999999])
    monkeypatch.setattr(random, "random", lambda: next(draws, 0.0))
    assert cache.get_or_set("x", compute, 60, strategy="xfetch", beta=1e9) == 2
    assert calls == [1, 1]
    monkeypatch.undo()
    assert cache.get_or_set("x", compute, 60, strategy="xfetch") == 2  # stored


def test_memoize_without_parentheses_is_a_clear_error() -> None:
    cache = cachecore.from_url("memory://")
    with pytest.raises(
        TypeError, match=r"write @cache.memoize\(\) \(with parentheses\) above .*f$"
    ):

        @cache.memoize  # type: ignore[arg-type]
        def f(x: int) -> int:
            return x
