"""Serializer defects found from outside (issue 10), each on a real server.

* compression is safe under many threads and across ``fork`` (zstd crashed before);
* signed values are bound to their full key and to their expiry; bare integers and
  values in the first signed format read as misses; key rotation still works;
* reads never decompress more than ``max_value_size``: a compression bomb written by
  someone else reads as a miss, quickly, in bounded memory;
* ints past Python's str() digit limit behave as documented.

The server is the newest Valkey found; the behaviour under test is the client's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import random
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from helpers import cachecore_warnings

import cachecore
from cachecore import BaseRedisCache, SerializationError, serializers
from cachecore.serializers import SignedSerializer
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import find_server_binaries

SECRET = "serializer-test-secret-0123456789"
OLD_SECRET = "serializer-old-secret-0123456789"


@pytest.fixture(scope="module")
def server_url(cachecore_servers: ServerPool) -> str:
    """The newest Valkey's URL (binaries are sorted by kind, then version)."""
    valkeys = [b for b in find_server_binaries() if b.kind == "valkey"]
    if not valkeys:
        pytest.skip("no valkey-server binary found")
    return cachecore_servers.shared(valkeys[-1]).url("valkey")


def cache_on(url: str, **options: Any) -> BaseRedisCache:
    options.setdefault("key_prefix", f"ser-{uuid.uuid4().hex[:8]}:")
    return cachecore.from_url(url, **options)


def raw_set(cache: BaseRedisCache, key: str, data: bytes) -> None:
    cache.client.execute_command("SET", cache._key(key), data)


def raw_get(cache: BaseRedisCache, key: str) -> bytes:
    data = cache.client.execute_command("GET", cache._key(key))
    assert isinstance(data, bytes)
    return data


# -- 1. compression under threads and fork -------------------------------------------------

THREADS = 8
ROUNDS = 400


