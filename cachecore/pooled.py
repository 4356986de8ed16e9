"""How the cache sends its commands: through the client, or straight onto its pool.

A cache call spends much of its client-side time outside the network: in
``execute_command``'s bookkeeping (about 4 us a call on redis-py), and, for the
multi-key calls, in packing every argument through the client's Python-level packer (a
third of an ``MGET`` of 100 keys). :class:`PooledCommands` takes a connection from the
client's own pool, packs the commands with hiredis' or libvalkey's ``pack_command`` (C,
the same bytes on the wire), and reads the bare replies back. Everything else stays the
client's: its pool, its connections (with their health checks, sentinel discovery and
TLS), its ``retry``.

Where something watches the client's calls (a subclass or an instrumentation library
wrapping ``execute_command``, redis-py's own OpenTelemetry metrics, redis-py's
client-side cache) or the client is not a plain pooled one, :class:`ClientCommands`
sends through the client's ``execute_command`` and ``pipeline()`` instead;
:class:`ClusterCommands` does so for a cluster client, and keeps the live nodes
answering when one node refuses connections. :func:`commands_for` picks.

Retries. The client's ``retry`` (cachecore's default: one immediate retry on a broken
connection) re-sends a command whose connection failed, which is only safe when running
it twice means the same as running it once. Each class therefore has two ways to send
one command: :meth:`~ClientCommands.call` (retried: reads, plain ``SET``, ``UNLINK`` of
``delete_many``) and :meth:`~ClientCommands.call_once` (``INCRBY``, ``SET NX``, the
``UNLINK`` of ``delete``, whose answers change when run twice): once the command may have
reached the server, a broken connection is raised, never retried, because the server may
have executed it and only its reply was lost.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

Command = tuple[Any, ...]
Packer = Callable[[Command], bytes]

_SEND_ONCE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cachecore_send_once", default=False
)


@contextlib.contextmanager
def send_once() -> Iterator[None]:
    """Within this block, a client whose ``retry`` comes from :func:`retry_class` (every
    client cachecore builds, cluster clients included) makes one attempt per command:
    no retry on a broken connection, and no cluster-level retry after a slot-map refresh."""
    token = _SEND_ONCE.set(True)
    try:
        yield
    finally:
        _SEND_ONCE.reset(token)


def sending_once() -> bool:
    """Whether the caller is inside :func:`send_once`."""
    return _SEND_ONCE.get()


@functools.cache
def retry_class(base: type[Any]) -> type[Any]:
    """``base`` (redis-py's or valkey-py's ``Retry``) made to obey :func:`send_once`:
    inside it, ``call_with_retry`` makes one attempt (a failure still runs the failure
    callback, which disconnects) and ``get_retries()`` is 0, which redis-py's cluster
    client reads for its own retries."""

    def call_with_retry(self: Any, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        if _SEND_ONCE.get():
            single = base(self._backoff, 0, self._supported_errors)
            return single.call_with_retry(do, fail, *args, **kwargs)
        return base.call_with_retry(self, do, fail, *args, **kwargs)

    def get_retries(self: Any) -> int:
        return 0 if _SEND_ONCE.get() else int(base.get_retries(self))

    namespace = {
        "call_with_retry": call_with_retry,
        "get_retries": get_retries,
        "__module__": __name__,
        "__doc__": retry_class.__doc__,
    }
    return type(f"SendOnce{base.__name__}", (base,), namespace)


@functools.cache
def plain_clients() -> dict[type, str]:
    """redis-py's and valkey-py's client classes, each with the module that defines
    its own ``execute_command``."""
    import redis

    classes: dict[type, str] = {redis.Redis: "redis.client"}
    try:
        import valkey
    except ImportError:
        pass
    else:
        classes[valkey.Valkey] = "valkey.client"
    return classes


def _in_both_libraries(name: str) -> tuple[type[BaseException], ...]:
    """redis-py's exception class ``name``, and valkey-py's when it is installed."""
    import redis.exceptions

    found: list[type[BaseException]] = [getattr(redis.exceptions, name)]
    try:
        import valkey.exceptions
    except ImportError:
        pass
    else:
        found.append(getattr(valkey.exceptions, name))
    return tuple(found)


@functools.cache
def response_errors() -> tuple[type[BaseException], ...]:
    """The exception types of an error reply (``-ERR ...``), which leaves the connection
    usable, unlike a connection or timeout error."""
    return _in_both_libraries("ResponseError")


@functools.cache
def connection_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a refused or broken connection (not a timeout)."""
    return _in_both_libraries("ConnectionError")


