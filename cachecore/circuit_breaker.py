"""A circuit breaker in front of a client, so an outage does not cost every call a timeout.

:class:`CircuitBreakerClient` wraps a Redis-API client. After ``threshold`` consecutive
connection failures or timeouts it *opens*: calls fail at once with
:class:`CircuitOpenError` (a client ``ConnectionError``, so the cache returns its fault
value and logs it) for ``reset_timeout`` seconds. Then it is *half-open*: one call goes
through as a trial while the others still fail fast; success *closes* it, failure opens
it again. Server replies that are errors (``WRONGTYPE``, ``OOM``, ``LOADING``...) are not
failures of the connection and never trip it, although the client libraries make
``LOADING`` (``BusyLoadingError``) a ``ConnectionError``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis.exceptions

from cachecore.errors import ConfigurationError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

_T = TypeVar("_T")


class CircuitOpenError(redis.exceptions.ConnectionError):
    """The circuit is open: the call was not sent to the server."""


def _connection_failures() -> tuple[type[BaseException], ...]:
    failures: list[type[BaseException]] = [
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        OSError,
    ]
    try:
        import valkey.exceptions
    except ImportError:
        pass
    else:
        failures += [valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError]
    return tuple(failures)


def _server_answers() -> tuple[type[BaseException], ...]:
    """Error replies the client libraries raise as a ``ConnectionError``: ``LOADING``."""
    answers: list[type[BaseException]] = [redis.exceptions.BusyLoadingError]
    try:
        import valkey.exceptions
    except ImportError:
        pass
    else:
        answers.append(valkey.exceptions.BusyLoadingError)
    return tuple(answers)


class _Pipeline:
    def __init__(self, breaker: CircuitBreakerClient, pipeline: Any) -> None:
        self._breaker = breaker
        self._pipeline = pipeline

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._breaker.call(lambda: self._pipeline.execute(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


class CircuitBreakerClient:
    """A Redis-API client guarded by a circuit breaker.

    :param client: the client to guard.
    :param threshold: consecutive connection failures that open the circuit.
    :param reset_timeout: seconds the circuit stays open before a trial call.
    """

    def __init__(self, client: Any, threshold: int = 5, reset_timeout: float = 5.0) -> None:
        if threshold < 1:
            raise ConfigurationError(f"circuit_breaker_threshold must be >= 1, got {threshold}")
        if reset_timeout <= 0:
            raise ConfigurationError(f"circuit_breaker_reset must be > 0, got {reset_timeout}")
        self._client = client
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self._state = CLOSED
        self._lock = threading.Lock()
        self._failure_types = _connection_failures()
        self._answer_types = _server_answers()

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (open past its reset timeout)."""
        with self._lock:
            if self._state == OPEN and time.monotonic() - self._opened_at >= self.reset_timeout:
                return HALF_OPEN
            return self._state

    def call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` (which talks to the server) through the breaker."""
        trial = self._admit()
        try:
            result = function()
        except self._answer_types:
            self._record_success(trial)  # a reply: the connection works
            raise
        except self._failure_types as exc:
            if not isinstance(exc, CircuitOpenError):
                self._record_failure(trial)
            raise
        except BaseException:
            self._record_success(trial)  # the server answered, if only with an error
            raise
        self._record_success(trial)
        return result

    def _admit(self) -> bool:
        with self._lock:
            if self._state == CLOSED:
                return False
            waited = time.monotonic() - self._opened_at
            if waited >= self.reset_timeout and not self._trial_running:
                self._trial_running = True
                self._state = HALF_OPEN
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
                self._state = OPEN
                self._opened_at = time.monotonic()

    def _record_success(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            self._failures = 0
            self._state = CLOSED

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run a command unless the circuit is open."""
        return self.call(lambda: self._client.execute_command(*args, **options))

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        """A pipeline whose ``execute`` goes through the breaker."""
        return _Pipeline(self, self._client.pipeline(transaction=transaction))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
