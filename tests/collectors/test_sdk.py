"""The Collector against the real embedded store (and the real Bigtable
emulator when it is installed): buffering, background flush, outages, the
spool, a killed collector, validation."""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tablewatch import Collector
from tablewatch.collectors import CollectorClosed
from tablewatch.errors import StoreURLError, ValidationError, ValidationTypeError
from tablewatch.store import open_store
from tests.collectors import DatabaseLock, mount_tiny_tmpfs, unmount, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path):
    return tmp_path / "tw.db"


@pytest.fixture
def url(db):
    # A short busy timeout: a locked database is reported as unavailable after 0.2 s.
    return f"sqlite:///{db}?busy_timeout_s=0.2"


@pytest.fixture
def store(url):
    store = open_store(url, retention_s={"points": None})  # creates the tables, so a later lock only blocks writes; keeps the 2023 points
    yield store
    store.close()


@pytest.fixture
def collectors():
    made: list[Collector] = []

    def make(*args, **kwargs) -> Collector:
        made.append(Collector(*args, **kwargs))
        return made[-1]

    yield make
    for collector in made:
        collector.close(timeout=0)


def steps_of(store, metric, tags=None):
    _, _, steps = store.read_arrays(metric, tags)
    return steps


def assert_exactly_once(store, metric, n, tags=None):
    steps = np.sort(steps_of(store, metric, tags))
    assert len(steps) == n, f"{metric}: {len(steps)} points stored, {n} logged"
    np.testing.assert_array_equal(steps, np.arange(n))


# -- the training loop ------------------------------------------------------------------------


def test_training_loop_of_a_million_points_reads_back_every_point_once(store, url, collectors):
    n = 1_000_000
    # Room for the whole loop in memory: at the default bound (exactly n) a flusher
    # that falls behind the loop (a loaded machine) rightly spools the last hand-off
    # (see test_a_store_slower_than_the_loop_...): this test is about the direct path.
    collector = collectors(url, max_buffered_points=2 * n)
    log = collector.log
    for i in range(n):
        log("train.loss", i * 0.5, step=i)
    assert collector.close() is True
    ts, values, steps = store.read_arrays("train.loss")
    assert len(ts) == n
    order = np.argsort(steps, kind="stable")
    np.testing.assert_array_equal(steps[order], np.arange(n))
    np.testing.assert_array_equal(values[order], np.arange(n) * 0.5)
    assert (np.diff(ts[order]) >= 0).all()  # logged in order, stored with their own timestamps
    stats = collector.stats()
    counts = {key: stats[key] for key in ("logged", "written", "spooled", "replayed", "dropped", "rejected")}
    assert counts == {"logged": n, "written": n, "spooled": 0, "replayed": 0, "dropped": 0, "rejected": 0}


