import pytest

from tablewatch import open_store


@pytest.fixture
def store(tmp_path):
    """A fresh embedded store."""
    with open_store(f"sqlite:///{tmp_path}/tw.db") as store:
        yield store
