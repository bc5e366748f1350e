"""The HBase Thrift v1 API served over any tablewatch store.

::

    tablewatch gateway hbase-thrift --store sqlite:///var/tablewatch.db --host 127.0.0.1 --port 9090

This is the API of HBase's own ``hbase thrift`` server, as the ``Hbase.thrift``
IDL that happybase ships describes it. Any HBase Thrift v1 client (happybase,
the Java, Go or Ruby clients) can then read and write a tablewatch store, e.g.
an embedded SQLite file; and tablewatch's ``hbase://`` backend is tested end to
end, over real Thrift, on machines where HBase cannot run.

The gateway behaves as HBase 2.x's ``ThriftHBaseServiceHandler`` does:

- Columns are ``family:qualifier``; ``family`` alone means the whole family,
  and ``family:`` the empty qualifier (HBase >= 0.98, HBASE-9549).
- Timestamps are milliseconds. A write without a timestamp gets the gateway's
  clock. ``...Ts`` reads return the newest cells with ``ts < timestamp`` (HBase's
  time range ``[0, timestamp)``). A delete with a timestamp removes the versions
  with ``ts <= timestamp``; without one, every version.
- ``mutateRow(Ts)`` applies the row's deletes, then its puts; ``mutateRows(Ts)``
  applies each row's puts, then its deletes: HBase's order. A put needs
  ``family:qualifier`` (IllegalArgument otherwise). ``writeToWAL=False`` is
  accepted, but every write is durable when the call returns (the store has no
  unlogged writes).
- ``ColumnDescriptor.maxVersions`` and ``timeToLive`` are the families'
  :class:`~tablewatch.store.table.GCPolicy`: 2147483647 versions (HBase's
  ``Integer.MAX_VALUE``) is "unlimited"; a ``timeToLive`` <= 0 or 2147483647
  is "forever". Compression, bloom filters, in-memory and block cache are
  accepted and not kept.
- Tables are enabled when the gateway starts; ``disableTable`` is remembered in
  the gateway process. As in HBase, a table must be disabled before
  ``deleteTable``, and a disabled table refuses reads and writes.
- ``getTableRegions`` reports pseudo-regions split at the store's
  ``sample_row_keys()``; ``compact``/``majorCompact`` run the store's
  ``compact()`` (removing cells past max age or versions) before answering.
- Scanners live in the gateway under their id until ``scannerClose``, until
  the connection that opened them closes, or after ``scanner_timeout_s``
  without use. Filter strings are HBase's filter language (``AND``, ``OR``,
  ``SKIP``, ``WHILE``, parentheses) with the filters and comparators
  :mod:`tablewatch.gateway.filters` lists, evaluated as a region server does;
  a malformed one answers an ``IOError`` naming the problem.
- ``atomicIncrement``, ``increment(Rows)``, ``append`` and timestamped
  deletes read then write under row locks: atomic with respect to every write
  through this gateway process (not to other processes writing the same store
  directly). ``checkAndPut`` of the checked cell itself goes through the
  store's atomic ``check_and_set``, so it is atomic for every writer; its
  empty/absent ``value`` means what it means to HBase ("missing or empty").
- A method the gateway does not implement (``getRowOrBefore``,
  ``getRegionInfo``) answers a Thrift ``IOError`` saying so, and the connection
  stays usable. Every failure answers one of the exceptions the method declares;
  no call drops the connection.

It runs a threaded server (one worker thread per connection, up to
``max_connections``; further clients wait for a free worker), so a happybase
``ConnectionPool`` can use it from several threads.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import itertools
import logging
import queue
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Optional

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.thrift import TDecodeException, TException, TProcessor
from thriftpy2.transport import (
    TBufferedTransportFactory,
    TFramedTransportFactory,
    TSocket,
    TTransportException,
)

from tablewatch.errors import (
    MissingDependency,
    TableExists,
    TableNotFound,
    TablewatchError,
    ValidationError,
)
from tablewatch.gateway import filters
from tablewatch.store.table import (
    Backend,
    Cell,
    Column,
    DeleteCells,
    DeleteRow,
    GCPolicy,
    Mutation,
    Row,
    RowMutation,
    SetCell,
    Table,
    prefix_end,
)

log = logging.getLogger(__name__)

TRANSPORTS = {"buffered": TBufferedTransportFactory, "framed": TFramedTransportFactory}
PROTOCOLS = {"binary": TBinaryProtocolFactory, "compact": TCompactProtocolFactory}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
INT32_MAX = 2**31 - 1
#: HBase's ``HConstants.LATEST_TIMESTAMP``: "no timestamp given".
LATEST_TIMESTAMP = 2**63 - 1
#: ``maxVersions`` that means "keep every version".
UNLIMITED_VERSIONS = INT32_MAX
#: ``timeToLive`` that means "forever" (HBase's ``HConstants.FOREVER``).
FOREVER_TTL = INT32_MAX
NOT_IMPLEMENTED = ("getRowOrBefore", "getRegionInfo")
_LONG = struct.Struct(">q")
#: Thrift ``attributes`` maps, which HBase passes on to its operations; unused here.
Attributes = Optional[dict[bytes, bytes]]


@functools.lru_cache(maxsize=None)
def hbase_idl() -> ModuleType:
    """The ``Hbase.thrift`` IDL that happybase ships, loaded with thriftpy2 (the
    module happybase itself uses when it is already imported)."""
    spec = importlib.util.find_spec("happybase")
    if spec is None or spec.origin is None:
        raise MissingDependency(
            "the HBase Thrift gateway serves the Hbase.thrift IDL that happybase ships: pip install happybase"
        )
    path = Path(spec.origin).parent / "Hbase.thrift"
    loaded = sys.modules.get("Hbase_thrift")
    if loaded is not None and Path(getattr(loaded, "__thrift_file__", "")) == path:
        return loaded
    return thriftpy2.load(str(path), module_name="Hbase_thrift")


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- small helpers -------------------------------------------------------------------


def _io_error(message: str) -> TException:
    return hbase_idl().IOError(message=message)


def _illegal(message: str) -> TException:
    return hbase_idl().IllegalArgument(message=message)


def _text(value: bytes | str | None, what: str) -> str:
    if value is None:
        raise _illegal(f"{what} is missing")
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _illegal(f"{what} {value!r} is not UTF-8") from e


def parse_column(column: bytes | None) -> tuple[str, bytes | None]:
    """``family:qualifier`` -> (family, qualifier); ``family`` -> (family, None)
    (the whole family); ``family:`` -> (family, b"") (HBase's ``CellUtil.parseColumn``)."""
    if column is None:
        raise _illegal("a column name is missing")
    if isinstance(column, str):
        column = column.encode()
    family, colon, qualifier = column.partition(b":")
    if not family:
        raise _illegal(f"column {column!r} has no family (expected family:qualifier)")
    return _text(family, "column family"), (qualifier if colon else None)


def _column_name(family: str, qualifier: bytes) -> bytes:
    return family.encode() + b":" + qualifier


def _sorted_cells(row: Row, before: int, versions: int) -> list[tuple[bytes, Cell]]:
    """(column, cell) of a row in HBase's order (family, qualifier, newest
    first), at most ``versions`` per column, only cells with ts < ``before``."""
    out: list[tuple[bytes, Cell]] = []
    for family in sorted(row.cells):
        columns = row.cells[family]
        for qualifier in sorted(columns):
            name = _column_name(family, qualifier)
            kept = 0
            for cell in columns[qualifier]:
                if cell.timestamp_ms < before:
                    out.append((name, cell))
                    kept += 1
                    if kept >= versions:
                        break
    return out


def _row_result(key: bytes, cells: Sequence[tuple[bytes, Cell]], sort_columns: bool) -> Any:
    idl = hbase_idl()
    if sort_columns:
        return idl.TRowResult(
            row=key,
            sortedColumns=[idl.TColumn(columnName=c, cell=idl.TCell(value=x.value, timestamp=x.timestamp_ms))
                           for c, x in cells],
        )
    columns = {}
    for name, cell in cells:
        columns.setdefault(name, idl.TCell(value=cell.value, timestamp=cell.timestamp_ms))
    return idl.TRowResult(row=key, columns=columns)


def _filter_columns(row: Row, before: int) -> list[list[filters.ScanCell]]:
    """A row's columns for a filter: (family, qualifier) order, each column's
    cells with ts < ``before``, newest first."""
    columns = []
    for family in sorted(row.cells):
        for qualifier, cells in sorted(row.cells[family].items()):
            column = [filters.ScanCell(family, qualifier, c.value, c.timestamp_ms) for c in cells
                      if c.timestamp_ms < before]
            if column:
                columns.append(column)
    return columns


def _parse_filter(text: bytes) -> filters.Filter:
    try:
        return filters.parse_filter(text)
    except filters.FilterError as e:
        raise _io_error(f"java.lang.IllegalArgumentException: {e}") from e


def _tcells(cells: Iterable[tuple[bytes, Cell]]) -> list[Any]:
    tcell = hbase_idl().TCell
    return [tcell(value=cell.value, timestamp=cell.timestamp_ms) for _, cell in cells]


class _RowLocks:
    """Striped locks over (table, row): read-modify-write operations take the
    locks of their rows, and so do plain writes, so that an increment never
    interleaves with a put of the same row through this gateway."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextlib.contextmanager
    def hold(self, table: str, keys: Iterable[bytes]) -> Iterator[None]:
        stripes = sorted({hash((table, key)) % len(self._locks) for key in keys})
        taken = []
        try:
            for stripe in stripes:  # in order: no deadlock between two writers
                self._locks[stripe].acquire()
                taken.append(stripe)
            yield
        finally:
            for stripe in reversed(taken):
                self._locks[stripe].release()


# -- scanners ------------------------------------------------------------------------------


class _Scanner:
    def __init__(self, results: Iterator[Any], owner: int | None) -> None:
        self.results = results
        self.owner = owner
        self.lock = threading.Lock()
        self.touched = time.monotonic()

    def take(self, count: int) -> list[Any]:
        with self.lock:
            self.touched = time.monotonic()
            return list(itertools.islice(self.results, max(count, 0)))

    def close(self) -> None:
        close = getattr(self.results, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


# -- the handler ----------------------------------------------------------------------------


class HBaseThriftHandler:
    """The methods of the ``Hbase`` Thrift service over a tablewatch backend.

    Called by :class:`HBaseThriftGateway` (through a dispatcher that turns every
    failure into an exception the method declares); usable directly in tests.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        server_name: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        scanner_timeout_s: float = 300.0,
    ) -> None:
        self.backend = backend
        self.server_name = server_name
        self.port = port
        self.scanner_timeout_s = scanner_timeout_s
        self._disabled: set[str] = set()
        self._scanners: dict[int, _Scanner] = {}
        self._scanner_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._rows = _RowLocks()
        self._connection = threading.local()

    # -- connection bookkeeping (called by the server) --------------------------------

    def connection_opened(self, connection_id: int) -> None:
        self._connection.id = connection_id

    def connection_closed(self, connection_id: int) -> None:
        with self._lock:
            owned = [i for i, s in self._scanners.items() if s.owner == connection_id]
            scanners = [self._scanners.pop(i) for i in owned]
        for scanner in scanners:
            scanner.close()
        self._connection.id = None

    # -- tables ---------------------------------------------------------------------------

    def _name(self, table_name: bytes | str) -> str:
        return _text(table_name, "table name")

    def _exists(self, name: str) -> bool:
        try:
            self.backend.table_info(name)
        except TableNotFound:
            return False
        return True

    def _families(self, name: str) -> dict[str, GCPolicy]:
        return dict(self.backend.table_info(name).families)

    def _table(self, table_name: bytes | str) -> tuple[str, Table, dict[str, GCPolicy]]:
        """(name, table, families) of an enabled table."""
        name = self._name(table_name)
        families = self._families(name)  # raises TableNotFound
        if name in self._disabled:
            raise _io_error(f"org.apache.hadoop.hbase.TableNotEnabledException: {name} is disabled")
        return name, self.backend.table(name), families

    def _check_family(self, name: str, families: dict[str, GCPolicy], family: str) -> None:
        if family not in families:
            raise _io_error(
                f"org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException: "
                f"column family {family} does not exist in table {name}"
            )

    def _columns(
        self, name: str, families: dict[str, GCPolicy], columns: Sequence[bytes] | None
    ) -> list[Column] | None:
        """A Thrift column list as a Table API ``columns`` filter (None: all)."""
        if not columns:
            return None
        wanted: list[Column] = []
        for column in columns:
            family, qualifier = parse_column(column)
            self._check_family(name, families, family)
            wanted.append(family if qualifier is None else (family, qualifier))
        return wanted

    def enableTable(self, tableName: bytes) -> None:
        name = self._name(tableName)
        if not self._exists(name):
            raise TableNotFound(name)
        with self._lock:
            if name not in self._disabled:
                raise _io_error(f"org.apache.hadoop.hbase.TableNotDisabledException: {name}")
            self._disabled.discard(name)

    def disableTable(self, tableName: bytes) -> None:
        name = self._name(tableName)
        if not self._exists(name):
            raise TableNotFound(name)
        with self._lock:
            if name in self._disabled:
                raise _io_error(f"org.apache.hadoop.hbase.TableNotEnabledException: {name}")
            self._disabled.add(name)

    def isTableEnabled(self, tableName: bytes) -> bool:
        name = self._name(tableName)
        if not self._exists(name):
            raise TableNotFound(name)
        return name not in self._disabled

    def getTableNames(self) -> list[bytes]:
        return [name.encode() for name in sorted(self.backend.list_tables())]

    def createTable(self, tableName: bytes, columnFamilies: list[Any]) -> None:
        idl = hbase_idl()
        name = self._name(tableName)
        if not columnFamilies:
            raise _illegal(f"table {name} needs at least one column family")
        families: dict[str, GCPolicy] = {}
        for descriptor in columnFamilies:
            if not descriptor.name:
                raise _illegal("column name is empty")
            family = parse_column(descriptor.name)[0]
            if family in families:
                raise _illegal(f"Family '{family}' already exists so cannot be added")
            versions = descriptor.maxVersions if descriptor.maxVersions is not None else 3
            if versions < 1:
                raise _illegal(f"Maximum versions must be positive (family {family}: {versions})")
            ttl = descriptor.timeToLive if descriptor.timeToLive is not None else -1
            families[family] = GCPolicy(
                max_versions=None if versions >= UNLIMITED_VERSIONS else versions,
                max_age_s=None if ttl <= 0 or ttl >= FOREVER_TTL else float(ttl),
            )
        try:
            self.backend.create_table(name, families)
        except TableExists as e:
            raise idl.AlreadyExists(message="table name already in use") from e
        with self._lock:
            self._disabled.discard(name)

    def deleteTable(self, tableName: bytes) -> None:
        name = self._name(tableName)
        if not self._exists(name):
            raise _io_error(f"java.io.IOException: table does not exist: {name}")
        with self._lock:
            if name not in self._disabled:
                raise _io_error(f"org.apache.hadoop.hbase.TableNotDisabledException: {name}")
        self.backend.delete_table(name)
        with self._lock:
            self._disabled.discard(name)

    def getColumnDescriptors(self, tableName: bytes) -> dict[bytes, Any]:
        idl = hbase_idl()
        name = self._name(tableName)
        descriptors = {}
        for family, policy in sorted(self._families(name).items()):
            ttl = FOREVER_TTL if policy.max_age_s is None else min(FOREVER_TTL, int(-(-policy.max_age_s // 1)))
            descriptors[family.encode() + b":"] = idl.ColumnDescriptor(
                name=family.encode() + b":",
                maxVersions=UNLIMITED_VERSIONS if policy.max_versions is None else policy.max_versions,
                timeToLive=ttl,
            )
        return descriptors

    def getTableRegions(self, tableName: bytes) -> list[Any]:
        idl = hbase_idl()
        name = self._name(tableName)
        if not self._exists(name):
            return []  # as HBase: an empty list for a table that does not exist
        starts = sorted({b"", *self.backend.table(name).sample_row_keys()})
        regions = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else b""
            regions.append(idl.TRegionInfo(
                startKey=start, endKey=end, id=i + 1, name=name.encode() + b"," + start + b"," + str(i + 1).encode(),
                version=1, serverName=self.server_name.encode(), port=self.port,
            ))
        return regions

    def compact(self, tableNameOrRegionName: bytes) -> None:
        name = self._name(tableNameOrRegionName.split(b",", 1)[0] if tableNameOrRegionName else tableNameOrRegionName)
        _, table, _ = self._table(name)
        table.compact()

    def majorCompact(self, tableNameOrRegionName: bytes) -> None:
        self.compact(tableNameOrRegionName)

    # -- reads -------------------------------------------------------------------------------

    def _read(
        self, tableName: bytes, rows: Sequence[bytes], columns: Sequence[bytes] | None, before: int, versions: int
    ) -> dict[bytes, list[tuple[bytes, Cell]]]:
        name, table, families = self._table(tableName)
        wanted = self._columns(name, families, columns)
        keys = [key for key in rows if key]
        if not keys:
            return {}
        fetch = versions if before >= LATEST_TIMESTAMP else UNLIMITED_VERSIONS
        found = {}
        for row in table.read_rows(keys, columns=wanted, versions=fetch):
            cells = _sorted_cells(row, before, versions)
            if cells:
                found[row.key] = cells
        return found

    def _row_results(
        self, tableName: bytes, rows: Sequence[bytes] | None, columns: Sequence[bytes] | None, before: int
    ) -> list[Any]:
        found = self._read(tableName, rows or [], columns, before, 1)
        return [_row_result(key, found[key], False) for key in rows or [] if key in found]

    def get(self, tableName: bytes, row: bytes, column: bytes, attributes: Attributes = None) -> list[Any]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, 1, attributes)

    def getVer(self, tableName: bytes, row: bytes, column: bytes, numVersions: int,
               attributes: Attributes = None) -> list[Any]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, numVersions, attributes)

    def getVerTs(self, tableName: bytes, row: bytes, column: bytes, timestamp: int, numVersions: int,
                 attributes: Attributes = None) -> list[Any]:
        if numVersions is None or numVersions < 1:
            return []
        found = self._read(tableName, [row], [column], timestamp, numVersions)
        return _tcells(found.get(row, []))

    def getRow(self, tableName: bytes, row: bytes, attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, [row], None, LATEST_TIMESTAMP)

    def getRowWithColumns(self, tableName: bytes, row: bytes, columns: list[bytes] | None,
                          attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, [row], columns, LATEST_TIMESTAMP)

    def getRowTs(self, tableName: bytes, row: bytes, timestamp: int, attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, [row], None, timestamp)

    def getRowWithColumnsTs(self, tableName: bytes, row: bytes, columns: list[bytes] | None, timestamp: int,
                            attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, [row], columns, timestamp)

    def getRows(self, tableName: bytes, rows: list[bytes], attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, rows, None, LATEST_TIMESTAMP)

    def getRowsWithColumns(self, tableName: bytes, rows: list[bytes], columns: list[bytes] | None,
                           attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, rows, columns, LATEST_TIMESTAMP)

    def getRowsTs(self, tableName: bytes, rows: list[bytes], timestamp: int,
                  attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, rows, None, timestamp)

    def getRowsWithColumnsTs(self, tableName: bytes, rows: list[bytes], columns: list[bytes] | None,
                             timestamp: int, attributes: Attributes = None) -> list[Any]:
        return self._row_results(tableName, rows, columns, timestamp)

    # -- writes -----------------------------------------------------------------------------

    def _mutate(self, tableName: bytes, batches: Sequence[tuple[bytes, Sequence[Any]]], timestamp: int,
                deletes_first: bool) -> None:
        name, table, families = self._table(tableName)
        latest = timestamp is None or timestamp >= LATEST_TIMESTAMP
        put_ts = _now_ms() if latest else timestamp
        planned: list[tuple[bytes, list[Mutation], list[DeleteCells]]] = []
        for key, mutations in batches:
            if key is None:
                raise _illegal("a row key is missing")
            puts: list[Mutation] = []
            deletes: list[DeleteCells] = []
            for mutation in mutations or ():
                family, qualifier = parse_column(mutation.column)
                self._check_family(name, families, family)
                if mutation.isDelete:
                    deletes.append(DeleteCells(family, qualifier))
                elif qualifier is None:
                    raise _illegal(f"Invalid famAndQf provided: a put needs family:qualifier, got {mutation.column!r}")
                else:
                    value = mutation.value if mutation.value is not None else b""
                    value = value if isinstance(value, bytes) else value.encode()
                    puts.append(SetCell(family, qualifier, value, put_ts))
            planned.append((key, puts, deletes))
        if not any(puts or deletes for _, puts, deletes in planned):
            return
        with self._rows.hold(name, (key for key, _, _ in planned)):
            rows = []
            for key, puts, deletes in planned:
                removals: list[Mutation] = list(deletes)
                if deletes and not latest:
                    removals += self._survivors(table, key, deletes, timestamp)
                ops = removals + puts if deletes_first else puts + removals
                if ops:
                    rows.append(RowMutation(key, ops))
            table.mutate_rows(rows)

    @staticmethod
    def _survivors(
        table: Table, key: bytes, deletes: Sequence[DeleteCells | DeleteRow], timestamp: int
    ) -> list[SetCell]:
        """The cells a delete at ``timestamp`` keeps (ts > timestamp), to write
        back after deleting every version. Called under the row's lock."""
        whole_row = any(isinstance(d, DeleteRow) for d in deletes)
        columns: list[Column] | None = None
        if not whole_row:
            columns = [d.family if d.qualifier is None else (d.family, d.qualifier) for d in deletes]
        rows = table.read_rows([key], columns=columns, versions=UNLIMITED_VERSIONS)
        if not rows:
            return []
        return [
            SetCell(family, qualifier, cell.value, cell.timestamp_ms)
            for family, qualifiers in rows[0].cells.items()
            for qualifier, cells in qualifiers.items()
            for cell in cells
            if cell.timestamp_ms > timestamp
        ]

    def mutateRow(self, tableName: bytes, row: bytes, mutations: list[Any], attributes: Attributes = None) -> None:
        self._mutate(tableName, [(row, mutations)], LATEST_TIMESTAMP, deletes_first=True)

    def mutateRowTs(self, tableName: bytes, row: bytes, mutations: list[Any], timestamp: int,
                    attributes: Attributes = None) -> None:
        self._mutate(tableName, [(row, mutations)], timestamp, deletes_first=True)

    def mutateRows(self, tableName: bytes, rowBatches: list[Any], attributes: Attributes = None) -> None:
        self._mutate(tableName, [(b.row, b.mutations) for b in rowBatches or ()], LATEST_TIMESTAMP, deletes_first=False)

    def mutateRowsTs(self, tableName: bytes, rowBatches: list[Any], timestamp: int,
                     attributes: Attributes = None) -> None:
        self._mutate(tableName, [(b.row, b.mutations) for b in rowBatches or ()], timestamp, deletes_first=False)

    def deleteAll(self, tableName: bytes, row: bytes, column: bytes, attributes: Attributes = None) -> None:
        self.deleteAllTs(tableName, row, column, LATEST_TIMESTAMP, attributes)

    def deleteAllTs(self, tableName: bytes, row: bytes, column: bytes, timestamp: int,
                    attributes: Attributes = None) -> None:
        mutation = hbase_idl().Mutation(isDelete=True, column=column)
        self._mutate(tableName, [(row, [mutation])], timestamp, deletes_first=True)

    def deleteAllRow(self, tableName: bytes, row: bytes, attributes: Attributes = None) -> None:
        self.deleteAllRowTs(tableName, row, LATEST_TIMESTAMP, attributes)

    def deleteAllRowTs(self, tableName: bytes, row: bytes, timestamp: int, attributes: Attributes = None) -> None:
        name, table, _ = self._table(tableName)
        with self._rows.hold(name, [row]):
            ops: list[Mutation] = [DeleteRow()]
            if timestamp is not None and timestamp < LATEST_TIMESTAMP:
                ops += self._survivors(table, row, [DeleteRow()], timestamp)
            table.mutate_rows([RowMutation(row, ops)])

    # -- read-modify-write --------------------------------------------------------------------

    def _newest(self, table: Table, row: bytes, family: str, qualifier: bytes) -> Cell | None:
        found = table.read_rows([row], columns=[(family, qualifier)])
        return found[0].cells[family][qualifier][0] if found else None

    @staticmethod
    def _next_ts(previous: Cell | None) -> int:
        """The gateway's clock, but always after the cell being replaced (as
        HBase does for increments and appends)."""
        now = _now_ms()
        if previous is not None and previous.timestamp_ms >= now:
            return min(previous.timestamp_ms + 1, LATEST_TIMESTAMP - 1)
        return now

    def _increment(self, tableName: bytes, row: bytes, column: bytes, amount: int) -> int:
        name, table, families = self._table(tableName)
        family, qualifier = parse_column(column)
        self._check_family(name, families, family)
        qualifier = qualifier if qualifier is not None else b""
        with self._rows.hold(name, [row]):
            previous = self._newest(table, row, family, qualifier)
            current = 0
            if previous is not None:
                if len(previous.value) != 8:
                    raise _io_error(
                        f"org.apache.hadoop.hbase.DoNotRetryIOException: Field is not a long, "
                        f"it's {len(previous.value)} bytes wide"
                    )
                current = _LONG.unpack(previous.value)[0]
            value = (current + amount + 2**63) % 2**64 - 2**63  # Java long arithmetic
            cell = SetCell(family, qualifier, _LONG.pack(value), self._next_ts(previous))
            table.mutate_rows([RowMutation(row, [cell])])
            return value

    def atomicIncrement(self, tableName: bytes, row: bytes, column: bytes, value: int) -> int:
        return self._increment(tableName, row, column, value or 0)

    def increment(self, increment: Any) -> None:
        if not increment.table or not increment.row:
            raise _io_error("Must supply a table and a row key; can't increment")
        self._increment(increment.table, increment.row, increment.column, increment.ammount or 0)

    def incrementRows(self, increments: list[Any]) -> None:
        for increment in increments or ():
            self.increment(increment)

    def append(self, append: Any) -> list[Any]:
        if not append.table or not append.row:
            raise _io_error("Must supply a table and a row key; can't append")
        columns, values = append.columns or [], append.values or []
        if len(columns) != len(values):
            raise _io_error("Sizes of columns and values in tappend object are not matching")
        name, table, families = self._table(append.table)
        with self._rows.hold(name, [append.row]):
            cells = []
            for column, suffix in zip(columns, values):
                family, qualifier = parse_column(column)
                self._check_family(name, families, family)
                qualifier = qualifier if qualifier is not None else b""
                previous = self._newest(table, append.row, family, qualifier)
                value = (previous.value if previous is not None else b"") + (suffix or b"")
                cells.append(SetCell(family, qualifier, value, self._next_ts(previous)))
            if cells:
                table.mutate_rows([RowMutation(append.row, cells)])
        return [hbase_idl().TCell(value=c.value, timestamp=c.timestamp_ms) for c in cells]

    def checkAndPut(self, tableName: bytes, row: bytes, column: bytes, value: bytes | None, mput: Any,
                    attributes: Attributes = None) -> bool:
        """HBase's ``checkAndMutate(row, family).qualifier(q)``, then
        ``ifEquals(value)``, or ``ifNotExists()`` when ``value`` is absent; as
        in HBase, an absent or empty ``value`` matches a missing cell or one
        holding ``b""``. The put gets the gateway's clock (Thrift v1 carries no
        timestamp). When it writes the checked column, the store's
        ``check_and_set`` makes it atomic for every writer of the store; a put
        to another column is atomic with respect to this gateway's writes."""
        name, table, families = self._table(tableName)
        if not row:
            raise _illegal("a row key is missing")
        if mput is None:
            raise _illegal("the mutation to put is missing")
        family, qualifier = parse_column(column)
        self._check_family(name, families, family)
        qualifier = qualifier if qualifier is not None else b""
        put_family, put_qualifier = parse_column(mput.column)
        self._check_family(name, families, put_family)
        put_qualifier = put_qualifier if put_qualifier is not None else b""
        put_value = mput.value if mput.value is not None else b""
        same_cell = (put_family, put_qualifier) == (family, qualifier)
        with self._rows.hold(name, [row]):
            for _ in range(16):
                current = self._newest(table, row, family, qualifier)
                if not value:  # HBase: a null or empty comparator value
                    matches = current is None or current.value == b""
                else:
                    matches = current is not None and current.value == value
                if not matches:
                    return False
                if not same_cell:
                    table.mutate_rows([RowMutation(row, [SetCell(put_family, put_qualifier, put_value, _now_ms())])])
                    return True
                # The cell as read is the one expected: another process writing
                # the store directly may change it in between, then look again.
                if table.check_and_set(row, family, qualifier, None if current is None else current.value,
                                       put_value, _now_ms()):
                    return True
        raise _io_error(f"checkAndPut: row {row!r} of {name} kept changing under concurrent writers; try again")

    # -- scanners -----------------------------------------------------------------------------

    def _open_scanner(
        self,
        tableName: bytes,
        start: bytes | None,
        stop: bytes | None,
        columns: Sequence[bytes] | None,
        *,
        before: int = LATEST_TIMESTAMP,
        scan_filter: filters.Filter | None = None,
        batch_size: int | None = None,
        sort_columns: bool = False,
        reverse: bool = False,
    ) -> int:
        name, table, families = self._table(tableName)
        wanted = self._columns(name, families, columns)
        if scan_filter is not None:
            scan_filter.set_reversed(reverse)
        results = self._scan_results(table, start or None, stop or None, wanted, before, scan_filter,
                                     batch_size, sort_columns, reverse)
        self._expire_scanners()
        with self._lock:
            scanner_id = next(self._scanner_ids)
            if scanner_id > INT32_MAX:
                self._scanner_ids = itertools.count(1)
                scanner_id = next(self._scanner_ids)
            self._scanners[scanner_id] = _Scanner(results, getattr(self._connection, "id", None))
        return scanner_id

    @staticmethod
    def _scan_results(
        table: Table,
        start: bytes | None,
        stop: bytes | None,
        wanted: list[Column] | None,
        before: int,
        scan_filter: filters.Filter | None,
        batch_size: int | None,
        sort_columns: bool,
        reverse: bool,
    ) -> Iterator[Any]:
        # A filter sees every version a family keeps (HBase 2.x); without one
        # that can tell them apart, the newest (before ``before``) is all a
        # Thrift scan returns.
        old_versions = scan_filter is not None and filters.sees_versions(scan_filter)
        versions = 1 if before >= LATEST_TIMESTAMP and not old_versions else UNLIMITED_VERSIONS
        if reverse:
            # HBase's reversed scan: stop < key <= start, largest first. The
            # Table API only scans forward, so the range is read, then reversed.
            low = stop + b"\x00" if stop else None
            high = start + b"\x00" if start else None
            rows: Iterable[Row] = reversed(list(table.scan(low, high, columns=wanted, versions=versions)))
        else:
            prefix = filters.prefix_of(scan_filter) if scan_filter is not None else None
            if prefix is not None:  # rows outside the prefix can never pass: scan only its range
                start = prefix if start is None or prefix > start else start
                end = prefix_end(prefix)
                if end is not None and (stop is None or end < stop):
                    stop = end
            if start is not None and stop is not None and start >= stop:
                return
            rows = table.scan(start, stop, columns=wanted, versions=versions)
        found: Iterable[tuple[bytes, list[tuple[bytes, Cell]]]]
        if scan_filter is None:
            found = ((row.key, _sorted_cells(row, before, 1)) for row in rows)
        else:
            found = (
                (key, [(_column_name(c.family, c.qualifier), Cell(c.value, c.timestamp_ms)) for c in cells])
                for key, cells in filters.apply_filter(((row.key, _filter_columns(row, before)) for row in rows),
                                                       scan_filter)
            )
        for key, cells in found:
            if not cells:
                continue
            if batch_size and batch_size > 0:
                for i in range(0, len(cells), batch_size):
                    yield _row_result(key, cells[i : i + batch_size], sort_columns)
            else:
                yield _row_result(key, cells, sort_columns)

    def _expire_scanners(self) -> None:
        cutoff = time.monotonic() - self.scanner_timeout_s
        with self._lock:
            idle = [i for i, s in self._scanners.items() if s.touched < cutoff]
            expired = [self._scanners.pop(i) for i in idle]
        for scanner in expired:
            scanner.close()

    def scannerOpenWithScan(self, tableName: bytes, scan: Any, attributes: Attributes = None) -> int:
        return self._open_scanner(
            tableName, scan.startRow, scan.stopRow, scan.columns,
            before=scan.timestamp if scan.timestamp is not None else LATEST_TIMESTAMP,
            scan_filter=_parse_filter(scan.filterString) if scan.filterString else None,
            batch_size=scan.batchSize, sort_columns=bool(scan.sortColumns), reverse=bool(scan.reversed),
        )

    def scannerOpen(self, tableName: bytes, startRow: bytes, columns: list[bytes] | None,
                    attributes: Attributes = None) -> int:
        return self._open_scanner(tableName, startRow, None, columns)

    def scannerOpenWithStop(self, tableName: bytes, startRow: bytes, stopRow: bytes, columns: list[bytes] | None,
                            attributes: Attributes = None) -> int:
        return self._open_scanner(tableName, startRow, stopRow, columns)

    def scannerOpenWithPrefix(self, tableName: bytes, startAndPrefix: bytes, columns: list[bytes] | None,
                              attributes: Attributes = None) -> int:
        # What HBase's handler does: a scan from the prefix, WHILE PrefixFilter(prefix).
        scan_filter = filters.WhileMatchFilter(filters.PrefixFilter(startAndPrefix)) if startAndPrefix else None
        return self._open_scanner(tableName, startAndPrefix, None, columns, scan_filter=scan_filter)

    def scannerOpenTs(self, tableName: bytes, startRow: bytes, columns: list[bytes] | None, timestamp: int,
                      attributes: Attributes = None) -> int:
        return self._open_scanner(tableName, startRow, None, columns, before=timestamp)

    def scannerOpenWithStopTs(self, tableName: bytes, startRow: bytes, stopRow: bytes, columns: list[bytes] | None,
                              timestamp: int, attributes: Attributes = None) -> int:
        return self._open_scanner(tableName, startRow, stopRow, columns, before=timestamp)

    def _scanner(self, scanner_id: int) -> _Scanner:
        with self._lock:
            scanner = self._scanners.get(scanner_id)
        if scanner is None:
            raise _illegal("scanner ID is invalid")
        return scanner

    def scannerGetList(self, id: int, nbRows: int) -> list[Any]:
        return self._scanner(id).take(nbRows or 0)

    def scannerGet(self, id: int) -> list[Any]:
        return self._scanner(id).take(1)

    def scannerClose(self, id: int) -> None:
        with self._lock:
            scanner = self._scanners.pop(id, None)
        if scanner is None:
            raise _illegal("scanner ID is invalid")
        scanner.close()

    def close(self) -> None:
        with self._lock:
            scanners, self._scanners = list(self._scanners.values()), {}
        for scanner in scanners:
            scanner.close()


# -- the dispatcher: every IDL method, every failure a declared exception -------------------


def make_dispatcher(handler: HBaseThriftHandler) -> SimpleNamespace:
    """What thriftpy2's processor calls: each method of the ``Hbase`` service,
    answering only the exceptions the method declares (an undeclared one would
    make thriftpy2 drop the connection)."""
    idl = hbase_idl()
    service = idl.Hbase
    methods = {}
    for api in service.thrift_services:
        result_spec = getattr(service, api + "_result").thrift_spec
        declared = tuple(spec[2] for spec in result_spec.values() if spec[1] != "success")
        implementation = None if api in NOT_IMPLEMENTED else getattr(handler, api, None)
        methods[api] = _dispatch(api, implementation, declared, idl)
    return SimpleNamespace(**methods)


def _dispatch(api: str, implementation: Callable[..., Any] | None, declared: tuple[type, ...], idl: ModuleType):
    may_refuse = idl.IllegalArgument in declared
    may_exist = idl.AlreadyExists in declared

    def call(*args: Any) -> Any:
        if implementation is None:
            raise idl.IOError(message=f"{api} is not implemented by the tablewatch HBase Thrift gateway")
        try:
            return implementation(*args)
        except declared:
            raise
        except (idl.IllegalArgument, idl.AlreadyExists) as e:
            raise idl.IOError(message=str(e.message)) from e
        except TableNotFound as e:
            raise idl.IOError(message=f"org.apache.hadoop.hbase.TableNotFoundException: {e}") from e
        except TableExists as e:
            if may_exist:
                raise idl.AlreadyExists(message="table name already in use") from e
            raise idl.IOError(message=str(e)) from e
        except ValidationError as e:
            if may_refuse:
                raise idl.IllegalArgument(message=str(e)) from e
            raise idl.IOError(message=f"java.lang.IllegalArgumentException: {e}") from e
        except TablewatchError as e:
            raise idl.IOError(message=f"{type(e).__name__}: {e}") from e
        except Exception as e:  # a bug: log it, answer it, keep the connection
            log.exception("HBase Thrift gateway: %s failed", api)
            raise idl.IOError(message=f"internal error in {api}: {type(e).__name__}: {e}") from e

    call.__name__ = api
    return call


# -- the server ---------------------------------------------------------------------------------


class HBaseThriftGateway:
    """A threaded HBase Thrift v1 server over a tablewatch store.

    ``store`` is a store URL (opened, and closed on :meth:`stop`) or an open
    backend (left open). ``port=0`` picks a free port (see :attr:`port`).
    ``start()`` serves from a background thread; ``serve_forever()`` from the
    calling one. Usable as a context manager (start, then stop).
    """

    def __init__(
        self,
        store: str | Backend | None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        transport: str = "buffered",
        protocol: str = "binary",
        max_connections: int = 128,
        idle_timeout_s: float | None = 600.0,
        scanner_timeout_s: float = 300.0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValidationError("transport", transport, f"must be one of {', '.join(TRANSPORTS)}")
        if protocol not in PROTOCOLS:
            raise ValidationError("protocol", protocol, f"must be one of {', '.join(PROTOCOLS)}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValidationError("port", port, "must be 0 to 65535")
        if max_connections < 1:
            raise ValidationError("max_connections", max_connections, "must be >= 1")
        self._idl = hbase_idl()
        if store is None or isinstance(store, str):
            from tablewatch.store.backends import open_backend

            self.backend: Backend = open_backend(store)
            self._owns_backend = True
        else:
            self.backend = store
            self._owns_backend = False
        self.host = host
        self._requested_port = port
        self.transport = transport
        self.protocol = protocol
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.handler = HBaseThriftHandler(self.backend, server_name=host, port=port,
                                          scanner_timeout_s=scanner_timeout_s)
        self._processor = TProcessor(self._idl.Hbase, make_dispatcher(self.handler))
        self._transport_factory = TRANSPORTS[transport]()
        self._protocol_factory = PROTOCOLS[protocol]()
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[int, socket.socket] = {}
        self._connection_ids = itertools.count(1)
        self._pending: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._backlog = 0
        self._serving: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked when created with ``port=0``)."""
        if self._listener is None:
            return self._requested_port
        return self._listener.getsockname()[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def bind(self) -> HBaseThriftGateway:
        """Listen (clients can connect from now on; they are served once
        :meth:`serve_forever` or :meth:`start` runs)."""
        if self._listener is None:
            listener = socket.create_server((self.host, self._requested_port), backlog=128, reuse_port=False)
            listener.settimeout(0.5)
            self._listener = listener
            self.handler.port = self.port
        return self

    def start(self) -> HBaseThriftGateway:
        """Serve from a background thread; returns once clients can connect."""
        self.bind()
        if self._serving is None:
            self._serving = threading.Thread(target=self.serve_forever, name=f"hbase-thrift-{self.port}", daemon=True)
            self._serving.start()
        return self

    def serve_forever(self) -> None:
        self.bind()
        listener = self._listener
        assert listener is not None
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.is_set():
                    break
                log.exception("HBase Thrift gateway: accept failed")
                time.sleep(0.1)
                continue
            client.setblocking(True)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.settimeout(self.idle_timeout_s)
            self._submit(client)

    def _submit(self, client: socket.socket) -> None:
        # Each accepted connection gets a worker of its own: an idle one
        # (reserved here, so two connections never count on the same one), a
        # new one, or, with max_connections busy, the first to finish.
        with self._lock:
            if self._closed.is_set():
                client.close()
                return
            if self._idle_workers > 0:
                self._idle_workers -= 1
            elif len(self._workers) < self.max_connections:
                worker = threading.Thread(target=self._work, name=f"hbase-thrift-worker-{len(self._workers)}",
                                          daemon=True)
                self._workers.append(worker)
                worker.start()
            else:
                self._backlog += 1
        self._pending.put(client)

    def _work(self) -> None:
        # Worker threads are reused across connections, so the store's
        # per-thread resources (SQLite connections) stay bounded.
        while True:
            client = self._pending.get()
            if client is None:
                return
            try:
                self._serve_connection(client)
            finally:
                with self._lock:
                    if self._backlog > 0:
                        self._backlog -= 1  # this worker takes a waiting connection next
                    else:
                        self._idle_workers += 1

    def _serve_connection(self, client: socket.socket) -> None:
        connection_id = next(self._connection_ids)
        with self._lock:
            self._clients[connection_id] = client
        trans = self._transport_factory.get_transport(TSocket(sock=client))
        prot = self._protocol_factory.get_protocol(trans)
        self.handler.connection_opened(connection_id)
        try:
            while not self._closed.is_set():
                self._processor.process(prot, prot)
        except (TTransportException, OSError, EOFError):
            pass  # the client went away, was idle too long, or the gateway stops
        except (TProtocolException, TDecodeException, struct.error, UnicodeDecodeError) as e:
            log.warning("HBase Thrift gateway: connection %d closed: the client does not speak %s/%s (%s)",
                        connection_id, self.transport, self.protocol, e)
        except Exception:
            log.exception("HBase Thrift gateway: connection %d failed", connection_id)
        finally:
            self.handler.connection_closed(connection_id)
            with self._lock:
                self._clients.pop(connection_id, None)
            with contextlib.suppress(Exception):
                trans.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close every client connection, and close the store
        when the gateway opened it."""
        if self._closed.is_set():
            return
        self._closed.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            clients = list(self._clients.values())
            workers = list(self._workers)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for _ in workers:
            self._pending.put(None)
        deadline = time.monotonic() + timeout_s
        if self._serving is not None and self._serving is not threading.current_thread():
            self._serving.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        while True:  # connections accepted but never served
            try:
                pending = self._pending.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                pending.close()
        self.handler.close()
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> HBaseThriftGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"HBaseThriftGateway({self.backend.url!r}, {self.address}, "
                f"transport={self.transport!r}, protocol={self.protocol!r})")


# -- the command -----------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """``tablewatch gateway hbase-thrift``: serve until SIGINT or SIGTERM."""
    gateway = HBaseThriftGateway(args.store, host=args.host, port=args.port, transport=args.transport,
                                 protocol=args.protocol)
    try:
        gateway.bind()
    except OSError as e:
        gateway.stop()
        print(f"tablewatch: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    print(f"tablewatch HBase Thrift gateway listening on {gateway.address} "
          f"({gateway.transport}/{gateway.protocol}) over {gateway.backend.url}", flush=True)
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
    return 0
