"""evaluate(rule, store, now) for every kind, on a store the tests fill:
a task-duration regression, a drifting feature, new data since a training run,
a failing task with its file:line, an absent series."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tablewatch.alerts.detectors import sketch_of
from tablewatch.alerts.evaluate import Observation, aggregate_values, evaluate, split_error
from tablewatch.alerts.rules import parse_rules
from tablewatch.store import TaskRun, TrainingRun
from tablewatch.store.sketches import SketchRecord

H = 3600
DAY = 86400
#: Yesterday noon UTC: recent enough for the store's retention whenever the tests run.
NOW = float((int(time.time()) // DAY - 1) * DAY + 12 * H)


def at(seconds_before_now: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_before_now, timezone.utc)


def iso(seconds_before_now: float) -> str:
    return at(seconds_before_now).strftime("%Y-%m-%dT%H:%M:%SZ")


def rule(text: str, actions: str = ""):
    return parse_rules(f"{actions}rules:\n  - {text}\n").rules[0]


def check(observations: list[Observation]) -> None:
    """Every observation is JSON-able, as the engine persists it."""
    for o in observations:
        json.dumps(o.details)
        assert o.summary and o.dashboard_path.startswith("/")


# -- the task-duration regression ------------------------------------------------------


@pytest.fixture
def etl(store):
    """nightly-etl/extract ran hourly for 8 days taking ~20 s; over the last day ~41 s.
    nightly-etl/load stayed at ~5 s."""
    rng = np.random.default_rng(3)
    runs = []
    for h in range(1, 8 * 24):
        slow = h <= 24
        for task, base in (("extract", 41.0 if slow else 20.0), ("load", 5.0)):
            start = at(h * H)
            took = float(base + rng.normal(0, 1))
            runs.append(TaskRun("nightly-etl", task, f"{task}-{h}", "success", started_at=start,
                                ended_at=start + timedelta(seconds=took)))
    store.write_task_runs(runs)
    return store


def test_task_duration_regression_against_previous_windows(etl):
    r = rule("{name: etl-slow, kind: regression, source: task_runs, pipeline: nightly-etl, measure: duration_s,"
             " aggregate: p95, window: 1d, baseline: {kind: previous, windows: 3}, threshold: 0.5}")
    found = {o.labels["task"]: o for o in evaluate(r, etl, NOW)}
    check(list(found.values()))
    extract, load = found["extract"], found["load"]
    assert extract.active and not load.active
    assert extract.labels == {"pipeline": "nightly-etl", "task": "extract"}
    assert 40 < extract.value < 45 and 19 < extract.baseline < 23
    assert extract.threshold == 0.5 and extract.details["change"] > 0.8
    assert extract.summary.startswith("nightly-etl/extract p95 duration over 1d: 4") and "s vs 2" in extract.summary
    assert extract.dashboard_path == f"/tasks?pipeline=nightly-etl&task=extract&start={iso(4 * DAY)}&end={iso(0)}"


def test_regression_robust_runs_baseline_and_direction(etl):
    r = rule("{name: etl-slow, kind: regression, source: task_runs, pipeline: nightly-etl, task: extract,"
             " window: 1d, baseline: {kind: runs, runs: 48}, robust: true, threshold: 0.5}")
    [o] = evaluate(r, etl, NOW)
    assert o.active and 19 < o.baseline < 21 and o.details["spread"] < 3
    faster = rule("{name: etl-fast, kind: regression, source: task_runs, pipeline: nightly-etl, task: extract,"
                  " window: 1d, direction: decrease, threshold: 0.5}")
    assert not evaluate(faster, etl, NOW)[0].active
    # min_samples: a 30-minute window holds at most one run
    few = rule("{name: few, kind: regression, source: task_runs, pipeline: nightly-etl, task: extract,"
               " window: 30m, threshold: 0.5, min_samples: 3}")
    [o] = evaluate(few, etl, NOW)
    assert not o.active and o.baseline is None and "fewer than 3" in o.summary


def test_failure_and_retry_rates_from_task_runs(store):
    runs = []
    for h in range(1, 4 * 24):
        start = at(h * H)
        failing = h <= 24 and h % 2 == 0  # half of the last day's runs fail
        runs.append(TaskRun("etl", "load", f"r{h}", "failure" if failing else "success", started_at=start,
                            ended_at=start + timedelta(seconds=3), error_type="IOError" if failing else None,
                            error_message="disk full" if failing else None,
                            error_location="etl/load.py:88" if failing else None))
        if h <= 24 and h % 3 == 0:
            runs.append(TaskRun("etl", "load", f"r{h}", "retry", attempt=2, started_at=start + timedelta(seconds=1),
                                ended_at=start + timedelta(seconds=2)))
    store.write_task_runs(runs)
    failures = rule("{name: f, kind: regression, source: task_runs, pipeline: etl, measure: failure_rate, window: 1d,"
                    " baseline: {kind: previous, windows: 2}, change: absolute, threshold: 0.2}")
    [o] = evaluate(failures, store, NOW)
    assert o.active and o.value == pytest.approx(0.5) and o.baseline == 0.0
    assert o.details["file_line"] == "etl/load.py:88" and o.details["error_type"] == "IOError"
    retries = rule("{name: r, kind: regression, source: task_runs, pipeline: etl, measure: retry_rate, window: 1d,"
                   " baseline: {kind: days_ago, days: [2, 3]}, change: absolute, threshold: 0.1}")
    [o] = evaluate(retries, store, NOW)
    assert o.active and o.value == pytest.approx(8 / 32) and o.baseline == 0.0


def test_training_run_final_metric_regression(store):
    for i, accuracy in enumerate([0.90, 0.91, 0.905, 0.90, 0.84]):
        start = at((10 - i) * DAY)
        store.write_training_run(TrainingRun("ranker", f"run-{i}", "success", start, start + timedelta(hours=2),
                                             metrics={"accuracy": accuracy, "loss": 0.3}))
    r = rule("{name: acc, kind: regression, source: training_runs, training_run: ranker, metric: accuracy,"
             " baseline: {kind: runs, runs: 4}, direction: decrease, threshold: 0.05, min_samples: 3}")
    [o] = evaluate(r, store, NOW)
    assert o.active and o.value == 0.84 and o.baseline == pytest.approx(0.90375)
    assert o.details["run_id"] == "run-4" and o.details["baseline_runs"] == ["run-3", "run-2", "run-1", "run-0"]
    assert o.dashboard_path.startswith("/training?run=run-4,run-3")
    # six and a half days ago the newest run was run-3, with only three runs before it
    [before] = evaluate(r, store, NOW - 6.5 * DAY)
    assert before.value == 0.90 and before.baseline == pytest.approx(0.905) and not before.active
    too_few = rule("{name: acc, kind: regression, source: training_runs, training_run: ranker, metric: accuracy,"
                   " baseline: {kind: runs, runs: 4}, direction: decrease, threshold: 0.05, min_samples: 5}")
    assert not evaluate(too_few, store, NOW)[0].active


# -- points: threshold and regression, serving latency and error rate -------------------------------


@pytest.fixture
def serving(store):
    """serve.latency_s of two routes, one point a minute for 8 days; /rank got
    slower (0.3 s instead of 0.1 s) and 5xx-heavy in the last hour."""
    rng = np.random.default_rng(5)
    ts = NOW - np.arange(1, 8 * 24 * 60 + 1)[::-1] * 60.0
    last_hour = ts >= NOW - H
    for route in ("/rank", "/health"):
        slow = last_hour if route == "/rank" else np.zeros(len(ts), bool)
        latency = np.where(slow, 0.3, 0.1) + rng.normal(0, 0.005, len(ts))
        errors = (rng.random(len(ts)) < np.where(slow, 0.2, 0.01))
        for status, mask in (("2xx", ~errors), ("5xx", errors)):
            store.write_points("serve.latency_s", {"service": "ranker", "route": route, "status": status},
                               ts[mask], latency[mask])
    return store


def test_threshold_per_series_and_aggregated(serving):
    r = rule("{name: p99, kind: threshold, metric: serve.latency_s, tags: {service: ranker, status: 2xx},"
             " aggregate: p99, window: 30m, op: '>', value: 0.2}")
    found = {o.labels["route"]: o for o in evaluate(r, serving, NOW)}
    check(list(found.values()))
    assert found["/rank"].active and not found["/health"].active
    assert found["/rank"].labels == {"route": "/rank", "service": "ranker", "status": "2xx"}
    assert found["/rank"].dashboard_path.startswith(f"/serving?route=/rank&start={iso(30 * 60)}&end={iso(0)}")
    together = rule("{name: mean, kind: threshold, metric: serve.latency_s, tags: {service: ranker},"
                    " aggregate: max, window: 30m, op: '>=', value: 1, per_series: false, labels: {team: ml}}")
    [o] = evaluate(together, serving, NOW)
    assert not o.active and 0.3 < o.value < 0.4 and o.labels == {"team": "ml", "service": "ranker"}
    count = rule("{name: c, kind: threshold, metric: serve.latency_s, tags: {route: /health}, aggregate: count,"
                 " window: 1h, op: '<', value: 50, per_series: false}")
    [o] = evaluate(count, serving, NOW)
    assert o.value == 60 and not o.active


def test_error_rate_as_share_per_route(serving):
    r = rule("{name: errors, kind: threshold, metric: serve.latency_s, tags: {service: ranker}, aggregate: share,"
             " share_tags: {status: 5xx}, window: 1h, op: '>', value: 0.05}")
    found = {o.labels["route"]: o for o in evaluate(r, serving, NOW)}
    assert set(found) == {"/rank", "/health"} and "status" not in found["/rank"].labels
    assert found["/rank"].active and 0.08 < found["/rank"].value < 0.35
    assert not found["/health"].active


def test_serving_latency_regression_same_window_days_ago(serving):
    r = rule("{name: slower, kind: regression, metric: serve.latency_s, tags: {status: 2xx}, aggregate: p95,"
             " window: 1h, baseline: {kind: days_ago, days: [1, 7]}, threshold: 0.5, min_samples: 30}")
    found = {o.labels["route"]: o for o in evaluate(r, serving, NOW)}
    assert found["/rank"].active and found["/rank"].value > 0.29 and found["/rank"].baseline < 0.12
    assert not found["/health"].active
    errors = rule("{name: err, kind: regression, metric: serve.latency_s, aggregate: share, share_tags: {status: 5xx},"
                  " window: 1h, baseline: {kind: previous, windows: 24}, change: absolute, threshold: 0.05}")
    found = {o.labels["route"]: o for o in evaluate(errors, serving, NOW)}
    assert found["/rank"].active and found["/rank"].baseline < 0.03 and not found["/health"].active


def test_no_data_gives_no_observation(store):
    for text in ("{name: t, kind: threshold, metric: nothing.here, op: '>', value: 1}",
                 "{name: r, kind: regression, metric: nothing.here, threshold: 1}",
                 "{name: d, kind: drift, model: nobody}",
                 "{name: d2, kind: drift, model: nobody, reference: {kind: training_run}}",
                 "{name: a, kind: absence, metric: nothing.here, absent_for: 1h}",
                 "{name: n, kind: new_data, training_run: nobody, at_least: 10}",
                 "{name: e, kind: task_event, pipeline: nobody}",
                 "{name: e2, kind: task_event, training_run: nobody}"):
        assert evaluate(rule(text), store, NOW) == []


# -- drift ---------------------------------------------------------------------------------------


def write_sketches(store, model, feature, start_s, hours, draw):
    records = []
    for h in range(hours):
        window_start = int(start_s + h * H)
        records.append(SketchRecord(model, feature, window_start * 1_000_000, H, "00" * 8, 0, sketch_of(draw())))
    store.write_sketches(records)


@pytest.fixture
def drifting(store):
    """ranker: age drifts (mean 40 -> 46) in the last day, country and the
    prediction do not; a training run covered days -9..-8."""
    rng = np.random.default_rng(7)
    for day_offset, age_mean in ((-9, 40.0), (-8, 40.0), (-3, 40.0), (-2, 40.0), (-1, 46.0)):
        start = NOW + day_offset * DAY
        write_sketches(store, "ranker", "age", start, 24, lambda m=age_mean: rng.normal(m, 10, 200))
        write_sketches(store, "ranker", "country", start, 24, lambda: rng.choice(["fr", "de", "us"], 200, p=[.5, .3, .2]))
        write_sketches(store, "ranker", "__prediction__", start, 24, lambda: rng.beta(2, 5, 200))
    store.write_training_run(TrainingRun("ranker", "train-1", "success", at(9 * DAY), at(7 * DAY)))
    return store


def test_drift_per_feature_against_the_window_before(drifting):
    r = rule("{name: drift, kind: drift, model: ranker, reference: {kind: window, window: 2d}, window: 1d}")
    found = {o.labels["feature"]: o for o in evaluate(r, drifting, NOW)}
    check(list(found.values()))
    assert set(found) == {"age", "country", "__prediction__"}
    age = found["age"]
    assert age.active and age.labels == {"model": "ranker", "feature": "age"}
    feature = age.details["features"]["age"]
    assert feature["method"] == "wasserstein" and feature["drifted"] and feature["effect"] > 0.4
    assert age.value == pytest.approx(feature["score"]) and age.threshold == 0.1
    assert not found["country"].active and found["country"].details["features"]["country"]["method"] == "jensenshannon"
    assert not found["__prediction__"].active
    assert age.dashboard_path.startswith(f"/drift?model=ranker&feature=age&start={iso(DAY)}&end={iso(0)}")
    assert age.details["reference"] == {"start": iso(3 * DAY), "end": iso(DAY), "description": "the 2d before"}


def test_model_level_drift_share_against_a_training_run(drifting):
    r = rule("{name: ds, kind: drift, model: ranker, reference: {kind: training_run}, drift_share: 0.3}")
    [o] = evaluate(r, drifting, NOW)
    assert o.active and o.value == pytest.approx(1 / 3) and o.threshold == 0.3
    assert o.details["drifted_features"] == ["age"] and set(o.details["features"]) == {"age", "country", "__prediction__"}
    assert "training run train-1" in o.summary
    half = rule("{name: ds, kind: drift, model: ranker, features: [age, country], method: psi, threshold: 0.05,"
                f" reference: {{kind: range, start: {iso(9 * DAY)}, end: {iso(7 * DAY)}}}, drift_share: 0.5}}")
    [o] = evaluate(half, drifting, NOW)
    assert o.active and o.details["features"]["age"]["method"] == "psi"


def test_drift_min_samples_and_effect_gate(drifting):
    few = rule("{name: d, kind: drift, model: ranker, features: [age], window: 1h, min_samples: 1000}")
    [o] = evaluate(few, drifting, NOW)
    assert not o.active and o.value is None and "fewer than 1000" in o.summary
    gated = rule("{name: d, kind: drift, model: ranker, features: [age], method: ks, min_effect: 0.9}")
    [o] = evaluate(gated, drifting, NOW)
    assert not o.active and o.details["features"]["age"]["statistic_drifted"]


# -- absence -------------------------------------------------------------------------------------


def test_absent_series_pipeline_and_training_job(store):
    store.write_points("data.rows", {"source": "kafka"}, [NOW - 3 * H], [10.0])
    store.write_points("data.rows", {"source": "s3"}, [NOW - 600], [10.0])
    store.write_points("data.rows", {"source": "ftp"}, [NOW - 30 * DAY], [10.0])  # decommissioned: out of lookback
    r = rule("{name: silent, kind: absence, metric: data.rows, tags: {source: true}, absent_for: 2h}")
    found = {o.labels["source"]: o for o in evaluate(r, store, NOW)}
    check(list(found.values()))
    assert set(found) == {"kafka", "s3"}
    assert found["kafka"].active and found["kafka"].value == 3 * H and found["kafka"].threshold == 2 * H
    assert not found["s3"].active
    assert f"nothing since {iso(3 * H)} (3h ago, over 2h)" in found["kafka"].summary

    store.write_task_runs([TaskRun("etl", "extract", "x", "success", started_at=at(30 * H), ended_at=at(29 * H))])
    [o] = evaluate(rule("{name: p, kind: absence, pipeline: etl, absent_for: 26h}"), store, NOW)
    assert o.active and o.labels == {"pipeline": "etl"} and o.value == 29 * H

    store.write_training_run(TrainingRun("ranker", "t1", "running", at(5 * H)))
    store.write_points("train.loss", {"run": "t1"}, [NOW - 4 * H, NOW - 3 * H], [0.5, 0.4])
    [o] = evaluate(rule("{name: t, kind: absence, training_run: ranker, absent_for: 1h}"), store, NOW)
    assert o.active and o.value == 3 * H  # its last point, not its start


# -- new data -------------------------------------------------------------------------------------


def test_new_data_since_the_last_training_run(store):
    store.write_training_run(TrainingRun("ranker", "old", "success", at(20 * DAY), at(19 * DAY)))
    store.write_training_run(TrainingRun("ranker", "t7", "success", at(3 * DAY), at(3 * DAY - 2 * H)))
    ts = NOW - np.arange(1, 5 * 24) * H
    store.write_points("data.rows", {"dataset": "ranker", "source": "a"}, ts, np.full(len(ts), 1000.0))
    store.write_points("data.rows", {"dataset": "ranker", "source": "b"}, ts, np.full(len(ts), 500.0))
    r = rule("{name: more, kind: new_data, tags: {dataset: ranker}, training_run: ranker, at_least: 100000,"
             " action: retrain}", "actions: {retrain: {kind: command, command: [train]}}\n")
    [o] = evaluate(r, store, NOW)
    check([o])
    # hours since the run ended: 3 days - 2 h = 70 points per series
    assert o.value == 70 * 1500 and o.active and o.threshold == 100000
    assert o.details["event_id"] == "new_data:more:ranker:t7" and o.labels == {"model": "ranker", "training_run": "ranker"}
    assert o.dashboard_path.startswith("/training?run=t7&model=ranker")
    store.write_training_run(TrainingRun("ranker", "t8", "success", at(5 * H), at(4 * H)))
    [o] = evaluate(r, store, NOW)
    assert not o.active and o.value == 4 * 1500 and o.details["event_id"].endswith(":t8")  # [ended, now)


# -- task events ------------------------------------------------------------------------------------


def test_failing_task_with_its_file_line_once_per_event(store):
    store.write_task_runs([
        TaskRun("etl", "extract", "a1", "success", started_at=at(50 * 60), ended_at=at(40 * 60)),
        TaskRun("etl", "transform", "a1", "failure", started_at=at(30 * 60), ended_at=at(29 * 60),
                error_type="KeyError", error_message="'user_id'", error_location="etl/transform.py:123"),
        TaskRun("etl", "transform", "a0", "failure", started_at=at(5 * H), ended_at=at(5 * H - 60),
                error_type="KeyError", error_message="old", error_location="etl/transform.py:120"),
        # started yesterday, failed a minute ago: filed under its start, still found
        TaskRun("etl", "backfill", "b", "failure", started_at=at(30 * H), ended_at=at(60), error_type="Timeout"),
    ])
    r = rule("{name: failed, kind: task_event, pipeline: etl, on: [failed], lookback: 1h}")
    events = evaluate(r, store, NOW)
    check(events)
    assert [e.labels["task"] for e in events] == ["transform", "backfill"]
    transform = events[0]
    assert transform.active and transform.details["file_line"] == "etl/transform.py:123"
    assert transform.details["error_type"] == "KeyError" and transform.details["event_id"] == "task:etl:transform:a1:1"
    assert transform.summary == "etl/transform failed after 60 s: KeyError: 'user_id' at etl/transform.py:123"
    assert evaluate(r, store, NOW) == events  # stable: the engine notifies each event id once
    done = rule("{name: done, kind: task_event, pipeline: etl, task: extract, on: [success]}")
    [e] = evaluate(done, store, NOW)
    assert e.details["duration_s"] == 600 and e.summary == "etl/extract succeeded after 600 s"


def test_training_run_finished_or_failed(store):
    store.write_training_run(TrainingRun("ranker", "ok", "success", at(3 * H), at(20 * 60),
                                         metrics={"accuracy": 0.91, "loss": 0.2}))
    store.write_training_run(TrainingRun("ranker", "bad", "failure", at(2 * H), at(10 * 60),
                                         error="ValueError: NaN loss at train.py:57"))
    store.write_training_run(TrainingRun("ranker", "run", "running", at(H)))
    r = rule("{name: done, kind: task_event, training_run: ranker, on: [finished, failed]}")
    ok, bad = evaluate(r, store, NOW)
    assert ok.details["metrics"] == {"accuracy": 0.91, "loss": 0.2} and ok.value == 2 * H + 40 * 60
    assert ok.summary == "training run ranker (ok) finished after 2h40m: accuracy=0.91, loss=0.2"
    assert bad.details["error_type"] == "ValueError" and bad.details["file_line"] == "train.py:57"
    assert bad.details["event_id"] == "training:ranker:bad:failure"
    assert bad.dashboard_path.startswith("/training?run=bad")


def test_helpers():
    values = np.array([1.0, 2.0, 3.0, np.nan, 4.0])
    assert aggregate_values(values, "mean", 10) == 2.5
    assert aggregate_values(values, "rate", 10) == 1.0
    assert aggregate_values(values, "p50", 10) == 2.5
    assert aggregate_values(np.array([]), "count", 10) == 0
    assert split_error("KeyError: 'x' (etl/a.py:12)") == ("KeyError", "'x' (etl/a.py:12)", "etl/a.py:12")
    assert split_error("it broke") == (None, "it broke", None)


def test_cycle_reads_give_the_same_observations_with_fewer_store_reads(serving, drifting):
    from tablewatch.alerts.reads import CycleReads

    store = serving  # the same store holds the drifting sketches too
    rules = [rule(text) for text in (
        "{name: a, kind: threshold, metric: serve.latency_s, tags: {status: 2xx}, aggregate: p99, window: 30m, op: '>', value: 0.2}",
        "{name: b, kind: threshold, metric: serve.latency_s, aggregate: share, share_tags: {status: 5xx}, window: 1h, op: '>', value: 0.05}",
        "{name: c, kind: regression, metric: serve.latency_s, tags: {status: 2xx}, aggregate: p95, window: 1h,"
        " baseline: {kind: days_ago, days: [1, 7]}, threshold: 0.5}",
        "{name: d, kind: drift, model: ranker, reference: {kind: window, window: 2d}}",
        "{name: e, kind: drift, model: ranker, features: [age], method: ks, reference: {kind: window, window: 2d}}",
        "{name: f, kind: absence, metric: serve.latency_s, absent_for: 1h}",
    )]
    reads = CycleReads(store)
    assert [evaluate(r, reads, NOW) for r in rules] == [evaluate(r, store, NOW) for r in rules]
    first = reads.store_reads
    assert [evaluate(r, reads, NOW) for r in rules] == [evaluate(r, store, NOW) for r in rules]
    assert reads.store_reads == first  # the second pass read nothing
    assert reads.read_task_runs("nobody") == [] and reads.info()["url"] == store.info()["url"]  # the rest passes through


def test_a_method_that_does_not_apply_skips_the_feature(drifting):
    r = rule("{name: d, kind: drift, model: ranker, features: [age, country], method: ks}")
    found = {o.labels["feature"]: o for o in evaluate(r, drifting, NOW)}
    assert found["age"].details["features"]["age"]["method"] == "ks"
    assert not found["country"].active and "does not apply to categorical values" in found["country"].summary


def test_a_count_over_a_silent_window_is_zero(store):
    store.write_points("serve.latency_s", {"route": "/rank"}, [NOW - 3 * H], [0.1])
    r = rule("{name: quiet, kind: threshold, metric: serve.latency_s, aggregate: count, window: 1h, op: '<', value: 10}")
    [o] = evaluate(r, store, NOW)
    assert o.active and o.value == 0 and o.summary == "serve.latency_s {route=/rank} count over 1h: 0 (< 10)"
    mean = rule("{name: slow, kind: threshold, metric: serve.latency_s, aggregate: mean, window: 1h, op: '<', value: 10}")
    [o] = evaluate(mean, store, NOW)
    assert not o.active and o.value is None and "0 samples over 1h, fewer than 1" in o.summary


def test_drift_thresholds_per_method_and_a_named_training_run(drifting):
    drifting.write_training_run(TrainingRun("ranker", "train-2", "running", at(2 * DAY)))  # newest, not finished
    lenient = rule("{name: d, kind: drift, model: ranker, features: [age], thresholds: {wasserstein: 0.9},"
                   " reference: {kind: training_run, training_run: ranker, run_id: train-1}}")
    [o] = evaluate(lenient, drifting, NOW)
    assert o.threshold == 0.9 and not o.active and o.details["features"]["age"]["method"] == "wasserstein"
    assert o.details["reference"]["description"] == "training run train-1"
    newest_finished = rule("{name: d, kind: drift, model: ranker, features: [age], reference: {kind: training_run}}")
    [o] = evaluate(newest_finished, drifting, NOW)
    assert o.active and o.details["reference"]["description"] == "training run train-1"
