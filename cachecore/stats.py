"""In-process counters of what a cache does: always on, exact under threads, near free.

Every cache has a :class:`Counters` (``cache.counters``); ``cache.stats()`` reads it,
and the near cache and circuit breaker beneath the cache, into a :class:`CacheStats`.

Why the counts are safe under threads: an increment is a read, an add and a write, and
another thread may run between them, losing an increment. CPython with the GIL lets
another thread run only at certain points of its eval loop (a call, a backward jump,
a function's start), so a statement ``counts[index] += n`` on a list, with ``index``
and ``n`` already computed (no call inside the statement), is never split there. On
the CPython versions where this was tested (:data:`SHARED_LIST_PYTHONS`, GIL enabled)
every thread therefore adds to one list per cache; elsewhere (free-threaded builds,
other interpreters and versions) each thread adds to a list of its own and a read sums
them (:func:`one_list_for_all_threads`). (A tracer that runs Python code between
opcodes, ``frame.f_trace_opcodes``, which debuggers don't set, could split such an
increment and lose it.) The threads' own lists cost a thread-local look-up per
call: about 0.5 % of a loopback ``get`` (``benchmarks/observability.py``, row
``per-thread``). Names outside :data:`SLOTS` go to a dict per thread either way:
:meth:`Counters.add`'s ``extra.get(name, 0) + amount`` calls a method between its read
and its write (a shared dict loses increments there: ``tests/test_stats.py``). asyncio
tasks on one thread never interleave inside an increment (there is no ``await`` in
it).

Why a list with fixed positions (:data:`SLOTS`) on the hot path: a cache call's
increment runs right after a round trip to the server, when the CPU's caches hold the
server's data rather than the client's; every object it touches then costs a cache
miss, so it touches as few as it can (the shard, its list; no dict, no name, no
look-up table: the plan carries the positions).

Counter names are plain strings (:data:`COUNTERS`). Other parts of cachecore add their
own through :meth:`Counters.add` with a dotted name (``"memoize.computations"``); they
appear in :attr:`CacheStats.extra` and, with OpenTelemetry on, as
``cachecore.<name>`` counters when declared in :data:`EXTRA_COUNTERS`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

COUNTERS = (
    "hits",
    "misses",
    "sets",
    "add_exists",
    "deletes",
    "increments",
    "touches",
    "clears",
    "pings",
    "other_calls",
)
"""The counters every cache keeps, by name (see :class:`CacheStats` for their meaning)."""

FAULT_KINDS = ("connection", "timeout", "error_reply", "circuit_open")
"""How a backend fault is classified: the server could not be reached or the connection
broke; it did not answer in time; it answered with an error (``OOM``, ``WRONGTYPE``,
``LOADING``...); the circuit breaker was open, so nothing was sent."""

EXTRA_COUNTERS: dict[str, str] = {
    "memoize.computations": "values computed because the cache had none",
    "memoize.lock_waits": "calls that waited for another caller's computation",
    "memoize.stale_served": "stale values served while one caller recomputed",
}
"""Counters other modules add (``name: description``): exported to OpenTelemetry as
``cachecore.<name>`` with unit ``{event}``; 0 until something adds to them."""

READ_OPERATIONS = frozenset({"get", "lookup", "has", "get_many", "lookup_many"})
"""Operations whose outcome is a hit or a miss (per key for the multi-key ones)."""


_FAULT_NAMES = tuple(f"faults.{kind}" for kind in FAULT_KINDS)

SLOTS = (*COUNTERS, *_FAULT_NAMES)
"""The counters every shard keeps in a list, by position (other names go to its dict)."""

HITS, MISSES, SETS, ADD_EXISTS, DELETES, INCREMENTS, TOUCHES, CLEARS, PINGS, OTHER_CALLS = range(
    len(COUNTERS)
)
"""Positions in :data:`SLOTS`, for the hot paths: a one-command plan carries the two
it counts (when the reply is truthy, when it is not), so the driver increments one list
item without a look-up (:data:`cachecore.protocol.Plan`)."""

_INDEX = {name: index for index, name in enumerate(SLOTS)}


SHARED_LIST_PYTHONS = ((3, 11), (3, 13))
"""The CPython versions (lowest, highest) on which one list per cache was tested to
keep every increment under threads (``tests/test_stats.py``, with the GIL)."""


def one_list_for_all_threads() -> bool:
    """Whether every thread may add to one list per cache: CPython of
    :data:`SHARED_LIST_PYTHONS` with the GIL enabled (it stays enabled once it is)."""
    low, high = SHARED_LIST_PYTHONS
    gil_enabled: Any = getattr(sys, "_is_gil_enabled", None)
    return (
        sys.implementation.name == "cpython"
        and low <= sys.version_info[:2] <= high
        and (gil_enabled is None or gil_enabled())
    )


class _Shard(threading.local):
    """One list of counts (:data:`SLOTS`) and one dict (other names) per thread,
    registered with its :class:`Counters` on first use in that thread
    (``threading.local`` runs ``__init__`` once per thread)."""

    def __init__(
        self, shards: list[tuple[list[int], dict[str, int]]], lock: threading.Lock
    ) -> None:
        self.counts: list[int] = [0] * len(SLOTS)
        self.extra: dict[str, int] = {}
        with lock:
            shards.append((self.counts, self.extra))


class _OneList:
    """One list of counts for every thread (see the module docstring), and a dict of
    other names per thread."""

    __slots__ = ("_threads", "counts")

    def __init__(
        self, shards: list[tuple[list[int], dict[str, int]]], lock: threading.Lock
    ) -> None:
        self.counts: list[int] = [0] * len(SLOTS)
        with lock:
            shards.append((self.counts, {}))
        self._threads = _Shard(shards, lock)  # their lists stay at zero

    @property
    def extra(self) -> dict[str, int]:
        """This thread's dict of the counts outside :data:`SLOTS`."""
        return self._threads.extra


