"""``python -m cachecore``: the same as the ``cachecore`` command."""

from __future__ import annotations

from cachecore.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
