"""The envelope: how an entry that carries metadata is stored.

Entries written by ``get_or_set``, ``memoize`` and ``set(..., tags=...)`` need more
than the value: when they go stale, how long their computation took, and the versions
of their tags. They are stored as one string::

    byte 0       0xC1, the envelope marker
    byte 1       0x01, the envelope version
    bytes 2-5    n, the header's length (unsigned, big-endian)
    bytes 6..    the header: n bytes of UTF-8 JSON, an object with
                   "x": the logical expiry (Unix time in seconds, 0 = never)
                   "d": the last computation's duration in seconds (0 when set directly)
                   "g": the tags and the version each had when the value was computed
    the rest     the value, as the cache's serializer writes it

0xC1 is not the first byte of anything the other formats write: cachelib's pickle
format starts with ``!`` (0x21) and integers with an ASCII digit or ``-``; JSON starts
with ASCII; 0xC1 is the one byte msgpack never uses. A plain :meth:`get` of an
envelope entry reads it as a miss (it cannot check the tags without another round trip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MARKER = 0xC1
VERSION = 1
_HEAD = bytes((MARKER, VERSION))


@dataclass(frozen=True)
class Entry:
    """One envelope, decoded: the serialized value and its metadata."""

    payload: bytes
    expires: float = 0.0
    delta: float = 0.0
    tags: dict[str, int] = field(default_factory=dict)


def is_envelope(data: bytes) -> bool:
    """Whether stored bytes are an envelope (by the marker byte)."""
    return data[:1] == b"\xc1"


def pack(entry: Entry) -> bytes:
    """The stored form of ``entry``."""
    header = json.dumps(
        {"x": entry.expires, "d": entry.delta, "g": entry.tags}, separators=(",", ":")
    ).encode()
    return _HEAD + len(header).to_bytes(4, "big") + header + entry.payload


def unpack(data: bytes) -> Entry | None:
    """``data`` decoded, or None when it is not a well-formed envelope of this version."""
    if data[:2] != _HEAD or len(data) < 6:
        return None
    size = int.from_bytes(data[2:6], "big")
    try:
        header = json.loads(data[6 : 6 + size])
        tags = header["g"]
        entry = Entry(
            payload=data[6 + size :],
            expires=float(header["x"]),
            delta=float(header["d"]),
            tags={str(name): int(version) for name, version in tags.items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return entry
