"""The time-series layer, written once on top of the Table API.

Tables (all created on first open):

``tw_meta``
    one row, ``config``: salt buckets, bucket width, schema version.
``tw_series``
    the series index. Row ``s`` metric ``\\0`` series-id for a series,
    ``t`` pipeline ``\\0`` task for a task. Family ``meta`` holds the name and tags;
    family ``days`` one empty cell per day that has data (qualifier: the day
    index), so readers know which buckets exist without scanning.
``tw_points``
    points, one row per series per time bucket, many packed chunks per row (see
    :mod:`tablewatch.store.keys` and :mod:`tablewatch.store.chunks`).
``tw_tasks``
    task runs, one row per attempt.
``tw_sketches``
    distribution sketches of model features and predictions, one row per
    (model, feature, time bucket), keyed like points, with their own index rows
    (see :mod:`tablewatch.store.sketches`).

Index rows are keyed by name rather than salted: they are written once per
series per day, not per point, so they never carry a hot write load.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from tablewatch.errors import (
    SeriesNotFound,
    StoreError,
    StoreNotFound,
    StoreSchemaError,
    TableExists,
    ValidationError,
    ValidationTypeError,
)
from tablewatch.store import chunks, merge, pointbatch, sketches
from tablewatch.store.backends import open_backend
from tablewatch.store.downsample import aggregate, minmax_indices
from tablewatch.store.dayindex import DayIndex, day_cells, days_in, overlaps
from tablewatch.store.keys import DAY_US, US_PER_S, KeyCodec, day_of, task_id
from tablewatch.store.lru import LRU
from tablewatch.store.names import SERIES_ID_BYTES, Series, series_id, validate_metric, validate_tags
from tablewatch.store.table import (
    Backend,
    Cell,
    CellColumns,
    GCPolicy,
    Row,
    RowMutation,
    SetCell,
    check_limit,
    newest_cells,
    newest_cells_of,
    set_cells,
)
from tablewatch.store.tagindex import TagIndex, index_cells, index_rows, series_json
from tablewatch.store.tagindex import matches as _tags_match  # noqa: F401 - tablewatch.alerts imports it here
from tablewatch.store.runs import TrainingRun, validate_training_run
from tablewatch.store.tasks import TaskRun, validate_task_run
from tablewatch.store.timestamps import now_us, time_range, to_us, to_us_array

if TYPE_CHECKING:  # pandas is imported where a frame is built
    import pandas as pd

log = logging.getLogger(__name__)

#: The layout version recorded in ``tw_meta``; a store with a higher one was
#: written by a newer tablewatch and is refused rather than misread.
SCHEMA_VERSION = 1
META, SERIES, POINTS, TASKS, RUNS = "tw_meta", "tw_series", "tw_points", "tw_tasks", "tw_runs"
SKETCHES = "tw_sketches"
TABLES = (META, SERIES, POINTS, TASKS, RUNS, SKETCHES)
#: The kinds of record a retention (max age) can be set for. ``run_points`` are
#: the points of a training run's series (see :func:`points_family`).
RETENTION_KINDS = ("points", "run_points", "tasks", "runs", "sketches")
DAY_SECONDS = 86400
#: What a new store keeps, in seconds (None: forever). Monitoring points expire;
#: a training run's curves and its run record stay as long as the store does.
DEFAULT_RETENTION_S: Mapping[str, float | None] = {
    "points": 30 * DAY_SECONDS,
    "run_points": None,
    "tasks": 90 * DAY_SECONDS,
    "runs": None,
    "sketches": 400 * DAY_SECONDS,
}
#: Families of ``tw_points``: ``p`` for points of ordinary series, ``r`` for the
#: points of training runs (series tagged ``run``), each with its own retention.
POINTS_FAMILY, RUN_POINTS_FAMILY = "p", "r"
POINTS_FAMILIES = (POINTS_FAMILY, RUN_POINTS_FAMILY)
#: The tag that makes a series part of a training run (``Collector.run()`` sets it).
RUN_TAG = "run"
#: ``info()`` counts rows by scanning keys up to this many where the backend cannot count.
ROW_COUNT_LIMIT = 1_000_000
#: Index families recording the days that have data, one per kind of record so
#: that each expires with its own table's retention.
POINT_DAYS, TASK_DAYS, RUN_DAYS = "days", "task_days", "run_days"
#: Tables whose keys start with the salt byte: pre-split on its values.
SALTED_TABLES = ("tw_points", "tw_tasks", "tw_runs", "tw_sketches")
#: The (table, family) pairs whose GC policy is each kind's retention (the first
#: one is where the retention is read back). ``days`` of ``tw_series`` follows
#: the longer of points and run_points.
RETENTION_FAMILIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "points": (("tw_points", "p"),),
    "run_points": (("tw_points", "r"),),
    "tasks": (("tw_tasks", "run"), ("tw_series", "task_days")),
    "runs": (("tw_runs", "run"), ("tw_series", "run_days")),
    "sketches": (("tw_sketches", "s"), ("tw_sketches", "days")),
}
#: The embedded store reads a series' buckets by key ranges (one per salt
#: bucket) rather than by their keys when the ranges hold this many rows each.
ROWS_PER_RANGE = 4
#: Series a process keeps resolved (name and tags -> id), least recently used forgotten.
SERIES_CACHE_ENTRIES = 262_144


@dataclass(frozen=True)
class StoreConfig:
    """Fixed when the store's tables are created, then read back from ``tw_meta``."""

    salt_buckets: int = 16
    bucket_seconds: int = 3600
    #: Max age in seconds per kind of record (None: forever); kinds left out
    #: get :data:`DEFAULT_RETENTION_S`.
    retention_s: Mapping[str, float | None] | None = None

    def __post_init__(self) -> None:
        KeyCodec(self.salt_buckets, self.bucket_seconds)  # checks both
        if self.retention_s is not None and not isinstance(self.retention_s, Mapping):
            raise ValidationTypeError("retention_s", self.retention_s, f"must map {', '.join(RETENTION_KINDS)} to seconds")
        for kind, age in (self.retention_s or {}).items():
            if kind not in RETENTION_KINDS:
                raise ValidationError("retention_s", kind, f"is not a kind of record (known: {', '.join(RETENTION_KINDS)})")
            if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not age > 0):
                raise ValidationError(f"retention_s[{kind!r}]", age, "must be a number of seconds > 0, or None (forever)")

    @property
    def retention(self) -> dict[str, float | None]:
        """The max age of every kind of record: ``retention_s`` over the defaults."""
        return {**DEFAULT_RETENTION_S, **(self.retention_s or {})}


def points_family(metric: str, tags: Mapping[str, str]) -> str:
    """The family of ``tw_points`` that holds a series' points: the series of a
    training run (tagged ``run``) go to ``r`` (kept forever by default), every
    other series to ``p`` (30 days by default)."""
    return RUN_POINTS_FAMILY if RUN_TAG in tags else POINTS_FAMILY


