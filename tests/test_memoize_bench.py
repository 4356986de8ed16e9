"""The stampede benchmark's --quick mode runs and reports each strategy's row."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import stampede
from cachecore.testing.servers import find_server_binaries

if not any(b.kind == "valkey" for b in find_server_binaries()):
    pytest.skip("no valkey-server binary found", allow_module_level=True)


def test_stampede_quick(capsys: Any) -> None:
    assert stampede.main(["--quick", "--strategies", "naive,lock"]) == 0
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and "strategy" not in line
    }
    assert set(rows) == {"naive", "lock"}
    assert float(rows["lock"][0]) == 1.0  # one computation per expiry under the lock
    assert float(rows["naive"][0]) > 1.0  # the stampede it prevents
