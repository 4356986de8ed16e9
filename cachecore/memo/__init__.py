"""Get-or-set without stampedes, memoize, and invalidation by tag (see docs/memoize.md).

* :mod:`cachecore.memo.steps`: ``get_or_set``, tagged ``set`` and ``invalidate_tags``
  as steps, driven by both cache classes;
* :mod:`cachecore.memo.envelope`: how entries with metadata are stored;
* :mod:`cachecore.memo.keys`: the key of a memoized call;
* :mod:`cachecore.memo.decorator`: ``memoize``.
"""

from __future__ import annotations

from cachecore.memo.decorator import AsyncMemoized, Memoized
from cachecore.memo.steps import Memo, Policy

__all__ = ["AsyncMemoized", "Memo", "Memoized", "Policy"]