@functools.cache
def c_packer() -> Packer | None:
    """hiredis' or libvalkey's ``pack_command`` (either packs str as UTF-8), or None
    when neither is installed."""
    for name in ("hiredis", "libvalkey"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        pack: Packer | None = getattr(module, "pack_command", None)
        if pack is not None:
            return pack
    return None


def _redis_py_metrics_switch() -> Callable[[], bool] | None:
    """redis-py 8's "are OpenTelemetry metrics on" check, or None before redis-py 8."""
    try:
        from redis.observability.providers import get_observability_instance
    except ImportError:
        return None
    is_enabled: Callable[[], bool] = get_observability_instance().is_enabled
    return is_enabled


def _wants_command_name(pool: Any) -> bool:
    # valkey-py's get_connection (and redis-py's before 5.3) requires a command name;
    # redis-py 5.3+ takes none and warns about one.
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def _encodes_utf8_strictly(pool: Any) -> bool:
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    try:
        encoding = codecs.lookup(kwargs.get("encoding", "utf-8")).name
    except LookupError:
        return False
    return encoding == "utf-8" and kwargs.get("encoding_errors", "strict") == "strict"


def _own_execute_command(client: Any) -> bool:
    """Whether ``client`` is a redis-py or valkey-py client whose ``execute_command`` is
    the library's own: not overridden by a subclass, not wrapped by an instrumentation
    library (OpenTelemetry, ddtrace and Sentry patch it on the class)."""
    module = next((m for cls, m in plain_clients().items() if isinstance(client, cls)), None)
    method = getattr(type(client), "execute_command", None)
    return (
        module is not None
        and getattr(method, "__module__", None) == module
        and not hasattr(method, "__wrapped__")
    )


class ClientCommands:
    """Sends through the client: ``execute_command`` for one command, ``pipeline()``
    (without a transaction) for several."""

    __slots__ = ("client",)

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, *args: Any) -> Any:
        """Run one command and return its reply.

        :raises: the error reply's exception, or the client's connection errors.
        """
        return self.client.execute_command(*args)

    def call_once(self, *args: Any) -> Any:
        """Run one command that must not run twice, and return its reply.

        A client built by cachecore (its ``retry`` from :func:`retry_class`) makes one
        attempt. A client built elsewhere retries as its own ``retry`` says: cachecore
        cannot stop that through ``execute_command``.

        :raises: the error reply's exception, or the client's connection errors.
        """
        with send_once():
            return self.client.execute_command(*args)

    def run(self, commands: list[Command]) -> list[Any]:
        """Run ``commands`` in one round trip and return one reply per command, in
        order; an error reply comes back as its exception.

        :raises: the client's connection and timeout errors.
        """
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))


class ClusterCommands(ClientCommands):
    """Sends through a cluster client, whose pipeline gives up on every node when one
    node refuses the connection: then each node gets its share on its own, so the
    healthy nodes still answer (only the dead node's commands fail). A timeout is not
    retried that way: a hung node would cost a second timeout."""

    __slots__ = ()

    def run(self, commands: list[Command]) -> list[Any]:
        """As :meth:`ClientCommands.run`; each command's keys must share a hash slot.
        A command sent to a node that failed comes back as that node's exception."""
        try:
            return super().run(commands)
        except connection_errors():
            return self._node_by_node(commands)

    def _node_by_node(self, commands: list[Command]) -> list[Any]:
        from cachecore.redis_base import client_errors
        from cachecore.topology import node_client

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
            except client_errors() as exc:
                results = [exc] * len(indexes)
            for index, result in zip(indexes, results, strict=True):
                replies[index] = result
        return replies


