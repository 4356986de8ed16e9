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
from cachecore.options import KNOWN_OPTIONS, did_you_mean
from cachecore.redaction import redact_url
from cachecore.types import Backend
from cachecore.urls import check_url, parse_db

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
        "ssl_check_hostname",
        "ssl_password",
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


MEMORY_DATABASES = 16
"""Databases per ``memory://`` namespace (0 to 15), as on a default-configured server."""


def parse_memory_url(url: str) -> tuple[str, int]:
    """``memory://[name][/db]`` -> (namespace name, db number).

    :raises ConfigurationError: the URL has credentials or a port, or its db part is not
        one whole number from 0 to 15.
    """
    check_url(url)
    shown = redact_url(url)
    base = url.partition("?")[0]
    parts = urllib.parse.urlsplit(base)
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ConfigurationError(
            f"{shown}: memory:// takes a namespace name, not a host, port or password "
            "(memory://[name][/db])"
        )
    path = parts.path.removeprefix("/")
    db = parse_db(path, shown) if path else 0
    if db >= MEMORY_DATABASES:
        raise ConfigurationError(
            f"{shown}: memory:// has databases 0 to {MEMORY_DATABASES - 1}, not {db}"
        )
    return parts.netloc or "default", db


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse client options that ``memory://`` cannot honour (it accepts and ignores
    :data:`IGNORED_OPTIONS`).

    :raises ConfigurationError: naming each, with the closest valid name for an unknown
        one.
    """
    problems = []
    for name in sorted(set(options) - IGNORED_OPTIONS):
        if name == "db":
            problems.append("memory:// takes its database in the path (memory://name/1), not 'db'")
        elif name in KNOWN_OPTIONS:
            problems.append(f"memory:// does not take {name!r}: it has no meaning in-process")
        else:
            problems.append(f"unknown option {name!r} for memory://{did_you_mean(name)}")
    if problems:
        raise ConfigurationError("; ".join(problems))


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

    check_options(options)
    name, db = parse_memory_url(url)
    return fakeredis.FakeRedis(server=_server(name), db=db)


@hookimpl
def cachecore_create_async_client(backend: Backend, url: str, options: Mapping[str, Any]) -> Any:
    """A fakeredis asyncio client on the namespace the URL names: it shares its data
    with the blocking caches on that name."""
    if backend.name != BACKEND.name:
        return None
    import fakeredis

    check_options(options)
    name, db = parse_memory_url(url)
    return fakeredis.FakeAsyncRedis(server=_server(name), db=db)
