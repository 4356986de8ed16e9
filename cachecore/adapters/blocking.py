"""Blocking transports over redis-py's and valkey-py's clients (and any client with
their API, such as fakeredis' or a third-party plugin's).

* :class:`ClientTransport` sends through the client's public API:
  ``execute_command`` for one command, ``pipeline()`` for a batch. It serves every
  client; whatever watches the client's calls (a subclass, OpenTelemetry, ddtrace,
  Sentry, redis-py's metrics) sees each one.
* :class:`PooledTransport` is the fast path for a plain redis-py or valkey-py client of
  a version it was tested with (``ClientLibrary.fast_path_versions``): it takes a
  connection from the client's own pool, packs commands with hiredis' or libvalkey's
  ``pack_command`` (C, the same bytes on the wire) and reads the bare replies, skipping
  ``execute_command``'s bookkeeping (about 4 us a call) and the Python-level packer (a
  third of an ``MGET`` of 100 keys). The pool, its connections (health checks, Sentinel
  discovery, TLS) and the connections' ``retry`` stay the client's. Before each call it
  checks nobody started watching the client since (an instrumentation library patching
  ``execute_command`` or ``Pipeline.execute``, redis-py's metrics switched on): then
  that call goes through the public API.
* :class:`ClusterTransport` serves a cluster client: keyed commands go straight to the
  key's node through that node's :class:`PooledTransport` (the client's own slot map
  and node clients; redirections and refused nodes go back to the client's public
  API), and it keeps the live nodes answering a batch when one node refuses connections.

:func:`transport_for` picks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from cachecore.adapters.fast_path import (
    c_packer,
    encodes_utf8_strictly,
    fast_path_allowed,
    metrics_switch,
    pristine,
    wants_command_name,
)
from cachecore.adapters.libraries import ClientLibrary, describe_client, errors_of, library_of
from cachecore.adapters.retry import ONCE
from cachecore.transport import Command, Transport


class ClientTransport:
    """A :class:`~cachecore.transport.Transport` through the client's public API.

    :param client: a client with redis-py's API.
    :param reader: the transport for reads (Sentinel replicas); default: this one.
    """

    keyslot: Callable[[Any], int] | None = None

    def __init__(self, client: Any, reader: Transport | None = None) -> None:
        self.client = client
        self.failures, self.reply_errors, self.errors = errors_of(client)
        self._reader = reader

    @property
    def reader(self) -> Transport:
        return self if self._reader is None else self._reader

    def send(self, *command: Any) -> Any:
        return self.client.execute_command(*command)

    def send_once(self, *command: Any) -> Any:
        # A client built by cachecore then makes one attempt (see adapters.retry); one
        # built elsewhere retries as its own retry policy says.
        token = ONCE.set(True)
        try:
            return self.client.execute_command(*command)
        finally:
            ONCE.reset(token)

    def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))

    def nodes(self) -> list[Transport]:
        return [self]

    def describe(self) -> str:
        return describe_client(self.client)

    def close(self) -> None:
        self.client.close()
        if self._reader is not None:
            self._reader.close()


class PooledTransport(ClientTransport):
    """The fast path: commands written onto a connection of the client's pool (see the
    module docstring). Replies are bare, without the client's response callbacks
    (``SET`` answers ``b"OK"``, not True). Built by :func:`transport_for` only."""

    def __init__(
        self, client: Any, library: ClientLibrary, reader: Transport | None = None
    ) -> None:
        super().__init__(client, reader)
        self.pool = client.connection_pool
        # The C packer encodes str as UTF-8, so a client told to use another encoding
        # keeps its own packer: the keys must be the same bytes either way.
        self.pack = c_packer() if encodes_utf8_strictly(self.pool) else None
        self.named = wants_command_name(self.pool)
        # Checked per call: instrumentation may arrive after the cache was built.
        self._metrics_on = metrics_switch(library)
        self._client_class = type(client)
        self._own_execute = self._client_class.execute_command
        self._pipeline_class = importlib.import_module(f"{library.name}.client").Pipeline
        self._own_pipeline_execute = self._pipeline_class.execute

    def _watched(self) -> bool:
        """Whether something now watches the client's calls: then use the public API."""
        metrics_on = self._metrics_on
        return self._client_class.execute_command is not self._own_execute or (
            metrics_on is not None and metrics_on()
        )

    def send(self, *command: Any) -> Any:
        if self._watched():
            return self.client.execute_command(*command)
        return self._on_connection(
            command[0], lambda connection: self._exchange_one(connection, command)
        )

    def send_once(self, *command: Any) -> Any:
        # A failure to *send* is retried as the connection's retry says (the server
        # cannot have received the whole command); a failure while waiting for the
        # reply is raised: the server may have run the command.
        if self._watched():
            return super().send_once(*command)
        pool = self.pool
        connection = pool.get_connection(command[0]) if self.named else pool.get_connection()
        try:
            pack = self.pack
            packed = [pack(command)] if pack is not None else connection.pack_command(*command)
            connection.retry.call_with_retry(
                lambda: connection.send_packed_command(packed),
                lambda _error: connection.disconnect(),
            )
            return connection.read_response()  # the client's read disconnects on failure
        finally:
            pool.release(connection)

    def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        if self._watched() or self._pipeline_class.execute is not self._own_pipeline_execute:
            return super().send_batch(commands)
        replies: list[Any] = self._on_connection(
            commands[0][0], lambda connection: self._exchange(connection, commands)
        )
        return replies

    def _on_connection(self, command_name: Any, exchange: Callable[[Any], Any]) -> Any:
        pool = self.pool
        connection = pool.get_connection(command_name) if self.named else pool.get_connection()
        try:
            # Retried as the connection's retry says: only idempotent commands come here.
            return connection.retry.call_with_retry(
                lambda: exchange(connection), lambda _error: connection.disconnect()
            )
        finally:
            pool.release(connection)

    def connection(self) -> Any:
        """A connection of the client's pool (give it back with ``pool.release``)."""
        pool = self.pool
        return pool.get_connection("GET") if self.named else pool.get_connection()

    def exchange_once(self, command: Command) -> Any:
        """Send ``command`` and read its reply in one attempt (no retry): for a caller
        that retries on its own (the cluster fast path)."""
        connection = self.connection()
        try:
            return self._exchange_one(connection, command)
        finally:
            self.pool.release(connection)

    def write(self, connection: Any, commands: Sequence[Command]) -> None:
        """Send ``commands`` on ``connection`` in one write (their replies: :meth:`read`)."""
        pack = self.pack
        if pack is None:
            connection.send_packed_command(connection.pack_commands(commands))
        else:
            connection.send_packed_command([b"".join(map(pack, commands))])

    def read(self, connection: Any, count: int) -> list[Any]:
        """Read ``count`` replies from ``connection``; an error reply is kept as the
        exception, in its place, so the connection stays in step."""
        errors = self.reply_errors
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except errors as exc:
                replies.append(exc)
        return replies

    def _exchange_one(self, connection: Any, command: Command) -> Any:
        # send_packed_command takes a list of buffers, one sendall() each. An error
        # reply is raised once read, so the connection stays in step.
        pack = self.pack
        packed = [pack(command)] if pack is not None else connection.pack_command(*command)
        connection.send_packed_command(packed)
        return connection.read_response()

    def _exchange(self, connection: Any, commands: Sequence[Command]) -> list[Any]:
        self.write(connection, commands)
        return self.read(connection, len(commands))


