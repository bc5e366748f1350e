"""The tag index: which series have a metric, a tag, a tag value.

Rows of the series index table (``tw_series``), beside the day-index rows
(prefix ``s``), each holding the series' name and tags (family ``meta``,
qualifier ``json``)::

    n metric \\0 series id                      one per series: lists a metric's series
    x tag \\0 value \\0 metric \\0 series id      one per tag of a series: finds it by tag

Tag names, values and metrics hold no NUL (they are validated), so each prefix
selects exactly the series it names. ``find_series`` scans one prefix — the
first exact filter's (``x tag \\0 value \\0 metric \\0``), one per value of a list
filter, ``x tag \\0`` for a presence filter, ``n metric \\0`` for no filter — and
checks any other filters on the rows it got: it costs what it returns, not how
many series or days the store holds.

Rows are written with a series' day-index rows (before its points), at most
about once per process per series and day, and are idempotent. A store written
before the index existed is indexed once, when it is first opened by this
version (:meth:`TagIndex.backfill`); a marker row in ``tw_meta`` records that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tablewatch.store.table import Row, RowMutation, SetCell, Table, prefix_end

NAME_PREFIX = b"n"
TAG_PREFIX = b"x"
DAY_INDEX_PREFIX = b"s"
META_COLUMN = ("meta", b"json")
#: The marker row in ``tw_meta``: the tag index covers every series.
MARKER_ROW = b"tagindex"
BACKFILL_ROWS_PER_WRITE = 2000
_COLLECTIONS = (list, tuple, set, frozenset)


def series_json(metric: str, tags: Mapping[str, str]) -> bytes:
    return json.dumps({"metric": metric, "tags": dict(tags)}).encode()


def index_rows(metric: str, tags: Mapping[str, str], sid: bytes, meta: bytes | None = None) -> list[RowMutation]:
    """The index rows of one series (``meta``: its JSON, computed when None)."""
    meta = meta if meta is not None else series_json(metric, tags)
    name = metric.encode()
    rows = [RowMutation(NAME_PREFIX + name + b"\x00" + sid, [SetCell("meta", b"json", meta, 0)])]
    for key, value in tags.items():
        row = TAG_PREFIX + key.encode() + b"\x00" + value.encode() + b"\x00" + name + b"\x00" + sid
        rows.append(RowMutation(row, [SetCell("meta", b"json", meta, 0)]))
    return rows


def matches(tags: Mapping[str, str], filters: Mapping[str, Any]) -> bool:
    """Whether ``tags`` match every filter (see ``Store.find_series``)."""
    for key, wanted in filters.items():
        value = tags.get(key)
        if wanted is True:
            if value is None:
                return False
        elif isinstance(wanted, _COLLECTIONS):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


class TagIndex:
    """Finds series by metric and tags through the index rows of ``table``."""

    def __init__(self, table: Table, meta_table: Table) -> None:
        self.table = table
        self.meta_table = meta_table

    def find(self, metric: str | None, filters: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
        """(metric, tags) of the series of ``metric`` (any when None) matching ``filters``, unsorted."""
        rows = self._candidates(metric, filters)
        found: dict[bytes, tuple[str, dict[str, str]]] = {}
        for row in rows:
            sid = row.key[-8:]
            if sid in found:
                continue  # a list filter's rows of two values cannot both hold a series; kept for safety
            data = json.loads(row.value(*META_COLUMN))
            if (metric is None or data["metric"] == metric) and matches(data["tags"], filters):
                found[sid] = (data["metric"], data["tags"])
        return list(found.values())

    def _candidates(self, metric: str | None, filters: Mapping[str, Any]) -> Iterable[Row]:
        tail = b"" if metric is None else metric.encode() + b"\x00"
        driver = _driver(filters)
        if driver is None:
            return self.table.scan(prefix=NAME_PREFIX + tail, columns=[META_COLUMN])
        key, wanted = driver
        head = TAG_PREFIX + key.encode() + b"\x00"
        if wanted is True:
            return self.table.scan(prefix=head, columns=[META_COLUMN])
        values = [wanted] if isinstance(wanted, str) else sorted({w for w in wanted if isinstance(w, str)})
        ranges = []
        for value in values:
            prefix = head + value.encode() + b"\x00" + tail
            ranges.append((prefix, prefix_end(prefix)))
        return self.table.scan_ranges(sorted(ranges), columns=[META_COLUMN]) if ranges else []

    # -- an existing store ------------------------------------------------------------

    def is_complete(self) -> bool:
        return bool(self.meta_table.read_rows([MARKER_ROW], columns=[("config", b"json")]))

    def backfill(self) -> int:
        """Index every series of the day index (a store from before the tag index),
        then write the marker; the number of series indexed. Idempotent."""
        pending: list[RowMutation] = []
        count = 0
        for row in self.table.scan(prefix=DAY_INDEX_PREFIX, columns=[META_COLUMN]):
            meta = row.value(*META_COLUMN)
            if meta is None:
                continue
            data = json.loads(meta)
            sid = row.key[-8:]
            pending += index_rows(data["metric"], data["tags"], sid, meta)
            count += 1
            if len(pending) >= BACKFILL_ROWS_PER_WRITE:
                self.table.mutate_rows(pending)
                pending = []
        if pending:
            self.table.mutate_rows(pending)
        self.meta_table.mutate_rows([RowMutation(MARKER_ROW, [SetCell("config", b"json", b'{"complete": true}', 0)])])
        return count


def _driver(filters: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The filter whose index rows to scan: an exact value first, then a list of
    values, then a presence filter; None when no filter can use the index."""
    best, rank = None, 3
    for key, wanted in filters.items():
        if not isinstance(key, str) or "\x00" in key:
            continue
        if isinstance(wanted, str):
            this = 0
        elif isinstance(wanted, _COLLECTIONS):
            this = 1
        elif wanted is True:
            this = 2
        else:
            continue
        if this < rank:
            best, rank = (key, wanted), this
    return best
