"""Cluster and Sentinel deployments: their URLs, their clients, and a view of their nodes.

Every server plugin gets two more URL schemes from this module, through
:meth:`cachecore.server_cache.ServerCache.client_from_url`: ``<scheme>+cluster`` and
``<scheme>+sentinel`` (``redis+cluster://``, ``valkey+sentinel://``...). The client library
stays the plugin's own (redis-py's ``RedisCluster`` / ``Sentinel``, valkey-py's
``ValkeyCluster`` / ``Sentinel``); nothing here is specific to one library::

    redis+cluster://[user:password@]host1:port1,host2:port2/
    valkey+sentinel://[user:password@]sentinel1:26379,sentinel2:26379/mymaster/0

The TLS forms (``rediss+cluster://``, ``valkeys+sentinel://``...) connect to every node,
and every sentinel, over TLS; ``ssl_ca_certs`` and the other ``ssl_*`` options apply.

Options beyond the usual client options:

* ``read_from_replicas=true``: a cluster client reads from replicas too (the client's
  own load balancing); a Sentinel cache gets a second client on the replicas for
  ``get``, ``get_many`` and ``has``. Either way reads are eventually consistent.
* ``service_name``: the Sentinel service when the URL path does not name it.
* ``sentinel_username`` / ``sentinel_password``: credentials for the sentinels
  themselves (the URL's credentials are the data nodes').
"""

from __future__ import annotations

import functools
import importlib
import types
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from cachecore.adapters.blocking import (
    ClientTransport,
    is_cluster_client,
    library_client,
    node_client,
    primary_clients,
)
from cachecore.adapters.libraries import installed_errors
from cachecore.adapters.retry import sending_once
from cachecore.errors import BackendError, ConfigurationError
from cachecore.protocol import glob_escape
from cachecore.redaction import redact_url, split_credentials
from cachecore.urls import check_url, parse_db

if TYPE_CHECKING:
    from cachecore.redis_base import BaseRedisCache
    from cachecore.transport import Transport

__all__ = [
    "TLS_SCHEMES",
    "TopologyURL",
    "client_from_url",
    "describe_topology",
    "is_cluster_client",
    "node_client",
    "parse_topology_url",
    "primary_clients",
    "topology_kind",
]

CLUSTER = "cluster"
SENTINEL = "sentinel"
DEFAULT_PORTS = {CLUSTER: 6379, SENTINEL: 26379}

TLS_SCHEMES = frozenset({"rediss", "valkeys"})
"""The plain schemes the client libraries read as TLS. ``rediss+cluster://`` and
``valkeys+sentinel://`` (and a plugin's alias of them, such as ``keydbs+cluster``)
connect to every node, and every sentinel, over TLS."""


def topology_kind(scheme: str) -> str | None:
    """``"cluster"``, ``"sentinel"`` or None for a plain scheme such as ``redis``."""
    _, plus, kind = scheme.rpartition("+")
    if plus and kind in (CLUSTER, SENTINEL):
        return kind
    return None


@dataclass(frozen=True)
class TopologyURL:
    """A parsed ``+cluster`` or ``+sentinel`` URL."""

    kind: str
    scheme: str
    """The plain scheme before ``+``: ``redis``, ``valkey``..."""
    nodes: tuple[tuple[str, int], ...]
    """Cluster seed nodes, or the sentinels."""
    username: str | None = None
    password: str | None = None
    service_name: str | None = None
    db: int = 0
    tls: bool = False
    """Every node (and sentinel) over TLS: the plain scheme is a TLS one."""


def _parse_node(text: str, default_port: int, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"node {text!r} of {redact_url(url)} is not [IPv6]:port")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ConfigurationError(f"node {text!r} of {redact_url(url)} has no host")
    if port_text and not (port_text.isascii() and port_text.isdecimal()):
        raise ConfigurationError(
            f"node {text!r} of {redact_url(url)} has a bad port: not a whole number"
        )
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"node {text!r} of {redact_url(url)} has a bad port: not from 1 to 65535"
        )
    return host, port


def _int_option(name: str, value: Any, url: str) -> int:
    """A database number: one whole number >= 0, written in the URL or given as ``db``."""
    if isinstance(value, str):
        return parse_db(value, redact_url(url))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigurationError(f"the {name} of {redact_url(url)} must be a whole number >= 0")


