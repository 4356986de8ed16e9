"""Running servers, clusters and Sentinel setups shared by a pytest session.

The fixtures of :mod:`cachecore.testing.pytest_plugin` hand these out; they live apart so
that loading the plugin imports no server machinery until a test asks for a server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.sentinel import SentinelSetup
from cachecore.testing.servers import ServerBinary, ServerProcess

__all__ = ["DeploymentPool", "ServerPool"]


class ServerPool:
    """Running servers shared by a test session, one per binary and configuration."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str], ServerProcess] = {}

    def shared(self, binary: ServerBinary, flavour: str = "plain", **kwargs: Any) -> ServerProcess:
        """The session's server for ``binary`` (and ``flavour`` of ``kwargs``), started once.

        Args:
            binary: The server binary.
            flavour: A name for ``kwargs``: servers of one binary with different options
                (e.g. ``"tls"`` with ``tls=...``) need different flavours.
            kwargs: :class:`~cachecore.testing.servers.ServerProcess` options, used when
                the server is started.

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
