"""How a backend is chosen: a URL, a mapping, the environment, or pyproject.toml.

Precedence for :func:`get_cache`: ``CACHECORE_URL``, else ``[tool.cachecore]`` in the
nearest ``pyproject.toml`` (see :func:`find_pyproject`), else ``memory://``;
``CACHECORE_<OPTION>`` variables apply on top of whichever of these is used.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from cachecore import observability, plugins
from cachecore.errors import ConfigurationError, OptionTypeError
from cachecore.options import (
    CACHE_OPTIONS,
    CLIENT_OPTIONS,
    KNOWN_OPTIONS,
    closest,
    parse_bool,
    split_options,
)
from cachecore.redaction import redact_url
from cachecore.redis_base import BaseRedisCache
from cachecore.serializers import CompressedSerializer, SignedSerializer
from cachecore.types import Backend, Serializer
from cachecore.urls import split_query

if TYPE_CHECKING:
    from cachecore.aio import AsyncBaseRedisCache

log = logging.getLogger("cachecore")
_P = ParamSpec("_P")
_T = TypeVar("_T")
_C = TypeVar("_C", bound="BaseRedisCache | AsyncBaseRedisCache")

DEFAULT_URL = "memory://"
ENV_URL = "CACHECORE_URL"
ENV_REQUIRE_CONFIG = "CACHECORE_REQUIRE_CONFIG"
"""Set to a true value (``1``, ``true``...) in a deployment: :func:`get_cache` then
raises instead of falling back to ``memory://`` when nothing is configured."""
ENV_PREFIX = "CACHECORE_"
# CACHECORE_* variables that configure something other than the cache's options.
ENV_NOT_OPTIONS = (
    "CACHECORE_URL",
    "CACHECORE_DISABLE_PLUGINS",
    ENV_REQUIRE_CONFIG,
    "CACHECORE_TEST_",
)
NOTHING_CONFIGURED = "nothing configured: the embedded default"
PROJECT_ROOT_MARKERS = (".git", ".hg")
"""A directory holding one of these is a project root: the search for ``pyproject.toml``
stops there."""


@dataclass(frozen=True)
class ResolvedConfig:
    """The configuration :func:`get_cache` would use, and where it came from."""

    url: str
    """The URL; empty when the source gives ``backend`` (in ``options``) instead."""
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    """Where ``url`` and ``options`` came from, for people: ``"environment variable
    CACHECORE_URL + CACHECORE_KEY_PREFIX"``, ``"[tool.cachecore] in /app/pyproject.toml"``,
    or ``"nothing configured: ..."`` (saying where cachecore looked)."""
    variables: tuple[str, ...] = ()
    """The ``CACHECORE_<OPTION>`` variables among the options (they override the file)."""
    is_default: bool = False
    """Nothing configured a URL: ``url`` is the ``memory://`` default."""


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
    A ``secret_key`` with any format signs it too (``signed_ints`` decides whether ints
    are signed). Compression reads at most ``max_value_size`` decompressed bytes.

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
            max_size=cache_options.get("max_value_size"),
        )
    if signed:
        if not secret:
            raise ConfigurationError(
                "serializer 'signed' needs a secret_key (e.g. CACHECORE_SECRET_KEY)"
            )
        serializer = SignedSerializer(
            serializer,
            secret,
            cache_options.get("old_secret_keys", ()),
            signed_ints=cache_options.get("signed_ints", True),
        )
    return serializer


@dataclass(frozen=True)
class CachePlan:
    """What a URL and its options ask for, checked, before any client is built: shared
    by :func:`from_url` and :func:`cachecore.aio.from_url`."""

    scheme: str
    backend: Backend
    bare_url: str
    """The URL without its query string (the options are parsed out of it)."""
    cache_options: dict[str, Any]
    client_options: dict[str, Any]
    registry: plugins.Registry
    serializer: Serializer

    @property
    def description(self) -> str:
        """The URL as ``repr`` shows it: password hidden."""
        return redact_url(self.bare_url)

    def cache_kwargs(self) -> dict[str, Any]:
        """The cache constructor's keyword arguments the options ask for."""
        options = self.cache_options
        kwargs: dict[str, Any] = {
            "default_timeout": options.get("default_timeout", 300),
            "key_prefix": options.get("key_prefix"),
            "serializer": self.serializer,
            "raise_errors": options.get("raise_errors", False),
            "max_value_size": options.get("max_value_size"),
        }
        if "ignore_delete_many_errors" in options:
            kwargs["ignore_delete_many_errors"] = options["ignore_delete_many_errors"]
        return kwargs

    def breaker_options(self) -> dict[str, Any] | None:
        """``threshold`` and ``reset_timeout`` of the circuit breaker asked for, or None."""
        options = self.cache_options
        if not options.get("circuit_breaker") and not any(
            name.startswith("circuit_breaker_") for name in options
        ):
            return None
        return {
            "threshold": options.get("circuit_breaker_threshold", 5),
            "reset_timeout": options.get("circuit_breaker_reset", 5.0),
        }


