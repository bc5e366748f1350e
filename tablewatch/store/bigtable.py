"""The Cloud Bigtable backend: ``bigtable://PROJECT/INSTANCE[?option=value&...]``.

Options (all optional):

``table_prefix``
    prepended to every table id, so several stores share one instance
    (``tw_points`` is stored as ``<prefix>tw_points``).
``app_profile``
    the app profile data requests are sent with.
``timeout_s``
    the time budget of one request, retries included (default 10 s): an outage
    is reported as :class:`~tablewatch.errors.StoreUnavailable` after at most
    this long. Scans are read a page at a time, each page with this budget.
``emulator_host``
    ``HOST:PORT`` of a Bigtable emulator. ``$BIGTABLE_EMULATOR_HOST`` does the
    same, as for every Google client library. No credentials are needed then.

Reads and writes go through the data client (``google.cloud.bigtable.data``):
a batch of row mutations is sent as bulk ``MutateRows`` requests, and a read of
many keys or ranges is one ``ReadRows`` query. Tables are created and described
through the table admin API, with each family's :class:`GCPolicy` as a GC rule:
a cell is garbage when EITHER limit is exceeded, which is Bigtable's *union*
of a max-versions and a max-age rule. Bigtable collects garbage lazily, so
reads also apply the policies themselves (a timestamp-range and a per-column
cell-limit filter, then the same checks on the client).

Retries, and why deletes are not retried:

- Table API timestamps are milliseconds; Bigtable's are microseconds at
  millisecond granularity, so a cell's timestamp is ``timestamp_ms * 1000``.
- Every SetCell carries an explicit timestamp, so sending it twice leaves one
  cell: an entry made only of SetCells is retried (on UNAVAILABLE and
  DEADLINE_EXCEEDED) within ``timeout_s``.
- The mutations of one row in a batch are merged into one entry, in order.
  Bigtable applies an entry atomically, but separate entries of one request in
  any order, and a retry re-sends only the entries that failed: without the
  merge, a retried ``SetCell`` could land after a ``DeleteRow`` of the same row
  sent later in the same batch (or the reverse) and resurrect or erase data.
- An entry holding a DeleteCells or DeleteRow is sent once, never retried: if
  an earlier attempt was applied but its answer lost, a blind re-send deletes
  again, erasing what another writer put in that row in between (a delayed
  duplicate of a delete is not harmless the way a duplicate SetCell is). Such
  a failure is raised as StoreUnavailable; the outcome of those rows is then
  unknown and the caller decides whether replaying is safe.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import google.auth.credentials
import google.auth.exceptions
import grpc
from google.api_core import exceptions as core_exceptions
from google.api_core import retry as core_retry
from google.cloud.bigtable.data import (
    BigtableDataClient,
    DeleteAllFromFamily,
    DeleteAllFromRow,
    DeleteRangeFromColumn,
    ReadRowsQuery,
    RowMutationEntry,
    RowRange,
)
from google.cloud.bigtable.data import SetCell as BigtableSetCell
from google.cloud.bigtable.data import row_filters
from google.cloud.bigtable_admin_v2 import BigtableTableAdminClient
from google.cloud.bigtable_admin_v2 import types as admin_types
from google.cloud.bigtable_admin_v2.services.bigtable_table_admin.transports import BigtableTableAdminGrpcTransport
from google.protobuf import duration_pb2

from tablewatch.errors import StoreError, StoreUnavailable, StoreURLError, TableExists, TableNotFound, ValidationError
from tablewatch.store.table import (
    Cell,
    Column,
    DeleteCells,
    DeleteRow,
    GCPolicy,
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

EMULATOR_ENV = "BIGTABLE_EMULATOR_HOST"
URL_OPTIONS = ("app_profile", "emulator_host", "table_prefix", "timeout_s")
DEFAULT_TIMEOUT_S = 10.0
#: Table names are portable across backends (the SQLite rule: "." and "-"
#: too, for the HBase Thrift gateway's PREFIX.NAME); the full Bigtable id
#: (prefix + name) must also fit Bigtable's 50 characters.
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
TABLE_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
FAMILY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_TABLE_ID = 50
#: Bigtable's limit of mutations in one MutateRows request (and in one row entry).
MAX_REQUEST_MUTATIONS = 100_000
#: Bytes per MutateRows request; larger batches are split (rows stay whole).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: Keys per ReadRows request of read_rows.
READ_KEYS_PER_REQUEST = 1000
#: Rows per ReadRows request of a scan; a scan reads page after page so that
#: each request has the short ``timeout_s`` budget however large the scan.
SCAN_PAGE_ROWS = 1000
#: Channel options: no message size cap (a row of packed chunks can exceed
#: gRPC's 4 MB default; production channels already lift it, emulator channels
#: did not) and a short reconnect backoff, so that a store that comes back is
#: used again within half a second (gRPC's default backoff grows to 2 min).
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)
RETRYABLE = (core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded)
READ_RETRYABLE = (*RETRYABLE, core_exceptions.Aborted)
#: Errors that mean "cannot reach or use the store now" rather than "bad request".
UNAVAILABLE = (
    core_exceptions.ServiceUnavailable,
    core_exceptions.DeadlineExceeded,
    core_exceptions.Aborted,
    core_exceptions.Cancelled,
    core_exceptions.InternalServerError,
    core_exceptions.Unknown,
    core_exceptions.Unauthenticated,
    core_exceptions.PermissionDenied,
    core_exceptions.RetryError,
    google.auth.exceptions.GoogleAuthError,
    grpc.RpcError,
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ENV_LOCK = threading.Lock()


def parse_bigtable_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(project, instance, options) of ``bigtable://PROJECT/INSTANCE?...``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "bigtable":
        raise StoreURLError(f"store URL {url!r}: scheme must be 'bigtable'")
    project = parts.netloc
    path = parts.path.strip("/")
    example = "e.g. bigtable://my-project/my-instance"
    if not project:
        raise StoreURLError(f"store URL {url!r}: no project ({example})")
    if not path:
        raise StoreURLError(f"store URL {url!r}: no instance after the project ({example})")
    if "/" in path:
        raise StoreURLError(f"store URL {url!r}: expected exactly PROJECT/INSTANCE, got path {parts.path!r} ({example})")
    for field, value in (("project", project), ("instance", path)):
        if any(c.isspace() for c in value) or "@" in value:
            raise StoreURLError(f"store URL {url!r}: {field} {value!r} contains a space or '@'")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise StoreURLError(f"store URL {url!r}: malformed options {parts.query!r} ({e})") from e
    options = {k: v[-1] for k, v in query.items()}
    unknown = set(options) - set(URL_OPTIONS)
    if unknown:
        raise StoreURLError(f"store URL {url!r}: unknown option(s) {sorted(unknown)}; known: {', '.join(URL_OPTIONS)}")
    if "timeout_s" in options:
        try:
            timeout = float(options["timeout_s"])
        except ValueError:
            timeout = float("nan")
        if not timeout > 0 or timeout == float("inf"):
            raise StoreURLError(f"store URL {url!r}: timeout_s must be a number of seconds > 0, got {options['timeout_s']!r}")
    prefix = options.get("table_prefix", "")
    if prefix and not TABLE_PREFIX_RE.match(prefix):
        raise StoreURLError(f"store URL {url!r}: table_prefix {prefix!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
    if len(prefix) >= MAX_TABLE_ID:
        raise StoreURLError(f"store URL {url!r}: table_prefix is {len(prefix)} characters; table ids have at most {MAX_TABLE_ID}")
    for name in ("app_profile", "emulator_host"):
        if name in options and not options[name]:
            raise StoreURLError(f"store URL {url!r}: option {name} is empty")
    return project, path, options


class _DataClient(BigtableDataClient):
    """The data client with :data:`CHANNEL_OPTIONS` on its channel."""

    def _build_grpc_channel(self, *args, **kwargs):
        kwargs["options"] = [*kwargs.get("options", ()), *CHANNEL_OPTIONS]
        channel = super()._build_grpc_channel(*args, **kwargs)
        if self._emulator_host is not None and hasattr(channel, "swap_channel"):
            # The library opens emulator channels without any options.
            channel.swap_channel(grpc.insecure_channel(self._emulator_host, options=list(CHANNEL_OPTIONS))).close()
        return channel


class BigtableBackend:
    """Tables of one Bigtable instance. Thread-safe; clients are created on
    first use and reconnect on their own after an outage."""

    def __init__(self, url: str, *, timeout_s: float | None = None, emulator_host: str | None = None) -> None:
        self.project, self.instance, options = parse_bigtable_url(url)
        self.url = url
        self.table_prefix = options.get("table_prefix", "")
        self.app_profile = options.get("app_profile")
        self.timeout_s = float(options.get("timeout_s", timeout_s or DEFAULT_TIMEOUT_S))
        self.emulator_host = options.get("emulator_host") or emulator_host or os.environ.get(EMULATOR_ENV) or None
        self._lock = threading.Lock()
        self._data: BigtableDataClient | None = None
        self._admin: BigtableTableAdminClient | None = None
        self._admin_channel: grpc.Channel | None = None
        self._tables: dict[str, object] = {}
        self._infos: dict[str, TableInfo] = {}
        self._closed = False

    # -- clients -------------------------------------------------------------

    @property
    def instance_path(self) -> str:
        return f"projects/{self.project}/instances/{self.instance}"

    def table_path(self, name: str) -> str:
        return f"{self.instance_path}/tables/{self.table_prefix}{name}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.url!r} is closed")

    def _data_client(self) -> BigtableDataClient:
        client = self._data
        if client is not None:
            return client
        with self._lock:
            self._check_open()
            if self._data is None:
                with self._errors("connect"):
                    self._data = self._new_data_client()
            return self._data

    def _new_data_client(self) -> BigtableDataClient:
        if self.emulator_host is None:
            return _DataClient(project=self.project)
        # The data client reads the emulator address from the environment when
        # it is built (and then needs no credentials); set it just for that.
        with _ENV_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "Connecting to Bigtable emulator at ..."
            saved = os.environ.get(EMULATOR_ENV)
            os.environ[EMULATOR_ENV] = self.emulator_host
            try:
                return _DataClient(project=self.project, credentials=google.auth.credentials.AnonymousCredentials())
            finally:
                if saved is None:
                    del os.environ[EMULATOR_ENV]
                else:
                    os.environ[EMULATOR_ENV] = saved

    def _admin_client(self) -> BigtableTableAdminClient:
        client = self._admin
        if client is not None:
            return client
        with self._lock:
            self._check_open()
            if self._admin is None:
                with self._errors("connect"):
                    if self.emulator_host is None:
                        self._admin = BigtableTableAdminClient()
                    else:
                        self._admin_channel = grpc.insecure_channel(self.emulator_host, options=list(CHANNEL_OPTIONS))
                        transport = BigtableTableAdminGrpcTransport(channel=self._admin_channel)
                        self._admin = BigtableTableAdminClient(transport=transport)
            return self._admin

    def _data_table(self, name: str):
        """The data client's handle of a table (cached; no round trip)."""
        table = self._tables.get(name)
        if table is not None:
            return table
        client = self._data_client()
        with self._lock:
            table = self._tables.get(name)
            if table is None:
                timeout = self.timeout_s
                table = client.get_table(
                    self.instance,
                    self.table_prefix + name,
                    app_profile_id=self.app_profile,
                    default_read_rows_operation_timeout=timeout,
                    default_read_rows_attempt_timeout=timeout,
                    default_mutate_rows_operation_timeout=timeout,
                    default_mutate_rows_attempt_timeout=timeout,
                    default_operation_timeout=timeout,
                    default_attempt_timeout=timeout,
                    default_read_rows_retryable_errors=READ_RETRYABLE,
                    default_mutate_rows_retryable_errors=RETRYABLE,
                    default_retryable_errors=RETRYABLE,
                )
                self._tables[name] = table
            return table

    def _admin_retry(self) -> core_retry.Retry:
        return core_retry.Retry(
            predicate=core_retry.if_exception_type(*RETRYABLE),
            initial=0.05,
            maximum=1.0,
            timeout=self.timeout_s,
        )

    def _errors(self, action: str, table: str | None = None) -> _Errors:
        return _Errors(self, action, table)

    # -- admin ---------------------------------------------------------------

    def _check_table_name(self, name: str) -> None:
        if not isinstance(name, str) or not TABLE_NAME_RE.match(name):
            raise ValidationError("table name", name, "must match [A-Za-z_][A-Za-z0-9_.-]{0,62}")
        if len(self.table_prefix) + len(name) > MAX_TABLE_ID:
            raise ValidationError(
                "table name", name, f"with table_prefix {self.table_prefix!r} is over Bigtable's {MAX_TABLE_ID} characters"
            )

    def create_table(
        self, name: str, families: Mapping[str, GCPolicy], *, split_keys: Sequence[bytes] = ()
    ) -> None:
        """Create a table; ``split_keys`` become its initial tablet splits."""
        self._check_table_name(name)
        if not families:
            raise ValidationError("families", families, "a table needs at least one column family")
        column_families = {}
        for family, policy in families.items():
            if not isinstance(family, str) or not FAMILY_NAME_RE.match(family):
                raise ValidationError("family", family, "must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")
            if not isinstance(policy, GCPolicy):
                raise ValidationError(f"families[{family!r}]", policy, "must be a GCPolicy")
            column_families[family] = admin_types.ColumnFamily(gc_rule=gc_rule(policy))
        splits = sorted({bytes(k) for k in split_keys})
        for key in splits:
            check_row_key(key)
        request = admin_types.CreateTableRequest(
            parent=self.instance_path,
            table_id=self.table_prefix + name,
            table=admin_types.Table(column_families=column_families, granularity=admin_types.Table.TimestampGranularity.MILLIS),
            initial_splits=[admin_types.CreateTableRequest.Split(key=k) for k in splits],
        )
        admin = self._admin_client()
        # Not retried: a lost answer to a create that was applied would come
        # back as AlreadyExists.
        with self._errors(f"create table {name}", name):
            created = admin.create_table(request=request, timeout=self.timeout_s, retry=None)
        if set(created.column_families) == set(families):  # the policies as Bigtable recorded them
            self._infos[name] = TableInfo(name, {f: gc_policy(cf.gc_rule) for f, cf in created.column_families.items()})
        else:
            self._infos.pop(name, None)

    def delete_table(self, name: str) -> None:
        admin = self._admin_client()
        with self._errors(f"delete table {name}", name):
            admin.delete_table(request={"name": self.table_path(name)}, timeout=self.timeout_s, retry=None)
        self._infos.pop(name, None)

    def list_tables(self) -> list[str]:
        """Names of this store's tables (those with the table prefix), sorted."""
        admin = self._admin_client()
        with self._errors("list tables"):
            listed = admin.list_tables(
                request={"parent": self.instance_path, "view": admin_types.Table.View.NAME_ONLY},
                timeout=self.timeout_s,
                retry=self._admin_retry(),
            )
            ids = [t.name.rsplit("/", 1)[-1] for t in listed]
        n = len(self.table_prefix)
        return sorted(i[n:] for i in ids if i.startswith(self.table_prefix) and len(i) > n)

    def table_info(self, name: str) -> TableInfo:
        """Families and GC policies, as read back from the admin API (once per
        table and backend object: tablewatch never changes them)."""
        info = self._infos.get(name)
        if info is not None:
            return info
        admin = self._admin_client()
        with self._errors(f"read table {name}", name):
            table = admin.get_table(
                request={"name": self.table_path(name), "view": admin_types.Table.View.SCHEMA_VIEW},
                timeout=self.timeout_s,
                retry=self._admin_retry(),
            )
        info = TableInfo(name, {f: gc_policy(cf.gc_rule) for f, cf in table.column_families.items()})
        self._infos[name] = info
        return info

    def table(self, name: str) -> BigtableTable:
        return BigtableTable(self, name)

    def set_families(self, name: str, families: Mapping[str, GCPolicy]) -> None:
        """Set the GC rules of these families of table ``name`` (admin API
        ModifyColumnFamilies), creating the families it lacks."""
        current = self.table_info(name).families
        modifications = []
        for family, policy in families.items():
            if not isinstance(family, str) or not FAMILY_NAME_RE.match(family):
                raise ValidationError("family", family, "must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")
            column_family = admin_types.ColumnFamily(gc_rule=gc_rule(policy))
            change = {"update": column_family} if family in current else {"create": column_family}
            modifications.append(admin_types.ModifyColumnFamiliesRequest.Modification(id=family, **change))
        admin = self._admin_client()
        with self._errors(f"change the families of {name}", name):
            admin.modify_column_families(request={"name": self.table_path(name), "modifications": modifications},
                                         timeout=self.timeout_s, retry=None)
        self._infos.pop(name, None)

    @property
    def splits_note(self) -> str:
        """Why ``store info`` may show fewer splits than requested."""
        if self.emulator_host is not None:
            return ("the Bigtable emulator keeps each table in one piece and its SampleRowKeys reports no split, "
                    "whatever splits the table was created with; Cloud Bigtable reports its tablets, which it "
                    "may merge or split as load changes")
        return ("Cloud Bigtable starts from the requested splits, then merges or splits tablets as load and size "
                "change; SampleRowKeys reports the current ones")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            data, self._data = self._data, None
            channel, self._admin_channel = self._admin_channel, None
            admin, self._admin = self._admin, None
            self._tables.clear()
        if data is not None:
            data.close()
        if channel is not None:
            channel.close()
        elif admin is not None:
            admin.transport.close()

    def __repr__(self) -> str:
        return f"BigtableBackend({self.url!r})"


