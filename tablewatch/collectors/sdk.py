"""The Collector: what a training job (or any Python process) pushes metrics with.

::

    import tablewatch

    collector = tablewatch.Collector("sqlite:///runs/tablewatch.db")
    for step in range(10_000):
        collector.log("train.loss", loss, step=step)
    collector.close()        # also done at interpreter exit, and by ``with``

``log()`` only appends to an in-memory buffer (it validates a metric name and
its tags once, then caches them), so it costs well under a microsecond. A
background daemon thread flushes the buffers every ``flush_interval`` seconds,
and as soon as one series holds ``flush_size`` points, by calling
``Store.write_points`` once per series.

When the store cannot be reached (:class:`~tablewatch.errors.StoreUnavailable`,
a locked or unwritable SQLite file, a Bigtable emulator not up yet), batches go
to a disk spool (:mod:`tablewatch.collectors.spool`) and are replayed, in order,
once the store is back. The store is opened lazily by the background thread and
retried with a backoff, so a collector can be created and logged to while its
store is down. The store's writes are idempotent, so a batch replayed twice (the
writer was killed between writing and deleting a spool file) is stored once.

Memory is bounded by ``max_buffered_points``: past it, batches are spooled from
the logging thread itself (a few milliseconds per 100,000 points), never
silently dropped. Points are dropped only when the bound is reached *and* the
spool cannot be written (a full disk); that is logged and counted in
``stats()["dropped"]``.

Nothing the background thread meets (an outage, a full spool disk, a batch the
store refuses) ever raises into the caller: problems are logged once per
episode on the ``"tablewatch"`` logger. Bad input is refused synchronously by
``log()`` with a :class:`~tablewatch.errors.ValidationError` naming the field.

Values may be NaN or ±inf (a diverging loss is worth seeing); timestamps are
epoch seconds, datetimes or ISO-8601 strings (UTC), default: now.
"""

from __future__ import annotations

import atexit
import contextvars
import errno
import logging
import math
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from tablewatch.collectors.spool import (
    CorruptSpoolFile,
    Entry,
    PointsEntry,
    SketchesEntry,
    Spool,
    TaskRunsEntry,
    TrainingRunEntry,
    batch_points,
    default_spool_root,
)
from tablewatch.collectors.training import Run
from tablewatch.errors import (
    StoreUnavailable,
    StoreURLError,
    TableNotFound,
    TablewatchError,
    ValidationError,
    ValidationTypeError,
)
from tablewatch.store.backends import BACKENDS, resolve_url, scheme_of
from tablewatch.store.names import MAX_TAGS, validate_metric, validate_tags
from tablewatch.store.pointbatch import gc_paused
from tablewatch.store.runs import TrainingRun, validate_training_run
from tablewatch.store.tasks import TaskRun, validate_task_run
from tablewatch.store.timestamps import MAX_TS_US, US_PER_S, to_us

log = logging.getLogger("tablewatch")

DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_FLUSH_SIZE = 100_000
DEFAULT_MAX_BUFFERED_POINTS = 1_000_000
DEFAULT_CLOSE_TIMEOUT_S = 5.0
#: Store retries back off from the first to the second figure (seconds).
RETRY_BACKOFF_S = (0.05, 2.0)
#: How often (seconds) the spool root is searched for the spools of dead collectors.
ORPHAN_SCAN_INTERVAL_S = 10.0
_NO_STEP = -1.0
#: Points written in one round trip at most (many series flushed together).
_GROUP_POINTS = 200_000
#: Series written in one round trip: the first guess, then sized to about a
#: second of the store's measured speed, within these bounds.
_GROUP_SERIES, _MIN_GROUP_SERIES, _GROUP_SERIES_MAX = 5_000, 500, 200_000
#: Series written in one round trip while they are new to the store (not
#: resolved yet): their index cells land all over the tag index's wide rows,
#: and each commit rewrites the pages it touched, so small calls cost far more
#: per series (measured on SQLite). Such calls do not resize the groups.
_NEW_SERIES_GROUP = 50_000
#: A series' buffer is handed off at this many points at least (fewer when
#: many series share ``max_buffered_points``).
_MIN_HANDOFF_POINTS = 2
_time = time.time


class CollectorClosed(TablewatchError):
    """``log()`` was called on a collector after ``close()``."""


#: Open collectors, restarted in a forked child (see ``Collector._restart_after_fork``).
_OPEN: weakref.WeakSet[Collector] = weakref.WeakSet()
_FORK_HOOK = threading.Lock()
_fork_hook_registered = False


def _register_fork_hook() -> None:
    """Once per process, when the first collector is made (nothing at import)."""
    global _fork_hook_registered
    with _FORK_HOOK:
        if not _fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_pause_for_fork, after_in_parent=_resume_after_fork,
                                after_in_child=_restart_in_child)
            _fork_hook_registered = True


_paused: list[Collector] = []
#: How long a fork waits for a flush round to end (seconds).
FORK_WAIT_S = 2.0


def _pause_for_fork() -> None:
    """Before a fork, wait for the flush rounds in progress to end (up to
    FORK_WAIT_S): a child forked while a flusher is inside SQLite inherits
    SQLite's locks held, and hangs on its first connection."""
    for collector in list(_OPEN):
        if collector._flush_lock.acquire(timeout=FORK_WAIT_S):
            _paused.append(collector)


def _resume_after_fork() -> None:
    while _paused:
        _paused.pop()._flush_lock.release()


def _close_at_worker_exit(collector: Collector) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(collector, collector._close_at_exit, exitpriority=100)


def _restart_in_child() -> None:
    _paused.clear()  # the child replaces those locks
    for collector in list(_OPEN):
        try:
            collector._restart_after_fork()
        except Exception:  # a fork must never fail because of a collector
            log.exception("tablewatch: could not restart a collector in the forked child")


class _Series:
    """One buffered series: its points as one flat list of (ts seconds, value,
    step) triples, step -1.0 for none. ``list.extend`` of a tuple appends all
    three under the GIL at once, so concurrent loggers never split a triple, and
    the flusher takes a prefix (``data[:n]`` then ``del data[:n]``) without
    losing a point appended meanwhile. (A flat list of floats is the cheapest
    Python container to append to: no per-point tuple for the garbage
    collector to track, and one ``np.fromiter`` call converts it.)"""

    __slots__ = ("metric", "tags", "data", "run", "last", "ref")

    def __init__(self, metric: str, tags: dict[str, str], run: Run | None) -> None:
        self.metric = metric
        self.tags = tags
        self.data: list[float] = []
        self.run = run
        self.last: tuple[float, float] | None = None  # (ts seconds, value) of the last point taken
        #: (store, what ``store.series_ref`` gave): resolved once per store, not per write.
        self.ref: tuple[Any, Any] | None = None


