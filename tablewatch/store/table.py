"""The wide-column Table API: what HBase and Cloud Bigtable have in common.

A *backend* holds tables. A table holds rows kept in byte order of their keys.
A row holds cells addressed by (family, qualifier, timestamp). Column families
are declared when the table is created, each with a garbage-collection policy
(:class:`GCPolicy`). Each backend (``sqlite://``, ``bigtable://``, ``hbase://``)
implements only the two protocols below; ``tests/store/table_contract.py`` is
the contract every backend passes.

Shared conventions, stated once:

- Row keys and qualifiers are ``bytes`` and sort in byte order.
- Timestamps are integer **milliseconds** since the Unix epoch (UTC). Bigtable
  stores microseconds at millisecond granularity and HBase stores milliseconds,
  so milliseconds is what all backends can keep exactly.
- Key ranges are half-open: ``start <= key < end``; ``None`` means unbounded.
- ``columns`` filters what a read returns: an iterable whose items are a family
  name (the whole family) or a ``(family, qualifier)`` pair.
- ``versions`` is how many versions of each cell a read returns, newest first.
- ``keys_only`` (scans) returns every cell with an empty value: keys,
  qualifiers and timestamps only, without moving the data (Bigtable's strip
  value transformer, HBase's KeyOnlyFilter).
- A cell older than its family's ``max_age_s`` is never returned, and a cell
  beyond its family's ``max_versions`` is never returned; ``compact()`` removes
  both for good (Bigtable and HBase do this on their own schedule).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union, runtime_checkable

import numpy as np

from tablewatch.errors import ValidationError

Column = Union[str, "tuple[str, bytes]"]

MAX_ROW_KEY_BYTES = 4096
MAX_QUALIFIER_BYTES = 1024
#: Cell timestamps are milliseconds from 0 up to what Bigtable's microseconds
#: can hold (HBase reserves 2**63-1 as "latest"; this stays well below it).
MAX_TIMESTAMP_MS = 2**63 // 1000 - 1


@dataclass(frozen=True)
class GCPolicy:
    """When a family's cells are garbage: more than ``max_versions`` newer
    versions exist, or the cell's timestamp is more than ``max_age_s`` seconds
    old. ``None`` means no limit on that axis."""

    max_versions: int | None = 1
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_versions is not None and self.max_versions < 1:
            raise ValidationError("max_versions", self.max_versions, "must be >= 1 or None")
        if self.max_age_s is not None and self.max_age_s <= 0:
            raise ValidationError("max_age_s", self.max_age_s, "must be > 0 or None")


@dataclass(frozen=True)
class Cell:
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class SetCell:
    """Write ``value`` at (family, qualifier, timestamp_ms), replacing any cell
    with the same timestamp: writing the same SetCell twice leaves one cell."""

    family: str
    qualifier: bytes
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class DeleteCells:
    """Delete every version of one column (``qualifier`` given) or of a whole
    family (``qualifier`` None)."""

    family: str
    qualifier: bytes | None = None


@dataclass(frozen=True)
class DeleteRow:
    """Delete the whole row."""


Mutation = Union[SetCell, DeleteCells, DeleteRow]


@dataclass(frozen=True)
class RowMutation:
    """Mutations applied to one row, atomically, in order."""

    key: bytes
    mutations: Sequence[Mutation]


@dataclass
class Row:
    """A row as read: ``cells[family][qualifier]`` is a list of :class:`Cell`,
    newest first. Families and qualifiers with no cell left are absent."""

    key: bytes
    cells: dict[str, dict[bytes, list[Cell]]] = field(default_factory=dict)

    def value(self, family: str, qualifier: bytes) -> bytes | None:
        """The newest value of one column, or None."""
        column = self.cells.get(family, {}).get(qualifier)
        return column[0].value if column else None


@dataclass(frozen=True)
class TableInfo:
    name: str
    families: Mapping[str, GCPolicy]


@runtime_checkable
class Table(Protocol):
    """One table of a backend."""

    name: str

    def mutate_rows(self, rows: Sequence[RowMutation]) -> None:
        """Apply a batch of row mutations. When this returns, the batch is
        durable. Each row's mutations are atomic; the batch as a whole may be
        partially applied when an error is raised (retrying it is safe when every
        SetCell carries an explicit timestamp, as all of tablewatch's do)."""
        ...

    def read_rows(
        self, keys: Iterable[bytes], *, columns: Iterable[Column] | None = None, versions: int = 1
    ) -> list[Row]:
        """The rows with these exact keys that exist, in key order."""
        ...

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        limit: int | None = None,
        columns: Iterable[Column] | None = None,
        versions: int = 1,
        keys_only: bool = False,
    ) -> Iterator[Row]:
        """Rows with ``start <= key < end`` (or starting with ``prefix``), in key
        order, at most ``limit`` of them. Rows with no matching cell are skipped."""
        ...

    def scan_ranges(
        self,
        ranges: Sequence[tuple[bytes | None, bytes | None]],
        *,
        limit: int | None = None,
        columns: Iterable[Column] | None = None,
        versions: int = 1,
        keys_only: bool = False,
    ) -> Iterator[Row]:
        """Rows of several half-open ranges, in key order (one request where the
        backend can). Ranges may not overlap."""
        ...

    def check_and_set(
        self, key: bytes, family: str, qualifier: bytes, expected: bytes | None, value: bytes, timestamp_ms: int
    ) -> bool:
        """Atomically: if the newest value of (family, qualifier) in row ``key``
        equals ``expected`` (``None``: the cell does not exist), write ``value`` at
        ``timestamp_ms`` in that cell and return True; otherwise change nothing and
        return False. The one atomic primitive every backend has: Bigtable
        CheckAndMutateRow, HBase checkAndPut (Thrift v1), an SQLite transaction.

        Use it on families with ``max_versions=1`` and write with a timestamp >=
        the current cell's (e.g. now in ms), so the new value is the newest.
        Cells past the family's ``max_age_s`` count as absent. Not retried: an
        outage raises StoreUnavailable, and the outcome is then unknown (read
        the cell to find out). Two backend differences, both HBase's (Thrift v1
        ``checkAndPut``): the cell gets the server's clock, not
        ``timestamp_ms``; and an empty value counts as absent (``expected=None``
        also matches a cell holding ``b""``), so give leases non-empty values."""
        ...

    def compact(self, now_ms: int | None = None) -> int:
        """Remove cells that the GC policies make garbage; the number removed
        (backends that collect garbage on their own return 0)."""
        ...

    def sample_row_keys(self) -> list[bytes]:
        """Row keys that split the table into pieces of roughly equal size (a
        sample, cheap to get). Used by ``store hotspots`` on large tables."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A set of tables reached through one store URL.

    A backend that can count a table's rows cheaply may also offer
    ``count_rows(name) -> int`` (the embedded one does); ``Store.info()`` uses
    it, and otherwise counts with a keys-only scan."""

    url: str

    def create_table(
        self,
        name: str,
        families: Mapping[str, GCPolicy],
        *,
        split_keys: Sequence[bytes] = (),
    ) -> None:
        """Create a table. ``split_keys`` pre-splits it (a hint; ignored where
        the backend has no regions/tablets). Raises :class:`TableExists`."""
        ...

    def delete_table(self, name: str) -> None:
        ...

    def list_tables(self) -> list[str]:
        ...

    def table_info(self, name: str) -> TableInfo:
        """Families and GC policies. Raises :class:`TableNotFound`."""
        ...

    def table(self, name: str) -> Table:
        """A handle to an existing table (cheap; no round trip required)."""
        ...

    def close(self) -> None:
        ...


