"""Which server is at the other end: Redis, Valkey or KeyDB, told from its ``INFO`` reply.

Every one of them reports a ``redis_version``, and for the forks it is not their own
version: Valkey 8 and 9 say ``redis_version:7.2.4`` (the Redis API they match), KeyDB
says ``redis_version:6.3.4``. What tells them apart:

* Valkey: ``server_name:valkey`` and, from 7.2.5 on, ``valkey_version`` in ``# Server``;
* KeyDB: nothing in ``# Server``; it has a ``# KeyDB`` section of its own (``mvcc_depth``),
  and its ``executable`` is a ``keydb-server``;
* Redis: none of the above, so ``redis_version`` is its version.

::

    >>> describe_server({"redis_version": "7.2.4", "server_name": "valkey",
    ...                  "valkey_version": "9.1.2"})
    ('Valkey', '9.1.2')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe_server", "flatten_info", "parse_info"]


def parse_info(text: str | bytes) -> dict[str, dict[str, str]]:
    """The raw text of an ``INFO`` reply as ``{section: {field: value}}``.

    Section names keep their case (``"Server"``, ``"KeyDB"``); values stay strings.
    Fields before any ``# Section`` header land in section ``""``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            current = sections.setdefault(line.lstrip("#").strip(), {})
            continue
        name, sep, value = line.partition(":")
        if sep:
            current[name] = value
    if not sections[""]:
        del sections[""]
    return sections


def flatten_info(info: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """``info`` as one flat ``{field: value}`` mapping, plus the section names it had.

    Accepts what redis-py / valkey-py's ``client.info()`` return (already flat), what
    :func:`parse_info` returns (nested by section), or a mix.
    """
    fields: dict[str, Any] = {}
    sections: set[str] = set()
    for name, value in info.items():
        if isinstance(value, Mapping) and not _is_keyspace_entry(name):
            sections.add(str(name).lower())
            nested, _ = flatten_info(value)
            for nested_name, nested_value in nested.items():
                fields.setdefault(nested_name, nested_value)
        else:
            fields[str(name)] = value
    return fields, sections


def _is_keyspace_entry(name: str) -> bool:
    # redis-py parses "db0:keys=1,expires=0" into {"db0": {"keys": 1, ...}}: a field, not a section.
    return name.startswith("db") and name[2:].isdigit()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def describe_server(info: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, version)`` of the server that sent ``info``, e.g. ``("Valkey", "8.0.1")``.

    ``name`` is ``"Valkey"``, ``"KeyDB"``, ``"Dragonfly"``, ``"Redis"``, or ``"unknown"``
    when ``info`` has no version field at all; ``version`` is then ``"unknown"`` too.

    :param info: the ``INFO`` reply (flat, as redis-py's ``client.info()`` returns it,
        or nested by section as :func:`parse_info` does). Pass the whole reply, not just
        ``INFO server``: KeyDB identifies itself only in its own section further down.
    """
    fields, sections = flatten_info(info)
    redis_version = _text(fields["redis_version"]) if "redis_version" in fields else ""
    server_name = _text(fields.get("server_name", "")).strip().lower()
    executable = _text(fields.get("executable", "")).lower()

    if "valkey_version" in fields or server_name == "valkey":
        # Valkey 7.2.0-7.2.4 had only server_name; its redis_version was then its own.
        return "Valkey", _text(fields.get("valkey_version", redis_version or "unknown"))
    if "mvcc_depth" in fields or "keydb" in sections or "keydb" in executable:
        # KeyDB's redis_version is its own version (6.3.4 for KeyDB 6.3.4).
        return "KeyDB", redis_version or "unknown"
    if "dragonfly_version" in fields:
        return "Dragonfly", _text(fields["dragonfly_version"]).removeprefix("df-v")
    if redis_version:
        return "Redis", redis_version
    return "unknown", "unknown"
