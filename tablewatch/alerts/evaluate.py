"""Evaluate one rule against the store: ``evaluate(rule, store, now)``.

A rule evaluates to :class:`Observation`\\ s, one per alert candidate (a
series, a task, a model, a feature, an event). The engine keeps their state
(pending, firing, resolved); this module only reads the store and compares.
Missing data raises nothing: it gives no observation, or an inactive one.

Windows are half-open, ``[now - window, now)``, in epoch seconds (UTC).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import numpy as np

from tablewatch.alerts import detectors
from tablewatch.alerts.rules import (
    PREDICTION,
    AbsenceRule,
    DaysAgo,
    DriftRule,
    LastRuns,
    NewDataRule,
    PinnedRange,
    PreviousWindows,
    RegressionRule,
    RuleBase,
    TaskEventRule,
    ThresholdRule,
    TrainingRunReference,
    WindowBefore,
    format_duration,
)
from tablewatch.errors import ValidationError
from tablewatch.store import Series, Store, TaskRun, TrainingRun
from tablewatch.store.keys import DAY_S

#: Task runs are filed by start time; an event is looked for among runs that
#: started up to this long before its lookback (a run longer than this that
#: ends is not reported).
LONGEST_RUN_S = 2 * DAY_S
_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}
_LOCATION_RE = re.compile(r"([\w./\\-]+\.py:\d+)")


@dataclass(frozen=True)
class Observation:
    """One alert candidate of one evaluation (see INTERFACES.md, section C).

    ``labels``: the rule's labels and the identifying tags; ``active``: the
    rule's condition holds at ``now``; ``value``, ``baseline``, ``threshold``:
    the numbers compared; ``summary``: one human line; ``details``: JSON-able
    (event kinds carry a stable ``event_id``); ``dashboard_path``: a path and
    query on the dashboard (section B)."""

    labels: dict[str, str]
    active: bool
    value: float | None
    baseline: float | None
    threshold: float | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    dashboard_path: str = "/"


def evaluate(rule: RuleBase, store: Store, now: float) -> list[Observation]:
    """The observations of ``rule`` at ``now`` (epoch seconds, UTC)."""
    evaluator = _EVALUATORS.get(type(rule))
    if evaluator is None:
        raise TypeError(f"no evaluator for rule kind {rule.kind!r}")
    return evaluator(rule, store, float(now))


# -- shared helpers -------------------------------------------------------------------------


def _labels(rule: RuleBase, *extra: Mapping[str, Any]) -> dict[str, str]:
    out = {k: str(v) for k, v in rule.labels.items()}
    for part in extra:
        out.update({k: str(v) for k, v in part.items() if v is not None})
    return out


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path(page: str, start: float | None = None, end: float | None = None, **query: Any) -> str:
    params = {k: str(v) for k, v in query.items() if v is not None and v is not True and not isinstance(v, list)}
    if start is not None:
        params["start"] = _iso(start)
    if end is not None:
        params["end"] = _iso(end)
    return page + ("?" + urlencode(params, safe=":/,") if params else "")


def _page_of_metric(metric: str, tags: Mapping[str, Any]) -> str:
    if metric.startswith("task.") or "pipeline" in tags:
        return "/tasks"
    if metric.startswith("serve.") or "route" in tags:
        return "/serving"
    if metric.startswith("train.") or "run" in tags:
        return "/training"
    return "/"


def _metric_path(metric: str, tags: Mapping[str, Any], start: float, end: float) -> str:
    page = _page_of_metric(metric, tags)
    keys = {"/tasks": ("pipeline", "task"), "/serving": ("model", "route"), "/training": ("run", "model")}.get(page, ())
    return _path(page, start, end, **{k: tags.get(k) for k in keys})


def _exact_tags(filters: Mapping[str, Any]) -> dict[str, str]:
    """The filters that name one value (they identify an aggregated alert)."""
    return {k: v for k, v in filters.items() if isinstance(v, str)}


def _matches(value: str | None, wanted: Any) -> bool:
    """A tag filter of a rule: None matches anything, True any present value,
    a list any of its values, a string itself."""
    if wanted is None:
        return True
    if wanted is True:
        return value is not None
    if isinstance(wanted, list):
        return value in wanted
    return value == wanted


def aggregate_values(values: np.ndarray, how: str, window_s: float) -> float:
    """``how`` (mean, min, max, count, sum, rate, p50/p90/p95/p99) of the
    finite ``values``; ``rate`` is the sum per second of ``window_s``. NaN
    when there is nothing to aggregate (count and sum: 0)."""
    values = values[np.isfinite(values)]
    if how == "count":
        return float(len(values))
    if how == "sum":
        return float(values.sum())
    if how == "rate":
        return float(values.sum()) / window_s
    if not len(values):
        return math.nan
    if how == "mean":
        return float(values.mean())
    if how == "min":
        return float(values.min())
    if how == "max":
        return float(values.max())
    return float(np.quantile(values, _QUANTILES[how]))


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def _unit(metric: str | None) -> str:
    if metric and metric.endswith("_s"):
        return "s"
    return ""


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


Points = dict[Series, tuple[np.ndarray, np.ndarray]]


def _read_points(store: Store, series: Iterable[Series], start: float, end: float) -> Points:
    """(ts in seconds, values) of each series in ``[start, end)``: one read
    per series for the whole span an evaluation needs, sliced per window."""
    out = {}
    for s in series:
        ts, values, _ = store.read_arrays(s.metric, s.tags, start, end)
        out[s] = (ts / 1e6, values)
    return out


def _groups(series: Sequence[Series], per_series: bool, share_tags: Mapping[str, Any] | None,
            filters: Mapping[str, Any]) -> dict[tuple, tuple[dict[str, str], list[Series]]]:
    """Series grouped into alert candidates: one per series, or all in one
    (``per_series`` false); with ``share_tags``, per series of the tags
    other than the shared ones (every route's error rate)."""
    groups: dict[tuple, tuple[dict[str, str], list[Series]]] = {}
    for s in series:
        if share_tags is not None:
            tags = {k: v for k, v in s.tags.items() if k not in share_tags} if per_series else _exact_tags(filters)
        else:
            tags = dict(s.tags) if per_series else _exact_tags(filters)
        key = tuple(sorted(tags.items()))
        groups.setdefault(key, (tags, []))[1].append(s)
    return groups


def _window_value(members: list[Series], how: str, share_tags: Mapping[str, Any] | None,
                  start: float, end: float, points: Points) -> tuple[float, int]:
    """(aggregate, samples) of a group's points in ``[start, end)``; ``share``:
    points of series matching ``share_tags`` over all points."""
    parts, part_of_share = [], []
    for s in members:
        ts, values = points[s]
        lo, hi = np.searchsorted(ts, [start, end])
        chunk = values[lo:hi]
        chunk = chunk[np.isfinite(chunk)]
        parts.append(chunk)
        if share_tags is not None:
            part_of_share.append(all(_matches(s.tags.get(k), w) for k, w in share_tags.items()))
    samples = sum(len(p) for p in parts)
    if how == "share":
        if not samples:
            return math.nan, 0
        return sum(len(p) for p, hit in zip(parts, part_of_share) if hit) / samples, samples
    values = np.concatenate(parts) if parts else np.array([], dtype=np.float64)
    return aggregate_values(values, how, end - start), samples


# -- threshold --------------------------------------------------------------------------------


def _evaluate_threshold(rule: ThresholdRule, store: Store, now: float) -> list[Observation]:
    series = store.find_series(rule.metric, rule.tags)
    start = now - rule.window
    points = _read_points(store, series, start, now)
    out = []
    unit = "" if rule.aggregate in ("count", "share", "rate") else _unit(rule.metric)
    for tags, members in _groups(series, rule.per_series, rule.share_tags, rule.tags).values():
        value, samples = _window_value(members, rule.aggregate, rule.share_tags, start, now, points)
        # no points is a count (sum, rate) of 0: "fewer than 50 requests an hour" holds on silence
        enough = math.isfinite(value) and (samples >= rule.min_samples or rule.aggregate in ("count", "sum", "rate"))
        active = enough and _OPS[rule.op](value, rule.value)
        what = _describe_tags(tags)
        shown = f"{value:.2%}" if rule.aggregate == "share" and enough else _fmt(value if enough else None, unit)
        bound = f"{rule.value:.2%}" if rule.aggregate == "share" else _fmt(rule.value, unit)
        summary = (f"{rule.metric}{what} {rule.aggregate} over {format_duration(rule.window)}: {shown} "
                   f"({rule.op} {bound})" if enough else
                   f"{rule.metric}{what}: {samples} samples over {format_duration(rule.window)}, fewer than {rule.min_samples}")
        out.append(Observation(
            labels=_labels(rule, tags), active=active, value=_num(value) if enough else None, baseline=None,
            threshold=rule.value, summary=summary,
            details={"metric": rule.metric, "aggregate": rule.aggregate, "samples": samples,
                     "window_s": rule.window, "series": len(members)},
            dashboard_path=_metric_path(rule.metric, tags, start, now),
        ))
    return out


def _describe_tags(tags: Mapping[str, str]) -> str:
    return " {" + ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) + "}" if tags else ""