class _Batch:
    """Points taken from the buffers of one or more series at once, waiting to
    be written or spooled: one flat float64 array of (ts seconds, value, step)
    triples, series after series (``counts[i]`` points of ``series[i]``).
    Taking 100,000 series costs one list copy per series and one array for
    all of them; the per-series work left is slicing views (:meth:`entries`)."""

    __slots__ = ("series", "counts", "data")

    def __init__(self, series: list[_Series], counts: list[int], data: np.ndarray) -> None:
        self.series = series
        self.counts = counts
        self.data = data

    @property
    def points(self) -> int:
        return len(self.data) // 3

    @gc_paused()  # an entry and three views per series: no cycles, and a full collection per burst otherwise
    def entries(self) -> list[PointsEntry]:
        triples = self.data.reshape(-1, 3)
        # A float of epoch seconds is within 0.25 µs of the µs it came from up to
        # 2100, so rounding recovers exact microseconds (also for a given ts).
        ts_us = np.rint(triples[:, 0] * 1e6).astype(np.int64)
        values = np.ascontiguousarray(triples[:, 1])
        has_step = triples[:, 2] >= 0
        steps = triples[:, 2].astype(np.int64)
        bounds = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=bounds[1:])
        with_steps = np.add.reduceat(has_step, bounds[:-1], dtype=np.int64).tolist()
        edges = bounds.tolist()
        entries: list[PointsEntry] = []
        for i, series in enumerate(self.series):
            lo, hi = edges[i], edges[i + 1]
            metric, tags, stepped = series.metric, series.tags, with_steps[i]
            if stepped == hi - lo:
                entries.append(PointsEntry(metric, tags, ts_us[lo:hi], values[lo:hi], steps[lo:hi], series))
            elif not stepped:
                entries.append(PointsEntry(metric, tags, ts_us[lo:hi], values[lo:hi], None, series))
            else:  # a series logged with and without steps: one entry each
                mask = has_step[lo:hi]
                entries.append(PointsEntry(metric, tags, ts_us[lo:hi][mask], values[lo:hi][mask], steps[lo:hi][mask],
                                           series))
                entries.append(PointsEntry(metric, tags, ts_us[lo:hi][~mask], values[lo:hi][~mask], None, series))
        return entries


def _expand(work: list) -> list[Entry]:
    """Queue items as spool entries, in order; consecutive batches merged
    first, so that a series gets one entry however many rounds it waited."""
    entries: list[Entry] = []
    batches: list[_Batch] = []
    for item in [*work, None]:
        if isinstance(item, _Batch):
            batches.append(item)
            continue
        if batches:
            entries.extend(_merge_batches(batches).entries())
            batches = []
        if item is not None:
            entries.append(item)
    return entries


def _merge_batches(batches: list[_Batch]) -> _Batch:
    """One batch holding the points of ``batches``, grouped by series (each
    series' points kept in the order they were taken)."""
    if len(batches) == 1:
        return batches[0]
    index: dict[int, int] = {}
    series: list[_Series] = []
    owners: list[int] = []
    for batch in batches:
        for one in batch.series:
            i = index.get(id(one))
            if i is None:
                i = index[id(one)] = len(series)
                series.append(one)
            owners.append(i)
    owner = np.repeat(np.asarray(owners, dtype=np.int64),
                      np.concatenate([np.asarray(b.counts, dtype=np.int64) for b in batches]))
    order = np.argsort(owner, kind="stable")
    triples = np.concatenate([b.data for b in batches]).reshape(-1, 3)[order]
    counts = np.bincount(owner, minlength=len(series))
    return _Batch(series, counts.tolist(), triples.reshape(-1))


@gc_paused()  # a few objects per series: see gc_paused
def _write_series_points(store: Any, entries: list[PointsEntry]) -> None:
    """Write points entries through ``store.write_series_points``: one call,
    flat columns, each series' handle kept on its ``_Series`` (entries replayed
    from the spool have none: resolved here)."""
    refs = []
    for entry in entries:
        series = entry.series
        held = None if series is None else series.ref
        if held is not None and held[0] is store:
            refs.append(held[1])
            continue
        ref = store.series_ref(entry.metric, entry.tags)
        if series is not None:
            series.ref = (store, ref)
        refs.append(ref)
    has_steps = [entry.steps is not None for entry in entries]
    steps = None
    if any(has_steps):
        # (an entry without steps holds zeros in its place: write_series_points skips them by has_steps)
        steps = np.concatenate([np.zeros(len(entry.ts_us), dtype=np.int64) if entry.steps is None else entry.steps
                                for entry in entries])
    store.write_series_points(
        refs, [len(entry.ts_us) for entry in entries],
        np.concatenate([entry.ts_us for entry in entries]).view("datetime64[us]"),
        np.concatenate([entry.values for entry in entries]), steps, has_steps, allow_inf=True)


def _is_new(entry: Entry) -> bool:
    """Whether ``entry`` holds points of a logged series the store has not resolved yet."""
    series = getattr(entry, "series", None)
    return series is not None and series.ref is None


def _is_outage(error: BaseException) -> bool:
    """An error that says the store cannot be reached now (retry later), as
    opposed to one that says it will not take this batch (set it aside)."""
    return isinstance(error, (StoreUnavailable, TableNotFound, OSError))


