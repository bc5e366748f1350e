"""The Cloud Bigtable backend against Google's Bigtable emulator (cbtemulator).

The contract suites run on one emulator for the whole session; fault tests
start their own, so killing it disturbs nothing else.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from google.api_core import exceptions as core_exceptions

from tablewatch.errors import MissingDependency, StoreError, StoreUnavailable, StoreURLError, TableNotFound
from tablewatch.store import Store, open_store
from tablewatch.store import bigtable as bt
from tablewatch.store.backends import open_backend
from tablewatch.store.keys import KeyCodec
from tablewatch.store.names import series_id
from tablewatch.store.table import Cell, DeleteRow, GCPolicy, RowMutation, SetCell
from tests.store.bigtable_emulator import INSTANCE, PROJECT, Emulator, find_emulator, free_port, raw_data_client
from tests.store.table_contract import NOW_MS, TableContract
from tests.store.timeseries_contract import T0, TimeSeriesContract

NOT_INSTALLED = "cbtemulator is not installed (scripts/install-system-deps.sh installs google-cloud-cli-bigtable-emulator)"


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10] + "_"


@pytest.fixture(scope="session")
def emulator():
    if find_emulator() is None:
        pytest.skip(NOT_INSTALLED)
    with Emulator() as emu:
        yield emu


@pytest.fixture
def fault_emulator():
    """An emulator of this test alone, free to be killed and restarted."""
    if find_emulator() is None:
        pytest.skip(NOT_INSTALLED)
    with Emulator() as emu:
        yield emu


@pytest.fixture
def backend(emulator):
    backend = bt.BigtableBackend(emulator.url(unique_prefix()))
    yield backend
    backend.close()


@pytest.fixture
def store_factory(emulator):
    stores = []

    def make(**config):
        stores.append(open_store(emulator.url(unique_prefix()), **config))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


class TestBigtableTable(TableContract):
    pass


class TestBigtableTimeSeries(TimeSeriesContract):
    pass


# -- URLs and the optional dependency --------------------------------------------


def test_url_options():
    backend = open_backend("bigtable://my-project/my-instance?table_prefix=prod_&app_profile=batch&timeout_s=2.5")
    assert isinstance(backend, bt.BigtableBackend)
    assert (backend.project, backend.instance) == ("my-project", "my-instance")
    assert (backend.table_prefix, backend.app_profile, backend.timeout_s) == ("prod_", "batch", 2.5)
    assert backend.table_path("tw_points") == "projects/my-project/instances/my-instance/tables/prod_tw_points"
    backend.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("bigtable:///my-instance", "no project"),
        ("bigtable://my-project", "no instance"),
        ("bigtable://my-project/", "no instance"),
        ("bigtable://my-project/a/b", "exactly PROJECT/INSTANCE"),
        ("bigtable://p/i?tablePrefix=x", r"unknown option\(s\) \['tablePrefix'\]"),
        ("bigtable://p/i?timeout_s=soon", "timeout_s must be a number"),
        ("bigtable://p/i?timeout_s=0", "timeout_s must be a number"),
        ("bigtable://p/i?table_prefix=a/b", "table_prefix"),
        ("bigtable://p/i?emulator_host=", "emulator_host is empty"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url, problem):
    with pytest.raises(StoreURLError, match=problem):
        open_backend(url)


def test_missing_client_library_names_the_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "tablewatch.store.bigtable")
    for name in [m for m in sys.modules if m.startswith("google.cloud.bigtable")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.cloud.bigtable", None)
    with pytest.raises(MissingDependency, match=r"pip install 'tablewatch\[bigtable\]'"):
        open_backend("bigtable://p/i")


# -- GC rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [GCPolicy(), GCPolicy(max_versions=3), GCPolicy(max_versions=None, max_age_s=86400.0),
     GCPolicy(max_versions=2, max_age_s=3600.0), GCPolicy(max_versions=None, max_age_s=None),
     GCPolicy(max_versions=1, max_age_s=0.25)],
)
def test_gc_rules_round_trip(policy):
    assert bt.gc_policy(bt.gc_rule(policy)) == policy


def test_both_limits_are_a_union():
    rule = bt.gc_rule(GCPolicy(max_versions=2, max_age_s=60.0))
    assert [r.max_num_versions for r in rule.union.rules] == [2, 0]
    assert not rule.intersection.rules


def test_intersections_keep_what_bigtable_keeps():
    both = bt.admin_types.GcRule(intersection=bt.admin_types.GcRule.Intersection(rules=[
        bt.gc_rule(GCPolicy(max_versions=2)), bt.gc_rule(GCPolicy(max_versions=None, max_age_s=60.0))]))
    assert bt.gc_policy(both) == GCPolicy(max_versions=None, max_age_s=None)
    one = bt.admin_types.GcRule(intersection=bt.admin_types.GcRule.Intersection(rules=[bt.gc_rule(GCPolicy(3))]))
    assert bt.gc_policy(one) == GCPolicy(max_versions=3)


def test_table_info_reads_gc_rules_back_from_the_admin_api(emulator):
    prefix = unique_prefix()
    creator = bt.BigtableBackend(emulator.url(prefix))
    creator.create_table("gc", {"f": GCPolicy(max_versions=2, max_age_s=3600.0), "g": GCPolicy(max_versions=None)})
    reader = bt.BigtableBackend(emulator.url(prefix))  # nothing cached
    assert reader.table_info("gc").families == {
        "f": GCPolicy(max_versions=2, max_age_s=3600.0), "g": GCPolicy(max_versions=None, max_age_s=None),
    }
    raw = reader._admin_client().get_table(request={"name": reader.table_path("gc")})
    rules = raw.column_families["f"].gc_rule.union.rules
    assert rules[0].max_num_versions == 2 and rules[1].max_age.total_seconds() == 3600
    creator.close()
    reader.close()


# -- reads and writes beyond the contract ---------------------------------------------------


def test_same_row_twice_in_one_batch_applies_in_order(backend):
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    table.mutate_rows([RowMutation(b"a", [SetCell("f", b"q", b"1", NOW_MS)]), RowMutation(b"a", [DeleteRow()]),
                       RowMutation(b"b", [DeleteRow()]), RowMutation(b"b", [SetCell("f", b"q", b"2", NOW_MS)])])
    assert [(r.key, r.value("f", b"q")) for r in table.scan()] == [(b"b", b"2")]


def test_scan_pages_through_several_ranges_with_a_filter(backend, monkeypatch):
    monkeypatch.setattr(bt, "SCAN_PAGE_ROWS", 7)
    backend.create_table("t", {"f": GCPolicy(), "g": GCPolicy()})
    table = backend.table("t")
    keys = [bytes([i]) + b"k" for i in range(60)]
    table.mutate_rows([RowMutation(k, [SetCell("f" if i % 3 else "g", b"q", k, NOW_MS)]) for i, k in enumerate(keys)])
    ranges = [(bytes([40]), None), (bytes([2]), bytes([25])), (None, bytes([1]))]
    expected = [k for i, k in enumerate(keys) if (i < 1 or 2 <= i < 25 or i >= 40) and i % 3]
    assert [r.key for r in table.scan_ranges(ranges, columns=["f"])] == expected
    assert [r.key for r in table.scan_ranges(ranges, columns=["f"], limit=17)] == expected[:17]
    assert [r.key for r in table.scan(prefix=bytes([5]))] == [keys[5]]
    assert list(table.scan_ranges([(b"b", b"a")])) == []  # empty range: nothing, not the whole table


def test_read_rows_of_many_keys_in_several_requests(backend, monkeypatch):
    monkeypatch.setattr(bt, "READ_KEYS_PER_REQUEST", 5)
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    keys = [i.to_bytes(2, "big") for i in range(0, 60, 2)]
    table.mutate_rows([RowMutation(k, [SetCell("f", b"q", k, NOW_MS)]) for k in keys])
    wanted = [i.to_bytes(2, "big") for i in range(59, -1, -1)]
    assert [r.key for r in table.read_rows(wanted)] == keys
    assert table.read_rows([]) == []


def test_rows_over_grpc_default_message_size(backend):
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    value = bytes(range(256)) * 4096  # 1 MiB
    table.mutate_rows([RowMutation(b"big", [SetCell("f", bytes([i]), value, NOW_MS) for i in range(6)])])
    [row] = table.read_rows([b"big"])
    assert len(row.cells["f"]) == 6 and row.value("f", b"\x05") == value


def test_writes_to_a_deleted_table_raise_table_not_found(backend, emulator):
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    table.mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"x", NOW_MS)])])
    other = bt.BigtableBackend(backend.url)
    other.delete_table("t")
    other.close()
    with pytest.raises(TableNotFound, match="'t'"):
        table.mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"y", NOW_MS)])])


def test_negative_timestamps_are_refused(backend):
    backend.create_table("t", {"f": GCPolicy()})
    with pytest.raises(ValueError, match="timestamp_ms"):
        backend.table("t").mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"x", -1)])])


def test_compact_is_zero_and_sample_row_keys_come_from_bigtable(backend):
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    keys = [bytes([i]) * 4 for i in range(1, 200)]
    table.mutate_rows([RowMutation(k, [SetCell("f", b"q", b"v" * 2000, NOW_MS)]) for k in keys])
    assert table.compact() == 0
    samples = table.sample_row_keys()
    assert samples and samples == sorted(samples) and set(samples) <= set(keys)


def test_environment_variable_is_honoured_without_credentials(emulator, monkeypatch):
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", emulator.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with open_store(f"bigtable://{PROJECT}/{INSTANCE}?table_prefix={unique_prefix()}") as store:
        store.write_points("m", {}, [T0], [1.0])
        assert store.read_points("m", {})["value"].tolist() == [1.0]


# -- the key layout, as Bigtable itself sees it ----------------------------------------------------


def test_raw_key_layout_salt_series_bucket(emulator):
    prefix = unique_prefix()
    hours = 48
    with open_store(emulator.url(prefix), salt_buckets=16, bucket_seconds=3600) as store:
        ts = T0 + np.arange(hours * 60) * 60.0
        store.write_points("hot.metric", {"host": "a"}, ts, np.arange(len(ts), dtype=float))
    sid = series_id("hot.metric", {"host": "a"})
    codec = KeyCodec(16, 3600)
    client = raw_data_client(emulator.host)
    try:
        table = client.get_table(INSTANCE, prefix + "tw_points")
        rows = table.read_rows(bt.ReadRowsQuery())
    finally:
        client.close()
    assert len(rows) == hours
    buckets = []
    for row in rows:
        key = row.row_key
        assert len(key) == 1 + 8 + 4
        salt, key_sid, bucket = key[0], key[1:9], int.from_bytes(key[9:], "big")
        assert key_sid == sid  # the series id follows the salt byte
        assert salt == codec.salt(sid, bucket) < 16  # the salt leads the key
        buckets.append(bucket)
        for cell in row.cells:  # event time, in µs at millisecond granularity
            assert cell.family == "p" and cell.timestamp_micros % 1000 == 0
            assert int(T0 * 1_000_000) <= cell.timestamp_micros < int((T0 + hours * 3600) * 1_000_000)
    assert sorted(buckets) == list(range(int(T0 // 3600), int(T0 // 3600) + hours))
    per_salt = Counter(row.row_key[0] for row in rows)
    assert sorted(per_salt) == list(range(16))  # one hot series spreads over every salt bucket
    assert set(per_salt.values()) == {hours // 16}


# -- faults ---------------------------------------------------------------------------------------


def test_unreachable_store_raises_store_unavailable_fast():
    url = f"bigtable://{PROJECT}/{INSTANCE}?emulator_host=127.0.0.1:{free_port()}&timeout_s=1"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert time.monotonic() - started < 5
    assert url in str(caught.value)
    assert isinstance(caught.value.__cause__, core_exceptions.GoogleAPIError)
    backend = bt.BigtableBackend(url)
    table = backend.table("tw_points")
    backend._infos["tw_points"] = bt.TableInfo("tw_points", {"p": GCPolicy()})  # skip the admin call
    for attempt in (lambda: table.mutate_rows([RowMutation(b"r", [SetCell("p", b"q", b"x", NOW_MS)])]),
                    lambda: table.read_rows([b"r"]), lambda: list(table.scan()), table.sample_row_keys,
                    lambda: table.check_and_set(b"r", "p", b"q", None, b"x", NOW_MS)):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            attempt()
        assert time.monotonic() - started < 5
    backend.close()


def test_emulator_killed_during_a_write_stream(fault_emulator):
    """Every batch acknowledged before a read is in that read; the call in
    flight when the emulator dies raises StoreUnavailable within the timeout
    instead of returning; after a restart on the same port the same backend
    object works again. (The emulator is in memory: a restart loses the data,
    so durability can only be checked before the kill.)"""
    timeout_s = 2.0
    backend = bt.BigtableBackend(fault_emulator.url(unique_prefix(), timeout_s=timeout_s))
    store = Store(backend)
    batch = 600
    acked: list[int] = []
    failure: list[tuple[BaseException, float]] = []

    def write_stream():
        i = 0
        try:
            while i < 100_000:
                ts = T0 + i * batch + np.arange(batch, dtype=float)
                store.write_points("fault.stream", {}, ts, np.full(batch, float(i)))
                acked.append(i)
                i += 1
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            failure.append((e, time.monotonic()))

    writer = threading.Thread(target=write_stream, daemon=True)
    writer.start()
    for _ in range(3):
        deadline = time.monotonic() + 10
        target = len(acked) + 15
        while len(acked) < target and time.monotonic() < deadline and not failure:
            time.sleep(0.01)
        assert not failure, failure
        before = len(acked)
        values = store.read_points("fault.stream", {})["value"].to_numpy()
        counts = Counter(values.astype(int).tolist())
        assert all(counts[i] == batch for i in range(before)), "an acknowledged batch is missing"
    killed_at = time.monotonic()
    fault_emulator.kill()
    acked_at_death = len(acked)  # the emulator process is gone now
    writer.join(timeout_s + 10)
    assert not writer.is_alive(), "the write stream neither returned nor failed"
    [(error, failed_at)] = failure
    assert isinstance(error, StoreUnavailable), repr(error)
    assert backend.url in str(error) and isinstance(error.__cause__, Exception)
    assert failed_at - killed_at < timeout_s + 3
    # No call returns as written once the emulator is dead, bar the one whose
    # answer was already on its way.
    assert len(acked) - acked_at_death <= 1

    fault_emulator.start()  # same port, empty
    started = time.monotonic()
    again = Store(backend)  # the same backend object re-creates the tables
    again.write_points("fault.stream", {}, T0 + np.arange(10.0), np.arange(10.0))
    assert again.read_points("fault.stream", {})["value"].tolist() == list(map(float, range(10)))
    assert time.monotonic() - started < timeout_s + 3
    backend.close()


def test_reads_recover_after_an_outage_on_the_same_backend(fault_emulator):
    backend = bt.BigtableBackend(fault_emulator.url(unique_prefix(), timeout_s=2))
    backend.create_table("t", {"f": GCPolicy()})
    backend.table("t").read_rows([b"r"])  # the data channel is connected too
    fault_emulator.kill()
    with pytest.raises(StoreUnavailable):
        backend.list_tables()
    with pytest.raises(StoreUnavailable):
        backend.table("t").read_rows([b"r"])
    fault_emulator.start()
    # The first calls after the restart succeed: the channels reconnect within
    # half a second, inside the request's retry budget.
    assert backend.list_tables() == []
    backend.create_table("t", {"f": GCPolicy()})
    backend.table("t").mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"x", NOW_MS)])])
    assert backend.table("t").read_rows([b"r"])[0].value("f", b"q") == b"x"
    backend.close()


def test_hung_store_is_reported_within_the_timeout(fault_emulator):
    backend = bt.BigtableBackend(fault_emulator.url(unique_prefix(), timeout_s=1))
    backend.create_table("t", {"f": GCPolicy()})
    table = backend.table("t")
    table.mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"x", NOW_MS)])])
    fault_emulator.freeze()
    try:
        for attempt in (lambda: table.mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"y", NOW_MS)])]),
                        lambda: table.read_rows([b"r"]), backend.list_tables):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="budget"):
                attempt()
            assert time.monotonic() - started < 3
    finally:
        fault_emulator.thaw()
    assert table.read_rows([b"r"])[0].value("f", b"q") in (b"x", b"y")
    backend.close()


def test_closed_backend_refuses_work(emulator):
    backend = bt.BigtableBackend(emulator.url(unique_prefix()))
    backend.list_tables()
    backend.close()
    with pytest.raises(StoreError, match="closed"):
        backend.list_tables()


def test_check_and_set_empty_expected_means_an_empty_cell(backend):
    backend.create_table("lease", {"f": GCPolicy(max_versions=1)})
    table = backend.table("lease")
    assert table.check_and_set(b"r", "f", b"q", b"", b"x", NOW_MS) is False  # absent is not empty
    table.mutate_rows([RowMutation(b"r", [SetCell("f", b"q", b"", NOW_MS)])])
    assert table.check_and_set(b"r", "f", b"q", None, b"x", NOW_MS + 1) is False  # empty is not absent
    assert table.check_and_set(b"r", "f", b"q", b"", b"x", NOW_MS + 1) is True
    assert table.check_and_set(b"r", "f", b"q", b"", b"y", NOW_MS + 2) is False
    [row] = table.read_rows([b"r"])
    assert row.cells["f"][b"q"][0] == Cell(b"x", NOW_MS + 1)

