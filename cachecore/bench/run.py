"""``run_bench`` and ``main_bench``: the workloads against cachecore and its own client on a
user's server, and the small table ``cachecore bench`` prints.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import secrets
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TextIO

from cachecore.bench.harness import measure, paired_ratio
from cachecore.bench.workloads import (
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
    "DEFAULT_SECONDS",
    "Progress",
    "ProgressBar",
    "Row",
    "format_rows",
    "main_bench",
    "run_bench",
]

BENCH_PREFIX = "cachecore-bench:"
"""Every benchmark key starts with this (after the cache's own key prefix)."""

DEFAULT_SECONDS = 20.0
"""Default measuring time of :func:`run_bench`, in seconds (setup comes on top)."""

Progress = Callable[[float, str], None]
"""Called with the fraction done (0..1) and what is being measured."""


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
                raw_clear(client, glob_escape(target) + "*")
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
