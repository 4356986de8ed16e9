"""Property-based tests (hypothesis): values, keys, timeouts and hostile stored bytes.

Every serializer configuration, on the embedded ``memory://`` backend for speed, and a
smaller run against one real server:

* what ``set`` stores, ``get`` returns (for the types each format keeps);
* any ``str`` key and any key prefix work;
* any timeout ``>= 0`` (int or timedelta) gives the server the TTL it means;
* arbitrary, truncated or bit-flipped bytes in the server never make ``get`` or
  ``get_many`` raise: they return a value or None; a signed format returns None.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import functools
import logging
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachecore
from cachecore import BaseRedisCache
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, find_server_binaries

SECRET = "property-secret-" * 2

FAST = settings(
    deadline=None,
    max_examples=100,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REAL_SERVER = settings(FAST, max_examples=30)


@pytest.fixture(autouse=True)
def _quiet_cachecore() -> Any:
    # Undecodable values are logged once per example; keep the captured log small.
    logger = logging.getLogger("cachecore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


# -- value strategies: what each format keeps ---------------------------------------------

_leaf_text = st.text(max_size=30)
_finite = st.floats(allow_nan=False, allow_infinity=False)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _finite | _leaf_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_leaf_text, inner, max_size=5),
    max_leaves=20,
)
"""JSON keeps None, bool, int, float, str, list, and dict with str keys."""

_msgpack_nested = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | _leaf_text
    | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_leaf_text, inner, max_size=5),
    max_leaves=20,
)
MSGPACK_VALUES = st.integers() | _msgpack_nested
"""msgpack keeps JSON's types plus bytes and infinities; nested ints must fit 64 bits
(a top-level int of any size is stored as ASCII digits, like every format)."""

_hashable = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | _leaf_text
    | st.binary(max_size=30)
)
PICKLE_VALUES = st.recursive(
    _hashable
    | st.complex_numbers(allow_nan=False)
    | st.decimals(allow_nan=False)
    | st.fractions()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.timedeltas()
    | st.uuids()
    | st.frozensets(_hashable, max_size=5),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(_hashable, inner, max_size=5)
        | st.sets(_hashable, max_size=5)
    ),
    max_leaves=20,
)
"""pickle keeps any picklable value, with its exact type."""

CONFIGS: dict[str, tuple[dict[str, Any], st.SearchStrategy[Any]]] = {
    "pickle": ({}, PICKLE_VALUES),
    "json": ({"serializer": "json"}, JSON_VALUES),
    "msgpack": ({"serializer": "msgpack"}, MSGPACK_VALUES),
    "signed": ({"serializer": "signed", "secret_key": SECRET}, PICKLE_VALUES),
    "signed-json": (
        {"serializer": "signed", "signed_serializer": "json", "secret_key": SECRET},
        JSON_VALUES,
    ),
    "msgpack+secret_key": ({"serializer": "msgpack", "secret_key": SECRET}, MSGPACK_VALUES),
    "pickle+zlib": ({"compression": "zlib", "compression_threshold": 0}, PICKLE_VALUES),
    "json+zstd": (
        {"serializer": "json", "compression": "zstd", "compression_threshold": 0},
        JSON_VALUES,
    ),
    "msgpack+lz4": (
        {"serializer": "msgpack", "compression": "lz4", "compression_threshold": 0},
        MSGPACK_VALUES,
    ),
    "pickle+zstd-threshold-64": (
        {"compression": "zstd", "compression_threshold": 64},
        PICKLE_VALUES,
    ),
    "signed+zlib": (
        {
            "serializer": "signed",
            "secret_key": SECRET,
            "compression": "zlib",
            "compression_threshold": 0,
        },
        PICKLE_VALUES,
    ),
}
SIGNED = [name for name, (options, _) in CONFIGS.items() if "secret_key" in options]


def same(got: Any, value: Any) -> bool:
    """Equal, and of the same type at the top level."""
    return bool(got == value) and type(got) is type(value)


@functools.cache
def memory_cache(config: str) -> BaseRedisCache:
    """One memory:// cache per configuration, on a namespace of its own."""
    options, _ = CONFIGS[config]
    return cachecore.from_url(f"memory://props-{uuid.uuid4().hex}", **options)


