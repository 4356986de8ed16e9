"""``python -m benchmarks.aio``: the asyncio cache against the raw asyncio client.

For redis-py's and valkey-py's asyncio clients, two columns share ONE client object
built by ``cachecore.aio.from_url`` (cachecore's client defaults): ``cachecore`` (the
asyncio cache) and ``raw`` (that client called directly, decoding what it reads as a
raw-client user must). Rows: single-key calls, ``get_many`` of 100 str against
``MGET`` + decode (the issue's baseline: raw values stored as UTF-8 text) and against
``MGET`` + ``pickle.loads`` of the very bytes cachecore stores (cachelib's wire format
pickles str, so that is the work cachecore cannot skip), and 100 concurrent tasks doing
``get``. Measured with the blocking
suite's harness (:mod:`cachecore.bench.harness`: interleaved rounds, median of paired
ratios), the process and the server pinned to one CPU. Prints a table per library.

``--clock wall`` (the default) times each chunk of calls by the wall clock: the
throughput a dedicated CPU gives. ``--clock cpu`` counts the CPU time the chunk cost the
benchmark process and the server together (``/proc/<pid>/task/*/schedstat``): on a
machine shared with other work, whose share of the CPU varies from one cell to the
next, it resolves differences of 1-2 % that the wall clock buries in noise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter, process_time
from typing import Any

import cachecore.aio
from cachecore.bench.harness import measure, paired_ratio
from cachecore.bench.workloads import MANY_KEYS, SINGLE_KEYS, str_value
from cachecore.testing.servers import ServerProcess, find_server_binaries

Runner = Callable[[int], float]
Op = Callable[[int], Awaitable[Any]]

ROWS: list[tuple[str, str, float]] = [
    ("get", "client.get(k) + decode", 0.98),
    ("set", "client.set(k, v, ex=300)", 0.98),
    ("has", "client.exists(k)", 0.98),
    ("inc", "client.incrby(k, 1)", 0.98),
    ("get_many 100 str", "client.mget(keys) + decode", 0.90),
    ("get_many 100 pickled", "client.mget(keys) + pickle.loads", 0.90),
    ("100 tasks get", "gather(100 x client.get(k) + decode)", 1.00),
]
"""(row, raw baseline, goal: the cachecore/raw ratio the issue asks for)."""


class CpuClock:
    """Seconds of CPU run by this process and by the threads of ``server_pid``."""

    def __init__(self, server_pid: int) -> None:
        tasks = f"/proc/{server_pid}/task"
        self._files = [
            os.open(f"{tasks}/{tid}/schedstat", os.O_RDONLY) for tid in os.listdir(tasks)
        ]

    def __call__(self) -> float:
        server = sum(int(os.pread(fd, 64, 0).split()[0]) for fd in self._files)
        return process_time() + server / 1e9

    def close(self) -> None:
        for fd in self._files:
            os.close(fd)


def _timed(loop: asyncio.AbstractEventLoop, op: Op, clock: Callable[[], float]) -> Runner:
    async def calls(n: int) -> float:
        start = clock()
        for i in range(n):
            await op(i)
        return clock() - start

    return lambda n: loop.run_until_complete(calls(n))


def _decode(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def columns(
    cache: Any, loop: asyncio.AbstractEventLoop, prefix: str, clock: Callable[[], float]
) -> dict[str, tuple[Runner, Runner]]:
    """(cachecore runner, raw runner) per row, on keys filled first."""
    client = cache.client
    keys = [f"k{i}" for i in range(SINGLE_KEYS)]
    raw_keys = [f"{prefix}raw:{k}" for k in keys]
    many = keys[:MANY_KEYS]
    raw_many = raw_keys[:MANY_KEYS]

    async def fill() -> None:
        await cache.set_many({k: str_value(i) for i, k in enumerate(keys)})
        await client.mset({k: str_value(i) for i, k in enumerate(raw_keys)})

    loop.run_until_complete(fill())
    size = len(keys)

    async def cc_tasks(_: int) -> Any:
        return await asyncio.gather(*(cache.get(k) for k in many))

    async def raw_tasks(_: int) -> Any:
        return [_decode(v) for v in await asyncio.gather(*(client.get(k) for k in raw_many))]

    async def raw_get(i: int) -> Any:
        return _decode(await client.get(raw_keys[i % size]))

    async def raw_mget(_: int) -> Any:
        return [_decode(v) for v in await client.mget(raw_many)]

    stored_many = [f"{prefix}{k}" for k in many]  # the cache's own keys and bytes

    async def raw_mget_pickled(_: int) -> Any:
        loads = pickle.loads
        return [None if v is None else loads(v[1:]) for v in await client.mget(stored_many)]

    value = str_value(1)
    raw_value = b"!" + pickle.dumps(value, -1)
    ops: dict[str, tuple[Op, Op]] = {
        "get": (lambda i: cache.get(keys[i % size]), raw_get),
        "set": (
            lambda i: cache.set(f"set{i % size}", value),
            lambda i: client.set(f"{prefix}raw:set{i % size}", raw_value, ex=300),
        ),
        "has": (lambda i: cache.has(keys[i % size]), lambda i: client.exists(raw_keys[i % size])),
        "inc": (lambda i: cache.inc("n"), lambda i: client.incrby(f"{prefix}raw:n", 1)),
        "get_many 100 str": (lambda i: cache.get_many(*many), raw_mget),
        "get_many 100 pickled": (lambda i: cache.get_many(*many), raw_mget_pickled),
        "100 tasks get": (cc_tasks, raw_tasks),
    }
    return {row: (_timed(loop, a, clock), _timed(loop, b, clock)) for row, (a, b) in ops.items()}


def run(
    url: str,
    label: str,
    rounds: int,
    slice_seconds: float,
    clock: Callable[[], float] = perf_counter,
    coalesce_reads: bool = True,
) -> list[str]:
    """Measure every row for one library; return the table's lines."""
    loop = asyncio.new_event_loop()
    prefix = f"cachecore-bench:{secrets.token_hex(4)}:"
    cache = cachecore.aio.from_url(url, key_prefix=prefix, coalesce_reads=coalesce_reads)
    lines = [
        f"{label}: cachecore.aio vs raw asyncio client",
        f"{'row':<20} {'raw baseline':<38} {'cc ops/s':>9} {'raw ops/s':>9} ratio  goal",
    ]
    try:
        for (row, baseline, goal), (cc, raw) in zip(
            ROWS, columns(cache, loop, prefix, clock).values(), strict=True
        ):
            samples = measure({"cc": cc, "raw": raw}, rounds=rounds, slice_seconds=slice_seconds)
            ratio, spread = paired_ratio(samples["cc"], samples["raw"])
            cc_ops = sorted(samples["cc"])[len(samples["cc"]) // 2]
            raw_ops = sorted(samples["raw"])[len(samples["raw"]) // 2]
            flag = "" if ratio + spread >= goal else "  below goal"
            lines.append(
                f"{row:<20} {baseline:<38} {cc_ops:>9,.0f} {raw_ops:>9,.0f} "
                f"{ratio:.2f}x ±{spread:.2f} {goal:.2f}{flag}"
            )
            print(lines[-1], file=sys.stderr)

        async def cleanup() -> None:
            await cache.clear()
            await cache.aclose()

        loop.run_until_complete(cleanup())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aio", description=__doc__)
    parser.add_argument("--server", default="valkey-9.1", help="server binary id prefix")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--slice", type=float, default=0.15, help="seconds per cell per round")
    parser.add_argument("--libraries", default="valkey,redis", help="URL schemes to measure")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time chunks by the wall clock, or by the CPU time of this process + the server",
    )
    parser.add_argument(
        "--no-coalesce",
        action="store_true",
        help="build the cache with coalesce_reads=false (concurrent gets sent one by one)",
    )
    args = parser.parse_args(argv)
    binary = next((b for b in find_server_binaries() if b.id.startswith(args.server)), None)
    if binary is None:
        parser.error(f"no server binary {args.server!r}")
    cpu = max(os.sched_getaffinity(0))
    with ServerProcess(binary) as server:
        assert server.pid is not None
        for pid in (0, server.pid):
            os.sched_setaffinity(pid, {cpu})
        cpu_clock = CpuClock(server.pid) if args.clock == "cpu" else None
        clock = perf_counter if cpu_clock is None else cpu_clock
        output = [
            f"server {binary.id}, client and server pinned to CPU {cpu}, "
            f"{args.clock} clock, {args.rounds} rounds"
        ]
        try:
            for scheme in args.libraries.split(","):
                library = "redis-py" if scheme == "redis" else "valkey-py"
                output += [
                    "",
                    *run(
                        server.url(scheme),
                        library,
                        args.rounds,
                        args.slice,
                        clock,
                        coalesce_reads=not args.no_coalesce,
                    ),
                ]
        finally:
            if cpu_clock is not None:
                cpu_clock.close()
    print("\n".join(output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