# -- regression --------------------------------------------------------------------------------


def _baseline_windows(rule: RegressionRule, now: float) -> list[tuple[float, float]]:
    w = rule.window
    if isinstance(rule.baseline, PreviousWindows):
        return [(now - (k + 1) * w, now - k * w) for k in range(1, rule.baseline.windows + 1)]
    if isinstance(rule.baseline, DaysAgo):
        return [(now - d * DAY_S - w, now - d * DAY_S) for d in rule.baseline.day_list]
    return []


@dataclass(frozen=True)
class _Comparison:
    current: float | None
    baseline: float | None
    change: float | None
    active: bool
    reason: str
    spread: float | None = None


def compare(rule: RegressionRule, current: float, current_samples: int,
            baseline_values: Sequence[float], baseline_samples: int) -> _Comparison:
    """Compare a current value with the baseline: ``baseline_values`` are the
    baseline's per-window aggregates (or per-run values); pooled into one
    value by the caller when not robust (one item)."""
    if current_samples < rule.min_samples or not math.isfinite(current):
        return _Comparison(_num(current), None, None, False, f"{current_samples} samples now, fewer than {rule.min_samples}")
    finite = [v for v in baseline_values if math.isfinite(v)]
    if baseline_samples < rule.min_samples or not finite:
        return _Comparison(current, None, None, False,
                           f"{baseline_samples} samples in the baseline, fewer than {rule.min_samples}")
    spread = None
    if rule.robust:
        base = float(np.median(finite))
        spread = 1.4826 * float(np.median(np.abs(np.asarray(finite) - base)))
    else:
        base = float(np.mean(finite))
    diff = current - base
    if rule.change == "relative":
        change = diff / abs(base) if base != 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    else:
        change = diff
    signed = {"increase": change, "decrease": -change, "both": abs(change)}[rule.direction]
    active = signed >= rule.threshold
    reason = ""
    if active and rule.robust and spread is not None and len(finite) >= 3 and spread > 0 and abs(diff) <= rule.mad_k * spread:
        active = False
        reason = f"within {rule.mad_k:g} MADs of the baseline's median"
    return _Comparison(current, base, change, active, reason, spread)


