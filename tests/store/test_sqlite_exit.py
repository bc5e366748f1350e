"""A process leaves cleanly while another of its threads is inside SQLite.

The SQLite backend keeps one connection per thread. A connection must never be
closed from another thread while its own thread uses it (interpreter exit, or
``close()``): that is a segfault, not an exception."""
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tablewatch.errors import StoreError
from tablewatch.store.sqlite import SQLiteBackend
from tablewatch.store.table import GCPolicy

REPO = Path(__file__).resolve().parents[2]

# A daemon thread creates and lists tables without a pause; the main thread
# leaves at once (the flusher of a collector opening its store does the same).
BUSY_THREAD_AT_EXIT = """
import sys, threading, time
from tablewatch.store.sqlite import SQLiteBackend
from tablewatch.store.table import GCPolicy
backend = SQLiteBackend(f"sqlite:///{sys.argv[1]}")
started = threading.Event()
def work():
    for i in range(100_000):
        backend.create_table(f"t{i}", {"f": GCPolicy()})
        backend.list_tables()
        started.set()
threading.Thread(target=work, daemon=True).start()
started.wait(10)
time.sleep(0.05)
"""

COLLECTOR_AT_EXIT = """
import sys, tablewatch
collector = tablewatch.Collector(f"sqlite:///{sys.argv[1]}", spool_dir=sys.argv[2])
collector.log("loss", 0.5)
"""


def run_many(code: str, tmp_path: Path, count: int) -> list[int]:
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"store{i}.db"), str(tmp_path / f"spool{i}")],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(count)
    ]
    codes = []
    for process in processes:
        _, err = process.communicate(timeout=60)
        codes.append(process.returncode)
        assert process.returncode == 0, err.decode()[-2000:]
    return codes


def test_exit_while_a_daemon_thread_is_inside_sqlite(tmp_path):
    assert run_many(BUSY_THREAD_AT_EXIT, tmp_path, 4) == [0] * 4


def test_processes_that_exit_right_after_creating_a_collector_all_exit_cleanly(tmp_path):
    assert run_many(COLLECTOR_AT_EXIT, tmp_path, 20) == [0] * 20


def test_close_leaves_a_busy_thread_its_connection(tmp_path):
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/store.db")
    inside, closed, outcome = threading.Event(), threading.Event(), []

    def work():
        connection = backend._connection()
        connection.execute("SELECT 1").fetchall()
        inside.set()
        closed.wait(10)
        # close() ran meanwhile: the connection this thread held is still usable...
        outcome.append(connection.execute("SELECT count(*) FROM tablewatch_tables").fetchone()[0])
        # ...and its next call on the backend finds the store closed.
        try:
            backend.list_tables()
        except StoreError as e:
            outcome.append(str(e))

    thread = threading.Thread(target=work)
    thread.start()
    inside.wait(10)
    backend.close()
    closed.set()
    thread.join(10)
    assert outcome[0] == 0
    assert "is closed" in outcome[1]
    assert backend._connections == {}
    with pytest.raises(StoreError, match="is closed"):
        backend.create_table("t", {"f": GCPolicy()})
