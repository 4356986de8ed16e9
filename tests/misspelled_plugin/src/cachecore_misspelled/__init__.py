"""A plugin whose author wrote ``cachecore_backend`` for ``cachecore_backends``."""

from __future__ import annotations

import cachecore


@cachecore.hookimpl
def cachecore_backend() -> list[cachecore.Backend]:
    return [cachecore.Backend(name="misspelled", schemes=("misspelled",))]
