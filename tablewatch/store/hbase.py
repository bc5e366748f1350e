"""The HBase backend: ``hbase://HOST[:PORT][?options]``, through happybase over
HBase's Thrift v1 API (the ``hbase thrift`` server; port 9090 by default).

Options:

``table_prefix``
    tables are named ``PREFIX.NAME`` (happybase's ``table_prefix`` with the
    separator ``.``), so several stores can share one HBase; ``ns:prefix`` puts
    them in an HBase namespace. Table names never contain a ``.``, so a store
    lists only its own tables: ``tw_meta`` of an unprefixed store is not
    ``meta`` of the store prefixed ``tw`` (``tw.meta``), and an unprefixed store
    does not list ``tw.meta``.
``transport`` = ``buffered`` | ``framed``, ``protocol`` = ``binary`` | ``compact``
    must match the Thrift server's: ``hbase thrift start`` is buffered/binary;
    its ``-hsha``, ``-nonblocking`` and ``-threadedselector`` modes are framed.
``pool_size``
    connections kept in the pool (default 8; opened when first needed).
``timeout_s``
    seconds to connect and to wait for each answer (default 30).

How the Table API maps onto HBase through Thrift v1:

- Timestamps are milliseconds on both sides (0 to 2**63 - 2).
- A family's :class:`~tablewatch.store.table.GCPolicy` is its ``VERSIONS`` and
  ``TTL``: ``max_versions=None`` ("unlimited") is stored as 2147483647 versions,
  HBase's ``Integer.MAX_VALUE``, and read back as None; ``max_age_s`` is the TTL
  in whole seconds (a fractional one is refused). Cells past the max age are
  also dropped client side, so clock skew never shows an expired cell.
- A Thrift v1 put carries one timestamp for the whole call, so ``mutate_rows``
  sends one ``mutateRowsTs`` per distinct timestamp, and one ``mutateRows`` per
  run of deletes, preserving each row's order. A row is therefore atomic per
  timestamp, not across its timestamps; a failed batch may be partly written,
  and replaying it (tablewatch's writes are idempotent) completes it.
- Deletes remove every version. On a real HBase they are tombstones at the
  server's clock: a put with an older or equal timestamp sent after a delete of
  the same cells stays hidden until a major compaction, unless the family has
  ``NEW_VERSION_BEHAVIOR => 'true'`` (HBase >= 2.0). tablewatch's time-series
  layer never deletes.
- A read returns the newest cell of each column; ``versions > 1`` costs one
  more round trip (``getVer``) per returned column whose family keeps several.
- ``split_keys`` cannot travel over Thrift v1: tables are created with one
  region. Pre-split them from the HBase shell (see the README).
- ``compact()`` asks HBase for a major compaction (which runs in the
  background) and returns 0; ``sample_row_keys()`` returns region start keys.
- ``check_and_set`` is Thrift v1 ``checkAndPut``, sent once: the cell gets the
  server's clock (the call carries no timestamp), and an absent or empty
  expected value matches a missing cell or an empty one (HBase's rule).

Errors: an unreachable server, a timeout, a dropped connection or an HBase-side
``IOError`` raise :class:`~tablewatch.errors.StoreUnavailable` naming the URL;
a request HBase refuses raises :class:`~tablewatch.errors.StoreError`. Broken
connections are replaced by the pool; a call that fails on a connection the
server closed while it sat idle (a restart, an idle timeout) is sent once more
on a fresh one, which is safe because every write carries its timestamps.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import happybase
from happybase.pool import NoConnectionsAvailable
from thriftpy2.thrift import TApplicationException, TException
from thriftpy2.transport import TTransportException

from tablewatch.errors import (
    StoreError,
    StoreUnavailable,
    StoreURLError,
    TableExists,
    TableNotFound,
    ValidationError,
)
from tablewatch.store.table import (
    Cell,
    Column,
    DeleteCells,
    DeleteRow,
    GCPolicy,
    Mutation,
    Row,
    RowMutation,
    ScanByRanges,
    SetCell,
    TableInfo,
    check_check_and_set,
    check_limit,
    check_row_key,
    check_set_cell,
    check_versions,
    normalize_columns,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 9090
DEFAULT_POOL_SIZE = 8
DEFAULT_TIMEOUT_S = 30.0
TRANSPORTS = ("buffered", "framed")
PROTOCOLS = ("binary", "compact")
URL_OPTIONS = ("pool_size", "protocol", "table_prefix", "timeout_s", "transport")
#: ``VERSIONS`` meaning "keep every version" (Java's Integer.MAX_VALUE).
UNLIMITED_VERSIONS = 2**31 - 1
#: ``TTL`` meaning "forever" (HBase's HConstants.FOREVER).
FOREVER_TTL_S = 2**31 - 1
#: A table name: no "." (the prefix separator), so that names are unambiguous.
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Between a table prefix and a table name (a character table names never hold).
TABLE_PREFIX_SEPARATOR = b"."
FAMILY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
TABLE_PREFIX_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*:)?[A-Za-z0-9_][A-Za-z0-9_.-]*$")
READ_BATCH_ROWS = 256
#: Puts per Thrift call are split at about this many bytes (HBase's framed
#: mode refuses frames over 2 MB unless configured otherwise).
MAX_CALL_BYTES = 1_500_000
FIRST_SCAN_PAGE, MAX_SCAN_PAGE = 64, 1024

T = TypeVar("T")


@dataclass(frozen=True)
class HBaseURL:
    host: str
    port: int = DEFAULT_PORT
    table_prefix: str | None = None
    transport: str = "buffered"
    protocol: str = "binary"
    pool_size: int = DEFAULT_POOL_SIZE
    timeout_s: float = DEFAULT_TIMEOUT_S


def parse_hbase_url(url: str) -> HBaseURL:
    """``hbase://HOST[:PORT][?table_prefix=…&transport=…&protocol=…&pool_size=…&timeout_s=…]``."""
    def bad(problem: str) -> StoreURLError:
        return StoreURLError(f"store URL {url!r}: {problem}")

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(f"malformed host or port ({e}); expected hbase://HOST[:PORT]") from e
    if parts.scheme.lower() != "hbase":
        raise bad("scheme must be 'hbase'")
    if not parts.hostname:
        raise bad("no host (e.g. hbase://localhost:9090)")
    if parts.username is not None or parts.password is not None:
        raise bad("HBase Thrift v1 takes no user or password in the URL")
    if parts.path not in ("", "/"):
        raise bad(f"no path expected after the host (got {parts.path!r}); name tables with ?table_prefix=")
    if parts.fragment:
        raise bad("no #fragment expected")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise bad(f"malformed options ({e})") from e
    unknown = sorted(set(query) - set(URL_OPTIONS))
    if unknown:
        raise bad(f"unknown option(s) {unknown}; known: {', '.join(URL_OPTIONS)}")
    options = {k: v[-1] for k, v in query.items()}
    prefix = options.get("table_prefix")
    if prefix is not None and not TABLE_PREFIX_RE.match(prefix):
        raise bad(f"table_prefix {prefix!r} must be letters, digits, _ . - (optionally NAMESPACE:prefix)")
    transport = options.get("transport", "buffered")
    if transport not in TRANSPORTS:
        raise bad(f"transport must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    protocol = options.get("protocol", "binary")
    if protocol not in PROTOCOLS:
        raise bad(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    try:
        pool_size = int(options.get("pool_size", DEFAULT_POOL_SIZE))
    except ValueError:
        raise bad(f"pool_size must be an integer >= 1 (got {options['pool_size']!r})") from None
    if pool_size < 1:
        raise bad(f"pool_size must be an integer >= 1 (got {pool_size})")
    try:
        timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
    except ValueError:
        raise bad(f"timeout_s must be a number of seconds > 0 (got {options['timeout_s']!r})") from None
    if not timeout_s > 0 or timeout_s == float("inf"):
        raise bad(f"timeout_s must be a number of seconds > 0 (got {options['timeout_s']!r})")
    return HBaseURL(parts.hostname, port if port is not None else DEFAULT_PORT, prefix, transport, protocol,
                    pool_size, timeout_s)


def _thrift_types():
    import Hbase_thrift  # registered by `import happybase`

    return Hbase_thrift


def _message(error: BaseException) -> str:
    """The first line of a Thrift error's message (HBase sends a whole Java stack trace)."""
    message = getattr(error, "message", None) or str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    first = str(message).strip().splitlines()[0] if str(message).strip() else type(error).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, TTransportException) and error.type == TTransportException.TIMED_OUT


class HBaseBackend:
    """Tables of one HBase (or of a ``tablewatch gateway hbase-thrift``) reached
    through happybase. Thread-safe: calls share a happybase ``ConnectionPool``."""

    def __init__(self, url: str) -> None:
        self.options = parse_hbase_url(url)
        self.url = url
        self._pool: happybase.ConnectionPool | None = None
        self._lock = threading.Lock()
        self._infos: dict[str, TableInfo] = {}
        # id(connection) -> id(its transport) after its last successful call:
        # a failure on such a connection means the server dropped it while idle.
        self._healthy: dict[int, int] = {}
        self._connections: dict[int, happybase.Connection] = {}
        self._closed = False

    # -- connections ---------------------------------------------------------------

    def _open_pool(self) -> happybase.ConnectionPool:
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url!r} is closed")
            if self._pool is None:
                o = self.options
                try:
                    # The pool opens its first connection now: a wrong host fails here.
                    self._pool = happybase.ConnectionPool(
                        o.pool_size, host=o.host, port=o.port, timeout=int(o.timeout_s * 1000),
                        table_prefix=o.table_prefix, table_prefix_separator=TABLE_PREFIX_SEPARATOR,
                        transport=o.transport, protocol=o.protocol,
                    )
                except (TException, OSError) as e:
                    raise self._unavailable("connect", e) from e
            return self._pool

    def _call(self, action: str, fn: Callable[[happybase.Connection], T], *, table: str | None = None,
              idempotent: bool = True) -> T:
        """Run ``fn`` with a pooled connection, turning Thrift and socket errors
        into tablewatch errors. ``idempotent=False``: ``fn`` is never sent
        twice (its first attempt may have been applied); a connection that sat
        in the pool is probed with a read first, so that one the server
        dropped while idle is still replaced."""
        thrift = _thrift_types()
        for attempt in (1, 2):
            pool = self._open_pool()
            reused = sent = False
            try:
                with pool.connection(timeout=self.options.timeout_s) as connection:
                    key = id(connection)
                    self._connections[key] = connection
                    reused = self._healthy.get(key) == id(connection.transport)
                    try:
                        if reused and not idempotent:
                            connection.client.getTableNames()  # HBase's Thrift v1 has no ping
                        sent = True
                        result = fn(connection)
                    except (TException, OSError):
                        self._healthy.pop(key, None)
                        raise  # the pool replaces the connection
                    except BaseException:
                        # Not a Thrift error (a bug, an interrupt): half a request may
                        # sit in the buffers, so this connection cannot be reused.
                        self._healthy.pop(key, None)
                        connection._refresh_thrift_client()
                        raise
                    self._healthy[key] = id(connection.transport)
                    return result
            except (thrift.IOError, thrift.IllegalArgument, thrift.AlreadyExists, TApplicationException) as e:
                raise self._server_error(action, e, table) from e
            except NoConnectionsAvailable as e:
                raise StoreUnavailable(
                    self.url, f"{action}: no connection of the pool ({self.options.pool_size}) "
                              f"was free within {self.options.timeout_s:g} s",
                ) from e
            except (TException, OSError) as e:
                if attempt == 1 and reused and (idempotent or not sent) and not _is_timeout(e):
                    continue  # the server dropped this idle connection: once more, on a fresh one
                raise self._unavailable(action, e) from e
        raise AssertionError("unreachable")

    def _unavailable(self, action: str, error: BaseException) -> StoreUnavailable:
        o = self.options
        if _is_timeout(error):
            reason = f"no answer from {o.host}:{o.port} within {o.timeout_s:g} s"
        elif isinstance(error, TTransportException) and error.type == TTransportException.NOT_OPEN:
            reason = f"cannot connect to the HBase Thrift server at {o.host}:{o.port}"
        elif isinstance(error, TTransportException) and error.type == TTransportException.END_OF_FILE:
            reason = f"the HBase Thrift server at {o.host}:{o.port} closed the connection"
        elif isinstance(error, (ConnectionError, OSError)):
            reason = f"connection to {o.host}:{o.port} failed ({error.strerror or error})"
        else:
            reason = f"Thrift error talking to {o.host}:{o.port}: {_message(error)}"
        return StoreUnavailable(self.url, f"{action}: {reason}")

    def _server_error(self, action: str, error: BaseException, table: str | None) -> Exception:
        thrift = _thrift_types()
        message = _message(error)
        if "TableNotFoundException" in message or "table does not exist" in message.lower():
            if table is not None:
                self._infos.pop(table, None)
            return TableNotFound(f"table {table!r} does not exist in {self.url}" if table
                                 else f"{action}: a table does not exist in {self.url} ({message})")
        if isinstance(error, thrift.AlreadyExists):
            return TableExists(f"table {table!r} already exists in {self.url}")
        if "NoSuchColumnFamilyException" in message:
            if table is not None:
                self._infos.pop(table, None)  # the table changed elsewhere: read its families again
            return StoreError(f"store {self.url!r}: {action}: {message}")
        if isinstance(error, thrift.IOError):
            return StoreUnavailable(self.url, f"{action}: HBase answered IOError: {message}")
        return StoreError(f"store {self.url!r}: {action}: HBase refused the request: {message}")

    # -- admin ---------------------------------------------------------------------------

    def create_table(
        self, name: str, families: Mapping[str, GCPolicy], *, split_keys: Sequence[bytes] = ()
    ) -> None:
        _check_table_name(name)
        if not families:
            raise ValidationError("families", families, "a table needs at least one column family")
        descriptors = {}
        for family, policy in families.items():
            if not isinstance(family, str) or not FAMILY_NAME_RE.match(family):
                raise ValidationError("family", family, "must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")
            descriptors[family] = _descriptor(family, policy)
        self._call(f"create table {name}", lambda c: c.create_table(name, descriptors), table=name)
        self._infos.pop(name, None)
        if split_keys:
            log.info("%s: table %s was created with one region (Thrift v1 cannot pre-split); "
                     "split it on its salt buckets from the HBase shell", self.url, name)

    def delete_table(self, name: str) -> None:
        thrift = _thrift_types()

        def drop(connection: happybase.Connection) -> None:
            try:
                connection.disable_table(name)
            except thrift.IOError as e:
                if "TableNotEnabledException" not in _message(e):
                    raise
            connection.delete_table(name)

        self._call(f"delete table {name}", drop, table=name)
        self._infos.pop(name, None)

    def list_tables(self) -> list[str]:
        """This store's tables: with a prefix, those named ``PREFIX.NAME``
        (happybase keeps them and strips the prefix); without one, those with
        no prefix. Either way, what is left must be a table name: another
        store's ``PREFIX.NAME``, ``PREFIX.SUB.NAME`` or ``ns:NAME`` is not."""
        names = self._call("list tables", lambda c: c.tables())
        decoded = (n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
        return sorted(n for n in decoded if TABLE_NAME_RE.match(n))

    def table_info(self, name: str) -> TableInfo:
        info = self._infos.get(name)
        if info is not None:
            return info
        _check_table_name(name)
        described = self._call(f"describe table {name}", lambda c: c.table(name).families(), table=name)
        families = {}
        for family, settings in sorted(described.items()):
            family = family.decode() if isinstance(family, bytes) else family
            families[family] = _policy(settings)
        info = TableInfo(name, families)
        self._infos[name] = info
        return info

    def table(self, name: str) -> HBaseTable:
        return HBaseTable(self, name)

    def full_table_name(self, name: str) -> str:
        """The table's name in HBase, with the table prefix as happybase joins it."""
        full = self._call(f"name table {name}", lambda c: c._table_name(name))
        return full.decode() if isinstance(full, bytes) else full

    def set_families(self, name: str, families: Mapping[str, GCPolicy]) -> None:
        """Refused: HBase's Thrift v1 API cannot alter a table. The error gives
        the HBase shell commands that make the change."""
        self.set_families_many({name: families})

    def set_families_many(self, changes: Mapping[str, Mapping[str, GCPolicy]]) -> None:
        """Refused, like :meth:`set_families`, with the commands of every table."""
        commands = []
        for name, families in changes.items():
            current = self.table_info(name).families
            for family, policy in families.items():
                descriptor = _descriptor(family, policy)
                commands.append(f"alter '{self.full_table_name(name)}', {{NAME => '{family}', "
                                f"VERSIONS => {descriptor['max_versions']}, TTL => {descriptor['time_to_live']}}}"
                                + ("" if family in current else "   # adds the family"))
        raise StoreError(
            f"store {self.url!r}: HBase's Thrift v1 API (happybase) cannot change a table's families, so tablewatch "
            "changed nothing. Run these in `hbase shell` (TTL in seconds, 2147483647 = FOREVER), then reopen the "
            "store:\n" + "\n".join(commands)
        )

    splits_note = ("HBase's Thrift v1 API cannot create pre-split tables: a new table has one region until it "
                   "is split from the HBase shell (see the README) or HBase splits it as it grows")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pool = None
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            try:
                connection.close()
            except Exception:  # closing a broken socket: nothing left to do
                pass

    def __repr__(self) -> str:
        return f"HBaseBackend({self.url!r})"


def _check_table_name(name: str) -> None:
    if not isinstance(name, str) or not TABLE_NAME_RE.match(name):
        raise ValidationError("table name", name, "must match [A-Za-z_][A-Za-z0-9_]{0,62}")


def _descriptor(family: str, policy: GCPolicy) -> dict[str, int]:
    versions = UNLIMITED_VERSIONS if policy.max_versions is None else policy.max_versions
    if versions > UNLIMITED_VERSIONS:
        raise ValidationError(f"{family}.max_versions", policy.max_versions,
                              f"is over HBase's limit ({UNLIMITED_VERSIONS}; None means unlimited)")
    ttl = FOREVER_TTL_S
    if policy.max_age_s is not None:
        if not math.isfinite(policy.max_age_s):
            raise ValidationError(f"{family}.max_age_s", policy.max_age_s, "must be a number of seconds or None")
        if policy.max_age_s != int(policy.max_age_s):
            raise ValidationError(f"{family}.max_age_s", policy.max_age_s, "HBase TTLs are whole seconds")
        if policy.max_age_s >= FOREVER_TTL_S:
            raise ValidationError(f"{family}.max_age_s", policy.max_age_s,
                                  f"is over HBase's limit ({FOREVER_TTL_S - 1} s; None means forever)")
        ttl = int(policy.max_age_s)
    return {"max_versions": versions, "time_to_live": ttl}


def _policy(settings: Mapping[str, Any]) -> GCPolicy:
    versions = settings.get("max_versions")
    ttl = settings.get("time_to_live")
    return GCPolicy(
        max_versions=None if versions is None or versions >= UNLIMITED_VERSIONS else int(versions),
        max_age_s=None if ttl is None or ttl <= 0 or ttl >= FOREVER_TTL_S else float(ttl),
    )


class _Reader:
    """One read's column filter, versions and age limits, applied to what
    happybase returns (``{b"family:qualifier": (value, ts)}`` per row)."""

    def __init__(self, table: str, families: Mapping[str, GCPolicy], columns: Iterable[Column] | None,
                 versions: int, keys_only: bool = False) -> None:
        self.keys_only = keys_only
        #: HBase's filter language: cells come back with empty values
        self.filter = b"KeyOnlyFilter()" if keys_only else None
        check_versions(versions)
        wanted = normalize_columns(columns, families, f"table {table!r}")
        self.columns: list[bytes] | None = None
        self.empty = False
        if wanted is not None:
            whole, pairs = wanted
            self.columns = [f.encode() for f in sorted(whole)]
            self.columns += [f.encode() + b":" + q for f, q in sorted(pairs) if f not in whole]
            self.empty = not self.columns
        now = int(time.time() * 1000)
        self.keep = {f: versions if p.max_versions is None else min(versions, p.max_versions)
                     for f, p in families.items()}
        self.cutoff = {f: now - int(p.max_age_s * 1000) if p.max_age_s is not None else None
                       for f, p in families.items()}

    def _fresh(self, family: str, timestamp: int) -> bool:
        cutoff = self.cutoff[family]
        return cutoff is None or timestamp >= cutoff

    def rows(
        self, table: happybase.Table, fetched: Iterable[tuple[bytes, Mapping[bytes, tuple[bytes, int]]]]
    ) -> list[Row]:
        rows = []
        for key, data in fetched:
            cells: dict[str, dict[bytes, list[Cell]]] = {}
            for column, (value, timestamp) in data.items():
                family_bytes, _, qualifier = column.partition(b":")
                family = family_bytes.decode()
                if family not in self.cutoff or not self._fresh(family, timestamp):
                    continue
                cells.setdefault(family, {})[qualifier] = [Cell(value, timestamp)]
            if not cells:
                continue
            for family, columns in cells.items():
                keep = self.keep[family]
                if keep > 1:  # Thrift v1 gets return one version: fetch the others
                    for qualifier in columns:
                        versions = table.cells(key, family.encode() + b":" + qualifier, versions=keep,
                                               include_timestamp=True)
                        columns[qualifier] = [Cell(b"" if self.keys_only else v, ts) for v, ts in versions
                                              if self._fresh(family, ts)] or columns[qualifier]
            rows.append(Row(key, {f: dict(sorted(cells[f].items())) for f in sorted(cells)}))
        return rows


class HBaseTable(ScanByRanges):
    """One HBase table; see the module docstring for how each call maps."""

    def __init__(self, backend: HBaseBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    @property
    def _families(self) -> Mapping[str, GCPolicy]:
        return self.backend.table_info(self.name).families

    # -- writes ------------------------------------------------------------------------

    def mutate_rows(self, rows: Sequence[RowMutation]) -> None:
        families = self._families
        by_key: dict[bytes, list[Mutation]] = {}
        for row in rows:
            check_row_key(row.key)
            for mutation in row.mutations:
                _check_mutation(self.name, families, mutation)
            by_key.setdefault(row.key, []).extend(row.mutations)  # a key given twice: one ordered list
        calls = _plan(by_key, families)
        if not calls:
            return

        def send(connection: happybase.Connection) -> None:
            table = connection.table(self.name)
            for timestamp, mutations in calls:
                batch = table.batch(timestamp=timestamp)
                for key, change in mutations.items():
                    if timestamp is None:
                        batch.delete(key, columns=change)
                    else:
                        batch.put(key, change)
                batch.send()

        self.backend._call(f"write to {self.name}", send, table=self.name)

    def check_and_set(
        self, key: bytes, family: str, qualifier: bytes, expected: bytes | None, value: bytes, timestamp_ms: int
    ) -> bool:
        """Thrift v1 ``checkAndPut`` (happybase has no method for it: the call
        goes to the connection's Thrift client). HBase's own rules apply: the
        put carries no timestamp, so the cell gets the server's clock; and an
        absent ``value`` (``expected=None``) or an empty one both match a
        missing cell or a cell holding ``b""``. Sent once, never retried."""
        check_check_and_set(key, family, qualifier, expected, value, timestamp_ms, self._families, self.name)
        column = family.encode() + b":" + bytes(qualifier)
        thrift = _thrift_types()
        put = thrift.Mutation(isDelete=False, column=column, value=bytes(value), writeToWAL=True)
        check = None if expected is None else bytes(expected)

        def check_and_put(connection: happybase.Connection) -> bool:
            table_name = connection._table_name(self.name)
            return bool(connection.client.checkAndPut(table_name, key, column, check, put, {}))

        return self.backend._call(f"check and set in {self.name}", check_and_put, table=self.name,
                                  idempotent=False)

    # -- reads -------------------------------------------------------------------------

    def read_rows(
        self, keys: Iterable[bytes], *, columns: Iterable[Column] | None = None, versions: int = 1
    ) -> list[Row]:
        unique = sorted(set(keys))
        for key in unique:
            check_row_key(key)
        reader = _Reader(self.name, self._families, columns, versions)
        if reader.empty or not unique:
            return []
        rows: list[Row] = []
        for i in range(0, len(unique), READ_BATCH_ROWS):
            chunk = unique[i : i + READ_BATCH_ROWS]

            def read(connection: happybase.Connection, chunk: list[bytes] = chunk) -> list[Row]:
                table = connection.table(self.name)
                return reader.rows(table, table.rows(chunk, columns=reader.columns, include_timestamp=True))

            rows.extend(self.backend._call(f"read {self.name}", read, table=self.name))
        return rows

    def scan_ranges(
        self,
        ranges: Sequence[tuple[bytes | None, bytes | None]],
        *,
        limit: int | None = None,
        columns: Iterable[Column] | None = None,
        versions: int = 1,
        keys_only: bool = False,
    ) -> Iterator[Row]:
        check_limit(limit)
        reader = _Reader(self.name, self._families, columns, versions, keys_only=keys_only)
        ordered = sorted(ranges, key=lambda r: r[0] or b"")
        return self._scan(ordered, reader, limit)

    def _scan(self, ranges: Sequence[tuple[bytes | None, bytes | None]], reader: _Reader, limit: int | None
              ) -> Iterator[Row]:
        # Each page is a scanner opened, read and closed within one pooled
        # connection, resuming after the last key: no server-side state and no
        # connection are held while the caller consumes rows.
        if reader.empty:
            return
        produced = 0
        for start, end in ranges:
            if start is not None and end is not None and start >= end:
                continue
            position, page = start, FIRST_SCAN_PAGE
            while True:
                want = page if limit is None else min(page, limit - produced)

                def fetch(connection: happybase.Connection, position=position, want=want):
                    table = connection.table(self.name)
                    fetched = list(table.scan(row_start=position, row_stop=end, columns=reader.columns,
                                              filter=reader.filter, batch_size=want, limit=want,
                                              include_timestamp=True))
                    return len(fetched), (fetched[-1][0] if fetched else None), reader.rows(table, fetched)

                count, last, rows = self.backend._call(f"scan {self.name}", fetch, table=self.name)
                for row in rows:
                    yield row
                    produced += 1
                    if limit is not None and produced >= limit:
                        return
                if count < want or last is None:
                    break
                position, page = last + b"\x00", min(page * 2, MAX_SCAN_PAGE)

    # -- maintenance -------------------------------------------------------------------

    def compact(self, now_ms: int | None = None) -> int:
        """Request a major compaction; HBase removes expired cells in the
        background, so this returns 0."""
        self.backend._call(f"compact {self.name}", lambda c: c.compact_table(self.name, major=True), table=self.name)
        return 0

    def sample_row_keys(self) -> list[bytes]:
        """Start keys of the table's regions (after the first): where HBase splits it."""
        regions = self.backend._call(f"list regions of {self.name}", lambda c: c.table(self.name).regions(),
                                     table=self.name)
        return sorted({r["start_key"] for r in regions if r.get("start_key")})


def _check_mutation(table: str, families: Mapping[str, GCPolicy], mutation: Any) -> None:
    if isinstance(mutation, DeleteRow):
        return
    if not isinstance(mutation, (SetCell, DeleteCells)):
        raise ValidationError("mutation", mutation, "is not a SetCell, DeleteCells or DeleteRow")
    if mutation.family not in families:
        raise ValidationError("family", mutation.family, f"is not a column family of table {table!r}")
    if isinstance(mutation, DeleteCells):
        if mutation.qualifier is not None and not isinstance(mutation.qualifier, (bytes, bytearray)):
            raise ValidationError("qualifier", mutation.qualifier, "must be bytes")
        return
    check_set_cell(mutation)


def _plan(rows: Mapping[bytes, Sequence[Mutation]], families: Mapping[str, GCPolicy]
          ) -> list[tuple[int | None, dict[bytes, Any]]]:
    """The Thrift calls of a batch, in order: (timestamp, {row: {column: value}})
    for a ``mutateRowsTs``, (None, {row: [column, ...]}) for a ``mutateRows`` of
    deletes. Each row's mutations are split into runs of puts and runs of
    deletes; round k holds run k of every row, so each row keeps its order."""
    rounds: list[tuple[dict[int, dict[bytes, dict[bytes, bytes]]], dict[bytes, list[bytes]]]] = []
    for key, mutations in rows.items():
        run, kind = -1, None
        for mutation in mutations:
            is_put = isinstance(mutation, SetCell)
            if is_put is not kind:
                run, kind = run + 1, is_put
                if run == len(rounds):
                    rounds.append(({}, {}))
            puts, deletes = rounds[run]
            if isinstance(mutation, SetCell):
                column = mutation.family.encode() + b":" + bytes(mutation.qualifier)
                puts.setdefault(mutation.timestamp_ms, {}).setdefault(key, {})[column] = bytes(mutation.value)
            elif isinstance(mutation, DeleteCells):
                column = mutation.family.encode()
                if mutation.qualifier is not None:
                    column += b":" + bytes(mutation.qualifier)  # "family" alone: the whole family
                deletes.setdefault(key, []).append(column)
            else:  # DeleteRow: Thrift v1 mutations delete families, so every family
                deletes.setdefault(key, []).extend(f.encode() for f in families)
    calls: list[tuple[int | None, dict[bytes, Any]]] = []
    for puts, deletes in rounds:
        if deletes:
            calls.append((None, deletes))
        for timestamp in sorted(puts):
            # Split large calls at row boundaries (a row's cells of one timestamp
            # stay together): Thrift servers cap message sizes.
            call: dict[bytes, dict[bytes, bytes]] = {}
            size = 0
            for key, cells in puts[timestamp].items():
                row_size = len(key) + sum(len(c) + len(v) for c, v in cells.items())
                if call and size + row_size > MAX_CALL_BYTES:
                    calls.append((timestamp, call))
                    call, size = {}, 0
                call[key] = cells
                size += row_size
            calls.append((timestamp, call))
    return calls
