"""The cache protocol, written once for the blocking and the asyncio cache classes.

:class:`CacheProtocol` holds everything a cache does except waiting for the server: key
prefixes, serialization, timeouts, which command each method sends, how its reply reads,
its fault value and warning. It never performs I/O itself. Each method is described in
one of two shapes, which a small driver in each cache class runs:

* a *plan* (:data:`Plan`), for the methods that send one command: the transport method
  to call, the command, the method's name and fault value, and how to read the reply;
* *steps* (:data:`Steps`), for the methods that may need several round trips
  (``get_many`` on a cluster, ``clear``): a generator that yields ``(transport method,
  arguments)`` pairs, receives each reply (or has the transport's exception thrown into
  it), and returns the method's result.

:class:`cachecore.BaseRedisCache` drives them with plain calls,
:class:`cachecore.aio.AsyncBaseRedisCache` with ``await``: one protocol, two drivers.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

from cachecore.errors import ValueTooLargeError
from cachecore.serializers import DEFAULT_MAX_SIZE, PickleSerializer
from cachecore.stats import (
    ADD_EXISTS,
    DELETES,
    HITS,
    INCREMENTS,
    MISSES,
    PINGS,
    SETS,
    CacheStats,
    Counters,
    collect,
    fault_kind,
)
from cachecore.timeouts import to_seconds
from cachecore.types import KeyPrefix, Serializer, Timeout

if TYPE_CHECKING:
    from cachecore.memo.steps import Memo

log = logging.getLogger("cachecore")

DEFAULT_MAX_VALUE_SIZE = DEFAULT_MAX_SIZE
"""The servers' own limit on one value (``proto-max-bulk-len``), in bytes."""

CLEAR_BATCH = 1000
"""Keys per SCAN step and per UNLINK in ``clear()``: each step costs the server well
under a millisecond, so clearing never blocks it for long."""

ResultT = TypeVar("ResultT")

Finish: TypeAlias = Callable[[Any, Any], Any]
"""Reads a reply: ``finish(user key or None, reply) -> result``."""

Plan: TypeAlias = tuple[Callable[..., Any], str, Any, Finish, Any, tuple[Any, ...], int, int]
"""``(send, method name, fault value, finish, user key, command, counted if truthy,
counted if falsy)``: send ``command`` with ``send``; on a transport error the result is
the fault value (with a warning), else ``finish(user key, reply)``, after adding one to
the counter (a position in :data:`cachecore.stats.SLOTS`, e.g. ``HITS``/``MISSES``)
that the reply's truth picks."""

Step: TypeAlias = tuple[Callable[..., Any], tuple[Any, ...]]
Steps: TypeAlias = Generator[Step, Any, ResultT]
"""A generator yielding ``(transport method, arguments)`` and returning the result."""

_NOT_FOUND = object()

INC_EXISTING_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local reply = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(reply) == 'table' and reply.err then return {reply.err} end
return reply
"""
"""INCRBY only on an existing key: nil when missing, {error} when INCRBY refuses it."""

_OK_REPLIES = (True, b"OK", "OK")
"""A successful SET: ``True`` through a client's pipeline, the bare reply otherwise."""


def has_hash_tag(prefix: str) -> bool:
    """Whether every key under ``prefix`` hashes to one cluster slot: the prefix holds a
    complete, non-empty hash tag (``{...}``), which then decides the slot of each key."""
    start = prefix.find("{")
    if start < 0:
        return False
    end = prefix.find("}", start + 1)
    return end > start + 1


