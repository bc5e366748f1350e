"""The dashboard's queries on a store filled through the Store API and the collectors."""

from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from tablewatch import open_store
from tablewatch.alerts.evaluate import evaluate
from tablewatch.alerts.rules import parse_rules
from tablewatch.dashboard import queries
from tablewatch.dashboard.selection import parse_params
from tablewatch.errors import ValidationError
from tablewatch.store.downsample import aggregate
from tests.dashboard.sample_data import DAY, FEATURES, HOUR, MODEL, PIPELINE, ROUTES, RUNS, TASKS


@pytest.fixture
def now(sample):
    return sample[1].now


def test_pickers_come_from_the_series_index(sample_store):
    assert queries.pipelines(sample_store) == ["hourly-features", PIPELINE]
    assert queries.tasks_of(sample_store, PIPELINE) == sorted(TASKS)
    assert queries.training_names(sample_store) == [MODEL, "ranker-online"]
    assert queries.served_models(sample_store) == [MODEL]
    assert queries.routes_of(sample_store, MODEL) == sorted(ROUTES)
    assert queries.sketched_models(sample_store) == [MODEL, "ranker-online"]
    assert queries.sketched_features(sample_store, MODEL) == sorted(FEATURES)


def test_task_durations_per_task_and_bands(sample_store, now):
    points, _ = queries.task_durations(sample_store, PIPELINE, TASKS, now - 8 * DAY, now + 1)
    counts = points.groupby("task").size().to_dict()
    assert counts == {"extract": 28, "transform": 28 + 6, "load": 28}  # transform retried 6 times
    _, bands = queries.task_durations(sample_store, PIPELINE, ["extract"], now - 8 * DAY, now + 1)
    assert (bands["p95"] >= bands["p50"]).all()
    early = bands[bands["bucket"] < pd.Timestamp(now - 3 * DAY, unit="s", tz="UTC")]["p50"]
    late = bands[bands["bucket"] > pd.Timestamp(now - 1.5 * DAY, unit="s", tz="UTC")]["p50"]
    assert early.max() < 26 and late.min() > 30  # extract got twice as slow in the last two days


def test_downsampled_points_are_capped_and_keep_spikes(sample_store):
    curves = queries.training_curves(sample_store, "train.loss", RUNS, max_points=200)
    assert set(curves["run"]) == set(RUNS)
    for run, group in curves.groupby("run"):
        assert len(group) <= 200
        assert group["value"].max() > 1.5  # the spike at step 1500
        assert group["step"].is_monotonic_increasing
    full = queries.training_curves(sample_store, "train.loss", RUNS[:1], max_points=10_000)
    assert len(full) == 3000


def test_retries_failures_gantt_and_failed_attempts(sample_store, now):
    start, end = now - 8 * DAY, now + 1
    retries = queries.retries_per_day(sample_store, PIPELINE, TASKS, start, end)
    assert retries.groupby("task")["retries"].sum().to_dict() == {"extract": 0, "load": 0, "transform": 6}
    runs = queries.task_runs(sample_store, PIPELINE, None, start, end)
    rates = queries.failure_rates(runs)
    assert rates.groupby("task")["failed"].sum().to_dict() == {"extract": 0, "load": 2, "transform": 6}
    assert ((rates["failure_rate"] >= 0) & (rates["failure_rate"] <= 1)).all()
    pipeline_runs = queries.pipeline_runs(runs)
    assert len(pipeline_runs) == 28
    assert pipeline_runs[0].started_at > pipeline_runs[-1].started_at
    retried = next(r for r in pipeline_runs if r.attempts == 4)
    gantt = queries.gantt_frame(runs, retried.run_id)
    assert gantt["task"].tolist() == ["extract", "transform", "transform", "load"]
    assert gantt["status"].tolist() == ["success", "retry", "success", "success"]
    assert (gantt["end"] > gantt["start"]).all()
    failed = queries.failed_attempts(runs)
    assert set(failed["error_location"]) == {"etl/transform.py:42", "etl/load.py:88"}
    assert set(failed.loc[failed["status"] == "failure", "error_type"]) == {"KeyError"}


