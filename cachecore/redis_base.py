"""The blocking cache: :class:`BaseRedisCache`, the shared base of every backend.

Backend plugins construct a client (redis-py, valkey-py, fakeredis...) and hand it to
:class:`BaseRedisCache`; nothing of the protocol lives in the plugins. The protocol
itself (prefixes, serialization, timeouts, fault values) is :mod:`cachecore.protocol`,
shared with the asyncio cache; the client sits behind a transport
(:mod:`cachecore.transport`, :mod:`cachecore.adapters`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from cachecore.adapters.blocking import library_client, transport_for
from cachecore.adapters.libraries import installed_errors
from cachecore.base import BaseCache
from cachecore.errors import ConnectionCheckError
from cachecore.memo.decorator import Memoized, TagsArg, memoizer
from cachecore.memo.steps import Policy, Strategy, check_tags
from cachecore.protocol import (
    CLEAR_BATCH,
    DEFAULT_MAX_VALUE_SIZE,
    CacheProtocol,
    Plan,
    ResultT,
    Steps,
    glob_escape,
    has_hash_tag,
)
from cachecore.transport import Transport
from cachecore.types import KeyPrefix, Serializer, Timeout

__all__ = [
    "CLEAR_BATCH",
    "DEFAULT_MAX_VALUE_SIZE",
    "BaseRedisCache",
    "client_errors",
    "glob_escape",
    "has_hash_tag",
]


def client_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the server or the connection failed" for any
    installed client library (redis-py, whose errors fakeredis raises too, and
    valkey-py), and OS-level socket errors."""
    return installed_errors()


