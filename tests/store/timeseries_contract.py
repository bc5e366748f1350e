"""The time-series layer's tests, written once and run on every backend.
A backend's test module provides a ``store_factory(**config)`` fixture that
returns a fresh, empty :class:`~tablewatch.store.Store` each call."""

from __future__ import annotations

import time

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from tablewatch import Series, TaskRun, TrainingRun
from tablewatch.errors import ValidationError
from tablewatch.store import chunks

T0 = float(int(time.time()) // 86400 * 86400 - 7 * 86400)  # a day boundary a week ago: inside the default 30-day points retention


class TimeSeriesContract:
    @pytest.fixture
    def store(self, store_factory):
        return store_factory()

    def test_round_trip_in_time_order(self, store):
        ts = T0 + np.arange(5000) * 7.3  # ~10 hours: several buckets and salts
        values = np.sin(np.arange(5000))
        assert store.write_points("train.loss", {"run": "r1"}, ts, values, steps=np.arange(5000)) == 5000
        frame = store.read_points("train.loss", {"run": "r1"})
        assert list(frame.columns) == ["ts", "value", "step"]
        assert str(frame["ts"].dtype).startswith("datetime64") and str(frame["ts"].dt.tz) == "UTC"
        assert len(frame) == 5000
        assert frame["ts"].is_monotonic_increasing
        seconds = (frame["ts"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        np.testing.assert_allclose(seconds.to_numpy(), ts, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(frame["value"].to_numpy(), values)
        assert frame["step"].tolist() == list(range(5000))

    def test_half_open_range(self, store):
        ts = T0 + np.arange(100.0)
        store.write_points("m", {}, ts, np.arange(100.0))
        frame = store.read_points("m", {}, start=T0 + 10, end=T0 + 20)
        assert frame["value"].tolist() == list(range(10, 20))
        start = datetime.fromtimestamp(T0 + 95, tz=timezone.utc)
        assert store.read_points("m", None, start=start)["value"].tolist() == [95, 96, 97, 98, 99]

    def test_writes_are_idempotent(self, store):
        ts = T0 + np.arange(1000) * 60.0
        for _ in range(3):
            store.write_points("m", {"a": "1"}, ts, np.ones(1000))
        assert len(store.read_points("m", {"a": "1"})) == 1000

    def test_unsorted_input_is_read_back_sorted_and_steps_optional(self, store):
        ts = T0 + np.array([50.0, 10.0, 30.0, 20.0])
        store.write_points("m", {}, ts, [5.0, 1.0, 3.0, 2.0])
        frame = store.read_points("m", {})
        assert frame["value"].tolist() == [1.0, 2.0, 3.0, 5.0]
        assert frame["step"].isna().all()

    def test_timestamp_kinds(self, store):
        when = datetime.fromtimestamp(T0 + 12 * 3600, timezone.utc)  # within the points' retention
        store.write_points("m", {}, [when], [1.0])
        store.write_points("m", {}, np.array([int(T0) + 13 * 3600], dtype="datetime64[s]"), [2.0])
        store.write_points("m", {}, pd.DatetimeIndex([when + timedelta(hours=2)]), [3.0])
        store.write_points("m", {}, when.timestamp() + 3 * 3600, 4.0)
        frame = store.read_points("m", {})
        assert frame["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
        assert frame["ts"].iloc[0] == pd.Timestamp(when)

    def test_nan_is_kept_inf_refused_unless_allowed(self, store):
        store.write_points("m", {}, [T0, T0 + 1], [float("nan"), 1.0])
        with pytest.raises(ValidationError, match=r"values\[0\]"):
            store.write_points("m", {}, [T0 + 2], [float("inf")])
        store.write_points("m", {}, [T0 + 3], [float("-inf")], allow_inf=True)
        values = store.read_points("m", {})["value"].tolist()
        assert np.isnan(values[0]) and values[1:] == [1.0, float("-inf")]

    def test_series_are_kept_apart_and_found_by_tags(self, store):
        for model in ("a", "b"):
            for env in ("prod", "dev"):
                store.write_points("serve.latency_s", {"model": model, "env": env}, [T0], [1.0])
        store.write_points("train.loss", {"model": "a"}, [T0], [2.0])
        assert len(store.read_points("serve.latency_s", {"model": "a", "env": "prod"})) == 1
        found = store.find_series("serve.latency_s", env="prod")
        assert found == [Series("serve.latency_s", {"env": "prod", "model": "a"}),
                         Series("serve.latency_s", {"env": "prod", "model": "b"})]
        assert len(store.find_series(model="a")) == 3
        assert len(store.find_series("serve.latency_s", model=["a", "b"], env="dev")) == 2
        assert store.find_series("nope") == []

    def test_downsampling_keeps_spikes(self, store):
        n = 200_000
        ts = T0 + np.arange(n) * 0.5
        values = np.zeros(n)
        values[123_457] = 100.0
        values[7] = -50.0
        store.write_points("m", {}, ts, values)
        frame = store.read_points("m", {}, max_points=500)
        assert len(frame) <= 500
        assert frame["value"].max() == 100.0 and frame["value"].min() == -50.0
        assert frame["ts"].is_monotonic_increasing

    def test_aggregates_per_bucket(self, store):
        rng = np.random.default_rng(1)
        ts = T0 + np.arange(7200.0)  # two hours of 1 Hz
        values = rng.normal(size=7200)
        store.write_points("m", {}, ts, values)
        agg = store.aggregate("m", {}, every=3600)
        assert len(agg) == 2
        first = values[:3600]
        row = agg.iloc[0]
        assert row["count"] == 3600
        assert row["mean"] == pytest.approx(first.mean())
        assert row["min"] == first.min() and row["max"] == first.max()
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            assert row[name] == pytest.approx(np.percentile(first, q))

    def test_hot_series_spreads_over_every_salt_bucket(self, store):
        hours = 48
        ts = T0 + np.arange(hours * 60) * 60.0
        store.write_points("hot", {}, ts, np.ones(len(ts)))
        report = store.hotspots()
        used = [s for s, count in enumerate(report["points"]) if count]
        assert len(used) == store.codec.salt_buckets
        assert report["skew"] <= 1.5

    def test_info_counts_rows_and_knows_the_layout(self, store):
        store.write_points("m", {}, T0 + np.arange(5) * 3600.0, np.ones(5))  # 5 hourly buckets: 5 rows
        info = store.info()
        tables = {t["name"]: t for t in info["tables"]}
        assert tables["tw_points"]["rows"] == 5 and tables["tw_points"]["rows_exact"]
        assert tables["tw_points"]["families"]["p"]["max_versions"] == 1
        assert info["salt_buckets"] == store.codec.salt_buckets
        if not hasattr(store.backend, "count_rows"):  # counted by a keys-only scan that stops at the limit
            capped = {t["name"]: t for t in store.info(count_limit=3)["tables"]}["tw_points"]
            assert (capped["rows"], capped["rows_exact"]) == (3, False)

    def test_task_runs_newest_first_with_filters(self, store):
        base = datetime.fromtimestamp(T0 + 23 * 3600, timezone.utc)  # within the task runs' retention
        runs = []
        for i in range(6):  # crosses midnight: two day buckets
            start = base + timedelta(minutes=30 * i)
            runs.append(TaskRun("etl", "extract" if i % 2 else "load", f"run{i}", "success", attempt=1,
                                started_at=start, ended_at=start + timedelta(seconds=i + 1), host="w1"))
        runs.append(TaskRun("train", "fit", "run9", "failure", attempt=2, started_at=base,
                            ended_at=base + timedelta(seconds=3), error_type="ValueError",
                            error_message="bad", error_location="train.py:10"))
        assert store.write_task_runs(runs) == 7
        store.write_task_runs(runs[:2])  # idempotent
        everything = store.read_task_runs()
        assert len(everything) == 7
        assert [r.started_at for r in everything] == sorted((r.started_at for r in everything), reverse=True)
        extract = store.read_task_runs("etl", "extract")
        assert [r.run_id for r in extract] == ["run5", "run3", "run1"]
        assert extract[0].duration_s == 6.0
        assert [r.run_id for r in store.read_task_runs("etl", limit=2)] == ["run5", "run4"]
        window = store.read_task_runs("etl", start=base + timedelta(minutes=30), end=base + timedelta(minutes=90))
        assert [r.run_id for r in window] == ["run2", "run1"]
        [failed] = store.read_task_runs("train")
        assert (failed.status, failed.attempt, failed.error_type, failed.error_location) == (
            "failure", 2, "ValueError", "train.py:10")
        assert store.list_tasks() == [("etl", "extract"), ("etl", "load"), ("train", "fit")]

    def test_training_runs_are_replaced_when_they_end(self, store):
        start = datetime(2026, 11, 5, 8, 0, tzinfo=timezone.utc)
        store.write_training_run({"name": "ranker", "run_id": "r1", "status": "running", "started_at": start,
                                  "params": {"lr": 0.01, "layers": 4, "optimizer": "adam"}})
        store.write_training_run(TrainingRun("ranker", "r2", "running", start + timedelta(hours=1)))
        store.write_training_run({"name": "ranker", "run_id": "r1", "status": "success", "started_at": start,
                                  "ended_at": start + timedelta(minutes=30), "params": {"lr": 0.01, "layers": 4, "optimizer": "adam"},
                                  "metrics": {"val.auc": 0.91}})
        store.write_training_run(TrainingRun("other", "o1", "failure", start, error="OOM"))
        runs = store.read_training_runs("ranker")
        assert [(r.run_id, r.status) for r in runs] == [("r2", "running"), ("r1", "success")]
        assert runs[1].params == {"lr": 0.01, "layers": 4, "optimizer": "adam"}
        assert runs[1].metrics == {"val.auc": 0.91} and runs[1].duration_s == 1800.0
        assert len(store.read_training_runs()) == 3
        assert [r.run_id for r in store.read_training_runs(limit=1)] == ["r2"]

    def test_write_points_many_series_at_once(self, store):
        batches = [{"metric": "serve.latency_s", "tags": {"route": f"/r{i}"}, "ts": T0 + np.arange(100.0) * 60,
                    "values": np.full(100, float(i))} for i in range(20)]
        batches.append({"metric": "train.loss", "ts": [T0], "values": [0.5], "steps": [7]})
        assert store.write_points_many(batches) == 20 * 100 + 1
        assert store.read_points("serve.latency_s", {"route": "/r7"})["value"].tolist() == [7.0] * 100
        assert store.read_points("train.loss")["step"].tolist() == [7]
        with pytest.raises(ValidationError) as raised:
            store.write_points_many([batches[0], {"metric": "m", "ts": [T0], "values": ["x"]}])
        assert raised.value.field == "batches[1].values[0]"

    def test_write_points_many_columns_match_series_by_series(self, store):
        # One point each to many series (the column-at-a-time path), a batch
        # spanning buckets out of order, steps on some batches only, one
        # series twice: read back exactly as writing them one by one would.
        batches = [{"metric": "serve.requests", "tags": {"pod": f"p{i}", "route": "/a" if i % 2 else "/b"},
                    "ts": np.array([int((T0 + i) * 1e6)]).astype("datetime64[us]"), "values": np.array([float(i)])}
                   for i in range(300)]
        batches.append({"metric": "train.loss", "tags": {"run": "r"}, "ts": T0 + np.array([7200.0, 5.0, 3600.0]),
                        "values": np.array([3.0, 1.0, 2.0]), "steps": np.array([30, 10, 20])})
        batches.append({"metric": "serve.requests", "tags": {"route": "/a", "pod": "p1"}, "ts": T0 + 50.0,
                        "values": 9.0})
        assert store.write_points_many(batches) == 300 + 3 + 1
        assert store.read_points("serve.requests", {"pod": "p1", "route": "/a"})["value"].tolist() == [1.0, 9.0]
        assert store.read_points("serve.requests", {"pod": "p299", "route": "/a"})["value"].tolist() == [299.0]
        loss = store.read_points("train.loss", {"run": "r"})
        assert loss["value"].tolist() == [1.0, 2.0, 3.0] and loss["step"].tolist() == [10, 20, 30]
        assert store.read_points("serve.requests", {"pod": "p2", "route": "/b"})["step"].isna().all()
        assert store.write_points_many(batches) == 304  # a replay stores nothing twice
        assert store.write_points_many([{"metric": "empty", "ts": np.array([]), "values": np.array([])}]) == 0
        assert len(store.read_points("serve.requests", {"pod": "p1", "route": "/a"})) == 2
        assert len(store.find_series("serve.requests", route="/a")) == 150
        bad = [*batches[:5], {"metric": "m", "ts": np.array([T0]), "values": np.array([float("inf")])}]
        with pytest.raises(ValidationError) as raised:
            store.write_points_many(bad)
        assert raised.value.field == "batches[5].values[0]"
        with pytest.raises(ValidationError) as raised:
            store.write_points_many([*batches[:3], {"metric": "new.metric", "tags": {"x": ""}, "ts": T0, "values": 1.0}])
        assert raised.value.field == "batches[3].tags['x']"
        assert store.find_series("new.metric") == [] and store.find_series("m") == []  # nothing of a bad call

    def test_write_points_many_replays_what_write_points_wrote(self, store):
        # The same points through the column path and the series-by-series
        # path give the same cells: a replay through the other stores nothing twice.
        for i in range(3):
            store.write_points("q.depth", {"pod": f"p{i}"}, [T0 + i, T0 + 60 + i], [float(i), 0.5])
        batches = [{"metric": "q.depth", "tags": {"pod": f"p{i}"}, "ts": np.array([T0 + i, T0 + 60 + i]),
                    "values": np.array([float(i), 0.5])} for i in range(3)]
        batches += [{"metric": "q.depth", "tags": {"pod": f"p{i}"}, "ts": np.array([T0 + 9000.0]),
                     "values": np.array([7.0])} for i in range(3)]
        assert store.write_points_many(batches) == 9
        for i in range(3):
            store.write_points("q.depth", {"pod": f"p{i}"}, [T0 + 9000.0], [7.0])
            assert store.read_points("q.depth", {"pod": f"p{i}"})["value"].tolist() == [float(i), 0.5, 7.0]

    def test_write_series_points_takes_flat_columns_of_series_handles(self, store):
        # What the Collector writes: series resolved once, then flat columns.
        refs = [store.series_ref("serve.latency_s", {"pod": f"p{i}"}) for i in range(3)]
        refs.append(store.series_ref("train.loss", {"run": "r1"}))
        assert refs[0] == store.series_ref("serve.latency_s", {"pod": "p0"})
        ts = T0 + np.array([0.0, 60.0, 5.0, 9.0, 1.0, 3600.0])
        # p2 has none, train.loss has two points out of order and steps (p0's are not taken).
        written = store.write_series_points(refs, [2, 1, 0, 3], ts, np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                                            np.array([8, 8, 0, 20, 10, 30]), [False, False, False, True])
        assert written == 6
        assert store.read_points("serve.latency_s", {"pod": "p0"})["value"].tolist() == [1.0, 2.0]
        assert store.read_points("serve.latency_s", {"pod": "p0"})["step"].isna().all()
        loss = store.read_points("train.loss", {"run": "r1"})
        assert loss["value"].tolist() == [5.0, 4.0, 6.0] and loss["step"].tolist() == [10, 20, 30]
        assert [s.tags for s in store.find_series("serve.latency_s")] == [{"pod": "p0"}, {"pod": "p1"}]
        # The same points through write_points_many: the same cells, nothing twice.
        assert store.write_points_many([{"metric": "serve.latency_s", "tags": {"pod": "p0"}, "ts": ts[:2],
                                         "values": np.array([1.0, 2.0])}]) == 2
        assert len(store.read_points("serve.latency_s", {"pod": "p0"})) == 2
        assert store.write_series_points([], [], np.array([]), np.array([])) == 0
        with pytest.raises(ValidationError) as raised:
            store.write_series_points(refs[:2], [1, 1], ts[:2], np.array([1.0, float("inf")]))
        assert raised.value.field == "values[1]"
        with pytest.raises(ValidationError) as raised:
            store.write_series_points(refs[:2], [1, 2], ts[:2], np.array([1.0, 2.0]))
        assert raised.value.field == "ts"  # 3 points counted, 2 timestamps
        with pytest.raises(ValidationError) as raised:
            store.write_series_points(refs[:2], [1, 2], ts[:3], np.array([1.0, 2.0]))
        assert raised.value.field == "values"
        with pytest.raises(ValidationError) as raised:
            store.write_series_points([("m", {}, b"12345678")], [1], ts[:1], np.array([1.0]))
        assert raised.value.field == "series"
        with pytest.raises(ValidationError) as raised:
            store.series_ref("m", {"x": ""})
        assert raised.value.field == "tags['x']"

    def test_closed_buckets_are_merged_and_replays_are_harmless(self, store):
        # A Collector flushing every 4 s: one small chunk per point, two hours.
        ts = T0 + np.arange(0, 7200, 4.0)
        values = np.round(np.sin(ts / 100), 3)
        batches = [{"metric": "gpu.util", "tags": {"host": "h"}, "ts": ts[i:i + 1], "values": values[i:i + 1]}
                   for i in range(1800)]
        store.merge_on_read = False
        for start in range(0, 1800, 600):
            store.write_points_many(batches[start:start + 600])
        before = store.read_arrays("gpu.util", {"host": "h"})
        assert len(before[0]) == 1800 and _cells(store) == 1800
        assert store.merge_closed_buckets() == 2
        assert _cells(store) == 2  # one merged chunk per hourly row
        after = store.read_arrays("gpu.util", {"host": "h"})
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
        assert store.merge_closed_buckets() == 0  # idempotent
        store.write_points_many(batches[100:200])  # the spool replays old batches after the merge
        store.write_points("gpu.util", {"host": "h"}, [T0 + 0.5], [42.0])  # a late point
        again = store.read_arrays("gpu.util", {"host": "h"})
        assert len(again[0]) == 1801 and 42.0 in again[1]
        assert store.merge_closed_buckets() == 1 and _cells(store) == 2
        window = store.read_points("gpu.util", {"host": "h"}, start=T0 + 3600, end=T0 + 3610)
        assert window["value"].tolist() == values[900:903].tolist()
        assert sum(store.hotspots()["points"]) == 1801

    def test_reads_merge_closed_buckets_but_not_the_open_one(self, store):
        now = datetime.now(timezone.utc).timestamp()
        old = [{"metric": "m", "ts": T0 + i, "values": float(i)} for i in range(10)]
        current = [{"metric": "m", "ts": now - 1 + i / 10, "values": float(i)} for i in range(5)]
        store.write_points_many(old + current)
        assert _cells(store) == 15
        assert len(store.read_points("m")) == 15
        assert _cells(store) == 1 + 5  # the old bucket merged by the read; the open one left as written
        assert store.read_points("m")["value"].tolist()[:10] == [float(i) for i in range(10)]

    def test_read_arrays_many_reads_what_read_arrays_reads(self, store):
        # Three days of 10-minute points (every bucket, every salt), a series
        # with gaps of days, one of steps, one with rows of several chunks: one
        # merged, one small chunk a point not merged (merge_on_read off).
        ts = T0 + np.arange(0, 3 * 86400, 600.0)
        store.write_points("task.duration_s", {"task": "a"}, ts, np.sin(ts))
        store.write_points("task.duration_s", {"task": "b"}, np.r_[ts[:20], ts[-20:]], np.arange(40.0))
        store.write_points("train.loss", {"run": "r1"}, ts, np.cos(ts), steps=np.arange(len(ts)))
        for i in range(30):
            store.write_points("task.duration_s", {"task": "c"}, [T0 + 37 * i], [float(i)])
        store.write_points("task.duration_s", {"task": "d"}, [T0 + 5.0, T0 + 7200.0], [1.0, 2.0])
        store.write_points("task.duration_s", {"task": "d"}, [T0 + 6.0, T0 + 7201.0], [3.0, 4.0])
        store.merge_closed_buckets()
        store.write_points("task.duration_s", {"task": "d"}, [T0 + 5.0], [1.0])  # a replay after the merge
        store.merge_on_read = False
        series = [Series("task.duration_s", {"task": t}) for t in ("b", "a", "c", "d", "nothing", "a")]
        series.insert(2, Series("train.loss", {"run": "r1"}))
        written = {"a": (ts, np.sin(ts)), "b": (np.r_[ts[:20], ts[-20:]], np.arange(40.0))}
        for start, end in ((None, None), (T0 + 3000, T0 + 2 * 86400 + 1234), (T0 + 86400, T0 + 86400 + 1)):
            many = store.read_arrays_many(series, start, end)
            assert len(many) == len(series)
            for one, arrays in zip(series, many):
                for got, expected in zip(arrays, store.read_arrays(one.metric, one.tags, start, end)):
                    np.testing.assert_array_equal(got, expected)
                if one.tags.get("task") in written:  # long series (read by key ranges on the embedded store)
                    times, values = written[one.tags["task"]]
                    inside = (times >= (start or 0)) & (times < (end or np.inf))
                    np.testing.assert_array_equal(arrays[0], (times[inside] * 1_000_000).astype(np.int64))
                    np.testing.assert_array_equal(arrays[1], values[inside])
        b, a, r1, c, d, nothing, a_again = store.read_arrays_many(series)
        assert len(a[0]) == len(ts) and (np.diff(a[0]) > 0).all() and len(b[0]) == 40 and len(c[0]) == 30
        assert r1[2].tolist() == list(range(len(ts))) and (a[2] == chunks.NO_STEP).all()
        assert d[1].tolist() == [1.0, 3.0, 2.0, 4.0] and len(nothing[0]) == 0 and a_again[1].tolist() == a[1].tolist()
        assert store.read_arrays_many([]) == []

    def test_tag_index_finds_series_of_a_store_written_before_it(self, store):
        from tablewatch.store import Store
        from tablewatch.store.table import DeleteRow, RowMutation
        from tablewatch.store.tagindex import MARKER_ROW, NAME_PREFIX, TAG_PREFIX

        for i in range(40):
            store.write_points("serve.latency_s", {"model": f"m{i % 4}", "pod": f"p{i}"}, [T0 + 86400 * (i % 3)], [1.0])
        store.write_points("train.loss", {"model": "m1"}, [T0], [1.0])
        store.write_points("untagged", None, [T0], [1.0])
        expected = store.find_series("serve.latency_s", model="m1")
        assert len(expected) == 10 and all(s.tags["model"] == "m1" for s in expected)
        assert [s.metric for s in store.find_series(model="m1")] == ["serve.latency_s"] * 10 + ["train.loss"]
        assert len(store.find_series("serve.latency_s", model=["m1", "m2"], pod=True)) == 20
        assert store.find_series("serve.latency_s", model="m1", pod="p5") == [
            Series("serve.latency_s", {"model": "m1", "pod": "p5"})]
        assert store.find_series("untagged") == [Series("untagged", {})]
        assert store.find_series("serve.latency_s", model=5) == []  # tag values are strings
        assert len(store.find_series()) == 42
        # An existing store from before the index: its index rows and marker gone.
        index = store.backend.table("tw_series")
        stale = [row.key for prefix in (NAME_PREFIX, TAG_PREFIX) for row in index.scan(prefix=prefix, keys_only=True)]
        index.mutate_rows([RowMutation(key, [DeleteRow()]) for key in stale])
        store.backend.table("tw_meta").mutate_rows([RowMutation(MARKER_ROW, [DeleteRow()])])
        assert store.find_series("serve.latency_s", model="m1") == []
        reopened = Store(store.backend)  # backfills on open
        assert reopened.find_series("serve.latency_s", model="m1") == expected
        assert len(reopened.find_series()) == 42

    def test_sketches_of_several_writers_merge_on_read(self, store):
        from tablewatch.store.sketches import DistributionSketch, SketchRecord

        values = np.random.default_rng(6).lognormal(0, 1, 3000)
        start_us = int(T0 // 3600 * 3600 * 1_000_000)
        records = []
        for i, part in enumerate(np.array_split(values, 3)):
            sketch = DistributionSketch.create()
            sketch.numeric.add_many(part)
            records.append(SketchRecord("ranker", "age", start_us, 3600, f"{i:016x}", 0, sketch))
        assert store.write_sketches(records) == 3
        store.write_sketches(records)  # a replay changes nothing
        merged = store.read_sketch("ranker", "age")
        assert merged.numeric.count == 3000
        assert merged.numeric.quantile(0.5) == pytest.approx(np.median(values), rel=0.02)
        assert store.list_sketched_features() == [("ranker", "age")]

    def test_each_kind_of_record_keeps_its_own_retention(self, store_factory):
        store = store_factory(retention_s={"points": 3600, "tasks": 30 * 86400, "runs": 30 * 86400})
        two_days_ago = datetime.now(timezone.utc) - timedelta(days=2)
        store.write_task_runs([{"pipeline": "p", "task": "t", "run_id": "r", "status": "success",
                                "started_at": two_days_ago}])
        store.write_training_run({"name": "n", "run_id": "r", "status": "success", "started_at": two_days_ago})
        store.write_points("m", {}, [two_days_ago], [1.0])
        store.compact()
        assert [r.run_id for r in store.read_task_runs("p")] == ["r"]
        assert [r.run_id for r in store.read_training_runs("n")] == ["r"]
        assert store.read_points("m").empty

    def test_retention_hides_old_points_and_runs(self, store_factory):
        store = store_factory(retention_s={"points": 3600, "tasks": 3600})
        now = datetime.now(timezone.utc).timestamp()
        store.write_points("m", {}, [now - 7200, now - 60], [1.0, 2.0])
        assert store.read_points("m", {})["value"].tolist() == [2.0]
        store.write_task_runs([
            {"pipeline": "p", "task": "t", "run_id": "old", "status": "success", "started_at": now - 7200},
            {"pipeline": "p", "task": "t", "run_id": "new", "status": "success", "started_at": now - 60},
        ])
        assert [r.run_id for r in store.read_task_runs("p")] == ["new"]
        store.compact()
        assert store.read_points("m", {})["value"].tolist() == [2.0]


def _cells(store) -> int:
    """Chunks (cells) in the points table."""
    return sum(len(row.cells.get("p", {})) for row in store.backend.table("tw_points").scan(keys_only=True))
