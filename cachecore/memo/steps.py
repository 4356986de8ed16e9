"""``get_or_set``, tagged ``set`` and ``invalidate_tags``, written once as steps.

Like :mod:`cachecore.protocol`, each method here is a generator that yields
``(callable, arguments)`` pairs and receives each result: the blocking cache's driver
calls them, the asyncio cache's awaits them. Besides transport methods the steps yield
two callables the caller supplies, so waiting and computing stay the driver's business:
``sleep(seconds)`` (``time.sleep`` or ``asyncio.sleep``) and ``compute()`` (the user's
function, awaited on the asyncio cache). Every decision (fresh, stale, refresh early,
wait, take the lock) is a plain function of what was read and the clock.

The lock is ``SET <key>:cachecore-lock <random token> NX PX <lock_timeout>``, released
only by its owner: ``DELIFEQ`` where the server has it (Valkey 9), else a
compare-and-delete script; which one works is learnt once per cache.

What the steps do is counted in ``cache.stats().extra`` (:mod:`cachecore.stats`):
``memoize.computations`` (calls of ``fn``), ``memoize.lock_waits`` (calls that waited
for another caller's computation, once per call) and ``memoize.stale_served`` (values
served past their expiry: within ``stale_while_revalidate`` while another caller
recomputes, or by ``stale_if_error``).
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cachecore.memo.envelope import Entry, is_envelope, pack, unpack
from cachecore.protocol import CacheProtocol, Steps
from cachecore.types import Timeout

log = logging.getLogger("cachecore")

LOCK_SUFFIX = ":cachecore-lock"
TAG_NAMESPACE = "cachecore:tag:"
RELEASE_SCRIPT = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
"""Delete the lock only if it still holds the owner's token."""

LAST_GOOD_SIZE = 1024
"""Values kept in process per cache for ``stale_if_error`` while the server is down."""

_POLL_FIRST = 0.002
_POLL_MAX = 0.05
_MISSING: Any = object()
_OK = (True, b"OK", "OK")

Strategy = Literal["lock", "xfetch"]


def _seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if value < 0 or math.isnan(value):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def check_tags(tags: Iterable[str] | str) -> tuple[str, ...]:
    """``tags`` as a tuple (a single str is one tag).

    :raises TypeError: a tag is not a non-empty str.
    """
    found = (tags,) if isinstance(tags, str) else tuple(tags)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty str, got {tag!r}")
    return found


@dataclass(frozen=True)
class Policy:
    """How ``get_or_set`` refreshes one key; see :meth:`cachecore.BaseRedisCache.get_or_set`.

    :raises TypeError, ValueError: an option has a wrong type or value.
    """

    tags: tuple[str, ...] = ()
    strategy: Strategy = "lock"
    beta: float = 1.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    lock_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.strategy not in ("lock", "xfetch"):
            raise ValueError(f"strategy must be 'lock' or 'xfetch', got {self.strategy!r}")
        object.__setattr__(self, "tags", check_tags(self.tags))
        for name in ("beta", "stale_while_revalidate", "stale_if_error", "lock_timeout"):
            object.__setattr__(self, name, _seconds(getattr(self, name), name))
        if self.lock_timeout < 0.001:
            raise ValueError(f"lock_timeout must be at least 0.001 s, got {self.lock_timeout}")


def tag_key(cache: CacheProtocol, tag: str) -> str:
    """The server key holding ``tag``'s version (under the cache's key prefix)."""
    return cache._prefix() + TAG_NAMESPACE + tag


def _version(reply: Any) -> int | None:
    try:
        return None if reply is None else int(reply)
    except ValueError:
        return None


# -- the pure decisions -------------------------------------------------------------------

FRESH, REFRESH, STALE, MISS = "fresh", "refresh", "stale", "miss"


def judge(entry: Entry | None, current: dict[str, int | None], policy: Policy, now: float) -> str:
    """What a read found: FRESH (serve it), REFRESH (serve it, but one caller should
    recompute now: XFetch's early refresh, or inside ``stale_while_revalidate``), STALE
    (past its expiry: recompute, but keep it for ``stale_if_error``) or MISS."""
    if entry is None or any(current.get(t) != v for t, v in entry.tags.items()):
        return MISS
    if not entry.expires or now < entry.expires:
        if (
            policy.strategy == "xfetch"
            and entry.expires
            and entry.delta > 0
            # XFetch: -ln(U) is an exponential draw, so early refreshes grow likelier
            # as the expiry nears, scaled by how long a computation takes.
            and now - entry.delta * policy.beta * math.log(1.0 - random.random()) >= entry.expires
        ):
            return REFRESH
        return FRESH
    if now < entry.expires + policy.stale_while_revalidate:
        return REFRESH
    if now < entry.expires + policy.stale_if_error:
        return STALE
    return MISS


