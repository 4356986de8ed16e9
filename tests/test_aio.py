"""The asyncio API beyond the conformance suite: configuration rules, the wire format
shared with the blocking cache, and the known asyncio traps (cancellation, event loops,
fork, closing), each on a real server: the newest Valkey found, through valkey-py's
asyncio client, and the newest Redis through redis-py's where the library matters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from helpers import cachecore_warnings

import cachecore
import cachecore.aio
from cachecore import ConfigurationError, plugins
from cachecore.aio.coalesce import MAX_BATCH
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries


def _newest(kind: str) -> ServerBinary | None:
    found = [b for b in find_server_binaries() if b.kind == kind]
    return found[-1] if found else None


NEWEST = [b for b in (_newest("valkey"), _newest("redis")) if b is not None]
if not NEWEST:
    pytest.skip("no redis-server or valkey-server binary found", allow_module_level=True)


@pytest.fixture(scope="module")
def server(cachecore_servers: ServerPool) -> ServerProcess:
    """The session's server of the newest Valkey (or Redis) binary."""
    return cachecore_servers.shared(NEWEST[0])


@pytest.fixture(params=["valkey", "redis"])
def url(request: pytest.FixtureRequest, server: ServerProcess) -> str:
    """The server's URL for valkey-py's, then redis-py's, asyncio client."""
    return server.url(request.param)


def _prefix() -> str:
    return f"aio-{uuid.uuid4().hex[:8]}:"


# -- configuration ---------------------------------------------------------------------------


def test_sync_and_async_read_each_others_values(url: str) -> None:
    prefix = _prefix()
    blocking = cachecore.from_url(url, key_prefix=prefix, compression="zlib")
    values = {"int": 7, "text": "ünï" * 500, "dict": {"a": [1, 2]}, "none": None}

    async def main() -> None:
        async with cachecore.aio.from_url(url, key_prefix=prefix, compression="zlib") as cache:
            assert blocking.set_many(values) == list(values)
            assert await cache.get_many(*values) == list(values.values())
            assert await cache.set("from-async", (1, "x")) is True
            assert await cache.inc("int") == 8

    asyncio.run(main())
    assert blocking.get("from-async") == (1, "x")
    assert blocking.get("int") == 8


def test_memory_url_shares_data_with_sync_caches() -> None:
    name = f"memory://{uuid.uuid4().hex}"
    cachecore.from_url(name, key_prefix="m:").set("k", "from sync")

    async def main() -> Any:
        cache = cachecore.aio.from_url(name, key_prefix="m:")
        await cache.set("a", "from async")
        return await cache.get("k")

    assert asyncio.run(main()) == "from sync"
    assert cachecore.from_url(name, key_prefix="m:").get("a") == "from async"


def test_from_config_and_get_cache_follow_the_sync_rules(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.setenv("CACHECORE_KEY_PREFIX", "envp:")
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.cachecore]\nurl = "{server.url("valkey")}"\ndefault_timeout = 77\n'
    )
    for build in (cachecore.get_cache, cachecore.aio.get_cache):
        cache = build()
        assert (cache.key_prefix, cache.default_timeout) == ("envp:", 77), build
        assert f"{server.url('valkey')} prefix='envp:'>" in repr(cache)
    config = {"backend": "valkey", "host": server.host, "port": server.port, "key_prefix": "c:"}
    assert (
        cachecore.aio.from_config(config).description == cachecore.from_config(config).description
    )
    with pytest.raises(ConfigurationError, match="either 'url' or 'backend'"):
        cachecore.aio.from_config({"url": "memory://", "backend": "memory"})


