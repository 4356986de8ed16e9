"""Server faults beyond the shipped conformance suite, against real servers (issue 4).

The conformance suite (:mod:`cachecore.testing.conformance`) already covers a stopped
server, ``raise_errors``, a paused server, a restart on the same port, undecodable values
and the inc/add races. This file adds what a production server does on its own: running
out of memory (OOM), being a read-only replica (READONLY), loading its dataset (LOADING),
dropping a connection (CLIENT KILL), dying with SIGKILL; plus heavy threading, fork, and
hostile input sizes.

For speed these run on the newest Valkey, Redis and KeyDB binaries found (KeyDB skips,
saying why, when there is none), not on the whole matrix.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import random
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Target, cachecore_warnings, newest_targets

import cachecore
from cachecore import BackendError, BaseRedisCache, ValueTooLargeError
from cachecore.testing.proxy import FaultProxy
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess
from cachecore.timeouts import MAX_TIMEOUT

# -- targets: the newest Valkey, Redis and KeyDB, each through its own plugin --------------

TARGETS = newest_targets("valkey", "redis", "keydb")

WRITE_FAULTS: dict[str, tuple[Callable[[BaseRedisCache], Any], Any]] = {
    "set": (lambda c: c.set("w", "value"), False),
    "add": (lambda c: c.add("w-new", "value"), False),
    "set_many": (lambda c: c.set_many({"w1": 1, "w2": "two"}), []),
    "inc": (lambda c: c.inc("counter"), None),
    "dec": (lambda c: c.dec("counter"), None),
}
"""The methods that allocate memory on the server, with their fault values."""


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """The newest Valkey, Redis and KeyDB, each through its own plugin (valkey://...)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def shared(target: Target, cachecore_servers: ServerPool) -> ServerProcess:
    """The session's running server for ``target`` (never stopped by these tests)."""
    return cachecore_servers.shared(target.binary)


def open_cache(server: ServerProcess, target: Target, **options: Any) -> BaseRedisCache:
    """A cache on ``server`` through ``target``'s plugin, with a unique key prefix."""
    options.setdefault("key_prefix", f"faults-{uuid.uuid4().hex[:8]}:")
    return cachecore.from_url(server.url(target.scheme), **options)


def stored_keys(server: ServerProcess, cache: BaseRedisCache) -> set[str]:
    """The keys under ``cache``'s prefix that really are on the server (prefix removed)."""
    prefix = cache._prefix()
    with server.client() as admin:
        found = admin.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000)
        return {key.decode()[len(prefix) :] for key in found}


