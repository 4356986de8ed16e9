"""Sending a command once: the client libraries' ``Retry`` taught to skip its retries.

A client's ``retry`` (cachecore's default: one immediate retry on a broken connection)
re-sends a command whose connection failed. That is only safe when running it twice
means the same as running it once: not for ``INCRBY``, ``SET NX`` or the ``UNLINK`` of
``delete``. Those are sent inside :func:`send_once`; a client whose ``retry`` comes
from :func:`retry_class` (every client cachecore builds, blocking or asyncio, cluster
clients included) then makes one attempt.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

_SEND_ONCE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cachecore_send_once", default=False
)


ONCE = _SEND_ONCE
"""The context variable itself, for the adapters' hot paths (``ONCE.set(True)`` /
``ONCE.reset(token)`` cost less than entering :func:`send_once`)."""


@contextlib.contextmanager
def send_once() -> Iterator[None]:
    """Within this block (this thread or asyncio task), a client whose ``retry`` comes
    from :func:`retry_class` makes one attempt per command: no retry on a broken
    connection, and no cluster-level retry after a slot-map refresh."""
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
    """``base`` (a ``Retry`` class of redis-py or valkey-py, blocking or asyncio) made to
    obey :func:`send_once`: inside it, ``call_with_retry`` makes one attempt (a failure
    still runs the failure callback, which disconnects) and ``get_retries()`` is 0,
    which the cluster clients read for their own retries."""

    def call_with_retry(self: Any, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        if _SEND_ONCE.get():
            single = self.__dict__.get("_cachecore_once")
            if single is None:  # a policy of no retries, made once per Retry
                single = self._cachecore_once = base(self._backoff, 0, self._supported_errors)
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
