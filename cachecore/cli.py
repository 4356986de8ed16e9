"""The ``cachecore`` command: look at installed backends and at a cache, run the demo.

::

    cachecore demo                          # the configured cache (memory:// by default)
    cachecore backends [-v] [--json]
    cachecore ping [--json] valkey://localhost:6379/0
    cachecore --option key_prefix=app: info redis://localhost:6379/0
    cachecore set KEY VALUE --timeout 60
    cachecore get KEY
    cachecore bench --seconds 10 valkey://localhost:6379/0

Exit status: 0 done; 1 the server failed or was unreachable, a key was missing, or a
confirmation was declined; 2 bad usage or configuration (unknown backend, bad option);
130 interrupted (Ctrl-C). A bare ``cachecore`` prints the help and exits 0, as pip does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from cachecore import plugins
from cachecore.config import from_url, get_cache, resolve_config
from cachecore.demo import DEMO_PREFIX, run_demo
from cachecore.errors import (
    BackendError,
    CachecoreError,
    ConfigurationError,
    PluginConflictError,
    SerializationError,
    ValueTooLargeError,
)
from cachecore.redaction import is_secret, redact_options, redact_url, scrub, secrets_in
from cachecore.redis_base import BaseRedisCache, client_errors, glob_escape
from cachecore.server_info import describe_server, flatten_info, parse_info
from cachecore.topology import describe_topology, is_cluster_client, node_client

__all__ = ["main"]

PROG = "cachecore"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as shells report a command stopped by Ctrl-C."""

WIDTH = 80
"""Tables and wrapped text fit this many columns."""

SCAN_BATCH = 1000
"""Keys per SCAN step when ``info`` counts the keys under a prefix."""

URL_HELP = """\
URL: a cache URL such as memory://, redis://[[USER]:PASSWORD@]HOST:PORT/DB,
valkey://..., keydb://... (its scheme picks the backend). Without one, the
configured cache is used: $CACHECORE_URL (plus CACHECORE_<OPTION> variables),
else [tool.cachecore] in the nearest pyproject.toml up from here, else the
embedded memory:// default.
"""

KEYS_HELP = """
The URL is optional in front of the keys: the first argument is taken as the
URL when it contains '://' and more arguments follow it. Give the URL with --url
instead to make every argument a key (e.g. a key that contains '://').
"""

MAIN_HELP = (
    URL_HELP
    + """
Run 'cachecore COMMAND --help' for a command's arguments and exit statuses.

exit status: 0 done; 1 the server failed or is unreachable, a key is missing,
or a confirmation was declined; 2 bad usage or configuration; 130 interrupted
(Ctrl-C). A bare 'cachecore' prints this help and exits 0.
"""
)

SERVER_FAILED = "1 the server failed or is unreachable"
USAGE_FAILED = "2 bad usage or configuration"
INTERRUPTED = "130 interrupted (Ctrl-C)"


def _exit_help(*statuses: str) -> str:
    return "\n" + textwrap.fill("exit status: " + "; ".join(statuses) + ".", WIDTH) + "\n"


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit status 2)."""


@dataclass
class _Context:
    """What a command needs besides its arguments, and what error reports mention."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    shown_url: str = ""
    source: str = ""
    started: float = field(default_factory=time.perf_counter)


# --------------------------------------------------------------------------- helpers


def _redact_options(options: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name}={value if is_secret(name) else repr(value)}"
        for name, value in redact_options(options).items()
    )


def _secrets(ctx: _Context) -> set[str]:
    """Passwords and keys the command line or configuration holds, to keep out of messages."""
    urls = [ctx.url] if ctx.url else []
    options: dict[str, Any] = dict(ctx.options)
    if ctx.url is None:
        try:
            resolved = resolve_config()
        except ConfigurationError:
            pass
        else:
            urls.append(resolved.url)
            options.update(resolved.options)
    return secrets_in(urls, options)


def _scrub(message: str, ctx: _Context) -> str:
    """``message`` without any secret of :func:`_secrets` (error texts may quote a URL)."""
    return scrub(message, _secrets(ctx))


def _parse_options(raw: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"--option takes KEY=VALUE (e.g. key_prefix=app:), got {item!r}")
        options[name] = value
    return options


def _prefix_of(cache: BaseRedisCache) -> str:
    prefix = cache.key_prefix
    return prefix if isinstance(prefix, str) else prefix()


