"""Read-time downsampling and per-bucket aggregates, as pure numpy functions.

Inputs are sorted int64 µs timestamps and float64 values of equal length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tablewatch.errors import ValidationError

if TYPE_CHECKING:  # pandas is imported where a frame is built
    import pandas as pd

AGGREGATES = ("count", "mean", "min", "max", "p50", "p95", "p99")
_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def minmax_indices(ts: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points that keep the shape of the
    series, spikes included: the time range is cut into ``max_points // 2``
    equal buckets and each keeps its minimum and maximum (the M4 idea without
    first/last). NaN values are never chosen unless a bucket has nothing else."""
    n = len(ts)
    if max_points < 2:
        raise ValidationError("max_points", max_points, "must be >= 2")
    if n <= max_points:
        return np.arange(n)
    buckets = max_points // 2
    span = int(ts[-1]) - int(ts[0]) + 1
    bucket_ids = ((ts - ts[0]).astype(np.float64) * (buckets / span)).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket_ids[1:] != bucket_ids[:-1]])
    counts = np.diff(np.r_[starts, n])
    nan = np.isnan(values)
    mins = np.minimum.reduceat(np.where(nan, np.inf, values), starts)
    maxs = np.maximum.reduceat(np.where(nan, -np.inf, values), starts)
    min_idx = _first_index_per_group(values == np.repeat(mins, counts), starts)
    max_idx = _first_index_per_group(values == np.repeat(maxs, counts), starts)
    return np.unique(np.concatenate([min_idx, max_idx]))


def _first_index_per_group(hit: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """First index of each group (groups of consecutive points starting at
    ``starts``) where ``hit`` is true; the group's first index where it never
    is (an all-NaN bucket)."""
    positions = np.flatnonzero(hit)
    first = starts.copy()
    if len(positions):
        groups = np.searchsorted(starts, positions, side="right") - 1  # ascending: a group's first hit starts its run
        where = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        first[groups[where]] = positions[where]
    return first


def aggregate(ts: np.ndarray, values: np.ndarray, every_us: int, origin_us: int = 0) -> pd.DataFrame:
    """Per-bucket count, mean, min, max, p50, p95, p99 of the finite values,
    buckets of ``every_us`` aligned on ``origin_us``; one row per non-empty
    bucket, ``bucket`` being the bucket's start (UTC)."""
    if every_us <= 0:
        raise ValidationError("every", every_us / 1e6, "must be > 0 seconds")
    import pandas as pd  # imported when a frame is built: writers never pay for it

    keep = np.isfinite(values)
    ts, values = ts[keep], values[keep]
    columns = {"bucket": pd.to_datetime(np.array([], dtype="datetime64[us]"), utc=True)}
    if len(ts) == 0:
        return pd.DataFrame({**columns, **{name: np.array([], dtype=np.float64) for name in AGGREGATES}})
    bucket_ids = (ts - origin_us) // every_us
    order = np.lexsort((values, bucket_ids))
    ids, sorted_values = bucket_ids[order], values[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    result: dict[str, np.ndarray] = {
        "count": counts,
        "mean": np.add.reduceat(sorted_values, starts) / counts,
        "min": sorted_values[starts],
        "max": sorted_values[starts + counts - 1],
    }
    for name, q in _QUANTILES.items():
        position = starts + q * (counts - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, starts + counts - 1)
        fraction = position - low
        result[name] = sorted_values[low] * (1 - fraction) + sorted_values[high] * fraction
    bucket_start = (ids[starts] * every_us + origin_us).astype("datetime64[us]")
    frame = pd.DataFrame({"bucket": pd.to_datetime(bucket_start, utc=True), **result})
    return frame[["bucket", *AGGREGATES]]
