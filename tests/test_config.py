"""Choosing a backend by configuration: URLs, mappings, environment, pyproject.toml."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import cachecore_warnings

import cachecore
from cachecore.config import find_pyproject, resolve_config
from cachecore.errors import ConfigurationError, UnknownSerializerError
from cachecore.redaction import redact_url
from cachecore.serializers import (
    CompressedSerializer,
    JsonSerializer,
    PickleSerializer,
    SignedSerializer,
)
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess
from cachecore.urls import ServerAddress, parse_server_url


def test_memory_url_and_query_options() -> None:
    cache = cachecore.from_url(
        "memory://cfg?key_prefix=app:&default_timeout=60&serializer=json&raise_errors=yes"
    )
    assert cache.key_prefix == "app:"
    assert cache.default_timeout == 60
    assert isinstance(cache.serializer, JsonSerializer)
    assert cache.raise_errors is True


def test_keyword_options_override_query() -> None:
    cache = cachecore.from_url(
        "memory://cfg?key_prefix=a:", key_prefix="b:", default_timeout=dt.timedelta(minutes=1)
    )
    assert cache.key_prefix == "b:"
    assert cache.default_timeout == 60


def test_memory_namespaces_share_data_by_name() -> None:
    first = cachecore.from_url("memory://shared-ns")
    second = cachecore.from_url("memory://shared-ns")
    other = cachecore.from_url("memory://other-ns")
    first.set("k", "v")
    assert second.get("k") == "v"
    assert other.get("k") is None
    assert cachecore.from_url("memory://shared-ns/1").get("k") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "scheme://"),
        ("memory://x?default_timeout=soon", "default_timeout"),
        ("memory://x?raise_errors=maybe", "raise_errors"),
        ("memory://x/notadb", "db"),
        ("memory://x?bogus_option=1", "bogus_option"),
        ("memory://x?serializer=signed", "secret_key"),
        ("memory://x?compression=brotli", "brotli"),
    ],
)
def test_bad_configuration_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cachecore.from_url(url)


def test_unknown_serializer_lists_choices() -> None:
    with pytest.raises(UnknownSerializerError, match="json, msgpack, pickle, signed"):
        cachecore.from_url("memory://", serializer="yaml")


def test_url_must_be_str() -> None:
    with pytest.raises(TypeError, match="url"):
        cachecore.from_url(b"memory://")  # type: ignore[arg-type]


def test_signed_and_compressed_serializer_stack() -> None:
    cache = cachecore.from_url(
        "memory://",
        serializer="signed",
        secret_key="k" * 32,
        compression="zlib",
        signed_serializer="json",
    )
    assert isinstance(cache.serializer, SignedSerializer)
    assert isinstance(cache.serializer.inner, CompressedSerializer)
    assert isinstance(cache.serializer.inner.inner, JsonSerializer)
    cache.set("k", {"a": "x" * 5000})
    assert cache.get("k") == {"a": "x" * 5000}


def test_secret_key_too_short() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        cachecore.from_url("memory://", serializer="signed", secret_key="short")


def test_from_config_with_url_or_backend() -> None:
    cache = cachecore.from_config({"url": "memory://conf", "key_prefix": "p:"})
    assert cache.key_prefix == "p:"
    cache = cachecore.from_config({"backend": "memory", "default_timeout": "30"})
    assert cache.default_timeout == 30
    with pytest.raises(ConfigurationError, match="url"):
        cachecore.from_config({"key_prefix": "p:"})
    with pytest.raises(ConfigurationError, match="not both"):
        cachecore.from_config({"url": "memory://", "backend": "memory"})


def test_get_cache_defaults_to_memory(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()  # the project root: the search stops here
    resolved = resolve_config()
    assert resolved.url == "memory://"
    assert resolved.is_default
    assert resolved.source == (
        "nothing configured: the embedded default; no CACHECORE_URL, no pyproject.toml in "
        f"{tmp_path} or its parents up to the repository root {tmp_path}"
    )
    cache = cachecore.get_cache()
    assert cache.set("k", 1) and cache.get("k") == 1
    assert isinstance(cache.serializer, PickleSerializer)


def test_get_cache_from_environment(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.cachecore]\nurl = "memory://toml"\n')
    monkeypatch.setenv("CACHECORE_URL", "memory://env")
    monkeypatch.setenv("CACHECORE_KEY_PREFIX", "envapp:")
    monkeypatch.setenv("CACHECORE_DEFAULT_TIMEOUT", "42")
    monkeypatch.setenv("CACHECORE_TEST_SOMETHING", "ignored: not an option")
    resolved = resolve_config()
    assert resolved.source == (
        "environment variable CACHECORE_URL + CACHECORE_DEFAULT_TIMEOUT + CACHECORE_KEY_PREFIX"
    )
    assert resolved.variables == ("CACHECORE_DEFAULT_TIMEOUT", "CACHECORE_KEY_PREFIX")
    cache = cachecore.get_cache()
    assert (cache.key_prefix, cache.default_timeout) == ("envapp:", 42)
    assert cachecore.get_cache(key_prefix="override:").key_prefix == "override:"


def test_unknown_environment_setting_is_an_error(monkeypatch: Any) -> None:
    monkeypatch.setenv("CACHECORE_URL", "memory://env")
    monkeypatch.setenv("CACHECORE_DEFAULT_TIMOUT", "42")
    with pytest.raises(ConfigurationError, match="CACHECORE_DEFAULT_TIMOUT"):
        cachecore.get_cache()


def test_get_cache_from_pyproject(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cachecore]\nurl = "memory://toml"\nkey_prefix = "tomlapp:"\ndefault_timeout = 7\n'
    )
    resolved = resolve_config()
    assert resolved.source.startswith("[tool.cachecore] in")
    cache = cachecore.get_cache()
    assert (cache.key_prefix, cache.default_timeout) == ("tomlapp:", 7)


def test_pyproject_table_without_url(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.cachecore]\nkey_prefix = "x"\n')
    with pytest.raises(ConfigurationError, match="url"):
        cachecore.get_cache()


def test_pyproject_without_table_falls_back(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    resolved = resolve_config()
    assert resolved.url == "memory://"
    assert resolved.source == (
        "nothing configured: the embedded default; no CACHECORE_URL, no [tool.cachecore] in "
        f"{tmp_path / 'pyproject.toml'}"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@host:1/0", "redis://user:***@host:1/0"),
        ("redis://:secret@host:1/0", "redis://:***@host:1/0"),
        ("redis://host:1/0", "redis://host:1/0"),
        ("redis://user@host:1/0", "redis://user@host:1/0"),
        ("localhost:6379?password=hunter2", "localhost:6379?password=***"),
        ("memory://?secret_key=k&key_prefix=a:", "memory://?secret_key=***&key_prefix=a:"),
        # A raw "@" in the password: split at the last "@", as the client libraries do.
        ("redis://:pa@ss@host:1/0", "redis://:***@host:1/0"),
        ("redis://u:p@a@ss@host:1/0?client_name=x", "redis://u:***@host:1/0?client_name=x"),
        # A raw "/", "?" or "#" ends the host part early: every "@" after it counts.
        ("redis://:pa/ss@host:1/0", "redis://:***@host:1/0"),
        ("redis://:pa?ss@host:1/0", "redis://:***@host:1/0"),
        ("redis://:pa#ss@host:1/0", "redis://:***@host:1/0"),
        ("redis://u:12/34@host/0", "redis://u:***@host/0"),
        ("redis://u:12?x@host", "redis://u:***@host"),
        # An "@" that is plainly not credentials stays.
        ("redis://host:1/0?client_name=me@example", "redis://host:1/0?client_name=me@example"),
        ("unix:///run/redis@main.sock?db=1", "unix:///run/redis@main.sock?db=1"),
        ("unix://:pw@/run/redis@main.sock", "unix://:***@/run/redis@main.sock"),
        (
            "valkey+sentinel://:pw@s1:26379,s2:26379/m/0?sentinel_password=sp&ssl_password=kp",
            "valkey+sentinel://:***@s1:26379,s2:26379/m/0?sentinel_password=***&ssl_password=***",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_malformed_url_error_hides_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        cachecore.from_url("localhost:6379?password=hunter2")
    assert "hunter2" not in str(info.value)


def test_environment_options_apply_to_pyproject_and_default(
    monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CACHECORE_KEY_PREFIX", "fromenv:")
    assert cachecore.get_cache().key_prefix == "fromenv:"
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cachecore]\nurl = "memory://toml"\nkey_prefix = "fromfile:"\n'
    )
    assert cachecore.get_cache().key_prefix == "fromenv:"


def test_get_cache_url_override(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    (tmp_path / "pyproject.toml").write_text('[tool.cachecore]\nbackend = "memory"\n')
    cache = cachecore.get_cache(url="memory://override?key_prefix=o:")
    assert cache.key_prefix == "o:"
    assert cache.description == "memory://override"


@pytest.mark.parametrize("algorithm", ["zlib", "zstd", "lz4"])
def test_compression_algorithms_and_levels(algorithm: str) -> None:
    cache = cachecore.from_url(
        "memory://", compression=algorithm, compression_threshold=10, compression_level=1
    )
    value = {"text": "abc" * 10_000}
    assert cache.set("k", value) is True
    assert len(cache.client.get("k")) < 2000
    assert cache.get("k") == value


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("{app}:", True),
        ("a{b}c:", True),
        ("{}:", False),
        ("{app:", False),
        ("app}{x}", True),
        ("plain:", False),
        ("}{", False),
    ],
)
def test_hash_tag_detection(prefix: str, expected: bool) -> None:
    from cachecore.redis_base import has_hash_tag

    assert has_hash_tag(prefix) is expected


# -- malformed URLs and options: always a ConfigurationError, at build time --------------

_DB_PATH = "database must be one whole number >= 0"
_PORT = "port must be a whole number from 1 to 65535"

MALFORMED = [
    # Database paths the client libraries would misread (db3 -> 0, 1/2 -> 12, -1 sent as is).
    *(
        (f"{scheme}://127.0.0.1:6379/{path}", _DB_PATH)
        for scheme in ("redis", "rediss", "valkey", "valkeys", "keydb", "keydbs")
        for path in ("db3", "1/2", "3/extra", "abc", "1.5", "-1", "/0", "0/", "+1", " 1", "\u0661")
    ),
    # Ports.
    *(
        (f"{scheme}://127.0.0.1:{port}/0", _PORT)
        for scheme in ("redis", "valkey", "keydb")
        for port in ("0", "65536", "70000", "abc", "", "-1", "6379x")
    ),
    ("redis://[::1", "Invalid IPv6 URL"),
    ("valkey://[::1]x:6379/0", "IPv6"),
    ("valkey://::1:6379/0", "IPv6 address in brackets"),
    ("redis://h1:6379,h2:6379/0", "one host only"),
    ("redis://127.0.0.1:6379/0#frag", "no #fragment"),
    # Unix sockets: the database is ?db=N.
    ("unix:///tmp/cache.sock?db=abc", "option 'db'"),
    ("unix:///tmp/cache.sock?db=-2", "option 'db' must be a whole number >= 0"),
    ("unix://", "unix://[[user]:password@]/path/to/socket"),
    ("unix://localhost/tmp/cache.sock", "unix://[[user]:password@]/path/to/socket"),
    ("redis://127.0.0.1:6379?db=-1", "option 'db' must be a whole number >= 0"),
    ("redis://127.0.0.1:6379?db=1.5", "option 'db'"),
    # memory://
    ("memory://x/-1", _DB_PATH),
    ("memory://x/1/2", _DB_PATH),
    ("memory://x/db3", _DB_PATH),
    ("memory://x/16", "databases 0 to 15"),
    ("memory://x:6379", "namespace name"),
    ("memory://x?db=1", "memory://name/1"),
    ("memory://x?password=p", "does not take 'password'"),
    # Cluster and Sentinel.
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/1", "only database 0"),
    ("redis+cluster://127.0.0.1:7000/0/x", "no path beyond the database"),
    ("valkey+cluster://127.0.0.1:0/", "bad port: not from 1 to 65535"),
    ("valkey+cluster://127.0.0.1:x/", "bad port: not a whole number"),
    ("valkey+cluster://[::1/", "IPv6"),
    ("valkey+sentinel://127.0.0.1:26379/mymaster/-1", _DB_PATH),
    ("valkey+sentinel://127.0.0.1:26379/mymaster/db3", _DB_PATH),
    ("valkey+sentinel://127.0.0.1:26379/mymaster/0/x", "/service_name/db"),
    ("valkey+sentinel://127.0.0.1:26379/mymaster?db=-1", "whole number >= 0"),
    # Options out of their range.
    ("memory://?default_timeout=-1", "'default_timeout' must be a whole number of seconds >= 0"),
    ("redis://127.0.0.1:6379/0?default_timeout=-5", "'default_timeout'"),
    ("memory://?default_timeout=1.5", "'default_timeout'"),
    ("memory://?default_timeout=9e99", "'default_timeout'"),
    ("redis://127.0.0.1:6379/0?near_cache_size=0", "'near_cache_size' must be a whole number >= 1"),
    ("redis://127.0.0.1:6379/0?protocol=7", "'protocol' must be one of 2, 3"),
    (
        "redis://127.0.0.1:6379/0?socket_timeout=-1",
        "'socket_timeout' must be a number of seconds > 0",
    ),
    ("valkey://127.0.0.1:6379/0?socket_timeout=0", "'socket_timeout'"),
    ("valkey://127.0.0.1:6379/0?socket_connect_timeout=nan", "'socket_connect_timeout'"),
    ("valkey://127.0.0.1:6379/0?socket_timeout=inf", "'socket_timeout'"),
    ("keydb://127.0.0.1:6379/0?max_connections=0", "'max_connections' must be a whole number >= 1"),
    ("memory://?max_value_size=0", "'max_value_size' must be a whole number >= 1"),
    ("memory://?compression=zlib&compression_threshold=-1", "'compression_threshold'"),
    ("memory://?circuit_breaker_threshold=0", "'circuit_breaker_threshold'"),
    (
        "memory://?circuit_breaker_reset=0",
        "'circuit_breaker_reset' must be a number of seconds > 0",
    ),
    ("redis://127.0.0.1:6379/0?health_check_interval=-1", "'health_check_interval'"),
    ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe", "'ssl_cert_reqs' must be one of none"),
    ("memory://?raise_errors=maybe", "'raise_errors'"),
    # Typos get the closest name.
    (
        "memory://?key_prefx=a",
        "unknown option 'key_prefx' for memory://; did you mean 'key_prefix'?",
    ),
    (
        "redis://127.0.0.1:6379/0?key_prefx=a",
        "unknown option 'key_prefx'; did you mean 'key_prefix'?",
    ),
    ("valkey://127.0.0.1:6379/0?socket_timout=1", "did you mean 'socket_timeout'?"),
    ("keydb://127.0.0.1:6379/0?max_conections=5", "did you mean 'max_connections'?"),
    ("valkey+sentinel://127.0.0.1:26379/m/0?key_prefx=a", "did you mean 'key_prefix'?"),
]


@pytest.mark.parametrize(("url", "message"), MALFORMED)
def test_malformed_url_or_option_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        cachecore.from_url(url)
    assert message in str(info.value)
    assert "\n" not in str(info.value), "one clear line"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_timeout": -1}, "'default_timeout'"),
        ({"default_timeout": True}, "'default_timeout'"),
        ({"default_timeout": dt.timedelta(seconds=-1)}, "'default_timeout'"),
        ({"socket_timeout": -1}, "'socket_timeout'"),
        ({"socket_timeout": "soon"}, "'socket_timeout': cannot use 'soon': expected a number"),
        ({"protocol": 7}, "'protocol'"),
        ({"protocol": "3.0"}, "'protocol'"),
        ({"near_cache_size": 0}, "'near_cache_size'"),
        ({"db": -1}, "'db' must be a whole number >= 0"),
        ({"db": True}, "'db'"),
        ({"max_connections": 2.5}, "'max_connections'"),
        ({"key_prefx": "a"}, "did you mean 'key_prefix'?"),
    ],
)
def test_bad_keyword_option_is_a_configuration_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        cachecore.from_url("valkey://127.0.0.1:6379/0", **options)


@pytest.mark.parametrize(
    "config",
    [
        {"backend": "redis", "port": 0},
        {"backend": "redis", "port": "abc"},
        {"backend": "valkey", "db": -1},
        {"backend": "valkey", "db": "db3"},
        {"backend": "memory", "db": "x"},
        {"url": "redis://[::1"},
        {"url": "memory://", "default_timeout": "-1"},
    ],
)
def test_from_config_mistakes_are_configuration_errors(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        cachecore.from_config(config)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379", {"host": "127.0.0.1", "port": 6379}),
        ("redis://127.0.0.1:6379/", {"host": "127.0.0.1", "port": 6379}),
        ("valkey://127.0.0.1:6380/15", {"port": 6380, "db": 15}),
        ("keydb://127.0.0.1/007", {"host": "127.0.0.1", "db": 7}),
        ("redis://[::1]:6379/2", {"host": "::1", "db": 2}),
        ("redis://:p%40ss@127.0.0.1/3", {"password": "p@ss", "db": 3}),
        ("redis://:p@ss@127.0.0.1/3", {"password": "p@ss", "db": 3}),
        ("unix:///tmp/cache.sock?db=3", {"path": "/tmp/cache.sock", "db": 3}),
        ("unix:///run/redis@main.sock", {"path": "/run/redis@main.sock"}),
        ("redis://127.0.0.1:6379?db=4", {"db": 4}),
        ("redis://127.0.0.1/1?client_name=me@example.org", {"client_name": "me@example.org"}),
    ],
)
def test_well_formed_server_urls_reach_the_client_as_written(
    url: str, expected: dict[str, Any]
) -> None:
    kwargs = cachecore.from_url(url).client.connection_pool.connection_kwargs
    assert {name: kwargs.get(name) for name in expected} == expected


def test_parse_server_url() -> None:
    assert parse_server_url("redis://u:p@[::1]:6380/2") == ServerAddress("::1", 6380, None, 2)
    assert parse_server_url("valkey://cache") == ServerAddress("cache", None, None, None)
    assert parse_server_url("unix://:p@/run/r.sock", unix=True) == ServerAddress(
        None, None, "/run/r.sock", None
    )


def test_memory_databases_are_separate() -> None:
    name = f"memory://db-{uuid.uuid4().hex}"
    cachecore.from_url(name + "/15").set("k", 15)
    assert cachecore.from_url(name).get("k") is None
    assert cachecore.from_url(name + "/15").get("k") == 15


def test_ignore_delete_many_errors_is_a_cache_option() -> None:
    # cachelib's classes take it, so code passing it to from_url must keep working.
    cache = cachecore.from_url("memory://", ignore_delete_many_errors=False)
    assert cache.ignore_delete_many_errors is False
    cache = cachecore.from_url("memory://?ignore_delete_many_errors=yes")
    assert cache.ignore_delete_many_errors is True
    cache = cachecore.from_url("valkey://127.0.0.1:1/0", ignore_delete_many_errors=False)
    assert cache.ignore_delete_many_errors is False


# -- where the configuration comes from ------------------------------------------------


def test_typo_in_pyproject_is_an_unknown_option_naming_the_file(
    monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.cachecore]\nurl = "memory://"\nkey_prefx = "a"\n')
    with pytest.raises(ConfigurationError) as info:
        cachecore.get_cache()
    message = str(info.value)
    assert f"[tool.cachecore] in {pyproject}" in message
    assert "unknown option 'key_prefx'" in message
    assert "did you mean 'key_prefix'?" in message
    assert "does not take the option" not in message


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("CACHECORE_KEYPREFIX", "CACHECORE_KEY_PREFIX"),
        ("CACHECORE_DEFAULT_TIMOUT", "CACHECORE_DEFAULT_TIMEOUT"),
        ("CACHECORE_SOCKET_TIMEOT", "CACHECORE_SOCKET_TIMEOUT"),
    ],
)
def test_unknown_variable_suggests_the_closest_and_lists_client_options(
    monkeypatch: Any, variable: str, suggestion: str
) -> None:
    monkeypatch.setenv("CACHECORE_URL", "memory://env")
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigurationError) as info:
        cachecore.get_cache()
    message = str(info.value)
    assert f"unknown setting {variable}; did you mean {suggestion}?" in message
    assert "CACHECORE_SOCKET_TIMEOUT" in message.partition("client options:")[2]
    assert "CACHECORE_REQUIRE_CONFIG" in message


def test_client_option_variable_applies(monkeypatch: Any) -> None:
    monkeypatch.setenv("CACHECORE_URL", "valkey://127.0.0.1:1/0")
    monkeypatch.setenv("CACHECORE_SOCKET_TIMEOUT", "0.25")
    kwargs = cachecore.get_cache().client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25


def test_pyproject_is_found_in_a_parent_up_to_the_project_root(
    monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    project = tmp_path / "project"
    deep = project / "src" / "app"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.cachecore]\nurl = "memory://parent"\n')
    monkeypatch.chdir(deep)
    resolved = resolve_config()
    assert resolved.url == "memory://parent"
    assert resolved.source == f"[tool.cachecore] in {project / 'pyproject.toml'}"
    # The nearest pyproject.toml wins, even without the table (as for black).
    (deep / "pyproject.toml").write_text('[project]\nname = "sub"\n')
    assert resolve_config().is_default
    (deep / "pyproject.toml").unlink()
    # A repository root between the two stops the search.
    (project / "src" / ".git").mkdir()
    assert find_pyproject(deep) == (
        None,
        f"{deep} or its parents up to the repository root {project / 'src'}",
    )
    assert resolve_config().is_default
    assert find_pyproject(project) == (project / "pyproject.toml", str(project / "pyproject.toml"))


def test_get_cache_logs_its_source_once(
    monkeypatch: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    with caplog.at_level(logging.INFO, logger="cachecore"):
        cachecore.get_cache()
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "cachecore" and r.threadName != "cachecore-near-cache"
    ]
    assert lines == [
        "cachecore: using memory:// (nothing configured: the embedded default; no "
        f"CACHECORE_URL, no pyproject.toml in {tmp_path} or its parents up to the repository "
        f"root {tmp_path})"
    ]
    caplog.clear()
    monkeypatch.setenv("CACHECORE_URL", "redis://:hunter2@127.0.0.1:1/0")
    with caplog.at_level(logging.INFO, logger="cachecore"):
        cachecore.get_cache()
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "cachecore" and r.threadName != "cachecore-near-cache"
    ]
    assert lines == [
        "cachecore: using redis://:***@127.0.0.1:1/0 (environment variable CACHECORE_URL)"
    ]


def test_the_fallback_to_memory_can_be_forbidden(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    with pytest.raises(ConfigurationError, match=r"nothing configured.*default=None"):
        cachecore.get_cache(default=None)
    assert cachecore.get_cache(default="memory://fallback").description == "memory://fallback"
    monkeypatch.setenv("CACHECORE_REQUIRE_CONFIG", "1")
    for call in (cachecore.get_cache, resolve_config):
        with pytest.raises(ConfigurationError, match="CACHECORE_REQUIRE_CONFIG forbids"):
            call()
    with pytest.raises(ConfigurationError, match="CACHECORE_REQUIRE_CONFIG forbids"):
        cachecore.get_cache(default="memory://fallback")
    # Configured: the variable is satisfied, and is not taken for an option.
    (tmp_path / "pyproject.toml").write_text('[tool.cachecore]\nurl = "memory://req"\n')
    assert cachecore.get_cache().description == "memory://req"
    assert cachecore.get_cache(default=None).description == "memory://req"
    monkeypatch.setenv("CACHECORE_REQUIRE_CONFIG", "maybe")
    with pytest.raises(ConfigurationError, match="CACHECORE_REQUIRE_CONFIG must be true or false"):
        resolve_config()


def test_environment_variables_are_reported_as_a_source(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.cachecore]\nurl = "memory://toml"\nkey_prefix = "file:"\n')
    monkeypatch.setenv("CACHECORE_KEY_PREFIX", "env:")
    resolved = resolve_config()
    assert resolved.source == f"[tool.cachecore] in {pyproject} + CACHECORE_KEY_PREFIX"
    assert resolved.options == {"key_prefix": "env:"}
    pyproject.unlink()
    (tmp_path / ".git").mkdir()
    resolved = resolve_config()
    assert resolved.is_default and resolved.source.endswith(" + CACHECORE_KEY_PREFIX")
    assert cachecore.get_cache().key_prefix == "env:"


# -- on a real server -----------------------------------------------------------------


@pytest.fixture
def valkey_server(
    cachecore_servers: ServerPool, cachecore_server_binaries: list[ServerBinary]
) -> ServerProcess:
    """The session's server of the newest Valkey binary found."""
    found = [b for b in cachecore_server_binaries if b.kind == "valkey"]
    if not found:
        pytest.skip("no valkey-server binary found")
    newest = max(found, key=lambda b: [int(p) for p in b.version.split(".") if p.isdigit()])
    return cachecore_servers.shared(newest)


