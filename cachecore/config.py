"""How a backend is chosen: a URL, a mapping, the environment, or pyproject.toml.

Precedence for :func:`get_cache`: ``CACHECORE_URL`` (plus ``CACHECORE_<OPTION>``
variables), else ``[tool.cachecore]`` in ``./pyproject.toml``, else ``memory://``.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachecore import plugins
from cachecore.errors import ConfigurationError
from cachecore.options import CACHE_OPTIONS, CLIENT_OPTIONS, split_options
from cachecore.redis_base import BaseRedisCache
from cachecore.serializers import CompressedSerializer, SignedSerializer
from cachecore.types import Backend, Serializer

DEFAULT_URL = "memory://"
ENV_URL = "CACHECORE_URL"
ENV_PREFIX = "CACHECORE_"
# CACHECORE_* variables that configure something other than the cache.
ENV_NOT_OPTIONS = ("CACHECORE_URL", "CACHECORE_DISABLE_PLUGINS", "CACHECORE_TEST_")


@dataclass(frozen=True)
class ResolvedConfig:
    """The configuration :func:`get_cache` would use, and where it came from."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""


SECRET_QUERY_OPTIONS = frozenset({"password", "secret_key", "old_secret_keys", "ssl_password"})


def redact_url(url: str) -> str:
    """``url`` with its password and secret query options replaced by ``***``.

    Safe for logs, ``repr`` and error messages.
    """
    base, sep, query = url.partition("?")
    if sep:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{name}={'***' if name in SECRET_QUERY_OPTIONS else value}" for name, value in pairs
        )
    scheme, has_scheme, rest = base.partition("://")
    if not has_scheme and "@" in base:
        # Not a URL we can parse: hide anything that may be credentials.
        return "***@" + base.rpartition("@")[2] + (f"?{query}" if sep else "")
    if has_scheme and "@" in rest.partition("/")[0]:
        userinfo, _, hostpart = rest.partition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            rest = f"{user}:***@{hostpart}"
    return f"{scheme}{has_scheme}{rest}" + (f"?{query}" if sep else "")


def _scheme(url: str) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(
            f"cache URL must look like scheme://..., e.g. valkey://localhost:6379/0; got "
            f"{redact_url(url)!r}"
        )
    return scheme.lower()


def build_serializer(
    cache_options: Mapping[str, Any], reg: plugins.Registry | None = None
) -> Serializer:
    """The serializer that ``serializer``, ``compression*`` and ``secret_key`` options describe.

    ``serializer`` is a name (``pickle``, ``json``, ``msgpack``, a plugin's, or
    ``signed``, which signs ``signed_serializer``, default pickle) or a serializer object.
    A ``secret_key`` with any format signs it too.

    :raises ConfigurationError: an unknown name, or ``signed`` without ``secret_key``.
    """
    chosen = cache_options.get("serializer", "pickle")
    secret = cache_options.get("secret_key")
    if not isinstance(chosen, str):
        serializer: Serializer = chosen
        signed = secret is not None
    else:
        signed = chosen == "signed" or secret is not None
        name = cache_options.get("signed_serializer", "pickle") if chosen == "signed" else chosen
        serializer = plugins.find_serializer(name, reg).factory()
    compression = cache_options.get("compression")
    if compression and compression != "none":
        serializer = CompressedSerializer(
            serializer,
            compression,
            threshold=cache_options.get("compression_threshold", 1024),
            level=cache_options.get("compression_level"),
        )
    if signed:
        if not secret:
            raise ConfigurationError(
                "serializer 'signed' needs a secret_key (e.g. CACHECORE_SECRET_KEY)"
            )
        serializer = SignedSerializer(serializer, secret, cache_options.get("old_secret_keys", ()))
    return serializer


@dataclass(frozen=True)
class CachePlan:
    """What a URL and options ask for, checked, before any client is built: shared by
    :func:`from_url` and :func:`cachecore.aio.from_url`."""

    backend: Backend
    bare_url: str
    """The URL without its query string (the options are parsed out of it)."""
    cache_options: dict[str, Any]
    client_options: dict[str, Any]
    registry: plugins.Registry
    description: str
    """The URL as ``repr`` shows it: redacted."""


def plan_cache(url: str, options: Mapping[str, Any]) -> CachePlan:
    """Parse ``url`` and ``options`` as :func:`from_url` does.

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option.
    """
    scheme = _scheme(url)
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    cache_options, client_options = split_options({**query, **options})
    reg = plugins.registry()
    backend = plugins.find_backend(scheme, reg)
    bare_url = url.partition("?")[0]
    return CachePlan(backend, bare_url, cache_options, client_options, reg, redact_url(bare_url))


