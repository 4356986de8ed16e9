"""Wire formats: how values become the bytes stored on the server, and back.

The plain formats store an ``int`` as ASCII digits so the server's ``INCRBY`` works on
it (``inc``/``dec``), exactly as cachelib does. An int longer than Python's ``str()``
digit limit (``sys.get_int_max_str_digits()``, 4,300 digits by default) has no ASCII
form: ``pickle`` stores it pickled (it round-trips, but is no counter), ``json`` and
``msgpack`` refuse it with :class:`~cachecore.errors.SerializationError`. Otherwise:

* ``pickle`` (default): cachelib's format, ``b"!" + pickle``. Any picklable value.
  Unsafe if untrusted parties can write to the server: reading a value unpickles it.
* ``json``: UTF-8 JSON. Keeps ``None``, ``bool``, ``int``, ``float``, ``str``, lists and
  dicts with ``str`` keys; a tuple comes back as a list. Never runs code on read.
* ``msgpack`` (extra ``cachecore[msgpack]``): like json plus ``bytes``; compact.

Two wrappers go around any format:

* :class:`SignedSerializer` adds an HMAC-SHA256 over the payload, the key it is stored
  under and the time it expires (a :class:`~cachecore.types.KeyedSerializer`: the cache
  hands it the key). A value with a missing or wrong signature, moved to another key or
  read past its signed expiry reads as a miss and is logged; a forged payload is never
  decoded.
* :class:`CompressedSerializer` compresses payloads above a size threshold with zlib, zstd
  or lz4 and marks them, so compressed and uncompressed values read alike. Reading never
  decompresses more than ``max_size`` bytes (the cache's ``max_value_size``).

Every serializer here may be shared by any number of threads and survives ``fork``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import math
import pickle
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from cachecore.errors import ConfigurationError, SerializationError, ValueTooLargeError
from cachecore.hookspecs import hookimpl
from cachecore.types import Serializer, SerializerSpec

PICKLE_MARKER = b"!"
# Tags for cachecore's own wrappers. 0xFE never starts a pickle-format value ("!" or an
# ASCII int), JSON text, or a msgpack payload longer than one byte.
SIGNED_TAG = b"\xfek"
LEGACY_SIGNED_TAG = b"\xfeh"
"""cachecore's first signed format (HMAC over the payload alone): read as a miss."""
COMPRESSION_TAGS = {"zlib": b"\xfez", "zstd": b"\xfeZ", "lz4": b"\xfel"}

DEFAULT_MAX_SIZE = 512 * 1024 * 1024
"""The servers' own limit on one value (``proto-max-bulk-len``), in bytes."""

EXPIRY_LEEWAY = 1.0
"""Seconds a signed value still reads after the expiry it was signed with, for clocks
that differ a little between the hosts that write and read it."""


class UndecodableValueError(ValueError):
    """Stored bytes are not in the format the serializer reads."""


def _dump_ascii_int(value: int) -> bytes | None:
    # Past Python's str() digit limit an int has no ASCII form: pickle stores it
    # pickled, json and msgpack refuse it.
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


def _now() -> float:
    """Wall-clock seconds: signed expiries are compared across hosts."""
    return time.time()


def _signed_message(key: str | bytes, expiry: bytes, payload: bytes) -> bytes:
    # The key's length goes first so that no other (key, payload) split of the same
    # bytes carries the same signature; the expiry has a fixed width.
    name = key.encode() if isinstance(key, str) else key
    return len(name).to_bytes(8, "big") + name + expiry + payload