def _blocking(fn: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        result = fn()
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError(
                "get_or_set's fn returned an awaitable: use the asyncio cache (cachecore.aio)"
            )
        return result

    return call


class BaseRedisCache(CacheProtocol, BaseCache):
    """A cache over any client with the redis-py API; the shared base of every backend.

    Compatible with cachelib's ``BaseRedisCache``: same constructor, methods, return
    values and wire format, so values written by either read in the other.

    :param client: a client with redis-py's API (``execute_command``, ``pipeline``), or
        a :class:`~cachecore.transport.Transport`.
    :param default_timeout: seconds or timedelta used when ``timeout`` is None; 0 = never.
    :param key_prefix: prepended to every key: a str, or a zero-argument callable
        evaluated on every call (e.g. per tenant).
    :param serializer: the wire format; default :class:`~cachecore.serializers.PickleSerializer`
        (cachelib's). Can also be replaced later through the ``serializer`` attribute.
    :param raise_errors: raise :class:`~cachecore.errors.BackendError` on a backend fault
        instead of returning the method's fault value.
    :param max_value_size: refuse (``ValueTooLargeError``) serialized values above this
        many bytes instead of sending them. Default: the servers' 512 MiB limit.
    :param read_client: a client (or transport) for reads (``get``, ``get_many``,
        ``has``), e.g. one that reads from replicas. Default: ``client``'s reader.
    :param ignore_delete_many_errors: accepted for cachelib compatibility; cachecore's
        ``delete_many`` deletes all keys in one command, so there is no partial failure.
    :param check_connection: PING the server now and raise
        :class:`~cachecore.errors.ConnectionCheckError` (a :class:`BackendError` and a
        ``RuntimeError``, as cachelib raises) if it does not answer.
    """

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
        check_connection: bool = False,
    ) -> None:
        self._setup(
            client,
            read_client,
            transport_for,
            default_timeout,
            key_prefix,
            serializer,
            raise_errors,
            max_value_size,
            ignore_delete_many_errors,
        )
        if check_connection:
            try:
                self._writes.send("PING")
            except self._errors as exc:
                raise ConnectionCheckError(f"cannot reach the server of {self!r}: {exc}") from exc

    @property
    def client(self) -> Any:
        """The client this cache writes through (for commands the cache API lacks)."""
        return self._writes.client

    @property
    def transport(self) -> Transport:
        """The transport this cache writes through."""
        transport: Transport = self._writes
        return transport

    @property
    def _write_client(self) -> Any:
        # The library's client itself, beneath any wrapper (near cache, circuit breaker).
        return library_client(self._writes)

    @property
    def _read_client(self) -> Any:
        return library_client(self._reads)

    # -- the drivers ---------------------------------------------------------------------

    def _run(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command, truthy, falsy = plan
        try:
            reply = send(*command)
        except self._errors as exc:
            return self._fault(operation, exc, fault)
        # Always-on counters (cachecore.stats): a truthy reply is a hit, a falsy one a miss.
        self._shard.counts[truthy if reply else falsy] += 1
        return finish(key, reply)

    def _drive(self, steps: Steps[ResultT]) -> ResultT:
        try:
            method, args = next(steps)
            while True:
                try:
                    reply = method(*args)
                except BaseException as exc:  # the steps decide what is a fault
                    method, args = steps.throw(exc)
                else:
                    method, args = steps.send(reply)
        except StopIteration as done:
            result: ResultT = done.value
            return result

    # -- the API -------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the value stored under ``key``; None if missing, undecodable or on a fault."""
        return self._run(self._plan_get(key))

    def get_many(self, *keys: str) -> list[Any]:
        """Return the values of ``keys`` in order (one MGET; on a cluster one MGET per hash
        slot, pipelined: one round trip per node); None for missing ones.

        On a fault every entry is None. On a cluster where a node refuses connections,
        only that node's keys read as None (with one warning).
        """
        return self._drive(self._steps_get_many(keys))

    def set(
        self, key: str, value: Any, timeout: Timeout = None, *, tags: Iterable[str] | None = None
    ) -> bool:
        """Store ``value`` under ``key`` for ``timeout`` (None = default, 0 = forever).

        With ``tags``, the value is stored in an envelope with the current version of each
        tag (read first: one more round trip), so :meth:`invalidate_tags` turns it into a
        miss for :meth:`get_or_set` and ``memoize``; a plain :meth:`get` reads such an
        entry as a miss (see docs/memoize.md).

        :returns: True, or False on a backend fault.
        :raises TypeError: ``key`` is not a str, or ``timeout`` has a wrong type.
        :raises ValueError: ``timeout`` is negative.
        :raises SerializationError: the value cannot be serialized.
        :raises ValueTooLargeError: the serialized value exceeds ``max_value_size``.
        """
        if tags is None:
            result: bool = self._run(self._plan_set(key, value, timeout))
            return result
        return self._drive(self._memo().set_tagged(key, value, timeout, check_tags(tags)))

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` only if ``key`` does not exist, atomically (one ``SET NX``).

        :returns: True if stored; False if the key exists or on a backend fault. Never
            retried once sent: if the connection breaks before the reply arrives, the
            result is a fault (False, with a warning) although the value may be stored.
        """
        result: bool = self._run(self._plan_add(key, value, timeout))
        return result

    def set_many(self, mapping: dict[str, Any], timeout: Timeout = None) -> list[Any]:
        """Store every item of ``mapping`` in one round trip (a pipeline).

        Every value is serialized before anything is sent, so a bad value stores nothing.

        :returns: the keys that were stored, in ``mapping`` order; [] on a fault.
        """
        return self._drive(self._steps_set_many(mapping, timeout))

    def delete(self, key: str) -> bool:
        """Delete ``key`` (UNLINK: the server frees memory in the background).

        :returns: True if the key existed and was deleted; False if not or on a fault
            (never retried once sent: after a lost reply the key may be gone).
        """
        result: bool = self._run(self._plan_delete(key))
        return result

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys`` in one command (on a cluster, one per hash slot, pipelined).

        :returns: the keys no longer in the cache (all of them once the command
            succeeded, in the order given); [] on a fault; on a cluster where a node
            refuses connections, the keys of the other nodes (with one warning).
        """
        return self._drive(self._steps_delete_many(keys))

    def has(self, key: str) -> bool:
        """Whether ``key`` exists; False on a fault."""
        result: bool = self._run(self._plan_has(key))
        return result

    def clear(self) -> bool:
        """Delete this cache's keys; True on success, False on a fault.

        With a key prefix, only keys under that prefix are deleted, by SCAN + UNLINK in
        batches of :data:`CLEAR_BATCH` (never the blocking ``KEYS``), so other apps'
        keys on the same server survive. **Without a key prefix this flushes the whole
        database** (``FLUSHDB``), including keys cachecore did not write.
        """
        return self._drive(self._steps_clear())

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Atomically add ``delta`` (INCRBY); a missing key starts from 0.

        :returns: the new value; None on a fault or if the stored value is not an integer.
            Never retried once sent, so never applied twice: after a lost reply the
            result is None although the server may have applied ``delta`` once.
        :raises TypeError: ``delta`` is not an int.
        """
        result: int | None = self._run(self._plan_incrby("inc", key, delta, 1))
        return result

    def dec(self, key: str, delta: int = 1) -> int | None:
        """Atomically subtract ``delta`` (INCRBY -delta); a missing key starts from 0.

        :returns: the new value; None on a fault or if the stored value is not an integer.
        :raises TypeError: ``delta`` is not an int.
        """
        result: int | None = self._run(self._plan_incrby("dec", key, delta, -1))
        return result

    # -- beyond cachelib -----------------------------------------------------------------

    def lookup(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default`` when there is none.

        Unlike :meth:`get`, a stored None comes back as None, not as ``default``: a
        framework backend (Django's ``get(key, default)``) can tell it from a miss.

        :returns: the value; ``default`` when the key is missing, its value cannot be
            decoded (logged) or on a backend fault (logged).
        """
        return self._run(self._plan_lookup(key, default))

    def lookup_many(self, *keys: str) -> dict[str, Any]:
        """Return ``{key: value}`` for those of ``keys`` that hold a value (one MGET; on a
        cluster one per hash slot, pipelined). A stored None is kept; missing keys and
        undecodable values (logged) are left out.

        :returns: the found items; {} on a fault; on a cluster where a node refuses
            connections, the other nodes' items (with one warning).
        """
        return self._drive(self._steps_lookup_many(keys))

    def touch(self, key: str, timeout: Timeout = None) -> bool:
        """Give ``key`` a new ``timeout`` (None = the default, 0 = never expire) without
        rewriting its value: ``EXPIRE``, or ``PERSIST`` for 0.

        With a serializer that binds the expiry into the value (``secret_key``: see
        :class:`~cachecore.types.KeyedSerializer`), the value is signed again with the new
        expiry and replaced only if unchanged meanwhile (one Lua script; on ``memory://``
        it needs the ``lupa`` package): a new TTL alone would leave a value that reads as a
        miss after its old expiry.

        :returns: True if the key exists; False if not, if its value cannot be decoded
            (logged) or on a backend fault.
        :raises TypeError, ValueError: a malformed ``timeout``, as for :meth:`set`.
        """
        return self._drive(self._steps_touch(key, timeout))

    def inc_existing(self, key: str, delta: int = 1) -> int | None:
        """Atomically add ``delta`` to the integer under ``key``, only if the key exists;
        its timeout is kept. One Lua script (``EVAL``), so a key that expires meanwhile
        is never re-created without a timeout; never sent twice. Needs server-side
        scripting; on ``memory://``, the ``lupa`` package (``pip install fakeredis[lua]``).

        :returns: the new value; None on a backend fault.
        :raises KeyError: ``key`` does not exist.
        :raises TypeError: ``delta`` is not an int, or the stored value is not an
            integer (or the result would overflow 64 bits).
        """
        result: int | None = self._run(self._plan_inc_existing(key, delta))
        return result

    def get_or_set(
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
        """Return the value under ``key``, or call ``fn()`` once, store its result for
        ``timeout`` and return it. Concurrent callers, in this process or any other,
        never compute the same key twice at once: one takes a lock on the server, the
        others wait for its value (see docs/memoize.md for choosing the options).

        :param tags: the value is stored with these tags' versions and becomes a miss
            when :meth:`invalidate_tags` bumps one of them.
        :param strategy: ``"lock"``; or ``"xfetch"``: before the value expires, one
            caller recomputes it early, with a probability that grows as the expiry
            nears, scaled by how long the last computation took and by ``beta``.
        :param stale_while_revalidate: for this many seconds after expiry, callers get
            the old value while one of them recomputes it.
        :param stale_if_error: for this many seconds after expiry, if ``fn`` raises or
            the server fails, the last good value is returned (with one warning).
        :param lock_timeout: seconds the lock lives at most, so a crashed owner blocks
            the others that long at most; keep it above ``fn``'s duration.
        :returns: the cached value or ``fn()``'s result. On a backend fault ``fn()`` is
            called (with a warning) and its result returned unstored.
        :raises: what ``fn`` raises (nothing is stored; waiters then compute in turn);
            TypeError/ValueError for bad options; ``fn`` returning an awaitable raises
            TypeError (use the asyncio cache).
        """
        policy = Policy(
            check_tags(tags), strategy, beta, stale_while_revalidate, stale_if_error, lock_timeout
        )
        return self._drive(self._memo().get_or_set(key, timeout, policy, _blocking(fn), time.sleep))

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
        """Decorate a function so its results are cached by :meth:`get_or_set`, under a
        key built from its qualified name and its arguments (docs/memoize.md).

        :param tags: tags for every result, or a callable taking the call's arguments
            and returning its tags.
        :param ignore: parameter names left out of the key (default: a first ``self``
            or ``cls``).
        :returns: the decorator; the decorated function has ``invalidate(*args,
            **kwargs)`` and ``key(*args, **kwargs)``.
        :raises TypeError: (when decorating) a coroutine function; at call time, an
            argument with no stable key encoding.
        """
        options = {
            "strategy": strategy,
            "beta": beta,
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "lock_timeout": lock_timeout,
        }
        return memoizer(self, False, timeout, tags, ignore, options)

    def invalidate_tags(self, *tags: str) -> bool:
        """Make every value stored with any of ``tags`` a miss: one ``INCRBY`` of each
        tag's version, whatever the number of values (docs/memoize.md).

        :returns: True; False on a backend fault.
        """
        return self._drive(self._memo().invalidate_tags(check_tags(tags)))

    def ping(self) -> bool:
        """Whether the server answers PING; False on a fault."""
        result: bool = self._run(self._plan_ping())
        return result

    def close(self) -> None:
        """Release the client's connections; the cache may still be used (it reconnects)."""
        self._writes.close()
        if self._reads is not self._writes.reader:
            self._reads.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
