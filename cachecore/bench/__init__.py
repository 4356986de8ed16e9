"""How fast is cachecore against the raw client it wraps, on your own server?

:func:`main_bench` backs the ``cachecore bench [URL]`` command: the workloads below,
each against cachecore and against the bare client library (redis-py, valkey-py...) on
the *same client object*, in interleaved rounds, within a time budget (default twenty
seconds, setup included), then a small table::

    from cachecore.bench import main_bench
    main_bench("valkey://localhost:6379/0", sys.stdout)

It is safe on a server that holds other data: every key it writes lives under
``cachecore-bench:<random>:`` (after the cache's own ``key_prefix``), carries a TTL of
at most :data:`VALUE_TIMEOUT` seconds, and only that prefix is removed afterwards, by
SCAN + UNLINK. It never flushes a database and never changes server configuration.

The pieces are public so the repository's fuller benchmark (``python -m benchmarks``,
which also runs cachelib and its own pinned server) uses the same definitions:
:mod:`cachecore.bench.workloads` (the jobs, cache and raw baseline side by side),
:mod:`cachecore.bench.harness` (interleaved, paired measurement) and
:mod:`cachecore.bench.run` (``run_bench``, ``main_bench`` and the table).
"""

from cachecore.bench.harness import measure, measure_until, paired_ratio
from cachecore.bench.run import (
    BENCH_PREFIX,
    DEFAULT_SECONDS,
    MAX_SECONDS,
    MIN_SECONDS,
    Row,
    bench_document,
    main_bench,
    report_bench,
    run_bench,
)
from cachecore.bench.workloads import VALUE_TIMEOUT, WORKLOADS, Workload, raw_clear

__all__ = [
    "BENCH_PREFIX",
    "DEFAULT_SECONDS",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "VALUE_TIMEOUT",
    "WORKLOADS",
    "Row",
    "Workload",
    "bench_document",
    "main_bench",
    "measure",
    "measure_until",
    "paired_ratio",
    "raw_clear",
    "report_bench",
    "run_bench",
]