def is_cluster_client(client: Any) -> bool:
    """Whether ``client`` is a cluster client (redis-py's, valkey-py's or alike): it routes
    keys by hash slot and knows the primaries."""
    return callable(getattr(client, "keyslot", None)) and callable(
        getattr(client, "get_primaries", None)
    )


def node_client(cluster: Any, node: Any) -> Any:
    """The standalone client ``cluster`` keeps for its node ``node``."""
    get = getattr(cluster, "get_redis_connection", None) or cluster.get_valkey_connection
    return get(node)


def primary_clients(cluster: Any) -> list[Any]:
    """A client per primary of ``cluster``, after refreshing its slot map (so a primary
    replaced by a failover since the last command is not targeted)."""
    cluster.nodes_manager.initialize()
    return [node_client(cluster, node) for node in cluster.get_primaries()]


KEYED_COMMANDS = frozenset(
    {"GET", "SET", "MGET", "UNLINK", "DEL", "EXISTS", "EXPIRE", "PERSIST", "PTTL", "TTL"}
)
"""The commands the cluster fast path routes itself: their first argument is a key, and
every key of one command is in that key's slot (a command across slots is refused by
the node, and then sent again through the cluster client, which explains)."""


class ClusterTransport(ClientTransport):
    """A cluster client (``RedisCluster``, ``ValkeyCluster``...).

    **Fast path.** For a plain cluster client of a tested library version (see
    :class:`~cachecore.adapters.libraries.ClientLibrary`) that reads from primaries, the
    keyed commands of :data:`KEYED_COMMANDS` skip the cluster client's
    ``execute_command`` and pipeline (routing and bookkeeping in Python, most of a
    cluster call's cost): the key's node comes from the client's own slot map
    (``get_node_from_key``), and the command goes to that node's own client through a
    :class:`PooledTransport`, a batch pipelined to every node at once. One attempt:
    whatever a node answers with a redirection (``MOVED``, ``ASK``, ``TRYAGAIN``,
    ``CLUSTERDOWN``, ``CROSSSLOT``), or a node refusing the connection, is sent again
    through the cluster client's public API, which refreshes its slot map and retries
    as it always does. A timeout is not sent again: a hung node costs one socket
    timeout, and a batch it was part of raises it (as the client's pipeline does).
    ``send_once`` (commands that must not run twice), commands without a key, and
    clients watched by instrumentation always take the public API.

    **Public API.** The cluster client's pipeline gives up on every node when one node
    refuses the connection: then each node gets its share on its own, so the healthy
    nodes still answer (only the dead node's commands fail).
    """

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.keyslot = client.keyslot
        library = library_of(client)
        name = "redis" if library is None else library.name
        exceptions = importlib.import_module(f"{name}.exceptions")
        self._refused: tuple[type[BaseException], ...] = (exceptions.ConnectionError,)
        self._library = library
        self._fast = library is not None and _cluster_fast_path_allowed(client, library)
        if self._fast:
            self._redirects: tuple[type[BaseException], ...] = tuple(
                getattr(exceptions, error)
                for error in ("AskError", "TryAgainError", "ClusterDownError")
            )
            self._client_class = type(client)
            self._own_execute = self._client_class.execute_command
            self._pipeline_class = importlib.import_module(f"{name}.cluster").ClusterPipeline
            self._own_pipeline_execute = self._pipeline_class.execute
            self._node_of_key = client.get_node_from_key
            self._node_transports: dict[str, PooledTransport] = {}

    # -- the fast path ---------------------------------------------------------------------

    def _watched(self) -> bool:
        """Whether something now watches the cluster client's calls."""
        return (
            self._client_class.execute_command is not self._own_execute
            or self._pipeline_class.execute is not self._own_pipeline_execute
        )

    def _node_transport(self, key: Any) -> PooledTransport | None:
        """The fast transport of ``key``'s primary, or None (the public API then).
        Whether its node client is watched is for the caller to check."""
        try:
            node = self._node_of_key(key)
        except self.errors:  # a slot no node covers (yet): the client explains
            return None
        transport = self._node_transports.get(node.name)
        client = node_client(self.client, node)
        if transport is None or transport.client is not client:
            library = self._library
            assert library is not None
            if not fast_path_allowed(client, library):
                return None
            transport = PooledTransport(client, library)
            self._node_transports[node.name] = transport
        return transport

    def _redirected(self, reply: Any) -> bool:
        return isinstance(reply, self._redirects) or (
            isinstance(reply, self.reply_errors) and str(reply).startswith("CROSSSLOT")
        )

    def send(self, *command: Any) -> Any:
        if not self._fast or command[0] not in KEYED_COMMANDS or self._watched():
            return self.client.execute_command(*command)
        node = self._node_transport(command[1])
        if node is None or node._watched():
            return self.client.execute_command(*command)
        try:
            return node.exchange_once(command)
        except self._refused:  # the node is gone: the client refreshes its map
            return self.client.execute_command(*command)
        except self.reply_errors as exc:
            if self._redirected(exc):
                return self.client.execute_command(*command)
            raise

    def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        if not self._fast or self._watched():
            return self._public_batch(commands)
        by_node: dict[int, tuple[PooledTransport, list[int]]] = {}
        keyed = KEYED_COMMANDS
        for index, command in enumerate(commands):
            node = self._node_transport(command[1]) if command[0] in keyed else None
            if node is None:
                return self._public_batch(commands)
            by_node.setdefault(id(node), (node, []))[1].append(index)
        if any(node._watched() for node, _ in by_node.values()):
            return self._public_batch(commands)
        replies: list[Any] = [None] * len(commands)
        again: list[int] = []
        for indexes, results in _exchange_on_nodes(commands, list(by_node.values())):
            for index, result in zip(indexes, results, strict=True):
                if not isinstance(result, BaseException):
                    replies[index] = result
                elif isinstance(result, self._refused) or self._redirected(result):
                    again.append(index)
                elif isinstance(result, self.failures):
                    # A node timed out: the call fails as a whole, as through the
                    # client's pipeline (sending its share again would cost a second
                    # timeout).
                    raise result
                else:
                    replies[index] = result
        if again:
            for index, result in zip(
                again, self._public_batch([commands[i] for i in again]), strict=True
            ):
                replies[index] = result
        return replies

    # -- the public API --------------------------------------------------------------------

    def _public_batch(self, commands: Sequence[Command]) -> list[Any]:
        try:
            return super().send_batch(commands)
        except self._refused:
            return self._node_by_node(commands)

    def _node_by_node(self, commands: Sequence[Command]) -> list[Any]:
        cluster = self.client
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, command in enumerate(commands):
            node = cluster.get_node_from_key(command[1])
            by_node.setdefault(node.name, (node, []))[1].append(index)
        replies: list[Any] = [None] * len(commands)
        for node, indexes in by_node.values():
            try:
                pipe = node_client(cluster, node).pipeline(transaction=False)
                for index in indexes:
                    pipe.execute_command(*commands[index])
                results = list(pipe.execute(raise_on_error=False))
            except self.errors as exc:
                results = [exc] * len(indexes)
            for index, result in zip(indexes, results, strict=True):
                replies[index] = result
        return replies

    def nodes(self) -> list[Transport]:
        return [ClientTransport(client) for client in primary_clients(self.client)]

    def describe(self) -> str:
        return type(self.client).__name__


