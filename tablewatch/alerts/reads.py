"""A store's reads memoized for one evaluation cycle.

An alert runner evaluates hundreds of rules per cycle, and many read the same
things: the series of a metric, the last week of one series, the task runs of
a pipeline, a model's sketches over the same windows. :class:`CycleReads`
wraps a :class:`~tablewatch.store.Store` with the read methods
:func:`~tablewatch.alerts.evaluate.evaluate` uses, answering each from one
store read per thing and cycle:

- ``find_series``: the series of a metric are listed once, then filtered;
- ``read_arrays``: one read per series covering every range asked for so far
  (a wider range reads again, once), sliced per request;
- ``read_task_runs`` / ``read_training_runs``: likewise per task / per name;
- ``read_sketch``, ``series_days``, ``list_tasks``, ``list_sketched_features``:
  memoized by their arguments.

Use a fresh one per cycle (``evaluate(rule, CycleReads(store), now)`` for each
rule of the cycle): what it holds is the store as it was when first read.
Anything else is passed through to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tablewatch.store import Series, Store, TaskRun, TrainingRun
from tablewatch.store.sketches import DistributionSketch
from tablewatch.store.timeseries import _tags_match  # the store's own filter semantics
from tablewatch.store.timestamps import MAX_TS_US, time_range


def _tags_key(tags: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((tags or {}).items()))


class CycleReads:
    """Memoized reads of ``store`` for one evaluation cycle (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._series: dict[str | None, list[Series]] = {}
        self._arrays: dict[tuple, tuple[int, int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._task_runs: dict[tuple[str, str], tuple[int, int, list[TaskRun]]] = {}
        self._training_runs: dict[str | None, tuple[int, int, list[TrainingRun]]] = {}
        self._memo: dict[tuple, Any] = {}
        self.store_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _remember(self, key: tuple, read: Any) -> Any:
        if key not in self._memo:
            self.store_reads += 1
            self._memo[key] = read()
        return self._memo[key]

    def _covering(self, cache: dict, key: Any, start_us: int, end_us: int,
                  read: Callable[[float | None, float | None], Any]) -> Any:
        """What ``read(start, end)`` (epoch seconds) returned for ``key``, read
        again over the union of the range held and ``[start_us, end_us)`` when
        the range held does not cover it."""
        held = cache.get(key)
        if held is None or start_us < held[0] or end_us > held[1]:
            low = start_us if held is None else min(start_us, held[0])
            high = end_us if held is None else max(end_us, held[1])
            self.store_reads += 1
            held = (low, high, read(*_seconds(low, high)))
            cache[key] = held
        return held[2]

    def find_series(self, metric: str | None = None, tags: Mapping[str, Any] | None = None, **tag_filters: Any) -> list[Series]:
        if metric not in self._series:
            self.store_reads += 1
            self._series[metric] = self.store.find_series(metric)
        filters = {**(tags or {}), **tag_filters}
        return [s for s in self._series[metric] if _tags_match(s.tags, filters)]

    def read_arrays(self, metric: str, tags: Mapping[str, str] | None = None, start: Any = None,
                    end: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start_us, end_us = time_range(start, end)
        ts, values, steps = self._covering(self._arrays, (metric, _tags_key(tags)), start_us, end_us,
                                           lambda low, high: self.store.read_arrays(metric, tags, low, high))
        lo, hi = np.searchsorted(ts, [start_us, end_us])
        return ts[lo:hi], values[lo:hi], steps[lo:hi]

    def series_days(self, metric: str, tags: Mapping[str, str] | None = None) -> list[int]:
        return self._remember(("days", metric, _tags_key(tags)), lambda: self.store.series_days(metric, tags))

    def list_tasks(self, pipeline: str | None = None) -> list[tuple[str, str]]:
        return self._remember(("tasks", pipeline), lambda: self.store.list_tasks(pipeline))

    def list_sketched_features(self, model: str | None = None) -> list[tuple[str, str]]:
        return self._remember(("features", model), lambda: self.store.list_sketched_features(model))

    def read_sketch(self, model: str, feature: str, start: Any = None, end: Any = None) -> DistributionSketch:
        start_us, end_us = time_range(start, end)
        sketch = self._remember(("sketch", model, feature, start_us, end_us),
                                lambda: self.store.read_sketch(model, feature, *_seconds(start_us, end_us)))
        return sketch.copy()  # callers may merge into it

    def read_task_runs(self, pipeline: str | None = None, task: str | None = None, start: Any = None,
                       end: Any = None, limit: int | None = None) -> list[TaskRun]:
        if pipeline is None or task is None:  # several tasks: one memoized read per task
            runs = [run for p, t in self.list_tasks(pipeline) if task is None or t == task
                    for run in self.read_task_runs(p, t, start, end)]
            runs.sort(key=lambda r: (r.time, r.attempt), reverse=True)
            return runs[:limit] if limit is not None else runs
        start_us, end_us = time_range(start, end)
        held = self._covering(self._task_runs, (pipeline, task), start_us, end_us,
                              lambda low, high: self.store.read_task_runs(pipeline, task, low, high))
        runs = [r for r in held if start_us <= _us(r.time) < end_us]
        return runs[:limit] if limit is not None else runs

    def read_training_runs(self, name: str | None = None, start: Any = None, end: Any = None,
                           limit: int | None = None) -> list[TrainingRun]:
        start_us, end_us = time_range(start, end)
        held = self._covering(self._training_runs, name, start_us, end_us,
                              lambda low, high: self.store.read_training_runs(name, low, high))
        runs = [r for r in held if start_us <= _us(r.started_at) < end_us]
        return runs[:limit] if limit is not None else runs


def _seconds(start_us: int, end_us: int) -> tuple[float | None, float | None]:
    """A µs range as the store's arguments (epoch seconds; None: unbounded)."""
    return (None if start_us <= 0 else start_us / 1e6), (None if end_us >= MAX_TS_US else end_us / 1e6)


def _us(when: Any) -> int:
    return int(round(when.timestamp() * 1_000_000))


__all__ = ["CycleReads"]
