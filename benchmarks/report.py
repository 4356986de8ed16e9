"""Tables and the JSON line of ``python -m benchmarks``."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.clear import LATENCY_GOAL_MS, SPEED_GOAL, ClearResult
from benchmarks.cluster import (
    CLUSTER_WORKLOADS,
    RAW_CLUSTER,
    TAG_SUFFIX,
    TAGGED_WORKLOADS,
    ClusterOutcome,
)
from benchmarks.near import HOT_KEYS, LAG_GAP, NEAR_WORKLOADS, LagResult, NearResult

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


# --------------------------------------------------------------------------- near cache


def near_table(
    plugin: str, results: Sequence[NearResult], lags: Sequence[LagResult], writes: int
) -> list[str]:
    """The near-cache rows of one plugin, then its invalidation lag."""
    lines = [
        f"  near cache: cachecore-{plugin} with near_cache=true vs plain cachecore-{plugin} "
        f"vs raw (ops/s; {HOT_KEYS} hot keys, read before: every near call is a local hit)",
        f"  {'workload':<16}{'near':>11}{'plain':>11}{'raw':>11}"
        f"{'vs raw':>9}{'±':>6}{'vs plain':>10}{'goal':>8}  status",
    ]
    for r in results:
        if r.plugin != plugin:
            continue
        lines.append(
            f"  {r.workload:<16}{r.near:>11,.0f}{r.plain:>11,.0f}{r.raw:>11,.0f}"
            f"{_fmt_ratio(r.vs_raw):>9}{r.vs_raw_spread:>6.2f}{_fmt_ratio(r.vs_plain):>10}"
            f"{r.goal_text():>8}  {'met' if r.met else 'NOT met (raw)'}"
        )
    mine = [lag for lag in lags if lag.plugin == plugin]
    if not mine:
        return lines
    lines.append(
        f"  invalidation lag, ms ({writes} writes each): from the write's reply until the near "
        "cache's get() returns the new value"
    )
    states = sorted({lag.pinned for lag in mine}, reverse=True)
    header = f"  {'writer':<44}"
    for pinned in states:
        header += f"{'pinned:' if pinned else 'unpinned:':>10}{'median':>8}{'p90':>7}{'max':>7}"
    lines.append(header)
    labels = {
        "this-thread": "this thread: plain set(), then get() polls",
        "other-process": "other process: raw SET; get() nonstop here",
    }
    for writer in ("this-thread", "other-process"):
        line = f"  {labels[writer]:<44}"
        for pinned in states:
            lag = next((x for x in mine if x.writer == writer and x.pinned == pinned), None)
            if lag is None or not lag.lags:
                line += f"{'':>10}{'-':>8}{'-':>7}{'-':>7}"
                continue
            missing = lag.expected - len(lag.lags)
            line += (
                f"{'':>10}{lag.median_ms:>8.2f}{lag.ms(0.9):>7.2f}{1000 * max(lag.lags):>7.2f}"
                + (f" ({missing} unseen)" if missing else "")
            )
        lines.append(line)
    return lines


def near_definitions() -> list[str]:
    lines = ["near-cache rows (near = cachecore.from_url(..., near_cache=true), its own client):"]
    for w in NEAR_WORKLOADS:
        lines.append(f"  {w.name:<16} near/plain: {w.cache_op}")
        lines.append(f"  {'':<16} raw: {w.raw_op}")
    lines += [
        "  goals: get[near] >= 10x raw (hot reads from process memory); get_many[near] "
        "ahead of raw (> 1.00x); set[near]: info (the price of tracking)",
        "  lag, writer in this thread: a plain cachecore cache (its own connection) sets key k, "
        "then this thread calls near.get(k) until it returns the new value; the near cache's "
        "thread can handle the invalidation while this one waits for the write's reply",
        f"  lag, writer in another process: redis-py/valkey-py SETs k every ~{LAG_GAP * 1000:g} "
        "ms while this thread calls near.get(k) nonstop, never blocking: the near cache's "
        "thread must win the GIL from it (sys.getswitchinterval() = "
        f"{sys.getswitchinterval() * 1000:g} ms); both processes read CLOCK_MONOTONIC",
        "  unpinned: the same, with this process and the server allowed on every CPU",
    ]
    return lines


# --------------------------------------------------------------------------- cluster


def cluster_section(outcome: ClusterOutcome, clear_rounds: int) -> list[str]:
    """The cluster-cost tables, or why the section was skipped."""
    if outcome.skipped:
        return [f"cluster cost: skipped: {outcome.skipped}"]
    lines = [
        "cluster cost: the same cachecore calls on the single server above vs a local cluster",
        f"  cluster: {outcome.label}",
        f"  pinning: {outcome.pinning}",
    ]
    lines += [f"  note: {note}" for note in outcome.notes]
    for plugin, client in outcome.clients.items():
        lines.append(
            f"  plugin {plugin}: {plugin}:// vs {plugin}+cluster:// ({client}) vs the raw "
            "cluster client; cluster/single and cluster/raw ratios"
        )
        lines.append(
            f"  {'workload':<18}{'single':>10}{'cluster':>10}{'raw clu.':>10}"
            f"{'clu/single':>11}{'±':>6}{'clu/raw':>9}{'±':>6}{'goal':>7}  unit"
        )
        for r in outcome.rows:
            if r.plugin != plugin:
                continue
            raw = vs_raw = spread = goal = ""
            if r.raw is not None and r.vs_raw is not None:
                raw, vs_raw, spread = (
                    f"{r.raw:,.0f}",
                    _fmt_ratio(r.vs_raw),
                    f"{r.vs_raw_spread:.2f}",
                )
                goal = "" if r.goal is None else f"{r.goal:.2f}x"
                goal += "" if r.met else " NOT MET"
            lines.append(
                f"  {r.workload:<18}{r.single:>10,.0f}{r.cluster:>10,.0f}{raw:>10}"
                f"{_fmt_ratio(r.ratio):>11}{r.spread:>6.2f}{vs_raw:>9}{spread:>6}{goal:>7}"
                f"  {r.unit}"
            )
    lines.append(
        f"  clear: {clear_rounds} rounds, median keys/s; keys written untimed by pipelined "
        "SET EX on both"
    )
    return lines


def cluster_definitions() -> list[str]:
    names = ", ".join(CLUSTER_WORKLOADS)
    tagged = ", ".join(name + TAG_SUFFIX for name in TAGGED_WORKLOADS)
    return [
        f"cluster rows: {names} are the cachecore calls of the rows above (100 keys per "
        "*_many call, spread over ~100 hash slots: on the cluster one command per slot, "
        "pipelined per node); single = the plugin's cache on the single server, cluster = "
        "cachecore.from_url('<plugin>+cluster://...') on the local cluster",
        f"  {tagged}: the same calls with a hash tag as key prefix ('...{{clu-c}}:'), so all "
        "100 keys share one slot: one MGET / UNLINK to one node (set_many: one pipeline)",
        "  clear: clear() of the keys under one prefix (single: pipelined SCAN + UNLINK; "
        "cluster: the same on every primary, UNLINK per slot)",
        "  raw clu. = the library's own cluster client (RedisCluster / ValkeyCluster with "
        "its defaults) on the same cluster, interleaved with the other columns; "
        "clu/raw = cachecore on the cluster / that:",
        *(f"    {name:<16} {b.op} (goal {b.goal:.2f}x)" for name, b in RAW_CLUSTER.items()),
    ]


def cluster_json(outcome: ClusterOutcome) -> dict[str, Any]:
    return {
        "skipped": outcome.skipped or None,
        "cluster": outcome.label,
        "pinning": outcome.pinning,
        "clients": outcome.clients,
        "rows": [r.as_json() for r in outcome.rows],
        "notes": outcome.notes,
    }
