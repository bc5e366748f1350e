"""The embedded backend: every table in one SQLite file.

``sqlite:///abs/path.db``, ``sqlite://relative/path.db`` or a bare path.

The file is in WAL mode, so readers are never blocked by a writer, and several
processes (training jobs, the dashboard, the alert runner) can use it at once:
a writer takes the write lock with ``BEGIN IMMEDIATE`` and waits for another
writer (up to ``busy_timeout_s``) instead of failing. ``synchronous=NORMAL`` in
WAL mode makes every committed batch survive the writer being killed (only a
power cut can lose the last transactions; ``?synchronous=full`` closes that too).

Each table is one SQL table of cells keyed by (row, family, qualifier, -ts): the
primary key order is the Table API's order, newest version first.

The file gives back the space of removed cells: a new file is created with
``auto_vacuum = INCREMENTAL``, and ``compact()`` returns its free pages to the
file system a few megabytes at a time (each step a short write transaction;
readers are never blocked in WAL mode). A file created before that has
``auto_vacuum = NONE`` and keeps its size until one full :meth:`SQLiteBackend.vacuum`
(``tablewatch store compact --vacuum``) rewrites it, which also switches it to
incremental.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from tablewatch.errors import (
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    StoreURLError,
    TableExists,
    TableNotFound,
    ValidationError,
)
from tablewatch.store.table import (
    Cell,
    CellColumns,
    Column,
    DeleteCells,
    DeleteRow,
    GCPolicy,
    PackedBytes,
    Row,
    RowMutation,
    ScanByRanges,
    SetCell,
    TableInfo,
    check_cell_columns,
    check_check_and_set,
    check_limit,
    check_row_key,
    check_set_cell,
    check_versions,
    family_policy,
    normalize_columns,
    prefix_end,
)

#: A table name: what HBase and Bigtable both accept ("." and "-" too: the
#: HBase Thrift gateway serves names such as ``PREFIX.NAME``).
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
FAMILY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
SYNCHRONOUS_MODES = ("off", "normal", "full")
#: ``?mode=``: ``rw`` (default: read-write, created by writers when missing) or
#: ``ro`` (read-only: nothing is written, not even the -wal and -shm files).
OPEN_MODES = ("rw", "ro")
SCAN_PAGE_CELLS = 4096
PAGE_SIZE = 16384
MMAP_SIZE = 256 * 1024 * 1024
#: Page cache, KiB, while a connection writes a batch of at least
#: ``BIG_WRITE_CELLS`` cells (SQLite's default, kept otherwise, is 2 MiB): one
#: point to each of 100k series touches a leaf page of every series' row, and
#: with the default cache the pages spill mid-transaction (measured: twice the
#: time of the insert). Set back after the batch, so that an idle or lightly
#: written connection holds no more than before.
BIG_WRITE_CACHE_KIB = 64 * 1024
BIG_WRITE_CELLS = 10_000
#: Most bytes of cells passed to one statement by ``SQLiteTable._set_packed``
#: (SQLite refuses a blob over 1e9 bytes).
PACKED_STATEMENT_BYTES = 64 * 1024 * 1024
#: ``json_each`` (which ``SQLiteTable._set_packed`` numbers cells with) is
#: built into every SQLite since 3.38; older ones may lack it: executemany then.
JSON_BUILT_IN = sqlite3.sqlite_version_info >= (3, 38, 0)
#: Free pages given back per incremental-vacuum transaction (4 MiB of 16 KiB pages).
VACUUM_STEP_PAGES = 256
#: How long a compaction waits for old readers before it truncates the WAL file.
CHECKPOINT_WAIT_MS = 1000
_IN_CHUNK = 500  # keys per "row IN (...)" query, under SQLite's variable limit


def parse_sqlite_url(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///abs.db`` -> /abs.db, ``sqlite://rel.db`` -> rel.db, a bare path as is."""
    if "://" not in url:
        return Path(url), {}
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise StoreURLError(f"store URL {url!r}: scheme must be 'sqlite'")
    path = parts.netloc + parts.path
    if not path:
        raise StoreURLError(f"store URL {url!r}: no file path (e.g. sqlite:///var/tablewatch.db)")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout_s", "mode"}
    if unknown:
        raise StoreURLError(
            f"store URL {url!r}: unknown option(s) {sorted(unknown)}; known: busy_timeout_s, mode, synchronous"
        )
    if options.get("mode", "rw") not in OPEN_MODES:
        raise StoreURLError(f"store URL {url!r}: mode must be one of {OPEN_MODES} (got {options['mode']!r})")
    if options.get("synchronous", "normal").lower() not in SYNCHRONOUS_MODES:
        raise StoreURLError(f"store URL {url!r}: synchronous must be one of {SYNCHRONOUS_MODES}")
    return Path(path), options


