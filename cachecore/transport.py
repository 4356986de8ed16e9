"""The seam between the cache and a client library: what a cache needs to talk to a server.

The cache classes (:class:`~cachecore.BaseRedisCache` and
:class:`~cachecore.aio.AsyncBaseRedisCache`) own the protocol: key prefixes,
serialization, timeouts, fault values and warnings. Below them sits a *transport*, one
small typed object per client library (see :mod:`cachecore.adapters`): it sends
commands and reads replies, and says which of its errors mean what. A wrapper that adds
behaviour (the circuit breaker, the near cache) is a transport holding a transport.

Replies are the server's, as the client library returns them: bytes for strings, ints,
lists; ``SET`` may answer ``True`` or ``b"OK"``. A command's error reply (``-ERR``,
``WRONGTYPE``...) is raised as an exception of :attr:`Transport.reply_errors` by
:meth:`Transport.send`, and returned in place of that reply by
:meth:`Transport.send_batch`.

Errors, in two kinds:

* :attr:`Transport.failures`: the server could not be reached or did not answer
  (refused or broken connection, timeout): the call's outcome is unknown;
* :attr:`Transport.reply_errors`: the server answered, with an error; the connection
  is fine.

Both are in :attr:`Transport.errors`, which the cache turns into its fault values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

Command: TypeAlias = tuple[Any, ...]
"""One command and its arguments: ``("SET", "key", b"value", "EX", 60)``."""

Errors: TypeAlias = tuple[type[BaseException], ...]


@runtime_checkable
class Transport(Protocol):
    """A blocking transport: how :class:`~cachecore.BaseRedisCache` talks to a server.

    ``keyslot`` is set on a cluster transport (the hash slot of a key, for splitting
    multi-key commands by slot), None otherwise. ``reader`` is the transport for reads
    (``get``, ``get_many``, ``has``): itself, or one on replicas (Sentinel).
    """

    client: Any
    """The library's client underneath, for commands the cache API lacks."""
    failures: Errors
    reply_errors: Errors
    errors: Errors
    keyslot: Callable[[Any], int] | None

    @property
    def reader(self) -> Transport: ...

    def send(self, *command: Any) -> Any:
        """Send one idempotent command and return its reply; may be retried on a
        broken connection as the client's retry policy says.

        :raises: an exception of :attr:`errors` (error reply or failure).
        """
        ...

    def send_once(self, *command: Any) -> Any:
        """Send one command that must not run twice (``INCRBY``, ``SET NX``, ``UNLINK``
        whose count matters): never re-sent once it may have reached the server."""
        ...

    def send_batch(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one round trip (no transaction), one reply each in
        order; an error reply comes back as its exception. On a cluster each command's
        keys share a slot, and the commands of a node that failed come back as that
        node's exception.

        :raises: an exception of :attr:`failures` when nothing could be sent.
        """
        ...

    def nodes(self) -> list[Transport]:
        """One transport per primary (a cluster's, after refreshing its slot map), or
        ``[self]``; for commands that act on a whole server (``FLUSHDB``, ``SCAN``)."""
        ...

    def describe(self) -> str:
        """Where it connects, for ``repr`` and warnings: never a password."""
        ...

    def close(self) -> None:
        """Release every connection (the transport may still be used: it reconnects)."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """The asyncio counterpart of :class:`Transport`: the same members, with the
    sending methods, :meth:`nodes` and :meth:`aclose` returning awaitables (``async
    def`` methods, or plain ones handing back the client's own coroutine)."""

    client: Any
    failures: Errors
    reply_errors: Errors
    errors: Errors
    keyslot: Callable[[Any], int] | None

    @property
    def reader(self) -> AsyncTransport: ...

    def send(self, *command: Any) -> Awaitable[Any]:
        """See :meth:`Transport.send`."""
        ...

    def send_once(self, *command: Any) -> Awaitable[Any]:
        """See :meth:`Transport.send_once`."""
        ...

    def send_batch(self, commands: Sequence[Command]) -> Awaitable[list[Any]]:
        """See :meth:`Transport.send_batch`."""
        ...

    def nodes(self) -> Awaitable[list[AsyncTransport]]:
        """See :meth:`Transport.nodes`."""
        ...

    def describe(self) -> str:
        """See :meth:`Transport.describe`."""
        ...

    def aclose(self) -> Awaitable[None]:
        """Close every connection; the transport may still be used (it reconnects)."""
        ...
