"""The ``clear()`` row: many prefixed keys removed, and how long the server blocked.

Each cell fills the server with ``count`` keys under the column's prefix (``DEBUG
POPULATE`` when the server allows it, else a Lua loop in chunks, else pipelined SETs;
none of it timed), turns on ``slowlog-log-slower-than 0`` so that every command is
logged with its execution time, times the column's clear, and reads back the longest
command from SLOWLOG (the control connection's own CONFIG/SLOWLOG commands excluded).
The previous SLOWLOG settings are restored after every cell.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from cachecore.bench.harness import paired_ratio
from cachecore.bench.workloads import populate, raw_clear

SLOWLOG_LEN = 100_000
"""SLOWLOG capacity during a cell: every command of a 1,000,000-key clear fits."""

LUA_CHUNK = 10_000
"""Keys written per EVAL when DEBUG POPULATE is unavailable (about 5 ms of server time)."""

_LUA_FILL = (
    "for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do "
    "redis.call('SET', ARGV[1] .. i, 'v') end return 1"
)
_OWN_COMMANDS = frozenset({"CONFIG", "SLOWLOG", "DEBUG", "EVAL", "DBSIZE"})

LATENCY_GOAL_MS = 5.0
"""Goal: cachecore's longest command while clearing stays within this many ms."""

SPEED_GOAL = 0.5
"""Goal: cachecore's clear is at least this fraction of the raw loop's speed (same order)."""


@dataclass
class ClearColumn:
    """One way to clear: ``run(prefix)`` removes every key under ``prefix``."""

    plugin: str
    kind: str  # "cachecore", "raw" or "cachelib"
    label: str
    run: Callable[[str], object]
    prefix: str
    seconds: list[float] = field(default_factory=list)
    longest_ms: list[float] = field(default_factory=list)
    longest_command: list[str] = field(default_factory=list)
    leftover: int = 0


@dataclass
class ClearResult:
    """The clear row of one plugin."""

    plugin: str
    keys: int
    columns: dict[str, ClearColumn]
    vs_raw: float
    vs_raw_spread: float
    vs_cachelib_time: float | None
    latency_met: bool
    speed_met: bool
    cachelib_met: bool | None

    @property
    def met(self) -> bool:
        """Every clear goal of this plugin met."""
        return self.latency_met and self.speed_met and self.cachelib_met is not False


def _fill(control: Any, client: Any, prefix: str, count: int) -> str:
    """Write ``count`` keys ``{prefix}{i}``; return the method used."""
    if not prefix.endswith(":"):
        raise ValueError("the clear prefix must end with ':' (DEBUG POPULATE adds it)")
    try:
        control.execute_command("DEBUG", "POPULATE", count, prefix[:-1])
        return "DEBUG POPULATE"
    except Exception:  # disabled (enable-debug-command no) or not allowed by ACL
        pass
    try:
        for first in range(0, count, LUA_CHUNK):
            last = min(first + LUA_CHUNK, count) - 1
            control.execute_command("EVAL", _LUA_FILL, 0, prefix, first, last)
        return "Lua SET loop"
    except Exception:  # scripting disabled
        pass
    populate(client, prefix, count)
    return "pipelined SET"


def _slowlog_max(control: Any) -> tuple[float, str]:
    longest = 0.0
    name = ""
    for entry in control.slowlog_get(SLOWLOG_LEN):
        command = entry.get("command", "")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        word = str(command).split(" ", 1)[0].upper()
        if word in _OWN_COMMANDS:
            continue
        duration_us = float(entry.get("duration", 0))
        if duration_us > longest:
            longest, name = duration_us, word
    return longest / 1000, name


def _config_get(control: Any, name: str) -> str:
    return str(control.config_get(name)[name])


def measure_clear(
    control: Any,
    fill_client: Any,
    columns: Sequence[ClearColumn],
    count: int,
    rounds: int,
    on_cell: Callable[[str], None] | None = None,
) -> str:
    """Run every column ``rounds`` times, in rotated order; fills each column's lists.

    :returns: how keys were written (``DEBUG POPULATE``...).
    """
    saved = {
        name: _config_get(control, name) for name in ("slowlog-log-slower-than", "slowlog-max-len")
    }
    method = ""
    try:
        control.config_set("slowlog-max-len", SLOWLOG_LEN)
        for number in range(rounds):
            shift = number % len(columns)
            for column in [*columns[shift:], *columns[:shift]]:
                before = int(control.dbsize())
                method = _fill(control, fill_client, column.prefix, count)
                filled = int(control.dbsize()) - before
                if filled != count:
                    raise RuntimeError(
                        f"filling {column.prefix}* wrote {filled} keys, expected {count}"
                    )
                gc.collect()
                control.slowlog_reset()
                control.config_set("slowlog-log-slower-than", 0)
                start = perf_counter()
                column.run(column.prefix)
                elapsed = perf_counter() - start
                control.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
                longest, name = _slowlog_max(control)
                control.slowlog_reset()
                column.seconds.append(elapsed)
                column.longest_ms.append(longest)
                column.longest_command.append(name)
                column.leftover = max(column.leftover, int(control.dbsize()) - before)
                if on_cell is not None:
                    on_cell(column.label)
    finally:
        for name, value in saved.items():
            control.config_set(name, value)
    return method


def summarize(plugin: str, columns: Sequence[ClearColumn], count: int) -> ClearResult:
    """The goals of one plugin's clear columns (already measured)."""
    by_kind = {c.kind: c for c in columns if c.plugin == plugin}
    cc, raw = by_kind["cachecore"], by_kind["raw"]
    lib = by_kind.get("cachelib")
    vs_raw, spread = paired_ratio([count / s for s in cc.seconds], [count / s for s in raw.seconds])
    vs_lib = None
    cachelib_met = None
    if lib is not None:
        vs_lib, _ = paired_ratio(lib.seconds, cc.seconds)  # >1: cachecore took less time
        cachelib_met = max(cc.longest_ms) < statistics.median(lib.longest_ms)
    return ClearResult(
        plugin=plugin,
        keys=count,
        columns={c.kind: c for c in (cc, raw, lib) if c is not None},
        vs_raw=vs_raw,
        vs_raw_spread=spread,
        vs_cachelib_time=vs_lib,
        latency_met=max(cc.longest_ms) <= LATENCY_GOAL_MS and cc.leftover == 0,
        speed_met=vs_raw >= SPEED_GOAL,
        cachelib_met=cachelib_met,
    )


def raw_clear_runner(client: Any) -> Callable[[str], object]:
    """The raw column: :func:`cachecore.bench.raw_clear` on ``prefix*``."""

    def run(prefix: str) -> object:
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)
        return raw_clear(client, escaped + "*")

    return run