class _Errors:
    """Turns Google API and gRPC errors into tablewatch's error tree."""

    def __init__(self, backend: BigtableBackend, action: str, table: str | None) -> None:
        self.backend = backend
        self.action = action
        self.table = table

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, (StoreError, ValidationError)) or not isinstance(exc, Exception):
            return False
        raise translate(exc, self.backend, self.action, self.table) from exc


def _leaves(exc: BaseException) -> list[BaseException]:
    """The underlying errors of a (possibly grouped or chained) library error."""
    grouped = getattr(exc, "exceptions", None)
    if isinstance(grouped, (list, tuple)) and grouped:
        return [leaf for e in grouped for leaf in _leaves(e)]
    if type(exc).__name__ == "FailedMutationEntryError" and exc.__cause__ is not None:
        return _leaves(exc.__cause__)
    if isinstance(exc, core_exceptions.RetryError) and exc.cause is not None:
        return [exc, *_leaves(exc.cause)]
    cause = exc.__cause__
    if cause is not None and isinstance(getattr(cause, "exceptions", None), (list, tuple)):
        return [exc, *_leaves(cause)]  # the data client's retried attempts
    return [exc]


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") and hasattr(exc, "details"):
        text = f"{exc.code().name}: {exc.details()}"
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_budget_marker(exc: BaseException) -> bool:
    """The library's own "ran out of time" error, as opposed to an attempt's."""
    return isinstance(exc, core_exceptions.RetryError) or "operation_timeout" in str(exc)


