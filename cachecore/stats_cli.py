"""``cachecore stats URL``: what the server saw during a short sample.

A command-line process has no cache traffic of its own to count, so the command reads
the server's ``INFO stats`` twice, ``--seconds`` apart, and prints the differences: the
reads that found a key (``keyspace_hits``) or not (``keyspace_misses``), the hit ratio,
commands processed per second, and keys expired or evicted. These count every client
of that server (and database-wide, not per key prefix). The counters of one
application's cache are ``cache.stats()`` in that application (see
``docs/observability.md``).
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, TextIO

FIELDS = (
    "keyspace_hits",
    "keyspace_misses",
    "total_commands_processed",
    "expired_keys",
    "evicted_keys",
)
"""The ``INFO stats`` fields whose change over the sample is shown."""


class _Context(Protocol):
    args: Any
    out: TextIO


def sample(client: Any, seconds: float) -> dict[str, Any]:
    """The change of each of :data:`FIELDS` over ``seconds`` on ``client``'s server,
    with ``hit_ratio`` (None without reads) and ``commands_per_second``; the INFO
    commands of the sample itself are not counted."""
    first = client.info("stats")
    started = time.monotonic()
    time.sleep(seconds)
    second = client.info("stats")
    elapsed = time.monotonic() - started
    delta = {name: int(second.get(name, 0)) - int(first.get(name, 0)) for name in FIELDS}
    delta["total_commands_processed"] = max(delta["total_commands_processed"] - 1, 0)
    reads = delta["keyspace_hits"] + delta["keyspace_misses"]
    return {
        **delta,
        "hit_ratio": delta["keyspace_hits"] / reads if reads else None,
        "commands_per_second": delta["total_commands_processed"] / elapsed,
        "elapsed": elapsed,
    }


def report(ctx: _Context, shown_url: str, client: Any) -> int:
    """Sample ``client``'s server for ``ctx.args.seconds`` and print the result (a
    table, or one JSON object with ``--json``)."""
    seconds = float(ctx.args.seconds)
    stats = sample(client, seconds)
    if ctx.args.json:
        data = {"url": shown_url, "seconds": round(stats.pop("elapsed"), 3), "server": stats}
        print(json.dumps(data), file=ctx.out)
        return 0
    ratio = stats["hit_ratio"]
    lines = [
        f"{shown_url}: server INFO stats over {stats['elapsed']:.1f} s (all clients)",
        f"  keyspace hits       {stats['keyspace_hits']}",
        f"  keyspace misses     {stats['keyspace_misses']}",
        f"  hit ratio           {'-' if ratio is None else f'{ratio:.1%}'}",
        f"  commands/s          {stats['commands_per_second']:.1f}",
        f"  expired keys        {stats['expired_keys']}",
        f"  evicted keys        {stats['evicted_keys']}",
    ]
    print("\n".join(lines), file=ctx.out)
    return 0