class SignedSerializer:
    """HMAC-SHA256-signed values around any inner serializer, bound to key and expiry.

    A :class:`~cachecore.types.KeyedSerializer`: the cache calls :meth:`dumps_for` and
    :meth:`loads_for` with the full key (prefix included). The signature covers that key,
    the absolute time the value expires (from the timeout it was stored with) and the
    inner payload. :meth:`loads_for` refuses, by raising (the cache then logs it and
    reads a miss), and before the inner serializer sees a byte (so a forged pickle is
    never unpickled):

    * a value without a signature, or whose signature matches none of the keys;
    * a validly signed value copied under another key (of this or any cache);
    * a value read more than :data:`EXPIRY_LEEWAY` seconds after the expiry it was
      signed with, whatever TTL the server holds for it (``PERSIST``, a copy without TTL);
    * a value signed by cachecore's first signed format, which bound neither;
    * bare ASCII digits, unless ``signed_ints`` is False (see below).

    :param inner: the format being signed, e.g. :class:`PickleSerializer`.
    :param secret_key: signs new values; at least 16 bytes.
    :param old_keys: still accepted when reading, for key rotation.
    :param signed_ints: True (default): an ``int`` is signed like any other value. A
        server-side counter (``inc``/``dec`` write bare ASCII digits, which nothing can
        sign) then reads as a miss through ``get``, and ``inc`` on an int that ``set``
        stored returns None. False: ints are stored and read as bare ASCII digits, as in
        the unsigned formats, so counters work with ``get``; but they are not
        authenticated: anyone who can write to the server can make any key of this
        cache read as an int of their choice.
    :raises ConfigurationError: a key shorter than 16 bytes.
    """

    def __init__(
        self,
        inner: Serializer,
        secret_key: str | bytes,
        old_keys: Iterable[str | bytes] = (),
        *,
        signed_ints: bool = True,
    ) -> None:
        self.inner = inner
        self.signed_ints = signed_ints
        self._key = _as_key(secret_key)
        self._read_keys = (self._key, *(_as_key(k) for k in old_keys))

    def dumps_for(self, key: str | bytes, value: Any, timeout: int) -> bytes:
        """The bytes to store for ``value`` under ``key``, expiring in ``timeout`` seconds.

        :param key: the full key as sent to the server (prefix included).
        :param timeout: the TTL the value is stored with, in seconds; 0 = never expires.
        :raises SerializationError: the inner format cannot encode ``value``.
        :raises ValueError: ``timeout`` is negative.
        """
        if not self.signed_ints and type(value) is int:
            ascii_int = _dump_ascii_int(value)
            if ascii_int is not None:
                return ascii_int
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 (0 means never expire), got {timeout!r}")
        payload = self.inner.dumps(value)
        expiry = (math.ceil(_now() + timeout) if timeout else 0).to_bytes(8, "big")
        message = _signed_message(key, expiry, payload)
        return SIGNED_TAG + hmac.digest(self._key, message, hashlib.sha256) + expiry + payload

    def loads_for(self, key: str | bytes, data: bytes) -> Any:
        """The value that ``data``, read from ``key`` (the full key), holds.

        :raises UndecodableValueError: ``data`` is not a value this serializer signed
            for ``key``, or is past its signed expiry (see the class description).
        """
        if data[:2] != SIGNED_TAG:
            number = _load_ascii_int(data)
            if number is not None and not self.signed_ints:
                return number
            raise UndecodableValueError(self._why_unsigned(data, number))
        signature, expiry, payload = data[2:34], data[34:42], data[42:]
        message = _signed_message(key, expiry, payload)
        for secret in self._read_keys:
            if hmac.compare_digest(signature, hmac.digest(secret, message, hashlib.sha256)):
                break
        else:
            raise UndecodableValueError(
                "signature does not match any configured key (for this key and expiry)"
            )
        expires = int.from_bytes(expiry, "big")
        if expires and _now() > expires + EXPIRY_LEEWAY:
            raise UndecodableValueError("value is past the expiry it was signed with")
        return self.inner.loads(payload)

    @staticmethod
    def _why_unsigned(data: bytes, number: int | None) -> str:
        if number is not None:
            return (
                "value is a bare integer (a counter written by inc/dec, or a forgery); "
                "this cache signs ints: set signed_ints=false to read counters"
            )
        if data[:2] == LEGACY_SIGNED_TAG:
            return (
                "value was signed by an earlier cachecore without its key and expiry; "
                "it reads as a miss until it is stored again"
            )
        return "value is not signed"

    def dumps(self, value: Any) -> bytes:
        """Refused: a signed value is bound to its key; the cache calls :meth:`dumps_for`.

        :raises TypeError: always.
        """
        raise TypeError(
            "SignedSerializer binds each value to its key and expiry: "
            "call dumps_for(key, value, timeout)"
        )

    def loads(self, data: bytes) -> Any:
        """Refused: a signed value is bound to its key; the cache calls :meth:`loads_for`.

        :raises TypeError: always.
        """
        raise TypeError(
            "SignedSerializer binds each value to its key and expiry: call loads_for(key, data)"
        )