def plan_cache(url: str, options: Mapping[str, Any]) -> CachePlan:
    """Parse and check ``url`` and ``options`` as :func:`from_url` does, and build the
    serializer (before any client: one that cannot be built leaves no client behind).

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL or option.
    """
    scheme = _scheme(url)
    bare_url, query = split_query(url)
    cache_options, client_options = split_options({**query, **options})
    reg = plugins.registry()
    backend = plugins.find_backend(scheme, reg)
    serializer = configured_object(build_serializer, cache_options, reg)
    return CachePlan(scheme, backend, bare_url, cache_options, client_options, reg, serializer)


def from_url(url: str, **options: Any) -> BaseRedisCache:
    """Build a cache for ``url``; its scheme picks the backend.

    Options come from the URL's query string and from keyword arguments (which win):
    cache options (``default_timeout``, ``key_prefix``, ``serializer``, ``raise_errors``,
    ``max_value_size``, ``secret_key``, ``compression``...) and client options
    (``socket_timeout``, ``max_connections``, ``ssl_ca_certs``...)::

        cache = cachecore.from_url("valkey://localhost:6379/0?key_prefix=app:",
                                   default_timeout=600)

    :raises UnknownBackendError: no installed backend handles the scheme.
    :raises ConfigurationError: a malformed URL (bad port, a database path that is not
        one whole number >= 0...), an unknown option of a first-party backend, or an
        option out of its range; never a bare ``ValueError``, and never showing a secret.
    """
    plan = plan_cache(url, options)
    cache_options = plan.cache_options
    near_cache = wants_near_cache(plan.scheme, cache_options)
    client = plugins.create_client(plan.backend, plan.bare_url, plan.client_options, plan.registry)
    breaker = plan.breaker_options()
    if breaker is not None:
        from cachecore.circuit_breaker import CircuitBreakerClient

        client = CircuitBreakerClient(client, **breaker)
    if near_cache:
        from cachecore.near_cache import NearCacheClient

        client = configured_object(NearCacheClient, client, **near_cache_kwargs(cache_options))
    cache_class = plan.backend.cache_class or BaseRedisCache
    cache = configured_object(cache_class, client, **plan.cache_kwargs())
    cache.description = plan.description
    observability.configure(cache, cache_options, plan.registry)
    return cache