def from_url(url: str, **options: Any) -> BaseRedisCache:
    """Build a cache for ``url``; its scheme picks the backend.

    Options come from the URL's query string and from keyword arguments (which win):
    cache options (``default_timeout``, ``key_prefix``, ``serializer``, ``raise_errors``,
    ``max_value_size``, ``secret_key``, ``compression``...) and client options
    (``socket_timeout``, ``max_connections``, ``ssl_ca_certs``...)::

        cache = cachecore.from_url("valkey://localhost:6379/0?key_prefix=app:",
                                   default_timeout=600)

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option.
    """
    plan = plan_cache(url, options)
    scheme = _scheme(url)
    cache_options, reg, backend = plan.cache_options, plan.registry, plan.backend
    near_cache = bool(cache_options.get("near_cache") or "near_cache_size" in cache_options)
    if near_cache and (scheme == "memory" or "+" in scheme):
        raise ConfigurationError(
            f"near_cache needs a single Redis/Valkey/KeyDB server; {scheme}:// is not supported"
        )
    client = plugins.create_client(backend, plan.bare_url, plan.client_options, reg)
    if cache_options.get("circuit_breaker") or any(
        name.startswith("circuit_breaker_") for name in cache_options
    ):
        from cachecore.circuit_breaker import CircuitBreakerClient

        client = CircuitBreakerClient(
            client,
            threshold=cache_options.get("circuit_breaker_threshold", 5),
            reset_timeout=cache_options.get("circuit_breaker_reset", 5.0),
        )
    if near_cache:
        client = _near_cache_client(client, cache_options)
    cache_class = backend.cache_class or BaseRedisCache
    cache = cache_class(
        client,
        default_timeout=cache_options.get("default_timeout", 300),
        key_prefix=cache_options.get("key_prefix"),
        serializer=build_serializer(cache_options, reg),
        raise_errors=cache_options.get("raise_errors", False),
        max_value_size=cache_options.get("max_value_size"),
    )
    cache.description = plan.description
    return cache


def _near_cache_client(client: Any, cache_options: Mapping[str, Any]) -> Any:
    from cachecore.near_cache import DEFAULT_MAX_ENTRIES, NearCacheClient

    prefix = cache_options.get("key_prefix")
    return NearCacheClient(
        client,
        max_entries=cache_options.get("near_cache_size", DEFAULT_MAX_ENTRIES),
        prefix=prefix if isinstance(prefix, str) and prefix else None,
    )


def url_and_options(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and options a configuration mapping means (see :func:`from_config`).

    :raises ConfigurationError: neither ``url`` nor ``backend``, or both.
    """
    options = {str(k).lower(): v for k, v in config.items()}
    url = options.pop("url", None)
    backend_name = options.pop("backend", None)
    if url and backend_name:
        raise ConfigurationError("give either 'url' or 'backend', not both")
    if backend_name:
        backend = plugins.find_backend(str(backend_name))
        host = options.pop("host", "localhost" if backend.name != "memory" else "")
        port = options.pop("port", None)
        db = options.pop("db", None)
        netloc = f"{host}:{port}" if port is not None else str(host)
        url = f"{backend.schemes[0]}://{netloc}" + (f"/{db}" if db is not None else "")
    if not url:
        raise ConfigurationError(
            "cache configuration needs 'url' (e.g. 'valkey://localhost:6379/0') or 'backend'"
        )
    return str(url), options


def from_config(config: Mapping[str, Any]) -> BaseRedisCache:
    """Build a cache from a mapping: ``url`` (or ``backend`` plus optional ``host``,
    ``port``, ``db``), and any option :func:`from_url` takes::

        cachecore.from_config({"url": "redis://cache:6379/1", "key_prefix": "app:"})
        cachecore.from_config({"backend": "valkey", "host": "cache", "port": 6380})

    :raises ConfigurationError: neither ``url`` nor ``backend``, or both.
    """
    url, options = url_and_options(config)
    return from_url(url, **options)


def _env_options(environ: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_NOT_OPTIONS):
            continue
        option = name[len(ENV_PREFIX) :].lower()
        if option not in CACHE_OPTIONS and option not in CLIENT_OPTIONS:
            raise ConfigurationError(
                f"unknown setting {name}; cache options: "
                f"{', '.join('CACHECORE_' + o.upper() for o in CACHE_OPTIONS)}"
            )
        options[option] = value
    return options


def resolve_config(
    environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> ResolvedConfig:
    """Find the configuration :func:`get_cache` uses, without connecting.

    :raises ConfigurationError: a malformed ``pyproject.toml`` table or unknown variable.
    """
    environ = os.environ if environ is None else environ
    env_options = _env_options(environ)
    url = environ.get(ENV_URL)
    if url:
        return ResolvedConfig(url, env_options, f"environment variable {ENV_URL}")
    pyproject = (directory or Path.cwd()) / "pyproject.toml"
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("cachecore")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{pyproject}: {exc}") from exc
        if table is not None:
            if not isinstance(table, dict) or not ("url" in table or "backend" in table):
                raise ConfigurationError(
                    f"[tool.cachecore] in {pyproject} needs 'url' or 'backend'"
                )
            # CACHECORE_<OPTION> variables override the file, as the environment should.
            options = {**table, **env_options}
            return ResolvedConfig(
                str(options.pop("url", "")), options, f"[tool.cachecore] in {pyproject}"
            )
    return ResolvedConfig(DEFAULT_URL, env_options, "nothing configured: the embedded default")


def get_cache(**overrides: Any) -> BaseRedisCache:
    """The configured cache: ``CACHECORE_URL``, else ``[tool.cachecore]`` in the working
    directory's ``pyproject.toml``, else the embedded ``memory://`` default.

    Keyword arguments override configured options (``url`` or ``backend`` override the
    configured server; ``CACHECORE_<OPTION>`` variables apply whatever the source of the
    URL). Each call builds a new cache object
    (``memory://`` caches share data); keep one per application.
    """
    return from_config(configured(overrides))


def configured(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration mapping :func:`get_cache` builds from: what
    :func:`resolve_config` finds, with ``overrides`` on top."""
    resolved = resolve_config()
    config = dict(resolved.options)
    if resolved.url:
        config["url"] = resolved.url
    if "url" in overrides or "backend" in overrides:
        config.pop("url", None)
        config.pop("backend", None)
    return {**config, **overrides}
