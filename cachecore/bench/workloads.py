"""The benchmark workloads: each job done once through the cache API and once through the
raw client (the baseline a raw-client user would write to get the same Python values),
with the values and keys they use and their setup helpers.

A workload's runners are built per column: ``cache_runner(cache, client, full_prefix)``
and ``raw_runner(client, full_prefix)`` (each also takes ``key_count=``, the distinct keys a
single-key workload fills) return a :data:`Runner`, which runs ``n`` calls and returns
the seconds they took. The timed loops are written out inline in each
runner on purpose: no wrapper call inside a timed loop.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

__all__ = [
    "CLEAR_BATCH",
    "MANY_KEYS",
    "SINGLE_KEYS",
    "VALUE_TIMEOUT",
    "WORKLOADS",
    "CacheRunnerFactory",
    "RawRunnerFactory",
    "Runner",
    "Workload",
    "dict_value",
    "fill_raw",
    "key_names",
    "populate",
    "raw_clear",
    "str_value",
]

VALUE_TIMEOUT = 300
"""TTL of every key the benchmark writes: leftovers of an interrupted run expire."""

SINGLE_KEYS = 1000
"""Distinct keys a single-key workload cycles through, unless its builder is given fewer."""

MANY_KEYS = 100
"""Keys per ``get_many`` / ``set_many`` / ``delete_many`` call."""

CLEAR_BATCH = 1000
"""SCAN COUNT and UNLINK batch size of the raw clear baseline (cachecore's own too)."""

Runner = Callable[[int], float]
"""Runs ``n`` calls of a workload on one column; returns the seconds they took (setup
that must not count, like re-creating keys to delete, is left out of that time)."""


class CacheRunnerFactory(Protocol):
    """Builds a :data:`Runner` for anything with the cache API: does the untimed setup
    (e.g. fills the ``key_count`` keys a single-key workload reads), then returns the
    runner, which takes ``n`` up to ``key_count``."""

    def __call__(self, cache: Any, client: Any, prefix: str, key_count: int = ...) -> Runner: ...


class RawRunnerFactory(Protocol):
    """Builds a :data:`Runner` for the raw client, as :class:`CacheRunnerFactory`."""

    def __call__(self, client: Any, prefix: str, key_count: int = ...) -> Runner: ...


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


def _cache_get(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = key_names("get", key_count)
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


def _raw_get(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = [prefix + k for k in key_names("get", key_count)]
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


def _cache_set(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = key_names("set", key_count)
    value = str_value(0)
    set_ = cache.set

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value)
        return perf_counter() - start

    return run


def _raw_set(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = [prefix + k for k in key_names("set", key_count)]
    value = str_value(0)
    set_ = client.set

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            set_(key, value, ex=VALUE_TIMEOUT)
        return perf_counter() - start

    return run


def _cache_has(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = key_names("has", key_count)
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


def _raw_has(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = [prefix + k for k in key_names("has", key_count)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    exists = client.exists

    def run(n: int) -> float:
        batch = keys[:n]
        start = perf_counter()
        for key in batch:
            exists(key)
        return perf_counter() - start

    return run


def _cache_counter(tag: str) -> CacheRunnerFactory:
    def build(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
        keys = key_names(tag, key_count)
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


def _raw_counter(tag: str) -> RawRunnerFactory:
    def build(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
        keys = [prefix + k for k in key_names(tag, key_count)]
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


def _cache_add(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _raw_add(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _cache_get_many(tag: str, make: Callable[[int], Any]) -> CacheRunnerFactory:
    def build(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _raw_get_many_str(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    keys = [prefix + k for k in key_names("gms", MANY_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    mget = client.mget

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            [None if v is None else v.decode() for v in mget(keys)]
        return perf_counter() - start

    return run


def _raw_get_many_str_pickled(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _raw_get_many_dict(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _cache_set_many(cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    mapping = {k: str_value(i) for i, k in enumerate(key_names("sm", MANY_KEYS))}
    set_many = cache.set_many

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            set_many(mapping)
        return perf_counter() - start

    return run


def _raw_set_many(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _cache_delete_many(
    cache: Any, client: Any, prefix: str, key_count: int = SINGLE_KEYS
) -> Runner:
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


def _raw_delete_pipeline(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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


def _raw_delete_del(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
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
    :param cache_runner: builds the Runner for a cache ``(cache, client, full_prefix,
        key_count=SINGLE_KEYS)``; ``key_count`` is how many distinct keys a single-key
        workload fills and cycles through (the runner's ``n`` stays at most that).
    :param raw_runner: builds the Runner for the raw client ``(client, full_prefix,
        key_count=SINGLE_KEYS)``.
    """

    name: str
    cache_op: str
    raw_op: str
    goal: float | None
    cache_runner: CacheRunnerFactory
    raw_runner: RawRunnerFactory


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
