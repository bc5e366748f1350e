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
from collections.abc import Iterable, Sequence

from tablewatch.store.keys import DAY_S, DAY_US
from tablewatch.store.lru import LRU
from tablewatch.store.table import Row, RowMutation, SetCell, Table

_DAY = struct.Struct(">I")
#: How many (entity, day) pairs a process remembers as indexed: enough for
#: 100k series across a day boundary; the least recently written are forgotten
#: (and merely written again), so a long-running process stays bounded.
KNOWN_DAYS = 524_288


def days_in(row: Row, family: str) -> list[int]:
    """The days an index row records in ``family``, sorted."""
    return sorted(_DAY.unpack(q)[0] for q in row.cells.get(family, {}))


def overlaps(day: int, start_us: int, end_us: int) -> bool:
    """Whether ``day`` overlaps the half-open range [start_us, end_us)."""
    return day * DAY_US < end_us and (day + 1) * DAY_US > start_us


#: An index cell as written: (row key, family, qualifier, value, timestamp ms).
Cell = tuple[bytes, str, bytes, bytes, int]


def day_cells(row_key: bytes, meta: bytes, days: Iterable[int], family: str) -> list[Cell]:
    """The index cells recording ``days`` in the row ``row_key``, as (row key,
    family, qualifier, value, timestamp ms): the row's ``meta`` cell (``meta``
    family, qualifier ``json``) and one day cell each."""
    cells = [(row_key, "meta", b"json", meta, 0)]
    cells += [(row_key, family, _DAY.pack(d), b"", (d + 1) * DAY_S * 1000 - 1) for d in days]
    return cells


class DayIndex:
    """Index rows of one table, and the days this process recently recorded
    (so a day is written about once per process, not once per batch; at most
    ``max_known`` are remembered). Thread-safe."""

    def __init__(self, table: Table, max_known: int | None = None) -> None:
        self.table = table
        self._known: LRU[bytes, bool] = LRU(max_known or KNOWN_DAYS)  # by known_key

    @staticmethod
    def known_key(entity: bytes, day: int) -> bytes:
        """How the days recorded are remembered: the entity then the day (4
        bytes, big-endian). Cheaper to hash than an (entity, day) tuple, and
        numpy builds the keys of 100k series at once (``pointbatch.batch_days``)."""
        return entity + _DAY.pack(day)

    def mutations(
        self, row_key: bytes, meta: bytes, entity: bytes, days: Iterable[int], family: str
    ) -> list[RowMutation]:
        """The index writes for ``days`` of ``entity`` not yet recorded: the
        row's ``meta`` cell (``meta`` family, qualifier ``json``) and one day cell
        each. Apply them before the data, then call :meth:`remember`."""
        new_days = sorted({d for d in days if not self.is_known(entity, d)})
        if not new_days:
            return []
        return [RowMutation(row_key, [SetCell(*cell[1:]) for cell in day_cells(row_key, meta, new_days, family)])]

    def remember(self, entity: bytes, days: Iterable[int]) -> None:
        """Record that these days of ``entity`` are in the index (after the write)."""
        self._known.put_many([self.known_key(entity, d) for d in days], True)

    def remember_keys(self, keys: Sequence[bytes]) -> None:
        """:meth:`remember` for many (entity, day) pairs at once, given by :meth:`known_key`."""
        self._known.put_many(keys, True)

    def unknown(self, keys: Sequence[bytes]) -> list[int]:
        """Indexes of the (entity, day) pairs, given by :meth:`known_key`, this
        process has not recently recorded."""
        return [i for i, known in enumerate(self._known.get_many(list(keys))) if known is None]

    def is_known(self, entity: bytes, day: int) -> bool:
        """Whether this process recently recorded ``day`` of ``entity``."""
        return self._known.get(self.known_key(entity, day)) is not None

    def days(self, row_key: bytes, family: str) -> list[int]:
        """The days the index row ``row_key`` records in ``family``."""
        return self.days_of([row_key], family).get(row_key, [])

    def days_of(self, row_keys: Iterable[bytes], family: str) -> dict[bytes, list[int]]:
        """The days each of the index rows ``row_keys`` records in ``family``, in
        one read; a row that does not exist is left out."""
        return {row.key: days_in(row, family) for row in self.table.read_rows(row_keys, columns=[family])}
