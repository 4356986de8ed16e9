"""Choosing a backend by configuration: URLs, mappings, environment, pyproject.toml."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import cachecore
from cachecore.config import redact_url, resolve_config
from cachecore.errors import ConfigurationError, UnknownSerializerError
from cachecore.serializers import (
    CompressedSerializer,
    JsonSerializer,
    PickleSerializer,
    SignedSerializer,
)


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
    resolved = resolve_config()
    assert resolved.url == "memory://"
    assert "embedded default" in resolved.source
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
    assert resolved.source == "environment variable CACHECORE_URL"
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
    assert resolve_config().url == "memory://"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@host:1/0", "redis://user:***@host:1/0"),
        ("redis://:secret@host:1/0", "redis://:***@host:1/0"),
        ("redis://host:1/0", "redis://host:1/0"),
        ("localhost:6379?password=hunter2", "localhost:6379?password=***"),
        ("memory://?secret_key=k&key_prefix=a:", "memory://?secret_key=***&key_prefix=a:"),
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