class PooledCommands(ClientCommands):
    """Sends on one connection of the client's pool, packed in C where the client
    encodes as UTF-8. Replies are bare: no response callbacks (``SET`` answers
    ``b"OK"``, not True)."""

    __slots__ = ("metrics_on", "named", "pack", "pool")

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.pool = client.connection_pool
        # The C packer encodes str as UTF-8, so a client told to use another encoding
        # keeps its own packer: the keys must be the same bytes either way.
        self.pack = c_packer() if _encodes_utf8_strictly(self.pool) else None
        self.named = _wants_command_name(self.pool)
        # Checked per call: metrics may be switched on after the cache was built.
        self.metrics_on = _redis_py_metrics_switch() if _is_redis_py(client) else None

    def call(self, *args: Any) -> Any:
        if self.metrics_on is not None and self.metrics_on():
            return super().call(*args)
        return self._on_connection(args[0], lambda connection: self._exchange_one(connection, args))

    def call_once(self, *args: Any) -> Any:
        """As :meth:`ClientCommands.call_once`, whatever the client's ``retry``: a failure
        to *send* is retried as the client's ``retry`` says (the server cannot have
        received the whole command), a failure while waiting for the reply is raised."""
        if self.metrics_on is not None and self.metrics_on():
            return super().call_once(*args)
        pool = self.pool
        connection = pool.get_connection(args[0]) if self.named else pool.get_connection()
        try:
            pack = self.pack
            packed = [pack(args)] if pack is not None else connection.pack_command(*args)
            connection.retry.call_with_retry(
                lambda: connection.send_packed_command(packed),
                lambda _error: connection.disconnect(),
            )
            # A failure here is not retried: the client's read disconnects on it.
            return connection.read_response()
        finally:
            pool.release(connection)

    def run(self, commands: list[Command]) -> list[Any]:
        if self.metrics_on is not None and self.metrics_on():
            return super().run(commands)
        replies: list[Any] = self._on_connection(
            commands[0][0], lambda connection: self._exchange(connection, commands)
        )
        return replies

    def _on_connection(self, command_name: Any, exchange: Callable[[Any], Any]) -> Any:
        pool = self.pool
        connection = pool.get_connection(command_name) if self.named else pool.get_connection()
        try:
            # Retried as the client's retry says: callers send idempotent commands only
            # here (see call_once).
            return connection.retry.call_with_retry(
                lambda: exchange(connection), lambda _error: connection.disconnect()
            )
        finally:
            pool.release(connection)

    def _exchange_one(self, connection: Any, command: Command) -> Any:
        # send_packed_command takes a list of buffers, one sendall() each. An error
        # reply is raised once read, so the connection stays in step.
        pack = self.pack
        packed = [pack(command)] if pack is not None else connection.pack_command(*command)
        connection.send_packed_command(packed)
        return connection.read_response()

    def _exchange(self, connection: Any, commands: list[Command]) -> list[Any]:
        pack = self.pack
        if pack is None:
            connection.send_packed_command(connection.pack_commands(commands))
        else:
            connection.send_packed_command([b"".join(map(pack, commands))])
        errors = response_errors()
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except errors as exc:
                # Read on: every command has a reply, and the connection stays in step.
                replies.append(exc)
        return replies


def _is_redis_py(client: Any) -> bool:
    import redis

    return isinstance(client, redis.Redis)


def commands_for(client: Any, cluster: bool) -> ClientCommands:
    """How to send ``client``'s commands: :class:`PooledCommands` for a plain redis-py
    or valkey-py client with a connection pool; :class:`ClusterCommands` for a cluster
    client (see ``BaseRedisCache._per_slot``); :class:`ClientCommands` for a
    single-connection client, any wrapper
    or subclass with its own ``execute_command``, an instrumented client class, and
    redis-py's client-side caching (whose connections answer some reads locally)."""
    if cluster:
        return ClusterCommands(client)
    pool = getattr(client, "connection_pool", None)
    if (
        pool is None
        or not _own_execute_command(client)
        or getattr(client, "connection", None) is not None
        or getattr(pool, "cache", None) is not None
    ):
        return ClientCommands(client)
    return PooledCommands(client)
