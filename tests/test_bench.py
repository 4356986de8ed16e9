"""`cachecore bench`: the user-facing benchmark on a real server, and what it leaves behind."""

from __future__ import annotations

from typing import Any

import cachecore
from cachecore.cli import main
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary


def test_bench_on_a_real_server_keeps_user_keys(
    cachecore_server_binaries: list[ServerBinary], cachecore_servers: ServerPool, capsys: Any
) -> None:
    newest = max(cachecore_server_binaries, key=lambda b: (b.kind == "valkey", b.version))
    server = cachecore_servers.shared(newest)
    url = server.url("valkey")
    mine = cachecore.from_url(url, key_prefix="user-data:")
    mine.set_many({f"k{i}": i for i in range(10)}, timeout=0)
    keys_before = server.client().dbsize()

    assert main(["bench", "--seconds", "3", url]) == 0

    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and "x  " in line}
    for workload in ("get", "set", "has", "inc", "add", "get_many[str]", "set_many", "clear"):
        assert workload in rows, out
    assert mine.get_many("k0", "k9") == [0, 9]
    assert server.client().dbsize() == keys_before, "bench must remove only its own keys"


def test_bench_unreachable_server_exits_1(capsys: Any) -> None:
    assert main(["bench", "--seconds", "1", "redis://127.0.0.1:1/0"]) == 1
    assert "failed" in capsys.readouterr().out
