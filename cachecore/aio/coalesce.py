"""Merging concurrent ``get`` calls of one asyncio cache into one ``MGET``.

While one ``get`` of the cache is on its way to the server, further ``get`` calls on the
same event loop do not each send a ``GET``: they join a batch, sent as one ``MGET`` at
the loop's next turn (so every call made in the same turn lands in it). A lone ``get``
is sent at once, as without batching.

The ``MGET`` runs in a task of its own, so a caller cancelled while waiting only drops
its own result: the batch, its connection and the other callers' replies are untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

MAX_BATCH = 1000
"""Keys per ``MGET`` at most: more concurrent calls make more batches, so one ``MGET``
never holds the server (or the connection) for long."""


class GetBatches:
    """The batching state of one cache on one event loop.

    :param loop: the event loop the state (and its futures and tasks) belongs to.
    :param send: the read transport's ``send`` (a coroutine per command).
    """

    __slots__ = ("_keys", "_send", "_tasks", "_waiters", "busy", "loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, send: Callable[..., Awaitable[Any]]
    ) -> None:
        self.loop = loop
        self.busy = 0
        """Reads of the cache on their way (single ``GET``s and batches, sent or not):
        while any is, a new ``get`` joins a batch."""
        self._send = send
        self._keys: list[Any] = []
        self._waiters: list[asyncio.Future[Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, key: Any) -> asyncio.Future[Any]:
        """A future for the stored bytes of the prefixed ``key`` (None for a miss), read
        by the next ``MGET``; it raises what the ``MGET`` raised."""
        waiter = self.loop.create_future()
        if len(self._waiters) >= MAX_BATCH:  # full: it goes as it is, a new one starts
            self._keys, self._waiters = [], []
        if not self._waiters:  # the first of a new batch: send it at the loop's next turn
            self.busy += 1
            task = self.loop.create_task(self._flush(self._keys, self._waiters))
            self._tasks.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)
        self._keys.append(key)
        self._waiters.append(waiter)
        return waiter

    async def _flush(self, keys: list[Any], waiters: list[asyncio.Future[Any]]) -> None:
        if waiters is self._waiters:  # later calls start the next batch
            self._keys, self._waiters = [], []
        try:
            if any(waiter.done() for waiter in waiters):  # callers cancelled before sending
                kept = [(k, w) for k, w in zip(keys, waiters, strict=True) if not w.done()]
                keys, waiters = [k for k, _ in kept], [w for _, w in kept]
                if not keys:
                    return
            try:
                replies = await self._send("MGET", *keys)
                if len(replies) != len(waiters):
                    raise RuntimeError(
                        f"MGET of {len(waiters)} keys answered {len(replies)} values"
                    )
            except asyncio.CancelledError:  # the loop is shutting down
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as exc:  # each caller reports it (fault value, warning, raise)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                        # Marked seen: a caller cancelled before it wakes must not make
                        # asyncio log "exception was never retrieved"; await still raises.
                        waiter.exception()
                return
            for waiter, reply in zip(waiters, replies, strict=True):
                if not waiter.done():  # a caller cancelled meanwhile drops only its own
                    waiter.set_result(reply)
        finally:
            self.busy -= 1
