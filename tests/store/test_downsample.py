"""Min/max downsampling against a plain per-bucket reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tablewatch.store.downsample import minmax_indices


def reference(ts: np.ndarray, values: np.ndarray, max_points: int) -> list[int]:
    """Each bucket's first minimum and first maximum (NaN never chosen unless
    the bucket holds nothing else: then its first point)."""
    if len(ts) <= max_points:
        return list(range(len(ts)))
    buckets = max_points // 2
    span = int(ts[-1]) - int(ts[0]) + 1
    ids = ((ts - ts[0]).astype(np.float64) * (buckets / span)).astype(np.int64)
    kept = set()
    for bucket in np.unique(ids):
        members = np.flatnonzero(ids == bucket)
        finite = [i for i in members if not np.isnan(values[i])]
        if not finite:
            kept.add(int(members[0]))
            continue
        kept.add(min(finite, key=lambda i: (values[i], i)))
        kept.add(min(finite, key=lambda i: (-values[i], i)))
    return sorted(kept)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_minmax_keeps_each_buckets_first_min_and_max(data):
    n = data.draw(st.integers(1, 400))
    ts = np.sort(data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, data.draw(st.sampled_from([5, 10**4, 10**12]))))))
    values = data.draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1.0, -2.5, np.nan, np.inf, -np.inf])
                                  | st.floats(-1e6, 1e6)))
    max_points = data.draw(st.integers(2, 60))
    assert minmax_indices(ts, values, max_points).tolist() == reference(ts, values, max_points)