def open_store(url: str | None = None, *, create: bool = True, **config: Any) -> Store:
    """Open the store at ``url``; ``None`` means ``$TABLEWATCH_STORE``, else
    ``./tablewatch.db``.

    ``create=True`` (writers): a store that does not exist is created, and a
    warning on the ``tablewatch`` logger says so once. ``create=False``
    (readers): a store that does not exist raises :class:`StoreNotFound`
    naming it; nothing is created. ``config`` (salt_buckets, bucket_seconds,
    retention_s={"points": seconds, ...}) only applies when the tables are
    first created; change retention later with :meth:`Store.set_retention`.
    A store whose ``tw_meta`` is from a newer tablewatch, or damaged, raises
    :class:`StoreSchemaError`."""
    unknown = set(config) - {"salt_buckets", "bucket_seconds", "retention_s"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], config[sorted(unknown)[0]],
                              "is not a store option (known: salt_buckets, bucket_seconds, retention_s)")
    checked = StoreConfig(**config)  # before the backend is opened: a bad option leaks nothing
    backend = open_backend(url, create=create)
    try:
        return Store(backend, checked, create=create)
    except BaseException:
        backend.close()
        raise


class Store:
    """Series, points and task runs over any :class:`~tablewatch.store.table.Backend`.

    Thread-safe. Usable as a context manager (closes the backend on exit).
    """

    def __init__(self, backend: Backend, config: StoreConfig | None = None, *, create: bool = True) -> None:
        self.backend = backend
        self.url = backend.url
        self.read_only = bool(getattr(backend, "read_only", False))
        #: True when this open created the store (its ``tw_meta``).
        self.created = False
        config = config or StoreConfig()
        self.codec = self._ensure_tables(config, create)
        self._points = backend.table(POINTS)
        self._index = backend.table(SERIES)
        self._tasks = backend.table(TASKS)
        self._runs = backend.table(RUNS)
        self._sketches = sketches.SketchTable(backend.table(SKETCHES), self.codec)
        self._days = DayIndex(self._index)
        self._series_cache: LRU[tuple, pointbatch.SeriesRef] = LRU(SERIES_CACHE_ENTRIES)
        self._tag_index = TagIndex(self._index, backend.table(META))
        if not self._tag_index.is_complete():
            self._tag_index.backfill()  # a store written before the tag index: once
        #: Whether a read merges the closed buckets it finds unmerged (see merge.py).
        self.merge_on_read = True
        self._load_retention()

    def _load_retention(self) -> None:
        families = self.backend.table_info(POINTS).families
        #: Families of ``tw_points`` in this store (a store made before run
        #: points had their own family has only ``p``: every series goes there).
        self._point_families = [f for f in POINTS_FAMILIES if f in families]
        ages = [families[f].max_age_s for f in self._point_families]
        # Reads skip buckets older than the longest points retention.
        self._points_max_age_us = None if None in ages else int(max(ages) * US_PER_S)
        self._tasks_max_age_us = self._max_age_us(TASKS)
        self._runs_max_age_us = self._max_age_us(RUNS)

    # -- set-up -------------------------------------------------------------------

    def _table_families(self, retention: Mapping[str, float | None]) -> dict[str, dict[str, GCPolicy]]:
        """Every table's families with their GC policies for ``retention`` (a
        value for every kind)."""
        return {
            META: {"config": GCPolicy(max_versions=1)},
            SERIES: {
                "meta": GCPolicy(max_versions=1),
                POINT_DAYS: GCPolicy(max_versions=1, max_age_s=_longest(retention["points"], retention["run_points"])),
                TASK_DAYS: GCPolicy(max_versions=1, max_age_s=retention["tasks"]),
                RUN_DAYS: GCPolicy(max_versions=1, max_age_s=retention["runs"]),
            },
            POINTS: {
                POINTS_FAMILY: GCPolicy(max_versions=1, max_age_s=retention["points"]),
                RUN_POINTS_FAMILY: GCPolicy(max_versions=1, max_age_s=retention["run_points"]),
            },
            TASKS: {"run": GCPolicy(max_versions=1, max_age_s=retention["tasks"])},
            RUNS: {"run": GCPolicy(max_versions=1, max_age_s=retention["runs"])},
            SKETCHES: sketches.table_families(retention["sketches"]),
        }

    def _ensure_tables(self, config: StoreConfig, create: bool) -> KeyCodec:
        codec = KeyCodec(config.salt_buckets, config.bucket_seconds)
        existing = set(self.backend.list_tables())
        if META not in existing and (not create or self.read_only):
            raise StoreNotFound(
                f"store {self.url!r} does not exist (it has no {META} table){_location(self.backend)}; "
                "a command that only reads never creates one. Create it by writing to it: "
                f"`tablewatch push METRIC VALUE --store {self.url}`, or open_store(url) in Python"
            )
        families = self._table_families(config.retention)
        missing = [name for name in TABLES if name not in existing]
        if missing and self.read_only:
            raise StoreError(f"store {self.url!r} is read-only and lacks the tables {', '.join(missing)}: "
                             "open it writable once (with this tablewatch) to create them")
        splits = [bytes([s]) for s in range(1, codec.salt_buckets)]
        for name in missing:
            try:
                self.backend.create_table(name, families[name], split_keys=splits if name in SALTED_TABLES else ())
            except TableExists:
                pass  # another process created it first
        meta = self.backend.table(META)
        stored = meta.read_rows([b"config"])
        if not stored:
            if self.read_only or not create:
                raise StoreSchemaError(f"store {self.url!r}: {META} has no config row (its creation was cut short); "
                                       "open it once with a writer (e.g. `tablewatch push`) to finish creating it")
            value = json.dumps(
                {"salt_buckets": codec.salt_buckets, "bucket_seconds": codec.bucket_seconds, "schema": SCHEMA_VERSION}
            ).encode()
            meta.mutate_rows([RowMutation(b"config", [SetCell("config", b"json", value, 0)])])
            stored = meta.read_rows([b"config"])
            if META in missing:
                self.created = True
                log.warning("created a new, empty store at %s", self.url)
        return _recorded_codec(self.url, stored[0].value("config", b"json"))

    def _max_age_us(self, table: str) -> int | None:
        info = self.backend.table_info(table)
        ages = [p.max_age_s for p in info.families.values() if p.max_age_s is not None]
        return int(min(ages) * US_PER_S) if ages else None

    # -- series ---------------------------------------------------------------------

    def series_ref(self, metric: str, tags: Mapping[str, str] | None = None) -> pointbatch.SeriesRef:
        """The series ``metric`` with ``tags``, checked (raises ValidationError
        naming the field): a writer that keeps it passes it to
        :meth:`write_series_points` and skips the lookup by name and tags."""
        try:
            key = (metric, tuple(sorted(tags.items())) if isinstance(tags, Mapping) else tags)
            cached = self._series_cache.get(key)
        except TypeError:
            key, cached = None, None  # unsortable or unhashable tags: validate_tags names them
        if cached is not None:
            return cached
        found = self._new_ref(metric, tags)
        if key is not None:
            self._series_cache.put(key, found)
        return found

    def _new_ref(self, metric: Any, tags: Any) -> pointbatch.SeriesRef:
        metric = validate_metric(metric)
        clean = validate_tags(tags)
        return pointbatch.SeriesRef(metric, clean, series_id(metric, clean))

    def _refs_or_none(self, metrics: list[Any], tags: list[Any]) -> list[pointbatch.SeriesRef] | None:
        """The series of each (metric, tags), or None when one is invalid (the
        caller's batch-by-batch path names the error). Cached by tags in given
        order, as one flat tuple ``(metric, *names, *values)`` (half the cost of
        hashing a tuple of pairs; its odd length keeps it apart from the
        ``(metric, tags)`` keys of :meth:`series_ref`)."""
        try:
            keys = [(metric, *t, *t.values()) if type(t) is dict else (metric, t) for metric, t in zip(metrics, tags)]
            found = self._series_cache.get_many(keys)
        except TypeError:
            return None
        if not all(found):  # (a SeriesRef is never false; faster than ``None in found``)
            for i in [i for i, ref in enumerate(found) if ref is None]:
                try:
                    found[i] = self._new_ref(metrics[i], tags[i])
                except ValidationError:
                    return None
                self._series_cache.put(keys[i], found[i])
        return found  # type: ignore[return-value]

    def _points_family(self, metric: str, tags: Mapping[str, str]) -> str:
        """:func:`points_family`, or ``p`` in a store made before ``r`` existed."""
        family = points_family(metric, tags)
        return family if family in self._point_families else POINTS_FAMILY

    @staticmethod
    def _series_row_key(metric: str, sid: bytes) -> bytes:
        return b"s" + metric.encode() + b"\x00" + sid

    def find_series(self, metric: str | None = None, tags: Mapping[str, Any] | None = None, **tag_filters: Any) -> list[Series]:
        """Series of ``metric`` (all metrics when None) whose tags match every
        filter: a string matches exactly, a list/tuple/set matches any of its
        items, ``True`` matches any value (the tag is present). Sorted by metric
        then tags. A series found before is returned as the same object (a
        ``Series`` is immutable: its tags are a read-only mapping), so listing
        100k series again costs a lookup each instead of parsing them."""
        filters = {**(tags or {}), **tag_filters}
        if metric is not None:
            metric = validate_metric(metric)
        with pointbatch.gc_paused():  # a few acyclic objects per series found
            found = self._tag_index.find(metric, filters)  # see tablewatch.store.tagindex
            found.sort(key=itemgetter(1))
            return [series for series, _ in found]

    def _check_series_exists(self, metric: str, tags: Mapping[str, str] | None) -> None:
        """Raise :class:`SeriesNotFound` when no series is ``metric`` with exactly
        ``tags`` but some are with more tags."""
        metric, clean, sid = self.series_ref(metric, tags)
        if self._index.read_rows([self._series_row_key(metric, sid)], columns=[("meta", b"json")]):
            return
        candidates = self.find_series(metric, clean)
        if candidates:
            shown = "; ".join(f"{s.metric}{_tag_text(s.tags)}" for s in candidates[:10])
            more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
            raise SeriesNotFound(
                f"no series {metric}{_tag_text(clean)}: a series is named by all its tags, and "
                f"{len(candidates)} series have these tags among others: {shown}{more}", candidates)

    def series_days(self, metric: str, tags: Mapping[str, str] | None = None) -> list[int]:
        """Day indexes (days since the epoch, UTC) on which the series has points."""
        metric, _, sid = self.series_ref(metric, tags)
        return self._days.days(self._series_row_key(metric, sid), POINT_DAYS)

    # -- points ---------------------------------------------------------------------------

    def write_points(
        self,
        metric: str,
        tags: Mapping[str, str] | None,
        ts: Any,
        values: Any,
        steps: Any = None,
        *,
        allow_inf: bool = False,
    ) -> int:
        """Write points of one series; the number written.

        ``ts``: timestamps (epoch seconds, datetimes, datetime64; scalars or
        arrays); ``values``: numbers (NaN is kept; ±inf only with
        ``allow_inf``); ``steps``: optional non-negative integers (training step).
        Idempotent: writing the same points again stores them once.
        """
        return self._write_batches([self._point_batch(metric, tags, ts, values, steps, allow_inf)])

    def write_points_many(self, batches: Iterable[Mapping[str, Any]], *, allow_inf: bool = False) -> int:
        """Write points of several series in one round trip; the number written.

        Each batch is a mapping with the arguments of :meth:`write_points`
        (``metric``, ``tags``, ``ts``, ``values``, optional ``steps``). Every
        batch is checked before any is written; an error names the batch, as in
        ``batches[3].values[0]``.

        Batches of numpy arrays (or numbers) are checked and packed a column at
        a time (see :mod:`tablewatch.store.pointbatch`): 100k series of one point
        cost per-point, not per-series, work. Anything else is checked batch by
        batch, with the same result.
        """
        batches = batches if isinstance(batches, list) else list(batches)
        with pointbatch.gc_paused():
            columns = pointbatch.columns_of(batches, self._refs_or_none, _float_array, _step_array, allow_inf)
            if columns is not None:
                return self._write_columns(columns)
        prepared = []
        for i, batch in enumerate(batches):
            try:
                if not isinstance(batch, Mapping):
                    raise ValidationTypeError("", batch, "must be a mapping with metric, tags, ts, values")
                unknown = set(batch) - {"metric", "tags", "ts", "values", "steps"}
                if unknown:
                    raise ValidationError("", sorted(unknown), "unknown keys (known: metric, tags, ts, values, steps)")
                for required in ("metric", "ts", "values"):
                    if required not in batch:
                        raise ValidationError(required, None, "is required")
                prepared.append(self._point_batch(
                    batch["metric"], batch.get("tags"), batch["ts"], batch["values"], batch.get("steps"), allow_inf
                ))
            except ValidationError as e:
                field = f"batches[{i}]" + (f".{e.field}" if e.field else "")
                raise type(e)(field, e.value, e.problem) from e
        return self._write_batches(prepared)

    def write_series_points(
        self,
        series: Sequence[pointbatch.SeriesRef],
        counts: Any,
        ts: Any,
        values: Any,
        steps: Any = None,
        has_steps: Any = None,
        *,
        allow_inf: bool = False,
    ) -> int:
        """Write points of many series given as flat columns; the number written.

        ``series``: handles from :meth:`series_ref`; ``counts[i]`` points of
        ``series[i]`` follow each other in ``ts`` and ``values`` (and ``steps``),
        series after series. ``steps``: None, or one integer per point, taken
        for the series where ``has_steps[i]`` (every series when ``has_steps``
        is None). What a writer that keeps its series' handles (the Collector)
        calls instead of :meth:`write_points_many`: no mapping and no lookup by
        name per series. Checked as :meth:`write_points_many` checks, errors
        naming the flat index (``values[7]``)."""
        if not isinstance(series, list) or set(map(type, series)) - {pointbatch.SeriesRef}:
            raise ValidationTypeError("series", type(series).__name__, "must be a list of Store.series_ref() handles")
        counts = np.asarray(counts) if len(series) else np.zeros(0, dtype=np.int64)
        if counts.shape != (len(series),) or counts.dtype.kind not in "iu" or (len(counts) and counts.min() < 0):
            raise ValidationError("counts", counts.tolist(), "must be one count >= 0 per series")
        ts_us = to_us_array(ts, "ts")
        vals = _float_array(values, "values", allow_inf)
        total = int(counts.sum())
        for name, column in (("ts", ts_us), ("values", vals)):
            if len(column) != total:
                raise ValidationError(name, f"{len(column)} {name}", f"must be one per point: sum(counts) = {total}")
        given = np.ones(len(series), dtype=bool) if has_steps is None else np.asarray(has_steps, dtype=bool)
        if given.shape != (len(series),):
            raise ValidationError("has_steps", given.shape, "must be one bool per series")
        step_array = None
        if steps is not None and given.any():
            raw = np.asarray(steps)
            if raw.shape != (total,):
                raise ValidationError("steps", f"{raw.shape}", f"must be one per point ({total})")
            per_point = np.repeat(given, counts)
            step_array = np.full(total, chunks.NO_STEP, dtype=np.int64)
            step_array[per_point] = _step_array(np.where(per_point, raw, 0), "steps")[per_point]
        else:
            given = np.zeros(len(series), dtype=bool)
        with pointbatch.gc_paused():
            return self._write_columns(pointbatch.point_columns(series, counts.astype(np.int64), ts_us, vals,
                                                                step_array, given))

    def _point_batch(
        self, metric: str, tags: Any, ts: Any, values: Any, steps: Any, allow_inf: bool
    ) -> tuple[list[RowMutation], list[RowMutation], bytes, set[int], int]:
        """Check one series' points and build its mutations:
        (point rows, index rows, series id, days, point count)."""
        metric, clean_tags, sid = self.series_ref(metric, tags)
        family = self._points_family(metric, clean_tags)
        ts_us = to_us_array(ts, "ts")
        vals = _float_array(values, "values", allow_inf)
        step_array = _step_array(steps, "steps") if steps is not None else None
        if len(vals) != len(ts_us):
            raise ValidationError("values", f"{len(vals)} values", f"must have one per timestamp ({len(ts_us)} ts)")
        if step_array is not None and len(step_array) != len(ts_us):
            raise ValidationError("steps", f"{len(step_array)} steps", f"must have one per timestamp ({len(ts_us)} ts)")
        if len(ts_us) == 0:
            return [], [], sid, set(), 0
        if len(ts_us) > 1 and not (np.diff(ts_us) >= 0).all():
            order = np.argsort(ts_us, kind="stable")
            ts_us, vals = ts_us[order], vals[order]
            step_array = step_array[order] if step_array is not None else None
        buckets = ts_us // self.codec.bucket_us
        edges = np.r_[0, np.flatnonzero(buckets[1:] != buckets[:-1]) + 1, len(ts_us)]
        rows: list[RowMutation] = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            cells = []
            for start in range(lo, hi, chunks.MAX_CHUNK_POINTS):
                stop = min(start + chunks.MAX_CHUNK_POINTS, hi)
                qualifier, value = chunks.encode(
                    ts_us[start:stop], vals[start:stop], step_array[start:stop] if step_array is not None else None
                )
                cells.append(SetCell(family, qualifier, value, int(ts_us[stop - 1]) // 1000))
            rows.append(RowMutation(self.codec.point_key(sid, int(buckets[lo])), cells))
        days = set(np.unique(ts_us // DAY_US).tolist())
        meta = series_json(metric, clean_tags)
        index = self._days.mutations(self._series_row_key(metric, sid), meta, sid, days, POINT_DAYS)
        if index:  # new to this process: (re)write the series' tag index rows too
            index += index_rows(metric, clean_tags, sid, meta)
        return rows, index, sid, days, len(ts_us)

    def _write_columns(self, columns: pointbatch.PointColumns) -> int:
        """Write the points of many series checked as columns: index cells of the
        (series, day) pairs new to this process, then one chunk per (batch, bucket)."""
        if len(columns.ts_us) == 0:
            return 0
        cells = pointbatch.chunk_cells(columns, self.codec)
        series = columns.series
        batches, days, known_keys = pointbatch.batch_days(cells)
        unknown = self._days.unknown(known_keys)
        new_days: dict[int, list[int]] = {}
        for b, day in zip(batches[unknown].tolist(), days[unknown].tolist()):
            new_days.setdefault(b, []).append(day)
        if new_days:  # index first: a reader never misses written points
            set_cells(self._index, self._index_cells([(series[b], days) for b, days in new_days.items()]))
        if len(self._point_families) == 1:  # a store made before run points had their own family
            point_families = self._point_families * len(cells.keys)
        else:
            by_series = [points_family(ref.metric, ref.tags) for ref in series]
            if len(set(by_series)) == 1:
                point_families = by_series[:1] * len(cells.keys)
            else:
                point_families = [by_series[b] for b in cells.batch.tolist()]
        set_cells(self._points, CellColumns(cells.keys, point_families, cells.qualifiers, cells.values,
                                            cells.timestamps_ms))
        if new_days:
            self._days.remember_keys([known_keys[i] for i in unknown])
        return len(columns.ts_us)

    def _index_cells(self, new: list[tuple[pointbatch.SeriesRef, list[int]]]) -> CellColumns:
        """The index cells of series with days new to this process: their day-index
        row (meta and day cells) and their tag index cells, as columns. (Not sorted:
        measured, sorting 600k cells costs more than it saves SQLite.)"""
        cells: list[tuple[bytes, str, bytes, bytes, int]] = []
        for ref, days in new:
            meta = series_json(ref.metric, ref.tags)
            cells += day_cells(self._series_row_key(ref.metric, ref.sid), meta, days, POINT_DAYS)
            cells += index_cells(ref.metric, ref.tags, ref.sid, meta)
        keys, families, qualifiers, values, stamps = (list(column) for column in zip(*cells))
        return CellColumns(keys, families, qualifiers, values, stamps)

    def _write_batches(self, prepared: list[tuple[list[RowMutation], list[RowMutation], bytes, set[int], int]]) -> int:
        rows = [row for batch in prepared for row in batch[0]]
        index = [row for batch in prepared for row in batch[1]]
        if index:
            self._index.mutate_rows(_merge_rows(index))  # index first: a reader never misses written points
        if rows:
            self._points.mutate_rows(_merge_rows(rows))
        for _, _, sid, days, _ in prepared:
            self._days.remember(sid, days)
        return sum(batch[4] for batch in prepared)

    def read_points(
        self,
        metric: str,
        tags: Mapping[str, str] | None = None,
        start: Any = None,
        end: Any = None,
        max_points: int | None = None,
    ) -> pd.DataFrame:
        """Points of one series with ``start <= ts < end`` (None: unbounded), in
        time order, as a DataFrame with columns ``ts`` (UTC), ``value`` and
        ``step`` (nullable integer). With ``max_points``, downsampled to at most
        that many points keeping each time bucket's min and max (spikes stay).

        ``tags`` must be the series' tags exactly: when no series has them but
        some have them among others (partial tags), :class:`SeriesNotFound`
        lists those series instead of returning an empty frame."""
        ts, values, steps = self.read_arrays(metric, tags, start, end)
        if len(ts) == 0:
            self._check_series_exists(metric, tags)
        if max_points is not None:
            keep = minmax_indices(ts, values, max_points)
            ts, values, steps = ts[keep], values[keep], steps[keep]
        return _points_frame(ts, values, steps)

    def read_arrays(
        self, metric: str, tags: Mapping[str, str] | None = None, start: Any = None, end: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`read_points`, as numpy arrays (ts in int64 µs, values,
        steps with ``chunks.NO_STEP`` where a point has none)."""
        return self._read_arrays_of([self.series_ref(metric, tags)], start, end)[0]

    def read_arrays_many(
        self, series: Sequence[Series], start: Any = None, end: Any = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`read_arrays` of several series (``Series(metric, tags)``, the
        tags exact), in the order given, with one read of their day index rows,
        one of their points (a key range per salt bucket a series' time range
        touches, rather than a key per bucket) and one decoding of their chunks."""
        return self._read_arrays_of([self.series_ref(s.metric, s.tags) for s in series], start, end)

    def _read_arrays_of(
        self, resolved: Sequence[tuple[str, dict[str, str], bytes]], start: Any, end: Any
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        start_us, end_us = time_range(start, end)
        if self._points_max_age_us is not None:
            start_us = max(start_us, now_us() - self._points_max_age_us)
        index_keys = {sid: self._series_row_key(metric, sid) for metric, _, sid in resolved}
        recorded = self._days.days_of(index_keys.values(), POINT_DAYS)
        days_of = {sid: [d for d in recorded[key] if overlaps(d, start_us, end_us)]
                   for sid, key in index_keys.items() if key in recorded}
        cells = self._point_cells({sid: days for sid, days in days_of.items() if days}, start_us, end_us)
        # Rows (of a family) holding several chunks: merged ones, and those to merge now.
        shared = {(c[0], c[1]) for c, before in zip(cells[1:], cells) if c[0] == before[0] and c[1] == before[1]}
        plain = [c for c in cells if (c[0], c[1]) not in shared] if shared else cells  # decoded together
        parts: dict[bytes, list[merge.Points]] = defaultdict(list)
        to_merge = []
        closed_before = self.codec.bucket_of(now_us() - merge.CLOSED_AFTER_S * US_PER_S)
        for (key, family), group in itertools.groupby((c for c in cells if (c[0], c[1]) in shared), key=itemgetter(0, 1)):
            columns = {qualifier: [Cell(value, timestamp_ms)] for _, _, qualifier, timestamp_ms, value in group}
            mergeable = self.merge_on_read and self.codec.decode_point_key(key)[2] < closed_before
            if not mergeable and not any(merge.is_merged(q) for q in columns):
                plain += [(key, family, q, cell[0].timestamp_ms, cell[0].value) for q, cell in columns.items()]
                continue
            row = Row(key, {family: columns})
            points, _ = merge.row_points(row, family)  # see tablewatch.store.merge
            parts[key[1 : 1 + SERIES_ID_BYTES]].append(points)
            if mergeable:
                to_merge.append((row, family, points))
        if to_merge:
            self._merge_rows_read(to_merge)
        if plain:
            # By key without the salt, then qualifier (which starts with the
            # chunk's first ts): each series' chunks together, in time order.
            order = sorted(range(len(plain)), key=[c[0][1:] + c[1].encode() + c[2] for c in plain].__getitem__)
            ts, values, steps, counts = chunks.decode_many([plain[i][4] for i in order])
            offsets = np.r_[0, np.cumsum(counts)]
            sids = [plain[i][0][1 : 1 + SERIES_ID_BYTES] for i in order]
            firsts = [i for i in range(len(sids)) if i == 0 or sids[i] != sids[i - 1]]
            for lo, hi in zip(firsts, [*firsts[1:], len(sids)]):
                a, b = offsets[lo], offsets[hi]
                parts[sids[lo]].insert(0, merge.Points(ts[a:b], values[a:b], steps[a:b]))
        found = {sid: _in_range(parts.get(sid, []), start_us, end_us) for sid in index_keys}
        return [found[sid] for _, _, sid in resolved]

    def _point_cells(self, days_of: Mapping[bytes, list[int]], start_us: int,
                     end_us: int) -> list[tuple[bytes, str, bytes, int, bytes]]:
        """(row key, family, qualifier, timestamp ms, value) of the chunks of
        the series ``days_of`` (series id -> days with data, sorted) in
        ``[start_us, end_us)``. On the embedded store a series of many buckets
        is read as a key range per salt bucket (within a salt and a series, key
        order is time order); other series, and every series on the other
        backends, by the exact keys of their buckets, in one request."""
        ranges: list[tuple[bytes, bytes]] = []
        keys: list[bytes] = []
        by_range = getattr(self._points, "newest_cells", None) is not None
        for sid, days in days_of.items():
            first = self.codec.bucket_of(max(start_us, days[0] * DAY_US))
            last = self.codec.bucket_of(min(end_us, (days[-1] + 1) * DAY_US) - 1)
            if by_range and last - first + 1 >= ROWS_PER_RANGE * self.codec.salt_buckets:
                ranges += self.codec.point_ranges(sid, first, last)
            else:
                keys += self.codec.point_keys_on_days(sid, days, start_us, end_us)
        cells = newest_cells(self._points, ranges, self._point_families) if ranges else []
        if keys:
            cells += newest_cells_of(self._points.read_rows(keys, columns=self._point_families))
        return cells

    # -- merging closed buckets (see tablewatch.store.merge) -------------------------------

    def merge_closed_buckets(self, now: Any = None) -> int:
        """Repack the chunks of every closed bucket (ended ``merge.CLOSED_AFTER_S``
        before ``now``) that holds more than one chunk; the rows merged.
        Idempotent and safe beside writers; :meth:`compact` runs it, and reads
        merge the closed buckets they meet."""
        now = now_us() if now is None else to_us(now, "now")
        closed_before = self.codec.bucket_of(now - merge.CLOSED_AFTER_S * US_PER_S)
        keys = [
            row.key for row in self._points.scan(columns=self._point_families, keys_only=True)  # qualifiers only
            if self.codec.decode_point_key(row.key)[2] < closed_before
            and any(merge.needs_merge(cells) for cells in row.cells.values())
        ]
        merged = 0
        for start in range(0, len(keys), merge.ROWS_PER_PASS):
            rows = self._points.read_rows(keys[start:start + merge.ROWS_PER_PASS], columns=self._point_families)
            merged += self._merge_rows_read([(row, family, None) for row in rows for family in row.cells], quiet=False)
        return merged

    def _merge_rows_read(self, rows: list[tuple[Any, str, merge.Points | None]], quiet: bool = True) -> int:
        """Write the merges of (row, family) pairs just read, each with its points
        when already decoded; a reader (``quiet``) never fails because its merge
        could not be written: the next read tries again."""
        mutations = [m for m in (merge.merge_mutation(row, family, points) for row, family, points in rows)
                     if m is not None]
        if not mutations:
            return 0
        try:
            self._points.mutate_rows(mutations)
        except StoreError:
            if not quiet:
                raise
            return 0
        return len(mutations)

    def aggregate(
        self, metric: str, tags: Mapping[str, str] | None = None, start: Any = None, end: Any = None, *, every: float = 3600.0
    ) -> pd.DataFrame:
        """Per-bucket count, mean, min, max, p50, p95, p99 over buckets of
        ``every`` seconds (aligned on the epoch): one row per non-empty bucket."""
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            raise ValidationError("every", every, "must be a number of seconds > 0")
        ts, values, _ = self.read_arrays(metric, tags, start, end)
        return aggregate(ts, values, int(every * US_PER_S))

    # -- events: task runs and training runs ---------------------------------------------
    #
    # Both are records filed under an entity (a pipeline's task, a training run
    # name) and a time, one row each, found through the index's day cells.

    def _write_events(self, table, family: str, events: list[tuple[bytes, bytes, dict, int, str, int, bytes]]) -> None:
        """events: (entity id, index row key, index meta, time µs, record id, attempt, json)."""
        rows, index, entities = [], [], []
        for entity, index_key, meta, time_us, record_id, attempt, value in events:
            day = day_of(time_us)
            index += self._days.mutations(index_key, json.dumps(meta).encode(), entity, [day], family)
            entities.append((entity, day))
            key = self.codec.task_key(entity, time_us, record_id, attempt)
            rows.append(RowMutation(key, [SetCell("run", b"json", value, time_us // 1000)]))
        if index:
            self._index.mutate_rows(_merge_rows(index))
        if rows:
            table.mutate_rows(rows)
        for entity, day in entities:
            self._days.remember(entity, [day])

    def _read_events(
        self, table, family: str, index_rows, entity_of, start: Any, end: Any, max_age_us: int | None
    ) -> list[bytes]:
        start_us, end_us = time_range(start, end)
        if max_age_us is not None:
            start_us = max(start_us, now_us() - max_age_us)
        ranges = []
        for row in index_rows:
            entity = entity_of(json.loads(row.value("meta", b"json")))
            ranges += [self.codec.task_range(entity, day, start_us, end_us)
                       for day in days_in(row, family) if overlaps(day, start_us, end_us)]
        if not ranges:
            return []
        return [row.value("run", b"json") for row in table.scan_ranges(sorted(ranges))]

    # -- task runs ------------------------------------------------------------------------

    def write_task_runs(self, runs: Sequence[TaskRun | Mapping[str, Any]]) -> int:
        """Write task runs (TaskRun objects or dicts of their fields); the number
        written. Every run is checked before any is written. Idempotent: a run is
        identified by pipeline, task, run_id, attempt and time."""
        checked = [validate_task_run(run, i) for i, run in enumerate(runs)]
        self._write_events(self._tasks, TASK_DAYS, [
            (task_id(run.pipeline, run.task), _task_row_key(run.pipeline, run.task),
             {"pipeline": run.pipeline, "task": run.task}, to_us(run.time), run.run_id, run.attempt, run.to_json())
            for run in checked
        ])
        return len(checked)

    def list_tasks(self, pipeline: str | None = None) -> list[tuple[str, str]]:
        """(pipeline, task) pairs that have runs, sorted."""
        prefix = b"t" if pipeline is None else _task_row_key(pipeline, "")
        found = []
        for row in self._index.scan(prefix=prefix, columns=[("meta", b"json")]):
            data = json.loads(row.value("meta", b"json"))
            found.append((data["pipeline"], data["task"]))
        return sorted(found)

    def read_task_runs(
        self,
        pipeline: str | None = None,
        task: str | None = None,
        start: Any = None,
        end: Any = None,
        limit: int | None = None,
    ) -> list[TaskRun]:
        """Task runs filed (by start time) in ``[start, end)``, newest first,
        at most ``limit``; filtered by pipeline and task when given."""
        check_limit(limit)
        if task is not None and pipeline is None:
            raise ValidationError("pipeline", None, "is required when task is given")
        prefix = b"t" if pipeline is None else _task_row_key(pipeline, task or "")
        index_rows = self._index.scan(prefix=prefix) if task is None else self._index.read_rows([prefix])
        found = self._read_events(
            self._tasks, TASK_DAYS, index_rows, lambda m: task_id(m["pipeline"], m["task"]), start, end, self._tasks_max_age_us
        )
        runs = [TaskRun.from_json(raw) for raw in found]
        runs.sort(key=lambda r: (r.time, r.attempt), reverse=True)
        return runs[:limit] if limit is not None else runs

    # -- training runs ------------------------------------------------------------------------

    def write_training_run(self, run: TrainingRun | Mapping[str, Any]) -> TrainingRun:
        """Write (or replace) a training run; the checked run."""
        checked = validate_training_run(dict(run) if isinstance(run, Mapping) else run)
        self._write_events(self._runs, RUN_DAYS, [
            (_run_entity(checked.name), b"r" + checked.name.encode(), {"name": checked.name},
             to_us(checked.started_at), checked.run_id, 0, checked.to_json())
        ])
        return checked

    def read_training_runs(
        self, name: str | None = None, start: Any = None, end: Any = None, limit: int | None = None
    ) -> list[TrainingRun]:
        """Training runs started in ``[start, end)``, newest first, of ``name``
        (all names when None)."""
        check_limit(limit)
        index_rows = self._index.scan(prefix=b"r") if name is None else self._index.read_rows([b"r" + name.encode()])
        found = self._read_events(
            self._runs, RUN_DAYS, index_rows, lambda m: _run_entity(m["name"]), start, end, self._runs_max_age_us
        )
        runs = sorted((TrainingRun.from_json(raw) for raw in found), key=lambda r: r.started_at, reverse=True)
        return runs[:limit] if limit is not None else runs

    # -- distribution sketches (see tablewatch.store.sketches) ---------------------------------

    def write_sketches(self, records: Sequence[sketches.SketchRecord | Mapping[str, Any]]) -> int:
        """Write distribution sketch records (SketchRecord or their ``to_dict()``
        forms); the number written. All are checked before any is written.
        Idempotent; partial sketches of the same window are merged on read."""
        return self._sketches.write(records)

    def read_sketch(self, model: str, feature: str, start: Any = None, end: Any = None) -> sketches.DistributionSketch:
        """The merged distribution of ``feature`` (``"__prediction__"`` for the
        prediction) of ``model`` over every window starting in ``[start, end)``."""
        return self._sketches.read(model, feature, start, end)

    def read_sketch_windows(self, model: str, feature: str, start: Any = None,
                            end: Any = None) -> list[tuple[Any, sketches.DistributionSketch]]:
        """One merged sketch per window starting in ``[start, end)``: (window
        start as a UTC datetime, sketch) pairs in time order (drift over time)."""
        return self._sketches.read_by_window(model, feature, start, end)

    def sketch_days(self, model: str, feature: str) -> list[int]:
        """The days (since the epoch, UTC) holding sketches of ``feature`` of ``model``, sorted."""
        return self._sketches.days(model, feature)

    def list_sketched_features(self, model: str | None = None) -> list[tuple[str, str]]:
        """(model, feature) pairs that have sketches, sorted."""
        return self._sketches.features(model)

    # -- maintenance --------------------------------------------------------------------------

    def compact(self) -> int:
        """Remove expired cells from every table (the embedded backend needs
        this; Bigtable and HBase collect garbage on their own). Cells removed."""
        self.merge_closed_buckets()
        return sum(self.backend.table(name).compact() for name in TABLES)

    # -- retention -------------------------------------------------------------------------

    def retention(self) -> dict[str, float | None]:
        """The max age in seconds of each kind of record (None: forever), read
        back from the families' GC policies. In a store made before run points
        had their own family, ``run_points`` follow ``points``."""
        found: dict[str, float | None] = {}
        for kind, ((table, family), *_) in RETENTION_FAMILIES.items():
            families = self.backend.table_info(table).families
            if family not in families and kind == "run_points":
                family = POINTS_FAMILY
            found[kind] = families[family].max_age_s if family in families else None
        return found

    def set_retention(self, changes: Mapping[str, float | None]) -> dict[str, float | None]:
        """Change the max age of some kinds of record (seconds, None: forever)
        on this existing store, as GC policies of every family concerned; the
        retention after the change. Shorter retention hides older records at
        once and removes them when the backend collects garbage (``compact``
        on the embedded one); a longer one only keeps what has not been
        collected yet. Other processes see the change when they next open the
        store. The HBase backend raises :class:`StoreError` with the HBase shell
        ``alter`` commands to run (Thrift v1 cannot alter a table)."""
        if self.read_only:
            raise StoreError(f"store {self.url!r} is read-only: cannot change its retention")
        if not isinstance(changes, Mapping) or not changes:
            raise ValidationError("retention", changes, f"must map some of {', '.join(RETENTION_KINDS)} to seconds")
        StoreConfig(retention_s=changes)  # checks kinds and ages
        retention = {**self.retention(), **changes}
        wanted = self._table_families(retention)
        per_table: dict[str, dict[str, GCPolicy]] = defaultdict(dict)
        for kind in changes:
            for table, family in RETENTION_FAMILIES[kind]:
                per_table[table][family] = wanted[table][family]
        if "points" in changes or "run_points" in changes:
            per_table[SERIES][POINT_DAYS] = wanted[SERIES][POINT_DAYS]
        modify_many = getattr(self.backend, "set_families_many", None)
        modify = getattr(self.backend, "set_families", None)
        if modify_many is not None:
            modify_many(per_table)
        elif modify is not None:
            for table, families in per_table.items():
                modify(table, families)
        else:
            raise StoreError(f"store {self.url!r}: the {type(self.backend).__name__} cannot change GC policies")
        self._load_retention()
        return self.retention()

    # -- inspection ---------------------------------------------------------------------

    def info(self, count_limit: int = ROW_COUNT_LIMIT) -> dict[str, Any]:
        """Tables, families with their GC policies, row counts, splits, the key
        layout and the retention of each kind of record. Rows are counted
        exactly where the backend can count cheaply (``count_rows``), else by a
        keys-only scan that stops at ``count_limit`` rows (``rows_exact``
        False: there are at least that many). ``splits_requested`` is how many
        pieces tablewatch asked for when it created the table (salted tables
        are pre-split on their salt buckets), ``splits`` how many pieces
        (tablets, regions) the backend reports now, from its sampled row keys;
        ``splits_note`` says why they may differ on this backend."""
        tables = []
        for name in self.backend.list_tables():
            table_info = self.backend.table_info(name)
            table = self.backend.table(name)
            count_rows = getattr(self.backend, "count_rows", None)
            if count_rows is not None:
                rows, exact = count_rows(name), True
            else:
                rows = sum(1 for _ in table.scan(keys_only=True, limit=count_limit))
                exact = rows < count_limit
            tables.append({
                "name": name,
                "families": {f: {"max_versions": p.max_versions, "max_age_s": p.max_age_s}
                             for f, p in table_info.families.items()},
                "rows": rows,
                "rows_exact": exact,
                "splits_requested": self.codec.salt_buckets if name in SALTED_TABLES else 1,
                "splits": len(table.sample_row_keys()) + 1,
            })
        return {
            "url": self.url,
            "backend": type(self.backend).__name__,
            "read_only": self.read_only,
            "schema": SCHEMA_VERSION,
            "salt_buckets": self.codec.salt_buckets,
            "bucket_seconds": self.codec.bucket_seconds,
            "retention_s": self.retention(),
            "run_points_family": RUN_POINTS_FAMILY in self._point_families,
            "splits_note": getattr(self.backend, "splits_note", ""),
            "tables": tables,
        }

    def hotspots(self, window_s: int | None = None) -> dict[str, Any]:
        """Points and rows per salt bucket of the points table, overall and per
        time window, with the skew of each (max / mean points per salt bucket:
        1.0 is perfectly even, ``salt_buckets`` means all in one bucket).

        By design one time bucket of one series lands in one salt bucket, and
        the salt moves on by one with each time bucket: a series spreads evenly
        over a window of ``salt_buckets`` time buckets (the default
        ``window_s``). So a short window, or few series, shows a high skew that
        is expected; a high skew over full windows of many series is a hotspot."""
        window_s = window_s or self.codec.salt_buckets * self.codec.bucket_seconds
        if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s % self.codec.bucket_seconds:
            raise ValidationError("window_s", window_s, f"must be a multiple of the time bucket ({self.codec.bucket_seconds} s)")
        buckets_per_window = window_s // self.codec.bucket_seconds
        points: Counter[int] = Counter()
        rows: Counter[int] = Counter()
        windows: dict[int, Counter[int]] = defaultdict(Counter)
        window_series: dict[int, set[bytes]] = defaultdict(set)
        for row in self._points.scan(columns=self._point_families, keys_only=True):  # counts are in the qualifiers
            salt, sid, bucket = self.codec.decode_point_key(row.key)
            count = sum(chunks.count_of(q) for family in row.cells.values() for q in family)
            rows[salt] += 1
            points[salt] += count
            window = bucket // buckets_per_window
            windows[window][salt] += count
            window_series[window].add(sid)
        counts = [points.get(s, 0) for s in range(self.codec.salt_buckets)]
        per_window = []
        for window in sorted(windows):
            window_counts = [windows[window].get(s, 0) for s in range(self.codec.salt_buckets)]
            per_window.append({
                "start": window * window_s,
                "end": (window + 1) * window_s,
                "series": len(window_series[window]),
                "points": sum(window_counts),
                "skew": _skew(window_counts),
            })
        return {
            "salt_buckets": self.codec.salt_buckets,
            "bucket_seconds": self.codec.bucket_seconds,
            "window_s": window_s,
            "points": counts,
            "rows": [rows.get(s, 0) for s in range(self.codec.salt_buckets)],
            "skew": _skew(counts),
            "windows": per_window,
        }

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r}, salt_buckets={self.codec.salt_buckets}, bucket_seconds={self.codec.bucket_seconds})"


def _in_range(parts: list[merge.Points], start_us: int, end_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points of a series read in parts, in time order, ``start_us <= ts < end_us``."""
    if not parts:
        empty = np.array([], dtype=np.int64)
        return empty, np.array([], dtype=np.float64), empty.copy()
    ts = np.concatenate([p.ts for p in parts]) if len(parts) > 1 else parts[0].ts
    values = np.concatenate([p.values for p in parts]) if len(parts) > 1 else parts[0].values
    steps = np.concatenate([p.steps for p in parts]) if len(parts) > 1 else parts[0].steps
    if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():
        order = np.argsort(ts, kind="stable")
        ts, values, steps = ts[order], values[order], steps[order]
    lo, hi = np.searchsorted(ts, [start_us, end_us])
    if lo > 0 or hi < len(ts):
        ts, values, steps = ts[lo:hi], values[lo:hi], steps[lo:hi]
    return ts, values, steps


def _tag_text(tags: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) + "}"


def _skew(counts: list[int]) -> float | None:
    """max / mean of counts (None when all are 0)."""
    mean = sum(counts) / len(counts)
    return (max(counts) / mean) if mean else None


def _longest(*ages: float | None) -> float | None:
    """The longest of some max ages (None, forever, is the longest)."""
    return None if any(a is None for a in ages) else max(ages)  # type: ignore[type-var]


def _location(backend: Backend) -> str:
    path = getattr(backend, "path", None)
    return f" (file {path})" if path is not None else ""


def _recorded_codec(url: str, raw: bytes | None) -> KeyCodec:
    """The key layout recorded in ``tw_meta``, checked: a store from a newer
    tablewatch, or with a damaged record, raises :class:`StoreSchemaError`."""
    where = f"store {url!r}: its configuration ({META} row 'config')"
    damaged = (" is damaged: {problem}. Restore the store (or at least {meta}) from a backup; tablewatch will not "
               "rewrite it, since a guessed salt_buckets or bucket_seconds would make every point unreadable")
    try:
        recorded = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreSchemaError(where + damaged.format(problem=f"not JSON ({e})", meta=META)) from e
    if not isinstance(recorded, dict):
        raise StoreSchemaError(where + damaged.format(problem=f"expected a JSON object, got {raw[:60]!r}", meta=META))
    schema = recorded.get("schema")
    if schema is None:
        raise StoreSchemaError(where + damaged.format(problem="it has no schema version", meta=META))
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise StoreSchemaError(where + damaged.format(problem=f"schema version {schema!r} is not one tablewatch writes "
                                                      f"(1 to {SCHEMA_VERSION})", meta=META))
    if schema > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"store {url!r} was written by a newer tablewatch (schema version {schema}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade tablewatch (pip install -U tablewatch) to open it; "
            "this version would misread it"
        )
    try:
        return KeyCodec(recorded["salt_buckets"], recorded["bucket_seconds"])
    except KeyError as e:
        raise StoreSchemaError(where + damaged.format(problem=f"{e.args[0]} is missing", meta=META)) from e
    except (ValidationError, TypeError) as e:
        raise StoreSchemaError(where + damaged.format(problem=str(e), meta=META)) from e


def _run_entity(name: str) -> bytes:
    return task_id("\x00run", name)


def _task_row_key(pipeline: str, task: str) -> bytes:
    return b"t" + pipeline.encode() + b"\x00" + task.encode()


def _merge_rows(rows: list[RowMutation]) -> list[RowMutation]:
    merged: dict[bytes, list] = defaultdict(list)
    for row in rows:
        merged[row.key].extend(row.mutations)
    return [RowMutation(k, m) for k, m in merged.items()]


def _float_array(values: Any, field: str, allow_inf: bool) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 1:
        array = values
    else:
        if isinstance(values, (int, float, np.number, np.bool_)):
            values = [values]
        if isinstance(values, (str, bytes)) or values is None:
            raise ValidationTypeError(field, values, "must be numbers")
        try:
            array = np.asarray(values)
        except (ValueError, TypeError) as e:
            raise ValidationTypeError(field, values, f"must be a one-dimensional array of numbers ({e})") from e
        if array.ndim != 1:
            raise ValidationError(field, values, f"must be one-dimensional, got {array.ndim} dimensions")
        if array.dtype.kind in "iufb":  # booleans are numbers too: stored as 0.0 / 1.0
            array = array.astype(np.float64)
        else:
            array = _objects_to_float(array, field)
    if not allow_inf:
        inf = np.isinf(array)
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise ValidationError(f"{field}[{i}]", float(array[i]), "is infinite (pass allow_inf=True to store it)")
    return array


def _objects_to_float(array: np.ndarray, field: str) -> np.ndarray:
    out = np.empty(len(array), dtype=np.float64)
    for i, item in enumerate(array):
        if isinstance(item, (str, bytes)) or item is None:
            raise ValidationTypeError(f"{field}[{i}]", item, "must be a number (use float('nan') for a missing value)")
        try:
            out[i] = float(item)
        except OverflowError as e:
            raise ValidationError(f"{field}[{i}]", item, "is too large for a 64-bit float") from e
        except (TypeError, ValueError) as e:
            raise ValidationTypeError(f"{field}[{i}]", item, "must be a number") from e
    return out


def _step_array(steps: Any, field: str) -> np.ndarray:
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        steps = [steps]
    array = np.asarray(steps)
    if array.ndim != 1:
        raise ValidationError(field, steps, "must be a one-dimensional array of integers")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.floor(array)).any():
            i = int(np.flatnonzero(~np.isfinite(array) | (array != np.floor(array)))[0])
            raise ValidationTypeError(f"{field}[{i}]", array[i], "must be a whole number")
        if len(array) and np.abs(array).max() >= 2**63:  # reported as sent, not as int64 wrapped it
            i = int(np.argmax(np.abs(array) >= 2**63))
            raise ValidationError(f"{field}[{i}]", int(array[i]), "must be below 2**63")
    elif array.dtype.kind not in "iu":
        for i, item in enumerate(array):
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
                raise ValidationTypeError(f"{field}[{i}]", item, "must be an integer")
            if not -(2**63) <= item < 2**63:  # reported as sent, not as int64 wrapped it
                raise ValidationError(f"{field}[{i}]", item, "must be below 2**63")
    elif array.dtype.kind == "u" and len(array) and array.max() >= 2**63:
        i = int(np.argmax(array >= 2**63))
        raise ValidationError(f"{field}[{i}]", int(array[i]), "must be below 2**63")
    array = array.astype(np.int64)
    if len(array) and array.min() < 0:
        i = int(np.flatnonzero(array < 0)[0])
        raise ValidationError(f"{field}[{i}]", int(array[i]), "must be >= 0")
    return array


def _points_frame(ts: np.ndarray, values: np.ndarray, steps: np.ndarray) -> pd.DataFrame:
    import pandas as pd  # imported when a frame is built: writers never pay for it

    mask = steps == chunks.NO_STEP
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts.astype("datetime64[us]")).tz_localize("UTC"),
            "value": values,
            "step": pd.arrays.IntegerArray(np.where(mask, 0, steps), mask),
        }
    )
