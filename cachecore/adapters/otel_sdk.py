"""Adding a batch of durations to an OpenTelemetry SDK histogram in one step.

The SDK's public ``Histogram.record`` costs about 7 µs a call (it copies, validates and
hashes the attributes each time): a fifth of a loopback ``get``. cachecore therefore
keeps each attribute set's durations in a queue and adds them to the SDK's
explicit-bucket aggregations in bulk (:func:`bulk_recorder`): bucket counts, sum, min
and max come out exactly as if each value had been recorded, at a fraction of the cost.

That needs internals of ``opentelemetry-sdk`` (a reader's storage, its
view/instrument matches and their aggregations), confined to this module and used
only with the SDK versions it was tested with (:data:`TESTED_VERSIONS`). For every
other meter provider, version or aggregation the values go through the public API:
a view that asks for another aggregation (exponential histogram, sum...) gets each
value through the SDK's own per-match path; an SDK outside the tested versions, or
another implementation of the API, gets ``record`` per call. Batched values carry no
exemplars.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

log = logging.getLogger("cachecore")

TESTED_VERSIONS = ((1, 38), (1, 45))
"""The lowest and highest ``(major, minor)`` of ``opentelemetry-sdk`` whose internals
:func:`bulk_recorder` was tested against (patch releases of both included)."""

BulkRecord = Callable[[Mapping[str, str], Sequence[float]], None]
"""Adds durations (non-negative, finite) with one attribute set to a histogram."""


def sdk_version() -> tuple[int, ...]:
    """The installed ``opentelemetry-sdk`` as integers, () when it is not installed."""
    try:
        text = importlib.metadata.version("opentelemetry-sdk")
    except importlib.metadata.PackageNotFoundError:
        return ()
    parts: list[int] = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits or digits != part:
            break
        parts.append(int(digits))
    return tuple(parts)


def awaits_provider(histogram: Any) -> bool:
    """Whether ``histogram`` came from the API's global meter provider before the
    application set a real one: the API then makes it record into the real provider's
    histogram, which :func:`bulk_recorder` can serve once it exists."""
    return hasattr(histogram, "_real_instrument") and histogram._real_instrument is None


def bulk_recorder(histogram: Any) -> BulkRecord | None:
    """A function adding batches to ``histogram`` (or to the real histogram behind
    one of the API's global-provider stand-ins), or None when it must be recorded
    through the public API (not an SDK histogram, or an SDK outside
    :data:`TESTED_VERSIONS`: logged at debug level)."""
    histogram = getattr(histogram, "_real_instrument", None) or histogram
    try:
        from opentelemetry.sdk.metrics._internal import aggregation
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram
        from opentelemetry.sdk.metrics._internal.measurement import Measurement
    except ImportError:
        return None
    if not isinstance(histogram, _Histogram):
        return None
    version = sdk_version()[:2]
    low, high = TESTED_VERSIONS
    if not low <= version <= high:
        log.debug(
            "cachecore: opentelemetry-sdk %s is outside the versions its batched histogram "
            "was tested with; recording each call through the public API",
            ".".join(map(str, version)),
        )
        return None
    return _Bulk(histogram, aggregation, Measurement).add


class _Bulk:
    """Adds batches to the aggregations of one SDK histogram, in every reader's storage
    (each reader keeps its own, for its own temporality)."""

    def __init__(self, histogram: Any, aggregation: Any, measurement: Any) -> None:
        self._histogram = histogram
        self._explicit = aggregation._ExplicitBucketHistogramAggregation
        self._drop = aggregation._DropAggregation
        self._measurement = measurement

    def add(self, attributes: Mapping[str, str], values: Sequence[float]) -> None:
        histogram = self._histogram
        is_enabled = getattr(histogram, "_is_enabled", None)  # the meter configurator's switch
        if not values or (is_enabled is not None and not is_enabled()):
            return
        storages = list(histogram._measurement_consumer._reader_storages.values())
        ordered = sorted(values)
        for storage in storages:
            for match in storage._get_or_init_view_instrument_match(histogram):
                self._add_to_match(match, attributes, values, ordered)

    def _add_to_match(
        self,
        match: Any,
        attributes: Mapping[str, str],
        values: Sequence[float],
        ordered: list[float],
    ) -> None:
        keys = match._view._attribute_keys
        kept = (
            dict(attributes) if keys is None else {k: v for k, v in attributes.items() if k in keys}
        )
        first = 0
        with match._lock:
            found = _aggregation(match, kept)
            if type(found) is self._drop:
                return
            if type(found) is self._explicit:
                _merge(found, ordered)
                return
        if found is None:
            # A new attribute set (or one a delta collection discarded): the SDK's own
            # path creates its aggregation (and applies the cardinality limit) with the
            # first value; the others follow in bulk when it is one we can add to.
            self._consume(match, attributes, values[0])
            first = 1
            if len(values) == 1:
                return
            with match._lock:
                found = _aggregation(match, kept)
                if type(found) is self._explicit:
                    _merge(found, sorted(values[first:]))
                    return
        for value in values[first:]:
            self._consume(match, attributes, value)

    def _consume(self, match: Any, attributes: Mapping[str, str], value: float) -> None:
        from opentelemetry.context import get_current

        match.consume_measurement(
            self._measurement(
                value=value,
                time_unix_nano=time_ns(),
                instrument=self._histogram,
                context=get_current(),
                attributes=dict(attributes),
            )
        )


def _aggregation(match: Any, attributes: dict[str, str]) -> Any:
    """The aggregation of ``match`` for ``attributes`` (as the view kept them), or None.
    Called with the match's lock held: the SDK adds and replaces aggregations under it."""
    for found in match._attributes_aggregation.values():
        if found._attributes == attributes:
            return found
    return None


def _merge(target: Any, ordered: list[float]) -> None:
    """Add sorted values to an explicit-bucket aggregation, as its ``aggregate`` would
    one by one."""
    counts = [0] * (len(target._boundaries) + 1)
    below = 0
    for index, bound in enumerate(target._boundaries):
        # The SDK's bisect_left on the bounds puts a value equal to a bound in that
        # bound's bucket: bucket i holds (bound[i-1], bound[i]].
        upto = bisect_right(ordered, bound)
        counts[index] = upto - below
        below = upto
    counts[-1] = len(ordered) - below
    total = math.fsum(ordered)
    with target._lock:
        if target._value is None:
            target._value = target._get_empty_bucket_counts()
        bucket_counts = target._value
        for index, count in enumerate(counts):
            if count:
                bucket_counts[index] += count
        target._sum += total
        if target._record_min_max:
            target._min = min(target._min, ordered[0])
            target._max = max(target._max, ordered[-1])
