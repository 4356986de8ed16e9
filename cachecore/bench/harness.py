"""The measuring harness: calibrated chunks, timed slices, interleaved rounds, and paired
ratios.

Each *cell* (one workload on one column) runs for a slice of wall time in chunks of a
few milliseconds, after an untimed warm-up chunk; rounds visit every column of a
workload in an order rotated each round and reversed every other, so slow drift of the
machine hits every column alike. A column's speed is the median of its rounds.

:func:`measure` gives every cell a fixed slice (the repository benchmark);
:func:`measure_until` spreads the time left before a deadline over the cells left, so
a run ends when its budget says (``cachecore bench``).
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter

from cachecore.bench.workloads import SINGLE_KEYS, Runner

__all__ = [
    "CHUNK_SECONDS",
    "calibrate",
    "measure",
    "measure_until",
    "paired_ratio",
    "round_order",
    "run_slice",
]

CHUNK_SECONDS = 0.004
"""Target duration of one timed chunk of calls."""


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
        for name in round_order(names, number):
            samples[name].append(run_slice(columns[name], chunks[name], slice_seconds))
            if on_cell is not None:
                on_cell()
    return samples


def round_order(names: Sequence[str], number: int) -> list[str]:
    """The order of the columns in round ``number``: rotated by one column every two
    rounds and reversed every other round."""
    names = list(names)
    shift = (number // 2) % len(names)
    order = names[shift:] + names[:shift]
    if number % 2:
        order.reverse()
    return order


def measure_until(
    columns: Mapping[str, Runner],
    *,
    rounds: int,
    deadline: float,
    on_cell: Callable[[], None] | None = None,
    max_chunk: int = SINGLE_KEYS,
) -> dict[str, list[float]]:
    """Interleaved measurement (the round order of :func:`measure`) that ends about at
    ``deadline`` (a :func:`time.perf_counter` value).

    Each cell gets an equal share of the time left over the cells left, less the
    overhead measured on the cells before it (warm-up, garbage collection, untimed
    setup inside a runner), so an early cell that overruns shortens the later ones.
    There is no separate calibration: a column's chunk starts at one call and adapts
    to about :data:`CHUNK_SECONDS` (at most a quarter of the cell) as it runs. A cell
    always makes at least one untimed and one timed call, so a deadline too close for
    that is overrun by those calls.

    :returns: ops/s per column per round, as :func:`measure`.
    """
    names = list(columns)
    chunks = dict.fromkeys(names, 0)  # 0: the column has not run yet
    samples: dict[str, list[float]] = {name: [] for name in names}
    cells_left = rounds * len(names)
    overhead = 0.0
    for number in range(rounds):
        for name in round_order(names, number):
            start = perf_counter()
            share = max(0.0, deadline - start) / cells_left
            slice_seconds = max(0.0, share - overhead)
            speed, chunks[name] = _timed_cell(columns[name], chunks[name], slice_seconds, max_chunk)
            samples[name].append(speed)
            # The latest overrun counts most: the machine's load changes as it runs.
            overrun = max(0.0, perf_counter() - start - slice_seconds)
            overhead = overrun if overhead == 0.0 else (overhead + overrun) / 2
            cells_left -= 1
            if on_cell is not None:
                on_cell()
    return samples


def _timed_cell(runner: Runner, chunk: int, seconds: float, max_chunk: int) -> tuple[float, int]:
    """One cell of :func:`measure_until`: ops/s, and the chunk size to use next time.
    ``chunk`` 0 means the column's first cell."""
    gc.collect()
    # An untimed warm-up, as in run_slice; a slow call (chunk of one) warms nothing
    # that its own first timed call would not, so it is left out after the first cell.
    warm = 1 if chunk == 0 else chunk // 4
    if warm:
        runner(warm)
    chunk = max(1, chunk)
    target = min(CHUNK_SECONDS, seconds / 4)
    ops = 0
    timed = 0.0
    deadline = perf_counter() + seconds
    while True:
        began = perf_counter()
        timed += runner(chunk)
        now = perf_counter()
        ops += chunk
        # Wall time, not the runner's timed part: a runner may do untimed setup per call.
        per_op = (now - began) / chunk
        chunk = max(1, min(max_chunk, round(target / per_op))) if per_op > 0 else max_chunk
        # Stop before a chunk that would end past the deadline, not after it.
        if now + per_op * chunk > deadline:
            break
    return (ops / timed if timed > 0 else math.inf), chunk


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Median of the per-round ratios ``a[i] / b[i]``, and half their interquartile range."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(ratios) < 4:
        return statistics.median(ratios), (ratios[-1] - ratios[0]) / 2
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), (q3 - q1) / 2