def newest_server_binary() -> ServerBinary | None:
    """The newest Valkey, else the newest Redis, found on this machine."""
    for kind in ("valkey", "redis"):
        found = [b for b in find_server_binaries() if b.kind == kind]
        if found:
            return max(found, key=lambda b: [int(p) for p in b.version.split(".") if p.isdigit()])
    return None


@pytest.fixture(scope="module")
def server_url(cachecore_servers: ServerPool) -> str:
    """The URL of one real server (shared with the session), through its own plugin."""
    binary = newest_server_binary()
    if binary is None:
        pytest.skip("no server binary found")
    return cachecore_servers.shared(binary).url(binary.kind)


def raw_set(cache: BaseRedisCache, key: str, data: bytes) -> None:
    """Put ``data`` in the server under ``key``, bypassing the serializer."""
    cache._write_client.execute_command("SET", cache._key(key), data)


def stored_form(cache: BaseRedisCache, value: Any) -> bytes:
    """What ``set`` stores for ``value`` under the key "bad" (a signed value is bound to
    its key, so mutations of it are then tried under that same key)."""
    cache.set("bad", value, timeout=0)
    data = cache._write_client.execute_command("GET", cache._key("bad"))
    assert isinstance(data, bytes)
    return data


def ttl(cache: BaseRedisCache, key: str) -> int:
    return int(cache._write_client.execute_command("TTL", cache._key(key)))


# -- round trips --------------------------------------------------------------------------


def check_round_trip(cache: BaseRedisCache, value: Any) -> None:
    assert cache.set("k", value) is True
    assert same(cache.get("k"), value)
    assert cache.set_many({"m1": value, "m2": "other"}) == ["m1", "m2"]
    got = cache.get_many("m1", "missing", "k")
    assert same(got[0], value)
    assert got[1] is None
    assert same(got[2], value)


@pytest.mark.parametrize("config", list(CONFIGS))
@FAST
@given(data=st.data())
def test_what_set_stores_get_returns(config: str, data: st.DataObject) -> None:
    _, values = CONFIGS[config]
    check_round_trip(memory_cache(config), data.draw(values, label="value"))


@pytest.mark.parametrize("config", ["pickle", "json", "msgpack", "signed+zlib"])
@REAL_SERVER
@given(data=st.data())
def test_what_set_stores_get_returns_on_a_real_server(
    config: str, server_url: str, data: st.DataObject
) -> None:
    options, values = CONFIGS[config]
    cache = cachecore.from_url(server_url, key_prefix=f"props-{config}:", **options)
    check_round_trip(cache, data.draw(values, label="value"))


@pytest.mark.parametrize("config", ["json", "msgpack"])
@FAST
@given(value=PICKLE_VALUES)
def test_values_a_format_cannot_keep_raise_or_round_trip(config: str, value: Any) -> None:
    # A value outside the format either is refused by set with SerializationError (a
    # pickle.PickleError) and nothing is stored, or is stored in the format's nearest
    # form (a tuple as a list, a JSON dict key as a str) that get reads back.
    cache = memory_cache(config)
    cache.delete("k")
    try:
        stored = cache.set("k", value)
    except cachecore.SerializationError:
        assert cache.get("k") is None
        return
    assert stored is True
    got = cache.get("k")
    assert got is not None or value is None


# -- keys and prefixes --------------------------------------------------------------------


def check_key(cache: BaseRedisCache, key: str) -> None:
    assert cache.set(key, [key]) is True
    assert cache.get(key) == [key]
    assert cache.has(key) is True
    assert cache.get_many(key, key + "\x00other") == [[key], None]
    assert cache.add(key, "again") is False
    assert cache.delete(key) is True
    assert cache.inc(key, 3) == 3
    assert cache.delete_many(key) == [key]
    assert cache.has(key) is False


@FAST
@given(prefix=st.text(max_size=20), key=st.text())
def test_any_key_and_prefix(prefix: str, key: str) -> None:
    client = memory_cache("pickle")._write_client
    check_key(BaseRedisCache(client, key_prefix=prefix), key)


