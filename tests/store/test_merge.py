"""Merging closed buckets beside concurrent writers, replays and other mergers
(tablewatch.store.merge), on the embedded store with two Store objects."""

from __future__ import annotations

import threading

import numpy as np

from tablewatch.store import open_store

T0 = 1_790_000_000 - 1_790_000_000 % 3600


def test_merging_beside_writers_replays_and_another_merger_loses_and_doubles_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    writer = open_store(url, retention_s={"points": None})  # T0 is older than the default retention
    merger = open_store(url)
    writer.merge_on_read = merger.merge_on_read = False
    old = [{"metric": "m", "ts": float(T0 + i), "values": float(i)} for i in range(400)]
    writer.write_points_many(old)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(150):
                writer.write_points("m", None, [T0 + i + 0.5], [1000.0 + i])  # late points
                writer.write_points_many(old[i:i + 2])  # replays
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def merge(store) -> None:
        try:
            for _ in range(15):
                store.merge_closed_buckets()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write), threading.Thread(target=merge, args=(merger,)),
               threading.Thread(target=merge, args=(writer,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    expected_ts = np.sort(np.r_[T0 + np.arange(400.0), T0 + np.arange(150) + 0.5])
    for store in (writer, merger):
        ts, values, _ = store.read_arrays("m")
        np.testing.assert_allclose(ts / 1e6, expected_ts)
        assert sorted(values.tolist()) == sorted([float(i) for i in range(400)] + [1000.0 + i for i in range(150)])
    merger.merge_closed_buckets()
    row = merger.backend.table("tw_points").scan(keys_only=True)
    assert [len(r.cells["p"]) for r in row] == [1]
    writer.close()
    merger.close()


def test_a_training_runs_points_keep_their_family_through_the_fast_path_and_merging(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/r.db", retention_s={"points": None}) as store:
        store.merge_on_read = False
        store.write_points_many([{"metric": "train.loss", "tags": {"run": "r1"}, "ts": float(T0 + i),
                                  "values": 1.0 / (i + 1), "steps": np.array([i])} for i in range(50)]
                                + [{"metric": "gpu.util", "tags": {"host": "h"}, "ts": float(T0), "values": 3.0}])
        rows = {row.key: row for row in store.backend.table("tw_points").scan(keys_only=True)}
        assert sorted(len(r.cells.get("r", {})) for r in rows.values()) == [0, 50]
        assert store.merge_closed_buckets() == 1  # the run's 50 chunks; gpu.util is one chunk already
        assert sorted(len(r.cells.get("r", {})) for r in store.backend.table("tw_points").scan(keys_only=True)) == [0, 1]
        frame = store.read_points("train.loss", {"run": "r1"})
        assert frame["step"].tolist() == list(range(50)) and frame["value"].iloc[-1] == 1.0 / 50