def translate(exc: Exception, backend: BigtableBackend, action: str, table: str | None = None) -> Exception:
    """The tablewatch error for a Google API / gRPC error (raise it ``from exc``)."""
    leaves = _leaves(exc)
    if any(isinstance(e, core_exceptions.NotFound) for e in leaves):
        if table is not None:
            return TableNotFound(f"table {table!r} does not exist in {backend.url}")
        return StoreError(f"store {backend.url!r}: {action}: {_short(exc)}")
    if any(isinstance(e, core_exceptions.AlreadyExists) for e in leaves):
        return TableExists(f"table {table!r} already exists in {backend.url}")
    if any(isinstance(e, google.auth.exceptions.DefaultCredentialsError) for e in leaves):
        return StoreUnavailable(
            backend.url,
            f"{action}: no Google Cloud credentials ({_short(exc)}); set up Application Default "
            f"Credentials, or point {EMULATOR_ENV} / ?emulator_host= at an emulator",
        )
    if all(isinstance(e, UNAVAILABLE) for e in leaves):
        details = [_short(e) for e in leaves if not _is_budget_marker(e)]
        last = f"last error: {details[-1]}" if details else ""
        if any(isinstance(e, (core_exceptions.DeadlineExceeded, core_exceptions.RetryError)) for e in leaves):
            reason = f"gave up within the {backend.timeout_s:g} s budget" + (f" ({last})" if last else "")
        else:
            reason = details[-1] if details else _short(exc)
        return StoreUnavailable(backend.url, f"{action}: {reason}")
    wrong = next((e for e in leaves if not isinstance(e, UNAVAILABLE)), exc)
    return StoreError(f"store {backend.url!r}: {action}: {_short(wrong)}")


