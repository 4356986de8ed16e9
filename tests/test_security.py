"""Security: forged and tampered payloads, signing keys, credentials, key-prefix isolation.

Against real servers (the newest Valkey, Redis and KeyDB found, each through its own
plugin); ``memory://`` only where the server plays no part. The conformance suite
already shows a forged pickle is not run under ``json`` and ``signed``; this adds
msgpack, signing with compression, logging of rejected signatures, key rotation,
credential redaction everywhere a message can carry it, and prefixes that overlap.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from helpers import Target, cachecore_warnings, newest_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachecore
from cachecore import (
    BackendError,
    BaseRedisCache,
    ConfigurationError,
    UnknownBackendError,
)
from cachecore.redaction import redact_options, redact_url, scrub, secrets_in
from cachecore.testing.conformance import FORGERY_SINK, forged_pickle
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess

# -- targets ------------------------------------------------------------------------------

TARGETS = newest_targets("valkey", "redis", "keydb")


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server_url(target: Target, cachecore_servers: ServerPool) -> str:
    """The URL of the session's running server for ``target`` (never stopped here)."""
    return cachecore_servers.shared(target.binary).url(target.scheme)


def cache_on(url: str, **options: Any) -> BaseRedisCache:
    options.setdefault("key_prefix", f"sec-{uuid.uuid4().hex[:8]}:")
    return cachecore.from_url(url, **options)


def raw_set(cache: BaseRedisCache, key: str, data: bytes) -> None:
    cache._write_client.execute_command("SET", cache._key(key), data)


def raw_get(cache: BaseRedisCache, key: str) -> bytes:
    data = cache._write_client.execute_command("GET", cache._key(key))
    assert isinstance(data, bytes)
    return data


SECRET = "current-signing-key-0123456789"
OLD_SECRET = "previous-signing-key-012345678"

# -- forged pickles -----------------------------------------------------------------------

FORGED = forged_pickle()
FORGED_COMPRESSED = b"\xfez" + zlib.compress(FORGED)
"""The same forgery in cachecore's zlib framing: compression is no protection."""


@pytest.fixture
def forgery_sink() -> Iterator[list[str]]:
    FORGERY_SINK.clear()
    yield FORGERY_SINK
    FORGERY_SINK.clear()


