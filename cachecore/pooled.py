"""Commands written straight onto a redis-py or valkey-py connection pool.

The multi-key calls (``get_many``, ``set_many``, ``delete_many``) spend most of their
client-side time outside the network: ``execute_command``'s bookkeeping, and packing
every argument through the client's Python-level packer (a third of an ``MGET`` of 100
keys). :class:`PooledCommands` takes a connection from the client's own pool, packs the
commands with hiredis' or libvalkey's ``pack_command`` (C, the same bytes on the wire),
and reads the bare replies back. Everything else stays the client's: its pool, its
connections (with their health checks, sentinel discovery and TLS), its ``retry``.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from cachecore import topology

Command = tuple[Any, ...]
Packer = Callable[[Command], bytes]


@functools.cache
def plain_clients() -> tuple[type, ...]:
    """The client classes whose pool may be driven directly: redis-py's and valkey-py's
    own (and subclasses such as fakeredis'), never a wrapper (a circuit breaker, a
    near cache, a tracing proxy) that must see every call."""
    import redis

    classes: list[type] = [redis.Redis]
    try:
        import valkey
    except ImportError:
        pass
    else:
        classes.append(valkey.Valkey)
    return tuple(classes)


@functools.cache
def response_errors() -> tuple[type[BaseException], ...]:
    """The exception types of an error reply (``-ERR ...``), which leaves the connection
    usable, unlike a connection or timeout error."""
    import redis.exceptions

    errors: list[type[BaseException]] = [redis.exceptions.ResponseError]
    try:
        import valkey.exceptions
    except ImportError:
        pass
    else:
        errors.append(valkey.exceptions.ResponseError)
    return tuple(errors)


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


class PooledCommands:
    """Runs commands in one round trip on one connection of a client's pool.

    Build it with :meth:`for_client`, which declines (returns None) every client whose
    calls must go through its own ``execute_command``.
    """

    __slots__ = ("named", "pack", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        # The C packer encodes str as UTF-8, so a client told to use another encoding
        # keeps its own packer: the keys must be the same bytes either way.
        self.pack = c_packer() if _encodes_utf8_strictly(pool) else None
        self.named = _wants_command_name(pool)

    @classmethod
    def for_client(cls, client: Any) -> PooledCommands | None:
        """A runner for ``client``'s pool, or None when ``client`` is a cluster client,
        a single-connection client, a wrapper, or uses client-side caching (whose
        connections answer some reads from local memory)."""
        pool = getattr(client, "connection_pool", None)
        if (
            pool is None
            or not isinstance(client, plain_clients())
            or getattr(client, "connection", None) is not None
            or getattr(pool, "cache", None) is not None
            or topology.is_cluster_client(client)
        ):
            return None
        return cls(pool)

    def run(self, commands: list[Command]) -> list[Any]:
        """Send ``commands`` in one packet and return one reply per command, in order.

        An error reply comes back as its exception, as with the clients'
        ``pipeline().execute(raise_on_error=False)``; a broken connection is retried as
        the client's ``retry`` says (callers send idempotent commands only). Replies are
        bare: no response callbacks (``SET`` answers ``b"OK"``, not True).

        :raises: the client's connection and timeout errors.
        """
        pool = self.pool
        connection = pool.get_connection(commands[0][0]) if self.named else pool.get_connection()
        try:
            replies: list[Any] = connection.retry.call_with_retry(
                lambda: self._send_and_read(connection, commands),
                lambda _error: connection.disconnect(),
            )
            return replies
        finally:
            pool.release(connection)

    def call(self, *args: Any) -> Any:
        """Run one command and return its bare reply.

        :raises: the error reply's exception, or the client's connection errors.
        """
        (reply,) = self.run([args])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _send_and_read(self, connection: Any, commands: list[Command]) -> list[Any]:
        pack = self.pack
        # send_packed_command takes a list of buffers, one sendall() each.
        if pack is None:
            connection.send_packed_command(connection.pack_commands(commands))
        elif len(commands) == 1:
            connection.send_packed_command([pack(commands[0])])
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
