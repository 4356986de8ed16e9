"""How installed plugins become backends and serializers.

The plugin manager is built on first use by :func:`registry` (cached; never at import
time) from the built-in plugins and every entry point of the ``cachecore`` group.
Each plugin is checked on its own: one that fails to import, implements a hook
cachecore does not have, or whose describing hook raises is logged with its name,
distribution and version, remembered as a :class:`PluginFailure` and left out; the
others keep working. A backend name, URL scheme or serializer name that two plugins
claim is refused for both, naming them, and everything else keeps working. Set
``CACHECORE_DISABLE_PLUGINS`` to a comma-separated list of entry-point names (or ``*``)
to skip external plugins.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import pluggy

from cachecore import hookspecs
from cachecore.errors import (
    CachecoreError,
    ConfigurationError,
    PluginConflictError,
    UnknownBackendError,
    UnknownSerializerError,
)
from cachecore.first_party import FIRST_PARTY, install_hint
from cachecore.options import CACHE_OPTIONS, CLIENT_OPTIONS
from cachecore.types import Backend, SerializerSpec

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "FIRST_PARTY",
    "HOOK_NAMES",
    "PluginFailure",
    "Registry",
    "check_client_options",
    "create_client",
    "find_backend",
    "find_serializer",
    "index_plugins",
    "install_hint",
    "installed_backends",
    "is_installed",
    "new_plugin_manager",
    "registry",
    "reset",
]

log = logging.getLogger("cachecore")

BUILTIN_DISTRIBUTION = "cachecore"

HOOK_NAMES = tuple(sorted(name for name in vars(hookspecs) if name.startswith("cachecore_")))
"""Every hook a plugin may implement."""

_T = TypeVar("_T")


def _origin(distribution: str, version: str) -> str:
    if not distribution:
        return "registered in-process"
    return f"{distribution} {version}".strip()


@dataclass(frozen=True)
class PluginFailure:
    """A plugin left out: it could not be loaded, implements an unknown hook, a
    describing hook raised, or it claims a name another plugin claims too.

    :param name: the plugin's name (its entry-point name).
    :param distribution: the distribution that provides it (empty when the plugin was
        registered in-process).
    :param version: that distribution's version.
    :param error: what is wrong, in one line.
    """

    name: str
    distribution: str
    version: str
    error: str

    def __str__(self) -> str:
        origin = _origin(self.distribution, self.version)
        where = f"from {origin}" if self.distribution else f"({origin})"
        return f"plugin {self.name!r} {where} failed: {self.error}"


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
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)
    """(what, name) -> why it is refused, e.g. ``("URL scheme", "redis")``."""

    def provider(self, plugin_name: str) -> tuple[str, str]:
        """(distribution, version) of a registered plugin; ``("", "")`` for one
        registered in-process rather than from an entry point."""
        if plugin_name in _BUILTIN_NAMES:
            return BUILTIN_DISTRIBUTION, _version(BUILTIN_DISTRIBUTION)
        return self.provenance.get(plugin_name, ("", ""))

    def describe(self, plugin_name: str) -> str:
        """``plugin 'name' (distribution version)``, for messages."""
        return f"plugin {plugin_name!r} ({_origin(*self.provider(plugin_name))})"

    def fail(self, plugin_name: str, error: str) -> None:
        """Record (and log) that a registered plugin is left out, or part of it refused."""
        self.record(PluginFailure(plugin_name, *self.provider(plugin_name), error))

    def record(self, failure: PluginFailure) -> None:
        """Remember a failure for error messages and ``cachecore backends``, and log it."""
        self.failures.append(failure)
        log.warning("cachecore: %s", failure)


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


_BUILTIN_NAMES = ("cachecore.memory", "cachecore.serializers")


def _builtin_plugins() -> list[tuple[str, object]]:
    from cachecore import memory, serializers

    return list(zip(_BUILTIN_NAMES, (memory, serializers), strict=True))


def new_plugin_manager(load_entry_points: bool = True) -> tuple[pluggy.PluginManager, Registry]:
    """Build a fresh plugin manager with the built-in plugins (and, by default, the
    installed entry points).

    Plugins are checked and indexed by :func:`index_plugins`. Tests use this with
    ``load_entry_points=False`` and ``manager.register(...)``, then ``index_plugins``.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    for name, plugin in _builtin_plugins():
        manager.register(plugin, name=name)
    if load_entry_points:
        _load_entry_points(registry)
    return manager, registry