def _open(ctx: _Context) -> BaseRedisCache:
    """The cache the command line names (or the configured one), raising on faults.

    :raises ConfigurationError: the configuration is wrong, including anything else a
        client library raises while the cache is built (a ValueError from a URL it
        cannot parse, a TypeError from an option it does not take...).
    :raises BackendError: the server failed or could not be reached while the cache was
        built (a cluster client reads the slot map at once).
    """
    options = {**ctx.options, "raise_errors": True}
    if ctx.url is not None:
        ctx.source = "the command line"
        ctx.shown_url = redact_url(ctx.url)
    else:
        ctx.source = resolve_config().source
    try:
        cache = from_url(ctx.url, **options) if ctx.url is not None else get_cache(**options)
    except CachecoreError:
        raise
    except Exception as exc:
        if _socket_failure(exc):
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        raise ConfigurationError(f"invalid configuration: {type(exc).__name__}: {exc}") from exc
    ctx.shown_url = cache.description
    return cache


def _socket_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a socket that failed (an OSError in its chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _backend_facts(cache: BaseRedisCache) -> dict[str, str]:
    """The backend that built ``cache``: name, distribution and version (best effort)."""
    scheme = cache.description.partition("://")[0]
    try:
        backend = plugins.find_backend(scheme)
    except ConfigurationError:
        return {"name": type(cache).__name__, "distribution": "", "version": ""}
    return {
        "name": backend.name,
        "distribution": backend.distribution,
        "version": backend.version,
    }


def _backend_of(cache: BaseRedisCache) -> str:
    facts = _backend_facts(cache)
    if not facts["distribution"]:
        return facts["name"]
    return f"{facts['name']} (from {facts['distribution']} {facts['version']})"


def _is_unreachable(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, OSError):
        return True
    return any(cls.__name__ in {"ConnectionError", "TimeoutError"} for cls in type(exc).__mro__)


def _backend_message(ctx: _Context, exc: BackendError) -> str:
    where = ctx.shown_url or "the cache"
    cause = exc.__cause__
    if cause is not None and "Authentication" in type(cause).__name__:
        return (
            f"{where} refused the credentials: {type(cause).__name__}: {cause}\n"
            "Check the user name and password in the URL (or the password option)."
        )
    if _is_unreachable(cause):
        return (
            f"cannot reach {where}: {type(cause).__name__}: {cause}\n"
            "Is the server running, and are the URL and its credentials right?"
        )
    return f"{where}: {exc}"


def _split_url(ctx: _Context, positionals: list[str], needed: int) -> list[str]:
    """Take a leading URL off ``positionals`` (see URL_HELP); return the rest."""
    if ctx.url is None and len(positionals) > needed and "://" in positionals[0]:
        ctx.url = positionals[0]
        return positionals[1:]
    return positionals


def _single_url(ctx: _Context, positional: str | None) -> None:
    if positional is None:
        return
    if ctx.url is not None and ctx.url != positional:
        raise UsageError("give the URL once: either --url or as an argument")
    ctx.url = positional


def _table(rows: list[list[str]], width: int | None = None) -> list[str]:
    """``rows`` as aligned columns; with ``width``, the last column wraps to fit it."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines: list[str] = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False))
        lead = head + "  " if head else ""
        last = [row[-1]]
        if width is not None and len(lead) + len(row[-1]) > width:
            last = textwrap.wrap(row[-1], max(20, width - len(lead))) or [""]
        lines.append((lead + last[0]).rstrip())
        lines += [(" " * len(lead) + more).rstrip() for more in last[1:]]
    return lines


def _wrap(text: str, indent: str, more: str | None = None) -> list[str]:
    """``text`` wrapped to :data:`WIDTH`; continuation lines indented by ``more``
    (default: two spaces more than ``indent``)."""
    more = indent + "  " if more is None else more
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more)


def _format_value(value: Any, as_json: bool) -> str:
    if as_json:
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the value is a {type(value).__name__}, not JSON: {exc}") from None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# --------------------------------------------------------------------------- commands


def _schemes_within(schemes: Sequence[str], width: int) -> str:
    """As many of ``schemes`` as fit ``width`` columns, then ``+N more``."""
    shown = [f"{scheme}://" for scheme in schemes]
    for count in range(len(shown), 0, -1):
        rest = len(shown) - count
        text = ", ".join(shown[:count] + ([f"+{rest} more"] if rest else []))
        if len(text) <= width or count == 1:
            return text
    return ""


def _distribution_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _serializer_facts(reg: plugins.Registry) -> list[dict[str, Any]]:
    facts = []
    for name in sorted(reg.serializers):
        spec = reg.serializers[name]
        distribution = reg.serializer_providers.get(name, plugins.BUILTIN_DISTRIBUTION)
        try:
            spec.factory()  # builds a codec object; describes, never connects
        except Exception as exc:
            error: str | None = str(exc) or type(exc).__name__
        else:
            error = None
        facts.append(
            {
                "name": name,
                "distribution": distribution,
                "version": _distribution_version(distribution),
                "description": spec.description,
                "available": error is None,
                "error": error,
            }
        )
    return facts


def _backends_table(out: TextIO, verbose: bool = False) -> None:
    """The installed backends and serializers, in :data:`WIDTH` columns; ``verbose``
    lists every URL scheme and description instead of abbreviating."""
    reg = plugins.registry()
    backends = plugins.installed_backends(reg)
    print("Backends:", file=out)
    if verbose:
        for backend in backends:
            print(f"  {backend.name}  ({backend.distribution} {backend.version})", file=out)
            schemes = ", ".join(f"{scheme}://" for scheme in backend.schemes)
            for text in (backend.description, schemes):
                for line in _wrap(text, "    ", "    "):
                    print(line, file=out)
    else:
        rows = [["NAME", "DISTRIBUTION", "URL SCHEMES"]]
        rows += [[b.name, f"{b.distribution} {b.version}", ""] for b in backends]
        room = WIDTH - 2 - sum(max(len(row[i]) for row in rows) + 2 for i in (0, 1))
        for row, backend in zip(rows[1:], backends, strict=True):
            row[2] = _schemes_within(backend.schemes, room)
        for line in _table(rows):
            print(f"  {line}", file=out)
    listed = {backend.distribution for backend in backends}
    unlisted = sorted(set(plugins.FIRST_PARTY.values()) - listed)
    disabled = [name for name in unlisted if plugins.is_installed(name)]
    missing = [name for name in unlisted if name not in disabled]
    notes = []
    for name in missing:
        notes.append(f"not installed: {name} ({plugins.install_hint(name)})")
    if disabled:
        notes.append(
            f"installed but not loaded: {', '.join(disabled)} "
            "(disabled by CACHECORE_DISABLE_PLUGINS, or failed: see below)"
        )
    for note in notes:
        for line in _wrap(note, "  "):
            print(line, file=out)
    print("Serializers:", file=out)
    rows = [["NAME", "DISTRIBUTION", "DESCRIPTION"]]
    for facts in _serializer_facts(reg):
        description = facts["description"]
        if not facts["available"]:
            description = f"unavailable: {facts['error']}"
        rows.append([facts["name"], f"{facts['distribution']} {facts['version']}", description])
    for line in _table(rows, WIDTH - 2):
        print(f"  {line}", file=out)
    if reg.failures:
        print("Plugins that failed to load:", file=out)
        for failure in reg.failures:
            for line in _wrap(str(failure), "  "):
                print(line, file=out)
    if not verbose:
        print("(cachecore backends -v: every URL scheme, and what each backend is)", file=out)


def cmd_backends(ctx: _Context) -> int:
    """``cachecore backends [-v] [--json]``: what is installed, and what failed to load."""
    reg = plugins.registry()
    if ctx.args.json:
        document = {
            "backends": [
                {
                    "name": backend.name,
                    "schemes": list(backend.schemes),
                    "distribution": backend.distribution,
                    "version": backend.version,
                    "description": backend.description,
                }
                for backend in plugins.installed_backends(reg)
            ],
            "serializers": _serializer_facts(reg),
            "failures": [
                {
                    "name": failure.name,
                    "distribution": failure.distribution,
                    "version": failure.version,
                    "error": failure.error,
                }
                for failure in reg.failures
            ],
        }
        _print_json(ctx, document)
        return EXIT_OK
    _backends_table(ctx.out, ctx.args.verbose)
    return EXIT_OK


def _print_wrapped(out: TextIO, text: str) -> None:
    """``text`` indented by two spaces, wrapped to :data:`WIDTH` (continuations by four)."""
    for line in _wrap(text, "  ", "    ") or ["  "]:
        print(line, file=out)


def _print_json(ctx: _Context, document: Mapping[str, Any]) -> None:
    print(_scrub(json.dumps(document, indent=2, ensure_ascii=False), ctx), file=ctx.out)


def cmd_ping(ctx: _Context) -> int:
    """``cachecore ping [--json] [URL]``."""
    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        start = time.perf_counter()
        answered = cache.ping()
        elapsed = time.perf_counter() - start
    if not answered:
        print(f"{PROG}: no PONG from {ctx.shown_url}", file=ctx.err)
        return EXIT_FAILURE
    if ctx.args.json:
        _print_json(ctx, {"url": ctx.shown_url, "round_trip_ms": round(elapsed * 1e3, 3)})
    else:
        print(f"PONG from {ctx.shown_url} in {elapsed * 1e3:.2f} ms", file=ctx.out)
    return EXIT_OK


def _count_keys(client: Any, prefix: str) -> dict[str, Any]:
    """How many keys ``info`` reports: ``count``, ``scope`` and the ``method`` used."""
    if not prefix:
        count = int(client.execute_command("DBSIZE"))
        return {"count": count, "scope": "database", "method": "DBSIZE"}
    pattern = glob_escape(prefix) + "*"
    cursor: Any = 0
    count = 0
    while True:
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_BATCH)
        count += len(keys)
        if int(cursor) == 0:
            return {"count": count, "scope": "prefix", "method": f"SCAN MATCH {pattern}"}


def _server_facts(client: Any) -> dict[str, Any]:
    """Which server answers on ``client``, and its used memory (None when not known)."""
    if type(client).__module__.startswith("fakeredis"):
        return {
            "name": "fakeredis",
            "version": importlib.metadata.version("fakeredis"),
            "redis_version": None,
            "embedded": True,
            "used_memory_bytes": None,
            "used_memory_human": None,
        }
    reply = client.execute_command("INFO")
    info: Mapping[str, Any] = reply if isinstance(reply, Mapping) else parse_info(reply)
    name, version = describe_server(info)
    fields, _ = flatten_info(info)
    reported = fields.get("redis_version")
    memory = fields.get("used_memory")
    human = fields.get("used_memory_human")
    return {
        "name": name,
        "version": version,
        "redis_version": None if reported is None else _text(reported),
        "embedded": False,
        "used_memory_bytes": int(str(memory)) if str(memory).isdigit() else None,
        "used_memory_human": None if human is None else _text(human),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _server_line(server: Mapping[str, Any]) -> str:
    if server["embedded"]:
        return f"embedded ({server['name']} {server['version']})"
    line = f"{server['name']} {server['version']}"
    reported = server["redis_version"]
    if server["name"] != "Redis" and reported and reported != server["version"]:
        line += f" (reports redis_version:{reported} for compatibility)"
    return line


def _memory_line(server: Mapping[str, Any]) -> str:
    if server["embedded"]:
        return "n/a (in-process, shared with the program)"
    shown = server["used_memory_human"] or server["used_memory_bytes"]
    return "n/a" if shown is None else str(shown)


def _keys_line(keys: Mapping[str, Any]) -> str:
    where = {
        "database": "in the database",
        "prefix": "under the prefix",
        "primaries": f"on {keys.get('primaries')} primaries",
    }[keys["scope"]]
    return f"{keys['count']} {where} ({keys['method']})"


def _nodes_table(nodes: list[dict[str, Any]]) -> list[str]:
    rows = [["ADDRESS", "ROLE", "SLOTS", "KEYS"]]
    for node in nodes:
        slots = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in node["slots"]) or "-"
        keys = str(node["keys"]) if node["reachable"] else f"unreachable ({node['error']})"
        rows.append([node["address"], node["role"], slots, keys])
    return _table(rows)


def cmd_info(ctx: _Context) -> int:
    """``cachecore info [--json] [URL]``: which server, where, how many keys, how much
    memory; for a cluster or Sentinel deployment also every node with its role, slots
    and keys."""
    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        prefix = _prefix_of(cache)
        client = cache._write_client
        nodes: list[dict[str, Any]] = []
        memory_of = "server"
        try:
            if is_cluster_client(client):
                nodes = describe_topology(cache)
                server = _server_facts(node_client(client, client.get_primaries()[0]))
                memory_of = "first primary"
                primaries = [n for n in nodes if n["role"] == "primary"]
                keys: dict[str, Any] = {
                    "count": sum(n["keys"] or 0 for n in primaries),
                    "scope": "primaries",
                    "method": "SCAN on each" if prefix else "DBSIZE on each",
                    "primaries": len(primaries),
                }
            else:
                server = _server_facts(client)
                keys = _count_keys(client, prefix)
                if getattr(client.connection_pool, "sentinel_manager", None) is not None:
                    nodes = describe_topology(cache)
        except client_errors() as exc:
            raise BackendError(f"info failed on {cache!r}: {type(exc).__name__}: {exc}") from exc
    if ctx.args.json:
        _print_json(
            ctx,
            {
                "url": ctx.shown_url,
                "server": {
                    name: server[name] for name in ("name", "version", "redis_version", "embedded")
                },
                "backend": _backend_facts(cache),
                "key_prefix": prefix,
                "keys": {name: keys[name] for name in ("count", "scope", "method")},
                "used_memory_bytes": server["used_memory_bytes"],
                "used_memory_of": None if server["embedded"] else memory_of,
                "nodes": [
                    {**node, "slots": [list(pair) for pair in node["slots"]]} for node in nodes
                ],
            },
        )
        return EXIT_OK
    memory = _memory_line(server)
    if memory_of != "server":
        memory += f" ({memory_of})"
    rows = [
        ["server:", _server_line(server)],
        ["url:", ctx.shown_url],
        ["backend:", _backend_of(cache)],
        ["key prefix:", repr(prefix) if prefix else "(none)"],
        ["keys:", _keys_line(keys)],
        ["used memory:", memory],
    ]
    for line in _table(rows):
        print(line, file=ctx.out)
    if nodes:
        print("nodes:", file=ctx.out)
        for line in _nodes_table(nodes):
            print("  " + line, file=ctx.out)
    return EXIT_OK


def cmd_get(ctx: _Context) -> int:
    """``cachecore get [--json] [URL] KEY``: a miss, or a value the cache cannot decode
    (which the cache reads as a miss), exits 1; a stored None prints ``null``."""
    rest = _split_url(ctx, ctx.args.args, 1)
    if len(rest) != 1:
        raise UsageError(f"get takes one KEY (after an optional URL), got {len(rest)}: {rest}")
    key = rest[0]
    with _open(ctx) as cache:
        value = cache.get(key)
        if value is None:
            miss = _miss(cache, key)
            if miss is not None:
                print(f"{PROG}: {miss.format(key=repr(key), url=ctx.shown_url)}", file=ctx.err)
                return EXIT_FAILURE
    print(_format_value(value, ctx.args.json), file=ctx.out)
    return EXIT_OK


def _miss(cache: BaseRedisCache, key: str) -> str | None:
    """Why ``cache.get(key)`` gave None, as a message template with ``{key}`` and
    ``{url}``; None when the key holds a stored None (not a miss)."""
    try:
        data = cache.client.execute_command("GET", _prefix_of(cache) + key)
    except client_errors() as exc:
        raise BackendError(f"get failed on {cache!r}: {type(exc).__name__}: {exc}") from exc
    if data is None:
        return "no key {key} in {url}"
    try:
        cache.serializer.loads(data)
    except Exception:
        return (
            "no value for {key} in {url}: its bytes cannot be decoded, so the cache "
            "reads them as a miss"
        )
    return None


def cmd_set(ctx: _Context) -> int:
    """``cachecore set [URL] KEY VALUE [--timeout N] [--json]``."""
    rest = _split_url(ctx, ctx.args.args, 2)
    if len(rest) != 2:
        raise UsageError(
            f"set takes KEY and VALUE (after an optional URL), got {len(rest)}: {rest}"
        )
    key, raw = rest
    value: Any = raw
    if ctx.args.json:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--json: VALUE is not JSON: {exc}") from None
    timeout: int | None = ctx.args.timeout
    with _open(ctx) as cache:
        if not cache.set(key, value, timeout=timeout):
            print(f"{PROG}: {ctx.shown_url} did not store {key!r}", file=ctx.err)
            return EXIT_FAILURE
        seconds = cache.default_timeout if timeout is None else timeout
    expiry = "never expires" if seconds == 0 else f"expires in {seconds} s"
    print(f"stored {key!r} in {ctx.shown_url} ({expiry})", file=ctx.out)
    return EXIT_OK


def cmd_delete(ctx: _Context) -> int:
    """``cachecore delete [URL] KEY...``: exit 0 once the keys are gone, existing or not."""
    keys = _split_url(ctx, ctx.args.args, 1)
    with _open(ctx) as cache:
        deleted = [key for key in keys if cache.delete(key)]
    missing = [key for key in keys if key not in deleted]
    print(f"deleted {len(deleted)} of {len(keys)} keys from {ctx.shown_url}", file=ctx.out)
    if missing:
        print(f"not found: {', '.join(repr(key) for key in missing)}", file=ctx.out)
    return EXIT_OK


def _confirm(ctx: _Context, question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=ctx.out, flush=True)
    try:
        answer = sys.stdin.readline()
    except (EOFError, OSError):
        answer = ""
    return answer.strip().lower() in {"y", "yes"}


def cmd_clear(ctx: _Context) -> int:
    """``cachecore clear [URL] [--yes]``: a prefix, or (confirmed) the whole database."""
    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        prefix = _prefix_of(cache)
        if prefix:
            print(
                f"Deleting the keys under prefix {prefix!r} in {ctx.shown_url} "
                "(SCAN + UNLINK; other keys are kept).",
                file=ctx.out,
            )
        else:
            try:
                size = int(cache._write_client.execute_command("DBSIZE"))
            except client_errors() as exc:
                raise BackendError(f"DBSIZE failed on {cache!r}: {exc}") from exc
            print(
                f"No key prefix is set: this flushes the WHOLE database {ctx.shown_url} "
                f"(FLUSHDB, {size} key{'' if size == 1 else 's'}), including keys cachecore "
                "did not write.",
                file=ctx.out,
            )
            if not ctx.args.yes:
                if not sys.stdin.isatty():
                    print(
                        f"{PROG}: refusing to flush the whole database without confirmation "
                        "(not an interactive terminal); pass --yes to flush it, or "
                        "--option key_prefix=PREFIX to clear only that prefix",
                        file=ctx.err,
                    )
                    return EXIT_USAGE
                if not _confirm(ctx, "Flush it?"):
                    print("Nothing deleted.", file=ctx.out)
                    return EXIT_FAILURE
        cache.clear()
    print("Cleared.", file=ctx.out)
    return EXIT_OK


def cmd_bench(ctx: _Context) -> int:
    """``cachecore bench [--seconds N] [--json] [URL]``: the benchmark workloads on your
    server, within N seconds in all (the cache's build included)."""
    from cachecore.bench import report_bench

    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        try:
            report_bench(
                cache,
                ctx.out,
                ctx.err,
                seconds=ctx.args.seconds,
                as_json=ctx.args.json,
                started=ctx.started,
            )
        except client_errors() as exc:  # the raw client's own errors
            raise BackendError(f"bench failed on {cache!r}: {type(exc).__name__}: {exc}") from exc
    return EXIT_OK


def cmd_stats(ctx: _Context) -> int:
    """``cachecore stats [--seconds N] [--json] [URL]`` (see :mod:`cachecore.stats_cli`)."""
    from cachecore import stats_cli

    _single_url(ctx, ctx.args.url)
    if ctx.args.seconds <= 0:
        raise UsageError("--seconds must be > 0")
    with _open(ctx) as cache:
        if is_cluster_client(cache._write_client):
            raise UsageError("stats reads one server's INFO; give the URL of one node")
        return stats_cli.report(ctx, ctx.shown_url, cache._write_client)


def cmd_demo(ctx: _Context) -> int:
    """``cachecore demo [URL]``: installed backends, the selection and why, a workload."""
    _single_url(ctx, ctx.args.url)
    version = importlib.metadata.version("cachecore")
    print(f"cachecore {version} demo\n", file=ctx.out)
    _backends_table(ctx.out)
    cache = _open(ctx)
    with cache:
        print(f"\nSelected: {ctx.shown_url}, backend {_backend_of(cache)}", file=ctx.out)
        _print_wrapped(ctx.out, f"why: {ctx.source}")
        if ctx.url is None:
            configured = resolve_config().options
            if configured:
                _print_wrapped(ctx.out, f"configured options: {_redact_options(configured)}")
        if ctx.options:
            _print_wrapped(ctx.out, f"options from --option: {_redact_options(ctx.options)}")
        if ctx.source.startswith("nothing configured"):
            print(
                "  (set CACHECORE_URL, or url in [tool.cachecore] of pyproject.toml,\n"
                "  to choose a server)",
                file=ctx.out,
            )
        cache.key_prefix = _prefix_of(cache) + DEMO_PREFIX
        print(file=ctx.out)
        ok = run_demo(cache, ctx.out)
    return EXIT_OK if ok else EXIT_FAILURE


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``cachecore`` argument parser."""
    version = importlib.metadata.version("cachecore")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect cachecore backends and caches, and run the demo.",
        epilog=MAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version}")
    # Accepted before and after the command; the command's own copies use other names.
    common = argparse.ArgumentParser(add_help=False)
    for target, dest_url, dest_options, default in (
        (parser, "url_option", "options", None),
        (common, "command_url_option", "command_options", argparse.SUPPRESS),
    ):
        target.add_argument(
            "--url",
            dest=dest_url,
            metavar="URL",
            default=default,
            help="the cache URL (instead of the configured cache)",
        )
        target.add_argument(
            "-o",
            "--option",
            dest=dest_options,
            metavar="KEY=VALUE",
            action="append",
            default=[] if default is None else default,
            help="a cache or client option for the URL, e.g. key_prefix=app: (repeatable)",
        )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str,
        handler: Callable[[_Context], int],
        help_text: str,
        epilog: str,
        usage: str | None = None,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            usage=usage and _usage(name, usage),
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = add(
        "backends",
        cmd_backends,
        "list the installed backends and serializers, and broken plugins",
        "The table fits 80 columns: long lists of URL schemes are cut short (-v shows\n"
        "them all). --json prints every field; docs/cli.md describes its keys.\n"
        + _exit_help("0 done", USAGE_FAILED),
    )
    sub.add_argument(
        "-v", "--verbose", action="store_true", help="every URL scheme, and each description"
    )
    sub.add_argument("--json", action="store_true", help="print JSON")

    for name, handler, help_text, statuses in (
        (
            "ping",
            cmd_ping,
            "check that the server answers, and how fast",
            ("0 PONG", SERVER_FAILED),
        ),
        (
            "info",
            cmd_info,
            "server name and version, key prefix, key count, used memory",
            ("0 done", SERVER_FAILED),
        ),
        (
            "demo",
            cmd_demo,
            "show the backends and the selected cache, then run a workload on it",
            ("0 every step gave the right answer", "1 a step did not, or the server failed"),
        ),
    ):
        sub = add(
            name, handler, help_text, URL_HELP + _exit_help(*statuses, USAGE_FAILED, INTERRUPTED)
        )
        sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
        if name != "demo":
            sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add(
        "bench",
        cmd_bench,
        "time get/set/get_many/... on a server: cachecore vs the raw client, as ratios",
        URL_HELP
        + "\nIt writes only under cachecore-bench:<random>: (after any key prefix), with a\n"
        "TTL, and removes only those keys. memory:// measures the in-process fake, not\n"
        "a server.\n"
        + _exit_help(
            "0 done",
            SERVER_FAILED,
            USAGE_FAILED + " (or N out of range)",
            INTERRUPTED + ", after removing its keys",
        ),
        "[--seconds N] [--json] [URL]",
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument(
        "--seconds",
        type=_bench_seconds,
        default=20.0,
        metavar="N",
        help="how long in all, setup included: 1 to 3600 (default 20)",
    )
    sub.add_argument("--json", action="store_true", help="print the result as JSON")

    sub = add(
        "stats",
        cmd_stats,
        "the server's hits, misses and commands over a short sample (INFO stats deltas)",
        "[--seconds N] [--json] [URL]",
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument("--seconds", type=float, default=5.0, metavar="N", help="default 5")
    sub.add_argument("--json", action="store_true", help="print JSON")

    keys_epilog = URL_HELP + KEYS_HELP
    sub = add(
        "get",
        cmd_get,
        "print the value of a key",
        keys_epilog
        + _exit_help(
            "0 the value is printed",
            "1 no such key (or a value the cache cannot decode, which it reads as a miss), "
            "or the server failed",
            USAGE_FAILED,
            INTERRUPTED,
        ),
        "[--json] [URL] KEY",
    )
    sub.add_argument("args", nargs="+", metavar="[URL] KEY")
    sub.add_argument("--json", action="store_true", help="print the value as JSON")

    sub = add(
        "set",
        cmd_set,
        "store a value (as a string, or JSON with --json)",
        keys_epilog
        + _exit_help("0 stored", "1 not stored, or the server failed", USAGE_FAILED, INTERRUPTED),
        "[--timeout N] [--json] [URL] KEY VALUE",
    )
    sub.add_argument("args", nargs="+", metavar="[URL] KEY VALUE")
    sub.add_argument(
        "--timeout",
        type=_timeout,
        metavar="N",
        help="seconds until it expires; 0 = never (default: the cache's default_timeout)",
    )
    sub.add_argument("--json", action="store_true", help="parse VALUE as JSON")

    sub = add(
        "delete",
        cmd_delete,
        "delete keys",
        keys_epilog
        + _exit_help("0 the keys are gone (existing or not)", SERVER_FAILED, USAGE_FAILED),
        "[URL] KEY [KEY ...]",
    )
    sub.add_argument("args", nargs="+", metavar="[URL] KEY...")

    sub = add(
        "clear",
        cmd_clear,
        "delete the keys under the key prefix; with none, flush the database (asks first)",
        URL_HELP
        + _exit_help(
            "0 cleared",
            "1 the confirmation was declined, or the server failed",
            USAGE_FAILED + ", or a flush refused without --yes (not a terminal)",
            INTERRUPTED,
        ),
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="flush the whole database without asking when there is no key prefix",
    )
    return parser


def _usage(name: str, arguments: str) -> str:
    """A command's usage line, its own arguments on a second line when one is too long."""
    common = f"{PROG} {name} [-h] [--url URL] [-o KEY=VALUE]"
    if len("usage: ") + len(common) + 1 + len(arguments) <= WIDTH:
        return f"{common} {arguments}"
    return f"{common}\n{' ' * (len('usage: ') + len(PROG) + len(name) + 2)}{arguments}"


def _timeout(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be whole seconds, got {text!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = never expire), got {seconds}")
    return seconds


def _bench_seconds(text: str) -> float:
    from cachecore.bench.run import check_seconds

    try:
        return check_seconds(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _OneLine(logging.Formatter):
    """Each record as one line starting ``cachecore: `` (the library's messages carry
    that prefix already; others get it)."""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().splitlines())
        return message if message.startswith(f"{PROG}:") else f"{PROG}: {message}"


@contextlib.contextmanager
def _logging_to(err: TextIO) -> Iterator[None]:
    """While the command runs, cachecore's warnings go to ``err`` once each, as one line,
    and not also through any handler on the root logger."""
    logger = logging.getLogger(PROG)
    handler = logging.StreamHandler(err)
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, level = saved
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cachecore`` command line; return its exit status."""
    started = time.perf_counter()
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(out)  # a bare command: the help, as pip does
        return EXIT_OK
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = _Context(args, out, err, started=started)
    try:
        with _logging_to(err):
            return _run(ctx)
    except BrokenPipeError:
        # The reader went away (`cachecore backends | head -1`): stop quietly, and keep
        # the interpreter from failing again while it flushes stdout at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return EXIT_FAILURE


def _run(ctx: _Context) -> int:
    args, err = ctx.args, ctx.err
    handler: Callable[[_Context], int] = args.handler
    try:
        url = getattr(args, "command_url_option", None)
        if url is not None and args.url_option is not None and url != args.url_option:
            raise UsageError("give --url once")
        ctx.url = url if url is not None else args.url_option
        ctx.options = _parse_options([*args.options, *getattr(args, "command_options", [])])
        return handler(ctx)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {_scrub(str(exc), ctx)}", file=err)
        return EXIT_USAGE
    except (ConfigurationError, PluginConflictError) as exc:
        message = str(exc)
        if ctx.url is None and ctx.source and ctx.source not in message:
            message += f"\n(the configuration came from {ctx.source})"
        print(f"{PROG}: error: {_scrub(message, ctx)}", file=err)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"{PROG}: {_scrub(_backend_message(ctx, exc), ctx)}", file=err)
        return EXIT_FAILURE
    except (ValueTooLargeError, SerializationError) as exc:
        print(f"{PROG}: {_scrub(str(exc), ctx)}", file=err)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    finally:
        with contextlib.suppress(BrokenPipeError):
            ctx.out.flush()
