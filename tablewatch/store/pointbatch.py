"""Points of many series checked and packed a column at a time.

``Store.write_points_many`` with 100k series of one point each must cost
per-point, not per-series, Python work. :func:`columns_of` takes the batches
apart in one pass (the only per-batch Python: a dict lookup for the series id),
checks timestamps, values and steps as whole arrays, and :func:`chunk_cells`
groups the points by (batch, time bucket) and computes every row key at once.
Each (batch, bucket) group becomes one chunk, exactly as writing the batches one
by one would: the same cells, so replays and the old path stay idempotent with it.

Anything unusual (a bad value, a datetime among numbers, an unknown key) makes
:func:`columns_of` return None: the caller then checks batch by batch, which
names the field (``batches[3].values[0]``). Nothing is written in either case
until every batch is checked.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from tablewatch.errors import ValidationError
from tablewatch.store import chunks
from tablewatch.store.keys import DAY_US, KeyCodec
from tablewatch.store.table import PackedBytes
from tablewatch.store.timestamps import to_us_array

BATCH_KEYS = frozenset({"metric", "tags", "ts", "values", "steps"})
_SCALARS = (int, float)
_KEY = np.dtype([("salt", "u1"), ("sid", ">u8"), ("bucket", ">u4")])  # packed: the 13-byte point key
_DAY_KEY = np.dtype([("sid", ">u8"), ("day", ">u4")])  # packed: DayIndex.known_key of a series' day


class SeriesRef(NamedTuple):
    """A series as the store resolved it once (``Store.series_ref``): checked
    name and tags, and series id. A writer that logs the same series again and
    again keeps it, so that a write costs no lookup by name and tags per series.
    (Which family of ``tw_points`` its points go to is decided at each write:
    it follows the store's families, which retention settings may change.)"""

    metric: str
    tags: dict[str, str]
    sid: bytes


@dataclass(frozen=True)
class PointColumns:
    """Every point of a call, one array each, sorted by (batch, ts)."""

    series: list[SeriesRef]  # per batch
    batch: np.ndarray        # per point: its batch
    ts_us: np.ndarray
    values: np.ndarray
    steps: np.ndarray | None  # per point (chunks.NO_STEP where its batch has none), None if no batch has steps
    has_steps: np.ndarray     # per batch: bool


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a call builds a few objects per
    point or series (cells, mutations, the backend's rows, Series): none of
    them form cycles, and with 100k series each allocation burst would
    otherwise trigger full collections of the caller's whole heap (measured:
    5x the cost of building them). Reference counting still frees everything; the collector resumes
    after the call (and was only re-enabled if it was enabled before)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def columns_of(
    batches: Sequence[Any],
    resolve_many: Callable[[list[Any], list[Any]], list[SeriesRef] | None],
    float_array: Callable[[Any, str, bool], np.ndarray],
    step_array: Callable[[Any, str], np.ndarray],
    allow_inf: bool,
) -> PointColumns | None:
    """The points of ``batches`` as columns, checked; None when any batch needs
    the batch-by-batch path (to be checked there, or to name its error).
    ``resolve_many(metrics, tags)`` returns the series, or None when one is invalid."""
    # Taken apart a field at a time (no Python loop body per batch).
    if not batches or set(map(type, batches)) != {dict} or not set(chain.from_iterable(batches)) <= BATCH_KEYS:
        return None
    try:
        metrics = [b["metric"] for b in batches]
        ts_parts: list[Any] = [b["ts"] for b in batches]
        value_parts: list[Any] = [b["values"] for b in batches]
    except KeyError:
        return None
    step_parts = [b.get("steps") for b in batches]
    series = resolve_many(metrics, [b.get("tags") for b in batches])
    if series is None:
        return None
    lengths = _lengths(ts_parts, value_parts, step_parts)
    if lengths is None:
        return None
    any_steps = _any_given(step_parts)
    try:
        ts_us = to_us_array(np.concatenate(ts_parts), "ts")
        values = float_array(np.concatenate(value_parts), "values", allow_inf)
        steps = None
        if any_steps:
            steps = _mixed_steps(step_parts, lengths, step_array)
    except (ValidationError, ValueError, TypeError):
        return None
    has_steps = (np.fromiter((s is not None for s in step_parts), dtype=bool, count=len(step_parts)) if any_steps
                 else np.zeros(len(step_parts), dtype=bool))
    return point_columns(series, np.asarray(lengths, dtype=np.int64), ts_us, values, steps, has_steps)


def point_columns(series: list[SeriesRef], counts: np.ndarray, ts_us: np.ndarray, values: np.ndarray,
                  steps: np.ndarray | None, has_steps: np.ndarray) -> PointColumns:
    """Checked points of ``series`` (``counts[i]`` points of ``series[i]``, in
    order) as :class:`PointColumns`, each series' points sorted by time."""
    batch_of = np.repeat(np.arange(len(series), dtype=np.int64), counts)
    if len(ts_us) > 1:
        step_back = (ts_us[1:] < ts_us[:-1]) & (batch_of[1:] == batch_of[:-1])
        if step_back.any():
            order = np.lexsort((ts_us, batch_of))
            ts_us, values = ts_us[order], values[order]
            steps = steps[order] if steps is not None else None
    return PointColumns(series, batch_of, ts_us, values, steps, has_steps)


def _lengths(ts_parts: list[Any], value_parts: list[Any], step_parts: list[Any]) -> list[int] | None:
    """Points per batch; None unless each batch's ts, values and steps are 1-d
    arrays of one length (or ts and values single numbers, made 1-tuples here)."""
    ndarray = np.ndarray
    if set(map(type, ts_parts)) == {ndarray} == set(map(type, value_parts)):  # the usual case, a column at a time
        lengths = list(map(len, ts_parts))
        one_d = {a.ndim for a in ts_parts} == {1} == {a.ndim for a in value_parts}
        if not one_d or list(map(len, value_parts)) != lengths:
            return None
    else:
        lengths = []
        for i, (ts, values) in enumerate(zip(ts_parts, value_parts)):
            if type(ts) is ndarray:
                if ts.ndim != 1:
                    return None
                n = len(ts)
            elif type(ts) in _SCALARS:
                ts_parts[i], n = (ts,), 1
            else:
                return None
            if type(values) is ndarray:
                if values.shape != (n,):
                    return None
            elif type(values) in _SCALARS and n == 1:
                value_parts[i] = (values,)
            else:
                return None
            lengths.append(n)
    if _any_given(step_parts):
        for steps, n in zip(step_parts, lengths):
            if steps is not None and (type(steps) is not ndarray or steps.shape != (n,)):
                return None
    return lengths


def _any_given(parts: list[Any]) -> bool:
    """Whether any part is not None (without comparing arrays to None)."""
    return set(map(type, parts)) != {type(None)}


def _mixed_steps(parts: list[Any], lengths: list[int], step_array: Callable[[Any, str], np.ndarray]) -> np.ndarray:
    """Steps of batches with and without them: the given ones checked, NO_STEP for the rest."""
    checked = step_array(np.concatenate([s for s in parts if s is not None]), "steps")
    out = np.full(sum(lengths), chunks.NO_STEP, dtype=np.int64)
    given = np.repeat(np.fromiter((s is not None for s in parts), dtype=bool, count=len(parts)), lengths)
    out[given] = checked
    return out


@dataclass(frozen=True)
class ChunkCells:
    """One chunk per (batch, bucket) group of a :class:`PointColumns`, in row key
    order (the chunks of one row in time order): the embedded store's B-tree
    then inserts with locality (several times faster)."""

    keys: Sequence[bytes]        # point row key of each group
    qualifiers: Sequence[bytes]
    values: Sequence[bytes]
    timestamps_ms: list[int]
    batch: np.ndarray            # per group: its batch
    sid: np.ndarray              # per group: its series id (big-endian uint64)
    day: np.ndarray              # per group: its day


def chunk_cells(columns: PointColumns, codec: KeyCodec) -> ChunkCells:
    """Encode the chunks of every (batch, bucket) group at once (see :func:`chunks.encode_many`)."""
    ts, batch_of = columns.ts_us, columns.batch
    buckets = ts // codec.bucket_us
    n = len(ts)
    starts = np.flatnonzero(np.r_[True, (batch_of[1:] != batch_of[:-1]) | (buckets[1:] != buckets[:-1])])
    stops = np.r_[starts[1:], n]
    # Long groups are cut into chunks of at most MAX_CHUNK_POINTS, as write_points does.
    long = (stops - starts) > chunks.MAX_CHUNK_POINTS
    if long.any():
        cuts = [np.arange(lo, hi, chunks.MAX_CHUNK_POINTS) for lo, hi in zip(starts[long], stops[long])]
        starts = np.unique(np.r_[starts, np.concatenate(cuts)])
        stops = np.r_[starts[1:], n]
    group_batch = batch_of[starts]
    group_bucket = buckets[starts]
    sids = np.frombuffer(b"".join([s.sid for s in columns.series]), dtype=">u8")[group_batch]
    key_rows = np.empty(len(starts), dtype=_KEY)
    key_rows["salt"] = ((sids >> np.uint64(32)).astype(np.int64) + group_bucket) % codec.salt_buckets
    key_rows["sid"] = sids
    key_rows["bucket"] = group_bucket
    width = _KEY.itemsize
    order = np.argsort(key_rows.view(f"S{width}"), kind="stable")  # stable: a row's chunks stay in time order
    starts, stops, group_batch, group_bucket = starts[order], stops[order], group_batch[order], group_bucket[order]
    key_rows = key_rows[order]
    keys = PackedBytes(key_rows.tobytes(), width)
    has_steps = columns.has_steps[group_batch] if columns.steps is not None else None
    qualifiers, values = chunks.encode_many(ts, columns.values, columns.steps, starts, stops, has_steps)
    timestamps_ms = (ts[stops - 1] // 1000).tolist()
    day = group_bucket * codec.bucket_us // DAY_US
    return ChunkCells(keys, qualifiers, values, timestamps_ms, group_batch, key_rows["sid"], day)


def batch_days(cells: ChunkCells) -> tuple[np.ndarray, np.ndarray, PackedBytes]:
    """The distinct (batch, day) pairs of the groups, by batch then day: their
    batches, their days, and the day index's key of each (series id | day,
    see :meth:`DayIndex.known_key`)."""
    order = np.lexsort((cells.day, cells.batch))
    batch, day = cells.batch[order], cells.day[order]
    keep = np.r_[True, (batch[1:] != batch[:-1]) | (day[1:] != day[:-1])][:len(batch)]
    keys = np.empty(int(keep.sum()), dtype=_DAY_KEY)
    keys["sid"] = cells.sid[order][keep]
    keys["day"] = day[keep]
    return batch[keep], day[keep], PackedBytes(keys.tobytes(), _DAY_KEY.itemsize)
