"""The cluster-cost section: the same calls on the single server and on a local cluster.

A throwaway cluster (:class:`cachecore.testing.cluster.ClusterProcess`: 3 primaries, one
replica each) is started from the same server binary as the single server. For each
plugin, cachecore runs :data:`CLUSTER_WORKLOADS` (the definitions of the main rows,
through the cache only) on the single server (``redis://`` / ``valkey://``) and on the
cluster (``redis+cluster://`` / ``valkey+cluster://``), interleaved like every other
row; then the multi-key rows again with a hash tag as the key prefix (every key in one
slot), then ``clear()`` of many prefixed keys on each. The ratio is cluster / single.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from cachecore.bench.harness import paired_ratio
from cachecore.bench.workloads import (
    MANY_KEYS,
    SINGLE_KEYS,
    VALUE_TIMEOUT,
    WORKLOADS,
    RawRunnerFactory,
    Runner,
    Workload,
    fill_raw,
    key_names,
    populate,
    str_value,
)
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.servers import ServerBinary

CLUSTER_WORKLOADS: tuple[str, ...] = ("get", "set", "get_many[str]", "set_many", "delete_many")
"""The main rows run on both (their cachecore side only)."""

TAGGED_WORKLOADS: tuple[str, ...] = ("get_many[str]", "set_many", "delete_many")
"""Rows run again with a hash tag as the key prefix: all 100 keys in one slot."""

TAG_SUFFIX = "/tag"

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1


def _raw_pipeline_get_many_str(client: Any, prefix: str, key_count: int = SINGLE_KEYS) -> Runner:
    """The raw cluster baseline of ``get_many[str]``: one ``GET`` a key through the
    cluster client's pipeline (a plain MGET is refused across slots), values decoded."""
    keys = [prefix + k for k in key_names("gms", MANY_KEYS)]
    fill_raw(client, {k: str_value(i) for i, k in enumerate(keys)})
    pipeline = client.pipeline

    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            pipe = pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            [None if v is None else v.decode() for v in pipe.execute()]
        return perf_counter() - start

    return run


@dataclass(frozen=True)
class RawClusterBaseline:
    """What the raw cluster client does for one cluster row, and the goal of
    cachecore-on-the-cluster / that."""

    op: str
    goal: float
    runner: RawRunnerFactory


def _main_raw(name: str) -> RawRunnerFactory:
    return {w.name: w for w in WORKLOADS}[name].raw_runner


RAW_CLUSTER: dict[str, RawClusterBaseline] = {
    "get": RawClusterBaseline("cluster.get(k).decode()", 0.98, _main_raw("get")),
    "set": RawClusterBaseline(f"cluster.set(k, str, ex={VALUE_TIMEOUT})", 0.98, _main_raw("set")),
    "get_many[str]": RawClusterBaseline(
        f"p = cluster.pipeline(); p.get(k) x{MANY_KEYS}; [v.decode() for v in p.execute()]",
        1.0,
        _raw_pipeline_get_many_str,
    ),
    "set_many": RawClusterBaseline(
        f"p = cluster.pipeline(); p.set(k, v, ex={VALUE_TIMEOUT}) x{MANY_KEYS}; p.execute()",
        1.0,
        _main_raw("set_many"),
    ),
    "delete_many": RawClusterBaseline(
        f"p = cluster.pipeline(); p.delete(k) x{MANY_KEYS}; p.execute()",
        1.0,
        _main_raw("delete_many"),
    ),
}
"""The raw cluster client's baseline of each untagged cluster row (issue: single-key
calls >= 0.98x the raw cluster client, multi-key calls across ~100 slots >= 1.0x its
pipeline doing the same work). The single-key and set/delete baselines are the main
rows' own raw runners, run on the cluster client."""


def raw_cluster_client(cache_client: Any, host: str, port: int) -> Any:
    """A plain cluster client of ``cache_client``'s library (``RedisCluster`` or
    ``ValkeyCluster``, the library's class with its defaults, not cachecore's subclass)
    on the seed node ``host:port``: the raw column's client."""
    for cls in type(cache_client).__mro__:
        if cls.__module__ in ("redis.cluster", "valkey.cluster") and cls.__name__.endswith(
            "Cluster"
        ):
            return cls(host=host, port=port)
    raise TypeError(f"{type(cache_client).__name__} is no redis-py-style cluster client")


