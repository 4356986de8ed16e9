"""Option names, types, ranges and defaults: which settings go to the cache and which to
the client.

Options arrive as keyword arguments, URL query parameters, ``CACHECORE_*`` environment
variables or ``[tool.cachecore]`` entries; the last three are strings and are converted
here to the types below, then checked against the ranges in :data:`CHECKS`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cachecore.errors import ConfigurationError, OptionTypeError
from cachecore.redaction import is_secret
from cachecore.timeouts import to_seconds


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
    "signed_ints": parse_bool,
    "compression": str,
    "compression_threshold": int,
    "compression_level": int,
    "near_cache": parse_bool,
    "near_cache_size": int,
    "circuit_breaker": parse_bool,
    "circuit_breaker_threshold": int,
    "circuit_breaker_reset": float,
    "ignore_delete_many_errors": parse_bool,
    "coalesce_reads": parse_bool,  # the asyncio cache's; blocking caches ignore it
    # cachecore.observability: OpenTelemetry metrics and spans (providers: Python only).
    "metrics": parse_bool,
    "tracing": parse_bool,
    "meter_provider": str,
    "tracer_provider": str,
    # The share of calls (0 < r <= 1, each at random) timed into the duration histogram;
    # the counters stay exact. No effect without metrics or observers (observability.py).
    "metrics_sample_rate": float,
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
    "ssl_password": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": parse_bool,
    "protocol": int,
    "read_from_replicas": parse_bool,
    "service_name": str,
    "sentinel_username": str,
    "sentinel_password": str,
}
"""Client options cachecore knows the type of; unknown ones pass through as strings."""

KNOWN_OPTIONS = frozenset(CACHE_OPTIONS) | frozenset(CLIENT_OPTIONS)
"""Every option name cachecore knows, for suggestions when a name is misspelled."""


Check = Callable[[Any], "str | None"]
"""Returns what is wrong with a value (completing "must be ..."), or None when it is fine."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"a whole number >= {minimum}"

    return check


def _seconds(allow_zero: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if (
            _is_number(value)
            and math.isfinite(value)
            and (value > 0 or (allow_zero and value == 0))
        ):
            return None
        return "a number of seconds >= 0" if allow_zero else "a number of seconds > 0"

    return check


def _share(value: Any) -> str | None:
    if _is_number(value) and 0 < value <= 1:  # NaN fails both comparisons
        return None
    return "a number > 0 and <= 1 (1 = every call)"


def _socket_timeout(value: Any) -> str | None:
    # None: the client waits for ever; a choice only Python code can make, on purpose.
    return None if value is None else _seconds()(value)


def _default_timeout(value: Any) -> str | None:
    try:
        to_seconds(value, "default_timeout")
    except (TypeError, ValueError):
        return "a whole number of seconds >= 0 (0 = never expire) or a datetime.timedelta"
    return None


def _one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool):
            return f"one of {', '.join(map(str, choices))}"
        if isinstance(value, str):
            value = value.lower()
        return None if value in choices else f"one of {', '.join(map(str, choices))}"

    return check


def _cert_reqs(value: Any) -> str | None:
    # Python code may pass the ssl module's constants; strings are checked here.
    return _one_of("none", "optional", "required")(value) if isinstance(value, str) else None


CHECKS: dict[str, Check] = {
    "default_timeout": _default_timeout,
    "max_value_size": _whole(1),
    "compression_threshold": _whole(0),
    "near_cache_size": _whole(1),
    "circuit_breaker_threshold": _whole(1),
    "circuit_breaker_reset": _seconds(),
    "metrics_sample_rate": _share,
    "socket_timeout": _socket_timeout,
    "socket_connect_timeout": _socket_timeout,
    "max_connections": _whole(1),
    "health_check_interval": _seconds(allow_zero=True),
    "db": _whole(0),
    "protocol": _one_of(2, 3),
    "ssl_cert_reqs": _cert_reqs,
}
"""The range each option must lie in, checked when a cache is built."""

DEFAULT_CLIENT_OPTIONS: dict[str, Any] = {
    # A cache must never hold its application hostage: a dead or paused server costs a
    # caller at most about one second (connect or reply), never the clients' own
    # default of 5 s, let alone forever (cachelib's default).
    "socket_connect_timeout": 1.0,
    "socket_timeout": 1.0,
}
"""Client defaults the first-party plugins apply unless the user sets them."""


_EXPECTED: dict[Callable[[str], Any], str] = {
    int: "expected a whole number",
    float: "expected a number",
    parse_bool: "expected true or false (yes/no, on/off, 1/0)",
}


def _shown(name: str, value: Any) -> str:
    return "***" if is_secret(name) else repr(value)


def _type_ok(name: str, value: Any) -> bool:
    """Whether a value given in Python has the option's type (numbers only: a string
    is parsed, and any value is taken for a true/false option)."""
    if name == "default_timeout":
        return isinstance(value, int | dt.timedelta) and not isinstance(value, bool)
    parser = CACHE_OPTIONS.get(name) or CLIENT_OPTIONS.get(name)
    if parser is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if parser is float:
        return value is None or _is_number(value)
    return True


def coerce(name: str, value: Any) -> Any:
    """Convert a string option value to its type (other values pass unchanged), then
    check it lies in its range (:data:`CHECKS`).

    :raises OptionTypeError: a value given in Python has the wrong type.
    :raises ConfigurationError: the string does not parse, or the value is out of
        range; naming the option (and never showing a secret's value).
    """
    if isinstance(value, str):
        parser = CACHE_OPTIONS.get(name) or CLIENT_OPTIONS.get(name)
        if parser is not None:
            try:
                value = parser(value)
            except ValueError:
                raise ConfigurationError(
                    f"option {name!r}: cannot use {_shown(name, value)}: "
                    f"{_EXPECTED.get(parser, 'expected a string')}"
                ) from None
    elif not _type_ok(name, value):
        problem = CHECKS[name](value) if name in CHECKS else "a number"
        raise OptionTypeError(
            f"option {name!r} must be {problem}, got {type(value).__name__} {_shown(name, value)}"
        )
    check = CHECKS.get(name)
    problem = check(value) if check is not None else None
    if problem is not None:
        raise ConfigurationError(f"option {name!r} must be {problem}, got {_shown(name, value)}")
    return value


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split options into (cache options, client options), each converted and checked
    (see :func:`coerce`).

    :raises ConfigurationError: a value that does not convert or is out of range.
    """
    cache: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for name, value in options.items():
        target = cache if name in CACHE_OPTIONS else client
        target[name] = coerce(name, value)
    return cache, client


def closest(name: str, choices: Collection[str]) -> str | None:
    """The name in ``choices`` closest to a misspelled ``name``, or None if none is close."""
    matches = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.7)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Collection[str] = KNOWN_OPTIONS) -> str:
    """``"; did you mean 'key_prefix'?"`` for a misspelled ``name``, or ``""``."""
    match = closest(name, choices)
    return f"; did you mean {match!r}?" if match else ""


def with_client_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with :data:`DEFAULT_CLIENT_OPTIONS` filled in where unset."""
    return {**DEFAULT_CLIENT_OPTIONS, **options}