def test_circuit_breaker_opens_fails_fast_and_closes(
    cachecore_fresh_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fault = cachecore_fresh_server(NEWEST[0])
    url = fault.url("valkey")
    options = {"circuit_breaker_threshold": 2, "circuit_breaker_reset": 0.5}

    async def main() -> None:
        async with cachecore.aio.from_url(url, key_prefix=_prefix(), **options) as cache:
            assert await cache.set("k", 1) is True
            assert cache.client.state == "closed"
            fault.stop()
            assert await cache.get("k") is None
            assert await cache.get("k") is None
            assert cache.client.state == "open"
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="cachecore"):
                started = time.monotonic()
                assert await cache.get("k") is None
                assert time.monotonic() - started < 0.05  # not sent: fails fast
            assert "CircuitOpenError" in caplog.text
            fault.start()
            await asyncio.sleep(0.6)
            assert await cache.set("k", 2) is True  # the trial call closes it
            assert cache.client.state == "closed"

    asyncio.run(main())


def test_coalesce_reads_option(server: ServerProcess) -> None:
    url = server.url("valkey")
    with pytest.raises(ConfigurationError, match="coalesce_reads"):
        cachecore.aio.from_url(f"{url}?coalesce_reads=maybe")
    # One configuration serves both kinds of cache: the blocking one ignores it.
    assert cachecore.from_url(f"{url}?coalesce_reads=false").ping() is True


def _read_calls(server: ServerProcess) -> tuple[int, int]:
    """How many GET and MGET commands the server has run so far."""
    with server.client() as admin:
        stats = admin.info("commandstats")
    return tuple(  # type: ignore[return-value]
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget")
    )


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "off"])
def test_concurrent_gets_share_one_round_trip(
    url: str, server: ServerProcess, coalesce: bool
) -> None:
    # 100 tasks awaiting get at once: each gets its own value (or None), counted per key,
    # while the server runs one GET and one MGET, in every event loop the cache meets.
    prefix = _prefix()
    with server.client() as admin:
        admin.mset({f"{prefix}k{i}": str(i).encode() for i in range(0, 100, 2)})  # ints as ASCII
    expected = [i if i % 2 == 0 else None for i in range(100)]
    cache = cachecore.aio.from_url(
        f"{url}?coalesce_reads={str(coalesce).lower()}", key_prefix=prefix
    )

    async def main() -> list[Any]:
        await cache.ping()
        return await asyncio.gather(*(cache.get(f"k{i}") for i in range(100)))

    for _ in range(2):  # a second asyncio.run: the batching state is per loop
        before = _read_calls(server)
        assert asyncio.run(main()) == expected
        gets, mgets = (after - was for after, was in zip(_read_calls(server), before, strict=True))
        assert (gets, mgets) == ((1, 1) if coalesce else (100, 0))
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (100, 100)


def test_a_crowd_of_gets_is_split_into_bounded_mgets(url: str, server: ServerProcess) -> None:
    # 2,500 concurrent gets: one GET, then MGETs of at most MAX_BATCH keys each (no single
    # huge MGET holding the server), every caller still given its own value.
    prefix = _prefix()
    count = 2500
    with server.client() as admin:
        admin.mset({f"{prefix}k{i}": str(i).encode() for i in range(count)})
    cache = cachecore.aio.from_url(url, key_prefix=prefix)

    async def main() -> list[Any]:
        await cache.ping()
        return await asyncio.gather(*(cache.get(f"k{i}") for i in range(count)))

    before = _read_calls(server)
    assert asyncio.run(main()) == list(range(count))
    gets, mgets = (after - was for after, was in zip(_read_calls(server), before, strict=True))
    assert gets == 1 and mgets == math.ceil((count - 1) / MAX_BATCH) == 3


