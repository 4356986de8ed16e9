"""Validation of timeouts, shared by every cache."""

from __future__ import annotations

import datetime as dt
import math

MAX_TIMEOUT = 10**15
"""The largest timeout accepted, in seconds. The servers refuse expiries past ~9.2e15 s
(milliseconds overflowing 64 bits); a larger timeout is a programming error, so it
raises ``ValueError`` at call time rather than being sent and refused as a fault."""


def to_seconds(timeout: int | dt.timedelta, name: str = "timeout") -> int:
    """Return ``timeout`` as whole seconds (a timedelta is rounded up).

    :raises TypeError: ``timeout`` is neither an ``int`` nor a ``timedelta`` (floats and
        bools included: they are usually a mistake, and cachelib deprecates floats).
    :raises ValueError: ``timeout`` is negative or over :data:`MAX_TIMEOUT`.
    """
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        seconds = timeout
    elif isinstance(timeout, dt.timedelta):
        seconds = math.ceil(timeout.total_seconds())
    else:
        raise TypeError(
            f"{name} must be an int (seconds) or datetime.timedelta, "
            f"got {type(timeout).__name__}: {timeout!r}"
        )
    if seconds < 0:
        raise ValueError(f"{name} must be >= 0 (0 means never expire), got {timeout!r}")
    if seconds > MAX_TIMEOUT:
        raise ValueError(f"{name} must be at most {MAX_TIMEOUT} seconds, got {timeout!r}")
    return seconds
