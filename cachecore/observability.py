"""Per-call observers: OpenTelemetry metrics and spans, and third-party exporters.

A cache without observers runs its ordinary drivers: nothing here is on its path. When
a cache gets observers (:func:`observe`, the ``metrics``/``tracing`` options, or a
plugin's ``cachecore_cache_observer`` hook), its drivers are replaced, on that instance
only, by timed ones (:class:`_Observed`): OpenTelemetry's histogram is recorded
directly (:class:`Recorder`), other observers get a :class:`CallEvent`, and spans are
opened only when a tracer is set. The always-on counters (:mod:`cachecore.stats`) are
kept either way.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from random import random
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from cachecore.errors import ConfigurationError
from cachecore.options import coerce
from cachecore.stats import READ_OPERATIONS, fault_kind

if TYPE_CHECKING:
    from cachecore.plugins import Registry
    from cachecore.protocol import CacheProtocol, Plan, Steps

log = logging.getLogger("cachecore")

OUTCOMES = ("hit", "miss", "ok", "fault")


class CallEvent(NamedTuple):
    """One call of a cache method, as observers see it (an immutable named tuple: cheap
    to build on every call).

    :param operation: the method: ``get``, ``get_many``, ``set``... (``get_dict``
        reports as ``get_many``).
    :param outcome: ``hit``/``miss`` for ``get``, ``lookup`` and ``has``; ``ok`` for
        every other call that reached the server (``get_many`` included: its per-key
        hits are in ``cache.stats()``); ``fault`` when it ended in the fault value (or
        :class:`~cachecore.errors.BackendError`), or when a multi-key call on a cluster
        reached only some nodes (the keys of the failed node were not read, stored or
        deleted; the call returns what the other nodes did).
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


class Recorder(Protocol):
    """What the timed drivers call for :class:`cachecore.otel.OtelMetrics`: the call's
    facts as arguments, without building a :class:`CallEvent`."""

    def record(self, operation: str, outcome: str, duration: float, error: str | None) -> None:
        """Record one call (``error``: the fault kind, for a fault)."""

    def answered(self, operation: str, missed: bool, duration: float, key: str | None) -> None:
        """Record a one-command call that got a reply (``missed``: it was falsy, so a
        read's outcome is ``miss``; other operations are ``ok`` either way)."""

    def link_to_spans(self, linked: bool) -> None:
        """Whether each call is recorded inside its span (tracing is on)."""


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


def observe(
    cache: CacheProtocol,
    *observers: Observer,
    tracer: Any = None,
    sample_rate: float | None = None,
) -> None:
    """Send every later call of ``cache`` to ``observers`` (and open a span per call on
    the OpenTelemetry ``tracer``, when given). Adds to the observers it already has.

    :param sample_rate: the share of calls timed and reported (the
        ``metrics_sample_rate`` option): each call is, independently, with this
        probability; the others run the ordinary driver, counted in ``cache.stats()``
        but not timed. None keeps the cache's rate (at first 1.0: every call). Ignored
        while a tracer is set (every call gets its span, with its outcome).
    :raises TypeError: an observer without ``on_call``.
    :raises ConfigurationError: ``sample_rate`` is not a number > 0 and <= 1.
    """
    for observer in observers:
        if not callable(getattr(observer, "on_call", None)):
            raise TypeError(f"an observer needs an on_call(event) method: {observer!r}")
    if sample_rate is not None:
        sample_rate = coerce("metrics_sample_rate", sample_rate)
    state = observed(cache)
    if sample_rate is not None:
        state.sample_rate = sample_rate
    otel = sys.modules.get("cachecore.otel")
    for observer in observers:
        if otel is not None and isinstance(observer, otel.OtelMetrics):
            state.recorders.append(observer)
        else:
            state.observers.append(observer)
    if tracer is not None:
        state.tracer = tracer
    state.install()