class _ThreadConnection:
    __slots__ = ("connection", "__weakref__")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


class SQLiteBackend:
    """All tables in one SQLite file. Thread-safe: one connection per thread.

    ``create=False`` refuses a file that does not exist (:class:`StoreNotFound`)
    instead of creating it and its folders. The store is opened read-only
    (``read_only`` True) with ``?mode=ro``, or when the file or its folder is
    not writable: then nothing is written to the folder."""

    def __init__(self, url: str, *, busy_timeout_s: float = 60.0, synchronous: str = "normal",
                 create: bool = True) -> None:
        self.path, options = parse_sqlite_url(url)
        self.url = url if "://" in url else f"sqlite:///{self.path.resolve()}"
        self.busy_timeout_s = float(options.get("busy_timeout_s", busy_timeout_s))
        self.synchronous = options.get("synchronous", synchronous).lower()
        if self.path.is_dir():
            raise StoreError(f"store {self.url!r}: {self.path} is a directory; a store is one file, "
                             f"e.g. sqlite:///{(self.path / 'tablewatch.db').resolve()}")
        exists = self.path.exists()
        if not exists and not create:
            raise StoreNotFound(
                f"store {self.url!r} does not exist (no file {self.path.resolve()}); a command that only reads "
                f"never creates one. Create it by writing to it: `tablewatch push METRIC VALUE --store {self.url}`, "
                "or open_store(url) in Python"
            )
        folder = self.path.resolve().parent
        self.read_only = options.get("mode") == "ro" or (exists and not (
            os.access(self.path, os.W_OK) and os.access(folder, os.W_OK)))
        if self.read_only and not exists:
            raise StoreNotFound(f"store {self.url!r} does not exist (no file {self.path.resolve()}) "
                                "and is opened read-only (?mode=ro)")
        self._local = threading.local()
        self._connections: dict[sqlite3.Connection, threading.Thread] = {}  # each with the thread it belongs to
        self._lock = threading.Lock()
        # Threads of one process queue here for the write lock instead of
        # polling SQLite's file lock (other processes still wait on the file).
        self._write_lock = threading.Lock()
        self._infos: dict[str, TableInfo] = {}
        self._infos_schema = -1  # SQLite's schema_version the cached infos were read at
        self._closed = False
        with self._errors("open"):
            connection = self._connection()
            if self.read_only:
                connection.execute("SELECT name FROM tablewatch_tables LIMIT 1").fetchall()
            else:
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS tablewatch_tables (name TEXT PRIMARY KEY, families TEXT NOT NULL)"
                )

    # -- connections -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        holder = getattr(self._local, "holder", None)
        if holder is not None:
            if not self._closed:
                return holder.connection
            # close() left this thread's connection to this thread: drop it
            # here (its finalizer closes it), where nothing else uses it.
            self._local.holder = None
        if self._closed:
            raise StoreError(f"store {self.url!r} is closed")
        if self.read_only:
            connection = self._read_only_connection()
        else:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._set_up(connection)
        # The connection lives as long as its thread: when the thread ends, its
        # thread-local holder is collected and the connection closed, so a
        # threaded server over this backend does not leak file descriptors.
        # Never at interpreter exit (finalize's default): the exit hook runs in
        # the main thread while a daemon thread (a collector's flusher) may be
        # inside SQLite on this connection, and closing it there is a segfault.
        holder = _ThreadConnection(connection)
        self._local.holder = holder
        with self._lock:
            self._connections[connection] = threading.current_thread()
        weakref.finalize(holder, self._forget, connection).atexit = False
        return connection

    def _read_only_connection(self) -> sqlite3.Connection:
        """A connection that writes nothing. A store nobody has open (no -wal
        or -shm file: its last writer closed it) is read as ``immutable=1``, so
        SQLite creates no -wal or -shm file either, even in a folder it could
        write to. A store that is open elsewhere is read with ``mode=ro``, which
        sees what its writers have committed through the existing -shm file."""
        uri = "file:" + quote(str(self.path.resolve()))
        wal, shm = (Path(f"{self.path}-{suffix}") for suffix in ("wal", "shm"))
        if not wal.exists() and not shm.exists():
            connection = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        else:
            connection = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=self.busy_timeout_s,
                                         isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        connection.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        # Points are stored as packed chunks of tens of kilobytes: 16 KiB pages
        # and memory-mapped reads make reading them several times faster, while
        # a small transaction still writes little to the WAL (64 KiB pages read
        # no faster and cost 4x the WAL bytes). page_size only takes effect when
        # the file is created.
        connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        if not self.path.exists() or self.path.stat().st_size == 0:
            # Only when the file is created (before WAL mode writes its header):
            # on an existing file this pragma takes the write lock, and an older
            # file needs one vacuum() anyway.
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        connection.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreUnavailable(self.url, f"cannot switch to WAL mode (got {mode!r})")
        connection.execute(f"PRAGMA synchronous = {self.synchronous}")

    def _forget(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            self._connections.pop(connection, None)
        with contextlib.suppress(sqlite3.Error):
            connection.close()

    class _Errors:
        def __init__(self, backend: SQLiteBackend, action: str) -> None:
            self.backend = backend
            self.action = action

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type, exc, tb) -> bool:
            if isinstance(exc, sqlite3.OperationalError):
                message = str(exc)
                if "no such table: tablewatch_tables" in message:
                    raise StoreNotFound(f"store {self.backend.url!r}: {self.backend.path} is not a tablewatch "
                                        "store (an SQLite file without its tables)") from exc
                if "no such table" in message:
                    raise TableNotFound(message) from exc
                if "readonly database" in message:
                    raise StoreError(f"store {self.backend.url!r} is read-only (opened with ?mode=ro, or the file "
                                     f"or its folder is not writable): cannot {self.action}") from exc
                raise StoreUnavailable(self.backend.url, f"{self.action}: {message}") from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"store {self.backend.url!r}: {self.action}: {exc}") from exc
            return False

    def _errors(self, action: str) -> SQLiteBackend._Errors:
        return SQLiteBackend._Errors(self, action)

    # -- admin ---------------------------------------------------------------

    def create_table(
        self, name: str, families: Mapping[str, GCPolicy], *, split_keys: Sequence[bytes] = ()
    ) -> None:
        if not TABLE_NAME_RE.match(name):
            raise ValidationError("table name", name, "must match [A-Za-z_][A-Za-z0-9_.-]{0,62}")
        if not families:
            raise ValidationError("families", families, "a table needs at least one column family")
        for family in families:
            if not FAMILY_NAME_RE.match(family):
                raise ValidationError("family", family, "must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")
        encoded = json.dumps(
            {f: {"max_versions": p.max_versions, "max_age_s": p.max_age_s} for f, p in families.items()}
        )
        connection = self._connection()
        with self._errors(f"create table {name}"):
            with _transaction(connection):
                exists = connection.execute("SELECT 1 FROM tablewatch_tables WHERE name = ?", (name,)).fetchone()
                if exists:
                    raise TableExists(f"table {name!r} already exists in {self.url}")
                connection.execute("INSERT INTO tablewatch_tables (name, families) VALUES (?, ?)", (name, encoded))
                connection.execute(
                    f'CREATE TABLE "cells_{name}" (row BLOB NOT NULL, family TEXT NOT NULL, '
                    "qualifier BLOB NOT NULL, nts INTEGER NOT NULL, value BLOB NOT NULL, "
                    "PRIMARY KEY (row, family, qualifier, nts)) WITHOUT ROWID"
                )

    def delete_table(self, name: str) -> None:
        connection = self._connection()
        with self._errors(f"delete table {name}"):
            with _transaction(connection):
                deleted = connection.execute("DELETE FROM tablewatch_tables WHERE name = ?", (name,)).rowcount
                if not deleted:
                    raise TableNotFound(f"table {name!r} does not exist in {self.url}")
                connection.execute(f'DROP TABLE IF EXISTS "cells_{name}"')
        self._infos.pop(name, None)

    def list_tables(self) -> list[str]:
        with self._errors("list tables"):
            rows = self._connection().execute("SELECT name FROM tablewatch_tables ORDER BY name").fetchall()
        return [name for (name,) in rows]

    def table_info(self, name: str) -> TableInfo:
        connection = self._connection()
        with self._errors(f"read table {name}"):
            # A table deleted or recreated by another process changes the schema
            # version (read from the file header: microseconds): then re-read.
            schema = connection.execute("PRAGMA schema_version").fetchone()[0]
            if schema != self._infos_schema:
                self._infos = {}
                self._infos_schema = schema
            info = self._infos.get(name)
            if info is not None:
                return info
            found = connection.execute(
                "SELECT families FROM tablewatch_tables WHERE name = ?", (name,)
            ).fetchone()
        if not found:
            raise TableNotFound(f"table {name!r} does not exist in {self.url}")
        families = {f: GCPolicy(**p) for f, p in json.loads(found[0]).items()}
        info = TableInfo(name, families)
        self._infos[name] = info
        return info

    def table(self, name: str) -> SQLiteTable:
        return SQLiteTable(self, name)

    splits_note = "one SQLite file is one piece: the embedded store has no tablets or regions to split"

    def set_families(self, name: str, families: Mapping[str, GCPolicy]) -> None:
        """Set the GC policies of these families of table ``name``, adding the
        families it lacks (other families are left as they are)."""
        for family in families:
            if not FAMILY_NAME_RE.match(family):
                raise ValidationError("family", family, "must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")
        connection = self._connection()
        with self._errors(f"change the families of {name}"):
            with _transaction(connection):
                found = connection.execute("SELECT families FROM tablewatch_tables WHERE name = ?", (name,)).fetchone()
                if not found:
                    raise TableNotFound(f"table {name!r} does not exist in {self.url}")
                current = json.loads(found[0])
                current.update({f: {"max_versions": p.max_versions, "max_age_s": p.max_age_s}
                                for f, p in families.items()})
                connection.execute("UPDATE tablewatch_tables SET families = ? WHERE name = ?",
                                   (json.dumps(current), name))
        self._infos.pop(name, None)

    def count_rows(self, name: str) -> int:
        """Exact number of rows (used by ``store info``)."""
        with self._errors(f"count rows of {name}"):
            return self._connection().execute(
                f'SELECT COUNT(*) FROM (SELECT DISTINCT row FROM "cells_{name}")'
            ).fetchone()[0]

    # -- disk space --------------------------------------------------------------

    def file_bytes(self) -> int:
        """Size of the database file plus its WAL file, in bytes."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def auto_vacuum(self) -> str:
        """The file's auto_vacuum mode: ``none``, ``full`` or ``incremental``."""
        with self._errors("read auto_vacuum"):
            mode = self._connection().execute("PRAGMA auto_vacuum").fetchone()[0]
        return {0: "none", 1: "full", 2: "incremental"}[mode]

    def reclaim_space(self, step_pages: int = VACUUM_STEP_PAGES) -> int:
        """Give the file's free pages back to the file system: an incremental
        vacuum of ``step_pages`` pages per transaction, so that readers never
        wait and writers wait one step at most, then a checkpoint that shrinks
        the file and empties the WAL (it waits up to ``CHECKPOINT_WAIT_MS`` for
        readers of older snapshots, and writers wait for it meanwhile; if they
        are still reading, the next automatic checkpoint finishes the job).
        Pages given back; 0 when the file's auto_vacuum is not incremental (see
        :meth:`vacuum`)."""
        if step_pages < 1:
            raise ValidationError("step_pages", step_pages, "must be >= 1")
        connection = self._connection()
        freed = 0
        with self._errors("reclaim space"):
            if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                return 0
            before = None
            while True:
                with self._write_lock:
                    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
                    if before is not None:
                        freed += max(0, before - free)
                    if not free or free == before:  # done, or no progress
                        break
                    # executescript steps the pragma to its end (execute frees one page per call)
                    connection.executescript(f"PRAGMA incremental_vacuum({min(free, step_pages)});")
                before = free
            if freed:
                self._checkpoint(connection)
        return freed

    def vacuum(self) -> None:
        """Rewrite the whole file without its free pages (SQLite's VACUUM), and
        switch it to incremental auto_vacuum so that later compactions shrink it
        on their own. Readers go on reading meanwhile (WAL mode); writers wait
        until it is done: run it once, at a quiet moment, on a store created
        before auto_vacuum was set."""
        connection = self._connection()
        with self._write_lock, self._errors("vacuum"):
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            connection.execute("VACUUM")
            self._checkpoint(connection)

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")

    def close(self) -> None:
        """Close this thread's connection and those of threads that ended. A
        connection of a live thread is never closed from here (that thread may
        be inside SQLite on it): the thread drops it on its next call (which
        raises StoreError: closed) or when it ends."""
        with self._lock:
            self._closed = True
            current = threading.current_thread()
            idle = [connection for connection, thread in self._connections.items()
                    if thread is current or not thread.is_alive()]
            for connection in idle:
                del self._connections[connection]
        for connection in idle:
            with contextlib.suppress(sqlite3.Error):
                connection.close()
        self._local.holder = None

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.url!r})"


