"""``python -m benchmarks.django_cache``: Django's ``cache.get`` / ``cache.set`` through
``CachecoreCache`` against Django's own ``RedisCache`` and django-redis, interleaved.

Every column is a Django cache backend object, called exactly as Django code calls
``caches["default"]``, on the same server (a throwaway Valkey 9.1 unless ``--server`` or
``--url`` says otherwise), each under its own ``KEY_PREFIX`` of equal length:

* ``cachecore-redis`` / ``cachecore-valkey``: ``cachecore.contrib.django.CachecoreCache``
  with a ``redis://`` (redis-py) or ``valkey://`` (valkey-py) LOCATION;
* ``django``: ``django.core.cache.backends.redis.RedisCache`` (redis-py);
* ``django-redis``: ``django_redis.cache.RedisCache`` (redis-py, its default client).

Every backend uses its default options (pickled values, the client's default parser:
hiredis when installed). The process and the server are pinned to one CPU, as in
``python -m benchmarks``. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.suite import DEFAULT_SERVER, choose_binary, pin
from cachecore.bench.harness import measure, paired_ratio
from cachecore.bench.workloads import SINGLE_KEYS, VALUE_TIMEOUT, WORKLOADS, Runner, key_names
from cachecore.testing.servers import ServerProcess, find_server_binaries

COLUMNS = ("cachecore-redis", "cachecore-valkey", "django", "django-redis")
BASELINES = ("django", "django-redis")
GOAL = 1.0
"""Each cachecore column against each baseline: at least as fast."""

ROWS = ("get", "set")


@dataclass(frozen=True)
class RowResult:
    """One row: median ops/s per column, and cachecore / baseline paired ratios."""

    row: str
    ops: dict[str, float]
    ratios: dict[str, float]
    spreads: dict[str, float]


def _configure_django() -> None:
    from django.conf import settings

    # django-redis reads its options from settings; the defaults are what we measure.
    if not settings.configured:
        settings.configure()


def make_backends(url: str, prefix: str) -> dict[str, Any]:
    """The four Django backends on the server at ``url`` (a ``redis://`` URL), each under
    ``prefix`` plus a two-letter tag (equal key lengths)."""
    from django.core.cache.backends.redis import RedisCache
    from django_redis.cache import RedisCache as DjangoRedisCache

    from cachecore.contrib.django import CachecoreCache

    valkey_url = "valkey" + url[url.index("://") :]

    def params(tag: str) -> dict[str, Any]:
        return {"KEY_PREFIX": f"{prefix}{tag}", "TIMEOUT": VALUE_TIMEOUT}

    return {
        "cachecore-redis": CachecoreCache(url, params("cr")),
        "cachecore-valkey": CachecoreCache(valkey_url, params("cv")),
        "django": RedisCache(url, params("dj")),
        "django-redis": DjangoRedisCache(url, params("dr")),
    }


def _cache_api_runner(row: str) -> Callable[[Any], Runner]:
    """The repository benchmark's runner of ``row`` (:data:`WORKLOADS`), which drives
    anything with the cache API's call shapes: ``get(k)``, ``set(k, v)`` (the backend's
    default timeout) and, for setup, ``set_many(dict)``."""
    build = next(w.cache_runner for w in WORKLOADS if w.name == row)
    return lambda cache: build(cache, None, "")


RUNNERS: dict[str, Callable[[Any], Runner]] = {row: _cache_api_runner(row) for row in ROWS}


def run_rows(
    backends: dict[str, Any],
    rounds: int,
    slice_seconds: float,
    rows: Sequence[str] = ROWS,
    baselines: Sequence[str] = BASELINES,
) -> list[RowResult]:
    """Measure each row on every backend, interleaved; the ratio of each cachecore column
    (a name starting with ``cachecore``) to each of ``baselines``."""
    results = []
    for row in rows:
        columns = {name: RUNNERS[row](cache) for name, cache in backends.items()}
        samples = measure(columns, rounds=rounds, slice_seconds=slice_seconds)
        ratios: dict[str, float] = {}
        spreads: dict[str, float] = {}
        for ours in (c for c in backends if c.startswith("cachecore")):
            for base in (b for b in baselines if b in backends):
                ratio, spread = paired_ratio(samples[ours], samples[base])
                ratios[f"{ours}/{base}"] = ratio
                spreads[f"{ours}/{base}"] = spread
        ops = {name: statistics.median(values) for name, values in samples.items()}
        results.append(RowResult(row, ops, ratios, spreads))
    return results


def format_table(results: Sequence[RowResult]) -> str:
    """The rows as a Markdown table: ops/s per column, then each ratio with its spread."""
    if not results:
        return ""
    columns = list(results[0].ops)
    pairs = list(results[0].ratios)
    header = ["row", *(f"{c} ops/s" for c in columns), *pairs, "goal met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        met = all(v >= GOAL for v in r.ratios.values())
        cells = [r.row, *(f"{r.ops[c]:,.0f}" for c in columns)]
        cells += [f"{r.ratios[p]:.2f}x ±{r.spreads[p]:.2f}" for p in pairs]
        cells.append("yes" if met else f"no (goal >= {GOAL:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def server_url(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """A ``redis://`` URL of the server to measure on, and how it was pinned."""
    if args.url:
        yield args.url, "not pinned (--url)"
        return
    binary = choose_binary(args.server, find_server_binaries())
    with ServerProcess(binary) as server:
        cpu = max(os.sched_getaffinity(0))
        pinning = "not pinned" if args.no_pin else pin(cpu, server.pid).description
        yield server.url("redis"), f"{binary.id}; {pinning}"


def parse_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options of a framework benchmark (``--server``/``--url``, ``--rounds``,
    ``--slice``, ``--no-pin``), parsed from ``argv``."""
    parser = argparse.ArgumentParser(prog=prog)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", default=DEFAULT_SERVER, help="server binary id (prefix)")
    where.add_argument("--url", help="a running server (redis://...); keys under a random prefix")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per row")
    parser.add_argument("--slice", type=float, default=0.18, help="seconds per cell per round")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("python -m benchmarks.django_cache", argv)
    _configure_django()
    prefix = f"cachecore-bench:{os.urandom(4).hex()}:"
    with server_url(args) as (url, where_text):
        backends = make_backends(url, prefix)
        try:
            results = run_rows(backends, args.rounds, args.slice)
        finally:
            for cache in backends.values():
                cache.delete_many([k for row in ROWS for k in key_names(row, SINGLE_KEYS)])
    print(f"Django cache backends on {where_text}; {args.rounds} rounds x {args.slice} s")
    print(format_table(results))
    print(json.dumps({"django": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
