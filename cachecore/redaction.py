"""Keeping secrets out of everything cachecore shows: ``repr``, logs, errors, CLI output.

One rule, used everywhere: a URL's password, and the value of every option named in
:data:`SECRET_OPTIONS`, are shown as ``***``.

Where a URL's credentials end is decided as the client libraries decide it (at the last
``@`` of the host part, so a password may hold a raw ``@``), and more widely when the
URL is ambiguous: a password with a raw ``/``, ``?`` or ``#`` ends the host part early
for the client library, so every ``@`` after it counts as the end of the credentials
(see :func:`split_credentials`). The result may hide more than the password; it never
shows a piece of one.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MASK",
    "SECRET_OPTIONS",
    "Credentials",
    "is_secret",
    "redact_options",
    "redact_url",
    "scrub",
    "secrets_in",
    "split_credentials",
]

MASK = "***"
"""What a secret is replaced with."""

SECRET_OPTIONS = frozenset(
    {
        "password",
        "secret_key",
        "old_secret_keys",
        "ssl_password",
        "sentinel_password",
    }
)
"""Option names whose values are secrets, wherever they come from (keyword argument,
URL query, ``CACHECORE_<OPTION>`` variable, ``[tool.cachecore]``, ``--option``)."""

_HOST_PORT = re.compile(r"(\[[^\[\]@]*\]|[^\[\]:@,]*)(:[0-9]*)?")


def is_secret(name: str) -> bool:
    """Whether the option ``name`` (any case) holds a secret."""
    return name.lower() in SECRET_OPTIONS


@dataclass(frozen=True)
class Credentials:
    """A URL cut where its credentials are: ``head + userinfo + "@" + rest``, or
    ``head + rest`` when ``userinfo`` is None."""

    head: str
    """``scheme://``, or empty for text without a scheme."""
    userinfo: str | None
    """``user:password`` as written (not decoded), or None."""
    rest: str
    """Host(s), path, query: everything after the credentials."""
    ambiguous: bool = False
    """The URL has an ``@`` where a URL may not have one unencoded (in the path or a
    query name after a host, in a fragment): read as the end of a password that holds a
    raw ``/``, ``?`` or ``#``. The client libraries would read such a URL differently."""


def _authority_end(rest: str) -> int:
    ends = [index for index in (rest.find(c) for c in "/?#") if index >= 0]
    return min(ends, default=len(rest))


def _hosts_well_formed(hosts: str) -> bool:
    return all(_HOST_PORT.fullmatch(part) for part in hosts.split(","))


def _literal_ats_after(rest: str, authority_end: int, in_authority: int) -> bool:
    """Whether every ``@`` after the host part is a legitimate character where it is: in
    a Unix socket path (no host), or in a query value after well-formed host(s)."""
    after = rest[authority_end:]
    body, _, fragment = after.partition("#")
    if "@" in fragment:
        return False
    path, _, query = body.partition("?")
    hosts = rest[in_authority + 1 : authority_end]
    if "@" in path and hosts:
        return False
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "@" in name or ("@" in value and not _hosts_well_formed(hosts)):
            return False
    return True


def split_credentials(url: str) -> Credentials:
    """Cut ``url`` where its credentials are (see the module docstring).

    Never raises, whatever ``url`` holds.
    """
    scheme, sep, rest = url.partition("://")
    head = scheme + sep if sep else ""
    if not sep:
        rest = url
    last = rest.rfind("@")
    if last < 0:
        return Credentials(head, None, rest)
    authority_end = _authority_end(rest)
    if last < authority_end:
        # The client libraries take the last "@" of the host part (so may we).
        return Credentials(head, rest[:last], rest[last + 1 :])
    in_authority = rest.rfind("@", 0, authority_end)
    if _literal_ats_after(rest, authority_end, in_authority):
        if in_authority < 0:
            return Credentials(head, None, rest)
        return Credentials(head, rest[:in_authority], rest[in_authority + 1 :])
    return Credentials(head, rest[:last], rest[last + 1 :], ambiguous=True)


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        secret = eq and is_secret(urllib.parse.unquote_plus(name))
        pairs.append(f"{name}={MASK}" if secret else pair)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` with its password and the values of secret query options replaced by
    ``***``; safe for logs, ``repr`` and error messages. A user name stays visible,
    unless the URL is ambiguous (then all of its credentials are hidden).

    Never raises, whatever ``url`` holds.
    """
    found = split_credentials(url)
    rest = found.rest
    base, sep, query = rest.partition("?")
    if sep:
        query, hash_sign, fragment = query.partition("#")
        rest = f"{base}?{_redact_query(query)}{hash_sign}{fragment}"
    if found.userinfo is None:
        return found.head + rest
    user, colon, _ = found.userinfo.partition(":")
    if found.ambiguous:
        shown = f"{user}:{MASK}" if colon else MASK
    else:
        shown = f"{user}:{MASK}" if colon else found.userinfo
    return f"{found.head}{shown}@{rest}"


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` whose secret values (see :data:`SECRET_OPTIONS`) are ``***``."""
    return {name: MASK if is_secret(name) else value for name, value in options.items()}


def _values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value, *(part.strip() for part in value.split(","))]
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    if isinstance(value, Iterable):
        return [text for item in value for text in _values(item)]
    return [str(value)]


def secrets_in(urls: Iterable[str] = (), options: Mapping[str, Any] | None = None) -> set[str]:
    """Every secret that ``urls`` and ``options`` hold, as written and percent-encoded or
    decoded: what :func:`scrub` removes from a text that may quote them."""
    found: set[str] = set()
    for name, value in (options or {}).items():
        if is_secret(name) and value:
            found.update(_values(value))
    for url in urls:
        credentials = split_credentials(url)
        if credentials.userinfo is not None:
            user, colon, password = credentials.userinfo.partition(":")
            found.add(password if colon else user if credentials.ambiguous else "")
        query = credentials.rest.partition("?")[2].partition("#")[0]
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if is_secret(urllib.parse.unquote_plus(name)):
                found.update(_values(value))
    found.discard("")
    decoded = {urllib.parse.unquote_plus(secret) for secret in found}
    encoded = {urllib.parse.quote(secret, safe="") for secret in found | decoded}
    return {secret for secret in found | decoded | encoded if secret}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by ``***`` (longest
    first, so a secret that contains another is hidden whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
