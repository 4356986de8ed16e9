"""The constructor every first-party server backend shares: cachelib's ``RedisCache``
signature, plus building clients from URLs with cachecore's fault-tolerant defaults.

A backend plugin subclasses :class:`ServerCache` and names its client library; it
writes no cache method (those live in :class:`~cachecore.BaseRedisCache`)::

    class ValkeyCache(ServerCache):
        client_module = "valkey"
        client_class_name = "Valkey"
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from collections.abc import Mapping
from typing import Any, ClassVar

from cachecore import topology
from cachecore.adapters.blocking import library_client
from cachecore.adapters.retry import retry_class
from cachecore.errors import ConfigurationError
from cachecore.hookspecs import hookimpl
from cachecore.options import KNOWN_OPTIONS, did_you_mean, with_client_defaults
from cachecore.redis_base import BaseRedisCache
from cachecore.types import Backend, KeyPrefix, Serializer, Timeout
from cachecore.urls import parse_server_url


class ServerCache(BaseRedisCache):
    """A cache on a Redis-protocol server; drop-in for cachelib's ``RedisCache``.

    :param host: server host name, or an existing client (or
        :class:`~cachecore.transport.Transport`) to use as is.
    :param port: server port.
    :param password: server password (``AUTH``); never logged or shown in ``repr``.
    :param db: database number.
    :param default_timeout: see :class:`~cachecore.BaseRedisCache`.
    :param key_prefix: see :class:`~cachecore.BaseRedisCache`.
    :param client_kwargs: passed to the client class (``socket_timeout``, ``ssl``,
        ``username``...), on top of :data:`cachecore.options.DEFAULT_CLIENT_OPTIONS`.
        The remaining keyword-only parameters are :class:`~cachecore.BaseRedisCache`'s.
    """

    client_module: ClassVar[str] = ""
    """Import name of the client library, e.g. ``"redis"`` or ``"valkey"``."""
    client_class_name: ClassVar[str] = ""
    """Its client class, e.g. ``"Redis"``."""
    scheme_aliases: ClassVar[Mapping[str, str]] = {}
    """URL schemes the client library does not know, mapped to ones it does."""

    def __init__(
        self,
        host: Any = "localhost",
        port: int = 6379,
        password: str | None = None,
        db: int = 0,
        default_timeout: Timeout = 300,
        key_prefix: KeyPrefix = None,
        *,
        serializer: Serializer | None = None,
        raise_errors: bool = False,
        max_value_size: int | None = None,
        read_client: Any = None,
        ignore_delete_many_errors: bool = True,
        check_connection: bool = False,
        **client_kwargs: Any,
    ) -> None:
        if host is None:
            raise ValueError(f"{type(self).__name__} host may not be None")
        if isinstance(host, str):
            if client_kwargs.get("decode_responses"):
                raise ValueError("decode_responses is not supported: values are bytes")
            # The client would accept these and fail (or pick another database) later.
            if type(port) is not int or not 0 < port < 65536:
                raise ConfigurationError(f"port must be an int from 1 to 65535, got {port!r}")
            if type(db) is not int or db < 0:
                raise ConfigurationError(f"db must be an int >= 0, got {db!r}")
            client = self.make_client(
                host=host, port=port, password=password, db=db, **client_kwargs
            )
        else:
            if client_kwargs:
                raise TypeError(
                    f"client options {sorted(client_kwargs)} cannot apply to an existing client"
                )
            client = host
        super().__init__(
            client,
            default_timeout,
            key_prefix,
            serializer=serializer,
            raise_errors=raise_errors,
            max_value_size=max_value_size,
            read_client=read_client,
            ignore_delete_many_errors=ignore_delete_many_errors,
            check_connection=check_connection,
        )

    @classmethod
    def library(cls) -> types.ModuleType:
        """The client library module.

        :raises ConfigurationError: the class names no library, or it is not installed.
        """
        if not cls.client_module:
            raise ConfigurationError(f"{cls.__name__} must set client_module and client_class_name")
        try:
            return importlib.import_module(cls.client_module)
        except ImportError as exc:
            raise ConfigurationError(
                f"{cls.__name__} needs the {cls.client_module!r} package: "
                f"pip install {cls.client_module}"
            ) from exc

    @classmethod
    def client_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` plus cachecore's defaults: short timeouts, and one immediate retry
        on a broken connection (so a restarted server is reconnected transparently) but
        none on a timeout (so a hung server costs one timeout, not several). The retry
        is skipped for commands sent with :func:`cachecore.adapters.retry.send_once` (``inc``,
        ``add``, ``delete``), which must not run twice."""
        library = cls.library()
        broken = library.exceptions.ConnectionError
        retry = retry_class(library.retry.Retry)(
            library.backoff.NoBackoff(), 1, supported_errors=(broken,)
        )
        # valkey-py's execute_command retries only the errors named in retry_on_error.
        return {"retry": retry, "retry_on_error": [broken], **with_client_defaults(options)}

    @classmethod
    def make_client(cls, **kwargs: Any) -> Any:
        """A client of the library's class with cachecore's defaults under ``kwargs``."""
        client_class = getattr(cls.library(), cls.client_class_name)
        return client_class(**cls.client_options(kwargs))

    @classmethod
    def client_from_url(cls, url: str, options: Mapping[str, Any]) -> Any:
        """A client for ``url`` (host, port, db, user, password, TLS by scheme).

        cachecore checks the URL itself (see :mod:`cachecore.urls`): the client
        libraries read ``/db3`` as database 0 and ``/1/2`` as database 12.
        ``<scheme>+cluster://`` and ``<scheme>+sentinel://`` URLs get the library's
        cluster or Sentinel client (see :mod:`cachecore.topology`), with the same defaults.

        :raises ConfigurationError: a malformed URL (port, database path...), or an
            option the client does not take (with the closest valid name).
        """
        scheme, sep, rest = url.partition("://")
        if topology.topology_kind(scheme) is not None:
            tls_schemes = topology.TLS_SCHEMES | {
                alias
                for alias, target in cls.scheme_aliases.items()
                if target in topology.TLS_SCHEMES
            }
            client = topology.client_from_url(
                cls.library(), cls.client_class_name, url, cls.client_options(options), tls_schemes
            )
        else:
            target = cls.scheme_aliases.get(scheme, scheme)
            parse_server_url(url, unix=target == "unix")
            client_class = getattr(cls.library(), cls.client_class_name)
            client = client_class.from_url(target + sep + rest, **cls.client_options(options))
        _check_connection_options(client)
        return client

    @classmethod
    def async_client_from_url(cls, url: str, options: Mapping[str, Any]) -> Any:
        """An asyncio client for ``url``: the same URLs, options and defaults as
        :meth:`client_from_url`, on the library's asyncio client (see
        :mod:`cachecore.aio.clients`)."""
        from cachecore.aio.clients import async_client_from_url

        cls.library()  # a clear error when the library is missing
        scheme = url.partition("://")[0]
        if topology.topology_kind(scheme) is None:
            target = cls.scheme_aliases.get(scheme, scheme)
            parse_server_url(url, unix=target == "unix")
        tls_schemes = topology.TLS_SCHEMES | {
            alias for alias, target in cls.scheme_aliases.items() if target in topology.TLS_SCHEMES
        }
        client = async_client_from_url(
            cls.client_module,
            cls.client_class_name,
            url,
            options,
            cls.scheme_aliases,
            tls_schemes,
        )
        _check_connection_options(client)
        return client