def _change_text(rule: RegressionRule, c: _Comparison, unit: str) -> str:
    if c.change is None:
        return c.reason
    if rule.change == "relative":
        ratio = "new" if math.isinf(c.change) else f"{c.change:+.0%}"
        text = f"{_fmt(c.current, unit)} vs {_fmt(c.baseline, unit)} ({ratio})"
    else:
        text = f"{_fmt(c.current, unit)} vs {_fmt(c.baseline, unit)} ({c.change:+.3g})"
    return text + (f"; {c.reason}" if c.reason else "")


def _comparison_details(rule: RegressionRule, c: _Comparison, **extra: Any) -> dict[str, Any]:
    return {"change": _num(c.change) if c.change is not None else None, "change_kind": rule.change,
            "direction": rule.direction, "robust": rule.robust,
            "spread": _num(c.spread) if c.spread is not None else None, "reason": c.reason or None,
            "baseline_kind": rule.baseline.kind, **extra}


def _regression_points(rule: RegressionRule, store: Store, now: float) -> list[Observation]:
    assert rule.metric is not None
    series = store.find_series(rule.metric, rule.tags)
    windows = _baseline_windows(rule, now)
    span_start = min([now - rule.window] + [s for s, _ in windows])
    points = _read_points(store, series, span_start, now)
    unit = "" if rule.aggregate in ("count", "share", "rate") else _unit(rule.metric)
    out = []
    for tags, members in _groups(series, rule.per_series, rule.share_tags, rule.tags).values():
        current, current_n = _window_value(members, rule.aggregate, rule.share_tags, now - rule.window, now, points)
        if rule.robust:
            per_window = [_window_value(members, rule.aggregate, rule.share_tags, s, e, points) for s, e in windows]
            base_values, base_n = [v for v, _ in per_window], sum(n for _, n in per_window)
        else:
            base_values, base_n = _pooled(members, rule, windows, points)
        c = compare(rule, current, current_n, base_values, base_n)
        what = f"{rule.metric}{_describe_tags(tags)} {rule.aggregate}"
        out.append(Observation(
            labels=_labels(rule, tags), active=c.active, value=_num(c.current) if c.current is not None else None,
            baseline=c.baseline, threshold=rule.threshold,
            summary=f"{what} over {format_duration(rule.window)}: {_change_text(rule, c, unit)}",
            details=_comparison_details(rule, c, metric=rule.metric, aggregate=rule.aggregate,
                                        samples=current_n, baseline_samples=base_n),
            dashboard_path=_metric_path(rule.metric, tags, span_start, now),
        ))
    return out


