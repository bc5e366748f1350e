import pytest

from tablewatch.store import open_store
from tablewatch.store.sqlite import SQLiteBackend
from tests.store.table_contract import TableContract
from tests.store.timeseries_contract import TimeSeriesContract


@pytest.fixture
def backend(tmp_path):
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/store.db")
    yield backend
    backend.close()


@pytest.fixture
def store_factory(tmp_path):
    stores = []

    def make(**config):
        stores.append(open_store(f"sqlite:///{tmp_path}/ts{len(stores)}.db", **config))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


class TestSQLiteTable(TableContract):
    pass


class TestSQLiteTimeSeries(TimeSeriesContract):
    pass


def test_cells_of_one_width_over_several_statements(backend, monkeypatch):
    # More cells than one packed statement takes: each is written, in order.
    import tablewatch.store.sqlite as sqlite_module
    from tablewatch.store.table import CellColumns, GCPolicy, set_cells

    monkeypatch.setattr(sqlite_module, "PACKED_STATEMENT_BYTES", 100)
    backend.create_table("t", {"f": GCPolicy(max_versions=5)})
    table = backend.table("t")
    keys = [b"r%03d" % i for i in range(100)]
    set_cells(table, CellColumns(keys, ["f"] * 100, [b"q"] * 100, [b"v%03d" % i for i in range(100)],
                                 list(range(1000, 1100))))
    rows = table.read_rows(keys)
    assert [(row.key, row.cells["f"][b"q"][0].value, row.cells["f"][b"q"][0].timestamp_ms) for row in rows] == [
        (b"r%03d" % i, b"v%03d" % i, 1000 + i) for i in range(100)]


def test_threads_do_not_leak_connections(tmp_path):
    import os
    import threading

    backend = SQLiteBackend(f"sqlite:///{tmp_path}/threads.db")
    backend.list_tables()

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for _ in range(50):
        thread = threading.Thread(target=backend.list_tables)
        thread.start()
        thread.join()
    assert open_fds() - before < 5
    assert len(backend._connections) <= 2
    backend.close()
