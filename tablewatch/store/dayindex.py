"""The day index: which days (UTC) hold data of an entity — a series, a task,
a training run name, a sketched feature.

Each entity has one index row; a family of it holds one empty cell per day
with data, the qualifier being the day number (days since the epoch, 4 bytes
big-endian) and the cell timestamp the day's last millisecond, so the cell
expires with the family's max age once the whole day has. Readers compute the
keys of exactly the buckets that can exist instead of probing empty ones.
Index rows are written once per entity per day, not per point, so they carry no
hot write load and are keyed by name rather than salted.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable

from tablewatch.store.keys import DAY_S, DAY_US
from tablewatch.store.table import Row, RowMutation, SetCell, Table

_DAY = struct.Struct(">I")


def days_in(row: Row, family: str) -> list[int]:
    """The days an index row records in ``family``, sorted."""
    return sorted(_DAY.unpack(q)[0] for q in row.cells.get(family, {}))


def overlaps(day: int, start_us: int, end_us: int) -> bool:
    """Whether ``day`` overlaps the half-open range [start_us, end_us)."""
    return day * DAY_US < end_us and (day + 1) * DAY_US > start_us


class DayIndex:
    """Index rows of one table, and the days this process already recorded
    (so a day is written once per process, not once per batch). Thread-safe."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._known: set[tuple[bytes, int]] = set()
        self._lock = threading.Lock()

    def mutations(
        self, row_key: bytes, meta: bytes, entity: bytes, days: Iterable[int], family: str
    ) -> list[RowMutation]:
        """The index writes for ``days`` of ``entity`` not yet recorded: the
        row's ``meta`` cell (``meta`` family, qualifier ``json``) and one day cell
        each. Apply them before the data, then call :meth:`remember`."""
        new_days = sorted({d for d in days if (entity, d) not in self._known})
        if not new_days:
            return []
        cells = [SetCell("meta", b"json", meta, 0)]
        cells += [SetCell(family, _DAY.pack(d), b"", (d + 1) * DAY_S * 1000 - 1) for d in new_days]
        return [RowMutation(row_key, cells)]

    def remember(self, entity: bytes, days: Iterable[int]) -> None:
        """Record that these days of ``entity`` are in the index (after the write)."""
        with self._lock:
            self._known.update((entity, d) for d in days)

    def days(self, row_key: bytes, family: str) -> list[int]:
        """The days the index row ``row_key`` records in ``family``."""
        rows = self.table.read_rows([row_key], columns=[family])
        return days_in(rows[0], family) if rows else []