# -- compression ----------------------------------------------------------------------------

_CHUNK = 64 * 1024
"""Output step, in bytes, when a compressed value does not state its size."""
_STEP = 1024 * 1024
"""Output step, in bytes, of zlib (which never states the size)."""


def _import_compression(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"compression {extra!r} needs {module.partition('.')[0]}: "
            f"pip install cachecore[{extra}]"
        ) from exc


def _too_large(limit: int) -> UndecodableValueError:
    return UndecodableValueError(f"value decompresses to more than max_value_size={limit} bytes")


def _compressor(algorithm: str, level: int | None) -> tuple[Callable[[bytes], bytes], bytes]:
    # zlib.compress and lz4.frame.compress keep no state between calls; a zstandard
    # compressor does, and two threads using one corrupt each other's output or crash
    # the process: each thread gets its own (measured: reusing one is twice as fast as
    # making one per value). After fork the child only has the forking thread, whose
    # compressor was idle, so its copy is safe to use.
    if algorithm == "zlib":
        zlevel = -1 if level is None else level
        return (lambda data: zlib.compress(data, zlevel)), COMPRESSION_TAGS["zlib"]
    if algorithm == "zstd":
        zstd = _import_compression("zstandard", "zstd")
        zlevel = 3 if level is None else level
        local = threading.local()
        local.compressor = zstd.ZstdCompressor(level=zlevel)  # a bad level fails here

        def compress_zstd(data: bytes) -> bytes:
            compressor = getattr(local, "compressor", None)
            if compressor is None:
                compressor = local.compressor = zstd.ZstdCompressor(level=zlevel)
            return bytes(compressor.compress(data))

        return compress_zstd, COMPRESSION_TAGS["zstd"]
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


def _decompress_zlib(data: bytes, limit: int) -> bytes:
    # In steps, keeping each: a value over the limit then costs at most the limit in
    # memory (one max_length=limit+1 call would also build a joined copy first).
    decompressor = zlib.decompressobj()
    chunks = [decompressor.decompress(data, _STEP)]
    total = len(chunks[0])
    while decompressor.unconsumed_tail and total <= limit:
        chunks.append(decompressor.decompress(decompressor.unconsumed_tail, _STEP))
        total += len(chunks[-1])
    if total > limit:
        raise _too_large(limit)
    if not decompressor.eof:
        raise UndecodableValueError("truncated zlib stream")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_zstd_threads = threading.local()