def _pooled(members: list[Series], rule: RegressionRule, windows: list[tuple[float, float]],
            points: Points) -> tuple[list[float], int]:
    """The aggregate over every baseline window's points together (counts,
    sums and rates: the mean per window)."""
    if rule.aggregate in ("count", "sum", "rate"):
        per_window = [_window_value(members, rule.aggregate, rule.share_tags, s, e, points) for s, e in windows]
        return [float(np.mean([v for v, _ in per_window]))], sum(n for _, n in per_window)
    if rule.aggregate == "share":
        hits = total = 0.0
        for s, e in windows:
            value, n = _window_value(members, "share", rule.share_tags, s, e, points)
            if n:
                hits += value * n
                total += n
        return [hits / total if total else math.nan], int(total)
    parts = []
    for s in members:
        ts, values = points[s]
        for start, end in windows:
            lo, hi = np.searchsorted(ts, [start, end])
            parts.append(values[lo:hi])
    values = np.concatenate(parts) if parts else np.array([], dtype=np.float64)
    values = values[np.isfinite(values)]
    return [aggregate_values(values, rule.aggregate, rule.window)], len(values)


#: The runs each task measure counts: durations of successful runs, retries
#: among finished attempts, failures among final attempts, every run.
_COUNTED = {"duration_s": ("success",), "queue_wait_s": ("success",), "retry_rate": ("success", "failure", "retry"),
            "failure_rate": ("success", "failure"), "runs": None}


def _counted(runs: Iterable[TaskRun], measure: str) -> list[TaskRun]:
    statuses = _COUNTED[measure]
    return list(runs) if statuses is None else [r for r in runs if r.status in statuses]


def _durations(runs: Iterable[TaskRun], measure: str) -> list[float]:
    found = (r.duration_s if measure == "duration_s" else r.queue_wait_s for r in runs)
    return [v for v in found if v is not None]


def _task_value(runs: Iterable[TaskRun], rule: RegressionRule) -> tuple[float, int]:
    """(measure, samples) of task runs: durations by ``aggregate``, a rate, or a count."""
    counted = _counted(runs, rule.measure)
    if rule.measure in ("duration_s", "queue_wait_s"):
        values = np.array(_durations(counted, rule.measure), dtype=np.float64)
        return aggregate_values(values, rule.aggregate, rule.window), len(values)
    if rule.measure == "runs":
        return float(len(counted)), len(counted)
    bad = "retry" if rule.measure == "retry_rate" else "failure"
    return (sum(r.status == bad for r in counted) / len(counted) if counted else math.nan), len(counted)


def _task_baseline(rule: RegressionRule, runs: list[tuple[TaskRun, float]], start: float,
                   windows: list[tuple[float, float]]) -> tuple[list[float], int]:
    """The baseline's values (one pooled value, or per window / per run when
    robust) and its sample count, from (run, start time) pairs."""
    if isinstance(rule.baseline, LastRuns):
        earlier = [r for r, ts in sorted(runs, key=lambda pair: pair[1], reverse=True) if ts < start]
        last = _counted(earlier, rule.measure)[: rule.baseline.runs]
        if rule.robust and rule.measure in ("duration_s", "queue_wait_s"):
            values = _durations(last, rule.measure)
            return values, len(values)
        value, n = _task_value(last, rule)
        return [value], n
    if rule.robust:
        per_window = [_task_value([r for r, ts in runs if s <= ts < e], rule) for s, e in windows]
        return [v for v, _ in per_window], sum(count for _, count in per_window)
    value, n = _task_value([r for r, ts in runs if any(s <= ts < e for s, e in windows)], rule)
    if rule.measure == "runs":
        value /= max(1, len(windows))  # runs per window
    return [value], n


def _tasks_matching(store: Store, pipeline: Any, task: Any) -> list[tuple[str, str]]:
    pipelines = [pipeline] if isinstance(pipeline, str) else None
    if pipelines is None:
        found = store.list_tasks()
    else:
        found = store.list_tasks(pipelines[0])
    return [(p, t) for p, t in found if _matches(p, pipeline) and _matches(t, task)]


