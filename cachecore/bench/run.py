"""``run_bench`` and ``main_bench``: the workloads against cachecore and its own client on a
user's server within a time budget, and the table (or JSON) ``cachecore bench`` prints.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib.metadata
import json
import math
import secrets
import statistics
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TextIO

from cachecore.bench.harness import measure_until, paired_ratio
from cachecore.bench.workloads import (
    SINGLE_KEYS,
    VALUE_TIMEOUT,
    WORKLOADS,
    Runner,
    Workload,
    populate,
    raw_clear,
)
from cachecore.errors import CachecoreError
from cachecore.redis_base import BaseRedisCache, client_errors, glob_escape

__all__ = [
    "BENCH_PREFIX",
    "DEFAULT_ROUNDS",
    "DEFAULT_SECONDS",
    "JSON_SCHEMA",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "Progress",
    "ProgressBar",
    "Row",
    "bench_document",
    "check_seconds",
    "format_rows",
    "is_in_process_fake",
    "main_bench",
    "report_bench",
    "run_bench",
]

BENCH_PREFIX = "cachecore-bench:"
"""Every benchmark key starts with this (after the cache's own key prefix)."""

DEFAULT_SECONDS = 20.0
"""Default budget of :func:`run_bench`, in seconds of wall time, setup included."""

MIN_SECONDS = 1.0
"""The smallest budget: below it the fixed costs (filling keys, one call per cell)
would take most of the run."""

MAX_SECONDS = 3600.0
"""The largest budget: each row's keys must outlive its share of the run
(:data:`~cachecore.bench.workloads.VALUE_TIMEOUT` seconds)."""

DEFAULT_ROUNDS = 5
"""Interleaved rounds per row."""

JSON_SCHEMA = 1
"""Version of the ``cachecore bench --json`` document; raised when a key changes meaning
or goes away (new keys may be added without raising it)."""

KEYS_PER_SECOND = 50
"""Distinct keys a single-key row fills per second of budget (from 100 up to
:data:`~cachecore.bench.workloads.SINGLE_KEYS`): filling them must not eat a short run."""

CLEAR_PROBE_KEYS = 100
"""Keys per cell of the untimed probe round that sizes the ``clear`` row to its budget."""

Progress = Callable[[float, str], None]
"""Called with the fraction done (0..1) and what is being measured."""


@dataclass(frozen=True)
class Row:
    """One line of the result.

    :param workload: the workload's name (``get``, ``get_many[str]``, ``clear``...).
    :param ops_per_sec: cachecore calls per second, the median of its rounds; for
        ``clear`` keys removed per second.
    :param raw_ops_per_sec: the raw client's speed on the same job, the median of its
        rounds, or None if the client has no redis-py-style API to compare with.
    :param ratio: ``ops_per_sec / raw_ops_per_sec``, the ratio of the two medians;
        None without raw.
    :param goal: the target ratio, or None.
    :param spread: the run's noise on this row: half the interquartile range of the
        per-round ratios (cachecore / raw in the same round).
    :param unit: ``"ops/s"`` or ``"keys/s"``.
    :param rounds: cachecore's speed in each round, in the order run.
    :param raw_rounds: the raw client's speed in each round (empty without raw).
    """

    workload: str
    ops_per_sec: float
    raw_ops_per_sec: float | None
    ratio: float | None
    goal: float | None
    spread: float = 0.0
    unit: str = "ops/s"
    rounds: tuple[float, ...] = ()
    raw_rounds: tuple[float, ...] = ()

    @property
    def met(self) -> bool | None:
        """Whether the ratio reaches the goal; None when either is missing."""
        if self.ratio is None or self.goal is None:
            return None
        return self.ratio >= self.goal

    @property
    def status(self) -> str | None:
        """``"ok"`` (the goal is reached), ``"within noise"`` (below the goal by less
        than :attr:`spread`), ``"below goal"`` (below it by more than the noise), or
        None for a row without a ratio or a goal."""
        if self.ratio is None or self.goal is None:
            return None
        if self.ratio >= self.goal:
            return "ok"
        if self.ratio + self.spread >= self.goal:
            return "within noise"
        return "below goal"


def check_seconds(seconds: float) -> float:
    """``seconds`` if it is a budget :func:`run_bench` can keep.

    :raises ValueError: not a number from :data:`MIN_SECONDS` to :data:`MAX_SECONDS`.
    """
    if not (isinstance(seconds, int | float) and math.isfinite(seconds)):
        raise ValueError(f"the time budget must be a number of seconds, got {seconds!r}")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ValueError(
            f"the time budget must be from {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds, "
            f"got {seconds:g}"
        )
    return float(seconds)


def is_in_process_fake(cache: BaseRedisCache) -> bool:
    """Whether ``cache`` talks to fakeredis in this process (``memory://``), not a server."""
    return type(cache.client).__module__.startswith("fakeredis") or cache.description.startswith(
        "memory://"
    )


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


def _clear_prefix(cache: BaseRedisCache, prefix: str) -> float:
    """Remove every key under ``prefix``; return the seconds it took."""
    if not prefix.strip(":") or BENCH_PREFIX not in prefix:  # never a FLUSHDB
        raise RuntimeError(f"refusing to clear unexpected prefix {prefix!r}")
    start = perf_counter()
    _with_prefix(cache, prefix).clear()
    return perf_counter() - start


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Move the objects alive now out of the garbage collector's view for the run, so the
    collection before each cell costs microseconds, not tens of milliseconds."""
    if gc.get_freeze_count():  # the program freezes on its own: leave that alone
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_bench(
    cache_or_url: BaseRedisCache | str,
    seconds: float = DEFAULT_SECONDS,
    progress: Progress | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    clear_keys: int = 10_000,
    workloads: Sequence[Workload] = WORKLOADS,
    started: float | None = None,
) -> list[Row]:
    """Measure cachecore against its own client on the server of ``cache_or_url``.

    The run takes about ``seconds`` of wall time, everything included: filling the
    keys each row reads, measuring, and removing the keys again. Every row gets an
    equal share of the time left when it starts (so a row that overruns shortens the
    rows after it); within a row, cachecore and the raw client alternate in
    ``rounds`` interleaved rounds. The ``clear`` row sizes its
    key count to its share (at most ``clear_keys``) and runs fewer rounds when the
    server is too slow for all of them in time.

    :param cache_or_url: a cache (its client, class and serializer are used; its data
        is left alone) or a URL for :func:`cachecore.from_url`.
    :param seconds: the budget, from :data:`MIN_SECONDS` to :data:`MAX_SECONDS`.
    :param progress: called as work advances, see :data:`Progress`.
    :param rounds: interleaved rounds per row.
    :param clear_keys: at most this many keys per cell of the ``clear`` row; 0 skips it.
    :param started: when the budget began, a :func:`time.perf_counter` value (e.g.
        before the cache was built); default: now.
    :returns: one :class:`Row` per workload, then ``clear``.
    :raises ValueError: ``seconds`` out of range.
    :raises BackendError: the server failed (the keys written so far are still
        removed, if the server allows); the raw client's own errors propagate as raised.
    """
    from cachecore.config import from_url

    check_seconds(seconds)
    start = perf_counter() if started is None else started
    end = start + seconds
    owned = isinstance(cache_or_url, str)
    base = from_url(cache_or_url) if isinstance(cache_or_url, str) else cache_or_url
    client = base.client
    cache, prefix = _bench_cache(base, token=secrets.token_hex(4))
    rows_left = len(workloads) + (1 if clear_keys else 0)
    cleanups: list[float] = []
    keys = max(100, min(SINGLE_KEYS, int(seconds * KEYS_PER_SECOND)))

    def report(label: str) -> Callable[[], None]:
        def advance() -> None:
            if progress is not None:
                progress(min(1.0, (perf_counter() - start) / seconds), label)

        return advance

    rows: list[Row] = []
    try:
        with _frozen_heap():
            cache.ping()  # raise_errors: an unreachable server fails here, before any setup
            # The rows run in reverse table order: the multi-key rows, whose calls take
            # longest (and can least shrink to a short share), first; the quick
            # single-key rows last, where a short share still holds many calls.
            by_index: dict[int, Row] = {}
            for index in reversed(range(len(workloads))):
                workload = workloads[index]
                report(workload.name)()
                now = perf_counter()
                # Keep back what the final cleanup (one SCAN of an almost empty prefix) takes.
                row_end = now + max(0.0, end - min(cleanups, default=0.0) - now) / rows_left
                row_prefix = f"{prefix}{index:02d}:"
                by_index[index] = _bench_row(
                    workload,
                    cache,
                    client,
                    row_prefix,
                    rounds,
                    keys=keys,
                    deadline=row_end - (cleanups[-1] if cleanups else 0.0),
                    on_cell=report(workload.name),
                )
                cleanups.append(_clear_prefix(cache, row_prefix))
                rows_left -= 1
            rows += [by_index[index] for index in range(len(workloads))]
            if clear_keys:
                report("clear")()
                deadline = end - min(cleanups, default=0.0)
                rows.append(
                    _bench_clear(cache, client, prefix + "cl:", clear_keys, rounds, deadline)
                )
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


def _bench_row(
    workload: Workload,
    cache: BaseRedisCache,
    client: Any,
    row_prefix: str,
    rounds: int,
    *,
    keys: int,
    deadline: float,
    on_cell: Callable[[], None],
) -> Row:
    # cachecore writes under ROW + "cc:", the raw client under ROW + "rw:": the same length.
    cc_prefix = row_prefix + "cc:"
    cc_cache = _with_prefix(cache, cc_prefix)
    columns: dict[str, Runner] = {
        "cachecore": workload.cache_runner(cc_cache, client, cc_prefix, key_count=keys)
    }
    raw = _raw_column(workload, client, row_prefix + "rw:", keys)
    if raw is not None:
        columns["raw"] = raw
    samples = measure_until(
        columns, rounds=rounds, deadline=deadline, on_cell=on_cell, max_chunk=keys
    )
    return _row(workload.name, samples, workload.goal)


def _raw_column(workload: Workload, client: Any, prefix: str, keys: int) -> Runner | None:
    """The raw client's runner, or None when it cannot do this job on this client: not a
    redis-py-style API, or a cluster refusing a multi-key command across hash slots."""
    unusable: tuple[type[BaseException], ...] = (AttributeError, TypeError, *client_errors())
    try:
        runner = workload.raw_runner(client, prefix, key_count=keys)
        runner(1)
    except unusable:
        return None
    return runner


def _row(
    name: str, samples: Mapping[str, list[float]], goal: float | None, unit: str = "ops/s"
) -> Row:
    cc = samples["cachecore"]
    ops = statistics.median(cc)
    raw = samples.get("raw")
    if raw is None:
        return Row(name, ops, None, None, goal, unit=unit, rounds=tuple(cc))
    raw_ops = statistics.median(raw)
    _, spread = paired_ratio(cc, raw)
    ratio = ops / raw_ops if raw_ops > 0 else math.inf
    return Row(name, ops, raw_ops, ratio, goal, spread, unit, tuple(cc), tuple(raw))


def _bench_clear(
    cache: BaseRedisCache,
    client: Any,
    prefix: str,
    max_count: int,
    rounds: int,
    deadline: float,
) -> Row:
    cc_prefix, raw_prefix = prefix + "cc:", prefix + "rw:"
    cc_cache = _with_prefix(cache, cc_prefix)

    def cell(column: str, count: int) -> float:
        """Fill ``count`` keys (untimed), clear them (timed); keys removed per second."""
        target = cc_prefix if column == "cc" else raw_prefix
        populate(client, target, count)
        gc.collect()
        start = perf_counter()
        if column == "cc":
            cc_cache.clear()
        else:
            raw_clear(client, glob_escape(target) + "*")
        return count / (perf_counter() - start)

    # An untimed probe round: what one key costs here (fill and clear, plus the SCAN of
    # the whole keyspace each clear makes), to size the cells to the time left.
    probe_start = perf_counter()
    cell("cc", CLEAR_PROBE_KEYS)
    cell("raw", CLEAR_PROBE_KEYS)
    per_key = (perf_counter() - probe_start) / (2 * CLEAR_PROBE_KEYS)
    fits = max(0.0, deadline - perf_counter()) / (2 * rounds) / per_key
    count = max(CLEAR_PROBE_KEYS, min(max_count, int(fits)))
    speeds: dict[str, list[float]] = {"cachecore": [], "raw": []}
    last_round = 0.0
    for number in range(rounds):
        began = perf_counter()
        if number and began + last_round > deadline:  # at least one round, then in time
            break
        for column in ("cc", "raw") if number % 2 == 0 else ("raw", "cc"):
            speeds["cachecore" if column == "cc" else "raw"].append(cell(column, count))
        last_round = perf_counter() - began
    return _row("clear", speeds, 0.5, "keys/s")


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


def _speed(value: float) -> str:
    """A speed with at least three significant digits, so ratios can be checked."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_rows(rows: Sequence[Row], rounds: int = DEFAULT_ROUNDS) -> str:
    """The result as a fixed-width table (under 80 columns), with a legend."""
    lines = [
        f"{'':16}  {'median per second':>25}",
        f"{'workload':<16}  {'cachecore':>12} {'raw client':>12} {'ratio':>6} {'noise':>6} "
        f"{'goal':>6}  status",
    ]
    for row in rows:
        name = row.workload if row.unit == "ops/s" else f"{row.workload} ({row.unit})"
        raw = _speed(row.raw_ops_per_sec) if row.raw_ops_per_sec is not None else "-"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        noise = f"±{row.spread:.2f}" if row.ratio is not None else ""
        goal = f"{row.goal:.2f}x" if row.goal is not None else ""
        lines.append(
            f"{name:<16}  {_speed(row.ops_per_sec):>12} {raw:>12} {ratio:>6} {noise:>6} "
            f"{goal:>6}  {row.status or ''}".rstrip()
        )
    lines += [
        f"Each speed is the median of {rounds} rounds in which cachecore and the raw client",
        "(the same client object, called directly) take turns. ratio = cachecore / raw",
        "client of those two medians; higher is better. noise = half the interquartile",
        "range of the per-round ratios. 'below goal': the ratio is under the goal by more",
        "than the noise; 'within noise': under it by less.",
    ]
    short = [f"{row.workload} ({len(row.rounds)})" for row in rows if len(row.rounds) < rounds]
    if short:
        lines.append(f"Fewer rounds, to keep the time budget: {', '.join(short)}.")
    return "\n".join(lines)


def _fake_note(cache: BaseRedisCache) -> str:
    return (
        f"Note: {cache.description} is fakeredis, an in-process fake server written in "
        "Python.\nThese numbers measure that fake, not a server. To measure your own "
        "server,\ngive a redis://, valkey:// or keydb:// URL.\n"
    )


def bench_document(
    cache: BaseRedisCache,
    rows: Sequence[Row],
    *,
    seconds: float,
    elapsed: float,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, Any]:
    """The ``cachecore bench --json`` document (see docs/cli.md for every key)."""
    return {
        "schema": JSON_SCHEMA,
        "cachecore_version": importlib.metadata.version("cachecore"),
        "url": cache.description,
        "in_process_fake": is_in_process_fake(cache),
        "budget_seconds": seconds,
        "elapsed_seconds": round(elapsed, 3),
        "rounds": rounds,
        "rows": [
            {
                "workload": row.workload,
                "unit": row.unit,
                "cachecore": row.ops_per_sec,
                "raw": row.raw_ops_per_sec,
                "ratio": row.ratio,
                "noise": row.spread if row.ratio is not None else None,
                "goal": row.goal,
                "status": row.status,
                "cachecore_rounds": list(row.rounds),
                "raw_rounds": list(row.raw_rounds),
            }
            for row in rows
        ],
    }


def report_bench(
    cache: BaseRedisCache,
    out: TextIO,
    err: TextIO,
    *,
    seconds: float = DEFAULT_SECONDS,
    as_json: bool = False,
    started: float | None = None,
) -> None:
    """Run :func:`run_bench` on ``cache`` and print the table (or, with ``as_json``, the
    JSON document of :func:`bench_document`) on ``out``; the progress bar goes to ``err``.
    ``started`` is when the budget began (see :func:`run_bench`).

    :raises ValueError: ``seconds`` out of range (nothing is run).
    :raises BackendError: the server failed; the raw client's errors propagate as raised.
    """
    check_seconds(seconds)
    if not as_json:
        out.write(
            f"cachecore bench: {cache.description}\n{seconds:g} s in all, setup included. "
            f"Keys go under '{BENCH_PREFIX}*',\nwith a {VALUE_TIMEOUT} s TTL, and are "
            "removed afterwards.\n"
        )
    if is_in_process_fake(cache):
        (err if as_json else out).write(_fake_note(cache))
    out.flush()
    bar = ProgressBar(err)
    start = perf_counter() if started is None else started
    try:
        rows = run_bench(cache, seconds, bar, started=start)
    finally:
        bar.finish()
    elapsed = perf_counter() - start
    if as_json:
        document = bench_document(cache, rows, seconds=seconds, elapsed=elapsed)
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(format_rows(rows) + "\n")
        out.write(f"Took {elapsed:.1f} s.\n")


def main_bench(
    target: BaseRedisCache | str | None,
    out: TextIO,
    *,
    seconds: float = DEFAULT_SECONDS,
    err: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """Benchmark cachecore on ``target`` (a cache, a URL, or None for the configured
    cache) and print a table on ``out`` (see :func:`report_bench`); progress and errors
    go to ``err`` (default: standard error). A cache passed in is closed afterwards.

    :returns: a process exit status: 0 done, 1 the server failed, 2 bad configuration
        or a budget out of range.
    """
    from cachecore.config import from_url, get_cache

    started = perf_counter()
    err = sys.stderr if err is None else err
    failures: tuple[type[BaseException], ...] = (CachecoreError, *client_errors())
    try:
        check_seconds(seconds)
        if isinstance(target, BaseRedisCache):
            cache = target
        else:
            cache = from_url(target) if target else get_cache()
    except (CachecoreError, ValueError) as exc:
        err.write(f"cachecore bench: {exc}\n")
        return 2
    try:
        report_bench(cache, out, err, seconds=seconds, as_json=as_json, started=started)
    except failures as exc:
        cause = exc.__cause__ if isinstance(exc, CachecoreError) and exc.__cause__ else exc
        err.write(f"cachecore bench: the server failed: {type(cause).__name__}: {cause}\n")
        return 1
    finally:
        cache.close()
    return 0
