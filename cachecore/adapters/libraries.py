"""The client libraries cachecore has adapters for, and what it needs to know of each.

redis-py and valkey-py (a fork of redis-py) share one API: the adapters serve both,
and this module holds what differs: the import name, the client class, which of their
exception types mean what, and the library versions the fast path was tested with.
Nothing here imports a library before a client of it exists.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cachecore.transport import Errors

log = logging.getLogger("cachecore")


@dataclass(frozen=True)
class ClientLibrary:
    """A redis-py-compatible client library.

    :param name: its import name (``"redis"``).
    :param distribution: its distribution name on PyPI (``"redis"``).
    :param client_class_name: its client class (``"Redis"``).
    :param fast_path_versions: ``(lowest, highest)`` major versions whose internals
        the fast path (:class:`~cachecore.adapters.blocking.PooledTransport`) was
        tested against; other versions send through the client's public API.
    """

    name: str
    distribution: str
    client_class_name: str
    fast_path_versions: tuple[int, int]

    def module(self) -> ModuleType:
        """The library's top-level module (imported on first use)."""
        return importlib.import_module(self.name)

    def version(self) -> tuple[int, ...]:
        """The installed version, as integers (``(8, 1, 0)``)."""
        return _version(self.distribution)

    def fast_path_tested(self) -> bool:
        """Whether the installed version is one the fast path was tested with (logs
        one debug line when it is not)."""
        return _fast_path_tested(self)

    @property
    def failures(self) -> Errors:
        """Its errors meaning "the server did not answer": refused or broken
        connection, timeout, no reachable cluster node (a ``LOADING`` reply, which
        the library raises as a connection error, is an answer, not a failure)."""
        return _errors(self.name)[0]

    @property
    def reply_errors(self) -> Errors:
        """Its errors meaning "the server answered with an error"."""
        return _errors(self.name)[1]

    @property
    def errors(self) -> Errors:
        """Every error of the library, and OS socket errors."""
        return _errors(self.name)[2]


REDIS_PY = ClientLibrary("redis", "redis", "Redis", (5, 8))
VALKEY_PY = ClientLibrary("valkey", "valkey", "Valkey", (6, 6))
LIBRARIES = {library.name: library for library in (REDIS_PY, VALKEY_PY)}


@functools.cache
def _version(distribution: str) -> tuple[int, ...]:
    text = importlib.metadata.version(distribution)
    parts: list[int] = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@functools.cache
def _fast_path_tested(library: ClientLibrary) -> bool:
    major = library.version()[0] if library.version() else 0
    low, high = library.fast_path_versions
    tested = low <= major <= high
    if not tested:
        log.debug(
            "cachecore: %s %s is outside the versions cachecore's fast path was tested "
            "with (%d to %d): commands go through the client's execute_command",
            library.distribution,
            ".".join(map(str, library.version())),
            low,
            high,
        )
    return tested


@functools.cache
def _errors(name: str) -> tuple[Errors, Errors, Errors]:
    exceptions = importlib.import_module(f"{name}.exceptions")
    stem = "Redis" if name == "redis" else "Valkey"
    base = getattr(exceptions, f"{stem}Error")
    cluster = getattr(exceptions, f"{stem}ClusterException")
    replies: Errors = (exceptions.ResponseError, exceptions.BusyLoadingError)
    failures: Errors = (exceptions.ConnectionError, exceptions.TimeoutError, cluster, OSError)
    return failures, replies, (base, cluster, OSError)


def library_of(client: Any) -> ClientLibrary | None:
    """The library whose client class ``client`` is or derives from (fakeredis derives
    from redis-py), or None for another client."""
    for cls in type(client).__mro__:
        library = LIBRARIES.get(cls.__module__.partition(".")[0])
        if library is not None:
            return library
    return None


def errors_of(client: Any) -> tuple[Errors, Errors, Errors]:
    """(failures, reply errors, every error) for ``client``: its library's, or redis-py's
    (and valkey-py's, when installed) for a client of another library that raises them."""
    library = library_of(client)
    if library is not None:
        return library.failures, library.reply_errors, library.errors
    return _installed_errors()


@functools.cache
def _installed_errors() -> tuple[Errors, Errors, Errors]:
    failures: list[type[BaseException]] = []
    replies: list[type[BaseException]] = []
    errors: list[type[BaseException]] = []
    for name in LIBRARIES:
        try:
            found = _errors(name)
        except ImportError:
            continue
        failures += found[0]
        replies += found[1]
        errors += found[2]
    return (
        tuple(dict.fromkeys(failures)),
        tuple(dict.fromkeys(replies)),
        tuple(dict.fromkeys(errors)),
    )


def installed_errors() -> Errors:
    """Every error type of every installed client library, and OS socket errors: for
    code that handles errors of clients it did not build."""
    return _installed_errors()[2]


def describe_client(client: Any) -> str:
    """Host, port and db of ``client``'s pool (never the password), or its class name."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return type(client).__name__
