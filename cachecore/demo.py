"""A short, real workload on a cache that checks every answer: ``cachecore demo``.

It exercises what an application does with a cache (hits, misses, ``add`` on an
existing key, a value expiring, counters, batches of 100 keys, clearing) and prints
each step with how long it took and what it saw. Everything happens under the cache's key
prefix, which must not be empty, so the demo never touches keys outside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from cachecore.redis_base import BaseRedisCache

__all__ = ["DEMO_PREFIX", "EXPIRY_WAIT", "run_demo"]

DEMO_PREFIX = "cachecore-demo:"
"""The key prefix ``cachecore demo`` adds to the configured one."""

EXPIRY_WAIT = 1.1
"""Seconds the demo waits for a value stored with ``timeout=1`` to expire."""

BATCH = 100


def _prefix_of(cache: BaseRedisCache) -> str:
    prefix = cache.key_prefix
    return prefix if isinstance(prefix, str) else prefix()


def _timing(seconds: float, ops: int) -> str:
    if ops == 1:
        return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1e6:,.0f} µs"
    rate = ops / seconds if seconds > 0 else float("inf")
    return f"{ops} ops, {seconds * 1e3:,.1f} ms, {rate:,.0f} ops/s"


class _Steps:
    """Runs the steps, prints one line each, counts the wrong answers."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed: list[str] = []
        self.count = 0

    def run(self, label: str, ops: int, step: Callable[[], tuple[bool, str]]) -> None:
        self.count += 1
        start = time.perf_counter()
        ok, detail = step()
        elapsed = time.perf_counter() - start
        mark = "ok  " if ok else "FAIL"
        # Two lines, so a step fits an 80-column terminal.
        self.out.write(f"  {mark} {label:<28} {_timing(elapsed, ops)}\n       {detail}\n")
        self.out.flush()
        if not ok:
            self.failed.append(label)


class _Workload:
    """The demo's steps; each returns (right answer?, what happened)."""

    def __init__(self, cache: BaseRedisCache) -> None:
        self.cache = cache
        self.profile: dict[str, Any] = {"name": "Ada", "visits": 3, "tags": ["admin", "beta"]}
        self.items = {f"item:{i}": i * i for i in range(BATCH)}

    def set_get(self) -> tuple[bool, str]:
        hits = 0
        for i in range(BATCH):
            self.cache.set(f"user:{i}", self.profile)
            if self.cache.get(f"user:{i}") == self.profile:
                hits += 1
        return hits == BATCH, f"{hits}/{BATCH} hits, values round-trip"

    def miss(self) -> tuple[bool, str]:
        value = self.cache.get("no-such-key")
        there = self.cache.has("no-such-key")
        return value is None and not there, f"get -> {value!r}, has -> {there}"

    def add_existing(self) -> tuple[bool, str]:
        added = self.cache.add("user:0", "someone else")
        kept = self.cache.get("user:0") == self.profile
        fresh = self.cache.add("fresh", "new")
        detail = f"existing -> {added} (value kept: {kept}), new -> {fresh}"
        return not added and kept and fresh, detail

    def expiry(self) -> tuple[bool, str]:
        self.cache.set("short-lived", "soon gone", timeout=1)
        before = self.cache.get("short-lived")
        time.sleep(EXPIRY_WAIT)
        after = self.cache.get("short-lived")
        detail = f"timeout=1: {before!r}, after {EXPIRY_WAIT} s -> {after!r}"
        return before == "soon gone" and after is None, detail

    def counters(self) -> tuple[bool, str]:
        up: int | None = None
        for _ in range(BATCH):
            up = self.cache.inc("hits")
        down = self.cache.dec("hits", 58)
        return up == BATCH and down == BATCH - 58, f"{BATCH} x inc -> {up}, dec(58) -> {down}"

    def set_many(self) -> tuple[bool, str]:
        stored = self.cache.set_many(self.items)
        return stored == list(self.items), f"stored {len(stored)}/{BATCH} keys in one round trip"

    def get_many(self) -> tuple[bool, str]:
        values = self.cache.get_many(*self.items)
        pairs = zip(values, self.items.values(), strict=True)
        right = sum(1 for got, want in pairs if got == want)
        return right == BATCH, f"{right}/{BATCH} values right in one round trip"

    def delete(self) -> tuple[bool, str]:
        first = self.cache.delete("fresh")
        again = self.cache.delete("fresh")
        return first and not again, f"delete -> {first}, again -> {again}"

    def clear(self) -> tuple[bool, str]:
        cleared = self.cache.clear()
        values = self.cache.get_many(*self.items, "user:0", "hits", "short-lived")
        left = sum(1 for value in values if value is not None)
        return cleared and left == 0, f"clear -> {cleared}, {left} demo keys left"


def run_demo(cache: BaseRedisCache, out: TextIO) -> bool:
    """Run the workload on ``cache`` and print each step to ``out``.

    The cache needs a non-empty key prefix (``cachecore demo`` uses the configured one
    plus :data:`DEMO_PREFIX`): the demo clears that prefix before and after, and
    clearing without a prefix would flush the whole database. Takes a little over
    :data:`EXPIRY_WAIT` seconds, most of it waiting for a value to expire.

    :returns: True when every step gave the right answer.
    :raises BackendError: the server failed, for a cache built with ``raise_errors=True``.
    """
    prefix = _prefix_of(cache)
    if not prefix:
        out.write(
            "demo refused: the cache has no key prefix, and clearing it would flush the "
            "whole database\n"
        )
        return False
    started = time.perf_counter()
    out.write(f"Workload under key prefix {prefix!r}:\n")
    cache.clear()  # leftovers of an interrupted run
    work = _Workload(cache)
    steps = _Steps(out)
    steps.run("set + get (hits)", 2 * BATCH, work.set_get)
    steps.run("get a missing key (miss)", 2, work.miss)
    steps.run("add on an existing key", 3, work.add_existing)
    steps.run("a value expiring", 1, work.expiry)
    steps.run("inc / dec counter", BATCH + 1, work.counters)
    steps.run(f"set_many of {BATCH} keys", BATCH, work.set_many)
    steps.run(f"get_many of {BATCH} keys", BATCH, work.get_many)
    steps.run("delete", 2, work.delete)
    steps.run("clear the demo prefix", 1, work.clear)

    elapsed = time.perf_counter() - started
    if steps.failed:
        out.write(
            f"demo FAILED: {len(steps.failed)} of {steps.count} steps gave a wrong answer: "
            f"{', '.join(steps.failed)}\n"
        )
        return False
    out.write(f"all {steps.count} steps right in {elapsed:.2f} s\ndemo OK\n")
    return True