def parse_topology_url(
    url: str,
    options: Mapping[str, Any] | None = None,
    tls_schemes: Collection[str] = TLS_SCHEMES,
) -> TopologyURL:
    """Parse ``<scheme>+cluster://nodes/`` or ``<scheme>+sentinel://sentinels/service/db``.

    ``options`` may supply ``db`` and ``service_name`` when the path does not. The URL
    asks for TLS when its plain scheme is one of ``tls_schemes``.

    :raises ConfigurationError: no node, a bad port, a database other than 0 on a
        cluster, or no service name for Sentinel.
    """
    options = options or {}
    scheme, sep, _ = url.partition("://")
    kind = topology_kind(scheme)
    if not sep or kind is None:
        raise ConfigurationError(f"{redact_url(url)} is not a +cluster or +sentinel URL")
    check_url(url)
    credentials = split_credentials(url.partition("?")[0])
    hosts, _, path = credentials.rest.partition("/")
    username = password = None
    if credentials.userinfo is not None:
        user, colon, secret = credentials.userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(
        _parse_node(part.strip(), DEFAULT_PORTS[kind], url)
        for part in hosts.split(",")
        if part.strip()
    )
    if not nodes:
        raise ConfigurationError(f"{redact_url(url)} names no node")
    segments = [unquote(s) for s in path.split("/") if s]
    base = scheme.rpartition("+")[0]
    if kind == CLUSTER:
        if len(segments) > 1:
            raise ConfigurationError(
                f"a cluster URL has no path beyond the database: {redact_url(url)}"
            )
        db = _int_option("database", segments[0] if segments else options.get("db", 0), url)
        if db != 0:
            raise ConfigurationError(
                f"a cluster has only database 0, but {redact_url(url)} asks for {db}"
            )
        return TopologyURL(CLUSTER, base, nodes, username, password, tls=base in tls_schemes)
    if len(segments) > 2:
        raise ConfigurationError(f"a sentinel URL path is /service_name/db: {redact_url(url)}")
    service = segments[0] if segments else options.get("service_name")
    if not service:
        raise ConfigurationError(
            f"{redact_url(url)} names no Sentinel service: use "
            f"{scheme}://host:26379/<service_name>/<db> or ?service_name="
        )
    db = _int_option("database", segments[1] if len(segments) > 1 else options.get("db", 0), url)
    return TopologyURL(
        SENTINEL, base, nodes, username, password, str(service), db, base in tls_schemes
    )


# -- clients -----------------------------------------------------------------------------


@functools.cache
def cache_cluster_class(base: type[Any]) -> type[Any]:
    """``base`` (the library's cluster client) with two changes:

    * ``mget`` accepts keys of any slots, as a standalone client's does, so code written
      for one (cachelib's ``get_many``) also works here; across slots the read is not
      atomic (it cannot be on a cluster);
    * a command that timed out is not retried (a connection refused still is, once, on
      the refreshed slot map): a hung node costs one socket timeout, as on a standalone
      server, not two;
    * inside :func:`cachecore.adapters.retry.send_once` no command is retried at the cluster
      level (valkey-py counts those retries in ``cluster_error_retry_attempts``;
      redis-py asks its ``retry``, which cachecore's obeys ``send_once`` itself).
    """

    def mget(self: Any, keys: Any, *args: Any) -> list[Any]:
        return self.mget_nonatomic(keys, *args)  # type: ignore[no-any-return]

    def get_attempts(self: Any) -> int:
        return 0 if sending_once() else int(self.__dict__.get("_cachecore_attempts", 0))

    def set_attempts(self: Any, attempts: int) -> None:
        self.__dict__["_cachecore_attempts"] = attempts

    timeout_error = importlib.import_module(base.__module__).TimeoutError
    namespace = {
        "mget": mget,
        "cluster_error_retry_attempts": property(get_attempts, set_attempts),
        "ERRORS_ALLOW_RETRY": tuple(
            error for error in base.ERRORS_ALLOW_RETRY if not issubclass(error, timeout_error)
        ),
        "__module__": __name__,
        "__doc__": cache_cluster_class.__doc__,
    }
    return types.new_class(base.__name__, (base,), {}, lambda ns: ns.update(namespace))


def _pop_auth(kwargs: dict[str, Any], spec: TopologyURL) -> None:
    if spec.username is not None:
        kwargs.setdefault("username", spec.username)
    if spec.password is not None:
        kwargs.setdefault("password", spec.password)


