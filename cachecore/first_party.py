"""The first-party backend plugins kept in the ``plugins/`` folder of cachecore's
repository: the schemes each declares, derived from one table, and a ``pip install``
command for each that works from where the user is."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from cachecore import topology


@dataclass(frozen=True)
class FirstPartyPlugin:
    """A backend distribution kept in the ``plugins/`` folder of cachecore's repository.

    :param distribution: its distribution name, e.g. ``"cachecore-valkey"``.
    :param server_schemes: its single-server URL schemes; the first is also the backend
        name. Each also exists with every suffix of ``topologies``.
    :param topologies: the deployments it supports beyond one server
        (:data:`cachecore.topology.CLUSTER`, :data:`cachecore.topology.SENTINEL`).
    :param other_schemes: schemes without cluster or Sentinel forms (``unix``).
    """

    distribution: str
    server_schemes: tuple[str, ...]
    topologies: tuple[str, ...] = ()
    other_schemes: tuple[str, ...] = ()

    @property
    def backend(self) -> str:
        """Its backend name."""
        return self.server_schemes[0]

    def schemes(self) -> frozenset[str]:
        """Every URL scheme the plugin declares."""
        deployed = {f"{s}+{kind}" for s in self.server_schemes for kind in self.topologies}
        return frozenset({*self.server_schemes, *self.other_schemes, *deployed})


FIRST_PARTY_PLUGINS = (
    FirstPartyPlugin(
        "cachecore-redis", ("redis", "rediss"), (topology.CLUSTER, topology.SENTINEL), ("unix",)
    ),
    FirstPartyPlugin(
        "cachecore-valkey", ("valkey", "valkeys"), (topology.CLUSTER, topology.SENTINEL)
    ),
    FirstPartyPlugin("cachecore-keydb", ("keydb", "keydbs"), (topology.CLUSTER,)),
)
"""The one table of first-party backends; the hints below are derived from it."""

FIRST_PARTY: dict[str, str] = {
    name: plugin.distribution
    for plugin in FIRST_PARTY_PLUGINS
    for name in sorted({plugin.backend, *plugin.schemes()})
}
"""Backend names and URL schemes of the first-party plugins, with their distribution."""


def _package_parent() -> Path:
    """The directory that holds the imported ``cachecore`` package: the repository's
    root when cachecore runs from a source checkout (an editable install)."""
    return Path(__file__).resolve().parent.parent


def install_hint(distribution: str, root: Path | None = None, cwd: Path | None = None) -> str:
    """A ``pip install`` command for a first-party plugin that works from here.

    When cachecore runs from a checkout (``root``, by default the directory above the
    ``cachecore`` package, holds ``plugins/<distribution>``), the command names that
    folder: relative to ``cwd`` (default: the working directory) when it lies below
    it, else absolute. Otherwise it is the plain distribution name, with a note that
    the plugins are installed from a checkout until they are published.
    """
    source = (root or _package_parent()) / "plugins" / distribution
    if (source / "pyproject.toml").is_file():
        here = (cwd or Path.cwd()).resolve()
        source = source.resolve()
        shown = (
            f"./{source.relative_to(here).as_posix()}"
            if source.is_relative_to(here)
            else str(source)
        )
        return f"pip install {shlex.quote(shown)}"
    return (
        f"pip install {distribution} (if that finds no such distribution: the plugins "
        "are not on a package index yet; from a checkout of the cachecore repository, "
        f"pip install ./plugins/{distribution})"
    )
