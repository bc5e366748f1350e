"""The tag index: which series have a metric, a tag, a tag value.

Rows of the series index table (``tw_series``), beside the day-index rows
(prefix ``s``). Each holds one cell per series (family ``meta``, qualifier the
series id, value the series' name and tags as JSON)::

    n metric                       every series of a metric
    x tag \\0 value \\0 metric       every series of a metric with that tag value

Tag names, values and metrics hold no NUL (they are validated), so each key
names exactly one (metric) or (tag, value, metric). ``find_series`` reads one
row per candidate set — the first exact filter's ``x`` row, one per value of a
list filter, every ``x tag \\0`` row for a presence filter, the ``n`` row with
no filter (a scan of the prefix when the metric is not given) — and checks any
other filters on the cells it got: it costs what it returns, not how many
series or days the store holds. Wide rows keep that cost per series small (no
per-row overhead); they are written once per series per process and day, not
per point, so they are no write hotspot.

Cells are written with a series' day-index cells (before its points) and are
idempotent. A store written before the index existed is indexed once, when this
version first opens it (:meth:`TagIndex.backfill`); a marker row in ``tw_meta``
records that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

try:  # the server extra's parser: several times faster on 100k cells
    from orjson import loads as _loads
except ImportError:  # a core install
    from json import loads as _loads

from tablewatch.store.dayindex import Cell
from tablewatch.store.lru import LRU
from tablewatch.store.names import Series
from tablewatch.store.table import Row, RowMutation, SetCell, Table, newest_values

NAME_PREFIX = b"n"
TAG_PREFIX = b"x"
DAY_INDEX_PREFIX = b"s"
FAMILY = "meta"
META_COLUMN = ("meta", b"json")
#: The marker row in ``tw_meta``: the tag index covers every series.
MARKER_ROW = b"tagindex"
BACKFILL_SERIES_PER_WRITE = 2000
#: Series decoded from index cells that a process keeps (by id), least recently
#: used forgotten: listing a metric's 100k series again skips parsing their JSON.
DECODED_SERIES = 262_144
_COLLECTIONS = (list, tuple, set, frozenset)


def series_json(metric: str, tags: Mapping[str, str]) -> bytes:
    return json.dumps({"metric": metric, "tags": dict(tags)}).encode()


def index_cells(metric: str, tags: Mapping[str, str], sid: bytes, meta: bytes) -> list[Cell]:
    """The index cells of one series (``meta``: its JSON) as (row key, family,
    qualifier, value, timestamp ms): one in its metric's row, one per tag."""
    cells = [(name_key(metric), FAMILY, sid, meta, 0)]
    cells += [(tag_key(key, value, metric), FAMILY, sid, meta, 0) for key, value in tags.items()]
    return cells


def index_rows(metric: str, tags: Mapping[str, str], sid: bytes, meta: bytes | None = None) -> list[RowMutation]:
    """The index cells of one series as row mutations (``meta``: its JSON, computed when None)."""
    meta = meta if meta is not None else series_json(metric, tags)
    return [RowMutation(key, [SetCell(*cell)]) for key, *cell in index_cells(metric, tags, sid, meta)]


def sort_key(metric: str, tags: Mapping[str, str]) -> str:
    """One string per series that orders as (metric, sorted tag items) would: the
    separators sort below every character a name or tag may hold (stored tags are sorted)."""
    return metric + "\x00" + "\x00".join([k + "\x01" + v for k, v in tags.items()])


def name_key(metric: str) -> bytes:
    return NAME_PREFIX + metric.encode()


def tag_key(key: str, value: str, metric: str | None) -> bytes:
    """The row of (tag, value, metric); with metric None, the prefix of every metric's."""
    head = TAG_PREFIX + key.encode() + b"\x00" + value.encode() + b"\x00"
    return head if metric is None else head + metric.encode()


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
        # An id always names the same metric and tags: a decoded series never goes stale.
        self._decoded: LRU[bytes, tuple[Series, str]] = LRU(DECODED_SERIES)

    def find(self, metric: str | None, filters: Mapping[str, Any]) -> list[tuple[Series, str]]:
        """(series, sort key) of the series of ``metric`` (any when None)
        matching ``filters``, unsorted; the sort key orders as (metric, sorted
        tag items) would. A series decoded before is the same (immutable) object."""
        candidates = list(self._candidates(metric, filters))
        known = self._decoded.get_many([sid for _, sid, _ in candidates])
        found: dict[bytes, tuple[Series, str]] = {}
        loads = _loads
        for (_, sid, value), entry in zip(candidates, known):
            if entry is None:
                data = loads(value)
                entry = (Series(data["metric"], data["tags"]), sort_key(data["metric"], data["tags"]))
                self._decoded.put(sid, entry)
            series = entry[0]
            if (metric is None or series.metric == metric) and (not filters or matches(series.tags, filters)):
                found[sid] = entry
        return list(found.values())

    def _candidates(self, metric: str | None, filters: Mapping[str, Any]) -> Iterable[tuple[bytes, bytes, bytes]]:
        """(row key, series id, series JSON) of the index cells to check."""
        driver = _driver(filters)
        if driver is None:
            if metric is not None:
                return newest_values(self.table, [name_key(metric)], FAMILY)
            return newest_values(self.table, None, FAMILY, prefix=NAME_PREFIX)
        key, wanted = driver
        if wanted is True:
            return _cells(self.table.scan(prefix=TAG_PREFIX + key.encode() + b"\x00", columns=[FAMILY]))
        values = [wanted] if isinstance(wanted, str) else sorted({w for w in wanted if isinstance(w, str)})
        if metric is not None:
            return newest_values(self.table, [tag_key(key, value, metric) for value in values], FAMILY)
        return [cell for value in values for cell in _cells(self.table.scan(prefix=tag_key(key, value, None),
                                                                             columns=[FAMILY]))]

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
            pending += index_rows(data["metric"], data["tags"], row.key[-8:], meta)
            count += 1
            if count % BACKFILL_SERIES_PER_WRITE == 0:
                self.table.mutate_rows(pending)
                pending = []
        if pending:
            self.table.mutate_rows(pending)
        self.meta_table.mutate_rows([RowMutation(MARKER_ROW, [SetCell("config", b"json", b'{"complete": true}', 0)])])
        return count


def _cells(rows: Iterable[Row]) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(row key, qualifier, newest value) of the index cells of ``rows``."""
    for row in rows:
        for sid, cells in row.cells.get(FAMILY, {}).items():
            yield row.key, sid, cells[0].value


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
