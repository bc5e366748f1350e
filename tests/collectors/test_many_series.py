"""The Collector with many series, each logged a few times (a model server's
latency per model × route × pod): memory stays bounded by
``max_buffered_points`` while the store is behind, and ``stats()`` says so."""

from __future__ import annotations

import time

import numpy as np

from tablewatch import Collector
from tablewatch.store import open_store
from tests.collectors import DatabaseLock

SERIES = 2_000
ROUNDS = 6
BOUND = 3_000


def test_many_series_stay_within_the_memory_bound_while_the_store_is_stuck(tmp_path):
    db = tmp_path / "tw.db"
    url = f"sqlite:///{db}?busy_timeout_s=1.0"
    open_store(url).close()
    tags = [{"pod": f"pod{i}"} for i in range(SERIES)]
    t0 = time.time() - 600
    collector = Collector(url, flush_interval=0.05, max_buffered_points=BOUND)
    peak = 0
    with DatabaseLock(db):
        for r in range(ROUNDS):
            for i in range(SERIES):
                collector.log("serve.latency_s", float(r), ts=t0 + r, tags=tags[i])
            time.sleep(0.1)
            stats = collector.stats()
            peak = max(peak, stats["buffered"])
        stats = collector.stats()
    # Every series holds a handful of points: without a global bound they all stayed in memory.
    assert peak <= BOUND + 2 * SERIES, peak
    assert stats["spooled"] >= SERIES * ROUNDS - BOUND - SERIES
    assert stats["lag_s"] > 0.2 and stats["dropped"] == 0
    assert collector.close(timeout=30) is True
    final = collector.stats()
    assert final["written"] + final["replayed"] == SERIES * ROUNDS and final["lag_s"] == 0
    with open_store(url) as store:
        for i in np.random.default_rng(0).choice(SERIES, 20, replace=False):
            _, values, _ = store.read_arrays("serve.latency_s", tags[i])
            assert values.tolist() == [float(r) for r in range(ROUNDS)]
