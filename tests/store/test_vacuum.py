"""The embedded store's file gives back the space of expired points."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import numpy as np

from tablewatch.cli import main
from tablewatch.store import open_store

DAY = 86_400.0
EXPIRED_POINTS = 400_000


def fill(store, now: float) -> None:
    """Many points 3 days old (past a 1-day retention) and a few recent ones."""
    rng = np.random.default_rng(5)
    old = now - 3 * DAY + np.arange(EXPIRED_POINTS) * 0.1
    store.write_points("serve.latency_s", {"model": "old"}, old, rng.normal(size=EXPIRED_POINTS))
    store.write_points("serve.latency_s", {"model": "live"}, now - 60 + np.arange(60.0), np.arange(60.0))


def test_a_new_store_shrinks_after_compact_while_a_reader_keeps_reading(tmp_path):
    now = time.time()
    store = open_store(f"sqlite:///{tmp_path}/shrinks.db", retention_s={"points": DAY})
    assert store.backend.auto_vacuum() == "incremental"
    fill(store, now)
    store.backend._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    full = store.backend.file_bytes()
    assert full > 2_000_000

    reads: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        other = open_store(f"sqlite:///{tmp_path}/shrinks.db")  # its own connection, as another process would
        try:
            while not done.is_set():
                reads.append(len(other.read_points("serve.latency_s", {"model": "live"})))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
        finally:
            other.close()

    thread = threading.Thread(target=reader)
    thread.start()
    while not reads and thread.is_alive():
        time.sleep(0.01)
    before = len(reads)
    assert store.compact() > 0
    during = len(reads) - before
    done.set()
    thread.join(10)
    assert not errors
    assert during > 0 and set(reads) == {60}  # it read, and always the whole live series
    assert store.backend.file_bytes() < full / 4
    assert store.read_points("serve.latency_s", {"model": "live"})["value"].tolist() == list(range(60))
    assert store.read_points("serve.latency_s", {"model": "old"}).empty
    store.close()


def test_an_old_store_shrinks_with_compact_vacuum_and_then_on_its_own(tmp_path, capsys):
    path = tmp_path / "old.db"
    # A file created before auto_vacuum was set: auto_vacuum = NONE.
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 16384")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE tablewatch_tables (name TEXT PRIMARY KEY, families TEXT NOT NULL)")
    db.close()
    now = time.time()
    store = open_store(f"sqlite:///{path}", retention_s={"points": DAY})
    assert store.backend.auto_vacuum() == "none"
    fill(store, now)
    store.close()

    assert main(["store", "compact", "--store", f"sqlite:///{path}"]) == 0
    out = capsys.readouterr().out
    before, after = map(float, re.search(r"file: ([\d.]+) MB -> ([\d.]+) MB", out).groups())
    assert after > 2 and after > before / 2  # the file stays as big ...
    assert "run `tablewatch store compact --vacuum` once" in out  # ... and the hint says what to do

    assert main(["store", "compact", "--vacuum", "--store", f"sqlite:///{path}"]) == 0
    out = capsys.readouterr().out
    assert float(re.search(r"-> ([\d.]+) MB", out).group(1)) < 1
    assert "does not shrink on its own" not in out
    with open_store(f"sqlite:///{path}") as store:
        assert store.backend.auto_vacuum() == "incremental"
        assert store.backend.file_bytes() < 1_000_000
        assert len(store.read_points("serve.latency_s", {"model": "live"})) == 60
        # from now on, compact alone gives the space back
        fill(store, time.time())
        store.backend._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = store.backend.file_bytes()
        store.compact()
        assert store.backend.file_bytes() < full / 4


def test_opening_the_store_while_a_writer_holds_the_lock_does_not_wait(tmp_path):
    url = f"sqlite:///{tmp_path}/busy.db"
    with open_store(url) as store:
        store.write_points("m", {}, [time.time()], [1.0])
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with open_store(url + "?busy_timeout_s=0.5") as reader:  # a new connection reads at once
            assert reader.backend.auto_vacuum() == "incremental"
            assert reader.read_points("m", {})["value"].tolist() == [1.0]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_reclaim_space_gives_back_every_free_page_in_steps(tmp_path):
    from tablewatch.store.table import DeleteRow, RowMutation

    store = open_store(f"sqlite:///{tmp_path}/steps.db")
    fill(store, time.time())
    rows = [RowMutation(row.key, [DeleteRow()]) for row in store._points.scan(keys_only=True)]
    store._points.mutate_rows(rows)  # frees pages without compacting
    connection = store.backend._connection()
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > 64
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    assert store.backend.reclaim_space(step_pages=16) == free
    connection.set_trace_callback(None)
    steps = [s for s in statements if "incremental_vacuum" in s]
    assert len(steps) == -(-free // 16) and all(s.strip(" ;").endswith("(16)") for s in steps[:-1])
    assert connection.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert store.backend.file_bytes() < 1_000_000
    assert store.backend.reclaim_space() == 0  # nothing left to give back
    store.close()


def test_compact_vacuum_on_hbase_says_there_is_no_file(tmp_path, capsys):
    from tablewatch.gateway.hbase_thrift import HBaseThriftGateway

    with HBaseThriftGateway(f"sqlite:///{tmp_path}/gateway.db", port=0) as gateway:
        open_store(f"hbase://127.0.0.1:{gateway.port}").close()  # compact only reads an existing store
        assert main(["store", "compact", "--vacuum", "--store", f"hbase://127.0.0.1:{gateway.port}"]) == 0
    out = capsys.readouterr().out
    assert "removed 0 expired cells" in out
    assert "only the embedded (sqlite) store has a file to shrink" in out and "MB" not in out
