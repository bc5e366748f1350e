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
