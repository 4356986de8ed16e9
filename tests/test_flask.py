"""``cachecore.contrib.flask.CachecoreCache`` beyond Flask-Caching's own suite: how the
app's config reaches cachecore, values shared with Flask-Caching's ``RedisCache``, Django
and ``cachecore.from_url``, and faults on a stopped server."""

from __future__ import annotations

from collections.abc import Iterator

import flask
import pytest
from cachelib.serializers import JSONSerializer
from django.conf import settings
from flask_caching import Cache
from flask_caching.backends import RedisCache as FlaskRedisCache
from helpers import absent_reason, cachecore_warnings

import cachecore
from cachecore import BackendError, ConfigurationError
from cachecore.contrib.django import CachecoreCache as DjangoCachecoreCache
from cachecore.contrib.flask import CachecoreCache
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerProcess, newest_server_binary

VALKEY = newest_server_binary("valkey")
DB = 15


@pytest.fixture
def valkey_url(cachecore_servers: ServerPool) -> Iterator[str]:
    if VALKEY is None:
        pytest.skip(absent_reason("valkey"))
    url = cachecore_servers.shared(VALKEY).url("valkey", db=DB)
    yield url
    cachecore.from_url(url).clear()


def _app(**config: object) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(CACHE_TYPE="cachecore.contrib.flask.CachecoreCache", **config)
    return app


def _backend(app: flask.Flask, cache: Cache) -> CachecoreCache:
    backend = app.extensions["cache"][cache]
    assert isinstance(backend, CachecoreCache)
    return backend


def test_config_reaches_cachecore(valkey_url: str) -> None:
    app = _app(
        CACHE_CACHECORE_URL=valkey_url,
        CACHE_KEY_PREFIX="shop:",
        CACHE_DEFAULT_TIMEOUT=42,
        CACHE_OPTIONS={"serializer": "json", "socket_timeout": 0.5},
    )
    backend = _backend(app, Cache(app))
    inner = backend.cachecore_cache
    assert (inner.key_prefix, inner.default_timeout) == ("shop:", 42)
    assert backend.default_timeout == 42
    backend.set("k", {"a": 1})
    assert inner.client.get("shop:k") == b'{"a":1}'  # cachecore's json serializer
    assert 0 < inner.client.ttl("shop:k") <= 42


def test_redis_url_is_the_fallback(valkey_url: str) -> None:
    app = _app(CACHE_REDIS_URL=valkey_url.replace("valkey://", "redis://"))
    backend = _backend(app, Cache(app))
    assert backend.cachecore_cache.key_prefix == "flask_cache_"  # Flask-Caching's default
    assert backend.set("k", 1) and backend.get("k") == 1


def test_bad_options_raise_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Cache(_app(CACHE_CACHECORE_URL="valkey://h:notaport/0"))
    with pytest.raises(ConfigurationError):
        Cache(_app(CACHE_CACHECORE_URL="memory://", CACHE_OPTIONS={"socket_timeout": -1}))


def test_cache_serializer_setting_decides_the_bytes(valkey_url: str) -> None:
    app = _app(CACHE_CACHECORE_URL=valkey_url, CACHE_SERIALIZER=JSONSerializer)
    cache = Cache(app)
    with app.app_context():
        cache.set("hi", {"a": 1})
        assert cache.get("hi") == {"a": 1}
        assert _backend(app, cache).cachecore_cache.client.get("flask_cache_hi") == b'{"a": 1}'


def test_unlink_and_delete_memoized(valkey_url: str) -> None:
    app = _app(CACHE_CACHECORE_URL=valkey_url)
    cache = Cache(app)
    calls: list[int] = []

    @cache.memoize(60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    with app.app_context():
        cache.set_many({"a": 1, "b": 2})
        assert cache.unlink("a", "b") == ["a", "b"]
        assert cache.get_many("a", "b") == [None, None]
        assert square(3) == square(3) == 9
        cache.delete_memoized(square, 3)
        assert square(3) == 9
        assert calls == [3, 3]


def test_values_carry_over_from_flask_caching_redis_cache(valkey_url: str) -> None:
    """Same URL and CACHE_KEY_PREFIX: what Flask-Caching's RedisCache cached reads back,
    and the other way round (cachelib's wire format is cachecore's)."""
    old = FlaskRedisCache(host=cachecore.from_url(valkey_url).client, key_prefix="app:")
    old.set("page", {"html": "<p>"})
    old.set("hits", 7)
    app = _app(CACHE_CACHECORE_URL=valkey_url, CACHE_KEY_PREFIX="app:")
    new = _backend(app, Cache(app))
    assert new.get("page") == {"html": "<p>"}
    assert new.inc("hits") == 8
    new.set("back", [1, 2])
    assert old.get("back") == [1, 2]
    assert old.get("hits") == 8


def test_flask_django_and_a_script_read_each_others_values(valkey_url: str) -> None:
    if not settings.configured:
        settings.configure()
    app = _app(CACHE_CACHECORE_URL=valkey_url, CACHE_KEY_PREFIX="shop:1:")
    flask_cache = _backend(app, Cache(app))
    django_cache = DjangoCachecoreCache(valkey_url, {"KEY_PREFIX": "shop", "VERSION": 1})
    script = cachecore.from_url(valkey_url, key_prefix="shop:1:")
    flask_cache.set("from-flask", {"by": "flask"})
    django_cache.set("from-django", ["django"])
    script.set("from-script", 3)
    for reader in (flask_cache.get, django_cache.get, script.get):
        assert reader("from-flask") == {"by": "flask"}
        assert reader("from-django") == ["django"]
        assert reader("from-script") == 3


@pytest.fixture
def stopped(cachecore_fresh_server: object) -> ServerProcess:
    if VALKEY is None:
        pytest.skip(absent_reason("valkey"))
    server: ServerProcess = cachecore_fresh_server(VALKEY)  # type: ignore[operator]
    server.stop()
    return server


def test_stopped_server_views_still_answer(
    stopped: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    url = stopped.url("valkey") + "?socket_timeout=0.2&socket_connect_timeout=0.2"
    app = _app(CACHE_CACHECORE_URL=url)
    cache = Cache(app)

    @app.route("/")
    @cache.cached(60)
    def index() -> str:
        return "fresh"

    assert app.test_client().get("/").text == "fresh"
    with app.app_context():
        assert cache.get("k") is None
        assert cache.set("k", 1) is False
        assert cache.clear() is False
    assert any("failed on" in m for m in cachecore_warnings(caplog))


def test_stopped_server_raises_with_raise_errors(stopped: ServerProcess) -> None:
    url = stopped.url("valkey") + "?socket_timeout=0.2&socket_connect_timeout=0.2"
    app = _app(CACHE_CACHECORE_URL=url, CACHE_OPTIONS={"raise_errors": True})
    cache = Cache(app)
    with app.app_context(), pytest.raises(BackendError):
        cache.get("k")
