"""How fast is cachecore against the raw client it wraps, on your own server?

:func:`main_bench` is meant for a ``cachecore bench [URL]`` command: about twenty seconds of the
workloads below, each against cachecore and against the bare client library (redis-py,
valkey-py...) on the *same client object*, in alternating rounds, then a small table::

    from cachecore.bench import main_bench
    main_bench("valkey://localhost:6379/0", sys.stdout)

It is safe on a server that holds other data: every key it writes lives under
``cachecore-bench:<random>:`` (after the cache's own ``key_prefix``), carries a TTL of
at most :data:`VALUE_TIMEOUT` seconds, and only that prefix is removed afterwards, by
SCAN + UNLINK. It never flushes a database and never changes server configuration.

The pieces (workload definitions, the interleaving harness, the raw baselines) are
public so the repository's fuller benchmark (``python -m benchmarks``, which also runs
cachelib and its own pinned server) uses the same definitions.

Method: each *cell* (one workload on one column) runs for a fixed slice of wall time
in chunks of a few milliseconds, after an untimed warm-up chunk; rounds visit every
column of a workload in an order rotated each round and reversed every other, so slow
drift of the machine hits every column alike. A column's speed is the median of its
rounds; a ratio is the median of the per-round paired ratios.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import pickle
import secrets
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TextIO

from cachecore.errors import CachecoreError
from cachecore.redis_base import BaseRedisCache, client_errors

__all__ = [
    "BENCH_PREFIX",
    "DEFAULT_SECONDS",
    "WORKLOADS",
    "Row",
    "Workload",
    "main_bench",
    "measure",
    "raw_clear",
    "run_bench",
]

BENCH_PREFIX = "cachecore-bench:"
"""Every benchmark key starts with this (after the cache's own key prefix)."""

DEFAULT_SECONDS = 20.0
"""Default measuring time of :func:`run_bench`, in seconds (setup comes on top)."""

VALUE_TIMEOUT = 300
"""TTL of every key the benchmark writes: leftovers of an interrupted run expire."""

SINGLE_KEYS = 1000
"""Distinct keys a single-key workload cycles through."""

MANY_KEYS = 100
"""Keys per ``get_many`` / ``set_many`` / ``delete_many`` call."""

CLEAR_BATCH = 1000
"""SCAN COUNT and UNLINK batch size of the raw clear baseline (cachecore's own too)."""

CHUNK_SECONDS = 0.004
"""Target duration of one timed chunk of calls."""

Runner = Callable[[int], float]
"""Runs ``n`` calls of a workload on one column; returns the seconds they took (setup
that must not count, like re-creating keys to delete, is left out of that time)."""

Progress = Callable[[float, str], None]
"""Called with the fraction done (0..1) and what is being measured."""


# --------------------------------------------------------------------------- values


def str_value(i: int) -> str:
    """The ``str`` value stored under key number ``i`` (32 characters)."""
    return f"value-{i:08d}-" + "x" * 17


def dict_value(i: int) -> dict[str, Any]:
    """The small ``dict`` value stored under key number ``i`` (5 fields)."""
    return {
        "id": i,
        "name": f"user-{i}",
        "email": f"user{i}@example.com",
        "active": True,
        "score": i / 7,
    }


def key_names(tag: str, count: int) -> list[str]:
    """``count`` key names ``tag:0``, ``tag:1``... (before any prefix)."""
    return [f"{tag}:{i}" for i in range(count)]


def fill_raw(client: Any, items: Mapping[str, Any]) -> None:
    """Untimed setup: SET EX every item through one non-transactional pipeline of the raw
    ``client`` (values stored as given, e.g. plain text for the raw columns)."""
    pipe = client.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value, ex=VALUE_TIMEOUT)
    pipe.execute()


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"benchmark setup check failed: {what}")


