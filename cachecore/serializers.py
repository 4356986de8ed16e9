"""Wire formats: how values become the bytes stored on the server, and back.

Every format stores a plain ``int`` as ASCII digits so the server's ``INCRBY`` works
on it (``inc``/``dec``), exactly as cachelib does. The formats differ in everything else:

* ``pickle`` (default): cachelib's format, ``b"!" + pickle``. Any picklable value.
  Unsafe if untrusted parties can write to the server: reading a value unpickles it.
* ``json``: UTF-8 JSON. Keeps ``None``, ``bool``, ``int``, ``float``, ``str``, lists and
  dicts with ``str`` keys; a tuple comes back as a list. Never runs code on read.
* ``msgpack`` (extra ``cachecore[msgpack]``): like json plus ``bytes``; compact.

Two wrappers go around any format:

* :class:`SignedSerializer` adds an HMAC-SHA256 over the payload; a value with a missing
  or wrong signature reads as a miss and is logged, so a forged payload is never decoded.
* :class:`CompressedSerializer` compresses payloads above a size threshold with zlib, zstd
  or lz4 and marks them, so compressed and uncompressed values read alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from cachecore.errors import ConfigurationError, SerializationError
from cachecore.hookspecs import hookimpl
from cachecore.types import Serializer, SerializerSpec

PICKLE_MARKER = b"!"
# Tags for cachecore's own wrappers. 0xFE never starts a pickle-format value ("!" or an
# ASCII int), JSON text, or a msgpack payload longer than one byte.
SIGNED_TAG = b"\xfeh"
COMPRESSION_TAGS = {"zlib": b"\xfez", "zstd": b"\xfeZ", "lz4": b"\xfel"}


class UndecodableValueError(ValueError):
    """Stored bytes are not in the format the serializer reads."""


def _dump_ascii_int(value: int) -> bytes | None:
    # Ints past Python's str() digit limit cannot be written as ASCII: callers pickle them.
    try:
        return str(value).encode("ascii")
    except ValueError:
        return None


def _load_ascii_int(data: bytes) -> int | None:
    # Only canonical ASCII integers, as INCRBY and these serializers write them.
    if data and (data.isdigit() or (data[:1] == b"-" and data[1:].isdigit())):
        return int(data)
    return None


class PickleSerializer:
    """cachelib's wire format: ints as ASCII, everything else ``b"!" + pickle``.

    Values written by cachelib's Redis/Valkey caches read here and the reverse.
    """

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        if type(value) is int and (ascii_int := _dump_ascii_int(value)) is not None:
            return ascii_int
        try:
            return PICKLE_MARKER + pickle.dumps(value, self.protocol)
        except Exception as exc:
            raise SerializationError(
                f"cannot pickle value of type {type(value).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        if data[:1] == PICKLE_MARKER:
            return pickle.loads(data[1:])
        number = _load_ascii_int(data)
        if number is None:
            raise UndecodableValueError("neither a pickle payload nor an ASCII integer")
        return number


class JsonSerializer:
    """UTF-8 JSON. Safe to read from a shared server: decoding never runs code.

    Keeps None, bool, int, float, str, list and dict with str keys; tuples read back
    as lists. Other types raise :class:`~cachecore.errors.SerializationError`.
    """

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot encode value of type {type(value).__name__} as JSON: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class MsgpackSerializer:
    """MessagePack (needs ``pip install cachecore[msgpack]``): JSON's types plus bytes.

    Ints are stored as ASCII like every cachecore format so ``inc``/``dec`` work on them.
    """

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise ConfigurationError(
                "serializer 'msgpack' needs the msgpack package: pip install cachecore[msgpack]"
            ) from exc
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        if type(value) is int and (ascii_int := _dump_ascii_int(value)) is not None:
            return ascii_int
        try:
            packed: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"cannot encode value of type {type(value).__name__} as msgpack: {exc}"
            ) from exc
        return packed

    def loads(self, data: bytes) -> Any:
        number = _load_ascii_int(data)
        if number is not None:
            return number
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)


def _as_key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < 16:
        raise ConfigurationError("secret_key must be at least 16 bytes long")
    return key


class SignedSerializer:
    """HMAC-SHA256-signed payloads around any inner serializer.

    A stored value whose signature is missing or matches none of the keys raises on
    ``loads`` (the cache then logs it and reads a miss): the inner serializer never sees
    it, so a forged pickle is never unpickled. Plain ASCII ints are stored unsigned so
    ``inc``/``dec`` keep working; parsing an int cannot run code.

    :param inner: the format being signed, e.g. :class:`PickleSerializer`.
    :param secret_key: signs new values; at least 16 bytes.
    :param old_keys: still accepted when reading, for key rotation.
    """

    def __init__(
        self,
        inner: Serializer,
        secret_key: str | bytes,
        old_keys: Iterable[str | bytes] = (),
    ) -> None:
        self.inner = inner
        self._key = _as_key(secret_key)
        self._read_keys = (self._key, *(_as_key(k) for k in old_keys))

    def dumps(self, value: Any) -> bytes:
        if type(value) is int and (ascii_int := _dump_ascii_int(value)) is not None:
            return ascii_int
        payload = self.inner.dumps(value)
        return SIGNED_TAG + hmac.digest(self._key, payload, hashlib.sha256) + payload

    def loads(self, data: bytes) -> Any:
        number = _load_ascii_int(data)
        if number is not None:
            return number
        if data[:2] != SIGNED_TAG:
            raise UndecodableValueError("value is not signed")
        signature, payload = data[2:34], data[34:]
        for key in self._read_keys:
            if hmac.compare_digest(signature, hmac.digest(key, payload, hashlib.sha256)):
                return self.inner.loads(payload)
        raise UndecodableValueError("signature does not match any configured key")


def _compressor(algorithm: str, level: int | None) -> tuple[Callable[[bytes], bytes], bytes]:
    if algorithm == "zlib":
        zlevel = -1 if level is None else level
        return (lambda data: zlib.compress(data, zlevel)), COMPRESSION_TAGS["zlib"]
    if algorithm == "zstd":
        zstd = _import_compression("zstandard", "zstd")
        compressor = zstd.ZstdCompressor(level=3 if level is None else level)
        return compressor.compress, COMPRESSION_TAGS["zstd"]
    if algorithm == "lz4":
        lz4frame = _import_compression("lz4.frame", "lz4")
        llevel = 0 if level is None else level
        return (
            lambda data: bytes(lz4frame.compress(data, compression_level=llevel)),
            COMPRESSION_TAGS["lz4"],
        )
    raise ConfigurationError(
        f"unknown compression {algorithm!r}; choose one of: {', '.join(COMPRESSION_TAGS)}"
    )


def _import_compression(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"compression {extra!r} needs {module.partition('.')[0]}: "
            f"pip install cachecore[{extra}]"
        ) from exc


def _decompress(tag: bytes, data: bytes) -> bytes:
    if tag == COMPRESSION_TAGS["zlib"]:
        return zlib.decompress(data)
    if tag == COMPRESSION_TAGS["zstd"]:
        return bytes(_import_compression("zstandard", "zstd").ZstdDecompressor().decompress(data))
    return bytes(_import_compression("lz4.frame", "lz4").decompress(data))


class CompressedSerializer:
    """Compresses payloads of at least ``threshold`` bytes, marking them with a tag.

    Values below the threshold, and values written before compression was turned on,
    are stored and read exactly as the inner serializer does; a compressed value reads
    back whichever algorithm this cache is configured with (if its module is installed).

    :param inner: the format being compressed.
    :param algorithm: ``"zlib"`` (built in), ``"zstd"`` or ``"lz4"`` (extras).
    :param threshold: smallest payload, in bytes, worth compressing.
    :param level: the algorithm's compression level, or None for its default.
    """

    def __init__(
        self,
        inner: Serializer,
        algorithm: str = "zlib",
        threshold: int = 1024,
        level: int | None = None,
    ) -> None:
        if threshold < 0:
            raise ConfigurationError("compression_threshold must be >= 0")
        self.inner = inner
        self.algorithm = algorithm
        self.threshold = threshold
        self._compress, self._tag = _compressor(algorithm, level)

    def dumps(self, value: Any) -> bytes:
        payload = self.inner.dumps(value)
        if len(payload) < self.threshold or type(value) is int:
            return payload
        return self._tag + self._compress(payload)

    def loads(self, data: bytes) -> Any:
        tag = data[:2]
        if tag in _COMPRESSION_TAG_SET:
            return self.inner.loads(_decompress(tag, data[2:]))
        return self.inner.loads(data)


_COMPRESSION_TAG_SET = frozenset(COMPRESSION_TAGS.values())


@hookimpl
def cachecore_serializers() -> list[SerializerSpec]:
    """The built-in wire formats."""
    return [
        SerializerSpec("pickle", PickleSerializer, "cachelib-compatible pickle (default)"),
        SerializerSpec("json", JsonSerializer, "JSON: safe on shared servers, JSON types only"),
        SerializerSpec("msgpack", MsgpackSerializer, "MessagePack: safe, compact, needs msgpack"),
    ]