# -- GC policies <-> GC rules ------------------------------------------------------


def gc_rule(policy: GCPolicy) -> admin_types.GcRule:
    """The GC rule of a policy: garbage when either limit is exceeded (a union)."""
    rules = []
    if policy.max_versions is not None:
        rules.append(admin_types.GcRule(max_num_versions=policy.max_versions))
    if policy.max_age_s is not None:
        ms = max(1, round(policy.max_age_s * 1000))
        rules.append(admin_types.GcRule(max_age=duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)))
    if not rules:
        return admin_types.GcRule()
    if len(rules) == 1:
        return rules[0]
    return admin_types.GcRule(union=admin_types.GcRule.Union(rules=rules))


def gc_policy(rule: admin_types.GcRule) -> GCPolicy:
    """The policy of a GC rule read back from Bigtable.

    A union of limits maps to both limits. An intersection (garbage only when
    every limit is exceeded, which tablewatch never creates) keeps more than
    any single limit would, so only a one-rule intersection maps to a limit;
    others map to no limit, which never hides a cell Bigtable keeps.
    """
    kind = admin_types.GcRule.pb(rule).WhichOneof("rule")
    if kind is None:
        return GCPolicy(max_versions=None, max_age_s=None)
    if kind == "max_num_versions":
        return GCPolicy(max_versions=rule.max_num_versions, max_age_s=None)
    if kind == "max_age":
        return GCPolicy(max_versions=None, max_age_s=_seconds(rule.max_age))
    parts = [gc_policy(r) for r in (rule.union.rules if kind == "union" else rule.intersection.rules)]
    if kind == "intersection" and len(parts) != 1:
        return GCPolicy(max_versions=None, max_age_s=None)
    versions = [p.max_versions for p in parts if p.max_versions is not None]
    ages = [p.max_age_s for p in parts if p.max_age_s is not None]
    return GCPolicy(max_versions=min(versions) if versions else None, max_age_s=min(ages) if ages else None)


