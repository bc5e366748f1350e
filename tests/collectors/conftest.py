import pytest

from tablewatch import Collector, open_store


@pytest.fixture
def store(tmp_path):
    """A fresh embedded store (modules may override this fixture)."""
    with open_store(f"sqlite:///{tmp_path}/tw.db") as store:
        yield store


@pytest.fixture
def collector(store):
    """A collector on ``store`` that flushes only when told to."""
    collector = Collector(store, flush_interval=3600)
    yield collector
    collector.close(timeout=0)
