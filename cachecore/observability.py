"""Per-call observers: OpenTelemetry metrics and spans, and third-party exporters.

A cache without observers runs its ordinary drivers: nothing here is on its path. When
a cache gets observers (:func:`observe`, the ``metrics``/``tracing`` options, or a
plugin's ``cachecore_cache_observer`` hook), its two drivers are replaced, on that
instance only, by timed ones that tell every observer about each call with a
:class:`CallEvent`. The always-on counters (:mod:`cachecore.stats`) are kept either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cachecore.errors import ConfigurationError
from cachecore.stats import READ_OPERATIONS, fault_kind

if TYPE_CHECKING:
    from cachecore.plugins import Registry
    from cachecore.protocol import CacheProtocol, Plan, Steps

log = logging.getLogger("cachecore")

OUTCOMES = ("hit", "miss", "ok", "fault")


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call of a cache method, as observers see it.

    :param operation: the method: ``get``, ``get_many``, ``set``... (``get_dict``
        reports as ``get_many``).
    :param outcome: ``hit``/``miss`` for ``get``, ``lookup`` and ``has``; ``ok`` for
        every other call that reached the server (``get_many`` included: its per-key
        hits are in ``cache.stats()``); ``fault`` when it ended in the fault value (or
        :class:`~cachecore.errors.BackendError`).
    :param duration: seconds, from before the first command to the result.
    :param error_type: for a fault, its kind (see :data:`cachecore.stats.FAULT_KINDS`).
    :param key: the user's key (without the cache's prefix) for one-key calls, else
        None. It may hold secret parts: exporters should keep only a safe part of it
        (see :func:`key_group`).
    :param system: the backend (``redis``, ``valkey``, ``keydb``, ``memory``...).
    """

    operation: str
    outcome: str
    duration: float
    error_type: str | None
    key: str | None
    system: str


@runtime_checkable
class Observer(Protocol):
    """Receives one :class:`CallEvent` per cache call, on the calling thread (or event
    loop), after the call; it must be quick and must not raise."""

    def on_call(self, event: CallEvent) -> None: ...


def key_group(key: str | None) -> str | None:
    """The part of ``key`` before its first ``:``, followed by ``:...`` (``user:42`` ->
    ``user:...``); None for a key without ``:`` (nothing safe to show) or no key."""
    if not key:
        return None
    head, sep, _ = key.partition(":")
    return f"{head}:..." if sep else None


def system_of(cache: CacheProtocol) -> str:
    """The backend of ``cache`` for ``db.system.name``: the scheme of its description
    (``valkey://...`` -> ``valkey``; ``redis+sentinel`` -> ``redis``), else from the
    client library."""
    scheme = cache.description.partition("://")[0]
    if scheme and "://" in cache.description:
        return scheme.partition("+")[0].lower()
    module = type(getattr(cache._writes, "client", cache._writes)).__module__
    if module.startswith("fakeredis"):
        return "memory"
    return "valkey" if module.startswith("valkey") else "redis"


def observe(cache: CacheProtocol, *observers: Observer, tracer: Any = None) -> None:
    """Send every later call of ``cache`` to ``observers`` (and open a span per call on
    the OpenTelemetry ``tracer``, when given). Adds to the observers it already has.

    :raises TypeError: an observer without ``on_call``.
    """
    for observer in observers:
        if not callable(getattr(observer, "on_call", None)):
            raise TypeError(f"an observer needs an on_call(event) method: {observer!r}")
    state: _Observed | None = cache.__dict__.get("_observed")
    if state is None:
        state = _Observed(cache, system_of(cache))
        cache.__dict__["_observed"] = state
        state.install()
    state.observers.extend(observers)
    if tracer is not None:
        state.tracer = tracer


def observers_of(cache: CacheProtocol) -> list[Observer]:
    """The observers of ``cache`` (empty for a cache no one observes)."""
    state: _Observed | None = cache.__dict__.get("_observed")
    return [] if state is None else list(state.observers)


