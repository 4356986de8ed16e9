"""The exceptions cachecore raises, in one place so callers can catch them by name."""

from __future__ import annotations

import pickle


class CachecoreError(Exception):
    """Base class of every error cachecore raises on purpose."""


class ConfigurationError(CachecoreError, ValueError):
    """A configuration value (URL, option, mapping) is malformed or contradicts another."""


class OptionTypeError(ConfigurationError, TypeError):
    """An option given in Python has the wrong type (``default_timeout=2.5``,
    ``key_prefix=5``): a :class:`ConfigurationError` that is also the ``TypeError``
    Python code expects for a wrong type."""


class UnknownBackendError(ConfigurationError):
    """No installed backend handles the requested name or URL scheme.

    The message lists the installed backends and, for a first-party backend that is
    not installed, the distribution to ``pip install``.
    """


class UnknownSerializerError(ConfigurationError):
    """No installed serializer has the requested name; the message lists the valid names."""


class PluginConflictError(CachecoreError):
    """Two plugins claim the same backend name, URL scheme or serializer name."""


class BackendError(CachecoreError):
    """The cache server failed (connection refused, timeout, LOADING, READONLY, OOM...).

    Raised only by caches built with ``raise_errors=True``; otherwise each method
    returns its documented fault value and logs a warning. The original client
    exception is chained as ``__cause__``.
    """


class ConnectionCheckError(BackendError, RuntimeError):
    """``check_connection=True`` found the server unreachable when the cache was built.

    Also a :class:`RuntimeError`, the type cachelib raises there, so code written as
    ``except RuntimeError`` for cachelib keeps working.
    """


class SerializationError(CachecoreError, pickle.PicklingError):
    """A value could not be serialized (unpicklable object, or a type the format lacks).

    It subclasses :class:`pickle.PickleError` so code written for cachelib, which lets
    pickle's errors escape ``set``, keeps catching it.
    """


class ValueTooLargeError(CachecoreError, ValueError):
    """A serialized value is larger than the cache's ``max_value_size``; nothing was sent."""