def _provenance(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = entry_point.dist
    if dist is None:
        return "unknown distribution", "unknown"
    return dist.metadata["Name"], dist.version


def _load_entry_points(registry: Registry) -> None:
    disabled = _disabled()
    # name -> distribution -> entry point; one distribution may be seen twice on sys.path.
    by_name: dict[str, dict[str, importlib.metadata.EntryPoint]] = {}
    for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
        if "*" in disabled or entry_point.name in disabled:
            log.debug(
                "cachecore: plugin %r disabled by CACHECORE_DISABLE_PLUGINS", entry_point.name
            )
            continue
        found = by_name.setdefault(entry_point.name, {})
        found.setdefault(_provenance(entry_point)[0], entry_point)
    for name, found in by_name.items():
        if len(found) > 1:
            _refuse_shared_entry_point(registry, name, found.values())
            continue
        entry_point = next(iter(found.values()))
        registry.provenance[name] = _provenance(entry_point)
        try:
            registry.manager.register(entry_point.load(), name=name)
        except Exception as exc:
            registry.fail(name, f"{type(exc).__name__}: {exc}")


def _refuse_shared_entry_point(
    registry: Registry, name: str, entry_points: Iterable[importlib.metadata.EntryPoint]
) -> None:
    # Which one would win depends on sys.path order, and CACHECORE_DISABLE_PLUGINS
    # cannot tell them apart: refuse both rather than pick one.
    origins = [_provenance(entry_point) for entry_point in entry_points]
    listed = _both(_origin(*origin) for origin in origins)
    error = f"entry point name {name!r} is used by {listed}; all are refused: uninstall all but one"
    for distribution, version in origins:
        registry.record(PluginFailure(name, distribution, version, error))


def _both(names: Iterable[str]) -> str:
    """``both a and b`` (sorted), or ``a, b and c``."""
    *rest, last = sorted(set(names))
    if not rest:
        return last
    listed = f"{', '.join(rest)} and {last}"
    return f"both {listed}" if len(rest) == 1 else listed


def _unknown_hook(name: str) -> str:
    close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
    if close:
        return f"unknown hook {name}; did you mean {close[0]}?"
    return f"unknown hook {name} (cachecore's hooks: {', '.join(HOOK_NAMES)})"


def _check_plugin(registry: Registry, name: str, plugin: object) -> None:
    """Unregister a plugin, recording why, unless its hooks all match cachecore's
    (pluggy itself refuses to register a hook whose arguments do not match)."""
    manager = registry.manager
    callers = manager.get_hookcallers(plugin) or []
    problems = [
        _unknown_hook(caller.name)
        for caller in callers
        if not caller.has_spec()
        and not all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin)
    ]
    if not callers:
        problems.append(
            "it implements no cachecore hook (mark the hook functions with "
            "@cachecore.hookimpl, and name the module or object that has them in the "
            "entry point)"
        )
    if problems:
        manager.unregister(name=name)
        registry.fail(name, "; ".join(problems))


def _implements(manager: pluggy.PluginManager, plugin: object, hook: str) -> bool:
    return any(caller.name == hook for caller in manager.get_hookcallers(plugin) or [])


@dataclass(frozen=True)
class _Claim(Generic[_T]):
    plugin: str
    label: str
    item: _T


def index_plugins(registry: Registry) -> Registry:
    """Check every registered plugin on its own, call the describing hooks and index
    the results.

    A plugin with an unknown hook (a misspelled name) is unregistered and recorded in
    ``registry.failures``, as is one whose describing hook raises or returns something
    other than records. A name claimed by several plugins is refused for all of them
    (recorded in ``registry.conflicts``; :func:`find_backend` and
    :func:`find_serializer` raise :class:`PluginConflictError` for it), except that
    cachecore's built-in names (``memory``, ``pickle``...) cannot be taken over.
    """
    manager = registry.manager
    for index in (registry.backends, registry.schemes, registry.serializers):
        index.clear()
    registry.serializer_providers.clear()
    registry.conflicts.clear()
    for name, plugin in manager.list_name_plugin():
        if plugin is not None:
            _check_plugin(registry, name, plugin)
    _index_backends(registry)
    _index_serializers(registry)
    return registry