def workloads(tagged: bool = False) -> list[Workload]:
    """The main rows' definitions of :data:`CLUSTER_WORKLOADS` (or the tagged ones)."""
    by_name = {w.name: w for w in WORKLOADS}
    return [by_name[name] for name in (TAGGED_WORKLOADS if tagged else CLUSTER_WORKLOADS)]


def start_cluster(binary: ServerBinary) -> tuple[ClusterProcess | None, str]:
    """Start the cluster; (cluster, "") or (None, why it cannot run)."""
    if binary.kind == "redis":
        major, _, rest = binary.version.partition(".")
        minor = rest.partition(".")[0]
        if (int(major or 0), int(minor or 0)) < (6, 2):
            return None, f"{binary.id} is older than Redis 6.2 (no ADDSLOTSRANGE/cluster tools)"
    cluster = ClusterProcess(binary, PRIMARIES, REPLICAS_PER_PRIMARY)
    try:
        cluster.start()
    except Exception as exc:  # a build without cluster support, no free ports...
        cluster.close()
        return None, f"{binary.id} could not form a cluster: {type(exc).__name__}: {exc}"
    return cluster, ""


@dataclass(frozen=True)
class ClusterRow:
    """One workload of one plugin: cachecore on the single server vs on the cluster
    (``ratio``), and, for the rows of :data:`RAW_CLUSTER`, cachecore on the cluster vs
    the raw cluster client doing the same work (``vs_raw``, against ``goal``)."""

    workload: str
    plugin: str
    single: float
    cluster: float
    ratio: float
    spread: float
    unit: str = "ops/s"
    raw: float | None = None
    vs_raw: float | None = None
    vs_raw_spread: float = 0.0
    goal: float | None = None

    @property
    def met(self) -> bool:
        """Whether the ratio to the raw cluster client reaches the goal (True without one)."""
        return self.vs_raw is None or self.goal is None or self.vs_raw >= self.goal

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "workload": self.workload,
            "plugin": self.plugin,
            "unit": self.unit,
            "single": round(self.single),
            "cluster": round(self.cluster),
            "cluster_over_single": round(self.ratio, 3),
            "spread": round(self.spread, 3),
        }
        if self.raw is not None and self.vs_raw is not None:
            row |= {
                "raw_cluster": round(self.raw),
                "cluster_over_raw_cluster": round(self.vs_raw, 3),
                "vs_raw_spread": round(self.vs_raw_spread, 3),
                "goal": self.goal,
                "met": self.met,
            }
        return row


@dataclass
class ClearCell:
    """One column of the clear row: ``cache.clear()`` of ``count`` keys that ``client``
    wrote under ``prefix`` (the cache's key prefix)."""

    plugin: str
    where: str  # "single" or "cluster"
    cache: Any
    client: Any
    prefix: str
    seconds: list[float] = field(default_factory=list)
    leftover: int = 0


def _dbsize(client: Any) -> int:
    # RedisCluster.dbsize() sums the primaries; a plain client answers for its db.
    return int(client.dbsize())


def measure_clear(
    cells: Sequence[ClearCell],
    count: int,
    rounds: int,
    on_cell: Callable[[str], None] | None = None,
) -> None:
    """Fill (pipelined SET EX, untimed) and time ``clear()`` for every cell, rotated."""
    for number in range(rounds):
        shift = number % len(cells)
        for cell in [*cells[shift:], *cells[:shift]]:
            before = _dbsize(cell.client)
            populate(cell.client, cell.prefix, count)
            gc.collect()
            start = perf_counter()
            cell.cache.clear()
            cell.seconds.append(perf_counter() - start)
            cell.leftover = max(cell.leftover, _dbsize(cell.client) - before)
            if on_cell is not None:
                on_cell(f"{cell.plugin} {cell.where}")


def clear_row(plugin: str, cells: Sequence[ClearCell], count: int) -> ClusterRow:
    by_where = {c.where: c for c in cells if c.plugin == plugin}
    single = [count / s for s in by_where["single"].seconds]
    cluster = [count / s for s in by_where["cluster"].seconds]
    ratio, spread = paired_ratio(cluster, single)
    return ClusterRow(
        f"clear {count:,}",
        plugin,
        statistics.median(single),
        statistics.median(cluster),
        ratio,
        spread,
        "keys/s",
    )


@dataclass
class ClusterOutcome:
    """The cluster-cost section."""

    label: str = ""
    pinning: str = ""
    clients: dict[str, str] = field(default_factory=dict)
    rows: list[ClusterRow] = field(default_factory=list)
    skipped: str = ""
    notes: list[str] = field(default_factory=list)
