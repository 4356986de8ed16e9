"""Shared fixtures: the server binaries and backends the matrix runs over, and the
header that says, at the start of a run, which servers the tests run against."""

from __future__ import annotations

import os

import pytest
from helpers import SHARED_KEYDB, absent_reason

from cachecore import plugins
from cachecore.testing.servers import KINDS, ServerBinary, find_server_binaries

KEYDB_VARIABLE = "CACHECORE_TEST_KEYDB_SERVER"


def _discover() -> tuple[list[ServerBinary], str | None]:
    """The server binaries, with CI's KeyDB (:data:`helpers.SHARED_KEYDB`) among them when
    it exists and ``$CACHECORE_TEST_KEYDB_SERVER`` does not name another; and, when that
    file exists but cannot run, why."""
    if os.environ.get(KEYDB_VARIABLE) or not SHARED_KEYDB.exists():
        return find_server_binaries(), None
    # Through the variable, so that find_server_binaries() in any test module, and in the
    # processes the tests start, finds the same KeyDB.
    os.environ[KEYDB_VARIABLE] = str(SHARED_KEYDB)
    try:
        return find_server_binaries(), None
    except (OSError, RuntimeError) as exc:
        del os.environ[KEYDB_VARIABLE]
        return find_server_binaries(), f"{SHARED_KEYDB} is there but cannot run: {exc}"


BINARIES, SHARED_KEYDB_PROBLEM = _discover()
SCHEMES = ("redis", "valkey", "keydb")
"""One URL scheme per first-party server plugin."""

_ABSENT_KINDS = [kind for kind in KINDS if not any(b.kind == kind for b in BINARIES)]


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    # Tests may install or block plugins; every test starts from what is installed.
    plugins.reset()


@pytest.fixture(
    scope="session",
    params=[
        *(pytest.param(b, id=b.id) for b in BINARIES),
        # A skip mark rather than pytest.skip() in the fixture: pytest's summary folds those.
        *(
            pytest.param(None, id=f"{kind}-absent", marks=pytest.mark.skip(absent_reason(kind)))
            for kind in _ABSENT_KINDS
        ),
    ],
)
def binary(request: pytest.FixtureRequest) -> ServerBinary:
    """Each server binary on this machine in turn; a kind with none skips, saying why."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session", params=SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    """Each first-party server plugin in turn, by URL scheme."""
    return request.param  # type: ignore[no-any-return]


def _source(binary: ServerBinary) -> str:
    if binary.kind == "keydb" and os.environ.get(KEYDB_VARIABLE) == str(SHARED_KEYDB):
        source = f"{SHARED_KEYDB} (beside the checkout)"
    elif binary.source == "PATH":
        source = str(binary.path)
    else:
        source = f"{binary.source}: {binary.copied_from or binary.path}"
    if binary.copied_from is not None:
        source += f", run from a copy at {binary.path} (the file lacks its run bit)"
    return source


def pytest_report_header() -> list[str]:
    """Which server binaries the tests run against, and which optional ones are missing."""
    lines = ["cachecore server binaries (the tests run against each):"]
    width = max((len(b.id) for b in BINARIES), default=0)
    for b in BINARIES:
        tls = "TLS   " if b.tls else "no TLS"
        lines.append(f"  {b.id:<{width}}  {tls}  {_source(b)}")
    missing = [f"{kind}: {absent_reason(kind)}; its tests skip" for kind in _ABSENT_KINDS]
    if SHARED_KEYDB_PROBLEM:
        missing.append(f"keydb: {SHARED_KEYDB_PROBLEM}")
    for kind in ("redis", "valkey"):
        if not any(b.kind == kind and b.tls for b in BINARIES):
            missing.append(
                f"{kind} with TLS: none found ({_TLS_HINTS[kind]}); TLS tests use the others"
            )
    if missing:
        lines.append("cachecore server binaries missing (optional):")
        lines += [f"  {line}" for line in missing]
    return lines


_TLS_HINTS = {
    "redis": "Debian: apt-get install redis-server",
    "valkey": "Debian: apt-get install -t bookworm-backports valkey-server",
}