def test_training_runs_compared_side_by_side(sample_store):
    runs = queries.training_runs(sample_store, MODEL)
    assert [r.run_id for r in runs] == list(reversed(RUNS))
    table = queries.compare_runs(runs)
    assert list(table.columns) == list(reversed(RUNS))
    assert table.loc["param.lr"].tolist() == ["0.001", "0.01", "0.1"]
    assert "metric.val.auc" in table.index
    assert queries.run_metrics(sample_store, RUNS) == ["train.loss", "val.auc"]
    assert queries.system_metrics(sample_store, RUNS) == ["system.cpu_percent"]


def test_serving_latency_throughput_and_errors(sample_store, now):
    stats = queries.serving_stats(sample_store, MODEL, None, now - DAY, now + 1, every=HOUR)
    assert set(stats["route"]) == set(ROUTES)
    assert stats.groupby("route")["requests"].sum().to_dict() == {ROUTES[0]: 4000, ROUTES[1]: 2000}
    assert (stats["p50"] <= stats["p95"]).all() and (stats["p95"] <= stats["p99"]).all()
    recent = stats[stats["bucket"] >= pd.Timestamp(now - 3 * HOUR, unit="s", tz="UTC")]
    older = stats[stats["bucket"] < pd.Timestamp(now - 5 * HOUR, unit="s", tz="UTC")]
    assert recent["errors"].sum() / recent["requests"].sum() > 2 * older["errors"].sum() / older["requests"].sum()
    one = queries.serving_stats(sample_store, MODEL, ROUTES[1], now - DAY, now + 1, every=HOUR)
    assert set(one["route"]) == {ROUTES[1]}
    assert np.isclose(one["throughput"].sum() * HOUR, 2000)


def test_drift_scores_find_the_shifted_features(sample_store, now):
    start, end = now - DAY, now + 1
    scores = queries.drift_over_time(sample_store, MODEL, FEATURES, start, end)
    assert set(scores["feature"]) == set(FEATURES)
    last = scores.sort_values("window").groupby("feature").tail(3)
    drifted = last.groupby("feature")["drifted"].all().to_dict()
    assert drifted == {"age": True, "country": True, "income": False}
    before_shift = scores[scores["window"] < pd.Timestamp(now - 9 * HOUR, unit="s", tz="UTC")]
    assert not before_shift["drifted"].any()


def test_reference_and_current_distributions(sample_store, now):
    start, end = now - DAY, now + 1
    age = queries.compare_distributions(sample_store, MODEL, "age", start, end)
    assert age.kind == "numeric" and len(age.labels) == 30
    assert np.isclose(sum(age.reference), 1) and np.isclose(sum(age.current), 1)
    centre = lambda shares: float(np.dot(age.labels, shares))  # noqa: E731
    assert 37 < centre(age.reference) < 43 and centre(age.current) > centre(age.reference) + 2
    assert age.result.drifted and age.result.method == "wasserstein"
    country = queries.compare_distributions(sample_store, MODEL, "country", start, end)
    assert country.kind == "categorical"
    assert dict(zip(country.labels, country.reference)).get("br", 0) == 0
    assert dict(zip(country.labels, country.current))["br"] > 0.1


def test_drift_page_scores_are_the_alert_rules_scores(sample_store, now):
    """An alert links to /drift with start/end = the rule's current window: the
    page shows the score, threshold and verdict the rule computed."""
    rules = parse_rules(f"""
rules:
  - name: ranker-drift
    kind: drift
    model: {MODEL}
    window: 1d
""")
    observations = evaluate(rules.rules[0], sample_store, now)
    assert {o.labels["feature"] for o in observations} == set(FEATURES)
    for observation in observations:
        feature = observation.labels["feature"]
        assert observation.dashboard_path.startswith("/drift?")
        selection = parse_params({k: v[0] for k, v in parse_qs(urlparse(observation.dashboard_path).query).items()})
        assert selection.feature == feature
        shown = queries.compare_distributions(sample_store, MODEL, feature, *selection.window(now))
        assert shown.result is not None
        assert shown.result.score == pytest.approx(observation.value)
        assert shown.result.threshold == observation.threshold
        assert shown.result.drifted == observation.active
    assert {o.labels["feature"] for o in observations if o.active} == {"age", "country"}