def check_row_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise ValidationError("row key", key, "must be bytes")
    if not key:
        raise ValidationError("row key", key, "must not be empty")
    if len(key) > MAX_ROW_KEY_BYTES:
        raise ValidationError("row key", key[:32], f"is {len(key)} bytes, over {MAX_ROW_KEY_BYTES}")


def check_set_cell(mutation: SetCell) -> None:
    """The checks every backend makes on a SetCell before sending it."""
    if not isinstance(mutation.qualifier, (bytes, bytearray)):
        raise ValidationError("qualifier", mutation.qualifier, "must be bytes")
    if len(mutation.qualifier) > MAX_QUALIFIER_BYTES:
        raise ValidationError("qualifier", mutation.qualifier[:32], f"is over {MAX_QUALIFIER_BYTES} bytes")
    if not isinstance(mutation.value, (bytes, bytearray, memoryview)):
        raise ValidationError("value", mutation.value, "cell values must be bytes")
    ts = mutation.timestamp_ms
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_TIMESTAMP_MS:
        raise ValidationError("timestamp_ms", ts, f"must be an integer of milliseconds from 0 to {MAX_TIMESTAMP_MS}")


def family_policy(families: Mapping[str, GCPolicy], family: str, table: str) -> GCPolicy:
    """The GC policy of ``family`` in table ``table``; a ValidationError when it has no such family."""
    policy = families.get(family)
    if policy is None:
        raise ValidationError("family", family, f"is not a column family of table {table!r}")
    return policy