def _regression_task_runs(rule: RegressionRule, store: Store, now: float) -> list[Observation]:
    windows = _baseline_windows(rule, now)
    start = now - rule.window
    span_start = min([start] + [s for s, _ in windows])
    tasks = _tasks_matching(store, rule.pipeline, rule.task)
    groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for p, t in tasks:
        groups.setdefault((p, t) if rule.per_series else (p,) if isinstance(rule.pipeline, str) else (), []).append((p, t))
    out = []
    unit = "s" if rule.measure in ("duration_s", "queue_wait_s") else ""
    for key, members in groups.items():
        runs: list[TaskRun] = []
        for p, t in members:
            if isinstance(rule.baseline, LastRuns):
                runs += store.read_task_runs(p, t, end=now)  # newest first, all of them: the last N come from here
            else:
                runs += store.read_task_runs(p, t, start=span_start, end=now)
        timed = [(r, r.time.timestamp()) for r in runs]
        current_runs = [r for r, ts in timed if start <= ts < now]
        current, current_n = _task_value(current_runs, rule)
        base_values, base_n = _task_baseline(rule, timed, start, windows)
        c = compare(rule, current, current_n, base_values, base_n)
        labels = dict(zip(("pipeline", "task"), key))
        name = "/".join(key) if key else "tasks"
        what = f"{rule.aggregate} duration" if rule.measure == "duration_s" else rule.measure.replace("_", " ")
        if rule.measure == "queue_wait_s":
            what = f"{rule.aggregate} queue wait"
        text = _change_text(rule, c, unit)
        if rule.measure in ("retry_rate", "failure_rate") and c.change is not None:
            text = f"{c.current:.1%} vs {c.baseline:.1%} ({c.change:+.2g})" + (f"; {c.reason}" if c.reason else "")
        failures = [r for r in current_runs if r.status == "failure" and r.error_type]
        details = _comparison_details(rule, c, measure=rule.measure, aggregate=rule.aggregate, samples=current_n,
                                      baseline_samples=base_n, tasks=[f"{p}/{t}" for p, t in members])
        if failures:
            newest = max(failures, key=lambda r: r.time)
            details.update(error_type=newest.error_type, error_message=newest.error_message, file_line=newest.error_location)
        out.append(Observation(
            labels=_labels(rule, labels), active=c.active, value=_num(c.current) if c.current is not None else None,
            baseline=c.baseline, threshold=rule.threshold,
            summary=f"{name} {what} over {format_duration(rule.window)}: {text}",
            details=details,
            dashboard_path=_path("/tasks", span_start, now, pipeline=labels.get("pipeline"), task=labels.get("task")),
        ))
    return out


def _regression_training_runs(rule: RegressionRule, store: Store, now: float) -> list[Observation]:
    assert rule.training_run is not None and rule.metric is not None and isinstance(rule.baseline, LastRuns)
    runs = [r for r in store.read_training_runs(rule.training_run, end=now)
            if r.status == "success" and rule.metric in r.metrics]
    if not runs:
        return []
    newest, earlier = runs[0], runs[1: 1 + rule.baseline.runs]
    values = [r.metrics[rule.metric] for r in earlier]
    if not rule.robust:
        values = [float(np.mean(values))] if values else []
    # min_samples counts runs here: the newest is one sample
    c = compare(rule, newest.metrics[rule.metric], rule.min_samples, values, len(earlier))
    summary = (f"training run {rule.training_run} ({newest.run_id}) final {rule.metric}: "
               f"{_change_text(rule, c, '')} over the previous {len(earlier)} runs")
    return [Observation(
        labels=_labels(rule, {"training_run": rule.training_run}), active=c.active, value=c.current,
        baseline=c.baseline, threshold=rule.threshold, summary=summary,
        details=_comparison_details(rule, c, metric=rule.metric, run_id=newest.run_id,
                                    baseline_runs=[r.run_id for r in earlier], metrics=dict(newest.metrics)),
        dashboard_path=_path("/training", run=",".join([newest.run_id] + [r.run_id for r in earlier])),
    )]


def _evaluate_regression(rule: RegressionRule, store: Store, now: float) -> list[Observation]:
    if rule.source == "task_runs":
        return _regression_task_runs(rule, store, now)
    if rule.source == "training_runs":
        return _regression_training_runs(rule, store, now)
    return _regression_points(rule, store, now)


# -- drift ------------------------------------------------------------------------------------


def _newest_finished(store: Store, name: str, run_id: str | None, now: float) -> TrainingRun | None:
    for run in store.read_training_runs(name, end=now):
        if run_id is not None:
            if run.run_id == run_id:
                return run
        elif run.ended_at is not None and run.status == "success":
            return run
    return None