def glob_escape(text: str) -> str:
    """``text`` with SCAN/KEYS glob characters escaped, to match it literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def check_delta(delta: object) -> None:
    """:raises TypeError: ``delta`` is not an int (bools included)."""
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise TypeError(f"delta must be an int, got {type(delta).__name__}: {delta!r}")


def _keyed(serializer: Serializer, method: str) -> Any:
    """The key-aware form of ``serializer.dumps``/``loads`` (``dumps_for``/``loads_for``,
    see :class:`~cachecore.types.KeyedSerializer`), or None when it has none."""
    return getattr(serializer, method + "_for", None)


SWAP_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""
"""Replace the value ARGV[1] by ARGV[2] (expiring in ARGV[3] s, 0 = never): 1 done,
0 the key is gone, -1 it holds another value now."""


def _truthy(_key: Any, reply: Any) -> bool:
    return bool(reply)


def _integer(_key: Any, reply: Any) -> int:
    return int(reply)


def _unlink_commands(
    keys: list[Any], keyslot: Callable[[Any], int] | None
) -> list[tuple[Any, ...]]:
    if not keys:
        return []
    if keyslot is None:
        return [("UNLINK", *keys)]
    by_slot: dict[int, list[Any]] = {}
    for key in keys:
        by_slot.setdefault(keyslot(key), []).append(key)
    return [("UNLINK", *group) for group in by_slot.values()]


class CacheProtocol:
    """What every cachecore cache does, independent of how it waits for the server.

    Subclasses set ``_writes`` and ``_reads`` (transports, blocking or asyncio) and
    ``_errors`` (the exception types that are backend faults), and drive the plans and
    steps this class builds. The constructor arguments are those of
    :class:`~cachecore.BaseRedisCache`.
    """

    serializer: Serializer = PickleSerializer()
    _writes: Any
    _reads: Any
    _errors: tuple[type[BaseException], ...]
    description: str
    _client_kind = "a Redis-API client"
    """How the constructor names the client it wants, in its TypeError."""

    def _setup(
        self,
        client: Any,
        read_client: Any,
        transport_for: Callable[[Any], Any],
        default_timeout: Timeout,
        key_prefix: KeyPrefix,
        serializer: Serializer | None,
        raise_errors: bool,
        max_value_size: int | None,
        ignore_delete_many_errors: bool,
    ) -> None:
        """The constructor of both cache classes (their arguments, checked), given the
        function that turns a client into a transport of their kind.

        :raises TypeError: ``client`` is None, or an argument has a wrong type.
        """
        if client is None:
            raise TypeError(f"client must be {self._client_kind}, got None")
        if default_timeout is None:
            raise TypeError("default_timeout must be an int or datetime.timedelta, not None")
        self.default_timeout = to_seconds(default_timeout, "default_timeout")
        if key_prefix is not None and not isinstance(key_prefix, str) and not callable(key_prefix):
            raise TypeError(
                f"key_prefix must be a str or a callable returning str, "
                f"got {type(key_prefix).__name__}"
            )
        self.key_prefix: str | Callable[[], str] = key_prefix or ""
        if serializer is not None:
            self.serializer = serializer
        self.raise_errors = raise_errors
        self.max_value_size = DEFAULT_MAX_VALUE_SIZE if max_value_size is None else max_value_size
        self.ignore_delete_many_errors = ignore_delete_many_errors
        self.counters = Counters()
        self._shard = self.counters.shard  # this thread's counts (cachecore.stats)
        writes = transport_for(client)
        reads = writes.reader if read_client is None else transport_for(read_client)
        self._writes = writes
        self._reads = reads
        self._errors = tuple(dict.fromkeys((*writes.errors, *reads.errors)))
        self.description = writes.describe()

    def __repr__(self) -> str:
        # The description carries no password; a callable prefix is not called here.
        prefix = self.key_prefix
        if callable(prefix):
            shown = " prefix=<callable>"
        else:
            shown = f" prefix={prefix!r}" if prefix else ""
        return f"<{type(self).__name__} {self.description}{shown}>"

    def _memo(self) -> Memo:
        """This cache's get-or-set machinery (:mod:`cachecore.memo`), made on first use."""
        memo: Memo | None = self.__dict__.get("_memo_state")
        if memo is None:
            from cachecore.memo.steps import Memo

            memo = self.__dict__["_memo_state"] = Memo(self)
        return memo

    def stats(self) -> CacheStats:
        """What this cache did since it was built: hits, misses, sets, deletes, faults by
        kind, and the near cache's and circuit breaker's counters (see
        :class:`~cachecore.stats.CacheStats`). Exact under threads and tasks; cheap
        enough to call on every scrape."""
        return collect(self.counters, {"writes": self._writes, "reads": self._reads})

    def _count_fault(self, exc: BaseException) -> None:
        replies = (*self._writes.reply_errors, *self._reads.reply_errors)
        self.counters.add(f"faults.{fault_kind(exc, replies)}")

    # -- keys, values, faults ------------------------------------------------------------

    def _prefix(self) -> str:
        prefix = self.key_prefix
        if isinstance(prefix, str):
            return prefix
        value = prefix()
        if not isinstance(value, str):
            raise TypeError(f"key_prefix callable must return a str, got {type(value).__name__}")
        return value

    def _key(self, key: str) -> str:
        prefix = self.key_prefix
        if not isinstance(prefix, str):  # a callable: the rare case, one more call
            prefix = self._prefix()
        try:
            return prefix + key
        except TypeError:
            raise TypeError(f"key must be a str, got {type(key).__name__}: {key!r}") from None

    def _keys(self, keys: Iterable[str]) -> list[str]:
        prefix = self._prefix()
        try:
            return [prefix + key for key in keys]
        except TypeError:
            bad = next(k for k in keys if not isinstance(k, str))
            raise TypeError(f"keys must be str, got {type(bad).__name__}: {bad!r}") from None

    def _expiry(self, timeout: Timeout) -> int:
        if timeout is None:
            return self.default_timeout
        return to_seconds(timeout)

    def _dump(self, full: str, value: Any, expiry: int) -> bytes:
        serializer = self.serializer
        dumps_for = None if type(serializer) is PickleSerializer else _keyed(serializer, "dumps")
        data: bytes = (
            serializer.dumps(value) if dumps_for is None else dumps_for(full, value, expiry)
        )
        if len(data) > self.max_value_size:
            raise ValueTooLargeError(
                f"serialized value is {len(data)} bytes, over max_value_size="
                f"{self.max_value_size}; not sent"
            )
        return data

    def _load(
        self, key: str, data: bytes | None, default: Any = None, full: str | None = None
    ) -> Any:
        """``data`` decoded (``full``: the prefixed key, for a key-bound serializer), or
        ``default`` when missing or undecodable (logged)."""
        if data is None:
            return default
        if data[:1] == b"\xc1":  # an envelope (cachecore.memo.envelope): a miss here
            return default
        serializer = self.serializer
        try:
            loads_for = _keyed(serializer, "loads")
            if loads_for is None:
                return serializer.loads(data)
            return loads_for(self._key(key) if full is None else full, data)
        except Exception as exc:  # stored bytes are untrusted input: any decoder error
            log.warning(
                "cachecore: cannot decode the value of %r in %r (%s: %s); reading it as a miss",
                key,
                self,
                type(exc).__name__,
                str(exc),  # not exc: a kept log record would keep its frames' data alive
            )
            return default

    def _decode(self, key: str, data: bytes | None) -> Any:
        """The value of one reply (None for a miss or undecodable bytes)."""
        if data is None:
            return None
        serializer = self.serializer
        if type(serializer) is PickleSerializer:
            try:
                if data[0] == 33:  # b"!" + pickle
                    return pickle.loads(data[1:])
                return serializer.loads(data)
            except Exception:  # undecodable (or b""): _load decodes it again to log why
                pass
        return self._load(key, data)

    def _decode_or(self, key: str, data: bytes, default: Any, full: str | None = None) -> Any:
        """``data`` decoded, or ``default`` (logged by _load) when it cannot be."""
        serializer = self.serializer
        if type(serializer) is PickleSerializer:
            try:
                if data[0] == 33:  # b"!" + pickle
                    return pickle.loads(data[1:])
                return serializer.loads(data)
            except Exception:  # _load decodes it again, to log why it cannot
                pass
        value = self._load(key, data, _NOT_FOUND, full)
        return default if value is _NOT_FOUND else value

    def _decode_many(
        self, keys: tuple[str, ...], values: list[Any], full: list[str] | None = None
    ) -> list[Any]:
        serializer = self.serializer
        if type(serializer) is PickleSerializer:
            loads = serializer.loads
            try:
                # cachelib's format decoded inline, without a method call per value:
                # b"!" (byte 33) + pickle, else an ASCII int for loads() to parse.
                unpickle = pickle.loads
                if None not in values:  # every key found: one test a value less
                    return [unpickle(data[1:]) if data[0] == 33 else loads(data) for data in values]
                return [
                    None if data is None else unpickle(data[1:]) if data[0] == 33 else loads(data)
                    for data in values
                ]
            except Exception:  # some value is undecodable: one by one below, logging it
                pass
        # One by one, so an undecodable value is lost (and logged) alone.
        made = self._keys(keys) if full is None else full
        return [
            self._load(key, data, None, one)
            for key, one, data in zip(keys, made, values, strict=True)
        ]

    def _fault(self, operation: str, exc: BaseException, result: ResultT) -> ResultT:
        self._count_fault(exc)
        if self.raise_errors:
            self._raise(operation, exc)
        log.warning(
            "cachecore: %s failed on %r, returning %r: %s: %s",
            operation,
            self,
            result,
            type(exc).__name__,
            exc,
        )
        return result

    def _raise(self, operation: str, exc: BaseException) -> NoReturn:
        from cachecore.errors import BackendError

        raise BackendError(f"{operation} failed on {self!r}: {type(exc).__name__}: {exc}") from exc

    def _partial(
        self, operation: str, done: str, count: int, total: int, failure: BaseException
    ) -> None:
        """Report a multi-key call that reached only ``count`` of its ``total`` keys:
        a warning, or :class:`BackendError` with ``raise_errors``."""
        self._count_fault(failure)
        if self.raise_errors:
            self._raise(operation, failure)
        log.warning(
            "cachecore: %s %s %d of %d keys on %r: %s: %s",
            operation,
            done,
            count,
            total,
            self,
            type(failure).__name__,
            failure,
        )

    @staticmethod
    def _set_args(key: str, data: bytes, expiry: int) -> tuple[Any, ...]:
        if expiry:
            return ("SET", key, data, "EX", expiry)
        return ("SET", key, data)

    # -- plans: the methods that send one command ----------------------------------------

    def _plan_get(self, key: str) -> Plan:
        command = ("GET", self._key(key))
        return (self._reads.send, "get", None, self._decode, key, command, HITS, MISSES)

    def _plan_has(self, key: str) -> Plan:
        command = ("EXISTS", self._key(key))
        return (self._reads.send, "has", False, _truthy, key, command, HITS, MISSES)

    def _plan_set(self, key: str, value: Any, timeout: Timeout) -> Plan:
        full, expiry = self._key(key), self._expiry(timeout)
        command = self._set_args(full, self._dump(full, value, expiry), expiry)
        return (self._writes.send, "set", False, _truthy, key, command, SETS, SETS)

    def _plan_add(self, key: str, value: Any, timeout: Timeout) -> Plan:
        full, expiry = self._key(key), self._expiry(timeout)
        command = (*self._set_args(full, self._dump(full, value, expiry), expiry), "NX")
        # SET NX run twice answers "exists" to its own write: sent once.
        return (self._writes.send_once, "add", False, _truthy, key, command, SETS, ADD_EXISTS)

    def _plan_delete(self, key: str) -> Plan:
        # A second UNLINK would answer 0 for a key the first one deleted: sent once.
        command = ("UNLINK", self._key(key))
        return (self._writes.send_once, "delete", False, _truthy, key, command, DELETES, DELETES)

    def _plan_incrby(self, operation: str, key: str, delta: int, sign: int) -> Plan:
        if type(delta) is not int:
            check_delta(delta)
        command = ("INCRBY", self._key(key), sign * delta)
        counted = INCREMENTS
        return (self._writes.send_once, operation, None, _integer, key, command, counted, counted)

    def _plan_lookup(self, key: str, default: Any) -> Plan:
        def finish(key: str, data: Any) -> Any:
            return default if data is None else self._decode_or(key, data, default)

        command = ("GET", self._key(key))
        return (self._reads.send, "lookup", default, finish, key, command, HITS, MISSES)

    def _plan_inc_existing(self, key: str, delta: int) -> Plan:
        if type(delta) is not int:
            check_delta(delta)

        def finish(key: str, reply: Any) -> int:
            if reply is None:
                raise KeyError(key)
            if isinstance(reply, list):  # the script's {error}: INCRBY refused the value
                error = reply[0] if reply else b"refused"
                text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
                raise TypeError(f"cannot add {delta} to the value of {key!r}: {text}")
            return int(reply)

        # Like INCRBY, never sent twice.
        command = ("EVAL", INC_EXISTING_SCRIPT, 1, self._key(key), delta)
        send, counted = self._writes.send_once, INCREMENTS
        return (send, "inc_existing", None, finish, key, command, counted, counted)

    def _plan_ping(self) -> Plan:
        return (self._writes.send, "ping", False, _truthy, None, ("PING",), PINGS, PINGS)

    # -- steps: the methods that may need several round trips ----------------------------

    def _steps_get_many(self, keys: tuple[str, ...]) -> Steps[list[Any]]:
        if not keys:
            return []
        full = self._keys(keys)
        try:
            values = yield from self._steps_mget("get_many", full)
        except self._errors as exc:
            return self._fault("get_many", exc, [None] * len(keys))
        self._count_reads(values)
        return self._decode_many(keys, values, full)

    def _steps_lookup_many(self, keys: tuple[str, ...]) -> Steps[dict[str, Any]]:
        if not keys:
            return {}
        full = self._keys(keys)
        try:
            values = yield from self._steps_mget("lookup_many", full)
        except self._errors as exc:
            return self._fault("lookup_many", exc, {})
        self._count_reads(values)
        found: dict[str, Any] = {}
        for key, made, data in zip(keys, full, values, strict=True):
            if data is not None:
                value = self._decode_or(key, data, _NOT_FOUND, made)
                if value is not _NOT_FOUND:
                    found[key] = value
        return found

    def _count_reads(self, values: list[Any]) -> None:
        counts = self._shard.counts
        missing = values.count(None)
        hits = len(values) - missing  # no call inside an increment (cachecore.stats)
        counts[HITS] += hits
        counts[MISSES] += missing

    def _steps_mget(self, operation: str, full: list[str]) -> Steps[list[Any]]:
        """The stored bytes of the prefixed keys ``full`` (one MGET, or one per slot on
        a cluster); a failed cluster node's keys read as None, reported once."""
        reads = self._reads
        if reads.keyslot is None:
            values: list[Any] = yield reads.send, ("MGET", *full)
            return values
        values = [None] * len(full)
        failure: BaseException | None = None
        unread = 0
        for positions, reply in (yield from self._per_slot(reads, "MGET", full)):
            if isinstance(reply, BaseException):  # that node failed: misses
                failure, unread = reply, unread + len(positions)
                continue
            for position, data in zip(positions, reply, strict=True):
                values[position] = data
        if failure is not None:
            self._partial(operation, "read", len(full) - unread, len(full), failure)
        return values

    def _steps_touch(self, key: str, timeout: Timeout) -> Steps[bool]:
        full = self._key(key)
        expiry = self._expiry(timeout)
        writes = self._writes
        serializer = self.serializer
        if type(serializer) is not PickleSerializer and _keyed(serializer, "dumps") is not None:
            return (yield from self._steps_touch_keyed(key, full, expiry))
        try:
            if expiry:
                touched = bool((yield writes.send, ("EXPIRE", full, expiry)))
                self.counters.add("touches")
                return touched
            # PERSIST answers 0 for a key that had no timeout: EXISTS tells whether it is.
            replies = yield writes.send_batch, ([("PERSIST", full), ("EXISTS", full)],)
        except self._errors as exc:
            return self._fault("touch", exc, False)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        if failure is not None:
            return self._fault("touch", failure, False)
        self.counters.add("touches")
        return bool(replies[1])

    def _steps_touch_keyed(self, key: str, full: str, expiry: int) -> Steps[bool]:
        # The expiry is signed into the value: sign it again, swap only if unchanged.
        writes = self._writes
        for _ in range(3):  # another writer may replace the value between GET and swap
            try:
                data = yield writes.send, ("GET", full)  # the primary's, not a replica's
            except self._errors as exc:
                return self._fault("touch", exc, False)
            value = self._load(key, data, _NOT_FOUND, full)
            if value is _NOT_FOUND:  # gone, or unreadable (logged): nothing to keep
                return False
            fresh = self._dump(full, value, expiry)
            command = ("EVAL", SWAP_SCRIPT, 1, full, data, fresh, expiry)
            try:
                swapped = yield writes.send_once, command
            except self._errors as exc:
                return self._fault("touch", exc, False)
            if int(swapped) >= 0:
                return bool(int(swapped))
        return True  # it exists, with values newer than this touch

    def _steps_set_many(self, mapping: dict[str, Any], timeout: Timeout) -> Steps[list[Any]]:
        expiry = self._expiry(timeout)
        keys = list(mapping)
        commands = [
            self._set_args(full, self._dump(full, value, expiry), expiry)
            for full, value in zip(self._keys(keys), mapping.values(), strict=True)
        ]
        if not commands:
            return []
        try:
            results = yield self._writes.send_batch, (commands,)
        except self._errors as exc:
            return self._fault("set_many", exc, [])
        stored = [key for key, ok in zip(keys, results, strict=True) if ok in _OK_REPLIES]
        if len(stored) != len(keys):
            failure = next(r for r in results if r not in _OK_REPLIES)
            if isinstance(failure, BaseException):
                self._partial("set_many", "stored", len(stored), len(keys), failure)
        self.counters.add("sets", len(stored))
        return stored

    def _steps_delete_many(self, keys: tuple[str, ...]) -> Steps[list[Any]]:
        if not keys:
            return []
        full = self._keys(keys)
        writes = self._writes
        try:
            if writes.keyslot is None:
                yield writes.send, ("UNLINK", *full)
                self.counters.add("deletes", len(keys))
                return list(keys)
            results = yield from self._per_slot(writes, "UNLINK", full)
        except self._errors as exc:
            return self._fault("delete_many", exc, [])
        gone = sorted(
            p for positions, r in results if not isinstance(r, BaseException) for p in positions
        )
        if len(gone) < len(keys):  # a node failed: its keys may still be there
            failure = next(r for _, r in results if isinstance(r, BaseException))
            self._partial("delete_many", "deleted", len(gone), len(keys), failure)
        self.counters.add("deletes", len(gone))
        return [keys[p] for p in gone]

    def _steps_clear(self) -> Steps[bool]:
        prefix = self._prefix()
        writes = self._writes
        try:
            # Each primary of a cluster holds its share of the keys.
            for node in (yield writes.nodes, ()):
                if prefix:
                    yield from self._unlink_matching(node, glob_escape(prefix) + "*")
                else:
                    yield node.send, ("FLUSHDB",)
        except self._errors as exc:
            return self._fault("clear", exc, False)
        self.counters.add("clears")
        return True

    def _unlink_matching(self, node: Any, pattern: str) -> Steps[int]:
        # The UNLINK of one batch travels with the SCAN for the next: one round trip a
        # batch. On a cluster each batch is unlinked one slot at a time.
        keyslot = self._writes.keyslot
        cursor: int = 0
        batch: list[Any] = []
        deleted = 0
        while True:
            scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_BATCH)
            replies = yield node.send_batch, ([*_unlink_commands(batch, keyslot), scan],)
            *unlinked, scanned = replies
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            deleted += sum(int(n) for n in unlinked)
            cursor, batch = int(scanned[0]), list(scanned[1])
            if cursor == 0:
                break
        if batch:
            replies = yield node.send_batch, (_unlink_commands(batch, keyslot),)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            deleted += sum(int(n) for n in replies)
        return deleted

    def _per_slot(
        self, transport: Any, command: str, keys: list[str]
    ) -> Steps[list[tuple[list[int], Any]]]:
        """Run the multi-key ``command`` on a cluster once per hash slot of ``keys``, all
        in one batch (about one round trip per node). Returns (positions in ``keys``,
        reply) per slot; the slots of a node that failed get its exception as reply."""
        everything = list(range(len(keys)))
        if has_hash_tag(self._prefix()):  # every key hashes on the prefix's tag: one slot
            return [(everything, (yield transport.send, (command, *keys)))]
        keyslot = transport.keyslot
        groups: dict[int, list[int]] = {}
        for position, key in enumerate(keys):
            groups.setdefault(keyslot(key), []).append(position)
        if len(groups) == 1:
            return [(everything, (yield transport.send, (command, *keys)))]
        batch = [(command, *[keys[p] for p in positions]) for positions in groups.values()]
        replies = yield transport.send_batch, (batch,)
        return list(zip(groups.values(), replies, strict=True))
