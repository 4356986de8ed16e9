"""How ``memoize`` turns a call into a cache key, the same in every process.

The key of ``f(*args, **kwargs)`` is::

    memoize:<f.__module__>.<f.__qualname__>:<sha256 of the arguments, 32 hex digits>

The arguments are first bound to ``f``'s signature with defaults applied, so ``f(1)``,
``f(x=1)`` and ``f()`` (when ``x=1`` is the default) share a key; the parameters named
in ``ignore`` are left out (by default a first parameter called ``self`` or ``cls``, so
a method's instance is not part of its key, unless the instance's class defines
``__cache_key__``: then it is encoded like any argument, so each instance has its own
entries). What remains is encoded as compact JSON of
``[parameter name, encoded value]`` pairs, where each value is encoded by its type:

* ``None``: ``["n"]``; ``bool``: ``["b", v]``; ``int``: ``["i", "<decimal>"]``;
  ``str``: ``["s", v]``; ``float``: ``["f", repr(v)]``; ``bytes``: ``["y", hex]``;
* ``tuple`` / ``list``: ``["t" | "l", [items...]]``; ``dict``: ``["d", [[key, value]...]]``
  sorted by encoded key; ``set`` / ``frozenset``: ``["e", [items...]]`` sorted;
* ``enum.Enum``: ``["m", "module.Qualname", member name]``; ``datetime``, ``date``,
  ``time``: ``["T", type name, isoformat]``; ``Decimal`` / ``UUID``: ``["D" | "U", str(v)]``;
* an object whose class has ``__cache_key__()``: ``["k", "module.Qualname", encoded result]``.

Nothing relies on ``hash()`` (randomised per process for ``str``) or on ``repr()`` of
arbitrary objects (which often holds a memory address). Any other type raises
:class:`TypeError` naming the parameter: give its class a ``__cache_key__`` method
returning any of the types above, or leave the parameter out with ``ignore=``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import inspect
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

KEY_NAMESPACE = "memoize:"


def default_ignore(fn: Callable[..., Any]) -> frozenset[str]:
    """The parameters left out of the key by default: a first one named self or cls."""
    params = list(inspect.signature(fn).parameters)
    if params and params[0] in ("self", "cls"):
        return frozenset(params[:1])
    return frozenset()


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def encode(value: Any, where: str) -> Any:
    """``value`` as a JSON-able structure that is the same in every process.

    :raises TypeError: ``value`` (or something inside it) has no stable encoding;
        ``where`` names the parameter in the message.
    """
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, enum.Enum):  # before int and str: IntEnum, StrEnum
        return ["m", _name(type(value)), value.name]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bytes | bytearray):
        return ["y", bytes(value).hex()]
    if isinstance(value, tuple | list):
        return ["t" if isinstance(value, tuple) else "l", [encode(v, where) for v in value]]
    if isinstance(value, dict):
        items = [[encode(k, where), encode(v, where)] for k, v in value.items()]
        return ["d", sorted(items, key=lambda item: json.dumps(item[0]))]
    if isinstance(value, set | frozenset):
        return ["e", sorted((encode(v, where) for v in value), key=json.dumps)]
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return ["T", type(value).__name__, value.isoformat()]
    if isinstance(value, decimal.Decimal):
        return ["D", str(value)]
    if isinstance(value, uuid.UUID):
        return ["U", str(value)]
    hook = getattr(type(value), "__cache_key__", None)
    if hook is not None:
        return ["k", _name(type(value)), encode(hook(value), where)]
    raise TypeError(
        f"memoize cannot build a stable key from {where} of type {type(value).__name__}: "
        f"give the class a __cache_key__() method returning str, int, tuple... "
        f"or leave the parameter out with ignore=(...)"
    )


class KeyMaker:
    """Builds the keys of one memoized function (see the module's documentation).

    :raises TypeError: ``ignore`` names a parameter ``fn`` does not have.
    """

    def __init__(self, fn: Callable[..., Any], ignore: Iterable[str] | None = None) -> None:
        self.signature = inspect.signature(fn)
        self.ignore = default_ignore(fn) if ignore is None else frozenset(ignore)
        unknown = self.ignore - set(self.signature.parameters)
        if unknown:
            raise TypeError(
                f"ignore names parameters {sorted(unknown)} that "
                f"{fn.__qualname__}{self.signature} does not have"
            )
        self.base = f"{KEY_NAMESPACE}{fn.__module__}.{fn.__qualname__}:"
        # The instance parameter left out by default, kept when it has a __cache_key__.
        self.instance = next(iter(self.ignore)) if ignore is None and self.ignore else None

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of the call ``fn(*args, **kwargs)``.

        :raises TypeError: the arguments do not fit the signature, or one has no
            stable encoding.
        """
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts = [
            [name, encode(value, f"argument {name!r}")]
            for name, value in bound.arguments.items()
            if name not in self.ignore
            or (name == self.instance and hasattr(type(value), "__cache_key__"))
        ]
        text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
        return self.base + hashlib.sha256(text.encode()).hexdigest()[:32]