def cluster_client(
    library: types.ModuleType, client_class_name: str, spec: TopologyURL, options: dict[str, Any]
) -> Any:
    """A cluster client of ``library`` (``<client_class_name>Cluster``, e.g. ``RedisCluster``
    or ``ValkeyCluster``) on the seed nodes of ``spec``, with ``options`` (which already
    hold cachecore's defaults and ``retry``)."""
    module = importlib.import_module(f"{library.__name__}.cluster")
    try:
        cluster_class = getattr(module, f"{client_class_name}Cluster")
    except AttributeError:
        raise ConfigurationError(
            f"{library.__name__} has no {client_class_name}Cluster client for Cluster URLs"
        ) from None
    kwargs = dict(options)
    kwargs.pop("db", None)  # checked by parse_topology_url: 0
    kwargs.pop("service_name", None)
    _pop_auth(kwargs, spec)
    if kwargs.pop("read_from_replicas", False):
        strategy = getattr(module, "LoadBalancingStrategy", None)
        if strategy is not None:  # redis-py >= 5.3 deprecates the flag for this
            kwargs["load_balancing_strategy"] = strategy.ROUND_ROBIN
        else:
            kwargs["read_from_replicas"] = True
    startup = [module.ClusterNode(host, port) for host, port in spec.nodes]
    # Retries: redis-py >= 6 counts cluster-level retries (after refreshing the slot map)
    # from ``retry``; valkey-py and older redis-py apply ``retry`` per connection and count
    # cluster-level retries in ``cluster_error_retry_attempts`` (deprecated, ignored by the
    # newer ones). Either way: one retry, after the client has looked up the new topology.
    kwargs.setdefault("cluster_error_retry_attempts", 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return cache_cluster_class(cluster_class)(startup_nodes=startup, **kwargs)
    except installed_errors() as exc:
        # The client reads the slot map now: no seed node answering is a backend fault.
        seeds = ",".join(f"{host}:{port}" for host, port in spec.nodes)
        raise BackendError(
            f"cannot read the slot map of the {spec.scheme} cluster at {seeds}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def sentinel_clients(
    library: types.ModuleType,
    client_class: type[Any],
    spec: TopologyURL,
    options: dict[str, Any],
) -> tuple[Any, Any]:
    """(primary client, replica client or None) of ``library`` for the Sentinel ``spec``.

    Both follow failovers: each new connection asks the sentinels where to go.
    """
    module = importlib.import_module(f"{library.__name__}.sentinel")
    kwargs = dict(options)
    kwargs.pop("db", None)
    kwargs.pop("service_name", None)
    read_from_replicas = bool(kwargs.pop("read_from_replicas", False))
    _pop_auth(kwargs, spec)
    # Sentinels: the same socket timeouts (and TLS settings, for a TLS scheme), their
    # own credentials, and no retry, so an unreachable sentinel costs one attempt before
    # the next sentinel is asked.
    shared = ("socket_", "ssl") if spec.tls else ("socket_",)
    sentinel_kwargs: dict[str, Any] = {
        name: value for name, value in kwargs.items() if name.startswith(shared)
    }
    for name in ("username", "password"):
        value = kwargs.pop(f"sentinel_{name}", None)
        if value is not None:
            sentinel_kwargs[name] = value
    sentinel_kwargs["retry"] = library.retry.Retry(library.backoff.NoBackoff(), 0)
    sentinel = module.Sentinel(list(spec.nodes), sentinel_kwargs=sentinel_kwargs, **kwargs)
    primary = sentinel.master_for(spec.service_name, client_class, db=spec.db)
    replica = None
    if read_from_replicas:
        replica = sentinel.slave_for(spec.service_name, client_class, db=spec.db)
    return primary, replica


def client_from_url(
    library: types.ModuleType,
    client_class_name: str,
    url: str,
    options: dict[str, Any],
    tls_schemes: Collection[str] = TLS_SCHEMES,
) -> Any | Transport:
    """The client for a ``+cluster`` or ``+sentinel`` ``url``.

    ``options`` are the client options with cachecore's defaults applied. A TLS scheme
    (one of ``tls_schemes``) adds ``ssl=True``, and for Sentinel gives the sentinels the
    same ``ssl*`` options. For Sentinel with ``read_from_replicas``, the result is a
    :class:`~cachecore.transport.Transport` on the primary whose ``reader`` is on the
    replicas.

    :raises ConfigurationError: a malformed URL (see :func:`parse_topology_url`).
    """
    spec = parse_topology_url(url, options, tls_schemes)
    if spec.tls:
        options = {"ssl": True, **options}
    if spec.kind == CLUSTER:
        return cluster_client(library, client_class_name, spec, options)
    primary, replica = sentinel_clients(library, getattr(library, client_class_name), spec, options)
    if replica is None:
        return primary
    return ClientTransport(primary, reader=ClientTransport(replica))


# -- describing a deployment -------------------------------------------------------------


def _ranges(slots: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def _count_keys(client: Any, pattern: str | None) -> int:
    if pattern is None:
        return int(client.execute_command("DBSIZE"))
    count = 0
    cursor = 0
    while True:
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        count += len(keys)
        cursor = int(cursor)
        if cursor == 0:
            return count


def _node_entry(
    client: Any, address: str, role: str, slots: list[tuple[int, int]], pattern: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": address, "role": role, "slots": slots}
    try:
        entry["keys"] = _count_keys(client, pattern)
        entry["reachable"] = True
    except installed_errors() as exc:
        entry["keys"] = None
        entry["reachable"] = False
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def _cluster_replicas(cluster: Any, primaries: list[Any]) -> list[str]:
    """``host:port`` of every replica that CLUSTER NODES of a reachable primary lists."""
    for node in primaries:
        try:
            reply = node_client(cluster, node).execute_command("CLUSTER NODES")
        except installed_errors():
            continue
        if isinstance(reply, dict):  # parsed by the client: {"host:port": {"flags": ...}}
            return sorted(
                address
                for address, fields in reply.items()
                if "slave" in str(fields.get("flags", ""))
                or "replica" in str(fields.get("flags", ""))
            )
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        replicas = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 2 and ("slave" in fields[2] or "replica" in fields[2]):
                replicas.append(fields[1].partition("@")[0])
        return sorted(replicas)
    return []


_NODE_OPTIONS = (
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
)


def _standalone_like(template: Any, host: str, port: int) -> Any:
    """A standalone client of ``template``'s class and credentials for another node."""
    kwargs = template.connection_pool.connection_kwargs
    options = {k: kwargs[k] for k in _NODE_OPTIONS if k in kwargs}
    if "ssl_ca_certs" in options or "ssl_certfile" in options:
        options["ssl"] = True
    return type(template)(host=host, port=port, **options)


def describe_topology(cache: BaseRedisCache) -> list[dict[str, Any]]:
    """The nodes behind ``cache``, for ``cachecore info``: one dict per node with
    ``address`` (``host:port``), ``role`` (``primary``, ``replica`` or ``standalone``),
    ``slots`` (inclusive ranges; empty outside a cluster), ``keys`` (under the cache's
    key prefix, counted with SCAN; the whole database without a prefix; None when
    unreachable), ``reachable`` and, when unreachable, ``error``.

    Counting scans every node: meant for an occasional ``info``, not a hot path.
    """
    client = library_client(cache.transport)
    prefix = cache._prefix()
    pattern = glob_escape(prefix) + "*" if prefix else None
    if is_cluster_client(client):
        slots_by_node: dict[str, list[int]] = {}
        for slot, holders in client.nodes_manager.slots_cache.items():
            if holders:
                slots_by_node.setdefault(holders[0].name, []).append(slot)
        primaries = sorted(client.get_primaries(), key=lambda n: n.name)
        entries = [
            _node_entry(
                node_client(client, node),
                node.name,
                "primary",
                _ranges(slots_by_node.get(node.name, [])),
                pattern,
            )
            for node in primaries
        ]
        # Replicas come from CLUSTER NODES: the slot map may omit them (Redis 7.0 leaves
        # replicas out of CLUSTER SLOTS).
        known = {node.name for node in primaries}
        for address in _cluster_replicas(client, primaries):
            if address in known:
                continue
            host, _, port = address.rpartition(":")
            replica = _standalone_like(node_client(client, primaries[0]), host, int(port))
            try:
                entries.append(_node_entry(replica, address, "replica", [], pattern))
            finally:
                replica.close()
        return entries
    pool = client.connection_pool
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        service = pool.service_name
        try:
            host, port = manager.discover_master(service)
            replicas = manager.discover_slaves(service)
        except installed_errors() as exc:
            return [
                {
                    "address": f"sentinel service {service}",
                    "role": "primary",
                    "slots": [],
                    "keys": None,
                    "reachable": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            ]
        entries = [_node_entry(client, f"{host}:{port}", "primary", [], pattern)]
        node_class = type(client)
        kwargs = {
            k: v
            for k, v in pool.connection_kwargs.items()
            if k in ("username", "password", "db", "socket_timeout", "socket_connect_timeout")
        }
        for replica_host, replica_port in replicas:
            replica = node_class(host=replica_host, port=replica_port, **kwargs)
            try:
                entries.append(
                    _node_entry(replica, f"{replica_host}:{replica_port}", "replica", [], pattern)
                )
            finally:
                replica.close()
        return entries
    kwargs = pool.connection_kwargs
    address = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return [_node_entry(client, str(address), "standalone", [], pattern)]