def test_overview_figures(sample_store, now):
    start, end = now - 8 * DAY, now + 1
    etl = next(p for p in queries.pipeline_summaries(sample_store, start, end) if p.pipeline == PIPELINE)
    assert (etl.tasks, etl.attempts, etl.failures, etl.retries) == (3, 90, 2, 6)
    assert etl.sparkline and etl.p95_duration_s > 30
    models = {(m.model, m.kind): m for m in queries.model_summaries(sample_store, start, end)}
    assert models[(MODEL, "serving")].value > 0 and "6000 requests" in models[(MODEL, "serving")].detail
    assert models[(MODEL, "training")].figure == "train.loss"
    failures = queries.recent_failures(sample_store, start, end)
    assert failures["error_type"].tolist() == ["KeyError", "KeyError"]
    fresh = queries.freshness(sample_store)
    assert fresh.points is not None and abs(fresh.newest.timestamp() - now) < HOUR
    assert fresh.training is not None and fresh.tasks is not None and fresh.sketches is not None


def test_store_figures(sample_store):
    info = queries.store_info(sample_store)
    tables = queries.tables_frame(info)
    assert {"tw_points", "tw_series", "tw_tasks"} <= set(tables["table"])
    hot = queries.store_hotspots(sample_store)
    assert sum(hot["points"]) > 10_000 and hot["skew"] >= 1
    counts = queries.series_counts(sample_store).set_index("metric")["series"]
    assert counts["task.duration_s"] == 4 and counts["serve.latency_s"] == 4


def test_an_empty_store_has_no_data(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/tw.db", retention_s={"points": 7 * DAY}) as store:
        tables = queries.tables_frame(queries.store_info(store))
        assert "1w" in set(tables.loc[tables["table"] == "tw_points", "retention"])
        assert not queries.has_any_data(store)
        assert queries.pipelines(store) == [] and queries.sketched_models(store) == []
        assert queries.freshness(store).newest is None
        assert all(len(frame) == 0 for frame in queries.task_durations(store, "p", ["t"], 0, 1e9))
        assert len(queries.serving_stats(store, "m", None, 0, 1e9)) == 0
        assert queries.firing_alerts(store) is None or len(queries.firing_alerts(store)) == 0


def test_bucket_width_fits_the_range():
    assert queries.bucket_width(0, HOUR) == 60
    assert queries.bucket_width(0, DAY) == 900
    assert queries.bucket_width(0, 30 * DAY) == 6 * HOUR
    assert queries.bucket_width(0, 7 * DAY, buckets=28 / 8) == DAY


def test_task_durations_are_downsampled_keeping_the_extremes(sample_store, now):
    full, _ = queries.task_durations(sample_store, PIPELINE, ["transform"], now - 8 * DAY, now + 1)
    small, bands = queries.task_durations(sample_store, PIPELINE, ["transform"], now - 8 * DAY, now + 1, max_points=10)
    assert len(small) <= 10
    assert small["value"].max() == full["value"].max() and small["value"].min() == full["value"].min()
    assert bands["count"].sum() == len(full)  # bands are computed from every point


def test_alert_state_read_back(sample_store, now):
    firing = queries.firing_alerts(sample_store)
    assert firing["rule"].tolist() == ["ranker-drift"] and firing["labels"].iloc[0] == f"feature=age, model={MODEL}"
    history = queries.incidents(sample_store, now - 7 * DAY, now + 1)
    assert history["state"].tolist() == ["firing", "resolved"]  # newest first
    resolved = history["incident_id"].iloc[1]
    assert queries.incident_notifications(sample_store, resolved)["kind"].tolist() == ["resolved", "firing"]
    clicks = queries.incident_actions(sample_store)
    assert clicks[["action", "user", "result"]].values.tolist()[0] == ["retrain", "alice", "ran"]


def test_silence_matchers_and_durations(tmp_path):
    assert queries.parse_matchers(" rule=etl-slow , task = extract,") == {"rule": "etl-slow", "task": "extract"}
    with pytest.raises(ValidationError) as caught:
        queries.parse_matchers("rule=etl-slow, task")
    assert caught.value.field == "matchers[1]"
    with pytest.raises(ValidationError) as caught:
        queries.parse_matchers(" , ")
    assert caught.value.field == "matchers"
    with open_store(f"sqlite:///{tmp_path}/tw.db") as store:
        with pytest.raises(ValidationError) as caught:
            queries.add_silence(store, "rule=x", "3h")
        assert caught.value.field == "duration"
        silence = queries.add_silence(store, "rule=x", "1h", "dana", now=1_800_000_000.0)
        assert silence.ends_at - silence.starts_at == 3600
        assert queries.alerts_set_up(store)


def test_points_per_trace_share_a_chart_budget():
    assert queries.points_per_trace(1) == queries.MAX_POINTS_PER_TRACE
    assert queries.points_per_trace(20) == queries.MAX_POINTS_PER_CHART // 20
    assert queries.points_per_trace(1000) == queries.MIN_POINTS_PER_TRACE


def test_duration_bands_agree_with_the_store_aggregate():
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, 30 * DAY * 1_000_000, 20_000))
    values = rng.lognormal(2, 0.5, len(ts))
    values[::97] = np.nan
    values[5] = values[6]  # ties
    uneven = np.sort(np.r_[ts[:2000], rng.integers(0, 3 * HOUR * 1_000_000, 30_000)])  # one bucket holds most
    for ts, values in ((ts, values), (uneven, rng.lognormal(2, 0.5, len(uneven)))):  # a grid sort, one sort of all
        bands = queries.duration_bands(ts, values, 3 * HOUR)
        expected = aggregate(ts, values, 3 * HOUR * 1_000_000)
        assert len(bands) == len(expected)
        assert (bands["bucket"] - expected["bucket"] == pd.Timedelta(seconds=1.5 * HOUR)).all()
        for column in ("count", "p50", "p95"):  # the same order statistics and arithmetic: the same bits
            assert np.array_equal(bands[column], expected[column]), column
        assert np.allclose(bands["mean"], expected["mean"])