def _hammer(url: str, options: dict[str, Any]) -> int:
    """Many threads set and read back compressed values on one cache, and a child forked
    in the middle does the same; prints a JSON report. Run in a subprocess (see below)."""
    cache = cachecore.from_url(url, **options)
    problems: list[str] = []
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("cachecore").addHandler(Collect(logging.WARNING))

    def work(worker: int, rounds: int) -> None:
        rng = random.Random(worker)
        try:
            for i in range(rounds):
                value = {"w": worker, "i": i, "text": "abc" * rng.randrange(10, 3000)}
                key = f"{worker}:{i % 16}"
                if not cache.set(key, value) or cache.get(key) != value:
                    problems.append(f"worker {worker} round {i}: {key} did not read back")
                if i % 10 == 0:
                    batch = {f"{key}:{n}": [value, n] for n in range(4)}
                    if cache.set_many(batch) != list(batch) or cache.get_many(*batch) != list(
                        batch.values()
                    ):
                        problems.append(f"worker {worker} round {i}: a batch did not read back")
        except Exception as exc:  # reported, not raised: the report is the result
            problems.append(f"worker {worker}: {type(exc).__name__}: {exc}")

    def start(workers: range, rounds: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=work, args=(w, rounds)) for w in workers]
        for thread in threads:
            thread.start()
        return threads

    workers = start(range(THREADS), ROUNDS)
    # Fork while the workers compress: the child's copies of their compressors may be
    # mid-call, and must never be used by the child's own threads.
    time.sleep(0.2)
    child = os.fork()
    if child == 0:
        problems.clear()
        warnings.clear()
        for thread in start(range(100, 104), ROUNDS // 4):
            thread.join()
        report = {"child problems": problems[:10], "child warnings": warnings[:10]}
        print(json.dumps(report), file=sys.stderr, flush=True)
        os._exit(1 if problems or warnings else 0)
    for thread in workers:
        thread.join()
    _, status = os.waitpid(child, 0)
    if status != 0:
        problems.append(f"the forked child failed: wait status {status}")
    print(json.dumps({"problems": problems[:10], "warnings": warnings[:10]}))
    return 1 if problems or warnings else 0


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "zstd"},
        {"compression": "zstd", "serializer": "signed", "secret_key": SECRET},
        {"compression": "zlib", "serializer": "json"},
        {"compression": "lz4", "serializer": "msgpack"},
    ],
    ids=["zstd", "signed+zstd", "json+zlib", "msgpack+lz4"],
)
def test_compression_is_safe_under_threads_and_fork(
    server_url: str, options: dict[str, Any]
) -> None:
    # In a subprocess: a crash (the zstd defect segfaulted or aborted) fails this test
    # instead of taking the test run down.
    options = {**options, "compression_threshold": 0, "key_prefix": f"thr-{uuid.uuid4().hex}:"}
    done = subprocess.run(
        [sys.executable, __file__, server_url, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stdout.strip().splitlines()[-1:] or ["(no report)"]
    assert done.returncode == 0, (done.returncode, report, done.stderr[-2000:])


# -- 2. signed values are bound to their key and expiry ------------------------------------


def test_a_signed_value_copied_to_another_key_reads_as_a_miss(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, key_prefix="app:role:", serializer="signed", secret_key=SECRET)
    cache.set_many({"alice": {"role": "admin"}, "mallory": {"role": "user"}})
    raw_set(cache, "mallory", raw_get(cache, "alice"))
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("mallory") is None
        assert cache.get_many("alice", "mallory") == [{"role": "admin"}, None]
    messages = cachecore_warnings(caplog)
    assert len(messages) == 2, messages
    assert all("signature does not match" in m for m in messages), messages

    # The prefix is part of the signed key: another cache with the same secret (another
    # application, or a tenant's prefix) cannot be fed this cache's values either.
    other = cache_on(server_url, key_prefix="app:other:", serializer="signed", secret_key=SECRET)
    raw_set(other, "alice", raw_get(cache, "alice"))
    assert other.get("alice") is None


@pytest.mark.parametrize("forged", [b"1", b"0", b"-7"])
def test_a_bare_integer_over_a_signed_key_reads_as_a_miss(
    server_url: str, forged: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET)
    cache.set_many({"is_admin": False, "count": 5})
    assert cache.get_many("is_admin", "count") == [False, 5]
    raw_set(cache, "is_admin", forged)
    raw_set(cache, "count", forged)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get_many("is_admin", "count") == [None, None]
        assert cache.get("count") is None
    messages = cachecore_warnings(caplog)
    assert len(messages) == 3, messages
    assert all("bare integer" in m and "signed_ints=false" in m for m in messages), messages


def test_counters_on_a_signed_cache(server_url: str, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"ctr-{uuid.uuid4().hex[:8]}:"
    strict = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=SECRET)
    # inc/dec work (the server's reply is their result), but get cannot tell the
    # counter they leave from a forged integer: it reads as a miss.
    assert strict.inc("hits") == 1
    assert strict.dec("hits", 3) == -2
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert strict.get("hits") is None
        # An int that set stored is signed: it reads back, and is no counter.
        assert strict.set("n", 41) is True
        assert strict.get("n") == 41
        assert strict.inc("n") is None
    messages = cachecore_warnings(caplog)
    assert len(messages) == 2, messages
    assert "bare integer" in messages[0] and "not an integer" in messages[1], messages

    # signed_ints=false: ints are bare ASCII digits, as in every unsigned format.
    url = f"{server_url}?signed_ints=false&key_prefix={prefix}"
    counting = cachecore.from_url(url, serializer="signed", secret_key=SECRET)
    assert counting.get_many("hits", "n") == [-2, 41]
    assert counting.set("m", 41) is True
    assert counting.inc("m") == 42
    assert counting.get("m") == 42
    assert counting.get("m") == 42
    raw_set(counting, "m", b"7")  # the price: anyone can set it
    assert counting.get("m") == 7


def test_a_signed_value_is_refused_past_its_signed_expiry(
    server_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET, compression="zlib")
    cache.set("session", {"user": "alice"}, timeout=60)
    cache.set("forever", {"user": "bob"}, timeout=0)
    # Someone with write access makes the value outlive its TTL: PERSIST, or a copy
    # stored again without a TTL after the server expired it.
    cache.client.execute_command("PERSIST", cache._key("session"))
    saved = raw_get(cache, "session")
    cache.set("copied", "short", timeout=60)
    copy = raw_get(cache, "copied")
    cache.delete("copied")
    raw_set(cache, "copied", copy)
    assert cache.get_many("session", "copied", "forever") == [
        {"user": "alice"},
        "short",
        {"user": "bob"},
    ]

    later = time.time() + 60 + serializers.EXPIRY_LEEWAY + 1
    monkeypatch.setattr(serializers, "_now", lambda: later)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("session") is None
        assert cache.get_many("session", "copied", "forever") == [None, None, {"user": "bob"}]
    messages = cachecore_warnings(caplog)
    assert len(messages) == 3, messages
    assert all("past the expiry it was signed with" in m for m in messages), messages
    assert raw_get(cache, "session") == saved  # a miss, not a delete

    # Within the leeway (clocks of two hosts a little apart) it still reads.
    monkeypatch.setattr(serializers, "_now", lambda: later - 2)
    assert cache.get("session") == {"user": "alice"}


def test_touch_signs_the_new_expiry(
    server_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A new TTL alone would leave the old signed expiry: touch stores the value again.
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET)
    cache.set("s", {"v": 1}, timeout=60)
    assert cache.touch("s", 3600) is True
    assert 3590 < int(cache.client.execute_command("TTL", cache._key("s"))) <= 3600
    now = time.time()
    monkeypatch.setattr(serializers, "_now", lambda: now + 120)
    assert cache.get("s") == {"v": 1}
    assert cache.touch("s", 0) is True
    assert int(cache.client.execute_command("TTL", cache._key("s"))) == -1
    monkeypatch.setattr(serializers, "_now", lambda: now + 10 * 365 * 86400)
    assert cache.get("s") == {"v": 1}
    assert cache.touch("missing", 10) is False
    raw_set(cache, "forged", b"!not signed")
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.touch("forged", 10) is False  # unreadable: a miss, left as it is
    assert raw_get(cache, "forged") == b"!not signed"
    assert len(cachecore_warnings(caplog)) == 1


def test_values_in_the_first_signed_format_read_as_a_miss(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET)
    payload = b"!" + pickle.dumps({"role": "admin"})
    legacy = b"\xfeh" + hmac.digest(SECRET.encode(), payload, hashlib.sha256) + payload
    raw_set(cache, "old", legacy)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("old") is None
    messages = cachecore_warnings(caplog)
    assert len(messages) == 1 and "signed by an earlier cachecore" in messages[0], messages
    cache.set("old", {"role": "admin"})  # written again: readable
    assert cache.get("old") == {"role": "admin"}


def test_key_rotation_keeps_the_key_binding(server_url: str) -> None:
    prefix = f"rot-{uuid.uuid4().hex[:8]}:"
    before = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=OLD_SECRET)
    before.set_many({"a": ["old a"], "b": ["old b"]}, timeout=600)
    rotated = cache_on(
        server_url,
        key_prefix=prefix,
        serializer="signed",
        secret_key=SECRET,
        old_secret_keys=[OLD_SECRET],
    )
    assert rotated.get_many("a", "b") == [["old a"], ["old b"]]
    raw_set(rotated, "b", raw_get(rotated, "a"))
    assert rotated.get_many("a", "b") == [["old a"], None]
    rotated.set("c", ["new"])
    assert rotated.get("c") == ["new"]
    assert before.get("c") is None


def test_signed_serializer_refuses_to_sign_without_a_key() -> None:
    signer = SignedSerializer(serializers.PickleSerializer(), SECRET)
    with pytest.raises(TypeError, match="dumps_for"):
        signer.dumps({"a": 1})
    with pytest.raises(TypeError, match="loads_for"):
        signer.loads(b"anything")
    assert isinstance(signer, cachecore.KeyedSerializer)
    data = signer.dumps_for("k", {"a": 1}, 0)
    assert signer.loads_for(b"k", data) == {"a": 1}  # str and bytes keys bind alike
    with pytest.raises(ValueError, match="signature"):
        signer.loads_for("k2", data)


# -- 3. decompression is bounded by max_value_size -----------------------------------------


def zlib_bomb(mib: int) -> bytes:
    """A valid zlib stream of ``mib`` MiB of zeros, about 1 KiB per MiB, built without
    compressing them all: fully flushed blocks decode independently, so one repeats;
    the Adler-32 of n zeros is (n mod 65521) << 16 | 1."""
    compressor = zlib.compressobj(9)
    head = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()[:-4]
    checksum = (((mib << 20) % 65521) << 16) | 1
    return head + block * (mib - 1) + tail + checksum.to_bytes(4, "big")


def _zstd_bomb(mib: int, declared: bool) -> bytes:
    import zstandard

    compressor = zstandard.ZstdCompressor(write_content_size=declared)
    return bytes(compressor.compress(bytes(mib << 20)))


def _lz4_bomb(mib: int, declared: bool) -> bytes:
    import lz4.frame

    return bytes(lz4.frame.compress(bytes(mib << 20), store_size=declared))


BOMBS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "zlib": ("zlib", lambda: b"\xfez" + zlib_bomb(256)),
    "zstd": ("zstd", lambda: b"\xfeZ" + _zstd_bomb(256, declared=True)),
    "zstd-undeclared": ("zstd", lambda: b"\xfeZ" + _zstd_bomb(256, declared=False)),
    "lz4": ("lz4", lambda: b"\xfel" + _lz4_bomb(256, declared=True)),
    "lz4-undeclared": ("lz4", lambda: b"\xfel" + _lz4_bomb(256, declared=False)),
}