class _StoreDown(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.done = 0  # entries of the call written before the store failed


class _Once:
    """Log a problem once per episode: ``warn(key, ...)`` logs only the first
    time until ``clear(key)``."""

    def __init__(self) -> None:
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, key: str, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        with self._lock:
            if key in self._active:
                return
            self._active.add(key)
        log.log(level, message, *args, exc_info=exc_info)

    def clear(self, key: str) -> bool:
        with self._lock:
            if key in self._active:
                self._active.discard(key)
                return True
            return False


class Collector:
    """Buffers metrics, task runs and training runs, and writes them to a store.

    ``store``: a :class:`~tablewatch.store.Store` (used as is, not closed by
    the collector), or a store URL (opened lazily in the background, closed by
    ``close()``); None means ``$TABLEWATCH_STORE``, else ``./tablewatch.db``,
    as for :func:`tablewatch.open_store`.

    ``flush_interval``: seconds between background flushes. ``flush_size``:
    points one series buffers before it is handed to the flusher at once.
    ``max_buffered_points``: points held in memory at most; past it, batches
    are spooled by the logging thread. ``spool_dir``: the spool root (default:
    ``<db>.spool/`` next to an SQLite store, else ``$TABLEWATCH_SPOOL/<hash>``,
    else ``~/.cache/tablewatch/spool/<hash>``). ``close_timeout``: how long
    ``close()`` (and interpreter exit) waits for a down store before leaving the
    rest in the spool. ``prediction_sketches``: a
    :class:`~tablewatch.collectors.predictions.PredictionSketches` configuring
    how :meth:`log_prediction` sketches (window, accuracy); default one on first use.

    Thread-safe; usable as a context manager. An ``atexit`` hook closes the
    collector at interpreter exit.
    """

    def __init__(
        self,
        store: Any = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        *,
        flush_size: int = DEFAULT_FLUSH_SIZE,
        max_buffered_points: int = DEFAULT_MAX_BUFFERED_POINTS,
        spool_dir: str | Path | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        prediction_sketches: Any = None,
    ) -> None:
        _check_number("flush_interval", flush_interval, minimum=0.001)
        _check_number("close_timeout", close_timeout, minimum=0)
        _check_int("flush_size", flush_size, minimum=1)
        _check_int("max_buffered_points", max_buffered_points, minimum=1)
        if store is None or isinstance(store, str):
            url = resolve_url(store)
            scheme = scheme_of(url)
            if scheme not in BACKENDS:
                raise StoreURLError(
                    f"store URL {url!r}: unknown scheme {scheme!r}; known schemes: {', '.join(sorted(BACKENDS))}"
                )
            self._store = None
            self._owns_store = True
        elif hasattr(store, "write_points") and hasattr(store, "url"):
            url = store.url
            self._store = store
            self._owns_store = False
        else:
            raise ValidationTypeError("store", store, "must be a Store, a store URL or None")
        self.url: str = url
        self.flush_interval = float(flush_interval)
        self.flush_size = flush_size
        self.max_buffered_points = max_buffered_points
        self.close_timeout = float(close_timeout)
        self.host = socket.gethostname()
        root = Path(spool_dir) if spool_dir is not None else default_spool_root(url)
        self.spool = Spool(root, url)

        self._lock = threading.Lock()        # buffers registry, queue, counters
        self._flush_lock = threading.Lock()  # one flush round at a time
        self._spool_lock = threading.Lock()  # spool files
        self._series: dict[Any, list] = {}  # fast key -> buffer, for points outside any run
        # The buffer table log() uses in this thread / asyncio task: a run's
        # table inside ``with collector.run()``, else ``_series``.
        self._context_table: contextvars.ContextVar[dict] = contextvars.ContextVar(
            f"tablewatch_collector_{id(self):x}", default=self._series
        )
        self._run_of_table: dict[int, Run] = {}  # id(run._series) -> open run
        self._registry: dict[int, _Series] = {}  # id(buffer) -> series
        self._canonical: dict[tuple, _Series] = {}
        self._handoff_len = 3 * flush_size
        self._queue_cap = max_buffered_points  # points the queue may hold (the buffers hold the rest)
        self._replay_done: dict[Path, int] = {}  # entries of a spool file already written (a long replay cut short)
        self._queue: list[Entry | _Batch] = []  # in order, waiting for the flusher
        self._inflight: list[Entry | _Batch] = []  # taken by the flusher, not yet written or spooled
        self._memory_points = 0  # points in _queue and _inflight
        self._taken_points = 0  # points ever taken from the buffers
        self._counts = {"written": 0, "spooled": 0, "replayed": 0, "dropped": 0, "rejected": 0,
                        "rejected_batches": 0}
        self._last_take = _time()       # when the buffers were last all taken (epoch s)
        self._written_through = _time()  # every point logged before this is in the store (epoch s)
        self._group_series = _GROUP_SERIES  # series per write call, adapted to the store's speed
        self._sketches: Any = prediction_sketches
        self._store_up = self._store is not None
        self._next_attempt = 0.0
        self._backoff = RETRY_BACKOFF_S[0]
        self._last_orphan_scan = -math.inf
        self._closing = False
        self._closed = False
        self._abandoned = False
        self._stored_at_close = False
        self._left_in_spool = 0
        self._once = _Once()
        self._wake = threading.Event()
        self._drained = False  # close() took its last look at the buffers: later hand-offs spool
        self._spool_released = False  # close() released the spool: a later spool file releases its own directory
        self._thread = threading.Thread(target=self._loop, name="tablewatch-collector", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)
        _OPEN.add(self)
        _register_fork_hook()

    def _restart_after_fork(self) -> None:
        """In a forked child (``os.fork``, a DataLoader or multiprocessing
        worker): fresh locks, a flusher thread of its own, a spool directory of
        its own and its own store connection. What the parent had buffered
        stays the parent's to write; the child writes what it logs."""
        if self._closing or self._closed:
            return
        self._lock = threading.Lock()  # the parent's threads may have held them at the fork
        self._flush_lock = threading.Lock()
        self._spool_lock = threading.Lock()
        self._once = _Once()
        self._wake = threading.Event()
        for series in self._registry.values():
            del series.data[:]
        self._queue, self._inflight, self._memory_points = [], [], 0
        self._taken_points = 0
        self._counts = dict.fromkeys(self._counts, 0)
        if self._sketches is not None:
            old = self._sketches
            self._sketches = type(old)(window_s=old.window_s, emit_every_s=old.emit_every_s, alpha=old.alpha,
                                       max_categories=old.max_categories)
        self.spool.forget_after_fork()
        self.spool = Spool(self.spool.root, self.url)
        # Never share the parent's connections (SQLite, gRPC, Thrift): open the store anew.
        self._store, self._owns_store, self._store_up = None, True, False
        self._next_attempt, self._backoff = 0.0, RETRY_BACKOFF_S[0]
        self._last_orphan_scan = -math.inf
        self._replay_done = {}
        self._written_through = self._last_take = _time()
        self._thread = threading.Thread(target=self._loop, name="tablewatch-collector", daemon=True)
        self._thread.start()
        # A multiprocessing worker leaves through os._exit (no atexit): close at
        # its exit, through a finalizer made once the worker has reset them.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _close_at_worker_exit)

    # -- logging points ---------------------------------------------------------------------

    def log(self, metric: str, value: float, *, step: int | None = None, ts: Any = None,
            tags: Mapping[str, str] | None = None) -> None:
        """Buffer one point of ``metric`` (with ``tags``): ``value`` a number
        (NaN and ±inf kept), ``step`` a training step (int >= 0) or None, ``ts``
        the event time (epoch seconds, datetime or ISO string, UTC; default
        now). Inside ``with collector.run(...)`` the point is tagged with the
        run (see :class:`~tablewatch.collectors.training.Run`). Raises
        ValidationError / ValidationTypeError naming the bad field."""
        table = self._context_table.get()
        try:
            data = table[metric if tags is None else (metric, *tags.items())]
        except (KeyError, TypeError, AttributeError):
            table, run = self._table_in_context()
            data = self._register(table, metric, tags, run)
        if value.__class__ is not float:
            value = _as_value(value)
        if step is None:
            step = _NO_STEP
        elif step.__class__ is int and step >= 0:
            step *= 1.0  # floats convert to numpy faster than a mix
        else:
            step = _as_step(step)
        data.extend((_time() if ts is None else _ts_seconds(ts), value, step))
        if len(data) >= self._handoff_len:
            self._hand_off(data)

    def log_many(self, values: Mapping[str, float], *, step: int | None = None, ts: Any = None,
                 tags: Mapping[str, str] | None = None) -> None:
        """Buffer one point per metric of ``values`` (``{"loss": 0.3, "acc": 0.9}``),
        all with the same timestamp, step and tags. Every value is checked
        before any is buffered."""
        table, run = self._table_in_context()
        self._log_many(table, run, values, step, ts, tags)

    def _table_in_context(self) -> tuple[dict, Run | None]:
        """(buffer table, open run) for this thread / task; an ended run's
        context falls back to the untagged table."""
        table = self._context_table.get()
        run = self._run_of_table.get(id(table)) if table is not self._series else None
        return (table, run) if run is not None else (self._series, None)

    def _log_many(self, table: dict, run: Run | None, values: Mapping[str, float], step: Any, ts: Any,
                  tags: Mapping[str, str] | None) -> None:
        if not isinstance(values, Mapping):
            raise ValidationTypeError("values", values, "must be a mapping of metric names to numbers")
        checked = []
        for metric, value in values.items():
            key = _fast_key(metric, tags)
            data = None if key is None else table.get(key)
            if data is None:
                data = self._register(table, metric, tags, run)
            checked.append((data, float(value) if value.__class__ is float else _as_value(value, f"values[{metric!r}]")))
        step = _NO_STEP if step is None else _as_step(step)
        t = _time() if ts is None else _ts_seconds(ts)
        for data, value in checked:
            data.extend((t, value, step))
            if len(data) >= self._handoff_len:
                self._hand_off(data)

    def _log_into(self, table: dict, run: Run | None, metric: str, value: Any, step: Any, ts: Any,
                  tags: Mapping[str, str] | None) -> None:
        """``log()`` into a given buffer table (a run's, or the untagged one)."""
        key = _fast_key(metric, tags)
        data = None if key is None else table.get(key)
        if data is None:
            data = self._register(table, metric, tags, run)
        value = value if value.__class__ is float else _as_value(value)
        step = _NO_STEP if step is None else _as_step(step)
        data.extend((_time() if ts is None else _ts_seconds(ts), value, step))
        if len(data) >= self._handoff_len:
            self._hand_off(data)

    def _register(self, table: dict, metric: Any, tags: Any, run: Run | None) -> list:
        """The buffer of a series not seen yet in ``table`` (validating it)."""
        metric = validate_metric(metric)
        clean = validate_tags(tags)
        if run is not None:
            if run.ended:
                raise TablewatchError(f"training run {run.name!r} ({run.run_id}) has ended; log to the collector")
            merged = {**run.point_tags, **clean}
            if len(merged) > MAX_TAGS:
                raise ValidationError("tags", clean, f"with the run's tags {sorted(run.point_tags)} makes over {MAX_TAGS}")
            clean = dict(sorted(merged.items()))
        canonical = (id(table), metric, tuple(clean.items()))
        with self._lock:
            if self._closed or self._closing:
                raise CollectorClosed(f"collector for {self.url!r} is closed")
            series = self._canonical.get(canonical)
            if series is None:
                series = _Series(metric, clean, run)
                self._canonical[canonical] = series
                self._registry[id(series.data)] = series
                if run is not None:
                    run._buffers.append(series)
                # Keep the sum of all buffers near the memory bound however many series there are.
                # (100,000 series each get a few points: a stuck store still bounds memory.)
                per_series = max(_MIN_HANDOFF_POINTS, self.max_buffered_points // (4 * len(self._registry)))
                self._handoff_len = 3 * min(self.flush_size, per_series)
                # What the buffers can hold is taken from what the queue may hold.
                self._queue_cap = max(1, self.max_buffered_points - len(self._registry) * min(self.flush_size, per_series))
            key = _fast_key(metric, tags)
            if key is not None:
                table[key] = series.data
        return series.data

    def _hand_off(self, data: list) -> None:
        """A buffer is full: queue its points for the flusher, or, when memory
        is at its bound, spool them here with every other buffer (one file)."""
        with self._lock:
            series = self._registry.get(id(data))
            raw = None if series is None else self._take(series)
            if raw is None:
                return
            # After close() drained the buffers, a log() that raced it spools its point.
            over = self._drained or self._memory_points + raw.points > self._queue_cap
            # Over the bound, or many series sharing it (their buffers fill
            # together): take every buffer in one batch, not one series at a time.
            if over or 0 < self._handoff_len < 3 * self.flush_size:
                rest = self._take_all(list(self._registry.values()))
                if rest is not None:
                    raw = _Batch(raw.series + rest.series, raw.counts + rest.counts, np.concatenate([raw.data, rest.data]))
                over = over or self._memory_points + raw.points > self._queue_cap
            if not over:
                self._queue.append(raw)
                self._memory_points += raw.points
        if over:
            self._spool_or_drop(raw)
        self._wake.set()

    def _take(self, series: _Series) -> _Batch | None:
        """The points buffered in one series, removed from its buffer. Caller holds ``_lock``."""
        return self._take_all((series,))

    def _take_all(self, all_series: Any) -> _Batch | None:
        """The points buffered in ``all_series``, as one batch, removed from
        their buffers. Caller holds ``_lock``. ``data[:n]`` copies the first n
        items (other threads only ever append after them), then ``del``
        removes exactly those: a point appended meanwhile stays for next time."""
        flat: list[float] = []
        taken: list[_Series] = []
        counts: list[int] = []
        for series in all_series:
            data = series.data
            n = len(data)
            if n:
                flat += data[:n]
                del data[:n]
                series.last = (flat[-3], flat[-2])
                taken.append(series)
                counts.append(n // 3)
        if not taken:
            return None
        self._taken_points += len(flat) // 3
        return _Batch(taken, counts, np.array(flat, dtype=np.float64))

    def _spool_or_drop(self, raw: _Batch) -> None:
        entries = raw.entries()
        try:
            with self._spool_lock:
                path = self.spool.write(entries)
                if self._spool_released:
                    # A log() that raced close() and spools after it: release
                    # the file's directory too, or no next collector adopts it.
                    self.spool.close()
        except OSError as e:
            with self._lock:
                self._counts["dropped"] += raw.points
            self._once("dropped", logging.ERROR,
                       "tablewatch: memory is at its bound (max_buffered_points=%d) and the spool %s cannot be "
                       "written (%s): dropping points (counted in stats()['dropped'])",
                       self.max_buffered_points, self.spool.root, e)
            return
        with self._lock:
            self._counts["spooled"] += raw.points
        self._once("over-bound", logging.WARNING,
                   "tablewatch: more than %d points waiting for store %s; spooling to %s",
                   self.max_buffered_points, self.url, path.parent)

    # -- records: task runs, training runs ---------------------------------------------------

    def write_task_run(self, run: TaskRun | Mapping[str, Any]) -> TaskRun:
        """Queue a task run (checked now, written by the flusher); the checked run."""
        checked = validate_task_run(run)
        self._enqueue(TaskRunsEntry([checked]))
        return checked

    def write_training_run(self, run: TrainingRun | Mapping[str, Any]) -> TrainingRun:
        """Queue a training run record (checked now); the checked run."""
        checked = validate_training_run(dict(run) if isinstance(run, Mapping) else run)
        self._enqueue(TrainingRunEntry(checked))
        return checked

    def _enqueue(self, entry: Entry) -> None:
        with self._lock:
            if self._closed:
                raise CollectorClosed(f"collector for {self.url!r} is closed")
            self._queue.append(entry)
        self._wake.set()

    def run(self, name: str, *, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
            system_metrics_interval: float | None = None, run_id: str | None = None) -> Run:
        """A training run, used as ``with collector.run("resnet50", params={...}) as run:``.
        See :class:`~tablewatch.collectors.training.Run`."""
        return Run(self, name, params=params, tags=tags, system_metrics_interval=system_metrics_interval,
                   run_id=run_id)

    def _enter_run(self, run: Run) -> contextvars.Token:
        with self._lock:
            self._run_of_table[id(run._series)] = run
        return self._context_table.set(run._series)

    def _leave_run(self, run: Run, token: contextvars.Token) -> None:
        try:
            self._context_table.reset(token)
        except ValueError:  # left in another context than it was entered in
            self._context_table.set(self._series)
        with self._lock:
            self._run_of_table.pop(id(run._series), None)

    def _end_run(self, run: Run) -> dict[str, float]:
        """Take a finished run's buffers into the queue and forget them; the last
        value of each metric logged in the run."""
        last: dict[str, tuple[float, float]] = {}
        with self._lock:
            for series in run._buffers:
                raw = self._take(series)
                if raw is not None:
                    self._queue.append(raw)
                    self._memory_points += raw.points
                self._registry.pop(id(series.data), None)
                if series.last is not None and not series.metric.startswith("system."):
                    seen = last.get(series.metric)
                    if seen is None or series.last[0] >= seen[0]:
                        last[series.metric] = series.last
            for key in [k for k in self._canonical if k[0] == id(run._series)]:
                del self._canonical[key]
            run._series.clear()
            run._buffers = []
        self._wake.set()
        return {metric: value for metric, (_, value) in last.items()}

    # -- tasks ---------------------------------------------------------------------------------

    def task(self, pipeline: str, task: str, *, run_id: str | None = None, attempt: int = 1,
             queued_at: Any = None, tags: Mapping[str, str] | None = None):
        """Time one attempt of a task: ``with collector.task("etl", "extract"):``
        or as a decorator. See :class:`~tablewatch.collectors.tracking.TaskTimer`."""
        from tablewatch.collectors.tracking import TaskTimer

        return TaskTimer(self, pipeline, task, run_id=run_id, attempt=attempt, queued_at=queued_at, tags=tags)

    def track(self, fn: Callable | None = None, *, pipeline: str, task: str | None = None, retries: int = 0,
              retry_on: Any = (Exception,), backoff: Any = 0.1, max_backoff: float = 5.0,
              tags: Mapping[str, str] | None = None):
        """Decorator: time every call of a (sync or async) function as task runs,
        retrying it. See :func:`~tablewatch.collectors.tracking.track`."""
        from tablewatch.collectors.tracking import track

        return track(self, fn, pipeline=pipeline, task=task, retries=retries, retry_on=retry_on, backoff=backoff,
                     max_backoff=max_backoff, tags=tags)

    def _log_untagged(self, metric: str, value: float, tags: Mapping[str, str]) -> None:
        """A point that never takes the active run's tags (task metrics)."""
        self._log_into(self._series, None, metric, value, None, None, tags)

    # -- predictions ---------------------------------------------------------------------------

    def log_prediction(self, model: str, features: Mapping[str, Any] | None, prediction: Any, ts: Any = None) -> None:
        """Count one prediction of ``model`` into per-window distribution sketches
        of each feature and of the prediction (see
        :mod:`tablewatch.collectors.predictions`). Sketches are written by the
        flusher when their window closes, every ``emit_every_s`` while it is
        open, and on ``flush()`` / ``close()``; spooled like points. Raises
        ValidationError naming a bad feature or value."""
        if self._closing:
            raise CollectorClosed(f"collector for {self.url!r} is closed")
        sketches = self._sketches
        if sketches is None:
            sketches = self._prediction_sketches()
        sketches.add(model, features, prediction, None if ts is None else to_us(ts, "ts"))

    def _prediction_sketches(self) -> Any:
        from tablewatch.collectors.predictions import PredictionSketches

        with self._lock:
            if self._sketches is None:
                self._sketches = PredictionSketches()
            return self._sketches

    # -- flushing --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything logged so far, now: to the store, or to the spool
        when the store is down (trying it once, whatever the backoff). True when
        everything (and the spool) is in the store. ``timeout``: seconds to wait
        for a flush already running in the background (None: no limit)."""
        if not self._flush_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self._closed:
                return self._stored_at_close
            self._round(force=True)
            return self._all_stored()
        finally:
            self._flush_lock.release()

    def _loop(self) -> None:
        while not self._closing:
            try:
                with self._flush_lock:
                    if self._closing:
                        break
                    self._round(force=False)
            except Exception:  # never let the flusher die
                self._once("flusher", logging.ERROR, "tablewatch: unexpected error in the collector's flush thread",
                           exc_info=True)
            self._wake.wait(self.flush_interval)
            self._wake.clear()

    def _round(self, *, force: bool, deadline: float | None = None) -> None:
        """One flush: take the buffers; replay the spool and write the queue if
        the store is up; spool what is left (also what is not written by
        ``deadline``, a ``time.monotonic()``). Caller holds ``_flush_lock``."""
        self._take_buffers(force_sketches=force)
        if self._abandoned:
            return
        written = (
            self._ensure_store(force)
            and (force or time.monotonic() >= self._next_attempt)
            and self._replay(force, deadline)
            and self._write_queue(deadline)
        )
        if not written and not (self._closing and not self._closed):
            # Down, backing off, or own spool not empty: spool behind what is
            # spooled, so that replay keeps the order things were logged in.
            # (A round cut short for close() leaves the queue to close().)
            self._spool_queue()

    def _take_buffers(self, *, force_sketches: bool = False) -> None:
        """Take every buffer into the queue as one batch; spool it instead when
        memory would pass ``max_buffered_points`` (the store is not keeping up)."""
        over = False
        with self._lock:
            self._last_take = _time()
            batch = self._take_all(list(self._registry.values()))
            if batch is not None:
                over = self._memory_points > 0 and self._memory_points + batch.points > self._queue_cap
                if not over:
                    self._queue.append(batch)
                    self._memory_points += batch.points
        if over:
            self._spool_or_drop(batch)
        if self._sketches is not None:
            records = self._sketches.drain(force=force_sketches)
            if records:
                with self._lock:
                    self._queue.append(SketchesEntry([r.to_dict() for r in records]))

    def _ensure_store(self, force: bool) -> bool:
        if self._store is not None:
            return True
        if not force and time.monotonic() < self._next_attempt:
            return False
        from tablewatch.store import open_store

        try:
            store = open_store(self.url)
        except Exception as e:  # StoreUnavailable, or a driver's own error: retry later
            self._down(e)
            return False
        self._store = store
        return True

    def _down(self, cause: BaseException) -> None:
        self._store_up = False
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RETRY_BACKOFF_S[1])
        self._once("store-down", logging.WARNING,
                   "tablewatch: store %s is unavailable (%s); spooling to %s and retrying in the background",
                   self.url, getattr(cause, "reason", None) or f"{type(cause).__name__}: {cause}", self.spool.root)

    def _up(self) -> None:
        self._backoff = RETRY_BACKOFF_S[0]
        self._next_attempt = 0.0
        if not self._store_up:
            self._store_up = True
            if self._once.clear("store-down"):
                log.info("tablewatch: store %s is back", self.url)
            self._once.clear("spool-full")

    def _replay(self, force: bool, deadline: float | None = None) -> bool:
        """Replay spooled files (own and those of dead collectors) in order; True
        when this collector's own spool is empty afterwards."""
        now = time.monotonic()
        with self._spool_lock:
            if self._abandoned:
                return False  # close() gave the spool up: never adopt anything for a dead flusher
            if now - self._last_orphan_scan >= ORPHAN_SCAN_INTERVAL_S or force:
                self._last_orphan_scan = now
                try:
                    adopted = self.spool.adopt_orphans()
                except OSError:
                    adopted = 0
                if adopted:
                    log.info("tablewatch: replaying the spool of %d stopped collector(s) from %s", adopted, self.spool.root)
            files = self.spool.pending()
        for item in files:
            if self._abandoned or (deadline is not None and time.monotonic() >= deadline):
                return False  # (before reading it: a file of 100,000 series takes a while to decode)
            try:
                with self._spool_lock:
                    entries = self.spool.read(item.path)
            except CorruptSpoolFile as e:
                log.error("tablewatch: skipping a corrupt spool file: %s", e)
                continue
            except OSError as e:
                self._once("spool-read", logging.ERROR, "tablewatch: cannot read spool file %s: %s", item.path, e)
                return False
            start = self._replay_done.get(item.path, 0)

            def replayed(lo: int, hi: int, refused: int, start: int = start, entries: list = entries) -> None:
                with self._lock:
                    self._counts["replayed"] += batch_points(entries[start + lo:start + hi]) - refused

            try:
                done, refused = self._write_in_chunks(entries[start:], deadline, replayed)
            except _StoreDown as e:
                self._replay_done[item.path] = start + e.done
                self._down(e.cause)
                return False
            if start + done < len(entries):
                self._replay_done[item.path] = start + done  # past the deadline: resumed later
                return False
            self._replay_done.pop(item.path, None)
            with self._spool_lock:
                self.spool.remove(item.path)
            self._up()
        with self._spool_lock:
            self.spool.release_finished()
        return True

    def _write_queue(self, deadline: float | None = None) -> bool:
        """Write the queue in order; False when the store failed or ``deadline``
        passed (the rest is put back at the head of the queue)."""
        with self._lock:
            work, self._queue = self._queue, []
            self._inflight = work
            taken_at = self._last_take
        entries = _expand(work)
        with self._lock:
            self._inflight = entries
        done = 0

        def written(lo: int, hi: int, refused: int) -> None:
            points = batch_points(entries[lo:hi])
            with self._lock:
                self._counts["written"] += points - refused
                if not self._abandoned:  # else close() spooled them all and zeroed the count
                    self._memory_points -= points

        try:
            done, _ = self._write_in_chunks(entries, deadline, written)
            if done < len(entries):
                return False
            self._up()
            # Every point logged before taken_at was in ``work`` (the buffers then held only later ones,
            # and whatever was queued since is behind it), so it is all in the store now, spool aside.
            # (Waiting for an empty queue instead made the lag grow without end at 100k series x 1 Hz,
            # where the next take is always queued before a write ends, though nothing fell behind.)
            if not self.spool.own_files():
                self._written_through = taken_at
            return True
        except _StoreDown as e:
            done = e.done
            self._down(e.cause)
            return False
        finally:
            with self._lock:
                if not self._abandoned:
                    self._queue = _merge_records(entries[done:]) + self._queue
                self._inflight = []

    def _write_in_chunks(self, entries: list[Entry], deadline: float | None,
                         written: Callable[[int, int, int], None] | None = None) -> tuple[int, int]:
        """Write entries in order, in calls of about a second each (sized by
        the store's measured speed); between calls, take the buffers again when
        a flush interval has passed, so that memory stays bounded however long
        the whole takes. (entries done, points refused); stops early at
        ``deadline``; _StoreDown carries ``done``."""
        done = refused = 0
        while done < len(entries):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if self._abandoned or (self._closing and not self._closed):
                break  # close() is waiting for this round: it writes the rest itself
            hi, points = done + 1, entries[done].points
            new = _is_new(entries[done])
            group = max(self._group_series, _NEW_SERIES_GROUP) if new else self._group_series
            while (hi < len(entries) and hi - done < group
                   and points + entries[hi].points <= _GROUP_POINTS):
                points += entries[hi].points
                hi += 1
            started = time.monotonic()
            try:
                chunk_refused = self._write_entries(entries[done:hi])
            except _StoreDown as e:
                e.done = done
                raise
            elapsed = time.monotonic() - started
            if hi - done > 1 and elapsed > 0 and not new:  # aim at about a second per call
                self._group_series = max(_MIN_GROUP_SERIES, min(_GROUP_SERIES_MAX, int((hi - done) / elapsed)))
            if written is not None:
                written(done, hi, chunk_refused)
            refused += chunk_refused
            done = hi
            if _time() - self._last_take >= self.flush_interval:
                self._take_buffers()
        return done, refused

    def _write_entries(self, entries: list[Entry]) -> int:
        """Write entries in order: consecutive points entries in one round trip
        (``Store.write_points_many``) where the store has it. Entries the store
        refuses are set aside; the points refused."""
        refused = 0
        i = 0
        while i < len(entries):
            j = i
            while j < len(entries) and isinstance(entries[j], PointsEntry):
                j += 1
            if j - i > 1 and hasattr(self._store, "write_points_many"):
                refused += self._write_points_many(entries[i:j])
                i = j
            else:
                refused += self._write_entry(entries[i])
                i += 1
        return refused

    def _write_points_many(self, entries: list[PointsEntry]) -> int:
        if len(entries) == 1:
            return self._write_entry(entries[0])
        store = self._store
        try:
            if hasattr(store, "write_series_points"):  # columns, each series resolved once per store
                _write_series_points(store, entries)
            else:
                store.write_points_many(
                    [{"metric": e.metric, "tags": e.tags, "ts": e.ts_us.view("datetime64[us]"), "values": e.values,
                      "steps": e.steps} for e in entries],
                    allow_inf=True,
                )
            return 0
        except Exception as e:
            if _is_outage(e):
                raise _StoreDown(e) from e
        # Refused: find the bad series by halves, so that it does not take the others with it.
        middle = len(entries) // 2
        return self._write_points_many(entries[:middle]) + self._write_points_many(entries[middle:])

    def _write_entry(self, entry: Entry) -> int:
        """Write one entry; the points refused (the entry is then set aside)."""
        store = self._store
        try:
            if isinstance(entry, PointsEntry):
                store.write_points(entry.metric, entry.tags, entry.ts_us.view("datetime64[us]"), entry.values,
                                   entry.steps, allow_inf=True)
            elif isinstance(entry, TaskRunsEntry):
                store.write_task_runs(entry.runs)
            elif isinstance(entry, TrainingRunEntry):
                store.write_training_run(entry.run)
            elif isinstance(entry, SketchesEntry):
                store.write_sketches(entry.records)
            else:
                raise ValidationError("entry", getattr(entry, "kind", type(entry).__name__), "is of an unknown kind")
        except Exception as e:
            if _is_outage(e):
                raise _StoreDown(e) from e
            # The store will never take this entry: retrying it would block the rest forever.
            self._set_aside(entry, e)
            return entry.points
        return 0

    def _set_aside(self, entry: Entry, error: BaseException) -> None:
        """Keep a refused entry where a person can look at it (``rejected/``
        under the spool root: the batch in spool format and the reason)."""
        reason = f"{type(error).__name__}: {error}"
        try:
            with self._spool_lock:
                path: Path | None = self.spool.set_aside([entry], reason)
        except OSError as e:
            path = None
            log.error("tablewatch: cannot keep a refused batch in %s (%s)", self.spool.rejected_dir, e)
        with self._lock:
            self._counts["rejected"] += entry.points
            self._counts["rejected_batches"] += 1
        self._once(f"rejected-{type(entry).__name__}", logging.ERROR,
                   "tablewatch: the store refused a %s (%s); it is set aside in %s, never retried (later refusals "
                   "are counted in stats()['rejected'] and kept there without a message)",
                   type(entry).__name__, reason, path.parent if path else self.spool.rejected_dir)

    def _spool_queue(self) -> None:
        """Spool everything queued, as one file, in order."""
        with self._lock:
            if self._abandoned:
                return  # close() spooled it all and gave the spool up
            work, self._queue = self._queue, []
            self._inflight = work
        if not work:
            with self._lock:
                self._inflight = []
            return
        spooled = False
        try:
            entries = _expand(work)
            with self._spool_lock:
                path = self.spool.write(entries)
            spooled = True
        except OSError as e:
            reason = "the disk is full" if e.errno == errno.ENOSPC else str(e)
            self._once("spool-full", logging.ERROR,
                       "tablewatch: cannot write the spool %s (%s): keeping points in memory (up to %d)",
                       self.spool.root, reason, self.max_buffered_points)
        finally:
            with self._lock:
                if spooled:
                    points = sum(item.points for item in work)
                    self._counts["spooled"] += points
                    self._memory_points -= points
                elif not self._abandoned:
                    self._queue = _merge_records(work) + self._queue
                self._inflight = []
        if spooled:
            self._once.clear("spool-full")
            log.debug("tablewatch: spooled %d entries to %s", len(entries), path)

    def _all_stored(self) -> bool:
        with self._lock:
            in_memory = bool(self._queue or self._inflight)
        with self._spool_lock:
            return not in_memory and not self.spool.has_pending()

    # -- closing ------------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Flush everything and stop. Waits up to ``timeout`` seconds (default
        ``close_timeout``) for a down store to come back; what still cannot be
        written stays in the spool for the next collector (a warning says how
        much, and where). True when everything reached the store."""
        with self._lock:
            if self._closed or self._closing:
                return self._stored_at_close
            self._closing = True
            # Later log() calls miss the buffer tables and are refused in _register;
            # the buffers themselves stay registered for the last flush. A log()
            # already past the table lookup hands its point off at once.
            self._series.clear()
            self._handoff_len = 0
            for series in self._registry.values():
                if series.run is not None:
                    series.run._series.clear()
        try:
            atexit.unregister(self._close_at_exit)
        except Exception:
            pass
        timeout = self.close_timeout if timeout is None else max(0.0, float(timeout))
        deadline = time.monotonic() + timeout
        # A store that is up but slower than the backlog gets the timeout (at
        # least a second) too; what it has not taken by then stays in the spool.
        write_deadline = max(deadline, time.monotonic() + 1.0)
        self._wake.set()
        stored = False
        # A flusher in the middle of a healthy write gets at least a second to finish it.
        if self._flush_lock.acquire(timeout=max(1.0, timeout)):
            try:
                self._closed = True
                delay = RETRY_BACKOFF_S[0]
                while True:
                    self._round(force=True, deadline=write_deadline)
                    stored = self._all_stored()
                    remaining = deadline - time.monotonic()
                    if stored or remaining <= 0:
                        break
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, 0.5)
            finally:
                self._flush_lock.release()
        else:
            # The flusher is stuck in a store call: spool what is in memory from
            # here. If its call returns later, the store's idempotent writes make
            # the double harmless.
            with self._lock:
                self._closed = True
                self._abandoned = True
                work = self._inflight + self._queue
                self._queue, self._inflight = [], []
            self._take_buffers(force_sketches=True)
            with self._lock:
                work += self._queue
                self._queue = []
            self._emergency_spool(work)
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.1)
        # A log() that raced close(): its point is in a buffer now (spooled here)
        # or hands itself off to the spool; never silently left behind.
        with self._lock:
            self._drained = True
            late = self._take_all(list(self._registry.values()))
            work, self._queue = self._queue, []  # hand-offs since the last round
            self._memory_points -= sum(item.points for item in work)
        if late is not None:
            work.append(late)
        self._emergency_spool(work)
        with self._spool_lock:
            files, points = self.spool.count()
            spool_dir = self.spool.own_dir or self.spool.root
            self.spool.close()  # lets the next collector (in this process too) adopt what is left
            self._spool_released = True
        self._left_in_spool = files
        self._stored_at_close = stored
        with self._lock:
            lost = self._memory_points
            self._counts["dropped"] += lost
            self._memory_points = 0
        if files:
            log.warning("tablewatch: store %s did not take everything before close(): %d points (%d files) left in "
                        "the spool %s; the next collector on this spool replays them", self.url, points, files,
                        spool_dir)
        if lost:
            log.error("tablewatch: %d points could neither be written nor spooled before close() and are lost "
                      "(counted in stats()['dropped'])", lost)
        _OPEN.discard(self)
        if self._owns_store and self._store is not None and not self._abandoned:
            try:
                self._store.close()
            except Exception:
                pass
        return stored

    def _emergency_spool(self, work: list) -> None:
        if not work:
            return
        entries = _expand(work)
        points = batch_points(entries)
        try:
            with self._spool_lock:
                self.spool.write(entries)
        except OSError as e:
            with self._lock:
                self._counts["dropped"] += points
            log.error("tablewatch: the store is stuck and the spool %s cannot be written (%s): %d points lost",
                      self.spool.root, e, points)
            return
        with self._lock:
            self._counts["spooled"] += points
            self._memory_points = 0

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception:
            log.exception("tablewatch: closing the collector at exit failed")

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters (points): ``logged`` (accepted by log()), ``written`` (by
        this collector, directly), ``spooled``, ``replayed`` (from any spool file
        into the store), ``dropped`` (memory bound reached and spool unwritable),
        ``rejected`` (refused by the store, set aside in ``rejected_dir``;
        ``rejected_batches`` of them), ``buffered`` (the backlog in memory now,
        at most about ``max_buffered_points``); ``lag_s``: how far the store
        trails the logging, in seconds (the age of the oldest point logged and
        not yet in the store; about ``flush_interval`` when it keeps up, 0 when
        nothing waits); ``spool_files`` waiting, ``store_up``, ``spool_dir``."""
        now = _time()
        with self._lock:
            buffered = sum(len(s.data) for s in self._registry.values()) // 3
            counts = dict(self._counts)
            logged = self._taken_points + buffered
            in_memory = self._memory_points + buffered
            written_through = self._written_through
        with self._spool_lock:
            files = self._left_in_spool if self._closed else len(self.spool.pending())
        lag = max(0.0, now - written_through) if in_memory or files else 0.0
        return {"logged": logged, **counts, "buffered": in_memory, "lag_s": round(lag, 3), "spool_files": files,
                "store_up": self._store_up and self._store is not None, "spool_dir": str(self.spool.root),
                "rejected_dir": str(self.spool.rejected_dir)}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Collector({self.url!r}, flush_interval={self.flush_interval}, {state})"


# -- value checks (the slow paths of log()) ---------------------------------------------------------


def _as_value(value: Any, field: str = "value") -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise ValidationTypeError(field, value, "must be a number (use float('nan') for a missing value)")
    try:
        return float(value)
    except OverflowError as e:
        raise ValidationError(field, value, "is too large for a 64-bit float") from e
    except (TypeError, ValueError) as e:
        raise ValidationTypeError(field, value, "must be a number (use float('nan') for a missing value)") from e


def _as_step(step: Any) -> float:
    if isinstance(step, (bool, np.bool_)):
        raise ValidationTypeError("step", step, "must be an integer >= 0 or None")
    if isinstance(step, (int, np.integer)):
        number = int(step)
    elif isinstance(step, (float, np.floating)) and math.isfinite(step) and float(step).is_integer():
        number = int(step)
    else:
        raise ValidationTypeError("step", step, "must be an integer >= 0 or None")
    if number < 0:
        raise ValidationError("step", step, "must be >= 0")
    if number >= 2**53:
        raise ValidationError("step", step, "must be below 2**53")
    return float(number)


#: Epoch seconds below this are in range whatever their rounding to µs.
_FAST_TS_MAX_S = MAX_TS_US / US_PER_S - 1.0


def _ts_seconds(ts: Any) -> float:
    """``ts`` as epoch seconds. A float in range (the common case, ``time.time()``)
    is taken as it is: it is rounded to the µs when written (``_Batch.entries``),
    as ``to_us`` would round it here, so skipping it saves most of a ``log()``."""
    if ts.__class__ is float and 0.0 <= ts < _FAST_TS_MAX_S:  # (NaN and inf fail the test: to_us names them)
        return ts
    return to_us(ts, "ts") / 1e6


def _fast_key(metric: Any, tags: Any) -> Any:
    """The key a buffer table caches a series under (as ``log()`` computes
    it), or None when it cannot be one."""
    try:
        key = metric if tags is None else (metric, *tags.items())
        hash(key)
    except (TypeError, AttributeError):
        return None
    return key


def _merge_records(items: list) -> list:
    """Adjacent task-run entries merged into one (one write_task_runs call)."""
    merged: list = []
    for item in items:
        if isinstance(item, TaskRunsEntry) and merged and isinstance(merged[-1], TaskRunsEntry):
            merged[-1] = TaskRunsEntry(merged[-1].runs + item.runs)
        else:
            merged.append(item)
    return merged


def _check_number(name: str, value: Any, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValidationError(name, value, f"must be a number >= {minimum}")


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(name, value, f"must be an integer >= {minimum}")
