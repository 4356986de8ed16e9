"""The conformance suite on the asyncio API over Cluster and Sentinel, plain and TLS,
on the deployments of ``test_scale_out.py`` (whose fixtures this module uses): the
session's clusters and Sentinel setups are shared with it. The blocking tests run every
deployment; these run each of their binaries once, with its plugin's asyncio client."""

from __future__ import annotations

import asyncio

import pytest
from test_scale_out import (  # the deployments of the blocking scale-out tests
    _NO_TLS_BINARY,
    DEPLOYMENTS,
    TLS_DEPLOYMENTS,
    _ca,
    cluster,
    sentinel,
    tls_cluster,
    tls_files,
    tls_sentinel,
)

import cachecore.aio
from cachecore.testing.aio_conformance import AsyncCacheConformance, AsyncCacheFactory
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.sentinel import SentinelSetup
from cachecore.testing.servers import ServerBinary, TLSFiles

__all__ = [  # fixtures, re-exported for pytest
    "cluster",
    "sentinel",
    "tls_cluster",
    "tls_files",
    "tls_sentinel",
]


# The newest Valkey through valkey.asyncio for the plain deployments, and the TLS-capable
# Redis (else Valkey) through redis.asyncio for the TLS ones: both libraries, both kinds.
@pytest.fixture(scope="module", params=DEPLOYMENTS[:1])
def deployment(request: pytest.FixtureRequest) -> tuple[ServerBinary, str]:
    """(server binary, plain URL scheme of its plugin)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=TLS_DEPLOYMENTS[-1:] or [pytest.param(None, id="no-tls")])
def tls_deployment(request: pytest.FixtureRequest) -> tuple[ServerBinary, str]:
    """(TLS-capable server binary, TLS scheme of its plugin)."""
    if request.param is None:
        pytest.skip(_NO_TLS_BINARY)
    return request.param  # type: ignore[no-any-return]


def _factory(url: str) -> AsyncCacheFactory:
    return lambda **options: cachecore.aio.from_url(url, **options)


class TestAsyncClusterConformance(AsyncCacheConformance):
    """The whole suite on ``<scheme>+cluster://`` through the asyncio cluster client."""

    @pytest.fixture
    def async_cache_factory(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> AsyncCacheFactory:
        return _factory(cluster.url(f"{deployment[1]}+cluster"))


class TestAsyncSentinelConformance(AsyncCacheConformance):
    """The whole suite on ``<scheme>+sentinel://`` through the asyncio Sentinel client,
    reading from the replica."""

    @pytest.fixture
    def async_cache_factory(
        self, sentinel: SentinelSetup, deployment: tuple[ServerBinary, str]
    ) -> AsyncCacheFactory:
        return _factory(sentinel.url(f"{deployment[1]}+sentinel"))


class TestAsyncTLSSentinelConformance(AsyncCacheConformance):
    """The whole suite on ``<scheme>s+sentinel://`` through the asyncio Sentinel client."""

    @pytest.fixture
    def async_cache_factory(
        self,
        tls_sentinel: SentinelSetup,
        tls_deployment: tuple[ServerBinary, str],
        tls_files: TLSFiles,
    ) -> AsyncCacheFactory:
        return _factory(tls_sentinel.url(f"{tls_deployment[1]}+sentinel") + _ca(tls_files))


class TestAsyncTLSClusterConformance(AsyncCacheConformance):
    """The whole suite on ``<scheme>s+cluster://`` through the asyncio cluster client."""

    @pytest.fixture
    def async_cache_factory(
        self,
        tls_cluster: ClusterProcess,
        tls_deployment: tuple[ServerBinary, str],
        tls_files: TLSFiles,
    ) -> AsyncCacheFactory:
        return _factory(tls_cluster.url(f"{tls_deployment[1]}+cluster") + _ca(tls_files))


def _first_commands_at_once(url: str) -> None:
    # redis.asyncio's RedisCluster routes a command before it has read the slot map:
    # a new client's first commands, sent at once, went to arbitrary primaries, got
    # MOVED, and redis-py then closed connections other commands were waiting on.
    async def burst(round_: int) -> list[int | None]:
        async with cachecore.aio.from_url(url, raise_errors=True) as cache:
            keys = [f"n{round_}-{i}" for i in range(16)]  # spread over every primary
            return await asyncio.gather(*(cache.inc(key) for key in keys))

    for round_ in range(5):
        assert asyncio.run(burst(round_)) == [1] * 16


def test_first_commands_of_a_new_cluster_cache_at_once(cluster: ClusterProcess) -> None:
    _first_commands_at_once(cluster.url("redis+cluster"))  # redis-py's client, not TLS only


def test_first_commands_of_a_new_tls_cluster_cache_at_once(
    tls_cluster: ClusterProcess, tls_deployment: tuple[ServerBinary, str], tls_files: TLSFiles
) -> None:
    _first_commands_at_once(tls_cluster.url(f"{tls_deployment[1]}+cluster") + _ca(tls_files))