@pytest.mark.parametrize(
    "options",
    [
        {"serializer": "msgpack"},
        {"serializer": "msgpack", "compression": "zlib"},
        {"serializer": "json", "compression": "zlib"},
        {"serializer": "signed", "secret_key": SECRET, "compression": "zlib"},
        {"serializer": "signed", "secret_key": SECRET, "compression": "zstd"},
        {"serializer": "msgpack", "secret_key": SECRET, "compression": "lz4"},
    ],
    ids=["msgpack", "msgpack+zlib", "json+zlib", "signed+zlib", "signed+zstd", "msgpack+key+lz4"],
)
def test_forged_pickle_is_never_unpickled(
    server_url: str,
    options: dict[str, Any],
    forgery_sink: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"forge-{uuid.uuid4().hex[:8]}:"
    unsafe = cache_on(server_url, key_prefix=prefix, compression="zlib")
    raw_set(unsafe, "plain", FORGED)
    raw_set(unsafe, "compressed", FORGED_COMPRESSED)
    # The control: pickle (compressed or not) runs whatever the server hands it.
    assert unsafe.get_many("plain", "compressed") == [None, None]
    assert forgery_sink == ["unpickled!", "unpickled!"]
    forgery_sink.clear()

    cache = cache_on(server_url, key_prefix=prefix, **options)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("plain") is None
        assert cache.get("compressed") is None
        assert cache.get_many("plain", "compressed") == [None, None]
        assert cache.get_dict("plain") == {"plain": None}
    assert forgery_sink == []
    messages = cachecore_warnings(caplog)
    assert len(messages) == 5, messages
    assert all("cannot decode" in m for m in messages), messages


def test_signed_compression_verifies_before_decompressing(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A compression bomb from whoever can write to the server: 64 MiB of zeros in 64 KiB.
    bomb = b"\xfez" + zlib.compress(b"!" + bytes(64 * 1024 * 1024), 9)
    assert len(bomb) < 100_000
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET, compression="zlib")
    raw_set(cache, "bomb", bomb)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("bomb") is None
    # Rejected by the signature check, before any decompression was attempted.
    assert "value is not signed" in caplog.text


# -- signatures ---------------------------------------------------------------------------


def test_wrong_key_is_rejected_and_logged(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"sig-{uuid.uuid4().hex[:8]}:"
    writer = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=SECRET)
    assert writer.set_many({"a": {"v": 1}, "n": 5}) == ["a", "n"]
    for options in (
        {"serializer": "signed", "secret_key": "someone-elses-key-0123456789"},
        {"serializer": "signed", "secret_key": "x" * 16, "old_secret_keys": ["y" * 16]},
    ):
        stranger = cache_on(server_url, key_prefix=prefix, **options)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert stranger.get("a") is None
            assert stranger.get_many("a", "n") == [None, 5]  # ints are stored unsigned
        messages = cachecore_warnings(caplog)
        assert len(messages) == 2, messages
        assert all("signature does not match any configured key" in m for m in messages)
        assert all(SECRET not in m for m in messages)
    assert writer.get("a") == {"v": 1}


def test_key_rotation_with_old_secret_keys(server_url: str) -> None:
    prefix = f"rot-{uuid.uuid4().hex[:8]}:"
    older = "oldest-signing-key-0123456789"
    before = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=OLD_SECRET)
    before.set("written-before", ["old"])
    oldest = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=older)
    oldest.set("written-long-ago", ["older"])

    # The rotated cache signs with the new key and still reads both old ones; the
    # options come from a URL query here, as they would from CACHECORE_OLD_SECRET_KEYS.
    rotated_url = (
        f"{server_url}?serializer=signed&secret_key={SECRET}"
        f"&old_secret_keys={OLD_SECRET},{older}&key_prefix={prefix}"
    )
    rotated = cachecore.from_url(rotated_url)
    assert rotated.get_many("written-before", "written-long-ago") == [["old"], ["older"]]
    rotated.set("written-after", ["new"])
    assert rotated.get("written-after") == ["new"]
    assert SECRET not in repr(rotated) and OLD_SECRET not in repr(rotated)

    # A cache that only knows an old key cannot read what the new key signed...
    assert before.get("written-after") is None
    # ...and once the old key is retired its values read as misses.
    retired = cache_on(server_url, key_prefix=prefix, serializer="signed", secret_key=SECRET)
    assert retired.get_many("written-before", "written-after") == [None, ["new"]]


