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


def test_each_series_is_resolved_by_the_store_once_not_at_every_flush(tmp_path):
    url = f"sqlite:///{tmp_path}/tw.db"
    store = open_store(url)
    resolved = []
    series_ref = store.series_ref

    def counting(metric, tags=None):  # the real method, counted
        resolved.append(metric)
        return series_ref(metric, tags)

    store.series_ref = counting
    t0 = time.time() - 600
    collector = Collector(store=store, flush_interval=60)
    for r in range(3):
        for i in range(50):
            collector.log("serve.latency_s", float(r), ts=t0 + r, tags={"pod": f"p{i}"})
        collector.log("serve.errors", float("inf"), ts=t0 + r)  # allowed: the collector writes with allow_inf
        assert collector.flush(timeout=30)
    assert len(resolved) == 51  # once per series, not once per flush
    assert collector.stats()["written"] == 3 * 51 and collector.stats()["rejected"] == 0
    assert store.read_arrays("serve.latency_s", {"pod": "p7"})[1].tolist() == [0.0, 1.0, 2.0]
    collector.close()
    store.close()


def test_lag_counts_from_the_last_write_though_more_was_queued_meanwhile(tmp_path):
    """At many series the next take is queued before a write ends; the lag is
    the age of the oldest point not in the store, not the time since the queue
    was last empty (which never happens there)."""
    url = f"sqlite:///{tmp_path}/tw.db"
    store = open_store(url)
    write_series_points = store.write_series_points
    collector = Collector(store=store, flush_interval=3600)

    def queueing_more(*args, **kwargs):  # the real write, while more is logged and queued behind it
        collector.write_task_run({"pipeline": "p", "task": "t", "run_id": "r", "status": "success",
                                  "started_at": time.time() - 2, "ended_at": time.time() - 1})
        collector.log("serve.latency_s", 0.2, tags={"pod": "late"})
        return write_series_points(*args, **kwargs)

    store.write_series_points = queueing_more
    time.sleep(1.5)  # the collector's clock started 1.5 s ago
    for i in range(50):
        collector.log("serve.latency_s", 0.1, tags={"pod": f"p{i}"})
    started = time.time()
    collector._flush_lock.acquire()  # one round, as the flusher runs it (flush() would also write what came after)
    try:
        collector._round(force=True)
    finally:
        collector._flush_lock.release()
    stats = collector.stats()
    assert stats["written"] == 50 and stats["buffered"] == 1  # the late point (and task run) at the next round
    assert stats["lag_s"] <= time.time() - started + 0.05, stats  # not the 1.5 s since the collector started
    assert collector.flush(timeout=30) and collector.stats()["lag_s"] == 0 and collector.stats()["written"] == 51
    collector.close()
    store.close()