@pytest.mark.parametrize("raise_errors", [False, True])
def test_concurrent_gets_on_a_stopped_server_fail_one_by_one(
    cachecore_fresh_server: Any, caplog: pytest.LogCaptureFixture, raise_errors: bool
) -> None:
    fault = cachecore_fresh_server(NEWEST[0])
    cache = cachecore.aio.from_url(
        fault.url("valkey"), key_prefix=_prefix(), raise_errors=raise_errors
    )

    async def main() -> list[Any]:
        assert await cache.set("k1", 1) is True
        fault.stop()
        return await asyncio.gather(
            *(cache.get(f"k{i}") for i in range(100)), return_exceptions=True
        )

    with caplog.at_level(logging.WARNING, logger="cachecore"):
        results = asyncio.run(main())
    warned = cachecore_warnings(caplog)
    if raise_errors:
        assert all(isinstance(r, cachecore.BackendError) for r in results), results
        assert len({id(r) for r in results}) == 100  # each caller its own error
        assert warned == []
    else:
        assert results == [None] * 100
        assert len(warned) == 100, warned  # one warning per call
        assert all("get failed" in message for message in warned)
    assert sum(cache.stats().faults.values()) == 100


class _BlockingOnlyPlugin:
    """A third-party plugin written before the asyncio hook existed."""

    backend = cachecore.Backend(name="olddb", schemes=("olddb",), description="old")

    @cachecore.hookimpl
    def cachecore_backends(self) -> list[cachecore.Backend]:
        return [self.backend]

    @cachecore.hookimpl
    def cachecore_create_client(
        self, backend: cachecore.Backend, url: str, options: Mapping[str, Any]
    ) -> Any:
        import redis

        return redis.Redis.from_url(url.replace("olddb://", "redis://", 1), **options)


def test_plugin_without_the_async_hook_is_named() -> None:
    manager, registry = plugins.new_plugin_manager(load_entry_points=False)
    manager.register(_BlockingOnlyPlugin(), name="olddb")
    registry.provenance["olddb"] = ("cachecore-olddb", "1.2")
    plugins.index_plugins(registry)
    backend = plugins.find_backend("olddb", registry)
    with pytest.raises(ConfigurationError, match=r"cachecore-olddb 1\.2\) has no asyncio support"):
        plugins.create_async_client(backend, "olddb://x", {}, registry)


# -- the asyncio traps -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["valkey", "redis"])
def test_cancelled_calls_never_leave_a_reply_for_the_next_caller(
    server: ServerProcess, scheme: str
) -> None:
    # A proxy holds each reply a little, so cancellations land while a reply is on its
    # way; every later call must get its own reply, never the cancelled one's. Both
    # libraries: the fast path writes onto each one's connections.
    from cachecore.testing.proxy import FaultProxy

    iterations = int(os.environ.get("CACHECORE_TEST_CANCEL_ITERATIONS", "2000"))
    prefix = _prefix()
    with server.client() as admin:
        admin.mset({f"{prefix}k{i}": str(i).encode() for i in range(50)})  # ints, as ASCII

    async def main(proxy: FaultProxy) -> tuple[int, int, int]:
        url = f"{scheme}://{proxy.host}:{proxy.port}/0"
        mismatched = cancelled = cancelled_gets = 0
        async with cachecore.aio.from_url(url, key_prefix=prefix, socket_timeout=5) as cache:
            assert await cache.ping() is True
            proxy.delay_replies(0.002)
            rng = random.Random(12)
            for _ in range(iterations):
                key = rng.randrange(50)
                task = asyncio.ensure_future(cache.get_many(f"k{key}", f"k{(key + 1) % 50}"))
                # Concurrent gets: the first is sent alone, the others wait in one MGET;
                # one of them (perhaps the lone one) is cancelled on the way.
                wanted = [rng.randrange(50) for _ in range(4)]
                gets = [asyncio.ensure_future(cache.get(f"k{i}")) for i in wanted]
                await asyncio.sleep(rng.random() * 0.0025)
                if task.cancel():
                    cancelled += 1
                if gets[rng.randrange(4)].cancel():
                    cancelled_gets += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # A reply lost by the batch would leave its caller waiting: fail, not hang.
                got_all = await asyncio.wait_for(asyncio.gather(*gets, return_exceptions=True), 5)
                for i, got_one in zip(wanted, got_all, strict=True):
                    if not isinstance(got_one, asyncio.CancelledError):
                        mismatched += got_one != i
                other = rng.randrange(50)
                got = await cache.get(f"k{other}")
                mismatched += got != other
        return mismatched, cancelled, cancelled_gets

    # The proxy stops by itself after its lifetime: give a long run (10,000 iterations
    # take minutes on a busy machine) the time it needs.
    lifetime = max(120.0, iterations * 0.1)
    with FaultProxy(server.host, server.port, lifetime=lifetime) as proxy:
        mismatched, cancelled, cancelled_gets = asyncio.run(main(proxy))
    assert mismatched == 0
    assert cancelled > iterations // 4, cancelled  # the cancellations did land mid-flight
    assert cancelled_gets > iterations // 4, cancelled_gets


