import time

import pytest

from tablewatch import open_store
from tests.dashboard import sample_data


@pytest.fixture(scope="package")
def sample(tmp_path_factory):
    """A store filled through the Store API and the collectors (see sample_data),
    shared by the dashboard tests: they only read it."""
    path = tmp_path_factory.mktemp("dashboard") / "tw.db"
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        filled = sample_data.fill(store, time.time())
    return url, filled


@pytest.fixture
def sample_store(sample):
    with open_store(sample[0]) as store:
        yield store


@pytest.fixture
def empty_url(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    open_store(url).close()
    return url
