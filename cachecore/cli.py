"""The ``cachecore`` command: look at installed backends and at a cache, run the demo.

::

    cachecore demo                          # the configured cache (memory:// by default)
    cachecore backends [--json]
    cachecore ping valkey://localhost:6379/0
    cachecore --option key_prefix=app: info redis://localhost:6379/0
    cachecore set KEY VALUE --timeout 60
    cachecore get KEY

Exit status: 0 done; 1 the server failed or was unreachable, a key was missing, or a
confirmation was declined; 2 bad usage or configuration (unknown backend, bad option).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from cachecore import plugins
from cachecore.config import from_url, get_cache, resolve_config
from cachecore.demo import DEMO_PREFIX, run_demo
from cachecore.errors import (
    BackendError,
    ConfigurationError,
    PluginConflictError,
    SerializationError,
    ValueTooLargeError,
)
from cachecore.redaction import is_secret, redact_options, scrub, secrets_in
from cachecore.redis_base import BaseRedisCache, client_errors, glob_escape
from cachecore.server_info import describe_server, parse_info
from cachecore.topology import describe_topology, is_cluster_client, node_client

__all__ = ["main"]

PROG = "cachecore"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SCAN_BATCH = 1000
"""Keys per SCAN step when ``info`` counts the keys under a prefix."""

URL_HELP = """\
URL: a cache URL such as memory://, redis://[[USER]:PASSWORD@]HOST:PORT/DB,
valkey://..., keydb://... (its scheme picks the backend). Without one, the configured
cache is used: $CACHECORE_URL (plus CACHECORE_<OPTION> variables), else [tool.cachecore]
in ./pyproject.toml, else the embedded memory:// default.

For get, set and delete the URL is optional in front of the keys: the first argument is
taken as the URL when it contains '://' and more arguments follow it. Give the URL
with --url instead to make every argument a key (e.g. a key that contains '://').