def _exchange_on_nodes(
    commands: Sequence[Command], nodes: Sequence[tuple[PooledTransport, list[int]]]
) -> list[tuple[list[int], list[Any]]]:
    """Send each node its commands (``commands`` at its indexes), all nodes first, then
    read every reply: about one round trip in all. A node that fails gets its exception
    as the reply of each of its commands; every connection goes back to its pool."""
    held: list[tuple[PooledTransport, Any, list[int]]] = []
    results: list[tuple[list[int], list[Any]]] = []
    try:
        for node, indexes in nodes:
            try:
                connection = node.connection()
            except node.errors as exc:
                results.append((indexes, [exc] * len(indexes)))
                continue
            held.append((node, connection, indexes))
            try:
                node.write(connection, [commands[i] for i in indexes])
            except node.errors as exc:
                held.pop()
                node.pool.release(connection)
                results.append((indexes, [exc] * len(indexes)))
        while held:
            node, connection, indexes = held.pop(0)
            try:
                results.append((indexes, node.read(connection, len(indexes))))
            except node.errors as exc:
                results.append((indexes, [exc] * len(indexes)))
            finally:
                node.pool.release(connection)
    finally:
        for node, connection, _ in held:  # an unexpected error: nothing stays checked out
            connection.disconnect()
            node.pool.release(connection)
    return results