class SQLiteTable(ScanByRanges):
    def __init__(self, backend: SQLiteBackend, name: str) -> None:
        self.backend = backend
        self.name = name
        self._sql_name = f'"cells_{name}"'

    @property
    def _families(self) -> Mapping[str, GCPolicy]:
        return self.backend.table_info(self.name).families

    # -- writes ------------------------------------------------------------------

    def mutate_rows(self, rows: Sequence[RowMutation]) -> None:
        families = self._families
        sets: list[tuple[bytes, str, bytes, int, bytes]] = []
        for row in rows:
            check_row_key(row.key)
            for mutation in row.mutations:
                family = getattr(mutation, "family", None)
                if family is not None and family not in families:
                    raise ValidationError("family", family, f"is not a column family of table {self.name!r}")
                if isinstance(mutation, SetCell):
                    check_set_cell(mutation)
        connection = self.backend._connection()
        with self.backend._write_lock, self.backend._errors(f"write to {self.name}"):
            with _transaction(connection):
                for row in rows:
                    for mutation in row.mutations:
                        if isinstance(mutation, SetCell):
                            sets.append(
                                (row.key, mutation.family, bytes(mutation.qualifier), -int(mutation.timestamp_ms),
                                 mutation.value)
                            )
                            continue
                        self._flush_sets(connection, sets)
                        if isinstance(mutation, DeleteRow):
                            connection.execute(f"DELETE FROM {self._sql_name} WHERE row = ?", (row.key,))
                        elif isinstance(mutation, DeleteCells) and mutation.qualifier is None:
                            connection.execute(
                                f"DELETE FROM {self._sql_name} WHERE row = ? AND family = ?",
                                (row.key, mutation.family),
                            )
                        elif isinstance(mutation, DeleteCells):
                            connection.execute(
                                f"DELETE FROM {self._sql_name} WHERE row = ? AND family = ? AND qualifier = ?",
                                (row.key, mutation.family, bytes(mutation.qualifier)),
                            )
                        else:
                            raise ValidationError("mutation", mutation, "is not a SetCell, DeleteCells or DeleteRow")
                self._flush_sets(connection, sets)

    def set_cells(self, cells: CellColumns) -> None:
        """:func:`tablewatch.store.table.set_cells` in one transaction and one
        ``executemany``, checked a column at a time: no Python object per cell
        beyond the row tuple sqlite3 reads."""
        check_cell_columns(cells, self._families, self.name)
        if not len(cells):
            return
        packed = _packable(cells)
        connection = self.backend._connection()
        big = len(cells) >= BIG_WRITE_CELLS
        with self.backend._write_lock, self.backend._errors(f"write to {self.name}"):
            cache = connection.execute("PRAGMA cache_size").fetchone()[0] if big else None
            if big:
                connection.execute(f"PRAGMA cache_size = -{BIG_WRITE_CACHE_KIB}")
            try:
                with _transaction(connection):
                    if packed is None:
                        connection.executemany(
                            f"INSERT OR REPLACE INTO {self._sql_name} (row, family, qualifier, nts, value) "
                            "VALUES (?, ?, ?, ?, ?)",
                            zip(cells.keys, cells.families, cells.qualifiers, [-t for t in cells.timestamps_ms],
                                cells.values),
                        )
                    else:
                        self._set_packed(connection, cells, packed)
            finally:
                if big:
                    connection.execute(f"PRAGMA cache_size = {int(cache)}")

    def _set_packed(self, connection: sqlite3.Connection, cells: CellColumns,
                    columns: tuple[PackedBytes, PackedBytes, PackedBytes]) -> None:
        """Insert cells of one family whose keys, qualifiers and values each
        have one width (one point to each of 100k series: 100k cells of 13, 20
        and 17 bytes) with one statement per ``PACKED_STATEMENT_BYTES``: each
        column as one blob that SQL cuts, the timestamps as a JSON array whose
        ``json_each`` numbers the cells. ``executemany`` binds five parameters
        per cell from Python objects; this binds five per statement (measured:
        100k cells in 0.12 s instead of 0.25 s)."""
        keys, qualifiers, values = columns
        per_statement = max(1, PACKED_STATEMENT_BYTES // (keys.width + qualifiers.width + values.width))
        sql = (f"INSERT OR REPLACE INTO {self._sql_name} (row, family, qualifier, nts, value) "
               f"SELECT substr(:keys, key * {keys.width} + 1, {keys.width}), :family, "
               f"substr(:qualifiers, key * {qualifiers.width} + 1, {qualifiers.width}), -value, "
               f"substr(:values, key * {values.width} + 1, {values.width}) FROM json_each(:timestamps)")
        for start in range(0, len(cells), per_statement):
            part = slice(start, start + per_statement)
            connection.execute(sql, {
                "keys": keys[part].blob, "family": cells.families[0], "qualifiers": qualifiers[part].blob,
                "values": values[part].blob, "timestamps": json.dumps(cells.timestamps_ms[part]),
            })

    def check_and_set(
        self, key: bytes, family: str, qualifier: bytes, expected: bytes | None, value: bytes, timestamp_ms: int
    ) -> bool:
        """Compare and write in one ``BEGIN IMMEDIATE`` transaction: the write
        lock is held from the read to the commit, so threads and processes
        sharing the file see one winner."""
        policy = check_check_and_set(key, family, qualifier, expected, value, timestamp_ms, self._families, self.name)
        max_nts = _max_nts(policy, _now_ms())
        connection = self.backend._connection()
        with self.backend._write_lock, self.backend._errors(f"check and set in {self.name}"):
            with _transaction(connection):
                newest = connection.execute(
                    f"SELECT value FROM {self._sql_name} WHERE row = ? AND family = ? AND qualifier = ? AND nts <= ? "
                    "ORDER BY nts LIMIT 1",
                    (key, family, bytes(qualifier), max_nts),
                ).fetchone()
                current = None if newest is None else bytes(newest[0])
                matches = current is None if expected is None else current == bytes(expected)
                if matches:
                    connection.execute(
                        f"INSERT OR REPLACE INTO {self._sql_name} (row, family, qualifier, nts, value) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (key, family, bytes(qualifier), -int(timestamp_ms), bytes(value)),
                    )
        return matches

    def _flush_sets(self, connection: sqlite3.Connection, sets: list) -> None:
        if sets:
            connection.executemany(
                f"INSERT OR REPLACE INTO {self._sql_name} (row, family, qualifier, nts, value) VALUES (?, ?, ?, ?, ?)",
                sets,
            )
            sets.clear()

    # -- reads -------------------------------------------------------------------

    def read_rows(
        self, keys: Iterable[bytes], *, columns: Iterable[Column] | None = None, versions: int = 1
    ) -> list[Row]:
        unique = sorted(set(keys))
        for key in unique:
            check_row_key(key)
        assembler = _RowAssembler(self._families, columns, versions)
        connection = self.backend._connection()
        rows: list[Row] = []
        with self.backend._errors(f"read {self.name}"):
            for i in range(0, len(unique), _IN_CHUNK):
                chunk = unique[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = connection.execute(
                    f"SELECT row, family, qualifier, nts, value FROM {self._sql_name} "
                    f"WHERE row IN ({marks}) ORDER BY row, family, qualifier, nts",
                    chunk,
                )
                rows.extend(assembler.rows(cursor))
        return rows

    def newest_values(
        self, keys: Iterable[bytes] | None, family: str, *, prefix: bytes | None = None
    ) -> list[tuple[bytes, bytes, bytes]]:
        """:func:`tablewatch.store.table.newest_values` in one query per
        ``_IN_CHUNK`` keys (or one for the prefix), in primary-key order: a
        column's newest version comes first (a GROUP BY picking it in SQL
        measured twice as slow)."""
        max_nts = _max_nts(family_policy(self._families, family, self.name), _now_ms())
        if keys is None:
            end = prefix_end(prefix or b"")
            where, chunks = ("row >= ?" + (" AND row < ?" if end is not None else "")), [
                (prefix or b"",) + ((end,) if end is not None else ())]
        else:
            unique = sorted(set(keys))
            for key in unique:
                check_row_key(key)
            chunks = [tuple(unique[i : i + _IN_CHUNK]) for i in range(0, len(unique), _IN_CHUNK)]
            where = None
        connection = self.backend._connection()
        found: list[tuple[bytes, bytes, bytes]] = []
        with self.backend._errors(f"read {self.name}"):
            for chunk in chunks:
                rows = where or f"row IN ({','.join('?' * len(chunk))})"
                cells = connection.execute(
                    f"SELECT row, qualifier, value FROM {self._sql_name} WHERE {rows} "
                    "AND family = ? AND nts <= ? ORDER BY row, family, qualifier, nts",
                    (*chunk, family, max_nts),
                ).fetchall()
                found += [cell for cell, before in zip(cells, [(None, None), *cells])
                          if cell[1] != before[1] or cell[0] != before[0]]
        return found

    def newest_cells(
        self, ranges: Sequence[tuple[bytes | None, bytes | None]], families: Sequence[str]
    ) -> list[tuple[bytes, str, bytes, int, bytes]]:
        """:func:`tablewatch.store.table.newest_cells` in one query per range,
        in primary-key order (a column's newest version first): tuples straight
        from sqlite3, no Row or Cell per cell."""
        now = _now_ms()
        live = [(family, _max_nts(family_policy(self._families, family, self.name), now)) for family in families]
        if not live:
            return []
        which = " OR ".join(["(family = ? AND nts <= ?)"] * len(live))
        connection = self.backend._connection()
        found: list[tuple[bytes, str, bytes, int, bytes]] = []
        with self.backend._errors(f"read {self.name}"):
            for start, end in sorted(ranges, key=lambda r: r[0] or b""):
                bounds = "row >= ?" + (" AND row < ?" if end is not None else "")
                args = [start or b"", *([end] if end is not None else []), *(x for pair in live for x in pair)]
                cells = connection.execute(
                    f"SELECT row, family, qualifier, -nts, value FROM {self._sql_name} WHERE {bounds} AND ({which}) "
                    "ORDER BY row, family, qualifier, nts", args).fetchall()
                found += [cell for cell, before in zip(cells, [(None, None, None), *cells])
                          if cell[2] != before[2] or cell[0] != before[0] or cell[1] != before[1]]
        return found

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
        assembler = _RowAssembler(self._families, columns, versions)
        ordered = sorted(ranges, key=lambda r: r[0] or b"")
        return self._scan(ordered, assembler, limit, keys_only)

    def _scan(self, ranges, assembler: _RowAssembler, limit: int | None, keys_only: bool) -> Iterator[Row]:
        produced = 0
        for start, end in ranges:
            for row in assembler.rows(self._cells(start, end, keys_only)):
                yield row
                produced += 1
                if limit is not None and produced >= limit:
                    return

    def _cells(self, start: bytes | None, end: bytes | None, keys_only: bool = False) -> Iterator[tuple]:
        """Cells of [start, end) in primary-key order, fetched a page at a time
        so that no statement stays open between pages."""
        connection = self.backend._connection()
        value = "X''" if keys_only else "value"  # not selected: its overflow pages are never read
        base = f"SELECT row, family, qualifier, nts, {value} FROM {self._sql_name} WHERE "
        bounds: list[str] = []
        params: list = []
        if end is not None:
            bounds.append("row < ?")
            params.append(end)
        position: tuple | None = None
        while True:
            where = list(bounds)
            args = list(params)
            if position is None:
                if start is not None:
                    where.append("row >= ?")
                    args.append(start)
            else:
                where.append("(row, family, qualifier, nts) > (?, ?, ?, ?)")
                args.extend(position)
            sql = base + (" AND ".join(where) or "1") + f" ORDER BY row, family, qualifier, nts LIMIT {SCAN_PAGE_CELLS}"
            with self.backend._errors(f"scan {self.name}"):
                page = connection.execute(sql, args).fetchall()
            yield from page
            if len(page) < SCAN_PAGE_CELLS:
                return
            position = page[-1][:4]

    # -- maintenance ---------------------------------------------------------------

    def compact(self, now_ms: int | None = None) -> int:
        now = _now_ms() if now_ms is None else now_ms
        removed = 0
        connection = self.backend._connection()
        with self.backend._errors(f"compact {self.name}"):
            for family, policy in self._families.items():
                with _transaction(connection):
                    if policy.max_age_s is not None:
                        cutoff = now - int(policy.max_age_s * 1000)
                        removed += connection.execute(
                            f"DELETE FROM {self._sql_name} WHERE family = ? AND nts > ?", (family, -cutoff)
                        ).rowcount
                    if policy.max_versions is not None:
                        removed += connection.execute(
                            f"DELETE FROM {self._sql_name} WHERE (row, family, qualifier, nts) IN ("
                            "SELECT row, family, qualifier, nts FROM (SELECT row, family, qualifier, nts, "
                            "ROW_NUMBER() OVER (PARTITION BY row, qualifier ORDER BY nts) AS n "
                            f"FROM {self._sql_name} WHERE family = ?) WHERE n > ?)",
                            (family, policy.max_versions),
                        ).rowcount
        if removed:
            self.backend.reclaim_space()
        return removed

    def sample_row_keys(self) -> list[bytes]:
        """[]: one SQLite file is one piece, there are no tablets or regions."""
        self.backend.table_info(self.name)  # a missing table still raises TableNotFound
        return []


def _now_ms() -> int:
    return int(time.time() * 1000)


def _max_nts(policy: GCPolicy, now_ms: int) -> int:
    """The largest ``nts`` (negated timestamp) of a cell the family's max age
    still keeps: ``nts <= _max_nts`` means the cell is live."""
    return -(now_ms - int(policy.max_age_s * 1000)) if policy.max_age_s is not None else 2**63 - 1


def _packable(cells: CellColumns) -> tuple[PackedBytes, PackedBytes, PackedBytes] | None:
    """Keys, qualifiers and values packed when every cell has one family and
    each column one width (see ``SQLiteTable._set_packed``), else None."""
    if not JSON_BUILT_IN or len(set(cells.families)) != 1:
        return None
    columns = []
    for column in (cells.keys, cells.qualifiers, cells.values):
        packed = PackedBytes.of(column)
        if packed is None:
            return None
        columns.append(packed)
    return columns[0], columns[1], columns[2]


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: ``BEGIN IMMEDIATE`` (the write lock from the
    start), COMMIT when the block ends, ROLLBACK when it raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class _RowAssembler:
    """Turns (row, family, qualifier, nts, value) cells in key order into
    :class:`Row` objects, applying the column filter, max age and versions."""

    def __init__(self, families: Mapping[str, GCPolicy], columns: Iterable[Column] | None, versions: int) -> None:
        check_versions(versions)
        self.wanted = normalize_columns(columns, families)
        now = _now_ms()
        self.limits: dict[str, tuple[int, int]] = {}
        for family, policy in families.items():
            keep = versions if policy.max_versions is None else min(versions, policy.max_versions)
            self.limits[family] = (keep, _max_nts(policy, now))

    def rows(self, cells: Iterable[tuple]) -> Iterator[Row]:
        limits, wanted = self.limits, self.wanted
        families, pairs = (set(limits), set()) if wanted is None else wanted
        current: Row | None = None
        key_now: bytes | None = None
        column: list[Cell] = []
        column_id: tuple | None = None
        for key, family, qualifier, nts, value in cells:
            limit = limits.get(family)
            if limit is None or nts > limit[1] or family not in families and (family, qualifier) not in pairs:
                continue
            if key != key_now:
                if current is not None and current.cells:
                    yield current
                current, key_now, column_id = Row(key), key, None
            if column_id != (family, qualifier):
                column_id = (family, qualifier)
                column = current.cells.setdefault(family, {}).setdefault(qualifier, [])
            if len(column) < limit[0]:
                column.append(Cell(value, -nts))
        if current is not None and current.cells:
            yield current