def read_bounded(
    cache: BaseRedisCache, caplog: pytest.LogCaptureFixture
) -> tuple[list[Any], float, int]:
    """get and get_many of the key "bomb" (beside "fine"): results, seconds, peak bytes."""
    caplog.clear()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            results = [cache.get("bomb"), cache.get_many("fine", "bomb")]
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return results, elapsed, peak


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_compression_bomb_reads_as_a_miss_within_max_value_size(
    server_url: str, bomb: str, caplog: pytest.LogCaptureFixture
) -> None:
    algorithm, build = BOMBS[bomb]
    data = build()
    assert len(data) < 2 << 20  # 256 MiB of zeros in at most 2 MB
    cache = cache_on(server_url, compression=algorithm, max_value_size=1 << 20)
    cache.set("fine", "x" * 100_000)
    raw_set(cache, "bomb", data)
    results, elapsed, peak = read_bounded(cache, caplog)
    assert results == [None, ["x" * 100_000, None]]
    assert peak < 16 << 20, peak  # the bomb's bytes, and at most ~2 MiB of output
    assert elapsed < 5, elapsed
    messages = cachecore_warnings(caplog)
    assert len(messages) == 2, messages  # one per read of the bomb
    assert all("more than max_value_size=1048576" in m for m in messages), messages