def reference_window(rule: DriftRule, store: Store, now: float) -> tuple[float, float, str] | None:
    """(start, end, description) of a drift rule's reference, or None when
    there is none (no finished training run yet)."""
    ref = rule.reference
    if isinstance(ref, PinnedRange):
        return ref.start.timestamp(), ref.end.timestamp(), f"{_iso(ref.start.timestamp())}..{_iso(ref.end.timestamp())}"
    if isinstance(ref, WindowBefore):
        end = now - (ref.offset if ref.offset is not None else rule.window)
        return end - ref.window, end, f"the {format_duration(ref.window)} before"
    assert isinstance(ref, TrainingRunReference)
    run = _newest_finished(store, ref.training_run or rule.model, ref.run_id, now)
    if run is None:
        return None
    end = run.ended_at.timestamp() if run.ended_at is not None else now
    return run.started_at.timestamp(), end, f"training run {run.run_id}"


def _evaluate_drift(rule: DriftRule, store: Store, now: float) -> list[Observation]:
    reference = reference_window(rule, store, now)
    if reference is None:
        return []
    ref_start, ref_end, ref_text = reference
    start = now - rule.window
    if rule.features == "all":
        features = [f for _, f in store.list_sketched_features(rule.model)]
    else:
        features = list(rule.features)
    results: dict[str, detectors.DriftResult] = {}
    skipped: dict[str, str] = {}
    for feature in features:
        ref = store.read_sketch(rule.model, feature, ref_start, ref_end)
        cur = store.read_sketch(rule.model, feature, start, now)
        kind = detectors.column_type(ref, cur)
        counts = [(s.numeric.count if kind == "numeric" else s.categorical.count) for s in (ref, cur)]
        if kind == "empty" or min(counts) < rule.min_samples:
            skipped[feature] = f"{counts[0]} reference and {counts[1]} current values, fewer than {rule.min_samples}"
            continue
        method = rule.method
        threshold = rule.threshold
        if method == "auto":
            test, _ = detectors.choose_test(ref, cur)
            threshold = rule.thresholds.get(test.name)
        elif threshold is None:
            threshold = rule.thresholds.get(method)
        try:
            results[feature] = detectors.detect(ref, cur, method, threshold, rule.min_effect)
        except ValidationError as e:  # a method that does not apply to this feature's type
            skipped[feature] = str(e)
    feature_details = {name: {"method": r.method, "score": _num(r.score), "threshold": r.threshold,
                              "drifted": r.drifted, "effect": _num(r.effect), "p_value": _num(r.p_value) if r.p_value is not None else None,
                              "statistic_drifted": r.statistic_drifted, "reference_count": r.reference_count,
                              "current_count": r.current_count}
                       for name, r in results.items()}
    common = {"reference": {"start": _iso(ref_start), "end": _iso(ref_end), "description": ref_text},
              "current": {"start": _iso(start), "end": _iso(now)}, "skipped": skipped}
    if rule.drift_share is not None:
        if not results:
            return []
        dataset = detectors.dataset_drift(results.values(), rule.drift_share)
        drifted = sorted(name for name, r in results.items() if r.drifted)
        summary = (f"{rule.model}: {dataset.drifted_features} of {dataset.features} features drifted "
                   f"({dataset.share:.0%}, bound {rule.drift_share:.0%}) vs {ref_text}"
                   + (f": {', '.join(drifted[:5])}{'…' if len(drifted) > 5 else ''}" if drifted else ""))
        return [Observation(
            labels=_labels(rule, {"model": rule.model}), active=dataset.drifted, value=dataset.share, baseline=None,
            threshold=rule.drift_share, summary=summary,
            details={"features": feature_details, "drifted_features": drifted, **common},
            dashboard_path=_path("/drift", start, now, model=rule.model),
        )]
    out = []
    for name, r in results.items():
        verdict = "drifted" if r.drifted else ("changed, effect below the gate" if r.statistic_drifted else "no drift")
        feature = "prediction" if name == PREDICTION else name
        out.append(Observation(
            labels=_labels(rule, {"model": rule.model, "feature": name}), active=r.drifted, value=_num(r.score),
            baseline=None, threshold=r.threshold,
            summary=(f"{rule.model} {feature}: {r.method} {_fmt(r.score)} (threshold {_fmt(r.threshold)}), "
                     f"effect {_fmt(r.effect)} vs {ref_text}: {verdict}"),
            details={"features": {name: feature_details[name]}, **common},
            dashboard_path=_path("/drift", start, now, model=rule.model, feature=name),
        ))
    for name, reason in skipped.items():
        out.append(Observation(
            labels=_labels(rule, {"model": rule.model, "feature": name}), active=False, value=None, baseline=None,
            threshold=None, summary=f"{rule.model} {name}: not compared ({reason})",
            details={"features": {}, **common},
            dashboard_path=_path("/drift", start, now, model=rule.model, feature=name),
        ))
    return out


