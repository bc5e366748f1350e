"""What the dashboard reads from a store, as plain functions of a
:class:`~tablewatch.store.Store` returning DataFrames and frozen dataclasses.

Nothing here knows Streamlit: the pages call these (through a short-lived
cache) and hand the results to :mod:`tablewatch.dashboard.charts`. Times are
epoch seconds (UTC) and ranges half-open, ``start <= t < end``. Long series are
downsampled in the store (``read_points(max_points=...)`` keeps each bucket's
min and max, so spikes survive) to at most :data:`MAX_POINTS_PER_TRACE` points.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tablewatch.errors import ValidationError
from tablewatch.store.chunks import NO_STEP
from tablewatch.store.downsample import aggregate, minmax_indices
from tablewatch.alerts import detectors
from tablewatch.alerts.detectors import DriftResult
from tablewatch.alerts.rules import DriftRule, format_duration
from tablewatch.store.sketches import PREDICTION, DistributionSketch

if TYPE_CHECKING:
    from tablewatch.store import Store, TaskRun, TrainingRun

#: Points per trace after server-side downsampling...
MAX_POINTS_PER_TRACE = 2_000
#: ...and per chart, when it has many traces (each keeps at least MIN_POINTS_PER_TRACE).
MAX_POINTS_PER_CHART = 10_000
MIN_POINTS_PER_TRACE = 200
#: Task runs read for one page (failure rates, Gantt, failed attempts).
MAX_TASK_RUNS = 20_000
DURATION_METRIC = "task.duration_s"
RETRIES_METRIC = "task.retries"
LATENCY_METRIC = "serve.latency_s"
SYSTEM_PREFIX = "system."
#: Candidate aggregation widths (seconds); the first giving at most
#: :data:`TARGET_BUCKETS` buckets over the range is used.
BUCKET_WIDTHS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)
TARGET_BUCKETS = 200
#: Attempts per bucket a p50/p95 band aims for.
POINTS_PER_BAND = 8
US_PER_S = 1_000_000
#: A drift rule's defaults, so that this page's scores are the alerts' scores.
DRIFT_METHOD = DriftRule.model_fields["method"].default
DRIFT_MIN_EFFECT = DriftRule.model_fields["min_effect"].default
DRIFT_MIN_SAMPLES = DriftRule.model_fields["min_samples"].default


def points_per_trace(traces: int) -> int:
    """How many points each of ``traces`` traces of one chart keeps."""
    share = MAX_POINTS_PER_CHART // max(traces, 1)
    return max(MIN_POINTS_PER_TRACE, min(MAX_POINTS_PER_TRACE, share))


def bucket_width(start: float, end: float, buckets: float = TARGET_BUCKETS) -> int:
    """Aggregation width (seconds) for a chart of ``[start, end)``: the
    narrowest of :data:`BUCKET_WIDTHS` giving at most ``buckets`` buckets
    (capped at :data:`TARGET_BUCKETS`)."""
    span = max(end - start, 1.0)
    buckets = max(1.0, min(buckets, TARGET_BUCKETS))
    for width in BUCKET_WIDTHS:
        if span / width <= buckets:
            return width
    return BUCKET_WIDTHS[-1]


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


# -- what exists: the pickers ----------------------------------------------------------------


def pipelines(store: Store) -> list[str]:
    """Pipelines that have task runs, sorted."""
    return sorted({pipeline for pipeline, _ in store.list_tasks()})


def tasks_of(store: Store, pipeline: str) -> list[str]:
    return sorted(task for _, task in store.list_tasks(pipeline))


def training_names(store: Store, start: float | None = None, end: float | None = None) -> list[str]:
    """Names (experiments, models) of the training runs started in the range."""
    return sorted({run.name for run in store.read_training_runs(start=start, end=end)})


def training_runs(store: Store, name: str, start: float | None = None, end: float | None = None) -> list[TrainingRun]:
    """Runs of ``name`` started in the range, newest first."""
    return store.read_training_runs(name, start=start, end=end)


def served_models(store: Store) -> list[str]:
    """Services (models) with serving latency points."""
    return sorted({s.tags.get("service", "") for s in store.find_series(LATENCY_METRIC)} - {""})


def routes_of(store: Store, model: str) -> list[str]:
    return sorted({s.tags.get("route", "") for s in store.find_series(LATENCY_METRIC, service=model)} - {""})


def sketched_models(store: Store) -> list[str]:
    return sorted({model for model, _ in store.list_sketched_features()})


def sketched_features(store: Store, model: str) -> list[str]:
    """Features of ``model`` with sketches, the prediction last."""
    names = [feature for _, feature in store.list_sketched_features(model)]
    return sorted(names, key=lambda name: (name == PREDICTION, name))


def has_any_data(store: Store) -> bool:
    """Whether anything at all was sent to the store (points, tasks, runs, sketches)."""
    return bool(store.find_series() or store.list_tasks() or store.read_training_runs(limit=1)
                or store.list_sketched_features())


# -- tasks -------------------------------------------------------------------------------------


def _task_arrays(store: Store, metric: str, pipeline: str, tasks: Sequence[str], start: float,
                 end: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Points (ts, values) of ``metric`` of each task, time-sorted, over every
    series tagged with the pipeline and the task (a collector may add tags of
    its own): one series lookup and one read for all the tasks."""
    found = store.find_series(metric, pipeline=pipeline, task=list(tasks)) if tasks else []
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for series, (ts, values, _) in zip(found, store.read_arrays_many(found, _dt(start), _dt(end))):
        parts[series.tags["task"]].append((ts, values))
    arrays = []
    for task in tasks:
        if len(parts[task]) == 1:
            arrays.append(parts[task][0])
            continue
        ts = np.concatenate([p[0] for p in parts[task]] or [np.array([], dtype=np.int64)])
        values = np.concatenate([p[1] for p in parts[task]] or [np.array([], dtype=np.float64)])
        order = np.argsort(ts, kind="stable")
        arrays.append((ts[order], values[order]))
    return arrays