@REAL_SERVER
@given(prefix=st.text(max_size=20), key=st.text())
def test_any_key_and_prefix_on_a_real_server(server_url: str, prefix: str, key: str) -> None:
    check_key(cachecore.from_url(server_url, key_prefix="props-keys:" + prefix), key)


# -- timeouts -----------------------------------------------------------------------------

SERVER_MAX_TIMEOUT = 10**15
"""Seconds; the servers refuse EX values whose expiry in ms overflows 64 bits (~9.2e15)."""


def expected_ttl(timeout: int | dt.timedelta) -> int:
    if isinstance(timeout, dt.timedelta):
        return math.ceil(timeout.total_seconds())
    return timeout


@FAST
@given(
    timeout=st.integers(min_value=0, max_value=SERVER_MAX_TIMEOUT)
    | st.timedeltas(min_value=dt.timedelta(0))
)
def test_any_timeout_gives_the_ttl_it_means(timeout: int | dt.timedelta) -> None:
    cache = memory_cache("pickle")
    cache.delete_many("s", "a", "m")
    assert cache.set("s", 1, timeout=timeout) is True
    assert cache.add("a", 1, timeout=timeout) is True
    assert cache.set_many({"m": 1}, timeout=timeout) == ["m"]
    seconds = expected_ttl(timeout)
    for key in ("s", "a", "m"):
        if seconds == 0:
            assert ttl(cache, key) == -1, "0 (or a zero timedelta) means never expire"
        else:
            assert seconds - 1 <= ttl(cache, key) <= seconds


@pytest.mark.parametrize("timeout", [10**16, 2**63, 2**64 + 1])
def test_timeout_beyond_what_servers_accept_is_refused(timeout: int) -> None:
    # The servers refuse expiries past ~9.2e15 s; cachecore refuses them before sending.
    cache = memory_cache("json")
    cache.delete("k")
    for store in (
        lambda: cache.set("k", 1, timeout=timeout),
        lambda: cache.add("k", 1, timeout=timeout),
        lambda: cache.set_many({"k": 1}, timeout=timeout),
    ):
        with pytest.raises(ValueError, match="timeout must be at most"):
            store()
        assert cache.has("k") is False


# -- hostile bytes in the server ----------------------------------------------------------


