"""`cachecore bench`: its time budget, numbers that agree with each other, the user-facing
run on a real server, and what it leaves behind."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import cachecore
from cachecore.bench import WORKLOADS, main_bench, run_bench
from cachecore.bench.harness import paired_ratio
from cachecore.cli import main
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess

ROW_NAMES = [workload.name for workload in WORKLOADS] + ["clear"]


def _newest_valkey(binaries: list[ServerBinary], pool: ServerPool) -> ServerProcess:
    newest = max(binaries, key=lambda b: (b.kind == "valkey", b.version))
    return pool.shared(newest)


def _bench_keys(server: ServerProcess) -> list[bytes]:
    return list(server.client().scan_iter(match="*cachecore-bench:*", count=1000))


def _number(text: str) -> float:
    return float(text.replace(",", "").rstrip("x"))


def _table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by workload: [cachecore, raw, ratio, noise, goal, status...]."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if not cells:
            continue
        name = cells[0]
        if name == "clear" and cells[1:2] == ["(keys/s)"]:
            cells = [name, *cells[2:]]
        if name in ROW_NAMES:
            rows[name] = cells[1:]
    return rows


@pytest.mark.parametrize("seconds", [1, 2])
def test_bench_keeps_its_time_budget_on_memory(
    capsys: pytest.CaptureFixture[str], seconds: int
) -> None:
    url = f"memory://bench-{uuid.uuid4().hex}"
    start = time.perf_counter()
    code = main(["bench", "--seconds", str(seconds), url])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 0, out + err
    # Everything counts: filling keys, measuring, and removing the keys again.
    assert 0.8 * seconds <= elapsed <= 1.2 * seconds, (elapsed, out)
    assert cachecore.from_url(url).client.dbsize() == 0, "bench must remove its keys"

    # It says plainly what memory:// measures.
    assert "fakeredis, an in-process fake" in out
    assert "not a server" in out
    # Every row's ratio is the ratio of the two speeds printed next to it.
    rows = _table_rows(out)
    assert sorted(rows) == sorted(ROW_NAMES), out
    for name, cells in rows.items():
        cc, raw, ratio = _number(cells[0]), _number(cells[1]), _number(cells[2])
        # Speeds are printed with >= 3 significant digits, ratios with 2 decimals.
        assert abs(cc / raw - ratio) <= 0.005 + 0.01 * ratio, (name, cells)
    assert "median of 5 rounds" in out
    assert max(len(line) for line in out.splitlines() if url not in line) <= 80, out


def test_bench_json_numbers_agree_with_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"memory://bench-{uuid.uuid4().hex}"
    assert main(["bench", "--json", "--seconds", "1", url]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)  # stdout holds the JSON document and nothing else
    assert "fakeredis, an in-process fake" in err  # the note goes to stderr instead
    assert document["schema"] == 1
    assert document["url"] == url
    assert document["in_process_fake"] is True
    assert document["budget_seconds"] == 1
    assert 0.8 <= document["elapsed_seconds"] <= 1.2
    assert document["rounds"] == 5
    assert [row["workload"] for row in document["rows"]] == ROW_NAMES
    for row in document["rows"]:
        name = row["workload"]
        assert row["unit"] == ("keys/s" if name == "clear" else "ops/s")
        cc_rounds, raw_rounds = row["cachecore_rounds"], row["raw_rounds"]
        assert 1 <= len(cc_rounds) == len(raw_rounds) <= 5
        assert row["cachecore"] == statistics.median(cc_rounds)
        assert row["raw"] == statistics.median(raw_rounds)
        assert math.isclose(row["ratio"], row["cachecore"] / row["raw"], rel_tol=1e-12)
        assert math.isclose(row["noise"], paired_ratio(cc_rounds, raw_rounds)[1])
        goal = row["goal"]
        if goal is None:
            assert row["status"] is None
        elif row["ratio"] >= goal:
            assert row["status"] == "ok"
        elif row["ratio"] + row["noise"] >= goal:
            assert row["status"] == "within noise"
        else:
            assert row["status"] == "below goal"
    main_rows = [row for row in document["rows"] if row["workload"] != "clear"]
    assert all(len(row["cachecore_rounds"]) == 5 for row in main_rows)


@pytest.mark.parametrize("seconds", ["0", "0.5", "-3", "nan", "3601", "soon"])
def test_bench_refuses_a_budget_out_of_range(
    capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    start = time.perf_counter()
    assert main(["bench", "--seconds", seconds, "memory://"]) == 2
    assert time.perf_counter() - start < 1  # refused before any work
    out, err = capsys.readouterr()
    assert out == ""
    assert "--seconds" in err
    assert "Traceback" not in err


def test_bench_api_refuses_a_budget_below_one_second(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="from 1 to 3600 seconds"):
        run_bench("memory://", seconds=0)
    assert main_bench("memory://", sys.stdout, seconds=0.2, err=sys.stderr) == 2
    assert "from 1 to 3600 seconds" in capsys.readouterr().err


def test_bench_on_a_real_server_keeps_user_keys(
    cachecore_server_binaries: list[ServerBinary], cachecore_servers: ServerPool, capsys: Any
) -> None:
    server = _newest_valkey(cachecore_server_binaries, cachecore_servers)
    url = server.url("valkey")
    mine = cachecore.from_url(url, key_prefix="user-data:")
    mine.set_many({f"k{i}": i for i in range(10)}, timeout=0)
    keys_before = server.client().dbsize()

    start = time.perf_counter()
    assert main(["bench", "--seconds", "3", url]) == 0
    elapsed = time.perf_counter() - start

    out = capsys.readouterr().out
    assert 2.4 <= elapsed <= 3.6, elapsed
    assert sorted(_table_rows(out)) == sorted(ROW_NAMES), out
    assert "in-process fake" not in out
    assert mine.get_many("k0", "k9") == [0, 9]
    assert server.client().dbsize() == keys_before, "bench must remove only its own keys"


def test_interrupted_bench_exits_130_and_removes_its_keys(
    cachecore_server_binaries: list[ServerBinary], cachecore_servers: ServerPool, tmp_path: Path
) -> None:
    server = _newest_valkey(cachecore_server_binaries, cachecore_servers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHECORE_")}
    bench = subprocess.Popen(
        [sys.executable, "-m", "cachecore", "bench", "--seconds", "26", server.url("valkey")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert bench.stderr is not None
    try:
        # The rows run from the last: the third (set_many, about 2 s in) keeps keys.
        for _ in range(3):
            assert bench.stderr.readline(), "bench ended before it was interrupted"
        deadline = time.monotonic() + 5
        while not _bench_keys(server):
            assert time.monotonic() < deadline, "no benchmark keys on the server"
            time.sleep(0.01)
        bench.send_signal(signal.SIGINT)
        _, err = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 130, err
    assert "cachecore: interrupted" in err
    assert "Traceback" not in err
    assert _bench_keys(server) == []


def test_bench_unreachable_server_exits_1(capsys: Any) -> None:
    assert main(["bench", "--seconds", "1", "redis://127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach redis://127.0.0.1:1/0" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("module", ["django_cache", "flask_cache"])
def test_framework_benchmarks_run_and_clean_up(
    module: str,
    cachecore_server_binaries: list[ServerBinary],
    cachecore_servers: ServerPool,
    capsys: Any,
) -> None:
    """``python -m benchmarks.django_cache`` / ``benchmarks.flask_cache`` with tiny rounds:
    every column measured, a ratio per cachecore column and baseline, no key left."""
    import importlib

    server = _newest_valkey(cachecore_server_binaries, cachecore_servers)
    bench = importlib.import_module(f"benchmarks.{module}")
    url = server.url("redis", db=5)
    assert bench.main(["--url", url, "--rounds", "2", "--slice", "0.01"]) == 0
    out = capsys.readouterr().out
    (document,) = json.loads(out.splitlines()[-1]).values()
    assert [row["row"] for row in document] == (
        ["get", "set"] if module == "django_cache" else ["get"]
    )
    for row in document:
        assert set(row["ops"]) == set(bench.COLUMNS) and all(v > 0 for v in row["ops"].values())
        ours = [c for c in bench.COLUMNS if c.startswith("cachecore")]
        assert len(row["ratios"]) == len(ours) * len(bench.BASELINES)
    assert "| get |" in out
    assert server.client(db=5).dbsize() == 0  # every benchmark key deleted


def test_cluster_section_compares_with_the_raw_cluster_client(
    cachecore_server_binaries: list[ServerBinary],
    cachecore_servers: ServerPool,
    cachecore_cluster: Any,
) -> None:
    """The repository benchmark's cluster rows run (one short round each) and carry a
    cluster/raw-cluster ratio against its goal for every row the issue names."""
    from benchmarks import cluster as cluster_mod
    from benchmarks import report, suite

    server = _newest_valkey(cachecore_server_binaries, cachecore_servers)
    cluster = cachecore_cluster(server.binary)
    cluster.flush()
    prefix = f"cachecore-bench:{uuid.uuid4().hex[:6]}:"
    plugin = suite.build_plugin("valkey", server.url("valkey"), prefix)
    assert plugin is not None
    cache = cachecore.from_url(cluster.url("valkey+cluster"), raise_errors=True)
    raw = cluster_mod.raw_cluster_client(cache.client, "127.0.0.1", cluster.primaries()[0].port)
    assert type(raw).__module__ == "valkey.cluster"  # the library's own class, not cachecore's
    mode = suite.Mode(rounds=1, slice_seconds=0.005, clear_keys=0, clear_rounds=1, section_rounds=1)
    outcome = cluster_mod.ClusterOutcome(clients={"valkey": "valkey-py ValkeyCluster"})
    try:
        for workload in cluster_mod.workloads():
            outcome.rows += suite.run_cluster_workload(
                workload, [(plugin, cache, raw)], mode, suite.Clock(1)
            )
        tagged_workload = cluster_mod.workloads(tagged=True)[0]
        outcome.rows += suite.run_cluster_workload(
            tagged_workload, [(plugin, cache, raw)], mode, suite.Clock(1), tagged=True
        )
    finally:
        suite._with_prefix(cache, prefix).clear()
        plugin.cache_with_prefix(prefix).clear()
        cache.close()
        raw.close()
        plugin.cache.close()
    by_name = {row.workload: row for row in outcome.rows}
    for name, baseline in cluster_mod.RAW_CLUSTER.items():
        row = by_name[name]
        assert row.goal == baseline.goal
        assert row.raw is not None and row.raw > 0 and row.vs_raw is not None
        assert row.as_json()["cluster_over_raw_cluster"] == round(row.vs_raw, 3)
    tagged = by_name["get_many[str]/tag"]
    assert tagged.raw is None and tagged.met  # no raw baseline for the one-slot rows
    table = "\n".join(report.cluster_section(outcome, 1))
    assert "clu/raw" in table and "get_many[str]" in table