class GatedStore:
    """A real store whose point writes wait until ``gate`` is set: a store slower
    than the logging loop, on any machine."""

    def __init__(self, store) -> None:
        self.store = store
        self.url = store.url
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write_points(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(10)
        return self.store.write_points(*args, **kwargs)

    def write_points_many(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(10)
        return self.store.write_points_many(*args, **kwargs)

    def write_series_points(self, *args, **kwargs):  # the Collector's path for many series
        self.entered.set()
        self.gate.wait(10)
        return self.store.write_series_points(*args, **kwargs)


def test_a_store_slower_than_the_loop_gets_the_overflow_through_the_spool_counted_once(store, collectors):
    gated = GatedStore(store)
    n, flush_size = 10_000, 1_000
    collector = collectors(gated, flush_size=flush_size, max_buffered_points=n)
    for i in range(n):
        collector.log("train.loss", i * 0.5, step=i)
    assert gated.entered.wait(5)  # the flusher is inside its first write, held there
    # Nothing is written yet, and the queue holds the bound less one buffer's share:
    # what is past it is spooled (how much, and whether close() spools the last
    # buffer too while the queue is still full, depends on when the flusher runs).
    assert collector.stats()["spooled"] > 0
    gated.gate.set()
    assert collector.close() is True
    assert_exactly_once(store, "train.loss", n)
    stats = collector.stats()
    spooled = stats["spooled"]
    assert 0 < spooled <= 2 * flush_size
    counts = {key: stats[key] for key in ("logged", "written", "spooled", "replayed", "dropped", "rejected")}
    assert counts == {"logged": n, "written": n - spooled, "spooled": spooled, "replayed": spooled,
                      "dropped": 0, "rejected": 0}


def test_log_many_tags_timestamps_and_special_values(store, collectors):
    collector = collectors(store)
    collector.log_many({"val.loss": 0.25, "val.acc": 0.75}, step=3, tags={"split": "val"})
    collector.log("lr", 0.1, ts=1_700_000_000.123456)
    collector.log("lr", 0.05, ts="2023-11-14T22:13:21Z")
    collector.log("diverged", float("inf"))
    collector.log("diverged", float("nan"))
    collector.log("ints", 3)
    collector.log("numpy", np.float32(1.5), step=np.int64(7))
    assert collector.flush() is True
    loss = store.read_points("val.loss", {"split": "val"})
    acc = store.read_points("val.acc", {"split": "val"})
    assert loss["value"].tolist() == [0.25] and acc["value"].tolist() == [0.75]
    assert loss["ts"].iloc[0] == acc["ts"].iloc[0]  # one timestamp for the whole call
    assert loss["step"].tolist() == [3]
    ts, values, _ = store.read_arrays("lr")
    assert ts.tolist() == [1_700_000_000_123_456, 1_700_000_001_000_000]  # exact microseconds
    assert values.tolist() == [0.1, 0.05]
    diverged = store.read_arrays("diverged")[1]
    assert math.isinf(diverged[0]) and math.isnan(diverged[1])
    assert store.read_arrays("ints")[1].tolist() == [3.0]
    frame = store.read_points("numpy")
    assert frame["value"].tolist() == [1.5] and frame["step"].tolist() == [7]


def test_points_with_and_without_steps_in_one_series(store, collectors):
    collector = collectors(store)
    collector.log("mixed", 1.0, step=1)
    collector.log("mixed", 2.0)
    collector.log("mixed", 3.0, step=3)
    collector.flush()
    frame = store.read_points("mixed")
    steps = {v: (None if pd.isna(s) else int(s)) for v, s in zip(frame["value"], frame["step"])}
    assert steps == {1.0: 1, 2.0: None, 3.0: 3}


def test_flushed_by_size_without_flush_call(store, collectors):
    collector = collectors(store, flush_interval=3600, flush_size=1000)
    for i in range(5000):
        collector.log("sized", float(i), step=i)
    # Each full buffer is handed to the flusher at once; a round may also take a
    # partly filled one, so at most flush_size - 1 points can still be waiting
    # for the (hour-long) flush interval.
    wait_until(lambda: len(steps_of(store, "sized")) >= 5000 - 999, timeout=10)
    collector.flush()
    assert steps_of(store, "sized").tolist() == list(range(5000))


def test_flushed_by_time_without_flush_call(store, collectors):
    collector = collectors(store, flush_interval=0.02)
    collector.log("timed", 1.0, step=0)
    wait_until(lambda: len(steps_of(store, "timed")) == 1, timeout=10)


def test_context_manager_closes_and_later_logs_are_refused(store):
    with Collector(store, flush_interval=3600) as collector:
        collector.log("cm", 1.0, step=0)
    assert len(steps_of(store, "cm")) == 1
    with pytest.raises(CollectorClosed):
        collector.log("cm", 2.0)
    with pytest.raises(CollectorClosed):
        collector.log("never-seen", 2.0)
    assert collector.close() is True  # twice is fine
    assert len(store.read_points("cm")) == 1  # a Store passed in is not closed by the collector


def test_collector_opens_a_url_lazily_and_closes_it(db, tmp_path):
    collector = Collector(str(db), flush_interval=0.05)
    collector.log("lazy", 1.0, step=0)
    assert collector.close() is True
    with open_store(str(db)) as store:
        assert len(store.read_points("lazy")) == 1
    assert collector.stats()["spool_dir"] == str(db.resolve()) + ".spool"


def test_unknown_scheme_is_refused_at_once():
    with pytest.raises(StoreURLError, match="known schemes"):
        Collector("nosuch://x")


def test_flushed_at_interpreter_exit_and_atexit_registered_only_by_a_collector(db):
    script = textwrap.dedent(f"""
        import atexit, tablewatch
        before = atexit._ncallbacks()
        collector = tablewatch.Collector({str(db)!r}, flush_interval=3600)
        # (>=: opening the store may register the standard library's own weakref.finalize hook)
        assert atexit._ncallbacks() >= before + 1, "the collector registers its exit hook"
        for i in range(1000):
            collector.log("at.exit", float(i), step=i)
        print(before)
    """)
    baseline = subprocess.run([sys.executable, "-c", "import atexit; print(atexit._ncallbacks())"],
                              capture_output=True, text=True, check=True, cwd=REPO)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    # importing tablewatch registers nothing at exit (logging's own hook aside)
    imported = subprocess.run([sys.executable, "-c", "import atexit, logging; n = atexit._ncallbacks(); "
                               "import tablewatch; print(atexit._ncallbacks() - n)"],
                              capture_output=True, text=True, check=True, cwd=REPO)
    assert imported.stdout.strip() == "0" and baseline.returncode == 0
    with open_store(str(db)) as store:
        assert_exactly_once(store, "at.exit", 1000)


def test_many_threads_log_concurrently_and_nothing_is_lost_or_doubled(store, collectors):
    collector = collectors(store, flush_interval=0.001, flush_size=500)
    per_thread, threads = 30_000, 4

    def work(k: int) -> None:
        for i in range(per_thread):
            collector.log("shared", float(k * per_thread + i), step=k * per_thread + i)
            if i % 3 == 0:
                collector.log("own", float(i), step=i, tags={"thread": str(k)})

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for _ in range(20):
        collector.flush()  # racing the loggers and the background flusher
    for w in workers:
        w.join()
    assert collector.close() is True
    assert_exactly_once(store, "shared", per_thread * threads)
    for k in range(threads):
        steps = np.sort(steps_of(store, "own", {"thread": str(k)}))
        np.testing.assert_array_equal(steps, np.arange(0, per_thread, 3))


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda c: c.log("bad metric!", 1.0), ValidationError, "metric"),
        (lambda c: c.log(42, 1.0), ValidationTypeError, "metric"),
        (lambda c: c.log("m", "0.5"), ValidationTypeError, "value"),
        (lambda c: c.log("m", None), ValidationTypeError, "value"),
        (lambda c: c.log("m", True), ValidationTypeError, "value"),
        (lambda c: c.log("m", [1.0]), ValidationTypeError, "value"),
        (lambda c: c.log("m", 10**400), ValidationError, "value"),
        (lambda c: c.log("m", 1.0, step=-1), ValidationError, "step"),
        (lambda c: c.log("m", 1.0, step=1.5), ValidationTypeError, "step"),
        (lambda c: c.log("m", 1.0, step="3"), ValidationTypeError, "step"),
        (lambda c: c.log("m", 1.0, ts="yesterday"), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, ts=1.7e12), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, ts=float("nan")), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, ts=float("inf")), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, ts=-1.0), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, ts=4_102_444_800.0), ValidationError, "ts"),
        (lambda c: c.log("m", 1.0, tags={"split": 1}), ValidationTypeError, "tags['split']"),
        (lambda c: c.log("m", 1.0, tags={"bad key": "x"}), ValidationError, "tag name"),
        (lambda c: c.log("m", 1.0, tags=["x"]), ValidationTypeError, "tags"),
        (lambda c: c.log("m", 1.0, tags={"k": ["unhashable"]}), ValidationTypeError, "tags['k']"),
        (lambda c: c.log_many({"a": 1.0, "b": "x"}), ValidationTypeError, "values['b']"),
        (lambda c: c.log_many([("a", 1.0)]), ValidationTypeError, "values"),
    ],
)
def test_bad_input_is_refused_synchronously_naming_the_field(store, collectors, call, error, field):
    collector = collectors(store, flush_interval=3600)
    with pytest.raises(error) as raised:
        call(collector)
    assert raised.value.field == field
    collector.flush()
    assert collector.stats()["logged"] == 0  # nothing half-accepted (log_many checks every value first)