def check_never_raises(cache: BaseRedisCache, payload: bytes) -> Any:
    """Read ``payload`` back through ``get`` and ``get_many``; both must return."""
    raw_set(cache, "bad", payload)
    cache.set("good", "fine")
    got = cache.get("bad")
    many = cache.get_many("good", "bad", "missing")
    assert many[0] == "fine"
    assert many[2] is None
    assert cache.get_dict("bad", "good")["good"] == "fine"
    return got


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Truncations and single-bit flips of ``valid``."""
    truncated = st.integers(0, max(len(valid) - 1, 0)).map(lambda n: valid[:n])
    if not valid:
        return truncated
    flipped = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 7)).map(
        lambda at: valid[: at[0]] + bytes([valid[at[0]] ^ (1 << at[1])]) + valid[at[0] + 1 :]
    )
    return truncated | flipped


# Base values for the pickle corruption runs: numbers and bytes only, so that no flipped
# bit can turn a generated string into a module name that unpickling would import.
_CORRUPTIBLE = st.lists(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | _finite
    | st.binary(max_size=20),
    max_size=8,
)


@pytest.mark.parametrize("config", list(CONFIGS))
@FAST
@given(
    payload=st.binary(max_size=200)
    | st.binary(max_size=100).map(lambda b: b"!" + b)
    | st.binary(max_size=100).map(lambda b: b"\xfez" + b)
    | st.binary(max_size=100).map(lambda b: b"\xfeh" + b)
    | st.binary(max_size=100).map(lambda b: b"\xfek" + b)
)
def test_arbitrary_stored_bytes_never_raise(config: str, payload: bytes) -> None:
    check_never_raises(memory_cache(config), payload)


@pytest.mark.parametrize("config", list(CONFIGS))
@FAST
@given(data=st.data())
def test_corrupted_payloads_never_raise(config: str, data: st.DataObject) -> None:
    cache = memory_cache(config)
    values = _CORRUPTIBLE if "json" not in config else JSON_VALUES
    valid = stored_form(cache, data.draw(values, label="value"))
    check_never_raises(cache, data.draw(mutations(valid), label="corrupted"))


@pytest.mark.parametrize("config", SIGNED)
@FAST
@given(data=st.data())
def test_tampered_signed_payloads_read_as_miss(config: str, data: st.DataObject) -> None:
    cache = memory_cache(config)
    _, values = CONFIGS[config]
    value = data.draw(values.filter(lambda v: type(v) is not int), label="value")
    valid = stored_form(cache, value)
    assert same(cache.get("bad"), value)
    assert check_never_raises(cache, data.draw(mutations(valid), label="tampered")) is None


@REAL_SERVER
@given(payload=st.binary(max_size=300), data=st.data())
def test_hostile_bytes_on_a_real_server_never_raise(
    server_url: str, payload: bytes, data: st.DataObject
) -> None:
    for config in ("pickle", "json", "msgpack", "signed+zlib"):
        options, _ = CONFIGS[config]
        cache = cachecore.from_url(server_url, key_prefix=f"props-bytes-{config}:", **options)
        check_never_raises(cache, payload)
        valid = stored_form(cache, ["a", 1, None, 2.5])
        check_never_raises(cache, data.draw(mutations(valid), label=config))


def test_the_decimal_and_fraction_strategies_are_really_kept() -> None:
    # A spot check that exact-type preservation is not vacuous for pickle.
    cache = memory_cache("pickle")
    for value in (decimal.Decimal("1.10"), fractions.Fraction(1, 3), dt.date(2026, 1, 1)):
        cache.set("k", value)
        assert same(cache.get("k"), value)


def test_msgpack_map_keys_must_be_hashable_when_read_back() -> None:
    # msgpack writes a tuple dict key as an array, which reads back as an (unhashable)
    # list: the value is stored, and reads as a miss (logged). Use scalar keys.
    cache = memory_cache("msgpack")
    assert cache.set("k", {(1, 2): "v"}) is True
    assert cache.get("k") is None
    assert cache.set("k", {"s": 1, 2: 2, b"b": 3, None: 4}) is True
    assert cache.get("k") == {"s": 1, 2: 2, b"b": 3, None: 4}


@pytest.mark.parametrize("config", ["pickle", "signed"])
def test_int_beyond_pythons_digit_limit_round_trips(config: str) -> None:
    # Ints are stored as ASCII digits (for INCRBY), but Python refuses str() of an int with
    # more than 4300 digits: such an int is stored in the format's general encoding instead.
    cache = memory_cache(config)
    assert cache.set("k", 10**5000) is True
    assert cache.get("k") == 10**5000


@pytest.mark.parametrize("config", ["json", "msgpack"])
def test_int_beyond_digit_limit_is_refused_by_json_and_msgpack(config: str) -> None:
    cache = memory_cache(config)
    cache.delete("k")
    with pytest.raises(cachecore.SerializationError):
        cache.set("k", 10**5000)
    assert cache.has("k") is False


def test_what_json_and_msgpack_keep_and_refuse() -> None:
    json_cache, msgpack_cache = memory_cache("json"), memory_cache("msgpack")
    # The nearest form: tuples become lists; JSON dict keys become strings.
    json_cache.set("k", {"t": (1, 2), 1: "int", 1.5: "float", None: "none"})
    assert json_cache.get("k") == {"t": [1, 2], "1": "int", "1.5": "float", "null": "none"}
    msgpack_cache.set("k", {"t": (1, 2), "b": b"\x00", "inf": float("inf")})
    assert msgpack_cache.get("k") == {"t": [1, 2], "b": b"\x00", "inf": float("inf")}
    json_refuses: list[Any] = [float("nan"), float("inf"), b"x", {1, 2}, dt.date(2026, 1, 1)]
    msgpack_refuses: list[Any] = [{1, 2}, dt.date(2026, 1, 1), [2**64]]
    for cache, refused in ((json_cache, json_refuses), (msgpack_cache, msgpack_refuses)):
        cache.delete("refused")
        for value in refused:
            with pytest.raises(cachecore.SerializationError):
                cache.set("refused", value)
        assert cache.has("refused") is False