# -- absence ------------------------------------------------------------------------------------


def _last_point(store: Store, series: Series, since: float, now: float) -> float | None:
    """Time (seconds) of the newest point of ``series`` in ``[since, now)``,
    reading one day at a time from the newest day that has points."""
    days = [d for d in store.series_days(series.metric, series.tags) if since // DAY_S <= d <= now // DAY_S]
    for day in sorted(days, reverse=True):
        ts, _, _ = store.read_arrays(series.metric, series.tags, max(since, day * DAY_S), min(now, (day + 1) * DAY_S))
        if len(ts):
            return float(ts[-1]) / 1e6
    return None


def _absence_observation(rule: AbsenceRule, now: float, last: float, labels: dict[str, str], what: str,
                         path: str) -> Observation:
    silent = now - last
    active = silent > rule.absent_for
    return Observation(
        labels=_labels(rule, labels), active=active, value=silent, baseline=None, threshold=rule.absent_for,
        summary=(f"{what}: nothing since {_iso(last)} ({format_duration(round(silent))} ago, "
                 f"{'over' if active else 'within'} {format_duration(rule.absent_for)})"),
        details={"last_seen": _iso(last), "silent_s": silent}, dashboard_path=path,
    )


def _evaluate_absence(rule: AbsenceRule, store: Store, now: float) -> list[Observation]:
    since = now - rule.lookback
    out = []
    if rule.metric is not None:
        for series in store.find_series(rule.metric, rule.tags):
            last = _last_point(store, series, since, now)
            if last is not None:
                out.append(_absence_observation(rule, now, last, dict(series.tags), f"{series.metric}{_describe_tags(series.tags)}",
                                                _metric_path(series.metric, series.tags, since, now)))
    elif rule.pipeline is not None:
        tasks = _tasks_matching(store, rule.pipeline, rule.task)
        groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for p, t in tasks:
            groups.setdefault((p, t) if rule.task is not None else (p,), []).append((p, t))
        for key, members in groups.items():
            times = [(r.ended_at or r.time).timestamp() for p, t in members
                     for r in store.read_task_runs(p, t, start=since - LONGEST_RUN_S, end=now)]
            times = [t for t in times if t <= now]
            if times and max(times) >= since:
                labels = dict(zip(("pipeline", "task"), key))
                out.append(_absence_observation(rule, now, max(times), labels, "/".join(key),
                                                _path("/tasks", since, now, **labels)))
    else:
        assert rule.training_run is not None
        runs = store.read_training_runs(rule.training_run, start=since - LONGEST_RUN_S, end=now)
        if runs:
            newest = runs[0]
            last = (newest.ended_at or newest.started_at).timestamp()
            if newest.status == "running":  # a running job reports through its points
                for series in store.find_series(None, run=newest.run_id):
                    seen = _last_point(store, series, max(since, newest.started_at.timestamp()), now)
                    if seen is not None:
                        last = max(last, seen)
            if last >= since:
                out.append(_absence_observation(
                    rule, now, last, {"training_run": rule.training_run},
                    f"training run {rule.training_run} ({newest.run_id}, {newest.status})",
                    _path("/training", since, now, run=newest.run_id)))
    return out


# -- new data -------------------------------------------------------------------------------------


def _evaluate_new_data(rule: NewDataRule, store: Store, now: float) -> list[Observation]:
    runs = store.read_training_runs(rule.training_run, start=now - rule.lookback, end=now)
    if not runs:
        return []
    newest = runs[0]
    since = (newest.ended_at or newest.started_at).timestamp()
    total = 0.0
    series = store.find_series(rule.metric, rule.tags)
    for s in series:
        _, values, _ = store.read_arrays(s.metric, s.tags, since, now)
        total += float(np.nansum(values))
    active = total >= rule.at_least
    model = rule.model or rule.training_run
    return [Observation(
        labels=_labels(rule, {"model": model, "training_run": rule.training_run}), active=active, value=total,
        baseline=None, threshold=rule.at_least,
        summary=(f"{model}: {total:,.0f} new {rule.metric} since training run {newest.run_id} "
                 f"{'ended' if newest.ended_at else 'started'} {_iso(since)} (retrain at {rule.at_least:,.0f})"),
        details={"event_id": f"new_data:{rule.name}:{rule.training_run}:{newest.run_id}", "since": _iso(since),
                 "run_id": newest.run_id, "run_status": newest.status, "metric": rule.metric, "series": len(series)},
        dashboard_path=_path("/training", since, now, run=newest.run_id, model=model),
    )]


# -- task and training run events ------------------------------------------------------------------


def split_error(error: str | None) -> tuple[str | None, str | None, str | None]:
    """(type, message, file:line) from a training run's ``"Type: message"`` error."""
    if not error:
        return None, None, None
    location = None
    found = _LOCATION_RE.findall(error)
    if found:
        location = found[-1]
    head, sep, rest = error.partition(": ")
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*", head):
        return head, rest, location
    return None, error, location


def _evaluate_task_event(rule: TaskEventRule, store: Store, now: float) -> list[Observation]:
    since = now - rule.lookback
    out = []
    if rule.pipeline is not None:
        for p, t in _tasks_matching(store, rule.pipeline, rule.task):
            for run in store.read_task_runs(p, t, start=since - LONGEST_RUN_S, end=now):
                when = (run.ended_at or run.time).timestamp()
                if run.status not in rule.on or not since <= when < now:
                    continue
                out.append(_task_run_event(rule, run, when))
    else:
        runs = []
        names = [rule.training_run] if isinstance(rule.training_run, str) else None
        for name in names or [None]:
            runs += store.read_training_runs(name, start=since - LONGEST_RUN_S, end=now)
        for run in runs:
            status = "failure" if run.status in ("failure", "killed") else run.status
            if run.ended_at is None or status not in rule.on or not _matches(run.name, rule.training_run):
                continue
            when = run.ended_at.timestamp()
            if since <= when < now:
                out.append(_training_run_event(rule, run, status, when))
    out.sort(key=lambda o: o.details["ended_at"])
    return out


def _task_run_event(rule: TaskEventRule, run: TaskRun, when: float) -> Observation:
    name = f"{run.pipeline}/{run.task}"
    took = f" after {_fmt(run.duration_s, 's')}" if run.duration_s is not None else ""
    if run.status == "success":
        summary = f"{name} succeeded{took}"
    else:
        verb = "failed" if run.status == "failure" else f"failed (attempt {run.attempt}, will retry)"
        error = f": {run.error_type or 'error'}: {run.error_message or ''}".rstrip(": ") if (run.error_type or run.error_message) else ""
        summary = f"{name} {verb}{took}{error}" + (f" at {run.error_location}" if run.error_location else "")
    return Observation(
        labels=_labels(rule, {"pipeline": run.pipeline, "task": run.task}), active=True, value=run.duration_s,
        baseline=None, threshold=None, summary=summary,
        details={"event_id": f"task:{run.pipeline}:{run.task}:{run.run_id}:{run.attempt}", "status": run.status,
                 "run_id": run.run_id, "attempt": run.attempt, "duration_s": run.duration_s, "host": run.host,
                 "error_type": run.error_type, "error_message": run.error_message, "file_line": run.error_location,
                 "ended_at": _iso(when), "metrics": {}},
        dashboard_path=_path("/tasks", run.time.timestamp(), when + 1, pipeline=run.pipeline, task=run.task),
    )


def _training_run_event(rule: TaskEventRule, run: TrainingRun, status: str, when: float) -> Observation:
    error_type, message, location = split_error(run.error)
    location = run.tags.get("error_location") or location
    took = f" after {format_duration(round(run.duration_s or 0))}"
    if status == "success":
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:6])
        summary = f"training run {run.name} ({run.run_id}) finished{took}" + (f": {metrics}" if metrics else "")
    else:
        summary = (f"training run {run.name} ({run.run_id}) {'was killed' if run.status == 'killed' else 'failed'}{took}"
                   + (f": {run.error}" if run.error else "") + (f" at {location}" if location and location not in (run.error or "") else ""))
    return Observation(
        labels=_labels(rule, {"training_run": run.name}), active=True, value=run.duration_s, baseline=None,
        threshold=None, summary=summary,
        details={"event_id": f"training:{run.name}:{run.run_id}:{status}", "status": run.status, "run_id": run.run_id,
                 "duration_s": run.duration_s, "metrics": dict(run.metrics), "error_type": error_type,
                 "error_message": message, "file_line": location, "ended_at": _iso(when), "host": run.host},
        dashboard_path=_path("/training", run.started_at.timestamp(), when + 1, run=run.run_id),
    )


_EVALUATORS: dict[type, Callable[[Any, Store, float], list[Observation]]] = {
    ThresholdRule: _evaluate_threshold,
    RegressionRule: _evaluate_regression,
    DriftRule: _evaluate_drift,
    AbsenceRule: _evaluate_absence,
    NewDataRule: _evaluate_new_data,
    TaskEventRule: _evaluate_task_event,
}

__all__ = ["Observation", "aggregate_values", "evaluate", "reference_window", "split_error"]
