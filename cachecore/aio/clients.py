"""asyncio clients for server URLs: single servers, TLS, Cluster and Sentinel.

The asyncio twin of :meth:`cachecore.server_cache.ServerCache.client_from_url`, for the
libraries' asyncio clients (``redis.asyncio``, ``valkey.asyncio``), with the same URLs,
options and defaults (short timeouts, one retry on a broken connection, none on a
timeout). The URL forms are parsed by :mod:`cachecore.topology`.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Collection, Mapping
from typing import Any

from cachecore import topology
from cachecore.adapters.aio import AsyncClientTransport
from cachecore.adapters.retry import retry_class
from cachecore.errors import ConfigurationError
from cachecore.options import with_client_defaults


def async_client_options(library: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` plus cachecore's defaults, with an asyncio ``retry`` of ``library``."""
    retry_module = importlib.import_module(f"{library}.asyncio.retry")
    backoff = importlib.import_module(f"{library}.backoff")
    exceptions = importlib.import_module(f"{library}.exceptions")
    broken = exceptions.ConnectionError
    retry = retry_class(retry_module.Retry)(backoff.NoBackoff(), 1, supported_errors=(broken,))
    # valkey-py's execute_command retries only the errors named in retry_on_error.
    return {"retry": retry, "retry_on_error": [broken], **with_client_defaults(options)}


def async_client_from_url(
    library: str,
    client_class_name: str,
    url: str,
    options: Mapping[str, Any],
    scheme_aliases: Mapping[str, str] | None = None,
    tls_schemes: Collection[str] = topology.TLS_SCHEMES,
) -> Any:
    """An asyncio client of ``library`` (``"redis"``, ``"valkey"``) for ``url``, or, for
    a Sentinel URL with ``read_from_replicas``, a transport with a replica reader.

    :raises ConfigurationError: a malformed cluster or Sentinel URL. (The caller,
        :meth:`~cachecore.server_cache.ServerCache.async_client_from_url`, checks plain
        URLs and the options, as for blocking clients.)
    """
    try:
        module = importlib.import_module(f"{library}.asyncio")
    except ImportError as exc:
        raise ConfigurationError(
            f"the asyncio cache needs {library!r}: pip install {library}"
        ) from exc
    kwargs = async_client_options(library, options)
    scheme, sep, rest = url.partition("://")
    kind = topology.topology_kind(scheme)
    if kind is None:
        aliases = scheme_aliases or {}
        return getattr(module, client_class_name).from_url(
            aliases.get(scheme, scheme) + sep + rest, **kwargs
        )
    spec = topology.parse_topology_url(url, kwargs, tls_schemes)
    if spec.tls:
        kwargs = {"ssl": True, **kwargs}
    kwargs.pop("db", None)
    kwargs.pop("service_name", None)
    if spec.username is not None:
        kwargs.setdefault("username", spec.username)
    if spec.password is not None:
        kwargs.setdefault("password", spec.password)
    replicas = bool(kwargs.pop("read_from_replicas", False))
    if kind == topology.CLUSTER:
        return _cluster(module, client_class_name, spec, kwargs, replicas)
    return _sentinel(library, module, client_class_name, spec, kwargs, replicas)


def _cluster(
    module: Any,
    client_class_name: str,
    spec: topology.TopologyURL,
    kwargs: dict[str, Any],
    replicas: bool,
) -> Any:
    cluster_module = importlib.import_module(f"{module.__name__}.cluster")
    cluster_class = getattr(cluster_module, f"{client_class_name}Cluster")
    if replicas:
        strategy = getattr(cluster_module, "LoadBalancingStrategy", None)
        if strategy is not None:
            kwargs["load_balancing_strategy"] = strategy.ROUND_ROBIN
        else:
            kwargs["read_from_replicas"] = True
    kwargs.setdefault("cluster_error_retry_attempts", 1)
    startup = [cluster_module.ClusterNode(host, port) for host, port in spec.nodes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The blocking cluster client's changes: no retry after a timeout, mget across slots.
        client = topology.cache_cluster_class(cluster_class)(startup_nodes=startup, **kwargs)
    return client


def _sentinel(
    library: str,
    module: Any,
    client_class_name: str,
    spec: topology.TopologyURL,
    kwargs: dict[str, Any],
    replicas: bool,
) -> Any:
    sentinel_module = importlib.import_module(f"{module.__name__}.sentinel")
    shared = ("socket_", "ssl") if spec.tls else ("socket_",)
    sentinel_kwargs: dict[str, Any] = {
        name: value for name, value in kwargs.items() if name.startswith(shared)
    }
    for name in ("username", "password"):
        value = kwargs.pop(f"sentinel_{name}", None)
        if value is not None:
            sentinel_kwargs[name] = value
    retry_module = importlib.import_module(f"{library}.asyncio.retry")
    backoff = importlib.import_module(f"{library}.backoff")
    sentinel_kwargs["retry"] = retry_module.Retry(backoff.NoBackoff(), 0)
    sentinel = sentinel_module.Sentinel(list(spec.nodes), sentinel_kwargs=sentinel_kwargs, **kwargs)
    client_class = getattr(module, client_class_name)
    primary = sentinel.master_for(spec.service_name, client_class, db=spec.db)
    if not replicas:
        return primary
    replica = sentinel.slave_for(spec.service_name, client_class, db=spec.db)
    return AsyncClientTransport(primary, reader=AsyncClientTransport(replica))