def _decompress_zstd(data: bytes, limit: int) -> bytes:
    zstd = _import_compression("zstandard", "zstd")
    declared = zstd.frame_content_size(data)  # -1: the frame does not say
    if declared > limit:
        raise _too_large(limit)
    if declared >= 0:
        # decompress() allocates what the frame declares (even past max_output_size)
        # and fails if the frame holds more: bounded by the check above.
        decompressor = getattr(_zstd_threads, "decompressor", None)
        if decompressor is None:  # one per thread, as for compressors
            decompressor = _zstd_threads.decompressor = zstd.ZstdDecompressor()
        return bytes(decompressor.decompress(data))
    chunks: list[bytes] = []
    total = 0
    for chunk in zstd.ZstdDecompressor().read_to_iter(data, write_size=_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress_lz4(data: bytes, limit: int) -> bytes:
    lz4frame = _import_compression("lz4.frame", "lz4")
    declared: int = lz4frame.get_frame_info(data)["content_size"]  # 0: the frame does not say
    if declared > limit:
        raise _too_large(limit)
    # A decompressor allocates max_length up front: never more than the declared size
    # (+1 to notice a frame holding more), else one chunk at a time.
    decompressor = lz4frame.LZ4FrameDecompressor()
    chunks = [decompressor.decompress(data, max_length=declared + 1 if declared else _CHUNK)]
    total = len(chunks[0])
    while not decompressor.eof and total <= limit:
        if decompressor.needs_input:
            raise UndecodableValueError("truncated lz4 frame")
        chunks.append(decompressor.decompress(b"", max_length=_CHUNK))
        total += len(chunks[-1])
    if total > limit:
        raise _too_large(limit)
    return b"".join(chunks)


_DECOMPRESSORS: dict[bytes, Callable[[bytes, int], bytes]] = {
    COMPRESSION_TAGS["zlib"]: _decompress_zlib,
    COMPRESSION_TAGS["zstd"]: _decompress_zstd,
    COMPRESSION_TAGS["lz4"]: _decompress_lz4,
}


class CompressedSerializer:
    """Compresses payloads of at least ``threshold`` bytes, marking them with a tag.

    Values below the threshold, and values written before compression was turned on,
    are stored and read exactly as the inner serializer does; a compressed value reads
    back whichever algorithm this cache is configured with (if its module is installed).

    Reading never produces more than ``max_size`` bytes of decompressed output: a value
    that would expand further (a "compression bomb" written by someone else) raises
    :class:`UndecodableValueError` (the cache logs it and reads a miss), after at most
    ``max_size`` bytes of work. Writing a payload larger than ``max_size`` raises
    :class:`~cachecore.errors.ValueTooLargeError`, so what ``set`` stores ``get`` reads.

    :param inner: the format being compressed.
    :param algorithm: ``"zlib"`` (built in), ``"zstd"`` or ``"lz4"`` (extras).
    :param threshold: smallest payload, in bytes, worth compressing.
    :param level: the algorithm's compression level, or None for its default.
    :param max_size: the largest uncompressed payload, in bytes; None for
        :data:`DEFAULT_MAX_SIZE`. ``from_url`` passes the cache's ``max_value_size``;
        pass the same value when you build a cache and this serializer yourself.
    :raises ConfigurationError: an unknown algorithm, a missing module, a negative
        threshold or max_size.
    """

    def __init__(
        self,
        inner: Serializer,
        algorithm: str = "zlib",
        threshold: int = 1024,
        level: int | None = None,
        max_size: int | None = None,
    ) -> None:
        if threshold < 0:
            raise ConfigurationError("compression_threshold must be >= 0")
        if max_size is not None and max_size < 0:
            raise ConfigurationError("max_value_size must be >= 0")
        self.inner = inner
        self.algorithm = algorithm
        self.threshold = threshold
        self.max_size = DEFAULT_MAX_SIZE if max_size is None else max_size
        self._compress, self._tag = _compressor(algorithm, level)

    def dumps(self, value: Any) -> bytes:
        payload = self.inner.dumps(value)
        if len(payload) < self.threshold or type(value) is int:
            return payload
        if len(payload) > self.max_size:
            raise ValueTooLargeError(
                f"serialized value is {len(payload)} bytes before compression, over "
                f"max_value_size={self.max_size}; not sent"
            )
        return self._tag + self._compress(payload)

    def loads(self, data: bytes) -> Any:
        decompress = _DECOMPRESSORS.get(data[:2])
        if decompress is not None:
            return self.inner.loads(decompress(data[2:], self.max_size))
        return self.inner.loads(data)


@hookimpl
def cachecore_serializers() -> list[SerializerSpec]:
    """The built-in wire formats."""
    return [
        SerializerSpec("pickle", PickleSerializer, "cachelib-compatible pickle (default)"),
        SerializerSpec("json", JsonSerializer, "JSON: safe on shared servers, JSON types only"),
        SerializerSpec("msgpack", MsgpackSerializer, "MessagePack: safe, compact, needs msgpack"),
    ]
