"""Collector edges: a forked child (os.fork, a multiprocessing / DataLoader
worker) gets a flusher of its own; a log() racing close() never loses its
point; an SQLite table recreated by another process is seen."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tablewatch import Collector
from tablewatch.collectors import CollectorClosed
from tablewatch.errors import ValidationError
from tablewatch.store import open_store
from tablewatch.store.sqlite import SQLiteBackend
from tablewatch.store.table import GCPolicy, RowMutation, SetCell

T0 = time.time() - 600


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/tw.db"
    open_store(url).close()
    return url


def steps_of(url, metric):
    with open_store(url) as store:
        return np.sort(store.read_arrays(metric)[2])


def test_a_forked_child_writes_through_a_flusher_of_its_own(url):
    collector = Collector(url, flush_interval=0.05)
    for i in range(100):
        collector.log("parent.m", float(i), step=i, ts=T0 + i)  # buffered, not yet flushed, at the fork
    pid = os.fork()
    if pid == 0:  # the child: no flush(), no close(); the background flusher must write
        code = 1
        try:
            for i in range(500):
                collector.log("child.m", float(i), step=i, ts=T0 + i)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(steps_of(url, "child.m")) < 500:
                time.sleep(0.05)
            code = 0 if len(steps_of(url, "child.m")) == 500 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert collector.close() is True
    np.testing.assert_array_equal(steps_of(url, "child.m"), np.arange(500))
    np.testing.assert_array_equal(steps_of(url, "parent.m"), np.arange(100))  # once: the child did not write them


def _worker(collector: Collector, n: int) -> None:
    for i in range(n):
        collector.log("worker.m", float(i), step=i, ts=T0 + i)
    # returns without close(): multiprocessing leaves through os._exit


def test_a_multiprocessing_fork_worker_flushes_at_its_exit(url):
    collector = Collector(url, flush_interval=3600)
    worker = multiprocessing.get_context("fork").Process(target=_worker, args=(collector, 300))
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    np.testing.assert_array_equal(steps_of(url, "worker.m"), np.arange(300))
    assert collector.close() is True


def test_a_log_racing_close_is_written_or_refused_never_lost(url):
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: make the race likely
    try:
        for attempt in range(3):
            metric = f"race{attempt}"
            collector = Collector(url, flush_interval=0.01)
            accepted = [0] * 4
            started = threading.Barrier(5)

            def logger(k: int) -> None:
                started.wait()
                step = k
                while True:
                    try:
                        collector.log(metric, 1.0, step=step, ts=T0 + step * 1e-3, tags={"t": str(k)})
                    except CollectorClosed:
                        return
                    accepted[k] += 1
                    step += 4

            threads = [threading.Thread(target=logger, args=(k,)) for k in range(4)]
            for thread in threads:
                thread.start()
            started.wait()
            time.sleep(0.05)
            collector.close(timeout=10)
            for thread in threads:
                thread.join(10)
            assert Collector(url).close(timeout=10) is True  # replays what the race left in the spool
            with open_store(url) as store:
                stored = [len(store.read_arrays(metric, {"t": str(k)})[0]) for k in range(4)]
            assert stored == accepted, (attempt, stored, accepted)
    finally:
        sys.setswitchinterval(old)


class _HeldValue:
    """A value whose conversion waits for ``go``: holds a log() after it found
    its series' buffer and before it appends the point, the exact window of a
    log() racing close()."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def __float__(self) -> float:
        self.reached.set()
        self.go.wait(10)
        return 2.0


def test_a_log_held_past_the_whole_close_is_spooled_for_the_next_collector(url):
    collector = Collector(url, flush_interval=0.01)
    collector.log("held", 1.0, step=0, ts=T0)  # registers the series: the next log() finds its buffer
    value = _HeldValue()
    outcome: list[str] = []

    def logger() -> None:
        try:
            collector.log("held", value, step=1, ts=T0 + 1)
        except CollectorClosed:
            outcome.append("refused")
        else:
            outcome.append("accepted")

    thread = threading.Thread(target=logger)
    thread.start()
    assert value.reached.wait(10)
    assert collector.close(timeout=10) is True  # runs to its end while the log() is held
    value.go.set()
    thread.join(10)
    assert outcome == ["accepted"]  # past the buffer lookup: it was accepted, so it must not be lost
    assert Collector(url).close(timeout=10) is True  # replays what the late log() spooled
    np.testing.assert_array_equal(steps_of(url, "held"), [0, 1])


RECREATE = """
import sys
from tablewatch.store.sqlite import SQLiteBackend
from tablewatch.store.table import GCPolicy
backend = SQLiteBackend(sys.argv[1])
backend.delete_table("t")
if sys.argv[2] == "recreate":
    backend.create_table("t", {"b": GCPolicy(max_versions=1)})
backend.close()
"""


def test_an_sqlite_table_recreated_by_another_process_is_seen(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    backend = SQLiteBackend(url)
    backend.create_table("t", {"a": GCPolicy()})
    table = backend.table("t")
    table.mutate_rows([RowMutation(b"r", [SetCell("a", b"q", b"v", 1)])])
    subprocess.run([sys.executable, "-c", RECREATE, url, "recreate"], check=True, timeout=60)
    assert set(backend.table_info("t").families) == {"b"}
    table.mutate_rows([RowMutation(b"r", [SetCell("b", b"q", b"w", 1)])])
    [row] = table.read_rows([b"r"])
    assert row.value("b", b"q") == b"w"
    with pytest.raises(ValidationError, match="family"):
        table.mutate_rows([RowMutation(b"r", [SetCell("a", b"q", b"v", 1)])])
    subprocess.run([sys.executable, "-c", RECREATE, url, "delete"], check=True, timeout=60)
    from tablewatch.errors import TableNotFound

    with pytest.raises(TableNotFound):
        backend.table_info("t")
    backend.close()
