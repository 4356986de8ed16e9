"""Drive an asyncio cache through the blocking cache API, so one set of assertions (the
conformance suite) checks both.

:class:`LoopThread` runs an event loop on a thread of its own; :class:`BlockingBridge`
turns each method of an :class:`~cachecore.aio.AsyncBaseRedisCache` into a blocking
call that runs the coroutine on that loop and waits for it. Calls from several threads
become concurrent tasks on the one loop, as in an asyncio application.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cachecore.aio import AsyncBaseRedisCache

_R = TypeVar("_R")


class LoopThread:
    """An event loop running on a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="cachecore-bridge-loop", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[_R]) -> _R:
        """Run ``awaitable`` on the loop and return its result (or raise its error)."""

        async def wrapper() -> _R:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def close(self) -> None:
        """Finish the loop's async generators, stop it and close it."""
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _BlockingClient:
    """The asyncio client's methods as blocking calls (for raw commands in tests)."""

    def __init__(self, bridge: BlockingBridge, attribute: str) -> None:
        self._bridge = bridge
        self._attribute = attribute  # the cache's "client" or "_write_client"

    def _client(self) -> Any:
        return getattr(self._bridge.cache, self._attribute)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client(), name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                # Looked up on the loop: the transport may swap its client there.
                result = getattr(self._client(), name)(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            return self._bridge.loop.run(run())

        return call


class BlockingBridge:
    """An :class:`~cachecore.aio.AsyncBaseRedisCache` behind the blocking cache API.

    Every cache method (``get``, ``set_many``, ``clear``...) runs its coroutine on
    ``loop``; ``client`` and ``_write_client`` (the library's client beneath any
    wrapper) turn the asyncio client's methods into blocking calls for raw commands.
    Private helpers the conformance suite reads (``_key``, ``_prefix``) are the cache's
    own.
    """

    _METHODS = frozenset(
        {
            "get",
            "get_many",
            "get_dict",
            "set",
            "add",
            "set_many",
            "delete",
            "delete_many",
            "has",
            "clear",
            "inc",
            "dec",
            "ping",
        }
    )

    def __init__(self, cache: AsyncBaseRedisCache, loop: LoopThread) -> None:
        self.cache = cache
        self.loop = loop
        self.client = _BlockingClient(self, "client")
        self._write_client = _BlockingClient(self, "_write_client")

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.cache, name)
        if name not in self._METHODS:
            return attribute
        method: Callable[..., Awaitable[Any]] = attribute
        return lambda *args, **kwargs: self.loop.run(method(*args, **kwargs))

    def __repr__(self) -> str:
        return repr(self.cache)

    def close(self) -> None:
        """Close the asyncio cache's connections, on its loop."""
        self.loop.run(self.cache.aclose())
