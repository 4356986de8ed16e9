"""``python -m benchmarks.stampede``: one hot key, many readers, a slow computation.

Threads, asyncio tasks and processes read one key whose computation takes 100 ms and
which expires every 2 s, for a number of expiries, once per strategy: cachecore's
``get_or_set`` with the lock, XFetch and stale-while-revalidate; the naive get-then-set
loop; dogpile.cache's region (its Redis backend with its distributed lock); and
Flask-Caching's ``memoize`` (its RedisCache), all on the same server (the newest Valkey
found, started here). The asyncio tasks run for cachecore only (the others have no
asyncio API). Per strategy it prints: computations per expiry, the reads that saw a
miss (waited for or ran a computation: 50 ms or more), p50/p99 read latency of reads
overlapping a computation ("window") and of the others ("steady"), and server commands
per read (``INFO commandstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

COMPUTE_SECONDS = 0.1
TIMEOUT = 2
PACE = 0.02
MISS_SECONDS = 0.05
STRATEGIES = ("naive", "dogpile", "flask-caching", "lock", "xfetch", "swr")
CACHECORE = {"lock": {}, "xfetch": {"strategy": "xfetch"}, "swr": {"stale_while_revalidate": 5}}


def _reader(strategy: str, url: str, prefix: str) -> Callable[[Callable[[], Any]], Any]:
    """A function reading the hot key with ``strategy``, given the computation."""
    import cachecore

    if strategy in CACHECORE:
        cache = cachecore.from_url(url, key_prefix=prefix)
        options = CACHECORE[strategy]
        return lambda compute: cache.get_or_set("hot", compute, TIMEOUT, **options)
    if strategy == "naive":
        cache = cachecore.from_url(url, key_prefix=prefix)

        def naive(compute: Callable[[], Any]) -> Any:
            value = cache.get("hot")
            if value is None:
                value = compute()
                cache.set("hot", value, TIMEOUT)
            return value

        return naive
    host, port = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    if strategy == "dogpile":
        from dogpile.cache import make_region

        region = make_region(key_mangler=lambda key: prefix + key).configure(
            "dogpile.cache.redis",
            expiration_time=TIMEOUT,
            arguments={
                "host": host,
                "port": int(port),
                "distributed_lock": True,
                "redis_expiration_time": TIMEOUT * 3,
                "lock_timeout": 10,
                "thread_local_lock": False,
            },
        )
        return lambda compute: region.get_or_create("hot", compute)
    from flask import Flask
    from flask_caching import Cache

    app = Flask(__name__)
    flask_cache = Cache(
        app,
        config={
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": f"redis://{host}:{port}/0",
            "CACHE_KEY_PREFIX": prefix,
            "CACHE_DEFAULT_TIMEOUT": TIMEOUT,
        },
    )
    holder: dict[str, Callable[[], Any]] = {}

    @flask_cache.memoize(TIMEOUT)
    def hot() -> Any:
        return holder["compute"]()

    def read(compute: Callable[[], Any]) -> Any:
        holder["compute"] = compute
        with app.app_context():
            return hot()

    return read


def _worker(
    strategy: str, url: str, prefix: str, stop_at: float, threads: int, tasks: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Run ``threads`` reading threads (and ``tasks`` asyncio tasks for cachecore) until
    ``stop_at``; returns the reads and the computations as (start, end) pairs."""
    reads: list[tuple[float, float]] = []
    computations: list[tuple[float, float]] = []
    read = _reader(strategy, url, prefix)

    def compute() -> bytes:
        started = time.time()
        time.sleep(COMPUTE_SECONDS)
        computations.append((started, time.time()))
        return b"x" * 100

    def loop() -> None:
        while time.time() < stop_at:
            started = time.time()
            read(compute)
            reads.append((started, time.time()))
            time.sleep(PACE)

    async def aloop(cache: Any) -> None:
        async def acompute() -> bytes:
            started = time.time()
            await asyncio.sleep(COMPUTE_SECONDS)
            computations.append((started, time.time()))
            return b"x" * 100

        while time.time() < stop_at:
            started = time.time()
            await cache.get_or_set("hot", acompute, TIMEOUT, **CACHECORE[strategy])
            reads.append((started, time.time()))
            await asyncio.sleep(PACE)

    async def amain() -> None:
        import cachecore.aio

        cache = cachecore.aio.from_url(url, key_prefix=prefix)
        await asyncio.gather(*(aloop(cache) for _ in range(tasks)))
        await cache.aclose()

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    if tasks and strategy in CACHECORE:
        workers.append(threading.Thread(target=asyncio.run, args=(amain(),)))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return reads, computations


