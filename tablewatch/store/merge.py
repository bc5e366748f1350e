"""Merging the small chunks of a closed time bucket into one.

A Collector flushing every second writes one small chunk per flush: a 1 Hz
series gets 3,600 cells per hourly row, and reading 30 days means 2.6M cells.
Once a bucket is closed (its end is ``CLOSED_AFTER_S`` in the past) its chunks
are repacked into one *merged* chunk — as OpenTSDB compacts a row once its hour
is over — in a single row mutation: set the merged cell(s), then delete the
cells it absorbed.

A merged chunk has the qualifier of an ordinary chunk (first ts, count, hash of
its content) followed by :data:`MERGED_MARK`, and holds each distinct point
(ts, value, step) of the bucket once, in time order. This makes merging safe
without a lock, on every backend:

- idempotent: merging a merged row changes nothing (same content, same qualifier);
- a concurrent writer's new chunk is not among the absorbed cells, so it stays;
- a replay (a Collector's spool resending old batches) writes a small chunk
  whose points the merged chunk already holds: a reader of a row holding a
  merged chunk keeps each distinct point once, so the replay is harmless, and
  the next merge absorbs it;
- two mergers racing may each leave a merged chunk: readers dedupe them the
  same way and the next merge makes one.

Reads of a bucket not merged yet are unchanged (all its chunks, as written).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tablewatch.store import chunks
from tablewatch.store.table import DeleteCells, Row, RowMutation, SetCell

#: Appended to a merged chunk's qualifier.
MERGED_MARK = b"\x00merged"
#: A bucket is closed (mergeable) this long after its end: points arrive late by
#: up to a Collector's flush interval; anything later is merged by the next pass.
CLOSED_AFTER_S = 300
#: Rows read and rewritten per round trip by a merge pass.
ROWS_PER_PASS = 64


def is_merged(qualifier: bytes) -> bool:
    return qualifier.endswith(MERGED_MARK)


def needs_merge(qualifiers: Iterable[bytes]) -> bool:
    """Whether a row with these chunk qualifiers holds more than one chunk (a
    single chunk, merged or bulk-written, reads as fast as it can already)."""
    return len(list(qualifiers)) > 1


@dataclass(frozen=True)
class Points:
    ts: np.ndarray
    values: np.ndarray
    steps: np.ndarray  # chunks.NO_STEP where a point has none


def decode_cells(cells: Iterable[bytes]) -> Points:
    """Every point of these chunk values, concatenated (unsorted): :func:`chunks.decode_many`."""
    return Points(*chunks.decode_many(list(cells))[:3])


def _chunk_points(cells: dict[bytes, list]) -> Points:
    """The points of a row's chunks (qualifier -> cells), in qualifier order:
    qualifiers start with the chunk's first ts, so that is time order."""
    return decode_cells(cells[q][0].value for q in sorted(cells))


def distinct(points: Points) -> Points:
    """Each distinct (ts, value, step) once, sorted by time (then step, value bits)."""
    if len(points.ts) == 0:
        return points
    bits = points.values.view(np.int64)
    order = np.lexsort((bits, points.steps, points.ts))
    ts, steps, bits = points.ts[order], points.steps[order], bits[order]
    keep = np.r_[True, (ts[1:] != ts[:-1]) | (steps[1:] != steps[:-1]) | (bits[1:] != bits[:-1])]
    picked = order[keep]
    return Points(points.ts[picked], points.values[picked], points.steps[picked])


def row_points(row: Row, family: str) -> tuple[Points, bool]:
    """The points of a point row as readers see them, and whether the row holds a
    merged chunk (then each distinct point once; else every chunk as written)."""
    cells = row.cells.get(family, {})
    merged = any(is_merged(q) for q in cells)
    points = _chunk_points(cells)
    return (distinct(points) if merged and len(cells) > 1 else points), merged


def merge_mutation(row: Row, family: str, points: Points | None = None) -> RowMutation | None:
    """The mutation that repacks a row's chunks into merged chunk(s); None when
    it holds one chunk (or none). ``points``: the row's points
    already decoded (by :func:`row_points`), to spare decoding them again."""
    cells = row.cells.get(family, {})
    if not needs_merge(cells):
        return None
    points = distinct(points if points is not None else _chunk_points(cells))
    has_steps = bool((points.steps != chunks.NO_STEP).any())
    sets = []
    for start in range(0, len(points.ts), chunks.MAX_CHUNK_POINTS):
        stop = min(start + chunks.MAX_CHUNK_POINTS, len(points.ts))
        qualifier, value = chunks.encode(
            points.ts[start:stop], points.values[start:stop], points.steps[start:stop] if has_steps else None
        )
        sets.append(SetCell(family, qualifier + MERGED_MARK, value, int(points.ts[stop - 1]) // 1000))
    new = {cell.qualifier for cell in sets}
    if new == set(cells):
        return None
    deletes = [DeleteCells(family, q) for q in sorted(cells) if q not in new]
    return RowMutation(row.key, [*(s for s in sets if s.qualifier not in cells), *deletes])
