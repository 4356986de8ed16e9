"""The grammar of cache URLs, checked by cachecore itself rather than left to the
client libraries (which read ``/1/2`` as database 12 and ``/db3`` as database 0).

Every URL::

    scheme://[[user]:password@]<backend's part>[?option=value&...]

A single server (``redis``, ``rediss``, ``valkey``, ``valkeys``, ``keydb``, ``keydbs``...)::

    scheme://[[user]:password@][host][:port][/db]
    unix://[[user]:password@]/path/to/socket

Cluster and Sentinel URLs are parsed by :mod:`cachecore.topology`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from cachecore.errors import ConfigurationError
from cachecore.redaction import redact_url, split_credentials

__all__ = ["ServerAddress", "check_url", "parse_db", "parse_server_url", "split_query"]

ENCODE_HINT = (
    "percent-encode '@', '/', '?' and '#' in a password (%40, %2F, %3F, %23), "
    "and ':' in a user name (%3A)"
)


def check_url(url: str) -> None:
    """Check what every cache URL shares: where the credentials end, brackets around an
    IPv6 address, no ``#fragment``.

    :raises ConfigurationError: naming the URL with its password hidden.
    """
    shown = redact_url(url)
    credentials = split_credentials(url)
    if credentials.ambiguous:
        raise ConfigurationError(f"malformed URL {shown}: {ENCODE_HINT}")
    if "#" in url:
        raise ConfigurationError(
            f"malformed URL {shown}: a cache URL has no #fragment; {ENCODE_HINT}"
        )
    try:
        urllib.parse.urlsplit(url)
    except ValueError as exc:
        # urllib's texts ("Invalid IPv6 URL") quote no part of the URL.
        raise ConfigurationError(f"malformed URL {shown}: {exc}") from None


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """(``url`` without its query, the query's options, percent-decoded; the last of a
    repeated name wins).

    :raises ConfigurationError: see :func:`check_url`.
    """
    check_url(url)
    base, _, query = url.partition("?")
    return base, dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


def parse_db(text: str, where: str) -> int:
    """A database number written in a URL: one non-negative whole number.

    ``where`` names the URL (redacted) in the error.

    :raises ConfigurationError: anything else (``db3``, ``1/2``, ``1.5``, ``-1``...).
    """
    if not (text.isascii() and text.isdecimal()):
        raise ConfigurationError(
            f"{where}: the database must be one whole number >= 0, such as /0 or /3"
        )
    return int(text)


@dataclass(frozen=True)
class ServerAddress:
    """What :func:`parse_server_url` found; None where the URL leaves it to the client."""

    host: str | None
    port: int | None
    path: str | None
    """The socket of a ``unix://`` URL."""
    db: int | None


def _port(text: str, shown: str) -> int:
    if not (text.isascii() and text.isdecimal()) or not 0 < int(text) < 65536:
        raise ConfigurationError(f"{shown}: the port must be a whole number from 1 to 65535")
    return int(text)


def parse_server_url(url: str, unix: bool = False) -> ServerAddress:
    """Check the URL of a single server (no query), as the module docstring describes.

    :param unix: the URL is a ``unix://`` one: a socket path, and no host or database
        in the URL (give ``?db=N``).
    :raises ConfigurationError: a bad port or host, a database path that is not one
        whole number >= 0, a ``unix://`` URL without a path; the message shows the URL
        with its password hidden.
    """
    check_url(url)
    shown = redact_url(url)
    rest = split_credentials(url).rest
    if unix:
        if not rest.startswith("/") or rest == "/":
            raise ConfigurationError(
                f"{shown}: a Unix socket URL is unix://[[user]:password@]/path/to/socket[?db=N]"
            )
        return ServerAddress(None, None, rest, None)
    hostport, _, path = rest.partition("/")
    if "," in hostport:
        raise ConfigurationError(
            f"{shown}: one host only (a cluster URL is <scheme>+cluster://host1,host2/)"
        )
    port: int | None = None
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ConfigurationError(f"{shown}: an IPv6 address is written [::1]:6379")
        if after:
            port = _port(after[1:], shown)
    elif hostport.count(":") > 1:
        raise ConfigurationError(f"{shown}: write an IPv6 address in brackets: [::1]:6379")
    else:
        host, colon, port_text = hostport.partition(":")
        if colon:
            port = _port(port_text, shown)
    if "]" in host:
        raise ConfigurationError(f"{shown}: an IPv6 address is written [::1]:6379")
    db = parse_db(path, shown) if path else None
    return ServerAddress(host or None, port, None, db)