class _Observed:
    """The timed drivers of one observed cache."""

    def __init__(self, cache: CacheProtocol, system: str) -> None:
        self.cache = cache
        self.system = system
        self.observers: list[Observer] = []
        self.tracer: Any = None

    def install(self) -> None:
        from cachecore.aio.cache import AsyncBaseRedisCache

        cache: Any = self.cache
        if isinstance(self.cache, AsyncBaseRedisCache):
            cache._run, cache._drive = self.run_async, self.drive_async
        else:
            cache._run, cache._drive = self.run, self.drive

    # The drivers of cachecore.redis_base and cachecore.aio.cache, timed and reported.

    def _emit(
        self, operation: str, outcome: str, started: float, error: str | None, key: str | None
    ) -> None:
        event = CallEvent(
            operation, outcome, time.perf_counter() - started, error, key, self.system
        )
        if self.tracer is not None:
            _mark_span(outcome, error)
        for observer in self.observers:
            try:
                observer.on_call(event)
            except Exception:  # an exporter's bug must not break the cache call
                log.exception("cachecore: observer %r failed on %s", observer, operation)

    def _kind(self, exc: BaseException) -> str:
        cache = self.cache
        return fault_kind(exc, (*cache._writes.reply_errors, *cache._reads.reply_errors))

    def _span(self, operation: str, key: str | None) -> Any:
        group = key_group(key)
        name = f"{operation} {group}" if group else operation
        return self.tracer.start_as_current_span(
            name,
            kind=_client_kind(),
            attributes={"db.system.name": self.system, "cachecore.operation.name": operation},
        )

    def run(self, plan: Plan) -> Any:
        if self.tracer is None:
            return self._run(plan)
        with self._span(plan[1], plan[4]):
            return self._run(plan)

    def _run(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command = plan
        cache = self.cache
        started = time.perf_counter()
        try:
            reply = send(*command)
        except cache._errors as exc:
            self._emit(operation, "fault", started, self._kind(exc), key)
            return cache._fault(operation, exc, fault)
        cache.counters.shard.counts[cache._events[operation][not reply]] += 1
        result = finish(key, reply)
        self._emit(operation, _outcome(operation, reply), started, None, key)
        return result

    def drive(self, steps: Steps[Any]) -> Any:
        if self.tracer is None:
            return self._drive(steps)
        with self._span(_operation(steps), None):
            return self._drive(steps)

    def _drive(self, steps: Steps[Any]) -> Any:
        operation = _operation(steps)
        errors = self.cache._errors
        started = time.perf_counter()
        fault: str | None = None
        try:
            method, args = next(steps)
            while True:
                try:
                    reply = method(*args)
                except BaseException as exc:
                    if isinstance(exc, errors):
                        fault = self._kind(exc)
                    method, args = steps.throw(exc)
                else:
                    method, args = steps.send(reply)
        except StopIteration as done:
            self._emit(operation, "ok" if fault is None else "fault", started, fault, None)
            return done.value
        except BaseException as exc:
            if isinstance(exc, errors) or fault is not None:
                self._emit(operation, "fault", started, fault or self._kind(exc), None)
            raise

    async def run_async(self, plan: Plan) -> Any:
        if self.tracer is None:
            return await self._run_async(plan)
        with self._span(plan[1], plan[4]):
            return await self._run_async(plan)

    async def _run_async(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command = plan
        cache = self.cache
        started = time.perf_counter()
        try:
            reply = await send(*command)
        except cache._errors as exc:
            self._emit(operation, "fault", started, self._kind(exc), key)
            return cache._fault(operation, exc, fault)
        cache.counters.shard.counts[cache._events[operation][not reply]] += 1
        result = finish(key, reply)
        self._emit(operation, _outcome(operation, reply), started, None, key)
        return result

    async def drive_async(self, steps: Steps[Any]) -> Any:
        if self.tracer is None:
            return await self._drive_async(steps)
        with self._span(_operation(steps), None):
            return await self._drive_async(steps)

    async def _drive_async(self, steps: Steps[Any]) -> Any:
        operation = _operation(steps)
        errors = self.cache._errors
        started = time.perf_counter()
        fault: str | None = None
        try:
            method, args = next(steps)
            while True:
                try:
                    reply = await method(*args)
                except BaseException as exc:  # cancellation passes through the steps
                    if isinstance(exc, errors):
                        fault = self._kind(exc)
                    method, args = steps.throw(exc)
                else:
                    method, args = steps.send(reply)
        except StopIteration as done:
            self._emit(operation, "ok" if fault is None else "fault", started, fault, None)
            return done.value
        except BaseException as exc:
            if isinstance(exc, errors) or fault is not None:
                self._emit(operation, "fault", started, fault or self._kind(exc), None)
            raise


def _operation(steps: Steps[Any]) -> str:
    # The steps of cachecore.protocol are generators named _steps_<operation>.
    name: str = steps.gi_code.co_name  # type: ignore[attr-defined]
    return name.removeprefix("_steps_")


def _outcome(operation: str, reply: Any) -> str:
    if operation in _HIT_MISS:
        return "hit" if reply else "miss"
    return "ok"


_HIT_MISS = READ_OPERATIONS - {"get_many", "lookup_many"}


def _mark_span(outcome: str, error: str | None) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("cachecore.operation.outcome", outcome)
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(trace.StatusCode.ERROR)


def _client_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT


# -- configuration -------------------------------------------------------------------


OPTIONS = ("metrics", "tracing", "meter_provider", "tracer_provider")
"""The cache options this module reads (see :func:`configure`)."""


def configure(
    cache: CacheProtocol, options: Mapping[str, Any], registry: Registry | None = None
) -> None:
    """Give a cache built from configuration the observers its options and the
    installed plugins ask for: ``metrics=true`` (or a ``meter_provider``) adds the
    OpenTelemetry metrics, ``tracing=true`` (or a ``tracer_provider``) a span per call,
    and each plugin's ``cachecore_cache_observer`` hook is asked once.

    :raises ConfigurationError: OpenTelemetry asked for but not installed
        (``pip install cachecore[otel]``), or a provider given as a string.
    """
    observers: list[Observer] = []
    for name in ("meter_provider", "tracer_provider"):
        if isinstance(options.get(name), str):
            raise ConfigurationError(
                f"option {name!r} must be an OpenTelemetry provider object, passed in "
                "Python; in a URL or the environment use metrics=true / tracing=true"
            )
    meter_provider = options.get("meter_provider")
    if meter_provider is not None or options.get("metrics"):
        from cachecore.otel import OtelMetrics

        observers.append(OtelMetrics(cache, meter_provider))
    tracer = None
    tracer_provider = options.get("tracer_provider")
    if tracer_provider is not None or options.get("tracing"):
        from cachecore.otel import tracer_for

        tracer = tracer_for(tracer_provider)
    observers.extend(_hook_observers(cache, registry))
    if observers or tracer is not None:
        observe(cache, *observers, tracer=tracer)


def _hook_observers(cache: CacheProtocol, registry: Registry | None) -> Iterable[Observer]:
    from cachecore import plugins

    reg = registry or plugins.registry()
    hook = getattr(reg.manager.hook, "cachecore_cache_observer", None)
    if hook is None or not hook.get_hookimpls():
        return []
    found: Sequence[Any] = hook(cache=cache)
    return [observer for observer in found if observer is not None]