def task_durations(store: Store, pipeline: str, tasks: Sequence[str], start: float, end: float,
                   max_points: int | None = None, every: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Durations of each task's attempts (``task.duration_s``), read in one go:

    - the points, downsampled per task to ``max_points`` (default:
      :func:`points_per_trace`; min/max per bucket, spikes kept): columns
      ``task``, ``ts``, ``value``;
    - bands per task and time bucket: columns ``task``, ``bucket`` (the
      bucket's middle), ``count``, ``mean``, ``p50``, ``p95``. The bucket width
      (unless ``every`` is given) is the narrowest of :data:`BUCKET_WIDTHS` that
      fits the range in :data:`TARGET_BUCKETS` buckets and gives a task about
      :data:`POINTS_PER_BAND` attempts per bucket, so that a band means something.
    """
    max_points = max_points or points_per_trace(len(tasks))
    arrays = _task_arrays(store, DURATION_METRIC, pipeline, tasks, start, end)
    widths = [every or bucket_width(start, end, len(ts) / POINTS_PER_BAND) for ts, _ in arrays]
    return _downsampled_points(tasks, arrays, max_points), _bands_of_tasks(tasks, arrays, widths)


#: Columns (and their types when empty) of :func:`task_durations`' frames.
POINT_COLUMNS = {"task": str, "ts": "datetime64[us, UTC]", "value": float}
BAND_COLUMNS = {"task": str, "bucket": "datetime64[us, UTC]", "count": int, "mean": float, "p50": float, "p95": float}


def _downsampled_points(tasks: Sequence[str], arrays: list[tuple[np.ndarray, np.ndarray]],
                        max_points: int) -> pd.DataFrame:
    """Each task's points downsampled to ``max_points``, in one frame."""
    kept = [minmax_indices(ts, values, max_points) for ts, values in arrays]
    if not any(len(keep) for keep in kept):
        return _concat([], POINT_COLUMNS)
    return pd.DataFrame({
        "task": pd.array(np.repeat(np.array(list(tasks), dtype=object), [len(keep) for keep in kept]), dtype="str"),
        "ts": pd.to_datetime(np.concatenate([ts[keep] for (ts, _), keep in zip(arrays, kept)]), unit="us", utc=True),
        "value": np.concatenate([values[keep] for (_, values), keep in zip(arrays, kept)]),
    })


def _bands_of_tasks(tasks: Sequence[str], arrays: list[tuple[np.ndarray, np.ndarray]],
                    widths: list[int]) -> pd.DataFrame:
    """:func:`duration_bands` of every task (buckets of its own width), the
    same numbers, computed together."""
    finite = [np.isfinite(values) for _, values in arrays]
    sizes = [int(keep.sum()) for keep in finite]
    if not sum(sizes):
        return _concat([], BAND_COLUMNS)
    task_of = np.repeat(np.arange(len(arrays)), sizes)
    ids = np.concatenate([ts[keep] // (width * US_PER_S) for (ts, _), keep, width in zip(arrays, finite, widths)])
    values = np.concatenate([values[keep] for (_, values), keep in zip(arrays, finite)])
    first = np.r_[True, (ids[1:] != ids[:-1]) | (task_of[1:] != task_of[:-1])]
    task_starts = np.r_[0, np.cumsum(sizes)[:-1]]
    starts, stats = _band_stats(first, values, task_starts[task_of[first]])
    width_us = np.array(widths, dtype=np.int64)[task_of[starts]] * US_PER_S
    middle = (ids[starts] * width_us + width_us // 2).astype("datetime64[us]")
    return pd.DataFrame({"task": pd.array(np.array(list(tasks), dtype=object)[task_of[starts]], dtype="str"),
                         "bucket": pd.to_datetime(middle, utc=True), **stats})


def duration_bands(ts: np.ndarray, values: np.ndarray, width_s: int) -> pd.DataFrame:
    """Per bucket of ``width_s`` seconds (aligned on the epoch) of time-sorted
    points: ``bucket`` (its middle), ``count``, ``mean``, ``p50``, ``p95`` of the
    finite values, with the store's quantile rule (linear between order
    statistics, as ``Store.aggregate``): :func:`_bands_of_tasks` of one series."""
    return _bands_of_tasks([""], [(ts, values)], [width_s]).drop(columns="task")


def _band_stats(first: np.ndarray, values: np.ndarray,
                origin: np.ndarray | int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(each group's first index, its ``count``, ``mean``, ``p50``, ``p95``) of
    finite ``values`` in groups of consecutive points, a group starting where
    ``first`` is True; ``origin``: per group, the index where its series starts
    (the quantiles' arithmetic is per series, as the store's). Faster than ``Store.aggregate`` on time-sorted input: the
    groups are already in order, so each group's values are sorted on their own
    (rows of a grid padded with +inf) instead of one two-key sort of all."""
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(values)])
    if counts.max() * len(starts) <= 4 * len(values):  # groups of similar sizes: sort each in a row of a grid
        grid = np.full((len(starts), counts.max()), np.inf)
        grid[np.arange(grid.shape[1]) < counts[:, None]] = values  # row after row: each group's values, in order
        grid.sort(axis=1)
        ordered, row_starts = grid.ravel(), np.arange(len(starts), dtype=np.int64) * grid.shape[1]
    else:  # one stable sort by value, then a radix sort by group
        group = np.repeat(np.arange(len(starts), dtype=np.int64), counts)
        by_value = np.argsort(values, kind="stable")
        group_type = np.int16 if len(starts) < 2**15 else np.int64  # 16-bit keys sort by radix
        ordered, row_starts = values[by_value[np.argsort(group[by_value].astype(group_type), kind="stable")]], starts
    stats = {"count": counts, "mean": np.add.reduceat(values, starts) / counts}
    for name, q in (("p50", 0.50), ("p95", 0.95)):
        position = (starts - origin) + q * (counts - 1)  # the store's arithmetic, rounding included
        low = np.floor(position).astype(np.int64)
        fraction = position - low
        low += row_starts - starts + origin
        high = np.minimum(low + 1, row_starts + counts - 1)
        stats[name] = ordered[low] * (1 - fraction) + ordered[high] * fraction
    return starts, stats


def retries_per_day(store: Store, pipeline: str, tasks: Sequence[str], start: float, end: float) -> pd.DataFrame:
    """Retries per UTC day and task, from ``task.retries`` (one point per call:
    how many retries it took). Columns ``task``, ``day``, ``retries``, ``calls``."""
    frames = []
    for task, (ts, values) in zip(tasks, _task_arrays(store, RETRIES_METRIC, pipeline, tasks, start, end)):
        keep = np.isfinite(values)
        ts, values = ts[keep], values[keep]
        if not len(ts):
            continue
        days = ts // (86400 * US_PER_S)
        unique, inverse = np.unique(days, return_inverse=True)
        frames.append(pd.DataFrame({
            "task": task,
            "day": pd.to_datetime(unique * 86400, unit="s", utc=True),
            "retries": np.bincount(inverse, weights=values),
            "calls": np.bincount(inverse),
        }))
    return _concat(frames, {"task": str, "day": "datetime64[ns, UTC]", "retries": float, "calls": int})


def task_runs(store: Store, pipeline: str, task: str | None, start: float, end: float,
              limit: int = MAX_TASK_RUNS) -> list[TaskRun]:
    """Attempts filed in the range, newest first."""
    return store.read_task_runs(pipeline, task, _dt(start), _dt(end), limit=limit)


def runs_frame(runs: Iterable[TaskRun]) -> pd.DataFrame:
    """Task runs as a table: one row per attempt."""
    rows = [{
        "pipeline": r.pipeline, "task": r.task, "run_id": r.run_id, "attempt": r.attempt, "status": r.status,
        "started_at": r.started_at, "ended_at": r.ended_at, "duration_s": r.duration_s, "host": r.host,
        "error_type": r.error_type, "error_message": r.error_message, "error_location": r.error_location,
    } for r in runs]
    columns = ["pipeline", "task", "run_id", "attempt", "status", "started_at", "ended_at", "duration_s", "host",
               "error_type", "error_message", "error_location"]
    return pd.DataFrame(rows, columns=columns)


def failure_rates(runs: Iterable[TaskRun], every: int = 86400) -> pd.DataFrame:
    """Share of finished attempts that failed (status ``failure`` or ``retry``)
    per task and bucket of ``every`` seconds. Columns ``task``, ``bucket``,
    ``attempts``, ``failed``, ``failure_rate``."""
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for run in runs:
        if run.status not in ("success", "failure", "retry"):
            continue
        bucket = int(run.time.timestamp() // every * every)
        entry = counts[(run.task, bucket)]
        entry[0] += 1
        entry[1] += run.status != "success"
    rows = [{"task": task, "bucket": _dt(bucket), "attempts": n, "failed": bad, "failure_rate": bad / n}
            for (task, bucket), (n, bad) in sorted(counts.items())]
    frame = pd.DataFrame(rows, columns=["task", "bucket", "attempts", "failed", "failure_rate"])
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    return frame


@dataclass(frozen=True)
class PipelineRun:
    """One run of a pipeline: the attempts sharing a run id."""

    run_id: str
    started_at: datetime
    tasks: tuple[str, ...]
    attempts: int
    failed: bool

    @property
    def label(self) -> str:
        state = "failed" if self.failed else "ok"
        return f"{self.run_id} · {self.started_at:%Y-%m-%d %H:%M} · {len(self.tasks)} tasks · {state}"


def pipeline_runs(runs: Iterable[TaskRun], limit: int = 200) -> list[PipelineRun]:
    """Runs (grouped by run id) of the attempts, newest first."""
    groups: dict[str, list[TaskRun]] = defaultdict(list)
    for run in runs:
        groups[run.run_id].append(run)
    found = []
    for run_id, attempts in groups.items():
        finals: dict[str, TaskRun] = {}
        for attempt in sorted(attempts, key=lambda r: (r.time, r.attempt)):
            finals[attempt.task] = attempt
        found.append(PipelineRun(
            run_id=run_id,
            started_at=min(r.time for r in attempts),
            tasks=tuple(sorted({r.task for r in attempts})),
            attempts=len(attempts),
            failed=any(r.status == "failure" for r in finals.values()),
        ))
    found.sort(key=lambda r: r.started_at, reverse=True)
    return found[:limit]


def gantt_frame(runs: Iterable[TaskRun], run_id: str) -> pd.DataFrame:
    """Every attempt of one pipeline run, in start order: columns ``task``,
    ``attempt``, ``status``, ``start``, ``end``, ``duration_s``, ``error``.
    An attempt without an end time (still running) ends at its start."""
    rows = []
    for r in runs:
        if r.run_id != run_id:
            continue
        start = r.started_at or r.queued_at or r.ended_at
        end = r.ended_at or (start + pd.Timedelta(seconds=r.duration_s) if r.duration_s is not None else start)
        error = f"{r.error_type}: {r.error_message}" if r.error_type else ""
        rows.append({"task": r.task, "attempt": r.attempt, "status": r.status, "start": start, "end": end,
                     "duration_s": r.duration_s, "error": error})
    frame = pd.DataFrame(rows, columns=["task", "attempt", "status", "start", "end", "duration_s", "error"])
    return frame.sort_values(["start", "attempt"], kind="stable").reset_index(drop=True)


def failed_attempts(runs: Iterable[TaskRun], limit: int = 500) -> pd.DataFrame:
    """Failed attempts (``failure`` and ``retry``), newest first, with the
    exception and the ``file:line`` where it was raised."""
    failed = [r for r in runs if r.status in ("failure", "retry")][:limit]
    frame = runs_frame(failed)
    return frame[["started_at", "task", "run_id", "attempt", "status", "error_type", "error_message",
                  "error_location", "host", "duration_s"]]


# -- training --------------------------------------------------------------------------------


def metrics_of_runs(store: Store, run_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Metrics logged by any of the runs, sorted: the run's own, and the
    system metrics (``system.*``), from one series lookup."""
    found = sorted({s.metric for s in store.find_series(run=list(run_ids))}) if run_ids else []
    return [m for m in found if not m.startswith(SYSTEM_PREFIX)], [m for m in found if m.startswith(SYSTEM_PREFIX)]


def run_metrics(store: Store, run_ids: Sequence[str]) -> list[str]:
    """Metrics logged by any of the runs (system metrics excluded), sorted."""
    return metrics_of_runs(store, run_ids)[0]


def system_metrics(store: Store, run_ids: Sequence[str]) -> list[str]:
    return metrics_of_runs(store, run_ids)[1]


def training_curves(store: Store, metric: str, run_ids: Sequence[str],
                    max_points: int | None = None) -> pd.DataFrame:
    """``metric`` of each run, downsampled per run to ``max_points`` (default:
    :func:`points_per_trace`; spikes kept): columns
    ``run``, ``step`` (the step, else the point's index), ``ts``, ``value``. A
    run with several series of the metric (other tags) gets one per series."""
    found = store.find_series(metric, run=list(run_ids)) if run_ids else []
    max_points = max_points or points_per_trace(len(found))
    frames = []
    for series, (ts, values, steps) in zip(found, store.read_arrays_many(found)):
        keep = minmax_indices(ts, values, max_points)
        step = steps[keep].astype("float64")
        step[steps[keep] == NO_STEP] = np.nan
        if np.isnan(step).all():
            step = np.arange(len(keep), dtype="float64")
        extra = {k: v for k, v in series.tags.items() if k not in ("run", "run_name")}
        label = series.tags["run"] + ("" if not extra else " " + ",".join(f"{k}={v}" for k, v in sorted(extra.items())))
        frames.append(pd.DataFrame({"run": label, "step": step, "ts": pd.to_datetime(ts[keep], unit="us", utc=True),
                                    "value": values[keep]}))
    return _concat(frames, {"run": str, "step": float, "ts": "datetime64[us, UTC]", "value": float})


def compare_runs(runs: Sequence[TrainingRun]) -> pd.DataFrame:
    """Params and final metrics of runs side by side: one row per name
    (``param.lr``, ``metric.val.auc``, plus status and duration), one column per run."""
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        column = {"status": run.status, "started": f"{run.started_at:%Y-%m-%d %H:%M}",
                  "duration_s": None if run.duration_s is None else round(run.duration_s, 1)}
        column.update({f"param.{k}": v for k, v in sorted(run.params.items())})
        column.update({f"metric.{k}": v for k, v in sorted(run.metrics.items())})
        table[run.run_id] = column
    frame = pd.DataFrame(table)
    return frame.apply(lambda column: column.map(_cell))


def _cell(value: Any) -> str:
    """A table cell as text (params mix numbers, strings and booleans)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- serving ---------------------------------------------------------------------------------


def serving_stats(store: Store, model: str, route: str | None, start: float, end: float,
                  every: int | None = None) -> pd.DataFrame:
    """Latency p50/p95/p99, throughput (requests/s) and error rate (share of
    ``5xx``) per route and bucket, over all methods and statuses. Columns
    ``route``, ``bucket``, ``requests``, ``throughput``, ``p50``, ``p95``,
    ``p99``, ``errors``, ``error_rate``."""
    every = every or bucket_width(start, end)
    filters: dict[str, Any] = {"service": model}
    if route:
        filters["route"] = route
    by_route: dict[str, list] = defaultdict(list)
    for series in store.find_series(LATENCY_METRIC, **filters):
        ts, values, _ = store.read_arrays(LATENCY_METRIC, series.tags, _dt(start), _dt(end))
        by_route[series.tags.get("route", "")].append((ts, values, series.tags.get("status") == "5xx"))
    frames = []
    for name, parts in sorted(by_route.items()):
        ts = np.concatenate([p[0] for p in parts])
        if not len(ts):
            continue
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(ts, kind="stable")
        stats = aggregate(ts[order], values[order], every * US_PER_S)
        error_ts = np.sort(np.concatenate([p[0] for p in parts if p[2]] or [np.array([], dtype=np.int64)]))
        errors = aggregate(error_ts, np.zeros(len(error_ts)), every * US_PER_S).set_index("bucket")["count"]
        stats["errors"] = stats["bucket"].map(errors).fillna(0).astype(int)
        frames.append(pd.DataFrame({
            "route": name, "bucket": stats["bucket"], "requests": stats["count"],
            "throughput": stats["count"] / every, "p50": stats["p50"], "p95": stats["p95"], "p99": stats["p99"],
            "errors": stats["errors"], "error_rate": stats["errors"] / stats["count"],
        }))
    return _concat(frames, {"route": str, "bucket": "datetime64[us, UTC]", "requests": int, "throughput": float,
                            "p50": float, "p95": float, "p99": float, "errors": int, "error_rate": float})


# -- drift ----------------------------------------------------------------------------------
#
# The same comparison as the alert rules' (tablewatch.alerts): a drift rule
# compares its current window [now - window, now) to, by default, the window of
# the same length before it, with detectors.detect(method="auto") and the
# rules' default effect gate and minimum sample. An alert links here with
# start/end set to its current window, so this page shows the alert's score.


def reference_range(start: float, end: float) -> tuple[float, float]:
    """The reference of ``[start, end)``: the range of the same length before it."""
    return start - (end - start), start


def _detect(reference: DistributionSketch, current: DistributionSketch) -> DriftResult | None:
    """The rules' default test of ``current`` against ``reference``; None when
    either has fewer than the rules' minimum sample."""
    kind = detectors.column_type(reference, current)
    if kind == "empty":
        return None
    counts = [(s.numeric.count if kind == "numeric" else s.categorical.count) for s in (reference, current)]
    if min(counts) < DRIFT_MIN_SAMPLES:
        return None
    return detectors.detect(reference, current, DRIFT_METHOD, None, DRIFT_MIN_EFFECT)


def drift_over_time(store: Store, model: str, features: Sequence[str], start: float, end: float) -> pd.DataFrame:
    """The drift of every sketch window in ``[start, end)`` against the
    reference (:func:`reference_range`), per feature: columns ``feature``,
    ``window``, ``score``, ``threshold``, ``drifted``, ``method``, ``effect``,
    ``count``. Windows with too few values are left out."""
    ref_start, ref_end = reference_range(start, end)
    rows = []
    for feature in features:
        reference = store.read_sketch(model, feature, _dt(ref_start), _dt(ref_end))
        if reference.count == 0:
            continue
        for window, sketch in store.read_sketch_windows(model, feature, _dt(start), _dt(end)):
            result = _detect(reference, sketch)
            if result is None:
                continue
            rows.append({"feature": feature, "window": window, "score": result.score, "threshold": result.threshold,
                         "drifted": result.drifted, "method": result.method, "effect": result.effect,
                         "count": result.current_count})
    columns = ["feature", "window", "score", "threshold", "drifted", "method", "effect", "count"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["window"] = pd.to_datetime(frame["window"], utc=True)
    return frame


@dataclass(frozen=True)
class DistributionComparison:
    """Reference and current distributions of one feature on shared bins:
    ``labels`` (bin centres or categories), and the share of values in each;
    the drift test's result when both have enough values."""

    feature: str
    kind: str
    labels: tuple[Any, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    reference_count: int
    current_count: int
    result: DriftResult | None = None


def compare_distributions(store: Store, model: str, feature: str, start: float, end: float,
                          bins: int = 30) -> DistributionComparison:
    """The current range ``[start, end)`` against its reference
    (:func:`reference_range`), for one feature, as a drift rule compares them."""
    reference = store.read_sketch(model, feature, *map(_dt, reference_range(start, end)))
    current = store.read_sketch(model, feature, _dt(start), _dt(end))
    result = _detect(reference, current)
    kind = detectors.column_type(reference, current)
    if kind == "numeric":
        lows = [s.numeric.min for s in (reference, current) if s.numeric.count]
        highs = [s.numeric.max for s in (reference, current) if s.numeric.count]
        low, high = min(lows), max(highs)
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, bins + 1)
        edges[-1] = np.nextafter(high, math.inf)
        ref_counts = reference.numeric.histogram(edges) if reference.numeric.count else np.zeros(bins)
        cur_counts = current.numeric.histogram(edges) if current.numeric.count else np.zeros(bins)
        centres = (edges[:-1] + edges[1:]) / 2
        return DistributionComparison(feature, kind, tuple(centres.tolist()), _shares(ref_counts), _shares(cur_counts),
                                      reference.count, current.count, result)
    ref_freq = reference.categorical.frequencies()
    cur_freq = current.categorical.frequencies()
    labels = list(dict.fromkeys([*ref_freq, *cur_freq]))
    return DistributionComparison(feature, kind, tuple(labels), tuple(ref_freq.get(k, 0.0) for k in labels),
                                  tuple(cur_freq.get(k, 0.0) for k in labels), reference.count, current.count, result)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = float(np.sum(counts))
    return tuple((np.asarray(counts, dtype=float) / total).tolist()) if total else tuple(0.0 for _ in counts)


# -- overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSummary:
    pipeline: str
    tasks: int
    attempts: int
    failures: int
    retries: int
    p95_duration_s: float | None
    last_run: datetime | None
    sparkline: tuple[float, ...]

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


def pipeline_summaries(store: Store, start: float, end: float) -> list[PipelineSummary]:
    """Key figures per pipeline over the range, with a sparkline of the mean
    task duration per bucket."""
    every = bucket_width(start, end)
    tasks_by_pipeline: dict[str, list[str]] = defaultdict(list)
    for pipeline, task in store.list_tasks():  # one scan, sorted by pipeline then task
        tasks_by_pipeline[pipeline].append(task)
    found = []
    for pipeline, names in tasks_by_pipeline.items():
        runs = store.read_task_runs(pipeline, start=_dt(start), end=_dt(end), limit=MAX_TASK_RUNS)
        _, bands = task_durations(store, pipeline, names, start, end, every=every)
        durations = [r.duration_s for r in runs if r.duration_s is not None]
        spark = bands.groupby("bucket")["mean"].mean().tolist() if len(bands) else []
        found.append(PipelineSummary(
            pipeline=pipeline, tasks=len(names), attempts=len(runs),
            failures=sum(r.status == "failure" for r in runs), retries=sum(r.status == "retry" for r in runs),
            p95_duration_s=float(np.percentile(durations, 95)) if durations else None,
            last_run=max((r.time for r in runs), default=None), sparkline=tuple(spark),
        ))
    return found


@dataclass(frozen=True)
class ModelSummary:
    model: str
    kind: str  # "serving" or "training"
    figure: str
    value: float | None
    sparkline: tuple[float, ...]
    detail: str = ""


def model_summaries(store: Store, start: float, end: float) -> list[ModelSummary]:
    """Serving models (p95 latency, requests, error rate) and training runs
    (their latest run's status) over the range."""
    found = []
    for model in served_models(store):
        stats = serving_stats(store, model, None, start, end)
        if not len(stats):
            found.append(ModelSummary(model, "serving", "p95 latency (s)", None, ()))
            continue
        per_bucket = stats.groupby("bucket").agg(requests=("requests", "sum"), errors=("errors", "sum"),
                                                 p95=("p95", "max"))
        requests = int(per_bucket["requests"].sum())
        errors = int(per_bucket["errors"].sum())
        found.append(ModelSummary(model, "serving", "p95 latency (s)", float(per_bucket["p95"].iloc[-1]),
                                  tuple(per_bucket["p95"].tolist()),
                                  f"{requests} requests, {errors / requests:.1%} errors" if requests else ""))
    runs = store.read_training_runs(start=_dt(start), end=_dt(end), limit=MAX_TASK_RUNS)
    by_name: dict[str, list] = defaultdict(list)
    for run in runs:
        by_name[run.name].append(run)
    for name, group in sorted(by_name.items()):
        latest = group[0]
        metric_name, metric_value = next(iter(sorted(latest.metrics.items())), (None, None))
        history = [r.metrics.get(metric_name) for r in reversed(group)] if metric_name else []
        found.append(ModelSummary(
            name, "training", metric_name or "runs", metric_value if metric_name else float(len(group)),
            tuple(v for v in history if isinstance(v, (int, float))),
            f"{len(group)} runs, latest {latest.status}",
        ))
    return found


def recent_failures(store: Store, start: float, end: float, limit: int = 20) -> pd.DataFrame:
    """The newest failed attempts of every pipeline."""
    runs = store.read_task_runs(start=_dt(start), end=_dt(end), limit=MAX_TASK_RUNS)
    failed = [r for r in runs if r.status == "failure"][:limit]
    frame = runs_frame(failed)
    return frame[["started_at", "pipeline", "task", "run_id", "attempt", "error_type", "error_message", "error_location"]]


@dataclass(frozen=True)
class Freshness:
    """When the newest data of each kind arrived (None: never)."""

    points: datetime | None
    tasks: datetime | None
    training: datetime | None
    sketches: datetime | None

    @property
    def newest(self) -> datetime | None:
        times = [t for t in (self.points, self.tasks, self.training, self.sketches) if t is not None]
        return max(times, default=None)


def freshness(store: Store, max_series: int = 200) -> Freshness:
    """The newest point, task run, training run and sketch window. Points: the
    newest point of the series whose last day with data is the latest day
    (at most ``max_series`` of them are read)."""
    latest_day, candidates = None, []
    for series in store.find_series():
        days = store.series_days(series.metric, series.tags)
        if not days:
            continue
        if latest_day is None or days[-1] > latest_day:
            latest_day, candidates = days[-1], [series]
        elif days[-1] == latest_day:
            candidates.append(series)
    newest_point = None
    for series in candidates[:max_series]:
        ts, _, _ = store.read_arrays(series.metric, series.tags, start=_dt(latest_day * 86400))
        if len(ts) and (newest_point is None or ts[-1] > newest_point):
            newest_point = int(ts[-1])
    newest_task = next(iter(store.read_task_runs(limit=1)), None)
    newest_run = next(iter(store.read_training_runs(limit=1)), None)
    newest_window = None
    for model, feature in store.list_sketched_features()[:max_series]:
        days = store.sketch_days(model, feature)
        if days:
            windows = store.read_sketch_windows(model, feature, _dt(days[-1] * 86400), None)
            if windows and (newest_window is None or windows[-1][0] > newest_window):
                newest_window = windows[-1][0]
    return Freshness(
        points=_dt(newest_point / US_PER_S) if newest_point is not None else None,
        tasks=newest_task.time if newest_task else None,
        training=(newest_run.ended_at or newest_run.started_at) if newest_run else None,
        sketches=newest_window,
    )


# -- store ------------------------------------------------------------------------------------


def store_info(store: Store) -> dict[str, Any]:
    return store.info()


def store_hotspots(store: Store) -> dict[str, Any]:
    return store.hotspots()


def tables_frame(info: dict[str, Any]) -> pd.DataFrame:
    """One row per table family: rows, splits, max versions and retention."""
    rows = []
    for table in info["tables"]:
        for family, policy in table["families"].items():
            rows.append({"table": table["name"], "family": family,
                         "rows": table["rows"] if table["rows_exact"] else f">={table['rows']}",
                         "splits": table["splits"], "max_versions": policy["max_versions"] or "all",
                         "retention": "forever" if policy["max_age_s"] is None else format_duration(policy["max_age_s"])})
    return pd.DataFrame(rows, columns=["table", "family", "rows", "splits", "max_versions", "retention"])


def series_counts(store: Store) -> pd.DataFrame:
    """Series per metric."""
    counts = Counter(s.metric for s in store.find_series())
    return pd.DataFrame(sorted(counts.items()), columns=["metric", "series"])


def _concat(frames: list[pd.DataFrame], columns: dict[str, Any]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


# -- alerts ---------------------------------------------------------------------------------
#
# What the alert engine (tablewatch.alerts) keeps in the store's ``tw_alerts``
# table. The dashboard reads it, and creates and expires silences.

SILENCE_DURATIONS = {"1h": 3600, "4h": 4 * 3600, "24h": 86400, "7d": 7 * 86400}


def alerts_set_up(store: Store) -> bool:
    """Whether an alert engine has written its state to this store."""
    from tablewatch.alerts.state import TABLE

    return TABLE in store.backend.list_tables()


def _alert_state(store: Store):
    from tablewatch.alerts.state import AlertState

    return AlertState(store)


def _time_or_none(seconds: float | None) -> datetime | None:
    return _dt(seconds) if seconds else None


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _alerts_frame(records: Iterable[Any]) -> pd.DataFrame:
    rows = [{
        "state": r.state, "severity": r.severity, "rule": r.rule, "labels": _labels_text(r.labels),
        "summary": r.summary, "value": r.value, "threshold": r.threshold,
        "active_at": _time_or_none(r.active_at), "fired_at": _time_or_none(r.fired_at),
        "resolved_at": _time_or_none(r.resolved_at), "acknowledged_by": r.acknowledged_by,
        "snoozed_until": _time_or_none(r.snoozed_until), "incident_id": r.incident_id, "link": r.dashboard_path,
    } for r in records]
    columns = ["state", "severity", "rule", "labels", "summary", "value", "threshold", "active_at", "fired_at",
               "resolved_at", "acknowledged_by", "snoozed_until", "incident_id", "link"]
    return pd.DataFrame(rows, columns=columns)


def firing_alerts(store: Store) -> pd.DataFrame | None:
    """Alerts firing or pending now, firing first (None when no alert engine
    has written to this store)."""
    if not alerts_set_up(store):
        return None
    records = _alert_state(store).alerts(states=["firing", "pending"])
    records.sort(key=lambda r: (r.state != "firing", -(r.fired_at or r.active_at or 0)))
    return _alerts_frame(records)


def incidents(store: Store, start: float, end: float, limit: int = 200) -> pd.DataFrame:
    """Incidents that became active in ``[start, end)``, newest first, firing and resolved."""
    if not alerts_set_up(store):
        return _alerts_frame([])
    return _alerts_frame(_alert_state(store).incidents(start, end, limit=limit))


def incident_notifications(store: Store, incident_id: str) -> pd.DataFrame:
    """The messages sent (or still to send) about one incident, newest first."""
    records = _alert_state(store).notifications(incident_id) if alerts_set_up(store) else []
    rows = [{"created_at": _dt(n.created_at), "kind": n.kind, "channel": n.channel, "status": n.status,
             "sent_at": _time_or_none(n.sent_at), "attempts": n.attempts, "last_error": n.last_error, "text": n.text}
            for n in sorted(records, key=lambda n: n.created_at, reverse=True)]
    return pd.DataFrame(rows, columns=["created_at", "kind", "channel", "status", "sent_at", "attempts",
                                       "last_error", "text"])


def incident_actions(store: Store, incident_id: str | None = None) -> pd.DataFrame:
    """Button clicks (Retrain, Snooze, Acknowledge): who, when, and what came of it, newest first."""
    records = _alert_state(store).actions(incident_id) if alerts_set_up(store) else []
    rows = [{"clicked_at": _dt(a.clicked_at), "incident_id": a.incident_id, "action": a.action, "user": a.user,
             "result": a.result, "detail": a.detail} for a in records]
    return pd.DataFrame(rows, columns=["clicked_at", "incident_id", "action", "user", "result", "detail"])


def silences(store: Store, include_expired: bool = False) -> pd.DataFrame:
    records = _alert_state(store).silences(include_expired=include_expired) if alerts_set_up(store) else []
    now = datetime.now(timezone.utc).timestamp()
    rows = [{"id": s.id, "matchers": _labels_text(s.matchers), "starts_at": _dt(s.starts_at), "ends_at": _dt(s.ends_at),
             "active": s.starts_at <= now < s.ends_at, "created_by": s.created_by, "comment": s.comment}
            for s in records]
    return pd.DataFrame(rows, columns=["id", "matchers", "starts_at", "ends_at", "active", "created_by", "comment"])


def parse_matchers(text: str) -> dict[str, str]:
    """``rule=etl-slow, pipeline=nightly-etl`` as a mapping; errors name ``matchers``."""
    matchers: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"matchers[{i}]", part, "must be label=value")
        matchers[name.strip()] = value.strip()
    if not matchers:
        raise ValidationError("matchers", text, "must name at least one label=value (e.g. rule=etl-slow)")
    return matchers


def add_silence(store: Store, matchers: str, duration: str, created_by: str = "", comment: str = "",
                now: float | None = None) -> Any:
    """Silence the alerts matching ``matchers`` (text, see :func:`parse_matchers`)
    for ``duration`` (a key of :data:`SILENCE_DURATIONS`); the new Silence."""
    if duration not in SILENCE_DURATIONS:
        raise ValidationError("duration", duration, f"must be one of {', '.join(SILENCE_DURATIONS)}")
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    return _alert_state(store).add_silence(parse_matchers(matchers), now + SILENCE_DURATIONS[duration],
                                           created_by.strip(), comment.strip(), starts_at=now)


def expire_silence(store: Store, silence_id: str) -> None:
    _alert_state(store).expire_silence(silence_id)