def test_tampered_signed_payload_reads_as_miss(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(server_url, serializer="signed", secret_key=SECRET, compression="zlib")
    cache.set("k", {"role": "user", "pad": "x" * 2000})
    valid = raw_get(cache, "k")
    for position in (0, 1, 2, 33, 34, len(valid) // 2, len(valid) - 1):
        tampered = bytearray(valid)
        tampered[position] ^= 0x01
        raw_set(cache, "k", bytes(tampered))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cachecore"):
            assert cache.get("k") is None, position
            assert cache.get_many("k") == [None], position
        assert len(cachecore_warnings(caplog)) == 2
    raw_set(cache, "k", valid[:-1])
    assert cache.get("k") is None
    raw_set(cache, "k", valid)
    assert cache.get("k") == {"role": "user", "pad": "x" * 2000}


def test_signing_configuration_errors_do_not_echo_secrets() -> None:
    short = "short-key"
    with pytest.raises(ConfigurationError, match="at least 16 bytes") as info:
        cachecore.from_url("memory://", serializer="signed", secret_key=short)
    assert short not in str(info.value)
    with pytest.raises(ConfigurationError, match="secret_key"):
        cachecore.from_url("memory://", serializer="signed")
    with pytest.raises(ConfigurationError, match="at least 16 bytes") as info:
        cachecore.from_url(
            "memory://", serializer="signed", secret_key=SECRET, old_secret_keys=[short]
        )
    assert short not in str(info.value) and SECRET not in str(info.value)


# -- credentials --------------------------------------------------------------------------


class Credentials(NamedTuple):
    server: ServerProcess
    url: str
    password: str
    wrong_url: str
    wrong_password: str
    plain_url: str
    """The URL without credentials, for passing them as options."""
    username: str | None


@pytest.fixture(params=["requirepass", "acl-user", "raw-at"])
def credentials(
    request: pytest.FixtureRequest,
    target: Target,
    cachecore_fresh_server: Callable[..., ServerProcess],
) -> Credentials:
    password = f"pw-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    username = None
    if request.param == "raw-at":
        # An "@" written unencoded in the password: the client libraries split the URL at
        # its last "@", so must every redaction (or the tail of the password shows).
        password, wrong = f"pw-{uuid.uuid4().hex}@{password}", f"{wrong}@{uuid.uuid4().hex}"
        server = cachecore_fresh_server(target.binary, password=password)
        address = f"{server.host}:{server.port}/0"
        url = f"{target.scheme}://:{password}@{address}"
        wrong_url = f"{target.scheme}://:{wrong}@{address}"
    else:
        if request.param == "requirepass":
            server = cachecore_fresh_server(target.binary, password=password)
        else:
            username = "alice"
            server = cachecore_fresh_server(target.binary, acl_users={username: password})
        url = server.url(target.scheme, username=username, password=password)
        wrong_url = server.url(target.scheme, username=username, password=wrong)
    return Credentials(
        server=server,
        url=url,
        password=password,
        wrong_url=wrong_url,
        wrong_password=wrong,
        plain_url=f"{target.scheme}://{server.host}:{server.port}/0",
        username=username,
    )


class Leaks:
    """Everything a user could see: checked for the passwords at the end of a test."""

    def __init__(self, *secrets: str) -> None:
        # Each piece between special characters too: a redaction that stops at the wrong
        # "@" shows the tail of a password.
        pieces = {piece for secret in secrets for piece in re.split(r"[@/?#:]", secret)}
        self.secrets = tuple({*secrets, *(p for p in pieces if len(p) >= 8)})
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_error(self, where: str, exc: BaseException) -> None:
        self.add(f"{where}: str", str(exc))
        self.add(f"{where}: repr", repr(exc))
        # The whole chain as a traceback prints it: the cause's message included.
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))

    def add_logs(self, where: str, caplog: pytest.LogCaptureFixture) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in caplog.records:
            self.add(f"{where}: log {record.name}", formatter.format(record))
        self.add(f"{where}: caplog", caplog.text)

    def check(self) -> None:
        assert self.texts
        leaked = [where for where, text in self.texts for secret in self.secrets if secret in text]
        assert leaked == [], leaked


def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: redis-py's, valkey-py's, anyone's
    for name in ("cachecore", "redis", "valkey"):
        caplog.set_level(logging.DEBUG, logger=name)


def _all_calls(cache: BaseRedisCache) -> list[Callable[[], Any]]:
    return [
        lambda: cache.get("a"),
        lambda: cache.get_many("a", "b"),
        lambda: cache.get_dict("a"),
        lambda: cache.set("a", 1),
        lambda: cache.add("b", 1),
        lambda: cache.set_many({"a": 1, "b": 2}),
        lambda: cache.delete("a"),
        lambda: cache.delete_many("a", "b"),
        lambda: cache.has("a"),
        cache.clear,
        lambda: cache.inc("n"),
        lambda: cache.dec("n"),
        cache.ping,
    ]


def _as_options(credentials: Credentials, password: str | None = None) -> dict[str, Any]:
    """The credentials as options instead of in the URL."""
    options: dict[str, Any] = {"password": password or credentials.password}
    if credentials.username:
        options["username"] = credentials.username
    return options