def _seconds(value) -> float:
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return value.seconds + value.nanos / 1e9


# -- reads: what to ask for and how to check what comes back -------------------------


class _ReadPlan:
    """The filter of one read (columns, max age, versions) and the same rules
    applied again to what comes back: GC on Bigtable is lazy, and the client
    check costs little."""

    def __init__(
        self, families: Mapping[str, GCPolicy], columns: Iterable[Column] | None, versions: int, keys_only: bool = False
    ) -> None:
        self.keys_only = keys_only
        check_versions(versions)
        wanted = normalize_columns(columns, families)
        now_ms = int(time.time() * 1000)
        #: family -> (versions kept, oldest timestamp in µs kept, qualifiers or None for all)
        self.families: dict[str, tuple[int, int, frozenset[bytes] | None]] = {}
        for family, policy in families.items():
            if wanted is None or family in wanted[0]:
                qualifiers = None
            else:
                qualifiers = frozenset(q for f, q in wanted[1] if f == family)
                if not qualifiers:
                    continue
            keep = versions if policy.max_versions is None else min(versions, policy.max_versions)
            cutoff_us = (now_ms - int(policy.max_age_s * 1000)) * 1000 if policy.max_age_s is not None else 0
            self.families[family] = (keep, max(0, cutoff_us), qualifiers)
        self.row_filter = self._filter() if self.families else None

    def _filter(self) -> row_filters.RowFilter:
        branches = []
        for family, (keep, cutoff_us, qualifiers) in sorted(self.families.items()):
            steps: list[row_filters.RowFilter] = []
            if qualifiers is None:
                steps.append(row_filters.FamilyNameRegexFilter("^" + re.sub(r"([.\-])", r"\\\1", family) + "$"))
            else:
                exact = [
                    row_filters.ColumnRangeFilter(family, q, q, inclusive_start=True, inclusive_end=True)
                    for q in sorted(qualifiers)
                ]
                steps.append(_union(exact))
            if cutoff_us:
                start = _EPOCH + _dt.timedelta(microseconds=cutoff_us)
                steps.append(row_filters.TimestampRangeFilter(start=start))
            steps.append(row_filters.CellsColumnLimitFilter(keep))
            branches.append(steps[0] if len(steps) == 1 else row_filters.RowFilterChain(steps))
        if self.keys_only:
            return row_filters.RowFilterChain([_union(branches), row_filters.StripValueTransformerFilter(True)])
        return _union(branches)

    def row(self, found) -> Row | None:
        """A Table API row from a data-client row; None when no cell is left."""
        cells: dict[str, dict[bytes, list[Cell]]] = {}
        for cell in found.cells:
            rules = self.families.get(cell.family)
            if rules is None:
                continue
            keep, cutoff_us, qualifiers = rules
            if cell.timestamp_micros < cutoff_us or (qualifiers is not None and cell.qualifier not in qualifiers):
                continue
            column = cells.setdefault(cell.family, {}).setdefault(cell.qualifier, [])
            column.append(Cell(cell.value, cell.timestamp_micros // 1000))
        if not cells:
            return None
        for family, columns in cells.items():
            keep = self.families[family][0]
            for qualifier, column in columns.items():
                if len(column) > 1:
                    column.sort(key=lambda c: c.timestamp_ms, reverse=True)
                    del column[keep:]
        return Row(found.row_key, cells)


def _union(filters: list[row_filters.RowFilter]) -> row_filters.RowFilter:
    return filters[0] if len(filters) == 1 else row_filters.RowFilterUnion(filters)


# -- writes ------------------------------------------------------------------------------


def _entry_bytes(key: bytes, mutations: Sequence) -> int:
    """About the encoded size of one entry (only the limit matters)."""
    size = len(key) + 16
    for m in mutations:
        size += 64
        if isinstance(m, BigtableSetCell):
            size += len(m.family) + len(m.qualifier) + len(m.new_value)
    return size


def _requests(entries: list[tuple[RowMutationEntry, int]]) -> Iterator[list[RowMutationEntry]]:
    """Entries grouped into MutateRows requests within Bigtable's limits."""
    batch: list[RowMutationEntry] = []
    count = size = 0
    for entry, entry_size in entries:
        n = len(entry.mutations)
        if batch and (count + n > MAX_REQUEST_MUTATIONS or size + entry_size > MAX_REQUEST_BYTES):
            yield batch
            batch, count, size = [], 0, 0
        batch.append(entry)
        count += n
        size += entry_size
    if batch:
        yield batch


class BigtableTable(ScanByRanges):
    """One table of a :class:`BigtableBackend` (see the Table protocol)."""

    def __init__(self, backend: BigtableBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    @property
    def _families(self) -> Mapping[str, GCPolicy]:
        return self.backend.table_info(self.name).families

    def _errors(self, action: str) -> _Errors:
        return self.backend._errors(f"{action} {self.name}", self.name)

    # -- writes ------------------------------------------------------------------

    def mutate_rows(self, rows: Sequence[RowMutation]) -> None:
        """Apply a batch (see the module docstring for what is retried)."""
        families = self._families
        merged: dict[bytes, list] = {}
        for row in rows:
            check_row_key(row.key)
            converted = merged.setdefault(row.key, [])
            for mutation in row.mutations:
                converted.append(self._convert(mutation, families))
        retried: list[tuple[RowMutationEntry, int]] = []
        once: list[tuple[RowMutationEntry, int]] = []
        for key, mutations in merged.items():
            if not mutations:
                continue
            if len(mutations) > MAX_REQUEST_MUTATIONS:
                raise ValidationError(
                    "mutations", f"{len(mutations)} mutations of row {key[:32]!r}",
                    f"Bigtable applies at most {MAX_REQUEST_MUTATIONS} to one row at once",
                )
            entry = RowMutationEntry(key, mutations)
            sized = (entry, _entry_bytes(key, mutations))
            (retried if all(isinstance(m, BigtableSetCell) for m in mutations) else once).append(sized)
        if not retried and not once:
            return
        table = self.backend._data_table(self.name)
        with self._errors("write to"):
            for request in _requests(retried):
                table.bulk_mutate_rows(request)
            for request in _requests(once):
                table.bulk_mutate_rows(request, retryable_errors=())

    def _convert(self, mutation, families: Mapping[str, GCPolicy]):
        family = getattr(mutation, "family", None)
        if family is not None and family not in families:
            raise ValidationError("family", family, f"is not a column family of table {self.name!r}")
        if isinstance(mutation, SetCell):
            check_set_cell(mutation)
            return BigtableSetCell(family, bytes(mutation.qualifier), bytes(mutation.value), mutation.timestamp_ms * 1000)
        if isinstance(mutation, DeleteCells):
            if mutation.qualifier is None:
                return DeleteAllFromFamily(family)
            return DeleteRangeFromColumn(family, bytes(mutation.qualifier))
        if isinstance(mutation, DeleteRow):
            return DeleteAllFromRow()
        raise ValidationError("mutation", mutation, "is not a SetCell, DeleteCells or DeleteRow")

    def check_and_set(
        self, key: bytes, family: str, qualifier: bytes, expected: bytes | None, value: bytes, timestamp_ms: int
    ) -> bool:
        """One CheckAndMutateRow: the predicate keeps the newest live cell of
        the column, and with ``expected`` only when its value is exactly that
        (a value range from ``expected`` to ``expected``, both inclusive: bytes
        compared as bytes, where a regex would have to escape every byte).
        The write is the true branch, or, for ``expected=None`` ("must not
        exist"), the false branch. Not retried (a lost answer must not write
        twice): failures raise StoreUnavailable with the outcome unknown."""
        policy = check_check_and_set(key, family, qualifier, expected, value, timestamp_ms, self._families, self.name)
        qualifier = bytes(qualifier)
        steps: list[row_filters.RowFilter] = [
            row_filters.ColumnRangeFilter(family, qualifier, qualifier, inclusive_start=True, inclusive_end=True)
        ]
        if policy.max_age_s is not None:  # an expired cell counts as absent (GC is lazy)
            cutoff_ms = int(time.time() * 1000) - int(policy.max_age_s * 1000)
            steps.append(row_filters.TimestampRangeFilter(start=_EPOCH + _dt.timedelta(milliseconds=max(0, cutoff_ms))))
        steps.append(row_filters.CellsColumnLimitFilter(1))
        if expected == b"":  # (an empty range bound would mean "unbounded")
            steps.append(row_filters.ValueRegexFilter(b"^$"))
        elif expected is not None:
            steps.append(row_filters.ValueRangeFilter(
                bytes(expected), bytes(expected), inclusive_start=True, inclusive_end=True
            ))
        write = [BigtableSetCell(family, qualifier, bytes(value), timestamp_ms * 1000)]
        table = self.backend._data_table(self.name)
        with self._errors("check and set in"):
            if expected is None:
                exists = table.check_and_mutate_row(key, row_filters.RowFilterChain(steps), false_case_mutations=write)
                return not exists
            return bool(table.check_and_mutate_row(key, row_filters.RowFilterChain(steps), true_case_mutations=write))

    # -- reads --------------------------------------------------------------------

    def read_rows(
        self, keys: Iterable[bytes], *, columns: Iterable[Column] | None = None, versions: int = 1
    ) -> list[Row]:
        """The rows with these keys that have a matching cell, in key order:
        one ReadRows request per :data:`READ_KEYS_PER_REQUEST` keys."""
        unique = sorted(set(keys))
        for key in unique:
            check_row_key(key)
        plan = _ReadPlan(self._families, columns, versions)
        if not unique or plan.row_filter is None:
            return []  # (a query with no keys would read the whole table)
        table = self.backend._data_table(self.name)
        rows: list[Row] = []
        with self._errors("read"):
            for i in range(0, len(unique), READ_KEYS_PER_REQUEST):
                query = ReadRowsQuery(row_keys=unique[i : i + READ_KEYS_PER_REQUEST], row_filter=plan.row_filter)
                for found in table.read_rows_stream(query):
                    row = plan.row(found)
                    if row is not None:
                        rows.append(row)
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
        """Rows of several half-open ranges in one ReadRows query per page of
        :data:`SCAN_PAGE_ROWS` rows, in key order."""
        check_limit(limit)
        plan = _ReadPlan(self._families, columns, versions, keys_only=keys_only)
        todo: list[tuple[bytes | None, bytes | None]] = []
        for start, end in ranges:
            start = start or None  # b"" is unbounded too
            if start is not None and end is not None and start >= end:
                continue  # empty; Bigtable refuses a range that ends before it starts
            todo.append((start, end))
        todo.sort(key=lambda r: r[0] or b"")
        if not todo or plan.row_filter is None:
            return iter(())
        return self._scan(todo, plan, limit)

    def _scan(self, ranges: list[tuple[bytes | None, bytes | None]], plan: _ReadPlan, limit: int | None) -> Iterator[Row]:
        table = self.backend._data_table(self.name)
        after: bytes | None = None  # the last key read; the next page starts after it
        produced = 0
        while True:
            page_limit = SCAN_PAGE_ROWS if limit is None else min(SCAN_PAGE_ROWS, limit - produced)
            row_ranges = _ranges_after(ranges, after)
            if not row_ranges:
                return
            query = ReadRowsQuery(row_ranges=row_ranges, limit=page_limit, row_filter=plan.row_filter)
            received = 0
            with self._errors("scan"):
                page = table.read_rows(query)
            for found in page:
                received += 1
                after = found.row_key
                row = plan.row(found)
                if row is None:
                    continue
                yield row
                produced += 1
                if limit is not None and produced >= limit:
                    return
            if received < page_limit:
                return

    # -- maintenance -----------------------------------------------------------------

    def compact(self, now_ms: int | None = None) -> int:
        """0: Bigtable collects garbage itself (reads hide it until then)."""
        self.backend.table_info(self.name)  # a missing table still raises TableNotFound
        return 0

    def sample_row_keys(self) -> list[bytes]:
        """Bigtable's SampleRowKeys: keys that split the table into pieces of
        roughly equal size (the final, empty end-of-table key left out)."""
        table = self.backend._data_table(self.name)
        with self._errors("sample"):
            samples = table.sample_row_keys()
        return [key for key, _offset in samples if key]


def _ranges_after(ranges: list[tuple[bytes | None, bytes | None]], after: bytes | None) -> list[RowRange]:
    """The part of ``ranges`` (sorted, half-open) with keys > ``after``."""
    found = []
    for start, end in ranges:
        if after is None:
            found.append(RowRange(start_key=start, end_key=end))
        elif end is not None and end <= after:
            continue
        elif start is not None and start > after:
            found.append(RowRange(start_key=start, end_key=end))
        else:
            found.append(RowRange(start_key=after, end_key=end, start_is_inclusive=False))
    return found
