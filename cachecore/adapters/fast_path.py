"""When the adapters may skip a client's ``execute_command``, and what they need to.

The fast path (:class:`~cachecore.adapters.blocking.PooledTransport` and its asyncio
twin :class:`~cachecore.adapters.aio.AsyncPooledTransport`) writes commands onto a
connection of the client's own pool and reads the bare replies. It relies on a few
internals of redis-py and valkey-py (the pool's ``get_connection``/``release``, a
connection's ``send_packed_command``/``read_response``/``retry``), so it serves only
plain clients of the library versions it was tested with
(:attr:`~cachecore.adapters.libraries.ClientLibrary.fast_path_versions`); every other
client goes through its public ``execute_command``. The rules are here, once, for both
adapters.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from cachecore.adapters.libraries import ClientLibrary
from cachecore.transport import Command

Packer = Callable[[Command], bytes]


@functools.cache
def c_packer() -> Packer | None:
    """hiredis' or libvalkey's ``pack_command`` (either packs str as UTF-8), or None
    when neither is installed."""
    for name in ("hiredis", "libvalkey"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        pack: Packer | None = getattr(module, "pack_command", None)
        if pack is not None:
            return pack
    return None


def wants_command_name(pool: Any) -> bool:
    """Whether ``pool.get_connection`` requires a command name: valkey-py's (and
    redis-py's before 5.3) does; redis-py 5.3+ takes none and warns about one."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def encodes_utf8_strictly(pool: Any) -> bool:
    """Whether ``pool``'s connections encode str as strict UTF-8, as the C packer does
    (a client told to use another encoding keeps its own packer: the keys must be the
    same bytes either way)."""
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    try:
        encoding = codecs.lookup(kwargs.get("encoding", "utf-8")).name
    except LookupError:
        return False
    return encoding == "utf-8" and kwargs.get("encoding_errors", "strict") == "strict"


def metrics_switch(library: ClientLibrary) -> Callable[[], bool] | None:
    """redis-py 8's "are OpenTelemetry metrics on" check (blocking and asyncio clients
    share it), or None (other versions and libraries)."""
    if library.name != "redis":
        return None
    try:
        from redis.observability.providers import get_observability_instance
    except ImportError:
        return None
    is_enabled: Callable[[], bool] = get_observability_instance().is_enabled
    return is_enabled


def pristine(method: Any, module: str) -> bool:
    """Whether ``method`` is the library's own: defined in ``module``, not wrapped."""
    return getattr(method, "__module__", None) == module and not hasattr(method, "__wrapped__")


def fast_path_allowed(client: Any, library: ClientLibrary, asyncio: bool = False) -> bool:
    """Whether ``client`` may take the fast path: a plain pooled client of ``library``
    (a tested version; its ``Redis``/``Valkey`` class, blocking or from its
    ``asyncio`` package) whose ``execute_command`` is the library's own: not a
    subclass' or an instrumentation wrapper, not a single-connection client, not
    redis-py's client-side cache (whose connections answer some reads locally)."""
    if not library.fast_path_tested():
        return False
    package = f"{library.name}.asyncio" if asyncio else library.name
    own_class = getattr(importlib.import_module(package), library.client_class_name)
    pool = getattr(client, "connection_pool", None)
    return (
        isinstance(client, own_class)
        and pristine(type(client).execute_command, f"{package}.client")
        and pool is not None
        and getattr(client, "connection", None) is None
        and not getattr(client, "single_connection_client", False)
        and getattr(pool, "cache", None) is None
    )
