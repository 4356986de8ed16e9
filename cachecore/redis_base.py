"""The one implementation of the cache protocol for every Redis-API client.

Backend plugins construct a client (redis-py, valkey-py, fakeredis...) and hand it to
:class:`BaseRedisCache`; nothing of the protocol lives in the plugins.
"""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, Self, TypeVar

from cachecore import topology
from cachecore.base import BaseCache
from cachecore.errors import BackendError, ConnectionCheckError, ValueTooLargeError
from cachecore.pooled import ClientCommands, commands_for
from cachecore.serializers import DEFAULT_MAX_SIZE, PickleSerializer
from cachecore.timeouts import to_seconds
from cachecore.types import KeyPrefix, Serializer, Timeout

log = logging.getLogger("cachecore")

DEFAULT_MAX_VALUE_SIZE = DEFAULT_MAX_SIZE
"""The servers' own limit on one value (``proto-max-bulk-len``), in bytes."""

CLEAR_BATCH = 1000
"""Keys per SCAN step and per UNLINK in ``clear()``: each step costs the server well
under a millisecond, so clearing never blocks it for long."""

_T = TypeVar("_T")


@functools.cache
def client_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the server or the connection failed".

    Covers redis-py (and fakeredis, which raises redis-py's errors), valkey-py when it
    is installed, and OS-level socket errors.
    """
    import redis.exceptions

    # The cluster clients' own errors (no reachable node, slot not covered) are no
    # RedisError / ValkeyError subclasses.
    errors: list[type[BaseException]] = [
        redis.exceptions.RedisError,
        redis.exceptions.RedisClusterException,
        OSError,
    ]
    try:
        import valkey.exceptions
    except ImportError:
        pass
    else:
        errors += [valkey.exceptions.ValkeyError, valkey.exceptions.ValkeyClusterException]
    return tuple(errors)


def _keyed(serializer: Serializer, method: str) -> Any:
    """The key-aware form of ``serializer.dumps``/``loads`` (``dumps_for``/``loads_for``,
    see :class:`~cachecore.types.KeyedSerializer`), or None when it has none."""
    return getattr(serializer, method + "_for", None)


_NOT_FOUND = object()

_INC_EXISTING_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local reply = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(reply) == 'table' and reply.err then return {reply.err} end
return reply
"""
"""INCRBY only on an existing key: nil when missing, {error} when INCRBY refuses it."""

_SWAP_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""
"""Replace the value ARGV[1] by ARGV[2] (expiring in ARGV[3] s, 0 = never): 1 done,
0 the key is gone, -1 it holds another value now."""


def _check_delta(delta: object) -> None:
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise TypeError(f"delta must be an int, got {type(delta).__name__}: {delta!r}")


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


def _queue_unlink(pipe: Any, keys: list[bytes], keyslot: Callable[[bytes], int] | None) -> None:
    if not keys:
        return
    if keyslot is None:
        pipe.execute_command("UNLINK", *keys)
        return
    by_slot: dict[int, list[bytes]] = {}
    for key in keys:
        by_slot.setdefault(keyslot(key), []).append(key)
    for group in by_slot.values():
        pipe.execute_command("UNLINK", *group)


class BaseRedisCache(BaseCache):
    """A cache over any client with the redis-py API; the shared base of every backend.

    Compatible with cachelib's ``BaseRedisCache``: same constructor, methods, return
    values and wire format, so values written by either read in the other.

    :param client: a client with redis-py's API (``execute_command``, ``pipeline``).
    :param default_timeout: seconds or timedelta used when ``timeout`` is None; 0 = never.
    :param key_prefix: prepended to every key: a str, or a zero-argument callable
        evaluated on every call (e.g. per tenant).
    :param serializer: the wire format; default :class:`~cachecore.serializers.PickleSerializer`
        (cachelib's). Can also be replaced later through the ``serializer`` attribute.
    :param raise_errors: raise :class:`~cachecore.errors.BackendError` on a backend fault
        instead of returning the method's fault value.
    :param max_value_size: refuse (``ValueTooLargeError``) serialized values above this
        many bytes instead of sending them. Default: the servers' 512 MiB limit.
    :param read_client: a client for reads (``get``, ``get_many``, ``has``), e.g. one
        that reads from replicas. Default: ``client``.
    :param ignore_delete_many_errors: accepted for cachelib compatibility; cachecore's
        ``delete_many`` deletes all keys in one command, so there is no partial failure.
    :param check_connection: PING the server now and raise
        :class:`~cachecore.errors.ConnectionCheckError` (a :class:`BackendError` and a
        ``RuntimeError``, as cachelib raises) if it does not answer.
    """

    serializer: Serializer = PickleSerializer()

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
        super().__init__(default_timeout)
        if client is None:
            raise TypeError("client must be a Redis-API client, got None")
        if key_prefix is not None and not isinstance(key_prefix, str) and not callable(key_prefix):
            raise TypeError(
                f"key_prefix must be a str or a callable returning str, "
                f"got {type(key_prefix).__name__}"
            )
        self._write_client = client
        self._read_client = client if read_client is None else read_client
        self.key_prefix: str | Callable[[], str] = key_prefix or ""
        if serializer is not None:
            self.serializer = serializer
        self.raise_errors = raise_errors
        self.max_value_size = DEFAULT_MAX_VALUE_SIZE if max_value_size is None else max_value_size
        self.ignore_delete_many_errors = ignore_delete_many_errors
        self._errors = client_errors()
        # A cluster refuses multi-key commands across hash slots: see _per_slot.
        self._cluster = topology.is_cluster_client(client)
        # How the cache's commands are sent (straight onto the pool where the client
        # allows): see pooled.py.
        self._writes = commands_for(client, self._cluster)
        self._reads = commands_for(self._read_client, self._cluster)
        self.description = self._describe_client(client)
        if check_connection:
            try:
                client.execute_command("PING")
            except self._errors as exc:
                raise ConnectionCheckError(f"cannot reach the server of {self!r}: {exc}") from exc

    # -- helpers -----------------------------------------------------------------------

    def __repr__(self) -> str:
        # The description carries no password; a callable prefix is not called here.
        prefix = self.key_prefix
        if callable(prefix):
            shown = " prefix=<callable>"
        else:
            shown = f" prefix={prefix!r}" if prefix else ""
        return f"<{type(self).__name__} {self.description}{shown}>"

    @property
    def client(self) -> Any:
        """The client this cache writes through (for commands the cache API lacks)."""
        return self._write_client

    @staticmethod
    def _describe_client(client: Any) -> str:
        # Host, port and db only: never the password, which also sits in connection_kwargs.
        pool = getattr(client, "connection_pool", None)
        kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        if "host" in kwargs:
            return f"{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        return type(client).__name__

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

    def _load(self, key: str, full: str, data: bytes | None, default: Any = None) -> Any:
        if data is None:
            return default
        serializer = self.serializer
        try:
            loads_for = _keyed(serializer, "loads")
            return serializer.loads(data) if loads_for is None else loads_for(full, data)
        except Exception as exc:  # stored bytes are untrusted input: any decoder error
            log.warning(
                "cachecore: cannot decode the value of %r in %r (%s: %s); reading it as a miss",
                key,
                self,
                type(exc).__name__,
                str(exc),  # not exc: a kept log record would keep its frames' data alive
            )
            return default

    def _fault(self, operation: str, exc: BaseException, result: _T) -> _T:
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
        raise BackendError(f"{operation} failed on {self!r}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _set_args(key: str, data: bytes, expiry: int) -> tuple[Any, ...]:
        if expiry:
            return ("SET", key, data, "EX", expiry)
        return ("SET", key, data)

    # -- the API -----------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the value stored under ``key``; None if missing, undecodable or on a fault."""
        full = self._key(key)
        try:
            data = self._reads.call("GET", full)
        except self._errors as exc:
            return self._fault("get", exc, None)
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
        return self._load(key, full, data)

    def get_many(self, *keys: str) -> list[Any]:
        """Return the values of ``keys`` in order (one MGET; on a cluster one MGET per hash
        slot, pipelined: one round trip per node); None for missing ones.

        On a fault every entry is None. On a cluster where a node refuses connections,
        only that node's keys read as None (with one warning).
        """
        if not keys:
            return []
        full = self._keys(keys)
        try:
            if self._cluster:
                values: list[Any] = [None] * len(full)
                failure: BaseException | None = None
                unread = 0
                for positions, reply in self._per_slot(self._reads, "MGET", full):
                    if isinstance(reply, BaseException):  # that node failed: misses
                        failure, unread = reply, unread + len(positions)
                        continue
                    for position, data in zip(positions, reply, strict=True):
                        values[position] = data
                if failure is not None:
                    self._partial("get_many", "read", len(keys) - unread, len(keys), failure)
            else:
                values = self._reads.call("MGET", *full)
        except self._errors as exc:
            return self._fault("get_many", exc, [None] * len(keys))
        serializer = self.serializer
        if type(serializer) is PickleSerializer:
            loads = serializer.loads
            try:
                # cachelib's format decoded inline, without a method call per value:
                # b"!" (byte 33) + pickle, else an ASCII int for loads() to parse.
                unpickle = pickle.loads
                return [
                    None if data is None else unpickle(data[1:]) if data[0] == 33 else loads(data)
                    for data in values
                ]
            except Exception:  # some value is undecodable: one by one below, logging it
                pass
        # One by one, so an undecodable value is lost (and decoded) only once.
        return [self._load(*item) for item in zip(keys, full, values, strict=True)]

    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` under ``key`` for ``timeout`` (None = default, 0 = forever).

        :returns: True, or False on a backend fault.
        :raises TypeError: ``key`` is not a str, or ``timeout`` has a wrong type.
        :raises ValueError: ``timeout`` is negative.
        :raises SerializationError: the value cannot be serialized.
        :raises ValueTooLargeError: the serialized value exceeds ``max_value_size``.
        """
        full, expiry = self._key(key), self._expiry(timeout)
        args = self._set_args(full, self._dump(full, value, expiry), expiry)
        try:
            return bool(self._writes.call(*args))
        except self._errors as exc:
            return self._fault("set", exc, False)

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` only if ``key`` does not exist, atomically (one ``SET NX``).

        :returns: True if stored; False if the key exists or on a backend fault. Never
            retried once sent: if the connection breaks before the reply arrives, the
            result is a fault (False, with a warning) although the value may be stored.
        """
        full, expiry = self._key(key), self._expiry(timeout)
        args = self._set_args(full, self._dump(full, value, expiry), expiry)
        try:
            return bool(self._writes.call_once(*args, "NX"))
        except self._errors as exc:
            return self._fault("add", exc, False)

    def set_many(self, mapping: dict[str, Any], timeout: Timeout = None) -> list[Any]:
        """Store every item of ``mapping`` in one round trip (a pipeline).

        Every value is serialized before anything is sent, so a bad value stores nothing.

        :returns: the keys that were stored, in ``mapping`` order; [] on a fault.
        """
        expiry = self._expiry(timeout)
        keys = list(mapping)
        commands = [
            self._set_args(full, self._dump(full, value, expiry), expiry)
            for full, value in zip(self._keys(keys), mapping.values(), strict=True)
        ]
        if not commands:
            return []
        try:
            results = self._writes.run(commands)
        except self._errors as exc:
            return self._fault("set_many", exc, [])
        stored = [key for key, ok in zip(keys, results, strict=True) if ok in _OK_REPLIES]
        if len(stored) != len(keys):
            failure = next(r for r in results if r not in _OK_REPLIES)
            if isinstance(failure, BaseException):
                self._partial("set_many", "stored", len(stored), len(keys), failure)
        return stored

    def delete(self, key: str) -> bool:
        """Delete ``key`` (UNLINK: the server frees memory in the background).

        :returns: True if the key existed and was deleted; False if not or on a fault
            (never retried once sent: after a lost reply the key may be gone).
        """
        full = self._key(key)
        try:
            return bool(self._writes.call_once("UNLINK", full))
        except self._errors as exc:
            return self._fault("delete", exc, False)

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys`` in one command (on a cluster, one per hash slot, pipelined).

        :returns: the keys no longer in the cache (all of them once the command
            succeeded, in the order given); [] on a fault; on a cluster where a node
            refuses connections, the keys of the other nodes (with one warning).
        """
        if not keys:
            return []
        full = self._keys(keys)
        try:
            if self._cluster:
                results = self._per_slot(self._writes, "UNLINK", full)
            else:
                self._writes.call("UNLINK", *full)
                return list(keys)
        except self._errors as exc:
            return self._fault("delete_many", exc, [])
        gone = sorted(
            p for positions, r in results if not isinstance(r, BaseException) for p in positions
        )
        if len(gone) < len(keys):  # a node failed: its keys may still be there
            failure = next(r for _, r in results if isinstance(r, BaseException))
            self._partial("delete_many", "deleted", len(gone), len(keys), failure)
        return [keys[p] for p in gone]

    def has(self, key: str) -> bool:
        """Whether ``key`` exists; False on a fault."""
        full = self._key(key)
        try:
            return bool(self._reads.call("EXISTS", full))
        except self._errors as exc:
            return self._fault("has", exc, False)

    def clear(self) -> bool:
        """Delete this cache's keys; True on success, False on a fault.

        With a key prefix, only keys under that prefix are deleted, by SCAN + UNLINK in
        batches of :data:`CLEAR_BATCH` (never the blocking ``KEYS``), so other apps'
        keys on the same server survive. **Without a key prefix this flushes the whole
        database** (``FLUSHDB``), including keys cachecore did not write.
        """
        prefix = self._prefix()
        try:
            if self._cluster:
                # Each primary holds its share of the keys: FLUSHDB or SCAN+UNLINK on each.
                for node in topology.primary_clients(self._write_client):
                    if prefix:
                        pattern = glob_escape(prefix) + "*"
                        self._unlink_matching(pattern, node, self._write_client.keyslot)
                    else:
                        node.execute_command("FLUSHDB")
            elif not prefix:
                self._write_client.execute_command("FLUSHDB")
            else:
                self._unlink_matching(glob_escape(prefix) + "*")
        except self._errors as exc:
            return self._fault("clear", exc, False)
        return True

    def _unlink_matching(
        self,
        pattern: str,
        client: Any = None,
        keyslot: Callable[[bytes], int] | None = None,
    ) -> int:
        # The UNLINK of one batch travels with the SCAN for the next: one round trip a batch.
        # On a cluster node (``keyslot`` given) each batch is unlinked one slot at a time.
        client = self._write_client if client is None else client
        cursor: int = 0
        batch: list[bytes] = []
        deleted = 0
        while True:
            pipe = client.pipeline(transaction=False)
            _queue_unlink(pipe, batch, keyslot)
            pipe.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_BATCH)
            *unlinked, (cursor, batch) = pipe.execute()
            deleted += sum(int(n) for n in unlinked)
            cursor = int(cursor)
            if cursor == 0:
                break
        if batch:
            pipe = client.pipeline(transaction=False)
            _queue_unlink(pipe, batch, keyslot)
            deleted += sum(int(n) for n in pipe.execute())
        return deleted

    def _per_slot(
        self, commands: ClientCommands, command: str, keys: list[str]
    ) -> list[tuple[list[int], Any]]:
        """Run the multi-key ``command`` on a cluster once per hash slot of ``keys``, all in
        one pipeline (the client writes each node its share, then reads the replies: about
        one round trip per node). Returns (positions in ``keys``, reply) per slot; the
        slots of a node that refused the connection get its exception as their reply
        (see :class:`~cachecore.pooled.ClusterCommands`)."""
        if has_hash_tag(self._prefix()):  # every key hashes on the prefix's tag: one slot
            return [(list(range(len(keys))), commands.call(command, *keys))]
        keyslot = commands.client.keyslot
        groups: dict[int, list[int]] = {}
        for position, key in enumerate(keys):
            groups.setdefault(keyslot(key), []).append(position)
        if len(groups) == 1:
            return [(list(range(len(keys))), commands.call(command, *keys))]
        replies = commands.run(
            [(command, *[keys[p] for p in positions]) for positions in groups.values()]
        )
        return list(zip(groups.values(), replies, strict=True))

    def _partial(
        self, operation: str, done: str, count: int, total: int, failure: BaseException
    ) -> None:
        """Report a multi-key call that reached only ``count`` of its ``total`` keys:
        a warning, or :class:`BackendError` with ``raise_errors``."""
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

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Atomically add ``delta`` (INCRBY); a missing key starts from 0.

        :returns: the new value; None on a fault or if the stored value is not an integer.
            Never retried once sent, so never applied twice: after a lost reply the
            result is None although the server may have applied ``delta`` once.
        :raises TypeError: ``delta`` is not an int.
        """
        return self._incrby("inc", key, delta, 1)

    def dec(self, key: str, delta: int = 1) -> int | None:
        """Atomically subtract ``delta`` (INCRBY -delta); a missing key starts from 0.

        :returns: the new value; None on a fault or if the stored value is not an integer.
        :raises TypeError: ``delta`` is not an int.
        """
        return self._incrby("dec", key, delta, -1)

    def _incrby(self, operation: str, key: str, delta: int, sign: int) -> int | None:
        if type(delta) is not int:
            _check_delta(delta)
        full = self._key(key)
        try:
            return int(self._writes.call_once("INCRBY", full, sign * delta))
        except self._errors as exc:
            return self._fault(operation, exc, None)

    # -- beyond cachelib -----------------------------------------------------------------

    def lookup(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default`` when there is none.

        Unlike :meth:`get`, a stored None comes back as None, not as ``default``: a
        framework backend (Django's ``get(key, default)``) can tell it from a miss.

        :returns: the value; ``default`` when the key is missing, its value cannot be
            decoded (logged) or on a backend fault (logged).
        """
        full = self._key(key)
        try:
            data = self._reads.call("GET", full)
        except self._errors as exc:
            return self._fault("lookup", exc, default)
        if data is None:
            return default
        return self._decode_or(key, full, data, default)

    def lookup_many(self, *keys: str) -> dict[str, Any]:
        """Return ``{key: value}`` for those of ``keys`` that hold a value (one MGET; on a
        cluster one per hash slot, pipelined). A stored None is kept; missing keys and
        undecodable values (logged) are left out.

        :returns: the found items; {} on a fault; on a cluster where a node refuses
            connections, the other nodes' items (with one warning).
        """
        if not keys:
            return {}
        full = self._keys(keys)
        try:
            values = self._mget_raw("lookup_many", full)
        except self._errors as exc:
            return self._fault("lookup_many", exc, {})
        found: dict[str, Any] = {}
        for key, made, data in zip(keys, full, values, strict=True):
            if data is not None:
                value = self._decode_or(key, made, data, _NOT_FOUND)
                if value is not _NOT_FOUND:
                    found[key] = value
        return found

    def _mget_raw(self, operation: str, full: list[str]) -> list[bytes | None]:
        # The stored bytes of the prefixed keys ``full``; a failed cluster node's keys
        # read as None, reported once by _partial.
        if not self._cluster:
            values: list[bytes | None] = self._reads.call("MGET", *full)
            return values
        values = [None] * len(full)
        failure: BaseException | None = None
        unread = 0
        for positions, reply in self._per_slot(self._reads, "MGET", full):
            if isinstance(reply, BaseException):
                failure, unread = reply, unread + len(positions)
                continue
            for position, data in zip(positions, reply, strict=True):
                values[position] = data
        if failure is not None:
            self._partial(operation, "read", len(full) - unread, len(full), failure)
        return values

    def _decode_or(self, key: str, full: str, data: bytes, default: Any) -> Any:
        # ``data`` decoded, or ``default`` (logged by _load) when it cannot be.
        serializer = self.serializer
        if type(serializer) is PickleSerializer:
            try:
                if data[0] == 33:  # b"!" + pickle
                    return pickle.loads(data[1:])
                return serializer.loads(data)
            except Exception:  # _load decodes it again, to log why it cannot
                pass
        value = self._load(key, full, data, _NOT_FOUND)
        return default if value is _NOT_FOUND else value

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
        full = self._key(key)
        expiry = self._expiry(timeout)
        serializer = self.serializer
        if type(serializer) is not PickleSerializer and _keyed(serializer, "dumps") is not None:
            return self._touch_keyed(key, full, expiry)
        try:
            if expiry:
                return bool(self._writes.call("EXPIRE", full, expiry))
            # PERSIST answers 0 for a key that had no timeout: EXISTS tells whether it is there.
            replies = self._writes.run([("PERSIST", full), ("EXISTS", full)])
        except self._errors as exc:
            return self._fault("touch", exc, False)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        if failure is not None:
            return self._fault("touch", failure, False)
        return bool(replies[1])

    def _touch_keyed(self, key: str, full: str, expiry: int) -> bool:
        for _ in range(3):  # another writer may replace the value between GET and swap
            try:
                data = self._writes.call("GET", full)  # the primary's, not a replica's
            except self._errors as exc:
                return self._fault("touch", exc, False)
            value = self._load(key, full, data, _NOT_FOUND)
            if value is _NOT_FOUND:  # gone, or unreadable (logged): nothing to keep
                return False
            fresh = self._dump(full, value, expiry)
            try:
                swapped = self._writes.call_once("EVAL", _SWAP_SCRIPT, 1, full, data, fresh, expiry)
            except self._errors as exc:
                return self._fault("touch", exc, False)
            if int(swapped) >= 0:
                return bool(int(swapped))
        return True  # it exists, with values newer than this touch

    def inc_existing(self, key: str, delta: int = 1) -> int | None:
        """Atomically add ``delta`` to the integer under ``key``, only if the key exists;
        its timeout is kept. One Lua script (``EVAL``), so a key that expires meanwhile
        is never re-created without a timeout. Needs server-side scripting; on
        ``memory://``, the ``lupa`` package (``pip install fakeredis[lua]``).

        :returns: the new value; None on a backend fault.
        :raises KeyError: ``key`` does not exist.
        :raises TypeError: ``delta`` is not an int, or the stored value is not an
            integer (or the result would overflow 64 bits).
        """
        if type(delta) is not int:
            _check_delta(delta)
        full = self._key(key)
        try:
            reply = self._writes.call("EVAL", _INC_EXISTING_SCRIPT, 1, full, delta)
        except self._errors as exc:
            return self._fault("inc_existing", exc, None)
        if reply is None:
            raise KeyError(key)
        if isinstance(reply, list):  # the script's {error}: INCRBY refused the value
            error = reply[0] if reply else b"refused"
            message = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            raise TypeError(f"cannot add {delta} to the value of {key!r}: {message}")
        return int(reply)

    def ping(self) -> bool:
        """Whether the server answers PING; False on a fault."""
        try:
            return bool(self._write_client.execute_command("PING"))
        except self._errors as exc:
            return self._fault("ping", exc, False)

    def close(self) -> None:
        """Release the client's connections; the cache may still be used (it reconnects)."""
        for client in {id(c): c for c in (self._write_client, self._read_client)}.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