def _cluster_fast_path_allowed(client: Any, library: ClientLibrary) -> bool:
    """A cluster client of ``library`` (a tested version) whose ``execute_command`` is
    the library's own and that reads from primaries only (replica reads are the
    client's own load balancing)."""
    if not library.fast_path_tested():
        return False
    module = importlib.import_module(f"{library.name}.cluster")
    own_class = getattr(module, f"{library.client_class_name}Cluster", None)
    return (
        own_class is not None
        and isinstance(client, own_class)
        and pristine(type(client).execute_command, f"{library.name}.cluster")
        and callable(getattr(client, "get_node_from_key", None))
        and not getattr(client, "read_from_replicas", False)
        and getattr(client, "load_balancing_strategy", None) is None
    )


def library_client(transport: Any) -> Any:
    """The library's client at the bottom of ``transport``, through the wrappers that
    hold an ``inner`` transport (the near cache, the circuit breaker); a client that is
    no transport is returned as is."""
    while hasattr(transport, "inner"):
        transport = transport.inner
    # A transport's client; anything else (a client handed over as is) is returned as is.
    return transport.client if hasattr(transport, "send_batch") else transport


def transport_for(client: Any, reader: Any = None) -> Transport:
    """The transport for a client with redis-py's API, or ``client`` itself when it
    already is a :class:`~cachecore.transport.Transport`.

    :param reader: a client (or transport) for reads; default: ``client``.
    """
    if isinstance(client, Transport):
        return client
    read = None if reader is None else transport_for(reader)
    if is_cluster_client(client):
        return ClusterTransport(client)
    library = library_of(client)
    if library is not None and fast_path_allowed(client, library):
        return PooledTransport(client, library, read)
    return ClientTransport(client, read)