def _check_configuration_errors(credentials: Credentials, scheme: str, leaks: Leaks) -> None:
    """Bad options, and an unknown scheme, in a URL that carries the password."""
    for bad in (
        "?default_timeout=abc",
        "?socket_timeout=abc",
        "?raise_errors=maybe",
        "?serializer=no-such-format",
        "?compression=no-such-codec",
        "?serializer=signed",
    ):
        with pytest.raises(ConfigurationError) as info:
            cachecore.from_url(credentials.url + bad)
        leaks.add_error(f"config {bad}", info.value)
    unknown_scheme = credentials.url.replace(f"{scheme}://", "nosuch://", 1)
    with pytest.raises(UnknownBackendError) as unknown:
        cachecore.from_url(unknown_scheme)
    leaks.add_error("unknown backend", unknown.value)


def _check_wrong_password(
    credentials: Credentials, leaks: Leaks, caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings, BackendError and check_connection with a wrong password."""
    wrong = cache_on(credentials.wrong_url)
    caplog.clear()
    assert wrong.get("a") is None
    assert wrong.set("a", 1) is False
    assert any("Authentication" in m for m in cachecore_warnings(caplog))
    leaks.add_logs("wrong password", caplog)
    with pytest.raises(BackendError) as info:
        cache_on(credentials.wrong_url, raise_errors=True).get("a")
    leaks.add_error("wrong password, raise_errors", info.value)
    with pytest.raises(BackendError) as info:
        type(wrong)(
            credentials.server.host,
            credentials.server.port,
            check_connection=True,
            **_as_options(credentials, credentials.wrong_password),
        )
    leaks.add_error("wrong password, check_connection", info.value)


def _check_command_line(
    credentials: Credentials, leaks: Leaks, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cachecore info/ping/set/get`` output, when the command line is installed."""
    try:
        from cachecore.cli import main
    except ImportError:
        return
    capsys.readouterr()
    options: list[str] = []
    for name, value in _as_options(credentials).items():
        options += ["--option", f"{name}={value}"]
    for argv, expected_status in (
        (["info", credentials.url], 0),
        (["ping", credentials.url], 0),
        (["set", credentials.url, "cli-key", "v"], 0),
        (["get", credentials.url, "cli-key"], 0),
        (["get", credentials.url, "missing-key"], 1),
        ([*options, "info", credentials.plain_url], 0),
        (["info", credentials.wrong_url], 1),
        (["info", credentials.url + "?default_timeout=abc"], 2),
    ):
        status = main(argv)
        out, err = capsys.readouterr()
        assert status == expected_status, (argv[-2:], out, err)
        leaks.add(f"cli {argv[0]} -> {status}: out", out)
        leaks.add(f"cli {argv[0]} -> {status}: err", err)
    # Other secret options: the demo lists the options it was given, with *** for these.
    for name, expected_status in (("ssl_password", 0), ("password", 2)):
        argv = ["--option", f"{name}={credentials.password}", "demo", "memory://"]
        status = main(argv)
        out, err = capsys.readouterr()
        assert status == expected_status, (argv, out, err)
        if status == 0:
            assert f"options from --option: {name}=***" in out
        leaks.add(f"cli demo --option {name} -> {status}: out", out)
        leaks.add(f"cli demo --option {name} -> {status}: err", err)


def test_credentials_never_appear_in_repr_logs_or_errors(
    credentials: Credentials,
    target: Target,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leaks = Leaks(credentials.password, credentials.wrong_password)
    _capture_everything(caplog)
    as_options = _as_options(credentials)
    query = "&".join(f"{k}={v}" for k, v in as_options.items())
    caches = {
        "url": cache_on(credentials.url),
        "url+options": cache_on(credentials.plain_url, **as_options),
        "query": cache_on(f"{credentials.plain_url}?{query}"),
        "constructor": type(cache_on(credentials.url))(
            credentials.server.host, credentials.server.port, **as_options
        ),
    }
    for name, cache in caches.items():
        assert cache.set("a", 1) is True, name
        leaks.add(f"{name}: repr", repr(cache))
        leaks.add(f"{name}: str", str(cache))
        leaks.add(f"{name}: description", cache.description)
    assert credentials.password not in credentials.plain_url

    _check_configuration_errors(credentials, target.scheme, leaks)
    _check_wrong_password(credentials, leaks, caplog)
    _check_command_line(credentials, leaks, capsys)

    # Faults: every method on a stopped server, logging and raising.
    raising = cache_on(credentials.url, raise_errors=True)
    credentials.server.stop()
    caplog.clear()
    for name, cache in caches.items():
        for call in _all_calls(cache):
            call()
        leaks.add_logs(f"faults {name}", caplog)
    assert len(cachecore_warnings(caplog)) == len(caches) * len(_all_calls(raising))
    for call in _all_calls(raising):
        with pytest.raises(BackendError) as info:
            call()
        leaks.add_error("fault, raise_errors", info.value)
    leaks.add_logs("everything", caplog)
    leaks.check()


@pytest.mark.parametrize(
    ("url", "special"),
    [
        ("redis:/:{pw}@localhost:6379/0", ""),
        ("redis:{pw}@localhost:6379/0", ""),
        # A raw "/", "?" or "#" in the password ends the host part for the client
        # library, which then failed on "Port could not be cast ... as '<password>'".
        *(
            (f"{s}://:{{pw}}@localhost:6379/0", c)
            for s in ("redis", "valkey", "keydb")
            for c in "/?#"
        ),
        ("rediss://user:{pw}@localhost:6379/0", "/"),
        ("unix://:{pw}@/tmp/cache.sock", "?"),
        ("valkey+cluster://:{pw}@127.0.0.1:7000/", "/"),
        # Other mistakes in a URL that holds a password.
        ("redis+cluster://:{pw}@127.0.0.1:7000/0/extra", ""),
        ("redis+cluster://:{pw}@127.0.0.1:7000,127.0.0.1:7001/1", ""),
        ("valkey+sentinel://:{pw}@127.0.0.1:26379/mymaster/0/x", ""),
        ("valkey+sentinel://:{pw}@127.0.0.1:x/mymaster/0", ""),
        ("redis://:{pw}@localhost:0/0", ""),
        ("valkey://:{pw}@localhost:6379/db3", ""),
        ("keydb://:{pw}@[::1/0", ""),
        ("memory://:{pw}@name/0", ""),
    ],
)
def test_malformed_url_does_not_echo_the_password(url: str, special: str) -> None:
    head, tail = uuid.uuid4().hex, uuid.uuid4().hex
    password = f"{head}{special}{tail}" if special else head
    with pytest.raises(ConfigurationError) as info:
        cachecore.from_url(url.format(pw=password))
    shown = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    assert not [text for text in shown for piece in (head, tail) if piece in text]
    assert "***" in str(info.value)
    assert "Port could not be cast" not in str(info.value)


def test_secret_options_are_hidden_wherever_they_come_from() -> None:
    secrets = {
        "password": "pw-0123456789",
        "secret_key": "sk-0123456789abcdef",
        "old_secret_keys": ["old-0123456789", "older-0123456789"],
        "ssl_password": "ssl-0123456789",
        "sentinel_password": "sentinel-0123456789",
    }
    shown = redact_options({**secrets, "key_prefix": "app:"})
    assert shown == {**dict.fromkeys(secrets, "***"), "key_prefix": "app:"}
    url = "valkey+sentinel://:pw%2Fx@s1:26379/m/0?" + "&".join(
        f"{name}={value}" for name, value in secrets.items() if isinstance(value, str)
    )
    assert not [v for v in secrets.values() if isinstance(v, str) and v in redact_url(url)]
    # A message that quotes them, as written or decoded, loses them all.
    found = secrets_in([url], secrets)
    message = f"failed: pw/x {url} {secrets} old-0123456789"
    scrubbed = scrub(message, found)
    assert not [s for s in ("pw/x", "pw%2Fx", "0123456789") if s in scrubbed], scrubbed


# -- two apps on one server: key prefixes -------------------------------------------------


def test_separator_terminated_prefixes_never_clear_each_other(server_url: str) -> None:
    run = uuid.uuid4().hex[:6]
    app = cache_on(server_url, key_prefix=f"{run}app:")
    app2 = cache_on(server_url, key_prefix=f"{run}app2:")
    app.set_many({"k": 1, "2:k": 2})
    app2.set_many({"k": 3, "x": 4})
    assert app.clear() is True
    assert app.get_many("k", "2:k") == [None, None]
    assert app2.get_many("k", "x") == [3, 4]
    app.set("k", 1)
    assert app2.clear() is True
    assert app.get("k") == 1


def test_a_prefix_that_extends_another_lies_inside_its_namespace(server_url: str) -> None:
    run = uuid.uuid4().hex[:6]
    app = cache_on(server_url, key_prefix=f"{run}app")
    app2 = cache_on(server_url, key_prefix=f"{run}app2")
    app.set_many({"k": 1, ":x": 2})
    app2.set_many({"k": 3, ":y": 4})
    # Clearing the longer prefix spares every key of the shorter one...
    assert app2.clear() is True
    assert app.get_many("k", ":x") == [1, 2]
    # ...but every key of "app2" is also a key of "app" ("app" + "2k" == "app2" + "k"),
    # so clearing "app" takes them: end prefixes with a separator ("app:", "app2:").
    app2.set("k", 3)
    assert app.get("2k") == 3
    assert app.clear() is True
    assert app2.get("k") is None


_GLOBBY = st.text(alphabet="*?[]\\^!-ab:", min_size=1, max_size=8)


@settings(
    deadline=None,
    max_examples=40,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(first=_GLOBBY, second=_GLOBBY)
def test_clear_spares_any_prefix_it_does_not_contain(
    server_url: str, first: str, second: str
) -> None:
    # Glob characters in a prefix are matched literally by clear(): with two prefixes
    # neither of which starts with the other, clearing one never touches the other.
    if first.startswith(second) or second.startswith(first):
        return
    run = uuid.uuid4().hex[:6]
    mine = cache_on(server_url, key_prefix=run + first)
    theirs = cache_on(server_url, key_prefix=run + second)
    mine.set_many({"k": 1, "*": 2, "": 3})
    theirs.set_many({"k": 4, "*": 5, "": 6})
    assert mine.clear() is True
    assert mine.get_many("k", "*", "") == [None, None, None]
    assert theirs.get_many("k", "*", "") == [4, 5, 6]
    assert theirs.clear() is True


@settings(deadline=None, max_examples=100, database=None)
@given(first=_GLOBBY, second=_GLOBBY)
def test_clear_spares_other_prefixes_on_memory(first: str, second: str) -> None:
    if first.startswith(second) or second.startswith(first):
        return
    namespace = f"memory://sec-{uuid.uuid4().hex}"
    mine = cachecore.from_url(namespace, key_prefix=first)
    theirs = cachecore.from_url(namespace, key_prefix=second)
    mine.set_many({"k": 1, "*": 2})
    theirs.set_many({"k": 4, "*": 5})
    assert mine.clear() is True
    assert mine.get_many("k", "*") == [None, None]
    assert theirs.get_many("k", "*") == [4, 5]


@pytest.mark.parametrize("scheme", ["redis", "valkey"])
def test_unknown_client_option_is_a_configuration_error_at_once(scheme: str) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with pytest.raises(ConfigurationError, match="no_such_option") as info:
        cachecore.from_url(f"{scheme}://:{password}@127.0.0.1:1/0?no_such_option=1")
    assert password not in str(info.value)
