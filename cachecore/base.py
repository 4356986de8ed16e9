"""The abstract cache API every cachecore cache implements (cachelib-compatible)."""

from __future__ import annotations

import abc
from typing import Any

from cachecore.timeouts import to_seconds
from cachecore.types import Timeout


class BaseCache(abc.ABC):
    """The cache API, as cachelib's ``BaseCache`` defines it.

    A backend that forgets a method cannot be instantiated. Methods never raise for a
    backend fault unless the cache was built with ``raise_errors=True``: they return
    the fault value each one documents and log a warning.

    :param default_timeout: used when a call passes ``timeout=None``: whole seconds or a
        :class:`datetime.timedelta`; 0 means values never expire.
    """

    def __init__(self, default_timeout: Timeout = 300) -> None:
        if default_timeout is None:
            raise TypeError("default_timeout must be an int or datetime.timedelta, not None")
        self.default_timeout = to_seconds(default_timeout, "default_timeout")

    @abc.abstractmethod
    def get(self, key: str) -> Any:
        """Return the value stored under ``key``, or None when missing or on a fault."""

    @abc.abstractmethod
    def get_many(self, *keys: str) -> list[Any]:
        """Return the values of ``keys`` in order, None for each missing one."""

    def get_dict(self, *keys: str) -> dict[str, Any]:
        """Return ``{key: value}`` for ``keys``, None for each missing one."""
        return dict(zip(keys, self.get_many(*keys), strict=True))

    @abc.abstractmethod
    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` under ``key``; True on success, False on a backend fault."""

    @abc.abstractmethod
    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if stored, else False."""

    @abc.abstractmethod
    def set_many(self, mapping: dict[str, Any], timeout: Timeout = None) -> list[Any]:
        """Store every item of ``mapping``; return the keys that were stored."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed and was deleted."""

    @abc.abstractmethod
    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys``; return those no longer in the cache ([] on a fault)."""

    @abc.abstractmethod
    def has(self, key: str) -> bool:
        """Whether ``key`` is in the cache (False on a fault)."""

    @abc.abstractmethod
    def clear(self) -> bool:
        """Delete every key of this cache; True on success."""

    @abc.abstractmethod
    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` to the integer under ``key`` (missing = 0); the new value or None."""

    @abc.abstractmethod
    def dec(self, key: str, delta: int = 1) -> int | None:
        """Subtract ``delta`` from the integer under ``key`` (missing = 0); new value or None."""
