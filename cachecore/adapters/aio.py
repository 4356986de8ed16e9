"""asyncio transports over redis-py's and valkey-py's asyncio clients (``redis.asyncio``,
``valkey.asyncio``), fakeredis' ``FakeAsyncRedis``, or any client with their API.

* :class:`AsyncClientTransport` sends through the client's public ``execute_command``
  and ``pipeline()``; it serves every client, and whatever watches the client's calls
  sees each one.
* :class:`AsyncPooledTransport` is the fast path for a plain ``redis.asyncio.Redis`` or
  ``valkey.asyncio.Valkey`` of a version it was tested with (the same rules as the
  blocking fast path: :mod:`cachecore.adapters.fast_path`): it takes a connection from
  the client's own pool, writes the command packed by hiredis' or libvalkey's
  ``pack_command`` and reads the bare reply, skipping ``execute_command``'s
  bookkeeping (about 5 us a call on redis-py 8). The pool, its connections (health
  checks, TLS, Sentinel discovery) and the connection's ``retry`` stay the client's.
  Before each call it checks nobody started watching the client since; then that call
  goes through the public API.

Either way the connections' own cancellation handling stays in force: a connection
cancelled while writing a command or reading its reply is disconnected, never handed
to the next caller with a reply still unread.

An asyncio client's connections belong to the event loop that opened them. These
transports notice a new running loop (a second ``asyncio.run``) and a fork: they then
drop the client's connections (never touching the old loop's sockets) and let the client
open new ones. A client used from two running loops at once is refused with a clear
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from cachecore.adapters.fast_path import (
    c_packer,
    encodes_utf8_strictly,
    fast_path_allowed,
    metrics_switch,
    wants_command_name,
)
from cachecore.adapters.libraries import ClientLibrary, describe_client, errors_of, library_of
from cachecore.adapters.retry import ONCE, send_once
from cachecore.transport import AsyncTransport, Command

_forks = [0]
"""Bumped in a forked child: connections opened before the fork are the parent's."""

_running_loop = asyncio.get_running_loop


def _after_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_after_fork)


_parents_connections: list[Any] = []
"""In a forked child, the parent's connection objects, kept alive: closing one (its
finalizer does) would unregister the socket from the event loop's epoll instance,
which the child shares with the parent, and the parent would stop hearing replies."""


def _drop_connections(client: Any, forked: bool = False) -> bool:
    """Forget ``client``'s pooled connections without closing them (they belong to a
    closed loop or to the parent process). False when the client has no such pool."""
    pool = getattr(client, "connection_pool", None)
    reset = getattr(pool, "reset", None)
    if reset is None:
        return False
    if forked:
        _parents_connections.extend(getattr(pool, "_available_connections", ()))
        _parents_connections.extend(getattr(pool, "_in_use_connections", ()))
    reset()
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        _drop_connections(sentinel, forked)
    return True


