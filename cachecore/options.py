"""Option names, types and defaults: which settings go to the cache and which to the client.

Options arrive as keyword arguments, URL query parameters, ``CACHECORE_*`` environment
variables or ``[tool.cachecore]`` entries; the last three are strings and are converted
here to the types below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cachecore.errors import ConfigurationError


def parse_bool(value: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case)."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_list(value: str) -> list[str]:
    """Comma-separated values."""
    return [part.strip() for part in value.split(",") if part.strip()]


CACHE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "default_timeout": int,
    "key_prefix": str,
    "serializer": str,
    "raise_errors": parse_bool,
    "max_value_size": int,
    "secret_key": str,
    "old_secret_keys": parse_list,
    "signed_serializer": str,
    "compression": str,
    "compression_threshold": int,
    "compression_level": int,
    "near_cache": parse_bool,
    "near_cache_size": int,
    "circuit_breaker": parse_bool,
    "circuit_breaker_threshold": int,
    "circuit_breaker_reset": float,
}
"""Options the cache itself takes; everything else goes to the backend's client."""

CLIENT_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "socket_keepalive": parse_bool,
    "max_connections": int,
    "health_check_interval": int,
    "retry_on_timeout": parse_bool,
    "client_name": str,
    "username": str,
    "password": str,
    "db": int,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": parse_bool,
    "protocol": int,
    "read_from_replicas": parse_bool,
    "service_name": str,
}
"""Client options cachecore knows the type of; unknown ones pass through as strings."""

DEFAULT_CLIENT_OPTIONS: dict[str, Any] = {
    # A cache must never hold its application hostage: a dead or paused server costs a
    # caller at most about one second (connect or reply), never the clients' own
    # default of 5 s, let alone forever (cachelib's default).
    "socket_connect_timeout": 1.0,
    "socket_timeout": 1.0,
}
"""Client defaults the first-party plugins apply unless the user sets them."""


def coerce(name: str, value: Any) -> Any:
    """Convert a string option value to its type; other values pass unchanged.

    :raises ConfigurationError: the string does not parse, naming the option.
    """
    if not isinstance(value, str):
        return value
    parser = CACHE_OPTIONS.get(name) or CLIENT_OPTIONS.get(name)
    if parser is None:
        return value
    try:
        return parser(value)
    except ValueError as exc:
        raise ConfigurationError(f"option {name!r}: cannot use {value!r}: {exc}") from None


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split converted options into (cache options, client options)."""
    cache: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for name, value in options.items():
        target = cache if name in CACHE_OPTIONS else client
        target[name] = coerce(name, value)
    return cache, client


def with_client_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with :data:`DEFAULT_CLIENT_OPTIONS` filled in where unset."""
    return {**DEFAULT_CLIENT_OPTIONS, **options}
