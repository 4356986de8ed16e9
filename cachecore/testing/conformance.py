"""The conformance suite: what every cachecore backend must do, as pytest test classes.

A backend's tests subclass :class:`CacheConformance` (and, for a networked backend,
:class:`ServerFaultConformance`) and supply one fixture, ``cache_factory``: a callable
taking cache options (``key_prefix``, ``default_timeout``, ``serializer``...) and
returning a cache of that backend on a real, empty database::

    from cachecore.testing.conformance import CacheConformance

    class TestMyBackend(CacheConformance):
        @pytest.fixture
        def cache_factory(self, my_server):
            my_server.client().flushdb()
            return lambda **options: cachecore.from_url(my_server.url("mydb"), **options)

:class:`ServerFaultConformance` also needs a ``fault_server`` fixture: a running
:class:`~cachecore.testing.servers.ServerProcess` owned by the test, which the tests
stop, pause and restart; its ``cache_factory`` must build caches on that server.
"""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from cachecore.errors import BackendError, SerializationError, ValueTooLargeError
from cachecore.redis_base import BaseRedisCache

CacheFactory = Callable[..., BaseRedisCache]

VALUES: list[Any] = [
    0,
    1,
    -42,
    2**70,
    3.25,
    True,
    False,
    "",
    "plain",
    "ünïcødé ✓ 漢字 🎉",
    b"",
    b"\x00\xff\x01binary\r\n",
    [1, "two", 3.0],
    (1, 2),
    {"nested": {"list": [1, 2, {"x": None}]}},
    {1, 2, 3},
    dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC),
]

KEYS: list[str] = [
    "simple",
    "",
    "with spaces and\nnewline",
    "ünïcødé-漢字-🎉",
    "\x00binary\xff",
    "glob*?[chars]\\",
    "x" * 10_000,
]


def ttl(cache: BaseRedisCache, key: str) -> int:
    """The server's TTL of ``key`` in ``cache`` (-1 none, -2 missing)."""
    return int(cache._write_client.execute_command("TTL", cache._key(key)))


def raw_set(cache: BaseRedisCache, key: str, data: bytes) -> None:
    """Store raw bytes under ``key`` of ``cache``, bypassing its serializer."""
    cache._write_client.execute_command("SET", cache._key(key), data)