def call_and_one_warning(
    caplog: pytest.LogCaptureFixture, call: Callable[[], Any]
) -> tuple[Any, str]:
    """Run ``call``; return its result and the one warning it must have logged."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        result = call()
    messages = cachecore_warnings(caplog)
    assert len(messages) == 1, messages
    return result, messages[0]


# -- OOM ----------------------------------------------------------------------------------


def _noeviction(server: ServerProcess, maxmemory: int) -> None:
    with server.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", maxmemory)


def test_oom_refuses_writes_with_one_warning_and_keeps_reads(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = cachecore_fresh_server(target.binary)
    cache = open_cache(server, target)
    assert cache.set_many({"kept": {"v": 1}, "other": 2}) == ["kept", "other"]
    # Below what the server already uses: every command that allocates is refused.
    _noeviction(server, 1)

    for name, (call, fault_value) in WRITE_FAULTS.items():
        result, message = call_and_one_warning(caplog, functools.partial(call, cache))
        assert result == fault_value, name
        assert "OutOfMemoryError" in message, message
        assert "maxmemory" in message, message
        assert name in message, message

    # Nothing was written, reads still work, and deleting (which frees memory) works.
    assert stored_keys(server, cache) == {"kept", "other"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("kept") == {"v": 1}
        assert cache.get_many("kept", "other", "w") == [{"v": 1}, 2, None]
        assert cache.get_dict("kept") == {"kept": {"v": 1}}
        assert cache.has("kept") is True
        assert cache.delete("other") is True
    assert cachecore_warnings(caplog) == []

    with pytest.raises(BackendError, match="OutOfMemoryError") as info:
        open_cache(server, target, raise_errors=True).set("k", 1)
    assert type(info.value.__cause__).__name__ == "OutOfMemoryError"

    # Once memory is available again the same cache writes again.
    _noeviction(server, 0)
    assert cache.set("w", "value") is True
    assert cache.inc("counter") == 1


def test_oom_set_many_reports_exactly_the_keys_stored(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = cachecore_fresh_server(target.binary)
    cache = open_cache(server, target)
    with server.client() as admin:
        used = int(admin.info("memory")["used_memory"])
    _noeviction(server, used + 1_000_000)
    mapping = {f"k{i}": bytes([i]) * 10_000 for i in range(200)}  # 2 MB for 1 MB of room

    with caplog.at_level(logging.WARNING, logger="cachecore"):
        stored = cache.set_many(mapping)

    assert 0 < len(stored) < len(mapping), len(stored)
    # Exactly what the server holds, in mapping order, and every stored value is whole.
    on_server = stored_keys(server, cache)
    assert stored == [key for key in mapping if key in on_server]
    assert cache.get_many(*stored) == [mapping[key] for key in stored]
    messages = cachecore_warnings(caplog)
    assert len(messages) == 1, messages
    assert f"stored {len(stored)} of {len(mapping)} keys" in messages[0]
    assert "OutOfMemoryError" in messages[0]

    # With raise_errors the partial batch raises, and what was stored stays stored.
    raising = open_cache(server, target, raise_errors=True)
    with server.client() as admin:
        used = int(admin.info("memory")["used_memory"])
    _noeviction(server, used + 1_000_000)
    with pytest.raises(BackendError, match="set_many failed") as info:
        raising.set_many(mapping)
    assert type(info.value.__cause__).__name__ == "OutOfMemoryError"
    assert 0 < len(stored_keys(server, raising)) < len(mapping)


# -- READONLY -----------------------------------------------------------------------------


def test_readonly_replica_refuses_writes_and_serves_reads(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary = cachecore_fresh_server(target.binary, extra_args=["--repl-diskless-sync-delay", "0"])
    replica = cachecore_fresh_server(
        target.binary, extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
    )
    prefix = f"ro-{uuid.uuid4().hex[:6]}:"
    writer = open_cache(primary, target, key_prefix=prefix)
    assert writer.set_many({"a": {"v": 1}, "counter": 5}) == ["a", "counter"]
    cache = open_cache(replica, target, key_prefix=prefix)
    deadline = time.monotonic() + 10
    while cache.get("a") is None:
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.02)

    faults = {
        **WRITE_FAULTS,
        "delete": (lambda c: c.delete("a"), False),
        "delete_many": (lambda c: c.delete_many("a", "b"), []),
        "clear": (lambda c: c.clear(), False),
    }
    for name, (call, fault_value) in faults.items():
        result, message = call_and_one_warning(caplog, functools.partial(call, cache))
        assert result == fault_value, name
        assert "ReadOnlyError" in message, message
        assert "read only replica" in message, message

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("a") == {"v": 1}
        assert cache.get_many("a", "counter", "missing") == [{"v": 1}, 5, None]
        assert cache.get_dict("a", "missing") == {"a": {"v": 1}, "missing": None}
        assert cache.has("a") is True
    assert cachecore_warnings(caplog) == []
    assert writer.get_many("a", "counter") == [{"v": 1}, 5]

    with pytest.raises(BackendError, match="ReadOnlyError") as info:
        open_cache(replica, target, key_prefix=prefix, raise_errors=True).set("a", 1)
    assert type(info.value.__cause__).__name__ == "ReadOnlyError"
    replica.stop()  # before the primary, which would otherwise wait for it on shutdown


# -- LOADING ------------------------------------------------------------------------------


def test_loading_server_reads_as_miss_then_recovers(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An RDB of 10,000 keys, loaded with a 100 us delay per key: about a second of LOADING.
    source = cachecore_fresh_server(target.binary)
    prefix = "load:"
    open_cache(source, target, key_prefix=prefix).set("k", {"v": 1})
    with source.client() as admin:
        pipe = admin.pipeline(transaction=False)
        for i in range(10_000):
            pipe.set(f"fill:{i}", "x")
        pipe.execute()
        admin.save()
    loading = ServerProcess(
        target.binary,
        extra_args=["--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"],
    )
    try:
        shutil.copy(source.directory / "dump.rdb", loading.directory / "dump.rdb")
        # start() returns only once the dataset is loaded (PING answers), so run it aside.
        starter = threading.Thread(target=loading.start)
        starter.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((loading.host, loading.port), timeout=0.1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.005)
        cache = open_cache(loading, target, key_prefix=prefix)
        breaker = open_cache(loading, target, key_prefix=prefix, circuit_breaker_threshold=1)
        started = time.monotonic()
        for call, fault_value in [
            (lambda: cache.get("k"), None),
            (lambda: cache.get_many("k", "x"), [None, None]),
            (lambda: cache.has("k"), False),
            (lambda: cache.set("new", 1), False),
            (lambda: cache.inc("n"), None),
        ]:
            result, message = call_and_one_warning(caplog, call)
            assert result == fault_value
            assert "BusyLoadingError" in message, message
            assert "loading the dataset" in message, message
        assert time.monotonic() - started < 1.0, "a LOADING reply must not wait"
        # LOADING is the server answering: it never opens the circuit breaker.
        for _ in range(3):
            result, message = call_and_one_warning(caplog, lambda: breaker.get("k"))
            assert result is None and "BusyLoadingError" in message, message
        assert breaker.client.state == "closed"
        starter.join(15)
        assert loading.pid is not None
        # Same cache object, no reconnect needed by the caller.
        assert cache.get("k") == {"v": 1}
        assert cache.set("new", 1) is True
        assert breaker.get("k") == {"v": 1}
    finally:
        loading.close()


# -- dropped connections and a killed server ----------------------------------------------


def test_connection_killed_between_calls_is_retried_transparently(
    target: Target, shared: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    cache = open_cache(shared, target, client_name=name)
    calls: list[tuple[str, Callable[[], Any], Any]] = [
        ("set", lambda: cache.set("a", "v"), True),
        ("get", lambda: cache.get("a"), "v"),
        ("get_many", lambda: cache.get_many("a", "b"), ["v", None]),
        ("set_many", lambda: cache.set_many({"b": 2}), ["b"]),
        ("add", lambda: cache.add("c", 3), True),
        ("has", lambda: cache.has("c"), True),
        ("inc", lambda: cache.inc("n"), 1),
        ("inc again", lambda: cache.inc("n"), 2),
        ("delete", lambda: cache.delete("c"), True),
        ("delete_many", lambda: cache.delete_many("b"), ["b"]),
        ("clear", cache.clear, True),
    ]
    with shared.client() as admin:
        killed = 0
        for label, call, expected in calls:
            ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
            for client_id in ids:
                killed += admin.client_kill_filter(_id=client_id)
            with caplog.at_level(logging.WARNING, logger="cachecore"):
                assert call() == expected, label
        assert killed >= len(calls) - 1  # every call but the first found one to kill
    assert cachecore_warnings(caplog) == []


# -- lost replies: a command the server ran, whose reply never arrived ------------------

SEND_PATHS = [
    pytest.param({}, id="pooled"),
    pytest.param({"circuit_breaker": True}, id="execute_command"),
]
"""The cache's two ways to send: straight onto the pool, and through a wrapping client's
``execute_command`` (the circuit breaker's)."""


@pytest.mark.parametrize("options", SEND_PATHS)
def test_lost_reply_never_reruns_inc_add_or_delete(
    target: Target,
    shared: ServerProcess,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
) -> None:
    prefix = f"lost-{uuid.uuid4().hex[:8]}:"
    with FaultProxy(shared.host, shared.port) as proxy, shared.client() as admin:
        url = f"{target.scheme}://{proxy.host}:{proxy.port}/0"
        cache = cachecore.from_url(url, key_prefix=prefix, **options)
        raising = cachecore.from_url(url, key_prefix=prefix, raise_errors=True, **options)
        assert cache.set("gone", 1) is True and raising.set("warm", 1) is True  # connected

        # Each call's reply is dropped after the server ran it: an honest fault, never a
        # second run (inc twice = 2; add again = False; UNLINK again = 0).
        for label, call, stored in [
            ("inc", lambda: cache.inc("n"), (b"n", b"1")),
            ("dec", lambda: cache.dec("m", 5), (b"m", b"-5")),
            ("add", lambda: cache.add("lock", "mine"), (b"lock", None)),
            ("delete", lambda: cache.delete("gone"), (b"gone", None)),
        ]:
            assert cache.ping() is True  # reconnected: the drop hits the command's reply
            proxy.drop_next_reply()
            result, message = call_and_one_warning(caplog, call)
            assert result is (None if label in ("inc", "dec") else False), label
            assert label in message and "ConnectionError" in message, message
            key, value = stored
            if value is not None:
                assert admin.get(prefix.encode() + key) == value, label
        assert cache.get("lock") == "mine", "add stored its value once, as its own"
        assert admin.exists(prefix + "gone") == 0
        assert proxy.dropped == 4

        assert raising.ping() is True
        proxy.drop_next_reply()
        with pytest.raises(BackendError, match="inc failed") as info:
            raising.inc("r")
        assert "ConnectionError" in type(info.value.__cause__).__name__
        assert admin.get(prefix + "r") == b"1"

        # Idempotent commands are still retried transparently on a new connection.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            for label, call, expected in [
                ("set", lambda: cache.set("a", 2), True),
                ("get", lambda: cache.get("a"), 2),
                ("get_many", lambda: cache.get_many("a", "x"), [2, None]),
                ("has", lambda: cache.has("a"), True),
                ("set_many", lambda: cache.set_many({"b": 3}), ["b"]),
                ("delete_many", lambda: cache.delete_many("b"), ["b"]),
                ("inc after", lambda: cache.inc("n"), 2),
            ]:
                assert cache.ping() is True
                if label != "inc after":
                    proxy.drop_next_reply()
                assert call() == expected, label
        assert cachecore_warnings(caplog) == []
        assert proxy.dropped == 11