def check_check_and_set(
    key: bytes, family: str, qualifier: bytes, expected: bytes | None, value: bytes, timestamp_ms: int,
    families: Mapping[str, GCPolicy], table: str,
) -> GCPolicy:
    """The checks every backend makes on a ``check_and_set`` to table ``table``
    (with these ``families``) before sending it; the family's GC policy."""
    check_row_key(key)
    if not isinstance(family, str) or not family:
        raise ValidationError("family", family, "must be a family name")
    if expected is not None and not isinstance(expected, (bytes, bytearray, memoryview)):
        raise ValidationError("expected", expected, "must be bytes or None (the cell does not exist)")
    check_set_cell(SetCell(family, qualifier, value, timestamp_ms))
    return family_policy(families, family, table)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``
    (None when there is none, i.e. the prefix is all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def normalize_columns(
    columns: Iterable[Column] | None, families: Mapping[str, GCPolicy] | None = None, table: str = "this table"
) -> tuple[set[str], set[tuple[str, bytes]]] | None:
    """Split a ``columns`` filter into (whole families, single columns); with
    ``families``, refuse a family the table does not have."""
    if columns is None:
        return None
    whole: set[str] = set()
    pairs: set[tuple[str, bytes]] = set()
    for column in columns:
        if isinstance(column, str):
            whole.add(column)
        elif isinstance(column, tuple) and len(column) == 2:
            family, qualifier = column
            pairs.add((family, bytes(qualifier)))
        else:
            raise ValidationError("columns", column, "items must be a family name or a (family, qualifier) pair")
    if families is not None:
        for family in sorted(whole | {f for f, _ in pairs}):
            if family not in families:
                raise ValidationError("columns", family, f"is not a column family of {table}")
    return whole, pairs


def check_limit(limit: object) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError("limit", limit, "must be an integer >= 1 or None")


def check_versions(versions: object) -> None:
    if isinstance(versions, bool) or not isinstance(versions, int) or versions < 1:
        raise ValidationError("versions", versions, "must be an integer >= 1")


class PackedBytes(Sequence[bytes]):
    """Byte strings of one width, back to back in one ``blob``: a column of
    :class:`CellColumns` that numpy built whole (the row keys, qualifiers and
    values of 100k one-point chunks), with no bytes object per cell until one
    is read, and passed on as the blob itself where a backend can take one
    (the embedded store's one-statement insert)."""

    __slots__ = ("blob", "width")

    def __init__(self, blob: bytes, width: int) -> None:
        if width < 1 or len(blob) % width:
            raise ValueError(f"'width' must be >= 1 and divide len(blob) ({len(blob)}), got {width}")
        self.blob = blob
        self.width = width

    @classmethod
    def of(cls, items: Sequence[bytes]) -> PackedBytes | None:
        """``items`` packed, or None unless they are non-empty and of one width (>= 1)."""
        if isinstance(items, PackedBytes):
            return items
        widths = set(map(len, items))
        if len(widths) != 1 or 0 in widths:
            return None
        return cls(b"".join(items), widths.pop())

    def __len__(self) -> int:
        return len(self.blob) // self.width

    def __getitem__(self, index):  # type: ignore[override]
        width = self.width
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return PackedBytes(self.blob[start * width:max(start, stop) * width], width)
            return [self[i] for i in range(start, stop, step)]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("PackedBytes index out of range")
        return self.blob[index * width:(index + 1) * width]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.tolist())

    def tolist(self) -> list[bytes]:
        """The byte strings as a list (numpy cuts the blob: 2x faster than slicing it in Python)."""
        return np.frombuffer(self.blob, dtype=f"V{self.width}").tolist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedBytes):
            return (self.width, self.blob) == (other.width, other.blob)
        return NotImplemented

    def __repr__(self) -> str:
        return f"PackedBytes({len(self)} x {self.width} bytes)"


@dataclass(frozen=True)
class CellColumns:
    """Many SetCells as columns, one entry per cell (several may share a row):
    what a store writes when it sets one chunk in each of 100k rows, without a
    SetCell and a RowMutation per cell. ``keys[i]`` gets
    ``SetCell(families[i], qualifiers[i], values[i], timestamps_ms[i])``."""

    keys: Sequence[bytes]
    families: Sequence[str]
    qualifiers: Sequence[bytes]
    values: Sequence[bytes]
    timestamps_ms: Sequence[int]

    def __len__(self) -> int:
        return len(self.keys)

    def row_mutations(self) -> list[RowMutation]:
        """The same cells as row mutations, one per row, rows in first-seen order."""
        rows: dict[bytes, list[Mutation]] = {}
        for key, family, qualifier, value, timestamp_ms in zip(
            self.keys, self.families, self.qualifiers, self.values, self.timestamps_ms
        ):
            rows.setdefault(key, []).append(SetCell(family, qualifier, value, timestamp_ms))
        return [RowMutation(key, mutations) for key, mutations in rows.items()]


def set_cells(table: Table, cells: CellColumns) -> None:
    """Write ``cells`` with the guarantees of ``table.mutate_rows`` (each row's
    cells atomic): through the table's own ``set_cells`` when it has one (the
    embedded store: one ``executemany``), else as row mutations."""
    fast = getattr(table, "set_cells", None)
    if fast is not None:
        fast(cells)
    elif len(cells):
        table.mutate_rows(cells.row_mutations())