class CacheConformance:
    """The whole cache API, on a working server. Subclass and provide ``cache_factory``."""

    @pytest.fixture
    def cache_factory(self) -> CacheFactory:
        """Return ``(**options) -> cache`` on an empty database; subclasses override."""
        raise NotImplementedError("a CacheConformance subclass must provide cache_factory")

    @pytest.fixture
    def cache(self, cache_factory: CacheFactory) -> BaseRedisCache:
        """A cache with a key prefix unique to the test."""
        return cache_factory(key_prefix=f"cc-{uuid.uuid4().hex[:8]}:")

    # -- get / set ---------------------------------------------------------------------

    def test_get_missing_is_none(self, cache: BaseRedisCache) -> None:
        assert cache.get("missing") is None

    @pytest.mark.parametrize("value", VALUES, ids=repr)
    def test_set_get_roundtrip(self, cache: BaseRedisCache, value: Any) -> None:
        assert cache.set("k", value) is True
        got = cache.get("k")
        assert got == value
        assert type(got) is type(value)

    @pytest.mark.parametrize("key", KEYS, ids=lambda k: repr(k[:20]))
    def test_any_str_key(self, cache: BaseRedisCache, key: str) -> None:
        assert cache.set(key, "v") is True
        assert cache.get(key) == "v"
        assert cache.has(key)
        assert cache.delete(key) is True
        assert not cache.has(key)

    def test_set_overwrites(self, cache: BaseRedisCache) -> None:
        cache.set("k", "old")
        cache.set("k", "new")
        assert cache.get("k") == "new"

    @pytest.mark.parametrize(
        "call",
        [
            lambda c, k: c.get(k),
            lambda c, k: c.set(k, 1),
            lambda c, k: c.add(k, 1),
            lambda c, k: c.delete(k),
            lambda c, k: c.has(k),
            lambda c, k: c.inc(k),
            lambda c, k: c.dec(k),
            lambda c, k: c.get_many("ok", k),
            lambda c, k: c.get_dict(k),
            lambda c, k: c.delete_many(k),
            lambda c, k: c.set_many({k: 1}),
        ],
        ids=[
            "get",
            "set",
            "add",
            "delete",
            "has",
            "inc",
            "dec",
            "get_many",
            "get_dict",
            "delete_many",
            "set_many",
        ],
    )
    @pytest.mark.parametrize("key", [1, b"bytes", None, 1.5], ids=repr)
    def test_non_str_key_is_type_error(self, cache: BaseRedisCache, call: Any, key: Any) -> None:
        with pytest.raises(TypeError, match="key"):
            call(cache, key)

    # -- timeouts ----------------------------------------------------------------------

    def test_default_timeout_applies(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(key_prefix="dt:", default_timeout=120)
        cache.set("k", 1)
        assert 110 < ttl(cache, "k") <= 120

    def test_explicit_timeout(self, cache: BaseRedisCache) -> None:
        cache.set("k", 1, timeout=50)
        assert 45 < ttl(cache, "k") <= 50

    def test_zero_timeout_never_expires(self, cache: BaseRedisCache) -> None:
        cache.set("k", 1, timeout=0)
        assert ttl(cache, "k") == -1
        cache.add("a", 1, timeout=0)
        assert ttl(cache, "a") == -1
        cache.set_many({"m": 1}, timeout=0)
        assert ttl(cache, "m") == -1

    def test_zero_default_timeout_never_expires(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(key_prefix="zero:", default_timeout=0)
        cache.set("k", 1)
        assert ttl(cache, "k") == -1

    def test_timedelta_timeout_rounds_up(self, cache: BaseRedisCache) -> None:
        cache.set("k", 1, timeout=dt.timedelta(minutes=2))
        assert 110 < ttl(cache, "k") <= 120
        cache.set("k2", 1, timeout=dt.timedelta(milliseconds=1500))
        assert ttl(cache, "k2") == 2

    def test_value_expires(self, cache: BaseRedisCache) -> None:
        cache.set("k", "v", timeout=1)
        assert cache.get("k") == "v"
        deadline = time.monotonic() + 3
        while cache.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get("k") is None
        assert not cache.has("k")

    @pytest.mark.parametrize("method", ["set", "add", "set_many"])
    def test_negative_timeout_is_value_error(self, cache: BaseRedisCache, method: str) -> None:
        with pytest.raises(ValueError, match="timeout"):
            self._store(cache, method, -1)
        with pytest.raises(ValueError, match="timeout"):
            self._store(cache, method, dt.timedelta(seconds=-5))
        assert not cache.has("k")

    @pytest.mark.parametrize("method", ["set", "add", "set_many"])
    @pytest.mark.parametrize("timeout", [1.5, "10", True, [1]], ids=repr)
    def test_wrong_timeout_type_is_type_error(
        self, cache: BaseRedisCache, method: str, timeout: Any
    ) -> None:
        with pytest.raises(TypeError, match="timeout"):
            self._store(cache, method, timeout)
        assert not cache.has("k")

    @staticmethod
    def _store(cache: BaseRedisCache, method: str, timeout: Any) -> Any:
        if method == "set_many":
            return cache.set_many({"k": 1}, timeout=timeout)
        return getattr(cache, method)("k", 1, timeout=timeout)

    def test_bad_default_timeout_rejected(self, cache_factory: CacheFactory) -> None:
        with pytest.raises(ValueError, match="default_timeout"):
            cache_factory(default_timeout=-1)
        with pytest.raises(TypeError, match="default_timeout"):
            cache_factory(default_timeout=2.5)

    # -- add ---------------------------------------------------------------------------

    def test_add_only_when_absent(self, cache: BaseRedisCache) -> None:
        assert cache.add("k", "first", timeout=100) is True
        assert 90 < ttl(cache, "k") <= 100
        assert cache.add("k", "second") is False
        assert cache.get("k") == "first"

    def test_add_is_atomic_under_threads(self, cache: BaseRedisCache) -> None:
        winners: list[int] = []
        barrier = threading.Barrier(8)

        def contend(n: int) -> None:
            barrier.wait()
            if cache.add("race", n):
                winners.append(n)

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert cache.get("race") == winners[0]

    # -- many --------------------------------------------------------------------------

    def test_set_many_get_many(self, cache: BaseRedisCache) -> None:
        mapping = {f"k{i}": {"i": i} for i in range(100)}
        assert cache.set_many(mapping, timeout=60) == list(mapping)
        assert cache.get_many(*mapping) == list(mapping.values())
        assert 50 < ttl(cache, "k99") <= 60

    def test_get_many_order_missing_and_duplicates(self, cache: BaseRedisCache) -> None:
        cache.set("a", 1)
        cache.set("b", "two")
        assert cache.get_many("b", "missing", "a", "b") == ["two", None, 1, "two"]
        assert cache.get_many() == []

    def test_get_dict(self, cache: BaseRedisCache) -> None:
        cache.set_many({"a": 1, "b": [2]})
        assert cache.get_dict("a", "b", "c") == {"a": 1, "b": [2], "c": None}
        assert cache.get_dict() == {}

    def test_set_many_empty(self, cache: BaseRedisCache) -> None:
        assert cache.set_many({}) == []

    def test_delete(self, cache: BaseRedisCache) -> None:
        cache.set("k", 1)
        assert cache.delete("k") is True
        assert cache.delete("k") is False
        assert cache.get("k") is None

    def test_delete_many(self, cache: BaseRedisCache) -> None:
        cache.set_many({"a": 1, "b": 2, "c": 3})
        assert cache.delete_many("a", "b", "missing") == ["a", "b", "missing"]
        assert cache.get_many("a", "b", "c") == [None, None, 3]
        assert cache.delete_many() == []

    def test_has(self, cache: BaseRedisCache) -> None:
        assert cache.has("k") is False
        cache.set("k", None)
        assert cache.has("k") is True

    # -- prefixes and clear ------------------------------------------------------------

    def test_prefix_isolates_namespaces(self, cache_factory: CacheFactory) -> None:
        one = cache_factory(key_prefix="one:")
        two = cache_factory(key_prefix="two:")
        one.set("k", "from one")
        assert two.get("k") is None
        two.set("k", "from two")
        assert one.get("k") == "from one"

    def test_callable_prefix_evaluated_per_call(self, cache_factory: CacheFactory) -> None:
        tenant = ["a"]
        cache = cache_factory(key_prefix=lambda: f"tenant-{tenant[0]}:")
        cache.set("k", "for a")
        tenant[0] = "b"
        assert cache.get("k") is None
        cache.set("k", "for b")
        assert cache.get_many("k") == ["for b"]
        tenant[0] = "a"
        assert cache.get("k") == "for a"

    def test_callable_prefix_must_return_str(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(key_prefix=lambda: 5)
        with pytest.raises(TypeError, match="key_prefix"):
            cache.get("k")

    def test_clear_with_prefix_spares_other_prefixes(self, cache_factory: CacheFactory) -> None:
        mine = cache_factory(key_prefix="app1:")
        theirs = cache_factory(key_prefix="app2:")
        glob_like = cache_factory(key_prefix="app1*")
        mine.set_many({f"k{i}": i for i in range(2500)})
        theirs.set_many({f"k{i}": i for i in range(50)})
        glob_like.set("k", "survives")
        assert mine.clear() is True
        assert mine.get_many("k0", "k1234", "k2499") == [None, None, None]
        assert theirs.get("k49") == 49
        assert glob_like.get("k") == "survives"

    def test_clear_without_prefix_flushes_database(self, cache_factory: CacheFactory) -> None:
        prefixed = cache_factory(key_prefix="p:")
        prefixed.set("k", 1)
        unprefixed = cache_factory()
        unprefixed.set("k", 1)
        assert unprefixed.clear() is True
        assert unprefixed.get("k") is None
        assert prefixed.get("k") is None

    # -- counters ----------------------------------------------------------------------

    def test_inc_dec(self, cache: BaseRedisCache) -> None:
        assert cache.inc("n") == 1
        assert cache.inc("n", 10) == 11
        assert cache.dec("n") == 10
        assert cache.dec("n", 20) == -10
        assert cache.dec("fresh", 3) == -3
        assert cache.get("n") == -10

    def test_inc_on_set_int_keeps_ttl(self, cache: BaseRedisCache) -> None:
        cache.set("n", 41, timeout=100)
        assert cache.inc("n") == 42
        assert cache.get("n") == 42
        assert 90 < ttl(cache, "n") <= 100

    def test_inc_on_non_integer_is_none(self, cache: BaseRedisCache, caplog: Any) -> None:
        cache.set("s", "text")
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.inc("s") is None
        assert cache.get("s") == "text"
        assert "inc" in caplog.text

    @pytest.mark.parametrize("delta", [1.5, "1", None], ids=repr)
    def test_inc_bad_delta_is_type_error(self, cache: BaseRedisCache, delta: Any) -> None:
        with pytest.raises(TypeError, match="delta"):
            cache.inc("n", delta)

    def test_inc_atomic_under_threads(self, cache: BaseRedisCache) -> None:
        def work() -> None:
            for _ in range(250):
                cache.inc("counter")

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert cache.get("counter") == 2000

    # -- values and serializers --------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [b"\x00\xff" * (5 * 1024 * 1024), "é" * (5 * 1024 * 1024)],
        ids=["10MB-bytes", "10MB-str"],
    )
    def test_large_values(self, cache: BaseRedisCache, value: Any) -> None:
        assert cache.set("big", value) is True
        assert cache.get("big") == value

    def test_unpicklable_value_raises_pickle_error(self, cache: BaseRedisCache) -> None:
        with pytest.raises(pickle.PickleError):
            cache.set("k", threading.Lock())
        with pytest.raises(SerializationError):
            cache.set_many({"good": 1, "bad": lambda: None})
        assert cache.get_many("k", "good", "bad") == [None, None, None]

    def test_value_over_max_value_size_is_refused(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(key_prefix="max:", max_value_size=1000)
        assert cache.set("small", "x" * 100) is True
        with pytest.raises(ValueTooLargeError, match="max_value_size"):
            cache.set("big", "x" * 5000)
        assert not cache.has("big")

    @pytest.mark.parametrize(
        "garbage",
        [b"\x80\x04garbage", b"!\x80\x04truncated", b"!", b"plain text", b"12x"],
        ids=repr,
    )
    def test_undecodable_value_reads_as_miss(
        self, cache: BaseRedisCache, garbage: bytes, caplog: Any
    ) -> None:
        cache.set("good", "fine")
        raw_set(cache, "bad", garbage)
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.get("bad") is None
            assert cache.get_many("good", "bad") == ["fine", None]
        assert "decode" in caplog.text

    @pytest.mark.parametrize("name", ["json", "msgpack"])
    def test_safe_serializers_roundtrip(self, cache_factory: CacheFactory, name: str) -> None:
        cache = cache_factory(key_prefix=f"{name}:", serializer=name)
        value = {"list": [1, 2.5, "x", None, True], "n": 3}
        assert cache.set("k", value) is True
        assert cache.get("k") == value
        assert cache.set("n", 5) is True
        assert cache.inc("n") == 6
        assert cache.get("n") == 6

    @pytest.mark.parametrize("name", ["json", "signed"])
    def test_forged_pickle_is_never_unpickled(
        self, cache_factory: CacheFactory, name: str, caplog: Any
    ) -> None:
        forged = forged_pickle()
        unsafe = cache_factory(key_prefix="forge:")
        FORGERY_SINK.clear()
        raw_set(unsafe, "k", forged)
        unsafe.get("k")
        assert FORGERY_SINK == ["unpickled!"], "the default pickle format should run it"
        FORGERY_SINK.clear()
        options = {"secret_key": "s" * 32} if name == "signed" else {}
        cache = cache_factory(key_prefix="forge:", serializer=name, **options)
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.get("k") is None
            assert cache.get_many("k") == [None]
        assert FORGERY_SINK == []
        assert "decode" in caplog.text

    def test_signed_rejects_wrong_key_and_rotates(self, cache_factory: CacheFactory) -> None:
        old = cache_factory(key_prefix="sig:", serializer="signed", secret_key="old-" * 8)
        old.set("k", {"v": 1})
        stranger = cache_factory(key_prefix="sig:", serializer="signed", secret_key="other" * 8)
        assert stranger.get("k") is None
        rotated = cache_factory(
            key_prefix="sig:",
            serializer="signed",
            secret_key="new-" * 8,
            old_secret_keys=["old-" * 8],
        )
        assert rotated.get("k") == {"v": 1}

    def test_compression_marks_and_reads_mixed_values(self, cache_factory: CacheFactory) -> None:
        plain = cache_factory(key_prefix="z:")
        plain.set("old", "x" * 5000)
        compressed = cache_factory(key_prefix="z:", compression="zlib", compression_threshold=100)
        compressed.set("new", "y" * 5000)
        stored = compressed._write_client.execute_command("STRLEN", compressed._key("new"))
        assert int(stored) < 1000
        assert compressed.get_many("old", "new") == ["x" * 5000, "y" * 5000]
        assert plain.get("new") is None

    # -- cachelib interop --------------------------------------------------------------

    def test_cachelib_reads_cachecore_values(self, cache: BaseRedisCache) -> None:
        from cachelib.redis_base import BaseRedisCache as CachelibBase

        theirs = CachelibBase(cache._write_client, key_prefix=cache._prefix())
        values = {"int": 7, "str": "ünï", "dict": {"a": [1, 2]}, "bytes": b"\x00"}
        cache.set_many(values)
        assert theirs.get_many(*values) == list(values.values())
        cache.inc("int")
        assert theirs.get("int") == 8

    def test_cachecore_reads_cachelib_values(self, cache: BaseRedisCache) -> None:
        from cachelib.redis_base import BaseRedisCache as CachelibBase

        theirs = CachelibBase(cache._write_client, key_prefix=cache._prefix())
        values = {"int": -3, "float": 1.5, "tuple": (1, "a"), "none": None, "bool": True}
        for key, value in values.items():
            theirs.set(key, value)
        assert cache.get_many(*values) == list(values.values())
        theirs.inc("counter", 5)
        assert cache.inc("counter") == 6

    # -- shared use --------------------------------------------------------------------

    def test_shared_between_threads(self, cache: BaseRedisCache) -> None:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(100):
                    key = f"t{n}-{i % 10}"
                    cache.set(key, (n, i))
                    got = cache.get(key)
                    assert got is None or got[0] == n
                    cache.inc("total")
                    cache.get_many(key, "total")
                    cache.delete(key)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert cache.get("total") == 800


FORGERY_SINK: list[str] = []
"""Where payloads from :func:`forged_pickle` record that they were unpickled."""


def _record_forgery(message: str) -> None:
    FORGERY_SINK.append(message)


class _Forgery:
    """Records that it was unpickled: stands in for a payload that would run code."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_record_forgery, ("unpickled!",))


def forged_pickle() -> bytes:
    """A payload in cachelib's format (``b"!" + pickle``) that appends ``"unpickled!"`` to
    :data:`FORGERY_SINK` when unpickled, as an attacker's payload would run code."""
    return b"!" + pickle.dumps(_Forgery())


class ServerFaultConformance:
    """Fault behaviour against a real server the test stops, pauses and restarts.

    Subclasses provide ``fault_server`` (a running
    :class:`~cachecore.testing.servers.ServerProcess` owned by the test) and
    ``cache_factory`` building caches on it.
    """

    FAULT_VALUES: ClassVar[dict[str, Any]] = {
        "get": None,
        "get_many": [None, None],
        "get_dict": {"a": None, "b": None},
        "set": False,
        "add": False,
        "set_many": [],
        "delete": False,
        "delete_many": [],
        "has": False,
        "clear": False,
        "inc": None,
        "dec": None,
    }

    @pytest.fixture
    def fault_server(self) -> Any:
        """Return a running ServerProcess owned by the test; subclasses override."""
        raise NotImplementedError("a ServerFaultConformance subclass must provide fault_server")

    @pytest.fixture
    def cache_factory(self) -> CacheFactory:
        """Return ``(**options) -> cache`` on ``fault_server``; subclasses override."""
        raise NotImplementedError("a ServerFaultConformance subclass must provide cache_factory")

    @staticmethod
    def call(cache: BaseRedisCache, method: str) -> Any:
        """Call ``method`` of ``cache`` with typical arguments."""
        calls: dict[str, Callable[[], Any]] = {
            "get": lambda: cache.get("a"),
            "get_many": lambda: cache.get_many("a", "b"),
            "get_dict": lambda: cache.get_dict("a", "b"),
            "set": lambda: cache.set("a", 1),
            "add": lambda: cache.add("new", 1),
            "set_many": lambda: cache.set_many({"a": 1, "b": 2}),
            "delete": lambda: cache.delete("a"),
            "delete_many": lambda: cache.delete_many("a", "b"),
            "has": lambda: cache.has("a"),
            "clear": cache.clear,
            "inc": lambda: cache.inc("n"),
            "dec": lambda: cache.dec("n"),
        }
        return calls[method]()

    def test_stopped_server_gives_fault_values(
        self, fault_server: Any, cache_factory: CacheFactory, caplog: Any
    ) -> None:
        cache = cache_factory(key_prefix="f:")
        cache.set("a", 1)
        fault_server.stop()
        for method, expected in self.FAULT_VALUES.items():
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="cachecore"):
                assert self.call(cache, method) == expected, method
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, (method, caplog.text)
            assert "Connection" in warnings[0].getMessage() or "connect" in caplog.text

    def test_raise_errors_raises_backend_error(
        self, fault_server: Any, cache_factory: CacheFactory
    ) -> None:
        cache = cache_factory(key_prefix="f:", raise_errors=True)
        assert cache.set("a", 1) is True
        fault_server.stop()
        for method in self.FAULT_VALUES:
            with pytest.raises(BackendError) as info:
                self.call(cache, method)
            assert info.value.__cause__ is not None, method

    def test_paused_server_costs_at_most_the_socket_timeout(
        self, fault_server: Any, cache_factory: CacheFactory
    ) -> None:
        cache = cache_factory(key_prefix="f:", socket_timeout=0.5)
        assert cache.set("a", 1) is True
        fault_server.pause()
        try:
            started = time.monotonic()
            assert cache.get("a") is None
            assert cache.set("a", 2) is False
            elapsed = time.monotonic() - started
        finally:
            fault_server.resume()
        assert elapsed < 2 * 0.5 + 0.5, elapsed
        assert cache.get("a") == 1

    def test_default_timeouts_bound_a_hung_server(
        self, fault_server: Any, cache_factory: CacheFactory
    ) -> None:
        cache = cache_factory(key_prefix="f:")
        assert cache.set("a", 1) is True
        fault_server.pause()
        try:
            started = time.monotonic()
            assert cache.get("a") is None
            elapsed = time.monotonic() - started
        finally:
            fault_server.resume()
        assert 0.5 < elapsed < 1.8, elapsed

    def test_same_cache_works_after_restart(
        self, fault_server: Any, cache_factory: CacheFactory
    ) -> None:
        cache = cache_factory(key_prefix="f:")
        assert cache.set("a", 1) is True
        fault_server.stop()
        assert cache.get("a") is None
        fault_server.start()
        assert cache.set("a", 2) is True
        assert cache.get("a") == 2
        fault_server.restart()
        # The pooled connection is stale now: the first call must reconnect by itself.
        assert cache.get("a") is None
        assert cache.set("b", 3) is True
        assert cache.inc("n") == 1
