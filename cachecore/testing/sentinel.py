"""A real, throwaway Sentinel setup for tests: a primary, its replicas and three sentinels.

::

    from cachecore.testing.sentinel import SentinelSetup

    with SentinelSetup(binary) as setup:
        cache = cachecore.from_url(setup.url("valkey+sentinel"))
        old = setup.kill_primary()
        setup.wait_for_promotion(old)

Every process is a :class:`~cachecore.testing.servers.ServerProcess` of the same binary; the
sentinels run it with ``--sentinel`` on a writable config holding ``sentinel monitor
<service> 127.0.0.1 <port> <quorum>``, ``down-after-milliseconds 1000`` and
``failover-timeout 3000``, so a dead primary is replaced within a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from cachecore.testing.servers import Deployment, ServerBinary, ServerProcess, TLSFiles

__all__ = ["SentinelProcess", "SentinelSetup"]


class SentinelProcess(ServerProcess):
    """A server binary run as a sentinel (``<binary> <conf> --sentinel``).

    Args:
        binary: The server binary.
        monitor: The lines to add to the sentinel's config, e.g. ``sentinel monitor ...``.
    """

    def __init__(
        self, binary: ServerBinary, monitor: list[str], *, tls: TLSFiles | None = None
    ) -> None:
        super().__init__(binary, tls=tls, extra_args=("--sentinel",))
        self.monitor = list(monitor)

    def _write_config(self) -> Path:
        conf = super()._write_config()
        # The sentinel rewrites this file with what it learns; it is written afresh each start.
        with conf.open("a") as file:
            file.write("\n".join(self.monitor) + "\n")
        return conf


class SentinelSetup(Deployment):
    """A primary with ``replicas`` replicas, watched by ``sentinels`` sentinels.

    Args:
        binary: The server binary every process runs.
        replicas: Replicas of the primary (at least 1, to have something to promote).
        sentinels: Sentinels (3 lets a majority survive one of them failing).
        service_name: The name the sentinels monitor the primary under.
        quorum: Sentinels that must agree the primary is down.
        down_after_ms: ``down-after-milliseconds``: silence before a primary is suspected.
        failover_timeout_ms: ``failover-timeout``.
        tls: Every server and sentinel serves TLS only, with these files (replication
            and the sentinels' own links too); the binary must be built with TLS.
            Connect with ``rediss+sentinel://`` or ``valkeys+sentinel://`` and
            ``ssl_ca_certs``.
    """

    def __init__(
        self,
        binary: ServerBinary,
        replicas: int = 1,
        sentinels: int = 3,
        *,
        service_name: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        tls: TLSFiles | None = None,
    ) -> None:
        if replicas < 1:
            raise ValueError("a sentinel setup needs at least one replica to promote")
        if not 1 <= quorum <= sentinels:
            raise ValueError("quorum must be between 1 and the number of sentinels")
        self.binary = binary
        self.service_name = service_name
        self.quorum = quorum
        # Replicas sync at once instead of waiting 5 s for more replicas to join.
        fast_sync = ("--repl-diskless-sync-delay", "0")
        self.servers: list[ServerProcess] = [
            ServerProcess(binary, tls=tls, extra_args=fast_sync) for _ in range(1 + replicas)
        ]
        self._first_primary = self.servers[0]
        for replica in self.servers[1:]:
            primary = self._first_primary
            replica.extra_args = (*fast_sync, "--replicaof", primary.host, str(primary.port))
        name = service_name
        monitor = [
            f"sentinel monitor {name} {self._first_primary.host} {self._first_primary.port} "
            f"{quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        self.sentinels: list[SentinelProcess] = [
            SentinelProcess(binary, monitor, tls=tls) for _ in range(sentinels)
        ]
        self._started = False

    def __repr__(self) -> str:
        return (
            f"<SentinelSetup {self.binary.id} servers="
            f"{','.join(str(s.port) for s in self.servers)} sentinels="
            f"{','.join(str(s.port) for s in self.sentinels)}>"
        )

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start the servers and sentinels; return once the replicas are in sync and every
        sentinel knows the primary, its replicas and the other sentinels.

        Raises:
            RuntimeError: something did not start or settle within ``timeout`` seconds.
        """
        if self._started:
            return
        deadline = time.monotonic() + timeout
        try:
            self._first_primary.start()
            for replica in self.servers[1:]:
                if replica.port == self._first_primary.port:  # cannot happen, but be sure
                    raise RuntimeError("replica and primary share a port")
                replica.start()
            self._wait(deadline, "the replicas to sync", self._replicas_in_sync)
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait(deadline, "the sentinels to see everything", self.settled)
        except BaseException:
            self.stop()
            raise
        self._started = True

    def _replicas_in_sync(self) -> bool:
        for replica in self.servers:
            if replica is self._first_primary:
                continue
            with replica.admin_client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def settled(self) -> bool:
        """Whether every running sentinel agrees on a healthy primary, sees every running
        replica of it and every other running sentinel."""
        running = [s for s in self.servers if s.pid is not None]
        sentinels = [s for s in self.sentinels if s.pid is not None]
        addresses = set()
        for sentinel in sentinels:
            try:
                with sentinel.admin_client() as client:
                    state = client.sentinel_master(self.service_name)
                    addresses.add((state["ip"], int(state["port"])))
                    flags = str(state.get("flags", ""))
                    if "down" in flags or "failover" in flags:
                        return False
                    if int(state["num-other-sentinels"]) < len(sentinels) - 1:
                        return False
                    replicas = client.sentinel_slaves(self.service_name)
                    up = [r for r in replicas if "down" not in str(r.get("flags", ""))]
                    if len(up) < len(running) - 1:
                        return False
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                return False
        return len(addresses) == 1

    def stop(self) -> None:
        """Stop every process (directories stay until :meth:`close`)."""
        for process in [*self.sentinels, *self.servers]:
            process.stop()
        self._started = False

    def close(self) -> None:
        """Stop every process and delete their directories. Safe to call more than once."""
        for process in [*self.sentinels, *self.servers]:
            process.close()
        self._started = False

    # ---------------------------------------------------------------- topology

    def primary_address(self) -> tuple[str, int]:
        """The primary's address according to the first running sentinel."""
        for sentinel in self.sentinels:
            if sentinel.pid is None:
                continue
            with sentinel.admin_client() as client:
                host, port = client.sentinel_get_master_addr_by_name(self.service_name)
            return str(host), int(port)
        raise RuntimeError(f"{self!r}: no sentinel is running")

    def primary(self) -> ServerProcess:
        """The server the sentinels name as primary now."""
        _, port = self.primary_address()
        for server in self.servers:
            if server.port == port:
                return server
        raise LookupError(f"the sentinels name an unknown primary on port {port}")

    def replicas(self) -> list[ServerProcess]:
        """The running servers other than the primary."""
        primary = self.primary()
        return [s for s in self.servers if s is not primary and s.pid is not None]

    def url(self, scheme: str = "valkey+sentinel", db: int = 0) -> str:
        """``<scheme>://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<service>/<db>``; for a TLS
        setup pass ``rediss+sentinel`` or ``valkeys+sentinel`` (the URL carries no CA)."""
        seeds = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"{scheme}://{seeds}/{self.service_name}/{db}"

    def flush(self) -> None:
        """``FLUSHALL`` on the primary (per-test isolation)."""
        with self.primary().admin_client() as client:
            client.execute_command("FLUSHALL")

    def wait_for_replication(self, timeout_ms: int = 2000) -> int:
        """``WAIT`` on the primary for every running replica; returns how many acknowledged."""
        with self.primary().admin_client() as client:
            return int(client.execute_command("WAIT", len(self.replicas()), timeout_ms))

    # ---------------------------------------------------------------- faults

    def kill_primary(self) -> ServerProcess:
        """SIGKILL the current primary and return it."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_promotion(self, old: ServerProcess, timeout: float = 30.0) -> float:
        """Wait until every running sentinel names a running, promoted server instead of
        ``old``.

        Returns:
            The seconds waited.
        """
        started = time.monotonic()

        def promoted() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                if sentinel.pid is None:
                    continue
                try:
                    with sentinel.admin_client() as client:
                        _, port = client.sentinel_get_master_addr_by_name(self.service_name)
                except (redis.ConnectionError, redis.TimeoutError):
                    return False
                ports.add(int(port))
            if len(ports) != 1 or old.port in ports:
                return False
            new = next(s for s in self.servers if s.port in ports)
            if new.pid is None:
                return False
            with new.admin_client() as client:
                role: str = client.info("replication").get("role")
                return role == "master"

        self._wait(started + timeout, f"a replica to replace {old.port}", promoted)
        return time.monotonic() - started

    def revive(self, server: ServerProcess, timeout: float = 30.0) -> None:
        """Start a killed server again; the sentinels turn it into a replica of the current
        primary; this returns once it is in sync and the sentinels have settled."""
        server.start()
        deadline = time.monotonic() + timeout

        def following() -> bool:
            with server.admin_client() as client:
                info: dict[str, Any] = client.info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        self._wait(deadline, f"{server.port} to follow the new primary", following)
        self._wait(deadline, "the sentinels to settle", self.settled)
