"""Figures hold one named trace per series they draw."""

import json

import pandas as pd

from tablewatch.dashboard import charts, queries
from tests.dashboard.sample_data import DAY, FEATURES, MODEL, PIPELINE, RUNS, TASKS


def names(fig):
    return [trace.name for trace in fig.data]


def test_task_charts(sample_store, sample):
    now = sample[1].now
    start, end = now - 8 * DAY, now + 1
    points, bands = queries.task_durations(sample_store, PIPELINE, TASKS, start, end)
    fig = charts.task_durations(points, bands)
    assert set(names(fig)) == {f"{t}{suffix}" for t in TASKS for suffix in ("", " p50", " p95")}
    dots = next(t for t in fig.data if t.name == "extract")
    assert len(dots.y) == 28
    bands_only = charts.task_durations(points, bands, dots=False)
    assert set(names(bands_only)) == {f"{t}{suffix}" for t in TASKS for suffix in (" p50", " p95")}
    assert "dots" not in bands_only.layout.title.text
    runs = queries.task_runs(sample_store, PIPELINE, None, start, end)
    gantt = charts.gantt(queries.gantt_frame(runs, sample[1].pipeline_run_ids[2]), "r")
    assert sorted(names(gantt)) == ["retry", "success"]
    assert all(trace.orientation == "h" for trace in gantt.data)
    both = charts.retries_and_failure_rate(queries.retries_per_day(sample_store, PIPELINE, TASKS, start, end),
                                           queries.failure_rates(runs))
    bars, lines = [t for t in both.data if t.type == "bar"], [t for t in both.data if t.type == "scatter"]
    assert both.layout.barmode == "stack" and sorted(t.name for t in bars) == sorted(TASKS)
    assert sorted(t.name for t in lines) == sorted(TASKS)
    assert {(t.xaxis, t.yaxis) for t in bars} == {(None, None)}
    assert {(t.xaxis, t.yaxis) for t in lines} == {("x2", "y2")}
    # One legend entry and one colour per task, in both halves.
    assert sorted(t.name for t in both.data if t.showlegend is not False) == sorted(TASKS)
    assert {t.name: t.marker.color for t in bars} == {t.name: t.line.color for t in lines}


def test_training_drift_and_store_charts(sample_store, sample):
    now = sample[1].now
    curves = charts.training_curves(queries.training_curves(sample_store, "train.loss", RUNS), "train.loss")
    assert sorted(names(curves)) == sorted(RUNS)
    assert all(len(trace.x) <= queries.MAX_POINTS_PER_TRACE for trace in curves.data)
    scores = queries.drift_over_time(sample_store, MODEL, FEATURES, now - DAY, now + 1)
    fig = charts.drift_scores(scores)
    assert set(names(fig)) == set(FEATURES) | {f"{f} threshold" for f in FEATURES}
    threshold = next(t for t in fig.data if t.name == "age threshold")
    assert set(threshold.y) == {scores["threshold"].iloc[0]}
    dist = charts.distribution(queries.compare_distributions(sample_store, MODEL, "country", now - DAY, now + 1))
    assert [n.split(" ")[0] for n in names(dist)] == ["reference", "current"]
    salt = charts.salt_buckets(queries.store_hotspots(sample_store))
    assert len(salt.data[0].y) == 16


def test_large_traces_use_webgl():
    frame = pd.DataFrame({"run": "r", "step": range(charts.WEBGL_POINTS + 1), "ts": pd.Timestamp(0, tz="UTC"), "value": 1.0})
    assert charts.training_curves(frame, "loss").data[0].type == "scattergl"
    assert charts.training_curves(frame.head(10), "loss").data[0].type == "scatter"


def test_charts_built_without_validation_are_the_validated_ones(sample_store, sample, monkeypatch):
    """charts skips Plotly's per-property validation for speed: every chart,
    built with it, is valid and gives the same figure."""
    import plotly.io as pio

    now = sample[1].now
    start, end = now - 8 * DAY, now + 1
    runs = queries.task_runs(sample_store, PIPELINE, None, start, end)
    stats = queries.serving_stats(sample_store, MODEL, None, start, end)
    builders = [
        lambda: charts.task_durations(*queries.task_durations(sample_store, PIPELINE, TASKS, start, end)),
        lambda: charts.gantt(queries.gantt_frame(runs, sample[1].pipeline_run_ids[2]), "r"),
        lambda: charts.retries_and_failure_rate(queries.retries_per_day(sample_store, PIPELINE, TASKS, start, end),
                                                queries.failure_rates(runs)),
        lambda: charts.training_curves(queries.training_curves(sample_store, "train.loss", RUNS), "train.loss"),
        lambda: charts.latency(stats),
        lambda: charts.serving(stats, "error_rate", "Error rate", "share", percent=True),
        lambda: charts.drift_scores(queries.drift_over_time(sample_store, MODEL, FEATURES, now - DAY, now + 1)),
        lambda: charts.distribution(queries.compare_distributions(sample_store, MODEL, "age", now - DAY, now + 1)),
        lambda: charts.sparkline([1.0, 3.0, 2.0], "trend"),
        lambda: charts.salt_buckets(queries.store_hotspots(sample_store)),
    ]
    for build in builders:
        fast = build()
        monkeypatch.setattr(charts, "VALIDATE", True)
        checked = build()
        monkeypatch.setattr(charts, "VALIDATE", False)
        fast_json, checked_json = json.loads(pio.to_json(fast)), json.loads(pio.to_json(checked))
        # Drawn once by Plotly.js when given twice: no template (null without validation, absent
        # with it), a fixed data revision, numbers as lists rather than typed arrays.
        assert fast_json["layout"].pop("template") is None and "template" not in checked_json["layout"]
        assert fast_json["layout"]["datarevision"] == 1 and "bdata" not in pio.to_json(fast)
        # (the same JSON; only the order of keys within an object may differ)
        assert checked.data and fast_json == checked_json

