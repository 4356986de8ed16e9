"""The shipped conformance suite, run for every first-party backend on every server binary,
and on KeyDB over TLS, as a real KeyDB cluster and behind real KeyDB sentinels."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from helpers import absent_reason

import cachecore
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.conformance import (
    CacheConformance,
    CacheFactory,
    ServerFaultConformance,
)
from cachecore.testing.pytest_plugin import DeploymentPool, ServerPool
from cachecore.testing.sentinel import SentinelSetup
from cachecore.testing.servers import (
    ServerBinary,
    ServerProcess,
    TLSFiles,
    make_tls_files,
    newest_server_binary,
)

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet


def _factory(url: str) -> CacheFactory:
    def factory(**options: Any) -> cachecore.BaseRedisCache:
        return cachecore.from_url(url, **options)

    return factory


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1 / localhost."""
    return make_tls_files(tmp_path_factory.mktemp("conformance-tls"))


def _with_ca(url: str, tls: TLSFiles) -> str:
    return f"{url}?{urllib.parse.urlencode({'ssl_ca_certs': str(tls.ca_cert)})}"


class TestMemoryBackend(CacheConformance):
    """The embedded default, on fakeredis."""

    @pytest.fixture
    def cache_factory(self) -> CacheFactory:
        namespace = uuid.uuid4().hex
        return lambda **options: cachecore.from_url(f"memory://{namespace}", **options)


class TestServerBackends(CacheConformance):
    """redis, valkey and keydb plugins, each against every server binary."""

    @pytest.fixture
    def cache_factory(
        self, scheme: str, binary: ServerBinary, cachecore_servers: ServerPool
    ) -> CacheFactory:
        server = cachecore_servers.shared(binary)
        server.client().flushdb()
        url = server.url(scheme)
        return lambda **options: cachecore.from_url(url, **options)


class TestServerFaults(ServerFaultConformance):
    """Faults for each plugin against each binary, on servers the tests stop and pause."""

    @pytest.fixture
    def fault_server(
        self, binary: ServerBinary, cachecore_fresh_server: Callable[..., ServerProcess]
    ) -> ServerProcess:
        return cachecore_fresh_server(binary)

    @pytest.fixture
    def cache_factory(self, scheme: str, fault_server: ServerProcess) -> CacheFactory:
        return _factory(fault_server.url(scheme))


# -- KeyDB over TLS, and KeyDB's own cluster and Sentinel ----------------------------------
#
# Redis and Valkey run these in test_scale_out.py; KeyDB runs them here, as its plugin's
# schemes are keydbs://, keydb+cluster:// and keydbs+cluster:// and it has no +sentinel one.

KEYDB_SUITE_TOPOLOGIES = ["standalone-tls", "cluster", "sentinel"]
"""Where the whole suite runs on KeyDB (besides plain standalone, above)."""
KEYDB_SMOKE_TOPOLOGIES = ["cluster-tls", "sentinel-tls"]
"""Where a short check runs instead: the whole suite over TLS on six cluster nodes and on
Sentinel took 80 s on the shared 2-core machine, for code paths the rows above and
test_scale_out.py's TLS deployments of Redis and Valkey already cover."""

KEYDB = newest_server_binary("keydb")


def _keydb_params(topologies: list[str]) -> list[ParameterSet]:
    # Without KeyDB each skips, saying why (a skip mark: pytest's summary folds those).
    marks = [pytest.mark.skip(reason=absent_reason("keydb"))] if KEYDB is None else []
    return [pytest.param(topology, id=topology, marks=marks) for topology in topologies]


@pytest.fixture(scope="module")
def keydb_binary() -> ServerBinary:
    """The newest KeyDB binary (only asked for when there is one: see ``_keydb_params``)."""
    assert KEYDB is not None
    return KEYDB


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``standalone-tls``, ``cluster``, ``cluster-tls``, ``sentinel`` or ``sentinel-tls``
    (parametrized indirectly)."""
    return str(request.param)


@pytest.fixture
def keydb_url(
    topology: str,
    keydb_binary: ServerBinary,
    tls_files: TLSFiles,
    cachecore_servers: ServerPool,
    cachecore_cluster: DeploymentPool[ClusterProcess],
    cachecore_sentinel: DeploymentPool[SentinelSetup],
) -> str:
    """The URL of the session's flushed KeyDB deployment named by the ``topology`` param:
    ``keydbs://`` for a TLS-only server, ``keydb[s]+cluster://`` for a cluster (3 primaries,
    3 replicas), ``redis[s]+sentinel://`` for a Sentinel setup (a primary, a replica, 3
    KeyDB sentinels; redis-py is the keydb plugin's client too)."""
    kind, _, tls = topology.partition("-")
    options: dict[str, Any] = {"tls": tls_files} if tls == "tls" else {}
    suffix = "s" if options else ""
    if kind == "standalone":
        server = cachecore_servers.shared(keydb_binary, "tls", **options)
        server.client().flushdb()
        url = server.url(f"keydb{suffix}")
    elif kind == "cluster":
        cluster = cachecore_cluster(keydb_binary, **options)
        cluster.flush()
        url = cluster.url(f"keydb{suffix}+cluster")
    else:
        sentinel = cachecore_sentinel(keydb_binary, **options)
        sentinel.flush()
        url = sentinel.url(f"redis{suffix}+sentinel")
    return _with_ca(url, tls_files) if options else url


@pytest.mark.parametrize("topology", _keydb_params(KEYDB_SUITE_TOPOLOGIES), indirect=True)
class TestKeyDBTopologies(CacheConformance):
    """The whole suite on KeyDB over TLS, as a cluster, and behind Sentinel."""

    @pytest.fixture
    def cache_factory(self, keydb_url: str) -> CacheFactory:
        return _factory(keydb_url)


@pytest.mark.parametrize("topology", _keydb_params(KEYDB_SMOKE_TOPOLOGIES), indirect=True)
def test_keydb_tls_cluster_and_sentinel(keydb_url: str) -> None:
    """Multi-key calls across slots, atomic add and inc, clear, over TLS (the nodes and
    sentinels have no plain port)."""
    cache = cachecore.from_url(keydb_url, key_prefix="smoke:")
    mapping = {f"k{i}": i for i in range(100)}
    assert cache.set_many(mapping) == list(mapping)
    assert cache.get_many("k0", "missing", "k99") == [0, None, 99]
    assert cache.add("k0", "again") is False
    assert cache.inc("n") == 1
    assert cache.delete_many("k0", "k1") == ["k0", "k1"]
    assert cache.get_many("k0", "k1", "k2") == [None, None, 2]
    assert cache.clear() is True
    assert cache.has("k2") is False