def poll_delay(polls: int) -> float:
    """Seconds a waiter sleeps before its next look: short at first, then at most
    :data:`_POLL_MAX`, jittered so waiters don't poll in step."""
    return float(min(_POLL_MAX, _POLL_FIRST * 2.0**polls) * (0.5 + random.random()))


# -- the steps ----------------------------------------------------------------------------


class _Lock:
    """A lock this caller may hold: released at most once, by whichever path ends first."""

    __slots__ = ("held", "key", "token")

    def __init__(self, key: str, token: str) -> None:
        self.key = key
        self.token = token
        self.held = True


class Memo:
    """The get-or-set machinery of one cache (its release command, its last good values)."""

    def __init__(self, cache: CacheProtocol) -> None:
        self.cache = cache
        self.release_with = "DELIFEQ"
        self.last_good: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        # Threads share last_good: move_to_end of a key another thread just evicted raises.
        self._last_good_lock = threading.Lock()
        # A tag version that cannot be read or created counts as a backend fault.
        self._unreadable: tuple[type[BaseException], ...] = (*cache._errors, LookupError)

    # reading

    def _read(self, full: str, lock: str | None, tags: list[str]) -> Steps[Any]:
        """Read the entry of ``full`` (and the lock holder, and the current version of
        every tag it or the call names): ``(data, holder, entry, current versions)``."""
        cache = self.cache
        keys = [full, *([lock] if lock else []), *(tag_key(cache, t) for t in tags)]
        values = yield from cache._steps_mget("get_or_set", keys)
        data = values[0]
        holder = values[1] if lock else None
        current = dict(zip(tags, map(_version, values[2 if lock else 1 :]), strict=True))
        entry = self._entry(data, bool(tags))
        if entry is not None:
            extra = [t for t in entry.tags if t not in current]
            if extra:  # tagged by set(tags=) with tags this call does not name
                replies = yield from cache._steps_mget(
                    "get_or_set", [tag_key(cache, t) for t in extra]
                )
                current.update(zip(extra, map(_version, replies), strict=True))
        return data, holder, entry, current

    def _entry(self, data: bytes | None, tagged: bool) -> Entry | None:
        if data is None:
            return None
        if is_envelope(data):
            return unpack(data)
        # A plain value (cache.set without tags): fresh, but it cannot prove any tag.
        return None if tagged else Entry(payload=data)

    def _value(self, key: str, entry: Entry) -> Any:
        return self.cache._decode_or(key, entry.payload, _MISSING)

    def _serve(self, entry: Entry, value: Any) -> Any:
        """Count ``value`` (read from ``entry``) as stale if it is past its expiry."""
        if entry.expires and time.time() >= entry.expires:
            self.cache.counters.add("memoize.stale_served")
        return value

    def _call(self, compute: Callable[[], Any]) -> Steps[Any]:
        """Call ``fn`` (counted in ``memoize.computations``)."""
        self.cache.counters.add("memoize.computations")
        return (yield compute, ())

    def _versions(
        self, tags: tuple[str, ...], current: dict[str, int | None]
    ) -> Steps[dict[str, int]]:
        """The versions of ``tags``, creating (at a random start) those that have none, so
        that no value is ever stored under a version a new counter could reach again."""
        missing = [t for t in tags if current.get(t) is None]
        if missing:
            cache = self.cache
            keys = [tag_key(cache, t) for t in missing]
            start = [("SET", k, secrets.randbelow(2**48) + 1, "NX") for k in keys]
            replies = yield cache._writes.send_batch, (start,)
            failure = next((r for r in replies if isinstance(r, BaseException)), None)
            if failure is not None:
                raise failure
            values = yield from cache._steps_mget("get_or_set", keys)
            current = {**current, **dict(zip(missing, map(_version, values), strict=True))}
        versions = {t: current[t] for t in tags}
        if any(v is None for v in versions.values()):
            raise LookupError("a tag version could not be read")
        return {t: v for t, v in versions.items() if v is not None}

    # writing

    def _store_commands(
        self,
        full: str,
        payload: bytes,
        expiry: int,
        delta: float,
        versions: dict[str, int],
        keep: float,
    ) -> tuple[Any, ...]:
        now = time.time()
        data = pack(Entry(payload, now + expiry if expiry else 0.0, delta, versions))
        if not expiry:
            return ("SET", full, data)
        return ("SET", full, data, "PX", math.ceil((expiry + keep) * 1000))

    def _release_command(self, lock: str, token: str) -> tuple[Any, ...]:
        if self.release_with == "DELIFEQ":
            return ("DELIFEQ", lock, token)
        return ("EVAL", RELEASE_SCRIPT, 1, lock, token)

    def _after_release(self, reply: Any, lock: str, token: str) -> Steps[None]:
        """Fall back to the script once when the server lacks DELIFEQ; a release that
        fails is logged (the lock then expires by itself after ``lock_timeout``)."""
        cache = self.cache
        unknown = isinstance(reply, cache._writes.reply_errors)
        if unknown and self.release_with == "DELIFEQ":
            self.release_with = "EVAL"
            try:
                reply = yield cache._writes.send, self._release_command(lock, token)
            except cache._errors as exc:
                reply = exc
        if isinstance(reply, BaseException):
            log.warning(
                "cachecore: cannot release the lock %r on %r (%s: %s); it expires by itself",
                lock,
                cache,
                type(reply).__name__,
                reply,
            )

    def _release(self, lock: _Lock) -> Steps[None]:
        if not lock.held:
            return
        lock.held = False  # a cancellation during the release must not release again
        try:
            reply = yield self.cache._writes.send, self._release_command(lock.key, lock.token)
        except self.cache._errors as exc:
            reply = exc
        yield from self._after_release(reply, lock.key, lock.token)

    def _remember(self, full: str, expires: float, value: Any, policy: Policy) -> None:
        if policy.stale_if_error:
            with self._last_good_lock:
                self.last_good[full] = (expires, value)
                self.last_good.move_to_end(full)
                if len(self.last_good) > LAST_GOOD_SIZE:
                    self.last_good.popitem(last=False)

    # the methods

    def get_or_set(
        self,
        key: str,
        timeout: Timeout,
        policy: Policy,
        compute: Callable[[], Any],
        sleep: Callable[[float], Any],
    ) -> Steps[Any]:
        """The steps of ``get_or_set``: see :meth:`cachecore.BaseRedisCache.get_or_set`."""
        cache = self.cache
        full = cache._key(key)
        expiry = cache._expiry(timeout)
        lock_key = full + LOCK_SUFFIX
        tags = list(policy.tags)
        polls = 0
        waited = time.monotonic()
        while True:
            try:
                _, holder, entry, current = yield from self._read(full, lock_key, tags)
            except cache._errors as exc:
                return (yield from self._server_down(full, exc, policy, compute))
            state = judge(entry, current, policy, time.time())
            value = _MISSING if entry is None or state == MISS else self._value(key, entry)
            if value is _MISSING:
                state = MISS
            if state == FRESH or (state == REFRESH and holder is not None):
                assert entry is not None
                self._remember(full, entry.expires, value, policy)
                return self._serve(entry, value)
            if holder is None:
                lock = _Lock(lock_key, secrets.token_hex(16))
                take = (
                    "SET",
                    lock_key,
                    lock.token,
                    "NX",
                    "PX",
                    math.ceil(policy.lock_timeout * 1000),
                )
                try:
                    won = yield cache._writes.send_once, take
                except cache._errors as exc:
                    return (yield from self._server_down(full, exc, policy, compute))
                except GeneratorExit:
                    raise
                except BaseException:
                    # Cancelled while the SET NX was in flight: it may have taken the
                    # lock, which only our token can release before it expires.
                    yield from self._release(lock)
                    raise
                if won in _OK:
                    return (
                        yield from self._compute(key, full, lock, entry, expiry, policy, compute)
                    )
            if state == REFRESH:  # another caller refreshes it: serve what is there
                assert entry is not None
                return self._serve(entry, value)
            if time.monotonic() - waited > 2 * policy.lock_timeout:
                # The lock keeps being taken and never released: stop waiting.
                log.warning("cachecore: gave up waiting for the lock of %r on %r", key, cache)
                return (yield from self._call(compute))
            if not polls:
                cache.counters.add("memoize.lock_waits")
            yield sleep, (poll_delay(polls),)
            polls += 1

    def _compute(
        self,
        key: str,
        full: str,
        lock: _Lock,
        seen: Entry | None,
        expiry: int,
        policy: Policy,
        compute: Callable[[], Any],
    ) -> Steps[Any]:
        """Compute and store under ``lock``, which is released on every way out,
        including an asyncio cancellation at any step."""
        try:
            return (yield from self._compute_locked(key, full, lock, seen, expiry, policy, compute))
        except GeneratorExit:
            raise  # the steps were closed unfinished: nothing can be sent any more
        except BaseException:
            yield from self._release(lock)
            raise

    def _compute_locked(
        self,
        key: str,
        full: str,
        lock: _Lock,
        seen: Entry | None,
        expiry: int,
        policy: Policy,
        compute: Callable[[], Any],
    ) -> Steps[Any]:
        cache = self.cache
        tags = list(policy.tags)
        # Judged without XFetch's draw or the stale window: FRESH = not expired yet.
        exact = Policy(policy.tags, "lock", stale_if_error=policy.stale_if_error)
        try:
            # Read again now that the lock is ours: the previous owner may have stored
            # a value between our read and our SET NX. The entry we decided to refresh
            # (``seen``: XFetch's early refresh) is recomputed, not served again.
            _, _, entry, current = yield from self._read(full, None, tags)
            state = judge(entry, current, exact, time.time())
            if state == FRESH and entry is not None and entry != seen:
                value = self._value(key, entry)
                if value is not _MISSING:
                    yield from self._release(lock)
                    return value
            versions = yield from self._versions(policy.tags, current)
        except self._unreadable as exc:
            yield from self._release(lock)
            return (yield from self._server_down(full, exc, policy, compute))
        started = time.monotonic()
        try:
            value = yield from self._call(compute)
        except GeneratorExit:
            raise
        except BaseException as exc:
            # Not cached: the next caller (or a waiter) computes again.
            yield from self._release(lock)
            # stale_if_error: the previous value, expired (STALE) or being refreshed
            # early (FRESH), is served instead of the error.
            if isinstance(exc, Exception) and entry is not None and policy.stale_if_error:
                stale = self._value(key, entry) if state in (FRESH, STALE) else _MISSING
                if stale is not _MISSING:
                    log.warning(
                        "cachecore: computing %r raised %s: %s; serving the previous value "
                        "(expiry %+.1f s from now, stale_if_error)",
                        key,
                        type(exc).__name__,
                        exc,
                        entry.expires - time.time(),
                    )
                    return self._serve(entry, stale)
            raise
        delta = time.monotonic() - started
        if delta > policy.lock_timeout:
            log.warning(
                "cachecore: computing %r took %.3f s, longer than its lock_timeout of %.3f s: "
                "the lock expired meanwhile, so other callers may have computed it too; "
                "raise lock_timeout above fn's duration",
                key,
                delta,
                policy.lock_timeout,
            )
        payload = cache._dump(full, value, expiry)
        keep = max(policy.stale_while_revalidate, policy.stale_if_error)
        store = self._store_commands(full, payload, expiry, delta, versions, keep)
        try:
            stored, released = yield (
                cache._writes.send_batch,
                ([store, self._release_command(lock.key, lock.token)],),
            )
        except cache._errors as exc:
            return cache._fault("get_or_set", exc, value)
        lock.held = False
        yield from self._after_release(released, lock.key, lock.token)
        if isinstance(stored, BaseException):
            return cache._fault("get_or_set", stored, value)
        self._remember(full, time.time() + expiry if expiry else 0.0, value, policy)
        return value

    def _server_down(
        self, full: str, exc: BaseException, policy: Policy, compute: Callable[[], Any]
    ) -> Steps[Any]:
        """The read or the lock failed: the last good value (``stale_if_error``), else
        the fault's warning (or BackendError) and one uncached computation."""
        kept = self.last_good.get(full)
        if kept is not None:
            expires, value = kept
            if not expires or time.time() < expires + policy.stale_if_error:
                log.warning(
                    "cachecore: get_or_set of %r failed on %r (%s: %s); serving the last "
                    "good value (stale_if_error)",
                    full,
                    self.cache,
                    type(exc).__name__,
                    exc,
                )
                if expires and time.time() >= expires:
                    self.cache.counters.add("memoize.stale_served")
                return value
        self.cache._fault("get_or_set", exc, None)
        return (yield from self._call(compute))

    def set_tagged(
        self, key: str, value: Any, timeout: Timeout, tags: tuple[str, ...]
    ) -> Steps[bool]:
        """The steps of ``set(key, value, timeout, tags=...)``."""
        cache = self.cache
        full = cache._key(key)
        expiry = cache._expiry(timeout)
        payload = cache._dump(full, value, expiry)
        try:
            replies = yield from cache._steps_mget("set", [tag_key(cache, t) for t in tags])
            versions = yield from self._versions(
                tags, dict(zip(tags, map(_version, replies), strict=True))
            )
            reply = yield (
                cache._writes.send,
                self._store_commands(full, payload, expiry, 0.0, versions, 0),
            )
        except self._unreadable as exc:
            return cache._fault("set", exc, False)
        return reply in _OK

    def invalidate_tags(self, tags: tuple[str, ...]) -> Steps[bool]:
        """The steps of ``invalidate_tags``: one INCRBY per tag, in one batch."""
        cache = self.cache
        if not tags:
            return True
        # A random step, not 1: a tag key lost to eviction and bumped again cannot come
        # back to a version some old value was stored under.
        commands = [("INCRBY", tag_key(cache, t), secrets.randbelow(2**32) + 1) for t in tags]
        try:
            replies = yield cache._writes.send_batch, (commands,)
        except cache._errors as exc:
            return cache._fault("invalidate_tags", exc, False)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        if failure is not None:
            return cache._fault("invalidate_tags", failure, False)
        return True