def _commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(
    strategy: str, url: str, expiries: int, threads: int, tasks: int, processes: int
) -> dict[str, float]:
    """Run one strategy; returns its row of measurements."""
    import redis

    client = redis.Redis.from_url(url.replace("valkey://", "redis://"))
    prefix = f"stampede-{uuid.uuid4().hex[:6]}:"
    duration = expiries * TIMEOUT
    start_at = time.time() + 2.0
    stop_at = start_at + duration
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pending = [
            pool.apply_async(_worker, (strategy, url, prefix, stop_at, threads // 10, 0))
            for _ in range(processes)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        before = _commands(client)
        reads, computations = _worker(strategy, url, prefix, stop_at, threads, tasks)
        after = _commands(client)
        for result in pending:
            more_reads, more_computations = result.get()
            reads += more_reads
            computations += more_computations
    computations.sort()
    # Warm-up: every reader waits for the first value; measured from its end on.
    warm = computations[0][1] if computations else start_at
    reads = [(s, e) for s, e in reads if s > warm]
    # A generation: computations that overlap each other (a stampede's duplicates);
    # its span is the window in which reads count as "in the window".
    spans: list[list[float]] = []
    for s, e in computations:
        if spans and s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    starts = [s for s, _ in spans]
    in_window, steady = [], []
    for started, ended in reads:
        i = bisect.bisect_right(starts, ended) - 1  # the last span starting before the end
        overlaps = i >= 0 and spans[i][1] >= started
        (in_window if overlaps else steady).append((ended - started) * 1000)
    generations = len(spans)
    return {
        "computations/expiry": len(computations) / max(1, generations),
        "misses": sum(1 for s, e in reads if e - s >= MISS_SECONDS),
        "reads": len(reads),
        "p50 window ms": _percentile(in_window, 50),
        "p99 window ms": _percentile(in_window, 99),
        "p50 steady ms": _percentile(steady, 50),
        "p99 steady ms": _percentile(steady, 99),
        "commands/read": (after - before) / max(1, len(reads)),
    }


def main(argv: list[str] | None = None) -> int:
    """Start a server, run every strategy, print a Markdown table; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stampede")
    parser.add_argument("--quick", action="store_true", help="2 expiries, fewer readers")
    parser.add_argument("--expiries", type=int, default=30)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args(argv)
    from cachecore.testing.servers import ServerProcess, newest_server_binary

    expiries, threads, tasks, processes = (
        (2, 20, 20, 2) if args.quick else (args.expiries, 100, 100, 4)
    )
    server = ServerProcess(newest_server_binary("valkey"))
    server.start()
    try:
        url = server.url("valkey")
        print(
            f"{threads} threads + {tasks} asyncio tasks (cachecore only) + {processes} "
            f"processes x {threads // 10} threads; {COMPUTE_SECONDS * 1000:.0f} ms computation, "
            f"{TIMEOUT} s timeout, {expiries} expiries; "
            f"{server.binary.kind} {server.binary.version}\n"
        )
        columns = None
        for strategy in args.strategies.split(","):
            row = run(strategy, url, expiries, threads, tasks, processes)
            if columns is None:
                columns = list(row)
                print("| strategy | " + " | ".join(columns) + " |")
                print("|---" * (len(columns) + 1) + "|")
            cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
            print(f"| {strategy} | " + " | ".join(cells) + " |", flush=True)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
