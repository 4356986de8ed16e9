"""``python -m benchmarks.flask_cache``: Flask-Caching's ``cache.get`` through
``CachecoreCache`` against Flask-Caching's own ``RedisCache``, interleaved.

Each column is the backend a Flask-Caching ``Cache(app)`` builds from the app's config
(what ``cache.get`` hands every call to, the same one-line proxy for both), on the same
server (a
throwaway Valkey 9.1 unless ``--server`` or ``--url`` says otherwise), each under its own
``CACHE_KEY_PREFIX`` of equal length:

* ``cachecore``: ``CACHE_TYPE = "cachecore.contrib.flask.CachecoreCache"`` with a
  ``redis://`` URL (redis-py, as ``RedisCache`` uses);
* ``flask-caching``: ``CACHE_TYPE = "RedisCache"`` with ``CACHE_REDIS_URL``.

Same options (pickled values, hiredis when installed), pinned to one CPU as in
``python -m benchmarks``. Prints a table and one JSON line; the measuring and the
table are :mod:`benchmarks.django_cache`'s.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from benchmarks import django_cache
from cachecore.bench.workloads import SINGLE_KEYS, VALUE_TIMEOUT, key_names

COLUMNS = ("cachecore", "flask-caching")
BASELINES = ("flask-caching",)


def make_caches(url: str, prefix: str) -> dict[str, Any]:
    """The two backends Flask-Caching builds for apps configured on ``url``."""
    import flask
    from flask_caching import Cache

    caches = {}
    for name, tag, cache_type in (
        ("cachecore", "cc", "cachecore.contrib.flask.CachecoreCache"),
        ("flask-caching", "fc", "RedisCache"),
    ):
        app = flask.Flask(f"bench-{tag}")
        app.config.update(
            CACHE_TYPE=cache_type,
            CACHE_REDIS_URL=url,
            CACHE_KEY_PREFIX=f"{prefix}{tag}",
            CACHE_DEFAULT_TIMEOUT=VALUE_TIMEOUT,
        )
        cache = Cache(app)
        caches[name] = _Adapter(app.extensions["cache"][cache])
    return caches


class _Adapter:
    """Django's call shapes (``set_many(dict)``, ``delete_many(list)``) on a Flask-Caching
    backend, so :mod:`benchmarks.django_cache`'s runners drive it; ``get`` is its own."""

    def __init__(self, cache: Any) -> None:
        self.get = cache.get
        self._cache = cache

    def set_many(self, mapping: dict[str, Any]) -> None:
        self._cache.set_many(mapping)

    def delete_many(self, keys: list[str]) -> None:
        self._cache.delete_many(*keys)


def main(argv: Sequence[str] | None = None) -> int:
    args = django_cache.parse_args("python -m benchmarks.flask_cache", argv)
    prefix = f"cachecore-bench:{os.urandom(4).hex()}:"
    with django_cache.server_url(args) as (url, where_text):
        caches = make_caches(url, prefix)
        try:
            results = django_cache.run_rows(
                caches, args.rounds, args.slice, rows=("get",), baselines=BASELINES
            )
        finally:
            for cache in caches.values():
                cache.delete_many(key_names("get", SINGLE_KEYS))
    print(f"Flask-Caching backends on {where_text}; {args.rounds} rounds x {args.slice} s")
    print(django_cache.format_table(results))
    print(json.dumps({"flask": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