@pytest.mark.parametrize("scheme", ["valkey", "redis"])
def test_lost_reply_never_reruns_inc_add_or_delete(
    server: ServerProcess, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The proxy drops a reply after the server ran the command: inc/dec/add/delete give
    # their fault value with one warning and never run twice; idempotent calls retry.
    from cachecore.testing.proxy import FaultProxy

    prefix = _prefix()

    async def main(proxy: FaultProxy) -> None:
        url = f"{scheme}://{proxy.host}:{proxy.port}/0"
        async with cachecore.aio.from_url(url, key_prefix=prefix) as cache:
            assert await cache.set("gone", 1) is True
            once: list[tuple[str, Callable[[], Awaitable[Any]], Any]] = [
                ("inc", lambda: cache.inc("n"), None),
                ("dec", lambda: cache.dec("m", 5), None),
                ("add", lambda: cache.add("lock", "mine"), False),
                ("delete", lambda: cache.delete("gone"), False),
            ]
            for label, call, fault in once:
                assert await cache.ping() is True  # reconnected: the drop hits the call
                caplog.clear()
                proxy.drop_next_reply()
                with caplog.at_level(logging.WARNING, logger="cachecore"):
                    assert await call() is fault, label
                warnings = cachecore_warnings(caplog)
                assert len(warnings) == 1 and label in warnings[0], warnings
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="cachecore"):
                retried: list[tuple[str, Callable[[], Awaitable[Any]], Any]] = [
                    ("get", lambda: cache.get("lock"), "mine"),
                    ("get_many", lambda: cache.get_many("lock", "x"), ["mine", None]),
                    ("set", lambda: cache.set("a", 2), True),
                ]
                for label, call, expected in retried:
                    assert await cache.ping() is True
                    proxy.drop_next_reply()
                    assert await call() == expected, label
            assert cachecore_warnings(caplog) == []
            assert await cache.inc("n") == 2  # the lost inc ran exactly once

    with FaultProxy(server.host, server.port) as proxy, server.client() as admin:
        asyncio.run(main(proxy))
        assert admin.get(prefix + "m") == b"-5"
        assert admin.exists(prefix + "gone") == 0
        assert proxy.dropped == 7


def test_an_observer_sees_every_hot_call(url: str) -> None:
    # get, inc and get_many skip the generic driver when no one observes the cache;
    # once observed, each call must still reach the observers.
    from cachecore.observability import CallEvent, observe

    events: list[CallEvent] = []

    class Recorder:
        def on_call(self, event: CallEvent) -> None:
            events.append(event)

    async def main() -> None:
        async with cachecore.aio.from_url(url, key_prefix=_prefix()) as cache:
            observe(cache, Recorder())
            await cache.set("k", 1)
            await cache.get("k")
            await cache.inc("n")
            await cache.dec("n")
            await cache.get_many("k", "x")

    asyncio.run(main())
    assert [(e.operation, e.outcome) for e in events] == [
        ("set", "ok"), ("get", "hit"), ("inc", "ok"), ("dec", "ok"), ("get_many", "ok")
    ]  # fmt: skip


