"""pytest fixtures for cachecore backends, registered through the ``pytest11`` entry point.

* ``cachecore_server_binaries``: every server binary found on this machine.
* ``cachecore_servers``: a session-wide pool; ``cachecore_servers.shared(binary)``
  returns one running server per binary, reused by every test of the session.
* ``cachecore_fresh_server``: a factory of servers owned by one test (for tests that
  stop, pause or restart them), stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries


class ServerPool:
    """Running servers shared by a test session, one per binary and configuration."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str], ServerProcess] = {}

    def shared(self, binary: ServerBinary, flavour: str = "plain", **kwargs: Any) -> ServerProcess:
        """The session's server for ``binary`` (and ``flavour`` of ``kwargs``), started once.

        Tests must not stop, pause or restart it: use ``cachecore_fresh_server``.
        """
        key = (binary.id, flavour)
        server = self._servers.get(key)
        if server is None or server.pid is None:
            server = ServerProcess(binary, **kwargs)
            server.start()
            self._servers[key] = server
        return server

    def close(self) -> None:
        """Stop every server of the pool."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()


@pytest.fixture(scope="session")
def cachecore_server_binaries() -> list[ServerBinary]:
    """Every server binary found on this machine (wheels, PATH, environment)."""
    return find_server_binaries()


@pytest.fixture(scope="session")
def cachecore_servers() -> Iterator[ServerPool]:
    """The session's shared servers."""
    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture
def cachecore_fresh_server() -> Iterator[Callable[..., ServerProcess]]:
    """A factory ``(binary, **ServerProcess kwargs) -> running server`` owned by the test."""
    started: list[ServerProcess] = []

    def start(binary: ServerBinary, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(binary, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()
