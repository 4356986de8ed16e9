"""A real, throwaway Redis / Valkey Cluster for tests: N primaries with replicas on loopback.

::

    from cachecore.testing.cluster import ClusterProcess

    with ClusterProcess(binary, primaries=3, replicas_per_primary=1) as cluster:
        cache = cachecore.from_url(cluster.url("valkey+cluster"))
        victim = cluster.primaries()[0]
        cluster.kill(victim)
        cluster.wait_for_failover(victim)

The cluster is formed from Python (``CLUSTER SET-CONFIG-EPOCH``, ``ADDSLOTSRANGE`` or
``ADDSLOTS``, ``MEET``, ``REPLICATE``), without ``*-cli``, so every binary works, Redis 6.2
included. ``start()`` returns once every node reports ``cluster_state:ok``, agrees on the
roles, and every replica's link to its primary is up: typically within one to two seconds.

Nodes run with ``cluster-node-timeout 1000`` (a dead primary is failed over in about two
seconds) and, by default, ``cluster-require-full-coverage no``: while one primary is down the
other slots keep serving, which is what a cache wants (see ``docs/scaling-out.md``).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from cachecore.testing.servers import (
    Deployment,
    ServerBinary,
    ServerProcess,
    TLSFiles,
    free_port,
)

__all__ = ["SLOTS", "ClusterNodeInfo", "ClusterProcess"]

SLOTS = 16384
"""Hash slots of a Redis Cluster."""

_BUS_PORT_OFFSET = 10000


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES`` as seen by some node."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]
    connected: bool

    @property
    def is_primary(self) -> bool:
        """Flagged ``master`` (failed primaries keep the flag until someone replaces them)."""
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        """Flagged ``fail`` or ``fail?`` by the reporting node."""
        return "fail" in self.flags or "fail?" in self.flags


def _parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    nodes: list[ClusterNodeInfo] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0]
        port = int(address.rpartition(":")[2] or 0)
        slots: list[tuple[int, int]] = []
        for part in fields[8:]:
            if part.startswith("["):  # a slot being imported or migrated
                continue
            start, _, end = part.partition("-")
            slots.append((int(start), int(end or start)))
        nodes.append(
            ClusterNodeInfo(
                node_id=fields[0],
                port=port,
                flags=frozenset(fields[2].split(",")),
                primary_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
                connected=fields[7] == "connected",
            )
        )
    return nodes


def _port_with_free_bus_port() -> int:
    """A free port ``p`` whose cluster bus port ``p + 10000`` is free and valid too."""
    while True:
        port = free_port()
        if port + _BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + _BUS_PORT_OFFSET))
            except OSError:
                continue
        return port


def _slot_ranges(primaries: int) -> list[tuple[int, int]]:
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


class ClusterProcess(Deployment):
    """A Redis Cluster of ``primaries`` primaries, each with ``replicas_per_primary`` replicas.

    Args:
        binary: The server every node runs (Redis >= 6.2 or Valkey).
        primaries: Number of primaries; at least 3, so a majority survives one failure.
        replicas_per_primary: Replicas of each primary (0 disables failover).
        node_timeout_ms: ``cluster-node-timeout``: how long a silent node takes to be
            declared failed.
        require_full_coverage: ``cluster-require-full-coverage``; False (the default here)
            lets the surviving slots serve while a failed primary is being replaced.
        extra_args: More server options for every node.
        tls: Every node serves TLS only, with these files (the cluster bus too); the
            binary must be built with TLS. Connect with ``rediss+cluster://`` or
            ``valkeys+cluster://`` and ``ssl_ca_certs``.
    """

    poll_interval = 0.02

    def __init__(
        self,
        binary: ServerBinary,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        *,
        node_timeout_ms: int = 1000,
        require_full_coverage: bool = False,
        extra_args: Iterable[str] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        if primaries < 3:
            raise ValueError("a cluster needs at least 3 primaries to survive a failure")
        if replicas_per_primary < 0:
            raise ValueError("replicas_per_primary must be >= 0")
        self.binary = binary
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ServerProcess] = []
        self.node_ids: dict[int, str] = {}
        """Node id by port, filled in by :meth:`start`."""
        total = primaries * (1 + replicas_per_primary)
        for _ in range(total):
            node = ServerProcess(binary, tls=tls)
            node.port = _port_with_free_bus_port()
            node.extra_args = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node.directory / "nodes.conf"),
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-require-full-coverage",
                "yes" if require_full_coverage else "no",
                # Replicas sync at once instead of waiting 5 s for more replicas to join.
                "--repl-diskless-sync-delay",
                "0",
                *extra_args,
            )
            self.nodes.append(node)
        self._started = False

    def __repr__(self) -> str:
        ports = ",".join(str(node.port) for node in self.nodes)
        return f"<ClusterProcess {self.binary.id} ports={ports}>"

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, form the cluster, and wait until it is healthy.

        Does nothing when already started. On failure every node is stopped.

        Raises:
            RuntimeError: a node did not start, or the cluster was not healthy in time.
        """
        if self._started:
            return
        try:
            for node in self.nodes:
                node.start()
            self._form(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        self._started = True

    def _form(self, deadline: float) -> None:
        clients = [node.admin_client() for node in self.nodes]
        try:
            # Distinct epochs up front, as `--cluster create` does: no collision to resolve.
            for epoch, client in enumerate(clients, start=1):
                try:
                    client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                except redis.ResponseError:
                    # A node of an earlier cluster on this reused port reached the new
                    # node first and gave it an epoch: make it a blank node again.
                    client.execute_command("CLUSTER", "RESET", "HARD")
                    client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for node, client in zip(self.nodes, clients, strict=True):
                self.node_ids[node.port] = str(client.execute_command("CLUSTER", "MYID"))
            primaries = clients[: self.primary_count]
            for client, (first, last) in zip(
                primaries, _slot_ranges(self.primary_count), strict=True
            ):
                try:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.ResponseError:  # Redis < 7
                    client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            seed = self.nodes[0]
            for client in clients[1:]:
                client.execute_command("CLUSTER", "MEET", seed.host, seed.port)
            self._wait(deadline, "every node to know every other", self._all_met)
            for index, client in enumerate(clients[self.primary_count :]):
                primary = self.nodes[index % self.primary_count]
                self._wait(
                    deadline,
                    f"a replica to follow {primary.port}",
                    functools.partial(self._replicate, client, primary),
                )
            self._wait(deadline, "cluster_state:ok with every replica in sync", self.healthy)
        finally:
            for client in clients:
                client.close()

    def _replicate(self, client: Any, primary: ServerProcess) -> bool:
        try:
            client.execute_command("CLUSTER", "REPLICATE", self.node_ids[primary.port])
        except redis.ResponseError:  # the primary is not known as one yet
            return False
        return True

    def _all_met(self) -> bool:
        for node in self.nodes:
            view = self.view(node)
            if len(view) != len(self.nodes):
                return False
            if any("handshake" in n.flags or not n.connected for n in view):
                return False
        return True

    def healthy(self) -> bool:
        """Whether every running node says ``cluster_state:ok``, sees the same primaries and
        replicas, and every running replica's link to its primary is up."""
        views: set[tuple[tuple[int, bool, tuple[tuple[int, int], ...]], ...]] = set()
        for node in self.running():
            try:
                with node.admin_client() as client:
                    info = str(client.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" not in info:
                        return False
                    replication = client.info("replication")
                    if replication.get("role") == "slave" and (
                        replication.get("master_link_status") != "up"
                    ):
                        return False
                    text = str(client.execute_command("CLUSTER", "NODES"))
            except (redis.ConnectionError, redis.TimeoutError):
                return False
            view = _parse_cluster_nodes(text)
            live = [n for n in view if not n.failed]
            views.add(tuple(sorted((n.port, n.is_primary, n.slots) for n in live)))
        return len(views) == 1

    def stop(self) -> None:
        """Stop every node (their directories stay until :meth:`close`)."""
        for node in self.nodes:
            node.stop()
        self._started = False

    def close(self) -> None:
        """Stop every node and delete their directories. Safe to call more than once."""
        for node in self.nodes:
            node.close()
        self._started = False

    # ---------------------------------------------------------------- topology

    def running(self) -> list[ServerProcess]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.pid is not None]

    def view(self, node: ServerProcess | None = None) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` as seen by ``node`` (default: the first running node)."""
        if node is None:
            node = self.running()[0]
        with node.admin_client() as client:
            return _parse_cluster_nodes(str(client.execute_command("CLUSTER", "NODES")))

    def _by_port(self) -> dict[int, ServerProcess]:
        return {node.port: node for node in self.nodes}

    def primaries(self) -> list[ServerProcess]:
        """The running nodes that serve slots now, in slot order."""
        by_port = self._by_port()
        view = [n for n in self.view() if n.is_primary and n.slots and not n.failed]
        view.sort(key=lambda n: n.slots[0])
        return [by_port[n.port] for n in view if by_port[n.port].pid is not None]

    def replicas(self) -> list[ServerProcess]:
        """The running nodes that replicate a primary now."""
        by_port = self._by_port()
        view = [n for n in self.view() if "slave" in n.flags and not n.failed]
        return [by_port[n.port] for n in view if by_port[n.port].pid is not None]

    def slots_of(self, node: ServerProcess) -> list[tuple[int, int]]:
        """The slot ranges ``node`` serves now (empty for a replica or a failed node)."""
        for info in self.view():
            if info.port == node.port:
                return list(info.slots)
        return []

    def node_for_slot(self, slot: int) -> ServerProcess:
        """The node that serves ``slot`` now."""
        by_port = self._by_port()
        for info in self.view():
            if info.is_primary and any(a <= slot <= b for a, b in info.slots):
                return by_port[info.port]
        raise LookupError(f"slot {slot} is served by no node")

    # ---------------------------------------------------------------- clients and URLs

    def url(self, scheme: str = "valkey+cluster", seeds: int = 3) -> str:
        """A seed-node URL, e.g. ``valkey+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/``.

        Args:
            scheme: ``redis+cluster``, ``valkey+cluster``, ``keydb+cluster``, or their TLS
                forms (``rediss+cluster``...) for a TLS cluster; the URL carries no CA.
            seeds: How many running nodes to list (the client discovers the rest).
        """
        nodes = self.running()[:seeds]
        return f"{scheme}://" + ",".join(f"{n.host}:{n.port}" for n in nodes) + "/"

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A new ``redis.cluster.RedisCluster`` on the running nodes."""
        from redis.cluster import ClusterNode, RedisCluster

        running = self.running()
        startup = [ClusterNode(node.host, node.port) for node in running]  # type: ignore[no-untyped-call]
        tls_options: dict[str, Any] = {
            name: value
            for name, value in running[0].client_kwargs().items()
            if name.startswith("ssl")
        }
        return RedisCluster(startup_nodes=startup, **(tls_options | overrides))

    def flush(self) -> None:
        """``FLUSHALL`` on every primary (per-test isolation)."""
        for node in self.primaries():
            with node.admin_client() as client:
                client.execute_command("FLUSHALL")

    def wait_for_replication(self, timeout_ms: int = 2000) -> None:
        """``WAIT`` on every primary until its replicas acknowledged all writes so far."""
        for node in self.primaries():
            with node.admin_client() as client:
                client.execute_command("WAIT", self.replicas_per_primary, timeout_ms)

    # ---------------------------------------------------------------- faults

    def kill(self, node: ServerProcess) -> None:
        """SIGKILL ``node`` (no shutdown, no last replication)."""
        node.kill()

    def wait_for_failover(self, node: ServerProcess, timeout: float = 30.0) -> float:
        """Wait until the slots of the dead ``node`` are served by a promoted replica and
        every running node reports ``cluster_state:ok``.

        Returns:
            The seconds waited.

        Raises:
            RuntimeError: not done within ``timeout`` seconds.
        """
        started = time.monotonic()
        dead_id = self.node_ids[node.port]

        def done() -> bool:
            for live in self.running():
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    view = self.view(live)
                    if any(n.node_id == dead_id and n.slots for n in view):
                        return False
                    continue
                return False
            return self.healthy()

        self._wait(started + timeout, f"the slots of {node.port} to fail over", done)
        return time.monotonic() - started

    def revive(self, node: ServerProcess, timeout: float = 30.0) -> None:
        """Start a killed ``node`` again; it rejoins (as a replica of whoever took its slots)
        with its old node id, and this returns once the cluster is healthy."""
        node.start()
        self._wait(time.monotonic() + timeout, f"{node.port} to rejoin", self.healthy)