def test_float_timestamps_are_stored_at_the_microsecond(store, collectors):
    collector = collectors(store, flush_interval=3600)
    t0 = float(int(time.time()) - 60)
    for offset in (0.000_000_4, 0.000_000_6, 0.123_456_5, 1.5):
        collector.log("m", offset, ts=t0 + offset)
    collector.flush()
    stored = [t.value // 1000 - int(t0) * 1_000_000 for t in store.read_points("m")["ts"]]  # (Timestamp.value: ns)
    # (t0 + 0.1234565 is a float a hair either side of the half: either neighbour is right)
    assert stored[:2] == [0, 1] and stored[2] in (123_456, 123_457) and stored[3] == 1_500_000


def test_bad_value_after_good_ones_keeps_the_good_ones(store, collectors):
    collector = collectors(store, flush_interval=3600)
    collector.log("m", 1.0, step=0)
    with pytest.raises(ValidationTypeError):
        collector.log("m", "oops", step=1)
    collector.log("m", 2.0, step=1)
    collector.flush()
    assert store.read_points("m")["value"].tolist() == [1.0, 2.0]


def test_constructor_arguments_are_checked():
    with pytest.raises(ValidationError) as raised:
        Collector("sqlite:///x.db", flush_interval=0)
    assert raised.value.field == "flush_interval"
    with pytest.raises(ValidationError) as raised:
        Collector("sqlite:///x.db", max_buffered_points=0)
    assert raised.value.field == "max_buffered_points"
    with pytest.raises(ValidationTypeError) as raised:
        Collector(object())
    assert raised.value.field == "store"


# -- outages and the spool ----------------------------------------------------------------------------


def test_sqlite_outage_mid_run_every_point_exactly_once(store, url, db, collectors, caplog):
    caplog.set_level(logging.INFO, logger="tablewatch")
    collector = collectors(url, flush_interval=0.02)
    lock = DatabaseLock(db)
    with collector.run("outage-job", params={"lr": 0.1}) as run:
        for i in range(5000):
            collector.log("train.loss", float(i), step=i)
        assert collector.flush() is True
        lock.acquire()
        try:
            for i in range(5000, 15000):
                collector.log("train.loss", float(i), step=i)
                if i % 2500 == 0:
                    assert collector.flush() is False  # the store is down: spooled
            assert collector.flush() is False
            stats = collector.stats()
            assert stats["spooled"] >= 10000 and stats["spool_files"] >= 1 and not stats["store_up"]
        finally:
            lock.release()
        for i in range(15000, 20000):
            collector.log("train.loss", float(i), step=i)
    assert collector.close() is True
    assert_exactly_once(store, "train.loss", 20000, {"run": run.run_id, "run_name": "outage-job"})
    [record] = store.read_training_runs("outage-job")
    assert record.status == "success"  # the spooled "running" record was replayed before the end record
    assert record.metrics == {"train.loss": 19999.0}
    stats = collector.stats()
    assert stats["replayed"] >= 10000 and stats["dropped"] == 0 and stats["spool_files"] == 0
    assert not list(Path(stats["spool_dir"]).glob("*/*.twb"))
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING  # logged once, not per flush or point
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_collector_created_while_its_sqlite_store_cannot_be_opened(db, collectors):
    url = f"sqlite:///{db}?busy_timeout_s=0.1"
    lock = DatabaseLock(db).acquire()  # a brand-new file, exclusively locked: not even WAL can be set
    try:
        collector = collectors(url, flush_interval=0.02)
        for i in range(3000):
            collector.log("early", float(i), step=i)
        assert collector.flush() is False
        assert collector.stats()["spooled"] == 3000
    finally:
        lock.release()
    assert collector.close(timeout=10) is True
    with open_store(url) as store:
        assert_exactly_once(store, "early", 3000)


def test_close_waits_for_the_store_within_its_timeout(store, url, db, collectors):
    collector = collectors(url, flush_interval=0.02)
    lock = DatabaseLock(db).acquire()
    for i in range(1000):
        collector.log("waited", float(i), step=i)
    releaser = threading.Timer(0.4, lock.release)
    releaser.start()
    try:
        started = time.monotonic()
        assert collector.close(timeout=15) is True
        assert time.monotonic() - started < 10
    finally:
        releaser.join()
        lock.release()
    assert_exactly_once(store, "waited", 1000)


def test_close_timeout_leaves_the_spool_and_the_next_collector_replays_it(store, url, db, collectors, caplog):
    caplog.set_level(logging.WARNING, logger="tablewatch")
    first = collectors(url, flush_interval=0.02)
    with DatabaseLock(db):
        for i in range(2000):
            first.log("left", float(i), step=i)
        started = time.monotonic()
        assert first.close(timeout=0.3) is False
        assert time.monotonic() - started < 5
    warning = [r.getMessage() for r in caplog.records if "left in the spool" in r.getMessage()]
    assert len(warning) == 1
    assert first.stats()["spool_files"] >= 1 and first.flush() is False
    spool_root = Path(first.stats()["spool_dir"])
    assert "2000 points" in warning[0] and str(spool_root) in warning[0]
    assert list(spool_root.glob("*/*.twb"))
    assert len(steps_of(store, "left")) == 0
    second = collectors(url, flush_interval=0.02)
    assert second.close() is True
    assert_exactly_once(store, "left", 2000)
    assert second.stats()["replayed"] == 2000
    assert not [p for p in spool_root.iterdir() if not p.name.startswith(".")]


def test_close_returns_in_time_when_the_flusher_is_stuck_in_a_store_call(store, db, collectors):
    url = f"sqlite:///{db}?busy_timeout_s=2.5"
    collector = collectors(url, flush_interval=0.01)
    with DatabaseLock(db):
        for i in range(3000):
            collector.log("stuck", float(i), step=i)
        time.sleep(0.2)  # the flusher is inside a write, waiting 2.5 s for the lock
        started = time.monotonic()
        assert collector.close(timeout=0.2) is False
        assert time.monotonic() - started < 2.0
        assert collector.stats()["spooled"] == 3000
    # Whether or not the stuck write went through once the lock was gone, the
    # next collector's replay leaves every point stored once.
    assert collectors(url).close(timeout=10) is True
    assert_exactly_once(store, "stuck", 3000)


KILLED_SCRIPT = """
import sys, time, tablewatch
url, n = sys.argv[1], int(sys.argv[2])
collector = tablewatch.Collector(url, flush_interval=0.02)
with collector.run("killed-job") as run:
    for i in range(n):
        collector.log("train.loss", float(i), step=i)
    collector.flush()
    print(run.run_id, collector.stats()["spooled"], flush=True)
    time.sleep(120)
"""


def test_a_killed_collectors_spool_is_replayed_by_the_next_one_exactly_once(store, url, db, collectors):
    n = 30_000
    spool_root = Path(str(db.resolve()) + ".spool")
    with DatabaseLock(db):
        child = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, url, str(n)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            run_id, spooled = line.split()
            assert int(spooled) == n
            # While the child lives, another collector leaves its spool alone.
            bystander = collectors(url, flush_interval=0.02)
            bystander.flush()
            assert bystander.stats()["replayed"] == 0
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            child.stdout.close()
            child.stderr.close()
    assert list(spool_root.glob("*/*.twb")), "the killed collector left its spool"
    assert bystander.flush() is True  # the owner is dead: the live collector adopts its spool
    assert_exactly_once(store, "train.loss", n, {"run": run_id, "run_name": "killed-job"})
    [record] = store.read_training_runs("killed-job")
    assert record.status == "running"  # it was killed before its end
    # The next collector finds nothing left to replay: exactly once.
    assert collectors(url).close() is True
    assert_exactly_once(store, "train.loss", n, {"run": run_id, "run_name": "killed-job"})
    assert not list(spool_root.glob("*/*.twb"))


def test_memory_bound_spools_from_the_logging_thread_while_the_flusher_is_stuck(store, db, collectors):
    url = f"sqlite:///{db}?busy_timeout_s=1.5"
    collector = collectors(url, flush_interval=0.01, flush_size=1000, max_buffered_points=5000)
    with DatabaseLock(db):
        collector.log("bounded", 0.0, step=0)
        time.sleep(0.2)  # the flusher is now inside a write waiting 1.5 s for the lock
        started = time.monotonic()
        for i in range(1, 20001):
            collector.log("bounded", float(i), step=i)
        elapsed = time.monotonic() - started
        stats = collector.stats()
    assert elapsed < 1.0  # log() did not wait for the store
    assert stats["spooled"] >= 14000 and stats["buffered"] <= 6000 and stats["dropped"] == 0
    assert collector.close(timeout=20) is True
    assert_exactly_once(store, "bounded", 20001)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB filesystem (tmpfs) for the spool: writes past it fail with ENOSPC."""
    mount_point = tmp_path / "tiny"
    problem = mount_tiny_tmpfs(mount_point)
    if problem:
        pytest.skip(f"cannot mount a tmpfs here: {problem}")
    yield mount_point
    unmount(mount_point)


def test_full_spool_disk_keeps_points_in_memory_and_never_raises(store, url, db, tiny_disk, collectors, caplog):
    caplog.set_level(logging.WARNING, logger="tablewatch")
    collector = collectors(url, flush_interval=0.01, spool_dir=tiny_disk)
    n = 40_000  # ~1 MB of spool: far more than the disk holds
    with DatabaseLock(db):
        for i in range(n):
            collector.log("full", float(i), step=i)
            if i % 5000 == 0:
                collector.flush()
        collector.flush()
        stats = collector.stats()
        assert stats["spooled"] < n and stats["buffered"] > 0 and stats["dropped"] == 0
    full = [r for r in caplog.records if "cannot write the spool" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.ERROR
    assert collector.close(timeout=10) is True
    assert_exactly_once(store, "full", n)
    assert collector.stats()["dropped"] == 0


def test_a_corrupt_spool_file_is_set_aside_not_replayed(store, url, db, collectors, caplog):
    caplog.set_level(logging.WARNING, logger="tablewatch")
    root = Path(str(db.resolve()) + ".spool")
    dead = root / "1-deadbeef"
    dead.mkdir(parents=True)
    (dead / "000000000001.twb").write_bytes(b"TWSPOOL1 not really")
    (dead / ".tmp-000000000002").write_bytes(b"half a file")
    collector = collectors(url)
    assert collector.flush() is True
    assert (dead / "000000000001.twb.bad").exists()
    assert not list(root.glob("*/.tmp-*"))
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_a_spooled_series_the_store_refuses_is_discarded_without_blocking_the_rest(store, url, db, collectors,
                                                                                   caplog):
    caplog.set_level(logging.WARNING, logger="tablewatch")
    from tablewatch.collectors.spool import PointsEntry, encode_batch

    def entry(metric):
        return PointsEntry(metric, {}, 1_700_000_000_000_000 + np.arange(10), np.ones(10), np.arange(10))

    dead = Path(str(db.resolve()) + ".spool") / "1-cafe"
    dead.mkdir(parents=True)
    (dead / "000000000001.twb").write_bytes(encode_batch([entry("good.a"), entry("bad metric!"), entry("good.b")], url))
    collector = collectors(url)
    assert collector.flush() is True
    assert len(steps_of(store, "good.a")) == 10 and len(steps_of(store, "good.b")) == 10
    stats = collector.stats()
    assert stats["rejected"] == 10 and stats["rejected_batches"] == 1
    assert not [p for p in dead.parent.glob("*/*.twb") if p.parent.name != "rejected"]
    # Set aside where a person can look at it: the batch and the reason.
    from tablewatch.collectors.spool import decode_batch

    [kept] = Path(stats["rejected_dir"]).glob("*.twb")
    _, [refused] = decode_batch(kept.read_bytes())
    assert refused.metric == "bad metric!" and refused.points == 10
    assert "metric" in kept.with_suffix(".txt").read_text()
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


@pytest.mark.skipif(not Path("/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator").exists(),
                    reason="the Bigtable emulator is not installed")
def test_bigtable_collector_created_before_the_emulator_is_up(tmp_path, collectors):
    pytest.importorskip("tablewatch.store.bigtable")
    from tests.store.bigtable_emulator import Emulator

    emulator = Emulator()
    url = emulator.url(table_prefix="coll_", timeout_s=1)
    try:
        collector = collectors(url, flush_interval=0.05, spool_dir=tmp_path / "spool")
        with collector.run("bt-job") as run:
            for i in range(5000):
                collector.log("train.loss", float(i), step=i)
            assert collector.flush() is False  # nothing is listening yet: spooled
        assert collector.stats()["spooled"] == 5000
        emulator.start()
        assert collector.close(timeout=60) is True
        with open_store(url) as store:
            assert_exactly_once(store, "train.loss", 5000, {"run": run.run_id, "run_name": "bt-job"})
            [record] = store.read_training_runs("bt-job")
            assert record.status == "success"
    finally:
        emulator.close()


# -- predictions -------------------------------------------------------------------------------------------


def test_log_prediction_sketches_reach_the_store_through_an_outage(store, url, db, collectors):
    collector = collectors(url, flush_interval=0.02)
    with DatabaseLock(db):
        for i in range(500):
            collector.log_prediction("churn", {"age": 20 + i % 50, "plan": "pro" if i % 2 else "free"}, i / 500)
        assert collector.flush() is False
    with pytest.raises(ValidationError) as raised:
        collector.log_prediction("churn", {"age": object()}, 0.5)
    assert raised.value.field == "features['age']"
    assert collector.close() is True
    age = store.read_sketch("churn", "age")
    assert age.count == 500
    plan = store.read_sketch("churn", "plan")
    assert plan.categorical.counts == {"free": 250, "pro": 250}
