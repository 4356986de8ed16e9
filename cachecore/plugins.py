"""How installed plugins become backends and serializers.

The plugin manager is built on first use by :func:`plugin_manager` (cached; never at
import time) from the built-in plugins and every entry point of the ``cachecore``
group. Each entry point loads on its own: a broken one is logged with its name and
version and remembered, the others still work. Set ``CACHECORE_DISABLE_PLUGINS`` to a
comma-separated list of entry-point names (or ``*``) to skip external plugins.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from cachecore import hookspecs
from cachecore.errors import (
    ConfigurationError,
    PluginConflictError,
    UnknownBackendError,
    UnknownSerializerError,
)
from cachecore.types import Backend, SerializerSpec

log = logging.getLogger("cachecore")

FIRST_PARTY = {
    "redis": "cachecore-redis",
    "rediss": "cachecore-redis",
    "unix": "cachecore-redis",
    "redis+cluster": "cachecore-redis",
    "redis+sentinel": "cachecore-redis",
    "valkey": "cachecore-valkey",
    "valkeys": "cachecore-valkey",
    "valkey+cluster": "cachecore-valkey",
    "valkey+sentinel": "cachecore-valkey",
    "keydb": "cachecore-keydb",
    "keydbs": "cachecore-keydb",
    "keydb+cluster": "cachecore-keydb",
}
"""Backend names and URL schemes of the first-party plugins, with their distribution."""

BUILTIN_DISTRIBUTION = "cachecore"


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be loaded or whose hook raised."""

    name: str
    distribution: str
    version: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} from {self.distribution} {self.version} failed: {self.error}"