exit status: 0 done; 1 the server failed or is unreachable, a key is missing, or a
confirmation was declined; 2 bad usage or configuration.
"""


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
    """The cache the command line names (or the configured one), raising on faults."""
    options = {**ctx.options, "raise_errors": True}
    if ctx.url is not None:
        ctx.source = "the command line"
        cache = from_url(ctx.url, **options)
    else:
        ctx.source = resolve_config().source
        cache = get_cache(**options)
    ctx.shown_url = cache.description
    return cache


def _backend_of(cache: BaseRedisCache) -> str:
    scheme = cache.description.partition("://")[0]
    try:
        backend = plugins.find_backend(scheme)
    except ConfigurationError:
        return type(cache).__name__
    return f"{backend.name} (from {backend.distribution} {backend.version})"


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


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


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


def _backends_table(out: TextIO) -> None:
    reg = plugins.registry()
    rows = [["NAME", "SCHEMES", "DISTRIBUTION", "DESCRIPTION"]]
    for backend in plugins.installed_backends(reg):
        rows.append(
            [
                backend.name,
                ", ".join(f"{scheme}://" for scheme in backend.schemes),
                f"{backend.distribution} {backend.version}",
                backend.description,
            ]
        )
    for line in _table(rows):
        print(f"  {line}", file=out)
    listed = {backend.distribution for backend in plugins.installed_backends(reg)}
    unlisted = sorted(set(plugins.FIRST_PARTY.values()) - listed)
    disabled = [name for name in unlisted if plugins.is_installed(name)]
    missing = [name for name in unlisted if name not in disabled]
    if missing:
        print(f"  not installed: {', '.join(missing)} (pip install NAME)", file=out)
    if disabled:
        print(
            f"  installed but not loaded: {', '.join(disabled)} "
            "(disabled by CACHECORE_DISABLE_PLUGINS, or failed: see below)",
            file=out,
        )
    if reg.failures:
        print("Plugins that failed to load:", file=out)
        for failure in reg.failures:
            print(f"  {failure}", file=out)


def cmd_backends(ctx: _Context) -> int:
    """``cachecore backends``: what is installed, and what failed to load."""
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
        print(json.dumps(document, indent=2), file=ctx.out)
        return EXIT_OK
    print("Installed backends:", file=ctx.out)
    _backends_table(ctx.out)
    return EXIT_OK


def cmd_ping(ctx: _Context) -> int:
    """``cachecore ping [URL]``."""
    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        start = time.perf_counter()
        answered = cache.ping()
        elapsed = time.perf_counter() - start
    if not answered:
        print(f"{PROG}: no PONG from {ctx.shown_url}", file=ctx.err)
        return EXIT_FAILURE
    print(f"PONG from {ctx.shown_url} in {elapsed * 1e3:.2f} ms", file=ctx.out)
    return EXIT_OK


def _count_keys(client: Any, prefix: str) -> tuple[int, str]:
    if not prefix:
        return int(client.execute_command("DBSIZE")), "in the database (DBSIZE)"
    pattern = glob_escape(prefix) + "*"
    cursor: Any = 0
    count = 0
    while True:
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_BATCH)
        count += len(keys)
        if int(cursor) == 0:
            return count, f"under the prefix (SCAN MATCH {pattern})"


def _server_and_memory(client: Any) -> tuple[str, str]:
    if type(client).__module__.startswith("fakeredis"):
        version = importlib.metadata.version("fakeredis")
        return f"embedded (fakeredis {version})", "n/a (in-process, shared with the program)"
    reply = client.execute_command("INFO")
    info: Mapping[str, Any] = reply if isinstance(reply, Mapping) else parse_info(reply)
    name, version = describe_server(info)
    server = f"{name} {version}"
    flat = {
        k: v
        for section in info.values()
        if isinstance(section, Mapping)
        for k, v in section.items()
    }
    flat.update(info)
    reported = str(flat.get("redis_version", ""))
    if name != "Redis" and reported and reported != version:
        server += f" (reports redis_version:{reported} for compatibility)"
    memory = flat.get("used_memory_human") or flat.get("used_memory")
    return server, str(memory) if memory is not None else "n/a"


def _nodes_table(nodes: list[dict[str, Any]]) -> list[str]:
    rows = [["ADDRESS", "ROLE", "SLOTS", "KEYS"]]
    for node in nodes:
        slots = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in node["slots"]) or "-"
        keys = str(node["keys"]) if node["reachable"] else f"unreachable ({node['error']})"
        rows.append([node["address"], node["role"], slots, keys])
    return _table(rows)


def cmd_info(ctx: _Context) -> int:
    """``cachecore info [URL]``: which server, where, how many keys, how much memory;
    for a cluster or Sentinel deployment also every node with its role, slots and keys."""
    _single_url(ctx, ctx.args.url)
    with _open(ctx) as cache:
        prefix = _prefix_of(cache)
        client = cache._write_client
        nodes: list[dict[str, Any]] = []
        try:
            if is_cluster_client(client):
                nodes = describe_topology(cache)
                primary = node_client(client, client.get_primaries()[0])
                server, memory = _server_and_memory(primary)
                primaries = [n for n in nodes if n["role"] == "primary"]
                keys = sum(n["keys"] or 0 for n in primaries)
                how = f"on {len(primaries)} primaries (SCAN on each)"
                memory += " (first primary)"
            else:
                server, memory = _server_and_memory(client)
                keys, how = _count_keys(client, prefix)
                if getattr(client.connection_pool, "sentinel_manager", None) is not None:
                    nodes = describe_topology(cache)
        except client_errors() as exc:
            raise BackendError(f"info failed on {cache!r}: {type(exc).__name__}: {exc}") from exc
    rows = [
        ["server:", server],
        ["url:", ctx.shown_url],
        ["backend:", _backend_of(cache)],
        ["key prefix:", repr(prefix) if prefix else "(none)"],
        ["keys:", f"{keys} {how}"],
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
    """``cachecore get [URL] KEY``."""
    rest = _split_url(ctx, ctx.args.args, 1)
    if len(rest) != 1:
        raise UsageError(f"get takes one KEY (after an optional URL), got {len(rest)}: {rest}")
    key = rest[0]
    with _open(ctx) as cache:
        value = cache.get(key)
        if value is None and not cache.has(key):
            print(f"{PROG}: no key {key!r} in {ctx.shown_url}", file=ctx.err)
            return EXIT_FAILURE
    print(_format_value(value, ctx.args.json), file=ctx.out)
    return EXIT_OK


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
    """``cachecore bench [URL] [--seconds N]``: the benchmark workloads on your server."""
    from cachecore.bench import main_bench

    _single_url(ctx, ctx.args.url)
    return main_bench(_open(ctx), ctx.out, seconds=ctx.args.seconds)


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
    print(f"cachecore {version} demo", file=ctx.out)
    print("\nBackends found:", file=ctx.out)
    _backends_table(ctx.out)
    cache = _open(ctx)
    with cache:
        print(f"\nSelected: {ctx.shown_url}, backend {_backend_of(cache)}", file=ctx.out)
        print(f"  why: {ctx.source}", file=ctx.out)
        if ctx.url is None:
            configured = resolve_config().options
            if configured:
                print(f"  configured options: {_redact_options(configured)}", file=ctx.out)
        if ctx.options:
            print(f"  options from --option: {_redact_options(ctx.options)}", file=ctx.out)
        if ctx.source.startswith("nothing configured"):
            print(
                "  (set CACHECORE_URL, or url in [tool.cachecore] of pyproject.toml, "
                "to choose a server)",
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
        epilog=URL_HELP,
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
        name: str, handler: Callable[[_Context], int], help_text: str, usage: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            usage=usage and f"{PROG} {name} [-h] [--url URL] [-o KEY=VALUE] {usage}",
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=URL_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = add("backends", cmd_backends, "list the installed backends and broken plugins")
    sub.add_argument("--json", action="store_true", help="print JSON")

    for name, handler, help_text in (
        ("ping", cmd_ping, "check that the server answers, and how fast"),
        ("info", cmd_info, "server name and version, key prefix, key count, used memory"),
        ("demo", cmd_demo, "show the backends and the selected cache, then run a workload on it"),
    ):
        sub = add(name, handler, help_text)
        sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")

    sub = add(
        "bench",
        cmd_bench,
        "time get/set/get_many/... on a server: cachecore vs the raw client, as ratios",
        "[--seconds N] [URL]",
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument(
        "--seconds", type=float, default=20.0, metavar="N", help="about how long (default 20)"
    )

    sub = add(
        "stats",
        cmd_stats,
        "the server's hits, misses and commands over a short sample (INFO stats deltas)",
        "[--seconds N] [--json] [URL]",
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument("--seconds", type=float, default=5.0, metavar="N", help="default 5")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add("get", cmd_get, "print the value of a key", "[--json] [URL] KEY")
    sub.add_argument("args", nargs="+", metavar="[URL] KEY")
    sub.add_argument("--json", action="store_true", help="print the value as JSON")

    sub = add(
        "set",
        cmd_set,
        "store a value (as a string, or JSON with --json)",
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

    sub = add("delete", cmd_delete, "delete keys", "[URL] KEY [KEY ...]")
    sub.add_argument("args", nargs="+", metavar="[URL] KEY...")

    sub = add(
        "clear",
        cmd_clear,
        "delete the keys under the key prefix; without one, flush the database (asks first)",
    )
    sub.add_argument("url", nargs="?", metavar="URL", help="the cache URL")
    sub.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="flush the whole database without asking when there is no key prefix",
    )
    return parser


def _timeout(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be whole seconds, got {text!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = never expire), got {seconds}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the ``cachecore`` command line; return its exit status."""
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = _Context(args, out, err)
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
        if ctx.url is None and ctx.source:
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
        return 130
    finally:
        out.flush()
