"""OpenTelemetry metrics and spans for cachecore caches (``pip install cachecore[otel]``).

Turned on per cache by the ``metrics=true`` / ``tracing=true`` options or by passing a
``meter_provider`` / ``tracer_provider`` to :func:`cachecore.from_url`; by hand with
``observability.observe(cache, OtelMetrics(cache))``. Every name below is listed, with
its attributes, in ``docs/observability.md``.

* ``cachecore.operation.duration`` (histogram, ``s``), recorded per call with
  ``cachecore.operation.name``, ``cachecore.operation.outcome`` (``hit``, ``miss``,
  ``ok``, ``fault``), ``db.system.name`` and, for faults, ``error.type``. With the
  ``metrics_sample_rate`` option below 1, only a random sample of calls is recorded:
  its count is about rate x calls (use the counters for rates), its quantiles hold.
* Counters read from ``cache.stats()`` when the metrics are collected (nothing on the
  call path): ``cachecore.lookups`` (``cachecore.lookup.result`` = ``hit``/``miss``),
  ``cachecore.stores``, ``cachecore.deletes``, ``cachecore.faults`` (``error.type``),
  ``cachecore.near_cache.*``, ``cachecore.circuit_breaker.transitions``, the
  ``cachecore.circuit_breaker.status`` gauge, and ``cachecore.memoize.*``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cachecore.adapters.otel_sdk import BulkRecord, awaits_provider, bulk_recorder
from cachecore.errors import ConfigurationError
from cachecore.observability import OUTCOMES_BY_REPLY, CallEvent, observed
from cachecore.stats import EXTRA_COUNTERS, FAULT_KINDS, CacheStats

if TYPE_CHECKING:
    from cachecore.protocol import CacheProtocol

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "OpenTelemetry metrics or tracing need the opentelemetry-api package: "
        "pip install 'cachecore[otel]'"
    ) from exc

log = logging.getLogger("cachecore")

SCOPE = "cachecore"
"""The instrumentation scope (meter and tracer name)."""

DURATION = "cachecore.operation.duration"
DURATION_BOUNDARIES = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
"""Histogram buckets (s): a cache call takes from tens of microseconds (a near-cache
hit is below the first) to a socket timeout (1 s by default)."""

BREAKER_STATES = ("closed", "open", "half-open")


def _version() -> str:
    try:
        return importlib.metadata.version("cachecore")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def tracer_for(provider: Any = None) -> Any:
    """cachecore's tracer from ``provider`` (default: the global tracer provider)."""
    provider = provider or trace.get_tracer_provider()
    return provider.get_tracer(SCOPE, _version())


class _Instruments:
    """The instruments of one meter provider, shared by every cache that reports to it:
    the observable counters sum the caches' stats per ``db.system.name``."""

    def __init__(self, meter: Any) -> None:
        self.caches: weakref.WeakSet[Any] = weakref.WeakSet()
        self.batched: weakref.WeakSet[OtelMetrics] = weakref.WeakSet()
        """The observers that queue durations: flushed by each collection, whose
        asynchronous callbacks all run before the SDK reads the histogram."""
        self.orphans: list[tuple[dict[Any, _Pending], BulkRecord]] = []
        """The queues of observers garbage-collected since the last collection (their
        cache went away with durations still queued): added at the next one."""
        self.duration = meter.create_histogram(
            DURATION,
            unit="s",
            description="Duration of cachecore cache calls, by operation and outcome.",
            explicit_bucket_boundaries_advisory=list(DURATION_BOUNDARIES),
        )

        def counter(name: str, unit: str, description: str, read: _Reader) -> None:
            meter.create_observable_counter(
                name, callbacks=[self._callback(read)], unit=unit, description=description
            )

        meter.create_observable_counter(
            "cachecore.lookups",
            callbacks=[self._flush, self._callback(_lookups)],
            unit="{key}",
            description="Keys read, by result (hit or miss).",
        )
        counter("cachecore.stores", "{key}", "Values stored (set, add, set_many).", _stores)
        counter("cachecore.deletes", "{key}", "Keys deleted (delete, delete_many).", _deletes)
        counter("cachecore.faults", "{fault}", "Calls that met a backend fault.", _faults)
        for field, unit, text in (
            ("hits", "{key}", "Reads answered from process memory."),
            ("invalidations", "{message}", "Invalidation messages from the server."),
            ("evictions", "{entry}", "Entries dropped to stay within near_cache_size."),
            ("resets", "{reset}", "Times every entry was dropped (connection faults)."),
        ):
            counter(f"cachecore.near_cache.{field}", unit, text, _near(field))
        counter(
            "cachecore.circuit_breaker.transitions",
            "{transition}",
            "Times the circuit breaker entered a state.",
            _transitions,
        )
        meter.create_observable_up_down_counter(
            "cachecore.circuit_breaker.status",
            callbacks=[self._callback(_breaker_status)],
            unit="{state}",
            description="1 for the circuit breaker's current state, 0 for the others.",
        )
        for name, text in EXTRA_COUNTERS.items():
            counter(f"cachecore.{name}", "{event}", text, _extra(name))

    def _flush(self, _options: CallbackOptions) -> Iterable[Observation]:
        for observer in list(self.batched):
            observer.flush()
        while self.orphans:
            queues, bulk = self.orphans.pop()
            for pending in queues.values():  # no one appends to them any more
                values = list(pending)
                pending.clear()
                if values:
                    try:
                        bulk(pending.attributes, values)
                    except Exception:  # as in OtelMetrics._add_batch
                        log.exception("cachecore: %d durations not recorded", len(values))
        return ()

    def _callback(self, read: _Reader) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            summed: dict[tuple[tuple[str, str], ...], int] = {}
            for cache in list(self.caches):
                system = cache.__dict__["_observed"].system
                for attributes, value in read(cache.stats()):
                    key = tuple(sorted({"db.system.name": system, **attributes}.items()))
                    summed[key] = summed.get(key, 0) + value
            return [Observation(value, dict(key)) for key, value in summed.items()]

        return callback


