"""The near cache: hot values served from process memory, kept coherent by the server.

:class:`NearCacheClient` is a :class:`~cachecore.transport.Transport` that holds another
transport (of a redis-py or valkey-py client on a single server). ``GET`` and ``MGET``
are answered from a bounded LRU of raw stored bytes when possible; everything else
passes through, and every write it passes (``SET``, ``UNLINK``, ``INCRBY``, scripts,
``FLUSHDB``...) drops the keys it touches locally.
Coherence comes from server-assisted invalidation (``CLIENT TRACKING ... BCAST``,
Redis/Valkey/KeyDB 6+): a background thread holds two connections of its own,

* a *listener* subscribed to ``__redis__:invalidate``, and
* a *tracking owner* that turned tracking on with ``REDIRECT <listener id>``, so every
  write to a key under the cache's prefix, by any client, sends the listener its name.

Entries are cached only while both connections are healthy; any error on them (server
restart, network fault, ``CLIENT KILL``) drops every local entry before reconnecting.
The thread checks both at least every :data:`POLL_SECONDS`, whatever traffic the
listener gets: the owner for a close (a killed owner silently ends tracking), the
listener by its own replies, and it PINGs the listener every
:data:`LISTENER_PING_SECONDS`. Local entries are served only while the last PING
answered within :data:`MAX_UNCONFIRMED_SECONDS`, so even a thread that cannot notice a
failure (a stalled network, a starved thread) stops serving them after that bound.
A value fetched while an invalidation for its key arrives is not stored, and each entry
keeps the key's TTL, so an expiring key is never served past its expiry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from cachecore.adapters.blocking import library_client, transport_for
from cachecore.stats import HITS, Counters, NearCacheStats
from cachecore.transport import AsyncTransport, Command, Transport

log = logging.getLogger("cachecore")

INVALIDATE_CHANNEL = b"__redis__:invalidate"
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
POLL_SECONDS = 0.05
"""The longest the invalidation thread waits before checking that the tracking owner
connection is still open (the delay before a ``CLIENT KILL`` of it is noticed)."""
LISTENER_PING_SECONDS = 0.25
"""How often the listener is sent a PING, to confirm the path invalidations take."""
MAX_UNCONFIRMED_SECONDS = 1.0
"""Local entries are served only while the listener answered a PING sent at most this
many seconds ago; otherwise reads go to the server."""

_WRITE_COMMANDS = frozenset({"SET", "UNLINK", "DEL", "INCRBY", "EXPIRE", "PEXPIRE", "GETDEL"})
_FLUSH_COMMANDS = frozenset({"FLUSHDB", "FLUSHALL"})
_SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA"})


def _batch_written_keys(commands: Sequence[Command]) -> list[Any] | None:
    """The keys a batch may write (None: every key, a flush in it)."""
    written: list[Any] = []
    for command in commands:
        keys = _written_keys(command)
        if keys is None:
            return None
        written.extend(keys)
    return written


def _written_keys(command: Command) -> tuple[Any, ...] | None:
    """The keys ``command`` may write (None: every key, a flush); () for a read."""
    name = command[0]
    if name in _WRITE_COMMANDS:
        return command[1:] if name in ("UNLINK", "DEL") else command[1:2]
    if name in _SCRIPT_COMMANDS:  # script, numkeys, keys...: it may write any of them
        return command[3 : 3 + int(command[2])]
    if name in _FLUSH_COMMANDS:
        return None
    return ()


class _NearCache:
    """The local entries and the invalidation thread of a near cache, shared by the
    blocking :class:`NearCacheClient` and the asyncio :class:`AsyncNearCacheClient`
    (which add the sending). Its thread uses blocking connections of
    :meth:`_tracking_client`'s pool."""

    keyslot: Callable[[Any], int] | None = None

    def __init__(self, max_entries: int, prefix: str | None, max_value_bytes: int) -> None:
        if max_entries < 1:
            raise ValueError(f"near_cache_size must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self.max_value_bytes = max_value_bytes
        self._prefix = prefix.encode() if prefix else None
        self._entries: OrderedDict[Any, tuple[bytes | None, float]] = OrderedDict()
        self._pending: dict[Any, object] = {}
        self._lock = threading.Lock()
        self._ready = False
        self._confirmed_at = 0.0
        self._epoch = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.invalidations = 0
        """Invalidation messages received (for tests and monitoring)."""
        self.resets = 0
        """How often every entry was dropped because the tracking connections failed."""
        self.evictions = 0
        """Entries dropped to stay within ``max_entries`` (counted under the lock)."""
        self._counters = Counters()  # local hits, from any thread

    def _tracking_client(self) -> Any:
        """A blocking redis-py or valkey-py client of the server: the invalidation
        thread opens its two connections with its pool's connection class."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._entries)

    def near_cache_stats(self) -> NearCacheStats:
        """Local hits, invalidations, evictions, resets and entries held (read by
        ``cache.stats()``)."""
        return NearCacheStats(
            hits=self._counters.totals().get("hits", 0),
            invalidations=self.invalidations,
            evictions=self.evictions,
            resets=self.resets,
            entries=len(self._entries),
        )

    def _written(self, keys: Sequence[Any] | None) -> None:
        """Forget what a command or batch sent through may have written (None: every
        key, after a flush)."""
        if keys is None:
            self.invalidate_all()
        elif keys:
            self.invalidate(keys)

    def _stop_listening(self) -> None:
        self._stop.set()
        self.invalidate_all()

    # -- the local cache ---------------------------------------------------------------

    def _usable(self) -> bool:
        if self._pid != os.getpid():
            self._after_fork()
        if self._thread is None:
            self._start()
        return self._ready and time.monotonic() - self._confirmed_at < MAX_UNCONFIRMED_SECONDS

    def _local(self, key: Any) -> tuple[bytes | None, float] | None:
        """The live local entry of ``key`` (counted as a hit), or None."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > time.monotonic():
            # KeyError: invalidated meanwhile; the value was still current when read.
            with contextlib.suppress(KeyError):
                self._entries.move_to_end(key)
            self._counters.shard.counts[HITS] += 1
            return entry
        return None

    def _local_many(self, keys: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """(values known locally, None elsewhere; the keys to fetch)."""
        now = time.monotonic()
        values: list[Any] = []
        missing: list[Any] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                values.append(entry[0])
            else:
                values.append(None)
                missing.append(key)
        if len(missing) < len(keys):
            hits = len(keys) - len(missing)  # no call inside an increment (cachecore.stats)
            self._counters.shard.counts[HITS] += hits
        return values, missing

    @staticmethod
    def _merged(keys: Sequence[Any], values: list[Any], fetched: dict[Any, Any]) -> list[Any]:
        return [fetched.get(key, value) for key, value in zip(keys, values, strict=True)]

    @staticmethod
    def _fetch_commands(keys: list[Any]) -> list[Command]:
        # The values and their TTLs, in one round trip: an entry keeps its key's expiry.
        return [("MGET", *keys), *[("PTTL", key) for key in keys]]

    def _fetching(self, keys: list[Any]) -> tuple[object, int]:
        """Mark ``keys`` as in flight: (the fetch's token, the epoch it started in)."""
        token = object()
        with self._lock:
            epoch = self._epoch
            for key in keys:
                self._pending[key] = token
        return token, epoch

    def _fetch_failed(self, keys: list[Any], token: object) -> None:
        with self._lock:
            for key in keys:
                if self._pending.get(key) is token:
                    del self._pending[key]

    def _fetched(self, keys: list[Any], token: object, epoch: int, replies: list[Any]) -> list[Any]:
        """Keep what :meth:`_fetch_commands` read for ``keys`` (unless invalidated while
        in flight); return the values. Raises an error reply found in ``replies``."""
        for reply in replies:
            if isinstance(reply, BaseException):
                self._fetch_failed(keys, token)
                raise reply
        values, *ttls = replies
        now = time.monotonic()
        with self._lock:
            for key, value, ttl in zip(keys, values, ttls, strict=True):
                if self._pending.get(key) is not token:
                    continue  # invalidated while in flight: the value may be stale already
                del self._pending[key]
                if epoch != self._epoch or not self._ready or not self._tracked(key):
                    continue
                if value is not None and len(value) > self.max_value_bytes:
                    continue
                millis = int(ttl)
                if millis == 0:
                    continue  # expiring this very millisecond
                # -1: no expiry; -2: no such key (its creation will be announced).
                deadline = now + millis / 1000 if millis > 0 else float("inf")
                self._entries[key] = (value, deadline)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
        return list(values)

    def _tracked(self, key: Any) -> bool:
        if self._prefix is None:
            return True
        raw = key.encode() if isinstance(key, str) else key
        return bool(raw.startswith(self._prefix))

    def invalidate(self, keys: Iterable[Any]) -> None:
        """Forget ``keys`` locally (str or bytes, as sent)."""
        with self._lock:
            for key in keys:
                for variant in _variants(key):
                    self._entries.pop(variant, None)
                    self._pending.pop(variant, None)

    def invalidate_all(self) -> None:
        """Forget every local entry, and values in flight."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._pending.clear()

    # -- the invalidation thread -------------------------------------------------------

    def _after_fork(self) -> None:
        # The parent's thread and connections do not exist here: start afresh.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._ready = False
        self._thread = None
        self._stop = threading.Event()
        self.invalidate_all()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="cachecore-near-cache", daemon=True
            )
        self._thread.start()

    def _connection(self) -> Any:
        pool = self._tracking_client().connection_pool
        # RESP2 keeps invalidations as plain pub/sub messages; the listener must wait
        # without a socket timeout of its own (can_read bounds each wait).
        kwargs = {**pool.connection_kwargs, "protocol": 2}
        connection = pool.connection_class(**kwargs)
        connection.connect()
        return connection

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            listener = owner = None
            try:
                listener = self._connection()
                listener.send_command("CLIENT", "ID")
                client_id = int(listener.read_response())
                listener.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
                listener.read_response()
                owner = self._connection()
                prefix = ["PREFIX", self._prefix] if self._prefix else []
                owner.send_command(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", *prefix
                )
                owner.read_response()
                self.invalidate_all()
                self._confirmed_at = time.monotonic()
                self._ready = True
                delay = 0.05
                self._listen(listener, owner)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning(
                        "cachecore: near cache invalidation connection failed (%s: %s); "
                        "local entries dropped, reconnecting",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                was_ready, self._ready = self._ready, False
                self.invalidate_all()
                if was_ready:
                    self.resets += 1
                for connection in (listener, owner):
                    if connection is not None:
                        connection.disconnect()
            self._stop.wait(delay)
            delay = min(delay * 2, 1.0)

    def _listen(self, listener: Any, owner: Any) -> None:
        ping_sent: float | None = None  # when the unanswered listener PING was sent
        last_ping = time.monotonic()
        while not self._stop.is_set():
            # The owner never gets a reply it did not ask for: anything readable is the
            # close of a killed owner (whose tracking ended with it).
            if owner.can_read(timeout=0):
                raise ConnectionError("the tracking owner connection was closed")
            now = time.monotonic()
            if ping_sent is None and now - last_ping >= LISTENER_PING_SECONDS:
                listener.send_command("PING")
                ping_sent = last_ping = now
            elif ping_sent is not None and now - ping_sent > MAX_UNCONFIRMED_SECONDS:
                raise TimeoutError("the invalidation listener did not answer a PING")
            if not listener.can_read(timeout=POLL_SECONDS):
                continue
            message = listener.read_response()
            if isinstance(message, list) and message[:1] == [b"pong"]:
                if ping_sent is not None:
                    self._confirmed_at, ping_sent = ping_sent, None
                continue
            if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
                continue
            self.invalidations += 1
            keys = message[2]
            if keys is None:
                self.invalidate_all()
            else:
                self.invalidate(keys if isinstance(keys, list) else [keys])


class NearCacheClient(_NearCache):
    """A transport with a coherent in-process cache in front of ``GET``/``MGET``.

    It is also the cache's ``client``: :meth:`execute_command` sends a command of your
    own through it (a ``GET`` may be answered locally).

    :param inner: the transport to put the near cache in front of, or a redis-py or
        valkey-py client, on a single server (not a cluster).
    :param max_entries: the LRU's size limit, in keys.
    :param prefix: only keys under this prefix are tracked and cached locally
        (``None``: every key).
    :param max_value_bytes: larger values are not kept locally.
    :raises ValueError: ``max_entries`` < 1.
    """

    def __init__(
        self,
        inner: Any,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        prefix: str | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        super().__init__(max_entries, prefix, max_value_bytes)
        self.inner: Transport = transport_for(inner)
        self.client = self
        self.failures = self.inner.failures
        self.reply_errors = self.inner.reply_errors
        self.errors = self.inner.errors

    def _tracking_client(self) -> Any:
        return library_client(self.inner)

    @property
    def reader(self) -> Transport:
        return self

    def send(self, *command: Any) -> Any:
        """Send one command, answering ``GET``/``MGET`` locally where the value is known."""
        name = command[0]
        if name == "GET" and self._usable():
            entry = self._local(command[1])
            return entry[0] if entry is not None else self._fetch([command[1]])[0]
        if name == "MGET" and self._usable():
            keys = command[1:]
            values, missing = self._local_many(keys)
            if not missing:
                return values
            fetched = dict(zip(missing, self._fetch(missing), strict=True))
            return self._merged(keys, values, fetched)
        return self._pass(self.inner.send, command)

    def send_once(self, *command: Any) -> Any:
        return self._pass(self.inner.send_once, command)

    def _pass(self, send: Callable[..., Any], command: Command) -> Any:
        written = _written_keys(command)
        if written == ():
            return send(*command)
        try:
            return send(*command)
        finally:
            self._written(written)

    def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        written = _batch_written_keys(commands)
        try:
            return self.inner.send_batch(commands)
        finally:
            self._written(written)

    def _fetch(self, keys: list[Any]) -> list[Any]:
        token, epoch = self._fetching(keys)
        try:
            replies = self.inner.send_batch(self._fetch_commands(keys))
        except BaseException:
            self._fetch_failed(keys, token)
            raise
        return self._fetched(keys, token, epoch, replies)

    def nodes(self) -> list[Transport]:
        return [self]

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        """Stop the invalidation thread, drop local entries, close the inner transport."""
        self._stop_listening()
        self.inner.close()

    def execute_command(self, *args: Any) -> Any:
        """Run a command of your own (bare reply); ``GET``/``MGET`` may be answered
        locally."""
        return self.send(*args)


class AsyncNearCacheClient(_NearCache):
    """The asyncio twin of :class:`NearCacheClient`: an
    :class:`~cachecore.transport.AsyncTransport` with the same coherent in-process cache
    in front of ``GET``/``MGET`` (a local hit costs no ``await`` of the server). The
    invalidation thread is the same, on blocking connections of ``tracking_client``.

    :param inner: the asyncio transport (or ``redis.asyncio`` / ``valkey.asyncio``
        client) to put the near cache in front of, on a single server.
    :param tracking_client: a blocking redis-py or valkey-py client of the same server
        (its pool's connection settings open the invalidation connections).
    :param max_entries: see :class:`NearCacheClient`; so are ``prefix`` and
        ``max_value_bytes``.
    :raises ValueError: ``max_entries`` < 1.
    """

    def __init__(
        self,
        inner: Any,
        tracking_client: Any,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        prefix: str | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        from cachecore.adapters.aio import async_transport_for

        super().__init__(max_entries, prefix, max_value_bytes)
        self.inner: AsyncTransport = async_transport_for(inner)
        self.client = self
        self.failures = self.inner.failures
        self.reply_errors = self.inner.reply_errors
        self.errors = self.inner.errors
        self._tracking = tracking_client

    def _tracking_client(self) -> Any:
        return self._tracking

    @property
    def reader(self) -> AsyncTransport:
        return self

    async def send(self, *command: Any) -> Any:
        """Send one command, answering ``GET``/``MGET`` locally where the value is known."""
        name = command[0]
        if name == "GET" and self._usable():
            entry = self._local(command[1])
            return entry[0] if entry is not None else (await self._fetch([command[1]]))[0]
        if name == "MGET" and self._usable():
            keys = command[1:]
            values, missing = self._local_many(keys)
            if not missing:
                return values
            fetched = dict(zip(missing, await self._fetch(missing), strict=True))
            return self._merged(keys, values, fetched)
        return await self._pass(self.inner.send, command)

    async def send_once(self, *command: Any) -> Any:
        return await self._pass(self.inner.send_once, command)

    async def _pass(self, send: Callable[..., Awaitable[Any]], command: Command) -> Any:
        written = _written_keys(command)
        if written == ():
            return await send(*command)
        try:
            return await send(*command)
        finally:
            self._written(written)

    async def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        written = _batch_written_keys(commands)
        try:
            return await self.inner.send_batch(commands)
        finally:
            self._written(written)

    async def _fetch(self, keys: list[Any]) -> list[Any]:
        token, epoch = self._fetching(keys)
        try:
            replies = await self.inner.send_batch(self._fetch_commands(keys))
        except BaseException:  # cancellation included: nothing stays marked in flight
            self._fetch_failed(keys, token)
            raise
        return self._fetched(keys, token, epoch, replies)

    async def nodes(self) -> list[AsyncTransport]:
        return [self]

    def describe(self) -> str:
        return self.inner.describe()

    async def aclose(self) -> None:
        """Stop the invalidation thread, drop local entries, close the inner transport."""
        self._stop_listening()
        await self.inner.aclose()

    async def execute_command(self, *args: Any) -> Any:
        """Run a command of your own (bare reply); ``GET``/``MGET`` may be answered
        locally."""
        return await self.send(*args)


def _variants(key: Any) -> tuple[Any, ...]:
    # Commands carry str keys; invalidation messages carry bytes: drop both spellings.
    if isinstance(key, bytes):
        try:
            return (key, key.decode())
        except UnicodeDecodeError:
            return (key,)
    return (key, key.encode())