def test_one_cache_across_event_loops(url: str) -> None:
    cache = cachecore.aio.from_url(url, key_prefix=_prefix())
    assert asyncio.run(cache.set("k", 1)) is True
    # A second asyncio.run: the first loop's connections were closed as it ended.
    assert asyncio.run(cache.get("k")) == 1
    assert asyncio.run(cache.inc("n")) == 1

    async def in_two_loops_at_once() -> None:
        assert await cache.get("k") == 1
        errors: list[BaseException] = []

        def other_loop() -> None:
            try:
                asyncio.run(cache.get("k"))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_loop)
        thread.start()
        thread.join()
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert "another running event loop" in str(errors[0])
        assert await cache.get("k") == 1
        await cache.aclose()

    asyncio.run(in_two_loops_at_once())


def test_fork_gives_the_child_fresh_connections(url: str) -> None:
    cache = cachecore.aio.from_url(url, key_prefix=_prefix())

    async def parent() -> None:
        assert await cache.set("k", "parent") is True
        parent_id = await cache.client.execute_command("CLIENT ID")
        pid = os.fork()
        if pid == 0:  # the child: a thread of its own runs a new loop
            outcome: list[int] = []

            def child() -> None:
                async def use() -> None:
                    child_id = await cache.client.execute_command("CLIENT ID")
                    ok = child_id != parent_id and await cache.get("k") == "parent"
                    ok = ok and await cache.set("k", "child") is True
                    outcome.append(0 if ok else 1)
                    await cache.aclose()

                try:
                    asyncio.run(use())
                except BaseException:
                    import traceback

                    traceback.print_exc()

            thread = threading.Thread(target=child)
            thread.start()
            thread.join()
            os._exit(outcome[0] if outcome else 2)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection was left alone: it answers its own calls.
        assert await cache.client.execute_command("CLIENT ID") == parent_id
        assert await cache.get("k") == "child"
        await cache.aclose()

    asyncio.run(parent())


_CLOSE_SCRIPT = """
import asyncio, gc, sys, warnings
warnings.simplefilter("error", ResourceWarning)
import cachecore.aio

async def main():
    caches = [cachecore.aio.from_url(url, key_prefix="close:") for url in sys.argv[1:]]
    for cache in caches:
        assert await cache.set("k", 1) is True
        await asyncio.gather(*(cache.get("k") for _ in range(20)))  # several connections
    for cache in caches:
        await cache.aclose()
    async with cachecore.aio.from_url(sys.argv[1]) as cache:
        await cache.get("k")

asyncio.run(main())
gc.collect()
print("closed")
"""


def test_aclose_leaves_no_unclosed_connection(server: ServerProcess) -> None:
    urls = [server.url("valkey"), server.url("redis"), "memory://close"]
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _CLOSE_SCRIPT, *urls],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"
    assert "nclosed" not in done.stderr, done.stderr


def test_framework_methods_on_the_asyncio_cache(url: str) -> None:
    # lookup / lookup_many / touch / inc_existing: the protocol the blocking cache's
    # framework backends use, shared by the asyncio cache.
    prefix = _prefix()
    blocking = cachecore.from_url(url, key_prefix=prefix)

    async def main() -> None:
        async with cachecore.aio.from_url(url, key_prefix=prefix) as cache:
            assert await cache.set("none", None) is True
            assert await cache.lookup("none", "default") is None
            assert await cache.lookup("missing", "default") == "default"
            assert await cache.lookup_many("none", "missing") == {"none": None}
            assert await cache.set("n", 5, timeout=100) is True
            assert await cache.inc_existing("n", 2) == 7
            with pytest.raises(KeyError):
                await cache.inc_existing("absent")
            assert await cache.touch("n", 0) is True
            assert await cache.touch("absent", 10) is False

    asyncio.run(main())
    assert blocking.get("n") == 7
    assert int(blocking.client.execute_command("TTL", prefix + "n")) == -1