class Counters:
    """The counts of one cache (see the module docstring).

    The hot path is ``counters.shard.counts[HITS] += 1`` (the caches keep ``shard`` as
    ``cache._shard``): one list item incremented in place, touching no dict and no
    name. Reads (:meth:`totals`) sum the lists; a thread that ended keeps its own, so
    nothing it counted is lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shards: list[tuple[list[int], dict[str, int]]] = []
        self.shard: _Shard | _OneList
        if one_list_for_all_threads():
            self.shard = _OneList(self._shards, self._lock)
        else:
            self.shard = _Shard(self._shards, self._lock)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (any name; dotted for a section, e.g.
        ``"memoize.computations"``). Thread- and task-safe."""
        shard = self.shard
        index = _INDEX.get(name)
        if index is None:
            extra = shard.extra
            extra[name] = extra.get(name, 0) + amount
        else:
            shard.counts[index] += amount

    def totals(self) -> dict[str, int]:
        """Every counter, summed over all threads (names never counted are absent, except
        :data:`COUNTERS` and the fault kinds, which start at 0)."""
        with self._lock:
            shards = list(self._shards)
        summed = dict.fromkeys(SLOTS, 0)
        for counts, extra in shards:
            # Copies in one step: another thread may be adding to them.
            for name, value in zip(SLOTS, counts.copy(), strict=True):
                summed[name] += value
            for name, value in extra.copy().items():
                summed[name] = summed.get(name, 0) + value
        return summed


def fault_kind(exc: BaseException, reply_errors: tuple[type[BaseException], ...]) -> str:
    """Which of :data:`FAULT_KINDS` ``exc`` (a transport error) is."""
    from cachecore.circuit_breaker import CircuitOpenError

    if isinstance(exc, CircuitOpenError):
        return "circuit_open"
    if reply_errors and isinstance(exc, reply_errors):
        return "error_reply"
    # redis-py's and valkey-py's TimeoutError are not the builtin one.
    if isinstance(exc, TimeoutError) or any(
        cls.__name__ == "TimeoutError" for cls in type(exc).__mro__
    ):
        return "timeout"
    return "connection"