def configured_object(build: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``build(*args, **kwargs)`` (a serializer, a wrapper, a cache of either kind), its
    ``TypeError`` / ``ValueError`` (a value that passed the option checks but not the
    constructor's) reported as an :class:`OptionTypeError` / :class:`ConfigurationError`."""
    try:
        return build(*args, **kwargs)
    except ConfigurationError:
        raise
    except TypeError as exc:
        raise OptionTypeError(f"cannot build the cache: {exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"cannot build the cache: {exc}") from exc


def wants_near_cache(scheme: str, cache_options: Mapping[str, Any]) -> bool:
    """Whether the options ask for a near cache (``near_cache`` or ``near_cache_size``).

    :raises ConfigurationError: they do, on a scheme other than a single server's.
    """
    wanted = bool(cache_options.get("near_cache") or "near_cache_size" in cache_options)
    if wanted and (scheme == "memory" or "+" in scheme):
        raise ConfigurationError(
            f"near_cache needs a single Redis/Valkey/KeyDB server; {scheme}:// is not supported"
        )
    return wanted


def near_cache_kwargs(cache_options: Mapping[str, Any]) -> dict[str, Any]:
    """The near cache's size and tracked prefix (the cache's key prefix) from the options."""
    from cachecore.near_cache import DEFAULT_MAX_ENTRIES

    prefix = cache_options.get("key_prefix")
    return {
        "max_entries": cache_options.get("near_cache_size", DEFAULT_MAX_ENTRIES),
        "prefix": prefix if isinstance(prefix, str) and prefix else None,
    }


def from_config(config: Mapping[str, Any]) -> BaseRedisCache:
    """Build a cache from a mapping: ``url`` (or ``backend`` plus optional ``host``,
    ``port``, ``db``), and any option :func:`from_url` takes::

        cachecore.from_config({"url": "redis://cache:6379/1", "key_prefix": "app:"})
        cachecore.from_config({"backend": "valkey", "host": "cache", "port": 6380})

    :raises ConfigurationError: neither ``url`` nor ``backend``, or both; and what
        :func:`from_url` raises.
    """
    url, options = url_and_options(config)
    return from_url(url, **options)


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
        if ":" in str(host) and not str(host).startswith("["):
            host = f"[{host}]"  # an IPv6 address
        netloc = f"{host}:{port}" if port is not None else str(host)
        url = f"{backend.schemes[0]}://{netloc}" + (f"/{db}" if db is not None else "")
    if not url:
        raise ConfigurationError(
            "cache configuration needs 'url' (e.g. 'valkey://localhost:6379/0') or 'backend'"
        )
    return str(url), options


def _env_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``CACHECORE_<OPTION>`` variables of ``environ``, by option name.

    :raises ConfigurationError: an unknown ``CACHECORE_*`` variable, with the closest
        valid name and the list of valid ones.
    """
    options: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_NOT_OPTIONS):
            continue
        option = name[len(ENV_PREFIX) :].lower()
        if option not in KNOWN_OPTIONS:
            match = closest(option, KNOWN_OPTIONS)
            hint = f"; did you mean {ENV_PREFIX}{match.upper()}?" if match else ""
            raise ConfigurationError(
                f"unknown setting {name}{hint}\n"
                f"settings: {ENV_URL}, {ENV_REQUIRE_CONFIG}, CACHECORE_DISABLE_PLUGINS, and "
                f"{ENV_PREFIX}<OPTION> for each option;\n"
                f"cache options: {_env_names(CACHE_OPTIONS)};\n"
                f"client options: {_env_names(CLIENT_OPTIONS)}"
            )
        options[option] = value
    return options


def _env_names(options: Mapping[str, Any]) -> str:
    return ", ".join(ENV_PREFIX + name.upper() for name in options)


def find_pyproject(start: Path | None = None) -> tuple[Path | None, str]:
    """The ``pyproject.toml`` that configures the project ``start`` (default: the
    working directory) belongs to, as black finds its own: look in ``start``, then in
    each parent, and stop at the first directory that holds a ``pyproject.toml`` (the
    file found), or a ``.git`` or ``.hg`` (a repository root without one), or at the
    filesystem root.

    :returns: (the file or None, where cachecore looked, for messages).
    """
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate, str(candidate)
        if any((directory / marker).exists() for marker in PROJECT_ROOT_MARKERS):
            return None, f"{start} or its parents up to the repository root {directory}"
    return None, f"{start} or any parent directory"


def _pyproject_table(pyproject: Path) -> dict[str, Any] | None:
    try:
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("cachecore")
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{pyproject}: {exc}") from exc
    if table is None:
        return None
    if not isinstance(table, dict) or not ("url" in table or "backend" in table):
        raise ConfigurationError(
            f"[tool.cachecore] in {pyproject} needs 'url' (e.g. url = "
            f"\"valkey://localhost:6379/0\") or 'backend'"
        )
    return {str(name).lower(): value for name, value in table.items()}


def _with_variables(source: str, variables: tuple[str, ...]) -> str:
    return " + ".join((source, *variables))


def _required(environ: Mapping[str, str]) -> bool:
    raw = environ.get(ENV_REQUIRE_CONFIG, "").strip()
    try:
        return bool(raw) and parse_bool(raw)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_REQUIRE_CONFIG} must be true or false (1/0, yes/no), got {raw!r}"
        ) from None


def resolve_config(
    environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> ResolvedConfig:
    """Find the configuration :func:`get_cache` uses, without connecting.

    :param environ: the environment to read (default ``os.environ``).
    :param directory: where to start looking for ``pyproject.toml`` (default: the
        working directory; see :func:`find_pyproject`).
    :raises ConfigurationError: a malformed ``pyproject.toml`` or ``[tool.cachecore]``
        table, an unknown ``CACHECORE_*`` variable, or nothing configured while
        ``CACHECORE_REQUIRE_CONFIG`` is set.
    """
    environ = os.environ if environ is None else environ
    required = _required(environ)
    env_options = _env_options(environ)
    variables = tuple(ENV_PREFIX + name.upper() for name in env_options)
    url = environ.get(ENV_URL)
    if url:
        source = _with_variables(f"environment variable {ENV_URL}", variables)
        return ResolvedConfig(url, env_options, source, variables)
    pyproject, looked = find_pyproject(directory)
    table = _pyproject_table(pyproject) if pyproject is not None else None
    if pyproject is not None and table is not None:
        # CACHECORE_<OPTION> variables override the file, as the environment should.
        options = {**table, **env_options}
        source = _with_variables(f"[tool.cachecore] in {pyproject}", variables)
        return ResolvedConfig(str(options.pop("url", "")), options, source, variables)
    missing = (
        f"no [tool.cachecore] in {pyproject}"
        if pyproject is not None
        else f"no pyproject.toml in {looked}"
    )
    source = f"{NOTHING_CONFIGURED}; no {ENV_URL}, {missing}"
    if required:
        raise ConfigurationError(
            f"{source}; {ENV_REQUIRE_CONFIG} forbids falling back to {DEFAULT_URL}: "
            f"set {ENV_URL} or add [tool.cachecore] to pyproject.toml"
        )
    return ResolvedConfig(
        DEFAULT_URL, env_options, _with_variables(source, variables), variables, is_default=True
    )


def get_cache(*, default: str | None = DEFAULT_URL, **overrides: Any) -> BaseRedisCache:
    """The configured cache: ``CACHECORE_URL``, else ``[tool.cachecore]`` in the nearest
    ``pyproject.toml`` (see :func:`find_pyproject`), else ``default``.

    Keyword arguments override configured options (``url`` or ``backend`` override the
    configured server; ``CACHECORE_<OPTION>`` variables apply whatever the source of the
    URL). Logs one INFO line on the ``cachecore`` logger naming the URL (password
    hidden) and where it came from. Each call builds a new cache object (``memory://``
    caches share data); keep one per application.

    :param default: the URL used when nothing is configured; None makes that an error,
        as ``CACHECORE_REQUIRE_CONFIG=1`` does whatever ``default`` says.
    :raises ConfigurationError: nothing configured while required, or a bad
        configuration; the message names its source (variable or file).
    """
    return configured_cache(from_config, default, overrides)


def configured_cache(
    build: Callable[[Mapping[str, Any]], _C], default: str | None, overrides: Mapping[str, Any]
) -> _C:
    """What :func:`get_cache` does, building the cache with ``build`` (a
    :func:`from_config`): shared with :func:`cachecore.aio.get_cache`."""
    resolved = resolve_config()
    config = dict(resolved.options)
    source = resolved.source
    if "url" in overrides or "backend" in overrides:
        config.pop("url", None)
        config.pop("backend", None)
        source = " + ".join(("get_cache() arguments", *resolved.variables))
    else:
        if resolved.is_default:
            if default is None:
                raise ConfigurationError(
                    f"{resolved.source}; get_cache(default=None) forbids a fallback: set "
                    f"{ENV_URL} or add [tool.cachecore] to pyproject.toml"
                )
            config["url"] = default
            if default != DEFAULT_URL:
                source = source.replace(
                    NOTHING_CONFIGURED, "nothing configured: get_cache(default=...)", 1
                )
        elif resolved.url:
            config["url"] = resolved.url
        if overrides:
            source += " + get_cache() arguments"
    try:
        cache = build({**config, **overrides})
    except ConfigurationError as exc:
        raise type(exc)(f"configuration from {source}: {exc}") from exc
    log.info("cachecore: using %s (%s)", cache.description, source)
    return cache