def newest_values(
    table: Table, keys: Iterable[bytes] | None, family: str, *, prefix: bytes | None = None
) -> list[tuple[bytes, bytes, bytes]]:
    """(row key, qualifier, newest value) of every live column of ``family``
    in the rows ``keys`` (or, with ``keys`` None, the rows starting with
    ``prefix``): the table's own ``newest_values`` when it has one (the
    embedded store: one query, no Row or Cell per column), else ``read_rows``
    or ``scan``."""
    fast = getattr(table, "newest_values", None)
    if fast is not None:
        return fast(keys, family, prefix=prefix)
    rows = table.read_rows(keys, columns=[family]) if keys is not None else table.scan(prefix=prefix, columns=[family])
    return [(row.key, qualifier, cells[0].value) for row in rows for qualifier, cells in row.cells.get(family, {}).items()]


def newest_cells(
    table: Table, ranges: Sequence[tuple[bytes | None, bytes | None]], families: Sequence[str]
) -> list[tuple[bytes, str, bytes, int, bytes]]:
    """(row key, family, qualifier, timestamp ms, value) of the newest live
    version of every column of ``families`` in the rows of ``ranges``
    (half-open, not overlapping), rows in key order and a row's cells grouped
    by family: the table's own ``newest_cells`` when it has one (the embedded
    store: one query per range, no Row or Cell per cell), else ``scan_ranges``."""
    fast = getattr(table, "newest_cells", None)
    if fast is not None:
        return fast(ranges, families)
    return newest_cells_of(table.scan_ranges(ranges, columns=list(families)))


def newest_cells_of(rows: Iterable[Row]) -> list[tuple[bytes, str, bytes, int, bytes]]:
    """(row key, family, qualifier, timestamp ms, value) of the newest cell
    of every column of rows as read, in their order."""
    return [(row.key, family, qualifier, cells[0].timestamp_ms, cells[0].value)
            for row in rows for family, columns in row.cells.items() for qualifier, cells in columns.items()]


def check_cell_columns(cells: CellColumns, families: Mapping[str, object], table: str) -> None:
    """The checks of :func:`check_row_key` and :func:`check_set_cell` on every
    cell, a column at a time; a failure is named as the per-cell check names it."""
    columns = (cells.keys, cells.families, cells.qualifiers, cells.values, cells.timestamps_ms)
    if len({len(column) for column in columns}) != 1:
        raise ValidationError("cells", [len(column) for column in columns], "columns must have one entry per cell")
    if not len(cells):
        return
    key_types, shortest_key, longest_key = _bytes_facts(cells.keys)
    qualifier_types, _, longest_qualifier = _bytes_facts(cells.qualifiers)
    fine = (
        key_types == {bytes}
        and 0 < shortest_key and longest_key <= MAX_ROW_KEY_BYTES
        and qualifier_types <= {bytes, bytearray}
        and longest_qualifier <= MAX_QUALIFIER_BYTES
        and _bytes_facts(cells.values)[0] <= {bytes, bytearray, memoryview}
        and set(map(type, cells.timestamps_ms)) == {int}
        and 0 <= min(cells.timestamps_ms) and max(cells.timestamps_ms) <= MAX_TIMESTAMP_MS
    )
    unknown = set(cells.families) - set(families)
    if unknown:
        family = sorted(unknown, key=str)[0]
        raise ValidationError("family", family, f"is not a column family of table {table!r}")
    if not fine:  # find the first bad cell, and name its problem
        for key, family, qualifier, value, timestamp_ms in zip(*columns):
            check_row_key(key)
            check_set_cell(SetCell(family, qualifier, value, timestamp_ms))


def _bytes_facts(column: Sequence[bytes]) -> tuple[set[type], int, int]:
    """(types, shortest, longest) of a non-empty column of byte strings."""
    if isinstance(column, PackedBytes):
        return {bytes}, column.width, column.width
    lengths = list(map(len, column))
    return set(map(type, column)), min(lengths), max(lengths)


class ScanByRanges:
    """``scan`` written once, for backends that implement ``scan_ranges``."""

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        limit: int | None = None,
        columns: Iterable[Column] | None = None,
        versions: int = 1,
        keys_only: bool = False,
    ) -> Iterator[Row]:
        if prefix is not None:
            if start is not None or end is not None:
                raise ValidationError("prefix", prefix, "cannot be combined with start/end")
            start, end = prefix, prefix_end(prefix)
        return self.scan_ranges(  # type: ignore[attr-defined]
            [(start, end)], limit=limit, columns=columns, versions=versions, keys_only=keys_only
        )