class AsyncClientTransport:
    """An :class:`~cachecore.transport.AsyncTransport` over an asyncio client with
    redis-py's API.

    :param client: the asyncio client.
    :param reader: the transport for reads (Sentinel replicas); default: this one.
    :param rebuild: builds a fresh client, used when the client cannot simply drop its
        connections on a loop change (a cluster client); None: such a change raises.
    """

    keyslot: Callable[[Any], int] | None = None

    def __init__(
        self,
        client: Any,
        reader: AsyncTransport | None = None,
        rebuild: Callable[[], Any] | None = None,
    ) -> None:
        self.client = client
        self.failures, self.reply_errors, self.errors = errors_of(client)
        self._reader = reader
        self._rebuild = rebuild
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = _forks[0]
        self._guard: AsyncGenerator[None, None] | None = None
        self._abandoning = False

    @property
    def reader(self) -> AsyncTransport:
        return self if self._reader is None else self._reader

    def current_client(self) -> Any:
        """The client, ready for the running event loop (if any): after a loop change
        or a fork, its old connections are dropped first, as before a command."""
        try:
            self._check_loop()
        except RuntimeError as exc:
            if "no running event loop" not in str(exc):
                raise
        return self.client

    def _check_loop(self) -> None:
        loop = _running_loop()
        if loop is not self._loop or self._generation != _forks[0]:
            self._bind(loop)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = self._loop
        forked = self._generation != _forks[0]
        if previous is not None and not forked and previous.is_running():
            raise RuntimeError(
                f"{self.describe()} is in use by another running event loop; "
                "build one cache per event loop"
            )
        if previous is not None:
            # The previous loop is gone without closing the connections (its
            # asyncio.run did, see _loop_guard, unless the loop was closed by hand),
            # or this is a forked child: forget them, never touching their sockets.
            self._abandon_guard()
            self._drop(forked)
        self._loop, self._generation = loop, _forks[0]
        self._start_guard()

    def _drop(self, forked: bool = False) -> None:
        if self._rebuild is not None:
            if forked:
                _parents_connections.append(self.client)
            else:
                _drop_connections(self.client)
            self.client = self._rebuild()
        elif not _drop_connections(self.client, forked):
            raise RuntimeError(
                f"a {type(self.client).__name__} client cannot move to another event loop "
                "or process; build the cache inside the event loop that uses it"
            )

    # An asynchronous generator started in the loop that uses the connections: when
    # asyncio.run() ends, it closes every such generator while the loop still runs,
    # so the connections are closed cleanly there (no "unclosed connection" warnings)
    # and the next loop opens its own.

    async def _loop_guard(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if not self._abandoning:
                await self._disconnect()

    def _start_guard(self) -> None:
        guard = self._guard = self._loop_guard()
        with contextlib.suppress(StopIteration):
            guard.__anext__().send(None)  # runs to the yield: no await before it

    def _abandon_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is None:
            return
        self._abandoning = True
        try:
            with contextlib.suppress(StopIteration, RuntimeError):
                guard.aclose().send(None)
        finally:
            self._abandoning = False

    async def _disconnect(self) -> None:
        for client in self._clients():
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                await pool.disconnect()
            else:
                await client.aclose()

    def _clients(self) -> list[Any]:
        pool = getattr(self.client, "connection_pool", None)
        manager = getattr(pool, "sentinel_manager", None)
        return [self.client, *getattr(manager, "sentinels", ())]

    def send(self, *command: Any) -> Awaitable[Any]:
        # The client's own coroutine, awaited by the caller: no frame of ours on the way.
        loop = _running_loop()
        if loop is not self._loop or self._generation != _forks[0]:
            self._bind(loop)
        awaitable: Awaitable[Any] = self.client.execute_command(*command)
        return awaitable

    async def send_once(self, *command: Any) -> Any:
        loop = _running_loop()  # _check_loop, inlined on this hot path
        if loop is not self._loop or self._generation != _forks[0]:
            self._bind(loop)
        # A client built by cachecore then makes one attempt (see adapters.retry); one
        # built elsewhere retries as its own retry policy says.
        token = ONCE.set(True)
        try:
            return await self.client.execute_command(*command)
        finally:
            ONCE.reset(token)

    async def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        self._check_loop()
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def nodes(self) -> list[AsyncTransport]:
        return [self]

    def describe(self) -> str:
        return describe_client(self.client)

    async def aclose(self) -> None:
        if self._reader is not None:
            await self._reader.aclose()
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._abandon_guard()
            self._drop()  # their connections belong to a loop now gone
            self._loop = None
            return
        for client in self._clients():
            close = getattr(client, "aclose", None) or client.close
            await close()


class AsyncPooledTransport(AsyncClientTransport):
    """The asyncio fast path: commands written onto a connection of the client's pool
    (see the module docstring). Replies are bare, without the client's response
    callbacks (``SET`` answers ``b"OK"``, not True). Built by
    :func:`async_transport_for` only."""

    def __init__(
        self,
        client: Any,
        library: ClientLibrary,
        reader: AsyncTransport | None = None,
        rebuild: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(client, reader, rebuild)
        pool = client.connection_pool
        self.pack = c_packer() if encodes_utf8_strictly(pool) else None
        self.named = wants_command_name(pool)
        # valkey-py's and older redis-py's pools release synchronously.
        self._release_awaits = inspect.iscoroutinefunction(pool.release)
        # Checked per call: instrumentation may arrive after the cache was built.
        self._metrics_on = metrics_switch(library)
        self._client_class = type(client)
        self._own_execute = self._client_class.execute_command
        client_module = importlib.import_module(f"{library.name}.asyncio.client")
        self._pipeline_class = client_module.Pipeline
        self._own_pipeline_execute = self._pipeline_class.execute

    def _watched(self) -> bool:
        """Whether something now watches the client's calls: then use the public API."""
        metrics_on = self._metrics_on
        return self._client_class.execute_command is not self._own_execute or (
            metrics_on is not None and metrics_on()
        )

    async def _connection(self, command_name: Any) -> Any:
        # The client may have been rebuilt after a loop change: its pool, not the first.
        pool = self.client.connection_pool
        if self.named:
            return await pool.get_connection(command_name)
        return await pool.get_connection()

    async def _release(self, connection: Any) -> None:
        released = self.client.connection_pool.release(connection)
        if self._release_awaits:
            await released

    async def send(self, *command: Any) -> Any:
        loop = _running_loop()  # _check_loop, inlined on this hot path
        if loop is not self._loop or self._generation != _forks[0]:
            self._bind(loop)
        if self._watched():
            return await self.client.execute_command(*command)
        connection = await self._connection(command[0])
        try:
            # Retried as the connection's retry says: only idempotent commands come here.
            return await connection.retry.call_with_retry(
                lambda: self._exchange_one(connection, command),
                lambda _error: connection.disconnect(),
            )
        finally:
            await self._release(connection)

    async def send_once(self, *command: Any) -> Any:
        # A failure to *send* is retried as the connection's retry says (the server
        # cannot have received the whole command); a failure while waiting for the
        # reply is raised: the server may have run the command.
        self._check_loop()
        if self._watched():
            return await super().send_once(*command)
        connection = await self._connection(command[0])
        try:
            pack = self.pack
            packed = [pack(command)] if pack is not None else connection.pack_command(*command)
            await connection.retry.call_with_retry(
                lambda: connection.send_packed_command(packed),
                lambda _error: connection.disconnect(),
            )
            return await connection.read_response()  # it disconnects on any failure
        finally:
            await self._release(connection)

    async def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        self._check_loop()
        if self._watched() or self._pipeline_class.execute is not self._own_pipeline_execute:
            return await super().send_batch(commands)
        connection = await self._connection(commands[0][0])
        try:
            replies: list[Any] = await connection.retry.call_with_retry(
                lambda: self._exchange(connection, commands),
                lambda _error: connection.disconnect(),
            )
            return replies
        finally:
            await self._release(connection)

    async def _exchange_one(self, connection: Any, command: Command) -> Any:
        # An error reply is raised once read, so the connection stays in step.
        pack = self.pack
        packed = [pack(command)] if pack is not None else connection.pack_command(*command)
        await connection.send_packed_command(packed)
        return await connection.read_response()

    async def _exchange(self, connection: Any, commands: Sequence[Command]) -> list[Any]:
        pack = self.pack
        if pack is None:
            await connection.send_packed_command(connection.pack_commands(commands))
        else:
            await connection.send_packed_command([b"".join(map(pack, commands))])
        # An error reply is kept as the exception, in its place: the connection stays
        # in step (the replies after it are read too).
        errors = self.reply_errors
        replies: list[Any] = []
        for _ in range(len(commands)):
            try:
                replies.append(await connection.read_response())
            except errors as exc:
                replies.append(exc)
        return replies


class _AsyncClusterNode:
    """One primary of an asyncio cluster client, as a transport for ``clear``."""

    keyslot: Callable[[Any], int] | None = None

    def __init__(self, cluster: AsyncClusterTransport, node: Any) -> None:
        self._cluster = cluster
        self._node = node
        self.client = cluster.client
        self.failures, self.reply_errors, self.errors = (
            cluster.failures,
            cluster.reply_errors,
            cluster.errors,
        )

    @property
    def reader(self) -> AsyncTransport:
        return self

    async def send_once(self, *command: Any) -> Any:
        with send_once():
            return await self.send(*command)

    async def send(self, *command: Any) -> Any:
        # The node's own client: the cluster client would key each reply by node name.
        return await self._node.execute_command(*command)

    async def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        # Used by clear() only (UNLINK of one slot, SCAN): sent one after the other.
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(await self.send(*command))
            except self.reply_errors as exc:
                replies.append(exc)
        return replies

    async def nodes(self) -> list[AsyncTransport]:
        return [self]

    def describe(self) -> str:
        return str(self._node.name)

    async def aclose(self) -> None:
        return None


class AsyncClusterTransport(AsyncClientTransport):
    """An asyncio cluster client (``redis.asyncio.RedisCluster``...): multi-key
    commands are split by slot by the cache (see ``keyslot``).

    A command is sent only once the client holds a slot map. redis-py 8's
    ``RedisCluster.execute_command`` picks its target before reading the map: without
    one (a new client, or after the client closed itself on a topology change) it sends
    a keyed command to an arbitrary primary, which answers MOVED. Every fifth MOVED the
    client closes all its connections, those other tasks are reading replies on too, and
    their commands fail (an ``inc`` then gives its fault value: it is never re-sent).
    """

    def __init__(self, client: Any, rebuild: Callable[[], Any] | None = None) -> None:
        super().__init__(client, rebuild=rebuild)
        self.keyslot = client.keyslot
        self._default_node = self._default_node_of(client)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        super()._bind(loop)
        self.keyslot = self.client.keyslot  # the client may have been rebuilt
        self._default_node = self._default_node_of(self.client)

    @staticmethod
    def _default_node_of(client: Any) -> Callable[[], Any]:
        # redis-py and valkey-py have no default node until they have read the slot
        # map, and none again once they have closed themselves. A client without
        # get_default_node is trusted to route by itself.
        return getattr(client, "get_default_node", None) or (lambda: True)

    async def _send_mapped(self, command: tuple[Any, ...]) -> Any:
        await self.client.initialize()  # concurrent callers wait for one slot-map read
        return await self.client.execute_command(*command)

    def send(self, *command: Any) -> Awaitable[Any]:
        loop = _running_loop()  # _check_loop, inlined on this hot path
        if loop is not self._loop or self._generation != _forks[0]:
            self._bind(loop)
        if self._default_node() is None:
            return self._send_mapped(command)
        awaitable: Awaitable[Any] = self.client.execute_command(*command)
        return awaitable

    async def send_once(self, *command: Any) -> Any:
        self._check_loop()
        if self._default_node() is None:
            await self.client.initialize()
        return await super().send_once(*command)

    async def nodes(self) -> list[AsyncTransport]:
        self._check_loop()
        await self.client.initialize()
        return [_AsyncClusterNode(self, node) for node in self.client.get_primaries()]

    def describe(self) -> str:
        nodes: list[Any] = getattr(self.client, "get_nodes", list)()
        names = ",".join(sorted(str(node.name) for node in nodes)) or "unconnected"
        return f"cluster {names}"


def is_async_cluster_client(client: Any) -> bool:
    """Whether ``client`` routes keys by hash slot (an asyncio cluster client)."""
    return callable(getattr(client, "keyslot", None)) and callable(
        getattr(client, "get_primaries", None)
    )


def async_transport_for(client: Any, rebuild: Callable[[], Any] | None = None) -> AsyncTransport:
    """The transport for an asyncio client with redis-py's API, or ``client`` itself
    when it already is an :class:`~cachecore.transport.AsyncTransport`."""
    if isinstance(client, AsyncTransport):
        return client
    if is_async_cluster_client(client):
        return AsyncClusterTransport(client, rebuild)
    library = library_of(client)
    if library is not None and fast_path_allowed(client, library, asyncio=True):
        return AsyncPooledTransport(client, library, rebuild=rebuild)
    return AsyncClientTransport(client, rebuild=rebuild)
