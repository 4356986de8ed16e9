"""The near-cache rows: hot reads served from process memory, and the invalidation lag.

Per plugin, three columns of each row, interleaved like every other row:

* ``near``: a cache built by ``cachecore.from_url(..., near_cache=True)`` (its own client:
  a :class:`cachecore.near_cache.NearCacheClient` with a background invalidation thread),
  reading :data:`HOT_KEYS` keys that were read before, so every call is a local hit;
* ``plain``: the plugin's ordinary cachecore cache doing the same calls on the server;
* ``raw``: the plugin's client called directly (the same baselines as the main rows).

The invalidation lag is measured separately (see :func:`measure_lag`): a write by another
client, then the time until the near cache's ``get`` returns the new value.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from cachecore.bench.workloads import (
    VALUE_TIMEOUT,
    Runner,
    Workload,
    fill_raw,
    key_names,
    str_value,
)

HOT_KEYS = 100
"""Keys of the hot set every near row reads (all of them local hits after warm-up)."""

CYCLE = 1000
"""Calls a single-key runner can make per chunk: the hot keys, cycled."""

LAG_WRITES = 200
"""Writes per invalidation-lag measurement."""

LAG_GAP = 0.010
"""Mean pause (s) between two writes of the other process (uniform in 0.5x..1.5x)."""

READY_TIMEOUT = 5.0
"""Seconds to wait for the near cache's invalidation connections."""

STRICT = frozenset({"get_many[near]"})
"""Rows whose goal is "ahead of raw": the ratio must exceed the goal, not just reach it."""


def _warm(cache: Any, keys: list[str]) -> None:
    """Store the hot values and read each twice (the second read is a local hit)."""
    cache.set_many({k: str_value(i) for i, k in enumerate(keys)})
    for _ in range(2):
        for i, key in enumerate(keys):
            if cache.get(key) != str_value(i):
                raise RuntimeError(f"near-cache setup: wrong value for {key!r}")