# --------------------------------------------------------------------------- workloads
#
# Each workload has two builders: one for anything with the cache API (cachecore, and
# cachelib in the repository benchmark), one for the raw client. A builder does its
# setup untimed, then returns a Runner whose loop is written out inline, so neither
# side pays for an extra wrapper call per operation.


def _cache_get(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("get", SINGLE_KEYS)
    cache.set_many({k: str_value(i) for i, k in enumerate(keys)})
    _check(cache.get(keys[1]) == str_value(1), "cache get after set_many")
    get = cache.get

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            get(key)
        return perf_counter() - start

    return run


def _raw_get(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("get", SINGLE_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    get = client.get

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            value = get(key)
            if value is not None:
                value.decode()
        return perf_counter() - start

    return run


def _cache_set(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("set", SINGLE_KEYS)
    value = str_value(0)
    set_ = cache.set

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value)
        return perf_counter() - start

    return run


def _raw_set(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("set", SINGLE_KEYS)]
    value = str_value(0)
    set_ = client.set

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value, ex=VALUE_TIMEOUT)
        return perf_counter() - start

    return run


def _cache_has(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("has", SINGLE_KEYS)
    cache.set_many({k: str_value(i) for i, k in enumerate(keys)})
    _check(cache.has(keys[1]), "cache has after set_many")
    has = cache.has

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            has(key)
        return perf_counter() - start

    return run


def _raw_has(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("has", SINGLE_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    exists = client.exists

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            exists(key)
        return perf_counter() - start

    return run


def _cache_counter(tag: str) -> Callable[[Any, Any, str], Runner]:
    def build(cache: Any, client: Any, prefix: str) -> Runner:
        keys = key_names(tag, SINGLE_KEYS)
        # Start every counter with a TTL (INCRBY keeps it), so nothing outlives the run.
        cache.set_many(dict.fromkeys(keys, 0))
        step = cache.inc if tag == "inc" else cache.dec

        def run(n: int) -> float:
            batch = keys[:n]
            start = perf_counter()
            for key in batch:
                step(key)
            return perf_counter() - start

        return run

    return build


def _raw_counter(tag: str) -> Callable[[Any, str], Runner]:
    def build(client: Any, prefix: str) -> Runner:
        keys = [prefix + k for k in key_names(tag, SINGLE_KEYS)]
        fill_raw(client, dict.fromkeys(keys, 0))
        step = client.incrby if tag == "inc" else client.decrby

        def run(n: int) -> float:
            batch = keys[:n]
            start = perf_counter()
            for key in batch:
                step(key, 1)
            return perf_counter() - start

        return run

    return build


def _cache_add(cache: Any, client: Any, prefix: str) -> Runner:
    value = str_value(0)
    add = cache.add
    counter = [0]

    def run(n: int) -> float:
        first = counter[0]
        counter[0] += n
        batch = [f"add:{i}" for i in range(first, first + n)]  # always new keys
        start = perf_counter()
        for key in batch:
            add(key, value)
        return perf_counter() - start

    return run


def _raw_add(client: Any, prefix: str) -> Runner:
    value = str_value(0)
    set_ = client.set
    counter = [0]

    def run(n: int) -> float:
        first = counter[0]
        counter[0] += n
        batch = [f"{prefix}add:{i}" for i in range(first, first + n)]
        start = perf_counter()
        for key in batch:
            set_(key, value, nx=True, ex=VALUE_TIMEOUT)
        return perf_counter() - start

    return run


def _cache_get_many(tag: str, make: Callable[[int], Any]) -> Callable[[Any, Any, str], Runner]:
    def build(cache: Any, client: Any, prefix: str) -> Runner:
        keys = key_names(tag, MANY_KEYS)
        cache.set_many({k: make(i) for i, k in enumerate(keys)})
        _check(cache.get_many(*keys)[-1] == make(MANY_KEYS - 1), "cache get_many")
        get_many = cache.get_many

        def run(n: int) -> float:
            start = perf_counter()
            for _ in range(n):
                get_many(*keys)
            return perf_counter() - start

        return run

    return build


def _raw_get_many_str(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("gms", MANY_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    mget = client.mget

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            [None if v is None else v.decode() for v in mget(keys)]
        return perf_counter() - start

    return run


def _raw_get_many_str_pickled(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("gmp", MANY_KEYS)]
    # The very bytes cachecore and cachelib store: b"!" + pickle.
    fill_raw(client, {k: b"!" + pickle.dumps(str_value(i), -1) for i, k in enumerate(keys)})
    mget = client.mget
    loads = pickle.loads

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            [None if v is None else loads(v[1:]) for v in mget(keys)]
        return perf_counter() - start

    return run


def _raw_get_many_dict(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("gmd", MANY_KEYS)]
    fill_raw(client, {k: pickle.dumps(dict_value(i), -1) for i, k in enumerate(keys)})
    mget = client.mget
    loads = pickle.loads

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            [None if v is None else loads(v) for v in mget(keys)]
        return perf_counter() - start

    return run


def _cache_set_many(cache: Any, client: Any, prefix: str) -> Runner:
    mapping = {k: str_value(i) for i, k in enumerate(key_names("sm", MANY_KEYS))}
    set_many = cache.set_many

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            set_many(mapping)
        return perf_counter() - start

    return run


def _raw_set_many(client: Any, prefix: str) -> Runner:
    items = [(prefix + k, str_value(i)) for i, k in enumerate(key_names("sm", MANY_KEYS))]
    pipeline = client.pipeline

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            pipe = pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=VALUE_TIMEOUT)
            pipe.execute()
        return perf_counter() - start

    return run


def _cache_delete_many(cache: Any, client: Any, prefix: str) -> Runner:
    keys = key_names("dm", MANY_KEYS)
    refill = dict.fromkeys([prefix + k for k in keys], b"x")
    delete_many = cache.delete_many

    def run(n: int) -> float:
        elapsed = 0.0
        for _ in range(n):
            fill_raw(client, refill)  # untimed: there must be keys to delete
            start = perf_counter()
            delete_many(*keys)
            elapsed += perf_counter() - start
        return elapsed

    return run


def _raw_delete_pipeline(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("dm", MANY_KEYS)]
    refill = dict.fromkeys(keys, b"x")
    pipeline = client.pipeline

    def run(n: int) -> float:
        elapsed = 0.0
        for _ in range(n):
            fill_raw(client, refill)
            start = perf_counter()
            pipe = pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            pipe.execute()
            elapsed += perf_counter() - start
        return elapsed

    return run


def _raw_delete_del(client: Any, prefix: str) -> Runner:
    keys = [prefix + k for k in key_names("dm", MANY_KEYS)]
    refill = dict.fromkeys(keys, b"x")
    delete = client.delete

    def run(n: int) -> float:
        elapsed = 0.0
        for _ in range(n):
            fill_raw(client, refill)
            start = perf_counter()
            delete(*keys)
            elapsed += perf_counter() - start
        return elapsed

    return run


@dataclass(frozen=True)
class Workload:
    """One benchmark row: the same job done through the cache API and the raw client.

    :param name: short row name, e.g. ``get_many[dict]``.
    :param cache_op: the cache call measured (one op).
    :param raw_op: the raw client baseline (one op), doing the same job and the same
        decoding work a raw-client user needs to get the same Python values back.
    :param goal: cachecore must reach at least this fraction of the raw speed; None for
        a row that only shows where the floor is.
    :param cache_runner: builds the Runner for a cache ``(cache, client, full_prefix)``.
    :param raw_runner: builds the Runner for the raw client ``(client, full_prefix)``.
    """

    name: str
    cache_op: str
    raw_op: str
    goal: float | None
    cache_runner: Callable[[Any, Any, str], Runner]
    raw_runner: Callable[[Any, str], Runner]


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "get",
        "get(k) -> str (32 chars, pickled)",
        "client.get(k).decode() (stored as UTF-8 text)",
        0.98,
        _cache_get,
        _raw_get,
    ),
    Workload(
        "set",
        "set(k, str) with default timeout 300",
        "client.set(k, str, ex=300)",
        0.98,
        _cache_set,
        _raw_set,
    ),
    Workload("has", "has(k), key exists", "client.exists(k)", 0.98, _cache_has, _raw_has),
    Workload(
        "inc",
        "inc(k)",
        "client.incrby(k, 1)",
        0.98,
        _cache_counter("inc"),
        _raw_counter("inc"),
    ),
    Workload(
        "dec",
        "dec(k)",
        "client.decrby(k, 1)",
        0.98,
        _cache_counter("dec"),
        _raw_counter("dec"),
    ),
    Workload(
        "add",
        "add(new k, str) -> True",
        "client.set(k, str, nx=True, ex=300) (one SET NX EX)",
        0.97,
        _cache_add,
        _raw_add,
    ),
    Workload(
        "get_many[str]",
        f"get_many(*{MANY_KEYS} keys) of str values",
        "[v.decode() for v in client.mget(keys)] (stored as UTF-8 text)",
        0.90,
        _cache_get_many("gms", str_value),
        _raw_get_many_str,
    ),
    Workload(
        "get_many[str]/pk",
        f"get_many(*{MANY_KEYS} keys) of str values",
        "[pickle.loads(v[1:]) for v in client.mget(keys)] (the same b'!'+pickle bytes)",
        0.90,
        _cache_get_many("gmp", str_value),
        _raw_get_many_str_pickled,
    ),
    Workload(
        "get_many[dict]",
        f"get_many(*{MANY_KEYS} keys) of 5-field dicts",
        "[pickle.loads(v) for v in client.mget(keys)] (stored as plain pickles)",
        0.75,
        _cache_get_many("gmd", dict_value),
        _raw_get_many_dict,
    ),
    Workload(
        "set_many",
        f"set_many({{{MANY_KEYS} keys: str}})",
        "p = client.pipeline(transaction=False); p.set(k, v, ex=300) x100; p.execute()",
        1.30,
        _cache_set_many,
        _raw_set_many,
    ),
    Workload(
        "delete_many",
        f"delete_many(*{MANY_KEYS} existing keys)",
        "p = client.pipeline(transaction=False); p.delete(k) x100; p.execute()",
        1.30,
        _cache_delete_many,
        _raw_delete_pipeline,
    ),
    Workload(
        "delete_many/DEL",
        f"delete_many(*{MANY_KEYS} existing keys)",
        "client.delete(*keys) (one DEL of 100 keys; no goal: the floor)",
        None,
        _cache_delete_many,
        _raw_delete_del,
    ),
)
"""Every workload, in table order. Each op is one call; ``*_many`` calls cover 100 keys."""


# --------------------------------------------------------------------------- clear


def populate(client: Any, prefix: str, count: int, batch: int = 10_000) -> None:
    """Write ``count`` small keys ``{prefix}{i}`` (SET EX, pipelined in batches)."""
    for first in range(0, count, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + batch, count)):
            pipe.execute_command("SET", f"{prefix}{i}", b"v", "EX", VALUE_TIMEOUT)
        pipe.execute()


def raw_clear(client: Any, pattern: str, count: int = CLEAR_BATCH) -> int:
    """The raw-client baseline of ``clear()``: a ``scan_iter`` loop that UNLINKs every
    ``count`` keys found (two round trips a batch). Returns the number unlinked."""
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=pattern, count=count):
        batch.append(key)
        if len(batch) >= count:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# --------------------------------------------------------------------------- harness


def calibrate(runner: Runner, max_chunk: int = SINGLE_KEYS) -> int:
    """Warm ``runner`` up and return a chunk size of about :data:`CHUNK_SECONDS`."""
    runner(1)
    runner(3)
    per_op = runner(10) / 10
    if per_op <= 0:
        return max_chunk
    return max(1, min(max_chunk, round(CHUNK_SECONDS / per_op)))


def run_slice(runner: Runner, chunk: int, seconds: float) -> float:
    """Run ``runner`` in chunks for about ``seconds`` of wall time; return ops/s.

    A first, untimed chunk warms the column's code path up again: the cell before it
    may have run another client library and left the CPU's caches cold for this one.
    """
    gc.collect()
    runner(max(1, chunk // 4))
    ops = 0
    timed = 0.0
    deadline = perf_counter() + seconds
    while True:
        timed += runner(chunk)
        ops += chunk
        if perf_counter() >= deadline:
            break
    return ops / timed if timed > 0 else math.inf


def measure(
    columns: Mapping[str, Runner],
    *,
    rounds: int,
    slice_seconds: float,
    on_cell: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Interleaved measurement: each round runs every column for ``slice_seconds``, in
    an order rotated by one column each round and reversed every other round (so no
    column always starts the round or always follows the same neighbour). Returns
    ops/s per column per round."""
    names = list(columns)
    chunks = {name: calibrate(columns[name]) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = (number // 2) % len(names)
        order = names[shift:] + names[:shift]
        if number % 2:
            order.reverse()
        for name in order:
            samples[name].append(run_slice(columns[name], chunks[name], slice_seconds))
            if on_cell is not None:
                on_cell()
    return samples


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Median of the per-round ratios ``a[i] / b[i]``, and half their interquartile range."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(ratios) < 4:
        return statistics.median(ratios), (ratios[-1] - ratios[0]) / 2
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), (q3 - q1) / 2


# --------------------------------------------------------------------------- run_bench


@dataclass(frozen=True)
class Row:
    """One line of the result.

    :param workload: the workload's name (``get``, ``get_many[str]``, ``clear``...).
    :param ops_per_sec: cachecore calls per second (median of the rounds); for
        ``clear`` keys removed per second.
    :param raw_ops_per_sec: the raw client's speed on the same job, or None if the
        client has no redis-py-style API to compare with.
    :param ratio: cachecore / raw (median of per-round ratios); None without raw.
    :param goal: the target ratio, or None.
    :param spread: half the interquartile range of the per-round ratios (noise).
    :param unit: ``"ops/s"`` or ``"keys/s"``.
    """

    workload: str
    ops_per_sec: float
    raw_ops_per_sec: float | None
    ratio: float | None
    goal: float | None
    spread: float = 0.0
    unit: str = "ops/s"

    @property
    def met(self) -> bool | None:
        """Whether the ratio reaches the goal; None when either is missing."""
        if self.ratio is None or self.goal is None:
            return None
        return self.ratio >= self.goal


def _bench_cache(base: BaseRedisCache, token: str) -> tuple[BaseRedisCache, str]:
    """A copy of ``base`` (same client, class and serializer) under its own prefix."""
    user_prefix = base.key_prefix if isinstance(base.key_prefix, str) else ""
    prefix = f"{user_prefix}{BENCH_PREFIX}{token}:"
    cache = copy.copy(base)
    cache.key_prefix = prefix
    cache.raise_errors = True  # a fault must stop the run, not count as a fast op
    return cache, prefix


def _with_prefix(cache: BaseRedisCache, prefix: str) -> BaseRedisCache:
    clone = copy.copy(cache)
    clone.key_prefix = prefix
    return clone


def _clear_prefix(cache: BaseRedisCache, prefix: str) -> None:
    if not prefix.strip(":") or BENCH_PREFIX not in prefix:  # never a FLUSHDB
        raise RuntimeError(f"refusing to clear unexpected prefix {prefix!r}")
    _with_prefix(cache, prefix).clear()


def run_bench(
    cache_or_url: BaseRedisCache | str,
    seconds: float = DEFAULT_SECONDS,
    progress: Progress | None = None,
    *,
    rounds: int = 5,
    clear_keys: int = 10_000,
    workloads: Sequence[Workload] = WORKLOADS,
) -> list[Row]:
    """Measure cachecore against its own client on the server of ``cache_or_url``.

    :param cache_or_url: a cache (its client, class and serializer are used; its data
        is left alone) or a URL for :func:`cachecore.from_url`.
    :param seconds: measuring time to spread over all cells (setup comes on top).
    :param progress: called as work advances, see :data:`Progress`.
    :param rounds: interleaved rounds per workload.
    :param clear_keys: keys written and cleared for the ``clear`` row; 0 skips it.
    :returns: one :class:`Row` per workload, then ``clear``.
    :raises BackendError: the server failed during the run (the keys written so far
        are still removed, if the server allows).
    """
    from cachecore.config import from_url

    owned = isinstance(cache_or_url, str)
    base = from_url(cache_or_url) if isinstance(cache_or_url, str) else cache_or_url
    client = base.client
    token = secrets.token_hex(4)
    cache, prefix = _bench_cache(base, token)
    # cachecore writes under PREFIX + "cc:", the raw client under PREFIX + "rw:".
    cc_cache = _with_prefix(cache, prefix + "cc:")
    raw_prefix = prefix + "rw:"
    cells = len(workloads) * 2 * rounds + (2 * rounds if clear_keys else 0)
    slice_seconds = max(0.02, seconds / max(1, cells))
    done = [0]

    def tick(label: str) -> Callable[[], None]:
        def advance() -> None:
            done[0] += 1
            if progress is not None:
                progress(min(1.0, done[0] / cells), label)

        return advance

    rows: list[Row] = []
    try:
        cache.ping()  # raise_errors: an unreachable server fails here, before any setup
        for workload in workloads:
            if progress is not None:
                progress(done[0] / cells, workload.name)
            columns: dict[str, Runner] = {
                "cachecore": workload.cache_runner(cc_cache, client, prefix + "cc:")
            }
            raw = _raw_column(workload, client, raw_prefix)
            if raw is not None:
                columns["raw"] = raw
            samples = measure(
                columns, rounds=rounds, slice_seconds=slice_seconds, on_cell=tick(workload.name)
            )
            rows.append(_row(workload.name, samples, workload.goal))
        if clear_keys:
            rows.append(_bench_clear(cache, client, prefix, clear_keys, rounds, tick("clear")))
    except BaseException:
        with contextlib.suppress(Exception):  # best effort; the first error matters more
            _clear_prefix(cache, prefix)
        raise
    else:
        _clear_prefix(cache, prefix)
    finally:
        if owned:
            base.close()
    if progress is not None:
        progress(1.0, "done")
    return rows


def _raw_column(workload: Workload, client: Any, prefix: str) -> Runner | None:
    """The raw client's runner, or None when it cannot do this job on this client: not a
    redis-py-style API, or a cluster refusing a multi-key command across hash slots."""
    unusable: tuple[type[BaseException], ...] = (AttributeError, TypeError, *client_errors())
    try:
        runner = workload.raw_runner(client, prefix)
        runner(1)
    except unusable:
        return None
    return runner


def _row(name: str, samples: Mapping[str, list[float]], goal: float | None) -> Row:
    ops = statistics.median(samples["cachecore"])
    raw = samples.get("raw")
    if raw is None:
        return Row(name, ops, None, None, goal)
    ratio, spread = paired_ratio(samples["cachecore"], raw)
    return Row(name, ops, statistics.median(raw), ratio, goal, spread)


def _bench_clear(
    cache: BaseRedisCache,
    client: Any,
    prefix: str,
    count: int,
    rounds: int,
    advance: Callable[[], None],
) -> Row:
    cc_prefix, raw_prefix = prefix + "clear-cc:", prefix + "clear-rw:"
    cc_cache = _with_prefix(cache, cc_prefix)
    cc_speed: list[float] = []
    raw_speed: list[float] = []
    for number in range(rounds):
        order = ("cc", "raw") if number % 2 == 0 else ("raw", "cc")
        for column in order:
            target = cc_prefix if column == "cc" else raw_prefix
            populate(client, target, count)
            gc.collect()
            start = perf_counter()
            if column == "cc":
                cc_cache.clear()
            else:
                raw_clear(client, _glob_escape(target) + "*")
            elapsed = perf_counter() - start
            (cc_speed if column == "cc" else raw_speed).append(count / elapsed)
            advance()
    ratio, spread = paired_ratio(cc_speed, raw_speed)
    return Row(
        "clear",
        statistics.median(cc_speed),
        statistics.median(raw_speed),
        ratio,
        0.5,
        spread,
        "keys/s",
    )


# --------------------------------------------------------------------------- main_bench


class ProgressBar:
    """A one-line text progress bar on ``out`` (redrawn in place on a terminal)."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_label = ""

    def __call__(self, fraction: float, label: str) -> None:
        filled = round(self.width * fraction)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {fraction:4.0%} {label}"
        if self.tty:
            self.out.write("\r" + line.ljust(self.width + 30))
            self.out.flush()
        elif label != self._last_label:  # a log or a pipe: one line per workload
            self.out.write(line + "\n")
        self._last_label = label

    def finish(self) -> None:
        """End the bar's line on a terminal."""
        if self.tty:
            self.out.write("\r" + " " * (self.width + 40) + "\r")
            self.out.flush()


def format_rows(rows: Sequence[Row]) -> str:
    """The result as a small fixed-width table."""
    lines = [
        f"{'workload':<16} {'cachecore':>12} {'raw client':>12} {'ratio':>7} {'goal':>7}  unit",
    ]
    for row in rows:
        raw = f"{row.raw_ops_per_sec:12,.0f}" if row.raw_ops_per_sec is not None else " " * 12
        ratio = f"{row.ratio:6.2f}x" if row.ratio is not None else " " * 7
        goal = f">={row.goal:.2f}" if row.goal is not None else ""
        status = {True: "", False: "  (below goal)", None: ""}[row.met]
        lines.append(
            f"{row.workload:<16} {row.ops_per_sec:12,.0f} {raw} {ratio} {goal:>7}  "
            f"{row.unit}{status}"
        )
    return "\n".join(lines)


def main_bench(
    target: BaseRedisCache | str | None, out: TextIO, *, seconds: float = DEFAULT_SECONDS
) -> int:
    """Benchmark cachecore on ``target`` (a cache, a URL, or None for the configured
    cache) and print a table. A cache passed in is closed afterwards.

    :returns: a process exit status: 0 done, 1 the server failed, 2 bad configuration.
    """
    from cachecore.config import from_url, get_cache

    failures: tuple[type[BaseException], ...] = (CachecoreError, *client_errors())
    try:
        if isinstance(target, BaseRedisCache):
            cache = target
        else:
            cache = from_url(target) if target else get_cache()
    except CachecoreError as exc:
        out.write(f"cachecore bench: {exc}\n")
        return 2
    try:
        out.write(
            f"cachecore bench on {cache.description}: about {seconds:.0f} s; keys under "
            f"'{BENCH_PREFIX}*' with a {VALUE_TIMEOUT} s TTL, removed afterwards\n"
        )
        bar = ProgressBar(out)
        try:
            rows = run_bench(cache, seconds, bar)
        finally:
            bar.finish()
    except failures as exc:
        cause = exc.__cause__ if isinstance(exc, CachecoreError) and exc.__cause__ else exc
        out.write(f"cachecore bench: the server failed: {type(cause).__name__}: {cause}\n")
        return 1
    finally:
        cache.close()
    out.write(format_rows(rows) + "\n")
    out.write(
        "raw client = the same client object cachecore uses, called directly; "
        "ratio = cachecore / raw (median of paired rounds); higher is better.\n"
    )
    return 0