def _index_backends(registry: Registry) -> None:
    manager = registry.manager
    claims: dict[tuple[str, str], list[_Claim[Backend]]] = {}
    for impl in manager.hook.cachecore_backends.get_hookimpls():
        backends = _call(registry, impl, "cachecore_backends", Backend)
        if backends and not _implements(manager, impl.plugin, "cachecore_create_client"):
            registry.fail(
                impl.plugin_name,
                "it declares backends but has no cachecore_create_client hook to build "
                "their clients",
            )
            continue
        dist, version = registry.provider(impl.plugin_name)
        for declared in backends:
            backend = replace(declared, distribution=dist, version=version, plugin=impl.plugin_name)
            label = f"backend {backend.name!r} of {registry.describe(impl.plugin_name)}"
            claim = _Claim(impl.plugin_name, label, backend)
            claims.setdefault(("backend name", backend.name), []).append(claim)
            for scheme in dict.fromkeys(backend.schemes):
                claims.setdefault(("URL scheme", scheme), []).append(claim)
    for (what, key), key_claims in claims.items():
        winner = _settle(registry, what, key, key_claims)
        if winner is not None:
            (registry.backends if what == "backend name" else registry.schemes)[key] = winner


def _index_serializers(registry: Registry) -> None:
    claims: dict[str, list[_Claim[SerializerSpec]]] = {}
    for impl in registry.manager.hook.cachecore_serializers.get_hookimpls():
        for spec in _call(registry, impl, "cachecore_serializers", SerializerSpec):
            claim = _Claim(impl.plugin_name, registry.describe(impl.plugin_name), spec)
            claims.setdefault(spec.name, []).append(claim)
    for name, name_claims in claims.items():
        winner = _settle(registry, "serializer", name, name_claims)
        if winner is not None:
            registry.serializers[name] = winner
            provider = next(claim.plugin for claim in name_claims if claim.item is winner)
            registry.serializer_providers[name] = registry.provider(provider)[0]


def _settle(registry: Registry, what: str, key: str, claims: list[_Claim[_T]]) -> _T | None:
    """The one claim on ``key``, or None when several plugins claim it (recorded)."""
    if len(claims) == 1:
        return claims[0].item
    builtin = [claim for claim in claims if claim.plugin in _BUILTIN_NAMES]
    if len(builtin) == 1:
        # cachecore's own names are reserved: no plugin may replace memory:// or pickle.
        for claim in claims:
            if claim is not builtin[0]:
                registry.fail(
                    claim.plugin,
                    f"{what} {key!r} is reserved by cachecore; its claim by {claim.label} "
                    "is ignored",
                )
        return builtin[0].item
    message = (
        f"{what} {key!r} is claimed by {_both(claim.label for claim in claims)}; it is "
        "refused until all but one are uninstalled or disabled (CACHECORE_DISABLE_PLUGINS)"
    )
    registry.conflicts[(what, key)] = message
    for plugin_name in dict.fromkeys(claim.plugin for claim in claims):
        registry.fail(plugin_name, message)
    return None


def _call(registry: Registry, impl: Any, hook: str, record: type[_T]) -> list[_T]:
    try:
        items = list(impl.function())
    except Exception as exc:
        registry.fail(impl.plugin_name, f"{hook}: {type(exc).__name__}: {exc}")
        return []
    wrong = [item for item in items if not isinstance(item, record)]
    if wrong:
        registry.fail(
            impl.plugin_name,
            f"{hook} returned a {type(wrong[0]).__name__}, not a cachecore.{record.__name__}",
        )
        return []
    return items


@functools.cache
def registry() -> Registry:
    """The process-wide registry of installed plugins, built on first use."""
    _, reg = new_plugin_manager()
    return index_plugins(reg)


def reset() -> None:
    """Forget the process-wide registry so the next use reloads plugins (for tests)."""
    registry.cache_clear()


