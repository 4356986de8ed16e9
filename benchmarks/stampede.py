"""``python -m benchmarks.stampede``: one hot key, many readers, a slow computation.

100 threads and 100 asyncio tasks in this process, plus 4 processes of 10 threads each,
read one key whose computation takes 100 ms and which expires every 2 s, for 30
expiries, once per strategy: cachecore's ``get_or_set`` with the lock, XFetch and
stale-while-revalidate; the naive get-then-set loop; dogpile.cache's region (its Redis
backend with its distributed lock); and Flask-Caching's ``memoize`` (its RedisCache), all
on the same server (the newest Valkey found, started here). The asyncio tasks run for
cachecore and the naive loop (on ``cachecore.aio``); dogpile.cache and Flask-Caching have
no asyncio API. Per strategy it prints:

* computations per expiry (computations that overlap each other are one expiry's
  duplicates) and per 2 s of run time (XFetch refreshes early, so more often);
* misses: reads after the warm-up that returned a value computed after they started
  and either ran that computation themselves (except XFetch's early refreshes, made
  while the value was still fresh) or started when no value within its timeout was
  stored: they waited for a computation or ran one. A read served a stale value
  (stale-while-revalidate, dogpile.cache), or the current one while another caller
  refreshes early (XFetch), is not a miss;
* p50/p99 latency of the reads overlapping a computation ("window") and of the others
  ("steady");
* server commands per read (``INFO commandstats``).

Then it checks the goals: lock <= 1.0 computation per expiry; XFetch <= 1.1 and no miss;
stale-while-revalidate p99 in the window <= 2x the steady p99. ``--quick`` runs 2 expiries
with fewer readers (the tests' smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

COMPUTE_SECONDS = 0.1
TIMEOUT = 2
PACE = 0.1
"""Seconds each reader sleeps between reads (``--pace``): 240 readers then ask for about
2,400 reads/s, about half of what this 2-core machine serves when saturated (at 0.02 s
the readers queue for the CPU and every latency column measures that queue)."""
MISS_SECONDS = 0.05
STRATEGIES = ("naive", "dogpile", "flask-caching", "lock", "xfetch", "swr")
CACHECORE: dict[str, dict[str, Any]] = {
    "lock": {},
    "xfetch": {"strategy": "xfetch"},
    "swr": {"stale_while_revalidate": 5},
}
ASYNCIO = {"naive", *CACHECORE}
"""The strategies run by asyncio tasks too (the others have no asyncio API)."""


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
    holder = threading.local()  # each thread's read passes its own computation

    @flask_cache.memoize(TIMEOUT)
    def hot() -> Any:
        return holder.compute()

    def read(compute: Callable[[], Any]) -> Any:
        holder.compute = compute
        with app.app_context():
            return hot()

    return read


Read = tuple[float, float, str, bool]
"""A read: (start, end, id of the value it got, whether it ran the computation)."""
Computation = tuple[float, float, str]
"""A computation: (start, end, id of the value it made)."""


class _Recorder:
    """The reads and computations of one worker process; each value made carries an id
    (``pid:n``) so a read can tell which computation its value came from."""

    def __init__(self) -> None:
        self.reads: list[Read] = []
        self.computations: list[Computation] = []
        self._made = itertools.count()
        self._tag = f"{os.getpid()}:"

    def _make(self, started: float, mine: list[str]) -> bytes:
        made_id = self._tag + str(next(self._made))
        mine.append(made_id)
        self.computations.append((started, time.time(), made_id))
        return (made_id + "|").encode().ljust(100, b"x")

    def computer(self, mine: list[str]) -> Callable[[], bytes]:
        """The computation of one read (appends its value's id to ``mine``)."""

        def compute() -> bytes:
            started = time.time()
            time.sleep(COMPUTE_SECONDS)
            return self._make(started, mine)

        return compute

    def acomputer(self, mine: list[str]) -> Callable[[], Awaitable[bytes]]:
        """As :meth:`computer`, a coroutine function."""

        async def acompute() -> bytes:
            started = time.time()
            await asyncio.sleep(COMPUTE_SECONDS)
            return self._make(started, mine)

        return acompute

    def read(self, started: float, value: Any, mine: list[str]) -> None:
        """Record a read that started at ``started`` and got ``value``."""
        made_id = bytes(value).split(b"|", 1)[0].decode()
        self.reads.append((started, time.time(), made_id, bool(mine)))


def _worker(
    strategy: str,
    url: str,
    prefix: str,
    start_at: float,
    stop_at: float,
    threads: int,
    tasks: int,
    pace: float = PACE,
) -> tuple[list[Read], list[Computation]]:
    """Run ``threads`` reading threads (and ``tasks`` asyncio tasks where the strategy
    has an asyncio API) from ``start_at`` until ``stop_at``; returns the reads and the
    computations."""
    record = _Recorder()
    read = _reader(strategy, url, prefix)

    def loop() -> None:
        while time.time() < stop_at:
            mine: list[str] = []
            started = time.time()
            record.read(started, read(record.computer(mine)), mine)
            time.sleep(pace)

    async def aloop(cache: Any) -> None:
        while time.time() < stop_at:
            mine: list[str] = []
            acompute = record.acomputer(mine)
            started = time.time()
            if strategy == "naive":
                value = await cache.get("hot")
                if value is None:
                    value = await acompute()
                    await cache.set("hot", value, TIMEOUT)
            else:
                value = await cache.get_or_set("hot", acompute, TIMEOUT, **CACHECORE[strategy])
            record.read(started, value, mine)
            await asyncio.sleep(pace)

    async def amain() -> None:
        import cachecore.aio

        cache = cachecore.aio.from_url(url, key_prefix=prefix)
        await asyncio.gather(*(aloop(cache) for _ in range(tasks)))
        await cache.aclose()

    time.sleep(max(0.0, start_at - time.time()))
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    if tasks and strategy in ASYNCIO:
        workers.append(threading.Thread(target=asyncio.run, args=(amain(),)))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return record.reads, record.computations


def _ready(_: int) -> None:
    """Import in a pool process what its worker needs, before the clock starts."""
    import cachecore  # noqa: F401


def _commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(
    strategy: str,
    url: str,
    expiries: int,
    threads: int,
    tasks: int,
    processes: int,
    pace: float = PACE,
) -> dict[str, float]:
    """Run one strategy; returns its row of measurements."""
    import redis

    client = redis.Redis.from_url(url.replace("valkey://", "redis://"))
    prefix = f"stampede-{uuid.uuid4().hex[:6]}:"
    duration = expiries * TIMEOUT
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        # Start everyone at once, once the processes are up (spawning imports anew).
        pool.map(_ready, range(processes), chunksize=1)
        start_at = time.time() + 0.5
        stop_at = start_at + duration
        pending = [
            pool.apply_async(
                _worker, (strategy, url, prefix, start_at, stop_at, threads // 10, 0, pace)
            )
            for _ in range(processes)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        before = _commands(client)
        reads, computations = _worker(
            strategy, url, prefix, start_at, stop_at, threads, tasks, pace
        )
        after = _commands(client)
        for result in pending:
            more_reads, more_computations = result.get()
            reads += more_reads
            computations += more_computations
    return measure(reads, computations, expiries, after - before, strategy == "xfetch")


def measure(
    reads: list[Read],
    computations: list[Computation],
    expiries: int,
    commands: int,
    early: bool = False,
) -> dict[str, float]:
    """The row of one strategy from what its readers saw (see the module docstring);
    ``early``: the strategy refreshes before expiry (XFetch), so a reader that computed
    while the value was fresh refreshed early rather than missed."""
    computations = sorted(computations)
    made = {made_id: (s, e) for s, e, made_id in computations}
    # Warm-up: every reader waits for the first value; measured from its end on.
    warm = computations[0][1] if computations else 0.0
    reads = [r for r in reads if r[0] > warm]
    ends = sorted(e for _, e, _ in computations)

    def fresh_at(moment: float) -> bool:
        """Whether a value stored before ``moment`` was still within its timeout then."""
        i = bisect.bisect_right(ends, moment) - 1
        return i >= 0 and moment < ends[i] + TIMEOUT

    misses = 0
    for started, _, value_id, computed in reads:
        _, stored = made.get(value_id, (0.0, 0.0))
        if stored <= started:
            continue  # a value stored before the read: a hit (fresh or stale)
        if computed and not early:
            misses += 1  # it found no value under its key (Flask-Caching's keys change)
        elif not fresh_at(started):
            misses += 1  # no fresh value: it waited for a computation or ran one
    # (otherwise a fresh value existed: it read a newer one, or refreshed early)
    # Computations that overlap each other are one expiry's (a stampede's duplicates);
    # their span is the window in which reads count as "in the window".
    spans: list[list[float]] = []
    for s, e, _ in computations:
        if spans and s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    starts = [s for s, _ in spans]
    in_window: list[float] = []
    steady: list[float] = []
    for started, ended, _, _ in reads:
        i = bisect.bisect_right(starts, ended) - 1  # the last span starting before the end
        overlaps = i >= 0 and spans[i][1] >= started
        (in_window if overlaps else steady).append((ended - started) * 1000)
    return {
        "comp/expiry": len(computations) / max(1, len(spans)),
        "comp/2s": len(computations) / max(1, expiries),
        "misses": misses,
        "reads": len(reads),
        "p50 window ms": _percentile(in_window, 50),
        "p99 window ms": _percentile(in_window, 99),
        "p50 steady ms": _percentile(steady, 50),
        "p99 steady ms": _percentile(steady, 99),
        "cmds/read": commands / max(1, len(reads)),
    }


def goals(rows: dict[str, dict[str, float]]) -> list[tuple[str, bool]]:
    """The issue's goals, each with whether these rows meet it (absent rows are skipped)."""
    checks: list[tuple[str, bool]] = []
    if "lock" in rows:
        checks.append(("lock: <= 1.0 computation/expiry", rows["lock"]["comp/expiry"] <= 1.0))
    if "xfetch" in rows:
        row = rows["xfetch"]
        checks.append(("xfetch: <= 1.1 computation/expiry", row["comp/expiry"] <= 1.1))
        checks.append(("xfetch: no miss after warm-up", row["misses"] == 0))
    if "swr" in rows:
        row = rows["swr"]
        met = row["p99 window ms"] <= 2 * row["p99 steady ms"]
        checks.append(("swr: p99 window <= 2x p99 steady", met))
    return checks


def main(argv: list[str] | None = None) -> int:
    """Start a server, run every strategy, print a Markdown table; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stampede")
    parser.add_argument("--quick", action="store_true", help="2 expiries, fewer readers")
    parser.add_argument("--expiries", type=int, default=30)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--pace", type=float, default=PACE, help=f"seconds between reads (default {PACE})"
    )
    args = parser.parse_args(argv)
    from cachecore.testing.servers import ServerProcess, newest_server_binary

    expiries, threads, tasks, processes = (
        (2, 20, 20, 2) if args.quick else (args.expiries, 100, 100, 4)
    )
    binary = newest_server_binary("valkey")
    if binary is None:
        parser.error("no valkey-server binary found")
    server = ServerProcess(binary)
    server.start()
    try:
        url = server.url("valkey")
        print(
            f"{threads} threads + {tasks} asyncio tasks (cachecore and naive) + {processes} "
            f"processes x {threads // 10} threads; {COMPUTE_SECONDS * 1000:.0f} ms computation, "
            f"{TIMEOUT} s timeout, {expiries} expiries, a read every {args.pace} s per reader; "
            f"{server.binary.kind} {server.binary.version}\n"
        )
        rows: dict[str, dict[str, float]] = {}
        for strategy in args.strategies.split(","):
            row = rows[strategy] = run(
                strategy, url, expiries, threads, tasks, processes, args.pace
            )
            if len(rows) == 1:
                print("| strategy | " + " | ".join(row) + " |")
                print("|---" * (len(row) + 1) + "|")
            cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
            print(f"| {strategy} | " + " | ".join(cells) + " |", flush=True)
        print()
        for goal, met in goals(rows):
            print(f"{'met' if met else 'NOT MET'}: {goal}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