def test_several_tasks_read_together_get_each_tasks_own_points_and_bands(sample_store, now):
    start, end = now - 8 * DAY, now + 1
    points, bands = queries.task_durations(sample_store, PIPELINE, TASKS, start, end, max_points=20)
    alone = [queries.task_durations(sample_store, PIPELINE, [task], start, end, max_points=20) for task in TASKS]
    pd.testing.assert_frame_equal(points, pd.concat([p for p, _ in alone], ignore_index=True), check_exact=True)
    pd.testing.assert_frame_equal(bands, pd.concat([b for _, b in alone], ignore_index=True), check_exact=True)
    for task, (_, task_bands) in zip(TASKS, alone):
        [series] = sample_store.find_series("task.duration_s", pipeline=PIPELINE, task=task)
        ts, values, _ = sample_store.read_arrays(series.metric, series.tags, start, end)
        width = queries.bucket_width(start, end, len(ts) / queries.POINTS_PER_BAND)
        expected = queries.duration_bands(ts, values, width)
        pd.testing.assert_frame_equal(task_bands.drop(columns="task"), expected, check_exact=True)
    assert queries.task_durations(sample_store, PIPELINE, [], start, end)[0].empty


def test_a_task_with_series_of_extra_tags_reads_them_all(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/tw.db") as store:
        for worker, base in (("w1", 10.0), ("w2", 20.0)):
            store.write_points("task.duration_s", {"pipeline": "p", "task": "t", "worker": worker},
                               [1_800_000_000 + i * 60 for i in range(5)], [base + i for i in range(5)])
        points, bands = queries.task_durations(store, "p", ["t"], 1_799_999_000, 1_800_001_000)
        assert len(points) == 10 and points["ts"].is_monotonic_increasing
        assert bands["count"].sum() == 10
