"""The measuring harness: calibrated chunks, timed slices, interleaved rounds, and paired
ratios.

Each *cell* (one workload on one column) runs for a fixed slice of wall time in chunks
of a few milliseconds, after an untimed warm-up chunk; rounds visit every column of a
workload in an order rotated each round and reversed every other, so slow drift of the
machine hits every column alike. A column's speed is the median of its rounds; a ratio
is the median of the per-round paired ratios.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter

from cachecore.bench.workloads import SINGLE_KEYS, Runner

__all__ = ["CHUNK_SECONDS", "calibrate", "measure", "paired_ratio", "run_slice"]

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