def test_a_malformed_database_path_never_reaches_another_database(
    valkey_server: ServerProcess,
) -> None:
    base = f"valkey://{valkey_server.host}:{valkey_server.port}"
    key = f"precious-{uuid.uuid4().hex}"
    db0 = cachecore.from_url(f"{base}/0")
    db12 = cachecore.from_url(f"{base}/12")
    assert db0.set(key, "db0") and db12.set(key, "db12")
    # Before: /db3, /abc and /1.5 cleared database 0, /1/2 database 12.
    for path in ("db3", "1/2", "3/extra", "abc", "1.5", "-1"):
        with pytest.raises(ConfigurationError, match="database must be one whole number"):
            cachecore.from_url(f"{base}/{path}").clear()
    assert (db0.get(key), db12.get(key)) == ("db0", "db12")
    db3 = cachecore.from_url(f"{base}/3")
    assert db3.set(key, "db3") and db3.get(key) == "db3"
    assert db3.delete(key) and db0.get(key) == "db0"
    assert db0.delete(key) and db12.delete(key)


def test_a_database_the_server_lacks_is_a_clear_error_at_first_use(
    valkey_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # Its number of databases is the server's setting (16 by default), unknown offline.
    url = valkey_server.url("valkey", db=99)
    cache = cachecore.from_url(url)
    with caplog.at_level(logging.WARNING, logger="cachecore"):
        assert cache.get("k") is None
    warnings = cachecore_warnings(caplog)
    assert len(warnings) == 1 and "DB index is out of range" in warnings[0]
    with pytest.raises(cachecore.BackendError, match="DB index is out of range"):
        cachecore.from_url(url, raise_errors=True).get("k")


@pytest.mark.parametrize(
    "arguments", [{"port": 0}, {"port": 70000}, {"port": "6379"}, {"db": -1}, {"db": "3"}]
)
def test_drop_in_constructor_checks_port_and_db(arguments: dict[str, Any]) -> None:
    from cachecore_valkey import ValkeyCache

    with pytest.raises(cachecore.ConfigurationError, match=next(iter(arguments))):
        ValkeyCache(**arguments)