def observed(cache: CacheProtocol) -> _Observed:
    """The timed drivers of ``cache``, made (not yet installed) on first use."""
    state: _Observed | None = cache.__dict__.get("_observed")
    if state is None:
        state = _Observed(cache, system_of(cache))
        cache.__dict__["_observed"] = state
    return state


def observers_of(cache: CacheProtocol) -> list[Observer]:
    """The observers of ``cache`` (empty for a cache no one observes)."""
    state: _Observed | None = cache.__dict__.get("_observed")
    if state is None:
        return []
    return [*state.recorders, *state.observers]  # type: ignore[list-item]


# The fault kind counted during the current multi-key call (set by the observed
# cache's _count_fault, read by its driver). A context variable: each thread and each
# asyncio task has its own, so concurrent calls on one cache don't see each other's.
_FAULT: ContextVar[str | None] = ContextVar("cachecore_fault", default=None)


class _Observed:
    """The timed drivers of one observed cache.

    One-command calls (plans) are timed here, with the same steps as the cache's own
    ``_run`` plus the clock (their outcome needs the raw reply). Multi-step calls time
    the cache's own ``_drive``: a fault is whatever the protocol counts as one
    (``_count_fault``, wrapped here), so a multi-key call that reached only some
    cluster nodes is a fault too.
    """

    def __init__(self, cache: CacheProtocol, system: str) -> None:
        self.cache = cache
        self.system = system
        self.recorders: list[Recorder] = []
        self.observers: list[Observer] = []
        self.tracer: Any = None
        self.sample_rate = 1.0
        """The share of calls timed and reported (see :func:`observe`)."""
        self._log_keep = 0.0  # log(1 - sample_rate), for the gaps between samples
        self._left = 1  # calls until the next sampled one (this one included)
        self.answered: Callable[[str, bool, float, str | None], None] = self._answered
        """Reports a one-command call that got a reply (``missed``: the reply was falsy)."""

    def install(self) -> None:
        """Put the timed drivers on the cache instance (again after a change: spans
        cost nothing until a tracer is set)."""
        from cachecore.aio.cache import AsyncBaseRedisCache

        cache: Any = self.cache
        traced = self.tracer is not None
        sampled = self.sample_rate < 1 and not traced
        if sampled:
            self._log_keep = math.log1p(-self.sample_rate)
            self._left = self._gap()
        run: Callable[[Plan], Any]
        drive: Callable[[Steps[Any]], Any]
        if isinstance(self.cache, AsyncBaseRedisCache):
            run, drive = self.run_async, self.drive_async
            if traced:
                run, drive = self.run_async_traced, self.drive_async_traced
            elif sampled:
                run, drive = self.run_async_sampled, self.drive_async_sampled
        else:
            run, drive = self.run, self.drive
            if traced:
                run, drive = self.run_traced, self.drive_traced
            elif sampled:
                run, drive = self.run_sampled, self.drive_sampled
        cache._run, cache._drive, cache._count_fault = run, drive, self._count_fault
        for recorder in self.recorders:
            recorder.link_to_spans(traced)
        # The common case, OpenTelemetry metrics alone: straight to its histogram.
        alone = len(self.recorders) == 1 and not self.observers and not traced
        self.answered = self.recorders[0].answered if alone else self._answered

    def _count_fault(self, exc: BaseException) -> None:
        cache = self.cache
        type(cache)._count_fault(cache, exc)
        _FAULT.set(self._kind(exc))

    def _kind(self, exc: BaseException) -> str:
        cache = self.cache
        return fault_kind(exc, (*cache._writes.reply_errors, *cache._reads.reply_errors))

    def _answered(self, operation: str, missed: bool, duration: float, key: str | None) -> None:
        self._report(operation, OUTCOMES_BY_REPLY[operation][missed], duration, None, key)

    def _report(
        self, operation: str, outcome: str, duration: float, error: str | None, key: str | None
    ) -> None:
        for recorder in self.recorders:
            recorder.record(operation, outcome, duration, error)
        if self.observers:
            event = CallEvent(operation, outcome, duration, error, key, self.system)
            for observer in self.observers:
                try:
                    observer.on_call(event)
                except Exception:  # an exporter's bug must not break the cache call
                    log.exception("cachecore: observer %r failed on %s", observer, operation)
        if self.tracer is not None:
            _mark_span(outcome, error)

    # One-command calls: cachecore.redis_base's and cachecore.aio.cache's _run, timed.

    def run(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command, truthy, falsy = plan
        cache = self.cache
        started = perf_counter()
        try:
            reply = send(*command)
        except cache._errors as exc:
            self._report(operation, "fault", perf_counter() - started, self._kind(exc), key)
            return cache._fault(operation, exc, fault)
        missed = not reply
        cache._shard.counts[falsy if missed else truthy] += 1
        result = finish(key, reply)
        self.answered(operation, missed, perf_counter() - started, key)
        return result

    async def run_async(self, plan: Plan) -> Any:
        send, operation, fault, finish, key, command, truthy, falsy = plan
        cache = self.cache
        started = perf_counter()
        try:
            reply = await send(*command)
        except cache._errors as exc:
            self._report(operation, "fault", perf_counter() - started, self._kind(exc), key)
            return cache._fault(operation, exc, fault)
        missed = not reply
        cache._shard.counts[falsy if missed else truthy] += 1
        result = finish(key, reply)
        self.answered(operation, missed, perf_counter() - started, key)
        return result

    # Multi-step calls: the cache's own driver, timed.

    def drive(self, steps: Steps[Any]) -> Any:
        cache: Any = self.cache
        with _Timed(self, steps):
            return type(cache)._drive(cache, steps)

    async def drive_async(self, steps: Steps[Any]) -> Any:
        cache: Any = self.cache
        with _Timed(self, steps):
            return await type(cache)._drive(cache, steps)

    # With metrics_sample_rate < 1: a sample of calls timed, the others run the cache's
    # own drivers (counters only). Which calls: a countdown of calls left until the next
    # sampled one, with geometric gaps drawn at each sampled call, which makes every
    # call sampled independently with probability sample_rate (no period a workload
    # could line up with). A countdown rather than random() per call: the random
    # generator's state is cold after each round trip, and that costs ~1 % of a get.
    # Threads may race on the countdown; that shifts which calls are sampled, never
    # the counters. The async drivers return the chosen coroutine unawaited (no
    # coroutine frame of their own).

    def _sample(self) -> bool:
        """Whether this call is timed (one call of a Bernoulli(sample_rate) process)."""
        left = self._left - 1
        if left > 0:
            self._left = left
            return False
        self._left = self._gap()
        return True

    def _gap(self) -> int:
        """The calls up to and including the next sampled one: geometric, mean 1/rate."""
        # Capped: a rate of 1e-320 would give an infinite gap.
        return int(min(math.log1p(-random()) / self._log_keep, 1e18)) + 1

    def run_sampled(self, plan: Plan) -> Any:
        if self._sample():
            return self.run(plan)
        cache: Any = self.cache
        return type(cache)._run(cache, plan)

    def drive_sampled(self, steps: Steps[Any]) -> Any:
        if self._sample():
            return self.drive(steps)
        cache: Any = self.cache
        return type(cache)._drive(cache, steps)

    def run_async_sampled(self, plan: Plan) -> Awaitable[Any]:
        if self._sample():
            return self.run_async(plan)
        cache: Any = self.cache
        result: Awaitable[Any] = type(cache)._run(cache, plan)
        return result

    def drive_async_sampled(self, steps: Steps[Any]) -> Awaitable[Any]:
        if self._sample():
            return self.drive_async(steps)
        cache: Any = self.cache
        result: Awaitable[Any] = type(cache)._drive(cache, steps)
        return result

    # With a tracer: the same, inside a span.

    def _span(self, operation: str, key: str | None) -> Any:
        group = key_group(key)
        name = f"{operation} {group}" if group else operation
        return self.tracer.start_as_current_span(
            name,
            kind=_client_kind(),
            attributes={"db.system.name": self.system, "cachecore.operation.name": operation},
        )

    def run_traced(self, plan: Plan) -> Any:
        with self._span(plan[1], plan[4]):
            return self.run(plan)

    def drive_traced(self, steps: Steps[Any]) -> Any:
        with self._span(_operation(steps), None):
            return self.drive(steps)

    async def run_async_traced(self, plan: Plan) -> Any:
        with self._span(plan[1], plan[4]):
            return await self.run_async(plan)

    async def drive_async_traced(self, steps: Steps[Any]) -> Any:
        with self._span(_operation(steps), None):
            return await self.drive_async(steps)


class _Timed:
    """Times one multi-step call and reports it: ``fault`` when the protocol counted a
    fault during it (a cluster node that failed included) or a backend error escaped
    it; another exception (a bug, a cancelled task, memoize's function raising) is not
    a cache outcome and is not reported."""

    __slots__ = ("operation", "started", "state", "token")

    def __init__(self, state: _Observed, steps: Steps[Any]) -> None:
        self.state = state
        self.operation = _operation(steps)

    def __enter__(self) -> None:
        self.token = _FAULT.set(None)
        self.started = perf_counter()

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        duration = perf_counter() - self.started
        state = self.state
        fault = _FAULT.get()
        _FAULT.reset(self.token)
        if fault is None and exc is not None and isinstance(exc, state.cache._errors):
            fault = state._kind(exc)
        if fault is not None:
            state._report(self.operation, "fault", duration, fault, None)
        elif exc is None:
            state._report(self.operation, "ok", duration, None, None)


def _operation(steps: Steps[Any]) -> str:
    # The steps of cachecore.protocol are generators named _steps_<operation>.
    name: str = steps.gi_code.co_name  # type: ignore[attr-defined]
    return name.removeprefix("_steps_")


class _Outcomes(dict[str, tuple[str, str]]):
    def __missing__(self, operation: str) -> tuple[str, str]:
        return ("ok", "ok")


OUTCOMES_BY_REPLY = _Outcomes(
    {name: ("hit", "miss") for name in READ_OPERATIONS - {"get_many", "lookup_many"}}
)
"""A one-command operation's outcome, indexed by ``not reply`` (as
the counters a plan carries): hit/miss for reads, ok for the others."""


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


OPTIONS = ("metrics", "tracing", "meter_provider", "tracer_provider", "metrics_sample_rate")
"""The cache options this module reads (see :func:`configure`)."""


def configure(
    cache: CacheProtocol, options: Mapping[str, Any], registry: Registry | None = None
) -> None:
    """Give a cache built from configuration the observers its options and the
    installed plugins ask for: ``metrics=true`` (or a ``meter_provider``) adds the
    OpenTelemetry metrics, ``tracing=true`` (or a ``tracer_provider``) a span per call,
    and each plugin's ``cachecore_cache_observer`` hook is asked once.
    ``metrics_sample_rate`` (already checked by :func:`cachecore.options.coerce`) sets
    the share of calls timed and reported (see :func:`observe`); without observers it
    has no effect.

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
        observe(cache, *observers, tracer=tracer, sample_rate=options.get("metrics_sample_rate"))


def _hook_observers(cache: CacheProtocol, registry: Registry | None) -> Iterable[Observer]:
    from cachecore import plugins

    reg = registry or plugins.registry()
    hook = getattr(reg.manager.hook, "cachecore_cache_observer", None)
    if hook is None or not hook.get_hookimpls():
        return []
    found: Sequence[Any] = hook(cache=cache)
    return [observer for observer in found if observer is not None]
