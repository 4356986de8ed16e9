"""Shared fixtures: the server binaries and backends the matrix runs over."""

from __future__ import annotations

import pytest

from cachecore import plugins
from cachecore.testing.servers import ServerBinary, find_server_binaries

BINARIES = find_server_binaries()
SCHEMES = ("redis", "valkey", "keydb")
"""One URL scheme per first-party server plugin."""


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    # Tests may install or block plugins; every test starts from what is installed.
    plugins.reset()


@pytest.fixture(scope="session", params=BINARIES, ids=[b.id for b in BINARIES])
def binary(request: pytest.FixtureRequest) -> ServerBinary:
    """Each server binary on this machine in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session", params=SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    """Each first-party server plugin in turn, by URL scheme."""
    return request.param  # type: ignore[no-any-return]
