"""The disk spool: its file format, atomic writes, and adoption of the spools
of dead collectors (real processes holding real flocks)."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tablewatch.collectors.spool import (
    CorruptSpoolFile,
    PointsEntry,
    SketchesEntry,
    Spool,
    TaskRunsEntry,
    TrainingRunEntry,
    decode_batch,
    default_spool_root,
    encode_batch,
    peek_points,
)
from tablewatch.store import TaskRun, TrainingRun
from tests.collectors import mount_tiny_tmpfs, unmount

URL = "sqlite:///tmp/x.db"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def sample_entries():
    n = 1000
    return [
        PointsEntry("train.loss", {"run": "r1"}, np.arange(n, dtype=np.int64) + 1_700_000_000_000_000,
                    np.linspace(0, 1, n), np.arange(n, dtype=np.int64)),
        PointsEntry("lr", {}, np.array([1_700_000_000_000_000]), np.array([float("nan")]), None),
        TaskRunsEntry([TaskRun("etl", "extract", "abc", "retry", attempt=2, started_at=T0, ended_at=T0,
                               error_type="OSError", error_message="disk", error_location="x.py:3")]),
        TrainingRunEntry(TrainingRun("exp", "r1", "running", T0, params={"lr": 0.1, "opt": "adam"})),
        SketchesEntry([{"model": "m", "feature": "f", "start_us": 0, "window_s": 3600, "writer": "00" * 8,
                        "seq": 0, "sketch": {"v": 1}}]),
    ]


def test_batch_round_trip_keeps_every_entry_exactly():
    entries = sample_entries()
    url, decoded = decode_batch(encode_batch(entries, URL))
    assert url == URL
    points, lr, tasks, run, sketches = decoded
    assert points.metric == "train.loss" and points.tags == {"run": "r1"}
    np.testing.assert_array_equal(points.ts_us, entries[0].ts_us)
    np.testing.assert_array_equal(points.values, entries[0].values)
    np.testing.assert_array_equal(points.steps, entries[0].steps)
    assert lr.steps is None and np.isnan(lr.values[0])
    assert tasks.runs == entries[2].runs
    assert run.run == entries[3].run
    assert sketches.records == entries[4].records


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_damaged_files_are_refused(damage):
    data = bytearray(encode_batch(sample_entries(), URL))
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "magic":
        data[:8] = b"NOTSPOOL"
    else:
        data = bytearray()
    with pytest.raises(CorruptSpoolFile):
        decode_batch(bytes(data))


def test_writes_are_atomic_ordered_and_counted(tmp_path):
    spool = Spool(tmp_path / "spool", URL)
    assert spool.own_dir is None  # nothing is created until something is spooled
    paths = [spool.write(sample_entries()) for _ in range(3)]
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    assert [f.path for f in spool.pending()] == paths
    assert not list(spool.own_dir.glob(".tmp-*"))
    assert peek_points(paths[0]) == 1001
    assert spool.count() == (3, 3003)
    assert len(spool.read(paths[1])) == 5
    spool.remove(paths[1])
    assert [f.path for f in spool.pending()] == [paths[0], paths[2]]
    for path in (paths[0], paths[2]):
        spool.remove(path)
    spool.close()
    assert list((tmp_path / "spool").iterdir()) == []  # an empty own directory is removed on close


def test_a_full_disk_raises_enospc_and_leaves_no_partial_file(tmp_path):
    mount_point = tmp_path / "tiny"
    problem = mount_tiny_tmpfs(mount_point)
    if problem:
        pytest.skip(f"cannot mount a tmpfs here: {problem}")
    try:
        spool = Spool(mount_point, URL)
        first = spool.write(sample_entries())
        big = [PointsEntry("m", {}, np.zeros(10_000, dtype=np.int64), np.zeros(10_000), None)]  # 160 KB
        with pytest.raises(OSError) as raised:
            spool.write(big)
        assert raised.value.errno == errno.ENOSPC
        assert [f.path for f in spool.pending()] == [first]  # no partial file, no temp left behind
        assert not list(spool.own_dir.glob(".tmp-*"))
        second = spool.write(sample_entries())  # the sequence goes on where it was
        assert second.name > first.name
        spool.close()
    finally:
        unmount(mount_point)


HOLDER = """
import sys, time
from tablewatch.collectors.spool import Spool, PointsEntry
import numpy as np
spool = Spool(sys.argv[1], "sqlite:///tmp/x.db")
spool.write([PointsEntry("m", {}, np.arange(5, dtype=np.int64), np.ones(5), None)])
print(spool.own_dir, flush=True)
time.sleep(120)
"""


def test_a_live_collectors_directory_is_not_adopted_a_dead_ones_is(tmp_path):
    root = tmp_path / "spool"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        held = Path(child.stdout.readline().strip())
        assert held.is_dir()
        mine = Spool(root, URL)
        assert mine.adopt_orphans() == 0  # its owner holds the lock
        assert mine.pending() == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    (held / ".tmp-000000000009").write_bytes(b"cut short")
    assert mine.adopt_orphans() == 1
    assert not (held / ".tmp-000000000009").exists()  # a half-written file is never data
    other = Spool(root, URL)
    assert other.adopt_orphans() == 0  # adopted by `mine`: nobody else replays it
    [item] = mine.pending()
    assert not item.owned and mine.read(item.path)[0].points == 5
    mine.remove(item.path)
    mine.release_finished()
    assert not held.exists()
    assert other.adopt_orphans() == 0


def test_default_spool_roots(tmp_path):
    db = tmp_path / "data" / "tw.db"
    assert default_spool_root(f"sqlite:///{db}?busy_timeout_s=1", env={}) == Path(f"{db}.spool")
    assert default_spool_root(str(db), env={}) == Path(f"{db}.spool")
    url = "bigtable://p/i"
    from_env = default_spool_root(url, env={"TABLEWATCH_SPOOL": str(tmp_path / "s")})
    assert from_env.parent == tmp_path / "s"
    assert default_spool_root("bigtable://p/other", env={"TABLEWATCH_SPOOL": str(tmp_path / "s")}) != from_env
    cached = default_spool_root(url, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert cached.parent == tmp_path / "cache" / "tablewatch" / "spool"
