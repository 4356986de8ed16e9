"""The embedded default backend, ``memory://``: an in-process server, no network.

It runs the same :class:`~cachecore.BaseRedisCache` code as the real servers, on
fakeredis, so TTLs, INCRBY and prefixes behave as on Redis. ``memory://name`` selects
a separate namespace; every cache built for the same name in one process shares its
data (as clients of one server would). Data lives as long as the process.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cachecore.errors import ConfigurationError
from cachecore.hookspecs import hookimpl
from cachecore.types import Backend

BACKEND = Backend(
    name="memory",
    schemes=("memory",),
    description="embedded in-process server (fakeredis); the default when nothing is configured",
)

# Network settings that mean nothing in-process; accepted so one set of options can
# serve both memory:// in development and a real server in production.
IGNORED_OPTIONS = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "max_connections",
        "health_check_interval",
        "retry_on_timeout",
        "client_name",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
    }
)

_servers: dict[str, Any] = {}
_servers_lock = threading.Lock()


def _server(name: str) -> Any:
    import fakeredis

    with _servers_lock:
        server = _servers.get(name)
        if server is None:
            server = _servers[name] = fakeredis.FakeServer()
        return server


def parse_memory_url(url: str) -> tuple[str, int]:
    """``memory://[name][/db]`` -> (namespace name, db number).

    :raises ConfigurationError: the db part is not a whole number.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ConfigurationError(
            f"memory URL db must be a number, got {path!r} in {url!r}"
        ) from None
    return parts.netloc or "default", db


@hookimpl
def cachecore_backends() -> list[Backend]:
    """The built-in ``memory`` backend."""
    return [BACKEND]


@hookimpl
def cachecore_create_client(backend: Backend, url: str, options: Mapping[str, Any]) -> Any:
    """A fakeredis client on the namespace the URL names."""
    if backend.name != BACKEND.name:
        return None
    import fakeredis

    unknown = sorted(set(options) - IGNORED_OPTIONS)
    if unknown:
        raise ConfigurationError(f"memory:// does not take the option(s): {', '.join(unknown)}")
    name, db = parse_memory_url(url)
    return fakeredis.FakeRedis(server=_server(name), db=db)


@hookimpl
def cachecore_create_async_client(backend: Backend, url: str, options: Mapping[str, Any]) -> Any:
    """A fakeredis asyncio client on the namespace the URL names: it shares its data
    with the blocking caches on that name."""
    if backend.name != BACKEND.name:
        return None
    import fakeredis

    unknown = sorted(set(options) - IGNORED_OPTIONS)
    if unknown:
        raise ConfigurationError(f"memory:// does not take the option(s): {', '.join(unknown)}")
    name, db = parse_memory_url(url)
    return fakeredis.FakeAsyncRedis(server=_server(name), db=db)
