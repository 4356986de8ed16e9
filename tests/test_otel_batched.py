"""The batched OpenTelemetry histogram: what a reader exports must be what one public
``Histogram.record`` per call would have given, whatever the readers and views."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

import cachecore
from cachecore import observability
from cachecore.adapters import otel_sdk
from cachecore.otel import BATCH, DURATION, DURATION_BOUNDARIES, OtelMetrics

DELTA: dict[type, AggregationTemporality] = {Histogram: AggregationTemporality.DELTA}

# The calls each test replays: (operation, outcome, error, seconds). Durations on the
# bucket bounds themselves are included: a bound belongs to the bucket it closes.
_rng = random.Random(15)
CALLS: list[tuple[str, str, str | None, float]] = [
    (
        _rng.choice(["get", "set", "get_many"]),
        _rng.choice(["hit", "miss", "ok"]),
        None,
        _rng.choice([*DURATION_BOUNDARIES, 0.0, 7.5, _rng.expovariate(2000)]),
    )
    for _ in range(3 * BATCH + 77)
] + [("get", "fault", "timeout", 1.0)] * 3


def _readers(kind: str) -> list[InMemoryMetricReader]:
    if kind == "delta":
        return [InMemoryMetricReader(preferred_temporality=DELTA)]
    if kind == "two readers":
        return [InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)]
    return [InMemoryMetricReader()]


VIEWS: dict[str, list[View]] = {
    "no view": [],
    "other bounds": [
        View(
            instrument_name=DURATION,
            aggregation=ExplicitBucketHistogramAggregation((0.0005, 0.001, 0.01)),
        )
    ],
    "no min or max": [
        View(
            instrument_name=DURATION,
            aggregation=ExplicitBucketHistogramAggregation(
                DURATION_BOUNDARIES, record_min_max=False
            ),
        )
    ],
    "attribute filter": [
        View(instrument_name=DURATION, attribute_keys={"cachecore.operation.name"})
    ],
    "renamed": [View(instrument_name=DURATION, name="cache.latency")],
    "exponential": [
        View(instrument_name=DURATION, aggregation=ExponentialBucketHistogramAggregation())
    ],
    "dropped": [View(instrument_name=DURATION, aggregation=DropAggregation())],
}


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[Any]], dict[str, Any]]:
    """The histogram points a collection gives, by metric name and attributes, with
    the fields a reader exports (times left out: the two providers differ there)."""
    found: dict[tuple[str, frozenset[Any]], dict[str, Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if not metric.name.startswith(("cachecore.operation", "cache.latency")):
                    continue
                for point in metric.data.data_points:
                    fields = {
                        name: getattr(point, name)
                        for name in ("count", "bucket_counts", "explicit_bounds", "min", "max")
                        if hasattr(point, name)
                    }
                    for name in ("scale", "zero_count", "positive", "negative"):
                        if hasattr(point, name):
                            fields[name] = str(getattr(point, name))
                    fields["sum"] = pytest.approx(getattr(point, "sum", None), rel=1e-9)
                    found[(metric.name, frozenset((point.attributes or {}).items()))] = fields
    return found


def _observer(readers: list[InMemoryMetricReader], views: list[View]) -> OtelMetrics:
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}")
    return OtelMetrics(cache, MeterProvider(metric_readers=readers, views=views))


def _one_record_per_call(observer: OtelMetrics) -> OtelMetrics:
    observer.link_to_spans(True)  # what a traced cache does: one record per call
    return observer


def _replay(observer: OtelMetrics, calls: list[tuple[str, str, str | None, float]]) -> None:
    for operation, outcome, error, seconds in calls:
        if error is None and operation == "get":
            observer.answered(operation, outcome == "miss", seconds, "k")
        else:
            observer.record(operation, outcome, seconds, error)


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("readers", ["cumulative", "delta", "two readers"])
def test_batches_export_what_one_record_per_call_would(readers: str, view: str) -> None:
    batched_readers, each_readers = _readers(readers), _readers(readers)
    batched = _observer(batched_readers, VIEWS[view])
    each = _one_record_per_call(_observer(each_readers, VIEWS[view]))
    assert batched._batch == BATCH, "the SDK installed here should get batches"
    # Collections between the calls: some values are still queued at each of them
    # (they must be in it), and delta readers discard their aggregations in between.
    for part in (CALLS[:100], CALLS[100 : 2 * BATCH + 10], CALLS[2 * BATCH + 10 :]):
        _replay(batched, part)
        _replay(each, part)
        for mine, theirs in zip(batched_readers, each_readers, strict=True):
            expected = _points(theirs)
            assert _points(mine) == expected
            if view != "dropped":
                assert expected, "the comparison saw no histogram points"


def test_concurrent_calls_and_collections_lose_no_duration() -> None:
    reader = InMemoryMetricReader(preferred_temporality=DELTA)
    observer = _observer([reader], [])
    threads, calls = 8, 5000
    counted: list[int] = []
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            counted.append(sum(point["count"] for point in _points(reader).values()))

    def call() -> None:
        for index in range(calls):
            observer.answered("get", index % 3 == 0, 0.0001, "k")

    collector = threading.Thread(target=collect)
    collector.start()
    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    collector.join()
    counted.append(sum(point["count"] for point in _points(reader).values()))
    assert len(counted) > 2, "no collection ran while the threads called"
    assert sum(counted) == threads * calls


def test_an_untested_sdk_version_records_each_call_through_the_public_api(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(otel_sdk, "sdk_version", lambda: (1, 99, 0))
    caplog.set_level(logging.DEBUG, logger="cachecore")
    reader, expected_reader = InMemoryMetricReader(), InMemoryMetricReader()
    observer = _observer([reader], [])
    assert observer._batch == 1
    assert "outside the versions its batched histogram was tested with" in caplog.text
    expected = _one_record_per_call(_observer([expected_reader], []))
    _replay(observer, CALLS)
    _replay(expected, CALLS)
    assert _points(reader) == _points(expected_reader)


def test_a_provider_without_the_sdk_gets_one_record_per_call() -> None:
    recorded: list[tuple[float, dict[str, str]]] = []

    class Histogram:
        def record(self, amount: float, attributes: dict[str, str]) -> None:
            recorded.append((amount, dict(attributes)))

    class Meter:
        def create_histogram(self, *args: Any, **kwargs: Any) -> Histogram:
            return Histogram()

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None  # the observable instruments

    class Provider:
        def get_meter(self, *args: Any, **kwargs: Any) -> Meter:
            return Meter()

    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}")
    observer = OtelMetrics(cache, Provider())
    observer.answered("get", True, 0.25, "k")
    assert recorded == [
        (
            0.25,
            {
                "cachecore.operation.name": "get",
                "cachecore.operation.outcome": "miss",
                "db.system.name": "memory",
            },
        )
    ]


def test_a_meter_disabled_while_durations_are_queued_exports_none_of_them() -> None:
    # The SDK's meter configurator (opentelemetry-sdk 1.42+, experimental) can switch
    # a meter off at run time: the queued durations must not reach the histogram.
    from opentelemetry.sdk.metrics._internal import _disable_meter_configurator

    reader = InMemoryMetricReader()
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}")
    provider = MeterProvider(metric_readers=[reader])
    observer = OtelMetrics(cache, provider)
    _replay(observer, CALLS[:10])
    assert sum(point["count"] for point in _points(reader).values()) == 10
    _replay(observer, CALLS[10:20])
    provider._set_meter_configurator(meter_configurator=_disable_meter_configurator)
    # Enough calls to fill two batches, added while the meter is off.
    for _ in range(2 * BATCH):
        observer.answered("get", False, 0.001, "k")
    # A cumulative reader keeps the first ten; none of the others reach it.
    assert sum(point["count"] for point in _points(reader).values()) == 10


def test_a_traced_cache_records_each_call_inside_its_span_with_an_exemplar() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    cache = cachecore.from_url(
        f"memory://{uuid.uuid4().hex}",
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=tracer_provider,
    )
    cache.get("user:1")
    (span,) = spans.get_finished_spans()
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == DURATION
        for point in metric.data.data_points
    ]
    assert getattr(point, "count", None) == 1
    assert span.context is not None
    assert [exemplar.trace_id for exemplar in point.exemplars] == [span.context.trace_id]


def test_durations_queued_by_a_cache_that_went_away_are_exported() -> None:
    import gc

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}", meter_provider=provider)
    for _ in range(10):
        cache.get("k")
    del cache
    gc.collect()
    assert sum(point["count"] for point in _points(reader).values()) == 10


def test_a_cache_made_before_the_global_meter_provider_batches_once_it_is_set() -> None:
    # An application often builds its caches (metrics=true: the global provider) at
    # import, before it sets its meter provider. The API's stand-in drops what is
    # recorded until then; afterwards every call must reach the real provider, in
    # batches once cachecore notices it.
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    stand_in = _ProxyMeterProvider()
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}", meter_provider=stand_in)
    cache.set("k", 1)
    (observer,) = [r for r in observability.observers_of(cache) if isinstance(r, OtelMetrics)]
    for _ in range(10):
        cache.get("k")
    reader = InMemoryMetricReader()
    stand_in.on_set_meter_provider(MeterProvider(metric_readers=[reader]))
    for _ in range(3 * BATCH):
        cache.get("k")
    assert observer._batch == BATCH, "still one record per call"
    points = _points(reader)
    assert sum(point["count"] for point in points.values()) == 3 * BATCH
    lookups = [
        metric
        for resource in (reader.get_metrics_data() or MetricsData([])).resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "cachecore.lookups"
    ]
    assert lookups, "the counters did not reach the real provider"


def test_a_failing_batch_is_logged_and_later_calls_use_the_public_api(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    observer = _observer([reader], [])

    def broken(attributes: Any, values: Any) -> None:
        raise AttributeError("an SDK whose internals changed")

    observer._bulk = broken
    for _ in range(BATCH):  # the cache call that fills a batch must not raise
        observer.answered("get", False, 0.001, "k")
    assert f"adding {BATCH} durations" in caplog.text
    for _ in range(10):
        observer.answered("get", False, 0.001, "k")
    assert sum(point["count"] for point in _points(reader).values()) == 10