_Reader = Callable[[CacheStats], Iterable[tuple[dict[str, str], int]]]


def _lookups(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    yield {"cachecore.lookup.result": "hit"}, stats.hits
    yield {"cachecore.lookup.result": "miss"}, stats.misses


def _stores(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    yield {}, stats.sets


def _deletes(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    yield {}, stats.deletes


def _faults(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    for kind in FAULT_KINDS:
        yield {"error.type": kind}, stats.faults.get(kind, 0)


def _near(field: str) -> _Reader:
    def read(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
        if stats.near_cache is not None:
            yield {}, getattr(stats.near_cache, field)

    return read


def _transitions(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    if stats.circuit_breaker is not None:
        for state, count in stats.circuit_breaker.transitions.items():
            yield {"cachecore.circuit_breaker.state": state}, count


def _breaker_status(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
    if stats.circuit_breaker is not None:
        for state in BREAKER_STATES:
            yield (
                {"cachecore.circuit_breaker.state": state},
                int(stats.circuit_breaker.state == state),
            )


def _extra(name: str) -> _Reader:
    def read(stats: CacheStats) -> Iterable[tuple[dict[str, str], int]]:
        yield {}, stats.extra.get(name, 0)

    return read


class _Pending(deque[float]):
    """The durations of one attribute set not yet added to the histogram."""

    __slots__ = ("attributes",)

    def __init__(self, attributes: dict[str, str]) -> None:
        super().__init__()
        self.attributes = attributes


class _ByReply(dict[str, tuple[_Pending, _Pending]]):
    """The queues of a one-command operation, indexed by ``not reply``."""

    def __init__(self, pending_for: Callable[[str, str, str | None], _Pending]) -> None:
        super().__init__()
        self._pending_for = pending_for

    def __missing__(self, operation: str) -> tuple[_Pending, _Pending]:
        truthy, falsy = OUTCOMES_BY_REPLY[operation]
        found = (
            self._pending_for(operation, truthy, None),
            self._pending_for(operation, falsy, None),
        )
        self[operation] = found
        return found


_BY_PROVIDER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _instruments(provider: Any) -> _Instruments:
    with _LOCK:
        found = _BY_PROVIDER.get(provider)
        if found is None:
            found = _Instruments(provider.get_meter(SCOPE, _version()))
            _BY_PROVIDER[provider] = found
        return found


BATCH = 512
"""Durations queued per attribute set before they are added to the histogram in one
step (where :func:`cachecore.adapters.otel_sdk.bulk_recorder` can); every collection
of the meter provider adds what is queued first, so exports miss nothing."""


class OtelMetrics:
    """An :class:`~cachecore.observability.Observer` recording each call in the
    ``cachecore.operation.duration`` histogram of ``meter_provider`` (default: the
    global one), and registering ``cache`` with that provider's observable counters.

    With the OpenTelemetry SDK's ``MeterProvider`` (of the versions in
    :data:`cachecore.adapters.otel_sdk.TESTED_VERSIONS`), durations are queued and
    added in batches of :data:`BATCH`, and before each collection: the same bucket
    counts, sum, min and max as one ``record`` per call, at a fraction of its cost,
    without exemplars. Any other provider, and a cache with tracing on (whose
    histogram points can then carry exemplars), gets one ``record`` per call.

    :param cache: the cache it observes (its stats feed the counters).
    :param meter_provider: an OpenTelemetry ``MeterProvider``; default: the global one.
    """

    def __init__(self, cache: CacheProtocol, meter_provider: Any = None) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        instruments = _instruments(provider)
        self._system = observed(cache).system
        instruments.caches.add(cache)
        self._instruments = instruments
        self._record = instruments.duration.record
        self._bulk: BulkRecord | None = None
        self._batch = 1
        self._drain: Callable[[_Pending], None] = self._record_each
        self._linked = False
        # Calls left before looking again for the SDK behind a global-provider stand-in.
        self._look_in = 0
        # One queue (and attribute dict) per (operation, outcome, error), made once.
        self._pending: dict[tuple[str, str, str | None], _Pending] = {}
        self._lock = threading.Lock()  # guards making queues and draining them
        # The same queues, by operation and `not reply`, for the one-command calls.
        self._by_reply = _ByReply(self._pending_for)
        self._find_bulk()

    def _find_bulk(self) -> None:
        """Batch if the histogram is (now) one of the SDK's; if it still waits for the
        application to set a global meter provider, look again in 1,000 calls."""
        with self._lock:
            if self._bulk is not None:
                return
            histogram = self._instruments.duration
            self._bulk = bulk_recorder(histogram)
            self._look_in = 1000 if self._bulk is None and awaits_provider(histogram) else 0
            if self._bulk is None:
                return
            self._instruments.batched.add(self)
            # Without a reference to self: adopted by the instruments when it goes.
            weakref.finalize(self, self._instruments.orphans.append, (self._pending, self._bulk))
        self.link_to_spans(self._linked)

    def link_to_spans(self, linked: bool) -> None:
        """Record each call inside its span, one ``record`` per call, so that the SDK
        can attach exemplars (trace and span ids) to the histogram (``linked``: the
        cache opens a span per call); otherwise batch where the SDK allows it."""
        self.flush()
        self._linked = linked
        if linked or self._bulk is None:
            self._batch, self._drain = 1, self._record_each
        else:
            self._batch, self._drain = BATCH, self._add_batch

    def _pending_for(self, operation: str, outcome: str, error: str | None) -> _Pending:
        pending = self._pending.get((operation, outcome, error))
        if pending is None:
            with self._lock:
                pending = self._pending.get((operation, outcome, error))
                if pending is None:
                    attributes = {
                        "cachecore.operation.name": operation,
                        "cachecore.operation.outcome": outcome,
                        "db.system.name": self._system,
                    }
                    if error is not None:
                        attributes["error.type"] = error
                    pending = self._pending[(operation, outcome, error)] = _Pending(attributes)
        return pending

    def record(self, operation: str, outcome: str, duration: float, error: str | None) -> None:
        """Record one call's duration (seconds) with its attributes."""
        pending = self._pending_for(operation, outcome, error)
        pending.append(duration)
        if len(pending) >= self._batch:
            self._drain(pending)

    def answered(self, operation: str, missed: bool, duration: float, key: str | None) -> None:
        """Record a one-command call that got a reply (``missed``: the reply was falsy)."""
        pending = self._by_reply[operation][missed]
        pending.append(duration)
        if len(pending) >= self._batch:
            self._drain(pending)

    def on_call(self, event: CallEvent) -> None:
        """Record the call's duration with its attributes (the observer interface;
        the timed drivers call :meth:`record` directly)."""
        self.record(event.operation, event.outcome, event.duration, event.error_type)

    def flush(self) -> None:
        """Add every queued duration to the histogram (called before each collection
        of the meter provider)."""
        for pending in list(self._pending.values()):
            self._drain(pending)

    def _add_batch(self, pending: _Pending) -> None:
        # Under the lock, one drainer at a time: other threads only append meanwhile,
        # so the first len() values are there to take.
        with self._lock:
            take = pending.popleft
            values = [take() for _ in range(len(pending))]
            bulk = self._bulk
            if not values:
                return
            if bulk is None:  # batches stopped (below) while this call queued its value
                for value in values:
                    self._record(value, pending.attributes)
                return
            try:
                bulk(pending.attributes, values)
                return
            except Exception:
                # SDK internals not as tested: never break the cache call for it.
                log.exception(
                    "cachecore: adding %d durations to the OpenTelemetry SDK's histogram "
                    "failed (they are not recorded); recording each call through its "
                    "public API from now on",
                    len(values),
                )
                self._bulk = None
        self.link_to_spans(self._linked)

    def _record_each(self, pending: _Pending) -> None:
        # Without batches: one public record per value, no lock (popleft is atomic).
        while True:
            try:
                value = pending.popleft()
            except IndexError:
                break
            self._record(value, pending.attributes)
        if self._look_in:
            self._look_in -= 1  # threads may race here: that only moves the next look
            if self._look_in <= 0:
                self._find_bulk()
