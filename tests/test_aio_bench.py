"""The CPU clock of ``python -m benchmarks.aio --clock cpu``."""

from __future__ import annotations

import os
from time import process_time

from benchmarks.aio import CpuClock


def test_cpu_clock_counts_this_process_and_the_servers_threads() -> None:
    # Given this process as the "server", its CPU time counts twice: once as the
    # benchmark process, once through /proc/<pid>/task/*/schedstat.
    clock = CpuClock(os.getpid())
    try:
        start, own = clock(), process_time()
        while process_time() - own < 0.05:
            pass
        spent, own = clock() - start, process_time() - own
    finally:
        clock.close()
    assert 1.8 * own <= spent <= 2.2 * own, (spent, own)