@dataclass(frozen=True)
class NearCacheStats:
    """The near cache's counters (see :mod:`cachecore.near_cache`)."""

    hits: int
    """Reads answered from process memory (each key of a ``get_many`` counts)."""
    invalidations: int
    """Invalidation messages received from the server."""
    evictions: int
    """Entries dropped to stay within ``near_cache_size``."""
    resets: int
    """Times every entry was dropped because the tracking connections failed."""
    entries: int
    """Entries held now."""


@dataclass(frozen=True)
class BreakerStats:
    """The circuit breaker's state and how often it changed."""

    state: str
    """``"closed"``, ``"open"`` or ``"half-open"``."""
    transitions: dict[str, int]
    """How often it entered each state: ``{"open": 3, "half-open": 2, "closed": 2}``."""


@dataclass(frozen=True)
class CacheStats:
    """What ``cache.stats()`` returns: counts since the cache was built.

    ``hits``/``misses`` count keys read (``get``, ``lookup``, ``has``, and each key of
    ``get_many``/``lookup_many``/``get_dict``) that the server had or lacked; a value
    the server had but that cannot be decoded counts as a hit (and is logged). A
    near-cache hit is one hit here and one in ``near_cache.hits``. ``sets`` counts
    values stored (``set``, ``add`` that stored, each key ``set_many`` stored);
    ``add_exists`` the ``add`` calls that found the key; ``deletes`` the ``delete``
    calls and keys ``delete_many`` deleted; ``increments`` ``inc``/``dec``/
    ``inc_existing``. A call that ended in a fault counts only in ``faults``.
    """

    hits: int
    misses: int
    sets: int
    add_exists: int
    deletes: int
    increments: int
    touches: int
    clears: int
    pings: int
    other_calls: int
    """Calls of one-command operations not listed above (e.g. added by a plugin)."""
    faults: dict[str, int]
    """Calls that met a backend fault, by kind (:data:`FAULT_KINDS`); a multi-key call
    that reached only some cluster nodes counts once."""
    near_cache: NearCacheStats | None = None
    circuit_breaker: BreakerStats | None = None
    extra: dict[str, int] = field(default_factory=dict)
    """Counters added by other modules, by dotted name (``"memoize.computations"``)."""

    @property
    def hit_ratio(self) -> float | None:
        """hits / (hits + misses), or None before any read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``hit_ratio`` included)."""
        data = asdict(self)
        data["hit_ratio"] = self.hit_ratio
        return data


def collect(counters: Counters, transports: Mapping[str, Any]) -> CacheStats:
    """A :class:`CacheStats` from ``counters`` and the wrappers found under
    ``transports`` (the cache's writer and reader)."""
    totals = counters.totals()
    faults = {kind: totals.pop(f"faults.{kind}", 0) for kind in FAULT_KINDS}
    basic = {name: totals.pop(name, 0) for name in COUNTERS}
    extra = {name: 0 for name in EXTRA_COUNTERS} | totals
    near: NearCacheStats | None = None
    breaker: BreakerStats | None = None
    for transport in _wrappers(transports.values()):
        near_counts = getattr(transport, "near_cache_stats", None)
        if near is None and callable(near_counts):
            near = near_counts()
        state = getattr(transport, "breaker", None)
        if breaker is None and state is not None:
            breaker = BreakerStats(state.state, dict(state.transitions))
    return CacheStats(**basic, faults=faults, near_cache=near, circuit_breaker=breaker, extra=extra)


def _wrappers(transports: Any) -> list[Any]:
    """Every transport in the chains below ``transports`` (wrappers hold ``inner``)."""
    found: list[Any] = []
    for top in transports:
        transport = top
        while transport is not None and not any(transport is seen for seen in found):
            found.append(transport)
            transport = getattr(transport, "inner", None)
    return found
