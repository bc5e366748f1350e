"""Caches of long-running processes stay bounded (tablewatch.store.lru)."""

from __future__ import annotations

import numpy as np
import pytest

from tablewatch.store import open_store, timeseries
from tablewatch.store.dayindex import DayIndex
from tablewatch.store.lru import LRU

T0 = 1_790_000_000


def test_lru_keeps_what_is_used_and_forgets_the_rest():
    cache: LRU[int, str] = LRU(100)
    for i in range(1000):
        cache.put(i, str(i))
        assert cache.get(0) == "0"  # used all along: never forgotten
        assert len(cache) <= 100
    assert cache.get(1) is None and cache.get(999) == "999"
    assert 0 in cache and 5 not in cache
    with pytest.raises(ValueError, match="max_entries"):
        LRU(1)


def test_lru_get_many_answers_as_get_does():
    cache: LRU[int, str] = LRU(10)
    for i in range(8):
        cache.put(i, str(i))  # 0-4 went to the old generation, 5-7 are current
    assert cache.get_many([7, 0, 99, 3]) == ["7", "0", None, "3"]
    for i in range(8, 12):
        cache.put(i, str(i))  # 0 and 3, used above, moved along; 1, 2 and 4 are forgotten
    assert cache.get_many([0, 1, 3, 4, 11]) == ["0", None, "3", None, "11"]


def test_day_index_and_series_cache_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(timeseries, "SERIES_CACHE_ENTRIES", 50)
    monkeypatch.setattr("tablewatch.store.dayindex.KNOWN_DAYS", 60)
    with open_store(f"sqlite:///{tmp_path}/s.db", retention_s={"points": None}) as store:
        for start in range(0, 1000, 100):
            store.write_points_many([{"metric": "m", "tags": {"pod": f"p{i}"}, "ts": np.array([float(T0)]),
                                      "values": np.array([1.0])} for i in range(start, start + 100)])
        assert len(store._series_cache) <= 50 and len(store._days._known) <= 60
        assert len(store.find_series("m")) == 1000
        # Forgotten days are merely written again: a replay still reads back once.
        store.write_points("m", {"pod": "p1"}, [T0], [1.0])
        assert len(store.read_points("m", {"pod": "p1"})) == 1
    index = DayIndex(store.backend.table("tw_series"), max_known=10)
    assert index._known.max_entries == 10


def test_find_series_reuses_decoded_series_and_sees_new_ones(tmp_path, monkeypatch):
    monkeypatch.setattr("tablewatch.store.tagindex.DECODED_SERIES", 4)
    with open_store(f"sqlite:///{tmp_path}/f.db", retention_s={"points": None}) as store:
        store.write_points_many([{"metric": "m", "tags": {"pod": f"p{i}"}, "ts": [T0], "values": [1.0]}
                                 for i in range(3)])
        first = store.find_series("m")
        again = store.find_series("m")
        assert again == first and all(a is b for a, b in zip(again, first))  # decoded once
        store.write_points("m", {"pod": "p9"}, [T0], [2.0])
        store.write_points("other", {"pod": "p1"}, [T0], [3.0])
        assert [s.tags["pod"] for s in store.find_series("m")] == ["p0", "p1", "p2", "p9"]
        assert [s.metric for s in store.find_series(pod="p1")] == ["m", "other"]
        assert len(store._tag_index._decoded) <= 4  # bounded
        assert [s.tags for s in store.find_series("m", pod=["p2", "p0"])] == [{"pod": "p0"}, {"pod": "p2"}]