def _cache_hot_get(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("nget", HOT_KEYS)
    _warm(cache, keys)
    cycle = (keys * (CYCLE // HOT_KEYS + 1))[:CYCLE]
    get = cache.get

    def run(n: int) -> float:
        batch = cycle[:n]
        start = perf_counter()
        for key in batch:
            get(key)
        return perf_counter() - start

    return run


def _raw_hot_get(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("nget", HOT_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    cycle = (keys * (CYCLE // HOT_KEYS + 1))[:CYCLE]
    get = client.get

    def run(n: int) -> float:
        batch = cycle[:n]
        start = perf_counter()
        for key in batch:
            value = get(key)
            if value is not None:
                value.decode()
        return perf_counter() - start

    return run


def _cache_hot_get_many(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("ngm", HOT_KEYS)
    _warm(cache, keys)
    if cache.get_many(*keys)[-1] != str_value(HOT_KEYS - 1):
        raise RuntimeError("near-cache setup: get_many returned a wrong value")
    get_many = cache.get_many

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            get_many(*keys)
        return perf_counter() - start

    return run


def _raw_hot_mget(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("ngm", HOT_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    mget = client.mget

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            [None if v is None else v.decode() for v in mget(keys)]
        return perf_counter() - start

    return run


def _cache_hot_set(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("nset", HOT_KEYS)
    _warm(cache, keys)
    cycle = (keys * (CYCLE // HOT_KEYS + 1))[:CYCLE]
    value = str_value(0)
    set_ = cache.set

    def run(n: int) -> float:
        batch = cycle[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value)
        return perf_counter() - start

    return run


def _raw_hot_set(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("nset", HOT_KEYS)]
    cycle = (keys * (CYCLE // HOT_KEYS + 1))[:CYCLE]
    value = str_value(0)
    set_ = client.set

    def run(n: int) -> float:
        batch = cycle[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value, ex=VALUE_TIMEOUT)
        return perf_counter() - start

    return run


NEAR_WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "get[near]",
        f"get(k) -> str (32 chars) over {HOT_KEYS} hot keys, cycled (every call a local hit)",
        "client.get(k).decode() of the same key names (stored as UTF-8 text)",
        10.0,
        _cache_hot_get,
        _raw_hot_get,
    ),
    Workload(
        "get_many[near]",
        f"get_many(*{HOT_KEYS} hot keys) of str (all local hits; values still unpickled)",
        "[v.decode() for v in client.mget(keys)] (stored as UTF-8 text)",
        1.0,
        _cache_hot_get_many,
        _raw_hot_mget,
    ),
    Workload(
        "set[near]",
        f"set(k, str) over the {HOT_KEYS} hot keys (each write also invalidates)",
        "client.set(k, str, ex=300)",
        None,
        _cache_hot_set,
        _raw_hot_set,
    ),
)
"""The near rows, in table order (goals are vs raw; ``get_many[near]`` strictly ahead)."""


@dataclass(frozen=True)
class NearResult:
    """One near row of one plugin: medians of the rounds and paired ratios."""

    workload: str
    plugin: str
    near: float
    plain: float
    raw: float
    vs_raw: float
    vs_raw_spread: float
    vs_plain: float
    goal: float | None

    @property
    def met(self) -> bool:
        if self.goal is None:
            return True
        if self.workload in STRICT:
            return self.vs_raw > self.goal
        return self.vs_raw >= self.goal

    def goal_text(self) -> str:
        if self.goal is None:
            return "info"
        return f"{'>' if self.workload in STRICT else '>='}{self.goal:.2f}"

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "plugin": self.plugin,
            "ops_per_sec": {
                "near": round(self.near),
                "plain": round(self.plain),
                "raw": round(self.raw),
            },
            "vs_raw": round(self.vs_raw, 3),
            "vs_raw_spread": round(self.vs_raw_spread, 3),
            "vs_plain": round(self.vs_plain, 3),
            "goal_vs_raw": self.goal,
            "goal_strictly_above": self.workload in STRICT,
            "met": self.met,
        }


def wait_ready(near: Any, timeout: float = READY_TIMEOUT) -> str | None:
    """Start ``near``'s invalidation thread and wait for it; None, or why it failed."""
    client = near.client
    if not hasattr(client, "_ready"):
        return f"{type(client).__name__} is not a near-cache client"
    near.get("near-ready-probe")  # the first GET starts the thread
    deadline = time.monotonic() + timeout
    while not client._ready:
        if time.monotonic() > deadline:
            return (
                f"the invalidation connections were not ready within {timeout:g} s "
                "(does the server support CLIENT TRACKING ... BCAST?)"
            )
        time.sleep(0.01)
    return None


# --------------------------------------------------------------------------- lag


@dataclass(frozen=True)
class LagResult:
    """One invalidation-lag measurement: seconds from a write's reply to the first
    ``get`` of the near cache returning the written value (or a later one)."""

    plugin: str
    writer: str  # "this-thread" or "other-process"
    pinned: bool
    lags: tuple[float, ...]
    expected: int

    def ms(self, fraction: float) -> float:
        ordered = sorted(self.lags)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.lags)

    def as_json(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "writer": self.writer,
            "pinned": self.pinned,
            "writes": self.expected,
            "measured": len(self.lags),
            "median_ms": round(self.median_ms, 3),
            "p90_ms": round(self.ms(0.9), 3),
            "max_ms": round(1000 * max(self.lags), 3),
        }


@dataclass
class NearOutcome:
    """The near-cache rows and lag measurements of every plugin."""

    results: list[NearResult] = field(default_factory=list)
    lags: list[LagResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _wait_cached(near: Any, key: str, full_key: str, expected: Any) -> None:
    """Read ``key`` until its value is ``expected`` and held locally (not a miss)."""
    deadline = perf_counter() + 5.0
    entries = near.client._entries
    while True:
        if near.get(key) == expected and full_key in entries:
            return
        if perf_counter() > deadline:
            raise RuntimeError(f"near-cache lag: {full_key!r} never became a local hit")


def lag_this_thread(near: Any, writer: Any, prefix: str, writes: int) -> list[float]:
    """Writer in this very thread: ``writer.set`` (a plain cachecore cache on its own
    connection), then ``near.get`` in a loop until it returns the new value. While this
    thread waits for the write's reply, the near cache's thread can take the GIL."""
    key = "lag-this-thread"
    writer.set(key, 0)
    lags: list[float] = []
    for i in range(1, writes + 1):
        _wait_cached(near, key, prefix + key, i - 1)
        writer.set(key, i)
        start = perf_counter()
        deadline = start + 5.0
        get = near.get
        while get(key) != i:
            if perf_counter() > deadline:
                raise RuntimeError("near-cache lag: the new value never arrived")
        lags.append(perf_counter() - start)
    writer.delete(key)
    return lags


_WRITER = r"""
import importlib, json, os, random, sys, time
library = importlib.import_module(sys.argv[1])
client = library.from_url(os.environ["CACHECORE_BENCH_URL"])
key, count, gap = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
client.ping()
print("ready", flush=True)
sys.stdin.readline()
times = []
for i in range(1, count + 1):
    time.sleep(gap * (0.5 + random.random()))
    client.set(key, str(i), ex=300)
    times.append(time.perf_counter())
print(json.dumps(times), flush=True)
"""


def lag_other_process(
    near: Any, library: str, url: str, prefix: str, writes: int, gap: float = LAG_GAP
) -> list[float]:
    """Writer in another process (``library``'s client, SET of ASCII ints, a random pause
    of about ``gap`` s between writes), while this thread calls ``near.get`` without pause:
    the near cache's thread must take the GIL from a thread that never blocks. The two
    processes' ``perf_counter`` read the same clock (CLOCK_MONOTONIC on Linux)."""
    key = "lag-other-process"
    full_key = prefix + key
    near.set(key, 0)
    _wait_cached(near, key, full_key, 0)
    env = {**os.environ, "CACHECORE_BENCH_URL": url.partition("?")[0]}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, library, full_key, str(writes), str(gap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("near-cache lag: the writer process did not start")
        changes: list[tuple[float, int]] = []
        get = near.get
        last = 0
        writer.stdin.write("go\n")
        writer.stdin.flush()
        deadline = perf_counter() + writes * gap * 2 + 10
        while last < writes:
            value = get(key)
            if isinstance(value, int) and value > last:
                changes.append((perf_counter(), value))
                last = value
            elif perf_counter() > deadline:
                break
        output, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    written: list[float] = json.loads(output.strip().splitlines()[-1])
    lags: list[float] = []
    position = 0
    for number, written_at in enumerate(written, start=1):
        while position < len(changes) and changes[position][1] < number:
            position += 1
        if position == len(changes):
            break
        # A get can see the value a hair before the writer has read its reply: 0, not < 0.
        lags.append(max(0.0, changes[position][0] - written_at))
    near.delete(key)
    return lags
