"""pytest fixtures for cachecore backends, registered through the ``pytest11`` entry point.

* ``cachecore_server_binaries``: every server binary found on this machine.
* ``cachecore_servers``: a session-wide pool; ``cachecore_servers.shared(binary)``
  returns one running server per binary, reused by every test of the session.
* ``cachecore_fresh_server``: a factory of servers owned by one test (for tests that
  stop, pause or restart them), stopped when the test ends.
* ``cachecore_cluster``: ``cachecore_cluster(binary, **ClusterProcess kwargs)`` returns a
  running :class:`~cachecore.testing.cluster.ClusterProcess` shared by the session (one
  per binary and kwargs); with ``fresh=True`` a new one for a test that kills nodes.
* ``cachecore_sentinel``: the same for :class:`~cachecore.testing.sentinel.SentinelSetup`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import pytest

from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.sentinel import SentinelSetup
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


_D = TypeVar("_D", ClusterProcess, SentinelSetup)


class DeploymentPool(Generic[_D]):
    """Clusters or Sentinel setups of a session: shared ones, started once per binary and
    options, and fresh ones for tests that kill nodes; all closed when the session ends."""

    def __init__(self, factory: Callable[..., _D]) -> None:
        self._factory: Callable[..., _D] = factory
        self._shared: dict[tuple[str, tuple[tuple[str, Any], ...]], _D] = {}
        self._fresh: list[_D] = []

    def __call__(self, binary: ServerBinary, *, fresh: bool = False, **kwargs: Any) -> _D:
        """A running deployment of ``binary``.

        Shared ones (the default) must be left healthy: do not kill their nodes. A shared
        one whose processes died is replaced. ``fresh=True`` starts a new one the caller
        may break (and may close early).
        """
        if fresh:
            deployment = self._factory(binary, **kwargs)
            self._fresh.append(deployment)
            deployment.start()
            return deployment
        key = (binary.id, tuple(sorted(kwargs.items())))
        shared = self._shared.get(key)
        if shared is not None and _all_running(shared):
            return shared
        if shared is not None:
            shared.close()
        deployment = self._factory(binary, **kwargs)
        self._shared[key] = deployment
        deployment.start()
        return deployment

    def close(self) -> None:
        """Close every deployment of the pool."""
        for deployment in [*self._shared.values(), *self._fresh]:
            deployment.close()
        self._shared.clear()
        self._fresh.clear()


def _all_running(deployment: ClusterProcess | SentinelSetup) -> bool:
    if isinstance(deployment, ClusterProcess):
        processes: list[ServerProcess] = deployment.nodes
    else:
        processes = [*deployment.servers, *deployment.sentinels]
    return all(process.pid is not None for process in processes)


@pytest.fixture(scope="session")
def cachecore_cluster() -> Iterator[DeploymentPool[ClusterProcess]]:
    """``(binary, *, fresh=False, **ClusterProcess kwargs) -> running ClusterProcess``.

    The shared cluster of a binary starts once per session (about two seconds); tests
    isolate themselves with ``cluster.flush()``.
    """
    pool = DeploymentPool(ClusterProcess)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def cachecore_sentinel() -> Iterator[DeploymentPool[SentinelSetup]]:
    """``(binary, *, fresh=False, **SentinelSetup kwargs) -> running SentinelSetup``.

    The shared setup of a binary starts once per session (about three seconds); tests
    isolate themselves with ``setup.flush()``.
    """
    pool = DeploymentPool(SentinelSetup)
    yield pool
    pool.close()