def test_the_reported_two_megabyte_zlib_value_is_bounded_by_default(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The report: a 2 MB zlib value (2 GiB of zeros) took 58 s and 8 GB to read. With
    # the default max_value_size (512 MiB) reading it stops at 512 MiB of output.
    cache = cache_on(server_url, compression="zlib")
    cache.set("fine", "y" * 100_000)
    bomb = b"\xfez" + zlib_bomb(2048)
    assert 2_000_000 < len(bomb) < 2_200_000
    raw_set(cache, "bomb", bomb)
    del bomb
    results, elapsed, peak = read_bounded(cache, caplog)
    assert results == [None, ["y" * 100_000, None]]
    assert len(cachecore_warnings(caplog)) == 2
    assert elapsed < 30, elapsed
    assert peak < (512 << 20) + (64 << 20), peak  # the output up to the bound, once


@pytest.mark.parametrize("algorithm", ["zlib", "zstd", "lz4"])
def test_set_refuses_what_get_would_refuse(server_url: str, algorithm: str) -> None:
    # The bound applies before compression too, so a value set stores always reads back.
    cache = cache_on(server_url, compression=algorithm, max_value_size=1 << 20)
    assert cache.set("at-bound", "z" * ((1 << 20) - 100)) is True
    assert cache.get("at-bound") == "z" * ((1 << 20) - 100)
    with pytest.raises(cachecore.ValueTooLargeError, match="before compression"):
        cache.set("over", "z" * (2 << 20))
    assert cache.has("over") is False


# -- 4. ints past Python's str() digit limit -----------------------------------------------

LIMIT = sys.get_int_max_str_digits()


@pytest.mark.parametrize("options", [{}, {"serializer": "signed", "secret_key": SECRET}])
def test_ints_past_the_digit_limit_round_trip_pickled(
    server_url: str, options: dict[str, Any]
) -> None:
    cache = cache_on(server_url, **options)
    at_limit, past_limit = 10 ** (LIMIT - 1), 10**LIMIT
    assert cache.set_many({"at": at_limit, "past": past_limit}) == ["at", "past"]
    assert cache.get_many("at", "past") == [at_limit, past_limit]
    if not options:  # pickle: ASCII digits up to the limit, pickled past it
        assert raw_get(cache, "at") == str(at_limit).encode()
        assert raw_get(cache, "past")[:1] == b"!"
    assert cache.inc("past") is None  # not a counter (nor is any int over 64 bits)


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_ints_past_the_digit_limit_are_refused_by_json_and_msgpack(
    server_url: str, serializer: str
) -> None:
    cache = cache_on(server_url, serializer=serializer)
    assert cache.set("at", 10 ** (LIMIT - 1)) is True
    assert cache.get("at") == 10 ** (LIMIT - 1)
    with pytest.raises(SerializationError):
        cache.set("past", 10**LIMIT)
    assert cache.has("past") is False


@pytest.mark.parametrize("serializer", ["pickle", "json", "msgpack"])
def test_stored_digits_past_the_limit_read_as_a_miss(
    server_url: str, serializer: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, serializer=serializer)
    raw_set(cache, "long", b"9" * (LIMIT + 1))
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("long") is None
    messages = cachecore_warnings(caplog)
    assert len(messages) == 1 and f"({LIMIT} digits)" in messages[0], messages


if __name__ == "__main__":
    sys.exit(_hammer(sys.argv[1], json.loads(sys.argv[2])))
