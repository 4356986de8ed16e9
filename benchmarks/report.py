"""Tables and the JSON line of ``python -m benchmarks``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.clear import LATENCY_GOAL_MS, SPEED_GOAL, ClearResult

CACHELIB_EQUAL = 0.99
"""A ratio to cachelib of at least this counts as "equal": 1% is below this machine's
round-to-round noise. Rows whose goal says "always ahead" need more than 1.00."""

STRICTLY_AHEAD = frozenset({"set_many", "delete_many", "delete_many/DEL"})
"""Rows that must beat cachelib outright (the issue: "always ahead of cachelib")."""


@dataclass(frozen=True)
class WorkloadResult:
    """One workload on one plugin: medians of the rounds and paired ratios."""

    workload: str
    plugin: str
    cachecore: float
    raw: float
    cachelib: float | None
    vs_raw: float
    vs_raw_spread: float
    vs_cachelib: float | None
    goal: float | None

    @property
    def raw_met(self) -> bool:
        return self.goal is None or self.vs_raw >= self.goal

    @property
    def cachelib_met(self) -> bool | None:
        if self.vs_cachelib is None:
            return None
        if self.workload in STRICTLY_AHEAD:
            return self.vs_cachelib > 1.0
        return self.vs_cachelib >= CACHELIB_EQUAL

    @property
    def met(self) -> bool:
        return self.raw_met and self.cachelib_met is not False

    def status(self) -> str:
        if self.met:
            return "met"
        missed = []
        if not self.raw_met:
            missed.append("raw")
        if self.cachelib_met is False:
            missed.append("cachelib")
        return "NOT met (" + ", ".join(missed) + ")"

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "plugin": self.plugin,
            "ops_per_sec": {
                "cachecore": round(self.cachecore),
                "raw": round(self.raw),
                "cachelib": None if self.cachelib is None else round(self.cachelib),
            },
            "vs_raw": round(self.vs_raw, 3),
            "vs_raw_spread": round(self.vs_raw_spread, 3),
            "vs_cachelib": None if self.vs_cachelib is None else round(self.vs_cachelib, 3),
            "goal_vs_raw": self.goal,
            "met": self.met,
        }


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def workload_table(plugin: str, title: str, results: Sequence[WorkloadResult]) -> list[str]:
    """The table of one plugin's workload rows."""
    lines = [
        title,
        f"  {'workload':<16}{'cachecore':>11}{'raw':>11}{'cachelib':>11}"
        f"{'vs raw':>9}{'±':>6}{'vs cachelib':>13}{'goal':>8}  status",
    ]
    for r in results:
        if r.plugin != plugin:
            continue
        lib = "-" if r.cachelib is None else f"{r.cachelib:,.0f}"
        goal = "info" if r.goal is None else f">={r.goal:.2f}"
        lines.append(
            f"  {r.workload:<16}{r.cachecore:>11,.0f}{r.raw:>11,.0f}{lib:>11}"
            f"{_fmt_ratio(r.vs_raw):>9}{r.vs_raw_spread:>6.2f}"
            f"{_fmt_ratio(r.vs_cachelib):>13}{goal:>8}  {r.status()}"
        )
    return lines


def clear_table(result: ClearResult, rounds: int, fill_method: str) -> list[str]:
    """The clear rows of one plugin."""
    lines = [
        f"  clear() of {result.keys:,} prefixed keys ({rounds} rounds, filled by "
        f"{fill_method}; SLOWLOG with slowlog-log-slower-than 0)",
        f"  {'column':<22}{'median s':>10}{'keys/s':>12}{'longest command (worst round)':>33}",
    ]
    for column in result.columns.values():
        worst = max(range(len(column.longest_ms)), key=column.longest_ms.__getitem__)
        seconds = statistics.median(column.seconds)
        longest = f"{column.longest_ms[worst]:.2f} ms {column.longest_command[worst]}"
        leftover = f"  ({column.leftover} keys left!)" if column.leftover else ""
        lines.append(
            f"  {column.label:<22}{seconds:>10.2f}{result.keys / seconds:>12,.0f}"
            f"{longest:>33}{leftover}"
        )
    cc_worst = max(result.columns["cachecore"].longest_ms)
    lines.append(
        f"  goals: longest command <= {LATENCY_GOAL_MS:g} ms: "
        f"{'met' if result.latency_met else 'NOT met'} ({cc_worst:.2f} ms); "
        f"speed >= {SPEED_GOAL:g}x raw loop: {'met' if result.speed_met else 'NOT met'} "
        f"({result.vs_raw:.2f}x ±{result.vs_raw_spread:.2f})"
        + (
            ""
            if result.cachelib_met is None
            else f"; blocks less than cachelib: {'met' if result.cachelib_met else 'NOT met'}"
            f" (cachelib total time / cachecore's: {_fmt_ratio(result.vs_cachelib_time)})"
        )
    )
    return lines


def clear_json(result: ClearResult) -> dict[str, Any]:
    return {
        "workload": "clear",
        "plugin": result.plugin,
        "keys": result.keys,
        "columns": {
            kind: {
                "median_seconds": round(statistics.median(c.seconds), 4),
                "longest_command_ms": round(max(c.longest_ms), 3),
                "longest_command": c.longest_command[c.longest_ms.index(max(c.longest_ms))],
                "leftover_keys": c.leftover,
            }
            for kind, c in result.columns.items()
        },
        "vs_raw": round(result.vs_raw, 3),
        "cachelib_time_over_cachecore": None
        if result.vs_cachelib_time is None
        else round(result.vs_cachelib_time, 3),
        "met": result.met,
    }


def json_line(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    """Everything on one line, for scripts: ``python -m benchmarks | tail -1``."""
    return json.dumps({**meta, "rows": list(rows)}, separators=(",", ":"))
