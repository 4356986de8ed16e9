"""The asyncio cache: :class:`AsyncBaseRedisCache`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from cachecore.adapters.aio import async_transport_for
from cachecore.aio.coalesce import GetBatches
from cachecore.memo.decorator import Memoized, TagsArg, memoizer
from cachecore.memo.steps import Policy, Strategy, check_tags
from cachecore.protocol import CacheProtocol, Plan, ResultT, Steps, check_delta
from cachecore.stats import HITS, INCREMENTS, MISSES
from cachecore.transport import AsyncTransport
from cachecore.types import KeyPrefix, Serializer, Timeout

_running_loop = asyncio.get_running_loop


def _awaiting(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def call() -> Any:
        result = fn()
        if inspect.isawaitable(result):
            result = await result
        return result

    return call


class AsyncBaseRedisCache(CacheProtocol):
    """The cache API of :class:`~cachecore.BaseRedisCache`, every method a coroutine.

    Same arguments, return values, fault values, warnings and wire format as the
    blocking cache (they run the same protocol, see :mod:`cachecore.protocol`): a value
    one writes, the other reads. Close it with ``await cache.aclose()`` or use it as
    ``async with``::

        async with cachecore.aio.from_url("valkey://localhost:6379/0") as cache:
            await cache.set("answer", 42, timeout=60)
            assert await cache.get("answer") == 42

    :param client: an asyncio client with redis-py's API (``redis.asyncio.Redis``,
        ``valkey.asyncio.Valkey``, their cluster and Sentinel clients, fakeredis'
        ``FakeAsyncRedis``), or an :class:`~cachecore.transport.AsyncTransport`.
    :param read_client: an asyncio client (or transport) for ``get``, ``get_many`` and
        ``has``; default: ``client``.
    :param default_timeout: see :class:`~cachecore.BaseRedisCache`; so are
        ``key_prefix``, ``serializer``, ``raise_errors``, ``max_value_size`` and
        ``ignore_delete_many_errors``. To check the server answers, ``await cache.ping()``.
    :param coalesce_reads: merge ``get`` calls made while another ``get`` of this cache is
        on its way into one ``MGET`` (see :mod:`cachecore.aio.coalesce`); each caller
        still gets its own value, counters, fault value and warning. Not on a cluster,
        nor while :mod:`cachecore.observability` instruments the cache.
    """

    _client_kind = "an asyncio Redis-API client"

    def __init__(
        self,
        client: Any,
        default_timeout: Timeout = 300,
        key_prefix: KeyPrefix = None,
        *,
        serializer: Serializer | None = None,
        raise_errors: bool = False,
        max_value_size: int | None = None,
        read_client: Any = None,
        ignore_delete_many_errors: bool = True,
        coalesce_reads: bool = True,
    ) -> None:
        self._setup(
            client,
            read_client,
            async_transport_for,
            default_timeout,
            key_prefix,
            serializer,
            raise_errors,
            max_value_size,
            ignore_delete_many_errors,
        )
        # One batching state per event loop, made on the first get in that loop.
        self._gets: GetBatches | None = None
        self._coalesce = bool(coalesce_reads) and self._reads.keyslot is None

    @property
    def client(self) -> Any:
        """The asyncio client this cache writes through (for commands the API lacks),
        ready for the running event loop."""
        current = getattr(self._writes, "current_client", None)
        return self._writes.client if current is None else current()

    @property
    def _write_client(self) -> Any:
        # The library's client beneath any wrapper (near cache, circuit breaker), ready
        # for the running event loop: for cachelib-style code reading raw keys.
        transport = self._writes
        while hasattr(transport, "inner"):
            transport = transport.inner
        current = getattr(transport, "current_client", None)
        return transport.client if current is None else current()

    @property
    def transport(self) -> AsyncTransport:
        """The transport this cache writes through."""
        transport: AsyncTransport = self._writes
        return transport

    # -- the drivers ---------------------------------------------------------------------

    async def _run(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command, truthy, falsy = plan
        try:
            reply = await send(*command)
        except self._errors as exc:
            return self._fault(operation, exc, fault)
        # Always-on counters (cachecore.stats): a truthy reply is a hit, a falsy one a miss.
        self._shard.counts[truthy if reply else falsy] += 1
        return finish(key, reply)

    async def _drive(self, steps: Steps[ResultT]) -> ResultT:
        try:
            method, args = next(steps)
            while True:
                try:
                    reply = await method(*args)
                except BaseException as exc:  # the steps decide; cancellation passes through
                    method, args = steps.throw(exc)
                else:
                    method, args = steps.send(reply)
        except StopIteration as done:
            result: ResultT = done.value
            return result

    # -- the API -------------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """See :meth:`cachecore.BaseRedisCache.get`."""
        if "_run" in self.__dict__:  # instrumented: cachecore.observability's driver
            return await self._run(self._plan_get(key))
        # The hottest call: _plan_get run by _run, written out (one coroutine frame and
        # one tuple fewer per call; the conformance suite holds it to the same behaviour).
        full = self._key(key)
        if self._coalesce:
            gets = self._gets
            loop = _running_loop()
            if gets is None or gets.loop is not loop:
                gets = self._gets = GetBatches(loop, self._reads.send)
            if gets.busy:  # another read is on its way: join the next MGET
                return await self._get_joined(gets, key, full)
            gets.busy += 1
            try:
                reply = await self._reads.send("GET", full)
            except self._errors as exc:
                return self._fault("get", exc, None)
            finally:
                gets.busy -= 1
        else:
            try:
                reply = await self._reads.send("GET", full)
            except self._errors as exc:
                return self._fault("get", exc, None)
        self._shard.counts[HITS if reply else MISSES] += 1
        return self._decode(key, reply)

    async def _get_joined(self, gets: GetBatches, key: str, full: Any) -> Any:
        """``get`` through the next batch of ``gets``."""
        try:
            reply = await gets.join(full)
        except self._errors as exc:
            return self._fault("get", exc, None)
        self._shard.counts[HITS if reply else MISSES] += 1
        return self._decode(key, reply)

    async def get_many(self, *keys: str) -> list[Any]:
        """See :meth:`cachecore.BaseRedisCache.get_many`."""
        reads = self._reads
        # A cluster (one MGET per slot), or instrumented (cachecore.observability's driver).
        if reads.keyslot is not None or not keys or "_drive" in self.__dict__:
            return await self._drive(self._steps_get_many(keys))
        # One MGET: _steps_get_many written out, without the generator's round trip.
        full = self._keys(keys)
        try:
            values = await reads.send("MGET", *full)
        except self._errors as exc:
            return self._fault("get_many", exc, [None] * len(keys))
        self._count_reads(values)
        return self._decode_many(keys, values, full)

    async def get_dict(self, *keys: str) -> dict[str, Any]:
        """See :meth:`cachecore.BaseRedisCache.get_dict`."""
        return dict(zip(keys, await self.get_many(*keys), strict=True))

    async def set(
        self, key: str, value: Any, timeout: Timeout = None, *, tags: Iterable[str] | None = None
    ) -> bool:
        """See :meth:`cachecore.BaseRedisCache.set`."""
        if tags is None:
            result: bool = await self._run(self._plan_set(key, value, timeout))
            return result
        return await self._drive(self._memo().set_tagged(key, value, timeout, check_tags(tags)))

    async def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """See :meth:`cachecore.BaseRedisCache.add`."""
        result: bool = await self._run(self._plan_add(key, value, timeout))
        return result

    async def set_many(self, mapping: dict[str, Any], timeout: Timeout = None) -> list[Any]:
        """See :meth:`cachecore.BaseRedisCache.set_many`."""
        return await self._drive(self._steps_set_many(mapping, timeout))

    async def delete(self, key: str) -> bool:
        """See :meth:`cachecore.BaseRedisCache.delete`."""
        result: bool = await self._run(self._plan_delete(key))
        return result

    async def delete_many(self, *keys: str) -> list[Any]:
        """See :meth:`cachecore.BaseRedisCache.delete_many`."""
        return await self._drive(self._steps_delete_many(keys))

    async def has(self, key: str) -> bool:
        """See :meth:`cachecore.BaseRedisCache.has`."""
        result: bool = await self._run(self._plan_has(key))
        return result

    async def clear(self) -> bool:
        """See :meth:`cachecore.BaseRedisCache.clear` (without a key prefix it flushes
        the whole database)."""
        return await self._drive(self._steps_clear())

    async def inc(self, key: str, delta: int = 1) -> int | None:
        """See :meth:`cachecore.BaseRedisCache.inc`."""
        if "_run" in self.__dict__:  # instrumented: cachecore.observability's driver
            result: int | None = await self._run(self._plan_incrby("inc", key, delta, 1))
            return result
        # _plan_incrby run by _run, written out as in get (a hot call: counters).
        if type(delta) is not int:
            check_delta(delta)
        command = ("INCRBY", self._key(key), delta)
        try:
            reply = await self._writes.send_once(*command)  # never twice: see _plan_incrby
        except self._errors as exc:
            return self._fault("inc", exc, None)
        self._shard.counts[INCREMENTS] += 1
        return int(reply)

    async def dec(self, key: str, delta: int = 1) -> int | None:
        """See :meth:`cachecore.BaseRedisCache.dec`."""
        result: int | None = await self._run(self._plan_incrby("dec", key, delta, -1))
        return result

    async def lookup(self, key: str, default: Any = None) -> Any:
        """See :meth:`cachecore.BaseRedisCache.lookup`."""
        return await self._run(self._plan_lookup(key, default))

    async def lookup_many(self, *keys: str) -> dict[str, Any]:
        """See :meth:`cachecore.BaseRedisCache.lookup_many`."""
        return await self._drive(self._steps_lookup_many(keys))

    async def touch(self, key: str, timeout: Timeout = None) -> bool:
        """See :meth:`cachecore.BaseRedisCache.touch`."""
        return await self._drive(self._steps_touch(key, timeout))

    async def inc_existing(self, key: str, delta: int = 1) -> int | None:
        """See :meth:`cachecore.BaseRedisCache.inc_existing`."""
        result: int | None = await self._run(self._plan_inc_existing(key, delta))
        return result

    async def get_or_set(
        self,
        key: str,
        fn: Callable[[], Any],
        timeout: Timeout = None,
        *,
        tags: Iterable[str] = (),
        strategy: Strategy = "lock",
        beta: float = 1.0,
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        lock_timeout: float = 10,
    ) -> Any:
        """See :meth:`cachecore.BaseRedisCache.get_or_set`; ``fn`` may be a coroutine
        function (awaited) or a plain one. Waiting for another caller's computation
        sleeps with ``asyncio.sleep``, never blocking the event loop."""
        policy = Policy(
            check_tags(tags), strategy, beta, stale_while_revalidate, stale_if_error, lock_timeout
        )
        return await self._drive(
            self._memo().get_or_set(key, timeout, policy, _awaiting(fn), asyncio.sleep)
        )

    def memoize(
        self,
        timeout: Timeout = None,
        *,
        tags: TagsArg = (),
        ignore: Iterable[str] | None = None,
        strategy: Strategy = "lock",
        beta: float = 1.0,
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        lock_timeout: float = 10,
    ) -> Callable[[Callable[..., Any]], Memoized]:
        """See :meth:`cachecore.BaseRedisCache.memoize`; decorates coroutine functions
        only (the memoized function and its ``invalidate`` are coroutines).

        :raises TypeError: (when decorating) a function that is not ``async def``.
        """
        options = {
            "strategy": strategy,
            "beta": beta,
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "lock_timeout": lock_timeout,
        }
        return memoizer(self, True, timeout, tags, ignore, options)

    async def invalidate_tags(self, *tags: str) -> bool:
        """See :meth:`cachecore.BaseRedisCache.invalidate_tags`."""
        return await self._drive(self._memo().invalidate_tags(check_tags(tags)))

    async def ping(self) -> bool:
        """Whether the server answers PING; False on a fault."""
        result: bool = await self._run(self._plan_ping())
        return result

    async def aclose(self) -> None:
        """Close the client's connections (and the read client's); the cache may still
        be used afterwards (it reconnects)."""
        await self._writes.aclose()
        if self._reads is not self._writes and self._reads is not self._writes.reader:
            await self._reads.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
