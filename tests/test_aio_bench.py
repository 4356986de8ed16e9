"""The CPU clock of ``python -m benchmarks.aio --clock cpu``."""

from __future__ import annotations

import os
from time import process_time

from benchmarks.aio import ROWS, CpuClock, run
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary


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


def test_every_row_is_measured_against_its_baseline_and_leaves_no_key(
    cachecore_server_binaries: list[ServerBinary], cachecore_servers: ServerPool
) -> None:
    """``python -m benchmarks.aio``'s table, one tiny round: a ratio and a goal per row of
    :data:`benchmarks.aio.ROWS`, and the benchmark's keys removed afterwards."""
    newest = max(cachecore_server_binaries, key=lambda b: (b.kind == "valkey", b.version))
    server = cachecore_servers.shared(newest)
    lines = run(server.url("valkey", db=6), "valkey-py", rounds=1, slice_seconds=0.005)
    table = lines[2:]
    assert [line[:20].strip() for line in table] == [row for row, _, _ in ROWS]
    for line, (_, baseline, goal) in zip(table, ROWS, strict=True):
        assert baseline in line and f"{goal:.2f}" in line
        assert float(line.split("x ±")[0].split()[-1]) > 0
    assert server.client(db=6).dbsize() == 0
