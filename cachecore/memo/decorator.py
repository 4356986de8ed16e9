"""``@cache.memoize(...)``: a function's results cached under keys from its arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from cachecore.memo.keys import KeyMaker
from cachecore.memo.steps import Policy, check_tags
from cachecore.types import Timeout

TagsArg = Iterable[str] | str | Callable[..., Iterable[str]]
"""Static tags, or a callable given the call's arguments that returns its tags."""


class Memoized:
    """A memoized function (what ``@cache.memoize()`` returns for a plain function).

    Calling it returns the cached result for these arguments, or computes it once
    (``cache.get_or_set``). ``invalidate(*args, **kwargs)`` deletes the entry of those
    arguments; ``key(*args, **kwargs)`` tells which key that is. On a method, the
    instance is left out of the key unless its class defines ``__cache_key__`` (see
    :mod:`cachecore.memo.keys`). Above ``@classmethod`` or ``@staticmethod`` it memoizes
    the function and binds as they do (the class is left out of the key).
    """

    def __init__(
        self,
        cache: Any,
        fn: Callable[..., Any],
        timeout: Timeout,
        tags: TagsArg,
        ignore: Iterable[str] | None,
        policy: dict[str, Any],
    ) -> None:
        self.cache = cache
        self.fn = fn
        self.timeout = timeout
        self.keys = KeyMaker(fn, ignore)
        self._tags = tags if callable(tags) else check_tags(tags)
        Policy(**policy)  # check the options now, at decoration time
        self.policy = policy
        functools.update_wrapper(self, fn)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The cache key (without the cache's key prefix) of ``fn(*args, **kwargs)``.

        :raises TypeError: the arguments do not fit ``fn``, or one has no stable encoding.
        """
        return self.keys.key(args, kwargs)

    def _options(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        tags = self._tags(*args, **kwargs) if callable(self._tags) else self._tags
        return {**self.policy, "tags": tags}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self.key(*args, **kwargs)
        return self.cache.get_or_set(
            key, lambda: self.fn(*args, **kwargs), self.timeout, **self._options(args, kwargs)
        )

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Delete the cached result of ``fn(*args, **kwargs)``; as ``cache.delete``."""
        return self.cache.delete(self.key(*args, **kwargs))

    binding: str = "instance"
    """How attribute access on a class binds it: ``"instance"`` (a method),
    ``"class"`` (it decorated a classmethod) or ``"none"`` (a staticmethod)."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if self.binding == "class":
            return _Bound(self, owner if owner is not None else type(instance))
        if instance is None or self.binding == "none":
            return self
        return _Bound(self, instance)


class AsyncMemoized(Memoized):
    """A memoized coroutine function (``@cache.memoize()`` on the asyncio cache):
    calling it and ``invalidate`` are coroutines."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self.key(*args, **kwargs)
        options = self._options(args, kwargs)
        return await self.cache.get_or_set(
            key, lambda: self.fn(*args, **kwargs), self.timeout, **options
        )

    async def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Delete the cached result of ``fn(*args, **kwargs)``; as ``cache.delete``."""
        return await self.cache.delete(self.key(*args, **kwargs))


class _Bound:
    """A memoized method bound to an instance: ``obj.method(...)``,
    ``obj.method.invalidate(...)``."""

    def __init__(self, memoized: Memoized, instance: Any) -> None:
        self._memoized = memoized
        self._instance = instance
        functools.update_wrapper(self, memoized.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._memoized(self._instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        return self._memoized.invalidate(self._instance, *args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._memoized.key(self._instance, *args, **kwargs)


def memoizer(
    cache: Any,
    asynchronous: bool,
    timeout: Timeout,
    tags: TagsArg,
    ignore: Iterable[str] | None,
    policy: dict[str, Any],
) -> Callable[[Callable[..., Any]], Memoized]:
    """The decorator ``cache.memoize(...)`` returns.

    :raises TypeError: ``timeout`` is a function (``@cache.memoize`` without its
        parentheses); (when decorating) a coroutine function on the blocking cache, or
        a plain function on the asyncio cache.
    """
    if callable(timeout) or isinstance(timeout, classmethod | staticmethod):
        name = getattr(timeout, "__qualname__", repr(timeout))
        raise TypeError(
            f"memoize takes options, not the function: write @cache.memoize() (with "
            f"parentheses) above {name}"
        )

    def decorate(fn: Callable[..., Any]) -> Memoized:
        binding = "instance"
        if isinstance(fn, classmethod | staticmethod):
            # @cache.memoize() above @classmethod / @staticmethod: memoize the function
            # and bind it as the wrapper would have.
            binding = "class" if isinstance(fn, classmethod) else "none"
            fn = fn.__func__
        if inspect.iscoroutinefunction(fn) and not asynchronous:
            raise TypeError(
                f"{fn.__qualname__} is a coroutine function: memoize it with the asyncio "
                f"cache (cachecore.aio), whose memoize awaits it"
            )
        if asynchronous and not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"{fn.__qualname__} is not a coroutine function: the asyncio cache's "
                f"memoize needs an async def (memoize plain functions with a blocking cache)"
            )
        kind = AsyncMemoized if asynchronous else Memoized
        memoized = kind(cache, fn, timeout, tags, ignore, policy)
        memoized.binding = binding
        return memoized

    return decorate