def test_fault_proxy_delays_replies_and_stops_by_itself(
    target: Target, shared: ServerProcess
) -> None:
    with FaultProxy(shared.host, shared.port) as proxy:
        cache = cachecore.from_url(f"{target.scheme}://{proxy.host}:{proxy.port}/0")
        assert cache.ping() is True
        proxy.delay_replies(0.1)
        started = time.monotonic()
        assert cache.ping() is True
        assert 0.1 <= time.monotonic() - started < 0.5
        proxy.delay_replies(0)
    ended = FaultProxy(shared.host, shared.port, lifetime=0.2)
    time.sleep(0.5)
    with pytest.raises(OSError):
        socket.create_connection((ended.host, ended.port), timeout=0.5).close()


def test_server_killed_mid_use_gives_fault_values_then_recovers(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = cachecore_fresh_server(target.binary)
    cache = open_cache(server, target)
    errors: list[BaseException] = []
    after_kill: list[tuple[str, Any]] = []
    killed = threading.Event()
    stop = threading.Event()

    def work(n: int) -> None:
        try:
            while not stop.is_set():
                was_killed = killed.is_set()
                results = [
                    ("set", cache.set(f"k{n}", n)),
                    ("get", cache.get(f"k{n}")),
                    ("inc", cache.inc("total")),
                    ("get_many", cache.get_many(f"k{n}", "total")),
                    ("set_many", cache.set_many({f"m{n}": n})),
                ]
                if was_killed:
                    after_kill.extend(results)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        server.kill()  # SIGKILL: no goodbye to the clients
        killed.set()
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert after_kill, "the workers made no call after the kill"
    faults = {"set": False, "get": None, "inc": None, "get_many": [None, None], "set_many": []}
    for name, result in after_kill:
        assert result == faults[name], (name, result)
    assert any("ConnectionError" in m for m in cachecore_warnings(caplog))

    # Back on the same port: the same cache object reconnects by itself.
    server.start()
    assert cache.set("after", 1) is True
    assert cache.get("after") == 1


# -- timeouts, measured -------------------------------------------------------------------


def test_default_timeouts_bound_every_kind_of_call_on_a_hung_server(
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = cachecore_fresh_server(target.binary)
    connected = open_cache(server, target)
    assert connected.set("a", 1) is True
    raising = open_cache(server, target, raise_errors=True)
    assert raising.ping() is True
    server.pause()
    try:
        # A write on a connection already open; a read that must reconnect (the kernel
        # still accepts the connection, so connecting succeeds and the handshake reply
        # times out); a cache that never connected; a pipeline; raise_errors.
        fresh = open_cache(server, target)
        timings: dict[str, float] = {}
        calls: list[tuple[str, Callable[[], Any], Any]] = [
            ("set on an open connection", lambda: connected.set("a", 2), False),
            ("get", lambda: connected.get("a"), None),
            ("new connection", lambda: fresh.get("a"), None),
            ("set_many", lambda: connected.set_many({"b": 3}), []),
        ]
        for label, call, fault_value in calls:
            started = time.monotonic()
            result, message = call_and_one_warning(caplog, call)
            timings[label] = time.monotonic() - started
            assert result == fault_value, label
            assert "TimeoutError" in message, message
        started = time.monotonic()
        with pytest.raises(BackendError, match="TimeoutError") as info:
            raising.get("a")
        timings["raise_errors"] = time.monotonic() - started
        assert type(info.value.__cause__).__name__ == "TimeoutError"
    finally:
        server.resume()
    # One socket timeout (1 s) each: a timeout is not retried.
    for label, elapsed in timings.items():
        assert 0.8 < elapsed < 1.8, (label, elapsed)
    # The write sent before the timeout was still applied once the server resumed,
    # although set() had reported False: a timed-out write is not a write that
    # did not happen.
    assert connected.get("a") == 2

    server.stop()
    started = time.monotonic()
    assert connected.get("a") is None
    assert fresh.set("a", 1) is False
    assert time.monotonic() - started < 0.5, "a refused connection must fail at once"


# -- threads and fork ---------------------------------------------------------------------


def test_eight_threads_of_mixed_operations(
    target: Target, shared: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    cache = open_cache(shared, target)
    errors: list[BaseException] = []
    incs = [0] * 8
    ops = 1000

    def work(n: int) -> None:
        rng = random.Random(n)
        model: dict[str, Any] = {}  # this thread's own keys: nobody else touches them
        try:
            for i in range(ops):
                key = f"t{n}-{rng.randrange(20)}"
                op = rng.randrange(8)
                if op == 0:
                    assert cache.set(key, (n, i)) is True
                    model[key] = (n, i)
                elif op == 1:
                    assert cache.get(key) == model.get(key)
                elif op == 2:
                    added = cache.add(key, (n, i))
                    assert added is (key not in model)
                    model.setdefault(key, (n, i))
                elif op == 3:
                    assert cache.delete(key) is (key in model)
                    model.pop(key, None)
                elif op == 4:
                    other = f"t{n}-{rng.randrange(20)}"
                    assert cache.get_many(key, other) == [model.get(key), model.get(other)]
                elif op == 5:
                    batch = {f"t{n}-{rng.randrange(20)}": [n, i, j] for j in range(3)}
                    assert cache.set_many(batch) == list(batch)
                    model.update(batch)
                elif op == 6:
                    assert cache.inc("shared-total") is not None
                    incs[n] += 1
                else:
                    assert cache.add("shared-race", n) in (True, False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert cachecore_warnings(caplog) == []
    assert cache.get("shared-total") == sum(incs) > 0
    assert cache.get("shared-race") in range(8)


def test_forked_child_uses_its_own_connections(target: Target, shared: ServerProcess) -> None:
    cache = open_cache(shared, target)
    assert cache.set("parent", "p") is True
    parent_id = int(cache._write_client.execute_command("CLIENT", "ID"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            ok = (
                cache.get("parent") == "p"
                and cache.set("child", {"from": "child"}) is True
                and cache.get("child") == {"from": "child"}
                and cache.inc("forked") == 1
            )
            child_id = int(cache._write_client.execute_command("CLIENT", "ID"))
            os.write(write_end, str(child_id).encode())
            status = 0 if ok else 2
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child_id = int(reader.read() or b"0")
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert child_id not in (0, parent_id), "the child must open its own connection"
    # The parent's pooled connection was not disturbed by the child.
    assert int(cache._write_client.execute_command("CLIENT", "ID")) == parent_id
    assert cache.get("child") == {"from": "child"}
    assert cache.inc("forked") == 2
    assert cache.get("parent") == "p"


# -- hostile input ------------------------------------------------------------------------

UNICODE_KEYS = [
    "",
    " ",
    "\x00",
    "Ωμέγα",
    "日本語のキー",
    "😀🎉👩‍👩‍👧‍👦",  # with zero-width joiners
    "e\u0301",  # combining accent
    "\u200b\ufeff",  # zero-width space, BOM
    "\u202eRTL override",
    "\U0010ffff",  # the last code point
    "key:with:colons*and?glob[chars]\\",
]


def _set_calls(server: ServerProcess) -> int:
    with server.client() as admin:
        stats = admin.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("set", "exec"))


def test_huge_unicode_and_empty_keys(target: Target, shared: ServerProcess) -> None:
    cache = open_cache(shared, target)
    huge = "k" * (1024 * 1024)
    for key in [huge, "é" * 500_000, *UNICODE_KEYS]:
        assert cache.set(key, key[:10]) is True, key[:10]
        assert cache.get(key) == key[:10]
        assert cache.get_many(key, "missing") == [key[:10], None]
        assert cache.has(key) is True
        assert cache.add(key, "again") is False
        assert cache.delete(key) is True
        assert cache.inc(key, 5) == 5
        assert cache.delete_many(key) == [key]
        assert cache.get(key) is None
    mapping = {key: i for i, key in enumerate(UNICODE_KEYS)}
    assert cache.set_many(mapping) == list(mapping)
    assert cache.get_dict(*mapping) == mapping
    assert stored_keys(shared, cache) == set(mapping)


def test_keys_that_are_not_utf8_encodable_raise_value_error(
    target: Target, shared: ServerProcess
) -> None:
    cache = open_cache(shared, target)
    lone_surrogate = "bad\ud800key"
    for call in (
        lambda: cache.get(lone_surrogate),
        lambda: cache.set(lone_surrogate, 1),
        lambda: cache.set_many({"ok": 1, lone_surrogate: 2}),
        lambda: cache.get_many("ok", lone_surrogate),
    ):
        with pytest.raises(UnicodeEncodeError):
            call()
    # Raised before anything was sent: nothing stored, the connection still in step.
    assert stored_keys(shared, cache) == set()
    assert cache.set("ok", 1) is True
    assert cache.get_many("ok") == [1]


def test_max_value_size_refuses_before_sending(target: Target, shared: ServerProcess) -> None:
    cache = open_cache(shared, target, max_value_size=1000)
    assert cache.set("small", "x" * 100) is True
    before = _set_calls(shared)
    with pytest.raises(ValueTooLargeError, match="max_value_size"):
        cache.set("big", "x" * 2000)
    with pytest.raises(ValueTooLargeError):
        cache.add("big", b"x" * 2000)
    with pytest.raises(ValueTooLargeError):
        cache.set_many({"fine": 1, "big": ["x"] * 1000})
    assert isinstance(ValueTooLargeError("x"), ValueError)
    assert _set_calls(shared) == before, "a refused value must not reach the server"
    assert stored_keys(shared, cache) == {"small"}


@pytest.mark.skipif(not TARGETS, reason="no server binary found")
def test_hundred_megabyte_value_round_trips(cachecore_servers: ServerPool) -> None:
    # One target is enough for the size: the first (Valkey when there is one).
    target: Target = TARGETS[0].values[0]  # type: ignore[assignment]
    cache = open_cache(cachecore_servers.shared(target.binary), target)
    value = bytes(range(256)) * (100 * 1024 * 1024 // 256)
    started = time.monotonic()
    assert cache.set("huge", value, timeout=dt.timedelta(minutes=1)) is True
    assert cache.get("huge") == value
    elapsed = time.monotonic() - started
    assert cache.delete("huge") is True
    assert elapsed < 20, elapsed


# -- cachelib compatibility and call-time errors ------------------------------------------


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once closed


def test_check_connection_failure_is_a_runtime_error_as_in_cachelib() -> None:
    from cachecore_redis import RedisCache
    from cachecore_valkey import ValkeyCache

    port = _refused_port()
    for cache_class in (RedisCache, ValkeyCache):
        try:  # the way code written for cachelib 0.17 catches it
            cache_class(host="127.0.0.1", port=port, check_connection=True)
        except RuntimeError as exc:
            assert isinstance(exc, BackendError), cache_class
            assert isinstance(exc, cachecore.ConnectionCheckError)
            assert "cannot reach" in str(exc)
        else:
            pytest.fail(f"{cache_class.__name__} did not raise")


def test_timeout_past_max_timeout_raises_before_sending(
    target: Target, shared: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    cache = open_cache(shared, target)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        # The largest accepted timeout reaches the server and is kept.
        assert cache.set("max", 1, timeout=MAX_TIMEOUT) is True
        for too_long in (MAX_TIMEOUT + 1, 9_300_000_000_000_000):
            for store in (
                functools.partial(cache.set, "k", 1, timeout=too_long),
                functools.partial(cache.add, "k", 1, timeout=too_long),
                functools.partial(cache.set_many, {"k": 1}, timeout=too_long),
            ):
                with pytest.raises(ValueError, match="timeout must be at most"):
                    store()
    assert cachecore_warnings(caplog) == []  # a programming error, not a fault
    assert stored_keys(shared, cache) == {"max"}
    with shared.client() as admin:
        assert admin.ttl(cache._key("max")) > MAX_TIMEOUT - 10