def _check_connection_options(client: Any) -> None:
    """Build one connection object of ``client``'s pool (no socket): standalone and
    Sentinel clients connect lazily and only then reject an unknown option, as a
    ``TypeError`` in the middle of a cache call. A cluster client has already built its
    connections."""
    pool = getattr(library_client(client), "connection_pool", None)
    if pool is None:
        return
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        raise ConfigurationError(_unknown_option_message(exc, pool.connection_class)) from None


def _unknown_option_message(exc: TypeError, connection_class: type[Any]) -> str:
    """The message for the client's ``TypeError``: the unknown option, and the closest
    valid name, when the error names it."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if match is None:
        return f"unknown client option: {exc}"
    name = match.group(1)
    accepted = set(inspect.signature(connection_class).parameters) | KNOWN_OPTIONS
    return f"unknown option {name!r}{did_you_mean(name, accepted)}"


class ServerBackendPlugin:
    """The two hooks of a server backend plugin, for a :class:`ServerCache` subclass.

    A plugin module exposes one of these and names it in its entry point
    (``redis = "cachecore_redis:plugin"``); pluggy finds the hook methods on it::

        plugin = ServerBackendPlugin(Backend(name="redis", schemes=("redis", "rediss"),
                                             cache_class=RedisCache))
    """

    def __init__(self, backend: Backend) -> None:
        if backend.cache_class is None or not issubclass(backend.cache_class, ServerCache):
            raise TypeError(
                "ServerBackendPlugin needs a Backend whose cache_class is a ServerCache"
            )
        self.backend = backend
        self._cache_class: type[ServerCache] = backend.cache_class

    @hookimpl
    def cachecore_backends(self) -> list[Backend]:
        """This plugin's one backend."""
        return [self.backend]

    @hookimpl
    def cachecore_create_client(
        self, backend: Backend, url: str, options: Mapping[str, Any]
    ) -> Any:
        """A client for ``url`` when ``backend`` is this plugin's."""
        if backend.name != self.backend.name:
            return None
        return self._cache_class.client_from_url(url, options)

    @hookimpl
    def cachecore_create_async_client(
        self, backend: Backend, url: str, options: Mapping[str, Any]
    ) -> Any:
        """An asyncio client for ``url`` when ``backend`` is this plugin's."""
        if backend.name != self.backend.name:
            return None
        return self._cache_class.async_client_from_url(url, options)
