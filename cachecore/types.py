"""Small typed records shared by the host and its plugins."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from cachecore.redis_base import BaseRedisCache

Timeout: TypeAlias = "int | dt.timedelta | None"
"""A cache timeout: whole seconds, a timedelta, None for the default, 0 for never."""

KeyPrefix: TypeAlias = "str | Callable[[], str] | None"
"""A key prefix: a string, or a zero-argument callable evaluated on every call."""


@runtime_checkable
class Serializer(Protocol):
    """What a cache needs of a wire format.

    ``dumps`` turns a value into the bytes stored on the server and raises
    :class:`cachecore.errors.SerializationError` for a value it cannot encode.
    ``loads`` turns stored bytes back into the value; it may raise any exception
    for bytes it cannot decode: the cache logs that and reads the value as a miss.
    """

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


@dataclass(frozen=True)
class Backend:
    """A backend a plugin provides, as returned by the ``cachecore_backends`` hook.

    :param name: unique backend name, e.g. ``"valkey"``.
    :param schemes: URL schemes it handles, e.g. ``("valkey", "valkeys")``.
    :param description: one line for ``cachecore backends``.
    :param cache_class: the :class:`~cachecore.BaseRedisCache` subclass to build;
        its constructor must accept a connected client as first argument.
        ``None`` means :class:`~cachecore.BaseRedisCache` itself.
    :param distribution: filled in by the host: the distribution that provides it.
    :param version: filled in by the host: that distribution's version.
    :param client_options: the client option names this backend accepts, e.g.
        ``("socket_timeout", "ssl_ca_certs")``. When given, the host refuses any other
        option with a :class:`~cachecore.ConfigurationError` before the plugin is
        called. ``None`` (the default) declares nothing: the plugin's
        ``cachecore_create_client`` sees every option, and the host checks what it can
        on the client it returns.
    :param plugin: filled in by the host: the name the declaring plugin is registered
        under (its entry-point name); only that plugin is asked to build clients.
    """

    name: str
    schemes: tuple[str, ...]
    description: str = ""
    cache_class: type[BaseRedisCache] | None = None
    distribution: str = ""
    version: str = ""
    client_options: tuple[str, ...] | None = None
    plugin: str = ""


@dataclass(frozen=True)
class SerializerSpec:
    """A wire format a plugin provides, as returned by the ``cachecore_serializers`` hook.

    :param name: the name users select it by (``serializer="json"``).
    :param factory: builds the serializer; called once per cache.
    :param description: one line for documentation and error messages.
    """

    name: str
    factory: Callable[[], Serializer]
    description: str = ""
