"""A circuit breaker in front of a transport, so an outage does not cost every call a timeout.

:class:`CircuitBreakerClient` is a :class:`~cachecore.transport.Transport` that holds
another transport. After ``threshold`` consecutive failures of the server to answer
(refused or broken connection, timeout: the inner transport's ``failures``) it *opens*:
calls fail at once with :class:`CircuitOpenError` (a ``ConnectionError``, so the cache
returns its fault value and logs it) for ``reset_timeout`` seconds. Then it is
*half-open*: one call goes through as a trial while the others still fail fast; success
*closes* it, failure opens it again. Replies that are errors (``WRONGTYPE``, ``OOM``,
``LOADING``...: the inner transport's ``reply_errors``) are the server answering: they
never trip it, although the client libraries make ``LOADING`` a connection error.

``from_url(..., circuit_breaker=true)`` builds one; by hand::

    transport = CircuitBreakerClient(redis.Redis(...), threshold=5, reset_timeout=5.0)
    cache = BaseRedisCache(transport)
    cache.client.state          # "closed", "open" or "half-open"
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from cachecore.adapters.blocking import transport_for
from cachecore.errors import ConfigurationError
from cachecore.transport import AsyncTransport, Command, Transport

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

_T = TypeVar("_T")


class CircuitOpenError(ConnectionError):
    """The circuit is open: the call was not sent to the server."""


class CircuitBreaker:
    """The breaker's state, shared by the transports it guards (a Sentinel cache's
    primary and replica transports trip together).

    :param threshold: consecutive failures that open the circuit.
    :param reset_timeout: seconds the circuit stays open before a trial call.
    """

    def __init__(self, threshold: int = 5, reset_timeout: float = 5.0) -> None:
        if threshold < 1:
            raise ConfigurationError(f"circuit_breaker_threshold must be >= 1, got {threshold}")
        if reset_timeout <= 0:
            raise ConfigurationError(f"circuit_breaker_reset must be > 0, got {reset_timeout}")
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self._state = CLOSED
        self._lock = threading.Lock()
        self.transitions = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}
        """How often the breaker entered each state (changed under its lock)."""

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (open past its reset timeout)."""
        with self._lock:
            if self._state == OPEN and time.monotonic() - self._opened_at >= self.reset_timeout:
                return HALF_OPEN
            return self._state

    def call(
        self,
        function: Callable[[], _T],
        failures: tuple[type[BaseException], ...],
        answers: tuple[type[BaseException], ...],
    ) -> _T:
        """Run ``function`` (which talks to the server) through the breaker: an exception
        of ``answers`` is the server answering; one of ``failures`` counts against it.

        :raises CircuitOpenError: the circuit is open; ``function`` did not run.
        """
        trial = self._admit()
        try:
            result = function()
        except BaseException as exc:
            self._settle(trial, exc, failures, answers)
            raise
        self._record_success(trial)
        return result

    async def acall(
        self,
        function: Callable[[], Awaitable[_T]],
        failures: tuple[type[BaseException], ...],
        answers: tuple[type[BaseException], ...],
    ) -> _T:
        """:meth:`call` for a coroutine function (asyncio transports). A cancelled call
        counts neither way."""
        trial = self._admit()
        try:
            result = await function()
        except BaseException as exc:
            self._settle(trial, exc, failures, answers)
            raise
        self._record_success(trial)
        return result

    def _settle(
        self,
        trial: bool,
        exc: BaseException,
        failures: tuple[type[BaseException], ...],
        answers: tuple[type[BaseException], ...],
    ) -> None:
        """Count the call that raised ``exc`` (the one outcome rule of both drivers)."""
        if isinstance(exc, answers):
            self._record_success(trial)  # a reply: the connection works
        elif isinstance(exc, failures):
            if not isinstance(exc, CircuitOpenError):
                self._record_failure(trial)
        elif isinstance(exc, asyncio.CancelledError):  # neither way; the trial is over
            if trial:
                with self._lock:
                    self._trial_running = False
        else:
            self._record_success(trial)  # the server answered, if only with an error

    def _admit(self) -> bool:
        with self._lock:
            if self._state == CLOSED:
                return False
            waited = time.monotonic() - self._opened_at
            if waited >= self.reset_timeout and not self._trial_running:
                self._trial_running = True
                self._state = HALF_OPEN
                self.transitions[HALF_OPEN] += 1
                return True
            retry_in = max(self.reset_timeout - waited, 0.0)
        raise CircuitOpenError(
            f"circuit open after {self.threshold} consecutive connection failures; "
            f"not sent (next trial in {retry_in:.1f} s)"
        )

    def _record_failure(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            self._failures += 1
            if trial or self._failures >= self.threshold:
                if self._state != OPEN:
                    self.transitions[OPEN] += 1
                self._state = OPEN
                self._opened_at = time.monotonic()

    def _record_success(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            self._failures = 0
            if self._state != CLOSED:
                self.transitions[CLOSED] += 1
            self._state = CLOSED


class _Guarded:
    """What both breaker transports share: the breaker, the inner transport's errors
    (plus :class:`CircuitOpenError`), the reader, and each call routed through
    ``_guard``, which the blocking and the asyncio transport define (one driver each)."""

    inner: Any

    def __init__(
        self,
        inner: Any,
        threshold: int = 5,
        reset_timeout: float = 5.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.breaker = breaker or CircuitBreaker(threshold, reset_timeout)
        self.inner = self._transport_for(inner)
        self.client = self
        self.failures = (*self.inner.failures, CircuitOpenError)
        self.reply_errors = self.inner.reply_errors
        self.errors = (*self.inner.errors, CircuitOpenError)
        self.keyslot = self.inner.keyslot
        inner_reader = self.inner.reader
        self._reader = (
            self if inner_reader is self.inner else type(self)(inner_reader, breaker=self.breaker)
        )

    @staticmethod
    def _transport_for(inner: Any) -> Any:
        raise NotImplementedError

    def _guard(self, function: Callable[[], Any]) -> Any:
        raise NotImplementedError

    @property
    def threshold(self) -> int:
        """Consecutive connection failures that open the circuit."""
        return self.breaker.threshold

    @property
    def reset_timeout(self) -> float:
        """Seconds the circuit stays open before a trial call."""
        return self.breaker.reset_timeout

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return self.breaker.state

    # -- the transport ---------------------------------------------------------------------

    @property
    def reader(self) -> Any:
        return self._reader

    def send(self, *command: Any) -> Any:
        return self._guard(lambda: self.inner.send(*command))

    def send_once(self, *command: Any) -> Any:
        return self._guard(lambda: self.inner.send_once(*command))

    def send_batch(self, commands: Sequence[Command]) -> Any:
        return self._guard(lambda: self.inner.send_batch(commands))

    def _wrap_nodes(self, nodes: list[Any]) -> list[Any]:
        if nodes == [self.inner]:
            return [self]
        return [type(self)(node, breaker=self.breaker) for node in nodes]

    def describe(self) -> str:
        return str(self.inner.describe())


class CircuitBreakerClient(_Guarded):
    """A transport guarded by a circuit breaker (see the module docstring).

    It is also the cache's ``client``: :meth:`execute_command` sends a command of your
    own through the breaker, and :attr:`state` tells where the breaker stands.

    :param inner: the transport to guard, or a client with redis-py's API.
    :param threshold: consecutive connection failures that open the circuit.
    :param reset_timeout: seconds the circuit stays open before a trial call.
    :param breaker: the state to use (shared with another transport); default: new.
    """

    inner: Transport

    @staticmethod
    def _transport_for(inner: Any) -> Transport:
        return transport_for(inner)

    def _guard(self, function: Callable[[], _T]) -> _T:
        return self.breaker.call(function, self.inner.failures, self.inner.reply_errors)

    def nodes(self) -> list[Transport]:
        return self._wrap_nodes(self._guard(self.inner.nodes))

    def close(self) -> None:
        self.inner.close()

    def execute_command(self, *args: Any) -> Any:
        """Run a command of your own unless the circuit is open (bare reply)."""
        return self.send(*args)


class AsyncCircuitBreakerClient(_Guarded):
    """:class:`CircuitBreakerClient` for asyncio: an
    :class:`~cachecore.transport.AsyncTransport` guarded by a circuit breaker.

    :param inner: the asyncio transport to guard, or an asyncio client.
    :param threshold: consecutive connection failures that open the circuit.
    :param reset_timeout: seconds the circuit stays open before a trial call.
    :param breaker: the state to use (shared with another transport); default: new.
    """

    inner: AsyncTransport

    @staticmethod
    def _transport_for(inner: Any) -> AsyncTransport:
        from cachecore.adapters.aio import async_transport_for

        return async_transport_for(inner)

    def _guard(self, function: Callable[[], Awaitable[_T]]) -> Awaitable[_T]:
        return self.breaker.acall(function, self.inner.failures, self.inner.reply_errors)

    async def nodes(self) -> list[AsyncTransport]:
        return self._wrap_nodes(await self._guard(self.inner.nodes))

    def aclose(self) -> Awaitable[None]:
        return self.inner.aclose()

    def current_client(self) -> Any:
        """The wrapper itself (raw commands go through the breaker), with the inner
        transport made ready for the running event loop."""
        current = getattr(self.inner, "current_client", None)
        if current is not None:
            current()
        return self

    async def execute_command(self, *args: Any) -> Any:
        """Run a command of your own unless the circuit is open."""
        return await self.send(*args)