@dataclass
class Registry:
    """What the installed plugins provide, indexed by name and scheme."""

    manager: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    schemes: dict[str, Backend] = field(default_factory=dict)
    serializers: dict[str, SerializerSpec] = field(default_factory=dict)
    serializer_providers: dict[str, str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    provenance: dict[str, tuple[str, str]] = field(default_factory=dict)

    def provider(self, plugin_name: str) -> tuple[str, str]:
        """(distribution, version) of a registered plugin."""
        return self.provenance.get(plugin_name, (BUILTIN_DISTRIBUTION, _version("cachecore")))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def is_installed(distribution: str) -> bool:
    """Whether a distribution of that name is installed (its plugin may still be unloaded)."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _disabled() -> set[str]:
    raw = os.environ.get("CACHECORE_DISABLE_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _builtin_plugins() -> list[tuple[str, object]]:
    from cachecore import memory, serializers

    return [("cachecore.memory", memory), ("cachecore.serializers", serializers)]


def new_plugin_manager(load_entry_points: bool = True) -> tuple[pluggy.PluginManager, Registry]:
    """Build a fresh plugin manager with the built-in plugins (and, by default, the
    installed entry points) and index what they provide.

    Tests use this with ``load_entry_points=False`` and ``manager.register(...)``,
    then :func:`index_plugins` to index the result.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    for name, plugin in _builtin_plugins():
        manager.register(plugin, name=name)
    if load_entry_points:
        _load_entry_points(registry)
    manager.check_pending()
    return manager, registry


def _load_entry_points(registry: Registry) -> None:
    disabled = _disabled()
    for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else "unknown distribution"
        version = dist.version if dist is not None else "unknown"
        if "*" in disabled or entry_point.name in disabled:
            log.debug(
                "cachecore: plugin %r disabled by CACHECORE_DISABLE_PLUGINS", entry_point.name
            )
            continue
        if registry.manager.has_plugin(entry_point.name):
            seen = registry.provider(entry_point.name)[0]
            if seen != dist_name:
                failure = PluginFailure(
                    entry_point.name,
                    dist_name,
                    version,
                    f"entry point name {entry_point.name!r} is already used by {seen}",
                )
                registry.failures.append(failure)
                log.warning("cachecore: %s", failure)
            continue  # otherwise the same distribution seen twice on sys.path
        try:
            plugin = entry_point.load()
            registry.manager.register(plugin, name=entry_point.name)
        except Exception as exc:
            failure = PluginFailure(
                entry_point.name, dist_name, version, f"{type(exc).__name__}: {exc}"
            )
            registry.failures.append(failure)
            log.warning("cachecore: %s", failure)
            continue
        registry.provenance[entry_point.name] = (dist_name, version)


def index_plugins(registry: Registry) -> Registry:
    """Call the describing hooks of every registered plugin and index the results.

    :raises PluginConflictError: two plugins claim one backend name, scheme or
        serializer name; the message names both providers.
    """
    manager = registry.manager
    registry.backends.clear()
    registry.schemes.clear()
    registry.serializers.clear()
    for impl in manager.hook.cachecore_backends.get_hookimpls():
        dist, version = registry.provider(impl.plugin_name)
        for backend in _call(registry, impl, "cachecore_backends"):
            described = replace(backend, distribution=dist, version=version)
            _claim(registry.backends, described.name, described, "backend name")
            for scheme in described.schemes:
                _claim(registry.schemes, scheme, described, "URL scheme")
    for impl in manager.hook.cachecore_serializers.get_hookimpls():
        dist, _ = registry.provider(impl.plugin_name)
        for spec in _call(registry, impl, "cachecore_serializers"):
            if spec.name in registry.serializers:
                raise PluginConflictError(
                    f"serializer {spec.name!r} is provided by both "
                    f"{registry.serializer_providers[spec.name]} and {dist}"
                )
            registry.serializers[spec.name] = spec
            registry.serializer_providers[spec.name] = dist
    return registry


def _call(registry: Registry, impl: Any, hook: str) -> list[Any]:
    try:
        return list(impl.function())
    except Exception as exc:
        dist, version = registry.provider(impl.plugin_name)
        failure = PluginFailure(
            impl.plugin_name, dist, version, f"{hook}: {type(exc).__name__}: {exc}"
        )
        registry.failures.append(failure)
        log.warning("cachecore: %s", failure)
        return []


def _claim(index: dict[str, Backend], key: str, backend: Backend, what: str) -> None:
    other = index.get(key)
    if other is not None:
        raise PluginConflictError(
            f"{what} {key!r} is claimed by both backend {other.name!r} "
            f"({other.distribution} {other.version}) and backend {backend.name!r} "
            f"({backend.distribution} {backend.version}); uninstall one of them"
        )
    index[key] = backend


@functools.cache
def registry() -> Registry:
    """The process-wide registry of installed plugins, built on first use."""
    _, reg = new_plugin_manager()
    return index_plugins(reg)


def reset() -> None:
    """Forget the process-wide registry so the next use reloads plugins (for tests)."""
    registry.cache_clear()


def installed_backends(reg: Registry | None = None) -> list[Backend]:
    """Every installed backend, sorted by name."""
    reg = reg or registry()
    return sorted(reg.backends.values(), key=lambda backend: backend.name)


def _installed_summary(reg: Registry) -> str:
    lines = [
        f"  {b.name} ({', '.join(s + '://' for s in b.schemes)}) from {b.distribution} {b.version}"
        for b in installed_backends(reg)
    ]
    return "installed backends:\n" + "\n".join(lines)


def find_backend(name_or_scheme: str, reg: Registry | None = None) -> Backend:
    """The backend with this name or URL scheme.

    :raises UnknownBackendError: none is installed; the message lists what is, names
        the distribution to install for a first-party backend, and mentions plugins
        that failed to load.
    """
    reg = reg or registry()
    found = reg.schemes.get(name_or_scheme) or reg.backends.get(name_or_scheme)
    if found is not None:
        return found
    message = [f"no installed backend handles {name_or_scheme!r}.", _installed_summary(reg)]
    distribution = FIRST_PARTY.get(name_or_scheme)
    if distribution is not None and is_installed(distribution):
        message.append(
            f"{distribution} is installed but its plugin is not loaded: "
            "check CACHECORE_DISABLE_PLUGINS and any failure noted below"
        )
    elif distribution is not None:
        message.append(f"To use {name_or_scheme!r}: pip install {distribution}")
    broken = [f for f in reg.failures if distribution is None or distribution == f.distribution]
    for failure in broken or reg.failures:
        message.append(f"Note: {failure}")
    raise UnknownBackendError("\n".join(message))


def create_client(
    backend: Backend, url: str, options: Mapping[str, Any], reg: Registry | None = None
) -> Any:
    """Ask the plugins for a client of ``backend``.

    :raises ConfigurationError: no plugin built one, or the client rejected an option.
    """
    reg = reg or registry()
    try:
        client = reg.manager.hook.cachecore_create_client(
            backend=backend, url=url, options=dict(options)
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            f"backend {backend.name!r} rejected the configuration: {exc}"
        ) from exc
    if client is None:
        raise ConfigurationError(
            f"backend {backend.name!r} ({backend.distribution}) is listed but no plugin built "
            "a client for it"
        )
    return client


def find_serializer(name: str, reg: Registry | None = None) -> SerializerSpec:
    """The serializer with this name.

    :raises UnknownSerializerError: listing the installed names.
    """
    reg = reg or registry()
    try:
        return reg.serializers[name]
    except KeyError:
        valid = ", ".join(sorted([*reg.serializers, "signed"]))
        raise UnknownSerializerError(f"unknown serializer {name!r}; installed: {valid}") from None
