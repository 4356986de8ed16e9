"""An example third-party cachecore plugin, written by hand as any author would.

It provides the ``example://`` backend (an in-process fakeredis server per URL host,
standing in for a real client library) and a ``reversed-json`` wire format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import fakeredis

import cachecore

_servers: dict[str, fakeredis.FakeServer] = {}


class ReversedJson:
    """JSON with its bytes reversed: a format only this plugin reads.

    Plain ints stay ASCII digits, as every cachecore format keeps them, so the server's
    INCRBY (``inc``/``dec``) works on them.
    """

    def dumps(self, value: Any) -> bytes:
        if type(value) is int:
            return str(value).encode()
        return json.dumps(value).encode()[::-1]

    def loads(self, data: bytes) -> Any:
        if data.lstrip(b"-").isdigit():
            return int(data)
        return json.loads(data[::-1])


BACKEND = cachecore.Backend(
    name="example",
    schemes=("example",),
    description="example plugin",
    # fakeredis ignores options it does not know: declaring the ones this backend
    # takes lets cachecore refuse any other (a typo) before the client is built.
    client_options=("socket_timeout", "socket_connect_timeout"),
)


@cachecore.hookimpl
def cachecore_backends() -> list[cachecore.Backend]:
    return [BACKEND]


@cachecore.hookimpl
def cachecore_create_client(
    backend: cachecore.Backend, url: str, options: Mapping[str, Any]
) -> Any:
    host = url.partition("://")[2].strip("/") or "default"
    server = _servers.setdefault(host, fakeredis.FakeServer())
    return fakeredis.FakeRedis(server=server, **options)


@cachecore.hookimpl
def cachecore_serializers() -> list[cachecore.SerializerSpec]:
    return [cachecore.SerializerSpec("reversed-json", ReversedJson, "JSON, reversed")]
