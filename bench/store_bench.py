"""The embedded store against the naive way: one SQLite row per point.

- bulk ``write_points`` of 1M points (one series, steps included);
- ``read_points`` of the 1M-point series, and the same range downsampled to
  2,000 points;
- the same workload in a plain SQLite table (``series, ts, value, step``, one row
  per point, ``executemany`` in one transaction; read back with ``ORDER BY ts``)
  in the same WAL / synchronous=NORMAL settings;
- hotspot skew over 24 hours of data in 16 salt buckets when one series carries
  half of all points, next to the skew that salting by series alone gives.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Result, best_of, recent_midnight
from tablewatch.store import open_store

N = 1_000_000
T0 = float(recent_midnight())
SECTION = "store (sqlite)"


def _data(n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(n) * (86_400 / n)  # one day of points
    return ts, rng.normal(size=n), np.arange(n)


def bench_tablewatch(tmp: Path) -> dict[str, float]:
    ts, values, steps = _data()
    figures = {}
    runs = []

    def write() -> None:
        store = open_store(f"sqlite:///{tmp}/tw{len(runs)}.db")
        runs.append(store)
        store.write_points("train.loss", {"run": "bench"}, ts, values, steps=steps)

    figures["write"] = N / best_of(3, write)
    store = runs[-1]
    frame = store.read_points("train.loss", {"run": "bench"})
    assert len(frame) == N
    figures["read"] = N / best_of(5, lambda: store.read_points("train.loss", {"run": "bench"}))
    figures["downsample_ms"] = 1000 * best_of(
        5, lambda: store.read_points("train.loss", {"run": "bench"}, max_points=2000)
    )
    for s in runs:
        s.close()
    return figures


def bench_naive(tmp: Path) -> dict[str, float]:
    ts, values, steps = _data()
    ts_us = (ts * 1e6).astype(np.int64)
    figures = {}
    paths = []

    def write() -> None:
        path = tmp / f"naive{len(paths)}.db"
        paths.append(path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE points (series TEXT, ts INTEGER, value REAL, step INTEGER, PRIMARY KEY (series, ts))")
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?)",
            zip(["train.loss{run=bench}"] * N, ts_us.tolist(), values.tolist(), steps.tolist()),
        )
        db.execute("COMMIT")
        db.close()

    figures["write"] = N / best_of(2, write)
    db = sqlite3.connect(paths[-1])

    def read() -> pd.DataFrame:
        rows = db.execute(
            "SELECT ts, value, step FROM points WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts",
            ("train.loss{run=bench}", int(ts_us[0]), int(ts_us[-1]) + 1),
        ).fetchall()
        frame = pd.DataFrame(rows, columns=["ts", "value", "step"])
        frame["ts"] = pd.to_datetime(frame["ts"], unit="us", utc=True)
        return frame

    assert len(read()) == N
    figures["read"] = N / best_of(3, read)
    db.close()
    return figures


def bench_skew(tmp: Path) -> dict[str, float]:
    """24 h of data, 16 salt buckets; one hot series has half of all points,
    99 other series share the other half."""
    rng = np.random.default_rng(3)
    store = open_store(f"sqlite:///{tmp}/skew.db", salt_buckets=16)
    total = 1_000_000
    hot_ts = T0 + np.sort(rng.uniform(0, 86_400, total // 2))
    store.write_points("serve.latency_s", {"model": "hot"}, hot_ts, rng.random(len(hot_ts)))
    per_series = total // 2 // 99
    for i in range(99):
        cold_ts = T0 + np.sort(rng.uniform(0, 86_400, per_series))
        store.write_points("serve.latency_s", {"model": f"m{i}"}, cold_ts, rng.random(per_series))
    report = store.hotspots()
    # Salting by series alone (OpenTSDB): salt = series hash mod buckets for every row.
    by_series: Counter[int] = Counter()
    for row in store._points.scan(columns=["p"]):
        _, sid, _ = store.codec.decode_point_key(row.key)
        by_series[int.from_bytes(sid[:4], "big") % 16] += sum(
            int.from_bytes(q[8:12], "big") for q in row.cells["p"]
        )
    counts = [by_series.get(s, 0) for s in range(16)]
    store.close()
    return {"skew": report["skew"], "series_skew": max(counts) / (sum(counts) / 16)}


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        ours = bench_tablewatch(path)
        naive = bench_naive(path)
        skew = bench_skew(path)
    return [
        Result(SECTION, "write_points, 1M points (bulk)", ours["write"], "points/s", ">= 2,000,000",
               ours["write"] >= 2_000_000),
        Result(SECTION, "naive: one SQLite row per point, executemany", naive["write"], "points/s"),
        Result(SECTION, "write speed-up over naive", ours["write"] / naive["write"], "x"),
        Result(SECTION, "read_points, 1M-point series", ours["read"], "points/s", ">= 10,000,000",
               ours["read"] >= 10_000_000),
        Result(SECTION, "naive: SELECT ... ORDER BY ts into a DataFrame", naive["read"], "points/s"),
        Result(SECTION, "read speed-up over naive", ours["read"] / naive["read"], "x"),
        Result(SECTION, "read 1M points downsampled to 2,000", ours["downsample_ms"], "ms", "< 150 ms",
               ours["downsample_ms"] < 150),
        Result(SECTION, "hotspot skew, salt moves with time bucket", skew["skew"], "max/mean", "<= 1.5",
               skew["skew"] <= 1.5, "16 buckets, 24 h, one series = 50%"),
        Result(SECTION, "hotspot skew, salting by series alone", skew["series_skew"], "max/mean"),
    ]
