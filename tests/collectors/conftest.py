import pytest

from tablewatch import Collector, open_store


@pytest.fixture
def store(tmp_path):
    """A fresh embedded store (modules may override this fixture). It keeps
    points forever: tests log points at fixed past times (2023), which the
    default 30-day retention of points would hide."""
    with open_store(f"sqlite:///{tmp_path}/tw.db", retention_s={"points": None}) as store:
        yield store


@pytest.fixture
def collector(store):
    """A collector on ``store`` that flushes only when told to."""
    collector = Collector(store, flush_interval=3600)
    yield collector
    collector.close(timeout=0)