def installed_backends(reg: Registry | None = None) -> list[Backend]:
    """Every installed backend that can be used by name or by one of its schemes,
    sorted by name."""
    reg = reg or registry()
    usable = {(b.plugin, b.name): b for b in [*reg.backends.values(), *reg.schemes.values()]}
    return sorted(usable.values(), key=lambda backend: (backend.name, backend.distribution))


def _installed_summary(reg: Registry) -> str:
    lines = [
        f"  {b.name} ({', '.join(s + '://' for s in b.schemes)}) from "
        f"{_origin(b.distribution, b.version)}"
        for b in installed_backends(reg)
    ]
    return "installed backends:\n" + "\n".join(lines)


def _closest(name: str, candidates: Collection[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return close[0] if close else None


def find_backend(name_or_scheme: str, reg: Registry | None = None) -> Backend:
    """The backend with this URL scheme or name (a scheme wins).

    :raises PluginConflictError: two plugins claim it; the message names both.
    :raises UnknownBackendError: none is installed; the message suggests the closest
        installed scheme or name, lists what is installed, says how to install a
        first-party backend, and mentions plugins that failed to load.
    """
    reg = reg or registry()
    for what, index in (("URL scheme", reg.schemes), ("backend name", reg.backends)):
        found = index.get(name_or_scheme)
        if found is not None:
            return found
        conflict = reg.conflicts.get((what, name_or_scheme))
        if conflict is not None:
            raise PluginConflictError(conflict)
    first_line = f"no installed backend handles {name_or_scheme!r}."
    distribution = FIRST_PARTY.get(name_or_scheme)
    close = _closest(name_or_scheme, [*reg.schemes, *reg.backends])
    if close is None and distribution is None:
        close = _closest(name_or_scheme, FIRST_PARTY)
        distribution = FIRST_PARTY.get(close or "")
    if close is not None:
        shown = f"{close}://" if close in reg.schemes or close in FIRST_PARTY else close
        first_line += f" Did you mean {shown}?"
    message = [first_line, _installed_summary(reg)]
    if distribution is not None and is_installed(distribution):
        message.append(
            f"{distribution} is installed but its plugin is not loaded: "
            "check CACHECORE_DISABLE_PLUGINS and any failure noted below"
        )
    elif distribution is not None:
        message.append(
            f"{close or name_or_scheme!r} comes with {distribution}: {install_hint(distribution)}"
        )
    broken = [f for f in reg.failures if distribution is None or distribution == f.distribution]
    message.extend(f"Note: {failure}" for failure in broken or reg.failures)
    raise UnknownBackendError("\n".join(message))


def _owner(backend: Backend, reg: Registry) -> str:
    if backend.plugin:
        return backend.plugin
    indexed = reg.backends.get(backend.name)
    return indexed.plugin if indexed is not None else ""


def create_client(
    backend: Backend, url: str, options: Mapping[str, Any], reg: Registry | None = None
) -> Any:
    """Ask the plugin that declared ``backend`` (and only that one) for a client.

    Options are checked for every plugin: against ``backend.client_options`` when the
    backend declares them (before the plugin is called), and, for a client with
    redis-py's connection pool, by building one connection object from the pool's
    settings (no socket is opened), so an option the client would only reject on its
    first command is reported now.

    :raises ConfigurationError: an option the backend does not take (naming it and
        suggesting the closest valid name), the plugin rejected the configuration
        (``TypeError``/``ValueError``), or it built no client.
    """
    return _create("cachecore_create_client", backend, url, options, reg)


def create_async_client(
    backend: Backend, url: str, options: Mapping[str, Any], reg: Registry | None = None
) -> Any:
    """Ask the plugin that declared ``backend`` (and only that one) for an asyncio
    client (its ``cachecore_create_async_client`` hook), with :func:`create_client`'s
    checks.

    :raises ConfigurationError: the plugin does not implement the hook (naming the
        plugin), and what :func:`create_client` raises.
    """
    return _create("cachecore_create_async_client", backend, url, options, reg)


def _create(
    hook: str, backend: Backend, url: str, options: Mapping[str, Any], reg: Registry | None
) -> Any:
    reg = reg or registry()
    owner = _owner(backend, reg)
    if reg.manager.get_plugin(owner) is None:
        raise ConfigurationError(
            f"backend {backend.name!r} was not declared by a registered plugin"
        )
    if backend.client_options is not None:
        unknown = sorted(set(options) - set(backend.client_options))
        if unknown:
            raise ConfigurationError(_unknown_options(backend, unknown, backend.client_options))
    if not any(
        impl.plugin_name == owner for impl in getattr(reg.manager.hook, hook).get_hookimpls()
    ):
        if hook == "cachecore_create_async_client":
            raise ConfigurationError(
                f"backend {backend.name!r}: {reg.describe(owner)} has no asyncio support (it "
                "does not implement cachecore_create_async_client); use the blocking cache "
                "(cachecore.from_url) or a version of the plugin that supports asyncio"
            )
        raise ConfigurationError(f"backend {backend.name!r}: {reg.describe(owner)} has no {hook}")
    others = [plugin for name, plugin in reg.manager.list_name_plugin() if name != owner]
    caller = reg.manager.subset_hook_caller(
        hook, remove_plugins=[p for p in others if p is not None]
    )
    try:
        client = caller(backend=backend, url=url, options=dict(options))
    except CachecoreError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(_rejected(backend, options, exc, reg)) from exc
    if client is None:
        raise ConfigurationError(
            f"backend {backend.name!r}: {reg.describe(owner)} built no client for it "
            f"(its {hook} returned None for {url.partition('://')[0]}://)"
        )
    check_client_options(backend, client, options, reg)
    return client


def check_client_options(
    backend: Backend, client: Any, options: Mapping[str, Any], reg: Registry | None = None
) -> None:
    """Build one connection object (no socket) from a redis-py-style client's pool
    settings, so options the client accepted but cannot use are reported now rather
    than as a ``TypeError`` from the first command. Clients without
    ``connection_pool.connection_class`` / ``connection_kwargs`` are not checked.

    :raises ConfigurationError: the connection class rejects the settings, naming the
        backend and the option.
    """
    pool = getattr(client, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not callable(connection_class) or not isinstance(kwargs, Mapping):
        return
    try:
        connection_class(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(_rejected(backend, options, exc, reg)) from exc


def _rejected(
    backend: Backend, options: Mapping[str, Any], exc: Exception, reg: Registry | None
) -> str:
    named = [name for name in options if f"'{name}'" in str(exc)]
    if named and isinstance(exc, TypeError):
        return _unknown_options(backend, named, CLIENT_OPTIONS)
    who = f"backend {backend.name!r} ({_origin(backend.distribution, backend.version)})"
    return f"{who} rejected the configuration: {exc}"


def _unknown_options(backend: Backend, unknown: Iterable[str], valid: Collection[str]) -> str:
    """``backend 'x' (dist version) does not take the option(s) a (did you mean b?)``."""
    parts = []
    for name in unknown:
        close = _closest(name, [*valid, *CACHE_OPTIONS])
        parts.append(f"{name!r} (did you mean {close}?)" if close else repr(name))
    who = f"backend {backend.name!r} ({_origin(backend.distribution, backend.version)})"
    message = f"{who} does not take the option(s) {', '.join(parts)}"
    if backend.client_options is not None:
        message += f"; it takes: {', '.join(sorted(backend.client_options)) or 'no client options'}"
    return message


def find_serializer(name: str, reg: Registry | None = None) -> SerializerSpec:
    """The serializer with this name.

    :raises PluginConflictError: two plugins provide it; the message names both.
    :raises UnknownSerializerError: listing the installed names.
    """
    reg = reg or registry()
    spec = reg.serializers.get(name)
    if spec is not None:
        return spec
    conflict = reg.conflicts.get(("serializer", name))
    if conflict is not None:
        raise PluginConflictError(conflict)
    valid = ", ".join(sorted([*reg.serializers, "signed"]))
    close = _closest(name, [*reg.serializers, "signed"])
    hint = f" (did you mean {close}?)" if close else ""
    raise UnknownSerializerError(f"unknown serializer {name!r}{hint}; installed: {valid}")
